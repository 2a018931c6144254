//! Fill the index with key records directly, in large sorted transactions:
//! a million keys in seconds instead of a million PUTs. The volumes hold
//! nothing for these keys; they exist to make the B-tree as deep and the
//! file as large as a real index of that size (and to be listed).

use std::time::Instant;

use clap::Args;
use md5::{Digest, Md5};

use crate::config::Config;
use crate::index::{BucketInfo, Deleted, Index, ObjectMeta, Record};
use crate::placement::key2volume;
use crate::store::now_secs;

/// Keys per write transaction.
const BATCH: usize = 50_000;

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct PreloadArgs {
    /// Number of keys to write.
    #[arg(long)]
    pub keys: u64,
    /// Key prefix (native keys), e.g. /depth/. With --bucket, a prefix
    /// inside the bucket.
    #[arg(long, default_value = "/")]
    pub prefix: String,
    /// Write S3 objects of this bucket (created if missing, with metadata
    /// as a PutObject would record it).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Group keys in folders of this many (`d0001/k042`), for delimiter
    /// listings; 0 spreads them over the key space by hash.
    #[arg(long, default_value_t = 0)]
    pub per_dir: u64,
    /// Recorded size of each value.
    #[arg(long, default_value_t = 1024)]
    pub size: u64,
    /// Name of this run in the report.
    #[arg(long, default_value = "")]
    pub label: String,
}

pub fn key_name(a: &PreloadArgs, i: u64) -> Vec<u8> {
    let prefix = match &a.bucket {
        Some(b) => format!("/{b}/{}", a.prefix.trim_start_matches('/')),
        None => a.prefix.clone(),
    };
    let name = match (i.checked_div(a.per_dir), i.checked_rem(a.per_dir)) {
        (Some(dir), Some(n)) => format!("{prefix}d{dir:06}/k{n:06}"),
        _ => format!("{prefix}{}", hex::encode(&Md5::digest(i.to_le_bytes())[..8])),
    };
    name.into_bytes()
}

pub fn run(config: &Config, a: PreloadArgs) -> Result<(), String> {
    config.check_volumes()?;
    let db = config.db_path()?;
    let index = Index::open(db, config.db_map_gib << 30).map_err(|e| format!("{}: {e}", db.display()))?;
    let began = Instant::now();
    if let Some(b) = &a.bucket {
        index.create_bucket(b, &BucketInfo { created: now_secs(), ..Default::default() }).map_err(|e| e.to_string())?;
    }
    let mut keys: Vec<Vec<u8>> = (0..a.keys).map(|i| key_name(&a, i)).collect();
    // Sorted inserts fill LMDB pages in order (fast, and compact as a
    // long-lived index would be after its own splits settle).
    keys.sort_unstable();
    let meta = ObjectMeta { size: a.size, mtime: now_secs(), ..Default::default() };
    for batch in keys.chunks(BATCH) {
        let recs: Vec<Record> = batch
            .iter()
            .map(|k| Record {
                volumes: key2volume(k, &config.volumes, config.replicas as usize, config.subvolumes),
                deleted: Deleted::No,
                hash: String::new(),
                gen: String::new(),
            })
            .collect();
        let written = if a.bucket.is_some() {
            let items = batch.iter().cloned().zip(recs);
            index.update_many(items, |_, rec, _, _| Some((rec, Some(meta.clone()))))
        } else {
            index.put_many(batch.iter().map(Vec::as_slice).zip(recs.iter()))
        };
        written.map_err(|e| e.to_string())?;
    }
    let total = index.len().map_err(|e| e.to_string())?;
    let report = serde_json::json!({
        "label": a.label,
        "op": "preload",
        "keys": a.keys,
        "index_keys": total,
        "elapsed_s": (began.elapsed().as_secs_f64() * 1e3).round() / 1e3,
    });
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(bucket: Option<&str>, per_dir: u64) -> PreloadArgs {
        PreloadArgs { keys: 10, prefix: "/p/".into(), bucket: bucket.map(String::from), per_dir, size: 5, label: String::new() }
    }

    #[test]
    fn key_layouts() {
        assert_eq!(key_name(&args(Some("b"), 100), 1234), b"/b/p/d000012/k000034");
        let flat = key_name(&args(None, 0), 7);
        assert!(flat.starts_with(b"/p/") && flat.len() == 3 + 16);
        assert_ne!(flat, key_name(&args(None, 0), 8));
    }

    #[test]
    fn preload_writes_records_and_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let cli = crate::cli::parse(["mkv", "--volumes", "a:1,b:2", "--replicas", "2", "--db-map-gib", "1", "server"].map(String::from)).unwrap();
        let config = Config { db: Some(dir.path().to_path_buf()), ..cli.config };
        run(&config, args(Some("bk"), 3)).unwrap();
        let index = Index::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(index.len().unwrap(), 10);
        assert!(index.bucket("bk").unwrap().is_some());
        let (rec, meta) = index.get_with_meta(b"/bk/p/d000003/k000000").unwrap().unwrap();
        assert!(rec.is_live() && rec.volumes.len() == 2);
        assert_eq!(meta.unwrap().size, 5);
    }
}
