//! The per-key index record, byte-compatible with the original:
//! `[DELETED][HASH<32 hex>]vol1,vol2,...`

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
        let volumes = if s.is_empty() { Vec::new() } else { s.split(',').map(str::to_string).collect() };
        Record { volumes, deleted, hash }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &[&str], deleted: Deleted, hash: &str) -> Record {
        Record { volumes: v.iter().map(|s| s.to_string()).collect(), deleted, hash: hash.into() }
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
    fn subvolume_targets_and_fixture_record() {
        let s = "HASH4bf65f425a711192cfd7bb9a047a532clocalhost:3104/sv00,localhost:3102/sv02";
        let r = Record::decode(s.as_bytes());
        assert!(r.is_live());
        assert_eq!(r.volumes, vec!["localhost:3104/sv00", "localhost:3102/sv02"]);
        assert_eq!(r.encode(), s);
    }
}
