//! CopyObject, and the copy-source helpers UploadPartCopy shares: parse
//! `x-amz-copy-source`, check the `x-amz-copy-source-if-*` conditions, and
//! open the source's bytes (or a range of them) as a stream from a replica.
//! The bytes go replica → gateway → staging files of the destination, never
//! held whole in memory.

use std::time::UNIX_EPOCH;

use actix_web::HttpResponse;
use bytes::Bytes;
use futures::stream::LocalBoxStream;
use futures::{StreamExt, TryStreamExt};

use super::bucket::xml_ok;
use super::checksum::{ChecksumAlgorithm, ChecksumType, ChecksumValue, ChecksumVerify, Expected};
use super::error::S3Error;
use super::object::{change_meta_in_place, check_write_conditions, etag_matches, etag_of, headers_to_store, live_object, same_value_opened, MetaTime};
use super::permission::Need;
use super::policy::Action;
use super::router::MAX_KEY_LEN;
use super::tagging;
use super::xml::CopyObjectResult;
use super::{mkv_key, Ctx};
use crate::error::Error;
use crate::index::{HeaderBytes, ObjectMeta, Record};
use crate::store::now_secs;
use crate::urlenc::percent_decode;

/// Largest object CopyObject copies (AWS: bigger ones need UploadPartCopy).
pub const MAX_COPY_SIZE: u64 = 5 << 30;

/// The object `x-amz-copy-source` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    pub bucket: String,
    pub key: String,
}

impl CopySource {
    pub fn mkv_key(&self) -> Vec<u8> {
        mkv_key(&self.bucket, &self.key)
    }
}

fn bad_source(message: &str, value: &str) -> S3Error {
    S3Error::InvalidArgument { message: message.into(), name: "x-amz-copy-source".into(), value: value.to_string() }
}

/// Parse `x-amz-copy-source`: `[/]bucket/key[?versionId=null]`, URL-encoded.
/// A version other than `null` does not exist in an unversioned store.
pub fn parse_copy_source(value: &str) -> Result<CopySource, S3Error> {
    // Split before decoding: an encoded `?` (%3F) belongs to the key.
    let (path, query) = value.split_once('?').unwrap_or((value, ""));
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, v) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "versionId" && String::from_utf8_lossy(&percent_decode(v.as_bytes())) != "null" {
            return Err(bad_source("Invalid version id specified: this store keeps one version of each object, \"null\"", value));
        }
    }
    let path = String::from_utf8(percent_decode(path.as_bytes())).map_err(|_| bad_source("Copy Source is not valid UTF-8", value))?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    match path.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            if key.len() > MAX_KEY_LEN {
                return Err(S3Error::KeyTooLongError);
            }
            Ok(CopySource { bucket: bucket.to_string(), key: key.to_string() })
        }
        _ => Err(bad_source("Copy Source must mention the source bucket and key: sourcebucket/sourcekey", value)),
    }
}

/// An `x-amz-copy-source-range` (`bytes=first-last`, both given, within
/// the object) as an inclusive byte range.
pub fn parse_copy_range(value: &str, size: u64) -> Result<(u64, u64), S3Error> {
    let invalid = |message: String| S3Error::InvalidArgument { message, name: "x-amz-copy-source-range".into(), value: value.to_string() };
    let (a, b) = value
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
        .ok_or_else(|| {
            invalid("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy".into())
        })?;
    if a > b || b >= size {
        return Err(invalid(format!("Range specified is not valid for source object of size: {size}")));
    }
    Ok((a, b))
}

/// The `x-amz-copy-source-if-*` conditions, as AWS combines them: a
/// matching If-Match overrides If-Unmodified-Since, a failing If-None-Match
/// fails whatever If-Modified-Since says. Every failure is 412.
fn check_source_conditions(ctx: &Ctx, etag: &str, mtime: u64) -> Result<(), S3Error> {
    let date = |name| {
        ctx.header(name)
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(|t| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
    };
    let failed = |condition: &str| Err(S3Error::PreconditionFailed { condition: condition.into() });
    match ctx.header("x-amz-copy-source-if-match") {
        Some(v) if !etag_matches(v, etag) => return failed("x-amz-copy-source-If-Match"),
        Some(_) => {}
        None => {
            if date("x-amz-copy-source-if-unmodified-since").is_some_and(|since| mtime > since) {
                return failed("x-amz-copy-source-If-Unmodified-Since");
            }
        }
    }
    match ctx.header("x-amz-copy-source-if-none-match") {
        Some(v) if etag_matches(v, etag) => failed("x-amz-copy-source-If-None-Match"),
        Some(_) => Ok(()),
        None if date("x-amz-copy-source-if-modified-since").is_some_and(|since| mtime <= since) => {
            failed("x-amz-copy-source-If-Modified-Since")
        }
        None => Ok(()),
    }
}

/// The request's copy source, checked: it names a live object of an
/// existing bucket, and its conditions hold for that object.
pub fn check_copy_source(ctx: &Ctx) -> Result<(CopySource, Record, ObjectMeta), S3Error> {
    let value = ctx.header("x-amz-copy-source").ok_or_else(|| bad_source("x-amz-copy-source is missing", ""))?;
    let source = parse_copy_source(value)?;
    ctx.require(Need::Read, &source.bucket, Some((Action::GetObject, Some(&source.key))))?;
    let (record, meta) = live_object(ctx, &source.mkv_key())?.ok_or_else(|| S3Error::NoSuchKey { key: source.key.clone() })?;
    super::encryption::check_read(ctx.req.headers(), true)?;
    check_source_conditions(ctx, &etag_of(&record, &meta), meta.mtime)?;
    Ok((source, record, meta))
}

/// An open copy source: the version that was checked, and its bytes.
pub struct SourceStream {
    pub source: CopySource,
    pub record: Record,
    pub meta: ObjectMeta,
    /// Inclusive byte range being read, `None` for the whole object.
    pub range: Option<(u64, u64)>,
    /// Bytes the stream yields.
    pub len: u64,
    pub stream: LocalBoxStream<'static, Result<Bytes, S3Error>>,
}

/// Check the request's copy source (`check_copy_source`) and open its bytes
/// on a replica: the whole object, or `range` (an `x-amz-copy-source-range`
/// value, for UploadPartCopy). The stream is of the version checked: if the
/// object changes while the replica is being opened, it starts again.
pub async fn open_copy_source(ctx: &Ctx<'_>, range: Option<&str>) -> Result<SourceStream, S3Error> {
    for _ in 0..3 {
        let (source, record, meta) = check_copy_source(ctx)?;
        let range = range.map(|r| parse_copy_range(r, meta.size)).transpose()?;
        let key = source.mkv_key();
        let header = range.map(|(a, b)| format!("bytes={a}-{b}"));
        let upstream = match ctx.app.store.open_read(&key, &record, header.as_deref()).await {
            Err(Error::NotFound) => continue,
            other => other.map_err(|e| S3Error::from_store(e, &source.key))?,
        };
        if !same_value_opened(ctx, &key, &record, &meta)? {
            continue;
        }
        let len = range.map_or(meta.size, |(a, b)| b - a + 1);
        let stream = upstream.bytes_stream().map_err(|e| S3Error::InternalError(format!("reading the copy source: {e}"))).boxed_local();
        return Ok(SourceStream { source, record, meta, range, len, stream });
    }
    Err(S3Error::SlowDown)
}

/// COPY (the default) or REPLACE: whether the request's headers replace
/// the source's metadata.
fn replaces_metadata(ctx: &Ctx) -> Result<bool, S3Error> {
    match ctx.header("x-amz-metadata-directive") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("COPY") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("REPLACE") => Ok(true),
        Some(v) => Err(S3Error::InvalidArgument {
            message: "Unknown metadata directive.".into(),
            name: "x-amz-metadata-directive".into(),
            value: v.to_string(),
        }),
    }
}

/// COPY (the default) or REPLACE of the tags: with REPLACE, the tags of
/// `x-amz-tagging` (none without it).
fn replaced_tags(ctx: &Ctx) -> Result<Option<Vec<(String, String)>>, S3Error> {
    match ctx.header("x-amz-tagging-directive") {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("COPY") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("REPLACE") => tagging::from_request(ctx).map(Some),
        Some(v) => Err(S3Error::InvalidArgument {
            message: "Unknown tagging directive.".into(),
            name: "x-amz-tagging-directive".into(),
            value: v.to_string(),
        }),
    }
}

/// The checksum a whole-object copy keeps: the source's when it covers the
/// whole object (a composite one describes parts the copy no longer has).
fn kept_checksum(meta: &ObjectMeta) -> Option<(String, String, String)> {
    meta.checksum.clone().filter(|(_, _, t)| ChecksumType::from_name(t) == Some(ChecksumType::FullObject))
}

fn copy_result(etag: String, meta: &ObjectMeta) -> HttpResponse {
    let checksum = meta.checksum.as_ref();
    let doc = CopyObjectResult {
        etag,
        last_modified: meta.mtime,
        checksum: checksum.and_then(|(a, v, _)| Some(ChecksumValue { algorithm: ChecksumAlgorithm::from_name(a)?, value: v.clone() })),
        checksum_type: checksum.and_then(|(_, _, t)| ChecksumType::from_name(t)),
    };
    xml_ok(doc.to_xml())
}

pub async fn copy_object(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let replace = replaces_metadata(ctx)?;
    // Validated in both modes (storage class, metadata size); used on REPLACE.
    let new_headers = headers_to_store(ctx)?;
    let tags = replaced_tags(ctx)?;
    let algorithm = match ctx.header("x-amz-checksum-algorithm") {
        Some(name) => Some(ChecksumAlgorithm::from_name(name).ok_or_else(|| S3Error::InvalidRequest(format!("unsupported checksum algorithm {name:?}")))?),
        None => None,
    };
    let dest = ctx.mkv_key();
    let source = parse_copy_source(ctx.header("x-amz-copy-source").unwrap_or(""))?;
    if source.mkv_key() == dest {
        if !replace && ctx.header(REDIRECT).is_none() {
            return Err(S3Error::InvalidRequest("This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into()));
        }
        if algorithm.is_none() {
            return replace_metadata_in_place(ctx, replace, new_headers, tags).await;
        }
    }
    let src = open_copy_source(ctx, None).await?;
    if src.len > MAX_COPY_SIZE {
        return Err(S3Error::InvalidRequest(format!(
            "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_COPY_SIZE}"
        )));
    }
    check_write_conditions(ctx, &dest)?;
    let verify = ChecksumVerify::new(src.stream, algorithm.map(|a| (a, Expected::ComputeOnly)), None)?;
    let computed = verify.handle();
    let store = &ctx.app.store;
    let staged = store.stage(&dest, Some(src.len), verify).await.map_err(|e| match computed.error() {
        Some(source_error) => source_error,
        None => S3Error::from_store(e, ctx.key()),
    })?;
    let md5 = staged.written.md5_hex();
    // The source's recorded MD5 guards against a replica that rotted.
    let source_md5 = etag_of(&src.record, &src.meta);
    if source_md5.len() == 32 && source_md5 != md5 {
        drop(staged);
        return Err(S3Error::InternalError(format!("copy source replica of {:?} does not match its MD5", src.source.key)));
    }
    let checksum = match computed.checksum() {
        Some(c) => Some((c.algorithm.as_str().to_string(), c.value, "FULL_OBJECT".to_string())),
        None => kept_checksum(&src.meta),
    };
    let meta = ObjectMeta {
        mtime: now_secs(),
        headers: copied_headers(replace, new_headers, &src.meta.headers),
        etag: (!store.config.md5sum).then(|| md5.clone()),
        checksum,
        tags: tags.unwrap_or_else(|| src.meta.tags.clone()),
        ..Default::default()
    };
    let _guard = store.locks.lock(&dest).await;
    if let Err(e) = check_write_conditions(ctx, &dest) {
        drop(staged);
        return Err(e);
    }
    let response = copy_result(md5, &meta);
    store.commit_staged(staged, meta).await.map_err(|e| S3Error::from_store(e, ctx.key()))?;
    Ok(response)
}

const REDIRECT: &str = "x-amz-website-redirect-location";

/// A copy's stored headers: the request's with REPLACE, else the source's
/// less its website redirect, which AWS never copies (a request may give a
/// new one).
fn copied_headers(replace: bool, request: Vec<(String, HeaderBytes)>, source: &[(String, HeaderBytes)]) -> Vec<(String, HeaderBytes)> {
    if replace {
        return request;
    }
    let kept = source.iter().filter(|(n, _)| n != REDIRECT).cloned();
    kept.chain(request.into_iter().filter(|(n, _)| n == REDIRECT)).collect()
}

/// Copy onto itself with REPLACE (or a new website redirect): the bytes
/// stay, only the metadata (and the tags with `x-amz-tagging-directive:
/// REPLACE`) and the modification time change, and only if the object is
/// still the version whose conditions were checked.
async fn replace_metadata_in_place(ctx: &Ctx<'_>, replace: bool, headers: Vec<(String, HeaderBytes)>, tags: Option<Vec<(String, String)>>) -> Result<HttpResponse, S3Error> {
    let (record, new) = change_meta_in_place(ctx, MetaTime::Now, |_, meta| {
        check_copy_source(ctx)?;
        check_write_conditions(ctx, &ctx.mkv_key())?;
        Ok(ObjectMeta { headers: copied_headers(replace, headers, &meta.headers), tags: tags.unwrap_or(meta.tags.clone()), ..meta })
    })
    .await?;
    Ok(copy_result(etag_of(&record, &new), &new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(b: &str, k: &str) -> CopySource {
        CopySource { bucket: b.into(), key: k.into() }
    }

    #[test]
    fn website_redirects_are_not_copied() {
        let h = |kv: &[(&str, &str)]| kv.iter().map(|(n, v)| (n.to_string(), HeaderBytes::from(*v))).collect::<Vec<_>>();
        let source = h(&[("content-type", "a/b"), (REDIRECT, "/old")]);
        assert_eq!(copied_headers(false, h(&[("content-type", "x/y")]), &source), h(&[("content-type", "a/b")]));
        assert_eq!(copied_headers(false, h(&[(REDIRECT, "/new")]), &source), h(&[("content-type", "a/b"), (REDIRECT, "/new")]));
        assert_eq!(copied_headers(true, h(&[("content-type", "x/y")]), &source), h(&[("content-type", "x/y")]));
    }

    #[test]
    fn copy_source_values() {
        assert_eq!(parse_copy_source("b/k").unwrap(), src("b", "k"));
        assert_eq!(parse_copy_source("/b/dir/a%20b%2Bc+d").unwrap(), src("b", "dir/a b+c+d"));
        assert_eq!(parse_copy_source("b/caf%C3%A9%3Fx?versionId=null").unwrap(), src("b", "café?x"));
        assert_eq!(parse_copy_source("b//k/").unwrap(), src("b", "/k/"));
        for bad in ["b", "/b/", "b/k?versionId=3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "/b/%FF", ""] {
            assert!(matches!(parse_copy_source(bad), Err(S3Error::InvalidArgument { .. })), "{bad}");
        }
        let long = format!("b/{}", "k".repeat(MAX_KEY_LEN + 1));
        assert_eq!(parse_copy_source(&long), Err(S3Error::KeyTooLongError));
    }

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), (0, 9));
        assert_eq!(parse_copy_range("bytes=5-5", 10).unwrap(), (5, 5));
        for bad in ["bytes=0-10", "bytes=5-4", "bytes=-5", "bytes=5-", "0-4", "bytes=a-b"] {
            assert!(parse_copy_range(bad, 10).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_full_object_checksums_are_kept() {
        let mut m = ObjectMeta { checksum: Some(("CRC32".into(), "AAAAAA==".into(), "FULL_OBJECT".into())), ..Default::default() };
        assert!(kept_checksum(&m).is_some());
        m.checksum = Some(("CRC32".into(), "AAAAAA==-2".into(), "COMPOSITE".into()));
        assert!(kept_checksum(&m).is_none());
    }
}
