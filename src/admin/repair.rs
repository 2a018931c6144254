//! `mkv repair`: makes live again a key hidden by a cut write or delete
//! whose replicas are all whole; for every live key with a problem `verify` would report,
//! delete its bad replicas (wrong size or MD5) once a good one is known, then
//! move it like `rebalance` (which re-creates missing replicas from a good
//! one and fixes the record); with `--checksums` also record the MD5 of keys
//! that have none; with `--delete-orphans` delete unreferenced files. Every
//! change is reported.

use std::sync::Arc;

use futures::stream::TryStreamExt;

use super::rebalance::Mover;
use super::verify::{check_buckets, check_key, for_each_orphan, hidden_whole, Probe};
use super::{open_index, records, volume_client, AdminError, Ctx, Item, Progress, Report};
use crate::config::{Config, RepairArgs};
use crate::describe::{meta_url, ValueFile};
use crate::store::describe::{known_md5, put_bucket_files};
use crate::index::{Deleted, Record};
use crate::volume::replica_url;

pub async fn run(config: Config, args: RepairArgs) -> Result<Report, AdminError> {
    let index = open_index(&config)?;
    let mover = Mover::new(args.server.as_deref(), &index, &config).await?;
    let progress = Progress::start("repair", "keys", Some(index.len()?));
    let ctx = Ctx { client: volume_client(&config), config: Arc::new(config), index, progress };
    let concurrency = args.common.concurrency as usize;
    let (c, mover) = (&ctx, &mover);
    records(ctx.index.clone(), args.prefix.clone().into_bytes())
        .map_err(AdminError::from)
        .try_for_each_concurrent(concurrency, |(key, rec)| async move {
            if rec.is_live() {
                repair_key(c, mover, &key, &rec, args.checksums).await?;
            } else {
                relive_hidden(c, &key, &rec, args.checksums).await?;
            }
            c.progress.seen(1);
            Ok(())
        })
        .await?;
    if args.prefix.is_empty() {
        repair_buckets(c).await?;
    }
    if args.delete_orphans {
        for_each_orphan(&ctx, concurrency, args.min_orphan_age, args.prefix.as_bytes(), |orphan, target| async move {
            let url = orphan.info.url.clone();
            match orphan.still_orphan(c, target.as_deref()) {
                Ok(true) => match c.client.delete(&url).await {
                    Ok(()) => {
                        c.progress.act(Item { kind: "deleted orphan".into(), ..orphan.item() });
                        c.progress.changed(1);
                    }
                    Err(e) => c.progress.fail(Item::file("orphan", &url, e)),
                },
                Ok(false) => {}
                Err(e) => c.progress.fail(Item::file("orphan", &url, e)),
            }
        })
        .await?;
    }
    Ok(ctx.progress.finish())
}

/// Rewrite the file of every bucket whose file is missing or differs on a
/// volume (on every volume: one write per bucket). Files of buckets the
/// index does not hold stay: only an operator knows whether the bucket is
/// gone or the index lost it.
async fn repair_buckets(ctx: &Ctx) -> Result<(), AdminError> {
    for (name, problems) in check_buckets(ctx).await? {
        let Some(info) = ctx.index.bucket(&name)? else {
            problems.into_iter().for_each(|p| ctx.progress.fail(p));
            continue;
        };
        let failed = put_bucket_files(&ctx.client, &ctx.config.volumes, &name, Some(&info)).await;
        for (volume, e) in &failed {
            ctx.progress.fail(Item::new("bucket file", None, Some(volume), format!("bucket {name}: {e}")));
        }
        if failed.is_empty() {
            ctx.progress.act(Item::new("described", None, None, format!("bucket {name}: its file written on every volume")));
            ctx.progress.changed(1);
        }
    }
    Ok(())
}

/// A record that is not live, not UNLINKed, with every replica whole: its
/// write finished on the volumes but was cut before the record went live
/// (or a delete was cut before it removed anything). Made live again, if
/// the record did not change meanwhile.
async fn relive_hidden(ctx: &Ctx, key: &[u8], rec: &Record, checksums: bool) -> Result<(), AdminError> {
    let meta = ctx.index.get_meta(key)?;
    match hidden_whole(ctx, key, rec, meta.as_ref(), checksums).await {
        None => {}
        Some(false) => ctx.progress.fail(Item::key("interrupted", key, "not live and not unlinked, replicas missing: DELETE the key")),
        Some(true) => {
            let live = Record { deleted: Deleted::No, ..rec.clone() };
            let (index, k, was) = (ctx.index.clone(), key.to_vec(), rec.clone());
            if tokio::task::spawn_blocking(move || index.put_if(&k, &was, &live, None)).await?? {
                ctx.progress.act(Item::key("made live", key, "every replica was whole"));
                ctx.progress.changed(1);
            }
        }
    }
    Ok(())
}

async fn repair_key(ctx: &Ctx, mover: &Mover, key: &[u8], rec: &Record, checksums: bool) -> Result<(), AdminError> {
    let meta = ctx.index.get_meta(key)?;
    let checked = check_key(ctx, key, rec, meta.as_ref(), checksums).await;
    let record_md5 = checksums && rec.hash.is_empty() && ctx.config.md5sum;
    if checked.problems.is_empty() && !record_md5 {
        return Ok(());
    }
    let good = checked.good().next().map(|(_, p)| p.clone());
    let good_md5 = match good {
        Some(Probe::Present { md5, .. }) => md5,
        _ => {
            for p in checked.problems {
                ctx.progress.fail(p);
            }
            ctx.progress.fail(Item::key("lost", key, "no good replica to repair from"));
            return Ok(());
        }
    };
    let fail = |volume: Option<&str>, why: String| ctx.progress.fail(Item::new("repair", Some(key), volume, why));
    // Bad replicas go first, so the move below copies from a good one.
    for v in &checked.bad {
        if ctx.index.get(key)?.as_ref() != Some(rec) {
            fail(None, "the key changed during the repair (a concurrent write or delete); run again".into());
            return Ok(());
        }
        if let Err(e) = ctx.client.delete(&replica_url(v, key, &rec.gen)).await {
            fail(Some(v), e.to_string());
            return Ok(());
        }
        ctx.progress.act(Item::replica("deleted bad replica", key, v, ""));
    }
    let mut changed = !checked.bad.is_empty();
    // Replica problems (each undescribed volume is one metadata problem);
    // a move through the server cannot tell whether it copied anything.
    if checked.problems.len() > checked.undescribed.len() {
        match mover.rebalance(&ctx.index, key, rec).await {
            Ok(Some(_)) => {
                let now = ctx.index.get(key)?.map(|r| r.volumes.join(",")).unwrap_or_default();
                ctx.progress.act(Item::key("restored", key, format!("replicas on {now}")));
                changed = true;
            }
            Ok(None) => {}
            Err(e) => {
                fail(None, e);
                return Ok(());
            }
        }
    }
    if let (true, Some(md5)) = (record_md5, good_md5) {
        let now = ctx.index.get(key)?.filter(|r| r.is_live() && r.hash.is_empty());
        if let Some(now) = now {
            let with_md5 = Record { hash: md5.clone(), ..now.clone() };
            let (index, k) = (ctx.index.clone(), key.to_vec());
            if tokio::task::spawn_blocking(move || index.put_if(&k, &now, &with_md5, None)).await?? {
                ctx.progress.act(Item::key("recorded MD5", key, md5));
                changed = true;
            }
        }
    }
    if !checked.undescribed.is_empty() || !checked.bad.is_empty() {
        changed |= describe_again(ctx, key, &checked.descriptions).await?;
    }
    if changed {
        ctx.progress.changed(1);
    }
    Ok(())
}

/// Write an S3 value's metadata file from the index on every recorded
/// volume whose file is missing or disagrees (after the replicas are
/// repaired: the record may have changed). The MD5 and commit time come
/// from the record, a file read, or the ETag of a single-part value.
async fn describe_again(ctx: &Ctx, key: &[u8], read: &[ValueFile]) -> Result<bool, AdminError> {
    let (Some(rec), Some(meta)) = (ctx.index.get(key)?.filter(|r| r.is_live() && !r.gen.is_empty()), ctx.index.get_meta(key)?) else {
        return Ok(false);
    };
    let Some(md5) = known_md5(&ctx.client, key, &rec, &meta, read).await else {
        ctx.progress.fail(Item::key("metadata", key, "cannot describe the value: its MD5 is unknown (run `repair --checksums` first)"));
        return Ok(false);
    };
    let written_us = read.iter().map(|f| f.written_us).find(|us| us / 1_000_000 == meta.mtime).unwrap_or(meta.mtime * 1_000_000);
    let file = ValueFile::new(key, &rec.gen, written_us, &md5, &meta);
    let mut wrote = false;
    for v in &rec.volumes {
        let Some(url) = meta_url(v, key, &rec.gen) else { continue };
        let current = ctx.client.get_bytes(&url).await.ok().flatten().and_then(|b| ValueFile::parse(&b).ok());
        if current.is_some_and(|f| f.agrees(key, &rec, &meta)) {
            continue;
        }
        // Nothing changed the key meanwhile (a write or metadata copy).
        if ctx.index.get(key)?.as_ref() != Some(&rec) || ctx.index.get_meta(key)?.as_ref() != Some(&meta) {
            ctx.progress.fail(Item::key("metadata", key, "the key changed during the repair; run again"));
            return Ok(wrote);
        }
        match ctx.client.put_bytes(&url, file.to_json().into()).await {
            Ok(()) => {
                ctx.progress.act(Item::replica("described", key, v, "metadata file written from the index"));
                wrote = true;
            }
            Err(e) => ctx.progress.fail(Item::replica("metadata", key, v, e)),
        }
    }
    Ok(wrote)
}
