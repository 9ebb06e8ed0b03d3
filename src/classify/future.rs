use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Method;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{Class, Classifier, analyze};
use crate::classify::Delivery;
use crate::error::{Attempt, AttemptOutcome, BoxError, Error, ErrorKind};

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
    let kind = ErrorKind::Transport;
    let attempt = Attempt::first(
        std::time::Duration::ZERO,
        AttemptOutcome::Error(kind),
        Class::Permanent,
        Delivery::MaybeSent,
    );
    let mut error = Error::new(kind, Class::Permanent, Delivery::MaybeSent)
        .with_foreign_source(source)
        .with_history(vec![attempt]);
    error.set_method(method.clone());
    error
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
        Poll::Ready(outcome(
            this.classifier,
            this.method,
            result,
            this.started.elapsed(),
        ))
    }
}

/// One attempt's result, classified: a success stays a response; anything else becomes an
/// [`Error`] with a one-entry history. Shared with the client's single-future path.
#[inline]
pub(crate) fn outcome<C: Classifier + ?Sized>(
    classifier: &C,
    method: &Method,
    result: Result<reqwest::Response, reqwest::Error>,
    duration: std::time::Duration,
) -> Result<reqwest::Response, Error> {
    let verdict = classifier.classify(method, result.as_ref());
    let (error, outcome) = match result {
        Ok(response) if verdict.class == Class::Success => return Ok(response),
        Ok(response) => {
            let outcome = AttemptOutcome::Status(response.status());
            (
                Error::from_response(response, verdict.class, verdict.delivery),
                outcome,
            )
        }
        Err(source) => {
            let kind = analyze(&source).kind;
            // A transport error has no response to hand back, so "success" cannot stand.
            let class = match verdict.class {
                Class::Success => Class::Permanent,
                class => class,
            };
            let error = Error::from_reqwest(source, kind, class, verdict.delivery);
            (error, AttemptOutcome::Error(kind))
        }
    };
    let attempt = Attempt::first(duration, outcome, error.class(), verdict.delivery);
    let mut error = error.with_history(vec![attempt]);
    error.set_method(method.clone());
    Err(error)
}
