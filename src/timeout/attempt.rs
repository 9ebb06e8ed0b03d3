use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::AttemptTimeoutFuture;

/// How much nearer than the attempt timeout the deadline must be to count as the reason.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);
use crate::error::Error;

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
        // The request's own timeout is what is left of the total budget (see module docs).
        let (limit, by_deadline) = match request.timeout() {
            // Only a deadline that is clearly the nearer limit makes this a deadline error: an
            // attempt that had (almost) its full time timed out on its own, and the circuit
            // breaker must count it.
            Some(&left) if left < self.timeout => (left, left + DEADLINE_SLACK < self.timeout),
            _ => (self.timeout, false),
        };
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
