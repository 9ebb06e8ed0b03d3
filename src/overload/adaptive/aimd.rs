//! Additive increase, multiplicative decrease (Netflix's `AIMDLimit`, TCP Reno's rule): a
//! drop, or an answer slower than `timeout`, multiplies the limit by `backoff_ratio`; any
//! other answer taken while at least half the places were in use adds one place. Blind to
//! latency below the timeout: it finds the capacity only where the dependency rejects.

use std::time::Duration;

use super::algorithm::{Sample, clamp};
use super::config::AdaptiveConcurrencyConfig;

#[derive(Debug)]
pub(crate) struct Aimd {
    limit: f64,
    min: u32,
    max: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    pub(crate) fn new(config: &AdaptiveConcurrencyConfig) -> Self {
        Aimd {
            limit: f64::from(config.initial_limit()),
            min: config.min,
            max: config.max,
            backoff_ratio: config.backoff_ratio,
            timeout: config.timeout,
        }
    }

    pub(crate) fn sample(&mut self, sample: Sample) -> f64 {
        let limit = if sample.dropped || sample.rtt > self.timeout {
            // Netflix floors it: a limit of 3 backs off to 2, not to 2.7.
            (self.limit * self.backoff_ratio).floor()
        } else if 2.0 * f64::from(sample.in_flight) >= self.limit {
            self.limit + 1.0
        } else {
            return self.limit;
        };
        self.limit = clamp(limit, self.min, self.max);
        self.limit
    }
}
