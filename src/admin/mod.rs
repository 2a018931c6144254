//! Admin commands: `rebuild`, `rebalance`, `verify`, `repair`. Each opens the
//! LMDB index (LMDB lets them share it with a running server), works with
//! bounded concurrency, and ends with a `Report`. What is safe to run beside
//! a live server is in `docs/operations.md`.

pub mod access;
pub mod backup;
pub mod progress;
pub mod rebalance;
pub mod rebuild;
pub mod repair;
pub mod status;
pub mod uploads;
pub mod verify;
pub mod walk;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, Stream, TryStreamExt};
use futures::StreamExt;
use md5::{Digest, Md5};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::StatusCode;

use crate::config::Config;
use crate::describe::{buckets_dir_url, listed_bucket_url, BucketFile};
use crate::error::Error;
use crate::index::{Index, IndexError, Record};
use crate::volume::VolumeClient;
pub use progress::{Item, Progress, Report};

/// Keys read from the index per read transaction: short transactions keep
/// LMDB free to reuse pages while the server writes.
pub const PAGE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Open { path: String, source: IndexError },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("no index at {0} (no data.mdb): check --db")]
    NoIndex(String),
    #[error("{0} is not empty: back up into a new folder")]
    DestNotEmpty(String),
    #[error("{db} already holds {keys} keys: rebuild into a fresh --db, or pass --clear to empty it (with no server using it)")]
    NotEmpty { db: String, keys: u64 },
    #[error("server {addr}: {reason}")]
    Server { addr: String, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("internal: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Run an admin command to the end on a new runtime and print its report.
/// Returns whether nothing failed.
pub fn run(json: bool, command: impl Future<Output = Result<Report, AdminError>>) -> Result<bool, AdminError> {
    let report = block_on(command)?;
    report.print(json);
    Ok(report.ok())
}

/// Run a command's future to the end on a new runtime.
pub fn block_on<T>(command: impl Future<Output = Result<T, AdminError>>) -> Result<T, AdminError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(AdminError::Runtime)?.block_on(command)
}

/// The index at `--db`, for a command that needs `--volumes` too.
pub fn open_index(config: &Config) -> Result<Index, AdminError> {
    config.check_volumes().map_err(AdminError::Config)?;
    open_db(config)
}

/// The index at `--db` (created if missing), for a command that needs only it.
pub fn open_db(config: &Config) -> Result<Index, AdminError> {
    let db = config.db_path().map_err(AdminError::Config)?;
    Index::open(db, config.db_map_gib << 30).map_err(|source| AdminError::Open { path: db.display().to_string(), source })
}

/// The index at `--db`, which must exist: a command reading it must not
/// make an empty one out of a mistyped path.
pub fn existing_db(config: &Config) -> Result<Index, AdminError> {
    let db = config.db_path().map_err(AdminError::Config)?;
    if !db.join("data.mdb").is_file() {
        return Err(AdminError::NoIndex(db.display().to_string()));
    }
    open_db(config)
}

pub fn volume_client(config: &Config) -> VolumeClient {
    // Admin commands serve no metrics: counted, never read.
    VolumeClient::new(config.voltimeout, config.io_timeout, std::sync::Arc::new(crate::metrics::Metrics::new(&config.volumes)))
}

/// Every record whose key starts with `prefix`, in key order, read a page at
/// a time (records written meanwhile after the current page are seen).
pub fn records(index: Index, prefix: Vec<u8>) -> impl Stream<Item = Result<(Vec<u8>, Record), IndexError>> {
    // LMDB cannot seek to an empty key; no key is empty, so [0] is the first.
    let first = Some(if prefix.is_empty() { vec![0] } else { prefix.clone() });
    stream::try_unfold(first, move |from| {
        let (index, prefix) = (index.clone(), prefix.clone());
        async move {
            let Some(from) = from else { return Ok::<_, IndexError>(None) };
            let mut page = Vec::with_capacity(PAGE);
            index.scan(&prefix, Some(&from), |k, rec| {
                page.push((k.to_vec(), rec));
                if page.len() == PAGE {
                    crate::index::Scan::Stop
                } else {
                    crate::index::Scan::Continue
                }
            })?;
            // The smallest key after the last one.
            let next = (page.len() == PAGE).then(|| {
                let mut k = page[PAGE - 1].0.clone();
                k.push(0);
                k
            });
            Ok(Some((stream::iter(page.into_iter().map(Ok)), next)))
        }
    })
    .try_flatten()
}

/// Size and MD5 (hex) of a replica, streamed: never whole in memory.
pub async fn replica_md5(client: &VolumeClient, url: &str) -> Result<(u64, String), Error> {
    let resp = client.get(url, None).await?;
    let mut body = resp.bytes_stream();
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::volume(url, e))?;
        size += chunk.len() as u64;
        md5.update(&chunk);
    }
    Ok((size, hex::encode(md5.finalize())))
}

/// The bucket files on one volume (`describe`), each with its URL. A
/// listing or file that cannot be read is reported as a failure.
pub async fn bucket_files(ctx: &Ctx, volume: &str) -> Vec<(String, BucketFile)> {
    let listing = match ctx.client.list_dir(&buckets_dir_url(volume)).await {
        Ok(listing) => listing,
        Err(e) => {
            ctx.progress.fail(Item::new("bucket files", None, Some(volume), e));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in listing.iter().filter(|e| !e.is_dir()) {
        let url = listed_bucket_url(volume, &entry.name);
        match ctx.client.get_bytes(&url).await {
            Ok(Some(body)) => match BucketFile::parse(&body) {
                Ok(file) => files.push((url, file)),
                Err(e) => ctx.progress.fail(Item::file("bucket file", &url, e)),
            },
            // Deleted since the listing.
            Ok(None) => {}
            Err(e) => ctx.progress.fail(Item::file("bucket file", &url, e)),
        }
    }
    files
}

/// Key bytes escaped for a native URL: only unreserved characters stay, and
/// `/` after the first is escaped too, so no client merges or resolves path
/// segments (`//`, `..`); the server percent-decodes the whole path.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What the server's `REBALANCE` answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    Done,
    /// The server does not know the key (deleted or unlinked meanwhile).
    Gone,
}

/// A running mkv server, for moves that must take its key locks.
pub struct ServerClient {
    http: reqwest::Client,
    addr: String,
}

/// How often, and how long apart, a key busy on the server (409) is retried.
const BUSY_RETRIES: u32 = 8;
const BUSY_WAIT: Duration = Duration::from_millis(50);

impl ServerClient {
    /// Check the server answers before any key is touched.
    pub async fn connect(addr: &str, config: &Config) -> Result<ServerClient, AdminError> {
        // No overall timeout: the server answers a REBALANCE after copying
        // the value, and bounds each volume transfer itself.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.voltimeout.max(Duration::from_millis(200)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AdminError::Server { addr: addr.into(), reason: e.to_string() })?;
        let probe = http.head(format!("http://{addr}/")).timeout(config.io_timeout).send().await;
        probe.map_err(|e| AdminError::Server { addr: addr.into(), reason: e.to_string() })?;
        Ok(ServerClient { http, addr: addr.to_string() })
    }

    /// `REBALANCE /key` on the server, retrying while another write or
    /// delete holds the key.
    pub async fn rebalance(&self, key: &[u8]) -> Result<Moved, String> {
        let rest = key.strip_prefix(b"/").ok_or("not a native key (no leading /): the server cannot address it")?;
        let url = format!("http://{}/{}", self.addr, percent_encode(rest, KEY));
        let method = reqwest::Method::from_bytes(b"REBALANCE").expect("valid method");
        let mut wait = BUSY_WAIT;
        for _ in 0..BUSY_RETRIES {
            let resp = self.http.request(method.clone(), &url).send().await.map_err(|e| format!("server {}: {e}", self.addr))?;
            match resp.status() {
                StatusCode::NO_CONTENT => return Ok(Moved::Done),
                StatusCode::NOT_FOUND => return Ok(Moved::Gone),
                StatusCode::CONFLICT => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                s => return Err(format!("server answered {s} to REBALANCE (its log has the reason)")),
            }
        }
        Err("the key stayed busy on the server (409); run again".into())
    }
}

/// The per-key stores and clients a command shares across its tasks.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub index: Index,
    pub client: VolumeClient,
    pub progress: Progress,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Deleted;

    #[tokio::test]
    async fn records_pages_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), 1 << 26).unwrap();
        let rec = Record { volumes: vec!["v".into()], deleted: Deleted::No, hash: String::new(), gen: String::new() };
        let keys: Vec<Vec<u8>> = (0..2 * PAGE + 5).map(|i| format!("/p/{i:05}").into_bytes()).collect();
        index.put_many(keys.iter().map(|k| (k.as_slice(), &rec))).unwrap();
        index.put(b"/q", &rec, None).unwrap();
        let got: Vec<Vec<u8>> = records(index.clone(), b"/p/".to_vec()).map_ok(|(k, _)| k).try_collect().await.unwrap();
        assert_eq!(got, keys);
        let all: Vec<Vec<u8>> = records(index, Vec::new()).map_ok(|(k, _)| k).try_collect().await.unwrap();
        assert_eq!(all.len(), keys.len() + 1);
    }

    #[test]
    fn native_key_urls_keep_every_byte() {
        assert_eq!(percent_encode(b"fixture//double slash/../%", KEY).to_string(), "fixture%2F%2Fdouble%20slash%2F..%2F%25");
    }
}
