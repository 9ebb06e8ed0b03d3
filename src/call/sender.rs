//! What sends an attempt's request: the one thing the driver ([`Call`](super::Call)) leaves
//! to its path.
//!
//! Every path runs the same driver, which asks the rules (guards, breaker, classification,
//! retry, hedging, deadline) in one order; only the way out differs:
//! - the client sends on its `reqwest::Client`, or through the user's attempt layers
//!   ([`ClientSender`]);
//! - `ResilientMiddleware` runs the rest of the middleware chain (in `middleware.rs`);
//! - [`ResilientLayer`](crate::resilient::ResilientLayer) calls any tower service of
//!   `reqwest::Request`s ([`ServiceSender`]);
//! - the public [`Retry`](crate::retry::Retry) layer calls the layers a user stacked below it,
//!   which classify, time and break each attempt themselves ([`SortedSender`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::classify::layer_error;
use crate::error::{BoxError, Error};
use crate::extras::AttemptService;
use crate::policy::CompiledPolicy;
use crate::timeout::{Clock, in_layer};

/// What an attempt's request came back with: the response's head, or why not.
pub(crate) type Sent = Result<reqwest::Response, Failed>;

/// Why an attempt's request came back without a response.
pub(crate) enum Failed {
    /// reqwest's own error, for the policy's classifier to sort.
    Transport(reqwest::Error),
    /// An error sorted already: by the layers below, or the sender's own.
    Sorted(Error),
}

/// Sends one attempt's request for the driver.
pub(crate) trait Sender: Unpin {
    /// An attempt on its way.
    type Future: Future<Output = Sent> + Unpin;

    /// Whether the layers below do the attempt's own work: they sort every answer (an `Ok`
    /// is a success), bound the attempt by the request's timeout (where the driver puts what
    /// is left of the call's budget) and keep the endpoint's breaker. The driver then does
    /// none of that itself. Only the public retry layer's stack is so.
    const SORTED: bool = false;

    /// Sends `request`.
    fn send(&mut self, request: reqwest::Request) -> Self::Future;

    /// The call follows `policy`: told once, before the first attempt.
    fn follow(&mut self, _policy: &CompiledPolicy) {}

    /// Whether a hedge due now can go out at once: a hedge never waits for the sender.
    fn ready_now(&mut self, _cx: &mut Context<'_>) -> bool {
        true
    }

    /// Whether a request with no timeout of its own is bounded to `limit` without one (a
    /// reqwest client built with that timeout): the driver then sets none.
    fn bounds_to(&self, _limit: Duration) -> bool {
        false
    }
}

type ReqwestFuture = <reqwest::Client as Service<reqwest::Request>>::Future;

/// The client's way out: its `reqwest::Client`, or the user's attempt layers over it.
pub(crate) struct ClientSender {
    http: reqwest::Client,
    /// The `reqwest::Client`'s own timeout, if the builder made it (see
    /// `Policies::client_timeout`).
    timeout: Option<Duration>,
    /// The policy's attempt layers, if it has any.
    layered: Option<AttemptService>,
}

impl ClientSender {
    pub(crate) fn new(http: reqwest::Client, timeout: Option<Duration>) -> Self {
        ClientSender {
            http,
            timeout,
            layered: None,
        }
    }
}

/// An attempt of the client's on its way.
pub(crate) enum Sending {
    Plain(ReqwestFuture),
    /// Through the user's attempt layers (boxed: it holds the request until they are ready).
    Layered(Pin<Box<Oneshot<AttemptService, reqwest::Request>>>),
}

impl Future for Sending {
    type Output = Sent;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        match self.get_mut() {
            Sending::Plain(sending) => Pin::new(sending)
                .poll(cx)
                .map(|result| result.map_err(Failed::Transport)),
            Sending::Layered(sending) => sending
                .as_mut()
                .poll(cx)
                .map(|result| result.map_err(|e| from_layers(e, "an attempt layer"))),
        }
    }
}

impl Sender for ClientSender {
    type Future = Sending;

    #[inline]
    fn send(&mut self, request: reqwest::Request) -> Sending {
        match &self.layered {
            None => Sending::Plain(self.http.call(request)),
            Some(service) => Sending::Layered(Box::pin(service.clone().oneshot(request))),
        }
    }

    fn follow(&mut self, policy: &CompiledPolicy) {
        self.layered = policy.extras().and_then(|e| e.attempt_service.clone());
    }

    fn bounds_to(&self, limit: Duration) -> bool {
        // Attempt layers always see the limit on the request: some read it.
        self.layered.is_none() && self.timeout == Some(limit)
    }
}

/// An error of tower layers (`what` names them): ours and reqwest's keep their meaning; any
/// other is the layers' own refusal, permanent (or a tower timeout, an attempt timeout).
pub(crate) fn from_layers(error: BoxError, what: &str) -> Failed {
    match error.downcast::<reqwest::Error>() {
        Ok(error) => Failed::Transport(*error),
        Err(error) => Failed::Sorted(layer_error(error, what, || in_layer(Clock::Attempt))),
    }
}

/// Any tower service of `reqwest::Request`s, for [`ResilientLayer`](crate::resilient::ResilientLayer):
/// its errors sorted as an attempt layer's are.
pub(crate) struct ServiceSender<S> {
    inner: S,
    /// Whether `inner` was polled ready for the first attempt.
    ready: bool,
    /// A copy of `inner` polled ready for a hedge (see [`Sender::ready_now`]).
    for_hedge: Option<S>,
}

// Never pinned: the driver only calls it (no `Pin<&mut S>` is ever made).
impl<S> Unpin for ServiceSender<S> {}

impl<S> ServiceSender<S> {
    /// `inner`, polled ready for the first attempt; later attempts wait for a clone of it.
    pub(crate) fn ready(inner: S) -> Self {
        ServiceSender {
            inner,
            ready: true,
            for_hedge: None,
        }
    }
}

/// An attempt through a tower service: the ready service's call, or a clone's readiness and
/// call (boxed: a service's future need not be `Unpin`).
pub(crate) type Calling<S> = Pin<Box<ReadyThenCall<S>>>;

pin_project_lite::pin_project! {
    /// An attempt through a tower service: its call, if it was ready, else a copy's readiness
    /// then its call.
    #[project = ReadyThenCallProj]
    pub(crate) enum ReadyThenCall<S: Service<reqwest::Request>> {
        Called { #[pin] future: S::Future },
        Waiting { #[pin] future: Oneshot<S, reqwest::Request> },
    }
}

impl<S: Service<reqwest::Request>> Future for ReadyThenCall<S> {
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ReadyThenCallProj::Called { future } => future.poll(cx),
            ReadyThenCallProj::Waiting { future } => future.poll(cx),
        }
    }
}

impl<S> ServiceSender<S>
where
    S: Service<reqwest::Request> + Clone,
{
    fn call(&mut self, request: reqwest::Request) -> Calling<S> {
        if let Some(mut ready) = self.for_hedge.take() {
            let future = ready.call(request);
            return Box::pin(ReadyThenCall::Called { future });
        }
        if std::mem::take(&mut self.ready) {
            let future = self.inner.call(request);
            return Box::pin(ReadyThenCall::Called { future });
        }
        let future = self.inner.clone().oneshot(request);
        Box::pin(ReadyThenCall::Waiting { future })
    }

    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        let mut copy = self.inner.clone();
        let ready = matches!(copy.poll_ready(cx), Poll::Ready(Ok(())));
        self.for_hedge = ready.then_some(copy);
        ready
    }
}

/// An attempt through a user's service, its error sorted (see [`from_layers`]).
pub(crate) struct ServiceSending<S: Service<reqwest::Request>>(Calling<S>);

impl<S> Future for ServiceSending<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response>,
    S::Error: Into<BoxError>,
{
    type Output = Sent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        self.get_mut()
            .0
            .as_mut()
            .poll(cx)
            .map(|result| result.map_err(|e| from_layers(e.into(), "the inner service")))
    }
}

impl<S> Sender for ServiceSender<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
    S::Error: Into<BoxError>,
{
    type Future = ServiceSending<S>;

    fn send(&mut self, request: reqwest::Request) -> Self::Future {
        ServiceSending(self.call(request))
    }

    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        ServiceSender::ready_now(self, cx)
    }
}

/// The layers a user stacked under the public [`Retry`](crate::retry::Retry) layer: they
/// classify, time and break each attempt (see [`Sender::SORTED`]).
pub(crate) struct SortedSender<S>(pub(crate) ServiceSender<S>);

/// An attempt through the layers under the retry layer.
pub(crate) struct SortedSending<S: Service<reqwest::Request>>(Calling<S>);

impl<S> Future for SortedSending<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Output = Sent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        self.get_mut()
            .0
            .as_mut()
            .poll(cx)
            .map(|result| result.map_err(Failed::Sorted))
    }
}

impl<S> Sender for SortedSender<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error> + Clone,
{
    type Future = SortedSending<S>;
    const SORTED: bool = true;

    fn send(&mut self, request: reqwest::Request) -> Self::Future {
        SortedSending(self.0.call(request))
    }

    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        self.0.ready_now(cx)
    }
}
