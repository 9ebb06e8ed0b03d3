//! Sliding windows of counts: buckets that expire whole, striped per thread, numbered by one
//! sequence that all threads share. The circuit breaker keeps its calls' outcomes in one (a
//! call or a time window, `breaker/window.rs`); the retry budget counts first attempts in
//! another (a time window, `retry/budget.rs`, which records only successes, so each bucket's
//! word is one 64-bit count of them). Their shape, [`Window`] (public as
//! `breaker::Window`), is here too, on the ground floor below both.
//!
//! **Why striped.** One shared counter costs ~6 ns alone but ~45 ns per call once two threads
//! write its cache line. So each thread records into a stripe of its own (chosen by a
//! thread-local index, each stripe on its own cache lines), and recording a call touches only
//! that stripe.
//!
//! **Why one sequence.** The window must hold the endpoint's recent calls, whichever threads
//! made them. A window kept per thread is not that: a thread that stops calling keeps its old
//! successes for ever, and a total outage seen by the other threads may then never reach the
//! failure rate (it happened, with the default config). So every bucket carries an *epoch*
//! from a sequence common to all stripes, and the totals add up only the buckets of the newest
//! `live` epochs, in whatever stripe they are. A stripe that stopped recording keeps its
//! buckets, but their epochs fall behind and they leave the window like any other old bucket.
//!
//! - In a **time window** the epoch is the time slice (`now / bucket length`): the clock is
//!   the shared sequence, and a bucket leaves when its slice is older than the window. A
//!   bucket is reused only for a newer slice: a call recorded with an older `now` (a thread
//!   that read the clock, then waited) is added to the newer slice instead of wiping it.
//! - In a **call window** of `n` calls, a bucket holds `per_bucket = max(1, n / 10)` calls and
//!   the window is the newest `live = ⌈n / per_bucket⌉` buckets. A stripe draws its next
//!   epoch from one shared counter when its bucket is full: one shared `fetch_add` per
//!   `per_bucket` calls, not per call.
//!
//! **What a call window holds**, for `n` calls: at most `live × per_bucket` (less than
//! `n + per_bucket`) of the most recent calls; and, once that many calls were made, at least
//! `n − s × (per_bucket − 1)` of them, where `s` is the number of stripes with a bucket still
//! filling (one thread: `s = 1`). Windows of up to 19 calls have buckets of one call: exact.
//! Buckets leave whole, so the window slides `per_bucket` calls at a time.
//!
//! **Reusing a bucket** sets its counts before its new epoch (a release store, read with
//! acquire), and a time bucket is first claimed by one thread (its epoch set to a mark that is
//! never live): the totals never add an old slice's counts under a new epoch.
//!
//! More threads than stripes share stripes; two threads writing the same stripe at once may
//! now and then lose an outcome. The window is a statistic; its counts stay consistent with
//! what it holds. Memory is `stripes × buckets × 24` bytes, whatever `n` is.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use std::time::Duration;

/// Which calls the failure rate is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// The last `n` calls to the endpoint, whichever threads made them.
    ///
    /// They are kept in buckets of `b = max(1, n / 10)` calls that leave the window whole,
    /// so the window slides `b` calls at a time and holds at most `⌈n / b⌉ × b` calls. Each
    /// thread fills a bucket of its own (threads do not contend), so while `s` threads each
    /// have one partly filled, the window may hold down to `n − s × (b − 1)` of the most
    /// recent calls. Windows of up to 19 calls (`b = 1`) are exact.
    Calls(u32),
    /// The calls of the last `length`, kept in `buckets` buckets that expire one at a time.
    Time {
        /// How far back the window reaches (above zero, at most 1 hour).
        length: Duration,
        /// How many slices it is kept in (more: smoother expiry, more memory): 1 to 100, each
        /// at least 1 ms long.
        buckets: u32,
    },
}

/// An outcome as recorded: bit 0 present, bit 1 failure, bit 2 slow.
pub(crate) const SUCCESS: u8 = 0b001;
pub(crate) const FAILURE: u8 = 0b011;
pub(crate) const SLOW: u8 = 0b100;

/// A bucket's epoch before its first use and after a clear: never live.
const EMPTY: u64 = u64::MAX;
/// A time bucket's epoch while one thread starts it over: never live, and not to be started
/// over again by another.
const CLAIMED: u64 = u64::MAX - 1;

/// What one outcome adds to a bucket's `calls | failures << 32` word.
#[inline]
fn packed(outcome: u8) -> u64 {
    u64::from(outcome & 1) | (u64::from((outcome >> 1) & 1) << 32)
}

/// Calls, failures and slow calls in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowCounts {
    /// Calls recorded.
    pub calls: u64,
    /// Of which failed (transient outcomes).
    pub failures: u64,
    /// Of which were slower than the slow-call duration.
    pub slow: u64,
}

/// Pads its contents to a cache line of its own.
#[repr(align(128))]
struct Padded<T>(T);

struct Bucket {
    epoch: AtomicU64,
    /// Calls in the low 32 bits, failures in the high 32: one store or `fetch_add` for both.
    counts: AtomicU64,
    /// Touched only by slow calls.
    slow: AtomicU32,
}

impl Bucket {
    fn add_to(&self, totals: &mut WindowCounts) {
        let counts = self.counts.load(Relaxed);
        totals.calls += counts & u64::from(u32::MAX);
        totals.failures += counts >> 32;
        totals.slow += u64::from(self.slow.load(Relaxed));
    }

    fn add_slow(&self, outcome: u8) {
        if outcome & SLOW != 0 {
            self.slow.fetch_add(1, Relaxed);
        }
    }

    /// Makes this bucket `epoch`'s, holding `outcome` alone. The counts go first: whoever
    /// reads the new epoch (with acquire) reads them too.
    fn start(&self, epoch: u64, outcome: u8) {
        self.counts.store(packed(outcome), Relaxed);
        self.slow.store(u32::from(outcome & SLOW != 0), Relaxed);
        self.epoch.store(epoch, Release);
    }
}

struct Stripe {
    /// The epoch of the bucket this stripe is filling (call windows only).
    current: AtomicU64,
    /// A power of two, at least `live`: a bucket reused for epoch `e` held epoch `e − k ×
    /// len`, which has left the window.
    buckets: Box<[Bucket]>,
}

impl Stripe {
    #[inline]
    fn bucket(&self, epoch: u64) -> &Bucket {
        // `len` is a power of two; the mask keeps the index in range.
        let index = (epoch as usize) & (self.buckets.len() - 1);
        &self.buckets[index]
    }
}

enum Epochs {
    /// Drawn from `next`, one per bucket of `per_bucket` calls.
    Calls {
        per_bucket: u64,
        next: Padded<AtomicU64>,
    },
    /// The time slice, `now_ms / bucket_ms`.
    Time { bucket_ms: u64 },
}

pub(crate) struct Outcomes {
    epochs: Epochs,
    /// How many of the newest epochs are in the window.
    live: u64,
    /// A power of two.
    stripes: Box<[Padded<Stripe>]>,
}

/// A time window's bucket length in milliseconds: `length / buckets`, rounded up (at least
/// 1), so the window reaches at least as far back as configured, and at most `buckets - 1`
/// ms further. Rounded down, a 199 ms window in 100 buckets kept 100 ms.
pub(crate) fn bucket_ms(length: Duration, buckets: u32) -> u64 {
    let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
    length_ms.div_ceil(u64::from(buckets.max(1))).max(1)
}

/// How many stripes: twice the cores, a power of two (so a mask picks one), at most 64.
fn stripe_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, usize::from);
    (cores * 2).next_power_of_two().min(64)
}

/// The calling thread's index (taken modulo the stripe count).
#[inline]
fn my_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| {
        let mut index = stripe.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Relaxed);
            stripe.set(index);
        }
        index
    })
}

impl Outcomes {
    pub(crate) fn new(window: Window) -> Self {
        let (epochs, live) = match window {
            Window::Calls(size) => {
                let size = u64::from(size.max(1));
                let per_bucket = (size / 10).max(1);
                let next = Padded(AtomicU64::new(0));
                (
                    Epochs::Calls { per_bucket, next },
                    size.div_ceil(per_bucket),
                )
            }
            Window::Time { length, buckets } => {
                let bucket_ms = bucket_ms(length, buckets);
                (Epochs::Time { bucket_ms }, u64::from(buckets.max(1)))
            }
        };
        let len = usize::try_from(live)
            .unwrap_or(usize::MAX)
            .checked_next_power_of_two()
            .unwrap_or(1);
        let stripes = (0..stripe_count())
            .map(|_| {
                Padded(Stripe {
                    // Bucket 0 is `EMPTY`, so the first call starts a bucket.
                    current: AtomicU64::new(0),
                    buckets: (0..len)
                        .map(|_| Bucket {
                            epoch: AtomicU64::new(EMPTY),
                            counts: AtomicU64::new(0),
                            slow: AtomicU32::new(0),
                        })
                        .collect(),
                })
            })
            .collect();
        Outcomes {
            epochs,
            live,
            stripes,
        }
    }

    /// Whether recording needs the time (time windows do; call windows do not).
    #[inline]
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self.epochs, Epochs::Time { .. })
    }

    #[inline]
    fn my_stripe(&self) -> &Stripe {
        &self.stripes[my_stripe() & (self.stripes.len() - 1)].0
    }

    #[inline]
    pub(crate) fn record(&self, outcome: u8, now_ms: u64) {
        let stripe = self.my_stripe();
        match &self.epochs {
            Epochs::Calls { per_bucket, next } => {
                let epoch = stripe.current.load(Relaxed);
                let bucket = stripe.bucket(epoch);
                let counts = bucket.counts.load(Relaxed);
                if bucket.epoch.load(Relaxed) == epoch && counts & u64::from(u32::MAX) < *per_bucket
                {
                    // Plain store: the stripe is this thread's (see the module docs).
                    bucket.counts.store(counts + packed(outcome), Relaxed);
                    bucket.add_slow(outcome);
                } else {
                    let epoch = next.0.fetch_add(1, Relaxed);
                    stripe.bucket(epoch).start(epoch, outcome);
                    stripe.current.store(epoch, Relaxed);
                }
            }
            Epochs::Time { bucket_ms } => {
                let epoch = now_ms / bucket_ms;
                let bucket = stripe.bucket(epoch);
                let seen = bucket.epoch.load(Relaxed);
                if (seen < epoch || seen == EMPTY)
                    && bucket
                        .epoch
                        .compare_exchange(seen, CLAIMED, Relaxed, Relaxed)
                        .is_ok()
                {
                    // The bucket held an expired slice: claimed until it starts over, so the
                    // totals never count the old slice as the new one. A concurrent add
                    // between the exchange and the start is lost; windows are statistics.
                    bucket.start(epoch, outcome);
                } else {
                    bucket.counts.fetch_add(packed(outcome), Relaxed);
                    bucket.add_slow(outcome);
                }
            }
        }
    }

    /// The newest epoch in the window, if any epoch began.
    fn newest(&self, now_ms: u64) -> Option<u64> {
        match &self.epochs {
            Epochs::Calls { next, .. } => next.0.load(Relaxed).checked_sub(1),
            Epochs::Time { bucket_ms } => Some(now_ms / bucket_ms),
        }
    }

    pub(crate) fn totals(&self, now_ms: u64) -> WindowCounts {
        let mut totals = WindowCounts::default();
        let Some(newest) = self.newest(now_ms) else {
            return totals;
        };
        for stripe in self.stripes.iter() {
            for bucket in stripe.0.buckets.iter() {
                let epoch = bucket.epoch.load(Acquire);
                // `CLAIMED` is above any `newest` too.
                if epoch != EMPTY && epoch <= newest && newest - epoch < self.live {
                    bucket.add_to(&mut totals);
                }
            }
        }
        totals
    }

    pub(crate) fn clear(&self) {
        for stripe in self.stripes.iter() {
            for bucket in stripe.0.buckets.iter() {
                bucket.epoch.store(EMPTY, Relaxed);
                bucket.counts.store(0, Relaxed);
                bucket.slow.store(0, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_time_window_reaches_at_least_as_far_back_as_configured() {
        use std::time::Duration;
        assert_eq!(bucket_ms(Duration::from_millis(199), 100), 2);
        assert_eq!(bucket_ms(Duration::from_secs(10), 10), 1_000);
        assert_eq!(bucket_ms(Duration::from_millis(1), 10), 1);
    }

    fn calls_failures(counts: WindowCounts) -> (u64, u64) {
        (counts.calls, counts.failures)
    }

    #[test]
    fn a_small_call_window_keeps_exactly_the_last_n() {
        let window = Outcomes::new(Window::Calls(4));
        for outcome in [FAILURE, FAILURE, SUCCESS, SUCCESS, SUCCESS] {
            window.record(outcome, 0);
        }
        assert_eq!(calls_failures(window.totals(0)), (4, 1));
        window.record(SUCCESS | SLOW, 0);
        let counts = window.totals(0);
        assert_eq!((counts.calls, counts.failures, counts.slow), (4, 0, 1));
        window.clear();
        assert_eq!(window.totals(0), WindowCounts::default());
        window.record(FAILURE, 0);
        assert_eq!(calls_failures(window.totals(0)), (1, 1));
    }

    #[test]
    fn a_large_call_window_slides_a_bucket_at_a_time() {
        // 100 calls: buckets of 10, the newest 10 buckets.
        let window = Outcomes::new(Window::Calls(100));
        for _ in 0..100 {
            window.record(FAILURE, 0);
        }
        assert_eq!(calls_failures(window.totals(0)), (100, 100));
        window.record(SUCCESS, 0);
        // The oldest bucket left whole.
        assert_eq!(calls_failures(window.totals(0)), (91, 90));
        for _ in 0..9 {
            window.record(SUCCESS, 0);
        }
        assert_eq!(calls_failures(window.totals(0)), (100, 90));
    }

    /// The defect this design fixes: a thread's old successes stay in the window while other
    /// threads see nothing but failures.
    #[test]
    fn a_thread_that_stops_calling_leaves_the_window() {
        let window = Outcomes::new(Window::Calls(100));
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..150 {
                        window.record(SUCCESS, 0);
                    }
                });
            }
        });
        for _ in 0..100 {
            window.record(FAILURE, 0);
        }
        // The newest 10 buckets are this thread's.
        assert_eq!(calls_failures(window.totals(0)), (100, 100));
    }

    #[test]
    fn many_threads_keep_the_window_within_its_bound() {
        let window = Outcomes::new(Window::Calls(100));
        let threads = 8;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for i in 0..1_000 {
                        window.record(if i % 2 == 0 { FAILURE } else { SUCCESS }, 0);
                    }
                });
            }
        });
        let counts = window.totals(0);
        // The newest 10 buckets, each holding 1 to 10 calls (threads sharing a stripe may
        // leave a bucket partly filled, or lose an outcome, but never overfill one).
        assert!((10..=100).contains(&counts.calls), "{counts:?}");
        assert!(counts.failures <= counts.calls, "{counts:?}");
    }

    #[test]
    fn a_time_window_expires_old_buckets() {
        let window = Outcomes::new(Window::Time {
            length: Duration::from_secs(10),
            buckets: 10,
        });
        window.record(FAILURE, 500);
        window.record(SUCCESS, 4_500);
        assert_eq!(window.totals(9_999).calls, 2);
        // At 10.5 s the bucket of 0.5 s has left the window.
        assert_eq!(calls_failures(window.totals(10_500)), (1, 0));
        // Its slot is reused for the new slice.
        window.record(FAILURE | SLOW, 10_500);
        let counts = window.totals(10_500);
        assert_eq!((counts.calls, counts.failures, counts.slow), (2, 1, 1));
        assert_eq!(window.totals(30_000).calls, 0);
    }

    /// A call recorded with an older `now` (its thread read the clock, then waited) must not
    /// wipe the newer slice that reuses its bucket.
    #[test]
    fn a_late_record_does_not_wipe_a_newer_slice() {
        let window = Outcomes::new(Window::Time {
            length: Duration::from_secs(10),
            buckets: 10,
        });
        // Slices 16 and 0 share a bucket (16 buckets per stripe).
        window.record(FAILURE, 16_500);
        window.record(SUCCESS, 500);
        assert_eq!(calls_failures(window.totals(16_500)), (2, 1));
    }
}
