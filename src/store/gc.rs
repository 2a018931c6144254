//! The collector: deletes the files of replaced, deleted and abandoned values
//! once their deletion is due (`index::files`), and at start-up takes over
//! what the previous run left in flight.

use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::{now_secs, Store};
use crate::error::{Error, Result};
use crate::index::{Files, GcId, Recovered};
use crate::describe::meta_url;
use crate::volume::replica_url;

/// Deletions taken per round, and run at once.
const BATCH: usize = 256;
const CONCURRENCY: usize = 16;
/// A deletion that failed (a volume down) is tried again this much later.
const RETRY_AFTER: u64 = 30;

/// What became of one due deletion.
enum Outcome {
    Done,
    /// Come back at this time.
    Later(u64),
}

impl Store {
    /// Settle the previous run: writes it left in flight are abandoned (their
    /// files are due now); deletions it left waiting stay scheduled.
    pub async fn recover(&self) -> Result<Recovered> {
        let now = now_secs();
        self.index_write(move |ix| ix.recover(now)).await
    }

    /// One round: delete what is due, up to a batch. Returns how many
    /// deletions were settled (done or rescheduled).
    pub async fn collect_due(&self) -> Result<usize> {
        let now = now_secs();
        let index = self.index.clone();
        let due = tokio::task::spawn_blocking(move || index.gc_due(now, BATCH)).await.map_err(|e| crate::error::Error::Internal(e.to_string()))??;
        if due.is_empty() {
            return Ok(0);
        }
        let outcomes: Vec<(GcId, Outcome)> =
            stream::iter(due).map(|(id, files)| async move { (id, self.delete_files(&files, now).await) }).buffer_unordered(CONCURRENCY).collect().await;
        let n = outcomes.len();
        let mut done = Vec::new();
        let mut retry = Vec::new();
        for (id, outcome) in outcomes {
            match outcome {
                Outcome::Done => done.push(id),
                Outcome::Later(at) => retry.push((id, at)),
            }
        }
        self.index_write(move |ix| ix.gc_settle(&done, &retry)).await?;
        Ok(n)
    }

    /// Delete a file set, except the files the key's record names now (the
    /// original's path is shared by every native write of a key, and a
    /// rebalance may bring a generation back to a volume). Files at the
    /// original's path are deleted under the key's lock, so no native write
    /// of the key is between its record and its files; a generation's files
    /// are never written again, so they need no lock (a hung volume then
    /// holds up no writer of the key).
    async fn delete_files(&self, files: &Files, now: u64) -> Outcome {
        let _guard = match files.gen.is_empty() {
            true => match self.locks.try_lock(&files.key) {
                Some(guard) => Some(guard),
                None => return Outcome::Later(now + 1),
            },
            false => None,
        };
        let current = match self.record(&files.key) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("collector: {e}");
                return Outcome::Later(now + RETRY_AFTER);
            }
        };
        // Each value file, then its metadata file: a metadata file alone
        // describes nothing (`rebuild` reports it), a value alone would.
        let volumes = files.volumes.iter().filter(|v| !current.as_ref().is_some_and(|r| r.holds(v, &files.gen)));
        let urls = volumes.flat_map(|v| std::iter::once(replica_url(v, &files.key, &files.gen)).chain(meta_url(v, &files.key, &files.gen)));
        for url in urls {
            if let Err(e) = self.volumes.delete(&url).await {
                // A stalled volume was logged when it was marked (and will be
                // when it answers again): not once more per file and retry.
                match e {
                    Error::Stalled { .. } => tracing::debug!("collector: {e}; trying again in {RETRY_AFTER} s"),
                    _ => tracing::warn!("collector: {e}; trying again in {RETRY_AFTER} s"),
                }
                return Outcome::Later(now + RETRY_AFTER);
            }
        }
        Outcome::Done
    }
}

/// The one line that says what start-up recovery did.
pub fn recovery_line(r: &Recovered) -> String {
    match r {
        Recovered { interrupted: 0, pending: 0 } => "recovery: nothing was in flight".into(),
        r => format!("recovery: {} interrupted write(s) undone, {} file deletion(s) pending (theirs included), collecting", r.interrupted, r.pending),
    }
}

/// Delete due files for as long as the server runs.
pub async fn collect_forever(store: Store) {
    loop {
        match store.collect_due().await {
            Ok(n) if n >= BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!("collector: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
