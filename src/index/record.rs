//! The per-key index record, byte-compatible with the original:
//! `[DELETED][HASH<32 hex>]vol1,vol2,...`, and our one extension for values
//! written to per-write files (S3): `[DELETED][HASH<32 hex>][GEN<32 hex>]vol1,…`.

use crate::placement::{is_generation, GEN_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Live.
    No,
    /// Unlinked, or a write in progress.
    Soft,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub volumes: Vec<String>,
    pub deleted: Deleted,
    /// Lowercase hex MD5 of the whole value; empty when unknown.
    pub hash: String,
    /// The value's generation: its files are at the per-write path
    /// (`placement::key2path`). Empty for the original's path.
    pub gen: String,
}

impl Record {
    pub fn is_live(&self) -> bool {
        self.deleted == Deleted::No
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        if self.deleted == Deleted::Soft {
            s.push_str("DELETED");
        }
        if !self.hash.is_empty() {
            s.push_str("HASH");
            s.push_str(&self.hash);
        }
        if !self.gen.is_empty() {
            s.push_str("GEN");
            s.push_str(&self.gen);
        }
        s.push_str(&self.volumes.join(","));
        s
    }

    pub fn decode(raw: &[u8]) -> Record {
        let mut s = String::from_utf8_lossy(raw).into_owned();
        let mut deleted = Deleted::No;
        if let Some(rest) = s.strip_prefix("DELETED") {
            deleted = Deleted::Soft;
            s = rest.to_string();
        }
        let mut hash = String::new();
        if let Some(rest) = s.strip_prefix("HASH") {
            if rest.len() >= 32 && rest.is_char_boundary(32) {
                hash = rest[..32].to_string();
                s = rest[32..].to_string();
            }
        }
        let mut gen = String::new();
        if let Some(rest) = s.strip_prefix("GEN") {
            if rest.get(..GEN_LEN).is_some_and(is_generation) {
                gen = rest[..GEN_LEN].to_string();
                s = rest[GEN_LEN..].to_string();
            }
        }
        let volumes = if s.is_empty() { Vec::new() } else { s.split(',').map(str::to_string).collect() };
        Record { volumes, deleted, hash, gen }
    }

    /// Whether the record names the file of `gen` on `volume`.
    pub fn holds(&self, volume: &str, gen: &str) -> bool {
        self.gen == gen && self.volumes.iter().any(|v| v == volume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &[&str], deleted: Deleted, hash: &str) -> Record {
        Record { volumes: v.iter().map(|s| s.to_string()).collect(), deleted, hash: hash.into(), gen: String::new() }
    }

    #[test]
    fn reference_vectors_round_trip() {
        let h = "5d41402abc4b2a76b9719d911017c592";
        let cases = [
            (rec(&["hello", "world"], Deleted::No, ""), "hello,world"),
            (rec(&["hello", "world"], Deleted::Soft, ""), "DELETEDhello,world"),
            (rec(&["hello"], Deleted::Soft, h), "DELETEDHASH5d41402abc4b2a76b9719d911017c592hello"),
            (rec(&["hello"], Deleted::No, h), "HASH5d41402abc4b2a76b9719d911017c592hello"),
        ];
        for (r, s) in cases {
            assert_eq!(r.encode(), s);
            assert_eq!(Record::decode(s.as_bytes()), r);
        }
    }

    #[test]
    fn generation_extension_round_trips() {
        let (h, g) = ("5d41402abc4b2a76b9719d911017c592", "00000000000000010123456789abcdef");
        let r = Record { gen: g.into(), ..rec(&["a:1/sv00", "b:2/sv03"], Deleted::No, h) };
        let s = "HASH5d41402abc4b2a76b9719d911017c592GEN00000000000000010123456789abcdefa:1/sv00,b:2/sv03";
        assert_eq!(r.encode(), s);
        assert_eq!(Record::decode(s.as_bytes()), r);
        let no_hash = Record { gen: g.into(), ..rec(&["v"], Deleted::Soft, "") };
        assert_eq!(no_hash.encode(), "DELETEDGEN00000000000000010123456789abcdefv");
        assert_eq!(Record::decode(no_hash.encode().as_bytes()), no_hash);
        // Not a generation: part of a volume name, as before.
        assert_eq!(Record::decode(b"GENxyz").volumes, ["GENxyz"]);
        assert!(r.holds("b:2/sv03", g) && !r.holds("b:2/sv03", "") && !r.holds("c:3", g));
    }

    #[test]
    fn subvolume_targets_and_fixture_record() {
        let s = "HASH4bf65f425a711192cfd7bb9a047a532clocalhost:3104/sv00,localhost:3102/sv02";
        let r = Record::decode(s.as_bytes());
        assert!(r.is_live());
        assert_eq!(r.volumes, vec!["localhost:3104/sv00", "localhost:3102/sv02"]);
        assert_eq!(r.encode(), s);
    }
}
