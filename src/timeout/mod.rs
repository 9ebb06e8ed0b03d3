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
//! Reading the body inside the attempt, which makes a half-read body a retryable attempt, is
//! the client's opt-in: `send_buffered`, `bytes`, `text`, `recv_json` and `send_with`.
//!
//! ## How the deadline reaches the inner layers
//!
//! `reqwest::Request` has no public extensions, so the time budget travels in the request's own
//! timeout: [`TotalDeadline`] sets it to the whole budget, every layer below only ever narrows it,
//! and [`AttemptTimeout`] takes the smaller of it and the attempt timeout. A caller's
//! `RequestBuilder::timeout(d)` therefore means what it means in reqwest, a total timeout for
//! the call, and can only shorten the configured deadline.
//!
//! An attempt never has longer than the call's whole budget, whichever deadline sets it (the
//! policy's, a request's `.deadline(d)` or `.timeout(d)`): an attempt that had the whole budget
//! and hung timed out on its own, an [`AttemptTimeout`](crate::ErrorKind::AttemptTimeout) the
//! circuit breaker counts, even though the caller is told its deadline passed. Only an attempt
//! that started with clearly less (a retry late in the call) ends at the caller's deadline,
//! which the breaker ignores. The driver (the client, `ResilientMiddleware`,
//! `ResilientLayer`) knows each call's budget and applies this; an [`AttemptTimeout`] layer of
//! your own sees only what is left of it, so give it an attempt timeout no longer than your
//! deadline.
//!
//! ## The caller's deadline
//!
//! A call made inside a [`deadline::scope`](crate::deadline::scope) (a server handler whose
//! own caller will wait only so long) has its budget capped at the scope's end, read once at
//! the call's start on every path; the request's timeout then carries the capped budget to
//! the layers below, as above. An attempt cut short by the caller's deadline is the
//! caller's doing, which the breaker ignores.
//!
//! ## What a timeout error is
//!
//! Its kind, class, delivery and limit are decided in one place for every way time runs out (the attempt's clock or the deadline's, before, while or after the request
//! went out), and every path asks it: the client's call, these layers, the transport's sorting.
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
mod ran_out;

pub use attempt::{AttemptTimeout, AttemptTimeoutLayer};
pub(crate) use attempt::{attempt_limit, call_budget};
pub(crate) use deadline::CallClock;
pub use deadline::{TotalDeadline, TotalDeadlineLayer};
pub(crate) use future::expired;
pub use future::{AttemptTimeoutFuture, TotalDeadlineFuture};
pub(crate) use ran_out::{Clock, call_ended, in_layer, past_deadline, ran_out, timed_out};

/// How long after its limit a layer's own timer fires; see the [module docs](self).
///
/// The inner timer starts microseconds after ours, so it normally fires in the same
/// millisecond tick; the margin covers a thread preempted in between on a loaded machine.
pub const BACKSTOP_GRACE: Duration = Duration::from_millis(10);

/// How near the deadline a timeout must end to be the deadline's doing: an attempt whose
/// limit was within this of its full attempt timeout timed out on its own (and the breaker
/// counts it); a call whose last attempt timed out this near its deadline ended at it.
pub(crate) const DEADLINE_SLACK: Duration = Duration::from_millis(10);

/// Default attempt timeout (.NET's standard resilience handler uses the same).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total deadline across all attempts and sleeps.
pub const DEFAULT_TOTAL_DEADLINE: Duration = Duration::from_secs(30);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
