//! Small S3 values in memory (`--cache-mib`, `--cache-object-kib`), so a
//! GetObject of one is answered without a volume round trip.
//!
//! Safe without invalidation: an entry is a key's value of one generation,
//! and S3 values live in files of their generation that are never rewritten
//! (native values, whose files a later PUT may rewrite, are never held). A
//! reader looks the record up in the index first and takes an entry only if
//! it is of the record's generation; an entry of a replaced or deleted value
//! is dead weight until evicted (writes drop it at once).

use bytes::{Bytes, BytesMut};
use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::index::Record;

/// Bookkeeping memory per entry besides the value and the key.
const ENTRY_OVERHEAD: u64 = 64;

pub struct ValueCache {
    /// Key → (generation, value). `None` when the cache is off.
    entries: Option<Cache<Vec<u8>, (String, Bytes), Size>>,
    /// Largest value held, bytes.
    max_value: u64,
}

#[derive(Clone)]
struct Size;

impl Weighter<Vec<u8>, (String, Bytes)> for Size {
    fn weight(&self, key: &Vec<u8>, (gen, value): &(String, Bytes)) -> u64 {
        (key.len() + gen.len() + value.len()) as u64 + ENTRY_OVERHEAD
    }
}

impl ValueCache {
    /// `capacity` bytes in all (0: off), values of at most `max_value` bytes.
    pub fn new(capacity: u64, max_value: u64) -> ValueCache {
        // The item estimate only sizes the initial tables.
        let items = (capacity / (max_value / 4 + ENTRY_OVERHEAD).max(1)).clamp(16, 1 << 20) as usize;
        ValueCache { entries: (capacity > 0).then(|| Cache::with_weighter(items, capacity, Size)), max_value: max_value.min(capacity) }
    }

    /// Whether a value of this record and size is one the cache holds.
    pub fn holds(&self, rec: &Record, size: u64) -> bool {
        self.entries.is_some() && !rec.gen.is_empty() && size <= self.max_value
    }

    /// The value of `key` at `gen`, if held.
    pub fn get(&self, key: &[u8], gen: &str) -> Option<Bytes> {
        let (held, value) = self.entries.as_ref()?.get(key)?;
        (held == gen).then_some(value)
    }

    /// Hold `value` as the key's value at `gen` (replacing any other). The
    /// caller checked [`ValueCache::holds`].
    pub fn insert(&self, key: &[u8], gen: &str, value: Bytes) {
        if let Some(c) = &self.entries {
            c.insert(key.to_vec(), (gen.to_string(), value));
        }
    }

    /// Drop what is held for `key` (its value is changing).
    pub fn forget(&self, key: &[u8]) {
        if let Some(c) = &self.entries {
            c.remove(key);
        }
    }

    /// Bytes held, with keys and bookkeeping.
    pub fn bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, Cache::weight)
    }

    /// Largest value held, bytes (0 when off).
    pub fn max_value(&self) -> u64 {
        if self.entries.is_some() { self.max_value } else { 0 }
    }
}

/// A copy of a value being written, while it is no larger than the cache
/// holds (the chunks themselves hold write-buffer memory: never kept).
pub struct Kept {
    copy: Option<BytesMut>,
    max: u64,
}

impl Kept {
    /// Keep at most `max` bytes (0: nothing); a declared length over it
    /// keeps nothing from the start.
    pub fn up_to(max: u64, len: Option<u64>) -> Kept {
        let wanted = max > 0 && len.is_none_or(|l| l <= max);
        Kept { copy: wanted.then(|| BytesMut::with_capacity(len.unwrap_or(0) as usize)), max }
    }

    pub fn add(&mut self, chunk: &[u8]) {
        if self.copy.as_ref().is_some_and(|c| (c.len() + chunk.len()) as u64 > self.max) {
            self.copy = None;
        }
        if let Some(c) = &mut self.copy {
            c.extend_from_slice(chunk);
        }
    }

    pub fn into_bytes(self) -> Option<Bytes> {
        self.copy.map(BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Deleted;

    fn rec(gen: &str) -> Record {
        Record { volumes: vec!["v:1".into()], deleted: Deleted::No, hash: String::new(), gen: gen.into() }
    }

    #[test]
    fn only_the_recorded_generation_is_served() {
        let c = ValueCache::new(1 << 20, 1024);
        assert!(c.holds(&rec("g1"), 1024));
        assert!(!c.holds(&rec("g1"), 1025), "too large");
        assert!(!c.holds(&rec(""), 10), "a native value's files may be rewritten");
        c.insert(b"/b/k", "g1", Bytes::from_static(b"one"));
        assert_eq!(c.get(b"/b/k", "g1").as_deref(), Some(&b"one"[..]));
        assert_eq!(c.get(b"/b/k", "g2"), None, "a newer value is not the held one");
        c.insert(b"/b/k", "g2", Bytes::from_static(b"two"));
        assert_eq!(c.get(b"/b/k", "g1"), None);
        assert_eq!(c.get(b"/b/k", "g2").as_deref(), Some(&b"two"[..]));
        c.forget(b"/b/k");
        assert_eq!(c.get(b"/b/k", "g2"), None);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let c = ValueCache::new(64 << 10, 4096);
        for i in 0..1000 {
            c.insert(format!("/b/k{i}").as_bytes(), "g", Bytes::from(vec![0u8; 4096]));
        }
        assert!(c.bytes() <= 64 << 10, "{}", c.bytes());
        assert!(c.bytes() > 32 << 10, "{}", c.bytes());
    }

    #[test]
    fn a_copy_is_kept_only_while_small() {
        let mut k = Kept::up_to(5, None);
        k.add(b"abc");
        k.add(b"de");
        assert_eq!(k.into_bytes().as_deref(), Some(&b"abcde"[..]));
        let mut k = Kept::up_to(5, None);
        k.add(b"abc");
        k.add(b"def");
        k.add(b"");
        assert_eq!(k.into_bytes(), None);
        assert_eq!(Kept::up_to(5, Some(6)).into_bytes(), None);
        assert_eq!(Kept::up_to(0, Some(1)).into_bytes(), None);
    }

    #[test]
    fn off_holds_nothing() {
        let c = ValueCache::new(0, 1024);
        assert!(!c.holds(&rec("g"), 1));
        c.insert(b"/b/k", "g", Bytes::from_static(b"x"));
        assert_eq!(c.get(b"/b/k", "g"), None);
        assert_eq!(c.max_value(), 0);
    }
}
