//! A call's retry bookkeeping, for the driver ([`super::Call`]): preparing the first attempt,
//! recording each attempt ([`super::record`]), deciding what comes next ([`super::decision`]),
//! and preparing the next request ([`super::custody`]).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::custody::{Custody, Out, Parked, parked, unsent};
use super::decision::Decision;
use super::race::answers;
use super::record::{Record, Slot};
use crate::breaker::Breaker;
use crate::classify::{Turnover, turnover};
use crate::error::{Attempt, Error, ErrorKind, GiveUp};
use crate::overload::Guards;
use crate::overload::bulkhead::BulkheadPermit;
use crate::overload::pass::Pass;
use crate::overload::server_quota::Ticket;
use crate::overload::throttle::Criticality;
use crate::read::Success;
use crate::retry::delays::Delays;
use crate::retry::{
    FREE_RESENDS, IDEMPOTENCY_KEY, MAX_RESENDS, RESEND_PAUSE, RetryHistory, RetryPolicy,
    is_idempotent,
};
use crate::telemetry::overload::Guard;
use crate::telemetry::{ErrorType, Observer, ServerSeries};
use crate::timeout::{CallClock, call_budget, call_ended};

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
    // The request of the next attempt, its copy for later ones, and a body kept for replay.
    custody: Custody,
    // The attempts so far, the current one, and what reports them.
    record: Record,
    // The deadline configured for the call, until `begin` turns it into `clock`'s.
    own_deadline: Option<Duration>,
    may_repeat: bool,
    // When the call started and must end: started by `begin`, at the call's first poll.
    clock: CallClock,
    // Attempts started so far, hedges included.
    attempts: u32,
    // Hedges sent so far, and whether the request may be hedged at all (until `begin` looks
    // at the request: whether the caller allows it).
    hedges: u32,
    may_hedge: bool,
    delays: Option<Box<Delays>>,
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
    // What the guards gave the attempt (or hedge) they just let out (the server quota's
    // ticket, its adaptive place, its throttle), until the driver hands it to the attempt,
    // which carries it to its end.
    pass: Pass,
    // How much the call matters under overload: the request's, else its policy's.
    criticality: Criticality,
}

impl RetryState {
    /// A call, not yet begun, whose request [`park_first`](Self::park_first) gives; its
    /// clock starts when it [begins](Self::begin).
    #[inline]
    pub(crate) fn new(policy: Arc<RetryPolicy>, deadline: Option<Duration>) -> Self {
        // A stand-in until `begin` starts the call's clock; nothing reads it before.
        let clock = CallClock::unstarted();
        RetryState {
            custody: Custody::default(),
            record: Record::new(clock.started()),
            extra_allowed: 0,
            extra_used: 0,
            resent: 0,
            budget_in_request: true,
            guards: None,
            place: None,
            pass: Pass::default(),
            criticality: Criticality::Default,
            policy,
            own_deadline: deadline,
            may_repeat: false,
            clock,
            attempts: 1,
            hedges: 0,
            may_hedge: true,
            delays: None,
        }
    }

    /// Parks the call's `request` for its first attempt, where the call already is (see
    /// `new_call!`): set before the call begins.
    #[inline]
    pub(crate) fn park_first(&mut self, request: reqwest::Request) {
        self.custody.park_first(request);
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

    /// The call is over: its place in the bulkhead, if it had one, goes back, and so does
    /// whatever the guards gave an attempt that never went (its adaptive place).
    pub(crate) fn give_place_back(&mut self) {
        self.place = None;
        self.drop_pass();
    }

    /// Gives back what the guards gave an attempt that did not go (see
    /// [`give_place_back`](Self::give_place_back)).
    #[inline]
    pub(crate) fn drop_pass(&mut self) {
        if !self.pass.is_empty() {
            self.pass = Pass::default();
        }
    }

    /// The call's policy, as its events and metrics name it.
    pub(crate) fn policy_name(&self) -> Option<&Arc<str>> {
        self.policy.name()
    }

    /// The endpoint's guards let the current attempt out, with the server quota's `ticket`
    /// if it is followed (see [`take_ticket`](Self::take_ticket)). The first one earns the
    /// retry budget its deposit: a call turned away before it went out (a full bulkhead, a
    /// hold or rate limit past its deadline) earns nothing.
    pub(crate) fn let_out(&mut self, ticket: Option<Ticket>) {
        self.pass.ticket = ticket;
        if self.attempts == 1
            && self.record.history.is_empty()
            && let Some(guards) = &self.guards
        {
            guards.deposit(self.record.current.started);
        }
    }

    /// What the guards gave the attempt (or hedge) they let out last, for the attempt to
    /// carry to its end (its answer's head is learned with the ticket).
    pub(crate) fn take_pass(&mut self) -> Pass {
        std::mem::take(&mut self.pass)
    }

    /// What the guards are giving the attempt they are letting out.
    pub(crate) fn pass_mut(&mut self) -> &mut Pass {
        &mut self.pass
    }

    /// How much the call matters under overload.
    pub(crate) fn criticality(&self) -> Criticality {
        self.criticality
    }

    /// The request's criticality (set before the call begins).
    pub(crate) fn set_criticality(&mut self, criticality: Criticality) {
        self.criticality = criticality;
    }

    /// The attempt's request starts over now, after waiting to be let out (a bulkhead's
    /// queue, a hold, the rate limit): its clock, and what is left of the budget in its
    /// timeout, which the attempt timeout layer below reads (the client's own call asks
    /// `time_left` instead).
    pub(crate) fn resume(&mut self) {
        let now = Instant::now();
        self.record.current.started = now;
        if let Some(left) = self.budget_for_request(now)
            && let Some(request) = self.custody.parked_mut()
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
        self.custody.parked()
    }

    /// Takes the request of the attempt about to go out, to send it (or to hand it to a
    /// hook first).
    pub(crate) fn take_request(
        &mut self,
        parked: Parked,
    ) -> Result<(reqwest::Request, Out), Error> {
        self.custody.take(parked)
    }

    /// The parked request does not go out: the guards (or the breaker) turned its attempt
    /// away. The attempt still ends (recorded, decided on) with the token this gives; the
    /// request is dropped now, not held through a backoff or a race (a later attempt sends
    /// the copy).
    pub(crate) fn turned_away(&mut self, parked: Parked) -> Out {
        self.custody.drop_parked();
        unsent(parked)
    }

    /// The attempt of `out`, gone out, did not send its request after all (the deadline
    /// left it no time): the request is dropped now, as one [turned away](Self::turned_away).
    pub(crate) fn not_sent(&mut self, _out: &Out) {
        self.custody.drop_parked();
    }

    /// The request of the attempt about to go out, to change in place before it goes (its
    /// timeout, a propagated deadline): it is moved once, when it is sent
    /// ([`take_sent`](Self::take_sent)).
    pub(crate) fn parked_mut(&mut self) -> Option<&mut reqwest::Request> {
        self.custody.parked_mut()
    }

    /// The parked request's attempt is going out: the token it ends with. Its request stays
    /// parked until [`take_sent`](Self::take_sent) moves it into the sender.
    pub(crate) fn going_out(&mut self, parked: Parked) -> Out {
        unsent(parked)
    }

    /// The parked request of the attempt of `out`, into the sender.
    pub(crate) fn take_sent(&mut self, out: &Out) -> Option<reqwest::Request> {
        self.custody.take_sent(out)
    }

    /// Parks `request` (a hook's) for the attempt about to go out.
    pub(crate) fn park(&mut self, request: reqwest::Request) -> Parked {
        self.custody.park(request)
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
        (self.may_hedge && self.hedges < config.max && self.custody.has_copy())
            .then_some(config.after)
    }

    /// A hedge was due, but the service under the retry layer was not ready for it: it is
    /// skipped, and says so as a guard's refusal does.
    pub(crate) fn hedge_not_ready(&self) {
        self.record
            .observer
            .hedge_skipped(self.policy.name(), Guard::NotReady);
    }

    /// Parks the request of a hedge, if one may go out now, and says which attempt it is.
    /// Everything a
    /// retry must get past, a hedge must too, without waiting: the deadline, the retry budget,
    /// a `Retry-After` hold, the rate limit (it takes a slot), and `breaker` if it will turn
    /// the hedge away (the caller's breaker then admits it as any attempt).
    pub(crate) fn hedge(&mut self, breaker: Option<&Breaker>) -> Option<(Parked, Slot)> {
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
            Some(guards) => match guards.let_hedge_out(now, self.criticality, breaker) {
                Ok(pass) => {
                    self.pass = pass;
                    None
                }
                Err(guard) => Some(guard),
            },
            None => breaker
                .is_some_and(Breaker::refuses_now)
                .then_some(Guard::Breaker),
        };
        if let Some(guard) = kept_back {
            self.record.observer.hedge_skipped(policy, guard);
            return None;
        }
        let mut request = self.custody.hedge_copy()?;
        self.time_request(&mut request, now);
        self.attempts += 1;
        self.hedges += 1;
        self.record.observer.hedge_sent(policy, self.attempts);
        let span = self.record.observer.hedge_span(self.attempts, &request);
        let slot = Slot::hedge(self.attempts, now, span);
        Some((self.custody.park(request), slot))
    }

    /// The current attempt failed with `error` while others of its race are still in flight
    /// (`others`): whether the call waits for them. It does when the failure is transient
    /// (the next answer may be good); the failure is then recorded as any attempt's, and no
    /// retry is decided on, and `out` is spent; otherwise it comes back, and the caller
    /// cancels the others and decides as usual.
    pub(crate) fn keeps_racing(&mut self, out: Out, error: &Error, others: bool) -> Option<Out> {
        if !others || answers(error) {
            return Some(out);
        }
        let now = self.record(Err(error));
        if let Some(guards) = &self.guards
            && error.retry_after().is_some()
        {
            guards.observe(now, error, self.policy.name());
        }
        None
    }

    /// The current attempt's answer (not a transient failure) ended its race: counted when
    /// it is a hedge's.
    pub(crate) fn won_race(&self) {
        if self.record.current.hedge {
            self.record.observer.hedge_won(self.policy.name());
        }
    }

    /// The attempt of `slot` lost its race: it was cancelled when another answered first.
    pub(crate) fn cancelled(&mut self, slot: Slot, _out: Out) {
        self.record.cancelled(slot, self.clock.started());
    }

    /// Takes the current attempt out, to run in a [race](crate::hedge) beside its hedges;
    /// [`put_slot`](Self::put_slot) makes it current again when it ends.
    pub(crate) fn take_slot(&mut self) -> Slot {
        self.record.take_slot()
    }

    /// Makes the attempt of `slot` the current one (see [`Record::put_slot`]).
    pub(crate) fn put_slot(&mut self, slot: Slot) {
        self.record.put_slot(slot);
    }

    /// Starts the call's spans. Called where the call is first polled, so they belong to the
    /// subscriber and the span the caller runs it in. `exchanges`: whether each attempt is
    /// the exchange on the wire (see `Sender::EXCHANGES`); `servers`: the policy's server
    /// labels, if its metrics have them.
    pub(crate) fn watch(&mut self, exchanges: bool, servers: Option<&ServerSeries>) {
        if let Some(request) = self.custody.parked() {
            let (policy, criticality) = (self.policy.name(), self.criticality);
            self.record.observer = Observer::new(request, policy, criticality, exchanges, servers);
        }
    }

    /// Starts the call, at its first poll (see [`CallClock`]): its clock, then the first attempt's request (left
    /// in place for [`take_request`](Self::take_request)) with an `Idempotency-Key` if the
    /// policy adds them, the copy for a retry, and the time budget (the deadline, or the
    /// request's own timeout if shorter) in the request's timeout, where the attempt timeout
    /// finds it.
    pub(crate) fn begin(&mut self) -> Result<Parked, Error> {
        let policy = &self.policy;
        // The one copy a retrying stack cannot avoid; skipped when no retry is possible. Made
        // before the budget is set below, so it does not copy that (each retry sets its own).
        // Even a policy that never retries resends a stream the server names unprocessed
        // (`resends`): the copy is needed for that too.
        let retries = policy.max_attempts > 1 || self.extra_allowed > 0;
        let copy = retries || (self.may_hedge && policy.hedges()) || MAX_RESENDS > 0;
        let Some((request, kept)) = self.custody.ready_first(policy, copy, retries) else {
            return Err(Error::invalid_config("call begun twice"));
        };
        self.may_repeat = policy.may_repeat(request.method(), request.headers());
        // A kept stream is still being read when a hedge would go out.
        self.may_hedge = self.may_hedge
            && !kept
            && policy.hedges()
            && (is_idempotent(request.method()) || request.headers().contains_key(IDEMPOTENCY_KEY));
        self.clock = CallClock::start(call_budget(request.timeout().copied(), self.own_deadline));
        // The layers below a sorted sender find the budget in the request: a deadline of the
        // call's own, or its caller's, which the request's own timeout does not know.
        if (self.own_deadline.is_some() || self.clock.inherited()) && self.budget_in_request {
            *request.timeout_mut() = self.clock.budget();
        }
        self.record.current.started = self.clock.started();
        self.record.observer.attempt_started(1, request);
        Ok(parked())
    }

    /// When the current attempt started.
    pub(crate) fn attempt_started(&self) -> Instant {
        self.record.current.started
    }

    /// What reports this call's spans, events and metrics.
    pub(crate) fn observer(&self) -> &Observer {
        &self.record.observer
    }

    /// Whether a success of `status` ended the call at its first attempt, the common case:
    /// then it keeps no history, and reads no clock unless someone is watching. `out` is the
    /// attempt's: the call is over with it.
    pub(crate) fn first_try_succeeded(&mut self, _out: &Out, status: StatusCode) -> bool {
        if !self.record.history.is_empty() {
            return false;
        }
        if self.record.observer.watching() {
            let policy_name = self.policy.name();
            let duration = self.record.current.started.elapsed();
            self.record
                .observer
                .attempt_ended(policy_name, Ok(status), duration);
            self.record
                .observer
                .call_ended(policy_name, Ok(status), self.attempts, duration);
        }
        true
    }

    /// Records how an attempt ended and decides what comes next.
    #[inline]
    pub(crate) fn finish_attempt<O: Success>(
        &mut self,
        out: Out,
        result: Result<O, Error>,
    ) -> Next<O> {
        if let Ok(success) = &result
            && self.first_try_succeeded(&out, success.status())
        {
            return Next::Done(result);
        }
        let now = self.record(result.as_ref().map(Success::status));
        let error = match result {
            Ok(mut success) => {
                let history = RetryHistory(std::mem::take(&mut self.record.history));
                success.keep_history(history);
                self.record.observer.call_ended(
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
            return Next::Resend(self.record.current.delay_before);
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
            criticality: self.criticality,
        }
        .decide(error, &mut self.delays);
        let policy_name = self.policy.name();
        match decision {
            Ok(delay) => {
                self.record.observer.retrying(
                    policy_name,
                    self.record.current.number,
                    reason,
                    retry_after,
                    delay,
                );
                self.record.current.delay_before = delay;
                Next::Retry(delay)
            }
            Err((error, reason)) => {
                // An open circuit and a guard's refusal had their own event.
                let announced = matches!(
                    error.kind(),
                    ErrorKind::CircuitOpen | ErrorKind::RateLimited
                );
                self.record.observer.not_retried(
                    policy_name,
                    self.record.current.number,
                    reason.as_str(),
                    reason == GiveUp::Permanent,
                    announced,
                );
                Next::Done(Err(self.fail(error, reason)))
            }
        }
    }

    /// Adds the attempt that just ended to the history; returns when it ended.
    fn record(&mut self, result: Result<StatusCode, &Error>) -> Instant {
        let policy = self.policy.name();
        self.record.ended(result, policy, self.clock.started())
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
            && !guards.withdraw(now, self.criticality, self.policy.name())
        {
            return false;
        }
        self.resent += 1;
        if let Some(last) = self.record.history.last_mut() {
            last.resent = true;
        }
        self.record
            .observer
            .resending(self.policy.name(), self.record.current.number, self.resent);
        self.record.current.delay_before = self.resend_pause(now);
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
    pub(crate) fn retry_with_new_credentials(
        &mut self,
        _out: Out,
        error: Error,
    ) -> Result<(), Error> {
        self.record(Err(&error));
        if !self.replayable() {
            let error = Error::not_replayable(error);
            return Err(self.fail(error, GiveUp::BodyNotReplayable));
        }
        self.record.observer.retrying(
            self.policy.name(),
            self.record.current.number,
            ErrorType::of(&error),
            false,
            Duration::ZERO,
        );
        self.extra_used += 1;
        self.record.current.delay_before = Duration::ZERO;
        Ok(())
    }

    /// The attempts so far, for a hook.
    pub(crate) fn history(&self) -> &[Attempt] {
        &self.record.history
    }

    /// When the call must end, if it has a deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.clock.deadline()
    }

    /// The call's own time budget (see [`call_budget`]), once begun, which its caller's
    /// deadline does not change (see `CallClock::own_budget`); `None` without a deadline.
    pub(crate) fn own_budget(&self) -> Option<Duration> {
        self.clock.own_budget()
    }

    /// Whether the caller's deadline, inherited from a scope, had passed when the call
    /// began: it fails at once, not sent.
    pub(crate) fn caller_gave_up(&self) -> bool {
        self.clock.caller_gave_up()
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
        self.record.current.number
    }

    /// Readies the request for the next attempt (see [`take_request`](Self::take_request)),
    /// with what is left of the budget as its timeout.
    pub(crate) fn next_request(&mut self) -> Result<Parked, Error> {
        self.next_request_with(None)
    }

    /// [`next_request`](Self::next_request) with `header` set on it and on every later
    /// attempt's copy (new credentials).
    pub(crate) fn next_request_with(
        &mut self,
        header: Option<(HeaderName, HeaderValue)>,
    ) -> Result<Parked, Error> {
        self.attempts += 1;
        let more = self.attempts - self.hedges - self.resent
            < self.policy.max_attempts + self.extra_allowed;
        let copy_again = more || self.resent < MAX_RESENDS || self.hedges_after().is_some();
        let now = Instant::now();
        let left = self.budget_for_request(now);
        let request = match self.custody.next(header, copy_again) {
            Ok(request) => request,
            Err(error) => {
                let reason = GiveUp::ending(&error);
                return Err(self.fail(error, reason));
            }
        };
        if let Some(left) = left {
            *request.timeout_mut() = Some(left);
        }
        self.record.observer.attempt_started(self.attempts, request);
        self.record.current.number = self.attempts;
        self.record.current.hedge = false;
        self.record.current.started = now;
        Ok(parked())
    }

    /// Whether the request can be sent again (see [`Custody::replayable`]).
    fn replayable(&self) -> bool {
        self.custody.replayable()
    }

    /// The call's final error: its history, its policy, why the call stopped (`reason`), and
    /// the deadline if it ran out.
    pub(crate) fn fail(&mut self, error: Error, reason: GiveUp) -> Error {
        let error = error
            .with_history(std::mem::take(&mut self.record.history))
            .with_policy(self.policy.name())
            .with_give_up(reason);
        let error = match self.clock.ends() {
            Some((at, budget)) => call_ended(error, at, budget, self.clock.inherited()),
            None => error,
        };
        self.record.observer.call_ended(
            self.policy.name(),
            Err(&error),
            self.attempts,
            self.clock.started().elapsed(),
        );
        error
    }
}
