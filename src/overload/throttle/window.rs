//! The throttle's sliding window: requests per criticality and accepts, in a small ring of
//! time steps kept in atomics.
//!
//! **Why not the crate's striped window** (`src/window.rs`, the breaker's and the retry
//! budget's): that one is built for a count written on every call and read rarely, so it
//! stripes the writes per thread and adds up its ring and every stripe when read. The
//! throttle reads its totals on *every* attempt (the rule needs them to decide), so a read
//! that walks `buckets + stripes` buckets would cost more than the writes it saves; and it
//! keeps four counts, not two. This ring is one set of [`STEPS`] buckets (in a ring of [`SLOTS`]), shared by all
//! threads: a read is [`STEPS`] × 3 loads, a write one or two `fetch_add`s on the current
//! step's bucket. Its bucket reuse follows the striped window's time buckets: a bucket is
//! claimed by one thread (its epoch set to a mark never live) before it starts over, and
//! its counts are set before its new epoch is published, so a read never adds an old step's
//! counts under a new step's number. A count added by another thread between the claim and
//! the start may be lost: the window is a statistic.

use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::Duration;

use tokio::time::Instant;

use super::Criticality;

/// The window slides in this many steps: a count is in it for between 9/10 of the window
/// and all of it.
pub(crate) const STEPS: u64 = 10;
/// Buckets in the ring: a power of two above [`STEPS`], so that a bucket is reused only by a
/// step whose old one has left the window.
const SLOTS: usize = 16;

/// A bucket's epoch before its first use: never live.
const EMPTY: u64 = u64::MAX;
/// A bucket's epoch while one thread starts it over: never live.
const CLAIMED: u64 = u64::MAX - 1;

/// What a window holds: requests of each criticality (sent or throttled here), and the
/// accepts among those sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) critical: u64,
    pub(crate) default: u64,
    pub(crate) sheddable: u64,
    pub(crate) accepts: u64,
}

impl Counts {
    /// Requests of every criticality.
    pub(crate) fn requests(&self) -> u64 {
        self.critical + self.default + self.sheddable
    }

    /// Requests of `criticality`.
    pub(crate) fn of(&self, criticality: Criticality) -> u64 {
        match criticality {
            Criticality::Critical => self.critical,
            Criticality::Default => self.default,
            Criticality::Sheddable => self.sheddable,
        }
    }

    /// Requests of `criticality` and of those that matter more.
    pub(crate) fn at_least(&self, criticality: Criticality) -> u64 {
        match criticality {
            Criticality::Critical => self.critical,
            Criticality::Default => self.critical + self.default,
            Criticality::Sheddable => self.requests(),
        }
    }
}

/// One step's counts: two words of two 32-bit counts each, so that a request and its accept
/// are one `fetch_add` each (a bucket holds at most 4 billion of each: a step of the longest
/// window, 6 minutes, at 10 million requests a second).
struct Bucket {
    epoch: AtomicU64,
    /// Critical requests (low 32 bits) and default ones (high 32).
    first: AtomicU64,
    /// Sheddable requests (low 32 bits) and accepts (high 32).
    second: AtomicU64,
}

/// What one request adds to a bucket's two words.
fn added(criticality: Criticality, accepted: bool) -> (u64, u64) {
    let accept = u64::from(accepted) << 32;
    match criticality {
        Criticality::Critical => (1, accept),
        Criticality::Default => (1 << 32, accept),
        Criticality::Sheddable => (0, 1 | accept),
    }
}

const LOW: u64 = u32::MAX as u64;

/// A sliding window of requests and accepts. See the [module docs](self).
pub(crate) struct RequestWindow {
    buckets: [Bucket; SLOTS],
    step_ms: u64,
    /// Instants are kept as milliseconds since this one.
    base: Instant,
}

impl RequestWindow {
    /// An empty window reaching `length` back (in [`STEPS`] steps of whole milliseconds,
    /// rounded up: at least 1 ms each).
    pub(crate) fn new(length: Duration) -> Self {
        let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        RequestWindow {
            buckets: std::array::from_fn(|_| Bucket {
                epoch: AtomicU64::new(EMPTY),
                first: AtomicU64::new(0),
                second: AtomicU64::new(0),
            }),
            step_ms: length_ms.div_ceil(STEPS).max(1),
            base: Instant::now(),
        }
    }

    fn step(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.base).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX) / self.step_ms
    }

    /// A request of `criticality` at `now`, `accepted` or not (a rejection, or throttled).
    pub(crate) fn record(&self, now: Instant, criticality: Criticality, accepted: bool) {
        let step = self.step(now);
        // `SLOTS` is a power of two: the mask keeps the index in range.
        let bucket = &self.buckets[(step as usize) & (SLOTS - 1)];
        let (first, second) = added(criticality, accepted);
        let seen = bucket.epoch.load(Relaxed);
        if (seen < step || seen == EMPTY)
            && bucket
                .epoch
                .compare_exchange(seen, CLAIMED, Relaxed, Relaxed)
                .is_ok()
        {
            // An older step's bucket (or an unused one): this thread starts it over.
            bucket.first.store(first, Relaxed);
            bucket.second.store(second, Relaxed);
            bucket.epoch.store(step, Release);
            return;
        }
        // This step's (or, for a `now` read before a newer step began, the newer one's:
        // added there rather than wiping it).
        if first != 0 {
            bucket.first.fetch_add(first, Relaxed);
        }
        if second != 0 {
            bucket.second.fetch_add(second, Relaxed);
        }
    }

    /// What the window holds at `now`: the buckets of its [`STEPS`] newest steps, each in its
    /// own slot (read on every attempt: only those, not the whole ring).
    pub(crate) fn counts(&self, now: Instant) -> Counts {
        let newest = self.step(now);
        let mut counts = Counts::default();
        for step in newest.saturating_sub(STEPS - 1)..=newest {
            let bucket = &self.buckets[(step as usize) & (SLOTS - 1)];
            // A bucket still holding an older step (or `EMPTY`, `CLAIMED`) is not this one.
            if bucket.epoch.load(Acquire) == step {
                let first = bucket.first.load(Relaxed);
                let second = bucket.second.load(Relaxed);
                counts.critical += first & LOW;
                counts.default += first >> 32;
                counts.sheddable += second & LOW;
                counts.accepts += second >> 32;
            }
        }
        counts
    }
}

impl std::fmt::Debug for RequestWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestWindow")
            .field("step_ms", &self.step_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_each_criticality_and_the_accepts() {
        let window = RequestWindow::new(Duration::from_secs(10));
        let now = Instant::now();
        window.record(now, Criticality::Critical, true);
        window.record(now, Criticality::Default, true);
        window.record(now, Criticality::Default, false);
        window.record(now, Criticality::Sheddable, false);
        let counts = window.counts(now);
        let expected = Counts {
            critical: 1,
            default: 2,
            sheddable: 1,
            accepts: 2,
        };
        assert_eq!(counts, expected);
        assert_eq!(counts.requests(), 4);
        assert_eq!(counts.at_least(Criticality::Default), 3);
        assert_eq!(counts.of(Criticality::Sheddable), 1);
    }

    /// The window slides a step (a tenth of it) at a time: a count leaves it whole, between
    /// 9/10 of the window and the whole window after it was made.
    #[tokio::test(start_paused = true)]
    async fn counts_leave_the_window_a_step_at_a_time() {
        let window = RequestWindow::new(Duration::from_secs(10));
        let start = Instant::now();
        window.record(start, Criticality::Default, true);
        let later = start + Duration::from_millis(4_500);
        window.record(later, Criticality::Default, false);
        assert_eq!(
            window.counts(start + Duration::from_millis(9_999)).default,
            2
        );
        // At 10 s the first step (0 to 1 s) has left; the one of 4.5 s has not.
        let counts = window.counts(start + Duration::from_secs(10));
        assert_eq!((counts.default, counts.accepts), (1, 0));
        // Its bucket is reused for a new step, which starts from nothing.
        let reused = start + Duration::from_secs(16);
        window.record(reused, Criticality::Critical, true);
        let counts = window.counts(reused);
        assert_eq!((counts.critical, counts.default, counts.accepts), (1, 0, 1));
        assert_eq!(
            window.counts(start + Duration::from_secs(60)),
            Counts::default()
        );
    }

    /// A request recorded with an older `now` (its thread read the clock, then waited) is
    /// added to the newer step that reuses its bucket, not wiping it.
    #[tokio::test(start_paused = true)]
    async fn a_late_record_does_not_wipe_a_newer_step() {
        let window = RequestWindow::new(Duration::from_secs(10));
        let start = Instant::now();
        // Steps 16 and 0 share a bucket.
        window.record(
            start + Duration::from_millis(16_500),
            Criticality::Default,
            true,
        );
        window.record(
            start + Duration::from_millis(500),
            Criticality::Default,
            true,
        );
        let counts = window.counts(start + Duration::from_millis(16_500));
        assert_eq!((counts.default, counts.accepts), (2, 2));
    }

    #[test]
    fn many_threads_lose_nothing_within_one_step() {
        let window = RequestWindow::new(Duration::from_secs(3600));
        let now = Instant::now();
        // The first record starts the bucket; the others add to it.
        window.record(now, Criticality::Sheddable, false);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1_000 {
                        window.record(now, Criticality::Default, i % 2 == 0);
                    }
                });
            }
        });
        let counts = window.counts(now);
        assert_eq!(
            (counts.default, counts.accepts, counts.sheddable),
            (4_000, 2_000, 1)
        );
    }
}
