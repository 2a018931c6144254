//! S3 access keys made by `mkv key` (the `--s3-key` ones live in the
//! configuration only), in table `s3keys`: access key id → [`KeyInfo`].
//! The secret is stored as is (SigV4 needs it to sign); the index files
//! are private to their owner.

use serde::{Deserialize, Serialize};

use super::{Index, IndexError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub name: String,
    pub secret: String,
    /// Seconds since the epoch.
    pub created: u64,
}

impl Index {
    /// Add a key; false if the id exists.
    pub fn create_key(&self, id: &str, info: &KeyInfo) -> Result<bool, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        if self.s3keys.get(&wtxn, id.as_bytes())?.is_some() {
            return Ok(false);
        }
        self.s3keys.put(&mut wtxn, id.as_bytes(), &serde_json::to_vec(info)?)?;
        wtxn.commit()?;
        Ok(true)
    }

    pub fn key_info(&self, id: &str) -> Result<Option<KeyInfo>, IndexError> {
        let rtxn = self.env.read_txn()?;
        match self.s3keys.get(&rtxn, id.as_bytes())? {
            Some(raw) => Ok(Some(serde_json::from_slice(raw)?)),
            None => Ok(None),
        }
    }

    pub fn key_infos(&self) -> Result<Vec<(String, KeyInfo)>, IndexError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.s3keys.iter(&rtxn)? {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(k).into_owned(), serde_json::from_slice(v)?));
        }
        Ok(out)
    }

    /// Remove a key and every grant naming it; false if there was none.
    pub fn delete_key(&self, id: &str) -> Result<bool, IndexError> {
        let mut wtxn = self.env.write_txn()?;
        if !self.s3keys.delete(&mut wtxn, id.as_bytes())? {
            return Ok(false);
        }
        let mut changed = Vec::new();
        for item in self.buckets.iter(&wtxn)? {
            let (name, raw) = item?;
            let mut info: super::BucketInfo = serde_json::from_slice(raw)?;
            if info.grants.remove(id).is_some() {
                changed.push((name.to_vec(), info));
            }
        }
        for (name, info) in changed {
            self.buckets.put(&mut wtxn, &name, &serde_json::to_vec(&info)?)?;
        }
        wtxn.commit()?;
        Ok(true)
    }

    pub fn has_keys(&self) -> Result<bool, IndexError> {
        let rtxn = self.env.read_txn()?;
        Ok(!self.s3keys.is_empty(&rtxn)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BucketInfo, Grant};
    use super::*;

    #[test]
    fn keys_and_their_grants() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(dir.path(), 1 << 26).unwrap();
        assert!(!ix.has_keys().unwrap());
        let k = KeyInfo { name: "alice".into(), secret: "s".into(), created: 1 };
        assert!(ix.create_key("AK1", &k).unwrap());
        assert!(!ix.create_key("AK1", &k).unwrap());
        assert_eq!(ix.key_info("AK1").unwrap(), Some(k.clone()));
        assert_eq!(ix.key_infos().unwrap(), vec![("AK1".to_string(), k)]);
        let mut b = BucketInfo { created: 1, owner: Some("AK1".into()), ..Default::default() };
        b.grants.insert("AK1".into(), Grant { read: true, write: true, owner: true });
        ix.create_bucket("b", &b).unwrap();
        assert!(ix.delete_key("AK1").unwrap());
        assert!(!ix.delete_key("AK1").unwrap());
        assert!(ix.bucket("b").unwrap().unwrap().grants.is_empty());
        assert!(!ix.has_keys().unwrap());
    }
}
