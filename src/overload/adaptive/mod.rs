//! Adaptive concurrency: a limit on the attempts in flight to a scope that finds the
//! dependency's capacity from the latency it observes.
//!
//! The places are a [`Bulkhead`](super::bulkhead)'s (first come, first served, the same
//! cancellation-safe queue) whose max moves: raised, it hands free places to the waiters;
//! lowered, the attempts in flight drain below it. Each attempt that ends tells the
//! algorithm its latency (from its send to its end) and whether it was dropped
//! (rejected for overload: see `Answer`), under a short lock; the algorithm answers with the
//! new limit. An attempt cancelled, cut short by its caller's deadline, or never sent is no
//! sample, and gives its place back all the same.
//!
//! The algorithms are written here, after their specifications (Netflix's
//! concurrency-limits: `Gradient2Limit`, `AIMDLimit`, `VegasLimit`), not taken from a crate.
//! `tower-acc` 0.1 has the one trait that would fit (`update(rtt, in_flight, is_error,
//! is_canceled)`, then `max_concurrency()`), but it is a young one-author crate (first
//! release 2026-03) whose builders panic on bad input (`rtt_tolerance < 1`, `min > max`:
//! here such input is a typed error, checked with the other settings), whose Gradient2
//! grows by `log10(limit)` where Netflix's grows by 4, and which brings `tokio-util` and
//! `pin-project-lite` for a tower service we would not use. `tower-resilience-adaptive`'s
//! trait (`record_success(latency)`, `record_failure()`) is not told the attempts in flight,
//! which every algorithm here needs (a sample taken while most places are free says nothing
//! of the capacity), and it has no Gradient2. Each algorithm here is some 50 lines, tested
//! against the behaviour its specification describes.

mod aimd;
mod algorithm;
mod config;
mod gradient2;
mod limit;
mod vegas;

pub use config::{AdaptiveConcurrencyConfig, LimitAlgorithm};
pub(crate) use limit::{AdaptiveLimit, LimitPermit, PlaceFuture};
