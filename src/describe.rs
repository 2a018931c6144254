//! What the volumes say about themselves, so that the index stays a cache of
//! them (`rebuild` recovers S3 objects and buckets whole). Formats and places
//! only; reading and writing them is the store's and the admin tools' job.
//! docs/layout.md documents both files.
//!
//! - Beside each S3 value's file `<path>.<gen>`, on every replica, its
//!   metadata file `<path>.<gen>.meta`: a [`ValueFile`], written before the
//!   value becomes the key's value and never changed after (except by a
//!   metadata-only copy, which replaces it whole).
//! - On every volume, `/.mkv/buckets/<name>.json`: a [`BucketFile`], written
//!   whenever the bucket changes. nginx's autoindex leaves out dot-folders,
//!   so neither walker (ours, the original's) sees it.
//!
//! Secrets never go to a volume: volumes are unauthenticated nginx that
//! native clients are redirected to. Access keys stay in the index.

use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::index::{BucketInfo, HeaderBytes, ObjectMeta, Record};
use crate::placement::{key2path, META_SUFFIX};

/// The format version written into both files. Readers take files of this
/// version and refuse newer ones (an older mkv must not half-understand them).
/// Version 2 adds tags (of a value in its metadata file, of a bucket in its
/// file) and a bucket's versioning status; a file without them is still
/// written as version 1, which older readers take.
pub const VERSION: u32 = 2;

/// Folder of the bucket files, at each volume's root.
pub const BUCKETS_DIR: &str = "/.mkv/buckets/";

/// One S3 value's metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueFile {
    pub version: u32,
    pub bucket: String,
    /// The object key in the bucket.
    pub key: String,
    pub generation: String,
    /// When the value became the key's value (µs since the epoch), taken
    /// under the key's lock just before the index switch, so a key's values
    /// order as the index committed them.
    pub written_us: u64,
    pub size: u64,
    /// Lowercase hex MD5 of the bytes.
    pub md5: String,
    /// The S3 ETag without quotes (the MD5, or `<md5 of md5s>-N`).
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// Parts of an object completed from a multipart upload, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartFile>,
    /// Stored headers (Content-Type, x-amz-meta-*…), byte-exact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, HeaderBytes)>,
    /// S3 object tags (key, value); only in version 2 files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`.
    pub algorithm: String,
    /// `FULL_OBJECT` or `COMPOSITE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Base64, as S3 answers it (`…-N` for a composite one).
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartFile {
    pub size: u64,
    /// The part's own checksum (the object's algorithm), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// Why a metadata or bucket file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not valid JSON of this format: {0}")]
    Json(#[from] serde_json::Error),
    #[error("format version {0} is newer than this mkv reads ({VERSION})")]
    Version(u32),
}

/// A file of this format, unless it says a newer version.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], version: impl Fn(&T) -> u32) -> Result<T, FormatError> {
    let file: T = serde_json::from_slice(bytes)?;
    match version(&file) {
        v if v > VERSION => Err(FormatError::Version(v)),
        _ => Ok(file),
    }
}

/// Split an mkv key `/<bucket>/<key>` into the S3 bucket and object key.
pub fn s3_names(key: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(key);
    let rest = text.strip_prefix('/').unwrap_or(&text);
    match rest.split_once('/') {
        Some((bucket, key)) => (bucket.to_string(), key.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

impl ValueFile {
    /// The metadata file of a value about to be (or being) the key's value.
    pub fn new(key: &[u8], gen: &str, written_us: u64, md5: &str, meta: &ObjectMeta) -> ValueFile {
        let (bucket, object) = s3_names(key);
        let checksum = meta.checksum.as_ref().map(|(algorithm, value, kind)| Checksum { algorithm: algorithm.clone(), kind: kind.clone(), value: value.clone() });
        let parts = meta.parts.iter().enumerate().map(|(i, &size)| PartFile { size, checksum: meta.part_checksums.get(i).cloned() }).collect();
        ValueFile {
            version: if meta.tags.is_empty() { 1 } else { 2 },
            bucket,
            key: object,
            generation: gen.to_string(),
            written_us,
            size: meta.size,
            md5: md5.to_string(),
            etag: meta.etag.clone().unwrap_or_else(|| md5.to_string()),
            checksum,
            parts,
            headers: meta.headers.clone(),
            tags: meta.tags.clone(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<ValueFile, FormatError> {
        parse(bytes, |f: &ValueFile| f.version)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ValueFile serializes")
    }

    /// The record hash and metadata the index holds for this value, as the
    /// server would have written them: with `--md5sum` the record has the
    /// MD5 and the metadata an ETag only when it is not that MD5.
    pub fn restore(&self, md5sum: bool) -> (String, ObjectMeta) {
        let (hash, etag) = match md5sum {
            true => (self.md5.clone(), (self.etag != self.md5).then(|| self.etag.clone())),
            false => (String::new(), Some(self.etag.clone())),
        };
        let meta = ObjectMeta {
            size: self.size,
            mtime: self.written_us / 1_000_000,
            headers: self.headers.clone(),
            etag,
            checksum: self.checksum.as_ref().map(|c| (c.algorithm.clone(), c.value.clone(), c.kind.clone())),
            parts: self.parts.iter().map(|p| p.size).collect(),
            part_checksums: self.parts.iter().map_while(|p| p.checksum.clone()).collect(),
            unlinked: None,
            tags: self.tags.clone(),
        };
        (hash, meta)
    }

    /// Whether this file describes the value a live record and its
    /// metadata name (what `verify` checks; `written_us` is not in the
    /// index beyond its second).
    pub fn agrees(&self, key: &[u8], rec: &Record, meta: &ObjectMeta) -> bool {
        let md5 = if rec.hash.is_empty() { self.md5.as_str() } else { rec.hash.as_str() };
        let want = ValueFile::new(key, &rec.gen, self.written_us, md5, meta);
        *self == want && meta.mtime == self.written_us / 1_000_000
    }
}

/// Path of a value's metadata file on a volume (`None` for the original's
/// path: native values have no metadata file).
pub fn meta_path(key: &[u8], gen: &str) -> Option<String> {
    (!gen.is_empty()).then(|| key2path(key, gen) + META_SUFFIX)
}

/// URL of a value's metadata file on a target (`host:port[/svNN]`).
pub fn meta_url(target: &str, key: &[u8], gen: &str) -> Option<String> {
    meta_path(key, gen).map(|p| format!("http://{target}{p}"))
}

/// A bucket as every volume keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketFile {
    pub version: u32,
    pub name: String,
    /// When this description was written (µs since the epoch): the newest
    /// of the volumes' copies is the bucket's.
    pub updated_us: u64,
    /// Creation time, owner key id, grants (key ids, never secrets),
    /// policy, CORS rules: `index::BucketInfo`'s fields.
    #[serde(flatten)]
    pub info: BucketInfo,
}

impl BucketFile {
    /// A bucket's file as written now.
    pub fn new(name: &str, updated_us: u64, info: &BucketInfo) -> BucketFile {
        BucketFile { version: if info.tags.is_empty() && info.versioning.is_none() { 1 } else { 2 }, name: name.to_string(), updated_us, info: info.clone() }
    }

    pub fn parse(bytes: &[u8]) -> Result<BucketFile, FormatError> {
        parse(bytes, |f: &BucketFile| f.version)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a BucketFile serializes")
    }
}

/// Bucket name characters kept as they are in a file name.
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// URL of a bucket's file on a volume (`host:port`). Bucket names are
/// DNS-like; anything else is escaped, and a name starting with `.` is
/// base64-encoded, so no file is hidden or escapes the folder.
pub fn bucket_url(volume: &str, name: &str) -> String {
    let file = match name.starts_with('.') || name.is_empty() {
        true => format!("~{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)),
        false => utf8_percent_encode(name, NAME).to_string(),
    };
    format!("http://{volume}{BUCKETS_DIR}{file}.json")
}

/// URL of the bucket files' folder on a volume (its autoindex listing).
pub fn buckets_dir_url(volume: &str) -> String {
    format!("http://{volume}{BUCKETS_DIR}")
}

/// URL of a file that folder lists (`file`: its name as listed), spelled
/// as [`bucket_url`] spells it.
pub fn listed_bucket_url(volume: &str, file: &str) -> String {
    format!("http://{volume}{BUCKETS_DIR}{}", utf8_percent_encode(file, NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Deleted, Grant};

    const GEN: &str = "00000000000000010123456789abcdef";

    fn meta() -> ObjectMeta {
        ObjectMeta {
            size: 12,
            mtime: 1_700_000_000,
            headers: vec![("content-type".into(), "text/plain".into()), ("x-amz-meta-a".into(), HeaderBytes(vec![0xe9]))],
            etag: Some("0123456789abcdef0123456789abcdef-2".into()),
            checksum: Some(("CRC32".into(), "AAAAAA==-2".into(), "COMPOSITE".into())),
            parts: vec![5, 7],
            part_checksums: vec!["AQIDBA==".into(), "BQYHCA==".into()],
            unlinked: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn value_file_round_trips_the_index_entry() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        let f = ValueFile::new(b"/bkt/dir/k", GEN, 1_700_000_000_123_456, md5, &meta());
        assert_eq!((f.bucket.as_str(), f.key.as_str(), f.etag.as_str()), ("bkt", "dir/k", "0123456789abcdef0123456789abcdef-2"));
        let parsed = ValueFile::parse(&f.to_json()).unwrap();
        assert_eq!(parsed, f);
        // With --md5sum the MD5 goes to the record, the multipart ETag stays.
        assert_eq!(parsed.restore(true), (md5.to_string(), meta()));
        let rec = Record { volumes: vec!["v:1".into()], deleted: Deleted::No, hash: md5.into(), gen: GEN.into() };
        assert!(parsed.agrees(b"/bkt/dir/k", &rec, &meta()));
        let other = ObjectMeta { headers: vec![], ..meta() };
        assert!(!parsed.agrees(b"/bkt/dir/k", &rec, &other));
        assert!(!parsed.agrees(b"/bkt/dir/x", &rec, &meta()));
        // A plain PutObject without --md5sum: the ETag is the MD5, kept in meta.
        let plain = ObjectMeta { etag: Some(md5.into()), checksum: None, parts: vec![], part_checksums: vec![], ..meta() };
        let f = ValueFile::new(b"/b/k", GEN, 1_700_000_000_000_000, md5, &plain);
        assert_eq!(f.restore(false), (String::new(), plain.clone()));
        assert_eq!(f.restore(true).1.etag, None);
    }

    #[test]
    fn tags_make_a_version_2_file() {
        let plain = ValueFile::new(b"/b/k", GEN, 1, "00", &meta());
        assert_eq!(plain.version, 1);
        assert!(!String::from_utf8(plain.to_json()).unwrap().contains("tags"));
        let tagged_meta = ObjectMeta { tags: vec![("k".into(), "v".into()), ("e".into(), String::new())], ..meta() };
        let tagged = ValueFile::new(b"/b/k", GEN, 1, "00", &tagged_meta);
        assert_eq!(tagged.version, 2);
        let parsed = ValueFile::parse(&tagged.to_json()).unwrap();
        assert_eq!(parsed.restore(true).1.tags, tagged_meta.tags);
    }

    #[test]
    fn newer_versions_are_refused() {
        let mut f = ValueFile::new(b"/b/k", GEN, 1, "00", &ObjectMeta::default());
        f.version = VERSION + 1;
        assert!(matches!(ValueFile::parse(&f.to_json()), Err(FormatError::Version(_))));
        assert!(matches!(ValueFile::parse(b"{}"), Err(FormatError::Json(_))));
    }

    #[test]
    fn paths_and_urls() {
        assert_eq!(meta_path(b"hello", GEN).unwrap(), format!("/5d/41/aGVsbG8=.{GEN}.meta"));
        assert_eq!(meta_path(b"hello", ""), None);
        assert_eq!(meta_url("h:1/sv00", b"hello", GEN).unwrap(), format!("http://h:1/sv00/5d/41/aGVsbG8=.{GEN}.meta"));
        assert_eq!(bucket_url("h:1", "my-bucket.x"), "http://h:1/.mkv/buckets/my-bucket.x.json");
        assert_eq!(bucket_url("h:1", ".x"), "http://h:1/.mkv/buckets/~Lng.json");
        assert_eq!(listed_bucket_url("h:1", "my-bucket.x.json"), bucket_url("h:1", "my-bucket.x"));
        assert_eq!(s3_names(b"/b/a/b"), ("b".into(), "a/b".into()));
    }

    #[test]
    fn bucket_file_carries_the_bucket_info() {
        let mut info = BucketInfo { created: 5, owner: Some("MKOWNER".into()), policy: Some("{}".into()), ..Default::default() };
        info.grants.insert("MKREADER".into(), Grant { read: true, ..Default::default() });
        let f = BucketFile::new("b", 9, &info);
        let json = String::from_utf8(f.to_json()).unwrap();
        assert!(json.contains("\"owner\":\"MKOWNER\"") && json.contains("\"version\":1"), "{json}");
        assert_eq!(BucketFile::parse(json.as_bytes()).unwrap(), f);
        let tagged = BucketInfo { tags: vec![("cost".into(), "team".into())], ..info };
        let f = BucketFile::new("b", 9, &tagged);
        assert_eq!(f.version, 2);
        assert_eq!(BucketFile::parse(&f.to_json()).unwrap().info, tagged);
    }
}
