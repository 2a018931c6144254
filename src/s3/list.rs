//! ListObjects (v1), ListObjectsV2 and ListObjectVersions. A page is one
//! index range scan that jumps over each common prefix with a single seek, so
//! it costs O(page), not O(bucket).
//!
//! Paging uses one rule everywhere: a page resumes *after* a marker, which is
//! the last key or common prefix of the previous page (v1 `NextMarker`, the
//! v2 continuation token, v1 `marker`, v2 `start-after`, `key-marker`). A
//! common prefix that sorts at or before the marker is never listed again, so
//! no prefix appears on two pages.
//!
//! `encoding-type=url` encodes exactly the fields botocore decodes (it asks
//! for the encoding on every listing): v1 `Key`, `CommonPrefixes`,
//! `Delimiter`, `Marker`, `NextMarker` (not `Prefix`, as AWS); v2 `Key`,
//! `CommonPrefixes`, `Delimiter`, `Prefix`, `StartAfter`; versions `Key`,
//! `CommonPrefixes`, `Delimiter`, `Prefix`, `KeyMarker`, `NextKeyMarker`.

use actix_web::{web, HttpResponse};
use base64::Engine as _;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::bucket::{owner, xml_ok};
use super::checksum::{ChecksumAlgorithm, ChecksumType};
use super::error::S3Error;
use super::object::etag_of;
use super::xml::{ListBucketResult, ListPage, ListVersionsResult, ObjectEntry, Owner, VersionEntry};
use super::Ctx;
use crate::index::{IndexError, ObjectMeta, Record, Scan, Snapshot};

/// Default and largest page.
pub const MAX_KEYS: usize = 1000;

/// What one page asks for. Keys and markers are relative to the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSpec {
    pub prefix: Vec<u8>,
    /// `None` for no delimiter (an empty `delimiter=` included).
    pub delimiter: Option<Vec<u8>>,
    pub max_keys: usize,
    /// List only what sorts after this key or common prefix.
    pub after: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Object { key: Vec<u8>, record: Record },
    Prefix(Vec<u8>),
}

impl Entry {
    /// The key or common prefix: what the next page resumes after.
    pub fn name(&self) -> &[u8] {
        match self {
            Entry::Object { key, .. } => key,
            Entry::Prefix(p) => p,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// The marker of the next page; `None` on the last one. `IsTruncated`
    /// and every next-marker field are derived from this alone.
    pub next: Option<Vec<u8>>,
}

/// The first byte string greater than every string that starts with `p`:
/// `p` without its trailing 0xFF bytes, last byte incremented. `None` when
/// `p` is empty or all 0xFF (nothing sorts after).
pub fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let end = p.iter().rposition(|&b| b != 0xFF)?;
    let mut out = p[..=end].to_vec();
    out[end] += 1;
    Some(out)
}

/// Builds a page from the keys an index scan visits in byte order; its
/// `visit` is the scan callback.
pub struct PageBuilder<'a> {
    spec: &'a PageSpec,
    /// The bucket part of index keys: `/bucket/`.
    base: Vec<u8>,
    entries: Vec<Entry>,
    more: bool,
}

impl<'a> PageBuilder<'a> {
    pub fn new(spec: &'a PageSpec, bucket: &str) -> Self {
        PageBuilder { spec, base: format!("/{bucket}/").into_bytes(), entries: Vec::new(), more: false }
    }

    /// The index prefix to scan.
    pub fn scan_prefix(&self) -> Vec<u8> {
        [self.base.as_slice(), &self.spec.prefix].concat()
    }

    /// The index key to start from: just after the marker (a 0 byte makes
    /// the smallest greater key), or the prefix.
    pub fn scan_start(&self) -> Vec<u8> {
        match &self.spec.after {
            Some(a) => [self.base.as_slice(), a, &[0]].concat(),
            None => self.scan_prefix(),
        }
    }

    pub fn visit(&mut self, full_key: &[u8], record: Record) -> Scan {
        if !record.is_live() {
            return Scan::Continue;
        }
        let Some(key) = full_key.strip_prefix(self.base.as_slice()) else { return Scan::Stop };
        let after = self.spec.after.as_deref();
        let plen = self.spec.prefix.len();
        let group = match (&self.spec.delimiter, key.get(plen..)) {
            (Some(d), Some(rest)) => find(rest, d).map(|i| &key[..plen + i + d.len()]),
            _ => None,
        };
        let Some(group) = group else {
            if after.is_some_and(|a| key <= a) {
                return Scan::Continue;
            }
            let entry = Entry::Object { key: key.to_vec(), record };
            return if self.push(entry) { Scan::Continue } else { Scan::Stop };
        };
        // Every key of the group rolls up into it: continue after all of them.
        let past = match prefix_successor(&[self.base.as_slice(), group].concat()) {
            Some(next) => Scan::SeekTo(next),
            None => Scan::Stop,
        };
        if after.is_some_and(|a| group <= a) || self.push(Entry::Prefix(group.to_vec())) {
            past
        } else {
            Scan::Stop
        }
    }

    /// Add an entry; false (and the page is known to continue) when full.
    fn push(&mut self, entry: Entry) -> bool {
        if self.entries.len() >= self.spec.max_keys {
            self.more = true;
            return false;
        }
        self.entries.push(entry);
        true
    }

    pub fn finish(self) -> Page {
        let next = if self.more { self.entries.last().map(|e| e.name().to_vec()) } else { None };
        Page { entries: self.entries, next }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One page of a bucket's live keys.
pub fn list_page(index: &Snapshot, bucket: &str, spec: &PageSpec) -> Result<Page, IndexError> {
    let mut builder = PageBuilder::new(spec, bucket);
    // max-keys=0 lists nothing and is never truncated (paginators would loop).
    if spec.max_keys > 0 {
        let (prefix, start) = (builder.scan_prefix(), builder.scan_start());
        index.scan(&prefix, Some(&start), |k, rec| builder.visit(k, rec))?;
    }
    Ok(builder.finish())
}

/// Opaque continuation token: the marker, base64.
pub fn encode_token(marker: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(marker)
}

pub fn decode_token(token: &str) -> Result<Vec<u8>, S3Error> {
    base64::engine::general_purpose::STANDARD.decode(token.trim()).map_err(|_| S3Error::InvalidArgument {
        message: "The continuation token provided is incorrect".into(),
        name: "continuation-token".into(),
        value: token.to_string(),
    })
}

/// What `encoding-type=url` leaves alone: RFC 3986 unreserved and `/`.
pub const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// Whether a listing asked for `encoding-type=url` (the only type there is).
pub fn url_encoding(ctx: &Ctx) -> Result<bool, S3Error> {
    match ctx.param("encoding-type") {
        None | Some("") => Ok(false),
        Some(e) if e.eq_ignore_ascii_case("url") => Ok(true),
        Some(e) => Err(S3Error::InvalidArgument {
            message: "Invalid Encoding Method specified in Request".into(),
            name: "encoding-type".into(),
            value: e.to_string(),
        }),
    }
}

/// A key, prefix or marker for the answer: URL-encoded (byte-exact, so
/// clients can decode any key) or as text.
pub fn encode(raw: &[u8], url: bool) -> String {
    if url {
        percent_encode(raw, URL_SAFE).to_string()
    } else {
        String::from_utf8_lossy(raw).into_owned()
    }
}

/// The request parameters every listing shares.
struct ListQuery {
    prefix: String,
    delimiter: Option<String>,
    max_keys: usize,
    url: bool,
}

impl ListQuery {
    fn parse(ctx: &Ctx) -> Result<ListQuery, S3Error> {
        let max_keys = match ctx.param("max-keys") {
            None => MAX_KEYS,
            Some(v) => {
                let n: i64 = v.trim().parse().map_err(|_| S3Error::InvalidArgument {
                    message: "Provided max-keys not an integer or within integer range".into(),
                    name: "max-keys".into(),
                    value: v.to_string(),
                })?;
                if !(0..=i64::from(i32::MAX)).contains(&n) {
                    return Err(S3Error::InvalidArgument {
                        message: "Argument maxKeys must be an integer between 0 and 2147483647".into(),
                        name: "maxKeys".into(),
                        value: v.to_string(),
                    });
                }
                (n as usize).min(MAX_KEYS)
            }
        };
        let url = url_encoding(ctx)?;
        Ok(ListQuery {
            prefix: ctx.param("prefix").unwrap_or("").to_string(),
            delimiter: ctx.param("delimiter").filter(|d| !d.is_empty()).map(str::to_string),
            max_keys,
            url,
        })
    }

    fn spec(&self, after: Option<Vec<u8>>) -> PageSpec {
        PageSpec {
            prefix: self.prefix.as_bytes().to_vec(),
            delimiter: self.delimiter.as_ref().map(|d| d.as_bytes().to_vec()),
            max_keys: self.max_keys,
            after,
        }
    }

    fn enc(&self, raw: &[u8]) -> String {
        encode(raw, self.url)
    }

    fn encoding_type(&self) -> Option<String> {
        self.url.then(|| "url".to_string())
    }
}

/// A page with each object's metadata, read off the async runtime.
struct Listed {
    page: Page,
    metas: Vec<Option<ObjectMeta>>,
}

async fn run(ctx: &Ctx<'_>, spec: PageSpec) -> Result<Listed, S3Error> {
    ctx.require_bucket()?;
    let index = ctx.app.store.index.clone();
    let bucket = ctx.bucket().to_string();
    let listed = web::block(move || -> Result<Listed, IndexError> {
        // The page and its objects' metadata from one snapshot: an entry's
        // size and ETag are of the same write, whatever commits meanwhile.
        let snapshot = index.snapshot()?;
        let page = list_page(&snapshot, &bucket, &spec)?;
        let base = format!("/{bucket}/");
        let keys: Vec<Vec<u8>> = page
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Object { key, .. } => Some([base.as_bytes(), key].concat()),
                Entry::Prefix(_) => None,
            })
            .collect();
        let metas = snapshot.get_metas(&keys)?;
        Ok(Listed { page, metas })
    })
    .await
    .map_err(|e| S3Error::InternalError(e.to_string()))?;
    listed.map_err(|e| S3Error::InternalError(e.to_string()))
}

impl Listed {
    /// Objects (with their metadata) and common prefixes, encoded.
    fn split(&self, q: &ListQuery, owner: Option<&Owner>) -> (Vec<ObjectEntry>, Vec<String>) {
        let mut metas = self.metas.iter();
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        for e in &self.page.entries {
            match e {
                Entry::Object { key, record } => {
                    let meta = metas.next().cloned().flatten().unwrap_or_default();
                    objects.push(object_entry(q.enc(key), record, &meta, owner));
                }
                Entry::Prefix(p) => prefixes.push(q.enc(p)),
            }
        }
        (objects, prefixes)
    }
}

fn object_entry(key: String, record: &Record, meta: &ObjectMeta, owner: Option<&Owner>) -> ObjectEntry {
    let checksum = meta.checksum.as_ref();
    ObjectEntry {
        key,
        last_modified: meta.mtime,
        etag: etag_of(record, meta),
        size: meta.size,
        owner: owner.cloned(),
        checksum_algorithm: checksum.and_then(|(alg, _, _)| ChecksumAlgorithm::from_name(alg)),
        checksum_type: checksum.and_then(|(_, _, t)| ChecksumType::from_name(t)),
    }
}

/// A marker parameter as bytes; empty means none.
fn marker(ctx: &Ctx, name: &str) -> Option<Vec<u8>> {
    ctx.param(name).filter(|m| !m.is_empty()).map(|m| m.as_bytes().to_vec())
}

pub async fn list_objects_v2(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    let q = ListQuery::parse(ctx)?;
    let token = ctx.param("continuation-token");
    let start_after = ctx.param("start-after");
    // A token wins over start-after (which is still echoed).
    let after = match token.filter(|t| !t.is_empty()) {
        Some(t) => Some(decode_token(t)?),
        None => marker(ctx, "start-after"),
    };
    let listed = run(ctx, q.spec(after)).await?;
    let owner = (ctx.param("fetch-owner") == Some("true")).then(|| owner(ctx));
    let (contents, common_prefixes) = listed.split(&q, owner.as_ref());
    let next_continuation_token = listed.page.next.as_deref().map(encode_token);
    let doc = ListBucketResult {
        name: ctx.bucket().to_string(),
        prefix: q.enc(q.prefix.as_bytes()),
        delimiter: q.delimiter.as_deref().map(|d| q.enc(d.as_bytes())),
        max_keys: q.max_keys as u32,
        is_truncated: next_continuation_token.is_some(),
        encoding_type: q.encoding_type(),
        page: ListPage::V2 {
            continuation_token: token.map(str::to_string),
            next_continuation_token,
            start_after: start_after.map(|s| q.enc(s.as_bytes())),
        },
        contents,
        common_prefixes,
    };
    Ok(xml_ok(doc.to_xml()))
}

pub async fn list_objects_v1(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    let q = ListQuery::parse(ctx)?;
    let listed = run(ctx, q.spec(marker(ctx, "marker"))).await?;
    let (contents, common_prefixes) = listed.split(&q, Some(&owner(ctx)));
    let next = listed.page.next.as_deref();
    let doc = ListBucketResult {
        name: ctx.bucket().to_string(),
        // v1 never encodes its Prefix (AWS; botocore decodes it only in v2).
        prefix: q.prefix.clone(),
        delimiter: q.delimiter.as_deref().map(|d| q.enc(d.as_bytes())),
        max_keys: q.max_keys as u32,
        is_truncated: next.is_some(),
        encoding_type: q.encoding_type(),
        page: ListPage::V1 {
            marker: q.enc(ctx.param("marker").unwrap_or("").as_bytes()),
            // AWS sends NextMarker only with a delimiter; without one,
            // clients continue from the last key.
            next_marker: next.filter(|_| q.delimiter.is_some()).map(|m| q.enc(m)),
        },
        contents,
        common_prefixes,
    };
    Ok(xml_ok(doc.to_xml()))
}

/// ListObjectVersions of an unversioned bucket: each object is its only
/// version, `null`, and the latest.
pub async fn list_object_versions(ctx: &Ctx<'_>) -> Result<HttpResponse, S3Error> {
    let q = ListQuery::parse(ctx)?;
    let key_marker = ctx.param("key-marker").unwrap_or("");
    let version_id_marker = ctx.param("version-id-marker").unwrap_or("");
    if !version_id_marker.is_empty() {
        if key_marker.is_empty() {
            return Err(S3Error::InvalidArgument {
                message: "A version-id marker cannot be specified without a key marker.".into(),
                name: "version-id-marker".into(),
                value: version_id_marker.to_string(),
            });
        }
        if version_id_marker != "null" {
            return Err(S3Error::InvalidArgument {
                message: "Invalid version id specified".into(),
                name: "version-id-marker".into(),
                value: version_id_marker.to_string(),
            });
        }
    }
    // The null version is a key's only one: after it comes the next key.
    let listed = run(ctx, q.spec(marker(ctx, "key-marker"))).await?;
    let (objects, common_prefixes) = listed.split(&q, Some(&owner(ctx)));
    let next = listed.page.next.as_deref();
    let last_is_object = matches!(listed.page.entries.last(), Some(Entry::Object { .. }));
    let doc = ListVersionsResult {
        name: ctx.bucket().to_string(),
        prefix: q.enc(q.prefix.as_bytes()),
        key_marker: q.enc(key_marker.as_bytes()),
        version_id_marker: version_id_marker.to_string(),
        next_key_marker: next.map(|m| q.enc(m)),
        next_version_id_marker: next.filter(|_| last_is_object).map(|_| "null".to_string()),
        max_keys: q.max_keys as u32,
        delimiter: q.delimiter.as_deref().map(|d| q.enc(d.as_bytes())),
        is_truncated: next.is_some(),
        encoding_type: q.encoding_type(),
        versions: objects.into_iter().map(|object| VersionEntry { object, version_id: "null".into(), is_latest: true }).collect(),
        common_prefixes,
    };
    Ok(xml_ok(doc.to_xml()))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::ops::Bound;

    use super::*;
    use crate::index::{Deleted, Index};

    fn live() -> Record {
        Record { volumes: vec!["v".into()], deleted: Deleted::No, hash: String::new(), gen: String::new() }
    }

    /// An in-memory index scan with the same contract as `Index::scan`.
    fn mem_scan(keys: &BTreeMap<Vec<u8>, Record>, prefix: &[u8], start: &[u8], mut f: impl FnMut(&[u8], Record) -> Scan) {
        let mut from = start.max(prefix).to_vec();
        'seek: loop {
            for (k, rec) in keys.range::<[u8], _>((Bound::Included(from.as_slice()), Bound::Unbounded)) {
                if !k.starts_with(prefix) {
                    return;
                }
                match f(k, rec.clone()) {
                    Scan::Continue => {}
                    Scan::Stop => return,
                    Scan::SeekTo(next) => {
                        from = next;
                        continue 'seek;
                    }
                }
            }
            return;
        }
    }

    fn bucket_of(keys: &[&[u8]]) -> BTreeMap<Vec<u8>, Record> {
        keys.iter().map(|k| ([b"/b/".as_slice(), k].concat(), live())).collect()
    }

    fn page(keys: &BTreeMap<Vec<u8>, Record>, spec: &PageSpec) -> Page {
        let mut b = PageBuilder::new(spec, "b");
        if spec.max_keys > 0 {
            let (prefix, start) = (b.scan_prefix(), b.scan_start());
            mem_scan(keys, &prefix, &start, |k, r| b.visit(k, r));
        }
        b.finish()
    }

    fn spec(prefix: &str, delimiter: Option<&str>, max_keys: usize) -> PageSpec {
        PageSpec { prefix: prefix.into(), delimiter: delimiter.map(Into::into), max_keys, after: None }
    }

    /// Every page from the start, following `next` through a token round trip.
    fn all_pages(keys: &BTreeMap<Vec<u8>, Record>, mut s: PageSpec) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        loop {
            let p = page(keys, &s);
            pages.push(p.entries.iter().map(show).collect());
            match p.next {
                Some(m) => s.after = Some(decode_token(&encode_token(&m)).unwrap()),
                None => return pages,
            }
            assert!(pages.len() < 10_000, "no progress");
        }
    }

    fn show(e: &Entry) -> String {
        match e {
            Entry::Object { key, .. } => String::from_utf8_lossy(key).into_owned(),
            Entry::Prefix(p) => format!("[{}]", String::from_utf8_lossy(p)),
        }
    }

    fn flat(pages: &[Vec<String>]) -> Vec<String> {
        pages.concat()
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"a\xfe\xff\xff"), Some(b"a\xff".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn delimiter_groups_tricky_keys() {
        // "a/" is a key equal to its prefix group; "a.b" and "a0" sort just
        // before and at the group's successor; "é/" is multi-byte.
        let keys = bucket_of(&[b"a", b"a.b", b"a/", b"a/1", b"a/2/x", b"a0", b"b//c", b"b/", "é/x".as_bytes(), "é".as_bytes(), b"z/"]);
        let want = ["a", "a.b", "[a/]", "a0", "[b/]", "[z/]", "é", "[é/]"];
        let s = spec("", Some("/"), 1000);
        assert_eq!(flat(&all_pages(&keys, s.clone())), want);
        // Every page size gives the same listing, each entry exactly once.
        for n in 1..=9 {
            let pages = all_pages(&keys, PageSpec { max_keys: n, ..s.clone() });
            assert_eq!(flat(&pages), want, "max-keys {n}");
            assert!(pages.iter().all(|p| p.len() <= n));
        }
        // Within a prefix, the delimiter applies after it; a delimiter at
        // the very end of a key makes the key its own group.
        assert_eq!(flat(&all_pages(&keys, spec("a/", Some("/"), 2))), ["a/", "a/1", "[a/2/]"]);
        assert_eq!(flat(&all_pages(&keys, spec("b/", Some("/"), 1000))), ["b/", "[b//]"]);
        // Multi-character delimiters.
        let keys = bucket_of(&[b"x--y--z", b"x--w", b"x-y", b"q"]);
        assert_eq!(flat(&all_pages(&keys, spec("", Some("--"), 1))), ["q", "[x--]", "x-y"]);
    }

    #[test]
    fn no_delimiter_lists_every_key() {
        let names: Vec<String> = (0..57).map(|i| format!("k/{i:03}/{}", "é".repeat(i % 3))).collect();
        let refs: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        let keys = bucket_of(&refs);
        let mut sorted = names.clone();
        sorted.sort();
        for n in [1, 7, 56, 57, 58, 1000] {
            assert_eq!(flat(&all_pages(&keys, spec("", None, n))), sorted, "max-keys {n}");
        }
        // The last page is not truncated, even when it is exactly full.
        let p = page(&keys, &spec("", None, 57));
        assert_eq!((p.entries.len(), p.next), (57, None));
        let p = page(&keys, &spec("", None, 56));
        assert_eq!(p.next.as_deref(), Some(sorted[55].as_bytes()));
    }

    #[test]
    fn markers_and_dead_records() {
        let mut keys = bucket_of(&[b"a/1", b"a/2", b"b", b"c/1", b"d"]);
        keys.insert(b"/b/c/0".to_vec(), Record { deleted: Deleted::Soft, ..live() });
        keys.insert(b"/b/e/0".to_vec(), Record { deleted: Deleted::Soft, ..live() });
        keys.insert(b"/other".to_vec(), live());
        let d = spec("", Some("/"), 1000);
        assert_eq!(flat(&all_pages(&keys, d.clone())), ["[a/]", "b", "[c/]", "d"]);
        // A marker equal to a common prefix, or inside its group, skips the group.
        for m in ["a/", "a/1", "a/0"] {
            let p = page(&keys, &PageSpec { after: Some(m.into()), ..d.clone() });
            assert_eq!(p.entries.iter().map(show).collect::<Vec<_>>(), ["b", "[c/]", "d"], "after {m}");
        }
        let p = page(&keys, &PageSpec { after: Some(b"b".to_vec()), ..spec("", None, 1000) });
        assert_eq!(p.entries.iter().map(show).collect::<Vec<_>>(), ["c/1", "d"]);
        // A marker before the prefix starts at the prefix.
        let p = page(&keys, &PageSpec { after: Some(b"0".to_vec()), ..spec("c", None, 1000) });
        assert_eq!(p.entries.iter().map(show).collect::<Vec<_>>(), ["c/1"]);
        // A group of only dead keys is not listed; a last page ending on
        // dead keys is not truncated.
        let p = page(&keys, &PageSpec { after: Some(b"c/".to_vec()), ..spec("", Some("/"), 1) });
        assert_eq!((p.entries.iter().map(show).collect::<Vec<_>>(), p.next), (vec!["d".to_string()], None));
    }

    #[test]
    fn max_keys_zero_is_empty_and_not_truncated() {
        let keys = bucket_of(&[b"a", b"b"]);
        let p = page(&keys, &spec("", None, 0));
        assert!(p.entries.is_empty() && p.next.is_none());
    }

    #[test]
    fn tokens() {
        for m in [b"plain".as_slice(), b"", "é/😀 +%".as_bytes(), b"\xff\x00"] {
            assert_eq!(decode_token(&encode_token(m)).unwrap(), m);
        }
        assert!(matches!(decode_token("not base64!"), Err(S3Error::InvalidArgument { .. })));
    }

    #[test]
    fn url_encoding() {
        assert_eq!(encode(b"a b/c+d%e", true), "a%20b/c%2Bd%25e");
        assert_eq!(encode("é~_.-".as_bytes(), true), "%C3%A9~_.-");
        assert_eq!(encode(b"\x01<&>", true), "%01%3C%26%3E");
        assert_eq!(encode("é".as_bytes(), false), "é");
    }

    #[test]
    fn many_pages_never_repeat_a_prefix() {
        let names: Vec<String> = (0..300).map(|i| format!("d{}/f{i}", i % 17)).chain((0..40).map(|i| format!("top{i}"))).collect();
        let refs: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        let keys = bucket_of(&refs);
        for n in [1, 2, 5, 16, 17, 18, 100] {
            let all = flat(&all_pages(&keys, spec("", Some("/"), n)));
            let unique: BTreeSet<&String> = all.iter().collect();
            assert_eq!((all.len(), unique.len()), (57, 57), "max-keys {n}");
        }
    }

    /// A million keys under ten prefixes: a delimiter listing visits one key
    /// per prefix, each reached by one seek.
    #[test]
    fn delimiter_listing_seeks_past_groups() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), 1 << 30).unwrap();
        let rec = live();
        let keys: Vec<Vec<u8>> = (0..1_000_000u32).map(|i| format!("/b/dir{}/{:07}", i % 10, i).into_bytes()).collect();
        index.put_many(keys.iter().map(|k| (k.as_slice(), &rec))).unwrap();
        let s = spec("", Some("/"), 1000);
        let mut builder = PageBuilder::new(&s, "b");
        let (mut visits, mut seeks) = (0, 0);
        let (prefix, start) = (builder.scan_prefix(), builder.scan_start());
        index
            .scan(&prefix, Some(&start), |k, r| {
                visits += 1;
                let next = builder.visit(k, r);
                seeks += usize::from(matches!(next, Scan::SeekTo(_)));
                next
            })
            .unwrap();
        let p = builder.finish();
        assert_eq!(p.entries.len(), 10);
        assert_eq!(p.next, None);
        assert_eq!((visits, seeks), (10, 10));
        // Paging one prefix at a time costs the same per page.
        let pages = all_pages_index(&index, spec("", Some("/"), 3));
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    }

    fn all_pages_index(index: &Index, mut s: PageSpec) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        loop {
            let p = list_page(&index.snapshot().unwrap(), "b", &s).unwrap();
            pages.push(p.entries.iter().map(show).collect());
            match p.next {
                Some(m) => s.after = Some(m),
                None => return pages,
            }
        }
    }
}
