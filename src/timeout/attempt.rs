use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{AttemptTimeoutFuture, DEADLINE_SLACK};
use crate::error::Error;

/// Bounds each attempt, body included; see the [module docs](super). To tell the server
/// each attempt's limit (`grpc-timeout`, a milliseconds header), put a
/// [`PropagateDeadlineLayer`](crate::deadline::PropagateDeadlineLayer) under it.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
/// use resilient_http::testkit::{FaultServer, Reply};
/// use resilient_http::timeout::AttemptTimeoutLayer;
/// use resilient_http::ErrorKind;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/slow", [Reply::hang()]);
///
/// let service = ServiceBuilder::new()
///     .layer(AttemptTimeoutLayer::new(Duration::from_millis(100)))
///     .layer(ClassifyLayer::new(DefaultClassifier))
///     .service(reqwest::Client::new());
/// let request = reqwest::Request::new(reqwest::Method::GET, server.url("/slow").parse()?);
/// let err = service.oneshot(request).await.err().ok_or("a hang times out")?;
/// assert_eq!(err.kind(), ErrorKind::AttemptTimeout);
/// # Ok(())
/// # }
/// ```
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
    /// per attempt. Do not use it over a
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

inner_service_accessors!(AttemptTimeout);

/// A call's time budget: its deadline, or the request's own timeout (`asked`) if shorter.
pub(crate) fn call_budget(asked: Option<Duration>, deadline: Option<Duration>) -> Option<Duration> {
    match (asked, deadline) {
        (Some(asked), Some(deadline)) => Some(asked.min(deadline)),
        (asked, deadline) => asked.or(deadline),
    }
}

/// An attempt's time limit and whether the deadline, not the attempt timeout, is the reason,
/// for an attempt timeout of `timeout` in a call of `budget` with `left` of it remaining.
///
/// The one rule for both the client's call and the layers. An attempt never has longer than
/// the whole call, whichever deadline sets it (a policy's, `.deadline(d)`, the request's
/// `.timeout(d)`): so an attempt that had the whole budget and hung timed out on its own,
/// and the breaker counts it as the endpoint's failure. Only an attempt that started with
/// clearly less than that (a retry late in the call) ends at the caller's deadline, which the
/// breaker ignores.
pub(crate) fn attempt_limit(
    timeout: Duration,
    budget: Option<Duration>,
    left: Option<Duration>,
) -> (Duration, bool) {
    let timeout = budget.map_or(timeout, |budget| timeout.min(budget));
    match left {
        Some(left) if left < timeout => (left, left + DEADLINE_SLACK < timeout),
        _ => (timeout, false),
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
        let left = request.timeout().copied();
        let (limit, by_deadline) = attempt_limit(self.timeout, None, left);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_deadline_that_applies_caps_the_attempt() {
        // A call of 300 ms with a 10 s attempt timeout: its first attempt has it all, and
        // timing out is the attempt's own doing.
        assert_eq!(
            attempt_limit(10_000 * MS, Some(300 * MS), Some(300 * MS)),
            (300 * MS, false)
        );
        assert_eq!(
            attempt_limit(10_000 * MS, Some(300 * MS), Some(295 * MS)),
            (295 * MS, false)
        );
        // A later attempt with clearly less left ends at the caller's deadline.
        assert_eq!(
            attempt_limit(10_000 * MS, Some(300 * MS), Some(100 * MS)),
            (100 * MS, true)
        );
        // Without a budget, only what is left can tell.
        assert_eq!(
            attempt_limit(10_000 * MS, None, Some(300 * MS)),
            (300 * MS, true)
        );
        assert_eq!(
            attempt_limit(200 * MS, Some(300 * MS), None),
            (200 * MS, false)
        );
    }

    #[test]
    fn a_requests_timeout_shortens_the_budget_only() {
        assert_eq!(call_budget(Some(MS), Some(2 * MS)), Some(MS));
        assert_eq!(call_budget(Some(3 * MS), Some(2 * MS)), Some(2 * MS));
        assert_eq!(call_budget(None, Some(2 * MS)), Some(2 * MS));
        assert_eq!(call_budget(Some(MS), None), Some(MS));
        assert_eq!(call_budget(None, None), None);
    }
}
