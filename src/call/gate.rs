//! The way out for an attempt's request, past the endpoint's guards: one sequence, asked by
//! the driver for every path.
//!
//! A call's first request takes its place in the bulkhead ([`enter`]); every attempt's
//! request is then throttled or not, takes its place under the adaptive limit (queueing for
//! it), and is let out, held back for a while, or turned away ([`admit`]); after a wait,
//! [`waited`] takes up where it left off. A call without guards goes straight out.
//! The request waits in the call's [`RetryState`] meanwhile; its [`Parked`] token travels
//! with the gate's answer, and [`RetryState::take_request`] takes it out with that token when
//! it goes out.

use tokio::time::sleep;

use super::custody::Parked;
use super::state::RetryState;
use crate::breaker::Breaker;
use crate::error::{Error, GiveUp};
use crate::hook::BoxFuture;
use crate::overload::adaptive::LimitPermit;
use crate::overload::bulkhead::BulkheadPermit;
use crate::overload::{Admission, Entry, Placing, Reservation};

/// What the guards make of the attempt's request.
pub(crate) enum Gate {
    /// Out it goes.
    Out(Parked),
    /// Not yet: when this is ready, pass it to [`waited`], with the request's token.
    Wait(BoxFuture<Waited>, Parked),
    /// This attempt is turned away (a hold or the rate limit, past the deadline): an attempt
    /// that was not sent, for the retry bookkeeping to record and end the call with; its
    /// request stays parked (the next attempt parks a fresh copy).
    Refused(Error, Parked),
    /// The call is turned away before any attempt (a full bulkhead): its final error.
    Over(Error),
}

/// A wait that is over.
pub(crate) enum Waited {
    /// Queued at the bulkhead: the place, or `None` if none came in time.
    Queued(Option<BulkheadPermit>),
    /// Held back by a hold or the rate limit; with the rate-limit slot reserved for now.
    Held(Option<Reservation>),
    /// Queued under the adaptive limit: the place, or `None` if none came in time.
    Placed(Option<LimitPermit>),
}

/// The call's first request: a place in the endpoint's bulkhead, then [`admit`].
pub(crate) fn enter(retry: &mut RetryState, parked: Parked, breaker: Option<&Breaker>) -> Gate {
    let Some(guards) = retry.guards() else {
        return Gate::Out(parked);
    };
    match guards.enter(retry.deadline(), retry.policy_name()) {
        Entry::In(place) => {
            retry.take_place(place);
            admit(retry, parked, breaker)
        }
        Entry::Queue(queueing) => Gate::Wait(
            Box::pin(async move { Waited::Queued(queueing.await) }),
            parked,
        ),
        Entry::Full(error) => over(retry, error),
    }
}

/// An attempt's request: throttled, out, held back for a while, or turned away. `breaker`
/// is the endpoint's, if the caller has it: an attempt it will refuse takes no rate-limit
/// slot. Asked once per attempt (client-side throttling counts it here).
pub(crate) fn admit(retry: &mut RetryState, parked: Parked, breaker: Option<&Breaker>) -> Gate {
    let Some(guards) = retry.guards() else {
        return Gate::Out(parked);
    };
    let (started, criticality) = (retry.attempt_started(), retry.criticality());
    match guards.throttle(started, criticality, retry.policy_name()) {
        Ok(None) => {}
        Ok(Some(throttle)) => {
            retry.pass_mut().set_throttle(throttle, criticality);
        }
        Err(error) => return Gate::Refused(naming_request(retry, error), parked),
    }
    place(retry, parked, breaker)
}

/// [`admit`], for an attempt that holds `reserved`, the rate-limit slot it waited for.
fn admit_with(
    retry: &mut RetryState,
    parked: Parked,
    breaker: Option<&Breaker>,
    reserved: Option<Reservation>,
) -> Gate {
    let Some(guards) = retry.guards() else {
        return Gate::Out(parked);
    };
    let (started, deadline) = (retry.attempt_started(), retry.deadline());
    match guards.admit(started, deadline, retry.policy_name(), breaker, reserved) {
        Admission::Go(ticket) => {
            retry.let_out(ticket);
            Gate::Out(parked)
        }
        // One sleep to the end of the wait. A reservation rides along: dropped with the
        // future if the call is, it gives its slot back.
        Admission::Wait(wait, reservation) => Gate::Wait(
            Box::pin(async move {
                sleep(wait).await;
                Waited::Held(reservation)
            }),
            parked,
        ),
        Admission::Refused(error) => Gate::Refused(naming_request(retry, error), parked),
    }
}

/// An attempt not throttled: its place under the adaptive limit, at once or after queueing
/// for it, or turned away; then [`admit_with`]. First, so that nothing is spent (a
/// rate-limit slot, the quota's ticket, the budget's deposit) for an attempt that finds no
/// place, and so that one that queued for its place asks the rate limit when it goes, not
/// when it began to queue.
fn place(retry: &mut RetryState, parked: Parked, breaker: Option<&Breaker>) -> Gate {
    let Some(guards) = retry.guards() else {
        return Gate::Out(parked);
    };
    match guards.place(retry.deadline(), retry.policy_name()) {
        Placing::In(place) => {
            if let Some(place) = place {
                retry.pass_mut().set_place(place);
            }
            admit_with(retry, parked, breaker, None)
        }
        Placing::Queue(queueing) => Gate::Wait(
            Box::pin(async move { Waited::Placed(queueing.await) }),
            parked,
        ),
        Placing::Full(error) => Gate::Refused(naming_request(retry, error), parked),
    }
}

/// A wait is over: the attempt starts over from now, and asks again (going at once with the
/// slot it reserved, unless a hold came meanwhile).
pub(crate) fn waited(
    retry: &mut RetryState,
    waited: Waited,
    parked: Parked,
    breaker: Option<&Breaker>,
) -> Gate {
    let reserved = match waited {
        Waited::Held(reserved) => reserved,
        Waited::Queued(Some(place)) => {
            retry.take_place(Some(place));
            retry.resume();
            return admit(retry, parked, breaker);
        }
        Waited::Placed(Some(place)) => {
            retry.pass_mut().set_place(place);
            None
        }
        Waited::Placed(None) => {
            let full = retry
                .guards()
                .map(|guards| guards.adaptive_full(retry.policy_name()));
            let error = full.unwrap_or_else(Error::polled_after_completion);
            return Gate::Refused(naming_request(retry, error), parked);
        }
        Waited::Queued(None) => {
            // Only a call with guards queues.
            let full = retry
                .guards()
                .map(|guards| guards.full(retry.policy_name()));
            let error = full.unwrap_or_else(Error::polled_after_completion);
            return over(retry, error);
        }
    };
    retry.resume();
    admit_with(retry, parked, breaker, reserved)
}

fn over(retry: &mut RetryState, error: Error) -> Gate {
    let error = naming_request(retry, error);
    let reason = GiveUp::ending(&error);
    Gate::Over(retry.fail(error, reason))
}

/// `error`, naming the attempt's request.
fn naming_request(retry: &RetryState, error: Error) -> Error {
    match retry.request() {
        Some(request) => error.with_request(request.method(), request.url()),
        None => error,
    }
}
