//! Layers around the **whole call**, as opposed to
//! [`attempt_layer`](crate::ClientBuilder::attempt_layer)s around each attempt: a concurrency
//! limit, a timeout, load shedding, metrics per logical request.
//!
//! They are plain tower layers over [`CallService`], whose request is an [`Exchange`] (the
//! `reqwest::Request` about to run through its policy, readable and changeable) and whose
//! response is an [`Exchanged`] (the call's outcome, whatever the terminal method reads). The
//! generic tower layers whose services can be cloned (`ConcurrencyLimitLayer`,
//! `TimeoutLayer`, `LoadShedLayer`, `BufferLayer`, which also makes `RateLimitLayer` usable,
//! ...) work unchanged, and apply to every way of sending:
//! `send`, `send_buffered`, `bytes`, `text`, `recv_json`, `send_with` and `Client::execute`.
//!
//! ```
//! use tower::limit::ConcurrencyLimitLayer;
//!
//! // At most 32 calls to the payment provider at once, retries included.
//! let client = resilient_http::Client::builder()
//!     .layer(ConcurrencyLimitLayer::new(32))
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! An error from such a layer keeps its meaning when it is this crate's [`Error`]; tower's
//! timeout becomes [`ErrorKind::DeadlineExceeded`]; any other is a permanent
//! [`ErrorKind::Hook`] whose source is the layer's error as redacted text (the error itself,
//! to downcast: [`Error::unredacted_source`]).

use std::any::Any;
use std::fmt;
use std::task::{Context, Poll};

use http::StatusCode;
use tower::{Service, ServiceExt};

use crate::classify::{is_tower_timeout, layer_error};
use crate::error::{BoxError, Error, ErrorKind};
use crate::hook::BoxFuture;
use crate::outcome::{Class, Delivery};
use crate::read::Success;
use crate::telemetry::ErrorType;
use crate::timeout::{Clock, in_layer};

/// One call as the outer layers see it: the request, and the call ready to run it.
pub struct Exchange {
    request: reqwest::Request,
    start: Box<dyn FnOnce(reqwest::Request) -> BoxFuture<Result<Exchanged, Error>> + Send>,
}

impl Exchange {
    /// The request about to be sent through its policy.
    pub fn request(&self) -> &reqwest::Request {
        &self.request
    }

    /// The request, to change before it is sent (the policy is chosen afterwards, from what
    /// it then says, unless the request named one).
    pub fn request_mut(&mut self) -> &mut reqwest::Request {
        &mut self.request
    }
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("method", self.request.method())
            .field("url", &crate::redact::url(self.request.url()).as_str())
            .finish_non_exhaustive()
    }
}

/// A call's outcome as the outer layers see it.
pub struct Exchanged {
    status: StatusCode,
    output: Box<dyn Any + Send>,
    /// Finds the response in `output`, whose type only the call that made it knows.
    response_of: fn(&(dyn Any + Send)) -> Option<&reqwest::Response>,
}

impl Exchanged {
    /// The status of the response the call ended with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response, when the call was sent with `send`, `send_buffered`, `bytes`, `text`,
    /// `recv_json` or `Client::execute` (`None` for readers that return something else).
    pub fn response(&self) -> Option<&reqwest::Response> {
        (self.response_of)(&*self.output)
    }
}

impl fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchanged")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The service outer layers wrap: it runs the call of each [`Exchange`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CallService(());

impl Service<Exchange> for CallService {
    type Response = Exchanged;
    type Error = Error;
    type Future = BoxFuture<Result<Exchanged, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exchange: Exchange) -> Self::Future {
        (exchange.start)(exchange.request)
    }
}

/// The user's outer layers over [`CallService`].
pub(crate) type OuterService = tower::util::BoxCloneSyncService<Exchange, Exchanged, BoxError>;

pub(crate) fn outer_service<L>(layer: L) -> OuterService
where
    L: tower::Layer<CallService>,
    L::Service: Service<Exchange, Response = Exchanged> + Clone + Send + Sync + 'static,
    <L::Service as Service<Exchange>>::Error: Into<BoxError>,
    <L::Service as Service<Exchange>>::Future: Send + 'static,
{
    OuterService::new(layer.layer(CallService(())).map_err(Into::into))
}

/// Runs `request` through the outer layers, then through the call `start` makes of it.
pub(crate) fn run<O, F, C>(
    outer: &OuterService,
    request: reqwest::Request,
    start: F,
) -> BoxFuture<Result<O, Error>>
where
    O: Success,
    F: FnOnce(reqwest::Request) -> Result<C, Error> + Send + 'static,
    C: std::future::Future<Output = Result<O, Error>> + Send + 'static,
{
    let (method, url) = (request.method().clone(), request.url().clone());
    let exchange = Exchange {
        request,
        start: Box::new(move |request| match start(request) {
            Ok(call) => Box::pin(async move {
                let output = call.await?;
                Ok(Exchanged {
                    status: output.status(),
                    output: Box::new(output),
                    response_of: response_of::<O>,
                })
            }),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }),
    };
    let running = outer.clone().oneshot(exchange);
    Box::pin(async move {
        let exchanged = running.await.map_err(|e| outer_error(e, &method, &url))?;
        match exchanged.output.downcast::<O>() {
            Ok(output) => Ok(*output),
            Err(_) => Err(
                Error::new(ErrorKind::Hook, Class::Permanent, Delivery::MaybeSent)
                    .with_detail("an outer layer replaced the call's outcome"),
            ),
        }
    })
}

/// The response in a call's `output` of type `O`, if it keeps one.
fn response_of<O: Success>(output: &(dyn Any + Send)) -> Option<&reqwest::Response> {
    output.downcast_ref::<O>().and_then(Success::response)
}

fn outer_error(error: BoxError, method: &http::Method, url: &url::Url) -> Error {
    // The call's own errors pass through the layers unchanged, and a tower timeout is the
    // deadline; any other is a layer's own refusal (a load shed, a bulkhead), which nothing
    // else reports. DEBUG, as a breaker's rejections: under overload there is one per call.
    let refused = !error.is::<Error>() && !is_tower_timeout(&*error);
    let error = layer_error(error, "an outer layer", || in_layer(Clock::Deadline))
        .with_request(method, url);
    if refused {
        tracing::debug!(
            http.request.method = %method,
            url.full = %crate::redact::url(url),
            error.type = %ErrorType::of(&error),
            error = %error,
            "request rejected by an outer layer"
        );
    }
    error
}
