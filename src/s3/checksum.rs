//! S3 flexible checksums: algorithms, streaming hashers, a verifying body
//! adapter and the multipart composite checksum.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;
use md5::{Digest as _, Md5};

use super::error::S3Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    /// From the value of `x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm`
    /// (`CRC32`, …); case-insensitive since SDKs have not always agreed on case.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// From a header name such as `x-amz-checksum-crc32` (any case).
    pub fn from_header_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.header_name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Element name in XML bodies (`ChecksumCRC32`, …).
    pub fn xml_element(self) -> &'static str {
        match self {
            Self::Crc32 => "ChecksumCRC32",
            Self::Crc32c => "ChecksumCRC32C",
            Self::Crc64Nvme => "ChecksumCRC64NVME",
            Self::Sha1 => "ChecksumSHA1",
            Self::Sha256 => "ChecksumSHA256",
        }
    }

    /// Length of the raw digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Raw digest of a base64 value, `None` unless it is valid base64 of the
    /// right length (a composite `…-N` value is not a single digest).
    pub fn decode(self, value: &str) -> Option<Vec<u8>> {
        B64.decode(value.trim()).ok().filter(|raw| raw.len() == self.digest_len())
    }

    /// The multipart checksum type AWS uses when the client names none:
    /// CRC64NVME only exists as FULL_OBJECT, the others default to COMPOSITE.
    pub fn default_multipart_type(self) -> ChecksumType {
        match self {
            Self::Crc64Nvme => ChecksumType::FullObject,
            _ => ChecksumType::Composite,
        }
    }

    /// Whether AWS accepts this algorithm with this multipart checksum type
    /// (SHA digests cannot be combined; CRC64NVME is only FULL_OBJECT).
    pub fn supports(self, checksum_type: ChecksumType) -> bool {
        match self {
            Self::Crc32 | Self::Crc32c => true,
            Self::Crc64Nvme => checksum_type == ChecksumType::FullObject,
            Self::Sha1 | Self::Sha256 => checksum_type == ChecksumType::Composite,
        }
    }
}

/// `x-amz-checksum-type` / `<ChecksumType>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumType {
    Composite,
    FullObject,
}

impl ChecksumType {
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim() {
            n if n.eq_ignore_ascii_case("COMPOSITE") => Some(Self::Composite),
            n if n.eq_ignore_ascii_case("FULL_OBJECT") => Some(Self::FullObject),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Composite => "COMPOSITE",
            Self::FullObject => "FULL_OBJECT",
        }
    }
}

/// An algorithm and its base64 value (possibly composite, `…-N`), as stored
/// with an object or part and echoed in headers and XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumValue {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
}

/// Streaming hasher for one algorithm. CRCs finish big-endian, as S3 encodes them.
#[derive(Clone)]
pub enum Hasher {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc64fast_nvme::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Crc32 => Self::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => Self::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => Self::Crc64Nvme(crc64fast_nvme::Digest::new()),
            ChecksumAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        match self {
            Self::Crc32(_) => ChecksumAlgorithm::Crc32,
            Self::Crc32c(_) => ChecksumAlgorithm::Crc32c,
            Self::Crc64Nvme(_) => ChecksumAlgorithm::Crc64Nvme,
            Self::Sha1(_) => ChecksumAlgorithm::Sha1,
            Self::Sha256(_) => ChecksumAlgorithm::Sha256,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) => h.update(data),
            Self::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            Self::Crc64Nvme(h) => h.write(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    /// The raw digest.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Self::Crc32c(crc) => crc.to_be_bytes().to_vec(),
            Self::Crc64Nvme(h) => h.sum64().to_be_bytes().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        }
    }

    /// The digest as S3 writes it in headers and XML.
    pub fn finish_base64(self) -> String {
        B64.encode(self.finish())
    }
}

/// One-shot digest of `data`.
pub fn digest(algorithm: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.finish()
}

/// COMPOSITE multipart checksum: `base64(hash(raw1 || raw2 || …))-N`.
/// Only meaningful for COMPOSITE uploads: CRC64NVME (and CRC32/CRC32C uploads
/// created with `x-amz-checksum-type: FULL_OBJECT`) carry a FULL_OBJECT value,
/// which the caller computes over the whole object while assembling it.
pub fn composite(algorithm: ChecksumAlgorithm, part_checksums_raw: &[Vec<u8>]) -> String {
    let mut h = Hasher::new(algorithm);
    for raw in part_checksums_raw {
        h.update(raw);
    }
    format!("{}-{}", h.finish_base64(), part_checksums_raw.len())
}

/// Raw digest of a `Content-MD5` header; `InvalidDigest` unless it is base64
/// of exactly 16 bytes.
pub fn parse_content_md5(value: &str) -> Result<[u8; 16], S3Error> {
    B64.decode(value.trim()).ok().and_then(|raw| <[u8; 16]>::try_from(raw).ok()).ok_or(S3Error::InvalidDigest)
}

/// Where the expected value of the flexible checksum comes from.
#[derive(Debug, Clone)]
pub enum Expected {
    /// From an `x-amz-checksum-*` header (base64), known before the body.
    Known(String),
    /// From an aws-chunked trailer: the decoder fills this list (lowercase
    /// names) before it yields its end of stream.
    FromTrailer(Arc<Mutex<Vec<(String, String)>>>),
    /// Nothing to verify: only compute the value to store with the object.
    ComputeOnly,
}

enum Want {
    Raw(Vec<u8>),
    Trailer(Arc<Mutex<Vec<(String, String)>>>),
    Nothing,
}

#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    Verified(Option<ChecksumValue>),
    Failed(S3Error),
}

/// Filled by [`ChecksumVerify`] when its body ends: the computed checksum (on
/// success) or the error it yielded, which survives a caller that flattens
/// body errors to strings.
#[derive(Debug, Clone)]
pub struct VerifyHandle(Arc<Mutex<Outcome>>);

impl VerifyHandle {
    fn set(&self, outcome: Outcome) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
    }

    fn get(&self) -> Outcome {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether the body ended cleanly and every expected value matched.
    pub fn is_verified(&self) -> bool {
        matches!(self.get(), Outcome::Verified(_))
    }

    /// The computed flexible checksum, once the body ended verified.
    pub fn checksum(&self) -> Option<ChecksumValue> {
        match self.get() {
            Outcome::Verified(value) => value,
            _ => None,
        }
    }

    /// The error the adapter yielded (from the inner stream or a check).
    pub fn error(&self) -> Option<S3Error> {
        match self.get() {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Hashes a body as it passes and, when the inner stream ends, checks the
/// flexible checksum and Content-MD5. On a mismatch it yields an error
/// *instead of* the end of stream, so a writer that holds back its last
/// chunk until a clean end never commits a bad body. Fused after its end.
pub struct ChecksumVerify<S> {
    inner: S,
    checksum: Option<(Hasher, Want)>,
    md5: Option<(Md5, [u8; 16])>,
    handle: VerifyHandle,
    done: bool,
}

impl<S> ChecksumVerify<S> {
    /// `InvalidRequest` if a `Known` value is not a valid digest for its
    /// algorithm (AWS: "Value for x-amz-checksum-… header is invalid.").
    pub fn new(
        inner: S,
        checksum: Option<(ChecksumAlgorithm, Expected)>,
        content_md5: Option<[u8; 16]>,
    ) -> Result<Self, S3Error> {
        let checksum = match checksum {
            None => None,
            Some((alg, expected)) => {
                let want = match expected {
                    Expected::Known(b64) => Want::Raw(alg.decode(&b64).ok_or_else(|| invalid_value(alg, "header"))?),
                    Expected::FromTrailer(list) => Want::Trailer(list),
                    Expected::ComputeOnly => Want::Nothing,
                };
                Some((Hasher::new(alg), want))
            }
        };
        Ok(ChecksumVerify {
            inner,
            checksum,
            md5: content_md5.map(|m| (Md5::new(), m)),
            handle: VerifyHandle(Arc::new(Mutex::new(Outcome::Pending))),
            done: false,
        })
    }

    pub fn handle(&self) -> VerifyHandle {
        self.handle.clone()
    }

    fn verify(&mut self) -> Result<Option<ChecksumValue>, S3Error> {
        if let Some((md5, expected)) = self.md5.take() {
            if md5.finalize().as_slice() != expected {
                return Err(S3Error::BadDigest("The Content-MD5 you specified did not match what we received.".into()));
            }
        }
        let Some((hasher, want)) = self.checksum.take() else { return Ok(None) };
        let alg = hasher.algorithm();
        let computed = hasher.finish();
        let expected = match want {
            Want::Raw(raw) => Some(raw),
            Want::Trailer(list) => {
                let list = list.lock().unwrap_or_else(PoisonError::into_inner);
                let (_, value) =
                    list.iter().find(|(name, _)| name.eq_ignore_ascii_case(alg.header_name())).ok_or(S3Error::MalformedTrailerError)?;
                Some(alg.decode(value).ok_or_else(|| invalid_value(alg, "trailing header"))?)
            }
            Want::Nothing => None,
        };
        if expected.is_some_and(|e| e != computed) {
            return Err(S3Error::BadDigest(format!("The {} you specified did not match the calculated checksum.", alg.as_str())));
        }
        Ok(Some(ChecksumValue { algorithm: alg, value: B64.encode(computed) }))
    }

    fn fail(&mut self, err: S3Error) -> Poll<Option<Result<Bytes, S3Error>>> {
        self.done = true;
        self.handle.set(Outcome::Failed(err.clone()));
        Poll::Ready(Some(Err(err)))
    }
}

fn invalid_value(alg: ChecksumAlgorithm, what: &str) -> S3Error {
    S3Error::InvalidRequest(format!("Value for {} {what} is invalid.", alg.header_name()))
}

impl<S, E> Stream for ChecksumVerify<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<S3Error>,
{
    type Item = Result<Bytes, S3Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some((h, _)) = &mut this.checksum {
                    h.update(&chunk);
                }
                if let Some((h, _)) = &mut this.md5 {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(e.into()),
            Poll::Ready(None) => match this.verify() {
                Ok(value) => {
                    this.done = true;
                    this.handle.set(Outcome::Verified(value));
                    Poll::Ready(None)
                }
                Err(e) => this.fail(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{executor::block_on, stream, StreamExt};

    // Vectors from Python: zlib/hashlib, and bitwise reference CRCs that
    // reproduce the published check values (CRC-32C "123456789" = E3069283,
    // CRC-64/NVME "123456789" = AE8B14860A799888).
    const VECTORS: &[(ChecksumAlgorithm, &[u8], &str)] = &[
        (ChecksumAlgorithm::Crc32, b"hello world", "DUoRhQ=="),
        (ChecksumAlgorithm::Crc32, b"123456789", "y/Q5Jg=="),
        (ChecksumAlgorithm::Crc32, b"", "AAAAAA=="),
        (ChecksumAlgorithm::Crc32c, b"123456789", "4waSgw=="),
        (ChecksumAlgorithm::Crc32c, b"hello world", "yZRlqg=="),
        (ChecksumAlgorithm::Crc64Nvme, b"123456789", "rosUhgp5mIg="),
        (ChecksumAlgorithm::Crc64Nvme, b"hello world", "jSnVw/bqjr4="),
        (ChecksumAlgorithm::Crc64Nvme, b"", "AAAAAAAAAAA="),
        (ChecksumAlgorithm::Sha1, b"hello world", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
        (ChecksumAlgorithm::Sha256, b"hello world", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="),
        (ChecksumAlgorithm::Sha256, b"", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
    ];

    fn big() -> Vec<u8> {
        (0..=255u8).cycle().take(10240).collect()
    }

    #[test]
    fn known_vectors() {
        for (alg, data, want) in VECTORS {
            assert_eq!(B64.encode(digest(*alg, data)), *want, "{alg:?} {data:?}");
        }
        assert_eq!(u64::from_be_bytes(digest(ChecksumAlgorithm::Crc64Nvme, b"123456789").try_into().unwrap()), 0xAE8B14860A799888);
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data = big();
        let want = [
            (ChecksumAlgorithm::Crc32, "u847nQ=="),
            (ChecksumAlgorithm::Crc32c, "vYRs1w=="),
            (ChecksumAlgorithm::Crc64Nvme, "4XY+hejrRZk="),
        ];
        for (alg, b64) in want {
            for size in [1, 7, 64, 1000, 10240] {
                let mut h = Hasher::new(alg);
                data.chunks(size).for_each(|c| h.update(c));
                assert_eq!(h.finish_base64(), b64, "{alg:?} chunks of {size}");
            }
        }
    }

    #[test]
    fn names() {
        for alg in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::from_name(alg.as_str()), Some(alg));
            assert_eq!(ChecksumAlgorithm::from_header_name(alg.header_name()), Some(alg));
            assert_eq!(ChecksumAlgorithm::from_header_name(&alg.header_name().to_uppercase()), Some(alg));
            assert_eq!(digest(alg, b"x").len(), alg.digest_len());
        }
        assert_eq!(ChecksumAlgorithm::from_name("crc64nvme"), Some(ChecksumAlgorithm::Crc64Nvme));
        assert_eq!(ChecksumAlgorithm::from_name("MD5"), None);
        assert_eq!(ChecksumAlgorithm::from_header_name("x-amz-checksum-md5"), None);
        assert_eq!(ChecksumType::from_name("FULL_OBJECT"), Some(ChecksumType::FullObject));
        assert!(!ChecksumAlgorithm::Sha256.supports(ChecksumType::FullObject));
        assert!(!ChecksumAlgorithm::Crc64Nvme.supports(ChecksumType::Composite));
        assert_eq!(ChecksumAlgorithm::Crc64Nvme.default_multipart_type(), ChecksumType::FullObject);
    }

    #[test]
    fn decode_checks_length() {
        assert!(ChecksumAlgorithm::Crc32.decode("DUoRhQ==").is_some());
        assert!(ChecksumAlgorithm::Crc32c.decode("DUoRhQ==").is_some());
        assert!(ChecksumAlgorithm::Crc64Nvme.decode("DUoRhQ==").is_none());
        assert!(ChecksumAlgorithm::Crc32.decode("not base64!").is_none());
        assert!(ChecksumAlgorithm::Crc32.decode("1Fu2mQ==-2").is_none());
    }

    #[test]
    fn composite_values() {
        let parts = [&b"hello "[..], b"world"];
        let cases = [
            (ChecksumAlgorithm::Crc32, "1Fu2mQ==-2"),
            (ChecksumAlgorithm::Crc32c, "vUZpoA==-2"),
            (ChecksumAlgorithm::Sha256, "Zhie15keHg/OBlOZxcoF/BXCgYZaeimRvdZnwUZqkaQ=-2"),
        ];
        for (alg, want) in cases {
            let raws: Vec<Vec<u8>> = parts.iter().map(|p| digest(alg, p)).collect();
            assert_eq!(composite(alg, &raws), want);
        }
    }

    #[test]
    fn content_md5() {
        assert_eq!(parse_content_md5("XrY7u+Ae7tCTyyK7j1rNww==").unwrap().to_vec(), Md5::digest(b"hello world").to_vec());
        assert_eq!(parse_content_md5("DUoRhQ=="), Err(S3Error::InvalidDigest));
        assert_eq!(parse_content_md5("%%%"), Err(S3Error::InvalidDigest));
        assert_eq!(parse_content_md5(""), Err(S3Error::InvalidDigest));
    }

    fn body(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, S3Error>> + Unpin {
        let chunks: Vec<Result<Bytes, S3Error>> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        stream::iter(chunks)
    }

    /// Bytes passed through and the final item (None = clean end).
    fn run<S: Stream<Item = Result<Bytes, S3Error>> + Unpin>(mut s: S) -> (Vec<u8>, Option<S3Error>) {
        block_on(async {
            let mut out = Vec::new();
            while let Some(item) = s.next().await {
                match item {
                    Ok(c) => out.extend_from_slice(&c),
                    Err(e) => {
                        assert!(s.next().await.is_none(), "fused after an error");
                        return (out, Some(e));
                    }
                }
            }
            (out, None)
        })
    }

    #[test]
    fn adapter_known_ok_any_chunking() {
        let data = big();
        for size in [1, 3, 100, 4096, 20000] {
            let v = ChecksumVerify::new(
                body(&data, size),
                Some((ChecksumAlgorithm::Crc32c, Expected::Known("vYRs1w==".into()))),
                Some(parse_content_md5("w80m4H5VXAEW2yN/vAbZnA==").unwrap()),
            )
            .unwrap();
            let h = v.handle();
            assert_eq!(h.checksum(), None);
            let (out, err) = run(v);
            assert_eq!((out, err), (data.clone(), None));
            assert!(h.is_verified());
            assert_eq!(h.checksum(), Some(ChecksumValue { algorithm: ChecksumAlgorithm::Crc32c, value: "vYRs1w==".into() }));
        }
    }

    #[test]
    fn adapter_checksum_mismatch() {
        let v = ChecksumVerify::new(body(b"hello world", 4), Some((ChecksumAlgorithm::Crc32, Expected::Known("y/Q5Jg==".into()))), None)
            .unwrap();
        let h = v.handle();
        let (out, err) = run(v);
        assert_eq!(out, b"hello world");
        let err = err.unwrap();
        assert_eq!(err.aws_code(), "BadDigest");
        assert_eq!(h.error(), Some(err));
        assert_eq!(h.checksum(), None);
        assert!(!h.is_verified());
    }

    #[test]
    fn adapter_md5_mismatch() {
        let wrong = parse_content_md5("1B2M2Y8AsgTpgAmY7PhCfg==").unwrap();
        let v = ChecksumVerify::new(body(b"hello world", 5), None, Some(wrong)).unwrap();
        let (_, err) = run(v);
        assert_eq!(err.unwrap().aws_code(), "BadDigest");
    }

    #[test]
    fn adapter_invalid_header_value() {
        let r = ChecksumVerify::new(body(b"x", 1), Some((ChecksumAlgorithm::Sha256, Expected::Known("DUoRhQ==".into()))), None);
        assert_eq!(r.err().unwrap().aws_code(), "InvalidRequest");
    }

    /// Like the aws-chunked decoder: fills the trailer list just before its end.
    fn trailer_body(
        data: &'static [u8],
        trailers: Arc<Mutex<Vec<(String, String)>>>,
        fill: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<Bytes, S3Error>> + Unpin {
        let tail = stream::once(async move {
            trailers.lock().unwrap().extend(fill);
            None
        });
        let chunks = data.chunks(3).map(|c| Some(Ok(Bytes::from_static(c))));
        Box::pin(stream::iter(chunks).chain(tail).filter_map(|x| async move { x }))
    }

    #[test]
    fn adapter_trailer() {
        let ok = vec![("x-amz-checksum-crc64nvme".to_string(), "jSnVw/bqjr4=".to_string())];
        let list = Arc::new(Mutex::new(Vec::new()));
        let v = ChecksumVerify::new(
            trailer_body(b"hello world", list.clone(), ok),
            Some((ChecksumAlgorithm::Crc64Nvme, Expected::FromTrailer(list))),
            None,
        )
        .unwrap();
        let h = v.handle();
        assert_eq!(run(v), (b"hello world".to_vec(), None));
        assert_eq!(h.checksum().unwrap().value, "jSnVw/bqjr4=");

        let bad = vec![("x-amz-checksum-crc64nvme".to_string(), "rosUhgp5mIg=".to_string())];
        let list = Arc::new(Mutex::new(Vec::new()));
        let v = ChecksumVerify::new(
            trailer_body(b"hello world", list.clone(), bad),
            Some((ChecksumAlgorithm::Crc64Nvme, Expected::FromTrailer(list))),
            None,
        )
        .unwrap();
        assert_eq!(run(v).1.unwrap().aws_code(), "BadDigest");
    }

    #[test]
    fn adapter_missing_or_garbled_trailer() {
        let cases = [
            (vec![], "MalformedTrailerError"),
            (vec![("x-amz-checksum-crc32c".to_string(), "yZRlqg==".to_string())], "MalformedTrailerError"),
            (vec![("x-amz-checksum-crc32".to_string(), "???".to_string())], "InvalidRequest"),
        ];
        for (fill, code) in cases {
            let list = Arc::new(Mutex::new(Vec::new()));
            let v = ChecksumVerify::new(
                trailer_body(b"hello world", list.clone(), fill),
                Some((ChecksumAlgorithm::Crc32, Expected::FromTrailer(list))),
                None,
            )
            .unwrap();
            let h = v.handle();
            assert_eq!(run(v).1.unwrap().aws_code(), code);
            assert_eq!(h.error().unwrap().aws_code(), code);
        }
    }

    #[test]
    fn adapter_compute_only_and_inner_error() {
        let v = ChecksumVerify::new(body(b"hello world", 2), Some((ChecksumAlgorithm::Sha1, Expected::ComputeOnly)), None).unwrap();
        let h = v.handle();
        assert_eq!(run(v).1, None);
        assert_eq!(h.checksum().unwrap().value, "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");

        let inner = stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err(S3Error::IncompleteBody)]);
        let v = ChecksumVerify::new(inner, Some((ChecksumAlgorithm::Crc32, Expected::ComputeOnly)), None).unwrap();
        let h = v.handle();
        assert_eq!(run(v), (b"ab".to_vec(), Some(S3Error::IncompleteBody)));
        assert_eq!(h.error(), Some(S3Error::IncompleteBody));
    }

    #[test]
    fn adapter_without_checks_passes_through() {
        let v = ChecksumVerify::new(body(b"abc", 1), None, None).unwrap();
        let h = v.handle();
        assert_eq!(run(v), (b"abc".to_vec(), None));
        assert!(h.is_verified());
        assert_eq!(h.checksum(), None);
    }
}
