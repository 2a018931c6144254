//! `mkv rebalance`: move every live key to the volumes placement chooses
//! now, as `Store::rebalance_locked` does (copy, record old and new, delete
//! old, record new). With `--server`, each key moves through the server's
//! `REBALANCE` so its key locks apply; otherwise in this process, a batch of
//! keys at a time so that their record updates share two transactions.
//! Idempotent: a rerun after a kill finishes the job.

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::{open_index, records, AdminError, Item, Moved, Progress, Report, ServerClient};
use crate::config::{Config, RebalanceArgs};
use crate::error::Error;
use crate::index::{Index, IndexError, Record};
use crate::store::{Move, Store};

/// Keys per direct-mode batch, per request in flight.
const BATCH_PER_TASK: usize = 8;

const CHANGED: &str = "the key changed during the move (a concurrent write or delete); run again";

/// Where a key's move runs.
pub enum Mover {
    /// In this process: the server must be stopped, or not writing these
    /// keys (see docs/operations.md).
    Direct(Box<Store>),
    Server(ServerClient),
}

impl Mover {
    pub async fn new(server: Option<&str>, index: &Index, config: &Config) -> Result<Mover, AdminError> {
        Ok(match server {
            Some(addr) => Mover::Server(ServerClient::connect(addr, config).await?),
            None => Mover::Direct(Box::new(Store::new(index.clone(), Arc::new(config.clone())))),
        })
    }

    /// Move one key; `Ok(None)` if it is no longer live (skipped), else
    /// whether its record changed.
    pub async fn rebalance(&self, index: &Index, key: &[u8], before: &Record) -> Result<Option<bool>, String> {
        match self {
            Mover::Direct(store) => match store.rebalance(key).await {
                Ok(moved) => Ok(Some(moved)),
                Err(Error::NotFound) => Ok(None),
                Err(Error::Locked) => Err(CHANGED.into()),
                Err(e) => Err(e.to_string()),
            },
            Mover::Server(server) => {
                let moved = server.rebalance(key).await?;
                let now = index.get(key).map_err(|e| e.to_string())?;
                match (moved, now) {
                    (Moved::Done, now) => Ok(Some(now.as_ref() != Some(before))),
                    (Moved::Gone, Some(now)) if now.is_live() => Err("the server does not know a key the index holds live: is --server using this --db?".into()),
                    (Moved::Gone, _) => Ok(None),
                }
            }
        }
    }
}

pub async fn run(config: Config, args: RebalanceArgs) -> Result<Report, AdminError> {
    let index = open_index(&config)?;
    let mover = Mover::new(args.server.as_deref(), &index, &config).await?;
    let progress = Progress::start("rebalance", "keys", Some(index.len()?));
    let concurrency = args.common.concurrency as usize;
    let keys = records(index.clone(), args.prefix.into_bytes()).map_err(AdminError::from);
    match &mover {
        Mover::Direct(store) => {
            keys.try_chunks(concurrency * BATCH_PER_TASK)
                .map_err(|e| e.1)
                .try_for_each(|batch| move_batch(store, batch, concurrency, &progress))
                .await?
        }
        Mover::Server(_) => {
            let (index, mover, progress) = (&index, &mover, &progress);
            keys.try_for_each_concurrent(concurrency, |(key, rec)| async move {
                if rec.is_live() {
                    match mover.rebalance(index, &key, &rec).await {
                        Ok(Some(true)) => progress.changed(1),
                        Ok(_) => {}
                        Err(e) => progress.fail(Item::key("rebalance", &key, e)),
                    }
                }
                progress.seen(1);
                Ok(())
            })
            .await?
        }
    }
    Ok(progress.finish())
}

/// Move a batch of keys in this process: copies concurrently, then one
/// transaction records every move's new and old volumes, then the old
/// replicas go, then one transaction records the new volumes alone.
async fn move_batch(store: &Store, batch: Vec<(Vec<u8>, Record)>, concurrency: usize, progress: &Progress) -> Result<(), AdminError> {
    let prepared: Vec<_> = stream::iter(batch.iter().filter(|(_, rec)| rec.is_live()))
        .map(|(key, _)| async move { (key, store.prepare_rebalance(key).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut moves = Vec::new();
    for (key, prepared) in prepared {
        match prepared {
            Ok(Some(m)) => moves.push(m),
            Ok(None) | Err(Error::NotFound) => {}
            Err(e) => progress.fail(Item::key("rebalance", key, e)),
        }
    }
    let recorded = swap_records(&store.index, moves, false, progress).await?;
    let deleted: Vec<Move> = stream::iter(recorded)
        .map(|m| async move {
            let deleted = store.delete_old_replicas(&m).await;
            (m, deleted)
        })
        .buffer_unordered(concurrency)
        .filter_map(|(m, deleted)| async move {
            match deleted {
                Ok(()) => Some(m),
                Err(e) => {
                    progress.fail(Item::key("rebalance", &m.key, e));
                    None
                }
            }
        })
        .collect()
        .await;
    let done = swap_records(&store.index, deleted, true, progress).await?;
    progress.changed(done.len() as u64);
    progress.seen(batch.len() as u64);
    Ok(())
}

/// In one transaction, replace each move's record (`read` by `both`, or
/// with `last` `both` by `done`) where it is still the one expected; the
/// others are reported as changed meanwhile. Returns the moves that went on.
async fn swap_records(index: &Index, moves: Vec<Move>, last: bool, progress: &Progress) -> Result<Vec<Move>, AdminError> {
    let index = index.clone();
    let (moves, went) = tokio::task::spawn_blocking(move || {
        let step = |m: &Move| if last { (m.both.clone(), m.done.clone()) } else { (m.read.clone(), m.both.clone()) };
        let mut went = vec![false; moves.len()];
        index.update_many(moves.iter().enumerate().map(|(i, m)| (m.key.clone(), i)), |_, i, now, _| {
            let (from, to) = step(&moves[i]);
            went[i] = now.as_ref() == Some(&from);
            (went[i] && from != to).then_some((to, None))
        })?;
        Ok::<_, IndexError>((moves, went))
    })
    .await??;
    Ok(moves
        .into_iter()
        .zip(went)
        .filter_map(|(m, went)| {
            if !went {
                progress.fail(Item::key("rebalance", &m.key, CHANGED));
            }
            went.then_some(m)
        })
        .collect())
}
