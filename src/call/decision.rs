//! Whether a failed attempt is retried, and after how long: the one decision, asked by the
//! driver through [`RetryState::finish_attempt`](super::state::RetryState::finish_attempt).

use std::time::Duration;

use tokio::time::Instant;

use crate::classify::{Class, Delivery};
use crate::error::{Error, ErrorKind, GiveUp, Short};
use crate::overload::{Criticality, Guards};
use crate::retry::RetryPolicy;
use crate::retry::delays::Delays;
use crate::timeout::past_deadline;

/// What is known when an attempt has failed.
pub(crate) struct Decision<'a> {
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) attempts: u32,
    pub(crate) may_repeat: bool,
    pub(crate) replayable: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) now: Instant,
    pub(crate) guards: Option<&'a Guards>,
    /// The call's: critical retries may take the budget's last retries.
    pub(crate) criticality: Criticality,
}

impl Decision<'_> {
    /// The delay before the next attempt, or the error to return now.
    pub(crate) fn decide(
        self,
        error: Error,
        delays: &mut Option<Box<Delays>>,
    ) -> Result<Duration, (Error, GiveUp)> {
        if error.class() != Class::Transient {
            return Err((error, GiveUp::Permanent));
        }
        // Retrying cannot help these, or is not ours to decide.
        if let Some(reason) = GiveUp::of_kind(error.kind()) {
            return Err((error, reason));
        }
        if self.attempts >= self.policy.max_attempts {
            return Err((error, GiveUp::AttemptsExhausted));
        }
        if !self.may_repeat && error.delivery() != Delivery::NotSent {
            let error = error.with_detail(
                "not retried: a non-idempotent request that may have been processed \
                 (send an Idempotency-Key to make it retryable)",
            );
            return Err((error, GiveUp::NotIdempotent));
        }
        if !self.replayable {
            return Err((Error::not_replayable(error), GiveUp::BodyNotReplayable));
        }
        let delay = match error
            .retry_after()
            .filter(|_| error.kind() == ErrorKind::Status)
        {
            Some(asked) => {
                let cap = self.policy.retry_after_cap;
                if asked > cap {
                    let detail = format!(
                        "not retried: the server asked to wait {}, above the {} cap",
                        Short(asked),
                        Short(cap)
                    );
                    return Err((error.with_detail(detail), GiveUp::RetryAfterAboveCap));
                }
                if !self.ends_before_deadline(asked) {
                    let detail = format!(
                        "not retried: the server asked to wait {}, past the deadline",
                        Short(asked)
                    );
                    return Err((error.with_detail(detail), GiveUp::Deadline));
                }
                // Spread with the other calls the endpoint's hold releases.
                self.guards.map_or(asked, |guards| {
                    guards.retry_after_wait(self.now, asked, self.deadline)
                })
            }
            None => {
                let delays = delays.get_or_insert_with(|| Box::new(Delays::new(self.policy)));
                match delays.next(self.attempts) {
                    Some(delay) => delay,
                    None => return Err((error, GiveUp::ScheduleEnded)),
                }
            }
        };
        if !self.ends_before_deadline(delay) {
            let detail = format!(
                "the next retry, in {}, would start past the deadline",
                Short(delay)
            );
            let error = past_deadline(error).with_detail(detail);
            return Err((error, GiveUp::Deadline));
        }
        // A retry the policy allows still needs the endpoint's budget: the last thing asked,
        // so only a retry that will happen spends from it.
        let policy = self.policy.name();
        if self
            .guards
            .is_some_and(|guards| !guards.withdraw(self.now, self.criticality, policy))
        {
            return Err((error.into_budget_exhausted(), GiveUp::BudgetExhausted));
        }
        Ok(delay)
    }

    fn ends_before_deadline(&self, delay: Duration) -> bool {
        match self.deadline {
            None => true,
            Some(deadline) => self
                .now
                .checked_add(delay)
                .is_some_and(|wake| wake < deadline),
        }
    }
}
