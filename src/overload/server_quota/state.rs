//! One scope's view of a server's quota. (Skeleton.)

use std::time::Duration;

use tokio::time::Instant;

use super::ServerQuotaConfig;

/// One scope's view of the quota its server advertises.
#[derive(Debug)]
pub(crate) struct ServerQuota {
    config: ServerQuotaConfig,
}

/// What a scope knows of its server's quota, for `OverloadHandle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuotaSnapshot {
    /// Requests the client may still send before the reset (what the server said, less
    /// what was sent since).
    pub(crate) remaining: u64,
    /// Time left to the reset.
    pub(crate) reset: Duration,
}

impl ServerQuota {
    pub(crate) fn new(config: ServerQuotaConfig) -> Self {
        ServerQuota { config }
    }

    /// What is known at `now`; `None` before any answer advertised a quota (or after its
    /// reset).
    pub(crate) fn snapshot(&self, now: Instant) -> Option<QuotaSnapshot> {
        let _ = now;
        None
    }
}
