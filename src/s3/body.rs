//! Request bodies of S3 calls: decode the payload mode (aws-chunked or
//! plain), verify the signed SHA-256, the flexible checksum and Content-MD5
//! while streaming, and remember the first S3 error for the handler (the
//! store only sees a failed stream).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use actix_web::{web, HttpRequest};
use bytes::Bytes;
use futures::stream::LocalBoxStream;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::checksum::{parse_content_md5, ChecksumAlgorithm, ChecksumVerify, Expected, VerifyHandle};
use super::chunked::{is_aws_chunked, AwsChunked};
use super::error::S3Error;
use super::sigv4::{PayloadMode, Verified};
use super::header;

/// Largest XML request body we read (DeleteObjects of 1000 long keys).
pub const MAX_XML_BODY: usize = 4 << 20;

pub struct Body {
    pub stream: LocalBoxStream<'static, Result<Bytes, S3Error>>,
    /// Decoded length when the client said it.
    pub len: Option<u64>,
    /// The checksum computed over the body (stored and echoed).
    pub checksum: VerifyHandle,
    failure: Rc<RefCell<Option<S3Error>>>,
}

impl Body {
    /// Decode and verify `payload` as `auth` and the headers say.
    pub fn new(req: &HttpRequest, payload: web::Payload, auth: &Verified) -> Result<Body, S3Error> {
        Body::decode(req, payload, auth, true)
    }

    /// A body whose `x-amz-checksum-*` headers describe the object, not the
    /// body (CompleteMultipartUpload's part list): only its signature and
    /// Content-MD5 are checked.
    pub fn describing_object(req: &HttpRequest, payload: web::Payload, auth: &Verified) -> Result<Body, S3Error> {
        Body::decode(req, payload, auth, false)
    }

    fn decode(req: &HttpRequest, payload: web::Payload, auth: &Verified, flexible_checksum: bool) -> Result<Body, S3Error> {
        let chunked_encoding = header(req, "content-encoding").is_some_and(|v| v.split(',').any(|e| is_aws_chunked(e.as_bytes())));
        if chunked_encoding && !auth.payload.is_streaming() {
            return Err(S3Error::InvalidRequest("aws-chunked Content-Encoding needs a STREAMING-* x-amz-content-sha256".into()));
        }
        let content_length = header(req, "content-length").and_then(|v| v.parse::<u64>().ok());
        let raw = payload.map(|r| r.map_err(S3Error::from));
        let trailers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (stream, len): (LocalBoxStream<'static, Result<Bytes, S3Error>>, Option<u64>) = if auth.payload.is_streaming() {
            let decoded = match header(req, "x-amz-decoded-content-length") {
                Some(v) => Some(v.parse::<u64>().map_err(|_| S3Error::InvalidArgument {
                    message: "x-amz-decoded-content-length is not a number".into(),
                    name: "x-amz-decoded-content-length".into(),
                    value: v.to_string(),
                })?),
                None => None,
            };
            let signing = match auth.payload {
                PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer => auth.chunk_signing.clone(),
                _ => None,
            };
            let with_trailer = matches!(auth.payload, PayloadMode::StreamingSignedTrailer | PayloadMode::StreamingUnsignedTrailer);
            (AwsChunked::new(raw, signing, with_trailer, trailers.clone(), decoded).map(|r| r.map_err(S3Error::from)).boxed_local(), decoded)
        } else if let PayloadMode::Sha256(want) = &auth.payload {
            (Sha256Verify::new(raw, want.clone()).boxed_local(), content_length)
        } else {
            (raw.boxed_local(), content_length)
        };
        let content_md5 = header(req, "content-md5").map(parse_content_md5).transpose()?;
        let expected = if flexible_checksum { expected_checksum(req, &trailers)? } else { None };
        let verify = ChecksumVerify::new(stream, expected, content_md5)?;
        let checksum = verify.handle();
        let failure: Rc<RefCell<Option<S3Error>>> = Rc::default();
        let slot = failure.clone();
        let stream = verify
            .map(move |r| {
                if let Err(e) = &r {
                    slot.borrow_mut().get_or_insert_with(|| e.clone());
                }
                r
            })
            .boxed_local();
        Ok(Body { stream, len, checksum, failure })
    }

    /// The S3 error that ended the body early, if that is what failed.
    pub fn failure(&self) -> Option<S3Error> {
        self.failure.borrow().clone()
    }

    /// Read a small body (XML) whole, at most `MAX_XML_BODY` bytes.
    pub async fn read_all(mut self) -> Result<Vec<u8>, S3Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.stream.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > MAX_XML_BODY {
                return Err(S3Error::EntityTooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Which flexible checksum the request carries: an `x-amz-checksum-*`
/// header (at most one), or one announced in `x-amz-trailer`; with only
/// `x-amz-sdk-checksum-algorithm`, compute it without checking. An SDK
/// algorithm naming another checksum than the one sent is refused, as AWS does.
fn expected_checksum(req: &HttpRequest, trailers: &Arc<Mutex<Vec<(String, String)>>>) -> Result<Option<(ChecksumAlgorithm, Expected)>, S3Error> {
    let sdk = match header(req, "x-amz-sdk-checksum-algorithm") {
        Some(name) => Some(ChecksumAlgorithm::from_name(name).ok_or_else(|| S3Error::InvalidRequest(format!("unsupported checksum algorithm {name:?}")))?),
        None => None,
    };
    // A checksum of an algorithm we do not compute is refused, never ignored.
    for name in req.headers().keys() {
        let other = name.as_str().strip_prefix("x-amz-checksum-").is_some_and(|a| !matches!(a, "type" | "algorithm" | "mode"));
        if other && ChecksumAlgorithm::from_header_name(name.as_str()).is_none() {
            return Err(S3Error::InvalidRequest(format!("unsupported checksum header {name}")));
        }
    }
    let mut sent = ChecksumAlgorithm::ALL.into_iter().filter_map(|alg| header(req, alg.header_name()).map(|v| (alg, v)));
    let expected = match (sent.next(), sent.next()) {
        (Some(_), Some(_)) => {
            return Err(S3Error::InvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.".into()));
        }
        (Some((alg, v)), None) => Some((alg, Expected::Known(v.to_string()))),
        (None, _) => match header(req, "x-amz-trailer") {
            Some(t) => {
                let alg = ChecksumAlgorithm::from_header_name(t.trim())
                    .ok_or_else(|| S3Error::InvalidRequest(format!("unsupported x-amz-trailer {t:?}")))?;
                Some((alg, Expected::FromTrailer(trailers.clone())))
            }
            None => None,
        },
    };
    match (expected, sdk) {
        (Some((alg, _)), Some(sdk)) if alg != sdk => Err(S3Error::InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.".into())),
        (None, Some(sdk)) => Ok(Some((sdk, Expected::ComputeOnly))),
        (expected, _) => Ok(expected),
    }
}

/// Checks a body against the SHA-256 its signature covers; a mismatch ends
/// the stream with an error instead of its end.
struct Sha256Verify<S> {
    inner: S,
    hasher: Option<Sha256>,
    want: String,
}

impl<S> Sha256Verify<S> {
    fn new(inner: S, want: String) -> Self {
        Sha256Verify { inner, hasher: Some(Sha256::new()), want }
    }
}

impl<S: Stream<Item = Result<Bytes, S3Error>> + Unpin> Stream for Sha256Verify<S> {
    type Item = Result<Bytes, S3Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(hasher) = this.hasher.as_mut() else { return Poll::Ready(None) };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let got = hex::encode(this.hasher.take().map(|h| h.finalize()).unwrap_or_default());
                if got == this.want {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(S3Error::XAmzContentSHA256Mismatch { client: this.want.clone(), computed: got })))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(chunks: Vec<&'static [u8]>, want: &str) -> Vec<Result<Bytes, S3Error>> {
        let inner = futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))));
        Sha256Verify::new(inner, want.to_string()).collect().await
    }

    #[tokio::test]
    async fn sha256_checked_at_end() {
        let good = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"; // "hello world"
        let out = run(vec![b"hello ", b"world"], good).await;
        assert!(out.iter().all(Result::is_ok) && out.len() == 2);
        let out = run(vec![b"hello ", b"there"], good).await;
        assert!(matches!(out.last(), Some(Err(S3Error::XAmzContentSHA256Mismatch { .. }))));
    }
}
