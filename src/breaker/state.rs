//! One endpoint's breaker: the state machine and its permits.
//!
//! The whole state lives in one `AtomicU64` word: the state, the half-open permits left, the
//! half-open successes so far, how many times in a row it opened (which sets how long it stays
//! open: threads racing to open it from the same word agree on it), and a generation that
//! changes on every transition. In the closed
//! state the word is only read, so all threads keep its cache line shared and admitting a call
//! costs one load. Every transition is a compare-and-swap of the whole word, so a permit can be
//! matched to the half-open period that issued it: a late release or result from an earlier
//! period (the generation differs) is ignored instead of corrupting the count.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::window::{FAILURE, Outcomes, SLOW, SUCCESS, WindowCounts};
use super::{State, StateChange};
use crate::error::Error;

const STATE_BITS: u32 = 3;
const COUNT_BITS: u32 = 10;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const OPENS_BITS: u32 = 5;
const OPENS_MAX: u32 = (1 << OPENS_BITS) - 1;
const OPENS_SHIFT: u32 = STATE_BITS + 2 * COUNT_BITS;
const GENERATION_SHIFT: u32 = OPENS_SHIFT + OPENS_BITS;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    #[inline]
    fn new(state: State, permits: u32, successes: u32, opens: u32, generation: u64) -> Self {
        let state = match state {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::ForcedClosed => 4,
        };
        Word(
            state
                | (u64::from(permits) & COUNT_MASK) << STATE_BITS
                | (u64::from(successes) & COUNT_MASK) << (STATE_BITS + COUNT_BITS)
                | u64::from(opens.min(OPENS_MAX)) << OPENS_SHIFT
                | generation << GENERATION_SHIFT,
        )
    }

    #[inline]
    fn state(self) -> State {
        match self.0 & ((1 << STATE_BITS) - 1) {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::ForcedClosed,
        }
    }

    fn permits(self) -> u32 {
        ((self.0 >> STATE_BITS) & COUNT_MASK) as u32
    }

    fn successes(self) -> u32 {
        ((self.0 >> (STATE_BITS + COUNT_BITS)) & COUNT_MASK) as u32
    }

    /// Openings in a row since it last closed (at most 31: the open duration is capped well
    /// before).
    fn opens(self) -> u32 {
        ((self.0 >> OPENS_SHIFT) & u64::from(OPENS_MAX)) as u32
    }

    #[inline]
    fn generation(self) -> u64 {
        self.0 >> GENERATION_SHIFT
    }

    /// The same period with other counts.
    fn with_counts(self, permits: u32, successes: u32) -> Self {
        Word::new(
            self.state(),
            permits,
            successes,
            self.opens(),
            self.generation(),
        )
    }

    /// A new period in `state`, with `opens` openings in a row.
    fn next_with(self, state: State, permits: u32, opens: u32) -> Self {
        let generation = self.generation().wrapping_add(1) & (u64::MAX >> GENERATION_SHIFT);
        Word::new(state, permits, 0, opens, generation)
    }

    /// A new period in `state`, the openings in a row unchanged.
    fn next(self, state: State, permits: u32) -> Self {
        self.next_with(state, permits, self.opens())
    }
}

/// Why a call was not let through.
pub(crate) enum Rejection {
    /// Open: the next probe may go in `retry_in`.
    Open { retry_in: Duration },
    /// Half-open with every probe out. When their results come is not known (within their
    /// attempt timeout), so no time is promised: a zero here once invited callers to spin.
    ProbesOut,
    /// Forced open by the operator: until they say otherwise.
    ForcedOpen,
}

impl Rejection {
    /// The error that says so, for the endpoint `key`.
    pub(crate) fn into_error(self, key: &str) -> Error {
        use crate::error::Short;
        match self {
            Rejection::Open { retry_in } => Error::circuit_open(
                format!("{key}: next probe in {}", Short(retry_in)),
                Some(retry_in),
            ),
            Rejection::ProbesOut => {
                Error::circuit_open(format!("{key}: half-open, probe in flight"), None)
            }
            Rejection::ForcedOpen => Error::circuit_open(format!("{key}: forced open"), None),
        }
    }
}

/// What kind of call a permit admitted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// A call in the closed state: its outcome goes into the window.
    Counted,
    /// A trial call in half-open.
    Probe,
    /// A call through a forced-closed breaker: not recorded.
    Untracked,
}

/// How a call ended, as far as the breaker cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Verdict {
    Success,
    Failure,
    /// Neither: the caller cancelled it, or something outside the endpoint cut it short.
    Ignored,
}

/// The right to make one call; its outcome is reported through [`Breaker::record`].
///
/// Whoever holds it must report it, with [`Verdict::Ignored`] when the call was cancelled (the
/// service's future does so when dropped): a half-open probe then gives its place back.
#[must_use = "a permit must be reported to the breaker"]
pub(crate) struct Permit {
    role: Role,
    generation: u64,
}

pub(crate) struct Breaker {
    key: Arc<str>,
    config: Arc<BreakerConfig>,
    word: AtomicU64,
    /// Milliseconds since `base` when the open state may let a probe through.
    open_until: AtomicU64,
    outcomes: Outcomes,
    base: Instant,
    /// Whether `on_state_change` panicked once already: logged the first time only.
    callback_panicked: AtomicBool,
    /// Set when its registry is dropped (shared by every breaker the registry made, so also
    /// by those made after a reload began): left behind by a reload that kept its endpoint's
    /// guards but not the breakers, its state no longer keeps the entry it shares with them
    /// (see `Breaker::busy`).
    pub(super) retired: Arc<AtomicBool>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("key", &self.key)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A closed breaker for endpoint `key`; `retired`: its registry's flag, set when the
    /// registry is dropped.
    pub(crate) fn new(key: Arc<str>, config: Arc<BreakerConfig>, retired: Arc<AtomicBool>) -> Self {
        let outcomes = Outcomes::new(config.window);
        #[cfg(feature = "metrics")]
        crate::telemetry::meters::breaker_state(&key, State::Closed);
        Breaker {
            key,
            config,
            word: AtomicU64::new(Word::new(State::Closed, 0, 0, 0, 0).0),
            open_until: AtomicU64::new(0),
            outcomes,
            base: Instant::now(),
            callback_panicked: AtomicBool::new(false),
            retired,
        }
    }

    #[inline]
    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    fn swap_word(&self, from: Word, to: Word) -> bool {
        self.word
            .compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn state(&self) -> State {
        self.load().state()
    }

    pub(crate) fn counts(&self) -> WindowCounts {
        self.outcomes.totals(self.now_ms())
    }

    /// Lets a call through, or says why not.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Permit, Rejection> {
        loop {
            let word = self.load();
            let role = match word.state() {
                State::Closed => Role::Counted,
                State::ForcedClosed => Role::Untracked,
                State::ForcedOpen => return Err(Rejection::ForcedOpen),
                State::Open => {
                    let now = self.now_ms();
                    let until = self.open_until.load(Ordering::Relaxed);
                    if now < until {
                        let retry_in = Duration::from_millis(until - now);
                        return Err(Rejection::Open { retry_in });
                    }
                    let half_open = word.next(State::HalfOpen, self.config.half_open_probes);
                    if self.swap_word(word, half_open) {
                        self.announce(State::Open, State::HalfOpen);
                    }
                    continue;
                }
                State::HalfOpen => {
                    let permits = word.permits();
                    if permits == 0 {
                        // Probes are out; the next chance comes when they report.
                        return Err(Rejection::ProbesOut);
                    }
                    if !self.swap_word(word, word.with_counts(permits - 1, word.successes())) {
                        continue;
                    }
                    Role::Probe
                }
            };
            return Ok(Permit {
                role,
                generation: word.generation(),
            });
        }
    }

    /// Whether [`admit`](Self::admit) would turn a call away now: open (or forced open), or
    /// half-open with every probe out. The rate limit then keeps its slot for a call that
    /// will go out. Reads the clock only in the open state.
    pub(crate) fn refuses_now(&self) -> bool {
        let word = self.load();
        match word.state() {
            State::ForcedOpen => true,
            State::Open => self.now_ms() < self.open_until.load(Ordering::Relaxed),
            State::HalfOpen => word.permits() == 0,
            State::Closed | State::ForcedClosed => false,
        }
    }

    /// When the call started, if slow calls are counted (`None` otherwise: no clock read).
    #[inline]
    pub(crate) fn call_started(&self) -> Option<Instant> {
        self.config.slow_call_duration.map(|_| Instant::now())
    }

    /// The error for a call the breaker did not let through (and the event that says so).
    pub(crate) fn rejected(&self, rejection: Rejection, request: &reqwest::Request) -> Error {
        tracing::debug!(endpoint = %self.key, "request rejected: circuit open");
        #[cfg(feature = "metrics")]
        crate::telemetry::meters::breaker_rejected(&self.key);
        rejection
            .into_error(&self.key)
            .with_request(request.method(), request.url())
    }

    /// What `error`, a call's failure, tells this breaker: see [`error_verdict`](super::error_verdict).
    #[inline]
    pub(crate) fn error_verdict(&self, error: &Error) -> Verdict {
        super::error_verdict(error, &self.config)
    }

    /// Reports how the call behind `permit` ended; `started` is what
    /// [`call_started`](Self::call_started) gave when it began.
    #[inline]
    pub(crate) fn record(&self, permit: Permit, verdict: Verdict, started: Option<Instant>) {
        // Read the clock only for a call that counts.
        let slow = || match (started, self.config.slow_call_duration) {
            (Some(started), Some(limit)) => started.elapsed() >= limit,
            _ => false,
        };
        match (permit.role, verdict) {
            (Role::Untracked, _) => {}
            (_, Verdict::Ignored) => self.release(&permit),
            (Role::Counted, verdict) => self.record_counted(&permit, verdict, slow()),
            (Role::Probe, verdict) => self.record_probe(&permit, verdict, slow()),
        }
    }

    #[inline]
    fn record_counted(&self, permit: &Permit, verdict: Verdict, slow: bool) {
        let word = self.load();
        if word.state() != State::Closed || word.generation() != permit.generation {
            return; // The window it belongs to is gone.
        }
        let mut outcome = if verdict == Verdict::Failure {
            FAILURE
        } else {
            SUCCESS
        };
        if slow {
            outcome |= SLOW;
        }
        let now = if self.outcomes.needs_time() {
            self.now_ms()
        } else {
            0
        };
        self.outcomes.record(outcome, now);
        // Only a failure or a slow call can push a rate over its threshold.
        if outcome != SUCCESS && self.should_open(now) {
            // Closed has no counts in its word: it changed only if another thread moved.
            let _ = self.open(word, State::Closed);
        }
    }

    /// `now` is read only for time windows (0 otherwise).
    fn should_open(&self, now: u64) -> bool {
        let counts = self.outcomes.totals(now);
        if counts.calls < u64::from(self.config.min_calls) || counts.calls == 0 {
            return false;
        }
        let calls = counts.calls as f64;
        counts.failures as f64 / calls >= self.config.failure_rate
            || (self.config.slow_call_duration.is_some()
                && counts.slow as f64 / calls >= self.config.slow_call_rate)
    }

    fn record_probe(&self, permit: &Permit, verdict: Verdict, slow: bool) {
        loop {
            let word = self.load();
            if word.state() != State::HalfOpen || word.generation() != permit.generation {
                return;
            }
            // A failed swap may only mean that another probe was taken or given back in the
            // meantime (the counts changed, not the period): try again from the new word.
            if verdict == Verdict::Failure || slow {
                if self.open(word, State::HalfOpen) {
                    return;
                }
                continue;
            }
            let successes = word.successes() + 1;
            if successes >= self.config.half_open_probes {
                if self.swap_word(word, word.next_with(State::Closed, 0, 0)) {
                    self.outcomes.clear();
                    self.announce(State::HalfOpen, State::Closed);
                    return;
                }
                continue;
            }
            if self.swap_word(word, word.with_counts(word.permits(), successes)) {
                return;
            }
        }
    }

    /// Gives a half-open probe's place back; nothing to do for other permits.
    fn release(&self, permit: &Permit) {
        if permit.role != Role::Probe {
            return;
        }
        loop {
            let word = self.load();
            if word.state() != State::HalfOpen || word.generation() != permit.generation {
                return;
            }
            let restored = word.with_counts(word.permits() + 1, word.successes());
            if self.swap_word(word, restored) {
                return;
            }
        }
    }

    /// Opens the circuit from `word` (in state `from`), unless the word changed first; says
    /// whether it did.
    fn open(&self, word: Word, from: State) -> bool {
        // From the word: every thread opening from it computes the same duration, so a loser
        // that writes its time before finding it lost writes (almost) the winner's.
        let duration = self.config.open_for_after(word.opens());
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        // Written before the state, which publishes it (release).
        self.open_until.store(until, Ordering::Relaxed);
        let opened = word.next_with(State::Open, 0, word.opens().saturating_add(1));
        if self.swap_word(word, opened) {
            self.outcomes.clear();
            self.announce(from, State::Open);
            return true;
        }
        false
    }

    /// Forces a state, or (`Closed`) resets to a fresh closed breaker.
    pub(crate) fn force(&self, state: State) {
        loop {
            let word = self.load();
            let from = word.state();
            let opens = if state == State::Closed {
                0
            } else {
                word.opens()
            };
            if self.swap_word(word, word.next_with(state, 0, opens)) {
                if state == State::Closed {
                    self.outcomes.clear();
                }
                if from != state {
                    self.announce(from, state);
                }
                return;
            }
        }
    }

    fn announce(&self, from: State, to: State) {
        match to {
            State::Open | State::ForcedOpen => tracing::warn!(
                endpoint = %self.key, ?from, ?to, "circuit breaker opened"
            ),
            _ => tracing::info!(endpoint = %self.key, ?from, ?to, "circuit breaker state changed"),
        }
        #[cfg(feature = "metrics")]
        crate::telemetry::meters::breaker_state(&self.key, to);
        if let Some(callback) = &self.config.on_state_change {
            let change = StateChange {
                key: self.key.clone(),
                from,
                to,
            };
            // The transition is made; a panic of the user's callback must not reach the call
            // that happened to make it (it is no fault of that call's), nor undo it. Logged
            // once per breaker: a callback that always panics would log on every transition.
            if let Err(panic) = crate::caught::panicked(|| callback(&change))
                && !self.callback_panicked.swap(true, Ordering::Relaxed)
            {
                tracing::error!(
                    endpoint = %self.key, ?from, ?to, panic = %crate::redact::text(&panic),
                    "the circuit breaker's on_state_change callback panicked; the state changed \
                     all the same (logged once per breaker)"
                );
            }
        }
    }
}
