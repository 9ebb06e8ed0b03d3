//! Deadlines that cross process boundaries: telling a server how long the caller will wait
//! (outgoing), and inheriting what is left of an incoming request's deadline (incoming).
//!
//! ## Incoming: the caller's deadline, inherited
//!
//! A caller that will give up in 800 ms should not have its server work for 10 s, nor the
//! server's own outbound calls wait longer than that. [`scope`] runs a future with a
//! deadline that every call of this crate made inside it inherits: each call's own deadline
//! (the policy's, a request's `.deadline(d)` or `.timeout(d)`) is capped at the scope's end,
//! on every path (the [`Client`](crate::Client), the middleware, the tower layers). Nested
//! scopes only shorten. A call whose inherited deadline has passed fails at once, not sent;
//! one that runs out of it fails with [`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded),
//! its message naming "the caller's deadline (inherited)", and
//! [`Error::deadline_inherited`](crate::Error::deadline_inherited) true.
//!
//! On a server, [`IncomingDeadlineLayer`] reads the deadline a request carries (`grpc-timeout`,
//! or a header of milliseconds) and runs its handler inside such a scope, so that a service
//! in the middle of a chain passes its caller's deadline on without code.
//!
//! The scope is a tokio task-local: it does not cross [`tokio::spawn`]. Pass it on with
//! [`remaining`]: `tokio::spawn(deadline::scope(left, work))`.
//!
//! ## Outgoing: telling the server how long the caller waits
//!
//! A caller that gives up after 800 ms gains nothing from a server that works on for 10 s.
//! With [`EndpointPolicy::propagate_deadline`](crate::policy::EndpointPolicy::propagate_deadline)
//! (off by default), every attempt and every hedge carries its own limit in a header: the
//! attempt timeout, capped by what is left of the call's deadline, less a margin
//! ([`propagate_deadline_margin`](crate::policy::EndpointPolicy::propagate_deadline_margin),
//! default [`DEFAULT_MARGIN`], 20 ms), rounded down. The margin covers the request's way to
//! the server and the answer's way back, so that a server which stops at the limit it was
//! told answers before the caller stops waiting: the caller sees the server's own answer
//! (a `504`, gRPC's `DEADLINE_EXCEEDED`) rather than a timeout of its own.
//!
//! - `grpc-timeout` ([`DeadlineHeader::grpc_timeout`]) is written in gRPC's `TimeoutValue`
//!   format (`480000u`); any other header ([`DeadlineHeader::millis`], e.g. Envoy's
//!   `x-envoy-expected-rq-timeout-ms`) in whole milliseconds (`480`).
//! - A value of that header the request already has (the caller's own, a hook's) is
//!   replaced, not appended to: the server reads one value, the attempt's.
//! - The value is never zero or negative: an attempt whose limit is not above the margin is
//!   **not sent**. It ends as an attempt the deadline left no time for
//!   ([`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded), not sent, its message naming
//!   the margin), and a hedge in that state stays unsent while the attempts in flight go on.
//!   So is an attempt of `ResilientLayer` that waited for its service to be ready until
//!   nothing was left; one that waited less is told what is left when it goes out.
//! - Every path writes it: the client, [`ResilientMiddleware`](crate::middleware::ResilientMiddleware)
//!   and [`ResilientLayer`](crate::ResilientLayer) (the driver sets it where it sets each
//!   attempt's limit). Under the public [`Retry`](crate::retry::Retry) layer, each attempt's
//!   limit is set by the [`AttemptTimeout`](crate::timeout::AttemptTimeout) layer below it,
//!   which the retry layer does not know: put a [`PropagateDeadlineLayer`] under that layer,
//!   where the request's timeout is the attempt's limit.
//!
//! In a policy file:
//!
//! ```toml
//! [default]
//! attempt_timeout = "500ms"
//! deadline = "2s"
//! propagate_deadline = "grpc-timeout"        # or "x-envoy-expected-rq-timeout-ms", ...
//! propagate_deadline_margin = "20ms"         # 0 to 1m
//!
//! [[endpoint]]
//! name = "legacy"
//! match = { host = "legacy.internal" }
//! propagate_deadline = false                 # this rule sends none
//! ```
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::deadline::DeadlineHeader;
//! use resilient_http::policy::EndpointPolicy;
//!
//! let client = Client::builder()
//!     .default_policy(
//!         EndpointPolicy::new()
//!             .attempt_timeout(Duration::from_millis(500))
//!             .deadline(Duration::from_secs(2))
//!             // Each attempt: `x-request-timeout-ms: 480` (less once the deadline is near).
//!             .propagate_deadline(DeadlineHeader::millis("x-request-timeout-ms")),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```

mod incoming;
mod outgoing;
mod propagate;
mod scope;
pub(crate) mod wire;

pub use incoming::{IncomingDeadline, IncomingDeadlineLayer};
pub(crate) use outgoing::Propagate;
pub use outgoing::{DEFAULT_MARGIN, DeadlineHeader};
pub use propagate::{PropagateDeadline, PropagateDeadlineFuture, PropagateDeadlineLayer};
pub(crate) use scope::end;
pub use scope::{ScopeFuture, remaining, scope, scope_until};
