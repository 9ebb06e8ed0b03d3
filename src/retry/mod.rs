//! Retrying transient failures: jittered exponential backoff, `Retry-After`, idempotency rules.
//!
//! ## What is retried
//!
//! Only outcomes the [classifier](crate::classify) calls [transient](crate::Class::Transient):
//! a permanent one (404, 400, ...) returns at once. Even then a request is sent again only when
//! that is safe:
//!
//! - GET, HEAD, OPTIONS, TRACE, PUT and DELETE are idempotent: always;
//! - POST, PATCH and other methods only when the attempt [never reached the
//!   server](crate::Delivery::NotSent), or the request carries an `Idempotency-Key` (sent
//!   unchanged on every attempt), or the policy opts in with
//!   [`retry_non_idempotent`](RetryPolicyBuilder::retry_non_idempotent).
//!   [`idempotency_key`](RetryPolicyBuilder::idempotency_key) adds a random key
//!   to such requests, for servers that honour it.
//!
//! ## Streams the server never processed
//!
//! An HTTP/2 server turning its connections over turns streams away: it refuses one
//! (`REFUSED_STREAM`: never processed, RFC 9113 §8.7), or shuts the connection down
//! gracefully (`GOAWAY` with `NO_ERROR`, as nginx does after `keepalive_requests` and on a
//! reload), which fails the streams above the last one it kept. Such a request is sent again,
//! on another connection after a `GOAWAY`, spending none of the policy's attempts and no
//! backoff (gRPC's "transparent retry"), up to [`MAX_RESENDS`] (32) times per call and never
//! past its deadline; the first [`FREE_RESENDS`] (3) spend no [retry budget](BudgetConfig)
//! either, each later one spends from it as a retry does: the first at once, the second and later after a
//! random pause of up to [`RESEND_PAUSE`] (2 ms); past that, such a failure is an attempt as
//! any other. The bound is large because with more calls at once than the server serves per
//! connection, the same calls meet one turnover after another (up to 16 in a row against
//! nginx): the `GOAWAY` follows the answers the server sent before it, so their callers, woken
//! first, most likely reach the next connection first, and a turned-away stream tends to be
//! among the last sent there again. The breaker does not count them. A refused stream is resent whatever the method. After a
//! `GOAWAY`, only a request the policy [may repeat](RetryPolicy::may_repeat) is (an idempotent
//! method, an `Idempotency-Key`, or `retry_non_idempotent`): hyper hands the connection's
//! `GOAWAY` also to a request whose stream it opened just before it saw the frame, which the
//! server may have kept and processed, so such an attempt is
//! [maybe sent](crate::Delivery::MaybeSent). Each resend must still fit the deadline, get past
//! the endpoint's guards (a hold, the rate limit, the breaker) as any attempt, and have a body
//! that can be sent again (none, bytes, a stream kept whole, or
//! [`body_with`](crate::RequestBuilder::body_with)). The history shows each one with
//! [`resent`](crate::Attempt::resent) set. Any other failure (a stream at or below the
//! `GOAWAY`'s last stream id that the connection then lost, any other reset) is never resent
//! this way.
//!
//! ## How long to wait
//!
//! A failure status with a valid `Retry-After` waits what the server asked, up to
//! [`retry_after_cap`](RetryPolicyBuilder::retry_after_cap) (20 s by default; peers have obeyed a
//! `Retry-After` of 484,289 hours). Asking for more, or for a wait that would end past the total
//! deadline, stops at once: the error's [`retry_after`](crate::Error::retry_after) tells the
//! caller what was asked, so it can reschedule. A malformed `Retry-After` is ignored. Otherwise
//! the [`Backoff`] schedule decides. No sleep ever crosses the total deadline: if the next one
//! would, the call ends at once with [`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded)
//! and the history so far.
//!
//! `Retry-After` values: delta-seconds (`120`) or an HTTP date; a date in the past means 0; a
//! number too large for 64 bits counts as "forever" (so it is above any cap); anything else
//! (`soon`, `-5`, `1.5`, 10 KB of junk) is ignored.
//!
//! ## Bodies
//!
//! Each retry sends a copy made with `reqwest::Request::try_clone` before the first attempt
//! (bytes bodies are reference-counted, so this copies headers and URL, not the body). A streaming
//! body cannot be copied: it is kept as the first attempt sends it, up to
//! [`replay_buffer`](RetryPolicyBuilder::replay_buffer) bytes (64 KiB by default), and the
//! retries send what was kept. A longer stream, or one not sent to its end, gets its one
//! attempt, and if that fails transiently the error is
//! [`BodyNotReplayable`](crate::ErrorKind::BodyNotReplayable), keeping the attempt's answer
//! (status, headers, body), with the attempt's own error as its source. The client can also make the body afresh for each attempt
//! ([`RequestBuilder::body_with`](crate::RequestBuilder::body_with)), for streams of any size.
//!
//! ## What comes back
//!
//! Success, or the last failure as an [`Error`](crate::Error) with every attempt in
//! [`attempts`](crate::Error::attempts): never `Ok(503)`. A final failure status keeps its
//! response: [`Error::read_body`](crate::Error::read_body) reads a bounded part for diagnostics.
//!
//! A success that needed retries carries its history in the response's extensions, as
//! [`RetryHistory`]:
//!
//! ```no_run
//! # async fn run(client: resilient_http::Client) -> Result<(), resilient_http::Error> {
//! use resilient_http::retry::RetryHistory;
//!
//! let response = client.get("http://127.0.0.1:8080/flaky").send().await?;
//! if let Some(RetryHistory(attempts)) = response.extensions().get::<RetryHistory>() {
//!     for attempt in attempts {
//!         println!("{attempt}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Dropping the future stops everything at once, during an attempt or a sleep: nothing is
//! spawned.
//!
//! ## Placement
//!
//! Inside the [total deadline](crate::timeout::TotalDeadline), which it reads from the request's
//! timeout, and outside the [attempt timeout](crate::timeout::AttemptTimeout): each attempt gets
//! the smaller of the attempt timeout and what is left of the deadline.

mod backoff;
mod budget;
pub(crate) mod delays;
mod future;
mod layer;
mod policy;
pub(crate) mod replay;
mod service;

pub use self::backoff::{Backoff, Jitter};
pub use budget::BudgetConfig;
pub(crate) use budget::Claim as BudgetClaim;
#[doc(hidden)]
pub use budget::{__bench_budget, BenchBudget};
#[allow(unused_imports)] // wired by the lead in the next step
pub(crate) use budget::{RetryBudget, SCALE as BUDGET_SCALE};
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use policy::{IDEMPOTENCY_KEY, RetryPolicy, RetryPolicyBuilder, is_idempotent};
pub use service::Retry;

pub use crate::error::RetryHistory;

/// How many times one call sends its request again because an HTTP/2 server turned its
/// stream away (`REFUSED_STREAM`, or a graceful `GOAWAY`), beyond the policy's attempts, and
/// never past the call's deadline: see [the module docs](self#streams-the-server-never-processed).
///
/// Large because a server that allows fewer requests per connection than a client sends at
/// once (nginx's `keepalive_requests 50`, 64 calls at once) turns the same calls away at
/// turnover after turnover: the callers whose requests succeeded reach the next connection
/// first, so a turned-away stream tends to be among the last sent there again. Against nginx,
/// 6,000 GETs at 64 at once across 5 reloads: up to 16 resends in one call; with a bound of 3,
/// 24-38 calls failed.
pub const MAX_RESENDS: u32 = 32;

/// How many of a call's resends (see [`MAX_RESENDS`]) are free; each later one spends from the
/// endpoint's [retry budget](BudgetConfig) as a retry does, and is not made when the budget is
/// spent. A server that turns every stream away (an overloaded one shedding load with
/// `REFUSED_STREAM`) then gets at most the budget's share more requests across all calls, not
/// [`MAX_RESENDS`] more per call; a connection's turnover, which turns a few calls away a few
/// times, never needs the budget.
pub const FREE_RESENDS: u32 = 3;

/// The longest random pause before a call's second and later resends (the first goes at
/// once): see [`MAX_RESENDS`].
pub const RESEND_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
