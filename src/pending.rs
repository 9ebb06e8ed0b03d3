//! The future returned by [`RequestBuilder::send`](crate::RequestBuilder::send).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tower::Service;
use tower::util::Oneshot;

use crate::client::Stack;
use crate::error::Error;

type StackFuture = <Stack as Service<reqwest::Request>>::Future;

pin_project! {
    /// A request on its way through the stack; resolves to the response or the typed error.
    ///
    /// It is as small as the stack's own future: it holds neither the request builder nor a
    /// copy of the service once the call has started.
    #[must_use = "futures do nothing unless polled"]
    pub struct Pending {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        // Nothing happens before the first poll, as with any future (and reqwest's timers need
        // the runtime, which is only certain to be there when polled).
        Start { call: Option<(Stack, reqwest::Request)> },
        Failed { error: Option<Error> },
        Running { #[pin] future: StackFuture },
        // The stack was not ready at once (no layer of ours waits, but a custom one might).
        Waiting { future: Pin<Box<Oneshot<Stack, reqwest::Request>>> },
    }
}

impl Pending {
    /// Sends `request` through `stack` when first polled.
    pub(crate) fn start(stack: Stack, request: reqwest::Request) -> Self {
        Pending {
            state: State::Start {
                call: Some((stack, request)),
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Pending {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for Pending {
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        if let StateProj::Start { call } = state.as_mut().project() {
            let next = match call.take() {
                Some((stack, request)) => begin(stack, request),
                None => State::Failed { error: None },
            };
            state.set(next);
        }
        match state.project() {
            StateProj::Start { .. } => Poll::Pending,
            StateProj::Running { future } => future.poll(cx),
            StateProj::Waiting { future } => future.as_mut().poll(cx),
            StateProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::invalid_config("request future polled after completion")
            }))),
        }
    }
}

fn begin(mut stack: Stack, request: reqwest::Request) -> State {
    // Every layer forwards readiness to reqwest::Client, which is always ready, so one poll
    // with a no-op waker settles it without keeping the request and the service around.
    let mut cx = Context::from_waker(Waker::noop());
    match stack.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => State::Running {
            future: stack.call_once(request),
        },
        Poll::Ready(Err(error)) => State::Failed { error: Some(error) },
        Poll::Pending => State::Waiting {
            future: Box::pin(Oneshot::new(stack, request)),
        },
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}
