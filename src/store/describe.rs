//! Writing what the volumes say about themselves (formats in `describe`):
//! each S3 value's metadata file, before the value becomes the key's value,
//! and each bucket's file on every volume after the bucket changes.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Store;
use crate::describe::{bucket_url, meta_url, BucketFile, ValueFile, VERSION};
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
    let body = file.to_json();
    let puts = rec.volumes.iter().filter_map(|v| meta_url(v, key, &rec.gen)).map(|url| {
        let body = body.clone();
        async move { client.put_bytes(&url, body).await }
    });
    futures::future::join_all(puts).await.into_iter().collect()
}

/// Write (or, for a bucket that is gone, delete) a bucket's file on every
/// volume. Returns the volumes that failed, with why.
pub async fn put_bucket_files(client: &VolumeClient, volumes: &[String], name: &str, info: Option<&BucketInfo>) -> Vec<(String, Error)> {
    let body = info.map(|info| BucketFile { version: VERSION, name: name.to_string(), updated_us: now_us(), info: info.clone() }.to_json());
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

impl Store {
    /// Describe a value on its volumes as the record and metadata say, at
    /// `written_us`. The caller holds the key's lock.
    pub async fn describe_value(&self, key: &[u8], rec: &Record, md5: &str, meta: &ObjectMeta, written_us: u64) -> Result<()> {
        put_value_files(&self.volumes, key, rec, &ValueFile::new(key, &rec.gen, written_us, md5, meta)).await
    }

    /// The MD5 of a live value: the record's, else the ETag of a single-part
    /// value, else what its metadata file says (a multipart value without
    /// `--md5sum`); empty if nothing knows it.
    pub async fn known_md5(&self, key: &[u8], rec: &Record, meta: &ObjectMeta) -> String {
        if !rec.hash.is_empty() {
            return rec.hash.clone();
        }
        if let Some(etag) = meta.etag.as_ref().filter(|e| !e.contains('-')) {
            return etag.clone();
        }
        for url in rec.volumes.iter().filter_map(|v| meta_url(v, key, &rec.gen)) {
            if let Ok(Some(body)) = self.volumes.get_bytes(&url).await {
                if let Ok(file) = ValueFile::parse(&body) {
                    return file.md5;
                }
            }
        }
        String::new()
    }

    /// Bring a bucket's files on the volumes in line with the index (after
    /// any change to it). Failures are logged: the index has the change,
    /// start-up and `mkv repair` write the files again, `mkv verify` finds
    /// those that differ.
    pub async fn describe_bucket(&self, name: &str) {
        let info = match self.index.bucket(name) {
            Ok(info) => info,
            Err(e) => return tracing::warn!("bucket {name}: not described on the volumes: {e}"),
        };
        for (volume, e) in put_bucket_files(&self.volumes, &self.config.volumes, name, info.as_ref()).await {
            tracing::warn!("bucket {name}: its file on {volume} is not up to date ({e}); `mkv repair` rewrites it");
        }
    }

    /// Write every bucket's file (at start-up: changes a crash or an admin
    /// command without `--volumes` left undescribed). Never deletes one: an
    /// index started empty by mistake must not erase what `rebuild` needs.
    pub async fn describe_buckets(&self) -> Result<usize> {
        let buckets = self.index.buckets().map_err(Error::from)?;
        for (name, _) in &buckets {
            self.describe_bucket(name).await;
        }
        Ok(buckets.len())
    }
}
