//! The attempts of one call in flight at once: the first sent and its hedges.
//!
//! The driver keeps its attempts here, with what each needs of its own (`A`: its breaker
//! permit and its token), and asks [`RetryState`] what to do when one ends. A race is built
//! only when the first hedge is due: until then the attempt is the call's only one, and the
//! hedge's timer is the driver's (see `HedgeTimer` in the driver), so hedging that never
//! fires costs a call at most one timer, not a race's box, its vector and its polls.
//!
//! [`RetryState`]: crate::call::state::RetryState

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::custody::Out;
use super::record::Slot;
use super::state::RetryState;
use crate::classify::Class;
use crate::error::Error;

/// Whether an attempt's failure answers the call: anything but a transient failure, which
/// waits for the others of its race.
pub(crate) fn answers(error: &Error) -> bool {
    error.class() != Class::Transient
}

/// One attempt in flight.
pub(crate) struct Runner<F, A> {
    pub(crate) future: F,
    /// Which attempt it is (see [`RetryState::put_slot`]).
    pub(crate) slot: Slot,
    pub(crate) attempt: A,
}

/// The attempts in flight.
pub(crate) struct Race<F, A> {
    runners: Vec<Runner<F, A>>,
}

impl<F: Future + Unpin, A> Race<F, A> {
    /// A race of one attempt, the one in flight when its first hedge came due.
    pub(crate) fn new(first: Runner<F, A>) -> Self {
        let mut runners = Vec::with_capacity(2);
        runners.push(first);
        Race { runners }
    }

    /// A hedge joins the race.
    pub(crate) fn push(&mut self, runner: Runner<F, A>) {
        self.runners.push(runner);
    }

    /// Whether attempts are still in flight.
    pub(crate) fn running(&self) -> bool {
        !self.runners.is_empty()
    }

    /// The first attempt to end, with what it ended with, which attempt it was and what it
    /// had of its own. Each attempt's future is polled inside its own span.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(F::Output, Slot, A)> {
        for index in 0..self.runners.len() {
            let runner = &mut self.runners[index];
            let polled = {
                let _attempt = runner.slot.enter();
                Pin::new(&mut runner.future).poll(cx)
            };
            if let Poll::Ready(output) = polled {
                let Runner { slot, attempt, .. } = self.runners.swap_remove(index);
                return Poll::Ready((output, slot, attempt));
            }
        }
        Poll::Pending
    }

    /// What each attempt still in flight had of its own, for a call that is dropped: nothing
    /// is recorded.
    pub(crate) fn abandon(self) -> impl Iterator<Item = A> {
        self.runners.into_iter().map(|runner| runner.attempt)
    }

    /// `retry`'s current attempt ended the race: with an answer (`answered`: not a
    /// transient failure), or as the last failure. The others are dropped (their connections
    /// with them), `end` is given what each had of its own, and the history records them as
    /// cancelled.
    pub(crate) fn cancel(
        &mut self,
        retry: &mut RetryState,
        answered: bool,
        mut end: impl FnMut(A) -> Out,
    ) {
        for runner in self.runners.drain(..) {
            let Runner { slot, attempt, .. } = runner;
            let out = end(attempt);
            retry.cancelled(slot, out);
        }
        if answered {
            retry.won_race();
        }
    }
}
