//! S3 loads, signed with the gateway's own SigV4 helpers: PutObject and
//! GetObject of generated bodies, and ListObjectsV2 page walks (beside the
//! native `?list` walk over the same keys as their baseline).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use reqwest::header::CONTENT_LENGTH;
use reqwest::{Client, Method, RequestBuilder, Url};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::load::{self, LoadArgs};
use super::native::parse_size;
use super::{body_stream, client, drain, random_block, short};
use crate::s3::sigv4::{canonical_query, canonical_request, canonical_uri, format_amz_date, hmac_hex, signing_key, string_to_sign, EMPTY_SHA256};

const BLOCK: u64 = 1 << 20;

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The gateway, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    pub endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    #[arg(long)]
    pub bucket: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Put,
    Get,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ObjectArgs {
    /// PutObject (fresh keys PREFIX + i) or GetObject (PREFIX + i mod --keys).
    pub action: Action,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub creds: Credentials,
    /// Object key prefix.
    #[arg(long, default_value = "bench/")]
    pub prefix: String,
    /// Object size for put.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub size: u64,
    /// Keys that get reads from (written by an earlier put).
    #[arg(long, default_value_t = 1)]
    pub keys: u64,
    /// Sign the SHA-256 of the body (as SDKs do over plain HTTP) instead
    /// of UNSIGNED-PAYLOAD; the gateway then verifies it while streaming.
    #[arg(long)]
    pub signed_payload: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub creds: Credentials,
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Entries per page.
    #[arg(long, default_value_t = 1000)]
    pub max_keys: u64,
    /// Walk the native `?list&limit=` listing of the same keys instead
    /// (no credentials used). Not `--native`: that is the server's flag.
    #[arg(long)]
    pub native_list: bool,
}

/// SigV4 header signing of the generator's requests.
pub struct Signer {
    access: String,
    secret: String,
    region: String,
}

impl Signer {
    pub fn new(c: &Credentials) -> Signer {
        Signer { access: c.access_key.clone(), secret: c.secret_key.clone(), region: c.region.clone() }
    }

    /// `x-amz-date`, `x-amz-content-sha256` and `Authorization` for a request.
    pub fn headers(&self, method: &str, url: &Url, payload_hash: &str, now: SystemTime) -> [(&'static str, String); 3] {
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let amz_date = format_amz_date(secs);
        let day = &amz_date[..8];
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let signed = "host;x-amz-content-sha256;x-amz-date";
        let canonical_headers = format!("host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n");
        let creq = canonical_request(
            method,
            &canonical_uri(url.path()),
            &canonical_query(url.query().unwrap_or(""), None),
            &canonical_headers,
            signed,
            payload_hash,
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let key = signing_key(&self.secret, day, &self.region, "s3");
        let signature = hmac_hex(&key, string_to_sign(&amz_date, &scope, &creq).as_bytes());
        let auth = format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}", self.access);
        [("x-amz-date", amz_date), ("x-amz-content-sha256", payload_hash.to_string()), ("authorization", auth)]
    }

    pub fn request(&self, http: &Client, method: Method, url: &str, payload_hash: &str) -> Result<RequestBuilder, String> {
        let parsed = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let mut req = http.request(method.clone(), parsed.clone());
        for (name, value) in self.headers(method.as_str(), &parsed, payload_hash, SystemTime::now()) {
            req = req.header(name, value);
        }
        Ok(req)
    }
}

/// Path-encode an S3 key (each byte but unreserved ones and `/`).
fn encode_key(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

fn encode_param(v: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(v, SET).to_string()
}

/// Create the bucket unless it exists.
async fn ensure_bucket(http: &Client, signer: &Signer, c: &Credentials) -> Result<(), String> {
    let url = format!("{}/{}", c.endpoint.trim_end_matches('/'), c.bucket);
    let resp = signer.request(http, Method::PUT, &url, EMPTY_SHA256)?.send().await.map_err(short)?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() || body.contains("BucketAlreadyOwnedByYou") {
        Ok(())
    } else {
        Err(format!("CreateBucket {}: {status} {body}", c.bucket))
    }
}

/// Hex SHA-256 of the generated body of `size` bytes (hashed once per run).
fn body_sha256(size: u64, block: &Bytes) -> String {
    let mut h = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
    }
    hex::encode(h.finalize())
}

pub async fn object(a: ObjectArgs) -> Result<(), String> {
    let http = client(a.load.concurrency);
    let signer = Arc::new(Signer::new(&a.creds));
    ensure_bucket(&http, &signer, &a.creds).await?;
    let block = random_block(a.size.clamp(1, BLOCK) as usize);
    let payload_hash = if a.signed_payload { body_sha256(a.size, &block) } else { "UNSIGNED-PAYLOAD".to_string() };
    let base = format!("{}/{}/{}", a.creds.endpoint.trim_end_matches('/'), a.creds.bucket, encode_key(&a.prefix));
    let a = Arc::new(a);
    let args = a.clone();
    let op = match a.action {
        Action::Put => "s3-put",
        Action::Get => "s3-get",
    };
    load::run(&a.load, op, move |i| {
        let (http, signer, a, block, base, payload_hash) = (http.clone(), signer.clone(), args.clone(), block.clone(), base.clone(), payload_hash.clone());
        async move {
            match a.action {
                Action::Put => {
                    let url = format!("{base}{i}");
                    let body = reqwest::Body::wrap_stream(body_stream(a.size, block));
                    let req = signer.request(&http, Method::PUT, &url, &payload_hash)?;
                    let resp = req.header(CONTENT_LENGTH, a.size).body(body).send().await.map_err(short)?;
                    let status = resp.status();
                    if !status.is_success() {
                        return Err(format!("PutObject answered {status}: {}", error_code(resp).await));
                    }
                    drain(resp).await?;
                    Ok(a.size)
                }
                Action::Get => {
                    let url = format!("{base}{}", i % a.keys.max(1));
                    let resp = signer.request(&http, Method::GET, &url, EMPTY_SHA256)?.send().await.map_err(short)?;
                    let status = resp.status();
                    if !status.is_success() {
                        return Err(format!("GetObject answered {status}: {}", error_code(resp).await));
                    }
                    let expected = resp.content_length();
                    let n = drain(resp).await?;
                    if expected.is_some_and(|e| e != n) {
                        return Err(format!("GetObject body short: {n} of {expected:?} bytes"));
                    }
                    Ok(n)
                }
            }
        }
    })
    .await
    .print();
    Ok(())
}

/// The `<Code>` of an S3 error answer.
async fn error_code(resp: reqwest::Response) -> String {
    let body = resp.text().await.unwrap_or_default();
    between(&body, "<Code>", "</Code>").unwrap_or("no error code").to_string()
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// One listing page: entries (keys and common prefixes), body bytes, and
/// where the next page starts (None: the listing is complete).
struct Page {
    entries: u64,
    bytes: u64,
    next: Option<String>,
}

async fn s3_page(http: &Client, signer: &Signer, a: &ListArgs, token: Option<&str>) -> Result<Page, String> {
    let mut query = format!("list-type=2&max-keys={}&prefix={}", a.max_keys, encode_param(&a.prefix));
    if let Some(d) = &a.delimiter {
        query.push_str(&format!("&delimiter={}", encode_param(d)));
    }
    if let Some(t) = token {
        query.push_str(&format!("&continuation-token={}", encode_param(t)));
    }
    let url = format!("{}/{}?{query}", a.creds.endpoint.trim_end_matches('/'), a.creds.bucket);
    let resp = signer.request(http, Method::GET, &url, EMPTY_SHA256)?.send().await.map_err(short)?;
    let status = resp.status();
    let body = resp.text().await.map_err(short)?;
    if !status.is_success() {
        return Err(format!("ListObjectsV2 answered {status}: {}", between(&body, "<Code>", "</Code>").unwrap_or("")));
    }
    let entries = (body.matches("<Contents>").count() + body.matches("<CommonPrefixes>").count()) as u64;
    let next = match between(&body, "<IsTruncated>", "</IsTruncated>") {
        Some("true") => {
            let t = between(&body, "<NextContinuationToken>", "</NextContinuationToken>").ok_or("truncated page without a continuation token")?;
            Some(quick_xml::escape::unescape(t).map_err(|e| e.to_string())?.into_owned())
        }
        _ => None,
    };
    Ok(Page { entries, bytes: body.len() as u64, next })
}

#[derive(serde::Deserialize)]
struct NativePage {
    next: String,
    keys: Vec<serde_json::Value>,
}

async fn native_page(http: &Client, a: &ListArgs, start: Option<&str>) -> Result<Page, String> {
    let prefix = encode_key(&format!("{}/{}", a.creds.bucket, a.prefix));
    let mut url = format!("{}/{prefix}?list&limit={}", a.creds.endpoint.trim_end_matches('/'), a.max_keys);
    if let Some(s) = start {
        url.push_str(&format!("&start={}", encode_param(s)));
    }
    let resp = http.get(&url).send().await.map_err(short)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(short)?;
    if !status.is_success() {
        return Err(format!("native list answered {status}"));
    }
    let page: NativePage = serde_json::from_slice(&body).map_err(|e| format!("native list: {e}"))?;
    let next = (!page.next.is_empty()).then_some(page.next);
    Ok(Page { entries: page.keys.len() as u64, bytes: body.len() as u64, next })
}

/// Each operation fetches one page; a walk that reaches the end starts
/// over. Walks are per slot (operation number mod concurrency), so workers
/// page through their own listings.
pub async fn list(a: ListArgs) -> Result<(), String> {
    let http = client(a.load.concurrency);
    let signer = Arc::new(Signer::new(&a.creds));
    let slots: Arc<Vec<Mutex<Option<String>>>> = Arc::new((0..a.load.concurrency).map(|_| Mutex::new(None)).collect());
    let a = Arc::new(a);
    let args = a.clone();
    let op = match (a.native_list, &a.delimiter) {
        (true, _) => "native-list",
        (false, None) => "s3-list",
        (false, Some(_)) => "s3-list-delimiter",
    };
    load::run(&a.load, op, move |i| {
        let (http, signer, a, slots) = (http.clone(), signer.clone(), args.clone(), slots.clone());
        async move {
            let mut slot = slots[(i % slots.len() as u64) as usize].lock().await;
            let page = if a.native_list { native_page(&http, &a, slot.as_deref()).await? } else { s3_page(&http, &signer, &a, slot.as_deref()).await? };
            if page.entries == 0 {
                return Err("empty listing page".into());
            }
            *slot = page.next;
            Ok(page.bytes)
        }
    })
    .await
    .print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::sigv4::{sha256_hex, verify, RequestParts};

    #[test]
    fn signed_requests_verify_with_the_gateway_verifier() {
        let c = Credentials {
            endpoint: "http://127.0.0.1:9".into(),
            access_key: "ak".into(),
            secret_key: "s/k+1".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
        };
        let signer = Signer::new(&c);
        let url = Url::parse("http://127.0.0.1:9/b?list-type=2&prefix=a%2Fb&continuation-token=x%3D%3D").unwrap();
        let now = SystemTime::now();
        let mut headers: Vec<(String, String)> =
            signer.headers("GET", &url, EMPTY_SHA256, now).iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        headers.push(("host".into(), "127.0.0.1:9".into()));
        let parts = RequestParts { method: "GET", raw_path: url.path(), raw_query: url.query().unwrap(), headers: &headers };
        let lookup = |ak: &str| (ak == "ak").then(|| "s/k+1".to_string());
        verify(&parts, lookup, now, Some("us-east-1")).unwrap();
        let parts = RequestParts { method: "PUT", ..parts };
        assert!(verify(&parts, lookup, now, None).is_err());
    }

    #[test]
    fn body_hash_matches_a_direct_hash() {
        let block = random_block(1000);
        let mut whole = block.to_vec();
        whole.extend_from_slice(&block[..500]);
        assert_eq!(body_sha256(1500, &block), sha256_hex(&whole));
    }
}
