//! Object operations: PutObject, GetObject/HeadObject (streamed from a
//! replica), GetObjectAttributes, DeleteObject, GetObjectAcl; changing an
//! object's metadata in place (CopyObject onto itself, tagging).

use actix_web::body::SizedStream;
use actix_web::http::header::HeaderValue;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, HttpResponseBuilder};
use futures::TryStreamExt;

use super::body::Body;
use super::bucket::{acl_document, xml_ok};
use super::checksum::{ChecksumAlgorithm, ChecksumType, ChecksumValue};
use super::chunked::is_aws_chunked;
use super::error::S3Error;
use super::permission::Principal;
use super::tagging;
use super::xml::{http_date, AttributePart, AttributeParts, ObjectAttributes};
use super::Ctx;
use crate::index::{HeaderBytes, Index, ObjectMeta, Record};
use crate::store::describe::{known_md5, now_us, read_value_file};
use crate::store::now_secs;

/// Headers stored with an object and returned on GET/HEAD (with x-amz-meta-*).
pub const STORED_HEADERS: [&str; 7] =
    ["content-type", "cache-control", "content-disposition", "content-encoding", "content-language", "expires", "x-amz-website-redirect-location"];

/// `response-*` query overrides of GET/HEAD answers.
const OVERRIDES: [(&str, &str); 6] = [
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

/// AWS's limit on user metadata (names and values).
const MAX_USER_METADATA: usize = 2048;
/// Largest single PUT S3 allows.
const MAX_PUT_SIZE: u64 = 5 << 30;

fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::InternalError(e.to_string())
}

/// The headers a write stores: the standard ones and user metadata, byte
/// for byte as received (`Content-Encoding` without `aws-chunked`).
pub fn headers_to_store(ctx: &Ctx) -> Result<Vec<(String, HeaderBytes)>, S3Error> {
    super::encryption::check_write(ctx.req.headers())?;
    super::bucket::check_acl_headers(ctx.req.headers())?;
    let mut out = Vec::new();
    for name in STORED_HEADERS {
        let Some(v) = ctx.req.headers().get(name) else { continue };
        let value = match name {
            "content-encoding" => match stored_content_encoding(v.as_bytes()) {
                Some(v) => v,
                None => continue,
            },
            _ => v.as_bytes().to_vec(),
        };
        out.push((name.to_string(), HeaderBytes(value)));
    }
    let mut meta_size = 0;
    for (name, v) in ctx.req.headers() {
        if let Some(short) = name.as_str().strip_prefix("x-amz-meta-") {
            meta_size += short.len() + v.len();
            out.push((name.as_str().to_string(), HeaderBytes::from(v.as_bytes())));
        }
    }
    if meta_size > MAX_USER_METADATA {
        return Err(S3Error::MetadataTooLarge);
    }
    match ctx.header("x-amz-storage-class") {
        None | Some("STANDARD") => Ok(out),
        Some(_) => Err(S3Error::InvalidStorageClass),
    }
}

/// `Content-Encoding` as stored: as sent, less the `aws-chunked` coding
/// (how the upload was framed, not how the object is encoded); `None` when
/// no other coding remains.
fn stored_content_encoding(value: &[u8]) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = value.split(|&b| b == b',').filter(|c| !is_aws_chunked(c)).collect();
    let kept = kept.join(&b","[..]);
    let kept = kept.trim_ascii();
    (!kept.is_empty()).then(|| kept.to_vec())
}

/// A live object's record and metadata.
pub fn live_object(ctx: &Ctx, key: &[u8]) -> Result<Option<(Record, ObjectMeta)>, S3Error> {
    match ctx.app.store.index.get_with_meta(key).map_err(internal)? {
        Some((rec, meta)) if rec.is_live() => Ok(Some((rec.clone(), meta.unwrap_or_default()))),
        _ => Ok(None),
    }
}

/// Whether the file just opened for `rec` holds the value `rec` and `meta`
/// describe. A generation's files never change. The original's path is
/// rewritten in place by a native DELETE and PUT of the key: once a volume
/// has answered, it sends the file it opened, so an unchanged record now
/// means that file is the value read.
pub fn same_value_opened(ctx: &Ctx, key: &[u8], rec: &Record, meta: &ObjectMeta) -> Result<bool, S3Error> {
    Ok(!rec.gen.is_empty() || live_object(ctx, key)?.is_some_and(|(r, m)| r == *rec && m == *meta))
}

pub fn etag_of(rec: &Record, meta: &ObjectMeta) -> String {
    meta.etag.clone().unwrap_or_else(|| rec.hash.clone())
}

/// Whether an `If-Match`/`If-None-Match` list names this ETag.
pub fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(|t| t.trim().trim_start_matches("W/").trim_matches('"')).any(|t| t == "*" || t == etag)
}

/// `If-None-Match: *` and `If-Match` on writes (AWS conditional writes).
pub fn check_write_conditions(ctx: &Ctx, key: &[u8]) -> Result<(), S3Error> {
    write_conditions(&ctx.app.store.index, ctx.header("if-none-match"), ctx.header("if-match"), key, ctx.key())
}

/// [`check_write_conditions`] with the header values given (a multipart
/// Complete checks them again after the request is gone).
pub fn write_conditions(index: &Index, if_none_match: Option<&str>, if_match: Option<&str>, key: &[u8], s3_key: &str) -> Result<(), S3Error> {
    let current = match index.get_with_meta(key).map_err(internal)? {
        Some((rec, meta)) if rec.is_live() => Some((rec, meta.unwrap_or_default())),
        _ => None,
    };
    if let Some(v) = if_none_match {
        // Writes take only `*` (create if absent), as AWS does.
        if v.trim() != "*" {
            return Err(S3Error::NotImplemented("A header you provided implies functionality that is not implemented: If-None-Match other than *".into()));
        }
        if current.is_some() {
            return Err(S3Error::PreconditionFailed { condition: "If-None-Match".into() });
        }
    }
    if let Some(v) = if_match {
        let Some((rec, meta)) = &current else { return Err(S3Error::NoSuchKey { key: s3_key.to_string() }) };
        if !etag_matches(v, &etag_of(rec, meta)) {
            return Err(S3Error::PreconditionFailed { condition: "If-Match".into() });
        }
    }
    Ok(())
}

pub async fn put_object(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let headers = headers_to_store(ctx)?;
    let tags = tagging::from_request(ctx)?;
    let mut body = Body::new(ctx.req, payload, &ctx.auth)?;
    match body.len {
        Some(n) if n > MAX_PUT_SIZE => return Err(S3Error::EntityTooLarge),
        None if ctx.header("transfer-encoding").is_none() => return Err(S3Error::MissingContentLength),
        _ => {}
    }
    let key = ctx.mkv_key();
    check_write_conditions(ctx, &key)?;
    let store = &ctx.app.store;
    let staged = store.stage(&key, body.len, &mut body.stream).await.map_err(|e| body.failure().unwrap_or_else(|| S3Error::from_store(e, ctx.key())))?;
    let checksum = body.checksum.checksum();
    // Uploads run side by side; commits of one key are serialized, last wins.
    let _guard = store.locks.lock(&key).await;
    if let Err(e) = check_write_conditions(ctx, &key) {
        drop(staged);
        return Err(e);
    }
    let md5 = staged.written.md5_hex();
    let meta = ObjectMeta {
        mtime: now_secs(),
        headers,
        etag: (!store.config.md5sum).then(|| md5.clone()),
        checksum: checksum.as_ref().map(|c| (c.algorithm.as_str().to_string(), c.value.clone(), "FULL_OBJECT".to_string())),
        tags,
        ..Default::default()
    };
    store.commit_staged(staged, meta).await.map_err(|e| S3Error::from_store(e, ctx.key()))?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("ETag", format!("\"{md5}\"")));
    if let Some(c) = checksum {
        resp.insert_header((c.algorithm.header_name(), c.value));
    }
    Ok(resp.finish())
}

/// `versionId` may only name the one version an unversioned object has.
pub fn check_version(ctx: &Ctx) -> Result<(), S3Error> {
    match ctx.param("versionId") {
        None | Some("null") => Ok(()),
        Some(v) => Err(S3Error::InvalidArgument { message: "Invalid version id specified".into(), name: "versionId".into(), value: v.to_string() }),
    }
}

/// A satisfiable byte range of an object of `size` bytes, from a `Range`
/// header: `Ok(None)` for no (or an ignorable) range, as AWS ignores ranges
/// it cannot parse or several ranges.
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(v) = value else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let unsatisfiable = || S3Error::InvalidRange { range: v.to_string(), size };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return Ok(None) };
        if n == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        return Ok(Some((size.saturating_sub(n), size - 1)));
    }
    let Ok(start) = a.parse::<u64>() else { return Ok(None) };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return Ok(None),
        }
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end.min(size - 1))))
}

/// GET/HEAD preconditions: 412 (If-Match, If-Unmodified-Since) first, then
/// 304 (If-None-Match, If-Modified-Since), as AWS orders them.
fn check_read_conditions(ctx: &Ctx, etag: &str, mtime: u64) -> Result<Option<StatusCode>, S3Error> {
    let date = |name| ctx.header(name).and_then(|v| httpdate::parse_http_date(v).ok()).map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    if let Some(v) = ctx.header("if-match") {
        if !etag_matches(v, etag) {
            return Err(S3Error::PreconditionFailed { condition: "If-Match".into() });
        }
    } else if let Some(since) = date("if-unmodified-since") {
        if mtime > since {
            return Err(S3Error::PreconditionFailed { condition: "If-Unmodified-Since".into() });
        }
    }
    if let Some(v) = ctx.header("if-none-match") {
        if etag_matches(v, etag) {
            return Ok(Some(StatusCode::NOT_MODIFIED));
        }
    } else if let Some(since) = date("if-modified-since") {
        if mtime <= since {
            return Ok(Some(StatusCode::NOT_MODIFIED));
        }
    }
    Ok(None)
}

/// Most parts an upload may have.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A `partNumber` parameter: 400 `InvalidArgument` unless 1 to 10,000.
pub fn parse_part_number(v: &str) -> Result<u32, S3Error> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_PART_NUMBER).contains(&n) => Ok(n),
        _ => Err(S3Error::InvalidArgument {
            message: "Part number must be an integer between 1 and 10000, inclusive".into(),
            name: "partNumber".into(),
            value: v.to_string(),
        }),
    }
}

/// The bytes of part `n` (`partNumber`): that part of an object completed
/// from a multipart upload, or, for any other object, part 1 is the whole
/// object (a range, so 206 as AWS answers; none for an empty object). A part
/// the object does not have (or an empty one, with no byte range to answer)
/// is 416 `InvalidPartNumber`.
fn part_range(meta: &ObjectMeta, n: &str) -> Result<Option<(u64, u64)>, S3Error> {
    let n = parse_part_number(n)? as usize;
    if meta.parts.is_empty() {
        return match n {
            1 => Ok(meta.size.checked_sub(1).map(|last| (0, last))),
            _ => Err(S3Error::InvalidPartNumber),
        };
    }
    let size = *n.checked_sub(1).and_then(|i| meta.parts.get(i)).ok_or(S3Error::InvalidPartNumber)?;
    if size == 0 {
        return Err(S3Error::InvalidPartNumber);
    }
    let start: u64 = meta.parts[..n - 1].iter().sum();
    Ok(Some((start, start + size - 1)))
}

pub async fn get_object(ctx: &Ctx<'_>, with_body: bool) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    check_version(ctx)?;
    super::encryption::check_read(ctx.req.headers(), false)?;
    let overrides = response_overrides(ctx)?;
    let key = ctx.mkv_key();
    // The record names immutable files: what is read is the value the
    // headers describe. If they are gone before the first byte (replaced or
    // deleted, and collected after the grace period), read the record again.
    for _ in 0..3 {
        let (rec, meta) = live_object(ctx, &key)?.ok_or_else(|| S3Error::NoSuchKey { key: ctx.key().to_string() })?;
        let etag = etag_of(&rec, &meta);
        let size = meta.size;
        let mut resp = HttpResponse::Ok();
        resp.insert_header(("ETag", format!("\"{etag}\""))).insert_header(("Last-Modified", http_date(meta.mtime)));
        if check_read_conditions(ctx, &etag, meta.mtime)?.is_some() {
            return Ok(resp.status(StatusCode::NOT_MODIFIED).finish());
        }
        let mut range = parse_range(ctx.header("range"), size)?;
        if let Some(n) = ctx.param("partNumber") {
            if ctx.header("range").is_some() {
                return Err(S3Error::InvalidRequest("Cannot specify both Range header and partNumber query parameter".into()));
            }
            range = part_range(&meta, n)?;
            if !meta.parts.is_empty() {
                resp.insert_header(("x-amz-mp-parts-count", meta.parts.len().to_string()));
            }
        }
        resp.insert_header(("Accept-Ranges", "bytes"));
        let checksum = match (range, ctx.param("partNumber")) {
            (None, _) => meta.checksum.as_ref().map(|(alg, value, kind)| (alg.as_str(), value.as_str(), Some(kind.as_str()))),
            // A part of a multipart object: the part's own checksum.
            (Some(_), Some(n)) => part_checksum(&meta, n).map(|(alg, value)| (alg, value, None)),
            (Some(_), None) => None,
        };
        add_stored_headers(ctx, &mut resp, &meta, &overrides, checksum);
        let len = match range {
            Some((a, b)) => {
                resp.status(StatusCode::PARTIAL_CONTENT).insert_header(("Content-Range", format!("bytes {a}-{b}/{size}")));
                b - a + 1
            }
            None => size,
        };
        if !with_body {
            // A sized body that is never sent: actix then answers the HEAD
            // with the object's Content-Length.
            let none = futures::stream::empty::<Result<bytes::Bytes, actix_web::Error>>();
            return Ok(resp.body(SizedStream::new(len, none)));
        }
        match ctx.app.store.cached_value(&key, &rec, size).await {
            Ok(Some(value)) => {
                return Ok(resp.body(match range {
                    Some((a, b)) => value.slice(a as usize..=b as usize),
                    None => value,
                }));
            }
            Ok(None) => {}
            Err(crate::error::Error::NotFound) => continue,
            Err(e) => return Err(S3Error::from_store(e, ctx.key())),
        }
        let upstream = match ctx.app.store.open_read(&key, &rec, range.map(|(a, b)| format!("bytes={a}-{b}")).as_deref()).await {
            Err(crate::error::Error::NotFound) => continue,
            other => other.map_err(|e| S3Error::from_store(e, ctx.key()))?,
        };
        if !same_value_opened(ctx, &key, &rec, &meta)? {
            continue;
        }
        let stream = upstream.bytes_stream().map_err(|e| actix_web::error::ErrorBadGateway(e.to_string()));
        return Ok(resp.body(SizedStream::new(len, stream)));
    }
    Err(S3Error::ServiceUnavailable)
}

/// The `response-*` overrides asked for, as header values: only a signed
/// request may change the answer's headers (an anonymous one could make a
/// public object render as a page of the gateway's origin), and the values
/// go out in ISO-8859-1 as AWS sends them, so a character outside it, or a
/// control character, is refused.
fn response_overrides(ctx: &Ctx) -> Result<Vec<(&'static str, HeaderValue)>, S3Error> {
    let mut out = Vec::new();
    for (q, h) in OVERRIDES {
        let Some(v) = ctx.param(q) else { continue };
        if ctx.principal == Principal::Anonymous {
            return Err(S3Error::InvalidRequest("Request specific response headers cannot be used for anonymous GET requests.".into()));
        }
        let latin1: Option<Vec<u8>> = v.chars().map(|c| u8::try_from(u32::from(c)).ok().filter(|b| *b == b'\t' || !c.is_control())).collect();
        let value = latin1.and_then(|b| HeaderValue::from_bytes(&b).ok()).ok_or_else(|| S3Error::InvalidArgument {
            message: "Header value cannot be represented using ISO-8859-1.".into(),
            name: q.into(),
            // Control characters would make the error document unreadable (XML 1.0).
            value: v.chars().filter(|c| !c.is_control()).collect(),
        })?;
        out.push((h, value));
    }
    Ok(out)
}

/// Part `n`'s own checksum (algorithm, base64) if the upload had one.
fn part_checksum<'a>(meta: &'a ObjectMeta, n: &str) -> Option<(&'a str, &'a str)> {
    let i = n.trim().parse::<usize>().ok()?.checked_sub(1)?;
    let (alg, _, _) = meta.checksum.as_ref()?;
    Some((alg.as_str(), meta.part_checksums.get(i)?.as_str()))
}

/// Stored headers, overrides, and — when asked for (`x-amz-checksum-mode`)
/// — `checksum`: the whole object's (with its type) or a part's, never the
/// whole object's for a range (SDKs would validate the range against it).
fn add_stored_headers(ctx: &Ctx, resp: &mut HttpResponseBuilder, meta: &ObjectMeta, overrides: &[(&str, HeaderValue)], checksum: Option<(&str, &str, Option<&str>)>) {
    let mut has_type = false;
    for (name, value) in &meta.headers {
        let overridden = overrides.iter().any(|(h, _)| h == name);
        if !overridden {
            // Stored values came from request headers, so they are valid ones.
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                has_type |= name == "content-type";
                resp.insert_header((name.as_str(), value));
            }
        }
    }
    for (h, v) in overrides {
        has_type |= *h == "content-type";
        resp.insert_header((*h, v.clone()));
    }
    if !has_type {
        resp.insert_header(("Content-Type", "binary/octet-stream"));
    }
    if !meta.tags.is_empty() {
        resp.insert_header(("x-amz-tagging-count", meta.tags.len().to_string()));
    }
    if ctx.header("x-amz-checksum-mode").is_some_and(|v| v.eq_ignore_ascii_case("ENABLED")) {
        if let Some((alg, value, kind)) = checksum {
            if let Some(a) = ChecksumAlgorithm::from_name(alg) {
                resp.insert_header((a.header_name(), value));
                if let Some(kind) = kind {
                    resp.insert_header(("x-amz-checksum-type", kind));
                }
            }
        }
    }
}

/// What `x-amz-object-attributes` may name.
const ATTRIBUTES: [&str; 5] = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];

/// GetObjectAttributes: the attributes `x-amz-object-attributes` names,
/// from the index alone; a multipart object's parts paged by
/// `x-amz-max-parts` (default and cap 1000) after `x-amz-part-number-marker`.
pub fn get_object_attributes(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    check_version(ctx)?;
    let asked: Vec<&str> = ctx.header("x-amz-object-attributes").unwrap_or("").split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    if asked.is_empty() {
        return Err(S3Error::InvalidRequest("The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty".into()));
    }
    if let Some(bad) = asked.iter().find(|a| !ATTRIBUTES.contains(a)) {
        return Err(S3Error::InvalidArgument { message: "Invalid attribute name specified.".into(), name: "x-amz-object-attributes".into(), value: bad.to_string() });
    }
    let number = |name: &str, default: u32| match ctx.header(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<u32>().map_err(|_| S3Error::InvalidArgument { message: format!("Invalid {name} value"), name: name.into(), value: v.into() }),
    };
    let max_parts = number("x-amz-max-parts", 1000)?.min(1000) as usize;
    let marker = number("x-amz-part-number-marker", 0)?;
    let (rec, meta) = live_object(ctx, &ctx.mkv_key())?.ok_or_else(|| S3Error::NoSuchKey { key: ctx.key().to_string() })?;
    let wants = |a| asked.contains(&a);
    let algorithm = meta.checksum.as_ref().and_then(|(alg, _, _)| ChecksumAlgorithm::from_name(alg));
    let checksum = match (&meta.checksum, algorithm) {
        (Some((_, value, kind)), Some(algorithm)) if wants("Checksum") => {
            ChecksumType::from_name(kind).map(|t| (ChecksumValue { algorithm, value: value.clone() }, t))
        }
        _ => None,
    };
    let parts = (wants("ObjectParts") && !meta.parts.is_empty()).then(|| {
        let listed: Vec<AttributePart> = (1..=meta.parts.len() as u32)
            .zip(meta.parts.iter().zip(meta.part_checksums.iter().map(Some).chain(std::iter::repeat(None))))
            .skip_while(|(n, _)| *n <= marker)
            .take(max_parts + 1)
            .map(|(number, (&size, c))| AttributePart { number, size, checksum: c.zip(algorithm).map(|(v, algorithm)| ChecksumValue { algorithm, value: v.clone() }) })
            .collect();
        let truncated = listed.len() > max_parts;
        AttributeParts { count: meta.parts.len(), marker, max: max_parts, truncated, parts: listed.into_iter().take(max_parts).collect() }
    });
    let doc = ObjectAttributes {
        etag: wants("ETag").then(|| etag_of(&rec, &meta)),
        checksum,
        parts,
        storage_class: wants("StorageClass"),
        size: wants("ObjectSize").then_some(meta.size),
    };
    let mut resp = xml_ok(doc.to_xml());
    if let Ok(date) = HeaderValue::from_str(&http_date(meta.mtime)) {
        resp.headers_mut().insert(actix_web::http::header::LAST_MODIFIED, date);
    }
    Ok(resp)
}

/// The time a metadata change gives the object: now (a CopyObject onto
/// itself), or the value's own (tagging, which leaves Last-Modified).
pub enum MetaTime {
    Now,
    Keep,
}

/// Change a live object's metadata, never its bytes, under the key's lock:
/// `change` gets the current record and metadata and may refuse. The
/// value's metadata files are replaced whole (nginx renames a complete file
/// over the old one) before the index, whose record must still be the one
/// read (admin processes do not take our locks). A crash between leaves
/// the files newer than the index, which `verify` reports and `repair`
/// rewrites.
pub async fn change_meta_in_place(
    ctx: &Ctx<'_>,
    time: MetaTime,
    change: impl FnOnce(&Record, ObjectMeta) -> Result<ObjectMeta, S3Error>,
) -> Result<(Record, ObjectMeta), S3Error> {
    let store = &ctx.app.store;
    let key = ctx.mkv_key();
    let _guard = store.locks.lock(&key).await;
    let (record, meta) = live_object(ctx, &key)?.ok_or_else(|| S3Error::NoSuchKey { key: ctx.key().to_string() })?;
    let new = change(&record, meta)?;
    let file = read_value_file(&store.volumes, &key, &record).await;
    let written_us = match time {
        MetaTime::Now => now_us(),
        // The file's own time when it agrees with the index; else the last
        // microsecond of the recorded second, which still ranks this value
        // above any older one of that second for `rebuild`.
        MetaTime::Keep => file.as_ref().map(|f| f.written_us).filter(|us| us / 1_000_000 == new.mtime).unwrap_or(new.mtime * 1_000_000 + 999_999),
    };
    let new = ObjectMeta { mtime: written_us / 1_000_000, ..new };
    let md5 = known_md5(&store.volumes, &key, &record, &new, file.as_slice()).await.unwrap_or_default();
    store.describe_value(&key, &record, &md5, &new, written_us).await.map_err(|e| S3Error::from_store(e, ctx.key()))?;
    let (k, rec, stored) = (key.clone(), record.clone(), new.clone());
    let swapped = store.index_write(move |ix| ix.put_if(&k, &rec, &rec, Some(&stored))).await;
    match swapped.map_err(internal)? {
        true => Ok((record, new)),
        false => Err(S3Error::SlowDown),
    }
}

pub async fn delete_object(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    check_version(ctx)?;
    let key = ctx.mkv_key();
    let store = &ctx.app.store;
    let _guard = store.locks.lock(&key).await;
    // Conditional delete: `If-Match` (an ETag, or `*`) against the object
    // as it is under the lock; 404 if there is none.
    if let Some(etag) = ctx.header("if-match") {
        write_conditions(&store.index, None, Some(etag), &key, ctx.key())?;
    }
    // Deleting a missing key succeeds, as in S3.
    store.remove(&key).await.map_err(|e| S3Error::from_store(e, ctx.key()))?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn get_acl(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    live_object(ctx, &ctx.mkv_key())?.ok_or_else(|| S3Error::NoSuchKey { key: ctx.key().to_string() })?;
    Ok(xml_ok(acl_document(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range(Some("bytes=90-200"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=50-"), 100).unwrap(), Some((50, 99)));
        assert_eq!(parse_range(Some("bytes=-10"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=-200"), 100).unwrap(), Some((0, 99)));
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=-0"), 100).is_err());
        assert!(parse_range(Some("bytes=0-0"), 0).is_err());
        assert_eq!(parse_range(Some("bytes=5-1"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 100).unwrap(), None);
        assert_eq!(parse_range(None, 100).unwrap(), None);
    }

    #[test]
    fn part_ranges() {
        let single = ObjectMeta { size: 9, ..Default::default() };
        assert_eq!(part_range(&single, "1").unwrap(), Some((0, 8)));
        assert_eq!(part_range(&ObjectMeta::default(), "1").unwrap(), None);
        assert_eq!(part_range(&single, "2").unwrap_err(), S3Error::InvalidPartNumber);
        let multi = ObjectMeta { size: 12, parts: vec![5, 5, 2], ..Default::default() };
        assert_eq!(part_range(&multi, "1").unwrap(), Some((0, 4)));
        assert_eq!(part_range(&multi, "3").unwrap(), Some((10, 11)));
        assert_eq!(part_range(&multi, "4").unwrap_err(), S3Error::InvalidPartNumber);
        assert_eq!(part_range(&multi, "10000").unwrap_err(), S3Error::InvalidPartNumber);
        for bad in ["0", "10001", "x", "-1", ""] {
            assert!(matches!(part_range(&multi, bad).unwrap_err(), S3Error::InvalidArgument { .. }), "{bad}");
        }
    }

    #[test]
    fn content_encoding_loses_only_aws_chunked() {
        let stored = |v: &str| stored_content_encoding(v.as_bytes()).map(|s| String::from_utf8(s).unwrap());
        assert_eq!(stored("deflate, gzip").as_deref(), Some("deflate, gzip"));
        assert_eq!(stored("gzip, aws-chunked").as_deref(), Some("gzip"));
        assert_eq!(stored("aws-chunked,gzip").as_deref(), Some("gzip"));
        assert_eq!(stored("deflate, AWS-Chunked, gzip").as_deref(), Some("deflate, gzip"));
        assert_eq!(stored("x-custom,  br").as_deref(), Some("x-custom,  br"));
        assert_eq!(stored("aws-chunked"), None);
        assert_eq!(stored(" aws-chunked , aws-chunked"), None);
        assert_eq!(stored_content_encoding(b"gzip, x-\xe9"), Some(b"gzip, x-\xe9".to_vec()));
    }

    #[test]
    fn etag_lists() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("\"x\", \"abc\"", "abc"));
        assert!(etag_matches("*", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
    }
}
