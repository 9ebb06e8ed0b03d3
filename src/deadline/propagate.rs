//! [`PropagateDeadlineLayer`]: deadline propagation for layers stacked by hand, where the
//! attempt's limit is the request's timeout that the layers above set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::outgoing::{DEFAULT_MARGIN, DeadlineHeader, Propagate};
use crate::bounds;
use crate::error::Error;
use crate::timeout::Clock;

/// Writes each attempt's limit into a header for the server, in a stack of the public layers
/// (under [`RetryLayer`](crate::retry::RetryLayer), below
/// [`AttemptTimeoutLayer`](crate::timeout::AttemptTimeoutLayer)): the limit is the request's
/// timeout there, which the attempt timeout layer has just set to the attempt's own limit
/// (its timeout, capped by what is left of the deadline). The value is that limit less the
/// margin, as
/// [`EndpointPolicy::propagate_deadline`](crate::policy::EndpointPolicy::propagate_deadline)
/// writes it for the client, `ResilientMiddleware` and `ResilientLayer`, with the same rules:
/// a value of the header the request already has is replaced, and a request whose limit is
/// not above the margin is not sent (it fails with
/// [`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded), not sent). A request with no
/// timeout goes out as it is: nothing bounds it, so there is nothing to tell.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
/// use resilient_http::deadline::{DeadlineHeader, PropagateDeadlineLayer};
/// use resilient_http::retry::{RetryLayer, RetryPolicy};
/// use resilient_http::testkit::FaultServer;
/// use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// let service = ServiceBuilder::new()
///     .layer(TotalDeadlineLayer::new(Duration::from_secs(2)))
///     .layer(RetryLayer::new(RetryPolicy::default()))
///     .layer(AttemptTimeoutLayer::new(Duration::from_millis(500)))
///     .layer(PropagateDeadlineLayer::new(DeadlineHeader::grpc_timeout())?)
///     .layer(ClassifyLayer::new(DefaultClassifier))
///     .service(reqwest::Client::new());
/// let request = reqwest::Request::new(reqwest::Method::GET, server.url("/").parse()?);
/// service.oneshot(request).await?;
/// let seen = &server.requests("/")[0].headers;
/// assert_eq!(seen["grpc-timeout"], "480000u"); // 500 ms less the 20 ms margin
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateDeadlineLayer {
    // `None`: `DeadlineHeader::none()`, which sends nothing.
    propagate: Option<Propagate>,
}

impl PropagateDeadlineLayer {
    /// Writes each attempt's limit into `header`, less [`DEFAULT_MARGIN`]. A header name that
    /// [`DeadlineHeader`] refuses is [`InvalidConfig`](crate::ErrorKind::InvalidConfig).
    pub fn new(header: DeadlineHeader) -> Result<Self, Error> {
        let header = bounds::DEADLINE_HEADER
            .check(header)
            .map_err(Error::refused("propagate_deadline"))?;
        Ok(PropagateDeadlineLayer {
            propagate: Propagate::new(&header, DEFAULT_MARGIN),
        })
    }

    /// Takes `margin` off each limit instead (zero to 1 minute, else
    /// [`InvalidConfig`](crate::ErrorKind::InvalidConfig)); see
    /// [`EndpointPolicy::propagate_deadline_margin`](crate::policy::EndpointPolicy::propagate_deadline_margin).
    pub fn margin(self, margin: Duration) -> Result<Self, Error> {
        let margin = bounds::DEADLINE_MARGIN
            .check(margin)
            .map_err(Error::refused("propagate_deadline_margin"))?;
        Ok(PropagateDeadlineLayer {
            propagate: self.propagate.map(|p| p.with_margin(margin)),
        })
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            propagate: self.propagate.clone(),
        }
    }
}

/// The service made by [`PropagateDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
    propagate: Option<Propagate>,
}

inner_service_accessors!(PropagateDeadline);

impl<S> Service<reqwest::Request> for PropagateDeadline<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Response = reqwest::Response;
    type Error = Error;
    type Future = PropagateDeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: reqwest::Request) -> Self::Future {
        if let (Some(propagate), Some(&limit)) = (&self.propagate, request.timeout())
            && let Err(error) = propagate.stamp(&mut request, limit, Clock::Attempt)
        {
            return PropagateDeadlineFuture::unsent(error);
        }
        PropagateDeadlineFuture::sent(self.inner.call(request))
    }
}

pin_project! {
    /// The future of [`PropagateDeadline`].
    pub struct PropagateDeadlineFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Projected]
    enum State<F> {
        // On its way.
        Sent { #[pin] future: F },
        // Not sent: no time was left after the margin.
        Unsent { error: Option<Error> },
    }
}

impl<F> PropagateDeadlineFuture<F> {
    fn sent(future: F) -> Self {
        let state = State::Sent { future };
        PropagateDeadlineFuture { state }
    }

    fn unsent(error: Error) -> Self {
        let state = State::Unsent { error: Some(error) };
        PropagateDeadlineFuture { state }
    }
}

impl<F: Future<Output = Result<reqwest::Response, Error>>> Future for PropagateDeadlineFuture<F> {
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Projected::Sent { future } => future.poll(cx),
            Projected::Unsent { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(Error::polled_after_completion))),
        }
    }
}
