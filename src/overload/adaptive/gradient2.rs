//! Netflix's Gradient2 (`Gradient2Limit` in concurrency-limits), per sample.
//!
//! Two latencies: the *short* one is the sample's own; the *long* one an exponential average
//! over about `long_window` samples (a plain mean over the first 10). The gradient
//! `clamp(rtt_tolerance × long / short, 0.5, 1)` is 1 while the latency stays within the
//! tolerance of its long-term level, and falls as it rises past it (queueing); each sample
//! moves the limit a `smoothing` share of the way to `gradient × limit + queue_size`, so
//! it grows by `queue_size` (4, Netflix's) a sample at most, and halves at worst. When the
//! long average is over twice the sample (the load is gone) it is pulled down 5 % a sample,
//! so that it does not keep the limit high for a long window. A sample taken while fewer
//! than half the places were in use says nothing of the capacity and moves nothing.
//!
//! Drops are not a signal of their own here (as in Netflix's): their latency is.
//!
//! Why it is not the default: the long average is the *recent* latency, not the unloaded
//! one. Against a dependency whose latency grows with its queue, a steady overload raises
//! both, the gradient stays near 1, and the limit grows by `smoothing × queue_size` a sample
//! until half its places are unused (measured: 64 callers against a capacity of 8 end at a
//! limit of 128, all 64 in flight). It suits dependencies whose latency jumps when they
//! saturate; Vegas, which compares with the least latency seen, finds the knee.

use super::algorithm::{Sample, clamp, nanos};
use super::config::AdaptiveConcurrencyConfig;

/// Samples whose plain mean starts the long average.
const WARM_UP: u32 = 10;
/// Places the limit may grow by, per sample, past the gradient's: Netflix's default.
const QUEUE_SIZE: f64 = 4.0;

#[derive(Debug)]
pub(crate) struct Gradient2 {
    limit: f64,
    min: u32,
    max: u32,
    smoothing: f64,
    tolerance: f64,
    /// The long average's weight of a new sample: `2 / (long_window + 1)`.
    factor: f64,
    /// The long average, in nanoseconds; and the samples in it while warming up.
    long: f64,
    count: u32,
}

impl Gradient2 {
    pub(crate) fn new(config: &AdaptiveConcurrencyConfig) -> Self {
        Gradient2 {
            limit: f64::from(config.initial_limit()),
            min: config.min,
            max: config.max,
            smoothing: config.smoothing,
            tolerance: config.rtt_tolerance,
            factor: 2.0 / (f64::from(config.long_window.max(1)) + 1.0),
            long: 0.0,
            count: 0,
        }
    }

    pub(crate) fn sample(&mut self, sample: Sample) -> f64 {
        let short = nanos(sample.rtt);
        if short <= 0.0 {
            return self.limit;
        }
        if self.count < WARM_UP {
            self.count += 1;
            self.long += (short - self.long) / f64::from(self.count);
        } else {
            self.long += (short - self.long) * self.factor;
        }
        if self.long / short > 2.0 {
            self.long *= 0.95;
        }
        if f64::from(sample.in_flight) < self.limit / 2.0 {
            return self.limit;
        }
        let gradient = (self.tolerance * self.long / short).clamp(0.5, 1.0);
        let target = gradient * self.limit + QUEUE_SIZE;
        let limit = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        self.limit = clamp(limit, self.min, self.max);
        self.limit
    }
}
