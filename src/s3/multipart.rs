//! S3 multipart uploads: Create, UploadPart, UploadPartCopy, ListParts,
//! ListMultipartUploads, Abort, Complete.
//!
//! Uploads and parts are recorded in the index (`index::uploads`), so an
//! upload survives a restart. Part files are ordinary files in a hidden
//! folder of the object key's targets, `/<target>/.mpu/<upload-id>/<n>.<nonce>`
//! (a dot folder: never in autoindex, so rebuild, verify and native `?list`
//! never see them). Complete streams the parts, in order, into one staged
//! file per replica and commits it as PutObject does: the result is an
//! ordinary mkv object.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use futures::stream::LocalBoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use percent_encoding::percent_encode;
use rand::seq::SliceRandom;

use super::body::Body;
use super::bucket::xml_ok;
use super::checksum::{composite, ChecksumAlgorithm, ChecksumType, ChecksumValue, Hasher, VerifyHandle};
use super::copy::open_copy_source;
use super::error::S3Error;
use super::list::{encode, prefix_successor, url_encoding, URL_SAFE};
use super::object::{check_write_conditions, headers_to_store, parse_part_number, write_conditions, MAX_PART_NUMBER};
use super::tagging;
use super::xml::{
    parse_complete_multipart_upload, CompleteMultipartUploadResult, CompletedPart, CopyPartResult, InitiateMultipartUploadResult,
    ListMultipartUploadsResult, ListPartsResult, Owner, PartEntry, UploadEntry,
};
use super::Ctx;
use crate::error::Error;
use crate::index::uploads::{upload_key, Completed, Part, PartPut, Upload, UPLOAD_ID_LEN};
use crate::index::{Index, IndexError, ObjectMeta, Scan};
use crate::store::{now_secs, KeyGuard, Store};
use crate::volume::VolumeClient;

/// Hidden folder of part files in each (sub)volume.
pub const MPU_DIR: &str = ".mpu";
/// Smallest part that may be followed by another (AWS: 5 MiB).
pub const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_SIZE: u64 = 5 << 30;
const MAX_LISTED: usize = 1000;
/// How often a running Complete sends a space to keep the connection alive.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// How long a completed upload answers a repeated Complete with its result.
pub const COMPLETED_TTL: Duration = Duration::from_secs(24 * 3600);
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::InternalError(e.to_string())
}

fn part_url(target: &str, id: &str, file: &str) -> String {
    format!("http://{target}/{MPU_DIR}/{id}/{file}")
}

/// The upload's folder on a target; nginx deletes a folder (recursively)
/// only by its URL with the trailing slash.
fn upload_dir_url(target: &str, id: &str) -> String {
    format!("http://{target}/{MPU_DIR}/{id}/")
}

/// Lock name for one upload: its part records and Complete/Abort take it,
/// so a part never replaces one that a Complete is reading.
fn upload_lock(id: &str) -> Vec<u8> {
    format!("\0mpu {id}").into_bytes()
}

/// Upload ids have the shape of generations: creation time (µs), then random.
fn new_upload_id() -> String {
    crate::placement::new_generation()
}

fn no_such_upload(id: &str) -> S3Error {
    S3Error::NoSuchUpload { upload_id: id.to_string() }
}

fn upload_id<'a>(ctx: &'a Ctx) -> Result<&'a str, S3Error> {
    let id = ctx.param("uploadId").unwrap_or("");
    if id.len() == UPLOAD_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(no_such_upload(id))
    }
}

/// The addressed upload: its id and record.
fn load_upload<'a>(ctx: &'a Ctx) -> Result<(&'a str, Upload), S3Error> {
    ctx.require_bucket()?;
    let id = upload_id(ctx)?;
    let upload = ctx.app.store.index.upload(&ctx.mkv_key(), id).map_err(internal)?;
    Ok((id, upload.ok_or_else(|| no_such_upload(id))?))
}

fn part_number(ctx: &Ctx) -> Result<u32, S3Error> {
    parse_part_number(ctx.param("partNumber").unwrap_or(""))
}

/// The checksum algorithm and type an upload was created with.
fn upload_checksum(upload: &Upload) -> Option<(ChecksumAlgorithm, ChecksumType)> {
    let (alg, kind) = upload.checksum.as_ref()?;
    Some((ChecksumAlgorithm::from_name(alg)?, ChecksumType::from_name(kind)?))
}

fn stored_checksum(c: &Option<(String, String)>) -> Option<ChecksumValue> {
    let (alg, value) = c.as_ref()?;
    Some(ChecksumValue { algorithm: ChecksumAlgorithm::from_name(alg)?, value: value.clone() })
}

/// `x-amz-checksum-algorithm` and `x-amz-checksum-type` of a
/// CreateMultipartUpload, checked as AWS does.
fn requested_checksum(ctx: &Ctx) -> Result<Option<(ChecksumAlgorithm, ChecksumType)>, S3Error> {
    let alg = match ctx.header("x-amz-checksum-algorithm") {
        None => None,
        Some(name) => Some(ChecksumAlgorithm::from_name(name).ok_or_else(|| {
            S3Error::InvalidRequest(format!("Checksum algorithm provided is unsupported. Please try again with any of the valid types: CRC32, CRC32C, CRC64NVME, SHA1, SHA256 (got {name:?})"))
        })?),
    };
    let kind = match ctx.header("x-amz-checksum-type") {
        None => None,
        Some(name) => Some(ChecksumType::from_name(name).ok_or_else(|| S3Error::InvalidRequest(format!("Value for x-amz-checksum-type header is invalid: {name:?}")))?),
    };
    match (alg, kind) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(S3Error::InvalidRequest("The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.".into())),
        (Some(a), kind) => {
            let kind = kind.unwrap_or(a.default_multipart_type());
            if !a.supports(kind) {
                return Err(S3Error::InvalidRequest(format!(
                    "The {} checksum type cannot be used with the {} checksum algorithm.",
                    kind.as_str(),
                    a.as_str().to_lowercase()
                )));
            }
            Ok(Some((a, kind)))
        }
    }
}

/// The flexible checksum algorithm a body says it carries: a header, a
/// trailer, or the SDK's hint.
fn sent_algorithm(ctx: &Ctx) -> Option<ChecksumAlgorithm> {
    ChecksumAlgorithm::ALL
        .into_iter()
        .find(|a| ctx.header(a.header_name()).is_some())
        .or_else(|| ctx.header("x-amz-trailer").and_then(ChecksumAlgorithm::from_header_name))
        .or_else(|| ctx.header("x-amz-sdk-checksum-algorithm").and_then(ChecksumAlgorithm::from_name))
}

pub async fn create_multipart_upload(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let headers = headers_to_store(ctx)?;
    let tags = tagging::from_request(ctx)?;
    let checksum = requested_checksum(ctx)?;
    let store = &ctx.app.store;
    let key = ctx.mkv_key();
    if key.len() + 1 + UPLOAD_ID_LEN > store.index.max_key {
        return Err(S3Error::KeyTooLongError);
    }
    let id = new_upload_id();
    let upload = Upload {
        initiated: now_secs(),
        headers,
        checksum: checksum.map(|(a, t)| (a.as_str().to_string(), t.as_str().to_string())),
        targets: store.placement(&key),
        owner: ctx.auth.access_key.clone(),
        tags,
    };
    let (bucket, k, i) = (ctx.bucket().to_string(), key.clone(), id.clone());
    if !store.index_write(move |ix| ix.create_upload(&bucket, &k, &i, &upload)).await.map_err(internal)? {
        return Err(S3Error::NoSuchBucket { bucket: ctx.bucket().to_string() });
    }
    let doc = InitiateMultipartUploadResult { bucket: ctx.bucket().to_string(), key: ctx.key().to_string(), upload_id: id }.to_xml();
    let mut resp = HttpResponse::Ok();
    if let Some((a, t)) = checksum {
        resp.insert_header(("x-amz-checksum-algorithm", a.as_str())).insert_header(("x-amz-checksum-type", t.as_str()));
    }
    Ok(resp.content_type("application/xml").body(doc))
}

/// Best-effort background delete of files (a part that was replaced, or
/// written for an upload that ended meanwhile).
fn discard(volumes: &VolumeClient, urls: Vec<String>) {
    let vol = volumes.clone();
    actix_web::rt::spawn(async move {
        for url in urls {
            if let Err(e) = vol.delete(&url).await {
                tracing::warn!("multipart cleanup: {e}");
            }
        }
    });
}

/// A stream that also feeds its bytes to `hasher` (a checksum the client
/// did not send but the upload needs).
fn hashed<S>(stream: S, hasher: Option<Rc<RefCell<Hasher>>>) -> impl Stream<Item = Result<Bytes, S3Error>> + Unpin
where
    S: Stream<Item = Result<Bytes, S3Error>> + Unpin,
{
    stream.inspect_ok(move |chunk| {
        if let Some(h) = &hasher {
            h.borrow_mut().update(chunk);
        }
    })
}

/// Write a part's bytes to fresh files on the upload's targets, then record
/// it (replacing a part of the same number, whose files are then deleted).
/// Returns the part recorded.
async fn store_part<S>(ctx: &Ctx<'_>, id: &str, upload: &Upload, number: u32, len: Option<u64>, stream: S, checksum: PartChecksum) -> Result<Part, S3Error>
where
    S: Stream<Item = Result<Bytes, S3Error>> + Unpin,
{
    let store = &ctx.app.store;
    let file = format!("{number}.{}", hex::encode(rand::random::<[u8; 8]>()));
    let urls: Vec<String> = upload.targets.iter().map(|t| part_url(t, id, &file)).collect();
    let extra = checksum.compute.map(|a| Rc::new(RefCell::new(Hasher::new(a))));
    let body = checksum.body;
    let written = match store.write_replicas(&urls, len, None, hashed(stream, extra.clone())).await {
        Ok(w) => w,
        Err(e) => {
            discard(&store.volumes, urls);
            return Err(body.and_then(|b| b.error()).unwrap_or_else(|| S3Error::from_store(e, ctx.key())));
        }
    };
    let value = body.and_then(|b| b.checksum()).or_else(|| {
        let h = extra?;
        let h = h.borrow().clone();
        Some(ChecksumValue { algorithm: h.algorithm(), value: h.finish_base64() })
    });
    let part = Part {
        size: written.size,
        md5: written.md5_hex(),
        checksum: value.map(|c| (c.algorithm.as_str().to_string(), c.value)),
        mtime: now_secs(),
        file,
        targets: upload.targets.clone(),
    };
    let _guard = store.locks.lock(&upload_lock(id)).await;
    let (k, i, p) = (ctx.mkv_key(), id.to_string(), part.clone());
    match store.index_write(move |ix| ix.put_part(&k, &i, number, &p)).await.map_err(internal)? {
        PartPut::NoUpload => {
            discard(&store.volumes, urls);
            Err(no_such_upload(id))
        }
        PartPut::Stored(Some(old)) if old.file != part.file => {
            discard(&store.volumes, old.targets.iter().map(|t| part_url(t, id, &old.file)).collect());
            Ok(part)
        }
        PartPut::Stored(_) => Ok(part),
    }
}

/// How a part's checksum is obtained: verified by the request body, or
/// computed here for an upload whose algorithm the client did not send.
struct PartChecksum {
    compute: Option<ChecksumAlgorithm>,
    body: Option<VerifyHandle>,
}

pub async fn upload_part(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let (id, upload) = load_upload(ctx)?;
    let number = part_number(ctx)?;
    super::encryption::check_write(ctx.req.headers())?;
    let sent = sent_algorithm(ctx);
    let wanted = upload_checksum(&upload).map(|(a, _)| a);
    if let (Some(w), Some(s)) = (wanted, sent) {
        if w != s {
            return Err(S3Error::InvalidRequest(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                w.as_str().to_lowercase(),
                s.as_str().to_lowercase()
            )));
        }
    }
    let body = Body::new(ctx.req, payload, &ctx.auth)?;
    match body.len {
        Some(n) if n > MAX_PART_SIZE => return Err(S3Error::EntityTooLarge),
        None if ctx.header("transfer-encoding").is_none() => return Err(S3Error::MissingContentLength),
        _ => {}
    }
    let Body { stream, len, checksum: handle, .. } = body;
    let checksum = PartChecksum { compute: if sent.is_none() { wanted } else { None }, body: Some(handle) };
    let part = store_part(ctx, id, &upload, number, len, stream, checksum).await?;
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("ETag", format!("\"{}\"", part.md5)));
    if let Some(c) = stored_checksum(&part.checksum) {
        resp.insert_header((c.algorithm.header_name(), c.value));
    }
    Ok(resp.finish())
}

pub async fn upload_part_copy(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    let (id, upload) = load_upload(ctx)?;
    let number = part_number(ctx)?;
    super::encryption::check_write(ctx.req.headers())?;
    let source = open_copy_source(ctx, ctx.header("x-amz-copy-source-range")).await?;
    if source.len > MAX_PART_SIZE {
        return Err(S3Error::InvalidRequest("The specified copy source is larger than the maximum allowable size for a copy source: 5368709120".into()));
    }
    let expected = source.len;
    let checksum = PartChecksum { compute: upload_checksum(&upload).map(|(a, _)| a), body: None };
    let part = store_part(ctx, id, &upload, number, Some(expected), source.stream, checksum).await?;
    if part.size != expected {
        return Err(S3Error::InternalError(format!("copied {} bytes of a {expected}-byte source range", part.size)));
    }
    let doc = CopyPartResult { etag: part.md5.clone(), last_modified: part.mtime, checksum: stored_checksum(&part.checksum) };
    Ok(xml_ok(doc.to_xml()))
}

fn owner_of(upload: &Upload) -> Owner {
    Owner { id: upload.owner.clone(), display_name: upload.owner.clone() }
}

/// A non-negative integer query parameter, at most `MAX_LISTED`.
fn max_param(ctx: &Ctx, name: &str) -> Result<usize, S3Error> {
    match ctx.param(name) {
        None => Ok(MAX_LISTED),
        Some(v) => v.trim().parse::<u32>().map(|n| (n as usize).min(MAX_LISTED)).map_err(|_| S3Error::InvalidArgument {
            message: format!("Provided {name} not an integer or within integer range"),
            name: name.into(),
            value: v.to_string(),
        }),
    }
}

pub async fn list_parts(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    let (id, upload) = load_upload(ctx)?;
    let max = max_param(ctx, "max-parts")?;
    let marker = match ctx.param("part-number-marker") {
        None | Some("") => 0,
        Some(v) => v.trim().parse::<u32>().map_err(|_| S3Error::InvalidArgument {
            message: "Provided part-number-marker not an integer or within integer range".into(),
            name: "part-number-marker".into(),
            value: v.to_string(),
        })?,
    };
    let mut parts = ctx.app.store.index.parts(id, marker, max + 1).map_err(internal)?;
    // Truncated only with a marker that moves on (max-parts=0 lists nothing).
    let is_truncated = max > 0 && parts.len() > max;
    parts.truncate(max);
    let checksum = upload_checksum(&upload);
    let doc = ListPartsResult {
        bucket: ctx.bucket().to_string(),
        key: ctx.key().to_string(),
        upload_id: id.to_string(),
        part_number_marker: marker,
        next_part_number_marker: parts.last().map_or(marker, |(n, _)| *n),
        max_parts: max as u32,
        is_truncated,
        parts: parts
            .into_iter()
            .map(|(n, p)| PartEntry { part_number: n, last_modified: p.mtime, etag: p.md5, size: p.size, checksum: stored_checksum(&p.checksum) })
            .collect(),
        owner: Some(owner_of(&upload)),
        checksum_algorithm: checksum.map(|(a, _)| a),
        checksum_type: checksum.map(|(_, t)| t),
    };
    Ok(xml_ok(doc.to_xml()))
}

pub async fn list_multipart_uploads(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let max = max_param(ctx, "max-uploads")?;
    let url = url_encoding(ctx)?;
    let enc = |s: &str| encode(s.as_bytes(), url);
    let prefix = ctx.param("prefix").unwrap_or("");
    let delimiter = ctx.param("delimiter").filter(|d| !d.is_empty());
    let key_marker = ctx.param("key-marker").unwrap_or("");
    let id_marker = ctx.param("upload-id-marker").unwrap_or("");
    let base = super::mkv_key(ctx.bucket(), "");
    let scan_prefix = super::mkv_key(ctx.bucket(), prefix);
    // Strictly after the marker: past the marker's upload, or past every
    // upload of the marker key.
    let start = match (key_marker, id_marker) {
        ("", _) => None,
        (k, "") => Some([super::mkv_key(ctx.bucket(), k), vec![1]].concat()),
        (k, i) => Some([upload_key(&super::mkv_key(ctx.bucket(), k), i), vec![0]].concat()),
    };
    let mut uploads: Vec<UploadEntry> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut last: Option<(String, Option<String>)> = None;
    let mut is_truncated = false;
    let full = |n: usize| n >= max;
    ctx.app
        .store
        .index
        .scan_uploads(&scan_prefix, start.as_deref(), |k, id, u| {
            let key = String::from_utf8_lossy(&k[base.len()..]).into_owned();
            let rest = key.get(prefix.len()..).unwrap_or("");
            let group = delimiter.and_then(|d| rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()])));
            if let Some(cp) = group {
                let past = prefix_successor(&super::mkv_key(ctx.bucket(), &cp)).map_or(Scan::Stop, Scan::SeekTo);
                // Listed whole on an earlier page.
                if key_marker.starts_with(&cp) {
                    return past;
                }
                if full(uploads.len() + prefixes.len()) {
                    is_truncated = max > 0;
                    return Scan::Stop;
                }
                last = Some((cp.clone(), None));
                prefixes.push(cp);
                return past;
            }
            if full(uploads.len() + prefixes.len()) {
                is_truncated = max > 0;
                return Scan::Stop;
            }
            let checksum = upload_checksum(&u);
            last = Some((key.clone(), Some(id.to_string())));
            uploads.push(UploadEntry {
                key,
                upload_id: id.to_string(),
                initiated: u.initiated,
                owner: Some(owner_of(&u)),
                checksum_algorithm: checksum.map(|(a, _)| a),
                checksum_type: checksum.map(|(_, t)| t),
            });
            Scan::Continue
        })
        .map_err(internal)?;
    for u in &mut uploads {
        u.key = enc(&u.key);
    }
    let (next_key, next_id) = match (is_truncated, last) {
        (true, Some((k, id))) => (Some(enc(&k)), id),
        _ => (None, None),
    };
    let doc = ListMultipartUploadsResult {
        bucket: ctx.bucket().to_string(),
        key_marker: enc(key_marker),
        upload_id_marker: id_marker.to_string(),
        next_key_marker: next_key,
        next_upload_id_marker: next_id,
        prefix: enc(prefix),
        delimiter: delimiter.map(enc),
        max_uploads: max as u32,
        is_truncated,
        encoding_type: url.then(|| "url".to_string()),
        uploads,
        common_prefixes: prefixes.iter().map(|p| enc(p)).collect(),
    };
    Ok(xml_ok(doc.to_xml()))
}

pub async fn abort_multipart_upload(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let id = upload_id(ctx)?;
    let store = &ctx.app.store;
    let _guard = store.locks.lock(&upload_lock(id)).await;
    match abort_upload(&store.index, &store.volumes, &ctx.mkv_key(), id).await {
        Ok(true) => Ok(HttpResponse::NoContent().finish()),
        Ok(false) => Err(no_such_upload(id)),
        Err(e) => Err(internal(e)),
    }
}

/// Delete an upload's folder on every volume that may hold its parts.
async fn delete_upload_files(volumes: &VolumeClient, targets: &[String], id: &str) -> Result<(), Error> {
    let deletes = targets.iter().map(|t| upload_dir_url(t, id)).map(|url| async move { volumes.delete(&url).await });
    futures::future::join_all(deletes).await.into_iter().collect()
}

fn targets_of(upload: &Upload, parts: &[(u32, Part)]) -> Vec<String> {
    let mut targets = upload.targets.clone();
    for t in parts.iter().flat_map(|(_, p)| &p.targets) {
        if !targets.contains(t) {
            targets.push(t.clone());
        }
    }
    targets
}

async fn blocking<T: Send + 'static>(index: &Index, f: impl FnOnce(&Index) -> Result<T, IndexError> + Send + 'static) -> Result<T, Error> {
    let index = index.clone();
    tokio::task::spawn_blocking(move || f(&index)).await.map_err(|e| Error::Internal(e.to_string()))?.map_err(Error::from)
}

/// Abort an upload: its part files, then its records. Returns false if
/// there is no such upload. Files go first, so a volume that fails leaves
/// the upload listed for another try; they go again after the records, for
/// a part recorded in between by a process that does not share our locks
/// (a part written after that finds no upload and removes its own files).
pub async fn abort_upload(index: &Index, volumes: &VolumeClient, key: &[u8], id: &str) -> Result<bool, Error> {
    let Some(upload) = index.upload(key, id)? else { return Ok(false) };
    let parts = index.parts(id, 0, usize::MAX)?;
    let targets = targets_of(&upload, &parts);
    delete_upload_files(volumes, &targets, id).await?;
    let (k, i) = (key.to_vec(), id.to_string());
    let Some((upload, parts)) = blocking(index, move |ix| ix.finish_upload(&k, &i, None)).await? else { return Ok(false) };
    delete_upload_files(volumes, &targets_of(&upload, &parts), id).await?;
    Ok(true)
}

/// Abort uploads (object key, id), each under its lock. One that fails is
/// logged (`why` says what aborted it) and left for the expiry sweep.
/// Returns how many were aborted.
pub async fn abort_uploads(store: &Store, uploads: Vec<(Vec<u8>, String)>, why: &str) -> usize {
    let mut aborted = 0;
    for (key, id) in uploads {
        let _guard = store.locks.lock(&upload_lock(&id)).await;
        match abort_upload(&store.index, &store.volumes, &key, &id).await {
            Ok(true) => aborted += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!("{why} upload {id} of {}: {e}", String::from_utf8_lossy(&key)),
        }
    }
    aborted
}

/// Abort every upload initiated more than `expiry` ago; forget completions
/// older than `COMPLETED_TTL`. Returns how many uploads were aborted.
pub async fn sweep(store: &Store, expiry: Duration) -> Result<usize, Error> {
    let now = now_secs();
    let cutoff = now.saturating_sub(expiry.as_secs());
    let stale = store.index.all_uploads()?.into_iter().filter(|(_, _, u)| u.initiated <= cutoff).map(|(key, id, _)| (key, id));
    let aborted = abort_uploads(store, stale.collect(), "expiring").await;
    let before = now.saturating_sub(COMPLETED_TTL.as_secs());
    blocking(&store.index, move |ix| ix.purge_completed(before)).await?;
    Ok(aborted)
}

/// The server's expiry sweep: every quarter of `expiry` (1 s to 1 h).
pub async fn sweep_forever(store: Store, expiry: Duration) {
    let mut every = tokio::time::interval((expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600)));
    loop {
        every.tick().await;
        match sweep(&store, expiry).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("aborted {n} multipart uploads older than {}", humantime::format_duration(expiry)),
            Err(e) => tracing::warn!("multipart expiry sweep: {e}"),
        }
    }
}

/// What Complete will assemble, once the part list checked out.
#[derive(Debug)]
struct Plan {
    parts: Vec<(u32, Part)>,
    etag: String,
    /// The object's checksum when known before assembly (COMPOSITE).
    composite: Option<ChecksumValue>,
    /// The algorithm to compute over the whole object (FULL_OBJECT).
    full_object: Option<ChecksumAlgorithm>,
}

fn invalid_part(n: u32) -> S3Error {
    S3Error::InvalidPart(format!(
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag. (part {n})"
    ))
}

fn trim_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

/// Check a Complete's part list against the parts uploaded, as AWS does:
/// ascending numbers (1, 2, 3, … when each part has a checksum the object's
/// combines), known parts with their ETags and checksums, every part but the
/// last at least `MIN_PART_SIZE`.
fn plan(upload: &Upload, uploaded: &[(u32, Part)], listed: &[CompletedPart]) -> Result<Plan, S3Error> {
    if listed.windows(2).any(|w| w[1].part_number <= w[0].part_number) {
        return Err(S3Error::InvalidPartOrder);
    }
    let per_part = matches!(upload_checksum(upload), Some((_, ChecksumType::Composite)));
    if per_part && listed.iter().zip(1..).any(|(l, n)| l.part_number != n) {
        return Err(S3Error::InvalidPartOrder);
    }
    let mut parts = Vec::with_capacity(listed.len());
    for l in listed {
        let n = l.part_number;
        let Ok(i) = uploaded.binary_search_by_key(&n, |(m, _)| *m) else { return Err(invalid_part(n)) };
        let part = &uploaded[i].1;
        if trim_etag(&l.etag) != part.md5 {
            return Err(invalid_part(n));
        }
        for c in &l.checksums {
            if stored_checksum(&part.checksum).as_ref() != Some(c) {
                return Err(S3Error::InvalidPart(format!("The {} you specified for part {n} did not match what we received.", c.algorithm.xml_element())));
            }
        }
        parts.push((n, part.clone()));
    }
    if let Some((n, p)) = parts[..parts.len().saturating_sub(1)].iter().find(|(_, p)| p.size < MIN_PART_SIZE) {
        tracing::info!("Complete refused: part {n} is {} bytes, not the last", p.size);
        return Err(S3Error::EntityTooSmall);
    }
    let mut md5s = Md5::new();
    for (n, p) in &parts {
        md5s.update(hex::decode(&p.md5).map_err(|_| internal(format!("part {n} has a bad MD5 record")))?);
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), parts.len());
    let (composite_value, full_object) = match upload_checksum(upload) {
        None => (None, None),
        Some((alg, ChecksumType::FullObject)) => (None, Some(alg)),
        Some((alg, ChecksumType::Composite)) => {
            let raws = parts
                .iter()
                .map(|(n, p)| stored_checksum(&p.checksum).filter(|c| c.algorithm == alg).and_then(|c| alg.decode(&c.value)).ok_or_else(|| invalid_part(*n)))
                .collect::<Result<Vec<_>, _>>()?;
            (Some(ChecksumValue { algorithm: alg, value: composite(alg, &raws) }), None)
        }
    };
    Ok(Plan { parts, etag, composite: composite_value, full_object })
}

/// The result document of a completed upload.
fn complete_result(location: String, bucket: &str, key: &str, etag: &str, checksum: &Option<(String, String, String)>) -> String {
    let c = checksum.as_ref();
    CompleteMultipartUploadResult {
        location,
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag: etag.to_string(),
        checksum: c.and_then(|(a, v, _)| Some(ChecksumValue { algorithm: ChecksumAlgorithm::from_name(a)?, value: v.clone() })),
        checksum_type: c.and_then(|(_, _, t)| ChecksumType::from_name(t)),
    }
    .to_xml()
}

pub async fn complete_multipart_upload(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let id = upload_id(ctx)?;
    let listed = parse_complete_multipart_upload(&Body::describing_object(ctx.req, payload, &ctx.auth)?.read_all().await?)?;
    if listed.len() > MAX_PART_NUMBER as usize {
        return Err(S3Error::MalformedXML);
    }
    let store = ctx.app.store.clone();
    let key = ctx.mkv_key();
    let host = ctx.header("host").unwrap_or("localhost");
    let location = format!("http://{host}/{}/{}", ctx.bucket(), percent_encode(ctx.key().as_bytes(), URL_SAFE));
    let guard = store.locks.lock(&upload_lock(id)).await;
    let Some(upload) = store.index.upload(&key, id).map_err(internal)? else {
        // Done already: the same list answers the same result.
        let same = |c: &Completed| c.key.as_bytes() == key && c.parts.iter().map(|(n, e)| (*n, e.clone())).eq(listed.iter().map(|l| (l.part_number, trim_etag(&l.etag))));
        return match store.index.completed(id).map_err(internal)? {
            Some(c) if same(&c) => Ok(xml_ok(complete_result(location, ctx.bucket(), ctx.key(), &c.etag, &c.checksum))),
            _ => Err(no_such_upload(id)),
        };
    };
    if let Some(t) = ctx.header("x-amz-checksum-type") {
        if upload_checksum(&upload).map(|(_, kind)| kind) != ChecksumType::from_name(t) {
            return Err(S3Error::InvalidRequest(format!("The upload was created using a different checksum type than {t:?}")));
        }
    }
    let uploaded = store.index.parts(id, 0, usize::MAX).map_err(internal)?;
    let plan = plan(&upload, &uploaded, &listed)?;
    // The client's value for the whole object, checked before (COMPOSITE)
    // or after (FULL_OBJECT) assembly.
    let claimed = ChecksumAlgorithm::ALL.into_iter().find_map(|a| ctx.header(a.header_name()).map(|v| ChecksumValue { algorithm: a, value: v.trim().to_string() }));
    if let (Some(c), Some(want)) = (&plan.composite, &claimed) {
        if c != want {
            return Err(S3Error::BadDigest(format!("The {} you specified did not match the calculated checksum.", want.algorithm.as_str())));
        }
    }
    check_write_conditions(ctx, &key)?;
    let job = Assembly {
        store,
        key,
        s3_key: ctx.key().to_string(),
        bucket: ctx.bucket().to_string(),
        id: id.to_string(),
        upload,
        listed: listed.iter().map(|l| (l.part_number, trim_etag(&l.etag))).collect(),
        plan,
        claimed,
        if_none_match: ctx.header("if-none-match").map(str::to_string),
        if_match: ctx.header("if-match").map(str::to_string),
        location,
        _upload_lock: guard,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Runs to the end even if the client goes away, as S3 completes anyway.
    actix_web::rt::spawn(async move {
        let _ = tx.send(job.run().await);
    });
    let resource = ctx.req.uri().path().to_string();
    Ok(HttpResponse::Ok().content_type("application/xml").streaming(keepalive_body(rx, resource, ctx.request_id.clone())))
}

/// The body of a Complete: the XML declaration at once, a space every
/// `KEEPALIVE` while the object is assembled, then the result or an
/// `<Error>` document (S3 answers errors found this late inside the 200).
fn keepalive_body(
    rx: tokio::sync::oneshot::Receiver<Result<String, S3Error>>,
    resource: String,
    request_id: String,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let head = futures::stream::once(async { Ok(Bytes::from_static(XML_DECL.as_bytes())) });
    let rest = futures::stream::unfold(Some((rx, tick)), move |state| {
        let (resource, request_id) = (resource.clone(), request_id.clone());
        async move {
            let (mut rx, mut tick) = state?;
            tokio::select! {
                done = &mut rx => {
                    let doc = match done {
                        Ok(Ok(doc)) => doc,
                        Ok(Err(e)) => {
                            if e.status().is_server_error() {
                                tracing::warn!("S3 CompleteMultipartUpload {resource}: {e:?}");
                            }
                            e.to_xml(&resource, &request_id)
                        }
                        Err(_) => S3Error::InternalError("the assembly task stopped".into()).to_xml(&resource, &request_id),
                    };
                    let body = doc.strip_prefix(XML_DECL).map(str::to_string).unwrap_or(doc);
                    Some((Ok(Bytes::from(body)), None))
                }
                _ = tick.tick() => Some((Ok(Bytes::from_static(b" ")), Some((rx, tick)))),
            }
        }
    });
    head.chain(rest)
}

/// A Complete whose part list checked out: assemble, commit, clean up.
struct Assembly {
    store: Store,
    key: Vec<u8>,
    s3_key: String,
    bucket: String,
    id: String,
    upload: Upload,
    listed: Vec<(u32, String)>,
    plan: Plan,
    claimed: Option<ChecksumValue>,
    if_none_match: Option<String>,
    if_match: Option<String>,
    location: String,
    /// Held to the end: no part changes while its bytes are read.
    _upload_lock: KeyGuard,
}

impl Assembly {
    async fn run(self) -> Result<String, S3Error> {
        let store = &self.store;
        let total: u64 = self.plan.parts.iter().map(|(_, p)| p.size).sum();
        let full = self.plan.full_object.map(|a| Rc::new(RefCell::new(Hasher::new(a))));
        let bytes = part_bytes(store.volumes.clone(), self.id.clone(), self.plan.parts.clone());
        let bytes = bytes.inspect_ok({
            let full = full.clone();
            move |chunk| {
                if let Some(h) = &full {
                    h.borrow_mut().update(chunk);
                }
            }
        });
        let staged = store.stage(&self.key, Some(total), bytes).await.map_err(|e| match e {
            Error::KeyTooLong => S3Error::KeyTooLongError,
            e => internal(format!("assembling {}: {e}", self.s3_key)),
        })?;
        let checksum = match (&self.plan.composite, full) {
            (Some(c), _) => Some((c.algorithm.as_str().to_string(), c.value.clone(), ChecksumType::Composite.as_str().to_string())),
            (None, Some(h)) => {
                let h = h.borrow().clone();
                let value = ChecksumValue { algorithm: h.algorithm(), value: h.finish_base64() };
                if self.claimed.as_ref().is_some_and(|c| *c != value) {
                    drop(staged);
                    return Err(S3Error::BadDigest(format!("The {} you specified did not match the calculated checksum.", value.algorithm.as_str())));
                }
                Some((value.algorithm.as_str().to_string(), value.value, ChecksumType::FullObject.as_str().to_string()))
            }
            (None, None) => None,
        };
        let meta = ObjectMeta {
            mtime: now_secs(),
            headers: self.upload.headers.clone(),
            etag: Some(self.plan.etag.clone()),
            checksum: checksum.clone(),
            parts: self.plan.parts.iter().map(|(_, p)| p.size).collect(),
            part_checksums: self.plan.parts.iter().map(|(_, p)| p.checksum.as_ref().map(|c| c.1.clone())).collect::<Option<_>>().unwrap_or_default(),
            tags: self.upload.tags.clone(),
            ..Default::default()
        };
        {
            let _guard = store.locks.lock(&self.key).await;
            if let Err(e) = write_conditions(&store.index, self.if_none_match.as_deref(), self.if_match.as_deref(), &self.key, &self.s3_key) {
                drop(staged);
                return Err(e);
            }
            store.commit_staged(staged, meta).await.map_err(|e| S3Error::from_store(e, &self.s3_key))?;
        }
        let done = Completed {
            key: String::from_utf8_lossy(&self.key).into_owned(),
            parts: self.listed.clone(),
            etag: self.plan.etag.clone(),
            checksum: checksum.clone(),
            at: now_secs(),
        };
        let (k, i) = (self.key.clone(), self.id.clone());
        // The object is committed: a failure from here on leaves part files
        // (and, at worst, the upload listed), never a wrong object.
        match blocking(&store.index, move |ix| ix.finish_upload(&k, &i, Some(&done))).await {
            Ok(Some((upload, parts))) => {
                if let Err(e) = delete_upload_files(&store.volumes, &targets_of(&upload, &parts), &self.id).await {
                    tracing::warn!("completed upload {}: parts left on a volume: {e}", self.id);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("completed upload {}: records left: {e}", self.id),
        }
        Ok(complete_result(self.location.clone(), &self.bucket, &self.s3_key, &self.plan.etag, &checksum))
    }
}

/// The parts' bytes in order, each read from a replica that answers
/// (random order) and checked against its recorded size.
fn part_bytes(volumes: VolumeClient, id: String, parts: Vec<(u32, Part)>) -> LocalBoxStream<'static, Result<Bytes, Error>> {
    futures::stream::iter(parts)
        .then(move |(n, part)| open_part(volumes.clone(), id.clone(), n, part))
        .try_flatten()
        .boxed_local()
}

async fn open_part(volumes: VolumeClient, id: String, n: u32, part: Part) -> Result<LocalBoxStream<'static, Result<Bytes, Error>>, Error> {
    let mut urls: Vec<String> = part.targets.iter().map(|t| part_url(t, &id, &part.file)).collect();
    urls.shuffle(&mut rand::rng());
    let mut last = Error::NoReplica;
    for url in urls {
        match volumes.get(&url, None).await {
            Ok(resp) => return Ok(sized(resp, url, n, part.size)),
            Err(e) => last = e,
        }
    }
    Err(Error::Internal(format!("no replica of part {n} of upload {id} could be read: {last}")))
}

/// A part file's body that fails unless it is exactly `size` bytes.
fn sized(resp: reqwest::Response, url: String, n: u32, size: u64) -> LocalBoxStream<'static, Result<Bytes, Error>> {
    let short = move |got: u64| Error::volume(&url, format!("part {n} is {got} bytes, recorded {size}"));
    futures::stream::unfold((resp.bytes_stream().boxed(), 0u64, false), move |(mut body, seen, done)| {
        let short = short.clone();
        async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > size {
                        return Some((Err(short(seen)), (body, seen, true)));
                    }
                    Some((Ok(chunk), (body, seen, false)))
                }
                Some(Err(e)) => Some((Err(Error::Internal(format!("reading part {n}: {e}"))), (body, seen, true))),
                None if seen == size => None,
                None => Some((Err(short(seen)), (body, seen, true))),
            }
        }
    })
    .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::checksum::digest;
    use base64::Engine;

    fn part(n: u32, size: u64, crc: Option<&str>) -> (u32, Part) {
        let md5 = hex::encode(Md5::digest(n.to_string()));
        (n, Part { size, md5, checksum: crc.map(|c| ("CRC32".into(), c.into())), mtime: 0, file: format!("{n}.x"), targets: vec![] })
    }

    fn listed(n: u32, etag: &str, crc: Option<&str>) -> CompletedPart {
        let checksums = crc.map(|c| ChecksumValue { algorithm: ChecksumAlgorithm::Crc32, value: c.into() }).into_iter().collect();
        CompletedPart { part_number: n, etag: format!("\"{etag}\""), checksums }
    }

    fn upload(checksum: Option<(&str, &str)>) -> Upload {
        Upload { initiated: 0, headers: vec![], checksum: checksum.map(|(a, t)| (a.into(), t.into())), targets: vec![], owner: "o".into(), tags: vec![] }
    }

    #[test]
    fn plan_checks_the_list_like_aws() {
        let big = MIN_PART_SIZE;
        let crc = |s: &str| base64::engine::general_purpose::STANDARD.encode(digest(ChecksumAlgorithm::Crc32, s.as_bytes()));
        let (c1, c2) = (crc("1"), crc("2"));
        let up = vec![part(1, big, Some(&c1)), part(2, 10, Some(&c2)), part(3, 1, None)];
        let e = |i: usize| up[i].1.md5.clone();
        let u = upload(Some(("CRC32", "COMPOSITE")));
        let p = plan(&u, &up, &[listed(1, &e(0), Some(&c1)), listed(2, &e(1), None)]).unwrap();
        let mut md5s = Md5::new();
        md5s.update(hex::decode(e(0)).unwrap());
        md5s.update(hex::decode(e(1)).unwrap());
        assert_eq!(p.etag, format!("{}-2", hex::encode(md5s.finalize())));
        let raws: Vec<Vec<u8>> = [&c1, &c2].iter().map(|c| ChecksumAlgorithm::Crc32.decode(c).unwrap()).collect();
        assert_eq!(p.composite.unwrap().value, composite(ChecksumAlgorithm::Crc32, &raws));
        assert!(p.full_object.is_none());

        assert_eq!(plan(&u, &up, &[listed(2, &e(1), None), listed(1, &e(0), None)]).unwrap_err(), S3Error::InvalidPartOrder);
        assert_eq!(plan(&u, &up, &[listed(1, &e(0), None), listed(1, &e(0), None)]).unwrap_err(), S3Error::InvalidPartOrder);
        assert_eq!(plan(&upload(None), &up, &[listed(4, &e(0), None)]).unwrap_err().aws_code(), "InvalidPart");
        assert_eq!(plan(&u, &up, &[listed(1, &e(1), None)]).unwrap_err().aws_code(), "InvalidPart");
        assert_eq!(plan(&u, &up, &[listed(1, &e(0), Some(&c2))]).unwrap_err().aws_code(), "InvalidPart");
        assert_eq!(plan(&upload(None), &up, &[listed(2, &e(1), None), listed(3, &e(2), None)]).unwrap_err(), S3Error::EntityTooSmall);
        // Parts a composite checksum combines are numbered from 1 without gaps.
        assert_eq!(plan(&u, &up, &[listed(2, &e(1), None), listed(3, &e(2), None)]).unwrap_err(), S3Error::InvalidPartOrder);
        assert_eq!(plan(&u, &up, &[listed(1, &e(0), None), listed(3, &e(2), None)]).unwrap_err(), S3Error::InvalidPartOrder);
        // A composite checksum needs every part's value.
        let unsummed = vec![part(1, big, Some(&c1)), part(2, big, None)];
        let e2 = unsummed[1].1.md5.clone();
        assert_eq!(plan(&u, &unsummed, &[listed(1, &e(0), None), listed(2, &e2, None)]).unwrap_err().aws_code(), "InvalidPart");
        let plain = plan(&upload(None), &up, &[listed(1, &e(0), None), listed(3, &e(2), None)]).unwrap();
        assert!(plain.composite.is_none() && plain.full_object.is_none() && plain.etag.ends_with("-2"));
        let full = plan(&upload(Some(("CRC64NVME", "FULL_OBJECT"))), &up, &[listed(3, &e(2), None)]).unwrap();
        assert_eq!(full.full_object, Some(ChecksumAlgorithm::Crc64Nvme));
    }

    #[test]
    fn upload_ids_sort_by_creation() {
        let a = new_upload_id();
        std::thread::sleep(Duration::from_millis(2));
        let b = new_upload_id();
        assert_eq!((a.len(), b.len()), (UPLOAD_ID_LEN, UPLOAD_ID_LEN));
        assert!(a < b);
    }

    #[tokio::test]
    async fn keepalive_body_sends_declaration_then_result() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tx.send(Ok(format!("{XML_DECL}<Done/>"))).unwrap();
        let out: Vec<Bytes> = keepalive_body(rx, "/b/k".into(), "R".into()).map(Result::unwrap).collect().await;
        assert_eq!(out.concat(), format!("{XML_DECL}<Done/>").as_bytes());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tx.send(Err(S3Error::EntityTooSmall)).unwrap();
        let out: Vec<Bytes> = keepalive_body(rx, "/b/k".into(), "R".into()).map(Result::unwrap).collect().await;
        let text = String::from_utf8(out.concat()).unwrap();
        assert!(text.starts_with(XML_DECL) && text.contains("<Code>EntityTooSmall</Code>") && text.matches("<?xml").count() == 1, "{text}");
    }
}
