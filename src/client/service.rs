//! The client's stack as a `tower::Service`, for users' own `ServiceBuilder`s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;

use crate::call::{Call, ClientSender, Which};
use crate::error::{Error, ErrorKind};
use crate::outcome::{Class, Delivery};
use crate::pending::Pending;
use crate::policy::Policies;
use crate::read::Reader;

/// The [`Client`](crate::Client)'s stack as a tower service; see [`Client::service`](crate::Client::service).
#[derive(Clone, Debug)]
pub struct PolicyService {
    pub(super) http: reqwest::Client,
    pub(super) policies: Arc<ArcSwap<Policies>>,
}

// No `get_mut`: calls leave some attempt limits to the `reqwest::Client`'s own timeout, which
// the client was built with, so another one put in its place could leave attempts unbounded.
impl PolicyService {
    /// The `reqwest::Client` every attempt goes out on (see [`Client::reqwest_client`](crate::Client::reqwest_client)).
    pub fn get_ref(&self) -> &reqwest::Client {
        &self.http
    }

    /// The `reqwest::Client` every attempt goes out on; this service is consumed.
    pub fn into_inner(self) -> reqwest::Client {
        self.http
    }
}

impl tower::Service<reqwest::Request> for PolicyService {
    type Response = reqwest::Response;
    type Error = Error;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A call waits for nothing before it starts: reqwest's client is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        // The policies in force now, for the whole call (a reload changes later calls only).
        let policies = self.policies.load_full();
        let index = policies.select_index(request.method(), request.url());
        Pending::call(Call::new(
            ClientSender::new(self.http.clone(), policies.client_timeout),
            policies,
            Which::Shared(index),
            request,
            Reader::response(),
            false,
        ))
    }
}

/// A service over `reqwest::Request`s, as a service over `http::Request`s: what tower-http's
/// layers (`TraceLayer`, `SetRequestHeader`, `Timeout`, ...) wrap. Each request is turned into a
/// `reqwest::Request` (reqwest's `TryFrom`: its body `B` into a `reqwest::Body`), and each
/// response into an `http::Response<reqwest::Body>` (reqwest's `From`), whose body is
/// `http_body::Body` as tower-http needs.
///
/// [`Client::http_service`](crate::Client::http_service) is the client's stack in this form;
/// [`HttpLayer`] puts it over a [`ResilientLayer`](crate::ResilientLayer) stack of your own.
/// tower-http's layers go *above* it (they see each call once, its final response or
/// error, retries included); under the resilience, around each attempt, go layers over
/// `reqwest::Request` ([`ClientBuilder::attempt_layer`](crate::ClientBuilder::attempt_layer),
/// or the service below `ResilientLayer`).
///
/// tower-http's layers ask more of the request body than `Into<reqwest::Body>`: `TraceLayer`
/// takes an `http_body::Body` such as `String`, `http_body_util::Full<Bytes>` or
/// `reqwest::Body` (wrap a `Vec<u8>` in `reqwest::Body::from`).
///
/// A request whose URI is not absolute (`/items` without a scheme and host) fails as
/// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest), not sent.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_http::trace::TraceLayer;
///
/// # fn run() -> Result<(), resilient_http::Error> {
/// let client = resilient_http::Client::new()?;
/// let service = ServiceBuilder::new()
///     .layer(TraceLayer::new_for_http())
///     .service(client.http_service());
/// // service.oneshot(http::Request::get("https://api.example.com/items").body(String::new())?)
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HttpService<S> {
    inner: S,
}

impl<S> HttpService<S> {
    /// `inner` over `http::Request`s.
    pub fn new(inner: S) -> Self {
        HttpService { inner }
    }

    /// The service over `reqwest::Request`s.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service over `reqwest::Request`s; this one is consumed.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> tower::Service<http::Request<B>> for HttpService<S>
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
    B: Into<reqwest::Body>,
{
    type Response = http::Response<reqwest::Body>;
    type Error = Error;
    type Future = HttpFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match reqwest::Request::try_from(request) {
            Ok(request) => HttpFuture::sent(self.inner.call(request)),
            Err(err) => {
                // reqwest refuses only a URI that is not an absolute URL. The URI is not
                // repeated: its query may hold a key, and the error may reach a log.
                let refused = Error::new(
                    ErrorKind::InvalidRequest,
                    Class::Permanent,
                    Delivery::NotSent,
                )
                .with_detail(
                    "the request's URI is not an absolute URL (an http::Request needs scheme \
                     and host)",
                )
                .with_source(err);
                HttpFuture::refused(refused)
            }
        }
    }
}

/// Wraps a service over `reqwest::Request`s in an [`HttpService`], for a `ServiceBuilder`:
/// `ServiceBuilder::new().layer(TraceLayer::new_for_http()).layer(HttpLayer).layer(resilience)`.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_http::trace::TraceLayer;
/// use resilient_http::{Client, HttpLayer, ResilientLayer};
///
/// # fn run() -> Result<(), resilient_http::Error> {
/// let resilience = ResilientLayer::new(Client::builder())?;
/// let service = ServiceBuilder::new()
///     .layer(TraceLayer::new_for_http())
///     .layer(HttpLayer)
///     .layer(resilience)
///     .service(reqwest::Client::new());
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpLayer;

impl<S> tower::Layer<S> for HttpLayer {
    type Service = HttpService<S>;

    fn layer(&self, inner: S) -> HttpService<S> {
        HttpService::new(inner)
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`HttpService`] call.
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpFuture<F> {
        #[pin]
        state: HttpState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = HttpStateProj]
    enum HttpState<F> {
        // On its way through the service below.
        Sent { #[pin] call: F },
        // Refused before it was sent.
        Refused { error: Option<Error> },
    }
}

impl<F> HttpFuture<F> {
    fn sent(call: F) -> Self {
        HttpFuture {
            state: HttpState::Sent { call },
        }
    }

    fn refused(error: Error) -> Self {
        HttpFuture {
            state: HttpState::Refused { error: Some(error) },
        }
    }
}

impl<F> Future for HttpFuture<F>
where
    F: Future<Output = Result<reqwest::Response, Error>>,
{
    type Output = Result<http::Response<reqwest::Body>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            HttpStateProj::Sent { call } => call.poll(cx).map_ok(http::Response::from),
            // Polled again after it answered: it has no more to say.
            HttpStateProj::Refused { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
        }
    }
}

impl<F> std::fmt::Debug for HttpFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFuture").finish_non_exhaustive()
    }
}
