//! What a call's attempts did: the history every error and success carries, the attempt whose
//! result is being handled, and the observer that reports them (spans, events, metrics).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use tracing::Span;

use crate::classify::{Class, Delivery};
use crate::error::{Attempt, AttemptOutcome, Error};
use crate::telemetry::Observer;

/// Which attempt is the current one: the one whose result is being handled.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    /// Its number (1 for the first; hedges count).
    pub(crate) number: u32,
    /// When it started (after waiting at the guards, if it did).
    pub(crate) started: Instant,
    /// Whether it is a hedge.
    pub(crate) hedge: bool,
    /// How long the call paused before it.
    pub(crate) delay_before: Duration,
}

/// An attempt in flight beside the current one (see [`crate::hedge`]): which it is, and
/// its span.
pub(crate) struct Slot {
    pub(crate) current: Current,
    span: Span,
}

impl Slot {
    /// A hedge's slot: attempt `number`, started at `started`, reported in `span`.
    pub(crate) fn hedge(number: u32, started: Instant, span: Span) -> Self {
        let current = Current {
            number,
            started,
            hedge: true,
            delay_before: Duration::ZERO,
        };
        Slot { current, span }
    }

    /// The attempt's span, entered until the guard drops.
    pub(crate) fn enter(&self) -> tracing::span::Entered<'_> {
        self.span.enter()
    }
}

/// The attempts of one call.
pub(crate) struct Record {
    pub(crate) history: Vec<Attempt>,
    pub(crate) current: Current,
    pub(crate) observer: Observer,
}

impl Record {
    /// A call whose first attempt starts at `started`.
    #[inline]
    pub(crate) fn new(started: Instant) -> Self {
        Record {
            history: Vec::new(),
            current: Current {
                number: 1,
                started,
                hedge: false,
                delay_before: Duration::ZERO,
            },
            observer: Observer::default(),
        }
    }

    /// Takes the current attempt out, to run in a [race](crate::hedge) beside its hedges;
    /// [`put_slot`](Self::put_slot) makes it current again when it ends.
    pub(crate) fn take_slot(&mut self) -> Slot {
        Slot {
            current: self.current,
            span: self.observer.swap_attempt(Span::none()),
        }
    }

    /// Makes the attempt of `slot` the current one: it ended, and what it ended with is
    /// handled (recorded, decided on) as the current attempt's.
    pub(crate) fn put_slot(&mut self, slot: Slot) {
        self.current = slot.current;
        self.observer.swap_attempt(slot.span);
    }

    /// Adds the current attempt, which just ended with `result`, to the history, for a call
    /// of `policy` that started at `call_started`; returns when it ended.
    pub(crate) fn ended(
        &mut self,
        result: Result<StatusCode, &Error>,
        policy: Option<&Arc<str>>,
        call_started: Instant,
    ) -> Instant {
        let (outcome, class, delivery) = match result {
            Ok(status) => (
                AttemptOutcome::Status(status),
                Class::Success,
                Delivery::Delivered,
            ),
            Err(error) => (error.outcome(), error.class(), error.delivery()),
        };
        let now = Instant::now();
        let duration = now.duration_since(self.current.started);
        self.observer.attempt_ended(policy, result, duration);
        self.push(outcome, class, delivery, duration, call_started);
        now
    }

    /// The attempt of `slot` lost its race: it was cancelled when another answered first.
    pub(crate) fn cancelled(&mut self, slot: Slot, call_started: Instant) {
        let current = self.take_slot();
        self.put_slot(slot);
        let duration = Instant::now().duration_since(self.current.started);
        self.observer.attempt_cancelled();
        let (cancelled, transient, maybe) = (
            AttemptOutcome::Cancelled,
            Class::Transient,
            Delivery::MaybeSent,
        );
        self.push(cancelled, transient, maybe, duration, call_started);
        self.put_slot(current);
    }

    fn push(
        &mut self,
        outcome: AttemptOutcome,
        class: Class,
        delivery: Delivery,
        duration: Duration,
        call_started: Instant,
    ) {
        let current = &self.current;
        self.history.push(Attempt {
            number: current.number,
            started_after: current.started.duration_since(call_started),
            duration,
            delay_before: current.delay_before,
            outcome,
            class,
            delivery,
            hedge: current.hedge,
            resent: false,
        });
    }
}
