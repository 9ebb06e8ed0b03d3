use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::Service;

use crate::call::{Call, ServiceSender, SortedLayers};
use crate::error::Error;

/// The future of [`Retry`](super::Retry): the one driver of every call (the client's own),
/// sending each attempt through the layers below.
pub struct ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    // Not boxed: a future of a tower stack is the caller's to place (the old retry future
    // was as large).
    call: Call<reqwest::Response, ServiceSender<S, SortedLayers>>,
}

impl<S> ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    pub(super) fn new(call: Call<reqwest::Response, ServiceSender<S, SortedLayers>>) -> Self {
        ResponseFuture { call }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().call).poll(cx)
    }
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
