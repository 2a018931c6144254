//! Bucket operations: create, head, delete, list buckets, location,
//! versioning, and the default answers for configurations we do not keep.

use actix_web::{web, HttpResponse};

use super::body::Body;
use super::error::S3Error;
use super::permission::{self, Need, Principal};
use super::router::{valid_bucket_name, BucketDefault};
use super::xml::{self, BucketEntry, ListAllMyBucketsResult, Owner};
use super::{multipart, Ctx};
use crate::index::{BucketDelete, BucketInfo, Grant};
use crate::store::now_secs;

fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::InternalError(e.to_string())
}

/// The owner shown in listings: the access key, as there are no accounts.
pub fn owner(ctx: &Ctx) -> Owner {
    Owner { id: ctx.auth.access_key.clone(), display_name: ctx.auth.access_key.clone() }
}

pub fn xml_ok(doc: String) -> HttpResponse {
    HttpResponse::Ok().content_type("application/xml").body(doc)
}

pub fn list_buckets(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    let mut buckets = ctx.app.store.index.buckets().map_err(internal)?;
    // A key sees the buckets it may read.
    buckets.retain(|(_, info)| permission::granted(&ctx.principal, info, Need::Read));
    let doc = ListAllMyBucketsResult {
        owner: owner(ctx),
        buckets: buckets.into_iter().map(|(name, info)| BucketEntry { name, creation_date: info.created }).collect(),
    };
    Ok(xml_ok(doc.to_xml()))
}

pub async fn create_bucket(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let name = ctx.bucket();
    if !valid_bucket_name(name) {
        return Err(S3Error::InvalidBucketName { bucket: name.to_string() });
    }
    // Any location is accepted: there is one location.
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    xml::parse_create_bucket_configuration(&body)?;
    // The creator owns it; a key made by `mkv key` gets every permission.
    let mut info = BucketInfo { created: now_secs(), owner: Some(ctx.principal.id().to_string()), ..Default::default() };
    if let Principal::Key(id) = &ctx.principal {
        info.grants.insert(id.clone(), Grant { read: true, write: true, owner: true });
    }
    let owned = name.to_string();
    let created = ctx.app.store.index_write(move |ix| ix.create_bucket(&owned, &info)).await;
    if created.map_err(internal)? {
        return Ok(HttpResponse::Ok().insert_header(("Location", format!("/{name}"))).finish());
    }
    match ctx.require(Need::Owner, name, None) {
        Ok(()) => Err(S3Error::BucketAlreadyOwnedByYou { bucket: name.to_string() }),
        Err(_) => Err(S3Error::BucketAlreadyExists { bucket: name.to_string() }),
    }
}

pub fn head_bucket(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    Ok(HttpResponse::Ok().insert_header(("x-amz-bucket-region", ctx.region())).finish())
}

pub fn delete_bucket(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let name = ctx.bucket();
    match ctx.app.store.index.delete_bucket_if_empty(name).map_err(internal)? {
        BucketDelete::NotEmpty => Err(S3Error::BucketNotEmpty { bucket: name.to_string() }),
        BucketDelete::Deleted { uploads } => {
            // Uploads in progress go with the bucket, as in AWS: their files,
            // then their records. None can start now, and a part still
            // arriving finds its upload gone and removes its own files.
            if !uploads.is_empty() {
                let store = ctx.app.store.clone();
                actix_web::rt::spawn(async move { multipart::abort_uploads(&store, uploads, "removing the deleted bucket's").await });
            }
            Ok(HttpResponse::NoContent().finish())
        }
    }
}

pub fn get_location(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    // us-east-1 is the empty LocationConstraint, as AWS answers it.
    let region = ctx.app.store.config.s3_region.as_deref().filter(|r| *r != "us-east-1").unwrap_or("");
    Ok(xml_ok(xml::location_constraint(region)))
}

pub fn get_versioning(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    Ok(xml_ok(xml::versioning_configuration()))
}

pub fn get_default(ctx: &Ctx, what: BucketDefault) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    match what {
        BucketDefault::Acl => Ok(xml_ok(acl_document(ctx))),
        BucketDefault::Missing(code, message) => Err(S3Error::NotConfigured { code, message, bucket: ctx.bucket().to_string() }),
        BucketDefault::Empty(doc) => Ok(xml_ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{doc}"))),
    }
}

/// The only ACL there is: the owner has full control.
pub fn acl_document(ctx: &Ctx) -> String {
    let o = owner(ctx);
    let id = xml::escape(&o.id);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AccessControlPolicy xmlns=\"{ns}\"><Owner><ID>{id}</ID><DisplayName>{id}</DisplayName></Owner><AccessControlList><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>{id}</ID><DisplayName>{id}</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>",
        ns = xml::S3_NS
    )
}

/// AWS's limit on a bucket policy document.
const MAX_POLICY: usize = 20 * 1024;

/// PutBucketPolicy: stored only if the evaluator implements all of it
/// (`policy::parse`), else `MalformedPolicy` naming the part.
pub async fn put_policy(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    if body.len() > MAX_POLICY {
        return Err(S3Error::MalformedPolicy("Policies must be less than 20 KB".into()));
    }
    let text = String::from_utf8(body).map_err(|_| S3Error::MalformedPolicy("This policy contains invalid Json: not UTF-8".into()))?;
    super::policy::parse(ctx.bucket(), &text).map_err(|e| S3Error::MalformedPolicy(e.to_string()))?;
    set_policy(ctx, Some(text))
}

pub fn get_policy(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    let info = ctx.app.store.index.bucket(ctx.bucket()).map_err(internal)?;
    match info.and_then(|b| b.policy) {
        Some(text) => Ok(HttpResponse::Ok().content_type("application/json").body(text)),
        None => Err(S3Error::NotConfigured { code: "NoSuchBucketPolicy", message: "The bucket policy does not exist", bucket: ctx.bucket().to_string() }),
    }
}

pub fn delete_policy(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    set_policy(ctx, None)
}

fn set_policy(ctx: &Ctx, policy: Option<String>) -> Result<HttpResponse, S3Error> {
    match ctx.app.store.index.update_bucket(ctx.bucket(), |b| {
        b.policy = policy;
        (true, ())
    }).map_err(internal)? {
        Some(()) => Ok(HttpResponse::NoContent().finish()),
        None => Err(S3Error::NoSuchBucket { bucket: ctx.bucket().to_string() }),
    }
}
