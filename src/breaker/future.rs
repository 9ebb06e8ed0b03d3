use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use http::StatusCode;

use super::BreakerConfig;
use super::state::{Breaker, Permit, Verdict};
use crate::classify::turnover;
use crate::error::{Error, ErrorKind};
use crate::outcome::Class;

pin_project! {
    /// The future of [`CircuitBreaker`](super::CircuitBreaker).
    ///
    /// Dropped before the call ends, it reports the call as cancelled, which gives a half-open
    /// probe's place back (see the [module docs](super)).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        rejection: Option<Error>,
        guard: Option<(Arc<Breaker>, Permit, Option<Instant>)>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some((breaker, permit, _)) = this.project().guard.take() {
                breaker.record(permit, Verdict::Ignored, None);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn guarded(inner: F, breaker: Arc<Breaker>, permit: Permit) -> Self {
        let started = breaker.call_started();
        ResponseFuture {
            inner: Some(inner),
            rejection: None,
            guard: Some((breaker, permit, started)),
        }
    }

    pub(super) fn unguarded(inner: F) -> Self {
        ResponseFuture {
            inner: Some(inner),
            rejection: None,
            guard: None,
        }
    }

    pub(super) fn rejected(error: Error) -> Self {
        ResponseFuture {
            inner: None,
            rejection: Some(error),
            guard: None,
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<reqwest::Response, Error>>,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let error = this
                .rejection
                .take()
                .unwrap_or_else(Error::polled_after_completion);
            return Poll::Ready(Err(error));
        };
        let result = ready!(inner.poll(cx));
        if let Some((breaker, permit, started)) = this.guard.take() {
            let verdict = match &result {
                Ok(_) => Verdict::Success,
                Err(error) => breaker.error_verdict(error),
            };
            breaker.record(permit, verdict, started);
        }
        Poll::Ready(result)
    }
}

/// What a failed attempt tells a breaker set up as `config`: transient failures count against
/// the endpoint; permanent ones (a 404 is the caller's problem) count as successes; a deadline
/// cut short by the caller's budget, a hook of the caller's that failed, and (unless
/// `config` counts them) a `429`, count as neither. The one rule for the client's call and
/// the layer.
pub(crate) fn error_verdict(error: &Error, config: &BreakerConfig) -> Verdict {
    match error {
        // The caller's deadline, or code of the caller's that failed: not the endpoint's doing.
        e if matches!(e.kind(), ErrorKind::DeadlineExceeded | ErrorKind::Hook) => Verdict::Ignored,
        // A rate limiter's "slow down": the endpoint is not down. Neither a failure nor a
        // success (which would dilute real failures in the window).
        e if is_429(e) && !config.counts_429() => Verdict::Ignored,
        // A stream refused by a healthy server turning its connections over (HTTP/2
        // REFUSED_STREAM, a graceful GOAWAY): no failure of the endpoint's.
        e if turnover(e).is_some() => Verdict::Ignored,
        e if e.class() == Class::Transient => Verdict::Failure,
        _ => Verdict::Success,
    }
}

/// A `429 Too Many Requests` answer.
fn is_429(error: &Error) -> bool {
    error.kind() == ErrorKind::Status && error.status() == Some(StatusCode::TOO_MANY_REQUESTS)
}
