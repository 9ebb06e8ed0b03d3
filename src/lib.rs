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
//! | [`TotalDeadline`](timeout::TotalDeadline) | [`timeout`] | one budget for the whole call |
//! | [`AttemptTimeout`](timeout::AttemptTimeout) | [`timeout`] | one attempt, body included |
//! | [`Classify`](classify::Classify) | [`classify`] | success / transient / permanent, sent or not |
//! | `reqwest::Client` | | the socket |
//!
//! Retry and circuit breaker layers slot in between the deadline and the attempt timeout.
//! [`Client::service`] hands out the stack as a tower service for your own `ServiceBuilder`.
//!
//! ## Features
//!
//! - `testkit`: [`testkit::FaultServer`], a loopback HTTP server that fails on demand, to test
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

pub mod breaker;
pub mod classify;
mod client;
mod error;
#[cfg(feature = "reqwest-middleware")]
pub mod middleware;
mod pending;
pub mod policy;
pub mod redact;
pub mod retry;

#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timeout;

pub use client::{Client, ClientBuilder, PolicyService, RequestBuilder, Stack};
pub use error::{Attempt, AttemptOutcome, BoxError, Error, ErrorKind};
pub use pending::Pending;

#[doc(no_inline)]
pub use classify::{Class, Delivery};
