//! The futures returned by [`RequestBuilder::send`](crate::RequestBuilder::send) and
//! [`RequestBuilder::send_with`](crate::RequestBuilder::send_with).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::call::Call;
use crate::error::Error;
use crate::hook::BoxFuture;
use crate::read::{Read, Success};

/// A call, the same behind the client's outer layers, or the error that kept it from starting.
pub(crate) enum State<O> {
    Failed(Option<Error>),
    // Boxed, as reqwest boxes its own: the call is some 900 bytes, and the caller's futures
    // (and every move of them) would otherwise carry it all; one allocation costs less.
    Running(Box<Call<O>>),
    Outer(BoxFuture<Result<O, Error>>),
}

impl<O: Success> Future for State<O> {
    type Output = Result<O, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<O, Error>> {
        let this = self.get_mut();
        match this {
            State::Running(call) => Pin::new(&mut **call).poll(cx),
            State::Outer(future) => {
                let output = std::task::ready!(future.as_mut().poll(cx));
                // An async block must not be polled again.
                *this = State::Failed(None);
                Poll::Ready(output)
            }
            State::Failed(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(Error::polled_after_completion))),
        }
    }
}

/// A request on its way through its policy; resolves to the response or the typed error.
///
/// Nothing happens before it is first polled, as with any future. Dropping it cancels the
/// call at once, whatever it was doing.
#[must_use = "futures do nothing unless polled"]
pub struct Pending {
    state: State<reqwest::Response>,
}

impl Pending {
    pub(crate) fn new(state: State<reqwest::Response>) -> Self {
        Pending { state }
    }

    pub(crate) fn call(call: Box<Call<reqwest::Response>>) -> Self {
        Pending {
            state: State::Running(call),
        }
    }
}

impl Future for Pending {
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().state).poll(cx)
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

/// A request whose response is read inside each attempt by a reader of yours; resolves to
/// what the reader returned, or the typed error. See
/// [`RequestBuilder::send_with`](crate::RequestBuilder::send_with).
#[must_use = "futures do nothing unless polled"]
pub struct Reading<T> {
    state: State<Read<T>>,
}

impl<T: Send + 'static> Reading<T> {
    pub(crate) fn new(state: State<Read<T>>) -> Self {
        Reading { state }
    }
}

impl<T: Send + 'static> Future for Reading<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().state)
            .poll(cx)
            .map(|result| result.map(|read| read.value))
    }
}

impl<T> std::fmt::Debug for Reading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading").finish_non_exhaustive()
    }
}
