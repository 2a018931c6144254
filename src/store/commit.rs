//! Group commit: index writes of concurrent requests share one LMDB write
//! transaction, so one commit (one fsync) covers all of them. A caller is
//! answered only once the commit holding its write is durable, as with a
//! transaction of its own. Writes run on a thread of their own, never on
//! the async runtime.

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::index::{Index, IndexError, Write};

/// Most writes in one transaction (bounds how long the write lock is held).
const MAX_BATCH: usize = 256;

type Job = (Write, oneshot::Sender<std::result::Result<(), IndexError>>);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Committer {
    /// Start the committing thread; it ends when the last clone is dropped.
    pub fn start(index: Index) -> Committer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("mkv-index-commit".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let (writes, replies): (Vec<Write>, Vec<_>) = jobs.into_iter().unzip();
                    if index.apply(&writes).is_ok() {
                        for reply in replies {
                            let _ = reply.send(Ok(()));
                        }
                        continue;
                    }
                    // One bad write must not fail the others: each alone.
                    for (w, reply) in writes.into_iter().zip(replies) {
                        let _ = reply.send(index.apply(std::slice::from_ref(&w)));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Deleted, Record};

    #[tokio::test]
    async fn concurrent_writes_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), 1 << 26).unwrap();
        let c = Committer::start(index.clone());
        let rec = Record { volumes: vec!["v".into()], deleted: Deleted::No, hash: String::new(), gen: String::new() };
        let writes = (0..100u32).map(|i| c.write(Write::Put(format!("/k{i}").into_bytes(), rec.clone(), None)));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert_eq!(index.len().unwrap(), 100);
        c.write(Write::Delete(b"/k7".to_vec())).await.unwrap();
        assert_eq!(index.get(b"/k7").unwrap(), None);
        // A key LMDB refuses fails alone.
        let long = vec![b'x'; index.max_key + 1];
        let (bad, good) = tokio::join!(c.write(Write::Put(long, rec.clone(), None)), c.write(Write::Put(b"/ok".to_vec(), rec.clone(), None)));
        assert!(bad.is_err());
        good.unwrap();
        assert!(index.get(b"/ok").unwrap().is_some());
    }
}
