//! The attempts of one call in flight at once: the first sent and its hedges.
//!
//! The driver keeps its attempts here, with what each needs of its own (`A`: its breaker
//! permit and its token), and asks [`RetryState`] what to do when one ends.
//!
//! [`RetryState`]: crate::call::state::RetryState

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Sleep, sleep};

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

/// What happened in a race.
pub(crate) enum Event<T, A> {
    /// Time for the next hedge, if the call may send one.
    Hedge,
    /// This attempt ended, with this.
    Ended(T, Slot, A),
}

/// The attempts in flight, and when the next hedge is due.
pub(crate) struct Race<F, A> {
    runners: Vec<Runner<F, A>>,
    next_hedge: Option<Pin<Box<Sleep>>>,
}

impl<F: Future + Unpin, A> Race<F, A> {
    /// A race of one attempt; the first hedge is due in `after`.
    pub(crate) fn new(first: Runner<F, A>, after: Duration) -> Self {
        let mut runners = Vec::with_capacity(2);
        runners.push(first);
        Race {
            runners,
            next_hedge: Some(Box::pin(sleep(after))),
        }
    }

    /// A hedge joins the race; the next one, if any, is due in `after`.
    pub(crate) fn push(&mut self, runner: Runner<F, A>, after: Option<Duration>) {
        self.runners.push(runner);
        self.next_hedge = after.map(|after| Box::pin(sleep(after)));
    }

    /// Whether attempts are still in flight.
    pub(crate) fn running(&self) -> bool {
        !self.runners.is_empty()
    }

    /// The first attempt to end, or that a hedge is due. Each attempt's future is polled
    /// inside its own span.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Event<F::Output, A>> {
        for index in 0..self.runners.len() {
            let runner = &mut self.runners[index];
            let polled = {
                let _attempt = runner.slot.enter();
                Pin::new(&mut runner.future).poll(cx)
            };
            if let Poll::Ready(output) = polled {
                let Runner { slot, attempt, .. } = self.runners.swap_remove(index);
                return Poll::Ready(Event::Ended(output, slot, attempt));
            }
        }
        if let Some(due) = &mut self.next_hedge
            && due.as_mut().poll(cx).is_ready()
        {
            self.next_hedge = None;
            return Poll::Ready(Event::Hedge);
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
        self.next_hedge = None;
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
