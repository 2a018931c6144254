//! Progress and the final report of an admin command: a bar on a terminal,
//! a plain line every few seconds otherwise. Failures are all kept, listed at
//! the end, and make the exit code non-zero.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// How often the plain progress line is printed when stderr is not a TTY.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// One failure or one action taken, about a key, a volume file, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Item {
    pub fn new(kind: &str, key: Option<&[u8]>, volume: Option<&str>, detail: impl fmt::Display) -> Item {
        Item {
            kind: kind.to_string(),
            // Keys are bytes; reports show them as text (lossy for non-UTF-8).
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
            volume: volume.map(str::to_string),
            detail: detail.to_string(),
        }
    }

    pub fn key(kind: &str, key: &[u8], detail: impl fmt::Display) -> Item {
        Item::new(kind, Some(key), None, detail)
    }

    pub fn replica(kind: &str, key: &[u8], volume: &str, detail: impl fmt::Display) -> Item {
        Item::new(kind, Some(key), Some(volume), detail)
    }

    pub fn file(kind: &str, url: &str, detail: impl fmt::Display) -> Item {
        Item::new(kind, None, Some(url), detail)
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(k) = &self.key {
            write!(f, " {k}")?;
        }
        if let Some(v) = &self.volume {
            write!(f, " on {v}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// What a command did, printed at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    /// What `seen` counts: keys, or files for rebuild.
    pub unit: String,
    pub seen: u64,
    pub changed: u64,
    pub failed: u64,
    pub seconds: f64,
    pub failures: Vec<Item>,
    pub actions: Vec<Item>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    pub fn summary(&self) -> String {
        format!(
            "{}: {} {} seen, {} changed, {} failed, {:.2} s",
            self.command, self.seen, self.unit, self.changed, self.failed, self.seconds
        )
    }

    /// The report on stdout: actions, failures, then the summary line; or
    /// one JSON document.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).expect("report serializes"));
            return;
        }
        for a in &self.actions {
            println!("done: {a}");
        }
        for f in &self.failures {
            println!("failed: {f}");
        }
        println!("{}", self.summary());
    }
}

struct Inner {
    command: String,
    unit: String,
    start: Instant,
    seen: AtomicU64,
    changed: AtomicU64,
    failures: Mutex<Vec<Item>>,
    actions: Mutex<Vec<Item>>,
    bar: Option<ProgressBar>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Counters shared by a command's tasks. Must be started inside a Tokio
/// runtime (the plain-line ticker is a task).
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

impl Progress {
    /// `total` is the number of `unit`s expected, when known.
    pub fn start(command: &str, unit: &str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let (bar, template) = match total {
                Some(n) => (ProgressBar::new(n), "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}"),
                None => (ProgressBar::new_spinner(), "{prefix} [{elapsed_precise}] {spinner} {pos} {per_sec} {msg}"),
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar.set_prefix(format!("{command}: {unit}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let inner = Arc::new(Inner {
            command: command.to_string(),
            unit: unit.to_string(),
            start: Instant::now(),
            seen: AtomicU64::new(0),
            changed: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            actions: Mutex::new(Vec::new()),
            bar,
            ticker: Mutex::new(None),
        });
        let progress = Progress { inner };
        if progress.inner.bar.is_none() {
            let p = progress.clone();
            let ticker = tokio::spawn(async move {
                let mut every = tokio::time::interval(LINE_EVERY);
                every.tick().await;
                loop {
                    every.tick().await;
                    eprintln!("{}", p.snapshot(Vec::new(), Vec::new()).summary());
                }
            });
            *progress.inner.ticker.lock().unwrap() = Some(ticker);
        }
        progress
    }

    pub fn seen(&self, n: u64) {
        self.inner.seen.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.inc(n);
        }
    }

    pub fn changed(&self, n: u64) {
        self.inner.changed.fetch_add(n, Ordering::Relaxed);
        self.update_message();
    }

    pub fn fail(&self, item: Item) {
        self.inner.failures.lock().unwrap().push(item);
        self.update_message();
    }

    /// Record something done (repair reports every change it makes).
    pub fn act(&self, item: Item) {
        self.inner.actions.lock().unwrap().push(item);
    }

    pub fn failed(&self) -> u64 {
        self.inner.failures.lock().unwrap().len() as u64
    }

    fn update_message(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.set_message(format!("{} changed, {} failed", self.inner.changed.load(Ordering::Relaxed), self.failed()));
        }
    }

    fn snapshot(&self, failures: Vec<Item>, actions: Vec<Item>) -> Report {
        Report {
            command: self.inner.command.clone(),
            unit: self.inner.unit.clone(),
            seen: self.inner.seen.load(Ordering::Relaxed),
            changed: self.inner.changed.load(Ordering::Relaxed),
            failed: self.failed(),
            seconds: self.inner.start.elapsed().as_secs_f64(),
            failures,
            actions,
        }
    }

    /// Stop the bar or ticker and return the report.
    pub fn finish(&self) -> Report {
        if let Some(t) = self.inner.ticker.lock().unwrap().take() {
            t.abort();
        }
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
        let failures = self.inner.failures.lock().unwrap().clone();
        let actions = self.inner.actions.lock().unwrap().clone();
        self.snapshot(failures, actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_and_formats() {
        let p = Progress::start("verify", "keys", Some(3));
        p.seen(3);
        p.changed(1);
        p.fail(Item::replica("missing", b"/k", "localhost:3001/sv02", "no file"));
        p.act(Item::file("deleted orphan", "http://localhost:3001/sv00/aa/bb/x", ""));
        let r = p.finish();
        assert_eq!((r.seen, r.changed, r.failed, r.ok()), (3, 1, 1, false));
        assert_eq!(r.failures[0].to_string(), "missing /k on localhost:3001/sv02: no file");
        assert_eq!(r.actions[0].to_string(), "deleted orphan on http://localhost:3001/sv00/aa/bb/x");
        assert!(r.summary().starts_with("verify: 3 keys seen, 1 changed, 1 failed, "), "{}", r.summary());
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["failures"][0]["volume"], "localhost:3001/sv02");
        assert!(json["actions"][0].get("key").is_none());
    }
}
