//! The same policies, retries, breakers and typed errors for `reqwest_middleware` users
//! (feature `reqwest-middleware`, on by default).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use resilient_http::middleware::ResilientMiddleware;
//!
//! let resilience = ResilientMiddleware::new(resilient_http::Client::builder())?;
//! // reqwest's own retry off: every try is one of ours (see below).
//! let http = reqwest::Client::builder()
//!     .retry(reqwest::retry::never())
//!     .build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(resilience)
//!     .build();
//! match client.get("http://127.0.0.1:8080/items").send().await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(err) => match ResilientMiddleware::error(&err) {
//!         Some(typed) => println!("{:?} after {} attempts", typed.kind(), typed.attempts().len()),
//!         None => println!("{err}"),
//!     },
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Each attempt runs the rest of the middleware chain (`next.run`) with a copy of the request
//! extensions as they were when this middleware was reached; what later middlewares write
//! into their copy is not seen by earlier ones. Put this middleware last in the chain unless a
//! later one should run once per attempt (a signer, say).
//!
//! **Criticality.** A request's [`Criticality`] (how much it matters when its dependency is
//! overloaded: see [`EndpointPolicy::throttle`](crate::policy::EndpointPolicy::throttle)) is
//! its policy's, unless a `Criticality` value is in its extensions:
//!
//! ```no_run
//! # async fn run(client: reqwest_middleware::ClientWithMiddleware) -> reqwest_middleware::Result<()> {
//! use resilient_http::overload::Criticality;
//!
//! let response = client
//!     .get("http://127.0.0.1:8080/recommendations")
//!     .with_extension(Criticality::Sheddable)
//!     .send()
//!     .await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! **Timeouts.** The middleware never sees the chain's `reqwest::Client`, so the attempt
//! timeout is always the policy's ([`attempt_timeout`](crate::ClientBuilder::attempt_timeout),
//! 10 s by default), set as each attempt's request timeout: in reqwest that **replaces a
//! `timeout` set on the chain's client**. Set the attempt timeout in the policy, not on that
//! client. Its `connect_timeout` and `read_timeout` do apply (the policies' `connect_timeout`
//! does not: a WARN at build says so).
//!
//! With reqwest-tracing, add its `TracingMiddleware` **after** this one, so that each attempt
//! runs it: each exchange on the wire then has one OpenTelemetry CLIENT span (reqwest-tracing's,
//! inside this middleware's `attempt` span, which is `otel.kind = "internal"` here). Before
//! this one, its single span would stand for the whole call, retries included. See
//! [Next to reqwest-tracing](crate::telemetry#next-to-reqwest-tracing).
//!
//! ```no_run
//! # fn chain() -> Result<(), Box<dyn std::error::Error>> {
//! # use resilient_http::middleware::ResilientMiddleware;
//! let http = reqwest::Client::builder().retry(reqwest::retry::never()).build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(ResilientMiddleware::new(resilient_http::Client::builder())?)
//!     .with(reqwest_tracing::TracingMiddleware::default())
//!     .build();
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! The `reqwest::Client` under the chain is yours, and so is its retry. reqwest's default
//! resends a request that HTTP/2 refused (`REFUSED_STREAM`, or a graceful `GOAWAY` naming it
//! unprocessed) up to twice within one of this middleware's attempts, unseen by the history,
//! spans, metrics and breaker. Build it with
//! `reqwest::Client::builder().retry(reqwest::retry::never())`, as above, and each one is in the
//! history here, resent without spending an attempt when that is safe (see
//! [`retry::MAX_RESENDS`](crate::retry::MAX_RESENDS)). (hyper, below reqwest, still resends a
//! request it had not begun to write when a pooled connection turns out to be closed; the server
//! never saw that one.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::call::{Call, Failed, Sender, Sent, Which};
use crate::classify::{TransportError, foreign_error};
use crate::client::ClientBuilder;
use crate::error::Error;
use crate::overload::Criticality;
use crate::policy::Policies;
use crate::read::Reader;

/// A `reqwest_middleware::Middleware` that applies a [`Client`](crate::Client)'s policies.
#[derive(Clone, Debug)]
pub struct ResilientMiddleware {
    policies: Arc<Policies>,
}

impl ResilientMiddleware {
    /// The policies, retries and breakers that `builder` describes (its `reqwest_client` and
    /// `connect_timeout` are not used: the middleware client has its own).
    pub fn new(builder: ClientBuilder) -> Result<Self, Error> {
        Ok(ResilientMiddleware {
            policies: Arc::new(builder.build_policies(None, None)?),
        })
    }

    /// The Redis connection this middleware shares limits through, as
    /// [`Client::fleet`](crate::Client::fleet); `None` without one.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fleet(&self) -> Option<crate::fleet::Fleet> {
        self.policies.fleet.clone()
    }

    /// The typed error inside a `reqwest_middleware::Error` that this middleware returned.
    pub fn error(error: &reqwest_middleware::Error) -> Option<&Error> {
        match error {
            reqwest_middleware::Error::Middleware(inner) => inner.downcast_ref::<Error>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }
}

#[async_trait::async_trait]
impl Middleware for ResilientMiddleware {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let which = Which::Shared(self.policies.select_index(request.method(), request.url()));
        let rest = RestOfChain {
            next,
            extensions: extensions.clone(),
        };
        // The one driver, as the client's: the request's `.timeout(d)` is its deadline, if
        // shorter than the policy's.
        // Not boxed again: it lives in this middleware's future, boxed already.
        let mut call = Call::unboxed(
            rest,
            self.policies.clone(),
            which,
            request,
            Reader::response(),
            false,
        );
        // The request's criticality, if the caller put one in the extensions.
        if let Some(criticality) = extensions.get::<Criticality>() {
            call.set_criticality(*criticality);
        }
        call.await.map_err(reqwest_middleware::Error::middleware)
    }
}

/// The rest of the middleware chain, run once per attempt.
struct RestOfChain<'a> {
    next: Next<'a>,
    extensions: Extensions,
}

/// An attempt through the rest of the chain.
struct Running<'a>(
    Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>>,
);

impl Future for Running<'_> {
    type Output = Sent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Sent> {
        self.get_mut().0.as_mut().poll(cx).map(|result| {
            result.map_err(|error| match error.into_reqwest() {
                Ok(error) => Failed::Transport(error),
                // A later middleware's own error.
                Err(error) => Failed::Sorted(foreign_error(error)),
            })
        })
    }
}

impl<'a> Sender for RestOfChain<'a> {
    type Future = Running<'a>;

    // The chain below sends it, where reqwest-tracing's CLIENT span belongs.
    const EXCHANGES: bool = false;

    fn send(&mut self, request: reqwest::Request) -> Running<'a> {
        let next = self.next.clone();
        let mut extensions = self.extensions.clone();
        Running(Box::pin(
            async move { next.run(request, &mut extensions).await },
        ))
    }
}
