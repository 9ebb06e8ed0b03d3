//! The fleet's one Redis connection: started on first use inside a tokio runtime, every call
//! bounded by the timeout, up or down as the last call went (logged once per change), and the
//! background task that synchronises holds and budgets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::budget::BudgetShared;
use super::config::FleetConfig;
use super::hold::HoldShared;
use crate::Error;

/// Keys per sync script: a script runs alone in Redis, so a fleet of many endpoints syncs in
/// several short ones.
const SYNC_CHUNK: usize = 64;

/// Holds first (`ARGV[1]` of them, each with the milliseconds to publish, 0 for none), then
/// budgets (each with its deposits, withdrawals, step in ms and steps per window). Answers,
/// per hold, its milliseconds left (0: none), then, per budget, the fleet's deposits and
/// withdrawals over the window.
static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holds = tonumber(ARGV[1])
local out = {}
for i = 1, holds do
  local publish = tonumber(ARGV[1 + i])
  local left = redis.call('PTTL', KEYS[i])
  if publish > 0 and left < publish then
    redis.call('SET', KEYS[i], '1', 'PX', string.format('%.0f', publish))
    left = publish
  end
  if left < 0 then left = 0 end
  out[#out + 1] = left
end
local a = 1 + holds
for i = holds + 1, #KEYS do
  local key = KEYS[i]
  local d, w = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local step, steps = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  a = a + 4
  local b = math.floor(now / step)
  local suffix = ':' .. string.format('%.0f', step) .. ':' .. string.format('%.0f', b)
  if d > 0 then redis.call('HINCRBY', key, 'd' .. suffix, d) end
  if w > 0 then redis.call('HINCRBY', key, 'w' .. suffix, w) end
  local sd, sw = 0, 0
  local fields = redis.call('HGETALL', key)
  for j = 1, #fields, 2 do
    local kind, s, n = string.match(fields[j], '^(%a):(%d+):(%d+)$')
    s, n = tonumber(s), tonumber(n)
    if s == step and n > b - steps then
      if kind == 'd' then sd = sd + tonumber(fields[j + 1]) else sw = sw + tonumber(fields[j + 1]) end
    elseif s == nil or s == step or (n + 1) * s < now - 3600000 then
      redis.call('HDEL', key, fields[j])
    end
  end
  local ttl = step * (steps + 1)
  if (d > 0 or w > 0) and redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, string.format('%.0f', ttl))
  end
  out[#out + 1] = sd
  out[#out + 1] = sw
end
return out
",
    )
});

/// What a [`Fleet`](super::Fleet) shares with its handles.
pub(crate) struct FleetInner {
    config: FleetConfig,
    client: redis::Client,
    /// Started on first use inside a runtime, and again on a later use once that runtime
    /// has shut down (its tasks, the sync's and the connection's, died with it).
    link: ArcSwapOption<Link>,
    /// One start at a time.
    starting: Mutex<()>,
    /// Starting failed: local limits for good.
    broken: AtomicBool,
    up: AtomicBool,
    round_trips: AtomicU64,
    /// Wakes the sync task before its interval (a hold to publish, a key to learn).
    nudge: Arc<Notify>,
    /// One sync at a time: a sync asked for (`Fleet::sync`) returns after every count made
    /// before it is flushed, even those a background sync had taken and was still sending.
    syncing: tokio::sync::Mutex<()>,
    registry: Mutex<Registry>,
    /// Instants are kept as microseconds since this one.
    base: Instant,
}

pub(crate) struct Link {
    conn: ConnectionManager,
    pub(crate) handle: Handle,
    /// The sync task: finished only when its runtime shut down (or the fleet is gone).
    sync: JoinHandle<()>,
}

impl Link {
    fn alive(&self) -> bool {
        !self.sync.is_finished()
    }
}

/// The handles the sync task serves, weakly: an endpoint dropped by its owner's bounded
/// registry leaves this one at the next sync.
#[derive(Default)]
struct Registry {
    holds: HashMap<Arc<str>, Weak<HoldShared>>,
    budgets: Vec<Weak<BudgetShared>>,
}

impl FleetInner {
    pub(crate) fn new(config: FleetConfig) -> Result<Arc<Self>, Error> {
        let client = config.check()?;
        Ok(Arc::new(FleetInner {
            config,
            client,
            link: ArcSwapOption::empty(),
            starting: Mutex::new(()),
            broken: AtomicBool::new(false),
            up: AtomicBool::new(true),
            round_trips: AtomicU64::new(0),
            nudge: Arc::new(Notify::new()),
            syncing: tokio::sync::Mutex::new(()),
            registry: Mutex::new(Registry::default()),
            base: Instant::now(),
        }))
    }

    pub(crate) fn config(&self) -> &FleetConfig {
        &self.config
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(SeqCst)
    }

    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.load(SeqCst)
    }

    /// The full Redis key of `kind` for endpoint `key`.
    pub(crate) fn key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.config.prefix)
    }

    /// `now` in microseconds since the fleet was made.
    pub(crate) fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// The instant `micros` microseconds after the fleet was made.
    pub(crate) fn instant(&self, micros: u64) -> Instant {
        self.base + Duration::from_micros(micros)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Whether handles should share through Redis now: it answered last, and the connection
    /// is (or can be) started here. Starts it on first use.
    pub(crate) fn sharing(self: &Arc<Self>) -> bool {
        // The common case reads two words and clones nothing. A link whose runtime is gone
        // is started again here even while down: its sync task, which would find Redis
        // back, died with it.
        let running = self.link.load().as_ref().is_some_and(|link| link.alive());
        let linked = running || self.link().is_some();
        self.is_up() && linked
    }

    /// The connection, started now if this is the first use inside a runtime, or if the
    /// runtime it was started on has shut down (then handles use their local limits until
    /// Redis answers on the new one).
    pub(crate) fn link(self: &Arc<Self>) -> Option<Arc<Link>> {
        if let Some(link) = self.link.load_full().filter(|link| link.alive()) {
            return Some(link);
        }
        // Outside a runtime: local limits, and try again on the next call.
        let handle = Handle::try_current().ok()?;
        let _one = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        let dead = self.link.load_full();
        if let Some(link) = dead.clone().filter(|link| link.alive()) {
            return Some(link);
        }
        if self.broken.load(SeqCst) {
            return None;
        }
        let Some(link) = self.start(handle) else {
            self.broken.store(true, SeqCst);
            return None;
        };
        let link = Arc::new(link);
        self.link.store(Some(link.clone()));
        if dead.is_some() {
            self.lost_runtime();
        }
        Some(link)
    }

    /// The runtime the connection ran on has shut down: the handles use their local limits
    /// until Redis answers on a connection started on a live runtime.
    pub(crate) fn lost_runtime(&self) {
        self.mark_down(&"the tokio runtime its connection ran on has shut down");
    }

    fn start(self: &Arc<Self>, handle: Handle) -> Option<Link> {
        let manager = ConnectionManagerConfig::new()
            // Reconnecting is nobody's wait (every call gives up at the timeout), so it may
            // take its time, and never stops trying.
            .set_connection_timeout(Some(self.config.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(usize::MAX);
        let conn = match ConnectionManager::new_lazy_with_config(self.client.clone(), manager) {
            Ok(conn) => conn,
            Err(e) => {
                self.mark_down(&e);
                return None;
            }
        };
        let sync = handle.spawn(sync_task(
            Arc::downgrade(self),
            self.nudge.clone(),
            self.config.sync_interval,
        ));
        Some(Link { conn, handle, sync })
    }

    /// Runs `script` within the timeout: its answer, or `None` (Redis unreachable, slow, or
    /// refusing), which turns the fleet to local limits until a call succeeds again.
    pub(crate) async fn call<T: FromRedisValue>(
        self: &Arc<Self>,
        script: &ScriptInvocation<'_>,
    ) -> Option<T> {
        let mut conn = self.link()?.conn.clone();
        self.round_trips.fetch_add(1, SeqCst);
        match tokio::time::timeout(self.config.timeout, script.invoke_async(&mut conn)).await {
            Ok(Ok(answer)) => {
                self.mark_up();
                Some(answer)
            }
            Ok(Err(e)) => {
                self.mark_down(&e);
                None
            }
            Err(_) => {
                let shown = crate::error::Short(self.config.timeout);
                self.mark_down(&format_args!("no answer within {shown}"));
                None
            }
        }
    }

    /// A `PING`, to learn whether Redis is back when no handle has anything to sync.
    async fn ping(self: &Arc<Self>) -> bool {
        let Some(link) = self.link() else {
            return false;
        };
        let mut conn = link.conn.clone();
        self.round_trips.fetch_add(1, SeqCst);
        let ping = redis::cmd("PING");
        let answer = tokio::time::timeout(
            self.config.timeout,
            ping.query_async::<redis::Value>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok(_)) => {
                self.mark_up();
                true
            }
            Ok(Err(e)) => {
                self.mark_down(&e);
                false
            }
            Err(_) => {
                let shown = crate::error::Short(self.config.timeout);
                self.mark_down(&format_args!("no answer within {shown}"));
                false
            }
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, SeqCst) {
            tracing::info!(
                prefix = %self.config.prefix,
                "fleet: redis available again, sharing limits"
            );
        }
    }

    fn mark_down(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, SeqCst) {
            tracing::warn!(
                prefix = %self.config.prefix,
                error = %crate::redact::text(&why.to_string()),
                "fleet: redis unavailable, using local limits"
            );
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding it; were it poisoned, the maps are still whole.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hold of `key`: the live one if there is one, else a new one made by `make`.
    pub(crate) fn hold_for(
        &self,
        key: &str,
        make: impl FnOnce() -> Arc<HoldShared>,
    ) -> Arc<HoldShared> {
        let mut registry = self.registry();
        if let Some(hold) = registry.holds.get(key).and_then(Weak::upgrade) {
            return hold;
        }
        let hold = make();
        registry.holds.insert(Arc::from(key), Arc::downgrade(&hold));
        // Learn at once whether the fleet holds it already (this replica's first call there
        // may otherwise go out up to a sync interval into another replica's hold).
        self.nudge();
        hold
    }

    /// The live hold of `key`, if any: a lease refill tells it what Redis holds.
    pub(crate) fn live_hold(&self, key: &str) -> Option<Arc<HoldShared>> {
        self.registry().holds.get(key).and_then(Weak::upgrade)
    }

    pub(crate) fn add_budget(&self, budget: &Arc<BudgetShared>) {
        self.registry().budgets.push(Arc::downgrade(budget));
        // Learn the fleet's balance at once: until then this replica uses its local budget.
        self.nudge();
    }

    /// Wakes the sync task now.
    pub(crate) fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// One sync: every live hold and budget, in chunks of [`SYNC_CHUNK`] keys, or a `PING`
    /// when there are none and Redis was down. Whether Redis answered every chunk.
    pub(crate) async fn sync(self: &Arc<Self>) -> bool {
        let _one = self.syncing.lock().await;
        let (holds, budgets) = {
            let mut registry = self.registry();
            registry.holds.retain(|_, hold| hold.strong_count() > 0);
            registry.budgets.retain(|budget| budget.strong_count() > 0);
            let holds: Vec<_> = registry.holds.values().filter_map(Weak::upgrade).collect();
            let budgets: Vec<_> = registry.budgets.iter().filter_map(Weak::upgrade).collect();
            (holds, budgets)
        };
        if holds.is_empty() && budgets.is_empty() {
            return self.is_up() || self.ping().await;
        }
        // Holds first, then budgets, at most SYNC_CHUNK keys a script: one round trip for
        // most fleets.
        let (mut held, mut budgeted) = (holds.as_slice(), budgets.as_slice());
        let mut answered = true;
        while !held.is_empty() || !budgeted.is_empty() {
            let (these_holds, rest) = held.split_at(held.len().min(SYNC_CHUNK));
            let room = SYNC_CHUNK - these_holds.len();
            let (these_budgets, others) = budgeted.split_at(budgeted.len().min(room));
            answered &= self.sync_chunk(these_holds, these_budgets).await;
            (held, budgeted) = (rest, others);
        }
        answered
    }

    async fn sync_chunk(
        self: &Arc<Self>,
        holds: &[Arc<HoldShared>],
        budgets: &[Arc<BudgetShared>],
    ) -> bool {
        let sent = self.micros(Instant::now());
        let mut script = SYNC.prepare_invoke();
        script.arg(holds.len());
        let publishing: Vec<_> = holds.iter().map(|hold| hold.to_publish(sent)).collect();
        for (hold, (_, ms)) in holds.iter().zip(&publishing) {
            script.key(hold.redis_key()).arg(*ms);
        }
        let mut flushed = Unflushed {
            budgets,
            taken: budgets.iter().map(|budget| budget.take_pending()).collect(),
        };
        for (budget, (deposits, withdrawals)) in budgets.iter().zip(&flushed.taken) {
            let (step, steps) = budget.steps();
            script
                .key(budget.redis_key())
                .arg(*deposits)
                .arg(*withdrawals)
                .arg(step)
                .arg(steps);
        }
        let answer: Option<Vec<i64>> = self.call(&script).await;
        let Some(answer) = answer.filter(|a| a.len() == holds.len() + 2 * budgets.len()) else {
            return false;
        };
        flushed.taken.clear();
        let (held, sums) = answer.split_at(holds.len());
        for ((hold, (publish, _)), left) in holds.iter().zip(publishing).zip(held) {
            hold.published(publish);
            hold.learn(sent, *left);
        }
        let now = self.micros(Instant::now());
        for (budget, sum) in budgets.iter().zip(sums.chunks_exact(2)) {
            if let [deposits, withdrawals] = sum {
                budget.learn(*deposits, *withdrawals, now);
            }
        }
        true
    }
}

/// Budget counts taken for a flush: given back (see `BudgetShared::not_flushed`) unless the
/// flush was answered, when the call fails and when the sync is dropped while it waits (a
/// caller may drop [`Fleet::sync`](super::Fleet::sync) at any point).
struct Unflushed<'a> {
    budgets: &'a [Arc<BudgetShared>],
    taken: Vec<(u64, u64)>,
}

impl Drop for Unflushed<'_> {
    fn drop(&mut self) {
        for (budget, pending) in self.budgets.iter().zip(self.taken.drain(..)) {
            budget.not_flushed(pending);
        }
    }
}

/// Syncs every `every`, or at once when nudged; ends when the fleet is dropped.
async fn sync_task(fleet: Weak<FleetInner>, nudge: Arc<Notify>, every: Duration) {
    // Nudged syncs (a hold to publish, a key to learn) come at most every quarter interval:
    // a client calling a new endpoint per call would otherwise sync on every call.
    let gap = every / 4;
    loop {
        let last = Instant::now();
        let _ = tokio::time::timeout(every, nudge.notified()).await;
        tokio::time::sleep_until(last + gap).await;
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        fleet.sync().await;
    }
}
