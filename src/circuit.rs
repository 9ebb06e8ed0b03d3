//! A circuit breaker's [`State`] (public as `breaker::State`), on the ground floor: the
//! breakers change it, and the telemetry below them reports it (the state gauge), so neither
//! imports the other for it.

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through and are counted.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A few probe calls go through; the rest are rejected.
    HalfOpen,
    /// Rejecting every call, by
    /// [`BreakerHandle::force_open`](crate::breaker::BreakerHandle::force_open).
    ForcedOpen,
    /// Letting every call through uncounted, by
    /// [`BreakerHandle::force_closed`](crate::breaker::BreakerHandle::force_closed).
    ForcedClosed,
}
