//! A `Retry-After` hold shared by the fleet: the crate's local [`Hold`] (read on every call),
//! published to Redis when this replica sets it, and learned from Redis by the background
//! sync and by every lease refill of the same key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use tokio::time::Instant;

use super::link::FleetInner;
use crate::overload::hold::Hold;

/// One endpoint key's `Retry-After` hold, shared by every replica: see the
/// [module docs](super). Made by [`Fleet::hold`](super::Fleet::hold); cheap to clone.
#[derive(Clone)]
pub struct SharedHold(Arc<HoldShared>);

pub(crate) struct HoldShared {
    fleet: Arc<FleetInner>,
    redis_key: String,
    local: Hold,
    /// The latest instant this replica held the key until and has not published yet, in
    /// microseconds since the fleet's base; 0: nothing to publish.
    publish: AtomicU64,
}

impl std::fmt::Debug for SharedHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedHold")
            .field("key", &self.0.redis_key)
            .field("remaining", &self.remaining(Instant::now()))
            .finish()
    }
}

impl SharedHold {
    pub(crate) fn get(fleet: &Arc<FleetInner>, key: &str) -> Self {
        let hold = fleet.hold_for(key, || {
            Arc::new(HoldShared {
                fleet: fleet.clone(),
                redis_key: fleet.key("hold", key),
                local: Hold::new(),
                publish: AtomicU64::new(0),
            })
        });
        // The sync task serves holds: start it now if this is the first use.
        let _ = fleet.link();
        SharedHold(hold)
    }

    /// Holds the key until `until`, unless already held longer: here at once, and in Redis
    /// with the next sync, asked for now (in the background: the caller does not wait for
    /// Redis), so that every replica holds it too.
    pub fn hold_until(&self, until: Instant) {
        let shared = &self.0;
        shared.local.hold_until(until);
        let micros = shared.fleet.micros(until).max(1);
        shared.publish.fetch_max(micros, SeqCst);
        if shared.fleet.sharing() {
            shared.fleet.nudge();
        }
    }

    /// How long the hold lasts after `now`; `None` when not held. One load: whatever this
    /// replica set or last learned from the fleet.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.0.local.remaining(now)
    }

    /// Over how long after its end a call waiting on the hold is released (see
    /// [`Hold::release_window`]).
    pub(crate) fn release_window(&self) -> Duration {
        self.0.local.release_window()
    }
}

impl HoldShared {
    pub(crate) fn redis_key(&self) -> &str {
        &self.redis_key
    }

    /// What to publish at `now` (microseconds since the fleet's base): the marker to clear
    /// once published, and the whole milliseconds left (0: nothing). Rounded down, so that a
    /// hold learned and published again never grows.
    pub(crate) fn to_publish(&self, now: u64) -> (u64, u64) {
        let until = self.publish.load(SeqCst);
        (until, until.saturating_sub(now) / 1000)
    }

    /// `marker` reached Redis: nothing to publish unless a later hold came meanwhile.
    pub(crate) fn published(&self, marker: u64) {
        let _ = self.publish.compare_exchange(marker, 0, SeqCst, SeqCst);
    }

    /// Redis said, for a call sent at `sent` (microseconds since the fleet's base), that the
    /// key is held for `left_ms` more. Counted from the sending, so a hold learned is never
    /// longer than the one in Redis.
    pub(crate) fn learn(&self, sent: u64, left_ms: i64) {
        if let Ok(ms) = u64::try_from(left_ms)
            && ms > 0
        {
            let until = self.fleet.instant(sent) + Duration::from_millis(ms);
            self.local.hold_until(until);
        }
    }
}
