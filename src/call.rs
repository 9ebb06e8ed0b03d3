//! The client's own path through a policy: every layer's job in one future.
//!
//! The tower layers are there to be composed, and each costs a future, a copy of the request
//! on the way down and of the response on the way up, and its own bookkeeping. The client
//! knows its whole stack, so it does the same work (the same functions: classification, the
//! attempt timeout, the breaker, [`RetryState`]) in one future instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Method;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep};
use tower::Service;

use crate::breaker::state::{Permit, Verdict};
use crate::breaker::{Breaker, verdict};
use crate::classify::outcome;
use crate::error::Error;
use crate::policy::{CompiledPolicy, Policies};
use crate::retry::state::{Next, RetryState};
use crate::timeout::{attempt_limit, expired, timed_out};

type ReqwestFuture = <reqwest::Client as Service<reqwest::Request>>::Future;

/// Which policy a call follows.
pub(crate) enum Which {
    /// An endpoint rule by index, or the default (`None`).
    Shared(Option<usize>),
    /// A policy changed for this request.
    Custom(Box<CompiledPolicy>),
}

pin_project! {
    /// One call through one policy.
    pub(crate) struct Call {
        #[pin]
        attempt: Option<ReqwestFuture>,
        sleep: Option<Pin<Box<Sleep>>>,
        http: reqwest::Client,
        policies: Arc<Policies>,
        which: Which,
        // Holds the request until the first poll, then each retry's copy.
        retry: RetryState,
        method: Method,
        breaker: Option<Arc<Breaker>>,
        // The current attempt's breaker permit and, if slow calls are counted, its start.
        permit: Option<(Permit, Option<Instant>)>,
        limit: Duration,
        by_deadline: bool,
    }

    impl PinnedDrop for Call {
        fn drop(this: Pin<&mut Self>) {
            // A cancelled call gives a half-open probe's place back.
            let this = this.project();
            if let (Some(breaker), Some((permit, _))) = (this.breaker.as_ref(), this.permit.take()) {
                breaker.record(permit, Verdict::Ignored, None);
            }
        }
    }
}

impl Call {
    pub(crate) fn new(
        http: reqwest::Client,
        policies: Arc<Policies>,
        which: Which,
        request: reqwest::Request,
    ) -> Self {
        let chosen = policy(&policies, &which);
        let retry = RetryState::new(
            chosen.retry_policy(),
            Some(chosen.total_deadline()),
            request,
        );
        Call {
            attempt: None,
            sleep: None,
            method: Method::GET,
            http,
            policies,
            which,
            retry,
            breaker: None,
            permit: None,
            limit: Duration::ZERO,
            by_deadline: false,
        }
    }
}

fn policy<'a>(policies: &'a Policies, which: &'a Which) -> &'a CompiledPolicy {
    match which {
        Which::Shared(index) => policies.get(*index),
        Which::Custom(policy) => policy,
    }
}

impl Future for Call {
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !this.retry.begun() {
            this.retry.watch();
        }
        let _call = this.retry.observer().enter_call();
        loop {
            let policy = policy(this.policies, this.which);
            let retry = &mut *this.retry;
            // The request to send now: the first, or a retry's after its sleep.
            let next = if !retry.begun() {
                let first = retry.begin();
                if let Ok(request) = &first {
                    // Once per call: the breaker of this endpoint.
                    *this.method = request.method().clone();
                    *this.breaker = policy.breaker_for(request.url());
                }
                Some(first)
            } else if let Some(pause) = this.sleep.as_mut() {
                ready!(pause.as_mut().poll(cx));
                *this.sleep = None;
                Some(retry.next_request())
            } else {
                None
            };
            if let Some(next) = next {
                let mut request = match next {
                    Ok(request) => request,
                    Err(error) => return Poll::Ready(Err(error)),
                };
                // The breaker, per attempt.
                if let Some(breaker) = this.breaker.as_ref() {
                    match breaker.admit() {
                        Ok(permit) => *this.permit = Some((permit, breaker.call_started())),
                        Err(rejection) => {
                            let error = breaker.rejected(rejection, &request);
                            match retry.finish_attempt(Err(error)) {
                                Next::Done(result) => return Poll::Ready(result),
                                Next::Retry(delay) => {
                                    *this.sleep = Some(Box::pin(sleep(delay)));
                                    continue;
                                }
                            }
                        }
                    }
                }
                // The attempt timeout: what is left of the budget, at most the policy's.
                let (limit, by_deadline) =
                    attempt_limit(policy.attempt_timeout(), request.timeout());
                if limit.is_zero() {
                    if let (Some(breaker), Some((permit, _))) =
                        (this.breaker.as_ref(), this.permit.take())
                    {
                        breaker.record(permit, Verdict::Ignored, None);
                    }
                    return Poll::Ready(Err(retry.fail(expired(&request, limit))));
                }
                *this.limit = limit;
                *this.by_deadline = by_deadline;
                *request.timeout_mut() = Some(limit);
                let future = this.http.call(request);
                this.attempt.set(Some(future));
            }
            let Some(future) = this.attempt.as_mut().as_pin_mut() else {
                // Polled again after it finished.
                return Poll::Ready(Err(Error::invalid_config(
                    "request future polled after completion",
                )));
            };
            let result = {
                let _attempt = retry.observer().enter_attempt();
                ready!(future.poll(cx))
            };
            this.attempt.set(None);
            let elapsed = retry.attempt_started().elapsed();
            let result = outcome(policy.classifier(), this.method, result, elapsed)
                .map_err(|e| timed_out(e, *this.limit, *this.by_deadline));
            if let (Some(breaker), Some((permit, started))) =
                (this.breaker.as_ref(), this.permit.take())
            {
                breaker.record(permit, verdict(&result), started);
            }
            match retry.finish_attempt(result) {
                Next::Done(result) => return Poll::Ready(result),
                Next::Retry(delay) => *this.sleep = Some(Box::pin(sleep(delay))),
            }
        }
    }
}
