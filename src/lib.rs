//! # resilient-http
//!
//! Outbound HTTP calls that survive the real world. A `reqwest::Client` wrapped in a stack of
//! plain [`tower::Layer`]s that sort every failure into *transient* or *permanent*, bound every
//! attempt in time (the response body included) and return one typed [`Error`] that carries what
//! happened on every attempt.
//!
//! ```no_run
//! # async fn run() -> Result<(), resilient_http::Error> {
//! use std::time::Duration;
//! use resilient_http::{Client, ErrorKind};
//!
//! let client = Client::builder()
//!     .attempt_timeout(Duration::from_secs(2))
//!     .total_deadline(Duration::from_secs(5))
//!     .build()?;
//!
//! match client.get("http://127.0.0.1:8080/orders/7").send().await {
//!     Ok(response) => println!("{}", response.text().await?),
//!     Err(err) if err.kind() == ErrorKind::Status && !err.is_transient() => {
//!         println!("our request is wrong: {err}")
//!     }
//!     Err(err) => {
//!         for attempt in err.attempts() {
//!             println!("{attempt}");
//!         }
//!         return Err(err);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## One driver, every path
//!
//! Every call runs the same state machine, `Call` in `src/call/`: the endpoint's guards
//! (bulkhead, `Retry-After` hold, rate limit), the hook, the breaker, the send, the
//! classification, the race of hedges, the decision to retry, the wait, in that order. Only
//! what sends each attempt differs from path to path:
//!
//! | path | what sends an attempt |
//! |---|---|
//! | `client.get(url).send()`, [`Client::execute`], [`Client::service`] | the client's `reqwest::Client` (or your [attempt layers](ClientBuilder::attempt_layer) over it) |
//! | [`middleware::ResilientMiddleware`] | the rest of the reqwest-middleware chain |
//! | [`ResilientLayer`] in a `ServiceBuilder` of your own | the service below it |
//! | [`RetryLayer`](retry::RetryLayer) over the other public layers | the layers below it, which classify ([`Classify`](classify::Classify)), time ([`AttemptTimeout`](timeout::AttemptTimeout)) and break ([`CircuitBreaker`](breaker::CircuitBreaker)) each attempt themselves |
//!
//! So every path has every rule: endpoint policies, the overload guards and hedging included
//! (the hand-stacked public layers have no per-endpoint policies, hence no guards). A call
//! costs one boxed future. Each rule is one function, listed below; a parity test
//! (`tests/parity.rs`) runs the same scenarios through each path and compares what the server
//! saw and what the caller got, and `src/call/tests.rs` drives the state machine through a
//! scripted sender on paused time.
//!
//! ## Where each decision lives
//!
//! | to change… | look in |
//! |---|---|
//! | the order of an attempt's steps (guards, hook, breaker, send, classify, race, decide, wait) | `Call` in `call/mod.rs`, the one driver of every path |
//! | what sends an attempt on each path | the `Sender` trait and its implementations in `call/sender.rs` (the middleware's in `middleware.rs`) |
//! | the request between attempts: the one parked, its copy, the replay buffer, the `Idempotency-Key` | `call/custody.rs` (a `Parked` token hands it out); the history of attempts in `call/record.rs` |
//! | which statuses and errors are success, transient or permanent | [`classify::DefaultClassifier`] (or your [`classify::Classifier`]); a policy's `retry_statuses` wrap it ([`classify::SharedClassifier`]) |
//! | how a response becomes an attempt's outcome (the status error) | `classify::response_outcome` |
//! | how a transport error is sorted, and whether it was sent | `classify::transport_error` (a transport error is never a success); what a `reqwest::Error` is (kind, delivery), before any verdict, in `transport.rs` |
//! | errors while reading a body (`send_buffered`, readers) | `classify::transport_error` again, through `read/body.rs` and `classify::sorting` |
//! | errors of your tower layers and your code's panics | `classify::layer_error`, `caught.rs` |
//! | how long an attempt may take | `timeout::attempt_limit` (capped by `timeout::call_budget`: the policy's deadline, `.deadline(d)` or the request's `.timeout()`) |
//! | when the deadline clock starts (at the first poll) | `timeout::CallClock` |
//! | what a timeout error is (kind, class, delivery, limit) | `timeout::ran_out` in `timeout/ran_out.rs`, by which clock ran out (`timeout::Clock`: the attempt's, the deadline) and where the request was; beside it the conversions: a tower timeout in your layers (`in_layer`), an attempt cut short by the deadline (`timed_out`), a call's last error at its deadline (`call_ended`, `past_deadline`); the transport's timeouts are sorted in `transport.rs` (`TIMED_OUT`, on the floor below), pinned to it by a test |
//! | whether to retry, and after how long | `call/decision.rs` (`Decision::decide`): class, attempts left, idempotency ([`retry::RetryPolicy::may_repeat`]), replayable body, `Retry-After` cap, deadline; backoff in `retry/backoff.rs` |
//! | whether a stream the server never processed is resent at once (HTTP/2 `REFUSED_STREAM`, a graceful `GOAWAY`), spending no attempt | `RetryState::resends` in `call/state.rs`, asked by `finish_attempt`, with `classify::turnover` (the source chain read in `transport.rs`) and [`retry::MAX_RESENDS`] |
//! | what the breaker counts | `breaker::error_verdict` (transient: failure; permanent: success; the caller's deadline, hooks, streams the server never processed, and a 429 unless the policy counts it: neither) |
//! | whether a call may go out | `Breaker::admit` in `breaker/state.rs` (the window in `window.rs`); `Guards::enter` (bulkhead) and `Guards::admit` (`Retry-After` holds, rate limit) in `overload/guards.rs`, asked in one sequence by the driver (`call/gate.rs`) |
//! | whether a retry may spend from the retry budget | the end of `Decision::decide` in `call/decision.rs`, with [`retry::BudgetConfig`] (`retry/budget.rs`) |
//! | when a server's `Retry-After` holds its endpoint | `Guards::observe` in `overload/guards.rs` |
//! | whether and when to send a hedge; whether a failed attempt waits for its race | `RetryState::hedges_after`, `RetryState::hedge` (with `Guards::let_hedge_out`) and `RetryState::keeps_racing` in `call/state.rs`; the attempts in flight in `call/race.rs` ([`hedge`]) |
//! | whether a guard's state is this process's or the fleet's (Redis) | `Guards::new` in `overload/guards.rs`, over `overload/shared.rs`; the policy asks with `rate_limit_shared`/`retry_budget_shared`, holds are shared whenever the client has a Redis; the fleet's own rules in `fleet` (feature `redis`) |
//! | which breaker and guards (the endpoint key) | `keyed::key_for` and [`breaker::endpoint_key`], both in `keyed.rs` |
//! | which policy | `Policies::select_index` in `policy/compiled.rs`, with [`policy::Matcher`] |
//! | a setting's range | `bounds.rs` (on the ground floor: the configs import it), for the builders and the file alike; a setting of several numbers checks each in its own type (`bounds::Parts`) |
//! | adding a policy setting | the `settings!` table in `policy/mod.rs` (the compiler finds every other place) |
//! | what is secret in errors and logs | [`redact`] |
//!
//! [`hook`]s change each attempt's request or refresh credentials after a `401`, and a
//! [`BodyClassifier`](classify::BodyClassifier) decides on the body, on every path. The
//! client also reads the body *inside* each attempt ([`RequestBuilder::send_buffered`],
//! [`bytes`](RequestBuilder::bytes), [`text`](RequestBuilder::text),
//! [`send_with`](RequestBuilder::send_with)), so a body that breaks is retried, and
//! [`ClientBuilder::attempt_layer`] runs your tower layers around each attempt. What happens
//! is visible in `tracing` spans and events, and as metrics: see [`telemetry`].
//!
//! Every layer is a plain `tower::Layer`: [`ResilientLayer`] carries a client's whole policy,
//! and the single-purpose layers ([`RetryLayer`](retry::RetryLayer),
//! [`CircuitBreakerLayer`](breaker::CircuitBreakerLayer), the timeouts, [`ClassifyLayer`](classify::ClassifyLayer))
//! each work alone.

//! ## Features
//!
//! - `reqwest-middleware` (default): [`middleware::ResilientMiddleware`].
//! - `config` (default): policies from a TOML file ([`ClientBuilder::config_file`]) or from
//!   your own configuration in any serde format ([`policy::PolicyConfig`]); brings `serde`,
//!   `toml` and `humantime`.
//! - `metrics`: counters, gauges and histograms through the `metrics` facade; the names are
//!   in [`telemetry`], with the spans and events every build has.
//! - `redis`: limits shared by the replicas of a service through Redis ([`fleet`]):
//!   `Retry-After` holds, rate limits and retry budgets, falling back to local limits while
//!   Redis is unreachable. Turned on per client with `ClientBuilder::redis` or the policy
//!   file's `[redis]` table.
//! - `backoff`: `backoff` crate schedules for the retry layer (off by default: the crate is
//!   unmaintained).
//! - `testkit`: `testkit::FaultServer`, a loopback HTTP server that fails on demand, to test
//!   your own policies against real failures.
//! - `json`, `query`, `form`: the matching `reqwest` features, reachable through
//!   [`RequestBuilder::map`].
//! - `default-tls` (default), `rustls`, `native-tls`, `http2` (default), `charset` (default),
//!   `system-proxy` (default): the matching `reqwest` features. reqwest comes without its own
//!   defaults, so that these choose: `default-features = false, features = ["rustls"]` drops
//!   HTTP/2, charset decoding and system proxies. Set the reqwest client's other settings with
//!   [`ClientBuilder::reqwest`].

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
// Library code never panics on input; tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// `get_ref`, `get_mut` and `into_inner` for a middleware service whose first type parameter
/// is the service it wraps, kept in its `inner` field, as tower's own middleware have them.
macro_rules! inner_service_accessors {
    ($service:ident $(, $param:ident)*) => {
        impl<S $(, $param)*> $service<S $(, $param)*> {
            /// The wrapped service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The wrapped service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// The wrapped service; this one is consumed.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

mod bounds;
mod boxed;
pub mod breaker;
mod call;
mod caught;
mod circuit;
pub mod classify;
mod client;
mod error;
mod extras;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
#[cfg(test)]
mod fuzzing;
pub mod hedge;
pub mod hook;
mod keyed;
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod middleware;
mod outcome;
pub mod outer;
pub mod overload;
mod pending;
pub mod policy;
mod read;
pub mod redact;
pub mod redirect;
pub mod resilient;
pub mod retry;
mod retry_after;
pub mod telemetry;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod timeout;
mod transport;
mod window;

pub use client::{
    Client, ClientBuilder, HttpFuture, HttpLayer, HttpService, PolicyService, RequestBuilder,
};
pub use error::{Attempt, AttemptOutcome, BoxError, Error, ErrorKind};
pub use pending::{Pending, Reading};
pub use read::DEFAULT_BODY_LIMIT;
pub use resilient::ResilientLayer;

#[doc(no_inline)]
pub use outcome::{Class, Delivery};
