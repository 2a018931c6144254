//! S3 gateway: requests that carry AWS credentials are S3 calls on the same
//! data (bucket `b`, key `k` is the mkv key `/b/k`).

pub mod body;
pub mod bucket;
pub mod checksum;
pub mod chunked;
pub mod copy;
pub mod cors;
pub mod delete;
pub mod encryption;
pub mod error;
pub mod list;
pub mod multipart;
pub mod object;
pub mod permission;
pub mod policy;
pub mod post;
pub mod router;
pub mod sigv4;
pub mod tagging;
pub mod xml;

use std::time::SystemTime;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::config::Config;
use crate::index::BucketInfo;
use crate::urlenc::percent_decode;
use error::{error_response, S3Error};
use permission::{Need, Principal};
use router::{Op, Route};
use sigv4::{PayloadMode, RequestParts, Verified};

/// Whether a request is an S3 call: SigV4 or SigV2 in the Authorization
/// header, or a SigV4/SigV2 presigned query.
pub fn is_s3_request(req: &HttpRequest) -> bool {
    if let Some(auth) = header(req, "authorization") {
        if auth.starts_with("AWS4-HMAC-SHA256") || auth.starts_with("AWS ") {
            return true;
        }
    }
    let q = req.uri().query().unwrap_or("");
    let has = |name: &str| q.split('&').any(|p| p.split('=').next() == Some(name));
    has("X-Amz-Algorithm") || (has("AWSAccessKeyId") && has("Signature"))
}

/// Query parameters that carry credentials (presigned URLs): never logged.
const SECRET_PARAMS: [&str; 5] = ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "Signature", "AWSAccessKeyId"];

/// A request URI fit for a log: presigned credentials replaced by `REDACTED`.
pub fn loggable_uri(uri: &actix_web::http::Uri) -> String {
    let Some(q) = uri.query() else { return uri.path().to_string() };
    let params: Vec<String> = q
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k)) => format!("{k}=REDACTED"),
            _ => p.to_string(),
        })
        .collect();
    format!("{}?{}", uri.path(), params.join("&"))
}

/// A header's value as text (None if absent or not visible ASCII).
pub fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// One authenticated S3 request on its way through a handler.
pub struct Ctx<'a> {
    pub app: &'a AppState,
    pub req: &'a HttpRequest,
    pub auth: Verified,
    pub principal: Principal,
    /// The request's bucket as first read (`bucket_info`).
    bucket_info: std::cell::OnceCell<Option<BucketInfo>>,
    pub route: Route,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The `x-amz-request-id` of the answer (for errors sent in a body).
    pub request_id: String,
}

impl Ctx<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(self.req, name)
    }

    pub fn bucket(&self) -> &str {
        self.route.bucket.as_deref().unwrap_or("")
    }

    pub fn key(&self) -> &str {
        self.route.key.as_deref().unwrap_or("")
    }

    /// The mkv key of the addressed object.
    pub fn mkv_key(&self) -> Vec<u8> {
        mkv_key(self.bucket(), self.key())
    }

    /// The bucket must exist.
    pub fn require_bucket(&self) -> Result<(), S3Error> {
        self.bucket_info(self.bucket()).map(|_| ())
    }

    /// The request's own bucket (read once per request), or `NoSuchBucket`.
    pub fn own_bucket(&self) -> Result<std::borrow::Cow<'_, BucketInfo>, S3Error> {
        self.bucket_info(self.bucket())
    }

    /// A bucket's info, or `NoSuchBucket`. The request's own bucket is read
    /// once (authorization and the handler both need it).
    fn bucket_info(&self, bucket: &str) -> Result<std::borrow::Cow<'_, BucketInfo>, S3Error> {
        use std::borrow::Cow;
        let read = || self.app.store.index.bucket(bucket).map_err(|e| S3Error::InternalError(e.to_string()));
        let missing = || S3Error::NoSuchBucket { bucket: bucket.to_string() };
        if bucket != self.bucket() {
            return read()?.map(Cow::Owned).ok_or_else(missing);
        }
        if self.bucket_info.get().is_none() {
            let _ = self.bucket_info.set(read()?);
        }
        self.bucket_info.get().and_then(Option::as_ref).map(Cow::Borrowed).ok_or_else(missing)
    }

    /// The caller may do what `need` says on `bucket` (which must exist:
    /// `NoSuchBucket` otherwise, as AWS answers even anonymous callers), by
    /// its grants or by the bucket policy's `action` on an object key.
    pub fn require(&self, need: Need, bucket: &str, action: Option<(policy::Action, Option<&str>)>) -> Result<(), S3Error> {
        self.require_as(&self.principal, need, bucket, action)
    }

    /// `require` for another principal (a form upload's signer).
    pub fn require_as(&self, who: &Principal, need: Need, bucket: &str, action: Option<(policy::Action, Option<&str>)>) -> Result<(), S3Error> {
        let info = self.bucket_info(bucket)?;
        match permission::allowed(who, bucket, &info, need, action) {
            true => Ok(()),
            false => Err(S3Error::AccessDenied("Access Denied".into())),
        }
    }

    pub fn region(&self) -> &str {
        self.app.store.config.s3_region.as_deref().unwrap_or("us-east-1")
    }
}

pub fn mkv_key(bucket: &str, key: &str) -> Vec<u8> {
    format!("/{bucket}/{key}").into_bytes()
}

/// The `x-amz-request-id` of an S3 answer; native requests get one too
/// (the request log's id).
pub fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 8]>())
}

/// Decode a raw query into name/value pairs. SigV4 treats `+` in the query
/// as a literal plus unless the client signed it as a space.
pub fn decode_query(raw: &str, plus_as_space: bool) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                let s = if plus_as_space { s.replace('+', " ") } else { s.to_string() };
                String::from_utf8_lossy(&percent_decode(s.as_bytes())).into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub async fn handle(req: HttpRequest, payload: web::Payload, app: web::Data<AppState>) -> HttpResponse {
    let request_id = new_request_id();
    let is_head = req.method() == actix_web::http::Method::HEAD;
    let answer = match req.method() == actix_web::http::Method::OPTIONS {
        true => preflight(&req, &app),
        false => serve(&req, payload, &app, &request_id).await,
    };
    let mut resp = match answer {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!("S3 {} {}: {e:?}", req.method(), loggable_uri(req.uri()));
            }
            error_response(&e, req.uri().path(), &request_id, !is_head)
        }
    };
    if req.method() != actix_web::http::Method::OPTIONS {
        add_cors(&req, &app, &mut resp);
    }
    resp.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-amz-request-id"),
        actix_web::http::header::HeaderValue::from_str(&request_id).expect("hex is a valid header"),
    );
    resp
}

/// The bucket of a virtual-hosted request (`--s3-domain`).
fn virtual_bucket<'a>(req: &'a HttpRequest, config: &Config) -> Option<&'a str> {
    let host = header(req, "host").or_else(|| req.uri().host());
    config.s3_domain.as_deref().zip(host).and_then(|(domain, host)| router::bucket_from_host(host, domain))
}

/// The bucket a request addresses, and its CORS rules, if any.
fn cors_rules(req: &HttpRequest, app: &AppState) -> Vec<crate::index::CorsRule> {
    let bucket = match virtual_bucket(req, &app.store.config) {
        Some(b) => b.to_string(),
        None => {
            let path = percent_decode(req.uri().path().as_bytes());
            let path = String::from_utf8_lossy(&path);
            path.trim_start_matches('/').split('/').next().unwrap_or("").to_string()
        }
    };
    app.store.index.bucket(&bucket).ok().flatten().map(|b| b.cors).unwrap_or_default()
}

/// A CORS preflight (`OPTIONS`), answered from the bucket's rules before
/// any signature check, as browsers send it without credentials.
fn preflight(req: &HttpRequest, app: &AppState) -> Result<HttpResponse, S3Error> {
    let origin = header(req, "origin").ok_or_else(|| S3Error::BadRequest("Insufficient information. Origin request header needed.".into()))?;
    let method = header(req, "access-control-request-method")
        .ok_or_else(|| S3Error::BadRequest("Invalid Access-Control-Request-Method: null".into()))?;
    let rules = cors_rules(req, app);
    if rules.is_empty() {
        return Err(S3Error::CorsResponse("CORS is not enabled for this bucket.".into()));
    }
    let headers = cors::requested_headers(header(req, "access-control-request-headers"));
    let rule = cors::find(&rules, origin, method, &headers).ok_or_else(|| {
        S3Error::CorsResponse("This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.".into())
    })?;
    let mut resp = HttpResponse::Ok();
    for h in cors::preflight_headers(rule, origin, &headers) {
        resp.insert_header(h);
    }
    Ok(resp.finish())
}

/// An actual request from a browser (`Origin`) that a rule allows gets the
/// `Access-Control-*` headers, errors included (so scripts can read them).
fn add_cors(req: &HttpRequest, app: &AppState, resp: &mut HttpResponse) {
    let Some(origin) = header(req, "origin") else { return };
    let rules = cors_rules(req, app);
    if let Some(rule) = cors::find(&rules, origin, req.method().as_str(), &[]) {
        for (name, value) in cors::response_headers(rule, origin) {
            use actix_web::http::header::{HeaderName, HeaderValue};
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
                resp.headers_mut().insert(n, v);
            }
        }
    }
}

/// The path a signature covers: SigV4 signs the path as sent; SigV2's
/// resource puts the bucket of a virtual-hosted request in front of it.
fn signed_path(req: &HttpRequest, virtual_bucket: Option<&str>) -> String {
    let path = req.uri().path();
    let q = req.uri().query().unwrap_or("");
    let has = |name: &str| q.split('&').any(|p| p.split('=').next() == Some(name));
    let v2 = header(req, "authorization").is_some_and(|a| a.starts_with("AWS ")) || (has("AWSAccessKeyId") && has("Signature"));
    match virtual_bucket {
        Some(b) if v2 => format!("/{b}{path}"),
        _ => path.to_string(),
    }
}

async fn serve(req: &HttpRequest, payload: web::Payload, app: &AppState, request_id: &str) -> Result<HttpResponse, S3Error> {
    let config = &app.store.config;
    let index = &app.store.index;
    if config.s3_keys.is_empty() && !index.has_keys().map_err(|e| S3Error::InternalError(e.to_string()))? {
        return Err(S3Error::AccessDenied("The S3 gateway is off: no --s3-key is configured and no key was made with `mkv key`".into()));
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), sigv4::header_text(v.as_bytes())))
        .collect();
    let raw_query = req.uri().query().unwrap_or("");
    let virtual_bucket = virtual_bucket(req, config);
    let signed_path = signed_path(req, virtual_bucket);
    let parts = RequestParts { method: req.method().as_str(), raw_path: &signed_path, raw_query, headers: &headers };
    let (auth, principal) = if is_s3_request(req) {
        let auth = sigv4::verify(&parts, |ak| secret_of(app, ak), SystemTime::now(), config.s3_region.as_deref()).map_err(S3Error::from)?;
        let principal = principal_of(app, auth.access_key.clone());
        (auth, principal)
    } else {
        let auth = Verified { access_key: String::new(), payload: PayloadMode::Unsigned, chunk_signing: None, query_plus_as_space: false };
        (auth, Principal::Anonymous)
    };

    let query = decode_query(raw_query, auth.query_plus_as_space);
    let path = String::from_utf8(percent_decode(req.uri().path().as_bytes()))
        .map_err(|_| S3Error::InvalidRequest("the path is not valid UTF-8".into()))?;
    let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    let route = router::route(req.method().as_str(), &path, &names, header(req, "x-amz-copy-source").is_some(), virtual_bucket)?;
    // For the request log and metrics (operation and bucket).
    req.extensions_mut().insert(route.clone());
    let ctx = Ctx { app, req, auth, principal, route, query, request_id: request_id.to_string(), bucket_info: Default::default() };
    authorize(&ctx)?;
    let answer = dispatch(&ctx, payload).await;
    // Every volume keeps each bucket's description (`describe`).
    if answer.is_ok() && ctx.route.op.changes_bucket() {
        ctx.app.store.describe_bucket(ctx.bucket()).await;
    }
    answer
}

async fn dispatch(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    match ctx.route.op.clone() {
        Op::ListBuckets => bucket::list_buckets(ctx),
        Op::CreateBucket => bucket::create_bucket(ctx, payload).await,
        Op::GetBucketPolicy => bucket::get_policy(ctx),
        Op::PutBucketPolicy => bucket::put_policy(ctx, payload).await,
        Op::DeleteBucketPolicy => bucket::delete_policy(ctx),
        Op::GetBucketCors => bucket::get_cors(ctx),
        Op::PutBucketCors => bucket::put_cors(ctx, payload).await,
        Op::DeleteBucketCors => bucket::delete_cors(ctx),
        Op::GetBucketTagging => tagging::get_bucket_tagging(ctx),
        Op::PutBucketTagging => tagging::put_bucket_tagging(ctx, payload).await,
        Op::DeleteBucketTagging => tagging::delete_bucket_tagging(ctx),
        Op::PostObject => post::post_object(ctx, payload).await,
        Op::HeadBucket => bucket::head_bucket(ctx),
        Op::DeleteBucket => bucket::delete_bucket(ctx).await,
        Op::GetBucketLocation => bucket::get_location(ctx),
        Op::GetBucketVersioning => bucket::get_versioning(ctx),
        Op::PutBucketVersioning => bucket::put_versioning(ctx, payload).await,
        Op::GetBucketDefault(d) => bucket::get_default(ctx, d),
        Op::GetObject => object::get_object(ctx, true).await,
        Op::HeadObject => object::get_object(ctx, false).await,
        Op::PutObject => object::put_object(ctx, payload).await,
        Op::DeleteObject => object::delete_object(ctx).await,
        Op::GetObjectAcl => object::get_acl(ctx),
        Op::PutObjectAcl => bucket::put_acl(ctx, payload, Some(&ctx.mkv_key())).await,
        Op::PutBucketAcl => bucket::put_acl(ctx, payload, None).await,
        Op::GetObjectAttributes => object::get_object_attributes(ctx),
        Op::GetObjectTagging => tagging::get_object_tagging(ctx),
        Op::PutObjectTagging => tagging::put_object_tagging(ctx, payload).await,
        Op::DeleteObjectTagging => tagging::delete_object_tagging(ctx).await,
        Op::ListObjects => list::list_objects_v1(ctx).await,
        Op::ListObjectsV2 => list::list_objects_v2(ctx).await,
        Op::ListObjectVersions => list::list_object_versions(ctx).await,
        Op::CopyObject => copy::copy_object(ctx).await,
        Op::DeleteObjects => delete::delete_objects(ctx, payload).await,
        Op::CreateMultipartUpload => multipart::create_multipart_upload(ctx).await,
        Op::UploadPart => multipart::upload_part(ctx, payload).await,
        Op::UploadPartCopy => multipart::upload_part_copy(ctx).await,
        Op::CompleteMultipartUpload => multipart::complete_multipart_upload(ctx, payload).await,
        Op::AbortMultipartUpload => multipart::abort_multipart_upload(ctx).await,
        Op::ListParts => multipart::list_parts(ctx).await,
        Op::ListMultipartUploads => multipart::list_multipart_uploads(ctx).await,
        Op::NotImplemented(what) => Err(S3Error::NotImplemented(format!("{what} is not implemented"))),
    }
}

/// The secret of an access key: an admin key (`--s3-key`), else one made
/// with `mkv key`.
pub fn secret_of(app: &AppState, access_key: &str) -> Option<String> {
    let admin = app.store.config.s3_keys.iter().find(|(a, _)| a == access_key).map(|(_, s)| s.clone());
    admin.or_else(|| app.store.index.key_info(access_key).ok().flatten().map(|k| k.secret))
}

/// The principal of a verified access key.
pub fn principal_of(app: &AppState, access_key: String) -> Principal {
    match app.store.config.s3_keys.iter().any(|(a, _)| *a == access_key) {
        true => Principal::Admin(access_key),
        false => Principal::Key(access_key),
    }
}

/// The caller may do the routed operation (see `permission`).
fn authorize(ctx: &Ctx) -> Result<(), S3Error> {
    match permission::needs(&ctx.route.op) {
        Some(need) => {
            let action = permission::policy_action(&ctx.route.op).map(|a| (a, ctx.route.key.as_deref()));
            ctx.require(need, ctx.bucket(), action)
        }
        None if ctx.principal == Principal::Anonymous && matches!(ctx.route.op, Op::ListBuckets | Op::CreateBucket) => {
            Err(S3Error::AccessDenied("Anonymous users cannot list or create buckets".into()))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_never_show_presigned_credentials() {
        let uri: actix_web::http::Uri =
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F2026&X-Amz-Signature=abc&x-id=GetObject".parse().unwrap();
        assert_eq!(loggable_uri(&uri), "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&x-id=GetObject");
        let v2: actix_web::http::Uri = "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=s%2B".parse().unwrap();
        assert_eq!(loggable_uri(&v2), "/b/k?AWSAccessKeyId=REDACTED&Expires=1&Signature=REDACTED");
        assert_eq!(loggable_uri(&"/b/k".parse().unwrap()), "/b/k");
    }

    #[test]
    fn query_decoding() {
        let q = decode_query("list-type=2&prefix=a%2Fb+c&delimiter=", false);
        assert_eq!(q, [("list-type".into(), "2".into()), ("prefix".into(), "a/b+c".into()), ("delimiter".into(), "".into())]);
        assert_eq!(decode_query("prefix=a+b", true)[0].1, "a b");
    }
}
