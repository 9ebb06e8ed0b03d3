//! `Retry-After` holds: a 429 or 503 that asked for a pause holds its endpoint key until
//! then, so later calls wait or fail at once instead of going out blindly.
//!
//! One atomic word, the held-until instant in nanoseconds since the hold was made. Setting it
//! keeps the later of the two instants (`fetch_max`): a short `Retry-After` never cuts a
//! longer one short, whichever answer arrives last.
//!
//! # Release
//!
//! Calls that waited on a hold do not all go at its end: a server that just asked for a
//! pause would get them in one burst (36 requests within 10 ms of a 2 s hold's end, against
//! nginx). The first call to wait on a hold goes at its end (a lone waiter waits no longer
//! than the server asked); each later one goes at a random instant within the hold's
//! *release window* after the end ([`Hold::release_window`]): a quarter of the hold, at most
//! 1 s. A quarter
//! keeps the added wait small next to the pause the server asked for (at most 25 % more),
//! and proportional: a short `Retry-After` means a short throttle, over which a long spread
//! would only add latency. The 1 s cap bounds the latency added to a long hold while still
//! turning a herd into a ramp (1,000 waiting calls: about one a millisecond).
//!
//! A call's deadline bounds its share of the window: it goes within half of the time
//! between the hold's end and its deadline (if that is shorter than the window), so it keeps
//! at least half of what is left for its attempt. A call whose deadline leaves no room goes
//! at the hold's end, as before, rather than fail. The retries of calls answered with the
//! `Retry-After` are released the same way (`Guards::retry_after_wait`): calls answered
//! `429` together would otherwise all retry at the instant the server named. A new call that
//! finds the hold over goes at once.
//!
//! The window is measured on the hold's length when it was last lengthened (for a hold
//! learned from the fleet, what was left of it when learned). Two answers racing to set a
//! hold may leave the length of either: it only sizes the window.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The release window is this share of a hold (a quarter)...
const RELEASE_SHARE: u32 = 4;
/// ...up to this.
const RELEASE_CAP: Duration = Duration::from_secs(1);

use tokio::time::Instant;

/// The release window of a hold of length `span` (for a call after the first to wait on
/// it): a quarter of it, at most 1 s (see the [module docs](self)). A server's spent quota
/// releases its waiters by the same rule.
pub(crate) fn release_window_for(span: Duration) -> Duration {
    (span / RELEASE_SHARE).min(RELEASE_CAP)
}

/// One endpoint key's `Retry-After` hold.
pub(crate) struct Hold {
    /// Nanoseconds since `base` (584 years fit); 0: not held (any instant at or before
    /// `base` is past). Nanoseconds, not milliseconds: rounded to another grid than tokio's
    /// timers, a hold could outlast by a fraction of a millisecond the sleep of the call that
    /// set it, and make that call's own retry wait again.
    until_ns: AtomicU64,
    /// The hold's length when it was last lengthened, in nanoseconds: sizes the release
    /// window.
    span_ns: AtomicU64,
    /// The `until_ns` whose first waiting call was told to go at the end.
    first_out: AtomicU64,
    base: Instant,
}

impl Hold {
    /// Not held.
    pub(crate) fn new() -> Self {
        Hold {
            until_ns: AtomicU64::new(0),
            span_ns: AtomicU64::new(0),
            first_out: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// Holds until `until`, unless already held longer.
    pub(crate) fn hold_until(&self, until: Instant) {
        let ns = until.saturating_duration_since(self.base).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        if self.until_ns.fetch_max(ns, Relaxed) < ns {
            let span = until.saturating_duration_since(Instant::now()).as_nanos();
            self.span_ns
                .store(u64::try_from(span).unwrap_or(u64::MAX), Relaxed);
        }
    }

    /// Over how long after the hold's end a call told to wait on it now is released: zero
    /// for the first call to wait on this hold (it goes at the end), else a quarter of the
    /// hold, at most 1 s (see the [module docs](self)). Asked once per waiting call.
    pub(crate) fn release_window(&self) -> Duration {
        let until = self.until_ns.load(Relaxed);
        if self.first_out.swap(until, Relaxed) != until {
            return Duration::ZERO;
        }
        release_window_for(Duration::from_nanos(self.span_ns.load(Relaxed)))
    }

    /// How long the hold lasts after `now`; `None` when not held.
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        let until_ns = self.until_ns.load(Relaxed);
        if until_ns == 0 {
            // Never held: the common case costs one load.
            return None;
        }
        Duration::from_nanos(until_ns)
            .checked_sub(now.saturating_duration_since(self.base))
            .filter(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_hold_lasts_until_its_instant() {
        let hold = Hold::new();
        let start = Instant::now();
        assert_eq!(hold.remaining(start), None);
        hold.hold_until(start + 5 * SECOND);
        assert_eq!(hold.remaining(start), Some(5 * SECOND));
        tokio::time::advance(2 * SECOND).await;
        assert_eq!(hold.remaining(Instant::now()), Some(3 * SECOND));
        tokio::time::advance(3 * SECOND - Duration::from_millis(1)).await;
        assert_eq!(
            hold.remaining(Instant::now()),
            Some(Duration::from_millis(1))
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(hold.remaining(Instant::now()), None);
        assert_eq!(hold.remaining(Instant::now() + SECOND), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_later_hold_wins_whichever_comes_last() {
        let hold = Hold::new();
        let start = Instant::now();
        hold.hold_until(start + 5 * SECOND);
        hold.hold_until(start + 3 * SECOND);
        assert_eq!(hold.remaining(start), Some(5 * SECOND));
        hold.hold_until(start + 8 * SECOND);
        assert_eq!(hold.remaining(start), Some(8 * SECOND));
        // A hold in the past changes nothing.
        tokio::time::advance(SECOND).await;
        hold.hold_until(start);
        assert_eq!(hold.remaining(Instant::now()), Some(7 * SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_ends_exactly_at_its_instant() {
        let hold = Hold::new();
        let start = Instant::now();
        let until = start + Duration::from_micros(1_500);
        hold.hold_until(until);
        assert_eq!(
            hold.remaining(until - Duration::from_nanos(1)),
            Some(Duration::from_nanos(1))
        );
        // A sleep of exactly the hold ends it: no second wait.
        assert_eq!(hold.remaining(until), None);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_instants_do_not_panic() {
        let hold = Hold::new();
        let start = Instant::now();
        let far = start + 100 * 365 * 24 * 3600 * SECOND;
        hold.hold_until(far);
        assert_eq!(hold.remaining(far), None);
        assert!(
            hold.remaining(start)
                .is_some_and(|left| left > 99 * 365 * 24 * 3600 * SECOND)
        );
        // A `now` before the hold was made counts as its start.
        tokio::time::advance(SECOND).await;
        let late = Hold::new();
        late.hold_until(Instant::now() + SECOND);
        assert_eq!(late.remaining(start), Some(SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn the_release_window_is_a_quarter_of_the_hold_up_to_a_second() {
        let hold = Hold::new();
        let start = Instant::now();
        hold.hold_until(start + 2 * SECOND);
        // The first waiter goes at the end; the others are spread over a quarter of the hold.
        assert_eq!(hold.release_window(), Duration::ZERO);
        assert_eq!(hold.release_window(), SECOND / 2);
        assert_eq!(hold.release_window(), SECOND / 2);
        // A shorter hold changes nothing; a longer one, its window, up to the cap (and its
        // first waiter goes at its end).
        hold.hold_until(start + SECOND);
        assert_eq!(hold.release_window(), SECOND / 2);
        hold.hold_until(start + 20 * SECOND);
        assert_eq!(hold.release_window(), Duration::ZERO);
        assert_eq!(hold.release_window(), SECOND);
        // Lengthened later: measured from then.
        tokio::time::advance(19 * SECOND).await;
        hold.hold_until(start + 21 * SECOND);
        assert_eq!(hold.release_window(), Duration::ZERO);
        assert_eq!(hold.release_window(), SECOND / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn threads_setting_holds_keep_the_latest() {
        let hold = Hold::new();
        let start = Instant::now();
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let hold = &hold;
                scope.spawn(move || {
                    for i in 0..1_000u64 {
                        hold.hold_until(start + Duration::from_millis(thread * 1_000 + i));
                    }
                });
            }
        });
        assert_eq!(hold.remaining(start), Some(Duration::from_millis(3_999)));
    }
}
