//! TCP Vegas's rule as Netflix's `VegasLimit` applies it to a concurrency limit: the least
//! latency seen is the dependency's latency without a queue, and `limit × (1 − no_load /
//! rtt)` estimates how many attempts queue there. Fewer than `alpha` grows the limit by one
//! (by `beta` when at most one queues); more than `beta` shrinks it by one; a drop shrinks
//! it by one too.
//!
//! `alpha` and `beta` are Linux's `tcp_vegas` defaults, 2 and 4 (times `log10(limit)` past
//! 100 places, as Netflix scales them), not Netflix's 3 and 6: the limit settles 2 to 4
//! places above the dependency's capacity rather than 3 to 6. Measured against a capacity of
//! 8 (tests/adaptive.rs), Netflix's let the least latency's share of the client's own
//! overhead (a few ms on a loaded box) hide a queue of one or two more, and the limit
//! settled anywhere from 14 to 17; with these, from 10 to 13.
//!
//! Netflix steps per sample; here once per round (as many samples as the limit has places),
//! as TCP Vegas moves its window once per round trip: stepped per sample, the samples of one
//! round trip, all taken before the step showed, all step the same way, +`beta` each while
//! the queue is short, far past the knee (measured: a limit of 44 for a capacity of 16).
//!
//! Not Netflix's probe either: it forgets the least latency every so many samples and takes
//! the next one instead, which under a steady overload is a queued one, so each probe raises
//! the limit past the knee and it does not come back. The least latency here is kept for
//! good; a dependency whose latency rises for good is then seen as queueing, and the limit
//! settles where the estimate is `beta` (about 2 × 4 places for a doubled latency), not
//! lower.
//!
//! Drops are no latency: kept for good, a drop answered fast (a connection refused in
//! 100 µs) taken as the unloaded latency would make every healthy answer look queued and
//! pin the limit near its floor for good (measured before: one 100 µs drop, then 5,000
//! answers of 20 ms, left the limit at 4; now it reaches its max). The least latency is
//! that of one answered attempt, not of a round's mean: a round's mean under load never
//! shows the unloaded latency, and the limit then settled at 15 for a capacity of 8. So a
//! scope that mixes fast and slow routes (a cheap `/health` beside a slow search) sees the
//! slow ones as queued and holds the limit low: give such routes rules (and scopes) of their
//! own.

use super::algorithm::{Sample, clamp, nanos};
use super::config::AdaptiveConcurrencyConfig;

#[derive(Debug)]
pub(crate) struct Vegas {
    limit: f64,
    min: u32,
    max: u32,
    /// The least latency seen, in nanoseconds (0: none yet).
    no_load: f64,
    /// The round so far: samples, the answered ones and their latencies' sum, the most in
    /// flight, any drop.
    round: u32,
    answered: u32,
    sum: f64,
    in_flight: u32,
    dropped: bool,
}

/// `max(1, floor(log10(limit)))`, Netflix's `Log10RootIntFunction`.
fn log10(limit: f64) -> f64 {
    limit.log10().floor().max(1.0)
}

impl Vegas {
    pub(crate) fn new(config: &AdaptiveConcurrencyConfig) -> Self {
        Vegas {
            limit: f64::from(config.initial_limit()),
            min: config.min,
            max: config.max,
            no_load: 0.0,
            round: 0,
            answered: 0,
            sum: 0.0,
            in_flight: 0,
            dropped: false,
        }
    }

    pub(crate) fn sample(&mut self, sample: Sample) -> f64 {
        let rtt = nanos(sample.rtt);
        if rtt <= 0.0 {
            return self.limit;
        }
        // One step per round (see the module docs); a drop's latency says nothing of the
        // dependency's without a queue.
        self.round += 1;
        if !sample.dropped {
            self.answered += 1;
            self.sum += rtt;
            if self.no_load == 0.0 || rtt < self.no_load {
                self.no_load = rtt;
            }
        }
        self.in_flight = self.in_flight.max(sample.in_flight);
        self.dropped |= sample.dropped;
        if f64::from(self.round) < self.limit {
            return self.limit;
        }
        let rtt = if self.answered > 0 {
            self.sum / f64::from(self.answered)
        } else {
            0.0
        };
        let sample = Sample {
            in_flight: self.in_flight,
            dropped: self.dropped,
            ..sample
        };
        (self.round, self.answered, self.sum) = (0, 0, 0.0);
        (self.in_flight, self.dropped) = (0, false);
        let step = log10(self.limit);
        let limit = if sample.dropped {
            self.limit - step
        } else if 2.0 * f64::from(sample.in_flight) < self.limit || rtt == 0.0 {
            return self.limit;
        } else {
            let queue = (self.limit * (1.0 - self.no_load / rtt)).ceil();
            let (alpha, beta) = (2.0 * step, 4.0 * step);
            if queue <= step {
                self.limit + beta
            } else if queue < alpha {
                self.limit + step
            } else if queue > beta {
                self.limit - step
            } else {
                return self.limit;
            }
        };
        self.limit = clamp(limit, self.min, self.max);
        self.limit
    }
}
