//! `mkv rebuild`: regenerate the index from what the volumes hold.
//!
//! 1. Walk: every key file found records its target; a key on several
//!    volumes lists them in placement order, then the rest. A key with files
//!    of several values (S3 writes whose replaced files were not collected
//!    yet) gets the described one (a metadata file beside it: the write got
//!    as far as its commit) started last; the others are reported, left as
//!    orphans. Size and mtime come from the autoindex.
//! 2. Describe: each S3 value's metadata file gives back its ETag,
//!    checksums, headers and parts exactly; where several described values
//!    of a key were found, the one committed last (`written_us`) wins.
//! 3. Buckets: each bucket's newest file on the volumes; buckets that only
//!    the objects name come back without settings (reported).
//!
//! The MD5 of values without a metadata file only with `--checksums` (it
//! means reading every such value once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::stream::{Stream, TryStreamExt};
use tokio::sync::mpsc;

use super::walk::{Entry, Found, Walker};
use super::{bucket_files, open_index, records, replica_md5, volume_client, AdminError, Ctx, Item, Progress, Report};
use crate::config::{Config, RebuildArgs};
use crate::describe::{meta_url, s3_names, BucketFile, ValueFile};
use crate::index::{BucketInfo, Deleted, Index, IndexError, ObjectMeta, Record};
use crate::placement::{generation_secs, key2volume};

/// Found files (or hashes) written per LMDB transaction at most.
const BATCH: usize = 2048;

/// What the walk learns beyond the records, for the later steps. Small:
/// only keys with several described values, or without a description.
#[derive(Default)]
struct Walked {
    /// Keys whose recorded value is a generation without metadata file.
    undescribed: HashSet<Vec<u8>>,
    /// Keys with several described values: generation → volumes found.
    contested: HashMap<Vec<u8>, BTreeMap<String, Vec<String>>>,
}

pub async fn run(config: Config, args: RebuildArgs) -> Result<Report, AdminError> {
    let index = open_index(&config)?;
    if !index.is_empty()? {
        if !args.clear {
            let db = config.db_path().map_err(AdminError::Config)?.display().to_string();
            return Err(AdminError::NotEmpty { db, keys: index.len()? });
        }
        index.clear()?;
    }
    let ctx = Ctx { client: volume_client(&config), config: Arc::new(config), index, progress: Progress::start("rebuild", "files", None) };
    let concurrency = args.common.concurrency as usize;
    let walker = Walker { client: ctx.client.clone(), concurrency, staging: false, progress: ctx.progress.clone() };
    let (tx, rx) = mpsc::channel(BATCH * 2);
    let volumes = ctx.config.volumes.clone();
    let walked = Arc::new(Mutex::new(Walked::default()));
    let ((), recorded) = tokio::join!(walker.walk(&volumes, tx), record_found(&ctx, rx, walked.clone()));
    recorded?;
    let walked = std::mem::take(&mut *walked.lock().expect("walk state"));
    let buckets = describe_values(&ctx, concurrency, walked).await?;
    restore_buckets(&ctx, buckets).await?;
    if args.checksums {
        record_hashes(&ctx, concurrency).await?;
    }
    Ok(ctx.progress.finish())
}

/// Merge found files into the index, a batch per transaction: whatever
/// arrived while the previous batch was committing.
async fn record_found(ctx: &Ctx, mut rx: mpsc::Receiver<Entry>, walked: Arc<Mutex<Walked>>) -> Result<(), AdminError> {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(entry) = rx.recv().await {
        let mut next = Some(entry);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Key(found) if found.key.len() > ctx.index.max_key => {
                    ctx.progress.fail(Item::replica("too long", &found.key, &found.target, "key longer than the index allows"));
                }
                // Its value (beside it) is what counts.
                Entry::Key(found) if found.meta && found.paired => {}
                Entry::Key(found) if found.meta => {
                    ctx.progress.act(Item::replica("metadata without value", &found.key, &found.target, format!("{} (an orphan)", found.info.url)));
                }
                Entry::Key(found) => batch.push(found),
                Entry::Stray(info) | Entry::Staging(info) => {
                    ctx.progress.fail(Item::file("stray", &info.url, "not a key's file (name does not decode to a key of this folder)"));
                }
            }
            ctx.progress.seen(1);
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        let (c, items, w) = (ctx.clone(), std::mem::take(&mut batch), walked.clone());
        tokio::task::spawn_blocking(move || merge(&c.index, &c.config, &c.progress, &mut w.lock().expect("walk state"), items)).await??;
    }
    Ok(())
}

/// How a value ranks among a key's values found: a generation without
/// metadata file (a write cut before its commit) below the others, then the
/// later start, then the name.
fn rank(described: bool, gen: &str, mtime: u64) -> (bool, u64, &str) {
    (described || gen.is_empty(), written_at(gen, mtime), gen)
}

fn merge(index: &Index, config: &Config, progress: &Progress, walked: &mut Walked, found: Vec<Found>) -> Result<(), IndexError> {
    let mut new_keys = 0;
    let items = found.into_iter().map(|mut f| (std::mem::take(&mut f.key), f));
    index.update_many(items, |key, f, rec, meta| {
        let wanted = key2volume(key, &config.volumes, config.replicas as usize, config.subvolumes);
        let found_meta = || ObjectMeta { size: f.info.size, mtime: f.info.mtime, ..Default::default() };
        // A value at the original's path has no metadata file to find.
        let described = f.paired && !f.gen.is_empty();
        let newer = |walked: &mut Walked| {
            match described || f.gen.is_empty() {
                true => walked.undescribed.remove(key),
                false => walked.undescribed.insert(key.to_vec()),
            };
            let rec = Record { volumes: vec![f.target.clone()], deleted: Deleted::No, hash: String::new(), gen: f.gen.clone() };
            Some((rec, Some(found_meta())))
        };
        let Some(rec) = rec else {
            new_keys += 1;
            return newer(walked);
        };
        let rec_described = !rec.gen.is_empty() && !walked.undescribed.contains(key);
        // Several described values: the one committed last is the key's,
        // which only their metadata files tell (step 2).
        if described && (walked.contested.contains_key(key) || (rec_described && rec.gen != f.gen)) {
            let candidates = walked.contested.entry(key.to_vec()).or_default();
            if rec_described {
                candidates.entry(rec.gen.clone()).or_insert_with(|| rec.volumes.clone());
            }
            candidates.entry(f.gen.clone()).or_default().push(f.target.clone());
        }
        // Files at the original's path are one value (their replicas'
        // mtimes differ by the time the writes took); so are a generation's.
        let order = if f.gen == rec.gen {
            std::cmp::Ordering::Equal
        } else {
            rank(described, &f.gen, f.info.mtime).cmp(&rank(rec_described, &rec.gen, meta.as_ref().map_or(0, |m| m.mtime)))
        };
        match order {
            // An older value's file: the newest value of a key is its value.
            std::cmp::Ordering::Less => {
                progress.act(Item::replica("older value left", key, &f.target, format!("{} (an orphan)", f.info.url)));
                None
            }
            std::cmp::Ordering::Greater => {
                for v in &rec.volumes {
                    progress.act(Item::replica("older value left", key, v, format!("generation {:?} (an orphan)", rec.gen)));
                }
                newer(walked)
            }
            std::cmp::Ordering::Equal if rec.volumes.contains(&f.target) => None,
            std::cmp::Ordering::Equal => {
                let mut volumes = rec.volumes;
                volumes.push(f.target.clone());
                volumes.sort_by_key(|v| (wanted.iter().position(|w| w == v).unwrap_or(usize::MAX), v.clone()));
                // Size and mtime are those of the replica listed first.
                let meta = (meta.is_none() || volumes[0] == f.target).then(found_meta);
                Some((Record { volumes, ..rec }, meta))
            }
        }
    })?;
    progress.changed(new_keys);
    Ok(())
}

/// When a value was written, to pick a key's newest: a generation's start
/// time, else the file's modification time (the original's path).
fn written_at(gen: &str, mtime: u64) -> u64 {
    if gen.is_empty() {
        mtime
    } else {
        generation_secs(gen)
    }
}

/// A value's metadata file from the first of its volumes that serves one
/// (`None`: no volume has it).
async fn read_description(ctx: &Ctx, key: &[u8], gen: &str, volumes: &[String]) -> Result<Option<ValueFile>, Item> {
    let mut failure = None;
    for v in volumes {
        let Some(url) = meta_url(v, key, gen) else { return Ok(None) };
        match ctx.client.get_bytes(&url).await {
            Ok(Some(body)) => match ValueFile::parse(&body) {
                Ok(file) if file.generation == gen && s3_names(key) == (file.bucket.clone(), file.key.clone()) => return Ok(Some(file)),
                Ok(_) => failure = Some(Item::replica("metadata", key, v, "the metadata file names another key or generation")),
                Err(e) => failure = Some(Item::replica("metadata", key, v, e)),
            },
            Ok(None) => {}
            Err(e) => failure = Some(Item::replica("metadata", key, v, e)),
        }
    }
    failure.map_or(Ok(None), Err)
}

/// The value a contested key keeps: of its described values, the one
/// committed last; its record (volumes in placement order) and description.
async fn last_committed(ctx: &Ctx, key: &[u8], rec: &Record, candidates: BTreeMap<String, Vec<String>>) -> Result<Option<(Record, ValueFile)>, Item> {
    let config = &ctx.config;
    let wanted = key2volume(key, &config.volumes, config.replicas as usize, config.subvolumes);
    let mut best: Option<(Record, ValueFile)> = None;
    for (gen, mut volumes) in candidates {
        let Some(file) = read_description(ctx, key, &gen, &volumes).await? else { continue };
        if best.as_ref().is_some_and(|(_, b)| b.written_us >= file.written_us) {
            continue;
        }
        volumes.sort_by_key(|v| (wanted.iter().position(|w| w == v).unwrap_or(usize::MAX), v.clone()));
        volumes.dedup();
        best = Some((Record { volumes, gen, ..rec.clone() }, file));
    }
    if let Some((won, _)) = &best {
        if won.gen != rec.gen {
            ctx.progress.act(Item::key("committed last", key, format!("generation {} kept over {} (started later, committed earlier; an orphan)", won.gen, rec.gen)));
        }
    }
    Ok(best)
}

/// Step 2: give each S3 value its metadata from its metadata file.
/// Returns the buckets the described objects name, each with the time of
/// its oldest object.
async fn describe_values(ctx: &Ctx, concurrency: usize, walked: Walked) -> Result<HashMap<String, u64>, AdminError> {
    let Walked { undescribed, contested } = walked;
    let contested = Mutex::new(contested);
    let md5sum = ctx.config.md5sum;
    let described = records(ctx.index.clone(), Vec::new())
        .try_filter(|(_, rec)| futures::future::ready(!rec.gen.is_empty()))
        .map_ok(|(key, rec)| {
            let candidates = contested.lock().expect("contested").remove(&key);
            let undescribed = undescribed.contains(&key);
            async move {
                let chosen = match candidates {
                    Some(c) => last_committed(ctx, &key, &rec, c).await,
                    None if undescribed => Ok(None),
                    None => read_description(ctx, &key, &rec.gen, &rec.volumes).await.map(|f| f.map(|f| (rec.clone(), f))),
                };
                match chosen {
                    Ok(Some((now, file))) => Ok(Some((key, (rec, now, file)))),
                    Ok(None) => {
                        ctx.progress.act(Item::key("no metadata", &key, "an S3 value without metadata file (written before them, or a write cut before its commit): ETag, checksums and headers not recovered"));
                        Ok(None)
                    }
                    Err(item) => {
                        ctx.progress.fail(item);
                        Ok(None)
                    }
                }
            }
        });
    let buckets = Mutex::new(HashMap::<String, u64>::new());
    in_batches(described, concurrency)
        .try_for_each(|chunk| {
            let mut names = buckets.lock().expect("buckets");
            for (_, (_, _, file)) in &chunk {
                let t = names.entry(file.bucket.clone()).or_insert(u64::MAX);
                *t = (*t).min(file.written_us / 1_000_000);
            }
            let index = ctx.index.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    index.update_many(chunk, |_, (seen, chosen, file), now, _| {
                        // Only if nothing changed the record meanwhile.
                        now.filter(|r| *r == seen)?;
                        let (hash, meta) = file.restore(md5sum);
                        Some((Record { hash, ..chosen }, Some(meta)))
                    })
                })
                .await??;
                Ok(())
            }
        })
        .await?;
    Ok(buckets.into_inner().expect("buckets"))
}

/// Step 3: each bucket as the newest of its files on the volumes says, or,
/// for a bucket only objects name, created bare. A bucket the index holds
/// already (`--clear` keeps buckets) stays as it is.
async fn restore_buckets(ctx: &Ctx, mut named: HashMap<String, u64>) -> Result<(), AdminError> {
    let mut newest: BTreeMap<String, BucketFile> = BTreeMap::new();
    for volume in &ctx.config.volumes {
        for (_, file) in bucket_files(ctx, volume).await {
            if newest.get(&file.name).is_none_or(|n| n.updated_us < file.updated_us) {
                newest.insert(file.name.clone(), file);
            }
        }
    }
    let mut restored: Vec<(String, BucketInfo)> = newest.into_iter().map(|(name, f)| (name, f.info)).collect();
    let described: HashSet<String> = restored.iter().map(|(n, _)| n.clone()).collect();
    named.retain(|name, _| !described.contains(name));
    for (name, oldest) in named {
        ctx.progress.act(Item::new("bucket without file", None, None, format!("{name}: named by objects, no bucket file on any volume; created without owner, grants, policy or CORS")));
        restored.push((name, BucketInfo { created: oldest, ..Default::default() }));
    }
    for (name, info) in restored {
        let known = |id: &str| ctx.config.s3_keys.iter().any(|(a, _)| a == id) || ctx.index.key_info(id).ok().flatten().is_some();
        let mut ids: Vec<&String> = info.owner.iter().chain(info.grants.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids.into_iter().filter(|id| !known(id)) {
            ctx.progress.act(Item::new("unknown key", None, None, format!("bucket {name} names key {id}, which this index does not hold (keys are not on the volumes: `mkv key import` it)")));
        }
        let index = ctx.index.clone();
        let (n, i) = (name.clone(), info.clone());
        match tokio::task::spawn_blocking(move || index.create_bucket(&n, &i)).await?? {
            true => ctx.progress.changed(1),
            false => ctx.progress.act(Item::new("bucket kept", None, None, format!("{name}: the index holds it already; its volumes' description was not applied"))),
        }
    }
    Ok(())
}

/// Run per-key lookups `concurrency` at a time and pass on what they found
/// (their `Some`s) in batches of at most `BATCH`, one transaction each.
fn in_batches<T, F>(lookups: impl Stream<Item = Result<F, IndexError>>, concurrency: usize) -> impl Stream<Item = Result<Vec<T>, AdminError>>
where
    F: Future<Output = Result<Option<T>, IndexError>>,
{
    lookups.try_buffer_unordered(concurrency).try_filter_map(|x| futures::future::ready(Ok(x))).try_chunks(BATCH).map_err(|e| AdminError::from(e.1))
}

/// Read each key's value once (the first replica that serves it) and record
/// its MD5, unless the record changed meanwhile.
async fn record_hashes(ctx: &Ctx, concurrency: usize) -> Result<(), AdminError> {
    let hashed = records(ctx.index.clone(), Vec::new())
        .try_filter(|(_, rec)| futures::future::ready(rec.hash.is_empty()))
        .map_ok(|(key, rec)| async move {
            let mut last = None;
            for v in &rec.volumes {
                match replica_md5(&ctx.client, &crate::volume::replica_url(v, &key, &rec.gen)).await {
                    Ok((_, md5)) => return Ok(Some((key, (rec, md5)))),
                    Err(e) => last = Some(Item::replica("checksum", &key, v, e)),
                }
            }
            if let Some(item) = last {
                ctx.progress.fail(item);
            }
            Ok(None)
        });
    in_batches(hashed, concurrency)
        .try_for_each(|chunk| async move {
            let index = ctx.index.clone();
            tokio::task::spawn_blocking(move || {
                index.update_many(chunk, |_, (seen, md5), now, _| {
                    let now = now.filter(|r| *r == seen)?;
                    Some((Record { hash: md5, ..now }, None))
                })
            })
            .await??;
            Ok(())
        })
        .await
}
