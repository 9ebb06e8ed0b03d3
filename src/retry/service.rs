use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use super::ResponseFuture;
use super::policy::RetryPolicy;
use super::state::RetryState;
use crate::breaker::CircuitBreakerLayer;
use crate::error::Error;
use crate::overload::GuardRegistry;

/// The service made by [`RetryLayer`](super::RetryLayer).
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
    deadline: Option<Duration>,
    guards: Option<GuardRegistry>,
    // The breakers below, for the guards to ask whether an attempt will be turned away.
    breakers: Option<CircuitBreakerLayer>,
}

inner_service_accessors!(Retry);

impl<S> Retry<S> {
    /// Wraps `inner`, retrying according to `policy`.
    pub fn new(inner: S, policy: Arc<RetryPolicy>) -> Self {
        Retry {
            inner,
            policy,
            deadline: None,
            guards: None,
            breakers: None,
        }
    }

    /// Also guards each call with its endpoint's overload guards (retry budget, holds, rate
    /// limit, bulkhead), as the client's own call does; `breakers` are the layer's below.
    #[cfg_attr(not(feature = "reqwest-middleware"), allow(dead_code))]
    pub(crate) fn with_guards(
        mut self,
        guards: Option<GuardRegistry>,
        breakers: &CircuitBreakerLayer,
    ) -> Self {
        self.breakers = guards.as_ref().map(|_| breakers.clone());
        self.guards = guards;
        self
    }

    /// Also bounds each call, retries and sleeps included, by `deadline` (or the request's
    /// own timeout, if shorter), counted from the call's first poll, without a
    /// [`TotalDeadline`](crate::timeout::TotalDeadline) layer: it never sleeps past it and
    /// passes what is left down as the request timeout.
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
            guards: self.guards.clone(),
            breakers: self.breakers.clone(),
        }
        .call_once(request)
    }
}

impl<S> Retry<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    /// [`call`](Service::call) for a service used once (polled ready before): no copy of the
    /// inner service is made. Nothing starts until the future is first polled, the call's
    /// clock included (see `CallClock`), as in the client's own call.
    pub(crate) fn call_once(self, request: reqwest::Request) -> ResponseFuture<S> {
        let guards = self.guards.as_ref().map(|g| g.guards_for(request.url()));
        let asks_breaker = self.policy.hedges() || guards.as_ref().is_some_and(|g| g.limits_rate());
        let breaker = match &self.breakers {
            Some(breakers) if asks_breaker => breakers.breaker_for(request.url()),
            _ => None,
        };
        let mut retry = RetryState::new(self.policy, self.deadline, request);
        retry.guard_with(guards);
        ResponseFuture::new(self.inner, retry, breaker)
    }
}
