//! What a simulation saw: per phase, over time, and the breakers' bands.
//!
//! SKELETON (the runner fills it; the report helper renders it): the JSON schema is this
//! struct as serde writes it, every key on every run (`None` is `null`, never left out).
//! Stable once defined: add keys, never rename.

use std::collections::BTreeMap;

use serde::Serialize;

/// The version of the JSON schema: `schema` in every report.
pub const SCHEMA: u32 = 1;

/// What a simulation saw. [`Report::to_json`] is the `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The policy's label (its file's name).
    pub policy: String,
    /// The seed the run used.
    pub seed: u64,
    /// Virtual seconds run.
    pub duration_secs: f64,
    /// Clients sharing the dependency.
    pub replicas: u32,
    /// Real seconds the run took.
    pub real_secs: f64,
    /// Over the whole run.
    pub total: Stats,
    /// One per phase of the dependency, in time order.
    pub phases: Vec<Stats>,
    /// Every `sample_every`.
    pub series: Series,
    /// When each endpoint's breaker was open or half-open, per replica.
    pub breakers: Vec<BreakerBand>,
}

/// What callers and the dependency saw over a span of time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The phase's name (`"total"` for the whole run).
    pub name: String,
    /// From (virtual seconds).
    pub start_secs: f64,
    /// To.
    pub end_secs: f64,
    /// Calls that ended in the span.
    pub calls: u64,
    /// Those that ended with a success.
    pub succeeded: u64,
    /// `succeeded / calls` (`null` with no call).
    pub success_rate: Option<f64>,
    /// Failed calls by [`ErrorKind::as_str`](crate::ErrorKind::as_str): every kind, zeros
    /// included.
    pub errors: BTreeMap<String, u64>,
    /// The callers' latency (the whole call, retries and waits included), successes and
    /// failures together.
    pub latency_ms: Percentiles,
    /// Calls offered per second (arrivals, open or closed loop).
    pub offered_rps: f64,
    /// Attempts that reached the dependency (retries and hedges included).
    pub attempts: u64,
    /// Attempts per second at the dependency.
    pub attempts_rps: f64,
    /// Attempts per call offered (`null` with no call offered).
    pub amplification: Option<f64>,
    /// Hedges sent.
    pub hedges_sent: u64,
    /// Calls a hedge's answer ended.
    pub hedges_won: u64,
}

/// Percentiles of a latency distribution, in milliseconds (`null` with no sample).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th.
    pub p99: Option<f64>,
    /// 99.9th.
    pub p999: Option<f64>,
}

/// Time series, one value per step: `t_secs[i]` is the end of step `i`. Guard levels are
/// summed over replicas (`null` where no replica's policy has the guard).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Series {
    /// The end of each step (virtual seconds).
    pub t_secs: Vec<f64>,
    /// Calls offered per second in the step.
    pub offered_rps: Vec<f64>,
    /// Attempts per second at the dependency in the step.
    pub attempts_rps: Vec<f64>,
    /// Successes / calls ended in the step.
    pub success_rate: Vec<Option<f64>>,
    /// Caller latency of calls ended in the step.
    pub p50_ms: Vec<Option<f64>>,
    /// Caller latency of calls ended in the step.
    pub p99_ms: Vec<Option<f64>>,
    /// Attempts in flight at the dependency at the step's end.
    pub dependency_in_flight: Vec<u64>,
    /// Breakers open (or half-open) at the step's end, over all replicas and endpoints.
    pub breakers_open: Vec<u64>,
    /// Retries left in the budgets at the step's end.
    pub budget_available: Vec<Option<u64>>,
    /// Calls in the bulkheads at the step's end.
    pub bulkhead_in_flight: Vec<Option<u64>>,
    /// Adaptive concurrency limits at the step's end.
    pub adaptive_limit: Vec<Option<u64>>,
    /// The throttles' probability of dropping a default-criticality request (the mean
    /// over replicas).
    pub throttle_probability: Vec<Option<f64>>,
    /// Calls refused by the rate limits in the step (`rate_limited` errors).
    pub rate_limited: Vec<u64>,
    /// Hedges sent in the step.
    pub hedges_sent: Vec<u64>,
}

/// When one breaker was not closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerBand {
    /// The replica (0-based).
    pub replica: u32,
    /// The policy's name.
    pub policy: String,
    /// The endpoint's key.
    pub endpoint: String,
    /// The spans, in time order.
    pub spans: Vec<BreakerSpan>,
}

/// A span of one breaker's state other than closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerSpan {
    /// `"open"` or `"half_open"`.
    pub state: String,
    /// From (virtual seconds, as sampled).
    pub from_secs: f64,
    /// To (the run's end if it never closed).
    pub to_secs: f64,
}

impl Report {
    /// The `--json` output: this report as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
