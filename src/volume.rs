//! HTTP client for the nginx volume servers: keep-alive pool, timeouts on
//! every call, streaming bodies both ways.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use reqwest::header::{CONTENT_LENGTH, RANGE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::placement::key2path;

/// Chunks sent to the PUT of one replica, queued when the volume is slower
/// than the client. Bounds memory per replica to this many body chunks.
pub const CHUNKS_IN_FLIGHT: usize = 8;

pub type ChunkTx = mpsc::Sender<std::io::Result<Bytes>>;

/// Values up to this size are sent to a volume whole (see `put_stream`).
pub const WHOLE_BODY_MAX: u64 = 64 << 10;

#[derive(Clone)]
pub struct VolumeClient {
    http: reqwest::Client,
    /// For PUTs of streamed bodies: no read timeout, since reqwest's starts
    /// when the request is sent and would cut uploads that outlast it. The
    /// writers bound stalls themselves (chunk sends, the final answer).
    upload: reqwest::Client,
    /// HEAD checks before a redirect.
    head_timeout: Duration,
    /// Longest silence during a transfer.
    pub io_timeout: Duration,
    /// Every call is counted and timed, by volume.
    metrics: Arc<Metrics>,
    /// Shared by every worker's client.
    marks: Arc<Marks>,
}

/// What the volume client learnt of volumes that stop answering (a hung
/// disk, a stopped process).
#[derive(Default)]
struct Marks {
    /// Volumes that let a write stall past the I/O timeout. A write to one
    /// probes it first (`HEAD /` within the HEAD timeout) and fails at once if
    /// it still does not answer, instead of holding the write and its client
    /// for another I/O timeout. The first probe that answers clears the mark.
    stalled: HostSet,
    /// Volumes a read found silent past the HEAD timeout: a weaker sign (a
    /// busy disk is slow too), so it only orders reads, until a call to the
    /// volume succeeds.
    slow: HostSet,
}

/// A set of volumes (`host:port`), with a lock-free check for the usual
/// case, none.
#[derive(Default)]
struct HostSet {
    any: AtomicBool,
    hosts: Mutex<HashSet<String>>,
}

impl HostSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn contains(&self, host: &str) -> bool {
        self.any.load(Ordering::Relaxed) && self.lock().contains(host)
    }

    /// Whether it was not there yet.
    fn insert(&self, host: &str) -> bool {
        let added = self.lock().insert(host.to_string());
        self.any.store(true, Ordering::Relaxed);
        added
    }

    /// Whether it was there.
    fn remove(&self, host: &str) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let mut hosts = self.lock();
        let removed = hosts.remove(host);
        self.any.store(!hosts.is_empty(), Ordering::Relaxed);
        removed
    }
}

/// The `host:port` of a volume URL.
fn authority(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// One entry of nginx's `autoindex_format json`.
#[derive(Debug, Clone, Deserialize)]
pub struct DirEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub mtime: Option<String>,
}

impl DirEntry {
    pub fn is_dir(&self) -> bool {
        self.kind == "directory"
    }
}

/// URL of a key's file of generation `gen` (empty: the original's path) on
/// a target volume (`host:port[/svNN]`).
pub fn replica_url(target: &str, key: &[u8], gen: &str) -> String {
    format!("http://{target}{}", key2path(key, gen))
}

/// The set-up of mkv's outbound HTTP clients (volumes, `mkv bench`):
/// keep-alive pool, no proxy, no redirects followed, no retry layer, Nagle off.
pub fn client_builder(connect_timeout: Duration, max_idle_per_host: usize) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        // reqwest retries HTTP/2 protocol refusals by default, copying every
        // request (headers, extensions) first in case it must be sent again:
        // useless over HTTP/1 (hyper's pool already retries a request that a
        // reused connection closed before taking), a cost on every call.
        .retry(reqwest::retry::never().max_retries_per_request(0))
}

impl VolumeClient {
    pub fn new(head_timeout: Duration, io_timeout: Duration, metrics: Arc<Metrics>) -> VolumeClient {
        let builder = || client_builder(head_timeout.max(Duration::from_millis(200)), 256);
        let http = builder().read_timeout(io_timeout).build().expect("reqwest client");
        let upload = builder().build().expect("reqwest client");
        VolumeClient { http, upload, head_timeout, io_timeout, metrics, marks: Arc::default() }
    }

    /// A client of its own (connections run on the runtime that opened
    /// them: one per server worker) that shares this one's stalled marks, so
    /// a volume one worker found stalled fails fast on every worker.
    pub fn for_worker(&self) -> VolumeClient {
        VolumeClient { marks: self.marks.clone(), ..VolumeClient::new(self.head_timeout, self.io_timeout, self.metrics.clone()) }
    }

    /// Note that the volume of `url` let a write stall past the I/O timeout;
    /// the write's error (503).
    pub fn stalled(&self, url: &str, reason: impl std::fmt::Display) -> Error {
        let host = authority(url);
        if self.marks.stalled.insert(host) {
            tracing::warn!("volume {host} stalled a write for the I/O timeout ({:?}): writes to it now wait for it to answer a probe", self.io_timeout);
        }
        Error::Stalled { volume: url.to_string(), reason: reason.to_string() }
    }

    /// Note that the volume of `url` did not answer a read within the HEAD
    /// timeout: reads try it last until a call to it succeeds.
    fn mark_slow(&self, url: &str) {
        let host = authority(url);
        if self.marks.slow.insert(host) {
            tracing::warn!("volume {host} did not answer a read within {:?}: reads try it last", self.head_timeout);
        }
    }

    /// Whether the volume of `url` is marked stalled (writes probe it).
    fn is_stalled(&self, url: &str) -> bool {
        self.marks.stalled.contains(authority(url))
    }

    /// Whether reads should try the volume of `url` (or a `host:port`) after
    /// the others.
    pub fn try_last(&self, url: &str) -> bool {
        let host = authority(url);
        self.marks.stalled.contains(host) || self.marks.slow.contains(host)
    }

    /// Before a write to `url`: a volume marked stalled must answer a probe,
    /// else the write fails now (`Error::Stalled`).
    pub async fn ready_for_write(&self, url: &str) -> Result<()> {
        if !self.is_stalled(url) {
            return Ok(());
        }
        let host = authority(url);
        self.probe(host).await.map_err(|e| Error::Stalled { volume: host.to_string(), reason: e.to_string() })?;
        if self.marks.stalled.remove(host) {
            tracing::info!("volume {host} answers again");
        }
        Ok(())
    }

    /// Run one volume call, counted and timed (a missing file is no error).
    async fn timed<T>(&self, method: &str, url: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        let failed = matches!(result, Err(ref e) if !matches!(e, Error::NotFound));
        self.metrics.volume_call(url, method, failed, start.elapsed());
        if !failed && self.marks.slow.remove(authority(url)) {
            tracing::info!("volume {} answers again", authority(url));
        }
        result
    }

    /// How long a volume (`host:port`) takes to answer a `HEAD /` (any
    /// status but 5xx) within the HEAD timeout: readiness, `mkv status`.
    pub async fn probe(&self, volume: &str) -> Result<Duration> {
        let url = format!("http://{volume}/");
        let start = Instant::now();
        let call = async {
            let resp = self.http.head(&url).timeout(self.head_timeout).send().await.map_err(|e| {
                // reqwest's own message names only the URL; the cause is at the
                // bottom of the chain (connection refused, …).
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                if e.is_timeout() { Error::volume(&url, format!("no answer within {:?}", self.head_timeout)) } else { Error::volume(&url, cause) }
            })?;
            match resp.status() {
                s if s.is_server_error() => Err(Error::volume(&url, s)),
                _ => Ok(start.elapsed()),
            }
        };
        self.timed("HEAD", &url, call).await
    }

    /// Size of the file if the volume has it (200 to a HEAD in time). A
    /// volume silent past the timeout is marked slow: reads try it last.
    pub async fn head(&self, url: &str) -> Result<Option<u64>> {
        self.timed("HEAD", url, async {
            let resp = self.http.head(url).timeout(self.head_timeout).send().await.map_err(|e| {
                if e.is_timeout() {
                    self.mark_slow(url);
                }
                Error::volume(url, e)
            })?;
            match resp.status() {
                StatusCode::OK => Ok(resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).or(Some(0))),
                StatusCode::NOT_FOUND => Ok(None),
                s => Err(Error::volume(url, s)),
            }
        })
        .await
    }

    /// True if a HEAD answered 200 within the HEAD timeout.
    pub async fn exists(&self, url: &str) -> bool {
        matches!(self.head(url).await, Ok(Some(_)))
    }

    /// PUT a body that arrives on `rx`. An `Err` on the channel aborts the
    /// request, so nginx discards the partial file. A body of known length
    /// up to [`WHOLE_BODY_MAX`] is gathered first and sent with the headers in
    /// one write (no streaming machinery per small value); one that fails or
    /// comes short is never sent.
    pub async fn put_stream(&self, url: String, len: Option<u64>, mut rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Result<()> {
        let body = match len {
            Some(n) if n <= WHOLE_BODY_MAX => {
                let mut chunks: Vec<Bytes> = Vec::new();
                let mut got = 0u64;
                while let Some(chunk) = rx.recv().await {
                    let chunk = chunk.map_err(|e| Error::volume(&url, e))?;
                    got += chunk.len() as u64;
                    if got > n {
                        break;
                    }
                    chunks.push(chunk);
                }
                if got != n {
                    return Err(Error::volume(&url, format!("body of {got} bytes for a length of {n}")));
                }
                match chunks.len() {
                    1 => reqwest::Body::from(chunks.pop().unwrap_or_default()),
                    _ => reqwest::Body::from(chunks.concat()),
                }
            }
            _ => reqwest::Body::wrap_stream(ReceiverStream::new(rx)),
        };
        let mut req = self.upload.put(&url).body(body);
        if let Some(len) = len {
            req = req.header(CONTENT_LENGTH, len);
        }
        self.timed("PUT", &url, async {
            let resp = req.send().await.map_err(|e| Error::volume(&url, e))?;
            match resp.status() {
                StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
                s => Err(Error::volume(&url, format!("PUT answered {s}"))),
            }
        })
        .await
    }

    /// DELETE a file; a file already gone counts as deleted. A write like
    /// any other: a stalled volume fails it at once, and one that lets it
    /// time out is marked stalled.
    pub async fn delete(&self, url: &str) -> Result<()> {
        self.ready_for_write(url).await?;
        self.timed("DELETE", url, async {
            let resp = self.http.delete(url).timeout(self.io_timeout).send().await.map_err(|e| {
                if e.is_timeout() {
                    return self.stalled(url, e);
                }
                Error::volume(url, e)
            })?;
            match resp.status() {
                StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
                s => Err(Error::volume(url, format!("DELETE answered {s}"))),
            }
        })
        .await
    }

    /// GET a file (optionally a byte range), as a response whose body streams.
    /// A volume that sends no response headers within the HEAD timeout fails
    /// the call (a hung disk, a stopped process: the caller tries another
    /// replica); a body that stalls fails after the I/O timeout.
    pub async fn get(&self, url: &str, range: Option<&str>) -> Result<reqwest::Response> {
        let mut req = self.http.get(url);
        if let Some(r) = range {
            req = req.header(RANGE, r);
        }
        self.timed("GET", url, async {
            let resp = tokio::time::timeout(self.head_timeout, req.send())
                .await
                .map_err(|_| {
                    self.mark_slow(url);
                    Error::volume(url, "no response headers within the volume timeout")
                })?
                .map_err(|e| Error::volume(url, e))?;
            match resp.status() {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(resp),
                StatusCode::NOT_FOUND => Err(Error::NotFound),
                s => Err(Error::volume(url, format!("GET answered {s}"))),
            }
        })
        .await
    }

    /// A folder's autoindex listing; a missing folder is empty. A failed
    /// transfer is tried again (a busy volume; large folders take a while).
    pub async fn list_dir(&self, url: &str) -> Result<Vec<DirEntry>> {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            match self.list_dir_once(url).await {
                Err(Error::Volume { reason, .. }) if attempt < ATTEMPTS && !reason.starts_with("listing answered") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn list_dir_once(&self, url: &str) -> Result<Vec<DirEntry>> {
        self.timed("GET", url, async {
            let resp = self.http.get(url).send().await.map_err(|e| Error::volume(url, e))?;
            match resp.status() {
                StatusCode::OK => {
                    let body = resp.bytes().await.map_err(|e| Error::volume(url, e))?;
                    serde_json::from_slice(&body).map_err(|e| Error::volume(url, format!("bad autoindex JSON: {e}")))
                }
                StatusCode::NOT_FOUND => Ok(Vec::new()),
                s => Err(Error::volume(url, format!("listing answered {s}"))),
            }
        })
        .await
    }

    /// PUT a small body held in memory (metadata and bucket files).
    pub async fn put_bytes(&self, url: &str, body: Bytes) -> Result<()> {
        self.ready_for_write(url).await?;
        let (tx, rx) = mpsc::channel(1);
        let len = body.len() as u64;
        // The channel has room for the one chunk: this never waits.
        let _ = tx.try_send(Ok(body));
        drop(tx);
        tokio::time::timeout(self.io_timeout, self.put_stream(url.to_string(), Some(len), rx))
            .await
            .map_err(|_| self.stalled(url, "no answer within the I/O timeout"))?
    }

    /// GET a small file whole (metadata and bucket files); `None` if the
    /// volume has no such file.
    pub async fn get_bytes(&self, url: &str) -> Result<Option<Bytes>> {
        match self.get(url, None).await {
            Ok(resp) => Ok(Some(self.body(url, resp).await?)),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole body of a GET of `url` (small files only: it is held in
    /// memory), within the I/O timeout.
    pub async fn body(&self, url: &str, resp: reqwest::Response) -> Result<Bytes> {
        match tokio::time::timeout(self.io_timeout, resp.bytes()).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => Err(Error::volume(url, e)),
            Err(_) => Err(Error::volume(url, "read stalled for longer than the I/O timeout")),
        }
    }

    /// Stream a GET of `from` into a PUT at `to`, through this process with
    /// bounded memory (replica copies for rebalance and repair). Either side
    /// silent for longer than the I/O timeout fails the copy, and a failed
    /// copy aborts the PUT so no partial file lands.
    pub async fn copy(&self, from: &str, to: &str) -> Result<u64> {
        let resp = self.get(from, None).await?;
        let len = resp.content_length();
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (vol, dest) = (self.clone(), to.to_string());
        let mut put = tokio::spawn(async move { vol.put_stream(dest, len, rx).await });
        let pumped = async {
            let mut body = resp.bytes_stream();
            let mut copied = 0u64;
            let result = loop {
                let chunk = match next_within(&mut body, self.io_timeout).await {
                    Err(_) => break Err(Error::volume(from, "read stalled for longer than the I/O timeout")),
                    Ok(None) => break Ok(copied),
                    Ok(Some(Err(e))) => break Err(Error::volume(from, e)),
                    Ok(Some(Ok(c))) => c,
                };
                copied += chunk.len() as u64;
                match tokio::time::timeout(self.io_timeout, tx.send(Ok(chunk))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Err(Error::volume(to, "volume closed the upload")),
                    Err(_) => break Err(Error::volume(to, "upload stalled for longer than the I/O timeout")),
                }
            };
            if result.is_err() {
                let _ = tx.try_send(Err(std::io::Error::other("copy aborted")));
            }
            drop(tx);
            result
        }
        .await;
        let copied = match pumped {
            Ok(n) => n,
            Err(e) => {
                put.abort();
                return Err(e);
            }
        };
        // The body is sent: the volume must answer within the I/O timeout.
        match tokio::time::timeout(self.io_timeout, &mut put).await {
            Ok(Ok(r)) => r.map(|()| copied),
            Ok(Err(e)) => Err(Error::volume(to, e)),
            Err(_) => {
                put.abort();
                Err(Error::volume(to, "no answer within the I/O timeout"))
            }
        }
    }
}

/// Wait for a stream item, failing if the source stays silent too long.
pub async fn next_within<S, T>(stream: &mut S, limit: Duration) -> std::result::Result<Option<T>, tokio::time::error::Elapsed>
where
    S: Stream<Item = T> + Unpin,
{
    use futures::StreamExt;
    tokio::time::timeout(limit, stream.next()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-request HTTP server: answers 201 once it has headers and
    /// `Content-Length` bytes of body, and hands back what it read.
    async fn one_put_server() -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = sock.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            sock.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            got
        });
        (format!("http://{addr}/a/b"), server)
    }

    fn client() -> VolumeClient {
        VolumeClient::new(Duration::from_secs(1), Duration::from_secs(5), Arc::new(Metrics::new(&[])))
    }

    #[tokio::test]
    async fn small_bodies_are_sent_whole() {
        let (url, server) = one_put_server().await;
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"world"))).await.unwrap();
        drop(tx);
        client().put_stream(url, Some(11), rx).await.unwrap();
        let got = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(got.starts_with("PUT /a/b HTTP/1.1\r\n"), "{got}");
        assert!(got.to_lowercase().contains("content-length: 11\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nhello world"), "{got}");
    }

    #[tokio::test]
    async fn a_failed_or_short_small_body_is_never_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        tx.send(Err(std::io::Error::other("client went away"))).await.unwrap();
        assert!(client().put_stream(url.clone(), Some(10), rx).await.is_err());
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
        drop(tx);
        assert!(client().put_stream(url, Some(10), rx).await.is_err());
        // No connection was opened.
        assert!(tokio::time::timeout(Duration::from_millis(100), listener.accept()).await.is_err());
    }

    #[test]
    fn authorities() {
        assert_eq!(authority("http://127.0.0.1:3001/sv01/ab/cd/a2V5"), "127.0.0.1:3001");
        assert_eq!(authority("http://h:1"), "h:1");
    }

    #[tokio::test]
    async fn a_stalled_volume_fails_writes_until_it_answers_a_probe() {
        // A listener that never answers: connections wait in its backlog.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sv01/k", silent.local_addr().unwrap());
        let c = VolumeClient::new(Duration::from_millis(200), Duration::from_secs(5), Arc::new(Metrics::new(&[])));
        c.ready_for_write(&url).await.unwrap();
        let _ = c.stalled(&url, "test");
        assert!(c.is_stalled(&url) && !c.is_stalled("http://127.0.0.1:1/x"));
        // Every worker's client knows it.
        assert!(c.for_worker().is_stalled(&url));
        let start = Instant::now();
        assert!(matches!(c.ready_for_write(&url).await, Err(Error::Stalled { .. })));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(c.is_stalled(&url));
        // Once it answers (here: another volume at the same address), the mark goes.
        let (answering, _server) = one_put_server().await;
        let _ = c.stalled(&answering, "test");
        c.ready_for_write(&answering).await.unwrap();
        assert!(!c.is_stalled(&answering) && c.is_stalled(&url));
        drop(silent);
    }

    #[tokio::test]
    async fn a_read_past_the_timeout_only_orders_reads() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sv01/k", silent.local_addr().unwrap());
        let c = VolumeClient::new(Duration::from_millis(200), Duration::from_secs(5), Arc::new(Metrics::new(&[])));
        assert!(!c.try_last(&url));
        assert!(c.head(&url).await.is_err());
        // Reads (on every worker) try it last; writes do not wait for a probe.
        assert!(c.for_worker().try_last(&url) && !c.is_stalled(&url));
        // A call that succeeds clears it (here: another volume at the same address).
        let (answering, _server) = one_put_server().await;
        c.mark_slow(&answering);
        assert!(c.try_last(&answering));
        c.put_bytes(&answering, Bytes::from_static(b"x")).await.unwrap();
        assert!(!c.try_last(&answering) && c.try_last(&url));
        drop(silent);
    }
}
