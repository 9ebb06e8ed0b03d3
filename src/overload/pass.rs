//! What an attempt let out by its endpoint's guards carries to its end, and how that end is
//! told to them.

use tokio::time::Instant;

use super::Part;
use super::adaptive::LimitPermit;
use super::server_quota::Ticket;
use super::throttle::{Criticality, Throttle};
use crate::error::Error;
use crate::outcome::ErrorKind;
use std::sync::Arc;

/// What the guards gave an attempt (or hedge) on its way out: the server quota's ticket (its
/// answer's head is learned with it), its place under the adaptive limit, and the throttle
/// that counts it. Dropped without [`end`](Self::end) (the attempt was cancelled), it gives
/// its place back and counts nothing.
#[derive(Default)]
pub(crate) struct Pass {
    pub(crate) ticket: Option<Ticket>,
    /// The place and the throttle, boxed: most policies have neither, and a pass is moved
    /// with its attempt and lives in every call's state (inline, the default client paid
    /// +118 instructions of `memcpy` a call, the middleware, whose call is not boxed, +234;
    /// measured). One allocation an attempt when either is on.
    guarded: Option<Box<Guarded>>,
}

/// The parts of a [`Pass`] only the adaptive limit and the throttle give.
#[derive(Default)]
struct Guarded {
    place: Option<LimitPermit>,
    throttle: Option<Arc<Part<Throttle>>>,
    /// The attempt's criticality, which its throttle counts it under.
    criticality: Criticality,
}

/// How an attempt ended, as the adaptive limit and the throttle count it: the one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Answered, and not rejected for overload (a success, a 404, a 500): an accept, and a
    /// latency sample.
    Accepted,
    /// Rejected for overload (a 429, 503 or 504, a refused connection) or not answered in
    /// time (the attempt timeout): not an accept; a drop for the adaptive limit.
    Rejected,
    /// Neither: cancelled, cut short by the caller's deadline, a hook's failure, a
    /// connection lost.
    Uncounted,
}

impl Answer {
    /// How an attempt that ended with `result` counts (`Ok`: the attempt's success).
    pub(crate) fn of(result: Result<(), &Error>) -> Answer {
        let Err(error) = result else {
            return Answer::Accepted;
        };
        match error.kind() {
            ErrorKind::Status => match error.status().map(|status| status.as_u16()) {
                Some(429 | 503 | 504) => Answer::Rejected,
                _ => Answer::Accepted,
            },
            ErrorKind::Connect | ErrorKind::AttemptTimeout => Answer::Rejected,
            _ => Answer::Uncounted,
        }
    }
}

impl Pass {
    /// Whether the guards gave nothing (then dropping it is a few compares, not its drop
    /// glue: most calls' passes are empty by the time they are dropped).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.ticket.is_none() && self.guarded.is_none()
    }

    fn guarded(&mut self) -> &mut Guarded {
        self.guarded.get_or_insert_with(Box::default)
    }

    /// The attempt's place under the adaptive limit.
    pub(crate) fn set_place(&mut self, place: LimitPermit) {
        self.guarded().place = Some(place);
    }

    /// The throttle that counts the attempt, under its `criticality`.
    pub(crate) fn set_throttle(&mut self, throttle: Arc<Part<Throttle>>, criticality: Criticality) {
        let guarded = self.guarded();
        guarded.throttle = Some(throttle);
        guarded.criticality = criticality;
    }

    /// The attempt went out at `at`.
    #[inline]
    pub(crate) fn sent(&mut self, at: Instant) {
        if let Some(place) = self.guarded.as_mut().and_then(|g| g.place.as_mut()) {
            place.sent(at);
        }
    }

    /// The attempt ended as `answer` says: its place back with a sample, its throttle told.
    /// Reads the clock only when one of them is on.
    #[inline]
    pub(crate) fn end(self, answer: Answer) {
        if let Some(guarded) = self.guarded {
            guarded.end(answer);
        }
    }
}

impl Guarded {
    fn end(self, answer: Answer) {
        let now = Instant::now();
        if let Some(place) = self.place {
            place.end(answer, now);
        }
        if let Some(throttle) = self.throttle
            && answer != Answer::Uncounted
        {
            throttle.record(now, self.criticality, answer == Answer::Accepted);
        }
    }
}

#[cfg(test)]
impl Pass {
    /// The throttle that counts the attempt, and its criticality.
    pub(crate) fn throttle(&self) -> Option<(&Arc<Part<Throttle>>, Criticality)> {
        let guarded = self.guarded.as_deref()?;
        Some((guarded.throttle.as_ref()?, guarded.criticality))
    }
}
