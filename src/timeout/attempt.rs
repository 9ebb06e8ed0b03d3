use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::AttemptTimeoutFuture;

/// How much nearer than the attempt timeout the deadline must be to count as the reason.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);
use crate::error::{Error, ErrorKind};

/// Bounds each attempt, body included; see the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct AttemptTimeoutLayer {
    timeout: Duration,
    backstop: bool,
}

impl AttemptTimeoutLayer {
    /// Each attempt may take at most `timeout`, from sending to the last byte of the body.
    pub fn new(timeout: Duration) -> Self {
        AttemptTimeoutLayer {
            timeout,
            backstop: true,
        }
    }

    /// Drops the layer's own timer and relies on the inner service enforcing
    /// `Request::timeout`, as `reqwest::Client` does (it also times the body). Saves a timer
    /// per attempt; the [`Client`](crate::Client) facade does this. Do not use it over a
    /// service that ignores the request timeout.
    pub fn without_backstop(mut self) -> Self {
        self.backstop = false;
        self
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            timeout: self.timeout,
            backstop: self.backstop,
        }
    }
}

/// The service made by [`AttemptTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct AttemptTimeout<S> {
    inner: S,
    timeout: Duration,
    backstop: bool,
}

/// An attempt's time limit: `timeout`, or what is left of the budget (the request's own
/// timeout, see the module docs) if that is less; and whether the budget is the reason.
pub(crate) fn attempt_limit(timeout: Duration, left: Option<&Duration>) -> (Duration, bool) {
    match left {
        // Only a deadline that is clearly the nearer limit makes this a deadline error: an
        // attempt that had (almost) its full time timed out on its own, and the circuit
        // breaker must count it.
        Some(&left) if left < timeout => (left, left + DEADLINE_SLACK < timeout),
        _ => (timeout, false),
    }
}

/// A timeout error of an attempt that had `limit`, named for the limit that was nearer.
pub(crate) fn timed_out(error: Error, limit: Duration, by_deadline: bool) -> Error {
    if error.kind() != ErrorKind::AttemptTimeout {
        return error;
    }
    let error = error.with_limit(limit);
    if by_deadline {
        error.into_deadline_exceeded()
    } else {
        error
    }
}

impl<S> Service<reqwest::Request> for AttemptTimeout<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = AttemptTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: reqwest::Request) -> Self::Future {
        let (limit, by_deadline) = attempt_limit(self.timeout, request.timeout());
        if limit.is_zero() {
            return AttemptTimeoutFuture::expired(&request, limit);
        }
        let method = request.method().clone();
        *request.timeout_mut() = Some(limit);
        AttemptTimeoutFuture::new(
            self.inner.call(request),
            method,
            limit,
            by_deadline,
            self.backstop,
        )
    }
}
