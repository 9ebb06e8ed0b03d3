//! Per-endpoint state in a bounded map that readers never lock: the breakers, and the
//! overload guards (retry budget, holds, rate limit, bulkhead), each by endpoint key; and that
//! key ([`endpoint_key`], public as `breaker::endpoint_key`, and [`key_for`]), on the ground
//! floor so that the breaker and the guards both build on it.
//!
//! Lookups happen on every call, new endpoints rarely: the map is an immutable snapshot
//! behind an `ArcSwap`, read without a lock. A new endpoint does not copy that snapshot (at
//! a thousand entries the copy cost ≈ 90k instructions, more than the whole request, and a
//! service calling a few thousand hosts round robin met it on every call): it goes into a
//! small map beside it, under the writers' mutex, and the snapshot is rebuilt with the newest
//! entries only once they number half of it, so each new endpoint pays O(1) amortised and no
//! system call. A lookup that finds its entry among the newest (under the lock) counts as
//! one of them too, and an entry found there [`HOT`] times is merged at once, so that a new
//! endpoint called again and again (a hot one, on a multi-threaded runtime) is served under
//! the lock for a few calls only, not for half the map's; endpoints called fewer times while
//! new never bring a rebuild forward this way (see [`Newest::due`]).
//!
//! The map is generic over its entries ([`Entry`]): a breaker alone, or an endpoint's
//! breaker and guards together (`overload::Endpoint`); it names neither, so that both build
//! on it.
//!
//! When the map is full, the idlest entries are dropped, in a batch (down to three quarters
//! of the bound, so that the rebuild is amortised over a quarter of the bound's insertions),
//! and only idle ones: an entry that still constrains a call (an open breaker, a spent rate
//! limit, a drawn-down retry budget, a hold, calls in flight or queued) is never dropped,
//! since a fresh one in its place would forget that limit. When every entry is busy the map
//! grows past its bound instead, counted and said once at WARN
//! ([`over_bound`](crate::telemetry::overload)); it shrinks back as its entries become idle
//! and new endpoints come (tried again every quarter of the bound's insertions, so that a
//! map of busy entries is not scanned for every new one). "Idle" is measured in insertions,
//! not time: each entry notes the map's insertion count when used, which is written only
//! when it changed, so steady traffic writes nothing shared. Whether an entry is busy is
//! asked only when an insertion finds the map full, never on a lookup.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

/// An endpoint key as a lookup is given it: a `str`, copied into the map if the key is new,
/// or an `Arc<str>` already made (by a map over this one, for the same endpoint), shared.
pub(crate) trait Key {
    fn as_str(&self) -> &str;
    /// The key, to keep in the map.
    fn shared(&self) -> Arc<str>;
}

impl Key for str {
    #[inline]
    fn as_str(&self) -> &str {
        self
    }

    fn shared(&self) -> Arc<str> {
        Arc::from(self)
    }
}

impl Key for String {
    #[inline]
    fn as_str(&self) -> &str {
        self
    }

    fn shared(&self) -> Arc<str> {
        Arc::from(self.as_str())
    }
}

impl Key for Arc<str> {
    #[inline]
    fn as_str(&self) -> &str {
        self
    }

    fn shared(&self) -> Arc<str> {
        self.clone()
    }
}

/// What the map needs of its entries.
pub(crate) trait Entry: Send + Sync + 'static {
    /// The map's insertion count when this entry was last used.
    fn last_used(&self) -> &AtomicU64;
    /// Still constrains a call: never dropped. Asked only when the map is full.
    fn busy(&self) -> bool;
}

/// foldhash instead of SipHash: the lookup runs on every call, and a per-process random seed
/// still keeps the keys (host names) from being chosen to collide.
type Map<T> = HashMap<Arc<str>, Arc<T>, foldhash::fast::RandomState>;

/// Entries by endpoint key, at most `max` of them.
pub(crate) struct Keyed<T> {
    /// Every entry but the newest: what a lookup reads, without a lock. Replaced (under the
    /// writers' lock) when the newest are merged in or a batch is dropped.
    map: ArcSwap<Map<T>>,
    /// The newest entries, and what decides when they are merged: the writers' lock.
    writer: Mutex<Newest<T>>,
    insertions: AtomicU64,
    max: usize,
    /// What the map holds (`breakers`, `overload_guards`), as its telemetry names it.
    kind: &'static str,
    /// Whether the WARN that the map outgrew its bound was said (once per map).
    warned: AtomicBool,
}

/// How many lookups under the lock that find one entry among the newest make it hot: merged
/// into the snapshot at once, however small the newest are against it.
const HOT: u32 = 16;

/// The entries added since the snapshot was last rebuilt, each with the lookups that found it
/// here.
struct Newest<T> {
    map: HashMap<Arc<str>, (Arc<T>, u32), foldhash::fast::RandomState>,
    /// Lookups that found their entry here (under the lock) since the last rebuild.
    hits: usize,
    /// Whether one entry here was found [`HOT`] times.
    hot: bool,
    /// How many entries the whole map may hold before dropping idle ones is tried again:
    /// the bound, or more after a try that found too few idle entries.
    evict_at: usize,
    /// The entries' ages, gathered by each batch of evictions: kept, so that a batch
    /// allocates nothing once the first one sized it (shrunk once more than twice the size
    /// needed).
    ages: Vec<u64>,
    /// The snapshot the last rebuild replaced, until [`recycle`](Newest::recycle).
    retired: Option<Arc<Map<T>>>,
    /// An empty map whose table the next rebuild fills: the retired snapshot's, so that a
    /// map churning at its bound does not allocate and free a table (tens of KiB at the
    /// default bound) for each batch, which fragmented the heap.
    spare: Option<Map<T>>,
}

impl<T> Newest<T> {
    /// Empties the retired snapshot into the spare map if no reader holds it any more (its
    /// entries dropped now, as if it were freed); else leaves it to its readers.
    fn recycle(&mut self) {
        if let Some(Ok(mut map)) = self.retired.take().map(Arc::try_unwrap) {
            map.clear();
            self.spare = Some(map);
        }
    }

    /// Whether it is time to merge these into a snapshot of `len` entries: once they
    /// (with the lookups that found one of them) number half of it, so that the copy costs
    /// each of those O(1), and at once while the snapshot is empty (a client's first
    /// endpoint, its only one for many, goes lock-free from its second call).
    ///
    /// Or once one of them is hot, found here [`HOT`] times: a new endpoint called again
    /// and again would otherwise be served under this lock, which every thread calling it
    /// then waits for, up to `len / 2` times (512 at the default bound). The count is per
    /// entry, not a sum over the newest, so that it bounds these merges by lookups of one
    /// endpoint actually repeating: endpoints each called fewer than [`HOT`] times while
    /// new (churn, round robin over more endpoints than the bound, a call and its retries)
    /// never trigger one, whatever their number, and the O(1) amortised cost per new
    /// endpoint above holds. A merge of this kind costs O(len) for at least [`HOT`] lookups
    /// under the lock, one per [`HOT`] of them at most, and puts that endpoint in the
    /// lock-free snapshot for good (it can trigger no other); only endpoints each called
    /// [`HOT`] times and then dropped make one per new endpoint, O(len / HOT) per lookup.
    fn due(&self, len: usize) -> bool {
        self.hot || self.map.len() + self.hits > len / 2
    }

    /// Entries, each key once: in the snapshot `current` or here.
    fn total(&self, current: &Map<T>) -> usize {
        current.len() + self.map.len()
    }
}

/// Which entries a batch of evictions drops: the idle ones among the `count` idlest, found
/// by their ages alone.
struct Oldest {
    /// Entries used at this insertion or before are among the idlest...
    age: u64,
    /// ...but of those used at it, only this many more.
    ties: usize,
    /// How many are still to drop.
    left: usize,
    /// Dropped so far.
    dropped: usize,
    /// The insertion count, which an idlest entry found busy is taken as used at.
    now: u64,
}

impl Oldest {
    /// The `count` idlest of the entries aged `ages` (reordered), at insertion `now`.
    fn among(ages: &mut [u64], count: usize, now: u64) -> Self {
        let (age, ties) = match count.min(ages.len()).checked_sub(1) {
            Some(last) => {
                let (younger_or_not, &mut age, _) = ages.select_nth_unstable(last);
                let older = younger_or_not.iter().filter(|&&a| a < age).count();
                (age, last + 1 - older)
            }
            None => (0, 0),
        };
        Oldest {
            age,
            ties,
            left: count.min(ages.len()),
            dropped: 0,
            now,
        }
    }

    /// Whether `entry` stays: all but the idlest, and those of them that are busy.
    fn keeps<T: Entry>(&mut self, entry: &T) -> bool {
        if self.left == 0 {
            return true;
        }
        let age = entry.last_used().load(Relaxed);
        if age > self.age || (age == self.age && self.ties == 0) {
            return true;
        }
        if age == self.age {
            self.ties -= 1;
        }
        self.left -= 1;
        if entry.busy() {
            entry.last_used().store(self.now, Relaxed);
            return true;
        }
        self.dropped += 1;
        false
    }
}

impl<T: Entry> Keyed<T> {
    /// A map of at most `max` idle entries (more only while they are busy); `kind` names it
    /// in telemetry.
    pub(crate) fn new(max: usize, kind: &'static str) -> Self {
        let max = max.max(1);
        Keyed {
            map: ArcSwap::from_pointee(Map::default()),
            writer: Mutex::new(Newest {
                map: HashMap::default(),
                hits: 0,
                hot: false,
                evict_at: max,
                ages: Vec::new(),
                retired: None,
                spare: None,
            }),
            insertions: AtomicU64::new(0),
            max,
            kind,
            warned: AtomicBool::new(false),
        }
    }

    /// The entry of `key`, made by `make` on first use (under the writers' lock, so at most
    /// once per key and insertion).
    #[inline]
    pub(crate) fn get_or_insert<K: Key + ?Sized>(
        &self,
        key: &K,
        make: impl FnOnce(Arc<str>) -> T,
    ) -> Arc<T> {
        if let Some(entry) = self.map.load().get(key.as_str()) {
            self.touch(entry);
            return entry.clone();
        }
        self.insert(key, make)
    }

    /// Notes that `entry` was used now (written only when that changed).
    #[inline]
    fn touch(&self, entry: &T) {
        let now = self.insertions.load(Relaxed);
        if entry.last_used().load(Relaxed) != now {
            entry.last_used().store(now, Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Newest<T>> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert<K: Key + ?Sized>(&self, key: &K, make: impl FnOnce(Arc<str>) -> T) -> Arc<T> {
        let shared = key;
        let key = key.as_str();
        let mut newest = self.lock();
        // The snapshot changes only under the lock: this one is current until it is let go.
        let mut current = self.map.load_full();
        if let Some(entry) = current.get(key) {
            return entry.clone();
        }
        if let Some((entry, found)) = newest.map.get_mut(key) {
            *found += 1;
            let hot = *found >= HOT;
            let entry = entry.clone();
            self.touch(&entry);
            newest.hits += 1;
            newest.hot |= hot;
            if newest.due(current.len()) {
                self.merge(&current, &mut newest);
                drop(current);
                newest.recycle();
            }
            return entry;
        }
        if newest.total(&current) >= newest.evict_at {
            current = self.evict(&current, &mut newest);
        }
        let len = newest.total(&current);
        if len >= self.max {
            // Every entry left still limits a call: grow rather than forget one.
            let first = !self.warned.swap(true, Relaxed);
            crate::telemetry::overload::over_bound(self.kind, len + 1, self.max, first);
        }
        let key = shared.shared();
        let entry = Arc::new(make(key.clone()));
        let epoch = self.insertions.fetch_add(1, Relaxed) + 1;
        entry.last_used().store(epoch, Relaxed);
        newest.map.insert(key, (entry.clone(), 0));
        if newest.due(current.len()) {
            self.merge(&current, &mut newest);
        }
        // This snapshot let go, the one it replaced (if any) may be the last reference to it.
        drop(current);
        newest.recycle();
        entry
    }

    /// A new snapshot: `current` and the newest entries.
    fn merge(&self, current: &Map<T>, newest: &mut Newest<T>) {
        let next = Self::rebuilt(current, newest, |_, _| true);
        newest.retired = Some(self.map.swap(Arc::new(next)));
    }

    /// `current` with the newest entries moved in (replacing the entries of their keys), and
    /// the entries `keep` refuses left out, for a new snapshot: the newest
    /// start again empty. A clone of `current`, not a map filled anew: a clone keeps each
    /// entry in its place (no key hashed again) and the capacity the map grew to, so that a
    /// map churning at its bound never grows its table again.
    fn rebuilt(
        current: &Map<T>,
        newest: &mut Newest<T>,
        mut keep: impl FnMut(&Arc<str>, &T) -> bool,
    ) -> Map<T> {
        // Into the table of an earlier snapshot if one is spare: same size, no allocation.
        let mut next = newest.spare.take().unwrap_or_default();
        next.clone_from(current);
        next.retain(|key, entry| keep(key, entry));
        next.reserve(newest.map.len());
        for (key, (entry, _)) in newest.map.drain() {
            if keep(&key, &entry) {
                next.insert(key, entry);
            }
        }
        newest.hits = 0;
        newest.hot = false;
        next
    }

    /// Drops idle entries, the idlest first, down to three quarters of the bound (room for
    /// a quarter of it before the next batch) or as near as busy entries allow, and stores
    /// what is left, the newest included, as the new snapshot. Only idle entries: a busy one
    /// stays, however many there are; if too many do, the next try waits for the map to
    /// grow by another quarter of the bound.
    ///
    /// In the copy of the map that a rebuild makes anyway: the age of the idlest entries to
    /// drop is found first, over the entries' ages alone (in a buffer kept from batch to
    /// batch: no key copied, nothing allocated), and the copy leaves out the entries that
    /// old, asking only them whether they are busy. One found busy is taken as used now, so
    /// that the next batches do not ask it again until it is among the idlest again; the
    /// entries dropped in its place are found the same way, over the copy.
    fn evict(&self, current: &Map<T>, newest: &mut Newest<T>) -> Arc<Map<T>> {
        let batch = (self.max / 4).max(1);
        let now = self.insertions.load(Relaxed);
        let mut ages = std::mem::take(&mut newest.ages);
        ages.clear();
        let age = |entry: &T| entry.last_used().load(Relaxed);
        ages.extend(current.values().map(|entry| age(entry)));
        ages.extend(newest.map.values().map(|(entry, _)| age(entry)));
        let live_entries = ages.len();
        let excess = ages.len().saturating_sub(self.max - batch);
        let mut oldest = Oldest::among(&mut ages, excess, now);
        let mut next = Self::rebuilt(current, newest, |_, entry| oldest.keeps(entry));
        let mut short = excess - oldest.dropped;
        // Some of the idlest were busy: the idlest of the others instead, a few rounds at
        // most (each takes those it finds busy as used), then every idle entry is looked at.
        for _ in 0..4 {
            if short == 0 {
                break;
            }
            ages.clear();
            ages.extend(next.values().map(|entry| entry.last_used().load(Relaxed)));
            let mut oldest = Oldest::among(&mut ages, short, now);
            next.retain(|_, entry| oldest.keeps(&**entry));
            short -= oldest.dropped;
        }
        if short > 0 {
            Self::drop_idlest(&mut next, short);
        }
        // The buffer and the table keep the size of the largest map they held (one grown
        // past its bound by busy entries, say), the table through every copy: given back
        // once they are more than twice what the map needs, not at every batch (a map at its
        // bound never is: a table holds at least seven eighths of its slots).
        let needed = self.max.max(live_entries);
        if ages.capacity() > 2 * needed {
            ages.shrink_to(needed);
        }
        let needed = self.max.max(next.len());
        if next.capacity() > 2 * needed {
            next.shrink_to(needed);
        }
        newest.ages = ages;
        newest.evict_at = self.max.max(next.len() + batch);
        let next = Arc::new(next);
        newest.retired = Some(self.map.swap(next.clone()));
        next
    }

    /// Drops the `count` idlest entries of `map` that are not busy (fewer if fewer are):
    /// the slow way, asking every entry, for a batch whose idlest entries were busy again
    /// and again.
    #[cold]
    fn drop_idlest(map: &mut Map<T>, count: usize) {
        let mut candidates: Vec<(u64, Arc<str>)> = map
            .iter()
            .filter(|(_, e)| !e.busy())
            .map(|(key, e)| (e.last_used().load(Relaxed), key.clone()))
            .collect();
        let drop = count.min(candidates.len());
        if drop > 0 && drop < candidates.len() {
            candidates.select_nth_unstable_by_key(drop, |c| c.0);
        }
        for (_, key) in candidates.into_iter().take(drop) {
            map.remove(&key);
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<T>> {
        if let Some(entry) = self.map.load().get(key) {
            return Some(entry.clone());
        }
        self.lock().map.get(key).map(|(entry, _)| entry).cloned()
    }

    /// Every key.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<Arc<str>> {
        self.keys_where(|_| true)
    }

    /// Calls `f` with every entry (under the writers' lock: for what is rare, a reload).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&T)) {
        let newest = self.lock();
        self.map.load().values().for_each(|entry| f(entry));
        newest.map.values().for_each(|(entry, _)| f(entry));
    }

    /// The keys of the entries `keep` accepts, each once.
    pub(crate) fn keys_where(&self, keep: impl Fn(&T) -> bool) -> Vec<Arc<str>> {
        let newest = self.lock();
        let current = self.map.load();
        let mut keys: Vec<Arc<str>> = (current.iter())
            .filter(|(_, entry)| keep(entry))
            .map(|(key, _)| key.clone())
            .collect();
        keys.extend(
            (newest.map.iter())
                .filter(|(_, (entry, _))| keep(entry))
                .map(|(key, _)| key.clone()),
        );
        keys
    }

    /// The most entries it keeps.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn len(&self) -> usize {
        let newest = self.lock();
        newest.total(&self.map.load())
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
            BUSY_ASKED.with(|asked| asked.set(asked.get() + 1));
            self.busy.load(Relaxed)
        }
    }

    thread_local! {
        /// How often this thread asked an entry whether it is busy.
        static BUSY_ASKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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

    /// A map grown far past its bound by busy entries gives the memory back once they are
    /// idle and evicted: the snapshot's table and the buffer of ages are at most twice what
    /// the bound needs, not the size of the largest map they held.
    #[test]
    fn a_map_back_within_its_bound_gives_its_table_back() {
        let keyed = Keyed::new(16, "test");
        let busy: Vec<_> = (0..1000)
            .map(|i| {
                let entry = keyed.get_or_insert(&format!("b{i}"), item);
                entry.busy.store(true, Relaxed);
                entry
            })
            .collect();
        assert_eq!(keyed.len(), 1000);
        for entry in &busy {
            entry.busy.store(false, Relaxed);
        }
        drop(busy);
        for i in 0..64 {
            keyed.get_or_insert(&format!("k{i}"), item);
        }
        assert!(keyed.len() <= 16, "{}", keyed.len());
        let table = keyed.map.load().capacity();
        assert!(table <= 32, "the snapshot's table holds {table}");
        let ages = keyed.lock().ages.capacity();
        assert!(ages <= 32, "the buffer of ages holds {ages}");
    }

    /// Churn over ten times the bound: the map stays within it, the busy entries stay (the
    /// same ones), an evicted key that comes back gets a fresh entry, and the snapshot is
    /// rebuilt once per batch of insertions, not for each (each rebuild copies the map).
    #[test]
    fn churn_over_ten_times_the_bound_stays_bounded_and_rebuilds_rarely() {
        let keyed = Keyed::new(64, "test");
        let busy: Vec<_> = (0..8)
            .map(|i| {
                let entry = keyed.get_or_insert(&format!("busy{i}"), item);
                entry.busy.store(true, Relaxed);
                entry
            })
            .collect();
        let first = keyed.get_or_insert("k0", item);
        let mut rebuilds = 0;
        let mut snapshot = keyed.map.load_full();
        for i in 1..640 {
            keyed.get_or_insert(&format!("k{i}"), item);
            assert!(keyed.len() <= 64, "{} entries after k{i}", keyed.len());
            let now = keyed.map.load_full();
            if !Arc::ptr_eq(&now, &snapshot) {
                rebuilds += 1;
                snapshot = now;
            }
        }
        assert!(
            rebuilds * 8 <= 640,
            "{rebuilds} rebuilds for 640 insertions"
        );
        for (i, entry) in busy.iter().enumerate() {
            let kept = keyed.get(&format!("busy{i}"));
            assert!(
                kept.is_some_and(|kept| Arc::ptr_eq(&kept, entry)),
                "busy{i}"
            );
        }
        assert!(keyed.get("k0").is_none());
        let again = keyed.get_or_insert("k0", item);
        assert!(!Arc::ptr_eq(&first, &again));
    }

    /// A batch of evictions asks whether an entry is busy only of the entries it drops (and
    /// of the idlest ones it keeps for being busy), not of every entry: asking costs a
    /// clock read and a look at each guard, and a map churning at its bound makes a batch
    /// every quarter of the bound's insertions. The idlest are the ones dropped all the same.
    #[test]
    fn a_batch_of_evictions_asks_only_the_idlest_whether_they_are_busy() {
        let keyed = Keyed::new(64, "test");
        let busy = keyed.get_or_insert("busy", item);
        busy.busy.store(true, Relaxed);
        let asked = || BUSY_ASKED.with(std::cell::Cell::get);
        let before = asked();
        for i in 0..640 {
            keyed.get_or_insert(&format!("k{i}"), item);
        }
        let asked = asked() - before;
        // 640 - 63 entries dropped, each asked once, and the busy one once per batch.
        assert!(
            asked <= 640 + 640 / 16,
            "asked {asked} times for 640 insertions"
        );
        assert!(
            keyed
                .get("busy")
                .is_some_and(|kept| Arc::ptr_eq(&kept, &busy))
        );
        // The newest 48 (the bound less a batch, less the busy one) at least are all kept.
        for i in 640 - 47..640 {
            assert!(keyed.get(&format!("k{i}")).is_some(), "k{i} dropped");
        }
        assert!(keyed.len() <= 64);
    }

    /// An entry added among the newest (found under the lock) is in the lock-free snapshot
    /// after a bounded number of lookups, even when no other endpoint comes after it; until
    /// then every reader finds it all the same.
    #[test]
    fn a_new_entry_looked_up_again_reaches_the_snapshot() {
        let keyed = Keyed::new(1024, "test");
        for i in 0..100 {
            keyed.get_or_insert(&format!("k{i}"), item);
        }
        let last = keyed.get_or_insert("last", item);
        assert_eq!(keyed.len(), 101);
        assert!(keyed.keys().iter().any(|key| &**key == "last"));
        let mut lookups = 0;
        while keyed.map.load().get("last").is_none() {
            let found = keyed.get_or_insert("last", item);
            assert!(Arc::ptr_eq(&found, &last));
            lookups += 1;
            assert!(
                lookups <= 51,
                "still not in the snapshot after {lookups} lookups"
            );
        }
        assert!(
            keyed
                .get("last")
                .is_some_and(|found| Arc::ptr_eq(&found, &last))
        );
        assert_eq!(keyed.len(), 101);
    }

    /// A new endpoint called again and again reaches the lock-free snapshot after a few
    /// lookups under the lock (at most [`HOT`]), however large the map, not half of it.
    #[test]
    fn a_new_hot_entry_reaches_the_snapshot_after_a_few_lookups() {
        let keyed = Keyed::new(1024, "test");
        for i in 0..900 {
            keyed.get_or_insert(&format!("k{i}"), item);
        }
        let hot = keyed.get_or_insert("hot", item);
        let mut lookups = 0;
        while keyed.map.load().get("hot").is_none() {
            assert!(Arc::ptr_eq(&keyed.get_or_insert("hot", item), &hot));
            lookups += 1;
            assert!(
                lookups <= HOT,
                "still under the lock after {lookups} lookups"
            );
        }
    }

    /// New endpoints each called a few times while among the newest (fewer than [`HOT`])
    /// do not trigger a merge of their own: churn over twice the bound, each endpoint called
    /// eight times in a row, rebuilds about as rarely as the size of the newest allows
    /// (a sum of hits against the number of newest entries would merge every few of them).
    #[test]
    fn churn_of_endpoints_called_a_few_times_each_rebuilds_rarely() {
        let keyed = Keyed::new(1024, "test");
        let mut rebuilds = 0;
        let mut snapshot = keyed.map.load_full();
        let mut insertions = 0;
        for _ in 0..2 {
            for i in 0..2048 {
                let key = format!("k{i}");
                for _ in 0..8 {
                    keyed.get_or_insert(&key, item);
                    let now = keyed.map.load_full();
                    if !Arc::ptr_eq(&now, &snapshot) {
                        rebuilds += 1;
                        snapshot = now;
                    }
                }
                insertions += 1;
            }
            assert!(keyed.len() <= 1024, "{} entries", keyed.len());
        }
        assert!(
            rebuilds * 16 <= insertions,
            "{rebuilds} rebuilds for {insertions} insertions"
        );
    }

    /// Threads asking at once for the same new key get one entry, made once.
    #[test]
    fn concurrent_inserts_of_one_key_make_one_entry() {
        use std::sync::Barrier;
        use std::sync::atomic::AtomicUsize;
        let keyed = Keyed::new(16, "test");
        for i in 0..12 {
            keyed.get_or_insert(&format!("k{i}"), item);
        }
        let made = AtomicUsize::new(0);
        let barrier = Barrier::new(8);
        let entries: Vec<Arc<Item>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        keyed.get_or_insert("same", |key| {
                            made.fetch_add(1, Relaxed);
                            item(key)
                        })
                    })
                })
                .collect();
            threads.into_iter().filter_map(|t| t.join().ok()).collect()
        });
        assert_eq!(entries.len(), 8);
        assert_eq!(made.load(Relaxed), 1);
        assert!(entries.iter().all(|entry| Arc::ptr_eq(entry, &entries[0])));
        assert_eq!(keyed.len(), 13);
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
