//! The in-memory view of every sandbox record the server knows: reads are answered here and
//! never touch the engine or the store. Kept current by the service's write-through.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use berth_core::{Sandbox, SandboxId};

use crate::events::EventHub;
use berth_store::{Cursor, Page, SandboxFilter};
use chrono::{DateTime, Utc};

#[derive(Default)]
struct Inner {
    by_id: HashMap<SandboxId, Arc<Sandbox>>,
    /// The stable list order `(created_at, id)`.
    order: BTreeSet<(DateTime<Utc>, SandboxId)>,
}

/// A write-through cache of the store's sandbox records; every change put into it is an event.
#[derive(Default)]
pub struct SandboxIndex {
    inner: RwLock<Inner>,
    events: EventHub,
}

impl SandboxIndex {
    pub fn get(&self, id: &SandboxId) -> Option<Arc<Sandbox>> {
        self.read().by_id.get(id).cloned()
    }

    /// Puts a changed record, recording the events the change stands for.
    pub fn put(&self, sandbox: Sandbox) {
        let current = Arc::new(sandbox);
        let previous = self.insert(Arc::clone(&current));
        self.events.record(previous.as_deref(), &current);
    }

    /// Puts a record as it was found in the store at start: no change, no event.
    pub fn load(&self, sandbox: Sandbox) {
        self.insert(Arc::new(sandbox));
    }

    pub fn events(&self) -> &EventHub {
        &self.events
    }

    fn insert(&self, sandbox: Arc<Sandbox>) -> Option<Arc<Sandbox>> {
        let mut inner = self.write();
        let key = (sandbox.created_at, sandbox.id.clone());
        let previous = inner.by_id.insert(sandbox.id.clone(), sandbox);
        if let Some(previous) = &previous
            && previous.created_at != key.0
        {
            inner.order.remove(&(previous.created_at, previous.id.clone()));
        }
        inner.order.insert(key);
        previous
    }

    pub fn remove(&self, id: &SandboxId) {
        let mut inner = self.write();
        if let Some(previous) = inner.by_id.remove(id) {
            inner.order.remove(&(previous.created_at, previous.id.clone()));
        }
    }

    /// A record matching `predicate`, if any (the first found, in no particular order).
    pub fn find(&self, predicate: impl Fn(&Sandbox) -> bool) -> Option<Arc<Sandbox>> {
        self.read().by_id.values().find(|sandbox| predicate(sandbox)).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record, in list order.
    pub fn snapshot(&self) -> Vec<Arc<Sandbox>> {
        let inner = self.read();
        inner
            .order
            .iter()
            .filter_map(|(_, id)| inner.by_id.get(id).cloned())
            .collect()
    }

    /// Same contract as `Store::list`: up to `limit` matches strictly after `after`.
    pub fn list(&self, filter: &SandboxFilter, after: Option<&Cursor>, limit: usize) -> Page {
        let inner = self.read();
        let start = match after {
            Some(cursor) => std::ops::Bound::Excluded((cursor.created_at, cursor.id.clone())),
            None => std::ops::Bound::Unbounded,
        };
        let mut items = Vec::with_capacity(limit.min(256));
        let mut more = false;
        for (_, id) in inner.order.range((start, std::ops::Bound::Unbounded)) {
            let Some(sandbox) = inner.by_id.get(id) else { continue };
            if !filter.matches(sandbox) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(Sandbox::clone(sandbox));
        }
        let next = if more { items.last().map(Cursor::after) } else { None };
        Page { items, next }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
