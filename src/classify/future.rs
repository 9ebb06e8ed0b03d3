use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Method;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{Class, Classification, Classifier, analyze};
use crate::error::{Attempt, BoxError, Error, ErrorKind};
use crate::outcome::Delivery;

pin_project! {
    /// The future of [`Classify`](super::Classify).
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        classifier: C,
        method: Method,
        started: Instant,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn new(inner: F, classifier: C, method: Method, started: Instant) -> Self {
        ResponseFuture {
            inner,
            classifier,
            method,
            started,
        }
    }
}

/// An inner service's error, as [`Classify`](super::Classify) understands it: a
/// `reqwest::Error`, or (through reqwest-middleware) another middleware's error.
pub trait TransportError: sealed::Sealed {
    /// The `reqwest::Error`, or the foreign error as it is.
    fn into_reqwest(self) -> Result<reqwest::Error, BoxError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for reqwest::Error {}
    #[cfg(feature = "reqwest-middleware")]
    impl Sealed for reqwest_middleware::Error {}
}

impl TransportError for reqwest::Error {
    fn into_reqwest(self) -> Result<reqwest::Error, BoxError> {
        Ok(self)
    }
}

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
impl TransportError for reqwest_middleware::Error {
    fn into_reqwest(self) -> Result<reqwest::Error, BoxError> {
        match self {
            reqwest_middleware::Error::Reqwest(error) => Ok(error),
            reqwest_middleware::Error::Middleware(error) => Err(error.into()),
        }
    }
}

/// Another middleware's failure: permanent, since we cannot tell what it means.
fn foreign(source: BoxError, method: &Method) -> Error {
    attempt_error(foreign_error(source), method, Instant::now())
}

/// The error of a service under the classifier that is not reqwest's (a middleware's):
/// permanent, and maybe sent.
pub(crate) fn foreign_error(source: BoxError) -> Error {
    Error::new(ErrorKind::Transport, Class::Permanent, Delivery::MaybeSent)
        .with_foreign_source(source)
}

impl<F, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<reqwest::Response, E>>,
    E: TransportError,
    C: Classifier,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match ready!(this.inner.poll(cx)) {
            Ok(response) => Ok(response),
            Err(error) => match error.into_reqwest() {
                Ok(error) => Err(error),
                // Not reqwest's (another middleware's): nothing for a classifier to read.
                Err(other) => return Poll::Ready(Err(foreign(other, this.method))),
            },
        };
        Poll::Ready(outcome(this.classifier, this.method, result, *this.started))
    }
}

/// One attempt's result, classified: a success stays a response; anything else becomes an
/// [`Error`] with a one-entry history, the attempt having started at `started` (the clock is
/// read only for a failure). The driver's too, for every path that classifies itself.
#[inline]
pub(crate) fn outcome<C: Classifier + ?Sized>(
    classifier: &C,
    method: &Method,
    result: Result<reqwest::Response, reqwest::Error>,
    started: Instant,
) -> Result<reqwest::Response, Error> {
    match result {
        Ok(response) => response_outcome(classifier, method, response, None, started),
        Err(source) => Err(attempt_error(
            transport_error(classifier, method, source),
            method,
            started,
        )),
    }
}

/// A response's outcome, classified: by the status classifier, or by the class a body
/// classifier gave (`body_class`) with the status classifier's delivery. A success stays a
/// response; a failure becomes an [`Error`] of kind [`Status`](ErrorKind::Status) that keeps
/// the response, with a one-entry history.
#[inline]
pub(crate) fn response_outcome<C: Classifier + ?Sized>(
    classifier: &C,
    method: &Method,
    response: reqwest::Response,
    body_class: Option<Class>,
    started: Instant,
) -> Result<reqwest::Response, Error> {
    let verdict = classifier.classify(method, Ok(&response));
    // The body classifier read the body, so it knows the class better; whether the request
    // reached the server is the status classifier's call, the same with or without a body.
    let class = body_class.unwrap_or(verdict.class);
    if class == Class::Success {
        return Ok(response);
    }
    let error = Error::from_response(response, class, verdict.delivery);
    Err(attempt_error(error, method, started))
}

/// A transport error (an attempt's, or one while reading a body), as `classifier` sorts it.
pub(crate) fn transport_error<C: Classifier + ?Sized>(
    classifier: &C,
    method: &Method,
    source: reqwest::Error,
) -> Error {
    let (kind, verdict) = transport_verdict(classifier, method, &source);
    Error::from_reqwest(source, kind, verdict.class, verdict.delivery)
}

/// What [`transport_error`] makes of `source`: its kind and `classifier`'s verdict.
pub(crate) fn transport_verdict<C: Classifier + ?Sized>(
    classifier: &C,
    method: &Method,
    source: &reqwest::Error,
) -> (ErrorKind, Classification) {
    let verdict = classifier.classify(method, Err(source));
    // A transport error has no response to hand back, so "success" cannot stand.
    let class = match verdict.class {
        Class::Success => Class::Permanent,
        class => class,
    };
    let verdict = Classification {
        class,
        delivery: verdict.delivery,
    };
    (analyze(source).kind, verdict)
}

/// `error` as the one attempt it ended, of `method`, started at `started`.
fn attempt_error(error: Error, method: &Method, started: Instant) -> Error {
    let duration = started.elapsed();
    let attempt = Attempt::first(duration, error.outcome(), error.class(), error.delivery());
    let mut error = error.with_history(vec![attempt]);
    error.set_method(method.clone());
    error
}
