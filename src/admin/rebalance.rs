//! `mkv rebalance`: move every live key to the volumes placement chooses
//! now. Each key moves with `Store::rebalance_locked` (copy, record old and
//! new, delete old, record new): in this process, or through a running
//! server's `REBALANCE` with `--server` so the server's key locks apply.
//! Idempotent: a rerun after a kill finishes the job.

use std::sync::Arc;

use futures::stream::TryStreamExt;

use super::{open_index, records, AdminError, Item, Moved, Progress, Report, ServerClient};
use crate::config::{Config, RebalanceArgs};
use crate::error::Error;
use crate::index::{Index, Record};
use crate::store::Store;

/// Where a key's move runs.
pub enum Mover {
    /// In this process: the server must be stopped, or not writing these
    /// keys (see docs/operations.md).
    Direct(Store),
    Server(ServerClient),
}

impl Mover {
    pub async fn new(server: Option<&str>, index: &Index, config: &Config) -> Result<Mover, AdminError> {
        Ok(match server {
            Some(addr) => Mover::Server(ServerClient::connect(addr, config).await?),
            None => Mover::Direct(Store::new(index.clone(), Arc::new(config.clone()))),
        })
    }

    /// Move one key; `Ok(None)` if it is no longer live (skipped), else
    /// whether its record changed.
    pub async fn rebalance(&self, index: &Index, key: &[u8], before: &Record) -> Result<Option<bool>, String> {
        match self {
            Mover::Direct(store) => match store.rebalance(key).await {
                Ok(moved) => Ok(Some(moved)),
                Err(Error::NotFound) => Ok(None),
                Err(Error::Locked) => Err("the key changed during the move (a concurrent write or delete); run again".into()),
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
    let (index_ref, mover, progress_ref) = (&index, &mover, &progress);
    records(index.clone(), args.prefix.into_bytes())
        .map_err(AdminError::from)
        .try_for_each_concurrent(args.common.concurrency as usize, |(key, rec)| async move {
            if rec.is_live() {
                match mover.rebalance(index_ref, &key, &rec).await {
                    Ok(Some(true)) => progress_ref.changed(1),
                    Ok(_) => {}
                    Err(e) => progress_ref.fail(Item::key("rebalance", &key, e)),
                }
            }
            progress_ref.seen(1);
            Ok(())
        })
        .await?;
    Ok(progress.finish())
}
