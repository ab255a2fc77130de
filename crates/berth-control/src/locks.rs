//! Per-sandbox async locks: every change to one sandbox (API, reconciler, expiry) is serialised,
//! while different sandboxes proceed in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use berth_core::SandboxId;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct SandboxLocks {
    locks: Mutex<HashMap<SandboxId, Weak<AsyncMutex<()>>>>,
}

impl SandboxLocks {
    pub async fn lock(&self, id: &SandboxId) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if locks.len() > 1024 {
                locks.retain(|_, weak| weak.strong_count() > 0);
            }
            match locks.get(id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(id.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}
