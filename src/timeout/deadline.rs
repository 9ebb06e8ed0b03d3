use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use super::TotalDeadlineFuture;
use crate::deadline;
use crate::error::Error;

/// A call's clock: when it started and, if it has a time budget, when it must end.
///
/// **A call's clock starts at the first poll of its future**, not when the future is made,
/// on every path: the driver (the client, the middleware, [`ResilientLayer`](crate::ResilientLayer)
/// and the [`Retry`](crate::retry::Retry) layer) starts it in `RetryState::begin`, [`TotalDeadline`] when its future is first polled, both with
/// [`CallClock::start`]. A future may wait long before it runs (futures collected and then
/// run a few at a time, or queued behind a concurrency limit); that wait is not the call's.
///
/// **The caller's deadline caps it**: a call started inside a
/// [`deadline::scope`](crate::deadline::scope) ends by the scope's end, when that comes before
/// its own deadline (the deadline is then *inherited*). That is read here, once, at the
/// call's start, for every path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallClock {
    started: Instant,
    // When the call must end, and the budget that led there; `None` without a budget (or with
    // one too large to reach).
    ends: Option<(Instant, Duration)>,
    // The call's own budget, before the caller's deadline capped it.
    own: Option<Duration>,
    // Whether `ends` is the caller's deadline (a scope's end), not the call's own.
    inherited: bool,
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
            own: None,
            inherited: false,
        }
    }

    /// Starts, now, the clock of a call whose own time budget (see `call_budget`) is
    /// `budget`, capped by the caller's deadline if the call runs inside a scope. Called at
    /// the call's first poll.
    #[inline]
    pub(crate) fn start(budget: Option<Duration>) -> Self {
        Self::start_within(budget, deadline::end())
    }

    /// [`start`](Self::start), for a caller whose deadline, if any, is `caller`.
    pub(crate) fn start_within(budget: Option<Duration>, caller: Option<Instant>) -> Self {
        let started = Instant::now();
        let own = budget.and_then(|budget| started.checked_add(budget).map(|at| (at, budget)));
        // The caller's deadline wins a tie: the call ended because its caller's time ran out
        // (a `TotalDeadline` above a `Retry` layer passes the same end down as its own).
        let (ends, inherited) = match (own, caller) {
            (Some((at, _)), Some(end)) if end <= at => {
                (Some((end, end.saturating_duration_since(started))), true)
            }
            (None, Some(end)) => (Some((end, end.saturating_duration_since(started))), true),
            (own, _) => (own, false),
        };
        CallClock {
            started,
            ends,
            own: budget,
            inherited,
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

    /// The call's whole time budget, if it has one: its own, or what was left of its
    /// caller's deadline when it started, whichever is shorter.
    pub(crate) fn budget(&self) -> Option<Duration> {
        self.ends.map(|(_, budget)| budget)
    }

    /// The call's own budget, which the caller's deadline does not change: an attempt cut
    /// short by the caller's deadline ends at that deadline (see `attempt_limit`), the
    /// caller's doing, not the endpoint's.
    pub(crate) fn own_budget(&self) -> Option<Duration> {
        self.own
    }

    /// Whether the call must end by its caller's deadline, which comes first.
    pub(crate) fn inherited(&self) -> bool {
        self.inherited
    }

    /// Whether the caller's deadline had passed when the call started: it fails at once,
    /// not sent.
    pub(crate) fn caller_gave_up(&self) -> bool {
        self.inherited && self.budget().is_some_and(|budget| budget.is_zero())
    }

    /// What is left of the budget at `now`; `None` without one.
    #[inline]
    pub(crate) fn left_at(&self, now: Instant) -> Option<Duration> {
        let (at, budget) = self.ends?;
        // At the call's start (its first attempt, sent without waiting): the whole budget,
        // which is `at` less the start, without working it out again.
        Some(if now == self.started {
            budget
        } else {
            at.saturating_duration_since(now)
        })
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
        let mut budget = super::call_budget(request.timeout().copied(), Some(self.deadline))
            .unwrap_or(self.deadline);
        // The caller's deadline, if the call runs inside a scope, caps what the layers below
        // are given. Read here, where the budget goes into the request; outside a scope this
        // reads no clock.
        let caller = deadline::end();
        let mut inherited = false;
        if caller.is_some() {
            let clock = CallClock::start_within(Some(budget), caller);
            if let (true, Some(capped)) = (clock.inherited(), clock.budget()) {
                (budget, inherited) = (capped, true);
            }
        }
        *request.timeout_mut() = Some(budget);
        let context = self
            .backstop
            .then(|| (request.method().clone(), request.url().clone()));
        TotalDeadlineFuture::new(self.inner.call(request), context, budget, inherited)
    }
}
