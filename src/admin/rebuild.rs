//! `mkv rebuild`: regenerate the index from what the volumes hold. Every key
//! file found records its target; a key on several volumes lists them in
//! placement order, then the rest. A key with files of several values (S3
//! writes whose replaced files were not collected yet) gets the newest; the
//! older ones are reported, left as orphans. Size and mtime come from the autoindex;
//! the MD5 only with `--checksums` (it means reading every value once).

use std::sync::Arc;

use futures::stream::TryStreamExt;
use tokio::sync::mpsc;

use super::walk::{Entry, Found, Walker};
use super::{open_index, records, replica_md5, volume_client, AdminError, Ctx, Item, Progress, Report};
use crate::config::{Config, RebuildArgs};
use crate::index::{Deleted, Index, IndexError, ObjectMeta, Record};
use crate::placement::{generation_secs, key2volume};

/// Found files (or hashes) written per LMDB transaction at most.
const BATCH: usize = 2048;

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
    let ((), recorded) = tokio::join!(walker.walk(&volumes, tx), record_found(&ctx, rx));
    recorded?;
    if args.checksums {
        record_hashes(&ctx, concurrency).await?;
    }
    Ok(ctx.progress.finish())
}

/// Merge found files into the index, a batch per transaction: whatever
/// arrived while the previous batch was committing.
async fn record_found(ctx: &Ctx, mut rx: mpsc::Receiver<Entry>) -> Result<(), AdminError> {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(entry) = rx.recv().await {
        let mut next = Some(entry);
        while let Some(entry) = next.take() {
            match entry {
                Entry::Key(found) if found.key.len() > ctx.index.max_key => {
                    ctx.progress.fail(Item::replica("too long", &found.key, &found.target, "key longer than the index allows"));
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
        let (c, items) = (ctx.clone(), std::mem::take(&mut batch));
        tokio::task::spawn_blocking(move || merge(&c.index, &c.config, &c.progress, items)).await??;
    }
    Ok(())
}

fn merge(index: &Index, config: &Config, progress: &Progress, found: Vec<Found>) -> Result<(), IndexError> {
    let mut new_keys = 0;
    let items = found.into_iter().map(|mut f| (std::mem::take(&mut f.key), f));
    index.update_many(items, |key, f, rec, meta| {
        let wanted = key2volume(key, &config.volumes, config.replicas as usize, config.subvolumes);
        let found_meta = || ObjectMeta { size: f.info.size, mtime: f.info.mtime, ..Default::default() };
        let Some(rec) = rec else {
            new_keys += 1;
            let rec = Record { volumes: vec![f.target.clone()], deleted: Deleted::No, hash: String::new(), gen: f.gen.clone() };
            return Some((rec, Some(found_meta())));
        };
        let current = (written_at(&rec.gen, meta.as_ref().map_or(0, |m| m.mtime)), rec.gen.as_str());
        // Files at the original's path are one value (their replicas'
        // mtimes differ by the time the writes took).
        let order = if f.gen.is_empty() && rec.gen.is_empty() {
            std::cmp::Ordering::Equal
        } else {
            (written_at(&f.gen, f.info.mtime), f.gen.as_str()).cmp(&current)
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
                let newer = Record { volumes: vec![f.target.clone()], deleted: Deleted::No, hash: String::new(), gen: f.gen.clone() };
                Some((newer, Some(found_meta())))
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
        })
        .try_buffer_unordered(concurrency)
        .try_filter_map(|x| futures::future::ready(Ok(x)))
        .try_chunks(BATCH)
        .map_err(|e| AdminError::from(e.1));
    hashed
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
