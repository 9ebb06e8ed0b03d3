//! The same scenario in real time, against the same model served by the testkit's fault
//! server on loopback: what the faithfulness test compares the simulation with.
//!
//! SKELETON (helper "faithful").

use super::Simulation;
use super::report::Report;
use crate::error::Error;

pub(crate) fn run(simulation: &Simulation) -> Result<Report, Error> {
    let _ = simulation;
    Err(Error::invalid_config("SKELETON: loopback"))
}
