//! Where a guard keeps its state: in this process, or shared by the replicas through Redis
//! ([`crate::fleet`], feature `redis`). [`Guards`](super::Guards) asks both the same
//! questions with the same signatures, so its rules do not know which one it has.
//!
//! Enums rather than trait objects: the local case, the common one, stays a direct call with
//! no allocation, and without the `redis` feature each enum has one variant.

use std::time::Duration;

use tokio::time::Instant;

use http::HeaderMap;

use super::hold::Hold;
use super::rate::{RateLimit, Slot};
use super::server_quota::{Admit, Place, Quota, QuotaSnapshot, ServerQuota, Ticket};
use super::throttle::Criticality;
use crate::retry::RetryBudget;

#[cfg(feature = "redis")]
use crate::fleet::{SharedBudget, SharedHold, SharedQuota, SharedRate};

/// A rate limit.
pub(crate) enum Rate {
    Local(RateLimit),
    #[cfg(feature = "redis")]
    Shared(SharedRate),
}

impl Rate {
    /// See [`RateLimit::try_take`].
    #[inline]
    pub(crate) fn try_take(&self, now: Instant) -> Result<(), Duration> {
        match self {
            Rate::Local(rate) => rate.try_take(now),
            #[cfg(feature = "redis")]
            Rate::Shared(rate) => rate.try_take(now),
        }
    }

    /// Takes a slot at `now`, or says when the call may go: see [`Reserve`].
    #[inline]
    pub(crate) fn reserve(&self, now: Instant, deadline: Option<Instant>) -> Reserve {
        match self {
            Rate::Local(rate) => match rate.reserve(now, deadline) {
                Ok(None) => Reserve::Now,
                Ok(Some(slot)) => Reserve::Reserved(slot),
                Err(wait) => Reserve::TooLate(wait),
            },
            // The fleet's limit hands out leases of present slots, not future ones: its
            // callers wait and ask again, as before reservations.
            #[cfg(feature = "redis")]
            Rate::Shared(rate) => match rate.try_take(now) {
                Ok(()) => Reserve::Now,
                Err(wait) => Reserve::AskAgain(wait),
            },
        }
    }

    /// Gives back a slot reserved from this (local) limit and not used.
    pub(crate) fn give_back(&self, slot: &Slot, now: Instant) {
        match self {
            Rate::Local(rate) => rate.give_back(slot, now),
            #[cfg(feature = "redis")]
            Rate::Shared(_) => {}
        }
    }

    /// Slots a shared limit's local fallback granted (Redis down, or slower than its
    /// timeout); `None` for a local limit.
    pub(crate) fn fallbacks(&self) -> Option<u64> {
        match self {
            Rate::Local(_) => None,
            #[cfg(feature = "redis")]
            Rate::Shared(rate) => Some(rate.fallbacks()),
        }
    }

    /// From when this replica's limit has its full burst again. A shared limit answers
    /// with its local fallback's: the fleet's lives in Redis.
    pub(crate) fn full_at(&self) -> Instant {
        match self {
            Rate::Local(rate) => rate.full_at(),
            #[cfg(feature = "redis")]
            Rate::Shared(rate) => rate.local_full_at(),
        }
    }
}

/// What a rate limit says to a call that asks at some instant.
pub(crate) enum Reserve {
    /// Go now: a slot is taken.
    Now,
    /// Go at the reserved slot, without asking again.
    Reserved(Slot),
    /// The next free slot is this far away, past the call's deadline: nothing was taken.
    TooLate(Duration),
    /// Wait this long, then ask again (a limit that cannot reserve: the fleet's). Whether
    /// that fits the deadline is the caller's to check.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    AskAgain(Duration),
}

/// A `Retry-After` hold.
pub(crate) enum Held {
    Local(Hold),
    #[cfg(feature = "redis")]
    Shared(SharedHold),
}

impl Held {
    pub(crate) fn hold_until(&self, until: Instant) {
        match self {
            Held::Local(hold) => hold.hold_until(until),
            #[cfg(feature = "redis")]
            Held::Shared(hold) => hold.hold_until(until),
        }
    }

    #[inline]
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        match self {
            Held::Local(hold) => hold.remaining(now),
            #[cfg(feature = "redis")]
            Held::Shared(hold) => hold.remaining(now),
        }
    }

    /// Over how long after its end a call told now to wait on the hold is released: see
    /// [`Hold::release_window`].
    pub(crate) fn release_window(&self) -> Duration {
        match self {
            Held::Local(hold) => hold.release_window(),
            #[cfg(feature = "redis")]
            Held::Shared(hold) => hold.release_window(),
        }
    }
}

/// A server's advertised quota, as one scope follows it: this process's, or the fleet's
/// (whenever the client has a Redis, as holds are: see [`crate::fleet`]).
pub(crate) enum Quotas {
    Local(ServerQuota),
    #[cfg(feature = "redis")]
    Shared(SharedQuota),
}

impl Quotas {
    /// See [`ServerQuota::admit`].
    #[inline]
    pub(crate) fn admit(&self, now: Instant, cap: Duration, place: Option<Place>) -> Admit {
        match self {
            Quotas::Local(quota) => quota.admit(now, cap, place),
            #[cfg(feature = "redis")]
            Quotas::Shared(quota) => quota.admit(now, cap, place),
        }
    }

    /// See [`ServerQuota::learn`].
    #[inline]
    pub(crate) fn learn(&self, ticket: Ticket, headers: &HeaderMap, started: impl FnMut(&Quota)) {
        match self {
            Quotas::Local(quota) => quota.learn(ticket, headers, started),
            #[cfg(feature = "redis")]
            Quotas::Shared(quota) => quota.learn(ticket, headers, started),
        }
    }

    pub(crate) fn snapshot(&self, now: Instant) -> Option<QuotaSnapshot> {
        match self {
            Quotas::Local(quota) => quota.snapshot(now),
            #[cfg(feature = "redis")]
            Quotas::Shared(quota) => quota.snapshot(now),
        }
    }

    pub(crate) fn busy(&self, now: Instant) -> bool {
        match self {
            Quotas::Local(quota) => quota.busy(now),
            #[cfg(feature = "redis")]
            Quotas::Shared(quota) => quota.busy(now),
        }
    }
}

/// A retry budget.
// The local one inline, as before there was a shared one: it is the common case, read on
// every call, and each endpoint has one `Guards` (behind an `Arc`) whichever it holds.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Budget {
    Local(RetryBudget),
    #[cfg(feature = "redis")]
    Shared(SharedBudget),
}

impl Budget {
    #[inline]
    pub(crate) fn deposit(&self, now: Instant) {
        match self {
            Budget::Local(budget) => budget.deposit(now),
            #[cfg(feature = "redis")]
            Budget::Shared(budget) => budget.deposit(now),
        }
    }

    /// A retry of `criticality` wants to go at `now`: whether the budget lets it (see
    /// [`Criticality::budget_claim`]).
    pub(crate) fn withdraw(&self, now: Instant, criticality: Criticality) -> bool {
        let claim = criticality.budget_claim();
        match self {
            Budget::Local(budget) => budget.withdraw_claiming(now, claim),
            #[cfg(feature = "redis")]
            Budget::Shared(budget) => budget.withdraw_claiming(now, claim),
        }
    }

    pub(crate) fn available(&self, now: Instant) -> u64 {
        match self {
            Budget::Local(budget) => budget.available(now),
            #[cfg(feature = "redis")]
            Budget::Shared(budget) => budget.available(now),
        }
    }

    /// Whether retries spent are still in its window at `now`. A shared budget's count
    /// lives in Redis, which the guards made again for the key learn at their next sync:
    /// only a local one is lost with its guards.
    pub(crate) fn drawn_down(&self, now: Instant) -> bool {
        match self {
            Budget::Local(budget) => budget.drawn_down(now),
            #[cfg(feature = "redis")]
            Budget::Shared(_) => false,
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) use crate::fleet::Fleet;

/// Without the `redis` feature there is no fleet: this stands in for its type, and no value
/// of it is ever made.
#[cfg(not(feature = "redis"))]
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub(crate) struct Fleet(());

#[cfg(not(feature = "redis"))]
impl Fleet {
    pub(crate) fn same(&self, _: &Fleet) -> bool {
        true
    }
}

/// The fleet a policy's guards share their state through, and the policy's name, put before
/// each endpoint key in Redis: a policy's guards are its own in every process, as they are
/// in one (two policies calling one host keep two rate limits).
///
/// The Redis keys, by scope (before the fleet's prefix and the guard's kind):
/// - host: `{policy}|{endpoint key}`, e.g. `default|https://api.example.com`;
/// - rule: `{policy}|rule` (an endpoint key always has `://`, so never `rule`);
/// - named: `name:<name>`, one key for every policy and every replica (it has no `|`, so it
///   is no policy's).
#[derive(Clone, Debug)]
pub(crate) struct FleetKeys {
    pub(crate) fleet: Fleet,
    policy: std::sync::Arc<str>,
}

impl FleetKeys {
    pub(crate) fn new(fleet: Fleet, policy: std::sync::Arc<str>) -> Self {
        FleetKeys { fleet, policy }
    }

    /// The Redis key (before the fleet's prefix and kind) of `endpoint`'s state:
    /// `{policy}|{endpoint}`, the policy's `%` and `|` percent-encoded, so that the policy
    /// ends at the first `|` and no two (policy, endpoint) pairs share a key (policy `x` with
    /// endpoint `y|z` is `x|y|z`, policy `x|y` with `z` is `x%7Cy|z`). Other names read as
    /// they are in `redis-cli`.
    pub(crate) fn key(&self, endpoint: &str) -> String {
        let policy = &*self.policy;
        if !policy.contains(['%', '|']) {
            return format!("{policy}|{endpoint}");
        }
        let mut key = String::with_capacity(policy.len() + endpoint.len() + 8);
        for c in policy.chars() {
            match c {
                '%' => key.push_str("%25"),
                '|' => key.push_str("%7C"),
                c => key.push(c),
            }
        }
        key.push('|');
        key.push_str(endpoint);
        key
    }
}

impl PartialEq for FleetKeys {
    /// The same fleet (not merely the same settings: a reload that keeps the Redis keeps its
    /// `Fleet`), for the same policy.
    fn eq(&self, other: &Self) -> bool {
        self.fleet.same(&other.fleet) && self.policy == other.policy
    }
}
