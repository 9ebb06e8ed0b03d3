//! What a simulation saw: per phase, over time, and the breakers' bands; the `--json` schema.
//!
//! `resilient-http simulate --json` prints one [`Report`] per policy, one compact JSON object
//! a line (the first line is `--config`'s, the second `--compare`'s). The keys are the
//! fields of [`Report`] and of the types it holds, in their order, on **every** run: a value
//! that does not apply is `null`, never left out, and a list is there even when empty.
//! [`SCHEMA`] (the `schema` key) changes only when a key changes meaning or goes; keys may
//! be added.
//!
//! ```text
//! {"schema","scenario","description","policy","seed","duration_secs","replicas","real_secs",
//!  "total": Stats, "phases": [Stats],
//!  "series": {"t_secs","offered_rps","attempts_rps","success_rate","p50_ms","p99_ms",
//!             "dependency_in_flight","breakers_open","budget_available","bulkhead_in_flight",
//!             "adaptive_limit","throttle_probability","rate_limited","hedges_sent"},
//!  "breakers": [{"replica","policy","endpoint","spans":[{"state","from_secs","to_secs"}]}]}
//! Stats: {"name","start_secs","end_secs","calls","succeeded","success_rate","errors":{kind: n},
//!         "latency_ms":{"p50","p99","p999"},"offered_rps","attempts","attempts_rps",
//!         "amplification","hedges_sent","hedges_won"}
//! ```
//!
//! Units are in the keys: `_secs` virtual seconds from the run's start (except `real_secs`),
//! `_ms` milliseconds, `_rps` per second; rates and shares are from 0 to 1. Every list of
//! [`Series`] has one value per step of the scenario's `sample_every`.

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
    /// The scenario's description (one paragraph; `""` when it has none).
    pub description: String,
    /// The policy's label: its file's name, `defaults` without one.
    pub policy: String,
    /// The seed the run used (the scenario's, or `--seed`): the same scenario, policy and
    /// seed give the same report (but `real_secs`).
    pub seed: u64,
    /// Virtual seconds run (the scenario's `duration`).
    pub duration_secs: f64,
    /// Clients sharing the dependency, each with its own breakers and guards.
    pub replicas: u32,
    /// Real (wall-clock) seconds the run took: the one key that differs between two runs of
    /// the same seed.
    pub real_secs: f64,
    /// Over the whole run (`name` is `"total"`).
    pub total: Stats,
    /// One per phase of the dependency, in time order, named as in the scenario.
    pub phases: Vec<Stats>,
    /// Over time, one value per step of the scenario's `sample_every`.
    pub series: Series,
    /// The breakers that were ever open or half-open: one band per replica and endpoint
    /// (a breaker that stayed closed has none; `[]` when none opened).
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
    /// To (virtual seconds; the next phase's start, or the run's end).
    pub end_secs: f64,
    /// Calls that ended in the span.
    pub calls: u64,
    /// Those that ended with a success.
    pub succeeded: u64,
    /// `succeeded / calls`, 0 to 1 (`null` with no call).
    pub success_rate: Option<f64>,
    /// Failed calls by their error's [`ErrorKind::as_str`](crate::ErrorKind::as_str)
    /// (`timeout`, `status`, `circuit_open`, `budget_exhausted`, ...): every kind, zeros
    /// included, so the keys are the same on every run.
    pub errors: BTreeMap<String, u64>,
    /// The callers' latency in milliseconds (the whole call, retries and waits included),
    /// successes and failures together, of the calls that ended in the span.
    pub latency_ms: Percentiles,
    /// Calls offered per second over the span (arrivals, open or closed loop).
    pub offered_rps: f64,
    /// Attempts sent to the dependency that arrived in the span (first tries, retries and
    /// hedges; a refused connection included; not the calls the client's own guards turned
    /// away). The phases count those that arrived before the run's end; the total also those
    /// made after it, while the calls in flight finished.
    pub attempts: u64,
    /// Attempts per second at the dependency.
    pub attempts_rps: f64,
    /// `attempts` per call offered: 1 when every call took one attempt, above it with
    /// retries and hedges, below it when the client's guards (an open breaker, a budget, a
    /// limit) kept calls from the dependency (`null` with no call offered).
    pub amplification: Option<f64>,
    /// Hedges sent by the calls that ended in the span (0 without hedging).
    pub hedges_sent: u64,
    /// Calls a hedge's answer ended (the hedge answered before the attempt it backed up).
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

/// Time series, one value per step of the scenario's `sample_every`: `t_secs[i]` is the end
/// of step `i`, and every list has as many values as `t_secs`. Guard levels are summed over
/// replicas; a guard's list is all `null` when the policy does not turn it on, and a step
/// with no call ending has `null` rates and latencies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Series {
    /// The end of each step (virtual seconds).
    pub t_secs: Vec<f64>,
    /// Calls offered per second in the step.
    pub offered_rps: Vec<f64>,
    /// Attempts per second at the dependency in the step.
    pub attempts_rps: Vec<f64>,
    /// Successes / calls ended in the step, 0 to 1 (`null`: no call ended).
    pub success_rate: Vec<Option<f64>>,
    /// The median caller latency of calls ended in the step, ms (`null`: no call ended).
    pub p50_ms: Vec<Option<f64>>,
    /// The 99th percentile of the same, ms.
    pub p99_ms: Vec<Option<f64>>,
    /// Attempts in flight at the dependency at the step's end.
    pub dependency_in_flight: Vec<u64>,
    /// Breakers open (or half-open) at the step's end, over all replicas and endpoints.
    pub breakers_open: Vec<u64>,
    /// Retries left in the retry budgets at the step's end (`null`: no budget).
    pub budget_available: Vec<Option<u64>>,
    /// Calls in the bulkheads at the step's end (`null`: no bulkhead).
    pub bulkhead_in_flight: Vec<Option<u64>>,
    /// Adaptive concurrency limits at the step's end (`null`: no adaptive limit).
    pub adaptive_limit: Vec<Option<u64>>,
    /// The throttles' probability (0 to 1) of dropping a default-criticality request at the
    /// step's end, the mean over replicas (`null`: no client-side throttling).
    pub throttle_probability: Vec<Option<f64>>,
    /// Calls that ended in the step with a `rate_limited` error: a `Retry-After` hold, the
    /// server's quota or the rate limit would have kept them back past their deadline.
    pub rate_limited: Vec<u64>,
    /// Hedges sent by the calls that ended in the step.
    pub hedges_sent: Vec<u64>,
}

/// When one breaker was not closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerBand {
    /// The replica (0-based).
    pub replica: u32,
    /// The name of the policy (of the policy file) whose breaker it is.
    pub policy: String,
    /// The endpoint's key: scheme, host and port, e.g. `https://api.example:8443`.
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
    /// From (virtual seconds, to the step it was sampled at).
    pub from_secs: f64,
    /// To (virtual seconds; the run's end if it never left that state).
    pub to_secs: f64,
}

impl Report {
    /// The `--json` output: this report as one JSON object on one line (see the
    /// [module](self) for the schema).
    pub fn to_json(&self) -> String {
        // Serializing plain data to a string cannot fail (no map with non-string keys, no
        // failing writer); an empty line would say it did.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Reports to render in the tests of the table and the page (the runner is not needed).
#[cfg(test)]
pub(crate) mod samples {
    use std::collections::BTreeMap;

    use super::{BreakerBand, BreakerSpan, Percentiles, Report, SCHEMA, Series, Stats};

    /// Stats of a span with `calls` calls, `failed` of them timeouts and `open` turned away
    /// by an open breaker.
    pub(crate) fn stats(
        name: &str,
        from: f64,
        to: f64,
        calls: u64,
        failed: u64,
        open: u64,
    ) -> Stats {
        let secs = to - from;
        let attempts = calls + failed * 2 - open;
        let mut errors: BTreeMap<String, u64> = ["circuit_open", "status", "timeout"]
            .iter()
            .map(|k| ((*k).to_owned(), 0))
            .collect();
        errors.insert("timeout".to_owned(), failed - open);
        errors.insert("circuit_open".to_owned(), open);
        Stats {
            name: name.to_owned(),
            start_secs: from,
            end_secs: to,
            calls,
            succeeded: calls - failed,
            success_rate: Some((calls - failed) as f64 / calls as f64),
            errors,
            latency_ms: Percentiles {
                p50: Some(4.25),
                p99: Some(120.0),
                p999: if failed > 0 {
                    Some(2_000.0)
                } else {
                    Some(180.0)
                },
            },
            offered_rps: calls as f64 / secs,
            attempts,
            attempts_rps: attempts as f64 / secs,
            amplification: Some(attempts as f64 / calls as f64),
            hedges_sent: 0,
            hedges_won: 0,
        }
    }

    /// A 30-second run with a healthy phase (0-10 s) and an outage (10-30 s), under
    /// `policy`, with one breaker open from 12 to 20 s and half-open until 21 s.
    pub(crate) fn report(scenario: &str, policy: &str) -> Report {
        let healthy = stats("healthy", 0.0, 10.0, 1_000, 0, 0);
        let outage = stats("outage", 10.0, 30.0, 2_000, 1_500, 1_000);
        let mut total = stats("total", 0.0, 30.0, 3_000, 1_500, 1_000);
        total.latency_ms.p999 = Some(2_000.0);
        let t: Vec<f64> = (1..=30).map(f64::from).collect();
        let down = |i: usize, up: f64, outage: f64| if i < 10 { up } else { outage };
        Report {
            schema: SCHEMA,
            scenario: scenario.to_owned(),
            description: "The dependency answers nothing for 20 s.".to_owned(),
            policy: policy.to_owned(),
            seed: 7,
            duration_secs: 30.0,
            replicas: 1,
            real_secs: 0.25,
            total,
            phases: vec![healthy, outage],
            series: Series {
                offered_rps: t.iter().map(|_| 100.0).collect(),
                attempts_rps: (0..30).map(|i| down(i, 100.0, 125.0)).collect(),
                success_rate: (0..30).map(|i| Some(down(i, 1.0, 0.25))).collect(),
                p50_ms: (0..30).map(|i| Some(down(i, 4.0, 1_000.0))).collect(),
                p99_ms: (0..30).map(|i| Some(down(i, 100.0, 2_000.0))).collect(),
                dependency_in_flight: (0..30).map(|i| down(i, 1.0, 200.0) as u64).collect(),
                breakers_open: (0..30).map(|i| u64::from((12..21).contains(&i))).collect(),
                budget_available: (0..30).map(|i| Some(down(i, 100.0, 10.0) as u64)).collect(),
                bulkhead_in_flight: t.iter().map(|_| None).collect(),
                adaptive_limit: t.iter().map(|_| None).collect(),
                throttle_probability: t.iter().map(|_| None).collect(),
                rate_limited: t.iter().map(|_| 0).collect(),
                hedges_sent: t.iter().map(|_| 0).collect(),
                t_secs: t,
            },
            breakers: vec![BreakerBand {
                replica: 0,
                policy: "default".to_owned(),
                endpoint: "http://dependency.test".to_owned(),
                spans: vec![
                    BreakerSpan {
                        state: "open".to_owned(),
                        from_secs: 12.0,
                        to_secs: 20.0,
                    },
                    BreakerSpan {
                        state: "half_open".to_owned(),
                        from_secs: 20.0,
                        to_secs: 21.0,
                    },
                ],
            }],
        }
    }

    #[test]
    fn json_is_one_line_with_every_key() {
        let json = report("outage", "defaults").to_json();
        assert!(!json.contains('\n'), "{json}");
        for key in [
            "\"schema\":1",
            "\"description\":",
            "\"bulkhead_in_flight\":[null",
            "\"success_rate\":",
            "\"breakers\":[{\"replica\":0",
            "\"latency_ms\":{\"p50\":4.25",
        ] {
            assert!(json.contains(key), "{key} missing: {json}");
        }
    }
}
