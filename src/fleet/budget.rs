//! A retry budget counted fleet-wide: local counts flushed by the background sync into
//! per-step counters in Redis, withdrawals checked against the last fleet balance seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::SeqCst};

use tokio::time::Instant;

use super::link::FleetInner;
use crate::bounds::BUDGET_BUCKETS;
use crate::retry::BudgetConfig;
// `ratio` and balances in millionths of a retry, as the local budget keeps them.
use crate::retry::{BUDGET_SCALE as SCALE, BudgetClaim, RetryBudget};

/// One endpoint key's retry budget, counted across the fleet: see the [module docs](super).
/// Made by [`Fleet::budget`](super::Fleet::budget); cheap to clone.
#[derive(Clone)]
pub struct SharedBudget(Arc<BudgetShared>);

pub(crate) struct BudgetShared {
    fleet: Arc<FleetInner>,
    redis_key: String,
    /// Used while the fleet's balance is unknown or stale; every deposit is counted here too.
    local: RetryBudget,
    /// Deposits and withdrawals not flushed to Redis yet.
    deposits: AtomicU64,
    withdrawals: AtomicU64,
    /// The fleet's balance at the last sync, minus what this replica withdrew since.
    balance: AtomicI64,
    /// When that balance was learned, in microseconds since the fleet's base; 0: never.
    learned: AtomicU64,
    step_ms: u64,
    /// `ratio` in millionths.
    ratio: u64,
    /// `min_per_second × window`, in millionths of a retry.
    reserve: u64,
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("key", &self.0.redis_key)
            .field("available", &self.available(Instant::now()))
            .finish()
    }
}

impl SharedBudget {
    pub(crate) fn new(fleet: &Arc<FleetInner>, key: &str, config: BudgetConfig) -> Self {
        // The local budget's arithmetic, so that both count the same retries from the same
        // first attempts.
        let local = RetryBudget::new(config);
        let (step_ms, ratio, reserve) = local.terms();
        let shared = Arc::new(BudgetShared {
            fleet: fleet.clone(),
            redis_key: fleet.key("budget", key),
            local,
            deposits: AtomicU64::new(0),
            withdrawals: AtomicU64::new(0),
            balance: AtomicI64::new(0),
            learned: AtomicU64::new(0),
            step_ms,
            ratio,
            reserve,
        });
        fleet.add_budget(&shared);
        let _ = fleet.link();
        SharedBudget(shared)
    }

    /// A first attempt went out at `now`.
    #[inline]
    pub fn deposit(&self, now: Instant) {
        let shared = &self.0;
        shared.local.deposit(now);
        // Not while Redis is down: a whole outage's deposits flushed at once into one step
        // would inflate the fleet's budget.
        if shared.fleet.is_up() {
            shared.deposits.fetch_add(1, SeqCst);
        }
    }

    /// A retry (or hedge) wants to go at `now`: `true` if the budget had one (now spent).
    /// Against the fleet's balance while it is fresh, else against the local budget.
    pub fn withdraw(&self, now: Instant) -> bool {
        self.withdraw_claiming(now, BudgetClaim::default())
    }

    /// [`withdraw`](Self::withdraw), for a retry that may take what `claim` says (see
    /// [`Criticality`](crate::overload::Criticality)): of the local budget's allowance, or,
    /// against the fleet's balance, of this replica's own (the share of the fleet's it sees).
    pub(crate) fn withdraw_claiming(&self, now: Instant, claim: BudgetClaim) -> bool {
        let shared = &self.0;
        if !shared.fresh(now) {
            let spent = shared.local.withdraw_claiming(now, claim);
            // The retry goes out all the same: the fleet counts it, unless Redis is down (a
            // whole outage's retries flushed into one step would lock everyone out).
            if spent && shared.fleet.is_up() {
                shared.withdrawals.fetch_add(1, SeqCst);
            }
            return spent;
        }
        let kept = i64::try_from(shared.local.kept_at(now, claim)).unwrap_or(i64::MAX);
        let spent = shared
            .balance
            .fetch_update(SeqCst, SeqCst, |left| (left > kept).then(|| left - 1))
            .is_ok();
        if spent {
            shared.withdrawals.fetch_add(1, SeqCst);
        }
        spent
    }

    /// Whole retries left at `now`, by the same view `withdraw` would use.
    pub fn available(&self, now: Instant) -> u64 {
        let shared = &self.0;
        if shared.fresh(now) {
            u64::try_from(shared.balance.load(SeqCst)).unwrap_or(0)
        } else {
            shared.local.available(now)
        }
    }
}

impl BudgetShared {
    /// Whether the fleet's balance may be used at `now`: Redis is up and the balance is at
    /// most two syncs (and a timeout) old.
    fn fresh(&self, now: Instant) -> bool {
        let learned = self.learned.load(SeqCst);
        if learned == 0 || !self.fleet.sharing() {
            return false;
        }
        let config = self.fleet.config();
        let stale = (2 * config.sync_interval + config.timeout).as_micros();
        u128::from(self.fleet.micros(now).saturating_sub(learned)) <= stale
    }

    pub(crate) fn redis_key(&self) -> &str {
        &self.redis_key
    }

    /// The step in milliseconds and the steps of a window, as the script counts them.
    pub(crate) fn steps(&self) -> (u64, u32) {
        (self.step_ms, BUDGET_BUCKETS)
    }

    /// The deposits and withdrawals to flush now (no longer pending).
    pub(crate) fn take_pending(&self) -> (u64, u64) {
        (
            self.deposits.swap(0, SeqCst),
            self.withdrawals.swap(0, SeqCst),
        )
    }

    /// A flush that may not have reached Redis: its withdrawals are flushed again next time
    /// (counting a retry twice errs on the safe side), its deposits dropped (for the same
    /// reason).
    pub(crate) fn not_flushed(&self, (_, withdrawals): (u64, u64)) {
        self.withdrawals.fetch_add(withdrawals, SeqCst);
    }

    /// The fleet's sums over the window, this replica's last flush included, learned at
    /// `now` (microseconds since the fleet's base).
    pub(crate) fn learn(&self, deposits: i64, withdrawals: i64, now: u64) {
        let deposits = u64::try_from(deposits).unwrap_or(0);
        let allowed = self
            .ratio
            .saturating_mul(deposits)
            .saturating_add(self.reserve)
            / SCALE;
        let allowed = i64::try_from(allowed).unwrap_or(i64::MAX);
        // Withdrawn here since the flush, not in the sums yet. (One made between these two
        // lines is counted against the old balance, not this one: at most one per thread.)
        let since = i64::try_from(self.withdrawals.load(SeqCst)).unwrap_or(i64::MAX);
        let balance = allowed
            .saturating_sub(withdrawals.max(0))
            .saturating_sub(since);
        self.balance.store(balance, SeqCst);
        self.learned.store(now.max(1), SeqCst);
    }
}
