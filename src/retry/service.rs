use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;
use tower::Service;

use super::ResponseFuture;
use super::policy::{IDEMPOTENCY_KEY, RetryPolicy, is_idempotent};
use crate::error::Error;

/// The service made by [`RetryLayer`](super::RetryLayer).
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
    deadline: Option<Duration>,
}

impl<S> Retry<S> {
    /// Wraps `inner`, retrying according to `policy`.
    pub fn new(inner: S, policy: Arc<RetryPolicy>) -> Self {
        Retry {
            inner,
            policy,
            deadline: None,
        }
    }

    /// Also bounds each call, retries and sleeps included, by `deadline` (or the request's
    /// own timeout, if shorter), without a [`TotalDeadline`](crate::timeout::TotalDeadline)
    /// layer: it never sleeps past it and passes what is left down as the request timeout.
    /// Unlike that layer it has no timer of its own, so the service below must honour the
    /// request timeout (an [`AttemptTimeout`](crate::timeout::AttemptTimeout) over reqwest does).
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S> Service<reqwest::Request> for Retry<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        // Call the service that was polled ready; keep it for the retries.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Retry {
            inner,
            policy: self.policy.clone(),
            deadline: self.deadline,
        }
        .call_once(request)
    }
}

impl<S> Retry<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    /// [`call`](Service::call) for a service used once (polled ready before): no copy of the
    /// inner service is made.
    pub(crate) fn call_once(self, mut request: reqwest::Request) -> ResponseFuture<S> {
        let started = Instant::now();
        let policy = &self.policy;
        if policy.generate_idempotency_key
            && policy.max_attempts > 1
            && !is_idempotent(request.method())
            && !request.headers().contains_key(IDEMPOTENCY_KEY)
        {
            request.headers_mut().insert(IDEMPOTENCY_KEY, random_key());
        }
        let may_repeat = policy.may_repeat(request.method(), request.headers());
        // The one copy a retrying stack cannot avoid; skipped when no retry is possible. Made
        // before the budget is set below, so it does not copy that (each retry sets its own).
        let spare = if policy.max_attempts > 1 {
            request.try_clone().map(Box::new)
        } else {
            None
        };
        let budget = match (request.timeout().copied(), self.deadline) {
            (Some(asked), Some(own)) => Some(asked.min(own)),
            (asked, own) => asked.or(own),
        };
        if self.deadline.is_some() {
            // Tells the attempt timeout below how much is left; see `crate::timeout`.
            *request.timeout_mut() = budget;
        }
        let deadline = budget.and_then(|budget| started.checked_add(budget));
        let mut inner = self.inner;
        let future = inner.call(request);
        ResponseFuture::new(
            future,
            inner,
            self.policy,
            spare,
            may_repeat,
            started,
            deadline.zip(budget),
        )
    }
}

/// A random UUID (version 4) as an `Idempotency-Key`.
fn random_key() -> HeaderValue {
    let bits = (fastrand::u128(..) & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    let key = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    // Hex digits and dashes are always a valid header value.
    HeaderValue::try_from(key).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_look_like_uuid_v4_and_differ() {
        let a = super::random_key();
        let b = super::random_key();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
