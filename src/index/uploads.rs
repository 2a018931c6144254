//! S3 multipart uploads in the index, so an upload survives a restart:
//!
//! - `uploads`: object key ++ `0x00` ++ upload id → [`Upload`]. Ordered by
//!   key, then by id (ids start with their creation time), as
//!   ListMultipartUploads answers.
//! - `parts`: upload id ++ part number (u32 big-endian) → [`Part`].
//! - `completed`: upload id → [`Completed`], what a finished Complete
//!   answered, so a repeated Complete answers the same.

use std::ops::Bound;

use heed::RoTxn;
use serde::{Deserialize, Serialize};

use super::{HeaderBytes, Index, IndexError, Scan};

/// Upload ids are 32 hex digits: 16 of creation time (µs), 16 random.
pub const UPLOAD_ID_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Seconds since the epoch.
    pub initiated: u64,
    /// Headers the object will store (as `ObjectMeta::headers`).
    pub headers: Vec<(String, HeaderBytes)>,
    /// Checksum algorithm and type named at creation (`CRC32`, `COMPOSITE`).
    pub checksum: Option<(String, String)>,
    /// Volumes (with subvolume) that hold the parts: the key's placement.
    pub targets: Vec<String>,
    /// Access key that created it (Initiator and Owner in listings).
    pub owner: String,
    /// Tags the object will have (`x-amz-tagging` at creation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub size: u64,
    /// Lowercase hex MD5: the part's ETag.
    pub md5: String,
    /// Algorithm and base64 value.
    pub checksum: Option<(String, String)>,
    pub mtime: u64,
    /// File name in the upload's folder on each target.
    pub file: String,
    pub targets: Vec<String>,
}

/// Parts with their numbers, in number order.
pub type NumberedParts = Vec<(u32, Part)>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    /// The object's mkv key.
    pub key: String,
    /// Part numbers and ETags the Complete listed.
    pub parts: Vec<(u32, String)>,
    pub etag: String,
    /// Algorithm, value, type: as `ObjectMeta::checksum`.
    pub checksum: Option<(String, String, String)>,
    /// Seconds since the epoch.
    pub at: u64,
}

/// What recording a part found.
#[derive(Debug, PartialEq, Eq)]
pub enum PartPut {
    /// The upload is gone (aborted or completed): nothing recorded.
    NoUpload,
    /// Recorded; the part it replaced, if any.
    Stored(Option<Part>),
}

pub fn upload_key(key: &[u8], id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1 + id.len());
    k.extend_from_slice(key);
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Split an `uploads` key into object key and upload id.
fn split_upload_key(raw: &[u8]) -> Option<(&[u8], &str)> {
    let cut = raw.len().checked_sub(UPLOAD_ID_LEN + 1)?;
    (raw[cut] == 0).then_some(())?;
    Some((&raw[..cut], std::str::from_utf8(&raw[cut + 1..]).ok()?))
}

fn part_key(id: &str, number: u32) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(&number.to_be_bytes());
    k
}

impl Index {
    /// Record a new upload if the bucket exists (checked in the same
    /// transaction, so a DeleteBucket cannot slip in between).
    pub fn create_upload(&self, bucket: &str, key: &[u8], id: &str, upload: &Upload) -> Result<bool, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        if self.buckets.get(&wtxn, bucket.as_bytes())?.is_none() {
            return Ok(false);
        }
        self.uploads.put(&mut wtxn, &upload_key(key, id), &serde_json::to_vec(upload)?)?;
        wtxn.commit()?;
        Ok(true)
    }

    pub fn upload(&self, key: &[u8], id: &str) -> Result<Option<Upload>, IndexError> {
        let rtxn = self.env.read_txn()?;
        match self.uploads.get(&rtxn, &upload_key(key, id))? {
            Some(raw) => Ok(Some(serde_json::from_slice(raw)?)),
            None => Ok(None),
        }
    }

    /// Record a part of a live upload, replacing one of the same number.
    pub fn put_part(&self, key: &[u8], id: &str, number: u32, part: &Part) -> Result<PartPut, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        if self.uploads.get(&wtxn, &upload_key(key, id))?.is_none() {
            return Ok(PartPut::NoUpload);
        }
        let pk = part_key(id, number);
        let old = match self.parts.get(&wtxn, &pk)? {
            Some(raw) => Some(serde_json::from_slice(raw)?),
            None => None,
        };
        self.parts.put(&mut wtxn, &pk, &serde_json::to_vec(part)?)?;
        wtxn.commit()?;
        Ok(PartPut::Stored(old))
    }

    /// Up to `limit` parts numbered above `after`, in order.
    pub fn parts(&self, id: &str, after: u32, limit: usize) -> Result<NumberedParts, IndexError> {
        let mut out = Vec::new();
        let Some(first) = after.checked_add(1) else { return Ok(out) };
        let rtxn = self.env.read_txn()?;
        let from = part_key(id, first);
        for item in self.parts.range(&rtxn, &(Bound::Included(from.as_slice()), Bound::Unbounded))? {
            let (k, v) = item?;
            if out.len() == limit || !k.starts_with(id.as_bytes()) || k.len() != id.len() + 4 {
                break;
            }
            let number = u32::from_be_bytes(k[id.len()..].try_into().unwrap_or_default());
            out.push((number, serde_json::from_slice(v)?));
        }
        Ok(out)
    }

    /// Remove an upload and its parts, and record its completion when
    /// given, in one transaction. Returns what was removed (`None` if the
    /// upload was already gone).
    pub fn finish_upload(&self, key: &[u8], id: &str, completed: Option<&Completed>) -> Result<Option<(Upload, NumberedParts)>, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        let uk = upload_key(key, id);
        let upload: Upload = match self.uploads.get(&wtxn, &uk)? {
            Some(raw) => serde_json::from_slice(raw)?,
            None => return Ok(None),
        };
        self.uploads.delete(&mut wtxn, &uk)?;
        let mut removed = Vec::new();
        for item in self.parts.prefix_iter(&wtxn, id.as_bytes())? {
            let (k, v) = item?;
            if k.len() == id.len() + 4 {
                removed.push((u32::from_be_bytes(k[id.len()..].try_into().unwrap_or_default()), serde_json::from_slice(v)?));
            }
        }
        for (n, _) in &removed {
            self.parts.delete(&mut wtxn, &part_key(id, *n))?;
        }
        if let Some(c) = completed {
            self.completed.put(&mut wtxn, id.as_bytes(), &serde_json::to_vec(c)?)?;
        }
        wtxn.commit()?;
        Ok(Some((upload, removed)))
    }

    pub fn completed(&self, id: &str) -> Result<Option<Completed>, IndexError> {
        let rtxn = self.env.read_txn()?;
        match self.completed.get(&rtxn, id.as_bytes())? {
            Some(raw) => Ok(Some(serde_json::from_slice(raw)?)),
            None => Ok(None),
        }
    }

    /// Forget completions older than `before` (seconds since the epoch).
    pub fn purge_completed(&self, before: u64) -> Result<usize, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        let mut old = Vec::new();
        for item in self.completed.iter(&wtxn)? {
            let (k, v) = item?;
            let c: Completed = serde_json::from_slice(v)?;
            if c.at < before {
                old.push(k.to_vec());
            }
        }
        for k in &old {
            self.completed.delete(&mut wtxn, k)?;
        }
        wtxn.commit()?;
        Ok(old.len())
    }

    /// Visit uploads whose object key starts with `prefix`, in order, from
    /// the first `uploads` key >= `start` (or the prefix). One read
    /// transaction: the callback must be quick.
    pub fn scan_uploads(&self, prefix: &[u8], start: Option<&[u8]>, mut f: impl FnMut(&[u8], &str, Upload) -> Scan) -> Result<(), IndexError> {
        self.scan_db(self.uploads, prefix, start, |k, v| match split_upload_key(k) {
            Some((key, id)) => Ok(f(key, id, serde_json::from_slice(v)?)),
            None => Ok(Scan::Continue),
        })
    }

    /// Object key and id of every upload whose key starts with `prefix`,
    /// read in `txn`.
    pub(super) fn upload_ids(&self, txn: &RoTxn, prefix: &[u8]) -> Result<Vec<(Vec<u8>, String)>, IndexError> {
        let mut out = Vec::new();
        for item in self.uploads.prefix_iter(txn, prefix)? {
            if let Some((key, id)) = split_upload_key(item?.0) {
                out.push((key.to_vec(), id.to_string()));
            }
        }
        Ok(out)
    }

    /// Every upload (admin listing, expiry sweep).
    pub fn all_uploads(&self) -> Result<Vec<(Vec<u8>, String, Upload)>, IndexError> {
        let mut out = Vec::new();
        self.scan_uploads(b"", None, |k, id, u| {
            out.push((k.to_vec(), id.to_string(), u));
            Scan::Continue
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{BucketDelete, BucketInfo, Deleted, Record};

    fn upload() -> Upload {
        Upload { initiated: 5, headers: vec![], checksum: Some(("CRC32".into(), "COMPOSITE".into())), targets: vec!["v:1".into()], owner: "a".into(), tags: vec![] }
    }

    fn part(file: &str) -> Part {
        Part { size: 3, md5: "m".into(), checksum: None, mtime: 1, file: file.into(), targets: vec!["v:1".into()] }
    }

    const ID: &str = "0000000000000001aaaaaaaaaaaaaaaa";
    const ID2: &str = "0000000000000002aaaaaaaaaaaaaaaa";

    #[test]
    fn upload_and_parts_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        assert!(!idx.create_upload("b", b"/b/k", ID, &upload()).unwrap());
        idx.create_bucket("b", &BucketInfo { created: 1, ..Default::default() }).unwrap();
        assert!(idx.create_upload("b", b"/b/k", ID, &upload()).unwrap());
        assert_eq!(idx.upload(b"/b/k", ID).unwrap(), Some(upload()));
        assert_eq!(idx.upload(b"/b/other", ID).unwrap(), None);
        for n in [3, 1, 2, 10_000] {
            assert_eq!(idx.put_part(b"/b/k", ID, n, &part("a")).unwrap(), PartPut::Stored(None));
        }
        assert_eq!(idx.put_part(b"/b/k", ID, 2, &part("b")).unwrap(), PartPut::Stored(Some(part("a"))));
        assert_eq!(idx.put_part(b"/b/k", ID2, 1, &part("a")).unwrap(), PartPut::NoUpload);
        let nums = |v: Vec<(u32, Part)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(nums(idx.parts(ID, 0, 100).unwrap()), [1, 2, 3, 10_000]);
        assert_eq!(nums(idx.parts(ID, 1, 2).unwrap()), [2, 3]);
        assert_eq!(nums(idx.parts(ID, 10_000, 2).unwrap()), Vec::<u32>::new());
        let c = Completed { key: "/b/k".into(), parts: vec![(1, "e".into())], etag: "x-1".into(), checksum: None, at: 100 };
        let (u, parts) = idx.finish_upload(b"/b/k", ID, Some(&c)).unwrap().unwrap();
        assert_eq!((u, parts.len()), (upload(), 4));
        assert_eq!(idx.finish_upload(b"/b/k", ID, None).unwrap(), None);
        assert!(idx.parts(ID, 0, 100).unwrap().is_empty());
        assert_eq!(idx.completed(ID).unwrap(), Some(c));
        assert_eq!(idx.purge_completed(100).unwrap(), 0);
        assert_eq!(idx.purge_completed(101).unwrap(), 1);
        assert_eq!(idx.delete_bucket_if_empty("b").unwrap(), BucketDelete::Deleted { uploads: vec![] });
    }

    #[test]
    fn deleting_a_bucket_returns_its_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        for b in ["b", "bb"] {
            idx.create_bucket(b, &BucketInfo { created: 1, ..Default::default() }).unwrap();
        }
        for (b, k, id) in [("b", &b"/b/k"[..], ID), ("b", b"/b/a/x", ID2), ("bb", b"/bb/k", ID)] {
            idx.create_upload(b, k, id, &upload()).unwrap();
        }
        // Uploads alone do not keep a bucket: they are handed back to abort.
        let want = vec![(b"/b/a/x".to_vec(), ID2.to_string()), (b"/b/k".to_vec(), ID.to_string())];
        assert_eq!(idx.delete_bucket_if_empty("b").unwrap(), BucketDelete::Deleted { uploads: want });
        assert_eq!(idx.bucket("b").unwrap(), None);
        // No upload starts in a deleted bucket.
        assert!(!idx.create_upload("b", b"/b/new", ID2, &upload()).unwrap());
        // A live object does keep one, uploads and all.
        let live = Record { volumes: vec!["v:1".into()], deleted: Deleted::No, hash: String::new(), gen: String::new() };
        idx.put(b"/bb/o", &live, None).unwrap();
        assert_eq!(idx.delete_bucket_if_empty("bb").unwrap(), BucketDelete::NotEmpty);
        assert!(idx.bucket("bb").unwrap().is_some() && idx.upload(b"/bb/k", ID).unwrap().is_some());
    }

    #[test]
    fn scans_in_key_then_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path(), 1 << 26).unwrap();
        idx.create_bucket("b", &BucketInfo { created: 1, ..Default::default() }).unwrap();
        for (k, id) in [(&b"/b/z"[..], ID), (b"/b/a", ID2), (b"/b/a", ID), (b"/b/a/b", ID)] {
            idx.create_upload("b", k, id, &upload()).unwrap();
        }
        let mut seen = Vec::new();
        idx.scan_uploads(b"/b/a", None, |k, id, _| {
            seen.push((String::from_utf8(k.to_vec()).unwrap(), id[15..16].to_string()));
            Scan::Continue
        })
        .unwrap();
        assert_eq!(seen, [("/b/a".into(), "1".into()), ("/b/a".into(), "2".into()), ("/b/a/b".into(), "1".into())]);
        assert_eq!(idx.all_uploads().unwrap().len(), 4);
    }
}
