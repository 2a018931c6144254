//! Writing what the volumes say about themselves (formats in `describe`):
//! each S3 value's metadata file, before the value becomes the key's value,
//! and each bucket's file on every volume after the bucket changes.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::Store;
use crate::describe::{bucket_url, meta_url, BucketFile, ValueFile};
use crate::error::{Error, Result};
use crate::index::{BucketInfo, ObjectMeta, Record};
use crate::volume::VolumeClient;

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Write a value's metadata file to every volume of its record (at once);
/// the first failure is the answer.
pub async fn put_value_files(client: &VolumeClient, key: &[u8], rec: &Record, file: &ValueFile) -> Result<()> {
    let body = Bytes::from(file.to_json());
    let puts = rec.volumes.iter().filter_map(|v| meta_url(v, key, &rec.gen)).map(|url| {
        let body = body.clone();
        async move { client.put_bytes(&url, body).await }
    });
    futures::future::join_all(puts).await.into_iter().collect()
}

/// Write (or, for a bucket that is gone, delete) a bucket's file on every
/// volume. Returns the volumes that failed, with why.
pub async fn put_bucket_files(client: &VolumeClient, volumes: &[String], name: &str, info: Option<&BucketInfo>) -> Vec<(String, Error)> {
    let body = info.map(|info| Bytes::from(BucketFile::new(name, now_us(), info).to_json()));
    let calls = volumes.iter().map(|v| {
        let body = body.clone();
        async move {
            let url = bucket_url(v, name);
            let result = match body {
                Some(body) => client.put_bytes(&url, body).await,
                None => client.delete(&url).await,
            };
            result.err().map(|e| (v.clone(), e))
        }
    });
    futures::future::join_all(calls).await.into_iter().flatten().collect()
}

/// The MD5 of a live value: the record's, else the ETag of a single-part
/// value, else what a metadata file of its generation says (`read`: files
/// the caller has, then its volumes'); `None` if nothing knows it (a
/// multipart value without `--md5sum` and without metadata file).
pub async fn known_md5(client: &VolumeClient, key: &[u8], rec: &Record, meta: &ObjectMeta, read: &[ValueFile]) -> Option<String> {
    if !rec.hash.is_empty() {
        return Some(rec.hash.clone());
    }
    if let Some(etag) = meta.etag.as_ref().filter(|e| !e.contains('-')) {
        return Some(etag.clone());
    }
    if let Some(file) = read.iter().find(|f| f.generation == rec.gen) {
        return Some(file.md5.clone());
    }
    read_value_file(client, key, rec).await.map(|f| f.md5)
}

/// The metadata file of a record's value, from the first of its volumes
/// that has a readable one (`None` for native values: they have none).
pub async fn read_value_file(client: &VolumeClient, key: &[u8], rec: &Record) -> Option<ValueFile> {
    for url in rec.volumes.iter().filter_map(|v| meta_url(v, key, &rec.gen)) {
        if let Ok(Some(body)) = client.get_bytes(&url).await {
            if let Ok(file) = ValueFile::parse(&body) {
                return Some(file);
            }
        }
    }
    None
}

impl Store {
    /// Describe a value on its volumes as the record and metadata say, at
    /// `written_us`. The caller holds the key's lock.
    pub async fn describe_value(&self, key: &[u8], rec: &Record, md5: &str, meta: &ObjectMeta, written_us: u64) -> Result<()> {
        put_value_files(&self.volumes, key, rec, &ValueFile::new(key, &rec.gen, written_us, md5, meta)).await
    }

    /// Bring a bucket's files on the volumes in line with the index (after
    /// any change to it). Failures are logged: the index has the change,
    /// start-up and `mkv repair` write the files again, `mkv verify` finds
    /// those that differ.
    pub async fn describe_bucket(&self, name: &str) {
        match self.index.bucket(name) {
            Ok(info) => self.put_bucket(name, info.as_ref()).await,
            Err(e) => tracing::warn!("bucket {name}: not described on the volumes: {e}"),
        }
    }

    async fn put_bucket(&self, name: &str, info: Option<&BucketInfo>) {
        for (volume, e) in put_bucket_files(&self.volumes, &self.config.volumes, name, info).await {
            tracing::warn!("bucket {name}: its file on {volume} is not up to date ({e}); `mkv repair` rewrites it");
        }
    }

    /// Write every bucket's file (at start-up: changes a crash or an admin
    /// command without `--volumes` left undescribed). Never deletes one: an
    /// index started empty by mistake must not erase what `rebuild` needs.
    pub async fn describe_buckets(&self) -> Result<usize> {
        let buckets = self.index.buckets().map_err(Error::from)?;
        for (name, info) in &buckets {
            self.put_bucket(name, Some(info)).await;
        }
        Ok(buckets.len())
    }
}
