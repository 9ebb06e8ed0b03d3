//! What sends an attempt's request: the one thing the driver ([`Call`](super::Call)) leaves
//! to its path.
//!
//! Every path runs the same driver, which asks the rules (guards, breaker, classification,
//! retry, hedging, deadline) in one order; only the way out differs:
//! - the client sends on its `reqwest::Client`, or through the user's attempt layers
//!   ([`ClientSender`]);
//! - `ResilientMiddleware` runs the rest of the middleware chain (in `middleware.rs`);
//! - [`ResilientLayer`](crate::resilient::ResilientLayer) calls any tower service of
//!   `reqwest::Request`s, and the public [`Retry`](crate::retry::Retry) layer the layers a
//!   user stacked below it, which classify, time and break each attempt themselves
//!   ([`ServiceSender`](super::ServiceSender), in `service_sender.rs`).

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

    /// Whether the attempt is the exchange on the wire, so that its span is OpenTelemetry's
    /// CLIENT span (`otel.kind = "client"`). Not so where the rest of a reqwest-middleware
    /// chain sends it: reqwest-tracing's span there is the CLIENT span, and a second one
    /// around it would count each exchange twice (see the telemetry docs).
    const EXCHANGES: bool = true;

    /// Sends `request`.
    fn send(&mut self, request: reqwest::Request) -> Self::Future;

    /// The call follows `policy`: told once, before the first attempt.
    fn follow(&mut self, _policy: &CompiledPolicy) {}

    /// Whether [`send`](Self::send) does work of its own at once (a tower layer's call: a
    /// breaker's admission, say), whose events then belong to the attempt's span.
    fn works_at_once(&self) -> bool {
        true
    }

    /// Whether a hedge due now can go out at once: a hedge never waits for the sender.
    fn ready_now(&mut self, _cx: &mut Context<'_>) -> bool {
        true
    }

    /// The hedge [`ready_now`](Self::ready_now) said yes to does not go out after all (the
    /// guards, the breaker or the deadline kept it back): what was readied for it goes back.
    fn hedge_not_sent(&mut self) {}

    /// Whether every attempt it sends ends, answered or timed out, by the limit the driver
    /// gives it (the request's timeout, or its own client's, as reqwest enforces either): a
    /// hedge due no sooner than that limit is skipped, since the timeout ends the attempt at
    /// that instant (its timer starts a few µs after the hedge's would), so the driver sets
    /// no timer for it. Not so for a chain of middleware, which may send the request
    /// otherwise.
    fn ends_at_limit(&self) -> bool {
        false
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
    #[inline]
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

    // Always: a call would move the request (some 280 bytes) once more.
    #[inline(always)]
    fn send(&mut self, request: reqwest::Request) -> Sending {
        match &self.layered {
            None => Sending::Plain(self.http.call(request)),
            Some(service) => Sending::Layered(Box::pin(service.clone().oneshot(request))),
        }
    }

    fn works_at_once(&self) -> bool {
        // reqwest's `call` only builds its future; the user's attempt layers may do more.
        self.layered.is_some()
    }

    fn follow(&mut self, policy: &CompiledPolicy) {
        self.layered = policy.extras().and_then(|e| e.attempt_service.clone());
    }

    fn ends_at_limit(&self) -> bool {
        // reqwest's timer: the request's timeout, or the client's (see `bounds_to`). Not
        // through attempt layers, which may keep an attempt longer (a retry of their own).
        self.layered.is_none()
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
