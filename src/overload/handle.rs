//! A read-only view of one endpoint's overload guards, for tests, dashboards and health
//! checks: see [`Client::overload`](crate::Client::overload).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Guards;

/// What one endpoint key's overload guards hold now, under one policy: the retry budget,
/// the `Retry-After` hold, the rate limit, the bulkhead and the server's advertised quota.
/// Each reading is `None` when the policy does not turn that guard on. Reading changes
/// nothing.
///
/// Got from [`Client::overload`](crate::Client::overload). It shares the guards with the
/// client, so each reading is the state at the time of the call; cheap to clone. (A policy
/// keeps the guards of as many endpoints as it keeps breakers: a handle kept while its idle
/// endpoint is dropped for others reads guards no call uses any more.)
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
            .finish()
    }
}
