//! The future returned by [`RequestBuilder::send`](crate::RequestBuilder::send).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::call::Call;
use crate::error::Error;

pin_project! {
    /// A request on its way through its policy; resolves to the response or the typed error.
    ///
    /// Nothing happens before it is first polled, as with any future.
    #[must_use = "futures do nothing unless polled"]
    pub struct Pending {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed { error: Option<Error> },
        Running { #[pin] call: Call },
    }
}

impl Pending {
    pub(crate) fn call(call: Call) -> Self {
        Pending {
            state: State::Running { call },
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
        match self.project().state.project() {
            StateProj::Running { call } => call.poll(cx),
            StateProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::invalid_config("request future polled after completion")
            }))),
        }
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}
