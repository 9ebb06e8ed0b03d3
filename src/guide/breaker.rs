//! Circuit breakers: when an endpoint keeps failing, calls to it fail at once for a while instead
//! of piling onto a dependency that is down.
//!
//! Each policy keeps one breaker per [endpoint key](super::policies) (scheme, host and port), or,
//! by its [scope](super::policies#endpoints-and-scopes), one for everything the rule matches
//! ([`breaker_scope(Scope::Rule)`](crate::policy::EndpointPolicy::breaker_scope), the file's
//! `[….breaker] scope = "rule"`) or one shared by every rule that names it
//! (`scope = "name:<name>"`). Defaults: opens at ≥ 50 % failures of the last 100 calls (once
//! there are ≥ 20), open 5 s, doubling to 60 s while probes fail, 1 probe, at most 1,024
//! endpoints per policy.
//!
//! ```
//! use resilient_http::policy::EndpointPolicy;
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::{Client, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/down", [Reply::status(503)]);
//!
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().max_attempts(1).breaker_min_calls(4))
//!     .build()?;
//! for _ in 0..4 {
//!     let _ = client.get(server.url("/down")).send().await;
//! }
//! let err = client.get(server.url("/down")).send().await.err().ok_or("open")?;
//! assert_eq!(err.kind(), ErrorKind::CircuitOpen);
//! assert!(err.retry_after().is_some(), "when the next probe may go");
//! assert_eq!(server.hits("/down"), 4, "the fifth call was not sent");
//! # Ok(())
//! # }
//! ```
//!
//! - Failures are the classifier's transient outcomes (5xx, timeouts, connect errors); permanent
//!   ones (404, 400) count as successes: they are the caller's problem. A 429 counts as neither (a
//!   rate limiter saying "slow down" is no endpoint that is down; the call still backs off, and a
//!   `Retry-After` holds the endpoint) unless the policy opts in:
//!   [`breaker_count_429(true)`](crate::policy::EndpointPolicy::breaker_count_429),
//!   [`BreakerConfigBuilder::count_429(true)`](crate::breaker::BreakerConfigBuilder::count_429), or
//!   `count_429 = true` in `[….breaker]`.
//! - Open: calls fail at once with [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen),
//!   naming the breaker's key; [`Error::retry_after`](crate::Error::retry_after) says when the next
//!   probe may go. Nothing touches the network. While the probes are out (half-open) and when
//!   forced open, `retry_after()` is `None`: when the probe ends is not known (within its attempt
//!   timeout), so no time is promised; back off as for any transient error.
//! - Half-open: `half_open_probes` trial calls (default 1); all succeed → closed, one fails → open
//!   for twice as long (up to 60 s). A probe whose caller gives up (its future is dropped) gives
//!   its place back, so the breaker cannot get stuck half-open.
//! - Windows: the last N calls to the endpoint, from whichever threads (default 100), or the last
//!   T ([`Window::Time`](crate::breaker::Window::Time), in buckets); an optional slow-call rate
//!   ([`slow_calls`](crate::breaker::BreakerConfigBuilder::slow_calls)). A call window keeps its
//!   calls in buckets of N/10 that leave whole: it holds between N − s × (N/10 − 1) and N of the
//!   most recent calls, `s` being the threads with a bucket still filling (windows up to 19 calls
//!   are exact). Admitting and recording a call takes no lock: one atomic load, and two loads and a
//!   store into a per-thread stripe; one shared counter is bumped per bucket.
//! - [`Client::breakers`](crate::Client::breakers) reads and steers them: `state()`, `counts()`,
//!   `force_open()`, `force_closed()`, `reset()`. Every state change is a `tracing` event and can
//!   call [`on_state_change`](crate::breaker::BreakerConfigBuilder::on_state_change). A panic in
//!   `on_state_change` never reaches a call: the state changes all the same, and the panic is
//!   logged at ERROR, once per breaker.
//! - A policy keeps the breakers of [`max_breakers`](crate::breaker::BreakerConfigBuilder::max_breakers)
//!   endpoints, dropping idle closed ones first; an open breaker, or one with a call in flight,
//!   is never dropped (the call's outcome lands in the breaker the registry shows). Past the
//!   bound (calls spread over more endpoints than that), a new endpoint costs O(1)
//!   amortised and no system call: idle ones are dropped in batches of a quarter of it.
//!
//! The whole breaker as one tower layer, without the client: [`CircuitBreakerLayer`](crate::breaker::CircuitBreakerLayer).
