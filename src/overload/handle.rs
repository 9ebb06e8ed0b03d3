//! A read-only view of one endpoint's overload guards, for tests, dashboards and health
//! checks: see [`Client::overload`](crate::Client::overload).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Guards;
use super::throttle::Criticality;

/// What one endpoint key's overload guards hold now, under one policy: the retry budget,
/// the `Retry-After` hold, the rate limit, the bulkhead, the server's advertised quota, the
/// adaptive concurrency limit and client-side throttling. Each reading is `None` when the
/// policy does not turn that guard on. Reading changes nothing.
///
/// Got from [`Client::overload`](crate::Client::overload). It shares the guards with the
/// client, so each reading is the state at the time of the call; cheap to clone. (A policy
/// keeps the guards of as many endpoints as it keeps breakers; a handle kept keeps its
/// endpoint's guards in the policy's map, as a call in flight does.)
///
/// ```
/// use std::time::Duration;
/// use resilient_http::Client;
/// use resilient_http::overload::BulkheadConfig;
/// use resilient_http::policy::EndpointPolicy;
/// use resilient_http::testkit::FaultServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// let client = Client::builder()
///     .default_policy(EndpointPolicy::new().bulkhead(BulkheadConfig::new(8, Duration::ZERO)))
///     .build()?;
/// client.get(server.url("/")).send().await?;
///
/// // The endpoint key: scheme, host and port (see `Scope` for the other scopes' keys).
/// let key = format!("http://{}", server.addr());
/// let guards = client.overload("default", &key).expect("called once");
/// assert_eq!(guards.bulkhead_in_flight(), Some(0));
/// assert_eq!(guards.bulkhead_waiting(), Some(0));
/// assert_eq!(guards.held_for(), None);
/// // The default budget: 10 retries a second over 10 s, plus a fifth of the one call.
/// assert_eq!(guards.budget_available(), Some(100));
/// assert_eq!(guards.rate_limit_idle(), None, "no rate limit configured");
/// // Followed by default, but this server advertises no quota.
/// assert_eq!(guards.server_quota_remaining(), None);
/// assert_eq!(guards.server_quota_reset(), None);
/// assert_eq!(guards.adaptive_limit(), None, "no adaptive limit configured");
/// assert_eq!(guards.throttle_requests(), None, "no throttling configured");
/// # Ok(())
/// # }
/// ```
///
/// With an adaptive concurrency limit and client-side throttling on, the handle shows the
/// limit found so far, the attempts under it, and the throttle's window:
///
/// ```
/// use resilient_http::Client;
/// use resilient_http::overload::{AdaptiveConcurrencyConfig, Criticality, ThrottleConfig};
/// use resilient_http::policy::EndpointPolicy;
/// use resilient_http::testkit::FaultServer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// let policy = EndpointPolicy::new()
///     .adaptive_concurrency(AdaptiveConcurrencyConfig::default().initial(10).min(2).max(50))
///     .throttle(ThrottleConfig::new());
/// let client = Client::builder().default_policy(policy).build()?;
/// client.get(server.url("/")).send().await?;
///
/// let guards = client.overload("default", &format!("http://{}", server.addr())).expect("called");
/// let limit = guards.adaptive_limit().expect("on");
/// assert!((2..=50).contains(&limit));
/// assert_eq!(guards.adaptive_in_flight(), Some(0), "the call is over");
/// assert_eq!(guards.adaptive_waiting(), Some(0));
/// // The dependency accepted everything it got: nothing is throttled.
/// assert_eq!(guards.throttle_probability(Criticality::Sheddable), Some(0.0));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OverloadHandle(pub(crate) Arc<Guards>);

impl OverloadHandle {
    /// The key of these guards: the endpoint key (scheme, host and port) when any of the
    /// policy's guards is scoped to the host; else `name:<name>` when all of them share one
    /// named scope, else the rule's name (a guard scoped to a name says `name:<name>` in its
    /// errors and telemetry whatever this key is). See [`Scope`](crate::policy::Scope).
    pub fn key(&self) -> &str {
        self.0.key()
    }

    /// Whole retries the retry budget allows now; `None` when the policy has no budget.
    pub fn budget_available(&self) -> Option<u64> {
        self.0.budget_available(Instant::now())
    }

    /// How long the endpoint stays held by a server's `Retry-After`; `None` when it is not
    /// held (or the policy does not hold endpoints).
    pub fn held_for(&self) -> Option<Duration> {
        self.0.held_for(Instant::now())
    }

    /// Calls holding a place in the bulkhead; `None` without a bulkhead.
    pub fn bulkhead_in_flight(&self) -> Option<u32> {
        self.0.bulkhead_counts().map(|(in_flight, _)| in_flight)
    }

    /// Calls queueing for a place in the bulkhead; `None` without a bulkhead.
    pub fn bulkhead_waiting(&self) -> Option<u32> {
        self.0.bulkhead_counts().map(|(_, waiting)| waiting)
    }

    /// Whether the rate limit has its whole burst available now, as after a quiet spell;
    /// `None` without a rate limit. For a limit shared through Redis, this replica's local
    /// fallback's (the fleet's state lives in Redis).
    pub fn rate_limit_idle(&self) -> Option<bool> {
        self.0.rate_full_at().map(|full| full <= Instant::now())
    }

    /// For a rate limit shared through Redis (feature `redis`): the slots this replica
    /// granted by its local limit instead, while Redis was down or answered later than its
    /// timeout. A count that grows means the fleet's limit is not being kept. `None` for a
    /// local limit, or none.
    pub fn rate_limit_fallbacks(&self) -> Option<u64> {
        self.0.rate_fallbacks()
    }

    /// The requests the server's advertised quota lets this scope send before its reset: what
    /// the last answer said, less the requests sent since. `None` when the policy does not
    /// follow the server's quota (`follow = "off"`), before an answer advertised one, or once
    /// its reset has passed. See
    /// [`ServerQuotaConfig`](crate::overload::ServerQuotaConfig).
    pub fn server_quota_remaining(&self) -> Option<u64> {
        self.0
            .server_quota(Instant::now())
            .map(|quota| quota.remaining)
    }

    /// The time left to the reset of the server's advertised quota; `None` as for
    /// [`server_quota_remaining`](Self::server_quota_remaining).
    pub fn server_quota_reset(&self) -> Option<Duration> {
        self.0.server_quota(Instant::now()).map(|quota| quota.reset)
    }

    /// The adaptive concurrency limit now: the attempts it lets in flight at once, as found
    /// from the latency it observed so far (within its `min` and `max`); `None` without an
    /// adaptive limit. See
    /// [`AdaptiveConcurrencyConfig`](crate::overload::AdaptiveConcurrencyConfig).
    pub fn adaptive_limit(&self) -> Option<u32> {
        self.0.adaptive_counts().map(|(limit, _, _)| limit)
    }

    /// Attempts (retries and hedges included) holding a place under the adaptive limit;
    /// `None` without one. Above the limit for a while after the limit falls: those in
    /// flight finish, and no new one goes until they are under it.
    pub fn adaptive_in_flight(&self) -> Option<u32> {
        self.0.adaptive_counts().map(|(_, in_flight, _)| in_flight)
    }

    /// Attempts queueing for a place under the adaptive limit; `None` without one.
    pub fn adaptive_waiting(&self) -> Option<u32> {
        self.0.adaptive_counts().map(|(_, _, waiting)| waiting)
    }

    /// The probability that client-side throttling turns an attempt of `criticality` away
    /// now (0.0 to 1.0), from the requests and accepts of its window; `None` without
    /// throttling. See [`ThrottleConfig`](crate::overload::ThrottleConfig).
    pub fn throttle_probability(&self, criticality: Criticality) -> Option<f64> {
        self.0.throttle_probability(Instant::now(), criticality)
    }

    /// The requests client-side throttling counts in its window now: every attempt the
    /// application asked for, those it turned away included (a cancelled attempt is none);
    /// `None` without throttling.
    pub fn throttle_requests(&self) -> Option<u64> {
        self.0
            .throttle_counts(Instant::now())
            .map(|(requests, _)| requests)
    }

    /// The accepts in the throttle's window now: the attempts the dependency answered
    /// without rejecting them for overload (not a 429, 503 or 504, a refused connection or
    /// an attempt timeout); `None` without throttling.
    pub fn throttle_accepts(&self) -> Option<u64> {
        self.0
            .throttle_counts(Instant::now())
            .map(|(_, accepts)| accepts)
    }
}

impl std::fmt::Debug for OverloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverloadHandle")
            .field("key", &self.key())
            .field("budget_available", &self.budget_available())
            .field("held_for", &self.held_for())
            .field("bulkhead_in_flight", &self.bulkhead_in_flight())
            .field("bulkhead_waiting", &self.bulkhead_waiting())
            .field("rate_limit_idle", &self.rate_limit_idle())
            .field("rate_limit_fallbacks", &self.rate_limit_fallbacks())
            .field("server_quota_remaining", &self.server_quota_remaining())
            .field("server_quota_reset", &self.server_quota_reset())
            .field("adaptive_limit", &self.adaptive_limit())
            .field("adaptive_in_flight", &self.adaptive_in_flight())
            .field("adaptive_waiting", &self.adaptive_waiting())
            .field(
                "throttle_probability",
                &self.throttle_probability(Criticality::Default),
            )
            .field("throttle_requests", &self.throttle_requests())
            .field("throttle_accepts", &self.throttle_accepts())
            .finish()
    }
}
