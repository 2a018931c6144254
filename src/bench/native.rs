//! Plain HTTP loads: the native API and, with the same code, a bare nginx
//! volume (its baselines): GET, PUT of generated bodies, and the thrasher.

use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use reqwest::header::{CONTENT_LENGTH, LOCATION};
use reqwest::{Client, StatusCode};

use super::load::{self, LoadArgs};
use super::{body_stream, client, drain, random_block, short};

/// Sizes as bytes with an optional binary suffix: 1024, 64KiB, 1MiB, 1GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        u => return Err(format!("bad size unit {u:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} too large"))
}

/// Generated bodies are cut from a block of at most this size.
const BLOCK: u64 = 1 << 20;

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct GetArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// URL to GET; with --keys, the prefix of the keys (URL + 0 … N-1).
    #[arg(long)]
    pub url: String,
    /// Spread GETs over this many keys (0: the URL itself).
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// Status every answer must have (after redirects, with --follow).
    #[arg(long, default_value_t = 200)]
    pub expect: u16,
    /// Follow a redirect (as `curl -L` does) and read the body.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct PutArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Key prefix (operation i writes URL + i); repeated, every operation
    /// writes to all of them at once (a parallel direct-PUT baseline).
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// Body size (e.g. 1024, 1MiB, 1GiB), streamed from a generator.
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ThrashArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Key prefix: round i uses the fresh key URL + i.
    #[arg(long)]
    pub url: String,
    /// Value size.
    #[arg(long, default_value = "1KiB", value_parser = parse_size)]
    pub size: u64,
}

/// GET a URL, following one redirect when asked; the final status and the
/// body bytes read.
async fn get_once(http: &Client, url: &str, follow: bool) -> Result<(StatusCode, u64), String> {
    let resp = http.get(url).send().await.map_err(short)?;
    if follow && resp.status().is_redirection() {
        let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or("redirect without Location")?.to_string();
        drain(resp).await?;
        let resp = http.get(&loc).send().await.map_err(short)?;
        let status = resp.status();
        return Ok((status, drain(resp).await?));
    }
    let status = resp.status();
    Ok((status, drain(resp).await?))
}

async fn put_once(http: &Client, url: &str, size: u64, block: &Bytes) -> Result<(), String> {
    let body = reqwest::Body::wrap_stream(body_stream(size, block.clone()));
    let resp = http.put(url).header(CONTENT_LENGTH, size).body(body).send().await.map_err(short)?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        s => Err(format!("PUT answered {s}")),
    }
}

fn key_url(base: &str, keys: u64, i: u64) -> String {
    if keys == 0 {
        base.to_string()
    } else {
        format!("{base}{}", i % keys)
    }
}

pub async fn get(a: GetArgs) -> Result<(), String> {
    let http = client(a.load.concurrency);
    let a = Arc::new(a);
    let args = a.clone();
    let op = if a.follow { "get-follow" } else { "get" };
    load::run(&a.load, op, move |i| {
        let (http, a) = (http.clone(), args.clone());
        async move {
            let (status, n) = get_once(&http, &key_url(&a.url, a.keys, i), a.follow).await?;
            if status.as_u16() != a.expect {
                return Err(format!("answered {status}, expected {}", a.expect));
            }
            Ok(n)
        }
    })
    .await
    .print();
    Ok(())
}

pub async fn put(a: PutArgs) -> Result<(), String> {
    let http = client(a.load.concurrency * a.url.len() as u64);
    let block = random_block(a.size.clamp(1, BLOCK) as usize);
    let a = Arc::new(a);
    let args = a.clone();
    load::run(&a.load, "put", move |i| {
        let (http, a, block) = (http.clone(), args.clone(), block.clone());
        async move {
            let size = a.size;
            let puts = a.url.iter().map(|base| {
                let url = format!("{base}{i}");
                let (http, block) = (&http, &block);
                async move { put_once(http, &url, size, block).await }
            });
            for r in futures::future::join_all(puts).await {
                r?;
            }
            Ok(a.size * a.url.len() as u64)
        }
    })
    .await
    .print();
    Ok(())
}

pub async fn thrash(a: ThrashArgs) -> Result<(), String> {
    let http = client(a.load.concurrency);
    let block = random_block(a.size.clamp(1, BLOCK) as usize);
    let a = Arc::new(a);
    let args = a.clone();
    load::run(&a.load, "thrash", move |i| {
        let (http, a, block) = (http.clone(), args.clone(), block.clone());
        async move {
            let url = format!("{}{i}", a.url);
            put_once(&http, &url, a.size, &block).await?;
            match get_once(&http, &url, true).await? {
                (StatusCode::OK, n) if n == a.size => {}
                (s, n) => return Err(format!("GET answered {s} with {n} bytes")),
            }
            let resp = http.delete(&url).send().await.map_err(short)?;
            if !resp.status().is_success() {
                return Err(format!("DELETE answered {}", resp.status()));
            }
            Ok(a.size)
        }
    })
    .await
    .print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
