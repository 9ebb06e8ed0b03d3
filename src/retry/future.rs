use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep};
use tower::Service;

use super::RetryHistory;
use super::delays::Delays;
use super::policy::RetryPolicy;
use crate::classify::{Class, Delivery};
use crate::error::{Attempt, AttemptOutcome, Error, ErrorKind, Short};

pin_project! {
    /// The future of [`Retry`](super::Retry).
    pub struct ResponseFuture<S>
    where
        S: Service<reqwest::Request>,
    {
        #[pin]
        state: State<S::Future>,
        inner: S,
        policy: Arc<RetryPolicy>,
        // The copy the next attempt sends; `None` when the body cannot be copied. Boxed to
        // keep the future small: every layer above moves it, and a large future also misses
        // the allocator's fast path.
        spare: Option<Box<reqwest::Request>>,
        may_repeat: bool,
        started: Instant,
        attempt_started: Instant,
        // When the call must end, and the budget that led there (for errors).
        deadline: Option<(Instant, Duration)>,
        // Attempts started so far.
        attempts: u32,
        delay_before: Duration,
        history: Vec<Attempt>,
        delays: Option<Box<Delays>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        // Boxed: only calls that retry pay for a timer entry.
        Sleeping { sleep: Pin<Box<Sleep>> },
        // Slept; waiting for the inner service to be ready for the next attempt.
        Ready,
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<reqwest::Request>,
{
    pub(super) fn new(
        future: S::Future,
        inner: S,
        policy: Arc<RetryPolicy>,
        spare: Option<Box<reqwest::Request>>,
        may_repeat: bool,
        started: Instant,
        deadline: Option<(Instant, Duration)>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            inner,
            policy,
            spare,
            may_repeat,
            started,
            attempt_started: started,
            deadline,
            attempts: 1,
            delay_before: Duration::ZERO,
            history: Vec::new(),
            delays: None,
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error>,
{
    type Output = Result<reqwest::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let (outcome, class, delivery) = match &result {
                        // A first-try success, the common case, records nothing.
                        Ok(_) if this.history.is_empty() => return Poll::Ready(result),
                        Ok(response) => (
                            AttemptOutcome::Status(response.status()),
                            Class::Success,
                            Delivery::Delivered,
                        ),
                        Err(error) => (error.outcome(), error.class(), error.delivery()),
                    };
                    let now = Instant::now();
                    this.history.push(Attempt {
                        number: *this.attempts,
                        started_after: this.attempt_started.duration_since(*this.started),
                        duration: now.duration_since(*this.attempt_started),
                        delay_before: *this.delay_before,
                        outcome,
                        class,
                        delivery,
                    });
                    let error = match result {
                        Ok(mut response) => {
                            let history = RetryHistory(std::mem::take(this.history));
                            response.extensions_mut().insert(history);
                            return Poll::Ready(Ok(response));
                        }
                        Err(error) => error,
                    };
                    let retry_after = error.retry_after().is_some();
                    let next = Decision {
                        policy: this.policy,
                        attempts: *this.attempts,
                        may_repeat: *this.may_repeat,
                        replayable: this.spare.is_some(),
                        deadline: this.deadline.map(|(at, _)| at),
                        now,
                    }
                    .decide(error, this.delays);
                    match next {
                        Ok(delay) => {
                            tracing::debug!(
                                attempt = *this.attempts,
                                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                                retry_after,
                                policy = this.policy.name().map(|n| &**n),
                                "retry scheduled"
                            );
                            *this.delay_before = delay;
                            this.state.set(State::Sleeping {
                                sleep: Box::pin(sleep(delay)),
                            });
                        }
                        Err((error, skip)) => {
                            // A permanent outcome is the caller's to see; a retry skipped for
                            // any other reason is worth an operator's attention.
                            if matches!(skip, Skip::Permanent | Skip::Final) {
                                tracing::debug!(
                                    attempt = *this.attempts,
                                    reason = skip.as_str(),
                                    policy = this.policy.name().map(|n| &**n),
                                    "not retried"
                                );
                            } else {
                                tracing::info!(
                                    attempt = *this.attempts,
                                    reason = skip.as_str(),
                                    policy = this.policy.name().map(|n| &**n),
                                    "retry skipped"
                                );
                            }
                            let error = error
                                .with_history(std::mem::take(this.history))
                                .with_policy(this.policy.name());
                            let error = match *this.deadline {
                                Some((at, budget)) => deadline_error(error, at, budget),
                                None => error,
                            };
                            return Poll::Ready(Err(error));
                        }
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(error) = ready!(this.inner.poll_ready(cx)) {
                        let history = std::mem::take(this.history);
                        let error = error.with_history(history).with_policy(this.policy.name());
                        return Poll::Ready(Err(error));
                    }
                    let Some(request) = this.spare.take() else {
                        // Unreachable: a retry is only scheduled with a copy in hand.
                        let error = Error::new(
                            ErrorKind::BodyNotReplayable,
                            Class::Permanent,
                            Delivery::NotSent,
                        );
                        let history = std::mem::take(this.history);
                        return Poll::Ready(Err(error.with_history(history)));
                    };
                    let mut request = *request;
                    *this.attempts += 1;
                    if *this.attempts < this.policy.max_attempts {
                        *this.spare = request.try_clone().map(Box::new);
                    }
                    let now = Instant::now();
                    if let Some((deadline, _)) = *this.deadline {
                        *request.timeout_mut() = Some(deadline.saturating_duration_since(now));
                    }
                    *this.attempt_started = now;
                    let future = this.inner.call(request);
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}

/// A call that ended at its deadline says so, with the whole budget as its limit, even when
/// its last attempt timed out on its own clock (which the breaker below counted as the
/// endpoint's failure).
fn deadline_error(error: Error, deadline: Instant, budget: Duration) -> Error {
    let at_deadline = error.kind() == ErrorKind::DeadlineExceeded
        || (error.kind() == ErrorKind::AttemptTimeout
            && Instant::now() + DEADLINE_SLACK >= deadline);
    if at_deadline {
        error
            .with_kind(ErrorKind::DeadlineExceeded)
            .with_limit(budget)
    } else {
        error
    }
}

/// How close to the deadline an attempt's timeout must end to be the deadline's doing.
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

/// Why a failed attempt was not retried (the `reason` of the tracing event).
#[derive(Clone, Copy, Debug)]
enum Skip {
    /// Permanent: retrying cannot help.
    Permanent,
    /// An outcome that ends the call (open circuit, deadline, ...).
    Final,
    Exhausted,
    NonIdempotent,
    NotReplayable,
    RetryAfterAboveCap,
    Deadline,
    ScheduleEnded,
}

impl Skip {
    fn as_str(self) -> &'static str {
        match self {
            Skip::Permanent => "permanent",
            Skip::Final => "final",
            Skip::Exhausted => "attempts_exhausted",
            Skip::NonIdempotent => "non_idempotent",
            Skip::NotReplayable => "body_not_replayable",
            Skip::RetryAfterAboveCap => "retry_after_above_cap",
            Skip::Deadline => "deadline",
            Skip::ScheduleEnded => "schedule_ended",
        }
    }
}

/// What is known when an attempt has failed.
struct Decision<'a> {
    policy: &'a RetryPolicy,
    attempts: u32,
    may_repeat: bool,
    replayable: bool,
    deadline: Option<Instant>,
    now: Instant,
}

impl Decision<'_> {
    /// The delay before the next attempt, or the error to return now.
    fn decide(
        self,
        error: Error,
        delays: &mut Option<Box<Delays>>,
    ) -> Result<Duration, (Error, Skip)> {
        if error.class() != Class::Transient {
            return Err((error, Skip::Permanent));
        }
        // Retrying cannot help these, or is not ours to decide.
        if matches!(
            error.kind(),
            ErrorKind::DeadlineExceeded
                | ErrorKind::CircuitOpen
                | ErrorKind::BudgetExhausted
                | ErrorKind::BodyNotReplayable
                | ErrorKind::InvalidConfig
        ) {
            return Err((error, Skip::Final));
        }
        if self.attempts >= self.policy.max_attempts {
            return Err((error, Skip::Exhausted));
        }
        if !self.may_repeat && error.delivery() != Delivery::NotSent {
            let error = error.with_detail(
                "not retried: a non-idempotent request that may have been processed \
                 (send an Idempotency-Key to make it retryable)",
            );
            return Err((error, Skip::NonIdempotent));
        }
        if !self.replayable {
            return Err((Error::not_replayable(error), Skip::NotReplayable));
        }
        let delay = match error
            .retry_after()
            .filter(|_| error.kind() == ErrorKind::Status)
        {
            Some(asked) => {
                let cap = self.policy.retry_after_cap;
                if asked > cap {
                    let detail = format!(
                        "not retried: the server asked to wait {}, above the {} cap",
                        Short(asked),
                        Short(cap)
                    );
                    return Err((error.with_detail(detail), Skip::RetryAfterAboveCap));
                }
                if !self.ends_before_deadline(asked) {
                    let detail = format!(
                        "not retried: the server asked to wait {}, past the deadline",
                        Short(asked)
                    );
                    return Err((error.with_detail(detail), Skip::Deadline));
                }
                asked
            }
            None => {
                let delays = delays.get_or_insert_with(|| Box::new(Delays::new(self.policy)));
                match delays.next(self.attempts) {
                    Some(delay) => delay,
                    None => return Err((error, Skip::ScheduleEnded)),
                }
            }
        };
        if !self.ends_before_deadline(delay) {
            let detail = format!(
                "the next retry, in {}, would start past the deadline",
                Short(delay)
            );
            let error = error
                .with_kind(ErrorKind::DeadlineExceeded)
                .with_detail(detail);
            return Err((error, Skip::Deadline));
        }
        Ok(delay)
    }

    fn ends_before_deadline(&self, delay: Duration) -> bool {
        match self.deadline {
            None => true,
            Some(deadline) => self
                .now
                .checked_add(delay)
                .is_some_and(|wake| wake < deadline),
        }
    }
}
