//! Client-side adaptive throttling (Google SRE book, "Handling Overload"), and request
//! criticality.
//!
//! Each scope counts, over a sliding window (default 2 minutes, kept in 10 steps), the
//! *requests* the application asked for (those throttled here included) and the *accepts*:
//! the attempts its dependency answered without rejecting them for overload (a 429, 503 or
//! 504, a refused connection or an attempt timeout is a rejection; a 404 or a 500 is an
//! accept). A cancelled attempt, or one cut short by the caller's deadline, counts nothing.
//!
//! **The rule.** With one criticality, an attempt is throttled locally with probability
//! `max(0, (requests − K × accepts) / (requests + 1))`, the book's: in steady state the
//! dependency sees about K times what it accepts, and the rest fail at once, unsent, with
//! [`Throttled`](crate::ErrorKind::Throttled).
//!
//! **Criticality** shares the allowance `K × accepts` in order: critical requests first,
//! then default ones, then sheddable ones. An attempt of criticality `c` is throttled with
//! probability
//!
//! ```text
//! p(c) = clamp((requests of c and above − K(c) × accepts) / (requests of c + 1), 0, 1)
//! ```
//!
//! where "above" means more critical, and `K(c)` is K for critical and default requests and
//! `max(1, K / 2)` for sheddable ones: sheddable work is throttled as soon as the dependency
//! sees more than K / 2 requests per accept, and only gets what the more critical ones leave
//! of the allowance. With one criticality in use this is the book's formula exactly.
//! Critical requests are never throttled with a probability above
//! [`CRITICAL_MAX_PROBABILITY`] (0.75): however badly the dependency does, at least a quarter
//! of the critical attempts are sent, so that the client keeps probing it and sees it
//! recover, and the work that matters most is never cut off by the client alone. The
//! other side of "in order": while the more critical requests alone use up the allowance,
//! the less critical ones are all throttled (probability 1); the accepts of the critical
//! ones show when the dependency recovers, and the others go again.
//!
//! **The retry budget** lets critical retries go first when it is nearly spent: for a
//! window after a critical retry asked, default retries may not take its last quarter;
//! sheddable ones never take its last half (see `Criticality::budget_claim`). A retry
//! throttled when it is due has spent its token (the budget is asked when the retry is
//! decided, the throttle when it goes): under overload that leaves fewer retries, never
//! more.
//!
//! **Cost.** Letting an attempt through reads the window (its 10 steps, in atomics, shared by
//! the threads; no lock, no allocation) and draws a random number only when the probability
//! is above zero (`fastrand`'s thread-local generator); its end adds to the current bucket.
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds;
use crate::retry::BudgetClaim;
use window::{Counts, RequestWindow};

mod window;

/// Client-side adaptive throttling for a policy's scope (file: `[….throttle]`; the policy's
/// [`throttle`](crate::policy::EndpointPolicy::throttle)). Off by default.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::overload::ThrottleConfig;
///
/// let throttle = ThrottleConfig::new().k(2.0).window(Duration::from_secs(120));
/// # let _ = throttle;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// How many requests per accept the dependency may see before the client throttles
    /// (default 2.0; 1 to 10). Sheddable requests use `max(1, k / 2)`.
    pub k: f64,
    /// The sliding window requests and accepts are counted over (default 2 minutes; 1 s to
    /// 1 h). It slides in 10 steps: a count stays in it for 9/10 of it to all of it.
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            k: 2.0,
            window: Duration::from_secs(120),
        }
    }
}

impl ThrottleConfig {
    /// K = 2, over 2 minutes (the SRE book's).
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the dependency may see per request it accepts, before the client throttles.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The sliding window requests and accepts are counted over.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
}

/// `k` from 1 to 10 (below 1, a dependency that rejects nothing could be throttled; above
/// 10 throttling does next to nothing), `window` from 1 s to 1 h.
impl bounds::Parts for ThrottleConfig {
    fn check_parts(self) -> Result<Self, String> {
        bounds::THROTTLE_K
            .check(self.k)
            .map_err(|e| format!("k {e}"))?;
        bounds::THROTTLE_WINDOW
            .check(self.window)
            .map_err(|e| format!("window {e}"))?;
        Ok(self)
    }
}

/// How much a request matters when its dependency is overloaded: sheddable work is throttled
/// first, critical work last (per request
/// [`RequestBuilder::criticality`](crate::RequestBuilder::criticality), per policy
/// [`criticality`](crate::policy::EndpointPolicy::criticality); file: `criticality = ".."`;
/// through `ResilientMiddleware`, a `Criticality` in the request's extensions).
///
/// With client-side throttling on
/// ([`EndpointPolicy::throttle`](crate::policy::EndpointPolicy::throttle)), the dependency
/// may see K requests per request it accepts; that allowance goes to critical requests
/// first, then to default ones, then to sheddable ones. With a retry budget, retries of
/// default requests leave its last quarter to critical ones, sheddable ones its last half.
/// It is the `criticality` field of the call's span and a label of its metrics.
///
/// ```
/// use resilient_http::overload::Criticality;
///
/// let prefetch: Criticality = "sheddable".parse()?;
/// assert_eq!(prefetch, Criticality::Sheddable);
/// assert_eq!(Criticality::default().as_str(), "default");
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Criticality {
    /// Work the caller cannot do without: throttled last, and never with a probability above
    /// 0.75 (at least a quarter of the attempts go, probing the dependency); its retries may
    /// take the retry budget's last retries.
    Critical,
    /// Everything else (the default).
    #[default]
    Default,
    /// Work that may be dropped under overload (prefetches, analytics): throttled first, as
    /// soon as the dependency sees more than `max(1, K / 2)` requests per accept, with
    /// whatever the others leave of the allowance; its retries stop at half the budget.
    Sheddable,
}

impl Criticality {
    /// `critical`, `default` or `sheddable`: the name in files, spans, metrics and the probe.
    pub const fn as_str(self) -> &'static str {
        match self {
            Criticality::Critical => "critical",
            Criticality::Default => "default",
            Criticality::Sheddable => "sheddable",
        }
    }
}

impl Criticality {
    /// What retries (and hedges) of this criticality may take of the retry budget: the one
    /// rule of the budget's preference. Critical retries may take all of it, and reserve:
    /// for a window (the budget's) after one asked, default retries leave them the last
    /// quarter of the allowance. Sheddable retries always leave the last half. So a budget
    /// nearly spent goes to critical retries first; a client that sends no critical
    /// requests keeps its whole budget for default ones, as before; a budget with room
    /// treats them all alike. (Rounded down to whole retries: a budget allowing fewer than 4
    /// keeps none back from default retries.)
    pub(crate) const fn budget_claim(self) -> BudgetClaim {
        const MILLION: u64 = 1_000_000;
        match self {
            Criticality::Critical => BudgetClaim {
                kept: 0,
                kept_when_reserved: 0,
                reserves: true,
            },
            Criticality::Default => BudgetClaim {
                kept: 0,
                kept_when_reserved: MILLION / 4,
                reserves: false,
            },
            Criticality::Sheddable => BudgetClaim {
                kept: MILLION / 2,
                kept_when_reserved: MILLION / 2,
                reserves: false,
            },
        }
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Criticality {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "critical" => Ok(Criticality::Critical),
            "default" => Ok(Criticality::Default),
            "sheddable" => Ok(Criticality::Sheddable),
            _ => Err(format!(
                "unknown criticality {name:?}: expected \"critical\", \"default\" or \"sheddable\""
            )),
        }
    }
}

/// The most a critical attempt is throttled with: at least a quarter of them are sent,
/// however badly the dependency does (see the [module docs](self)).
pub(crate) const CRITICAL_MAX_PROBABILITY: f64 = 0.75;

/// One scope's throttle: its window of requests and accepts, and the rule.
#[derive(Debug)]
pub(crate) struct Throttle {
    k: f64,
    window: RequestWindow,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Throttle {
            k: config.k,
            window: RequestWindow::new(config.window),
        }
    }

    /// May an attempt of `criticality` go at `now`? `Err` with the rejection probability
    /// when it is throttled (counted as a request, never an accept). An attempt let through
    /// is counted when it ends ([`record`](Self::record)), or not at all if it is cancelled.
    pub(crate) fn admit(&self, now: Instant, criticality: Criticality) -> Result<(), f64> {
        let probability = self.probability(now, criticality);
        // No draw while nothing is throttled: the healthy path's cost is the window's read.
        if probability > 0.0 && fastrand::f64() < probability {
            self.window.record(now, criticality, false);
            return Err(probability);
        }
        Ok(())
    }

    /// May a hedge of `criticality` go at `now`? Drawn as for an attempt, but a hedge kept
    /// back counts as no request: the application did not ask for it (the client's own
    /// timer did), and under overload every hedge timer that fires would otherwise push the
    /// probability up further. A hedge let out counts at its end as any attempt does.
    pub(crate) fn lets_hedge_out(&self, now: Instant, criticality: Criticality) -> bool {
        let probability = self.probability(now, criticality);
        probability == 0.0 || fastrand::f64() >= probability
    }

    /// An attempt of `criticality` let out ended at `now`: `accepted` if its dependency
    /// answered it without rejecting it for overload.
    pub(crate) fn record(&self, now: Instant, criticality: Criticality, accepted: bool) {
        self.window.record(now, criticality, accepted);
    }

    /// The probability an attempt of `criticality` is throttled at `now`.
    pub(crate) fn probability(&self, now: Instant, criticality: Criticality) -> f64 {
        rejection_probability(&self.window.counts(now), self.k, criticality)
    }

    /// The window's (requests, accepts) at `now`: what the rule reads, for the handle and
    /// tests.
    pub(crate) fn counts(&self, now: Instant) -> (u64, u64) {
        let counts = self.window.counts(now);
        (counts.requests(), counts.accepts)
    }

    /// Whether the window still holds counts that would throttle (asked when the map of
    /// endpoints is full): a fresh window would let every attempt through again.
    pub(crate) fn busy(&self, now: Instant) -> bool {
        self.probability(now, Criticality::Sheddable) > 0.0
    }
}

/// `K(c)`: how many requests per accept the dependency may see before attempts of
/// `criticality` are throttled (`k` for critical and default ones, `max(1, k / 2)` for
/// sheddable ones).
fn k_of(k: f64, criticality: Criticality) -> f64 {
    match criticality {
        Criticality::Critical | Criticality::Default => k,
        Criticality::Sheddable => (k / 2.0).max(1.0),
    }
}

/// The rule: the probability an attempt of `criticality` is throttled, given the window's
/// `counts` (see the [module docs](self)).
fn rejection_probability(counts: &Counts, k: f64, criticality: Criticality) -> f64 {
    let asked = counts.at_least(criticality) as f64;
    let allowed = k_of(k, criticality) * counts.accepts as f64;
    if asked <= allowed {
        return 0.0;
    }
    let own = counts.of(criticality) as f64;
    let probability = ((asked - allowed) / (own + 1.0)).min(1.0);
    match criticality {
        Criticality::Critical => probability.min(CRITICAL_MAX_PROBABILITY),
        _ => probability,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(critical: u64, default: u64, sheddable: u64, accepts: u64) -> Counts {
        Counts {
            critical,
            default,
            sheddable,
            accepts,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// With one criticality, the SRE book's formula: `(requests − K × accepts) /
    /// (requests + 1)`, never below zero.
    #[test]
    fn one_criticality_follows_the_book() {
        let p = rejection_probability(&counts(0, 100, 0, 10), 2.0, Criticality::Default);
        assert!(close(p, 80.0 / 101.0), "{p}");
        // At or under K × accepts: nothing is throttled.
        assert_eq!(
            rejection_probability(&counts(0, 20, 0, 10), 2.0, Criticality::Default),
            0.0
        );
        assert_eq!(
            rejection_probability(&counts(0, 0, 0, 0), 2.0, Criticality::Default),
            0.0
        );
        // Nothing accepted: nearly everything is throttled, never all of it.
        let p = rejection_probability(&counts(0, 99, 0, 0), 2.0, Criticality::Default);
        assert!(close(p, 0.99), "{p}");
        // A larger K throttles later.
        assert_eq!(
            rejection_probability(&counts(0, 100, 0, 10), 10.0, Criticality::Default),
            0.0
        );
    }

    /// Sheddable requests use K / 2 (at least 1): alone, they are throttled as soon as the
    /// dependency sees more than K / 2 requests per accept.
    #[test]
    fn sheddable_requests_use_half_of_k() {
        let p = rejection_probability(&counts(0, 0, 100, 10), 2.0, Criticality::Sheddable);
        assert!(close(p, 90.0 / 101.0), "{p}");
        let p = rejection_probability(&counts(0, 0, 100, 10), 4.0, Criticality::Sheddable);
        assert!(close(p, 80.0 / 101.0), "{p}");
        assert_eq!(k_of(1.5, Criticality::Sheddable), 1.0);
        assert_eq!(k_of(3.0, Criticality::Critical), 3.0);
    }

    /// The allowance `K × accepts` goes to critical requests first, then default ones, then
    /// sheddable ones: at ten times what the dependency accepts, the critical tenth is not
    /// throttled at all, the default ones mostly are, the sheddable ones all are.
    #[test]
    fn the_allowance_goes_to_the_most_critical_first() {
        let window = counts(10, 45, 50, 10);
        let critical = rejection_probability(&window, 2.0, Criticality::Critical);
        let default = rejection_probability(&window, 2.0, Criticality::Default);
        let sheddable = rejection_probability(&window, 2.0, Criticality::Sheddable);
        assert_eq!(critical, 0.0);
        assert!(close(default, (55.0 - 20.0) / 46.0), "{default}");
        assert_eq!(sheddable, 1.0);
        // What is sent: the critical 10 and a quarter of the default 45, about K × accepts.
        let sent = 10.0 + 45.0 * (1.0 - default);
        assert!((20.0..=21.0).contains(&sent), "{sent}");
    }

    /// However badly the dependency does, a quarter of the critical attempts are sent.
    #[test]
    fn critical_requests_are_never_throttled_above_the_cap() {
        let p = rejection_probability(&counts(1_000, 0, 0, 0), 2.0, Criticality::Critical);
        assert_eq!(p, CRITICAL_MAX_PROBABILITY);
        let p = rejection_probability(&counts(1_000, 0, 0, 0), 2.0, Criticality::Default);
        assert!(close(p, 1.0), "{p}");
        // Below the cap, the rule as for the others.
        let p = rejection_probability(&counts(30, 0, 0, 10), 2.0, Criticality::Critical);
        assert!(close(p, 10.0 / 31.0), "{p}");
    }

    /// `admit` draws from `fastrand`'s thread-local generator: seeded, the same attempts are
    /// throttled; over many, the share throttled is the probability. A throttled attempt is
    /// counted as a request, never an accept; one let through counts nothing until it ends.
    #[tokio::test(start_paused = true)]
    async fn admit_throttles_with_the_probability_and_counts_what_it_throttles() {
        let throttle = Throttle::new(ThrottleConfig::new());
        let now = Instant::now();
        for i in 0..100 {
            throttle.record(now, Criticality::Default, i < 10);
        }
        let p = throttle.probability(now, Criticality::Default);
        assert!(close(p, 80.0 / 101.0), "{p}");
        let run = || {
            fastrand::seed(7);
            (0..50)
                .map(|_| throttle.admit(now, Criticality::Critical).is_ok())
                .collect::<Vec<_>>()
        };
        // Critical ones are within the allowance: none is throttled, nothing is counted.
        assert!(run().iter().all(|&went| went));
        assert_eq!(throttle.counts(now), (100, 10));

        fastrand::seed(42);
        let first: Vec<bool> = (0..20)
            .map(|_| throttle.admit(now, Criticality::Sheddable).is_ok())
            .collect();
        let (requests, accepts) = throttle.counts(now);
        let throttled = first.iter().filter(|&&went| !went).count() as u64;
        assert_eq!((requests, accepts), (100 + throttled, 10));
        assert!(throttled > 0);

        let fresh = Throttle::new(ThrottleConfig::new());
        for i in 0..100 {
            fresh.record(now, Criticality::Default, i < 10);
        }
        fastrand::seed(42);
        let again: Vec<bool> = (0..20)
            .map(|_| fresh.admit(now, Criticality::Sheddable).is_ok())
            .collect();
        assert_eq!(first, again, "the same seed throttles the same attempts");

        // Over many draws, the share throttled is the probability.
        let many = Throttle::new(ThrottleConfig::new());
        for i in 0..10_000 {
            many.record(now, Criticality::Sheddable, i % 10 == 0);
        }
        let p = many.probability(now, Criticality::Default);
        assert_eq!(p, 0.0, "no default request asked yet");
        fastrand::seed(1);
        let mut throttled = 0;
        for _ in 0..2_000 {
            let p = many.probability(now, Criticality::Sheddable);
            if let Err(told) = many.admit(now, Criticality::Sheddable) {
                assert!(told > 0.0 && told <= 1.0);
                throttled += 1;
            }
            assert!(p > 0.85 && p < 0.95, "{p}");
        }
        assert!((1_700..=1_900).contains(&throttled), "{throttled} of 2000");
    }

    /// The window slides: once the rejections have left it, nothing is throttled.
    #[tokio::test(start_paused = true)]
    async fn throttling_ends_when_the_rejections_leave_the_window() {
        let config = ThrottleConfig::new().window(Duration::from_secs(10));
        let throttle = Throttle::new(config);
        let start = Instant::now();
        for _ in 0..50 {
            throttle.record(start, Criticality::Default, false);
        }
        assert!(throttle.probability(start, Criticality::Default) > 0.9);
        assert!(throttle.busy(start));
        let later = start + Duration::from_secs(5);
        for _ in 0..10 {
            throttle.record(later, Criticality::Default, true);
        }
        let p = throttle.probability(later, Criticality::Default);
        assert!(close(p, 40.0 / 61.0), "{p}");
        // At 10 s the rejections have left; the accepts of 5 s have not.
        let gone = start + Duration::from_secs(10);
        assert_eq!(throttle.counts(gone), (10, 10));
        assert_eq!(throttle.probability(gone, Criticality::Sheddable), 0.0);
        assert!(!throttle.busy(gone));
        assert!(throttle.admit(gone, Criticality::Sheddable).is_ok());
    }

    /// Sheddable retries stop at half the budget; once a critical retry has asked, default
    /// ones stop at three quarters, and the last quarter is the critical ones'. Without
    /// critical retries, default ones take the whole budget.
    #[tokio::test(start_paused = true)]
    async fn critical_retries_take_the_last_of_the_budget() {
        use crate::retry::{BudgetConfig, RetryBudget};
        // No ratio, 10 a second over 10 s: 100 retries.
        let config = BudgetConfig::new(0.0, 10, Duration::from_secs(10));
        let now = Instant::now();
        let take = |budget: &RetryBudget, criticality: Criticality| {
            let claim = criticality.budget_claim();
            (0..200)
                .take_while(|_| budget.withdraw_claiming(now, claim))
                .count()
        };
        let budget = RetryBudget::new(config);
        assert_eq!(take(&budget, Criticality::Default), 100);

        let budget = RetryBudget::new(config);
        assert_eq!(take(&budget, Criticality::Sheddable), 50);
        assert!(budget.withdraw_claiming(now, Criticality::Critical.budget_claim()));
        assert_eq!(take(&budget, Criticality::Default), 24);
        assert_eq!(take(&budget, Criticality::Sheddable), 0);
        assert_eq!(take(&budget, Criticality::Critical), 25);
        assert_eq!(take(&budget, Criticality::Critical), 0);
    }

    #[test]
    fn ranges_name_the_part() {
        let bad_k = ThrottleConfig::new().k(0.5);
        let refusal = bounds::Parts::check_parts(bad_k).err().unwrap_or_default();
        assert!(refusal.starts_with("k "), "{refusal}");
        let bad_window = ThrottleConfig::new().window(Duration::from_millis(10));
        let refusal = bounds::Parts::check_parts(bad_window)
            .err()
            .unwrap_or_default();
        assert!(refusal.starts_with("window "), "{refusal}");
        assert!(bounds::Parts::check_parts(ThrottleConfig::new()).is_ok());
        assert!(bounds::Parts::check_parts(ThrottleConfig::new().k(10.0)).is_ok());
    }
}
