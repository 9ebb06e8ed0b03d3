//! The shared rate limit: a GCRA in Redis that leases batches of slots, spent here from two
//! lock-free lease words; refilled in the background; the local GCRA while Redis is down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::link::FleetInner;
use crate::bounds;
use crate::overload::rate::{RateLimit, RateLimitConfig};

/// The most slots one lease holds.
pub(crate) const LEASE_MAX: u64 = 64;
/// How long a caller that finds the lease empty while a refill is on its way waits before
/// asking again (at most until the refill's timeout).
const POLL: u64 = 1_000;

/// The GCRA, leasing: `KEYS[1]` a hash of the TAT (microseconds of Redis's clock) and the
/// settings it runs with, `KEYS[2]` the endpoint's hold; `ARGV`: this replica's interval,
/// tolerance and lease life in microseconds, slots wanted, fewest worth granting, and how
/// many to wait for when fewer are free. Answers the slots granted, the microseconds until
/// that many are free (when none were granted), the hold's milliseconds left, and the
/// settings enforced (interval, tolerance, lease life).
///
/// Replicas refused are told distinct instants, in turn: the hash's `turn` is the instant
/// the last one refused was told, and the next is told that instant plus its own batch's
/// time, if it is later than when its batch is free. Told the instant the batch is free,
/// every replica held at the limit came back at once, one got the batch and the rest asked
/// again: 2.6 round trips per slot granted with 100 replicas (BENCHMARKS.md). A replica
/// that does not come back at its turn delays the next by at most its batch's time; a lone
/// replica is never delayed (its own turn is past when it is next refused).
///
/// The settings in the hash are the first writer's, and stay while a replica with them keeps
/// leasing: every replica runs the GCRA with them, whatever its own, so replicas configured
/// differently (a rolling deploy) share one limit instead of locking each other out. Once
/// no replica with them has been granted a slot for [`settled`](Plan::settled) (a second, or
/// twice the time the burst takes to come back, if longer), the next replica's settings
/// replace them; the key lives at least that long after such a grant.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local my_interval, my_tolerance, my_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want, least, batch = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local s = redis.call('HMGET', KEYS[1], 'tat', 'interval', 'tolerance', 'ttl', 'seen', 'turn')
local tat, seen = tonumber(s[1]) or 0, tonumber(s[5]) or 0
local interval, tolerance, ttl = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
local function settled(i, tol, life)
  return math.max(1000000, 2 * (i + tol + life))
end
local ours = interval == my_interval and tolerance == my_tolerance and ttl == my_ttl
if interval == nil or tolerance == nil or ttl == nil or interval < 1
  or (not ours and now - seen > settled(interval, tolerance, ttl)) then
  interval, tolerance, ttl, ours = my_interval, my_tolerance, my_ttl, true
end
if tat < now then tat = now end
local shared = math.floor(tolerance / interval) + 1
least, batch, want = math.min(least, shared), math.min(batch, shared), math.min(want, shared)
local ahead = tat - now
local free = math.floor((tolerance - ahead) / interval) + 1
local granted, wait = 0, 0
if free < least then
  local ready = tat - tolerance + (batch - 1) * interval
  local turn = (tonumber(s[6]) or 0) + batch * interval
  if turn > ready then ready = turn end
  wait = ready - now
  redis.call('HSET', KEYS[1], 'turn', string.format('%.0f', ready))
else
  granted = math.min(want, free)
  tat = tat + granted * interval
  if ours then seen = now end
  local keep = math.max(tat - now, seen + settled(interval, tolerance, ttl) - now)
  redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat),
    'interval', string.format('%.0f', interval), 'tolerance', string.format('%.0f', tolerance),
    'ttl', string.format('%.0f', ttl), 'seen', string.format('%.0f', seen))
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(keep / 1000) + 1))
end
local held = redis.call('PTTL', KEYS[2])
if held < 0 then held = 0 end
return {granted, wait, held, interval, tolerance, ttl}
",
    )
});

/// One endpoint key's rate limit, shared by every replica: see the [module docs](super).
/// Made by [`Fleet::rate`](super::Fleet::rate); cheap to clone.
#[derive(Clone)]
pub struct SharedRate(Arc<RateShared>);

struct RateShared {
    fleet: Arc<FleetInner>,
    endpoint: String,
    redis_key: String,
    hold_key: String,
    plan: Plan,
    /// While Redis is down or slow.
    local: RateLimit,
    leases: Leases,
    refilling: AtomicBool,
    /// The last refill got no answer: the local limit answers, and nobody waits for Redis,
    /// until a refill (asked for in the background) gets one. So a caller waits for at most
    /// one refill that fails, even while Redis flaps.
    failed: AtomicBool,
    /// The last lease expired before it arrived.
    lost: AtomicBool,
    /// `failed` because Redis answered, but later than its timeout: announced (and its end),
    /// unlike Redis down, which the fleet announces once for every key.
    slow: AtomicBool,
    /// Leases expired before they arrived, twice in a row (their life is shorter than a
    /// round trip): announced once, since it is the settings' doing and lasts.
    short_lived: AtomicBool,
    /// The settings in Redis differ from this replica's: announced once.
    mismatch: AtomicBool,
    /// The lease life of the settings Redis enforced at the last refill (0: none yet).
    enforced_ttl: AtomicU64,
    /// Slots the local limit granted (Redis down or slow), for telemetry.
    fallbacks: AtomicU64,
    /// When the refill on its way gives up (microseconds since the fleet's base).
    deadline: AtomicU64,
    /// No refill before this: the fleet is at its limit until then.
    not_before: AtomicU64,
    /// Slots taken since the last refill was asked for, and when that was.
    taken: AtomicU64,
    last_refill: AtomicU64,
    /// A caller found the lease empty since the last refill: the next lease is doubled, and
    /// takes whatever is free.
    dry: AtomicBool,
    /// The size of the last lease asked for.
    asked: AtomicU64,
    /// The last refill got less than it asked for: the fleet is at (or near) its limit.
    scarce: AtomicBool,
}

/// How the Redis GCRA and the leases are set up from a [`RateLimitConfig`], in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// `per / rate`, rounded up, at least 1.
    pub(crate) interval: u64,
    /// Redis's tolerance: `(burst − reserve − 1) × interval`.
    pub(crate) tolerance: u64,
    /// How long a lease lives: `reserve × interval`, `reserve = ⌊burst / 2⌋` (at least 1).
    pub(crate) ttl: u64,
    /// The most slots a lease holds: `burst − reserve` (at least 1), at most [`LEASE_MAX`].
    pub(crate) cap: u64,
}

/// How long a lease of the shared rate limit `config` lives: its [`Plan`]'s `ttl`. The one
/// formula, which the client builder's check that a lease outlives the Redis timeout
/// ([`check_lease_life`]) asks too.
pub(crate) fn lease_life(config: RateLimitConfig) -> Duration {
    Duration::from_micros(Plan::new(config).ttl)
}

/// Why a shared rate limit of `config` is unwise with a Redis whose calls may take up to
/// `timeout`, if it is (the builder warns: see `EndpointPolicy::check_sharing`). Its lease
/// ([`lease_life`]: `per / rate × max(1, ⌊burst / 2⌋)`) must live at least that long: a
/// refill Redis answers in time could otherwise bring a lease already expired, whose slots
/// are then granted locally, each replica on its own (at 2,000/s with burst 1 a lease lives
/// 500 µs, about one round trip, and 99–100 % of slots were local). Says which burst, or
/// which timeout, would do.
pub(crate) fn check_lease_life(config: RateLimitConfig, timeout: Duration) -> Result<(), String> {
    let life = lease_life(config);
    if life >= timeout {
        return Ok(());
    }
    // A lease grows with the burst (its reserve, half of it): the least burst that outlives
    // the timeout, if there is one in range. A burst of 1 leases for one interval.
    let interval = lease_life(config.burst(1)).as_nanos().max(1);
    let reserve = timeout.as_nanos().div_ceil(interval);
    let enough = (u32::try_from(reserve.saturating_mul(2)).ok())
        .filter(|burst| bounds::BURST.check(*burst).is_ok())
        .filter(|burst| lease_life(config.burst(*burst)) >= timeout);
    let raise = enough.map_or(String::new(), |burst| {
        format!("raise burst to at least {burst}, ")
    });
    Err(format!(
        "a lease of this shared limit ({} per {}, burst {}) lives {} (per / rate × \
         max(1, burst / 2)), less than the Redis timeout ({}): a lease could expire before \
         Redis answers, and its slots would be granted locally, each replica on its own; \
         {raise}lower the rate, or lower the Redis timeout to at most {}",
        config.rate,
        bounds::show(config.per),
        config.burst,
        bounds::show(life),
        bounds::show(timeout),
        bounds::show(life),
    ))
}

impl Plan {
    pub(crate) fn new(config: RateLimitConfig) -> Self {
        let per = config.per.as_micros();
        let rate = u128::from(config.rate.max(1));
        // Rounded up, so that Redis never grants more than the configured rate.
        let interval = saturate(per.div_ceil(rate)).max(1);
        let burst = u64::from(config.burst.max(1));
        let reserve = (burst / 2).max(1);
        let shared = burst.saturating_sub(reserve).max(1);
        Plan {
            interval,
            tolerance: interval.saturating_mul(shared - 1),
            ttl: interval.saturating_mul(reserve),
            cap: shared.min(LEASE_MAX),
        }
    }

    /// The settings as a user wrote them, for logs: one slot every `interval`, and `burst`.
    fn settings(&self) -> String {
        let interval = self.interval.max(1);
        let burst = (self.tolerance / interval + 1).saturating_add(self.ttl / interval);
        // Bursts 1 and 2 make the same plan (one slot leased, one for Redis).
        let burst = match burst {
            2 => "1 or 2".to_owned(),
            burst => burst.to_string(),
        };
        format!(
            "one slot every {:?}, burst {burst}",
            Duration::from_micros(interval)
        )
    }

    /// How long settings stay in Redis after a replica with them was last granted a slot
    /// (microseconds; as the lease script computes it): a second, or twice the time the
    /// burst takes to come back, if longer.
    pub(crate) fn settled(&self) -> u64 {
        (self.interval.saturating_add(self.tolerance))
            .saturating_add(self.ttl)
            .saturating_mul(2)
            .max(1_000_000)
    }

    /// The smallest `burst` whose leases outlive two round trips of `took` microseconds.
    fn burst_for(&self, took: u64) -> u64 {
        let reserve = took.saturating_mul(2).div_ceil(self.interval.max(1)).max(1);
        reserve.saturating_mul(2)
    }

    /// The next lease's size, for a replica that took `taken` slots in the last `since`
    /// microseconds, `dry` if it ran out (spent its lease to the last slot: a lease that
    /// expired with slots left was more than it needed), after a lease of `last`: what it
    /// spends in three quarters of a lease's life (a lease asked for with a quarter of the
    /// last one left is spent within its life), within 1 to `cap`. When it ran dry, the
    /// callers it refused are not in `taken`: twice that, and not less than the last (while
    /// the fleet refuses it nothing is taken, and leases would shrink to single slots). At
    /// most twice the last: a burst of calls after a stall, measured over the few
    /// milliseconds since the last refill, reads as many times the replica's rate, and a
    /// lease of that size (up to every slot Redis has free) would expire mostly unspent
    /// while the other replicas are refused theirs, the fleet at half its rate.
    pub(crate) fn lease(&self, taken: u64, since: u64, dry: bool, last: u64) -> u64 {
        let spends = u128::from(taken) * u128::from(self.ttl) * 3;
        let size = saturate(spends.div_ceil(4 * u128::from(since.max(1))));
        let size = if dry {
            size.saturating_mul(2).max(last)
        } else {
            size
        };
        size.min(last.saturating_mul(2)).clamp(1, self.cap)
    }
}

impl std::fmt::Debug for SharedRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.0;
        let now = shared.fleet.micros(Instant::now());
        f.debug_struct("SharedRate")
            .field("key", &shared.redis_key)
            .field("plan", &shared.plan)
            .field("leased", &shared.leases.left(now))
            .finish()
    }
}

impl SharedRate {
    pub(crate) fn new(fleet: &Arc<FleetInner>, key: &str, config: RateLimitConfig) -> Self {
        let _ = fleet.link();
        SharedRate(Arc::new(RateShared {
            fleet: fleet.clone(),
            endpoint: key.to_owned(),
            redis_key: fleet.key("gcra", key),
            hold_key: fleet.key("hold", key),
            plan: Plan::new(config),
            local: RateLimit::new(config),
            leases: Leases::default(),
            refilling: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            short_lived: AtomicBool::new(false),
            mismatch: AtomicBool::new(false),
            enforced_ttl: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            not_before: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            last_refill: AtomicU64::new(0),
            dry: AtomicBool::new(false),
            asked: AtomicU64::new(1),
            scarce: AtomicBool::new(false),
        }))
    }

    /// Takes a slot at `now`, or says how long to wait before asking again, as the local
    /// limit's `try_take` does (a refused call takes nothing). Never waits for Redis: a slot
    /// comes from this replica's lease, and the lease is refilled in the background when a
    /// quarter is left. When the lease is empty and its refill is on its way, the wait is at
    /// most 1 ms, and never past the refill's timeout; past it, while Redis is down, and
    /// after a refill that failed until one succeeds, the local limit answers.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let shared = &self.0;
        let t = shared.fleet.micros(now);
        if !shared.fleet.sharing() || t >= MAX_EXPIRY {
            return shared.fallback(now);
        }
        if shared.failed.load(SeqCst) {
            self.refill(t);
            return shared.fallback(now);
        }
        if let Some(left) = shared.leases.take(t) {
            shared.taken.fetch_add(1, SeqCst);
            let asked = shared.asked.load(SeqCst);
            if left <= asked.div_ceil(4) {
                self.refill(t);
            }
            return Ok(());
        }
        // Dry only if the lease was spent: one that expired with slots left was too large, and
        // doubling the next would keep leases expiring unspent, the TAT in Redis running ahead
        // of what the fleet spends, and other replicas refused below the fleet's rate.
        if shared.leases.ran_out() {
            shared.dry.store(true, SeqCst);
        }
        if shared.refilling.load(SeqCst) {
            let deadline = shared.deadline.load(SeqCst);
            if t < deadline {
                return Err(Duration::from_micros((deadline - t).min(POLL)));
            }
            // Redis is slower than its timeout: this call is the local limit's.
            return shared.fallback(now);
        }
        let not_before = shared.not_before.load(SeqCst);
        if t < not_before {
            return Err(Duration::from_micros(not_before - t));
        }
        self.refill(t);
        Err(Duration::from_micros(
            POLL.min(saturate(shared.fleet.timeout().as_micros())),
        ))
    }

    /// Slots the local limit granted so far, because Redis was down or slower than its
    /// timeout (or leases expired before they arrived): for telemetry and tests.
    pub fn fallbacks(&self) -> u64 {
        self.0.fallbacks.load(SeqCst)
    }

    /// From when the local fallback limit has its full burst again (telemetry: the fleet's
    /// own state lives in Redis).
    pub(crate) fn local_full_at(&self) -> Instant {
        self.0.local.full_at()
    }

    /// Slots leased and not spent yet, at `now`: for tests and telemetry.
    pub fn leased(&self, now: Instant) -> u64 {
        let shared = &self.0;
        shared.leases.left(shared.fleet.micros(now))
    }

    /// Asks Redis for the next lease in the background, unless a refill is on its way, or
    /// the fleet is at its limit for a while yet.
    fn refill(&self, t: u64) {
        let shared = &self.0;
        if t < shared.not_before.load(SeqCst)
            || shared
                .refilling
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
        {
            return;
        }
        let Some(link) = shared.fleet.link() else {
            shared.refilling.store(false, SeqCst);
            return;
        };
        let timeout = saturate(shared.fleet.timeout().as_micros());
        shared.deadline.store(t.saturating_add(timeout), SeqCst);
        let since = t.saturating_sub(shared.last_refill.swap(t, SeqCst));
        let taken = shared.taken.swap(0, SeqCst);
        let dry = shared.dry.swap(false, SeqCst);
        // Sized for the life leases have under the settings enforced (the fleet's, in Redis,
        // once a refill has told them), as every replica's are: a lease is spent before it
        // expires, and replicas configured differently ask alike (fair shares).
        let plan = match shared.enforced_ttl.load(SeqCst) {
            0 => shared.plan,
            ttl => Plan { ttl, ..shared.plan },
        };
        let size = plan.lease(taken, since, dry, shared.asked.load(SeqCst));
        shared.asked.store(size, SeqCst);
        // Cleared when the refill ends, or if the fleet's runtime drops it unrun.
        let refill = Refill {
            shared: shared.clone(),
            ran: false,
        };
        // Callers waiting take any free slot, unless the fleet is at its limit: then a batch.
        let any = dry && !shared.scarce.load(SeqCst);
        link.handle
            .spawn(async move { refill.run(size, any, t).await });
    }
}

impl RateShared {
    /// The local limit's answer.
    fn fallback(&self, now: Instant) -> Result<(), Duration> {
        let answer = self.local.try_take(now);
        if answer.is_ok() {
            self.fallbacks.fetch_add(1, SeqCst);
        }
        answer
    }
}

/// A refill on its way; dropping it lets the next one start.
struct Refill {
    shared: Arc<RateShared>,
    /// Whether the fleet's runtime ran it (one that stops drops what is spawned on it unrun).
    ran: bool,
}

impl Refill {
    /// Asks Redis for `size` slots, as decided at `t`, and installs what it grants: `any`
    /// number of them (callers are waiting, and the fleet was not at its limit), or else at
    /// least half, so that replicas at the fleet's limit come back for batches rather than
    /// for single slots.
    async fn run(mut self, size: u64, any: bool, t: u64) {
        self.ran = true;
        let shared = &self.shared;
        let plan = shared.plan;
        let mut script = LEASE.key(&shared.redis_key);
        script
            .key(&shared.hold_key)
            .arg(plan.interval)
            .arg(plan.tolerance)
            .arg(plan.ttl)
            .arg(size)
            .arg(if any { 1 } else { size.div_ceil(2) })
            .arg(size.div_ceil(2));
        let answer: Option<(u64, u64, i64, u64, u64, u64)> = shared.fleet.call(&script).await;
        let now = shared.fleet.micros(Instant::now());
        let Some((granted, wait, held, interval, tolerance, ttl)) = answer else {
            shared.failed.store(true, SeqCst);
            return;
        };
        let enforced = Plan {
            interval,
            tolerance,
            ttl,
            cap: plan.cap,
        };
        shared.enforced_ttl.store(ttl, SeqCst);
        if enforced != plan && !shared.mismatch.swap(true, SeqCst) {
            let (key, prefix) = (&shared.endpoint, &shared.fleet.config().prefix);
            tracing::warn!(
                %key, %prefix,
                fleet = %enforced.settings(), this_replica = %plan.settings(),
                "fleet: this rate limit's settings differ from those another replica set in \
                 Redis; every replica enforces the fleet's until none with them has been \
                 granted a slot for {:?}",
                Duration::from_micros(enforced.settled())
            );
        }
        // Its life counts from before it was asked for: never longer than `ttl` from the
        // grant, wherever the clocks are. The enforced settings' `ttl`, which the bound is
        // proved with (their reserve of slots, at their interval).
        let expiry = t.saturating_add(ttl);
        shared.scarce.store(granted < size, SeqCst);
        if granted > 0 {
            shared.leases.install(expiry, granted.min(size));
        } else {
            shared.not_before.store(now.saturating_add(wait), SeqCst);
        }
        // An answer after the deadline is Redis slower than its timeout: a failure (callers
        // already stopped waiting for it). A lease that expired on its way is lost, nothing
        // more (a stall: the local limit's burst on top of the fleet's would break the
        // bound); twice in a row, round trips are longer than `ttl`, and callers would wait
        // for leases that never come: a failure too.
        let lost = granted > 0 && now >= expiry;
        let lost_twice = lost && shared.lost.swap(true, SeqCst);
        if !lost {
            shared.lost.store(false, SeqCst);
        }
        let late = now > shared.deadline.load(SeqCst);
        shared.failed.store(late || lost_twice, SeqCst);
        let (key, prefix) = (&shared.endpoint, &shared.fleet.config().prefix);
        if late != shared.slow.swap(late, SeqCst) {
            if late {
                let timeout = crate::error::Short(shared.fleet.timeout());
                tracing::warn!(
                    %key, %prefix,
                    "fleet: this rate limit's lease refill came later than the redis \
                     timeout ({timeout}); it is local until a refill comes in time"
                );
            } else if !lost_twice {
                tracing::info!(%key, %prefix, "fleet: this rate limit is shared again");
            }
        }
        if lost_twice && !late && !shared.short_lived.swap(true, SeqCst) {
            // Redis answered in time: the lease's life is the cause, and the settings fix it.
            let took = Duration::from_micros(now.saturating_sub(t));
            tracing::warn!(
                %key, %prefix,
                "fleet: this rate limit's leases expire before they arrive: a lease lives \
                 {:?} (per / rate × ⌊burst / 2⌋) and its refill took {took:?}; it is mostly \
                 local: raise its `burst` to at least {} (leases then outlive two such round \
                 trips), or make it local",
                Duration::from_micros(ttl),
                plan.burst_for(now.saturating_sub(t))
            );
        }
        if held > 0
            && let Some(hold) = shared.fleet.live_hold(&shared.endpoint)
        {
            hold.learn(t, held);
        }
    }
}

impl Drop for Refill {
    fn drop(&mut self) {
        if !self.ran {
            // Dropped unrun: the fleet's runtime is stopping (the fleet is being dropped).
            self.shared.failed.store(true, SeqCst);
        }
        self.shared.refilling.store(false, SeqCst);
    }
}

/// Lease words hold their expiry (microseconds since the fleet's base) above 16 bits of slots.
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The latest expiry a word holds (8.9 years of a process's life); past it the fleet answers
/// from local limits.
pub(crate) const MAX_EXPIRY: u64 = u64::MAX >> COUNT_BITS;

/// Two leases, one word each, so that a new lease arrives while the last one is still being
/// spent without extending the life of its slots. Spent from the one that expires first.
#[derive(Default)]
pub(crate) struct Leases([AtomicU64; 2]);

fn pack(expiry: u64, count: u64) -> u64 {
    expiry.min(MAX_EXPIRY) << COUNT_BITS | count.min(COUNT_MASK)
}

fn expiry(word: u64) -> u64 {
    word >> COUNT_BITS
}

fn count(word: u64) -> u64 {
    word & COUNT_MASK
}

/// Slots of `word` that may be spent at `t`.
fn usable(word: u64, t: u64) -> u64 {
    if t < expiry(word) { count(word) } else { 0 }
}

impl Leases {
    /// Takes a slot at `t`: how many are left in both leases, or `None` if none was.
    pub(crate) fn take(&self, t: u64) -> Option<u64> {
        loop {
            let words = [self.0[0].load(SeqCst), self.0[1].load(SeqCst)];
            let first = usize::from(expiry(words[1]) < expiry(words[0]));
            let pick = [first, 1 - first]
                .into_iter()
                .find(|&i| usable(words[i], t) > 0)?;
            let word = words[pick];
            if self.0[pick]
                .compare_exchange(word, word - 1, SeqCst, SeqCst)
                .is_ok()
            {
                return Some(count(word) - 1 + usable(words[1 - pick], t));
            }
        }
    }

    /// Whether the newest lease (the one spent last) was spent to its last slot, rather than
    /// expired with slots left; true before the first lease.
    pub(crate) fn ran_out(&self) -> bool {
        let words = [self.0[0].load(SeqCst), self.0[1].load(SeqCst)];
        let newest = words[usize::from(expiry(words[1]) > expiry(words[0]))];
        count(newest) == 0
    }

    /// Slots that may be spent at `t`.
    pub(crate) fn left(&self, t: u64) -> u64 {
        self.0.iter().map(|w| usable(w.load(SeqCst), t)).sum()
    }

    /// A new lease of `count` slots until `expiry`, in place of the spent (or expired) one,
    /// else of the one that expires first (its last slots are dropped: the bound allows
    /// dropping, never keeping). Only one refill installs at a time.
    pub(crate) fn install(&self, expiry_at: u64, slots: u64) {
        let words = [self.0[0].load(SeqCst), self.0[1].load(SeqCst)];
        let gone = |i: usize| count(words[i]) == 0 || expiry(words[i]) == 0;
        let index = if gone(0) {
            0
        } else if gone(1) {
            1
        } else {
            usize::from(expiry(words[1]) < expiry(words[0]))
        };
        self.0[index].store(pack(expiry_at, slots), SeqCst);
    }
}

fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn plan(rate: u32, per: Duration, burst: u32) -> Plan {
        Plan::new(RateLimitConfig::new(rate, per).burst(burst))
    }

    #[test]
    fn the_plan_takes_the_leases_out_of_the_burst() {
        // 2,000 a second (500 µs), burst 200: 100 for leases (50 ms of the fleet's rate), 100
        // for Redis, leases of at most 64.
        assert_eq!(
            plan(2000, 1000 * MS, 200),
            Plan {
                interval: 500,
                tolerance: 99 * 500,
                ttl: 100 * 500,
                cap: 64
            }
        );
        // Burst 1: a lease of one slot, alive one interval; Redis without tolerance.
        assert_eq!(
            plan(10, 1000 * MS, 1),
            Plan {
                interval: 100_000,
                tolerance: 0,
                ttl: 100_000,
                cap: 1
            }
        );
        // Burst 3: one for leases, two for Redis.
        let odd = plan(3, 1000 * MS, 3);
        assert_eq!(
            (odd.interval, odd.tolerance, odd.ttl, odd.cap),
            (333_334, 333_334, 333_334, 2)
        );
        // Out of range (refused by the builders first): clamped, no panic.
        let zero = Plan::new(RateLimitConfig::new(0, Duration::ZERO).burst(0));
        assert_eq!(
            zero,
            Plan {
                interval: 1,
                tolerance: 0,
                ttl: 1,
                cap: 1
            }
        );
        let huge = Plan::new(RateLimitConfig::new(1, Duration::MAX).burst(u32::MAX));
        assert_eq!(huge.cap, LEASE_MAX);
    }

    #[test]
    fn settings_read_as_written_and_stay_a_second_or_two_bursts() {
        let a = plan(100, 1000 * MS, 20);
        assert_eq!(a.settings(), "one slot every 10ms, burst 20");
        assert_eq!(a.settled(), 1_000_000);
        assert_eq!(
            plan(3, 1000 * MS, 3).settings(),
            "one slot every 333.334ms, burst 3"
        );
        assert_eq!(
            plan(1, 1000 * MS, 1).settings(),
            "one slot every 1s, burst 1 or 2"
        );
        // 1 a minute, burst 4: 4 minutes for the burst, twice.
        assert_eq!(plan(1, 60_000 * MS, 4).settled(), 2 * 240_000_000);
        assert_eq!(
            Plan::new(RateLimitConfig::new(1, Duration::MAX)).settled(),
            u64::MAX
        );
        // Leases of 10 µs against round trips of 300 µs: a reserve of 60, a burst of 120.
        assert_eq!(plan(100_000, 1000 * MS, 1).burst_for(300), 120);
    }

    #[test]
    fn a_lease_is_what_the_replica_spends_in_three_quarters_of_its_life() {
        let plan = plan(2000, 1000 * MS, 200); // ttl 50 ms
        // 1,000 a second: 37.5 in 37.5 ms.
        assert_eq!(plan.lease(100, 100_000, false, 20), 38);
        // Idle: one slot, whatever the last.
        assert_eq!(plan.lease(0, 100_000, false, 20), 1);
        // Ran dry: twice what it spent, not less than the last, within the cap.
        assert_eq!(plan.lease(0, 100_000, true, 1), 1);
        assert_eq!(plan.lease(20, 100_000, true, 8), 16);
        assert_eq!(plan.lease(0, 100_000, true, 20), 20);
        assert_eq!(plan.lease(100, 100_000, true, 40), 64);
        assert_eq!(plan.lease(1_000_000, 1, false, 64), 64);
        // No time since the last: counts as a microsecond, no division by zero.
        assert_eq!(plan.lease(5, 0, false, 64), 64);
        // At most twice the last: from idle to 1,000 a second in 1, 2, 4... 38.
        assert_eq!(plan.lease(100, 100_000, false, 1), 2);
        assert_eq!(plan.lease(100, 100_000, true, 16), 32);
    }

    /// Two replicas at a quarter of 1,000 a second each (burst 100: Redis has 50 slots, a
    /// lease lives 50 ms): a stall, then the ticks it delayed all at once, spend a lease of
    /// 10 in 8 ms. That reads as 47 in three quarters of a lease's life, doubled for running
    /// dry: a lease of every slot Redis has, and the other replica, refused, was told to wait
    /// 24 ms (`redis_killed_mid_run_falls_back_and_resumes` read it as a wait for Redis).
    #[test]
    fn a_burst_after_a_stall_leases_twice_the_last_not_every_free_slot() {
        let plan = plan(1000, 1000 * MS, 100);
        assert_eq!(plan.cap, 50);
        assert_eq!(plan.lease(10, 8_000, true, 10), 20);
        // Both replicas' leases together leave Redis free slots.
        assert!(2 * plan.lease(10, 8_000, true, 10) < plan.cap);
    }

    #[test]
    fn leases_are_spent_oldest_first_and_expire() {
        let leases = Leases::default();
        assert_eq!(leases.take(0), None);
        leases.install(1_000, 3);
        assert_eq!(leases.left(0), 3);
        assert_eq!(leases.take(10), Some(2));
        // A second lease while the first is not spent: both are spendable, the first first.
        leases.install(2_000, 4);
        assert_eq!(leases.left(10), 6);
        assert_eq!(leases.take(20), Some(5));
        assert_eq!(leases.take(20), Some(4));
        assert_eq!(count(leases.0[0].load(SeqCst)), 0);
        // The first is spent: a third lease takes its place, not the second's.
        leases.install(3_000, 2);
        assert_eq!(leases.left(20), 6);
        // At 2,000 µs the second lease has expired: its slots are gone.
        assert_eq!(leases.left(2_000), 2);
        assert_eq!(leases.take(2_000), Some(1));
        assert_eq!(leases.take(2_999), Some(0));
        assert_eq!(leases.take(2_999), None);
        // Both live: a new one replaces the one that expires first (its slots dropped).
        leases.install(5_000, 2);
        leases.install(6_000, 2);
        leases.install(7_000, 2);
        assert_eq!(leases.left(4_000), 4);
        assert_eq!(leases.left(6_000), 2);
    }

    /// A lease that expired with slots left is not a lease run dry: the replica needed less,
    /// and doubling the next (as before) kept leases of twice what a replica at a quarter of
    /// the rate spends expiring unspent, every lease life, the TAT in Redis ahead of the
    /// fleet's spending.
    #[test]
    fn a_lease_run_out_is_told_from_one_expired_unspent() {
        let leases = Leases::default();
        assert!(leases.ran_out(), "no lease yet");
        leases.install(1_000, 2);
        assert!(!leases.ran_out());
        assert_eq!(leases.take(10), Some(1));
        assert_eq!(leases.take(10), Some(0));
        assert!(leases.ran_out(), "spent to the last slot");
        leases.install(2_000, 3);
        assert_eq!(leases.take(1_500), Some(2));
        // Expired with two slots left: nothing to take, and not run out.
        assert_eq!(leases.take(2_000), None);
        assert!(!leases.ran_out());
        // The next lease, spent, runs out, whatever the one before it left.
        leases.install(3_000, 1);
        assert_eq!(leases.take(2_500), Some(0));
        assert_eq!(leases.take(2_500), None);
        assert!(leases.ran_out());
    }

    #[test]
    fn threads_racing_take_each_slot_once() {
        let leases = Leases::default();
        leases.install(1_000_000, 30_000);
        leases.install(1_000_000, 30_000);
        let taken = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    while leases.take(5).is_some() {
                        taken.fetch_add(1, SeqCst);
                    }
                });
            }
        });
        assert_eq!(taken.into_inner(), 60_000);
    }

    #[test]
    fn words_keep_their_fields_apart() {
        let word = pack(MAX_EXPIRY + 5, COUNT_MASK + 7);
        assert_eq!((expiry(word), count(word)), (MAX_EXPIRY, COUNT_MASK));
        assert_eq!(usable(pack(10, 3), 9), 3);
        assert_eq!(usable(pack(10, 3), 10), 0);
    }
}
