use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tower::Service;

use super::state::{Next, RetryState};
use crate::error::Error;

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
        Done,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<reqwest::Request>,
{
    /// The call of `retry`'s request through `inner`, which was polled ready.
    pub(super) fn new(inner: S, retry: RetryState) -> Self {
        ResponseFuture {
            state: State::Start,
            inner,
            retry,
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
                StateProj::Start => this.retry.begin(),
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
            match request {
                Ok(request) => {
                    let future = {
                        let _attempt = this.retry.observer().enter_attempt();
                        this.inner.call(request)
                    };
                    this.state.set(State::Calling { future });
                }
                Err(error) => {
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}
