//! One breaker per endpoint key, in a bounded map that readers never lock (see
//! [`Keyed`](crate::keyed)): the registry's own, of breakers alone, or one a policy keeps its
//! guards in too, read through [`BreakerMap`]; when it is full, the idlest closed breakers
//! are dropped. One that is not closed (open, half-open, or forced either way) is never
//! dropped: a fresh closed breaker in its place would let calls through that it turns away;
//! nor one a call in flight holds, whose outcome would land in a breaker no longer shown. If
//! every breaker is busy so, the map grows past `max_breakers` instead (counted, and a WARN
//! once).
//!
//! Metric series (feature `metrics`) are bounded here too: a registry gives series of their
//! own to at most `max_breakers` keys over its life, and the breakers beyond share the
//! `_OTHER` label; see the [telemetry docs](crate::telemetry).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::config::BreakerConfig;
use super::state::{Breaker, Permit, Verdict};
use super::{State, WindowCounts};
use crate::error::Error;
use crate::keyed::{Entry, Key, Keyed};

/// The breakers of one [`CircuitBreakerLayer`](super::CircuitBreakerLayer), by endpoint key.
/// Cheap to clone; clones share the breakers.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where its breakers are, by endpoint key.
    breakers: Breakers,
    config: Arc<BreakerConfig>,
    /// The keys this registry gave metric series of their own (at most `max_breakers`: see
    /// the telemetry docs); counted while adding a breaker.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    series: AtomicUsize,
    /// Shared by every breaker it makes, set when it is dropped: then no policy looks its
    /// breakers up any more (a reload kept the guards in their map, not them), and their
    /// states no longer keep their entries (`Breaker::busy`). Set on drop, not by the
    /// reload, so that a reload abandoned for another retires nothing still in use, and
    /// breakers made after the reload began are retired too.
    retired: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.retired.store(true, Relaxed);
    }
}

/// Where a registry's breakers are.
enum Breakers {
    /// Its own map, of breakers alone: a `CircuitBreakerLayer`'s, or a policy's whose guards
    /// are not kept per endpoint beside them. Read without dynamic dispatch.
    Own(Keyed<BreakerEntry>),
    /// A map a policy keeps its guards in too (each entry an endpoint's breaker and guards,
    /// defined above this module): read through [`BreakerMap`]. The policy's calls look both
    /// parts up in that map itself; only the registry's own readers come this way.
    Shared(Arc<dyn BreakerMap>),
}

/// The breakers of a map whose entries hold more than a breaker: what a registry over it
/// needs, so that the map's entries may be defined above this module.
pub(crate) trait BreakerMap: Send + Sync {
    /// The breaker of endpoint `key`, made by `make` if it has none.
    fn breaker(&self, key: &dyn Key, make: &dyn Fn(&Arc<str>) -> Breaker) -> Arc<Breaker>;
    /// The breaker of endpoint `key`, if it has one.
    fn get(&self, key: &str) -> Option<Arc<Breaker>>;
    /// The endpoint keys with a breaker.
    fn keys(&self) -> Vec<Arc<str>>;
    /// Calls `f` with each breaker.
    fn for_each(&self, f: &mut dyn FnMut(&Arc<Breaker>));
}

/// An entry of a registry's own map: a breaker alone.
struct BreakerEntry {
    breaker: Arc<Breaker>,
    last_used: AtomicU64,
}

impl Entry for BreakerEntry {
    fn last_used(&self) -> &AtomicU64 {
        &self.last_used
    }

    /// Held by a call (or a handle) beside this entry, or not closed: a fresh breaker in its
    /// place would lose what the call records, or let calls through that this one turns away.
    fn busy(&self) -> bool {
        Arc::strong_count(&self.breaker) > 1 || self.breaker.busy()
    }
}

impl BreakerMap for Keyed<BreakerEntry> {
    fn breaker(&self, key: &dyn Key, make: &dyn Fn(&Arc<str>) -> Breaker) -> Arc<Breaker> {
        own_breaker(self, key, make)
    }

    fn get(&self, key: &str) -> Option<Arc<Breaker>> {
        Some(Keyed::<BreakerEntry>::get(self, key)?.breaker.clone())
    }

    fn keys(&self) -> Vec<Arc<str>> {
        self.keys_where(|_| true)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Arc<Breaker>)) {
        Keyed::<BreakerEntry>::for_each(self, |entry| f(&entry.breaker));
    }
}

/// The breaker of `key` in a registry's own map, made by `make` if it has none.
#[inline]
fn own_breaker<K: Key + ?Sized>(
    map: &Keyed<BreakerEntry>,
    key: &K,
    make: impl FnOnce(&Arc<str>) -> Breaker,
) -> Arc<Breaker> {
    let entry = map.get_or_insert(key, |key| BreakerEntry {
        breaker: Arc::new(make(&key)),
        last_used: AtomicU64::new(0),
    });
    entry.breaker.clone()
}

/// A key of any kind, as [`BreakerMap::breaker`] takes it.
struct KeyRef<'k, K: ?Sized>(&'k K);

impl<K: Key + ?Sized> Key for KeyRef<'_, K> {
    fn as_str(&self) -> &str {
        self.0.as_str()
    }

    fn shared(&self) -> Arc<str> {
        self.0.shared()
    }
}

impl Breakers {
    /// The map, for what is read rarely.
    fn map(&self) -> &dyn BreakerMap {
        match self {
            Breakers::Own(map) => map,
            Breakers::Shared(map) => &**map,
        }
    }
}

impl Breaker {
    /// Open, half-open or forced: dropping it for a fresh closed breaker would forget that.
    /// Not once retired: no call asks it any more, and an open breaker no call probes stays
    /// open for ever.
    pub(crate) fn busy(&self) -> bool {
        self.state() != State::Closed && !self.retired.load(Relaxed)
    }
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("breakers", &self.len())
            .finish_non_exhaustive()
    }
}

impl BreakerRegistry {
    /// An empty registry whose breakers follow `config`.
    pub fn new(config: BreakerConfig) -> Self {
        BreakerRegistry::alone(Arc::new(config))
    }

    fn alone(config: Arc<BreakerConfig>) -> Self {
        let breakers = Breakers::Own(Keyed::new(config.max_breakers, "breakers"));
        BreakerRegistry::with(breakers, config)
    }

    /// A registry following this one's config in a map of its own (the way back from
    /// [`over`](Self::over)).
    pub(crate) fn own(&self) -> Self {
        BreakerRegistry::alone(self.inner.config.clone())
    }

    /// A registry following this one's config over `map`, a map a policy keeps its guards
    /// in too (of the config's `max_breakers`), in place of a map of its own.
    pub(crate) fn over(&self, map: Arc<dyn BreakerMap>) -> Self {
        BreakerRegistry::with(Breakers::Shared(map), self.inner.config.clone())
    }

    fn with(breakers: Breakers, config: Arc<BreakerConfig>) -> Self {
        BreakerRegistry {
            inner: Arc::new(Inner {
                breakers,
                config,
                series: AtomicUsize::new(0),
                retired: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Whether its breakers are in `map` (see [`over`](Self::over)).
    pub(crate) fn is_over<M: BreakerMap>(&self, map: &Arc<M>) -> bool {
        match &self.inner.breakers {
            Breakers::Own(_) => false,
            Breakers::Shared(shared) => std::ptr::addr_eq(Arc::as_ptr(shared), Arc::as_ptr(map)),
        }
    }

    /// Whether its breakers are in a map a policy keeps its guards in too.
    #[cfg(test)]
    pub(crate) fn shares_a_map(&self) -> bool {
        matches!(self.inner.breakers, Breakers::Shared(_))
    }

    /// The breaker of endpoint `key`, made if it has none (its key shared if `key` is an
    /// `Arc<str>`).
    #[inline]
    pub(crate) fn breaker<K: Key + ?Sized>(&self, key: &K) -> Arc<Breaker> {
        match &self.inner.breakers {
            Breakers::Own(map) => own_breaker(map, key, |key| self.make(key)),
            Breakers::Shared(map) => map.breaker(&KeyRef(key), &|key| self.make(key)),
        }
    }

    /// A new breaker for endpoint `key`.
    pub(crate) fn make(&self, key: &Arc<str>) -> Breaker {
        let inner = &self.inner;
        #[cfg(feature = "metrics")]
        {
            use crate::telemetry::meters::{Series, breaker_series};
            // Before the breaker exists, whose first act is to set its state gauge. A slot is
            // taken before asking (breakers may be made at once, outside the map's lock),
            // and given back unless the key got a series of its own.
            let max = inner.config.max_breakers;
            let own = (inner.series)
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .is_ok();
            if breaker_series(key, own) != Series::New && own {
                inner.series.fetch_sub(1, Relaxed);
            }
        }
        Breaker::new(key.clone(), inner.config.clone(), inner.retired.clone())
    }

    /// The settings its breakers follow.
    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// The breaker of an endpoint key (see [`endpoint_key`](super::endpoint_key)), if it has one.
    /// A handle kept keeps its breaker in the registry (as a call in flight does) until it is
    /// dropped.
    pub fn get(&self, key: &str) -> Option<BreakerHandle> {
        self.inner.breakers.map().get(key).map(BreakerHandle)
    }

    /// The breaker of an endpoint key, made if it has none yet (to force it open, say).
    pub fn get_or_create(&self, key: &str) -> BreakerHandle {
        BreakerHandle(self.breaker(key))
    }

    /// All endpoint keys with a breaker.
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.inner.breakers.map().keys()
    }

    /// How many breakers there are.
    pub fn len(&self) -> usize {
        let mut breakers = 0;
        (self.inner.breakers.map()).for_each(&mut |_| breakers += 1);
        breakers
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One endpoint's breaker, to read and steer.
#[derive(Clone, Debug)]
pub struct BreakerHandle(Arc<Breaker>);

impl BreakerHandle {
    /// The endpoint key.
    pub fn key(&self) -> &str {
        self.0.key()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.0.state()
    }

    /// What the window holds now.
    pub fn counts(&self) -> WindowCounts {
        self.0.counts()
    }

    /// Rejects every call until [`reset`](Self::reset) or [`force_closed`](Self::force_closed).
    pub fn force_open(&self) {
        self.0.force(State::ForcedOpen);
    }

    /// Lets every call through and records nothing, until [`reset`](Self::reset).
    pub fn force_closed(&self) {
        self.0.force(State::ForcedClosed);
    }

    /// Back to closed with an empty window and the open duration at its first value.
    pub fn reset(&self) {
        self.0.force(State::Closed);
    }

    /// Asks to make one call of your own (not through the HTTP stack) under this breaker.
    ///
    /// ```
    /// use resilient_http::breaker::{BreakerConfig, BreakerRegistry};
    ///
    /// let registry = BreakerRegistry::new(BreakerConfig::default());
    /// let breaker = registry.get_or_create("grpc://ledger.internal:50051");
    /// match breaker.try_acquire() {
    ///     Ok(permit) => {
    ///         let worked = true; // make the call here
    ///         if worked { permit.success() } else { permit.failure() }
    ///     }
    ///     Err(open) => println!("skipped: {open}"),
    /// }
    /// ```
    ///
    /// Fails with [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen) when the call may
    /// not go. A permit dropped without a verdict counts as a cancelled call.
    #[inline]
    pub fn try_acquire(&self) -> Result<CallPermit<'_>, Error> {
        match self.0.admit() {
            Ok(permit) => Ok(CallPermit {
                breaker: &self.0,
                started: self.0.call_started(),
                permit: Some(permit),
            }),
            Err(rejection) => Err(rejection.into_error(self.key())),
        }
    }
}

/// The right to make one call, from [`BreakerHandle::try_acquire`]. Report how it went with
/// [`success`](Self::success) or [`failure`](Self::failure); dropped, it counts as cancelled.
#[must_use = "report the call's outcome"]
pub struct CallPermit<'a> {
    breaker: &'a Breaker,
    started: Option<tokio::time::Instant>,
    permit: Option<Permit>,
}

impl std::fmt::Debug for CallPermit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallPermit")
            .field("key", self.breaker.key())
            .finish_non_exhaustive()
    }
}

impl CallPermit<'_> {
    /// The call worked (or failed in a way that is not the endpoint's fault).
    #[inline]
    pub fn success(mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, Verdict::Success, self.started);
        }
    }

    /// The call failed in a way that counts against the endpoint.
    #[inline]
    pub fn failure(mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, Verdict::Failure, self.started);
        }
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.record(permit, Verdict::Ignored, None);
        }
    }
}
