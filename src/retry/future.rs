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
use crate::hedge::race::answered;
use crate::hedge::race::{Event, Race, Runner};
use crate::hook::BoxFuture;
use crate::overload::gate::{self, Gate, Waited};

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
        // The endpoint's breaker (in the breaker layer below), if the guards need to know
        // whether it will turn an attempt away: see `Guards::admit`.
        breaker: Option<Arc<Breaker>>,
        // The attempts in flight while hedging (see `crate::hedge`).
        race: Option<Box<Race<Pin<Box<S::Future>>, ()>>>,
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
        // The endpoint's guards keep the request back for a while (see `gate`).
        Gated { waiting: BoxFuture<Waited> },
        // An attempt and its hedges are in flight, in `race`.
        Racing,
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
            breaker,
            race: None,
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if matches!(this.state.as_ref().get_ref(), State::Start) {
            this.retry.watch();
        }
        let _call = this.retry.observer().enter_call();
        loop {
            let breaker = this.breaker.as_deref();
            // What the endpoint's guards make of the next request, if this step has one.
            let gated = match this.state.as_mut().project() {
                StateProj::Start => match this.retry.begin() {
                    Ok(()) => gate::enter(this.retry, breaker),
                    Err(error) => Gate::Over(error),
                },
                StateProj::Gated { waiting } => {
                    let waited = ready!(waiting.as_mut().poll(cx));
                    gate::waited(this.retry, waited, breaker)
                }
                StateProj::Racing => {
                    let Some(race) = this.race.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::polled_after_completion()));
                    };
                    let result = match ready!(race.poll(cx)) {
                        Event::Hedge => {
                            // A hedge needs a service ready now: it never waits.
                            let mut inner = this.inner.clone();
                            if !matches!(inner.poll_ready(cx), Poll::Ready(Ok(()))) {
                                this.retry.hedge_not_ready();
                            } else if let Some((request, slot)) = this.retry.hedge(breaker) {
                                let future = {
                                    let _attempt = slot.enter();
                                    Box::pin(inner.call(request))
                                };
                                let runner = Runner {
                                    future,
                                    slot,
                                    attempt: (),
                                };
                                race.push(runner, this.retry.hedges_after());
                            }
                            continue;
                        }
                        Event::Ended(result, slot, ()) => {
                            this.retry.put_slot(slot);
                            if let Err(error) = &result
                                && this.retry.keeps_racing(error, race.running())
                            {
                                continue;
                            }
                            let answered = answered(&result);
                            race.cancel(this.retry, answered, drop);
                            result
                        }
                    };
                    *this.race = None;
                    let next = this.retry.finish_attempt(result);
                    if let Some(result) = followed(this.state.as_mut(), next) {
                        return Poll::Ready(result);
                    }
                    continue;
                }
                StateProj::Calling { future } => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(future.poll(cx))
                    };
                    let next = this.retry.finish_attempt(result);
                    if let Some(result) = followed(this.state.as_mut(), next) {
                        return Poll::Ready(result);
                    }
                    continue;
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                    continue;
                }
                StateProj::Ready => match ready!(this.inner.poll_ready(cx)) {
                    Ok(()) => match this.retry.next_request() {
                        Ok(()) => gate::admit(this.retry, breaker),
                        Err(error) => Gate::Over(error),
                    },
                    Err(error) => Gate::Over(this.retry.fail(error)),
                },
                StateProj::Done => return Poll::Ready(Err(Error::polled_after_completion())),
            };
            match gated {
                Gate::Out => {
                    let request = match this.retry.take_request() {
                        Ok(request) => request,
                        Err(error) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    };
                    let future = {
                        let _attempt = this.retry.observer().enter_attempt();
                        this.inner.call(request)
                    };
                    match this.retry.hedges_after() {
                        None => this.state.set(State::Calling { future }),
                        Some(after) => {
                            let first = Runner {
                                future: Box::pin(future),
                                slot: this.retry.take_slot(),
                                attempt: (),
                            };
                            *this.race = Some(Box::new(Race::new(first, after)));
                            this.state.set(State::Racing);
                        }
                    }
                }
                Gate::Wait(waiting) => this.state.set(State::Gated { waiting }),
                // Recorded as an attempt that was not sent, like a breaker's refusal.
                Gate::Refused(error) => {
                    let next = this.retry.finish_attempt(Err(error));
                    if let Some(result) = followed(this.state.as_mut(), next) {
                        return Poll::Ready(result);
                    }
                }
                Gate::Over(error) => {
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

/// What follows an attempt, in `state`: the call's result when it is over (`state` is then
/// `Done`), else `None` and `state` sleeps before the next attempt.
fn followed<F>(
    mut state: Pin<&mut State<F>>,
    next: Next,
) -> Option<Result<reqwest::Response, Error>> {
    match next {
        Next::Done(result) => {
            state.set(State::Done);
            Some(result)
        }
        Next::Retry(delay) => {
            state.set(State::Sleeping {
                sleep: Box::pin(sleep(delay)),
            });
            None
        }
        // At once: as after a sleep, without one.
        Next::Resend(pause) if pause.is_zero() => {
            state.set(State::Ready);
            None
        }
        Next::Resend(pause) => {
            state.set(State::Sleeping {
                sleep: Box::pin(sleep(pause)),
            });
            None
        }
    }
}
