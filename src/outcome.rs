//! The words for an attempt's outcome that every floor of the crate speaks: what went wrong
//! ([`ErrorKind`]), its [`Class`] (success, transient, permanent) and its [`Delivery`] (how
//! far the request got).
//!
//! They sit on the ground floor, below the error that carries them, the reading of a
//! transport failure (`transport.rs`) and the classifiers that decide them, so that none has
//! to import another's floor for them. Public as `resilient_http::ErrorKind`,
//! `resilient_http::Class` and `resilient_http::classify::Class` (and `Delivery` alike).

use std::fmt;

/// What an attempt's outcome means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The call worked.
    Success,
    /// The call failed in a way that trying again (later) may fix.
    Transient,
    /// The call failed in a way that trying again cannot fix.
    Permanent,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Success => "success",
            Class::Transient => "transient",
            Class::Permanent => "permanent",
        })
    }
}

/// How far the request got: decides whether a non-idempotent request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The request never reached the server (connect refused, DNS failure, `REFUSED_STREAM`):
    /// sending it again is safe for any method.
    NotSent,
    /// The request may have been processed (reset after writing, timeout while waiting, an
    /// HTTP/2 graceful `GOAWAY`: see [`retry::MAX_RESENDS`](crate::retry::MAX_RESENDS)).
    MaybeSent,
    /// The server answered.
    Delivered,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::NotSent => "never sent",
            Delivery::MaybeSent => "maybe sent",
            Delivery::Delivered => "delivered",
        })
    }
}

/// What went wrong, for `match`.
///
/// New kinds may be added in minor releases, so a `match` needs a `_` arm.
///
/// ```
/// use resilient_http::{Error, ErrorKind};
///
/// fn advice(err: &Error) -> &'static str {
///     match err.kind() {
///         // A failure status after the retries: 4xx are permanent, 5xx transient.
///         ErrorKind::Status if err.is_transient() => "the server is struggling",
///         ErrorKind::Status => "our request is wrong",
///         ErrorKind::AttemptTimeout | ErrorKind::DeadlineExceeded => "too slow",
///         ErrorKind::Connect => "cannot reach the server",
///         // Refused without sending: err.retry_after() says when to try again, if known.
///         ErrorKind::CircuitOpen | ErrorKind::RateLimited | ErrorKind::BulkheadFull => "later",
///         ErrorKind::InvalidConfig => "fix the configuration",
///         _ => "something else",
///     }
/// }
///
/// let err = Error::invalid_config("attempts: must be at least 1");
/// assert_eq!(advice(&err), "fix the configuration");
/// ```
// Links to `recv_json`, which only the `json` feature has (docs.rs builds every feature).
#[cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// One attempt took longer than the attempt timeout (head or body).
    AttemptTimeout,
    /// The total deadline across all attempts and backoff sleeps ran out.
    DeadlineExceeded,
    /// The connection could not be made (refused, DNS failure, connect timeout): the request
    /// never reached the server.
    Connect,
    /// The connection was reset or closed after the request was (possibly) written.
    ConnectionClosed,
    /// The server answered with a status the classifier calls a failure.
    Status,
    /// The circuit breaker for this endpoint is open; the request was not sent.
    CircuitOpen,
    /// The retry budget is spent; the request was not retried.
    BudgetExhausted,
    /// A retry was needed but the request body is a stream that cannot be sent twice (longer
    /// than the policy's `replay_buffer`, or not sent to its end).
    BodyNotReplayable,
    /// The request could not be built (invalid URL, invalid header, ...).
    InvalidRequest,
    /// The server's answer was not valid HTTP (for example a malformed status line).
    InvalidResponse,
    /// The configuration was rejected; also a future of this crate polled again after it
    /// completed (a bug in the caller, not a failure of the request).
    InvalidConfig,
    /// Any other failure while sending or receiving (redirect loop, body error, ...), and an
    /// error of yours made with [`Error::transient`](crate::Error::transient) or
    /// [`Error::permanent`](crate::Error::permanent).
    Transport,
    /// The response body was longer than the policy's body limit (permanent: it will not
    /// shrink by asking again).
    BodyTooLarge,
    /// The response body could not be decoded (invalid JSON for
    /// [`recv_json`](crate::RequestBuilder::recv_json)); permanent, and the error keeps the status.
    Decode,
    /// A hook run before an attempt failed or panicked; the message names the hook (or the
    /// request's [body factory](crate::RequestBuilder::body_with)).
    Hook,
    /// The endpoint is held back: the server asked to wait (`Retry-After` on a 429 or 503),
    /// or the client's own rate limit has no slot, and the wait does not fit the deadline.
    /// [`Error::retry_after`](crate::Error::retry_after) says how long is left; the request
    /// was not sent.
    RateLimited,
    /// The endpoint's bulkhead is full: as many calls as it allows are in flight, and no
    /// place came free within its queue timeout (or the deadline). The request was not sent.
    BulkheadFull,
    /// Client-side adaptive throttling turned the attempt away: its dependency has been
    /// rejecting much of what it gets, and the client sheds load before sending (see
    /// [`ThrottleConfig`](crate::overload::ThrottleConfig)). Transient; the request was not
    /// sent; the message gives the current rejection probability.
    Throttled,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::AttemptTimeout => "attempt timed out",
            ErrorKind::DeadlineExceeded => "total deadline exceeded",
            ErrorKind::Connect => "connect failed",
            ErrorKind::ConnectionClosed => "connection closed",
            ErrorKind::Status => "failure status",
            ErrorKind::CircuitOpen => "circuit open",
            ErrorKind::BudgetExhausted => "retry budget exhausted",
            ErrorKind::BodyNotReplayable => "body not replayable",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::InvalidResponse => "invalid response",
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::Transport => "transport error",
            ErrorKind::BodyTooLarge => "response body too large",
            ErrorKind::Decode => "response body could not be decoded",
            ErrorKind::Hook => "attempt hook failed",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::BulkheadFull => "bulkhead full",
            ErrorKind::Throttled => "throttled",
        })
    }
}

impl ErrorKind {
    /// A call the client's own guards turned away: nothing of it was sent.
    pub(crate) const fn is_refusal(self) -> bool {
        matches!(
            self,
            ErrorKind::CircuitOpen
                | ErrorKind::RateLimited
                | ErrorKind::BulkheadFull
                | ErrorKind::Throttled
        )
    }

    /// A short, stable, machine-readable name: `timeout`, `deadline`, `connect`, `reset`,
    /// `status`, `circuit_open`, `budget_exhausted`, `body_not_replayable`, `invalid_request`,
    /// `invalid_response`, `invalid_config`, `transport`, `body_too_large`, `decode`, `hook`,
    /// `rate_limited`, `bulkhead_full` or `throttled`.
    ///
    /// These are the `error_kind` values of the `probe` example and the `error.type` of
    /// spans and metrics (where a failure status is shown as its code instead).
    ///
    /// ```
    /// assert_eq!(resilient_http::ErrorKind::ConnectionClosed.as_str(), "reset");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::AttemptTimeout => "timeout",
            ErrorKind::DeadlineExceeded => "deadline",
            ErrorKind::Connect => "connect",
            ErrorKind::ConnectionClosed => "reset",
            ErrorKind::Status => "status",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::BudgetExhausted => "budget_exhausted",
            ErrorKind::BodyNotReplayable => "body_not_replayable",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::Transport => "transport",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::Decode => "decode",
            ErrorKind::Hook => "hook",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::BulkheadFull => "bulkhead_full",
            ErrorKind::Throttled => "throttled",
        }
    }
}
