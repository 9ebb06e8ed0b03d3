//! The modelled dependency: what it answers an attempt, given the phase, the load on it and
//! its quota. One per run, shared by every replica (and served for real by `loopback.rs`).
//!
//! SKELETON (helper "core"): the contract is `Dependency::new`, `Dependency::answer` and
//! `ModelReply`; the loopback server maps the same `ModelReply` onto the testkit's `Reply`.

use std::time::Duration;

use super::scenario::Scenario;

/// What the model answers one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ModelReply {
    /// A response: its head after `head_after`, its body `body_after` later.
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        head_after: Duration,
        body_after: Duration,
    },
    /// The connection reset after `after`.
    Reset { after: Duration },
    /// Refused at once.
    Refused,
    /// Never answered.
    Hang,
}

/// The dependency of one run.
#[derive(Debug)]
pub(crate) struct Dependency {}

/// An attempt in flight at the dependency: dropped when it ends, however it ends.
#[derive(Debug)]
pub(crate) struct InFlight {}

impl Dependency {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let _ = scenario;
        Dependency {}
    }

    /// The answer to an attempt arriving `since_start` into the run.
    pub(crate) fn answer(&self, since_start: Duration) -> (ModelReply, InFlight) {
        let _ = since_start;
        (ModelReply::Hang, InFlight {})
    }
}
