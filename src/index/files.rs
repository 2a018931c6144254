//! Files on the volumes that no record names, tracked so that a crash never
//! leaks them:
//!
//! - `writes`: generation → [`Files`]: a write in progress. Recorded before
//!   the first byte is sent; removed in the transaction that makes the value
//!   current, or moved to `gc` when the write fails. At start-up every entry
//!   is a write the crash interrupted, and goes to `gc` at once.
//! - `gc`: due time (seconds, u64 big-endian) ++ 8 random bytes → [`Files`]:
//!   files to delete once due. A replaced or deleted value's files wait here
//!   for the grace period, so reads in flight finish first.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use heed::RwTxn;
use serde::{Deserialize, Serialize};

use super::{Index, IndexError, ObjectMeta, Record};

/// One value's files: a key's generation on some volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Files {
    #[serde(with = "key_b64")]
    pub key: Vec<u8>,
    /// Empty for the original's path.
    pub gen: String,
    pub volumes: Vec<String>,
}

/// Keys are bytes; JSON holds them as standard base64.
mod key_b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(key: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(key))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A `gc` entry's id: its due time, then random bytes (unique).
pub type GcId = Vec<u8>;

fn gc_id(due: u64) -> GcId {
    let mut id = due.to_be_bytes().to_vec();
    id.extend_from_slice(&rand::random::<[u8; 8]>());
    id
}

/// What start-up found of the previous run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Writes in flight at the crash: their files are now due for deletion.
    pub interrupted: u64,
    /// Deletions waiting (including those).
    pub pending: u64,
}

impl Index {
    /// Record a write about to start (see the module doc).
    pub(super) fn begin_write(&self, wtxn: &mut RwTxn, files: &Files) -> Result<(), IndexError> {
        self.writes.put(wtxn, files.gen.as_bytes(), &serde_json::to_vec(files)?)?;
        Ok(())
    }

    /// A write that will not be committed: its files are due now.
    pub(super) fn abandon_write(&self, wtxn: &mut RwTxn, gen: &str, now: u64) -> Result<(), IndexError> {
        if let Some(raw) = self.writes.get(wtxn, gen.as_bytes())? {
            let files: Files = serde_json::from_slice(raw)?;
            self.writes.delete(wtxn, gen.as_bytes())?;
            self.schedule(wtxn, &files, now)?;
        }
        Ok(())
    }

    fn schedule(&self, wtxn: &mut RwTxn, files: &Files, due: u64) -> Result<(), IndexError> {
        if !files.volumes.is_empty() {
            self.gc.put(wtxn, &gc_id(due), &serde_json::to_vec(files)?)?;
        }
        Ok(())
    }

    /// Make `rec` (and `meta`) the key's value in `wtxn`: its write is no
    /// longer in progress, and the files of the value it replaces (those it
    /// does not name itself) are due for deletion at `due`.
    pub(super) fn switch(&self, wtxn: &mut RwTxn, key: &[u8], rec: &Record, meta: Option<&ObjectMeta>, due: u64) -> Result<(), IndexError> {
        let old = self.keys.get(wtxn, key)?.map(Record::decode);
        self.keys.put(wtxn, key, rec.encode().as_bytes())?;
        if let Some(m) = meta {
            self.meta.put(wtxn, key, &serde_json::to_vec(m)?)?;
        }
        if !rec.gen.is_empty() {
            self.writes.delete(wtxn, rec.gen.as_bytes())?;
        }
        if let Some(old) = old {
            let volumes = old.volumes.iter().filter(|v| !rec.holds(v, &old.gen)).cloned().collect();
            self.schedule(wtxn, &Files { key: key.to_vec(), gen: old.gen, volumes }, due)?;
        }
        Ok(())
    }

    /// Remove the key in `wtxn`; its files are due for deletion at `due`.
    pub(super) fn remove(&self, wtxn: &mut RwTxn, key: &[u8], due: u64) -> Result<(), IndexError> {
        let Some(old) = self.keys.get(wtxn, key)?.map(Record::decode) else { return Ok(()) };
        self.keys.delete(wtxn, key)?;
        self.meta.delete(wtxn, key)?;
        self.schedule(wtxn, &Files { key: key.to_vec(), gen: old.gen, volumes: old.volumes }, due)
    }

    /// At start-up, before any write: every write in progress was cut by the
    /// end of the previous run; its files are due now.
    pub fn recover(&self, now: u64) -> Result<Recovered, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        let mut cut = Vec::new();
        for item in self.writes.iter(&wtxn)? {
            cut.push(serde_json::from_slice::<Files>(item?.1)?);
        }
        for files in &cut {
            self.writes.delete(&mut wtxn, files.gen.as_bytes())?;
            self.schedule(&mut wtxn, files, now)?;
        }
        let pending = self.gc.len(&wtxn)?;
        wtxn.commit()?;
        Ok(Recovered { interrupted: cut.len() as u64, pending })
    }

    /// Up to `limit` deletions due at `now`, oldest first.
    pub fn gc_due(&self, now: u64, limit: usize) -> Result<Vec<(GcId, Files)>, IndexError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.gc.iter(&rtxn)?.take(limit) {
            let (id, raw) = item?;
            if u64::from_be_bytes(id[..8].try_into().unwrap_or_default()) > now {
                break;
            }
            out.push((id.to_vec(), serde_json::from_slice(raw)?));
        }
        Ok(out)
    }

    /// Settle deletions: `done` ones are removed, `retry` ones come due
    /// again at the time given.
    pub fn gc_settle(&self, done: &[GcId], retry: &[(GcId, u64)]) -> Result<(), IndexError> {
        let mut wtxn = self.env.write_txn()?;
        for id in done {
            self.gc.delete(&mut wtxn, id)?;
        }
        for (id, due) in retry {
            if let Some(raw) = self.gc.get(&wtxn, id)?.map(<[u8]>::to_vec) {
                self.gc.delete(&mut wtxn, id)?;
                self.gc.put(&mut wtxn, &gc_id(*due), &raw)?;
            }
        }
        wtxn.commit()?;
        Ok(())
    }

    /// Every file set waiting for deletion or being written (not orphans).
    pub fn tracked_files(&self) -> Result<Vec<Files>, IndexError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.gc.iter(&rtxn)?.chain(self.writes.iter(&rtxn)?) {
            out.push(serde_json::from_slice(item?.1)?);
        }
        Ok(out)
    }

    /// Deletions waiting, and writes in progress.
    pub fn tracked_counts(&self) -> Result<(u64, u64), IndexError> {
        let rtxn = self.env.read_txn()?;
        Ok((self.gc.len(&rtxn)?, self.writes.len(&rtxn)?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Deleted, Write};
    use super::*;

    fn rec(gen: &str, vols: &[&str]) -> Record {
        Record { volumes: vols.iter().map(|v| v.to_string()).collect(), deleted: Deleted::No, hash: String::new(), gen: gen.into() }
    }

    fn files(key: &[u8], gen: &str, vols: &[&str]) -> Files {
        Files { key: key.to_vec(), gen: gen.into(), volumes: vols.iter().map(|v| v.to_string()).collect() }
    }

    const G1: &str = "00000000000000010000000000000001";
    const G2: &str = "00000000000000020000000000000002";

    #[test]
    fn switch_retires_the_old_files_in_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(dir.path(), 1 << 26).unwrap();
        // A native value, then two S3 writes of the same key.
        ix.put(b"/k", &rec("", &["a", "b"]), None).unwrap();
        ix.apply(&[Write::Begin(files(b"/k", G1, &["a", "c"]))]).unwrap();
        assert_eq!(ix.tracked_counts().unwrap(), (0, 1));
        ix.apply(&[Write::Switch(b"/k".to_vec(), rec(G1, &["a", "c"]), None, 100)]).unwrap();
        assert_eq!(ix.tracked_counts().unwrap(), (1, 0));
        ix.apply(&[Write::Begin(files(b"/k", G2, &["a", "b"])), Write::Switch(b"/k".to_vec(), rec(G2, &["a", "b"]), None, 200)]).unwrap();
        assert_eq!(ix.gc_due(99, 10).unwrap(), vec![]);
        let due: Vec<Files> = ix.gc_due(200, 10).unwrap().into_iter().map(|(_, f)| f).collect();
        assert_eq!(due, vec![files(b"/k", "", &["a", "b"]), files(b"/k", G1, &["a", "c"])]);
        // Rewriting the same files (a metadata change) retires nothing.
        ix.apply(&[Write::Switch(b"/k".to_vec(), rec(G2, &["a", "b"]), None, 300)]).unwrap();
        assert_eq!(ix.tracked_counts().unwrap(), (2, 0));
        // Only the volumes the new record dropped (a rebalance-like change).
        ix.apply(&[Write::Switch(b"/k".to_vec(), rec(G2, &["a"]), None, 300)]).unwrap();
        assert_eq!(ix.gc_due(300, 10).unwrap().last().unwrap().1, files(b"/k", G2, &["b"]));
    }

    #[test]
    fn remove_abandon_recover_settle() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(dir.path(), 1 << 26).unwrap();
        ix.put(b"/k", &rec(G1, &["a"]), Some(&ObjectMeta::default())).unwrap();
        ix.apply(&[Write::Remove(b"/k".to_vec(), 50), Write::Remove(b"/none".to_vec(), 50)]).unwrap();
        assert_eq!((ix.get(b"/k").unwrap(), ix.get_meta(b"/k").unwrap()), (None, None));
        ix.apply(&[Write::Begin(files(b"/x", G2, &["a"])), Write::Abandon(G2.into(), 60)]).unwrap();
        ix.apply(&[Write::Begin(files(b"/y", G1, &["b"]))]).unwrap();
        assert_eq!(ix.recover(70).unwrap(), Recovered { interrupted: 1, pending: 3 });
        assert_eq!(ix.tracked_counts().unwrap(), (3, 0));
        let due = ix.gc_due(70, 10).unwrap();
        assert_eq!(due.iter().map(|(_, f)| f.key.clone()).collect::<Vec<_>>(), [b"/k".to_vec(), b"/x".to_vec(), b"/y".to_vec()]);
        ix.gc_settle(&[due[0].0.clone()], &[(due[1].0.clone(), 500)]).unwrap();
        assert_eq!(ix.gc_due(70, 10).unwrap().len(), 1);
        assert_eq!(ix.gc_due(500, 10).unwrap().len(), 2);
        assert_eq!(ix.tracked_files().unwrap().len(), 2);
    }
}
