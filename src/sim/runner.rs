//! Runs a simulation: the replicas' clients, the load, the samples, on a paused clock.
//!
//! SKELETON (helper "core").

use super::Simulation;
use super::report::Report;
use crate::error::Error;

pub(crate) fn run(simulation: &Simulation) -> Result<Report, Error> {
    let _ = simulation;
    Err(Error::invalid_config("SKELETON: the simulator"))
}
