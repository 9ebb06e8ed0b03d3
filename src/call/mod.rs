//! The one driver: the state machine that sequences every attempt's life, for every path.
//!
//! A call asks the rules in one order, written once here: the endpoint's guards
//! ([`gate`]: bulkhead, `Retry-After` hold, rate limit), the hook, the breaker, the send, the
//! classification, the race of hedges ([`race`]), the retry's decision ([`RetryState`],
//! [`decision`]), the wait. Each rule is a function of its own; this file only sequences them.
//! What sends an attempt is the one thing a path chooses ([`Sender`]: the client's
//! `reqwest::Client`, the rest of a reqwest-middleware chain, a tower service), so the client,
//! `ResilientMiddleware`, `ResilientLayer` and the public `Retry` layer cannot drift apart,
//! and a scripted sender drives it on paused time in the unit tests (`tests.rs`).
//!
//! It also does what separate layers cannot: read the body inside the attempt
//! ([`crate::read`]) and run hooks before attempts. A call is one future (boxed once), with
//! no task spawned and no lock on the success path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use tokio::time::{Instant, Sleep, sleep, sleep_until};

use crate::breaker::Breaker;
use crate::breaker::state::{Permit, Verdict};
use crate::caught::{call_caught, caught, hook_failed, poll_caught};
use crate::classify::{Class, Classifier, Delivery, outcome, response_outcome};
use crate::error::{BoxError, Error, ErrorKind, GiveUp};

use crate::call::race::{Race, Runner, answers};
use crate::call::record::Slot;
use crate::call::state::{Next, RetryState};
use crate::extras::Extras;
use crate::hook::{AttemptInfo, AuthRefresher, BodyFactory, BoxFuture};
use crate::overload::Criticality;
use crate::overload::pass::{Answer, Pass};
use crate::policy::{CompiledPolicy, Policies};
use crate::read::{Buffered, Reader, Success, buffer, limited};
use crate::timeout::{Clock, attempt_limit, expired, ran_out, timed_out};
use custody::{Out, Parked};
use gate::{Gate, Waited};

mod custody;
mod decision;
mod gate;
mod race;
mod record;
mod sender;
mod service_sender;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use sender::{ClientSender, Failed, Sender, Sent, from_layers};
pub(crate) use service_sender::{AnyService, ServiceSender, SortedLayers};

/// Which policy a call follows.
pub(crate) enum Which {
    /// An endpoint rule by index, or the default (`None`).
    Shared(Option<usize>),
    /// A policy changed for this request.
    Custom(Box<CompiledPolicy>),
}

/// What a step of a call leads to: its output, or (`None`) the next stage to poll.
type Step<O> = Option<Result<O, Error>>;

/// Where a call is.
enum Stage<O, F> {
    /// Not polled yet.
    Start,
    /// The request's body factory, then the policy's hook, are preparing the next attempt's
    /// request (see [`Call::hooked_or_sent`]).
    Hook(BoxFuture<Result<reqwest::Request, Error>>, Out),
    /// An attempt is waiting for the response's head (and, if `Call::hedge_timer` is
    /// armed, for its first hedge to come due).
    Send(F),
    /// An attempt and its hedges are waiting for their heads, in `Call::race`; the next
    /// hedge, if any, is due when `Call::hedge_timer` says.
    Race,
    /// Reading the body into memory (for `send_buffered` or a body classifier).
    Buffer(BoxFuture<Result<Buffered, Error>>),
    /// The caller's reader is reading the response (see [`reading_until`]).
    Read(BoxFuture<Result<O, Error>>),
    /// Fetching new credentials after a `401`.
    Refresh(BoxFuture<Result<HeaderValue, Error>>),
    /// Waiting before the next attempt.
    Sleep(Pin<Box<Sleep>>),
    /// The endpoint's guards keep the next attempt's request back for a while: a queue at
    /// its bulkhead, a `Retry-After` hold, the rate limit (see [`gate`]).
    Gated(BoxFuture<Waited>, Parked),
    /// Over.
    Done,
}

/// Why an attempt did not go out.
enum Unsent {
    /// The breaker turned it away: an attempt that was not sent, which ends with `Out`.
    Refused(Error, Out),
    /// The deadline left it no time.
    Expired(Error, Out),
}

/// A call of `request` under the policy `which` picks, put by `$place` (`Box::new`, or
/// [`InPlace`]) where it stays, then set up there: the retry state is large, and a move after
/// a change copies it all. A macro, so that both constructors write `$place(Call { .. })` as
/// one literal, the shape the compiler builds with the fewest copies (run M measured a
/// function taking `$place` about 20 instructions dearer). The request (264 bytes) goes in
/// last, straight into its place in the call: carried through the literal, it was copied
/// from one stack slot to the next five times more (issue 28).
macro_rules! new_call {
    ($place:expr, $sender:ident, $policies:ident, $which:ident, $request:ident, $reader:expr, $buffered:expr) => {{
        let (mut sender, policies, which) = ($sender, $policies, $which);
        let request = &$request;
        let chosen = policy(&policies, &which);
        sender.follow(chosen);
        let method = request.method().clone();
        // Chosen once per call, with the policy: the breaker of this endpoint.
        let (breaker, guards) = chosen.endpoint(request.url());
        let (retry_policy, deadline) = (chosen.retry_policy(), chosen.total_deadline());
        let extras = chosen.extras();
        let criticality = chosen.criticality();
        let refresher = extras.is_some_and(|e| e.refresher.is_some());
        let hook = extras.is_some_and(|e| e.hook.is_some());
        let mut call = $place(Call {
            stage: Stage::Start,
            sender,
            policies,
            which,
            retry: RetryState::new(retry_policy, deadline),
            method,
            breaker,
            attempt: None,
            race: None,
            hedge_timer: HedgeTimer::default(),
            reader: $reader,
            buffered: $buffered,
            refreshed_once: false,
            body: None,
        });
        let retry = &mut call.retry;
        if refresher {
            retry.allow_extra_attempt();
        }
        // A hook prepares each attempt's request in turn; a hedge would skip it.
        if hook {
            retry.forbid_hedges();
        }
        // The layers below a sorted sender bound each attempt by what the request carries.
        if !S::SORTED {
            retry.keep_budget_out_of_requests();
        }
        retry.guard_with(guards);
        retry.set_criticality(criticality);
        retry.park_first($request);
        call
    }};
}

/// A value where it was made: [`new_call!`] for a call that is not boxed.
struct InPlace<T>(T);

impl<T> std::ops::Deref for InPlace<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for InPlace<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// The attempt in flight: from its admission by the breaker until its result is known.
struct Attempt {
    /// What its end hands to the retry state (see [`Out`]).
    out: Out,
    /// The breaker's permit; `None` when the policy has no breaker.
    permit: Option<Permit>,
    /// When it was sent, read only when someone needs it: a breaker that counts slow calls,
    /// a reader (whose time counts from the send).
    sent_at: Option<Instant>,
    /// How long it may take, and whether the call's deadline, not the attempt timeout, set
    /// that (see [`attempt_limit`]).
    limit: Duration,
    by_deadline: bool,
    /// What the guards gave it: the server quota's ticket (its answer is learned with it),
    /// its adaptive place, its throttle.
    pass: Pass,
}

impl Attempt {
    /// Tells `breaker` (the one that admitted it) how the attempt went; `Ignored` gives a
    /// half-open probe's place back. Taking the attempt makes this happen once; what is left
    /// is its token, for the retry state.
    /// The guards hear of it as `answer` says.
    fn end(self, breaker: Option<&Breaker>, verdict: Verdict, answer: Answer) -> Out {
        if let (Some(breaker), Some(permit)) = (breaker, self.permit) {
            breaker.record(permit, verdict, self.sent_at);
        }
        self.pass.end(answer);
        self.out
    }
}

/// When a call's next hedge is due: at most one timer per call, made only when an attempt
/// that may be hedged is first left waiting, and kept for the rest of the call.
#[derive(Default)]
struct HedgeTimer {
    /// When the next hedge is due, while one may be sent and `timer` is not yet set for it:
    /// set when an attempt or a hedge goes out, moved into the timer at the first poll that
    /// leaves the call waiting (an answer ready at once never touches the timer).
    due: Option<Instant>,
    /// Whether `timer` is set for the next hedge.
    armed: bool,
    /// The call's one timer, made the first time it is needed, reset for each later hedge
    /// and attempt (tokio moves a registered timer only when its deadline comes sooner),
    /// never dropped before the call: disarmed, it may wake the call once, for nothing.
    /// Polled only in `Send` and `Race`. Boxed, as the call must stay `Unpin` (see
    /// `Stage::Sleep`).
    timer: Option<Pin<Box<Sleep>>>,
}

impl HedgeTimer {
    /// The next hedge is due `at`, or (`None`) no more are.
    #[inline]
    fn arm(&mut self, at: Option<Instant>) {
        self.due = at;
        self.armed = false;
    }

    /// No hedge is due any more (the attempt, or its race, ended): nothing is freed, the
    /// timer waits for the call's next attempt.
    #[inline]
    fn disarm(&mut self) {
        self.due = None;
        self.armed = false;
    }

    /// Whether the next hedge is due now; if not, the task is woken when it is. Called
    /// only when the call is about to wait.
    #[inline]
    fn due(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(at) = self.due.take() {
            #[cfg(test)]
            tests::HEDGE_TIMERS_SET.with(|set| set.set(set.get() + 1));
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(at),
                None => self.timer = Some(Box::pin(sleep_until(at))),
            }
            self.armed = true;
        }
        if !self.armed {
            return false;
        }
        let due = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        // Until `Call::hedge` says when the one after is due.
        self.armed = !due;
        due
    }
}

/// One call through one policy, resolving to `O`, each attempt sent by `S`: the only state
/// machine that sequences an attempt's life, for every path (see [`sender`]).
pub(crate) struct Call<O, S: Sender = ClientSender> {
    stage: Stage<O, S::Future>,
    sender: S,
    policies: Arc<Policies>,
    which: Which,
    // Holds the request until the first poll, then each retry's copy.
    retry: RetryState,
    method: Method,
    // The breaker of the request's endpoint, chosen with the policy; `None` when it has none.
    breaker: Option<Arc<Breaker>>,
    // `Some` exactly while an attempt is in flight, outside a race.
    attempt: Option<Attempt>,
    // The attempts in flight while hedging (see `crate::hedge`), from when the first hedge
    // came due: until then the attempt is in `attempt`, as any other.
    race: Option<Box<Race<S::Future, Attempt>>>,
    // When the next hedge is due, while one may be sent (see `HedgeTimer`).
    hedge_timer: HedgeTimer,
    reader: Reader<O>,
    // Whether the body is read into memory inside the attempt.
    buffered: bool,
    // Whether credentials were refreshed once already.
    refreshed_once: bool,
    // Makes each attempt's body, if the request has a factory.
    body: Option<BodyFactory>,
}

impl<O, S: Sender> Drop for Call<O, S> {
    fn drop(&mut self) {
        // A cancelled call gives a half-open probe's place back, for each attempt in flight.
        if let Some(attempt) = self.attempt.take() {
            let _out = attempt.end(self.breaker.as_deref(), Verdict::Ignored, Answer::Uncounted);
        }
        if let Some(race) = self.race.take() {
            for attempt in race.abandon() {
                let _out =
                    attempt.end(self.breaker.as_deref(), Verdict::Ignored, Answer::Uncounted);
            }
        }
    }
}

impl<O: Success, S: Sender> Call<O, S> {
    /// A call, boxed (as reqwest boxes its own: some 900 bytes that every move of the
    /// caller's future would otherwise carry; one allocation costs less).
    #[inline]
    pub(crate) fn new(
        sender: S,
        policies: Arc<Policies>,
        which: Which,
        request: reqwest::Request,
        reader: Reader<O>,
        buffered: bool,
    ) -> Box<Self> {
        // The box first, then the call written into it: built after the allocation, the
        // call's literal goes straight into the box rather than onto the stack and then over.
        let slot = Box::new_uninit();
        new_call!(
            |call| Box::write(slot, call),
            sender,
            policies,
            which,
            request,
            reader,
            buffered
        )
    }

    /// A call, for a future that is boxed already (an `async_trait` middleware's) or that
    /// its caller places (a tower stack's).
    #[inline]
    pub(crate) fn unboxed(
        sender: S,
        policies: Arc<Policies>,
        which: Which,
        request: reqwest::Request,
        reader: Reader<O>,
        buffered: bool,
    ) -> Self {
        new_call!(InPlace, sender, policies, which, request, reader, buffered).0
    }

    /// Makes each attempt's body with `factory`, before the hook (if any), so that every
    /// attempt sends a fresh one; set before the call is first polled.
    pub(crate) fn with_body(mut self: Box<Self>, factory: BodyFactory) -> Box<Self> {
        self.body = Some(factory);
        // A hedge goes out at once, with no time to make its body.
        self.retry.forbid_hedges();
        self
    }

    /// Gives this call `criticality` instead of its policy's (the request's own); set before
    /// the call is first polled.
    pub(crate) fn set_criticality(&mut self, criticality: Criticality) {
        self.retry.set_criticality(criticality);
    }

    fn policy(&self) -> &CompiledPolicy {
        policy(&self.policies, &self.which)
    }

    fn extras(&self) -> Option<&Extras> {
        self.policy().extras()
    }

    /// The call is over, with `result`.
    fn done(&mut self, result: Result<O, Error>) -> Step<O> {
        self.stage = Stage::Done;
        // Its place in the bulkhead goes back now, not when the future is dropped: a caller
        // may keep a finished future around (`select!` over `&mut pending`).
        self.retry.give_place_back();
        Some(result)
    }

    /// The first poll: the call's clock starts (see `CallClock`), it takes its place in the
    /// endpoint's bulkhead, if any, then its first attempt.
    fn started(&mut self) -> Step<O> {
        match self.retry.begin() {
            // Before the guards: a call its caller has given up on takes no place, no slot.
            Ok(parked) if self.retry.caller_gave_up() => self.expired_at_once(parked),
            Ok(parked) => {
                let gate = gate::enter(&mut self.retry, parked, self.breaker.as_deref());
                self.gated(gate)
            }
            Err(error) => self.done(Err(error)),
        }
    }

    /// The caller's deadline had passed when the call began: it fails at once, not sent, as
    /// an attempt with no time left does (see [`launch`](Self::launch)).
    fn expired_at_once(&mut self, parked: Parked) -> Step<O> {
        let error = match self.retry.take_request(parked) {
            Ok((request, _out)) => expired(&request, Duration::ZERO),
            Err(error) => error,
        };
        let error = self.retry.fail(error, GiveUp::Deadline);
        self.done(Err(error))
    }

    /// The request for the next attempt is ready: once the endpoint's guards let it out
    /// (a `Retry-After` hold, the rate limit), through the hook, if any, then out.
    #[inline]
    fn prepare(&mut self, parked: Parked) -> Step<O> {
        let gate = gate::admit(&mut self.retry, parked, self.breaker.as_deref());
        self.gated(gate)
    }

    /// A wait at the endpoint's guards is over.
    fn waited(&mut self, waited: Waited, parked: Parked) -> Step<O> {
        let gate = gate::waited(&mut self.retry, waited, parked, self.breaker.as_deref());
        self.gated(gate)
    }

    /// What the endpoint's guards made of the request.
    fn gated(&mut self, gate: Gate) -> Step<O> {
        match gate {
            Gate::Out(parked) => self.hooked_or_sent(parked),
            Gate::Wait(waiting, parked) => {
                self.stage = Stage::Gated(waiting, parked);
                None
            }
            // Recorded as an attempt that was not sent, like a breaker's refusal.
            Gate::Refused(error, parked) => {
                let out = self.retry.turned_away(parked);
                self.failed(out, error)
            }
            Gate::Over(error) => self.done(Err(error)),
        }
    }

    /// The attempt's request, through the body factory and the hook, if any, then out.
    fn hooked_or_sent(&mut self, parked: Parked) -> Step<O> {
        let hook = self.extras().and_then(|e| e.hook.clone());
        if hook.is_none() && self.body.is_none() {
            // The attempt started just now: its request was readied (`begin`, `next_request`,
            // `resume` read the clock) and let out by the guards, which do not wait.
            let now = self.retry.attempt_started();
            return self.send(parked, now);
        }
        let (request, out) = match self.retry.take_request(parked) {
            Ok(taken) => taken,
            Err(error) => return self.done(Err(error)),
        };
        let hooking = hook.map(|hook| {
            let info = AttemptInfo {
                number: self.retry.attempt_number(),
                history: self.retry.history().to_vec(),
                policy: self.policy().name.clone(),
            };
            (hook, info)
        });
        let deadline = self.retry.deadline();
        let body = self.body.clone();
        let (method, url) = (self.method.clone(), request.url().clone());
        let preparing = async move {
            let mut request = request;
            if let Some(BodyFactory(make)) = body {
                let making = within(deadline, call_caught("body factory", || make()));
                *request.body_mut() = Some(run_caught(making, "body factory").await?);
            }
            let Some((hook, info)) = hooking else {
                return Ok(request);
            };
            let what = format!("hook {:?}", hook.name());
            let label = what.clone();
            let start = move || -> BoxFuture<Result<reqwest::Request, Error>> {
                let future = hook.before_attempt(request, info);
                Box::pin(async move { future.await.map_err(|e| hook_failed(&label, failed(e))) })
            };
            let hooking = within(deadline, call_caught(&what, start));
            run_caught(hooking, &what).await
        };
        // The factory and the hook had the request: their errors name the one they were given.
        let hooking = Box::pin(async move {
            let request = preparing.await;
            request.map_err(|error| error.with_request(&method, &url))
        });
        self.stage = Stage::Hook(hooking, out);
        None
    }

    /// The hook is done with the attempt's request.
    fn hooked(&mut self, request: Result<reqwest::Request, Error>, out: Out) -> Step<O> {
        match request {
            // The hook's time comes out of the budget: `send` counts from now. The token of
            // the request the hook had is spent: the parked one goes out.
            Ok(request) => {
                let _out = out;
                let parked = self.retry.park(request);
                self.send(parked, Instant::now())
            }
            // An attempt that failed before it was sent: recorded (history, span, metrics)
            // as any other, and never retried (a hook's failure is permanent).
            Err(error) => self.failed(out, error),
        }
    }

    /// Admits the attempt of the `parked` request through the breaker and sends it at
    /// `now`, in a race with its hedges if the call may send any.
    fn send(&mut self, parked: Parked, now: Instant) -> Step<O> {
        // What the sender does at once (a layer's breaker, say) belongs to the attempt's span.
        let launched = if self.sender.works_at_once() {
            let _attempt = self.retry.observer().enter_attempt();
            self.launch(parked, now)
        } else {
            self.launch(parked, now)
        };
        let (attempt, sending) = match launched {
            Ok(launched) => launched,
            Err(unsent) => return self.unsent(unsent),
        };
        // No race until the first hedge is due: most answers come before it. None is armed
        // when it is due no sooner than the attempt's limit: the sender's timeout ends the
        // attempt then (its timer starts a few µs after `now`, read before the guards and
        // the breaker, so the hedge could precede it by those µs at most), and a timed-out
        // attempt goes to the retry decision, not to a race.
        let ends_first = self.sender.ends_at_limit();
        let after =
            (self.retry.hedges_after()).filter(|after| !(ends_first && *after >= attempt.limit));
        self.attempt = Some(attempt);
        self.stage = Stage::Send(sending);
        self.hedge_timer
            .arm(after.map(|after| now.checked_add(after).unwrap_or(now)));
        None
    }

    /// An attempt that did not go out.
    fn unsent(&mut self, unsent: Unsent) -> Step<O> {
        match unsent {
            Unsent::Refused(error, out) => self.failed(out, error),
            Unsent::Expired(error, _out) => {
                let error = self.retry.fail(error, GiveUp::Deadline);
                self.done(Err(error))
            }
        }
    }

    /// The first hedge is due while the attempt of `Stage::Send` is in flight: it becomes
    /// the first runner of a race, which the hedge joins.
    fn start_race(&mut self, cx: &mut Context<'_>) {
        let Stage::Send(future) = std::mem::replace(&mut self.stage, Stage::Race) else {
            return;
        };
        let Some(attempt) = self.attempt.take() else {
            // Unreachable: an attempt is in flight while the stage is `Send`.
            self.stage = Stage::Send(future);
            return;
        };
        let first = Runner {
            future,
            slot: self.retry.take_slot(),
            attempt,
        };
        self.race = Some(Box::new(Race::new(first)));
        self.hedge(cx);
    }

    /// The `parked` request's attempt, admitted by the breaker and on its way at `now`, with
    /// how long it may take. The request is readied where it is parked and moved out only
    /// into the sender: it is large, and each move copies it whole.
    fn launch(&mut self, parked: Parked, now: Instant) -> Result<(Attempt, S::Future), Unsent> {
        // Taken first: an attempt turned away below gives its adaptive place back with it.
        let mut pass = self.retry.take_pass();
        pass.sent(now);
        if S::SORTED {
            // The layers below keep the breaker and bound the attempt (see `Sender::SORTED`),
            // so they alone know its limit, and propagate it (`PropagateDeadlineLayer`).
            let out = self.retry.going_out(parked);
            let Some(request) = self.retry.take_sent(&out) else {
                // Unreachable: the request was parked for this attempt.
                return Err(Unsent::Refused(not_in_flight(), out));
            };
            let attempt = Attempt {
                out,
                permit: None,
                sent_at: None,
                limit: Duration::MAX,
                by_deadline: false,
                pass,
            };
            return Ok((attempt, self.sender.send(request)));
        }
        let left = self.retry.time_left(now);
        let policy = policy(&self.policies, &self.which);
        let breaker = self.breaker.as_deref();
        let Some(request) = self.retry.parked_mut() else {
            // Unreachable: the request was parked for this attempt.
            return Err(Unsent::Refused(
                not_in_flight(),
                self.retry.turned_away(parked),
            ));
        };
        let (permit, sent_at) = match breaker {
            None => (None, None),
            Some(breaker) => match breaker.admit() {
                Ok(permit) => (Some(permit), breaker.call_started()),
                Err(rejection) => {
                    let error = breaker.rejected(rejection, request);
                    return Err(Unsent::Refused(error, self.retry.turned_away(parked)));
                }
            },
        };
        let own_budget = self.retry.own_budget();
        let (limit, by_deadline) = attempt_limit(policy.attempt_timeout(), own_budget, left);
        // With deadline propagation the server is told the limit less a margin, and an
        // attempt with nothing left after it is not sent (see `deadline::Propagate::stamp`).
        // Which clock leaves nothing after the margin: the deadline's when what is left of
        // it is the limit (even for a first attempt that has the whole budget).
        let clock = if left.is_some_and(|left| left <= limit) {
            Clock::Deadline
        } else {
            Clock::Attempt
        };
        let Some(request) = self.retry.parked_mut() else {
            // Unreachable, as above; the breaker's permit and the pass are given back.
            let attempt = Attempt {
                out: self.retry.turned_away(parked),
                permit,
                sent_at,
                limit,
                by_deadline,
                pass,
            };
            let out = attempt.end(breaker, Verdict::Ignored, Answer::Uncounted);
            return Err(Unsent::Refused(not_in_flight(), out));
        };
        let unsent = match policy.propagate() {
            None if limit.is_zero() => Some(expired(request, limit)),
            None => None,
            Some(propagate) => propagate.stamp(request, limit, clock).err(),
        };
        // A request with no timeout of its own gets the sender's bound, which may be this.
        if request.timeout().is_some() || !self.sender.bounds_to(limit) {
            *request.timeout_mut() = Some(limit);
        }
        let mut attempt = Attempt {
            out: self.retry.going_out(parked),
            permit,
            sent_at,
            limit,
            by_deadline,
            pass,
        };
        if let Some(error) = unsent {
            let out = attempt.end(breaker, Verdict::Ignored, Answer::Uncounted);
            self.retry.not_sent(&out);
            // An attempt timeout not above the margin (a request's own) leaves this attempt
            // unsent, not the call: it is an attempt that failed, not the deadline.
            return Err(match error.kind() {
                ErrorKind::AttemptTimeout => Unsent::Refused(error, out),
                _ => Unsent::Expired(error, out),
            });
        }
        // A reader's time counts from the send; the breaker's reading, if it took one, is it.
        if attempt.sent_at.is_none() && matches!(self.reader, Reader::With(_)) {
            attempt.sent_at = Some(now);
        }
        match self.retry.take_sent(&attempt.out) {
            Some(request) => Ok((attempt, self.sender.send(request))),
            // Unreachable: the request was parked, and readied in place, above.
            None => {
                let out = attempt.end(breaker, Verdict::Ignored, Answer::Uncounted);
                Err(Unsent::Refused(not_in_flight(), out))
            }
        }
    }

    /// A hedge is due: out it goes if it may (see `RetryState::hedge`) and the sender is
    /// ready for it now, and joins the race.
    fn hedge(&mut self, cx: &mut Context<'_>) {
        if !self.sender.ready_now(cx) {
            self.retry.hedge_not_ready();
            return;
        }
        let Some((parked, slot)) = self.retry.hedge(self.breaker.as_deref()) else {
            self.sender.hedge_not_sent();
            return;
        };
        // What the sender does at once (a layer's breaker, say) belongs to the hedge's span.
        let now = Instant::now();
        let launched = {
            let _hedge = slot.enter();
            self.launch(parked, now)
        };
        match launched {
            Ok((attempt, future)) => {
                let after = self.retry.hedges_after();
                if let Some(race) = &mut self.race {
                    race.push(Runner {
                        future,
                        slot,
                        attempt,
                    });
                }
                // After the newest attempt was sent: this one.
                self.hedge_timer
                    .arm(after.map(|after| now.checked_add(after).unwrap_or(now)));
            }
            // Recorded as a hedge that was not sent; the race goes on.
            Err(Unsent::Refused(error, out) | Unsent::Expired(error, out)) => {
                self.sender.hedge_not_sent();
                self.retry.put_slot(slot);
                let _out = self.retry.keeps_racing(out, &error, true);
            }
        }
    }

    /// An attempt of the race came back: it is the current one now.
    fn came_back(&mut self, head: Sent, slot: Slot, attempt: Attempt) -> Step<O> {
        self.retry.put_slot(slot);
        self.attempt = Some(attempt);
        self.received_head(head)
    }

    /// The current attempt decided the race, with an answer (`answered`) or as its last
    /// failure: the others are cancelled.
    fn end_race(&mut self, answered: bool) {
        self.hedge_timer.disarm();
        if let Some(mut race) = self.race.take() {
            let breaker = self.breaker.as_deref();
            race.cancel(&mut self.retry, answered, |attempt| {
                attempt.end(breaker, Verdict::Ignored, Answer::Uncounted)
            });
        }
    }

    /// The response's head arrived (or the attempt failed before it).
    #[inline]
    fn received_head(&mut self, head: Sent) -> Step<O> {
        match head {
            Ok(response) => self.received(Ok(response)),
            Err(Failed::Transport(error)) => self.received(Err(error)),
            Err(Failed::Sorted(mut error)) => {
                error.set_method(self.method.clone());
                self.finish(Err(error))
            }
        }
    }

    /// The response's head arrived, or reqwest's error.
    #[inline]
    fn received(&mut self, result: Result<reqwest::Response, reqwest::Error>) -> Step<O> {
        let response = match result {
            Ok(response) => response,
            Err(error) => return self.classified(self.classify(Err(error)), None),
        };
        // Every answer's head, whatever it will be classified as (a 429 too), inside a race
        // too: what the server says of its quota.
        if let Some(guards) = self.retry.guards() {
            let ticket = self
                .attempt
                .as_mut()
                .and_then(|attempt| attempt.pass.ticket.take());
            guards.learn(ticket, response.headers(), self.retry.policy_name());
        }
        match self.reads_body_first(&response) {
            Ok(false) => self.classified(self.classify(Ok(response)), None),
            Ok(true) if self.lost_race_by_head(&response) => {
                self.classified(self.classify(Ok(response)), None)
            }
            Ok(true) => {
                // This attempt is the one the call goes on with.
                self.end_race(true);
                let policy = self.policy();
                let reading = buffer(
                    response,
                    policy.body_limit(),
                    policy.classifier().clone(),
                    self.method.clone(),
                );
                self.stage = Stage::Buffer(Box::pin(reading));
                None
            }
            Err(error) => self.finish(Err(error)),
        }
    }

    /// Whether `response`'s head alone says its attempt failed transiently while others of
    /// its race are in flight: its body is then not read, and the call waits for the others,
    /// as it would without reading bodies first. (With a body classifier the body may say
    /// otherwise, so the first head ends the race.)
    fn lost_race_by_head(&self, response: &reqwest::Response) -> bool {
        self.race.as_ref().is_some_and(|race| race.running())
            && self.extras().is_none_or(|e| e.body_classifier.is_none())
            && self
                .policy()
                .classifier()
                .classify(&self.method, Ok(response))
                .class
                == Class::Transient
    }

    /// Whether `response`'s body is read into memory before the attempt is classified: for
    /// `send_buffered`, or for a body classifier that wants it (asked either way).
    fn reads_body_first(&self, response: &reqwest::Response) -> Result<bool, Error> {
        let wants = match self.extras().and_then(|e| e.body_classifier.as_ref()) {
            None => false,
            Some(c) => caught("body classifier", || {
                c.wants(response.status(), response.headers())
            })
            .map_err(|error| error.with_request(&self.method, response.url()))?,
        };
        Ok(self.buffered || wants)
    }

    /// The attempt's result, sorted by the policy's classifier.
    fn classify(
        &self,
        result: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, Error> {
        if S::SORTED {
            // Sorted below: an answer is a success (see `Sender::SORTED`).
            return result.map_err(Error::from);
        }
        let started = self.retry.attempt_started();
        outcome(self.policy().classifier(), &self.method, result, started)
    }

    /// The body is in memory (or failed to arrive): the body classifier, if it wants it,
    /// then the status.
    fn buffered(&mut self, body: Result<Buffered, Error>) -> Step<O> {
        let body = match body {
            Ok(body) => body,
            Err(error) => return self.finish(Err(error)),
        };
        let body_classifier = self
            .extras()
            .and_then(|e| e.body_classifier.as_ref())
            // Part of a failure's page is not its body: the status decides.
            .filter(|_| !body.truncated);
        let verdict = match body_classifier {
            None => None,
            Some(c) => {
                let verdict = caught("body classifier", || {
                    c.wants(body.status(), body.headers())
                        .then(|| c.classify(body.status(), body.headers(), &body.body))
                        .flatten()
                });
                match verdict {
                    Ok(verdict) => verdict,
                    Err(error) => {
                        let error = error.with_request(&self.method, body.url());
                        return self.finish(Err(error));
                    }
                }
            }
        };
        let started = self.retry.attempt_started();
        let classifier = self.policy().classifier();
        // A second handle on the body (a reference count), for a reader that takes it as is.
        let kept = body.body.clone();
        let result = response_outcome(
            classifier,
            &self.method,
            body.into_response(),
            verdict,
            started,
        );
        self.classified(result, Some(kept))
    }

    /// The attempt is classified: a success goes to the reader, with its `body` if it was
    /// read into memory.
    #[inline]
    fn classified(
        &mut self,
        result: Result<reqwest::Response, Error>,
        body: Option<Bytes>,
    ) -> Step<O> {
        let response = match result {
            Ok(response) => response,
            Err(error) => return self.finish(Err(error)),
        };
        self.end_race(true);
        match &mut self.reader {
            Reader::Response(into) => {
                let output = into(response, body);
                return self.finish(Ok(output));
            }
            Reader::Decode(decode) => {
                let decode = *decode;
                if let Some(body) = body {
                    return self.decoded(decode, response, &body);
                }
                // A head taken without its body read first (see `lost_race_by_head`): the
                // body is read inside the attempt, as a reader's is, then decoded.
            }
            Reader::With(_) => {}
        }
        let policy = policy(&self.policies, &self.which);
        let status = response.status();
        // reqwest's timeout covers the body, not whatever else the reader waits for: the
        // attempt's limit, counted from the send, holds for both.
        let ends = self
            .attempt
            .as_ref()
            .and_then(|a| a.sent_at?.checked_add(a.limit));
        let (method, url) = (self.method.clone(), response.url().clone());
        let classifier = policy.classifier().clone();
        match limited(response, policy.body_limit(), classifier, method.clone()) {
            Ok(response) => {
                let reading = match &mut self.reader {
                    Reader::With(read) => call_caught("reader", || read(response)),
                    Reader::Decode(decode) => {
                        let decode = *decode;
                        Box::pin(async move {
                            let mut response = response;
                            let mut body = bytes::BytesMut::new();
                            while let Some(chunk) = response.chunk().await? {
                                body.extend_from_slice(&chunk);
                            }
                            decode(response, &body)
                        })
                    }
                    // Handed over above; its body is not in memory.
                    Reader::Response(into) => {
                        Box::pin(std::future::ready(Ok(into(response, None))))
                    }
                };
                self.stage = Stage::Read(reading_until(reading, ends, status, method, url));
                None
            }
            Err(error) => self.finish(Err(error.with_request(&method, &url))),
        }
    }

    /// `body`, in memory, decoded as the caller asked (`recv_json`): a body that does not decode
    /// fails the attempt (permanently: the same bytes would come again), and the call's error
    /// names the request, its policy and its attempts, as any other.
    fn decoded(
        &mut self,
        decode: crate::read::DecodeFn<O>,
        response: reqwest::Response,
        body: &Bytes,
    ) -> Step<O> {
        let result = decode(response, body).map_err(|mut error| {
            error.set_method(self.method.clone());
            error
        });
        self.finish(result)
    }

    /// The attempt is over: the breaker hears of it, then the retry decides.
    fn finish(&mut self, result: Result<O, Error>) -> Step<O> {
        // The output goes straight out: it is the large part, and each move copies it.
        let error = match result {
            Ok(output) => return self.succeeded(output),
            Err(error) => error,
        };
        let Some(attempt) = self.attempt.take() else {
            return self.done(Err(not_in_flight()));
        };
        let error = if S::SORTED {
            error
        } else {
            timed_out(error, attempt.limit, attempt.by_deadline)
        };
        // Without a breaker, nothing hears the verdict.
        let breaker = self.breaker.as_deref();
        let verdict = breaker.map_or(Verdict::Ignored, |b| b.error_verdict(&error));
        let out = attempt.end(breaker, verdict, Answer::of(Err(&error)));
        self.failed(out, error)
    }

    /// The attempt of `out` failed with `error` (sent, or turned away before: by the guards,
    /// the breaker, a hook): it waits for the rest of its race, or the retry decides.
    fn failed(&mut self, out: Out, error: Error) -> Step<O> {
        // An attempt turned away before it went (by the guards after its place, a hook, a
        // body factory) gives back what the guards gave it.
        self.retry.drop_pass();
        // A transient failure while others of its race are still in flight: wait for them.
        let others = self.race.as_ref().is_some_and(|race| race.running());
        let Some(out) = self.retry.keeps_racing(out, &error, others) else {
            self.stage = Stage::Race;
            return None;
        };
        self.end_race(answers(&error));
        if let Some(refresher) = self.refresher_for(&error).cloned() {
            return self.refresh(out, error, refresher);
        }
        let next = self.retry.finish_attempt(out, Err(error));
        self.next(next)
    }

    fn succeeded(&mut self, output: O) -> Step<O> {
        let Some(attempt) = self.attempt.take() else {
            return self.done(Err(not_in_flight()));
        };
        let out = attempt.end(self.breaker.as_deref(), Verdict::Success, Answer::Accepted);
        if self.retry.first_try_succeeded(&out, output.status()) {
            return self.done(Ok(output));
        }
        let next = self.retry.finish_attempt(out, Ok(output));
        self.next(next)
    }

    fn next(&mut self, next: Next<O>) -> Step<O> {
        match next {
            Next::Done(result) => self.done(result),
            Next::Retry(delay) => {
                self.stage = Stage::Sleep(Box::pin(sleep(delay)));
                None
            }
            // At once: as after a sleep, without one.
            Next::Resend(pause) if pause.is_zero() => self.woke(),
            Next::Resend(pause) => {
                self.stage = Stage::Sleep(Box::pin(sleep(pause)));
                None
            }
        }
    }

    /// The pause before the next attempt is over.
    fn woke(&mut self) -> Step<O> {
        match self.retry.next_request() {
            Ok(parked) => self.prepare(parked),
            Err(error) => self.done(Err(error)),
        }
    }

    /// A first `401` with a refresher in the policy: new credentials, then the attempt again.
    fn refresh(&mut self, out: Out, error: Error, refresher: Arc<dyn AuthRefresher>) -> Step<O> {
        self.refreshed_once = true;
        let (method, url) = (self.method.clone(), error.url().cloned());
        if let Err(error) = self.retry.retry_with_new_credentials(out, error) {
            return self.done(Err(error));
        }
        let start = move || -> BoxFuture<Result<HeaderValue, Error>> {
            let future = refresher.refresh();
            Box::pin(async move {
                future
                    .await
                    .map_err(|e| hook_failed("auth refresher", failed(e)))
            })
        };
        let refreshing = within(self.retry.deadline(), call_caught("auth refresher", start));
        let refreshing = Box::pin(async move {
            refreshing.await.map_err(|error| match &url {
                Some(url) => error.with_request(&method, url),
                None => error,
            })
        });
        self.stage = Stage::Refresh(refreshing);
        None
    }

    /// The refresher to call for `error`: a first `401`, with a refresher in the policy.
    fn refresher_for(&self, error: &Error) -> Option<&Arc<dyn AuthRefresher>> {
        let first_401 = !self.refreshed_once
            && error.kind() == ErrorKind::Status
            && error.status() == Some(StatusCode::UNAUTHORIZED);
        first_401
            .then(|| self.extras().and_then(|e| e.refresher.as_ref()))
            .flatten()
    }

    /// New credentials arrived (or did not): send the request again with them.
    fn refreshed(&mut self, value: Result<HeaderValue, Error>) -> Step<O> {
        let mut value = match value {
            Ok(value) => value,
            Err(error) => {
                let reason = GiveUp::ending(&error);
                let error = self.retry.fail(error, reason);
                return self.done(Err(error));
            }
        };
        value.set_sensitive(true);
        // On this attempt's request and on the copy kept for later retries.
        match self
            .retry
            .next_request_with(Some((http::header::AUTHORIZATION, value)))
        {
            Ok(parked) => self.prepare(parked),
            Err(error) => self.done(Err(error)),
        }
    }
}

/// The error of a driver that lost track of its attempt: unreachable, since an attempt's
/// result is handled only while it is in flight, and typed rather than a panic.
fn not_in_flight() -> Error {
    Error::invalid_config("an attempt ended that was not in flight")
}

/// `future`, ended with [`ErrorKind::DeadlineExceeded`] at the call's `deadline`.
fn within<T: Send + 'static>(
    deadline: Option<Instant>,
    future: BoxFuture<Result<T, Error>>,
) -> BoxFuture<Result<T, Error>> {
    ending_at(deadline, future, || {
        ran_out(Clock::Deadline, Delivery::NotSent, None).with_detail(
            "the deadline passed while a hook, a body factory or the auth refresher ran",
        )
    })
}

/// `future`, ended at `at` (if any) with the error `late` makes.
fn ending_at<T: Send + 'static>(
    at: Option<Instant>,
    future: BoxFuture<Result<T, Error>>,
    late: impl FnOnce() -> Error + Send + 'static,
) -> BoxFuture<Result<T, Error>> {
    let Some(at) = at else {
        return future;
    };
    Box::pin(async move {
        tokio::time::timeout_at(at, future)
            .await
            .unwrap_or_else(|_| Err(late()))
    })
}

/// A reader's run on the response of `status` to `method` `url`: ended with an attempt
/// timeout at `ends`, a panic in it made an error, and every error it ends with naming the
/// request and the status, as any other attempt's.
fn reading_until<O: Send + 'static>(
    reading: BoxFuture<Result<O, Error>>,
    ends: Option<Instant>,
    status: StatusCode,
    method: Method,
    url: url::Url,
) -> BoxFuture<Result<O, Error>> {
    Box::pin(async move {
        let caught = run_caught(reading, "reader");
        let result = match ends {
            Some(at) => tokio::time::timeout_at(at, caught)
                .await
                .unwrap_or_else(|_| Err(ran_out(Clock::Attempt, Delivery::Delivered, None))),
            None => caught.await,
        };
        result.map_err(|e| e.with_request(&method, &url).after_response(status))
    })
}

/// `future` of user code (`what` names it) run to its end, a panic in it made an error.
async fn run_caught<T: Send + 'static>(
    mut future: BoxFuture<Result<T, Error>>,
    what: &str,
) -> Result<T, Error> {
    std::future::poll_fn(|cx| poll_caught(&mut future, cx, what)).await
}

/// A user's error, as the message of a typed one.
fn failed(error: BoxError) -> String {
    format!("failed: {error}")
}

fn policy<'a>(policies: &'a Policies, which: &'a Which) -> &'a CompiledPolicy {
    match which {
        Which::Shared(index) => policies.get(*index),
        Which::Custom(policy) => policy,
    }
}

/// Polls `future`, a part of the current attempt, inside the attempt's span.
#[inline]
fn in_attempt<F: Future + Unpin>(
    retry: &RetryState,
    future: &mut F,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    let _attempt = retry.observer().enter_attempt();
    Pin::new(future).poll(cx)
}

impl<O: Success, S: Sender> Future for Call<O, S> {
    type Output = Result<O, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if matches!(this.stage, Stage::Start) {
            let servers = policy(&this.policies, &this.which).server_series();
            this.retry.watch(S::EXCHANGES, servers);
        }
        let _call = this.retry.observer().enter_call();
        loop {
            // Each stage: what it waits for, then what follows.
            let step = match &mut this.stage {
                Stage::Start => this.started(),
                Stage::Hook(hooking, _) => {
                    let request = ready!(hooking.as_mut().poll(cx));
                    let Stage::Hook(_, out) = std::mem::replace(&mut this.stage, Stage::Done)
                    else {
                        return Poll::Ready(Err(Error::polled_after_completion()));
                    };
                    this.hooked(request, out)
                }
                Stage::Send(sending) => match in_attempt(&this.retry, sending, cx) {
                    Poll::Ready(head) => this.received_head(head),
                    Poll::Pending if this.hedge_timer.due(cx) => {
                        this.start_race(cx);
                        None
                    }
                    Poll::Pending => return Poll::Pending,
                },
                Stage::Race => {
                    let Some(race) = this.race.as_mut() else {
                        return Poll::Ready(Err(Error::polled_after_completion()));
                    };
                    match race.poll(cx) {
                        Poll::Ready((head, slot, attempt)) => this.came_back(head, slot, attempt),
                        Poll::Pending if this.hedge_timer.due(cx) => {
                            this.hedge(cx);
                            None
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Stage::Buffer(reading) => {
                    let body = ready!(in_attempt(&this.retry, reading, cx));
                    this.buffered(body)
                }
                Stage::Read(reading) => {
                    let output = ready!(in_attempt(&this.retry, reading, cx));
                    this.finish(output)
                }
                Stage::Refresh(refreshing) => {
                    let value = ready!(poll_caught(refreshing, cx, "auth refresher"));
                    this.refreshed(value)
                }
                Stage::Sleep(pause) => {
                    ready!(pause.as_mut().poll(cx));
                    this.woke()
                }
                Stage::Gated(waiting, _) => {
                    let waited = ready!(waiting.as_mut().poll(cx));
                    let Stage::Gated(_, parked) = std::mem::replace(&mut this.stage, Stage::Done)
                    else {
                        return Poll::Ready(Err(Error::polled_after_completion()));
                    };
                    this.waited(waited, parked)
                }
                Stage::Done => Some(Err(Error::polled_after_completion())),
            };
            if let Some(output) = step {
                return Poll::Ready(output);
            }
        }
    }
}
