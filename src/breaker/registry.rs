//! One breaker per endpoint key, in a bounded map that readers never lock.
//!
//! Lookups happen on every attempt, new endpoints rarely: the map is an immutable snapshot
//! behind an `ArcSwap`, read without a lock; adding an endpoint copies it under a writers'
//! mutex. When the map is full, the idlest closed breakers are dropped (an open breaker carries
//! state worth keeping, so it goes last). "Idle" is measured in insertions, not time: each
//! breaker notes the registry's insertion count when used, which is written only when it
//! changed, so steady traffic writes nothing shared.
//!
//! Metric series (feature `metrics`) are bounded here too: a registry gives series of their
//! own to at most `max_breakers` keys over its life, and the breakers beyond share the
//! `_OTHER` label; see the [telemetry docs](crate::telemetry).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use url::{Position, Url};

use super::config::BreakerConfig;
use super::state::{Breaker, Permit, Verdict};
use super::{State, WindowCounts};

/// foldhash instead of SipHash: the lookup runs on every attempt, and a per-process random
/// seed still keeps the keys (host names) from being chosen to collide.
type Map = HashMap<Arc<str>, Arc<Breaker>, foldhash::fast::RandomState>;

/// The breakers of one [`CircuitBreakerLayer`](super::CircuitBreakerLayer), by endpoint key.
/// Cheap to clone; clones share the breakers.
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    map: ArcSwap<Map>,
    /// Held while adding a breaker; counts the keys this registry gave metric series of their
    /// own (at most `max_breakers`: see the telemetry docs).
    writer: Mutex<usize>,
    config: Arc<BreakerConfig>,
    insertions: AtomicU64,
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("breakers", &self.len())
            .finish_non_exhaustive()
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

impl BreakerRegistry {
    /// An empty registry whose breakers follow `config`.
    pub fn new(config: BreakerConfig) -> Self {
        BreakerRegistry {
            inner: Arc::new(Inner {
                map: ArcSwap::from_pointee(Map::default()),
                writer: Mutex::new(0),
                config: Arc::new(config),
                insertions: AtomicU64::new(0),
            }),
        }
    }

    /// The breaker for `url`'s endpoint, made on first use.
    pub(crate) fn breaker_for(&self, url: &Url) -> Arc<Breaker> {
        self.breaker(&endpoint_key(url))
    }

    pub(crate) fn breaker(&self, key: &str) -> Arc<Breaker> {
        if let Some(breaker) = self.inner.map.load().get(key) {
            let now = self.inner.insertions.load(Relaxed);
            if breaker.last_used.load(Relaxed) != now {
                breaker.last_used.store(now, Relaxed);
            }
            return breaker.clone();
        }
        self.insert(key)
    }

    fn insert(&self, key: &str) -> Arc<Breaker> {
        #[cfg_attr(not(feature = "metrics"), allow(unused_mut, unused_variables))]
        let mut series = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.inner.map.load_full();
        if let Some(breaker) = current.get(key) {
            return breaker.clone();
        }
        let mut next: Map = (*current).clone();
        let max = self.inner.config.max_breakers;
        if next.len() >= max {
            evict(&mut next, max);
        }
        let key: Arc<str> = Arc::from(key);
        #[cfg(feature = "metrics")]
        {
            use crate::telemetry::meters::{Series, breaker_series};
            // Before the breaker exists, whose first act is to set its state gauge.
            if breaker_series(&key, *series < max) == Series::New {
                *series += 1;
            }
        }
        let breaker = Arc::new(Breaker::new(key.clone(), self.inner.config.clone()));
        let epoch = self.inner.insertions.fetch_add(1, Relaxed) + 1;
        breaker.last_used.store(epoch, Relaxed);
        next.insert(key, breaker.clone());
        self.inner.map.store(Arc::new(next));
        breaker
    }

    /// The breaker of an endpoint key (see [`endpoint_key`]), if it has one.
    pub fn get(&self, key: &str) -> Option<BreakerHandle> {
        self.inner.map.load().get(key).cloned().map(BreakerHandle)
    }

    /// The breaker of an endpoint key, made if it has none yet (to force it open, say).
    pub fn get_or_create(&self, key: &str) -> BreakerHandle {
        BreakerHandle(self.breaker(key))
    }

    /// All endpoint keys with a breaker.
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.inner.map.load().keys().cloned().collect()
    }

    /// How many breakers there are.
    pub fn len(&self) -> usize {
        self.inner.map.load().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops a sixteenth of the map (at least one), closed and idlest first, so that the copy that
/// each insertion makes is amortised over many insertions.
fn evict(map: &mut Map, max: usize) {
    let excess = map.len() + 1 - max.min(map.len() + 1);
    let batch = (max / 16).max(1).max(excess);
    let mut candidates: Vec<(bool, u64, Arc<str>)> = map
        .iter()
        .map(|(key, b)| {
            (
                b.state() != State::Closed,
                b.last_used.load(Relaxed),
                key.clone(),
            )
        })
        .collect();
    candidates.sort_unstable_by_key(|c| (c.0, c.1));
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    for (not_closed, _, key) in candidates.into_iter().take(batch) {
        map.remove(&key);
        // Its series stay (a recorder cannot drop one): leave them saying what the next call
        // will find, a fresh closed breaker, rather than an open circuit that no longer is.
        #[cfg(feature = "metrics")]
        if not_closed {
            crate::telemetry::meters::breaker_state(&key, State::Closed);
        }
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
    pub fn try_acquire(&self) -> Result<CallPermit<'_>, crate::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
