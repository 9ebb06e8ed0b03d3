//! The way out through a tower service: any service of `reqwest::Request`s under
//! [`ResilientLayer`](crate::resilient::ResilientLayer), or the layers a user stacked under the
//! public [`Retry`](crate::retry::Retry) layer.
//!
//! Tower's contract is that a service is polled ready before each call. The first attempt
//! goes to the service the layer above polled ready; each later one to a copy, which waits
//! for readiness inside the attempt, and whose request's timeout (what the driver left of the
//! call's budget) is shortened by that wait; a hedge goes out only if a copy is ready at once.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower::Service;

use super::sender::{Failed, Sender, Sent, from_layers};
use crate::deadline::Propagate;
use crate::error::{BoxError, Error};
use crate::outcome::Delivery;
use crate::policy::CompiledPolicy;
use crate::timeout::{BACKSTOP_GRACE, Clock, ran_out};

/// What the layers under a [`ServiceSender`] already do, and how their errors read.
pub(crate) trait Below<E> {
    /// See [`Sender::SORTED`].
    const SORTED: bool;

    /// The service's error, as the driver reads an attempt's failure.
    fn failed(error: E) -> Failed;
}

/// Any service: reqwest's errors for the classifier, ours as they are, any other the
/// service's own refusal (see [`from_layers`]). It may ignore the request's timeout, so each
/// attempt has a backstop of its own.
pub(crate) enum AnyService {}

impl<E: Into<BoxError>> Below<E> for AnyService {
    const SORTED: bool = false;

    fn failed(error: E) -> Failed {
        from_layers(error.into(), "the inner service")
    }
}

/// The layers under the public retry layer: they classify, time and break each attempt,
/// and their errors are ours.
pub(crate) enum SortedLayers {}

impl Below<Error> for SortedLayers {
    const SORTED: bool = true;

    fn failed(error: Error) -> Failed {
        Failed::Sorted(error)
    }
}

/// A tower service as the driver's way out; see the [module docs](self).
pub(crate) struct ServiceSender<S, B> {
    inner: S,
    /// Whether `inner` was polled ready for the first attempt.
    ready: bool,
    /// A copy of `inner` polled ready for a hedge (see [`Sender::ready_now`]).
    for_hedge: Option<S>,
    /// The policy's deadline propagation, if on: a wait for readiness shortens the limit the
    /// driver wrote, and the server must not be told more than is left.
    propagate: Option<Propagate>,
    below: PhantomData<fn() -> B>,
}

// Never pinned: the driver only calls it (no `Pin<&mut S>` is ever made).
impl<S, B> Unpin for ServiceSender<S, B> {}

impl<S: Clone, B> ServiceSender<S, B> {
    /// The service `ready` was polled ready (by the layer above) for the first attempt; a copy
    /// stays in its place for the next call. Nothing starts until the call is first polled,
    /// its clock included (see `CallClock`), as on every path.
    pub(crate) fn take_ready(ready: &mut S) -> Self {
        let copy = ready.clone();
        ServiceSender {
            inner: std::mem::replace(ready, copy),
            ready: true,
            for_hedge: None,
            propagate: None,
            below: PhantomData,
        }
    }
}

impl<S, B> Sender for ServiceSender<S, B>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
    B: Below<S::Error>,
{
    type Future = Pin<Box<Calling<S, B>>>;
    const SORTED: bool = B::SORTED;

    fn send(&mut self, request: reqwest::Request) -> Self::Future {
        // A backstop for a service that ignores the request's timeout (the limit the driver
        // set): the layers under the retry layer keep their own.
        let backstop = match request.timeout() {
            Some(limit) if !B::SORTED => Instant::now()
                .checked_add(*limit + BACKSTOP_GRACE)
                .map(sleep_until),
            _ => None,
        };
        let state = if let Some(mut ready) = self.for_hedge.take() {
            State::Called {
                future: ready.call(request),
            }
        } else if std::mem::take(&mut self.ready) {
            // The service the layer above polled ready: tower's readiness is an instance's.
            State::Called {
                future: self.inner.call(request),
            }
        } else {
            State::Waiting {
                service: self.inner.clone(),
                request: Some(request),
                since: Instant::now(),
                propagate: self.propagate.clone(),
            }
        };
        Box::pin(Calling {
            state,
            backstop,
            below: PhantomData,
        })
    }

    fn follow(&mut self, policy: &CompiledPolicy) {
        if let Some(propagate) = policy.propagate() {
            self.propagate = Some(propagate.clone());
        }
    }

    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        let mut copy = self.inner.clone();
        let ready = matches!(copy.poll_ready(cx), Poll::Ready(Ok(())));
        self.for_hedge = ready.then_some(copy);
        ready
    }

    fn hedge_not_sent(&mut self) {
        self.for_hedge = None;
    }
}

pin_project! {
    /// An attempt through a tower service (boxed by the sender: a service's future need not
    /// be `Unpin`).
    pub(crate) struct Calling<S: Service<reqwest::Request>, B> {
        #[pin]
        state: State<S>,
        #[pin]
        backstop: Option<Sleep>,
        below: PhantomData<fn() -> B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<reqwest::Request>> {
        // A copy of the service waits to be ready, holding the request since `since`.
        Waiting {
            service: S,
            request: Option<reqwest::Request>,
            since: Instant,
            propagate: Option<Propagate>,
        },
        Called { #[pin] future: S::Future },
    }
}

impl<S, B> Future for Calling<S, B>
where
    S: Service<reqwest::Request, Response = reqwest::Response>,
    B: Below<S::Error>,
{
    type Output = Sent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        let mut this = self.project();
        if let Some(backstop) = this.backstop.as_mut().as_pin_mut()
            && backstop.poll(cx).is_ready()
        {
            // The driver names the limit and the clock (see `timeout::timed_out`).
            return Poll::Ready(Err(Failed::Sorted(ran_out(
                Clock::Attempt,
                Delivery::MaybeSent,
                None,
            ))));
        }
        loop {
            let called = match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    return future.poll(cx).map(|result| result.map_err(B::failed));
                }
                StateProj::Waiting {
                    service,
                    request,
                    since,
                    propagate,
                } => {
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(B::failed(error)));
                    }
                    let Some(mut request) = request.take() else {
                        return Poll::Ready(Err(Failed::Sorted(Error::polled_after_completion())));
                    };
                    // What was left of the budget when the request was made, less the wait.
                    let waited = since.elapsed();
                    if let Some(left) = request.timeout_mut() {
                        *left = left.saturating_sub(waited);
                    }
                    // The server is told what is left now; nothing left, and it is not sent.
                    if let (Some(propagate), Some(&left)) = (propagate.as_ref(), request.timeout())
                        && let Err(error) = propagate.stamp(&mut request, left, Clock::Attempt)
                    {
                        return Poll::Ready(Err(Failed::Sorted(error)));
                    }
                    service.call(request)
                }
            };
            this.state.set(State::Called { future: called });
        }
    }
}
