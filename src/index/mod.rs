//! The index: one LMDB environment holding the native key records (format in
//! `record`), per-object metadata, and the S3 side tables. All calls are
//! synchronous; async callers run writes on the blocking pool.

pub mod credentials;
pub mod files;
pub mod headers;
pub mod record;
pub mod uploads;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions};
use serde::{Deserialize, Serialize};

pub use credentials::KeyInfo;
pub use files::{Files, GcId, Recovered};
pub use headers::HeaderBytes;
pub use record::{Deleted, Record};

/// What we know of an object beyond its native record. Written with the
/// record when a value goes live; absent for keys recovered by a rebuild from
/// volumes that did not tell us more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Seconds since the epoch when the value went live.
    pub mtime: u64,
    /// Stored response headers (Content-Type, Cache-Control, x-amz-meta-*…),
    /// names lowercase, values as the bytes received, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, HeaderBytes)>,
    /// S3 ETag without quotes when it is not the record's MD5 (multipart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Flexible checksum given at upload: algorithm (`CRC32`…), base64 value,
    /// type (`FULL_OBJECT` or `COMPOSITE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<(String, String, String)>,
    /// Part sizes of an object completed from a multipart upload, in order
    /// (GET/HEAD with `partNumber` answer one part's range).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
    /// Each part's own checksum (base64, the object's algorithm), in order,
    /// when the upload had one: GET/HEAD of a part answer it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_checksums: Vec<String>,
    /// Seconds since the epoch when the key was UNLINKed: a record that is
    /// not live without this is a write or delete cut before it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlinked: Option<u64>,
    /// S3 object tags (key, value), in the order given (`s3::tagging`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

/// An S3 bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Seconds since the epoch.
    pub created: u64,
    /// Access key id that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What each access key (made by `mkv key`) may do here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, Grant>,
    /// The bucket policy, as put (JSON text, validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// CORS rules (PutBucketCors), in order; none: CORS is off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// Bucket tags (PutBucketTagging), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,    /// `Suspended` once PutBucketVersioning said so (objects keep one
    /// version, `null`, either way: versioning is never enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
}

/// One `<CORSRule>` (the matching is `s3::cors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
}

/// One key's permissions on a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// GET, HEAD, listings, copy from.
    #[serde(default)]
    pub read: bool,
    /// PUT, DELETE, multipart.
    #[serde(default)]
    pub write: bool,
    /// Bucket configuration (policy) and DeleteBucket.
    #[serde(default)]
    pub owner: bool,
}

/// What [`Index::delete_bucket_if_empty`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum BucketDelete {
    /// A live object remains: nothing changed.
    NotEmpty,
    /// Deleted; these uploads (object key, upload id) were in progress in it.
    Deleted { uploads: Vec<(Vec<u8>, String)> },
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("index: corrupt metadata for a key: {0}")]
    Meta(#[from] serde_json::Error),
    #[error("index: cannot create {0}: {1}")]
    Create(String, std::io::Error),
    #[error("index: copy to {0}: {1}")]
    Copy(String, std::io::Error),
}

#[derive(Clone)]
pub struct Index {
    env: Env,
    /// Longest key LMDB takes (built with `longer-keys`: about 2 KiB).
    pub max_key: usize,
    keys: Database<Bytes, Bytes>,
    meta: Database<Bytes, Bytes>,
    buckets: Database<Bytes, Bytes>,
    /// Multipart uploads, their parts, recent completions (`uploads` module).
    uploads: Database<Bytes, Bytes>,
    parts: Database<Bytes, Bytes>,
    completed: Database<Bytes, Bytes>,
    /// Writes in progress and files due for deletion (`files` module).
    writes: Database<Bytes, Bytes>,
    gc: Database<Bytes, Bytes>,
    /// S3 access keys (`credentials` module).
    s3keys: Database<Bytes, Bytes>,
}

/// What [`Index::stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// Key records, live and soft-deleted.
    pub keys: u64,
    pub buckets: u64,
    /// Multipart uploads in progress.
    pub uploads: u64,
    pub pending_deletions: u64,
    pub writes_in_progress: u64,
    /// Pages of the map in use, in bytes.
    pub used_bytes: u64,
    pub map_size: u64,
    pub file_bytes: u64,
}

/// One write of [`Index::apply`].
#[derive(Debug, Clone)]
pub enum Write {
    /// As `put` (meta replaced when given): the native protocol's steps.
    Put(Vec<u8>, Record, Option<ObjectMeta>),
    /// As `delete`.
    Delete(Vec<u8>),
    /// A write to new files is about to start.
    Begin(Files),
    /// Make a record (and meta) the key's value; the files of the value it
    /// replaces are deleted at the due time (seconds).
    Switch(Vec<u8>, Record, Option<ObjectMeta>, u64),
    /// Remove a key; its files are deleted at the due time.
    Remove(Vec<u8>, u64),
    /// The write of this generation failed; its files are deleted at the
    /// due time.
    Abandon(String, u64),
}

/// What a scan callback wants next.
pub enum Scan {
    Continue,
    Stop,
    /// Jump to the first key >= this one (skips a whole range in one seek).
    SeekTo(Vec<u8>),
}

impl Index {
    /// Open (or create) with every commit fsynced before it returns.
    pub fn open(path: &Path, map_size: usize) -> Result<Index, IndexError> {
        Index::open_with(path, map_size, true)
    }

    /// `sync_commits: false`: commits return once written to the OS (they
    /// survive a crash of the process, not a power loss) until [`Index::sync`].
    pub fn open_with(path: &Path, map_size: usize, sync_commits: bool) -> Result<Index, IndexError> {
        // The index holds S3 metadata (and, later, keys): private to its owner.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(path)
            .map_err(|e| IndexError::Create(path.display().to_string(), e))?;
        // SAFETY: the environment is opened once per process; LMDB's own lock
        // file makes concurrent use by other processes (admin commands) safe.
        let mut options = EnvOpenOptions::new();
        options.map_size(map_size).max_dbs(16);
        if !sync_commits {
            // SAFETY: a flag of this process's handle only; the caller calls
            // `sync` for durability.
            unsafe { options.flags(heed::EnvFlags::NO_SYNC) };
        }
        let env = unsafe { options.open(path)? };
        let mut wtxn = env.write_txn()?;
        let keys = env.create_database(&mut wtxn, Some("keys"))?;
        let meta = env.create_database(&mut wtxn, Some("meta"))?;
        let buckets = env.create_database(&mut wtxn, Some("buckets"))?;
        let uploads = env.create_database(&mut wtxn, Some("uploads"))?;
        let parts = env.create_database(&mut wtxn, Some("parts"))?;
        let completed = env.create_database(&mut wtxn, Some("completed"))?;
        let writes = env.create_database(&mut wtxn, Some("writes"))?;
        let gc = env.create_database(&mut wtxn, Some("gc"))?;
        let s3keys = env.create_database(&mut wtxn, Some("s3keys"))?;
        wtxn.commit()?;
        let max_key = env.max_key_size();
        Ok(Index { env, max_key, keys, meta, buckets, uploads, parts, completed, writes, gc, s3keys })
    }

    /// fsync what commits wrote (needed only when opened without
    /// `sync_commits`).
    pub fn sync(&self) -> Result<(), IndexError> {
        Ok(self.env.force_sync()?)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Record>, IndexError> {
        if key.len() > self.max_key {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        Ok(self.keys.get(&rtxn, key)?.map(Record::decode))
    }

    pub fn get_meta(&self, key: &[u8]) -> Result<Option<ObjectMeta>, IndexError> {
        let rtxn = self.env.read_txn()?;
        match self.meta.get(&rtxn, key)? {
            Some(raw) => Ok(Some(serde_json::from_slice(raw)?)),
            None => Ok(None),
        }
    }

    /// One read transaction: what is read through it is one state of the
    /// index, whatever commits meanwhile.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, IndexError> {
        Ok(Snapshot { index: self, rtxn: self.env.read_txn()? })
    }

    /// Record and metadata together, from one snapshot.
    pub fn get_with_meta(&self, key: &[u8]) -> Result<Option<(Record, Option<ObjectMeta>)>, IndexError> {
        if key.len() > self.max_key {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        let Some(raw) = self.keys.get(&rtxn, key)? else { return Ok(None) };
        let meta = match self.meta.get(&rtxn, key)? {
            Some(m) => Some(serde_json::from_slice(m)?),
            None => None,
        };
        Ok(Some((Record::decode(raw), meta)))
    }

    /// Write a record; `meta` replaces the stored metadata when given.
    pub fn put(&self, key: &[u8], rec: &Record, meta: Option<&ObjectMeta>) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        self.keys.put(&mut wtxn, key, rec.encode().as_bytes())?;
        if let Some(m) = meta {
            self.meta.put(&mut wtxn, key, &serde_json::to_vec(m)?)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Apply writes in order in one transaction: one commit (one fsync) for
    /// all of them. The store's group commit batches concurrent writes here.
    pub fn apply(&self, writes: &[Write]) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        for w in writes {
            match w {
                Write::Put(key, rec, meta) => {
                    self.keys.put(&mut wtxn, key, rec.encode().as_bytes())?;
                    if let Some(m) = meta {
                        self.meta.put(&mut wtxn, key, &serde_json::to_vec(m)?)?;
                    }
                }
                Write::Delete(key) => {
                    self.keys.delete(&mut wtxn, key)?;
                    self.meta.delete(&mut wtxn, key)?;
                }
                Write::Begin(files) => self.begin_write(&mut wtxn, files)?,
                Write::Switch(key, rec, meta, due) => self.switch(&mut wtxn, key, rec, meta.as_ref(), *due)?,
                Write::Remove(key, due) => self.remove(&mut wtxn, key, *due)?,
                Write::Abandon(gen, due) => self.abandon_write(&mut wtxn, gen, *due)?,
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Write many records in one transaction (rebuild, bulk loads).
    pub fn put_many<'a>(&self, records: impl IntoIterator<Item = (&'a [u8], &'a Record)>) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        for (key, rec) in records {
            self.keys.put(&mut wtxn, key, rec.encode().as_bytes())?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Write `rec` (and `meta` when given) only if the key's record is still
    /// `expected`, compared in the write transaction. Processes sharing the
    /// environment without the server's key locks (admin commands) use it so
    /// they never undo a write or delete that happened in between.
    pub fn put_if(&self, key: &[u8], expected: &Record, rec: &Record, meta: Option<&ObjectMeta>) -> Result<bool, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        if self.keys.get(&wtxn, key)? != Some(expected.encode().as_bytes()) {
            return Ok(false);
        }
        self.keys.put(&mut wtxn, key, rec.encode().as_bytes())?;
        if let Some(m) = meta {
            self.meta.put(&mut wtxn, key, &serde_json::to_vec(m)?)?;
        }
        wtxn.commit()?;
        Ok(true)
    }

    /// Read-modify-write many keys in one transaction (rebuild merges the
    /// replicas it finds). `f` gets an item and the key's current record and
    /// metadata, and returns what to store, or `None` to leave the key as is;
    /// returned metadata replaces the stored one when given.
    pub fn update_many<T>(
        &self,
        items: impl IntoIterator<Item = (Vec<u8>, T)>,
        mut f: impl FnMut(&[u8], T, Option<Record>, Option<ObjectMeta>) -> Option<(Record, Option<ObjectMeta>)>,
    ) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        for (key, item) in items {
            let rec = self.keys.get(&wtxn, &key)?.map(Record::decode);
            let meta = match self.meta.get(&wtxn, &key)? {
                Some(m) => Some(serde_json::from_slice(m)?),
                None => None,
            };
            if let Some((rec, meta)) = f(&key, item, rec, meta) {
                self.keys.put(&mut wtxn, &key, rec.encode().as_bytes())?;
                if let Some(m) = meta {
                    self.meta.put(&mut wtxn, &key, &serde_json::to_vec(&m)?)?;
                }
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Number of key records (live and soft-deleted).
    pub fn len(&self) -> Result<u64, IndexError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.keys.len(&rtxn)?)
    }

    pub fn is_empty(&self) -> Result<bool, IndexError> {
        Ok(self.len()? == 0)
    }

    /// Figures for monitoring, from LMDB's own counters (no scan).
    pub fn stats(&self) -> Result<IndexStats, IndexError> {
        let (pending_deletions, writes_in_progress) = self.tracked_counts()?;
        let rtxn = self.env.read_txn()?;
        let (info, page) = (self.env.info(), self.env.stat().page_size as u64);
        Ok(IndexStats {
            keys: self.keys.len(&rtxn)?,
            buckets: self.buckets.len(&rtxn)?,
            uploads: self.uploads.len(&rtxn)?,
            pending_deletions,
            writes_in_progress,
            used_bytes: (info.last_page_number as u64 + 1) * page,
            map_size: info.map_size as u64,
            file_bytes: self.env.real_disk_size()?,
        })
    }

    /// A consistent copy of the whole environment as of one read transaction
    /// (writers go on meanwhile), compacted (free pages left out), written to
    /// `dir/data.mdb` and synced. `dir` is created private like the index;
    /// an existing `data.mdb` there is never overwritten. Returns its size.
    pub fn copy_to(&self, dir: &Path) -> Result<u64, IndexError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(|e| IndexError::Create(dir.display().to_string(), e))?;
        let path = dir.join("data.mdb");
        let copy_err = |e: std::io::Error| IndexError::Copy(path.display().to_string(), e);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| IndexError::Create(path.display().to_string(), e))?;
        let copied = match self.env.copy_to_file(&mut file, heed::CompactionOption::Enabled) {
            Ok(()) => file.sync_all().and_then(|()| file.metadata()).map(|m| m.len()).map_err(copy_err),
            Err(e) => Err(e.into()),
        };
        if copied.is_err() {
            // A partial copy must not pass for a backup.
            let _ = std::fs::remove_file(&path);
        }
        // The new entry must survive a crash too.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(copy_err)?;
        copied
    }

    /// Remove a key's record and metadata (a hard delete).
    pub fn delete(&self, key: &[u8]) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        self.keys.delete(&mut wtxn, key)?;
        self.meta.delete(&mut wtxn, key)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Empty the key and metadata tables (rebuild starts from nothing).
    pub fn clear(&self) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        self.keys.clear(&mut wtxn)?;
        self.meta.clear(&mut wtxn)?;
        wtxn.commit()?;
        Ok(())
    }

    pub fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, IndexError> {
        let rtxn = self.env.read_txn()?;
        match self.buckets.get(&rtxn, name.as_bytes())? {
            Some(raw) => Ok(Some(serde_json::from_slice(raw)?)),
            None => Ok(None),
        }
    }

    /// Create a bucket; false if it existed.
    pub fn create_bucket(&self, name: &str, info: &BucketInfo) -> Result<bool, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        if self.buckets.get(&wtxn, name.as_bytes())?.is_some() {
            return Ok(false);
        }
        self.buckets.put(&mut wtxn, name.as_bytes(), &serde_json::to_vec(info)?)?;
        wtxn.commit()?;
        Ok(true)
    }

    /// Delete a bucket unless a live key lies under `/<name>/`, checked in
    /// the same transaction as the delete. The multipart uploads in progress
    /// in it are returned for the caller to abort (none can start once the
    /// bucket is gone).
    pub fn delete_bucket_if_empty(&self, name: &str) -> Result<BucketDelete, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        let prefix = format!("/{name}/");
        for item in self.keys.prefix_iter(&wtxn, prefix.as_bytes())? {
            if Record::decode(item?.1).is_live() {
                return Ok(BucketDelete::NotEmpty);
            }
        }
        let uploads = self.upload_ids(&wtxn, prefix.as_bytes())?;
        self.buckets.delete(&mut wtxn, name.as_bytes())?;
        wtxn.commit()?;
        Ok(BucketDelete::Deleted { uploads })
    }

    /// Change a bucket in one transaction: `f` gets its info and returns
    /// whether to store it. `None` if the bucket does not exist.
    pub fn update_bucket<T>(&self, name: &str, f: impl FnOnce(&mut BucketInfo) -> (bool, T)) -> Result<Option<T>, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        let Some(raw) = self.buckets.get(&wtxn, name.as_bytes())? else { return Ok(None) };
        let mut info: BucketInfo = serde_json::from_slice(raw)?;
        let (store, out) = f(&mut info);
        if store {
            self.buckets.put(&mut wtxn, name.as_bytes(), &serde_json::to_vec(&info)?)?;
            wtxn.commit()?;
        }
        Ok(Some(out))
    }

    /// Live objects under `/<name>/` and their bytes (one scan: for admins).
    pub fn bucket_usage(&self, name: &str) -> Result<(u64, u64), IndexError> {
        let rtxn = self.env.read_txn()?;
        let (mut count, mut bytes) = (0, 0);
        for item in self.keys.prefix_iter(&rtxn, format!("/{name}/").as_bytes())? {
            let (key, rec) = item?;
            if Record::decode(rec).is_live() {
                count += 1;
                if let Some(m) = self.meta.get(&rtxn, key)? {
                    bytes += serde_json::from_slice::<ObjectMeta>(m)?.size;
                }
            }
        }
        Ok((count, bytes))
    }

    pub fn buckets(&self) -> Result<Vec<(String, BucketInfo)>, IndexError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.buckets.iter(&rtxn)? {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(k).into_owned(), serde_json::from_slice(v)?));
        }
        Ok(out)
    }

    /// Visit keys with `prefix`, in byte order, from `start` (or the prefix).
    /// One read transaction: the callback must be quick and must not block.
    pub fn scan(&self, prefix: &[u8], start: Option<&[u8]>, f: impl FnMut(&[u8], Record) -> Scan) -> Result<(), IndexError> {
        self.snapshot()?.scan(prefix, start, f)
    }

    /// The range scan under every listing: keys of `db` with `prefix`, from
    /// the first key >= `start` (or the prefix), in one read transaction,
    /// where the callback may jump ahead (`Scan::SeekTo`) in one seek.
    fn scan_db(
        &self,
        db: Database<Bytes, Bytes>,
        prefix: &[u8],
        start: Option<&[u8]>,
        f: impl FnMut(&[u8], &[u8]) -> Result<Scan, IndexError>,
    ) -> Result<(), IndexError> {
        let rtxn = self.env.read_txn()?;
        scan_in(&rtxn, db, prefix, start, f)
    }
}

/// A read transaction of the index ([`Index::snapshot`]): a listing page and
/// its objects' metadata read through one are of the same writes.
pub struct Snapshot<'a> {
    index: &'a Index,
    rtxn: heed::RoTxn<'a, heed::WithTls>,
}

impl Snapshot<'_> {
    /// Key records with `prefix` from `start`, as [`Index::scan`].
    pub fn scan(&self, prefix: &[u8], start: Option<&[u8]>, mut f: impl FnMut(&[u8], Record) -> Scan) -> Result<(), IndexError> {
        scan_in(&self.rtxn, self.index.keys, prefix, start, |k, v| Ok(f(k, Record::decode(v))))
    }

    /// Metadata of many keys (a listing page's objects).
    pub fn get_metas<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<ObjectMeta>>, IndexError> {
        keys.iter()
            .map(|k| match self.index.meta.get(&self.rtxn, k.as_ref())? {
                Some(raw) => Ok(Some(serde_json::from_slice(raw)?)),
                None => Ok(None),
            })
            .collect()
    }
}

/// The range scan of [`Index::scan_db`] in a given transaction.
fn scan_in(
    rtxn: &heed::RoTxn<'_>,
    db: Database<Bytes, Bytes>,
    prefix: &[u8],
    start: Option<&[u8]>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<Scan, IndexError>,
) -> Result<(), IndexError> {
    let mut from = match start {
        Some(s) if s > prefix => s.to_vec(),
        _ => prefix.to_vec(),
    };
    'seek: loop {
        // LMDB cannot seek to an empty key: start at the first one.
        let lower = if from.is_empty() { Bound::Unbounded } else { Bound::Included(from.as_slice()) };
        for item in db.range(rtxn, &(lower, Bound::Unbounded))? {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                return Ok(());
            }
            match f(k, v)? {
                Scan::Continue => {}
                Scan::Stop => return Ok(()),
                Scan::SeekTo(next) => {
                    from = next;
                    continue 'seek;
                }
            }
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(v: &str) -> Record {
        Record { volumes: vec![v.into()], deleted: Deleted::No, hash: String::new(), gen: String::new() }
    }

    #[test]
    fn put_get_delete_scan() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        for k in ["/a/1", "/a/2", "/a/3", "/b/1", "/a"] {
            idx.put(k.as_bytes(), &live("v"), None).unwrap();
        }
        assert_eq!(idx.get(b"/a/2").unwrap(), Some(live("v")));
        assert!(idx.max_key >= 1100, "{}", idx.max_key);
        let long = vec![b'k'; 1100];
        idx.put(&long, &live("v"), None).unwrap();
        assert!(idx.get(&long).unwrap().is_some());
        assert_eq!(idx.get(&vec![b'k'; idx.max_key + 1]).unwrap(), None);
        idx.delete(b"/a/2").unwrap();
        assert_eq!(idx.get(b"/a/2").unwrap(), None);
        let mut seen = Vec::new();
        idx.scan(b"/a/", None, |k, _| {
            seen.push(String::from_utf8(k.to_vec()).unwrap());
            Scan::Continue
        })
        .unwrap();
        assert_eq!(seen, ["/a/1", "/a/3"]);
        seen.clear();
        idx.scan(b"/", Some(b"/a/3"), |k, _| {
            seen.push(String::from_utf8(k.to_vec()).unwrap());
            if k == b"/a/3" { Scan::SeekTo(b"/b".to_vec()) } else { Scan::Continue }
        })
        .unwrap();
        assert_eq!(seen, ["/a/3", "/b/1"]);
    }

    #[test]
    fn index_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/db");
        Index::open(&path, 1 << 26).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join("data.mdb")), 0o600);
        assert_eq!(mode(&path.join("lock.mdb")), 0o600);
    }

    #[test]
    fn copy_is_private_whole_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("db"), 1 << 26).unwrap();
        let meta = ObjectMeta { size: 3, mtime: 9, ..Default::default() };
        idx.put(b"/k", &live("v"), Some(&meta)).unwrap();
        idx.create_bucket("b", &BucketInfo { created: 1, ..Default::default() }).unwrap();
        let dest = dir.path().join("backup/1");
        assert!(idx.copy_to(&dest).unwrap() > 0);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dest), mode(&dest.join("data.mdb"))), (0o700, 0o600));
        assert!(matches!(idx.copy_to(&dest), Err(IndexError::Create(..))));
        let copy = Index::open(&dest, 1 << 26).unwrap();
        assert_eq!(copy.get_with_meta(b"/k").unwrap(), Some((live("v"), Some(meta))));
        assert_eq!(copy.bucket("b").unwrap().unwrap().created, 1);
    }

    #[test]
    fn buckets() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        assert!(idx.create_bucket("b", &BucketInfo { created: 1, ..Default::default() }).unwrap());
        assert!(!idx.create_bucket("b", &BucketInfo { created: 2, ..Default::default() }).unwrap());
        assert_eq!(idx.bucket("b").unwrap(), Some(BucketInfo { created: 1, ..Default::default() }));
        let granted = idx.update_bucket("b", |b| {
            b.grants.insert("k".into(), Grant { read: true, ..Default::default() });
            (true, 7)
        });
        assert_eq!(granted.unwrap(), Some(7));
        assert!(idx.bucket("b").unwrap().unwrap().grants["k"].read);
        assert_eq!(idx.update_bucket("none", |_| (true, ())).unwrap(), None);
        idx.put(b"/b/k", &live("v"), None).unwrap();
        idx.put(b"/bb", &live("v"), None).unwrap();
        assert_eq!(idx.delete_bucket_if_empty("b").unwrap(), BucketDelete::NotEmpty);
        idx.delete(b"/b/k").unwrap();
        assert_eq!(idx.delete_bucket_if_empty("b").unwrap(), BucketDelete::Deleted { uploads: vec![] });
        assert_eq!(idx.buckets().unwrap(), vec![]);
    }

    #[test]
    fn conditional_and_batched_updates() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        idx.put(b"/k", &live("a"), None).unwrap();
        assert!(!idx.put_if(b"/k", &live("b"), &live("c"), None).unwrap());
        assert!(idx.put_if(b"/k", &live("a"), &live("c"), None).unwrap());
        assert_eq!(idx.get(b"/k").unwrap(), Some(live("c")));
        assert!(!idx.put_if(b"/none", &live("a"), &live("c"), None).unwrap());
        // Items of one batch see each other's writes.
        let items = vec![(b"/n".to_vec(), "x"), (b"/n".to_vec(), "y"), (b"/k".to_vec(), "z")];
        idx.update_many(items, |_, v, rec, _| {
            let mut r = rec.unwrap_or_else(|| Record { volumes: vec![], deleted: Deleted::No, hash: String::new(), gen: String::new() });
            r.volumes.push(v.to_string());
            Some((r, Some(ObjectMeta { size: 1, ..Default::default() })))
        })
        .unwrap();
        assert_eq!(idx.get(b"/n").unwrap().unwrap().volumes, ["x", "y"]);
        assert_eq!(idx.get(b"/k").unwrap().unwrap().volumes, ["c", "z"]);
        assert_eq!(idx.get_meta(b"/n").unwrap().unwrap().size, 1);
        assert_eq!(idx.len().unwrap(), 2);
    }

    #[test]
    fn apply_writes_in_order_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        let m = ObjectMeta { size: 3, ..Default::default() };
        idx.put(b"/gone", &live("v"), Some(&m)).unwrap();
        idx.apply(&[
            Write::Put(b"/k".to_vec(), live("a"), None),
            Write::Put(b"/k".to_vec(), live("b"), Some(m.clone())),
            Write::Delete(b"/gone".to_vec()),
        ])
        .unwrap();
        assert_eq!(idx.get_with_meta(b"/k").unwrap(), Some((live("b"), Some(m))));
        assert_eq!((idx.get(b"/gone").unwrap(), idx.get_meta(b"/gone").unwrap()), (None, None));
    }

    #[test]
    fn meta_travels_with_record() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        let m = ObjectMeta { size: 5, mtime: 7, headers: vec![("content-type".into(), "text/plain".into())], ..Default::default() };
        idx.put(b"/k", &live("v"), Some(&m)).unwrap();
        assert_eq!(idx.get_with_meta(b"/k").unwrap(), Some((live("v"), Some(m))));
        idx.delete(b"/k").unwrap();
        assert_eq!(idx.get_meta(b"/k").unwrap(), None);
    }
}
