//! The replicated store: placement + index + volumes. Native writes follow
//! the original's protocol (soft-deleted record, every replica, live record);
//! S3 writes go to files of a generation of their own and become the key's
//! value in one index transaction. Bodies stream to all replicas at once.

pub mod cache;
pub mod commit;
pub mod describe;
pub mod gc;
pub mod locks;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use rand::seq::SliceRandom;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::describe::meta_url;
use crate::error::{Error, Result};
use crate::index::{Deleted, Files, HeaderBytes, Index, ObjectMeta, Record, Write};
use crate::metrics::Metrics;
use crate::placement::{key2volume, needs_rebalance, new_generation};
use crate::volume::{next_within, replica_url, ChunkTx, VolumeClient, CHUNKS_IN_FLIGHT, WHOLE_BODY_MAX};
use cache::{Kept, ValueCache};
use commit::Committer;
pub use locks::{KeyGuard, KeyLocks};

#[derive(Clone)]
pub struct Store {
    pub index: Index,
    pub volumes: VolumeClient,
    pub locks: KeyLocks,
    pub config: Arc<Config>,
    /// The server's metrics (volume calls are counted in `volumes`).
    pub metrics: Arc<Metrics>,
    commits: Committer,
    /// Bytes of request bodies in memory (`--write-buffer-mib`), held by
    /// each chunk until every replica dropped it.
    body_memory: BodyMemory,
    /// Small S3 values in memory (`--cache-mib`).
    cache: Arc<ValueCache>,
}

/// Memory for request bodies on their way to the volumes
/// (`--write-buffer-mib`): one permit per byte.
#[derive(Clone)]
struct BodyMemory {
    permits: Arc<Semaphore>,
    total: u32,
}

impl BodyMemory {
    fn new(mib: u64) -> BodyMemory {
        let total = u32::try_from(mib << 20).unwrap_or(u32::MAX);
        BodyMemory { permits: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// The chunk, once the memory it takes is free: a copy-free view that
    /// gives the memory back when the last replica's PUT (or HTTP client
    /// queue) drops it. A chunk larger than all the memory waits for all.
    async fn take(&self, chunk: Bytes) -> Result<Bytes> {
        let want = u32::try_from(chunk.len()).unwrap_or(u32::MAX).min(self.total);
        let permit = self.permits.clone().acquire_many_owned(want).await.map_err(|_| Error::Internal("the write buffer is closed".into()))?;
        Ok(Bytes::from_owner(Budgeted { chunk, _permit: permit }))
    }
}

/// A body chunk and the memory it holds.
struct Budgeted {
    chunk: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.chunk
    }
}

/// What a finished write stored.
#[derive(Debug, Clone)]
pub struct Written {
    pub md5: [u8; 16],
    pub size: u64,
}

impl Written {
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

/// A value uploaded to files of its own generation, not yet the key's value.
/// Dropped without [`Store::commit_staged`], the write is abandoned: its
/// files are deleted by the collector.
pub struct Staged {
    pub key: Vec<u8>,
    pub targets: Vec<String>,
    pub written: Written,
    pending: PendingWrite,
    /// A copy of the value, if small enough for the cache.
    kept: Option<Bytes>,
}

/// A write recorded in the index as in progress; abandoned when dropped
/// unless it was committed.
struct PendingWrite {
    gen: String,
    commits: Option<Committer>,
}

impl PendingWrite {
    fn committed(mut self) {
        self.commits = None;
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if let Some(c) = self.commits.take() {
            c.write_detached(Write::Abandon(std::mem::take(&mut self.gen), now_secs()));
        }
    }
}

/// A key's move to the volumes placement chooses, its copies made: record
/// `both`, delete the `old` replicas, record `done`, each record replaced
/// only if it is still the one before.
pub struct Move {
    pub key: Vec<u8>,
    /// The record as read before copying.
    pub read: Record,
    /// The chosen volumes, then the old replicas still to delete.
    pub both: Record,
    pub done: Record,
    /// Recorded volumes that hold the key but are no longer chosen.
    pub old: Vec<String>,
}

/// A live key and a replica that answered for it.
pub struct Located {
    pub record: Record,
    pub url: String,
}

/// Aborts a spawned task when dropped, so a failed write stops its replica
/// uploads (nginx then discards the partial files).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    pub fn new(index: Index, config: Arc<Config>) -> Store {
        let metrics = Arc::new(Metrics::new(&config.volumes));
        let volumes = VolumeClient::new(config.voltimeout, config.io_timeout, metrics.clone());
        let commits = Committer::start(index.clone(), config.index_sync, metrics.clone());
        let body_memory = BodyMemory::new(config.write_buffer_mib);
        let cache = Arc::new(ValueCache::new(config.cache_mib << 20, config.cache_object_kib << 10));
        Store { index, volumes, locks: KeyLocks::default(), config, metrics, commits, body_memory, cache }
    }

    /// The same store with a volume client (connection pool) of its own,
    /// for one server worker.
    pub fn for_worker(&self) -> Store {
        Store { volumes: self.volumes.for_worker(), ..self.clone() }
    }

    /// Where placement puts a key now.
    pub fn placement(&self, key: &[u8]) -> Vec<String> {
        key2volume(key, &self.config.volumes, self.config.replicas as usize, self.config.subvolumes)
    }

    /// Run an index write on the blocking pool (LMDB commits fsync).
    pub async fn index_write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> Result<T, crate::index::IndexError> + Send + 'static,
    ) -> Result<T> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || f(&index)).await.map_err(|e| Error::Internal(e.to_string()))?.map_err(Error::from)
    }

    /// Record a key (and replace its metadata when given) through the
    /// group commit.
    pub async fn commit_put(&self, key: &[u8], rec: Record, meta: Option<ObjectMeta>) -> Result<()> {
        self.cache.forget(key);
        self.commits.write(Write::Put(key.to_vec(), rec, meta)).await
    }

    /// Remove a key's record and metadata through the group commit.
    pub async fn commit_delete(&self, key: &[u8]) -> Result<()> {
        self.cache.forget(key);
        self.commits.write(Write::Delete(key.to_vec())).await
    }

    /// When the files of a value replaced or deleted now are deleted.
    fn grace_due(&self) -> u64 {
        now_secs() + self.config.delete_grace.as_secs_f64().ceil() as u64
    }

    /// Make `rec` the key's value in one transaction; the files of the value
    /// it replaces are deleted after the grace period.
    async fn commit_switch(&self, key: &[u8], rec: Record, meta: Option<ObjectMeta>) -> Result<()> {
        self.cache.forget(key);
        self.commits.write(Write::Switch(key.to_vec(), rec, meta, self.grace_due())).await
    }

    /// Remove a key in one transaction (an S3 delete): readers see the whole
    /// value or nothing; its files are deleted after the grace period.
    pub async fn remove(&self, key: &[u8]) -> Result<()> {
        self.cache.forget(key);
        self.commits.write(Write::Remove(key.to_vec(), self.grace_due())).await
    }

    pub fn record(&self, key: &[u8]) -> Result<Option<Record>> {
        Ok(self.index.get(key)?)
    }

    /// Native PUT of a new key: 403 if live, 409 if locked, 411 if empty.
    pub async fn put_new<S, E>(&self, key: &[u8], len: Option<u64>, body: S) -> Result<Written>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if len == Some(0) {
            return Err(Error::EmptyBody);
        }
        if key.len() > self.index.max_key {
            return Err(Error::KeyTooLong);
        }
        let _guard = self.locks.try_lock(key).ok_or(Error::Locked)?;
        if self.record(key)?.is_some_and(|r| r.is_live()) {
            return Err(Error::Exists);
        }
        self.write_locked(key, len, body, Vec::new()).await
    }

    /// Write a value under a lock the caller holds: record it soft-deleted on
    /// its target volumes, stream it to all of them, then record it live with
    /// its hash and metadata. On any failure the record stays soft-deleted.
    pub async fn write_locked<S, E>(&self, key: &[u8], len: Option<u64>, mut body: S, headers: Vec<(String, HeaderBytes)>) -> Result<Written>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // An empty body (chunked, no length) must fail before anything is recorded.
        let first = self.next_chunk(&mut body).await?.ok_or(Error::EmptyBody)?;
        let targets = self.placement(key);
        let pending = Record { volumes: targets.clone(), deleted: Deleted::Soft, hash: String::new(), gen: String::new() };
        // A switch: files of a value this one replaces (an unlinked S3 value)
        // are not left behind.
        self.commit_switch(key, pending, None).await?;
        let urls: Vec<String> = targets.iter().map(|t| replica_url(t, key, "")).collect();
        let written = self.write_replicas(&urls, len, Some(first), body).await?;
        let (hash, etag) = if self.config.md5sum { (written.md5_hex(), None) } else { (String::new(), Some(written.md5_hex())) };
        let live = Record { volumes: targets, deleted: Deleted::No, hash, gen: String::new() };
        // Without --md5sum the record has no hash: S3 still needs an ETag.
        let meta = ObjectMeta { size: written.size, mtime: now_secs(), headers, etag, ..Default::default() };
        self.commit_put(key, live, Some(meta)).await?;
        Ok(written)
    }

    /// Stream `body` to every URL at once. Back-pressure: the slowest replica
    /// sets the pace; at most `CHUNKS_IN_FLIGHT` chunks wait per replica.
    /// The end of the body is held back until the body has ended cleanly, so a
    /// body that fails at its very end (short, bad checksum) never completes a
    /// file: its last byte when `len` is known, else its last chunk.
    pub async fn write_replicas<S, E>(&self, urls: &[String], len: Option<u64>, first: Option<Bytes>, mut body: S) -> Result<Written>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        for url in urls {
            self.volumes.ready_for_write(url).await?;
        }
        let mut senders = Vec::with_capacity(urls.len());
        let mut tasks = Vec::with_capacity(urls.len());
        for url in urls {
            let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
            senders.push(tx);
            let (vol, url) = (self.volumes.clone(), url.clone());
            tasks.push(AbortOnDrop(tokio::spawn(async move { vol.put_stream(url, len, rx).await })));
        }
        let result = self.pump(urls, &senders, len, first, &mut body).await;
        if result.is_err() {
            for tx in &senders {
                let _ = tx.try_send(Err(std::io::Error::other("write aborted")));
            }
            return result;
        }
        drop(senders);
        for (task, url) in tasks.iter_mut().zip(urls) {
            match tokio::time::timeout(self.volumes.io_timeout, &mut task.0).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(e)) => return Err(Error::volume(url, e)),
                Err(_) => return Err(self.volumes.stalled(url, "no answer within the I/O timeout")),
            }
        }
        result
    }

    /// The next non-empty chunk of a body, waiting at most the I/O timeout.
    async fn next_chunk<S, E>(&self, body: &mut S) -> Result<Option<Bytes>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        loop {
            match next_within(body, self.volumes.io_timeout).await.map_err(|_| Error::BodyTimeout)? {
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => return Ok(Some(chunk)),
                Some(Err(e)) => return Err(Error::Body(e.to_string())),
                None => return Ok(None),
            }
        }
    }

    async fn pump<S, E>(&self, urls: &[String], senders: &[ChunkTx], len: Option<u64>, first: Option<Bytes>, body: &mut S) -> Result<Written>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut md5 = Md5::new();
        let mut size = 0u64;
        let mut held: Option<Bytes> = None;
        let mut next = first;
        if next.is_none() {
            next = self.next_chunk(body).await?;
        }
        while let Some(mut chunk) = next {
            md5.update(&chunk);
            size += chunk.len() as u64;
            if let Some(prev) = held.take() {
                self.fan_out(urls, senders, prev).await?;
            }
            match len {
                // More follows: send it now, so an upload holds no chunk
                // (and the connection buffer it points into) while it waits.
                Some(len) if size < len => self.fan_out(urls, senders, chunk).await?,
                // It ends a body too large to be gathered whole
                // (`WHOLE_BODY_MAX`): all but its last byte now, that byte (a
                // copy, holding no buffer) once the body ended cleanly.
                Some(len) if size == len && len > WHOLE_BODY_MAX && chunk.len() > 1 => {
                    let last = Bytes::copy_from_slice(&chunk[chunk.len() - 1..]);
                    chunk.truncate(chunk.len() - 1);
                    self.fan_out(urls, senders, chunk).await?;
                    held = Some(last);
                }
                _ => held = Some(chunk),
            }
            next = self.next_chunk(body).await?;
        }
        // An empty body sends nothing: the volumes store an empty file.
        if let Some(last) = held {
            self.fan_out(urls, senders, last).await?;
        }
        Ok(Written { md5: md5.finalize().into(), size })
    }

    /// Send a chunk to every replica's PUT, once `--write-buffer-mib` has
    /// room for it. Only chunks queued for the volumes count: they drain
    /// whatever else waits for room, so waiting never holds room (a chunk
    /// held until the next one arrives, or a slow client's, does not).
    async fn fan_out(&self, urls: &[String], senders: &[ChunkTx], chunk: Bytes) -> Result<()> {
        let chunk = self.body_memory.take(chunk).await?;
        let sends = senders.iter().map(|tx| tokio::time::timeout(self.volumes.io_timeout, tx.send(Ok(chunk.clone()))));
        for (res, url) in futures::future::join_all(sends).await.into_iter().zip(urls) {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::volume(url, "volume closed the upload")),
                Err(_) => return Err(self.volumes.stalled(url, "upload stalled for longer than the I/O timeout")),
            }
        }
        Ok(())
    }

    /// Upload a value for `key` to new files (a generation of its own) on
    /// its target volumes, recorded as a write in progress first. Nothing is
    /// visible and no lock is held: concurrent uploads of one key proceed
    /// side by side, and `commit_staged` decides the winner.
    pub async fn stage<S, E>(&self, key: &[u8], len: Option<u64>, body: S) -> Result<Staged>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if key.len() > self.index.max_key {
            return Err(Error::KeyTooLong);
        }
        let targets = self.placement(key);
        let gen = new_generation();
        let files = Files { key: key.to_vec(), gen: gen.clone(), volumes: targets.clone() };
        self.commits.write(Write::Begin(files)).await?;
        let pending = PendingWrite { gen, commits: Some(self.commits.clone()) };
        let urls: Vec<String> = targets.iter().map(|t| replica_url(t, key, &pending.gen)).collect();
        let mut kept = Kept::up_to(self.cache.max_value(), len);
        let body = body.inspect(|chunk| {
            if let Ok(chunk) = chunk {
                kept.add(chunk);
            }
        });
        // On failure `pending` drops: the write is abandoned.
        let written = self.write_replicas(&urls, len, None, body).await?;
        Ok(Staged { key: key.to_vec(), targets, written, pending, kept: kept.into_bytes() })
    }

    /// Make a staged value the key's value: its metadata file goes beside
    /// each replica, then one index transaction replaces the record and
    /// metadata, and schedules the files of the value it replaces for
    /// deletion after the grace period. The caller holds the key's lock
    /// (commits of one key are serialized; the last one wins, and its
    /// metadata file says so with the latest `written_us`).
    pub async fn commit_staged(&self, staged: Staged, mut meta: ObjectMeta) -> Result<Written> {
        let Staged { key, targets, written, pending, kept } = staged;
        let md5 = written.md5_hex();
        let hash = if self.config.md5sum { md5.clone() } else { String::new() };
        let live = Record { volumes: targets, deleted: Deleted::No, hash, gen: pending.gen.clone() };
        let written_us = describe::now_us();
        meta.size = written.size;
        meta.mtime = written_us / 1_000_000;
        // On failure `pending` drops: the write (and its metadata files) is abandoned.
        self.describe_value(&key, &live, &md5, &meta, written_us).await?;
        self.commit_switch(&key, live, Some(meta)).await?;
        if let Some(value) = kept {
            self.cache.insert(&key, &pending.gen, value);
        }
        pending.committed();
        Ok(written)
    }

    /// Memory held by the small-value cache.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// A small S3 value whole (`--cache-mib`): from memory, or read from a
    /// replica and kept. `None` if the cache does not hold values like this
    /// one (a native value, a large one, the cache off); then stream it with
    /// [`Store::open_read`]. `NotFound` as there.
    pub async fn cached_value(&self, key: &[u8], record: &Record, size: u64) -> Result<Option<Bytes>> {
        if !self.cache.holds(record, size) {
            return Ok(None);
        }
        if let Some(value) = self.cache.get(key, &record.gen) {
            self.metrics.value_cache_lookup(true);
            return Ok(Some(value));
        }
        let resp = self.open_read(key, record, None).await?;
        let url = resp.url().to_string();
        let value = self.volumes.body(&url, resp).await?;
        if value.len() as u64 != size {
            return Err(Error::volume(&url, format!("{} bytes where the index records {size}", value.len())));
        }
        self.cache.insert(key, &record.gen, value.clone());
        self.metrics.value_cache_lookup(false);
        Ok(Some(value))
    }

    /// Open a GET of a record's value on the first replica that serves it
    /// (random order), so one dead volume costs a retry, not a failure.
    /// `NotFound` only if every replica answered that it has no such file
    /// (the value was replaced or deleted since the record was read).
    pub async fn open_read(&self, key: &[u8], record: &Record, range: Option<&str>) -> Result<reqwest::Response> {
        let mut last = Error::NoReplica;
        let mut missing = 0;
        let urls = self.replica_urls_shuffled(key, record);
        for url in &urls {
            match self.volumes.get(url, range).await {
                Ok(resp) => return Ok(resp),
                Err(Error::NotFound) => missing += 1,
                Err(e) => last = e,
            }
        }
        Err(if missing == urls.len() && missing > 0 { Error::NotFound } else { last })
    }

    /// A live key and the first of its replicas (random order) that answers a
    /// HEAD within the volume timeout.
    /// If none does and the record changed meanwhile (the value was
    /// replaced and its files collected), it starts over with the new one.
    pub async fn locate(&self, key: &[u8]) -> Result<Located> {
        let mut record = self.record(key)?.filter(Record::is_live).ok_or(Error::NotFound)?;
        for _ in 0..3 {
            if let Some(url) = self.first_live_replica(key, &record).await {
                return Ok(Located { record, url });
            }
            match self.record(key)?.filter(Record::is_live) {
                Some(now) if now != record => record = now,
                _ => break,
            }
        }
        Err(Error::NoReplica)
    }

    /// Replica URLs of a record in random order (spreads reads).
    pub fn replica_urls_shuffled(&self, key: &[u8], record: &Record) -> Vec<String> {
        let mut urls: Vec<String> = record.volumes.iter().map(|v| replica_url(v, key, &record.gen)).collect();
        urls.shuffle(&mut rand::rng());
        // A volume that stalled a request is tried last.
        urls.sort_by_key(|u| self.volumes.try_last(u));
        urls
    }

    async fn first_live_replica(&self, key: &[u8], record: &Record) -> Option<String> {
        for url in self.replica_urls_shuffled(key, record) {
            if self.volumes.exists(&url).await {
                return Some(url);
            }
        }
        None
    }

    pub fn is_balanced(&self, key: &[u8], record: &Record) -> bool {
        !needs_rebalance(&record.volumes, &self.placement(key))
    }

    /// DELETE (remove replicas and record) or UNLINK (mark deleted, keep data).
    pub async fn delete(&self, key: &[u8], unlink: bool) -> Result<()> {
        let _guard = self.locks.try_lock(key).ok_or(Error::Locked)?;
        self.delete_locked(key, unlink, self.config.protect).await
    }

    pub async fn delete_locked(&self, key: &[u8], unlink: bool, protect: bool) -> Result<()> {
        let rec = self.record(key)?.ok_or(Error::NotFound)?;
        if unlink && !rec.is_live() {
            return Err(Error::NotFound);
        }
        if !unlink && protect && rec.is_live() {
            return Err(Error::Protected);
        }
        let soft = Record { deleted: Deleted::Soft, ..rec.clone() };
        if unlink {
            let meta = ObjectMeta { unlinked: Some(now_secs()), ..self.index.get_meta(key)?.unwrap_or_default() };
            return self.commit_put(key, soft, Some(meta)).await;
        }
        let urls: Vec<String> = rec.volumes.iter().map(|v| replica_url(v, key, &rec.gen)).collect();
        // A volume known to be stalled fails the DELETE before anything
        // changes: the key stays as it was, not hidden by a soft delete.
        for url in &urls {
            self.volumes.ready_for_write(url).await?;
        }
        self.commit_put(key, soft, None).await?;
        let deletes = urls.iter().map(|url| async move { self.volumes.delete(url).await });
        for res in futures::future::join_all(deletes).await {
            // The record stays soft-deleted: a retry can finish the job.
            res?;
        }
        self.commit_delete(key).await
    }

    /// Move one key's replicas to where placement puts them now: copy to each
    /// new target from a replica that has it, record the new volumes, then
    /// remove the copies no longer wanted. Safe to repeat.
    pub async fn rebalance(&self, key: &[u8]) -> Result<bool> {
        let _guard = self.locks.try_lock(key).ok_or(Error::Locked)?;
        self.rebalance_locked(key).await
    }

    /// Returns whether anything moved. Only files on recorded volumes are
    /// trusted (a file elsewhere may be a stale leftover). The copies are
    /// recorded next to the old replicas before those are deleted, so a crash
    /// at any step leaves every file listed and a rerun finishes the job. The
    /// record is only replaced if unchanged since read: an admin process,
    /// which does not share our key locks, never undoes a concurrent write.
    pub async fn rebalance_locked(&self, key: &[u8]) -> Result<bool> {
        let Some(m) = self.prepare_rebalance(key).await? else { return Ok(false) };
        self.replace_record(key, &m.read, &m.both).await?;
        self.delete_old_replicas(&m).await?;
        self.replace_record(key, &m.both, &m.done).await?;
        Ok(true)
    }

    /// The copying half of `rebalance_locked`: probe the recorded replicas
    /// and copy the value to each chosen volume that lacks it. `None` if the
    /// key is already where placement wants it. The caller finishes the
    /// `Move` (admin rebalance batches many moves per transaction).
    pub async fn prepare_rebalance(&self, key: &[u8]) -> Result<Option<Move>> {
        let read = self.record(key)?.filter(Record::is_live).ok_or(Error::NotFound)?;
        let wanted = self.placement(key);
        let gen = &read.gen;
        let heads = read.volumes.iter().map(|v| async move { (v, self.volumes.head(&replica_url(v, key, gen)).await) });
        let mut have: Vec<String> = Vec::new();
        for (v, found) in futures::future::join_all(heads).await {
            if found?.is_some() && !have.contains(v) {
                have.push(v.clone());
            }
        }
        let source = have.first().map(|v| replica_url(v, key, &read.gen)).ok_or(Error::NoReplica)?;
        let missing: Vec<&String> = wanted.iter().filter(|w| !have.contains(w)).collect();
        if read.volumes == wanted && missing.is_empty() {
            return Ok(None);
        }
        let source_meta = have.first().and_then(|v| meta_url(v, key, &read.gen));
        for w in missing {
            // The metadata file first: a value file never lands undescribed.
            if let (Some(from), Some(to)) = (&source_meta, meta_url(w, key, &read.gen)) {
                match self.volumes.copy(from, &to).await {
                    // A value written before metadata files: `verify` says so.
                    Err(Error::NotFound) => {}
                    other => {
                        other?;
                    }
                }
            }
            self.volumes.copy(&source, &replica_url(w, key, &read.gen)).await?;
        }
        let old: Vec<String> = have.iter().filter(|v| !wanted.contains(v)).cloned().collect();
        let both = Record { volumes: wanted.iter().chain(&old).cloned().collect(), ..read.clone() };
        let done = Record { volumes: wanted, ..read.clone() };
        Ok(Some(Move { key: key.to_vec(), read, both, done, old }))
    }

    /// Delete a move's old replicas, once `both` is recorded.
    pub async fn delete_old_replicas(&self, m: &Move) -> Result<()> {
        for v in &m.old {
            self.volumes.delete(&replica_url(v, &m.key, &m.read.gen)).await?;
            // After the value: a metadata file alone describes nothing.
            if let Some(url) = meta_url(v, &m.key, &m.read.gen) {
                self.volumes.delete(&url).await?;
            }
        }
        Ok(())
    }

    /// Swap a key's record for another if nobody changed it meanwhile;
    /// `Locked` if someone did.
    async fn replace_record(&self, key: &[u8], from: &Record, to: &Record) -> Result<()> {
        if from == to {
            return Ok(());
        }
        let (k, from, to) = (key.to_vec(), from.clone(), to.clone());
        if self.index_write(move |ix| ix.put_if(&k, &from, &to, None)).await? {
            Ok(())
        } else {
            Err(Error::Locked)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn body_memory_waits_until_every_holder_of_a_chunk_dropped_it() {
        let memory = BodyMemory::new(1);
        let a = memory.take(Bytes::from(vec![1u8; 700 << 10])).await.unwrap();
        assert_eq!(&a[..3], &[1, 1, 1]);
        let replica = a.clone();
        // 700 KiB taken of 1 MiB: 400 KiB more must wait.
        let second = memory.take(Bytes::from(vec![2u8; 400 << 10]));
        tokio::pin!(second);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut second).await.is_err());
        drop(a);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut second).await.is_err(), "a replica still holds it");
        drop(replica);
        let b = tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap();
        assert_eq!(b.len(), 400 << 10);
        // Larger than all the memory: takes all of it, once free.
        drop(b);
        let huge = memory.take(Bytes::from(vec![3u8; 2 << 20])).await.unwrap();
        assert_eq!(huge.len(), 2 << 20);
    }
}
