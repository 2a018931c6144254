//! Decoder for `Content-Encoding: aws-chunked` request bodies, as a stream
//! adapter yielding the object's bytes.
//!
//! Signed framing: `<hex>;chunk-signature=<sig>\r\n<data>\r\n` ... then
//! `0;chunk-signature=<sig>\r\n`; unsigned: `<hex>\r\n<data>\r\n` ... `0\r\n`.
//! After the final chunk come the trailers (trailer modes only), e.g.
//! `x-amz-checksum-crc32:<b64>\r\n`, then for signed trailers
//! `x-amz-trailer-signature:<sig>\r\n`, and an optional empty line.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;

use super::sigv4::{verify_chunk_signature, verify_trailer_signature, ChunkSigning};

/// Largest chunk accepted; signed chunks are held whole until verified.
pub const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// Longest chunk header line (size, extensions, CRLF).
const MAX_HEADER_LINE: usize = 4096;
/// Largest trailer section.
const MAX_TRAILER_SECTION: usize = 16 * 1024;
const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// Whether one coding of a `Content-Encoding` list is `aws-chunked`.
pub fn is_aws_chunked(coding: &[u8]) -> bool {
    coding.trim_ascii().eq_ignore_ascii_case(b"aws-chunked")
}

/// Trailing headers (names lowercase), filled before the stream ends cleanly.
pub type Trailers = Arc<Mutex<Vec<(String, String)>>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("The request body terminated unexpectedly")]
    Truncated,
    #[error("Malformed aws-chunked body: {0}")]
    Malformed(&'static str),
    #[error("aws-chunked chunk of {0} bytes exceeds the {MAX_CHUNK_SIZE}-byte limit")]
    ChunkTooLarge(u64),
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
    SignatureDoesNotMatch,
    #[error("The request contained trailing data that was not well-formed or did not conform to our published schema: {0}")]
    MalformedTrailer(&'static str),
    #[error("The request contained trailing data that was not well-formed or did not conform to our published schema: the announced trailer is missing")]
    MissingTrailer,
    #[error("The decoded body has {actual} bytes but x-amz-decoded-content-length is {declared}")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("Error reading the request body: {0}")]
    Inner(String),
}

impl ChunkedError {
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::Truncated | Self::LengthMismatch { .. } | Self::Inner(_) => "IncompleteBody",
            Self::Malformed(_) | Self::ChunkTooLarge(_) => "InvalidRequest",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::MalformedTrailer(_) | Self::MissingTrailer => "MalformedTrailerError",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::SignatureDoesNotMatch => 403,
            _ => 400,
        }
    }
}

struct Chain {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    prev: String,
}

enum State {
    Header,
    /// Inside a chunk's data; signed chunks carry their claimed signature.
    Data {
        left: u64,
        signature: Option<String>,
    },
    /// Expecting the CRLF that closes a chunk's data.
    DataEnd,
    /// After the final chunk: trailers (or nothing) up to the end of input.
    Tail,
    Done,
}

enum Step {
    Yield(Bytes),
    NeedMore,
    End,
}

/// The decoding stream. Unsigned chunks are passed through as they arrive;
/// signed chunks are held (at most [`MAX_CHUNK_SIZE`]) until their signature
/// checks out. The stream ends cleanly only after the final chunk, valid
/// trailers and the declared length; every failure is an error item, after
/// which the stream is finished.
pub struct AwsChunked<S> {
    inner: S,
    buf: BytesMut,
    eof: bool,
    state: State,
    chain: Option<Chain>,
    with_trailer: bool,
    decoded_length: Option<u64>,
    produced: u64,
    trailers: Trailers,
}

impl<S> AwsChunked<S> {
    /// `signing` is `Some` for the signed modes (`Verified::chunk_signing`);
    /// `with_trailer` for the `*-TRAILER` modes, which must then end with at
    /// least one trailing header; `decoded_length` is
    /// `x-amz-decoded-content-length` if the request had one.
    pub fn new(inner: S, signing: Option<ChunkSigning>, with_trailer: bool, trailers: Trailers, decoded_length: Option<u64>) -> Self {
        AwsChunked {
            inner,
            buf: BytesMut::new(),
            eof: false,
            state: State::Header,
            chain: signing.map(|cs| Chain {
                key: cs.signing_key,
                amz_date: cs.amz_date,
                scope: cs.scope,
                prev: cs.seed_signature,
            }),
            with_trailer,
            decoded_length,
            produced: 0,
            trailers,
        }
    }

    fn need_more(&self) -> Result<Step, ChunkedError> {
        if self.eof {
            Err(ChunkedError::Truncated)
        } else {
            Ok(Step::NeedMore)
        }
    }

    fn count(&mut self, n: usize) -> Result<(), ChunkedError> {
        self.produced += n as u64;
        match self.decoded_length {
            Some(declared) if self.produced > declared => Err(ChunkedError::LengthMismatch {
                declared,
                actual: self.produced,
            }),
            _ => Ok(()),
        }
    }

    /// Advance as far as the buffered input allows.
    fn step(&mut self) -> Result<Step, ChunkedError> {
        loop {
            match &mut self.state {
                State::Header => {
                    let window = &self.buf[..self.buf.len().min(MAX_HEADER_LINE)];
                    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
                        if self.buf.len() >= MAX_HEADER_LINE {
                            return Err(ChunkedError::Malformed("chunk header line too long"));
                        }
                        return self.need_more();
                    };
                    let line = self.buf.split_to(end + 2);
                    let (size, signature) = self.parse_header(&line[..end])?;
                    if size == 0 {
                        self.check_chunk(signature.as_deref(), &[])?;
                        self.state = State::Tail;
                    } else {
                        self.state = State::Data { left: size, signature };
                    }
                }
                State::Data { left, signature: None } => {
                    if self.buf.is_empty() {
                        return self.need_more();
                    }
                    let n = self.buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::DataEnd;
                    }
                    let data = self.buf.split_to(n).freeze();
                    self.count(n)?;
                    return Ok(Step::Yield(data));
                }
                State::Data {
                    left,
                    signature: Some(signature),
                } => {
                    // `left` ≤ MAX_CHUNK_SIZE, so it fits a usize.
                    let len = usize::try_from(*left).unwrap_or(usize::MAX);
                    // Grown as data arrives, not reserved up front: a bare
                    // header must not cost 16 MiB.
                    if self.buf.len() < len {
                        return self.need_more();
                    }
                    let signature = std::mem::take(signature);
                    let data = self.buf.split_to(len).freeze();
                    self.check_chunk(Some(&signature), &data)?;
                    self.state = State::DataEnd;
                    self.count(len)?;
                    return Ok(Step::Yield(data));
                }
                State::DataEnd => {
                    if self.buf.len() < 2 {
                        return self.need_more();
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(ChunkedError::Malformed("chunk data is not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    self.state = State::Header;
                }
                State::Tail => {
                    if self.buf.len() > MAX_TRAILER_SECTION {
                        return Err(ChunkedError::MalformedTrailer("trailer section too large"));
                    }
                    if !self.eof {
                        return Ok(Step::NeedMore);
                    }
                    self.finish()?;
                    self.state = State::Done;
                    return Ok(Step::End);
                }
                State::Done => return Ok(Step::End),
            }
        }
    }

    /// `(size, chunk-signature)` of a chunk header line.
    fn parse_header(&self, line: &[u8]) -> Result<(u64, Option<String>), ChunkedError> {
        let line = std::str::from_utf8(line).map_err(|_| ChunkedError::Malformed("chunk header is not ASCII"))?;
        let (size, extensions) = match line.split_once(';') {
            Some((s, e)) => (s.trim(), Some(e)),
            None => (line.trim(), None),
        };
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChunkedError::Malformed("chunk size is not hexadecimal"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| ChunkedError::Malformed("chunk size is not hexadecimal"))?;
        if size > MAX_CHUNK_SIZE {
            return Err(ChunkedError::ChunkTooLarge(size));
        }
        // Unsigned framing has nothing to verify, so extensions are ignored.
        if self.chain.is_none() {
            return Ok((size, None));
        }
        let signature = extensions
            .and_then(|e| e.trim().strip_prefix("chunk-signature="))
            .ok_or(ChunkedError::Malformed("signed chunk without chunk-signature"))?;
        Ok((size, Some(signature.trim().to_ascii_lowercase())))
    }

    /// Check a chunk against the signature chain and advance it.
    fn check_chunk(&mut self, signature: Option<&str>, data: &[u8]) -> Result<(), ChunkedError> {
        let (Some(chain), Some(signature)) = (&mut self.chain, signature) else {
            return Ok(());
        };
        if !verify_chunk_signature(&chain.key, &chain.amz_date, &chain.scope, &chain.prev, data, signature) {
            return Err(ChunkedError::SignatureDoesNotMatch);
        }
        chain.prev = signature.to_string();
        Ok(())
    }

    /// Parse and check everything after the final chunk, then publish the trailers.
    fn finish(&mut self) -> Result<(), ChunkedError> {
        let tail = std::mem::take(&mut self.buf);
        let text = std::str::from_utf8(&tail).map_err(|_| ChunkedError::MalformedTrailer("trailer is not UTF-8"))?;
        let mut found: Vec<(String, String)> = Vec::new();
        let mut signature: Option<&str> = None;
        // Blank lines are skipped: clients differ on the CRLF after the final
        // chunk and at the very end.
        for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
            if line.trim().is_empty() {
                continue;
            }
            if !self.with_trailer {
                return Err(ChunkedError::Malformed("data after the final chunk"));
            }
            if signature.is_some() {
                return Err(ChunkedError::MalformedTrailer("trailer after x-amz-trailer-signature"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(ChunkedError::MalformedTrailer("trailer line without ':'"))?;
            let name = name.trim().to_ascii_lowercase();
            if name == TRAILER_SIGNATURE {
                signature = Some(value.trim());
            } else if !name.is_empty() {
                found.push((name, value.trim().to_string()));
            } else {
                return Err(ChunkedError::MalformedTrailer("trailer without a name"));
            }
        }
        // Unsigned framing has no chain; a stray trailer signature there is ignored.
        if let Some(chain) = &self.chain {
            if !found.is_empty() || signature.is_some() {
                let provided = signature.ok_or(ChunkedError::MalformedTrailer("missing x-amz-trailer-signature"))?;
                let mut sorted = found.clone();
                sorted.sort();
                let canonical: String = sorted.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
                if !verify_trailer_signature(
                    &chain.key,
                    &chain.amz_date,
                    &chain.scope,
                    &chain.prev,
                    canonical.as_bytes(),
                    &provided.to_ascii_lowercase(),
                ) {
                    return Err(ChunkedError::SignatureDoesNotMatch);
                }
            }
        }
        if self.with_trailer && found.is_empty() {
            return Err(ChunkedError::MissingTrailer);
        }
        if let Some(declared) = self.decoded_length.filter(|d| *d != self.produced) {
            return Err(ChunkedError::LengthMismatch {
                declared,
                actual: self.produced,
            });
        }
        match self.trailers.lock() {
            Ok(mut t) => *t = found,
            Err(poisoned) => *poisoned.into_inner() = found,
        }
        Ok(())
    }
}

impl<S, E> Stream for AwsChunked<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, ChunkedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.step() {
                Ok(Step::Yield(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    this.state = State::Done;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    this.state = State::Done;
                    this.buf = BytesMut::new();
                    return Poll::Ready(Some(Err(ChunkedError::Inner(e.to_string()))));
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::sigv4::{chunk_signature, signing_key, trailer_signature};
    use futures::StreamExt;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20130524T000000Z";
    const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";

    fn signing(seed: &str) -> ChunkSigning {
        ChunkSigning {
            signing_key: signing_key(SECRET, "20130524", "us-east-1", "s3"),
            amz_date: DATE.into(),
            scope: SCOPE.into(),
            seed_signature: seed.into(),
        }
    }

    /// The sigv4-streaming example body: 64 KiB then 1 KiB of 'a'.
    fn aws_example_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        body
    }

    /// The sigv4-streaming-trailers example body, CRC32C trailer signed.
    fn aws_trailer_body(final_crlf: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n");
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n");
        body.extend_from_slice(b"x-amz-checksum-crc32c:sOO8/Q==\r\n");
        body.extend_from_slice(b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n");
        if final_crlf {
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    /// Tiny deterministic generator, so splits are reproducible.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn split(body: &[u8], mut sizes: impl FnMut() -> usize) -> Vec<Result<Bytes, String>> {
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = sizes().clamp(1, rest.len());
            out.push(Ok(Bytes::copy_from_slice(&rest[..n])));
            rest = &rest[n..];
        }
        out
    }

    struct Outcome {
        data: Vec<u8>,
        error: Option<ChunkedError>,
        items: usize,
        trailers: Vec<(String, String)>,
    }

    async fn run(pieces: Vec<Result<Bytes, String>>, signing: Option<ChunkSigning>, with_trailer: bool, length: Option<u64>) -> Outcome {
        let trailers = Trailers::default();
        let mut s = AwsChunked::new(futures::stream::iter(pieces), signing, with_trailer, trailers.clone(), length);
        let (mut data, mut error, mut items) = (Vec::new(), None, 0);
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => {
                    assert!(error.is_none(), "data after an error");
                    items += 1;
                    data.extend_from_slice(&b);
                }
                Err(e) => {
                    assert!(error.is_none(), "two errors");
                    error = Some(e);
                }
            }
        }
        assert!(s.next().await.is_none(), "fused");
        let trailers = trailers.lock().expect("not poisoned").clone();
        Outcome {
            data,
            error,
            items,
            trailers,
        }
    }

    #[tokio::test]
    async fn aws_64k_example_end_to_end() {
        let body = aws_example_body();
        assert_eq!(body.len(), 66824, "the example's Content-Length");
        let out = run(vec![Ok(Bytes::from(body))], Some(signing(SEED)), false, Some(66560)).await;
        assert_eq!(out.error, None);
        assert_eq!(out.data, vec![b'a'; 66560]);
        assert_eq!(out.items, 2, "one item per signed chunk");
        assert!(out.trailers.is_empty());
    }

    #[tokio::test]
    async fn aws_64k_example_any_split() {
        let body = aws_example_body();
        let out = run(split(&body, || 1), Some(signing(SEED)), false, Some(66560)).await;
        assert_eq!((out.error, out.data.len()), (None, 66560));
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for max in [3usize, 17, 100, 5000, 70000] {
            let out = run(
                split(&body, || (xorshift(&mut seed) as usize) % max + 1),
                Some(signing(SEED)),
                false,
                Some(66560),
            )
            .await;
            assert_eq!(out.error, None, "max piece {max}");
            assert_eq!(out.data, vec![b'a'; 66560]);
        }
        // Empty pieces from the transport are harmless.
        let mut pieces = split(&body, || 4096);
        pieces.insert(1, Ok(Bytes::new()));
        assert_eq!(run(pieces, Some(signing(SEED)), false, None).await.error, None);
    }

    #[tokio::test]
    async fn aws_signed_trailer_example() {
        for final_crlf in [true, false] {
            for piece in [usize::MAX, 1, 7] {
                let body = aws_trailer_body(final_crlf);
                let out = run(split(&body, || piece), Some(signing(TRAILER_SEED)), true, Some(66560)).await;
                assert_eq!(out.error, None);
                assert_eq!(out.data.len(), 66560);
                assert_eq!(out.trailers, vec![("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]);
            }
        }
        // A forged checksum breaks the trailer signature.
        let body = String::from_utf8(aws_trailer_body(true))
            .expect("ascii")
            .replace("sOO8/Q==", "AAAAAA==");
        let out = run(vec![Ok(Bytes::from(body))], Some(signing(TRAILER_SEED)), true, None).await;
        assert_eq!(out.error, Some(ChunkedError::SignatureDoesNotMatch));
        assert!(out.trailers.is_empty());
        // Stripping the trailer signature is not allowed.
        let body = String::from_utf8(aws_trailer_body(true)).expect("ascii");
        let cut = body.split("x-amz-trailer-signature").next().unwrap_or_default().to_string();
        let out = run(vec![Ok(Bytes::from(cut))], Some(signing(TRAILER_SEED)), true, None).await;
        assert_eq!(out.error.as_ref().map(ChunkedError::aws_code), Some("MalformedTrailerError"));
    }

    #[tokio::test]
    async fn signed_trailer_with_our_own_signatures() {
        // Two trailers, sent unsorted: the canonical block sorts them.
        let cs = signing(SEED);
        let sig1 = chunk_signature(&cs.signing_key, DATE, SCOPE, SEED, b"hello");
        let sig0 = chunk_signature(&cs.signing_key, DATE, SCOPE, &sig1, b"");
        let canonical = "x-amz-checksum-crc32:DUoRhQ==\nx-amz-meta-z:1\n";
        let tsig = trailer_signature(&cs.signing_key, DATE, SCOPE, &sig0, canonical.as_bytes());
        let body = format!("5;chunk-signature={sig1}\r\nhello\r\n0;chunk-signature={sig0}\r\nx-amz-meta-z: 1\r\nX-Amz-Checksum-Crc32:DUoRhQ==\r\nx-amz-trailer-signature:{tsig}\r\n\r\n");
        let out = run(vec![Ok(Bytes::from(body))], Some(cs), true, Some(5)).await;
        assert_eq!(out.error, None);
        assert_eq!(out.data, b"hello");
        assert_eq!(out.trailers.len(), 2);
    }

    /// What botocore 1.43 sent for put_object(Body=b"hello world") over https.
    const BOTOCORE_UNSIGNED_TRAILER: &[u8] = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";

    #[tokio::test]
    async fn unsigned_trailer_with_and_without_final_crlf() {
        let no_final = &BOTOCORE_UNSIGNED_TRAILER[..BOTOCORE_UNSIGNED_TRAILER.len() - 2];
        let with_blank_after_zero = b"b\r\nhello world\r\n0\r\n\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        for body in [BOTOCORE_UNSIGNED_TRAILER, no_final, with_blank_after_zero] {
            for piece in [usize::MAX, 1, 2, 5] {
                let out = run(split(body, || piece), None, true, Some(11)).await;
                assert_eq!(out.error, None);
                assert_eq!(out.data, b"hello world");
                assert_eq!(out.trailers, vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())]);
            }
        }
    }

    #[tokio::test]
    async fn unsigned_chunks_stream_without_buffering() {
        // Data is handed on as it arrives, before the chunk is complete.
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, String>>();
        let mut s = AwsChunked::new(rx, None, false, Trailers::default(), None);
        tx.unbounded_send(Ok(Bytes::from_static(b"b\r\nhello"))).expect("send");
        assert_eq!(s.next().await, Some(Ok(Bytes::from_static(b"hello"))));
        tx.unbounded_send(Ok(Bytes::from_static(b" world\r\n0\r\n\r\n"))).expect("send");
        assert_eq!(s.next().await, Some(Ok(Bytes::from_static(b" world"))));
        drop(tx);
        assert_eq!(s.next().await, None);
    }

    #[tokio::test]
    async fn truncated_input_is_an_error() {
        let body = aws_example_body();
        for cut in [0, 5, 80, 90, 1000, 65626, 65627, 65628, 66700, body.len() - 3] {
            let out = run(vec![Ok(Bytes::copy_from_slice(&body[..cut]))], Some(signing(SEED)), false, None).await;
            assert_eq!(out.error, Some(ChunkedError::Truncated), "cut at {cut}");
        }
        // Losing the final CRLF of the last empty chunk is tolerated: all data is verified.
        let out = run(
            vec![Ok(Bytes::copy_from_slice(&body[..body.len() - 2]))],
            Some(signing(SEED)),
            false,
            None,
        )
        .await;
        assert_eq!(out.error, None);
        for cut in [0, 2, 4, 10, 17] {
            let out = run(
                vec![Ok(Bytes::copy_from_slice(&BOTOCORE_UNSIGNED_TRAILER[..cut]))],
                None,
                true,
                None,
            )
            .await;
            assert_eq!(out.error, Some(ChunkedError::Truncated), "cut at {cut}");
        }
        let e = ChunkedError::Truncated;
        assert_eq!((e.aws_code(), e.status()), ("IncompleteBody", 400));
    }

    #[tokio::test]
    async fn bad_signatures() {
        let body = String::from_utf8(aws_example_body()).expect("ascii");
        for (from, to) in [
            ("ad80c730", "ad80c731"),
            ("0055627c", "0055627d"),
            ("b6c6ea8a", "b6c6ea8b"),
            ("chunk-signature=ad80", "chunk-signature=zz80"),
        ] {
            let forged = body.replacen(from, to, 1);
            let out = run(vec![Ok(Bytes::from(forged))], Some(signing(SEED)), false, None).await;
            assert_eq!(out.error, Some(ChunkedError::SignatureDoesNotMatch), "{from}");
        }
        // One flipped data byte: the chunk is withheld, never yielded.
        let mut forged = aws_example_body();
        forged[200] = b'b';
        let out = run(vec![Ok(Bytes::from(forged))], Some(signing(SEED)), false, None).await;
        assert_eq!((out.error, out.data.len()), (Some(ChunkedError::SignatureDoesNotMatch), 0));
        // Another seed breaks the chain from the first chunk on.
        let out = run(vec![Ok(Bytes::from(aws_example_body()))], Some(signing(TRAILER_SEED)), false, None).await;
        assert_eq!(out.error, Some(ChunkedError::SignatureDoesNotMatch));
        // A signed mode needs signatures.
        let out = run(
            vec![Ok(Bytes::from_static(b"5\r\nhello\r\n0\r\n\r\n"))],
            Some(signing(SEED)),
            false,
            None,
        )
        .await;
        assert_eq!(out.error.as_ref().map(ChunkedError::aws_code), Some("InvalidRequest"));
        let e = ChunkedError::SignatureDoesNotMatch;
        assert_eq!((e.aws_code(), e.status()), ("SignatureDoesNotMatch", 403));
    }

    #[tokio::test]
    async fn missing_trailer() {
        let body = b"b\r\nhello world\r\n0\r\n\r\n";
        let out = run(vec![Ok(Bytes::from_static(body))], None, true, Some(11)).await;
        assert_eq!(out.error, Some(ChunkedError::MissingTrailer));
        let e = out.error.expect("error");
        assert_eq!((e.aws_code(), e.status()), ("MalformedTrailerError", 400));
        assert!(out.trailers.is_empty(), "not published on failure");
        // The signed variant: the final chunk's signature alone is not enough.
        let body = String::from_utf8(aws_trailer_body(true)).expect("ascii");
        let cut = body.split("x-amz-checksum-crc32c").next().unwrap_or_default().to_string();
        let out = run(vec![Ok(Bytes::from(cut))], Some(signing(TRAILER_SEED)), true, None).await;
        assert_eq!(out.error, Some(ChunkedError::MissingTrailer));
        // Trailers in a mode that has none.
        let mut forged = aws_example_body();
        forged.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n");
        let out = run(vec![Ok(Bytes::from(forged))], Some(signing(SEED)), false, None).await;
        assert_eq!(out.error, Some(ChunkedError::Malformed("data after the final chunk")));
        let out = run(vec![Ok(Bytes::from_static(b"0\r\nno colon\r\n"))], None, true, None).await;
        assert_eq!(out.error.as_ref().map(ChunkedError::aws_code), Some("MalformedTrailerError"));
    }

    #[tokio::test]
    async fn declared_length_mismatch() {
        for declared in [10, 12] {
            let out = run(vec![Ok(Bytes::from_static(BOTOCORE_UNSIGNED_TRAILER))], None, true, Some(declared)).await;
            assert_eq!(out.error, Some(ChunkedError::LengthMismatch { declared, actual: 11 }), "{declared}");
        }
        let out = run(vec![Ok(Bytes::from(aws_example_body()))], Some(signing(SEED)), false, Some(66559)).await;
        assert!(matches!(out.error, Some(ChunkedError::LengthMismatch { .. })));
    }

    #[tokio::test]
    async fn malformed_framing() {
        for body in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\n\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
        ] {
            let out = run(vec![Ok(Bytes::from_static(body))], None, true, None).await;
            let code = out.error.as_ref().map(ChunkedError::aws_code);
            assert!(matches!(code, Some("InvalidRequest" | "IncompleteBody")), "{body:?}: {code:?}");
        }
        let out = run(vec![Ok(Bytes::from_static(b"1000001\r\n"))], None, true, None).await;
        assert_eq!(out.error, Some(ChunkedError::ChunkTooLarge(0x100_0001)));
        let long = vec![b'0'; MAX_HEADER_LINE + 10];
        let out = run(vec![Ok(Bytes::from(long))], None, true, None).await;
        assert_eq!(out.error, Some(ChunkedError::Malformed("chunk header line too long")));
        let out = run(
            vec![Ok(Bytes::from_static(b"5\r\nhel")), Err("connection reset".to_string())],
            None,
            true,
            None,
        )
        .await;
        assert_eq!(out.data, b"hel");
        assert_eq!(out.error, Some(ChunkedError::Inner("connection reset".to_string())));
    }
}
