use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::TotalDeadlineFuture;
use crate::error::Error;

/// Bounds a whole call, all attempts and backoff sleeps included; see the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct TotalDeadlineLayer {
    deadline: Duration,
    backstop: bool,
}

impl TotalDeadlineLayer {
    /// A call may take at most `deadline` in all. A shorter per-request timeout wins.
    pub fn new(deadline: Duration) -> Self {
        TotalDeadlineLayer {
            deadline,
            backstop: true,
        }
    }

    /// Drops the layer's own timer and relies on the layers below honouring the request
    /// timeout it sets (the retry layer never sleeps past it; the attempt timeout and reqwest
    /// bound each attempt). Saves a timer per call. Do not use it over a service that ignores
    /// the request timeout.
    pub fn without_backstop(mut self) -> Self {
        self.backstop = false;
        self
    }
}

impl<S> Layer<S> for TotalDeadlineLayer {
    type Service = TotalDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TotalDeadline {
            inner,
            deadline: self.deadline,
            backstop: self.backstop,
        }
    }
}

/// The service made by [`TotalDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct TotalDeadline<S> {
    inner: S,
    deadline: Duration,
    backstop: bool,
}

impl<S> Service<reqwest::Request> for TotalDeadline<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = TotalDeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: reqwest::Request) -> Self::Future {
        let budget = super::call_budget(request.timeout().copied(), Some(self.deadline))
            .unwrap_or(self.deadline);
        *request.timeout_mut() = Some(budget);
        let context = self
            .backstop
            .then(|| (request.method().clone(), request.url().clone()));
        TotalDeadlineFuture::new(self.inner.call(request), context, budget)
    }
}
