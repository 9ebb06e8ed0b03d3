use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::{BreakerRegistry, ResponseFuture};
use crate::error::Error;

/// The service made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    registry: Option<BreakerRegistry>,
    key: Option<Arc<str>>,
}

inner_service_accessors!(CircuitBreaker);

impl<S> CircuitBreaker<S> {
    /// Wraps `inner`; `None` lets everything through.
    pub fn new(inner: S, registry: Option<BreakerRegistry>) -> Self {
        CircuitBreaker {
            inner,
            registry,
            key: None,
        }
    }

    /// Uses one breaker under `key` for every request (`None`: one per endpoint).
    pub fn with_key(mut self, key: Option<Arc<str>>) -> Self {
        self.key = key;
        self
    }
}

impl<S> Service<reqwest::Request> for CircuitBreaker<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        let Some(registry) = &self.registry else {
            return ResponseFuture::unguarded(self.inner.call(request));
        };
        let breaker = super::layer::breaker_for(registry, self.key.as_deref(), request.url());
        match breaker.admit() {
            Ok(permit) => ResponseFuture::guarded(self.inner.call(request), breaker, permit),
            Err(rejection) => ResponseFuture::rejected(breaker.rejected(rejection, &request)),
        }
    }
}
