//! The same rules as tower layers: in a `ServiceBuilder` of your own, as a whole client's policy or
//! one rule at a time.
//!
//! One driver runs every call, whichever way it is made; only what sends each attempt differs:
//!
//! ```text
//! client.get(url).send()        ResilientMiddleware          ServiceBuilder::new()
//!   reqwest::Client               rest of the chain            .layer(ResilientLayer::new(builder)?)
//!          \________________________ | __________________________/      .service(your_service)
//!                                     v
//!    policy → guards (bulkhead, Retry-After hold, rate limit) → hook → breaker → send,
//!    bounded by the attempt timeout (body included; default 10 s) and the deadline (default 30 s)
//!    → classify (success / transient / permanent, sent or not) → hedges race → retry? → wait
//! ```
//!
//! Every path has every rule: endpoint policies, breakers and guards per endpoint, hedging, hooks.
//!
//! # The client as a service
//!
//! [`Client::service`](crate::Client::service) hands out the whole client as a
//! `tower::Service<reqwest::Request>` whose error is [`Error`](crate::Error):
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::testkit::{FaultServer, Reply};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
//!
//! let service = Client::new()?.service();
//! let request = reqwest::Request::new(reqwest::Method::GET, server.url("/flaky").parse()?);
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(server.hits("/flaky"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Under tower-http's layers
//!
//! tower-http's layers (`TraceLayer`, `SetRequestHeader`, `Timeout`, …) take `http::Request`s.
//! [`Client::http_service`](crate::Client::http_service) is the client in that form (an
//! [`HttpService`](crate::HttpService): `http::Request<B>` in, `http::Response<reqwest::Body>`
//! out), and [`HttpLayer`](crate::HttpLayer) puts the same form over a `ResilientLayer` stack of
//! your own:
//!
//! ```
//! use http_body_util::BodyExt;
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::{Client, HttpLayer, ResilientLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http::trace::TraceLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/items", [Reply::status(503), Reply::ok("[]")]);
//!
//! let client = Client::new()?;
//! let service = ServiceBuilder::new()
//!     .layer(TraceLayer::new_for_http())
//!     .service(client.http_service());
//! let request = http::Request::get(server.url("/items")).body(String::new())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "[]");
//! assert_eq!(server.hits("/items"), 2, "retried under the TraceLayer");
//!
//! // The same over a service of yours.
//! let service = ServiceBuilder::new()
//!     .layer(TraceLayer::new_for_http())
//!     .layer(HttpLayer)
//!     .layer(ResilientLayer::new(Client::builder())?)
//!     .service(reqwest::Client::new());
//! # let _ = service;
//! # Ok(())
//! # }
//! ```
//!
//! These layers see each call once, retries included, and its final response or error. Layers
//! around each attempt go in [`attempt_layer`](crate::ClientBuilder::attempt_layer) or below
//! `ResilientLayer`, over `reqwest::Request`.
//!
//! # A client's whole policy over your service: `ResilientLayer`
//!
//! [`ResilientLayer::new(builder)`](crate::ResilientLayer) puts the policies a
//! [`ClientBuilder`](crate::ClientBuilder) describes (per-endpoint rules, guards and hedging
//! included) over any `Service<reqwest::Request, Response = reqwest::Response>` of yours:
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::{Client, ResilientLayer};
//! use resilient_http::testkit::{FaultServer, Reply};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/items", [Reply::status(502), Reply::ok("[]")]);
//!
//! // Turn reqwest's own HTTP/2 retry off: every request the server sees is then one of our attempts.
//! let http = reqwest::Client::builder().retry(reqwest::retry::never()).build()?;
//! let service = ServiceBuilder::new()
//!     .layer(ResilientLayer::new(Client::builder().attempt_timeout(Duration::from_secs(2)))?)
//!     .service(http);
//! let request = reqwest::Request::new(reqwest::Method::GET, server.url("/items").parse()?);
//! assert_eq!(service.oneshot(request).await?.status(), 200);
//! assert_eq!(server.hits("/items"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # One rule at a time
//!
//! Each single-purpose layer also works alone, and they compose by hand, outermost first:
//! [`TotalDeadlineLayer`](crate::timeout::TotalDeadlineLayer),
//! [`RetryLayer`](crate::retry::RetryLayer),
//! [`CircuitBreakerLayer`](crate::breaker::CircuitBreakerLayer),
//! [`AttemptTimeoutLayer`](crate::timeout::AttemptTimeoutLayer),
//! [`ClassifyLayer`](crate::classify::ClassifyLayer). There an `AttemptTimeoutLayer` sees only what
//! is left of the deadline, not the call's whole budget, so give it an attempt timeout no longer
//! than your deadline. The hand-stacked layers have no per-endpoint policies, hence no overload
//! guards; use `ResilientLayer` for those.
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::breaker::{BreakerConfig, CircuitBreakerLayer};
//! use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
//! use resilient_http::retry::{RetryLayer, RetryPolicy};
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
//!
//! let stack = ServiceBuilder::new()
//!     .layer(TotalDeadlineLayer::new(Duration::from_secs(5)))
//!     .layer(RetryLayer::new(RetryPolicy::builder().max_attempts(3).build()?))
//!     .layer(CircuitBreakerLayer::new(BreakerConfig::default()))
//!     .layer(AttemptTimeoutLayer::new(Duration::from_secs(2)))
//!     .layer(ClassifyLayer::new(DefaultClassifier))
//!     .service(reqwest::Client::new());
//! let request = reqwest::Request::new(reqwest::Method::GET, server.url("/flaky").parse()?);
//! assert_eq!(stack.oneshot(request).await?.status(), 200);
//! assert_eq!(server.hits("/flaky"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Layers of yours inside the client
//!
//! [`ClientBuilder::attempt_layer`](crate::ClientBuilder::attempt_layer) runs a tower layer around
//! each attempt (over the client's `reqwest::Client`, inside the retries), and
//! [`ClientBuilder::layer`](crate::ClientBuilder::layer) around each whole call; see
//! [retries](super::retries#the-request-changed-per-attempt).
//!
//! # reqwest-middleware
//!
//! Already on `reqwest_middleware::ClientWithMiddleware`? Add the same policies as a middleware,
//! [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) (feature `reqwest-middleware`, on
//! by default), in place of reqwest-retry's `RetryTransientMiddleware`:
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::middleware::ResilientMiddleware;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/gone", [Reply::status(404)]);
//!
//! // reqwest's own HTTP/2 retry off, so every request the server sees is one of our attempts.
//! let http = reqwest::Client::builder().retry(reqwest::retry::never()).build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(ResilientMiddleware::new(Client::builder())?)
//!     .build();
//!
//! let err = client.get(server.url("/gone")).send().await.err().ok_or("a 404 is an error")?;
//! let typed = ResilientMiddleware::error(&err).ok_or("ours")?;
//! assert_eq!(typed.status().map(|s| s.as_u16()), Some(404));
//! # Ok(())
//! # }
//! ```
//!
//! The middleware runs the client's own driver over the rest of the chain, so every rule applies
//! there too. The builder's `reqwest_client(..)` and `connect_timeout` are not used there (the
//! chain has its own client), and a builder that sets attempt layers is refused (put them in the
//! chain instead). With reqwest-tracing, add its `TracingMiddleware` after ours, for one CLIENT
//! span per exchange ([observability](super::observability#next-to-reqwest-tracing)). Coming
//! from reqwest-retry: [`migrating`](super::migrating).
