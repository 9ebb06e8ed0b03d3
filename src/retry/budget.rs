//! The retry budget: retries may add at most `ratio` of the first attempts, plus
//! `min_per_second`, over a sliding `window` (Finagle's `RetryBudget`, Envoy's retry budget,
//! tower's `TpsBudget`). Without one, a full outage with 3 attempts triples the load on the
//! failing server; with the defaults it adds at most 20 % plus 10 retries a second.
//!
//! **The balance**, in whole retries: `⌊ratio × first attempts + min_per_second × window⌋ −
//! retries`, both counted over the window, so spent retries come back as they leave it. The
//! window slides in [`BUDGET_BUCKETS`] steps (a first attempt or a retry counts for between
//! 9/10 of the window and all of it). `ratio` is kept in millionths, so the sum is exact
//! (`0.29 × 100` is 29 here, 28.999… in floating point).
//!
//! **Deposits** (every call) go into the crate's striped sliding window (`src/window.rs`,
//! the breaker's): one `fetch_add` on the calling thread's own stripe, so threads do not
//! contend. **Withdrawals** (retries and hedges: rare) add up the deposits of every stripe
//! and the retries of the window, and count the retry with one compare-and-swap on the word
//! of the current step (its step number's low 32 bits, and its count): a withdrawal succeeds
//! only if that word has not changed since the balance was read, so withdrawals within one
//! step never overdraw, however many threads race. Two withdrawals that straddle a step
//! boundary write different words and may both pass: the overdraw is at most one per thread
//! withdrawing at that instant. A withdrawal never goes back in time: its step is at least
//! the newest any withdrawal used, so a caller passing an old `now` cannot spend retries
//! that already left the window.
//!
//! Step numbers are kept in 32 bits: a step's retries counted once again 2³² steps later (50
//! days with the shortest window, 136 years with the default) could make the budget smaller,
//! never larger, for one window, if no retry was made in that slot meanwhile.
//!
//! [`BUDGET_BUCKETS`]: crate::bounds::BUDGET_BUCKETS

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds::{self, BUDGET_BUCKETS};
use crate::window::{Outcomes, SUCCESS, Window, bucket_ms};

/// A retry budget: retries may add at most `ratio` of the first attempts plus
/// `min_per_second`, over a sliding `window`; when it is empty, a transient failure is
/// returned at once (kind [`BudgetExhausted`](crate::ErrorKind::BudgetExhausted)). Hedges
/// spend from it too. Kept per endpoint key.
///
/// The default: `ratio` 0.2, `min_per_second` 10, `window` 10 s. Against a server that fails
/// every request, 1,000 requests a second then cause at most 1,000 × 0.2 + 10 = 210 retries a
/// second, whatever the attempt limit.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// The share of first attempts that retries may add: 0 (only `min_per_second`) to 1 (one
    /// retry per first attempt). Precise to a millionth.
    pub ratio: f64,
    /// Retries allowed a second whatever the traffic, so a client that calls rarely may still
    /// retry (0 to 1,000,000).
    pub min_per_second: u32,
    /// How far back first attempts and retries count (10 ms to 1 hour; kept in 10 steps).
    pub window: Duration,
}

impl BudgetConfig {
    /// A budget of `ratio` of the first attempts plus `min_per_second` retries, over `window`.
    /// Ranges are checked when the client or the layer is built.
    pub fn new(ratio: f64, min_per_second: u32, window: Duration) -> Self {
        BudgetConfig {
            ratio,
            min_per_second,
            window,
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig::new(0.2, 10, Duration::from_secs(10))
    }
}

/// `ratio` and balances are kept in millionths of a retry.
pub(crate) const SCALE: u64 = 1_000_000;

/// One endpoint key's retry budget. See the [module docs](self).
pub(crate) struct RetryBudget {
    /// First attempts, one per call, in steps of `step_ms`.
    deposits: Outcomes,
    /// Retries: one word per step, `step number (low 32 bits) << 32 | count`. A power of two
    /// of at least [`BUDGET_BUCKETS`] slots, so a slot is reused only by a step that is out
    /// of the window.
    withdrawals: Box<[AtomicU64]>,
    /// The newest step any withdrawal used.
    newest: AtomicU64,
    /// `ratio` in millionths.
    ratio: u64,
    /// `min_per_second × window`, in millionths of a retry.
    reserve: u64,
    step_ms: u64,
    /// Instants are kept as milliseconds since this one.
    base: Instant,
    /// Until which step the retries that keep a share for reserving ones keep it: a window
    /// after the last reserving retry asked (0: none asked yet). See [`Claim`].
    reserved_until: AtomicU64,
}

/// What a retry may take of a budget's allowance (made by
/// [`Criticality`](crate::overload::Criticality)'s rule): it never takes the last `kept`
/// millionths of it, nor, for a window after a retry that `reserves` asked for one, the last
/// `kept_when_reserved`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) kept: u64,
    pub(crate) kept_when_reserved: u64,
    pub(crate) reserves: bool,
}

impl Claim {
    /// The whole retries of `allowed` this claim may not take, in a window `reserved` or
    /// not.
    fn kept(self, allowed: u64, reserved: bool) -> u64 {
        let share = if reserved {
            self.kept.max(self.kept_when_reserved)
        } else {
            self.kept
        };
        kept_back(allowed, share)
    }
}

impl RetryBudget {
    /// A full budget. Out-of-range settings are clamped (a ratio to 0..=1, a window to at
    /// least one step of 1 ms), never a panic; the builders refuse them before this.
    pub(crate) fn new(config: BudgetConfig) -> Self {
        let step_ms = bucket_ms(config.window, BUDGET_BUCKETS);
        // The window actually kept: whole steps of whole milliseconds.
        let window_ms = step_ms.saturating_mul(u64::from(BUDGET_BUCKETS));
        // NaN and negatives become 0; `as` saturates.
        let ratio = ((config.ratio.clamp(0.0, 1.0) * SCALE as f64).round() as u64).min(SCALE);
        let reserve = u64::from(config.min_per_second)
            .saturating_mul(window_ms)
            .saturating_mul(SCALE / 1000);
        let slots = BUDGET_BUCKETS.next_power_of_two() as usize;
        RetryBudget {
            deposits: Outcomes::new(Window::Time {
                length: config.window,
                buckets: BUDGET_BUCKETS,
            }),
            withdrawals: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            newest: AtomicU64::new(0),
            ratio,
            reserve,
            step_ms,
            base: Instant::now(),
            reserved_until: AtomicU64::new(0),
        }
    }

    /// Its arithmetic, for a budget counted elsewhere the same way (the fleet's, feature
    /// `redis`): the step in milliseconds, `ratio` and the reserve in millionths.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn terms(&self) -> (u64, u64, u64) {
        (self.step_ms, self.ratio, self.reserve)
    }

    /// A first attempt went out. Reads no clock: `now` is the call's start.
    #[inline]
    pub(crate) fn deposit(&self, now: Instant) {
        self.deposits.record(SUCCESS, self.ms(now));
    }

    /// [`withdraw`](Self::withdraw), for a retry that may take what `claim` says: `false`
    /// once no more than its kept share is left.
    pub(crate) fn withdraw_claiming(&self, now: Instant, claim: Claim) -> bool {
        let step = self.step(now);
        let allowed = self.allowed(step);
        let kept = self.kept(step, allowed, claim);
        let slot = self.slot(step);
        loop {
            let word = slot.load(SeqCst);
            if self.spent(step, word).saturating_add(kept) >= allowed {
                return false;
            }
            let next = if tag(word) == tag_of(step) {
                if count(word) == u64::from(u32::MAX) {
                    return false;
                }
                word + 1
            } else {
                // An older step's slot (the newest step rules out a newer one): start it over.
                pack(step, 1)
            };
            // Fails if another withdrawal changed the word since the balance was read.
            if slot.compare_exchange(word, next, SeqCst, SeqCst).is_ok() {
                return true;
            }
        }
    }

    /// The whole retries of the allowance at `step` (`allowed`) that a retry claiming
    /// `claim` may not take; one that reserves marks the window for the others.
    fn kept(&self, step: u64, allowed: u64, claim: Claim) -> u64 {
        if claim.reserves {
            self.reserved_until
                .fetch_max(step.saturating_add(u64::from(BUDGET_BUCKETS)), SeqCst);
        }
        let reserved = step < self.reserved_until.load(SeqCst);
        claim.kept(allowed, reserved)
    }

    /// The whole retries of this budget's allowance at `now` that a retry claiming `claim`
    /// may not take (marking the window if it reserves): for the fleet's balance, against
    /// this replica's allowance (the share of the fleet's it sees).
    #[cfg(feature = "redis")]
    pub(crate) fn kept_at(&self, now: Instant, claim: Claim) -> u64 {
        if claim == Claim::default() {
            return 0;
        }
        let step = self.step(now);
        self.kept(step, self.allowed(step), claim)
    }

    /// Whole retries left at `now`.
    pub(crate) fn available(&self, now: Instant) -> u64 {
        let step = self.step(now);
        let word = self.slot(step).load(SeqCst);
        self.allowed(step).saturating_sub(self.spent(step, word))
    }

    /// Whether a retry spent at `now` is still in the window: then the budget is drawn down,
    /// and dropping it (for a fresh one) would hand those retries out again. Asked only when
    /// the map of endpoints is full (see [`crate::keyed`]).
    pub(crate) fn drawn_down(&self, now: Instant) -> bool {
        let step = self.step(now);
        self.spent(step, self.slot(step).load(SeqCst)) > 0
    }

    #[inline]
    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// `now`'s step, or the newest any withdrawal used if that is later.
    fn step(&self, now: Instant) -> u64 {
        let step = self.ms(now) / self.step_ms;
        self.newest.fetch_max(step, SeqCst).max(step)
    }

    fn slot(&self, step: u64) -> &AtomicU64 {
        // The length is a power of two: the mask keeps the index in range.
        &self.withdrawals[(step as usize) & (self.withdrawals.len() - 1)]
    }

    /// Whole retries the window allows at `step`, before any is spent.
    fn allowed(&self, step: u64) -> u64 {
        let counts = self.deposits.totals(step.saturating_mul(self.step_ms));
        // Only successes are recorded, so a carry out of a bucket's 32-bit call count lands
        // in its failures: together they are one 64-bit count.
        let deposits = counts
            .calls
            .saturating_add(counts.failures.saturating_mul(1 << 32));
        self.ratio
            .saturating_mul(deposits)
            .saturating_add(self.reserve)
            / SCALE
    }

    /// Retries spent in the window at `step`, reading `step`'s own slot as `current`.
    fn spent(&self, step: u64, current: u64) -> u64 {
        let mine = (step as usize) & (self.withdrawals.len() - 1);
        let now = tag_of(step);
        self.withdrawals
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let word = if index == mine {
                    current
                } else {
                    slot.load(SeqCst)
                };
                // Tags are 32 bits: so is their distance, across a wrap too.
                let age = now.wrapping_sub(tag(word)) & u64::from(u32::MAX);
                if age < u64::from(BUDGET_BUCKETS) {
                    count(word)
                } else {
                    0
                }
            })
            .sum()
    }
}

/// The whole retries of an `allowed` many that a withdrawal keeping `keep` millionths of
/// it may not take (rounded down: a budget of fewer than 10 retries keeps none of them back
/// at 10 %).
pub(crate) fn kept_back(allowed: u64, keep: u64) -> u64 {
    let kept = u128::from(allowed) * u128::from(keep.min(SCALE)) / u128::from(SCALE);
    u64::try_from(kept).unwrap_or(allowed)
}

/// A step number's low 32 bits, as kept in a slot.
fn tag_of(step: u64) -> u64 {
    step & u64::from(u32::MAX)
}

fn tag(word: u64) -> u64 {
    word >> 32
}

fn count(word: u64) -> u64 {
    word & u64::from(u32::MAX)
}

fn pack(step: u64, count: u64) -> u64 {
    tag_of(step) << 32 | count
}

/// A retry budget's deposit, for `benches/breaker.rs`; not part of the API.
#[doc(hidden)]
pub struct BenchBudget {
    budget: RetryBudget,
    now: Instant,
}

impl BenchBudget {
    /// What every call does: deposit a first attempt, at the instant the handle was made
    /// (callers hold their call's start).
    pub fn deposit(&self) {
        self.budget.deposit(self.now);
    }
}

/// A default retry budget, for `benches/breaker.rs`; not part of the API.
#[doc(hidden)]
pub fn __bench_budget() -> BenchBudget {
    BenchBudget {
        budget: RetryBudget::new(BudgetConfig::default()),
        now: Instant::now(),
    }
}

/// Each part within its range in `bounds.rs`.
impl bounds::Parts for BudgetConfig {
    /// `self` if `ratio`, `min_per_second` and `window` are in range; else why not, naming
    /// the first one that is not.
    fn check_parts(self) -> Result<Self, String> {
        bounds::BUDGET_RATIO
            .check(self.ratio)
            .map_err(|e| format!("ratio {e}"))?;
        bounds::MIN_PER_SECOND
            .check(self.min_per_second)
            .map_err(|e| format!("min_per_second {e}"))?;
        bounds::BUDGET_WINDOW
            .check(self.window)
            .map_err(|e| format!("window {e}"))?;
        Ok(self)
    }
}

#[cfg(test)]
impl RetryBudget {
    /// A retry or a hedge wants to go out: `true` if the budget had one (now spent), `false`
    /// if it is empty.
    pub(crate) fn withdraw(&self, now: Instant) -> bool {
        self.withdraw_claiming(now, Claim::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn budget(ratio: f64, min_per_second: u32, window: Duration) -> RetryBudget {
        RetryBudget::new(BudgetConfig::new(ratio, min_per_second, window))
    }

    /// Withdraws until the budget says no; how many it allowed.
    fn drain(budget: &RetryBudget, now: Instant) -> u64 {
        let mut spent = 0;
        while budget.withdraw(now) {
            spent += 1;
            assert!(spent <= 1_000_000, "the budget never ran out");
        }
        spent
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_first_attempts_the_minimum_alone_is_allowed() {
        let budget = RetryBudget::new(BudgetConfig::default());
        let now = Instant::now();
        assert_eq!(budget.available(now), 100);
        assert_eq!(drain(&budget, now), 100);
        assert_eq!(budget.available(now), 0);
        assert!(!budget.withdraw(now));
    }

    #[tokio::test(start_paused = true)]
    async fn first_attempts_add_their_ratio() {
        let budget = RetryBudget::new(BudgetConfig::default());
        let now = Instant::now();
        for _ in 0..1_000 {
            budget.deposit(now);
        }
        assert_eq!(budget.available(now), 300);
        assert_eq!(drain(&budget, now), 300);
        // Each new first attempt earns a fifth of a retry.
        for _ in 0..4 {
            budget.deposit(now);
        }
        assert!(!budget.withdraw(now));
        budget.deposit(now);
        assert!(budget.withdraw(now));
        assert!(!budget.withdraw(now));
    }

    #[tokio::test(start_paused = true)]
    async fn the_ratio_is_exact() {
        // 0.29 × 100 is 28.999999999999996 in floating point.
        let budget = budget(0.29, 0, 10 * SECOND);
        let now = Instant::now();
        for _ in 0..100 {
            budget.deposit(now);
        }
        assert_eq!(drain(&budget, now), 29);
    }

    #[tokio::test(start_paused = true)]
    async fn spent_retries_come_back_as_they_leave_the_window() {
        let budget = RetryBudget::new(BudgetConfig::default());
        let start = Instant::now();
        assert_eq!(drain(&budget, start), 100);
        tokio::time::advance(5 * SECOND).await;
        assert_eq!(budget.available(Instant::now()), 0);
        tokio::time::advance(5 * SECOND - Duration::from_millis(1)).await;
        assert_eq!(budget.available(Instant::now()), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        // 10 s on, the first step's retries have left.
        assert_eq!(budget.available(Instant::now()), 100);
        tokio::time::advance(10 * SECOND).await;
        assert_eq!(drain(&budget, Instant::now()), 100);
        // An older `now` spends from the newest step, not from a window with no retries.
        assert_eq!(drain(&budget, start + 10 * SECOND), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn refill_is_gradual() {
        let budget = RetryBudget::new(BudgetConfig::default());
        let start = Instant::now();
        for _ in 0..50 {
            assert!(budget.withdraw(start));
        }
        for _ in 0..50 {
            assert!(budget.withdraw(start + 5 * SECOND));
        }
        assert_eq!(budget.available(start + 9 * SECOND), 0);
        assert_eq!(budget.available(start + 10 * SECOND), 50);
        assert_eq!(budget.available(start + 15 * SECOND), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn old_first_attempts_expire_after_the_window() {
        let budget = RetryBudget::new(BudgetConfig::default());
        let start = Instant::now();
        for _ in 0..1_000 {
            budget.deposit(start);
        }
        for _ in 0..1_000 {
            budget.deposit(start + 6 * SECOND);
        }
        assert_eq!(budget.available(start + 6 * SECOND), 500);
        assert_eq!(budget.available(start + 10 * SECOND), 300);
        assert_eq!(budget.available(start + 16 * SECOND), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ratio_or_minimum_allows_only_the_other() {
        let now = Instant::now();
        let only_minimum = budget(0.0, 2, SECOND);
        for _ in 0..1_000 {
            only_minimum.deposit(now);
        }
        assert_eq!(drain(&only_minimum, now), 2);
        let only_ratio = budget(1.0, 0, SECOND);
        assert_eq!(drain(&only_ratio, now), 0);
        only_ratio.deposit(now);
        assert_eq!(drain(&only_ratio, now), 1);
    }

    /// The builders refuse these; the budget itself must not panic on them.
    #[tokio::test(start_paused = true)]
    async fn settings_out_of_range_do_not_panic() {
        let now = Instant::now();
        let far = now + 100 * 365 * 24 * 3600 * SECOND;
        for config in [
            BudgetConfig::new(f64::NAN, 0, Duration::ZERO),
            BudgetConfig::new(-1.0, u32::MAX, Duration::MAX),
            BudgetConfig::new(f64::INFINITY, u32::MAX, Duration::from_nanos(1)),
        ] {
            let budget = RetryBudget::new(config);
            budget.deposit(now);
            budget.deposit(far);
            let _ = budget.withdraw(now);
            let _ = budget.withdraw(far);
            let _ = budget.available(far);
        }
        assert_eq!(drain(&budget(f64::NAN, 0, SECOND), now), 0);
        assert_eq!(drain(&budget(7.0, 0, SECOND), now), 0);
    }

    /// A withdrawal keeping a share back stops while that share is left; one keeping none
    /// takes it. A share kept only for reserving retries is kept for a window after one
    /// asked.
    #[tokio::test(start_paused = true)]
    async fn a_withdrawal_keeping_a_share_leaves_it_to_others() {
        // 0 ratio, 10 a second over 10 s: 100 retries.
        let budget = RetryBudget::new(BudgetConfig::new(0.0, 10, 10 * SECOND));
        let now = Instant::now();
        let take = |claim: Claim| {
            (0..200)
                .take_while(|_| budget.withdraw_claiming(now, claim))
                .count()
        };
        let tenth = Claim {
            kept: SCALE / 10,
            ..Claim::default()
        };
        assert_eq!(take(tenth), 90);
        assert_eq!(budget.available(now), 10);
        assert_eq!(take(Claim::default()), 10);
        assert_eq!(kept_back(9, SCALE / 10), 0);
        assert_eq!(kept_back(100, SCALE / 5), 20);
        assert_eq!(kept_back(u64::MAX, SCALE * 2), u64::MAX);

        let budget = RetryBudget::new(BudgetConfig::new(0.0, 10, 10 * SECOND));
        let take = |claim: Claim| {
            (0..200)
                .take_while(|_| budget.withdraw_claiming(now, claim))
                .count()
        };
        let polite = Claim {
            kept_when_reserved: SCALE / 4,
            ..Claim::default()
        };
        let reserving = Claim {
            reserves: true,
            ..Claim::default()
        };
        // No reserving retry yet: nothing is kept back.
        assert_eq!(take(polite), 100);
        // A window later (those retries have left it), one reserving retry: for a window,
        // the others leave it a quarter.
        let later = now + 10 * SECOND;
        assert!(budget.withdraw_claiming(later, reserving));
        let take_at = |at, claim| {
            (0..200)
                .take_while(|_| budget.withdraw_claiming(at, claim))
                .count()
        };
        assert_eq!(take_at(later, polite), 74);
        assert_eq!(take_at(later, reserving), 25);
        // A window after the last reserving retry asked, nothing is kept back.
        let much_later = later + 10 * SECOND;
        assert_eq!(take_at(much_later, polite), 100);
    }

    /// Threads deposit while others withdraw: never a panic, never more retries than the
    /// first attempts allow (all in one step, so the compare-and-swap makes it exact).
    #[tokio::test(start_paused = true)]
    async fn concurrent_deposits_and_withdrawals_stay_within_the_budget() {
        let budget = budget(0.5, 0, 10 * SECOND);
        let now = Instant::now();
        let depositors = 4;
        let per_thread = 20_000u64;
        let withdrawn = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..depositors {
                scope.spawn(|| {
                    for _ in 0..per_thread {
                        budget.deposit(now);
                    }
                });
            }
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..per_thread {
                        if budget.withdraw(now) {
                            withdrawn.fetch_add(1, SeqCst);
                        }
                    }
                });
            }
        });
        let withdrawn = withdrawn.into_inner();
        let rest = drain(&budget, now);
        // Two threads sharing a stripe may lose a deposit now and then, never add one.
        let allowed = depositors * per_thread / 2;
        assert!(withdrawn + rest <= allowed, "{withdrawn} + {rest}");
        assert!(withdrawn + rest >= allowed - 10, "{withdrawn} + {rest}");
        assert_eq!(budget.available(now), 0);
    }
}
