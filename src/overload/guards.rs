//! One endpoint's overload guards, and the rules every path asks of them: the client's own
//! call and the tower layers call these functions and decide nothing of their own.
//!
//! - [`Guards::admit`]: may an attempt go out now? A `Retry-After` hold first (the server
//!   asked), then the quota the server advertises, then the rate limit; each may say
//!   "wait", if the wait ends before the call's deadline, or refuse at once with
//!   [`RateLimited`](crate::ErrorKind::RateLimited). Each is asked again after a wait, so
//!   the longest wait wins. A wait for the rate limit reserves its slot ([`Reservation`]):
//!   the attempt goes when it ends.
//! - The server's quota ([`ServerQuota`]): a spent quota holds its scope until the reset by
//!   a `Retry-After` hold's rule (within `retry_after_cap`, waiters released spread after
//!   the reset); a paced one spreads what is left over the time to the reset. An attempt
//!   let out takes a [`Ticket`] that it carries to its answer, whose head
//!   [`Guards::learn`] reads (every answer: a success, a 4xx, a 5xx, a 429).
//! - [`Guards::observe`]: a 429 or 503 with a `Retry-After` within the cap holds the endpoint.
//!   The calls that waited on a hold go spread over a short window after its end, not at
//!   once (see [`hold`](super::hold)).
//! - [`Guards::throttle`]: client-side adaptive throttling, asked once per attempt before the
//!   others: an attempt it turns away fails at once, unsent, with
//!   [`Throttled`](crate::ErrorKind::Throttled) (see [`throttle`](super::throttle)).
//! - [`Guards::deposit`] / [`Guards::withdraw`]: the retry budget, per first attempt and per
//!   retry (critical retries first when it is nearly spent).
//! - [`Guards::bulkhead`]: at most so many calls at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::adaptive::{AdaptiveConcurrencyConfig, AdaptiveLimit, LimitPermit, PlaceFuture};
use super::bulkhead::{Acquire, Bulkhead, BulkheadConfig, BulkheadPermit};
use super::endpoint::Endpoint;
use super::hold::Hold;
use super::pass::Pass;
use super::rate::{RateLimit, RateLimitConfig, Slot};
use super::server_quota::{
    Admit, Place, QuotaSnapshot, ServerQuota, ServerQuotaConfig, Spent, Ticket,
};
use super::shared::{Budget, Fleet, FleetKeys, Held, Quotas, Rate, Reserve};
use super::throttle::{Criticality, Throttle, ThrottleConfig};
use crate::breaker::Breaker;
use crate::error::{Error, ErrorKind, Short};
use crate::keyed::{self, Keyed};
use crate::policy::Scope;
use crate::retry::{BudgetConfig, RetryBudget};
use crate::telemetry::overload::{self as telemetry, Guard};

/// What a policy turns on; `None` (or `false`) pieces cost a call nothing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GuardsConfig {
    pub(crate) budget: Option<BudgetConfig>,
    /// Hold an endpoint whose server sent `Retry-After`, up to this long (the retry cap).
    pub(crate) hold_up_to: Option<Duration>,
    pub(crate) rate: Option<RateLimitConfig>,
    pub(crate) bulkhead: Option<BulkheadConfig>,
    /// Follow the quota the server advertises (`None`: `follow = "off"`).
    pub(crate) server_quota: Option<ServerQuotaConfig>,
    /// An adaptive limit on the attempts in flight.
    pub(crate) adaptive: Option<AdaptiveConcurrencyConfig>,
    /// Client-side adaptive throttling.
    pub(crate) throttle: Option<ThrottleConfig>,
    /// The policy's `retry_after_cap`: a spent quota whose reset is further away holds
    /// nothing (the call goes, and the server answers), as a `Retry-After` beyond it.
    pub(crate) retry_after_cap: Duration,
    /// Whether the rate limit and the budget are the fleet's (through Redis) rather than
    /// this process's. Holds are the fleet's whenever the client has a Redis.
    pub(crate) shared_rate: bool,
    pub(crate) shared_budget: bool,
    /// Which requests share each guard's state.
    pub(crate) scopes: GuardScopes,
}

/// The scope of each guard (see [`Scope`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct GuardScopes {
    pub(crate) budget: Scope,
    pub(crate) hold: Scope,
    pub(crate) rate: Scope,
    pub(crate) bulkhead: Scope,
    pub(crate) server_quota: Scope,
    pub(crate) adaptive: Scope,
    pub(crate) throttle: Scope,
}

impl GuardsConfig {
    pub(crate) fn is_off(&self) -> bool {
        self.budget.is_none()
            && self.hold_up_to.is_none()
            && self.rate.is_none()
            && self.bulkhead.is_none()
            && self.server_quota.is_none()
            && self.adaptive.is_none()
            && self.throttle.is_none()
    }

    /// The key of the one entry of a policy called `rule` whose guards are none of them
    /// host-scoped: `name:<name>` when every guard it turns on has that one named scope,
    /// else the rule's name.
    pub(crate) fn fixed_key(&self, rule: &Arc<str>) -> Arc<str> {
        let scopes = &self.scopes;
        let mut on = [
            (self.budget.is_some(), &scopes.budget),
            (self.hold_up_to.is_some(), &scopes.hold),
            (self.rate.is_some(), &scopes.rate),
            (self.bulkhead.is_some(), &scopes.bulkhead),
            (self.server_quota.is_some(), &scopes.server_quota),
            (self.adaptive.is_some(), &scopes.adaptive),
            (self.throttle.is_some(), &scopes.throttle),
        ]
        .into_iter()
        .filter_map(|(on, scope)| on.then_some(scope));
        match on.next() {
            Some(first @ Scope::Named(_)) if on.all(|scope| scope == first) => {
                first.fixed_key(rule).unwrap_or_else(|| rule.clone())
            }
            _ => rule.clone(),
        }
    }

    /// Whether any guard it turns on is kept per endpoint key ([`Scope::Host`]): only then
    /// does a call look its guards up by its URL.
    fn any_per_host(&self) -> bool {
        let host = |on: bool, scope: &Scope| on && *scope == Scope::Host;
        let scopes = &self.scopes;
        host(self.budget.is_some(), &scopes.budget)
            || host(self.hold_up_to.is_some(), &scopes.hold)
            || host(self.rate.is_some(), &scopes.rate)
            || host(self.bulkhead.is_some(), &scopes.bulkhead)
            || host(self.server_quota.is_some(), &scopes.server_quota)
            || host(self.adaptive.is_some(), &scopes.adaptive)
            || host(self.throttle.is_some(), &scopes.throttle)
    }
}

/// One guard's state, and the key it is reported under: its scope's (an endpoint key, a
/// rule's name, `name:<name>`), which errors and telemetry name.
#[derive(Clone)]
pub(crate) struct Part<T> {
    pub(crate) key: Arc<str>,
    pub(crate) state: T,
}

impl<T> std::ops::Deref for Part<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state
    }
}

/// A budget kept under `key`: `redis` is the Redis key, for a budget the fleet shares.
pub(crate) fn budget_part(
    key: Arc<str>,
    config: BudgetConfig,
    redis: Option<(&Fleet, String)>,
) -> Arc<Part<Budget>> {
    let state = match redis {
        #[cfg(feature = "redis")]
        Some((fleet, redis)) => Budget::Shared(fleet.budget(&redis, config)),
        _ => Budget::Local(RetryBudget::new(config)),
    };
    Arc::new(Part { key, state })
}

/// A `Retry-After` hold kept under `key`; `redis` as for [`budget_part`] (holds are shared
/// whenever the client has a Redis).
pub(crate) fn hold_part(key: Arc<str>, redis: Option<(&Fleet, String)>) -> Arc<Part<Held>> {
    let state = match redis {
        #[cfg(feature = "redis")]
        Some((fleet, redis)) => Held::Shared(fleet.hold(&redis)),
        _ => Held::Local(Hold::new()),
    };
    Arc::new(Part { key, state })
}

/// A rate limit kept under `key`; `redis` as for [`budget_part`].
pub(crate) fn rate_part(
    key: Arc<str>,
    config: RateLimitConfig,
    redis: Option<(&Fleet, String)>,
) -> Arc<Part<Rate>> {
    let state = match redis {
        #[cfg(feature = "redis")]
        Some((fleet, redis)) => Rate::Shared(fleet.rate(&redis, config)),
        _ => Rate::Local(RateLimit::new(config)),
    };
    Arc::new(Part { key, state })
}

/// A bulkhead kept under `key` (always this process's). Its calls hold it by its own `Arc`
/// (their permits), so the part is that `Arc` and its key, cloned into each entry.
pub(crate) fn bulkhead_part(key: Arc<str>, config: BulkheadConfig) -> Part<Arc<Bulkhead>> {
    let state = Arc::new(Bulkhead::new(config));
    Part { key, state }
}

/// A server's quota followed under `key`; `redis` as for [`budget_part`] (quotas are shared
/// whenever the client has a Redis, as holds are: both are what the server said).
pub(crate) fn quota_part(
    key: Arc<str>,
    config: ServerQuotaConfig,
    redis: Option<(&Fleet, String)>,
) -> Arc<Part<Quotas>> {
    let state = match redis {
        #[cfg(feature = "redis")]
        Some((fleet, redis)) => Quotas::Shared(fleet.quota(&redis, config)),
        _ => Quotas::Local(ServerQuota::new(config)),
    };
    Arc::new(Part { key, state })
}

/// An adaptive limit kept under `key` (always this process's; its attempts hold it by its
/// own `Arc`, as a bulkhead's calls do).
pub(crate) fn adaptive_part(
    key: Arc<str>,
    config: AdaptiveConcurrencyConfig,
) -> Part<Arc<AdaptiveLimit>> {
    let state = Arc::new(AdaptiveLimit::new(config).keyed(key.clone()));
    Part { key, state }
}

/// A throttle kept under `key` (always this process's: it counts what this client saw).
pub(crate) fn throttle_part(key: Arc<str>, config: ThrottleConfig) -> Arc<Part<Throttle>> {
    let state = Throttle::new(config);
    Arc::new(Part { key, state })
}

/// The parts of a policy's guards that do not depend on the URL (scoped to the rule, or
/// named): made when the policy compiles, shared by every entry of its registry.
#[derive(Clone, Default)]
pub(crate) struct FixedParts {
    pub(crate) budget: Option<Arc<Part<Budget>>>,
    pub(crate) hold: Option<Arc<Part<Held>>>,
    pub(crate) rate: Option<Arc<Part<Rate>>>,
    pub(crate) bulkhead: Option<Part<Arc<Bulkhead>>>,
    pub(crate) server_quota: Option<Arc<Part<Quotas>>>,
    pub(crate) adaptive: Option<Part<Arc<AdaptiveLimit>>>,
    pub(crate) throttle: Option<Arc<Part<Throttle>>>,
}

/// One endpoint's guards: its own (host-scoped) parts, and the rule's fixed ones.
pub(crate) struct Guards {
    key: Arc<str>,
    budget: Option<Arc<Part<Budget>>>,
    hold: Option<(Arc<Part<Held>>, Duration)>,
    rate: Option<Arc<Part<Rate>>>,
    bulkhead: Option<Part<Arc<Bulkhead>>>,
    /// The server's quota, and the reset beyond which a spent one holds nothing.
    server_quota: Option<(Arc<Part<Quotas>>, Duration)>,
    adaptive: Option<Part<Arc<AdaptiveLimit>>>,
    throttle: Option<Arc<Part<Throttle>>>,
    /// Which parts are this entry's own, host-scoped: only they make it busy (the fixed
    /// ones outlive it, held by the policy).
    own: Own,
    /// Set when its registry is dropped (shared by all the registry made): left behind in a
    /// map by a reload that kept the breakers beside them but not them, they no longer keep
    /// their entries ([`Guards::busy`]).
    retired: Arc<AtomicBool>,
}

/// Which of an entry's parts are its own.
#[derive(Clone, Copy, Default)]
struct Own {
    budget: bool,
    hold: bool,
    rate: bool,
    bulkhead: bool,
    server_quota: bool,
    adaptive: bool,
    throttle: bool,
}

/// Whether a call may start: the bulkhead's answer.
pub(crate) enum Entry {
    /// In, holding this place (`None`: no bulkhead).
    In(Option<BulkheadPermit>),
    /// Full: wait for a place with this (then `None` means still full: [`Guards::full`]).
    Queue(Acquire),
    Full(Error),
}

/// Whether an attempt let out may go now: the adaptive limit's answer.
pub(crate) enum Placing {
    /// In, holding this place (`None`: no adaptive limit).
    In(Option<LimitPermit>),
    /// Over the limit: wait for a place with this (then `None` means none came:
    /// [`Guards::adaptive_full`]).
    Queue(PlaceFuture),
    Full(Error),
}

/// What an attempt may do now.
pub(crate) enum Admission {
    /// Go, carrying the server quota's ticket (if it is followed) to the answer.
    Go(Option<Ticket>),
    /// Wait this long, then ask again, passing the reservation back: with one (a rate-limit
    /// slot reserved for the end of the wait), the attempt goes then without taking another.
    Wait(Duration, Option<Reservation>),
    Refused(Error),
}

/// A rate-limit slot reserved by a call told to wait for it. Dropped unused (the call was
/// cancelled while it waited, or a hold came first), it gives the slot back if that is still
/// ahead and nothing was reserved after it (see [`RateLimit::reserve`]).
///
/// The server quota's ticket, taken when the slot was reserved, rides along: the attempt
/// goes with it. So does a call's place in line for a spent server quota's reset (see
/// [`Place`]), for a call told to wait for it, which then has no slot: both are given back
/// when dropped.
pub(crate) struct Reservation {
    guards: Arc<Guards>,
    /// `None` once used.
    slot: Option<Slot>,
    ticket: Option<Ticket>,
    place: Option<Place>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let (Some(rate), Some(slot)) = (&self.guards.rate, self.slot.take()) {
            rate.give_back(&slot, Instant::now());
        }
    }
}

impl Guards {
    /// The guards of endpoint `key`: the host-scoped parts `config` turns on, made afresh
    /// (shared through `fleet` as the config says), and clones of `fixed`.
    fn new(
        key: Arc<str>,
        config: &GuardsConfig,
        fleet: Option<&FleetKeys>,
        fixed: &FixedParts,
        retired: Arc<AtomicBool>,
    ) -> Self {
        let scopes = &config.scopes;
        let host = |scope: &Scope| *scope == Scope::Host;
        // The fleet and this endpoint's key in it, if the part is shared through Redis.
        let redis = |shared: bool| {
            fleet
                .filter(|_| shared)
                .map(|fleet| (&fleet.fleet, fleet.key(&key)))
        };
        let own = Own {
            budget: host(&scopes.budget),
            hold: host(&scopes.hold),
            rate: host(&scopes.rate),
            bulkhead: host(&scopes.bulkhead),
            server_quota: host(&scopes.server_quota),
            adaptive: host(&scopes.adaptive),
            throttle: host(&scopes.throttle),
        };
        let budget = match config.budget {
            Some(budget) if own.budget => Some(budget_part(
                key.clone(),
                budget,
                redis(config.shared_budget),
            )),
            Some(_) => fixed.budget.clone(),
            None => None,
        };
        let hold = match config.hold_up_to {
            Some(cap) if own.hold => Some((hold_part(key.clone(), redis(true)), cap)),
            Some(cap) => fixed.hold.clone().map(|hold| (hold, cap)),
            None => None,
        };
        let rate = match config.rate {
            Some(rate) if own.rate => Some(rate_part(key.clone(), rate, redis(config.shared_rate))),
            Some(_) => fixed.rate.clone(),
            None => None,
        };
        let bulkhead = match config.bulkhead {
            Some(bulkhead) if own.bulkhead => Some(bulkhead_part(key.clone(), bulkhead)),
            Some(_) => fixed.bulkhead.clone(),
            None => None,
        };
        let cap = config.retry_after_cap;
        let server_quota = match &config.server_quota {
            Some(quota) if own.server_quota => {
                let part = quota_part(key.clone(), quota.clone(), redis(true));
                Some((part, cap))
            }
            Some(_) => fixed.server_quota.clone().map(|quota| (quota, cap)),
            None => None,
        };
        let adaptive = match config.adaptive {
            Some(adaptive) if own.adaptive => Some(adaptive_part(key.clone(), adaptive)),
            Some(_) => fixed.adaptive.clone(),
            None => None,
        };
        let throttle = match config.throttle {
            Some(throttle) if own.throttle => Some(throttle_part(key.clone(), throttle)),
            Some(_) => fixed.throttle.clone(),
            None => None,
        };
        Guards {
            key,
            retired,
            budget,
            hold,
            rate,
            bulkhead,
            server_quota,
            adaptive,
            throttle,
            own,
        }
    }

    /// May a call start, in a call that must end by `deadline`? At most the bulkhead's
    /// `max_in_flight` at once; a call over it queues up to the bulkhead's queue timeout
    /// (and its deadline), or is refused at once when that is zero. `policy` names the
    /// call's policy in what is reported.
    pub(crate) fn enter(&self, deadline: Option<Instant>, policy: Option<&Arc<str>>) -> Entry {
        let Some(bulkhead) = &self.bulkhead else {
            return Entry::In(None);
        };
        if let Some(permit) = bulkhead.state.try_acquire() {
            return Entry::In(Some(permit));
        }
        let queue = bulkhead.queue_timeout();
        if queue.is_zero() {
            return Entry::Full(self.full(policy));
        }
        let now = Instant::now();
        let until = deadline.map_or(now + queue, |end| end.min(now + queue));
        let queue = until.saturating_duration_since(now);
        telemetry::queued(&bulkhead.key, policy, bulkhead.max(), queue);
        Entry::Queue(bulkhead.state.acquire(until))
    }

    /// The error for a call the bulkhead had no place for (reported as a refusal).
    pub(crate) fn full(&self, policy: Option<&Arc<str>>) -> Error {
        let (key, max) = match &self.bulkhead {
            Some(bulkhead) => (&bulkhead.key, bulkhead.max()),
            None => (&self.key, 0),
        };
        telemetry::bulkhead_full(key, policy, max);
        Error::bulkhead_full(format!(
            "{key}: its bulkhead is full ({max} in flight, its limit)"
        ))
    }

    /// May an attempt of `criticality` be sent at `now`, as far as client-side throttling
    /// says (asked once per attempt, before the other guards)? `Ok` with the throttle that
    /// counts it (`None`: not throttled by this policy); `Err`: throttled locally, the
    /// attempt's [`Throttled`](crate::ErrorKind::Throttled) error.
    #[inline]
    pub(crate) fn throttle(
        &self,
        now: Instant,
        criticality: Criticality,
        policy: Option<&Arc<str>>,
    ) -> Result<Option<Arc<Part<Throttle>>>, Error> {
        let Some(throttle) = &self.throttle else {
            return Ok(None);
        };
        match throttle.admit(now, criticality) {
            Ok(()) => Ok(Some(throttle.clone())),
            Err(probability) => {
                telemetry::throttled(&throttle.key, policy, criticality, probability);
                Err(Error::throttled(format!(
                    "{}: throttled locally, not sent: the dependency rejects much of what it \
                     gets, and {:.0} % of {criticality} attempts are throttled (rejection \
                     probability {probability:.2})",
                    throttle.key,
                    probability * 100.0
                )))
            }
        }
    }

    /// May an attempt not throttled take a place under the adaptive limit now (before the
    /// hold, the server's quota and the rate limit are asked), in a call that must end by
    /// `deadline`? Over it, the attempt queues (first come, first
    /// served) up to the limit's queue timeout and its deadline, or is refused at once when
    /// that is zero. An attempt let in at once costs a compare-exchange and an atomic load.
    #[inline]
    pub(crate) fn place(&self, deadline: Option<Instant>, policy: Option<&Arc<str>>) -> Placing {
        let Some(adaptive) = &self.adaptive else {
            return Placing::In(None);
        };
        if let Some(permit) = adaptive.state.try_acquire_for(policy) {
            return Placing::In(Some(permit));
        }
        let queue = adaptive.queue_timeout();
        if queue.is_zero() {
            return Placing::Full(self.adaptive_full(policy));
        }
        let now = Instant::now();
        let until = deadline.map_or(now + queue, |end| end.min(now + queue));
        let wait = until.saturating_duration_since(now);
        telemetry::place_queued(&adaptive.key, policy, adaptive.limit(), wait);
        Placing::Queue(adaptive.state.acquire_for(until, policy))
    }

    /// The error for an attempt the adaptive limit had no place for (reported as a
    /// refusal).
    pub(crate) fn adaptive_full(&self, policy: Option<&Arc<str>>) -> Error {
        let (key, limit) = match &self.adaptive {
            Some(adaptive) => (&adaptive.key, adaptive.limit()),
            None => (&self.key, 0),
        };
        telemetry::adaptive_full(key, policy, limit);
        Error::bulkhead_full(format!(
            "{key}: its adaptive concurrency limit is reached ({limit} attempts in flight, the \
             limit it has found)"
        ))
    }

    /// May an attempt go out at `now`, in a call that must end by `deadline`? `breaker` is
    /// the endpoint's, if it has one: an attempt it will turn away takes no rate-limit slot
    /// (the hold and the server's quota come first: the server asked). `reserved`: the slot
    /// this attempt reserved when told to wait (its wait is over): it goes, unless a hold
    /// came meanwhile; or its place in line for a spent server quota.
    ///
    /// Over the rate limit, an attempt whose wait fits the deadline reserves its slot and is
    /// told to wait until it; one whose wait does not is refused at once, reserving nothing.
    /// The server's quota says wait or refuse the same way (see [`ServerQuota`]); an attempt
    /// it lets out takes a ticket, carried by `Go` (or by the reservation, to go with it).
    pub(crate) fn admit(
        self: &Arc<Self>,
        now: Instant,
        deadline: Option<Instant>,
        policy: Option<&Arc<str>>,
        breaker: Option<&Breaker>,
        reserved: Option<Reservation>,
    ) -> Admission {
        // Wait if that fits the deadline, else refuse at once.
        let fits = |wait: Duration| deadline.is_none_or(|end| now + wait < end);
        // `key`: the refusing part's (its scope's).
        let refuse = |key: &str, guard: Guard, wait: Duration, (why, then): (&str, &str)| {
            telemetry::rate_limited(key, policy, guard, wait);
            let detail = format!("{key}: {why} {}{then}, past the deadline", Short(wait));
            Admission::Refused(Error::rate_limited(detail, wait))
        };
        const OVER_RATE: (&str, &str) = ("over the client's rate limit, next slot in", "");
        if let Some((hold, _)) = &self.hold
            && let Some(left) = hold.remaining(now)
        {
            // A slot reserved, if any, is dropped: given back if it can be.
            drop(reserved);
            let why = ("the server asked to wait (Retry-After),", " left");
            if !fits(left) {
                return refuse(&hold.key, Guard::RetryAfter, left, why);
            }
            let wait = left + release_delay(hold.release_window(), now + left, deadline);
            telemetry::delayed(&hold.key, policy, Guard::RetryAfter, wait);
            return Admission::Wait(wait, None);
        }
        let mut place = None;
        if let Some(mut reserved) = reserved {
            if reserved.slot.take().is_some() {
                // The slot is this attempt's, and its instant has come; so is the quota's
                // ticket, taken with it.
                return Admission::Go(reserved.ticket.take());
            }
            place = reserved.place.take();
        }
        // The server's quota (the server asked, as for a hold), then the rate limit: the
        // attempt goes when both let it.
        let ticket = match &self.server_quota {
            None => None,
            Some((quota, cap)) => match quota.admit(now, *cap, place) {
                Admit::Go(ticket) => Some(ticket),
                Admit::Wait(spent, place) => {
                    let wait = quota_wait(&quota.key, spent, now, deadline, policy);
                    return match (wait, place) {
                        (Admission::Wait(wait, None), Some(place)) => {
                            let reservation = Reservation {
                                guards: self.clone(),
                                slot: None,
                                ticket: None,
                                place: Some(place),
                            };
                            Admission::Wait(wait, Some(reservation))
                        }
                        (admission, _) => admission,
                    };
                }
            },
        };
        let Some(rate) = &self.rate else {
            return Admission::Go(ticket);
        };
        if breaker.is_some_and(Breaker::refuses_now) {
            return Admission::Go(ticket);
        }
        // Past here, an attempt that does not go spends its ticket (see `Reservation`).
        match rate.reserve(now, deadline) {
            Reserve::Now => Admission::Go(ticket),
            Reserve::Reserved(slot) => {
                telemetry::delayed(&rate.key, policy, Guard::RateLimit, slot.wait);
                let wait = slot.wait;
                let guards = self.clone();
                let slot = Some(slot);
                let reservation = Reservation {
                    guards,
                    slot,
                    ticket,
                    place: None,
                };
                Admission::Wait(wait, Some(reservation))
            }
            Reserve::TooLate(wait) => refuse(&rate.key, Guard::RateLimit, wait, OVER_RATE),
            Reserve::AskAgain(wait) if fits(wait) => {
                telemetry::delayed(&rate.key, policy, Guard::RateLimit, wait);
                Admission::Wait(wait, None)
            }
            Reserve::AskAgain(wait) => refuse(&rate.key, Guard::RateLimit, wait, OVER_RATE),
        }
    }

    /// May a hedge of `criticality` go out at `now`, without waiting? Not while the endpoint
    /// is held, nor when `breaker` (the endpoint's, if the caller has it) will turn it away,
    /// nor when client-side throttling turns it away (counted as no request), nor while the server's quota is spent or its pace says wait, nor when the
    /// adaptive limit has no place free now (a hedge never queues); then it spends from the
    /// retry budget as a retry does, takes its place, the quota's ticket (`Ok`, if the quota
    /// is followed) and a rate-limit slot. `Err`: the guard that kept it back (reported by the
    /// caller as a
    /// skipped hedge, not as a refusal).
    pub(crate) fn let_hedge_out(
        &self,
        now: Instant,
        criticality: Criticality,
        breaker: Option<&Breaker>,
    ) -> Result<Pass, Guard> {
        if self.held_for(now).is_some() {
            return Err(Guard::RetryAfter);
        }
        if breaker.is_some_and(Breaker::refuses_now) {
            return Err(Guard::Breaker);
        }
        // Throttled first, as an attempt is (nothing else is spent for it then); a hedge
        // kept back counts as no request (see `Throttle::lets_hedge_out`).
        if let Some(throttle) = &self.throttle
            && !throttle.lets_hedge_out(now, criticality)
        {
            return Err(Guard::Throttle);
        }
        // Nothing is spent for a hedge that does not go: the budget is looked at, then a
        // place under the adaptive limit taken if one is free now (a hedge never queues: it
        // is late already), then the quota's ticket and the rate limit's slot, then the
        // budget spent (which another thread may have emptied in between: then the slot is
        // lost, as a retry's is when its send fails). The place and the ticket of a hedge
        // kept back after them go back as they were, the place with no sample.
        let budget = self.budget.as_ref();
        if budget.is_some_and(|budget| budget.available(now) == 0) {
            return Err(Guard::Budget);
        }
        let place = match &self.adaptive {
            None => None,
            Some(adaptive) => match adaptive.state.try_acquire() {
                Some(place) => Some(place),
                None => return Err(Guard::AdaptiveConcurrency),
            },
        };
        let ticket = match &self.server_quota {
            None => None,
            Some((quota, cap)) => match quota.admit(now, *cap, None) {
                Admit::Go(ticket) => Some(ticket),
                Admit::Wait(..) => return Err(Guard::ServerQuota),
            },
        };
        if let Some(rate) = &self.rate
            && rate.try_take(now).is_err()
        {
            return Err(Guard::RateLimit);
        }
        if budget.is_some_and(|budget| !budget.withdraw(now, criticality)) {
            return Err(Guard::Budget);
        }
        let mut pass = Pass::default();
        pass.ticket = ticket;
        if let Some(place) = place {
            pass.set_place(place);
        }
        if let Some(throttle) = &self.throttle {
            pass.set_throttle(throttle.clone(), criticality);
        }
        Ok(pass)
    }

    /// Learns from the head of the answer to the attempt that carried `ticket` (every
    /// answer: a success, a 4xx, a 5xx, a 429), arrived now: the quota its fields
    /// advertise, if the policy follows it. Costs a call whose answers advertise none one
    /// look at their fields.
    #[inline]
    pub(crate) fn learn(
        &self,
        ticket: Option<Ticket>,
        headers: &HeaderMap,
        policy: Option<&Arc<str>>,
    ) {
        let (Some((quota, _)), Some(ticket)) = (&self.server_quota, ticket) else {
            return;
        };
        quota.learn(ticket, headers, |learned| {
            telemetry::quota_learned(
                &quota.key,
                policy,
                learned.policy.as_deref(),
                learned.limit,
                learned.remaining,
                learned.reset,
            );
        });
    }

    /// Learns from an attempt that failed at `now`: a 429 or 503 whose `Retry-After` is
    /// within the cap holds the endpoint until then, for every call.
    pub(crate) fn observe(&self, now: Instant, error: &Error, policy: Option<&Arc<str>>) {
        let Some((hold, cap)) = &self.hold else {
            return;
        };
        let asked = matches!(
            error.status(),
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        ) && error.kind() == ErrorKind::Status;
        if let Some(wait) = error.retry_after().filter(|wait| asked && wait <= cap) {
            // Announced when the endpoint becomes held, not for each answer that lengthens
            // a hold: calls in flight when it began may all come back with one.
            let was_held = hold.remaining(now).is_some();
            hold.hold_until(now + wait);
            if !was_held {
                telemetry::held(&hold.key, policy, wait);
            }
        }
    }

    /// How long a call answered at `now` with a `Retry-After` of `asked` (within the cap)
    /// waits before its retry, in a call that must end by `deadline`: what the server asked,
    /// and, while the answer holds the endpoint, a share of the hold's release window as a
    /// call waiting on the hold has ([`release_delay`]). The retries of calls that were all
    /// answered `429` at once are the largest herd a hold's end would release: the first
    /// goes when the server asked, the others spread after it.
    pub(crate) fn retry_after_wait(
        &self,
        now: Instant,
        asked: Duration,
        deadline: Option<Instant>,
    ) -> Duration {
        match &self.hold {
            Some((hold, _)) if hold.remaining(now).is_some() => {
                asked + release_delay(hold.release_window(), now + asked, deadline)
            }
            _ => asked,
        }
    }

    /// A first attempt went out at `now`.
    #[inline]
    pub(crate) fn deposit(&self, now: Instant) {
        if let Some(budget) = &self.budget {
            budget.deposit(now);
        }
    }

    /// A retry (or resend) of `criticality` wants to go at `now`: whether the budget lets
    /// it (critical ones may take its last retries, the others may not: see
    /// [`Criticality::budget_claim`]).
    pub(crate) fn withdraw(
        &self,
        now: Instant,
        criticality: Criticality,
        policy: Option<&Arc<str>>,
    ) -> bool {
        let spent = self
            .budget
            .as_ref()
            .is_some_and(|budget| !budget.withdraw(now, criticality));
        if spent {
            telemetry::budget_spent(policy);
        }
        !spent
    }

    /// The endpoint key these guards belong to.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Whole retries the budget has left at `now`; `None` without a budget.
    pub(crate) fn budget_available(&self, now: Instant) -> Option<u64> {
        self.budget.as_ref().map(|budget| budget.available(now))
    }

    /// How long the `Retry-After` hold lasts after `now`; `None` when not held.
    pub(crate) fn held_for(&self, now: Instant) -> Option<Duration> {
        self.hold.as_ref().and_then(|(hold, _)| hold.remaining(now))
    }

    /// The bulkhead's (in flight, waiting); `None` without a bulkhead.
    pub(crate) fn bulkhead_counts(&self) -> Option<(u32, u32)> {
        self.bulkhead.as_ref().map(|b| (b.in_flight(), b.waiting()))
    }

    /// Slots a shared rate limit granted locally (Redis down or slow); `None` without a
    /// shared rate limit.
    pub(crate) fn rate_fallbacks(&self) -> Option<u64> {
        self.rate.as_ref().and_then(|rate| rate.fallbacks())
    }

    /// What the scope knows of the server's quota at `now` (its tightest entry); `None`
    /// when not followed or nothing learned.
    pub(crate) fn server_quota(&self, now: Instant) -> Option<QuotaSnapshot> {
        (self.server_quota.as_ref()).and_then(|(quota, _)| quota.snapshot(now))
    }

    /// The adaptive limit's (limit, in flight, waiting); `None` without one.
    pub(crate) fn adaptive_counts(&self) -> Option<(u32, u32, u32)> {
        (self.adaptive.as_ref()).map(|a| (a.limit(), a.in_flight(), a.waiting()))
    }

    /// The probability the throttle rejects an attempt of `criticality` at `now`; `None`
    /// without a throttle.
    pub(crate) fn throttle_probability(
        &self,
        now: Instant,
        criticality: Criticality,
    ) -> Option<f64> {
        (self.throttle.as_ref()).map(|throttle| throttle.probability(now, criticality))
    }

    /// The throttle's window at `now`: (requests, accepts); `None` without a throttle.
    pub(crate) fn throttle_counts(&self, now: Instant) -> Option<(u64, u64)> {
        (self.throttle.as_ref()).map(|throttle| throttle.counts(now))
    }

    /// From when the rate limit has its full burst again; `None` without a rate limit.
    pub(crate) fn rate_full_at(&self) -> Option<Instant> {
        self.rate.as_ref().map(|rate| rate.full_at())
    }
}

/// What an attempt at `now` told to wait by the server's quota of scope `key` does: wait if
/// that fits its `deadline` (to a reset, spread after it as a hold's waiters are), else
/// refuse at once, naming the quota.
fn quota_wait(
    key: &str,
    spent: Spent,
    now: Instant,
    deadline: Option<Instant>,
    policy: Option<&Arc<str>>,
) -> Admission {
    let wait = spent.wait;
    if deadline.is_some_and(|end| now + wait >= end) {
        telemetry::rate_limited(key, policy, Guard::ServerQuota, wait);
        let detail = format!("{key}: {spent}, past the deadline");
        return Admission::Refused(Error::rate_limited(detail, wait));
    }
    if spent.first() {
        telemetry::quota_spent(key, policy, spent.reset);
    }
    let wait = if spent.spent {
        wait + release_delay(spent.release, now + wait, deadline)
    } else {
        wait
    };
    telemetry::delayed(key, policy, Guard::ServerQuota, wait);
    Admission::Wait(wait, None)
}

/// How long after a hold's `end` a call that waited on it goes: a random instant within the
/// hold's release `window`, or within half the time from the end to the call's `deadline`
/// if that is shorter (so that its attempt keeps at least half of it; no room: at the end).
/// See [`hold`](super::hold)'s docs.
fn release_delay(window: Duration, end: Instant, deadline: Option<Instant>) -> Duration {
    let room = deadline.map_or(window, |deadline| {
        window.min(deadline.saturating_duration_since(end) / 2)
    });
    room.mul_f64(fastrand::f64())
}

impl Guards {
    /// Whether these guards still constrain a call, so that guards made afresh in their place
    /// would forget a limit: a hold, a rate limit not back to its full burst (its TAT ahead
    /// of now: spent or partly spent, or slots reserved by waiting calls), a retry budget
    /// with retries spent in its window, calls in the bulkhead or its queue. Asked only when
    /// the map is full.
    pub(crate) fn busy(&self) -> bool {
        if self.retired.load(Relaxed) {
            return false;
        }
        let now = Instant::now();
        let own = self.own;
        let held =
            (self.hold.as_ref()).is_some_and(|(hold, _)| own.hold && hold.remaining(now).is_some());
        let quota = (self.server_quota.as_ref())
            .is_some_and(|(quota, _)| own.server_quota && quota.busy(now));
        let adaptive = (self.adaptive.as_ref()).is_some_and(|a| own.adaptive && a.busy());
        let throttle = (self.throttle.as_ref()).is_some_and(|t| own.throttle && t.busy(now));
        held || quota
            || adaptive
            || throttle
            || (self.rate.as_ref()).is_some_and(|rate| own.rate && rate.full_at() > now)
            || (self.budget.as_ref()).is_some_and(|budget| own.budget && budget.drawn_down(now))
            || (self.bulkhead.as_ref())
                .is_some_and(|b| own.bulkhead && (b.in_flight() > 0 || b.waiting() > 0))
    }
}

/// The guards of one policy, by endpoint key, each entry with the host-scoped parts of its
/// own and the policy's fixed parts ([`FixedParts`]); when no part is host-scoped, one entry
/// for every request, found without a lookup. Cheap to clone.
#[derive(Clone)]
pub(crate) struct GuardRegistry {
    /// The endpoints' entries, whose guards are this registry's: one the policy's breakers
    /// are kept in too when they are per endpoint (one lookup finds both), else its own.
    endpoints: Arc<Keyed<Endpoint>>,
    /// Whether the policy's breakers are to be kept in its map ([`Self::new`]).
    with_breakers: bool,
    config: Arc<GuardsConfig>,
    fleet: Option<FleetKeys>,
    fixed: FixedParts,
    /// The one entry when no part is host-scoped.
    only: Option<Arc<Guards>>,
    /// Sets the flag its guards share when the last clone is dropped.
    retired: Arc<Retired>,
}

/// A registry's retirement: the flag its guards share, set when it is dropped (then no
/// policy looks them up any more), not by a reload, so that a reload abandoned for another
/// retires nothing still in use, and guards made after a reload began are retired too.
struct Retired(Arc<AtomicBool>);

impl Drop for Retired {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

impl std::fmt::Debug for GuardRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardRegistry")
            .field("config", &self.config)
            .field("endpoints", &self.endpoints.len())
            .finish()
    }
}

impl GuardRegistry {
    /// `None` when the config turns nothing on. `fleet`: the Redis the host-scoped parts
    /// share (holds always; the rate limit and budget when the config says so). `fixed`:
    /// the parts scoped to the rule or a name, made by the policy called `rule`.
    /// `max_breakers`: the bound of the policy's breakers if they are kept per endpoint:
    /// when it is `max_endpoints` and a part is host-scoped, the map of the guards is made to
    /// hold the breakers too ([`with_breakers`](Self::with_breakers)), and named as theirs.
    pub(crate) fn new(
        config: GuardsConfig,
        max_endpoints: usize,
        fleet: Option<FleetKeys>,
        fixed: FixedParts,
        rule: &Arc<str>,
        max_breakers: Option<usize>,
    ) -> Option<Self> {
        if config.is_off() {
            return None;
        }
        let retired = Retired(Arc::new(AtomicBool::new(false)));
        let only = (!config.any_per_host()).then(|| {
            let key = config.fixed_key(rule);
            let flag = retired.0.clone();
            Arc::new(Guards::new(key, &config, fleet.as_ref(), &fixed, flag))
        });
        let with_breakers = only.is_none() && max_breakers == Some(max_endpoints);
        let kind = if with_breakers {
            "breakers"
        } else {
            "overload_guards"
        };
        Some(GuardRegistry {
            endpoints: Arc::new(Keyed::new(max_endpoints, kind)),
            with_breakers,
            config: Arc::new(config),
            fleet,
            fixed,
            only,
            retired: Arc::new(retired),
        })
    }

    /// Whether `other` keeps guards set up as these are (the same settings, scopes, bound
    /// and Redis): then a reload keeps `other`'s, with their state.
    pub(crate) fn same_setup(&self, other: &GuardRegistry) -> bool {
        self.config == other.config
            && self.endpoints.max() == other.endpoints.max()
            && self.fleet == other.fleet
    }

    /// The one entry every request uses, when no part is host-scoped.
    #[inline]
    pub(crate) fn only(&self) -> Option<&Arc<Guards>> {
        self.only.as_ref()
    }

    /// The guards of endpoint `key` ([`endpoint_key`](crate::keyed::endpoint_key)).
    /// Made if it has none (its key shared if `key` is an `Arc<str>`).
    pub(crate) fn guards_at<K: keyed::Key + ?Sized>(&self, key: &K) -> Arc<Guards> {
        if let Some(only) = &self.only {
            return only.clone();
        }
        let entry = self.endpoints.get_or_insert(key, |key| {
            let guards = self.make(&key);
            Endpoint::new(key, None, Some(guards))
        });
        self.guards_of(&entry).clone()
    }

    /// The guards of `entry`, one of this registry's map, made if it has none.
    #[inline]
    pub(crate) fn guards_of<'e>(&self, entry: &'e Endpoint) -> &'e Arc<Guards> {
        entry.guards(|key| self.make(key))
    }

    /// New guards for endpoint `key`.
    pub(crate) fn make(&self, key: &Arc<str>) -> Guards {
        let retired = self.retired.0.clone();
        Guards::new(
            key.clone(),
            &self.config,
            self.fleet.as_ref(),
            &self.fixed,
            retired,
        )
    }

    /// The map of its entries (shared with the policy's breakers when they are per endpoint).
    pub(crate) fn endpoints(&self) -> &Arc<Keyed<Endpoint>> {
        &self.endpoints
    }

    /// Whether its map is made for the policy's breakers too: a registry of them over it
    /// ([`BreakerRegistry::over`](crate::breaker::BreakerRegistry::over)) replaces the one
    /// with a map of its own.
    pub(crate) fn with_breakers(&self) -> bool {
        self.with_breakers
    }

    /// The guards of endpoint `key`, if a call has used them (and they were not evicted
    /// since); made by nothing else. With no host-scoped part: the one entry, under its key.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Guards>> {
        match &self.only {
            Some(only) => (only.key() == key).then(|| only.clone()),
            None => (self.endpoints.get(key)).and_then(|entry| entry.guards_made().cloned()),
        }
    }
}

#[cfg(test)]
impl Guards {
    /// The adaptive limit's latency samples so far; `None` without one (for tests: a
    /// cancelled attempt is none).
    pub(crate) fn adaptive_samples(&self) -> Option<u64> {
        (self.adaptive.as_ref()).map(|adaptive| adaptive.samples())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overload::pass::Answer;

    /// Guards with client-side throttling alone, for one endpoint.
    fn throttled_guards() -> Result<Arc<Guards>, String> {
        Ok(throttling_registry()?.guards_at("http://127.0.0.1:80"))
    }

    /// A registry of guards with client-side throttling alone.
    fn throttling_registry() -> Result<GuardRegistry, String> {
        let config = GuardsConfig {
            budget: None,
            hold_up_to: None,
            rate: None,
            bulkhead: None,
            server_quota: None,
            adaptive: None,
            throttle: Some(ThrottleConfig::new()),
            retry_after_cap: Duration::from_secs(60),
            shared_rate: false,
            shared_budget: false,
            scopes: GuardScopes::default(),
        };
        let rule: Arc<str> = Arc::from("default");
        GuardRegistry::new(config, 16, None, FixedParts::default(), &rule, None)
            .ok_or_else(|| "no guards".to_owned())
    }

    /// Guards left behind by a reload (their registry dropped, the map kept by the breakers
    /// beside them) no longer keep their entry, whatever their state: no policy looks them
    /// up any more. Until then they do.
    #[tokio::test(start_paused = true)]
    async fn guards_whose_registry_is_dropped_no_longer_keep_their_entry() -> Result<(), String> {
        use crate::keyed::Entry;
        let registry = throttling_registry()?;
        let key = "http://127.0.0.1:80";
        let guards = registry.guards_at(key);
        let now = Instant::now();
        let throttle = (guards.throttle(now, Criticality::Default, None))
            .map_err(|error| error.to_string())?
            .ok_or("no throttle")?;
        for _ in 0..99 {
            throttle.record(now, Criticality::Sheddable, false);
        }
        drop((throttle, guards));
        let map = registry.endpoints().clone();
        let entry = map.get(key).ok_or("no entry")?;
        assert!(entry.busy(), "throttling guards keep their entry");
        let kept = registry.clone();
        drop(registry);
        assert!(
            entry.busy(),
            "retired while a clone of the registry is in use"
        );
        drop(kept);
        assert!(!entry.busy(), "guards no policy uses keep their entry");
        Ok(())
    }

    /// A hedge is throttled as an attempt is, but one kept back counts as no request (the
    /// application did not ask for it); one let out carries the throttle and its
    /// criticality, which count it when it ends.
    #[tokio::test(start_paused = true)]
    async fn a_hedge_is_throttled_as_an_attempt_is_and_counted_only_if_it_goes()
    -> Result<(), String> {
        let now = Instant::now();
        let guards = throttled_guards()?;
        let pass = guards
            .let_hedge_out(now, Criticality::Sheddable, None)
            .map_err(|guard| format!("kept back by {guard:?}"))?;
        let (throttle, criticality) = pass.throttle().ok_or("no throttle in the pass")?;
        assert_eq!(criticality, Criticality::Sheddable);
        let throttle = throttle.clone();
        assert_eq!(throttle.counts(now), (0, 0));
        pass.end(Answer::Accepted);
        assert_eq!(throttle.counts(now), (1, 1));
        // Cancelled (dropped without an end), or ended uncounted: nothing.
        let cancelled = guards.let_hedge_out(now, Criticality::Critical, None);
        drop(cancelled);
        let uncounted = guards.let_hedge_out(now, Criticality::Critical, None);
        uncounted
            .map_err(|guard| format!("kept back by {guard:?}"))?
            .end(Answer::Uncounted);
        assert_eq!(throttle.counts(now), (1, 1));

        for _ in 0..50 {
            throttle.record(now, Criticality::Default, false);
        }
        let kept_back = guards
            .let_hedge_out(now, Criticality::Sheddable, None)
            .err();
        assert_eq!(kept_back, Some(Guard::Throttle));
        assert_eq!(throttle.counts(now), (51, 1));
        Ok(())
    }

    /// A throttled attempt's error says so, with the probability, and names the scope.
    #[tokio::test(start_paused = true)]
    async fn a_throttled_attempt_fails_with_the_probability() -> Result<(), String> {
        let now = Instant::now();
        let guards = throttled_guards()?;
        let throttle = (guards.throttle(now, Criticality::Default, None))
            .map_err(|error| error.to_string())?;
        let throttle = throttle.ok_or("no throttle")?;
        // 99 rejections: (99 − K / 2 × 0) / (99 + 1).
        for _ in 0..99 {
            throttle.record(now, Criticality::Sheddable, false);
        }
        let error = guards
            .throttle(now, Criticality::Sheddable, None)
            .err()
            .ok_or("not throttled")?;
        assert_eq!(error.kind(), ErrorKind::Throttled);
        let shown = error.to_string();
        assert!(
            shown.contains("http://127.0.0.1:80: throttled locally, not sent")
                && shown.contains("99 % of sheddable attempts")
                && shown.contains("rejection probability 0.99"),
            "{shown}"
        );
        Ok(())
    }
}
