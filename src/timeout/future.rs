use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Method;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use url::Url;

use super::ran_out::{Clock, ran_out, timed_out, with_budget};
use super::{BACKSTOP_GRACE, CallClock};
use crate::error::{Attempt, Error};
use crate::outcome::Delivery;

/// The error of an attempt that had no time left, so was not sent.
pub(crate) fn expired(request: &reqwest::Request, limit: Duration) -> Error {
    let error = ran_out(Clock::Deadline, Delivery::NotSent, Some(limit));
    alone(error, Duration::ZERO).with_request(request.method(), request.url())
}

/// `error` with the one attempt it ended, which took `duration`, as its history.
fn alone(error: Error, duration: Duration) -> Error {
    let attempt = Attempt::first(duration, error.outcome(), error.class(), error.delivery());
    error.with_history(vec![attempt])
}

/// When a backstop fires: `limit` plus the grace after `started`, or (for limits like
/// `Duration::MAX`) a date so far away that it never comes, instead of overflowing.
fn backstop_at(started: Instant, limit: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    started
        .checked_add(limit.saturating_add(BACKSTOP_GRACE))
        .unwrap_or_else(|| started + FAR)
}

pin_project! {
    /// The future of [`AttemptTimeout`](super::AttemptTimeout).
    pub struct AttemptTimeoutFuture<F> {
        #[pin]
        state: AttemptState<F>,
        method: Method,
        limit: Duration,
        by_deadline: bool,
    }
}

pin_project! {
    #[project = AttemptStateProj]
    enum AttemptState<F> {
        Running {
            #[pin]
            inner: F,
            // With the time the attempt started. Boxed: most stacks turn it off, and then it
            // costs one word and no clock read, not a timer entry.
            backstop: Option<(Pin<Box<Sleep>>, Instant)>,
        },
        // No time was left: the request is not sent at all.
        Expired { error: Option<Error> },
    }
}

impl<F> AttemptTimeoutFuture<F> {
    pub(super) fn new(
        inner: F,
        method: Method,
        limit: Duration,
        by_deadline: bool,
        backstop: bool,
    ) -> Self {
        let backstop = backstop.then(|| {
            let started = Instant::now();
            (Box::pin(sleep_until(backstop_at(started, limit))), started)
        });
        AttemptTimeoutFuture {
            state: AttemptState::Running { inner, backstop },
            method,
            limit,
            by_deadline,
        }
    }

    /// No time is left: fails at once, without sending `request`.
    pub(super) fn expired(request: &reqwest::Request, limit: Duration) -> Self {
        AttemptTimeoutFuture {
            state: AttemptState::Expired {
                error: Some(expired(request, limit)),
            },
            method: request.method().clone(),
            limit,
            by_deadline: true,
        }
    }
}

impl<F> Future for AttemptTimeoutFuture<F>
where
    F: Future<Output = Result<reqwest::Response, Error>>,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let duration = match this.state.project() {
            AttemptStateProj::Expired { error } => {
                return Poll::Ready(Err(error
                    .take()
                    .unwrap_or_else(Error::polled_after_completion)));
            }
            AttemptStateProj::Running { inner, backstop } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    let (limit, by_deadline) = (*this.limit, *this.by_deadline);
                    return Poll::Ready(
                        result.map_err(|error| timed_out(error, limit, by_deadline)),
                    );
                }
                let Some((sleep, started)) = backstop.as_mut() else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                started.elapsed()
            }
        };
        let clock = if *this.by_deadline {
            Clock::Deadline
        } else {
            Clock::Attempt
        };
        // The inner service never answered: the request may be out.
        let error = ran_out(clock, Delivery::MaybeSent, Some(*this.limit));
        let mut error = alone(error, duration);
        error.set_method(this.method.clone());
        Poll::Ready(Err(error))
    }
}

pin_project! {
    /// The future of [`TotalDeadline`](super::TotalDeadline).
    pub struct TotalDeadlineFuture<F> {
        #[pin]
        inner: F,
        // Only with the backstop on: then the layer itself may fail a call, and needs the
        // start, method and URL for its error. Boxed so that a stack without it stays small
        // and reads no clock.
        backstop: Option<Box<Backstop>>,
        budget: Duration,
        // Whether `budget` is what was left of the caller's deadline (a `deadline::scope`).
        inherited: bool,
    }
}

/// The total deadline's own timer, and what its error names.
struct Backstop {
    method: Method,
    url: Url,
    // Armed at the first poll, when the call's clock starts (see `CallClock`), with that start.
    timer: Option<(Pin<Box<Sleep>>, Instant)>,
}

impl Backstop {
    /// Starts the timer with the call's clock, once.
    fn arm(&mut self, budget: Duration) {
        if self.timer.is_none() {
            // The caller's deadline, if the call runs inside a scope, caps the budget here too.
            let clock = CallClock::start(Some(budget));
            let started = clock.started();
            let budget = clock.budget().unwrap_or(budget);
            let sleep = Box::pin(sleep_until(backstop_at(started, budget)));
            self.timer = Some((sleep, started));
        }
    }

    fn fired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .as_mut()
            .is_some_and(|(sleep, _)| sleep.as_mut().poll(cx).is_ready())
    }

    /// `error`, naming the request and the time the call took.
    fn name(&self, error: Error) -> Error {
        let error = error.with_request(&self.method, &self.url);
        match &self.timer {
            Some((_, started)) => error.with_elapsed(started.elapsed()),
            None => error,
        }
    }
}

impl<F> TotalDeadlineFuture<F> {
    pub(super) fn new(
        inner: F,
        backstop: Option<(Method, Url)>,
        budget: Duration,
        inherited: bool,
    ) -> Self {
        TotalDeadlineFuture {
            inner,
            backstop: backstop.map(|(method, url)| {
                Box::new(Backstop {
                    method,
                    url,
                    timer: None,
                })
            }),
            budget,
            inherited,
        }
    }
}

impl<F> Future for TotalDeadlineFuture<F>
where
    F: Future<Output = Result<reqwest::Response, Error>>,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(backstop) = this.backstop.as_deref_mut() {
            backstop.arm(*this.budget);
        }
        let error = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response)),
            Poll::Ready(Err(error)) => error,
            Poll::Pending => {
                let fired = this
                    .backstop
                    .as_deref_mut()
                    .is_some_and(|backstop| backstop.fired(cx));
                if !fired {
                    return Poll::Pending;
                }
                // The inner service never answered: the request may be out.
                ran_out(Clock::Deadline, Delivery::MaybeSent, None)
            }
        };
        let error = with_budget(error, *this.budget, *this.inherited);
        let error = match this.backstop.as_deref() {
            Some(backstop) => backstop.name(error),
            None => error,
        };
        Poll::Ready(Err(error))
    }
}
