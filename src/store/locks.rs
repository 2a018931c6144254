//! Per-key locks: a write, delete or move of a key holds its lock. Native
//! calls `try_lock` (busy → 409, as the original); S3 calls `lock` and waits,
//! so concurrent overwrites serialize.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Table = Arc<Mutex<HashMap<Vec<u8>, Arc<AsyncMutex<()>>>>>;

#[derive(Clone, Default)]
pub struct KeyLocks {
    table: Table,
}

pub struct KeyGuard {
    table: Table,
    key: Vec<u8>,
    slot: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    fn slot(&self, key: &[u8]) -> Arc<AsyncMutex<()>> {
        self.table.lock().unwrap().entry(key.to_vec()).or_default().clone()
    }

    fn guard(&self, key: &[u8], slot: Arc<AsyncMutex<()>>, guard: OwnedMutexGuard<()>) -> KeyGuard {
        KeyGuard { table: self.table.clone(), key: key.to_vec(), slot, guard: Some(guard) }
    }

    /// The lock if nobody holds it now.
    pub fn try_lock(&self, key: &[u8]) -> Option<KeyGuard> {
        let slot = self.slot(key);
        match slot.clone().try_lock_owned() {
            Ok(g) => Some(self.guard(key, slot, g)),
            Err(_) => {
                release(&self.table, key, &slot);
                None
            }
        }
    }

    /// Wait for the lock.
    pub async fn lock(&self, key: &[u8]) -> KeyGuard {
        let slot = self.slot(key);
        let g = slot.clone().lock_owned().await;
        self.guard(key, slot, g)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

/// Drop our handle on a slot, removing it from the table when nobody else
/// (holder or waiter) has one: the table holds only keys in use.
fn release(table: &Table, key: &[u8], slot: &Arc<AsyncMutex<()>>) {
    let mut t = table.lock().unwrap();
    // One count for the table's own reference, one for ours.
    if Arc::strong_count(slot) == 2 {
        t.remove(key);
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.guard.take();
        release(&self.table, &self.key, &self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn try_lock_excludes_and_cleans_up() {
        let l = KeyLocks::default();
        let g = l.try_lock(b"k").unwrap();
        assert!(l.try_lock(b"k").is_none());
        assert!(l.try_lock(b"other").is_some());
        drop(g);
        assert_eq!(l.len(), 0);
        assert!(l.try_lock(b"k").is_some());
    }

    #[tokio::test]
    async fn lock_waits_for_holder() {
        let l = KeyLocks::default();
        let g = l.lock(b"k").await;
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(b"k").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap();
        assert_eq!(l.len(), 0);
    }
}
