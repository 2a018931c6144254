//! Group commit: index writes of concurrent requests share one LMDB write
//! transaction, so one commit (one fsync) covers all of them. A caller is
//! answered only once the commit holding its write is durable as
//! `--index-sync` defines it: fsynced (`commit`), or written to the OS and
//! fsynced within the period. Writes run on a thread of their own, never on
//! the async runtime.

use std::sync::{mpsc, Arc};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::config::IndexSync;
use crate::error::{Error, Result};
use crate::index::{Index, IndexError, Write};
use crate::metrics::Metrics;

/// Most writes in one transaction (bounds how long the write lock is held).
const MAX_BATCH: usize = 256;

type Job = (Write, oneshot::Sender<std::result::Result<(), IndexError>>);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl Committer {
    /// Start the committing thread; it ends when the last clone is dropped.
    /// With `IndexSync::Every(p)` (an index opened without synced commits)
    /// it also fsyncs the index every `p`, and once more at its end.
    pub fn start(index: Index, sync: IndexSync, metrics: Arc<Metrics>) -> Committer {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mkv-index-commit".into())
            .spawn(move || match sync {
                IndexSync::Commit => {
                    while let Ok(first) = rx.recv() {
                        commit_batch(&index, first, &rx, &metrics);
                    }
                }
                IndexSync::Every(period) => {
                    let mut synced = Instant::now();
                    loop {
                        match rx.recv_timeout(period.saturating_sub(synced.elapsed())) {
                            Ok(first) => commit_batch(&index, first, &rx, &metrics),
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                        if synced.elapsed() >= period {
                            sync_now(&index, &metrics);
                            synced = Instant::now();
                        }
                    }
                    sync_now(&index, &metrics);
                }
            })
            .expect("start the index commit thread");
        Committer { tx }
    }

    /// Queue a write without waiting for it (from `Drop`, where nothing can
    /// be awaited). Writes are applied in the order queued.
    pub fn write_detached(&self, w: Write) {
        let (reply, _) = oneshot::channel();
        let _ = self.tx.send((w, reply));
    }

    pub async fn write(&self, w: Write) -> Result<()> {
        let stopped = || Error::Internal("the index commit thread stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((w, reply)).map_err(|_| stopped())?;
        Ok(answer.await.map_err(|_| stopped())??)
    }
}

/// `first` and whatever else is queued (up to `MAX_BATCH`) in one commit.
fn commit_batch(index: &Index, first: Job, rx: &mpsc::Receiver<Job>, metrics: &Metrics) {
    let mut jobs = vec![first];
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    let (writes, replies): (Vec<Write>, Vec<_>) = jobs.into_iter().unzip();
    let start = Instant::now();
    if index.apply(&writes).is_ok() {
        metrics.index_commit(writes.len(), start.elapsed());
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
        return;
    }
    // One bad write must not fail the others: each alone.
    for (w, reply) in writes.into_iter().zip(replies) {
        let _ = reply.send(index.apply(std::slice::from_ref(&w)));
    }
}

fn sync_now(index: &Index, metrics: &Metrics) {
    if let Err(e) = index.sync() {
        metrics.index_sync_failed();
        tracing::error!("index fsync failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Deleted, Record};

    #[tokio::test]
    async fn concurrent_writes_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), 1 << 26).unwrap();
        let metrics = Arc::new(Metrics::new(&[]));
        let c = Committer::start(index.clone(), IndexSync::Commit, metrics.clone());
        let rec = Record { volumes: vec!["v".into()], deleted: Deleted::No, hash: String::new(), gen: String::new() };
        let writes = (0..100u32).map(|i| c.write(Write::Put(format!("/k{i}").into_bytes(), rec.clone(), None)));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert_eq!(index.len().unwrap(), 100);
        let text = metrics.render(&Default::default());
        assert!(text.contains("mkv_index_commit_writes_total 100"), "{text}");
        let commits: u64 = text.lines().find_map(|l| l.strip_prefix("mkv_index_commits_total ")).unwrap().parse().unwrap();
        assert!((1..=100).contains(&commits));
        assert!(text.contains(&format!("mkv_index_commit_duration_seconds_count {commits}")));
        c.write(Write::Delete(b"/k7".to_vec())).await.unwrap();
        assert_eq!(index.get(b"/k7").unwrap(), None);
        // A key LMDB refuses fails alone.
        let long = vec![b'x'; index.max_key + 1];
        let (bad, good) = tokio::join!(c.write(Write::Put(long, rec.clone(), None)), c.write(Write::Put(b"/ok".to_vec(), rec.clone(), None)));
        assert!(bad.is_err());
        good.unwrap();
        assert!(index.get(b"/ok").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_periodically_synced_index_takes_writes_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open_with(dir.path(), 1 << 26, false).unwrap();
        let c = Committer::start(index.clone(), IndexSync::Every(std::time::Duration::from_millis(20)), Arc::new(Metrics::new(&[])));
        let rec = Record { volumes: vec!["v".into()], deleted: Deleted::No, hash: String::new(), gen: String::new() };
        for i in 0..5u32 {
            c.write(Write::Put(format!("/k{i}").into_bytes(), rec.clone(), None)).await.unwrap();
            // Across several sync periods: the thread keeps committing between them.
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        assert_eq!(index.len().unwrap(), 5);
        index.sync().unwrap();
    }
}
