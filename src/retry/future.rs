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
        Calling { #[pin] future: F },
        Failed { error: Option<Error> },
        // Boxed: only calls that retry pay for a timer entry.
        Sleeping { sleep: Pin<Box<Sleep>> },
        // Slept; waiting for the inner service to be ready for the next attempt.
        Ready,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<reqwest::Request>,
{
    pub(super) fn new(future: S::Future, inner: S, retry: RetryState) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            inner,
            retry,
        }
    }

    pub(super) fn failed(error: Error, inner: S, retry: RetryState) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
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
        let _call = this.retry.observer().enter_call();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(future.poll(cx))
                    };
                    match this.retry.finish_attempt(result) {
                        Next::Done(result) => return Poll::Ready(result),
                        Next::Retry(delay) => this.state.set(State::Sleeping {
                            sleep: Box::pin(sleep(delay)),
                        }),
                    }
                }
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| Error::invalid_config("polled after completion"));
                    return Poll::Ready(Err(error));
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(error) = ready!(this.inner.poll_ready(cx)) {
                        return Poll::Ready(Err(this.retry.fail(error)));
                    }
                    let request = match this.retry.next_request() {
                        Ok(request) => request,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    let future = {
                        let _attempt = this.retry.observer().enter_attempt();
                        this.inner.call(request)
                    };
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}
