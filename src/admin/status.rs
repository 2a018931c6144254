//! `mkv status`: volumes up or down, and the index's figures, from a
//! running server's admin listener (`GET /status`, the same [`Status`]) or
//! from `--db` and `--volumes` directly. Free space is not shown: nginx does
//! not report it.

use futures::TryStreamExt;
use indicatif::HumanBytes;
use serde::{Deserialize, Serialize};

use super::{block_on, existing_db, records, volume_client, AdminError, PAGE};
use crate::config::{Config, StatusArgs};
use crate::index::{Index, IndexError, IndexStats};
use crate::volume::VolumeClient;

#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub volumes: Vec<VolumeStatus>,
    /// LMDB's counters: no scan.
    pub index: IndexStats,
    /// From a scan of the whole index: only offline, with `--bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VolumeStatus {
    pub volume: String,
    pub up: bool,
    /// Time to answer `HEAD /`, when up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub live_objects: u64,
    /// Sum of the live objects' sizes as recorded (keys without metadata
    /// count 0).
    pub bytes: u64,
}

/// Probe every volume (within `--voltimeout`) and read the index counters.
pub async fn collect(index: &Index, client: &VolumeClient, volumes: &[String]) -> Result<Status, IndexError> {
    let probes = futures::future::join_all(volumes.iter().map(|v| client.probe(v))).await;
    let volumes = volumes
        .iter()
        .zip(probes)
        .map(|(v, probe)| VolumeStatus {
            volume: v.clone(),
            up: probe.is_ok(),
            latency_ms: probe.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
            error: probe.err().map(|e| e.to_string()),
        })
        .collect();
    Ok(Status { volumes, index: index.stats()?, usage: None })
}

/// Live objects and bytes, a page of records at a time (short read
/// transactions, so a running server can still reuse pages).
async fn usage(index: &Index) -> Result<Usage, IndexError> {
    let mut pages = std::pin::pin!(records(index.clone(), Vec::new()).try_chunks(PAGE));
    let mut usage = Usage::default();
    while let Some(page) = pages.try_next().await.map_err(|e| e.1)? {
        let live: Vec<Vec<u8>> = page.into_iter().filter(|(_, r)| r.is_live()).map(|(k, _)| k).collect();
        usage.live_objects += live.len() as u64;
        usage.bytes += index.snapshot()?.get_metas(&live)?.iter().flatten().map(|m| m.size).sum::<u64>();
    }
    Ok(usage)
}

/// A server's `GET /status`.
async fn fetch(addr: &str, config: &Config) -> Result<Status, AdminError> {
    let err = |reason: String| AdminError::Server { addr: addr.into(), reason };
    // The server probes its volumes within its --voltimeout: leave it room.
    let http = reqwest::Client::builder().no_proxy().timeout(config.io_timeout).build().map_err(|e| err(e.to_string()))?;
    let resp = http.get(format!("http://{addr}/status")).send().await.map_err(|e| err(e.to_string()))?;
    let code = resp.status();
    let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    if !code.is_success() {
        return Err(err(format!("{code} to GET /status (is it the --admin-port?): {}", String::from_utf8_lossy(&body).trim())));
    }
    serde_json::from_slice(&body).map_err(|e| err(format!("GET /status: {e}")))
}

/// Prints the status; true if every volume is up.
pub fn run(config: Config, args: StatusArgs) -> Result<bool, AdminError> {
    let status = block_on(async {
        if let Some(addr) = &args.server {
            return fetch(addr, &config).await;
        }
        let index = existing_db(&config)?;
        let mut status = collect(&index, &volume_client(&config), &config.volumes).await?;
        if args.bytes {
            status.usage = Some(usage(&index).await?);
        }
        Ok(status)
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&status).expect("plain data serializes"));
    } else {
        print!("{}", text(&status));
    }
    Ok(status.volumes.iter().all(|v| v.up))
}

fn text(s: &Status) -> String {
    let up = s.volumes.iter().filter(|v| v.up).count();
    let mut lines = vec![format!("volumes: {up} of {} up (free space unknown: nginx does not report it)", s.volumes.len())];
    lines.extend(s.volumes.iter().map(|v| match (&v.latency_ms, &v.error) {
        (Some(ms), _) => format!("  {}  up  {ms:.1} ms", v.volume),
        (None, error) => format!("  {}  DOWN  {}", v.volume, error.as_deref().unwrap_or("")),
    }));
    let i = &s.index;
    lines.push(format!("objects: {} (keys in the index, soft-deleted included)", i.keys));
    lines.push(match &s.usage {
        Some(u) => format!("live: {} objects, {} ({} bytes)", u.live_objects, HumanBytes(u.bytes), u.bytes),
        None => "bytes: not counted (offline with --bytes: scans the index)".into(),
    });
    lines.push(format!("buckets: {}", i.buckets));
    let used = if i.map_size > 0 { 100.0 * i.used_bytes as f64 / i.map_size as f64 } else { 0.0 };
    lines.push(format!("index: {} used of a {} map ({used:.1}%), file {}", HumanBytes(i.used_bytes), HumanBytes(i.map_size), HumanBytes(i.file_bytes)));
    lines.push(format!("uploads in progress: {}", i.uploads));
    lines.push(format!("pending deletions: {}", i.pending_deletions));
    lines.push(format!("writes in progress: {}", i.writes_in_progress));
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_says_what_is_down_and_unknown() {
        let s = Status {
            volumes: vec![
                VolumeStatus { volume: "a:1".into(), up: true, latency_ms: Some(1.25), error: None },
                VolumeStatus { volume: "b:2".into(), up: false, latency_ms: None, error: Some("refused".into()) },
            ],
            index: IndexStats { keys: 3, buckets: 1, used_bytes: 1 << 20, map_size: 4 << 20, ..Default::default() },
            usage: None,
        };
        let t = text(&s);
        assert!(t.starts_with("volumes: 1 of 2 up (free space unknown"), "{t}");
        assert!(t.contains("  a:1  up  1.2 ms\n  b:2  DOWN  refused\n"), "{t}");
        assert!(t.contains("objects: 3 ") && t.contains("bytes: not counted") && t.contains("(25.0%)"), "{t}");
    }
}
