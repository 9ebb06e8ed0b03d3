//! One call's delay sequence: the policy's schedule plus the state it needs between retries.

use std::time::Duration;

use super::backoff::Backoff;
use super::policy::{RetryPolicy, Schedule};

pub(crate) enum Delays {
    Exponential {
        backoff: Backoff,
        rng: fastrand::Rng,
        previous: Duration,
    },
    #[cfg(feature = "backoff")]
    External(Box<dyn backoff::backoff::Backoff + Send + Sync>),
}

impl Delays {
    /// Made on the first retry only, so calls that succeed at once pay nothing for it.
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        match &policy.schedule {
            Schedule::Exponential(backoff) => Delays::Exponential {
                backoff: *backoff,
                rng: policy
                    .seed
                    .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
                previous: Duration::ZERO,
            },
            #[cfg(feature = "backoff")]
            Schedule::External(make) => Delays::External(make()),
        }
    }

    /// The delay before retry number `retry` (1 for the first), or `None` to stop.
    pub(crate) fn next(&mut self, retry: u32) -> Option<Duration> {
        match self {
            Delays::Exponential {
                backoff,
                rng,
                previous,
            } => {
                let delay = backoff.delay(retry, *previous, rng.f64());
                *previous = delay;
                Some(delay)
            }
            #[cfg(feature = "backoff")]
            Delays::External(schedule) => schedule.next_backoff(),
        }
    }
}
