//! Per-endpoint state in a bounded map that readers never lock: the breakers, and the
//! overload guards (retry budget, holds, rate limit, bulkhead), each by endpoint key; and that
//! key ([`endpoint_key`], public as `breaker::endpoint_key`, and [`key_for`]), on the ground
//! floor so that the breaker and the guards both build on it.
//!
//! Lookups happen on every call, new endpoints rarely: the map is an immutable snapshot
//! behind an `ArcSwap`, read without a lock; adding an endpoint copies it under a writers'
//! mutex. When the map is full, the idlest entries are dropped, and only idle ones: an entry
//! that still constrains a call (an open breaker, a spent rate limit, a drawn-down retry
//! budget, a hold, calls in flight or queued) is never dropped, since a fresh one in its
//! place would forget that limit. When every entry is busy the map grows past its bound
//! instead, counted and said once at WARN ([`over_bound`](crate::telemetry::overload)); it
//! shrinks back as its entries become idle and new endpoints come. "Idle" is measured in
//! insertions, not time: each entry notes the map's insertion count when used, which is
//! written only when it changed, so steady traffic writes nothing shared. Whether an entry is
//! busy is asked only when an insertion finds the map full, never on a lookup.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use url::{Position, Url};

/// The key of a request to `url`'s breaker in a [`CircuitBreakerLayer`](crate::breaker::CircuitBreakerLayer):
/// the layer's one key for all its requests if it has one, else the URL's [`endpoint_key`].
pub(crate) fn key_for<'a>(key: Option<&'a str>, url: &'a Url) -> Cow<'a, str> {
    match key {
        Some(key) => Cow::Borrowed(key),
        None => endpoint_key(url),
    }
}

/// The default endpoint key of a URL: scheme, host and port, e.g. `https://api.example:8443`
/// (a default port is left out, as in the URL). Never includes user info, path or query.
pub fn endpoint_key(url: &Url) -> Cow<'_, str> {
    // Both are cheap reads of positions the URL keeps; scanning the prefix for '@' was not.
    if url.username().is_empty() && url.password().is_none() {
        Cow::Borrowed(&url[..Position::AfterPort])
    } else {
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Cow::Owned(format!(
            "{}://{}{port}",
            url.scheme(),
            url.host_str().unwrap_or("")
        ))
    }
}

/// What the map needs of its entries.
pub(crate) trait Entry: Send + Sync + 'static {
    /// The map's insertion count when this entry was last used.
    fn last_used(&self) -> &AtomicU64;
    /// Still constrains a call: never dropped. Asked only when the map is full.
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
    /// What the map holds (`breakers`, `overload_guards`), as its telemetry names it.
    kind: &'static str,
    /// Whether the WARN that the map outgrew its bound was said (once per map).
    warned: AtomicBool,
}

impl<T: Entry> Keyed<T> {
    /// A map of at most `max` idle entries (more only while they are busy); `kind` names it
    /// in telemetry.
    pub(crate) fn new(max: usize, kind: &'static str) -> Self {
        Keyed {
            map: ArcSwap::from_pointee(Map::default()),
            writer: Mutex::new(()),
            insertions: AtomicU64::new(0),
            max: max.max(1),
            kind,
            warned: AtomicBool::new(false),
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
            if next.len() >= self.max {
                // Every entry left still limits a call: grow rather than forget one.
                let first = !self.warned.swap(true, Relaxed);
                crate::telemetry::overload::over_bound(self.kind, next.len() + 1, self.max, first);
            }
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

/// Drops a sixteenth of the bound (at least one, and at least what the map holds over it),
/// idlest first, so that the copy that each insertion makes is amortised over many
/// insertions. Only idle entries: a busy one stays, however many there are.
fn evict<T: Entry>(map: &mut Map<T>, max: usize) {
    let excess = map.len() + 1 - max.min(map.len() + 1);
    let batch = (max / 16).max(1).max(excess);
    let mut candidates: Vec<(u64, Arc<str>)> = map
        .iter()
        .filter(|(_, e)| !e.busy())
        .map(|(key, e)| (e.last_used().load(Relaxed), key.clone()))
        .collect();
    candidates.sort_unstable_by_key(|c| c.0);
    for (_, key) in candidates.into_iter().take(batch) {
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
        let keyed = Keyed::new(16, "test");
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

    /// More busy entries than the bound: none is dropped, the map grows past it; once they
    /// are idle, the next insertions bring it back within the bound.
    #[test]
    fn busy_entries_are_never_dropped_the_map_grows_instead() {
        let keyed = Keyed::new(4, "test");
        let busy: Vec<_> = (0..6)
            .map(|i| {
                let entry = keyed.get_or_insert(&format!("b{i}"), item);
                entry.busy.store(true, Relaxed);
                entry
            })
            .collect();
        assert_eq!(keyed.len(), 6);
        for (i, entry) in busy.iter().enumerate() {
            let found = keyed.get(&format!("b{i}")).expect("kept");
            assert!(Arc::ptr_eq(entry, &found));
        }
        // An idle newcomer is the one dropped next, not a busy entry.
        keyed.get_or_insert("idle", item);
        keyed.get_or_insert("idle2", item);
        assert!(keyed.get("idle").is_none());
        assert_eq!(keyed.len(), 7);
        for entry in &busy {
            entry.busy.store(false, Relaxed);
        }
        keyed.get_or_insert("later", item);
        assert!(keyed.len() <= 4, "{}", keyed.len());
        assert!(keyed.get("later").is_some());
    }

    /// Each insertion past the bound is counted, under the map's kind.
    #[cfg(feature = "metrics")]
    #[test]
    fn growing_past_the_bound_is_counted() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let keyed = Keyed::new(2, "test");
            for i in 0..5 {
                let entry = keyed.get_or_insert(&format!("b{i}"), item);
                entry.busy.store(true, Relaxed);
            }
            assert_eq!(keyed.len(), 5);
        });
        let counted: u64 = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == crate::telemetry::ENDPOINTS_OVER_BOUND)
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(counted, 3);
    }

    /// The map outgrowing its bound is said at WARN once per map, however often it grows.
    #[test]
    fn growing_past_the_bound_is_said_once_per_map() {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // tracing-core computes a callsite's interest from the global dispatcher alone while
        // at most one dispatcher is registered, so a callsite first reached on another test
        // thread while this test's subscriber is the only one would be cached as never
        // enabled: a second one (which wants nothing) keeps it computed from both.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for kind in ["one", "two"] {
                let keyed = Keyed::new(2, kind);
                for i in 0..10 {
                    let entry = keyed.get_or_insert(&format!("b{i}"), item);
                    entry.busy.store(true, Relaxed);
                }
            }
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let warnings: Vec<&str> = text.lines().collect();
        assert_eq!(warnings.len(), 2, "{text}");
        assert!(warnings[0].contains("WARN"), "{text}");
        assert!(
            warnings[0].contains("endpoint map over its bound"),
            "{text}"
        );
        assert!(warnings[0].contains("map=\"one\""), "{text}");
        assert!(
            warnings[0].contains("endpoints=3 max_endpoints=2"),
            "{text}"
        );
        assert!(warnings[1].contains("map=\"two\""), "{text}");
    }

    #[test]
    fn endpoint_keys_are_scheme_host_and_port_only() {
        let key = |s: &str| endpoint_key(&Url::parse(s).unwrap()).into_owned();
        assert_eq!(key("https://api.example/v1?x=1"), "https://api.example");
        assert_eq!(key("http://api.example:8080/"), "http://api.example:8080");
        assert_eq!(key("http://api.example:80/"), "http://api.example");
        assert_eq!(
            key("http://u:p%40ss@api.example:8080/x"),
            "http://api.example:8080"
        );
        assert_eq!(key("http://[::1]:9000/"), "http://[::1]:9000");
    }
}
