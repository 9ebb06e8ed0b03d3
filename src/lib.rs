//! # resilient-http
//!
//! Outbound HTTP calls that survive the real world. A `reqwest::Client` wrapped in a stack of
//! plain [`tower::Layer`]s that sort every failure into *transient* or *permanent*, bound every
//! attempt in time (the response body included) and return one typed [`Error`] that carries what
//! happened on every attempt.
//!
//! ```no_run
//! use std::time::Duration;
//! use resilient_http::{Client, ErrorKind};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::builder()
//!         .attempt_timeout(Duration::from_secs(2)) // per attempt, body included
//!         .deadline(Duration::from_secs(5)) // the whole call, retries included
//!         .build()?;
//!
//!     // The body is read inside each attempt: a body cut off mid-way is retried.
//!     match client.get("https://api.example.com/orders/7").text().await {
//!         Ok(body) => println!("{body}"),
//!         Err(err) => match err.kind() {
//!             ErrorKind::Status if !err.is_transient() => eprintln!("rejected: {err}"),
//!             ErrorKind::CircuitOpen => eprintln!("down; try in {:?}", err.retry_after()),
//!             _ => {
//!                 for attempt in err.attempts() {
//!                     eprintln!("{attempt}");
//!                 }
//!                 return Err(err.into());
//!             }
//!         },
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Start with the [`guide`]: one page per topic, from [per-endpoint policies](guide::policies)
//! to [testing your own code against a failing server](guide::testing).
//!
//! ## Where to find what
//!
//! - [`Client`] and its [`ClientBuilder`]: the client, the default policy and the
//!   per-endpoint rules ([`policy::EndpointPolicy`], [`policy::Matcher`], or a TOML file with
//!   [`ClientBuilder::config_file`]).
//! - [`RequestBuilder`]: a request, with every setter of reqwest's, under reqwest's names
//!   (`json(&body)` sets the body), plus per-request settings and the readers that read the
//!   body inside each attempt ([`RequestBuilder::send_buffered`],
//!   [`bytes`](RequestBuilder::bytes), [`text`](RequestBuilder::text), `recv_json` (feature
//!   `json`), [`send_with`](RequestBuilder::send_with)); see [`guide::migrating`].
//! - [`Error`] and [`ErrorKind`]: what went wrong, whether it is [transient](Class), why the
//!   call stopped ([`Error::give_up`], a [`GiveUp`]), whether the request may have reached the
//!   server ([`Error::sent`]), and every [`Attempt`].
//! - The same rules elsewhere: [`middleware::ResilientMiddleware`] in a reqwest-middleware
//!   chain, [`ResilientLayer`] in a `tower::ServiceBuilder` of your own, and the
//!   [`Client::http_service`] under tower-http's layers, the
//!   single-purpose layers ([`RetryLayer`](retry::RetryLayer),
//!   [`CircuitBreakerLayer`](breaker::CircuitBreakerLayer),
//!   [`AttemptTimeoutLayer`](timeout::AttemptTimeoutLayer),
//!   [`TotalDeadlineLayer`](timeout::TotalDeadlineLayer),
//!   [`ClassifyLayer`](classify::ClassifyLayer)); see [`guide::tower`].
//! - Extension points: [`classify::Classifier`] and [`classify::BodyClassifier`] (what is a
//!   failure), [`hook`] (change each attempt's request, refresh credentials after a `401`),
//!   [`ClientBuilder::attempt_layer`] and [`ClientBuilder::layer`] (your tower layers around
//!   each attempt or each call).
//! - Protection from overload: [`breaker`], [`overload`], [`hedge`], and limits shared by
//!   many replicas through Redis, `fleet` (feature `redis`).
//! - What happened: [`telemetry`] (spans, events, metrics) and [`redact`] (what is never
//!   shown). `testkit` (feature `testkit`): a loopback server that fails on demand.
//!
//! Cargo features: [`guide::features`].

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
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod client;
pub mod deadline;
mod error;
mod extras;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
#[cfg(test)]
mod fuzzing;
pub mod guide;
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
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod sim;
pub mod telemetry;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod timeout;
mod transport;
mod window;

// The README's snippets, compiled as doctests, so that what a new user copies first always
// builds. Its first call reads JSON (feature `json`), and GitHub shows rustdoc's hidden `# `
// lines, so the README has none and is checked with the feature on (`--all-features`).
#[cfg(all(doctest, feature = "json"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use client::{
    Client, ClientBuilder, HttpFuture, HttpLayer, HttpService, PolicyService, RequestBuilder,
};
pub use error::{Attempt, AttemptOutcome, BoxError, Error, ErrorKind, GiveUp};
pub use pending::{Pending, Reading};
pub use read::DEFAULT_BODY_LIMIT;
pub use resilient::ResilientLayer;

#[doc(no_inline)]
pub use outcome::{Class, Delivery};
