//! S3 XML: response documents written with a small escaping builder, and
//! request bodies parsed with quick-xml into typed values.
//!
//! Text is escaped by [`escape`]. Characters XML 1.0 cannot carry (C0
//! controls other than tab and line feed, U+FFFE, U+FFFF) are written as
//! numeric references (`&#x1;`), as AWS does: the key survives byte-exact for
//! parsers that accept them, and clients that must not see them ask for
//! `encoding-type=url` (the handlers URL-encode before calling these writers).
//! A carriage return is written `&#13;` so that parsers do not normalise it
//! into a line feed.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use quick_xml::events::Event;
use quick_xml::Reader;

use super::checksum::{ChecksumAlgorithm, ChecksumType, ChecksumValue};
use super::error::S3Error;
use crate::index::CorsRule;

pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// DeleteObjects accepts at most this many keys.
pub const MAX_DELETE_OBJECTS: usize = 1000;

/// Escape text content (also safe inside double-quoted attribute values).
pub fn escape(text: &str) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '&' | '<' | '>' | '"' | '\r' | '\u{FFFE}' | '\u{FFFF}') || (c < ' ' && c != '\t' && c != '\n');
    if !text.contains(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            c if needs(c) => out.push_str(&format!("&#x{:X};", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `2009-10-12T17:50:30.000Z` from Unix seconds.
pub fn iso8601(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// RFC 7231 date (`Last-Modified`) from Unix seconds, clamped to year 9999
/// (httpdate cannot go further).
pub fn http_date(secs: u64) -> String {
    const MAX: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.min(MAX)))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends elements to a document; every text goes through [`escape`].
struct Doc(String);

impl Doc {
    /// Declaration and `<root xmlns="…">`.
    fn new(root: &str) -> Doc {
        Doc(format!("{DECL}<{root} xmlns=\"{S3_NS}\">"))
    }

    fn open(&mut self, tag: &str) {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
    }

    fn close(&mut self, tag: &str) {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
    }

    fn elem(&mut self, tag: &str, text: &str) {
        self.open(tag);
        self.0.push_str(&escape(text));
        self.close(tag);
    }

    fn opt(&mut self, tag: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.elem(tag, t);
        }
    }

    fn num(&mut self, tag: &str, n: impl ToString) {
        self.elem(tag, &n.to_string());
    }

    fn bool(&mut self, tag: &str, b: bool) {
        self.elem(tag, if b { "true" } else { "false" });
    }

    fn etag(&mut self, etag: &str) {
        self.elem("ETag", &format!("\"{etag}\""));
    }

    fn date(&mut self, tag: &str, secs: u64) {
        self.elem(tag, &iso8601(secs));
    }

    fn owner(&mut self, tag: &str, owner: Option<&Owner>) {
        if let Some(o) = owner {
            self.open(tag);
            self.elem("ID", &o.id);
            self.elem("DisplayName", &o.display_name);
            self.close(tag);
        }
    }

    fn checksum(&mut self, value: Option<&ChecksumValue>, checksum_type: Option<ChecksumType>) {
        if let Some(v) = value {
            self.elem(v.algorithm.xml_element(), &v.value);
        }
        self.opt("ChecksumType", checksum_type.map(ChecksumType::as_str));
    }

    fn common_prefixes(&mut self, prefixes: &[String]) {
        for p in prefixes {
            self.open("CommonPrefixes");
            self.elem("Prefix", p);
            self.close("CommonPrefixes");
        }
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.0
    }
}

/// A document whose root is empty: `<Root xmlns="…"/>`.
fn empty_document(root: &str) -> String {
    format!("{DECL}<{root} xmlns=\"{S3_NS}\"/>")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    pub name: String,
    pub creation_date: u64,
    /// Given when the request had a ListBuckets parameter, as AWS does.
    pub region: Option<String>,
}

/// ListBuckets result, elements in the API reference's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAllMyBucketsResult {
    pub buckets: Vec<BucketEntry>,
    pub owner: Owner,
    /// Only when more buckets remain.
    pub continuation_token: Option<String>,
    /// The request's prefix, when it sent one.
    pub prefix: Option<String>,
}

impl ListAllMyBucketsResult {
    pub fn to_xml(&self) -> String {
        let root = "ListAllMyBucketsResult";
        let mut d = Doc::new(root);
        d.open("Buckets");
        for b in &self.buckets {
            d.open("Bucket");
            d.elem("Name", &b.name);
            d.date("CreationDate", b.creation_date);
            d.opt("BucketRegion", b.region.as_deref());
            d.close("Bucket");
        }
        d.close("Buckets");
        d.owner("Owner", Some(&self.owner));
        d.opt("ContinuationToken", self.continuation_token.as_deref());
        d.opt("Prefix", self.prefix.as_deref());
        d.finish(root)
    }
}

/// GetBucketLocation: `region` empty for us-east-1, which AWS answers with
/// an empty element.
pub fn location_constraint(region: &str) -> String {
    if region.is_empty() {
        return empty_document("LocationConstraint");
    }
    format!("{DECL}<LocationConstraint xmlns=\"{S3_NS}\">{}</LocationConstraint>", escape(region))
}

/// GetBucketVersioning: no Status for a bucket that never had versioning.
pub fn versioning_configuration(status: Option<&str>) -> String {
    match status {
        None => empty_document("VersioningConfiguration"),
        Some(status) => {
            let mut d = Doc::new("VersioningConfiguration");
            d.elem("Status", status);
            d.finish("VersioningConfiguration")
        }
    }
}

/// A PutBucketAcl / PutObjectAcl body (`AccessControlPolicy`): each grant's
/// grantee ID (`None` for a group URI or an e-mail grantee) and permission.
pub fn parse_acl_grants(body: &[u8]) -> Result<Vec<(Option<String>, String)>, S3Error> {
    let root = parse_root(body, "AccessControlPolicy")?;
    let list = root.child("AccessControlList").ok_or(S3Error::MalformedXML)?;
    list.children("Grant")
        .map(|g| {
            let grantee = g.child("Grantee")?;
            Some((grantee.child("ID").map(|n| n.text.trim().to_string()), g.child("Permission")?.text.trim().to_string()))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(S3Error::MalformedXML)
}

/// A PutBucketVersioning body: its `Status` and `MfaDelete` (either may be
/// absent).
pub fn parse_versioning(body: &[u8]) -> Result<(Option<String>, Option<String>), S3Error> {
    let root = parse_root(body, "VersioningConfiguration")?;
    let text = |name| root.child(name).map(|n| n.text.trim().to_string());
    Ok((text("Status"), text("MfaDelete")))
}

/// One object in a listing. `key` is written as given (URL-encoded by the
/// caller when `encoding-type=url`); `etag` is unquoted (hex or `hex-N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub last_modified: u64,
    pub etag: String,
    pub size: u64,
    pub owner: Option<Owner>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub checksum_type: Option<ChecksumType>,
}

impl ObjectEntry {
    /// Contents or Version body; `version` is `(VersionId, IsLatest)`.
    fn write(&self, d: &mut Doc, version: Option<(&str, bool)>) {
        d.elem("Key", &self.key);
        if let Some((id, latest)) = version {
            d.elem("VersionId", id);
            d.bool("IsLatest", latest);
        }
        d.date("LastModified", self.last_modified);
        d.etag(&self.etag);
        d.opt("ChecksumAlgorithm", self.checksum_algorithm.map(ChecksumAlgorithm::as_str));
        d.opt("ChecksumType", self.checksum_type.map(ChecksumType::as_str));
        d.num("Size", self.size);
        d.elem("StorageClass", "STANDARD");
        d.owner("Owner", self.owner.as_ref());
    }
}

/// The page fields that differ between ListObjects v1 and v2. An empty
/// marker or token the client sent is echoed (`Some("")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListPage {
    V1 { marker: String, next_marker: Option<String> },
    V2 { continuation_token: Option<String>, next_continuation_token: Option<String>, start_after: Option<String> },
}

/// ListObjects (v1) and ListObjectsV2 result; `KeyCount` is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBucketResult {
    pub name: String,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub encoding_type: Option<String>,
    pub page: ListPage,
    pub contents: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
}

impl ListBucketResult {
    pub fn to_xml(&self) -> String {
        let root = "ListBucketResult";
        let mut d = Doc::new(root);
        d.elem("Name", &self.name);
        d.elem("Prefix", &self.prefix);
        match &self.page {
            ListPage::V1 { marker, next_marker } => {
                d.elem("Marker", marker);
                d.opt("NextMarker", next_marker.as_deref());
            }
            ListPage::V2 { continuation_token, next_continuation_token, start_after } => {
                d.opt("ContinuationToken", continuation_token.as_deref());
                d.opt("NextContinuationToken", next_continuation_token.as_deref());
                d.opt("StartAfter", start_after.as_deref());
                d.num("KeyCount", self.contents.len() + self.common_prefixes.len());
            }
        }
        d.num("MaxKeys", self.max_keys);
        d.opt("Delimiter", self.delimiter.as_deref());
        d.bool("IsTruncated", self.is_truncated);
        d.opt("EncodingType", self.encoding_type.as_deref());
        for o in &self.contents {
            d.open("Contents");
            o.write(&mut d, None);
            d.close("Contents");
        }
        d.common_prefixes(&self.common_prefixes);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub object: ObjectEntry,
    /// `null` on an unversioned bucket.
    pub version_id: String,
    pub is_latest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListVersionsResult {
    pub name: String,
    pub prefix: String,
    pub key_marker: String,
    pub version_id_marker: String,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
    pub max_keys: u32,
    pub delimiter: Option<String>,
    pub is_truncated: bool,
    pub encoding_type: Option<String>,
    pub versions: Vec<VersionEntry>,
    pub common_prefixes: Vec<String>,
}

impl ListVersionsResult {
    pub fn to_xml(&self) -> String {
        let root = "ListVersionsResult";
        let mut d = Doc::new(root);
        d.elem("Name", &self.name);
        d.elem("Prefix", &self.prefix);
        d.elem("KeyMarker", &self.key_marker);
        d.elem("VersionIdMarker", &self.version_id_marker);
        d.opt("NextKeyMarker", self.next_key_marker.as_deref());
        d.opt("NextVersionIdMarker", self.next_version_id_marker.as_deref());
        d.num("MaxKeys", self.max_keys);
        d.opt("Delimiter", self.delimiter.as_deref());
        d.bool("IsTruncated", self.is_truncated);
        d.opt("EncodingType", self.encoding_type.as_deref());
        for v in &self.versions {
            d.open("Version");
            v.object.write(&mut d, Some((&v.version_id, v.is_latest)));
            d.close("Version");
        }
        d.common_prefixes(&self.common_prefixes);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyObjectResult {
    pub etag: String,
    pub last_modified: u64,
    pub checksum: Option<ChecksumValue>,
    pub checksum_type: Option<ChecksumType>,
}

impl CopyObjectResult {
    pub fn to_xml(&self) -> String {
        let root = "CopyObjectResult";
        let mut d = Doc::new(root);
        d.date("LastModified", self.last_modified);
        d.etag(&self.etag);
        d.checksum(self.checksum.as_ref(), self.checksum_type);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPartResult {
    pub etag: String,
    pub last_modified: u64,
    pub checksum: Option<ChecksumValue>,
}

impl CopyPartResult {
    pub fn to_xml(&self) -> String {
        let root = "CopyPartResult";
        let mut d = Doc::new(root);
        d.date("LastModified", self.last_modified);
        d.etag(&self.etag);
        d.checksum(self.checksum.as_ref(), None);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiateMultipartUploadResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
}

impl InitiateMultipartUploadResult {
    pub fn to_xml(&self) -> String {
        let root = "InitiateMultipartUploadResult";
        let mut d = Doc::new(root);
        d.elem("Bucket", &self.bucket);
        d.elem("Key", &self.key);
        d.elem("UploadId", &self.upload_id);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteMultipartUploadResult {
    pub location: String,
    pub bucket: String,
    pub key: String,
    /// Unquoted `hex-N`.
    pub etag: String,
    pub checksum: Option<ChecksumValue>,
    pub checksum_type: Option<ChecksumType>,
}

impl CompleteMultipartUploadResult {
    pub fn to_xml(&self) -> String {
        let root = "CompleteMultipartUploadResult";
        let mut d = Doc::new(root);
        d.elem("Location", &self.location);
        d.elem("Bucket", &self.bucket);
        d.elem("Key", &self.key);
        d.etag(&self.etag);
        d.checksum(self.checksum.as_ref(), self.checksum_type);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified: u64,
    pub etag: String,
    pub size: u64,
    pub checksum: Option<ChecksumValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPartsResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub part_number_marker: u32,
    pub next_part_number_marker: u32,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub parts: Vec<PartEntry>,
    /// Written as both Initiator and Owner.
    pub owner: Option<Owner>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub checksum_type: Option<ChecksumType>,
}

impl ListPartsResult {
    pub fn to_xml(&self) -> String {
        let root = "ListPartsResult";
        let mut d = Doc::new(root);
        d.elem("Bucket", &self.bucket);
        d.elem("Key", &self.key);
        d.elem("UploadId", &self.upload_id);
        d.num("PartNumberMarker", self.part_number_marker);
        d.num("NextPartNumberMarker", self.next_part_number_marker);
        d.num("MaxParts", self.max_parts);
        d.bool("IsTruncated", self.is_truncated);
        for p in &self.parts {
            d.open("Part");
            d.num("PartNumber", p.part_number);
            d.date("LastModified", p.last_modified);
            d.etag(&p.etag);
            d.num("Size", p.size);
            d.checksum(p.checksum.as_ref(), None);
            d.close("Part");
        }
        d.owner("Initiator", self.owner.as_ref());
        d.owner("Owner", self.owner.as_ref());
        d.elem("StorageClass", "STANDARD");
        d.opt("ChecksumAlgorithm", self.checksum_algorithm.map(ChecksumAlgorithm::as_str));
        d.opt("ChecksumType", self.checksum_type.map(ChecksumType::as_str));
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiated: u64,
    /// Written as both Initiator and Owner.
    pub owner: Option<Owner>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub checksum_type: Option<ChecksumType>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMultipartUploadsResult {
    pub bucket: String,
    pub key_marker: String,
    pub upload_id_marker: String,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_uploads: u32,
    pub is_truncated: bool,
    pub encoding_type: Option<String>,
    pub uploads: Vec<UploadEntry>,
    pub common_prefixes: Vec<String>,
}

impl ListMultipartUploadsResult {
    pub fn to_xml(&self) -> String {
        let root = "ListMultipartUploadsResult";
        let mut d = Doc::new(root);
        d.elem("Bucket", &self.bucket);
        d.elem("KeyMarker", &self.key_marker);
        d.elem("UploadIdMarker", &self.upload_id_marker);
        d.opt("NextKeyMarker", self.next_key_marker.as_deref());
        d.opt("NextUploadIdMarker", self.next_upload_id_marker.as_deref());
        d.elem("Prefix", &self.prefix);
        d.opt("Delimiter", self.delimiter.as_deref());
        d.num("MaxUploads", self.max_uploads);
        d.bool("IsTruncated", self.is_truncated);
        d.opt("EncodingType", self.encoding_type.as_deref());
        for u in &self.uploads {
            d.open("Upload");
            d.elem("Key", &u.key);
            d.elem("UploadId", &u.upload_id);
            d.owner("Initiator", u.owner.as_ref());
            d.owner("Owner", u.owner.as_ref());
            d.elem("StorageClass", "STANDARD");
            d.date("Initiated", u.initiated);
            d.opt("ChecksumAlgorithm", u.checksum_algorithm.map(ChecksumAlgorithm::as_str));
            d.opt("ChecksumType", u.checksum_type.map(ChecksumType::as_str));
            d.close("Upload");
        }
        d.common_prefixes(&self.common_prefixes);
        d.finish(root)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedEntry {
    pub key: String,
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteErrorEntry {
    pub key: String,
    pub version_id: Option<String>,
    pub error: S3Error,
}

/// DeleteObjects result; with Quiet the caller leaves `deleted` empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: Vec<DeletedEntry>,
    pub errors: Vec<DeleteErrorEntry>,
}

impl DeleteResult {
    pub fn to_xml(&self) -> String {
        let root = "DeleteResult";
        let mut d = Doc::new(root);
        for e in &self.deleted {
            d.open("Deleted");
            d.elem("Key", &e.key);
            d.opt("VersionId", e.version_id.as_deref());
            d.close("Deleted");
        }
        for e in &self.errors {
            d.open("Error");
            d.elem("Key", &e.key);
            d.opt("VersionId", e.version_id.as_deref());
            d.elem("Code", e.error.aws_code());
            d.elem("Message", &e.error.to_string());
            d.close("Error");
        }
        d.finish(root)
    }
}

/// The `<Error>` document (no namespace, as AWS sends it).
pub fn error_document(code: &str, message: &str, extra: &[(&str, String)], resource: &str, request_id: &str) -> String {
    let mut d = Doc(format!("{DECL}<Error>"));
    d.elem("Code", code);
    d.elem("Message", message);
    for (tag, value) in extra {
        d.elem(tag, value);
    }
    d.elem("Resource", resource);
    d.elem("RequestId", request_id);
    d.finish("Error")
}

// ---- Requests ----

/// A parsed element: local name (namespace prefix dropped), its own text
/// (unescaped, not trimmed) and child elements.
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Deeper nesting than any S3 request body has is refused.
const MAX_DEPTH: usize = 8;

/// Parse a whole body into its root element, which must be named `root`
/// (any namespace, or none). Any fault is `MalformedXML`.
fn parse_root(body: &[u8], root: &str) -> Result<Node, S3Error> {
    let text = std::str::from_utf8(body).map_err(|_| S3Error::MalformedXML)?;
    let node = parse_tree(text.trim_start_matches('\u{FEFF}')).ok_or(S3Error::MalformedXML)?;
    if node.name != root {
        return Err(S3Error::MalformedXML);
    }
    Ok(node)
}

fn parse_tree(text: &str) -> Option<Node> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let new_node = |name: &[u8]| Some(Node { name: String::from_utf8(name.to_vec()).ok()?, text: String::new(), children: Vec::new() });
    // Places a finished element under its parent, or as the only root.
    let attach = |stack: &mut Vec<Node>, root: &mut Option<Node>, node: Node| match stack.last_mut() {
        Some(parent) => {
            parent.children.push(node);
            Some(())
        }
        None if root.is_none() => {
            *root = Some(node);
            Some(())
        }
        None => None,
    };
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH || (stack.is_empty() && root.is_some()) {
                    return None;
                }
                stack.push(new_node(e.local_name().as_ref())?);
            }
            Event::Empty(e) => attach(&mut stack, &mut root, new_node(e.local_name().as_ref())?)?,
            Event::End(_) => {
                let node = stack.pop()?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::Text(t) => {
                let s = t.xml10_content().ok()?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return None,
                }
            }
            Event::CData(c) => stack.last_mut()?.text.push_str(&c.xml10_content().ok()?),
            Event::GeneralRef(r) => {
                let top = stack.last_mut()?;
                match r.resolve_char_ref().ok()? {
                    Some(c) => top.text.push(c),
                    None => top.text.push_str(quick_xml::escape::resolve_predefined_entity(&r.decode().ok()?)?),
                }
            }
            // A DTD could declare entities; S3 bodies never carry one.
            Event::DocType(_) => return None,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root
}

/// One `<Part>` of a CompleteMultipartUpload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// As sent, usually quoted; compare after trimming `"`.
    pub etag: String,
    /// Every `Checksum*` element of the part (normally at most one).
    pub checksums: Vec<ChecksumValue>,
}

impl CompletedPart {
    pub fn checksum(&self, algorithm: ChecksumAlgorithm) -> Option<&str> {
        self.checksums.iter().find(|c| c.algorithm == algorithm).map(|c| c.value.as_str())
    }
}

/// The parts of a CompleteMultipartUpload body, in document order (order
/// and range checks are the caller's: `InvalidPartOrder`, `InvalidPart`).
/// No part, or a part without PartNumber or ETag, is `MalformedXML`.
pub fn parse_complete_multipart_upload(body: &[u8]) -> Result<Vec<CompletedPart>, S3Error> {
    let root = parse_root(body, "CompleteMultipartUpload")?;
    let parts = root
        .children("Part")
        .map(|p| {
            let part_number = p.child("PartNumber")?.text.trim().parse().ok()?;
            let etag = p.child("ETag")?.text.trim().to_string();
            let checksums = ChecksumAlgorithm::ALL
                .into_iter()
                .filter_map(|a| p.child(a.xml_element()).map(|n| ChecksumValue { algorithm: a, value: n.text.trim().to_string() }))
                .collect();
            Some(CompletedPart { part_number, etag, checksums })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(S3Error::MalformedXML)?;
    if parts.is_empty() {
        return Err(S3Error::MalformedXML);
    }
    Ok(parts)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIdentifier {
    /// Exactly as sent: keys may begin or end with spaces.
    pub key: String,
    pub version_id: Option<String>,
    /// Delete only if the object's ETag is this (`*`: if it exists), as
    /// DeleteObject's `If-Match`.
    pub etag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<ObjectIdentifier>,
}

/// A DeleteObjects body: 1 to 1000 objects, each with a Key, or `MalformedXML`.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = parse_root(body, "Delete")?;
    let quiet = match root.child("Quiet").map(|q| q.text.trim()) {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("true") => true,
        Some(q) if q.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(S3Error::MalformedXML),
    };
    let objects = root
        .children("Object")
        .map(|o| {
            Some(ObjectIdentifier {
                key: o.child("Key")?.text.clone(),
                version_id: o.child("VersionId").map(|v| v.text.trim().to_string()),
                etag: o.child("ETag").map(|v| v.text.trim().to_string()),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(S3Error::MalformedXML)?;
    if objects.is_empty() || objects.len() > MAX_DELETE_OBJECTS {
        return Err(S3Error::MalformedXML);
    }
    Ok(DeleteRequest { quiet, objects })
}

/// The LocationConstraint of a CreateBucket body; an empty body, or an
/// empty or absent element, is `None`.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<Option<String>, S3Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let root = parse_root(body, "CreateBucketConfiguration")?;
    Ok(root.child("LocationConstraint").map(|l| l.text.trim().to_string()).filter(|l| !l.is_empty()))
}

/// A `<CORSConfiguration>` body: its rules, in order (checks on their
/// contents are `cors::validate`'s). No rule, or a rule without an origin
/// or a method, is `MalformedXML`.
pub fn parse_cors_configuration(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let root = parse_root(body, "CORSConfiguration")?;
    let texts = |rule: &Node, name: &str| rule.children(name).map(|n| n.text.trim().to_string()).collect::<Vec<_>>();
    let rules = root
        .children("CORSRule")
        .map(|r| {
            let max_age_seconds = match r.child("MaxAgeSeconds") {
                Some(n) => Some(n.text.trim().parse().ok()?),
                None => None,
            };
            let rule = CorsRule {
                id: r.child("ID").map(|n| n.text.trim().to_string()),
                allowed_origins: texts(r, "AllowedOrigin"),
                allowed_methods: texts(r, "AllowedMethod"),
                allowed_headers: texts(r, "AllowedHeader"),
                expose_headers: texts(r, "ExposeHeader"),
                max_age_seconds,
            };
            (!rule.allowed_origins.is_empty() && !rule.allowed_methods.is_empty()).then_some(rule)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(S3Error::MalformedXML)?;
    if rules.is_empty() {
        return Err(S3Error::MalformedXML);
    }
    Ok(rules)
}

/// A `<Tagging>` body (PutObjectTagging, a POST form's `tagging` field):
/// its tags in order. Without `<TagSet>`, or a tag without `<Key>` or
/// `<Value>`, it is `MalformedXML` (the rules on the tags are
/// `tagging::validate`'s).
pub fn parse_tagging(body: &[u8]) -> Result<Vec<(String, String)>, S3Error> {
    let root = parse_root(body, "Tagging")?;
    let set = root.child("TagSet").ok_or(S3Error::MalformedXML)?;
    set.children("Tag")
        .map(|t| Some((t.child("Key")?.text.clone(), t.child("Value")?.text.clone())))
        .collect::<Option<Vec<_>>>()
        .ok_or(S3Error::MalformedXML)
}

/// GetObjectTagging's answer (an empty `TagSet` when there are none).
pub fn tagging(tags: &[(String, String)]) -> String {
    let mut d = Doc::new("Tagging");
    d.open("TagSet");
    for (key, value) in tags {
        d.open("Tag");
        d.elem("Key", key);
        d.elem("Value", value);
        d.close("Tag");
    }
    d.close("TagSet");
    d.finish("Tagging")
}

/// One part as GetObjectAttributes lists it.
pub struct AttributePart {
    pub number: u32,
    pub size: u64,
    pub checksum: Option<ChecksumValue>,
}

/// The page of parts GetObjectAttributes answers for a multipart object.
pub struct AttributeParts {
    pub count: usize,
    pub marker: u32,
    pub max: usize,
    pub truncated: bool,
    pub parts: Vec<AttributePart>,
}

/// GetObjectAttributes' answer: each attribute asked for that the object
/// has (`ETag` without quotes, as AWS writes it here).
pub struct ObjectAttributes {
    pub etag: Option<String>,
    pub checksum: Option<(ChecksumValue, ChecksumType)>,
    pub parts: Option<AttributeParts>,
    pub storage_class: bool,
    pub size: Option<u64>,
}

impl ObjectAttributes {
    pub fn to_xml(&self) -> String {
        let mut d = Doc::new("GetObjectAttributesResponse");
        d.opt("ETag", self.etag.as_deref());
        if let Some((value, kind)) = &self.checksum {
            d.open("Checksum");
            d.checksum(Some(value), Some(*kind));
            d.close("Checksum");
        }
        if let Some(p) = &self.parts {
            d.open("ObjectParts");
            d.num("PartsCount", p.count);
            d.num("PartNumberMarker", p.marker);
            if let Some(last) = p.parts.last().filter(|_| p.truncated) {
                d.num("NextPartNumberMarker", last.number);
            }
            d.num("MaxParts", p.max);
            d.bool("IsTruncated", p.truncated);
            for part in &p.parts {
                d.open("Part");
                d.num("PartNumber", part.number);
                d.num("Size", part.size);
                if let Some(c) = &part.checksum {
                    d.elem(c.algorithm.xml_element(), &c.value);
                }
                d.close("Part");
            }
            d.close("ObjectParts");
        }
        if self.storage_class {
            d.elem("StorageClass", "STANDARD");
        }
        if let Some(size) = self.size {
            d.num("ObjectSize", size);
        }
        d.finish("GetObjectAttributesResponse")
    }
}

/// POST Object's answer with `success_action_status=201`.
pub fn post_response(location: &str, bucket: &str, key: &str, etag: &str) -> String {
    format!(
        "{DECL}<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
        escape(location),
        escape(bucket),
        escape(key),
        escape(etag)
    )
}

/// GetBucketCors' answer.
pub fn cors_configuration(rules: &[CorsRule]) -> String {
    let mut out = format!("{DECL}<CORSConfiguration xmlns=\"{S3_NS}\">");
    for r in rules {
        out.push_str("<CORSRule>");
        if let Some(id) = &r.id {
            out.push_str(&format!("<ID>{}</ID>", escape(id)));
        }
        for (name, values) in [("AllowedHeader", &r.allowed_headers), ("AllowedMethod", &r.allowed_methods), ("AllowedOrigin", &r.allowed_origins), ("ExposeHeader", &r.expose_headers)] {
            for v in values {
                out.push_str(&format!("<{name}>{}</{name}>", escape(v)));
            }
        }
        if let Some(age) = r.max_age_seconds {
            out.push_str(&format!("<MaxAgeSeconds>{age}</MaxAgeSeconds>"));
        }
        out.push_str("</CORSRule>");
    }
    out.push_str("</CORSConfiguration>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(root: &str) -> String {
        format!("{DECL}<{root} xmlns=\"{S3_NS}\">")
    }

    /// The document parses back with quick-xml and has the given root.
    fn well_formed(doc: &str, root: &str) {
        let node = parse_tree(doc).unwrap_or_else(|| panic!("not well-formed: {doc}"));
        assert_eq!(node.name, root);
    }

    fn entry(key: &str) -> ObjectEntry {
        ObjectEntry {
            key: key.into(),
            last_modified: 1_255_369_830,
            etag: "fba9dede5f27731c9771645a39863328".into(),
            size: 434_234,
            owner: None,
            checksum_algorithm: None,
            checksum_type: None,
        }
    }

    #[test]
    fn escaping() {
        assert!(matches!(escape("plain key/é✓"), Cow::Borrowed(_)));
        assert_eq!(escape("a&b<c>d\"e"), "a&amp;b&lt;c&gt;d&quot;e");
        assert_eq!(escape("tab\tnl\ncr\r"), "tab\tnl\ncr&#13;");
        assert_eq!(escape("\u{1}\u{1F}\u{FFFF}"), "&#x1;&#x1F;&#xFFFF;");
        // What we escape parses back byte-exact.
        let key = "a&b <c> \"q\" 'x' \r\n\t é ✓ 😀 \u{1}";
        let doc = format!("<Delete><Object><Key>{}</Key></Object></Delete>", escape(key));
        assert_eq!(parse_delete(doc.as_bytes()).unwrap().objects[0].key, key);
    }

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_255_369_830), "2009-10-12T17:50:30.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_107_542_399), "2100-02-28T23:59:59.000Z");
        assert_eq!(http_date(1_255_369_830), "Mon, 12 Oct 2009 17:50:30 GMT");
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert!(iso8601(u64::MAX).ends_with(".000Z"));
    }

    #[test]
    fn list_all_my_buckets() {
        let owner = Owner { id: "id1".into(), display_name: "me".into() };
        let b1 = BucketEntry { name: "b1".into(), creation_date: 1_255_369_830, region: None };
        let doc = ListAllMyBucketsResult { buckets: vec![b1.clone()], owner: owner.clone(), continuation_token: None, prefix: None }.to_xml();
        assert_eq!(
            doc,
            format!(
                "{}<Buckets><Bucket><Name>b1</Name><CreationDate>2009-10-12T17:50:30.000Z</CreationDate></Bucket></Buckets>\
                 <Owner><ID>id1</ID><DisplayName>me</DisplayName></Owner></ListAllMyBucketsResult>",
                head("ListAllMyBucketsResult")
            )
        );
        well_formed(&doc, "ListAllMyBucketsResult");
        let paged = ListAllMyBucketsResult {
            buckets: vec![BucketEntry { region: Some("us-east-1".into()), ..b1 }],
            owner,
            continuation_token: Some("YjE=".into()),
            prefix: Some("b&".into()),
        }
        .to_xml();
        assert_eq!(
            paged,
            format!(
                "{}<Buckets><Bucket><Name>b1</Name><CreationDate>2009-10-12T17:50:30.000Z</CreationDate><BucketRegion>us-east-1</BucketRegion>\
                 </Bucket></Buckets><Owner><ID>id1</ID><DisplayName>me</DisplayName></Owner><ContinuationToken>YjE=</ContinuationToken>\
                 <Prefix>b&amp;</Prefix></ListAllMyBucketsResult>",
                head("ListAllMyBucketsResult")
            )
        );
        well_formed(&paged, "ListAllMyBucketsResult");
    }

    #[test]
    fn small_documents() {
        assert_eq!(location_constraint(""), format!("{DECL}<LocationConstraint xmlns=\"{S3_NS}\"/>"));
        assert_eq!(location_constraint("eu-west-1"), format!("{}eu-west-1</LocationConstraint>", head("LocationConstraint")));
        assert_eq!(versioning_configuration(None), format!("{DECL}<VersioningConfiguration xmlns=\"{S3_NS}\"/>"));
        well_formed(&versioning_configuration(None), "VersioningConfiguration");
        let suspended = versioning_configuration(Some("Suspended"));
        assert_eq!(suspended, format!("{}<Status>Suspended</Status></VersioningConfiguration>", head("VersioningConfiguration")));
        let body = b"<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Suspended</Status></VersioningConfiguration>";
        assert_eq!(parse_versioning(body).unwrap(), (Some("Suspended".into()), None));
        assert!(parse_versioning(b"<Other/>").is_err());
        let acl = br#"<AccessControlPolicy><Owner><ID>ak</ID></Owner><AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>ak</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant><Grant><Grantee xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>"#;
        assert_eq!(parse_acl_grants(acl).unwrap(), vec![(Some("ak".into()), "FULL_CONTROL".into()), (None, "READ".into())]);
        assert!(parse_acl_grants(b"<AccessControlPolicy/>").is_err());
    }

    #[test]
    fn list_v1() {
        let r = ListBucketResult {
            name: "b".into(),
            prefix: "".into(),
            delimiter: Some("/".into()),
            max_keys: 2,
            is_truncated: true,
            encoding_type: None,
            page: ListPage::V1 { marker: "".into(), next_marker: Some("a&b".into()) },
            contents: vec![entry("a&b")],
            common_prefixes: vec!["<p>/".into()],
        };
        let doc = r.to_xml();
        assert_eq!(
            doc,
            format!(
                "{}<Name>b</Name><Prefix></Prefix><Marker></Marker><NextMarker>a&amp;b</NextMarker><MaxKeys>2</MaxKeys>\
                 <Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key>\
                 <LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>\
                 <Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>\
                 <CommonPrefixes><Prefix>&lt;p&gt;/</Prefix></CommonPrefixes></ListBucketResult>",
                head("ListBucketResult")
            )
        );
        well_formed(&doc, "ListBucketResult");
    }

    #[test]
    fn list_v2() {
        let mut e = entry("caf%C3%A9");
        e.owner = Some(Owner { id: "o".into(), display_name: "d".into() });
        e.checksum_algorithm = Some(ChecksumAlgorithm::Crc32);
        e.checksum_type = Some(ChecksumType::FullObject);
        let r = ListBucketResult {
            name: "b".into(),
            prefix: "p".into(),
            delimiter: None,
            max_keys: 1000,
            is_truncated: false,
            encoding_type: Some("url".into()),
            page: ListPage::V2 { continuation_token: Some("".into()), next_continuation_token: None, start_after: None },
            contents: vec![e],
            common_prefixes: vec!["x/".into()],
        };
        let doc = r.to_xml();
        for part in [
            "<ContinuationToken></ContinuationToken><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><EncodingType>url</EncodingType>",
            "<Key>caf%C3%A9</Key>",
            "<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType><Size>434234</Size>",
            "<Owner><ID>o</ID><DisplayName>d</DisplayName></Owner></Contents>",
        ] {
            assert!(doc.contains(part), "{part} in {doc}");
        }
        assert!(!doc.contains("NextContinuationToken") && !doc.contains("Delimiter"));
        well_formed(&doc, "ListBucketResult");
    }

    #[test]
    fn list_versions() {
        let r = ListVersionsResult {
            name: "b".into(),
            prefix: "".into(),
            key_marker: "".into(),
            version_id_marker: "".into(),
            next_key_marker: None,
            next_version_id_marker: None,
            max_keys: 1000,
            delimiter: None,
            is_truncated: false,
            encoding_type: Some("url".into()),
            versions: vec![VersionEntry { object: entry("k"), version_id: "null".into(), is_latest: true }],
            common_prefixes: vec![],
        };
        let doc = r.to_xml();
        assert!(doc.contains("<Version><Key>k</Key><VersionId>null</VersionId><IsLatest>true</IsLatest><LastModified>"));
        assert!(doc.contains("<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys>"));
        well_formed(&doc, "ListVersionsResult");
    }

    #[test]
    fn multipart_documents() {
        let crc = ChecksumValue { algorithm: ChecksumAlgorithm::Crc32, value: "1Fu2mQ==-2".into() };
        let doc = InitiateMultipartUploadResult { bucket: "b".into(), key: "a<b".into(), upload_id: "U1".into() }.to_xml();
        assert_eq!(
            doc,
            format!("{}<Bucket>b</Bucket><Key>a&lt;b</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>", head("InitiateMultipartUploadResult"))
        );
        let doc = CompleteMultipartUploadResult {
            location: "http://h/b/k".into(),
            bucket: "b".into(),
            key: "k".into(),
            etag: "abc-2".into(),
            checksum: Some(crc.clone()),
            checksum_type: Some(ChecksumType::Composite),
        }
        .to_xml();
        assert!(doc.ends_with(
            "<ETag>&quot;abc-2&quot;</ETag><ChecksumCRC32>1Fu2mQ==-2</ChecksumCRC32><ChecksumType>COMPOSITE</ChecksumType></CompleteMultipartUploadResult>"
        ));
        well_formed(&doc, "CompleteMultipartUploadResult");

        let doc = ListPartsResult {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: "U1".into(),
            part_number_marker: 0,
            next_part_number_marker: 1,
            max_parts: 1000,
            is_truncated: false,
            parts: vec![PartEntry {
                part_number: 1,
                last_modified: 0,
                etag: "e1".into(),
                size: 5,
                checksum: Some(ChecksumValue { algorithm: ChecksumAlgorithm::Sha256, value: "x=".into() }),
            }],
            owner: Some(Owner { id: "o".into(), display_name: "d".into() }),
            checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
            checksum_type: Some(ChecksumType::Composite),
        }
        .to_xml();
        assert!(doc.contains(
            "<Part><PartNumber>1</PartNumber><LastModified>1970-01-01T00:00:00.000Z</LastModified><ETag>&quot;e1&quot;</ETag><Size>5</Size><ChecksumSHA256>x=</ChecksumSHA256></Part><Initiator>"
        ));
        assert!(doc.contains("<StorageClass>STANDARD</StorageClass><ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>COMPOSITE</ChecksumType>"));
        well_formed(&doc, "ListPartsResult");

        let doc = ListMultipartUploadsResult {
            bucket: "b".into(),
            key_marker: "".into(),
            upload_id_marker: "".into(),
            next_key_marker: Some("k".into()),
            next_upload_id_marker: Some("U1".into()),
            prefix: "".into(),
            delimiter: None,
            max_uploads: 1,
            is_truncated: true,
            encoding_type: None,
            uploads: vec![UploadEntry {
                key: "k".into(),
                upload_id: "U1".into(),
                initiated: 0,
                owner: None,
                checksum_algorithm: Some(ChecksumAlgorithm::Crc64Nvme),
                checksum_type: Some(ChecksumType::FullObject),
            }],
            common_prefixes: vec![],
        }
        .to_xml();
        assert!(doc.contains("<Upload><Key>k</Key><UploadId>U1</UploadId><StorageClass>STANDARD</StorageClass><Initiated>1970-01-01T00:00:00.000Z</Initiated><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"));
        well_formed(&doc, "ListMultipartUploadsResult");
    }

    #[test]
    fn copy_documents() {
        let doc = CopyObjectResult { etag: "e".into(), last_modified: 1_255_369_830, checksum: None, checksum_type: None }.to_xml();
        assert_eq!(
            doc,
            format!(
                "{}<LastModified>2009-10-12T17:50:30.000Z</LastModified><ETag>&quot;e&quot;</ETag></CopyObjectResult>",
                head("CopyObjectResult")
            )
        );
        let crc = ChecksumValue { algorithm: ChecksumAlgorithm::Crc32c, value: "yZRlqg==".into() };
        let doc = CopyPartResult { etag: "e".into(), last_modified: 0, checksum: Some(crc) }.to_xml();
        assert!(doc.ends_with("<ChecksumCRC32C>yZRlqg==</ChecksumCRC32C></CopyPartResult>"));
        well_formed(&doc, "CopyPartResult");
    }

    #[test]
    fn delete_result() {
        let doc = DeleteResult {
            deleted: vec![DeletedEntry { key: "a&b".into(), version_id: Some("null".into()) }],
            errors: vec![DeleteErrorEntry {
                key: "c".into(),
                version_id: None,
                error: S3Error::AccessDenied("Access Denied".into()),
            }],
        }
        .to_xml();
        assert_eq!(
            doc,
            format!(
                "{}<Deleted><Key>a&amp;b</Key><VersionId>null</VersionId></Deleted>\
                 <Error><Key>c</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>",
                head("DeleteResult")
            )
        );
    }

    #[test]
    fn cors_configuration_round_trips() {
        let body = format!(
            "{}<CORSRule><ID>web</ID><AllowedOrigin>https://a.example</AllowedOrigin><AllowedOrigin>*.b.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
            head("CORSConfiguration")
        );
        let rules = parse_cors_configuration(body.as_bytes()).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].allowed_origins, ["https://a.example", "*.b.example"]);
        assert_eq!((rules[0].max_age_seconds, rules[1].id.as_deref()), (Some(3000), None));
        let doc = cors_configuration(&rules);
        well_formed(&doc, "CORSConfiguration");
        assert_eq!(parse_cors_configuration(doc.as_bytes()).unwrap(), rules);
        for bad in ["<CORSConfiguration/>", "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
                    "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>x</MaxAgeSeconds></CORSRule></CORSConfiguration>"] {
            assert_eq!(parse_cors_configuration(bad.as_bytes()), Err(S3Error::MalformedXML), "{bad}");
        }
    }

    #[test]
    fn error_doc() {
        let doc = error_document("NoSuchKey", "m", &[("Key", "k".into())], "/b/k", "R");
        assert_eq!(
            doc,
            format!("{DECL}<Error><Code>NoSuchKey</Code><Message>m</Message><Key>k</Key><Resource>/b/k</Resource><RequestId>R</RequestId></Error>")
        );
        well_formed(&doc, "Error");
    }

    #[test]
    fn complete_multipart_upload() {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"{S3_NS}\">\n\
             <Part><ETag>\"a54357aff0632cce46d942af68356b38\"</ETag><PartNumber>1</PartNumber>\
             <ChecksumCRC32>DUoRhQ==</ChecksumCRC32></Part>\n\
             <Part>\n  <PartNumber> 2 </PartNumber>\n  <ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag>\n</Part>\n\
             </CompleteMultipartUpload>"
        );
        let parts = parse_complete_multipart_upload(body.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].part_number, 1);
        assert_eq!(parts[0].etag, "\"a54357aff0632cce46d942af68356b38\"");
        assert_eq!(parts[0].checksum(ChecksumAlgorithm::Crc32), Some("DUoRhQ=="));
        assert_eq!(parts[0].checksum(ChecksumAlgorithm::Sha256), None);
        assert_eq!(parts[1].part_number, 2);
        assert_eq!(parts[1].etag, "\"0c78aef83f66abc1fa1e8477f296d394\"");
        assert!(parts[1].checksums.is_empty());

        let no_ns = "<CompleteMultipartUpload><Part><PartNumber>3</PartNumber><ETag>e</ETag>\
                     <ChecksumCRC64NVME>jSnVw/bqjr4=</ChecksumCRC64NVME></Part></CompleteMultipartUpload>";
        let parts = parse_complete_multipart_upload(no_ns.as_bytes()).unwrap();
        assert_eq!(parts[0].checksum(ChecksumAlgorithm::Crc64Nvme), Some("jSnVw/bqjr4="));

        for bad in [
            "",
            "<CompleteMultipartUpload></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>",
            "<Delete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Delete>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload><x/>",
        ] {
            assert_eq!(parse_complete_multipart_upload(bad.as_bytes()), Err(S3Error::MalformedXML), "{bad}");
        }
    }

    #[test]
    fn delete_request() {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"{S3_NS}\"><Quiet>true</Quiet>\
             <Object><Key>a &amp; b</Key></Object>\
             <Object><Key>&lt;tag&gt; caf\u{e9} \u{1F600}</Key><VersionId>null</VersionId></Object>\
             <Object><Key> spaced </Key><ETag>\"abc\"</ETag></Object>\
             <Object><Key>line&#13;&#10;end</Key></Object>\
             <Object><Key><![CDATA[raw <cdata> & stuff]]></Key></Object></Delete>"
        );
        let d = parse_delete(body.as_bytes()).unwrap();
        assert!(d.quiet);
        let keys: Vec<&str> = d.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a & b", "<tag> caf\u{e9} \u{1F600}", " spaced ", "line\r\nend", "raw <cdata> & stuff"]);
        assert_eq!(d.objects[1].version_id.as_deref(), Some("null"));
        assert_eq!(d.objects[0].version_id, None);
        assert_eq!(d.objects[2].etag.as_deref(), Some("\"abc\""));
        assert_eq!(d.objects[0].etag, None);

        let plain = parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>").unwrap();
        assert!(!plain.quiet);
        let prefixed = parse_delete(b"<s3:Delete xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\"><s3:Object><s3:Key>k</s3:Key></s3:Object></s3:Delete>").unwrap();
        assert_eq!(prefixed.objects[0].key, "k");

        let many = |n: usize| format!("<Delete>{}</Delete>", "<Object><Key>k</Key></Object>".repeat(n));
        assert_eq!(parse_delete(many(1000).as_bytes()).unwrap().objects.len(), 1000);
        assert_eq!(parse_delete(many(1001).as_bytes()), Err(S3Error::MalformedXML));

        for bad in [
            &b"<Delete></Delete>"[..],
            b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
            b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
            b"<Delete><Object><Key>a & b</Key></Object></Delete>",
            b"<Delete><Object><Key>&bogus;</Key></Object></Delete>",
            b"<Delete><Object><Key>k</Key></Object>",
            b"<Delete><Object><Key>k</Object></Key></Delete>",
            b"<!DOCTYPE d [<!ENTITY x \"y\">]><Delete><Object><Key>&x;</Key></Object></Delete>",
            b"<Delete><Object><Key>\xff</Key></Object></Delete>",
            b"not xml at all",
            b"<a><b><c><d><e><f><g><h><i></i></h></g></f></e></d></c></b></a>",
        ] {
            assert_eq!(parse_delete(bad), Err(S3Error::MalformedXML), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn create_bucket_configuration() {
        assert_eq!(parse_create_bucket_configuration(b""), Ok(None));
        assert_eq!(parse_create_bucket_configuration(b"  \n"), Ok(None));
        let body = format!("<CreateBucketConfiguration xmlns=\"{S3_NS}\"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>");
        assert_eq!(parse_create_bucket_configuration(body.as_bytes()), Ok(Some("eu-west-1".into())));
        assert_eq!(parse_create_bucket_configuration(b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"), Ok(None));
        assert_eq!(parse_create_bucket_configuration(b"<CreateBucketConfiguration/>"), Ok(None));
        assert_eq!(parse_create_bucket_configuration(b"<Other/>"), Err(S3Error::MalformedXML));
        assert_eq!(parse_create_bucket_configuration(b"<CreateBucketConfiguration>"), Err(S3Error::MalformedXML));
    }
}
