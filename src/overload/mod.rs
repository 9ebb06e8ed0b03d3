//! May this call go out now, per endpoint key: `Retry-After` holds, rate limit, bulkhead, the
//! quota the server advertises, an adaptive concurrency limit, client-side throttling.
//! (Per endpoint key under each rule by default; each guard can be scoped to the rule, or to
//! a name several rules share: see [`Scope`](crate::policy::Scope).)
//!
//! Each guard is a small self-contained primitive, lock-free on the success path and
//! cancellation-safe (a dropped call leaves no trace: it gives back every permit, a denied
//! rate-limit request takes no slot, and one dropped while it waits for the slot it reserved
//! gives it back: see [`RateLimitConfig`]). Time comes from tokio, so tests pause it. The
//! client, `ResilientMiddleware` and `ResilientLayer` ask them the same questions: may a call
//! start (the bulkhead), may an attempt go out (throttling, a hold, the server's quota, the
//! rate limit, then a place under the adaptive limit), does a response hold the endpoint, and
//! how did the attempt end (an accept or a rejection for throttling, a latency sample for the
//! adaptive limit; a cancelled attempt is neither).
//!
//! - `Retry-After` holds: on by default
//!   ([`hold_on_retry_after`](crate::policy::EndpointPolicy::hold_on_retry_after)).
//! - The client-side rate limit (GCRA, one atomic word): [`RateLimitConfig`].
//! - The bulkhead, at most `max_in_flight` calls at once with a bounded queue:
//!   [`BulkheadConfig`].
//! - The quota the server advertises (IETF `RateLimit` fields, `X-RateLimit-*`, or an API's own
//!   names), held or paced before the server has to answer 429: on by default,
//!   [`ServerQuotaConfig`], read from [`QuotaHeaders`].
//! - An adaptive limit on the attempts in flight, found from the latency the dependency
//!   shows (Vegas, Gradient2 or AIMD), with a first-come-first-served queue:
//!   [`AdaptiveConcurrencyConfig`], [`LimitAlgorithm`].
//! - Client-side adaptive throttling (Google SRE book): attempts turned away locally while
//!   the dependency rejects more than it accepts, sheddable work first: [`ThrottleConfig`],
//!   [`Criticality`].
//! - What an endpoint's guards hold now: [`OverloadHandle`], from
//!   [`Client::overload`](crate::Client::overload).
//!
//! Holds and the rate limit (and the retry budget) are kept in this process, or shared by the
//! replicas through Redis (feature `redis`; see the guide's [fleet](crate::guide::fleet)
//! page), behind the same calls. The guide's
//! [overload](crate::guide::overload) page shows them at work.
//!
//! # When a hold ends
//!
//! The calls that waited on a `Retry-After` hold do not all go at its end, as a server that
//! just asked for a pause would not want: the first to wait goes at the end, and each other
//! at a random instant within the hold's release window after it, a quarter of the hold and
//! at most 1 s (2 s held: spread over 500 ms; 20 s: over 1 s). A quarter adds little next to
//! the pause the server asked for, and a short hold gets a short spread; the cap bounds what
//! a long hold adds while still turning a crowd into a ramp. A call's deadline bounds its
//! share: it goes within half the time between the hold's end and its deadline, keeping the
//! other half for its attempt, so a call with little room goes about at the end rather than
//! fail. A call that finds the hold over (a new call, or the retry of the call that was
//! answered with the `Retry-After`) goes at once. For a hold learned from the fleet
//! (feature `redis`), the window is measured on what was left of it when learned.
//!
//! The retry budget, the other half of overload protection, is the retry's to ask:
//! [`BudgetConfig`](crate::retry::BudgetConfig).
//!
//! Configure them per policy ([`EndpointPolicy`](crate::policy::EndpointPolicy)'s
//! `retry_budget`, `hold_on_retry_after`, `rate_limit`, `bulkhead`, `server_quota`,
//! `adaptive_concurrency`, `throttle`, `criticality`, or the file's `[….retry_budget]`,
//! `hold_on_retry_after`, `[….rate_limit]`, `[….bulkhead]`, `[….server_quota]`,
//! `[….adaptive_concurrency]`, `[….throttle]`, `criticality`):
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! let client = Client::builder()
//!     .endpoint(
//!         "search",
//!         Matcher::new().host("search.internal")?,
//!         EndpointPolicy::new()
//!             .rate_limit(RateLimitConfig::new(100, Duration::from_secs(1)).burst(20))
//!             .bulkhead(BulkheadConfig::new(50, Duration::from_millis(100))),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```

pub(crate) mod adaptive;
pub(crate) mod bulkhead;
mod endpoint;
mod guards;
mod handle;
pub(crate) mod hold;
pub(crate) mod pass;
pub(crate) mod rate;
pub(crate) mod server_quota;
mod shared;
pub(crate) mod throttle;

pub use adaptive::{AdaptiveConcurrencyConfig, LimitAlgorithm};
pub use bulkhead::BulkheadConfig;
pub(crate) use endpoint::Endpoint;
pub(crate) use guards::{
    Admission, Entry, FixedParts, GuardRegistry, GuardScopes, Guards, GuardsConfig, Part, Placing,
    Reservation, adaptive_part, budget_part, bulkhead_part, hold_part, quota_part, rate_part,
    throttle_part,
};
pub use handle::OverloadHandle;
pub use rate::RateLimitConfig;
pub use server_quota::{Follow, QuotaHeaders, ResetFormat, ServerQuotaConfig};
pub(crate) use shared::{Budget, Fleet, FleetKeys, Held, Quotas, Rate};
pub use throttle::{Criticality, ThrottleConfig};
