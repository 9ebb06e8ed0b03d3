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
//! ## The stack, outermost first
//!
//! | layer | module | job |
//! |---|---|---|
//! | (policy) | [`policy`] | picks the request's rules: first matching endpoint rule, else the default |
//! | [`Retry`](retry::Retry) | [`retry`] | backoff, `Retry-After`, idempotency; the total deadline |
//! | [`CircuitBreaker`](breaker::CircuitBreaker) | [`breaker`] | per endpoint, per attempt |
//! | [`AttemptTimeout`](timeout::AttemptTimeout) | [`timeout`] | one attempt, body included |
//! | [`Classify`](classify::Classify) | [`classify`] | success / transient / permanent, sent or not |
//! | `reqwest::Client` | | the socket |
//!
//! The client does more than the layers can: [`RequestBuilder::send_buffered`],
//! [`bytes`](RequestBuilder::bytes), [`text`](RequestBuilder::text) and
//! [`send_with`](RequestBuilder::send_with) read the body *inside* each attempt, so a body
//! that breaks is retried; a [`BodyClassifier`](classify::BodyClassifier) decides on the
//! body; [`hook`]s change each attempt's request or refresh credentials after a `401`; and
//! [`ClientBuilder::attempt_layer`] runs your tower layers around each attempt. What happens
//! is visible in `tracing` spans and events, and as metrics: see [`telemetry`].
//!
//! Every layer is a plain `tower::Layer` and works alone; a
//! [`TotalDeadline`](timeout::TotalDeadline) layer gives a stack of your own a deadline.
//! [`Client::service`] hands out the whole thing as a tower service for your own
//! `ServiceBuilder`, and [`middleware::ResilientMiddleware`] for `reqwest_middleware`.
//!
//! ## Features
//!
//! - `reqwest-middleware` (default): [`middleware::ResilientMiddleware`].
//! - `metrics`: counters, gauges and histograms through the `metrics` facade; the names are
//!   in [`telemetry`], with the spans and events every build has.
//! - `backoff`: `backoff` crate schedules for the retry layer (off by default: the crate is
//!   unmaintained).
//! - `testkit`: `testkit::FaultServer`, a loopback HTTP server that fails on demand, to test
//!   your own policies against real failures.
//! - `json`, `query`, `form`: the matching `reqwest` features, reachable through
//!   [`RequestBuilder::map`].

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

pub mod breaker;
mod call;
mod caught;
pub mod classify;
mod client;
mod error;
mod extras;
pub mod hook;
#[cfg(feature = "reqwest-middleware")]
pub mod middleware;
pub mod outer;
mod pending;
pub mod policy;
mod read;
pub mod redact;
pub mod redirect;
pub mod retry;
pub mod telemetry;

#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timeout;

pub use client::{Client, ClientBuilder, PolicyService, RequestBuilder};
pub use error::{Attempt, AttemptOutcome, BoxError, Error, ErrorKind};
pub use pending::{Pending, Reading};
pub use read::DEFAULT_BODY_LIMIT;

#[doc(no_inline)]
pub use classify::{Class, Delivery};
