//! See a policy before the incident: the library's own rules, run on virtual time against a
//! modelled dependency (feature `cli`; the command line's `resilient-http simulate`).
//!
//! A [`Scenario`] says who calls (an offered rate over time, or closed-loop callers; the
//! request mix) and how the dependency behaves in phases (latency, faults, capacity, an
//! advertised quota). A [`Simulation`] builds one real [`Client`](crate::Client) per replica
//! from the policy, whose attempts go to the model in memory instead of a socket, and runs
//! the scenario on a paused tokio clock: the driver, every guard, the breakers, hedging and
//! timeouts are the code that runs in production, and ten minutes of an incident take
//! seconds. The [`Report`] says what callers and the dependency saw, per phase and over time.
//!
//! # Why
//!
//! Attempts, backoff, breaker thresholds, budgets, limits and hedges are usually chosen
//! blind and learnt during the next incident. The rules are deterministic functions of
//! time and answers, and tokio can run time virtually, so an incident can be replayed with
//! the very code that will run: what a policy does to its callers (success, latency, error
//! mix) and to the dependency (attempts per offered call) is seen beforehand.
//!
//! # How it runs
//!
//! - **One current-thread runtime with a paused clock.** Whenever every task waits, tokio
//!   moves the clock to the next timer: a backoff of 2 s or an answer after 20 ms costs no
//!   real time, and every timer fires at its exact virtual instant. The same seed gives the
//!   same report (only `real_secs` differs): the scenario's draws come from seeded
//!   generators, and the library's own jitter from `fastrand`'s generator on the runtime's
//!   thread, seeded first.
//! - **The replicas are real clients**, built from the policy file as
//!   [`ClientBuilder::config_file`](crate::ClientBuilder::config_file) reads it, each with one
//!   attempt layer that answers from the model instead of sending. That layer bounds each
//!   attempt (head and body) by the limit the driver puts on the request, and fails as reqwest
//!   would: a hang or a slow head is an attempt timeout (maybe sent), a reset is
//!   [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) (maybe sent), a
//!   refusal is [`ErrorKind::Connect`](crate::ErrorKind::Connect) (never sent), a body that
//!   does not come in time is an attempt timeout after the head. The driver, the breaker,
//!   the retry decision and the guards see what they would see over a socket (a test
//!   compares each fault with the real one through the testkit's fault server).
//! - **The load**: open loop, Poisson arrivals on the piecewise-linear rate (each call a
//!   task, on the replicas in turn); or closed loop, each caller calling again `think` after
//!   its call ends. Each call reads its body inside its attempts (`send_buffered`).
//! - **The dependency** is one model shared by the replicas: it picks the phase by the
//!   attempt's arrival, draws a fault by share, applies its capacity to the attempts in
//!   flight at the arrival, counts the quota in fixed windows from the start, and
//!   advertises it on every answer in the fields our own client follows.
//! - **What is recorded**: each call, when it ends, into the accumulators of its step and
//!   its phase; the attempts by the dependency as they arrive; the guards' levels at each
//!   step's end; each breaker's state every 10 ms of virtual time (its bands). Calls still in
//!   flight at the end finish (bounded by their deadlines) and count in the last step.
//!
//! # Exact, and approximate
//!
//! Exact: every rule of the policy (they are the library's), the timing of retries,
//! backoff, jitter, holds, hedges and timeouts, the breakers' decisions (their open and
//! close times to within the 10 ms of the watch), the counts of calls, attempts and errors.
//!
//! Approximate, and why:
//! - **The network is not modelled**: no connection set-up, no bandwidth, no TCP queues; an
//!   answer takes the drawn latency exactly. A refusal and a reset cost nothing but that.
//! - **The dependency is a model**: latency distributions drawn independently per attempt
//!   (log-normal from p50 and p99: `sigma = ln(p99 / p50) / 2.326`); a queue grows latency in
//!   proportion to the attempts in flight at the arrival (`latency × in_flight /
//!   concurrency`), not with a queueing discipline; faults independent of one another. An
//!   attempt the client gives up on (a timeout, a hedge that lost, a hang) stops counting as
//!   in flight at once, where a real server often works on until it is done: a saturated
//!   dependency's queue looks shorter here than it would be, the more so the more the client
//!   abandons.
//! - **Quotas** are fixed windows from the start of the run, advertised in whole seconds (as
//!   the fields carry them: `t=1` for any part of a 1 s window), so a client that follows
//!   them waits up to a second longer than the window's exact rest.
//! - **Closed-loop callers** call at most once a millisecond each (the timer's resolution):
//!   a call that takes no virtual time (an open breaker's refusal) is followed by a pause of
//!   1 ms, else the caller would call again at the same instant forever.
//! - **Compared policies** see the same arrivals and request mix, but the dependency's draws
//!   follow the order attempts arrive in, so once two policies send different attempts their
//!   latencies and faults are other samples of the same distributions.
//! - **Latency percentiles** are read from log-spaced buckets 2 % wide: within 1 % of the
//!   exact percentile.
//! - **Redis-shared limits**: a policy file with a `[redis]` table runs as one client for
//!   the whole fleet (its table dropped and its `shared = "redis"` limits made local, its
//!   lines kept so errors name the right line): its
//!   guards are then fleet-wide exactly, as Redis makes them, but the replicas' breakers,
//!   which are per process in production, are one breaker pooling their windows (it opens
//!   as soon as the fleet's failures reach the threshold, where each replica's would open
//!   on its own share).
//! - **Real time**: the CPU time the rules take is not on the virtual clock (it is tiny next
//!   to network latencies).
//!
//! [`Simulation::run_on_loopback`] runs the same scenario against the same model served
//! over real sockets, in real time: what the faithfulness test compares.

use std::path::PathBuf;

use crate::error::Error;

mod dependency;
mod html;
mod load;
#[cfg(feature = "testkit")]
mod loopback;
pub mod report;
mod runner;
pub mod scenario;
mod table;
mod transport;

pub use report::Report;
pub use scenario::Scenario;

/// A scenario and the policy to run it under.
///
/// ```no_run
/// use resilient_http::sim::{Scenario, Simulation};
///
/// let scenario = Scenario::from_file("examples/scenarios/outage.toml")?;
/// let report = Simulation::new(scenario).config_file("policy.toml").run()?;
/// println!("{}", report.to_json());
/// # Ok::<(), resilient_http::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Simulation {
    scenario: Scenario,
    policy: PolicySource,
}

/// Where a simulation's policy comes from.
#[derive(Debug, Clone)]
enum PolicySource {
    /// The library's defaults.
    Defaults,
    /// A policy file.
    File(PathBuf),
    /// Policy TOML text, and its label.
    Toml(String, String),
}

impl Simulation {
    /// `scenario` under the library's default policy.
    pub fn new(scenario: Scenario) -> Self {
        Simulation {
            scenario,
            policy: PolicySource::Defaults,
        }
    }

    /// Under the policy file at `path`, as
    /// [`ClientBuilder::config_file`](crate::ClientBuilder::config_file) reads it (the same
    /// name, as the command line's `--config`); the report's `policy` is the file's name.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy = PolicySource::File(path.into());
        self
    }

    /// Under the policy TOML `text`, as
    /// [`ClientBuilder::config_toml`](crate::ClientBuilder::config_toml) reads it, labelled
    /// `label` in the report (its `policy`) and in errors (where a file would be named).
    pub fn config_toml(mut self, label: impl Into<String>, text: impl Into<String>) -> Self {
        self.policy = PolicySource::Toml(label.into(), text.into());
        self
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs the scenario on virtual time, in memory, on a runtime and a thread of its own
    /// (it blocks the caller until the report is ready: from async code, call it from
    /// `spawn_blocking`).
    pub fn run(&self) -> Result<Report, Error> {
        runner::run(self)
    }

    /// Runs the same scenario in real time against the same model served by the testkit's
    /// fault server on loopback: the check of the simulation's faithfulness (slow: the
    /// scenario's whole duration).
    #[cfg(feature = "testkit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
    pub fn run_on_loopback(&self) -> Result<Report, Error> {
        loopback::run(self)
    }
}

/// Two or more reports side by side as one self-contained HTML page with SVG charts (the
/// first is the baseline): the scenario's description, the [`table`], and charts on shared
/// axes with the phases marked (load and amplification, success rate, latency, breaker
/// bands, guard levels, hedges). No script, nothing fetched; every name is escaped.
///
/// ```no_run
/// use resilient_http::sim::{self, Scenario, Simulation};
///
/// let scenario = Scenario::from_file("examples/scenarios/outage.toml")?;
/// let baseline = Simulation::new(scenario.clone())
///     .config_file("examples/scenarios/policies/default.toml")
///     .run()?;
/// let other = Simulation::new(scenario)
///     .config_file("examples/scenarios/policies/no-budget.toml")
///     .run()?;
/// let reports = [baseline, other];
/// std::fs::write("outage.html", sim::html(&reports))?;
/// std::fs::write("outage.svg", sim::svg(&reports))?;
/// print!("{}", sim::table(&reports));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn html(reports: &[Report]) -> String {
    html::render(reports)
}

/// One compact summary chart of the reports as an SVG document: the offered calls and each
/// report's attempts per second at the dependency above, each report's success rate below,
/// the phases' starts marked (what the guide shows of each example scenario;
/// `resilient-http simulate --svg FILE`).
pub fn svg(reports: &[Report]) -> String {
    html::summary(reports)
}

/// Reports as a table for the terminal (plain ASCII, at most 100 columns): one row per phase
/// and the total, each report's row under the baseline's (the first), with calls, success
/// rate, latency p50/p99/p99.9, attempts per second, amplification, hedges sent/won and the
/// top error kinds; then one line per report summarising its breakers' open spans.
pub fn table(reports: &[Report]) -> String {
    table::render(reports)
}
