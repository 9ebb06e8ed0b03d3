//! Scenario files: who calls, and how the dependency behaves over time.
//!
//! A scenario is a TOML file read by [`Scenario::from_file`] (or [`Scenario::from_toml`]).
//! This is its reference: every key, its default and its range.
//!
//! ```toml
//! name = "Full outage"                     # required: shown in reports
//! description = "…"                        # optional: one paragraph shown in reports
//! duration = "10m"                         # required: virtual time to run, up to 24 h
//! seed = 1                                 # default 1: every random choice follows from it
//! url = "https://api.example.com/v1/"      # default "http://dependency.sim/" (http or https)
//! replicas = 1                             # default 1 (1 to 1,000): clients sharing the dependency
//! sample_every = "1s"                      # default 1s (10 ms to `duration`, 100,000 steps at most)
//!
//! [load]
//! rate = 1000                              # requests/s, all replicas together (0 to 1,000,000), or
//! # rate = [{ at = "0s", rps = 100 }, { at = "1m", rps = 1000 }]  # linear between points
//! # callers = 64                           # closed loop instead (1 to 100,000): exactly one of the two
//! # think = "0ms"                          # closed loop only (0 to 1 h), default 0
//!
//! [[load.mix]]                             # optional (up to 100); default one GET of `url`
//! method = "POST"                          # default GET; GET, HEAD, POST, PUT, DELETE, CONNECT,
//!                                          # OPTIONS, TRACE or PATCH, in any case
//! path = "orders"                          # joined to url (as a relative link); default ""
//! weight = 1.0                             # default 1: relative to the other kinds' (above 0)
//! idempotency_key = true                   # default false: sends an Idempotency-Key
//! criticality = "sheddable"                # critical | default | sheddable; default: the policy's
//!
//! [[phase]]                                # at least one; the first at "0s"; `at` strictly increasing
//! name = "healthy"                         # required, unique
//! at = "0s"                                # required, before `duration`
//! latency = { p50 = "20ms", p99 = "120ms" }   # log-normal; or "20ms" (fixed); or { min = "10ms", max = "30ms" }
//! capacity = { concurrency = 200 }            # beyond = "queue" (default) | "reject"; status = 503 (reject only)
//! quota = { limit = 100, window = "1s", fields = "ietf" }   # fields: "ietf" (default) | "x-ratelimit" | "none"
//!
//! [[phase]]
//! name = "outage"
//! at = "2m"
//! faults = [
//!   { status = 503, share = 0.9 },
//!   { status = 429, share = 0.05, retry_after = "2s" },
//!   { fault = "reset", share = 0.02 },      # reset | refused | hang | slow_body
//!   { fault = "slow_body", share = 0.03, body_delay = "5s" },
//! ]
//! ```
//!
//! **Phases.** A phase describes the dependency from its `at` until the next phase's. It takes
//! `latency`, `capacity` and `quota` from the phase before unless it sets them (so the first
//! phase must set `latency`); `capacity = "none"` and `quota = "none"` end an inherited one.
//! `faults` is never inherited: a phase without it answers every request `200`, which is how
//! a recovery is written.
//!
//! **Values.** Durations are written as humans write them (`"1500ms"`, `"90s"`, `"10m"`).
//! Latencies are 0 to 1 h; a log-normal's `p50` is above zero and at most its `p99`, a
//! uniform's `min` at most its `max`. Each fault has either a `status` (an error: 400 to
//! 599; a 1xx, 2xx or 3xx would not fail the call) or a `fault`, and a `share` of requests (0 to 1; a phase's shares sum to at most 1,
//! the rest are answered `200`); `retry_after` (whole seconds, as the header says them) goes
//! only with 429 and 503, `body_delay` (above zero) only with `slow_body`. A capacity serves
//! 1 to 1,000,000 requests at once; beyond it latency grows with the queue, or requests are
//! answered at once with `status` (default 503; 400 to 599, as a fault's). A quota allows `limit` requests
//! (1 to 10⁹, all replicas together) per fixed `window` (whole seconds, 1 s to 24 h),
//! advertised in the chosen fields, and answers `429` with `Retry-After` beyond it.
//!
//! **Mistakes** are errors of kind [`InvalidConfig`](crate::ErrorKind::InvalidConfig) that
//! name the file, the line and the key, and say what to write, as the policy files' do:
//! `incident.toml:14: "share": the phase's shares sum to 1.100, more than 1 in [[phase]]
//! "outage"`. Unknown keys are refused with the keys allowed where they stand (a typo must
//! not silently keep a default). Five example scenarios, each with the policies it compares,
//! are in the repository's `examples/scenarios/`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::bounds::{Count, Real, Span, SpanFrom};
use crate::error::Error;
use crate::overload::Criticality;
use crate::policy::{section_at, toml_error};

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
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_config(format!(
                "{}: cannot read the scenario file: {e}",
                path.display()
            ))
        })?;
        read(&path.display().to_string(), &text)
    }

    /// Reads a scenario from TOML text. Errors name the line and the key (the file is
    /// `<from_toml>`). The format is the [module's](self) reference.
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_http::sim::scenario::{Arrivals, FaultKind, Scenario};
    ///
    /// let scenario = Scenario::from_toml(r#"
    ///     name = "Short outage"
    ///     duration = "3m"
    ///
    ///     [load]
    ///     rate = 200
    ///
    ///     [[phase]]
    ///     name = "healthy"
    ///     at = "0s"
    ///     latency = { p50 = "20ms", p99 = "120ms" }
    ///
    ///     [[phase]]
    ///     name = "outage"
    ///     at = "1m"
    ///     faults = [{ status = 503, share = 1.0 }]
    ///
    ///     [[phase]]
    ///     name = "recovery"
    ///     at = "2m"
    /// "#)?;
    /// assert!(matches!(scenario.load.arrivals, Arrivals::Rate(_)));
    /// let outage = &scenario.phases[1];
    /// assert_eq!(outage.latency, scenario.phases[0].latency); // inherited
    /// assert!(matches!(outage.faults[0].kind, FaultKind::Status { status: 503, .. }));
    /// assert!(scenario.phases[2].faults.is_empty()); // faults are not
    ///
    /// let typo = Scenario::from_toml(r#"
    ///     name = "Typo"
    ///     duration = "3m"
    ///     [load]
    ///     rate = 200
    ///     [[phase]]
    ///     name = "healthy"
    ///     at = "0s"
    ///     latency = "20ms"
    ///     faults = [{ status = 503, shares = 0.5 }]
    /// "#).unwrap_err();
    /// assert!(typo.to_string().contains(
    ///     r#"<from_toml>:10: unknown key "shares" in [[phase]] "healthy""#
    /// ));
    /// # Ok::<(), resilient_http::Error>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Scenario, Error> {
        read("<from_toml>", text)
    }
}

// ---- The ranges: every number of a scenario file, in one table (as `bounds` is the policy
// file's). Their maxima keep a run's memory and time bounded: a day of virtual time at a
// million requests a second is already more than a run should be.

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// `duration`: a day at most.
const RUN: Span = Span {
    zero_ok: false,
    max: DAY,
};
/// `sample_every`: 10 ms at least (finer steps only make the series longer), and at most the
/// run's `duration` (checked beside).
const SAMPLE_EVERY: SpanFrom = SpanFrom {
    min: Duration::from_millis(10),
    max: DAY,
};
/// Steps of the time series (`duration / sample_every`): each series holds one value per
/// step, so at most 100,000 (a day at the default 1 s step is 86,400).
const STEPS: u64 = 100_000;
/// `replicas`: clients sharing the dependency.
const REPLICAS: Count = Count { min: 1, max: 1_000 };
/// `rate` (a constant, or each point's `rps`): requests/s, all replicas together.
const RPS: Real = Real {
    min: 0.0,
    min_included: true,
    max: 1_000_000.0,
};
/// Points of a `rate` curve.
const RATE_POINTS: Count = Count {
    min: 1,
    max: 10_000,
};
/// `callers`: closed-loop callers, all replicas together.
const CALLERS: Count = Count {
    min: 1,
    max: 100_000,
};
/// `think`: zero (call again at once) to an hour.
const THINK: Span = Span {
    zero_ok: true,
    max: HOUR,
};
/// Kinds of request in `[[load.mix]]`.
const MIX: Count = Count { min: 0, max: 100 };
/// A request kind's `weight`, relative to the others'.
const WEIGHT: Real = Real {
    min: 0.0,
    min_included: false,
    max: 1_000_000.0,
};
/// Phases of a run.
const PHASES: Count = Count { min: 1, max: 1_000 };
/// A fixed latency, a uniform one's `min` and `max`: zero to an hour.
const LATENCY: Span = Span {
    zero_ok: true,
    max: HOUR,
};
/// A log-normal latency's `p50` and `p99`: above zero (its logarithm is taken).
const LATENCY_PERCENTILE: Span = Span {
    zero_ok: false,
    max: HOUR,
};
/// Faults of one phase.
const FAULTS: Count = Count { min: 0, max: 100 };
/// A fault's `share` of requests (all of a phase's sum to at most 1).
const SHARE: Real = Real {
    min: 0.0,
    min_included: true,
    max: 1.0,
};
/// A fault's `status`, and a capacity's rejection `status`: an error, 4xx or 5xx. Nothing
/// else fails a call: a 1xx is never a final answer (the client waits for the one after
/// it), a 2xx is a success, and a 3xx is an answer too (the caller gets it, nothing retries
/// it), so such a "fault" would succeed.
const STATUS: Count = Count { min: 400, max: 599 };
/// A fault's `retry_after`: whole seconds, as the header says them; zero (retry at once) to
/// a day.
const RETRY_AFTER: Span = Span {
    zero_ok: true,
    max: DAY,
};
/// A slow body's `body_delay`.
const BODY_DELAY: Span = Span {
    zero_ok: false,
    max: HOUR,
};
/// `capacity.concurrency`: requests served at once.
const CONCURRENCY: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `quota.limit`: requests per window, all replicas together.
const QUOTA_LIMIT: Count = Count {
    min: 1,
    max: 1_000_000_000,
};
/// `quota.window`: whole seconds (the headers say seconds), a second to a day.
const QUOTA_WINDOW: SpanFrom = SpanFrom {
    min: Duration::from_secs(1),
    max: DAY,
};

// ---- The file's shape, as serde reads it: types, unknown and missing keys. What serde
// refuses is located from its error's span; what is checked after (ranges, one key against
// another) from the `Spanned` value's.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    duration: Spanned<String>,
    seed: Option<u64>,
    url: Option<Spanned<String>>,
    replicas: Option<Spanned<i64>>,
    sample_every: Option<Spanned<String>>,
    load: Spanned<RawLoad>,
    #[serde(default)]
    phase: Vec<Spanned<RawPhase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    rate: Option<Spanned<RawRate>>,
    callers: Option<Spanned<i64>>,
    think: Option<Spanned<String>>,
    #[serde(default)]
    mix: Vec<Spanned<RawKind>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    weight: Option<Spanned<f64>>,
    #[serde(default)]
    idempotency_key: bool,
    criticality: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: Spanned<String>,
    at: Spanned<String>,
    latency: Option<Spanned<RawLatency>>,
    faults: Option<Vec<Spanned<RawFault>>>,
    capacity: Option<Spanned<RawCapacity>>,
    quota: Option<Spanned<RawQuota>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    status: Option<Spanned<i64>>,
    fault: Option<Spanned<String>>,
    share: Spanned<f64>,
    retry_after: Option<Spanned<String>>,
    body_delay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RateShape {
    Constant(f64),
    Curve(Vec<RawPoint>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    at: String,
    rps: f64,
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum LatencyShape {
    Fixed(String),
    Spread {
        p50: Option<String>,
        p99: Option<String>,
        min: Option<String>,
        max: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum CapacityShape {
    Off(String),
    On {
        concurrency: i64,
        beyond: Option<String>,
        status: Option<i64>,
    },
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum QuotaShape {
    Off(String),
    On {
        limit: i64,
        window: String,
        fields: Option<String>,
    },
}

/// A value of several shapes (serde's untagged enums), refused with the shapes it may take
/// rather than serde's "did not match any variant".
macro_rules! shapes {
    ($($raw:ident($shape:ident): $hint:literal;)*) => {$(
        struct $raw($shape);

        impl<'de> Deserialize<'de> for $raw {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $shape::deserialize(d)
                    .map($raw)
                    .map_err(|_| serde::de::Error::custom($hint))
            }
        }
    )*};
}

shapes! {
    RawRate(RateShape): "write a rate in requests/s (rate = 1000) or a curve \
        (rate = [{ at = \"0s\", rps = 100 }, { at = \"1m\", rps = 1000 }]; keys: at, rps)";
    RawLatency(LatencyShape): "write \"20ms\" (fixed), { p50 = \"20ms\", p99 = \"120ms\" } \
        (log-normal) or { min = \"10ms\", max = \"30ms\" } (uniform)";
    RawCapacity(CapacityShape): "write { concurrency = 200 } (keys: concurrency, beyond = \
        \"queue\" | \"reject\", status), or \"none\" to end the phase before's";
    RawQuota(QuotaShape): "write { limit = 100, window = \"1s\" } (keys: limit, window, \
        fields = \"ietf\" | \"x-ratelimit\" | \"none\"), or \"none\" to end the phase before's";
}

/// Where a scenario's text came from: what its mistakes are reported against.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    /// `file:line: "key": why in [section]`, the line being the one holding byte `at`.
    fn fail(&self, at: usize, key: &str, why: impl std::fmt::Display) -> Error {
        let at = at.min(self.text.len());
        let line = self.text.get(..at).unwrap_or("").matches('\n').count() + 1;
        let section = section_at(self.text, at, "phase");
        Error::invalid_config(format!(
            "{}:{line}: {key:?}: {why} in {section}",
            self.origin
        ))
    }

    fn fail_at<T>(&self, value: &Spanned<T>, key: &str, why: impl std::fmt::Display) -> Error {
        self.fail(value.span().start, key, why)
    }

    fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Duration, Error> {
        parse_duration(value.get_ref()).map_err(|why| self.fail_at(value, key, why))
    }

    fn span(&self, value: &Spanned<String>, key: &str, bound: &Span) -> Result<Duration, Error> {
        let parsed = self.duration(value, key)?;
        bound
            .check(parsed)
            .map_err(|why| self.fail_at(value, key, why))
    }

    fn count(&self, value: &Spanned<i64>, key: &str, bound: &Count) -> Result<u64, Error> {
        let checked = bound
            .check(*value.get_ref())
            .map_err(|why| self.fail_at(value, key, why))?;
        u64::try_from(checked).map_err(|_| self.fail_at(value, key, "must not be negative"))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write e.g. \"250ms\", \"2s\" or \"10m\"")
    })
}

/// Whole seconds, as `Retry-After` and quota headers say them.
fn whole_seconds(value: Duration) -> Result<Duration, String> {
    if value.subsec_nanos() == 0 {
        Ok(value)
    } else {
        Err(format!(
            "must be whole seconds (the header says seconds), got {}",
            humantime::format_duration(value)
        ))
    }
}

fn read(origin: &str, text: &str) -> Result<Scenario, Error> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let mut message = toml_error(origin, text, &e, "phase", |_| None);
        // Say which keys are allowed where one is unknown (serde lists them).
        let unknown = e.message().starts_with("unknown field");
        if let Some((_, allowed)) = e.message().split_once(", expected ").filter(|_| unknown) {
            let allowed = allowed.trim().replace('`', "");
            message.push_str(&format!(
                " (allowed: {})",
                allowed.trim_start_matches("one of ")
            ));
        }
        Error::invalid_config(message)
    })?;
    let src = Source { origin, text };

    let name = raw.name.get_ref().trim().to_owned();
    if name.is_empty() {
        return Err(src.fail_at(&raw.name, "name", "must not be empty"));
    }
    let duration = src.span(&raw.duration, "duration", &RUN)?;
    let url = match &raw.url {
        None => url::Url::parse("http://dependency.sim/")
            .map_err(|e| Error::invalid_config(format!("{origin}: the default url: {e}")))?,
        Some(value) => {
            let url = url::Url::parse(value.get_ref())
                .map_err(|e| src.fail_at(value, "url", format!("not a URL ({e})")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(src.fail_at(
                    value,
                    "url",
                    "must be an http or https URL with a host, e.g. \"https://api.example.com/v1/\"",
                ));
            }
            url
        }
    };
    let replicas = match &raw.replicas {
        None => 1,
        Some(value) => src.count(value, "replicas", &REPLICAS)?,
    };
    let sample_every = match &raw.sample_every {
        None => Duration::from_secs(1).min(duration),
        Some(value) => {
            let step = src.duration(value, "sample_every")?;
            let step = SAMPLE_EVERY
                .check(step)
                .map_err(|why| src.fail_at(value, "sample_every", why))?;
            if step > duration {
                return Err(src.fail_at(
                    value,
                    "sample_every",
                    format!(
                        "must be at most the run's duration ({})",
                        humantime::format_duration(duration)
                    ),
                ));
            }
            let steps = duration.as_nanos().div_ceil(step.as_nanos().max(1));
            if steps > u128::from(STEPS) {
                let least = Duration::from_nanos(
                    u64::try_from(duration.as_nanos().div_ceil(u128::from(STEPS)))
                        .unwrap_or(u64::MAX),
                );
                return Err(src.fail_at(
                    value,
                    "sample_every",
                    format!(
                        "makes {steps} steps over {}, more than {STEPS}: write at least {}",
                        humantime::format_duration(duration),
                        humantime::format_duration(least)
                    ),
                ));
            }
            step
        }
    };
    let load = read_load(&src, &raw.load, &url, duration)?;
    let phases = read_phases(&src, &raw, duration)?;
    Ok(Scenario {
        name,
        description: raw.description.trim().to_owned(),
        duration,
        seed: raw.seed.unwrap_or(1),
        url,
        replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
        sample_every,
        load,
        phases,
    })
}

fn read_load(
    src: &Source<'_>,
    raw: &Spanned<RawLoad>,
    url: &url::Url,
    duration: Duration,
) -> Result<Load, Error> {
    let load = raw.get_ref();
    let arrivals = match (&load.rate, &load.callers) {
        (Some(_), Some(callers)) => {
            return Err(src.fail_at(
                callers,
                "callers",
                "set either rate (open loop) or callers (closed loop), not both",
            ));
        }
        (None, None) => {
            return Err(src.fail_at(
                raw,
                "rate",
                "missing: set rate = <requests/s> (open loop) or callers = <n> (closed loop)",
            ));
        }
        (Some(rate), None) => {
            if let Some(think) = &load.think {
                return Err(src.fail_at(think, "think", "only with callers (closed loop)"));
            }
            Arrivals::Rate(read_rate(src, rate, duration)?)
        }
        (None, Some(callers)) => Arrivals::Callers {
            callers: u32::try_from(src.count(callers, "callers", &CALLERS)?).unwrap_or(u32::MAX),
            think: match &load.think {
                None => Duration::ZERO,
                Some(think) => src.span(think, "think", &THINK)?,
            },
        },
    };
    if let Some(last) = load.mix.get(usize::try_from(MIX.max).unwrap_or(usize::MAX)) {
        return Err(src.fail_at(last, "mix", format!("at most {} kinds", MIX.max)));
    }
    let mut mix = Vec::with_capacity(load.mix.len().max(1));
    for kind in &load.mix {
        mix.push(read_kind(src, kind, url)?);
    }
    if mix.is_empty() {
        mix.push(RequestKind {
            weight: 1.0,
            method: http::Method::GET,
            path: String::new(),
            idempotency_key: false,
            criticality: None,
        });
    }
    Ok(Load { arrivals, mix })
}

fn read_rate(
    src: &Source<'_>,
    raw: &Spanned<RawRate>,
    duration: Duration,
) -> Result<Vec<RatePoint>, Error> {
    match &raw.get_ref().0 {
        RateShape::Constant(value) => {
            let rps = RPS
                .check(*value)
                .map_err(|why| src.fail_at(raw, "rate", why))?;
            Ok(vec![RatePoint {
                at: Duration::ZERO,
                rps,
            }])
        }
        RateShape::Curve(points) => {
            let count = u64::try_from(points.len()).unwrap_or(u64::MAX);
            RATE_POINTS
                .check(count)
                .map_err(|why| src.fail_at(raw, "rate", format!("its points {why}")))?;
            let mut curve: Vec<RatePoint> = Vec::with_capacity(points.len());
            for (n, point) in points.iter().enumerate() {
                // The curve is one value with one span: say which of its points is wrong.
                let fail = |key: &str, why: String| {
                    src.fail_at(
                        raw,
                        key,
                        format!("{why} (the rate curve's point {})", n + 1),
                    )
                };
                let at = parse_duration(&point.at).map_err(|why| fail("at", why))?;
                match curve.last() {
                    None if !at.is_zero() => {
                        return Err(fail("at", "the first point must be at \"0s\"".into()));
                    }
                    Some(before) if at <= before.at => {
                        return Err(fail(
                            "at",
                            format!(
                                "must be after the point before ({}), strictly",
                                humantime::format_duration(before.at)
                            ),
                        ));
                    }
                    _ => {}
                }
                if at >= duration {
                    return Err(fail(
                        "at",
                        format!(
                            "must be before the run's end ({})",
                            humantime::format_duration(duration)
                        ),
                    ));
                }
                let rps = RPS.check(point.rps).map_err(|why| fail("rps", why))?;
                curve.push(RatePoint { at, rps });
            }
            Ok(curve)
        }
    }
}

fn read_kind(
    src: &Source<'_>,
    raw: &Spanned<RawKind>,
    url: &url::Url,
) -> Result<RequestKind, Error> {
    let kind = raw.get_ref();
    let method = match &kind.method {
        None => http::Method::GET,
        Some(value) => standard_method(value.get_ref())
            .ok_or_else(|| src.fail_at(value, "method", unknown_method(value.get_ref())))?,
    };
    let path = match &kind.path {
        None => String::new(),
        Some(value) => {
            let joined = url.join(value.get_ref()).map_err(|e| {
                src.fail_at(value, "path", format!("cannot be joined to the url ({e})"))
            })?;
            if !matches!(joined.scheme(), "http" | "https") {
                return Err(src.fail_at(
                    value,
                    "path",
                    "must stay an http or https URL once joined",
                ));
            }
            value.get_ref().clone()
        }
    };
    let weight = match &kind.weight {
        None => 1.0,
        Some(value) => WEIGHT
            .check(*value.get_ref())
            .map_err(|why| src.fail_at(value, "weight", why))?,
    };
    let criticality = match &kind.criticality {
        None => None,
        Some(value) => Some(
            value
                .get_ref()
                .parse::<Criticality>()
                .map_err(|why| src.fail_at(value, "criticality", why))?,
        ),
    };
    Ok(RequestKind {
        weight,
        method,
        path,
        idempotency_key: kind.idempotency_key,
        criticality,
    })
}

/// The standard methods a mix may use (RFC 9110's and PATCH), in any case.
const METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::CONNECT,
    http::Method::OPTIONS,
    http::Method::TRACE,
    http::Method::PATCH,
];

/// `text` as one of [`METHODS`], whatever its case. Any other method would be sent as a
/// custom one, which no policy treats as idempotent: `"get"` would never be retried.
fn standard_method(text: &str) -> Option<http::Method> {
    METHODS
        .iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(text))
        .cloned()
}

fn unknown_method(text: &str) -> String {
    let allowed: Vec<&str> = METHODS.iter().map(http::Method::as_str).collect();
    format!(
        "{text:?} is not a standard HTTP method; write one of {} (in any case)",
        allowed.join(", ")
    )
}

fn read_phases(
    src: &Source<'_>,
    raw: &RawScenario,
    duration: Duration,
) -> Result<Vec<Phase>, Error> {
    let count = u64::try_from(raw.phase.len()).unwrap_or(u64::MAX);
    if let Err(why) = PHASES.check(count) {
        let at = raw.phase.last().map_or(0, |p| p.span().start);
        return Err(src.fail(at, "phase", format!("[[phase]] tables {why}")));
    }
    let mut phases: Vec<Phase> = Vec::with_capacity(raw.phase.len());
    for spanned in &raw.phase {
        let phase = spanned.get_ref();
        let name = phase.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(src.fail_at(&phase.name, "name", "must not be empty"));
        }
        if phases.iter().any(|p| p.name == name) {
            return Err(src.fail_at(&phase.name, "name", "another phase has this name"));
        }
        let at = src.duration(&phase.at, "at")?;
        let before = phases.last();
        match before {
            None if !at.is_zero() => {
                return Err(src.fail_at(&phase.at, "at", "the first phase must be at \"0s\""));
            }
            Some(before) if at <= before.at => {
                return Err(src.fail_at(
                    &phase.at,
                    "at",
                    format!(
                        "must be after the phase before ({:?} at {})",
                        before.name,
                        humantime::format_duration(before.at)
                    ),
                ));
            }
            _ => {}
        }
        if at >= duration {
            return Err(src.fail_at(
                &phase.at,
                "at",
                format!(
                    "must be before the run's end ({})",
                    humantime::format_duration(duration)
                ),
            ));
        }
        let latency = match (&phase.latency, before) {
            (Some(latency), _) => read_latency(src, latency)?,
            (None, Some(before)) => before.latency,
            (None, None) => {
                return Err(src.fail_at(
                    spanned,
                    "latency",
                    "missing: the first phase must set it (later ones take the phase before's)",
                ));
            }
        };
        let capacity = match &phase.capacity {
            Some(capacity) => read_capacity(src, capacity)?,
            None => before.and_then(|b| b.capacity),
        };
        let quota = match &phase.quota {
            Some(quota) => read_quota(src, quota)?,
            None => before.and_then(|b| b.quota),
        };
        let faults = match &phase.faults {
            None => Vec::new(),
            Some(faults) => read_faults(src, spanned, faults)?,
        };
        phases.push(Phase {
            name,
            at,
            latency,
            faults,
            capacity,
            quota,
        });
    }
    Ok(phases)
}

fn read_latency(src: &Source<'_>, raw: &Spanned<RawLatency>) -> Result<Latency, Error> {
    let of = |text: &str, key: &str, bound: &Span| {
        parse_duration(text)
            .and_then(|value| bound.check(value))
            .map_err(|why| src.fail_at(raw, key, why))
    };
    let missing =
        |key: &str, with: &str| src.fail_at(raw, key, format!("missing: set it with {with}"));
    match &raw.get_ref().0 {
        LatencyShape::Fixed(text) => Ok(Latency::Fixed(of(text, "latency", &LATENCY)?)),
        LatencyShape::Spread { p50, p99, min, max } => match (p50, p99, min, max) {
            (Some(p50), Some(p99), None, None) => {
                let p50 = of(p50, "p50", &LATENCY_PERCENTILE)?;
                let p99 = of(p99, "p99", &LATENCY_PERCENTILE)?;
                if p99 < p50 {
                    return Err(src.fail_at(raw, "p99", "must be at least p50"));
                }
                Ok(Latency::LogNormal { p50, p99 })
            }
            (None, None, Some(min), Some(max)) => {
                let min = of(min, "min", &LATENCY)?;
                let max = of(max, "max", &LATENCY)?;
                if max < min {
                    return Err(src.fail_at(raw, "max", "must be at least min"));
                }
                Ok(Latency::Uniform { min, max })
            }
            (Some(_), None, None, None) => Err(missing("p99", "p50 (log-normal)")),
            (None, Some(_), None, None) => Err(missing("p50", "p99 (log-normal)")),
            (None, None, Some(_), None) => Err(missing("max", "min (uniform)")),
            (None, None, None, Some(_)) => Err(missing("min", "max (uniform)")),
            _ => Err(src.fail_at(
                raw,
                "latency",
                "write either { p50, p99 } (log-normal) or { min, max } (uniform)",
            )),
        },
    }
}

fn read_capacity(src: &Source<'_>, raw: &Spanned<RawCapacity>) -> Result<Option<Capacity>, Error> {
    match &raw.get_ref().0 {
        CapacityShape::Off(text) if text == "none" => Ok(None),
        CapacityShape::Off(text) => Err(src.fail_at(
            raw,
            "capacity",
            format!("{text:?}: write \"none\" (no limit), or {{ concurrency = 200 }}"),
        )),
        CapacityShape::On {
            concurrency,
            beyond,
            status,
        } => {
            let concurrency = CONCURRENCY
                .check(*concurrency)
                .map_err(|why| src.fail_at(raw, "concurrency", why))?;
            let beyond = match (beyond.as_deref(), status) {
                (None | Some("queue"), None) => Beyond::Queue,
                (None | Some("queue"), Some(_)) => {
                    return Err(src.fail_at(raw, "status", "only with beyond = \"reject\""));
                }
                (Some("reject"), status) => Beyond::Reject {
                    status: match status {
                        None => 503,
                        Some(status) => {
                            fault_status(*status).map_err(|why| src.fail_at(raw, "status", why))?
                        }
                    },
                },
                (Some(other), _) => {
                    return Err(src.fail_at(
                        raw,
                        "beyond",
                        format!("{other:?}: write \"queue\" (latency grows) or \"reject\""),
                    ));
                }
            };
            Ok(Some(Capacity {
                concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX),
                beyond,
            }))
        }
    }
}

/// An error status ([`STATUS`]): a fault's, or a rejection's.
fn fault_status(status: i64) -> Result<u16, String> {
    let checked = STATUS.check(status).map_err(|range| {
        let why = match status {
            100..=199 => "a 1xx is not a final answer",
            200..=299 => "a 2xx is a success",
            300..=399 => "a 3xx is an answer, not a failure",
            _ => return range,
        };
        format!(
            "{status} does not fail a call ({why}): write an error status, {} to {} (e.g. 503)",
            STATUS.min, STATUS.max
        )
    })?;
    u16::try_from(checked).map_err(|_| format!("{status} is out of range"))
}

fn read_quota(src: &Source<'_>, raw: &Spanned<RawQuota>) -> Result<Option<Quota>, Error> {
    match &raw.get_ref().0 {
        QuotaShape::Off(text) if text == "none" => Ok(None),
        QuotaShape::Off(text) => Err(src.fail_at(
            raw,
            "quota",
            format!("{text:?}: write \"none\" (no quota), or {{ limit = 100, window = \"1s\" }}"),
        )),
        QuotaShape::On {
            limit,
            window,
            fields,
        } => {
            let limit = QUOTA_LIMIT
                .check(*limit)
                .map_err(|why| src.fail_at(raw, "limit", why))?;
            let window = parse_duration(window)
                .and_then(|w| QUOTA_WINDOW.check(w))
                .and_then(whole_seconds)
                .map_err(|why| src.fail_at(raw, "window", why))?;
            let fields = match fields.as_deref() {
                None | Some("ietf") => QuotaFields::Ietf,
                Some("x-ratelimit") => QuotaFields::XRateLimit,
                Some("none") => QuotaFields::None,
                Some(other) => {
                    return Err(src.fail_at(
                        raw,
                        "fields",
                        format!("{other:?}: write \"ietf\", \"x-ratelimit\" or \"none\""),
                    ));
                }
            };
            Ok(Some(Quota {
                limit: u64::try_from(limit).unwrap_or(u64::MAX),
                window,
                fields,
            }))
        }
    }
}

fn read_faults(
    src: &Source<'_>,
    phase: &Spanned<RawPhase>,
    raw: &[Spanned<RawFault>],
) -> Result<Vec<Fault>, Error> {
    let count = u64::try_from(raw.len()).unwrap_or(u64::MAX);
    FAULTS
        .check(count)
        .map_err(|why| src.fail_at(phase, "faults", format!("its entries {why}")))?;
    let mut faults = Vec::with_capacity(raw.len());
    let mut total = 0.0;
    for spanned in raw {
        let fault = spanned.get_ref();
        let share = SHARE
            .check(*fault.share.get_ref())
            .map_err(|why| src.fail_at(&fault.share, "share", why))?;
        total += share;
        if total > 1.0 + 1e-9 {
            return Err(src.fail_at(
                &fault.share,
                "share",
                format!("the phase's shares sum to {total:.3}, more than 1"),
            ));
        }
        let kind = match (&fault.status, &fault.fault) {
            (Some(_), Some(what)) => {
                return Err(src.fail_at(what, "fault", "set either status or fault, not both"))
            }
            (None, None) => {
                return Err(src.fail_at(
                    spanned,
                    "status",
                    "missing: set status = 503 (an answer) or fault = \"reset\" | \"refused\" | \"hang\" | \"slow_body\"",
                ))
            }
            (Some(status), None) => {
                let code = fault_status(*status.get_ref()).map_err(|why| src.fail_at(status, "status", why))?;
                let retry_after = match &fault.retry_after {
                    None => None,
                    Some(_) if !matches!(code, 429 | 503) => {
                        return Err(src.fail_at(
                            status,
                            "retry_after",
                            "only with status 429 or 503 (the statuses Retry-After goes with)",
                        ))
                    }
                    Some(value) => Some(
                        src.span(value, "retry_after", &RETRY_AFTER)
                            .and_then(|v| whole_seconds(v).map_err(|why| src.fail_at(value, "retry_after", why)))?,
                    ),
                };
                FaultKind::Status {
                    status: code,
                    retry_after,
                }
            }
            (None, Some(what)) => {
                if let Some(value) = &fault.retry_after {
                    return Err(src.fail_at(value, "retry_after", "only with status 429 or 503"));
                }
                match what.get_ref().as_str() {
                    "reset" => FaultKind::Reset,
                    "refused" => FaultKind::Refused,
                    "hang" => FaultKind::Hang,
                    "slow_body" => FaultKind::SlowBody {
                        body_delay: match &fault.body_delay {
                            Some(value) => src.span(value, "body_delay", &BODY_DELAY)?,
                            None => {
                                return Err(src.fail_at(
                                    what,
                                    "body_delay",
                                    "missing: a slow_body fault needs it, e.g. body_delay = \"5s\"",
                                ))
                            }
                        },
                    },
                    other => {
                        return Err(src.fail_at(
                            what,
                            "fault",
                            format!("{other:?}: write \"reset\", \"refused\", \"hang\" or \"slow_body\" (or status = 503 for an answer)"),
                        ))
                    }
                }
            }
        };
        if let (Some(value), false) = (
            &fault.body_delay,
            matches!(kind, FaultKind::SlowBody { .. }),
        ) {
            return Err(src.fail_at(value, "body_delay", "only with fault = \"slow_body\""));
        }
        faults.push(Fault { kind, share });
    }
    Ok(faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "minimal"
duration = "1m"

[load]
rate = 10

[[phase]]
name = "only"
at = "0s"
latency = "20ms"
"#;

    fn refused(text: &str) -> String {
        match Scenario::from_toml(text) {
            Ok(scenario) => format!("accepted: {scenario:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `text` is refused naming `line`, and with a message containing each of `want`; if
    /// not, says so in `bad`.
    fn check(bad: &mut Vec<String>, text: &str, line: usize, want: &[&str]) {
        let message = refused(text);
        let at = format!("<from_toml>:{line}: ");
        for want in std::iter::once(at.as_str()).chain(want.iter().copied()) {
            if !message.contains(want) {
                bad.push(format!("want {want:?} in {message}"));
            }
        }
    }

    /// MINIMAL with `old` replaced by `new`.
    fn with(old: &str, new: &str) -> String {
        assert!(MINIMAL.contains(old), "{old:?}");
        MINIMAL.replacen(old, new, 1)
    }

    #[test]
    fn defaults() -> Result<(), Error> {
        let s = Scenario::from_toml(MINIMAL)?;
        assert_eq!(s.name, "minimal");
        assert_eq!(s.description, "");
        assert_eq!(s.duration, Duration::from_secs(60));
        assert_eq!(s.seed, 1);
        assert_eq!(s.url.as_str(), "http://dependency.sim/");
        assert_eq!(s.replicas, 1);
        assert_eq!(s.sample_every, Duration::from_secs(1));
        assert_eq!(
            s.load.arrivals,
            Arrivals::Rate(vec![RatePoint {
                at: Duration::ZERO,
                rps: 10.0
            }])
        );
        assert_eq!(
            s.load.mix,
            vec![RequestKind {
                weight: 1.0,
                method: http::Method::GET,
                path: String::new(),
                idempotency_key: false,
                criticality: None,
            }]
        );
        assert_eq!(s.phases.len(), 1);
        let phase = &s.phases[0];
        assert_eq!(phase.latency, Latency::Fixed(Duration::from_millis(20)));
        assert!(phase.faults.is_empty() && phase.capacity.is_none() && phase.quota.is_none());
        Ok(())
    }

    #[test]
    fn every_key_is_read() -> Result<(), Error> {
        let s = Scenario::from_toml(
            r#"
name = "all"
description = "every key"
duration = "10m"
seed = 7
url = "https://api.example.com/v1/"
replicas = 3
sample_every = "500ms"

[load]
rate = [{ at = "0s", rps = 100 }, { at = "1m", rps = 1000.5 }]

[[load.mix]]
method = "POST"
path = "orders"
weight = 2.5
idempotency_key = true
criticality = "sheddable"

[[load.mix]]

[[phase]]
name = "healthy"
at = "0s"
latency = { p50 = "20ms", p99 = "120ms" }
capacity = { concurrency = 200, beyond = "reject", status = 429 }
quota = { limit = 100, window = "1m", fields = "x-ratelimit" }

[[phase]]
name = "outage"
at = "2m"
latency = { min = "10ms", max = "30ms" }
capacity = { concurrency = 5 }
quota = { limit = 7, window = "2s", fields = "none" }
faults = [
  { status = 503, share = 0.5 },
  { status = 429, share = 0.1, retry_after = "2s" },
  { fault = "reset", share = 0.1 },
  { fault = "refused", share = 0.1 },
  { fault = "hang", share = 0.1 },
  { fault = "slow_body", share = 0.1, body_delay = "5s" },
]
"#,
        )?;
        assert_eq!(s.description, "every key");
        assert_eq!(s.seed, 7);
        assert_eq!(s.url.as_str(), "https://api.example.com/v1/");
        assert_eq!(s.replicas, 3);
        assert_eq!(s.sample_every, Duration::from_millis(500));
        let Arrivals::Rate(curve) = &s.load.arrivals else {
            return Err(Error::invalid_config("not a rate"));
        };
        assert_eq!(curve.len(), 2);
        assert_eq!(curve[1].at, Duration::from_secs(60));
        assert_eq!(curve[1].rps, 1000.5);
        let post = &s.load.mix[0];
        assert_eq!(post.method, http::Method::POST);
        assert_eq!(post.path, "orders");
        assert_eq!(post.weight, 2.5);
        assert!(post.idempotency_key);
        assert_eq!(post.criticality, Some(Criticality::Sheddable));
        assert_eq!(s.load.mix[1].method, http::Method::GET);
        let (healthy, outage) = (&s.phases[0], &s.phases[1]);
        assert_eq!(
            healthy.latency,
            Latency::LogNormal {
                p50: Duration::from_millis(20),
                p99: Duration::from_millis(120)
            }
        );
        assert_eq!(
            healthy.capacity,
            Some(Capacity {
                concurrency: 200,
                beyond: Beyond::Reject { status: 429 }
            })
        );
        assert_eq!(
            healthy.quota,
            Some(Quota {
                limit: 100,
                window: Duration::from_secs(60),
                fields: QuotaFields::XRateLimit
            })
        );
        assert_eq!(outage.at, Duration::from_secs(120));
        assert_eq!(
            outage.latency,
            Latency::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_millis(30)
            }
        );
        assert_eq!(
            outage.capacity,
            Some(Capacity {
                concurrency: 5,
                beyond: Beyond::Queue
            })
        );
        assert_eq!(outage.quota.map(|q| q.fields), Some(QuotaFields::None));
        let kinds: Vec<FaultKind> = outage.faults.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![
                FaultKind::Status {
                    status: 503,
                    retry_after: None
                },
                FaultKind::Status {
                    status: 429,
                    retry_after: Some(Duration::from_secs(2))
                },
                FaultKind::Reset,
                FaultKind::Refused,
                FaultKind::Hang,
                FaultKind::SlowBody {
                    body_delay: Duration::from_secs(5)
                },
            ]
        );
        assert_eq!(outage.faults[0].share, 0.5);
        Ok(())
    }

    #[test]
    fn closed_loop() -> Result<(), Error> {
        let s = Scenario::from_toml(&with("rate = 10", "callers = 64\nthink = \"5ms\""))?;
        assert_eq!(
            s.load.arrivals,
            Arrivals::Callers {
                callers: 64,
                think: Duration::from_millis(5)
            }
        );
        let s = Scenario::from_toml(&with("rate = 10", "callers = 2"))?;
        assert_eq!(
            s.load.arrivals,
            Arrivals::Callers {
                callers: 2,
                think: Duration::ZERO
            }
        );
        Ok(())
    }

    #[test]
    fn phases_inherit_latency_capacity_and_quota_but_not_faults() -> Result<(), Error> {
        let s = Scenario::from_toml(
            r#"
name = "inherit"
duration = "10m"
[load]
rate = 1
[[phase]]
name = "a"
at = "0s"
latency = "5ms"
capacity = { concurrency = 9 }
quota = { limit = 3, window = "1s" }
faults = [{ status = 500, share = 0.5 }]
[[phase]]
name = "b"
at = "1m"
[[phase]]
name = "c"
at = "2m"
capacity = "none"
quota = "none"
latency = "7ms"
[[phase]]
name = "d"
at = "3m"
"#,
        )?;
        let [a, b, c, d] = &s.phases[..] else {
            return Err(Error::invalid_config("not 4 phases"));
        };
        assert_eq!(a.faults.len(), 1);
        assert!(b.faults.is_empty(), "faults are not inherited");
        assert_eq!(b.latency, a.latency);
        assert_eq!(b.capacity, a.capacity);
        assert_eq!(b.quota, a.quota);
        assert_eq!(a.quota.map(|q| q.fields), Some(QuotaFields::Ietf));
        assert_eq!(c.latency, Latency::Fixed(Duration::from_millis(7)));
        assert!(c.capacity.is_none() && c.quota.is_none());
        assert!(d.capacity.is_none() && d.quota.is_none());
        assert_eq!(d.latency, c.latency);
        Ok(())
    }

    /// Each mistake names its line, its key and the fix; lines are MINIMAL's (name on 2,
    /// duration 3, [load] 5, rate 6, [[phase]] 8, name 9, at 10, latency 11).
    #[test]
    fn every_mistake_names_its_line_and_key() {
        let mut bad = Vec::new();
        // serde's own refusals.
        check(
            &mut bad,
            &with("duration = \"1m\"", "duration = \"1m\"\nretries = 3"),
            4,
            &[
                "unknown key \"retries\"",
                "allowed: name, description, duration",
            ],
        );
        check(
            &mut bad,
            &with("latency = \"20ms\"", "latency = \"20ms\"\nlatncy = 1"),
            12,
            &[
                "unknown key \"latncy\"",
                "in [[phase]] \"only\"",
                "allowed:",
            ],
        );
        check(
            &mut bad,
            &with("name = \"minimal\"\n", ""),
            1,
            &["missing key \"name\""],
        );
        check(
            &mut bad,
            &with("latency = \"20ms\"", "latency = 20"),
            11,
            &["\"latency\"", "p50"],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = \"fast\""),
            6,
            &["\"rate\"", "requests/s"],
        );
        // Ranges and values.
        check(
            &mut bad,
            &with("\"1m\"", "\"25h\""),
            3,
            &["\"duration\"", "at most"],
        );
        check(
            &mut bad,
            &with("\"1m\"\n", "\"24h\"\nsample_every = \"10ms\"\n"),
            4,
            &["\"sample_every\"", "more than 100000", "at least 864ms"],
        );
        check(
            &mut bad,
            &with("\"1m\"", "5"),
            3,
            &["\"duration\"", "expected a string"],
        );
        assert!(!refused(&with("\"1m\"", "5")).contains("allowed"));
        check(
            &mut bad,
            &with("\"1m\"", "\"soon\""),
            3,
            &["\"duration\"", "invalid duration"],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = -1"),
            6,
            &["\"rate\"", "at least 0"],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = 2000000"),
            6,
            &["\"rate\"", "at most"],
        );
        check(&mut bad, &with("rate = 10", "rate = nan"), 6, &["\"rate\""]);
        check(
            &mut bad,
            &with("rate = 10", "callers = 0"),
            6,
            &["\"callers\"", "at least 1"],
        );
        check(
            &mut bad,
            &with("rate = 10", "callers = 100001"),
            6,
            &["\"callers\""],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = 1\ncallers = 2"),
            7,
            &["not both"],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = 1\nthink = \"1s\""),
            7,
            &["\"think\"", "callers"],
        );
        check(
            &mut bad,
            &with("rate = 10\n", ""),
            5,
            &["\"rate\"", "callers"],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = [{ at = \"1s\", rps = 1 }]"),
            6,
            &["\"at\"", "first point", "point 1)"],
        );
        check(
            &mut bad,
            &with(
                "rate = 10",
                "rate = [{ at = \"0s\", rps = 1 }, { at = \"0s\", rps = 2 }]",
            ),
            6,
            &["\"at\"", "after the point before", "point 2)"],
        );
        check(
            &mut bad,
            &with(
                "rate = 10",
                "rate = [{ at = \"0s\", rps = 1 }, { at = \"2m\", rps = 2 }]",
            ),
            6,
            &["\"at\"", "run's end", "point 2)"],
        );
        check(
            &mut bad,
            &with("rate = 10", "rate = [{ at = \"0s\", rps = -3 }]"),
            6,
            &["\"rps\"", "at least 0", "point 1)"],
        );
        let top = "duration = \"1m\"\n";
        check(
            &mut bad,
            &with(top, "duration = \"1m\"\nreplicas = 1001\n"),
            4,
            &["\"replicas\""],
        );
        check(
            &mut bad,
            &with(top, "duration = \"1m\"\nreplicas = 0\n"),
            4,
            &["\"replicas\""],
        );
        check(
            &mut bad,
            &with(top, "duration = \"1m\"\nsample_every = \"5ms\"\n"),
            4,
            &["at least 10ms"],
        );
        check(
            &mut bad,
            &with(top, "duration = \"1m\"\nsample_every = \"2m\"\n"),
            4,
            &["run's duration"],
        );
        check(
            &mut bad,
            &with(top, "duration = \"1m\"\nurl = \"ftp://x/\"\n"),
            4,
            &["\"url\"", "http"],
        );
        check(
            &mut bad,
            &with(top, "duration = \"1m\"\nurl = \"nope\"\n"),
            4,
            &["\"url\"", "not a URL"],
        );
        check(
            &mut bad,
            &with("name = \"minimal\"", "name = \" \""),
            2,
            &["\"name\"", "empty"],
        );
        // The mix.
        let mix = |line: &str| with("rate = 10\n", &format!("rate = 10\n[[load.mix]]\n{line}\n"));
        check(
            &mut bad,
            &mix("method = \"G T\""),
            8,
            &["\"method\"", "in [[load.mix]]"],
        );
        check(&mut bad, &mix("weight = 0"), 8, &["\"weight\"", "above 0"]);
        check(
            &mut bad,
            &mix("criticality = \"vital\""),
            8,
            &["\"criticality\"", "sheddable"],
        );
        check(&mut bad, &mix("path = \"ftp://x/\""), 8, &["\"path\""]);
        check(
            &mut bad,
            &mix("verb = \"GET\""),
            8,
            &["unknown key \"verb\"", "allowed: method"],
        );
        // Phases.
        check(
            &mut bad,
            &with("at = \"0s\"", "at = \"1s\""),
            10,
            &["\"at\"", "first phase", "in [[phase]] \"only\""],
        );
        check(
            &mut bad,
            &with(
                "latency = \"20ms\"",
                "latency = \"20ms\"\n[[phase]]\nname = \"b\"\nat = \"0s\"",
            ),
            14,
            &["\"at\"", "after the phase before", "in [[phase]] \"b\""],
        );
        check(
            &mut bad,
            &with(
                "latency = \"20ms\"",
                "latency = \"20ms\"\n[[phase]]\nname = \"b\"\nat = \"1m\"",
            ),
            14,
            &["\"at\"", "run's end"],
        );
        check(
            &mut bad,
            &with(
                "latency = \"20ms\"",
                "latency = \"20ms\"\n[[phase]]\nname = \"only\"\nat = \"1s\"",
            ),
            13,
            &["\"name\"", "another phase"],
        );
        check(
            &mut bad,
            &with("latency = \"20ms\"\n", ""),
            8,
            &["\"latency\"", "first phase must set it"],
        );
        check(
            &mut bad,
            &with(
                "[[phase]]\nname = \"only\"\nat = \"0s\"\nlatency = \"20ms\"\n",
                "",
            ),
            1,
            &["[[phase]]", "at least 1"],
        );
        let latency = |value: &str| with("latency = \"20ms\"", &format!("latency = {value}"));
        check(
            &mut bad,
            &latency("{ p50 = \"20ms\", p99 = \"10ms\" }"),
            11,
            &["\"p99\"", "at least p50"],
        );
        check(
            &mut bad,
            &latency("{ p50 = \"0ms\", p99 = \"10ms\" }"),
            11,
            &["\"p50\"", "above zero"],
        );
        check(
            &mut bad,
            &latency("{ p50 = \"20ms\" }"),
            11,
            &["\"p99\"", "missing"],
        );
        check(
            &mut bad,
            &latency("{ min = \"20ms\", max = \"10ms\" }"),
            11,
            &["\"max\"", "at least min"],
        );
        check(
            &mut bad,
            &latency("{ min = \"20ms\", p99 = \"10ms\" }"),
            11,
            &["either"],
        );
        check(
            &mut bad,
            &latency("{ p50 = \"2ms\", p95 = \"10ms\" }"),
            11,
            &["\"latency\"", "p50"],
        );
        check(
            &mut bad,
            &latency("\"2h\""),
            11,
            &["\"latency\"", "at most"],
        );
        let phase = |line: &str| with("latency = \"20ms\"", &format!("latency = \"20ms\"\n{line}"));
        check(
            &mut bad,
            &phase("capacity = { concurrency = 0 }"),
            12,
            &["\"concurrency\"", "at least 1"],
        );
        check(
            &mut bad,
            &phase("capacity = { concurrency = 1, beyond = \"drop\" }"),
            12,
            &["\"beyond\"", "reject"],
        );
        check(
            &mut bad,
            &phase("capacity = { concurrency = 1, status = 503 }"),
            12,
            &["\"status\"", "reject"],
        );
        check(
            &mut bad,
            &phase("capacity = { concurrency = 1, beyond = \"reject\", status = 200 }"),
            12,
            &["\"status\"", "2xx"],
        );
        check(
            &mut bad,
            &phase("capacity = \"off\""),
            12,
            &["\"capacity\"", "none"],
        );
        check(
            &mut bad,
            &phase("quota = { limit = 0, window = \"1s\" }"),
            12,
            &["\"limit\""],
        );
        check(
            &mut bad,
            &phase("quota = { limit = 1, window = \"1500ms\" }"),
            12,
            &["\"window\"", "whole seconds"],
        );
        check(
            &mut bad,
            &phase("quota = { limit = 1, window = \"1s\", fields = \"draft\" }"),
            12,
            &["\"fields\"", "x-ratelimit"],
        );
        check(
            &mut bad,
            &phase("quota = \"off\""),
            12,
            &["\"quota\"", "none"],
        );
        // Faults: each on its own line, named by it.
        let faults = |entries: &str| {
            phase(&format!(
                "faults = [\n  {{ status = 500, share = 0.1 }},\n  {entries},\n]"
            ))
        };
        check(
            &mut bad,
            &faults("{ status = 503, share = 1.5 }"),
            14,
            &["\"share\"", "at most 1"],
        );
        check(
            &mut bad,
            &faults("{ status = 503, share = 0.95 }"),
            14,
            &["\"share\"", "more than 1"],
        );
        check(
            &mut bad,
            &faults("{ status = 204, share = 0.1 }"),
            14,
            &["\"status\"", "2xx"],
        );
        check(
            &mut bad,
            &faults("{ status = 600, share = 0.1 }"),
            14,
            &["\"status\"", "at most 599"],
        );
        check(
            &mut bad,
            &faults("{ status = 500, share = 0.1, retry_after = \"1s\" }"),
            14,
            &["\"retry_after\"", "429 or 503"],
        );
        check(
            &mut bad,
            &faults("{ status = 429, share = 0.1, retry_after = \"1500ms\" }"),
            14,
            &["\"retry_after\"", "whole seconds"],
        );
        check(
            &mut bad,
            &faults("{ fault = \"hang\", share = 0.1, retry_after = \"1s\" }"),
            14,
            &["\"retry_after\""],
        );
        check(
            &mut bad,
            &faults("{ fault = \"reset\", share = 0.1, body_delay = \"1s\" }"),
            14,
            &["\"body_delay\"", "slow_body"],
        );
        check(
            &mut bad,
            &faults("{ fault = \"slow_body\", share = 0.1 }"),
            14,
            &["\"body_delay\"", "missing"],
        );
        check(
            &mut bad,
            &faults("{ fault = \"slow_body\", share = 0.1, body_delay = \"0s\" }"),
            14,
            &["\"body_delay\"", "above zero"],
        );
        check(
            &mut bad,
            &faults("{ fault = \"explode\", share = 0.1 }"),
            14,
            &["\"fault\"", "hang"],
        );
        check(
            &mut bad,
            &faults("{ fault = \"hang\", status = 503, share = 0.1 }"),
            14,
            &["\"fault\"", "not both"],
        );
        check(
            &mut bad,
            &faults("{ share = 0.1 }"),
            14,
            &["\"status\"", "missing"],
        );
        check(
            &mut bad,
            &faults("{ status = 503 }"),
            14,
            &["missing key \"share\""],
        );
        check(
            &mut bad,
            &faults("{ status = 503, share = 0.1, odds = 1 }"),
            14,
            &["unknown key \"odds\"", "allowed: status, fault, share"],
        );
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// A method is one of the standard ones in any case, read as its upper-case self: `"get"`
    /// is `GET` (idempotent, retried), not a custom method `get` that nothing retries.
    #[test]
    fn methods_are_the_standard_ones_in_any_case() -> Result<(), Error> {
        let mix = |method: &str| {
            with(
                "rate = 10\n",
                &format!("rate = 10\n[[load.mix]]\nmethod = \"{method}\"\n"),
            )
        };
        for (written, read) in [
            ("get", http::Method::GET),
            ("Get", http::Method::GET),
            ("head", http::Method::HEAD),
            ("post", http::Method::POST),
            ("put", http::Method::PUT),
            ("delete", http::Method::DELETE),
            ("connect", http::Method::CONNECT),
            ("options", http::Method::OPTIONS),
            ("trace", http::Method::TRACE),
            ("pAtCh", http::Method::PATCH),
            ("PATCH", http::Method::PATCH),
        ] {
            let s = Scenario::from_toml(&mix(written))?;
            assert_eq!(s.load.mix[0].method, read, "{written}");
        }
        // What it changes: a lowercase GET is retried as a GET is.
        assert!(
            Scenario::from_toml(&mix("get"))?.load.mix[0]
                .method
                .is_idempotent()
        );
        let mut bad = Vec::new();
        for custom in ["FETCH", "purge", "GETS", ""] {
            check(
                &mut bad,
                &mix(custom),
                8,
                &[
                    "\"method\"",
                    "not a standard HTTP method",
                    "GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH",
                    "in [[load.mix]]",
                ],
            );
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        Ok(())
    }

    /// A fault's status, and a rejection's, fail the call: 4xx or 5xx. A 1xx is no final
    /// answer, a 3xx is an answer: neither is a fault (the "fault" would succeed).
    #[test]
    fn statuses_are_errors() -> Result<(), Error> {
        let phase = |line: &str| with("latency = \"20ms\"", &format!("latency = \"20ms\"\n{line}"));
        let mut bad = Vec::new();
        for (status, why) in [
            (100, "1xx"),
            (199, "1xx"),
            (204, "2xx"),
            (301, "3xx"),
            (304, "3xx"),
            (399, "3xx"),
        ] {
            check(
                &mut bad,
                &phase(&format!("faults = [{{ status = {status}, share = 0.5 }}]")),
                12,
                &["\"status\"", why, "400 to 599", "in [[phase]] \"only\""],
            );
            check(
                &mut bad,
                &phase(&format!(
                    "capacity = {{ concurrency = 1, beyond = \"reject\", status = {status} }}"
                )),
                12,
                &["\"status\"", why, "400 to 599", "in [[phase]] \"only\""],
            );
        }
        for status in [99, 600] {
            check(
                &mut bad,
                &phase(&format!("faults = [{{ status = {status}, share = 0.5 }}]")),
                12,
                &["\"status\"", "at least 400", "at most 599"],
            );
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        for status in [400, 404, 429, 500, 599] {
            let s = Scenario::from_toml(&phase(&format!(
                "faults = [{{ status = {status}, share = 0.5 }}]\n\
                 capacity = {{ concurrency = 1, beyond = \"reject\", status = {status} }}"
            )))?;
            let phase = &s.phases[0];
            assert_eq!(
                phase.faults[0].kind,
                FaultKind::Status {
                    status,
                    retry_after: None
                }
            );
            assert_eq!(
                phase.capacity.map(|c| c.beyond),
                Some(Beyond::Reject { status })
            );
        }
        Ok(())
    }

    #[test]
    fn a_file_is_named_in_its_errors() {
        let path = std::env::temp_dir().join(format!("scenario-{}.toml", std::process::id()));
        let written = std::fs::write(&path, with("rate = 10", "rate = -1"));
        assert!(written.is_ok());
        let message = Scenario::from_file(&path).map_or_else(|e| e.to_string(), |_| String::new());
        let _ = std::fs::remove_file(&path);
        assert!(
            message.contains(&format!("{}:6: \"rate\"", path.display())),
            "{message}"
        );
        let missing = Scenario::from_file("no/such/scenario.toml")
            .map_or_else(|e| e.to_string(), |_| String::new());
        assert!(
            missing.contains("no/such/scenario.toml: cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn the_examples_load() -> Result<(), Error> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
        for name in [
            "outage",
            "brownout",
            "quota-squeeze",
            "retry-storm",
            "slow-hedging",
        ] {
            let s = Scenario::from_file(dir.join(format!("{name}.toml")))?;
            assert!(!s.description.is_empty(), "{name}");
            assert!(s.phases.len() >= 2, "{name}");
        }
        let outage = Scenario::from_file(dir.join("outage.toml"))?;
        assert_eq!(outage.duration, Duration::from_secs(600));
        assert_eq!(outage.phases.len(), 3);
        let storm = Scenario::from_file(dir.join("retry-storm.toml"))?;
        assert_eq!(storm.replicas, 20);
        Ok(())
    }

    #[test]
    fn the_example_policies_load() -> Result<(), Error> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/policies");
        for name in [
            "default",
            "no-budget",
            "hedging",
            "ignore-quota",
            "adaptive",
        ] {
            crate::Client::builder()
                .config_file(dir.join(format!("{name}.toml")))
                .build()?;
        }
        Ok(())
    }

    proptest::proptest! {
        /// Any text, however broken: an error or a scenario, never a panic.
        #[test]
        fn never_panics(text in "[a-z_\\[\\]{}=\",.0-9 \n#-]{0,300}") {
            let _ = Scenario::from_toml(&text);
        }

        /// Scenario-shaped files: each key present or not, its value mostly a good one and
        /// sometimes an edge case (zero, negative, huge, NaN, the wrong type, the wrong
        /// shape), so that many files get past serde into every check, and some all the
        /// way: an error or a scenario, never a panic.
        #[test]
        fn never_panics_on_scenario_shaped_files(
            top in lines(TOP),
            load in lines(LOAD),
            mix in proptest::collection::vec(lines(MIX_KEYS), 0..3),
            phases in proptest::collection::vec((lines(PHASE_KEYS), proptest::bool::weighted(0.9)), 0..4),
        ) {
            let mut text = top.join("\n");
            text.push_str("\n[load]\n");
            text.push_str(&load.join("\n"));
            for kind in mix {
                text.push_str("\n[[load.mix]]\n");
                text.push_str(&kind.join("\n"));
            }
            for (i, (phase, in_order)) in phases.into_iter().enumerate() {
                // In order mostly (`at` strictly increasing from 0, names unique).
                let at = if in_order { i * 10 } else { 5 };
                text.push_str(&format!("\n[[phase]]\nname = \"p{i}\"\nat = \"{at}s\"\n"));
                text.push_str(&phase.join("\n"));
            }
            let _ = Scenario::from_toml(&text);
        }
    }

    /// A key: how often it is there, its good values, its bad ones.
    type Key = (
        &'static str,
        f64,
        &'static [&'static str],
        &'static [&'static str],
    );

    const BAD_DURATIONS: &[&str] = &[
        "\"0s\"",
        "\"1ns\"",
        "\"25h\"",
        "\"584942417355y\"",
        "\"\"",
        "\"soon\"",
        "-1",
        "1e308",
        "nan",
    ];
    const BAD_NUMBERS: &[&str] = &[
        "0",
        "-1",
        "0.5",
        "1000001",
        "9223372036854775807",
        "-9223372036854775808",
        "inf",
        "-inf",
        "nan",
        "1e-320",
        "\"1\"",
        "true",
    ];
    const TOP: &[Key] = &[
        ("name", 0.95, &["\"n\""], &["\"\"", "\" \"", "1"]),
        (
            "duration",
            0.95,
            &["\"10m\"", "\"1h\"", "\"24h\""],
            BAD_DURATIONS,
        ),
        ("seed", 0.5, &["0", "7"], BAD_NUMBERS),
        (
            "url",
            0.5,
            &["\"http://x/\"", "\"https://a.b/v1/\""],
            &["\"ftp://x/\"", "\"x\"", "\"http://\"", "\"file:///\""],
        ),
        ("replicas", 0.5, &["1", "20", "1000"], BAD_NUMBERS),
        (
            "sample_every",
            0.5,
            &["\"1s\"", "\"10ms\"", "\"1m\""],
            BAD_DURATIONS,
        ),
        ("description", 0.5, &["\"d\""], &["2"]),
    ];
    const LOAD: &[Key] = &[
        (
            "rate",
            0.7,
            &[
                "1000",
                "0",
                "1e6",
                "[{ at = \"0s\", rps = 1 }, { at = \"30s\", rps = 1e6 }]",
            ],
            &[
                "-1",
                "nan",
                "inf",
                "1e9",
                "\"fast\"",
                "[]",
                "[{ at = \"0s\", rps = 1 }, { at = \"0s\", rps = 2 }]",
                "[{ at = \"1s\", rps = nan }]",
                "[{ at = \"0s\", rps = 1, x = 2 }]",
                "[{ at = 0, rps = 1 }]",
            ],
        ),
        ("callers", 0.3, &["64", "100000"], BAD_NUMBERS),
        ("think", 0.2, &["\"0s\"", "\"10ms\""], BAD_DURATIONS),
    ];
    const MIX_KEYS: &[Key] = &[
        (
            "method",
            0.5,
            &["\"POST\"", "\"GET\""],
            &["\"\"", "\"G T\"", "1"],
        ),
        (
            "path",
            0.5,
            &["\"orders\"", "\"\"", "\"../../..\""],
            &["\"//h/x\"", "\"ftp://x/\"", "\"%zz\"", "\"http://[\""],
        ),
        ("weight", 0.5, &["1", "0.2", "1e6"], BAD_NUMBERS),
        ("idempotency_key", 0.5, &["true", "false"], &["1"]),
        (
            "criticality",
            0.5,
            &["\"critical\"", "\"sheddable\""],
            &["\"vital\"", "0"],
        ),
    ];
    const PHASE_KEYS: &[Key] = &[
        (
            "latency",
            0.7,
            &[
                "\"20ms\"",
                "\"0s\"",
                "{ p50 = \"20ms\", p99 = \"120ms\" }",
                "{ min = \"0s\", max = \"1h\" }",
            ],
            &[
                "\"2h\"",
                "{ p50 = \"0s\", p99 = \"0s\" }",
                "{ p50 = \"1h\", p99 = \"1ns\" }",
                "{ min = \"2s\", max = \"1s\" }",
                "{ p50 = \"1s\" }",
                "{ max = \"1s\" }",
                "{ p50 = \"1s\", min = \"1s\" }",
                "{}",
                "5",
            ],
        ),
        (
            "capacity",
            0.5,
            &[
                "\"none\"",
                "{ concurrency = 200 }",
                "{ concurrency = 1, beyond = \"reject\" }",
                "{ concurrency = 1, beyond = \"reject\", status = 429 }",
            ],
            &[
                "\"off\"",
                "{ concurrency = 0 }",
                "{ concurrency = -5 }",
                "{ concurrency = 1, beyond = \"reject\", status = 99999 }",
                "{ concurrency = 1, status = 503 }",
                "{ concurrency = 1, beyond = 1 }",
                "{}",
            ],
        ),
        (
            "quota",
            0.5,
            &[
                "\"none\"",
                "{ limit = 100, window = \"1s\" }",
                "{ limit = 1, window = \"1m\", fields = \"x-ratelimit\" }",
            ],
            &[
                "{ limit = 0, window = \"1s\" }",
                "{ limit = 1, window = \"0s\" }",
                "{ limit = 1, window = \"1500ms\" }",
                "{ limit = 1, window = \"1s\", fields = \"?\" }",
                "{ limit = 1 }",
            ],
        ),
        (
            "faults",
            0.6,
            &[
                "[]",
                "[{ status = 503, share = 1.0 }]",
                "[{ status = 429, share = 0.1, retry_after = \"2s\" }, { fault = \"slow_body\", share = 0.1, body_delay = \"5s\" }]",
                "[{ fault = \"reset\", share = 0.1 }, { fault = \"hang\", share = 0.1 }, { fault = \"refused\", share = 0.1 }]",
            ],
            &[
                "[{ status = 503, share = 0.7 }, { status = 429, share = 0.7 }]",
                "[{ status = 500, share = nan }]",
                "[{ status = 204, share = 0.1 }]",
                "[{ fault = \"hang\", share = 0.1, retry_after = \"1s\" }]",
                "[{ fault = \"slow_body\", share = 0.1 }]",
                "[{ fault = \"reset\", status = 503, share = 0.1 }]",
                "[{ share = 0.1 }]",
                "[{ fault = \"?\", share = -0.1 }]",
                "[{ status = 503, share = 0.1, retry_after = \"-1s\" }]",
            ],
        ),
    ];

    /// Lines `key = value` for some of `keys`, each value good 9 times in 10.
    fn lines(keys: &'static [Key]) -> impl proptest::strategy::Strategy<Value = Vec<String>> {
        use proptest::strategy::Strategy;
        let each: Vec<_> = keys
            .iter()
            .map(|&(key, there, good, bad)| {
                let value = proptest::prop_oneof![
                    9 => proptest::sample::select(good),
                    1 => proptest::sample::select(bad),
                ];
                proptest::option::weighted(there, value)
                    .prop_map(move |value| value.map(|v| format!("{key} = {v}")))
            })
            .collect();
        each.prop_map(|lines| lines.into_iter().flatten().collect())
    }
}
