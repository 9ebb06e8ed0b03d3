//! See a policy before the incident: the library's own rules, run on virtual time against a
//! modelled dependency (feature `cli`; the command line's `resilient-http simulate`).
//!
//! SKELETON: module docs (why, how faithful, what is modelled and what is not) come with the
//! code.
//!
//! A [`Scenario`] says who calls (an offered rate over time, or closed-loop callers; the
//! request mix) and how the dependency behaves in phases (latency, faults, capacity, an
//! advertised quota). A [`Simulation`] builds one real [`Client`](crate::Client) per replica
//! from the policy, whose attempts go to the model in memory instead of a socket, and runs
//! the scenario on a paused tokio clock: the driver, every guard, the breakers, hedging and
//! timeouts are the code that runs in production, and ten minutes of an incident take
//! seconds. The [`Report`] says what callers and the dependency saw, per phase and over time.

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
/// let report = Simulation::new(scenario).policy_file("policy.toml").run()?;
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

    /// Under the policy file at `path` (as
    /// [`ClientBuilder::config_file`](crate::ClientBuilder::config_file) reads it); the
    /// report's `policy` is the file's name.
    pub fn policy_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy = PolicySource::File(path.into());
        self
    }

    /// Under the policy TOML `text`, labelled `label` in the report.
    pub fn policy_toml(mut self, label: impl Into<String>, text: impl Into<String>) -> Self {
        self.policy = PolicySource::Toml(label.into(), text.into());
        self
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs the scenario on virtual time, in memory (on a runtime of its own: call it outside
    /// any tokio runtime, or from `spawn_blocking`).
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
///     .policy_file("examples/scenarios/policies/default.toml")
///     .run()?;
/// let other = Simulation::new(scenario)
///     .policy_file("examples/scenarios/policies/no-budget.toml")
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
