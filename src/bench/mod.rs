//! `mkv bench`: the load generator behind `bench/run`. Each subcommand runs
//! one bounded load against the URLs it is given (the native API, the S3
//! gateway, or a bare nginx volume for baselines) and prints one JSON line.

pub mod load;
pub mod native;
pub mod preload;
pub mod s3;

use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use futures::Stream;

use crate::config::Config;

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub op: BenchOp,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum BenchOp {
    /// GET URLs, checking the status; optionally follow redirects and read bodies.
    Get(native::GetArgs),
    /// PUT fresh keys with generated bodies (to several URLs at once with
    /// repeated --url).
    Put(native::PutArgs),
    /// PUT, GET (following the redirect), DELETE of a fresh key per round.
    Thrash(native::ThrashArgs),
    /// S3 PutObject or GetObject, SigV4-signed.
    S3(s3::ObjectArgs),
    /// S3 ListObjectsV2 (or the native ?list) page after page.
    List(s3::ListArgs),
    /// Write key records straight into the index (--db), in large
    /// transactions, to measure how cost grows with the number of keys.
    Preload(preload::PreloadArgs),
}

pub fn main(config: Config, args: BenchArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        match args.op {
            BenchOp::Get(a) => native::get(a).await,
            BenchOp::Put(a) => native::put(a).await,
            BenchOp::Thrash(a) => native::thrash(a).await,
            BenchOp::S3(a) => s3::object(a).await,
            BenchOp::List(a) => s3::list(a).await,
            BenchOp::Preload(a) => preload::run(&config, a),
        }
    })
}

/// The project's HTTP client set-up with a pool as large as the load, and
/// an overall limit per request that a 1 GiB transfer stays well within.
pub fn client(concurrency: u64) -> reqwest::Client {
    crate::volume::client_builder(Duration::from_secs(5), concurrency as usize)
        .timeout(Duration::from_secs(300))
        .build()
        .expect("reqwest client")
}

/// Incompressible bytes, made once, from which every body is cut.
pub fn random_block(len: usize) -> Bytes {
    let mut b = vec![0u8; len];
    rand::fill(&mut b[..]);
    Bytes::from(b)
}

/// A body of `size` bytes streamed in `block`-sized chunks, never held whole.
pub fn body_stream(size: u64, block: Bytes) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(size, move |left| {
        let block = block.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(block.len() as u64);
            Some((Ok(block.slice(..n as usize)), left - n))
        }
    })
}

/// Read a response body to the end, counting its bytes without keeping them.
pub async fn drain(resp: reqwest::Response) -> Result<u64, String> {
    use futures::StreamExt;
    let mut n = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        n += chunk.map_err(|e| format!("body: {e}"))?.len() as u64;
    }
    Ok(n)
}

/// A reqwest error without the URL (so error kinds group across keys).
pub fn short(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn body_stream_is_exact_and_chunked() {
        let block = random_block(1000);
        let chunks: Vec<Bytes> = body_stream(2500, block.clone()).map(Result::unwrap).collect().await;
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), [1000, 1000, 500]);
        assert_eq!(chunks[2], block.slice(..500));
        assert_eq!(body_stream(0, block).count().await, 0);
    }
}
