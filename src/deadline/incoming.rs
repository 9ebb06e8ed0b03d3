//! The server's side: a tower layer that reads the deadline an incoming request carries and
//! runs its handler inside a [`scope`](super::scope) of it.

use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderName;
use tower::{Layer, Service};

use tokio::time::Instant;

use super::scope::ScopeFuture;
use super::wire::{self, Format};
use crate::redact::Echo;

/// Runs each incoming request's handler inside a deadline [`scope`](super::scope) of what its
/// caller said it will wait: gRPC's `grpc-timeout`, or a header of integer milliseconds
/// (Envoy's `x-envoy-expected-rq-timeout-ms`, or this crate's own outgoing propagation).
/// Every call the handler makes with this crate then ends by its caller's deadline, so a
/// service in the middle of a chain passes it on without code.
///
/// A request without the header runs as it would without the layer; a malformed value is
/// ignored, with one DEBUG event (showing at most 64 bytes of it). A value of zero is a
/// caller that has given up: the handler's calls fail at once, not sent.
///
/// The scope is a task-local, polled with the inner service's future: put this layer
/// **below** any layer that moves the request to another task (a `tower::buffer::Buffer`,
/// anything that spawns), or the handler runs outside the scope.
///
/// Named as tower-http names its layers (`TimeoutLayer`, `PropagateHeaderLayer`): a
/// constructor per source of the value, the header as a [`HeaderName`], options as
/// chained setters, the service [`IncomingDeadline`] and its future [`ScopeFuture`].
///
/// With hyper (axum takes it the same way: `Router::new().route(..).layer(..)`):
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use hyper::body::Incoming;
/// use resilient_http::deadline::{self, IncomingDeadlineLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// async fn handler(_request: Request<Incoming>) -> Result<Response<String>, Infallible> {
///     // Every call made here with resilient-http ends by the caller's deadline.
///     let left = deadline::remaining();
///     Ok(Response::new(format!("{left:?}")))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let service = ServiceBuilder::new()
///     .layer(IncomingDeadlineLayer::grpc_timeout().max(Duration::from_secs(30)))
///     .service_fn(handler);
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     while let Ok((stream, _)) = listener.accept().await {
///         // hyper calls by `&self`: each request gets its own copy of the tower service
///         // (hyper-util's `TowerToHyperService`, feature `service`, does the same).
///         let service = service.clone();
///         let service = hyper::service::service_fn(move |request| service.clone().oneshot(request));
///         let io = hyper_util::rt::TokioIo::new(stream);
///         tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
///     }
/// });
///
/// // A caller that will wait 5 s.
/// let answer = reqwest::Client::new()
///     .get(format!("http://{addr}/"))
///     .header("grpc-timeout", "5S")
///     .send()
///     .await?
///     .text()
///     .await?;
/// assert!(answer.starts_with("Some(4."), "{answer}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct IncomingDeadlineLayer {
    header: HeaderName,
    format: Format,
    max: Option<Duration>,
}

impl IncomingDeadlineLayer {
    /// Reads gRPC's `grpc-timeout` (`TimeoutValue TimeoutUnit`: up to 8 digits, then `H`, `M`,
    /// `S`, `m`, `u` or `n`; `250m` is 250 milliseconds).
    pub fn grpc_timeout() -> Self {
        IncomingDeadlineLayer {
            header: HeaderName::from_static("grpc-timeout"),
            format: Format::GrpcTimeout,
            max: None,
        }
    }

    /// Reads `header` as a number of whole milliseconds, such as
    /// `x-envoy-expected-rq-timeout-ms: 800` (the name, as
    /// [`DeadlineHeader::millis`](super::DeadlineHeader::millis) for what a client sends).
    /// `grpc-timeout` has a format of its own and no value of it is milliseconds: that name
    /// reads it as [`grpc_timeout`](Self::grpc_timeout) does (as a policy file's
    /// `propagate_deadline = "grpc-timeout"` writes it), rather than ignore every value.
    pub fn millis(header: HeaderName) -> Self {
        if header == "grpc-timeout" {
            return Self::grpc_timeout();
        }
        IncomingDeadlineLayer {
            header,
            format: Format::Millis,
            max: None,
        }
    }

    /// Caps what a caller may ask: a request asking for longer gets `max`.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }
}

impl<S> Layer<S> for IncomingDeadlineLayer {
    type Service = IncomingDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IncomingDeadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`IncomingDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct IncomingDeadline<S> {
    inner: S,
    layer: IncomingDeadlineLayer,
}

inner_service_accessors!(IncomingDeadline);

impl IncomingDeadlineLayer {
    /// The limit `request` asks for, capped at `max`; `None` without one (or a malformed one,
    /// said at DEBUG).
    fn limit_of<B>(&self, request: &http::Request<B>) -> Option<Duration> {
        let value = request.headers().get(&self.header)?;
        let Some(limit) = wire::decode(value, self.format) else {
            tracing::debug!(
                header = %self.header,
                value = %Echo(value.as_bytes()),
                "ignored a malformed incoming deadline"
            );
            return None;
        };
        Some(self.max.map_or(limit, |max| limit.min(max)))
    }
}

impl<S, B> Service<http::Request<B>> for IncomingDeadline<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ScopeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Read before the handler is called: the caller's time counts from the request's
        // arrival here.
        let ends = self
            .layer
            .limit_of(&request)
            .and_then(|limit| Instant::now().checked_add(limit));
        ScopeFuture::ending(ends, self.inner.call(request))
    }
}
