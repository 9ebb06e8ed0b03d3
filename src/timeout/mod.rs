//! Bounding time: an attempt timeout that covers the response body, and a total deadline.
//!
//! ## Why the attempt timeout uses reqwest's own request timeout
//!
//! tower's `Timeout` (and most peers) stop the clock when the response *head* arrives. A server
//! that sends headers and then stalls the body makes the caller hang while reading it; one public
//! incident was a 37-minute hang. reqwest's per-request timeout (`Request::timeout_mut`) runs
//! "until the response body has finished", so [`AttemptTimeout`] sets it on every attempt to the
//! smaller of the attempt timeout and the time left before the total deadline. The body stays a
//! stream (nothing is buffered), and reading a stalled body fails with a `reqwest::Error` whose
//! `is_timeout()` is true, at the attempt timeout. Convert it with `resilient_http::Error::from`
//! to get the typed [`AttemptTimeout`](crate::ErrorKind::AttemptTimeout) kind.
//!
//! The alternative, reading the whole body inside the attempt, would make a half-read body
//! retryable but buffers every response; it is left to an opt-in in a later version.
//!
//! ## How the deadline reaches the inner layers
//!
//! `reqwest::Request` has no public extensions, so the time budget travels in the request's own
//! timeout: [`TotalDeadline`] sets it to the whole budget, every layer below only ever narrows it,
//! and [`AttemptTimeout`] takes the smaller of it and the attempt timeout. A caller's
//! `RequestBuilder::timeout(d)` therefore means what it means in reqwest, a total timeout for
//! the call, and can only shorten the configured deadline.
//!
//! ## Backstops
//!
//! Both layers also keep a timer of their own, so they bound any inner service, not only
//! reqwest. These timers fire [`BACKSTOP_GRACE`] after the limit, so that when the inner service
//! does honour the request timeout, its error (classified, with the attempt history) arrives
//! first.

use std::time::Duration;

mod attempt;
mod deadline;
mod future;

pub use attempt::{AttemptTimeout, AttemptTimeoutLayer};
pub(crate) use attempt::{attempt_limit, timed_out};
pub use deadline::{TotalDeadline, TotalDeadlineLayer};
pub(crate) use future::expired;
pub use future::{AttemptTimeoutFuture, TotalDeadlineFuture};

/// How long after its limit a layer's own timer fires; see the [module docs](self).
///
/// The inner timer starts microseconds after ours, so it normally fires in the same
/// millisecond tick; the margin covers a thread preempted in between on a loaded machine.
pub const BACKSTOP_GRACE: Duration = Duration::from_millis(10);

/// Default attempt timeout (.NET's standard resilience handler uses the same).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total deadline across all attempts and sleeps.
pub const DEFAULT_TOTAL_DEADLINE: Duration = Duration::from_secs(30);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
