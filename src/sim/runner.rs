//! Runs a simulation: the replicas' clients, the load, the samples, on a paused clock.
//!
//! SKELETON (helper "core"). The contract with `loopback.rs`: `run_with(simulation,
//! dependency, Way::Loopback(origin))` runs the same load and records the same report in real
//! time, the attempts going over real sockets to `origin` (the scenario URL's host resolved
//! to it), where the testkit's server answers from the same `Dependency`.

use std::sync::Arc;

use super::Simulation;
use super::dependency::Dependency;
use super::report::Report;
use crate::error::Error;

/// Where the replicas' attempts go, and on which clock.
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub(crate) enum Way {
    /// To the model in memory, on a paused clock.
    Memory,
    /// Over real sockets to this loopback address, in real time.
    Loopback(std::net::SocketAddr),
}

/// Runs `simulation` in memory on virtual time.
pub(crate) fn run(simulation: &Simulation) -> Result<Report, Error> {
    let dependency = Arc::new(Dependency::new(simulation.scenario()));
    run_with(simulation, dependency, Way::Memory)
}

/// Runs `simulation` with its attempts going `way`, to `dependency`.
pub(crate) fn run_with(
    simulation: &Simulation,
    dependency: Arc<Dependency>,
    way: Way,
) -> Result<Report, Error> {
    let _ = (simulation, dependency, way);
    Err(Error::invalid_config("SKELETON: the simulator"))
}
