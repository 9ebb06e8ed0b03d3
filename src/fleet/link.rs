//! The fleet's one Redis connection, on a small runtime thread of its own started on first
//! use: every call bounded by the timeout, down on any failure and up again only when a
//! write succeeds (logged once per change), and the background task that synchronises holds
//! and budgets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation, Value};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::budget::BudgetShared;
use super::config::{Connector, FleetConfig};
use super::hold::HoldShared;
use super::quota::QuotaShared;
use crate::error::Error;

/// Keys per sync script: a script runs alone in Redis, so a fleet of many endpoints syncs in
/// several short ones.
const SYNC_CHUNK: usize = 64;

/// A cluster's sync scripts in flight at once (one per endpoint key).
const CLUSTER_SYNCS: usize = 16;

/// Holds first (`ARGV[1]` of them, each with the milliseconds to publish, 0 for none), then
/// budgets (each with its deposits, withdrawals, step in ms and steps per window), then server
/// quotas (the last `ARGV[2]` keys, each with the grants answered since the last report).
/// Answers, per hold, its milliseconds left (0: none), then, per budget, the fleet's deposits
/// and withdrawals over the window, then, per quota, 1 if Redis keeps one for the key, else 0.
static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holds, quotas = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, holds do
  local publish = tonumber(ARGV[2 + i])
  local left = redis.call('PTTL', KEYS[i])
  if publish > 0 and left < publish then
    redis.call('SET', KEYS[i], '1', 'PX', string.format('%.0f', publish))
    left = publish
  end
  if left < 0 then left = 0 end
  out[#out + 1] = left
end
local a = 2 + holds
for i = holds + 1, #KEYS - quotas do
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
for i = #KEYS - quotas + 1, #KEYS do
  a = a + 1
  local done = tonumber(ARGV[a])
  local o = redis.call('HGET', KEYS[i], 'out')
  if o then
    if done > 0 then
      redis.call('HSET', KEYS[i], 'out', string.format('%.0f', math.max(0, tonumber(o) - done)))
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
",
    )
});

/// The shortest time between two log lines of the fleet going down (or two of it coming
/// back): a fleet flapping at every sync logs one of each per period, with a count.
const FLIP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The fleet's log of its changes of state (see [`FleetInner::log_change`]).
#[derive(Default)]
struct FlipLog {
    last_up: Option<Instant>,
    last_down: Option<Instant>,
    /// The state last logged (up at first, as the fleet starts).
    logged_up: bool,
    /// Changes since the last line logged that were not.
    not_logged: u64,
    /// Why the fleet last went down, redacted.
    why: String,
}

/// What a [`Fleet`](super::Fleet) shares with its handles.
pub(crate) struct FleetInner {
    config: FleetConfig,
    connector: Connector,
    /// Started on first use (`None`: starting failed, local limits for good).
    link: OnceLock<Option<Link>>,
    /// Whether handles share: set by a write Redis accepted, cleared by any failed call.
    up: AtomicBool,
    round_trips: AtomicU64,
    /// When changes of `up` were last logged (see [`log_change`](Self::log_change)).
    flips: Mutex<FlipLog>,
    /// Wakes the sync task before its interval (a hold to publish, a key to learn).
    nudge: Arc<Notify>,
    /// One sync at a time: a sync asked for (`Fleet::sync`) returns after every count made
    /// before it is flushed, even those a background sync had taken and was still sending.
    syncing: tokio::sync::Mutex<()>,
    registry: Mutex<Registry>,
    /// Instants are kept as microseconds since this one.
    base: Instant,
}

/// The fleet's own runtime (one thread) and its connection. Every Redis call, the sync task
/// and every lease refill run there, never on a caller's runtime: a runtime that is kept
/// but idle (start-up code's `block_on`), busy or shut down would otherwise stall them, and
/// the connection manager's own tasks with them.
pub(crate) struct Link {
    conn: Conn,
    pub(crate) handle: Handle,
    /// Dropped with the fleet: the runtime's thread then ends, and its tasks with it.
    _stop: oneshot::Sender<()>,
}

/// The handles the sync task serves, weakly: an endpoint dropped by its owner's bounded
/// registry leaves this one at the next sync.
#[derive(Default)]
struct Registry {
    holds: HashMap<Arc<str>, Weak<HoldShared>>,
    budgets: Vec<Weak<BudgetShared>>,
    /// Server quotas followed, one per scope key.
    quotas: HashMap<Arc<str>, Weak<QuotaShared>>,
}

impl FleetInner {
    pub(crate) fn new(config: FleetConfig) -> Result<Arc<Self>, Error> {
        let connector = config.check()?;
        Ok(Arc::new(FleetInner {
            config,
            connector,
            link: OnceLock::new(),
            up: AtomicBool::new(true),
            round_trips: AtomicU64::new(0),
            flips: Mutex::new(FlipLog {
                logged_up: true,
                ..FlipLog::default()
            }),
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

    /// The full Redis key of `kind` for endpoint `key`. In a cluster, every key of one
    /// endpoint carries one hash tag (see [`hash_tag`]), so that a script's keys (a lease's
    /// rate and hold) are in one slot.
    pub(crate) fn key(&self, kind: &str, key: &str) -> String {
        let prefix = &self.config.prefix;
        if !self.config.cluster {
            return format!("{prefix}{kind}:{key}");
        }
        // The key itself is the tag when Redis would read it whole; else a hash of it (one
        // with braces would end the tag early, an empty one would make none), the key after.
        if !key.is_empty() && !key.contains(['{', '}']) {
            return format!("{prefix}{kind}:{{{key}}}");
        }
        format!("{prefix}{kind}:{{#{:016x}}}{key}", fnv1a(key.as_bytes()))
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

    /// Whether handles should share through Redis now: the last write it was sent was
    /// accepted, and no call failed since. Starts the connection on first use.
    pub(crate) fn sharing(self: &Arc<Self>) -> bool {
        // Two loads once started.
        self.is_up() && self.link().is_some()
    }

    /// The connection and its runtime, started now if this is the first use (from any
    /// thread, inside a runtime or not).
    pub(crate) fn link(self: &Arc<Self>) -> Option<&Link> {
        self.link.get_or_init(|| self.start()).as_ref()
    }

    fn start(self: &Arc<Self>) -> Option<Link> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("resilient-http-fleet")
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(e) => {
                self.mark_down(&e);
                return None;
            }
        };
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("resilient-http-fleet".to_owned())
            .spawn(move || {
                // Runs the fleet's tasks until the fleet is dropped; they end with it.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            });
        if let Err(e) = thread {
            self.mark_down(&e);
            return None;
        }
        // The connection manager and the cluster client spawn their tasks on the runtime they
        // are made (and used) on.
        let _inside = handle.enter();
        let conn = match self.connect() {
            Ok(conn) => conn,
            Err(e) => {
                self.mark_down(&e);
                return None;
            }
        };
        handle.spawn(sync_task(
            Arc::downgrade(self),
            self.nudge.clone(),
            self.config.sync_interval,
        ));
        Some(Link {
            conn,
            handle,
            _stop: stop,
        })
    }

    /// The connection, made lazily: nothing is reached until the first call.
    fn connect(&self) -> redis::RedisResult<Conn> {
        // Reconnecting is nobody's wait (every call gives up at the timeout), so it may take
        // its time, and never stops trying.
        let connect_within = self.config.timeout.max(Duration::from_secs(1));
        match &self.connector {
            Connector::Single(client) => {
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_within))
                    .set_response_timeout(None)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1))
                    .set_number_of_retries(usize::MAX);
                ConnectionManager::new_lazy_with_config(client.clone(), manager).map(Conn::Single)
            }
            Connector::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect_within)
                    .set_response_timeout(connect_within);
                Ok(Conn::Cluster(
                    client.get_pending_async_connection_with_config(config),
                ))
            }
        }
    }

    /// Runs `script` within the timeout: its answer, or `None` (Redis unreachable, slow, or
    /// refusing), which turns the fleet to local limits until a write succeeds again (see
    /// [`probe`](Self::probe)). An answer does not turn it back: a script that only read
    /// proves nothing of a Redis that refuses writes (out of memory, a read-only replica).
    pub(crate) async fn call<T: FromRedisValue>(
        self: &Arc<Self>,
        script: &ScriptInvocation<'_>,
    ) -> Option<T> {
        let mut conn = self.link()?.conn.clone();
        self.round_trips.fetch_add(1, SeqCst);
        match tokio::time::timeout(self.config.timeout, script.invoke_async(&mut conn)).await {
            Ok(Ok(answer)) => Some(answer),
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

    /// Whether Redis accepts writes again, the one way the fleet comes back up: `SET
    /// {prefix}probe 1 XX`, a write Redis refuses as any other when it is out of memory or
    /// read-only, and that writes nothing (`XX`: only if the key exists, which it never
    /// does). A read (a `PING`, a sync with nothing to publish) would find a Redis out of
    /// memory healthy, and the next lease refused again: up and down on every sync.
    async fn probe(self: &Arc<Self>) -> bool {
        let Some(link) = self.link() else {
            return false;
        };
        let mut conn = link.conn.clone();
        self.round_trips.fetch_add(1, SeqCst);
        let mut probe = redis::cmd("SET");
        probe
            .arg(format!("{}probe", self.config.prefix))
            .arg(1)
            .arg("XX");
        let answer = tokio::time::timeout(
            self.config.timeout,
            probe.query_async::<redis::Value>(&mut conn),
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
            self.log_change(true, None);
        }
    }

    fn mark_down(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, SeqCst) {
            self.log_change(
                false,
                Some(crate::redact::text(&why.to_string()).into_owned()),
            );
        }
    }

    /// Logs a change of `up` (`why` the fleet went down), unless one the same way was
    /// logged less than [`FLIP_LOG_EVERY`] ago: one flag for the whole fleet, so a cluster
    /// with one slot range unserved goes up on a good probe and down on that slot at every
    /// sync. A change not logged is counted, in the next line logged.
    fn log_change(&self, up: bool, why: Option<String>) {
        let now = Instant::now();
        let mut flips = self.flips.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = why {
            flips.why = why;
        }
        let last = if up { flips.last_up } else { flips.last_down };
        if last.is_some_and(|at| now.saturating_duration_since(at) < FLIP_LOG_EVERY) {
            flips.not_logged += 1;
            return;
        }
        self.log_state(&mut flips, up, now);
    }

    /// Logs the state the fleet is in, if a change to it was not logged (see
    /// [`log_change`](Self::log_change)) and may be now: every sync asks, so a fleet that
    /// flapped and then stayed down (or up) says so within a period.
    fn log_settled(&self) {
        let now = Instant::now();
        let mut flips = self.flips.lock().unwrap_or_else(PoisonError::into_inner);
        let up = self.is_up();
        let last = if up { flips.last_up } else { flips.last_down };
        let due = last.is_none_or(|at| now.saturating_duration_since(at) >= FLIP_LOG_EVERY);
        if flips.not_logged > 0 && flips.logged_up != up && due {
            self.log_state(&mut flips, up, now);
        }
    }

    fn log_state(&self, flips: &mut FlipLog, up: bool, now: Instant) {
        let not_logged = std::mem::take(&mut flips.not_logged);
        flips.logged_up = up;
        if up {
            flips.last_up = Some(now);
            tracing::info!(
                prefix = %self.config.prefix,
                changes_not_logged = not_logged,
                "fleet: redis available again, sharing limits"
            );
        } else {
            flips.last_down = Some(now);
            tracing::warn!(
                prefix = %self.config.prefix,
                error = %flips.why,
                changes_not_logged = not_logged,
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

    /// The server quota of `key`: the live one if there is one, else a new one made by
    /// `make` (whose first sync, asked for now, learns whether another replica found one).
    pub(crate) fn quota_for(
        &self,
        key: &str,
        make: impl FnOnce() -> Arc<QuotaShared>,
    ) -> Arc<QuotaShared> {
        let mut registry = self.registry();
        if let Some(quota) = registry.quotas.get(key).and_then(Weak::upgrade) {
            return quota;
        }
        let quota = make();
        registry
            .quotas
            .insert(Arc::from(key), Arc::downgrade(&quota));
        self.nudge();
        quota
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

    /// [`sync`](Self::sync) on the fleet's own runtime, where every Redis call runs (a
    /// reconnection the call starts spawns its tasks where it runs). Dropped, it stops
    /// waiting; the sync itself ends within its timeouts.
    pub(crate) async fn sync_now(self: &Arc<Self>) -> bool {
        let Some(link) = self.link() else {
            return false;
        };
        let fleet = self.clone();
        link.handle
            .spawn(async move { fleet.sync().await })
            .await
            .unwrap_or(false)
    }

    /// One sync: every live hold and budget, in chunks of [`SYNC_CHUNK`] keys, after a
    /// [`probe`](Self::probe) when the fleet is down. Whether Redis answered every chunk
    /// (`false` at once if the fleet is down and stays down).
    pub(crate) async fn sync(self: &Arc<Self>) -> bool {
        let _one = self.syncing.lock().await;
        self.log_settled();
        if !self.is_up() && !self.probe().await {
            return false;
        }
        let (holds, budgets, quotas) = {
            let mut registry = self.registry();
            registry.holds.retain(|_, hold| hold.strong_count() > 0);
            registry.budgets.retain(|budget| budget.strong_count() > 0);
            registry.quotas.retain(|_, quota| quota.strong_count() > 0);
            let holds: Vec<_> = registry.holds.values().filter_map(Weak::upgrade).collect();
            let budgets: Vec<_> = registry.budgets.iter().filter_map(Weak::upgrade).collect();
            // Only the quotas that ask (none known yet, or grants answered to report).
            let quotas: Vec<_> = (registry.quotas.values())
                .filter_map(Weak::upgrade)
                .filter(|quota| quota.wants_sync())
                .collect();
            (holds, budgets, quotas)
        };
        if holds.is_empty() && budgets.is_empty() && quotas.is_empty() {
            return self.is_up();
        }
        if !self.config.cluster {
            return self.sync_keys(&holds, &budgets, &quotas).await;
        }
        // In a cluster a script's keys must be in one slot: one script per hash tag (per
        // endpoint key), [`CLUSTER_SYNCS`] at a time, so a sync of a few endpoints still takes
        // one round trip's time, and one of thousands does not send them all at once (each
        // waits its own timeout, and any one late takes the fleet down).
        let mut slots: BTreeMap<&str, SlotKeys> = BTreeMap::new();
        for hold in &holds {
            (slots.entry(hash_tag(hold.redis_key())).or_default().0).push(hold.clone());
        }
        for budget in &budgets {
            (slots.entry(hash_tag(budget.redis_key())).or_default().1).push(budget.clone());
        }
        for quota in &quotas {
            (slots.entry(hash_tag(quota.redis_key())).or_default().2).push(quota.clone());
        }
        // Collected first: a stream of the iterator itself would hold its closure, and the
        // sync task's future would then not be `Send` (the compiler cannot prove the closure
        // general over the borrows' lifetimes). Not started until `buffer_unordered` polls
        // them, they take no counts before.
        let syncs: Vec<_> = (slots.values())
            .map(|(holds, budgets, quotas)| self.sync_keys(holds, budgets, quotas))
            .collect();
        futures_util::stream::iter(syncs)
            .buffer_unordered(CLUSTER_SYNCS)
            .fold(true, |all, answered| async move { all && answered })
            .await
    }

    /// Holds first, then budgets, then quotas, at most [`SYNC_CHUNK`] keys a script: one
    /// round trip for most fleets. Whether Redis answered every script.
    async fn sync_keys(
        self: &Arc<Self>,
        holds: &[Arc<HoldShared>],
        budgets: &[Arc<BudgetShared>],
        quotas: &[Arc<QuotaShared>],
    ) -> bool {
        let (mut held, mut budgeted, mut quoted) = (holds, budgets, quotas);
        let mut answered = true;
        while !held.is_empty() || !budgeted.is_empty() || !quoted.is_empty() {
            let (these_holds, rest) = held.split_at(held.len().min(SYNC_CHUNK));
            let room = SYNC_CHUNK - these_holds.len();
            let (these_budgets, others) = budgeted.split_at(budgeted.len().min(room));
            let room = room - these_budgets.len();
            let (these_quotas, more) = quoted.split_at(quoted.len().min(room));
            answered &= self
                .sync_chunk(these_holds, these_budgets, these_quotas)
                .await;
            (held, budgeted, quoted) = (rest, others, more);
        }
        answered
    }

    async fn sync_chunk(
        self: &Arc<Self>,
        holds: &[Arc<HoldShared>],
        budgets: &[Arc<BudgetShared>],
        quotas: &[Arc<QuotaShared>],
    ) -> bool {
        let sent = self.micros(Instant::now());
        let mut script = SYNC.prepare_invoke();
        script.arg(holds.len()).arg(quotas.len());
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
        let reported = Unreported {
            quotas,
            done: quotas.iter().map(|quota| quota.take_done()).collect(),
        };
        for (quota, done) in quotas.iter().zip(&reported.done) {
            script.key(quota.redis_key()).arg(*done);
        }
        let answer: Option<Vec<i64>> = self.call(&script).await;
        let expected = holds.len() + 2 * budgets.len() + quotas.len();
        let Some(answer) = answer.filter(|a| a.len() == expected) else {
            return false;
        };
        let (answer, known) = answer.split_at(answer.len() - quotas.len());
        reported.answered(known);
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

/// The keys of one hash slot (one endpoint key's) for a cluster's sync.
type SlotKeys = (
    Vec<Arc<HoldShared>>,
    Vec<Arc<BudgetShared>>,
    Vec<Arc<QuotaShared>>,
);

/// The fleet's connection: one Redis's connection manager, or a cluster's connection (which
/// routes each script to its keys' slot). Both are cheap to clone.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// What Redis Cluster hashes of `key` to find its slot: the text between the first `{` and
/// the first `}` after it, if not empty; else the whole key. Keys with one tag share a slot.
fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, after)| after.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

/// 64-bit FNV-1a: the hash tag of an endpoint key Redis could not read whole as one. Fixed
/// (not a process's random hasher), so that every replica and version names the key alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
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

/// Grants answered, taken to report: given back unless Redis took them (see
/// [`Unflushed`]).
struct Unreported<'a> {
    quotas: &'a [Arc<QuotaShared>],
    done: Vec<u64>,
}

impl Unreported<'_> {
    /// Redis took them, and said per quota whether it keeps one for its key.
    fn answered(mut self, known: &[i64]) {
        self.done.clear();
        for (quota, known) in self.quotas.iter().zip(known) {
            quota.synced(*known == 1);
        }
    }
}

impl Drop for Unreported<'_> {
    fn drop(&mut self) {
        for (quota, done) in self.quotas.iter().zip(self.done.drain(..)) {
            quota.not_reported(done);
        }
    }
}

/// Syncs every `every`, or at once when nudged; ends when the fleet is dropped. While the
/// fleet is down (each sync then starts with a probe), every wait is a random share of
/// `every` ([`probe_wait`]).
async fn sync_task(fleet: Weak<FleetInner>, nudge: Arc<Notify>, every: Duration) {
    // Nudged syncs (a hold to publish, a key to learn) come at most every quarter interval:
    // a client calling a new endpoint per call would otherwise sync on every call.
    let gap = every / 4;
    loop {
        let last = Instant::now();
        let down = fleet.upgrade().is_some_and(|fleet| !fleet.is_up());
        let wait = if down {
            probe_wait(every, fastrand::f64())
        } else {
            every
        };
        let _ = tokio::time::timeout(wait, nudge.notified()).await;
        tokio::time::sleep_until(last + gap).await;
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        fleet.sync().await;
    }
}

/// How long a fleet that is down waits before its next probe: `every × (½ + share)`, `share`
/// drawn uniformly from `[0, 1)`, one interval on average. Replicas lose Redis together
/// (started together, their syncs even run in step): with waits of their own they drift
/// apart, and when Redis answers again they come back, and refill their leases, spread over
/// an interval rather than in the same instant.
fn probe_wait(every: Duration, share: f64) -> Duration {
    every.mul_f64(0.5 + share.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_probe_waits_half_to_one_and_a_half_intervals() {
        let every = 100 * MS;
        assert_eq!(probe_wait(every, 0.0), 50 * MS);
        assert_eq!(probe_wait(every, 0.5), every);
        assert!(probe_wait(every, 0.999_999) < 150 * MS);
        assert_eq!(probe_wait(every, 7.0), 150 * MS, "clamped");
    }

    /// Twenty replicas that went down in the same instant, each probing after its own
    /// waits: their first probes once Redis is back (1 s later) are spread over most of an
    /// interval (with waits of exactly `every`, all twenty probe in the same instant).
    #[test]
    fn replicas_down_together_probe_apart() {
        let every = 100 * MS;
        let mut rng = fastrand::Rng::with_seed(29);
        let back = Duration::from_secs(1);
        let mut first: Vec<Duration> = (0..20)
            .map(|_| {
                let mut at = Duration::ZERO;
                while at < back {
                    at += probe_wait(every, rng.f64());
                }
                at - back
            })
            .collect();
        first.sort();
        assert!(first[19] - first[0] >= every / 2, "{first:?}");
        assert!(first[19] < 3 * every / 2, "{first:?}");
    }

    fn fleet(config: FleetConfig) -> Arc<FleetInner> {
        FleetInner::new(config).unwrap()
    }

    /// One node: keys as they always were. A cluster: each endpoint's keys carry one hash tag,
    /// so a lease's rate and hold share a slot; a key Redis could not read whole as a tag (empty,
    /// or with braces) gets its hash as the tag, the key after it.
    #[test]
    fn cluster_keys_carry_one_hash_tag_per_endpoint() {
        let single = fleet(FleetConfig::new("redis://127.0.0.1"));
        assert_eq!(
            single.key("gcra", "api.example"),
            "resilient-http:gcra:api.example"
        );
        let cluster = fleet(FleetConfig::new("redis://127.0.0.1").cluster(true));
        assert_eq!(
            cluster.key("gcra", "api.example"),
            "resilient-http:gcra:{api.example}"
        );
        assert_eq!(hash_tag(&cluster.key("hold", "api.example")), "api.example");
        for key in ["", "a}b", "{x}", "}", "p|{host}", "name:github"] {
            let tags: Vec<_> = ["gcra", "hold", "budget", "quota"]
                .iter()
                .map(|kind| cluster.key(kind, key))
                .collect();
            let tag = hash_tag(&tags[0]).to_owned();
            assert!(!tag.is_empty(), "{key:?}");
            for name in &tags {
                assert_eq!(hash_tag(name), tag, "{key:?}: {name}");
                assert!(name.contains(key), "{name}");
            }
        }
        // Different keys, different names (and, but for a hash collision, different tags).
        assert_ne!(cluster.key("hold", "a}b"), cluster.key("hold", "a}c"));
        assert_ne!(
            hash_tag(&cluster.key("hold", "a}b")),
            hash_tag(&cluster.key("hold", "a}c"))
        );
    }

    #[test]
    fn hash_tags_are_read_as_redis_reads_them() {
        assert_eq!(hash_tag("{user1000}.following"), "user1000");
        assert_eq!(hash_tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(hash_tag("foo{{bar}}zap"), "{bar");
        assert_eq!(hash_tag("foo{bar}{zap}"), "bar");
        assert_eq!(hash_tag("plain"), "plain");
    }

    /// What the fleet logs, at every level, while `f` runs.
    fn logs_of(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
        text.lines().map(str::to_owned).collect()
    }

    /// A fleet that goes up on a good probe and down on a dead slot at every sync logs the
    /// first change each way, then at most one line a way every `FLIP_LOG_EVERY`, counting
    /// the changes it did not log; the state it settles in is logged, late, by a sync.
    #[tokio::test(start_paused = true)]
    async fn a_fleet_flapping_logs_each_way_once_per_period() {
        let fleet = fleet(FleetConfig::new("redis://127.0.0.1:1"));
        let lines = logs_of(|| {
            for _ in 0..20 {
                fleet.mark_down(&"dead slot");
                fleet.mark_up();
            }
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("WARN") && lines[0].contains("redis unavailable"));
        assert!(lines[1].contains("INFO") && lines[1].contains("available again"));
        tokio::time::advance(Duration::from_secs(11)).await;
        let lines = logs_of(|| {
            fleet.mark_down(&"dead slot");
            fleet.mark_up();
            fleet.mark_down(&"dead slot");
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("changes_not_logged=38"), "{lines:#?}");
        // Down for good: said by the next sync once the period is over.
        let lines = logs_of(|| fleet.log_settled());
        assert!(lines.is_empty(), "{lines:#?}");
        tokio::time::advance(Duration::from_secs(11)).await;
        let lines = logs_of(|| fleet.log_settled());
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("redis unavailable"), "{lines:#?}");
        assert!(lines[0].contains("changes_not_logged=1"), "{lines:#?}");
        assert!(logs_of(|| fleet.log_settled()).is_empty());
    }
}
