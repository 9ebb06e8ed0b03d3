//! A client's policies as one tower layer, over any service that sends `reqwest::Request`s.
//!
//! [`ResilientLayer`] does for a `tower::ServiceBuilder` of your own what the
//! [`Client`](crate::Client) and [`ResilientMiddleware`](crate::middleware::ResilientMiddleware)
//! do: endpoint rules, retries, the breaker and the overload
//! guards (retry budget, `Retry-After` holds, rate limit, bulkhead) of each endpoint, hedging,
//! attempt timeouts, the deadline, classification, hooks. Every call runs the same driver as
//! the client's own, so the two cannot drift; the service below only sends each attempt.
//!
//! ```no_run
//! # async fn run() -> Result<(), resilient_http::Error> {
//! use std::time::Duration;
//! use resilient_http::overload::RateLimitConfig;
//! use resilient_http::policy::EndpointPolicy;
//! use resilient_http::{Client, ResilientLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let resilience = ResilientLayer::new(
//!     Client::builder()
//!         .attempt_timeout(Duration::from_secs(2))
//!         .default_policy(
//!             EndpointPolicy::new().rate_limit(RateLimitConfig::new(50, Duration::from_secs(1))),
//!         ),
//! )?;
//! let http = reqwest::Client::builder()
//!     .retry(reqwest::retry::never())
//!     .build()?;
//! let service = ServiceBuilder::new().layer(resilience).service(http);
//! let request = reqwest::Request::new(
//!     reqwest::Method::GET,
//!     "http://127.0.0.1:8080/items".parse().expect("a valid URL"),
//! );
//! let response = service.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! A request's [`Criticality`](crate::overload::Criticality) (how much it matters when its
//! dependency is overloaded) is its policy's
//! ([`EndpointPolicy::criticality`](crate::policy::EndpointPolicy::criticality)): a
//! `reqwest::Request` has no extensions to carry one of its own (reqwest 0.13 keeps them
//! private), so route requests that differ to rules that say so. The client's
//! [`RequestBuilder::criticality`](crate::RequestBuilder::criticality) and the middleware's
//! extensions set it per request.
//!
//! The service below sends each attempt's request, with the attempt's limit as its
//! `timeout`: reqwest enforces it, body included; for a service that ignores it, the attempt
//! ends at the limit anyway (a timer of the layer's own, a few milliseconds later), though a
//! body read after the call is then unbounded. Its errors are sorted as an
//! [attempt layer](crate::ClientBuilder::attempt_layer)'s are: reqwest's by the policy's
//! classifier, ours as they are, any other as a permanent failure (a tower timeout as an
//! attempt timeout). The attempt's limit is the policy's
//! ([`attempt_timeout`](crate::ClientBuilder::attempt_timeout), 10 s by default): set as the
//! request's timeout, it **replaces a `timeout` set on a `reqwest::Client` below** (a WARN
//! says so when this layer is put right over such a client), so set the attempt timeout in
//! the policy, not there (that client's `connect_timeout` and
//! `read_timeout` do apply). The builder's `connect_timeout` is not used, and its `reqwest(..)`,
//! `reqwest_client(..)`, attempt layers and outer layers are refused: the service below is
//! all of them, and your layers go around or below this one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::call::{AnyService, Call, Failed, ServiceSender, Which, from_layers};
use crate::client::{ClientBuilder, ReqwestTimeouts};
use crate::error::{BoxError, Error};
use crate::policy::Policies;
use crate::read::Reader;

/// A client's policies as a tower layer; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct ResilientLayer {
    policies: Arc<Policies>,
}

impl ResilientLayer {
    /// The policies, retries, breakers and guards that `builder` describes.
    pub fn new(builder: ClientBuilder) -> Result<Self, Error> {
        Ok(ResilientLayer {
            policies: Arc::new(builder.build_policies(None, None)?),
        })
    }

    /// The Redis connection this layer shares limits through, as
    /// [`Client::fleet`](crate::Client::fleet); `None` without one.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fleet(&self) -> Option<crate::fleet::Fleet> {
        self.policies.fleet.clone()
    }
}

impl<S: 'static> Layer<S> for ResilientLayer {
    type Service = Resilient<S>;

    fn layer(&self, inner: S) -> Resilient<S> {
        // A timeout on a reqwest client right below is replaced by each attempt's own: not
        // silently (see the module docs). Read once, when the stack is built.
        if let Some(client) = (&inner as &dyn std::any::Any).downcast_ref::<reqwest::Client>()
            && let Some(theirs) = ReqwestTimeouts::of_client(client).timeout
        {
            let ours = self.policies.default.attempt_timeout();
            tracing::warn!(
                target: "resilient_http",
                "the reqwest::Client below ResilientLayer has a timeout of {theirs:?}, which each \
                 attempt's own timeout replaces (the policy's attempt_timeout, {ours:?} by \
                 default): set attempt_timeout on the ClientBuilder instead"
            );
        }
        Resilient {
            inner,
            policies: self.policies.clone(),
        }
    }
}

/// The service made by [`ResilientLayer`].
#[derive(Clone, Debug)]
pub struct Resilient<S> {
    inner: S,
    policies: Arc<Policies>,
}

inner_service_accessors!(Resilient);

impl<S> Service<reqwest::Request> for Resilient<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(|error| {
            match from_layers(error.into(), "the inner service") {
                Failed::Transport(error) => Error::from(error),
                Failed::Sorted(error) => error,
            }
        })
    }

    fn call(&mut self, request: reqwest::Request) -> ResponseFuture<S> {
        let index = self.policies.select_index(request.method(), request.url());
        let call = Call::unboxed(
            ServiceSender::<_, AnyService>::take_ready(&mut self.inner),
            self.policies.clone(),
            Which::Shared(index),
            request,
            Reader::response(),
            false,
        );
        ResponseFuture { call }
    }
}

/// The future of [`Resilient`]: the call, from its first poll to its last attempt.
pub struct ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
    S::Error: Into<BoxError>,
{
    // Not boxed: a future of a tower stack is the caller's to place.
    call: Call<reqwest::Response, ServiceSender<S, AnyService>>,
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().call).poll(cx)
    }
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
    S::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
