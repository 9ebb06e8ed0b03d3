//! Overload protection: retry budget, `Retry-After` holds, rate limit, bulkhead, the quota the
//! server advertises, adaptive concurrency, client-side throttling with request criticality,
//! and hedged requests.
//!
//! Retries multiply load at the worst moment: with 3 attempts, an outage turns 1,000 requests into
//! 3,000. Each guard below is set per policy and keeps its state per [endpoint
//! key](super::policies) (scheme, host and port) under each rule, or, by its
//! [scope](super::policies#endpoints-and-scopes), one state per rule or one shared by every rule
//! that names it (one quota in one bucket across rules, whatever the host). Each is lock-free when a call goes
//! straight through, and cancellation-safe: a dropped call gives back every place and token.
//! A policy keeps the guards of `max_breakers` endpoints (1,024), in one map with their breakers
//! when both are per endpoint, dropping idle ones first; guards that still limit a call (a
//! spent or partly spent rate limit, a drawn-down budget, a hold, calls in flight or queued)
//! or that a call in flight holds are never dropped: the map grows past its bound instead,
//! with a WARN once and the `resilient_http.endpoints.over_bound` counter.
//! [`Client::overload(policy, key)`](crate::Client::overload) reads a state's guards, by its key:
//! the endpoint key, the rule's name, or `name:<name>`.
//!
//! - **Retry budget** (on by default, the Finagle/Envoy model): retries may add at most `ratio`
//!   (0.2) of the first attempts plus `min_per_second` (10), over a sliding `window` (10 s). When
//!   it is spent, a transient failure comes back at once as
//!   [`ErrorKind::BudgetExhausted`](crate::ErrorKind::BudgetExhausted), keeping the last attempt's
//!   status, headers and cause. [`retry_budget_enabled(false)`](crate::policy::EndpointPolicy::retry_budget_enabled)
//!   or `[x.retry_budget] enabled = false` turns it off; [`BudgetConfig`](crate::retry::BudgetConfig)
//!   sets it.
//! - **`Retry-After` holds** (on by default): a 429 or 503 with a `Retry-After` within the cap
//!   holds its endpoint until then. Later calls do not go out blindly: they wait if the hold ends
//!   before their deadline, else fail at once with
//!   [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited), `retry_after()` = what is left of
//!   the hold. When it ends, the waiting calls (and the retries of calls answered with it) do not
//!   all go at once: the first goes at the end, the others at random within a quarter of the hold
//!   after it (at most 1 s; within half of what their deadline leaves after the end).
//!   [`hold_on_retry_after(false)`](crate::policy::EndpointPolicy::hold_on_retry_after) turns it
//!   off.
//! - **Rate limit** (off unless set; GCRA): `rate` requests per `per`, bursts of `burst`. A
//!   request over it waits for its slot if that fits its deadline, else fails at once with
//!   `RateLimited` and `retry_after()` = the time to the next free slot. A request told to wait
//!   reserves its slot: it goes at that instant without asking again (first come, first served),
//!   and a call dropped before then gives the slot back (if no later slot was handed out; else the
//!   slot goes unused). A limit shared through Redis does not reserve: its waiters ask again.
//!   Retries take slots too.
//! - **Bulkhead** (off unless set): at most `max_in_flight` calls at once; a call over it queues up
//!   to `queue_timeout` (bounded by its deadline), then fails with
//!   [`ErrorKind::BulkheadFull`](crate::ErrorKind::BulkheadFull). The queue is first come, first
//!   served: a freed place goes to the longest waiter, never to a new call while anyone waits.
//! - **The server's quota** (followed by default): what the server says is left of its quota
//!   holds the scope when it runs out, before the server has to say 429; see
//!   [below](#following-the-servers-quota).
//! - **Adaptive concurrency** (off unless set): a limit on the attempts in flight that finds
//!   the dependency's capacity from the latency it observes, instead of a number you guess;
//!   see [below](#adaptive-concurrency).
//! - **Client-side throttling** (off unless set): when the dependency rejects much of what it
//!   gets, the client turns some attempts away itself, sheddable work first; see
//!   [below](#client-side-throttling-and-criticality).
//!
//! Each attempt meets them in one order, on every path (the client, `ResilientMiddleware`,
//! `ResilientLayer`): the bulkhead (once per call), then throttling (once per attempt), then
//! a place under the adaptive limit, then a hold, the server's quota and the rate limit, then
//! out. An attempt turned away by one takes nothing from those after it (and gives back its
//! place, if a later one turns it away).
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! # fn main() -> Result<(), resilient_http::Error> {
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
//! # Ok(())
//! # }
//! ```
//!
//! The same in a policy file:
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let client = resilient_http::Client::builder().config_toml(r#"
//! [[endpoint]]
//! name = "search"
//! match = { host = "search.internal" }
//! [endpoint.rate_limit]
//! rate = 100
//! per = "1s"
//! burst = 20
//! [endpoint.bulkhead]
//! max_in_flight = 50
//! queue_timeout = "100ms"
//! # "#).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! # Following the server's quota
//!
//! Most APIs say on every answer how much of their quota is left: GitHub sends
//! `x-ratelimit-remaining` and `x-ratelimit-reset` (epoch seconds), many gateways
//! `X-RateLimit-*` with a reset in seconds, and the IETF `RateLimit` / `RateLimit-Policy` fields
//! (draft-ietf-httpapi-ratelimit-headers) say it in structured fields. Each policy reads them
//! ([`ServerQuotaConfig`](crate::overload::ServerQuotaConfig), file `[x.server_quota]`) and
//! counts every request it sends against the remaining count until the next answer corrects
//! it, so 8 calls in flight do not overshoot a quota with 2 left:
//!
//! - `follow = "hold"` (the default): when the count reaches 0, the scope is held until the
//!   reset, as by a `Retry-After`: a call waits if the reset comes within its deadline and the
//!   policy's `retry_after_cap`, else fails at once with
//!   [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited), its message naming the server's
//!   quota and `retry_after()` the time to the reset.
//! - `follow = "pace"`: the remaining count is spread over the time to the reset (a rate the
//!   server set), so a burst never runs the quota dry; a call waits for its turn, or fails
//!   with `RateLimited` when that is past its deadline.
//! - `follow = "off"`: nothing is read or kept.
//!
//! `headers = "auto"` (the default) reads the IETF fields, then `X-RateLimit-Remaining` /
//! `-Reset` / `-Limit`, then the earlier drafts' `RateLimit-Remaining` / `-Reset` / `-Limit`. A
//! reset written as a bare number is read by its magnitude: below 1e9 it is seconds from now,
//! from 1e9 seconds since the Unix epoch, from 1e12 milliseconds since the epoch. When an answer
//! advertises several quotas (named IETF policies, partition keys), the tightest wins. A
//! malformed field is ignored with one DEBUG event, never an error. An API that names its
//! fields its own way says so in a table:
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let client = resilient_http::Client::builder().config_toml(r#"
//! [default.server_quota]       # GitHub, gateways, the IETF fields: the defaults
//! follow = "hold"              # "hold" | "pace" | "off"
//! headers = "auto"
//! scope = "host"               # "host" | "rule" | "name:<name>"
//!
//! [[endpoint]]
//! name = "openai"
//! match = { host = "api.openai.com" }
//! [endpoint.server_quota]
//! follow = "pace"
//! headers = { remaining = "x-ratelimit-remaining-requests", reset = "x-ratelimit-reset-requests", reset_format = "duration", limit = "x-ratelimit-limit-requests" }
//!
//! [[endpoint]]
//! name = "anthropic"
//! match = { host = "api.anthropic.com" }
//! [endpoint.server_quota.headers]
//! remaining = "anthropic-ratelimit-requests-remaining"
//! reset = "anthropic-ratelimit-requests-reset"
//! reset_format = "rfc3339"     # "seconds" | "epoch" | "duration" (6m0s) | "rfc3339"
//! # "#).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! In code, [`EndpointPolicy::server_quota`](crate::policy::EndpointPolicy::server_quota) with
//! [`QuotaHeaders::named`](crate::overload::QuotaHeaders::named); a name that is not a header
//! name is refused by `build`, never a panic:
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::overload::{QuotaHeaders, ResetFormat, ServerQuotaConfig};
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! let openai = ServerQuotaConfig::pace().headers(
//!     QuotaHeaders::named("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
//!         .reset_format(ResetFormat::Duration),
//! );
//! let client = Client::builder()
//!     .endpoint("openai", Matcher::new().host("api.openai.com")?, EndpointPolicy::new().server_quota(openai))
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! The quota is kept where the policy's `Retry-After` holds are (its `hold_scope`: per
//! endpoint key under each rule by default), since both are what a server says of its limits;
//! a server that counts one quota for several hosts or rules (one API key) wants
//! `scope = "name:<name>"` in every rule that calls it, with the same `follow` and `headers`
//! (else `build` fails, naming both rules). A scope is one view: the requests of several
//! partitions under one scope all follow the tightest.
//!
//! How requests in flight are counted: each attempt and hedge carries a ticket to its answer,
//! and an answer's remaining count has the scope's other requests in flight taken off it
//! (they may reach the server in any order), so 8 calls in flight never overshoot a quota
//! with 2 left; the next answer corrects the count. The calls that waited for a reset go
//! first, spread over a quarter of the wait (at most 1 s), ahead of calls that come after
//! it. With the window's quota known (`q`, `X-RateLimit-Limit`), the window refills at its
//! reset on its own. Hedges are not sent while the quota is spent. [`OverloadHandle::server_quota_remaining`](crate::overload::OverloadHandle::server_quota_remaining)
//! and [`server_quota_reset`](crate::overload::OverloadHandle::server_quota_reset) read what a
//! scope knows now, and the [probe](super::probe)'s lines carry them (`server_quota_remaining`,
//! `server_quota_reset_ms`). In [observability](super::observability)'s events and
//! counters: `server quota learned` (DEBUG, once per window), `endpoint held` with reason
//! `server_quota` (INFO), and `request delayed` / `request rejected: rate limited` with
//! that reason.
//!
//! # Adaptive concurrency
//!
//! A bulkhead's `max_in_flight` and a rate limit are numbers you must guess, and the right one
//! moves as the dependency scales and its load changes: set too high, work queues in the
//! dependency and stretches the tail; too low, capacity is wasted. An adaptive limit starts
//! from `initial` and moves between `min` and `max` with the latency each attempt sees (the
//! queueing a dependency does when it is past its capacity shows as latency before it shows as
//! errors), and with the answers that say it is overloaded (a 429, 503 or 504, a refused
//! connection, an attempt timeout).
//! [`AdaptiveConcurrencyConfig`](crate::overload::AdaptiveConcurrencyConfig) chooses how
//! (`algorithm`: Vegas, Gradient2 or AIMD).
//!
//! It limits **attempts in flight** per scope (the endpoint key by default; `scope` as for the
//! other guards): retries and hedges take places too, and an attempt holds its place from
//! when it gets it until it ends (through a hold's or the rate limit's wait that comes
//! after, and its hook, if any; a call waiting out its backoff holds none, unlike a
//! bulkhead's place, which is the call's). An attempt over the limit waits for a place, first come, first
//! served, up to `queue_timeout` and the call's deadline, then fails with
//! [`ErrorKind::BulkheadFull`](crate::ErrorKind::BulkheadFull), its message naming the
//! adaptive limit and the limit it has found. A hedge goes only if a place is free now (it
//! never waits). A cancelled attempt (a dropped call, a hedge race's loser) gives its place
//! back and teaches the limit nothing. A bulkhead and an adaptive limit go together: the
//! bulkhead bounds what this client takes on, the adaptive limit what it sends.
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::overload::AdaptiveConcurrencyConfig;
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! # fn main() -> Result<(), resilient_http::Error> {
//! let client = Client::builder()
//!     .endpoint(
//!         "inventory",
//!         Matcher::new().host("inventory.internal")?,
//!         EndpointPolicy::new().adaptive_concurrency(
//!             AdaptiveConcurrencyConfig::default()
//!                 .initial(20)
//!                 .min(2)
//!                 .max(200)
//!                 .queue_timeout(Duration::from_millis(500)),
//!         ),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! The same in a policy file (`algorithm = "vegas" | "gradient2" | "aimd"`; each
//! algorithm's own knobs are on
//! [`AdaptiveConcurrencyConfig`](crate::overload::AdaptiveConcurrencyConfig)):
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let client = resilient_http::Client::builder().config_toml(r#"
//! [[endpoint]]
//! name = "inventory"
//! match = { host = "inventory.internal" }
//! [endpoint.adaptive_concurrency]
//! algorithm = "vegas"
//! initial = 20
//! min = 2
//! max = 200
//! queue_timeout = "500ms"
//! scope = "host"               # "host" | "rule" | "name:<name>"
//! # "#).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! What to watch: [`OverloadHandle::adaptive_limit`](crate::overload::OverloadHandle::adaptive_limit)
//! (the limit found so far), [`adaptive_in_flight`](crate::overload::OverloadHandle::adaptive_in_flight)
//! and [`adaptive_waiting`](crate::overload::OverloadHandle::adaptive_waiting); the
//! [probe](super::probe)'s `adaptive_limit` and `adaptive_in_flight`; in
//! [observability](super::observability), an event each time the limit moves by more than
//! 10 %, and the waits and rejections under the guard `adaptive_concurrency`. A limit that
//! settles well under `max` while latency stays flat is the dependency's capacity; one pinned
//! at `min` with `bulkhead_full` errors says the dependency is past its capacity at any load
//! (look at it, not at the limit). `cargo run --example demo` shows a limit settling on a
//! dependency whose latency grows with its load.
//!
//! # Client-side throttling and criticality
//!
//! When a dependency rejects most of what it gets, every rejection still costs it work.
//! Client-side adaptive throttling, from Google's SRE book ("Handling Overload"), has each
//! client count, per scope and over a sliding `window` (2 minutes by default), the
//! *requests* the application asked for (those it throttled itself included) and the
//! *accepts* (the attempts the dependency answered without rejecting them for overload), and
//! turn an attempt away itself with probability
//! `max(0, (requests − K × accepts) / (requests + 1))`. In steady state the dependency sees
//! about K times what it accepts (K = 2 by default): enough to notice when it recovers, far
//! less than everything. A 429, 503 or 504, a refused connection and an attempt timeout are
//! rejections; any other answer (a 404, a 500) is an accept; a cancelled attempt, one cut
//! short by the caller's deadline, a hook's failure or a reset connection count nothing.
//!
//! A throttled attempt is not sent: the call fails at once with
//! [`ErrorKind::Throttled`](crate::ErrorKind::Throttled) (`throttled` in the probe, the
//! metrics and [`GiveUp::Throttled`](crate::GiveUp::Throttled)), transient, never sent, its
//! message giving the probability it was throttled with.
//!
//! Each request has a [`Criticality`](crate::overload::Criticality): `critical`, `default` or
//! `sheddable`, its policy's (`criticality = ".."`,
//! [`EndpointPolicy::criticality`](crate::policy::EndpointPolicy::criticality)) unless the
//! request sets its own (`.criticality(..)` on the client's request builder; through
//! `ResilientMiddleware`, a `Criticality` in the request's extensions; a user's tower stack
//! of `ResilientLayer` uses the policy's, as a `reqwest::Request` carries no extensions).
//! Throttling sheds sheddable work first and critical work last, and the retry budget keeps
//! its last retries for critical requests.
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::overload::{Criticality, ThrottleConfig};
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! # fn main() -> Result<(), resilient_http::Error> {
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().throttle(ThrottleConfig::new()))
//!     .endpoint(
//!         "recommendations",
//!         Matcher::new().path("/recommendations*"),
//!         EndpointPolicy::new().criticality(Criticality::Sheddable),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! The same in a policy file:
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let client = resilient_http::Client::builder().config_toml(r#"
//! [default.throttle]
//! k = 2.0
//! window = "2m"
//! scope = "host"               # "host" | "rule" | "name:<name>"
//!
//! [[endpoint]]
//! name = "recommendations"
//! match = { path = "/recommendations*" }
//! criticality = "sheddable"    # "critical" | "default" | "sheddable"
//! # "#).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! What to watch: [`OverloadHandle::throttle_probability`](crate::overload::OverloadHandle::throttle_probability)
//! for each criticality, and the window's counts
//! ([`throttle_requests`](crate::overload::OverloadHandle::throttle_requests),
//! [`throttle_accepts`](crate::overload::OverloadHandle::throttle_accepts)): requests over
//! accepts near K means the dependency is rejecting and the client is holding it to K; the
//! [probe](super::probe)'s `throttle_probability` and `criticality`, and its `throttled`
//! lines; criticality in spans and as a metric label ([observability](super::observability)).
//! `cargo run --example demo` shows a dependency that rejects most of what it gets, with and
//! without throttling.
//!
//! # Hedged requests
//!
//! Off unless set: when an attempt has not answered after `after`, send another, up to `max` (at
//! most 3) per call; the first answer that is not a transient failure wins and the others are
//! cancelled (their connections dropped). Only requests that may be sent twice are hedged:
//! idempotent methods, or a request with an `Idempotency-Key` (never a bare POST, whatever
//! `retry_non_idempotent` says). A hedge spends the retry budget and takes a rate-limit slot, and
//! is not sent (it never waits) while the endpoint is held, the budget is spent, the rate limit
//! has no slot or the breaker would refuse it; the breaker admits and counts each one that ends (a
//! cancelled loser is neither success nor failure). Hedges are in the history
//! ([`Attempt::hedge`](crate::Attempt::hedge); a loser's outcome is
//! [`AttemptOutcome::Cancelled`](crate::AttemptOutcome::Cancelled)), in spans (`hedge`) and in the
//! `resilient_http.hedges` counter, and use none of the policy's attempts. Every path hedges, with
//! the same rules: the client, `ResilientMiddleware`, `ResilientLayer`, and a
//! [`RetryLayer`](crate::retry::RetryLayer) of your own
//! ([`RetryPolicyBuilder::hedge`](crate::retry::RetryPolicyBuilder::hedge)). Details: [`hedge`](crate::hedge).
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::hedge::HedgeConfig;
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::policy::EndpointPolicy;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! // The first answer is slow; the hedge sent after 50 ms answers at once.
//! server.script("/search", [Reply::ok("slow").delay(Duration::from_secs(2)), Reply::ok("fast")]);
//!
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().hedge(HedgeConfig::new(Duration::from_millis(50), 1)))
//!     .build()?;
//! assert_eq!(client.get(server.url("/search")).text().await?, "fast");
//! assert_eq!(server.hits("/search"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! Limits shared by many replicas of a service: [`fleet`](super::fleet).
