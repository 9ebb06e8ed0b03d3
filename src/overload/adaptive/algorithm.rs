//! What every algorithm is to the limit: a sample in, a new limit out.
//!
//! Each algorithm keeps its estimate as a real number (the limit moves by fractions of a
//! place between samples) within `[min, max]`; the limit in force is its whole part.

use std::time::Duration;

use super::aimd::Aimd;
use super::config::{AdaptiveConcurrencyConfig, LimitAlgorithm};
use super::gradient2::Gradient2;
use super::vegas::Vegas;

/// One attempt's end, as the algorithms see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// From the attempt's send to its end: its answer read as far as the attempt reads it
    /// (the head, or the body too when the attempt bounds it), or its failure.
    pub(crate) rtt: Duration,
    /// Attempts in flight when it took its place, itself included.
    pub(crate) in_flight: u32,
    /// Rejected for overload (a 429, 503 or 504, a refused connection, the attempt timeout).
    pub(crate) dropped: bool,
}

/// The algorithm of one limit (an enum, not a trait object: no allocation, no indirection
/// on the sample path).
#[derive(Debug)]
pub(crate) enum Algorithm {
    Gradient2(Gradient2),
    Aimd(Aimd),
    Vegas(Vegas),
}

impl Algorithm {
    pub(crate) fn new(config: &AdaptiveConcurrencyConfig) -> Self {
        match config.algorithm {
            LimitAlgorithm::Gradient2 => Algorithm::Gradient2(Gradient2::new(config)),
            LimitAlgorithm::Aimd => Algorithm::Aimd(Aimd::new(config)),
            LimitAlgorithm::Vegas => Algorithm::Vegas(Vegas::new(config)),
        }
    }

    /// Learns from `sample`; the limit it now allows, at least 1.
    pub(crate) fn sample(&mut self, sample: Sample) -> u32 {
        let limit = match self {
            Algorithm::Gradient2(g) => g.sample(sample),
            Algorithm::Aimd(a) => a.sample(sample),
            Algorithm::Vegas(v) => v.sample(sample),
        };
        whole(limit)
    }
}

/// The places a real limit allows: its whole part, at least 1 (a NaN, which no algorithm
/// makes, counts as 1).
pub(crate) fn whole(limit: f64) -> u32 {
    if limit >= 1.0 {
        // In range: every estimate is clamped to `max`, at most 100,000.
        limit.min(f64::from(u32::MAX)) as u32
    } else {
        1
    }
}

/// An estimate kept within the config's `[min, max]`.
pub(crate) fn clamp(limit: f64, min: u32, max: u32) -> f64 {
    limit.max(f64::from(min)).min(f64::from(max))
}

/// Nanoseconds of `rtt`, as a real (precise enough for any latency: 2^53 ns is 104 days).
pub(crate) fn nanos(rtt: Duration) -> f64 {
    rtt.as_nanos() as f64
}
