//! The client-side rate limit: GCRA (the generic cell rate algorithm), in one atomic word.
//!
//! GCRA is a token bucket written as one number, the *theoretical arrival time* (TAT): the
//! instant at which the limiter would be back to full if nothing else came. Each admitted
//! request pushes it `interval = per / rate` further; a request is admitted while the TAT is
//! at most `(burst - 1) × interval` ahead of now. So one `compare_exchange` on a `u64` (the
//! TAT in nanoseconds since the limiter's base instant) takes a slot: no lock, no refill
//! task, and a denied request writes nothing.
//!
//! # Reserved slots
//!
//! A call over the limit whose wait fits its deadline does not ask again when its wait is
//! over: it *reserves* its slot when told to wait ([`RateLimit::reserve`]). GCRA hands out a
//! future slot as readily as a present one: the TAT moves one interval on, and the caller is
//! told the instant its slot begins (`TAT - tolerance` before the move). It sleeps until
//! then and goes, without asking again, so each waiter wakes once, and a caller that comes
//! later (or wakes earlier) cannot take its slot: waiters go in the order they asked, and a
//! wait that fits the deadline when told is the wait the call gets. A call whose wait would
//! not fit its deadline is refused at once and reserves nothing.
//!
//! A reservation dropped before its slot (the call was cancelled, or a hold came first)
//! gives it back if no slot was handed out after it: the TAT moves back one interval with a
//! compare-exchange from the value this reservation set. If later reservations exist, the
//! slot is not given back: moving the TAT back would hand a later caller an instant that
//! one of those already holds, letting two requests go where the limit allows one. So the
//! abandoned slot goes unused: the limit errs towards fewer requests, never more, by at
//! most one slot per reservation abandoned behind others.
//!
//! # Why not `governor`
//!
//! `governor` is the standard Rust GCRA crate, but its clocks (`QuantaClock` by default,
//! `MonotonicClock` on `std::time::Instant`, or a `FakeRelativeClock` advanced by hand) are
//! not tokio's, so a test that pauses tokio's time would not move it; and its
//! `until_ready` sleeps on `futures_timer::Delay`, a timer of its own that tokio's paused
//! clock does not drive either. Our calls wait under their own deadline anyway (the caller
//! sleeps the returned wait, or fails with `RateLimited` if the deadline comes first), so what
//! remains of governor is the one `compare_exchange` below; its keyed store would also
//! duplicate our bounded per-endpoint registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds;

/// A client-side rate limit: at most `rate` requests per `per`, in bursts of up to `burst`
/// at once.
///
/// The limit is a GCRA (a token bucket of `burst` tokens, refilled with one token every
/// `per / rate`). `burst = 1` (the default) means no bursts: requests go out at least
/// `per / rate` apart, so no span of length `per` ever holds more than `rate` of them, which
/// keeps a client within a server's quota of "`rate` per `per`" however that server counts.
/// A larger `burst` lets that many go out at once after a quiet spell, then the steady rate
/// again: in a span of length `per` up to `burst - 1 + rate`.
///
/// A request over the limit waits for its slot if that begins before its deadline, else it
/// fails at once with [`RateLimited`](crate::ErrorKind::RateLimited). A request told to wait
/// has its slot reserved: it goes at that instant, in the order the requests asked, and a
/// call dropped before then gives the slot back when no later slot was handed out (else the
/// slot goes unused: the limit never lets more through). A limit shared through Redis
/// (feature `redis`) reserves nothing: its requests wait, then ask again.
///
/// Ranges: `rate` 1 to 1,000,000; `per` above zero, at most an hour; `burst` 1 to
/// 1,000,000. An interval `per / rate` below a nanosecond counts as one nanosecond
/// (a billion requests a second: no limit in practice).
///
/// ```
/// # use std::time::Duration;
/// # use resilient_http::overload::RateLimitConfig;
/// // 100 a second, evenly spaced after a burst of up to 20.
/// let limit = RateLimitConfig::new(100, Duration::from_secs(1)).burst(20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Requests per `per`.
    pub rate: u32,
    /// The span `rate` applies to.
    pub per: Duration,
    /// Requests that may go out at once after a quiet spell (1: none, requests are evenly
    /// spaced).
    pub burst: u32,
}

impl RateLimitConfig {
    /// `rate` requests per `per`, without bursts (`burst` 1).
    pub fn new(rate: u32, per: Duration) -> Self {
        RateLimitConfig {
            rate,
            per,
            burst: 1,
        }
    }

    /// Lets up to `burst` requests go out at once after a quiet spell.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
}

/// One endpoint's rate limit: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct RateLimit {
    /// The theoretical arrival time, in nanoseconds since `base`.
    tat: AtomicU64,
    /// `per / rate` in nanoseconds, at least 1.
    interval: u64,
    /// `(burst - 1) × interval`: how far ahead of now the TAT may be for a request to pass.
    tolerance: u64,
    base: Instant,
}

impl RateLimit {
    /// A limit with its full burst available. Values outside the ranges in
    /// `bounds.rs` are clamped into something that cannot overflow (a zero `rate` or
    /// `burst` counts as 1), though the builders and the file refuse them first.
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        let per = config.per.as_nanos();
        let rate = u128::from(config.rate.max(1));
        // Rounded up, so that the limit never lets more through than the configured rate.
        let interval = saturate(per.div_ceil(rate)).max(1);
        let tolerance = saturate(u128::from(interval) * u128::from(config.burst.max(1) - 1));
        RateLimit {
            tat: AtomicU64::new(0),
            interval,
            tolerance,
            base: Instant::now(),
        }
    }

    /// Takes a slot now, or says how long until one is free (taking nothing: a caller that
    /// gives up, or is dropped while waiting, leaves no trace).
    ///
    /// A caller that sleeps exactly the returned wait and tries again is admitted then,
    /// unless another caller took that slot in between (it then gets a new wait).
    pub(crate) fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let now = self.nanos(now);
        // Relaxed: the TAT is the only thing this word publishes, and a compare-exchange on
        // one atomic sees every earlier write to it whatever the ordering.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            // A TAT in the past is a limiter back to full: it starts again from now.
            let start = tat.max(now);
            let ahead = start - now;
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            let next = start.saturating_add(self.interval);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Takes a slot now (`Ok(None)`), or reserves the next free one (`Ok(Some(slot))`: the
    /// caller goes at `slot.wait` from `now` without asking again, or gives it back with
    /// [`give_back`](Self::give_back)), if that slot begins before `deadline`. `Err(wait)`:
    /// the next free slot is `wait` away, not before the deadline; nothing is taken.
    #[inline]
    pub(crate) fn reserve(
        &self,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<Option<Slot>, Duration> {
        let now_ns = self.nanos(now);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now_ns);
            let ahead = start - now_ns;
            let wait = ahead.saturating_sub(self.tolerance);
            if wait > 0 && deadline.is_some_and(|end| now + Duration::from_nanos(wait) >= end) {
                return Err(Duration::from_nanos(wait));
            }
            let next = start.saturating_add(self.interval);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) if wait == 0 => return Ok(None),
                Ok(_) => {
                    return Ok(Some(Slot {
                        at: now_ns + wait,
                        next,
                        before: start,
                        wait: Duration::from_nanos(wait),
                    }));
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back `slot`, reserved and not used, if it is still ahead at `now` and no slot
    /// was reserved after it (see the [module docs](self): later reservations keep their
    /// instants, and this one is then lost).
    pub(crate) fn give_back(&self, slot: &Slot, now: Instant) {
        if self.nanos(now) < slot.at {
            // Fails, leaving the TAT alone, if anything moved it since this slot was taken.
            let _ = self.tat.compare_exchange(
                slot.next,
                slot.before,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// From when the full burst is available again (now or earlier: idle). For tests and
    /// telemetry.
    pub(crate) fn full_at(&self) -> Instant {
        self.base + Duration::from_nanos(self.tat.load(Ordering::Relaxed))
    }

    /// `now` in nanoseconds since `base` (0 before it; the end of time after 584 years).
    fn nanos(&self, now: Instant) -> u64 {
        saturate(now.saturating_duration_since(self.base).as_nanos())
    }
}

/// A slot reserved ahead of time by [`RateLimit::reserve`].
#[derive(Debug)]
pub(crate) struct Slot {
    /// When it begins, in nanoseconds since the limiter's base.
    at: u64,
    /// The TAT this reservation set, and the one to go back to if it is given back (the TAT
    /// it found, or the reservation's instant if that was later: equivalent, both past when
    /// the TAT would be restored).
    next: u64,
    before: u64,
    /// From the reservation to `at`.
    pub(crate) wait: Duration,
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Each part within its range in `bounds.rs`.
impl bounds::Parts for RateLimitConfig {
    /// `self` if `rate`, `per` and `burst` are in range; else why not, naming the first
    /// one that is not.
    fn check_parts(self) -> Result<Self, String> {
        bounds::REQUEST_RATE
            .check(self.rate)
            .map_err(|e| format!("rate {e}"))?;
        bounds::RATE_PER
            .check(self.per)
            .map_err(|e| format!("per {e}"))?;
        bounds::BURST
            .check(self.burst)
            .map_err(|e| format!("burst {e}"))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    const MS: Duration = Duration::from_millis(1);

    fn limit(rate: u32, per: Duration, burst: u32) -> RateLimit {
        RateLimit::new(RateLimitConfig::new(rate, per).burst(burst))
    }

    /// How many `try_take`s pass at `now`, trying until the first refusal.
    fn drain(limit: &RateLimit, now: Instant) -> (u32, Duration) {
        let mut taken = 0;
        loop {
            match limit.try_take(now) {
                Ok(()) => taken += 1,
                Err(wait) => return (taken, wait),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_steady_rate() {
        // 10 per second: one every 100 ms; bursts of 5.
        let limit = limit(10, Duration::from_secs(1), 5);
        let start = Instant::now();
        let (taken, wait) = drain(&limit, start);
        assert_eq!(taken, 5);
        // The burst pushed the TAT 500 ms ahead; 400 ms are tolerated: one slot in 100 ms.
        assert_eq!(wait, 100 * MS);
        assert_eq!(limit.full_at(), start + 500 * MS);

        tokio::time::advance(99 * MS).await;
        assert_eq!(limit.try_take(Instant::now()), Err(MS));
        tokio::time::advance(MS).await;
        assert_eq!(drain(&limit, Instant::now()), (1, 100 * MS));

        // Then one per interval, for a second.
        for _ in 0..10 {
            tokio::time::advance(100 * MS).await;
            assert_eq!(drain(&limit, Instant::now()), (1, 100 * MS));
        }

        // Quiet for 10 s: the full burst is back, and no more.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(limit.full_at() <= Instant::now());
        assert_eq!(drain(&limit, Instant::now()), (5, 100 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_burst_requests_are_evenly_spaced() {
        let limit = limit(3, Duration::from_millis(30), 1);
        let start = Instant::now();
        assert_eq!(drain(&limit, start), (1, 10 * MS));
        // The wait is exact: sleeping less is refused with what is left, sleeping it passes.
        assert_eq!(limit.try_take(start + 7 * MS), Err(3 * MS));
        assert_eq!(limit.try_take(start + 10 * MS), Ok(()));
        // A late request starts from its own time, not from the missed slots.
        assert_eq!(drain(&limit, start + 55 * MS), (1, 10 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_takes_nothing() {
        let limit = limit(1, Duration::from_secs(1), 1);
        let start = Instant::now();
        assert_eq!(limit.try_take(start), Ok(()));
        let full = limit.full_at();
        for _ in 0..1000 {
            assert!(limit.try_take(start).is_err());
        }
        assert_eq!(limit.full_at(), full);
        assert_eq!(limit.try_take(start + Duration::from_secs(1)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn many_tasks_get_the_configured_rate_over_five_seconds() {
        // 200 per second, bursts of 10, 50 tasks each looping try_take / sleep for 5 s of
        // simulated time.
        let limit = Arc::new(limit(200, Duration::from_secs(1), 10));
        let taken = Arc::new(AtomicU32::new(0));
        let end = Instant::now() + Duration::from_secs(5);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (limit, taken) = (limit.clone(), taken.clone());
                tokio::spawn(async move {
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            return;
                        }
                        match limit.try_take(now) {
                            Ok(()) => {
                                taken.fetch_add(1, Ordering::Relaxed);
                                // The "request": 3 ms in flight.
                                tokio::time::sleep(3 * MS).await;
                            }
                            Err(wait) => tokio::time::sleep(wait).await,
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let taken = taken.load(Ordering::Relaxed);
        // The algorithm allows burst + 5 s × rate - 1 at most (10 + 999).
        println!("admitted {taken} in 5 s at 200/s");
        assert!(taken <= 1009, "{taken}");
        assert!(taken >= 950, "{taken}: more than 5 % under the rate");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_reserve_successive_slots_within_their_deadlines() {
        // 10 a second, bursts of 2.
        let limit = limit(10, Duration::from_secs(1), 2);
        let start = Instant::now();
        assert!(matches!(limit.reserve(start, None), Ok(None)));
        assert!(matches!(limit.reserve(start, None), Ok(None)));
        // Then each caller is handed the next slot, 100 ms after the one before.
        let waits: Vec<_> = (0..3)
            .map(|_| limit.reserve(start, None).unwrap().unwrap().wait)
            .collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 300 * MS]);
        // A deadline at or before the next slot (400 ms) is refused, reserving nothing.
        let end = Some(start + 400 * MS);
        assert_eq!(limit.reserve(start, end).unwrap_err(), 400 * MS);
        let later = Some(start + 401 * MS);
        assert_eq!(limit.reserve(start, later).unwrap().unwrap().wait, 400 * MS);
        // try_take (a hedge) cannot take a reserved slot either.
        assert_eq!(limit.try_take(start + 350 * MS), Err(150 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_given_back_frees_its_slot_only_if_it_is_the_last() {
        let limit = limit(1, Duration::from_secs(1), 1);
        let start = Instant::now();
        assert!(matches!(limit.reserve(start, None), Ok(None)));
        let first = limit.reserve(start, None).unwrap().unwrap();
        let second = limit.reserve(start, None).unwrap().unwrap();
        assert_eq!((first.wait, second.wait), (SECOND, 2 * SECOND));
        // The first is abandoned behind the second: the second keeps its instant, and the
        // first's slot is lost (never two requests in one slot).
        limit.give_back(&first, start);
        assert_eq!(
            limit.reserve(start, None).unwrap().unwrap().wait,
            3 * SECOND
        );
        // The last one given back (before its slot): the next caller gets that slot.
        let last = limit.reserve(start, None).unwrap().unwrap();
        assert_eq!(last.wait, 4 * SECOND);
        limit.give_back(&last, start + SECOND);
        assert_eq!(
            limit.reserve(start, None).unwrap().unwrap().wait,
            4 * SECOND
        );
        // Given back once its slot has begun: it was used, nothing changes.
        let full = limit.full_at();
        let used = limit.reserve(start, None).unwrap().unwrap();
        limit.give_back(&used, start + used.wait);
        assert_eq!(limit.full_at(), full + SECOND);
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn threads_racing_at_one_instant_get_exactly_the_burst() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _time = runtime.enter();
        let limit = Arc::new(limit(1, Duration::from_secs(1), 1000));
        let now = Instant::now();
        let taken = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        if limit.try_take(now).is_ok() {
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn extreme_settings_do_not_overflow() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _time = runtime.enter();
        let hour = Duration::from_secs(3600);
        let start = Instant::now();

        // The fastest: 1,000,000 per millisecond, an interval of 1 ns.
        let fastest = limit(1_000_000, MS, 1_000_000);
        assert_eq!(fastest.interval, 1);
        assert_eq!(drain(&fastest, start), (1_000_000, Duration::from_nanos(1)));
        // Faster than a nanosecond counts as a nanosecond.
        assert_eq!(limit(1_000_000, Duration::from_nanos(1), 1).interval, 1);

        // The slowest, with the largest burst: a tolerance of almost 114 years in
        // nanoseconds, still within a u64.
        let slowest = limit(1, hour, 1_000_000);
        assert_eq!(slowest.tolerance, 3_600_000_000_000 * 999_999);
        assert_eq!(drain(&slowest, start), (1_000_000, hour));
        // Far in the future, with the clock near the end of a u64 of nanoseconds.
        let late = start + Duration::from_secs(500 * 365 * 24 * 3600);
        assert_eq!(slowest.try_take(late), Ok(()));
        // Before the base: counts as the base.
        assert_eq!(limit(1, hour, 1).try_take(start - hour), Ok(()));

        // Out of range (refused by the builders first): clamped, no panic.
        let zero = RateLimit::new(RateLimitConfig::new(0, Duration::ZERO).burst(0));
        assert_eq!(drain(&zero, start), (1, Duration::from_nanos(1)));
        let huge = RateLimit::new(RateLimitConfig::new(1, Duration::MAX).burst(u32::MAX));
        assert_eq!(huge.try_take(start), Ok(()));
    }
}
