//! What a timeout error is: its kind, class, delivery and limit, for every way time runs out.
//!
//! Time runs out on one of two clocks, the attempt's limit or the call's deadline, and at one of
//! three places on the request's way: before it went out (a hook, a body factory, no time left
//! for an attempt), while it was out (a timer fired with the request in the transport or a
//! layer), or after the response's head came (a reader, a body). [`ran_out`] makes the error of
//! each; the functions beside it convert an error made elsewhere (a tower timeout in a user's
//! layer, an attempt timeout that the deadline cut short, a call's last error at its
//! deadline), so that every path (the client's call, the layers, a user's layers) says the
//! same.
//!
//! The transport's own timeouts (reqwest's, hyper's, the system's) are sorted on a lower
//! floor, in `classify/transport.rs`, which does not import this one: there a timeout is the
//! attempt's clock with the request out (maybe sent), as here, and its class is a
//! classifier's verdict; a test there pins that it agrees with [`ran_out`]. [`timed_out`]
//! then names it for the nearer clock and gives it its limit.

use std::time::Duration;

use tokio::time::Instant;

use super::DEADLINE_SLACK;
use crate::classify::{Class, Delivery};
use crate::error::{Error, ErrorKind};

/// Which clock ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The attempt's own limit: its attempt timeout, or the transport's timer set to it.
    Attempt,
    /// The call's total deadline.
    Deadline,
}

impl Clock {
    /// The kind of error this clock running out is.
    pub(crate) const fn kind(self) -> ErrorKind {
        match self {
            Clock::Attempt => ErrorKind::AttemptTimeout,
            Clock::Deadline => ErrorKind::DeadlineExceeded,
        }
    }
}

/// The error of `clock` running out with the request at `delivery` ([`Delivery::NotSent`]:
/// before it went out; [`Delivery::MaybeSent`]: while it was out; [`Delivery::Delivered`]:
/// after the response's head came), which had `limit` (the attempt's limit, or the call's
/// budget) if the caller knows it here; [`timed_out`] and [`call_ended`] add it later otherwise.
///
/// Always transient: the same request may well be in time on another try.
pub(crate) fn ran_out(clock: Clock, delivery: Delivery, limit: Option<Duration>) -> Error {
    let error = Error::new(clock.kind(), Class::Transient, delivery);
    match limit {
        Some(limit) => error.with_limit(limit),
        None => error,
    }
}

/// The error of a tower `Timeout` in a user's layer that ran out on `clock`'s behalf (an
/// attempt layer's: the attempt's; an outer layer's: the deadline's), with the request in the
/// layer, so maybe sent, as a timeout the transport reports is (`classify/transport.rs`).
pub(crate) fn in_layer(clock: Clock) -> Error {
    ran_out(clock, Delivery::MaybeSent, None)
}

/// The error of an attempt that had `limit`, if it is an attempt timeout, named for the clock
/// that was nearer: the call's deadline if `by_deadline` (see
/// [`attempt_limit`](super::attempt_limit)), its history saying so too.
pub(crate) fn timed_out(error: Error, limit: Duration, by_deadline: bool) -> Error {
    if error.kind() != Clock::Attempt.kind() {
        return error;
    }
    let error = error.with_limit(limit);
    if by_deadline {
        error.into_deadline_exceeded()
    } else {
        error
    }
}

/// The final error of a call with `budget` that ends at `deadline` (its caller's if
/// `inherited`): one that ended at the deadline says so, with the whole budget as its limit,
/// even when its last attempt timed out on its own clock (which the breaker counted as the
/// endpoint's failure, and which its history keeps).
pub(crate) fn call_ended(
    error: Error,
    deadline: Instant,
    budget: Duration,
    inherited: bool,
) -> Error {
    let at_deadline = error.kind() == Clock::Deadline.kind()
        || (error.kind() == Clock::Attempt.kind() && Instant::now() + DEADLINE_SLACK >= deadline);
    if at_deadline {
        with_budget(past_deadline(error), budget, inherited)
    } else {
        error
    }
}

/// `error`, that left the call no time for another attempt: a deadline error, keeping its
/// class, delivery, answer and history.
pub(crate) fn past_deadline(error: Error) -> Error {
    error.with_kind(Clock::Deadline.kind())
}

/// `error` with the call's `budget` as its limit if it is a deadline error: a deadline
/// error's limit is the whole budget, whichever attempt met it. `inherited`: the budget was
/// what was left of the caller's deadline, which the error then names.
pub(crate) fn with_budget(error: Error, budget: Duration, inherited: bool) -> Error {
    if error.kind() != Clock::Deadline.kind() {
        return error;
    }
    let error = error.with_limit(budget);
    if inherited {
        error.with_inherited_deadline()
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Attempt, AttemptOutcome};

    const MS: Duration = Duration::from_millis(1);

    fn facts(error: &Error) -> (ErrorKind, Class, Delivery, Option<Duration>) {
        (
            error.kind(),
            error.class(),
            error.delivery(),
            error.timeout(),
        )
    }

    /// One attempt's error, as a layer below reports it.
    fn attempt_error(kind: ErrorKind) -> Error {
        let attempt = Attempt::first(
            MS,
            AttemptOutcome::Error(kind),
            Class::Transient,
            Delivery::MaybeSent,
        );
        Error::new(kind, Class::Transient, Delivery::MaybeSent).with_history(vec![attempt])
    }

    fn outcomes(error: &Error) -> Vec<AttemptOutcome> {
        error.attempts().iter().map(|a| a.outcome).collect()
    }

    #[test]
    fn each_clock_at_each_place_is_a_transient_error_of_its_kind() {
        use Delivery::{Delivered, MaybeSent, NotSent};
        use ErrorKind::{AttemptTimeout, DeadlineExceeded};
        let t = Class::Transient;
        // No time left before an attempt.
        let expired = ran_out(Clock::Deadline, NotSent, Some(MS));
        assert_eq!(facts(&expired), (DeadlineExceeded, t, NotSent, Some(MS)));
        // A hook, body factory or refresher past the deadline: the limit comes with the end.
        let hook = ran_out(Clock::Deadline, NotSent, None);
        assert_eq!(facts(&hook), (DeadlineExceeded, t, NotSent, None));
        // The backstops: an attempt's, the total deadline's.
        let attempt = ran_out(Clock::Attempt, MaybeSent, Some(2 * MS));
        assert_eq!(
            facts(&attempt),
            (AttemptTimeout, t, MaybeSent, Some(2 * MS))
        );
        let total = ran_out(Clock::Deadline, MaybeSent, Some(3 * MS));
        assert_eq!(
            facts(&total),
            (DeadlineExceeded, t, MaybeSent, Some(3 * MS))
        );
        // A reader past the attempt's limit: the answer had come.
        let reader = ran_out(Clock::Attempt, Delivered, None);
        assert_eq!(facts(&reader), (AttemptTimeout, t, Delivered, None));
        assert!(reader.is_timeout() && reader.is_transient());
    }

    #[test]
    fn a_tower_timeout_in_a_users_layer_may_have_sent_the_request() {
        let attempt = in_layer(Clock::Attempt);
        assert_eq!(
            facts(&attempt),
            (
                ErrorKind::AttemptTimeout,
                Class::Transient,
                Delivery::MaybeSent,
                None
            )
        );
        assert_eq!(
            in_layer(Clock::Deadline).kind(),
            ErrorKind::DeadlineExceeded
        );
    }

    #[test]
    fn an_attempt_timeout_is_named_for_the_nearer_clock() {
        let own = timed_out(attempt_error(ErrorKind::AttemptTimeout), 5 * MS, false);
        assert_eq!(own.kind(), ErrorKind::AttemptTimeout);
        assert_eq!(own.timeout(), Some(5 * MS));
        assert_eq!(
            outcomes(&own),
            [AttemptOutcome::Error(ErrorKind::AttemptTimeout)]
        );
        let cut = timed_out(attempt_error(ErrorKind::AttemptTimeout), 5 * MS, true);
        assert_eq!(facts(&cut).0, ErrorKind::DeadlineExceeded);
        assert_eq!(cut.timeout(), Some(5 * MS));
        assert_eq!(cut.delivery(), Delivery::MaybeSent);
        assert_eq!(
            outcomes(&cut),
            [AttemptOutcome::Error(ErrorKind::DeadlineExceeded)]
        );
        // Any other error is no timeout of the attempt's.
        let reset = timed_out(attempt_error(ErrorKind::ConnectionClosed), 5 * MS, true);
        assert_eq!(reset.kind(), ErrorKind::ConnectionClosed);
        assert_eq!(reset.timeout(), None);
    }

    #[test]
    fn a_call_that_ended_at_its_deadline_says_so_with_its_budget() {
        let now = Instant::now();
        let budget = 100 * MS;
        // Its last attempt timed out on its own clock, at the deadline: the history keeps it.
        let last = call_ended(attempt_error(ErrorKind::AttemptTimeout), now, budget, false);
        assert_eq!(last.kind(), ErrorKind::DeadlineExceeded);
        assert_eq!(last.timeout(), Some(budget));
        assert_eq!(
            outcomes(&last),
            [AttemptOutcome::Error(ErrorKind::AttemptTimeout)]
        );
        // Within the slack of the deadline is at it.
        let near = call_ended(
            attempt_error(ErrorKind::AttemptTimeout),
            now + DEADLINE_SLACK / 2,
            budget,
            false,
        );
        assert_eq!(near.kind(), ErrorKind::DeadlineExceeded);
        // Clearly before it, the attempt timed out on its own.
        let early = call_ended(
            attempt_error(ErrorKind::AttemptTimeout).with_limit(MS),
            now + 10_000 * MS,
            budget,
            false,
        );
        assert_eq!(early.kind(), ErrorKind::AttemptTimeout);
        assert_eq!(early.timeout(), Some(MS));
        // A deadline error gets the whole budget; any other error stays as it is.
        let cut = call_ended(
            ran_out(Clock::Deadline, Delivery::NotSent, Some(MS)),
            now + 10_000 * MS,
            budget,
            false,
        );
        assert_eq!(cut.timeout(), Some(budget));
        let reset = call_ended(
            attempt_error(ErrorKind::ConnectionClosed),
            now,
            budget,
            false,
        );
        assert_eq!(facts(&reset).0, ErrorKind::ConnectionClosed);
        assert_eq!(reset.timeout(), None);
    }

    #[test]
    fn an_error_with_no_time_for_another_attempt_is_a_deadline_error() {
        let error = Error::new(ErrorKind::Status, Class::Transient, Delivery::Delivered);
        let error = past_deadline(error);
        assert_eq!(
            facts(&error),
            (
                ErrorKind::DeadlineExceeded,
                Class::Transient,
                Delivery::Delivered,
                None
            )
        );
    }

    #[test]
    fn only_a_deadline_error_takes_the_budget_as_its_limit() {
        let deadline = ran_out(Clock::Deadline, Delivery::MaybeSent, Some(MS));
        assert_eq!(with_budget(deadline, 9 * MS, false).timeout(), Some(9 * MS));
        let attempt = ran_out(Clock::Attempt, Delivery::MaybeSent, Some(MS));
        assert_eq!(with_budget(attempt, 9 * MS, true).timeout(), Some(MS));
    }

    #[test]
    fn a_call_that_ended_at_its_callers_deadline_names_it() {
        let now = Instant::now();
        let own = call_ended(
            attempt_error(ErrorKind::AttemptTimeout),
            now,
            800 * MS,
            false,
        );
        assert!(!own.deadline_inherited());
        assert!(
            own.to_string().contains("deadline exceeded after 800.0ms"),
            "{own}"
        );
        let caller = call_ended(
            attempt_error(ErrorKind::AttemptTimeout),
            now,
            800 * MS,
            true,
        );
        assert_eq!(caller.kind(), ErrorKind::DeadlineExceeded);
        assert!(caller.deadline_inherited());
        assert_eq!(caller.timeout(), Some(800 * MS));
        assert!(
            caller
                .to_string()
                .contains("deadline exceeded: the caller's deadline (inherited), 800.0ms"),
            "{caller}"
        );
        let passed = with_budget(
            ran_out(Clock::Deadline, Delivery::NotSent, None),
            Duration::ZERO,
            true,
        );
        assert!(
            passed
                .to_string()
                .contains("the caller's deadline (inherited) had passed"),
            "{passed}"
        );
        // An error that did not end at the deadline names no deadline, inherited or not.
        let early = call_ended(
            attempt_error(ErrorKind::AttemptTimeout).with_limit(MS),
            now + 10_000 * MS,
            800 * MS,
            true,
        );
        assert!(!early.deadline_inherited());
        assert!(!early.to_string().contains("caller"), "{early}");
    }
}
