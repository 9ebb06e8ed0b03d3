use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use super::TotalDeadlineFuture;
use crate::error::Error;

/// A call's clock: when it started and, if it has a time budget, when it must end.
///
/// **A call's clock starts at the first poll of its future**, not when the future is made,
/// on every path: the driver (the client, the middleware, [`ResilientLayer`](crate::ResilientLayer)
/// and the [`Retry`](crate::retry::Retry) layer) starts it in `RetryState::begin`, [`TotalDeadline`] when its future is first polled, both with
/// [`CallClock::start`]. A future may wait long before it runs (futures collected and then
/// run a few at a time, or queued behind a concurrency limit); that wait is not the call's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallClock {
    started: Instant,
    // When the call must end, and the budget that led there; `None` without a budget (or with
    // one too large to reach).
    ends: Option<(Instant, Duration)>,
}

impl CallClock {
    /// The clock of a call made but not polled yet, which nothing reads before
    /// [`start`](Self::start) replaces it: its time is any (the first the process read), so
    /// that making a call reads no clock.
    pub(crate) fn unstarted() -> Self {
        static ANY: OnceLock<Instant> = OnceLock::new();
        CallClock {
            started: *ANY.get_or_init(Instant::now),
            ends: None,
        }
    }

    /// Starts, now, the clock of a call whose time budget (see `call_budget`) is `budget`.
    /// Called at the call's first poll.
    pub(crate) fn start(budget: Option<Duration>) -> Self {
        let started = Instant::now();
        CallClock {
            started,
            ends: budget.and_then(|budget| started.checked_add(budget).map(|at| (at, budget))),
        }
    }

    /// When the call started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// When the call must end and its whole budget, if it has one.
    pub(crate) fn ends(&self) -> Option<(Instant, Duration)> {
        self.ends
    }

    /// When the call must end, if it has a budget.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.ends.map(|(at, _)| at)
    }

    /// The call's whole time budget, if it has one.
    pub(crate) fn budget(&self) -> Option<Duration> {
        self.ends.map(|(_, budget)| budget)
    }

    /// What is left of the budget at `now`; `None` without one.
    pub(crate) fn left_at(&self, now: Instant) -> Option<Duration> {
        self.deadline().map(|at| at.saturating_duration_since(now))
    }
}

/// Bounds a whole call, all attempts and backoff sleeps included; see the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
/// use resilient_http::retry::{RetryLayer, RetryPolicy};
/// use resilient_http::testkit::{FaultServer, Reply};
/// use resilient_http::timeout::TotalDeadlineLayer;
/// use resilient_http::ErrorKind;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/slow", [Reply::hang()]);
///
/// let service = ServiceBuilder::new()
///     .layer(TotalDeadlineLayer::new(Duration::from_millis(200)))
///     .layer(RetryLayer::new(RetryPolicy::default()))
///     .layer(ClassifyLayer::new(DefaultClassifier))
///     .service(reqwest::Client::new());
/// let request = reqwest::Request::new(reqwest::Method::GET, server.url("/slow").parse()?);
/// let err = service.oneshot(request).await.err().ok_or("a hang runs out of time")?;
/// assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TotalDeadlineLayer {
    deadline: Duration,
    backstop: bool,
}

impl TotalDeadlineLayer {
    /// A call may take at most `deadline` in all, counted from its first poll. A shorter
    /// per-request timeout wins.
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

inner_service_accessors!(TotalDeadline);

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
