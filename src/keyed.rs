//! Per-endpoint state in a bounded map that readers never lock: the breakers, and the
//! overload guards (retry budget, holds, rate limit, bulkhead), each by endpoint key.
//!
//! Lookups happen on every call, new endpoints rarely: the map is an immutable snapshot
//! behind an `ArcSwap`, read without a lock; adding an endpoint copies it under a writers'
//! mutex. When the map is full, the idlest entries are dropped, busy ones last (an open
//! breaker, calls in flight: state worth keeping). "Idle" is measured in insertions, not
//! time: each entry notes the map's insertion count when used, which is written only when it
//! changed, so steady traffic writes nothing shared.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::breaker::endpoint_key;

/// The key of a request to `url`'s endpoint state: the policy's one key for all its requests
/// (`breaker_key`) if it has one, else the URL's [`endpoint_key`]. The one rule for breakers
/// and overload guards, on every path.
pub(crate) fn key_for<'a>(key: Option<&'a str>, url: &'a url::Url) -> Cow<'a, str> {
    match key {
        Some(key) => Cow::Borrowed(key),
        None => endpoint_key(url),
    }
}

/// What the map needs of its entries.
pub(crate) trait Entry: Send + Sync + 'static {
    /// The map's insertion count when this entry was last used.
    fn last_used(&self) -> &AtomicU64;
    /// Worth keeping longer than an idle entry.
    fn busy(&self) -> bool;
    /// Dropped from the map (calls holding it keep it until they end).
    fn evicted(&self, _key: &str) {}
}

/// foldhash instead of SipHash: the lookup runs on every call, and a per-process random seed
/// still keeps the keys (host names) from being chosen to collide.
type Map<T> = HashMap<Arc<str>, Arc<T>, foldhash::fast::RandomState>;

/// Entries by endpoint key, at most `max` of them.
pub(crate) struct Keyed<T> {
    map: ArcSwap<Map<T>>,
    writer: Mutex<()>,
    insertions: AtomicU64,
    max: usize,
}

impl<T: Entry> Keyed<T> {
    pub(crate) fn new(max: usize) -> Self {
        Keyed {
            map: ArcSwap::from_pointee(Map::default()),
            writer: Mutex::new(()),
            insertions: AtomicU64::new(0),
            max: max.max(1),
        }
    }

    /// The entry of `key`, made by `make` on first use (under the writers' lock, so at most
    /// once per key and insertion).
    #[inline]
    pub(crate) fn get_or_insert(&self, key: &str, make: impl FnOnce(Arc<str>) -> T) -> Arc<T> {
        if let Some(entry) = self.map.load().get(key) {
            let now = self.insertions.load(Relaxed);
            if entry.last_used().load(Relaxed) != now {
                entry.last_used().store(now, Relaxed);
            }
            return entry.clone();
        }
        self.insert(key, make)
    }

    fn insert(&self, key: &str, make: impl FnOnce(Arc<str>) -> T) -> Arc<T> {
        let _writing = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(entry) = current.get(key) {
            return entry.clone();
        }
        let mut next: Map<T> = (*current).clone();
        if next.len() >= self.max {
            evict(&mut next, self.max);
        }
        let key: Arc<str> = Arc::from(key);
        let entry = Arc::new(make(key.clone()));
        let epoch = self.insertions.fetch_add(1, Relaxed) + 1;
        entry.last_used().store(epoch, Relaxed);
        next.insert(key, entry.clone());
        self.map.store(Arc::new(next));
        entry
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<T>> {
        self.map.load().get(key).cloned()
    }

    pub(crate) fn keys(&self) -> Vec<Arc<str>> {
        self.map.load().keys().cloned().collect()
    }

    /// The most entries it keeps.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn len(&self) -> usize {
        self.map.load().len()
    }
}

/// Drops a sixteenth of the map (at least one), idle and idlest first, so that the copy that
/// each insertion makes is amortised over many insertions.
fn evict<T: Entry>(map: &mut Map<T>, max: usize) {
    let excess = map.len() + 1 - max.min(map.len() + 1);
    let batch = (max / 16).max(1).max(excess);
    let mut candidates: Vec<(bool, u64, Arc<str>)> = map
        .iter()
        .map(|(key, e)| (e.busy(), e.last_used().load(Relaxed), key.clone()))
        .collect();
    candidates.sort_unstable_by_key(|c| (c.0, c.1));
    for (_, _, key) in candidates.into_iter().take(batch) {
        if let Some(entry) = map.remove(&key) {
            entry.evicted(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    struct Item {
        used: AtomicU64,
        busy: AtomicBool,
    }

    impl Entry for Item {
        fn last_used(&self) -> &AtomicU64 {
            &self.used
        }
        fn busy(&self) -> bool {
            self.busy.load(Relaxed)
        }
    }

    fn item(_: Arc<str>) -> Item {
        Item {
            used: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    #[test]
    fn it_stays_bounded_and_keeps_busy_entries_longest() {
        let keyed = Keyed::new(16);
        keyed.get_or_insert("busy", item).busy.store(true, Relaxed);
        for i in 0..100 {
            keyed.get_or_insert(&format!("k{i}"), item);
            assert!(keyed.len() <= 16);
        }
        assert!(keyed.get("busy").is_some());
        assert!(keyed.get("k0").is_none());
        let first = keyed.get_or_insert("k99", item);
        assert!(Arc::ptr_eq(&first, &keyed.get_or_insert("k99", item)));
    }
}
