use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use super::ResponseFuture;
use super::policy::RetryPolicy;
use crate::call::{Call, ServiceSender, SortedLayers, Which};
use crate::error::Error;
use crate::policy::{CompiledPolicy, Policies};
use crate::read::Reader;

/// The service made by [`RetryLayer`](super::RetryLayer).
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    // The retry policy and the deadline, as the one driver (`crate::call`) reads them.
    policies: Arc<Policies>,
}

inner_service_accessors!(Retry);

impl<S> Retry<S> {
    /// Wraps `inner`, retrying according to `policy`.
    pub fn new(inner: S, policy: Arc<RetryPolicy>) -> Self {
        Retry {
            inner,
            policies: Arc::new(Policies::only(CompiledPolicy::retry_only(policy, None))),
        }
    }

    /// Also bounds each call, retries and sleeps included, by `deadline` (or the request's
    /// own timeout, if shorter), counted from the call's first poll, without a
    /// [`TotalDeadline`](crate::timeout::TotalDeadline) layer: it never sleeps past it and
    /// passes what is left down as the request timeout.
    /// Unlike that layer it has no timer of its own, so the service below must honour the
    /// request timeout (an [`AttemptTimeout`](crate::timeout::AttemptTimeout) over reqwest does).
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        let retry = self.policies.default.retry_policy();
        self.policies = Arc::new(Policies::only(CompiledPolicy::retry_only(retry, deadline)));
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        self.policies.default.retry()
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
        let call = Call::unboxed(
            ServiceSender::<_, SortedLayers>::take_ready(&mut self.inner),
            self.policies.clone(),
            Which::Shared(None),
            request,
            Reader::response(),
            false,
        );
        ResponseFuture::new(call)
    }
}
