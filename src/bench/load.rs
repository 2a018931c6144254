//! The load generator core: `concurrency` workers share one operation
//! counter and stop at `count` operations or after `duration`, whichever
//! comes first. Each worker keeps its own latency histogram (no locks on the
//! hot path); they are merged into one JSON report at the end.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::config::parse_duration;

/// How much load, for how long, and what to call the result.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LoadArgs {
    /// Operations in flight at once (one connection each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub concurrency: u64,
    /// Stop after this many operations.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Stop starting operations after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Name of this run in the report.
    #[arg(long, default_value = "")]
    pub label: String,
}

/// Latencies in log-linear buckets: exact below 128 ns, then 64 buckets per
/// power of two (under 1.6% error), so any latency fits in 3,776 counters.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
}

const SUB: u64 = 64;
const BUCKETS: usize = (2 * SUB + 57 * SUB) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS] }
    }
}

impl Histogram {
    fn index(ns: u64) -> usize {
        if ns < 2 * SUB {
            return ns as usize;
        }
        let shift = 63 - ns.leading_zeros() as u64 - 6;
        (2 * SUB + (shift - 1) * SUB + ((ns >> shift) - SUB)) as usize
    }

    /// The middle of a bucket's range, in nanoseconds.
    fn value(index: usize) -> u64 {
        let i = index as u64;
        if i < 2 * SUB {
            return i;
        }
        let shift = (i - 2 * SUB) / SUB + 1;
        let top = (i - 2 * SUB) % SUB + SUB;
        (top << shift) + (1 << (shift - 1))
    }

    pub fn record(&mut self, d: Duration) {
        self.counts[Self::index(d.as_nanos().min(u64::MAX as u128) as u64)] += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency below which `q` (0..=1) of the samples fall.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.total();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(Self::value(i));
            }
        }
        Duration::ZERO
    }
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    ok: Histogram,
    bytes: u64,
    errors: u64,
    /// Distinct error messages and how often each occurred.
    kinds: BTreeMap<String, u64>,
}

/// One JSON line of results.
#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub op: String,
    pub concurrency: u64,
    /// Operations that succeeded.
    pub ops: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    /// Payload bytes moved by the successful operations.
    pub bytes: u64,
    pub mb_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Up to 5 distinct error messages with their counts.
    pub error_kinds: BTreeMap<String, u64>,
}

impl Report {
    pub fn print(&self) {
        println!("{}", serde_json::to_string(self).expect("a report serializes"));
    }
}

/// Run `op(i)` for i = 0, 1, … on `concurrency` workers until `count` ops
/// were started or `duration` passed. `op` returns the payload bytes it
/// moved, or an error message. Operations already started run to the end.
pub async fn run<F, Fut>(args: &LoadArgs, op_name: &str, op: F) -> Report
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (op, next, count) = (op.clone(), next.clone(), args.count);
        workers.push(tokio::spawn(async move {
            let mut t = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= deadline {
                    return t;
                }
                let began = Instant::now();
                match op(i).await {
                    Ok(n) => {
                        t.ok.record(began.elapsed());
                        t.bytes += n;
                    }
                    Err(e) => {
                        t.errors += 1;
                        if t.kinds.len() < 5 || t.kinds.contains_key(&e) {
                            *t.kinds.entry(e).or_default() += 1;
                        }
                    }
                }
            }
        }));
    }
    let mut all = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => {
                all.ok.merge(&t.ok);
                all.bytes += t.bytes;
                all.errors += t.errors;
                for (k, n) in t.kinds {
                    if all.kinds.len() < 5 || all.kinds.contains_key(&k) {
                        *all.kinds.entry(k).or_default() += n;
                    }
                }
            }
            Err(e) => {
                all.errors += 1;
                *all.kinds.entry(format!("worker panicked: {e}")).or_default() += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ops = all.ok.total();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    Report {
        label: args.label.clone(),
        op: op_name.to_string(),
        concurrency: args.concurrency,
        ops,
        errors: all.errors,
        elapsed_s: (elapsed * 1e3).round() / 1e3,
        ops_per_s: (ops as f64 / elapsed * 10.0).round() / 10.0,
        bytes: all.bytes,
        mb_per_s: (all.bytes as f64 / elapsed / 1048576.0 * 10.0).round() / 10.0,
        p50_ms: ms(all.ok.quantile(0.5)),
        p99_ms: ms(all.ok.quantile(0.99)),
        max_ms: ms(all.ok.quantile(1.0)),
        error_kinds: all.kinds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_two_percent() {
        for ns in [0u64, 1, 127, 128, 129, 1000, 65_535, 1_000_000, 123_456_789, 10_000_000_000, u64::MAX / 2] {
            let i = Histogram::index(ns);
            assert!(i < BUCKETS, "{ns}");
            let v = Histogram::value(i);
            let err = (v as f64 - ns as f64).abs() / (ns.max(1) as f64);
            assert!(err < 0.02, "{ns} -> bucket {i} -> {v}");
        }
        // Buckets are ordered like the values.
        assert!((0..100_000u64).step_by(7).map(Histogram::index).collect::<Vec<_>>().windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_secs_f64() * 1e3;
        let p99 = h.quantile(0.99).as_secs_f64() * 1e3;
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.5).contains(&p99), "{p99}");
        let mut g = Histogram::default();
        g.merge(&h);
        assert_eq!(g.total(), 100);
    }

    #[tokio::test]
    async fn load_stops_at_count_and_counts_errors() {
        let args = LoadArgs { concurrency: 4, count: 103, duration: Duration::from_secs(60), label: "t".into() };
        let r = run(&args, "x", |i| async move { if i % 10 == 0 { Err("boom".to_string()) } else { Ok(2) } }).await;
        assert_eq!(r.ops + r.errors, 103);
        assert_eq!(r.errors, 11);
        assert_eq!(r.bytes, 2 * r.ops);
        assert_eq!(r.error_kinds.get("boom"), Some(&11));
    }
}
