//! Sliding windows of counts: buckets that expire whole, striped per thread, numbered by one
//! sequence that all threads share. The circuit breaker keeps its calls' outcomes in one (a
//! call or a time window, `breaker/window.rs`); the retry budget counts first attempts in
//! another (a time window, `retry/budget.rs`, which records only successes, so each bucket's
//! word is one 64-bit count of them). Their shape, [`Window`] (public as
//! `breaker::Window`), is here too, on the ground floor below both.
//!
//! **Why striped.** One shared counter costs ~6 ns alone but ~45 ns per call once two threads
//! write its cache line. So each thread records into a stripe of its own (chosen by a
//! thread-local index), and recording a call touches only that stripe. A stripe is one
//! cache line holding only the bucket that thread is filling; when that bucket is done (full,
//! or its time slice over), the thread moves it into the window's one **ring** of finished
//! buckets, by epoch, and starts another. So the ring is written once per bucket (once per
//! `per_bucket` calls, or per time slice, per stripe), never per call.
//!
//! **Why one sequence.** The window must hold the endpoint's recent calls, whichever threads
//! made them. A window kept per thread is not that: a thread that stops calling keeps its old
//! successes for ever, and a total outage seen by the other threads may then never reach the
//! failure rate (it happened, with the default config). So every bucket carries an *epoch*
//! from a sequence common to all stripes, and the totals add up only the buckets of the newest
//! `live` epochs, in the ring or in whatever stripe. A stripe that stopped recording keeps its
//! bucket, but its epoch falls behind and it leaves the window like any other old bucket.
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
//! **Reusing a bucket** (a stripe's, or one of the ring's) sets its counts before its new
//! epoch (a release store, read with acquire), and it is first claimed by one thread (its
//! epoch set to a mark that is never live): the totals never add an old epoch's counts under
//! a new one.
//!
//! **Moving a bucket into the ring** claims the stripe first (its epoch set to the never-live
//! mark), then adds its counts to the ring with release; the totals read the ring before the
//! stripes, with acquire, so a bucket on its way is never added twice (it may be missed by a
//! reader at that instant). Stripes of one time slice that finish together add into the same
//! ring bucket: the first starts it over, the others wait for it (spinning, then yielding:
//! its claimer has three stores left to make) and add theirs.
//!
//! **Memory**, the reason for this shape: the breaker's window and the retry budget's are kept
//! per endpoint key, up to 1,024 keys per policy by default, so they must not grow with the
//! cores. A window is its ring (`len × 24` bytes: 384 for the breaker's default 100 calls and
//! for the budget; inline up to 16 buckets) plus one 64-byte line per stripe and 192 bytes
//! inline. Earlier each stripe
//! kept a whole ring of its own, padded to 128 bytes: `stripes × (128 + len × 24)` bytes, 8 KiB
//! per window at 16 stripes, 32 KiB at 64, where twice the cores (to 64) were taken. Now there
//! are at most [`MAX_STRIPES`] = 8, one line each: with the rest of the endpoint (the keyed
//! maps' entries, the breaker's and the guards' own fields), an endpoint of the default
//! policy holds about 2.2 KiB on 2 cores and 2.6 KiB from 4 cores up, measured by
//! `tests/endpoint_memory.rs` (was 5.9 KiB on 2 cores, 63 KiB from 32 cores up). Fewer
//! buckets would change what a window holds.
//!
//! **The first thread's bucket is inline** (`home`), and the stripes are made only when a
//! thread on another stripe first records: not to save memory (every worker of a
//! multi-threaded runtime soon calls a busy endpoint, and its window then has them all, one
//! line more than before), but so that a new endpoint costs no aligned allocation of its
//! own until it is called from a second thread. A client calling thousands of endpoints in
//! turn makes one for nearly every call once they outnumber its bound, and an endpoint
//! called once in a while is mostly called from one thread.
//!
//! **More threads than stripes** share stripes (threads take them in turn, in bit-reversed
//! order, so that the first threads are on distinct pairs of lines too). Sharing costs little
//! at the rates an HTTP client records: a call is tens of microseconds of work, so even 64
//! threads calling one endpoint flat out write each of its 8 stripes less than once a
//! microsecond. Two threads writing the same stripe at once may now and then lose an
//! outcome. The window is a statistic; its counts stay consistent with what it holds.
//!
//! **The stripe count is decided once per process**, by the first window built: twice the
//! cores available, a power of two (a mask picks the stripe), at most [`MAX_STRIPES`]. std's
//! `available_parallelism` re-reads the cgroup limits on every call (some 23k instructions,
//! once per new endpoint), and a thread pinned to one CPU got a smaller count than the others.

use std::cell::Cell;
use std::sync::OnceLock;
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

/// One cache line (64 bytes on the machines this runs on): a stripe's bucket alone on its
/// line, so that recording writes no line another thread writes.
#[repr(align(64))]
struct Line<T>(T);

struct Bucket {
    epoch: AtomicU64,
    /// Calls in the low 32 bits, failures in the high 32: one store or `fetch_add` for both.
    counts: AtomicU64,
    /// Touched only by slow calls.
    slow: AtomicU32,
}

impl Bucket {
    const fn empty() -> Self {
        Bucket {
            epoch: AtomicU64::new(EMPTY),
            counts: AtomicU64::new(0),
            slow: AtomicU32::new(0),
        }
    }

    /// Adds this bucket to `totals` if its epoch is one of the `live` newest up to `newest`.
    fn add_live_to(&self, totals: &mut WindowCounts, newest: u64, live: u64) {
        let epoch = self.epoch.load(Acquire);
        // `CLAIMED` is above any `newest` too.
        if epoch != EMPTY && epoch <= newest && newest - epoch < live {
            // Acquire: counts added by a stripe that retired into this bucket come with that
            // stripe's claim (see `Outcomes::retire`).
            let counts = self.counts.load(Acquire);
            totals.calls += counts & u64::from(u32::MAX);
            totals.failures += counts >> 32;
            totals.slow += u64::from(self.slow.load(Relaxed));
        }
    }

    fn add_slow(&self, outcome: u8) {
        if outcome & SLOW != 0 {
            self.slow.fetch_add(1, Relaxed);
        }
    }

    /// Makes this bucket `epoch`'s, holding `counts` and `slow`. The counts go first: whoever
    /// reads the new epoch (with acquire) reads them too.
    fn start(&self, epoch: u64, counts: u64, slow: u32) {
        self.counts.store(counts, Relaxed);
        self.slow.store(slow, Relaxed);
        self.epoch.store(epoch, Release);
    }

    fn clear(&self) {
        self.epoch.store(EMPTY, Relaxed);
        self.counts.store(0, Relaxed);
        self.slow.store(0, Relaxed);
    }
}

/// What a bucket starts with when `outcome` starts it.
#[inline]
fn first(outcome: u8) -> (u64, u32) {
    (packed(outcome), u32::from(outcome & SLOW != 0))
}

enum Epochs {
    /// Drawn from `next`, one per bucket of `per_bucket` calls.
    Calls { per_bucket: u64 },
    /// The time slice, `now_ms / bucket_ms`.
    Time { bucket_ms: u64 },
}

pub(crate) struct Outcomes {
    epochs: Epochs,
    /// How many of the newest epochs are in the window.
    live: u64,
    /// The next call-window epoch (unused by time windows), on a line of its own: drawn by
    /// every stripe, once per bucket.
    next: Line<AtomicU64>,
    /// The bucket the first thread to record fills, for whichever stripe that thread has
    /// (`home_stripe`): a window only ever recorded by one thread, as most endpoints of a
    /// client calling many are, needs no other.
    home: Line<Bucket>,
    /// The stripe `home` stands for; [`NO_STRIPE`] until a thread records.
    home_stripe: AtomicUsize,
    /// One less than the stripe count (a power of two): picks a thread's stripe.
    mask: usize,
    /// The bucket each other stripe is filling, one per cache line (the one of
    /// `home_stripe` unused): made when a thread of another stripe first records.
    stripes: OnceLock<Box<[Line<Bucket>]>>,
    /// Finished buckets, at `epoch mod len` (a power of two, at least `live`: a bucket reused
    /// for epoch `e` held epoch `e − k × len`, which has left the window).
    ring: Ring,
}

/// Rings of up to this many buckets are kept inline, in the window: the default breaker's
/// (100 calls: 10 live buckets) and every retry budget's (10 slices) have 16. One allocation
/// fewer per window, made and freed for each new endpoint of a client calling more of them
/// than its bound; a smaller ring leaves the rest of the 384 bytes unused.
const INLINE_RING: usize = 16;

/// A window's finished buckets: inline up to [`INLINE_RING`], else on the heap.
// Large inline on purpose: the point is one allocation fewer per window.
#[allow(clippy::large_enum_variant)]
enum Ring {
    /// The first `len` of these.
    Inline([Bucket; INLINE_RING], usize),
    Boxed(Box<[Bucket]>),
}

impl Ring {
    fn new(len: usize) -> Self {
        if len <= INLINE_RING {
            Ring::Inline([const { Bucket::empty() }; INLINE_RING], len)
        } else {
            Ring::Boxed((0..len).map(|_| Bucket::empty()).collect())
        }
    }

    #[inline]
    fn buckets(&self) -> &[Bucket] {
        match self {
            Ring::Inline(buckets, len) => buckets.split_at((*len).min(INLINE_RING)).0,
            Ring::Boxed(buckets) => buckets,
        }
    }
}

/// A time window's bucket length in milliseconds: `length / buckets`, rounded up (at least
/// 1), so the window reaches at least as far back as configured, and at most `buckets - 1`
/// ms further. Rounded down, a 199 ms window in 100 buckets kept 100 ms.
pub(crate) fn bucket_ms(length: Duration, buckets: u32) -> u64 {
    let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
    length_ms.div_ceil(u64::from(buckets.max(1))).max(1)
}

/// The most stripes a window has (from 4 cores up): see the module docs, *Memory*.
pub(crate) const MAX_STRIPES: usize = 8;

/// No stripe: a window's `home` before any thread recorded.
const NO_STRIPE: usize = usize::MAX;

/// The stripe count, decided by the first window built in the process.
static STRIPES: OnceLock<usize> = OnceLock::new();

/// Stripes for a machine of `cores` cores: twice the cores, a power of two (so a mask picks
/// one), at most [`MAX_STRIPES`].
fn stripes_for(cores: usize) -> usize {
    cores
        .saturating_mul(2)
        .clamp(1, MAX_STRIPES)
        .next_power_of_two()
}

/// How many stripes every window has. Decided once per process: the cores available to it
/// (std re-reads the cgroup limits on every `available_parallelism`, some 23k instructions;
/// and a thread pinned to one CPU would have built smaller windows than the others).
fn stripe_count() -> usize {
    *STRIPES
        .get_or_init(|| stripes_for(std::thread::available_parallelism().map_or(4, usize::from)))
}

/// Decides the stripe count as a machine of `cores` cores would, if no window was built in
/// this process yet; whether the count is now that one. For tests of the memory per endpoint
/// at a core count that the test machine does not have.
#[cfg(feature = "testkit")]
pub(crate) fn assume_cores(cores: usize) -> bool {
    let stripes = stripes_for(cores);
    *STRIPES.get_or_init(|| stripes) == stripes
}

/// The calling thread's stripe (taken modulo the stripe count). Threads take the stripes in
/// bit-reversed order (0, 4, 2, 6, 1... of 8), so that the first few threads are also on
/// different pairs of lines: some CPUs fetch lines in aligned pairs.
#[inline]
fn my_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| {
        let mut index = stripe.get();
        if index == usize::MAX {
            let count = stripe_count();
            let bits = count.trailing_zeros();
            let nth = NEXT.fetch_add(1, Relaxed) & (count - 1);
            index = nth
                .reverse_bits()
                .checked_shr(usize::BITS - bits)
                .unwrap_or(0);
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
                (Epochs::Calls { per_bucket }, size.div_ceil(per_bucket))
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
        Outcomes {
            epochs,
            live,
            next: Line(AtomicU64::new(0)),
            home: Line(Bucket::empty()),
            home_stripe: AtomicUsize::new(NO_STRIPE),
            mask: stripe_count() - 1,
            stripes: OnceLock::new(),
            ring: Ring::new(len),
        }
    }

    /// How many stripes the window records into (`home` stands for one of them).
    #[cfg(test)]
    fn stripe_count(&self) -> usize {
        self.mask + 1
    }

    /// The buckets of every stripe now recording, `home` first.
    fn filling(&self) -> impl Iterator<Item = &Bucket> {
        let others = self.stripes.get().into_iter().flatten();
        std::iter::once(&self.home.0).chain(others.map(|stripe| &stripe.0))
    }

    /// Whether recording needs the time (time windows do; call windows do not).
    #[inline]
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self.epochs, Epochs::Time { .. })
    }

    /// The bucket the calling thread fills: `home`, if its stripe is the first one to
    /// record (or it is the first), else its stripe's, the stripes made the first time.
    #[inline]
    fn my_stripe(&self) -> &Bucket {
        let index = my_stripe() & self.mask;
        let home = self.home_stripe.load(Relaxed);
        if home == index {
            return &self.home.0;
        }
        self.other_stripe(home, index)
    }

    /// The bucket of stripe `index`, not `home`'s (`home` stands for stripe `home`, or none).
    /// Not `#[cold]`: on a multi-threaded runtime every thread but the home stripe's takes it
    /// on every record.
    fn other_stripe(&self, home: usize, index: usize) -> &Bucket {
        if home == NO_STRIPE {
            match (self.home_stripe).compare_exchange(NO_STRIPE, index, Relaxed, Relaxed) {
                Ok(_) => return &self.home.0,
                Err(taken) if taken == index => return &self.home.0,
                Err(_) => {}
            }
        }
        let stripes = self
            .stripes
            .get_or_init(|| (0..=self.mask).map(|_| Line(Bucket::empty())).collect());
        &stripes[index].0
    }

    #[inline]
    pub(crate) fn record(&self, outcome: u8, now_ms: u64) {
        let stripe = self.my_stripe();
        match self.epochs {
            Epochs::Calls { per_bucket } => {
                let epoch = stripe.epoch.load(Relaxed);
                let counts = stripe.counts.load(Relaxed);
                if epoch < CLAIMED && counts & u64::from(u32::MAX) < per_bucket {
                    // Plain store: the stripe is this thread's (see the module docs).
                    stripe.counts.store(counts + packed(outcome), Relaxed);
                    stripe.add_slow(outcome);
                } else if self.retire(stripe, epoch) {
                    let epoch = self.next.0.fetch_add(1, Relaxed);
                    let (counts, slow) = first(outcome);
                    stripe.start(epoch, counts, slow);
                }
            }
            Epochs::Time { bucket_ms } => {
                let epoch = now_ms / bucket_ms;
                let seen = stripe.epoch.load(Relaxed);
                // A call recorded with an older `now` (a thread that read the clock, then
                // waited) is added to the newer slice instead of starting an old one.
                if (seen >= epoch && seen < CLAIMED) || !self.retire(stripe, seen) {
                    stripe.counts.fetch_add(packed(outcome), Relaxed);
                    stripe.add_slow(outcome);
                } else {
                    let (counts, slow) = first(outcome);
                    stripe.start(epoch, counts, slow);
                }
            }
        }
    }

    /// Moves `stripe`'s bucket of `epoch` into the ring, so that the stripe may start
    /// another; `false` if another thread sharing the stripe is doing so (or a clear came
    /// first): the caller adds to the stripe instead (or drops its outcome, for a call
    /// window), which may be lost. Windows are statistics.
    ///
    /// The stripe is claimed first, then its counts reach the ring with release: a reader,
    /// which reads the ring before the stripes (with acquire), never adds them twice.
    #[cold]
    fn retire(&self, stripe: &Bucket, epoch: u64) -> bool {
        if epoch >= CLAIMED {
            // Never started (or cleared): nothing to move; claim it all the same, so that
            // one thread starts it.
            return epoch == EMPTY
                && stripe
                    .epoch
                    .compare_exchange(EMPTY, CLAIMED, Relaxed, Relaxed)
                    .is_ok();
        }
        if stripe
            .epoch
            .compare_exchange(epoch, CLAIMED, Acquire, Relaxed)
            .is_err()
        {
            return false;
        }
        let counts = stripe.counts.load(Relaxed);
        let slow = stripe.slow.load(Relaxed);
        let ring = self.ring.buckets();
        let slot = &ring[(epoch as usize) & (ring.len() - 1)];
        // Another stripe may be starting this slot for the same time slice: wait for it (a
        // claimer has three stores left to make; spin a little, then yield, in case its
        // thread was preempted between them). Dropping this share instead would lose a whole
        // bucket of outcomes, failures included.
        let mut spins = 0u32;
        loop {
            let seen = slot.epoch.load(Acquire);
            if seen == epoch {
                // Time windows: another stripe's share of the same slice is there already.
                // The slow count first: a reader that sees the calls (acquire) sees it too.
                if slow != 0 {
                    slot.slow.fetch_add(slow, Relaxed);
                }
                slot.counts.fetch_add(counts, Release);
                return true;
            }
            if seen == CLAIMED {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if seen != EMPTY && seen > epoch {
                // A newer epoch took the slot: this one has left the window.
                return true;
            }
            if slot
                .epoch
                .compare_exchange(seen, CLAIMED, Relaxed, Relaxed)
                .is_ok()
            {
                slot.start(epoch, counts, slow);
                return true;
            }
        }
    }

    /// The newest epoch in the window, if any epoch began.
    fn newest(&self, now_ms: u64) -> Option<u64> {
        match self.epochs {
            Epochs::Calls { .. } => self.next.0.load(Relaxed).checked_sub(1),
            Epochs::Time { bucket_ms } => Some(now_ms / bucket_ms),
        }
    }

    pub(crate) fn totals(&self, now_ms: u64) -> WindowCounts {
        let mut totals = WindowCounts::default();
        let Some(newest) = self.newest(now_ms) else {
            return totals;
        };
        // The ring first: see `retire`.
        for bucket in self.ring.buckets() {
            bucket.add_live_to(&mut totals, newest, self.live);
        }
        for stripe in self.filling() {
            stripe.add_live_to(&mut totals, newest, self.live);
        }
        totals
    }

    pub(crate) fn clear(&self) {
        for bucket in self.ring.buckets() {
            bucket.clear();
        }
        for stripe in self.filling() {
            stripe.clear();
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

    /// Threads of one time slice each keep a share of it in their stripes; when the next
    /// slice begins, their shares add up in the ring's one bucket for it (the first starts
    /// it over, the others add), none overwrites another.
    #[test]
    fn the_stripes_of_one_slice_add_up_in_the_ring() {
        let window = Outcomes::new(Window::Time {
            length: Duration::from_secs(10),
            buckets: 10,
        });
        // One thread after another: each new thread takes the next stripe.
        let threads = 2 * window.stripe_count();
        for slice_ms in [500, 1_500] {
            for _ in 0..threads {
                std::thread::scope(|scope| {
                    scope.spawn(|| {
                        window.record(FAILURE, slice_ms);
                        window.record(SUCCESS, slice_ms);
                    });
                });
            }
        }
        let total = 4 * threads as u64;
        assert_eq!(calls_failures(window.totals(1_500)), (total, total / 2));
        // The first slice is in the ring now, and leaves the window on its own.
        assert_eq!(
            calls_failures(window.totals(10_500)),
            (total / 2, total / 4)
        );
    }

    /// A window only one thread records into makes no stripes (one bucket inline: an
    /// endpoint called once in a while, as each of many are, costs no aligned allocation);
    /// the first call of a thread on another stripe makes them, and the totals add up what
    /// every thread recorded, the first thread's inline bucket included, until a clear.
    #[test]
    fn stripes_are_made_when_a_second_thread_records() {
        let window = Outcomes::new(Window::Calls(1_000));
        for _ in 0..3 {
            window.record(FAILURE, 0);
        }
        assert!(
            window.stripes.get().is_none(),
            "stripes made for one thread"
        );
        assert_eq!(calls_failures(window.totals(0)), (3, 3));
        // Threads on every other stripe (each new thread takes the next one).
        for _ in 0..window.stripe_count() {
            std::thread::scope(|scope| {
                scope.spawn(|| window.record(SUCCESS, 0));
            });
        }
        if window.stripe_count() > 1 {
            assert!(
                window.stripes.get().is_some(),
                "no stripes for other threads"
            );
        }
        let threads = window.stripe_count() as u64;
        assert_eq!(calls_failures(window.totals(0)), (3 + threads, 3));
        window.record(SUCCESS, 0);
        assert_eq!(calls_failures(window.totals(0)), (4 + threads, 3));
        window.clear();
        assert_eq!(calls_failures(window.totals(0)), (0, 0));
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
