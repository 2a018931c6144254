//! DeleteObjects: up to 1000 keys in one request, each deleted under its key
//! lock as DeleteObject does (with its `ETag` as DeleteObject's `If-Match`),
//! with a per-key result.

use actix_web::{web, HttpResponse};
use futures::StreamExt;

use super::body::Body;
use super::bucket::xml_ok;
use super::checksum::ChecksumAlgorithm;
use super::error::S3Error;
use super::object::write_conditions;
use super::router::MAX_KEY_LEN;
use super::xml::{parse_delete, DeleteErrorEntry, DeleteResult, DeletedEntry, ObjectIdentifier};
use super::{mkv_key, Ctx};


/// Keys deleted at once (each touches every replica of its key).
const DELETES_IN_FLIGHT: usize = 16;

/// AWS refuses a DeleteObjects body that carries no integrity check: a
/// Content-MD5, or a flexible checksum in a header or announced trailer.
/// The body pipeline verifies whichever is present.
fn require_integrity_header(ctx: &Ctx) -> Result<(), S3Error> {
    let has_checksum = ChecksumAlgorithm::ALL.iter().any(|a| ctx.header(a.header_name()).is_some())
        || ctx.header("x-amz-trailer").is_some_and(|t| ChecksumAlgorithm::from_header_name(t.trim()).is_some());
    if ctx.header("content-md5").is_some() || has_checksum {
        Ok(())
    } else {
        Err(S3Error::InvalidRequest("Missing required header for this request: Content-MD5".into()))
    }
}

async fn delete_one(ctx: &Ctx<'_>, object: ObjectIdentifier) -> Result<DeletedEntry, DeleteErrorEntry> {
    let fail = |error: S3Error| DeleteErrorEntry { key: object.key.clone(), version_id: object.version_id.clone(), error };
    if let Some(v) = object.version_id.as_deref().filter(|v| *v != "null") {
        return Err(fail(S3Error::InvalidArgument {
            message: "Invalid version id specified".into(),
            name: "versionId".into(),
            value: v.to_string(),
        }));
    }
    if object.key.is_empty() {
        return Err(fail(S3Error::InvalidArgument { message: "A key must not be empty".into(), name: "Key".into(), value: String::new() }));
    }
    if object.key.len() > MAX_KEY_LEN {
        return Err(fail(S3Error::KeyTooLongError));
    }
    let key = mkv_key(ctx.bucket(), &object.key);
    let store = &ctx.app.store;
    let _guard = store.locks.lock(&key).await;
    if let Some(etag) = &object.etag {
        write_conditions(&store.index, None, Some(etag), &key, &object.key).map_err(fail)?;
    }
    // Deleting a missing key succeeds, as in S3 (unless an ETag was given).
    match store.remove(&key).await {
        Ok(()) => Ok(DeletedEntry { key: object.key, version_id: object.version_id }),
        Err(e) => {
            let error = S3Error::from_store(e, &object.key);
            if error.status().is_server_error() {
                tracing::warn!("DeleteObjects {:?}: {error:?}", object.key);
            }
            Err(fail(error))
        }
    }
}

pub async fn delete_objects(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    require_integrity_header(ctx)?;
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    let request = parse_delete(&body)?;
    let results: Vec<_> = futures::stream::iter(request.objects).map(|o| delete_one(ctx, o)).buffered(DELETES_IN_FLIGHT).collect().await;
    let mut doc = DeleteResult { deleted: Vec::new(), errors: Vec::new() };
    for r in results {
        match r {
            // Quiet mode reports only the failures.
            Ok(d) if !request.quiet => doc.deleted.push(d),
            Ok(_) => {}
            Err(e) => doc.errors.push(e),
        }
    }
    Ok(xml_ok(doc.to_xml()))
}
