//! What the overload guards report (the tables are in the [module docs](super)). Called only
//! where a guard holds a call back or turns it away, or a server's answer holds an endpoint:
//! a call let through at once reaches none of this.

use std::sync::Arc;
use std::time::Duration;

use super::observer::{millis, policy_name};
use crate::overload::Criticality;

/// Which guard held a call back or turned it away: the `reason` of the events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    /// The endpoint is held: its server sent `Retry-After`.
    RetryAfter,
    /// The client's rate limit.
    RateLimit,
    /// The bulkhead.
    Bulkhead,
    /// The retry budget.
    Budget,
    /// The circuit breaker (for a hedge it would turn away).
    Breaker,
    /// The service under a `RetryLayer` or `ResilientLayer` of the user's own, not ready for
    /// a hedge (a hedge never waits for it).
    NotReady,
    /// The quota the server advertises (its `RateLimit` or `X-RateLimit-*` fields).
    ServerQuota,
    /// The adaptive concurrency limit.
    AdaptiveConcurrency,
    /// Client-side adaptive throttling.
    Throttle,
}

impl Guard {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Guard::RetryAfter => "retry_after",
            Guard::RateLimit => "rate_limit",
            Guard::Bulkhead => "bulkhead",
            Guard::Budget => "budget",
            Guard::Breaker => "circuit_open",
            Guard::NotReady => "service_not_ready",
            Guard::ServerQuota => "server_quota",
            Guard::AdaptiveConcurrency => "adaptive_concurrency",
            Guard::Throttle => "throttle",
        }
    }
}

/// `endpoint`, not held until now, is held for `wait`, as its server asked.
pub(crate) fn held(endpoint: &str, policy: Option<&Arc<str>>, wait: Duration) {
    tracing::info!(
        endpoint,
        retry_after_ms = millis(wait),
        policy = policy_name(policy),
        "endpoint held"
    );
    count(super::OVERLOAD_HOLDS, policy, None);
}

/// `endpoint`'s server advertised a quota it did not know, or one whose new window started
/// (not said for each answer: a quota is advertised on every one). `quota` names the
/// server's policy, if it has a name.
pub(crate) fn quota_learned(
    endpoint: &str,
    policy: Option<&Arc<str>>,
    quota: Option<&str>,
    limit: Option<u64>,
    remaining: u64,
    reset: Duration,
) {
    tracing::debug!(
        endpoint,
        quota,
        limit,
        remaining,
        reset_ms = millis(reset),
        policy = policy_name(policy),
        "server quota learned"
    );
}

/// `endpoint`'s server quota is spent: its calls wait for the reset, `reset` from now.
/// Said by the first call to wait on that reset; counted as a hold (the server's asking).
pub(crate) fn quota_spent(endpoint: &str, policy: Option<&Arc<str>>, reset: Duration) {
    tracing::info!(
        endpoint,
        reason = Guard::ServerQuota.as_str(),
        reset_ms = millis(reset),
        policy = policy_name(policy),
        "endpoint held"
    );
    count(super::OVERLOAD_HOLDS, policy, None);
}

/// An attempt to `endpoint` waits `wait` before it may go out.
pub(crate) fn delayed(endpoint: &str, policy: Option<&Arc<str>>, guard: Guard, wait: Duration) {
    tracing::debug!(
        endpoint,
        reason = guard.as_str(),
        wait_ms = millis(wait),
        policy = policy_name(policy),
        "request delayed"
    );
    count(super::OVERLOAD_WAITS, policy, Some(guard));
}

/// An attempt to `endpoint` is refused: it could go out in `left`, past its deadline.
pub(crate) fn rate_limited(
    endpoint: &str,
    policy: Option<&Arc<str>>,
    guard: Guard,
    left: Duration,
) {
    tracing::debug!(
        endpoint,
        reason = guard.as_str(),
        retry_after_ms = millis(left),
        policy = policy_name(policy),
        "request rejected: rate limited"
    );
    count(super::OVERLOAD_REJECTIONS, policy, Some(guard));
}

/// A call to `endpoint` found its `max_in_flight` places taken and queues, `queue` at most.
pub(crate) fn queued(
    endpoint: &str,
    policy: Option<&Arc<str>>,
    max_in_flight: u32,
    queue: Duration,
) {
    tracing::debug!(
        endpoint,
        max_in_flight,
        queue_ms = millis(queue),
        policy = policy_name(policy),
        "request queued: bulkhead full"
    );
    count(super::OVERLOAD_WAITS, policy, Some(Guard::Bulkhead));
}

/// A call to `endpoint` found no place in its bulkhead, at once or after queueing.
pub(crate) fn bulkhead_full(endpoint: &str, policy: Option<&Arc<str>>, max_in_flight: u32) {
    tracing::debug!(
        endpoint,
        max_in_flight,
        policy = policy_name(policy),
        "request rejected: bulkhead full"
    );
    count(super::OVERLOAD_REJECTIONS, policy, Some(Guard::Bulkhead));
}

/// An attempt to `endpoint` found its adaptive limit's `limit` places taken and queues,
/// `queue` at most.
pub(crate) fn place_queued(endpoint: &str, policy: Option<&Arc<str>>, limit: u32, queue: Duration) {
    tracing::debug!(
        endpoint,
        limit,
        queue_ms = millis(queue),
        policy = policy_name(policy),
        "request queued: adaptive concurrency limit reached"
    );
    count(
        super::OVERLOAD_WAITS,
        policy,
        Some(Guard::AdaptiveConcurrency),
    );
}

/// An attempt to `endpoint` found no place under its adaptive limit, at once or after
/// queueing.
pub(crate) fn adaptive_full(endpoint: &str, policy: Option<&Arc<str>>, limit: u32) {
    tracing::debug!(
        endpoint,
        limit,
        policy = policy_name(policy),
        "request rejected: adaptive concurrency limit reached"
    );
    count(
        super::OVERLOAD_REJECTIONS,
        policy,
        Some(Guard::AdaptiveConcurrency),
    );
}

/// `endpoint`'s adaptive limit moved from `old` (the last one said) to `new`, more than 10 %
/// away. `policy`: the call whose attempt's sample moved it.
///
/// INFO, as a breaker's change and a hold are: it says the dependency's capacity, as the
/// client sees it, changed, and the 10 % from the last one said keeps it rare (measured:
/// 5 or 6 in the acceptance test's 14 s, 4 of them while the limit first settles; a limit
/// moving a place up and down around its level says nothing).
pub(crate) fn limit_changed(endpoint: &str, policy: Option<&Arc<str>>, old: u32, new: u32) {
    tracing::info!(
        endpoint,
        old_limit = old,
        limit = new,
        policy = policy_name(policy),
        "adaptive concurrency limit changed"
    );
}

/// An attempt of `criticality` to `endpoint` was throttled locally, with `probability`.
/// Its event is DEBUG (a throttled dependency throttles many); the call's end says the
/// rest (`retry skipped`, reason `throttled`).
pub(crate) fn throttled(
    endpoint: &str,
    policy: Option<&Arc<str>>,
    criticality: Criticality,
    probability: f64,
) {
    tracing::debug!(
        endpoint,
        reason = Guard::Throttle.as_str(),
        criticality = criticality.as_str(),
        probability,
        policy = policy_name(policy),
        "request rejected: throttled"
    );
    #[cfg(feature = "metrics")]
    super::meters::throttled(policy, criticality);
}

/// The retry budget refused a retry. Its event is the call's `retry skipped` (reason
/// `budget_exhausted`), which knows the attempt and ends the call.
pub(crate) fn budget_spent(policy: Option<&Arc<str>>) {
    count(super::OVERLOAD_REJECTIONS, policy, Some(Guard::Budget));
}

/// An insertion into the endpoint map `map` (`breakers`, `overload_guards`) found every
/// entry busy, each still constraining a call (an open breaker, a spent rate limit or
/// budget, a hold, calls in flight), and grew it to `len`, past its bound `max`, rather than
/// forget one. Counted each time; said at WARN the `first` time for the map only: an
/// overload that keeps it there would repeat it for every new endpoint.
pub(crate) fn over_bound(map: &'static str, len: usize, max: usize, first: bool) {
    if first {
        tracing::warn!(
            map,
            endpoints = len,
            max_endpoints = max,
            "endpoint map over its bound: every endpoint in it still limits a call, none dropped \
             (said once per map; raise max_breakers if this is the steady state)"
        );
    }
    #[cfg(feature = "metrics")]
    metrics::counter!(super::ENDPOINTS_OVER_BOUND, "map" => map).increment(1);
}

/// One more of the counter `name` (with the `metrics` feature; nothing without).
fn count(name: &'static str, policy: Option<&Arc<str>>, guard: Option<Guard>) {
    #[cfg(feature = "metrics")]
    super::meters::overload(name, policy, guard);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, policy, guard);
}
