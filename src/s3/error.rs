//! The S3 error codes the gateway answers, with AWS's statuses and messages.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::chunked::ChunkedError;
use super::sigv4::AuthError;
use super::xml;
use crate::error::Error;

/// One variant per AWS error code. The `Display` text is the `<Message>`;
/// struct fields become extra elements of the `<Error>` document, as AWS adds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    /// "Access Denied" in general; AWS varies it (e.g. "Request has expired").
    #[error("{0}")]
    AccessDenied(String),
    #[error("The requested partnumber is not satisfiable")]
    InvalidPartNumber,
    /// A bucket configuration we keep none of (`NoSuchTagSet`, `NoSuchCORSConfiguration`…).
    #[error("{message}")]
    NotConfigured { code: &'static str, message: &'static str, bucket: String },
    #[error("{0}")]
    AuthorizationHeaderMalformed(String),
    /// A CORS preflight without what it needs (Origin, the method).
    #[error("{0}")]
    BadRequest(String),
    /// A CORS preflight no rule of the bucket allows.
    #[error("{0}")]
    CorsResponse(String),
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    /// Content-MD5 or flexible checksum mismatch; the message names which.
    #[error("{0}")]
    BadDigest(String),
    #[error("The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.")]
    BucketAlreadyExists { bucket: String },
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou { bucket: String },
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty { bucket: String },
    /// Concurrent conditional writes of one key (AWS, 2024).
    #[error("A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.")]
    ConditionalRequestConflict,
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    #[error("Your proposed upload exceeds the maximum allowed object size.")]
    EntityTooLarge,
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,
    /// The detail is for logs (`{:?}`), never sent to the client.
    #[error("We encountered an internal error. Please try again.")]
    InternalError(String),
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId { access_key: String },
    #[error("{message}")]
    InvalidArgument { message: String, name: String, value: String },
    #[error("The specified bucket is not valid.")]
    InvalidBucketName { bucket: String },
    /// Content-MD5 that is not base64 of 16 bytes.
    #[error("The Content-MD5 you specified is not valid.")]
    InvalidDigest,
    #[error("{0}")]
    InvalidObjectState(String),
    /// A POST Object policy that cannot be read.
    #[error("{0}")]
    InvalidPolicyDocument(String),
    /// A POST Object body that is not a form we can read.
    #[error("{0}")]
    MalformedPOSTRequest(String),
    /// A bucket policy we refuse; the message names the part.
    #[error("{0}")]
    MalformedPolicy(String),
    /// A missing or mismatched part in CompleteMultipartUpload; AWS varies
    /// the message (missing part checksum, wrong ETag…).
    #[error("{0}")]
    InvalidPart(String),
    #[error("The list of parts was not in ascending order. The parts list must be specified in order by part number.")]
    InvalidPartOrder,
    #[error("The requested range is not satisfiable")]
    InvalidRange { range: String, size: u64 },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("The storage class you specified is not valid")]
    InvalidStorageClass,
    /// A tag set AWS refuses (`s3::tagging::validate`); the message names why.
    #[error("{0}")]
    InvalidTag(String),
    #[error("Your key is too long")]
    KeyTooLongError,
    #[error("The XML you provided was not well-formed or did not validate against our published schema")]
    MalformedXML,
    #[error("The request contained trailing data that was not well-formed or did not conform to our published schema.")]
    MalformedTrailerError,
    #[error("Your metadata headers exceed the maximum allowed metadata size.")]
    MetadataTooLarge,
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,
    #[error("Request Body is empty")]
    MissingRequestBodyError,
    #[error("Your request was missing a required header")]
    MissingSecurityHeader { header: String },
    #[error("The specified bucket does not exist")]
    NoSuchBucket { bucket: String },
    #[error("The specified key does not exist.")]
    NoSuchKey { key: String },
    #[error("The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")]
    NoSuchUpload { upload_id: String },
    #[error("The specified version does not exist.")]
    NoSuchVersion { key: String, version_id: String },
    #[error("{0}")]
    NotImplemented(String),
    /// 304: never has a body.
    #[error("Not Modified")]
    NotModified,
    #[error("A conflicting conditional operation is currently in progress against this resource. Please try again.")]
    OperationAborted,
    /// `condition` names the failed header (`If-Match`, …).
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed { condition: String },
    #[error("Your socket connection to the server was not read from or written to within the timeout period.")]
    RequestTimeout,
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed { request_time: String, server_time: String },
    #[error("Service is unable to handle request.")]
    ServiceUnavailable,
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
    SignatureDoesNotMatch { access_key: String, string_to_sign: String, canonical_request: String },
    #[error("Please reduce your request rate.")]
    SlowDown,
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    XAmzContentSHA256Mismatch { client: String, computed: String },
}

impl S3Error {
    pub fn aws_code(&self) -> &'static str {
        use S3Error::*;
        match self {
            NotConfigured { code, .. } => code,
            InvalidPartNumber => "InvalidPartNumber",
            AccessDenied(_) => "AccessDenied",
            AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            BadDigest(_) => "BadDigest",
            BadRequest(_) => "BadRequest",
            CorsResponse(_) => "CORSResponse",
            BucketAlreadyExists { .. } => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou { .. } => "BucketAlreadyOwnedByYou",
            BucketNotEmpty { .. } => "BucketNotEmpty",
            ConditionalRequestConflict => "ConditionalRequestConflict",
            EntityTooSmall => "EntityTooSmall",
            EntityTooLarge => "EntityTooLarge",
            IncompleteBody => "IncompleteBody",
            InternalError(_) => "InternalError",
            InvalidAccessKeyId { .. } => "InvalidAccessKeyId",
            InvalidArgument { .. } => "InvalidArgument",
            InvalidBucketName { .. } => "InvalidBucketName",
            InvalidDigest => "InvalidDigest",
            InvalidObjectState(_) => "InvalidObjectState",
            InvalidPart(_) => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange { .. } => "InvalidRange",
            InvalidRequest(_) => "InvalidRequest",
            InvalidStorageClass => "InvalidStorageClass",
            InvalidTag(_) => "InvalidTag",
            KeyTooLongError => "KeyTooLongError",
            MalformedPolicy(_) => "MalformedPolicy",
            InvalidPolicyDocument(_) => "InvalidPolicyDocument",
            MalformedPOSTRequest(_) => "MalformedPOSTRequest",
            MalformedXML => "MalformedXML",
            MalformedTrailerError => "MalformedTrailerError",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingRequestBodyError => "MissingRequestBodyError",
            MissingSecurityHeader { .. } => "MissingSecurityHeader",
            NoSuchBucket { .. } => "NoSuchBucket",
            NoSuchKey { .. } => "NoSuchKey",
            NoSuchUpload { .. } => "NoSuchUpload",
            NoSuchVersion { .. } => "NoSuchVersion",
            NotImplemented(_) => "NotImplemented",
            NotModified => "NotModified",
            OperationAborted => "OperationAborted",
            PreconditionFailed { .. } => "PreconditionFailed",
            RequestTimeout => "RequestTimeout",
            RequestTimeTooSkewed { .. } => "RequestTimeTooSkewed",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch { .. } => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            XAmzContentSHA256Mismatch { .. } => "XAmzContentSHA256Mismatch",
        }
    }

    /// AWS's status for the code (S3 API reference, "List of error codes").
    pub fn status(&self) -> StatusCode {
        use S3Error::*;
        match self {
            NotConfigured { .. } => StatusCode::NOT_FOUND,
            InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
            NotModified => StatusCode::NOT_MODIFIED,
            AccessDenied(_)
            | CorsResponse(_)
            | InvalidAccessKeyId { .. }
            | InvalidObjectState(_)
            | RequestTimeTooSkewed { .. }
            | SignatureDoesNotMatch { .. } => StatusCode::FORBIDDEN,
            NoSuchBucket { .. } | NoSuchKey { .. } | NoSuchUpload { .. } | NoSuchVersion { .. } => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BucketAlreadyExists { .. }
            | BucketAlreadyOwnedByYou { .. }
            | BucketNotEmpty { .. }
            | ConditionalRequestConflict
            | OperationAborted => StatusCode::CONFLICT,
            MissingContentLength => StatusCode::LENGTH_REQUIRED,
            PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            InvalidRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            InternalError(_) => StatusCode::INTERNAL_SERVER_ERROR,
            NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ServiceUnavailable | SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            // AWS answers RequestTimeout with 400, not 408.
            AuthorizationHeaderMalformed(_)
            | AuthorizationQueryParametersError(_)
            | BadDigest(_)
            | BadRequest(_)
            | EntityTooSmall
            | EntityTooLarge
            | IncompleteBody
            | InvalidArgument { .. }
            | InvalidBucketName { .. }
            | InvalidDigest
            | InvalidPart(_)
            | InvalidPartOrder
            | InvalidRequest(_)
            | InvalidStorageClass
            | InvalidTag(_)
            | KeyTooLongError
            | MalformedPolicy(_)
            | InvalidPolicyDocument(_)
            | MalformedPOSTRequest(_)
            | MalformedXML
            | MalformedTrailerError
            | MetadataTooLarge
            | MissingRequestBodyError
            | MissingSecurityHeader { .. }
            | RequestTimeout
            | XAmzContentSHA256Mismatch { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// Extra `<Error>` elements AWS sends with this code.
    fn extra_fields(&self) -> Vec<(&'static str, String)> {
        use S3Error::*;
        match self {
            BucketAlreadyExists { bucket }
            | BucketAlreadyOwnedByYou { bucket }
            | BucketNotEmpty { bucket }
            | NotConfigured { bucket, .. }
            | InvalidBucketName { bucket }
            | NoSuchBucket { bucket } => vec![("BucketName", bucket.clone())],
            InvalidAccessKeyId { access_key } => vec![("AWSAccessKeyId", access_key.clone())],
            InvalidArgument { name, value, .. } => vec![("ArgumentName", name.clone()), ("ArgumentValue", value.clone())],
            InvalidRange { range, size } => vec![("RangeRequested", range.clone()), ("ActualObjectSize", size.to_string())],
            MissingSecurityHeader { header } => vec![("MissingHeaderName", header.clone())],
            NoSuchKey { key } => vec![("Key", key.clone())],
            NoSuchUpload { upload_id } => vec![("UploadId", upload_id.clone())],
            NoSuchVersion { key, version_id } => vec![("Key", key.clone()), ("VersionId", version_id.clone())],
            PreconditionFailed { condition } => vec![("Condition", condition.clone())],
            RequestTimeTooSkewed { request_time, server_time } => vec![
                ("RequestTime", request_time.clone()),
                ("ServerTime", server_time.clone()),
                ("MaxAllowedSkewMilliseconds", "900000".into()),
            ],
            SignatureDoesNotMatch { access_key, string_to_sign, canonical_request } => vec![
                ("AWSAccessKeyId", access_key.clone()),
                ("StringToSign", string_to_sign.clone()),
                ("CanonicalRequest", canonical_request.clone()),
            ],
            XAmzContentSHA256Mismatch { client, computed } => vec![
                ("ClientComputedContentSHA256", client.clone()),
                ("S3ComputedContentSHA256", computed.clone()),
            ],
            _ => Vec::new(),
        }
    }

    /// The `<Error>` document.
    pub fn to_xml(&self, resource: &str, request_id: &str) -> String {
        xml::error_document(self.aws_code(), &self.to_string(), &self.extra_fields(), resource, request_id)
    }

    /// Map a store error for the object `key`.
    pub fn from_store(err: Error, key: &str) -> S3Error {
        match err {
            Error::NotFound => S3Error::NoSuchKey { key: key.to_string() },
            Error::Exists => S3Error::PreconditionFailed { condition: "If-None-Match".into() },
            // Another write of the key holds its lock: 503 makes SDKs back off and retry.
            Error::Locked => S3Error::SlowDown,
            Error::KeyTooLong => S3Error::KeyTooLongError,
            Error::EmptyBody => S3Error::MissingRequestBodyError,
            Error::Protected => S3Error::AccessDenied("Access Denied".into()),
            Error::Body(_) => S3Error::IncompleteBody,
            Error::BodyTimeout => S3Error::RequestTimeout,
            Error::NoReplica | Error::Stalled { .. } => S3Error::ServiceUnavailable,
            e @ (Error::Index(_) | Error::Volume { .. } | Error::Internal(_)) => S3Error::InternalError(e.to_string()),
        }
    }
}

impl From<AuthError> for S3Error {
    fn from(e: AuthError) -> Self {
        let msg = e.message();
        match e {
            AuthError::Missing | AuthError::MissingDate | AuthError::Expired | AuthError::NotYetValid | AuthError::ExpiresOutOfRange(_) => {
                S3Error::AccessDenied(msg)
            }
            AuthError::MultipleMechanisms | AuthError::UnsupportedAlgorithm | AuthError::InvalidContentSha256 => {
                S3Error::InvalidArgument { message: msg, name: "Authorization".into(), value: String::new() }
            }
            AuthError::AuthorizationHeaderMalformed(_) => S3Error::AuthorizationHeaderMalformed(msg),
            AuthError::AuthorizationQueryParametersError(_) => S3Error::AuthorizationQueryParametersError(msg),
            AuthError::MissingSecurityHeader(h) => S3Error::MissingSecurityHeader { header: h.to_string() },
            AuthError::RequestTimeTooSkewed => S3Error::RequestTimeTooSkewed {
                request_time: String::new(),
                server_time: super::xml::iso8601(crate::store::now_secs()),
            },
            AuthError::InvalidAccessKeyId => S3Error::InvalidAccessKeyId { access_key: String::new() },
            AuthError::SignatureDoesNotMatch { string_to_sign, canonical_request } => {
                S3Error::SignatureDoesNotMatch { access_key: String::new(), string_to_sign, canonical_request }
            }
        }
    }
}

impl From<ChunkedError> for S3Error {
    fn from(e: ChunkedError) -> Self {
        match e {
            ChunkedError::Truncated | ChunkedError::LengthMismatch { .. } | ChunkedError::Inner(_) => S3Error::IncompleteBody,
            ChunkedError::Malformed(_) | ChunkedError::ChunkTooLarge(_) => S3Error::InvalidRequest(e.to_string()),
            ChunkedError::SignatureDoesNotMatch => {
                S3Error::SignatureDoesNotMatch { access_key: String::new(), string_to_sign: String::new(), canonical_request: String::new() }
            }
            ChunkedError::MalformedTrailer(_) | ChunkedError::MissingTrailer => S3Error::MalformedTrailerError,
        }
    }
}

impl From<actix_web::error::PayloadError> for S3Error {
    fn from(e: actix_web::error::PayloadError) -> Self {
        match e {
            actix_web::error::PayloadError::Overflow => S3Error::EntityTooLarge,
            _ => S3Error::IncompleteBody,
        }
    }
}

/// The HTTP answer for `err`. `with_body = false` for HEAD and for 412 on
/// GET conditions; a 304 never has a body.
pub fn error_response(err: &S3Error, resource: &str, request_id: &str, with_body: bool) -> HttpResponse {
    let mut resp = HttpResponse::build(err.status());
    resp.insert_header(("x-amz-request-id", request_id));
    if let S3Error::InvalidRange { size, .. } = err {
        // What a 416 carries (RFC 9110): the length the range missed.
        resp.insert_header(("Content-Range", format!("bytes */{size}")));
    }
    if with_body && *err != S3Error::NotModified {
        resp.content_type("application/xml").body(err.to_xml(resource, request_id))
    } else {
        resp.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn codes_and_statuses() {
        let cases: Vec<(S3Error, &str, u16)> = vec![
            (S3Error::AccessDenied("Access Denied".into()), "AccessDenied", 403),
            (S3Error::BadDigest("x".into()), "BadDigest", 400),
            (S3Error::BucketAlreadyOwnedByYou { bucket: "b".into() }, "BucketAlreadyOwnedByYou", 409),
            (S3Error::BucketNotEmpty { bucket: "b".into() }, "BucketNotEmpty", 409),
            (S3Error::EntityTooSmall, "EntityTooSmall", 400),
            (S3Error::InternalError("x".into()), "InternalError", 500),
            (S3Error::InvalidDigest, "InvalidDigest", 400),
            (S3Error::InvalidObjectState("x".into()), "InvalidObjectState", 403),
            (S3Error::InvalidRange { range: "bytes=9-".into(), size: 3 }, "InvalidRange", 416),
            (S3Error::KeyTooLongError, "KeyTooLongError", 400),
            (S3Error::MalformedTrailerError, "MalformedTrailerError", 400),
            (S3Error::MethodNotAllowed, "MethodNotAllowed", 405),
            (S3Error::MissingContentLength, "MissingContentLength", 411),
            (S3Error::NoSuchKey { key: "k".into() }, "NoSuchKey", 404),
            (S3Error::NoSuchUpload { upload_id: "u".into() }, "NoSuchUpload", 404),
            (S3Error::NotImplemented("x".into()), "NotImplemented", 501),
            (S3Error::NotModified, "NotModified", 304),
            (S3Error::PreconditionFailed { condition: "If-Match".into() }, "PreconditionFailed", 412),
            (S3Error::RequestTimeout, "RequestTimeout", 400),
            (S3Error::RequestTimeTooSkewed { request_time: "a".into(), server_time: "b".into() }, "RequestTimeTooSkewed", 403),
            (S3Error::SlowDown, "SlowDown", 503),
            (S3Error::XAmzContentSHA256Mismatch { client: "a".into(), computed: "b".into() }, "XAmzContentSHA256Mismatch", 400),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.aws_code(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn xml_shape() {
        let err = S3Error::NoSuchKey { key: "a&b<c>".into() };
        assert_eq!(
            err.to_xml("/bucket/a&b<c>", "REQ1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>a&amp;b&lt;c&gt;</Key>\
             <Resource>/bucket/a&amp;b&lt;c&gt;</Resource><RequestId>REQ1</RequestId></Error>"
        );
        let internal = S3Error::InternalError("volume http://10.0.0.1 down".into()).to_xml("/b", "R");
        assert!(!internal.contains("10.0.0.1"), "internal detail stays in logs");
    }

    #[test]
    fn responses() {
        let r = error_response(&S3Error::NoSuchBucket { bucket: "b".into() }, "/b", "RID", true);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers().get("x-amz-request-id").unwrap(), "RID");
        assert_eq!(r.headers().get("content-type").unwrap(), "application/xml");
        let body = r.into_body().try_into_bytes().unwrap();
        assert!(std::str::from_utf8(&body).unwrap().contains("<BucketName>b</BucketName>"));

        let head = error_response(&S3Error::NoSuchKey { key: "k".into() }, "/b/k", "RID", false);
        assert_eq!(head.status(), 404);
        assert!(head.headers().get("content-type").is_none());
        assert!(head.into_body().try_into_bytes().unwrap().is_empty());

        let range = error_response(&S3Error::InvalidRange { range: "bytes=9-".into(), size: 3 }, "/b/k", "RID", true);
        assert_eq!(range.status(), 416);
        assert_eq!(range.headers().get("content-range").unwrap(), "bytes */3");

        let nm = error_response(&S3Error::NotModified, "/b/k", "RID", true);
        assert_eq!(nm.status(), 304);
        assert!(nm.into_body().try_into_bytes().unwrap().is_empty());
    }

    #[test]
    fn store_errors() {
        assert_eq!(S3Error::from_store(Error::NotFound, "k"), S3Error::NoSuchKey { key: "k".into() });
        assert_eq!(S3Error::from_store(Error::Locked, "k").status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(S3Error::from_store(Error::Internal("x".into()), "k").aws_code(), "InternalError");
    }
}
