use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Method;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{Class, Classifier, analyze};
use crate::error::{Attempt, AttemptOutcome, Error};

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

impl<F, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<reqwest::Response, reqwest::Error>>,
    C: Classifier,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let verdict = this.classifier.classify(this.method, result.as_ref());
        let duration = this.started.elapsed();
        let (error, outcome) = match result {
            Ok(response) if verdict.class == Class::Success => return Poll::Ready(Ok(response)),
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
        error.set_method(this.method.clone());
        Poll::Ready(Err(error))
    }
}
