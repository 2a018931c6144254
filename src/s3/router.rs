//! Which S3 operation a request is: a typed enum decided once from the
//! method, the path (path-style addressing) and the query's sub-resources.

use super::error::S3Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    GetBucketTagging,
    PutBucketTagging,
    DeleteBucketTagging,
    /// A browser form upload to the bucket.
    PostObject,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    GetBucketVersioning,
    PutBucketVersioning,
    /// A bucket configuration we keep no value for: its default answer.
    GetBucketDefault(BucketDefault),
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    DeleteObjects,
    GetObject,
    HeadObject,
    PutObject,
    CopyObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    GetObjectAcl,
    PutObjectAcl,
    PutBucketAcl,
    GetObjectAttributes,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    /// Valid S3, not implemented: answered 501, never a fake success.
    NotImplemented(&'static str),
}

impl Op {
    /// Whether a success changed the bucket's own settings (or the bucket).
    pub fn changes_bucket(&self) -> bool {
        matches!(
            self,
            Op::CreateBucket
                | Op::DeleteBucket
                | Op::PutBucketPolicy
                | Op::DeleteBucketPolicy
                | Op::PutBucketCors
                | Op::DeleteBucketCors
                | Op::PutBucketTagging
                | Op::DeleteBucketTagging
                | Op::PutBucketVersioning
        )
    }

    /// The operation's name in logs and metrics (a bounded set).
    pub fn name(&self) -> &'static str {
        match self {
            Op::ListBuckets => "ListBuckets",
            Op::CreateBucket => "CreateBucket",
            Op::GetBucketPolicy => "GetBucketPolicy",
            Op::PutBucketPolicy => "PutBucketPolicy",
            Op::DeleteBucketPolicy => "DeleteBucketPolicy",
            Op::GetBucketCors => "GetBucketCors",
            Op::PutBucketCors => "PutBucketCors",
            Op::DeleteBucketCors => "DeleteBucketCors",
            Op::GetBucketTagging => "GetBucketTagging",
            Op::PutBucketTagging => "PutBucketTagging",
            Op::DeleteBucketTagging => "DeleteBucketTagging",
            Op::PostObject => "PostObject",
            Op::HeadBucket => "HeadBucket",
            Op::DeleteBucket => "DeleteBucket",
            Op::GetBucketLocation => "GetBucketLocation",
            Op::GetBucketVersioning => "GetBucketVersioning",
            Op::PutBucketVersioning => "PutBucketVersioning",
            Op::GetBucketDefault(_) => "GetBucketConfiguration",
            Op::ListObjects => "ListObjects",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::ListObjectVersions => "ListObjectVersions",
            Op::ListMultipartUploads => "ListMultipartUploads",
            Op::DeleteObjects => "DeleteObjects",
            Op::GetObject => "GetObject",
            Op::HeadObject => "HeadObject",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::DeleteObject => "DeleteObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListParts => "ListParts",
            Op::GetObjectAcl => "GetObjectAcl",
            Op::PutObjectAcl => "PutObjectAcl",
            Op::PutBucketAcl => "PutBucketAcl",
            Op::GetObjectAttributes => "GetObjectAttributes",
            Op::GetObjectTagging => "GetObjectTagging",
            Op::PutObjectTagging => "PutObjectTagging",
            Op::DeleteObjectTagging => "DeleteObjectTagging",
            Op::NotImplemented(_) => "NotImplemented",
        }
    }
}

/// Bucket sub-resources that SDKs probe, with what AWS answers for a bucket
/// that has none configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDefault {
    Acl,
    /// 404 with this error code.
    Missing(&'static str, &'static str),
    /// 200 with this empty document.
    Empty(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub op: Op,
}

/// Longest S3 key, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

const MISSING: [(&str, &str, &str); 7] = [
    ("lifecycle", "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist"),
    ("website", "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration"),
    ("encryption", "ServerSideEncryptionConfigurationNotFoundError", "The server side encryption configuration was not found"),
    ("replication", "ReplicationConfigurationNotFoundError", "The replication configuration was not found"),
    ("object-lock", "ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this bucket"),
    ("ownershipControls", "OwnershipControlsNotFoundError", "The bucket ownership controls were not found"),
    ("publicAccessBlock", "NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not found"),
];

const EMPTY: [(&str, &str); 4] = [
    ("logging", "<BucketLoggingStatus xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"),
    ("notification", "<NotificationConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"),
    ("requestPayment", "<RequestPaymentConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Payer>BucketOwner</Payer></RequestPaymentConfiguration>"),
    ("accelerate", "<AccelerateConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"),
];

/// Sub-resources we do not implement on buckets (any method).
const UNSUPPORTED_BUCKET: [&str; 8] = ["analytics", "metrics", "inventory", "intelligent-tiering", "policyStatus", "torrent", "restore", "select"];

/// Sub-resources we do not implement on objects.
const UNSUPPORTED_OBJECT: [&str; 7] = ["retention", "legal-hold", "torrent", "restore", "select", "renameObject", "versions"];

/// Decide the operation. `path` is the decoded request path; `query` the
/// decoded parameter names present; `copy_source` whether
/// `x-amz-copy-source` is set. `bucket_from_host` is the bucket of a
/// virtual-hosted request, whose whole path is then the key.
pub fn route(method: &str, path: &str, query: &[&str], copy_source: bool, bucket_from_host: Option<&str>) -> Result<Route, S3Error> {
    let has = |name: &str| query.contains(&name);
    let (bucket, key) = match bucket_from_host {
        Some(b) => (Some(b.to_string()), path.strip_prefix('/').filter(|k| !k.is_empty()).map(str::to_string)),
        None => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            match rest.split_once('/') {
                None if rest.is_empty() => (None, None),
                None => (Some(rest.to_string()), None),
                Some((b, "")) => (Some(b.to_string()), None),
                Some((b, k)) => (Some(b.to_string()), Some(k.to_string())),
            }
        }
    };
    if let Some(k) = &key {
        if k.len() > MAX_KEY_LEN {
            return Err(S3Error::KeyTooLongError);
        }
    }
    let op = match (&bucket, &key) {
        (None, _) => match method {
            "GET" => Op::ListBuckets,
            _ => return Err(S3Error::MethodNotAllowed),
        },
        (Some(_), None) => bucket_op(method, &has)?,
        (Some(_), Some(_)) => object_op(method, &has, copy_source),
    };
    Ok(Route { bucket, key, op })
}

fn bucket_op(method: &str, has: &dyn Fn(&str) -> bool) -> Result<Op, S3Error> {
    if let Some(sub) = UNSUPPORTED_BUCKET.iter().find(|s| has(s)) {
        return Ok(Op::NotImplemented(sub));
    }
    // Configurations read, replaced and removed by GET, PUT and DELETE.
    let configs = [
        ("policy", [Op::GetBucketPolicy, Op::PutBucketPolicy, Op::DeleteBucketPolicy], "this method on a bucket policy"),
        ("cors", [Op::GetBucketCors, Op::PutBucketCors, Op::DeleteBucketCors], "this method on a CORS configuration"),
        ("tagging", [Op::GetBucketTagging, Op::PutBucketTagging, Op::DeleteBucketTagging], "this method on a bucket's tags"),
    ];
    if let Some((_, [get, put, delete], other)) = configs.into_iter().find(|(sub, _, _)| has(sub)) {
        return Ok(match method {
            "GET" => get,
            "PUT" => put,
            "DELETE" => delete,
            _ => Op::NotImplemented(other),
        });
    }
    let op = match method {
        "GET" => {
            if has("location") {
                Op::GetBucketLocation
            } else if has("versioning") {
                Op::GetBucketVersioning
            } else if has("acl") {
                Op::GetBucketDefault(BucketDefault::Acl)
            } else if let Some((_, code, msg)) = MISSING.iter().find(|(s, _, _)| has(s)) {
                Op::GetBucketDefault(BucketDefault::Missing(code, msg))
            } else if let Some((_, doc)) = EMPTY.iter().find(|(s, _)| has(s)) {
                Op::GetBucketDefault(BucketDefault::Empty(doc))
            } else if has("versions") {
                Op::ListObjectVersions
            } else if has("uploads") {
                Op::ListMultipartUploads
            } else if has("list-type") {
                Op::ListObjectsV2
            } else {
                Op::ListObjects
            }
        }
        "HEAD" => Op::HeadBucket,
        "PUT" if has("versioning") => Op::PutBucketVersioning,
        "PUT" if has("acl") => Op::PutBucketAcl,
        "PUT" if is_config(has) => Op::NotImplemented("changing bucket configuration"),
        "PUT" => Op::CreateBucket,
        "DELETE" if is_config(has) => Op::NotImplemented("deleting bucket configuration"),
        "DELETE" => Op::DeleteBucket,
        "POST" if has("delete") => Op::DeleteObjects,
        "POST" => Op::PostObject,
        _ => return Err(S3Error::MethodNotAllowed),
    };
    Ok(op)
}

fn is_config(has: &dyn Fn(&str) -> bool) -> bool {
    ["acl", "versioning", "location"].iter().any(|s| has(s))
        || MISSING.iter().any(|(s, _, _)| has(s))
        || EMPTY.iter().any(|(s, _)| has(s))
}

fn object_op(method: &str, has: &dyn Fn(&str) -> bool, copy_source: bool) -> Op {
    if let Some(sub) = UNSUPPORTED_OBJECT.iter().find(|s| has(s)) {
        return Op::NotImplemented(sub);
    }
    if has("tagging") {
        return match method {
            "GET" => Op::GetObjectTagging,
            "PUT" => Op::PutObjectTagging,
            "DELETE" => Op::DeleteObjectTagging,
            _ => Op::NotImplemented("this method on an object's tags"),
        };
    }
    match method {
        "GET" if has("uploadId") => Op::ListParts,
        "GET" if has("acl") => Op::GetObjectAcl,
        "GET" if has("attributes") => Op::GetObjectAttributes,
        "GET" => Op::GetObject,
        "HEAD" => Op::HeadObject,
        "PUT" if has("acl") => Op::PutObjectAcl,
        "PUT" if has("partNumber") && has("uploadId") && copy_source => Op::UploadPartCopy,
        "PUT" if has("partNumber") && has("uploadId") => Op::UploadPart,
        "PUT" if copy_source => Op::CopyObject,
        "PUT" => Op::PutObject,
        "POST" if has("uploads") => Op::CreateMultipartUpload,
        "POST" if has("uploadId") => Op::CompleteMultipartUpload,
        "DELETE" if has("uploadId") => Op::AbortMultipartUpload,
        "DELETE" => Op::DeleteObject,
        _ => Op::NotImplemented("this method on an object"),
    }
}

/// The bucket of a virtual-hosted-style request: the `Host` (port
/// dropped) is `<bucket>.<domain>`. Anything else is path style.
pub fn bucket_from_host<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let domain = domain.trim_matches('.');
    let cut = name.len().checked_sub(domain.len() + 1)?;
    let (bucket, rest) = (name.get(..cut)?, name.get(cut..)?);
    let suffix = rest.strip_prefix('.')?;
    (!bucket.is_empty() && !domain.is_empty() && suffix.eq_ignore_ascii_case(domain)).then_some(bucket)
}

/// S3 bucket naming rules (the current ones for new buckets).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        // Each dot-separated part is a DNS label (virtual-hosted addressing).
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && !name.split('.').all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
        // Names AWS reserves for its own kinds of buckets and examples.
        && !["xn--", "sthree-", "amzn-s3-demo-"].iter().any(|p| name.starts_with(p))
        && !["-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"].iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, path: &str, q: &[&str]) -> Op {
        route(method, path, q, false, None).unwrap().op
    }

    #[test]
    fn the_service_only_lists() {
        assert_eq!(op("GET", "/", &[]), Op::ListBuckets);
        for method in ["PUT", "DELETE", "POST"] {
            assert_eq!(route(method, "/", &[], false, None).unwrap_err(), S3Error::MethodNotAllowed, "{method}");
        }
    }

    #[test]
    fn paths_split_into_bucket_and_key() {
        let r = route("GET", "/b/dir//file name", &[], false, None).unwrap();
        assert_eq!((r.bucket.as_deref(), r.key.as_deref()), (Some("b"), Some("dir//file name")));
        let r = route("GET", "/b/", &[], false, None).unwrap();
        assert_eq!((r.bucket.as_deref(), r.key), (Some("b"), None));
        let r = route("GET", "/k/x", &[], false, Some("b")).unwrap();
        assert_eq!((r.bucket.as_deref(), r.key.as_deref()), (Some("b"), Some("k/x")));
        assert_eq!(op("GET", "/", &[]), Op::ListBuckets);
    }

    #[test]
    fn operations() {
        assert_eq!(op("GET", "/b", &["list-type", "prefix"]), Op::ListObjectsV2);
        assert_eq!(op("GET", "/b", &["delimiter"]), Op::ListObjects);
        assert_eq!(op("GET", "/b", &["versions"]), Op::ListObjectVersions);
        assert_eq!(op("GET", "/b", &["location"]), Op::GetBucketLocation);
        assert_eq!(op("GET", "/b", &["tagging"]), Op::GetBucketTagging);
        assert_eq!(op("PUT", "/b", &["tagging"]), Op::PutBucketTagging);
        assert_eq!(op("DELETE", "/b", &["tagging"]), Op::DeleteBucketTagging);
        assert_eq!(op("PUT", "/b", &[]), Op::CreateBucket);
        assert_eq!(op("PUT", "/b", &["versioning"]), Op::PutBucketVersioning);
        assert_eq!(op("PUT", "/b", &["acl"]), Op::PutBucketAcl);
        assert_eq!(op("PUT", "/b/k", &["acl"]), Op::PutObjectAcl);
        assert_eq!(op("PUT", "/b", &["lifecycle"]), Op::NotImplemented("changing bucket configuration"));
        assert_eq!(op("POST", "/b", &["delete"]), Op::DeleteObjects);
        assert_eq!(op("PUT", "/b/k", &[]), Op::PutObject);
        assert_eq!(route("PUT", "/b/k", &[], true, None).unwrap().op, Op::CopyObject);
        assert_eq!(op("PUT", "/b/k", &["partNumber", "uploadId"]), Op::UploadPart);
        assert_eq!(route("PUT", "/b/k", &["partNumber", "uploadId"], true, None).unwrap().op, Op::UploadPartCopy);
        assert_eq!(op("POST", "/b/k", &["uploads"]), Op::CreateMultipartUpload);
        assert_eq!(op("POST", "/b/k", &["uploadId"]), Op::CompleteMultipartUpload);
        assert_eq!(op("DELETE", "/b/k", &["uploadId"]), Op::AbortMultipartUpload);
        assert_eq!(op("GET", "/b/k", &["uploadId"]), Op::ListParts);
        assert_eq!(op("GET", "/b/k", &["versionId"]), Op::GetObject);
        assert_eq!(op("GET", "/b/k", &["tagging"]), Op::GetObjectTagging);
        assert_eq!(op("PUT", "/b/k", &["tagging"]), Op::PutObjectTagging);
        assert_eq!(op("DELETE", "/b/k", &["tagging"]), Op::DeleteObjectTagging);
        assert_eq!(op("POST", "/b/k", &["tagging"]), Op::NotImplemented("this method on an object's tags"));
        assert_eq!(op("GET", "/b/k", &["attributes"]), Op::GetObjectAttributes);
        assert_eq!(op("GET", "/b/k", &["retention"]), Op::NotImplemented("retention"));
        assert!(matches!(route("PATCH", "/b", &[], false, None), Err(S3Error::MethodNotAllowed)));
    }

    #[test]
    fn key_length_limit() {
        let ok = format!("/b/{}", "k".repeat(MAX_KEY_LEN));
        assert!(route("GET", &ok, &[], false, None).is_ok());
        let long = format!("/b/{}", "k".repeat(MAX_KEY_LEN + 1));
        assert_eq!(route("GET", &long, &[], false, None), Err(S3Error::KeyTooLongError));
    }

    #[test]
    fn virtual_hosts() {
        assert_eq!(bucket_from_host("b.s3.localhost:3000", "s3.localhost"), Some("b"));
        assert_eq!(bucket_from_host("my.dotted-b.S3.Localhost", "s3.localhost"), Some("my.dotted-b"));
        assert_eq!(bucket_from_host("b.s3.localhost", ".s3.localhost"), Some("b"));
        for path_style in ["s3.localhost:3000", "127.0.0.1:3000", "xs3.localhost", ".s3.localhost", "b.s3.localhost.evil", ""] {
            assert_eq!(bucket_from_host(path_style, "s3.localhost"), None, "{path_style}");
        }
        assert_eq!(bucket_from_host("b.x", ""), None);
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.data", "a1b", &"a".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab", "ABC", "a_b", "-ab", "ab-", "a..b", "a.-b", "a-.b", "192.168.5.4", "xn--abc", "amzn-s3-demo-bucket", "b--x-s3", "b--table-s3",
            "b.mrap", "b-s3alias", &"a".repeat(64), "a b",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
