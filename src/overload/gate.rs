//! The way out for an attempt's request, past the endpoint's guards: the one sequence both
//! paths follow (the client's own call and the retry layer), so that they cannot drift.
//!
//! A call's first request takes its place in the bulkhead ([`enter`]); every attempt's
//! request is then let out, held back for a while, or turned away ([`admit`]); after a
//! wait, [`waited`] takes up where it left off. A call without guards goes straight out.

use tokio::time::sleep;

use super::bulkhead::BulkheadPermit;
use super::{Admission, Entry};
use crate::breaker::Breaker;
use crate::error::Error;
use crate::hook::BoxFuture;
use crate::retry::state::RetryState;

/// What the guards make of a request.
// Returned and matched at once: boxing the request would cost every call an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Gate {
    /// Out it goes.
    Out(reqwest::Request),
    /// Not yet: when this is ready, pass it to [`waited`].
    Wait(BoxFuture<Waited>),
    /// This attempt is turned away (a hold or the rate limit, past the deadline): an attempt
    /// that was not sent, for the retry bookkeeping to record and end the call with.
    Refused(Error),
    /// The call is turned away before any attempt (a full bulkhead): its final error.
    Over(Error),
}

/// A wait that is over, with the request it held.
pub(crate) enum Waited {
    /// Queued at the bulkhead: the place, or `None` if none came in time.
    Queued(Option<BulkheadPermit>, reqwest::Request),
    /// Held back by a hold or the rate limit.
    Held(reqwest::Request),
}

/// The call's first request: a place in the endpoint's bulkhead, then [`admit`].
pub(crate) fn enter(
    retry: &mut RetryState,
    request: reqwest::Request,
    breaker: Option<&Breaker>,
) -> Gate {
    let Some(guards) = retry.guards() else {
        return Gate::Out(request);
    };
    match guards.enter(retry.deadline(), retry.policy_name()) {
        Entry::In(place) => {
            retry.take_place(place);
            admit(retry, request, breaker)
        }
        Entry::Queue(queueing) => {
            Gate::Wait(Box::pin(
                async move { Waited::Queued(queueing.await, request) },
            ))
        }
        Entry::Full(error) => over(retry, error, &request),
    }
}

/// An attempt's request: out, held back for a while, or turned away. `breaker` is the
/// endpoint's, if the caller has it: an attempt it will refuse takes no rate-limit slot.
pub(crate) fn admit(
    retry: &mut RetryState,
    request: reqwest::Request,
    breaker: Option<&Breaker>,
) -> Gate {
    let Some(guards) = retry.guards() else {
        return Gate::Out(request);
    };
    let (started, deadline) = (retry.attempt_started(), retry.deadline());
    match guards.admit(started, deadline, retry.policy_name(), breaker) {
        Admission::Go => {
            retry.let_out();
            Gate::Out(request)
        }
        Admission::Wait(wait) => Gate::Wait(Box::pin(async move {
            sleep(wait).await;
            Waited::Held(request)
        })),
        Admission::Refused(error) => {
            Gate::Refused(error.with_request(request.method(), request.url()))
        }
    }
}

/// A wait is over: the attempt starts over from now, and asks again.
pub(crate) fn waited(retry: &mut RetryState, waited: Waited, breaker: Option<&Breaker>) -> Gate {
    let mut request = match waited {
        Waited::Held(request) => request,
        Waited::Queued(Some(place), request) => {
            retry.take_place(Some(place));
            request
        }
        Waited::Queued(None, request) => {
            // Only a call with guards queues.
            let full = retry
                .guards()
                .map(|guards| guards.full(retry.policy_name()));
            let error = full.unwrap_or_else(Error::polled_after_completion);
            return over(retry, error, &request);
        }
    };
    retry.resume(&mut request);
    admit(retry, request, breaker)
}

fn over(retry: &mut RetryState, error: Error, request: &reqwest::Request) -> Gate {
    Gate::Over(retry.fail(error.with_request(request.method(), request.url())))
}
