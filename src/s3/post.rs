//! POST Object: browser form uploads (`multipart/form-data` to a bucket)
//! signed with a SigV4 POST policy, as boto3's `generate_presigned_post` and
//! upload widgets make them. The policy (base64 JSON: expiration and
//! conditions) is checked against every form field; the file, the last
//! field, streams to the volumes like a PutObject body.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use super::error::S3Error;
use super::object::STORED_HEADERS;
use super::permission::{Need, Principal};
use super::policy::Action;
use super::{sigv4, xml, Ctx};
use crate::index::{HeaderBytes, ObjectMeta};
use crate::store::now_secs;

/// Largest form field other than the file (AWS: the whole form before the
/// file is at most 20 KB).
const MAX_FIELDS: usize = 20 * 1024;
/// Escaped in a redirect's query values: all but unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Largest PutObject, and so largest file.
const MAX_FILE: u64 = 5 << 30;

/// Form fields that need no condition (the signature's own, SigV4 or V2).
fn exempt(name: &str) -> bool {
    matches!(name, "policy" | "x-amz-signature" | "signature" | "awsaccesskeyid" | "file") || name.starts_with("x-ignore-")
}

/// One policy condition.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    /// `{"field": "v"}` or `["eq", "$field", "v"]`.
    Eq(String, String),
    /// `["starts-with", "$field", "prefix"]`.
    StartsWith(String, String),
    /// `["content-length-range", min, max]`.
    Length(u64, u64),
}

/// A decoded POST policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PostPolicy {
    /// Seconds since the epoch.
    expiration: u64,
    conditions: Vec<Condition>,
}

fn invalid(message: impl Into<String>) -> S3Error {
    S3Error::InvalidPolicyDocument(message.into())
}

impl PostPolicy {
    /// Decode the `policy` field (base64 of the JSON document).
    pub fn parse(b64: &str) -> Result<PostPolicy, S3Error> {
        let raw = STANDARD.decode(b64.trim()).map_err(|_| invalid("Invalid Policy: Invalid Base64 Encoding."))?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|e| invalid(format!("Invalid Policy: Invalid JSON: {e}")))?;
        let expiration = doc
            .get("expiration")
            .and_then(Value::as_str)
            .and_then(iso8601_secs)
            .ok_or_else(|| invalid("Invalid Policy: Invalid 'expiration' value."))?;
        let list = doc.get("conditions").and_then(Value::as_array).ok_or_else(|| invalid("Invalid Policy: Missing 'conditions'."))?;
        let mut conditions = Vec::new();
        for c in list {
            conditions.extend(condition(c)?);
        }
        Ok(PostPolicy { expiration, conditions })
    }

    /// Check the form fields (names lowercase) and the bucket posted to
    /// against the expiration and every condition; every field but the
    /// exempt ones needs a condition. Returns the allowed file size range.
    pub fn check(&self, fields: &[(String, String)], bucket: &str, now: u64) -> Result<(u64, u64), S3Error> {
        if now >= self.expiration {
            return Err(S3Error::AccessDenied("Invalid according to Policy: Policy expired.".into()));
        }
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).or((name == "bucket").then_some(bucket));
        let failed = |what: String| S3Error::AccessDenied(format!("Invalid according to Policy: Policy Condition failed: {what}"));
        let mut range = (0, MAX_FILE);
        for c in &self.conditions {
            match c {
                Condition::Eq(name, want) if field(name) != Some(want.as_str()) => return Err(failed(format!("[\"eq\", \"${name}\", \"{want}\"]"))),
                Condition::StartsWith(name, prefix) if !field(name).unwrap_or("").starts_with(prefix.as_str()) || (field(name).is_none() && name != "content-type") => {
                    return Err(failed(format!("[\"starts-with\", \"${name}\", \"{prefix}\"]")))
                }
                Condition::Length(min, max) => range = (*min, *max),
                _ => {}
            }
        }
        for (name, _) in fields {
            let covered = self.conditions.iter().any(|c| matches!(c, Condition::Eq(n, _) | Condition::StartsWith(n, _) if n == name));
            if !exempt(name) && !covered {
                return Err(S3Error::AccessDenied(format!("Invalid according to Policy: Extra input fields: {name}")));
            }
        }
        Ok(range)
    }
}

/// `2026-12-03T12:00:00.000Z` (or without fraction) as seconds.
fn iso8601_secs(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let time = time.split('.').next()?;
    let d: Vec<u64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<u64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let text = format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", d[0], d[1], d[2], t[0], t[1], t[2]);
    sigv4::amz_date_secs(&text).and_then(|s| u64::try_from(s).ok())
}

/// The field a condition names: `$key` → `key`, lowercase (form field
/// names are case-insensitive).
fn field_name(v: &Value) -> Result<String, S3Error> {
    let s = v.as_str().ok_or_else(|| invalid("Invalid Policy: Invalid Condition: field name must be a string."))?;
    Ok(s.trim_start_matches('$').to_ascii_lowercase())
}

fn condition(c: &Value) -> Result<Vec<Condition>, S3Error> {
    let text = |v: &Value| v.as_str().map(str::to_string).ok_or_else(|| invalid(format!("Invalid Policy: Invalid Condition: {c}")));
    match c {
        Value::Object(map) if map.is_empty() => Err(invalid("Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")),
        Value::Object(map) => map.iter().map(|(k, v)| Ok(Condition::Eq(k.to_ascii_lowercase(), text(v)?))).collect(),
        Value::Array(a) if a.len() == 3 => {
            let op = a[0].as_str().unwrap_or("").to_ascii_lowercase();
            match op.as_str() {
                "eq" => Ok(vec![Condition::Eq(field_name(&a[1])?, text(&a[2])?)]),
                "starts-with" => Ok(vec![Condition::StartsWith(field_name(&a[1])?, text(&a[2])?)]),
                "content-length-range" => {
                    let n = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok()).ok_or_else(|| invalid(format!("Invalid Policy: Invalid content-length-range: {c}")));
                    Ok(vec![Condition::Length(n(&a[1])?, n(&a[2])?)])
                }
                _ => Err(invalid(format!("Invalid Policy: Invalid Condition: {c}"))),
            }
        }
        _ => Err(invalid(format!("Invalid Policy: Invalid Condition: {c}"))),
    }
}

/// Whether a request is a browser form upload (a POST of a form).
pub fn is_form_post(req: &actix_web::HttpRequest) -> bool {
    req.method() == actix_web::http::Method::POST
        && super::header(req, "content-type").is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The form's fields up to the file (the file's stream comes beside it).
struct Form {
    fields: Vec<(String, String)>,
    file_name: Option<String>,
    file_type: Option<String>,
}

impl Form {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn malformed(detail: impl std::fmt::Display) -> S3Error {
    S3Error::MalformedPOSTRequest(format!("The body of your POST request is not well-formed multipart/form-data: {detail}"))
}

async fn read_form(ctx: &Ctx<'_>, mut payload: web::Payload) -> Result<(Form, multer::Field<'static>), S3Error> {
    let boundary = super::header(ctx.req, "content-type").and_then(|t| multer::parse_boundary(t).ok()).ok_or_else(|| malformed("no boundary"))?;
    // multer wants a Send stream; the request body is not: bridge it
    // through a small channel (back-pressure kept).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    actix_web::rt::spawn(async move {
        while let Some(chunk) = payload.next().await {
            if tx.send(chunk.map_err(|e| std::io::Error::other(e.to_string()))).await.is_err() {
                break;
            }
        }
    });
    let mut form = multer::Multipart::new(tokio_stream::wrappers::ReceiverStream::new(rx), boundary);
    let mut fields = Vec::new();
    let mut size = 0;
    loop {
        let Some(field) = form.next_field().await.map_err(malformed)? else {
            return Err(S3Error::InvalidArgument { message: "POST requires exactly one file upload per request.".into(), name: "file".into(), value: "0".into() });
        };
        let name = field.name().unwrap_or("").to_ascii_lowercase();
        if name == "file" {
            // The file is the form's last field: the rest of the body.
            let (file_name, file_type) = (field.file_name().map(str::to_string), field.content_type().map(|m| m.to_string()));
            return Ok((Form { fields, file_name, file_type }, field));
        }
        let value = field.text().await.map_err(malformed)?;
        size += name.len() + value.len();
        if size > MAX_FIELDS {
            return Err(S3Error::MalformedPOSTRequest("Your POST request fields preceding the upload file were too large.".into()));
        }
        fields.push((name, value));
    }
}

fn missing(field: &str) -> S3Error {
    S3Error::InvalidArgument { message: format!("Bucket POST must contain a field named '{field}'.  If it is specified, please check the order of the fields."), name: field.into(), value: String::new() }
}

/// Who signed the form: a key whose SigV4 (or V2) signature of the policy
/// matches, or anonymous when there is no signature.
fn signer(ctx: &Ctx, form: &Form) -> Result<Principal, S3Error> {
    let lookup = |ak: &str| super::secret_of(ctx.app, ak);
    if let Some(id) = form.field("awsaccesskeyid") {
        let signature = form.field("signature").ok_or_else(|| missing("Signature"))?;
        let policy = form.field("policy").ok_or_else(|| missing("policy"))?;
        sigv4::verify_post_policy_v2(id, policy, signature, lookup).map_err(S3Error::from)?;
        return Ok(super::principal_of(ctx.app, id.to_string()));
    }
    let Some(signature) = form.field("x-amz-signature") else {
        // A credential without its signature is a mistake, not an anonymous form.
        return match form.field("x-amz-credential") {
            Some(_) => Err(missing("x-amz-signature")),
            None => Ok(Principal::Anonymous),
        };
    };
    if form.field("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(S3Error::InvalidArgument { message: "Only AWS4-HMAC-SHA256 is supported for POST".into(), name: "x-amz-algorithm".into(), value: form.field("x-amz-algorithm").unwrap_or("").into() });
    }
    let policy = form.field("policy").ok_or_else(|| missing("policy"))?;
    let credential = form.field("x-amz-credential").ok_or_else(|| missing("x-amz-credential"))?;
    let date = form.field("x-amz-date").ok_or_else(|| missing("x-amz-date"))?;
    let region = ctx.app.store.config.s3_region.as_deref();
    let id = sigv4::verify_post_policy(credential, date, policy, signature, lookup, region).map_err(S3Error::from)?;
    Ok(super::principal_of(ctx.app, id))
}

/// Stored headers from the form: the standard ones and `x-amz-meta-*`
/// fields; Content-Type from the file part when no field gives one.
fn form_headers(form: &Form) -> Vec<(String, HeaderBytes)> {
    let mut out: Vec<(String, HeaderBytes)> = Vec::new();
    for name in STORED_HEADERS {
        let value = form.field(name).or(if name == "content-type" { form.file_type.as_deref() } else { None });
        if let Some(v) = value {
            out.push((name.to_string(), HeaderBytes::from(v)));
        }
    }
    out.extend(form.fields.iter().filter(|(n, _)| n.starts_with("x-amz-meta-")).map(|(n, v)| (n.clone(), HeaderBytes::from(v.as_str()))));
    out
}

/// The form's encryption and object lock fields, as the headers of a
/// PutObject would carry them.
fn form_encryption_fields(form: &Form) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in form.fields.iter().filter(|(n, _)| n.starts_with("x-amz-server-side-encryption") || n.starts_with("x-amz-object-lock-")) {
        if let Ok(n) = HeaderName::try_from(name.as_str()) {
            // A value no header could carry is still a request for encryption.
            map.insert(n, HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("?")));
        }
    }
    map
}

pub async fn post_object(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let (form, file) = read_form(ctx, payload).await?;
    let raw_key = form.field("key").ok_or_else(|| missing("key"))?;
    let who = signer(ctx, &form)?;
    // `${filename}`: the name of the file the browser sent, without folders;
    // the policy's conditions see the key with it in place.
    let file_name = form.file_name.as_deref().unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let s3_key = raw_key.replace("${filename}", file_name);
    let range = match form.field("policy") {
        Some(p) => {
            let fields: Vec<(String, String)> = form.fields.iter().map(|(n, v)| (n.clone(), if n == "key" { s3_key.clone() } else { v.clone() })).collect();
            PostPolicy::parse(p)?.check(&fields, ctx.bucket(), now_secs())?
        }
        None if who == Principal::Anonymous => (0, MAX_FILE),
        None => return Err(missing("policy")),
    };
    if s3_key.is_empty() || s3_key.len() > super::router::MAX_KEY_LEN {
        return Err(if s3_key.is_empty() { missing("key") } else { S3Error::KeyTooLongError });
    }
    ctx.require_as(&who, Need::Write, ctx.bucket(), Some((Action::PutObject, Some(&s3_key))))?;
    super::encryption::check_write(&form_encryption_fields(&form))?;
    super::bucket::check_acl(form.field("acl"), false)?;
    let key = super::mkv_key(ctx.bucket(), &s3_key);
    let headers = form_headers(&form);
    // The `tagging` field is a `<Tagging>` document, as PutObjectTagging's body.
    let tags = form.field("tagging").map(|doc| super::tagging::from_document(doc.as_bytes())).transpose()?.unwrap_or_default();
    let (min, max) = range;
    // The file streams to the volumes; over `max` stops it at once.
    let count = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let seen = count.clone();
    let file = file.map(move |chunk| {
        let chunk = chunk.map_err(|e| e.to_string())?;
        seen.set(seen.get() + chunk.len() as u64);
        if seen.get() > max {
            return Err("too large".to_string());
        }
        Ok(chunk)
    });
    let store = &ctx.app.store;
    let staged = match store.stage(&key, None, Box::pin(file)).await {
        Ok(s) => s,
        Err(_) if count.get() > max => return Err(S3Error::EntityTooLarge),
        Err(e) => return Err(S3Error::from_store(e, &s3_key)),
    };
    if staged.written.size < min {
        return Err(S3Error::EntityTooSmall);
    }
    let md5 = staged.written.md5_hex();
    let meta = ObjectMeta { mtime: now_secs(), headers, etag: (!store.config.md5sum).then(|| md5.clone()), tags, ..Default::default() };
    {
        let _guard = store.locks.lock(&key).await;
        store.commit_staged(staged, meta).await.map_err(|e| S3Error::from_store(e, &s3_key))?;
    }
    answer(ctx, &form, &s3_key, &md5)
}

/// `success_action_redirect` (303), else `success_action_status` 200, 201
/// (a `PostResponse` document) or 204 (the default).
fn answer(ctx: &Ctx, form: &Form, key: &str, md5: &str) -> Result<HttpResponse, S3Error> {
    let host = ctx.header("host").unwrap_or("localhost");
    let location = format!("http://{host}/{}/{}", ctx.bucket(), super::list::encode(key.as_bytes(), true));
    let etag = format!("\"{md5}\"");
    // A redirect S3 cannot use is ignored, as AWS does: here one a Location
    // header could not carry (the object is committed: no 500 now).
    let usable = |u: &&str| !u.is_empty() && !u.chars().any(char::is_control);
    if let Some(url) = form.field("success_action_redirect").or(form.field("redirect")).filter(usable) {
        let sep = if url.contains('?') { '&' } else { '?' };
        let q = |v: &str| percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string();
        let to = format!("{url}{sep}bucket={}&key={}&etag={}", q(ctx.bucket()), q(key), q(&etag));
        return Ok(HttpResponse::SeeOther().insert_header(("Location", to)).insert_header(("ETag", etag)).finish());
    }
    let mut resp = match form.field("success_action_status") {
        Some("200") => HttpResponse::Ok(),
        Some("201") => {
            let doc = xml::post_response(&location, ctx.bucket(), key, &etag);
            return Ok(HttpResponse::Created().content_type("application/xml").insert_header(("ETag", etag)).insert_header(("Location", location)).body(doc));
        }
        _ => HttpResponse::NoContent(),
    };
    Ok(resp.insert_header(("ETag", etag)).insert_header(("Location", location)).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(doc: &str) -> PostPolicy {
        PostPolicy::parse(&STANDARD.encode(doc)).unwrap()
    }

    fn fields(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn conditions() {
        let p = policy(r#"{"expiration":"2030-01-01T00:00:00.000Z","conditions":[{"bucket":"b"},["starts-with","$key","uploads/"],{"acl":"private"},["content-length-range",1,100],["eq","$Content-Type","image/png"]]}"#);
        let ok = fields(&[("key", "uploads/a.png"), ("acl", "private"), ("content-type", "image/png"), ("policy", "…"), ("x-amz-signature", "…")]);
        assert_eq!(p.check(&ok, "b", 1_800_000_000).unwrap(), (1, 100));
        let mut wrong_key = ok.clone();
        wrong_key[0].1 = "other/a.png".into();
        assert!(matches!(p.check(&wrong_key, "b", 1_800_000_000), Err(S3Error::AccessDenied(m)) if m.contains("starts-with")));
        let mut extra = ok.clone();
        extra.push(("x-amz-meta-x".into(), "1".into()));
        assert!(matches!(p.check(&extra, "b", 1_800_000_000), Err(S3Error::AccessDenied(m)) if m.contains("Extra input fields: x-amz-meta-x")));
        let mut ignored = ok.clone();
        ignored.push(("x-ignore-me".into(), "1".into()));
        assert!(p.check(&ignored, "b", 1_800_000_000).is_ok());
        assert!(matches!(p.check(&ok, "b", 1_900_000_000), Err(S3Error::AccessDenied(m)) if m.contains("expired")));
        assert!(p.check(&ok[..1], "b", 1_800_000_000).is_err());
        assert!(matches!(p.check(&ok, "other", 1_800_000_000), Err(S3Error::AccessDenied(m)) if m.contains("$bucket")));
    }

    #[test]
    fn refused_documents() {
        for bad in ["not base64!", &STANDARD.encode("{}"), &STANDARD.encode(r#"{"expiration":"soon","conditions":[]}"#),
                    &STANDARD.encode(r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[["lt","$key","x"]]}"#),
                    &STANDARD.encode(r#"{"expiration":"2030-01-01T00:00:00Z","conditions":[{}]}"#)] {
            assert!(matches!(PostPolicy::parse(bad), Err(S3Error::InvalidPolicyDocument(_))), "{bad}");
        }
        assert_eq!(iso8601_secs("1970-01-01T00:01:00Z"), Some(60));
    }
}
