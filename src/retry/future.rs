use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower::Service;

use super::state::{Next, RetryState};
use crate::breaker::Breaker;
use crate::error::Error;
use crate::hook::BoxFuture;
use crate::overload::bulkhead::BulkheadPermit;
use crate::overload::{Admission, Entry};

pin_project! {
    /// The future of [`Retry`](super::Retry).
    pub struct ResponseFuture<S>
    where
        S: Service<reqwest::Request>,
    {
        #[pin]
        state: State<S::Future>,
        inner: S,
        retry: RetryState,
        // The call's place in its endpoint's bulkhead, given back when it ends or is dropped.
        place: Option<BulkheadPermit>,
        // The endpoint's breaker (in the breaker layer below), if the guards need to know
        // whether it will turn an attempt away: see `Guards::admit`.
        breaker: Option<Arc<Breaker>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Not polled yet: the call and its clock start at the first poll (see `CallClock`).
        Start,
        Calling { #[pin] future: F },
        // Boxed: only calls that retry pay for a timer entry.
        Sleeping { sleep: Pin<Box<Sleep>> },
        // Slept; waiting for the inner service to be ready for the next attempt.
        Ready,
        // Queueing for a place in the endpoint's bulkhead, with the first request.
        Queue { queueing: BoxFuture<(Option<BulkheadPermit>, reqwest::Request)> },
        // The endpoint holds the request back (`Retry-After`, rate limit) for a while.
        Held { holding: BoxFuture<reqwest::Request> },
        Done,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<reqwest::Request>,
{
    /// The call of `retry`'s request through `inner`, which was polled ready.
    pub(super) fn new(inner: S, retry: RetryState, breaker: Option<Arc<Breaker>>) -> Self {
        ResponseFuture {
            state: State::Start,
            inner,
            retry,
            place: None,
            breaker,
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if matches!(this.state.as_ref().get_ref(), State::Start) {
            this.retry.watch();
        }
        let _call = this.retry.observer().enter_call();
        loop {
            // The next attempt's request, if this step leads to one.
            let request = match this.state.as_mut().project() {
                StateProj::Start => match this.retry.begin() {
                    Ok(request) => {
                        let (deadline, policy) = (this.retry.deadline(), this.retry.policy_name());
                        match this.retry.guards().map(|g| g.enter(deadline, policy)) {
                            None | Some(Entry::In(None)) => Ok(request),
                            Some(Entry::In(place)) => {
                                *this.place = place;
                                Ok(request)
                            }
                            Some(Entry::Queue(queueing)) => {
                                let queueing = Box::pin(async move { (queueing.await, request) });
                                this.state.set(State::Queue { queueing });
                                continue;
                            }
                            Some(Entry::Full(error)) => {
                                let error = error.with_request(request.method(), request.url());
                                Err(this.retry.fail(error))
                            }
                        }
                    }
                    Err(error) => Err(error),
                },
                StateProj::Queue { queueing } => {
                    let (place, mut request) = ready!(queueing.as_mut().poll(cx));
                    match place {
                        Some(place) => {
                            *this.place = Some(place);
                            this.retry.resume(&mut request);
                            Ok(request)
                        }
                        None => {
                            let policy = this.retry.policy_name();
                            let full = this.retry.guards().map(|guards| guards.full(policy));
                            let error = full.unwrap_or_else(Error::polled_after_completion);
                            let error = error.with_request(request.method(), request.url());
                            Err(this.retry.fail(error))
                        }
                    }
                }
                StateProj::Held { holding } => {
                    let mut request = ready!(holding.as_mut().poll(cx));
                    this.retry.resume(&mut request);
                    Ok(request)
                }
                StateProj::Calling { future } => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(future.poll(cx))
                    };
                    match this.retry.finish_attempt(result) {
                        Next::Done(result) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                        Next::Retry(delay) => this.state.set(State::Sleeping {
                            sleep: Box::pin(sleep(delay)),
                        }),
                    }
                    continue;
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                    continue;
                }
                StateProj::Ready => match ready!(this.inner.poll_ready(cx)) {
                    Ok(()) => this.retry.next_request(),
                    Err(error) => Err(this.retry.fail(error)),
                },
                StateProj::Done => return Poll::Ready(Err(Error::polled_after_completion())),
            };
            let request = match request {
                Ok(request) => request,
                Err(error) => {
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error));
                }
            };
            // Out once the endpoint's guards let it (the same rule as the client's call).
            let (started, deadline) = (this.retry.attempt_started(), this.retry.deadline());
            let policy = this.retry.policy_name();
            let admission = this
                .retry
                .guards()
                .map(|guards| guards.admit(started, deadline, policy, this.breaker.as_deref()));
            match admission {
                None | Some(Admission::Go) => {
                    this.retry.let_out();
                    let future = {
                        let _attempt = this.retry.observer().enter_attempt();
                        this.inner.call(request)
                    };
                    this.state.set(State::Calling { future });
                }
                Some(Admission::Wait(wait)) => {
                    let holding = Box::pin(async move {
                        sleep(wait).await;
                        request
                    });
                    this.state.set(State::Held { holding });
                }
                Some(Admission::Refused(error)) => {
                    let error = error.with_request(request.method(), request.url());
                    match this.retry.finish_attempt(Err(error)) {
                        Next::Done(result) => {
                            this.state.set(State::Done);
                            return Poll::Ready(result);
                        }
                        Next::Retry(delay) => this.state.set(State::Sleeping {
                            sleep: Box::pin(sleep(delay)),
                        }),
                    }
                }
            }
        }
    }
}
