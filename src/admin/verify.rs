//! `mkv verify` (read-only): every live key's replicas are on the volumes
//! placement chooses, present, of the recorded size, and with `--checksums`
//! of the recorded MD5; every key that is not live was UNLINKed (else a
//! write or delete was cut); with `--orphans`, every file on the volumes
//! belongs to a record that lists its volume and generation, or waits for
//! the collector.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::TryStreamExt;
use tokio::sync::mpsc;

use super::walk::{Entry, FileInfo, Walker};
use super::{bucket_files, open_index, records, replica_md5, volume_client, AdminError, Ctx, Item, Progress, Report};
use crate::config::{Config, VerifyArgs};
use crate::describe::{bucket_url, meta_url, BucketFile, ValueFile};
use crate::index::{ObjectMeta, Record};
use crate::placement::key2volume;
use crate::volume::replica_url;

/// What one recorded replica looked like.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Size, and MD5 when checksums were read.
    Present { size: u64, md5: Option<String> },
    Missing,
    Unreadable(String),
}

/// A live key's replicas and what is wrong with them.
pub struct Checked {
    /// Each recorded volume and its probe, in record order.
    pub probes: Vec<(String, Probe)>,
    pub problems: Vec<Item>,
    /// Recorded volumes whose file is there but wrong (size or MD5).
    pub bad: Vec<String>,
    /// An S3 value's metadata files that are missing or disagree with the
    /// index, by volume, and the ones read (`repair` rewrites from them).
    pub undescribed: Vec<String>,
    pub descriptions: Vec<ValueFile>,
}

impl Checked {
    /// Present replicas that are not bad.
    pub fn good(&self) -> impl Iterator<Item = (&String, &Probe)> {
        self.probes.iter().filter(|(v, p)| matches!(p, Probe::Present { .. }) && !self.bad.contains(v)).map(|(v, p)| (v, p))
    }
}

/// Probe a live key's recorded replicas (HEAD, or a full read with
/// `checksums`) and compare them with the record and with placement. The
/// expected size is the recorded one, else the first replica's; without a
/// recorded MD5, replicas are compared with the first one read.
pub async fn check_key(ctx: &Ctx, key: &[u8], rec: &Record, meta: Option<&ObjectMeta>, checksums: bool) -> Checked {
    let probes = futures::future::join_all(rec.volumes.iter().map(|v| async move {
        let url = replica_url(v, key, &rec.gen);
        let probe = if checksums {
            match replica_md5(&ctx.client, &url).await {
                Ok((size, md5)) => Probe::Present { size, md5: Some(md5) },
                Err(crate::error::Error::NotFound) => Probe::Missing,
                Err(e) => Probe::Unreadable(e.to_string()),
            }
        } else {
            match ctx.client.head(&url).await {
                Ok(Some(size)) => Probe::Present { size, md5: None },
                Ok(None) => Probe::Missing,
                Err(e) => Probe::Unreadable(e.to_string()),
            }
        };
        (v.clone(), probe)
    }))
    .await;
    let mut problems = Vec::new();
    let mut bad = Vec::new();
    let present: Vec<(&String, u64, Option<&String>)> =
        probes.iter().filter_map(|(v, p)| if let Probe::Present { size, md5 } = p { Some((v, *size, md5.as_ref())) } else { None }).collect();
    let want_size = meta.map(|m| m.size).or(present.first().map(|p| p.1));
    let want_md5 = (!rec.hash.is_empty()).then_some(&rec.hash).or(present.first().and_then(|p| p.2));
    for (v, probe) in &probes {
        match probe {
            Probe::Missing => problems.push(Item::replica("missing", key, v, "no file")),
            Probe::Unreadable(e) => problems.push(Item::replica("unreadable", key, v, e)),
            Probe::Present { size, md5 } => {
                if Some(*size) != want_size {
                    problems.push(Item::replica("size", key, v, format!("{size} bytes, expected {}", want_size.unwrap_or(0))));
                    bad.push(v.clone());
                } else if let (Some(md5), Some(want)) = (md5, want_md5) {
                    if md5 != want {
                        problems.push(Item::replica("checksum", key, v, format!("MD5 {md5}, expected {want}")));
                        bad.push(v.clone());
                    }
                }
            }
        }
    }
    let config = &ctx.config;
    let wanted = key2volume(key, &config.volumes, config.replicas as usize, config.subvolumes);
    if rec.volumes != wanted {
        problems.push(Item::key("unbalanced", key, format!("recorded on {}, placement wants {}", rec.volumes.join(","), wanted.join(","))));
    }
    let (undescribed, descriptions) = match (rec.is_live(), meta) {
        (true, Some(meta)) => check_descriptions(ctx, key, rec, meta, &mut problems).await,
        _ => (Vec::new(), Vec::new()),
    };
    Checked { probes, problems, bad, undescribed, descriptions }
}

/// Read a live S3 value's metadata file on each recorded volume and compare
/// it with the index.
async fn check_descriptions(ctx: &Ctx, key: &[u8], rec: &Record, meta: &ObjectMeta, problems: &mut Vec<Item>) -> (Vec<String>, Vec<ValueFile>) {
    let reads = rec.volumes.iter().filter_map(|v| Some((v, meta_url(v, key, &rec.gen)?))).map(|(v, url)| async move { (v, ctx.client.get_bytes(&url).await) });
    let mut undescribed = Vec::new();
    let mut read = Vec::new();
    for (v, got) in futures::future::join_all(reads).await {
        let problem = match got.map(|body| body.map(|b| ValueFile::parse(&b))) {
            Ok(None) => Some("no metadata file beside the value; `repair` writes it from the index".to_string()),
            Ok(Some(Ok(file))) if file.agrees(key, rec, meta) => {
                read.push(file);
                None
            }
            Ok(Some(Ok(file))) => {
                read.push(file);
                Some("the metadata file disagrees with the index; `repair` rewrites it from the index".into())
            }
            Ok(Some(Err(e))) => Some(format!("unreadable metadata file: {e}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = problem {
            problems.push(Item::replica("metadata", key, v, why));
            undescribed.push(v.clone());
        }
    }
    (undescribed, read)
}

/// Whether a record that is not live is a finished value hidden by a cut
/// write or delete (every replica whole: `Some(true)`), a cut native write
/// or delete with replicas missing (`Some(false)`), or an UNLINKed key,
/// hidden on purpose (`None`).
pub async fn hidden_whole(ctx: &Ctx, key: &[u8], rec: &Record, meta: Option<&ObjectMeta>, checksums: bool) -> Option<bool> {
    if meta.is_some_and(|m| m.unlinked.is_some()) {
        return None;
    }
    let checked = check_key(ctx, key, rec, meta, checksums).await;
    Some(!rec.volumes.is_empty() && checked.probes.iter().all(|(v, p)| matches!(p, Probe::Present { .. }) && !checked.bad.contains(v)))
}

/// The finding for a record that is not live, if any (see `hidden_whole`).
async fn check_hidden(ctx: &Ctx, key: &[u8], rec: &Record, meta: Option<&ObjectMeta>, checksums: bool) -> Option<Item> {
    Some(match hidden_whole(ctx, key, rec, meta, checksums).await? {
        true => Item::key("hidden", key, "not live and not unlinked, every replica whole: a write or delete was cut before it finished; `repair` makes it live"),
        false => Item::key("interrupted", key, "not live and not unlinked, replicas missing: a native write or delete was cut before it finished; DELETE the key"),
    })
}

pub async fn run(config: Config, args: VerifyArgs) -> Result<Report, AdminError> {
    let index = open_index(&config)?;
    let progress = Progress::start("verify", "keys", Some(index.len()?));
    let ctx = Ctx { client: volume_client(&config), config: Arc::new(config), index, progress };
    let c = &ctx;
    records(ctx.index.clone(), args.prefix.clone().into_bytes())
        .map_err(AdminError::from)
        .try_for_each_concurrent(args.common.concurrency as usize, |(key, rec)| async move {
            let meta = c.index.get_meta(&key)?;
            if rec.is_live() {
                for problem in check_key(c, &key, &rec, meta.as_ref(), args.checksums).await.problems {
                    c.progress.fail(problem);
                }
            } else if let Some(problem) = check_hidden(c, &key, &rec, meta.as_ref(), args.checksums).await {
                c.progress.fail(problem);
            }
            c.progress.seen(1);
            Ok(())
        })
        .await?;
    if args.prefix.is_empty() {
        for problem in check_buckets(&ctx).await?.into_values().flatten() {
            ctx.progress.fail(problem);
        }
    }
    if args.orphans {
        for_each_orphan(&ctx, args.common.concurrency as usize, args.min_orphan_age, args.prefix.as_bytes(), |orphan, _| {
            ctx.progress.fail(orphan.item());
            async {}
        })
        .await?;
    }
    Ok(ctx.progress.finish())
}

/// Compare every bucket's file on every volume with the index. Returns, per
/// bucket name, what is wrong (a missing or different file; a file of a
/// bucket the index does not hold, left for an operator to judge).
pub async fn check_buckets(ctx: &Ctx) -> Result<BTreeMap<String, Vec<Item>>, AdminError> {
    let mut found: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    let buckets = ctx.index.buckets()?;
    for volume in &ctx.config.volumes {
        let mut problems = |name: &str, item: Item| found.entry(name.to_string()).or_default().push(item);
        // One read of each file on the volume (unreadable ones are failures).
        let mut files: HashMap<String, (String, BucketFile)> = bucket_files(ctx, volume).await.into_iter().map(|(url, f)| (f.name.clone(), (url, f))).collect();
        for (name, info) in &buckets {
            let (url, why) = match files.remove(name) {
                Some((_, file)) if file.info == *info => continue,
                Some((url, _)) => (url, "differs from the index; `repair` rewrites it"),
                None => (bucket_url(volume, name), "missing; `repair` writes it"),
            };
            problems(name, Item::file("bucket file", &url, format!("bucket {name}: {why}")));
        }
        // What is left names buckets the index does not hold.
        for (name, (url, _)) in files {
            let why = format!("bucket {name} is not in the index (deleted while this volume was down?); `rebuild` would bring it back: delete the file if the bucket is gone");
            problems(&name, Item::file("bucket file", &url, why));
        }
    }
    Ok(found)
}

/// A file on a volume that no record references.
pub struct Orphan {
    pub info: FileInfo,
    pub kind: OrphanKind,
}

pub enum OrphanKind {
    /// A key's file (key, generation) on a volume its record does not list,
    /// of a value that is not the record's, or of a key without record; and
    /// not waiting for the collector.
    Key(Vec<u8>, String),
    /// An upload's staging file that was never committed.
    Staging,
}

impl Orphan {
    pub fn item(&self) -> Item {
        match &self.kind {
            OrphanKind::Key(key, _) => Item::new("orphan", Some(key), Some(&self.info.url), "the index does not list this replica"),
            OrphanKind::Staging => Item::file("orphan", &self.info.url, "staging file of an upload never committed"),
        }
    }

    /// Whether the index still does not reference the file (checked again
    /// right before deleting it).
    pub fn still_orphan(&self, ctx: &Ctx, target: Option<&str>) -> Result<bool, AdminError> {
        match (&self.kind, target) {
            (OrphanKind::Key(key, gen), Some(target)) => Ok(!ctx.index.get(key)?.is_some_and(|r| r.holds(target, gen))),
            _ => Ok(true),
        }
    }
}

/// Walk every volume and call `f` for each orphan at least `min_age` old
/// (younger files may belong to a write or move in flight) with its target.
/// Stray files are reported as failures: mkv cannot tell whose they are.
pub async fn for_each_orphan<F, Fut>(ctx: &Ctx, concurrency: usize, min_age: Duration, prefix: &[u8], f: F) -> Result<(), AdminError>
where
    F: Fn(Orphan, Option<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let walker = Walker { client: ctx.client.clone(), concurrency, staging: prefix.is_empty(), progress: ctx.progress.clone() };
    let (tx, mut rx) = mpsc::channel(1024);
    let volumes = ctx.config.volumes.clone();
    // Files of values being written or waiting for the collector are not
    // orphans: the server deletes them itself.
    let mut tracked = HashSet::new();
    for files in ctx.index.tracked_files()? {
        for v in files.volumes {
            tracked.insert((files.key.clone(), files.gen.clone(), v));
        }
    }
    let check = async {
        while let Some(entry) = rx.recv().await {
            match entry {
                Entry::Key(found) if found.key.starts_with(prefix) && found.info.older_than(min_age) => {
                    let listed = ctx.index.get(&found.key)?.is_some_and(|r| r.holds(&found.target, &found.gen));
                    if !listed && !tracked.contains(&(found.key.clone(), found.gen.clone(), found.target.clone())) {
                        f(Orphan { info: found.info, kind: OrphanKind::Key(found.key, found.gen) }, Some(found.target)).await;
                    }
                }
                Entry::Key(_) => {}
                Entry::Staging(info) if info.older_than(min_age) => f(Orphan { info, kind: OrphanKind::Staging }, None).await,
                Entry::Staging(_) => {}
                Entry::Stray(info) if prefix.is_empty() => {
                    ctx.progress.fail(Item::file("stray", &info.url, "not a key's file (name does not decode to a key of this folder)"))
                }
                Entry::Stray(_) => {}
            }
        }
        Ok::<(), AdminError>(())
    };
    let ((), checked) = tokio::join!(walker.walk(&volumes, tx), check);
    checked
}
