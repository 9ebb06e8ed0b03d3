//! A call's retry bookkeeping, shared by the [`Retry`](super::Retry) layer and the client's
//! own single-future path: preparing the first attempt, recording each attempt, deciding what
//! comes next, and preparing the next request.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;
use tracing::Span;

use super::delays::Delays;
use super::policy::{IDEMPOTENCY_KEY, RetryPolicy, is_idempotent};
use super::replay::Replay;
use super::{FREE_RESENDS, MAX_RESENDS, RESEND_PAUSE, RetryHistory};
use crate::breaker::Breaker;
use crate::classify::{Class, Delivery, Turnover, turnover};
use crate::error::{Attempt, AttemptOutcome, Error, ErrorKind, Short};
use crate::hedge::race::answers;
use crate::overload::Guards;
use crate::overload::bulkhead::BulkheadPermit;
use crate::read::Success;
use crate::telemetry::overload::Guard;
use crate::telemetry::{ErrorType, Observer};
use crate::timeout::{CallClock, call_budget, call_ended, past_deadline};

/// An attempt in flight beside the current one (see [`crate::hedge`]): which it is, and
/// its span.
pub(crate) struct Slot {
    number: u32,
    started: Instant,
    hedge: bool,
    delay_before: Duration,
    span: Span,
}

impl Slot {
    /// The attempt's span, entered until the guard drops.
    pub(crate) fn enter(&self) -> tracing::span::Entered<'_> {
        self.span.enter()
    }
}

/// What follows an attempt.
pub(crate) enum Next<O = reqwest::Response> {
    /// Sleep this long, then send [`RetryState::next_request`].
    Retry(Duration),
    /// The call is over.
    Done(Result<O, Error>),
    /// Send [`RetryState::next_request`] at once: the server named the attempt unprocessed
    /// (see [`RetryState::resends`]).
    Resend(Duration),
}

pub(crate) struct RetryState {
    policy: Arc<RetryPolicy>,
    // The request of the attempt about to go out, from when it is ready (`new`, `begin`,
    // `next_request`) until its sender takes it (`take_request`): it waits here while the
    // endpoint's guards decide, instead of being moved from step to step (it is large).
    request: Option<reqwest::Request>,
    // The copy the next attempt sends (`None` when the body cannot be copied, or no retry is
    // possible). Not boxed, since a large allocation per call costs more than moving it.
    spare: Option<reqwest::Request>,
    // A streaming body kept as the first attempt sends it: `spare` has no body until a retry
    // takes this one's (see `super::replay`).
    replay: Option<Replay>,
    // The deadline configured for the call, until `begin` turns it into `clock`'s.
    own_deadline: Option<Duration>,
    may_repeat: bool,
    // When the call started and must end: started by `begin`, at the call's first poll.
    clock: CallClock,
    attempt_started: Instant,
    // Attempts started so far, hedges included.
    attempts: u32,
    // The attempt whose result is being handled: its number, and whether it is a hedge.
    number: u32,
    hedge: bool,
    delay_before: Duration,
    // Hedges sent so far, and whether the request may be hedged at all (until `begin` looks
    // at the request: whether the caller allows it).
    hedges: u32,
    may_hedge: bool,
    history: Vec<Attempt>,
    delays: Option<Box<Delays>>,
    observer: Observer,
    // Attempts allowed beyond the policy's (a retry with refreshed credentials), and made.
    extra_allowed: u32,
    extra_used: u32,
    // Attempts the server named unprocessed and the call sent again at once (`resends`).
    resent: u32,
    // Whether each attempt's request carries what is left of the budget as its timeout, for
    // the attempt timeout layer below; the client's own call asks `time_left` instead.
    budget_in_request: bool,
    // The endpoint's overload guards, whose retry budget every retry must get past.
    guards: Option<Arc<Guards>>,
    // The call's place in its endpoint's bulkhead, given back when the call ends or is
    // dropped (with this).
    place: Option<BulkheadPermit>,
}

impl RetryState {
    /// A call of `request`, not yet begun; its clock starts when it [begins](Self::begin).
    #[inline]
    pub(crate) fn new(
        policy: Arc<RetryPolicy>,
        deadline: Option<Duration>,
        request: reqwest::Request,
    ) -> Self {
        // A stand-in until `begin` starts the call's clock; nothing reads it before.
        let clock = CallClock::unstarted();
        RetryState {
            observer: Observer::default(),
            extra_allowed: 0,
            extra_used: 0,
            resent: 0,
            budget_in_request: true,
            guards: None,
            place: None,
            policy,
            request: Some(request),
            spare: None,
            replay: None,
            own_deadline: deadline,
            may_repeat: false,
            clock,
            attempt_started: clock.started(),
            attempts: 1,
            number: 1,
            hedge: false,
            delay_before: Duration::ZERO,
            hedges: 0,
            may_hedge: true,
            history: Vec::new(),
            delays: None,
        }
    }

    /// The endpoint's guards: the call deposits into their retry budget when it begins, and
    /// each retry withdraws from it. Set before the call begins.
    pub(crate) fn guard_with(&mut self, guards: Option<Arc<Guards>>) {
        self.guards = guards;
    }

    pub(crate) fn guards(&self) -> Option<&Arc<Guards>> {
        self.guards.as_ref()
    }

    /// Keeps the call's place in the bulkhead until the call ends.
    pub(crate) fn take_place(&mut self, place: Option<BulkheadPermit>) {
        self.place = place;
    }

    /// The call's policy, as its events and metrics name it.
    pub(crate) fn policy_name(&self) -> Option<&Arc<str>> {
        self.policy.name()
    }

    /// The endpoint's guards let the current attempt out. The first one earns the retry
    /// budget its deposit: a call turned away before it went out (a full bulkhead, a hold or
    /// rate limit past its deadline) earns nothing.
    pub(crate) fn let_out(&mut self) {
        if self.attempts == 1
            && self.history.is_empty()
            && let Some(guards) = &self.guards
        {
            guards.deposit(self.attempt_started);
        }
    }

    /// The attempt's request starts over now, after waiting to be let out (a bulkhead's
    /// queue, a hold, the rate limit): its clock, and what is left of the budget in its
    /// timeout, which the attempt timeout layer below reads (the client's own call asks
    /// `time_left` instead).
    pub(crate) fn resume(&mut self) {
        let now = Instant::now();
        self.attempt_started = now;
        if let Some(left) = self.budget_for_request(now)
            && let Some(request) = &mut self.request
        {
            *request.timeout_mut() = Some(left);
        }
    }

    /// Sets what is left of the budget at `now` as `request`'s timeout, for the attempt
    /// timeout layer below (the client's own call asks `time_left` instead).
    fn time_request(&self, request: &mut reqwest::Request, now: Instant) {
        if let Some(left) = self.budget_for_request(now) {
            *request.timeout_mut() = Some(left);
        }
    }

    /// What [`time_request`](Self::time_request) sets.
    fn budget_for_request(&self, now: Instant) -> Option<Duration> {
        let deadline = self.clock.deadline().filter(|_| self.budget_in_request)?;
        Some(deadline.saturating_duration_since(now))
    }

    /// The request of the attempt about to go out, while the endpoint's guards decide.
    pub(crate) fn request(&self) -> Option<&reqwest::Request> {
        self.request.as_ref()
    }

    /// Takes the request of the attempt about to go out, to send it (or to hand it to a
    /// hook first).
    pub(crate) fn take_request(&mut self) -> Result<reqwest::Request, Error> {
        self.request
            .take()
            .ok_or_else(|| Error::invalid_config("no request to send: it went out already"))
    }

    /// Takes the current attempt out, to run in a [race](crate::hedge) beside its hedges;
    /// [`put_slot`](Self::put_slot) makes it current again when it ends.
    pub(crate) fn take_slot(&mut self) -> Slot {
        Slot {
            number: self.number,
            started: self.attempt_started,
            hedge: self.hedge,
            delay_before: self.delay_before,
            span: self.observer.swap_attempt(Span::none()),
        }
    }

    /// Makes the attempt of `slot` the current one: it ended, and what it ended with is
    /// handled (recorded, decided on) as the current attempt's.
    pub(crate) fn put_slot(&mut self, slot: Slot) {
        self.number = slot.number;
        self.attempt_started = slot.started;
        self.hedge = slot.hedge;
        self.delay_before = slot.delay_before;
        self.observer.swap_attempt(slot.span);
    }

    /// Sends no hedges, whatever the policy says: for a call whose attempts each need more
    /// than a copy of the request (a hook prepares each one).
    pub(crate) fn forbid_hedges(&mut self) {
        self.may_hedge = false;
    }

    /// How long after the newest attempt went out the next hedge is due; `None` when the
    /// call sends no more (see [`crate::hedge`]: not configured, all sent, a request that
    /// must not be sent twice, or one whose body cannot be copied).
    pub(crate) fn hedges_after(&self) -> Option<Duration> {
        let config = self.policy.hedge?;
        (self.may_hedge && self.hedges < config.max && self.spare.is_some()).then_some(config.after)
    }

    /// A hedge was due, but the service under the retry layer was not ready for it: it is
    /// skipped, and says so as a guard's refusal does.
    pub(crate) fn hedge_not_ready(&self) {
        self.observer
            .hedge_skipped(self.policy.name(), Guard::NotReady);
    }

    /// The request of a hedge, if one may go out now, and which attempt it is. Everything a
    /// retry must get past, a hedge must too, without waiting: the deadline, the retry budget,
    /// a `Retry-After` hold, the rate limit (it takes a slot), and `breaker` if it will turn
    /// the hedge away (the caller's breaker then admits it as any attempt).
    pub(crate) fn hedge(&mut self, breaker: Option<&Breaker>) -> Option<(reqwest::Request, Slot)> {
        self.hedges_after()?;
        let now = Instant::now();
        if self
            .clock
            .deadline()
            .is_some_and(|deadline| now >= deadline)
        {
            return None;
        }
        let policy = self.policy.name();
        let kept_back = match &self.guards {
            Some(guards) => guards.let_hedge_out(now, breaker).err(),
            None => breaker
                .is_some_and(Breaker::refuses_now)
                .then_some(Guard::Breaker),
        };
        if let Some(guard) = kept_back {
            self.observer.hedge_skipped(policy, guard);
            return None;
        }
        let mut request = copy_request(self.spare.as_ref()?)?;
        self.time_request(&mut request, now);
        self.attempts += 1;
        self.hedges += 1;
        self.observer.hedge_sent(policy, self.attempts);
        let slot = Slot {
            number: self.attempts,
            started: now,
            hedge: true,
            delay_before: Duration::ZERO,
            span: self.observer.hedge_span(self.attempts, &request),
        };
        Some((request, slot))
    }

    /// The current attempt failed with `error` while others of its race are still in flight
    /// (`others`): whether the call waits for them. It does when the failure is transient
    /// (the next answer may be good); the failure is then recorded as any attempt's, and no
    /// retry is decided on. Otherwise the caller cancels the others and decides as usual.
    pub(crate) fn keeps_racing(&mut self, error: &Error, others: bool) -> bool {
        if !others || answers(error) {
            return false;
        }
        let now = self.record(Err(error));
        if let Some(guards) = &self.guards
            && error.retry_after().is_some()
        {
            guards.observe(now, error, self.policy.name());
        }
        true
    }

    /// The current attempt's answer (not a transient failure) ended its race: counted when
    /// it is a hedge's.
    pub(crate) fn won_race(&self) {
        if self.hedge {
            self.observer.hedge_won(self.policy.name());
        }
    }

    /// The attempt of `slot` lost its race: it was cancelled when another answered first.
    pub(crate) fn cancelled(&mut self, slot: Slot) {
        let current = self.take_slot();
        self.put_slot(slot);
        let now = Instant::now();
        let duration = now.duration_since(self.attempt_started);
        self.observer.attempt_cancelled();
        self.history.push(Attempt {
            number: self.number,
            started_after: self.attempt_started.duration_since(self.clock.started()),
            duration,
            delay_before: self.delay_before,
            outcome: AttemptOutcome::Cancelled,
            class: Class::Transient,
            delivery: Delivery::MaybeSent,
            hedge: self.hedge,
            resent: false,
        });
        self.put_slot(current);
    }

    /// Starts the call's spans. Called where the call is first polled, so they belong to the
    /// subscriber and the span the caller runs it in.
    pub(crate) fn watch(&mut self) {
        if let Some(request) = &self.request {
            self.observer = Observer::new(request, self.policy.name());
        }
    }

    /// Starts the call, at its first poll (see [`CallClock`]: the client's call and the
    /// retry layer both call this there): its clock, then the first attempt's request (left
    /// in place for [`take_request`](Self::take_request)) with an `Idempotency-Key` if the
    /// policy adds them, the copy for a retry, and the time budget (the deadline, or the
    /// request's own timeout if shorter) in the request's timeout, where the attempt timeout
    /// finds it.
    pub(crate) fn begin(&mut self) -> Result<(), Error> {
        let Some(request) = &mut self.request else {
            return Err(Error::invalid_config("call begun twice"));
        };
        let policy = &self.policy;
        if policy.generate_idempotency_key
            && policy.max_attempts > 1
            && !is_idempotent(request.method())
            && !request.headers().contains_key(IDEMPOTENCY_KEY)
        {
            request.headers_mut().insert(IDEMPOTENCY_KEY, random_key());
        }
        self.may_repeat = policy.may_repeat(request.method(), request.headers());
        self.may_hedge = self.may_hedge
            && policy.hedges()
            && (is_idempotent(request.method()) || request.headers().contains_key(IDEMPOTENCY_KEY));
        // The one copy a retrying stack cannot avoid; skipped when no retry is possible. Made
        // before the budget is set below, so it does not copy that (each retry sets its own).
        let retries = policy.max_attempts > 1 || self.extra_allowed > 0;
        // Even a policy that never retries resends a stream the server names unprocessed
        // (`resends`): the copy is needed for that too.
        if retries || self.may_hedge || MAX_RESENDS > 0 {
            self.spare = copy_request(request);
            // Only a streaming body cannot be copied: it is kept as it is sent, up to the
            // policy's `replay_buffer`, and the copy a retry sends gets the kept body then.
            // The call sends no hedges: a hedge goes out while the stream is still being read.
            if self.spare.is_none()
                && retries
                && policy.replay_buffer() > 0
                && let Some(body) = request.body_mut().take()
            {
                self.spare = copy_request(request);
                let (sending, replay) = Replay::keep(body, policy.replay_buffer());
                *request.body_mut() = Some(sending);
                self.replay = Some(replay);
                self.may_hedge = false;
            }
        }
        let budget = call_budget(request.timeout().copied(), self.own_deadline);
        if self.own_deadline.is_some() && self.budget_in_request {
            *request.timeout_mut() = budget;
        }
        self.clock = CallClock::start(budget);
        self.attempt_started = self.clock.started();
        self.observer.attempt_started(1, request);
        Ok(())
    }

    /// When the current attempt started.
    pub(crate) fn attempt_started(&self) -> Instant {
        self.attempt_started
    }

    /// What reports this call's spans, events and metrics.
    pub(crate) fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Whether a success of `status` ended the call at its first attempt, the common case:
    /// then it keeps no history, and reads no clock unless someone is watching.
    pub(crate) fn first_try_succeeded(&mut self, status: StatusCode) -> bool {
        if !self.history.is_empty() {
            return false;
        }
        if self.observer.watching() {
            let policy_name = self.policy.name();
            let duration = self.attempt_started.elapsed();
            self.observer
                .attempt_ended(policy_name, Ok(status), duration);
            self.observer
                .call_ended(policy_name, Ok(status), self.attempts, duration);
        }
        true
    }

    /// Records how an attempt ended and decides what comes next.
    #[inline]
    pub(crate) fn finish_attempt<O: Success>(&mut self, result: Result<O, Error>) -> Next<O> {
        if let Ok(success) = &result
            && self.first_try_succeeded(success.status())
        {
            return Next::Done(result);
        }
        let now = self.record(result.as_ref().map(Success::status));
        let error = match result {
            Ok(mut success) => {
                let history = RetryHistory(std::mem::take(&mut self.history));
                success.keep_history(history);
                self.observer.call_ended(
                    self.policy.name(),
                    Ok(success.status()),
                    self.attempts,
                    now.duration_since(self.clock.started()),
                );
                return Next::Done(Ok(success));
            }
            Err(error) => error,
        };
        if self.resends(&error, now) {
            return Next::Resend(self.delay_before);
        }
        let reason = ErrorType::of(&error);
        let retry_after = error.retry_after().is_some();
        // A server that asked for a pause holds its endpoint for every call.
        if let Some(guards) = &self.guards
            && retry_after
        {
            guards.observe(now, &error, self.policy.name());
        }
        let decision = Decision {
            policy: &self.policy,
            attempts: self.attempts - self.extra_used - self.hedges - self.resent,
            may_repeat: self.may_repeat,
            replayable: self.replayable(),
            deadline: self.clock.deadline(),
            now,
            guards: self.guards.as_deref(),
        }
        .decide(error, &mut self.delays);
        let policy_name = self.policy.name();
        match decision {
            Ok(delay) => {
                self.observer
                    .retrying(policy_name, self.number, reason, retry_after, delay);
                self.delay_before = delay;
                Next::Retry(delay)
            }
            Err((error, skip)) => {
                let reason = match skip {
                    Skip::Final => error.kind().as_str(),
                    skip => skip.as_str(),
                };
                // An open circuit and a guard's refusal had their own event.
                let announced = matches!(
                    error.kind(),
                    ErrorKind::CircuitOpen | ErrorKind::RateLimited
                );
                self.observer.not_retried(
                    policy_name,
                    self.number,
                    reason,
                    matches!(skip, Skip::Permanent),
                    announced,
                );
                Next::Done(Err(self.fail(error)))
            }
        }
    }

    /// Adds the attempt that just ended to the history; returns when it ended.
    fn record(&mut self, result: Result<StatusCode, &Error>) -> Instant {
        let (outcome, class, delivery) = match result {
            Ok(status) => (
                AttemptOutcome::Status(status),
                Class::Success,
                Delivery::Delivered,
            ),
            Err(error) => (error.outcome(), error.class(), error.delivery()),
        };
        let now = Instant::now();
        let duration = now.duration_since(self.attempt_started);
        self.observer
            .attempt_ended(self.policy.name(), result, duration);
        self.history.push(Attempt {
            number: self.number,
            started_after: self.attempt_started.duration_since(self.clock.started()),
            duration,
            delay_before: self.delay_before,
            outcome,
            class,
            delivery,
            hedge: self.hedge,
            resent: false,
        });
        now
    }

    /// Whether the attempt that just failed with `error` (at `now`, recorded last in the
    /// history) is sent again at once, spending none of the policy's attempts and no backoff:
    /// an HTTP/2 server turning its connections over refused its stream
    /// ([`Turnover::Refused`], never processed: any request), or shut the connection down
    /// gracefully ([`Turnover::GoingAway`], most likely not processed: only a request the
    /// policy may repeat); the call has resends left ([`MAX_RESENDS`]; past
    /// [`FREE_RESENDS`], each spends from the retry budget), time left before its deadline,
    /// and a request it can send again. The one rule for the client's call and the
    /// retry layer: both ask it in `finish_attempt`. Marks the history's entry as resent.
    fn resends(&mut self, error: &Error, now: Instant) -> bool {
        let resend = self.resent < MAX_RESENDS
            && self.replayable()
            && self.clock.deadline().is_none_or(|deadline| now < deadline)
            && match turnover(error) {
                Some(Turnover::Refused) => true,
                // Maybe processed (see `Turnover`): only a request that may be repeated.
                Some(Turnover::GoingAway) => self.may_repeat,
                None => false,
            };
        if !resend {
            return false;
        }
        // Past the first few, a resend spends from the retry budget: a server refusing every
        // stream gets the budget's share more, not `MAX_RESENDS` more per call.
        if self.resent >= FREE_RESENDS
            && let Some(guards) = &self.guards
            && !guards.withdraw(now, self.policy.name())
        {
            return false;
        }
        self.resent += 1;
        if let Some(last) = self.history.last_mut() {
            last.resent = true;
        }
        self.observer
            .resending(self.policy.name(), self.number, self.resent);
        self.delay_before = self.resend_pause(now);
        true
    }

    /// How long the resend just granted waits: the first goes at once; each later one after a
    /// random pause of up to [`RESEND_PAUSE`], never past the deadline. A call turned away
    /// again was sent last on the new connection; sending all such calls together again only
    /// adds to the herd of new connections at the next turnover (and a server that refuses
    /// every stream gets them spread out, not in a burst).
    fn resend_pause(&self, now: Instant) -> Duration {
        if self.resent < 2 {
            return Duration::ZERO;
        }
        let pause = RESEND_PAUSE.mul_f64(fastrand::f64());
        self.clock.deadline().map_or(pause, |deadline| {
            pause.min(deadline.saturating_duration_since(now))
        })
    }

    /// Keeps a copy of the request for one attempt more than the policy allows (a retry with
    /// refreshed credentials); called before the call begins.
    pub(crate) fn allow_extra_attempt(&mut self) {
        self.extra_allowed = 1;
    }

    /// Records an attempt refused for its credentials, to be sent again at once with fresh
    /// ones: one attempt more than the policy allows, once. Fails with the final error when
    /// the request cannot be sent again.
    pub(crate) fn retry_with_new_credentials(&mut self, error: Error) -> Result<(), Error> {
        self.record(Err(&error));
        if !self.replayable() {
            return Err(self.fail(Error::not_replayable(error)));
        }
        self.observer.retrying(
            self.policy.name(),
            self.number,
            ErrorType::of(&error),
            false,
            Duration::ZERO,
        );
        self.extra_used += 1;
        self.delay_before = Duration::ZERO;
        Ok(())
    }

    /// The attempts so far, for a hook.
    pub(crate) fn history(&self) -> &[Attempt] {
        &self.history
    }

    /// When the call must end, if it has a deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.clock.deadline()
    }

    /// The call's whole time budget (see [`call_budget`]), once begun; `None` without a
    /// deadline.
    pub(crate) fn budget(&self) -> Option<Duration> {
        self.clock.budget()
    }

    /// Leaves the budget out of the requests: the caller asks [`time_left`](Self::time_left).
    pub(crate) fn keep_budget_out_of_requests(&mut self) {
        self.budget_in_request = false;
    }

    /// What is left of the call's budget at `now`; `None` without a deadline.
    pub(crate) fn time_left(&self, now: Instant) -> Option<Duration> {
        self.clock.left_at(now)
    }

    /// The number of the attempt about to be made or being made (1 for the first).
    pub(crate) fn attempt_number(&self) -> u32 {
        self.number
    }

    /// Readies the request for the next attempt (see [`take_request`](Self::take_request)),
    /// with what is left of the budget as its timeout.
    pub(crate) fn next_request(&mut self) -> Result<(), Error> {
        self.next_request_with(None)
    }

    /// [`next_request`](Self::next_request) with `header` set on it and on every later
    /// attempt's copy (new credentials).
    pub(crate) fn next_request_with(
        &mut self,
        header: Option<(HeaderName, HeaderValue)>,
    ) -> Result<(), Error> {
        let Some(request) = self.spare.take() else {
            // Unreachable: a retry is only scheduled with a copy in hand.
            let error = Error::new(
                ErrorKind::BodyNotReplayable,
                Class::Permanent,
                Delivery::NotSent,
            );
            return Err(self.fail(error));
        };
        let mut request = request;
        if let Some(replay) = self.replay.take() {
            // Checked by the retry's decision: the stream went out whole.
            let Some(body) = replay.into_body() else {
                let error = Error::new(
                    ErrorKind::BodyNotReplayable,
                    Class::Permanent,
                    Delivery::NotSent,
                );
                return Err(self.fail(error));
            };
            *request.body_mut() = Some(body);
        }
        if let Some((name, value)) = header {
            request.headers_mut().insert(name, value);
        }
        self.attempts += 1;
        self.number = self.attempts;
        self.hedge = false;
        let more = self.attempts - self.hedges - self.resent
            < self.policy.max_attempts + self.extra_allowed;
        if more || self.resent < MAX_RESENDS || self.hedges_after().is_some() {
            self.spare = copy_request(&request);
        }
        let now = Instant::now();
        self.time_request(&mut request, now);
        self.attempt_started = now;
        self.observer.attempt_started(self.attempts, &request);
        self.request = Some(request);
        Ok(())
    }

    /// Whether the request can be sent again: a copy was kept, and a streaming body kept
    /// as it was sent went out whole within the buffer.
    fn replayable(&self) -> bool {
        self.spare.is_some() && self.replay.as_ref().is_none_or(Replay::whole)
    }

    /// The call's final error: its history, its policy, and the deadline if it ran out.
    pub(crate) fn fail(&mut self, error: Error) -> Error {
        let error = error
            .with_history(std::mem::take(&mut self.history))
            .with_policy(self.policy.name());
        let error = match self.clock.ends() {
            Some((at, budget)) => call_ended(error, at, budget),
            None => error,
        };
        self.observer.call_ended(
            self.policy.name(),
            Err(&error),
            self.attempts,
            self.clock.started().elapsed(),
        );
        error
    }
}

/// A random UUID (version 4) as an `Idempotency-Key`.
fn random_key() -> HeaderValue {
    // The operating system's generator: keys must not be guessable or repeat across processes.
    let mut buffer = uuid::Uuid::encode_buffer();
    let key = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    // Hex digits and dashes are always a valid header value.
    HeaderValue::from_str(key).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"))
}

/// Why a failed attempt was not retried (the `reason` of the tracing event).
#[derive(Clone, Copy, Debug)]
enum Skip {
    /// Permanent: retrying cannot help.
    Permanent,
    /// An outcome that ends the call (open circuit, deadline, ...); its reason is the kind.
    Final,
    Exhausted,
    NonIdempotent,
    NotReplayable,
    RetryAfterAboveCap,
    Deadline,
    ScheduleEnded,
    /// The endpoint's retry budget is spent.
    Budget,
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
            Skip::Budget => "budget_exhausted",
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
    guards: Option<&'a Guards>,
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
                | ErrorKind::RateLimited
                | ErrorKind::BulkheadFull
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
                // Spread with the other calls the endpoint's hold releases.
                self.guards.map_or(asked, |guards| {
                    guards.retry_after_wait(self.now, asked, self.deadline)
                })
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
            let error = past_deadline(error).with_detail(detail);
            return Err((error, Skip::Deadline));
        }
        // A retry the policy allows still needs the endpoint's budget: the last thing asked,
        // so only a retry that will happen spends from it.
        let policy = self.policy.name();
        if self
            .guards
            .is_some_and(|guards| !guards.withdraw(self.now, policy))
        {
            return Err((error.into_budget_exhausted(), Skip::Budget));
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

/// A copy of `request` for a later attempt; `None` when its body is a stream.
///
/// `reqwest::Request::try_clone` writes the timeout into the copy's extensions even when there
/// is none, which allocates a map (three allocations per call). The timeout is the only thing
/// reqwest 0.13 keeps in a request's extensions, so copying it when set copies them all
/// (`the_copy_matches_reqwests_own` checks this against each reqwest release we build with).
fn copy_request(request: &reqwest::Request) -> Option<reqwest::Request> {
    if request.body().is_some() {
        // Only reqwest can share a body's bytes without copying them.
        return request.try_clone();
    }
    let mut copy = reqwest::Request::new(request.method().clone(), request.url().clone());
    // Most requests carry no headers of their own yet (reqwest adds its defaults when it
    // sends): cloning an empty map and dropping the copy's own costs about 100 instructions.
    if !request.headers().is_empty() {
        *copy.headers_mut() = request.headers().clone();
    }
    *copy.version_mut() = request.version();
    if let Some(timeout) = request.timeout() {
        *copy.timeout_mut() = Some(*timeout);
    }
    Some(copy)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_look_like_uuid_v4_and_differ() {
        let a = super::random_key();
        let b = super::random_key();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    /// `copy_request` must copy everything reqwest's `try_clone` does: a reqwest release that
    /// keeps more per request would show up here.
    #[test]
    fn the_copy_matches_reqwests_own() {
        let url = "http://u:p@127.0.0.1:8080/a?q=1".parse().unwrap();
        let mut request = reqwest::Request::new(http::Method::PATCH, url);
        request.headers_mut().insert("x-a", "1".parse().unwrap());
        request.headers_mut().append("x-a", "2".parse().unwrap());
        *request.version_mut() = http::Version::HTTP_2;
        for timeout in [None, Some(std::time::Duration::from_millis(1500))] {
            *request.timeout_mut() = timeout;
            let ours = super::copy_request(&request).unwrap();
            let theirs = request.try_clone().unwrap();
            assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
            assert_eq!(ours.timeout(), theirs.timeout());
            assert_eq!(ours.version(), theirs.version());
            assert_eq!(ours.headers(), theirs.headers());
        }
        let mut with_body = request.try_clone().unwrap();
        *with_body.body_mut() = Some(reqwest::Body::from("{}"));
        let copy = super::copy_request(&with_body).unwrap();
        assert_eq!(copy.body().and_then(|b| b.as_bytes()), Some(&b"{}"[..]));
    }
}
