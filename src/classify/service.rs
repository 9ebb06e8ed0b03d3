use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::Service;

use super::{Class, Classifier, DefaultClassifier, Delivery, ResponseFuture, TransportError};
use crate::error::Error;
use crate::error::ErrorKind;

/// Turns the `Result<reqwest::Response, reqwest::Error>` of one attempt into
/// `Result<reqwest::Response, resilient_http::Error>`.
///
/// A response the classifier calls a failure becomes an [`Error`] of kind
/// [`Status`](crate::ErrorKind::Status) that keeps the response; a transport error becomes an
/// [`Error`] of the matching kind. Either way the error carries a one-entry attempt history,
/// which a retry layer above extends. Sits directly on `reqwest::Client` (or any service with
/// its request, response and error types).
#[derive(Clone, Debug)]
pub struct Classify<S, C = DefaultClassifier> {
    inner: S,
    classifier: C,
}

impl<S, C> Classify<S, C> {
    /// Wraps `inner`, sorting its outcomes with `classifier`.
    pub fn new(inner: S, classifier: C) -> Self {
        Classify { inner, classifier }
    }
}

inner_service_accessors!(Classify, C);

impl<S, C> Service<reqwest::Request> for Classify<S, C>
where
    S: Service<reqwest::Request, Response = reqwest::Response>,
    S::Error: TransportError,
    C: Classifier + Clone,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| match e.into_reqwest() {
                Ok(e) => Error::from(e),
                Err(other) => Error::new(ErrorKind::Transport, Class::Permanent, Delivery::NotSent)
                    .with_foreign_source(other),
            })
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        let method = request.method().clone();
        let started = Instant::now();
        ResponseFuture::new(
            self.inner.call(request),
            self.classifier.clone(),
            method,
            started,
        )
    }
}
