//! Prometheus metrics of one server (`mkv_*`), served by the admin
//! listener. Labels are bounded: API, operation name, status class, a
//! configured volume; never keys or bucket names.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::index::IndexStats;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    received: IntCounterVec,
    sent: IntCounterVec,
    in_flight: IntGauge,
    volume_requests: IntCounterVec,
    volume_errors: IntCounterVec,
    volume_durations: HistogramVec,
    /// The `--volumes`: the only volume labels (any other is `other`).
    volumes: Vec<String>,
    index: IndexGauges,
    commits: CommitSeries,
    value_cache: ValueCacheSeries,
    /// Series of the hot paths, looked up once (a labelled lookup hashes the
    /// labels and takes a lock on every call); made on first use, so the
    /// output lists the same series as without them.
    cache: Cache,
}

/// Volume methods with cached series; others are looked up each time.
const VOLUME_METHODS: [&str; 4] = ["HEAD", "GET", "PUT", "DELETE"];
/// Native operations (`observe::NATIVE_OPS` and `OTHER`) with cached series.
const NATIVE_OPS: [&str; 7] = ["GET", "HEAD", "PUT", "DELETE", "UNLINK", "REBALANCE", "OTHER"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index commit thread's figures.
struct CommitSeries {
    commits: IntCounter,
    writes: IntCounter,
    durations: Histogram,
    sync_failures: IntCounter,
}

/// The small-value cache's figures.
struct ValueCacheSeries {
    hits: IntCounter,
    misses: IntCounter,
    bytes: IntGauge,
}

#[derive(Default)]
struct VolumeSeries {
    requests: OnceLock<IntCounter>,
    errors: OnceLock<IntCounter>,
    durations: OnceLock<Histogram>,
}

#[derive(Default)]
struct Cache {
    /// By volume (position in `volumes`, then `other`), then method.
    volume: Vec<[VolumeSeries; VOLUME_METHODS.len()]>,
    /// Native requests by operation, then status class.
    native_requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; NATIVE_OPS.len()],
    native_durations: [OnceLock<Histogram>; NATIVE_OPS.len()],
    /// Bytes received and sent, native then S3.
    received: [OnceLock<IntCounter>; 2],
    sent: [OnceLock<IntCounter>; 2],
}

fn cached<T: Clone>(slot: &OnceLock<T>, make: impl FnOnce() -> T) -> &T {
    slot.get_or_init(make)
}

/// Read from the index at each scrape.
struct IndexGauges {
    keys: IntGauge,
    used: IntGauge,
    map_size: IntGauge,
    file: IntGauge,
    uploads: IntGauge,
    pending_deletions: IntGauge,
    writes_in_progress: IntGauge,
}

/// Request durations, from 1 ms to a minute (large transfers).
const DURATION_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0];

fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_index(status)]
}

fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

impl Metrics {
    pub fn new(volumes: &[String]) -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()), labels).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let single = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let commit_time = Histogram::with_opts(
            HistogramOpts::new("mkv_index_commit_duration_seconds", "Time of one index commit (with --index-sync commit, its fsync included).")
                .buckets(DURATION_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry.register(Box::new(commit_time.clone())).expect("registered once");
        Metrics {
            requests: counter("mkv_requests_total", "Requests answered, by API, operation and status class.", &["api", "operation", "status"]),
            durations: histogram(
                "mkv_request_duration_seconds",
                "Time from a request's arrival to the last byte of its answer.",
                &["api", "operation"],
            ),
            received: counter("mkv_received_bytes_total", "Request body bytes read.", &["api"]),
            sent: counter("mkv_sent_bytes_total", "Response body bytes sent.", &["api"]),
            in_flight: gauge("mkv_requests_in_flight", "Requests being served."),
            volume_requests: counter("mkv_volume_requests_total", "Requests to volumes, by volume and method.", &["volume", "method"]),
            volume_errors: counter(
                "mkv_volume_errors_total",
                "Volume requests that failed (no answer, timeout, unexpected status; a 404 is not an error).",
                &["volume", "method"],
            ),
            volume_durations: histogram(
                "mkv_volume_request_duration_seconds",
                "Time of a volume request (for streamed GETs, until the response headers).",
                &["volume", "method"],
            ),
            commits: CommitSeries {
                commits: single("mkv_index_commits_total", "Index write transactions committed (concurrent writes share one)."),
                writes: single("mkv_index_commit_writes_total", "Index writes committed (divided by mkv_index_commits_total: writes per commit)."),
                durations: commit_time,
                sync_failures: single("mkv_index_sync_failures_total", "Periodic index fsyncs that failed (--index-sync PERIOD): alert on any."),
            },
            value_cache: ValueCacheSeries {
                hits: single("mkv_value_cache_hits_total", "GetObjects of small values answered from memory (--cache-mib)."),
                misses: single("mkv_value_cache_misses_total", "GetObjects of small values read from a volume, then kept."),
                bytes: gauge("mkv_value_cache_bytes", "Memory held by the small-value cache, keys and bookkeeping included."),
            },
            volumes: volumes.to_vec(),
            cache: Cache { volume: (0..=volumes.len()).map(|_| Default::default()).collect(), ..Default::default() },
            index: IndexGauges {
                keys: gauge("mkv_index_keys", "Key records in the index (live and soft-deleted)."),
                used: gauge("mkv_index_used_bytes", "Bytes of the LMDB map in use."),
                map_size: gauge("mkv_index_map_size_bytes", "Largest size the index may grow to (--db-map-gib)."),
                file: gauge("mkv_index_file_bytes", "Size of the index file on disk."),
                uploads: gauge("mkv_multipart_uploads_in_progress", "S3 multipart uploads begun and neither completed nor aborted."),
                pending_deletions: gauge("mkv_pending_deletions", "File sets waiting for the collector (replaced, deleted, abandoned values)."),
                writes_in_progress: gauge("mkv_writes_in_progress", "S3 writes uploading to their files."),
            },
            registry,
        }
    }

    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    pub fn request_done(&self, api: &str, operation: &str, status: u16, bytes_in: u64, bytes_out: u64, took: Duration) {
        self.in_flight.dec();
        let c = &self.cache;
        let native_op = if api == "native" { NATIVE_OPS.iter().position(|o| *o == operation) } else { None };
        match native_op {
            Some(op) => {
                let class = status_index(status);
                cached(&c.native_requests[op][class], || self.requests.with_label_values(&[api, operation, STATUS_CLASSES[class]])).inc();
                cached(&c.native_durations[op], || self.durations.with_label_values(&[api, operation])).observe(took.as_secs_f64());
            }
            None => {
                self.requests.with_label_values(&[api, operation, status_class(status)]).inc();
                self.durations.with_label_values(&[api, operation]).observe(took.as_secs_f64());
            }
        }
        match api {
            "native" | "s3" => {
                let i = usize::from(api == "s3");
                cached(&c.received[i], || self.received.with_label_values(&[api])).inc_by(bytes_in);
                cached(&c.sent[i], || self.sent.with_label_values(&[api])).inc_by(bytes_out);
            }
            _ => {
                self.received.with_label_values(&[api]).inc_by(bytes_in);
                self.sent.with_label_values(&[api]).inc_by(bytes_out);
            }
        }
    }

    /// One index commit of `writes` writes.
    pub fn index_commit(&self, writes: usize, took: Duration) {
        self.commits.commits.inc();
        self.commits.writes.inc_by(writes as u64);
        self.commits.durations.observe(took.as_secs_f64());
    }

    /// A GetObject of a value the cache holds.
    pub fn value_cache_lookup(&self, hit: bool) {
        let c = &self.value_cache;
        if hit { &c.hits } else { &c.misses }.inc();
    }

    /// The cache's memory, set before a scrape.
    pub fn value_cache_held(&self, bytes: u64) {
        self.value_cache.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn index_sync_failed(&self) {
        self.commits.sync_failures.inc();
    }

    /// One call to a volume (`http://host:port/…`).
    pub fn volume_call(&self, url: &str, method: &str, failed: bool, took: Duration) {
        let host = url.strip_prefix("http://").unwrap_or(url);
        let host = host.split('/').next().unwrap_or(host);
        let at = self.volumes.iter().position(|v| v == host);
        let volume = if at.is_some() { host } else { "other" };
        let labels = [volume, method];
        let Some(m) = VOLUME_METHODS.iter().position(|x| *x == method) else {
            self.volume_requests.with_label_values(&labels).inc();
            if failed {
                self.volume_errors.with_label_values(&labels).inc();
            }
            self.volume_durations.with_label_values(&labels).observe(took.as_secs_f64());
            return;
        };
        let series = &self.cache.volume[at.unwrap_or(self.volumes.len())][m];
        cached(&series.requests, || self.volume_requests.with_label_values(&labels)).inc();
        if failed {
            cached(&series.errors, || self.volume_errors.with_label_values(&labels)).inc();
        }
        cached(&series.durations, || self.volume_durations.with_label_values(&labels)).observe(took.as_secs_f64());
    }

    /// Every metric in Prometheus' text format, with the index figures of
    /// now.
    pub fn render(&self, index: &IndexStats) -> String {
        let g = &self.index;
        for (gauge, value) in [
            (&g.keys, index.keys),
            (&g.used, index.used_bytes),
            (&g.map_size, index.map_size),
            (&g.file, index.file_bytes),
            (&g.uploads, index.uploads),
            (&g.pending_deletions, index.pending_deletions),
            (&g.writes_in_progress, index.writes_in_progress),
        ] {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        TextEncoder::new().encode_to_string(&self.registry.gather()).expect("text encoding")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let m = Metrics::new(&["a:1".to_string()]);
        m.volume_call("http://a:1/sv01/ab/cd/x", "GET", false, Duration::from_millis(3));
        m.volume_call("http://elsewhere:9/x", "PUT", true, Duration::ZERO);
        m.request_started();
        m.request_done("s3", "PutObject", 503, 10, 0, Duration::from_millis(1));
        let text = m.render(&IndexStats::default());
        assert!(text.contains(r#"mkv_volume_requests_total{method="GET",volume="a:1"} 1"#), "{text}");
        assert!(text.contains(r#"mkv_volume_errors_total{method="PUT",volume="other"} 1"#));
        assert!(text.contains(r#"mkv_requests_total{api="s3",operation="PutObject",status="5xx"} 1"#));
        assert!(text.contains("mkv_requests_in_flight 0"));
        assert!(text.contains(r#"mkv_received_bytes_total{api="s3"} 10"#));
        assert!(text.contains("mkv_index_keys 0"));
    }

    #[test]
    fn cached_series_count_like_looked_up_ones() {
        let m = Metrics::new(&["a:1".to_string(), "b:2".to_string()]);
        for _ in 0..3 {
            m.volume_call("http://b:2/x", "HEAD", false, Duration::from_millis(1));
            m.request_started();
            m.request_done("native", "GET", 302, 0, 0, Duration::from_millis(1));
        }
        m.volume_call("http://b:2/x", "HEAD", true, Duration::ZERO);
        m.volume_call("http://c:3/x", "HEAD", false, Duration::ZERO);
        m.volume_call("http://a:1/x", "MOVE", false, Duration::ZERO);
        m.request_started();
        m.request_done("native", "PROPFIND", 405, 5, 0, Duration::ZERO);
        let text = m.render(&IndexStats::default());
        assert!(text.contains(r#"mkv_volume_requests_total{method="HEAD",volume="b:2"} 4"#), "{text}");
        assert!(text.contains(r#"mkv_volume_errors_total{method="HEAD",volume="b:2"} 1"#));
        assert!(text.contains(r#"mkv_volume_requests_total{method="HEAD",volume="other"} 1"#));
        assert!(text.contains(r#"mkv_volume_requests_total{method="MOVE",volume="a:1"} 1"#));
        assert!(!text.contains(r#"mkv_volume_errors_total{method="HEAD",volume="other"}"#));
        assert!(text.contains(r#"mkv_requests_total{api="native",operation="GET",status="3xx"} 3"#));
        assert!(text.contains(r#"mkv_requests_total{api="native",operation="PROPFIND",status="4xx"} 1"#));
        assert!(text.contains(r#"mkv_request_duration_seconds_count{api="native",operation="GET"} 3"#));
        assert!(text.contains(r#"mkv_received_bytes_total{api="native"} 5"#));
        assert!(text.contains("mkv_requests_in_flight 0"));
    }
}
