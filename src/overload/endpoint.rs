//! One endpoint's entry in a policy's map of endpoints ([`Keyed`]): its breaker and its
//! guards, found in one lookup. Here, above both the map and the breaker, so that the map
//! names neither part; the breaker's registry reads the breakers of such a map through
//! [`BreakerMap`], which it defines and this implements.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use super::Guards;
use crate::breaker::{Breaker, BreakerMap};
use crate::keyed::{Entry, Key, Keyed};

/// One endpoint's entry in a policy's map: its breaker and its overload guards, each made
/// by the registry that keeps it (a [`BreakerRegistry`](crate::breaker::BreakerRegistry),
/// a [`GuardRegistry`](crate::overload::GuardRegistry)) the first time that registry needs
/// it. A policy whose breaker and guards are both per endpoint keeps both registries over
/// one map of these: a call finds both in one lookup, and the entry is the one place
/// either lives. Guards with no breaker per endpoint beside them fill only their part (a
/// breaker registry on its own keeps a map of breakers alone).
///
/// Busy (never evicted) while anything but the entry holds a part: calls in flight hold
/// the parts they use, so that one running while other endpoints churn through the map
/// records its outcome into the breaker and guards the registries still show; and while a
/// part itself still constrains a call (an open breaker, a hold, a spent rate limit...).
/// Counting holders costs a call nothing: it clones the parts' `Arc`s anyway. (A call that
/// found the entry in the snapshot just as it was dropped, before it cloned the parts, races
/// with the drop and may use them, as any reader of a lock-free snapshot may.)
pub(crate) struct Endpoint {
    key: Arc<str>,
    breaker: OnceLock<Arc<Breaker>>,
    guards: OnceLock<Arc<Guards>>,
    last_used: AtomicU64,
}

impl Endpoint {
    /// The entry of `key`, with whichever parts are given (the others made when first
    /// asked for).
    pub(crate) fn new(key: Arc<str>, breaker: Option<Breaker>, guards: Option<Guards>) -> Self {
        Endpoint {
            key,
            breaker: once(breaker),
            guards: once(guards),
            last_used: AtomicU64::new(0),
        }
    }

    /// Its breaker, made by `make` from its key if it has none yet.
    #[inline]
    pub(crate) fn breaker(&self, make: impl FnOnce(&Arc<str>) -> Breaker) -> &Arc<Breaker> {
        self.breaker.get_or_init(|| Arc::new(make(&self.key)))
    }

    /// Its guards, made by `make` from its key if it has none yet.
    #[inline]
    pub(crate) fn guards(&self, make: impl FnOnce(&Arc<str>) -> Guards) -> &Arc<Guards> {
        self.guards.get_or_init(|| Arc::new(make(&self.key)))
    }

    /// Its breaker, if one was made.
    pub(crate) fn breaker_made(&self) -> Option<&Arc<Breaker>> {
        self.breaker.get()
    }

    /// Its guards, if they were made.
    pub(crate) fn guards_made(&self) -> Option<&Arc<Guards>> {
        self.guards.get()
    }
}

/// A part given, or to make.
fn once<T>(part: Option<T>) -> OnceLock<Arc<T>> {
    part.map(Arc::new)
        .map_or_else(OnceLock::new, OnceLock::from)
}

impl Entry for Endpoint {
    fn last_used(&self) -> &AtomicU64 {
        &self.last_used
    }

    /// Held by a call (or a handle, a waiting reservation) beside this entry, or a part
    /// still constrains calls: a fresh entry in its place would lose what they record, or
    /// forget that limit.
    fn busy(&self) -> bool {
        let breaker = (self.breaker.get())
            .is_some_and(|breaker| Arc::strong_count(breaker) > 1 || breaker.busy());
        breaker
            || (self.guards.get())
                .is_some_and(|guards| Arc::strong_count(guards) > 1 || guards.busy())
    }
}

/// The breakers of a map shared with guards: what a
/// [`BreakerRegistry`](crate::breaker::BreakerRegistry) over it reads (`client.breakers()`,
/// a reload). A policy's calls do not come this way: they look both parts up in the map
/// itself (`policy::compiled`).
impl BreakerMap for Keyed<Endpoint> {
    fn breaker(&self, key: &dyn Key, make: &dyn Fn(&Arc<str>) -> Breaker) -> Arc<Breaker> {
        let entry = self.get_or_insert(key, |key| {
            let breaker = make(&key);
            Endpoint::new(key, Some(breaker), None)
        });
        entry.breaker(make).clone()
    }

    fn get(&self, key: &str) -> Option<Arc<Breaker>> {
        Keyed::<Endpoint>::get(self, key)?.breaker_made().cloned()
    }

    fn keys(&self) -> Vec<Arc<str>> {
        self.keys_where(|entry| entry.breaker_made().is_some())
    }

    fn for_each(&self, f: &mut dyn FnMut(&Arc<Breaker>)) {
        Keyed::<Endpoint>::for_each(self, |entry| {
            if let Some(breaker) = entry.breaker_made() {
                f(breaker);
            }
        });
    }
}
