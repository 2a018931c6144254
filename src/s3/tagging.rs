//! Tags. Of objects: PutObjectTagging, GetObjectTagging,
//! DeleteObjectTagging, and `x-amz-tagging` on the writes that create an
//! object; they are part of the object's metadata (index and metadata files
//! on the volumes), so a rebuild gives them back, and changing them never
//! touches the bytes, the ETag or Last-Modified, as in AWS. Of buckets:
//! Put/Get/DeleteBucketTagging, kept with the bucket (and its files).

use actix_web::{web, HttpResponse};

use super::body::Body;
use super::bucket::{change_bucket, xml_ok};
use super::error::S3Error;
use super::object::{change_meta_in_place, check_version, live_object, MetaTime};
use super::{decode_query, xml, Ctx};
use crate::index::ObjectMeta;

/// AWS's limits on tags: per object, per bucket, and their sizes.
const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// AWS's tag alphabet: letters, digits, spaces (any but control characters) and `_ . : / = + - @`.
fn allowed(text: &str) -> bool {
    text.chars().all(|c| c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c))
}

fn invalid(message: &str) -> S3Error {
    S3Error::InvalidTag(message.to_string())
}

/// Check an object's tag set as AWS does: at most 10 tags, then
/// [`check_each`].
fn validate(tags: &[(String, String)]) -> Result<(), S3Error> {
    if tags.len() > MAX_OBJECT_TAGS {
        return Err(S3Error::BadRequest(format!("Object tags cannot be greater than {MAX_OBJECT_TAGS}")));
    }
    check_each(tags)
}

/// A bucket's tag set: at most 50 tags, then [`check_each`].
fn validate_bucket(tags: &[(String, String)]) -> Result<(), S3Error> {
    if tags.len() > MAX_BUCKET_TAGS {
        return Err(invalid(&format!("Bucket tag count cannot be greater than {MAX_BUCKET_TAGS}")));
    }
    check_each(tags)
}

/// Unique keys of 1–128 characters not starting `aws:`, values of at most
/// 256, AWS's alphabet.
fn check_each(tags: &[(String, String)]) -> Result<(), S3Error> {
    for (i, (key, value)) in tags.iter().enumerate() {
        if key.is_empty() || !allowed(key) {
            return Err(invalid("The TagKey you have provided is invalid"));
        }
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(invalid(&format!("The TagKey you have provided is too long, max {MAX_KEY_CHARS}")));
        }
        if key.starts_with("aws:") {
            return Err(invalid("Your TagKey cannot be prefixed with aws:"));
        }
        if !allowed(value) {
            return Err(invalid("The TagValue you have provided is invalid"));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(&format!("The TagValue you have provided is too long, max {MAX_VALUE_CHARS}")));
        }
        if tags[..i].iter().any(|(k, _)| k == key) {
            return Err(invalid("Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

/// The tags an `x-amz-tagging` value names (URL query form, `k1=v1&k2`; a
/// `+` is a plus, an allowed tag character), validated.
pub fn parse_header(value: &str) -> Result<Vec<(String, String)>, S3Error> {
    let tags = decode_query(value, false);
    validate(&tags)?;
    Ok(tags)
}

/// An object's tags from a `<Tagging>` document (PutObjectTagging's body,
/// a POST form's `tagging` field), validated.
pub fn from_document(doc: &[u8]) -> Result<Vec<(String, String)>, S3Error> {
    let tags = xml::parse_tagging(doc)?;
    validate(&tags)?;
    Ok(tags)
}

/// The tags a write's `x-amz-tagging` header gives the new object (none
/// without it).
pub fn from_request(ctx: &Ctx) -> Result<Vec<(String, String)>, S3Error> {
    match ctx.req.headers().get("x-amz-tagging") {
        None => Ok(Vec::new()),
        Some(v) => parse_header(v.to_str().map_err(|_| invalid("The tag set is not valid URL-encoded text"))?),
    }
}

pub async fn put_object_tagging(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    check_version(ctx)?;
    let tags = from_document(&Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?)?;
    change_meta_in_place(ctx, MetaTime::Keep, |_, meta| Ok(ObjectMeta { tags, ..meta })).await?;
    Ok(HttpResponse::Ok().finish())
}

pub fn get_object_tagging(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    check_version(ctx)?;
    let (_, meta) = live_object(ctx, &ctx.mkv_key())?.ok_or_else(|| S3Error::NoSuchKey { key: ctx.key().to_string() })?;
    Ok(xml_ok(xml::tagging(&meta.tags)))
}

pub async fn delete_object_tagging(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    check_version(ctx)?;
    change_meta_in_place(ctx, MetaTime::Keep, |_, meta| Ok(ObjectMeta { tags: Vec::new(), ..meta })).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn put_bucket_tagging(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    let tags = xml::parse_tagging(&body)?;
    validate_bucket(&tags)?;
    change_bucket(ctx, |b| b.tags = tags)?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn get_bucket_tagging(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    match &ctx.own_bucket()?.tags {
        tags if !tags.is_empty() => Ok(xml_ok(xml::tagging(tags))),
        _ => Err(S3Error::NotConfigured { code: "NoSuchTagSet", message: "The TagSet does not exist", bucket: ctx.bucket().to_string() }),
    }
}

pub fn delete_bucket_tagging(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    change_bucket(ctx, |b| b.tags = Vec::new())?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn code(r: Result<(), S3Error>) -> &'static str {
        r.unwrap_err().aws_code()
    }

    #[test]
    fn aws_limits() {
        let ten: Vec<_> = (0..10).map(|i| (format!("k{i}"), "v".to_string())).collect();
        validate(&ten).unwrap();
        let eleven: Vec<_> = (0..11).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert_eq!(code(validate(&eleven)), "BadRequest");
        validate(&tags(&[(&"k".repeat(128), &"v".repeat(256))])).unwrap();
        // Characters, not bytes.
        validate(&tags(&[(&"é".repeat(128), &"日".repeat(256))])).unwrap();
        assert_eq!(code(validate(&tags(&[(&"k".repeat(129), "v")]))), "InvalidTag");
        assert_eq!(code(validate(&tags(&[("k", &"v".repeat(257))]))), "InvalidTag");
        assert_eq!(code(validate(&tags(&[("", "v")]))), "InvalidTag");
        assert_eq!(code(validate(&tags(&[("a", "1"), ("a", "2")]))), "InvalidTag");
        assert_eq!(code(validate(&tags(&[("aws:x", "1")]))), "InvalidTag");
        validate(&tags(&[("x:aws", ""), ("a b_c.d:e/f=g+h-i@j", "ü 1")])).unwrap();
        assert_eq!(code(validate(&tags(&[("a,b", "1")]))), "InvalidTag");
        assert_eq!(code(validate(&tags(&[("a", "x\ny")]))), "InvalidTag");
        let fifty: Vec<_> = (0..50).map(|i| (format!("k{i}"), "v".to_string())).collect();
        validate_bucket(&fifty).unwrap();
        let more: Vec<_> = (0..51).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert_eq!(code(validate_bucket(&more)), "InvalidTag");
        assert_eq!(code(validate_bucket(&tags(&[("a", "1"), ("a", "2")]))), "InvalidTag");
    }

    #[test]
    fn header_form() {
        assert_eq!(parse_header("foo=bar&bar").unwrap(), tags(&[("foo", "bar"), ("bar", "")]));
        assert_eq!(parse_header("k%20one=a%2Bb&p=1+2").unwrap(), tags(&[("k one", "a+b"), ("p", "1+2")]));
        assert_eq!(parse_header("").unwrap(), tags(&[]));
        assert!(parse_header("a=1&a=2").is_err());
    }
}
