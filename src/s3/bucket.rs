//! Bucket operations: create, head, delete, list buckets, location,
//! versioning, and the default answers for configurations we do not keep.

use actix_web::{web, HttpResponse};

use super::body::Body;
use super::error::S3Error;
use super::list::{decode_token, encode_token};
use super::permission::{self, Need, Principal};
use super::router::{valid_bucket_name, BucketDefault};
use super::sigv4;
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

/// Largest ListBuckets page, and the page a paginated request gets by
/// default (AWS's).
const MAX_BUCKETS: usize = 10_000;

/// ListBuckets parameters: sending any of them asks for pages (of
/// `MAX_BUCKETS` unless `max-buckets` says) and each bucket's region.
const LIST_BUCKETS_PARAMS: [&str; 4] = ["max-buckets", "continuation-token", "prefix", "bucket-region"];

pub fn list_buckets(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    let paged = LIST_BUCKETS_PARAMS.iter().any(|p| ctx.param(p).is_some());
    let max = max_buckets(ctx.param("max-buckets"))?.unwrap_or(if paged { MAX_BUCKETS } else { usize::MAX });
    let after = ctx.param("continuation-token").filter(|t| !t.is_empty()).map(decode_token).transpose()?;
    let prefix = ctx.param("prefix");
    let mut buckets = ctx.app.store.index.buckets().map_err(internal)?;
    // A key sees the buckets it may read; every bucket is in this region.
    buckets.retain(|(_, info)| permission::granted(&ctx.principal, info, Need::Read));
    if ctx.param("bucket-region").is_some_and(|r| r != ctx.region()) {
        buckets.clear();
    }
    let (buckets, next) = bucket_page(buckets, prefix.unwrap_or(""), after.as_deref(), max);
    let region = paged.then(|| ctx.region().to_string());
    let doc = ListAllMyBucketsResult {
        buckets: buckets.into_iter().map(|(name, info)| BucketEntry { name, creation_date: info.created, region: region.clone() }).collect(),
        owner: owner(ctx),
        continuation_token: next.map(|last| encode_token(last.as_bytes())),
        prefix: prefix.map(str::to_string),
    };
    Ok(xml_ok(doc.to_xml()))
}

/// `max-buckets`: 1 to `MAX_BUCKETS`.
fn max_buckets(value: Option<&str>) -> Result<Option<usize>, S3Error> {
    let Some(v) = value else { return Ok(None) };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BUCKETS).contains(&n) => Ok(Some(n)),
        _ => Err(S3Error::InvalidArgument {
            message: format!("Argument max-buckets must be an integer between 1 and {MAX_BUCKETS}"),
            name: "max-buckets".into(),
            value: v.to_string(),
        }),
    }
}

/// One page of buckets (given in name order): those with `prefix` named
/// after `after`, at most `max`; and the last name when more remain.
fn bucket_page<T>(buckets: Vec<(String, T)>, prefix: &str, after: Option<&[u8]>, max: usize) -> (Vec<(String, T)>, Option<String>) {
    let mut page: Vec<(String, T)> = buckets
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix) && after.is_none_or(|a| name.as_bytes() > a))
        .collect();
    if page.len() <= max {
        return (page, None);
    }
    page.truncate(max);
    let last = page.last().map(|(name, _)| name.clone());
    (page, last)
}

pub async fn create_bucket(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let name = ctx.bucket();
    if !valid_bucket_name(name) {
        return Err(S3Error::InvalidBucketName { bucket: name.to_string() });
    }
    check_acl_headers(ctx.req.headers())?;
    // A bucket that would silently not lock what its owner locks.
    if ctx.header("x-amz-bucket-object-lock-enabled").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(S3Error::NotImplemented("Object Lock is not supported".into()));
    }
    // Any location is accepted: there is one location.
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    let location = xml::parse_create_bucket_configuration(&body)?;
    // The creator owns it; a key made by `mkv key` gets every permission.
    let mut info = BucketInfo { created: now_secs(), owner: Some(ctx.principal.id().to_string()), ..Default::default() };
    if let Principal::Key(id) = &ctx.principal {
        info.grants.insert(id.clone(), Grant { read: true, write: true, owner: true });
    }
    let owned = name.to_string();
    let created = ctx.app.store.index_write(move |ix| ix.create_bucket(&owned, &info)).await;
    let done = || HttpResponse::Ok().insert_header(("Location", format!("/{name}"))).finish();
    if created.map_err(internal)? {
        return Ok(done());
    }
    let signed = sigv4::signed_region(ctx.header("authorization"), ctx.param("X-Amz-Credential"));
    match ctx.require(Need::Owner, name, None) {
        // AWS's legacy answer in us-east-1: success, and nothing changes.
        Ok(()) if in_us_east_1(signed.as_deref().unwrap_or(ctx.region()), location.as_deref()) => Ok(done()),
        Ok(()) => Err(S3Error::BucketAlreadyOwnedByYou { bucket: name.to_string() }),
        Err(_) => Err(S3Error::BucketAlreadyExists { bucket: name.to_string() }),
    }
}

/// Whether a CreateBucket is in us-east-1: sent there (`region`: the one it
/// was signed for, else ours) and asking for no other location.
fn in_us_east_1(region: &str, location: Option<&str>) -> bool {
    region == "us-east-1" && location.is_none_or(|l| l == "us-east-1")
}

pub fn head_bucket(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    Ok(HttpResponse::Ok().insert_header(("x-amz-bucket-region", ctx.region())).finish())
}

pub async fn delete_bucket(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let name = ctx.bucket();
    match ctx.app.store.index.delete_bucket_if_empty(name).map_err(internal)? {
        BucketDelete::NotEmpty => Err(S3Error::BucketNotEmpty { bucket: name.to_string() }),
        BucketDelete::Deleted { uploads } => {
            // Uploads in progress go with the bucket, as in AWS, before the
            // answer: their files, then their records. None can start now,
            // and a part still arriving finds its upload gone and removes
            // its own files.
            multipart::abort_uploads(&ctx.app.store, uploads, "removing the deleted bucket's").await;
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
    Ok(xml_ok(xml::versioning_configuration(ctx.own_bucket()?.versioning.as_deref())))
}

/// PutBucketVersioning: `Suspended` is what a bucket that never had
/// versioning already does (each object one version, `null`), so it is
/// recorded and answered by GetBucketVersioning; `Enabled` and MFA delete
/// are not supported (501), never pretended.
pub async fn put_versioning(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    let (status, mfa_delete) = xml::parse_versioning(&body)?;
    if mfa_delete.as_deref().is_some_and(|m| m != "Disabled") {
        return Err(S3Error::NotImplemented("MFA delete is not supported".into()));
    }
    match status.as_deref() {
        Some("Suspended") => {}
        Some("Enabled") => return Err(S3Error::NotImplemented("Versioning is not supported: objects keep one version each (Suspended is accepted)".into())),
        _ => return Err(S3Error::MalformedXML),
    }
    change_bucket(ctx, |b| b.versioning = status)?;
    Ok(HttpResponse::Ok().finish())
}

pub fn get_default(ctx: &Ctx, what: BucketDefault) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    match what {
        BucketDefault::Acl => Ok(xml_ok(acl_document(ctx))),
        BucketDefault::Missing(code, message) => Err(S3Error::NotConfigured { code, message, bucket: ctx.bucket().to_string() }),
        BucketDefault::Empty(doc) => Ok(xml_ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{doc}"))),
    }
}

fn acl_refused() -> S3Error {
    S3Error::NotImplemented("ACL grants are not supported: the owner has full control and no one else (use bucket policies)".into())
}

/// A request's canned ACL (`x-amz-acl`, a form's `acl`) and whether it has
/// `x-amz-grant-*` headers: only the ACL there is, the owner's full control,
/// is accepted, on writes as on PutBucketAcl/PutObjectAcl; anything granting
/// more answers 501, never a silent success.
pub fn check_acl(canned: Option<&str>, grants: bool) -> Result<(), S3Error> {
    match canned {
        _ if grants => Err(acl_refused()),
        None | Some("private" | "bucket-owner-full-control") => Ok(()),
        Some(_) => Err(acl_refused()),
    }
}

/// [`check_acl`] of a request's headers.
pub fn check_acl_headers(headers: &actix_web::http::header::HeaderMap) -> Result<(), S3Error> {
    check_acl(headers.get("x-amz-acl").map(|v| v.to_str().unwrap_or("?")), headers.keys().any(|h| h.as_str().starts_with("x-amz-grant-")))
}

/// PutBucketAcl and PutObjectAcl (`key`: the object's, which must exist):
/// the only ACL there is, the owner's full control ("private"), is
/// accepted as the no-op it is — as the canned `private` or
/// `bucket-owner-full-control`, or a body whose every grant is
/// `FULL_CONTROL` to the caller (what a client reading the ACL and putting
/// it back sends). Any other grant, or none, answers 501: never a silent
/// success.
pub async fn put_acl(ctx: &Ctx<'_>, payload: web::Payload, key: Option<&[u8]>) -> Result<HttpResponse, S3Error> {
    ctx.require_bucket()?;
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    if let Some(key) = key {
        super::object::live_object(ctx, key)?.ok_or_else(|| S3Error::NoSuchKey { key: ctx.key().to_string() })?;
    }
    check_acl_headers(ctx.req.headers())?;
    match ctx.header("x-amz-acl") {
        Some(_) => {}
        None if body.is_empty() => return Err(S3Error::MissingRequestBodyError),
        None => {
            let me = owner(ctx).id;
            let grants = xml::parse_acl_grants(&body)?;
            // No grant at all revokes the owner's: not the ACL there is either.
            if grants.is_empty() || !grants.iter().all(|(id, permission)| id.as_deref() == Some(me.as_str()) && permission == "FULL_CONTROL") {
                return Err(acl_refused());
            }
        }
    }
    Ok(HttpResponse::Ok().finish())
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
    match ctx.own_bucket()?.policy.clone() {
        Some(text) => Ok(HttpResponse::Ok().content_type("application/json").body(text)),
        None => Err(S3Error::NotConfigured { code: "NoSuchBucketPolicy", message: "The bucket policy does not exist", bucket: ctx.bucket().to_string() }),
    }
}

pub fn delete_policy(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    set_policy(ctx, None)
}

fn set_policy(ctx: &Ctx, policy: Option<String>) -> Result<HttpResponse, S3Error> {
    change_bucket(ctx, |b| b.policy = policy)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Change the request's bucket in one index transaction (`NoSuchBucket`
/// if it is gone).
pub fn change_bucket(ctx: &Ctx, change: impl FnOnce(&mut BucketInfo)) -> Result<(), S3Error> {
    let updated = ctx.app.store.index.update_bucket(ctx.bucket(), |b| {
        change(b);
        (true, ())
    });
    updated.map_err(internal)?.ok_or_else(|| S3Error::NoSuchBucket { bucket: ctx.bucket().to_string() })
}

/// PutBucketCors: the rules replace the bucket's (checked as S3 does).
pub async fn put_cors(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, S3Error> {
    let body = Body::new(ctx.req, payload, &ctx.auth)?.read_all().await?;
    let rules = xml::parse_cors_configuration(&body)?;
    super::cors::validate(&rules)?;
    set_cors(ctx, rules)?;
    Ok(HttpResponse::Ok().finish())
}

pub fn get_cors(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    let info = ctx.own_bucket()?;
    if info.cors.is_empty() {
        return Err(S3Error::NotConfigured { code: "NoSuchCORSConfiguration", message: "The CORS configuration does not exist", bucket: ctx.bucket().to_string() });
    }
    Ok(xml_ok(xml::cors_configuration(&info.cors)))
}

pub fn delete_cors(ctx: &Ctx) -> Result<HttpResponse, S3Error> {
    set_cors(ctx, Vec::new())?;
    Ok(HttpResponse::NoContent().finish())
}

fn set_cors(ctx: &Ctx, rules: Vec<crate::index::CorsRule>) -> Result<(), S3Error> {
    change_bucket(ctx, |b| b.cors = rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(page: &[(String, ())]) -> Vec<&str> {
        page.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn bucket_pages() {
        let all: Vec<(String, ())> = ["a1", "a2", "a3", "b1"].iter().map(|n| (n.to_string(), ())).collect();
        let (page, next) = bucket_page(all.clone(), "", None, 2);
        assert_eq!((names(&page), next.as_deref()), (vec!["a1", "a2"], Some("a2")));
        let (page, next) = bucket_page(all.clone(), "", Some(b"a2"), 2);
        assert_eq!((names(&page), next), (vec!["a3", "b1"], None));
        let (page, next) = bucket_page(all.clone(), "a", Some(b"a1"), 10);
        assert_eq!((names(&page), next), (vec!["a2", "a3"], None));
        let (page, next) = bucket_page(all.clone(), "a", None, 3);
        assert_eq!((names(&page), next), (vec!["a1", "a2", "a3"], None));
        assert!(bucket_page(all, "c", None, 1).0.is_empty());
    }

    #[test]
    fn legacy_region() {
        assert!(in_us_east_1("us-east-1", None));
        assert!(in_us_east_1("us-east-1", Some("us-east-1")));
        assert!(!in_us_east_1("us-east-1", Some("eu-west-1")));
        assert!(!in_us_east_1("eu-west-1", None));
    }

    #[test]
    fn max_buckets_range() {
        assert_eq!(max_buckets(None), Ok(None));
        assert_eq!(max_buckets(Some("1")), Ok(Some(1)));
        assert_eq!(max_buckets(Some("10000")), Ok(Some(10_000)));
        for bad in ["0", "10001", "-1", "x", ""] {
            assert_eq!(max_buckets(Some(bad)).unwrap_err().aws_code(), "InvalidArgument", "{bad}");
        }
    }
}
