//! Sliding windows of call outcomes, striped so that threads do not share cache lines.
//!
//! One shared counter costs ~6 ns alone but ~45 ns per call once two threads write its cache
//! line. So each window is split into stripes, one per worker thread (chosen by a thread-local
//! index), each on its own cache lines. Recording touches only the caller's stripe; the totals,
//! needed only when a failure might open the breaker, add the stripes up.
//!
//! A call window stripe is a ring of one-byte outcome slots plus a cursor; recording is two
//! plain stores, no read-modify-write at all. The counts are computed from the slots when they
//! are needed (after a failure, or when asked), so they can never drift. Two threads that share
//! a stripe may now and then write the same slot, losing one outcome: the window is a
//! statistic, and its counts stay consistent with what it holds.
//!
//! A time window stripe keeps, per bucket, its counts (calls, failures, slow calls) packed into
//! one `AtomicU64`, 21 bits each, so one `fetch_add` updates all three.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::Window;

const BITS: u32 = 21;
const MASK: u64 = (1 << BITS) - 1;

/// An outcome as stored in a slot: bit 0 present, bit 1 failure, bit 2 slow.
pub(super) const SUCCESS: u8 = 0b001;
pub(super) const FAILURE: u8 = 0b011;
pub(super) const SLOW: u8 = 0b100;

/// The packed counts one outcome adds.
fn packed(outcome: u8) -> u64 {
    let present = u64::from(outcome & 1);
    let failure = u64::from((outcome >> 1) & 1);
    let slow = u64::from((outcome >> 2) & 1);
    present | (failure << BITS) | (slow << (2 * BITS))
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

impl WindowCounts {
    fn add_packed(&mut self, packed: u64) {
        self.calls += packed & MASK;
        self.failures += (packed >> BITS) & MASK;
        self.slow += (packed >> (2 * BITS)) & MASK;
    }
}

/// Pads its contents to a cache line of its own.
#[repr(align(128))]
pub(super) struct Padded<T>(T);

pub(super) struct CallStripe {
    /// Always below `slots.len()`.
    cursor: AtomicUsize,
    slots: Box<[AtomicU8]>,
}

pub(super) struct TimeBucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

pub(super) struct TimeStripe {
    buckets: Box<[TimeBucket]>,
}

pub(super) enum Outcomes {
    Calls(Box<[Padded<CallStripe>]>),
    Time {
        bucket_ms: u64,
        stripes: Box<[Padded<TimeStripe>]>,
    },
}

/// How many stripes: twice the cores, a power of two (so a mask picks one), at most 64.
fn stripe_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, usize::from);
    (cores * 2).next_power_of_two().min(64)
}

/// The calling thread's stripe (taken modulo the stripe count).
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
    pub(super) fn new(window: Window) -> Self {
        let stripes = stripe_count();
        match window {
            Window::Calls(size) => Outcomes::Calls(
                (0..stripes)
                    .map(|_| {
                        Padded(CallStripe {
                            cursor: AtomicUsize::new(0),
                            slots: (0..size.max(1)).map(|_| AtomicU8::new(0)).collect(),
                        })
                    })
                    .collect(),
            ),
            Window::Time { length, buckets } => {
                let buckets = buckets.max(1);
                let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
                Outcomes::Time {
                    bucket_ms: (length_ms / u64::from(buckets)).max(1),
                    stripes: (0..stripes)
                        .map(|_| {
                            Padded(TimeStripe {
                                buckets: (0..buckets)
                                    .map(|_| TimeBucket {
                                        epoch: AtomicU64::new(u64::MAX),
                                        counts: AtomicU64::new(0),
                                    })
                                    .collect(),
                            })
                        })
                        .collect(),
                }
            }
        }
    }

    /// Whether recording needs the time (time windows do; call windows do not).
    #[inline]
    pub(super) fn needs_time(&self) -> bool {
        matches!(self, Outcomes::Time { .. })
    }

    #[inline]
    pub(super) fn record(&self, outcome: u8, now_ms: u64) {
        match self {
            Outcomes::Calls(stripes) => {
                let stripe = &stripes[my_stripe() & (stripes.len() - 1)].0;
                let cursor = stripe.cursor.load(Relaxed);
                let next = cursor + 1;
                let next = if next >= stripe.slots.len() { 0 } else { next };
                stripe.cursor.store(next, Relaxed);
                if let Some(slot) = stripe.slots.get(cursor) {
                    slot.store(outcome, Relaxed);
                }
            }
            Outcomes::Time { bucket_ms, stripes } => {
                let stripe = &stripes[my_stripe() & (stripes.len() - 1)].0;
                let epoch = now_ms / bucket_ms;
                let index = usize::try_from(epoch % stripe.buckets.len() as u64).unwrap_or(0);
                let bucket = &stripe.buckets[index];
                let seen = bucket.epoch.load(Relaxed);
                if seen != epoch
                    && bucket
                        .epoch
                        .compare_exchange(seen, epoch, Relaxed, Relaxed)
                        .is_ok()
                {
                    // The bucket held an expired slice: start it over. A concurrent add
                    // between the exchange and this store is lost; windows are statistics.
                    bucket.counts.store(0, Relaxed);
                }
                bucket.counts.fetch_add(packed(outcome), Relaxed);
            }
        }
    }

    pub(super) fn totals(&self, now_ms: u64) -> WindowCounts {
        let mut totals = WindowCounts::default();
        match self {
            Outcomes::Calls(stripes) => {
                for stripe in stripes.iter() {
                    for slot in stripe.0.slots.iter() {
                        totals.add_packed(packed(slot.load(Relaxed)));
                    }
                }
            }
            Outcomes::Time { bucket_ms, stripes } => {
                let current = now_ms / bucket_ms;
                for stripe in stripes.iter() {
                    let buckets = &stripe.0.buckets;
                    for bucket in buckets.iter() {
                        let epoch = bucket.epoch.load(Relaxed);
                        let live = epoch <= current && current - epoch < buckets.len() as u64;
                        if live {
                            totals.add_packed(bucket.counts.load(Relaxed));
                        }
                    }
                }
            }
        }
        totals
    }

    pub(super) fn clear(&self) {
        match self {
            Outcomes::Calls(stripes) => {
                for stripe in stripes.iter() {
                    for slot in stripe.0.slots.iter() {
                        slot.store(0, Relaxed);
                    }
                }
            }
            Outcomes::Time { stripes, .. } => {
                for stripe in stripes.iter() {
                    for bucket in stripe.0.buckets.iter() {
                        bucket.epoch.store(u64::MAX, Relaxed);
                        bucket.counts.store(0, Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_call_window_keeps_the_last_n() {
        let window = Outcomes::new(Window::Calls(4));
        for outcome in [FAILURE, FAILURE, SUCCESS, SUCCESS, SUCCESS] {
            window.record(outcome, 0);
        }
        let counts = window.totals(0);
        assert_eq!((counts.calls, counts.failures), (4, 1));
        window.record(SUCCESS | SLOW, 0);
        let counts = window.totals(0);
        assert_eq!((counts.calls, counts.failures, counts.slow), (4, 0, 1));
        window.clear();
        assert_eq!(window.totals(0), WindowCounts::default());
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
        let counts = window.totals(10_500);
        assert_eq!((counts.calls, counts.failures), (1, 0));
        // Its slot is reused for the new slice.
        window.record(FAILURE, 10_500);
        let counts = window.totals(10_500);
        assert_eq!((counts.calls, counts.failures), (2, 1));
        assert_eq!(window.totals(30_000).calls, 0);
    }
}
