//! Scenario files: who calls, and how the dependency behaves over time.
//!
//! SKELETON (helper "scenario" owns this file): the public types below are the contract the
//! runner reads (keep their fields); the TOML reading (`from_toml`, `from_file`), its
//! file/line errors and its ranges are yours to write.

use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::overload::Criticality;

/// A modelled incident: the callers' load, and the dependency's behaviour over time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Scenario {
    /// Shown in reports.
    pub name: String,
    /// One paragraph shown in reports.
    pub description: String,
    /// How much virtual time to run.
    pub duration: Duration,
    /// The seed of every random choice: the same scenario, policy and seed give the same
    /// report.
    pub seed: u64,
    /// The URL the callers call: the policy's rules match it as they would a real one.
    pub url: url::Url,
    /// Clients sharing the dependency, each with its own breakers and guards (the offered
    /// load is split evenly between them).
    pub replicas: u32,
    /// The time series' step.
    pub sample_every: Duration,
    /// Who calls, how often, with what.
    pub load: Load,
    /// The dependency's phases, in time order; the first starts at zero.
    pub phases: Vec<Phase>,
}

/// The offered load.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Load {
    /// Open or closed loop.
    pub arrivals: Arrivals,
    /// What the requests are, drawn by weight for each call.
    pub mix: Vec<RequestKind>,
}

/// How calls arrive.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Arrivals {
    /// Open loop: calls arrive at this rate (requests/s, all replicas together) whatever
    /// happens to the earlier ones, as Poisson arrivals. The curve is linear between its
    /// points and constant after the last; a single point is a constant rate.
    Rate(Vec<RatePoint>),
    /// Closed loop: this many callers (all replicas together), each calling again `think`
    /// after its call ends.
    Callers {
        /// How many.
        callers: u32,
        /// The pause between one call's end and the next call.
        think: Duration,
    },
}

/// A point of the offered rate's curve.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RatePoint {
    /// When (from the start).
    pub at: Duration,
    /// Requests per second.
    pub rps: f64,
}

/// One kind of request of the mix.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RequestKind {
    /// Its share of calls, relative to the other kinds' weights.
    pub weight: f64,
    /// The method.
    pub method: http::Method,
    /// Joined to the scenario's URL (`""`: the URL itself).
    pub path: String,
    /// Whether it carries an `Idempotency-Key` (what makes a POST retryable).
    pub idempotency_key: bool,
    /// Its criticality; `None`: the policy's.
    pub criticality: Option<Criticality>,
}

/// How the dependency behaves from `at` until the next phase.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Phase {
    /// Shown in reports.
    pub name: String,
    /// When it starts (from the start of the run).
    pub at: Duration,
    /// How long a healthy answer takes (to its head; the body follows at once).
    pub latency: Latency,
    /// Shares of requests answered otherwise than `200` (the rest are `200`s).
    pub faults: Vec<Fault>,
    /// How many requests it serves at once before it slows down or turns them away.
    pub capacity: Option<Capacity>,
    /// The quota it advertises and enforces.
    pub quota: Option<Quota>,
}

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Latency {
    /// Always this.
    Fixed(Duration),
    /// Uniform between the two.
    Uniform {
        /// The least.
        min: Duration,
        /// The most.
        max: Duration,
    },
    /// Log-normal with this median and 99th percentile (`sigma = ln(p99 / p50) / 2.326`).
    LogNormal {
        /// The median.
        p50: Duration,
        /// The 99th percentile.
        p99: Duration,
    },
}

/// A share of requests answered with a fault.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// The share of requests it happens to, 0 to 1 (all faults of a phase sum to at most 1).
    pub share: f64,
}

/// What a faulty answer is.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum FaultKind {
    /// A status (`500`, `503`, `429`, ...) after the phase's latency, with `Retry-After` if
    /// given.
    Status {
        /// The status.
        status: u16,
        /// Its `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The connection is reset after the phase's latency (the request may have been
    /// processed).
    Reset,
    /// The connection is refused at once (never sent).
    Refused,
    /// No answer, ever: only the attempt's timeout ends it.
    Hang,
    /// The head after the phase's latency, then the body after `body_delay` more.
    SlowBody {
        /// How long the body takes after the head.
        body_delay: Duration,
    },
}

/// What the dependency does with more requests than it serves at once.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Capacity {
    /// Requests served at once at the phase's latency.
    pub concurrency: u32,
    /// Beyond it.
    pub beyond: Beyond,
}

/// What happens beyond the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Beyond {
    /// Latency grows as `latency × in_flight / concurrency` (a queue).
    Queue,
    /// Requests beyond it are answered at once with this status (`503` by default).
    Reject {
        /// The status.
        status: u16,
    },
}

/// A quota the dependency advertises on every answer and enforces with `429`s.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Quota {
    /// Requests allowed per window (all replicas together).
    pub limit: u64,
    /// The fixed window.
    pub window: Duration,
    /// The fields it is advertised in.
    pub fields: QuotaFields,
}

/// The header fields a quota is advertised in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaFields {
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds).
    XRateLimit,
    /// The IETF draft's `RateLimit-Policy` and `RateLimit`.
    Ietf,
    /// None: only the `429`s and their `Retry-After` tell.
    None,
}

impl Scenario {
    /// Reads a scenario file. Errors name the file, the line and the key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, Error> {
        let _ = path;
        Err(Error::invalid_config("SKELETON: scenario files"))
    }

    /// Reads a scenario from TOML text. Errors name the line and the key.
    pub fn from_toml(text: &str) -> Result<Scenario, Error> {
        let _ = text;
        Err(Error::invalid_config("SKELETON: scenario files"))
    }
}
