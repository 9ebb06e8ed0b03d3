//! A server's advertised quota followed by the whole fleet: what one replica learns from an
//! answer (what is left, the reset, the window's quota) is kept in Redis, and every replica's
//! attempts take their turn from it there, while this replica's own view (the crate's
//! `ServerQuota`, always fed by every answer) runs beside it and is what is left when Redis is
//! not.
//!
//! # In Redis
//!
//! One hash per scope key, `{prefix}quota:{key}`: `left` (what the fleet may still send before
//! the reset), `reset` (in milliseconds of Redis's own clock, `TIME`, so replicas' clocks
//! never matter), `window` (the longest time to reset an answer of this window gave), `limit`
//! (the window's quota, if an answer said it; 0 if not), `out` (grants handed out this window
//! and not yet answered) and `born` (when an answer first made the key). It expires a second
//! past its reset, or past the next one while replicas keep taking from it.
//!
//! - **take** (one script): past the reset, refill `left` to `limit` (if known; the next reset
//!   whole windows on, `out` counted from zero) or delete the key and answer "unknown"; else
//!   grant up to the number asked of what is `left` (`left −= g`, `out += g`), with the time
//!   to the reset. A replica asks only while callers wait for a grant (one take for all of
//!   them) and spends what it got locally, until that window's reset.
//! - **learn** (one script, fire-and-forget, on an answer with quota fields; the newest answer
//!   of those that came while one learn was on its way goes with the next): `out` less the
//!   grants answered since the last call; in a later window (the key made now, or past its
//!   reset, or an answer whose reset is a second or more past the key's), `left = r − out`
//!   (the requests answered are counted by the server; those out may not be); in the same
//!   window, the lower of that and what `left` was (answers arrive in any order: the lowest
//!   count is the newest). So 3 replicas with 8 calls in flight each cannot overshoot a quota
//!   with 2 left: each grant is taken from `left` before its request goes.
//! - Answers without quota fields only count their grant as answered, sent with the next
//!   call (a take, a learn, or the background sync): no round trip of their own.
//!
//! # Round trips
//!
//! While no quota is known (the server advertises none, or not yet), a call costs no round
//! trip: the scope learns that another replica found one from the background sync (which asks
//! Redis whether the key exists, with the holds, every `sync_interval`), or from its own
//! answers. Once one is known: one take per batch of callers waiting (the callers of a replica
//! that ask while a take is on its way share its answer) and one learn per answer that
//! advertises a quota, fewer when answers come faster than Redis answers (`tests/fleet_quota.rs`
//! counts them).
//!
//! # Before anything is known
//!
//! The first requests of every replica go before any answer, so nothing counts them: the first
//! burst of the fleet (replicas × callers at once) must fit the quota. The replicas' first
//! answers reach Redis at about the same time, and the first one to arrive does not know of the
//! others' requests: for a short while after the key is made (twice the fleet's timeout, at
//! least 50 ms), take grants nothing (callers wait), so that the other replicas' first answers
//! lower `left` before anything is granted from it.
//!
//! # Redis down, slow, and cancelled calls
//!
//! A take or learn that fails or comes after [`FleetConfig::timeout`](super::FleetConfig)
//! turns the fleet to its local limits, as every shared handle does (one `WARN`), and the
//! scope follows this replica's own view until Redis accepts a write again: no call fails, nor
//! waits longer than the timeout, because of Redis. A call dropped after its grant (cancelled,
//! timed out without an answer) leaves its grant counted in `out` until the window's end: the
//! refill at the reset counts `out` from zero, and an idle key expires, so nothing leaks
//! further.
//!
//! # What is not shared
//!
//! Each replica paces (`follow = "pace"`) its own view; the fleet holds every replica when its
//! quota is spent. One quota per scope is shared: of several an answer advertises (policies,
//! partition keys), the tightest (the fewest left); each replica's own view still follows all.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use redis::Script;
use tokio::time::Instant;

use super::link::FleetInner;
use crate::overload::hold::release_window_for;
use crate::overload::server_quota::{
    Admit, Place, Quota, QuotaSnapshot, ServerQuota, ServerQuotaConfig, Spent, Ticket, read,
};

/// How long a caller waiting for a take's answer waits before asking again.
const POLL: Duration = Duration::from_millis(2);

/// The most grants one take asks for (the callers waiting, at most this): a replica holds no
/// more than this of the fleet's quota unspent.
const MAX_TAKE: u64 = 8;

/// Answers whose resets differ by less than this are of one window (as in `ServerQuota`,
/// and in the learn script): resets are written in whole seconds, rounded.
const SAME_WINDOW: Duration = Duration::from_secs(1);

/// The least time a new key settles before Redis grants from it (see the module docs).
const MIN_SETTLE: Duration = Duration::from_millis(50);

/// `ARGV`: grants asked, grants answered since the last call, the settle time (ms). Answers
/// `{granted, ms to the reset, limit, left}`, or `{-1}` when Redis knows no quota for the key
/// (the key is then gone), or `{0, ms to settle, limit, -1}` while it settles.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local want, done, settle = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', key, 'left', 'reset', 'window', 'limit', 'out', 'born')
if not h[2] then return {-1} end
local left, reset, window = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
local limit, out, born = tonumber(h[4]), tonumber(h[5]), tonumber(h[6])
out = math.max(0, out - done)
if now >= reset then
  if limit > 0 and window > 0 then
    reset = reset + (math.floor((now - reset) / window) + 1) * window
    left = limit
    out = 0
  else
    redis.call('DEL', key)
    return {-1}
  end
end
local granted = 0
if now >= born + settle then
  granted = math.min(want, left)
  left = left - granted
  out = out + granted
end
redis.call('HSET', key, 'left', string.format('%.0f', left), 'reset', string.format('%.0f', reset),
  'out', string.format('%.0f', out))
redis.call('PEXPIRE', key, string.format('%.0f', reset - now + 1000))
if now < born + settle then return {0, born + settle - now, limit, -1} end
return {granted, reset - now, limit, left}
",
    )
});

/// `ARGV`: what the answer said was left, its time to reset (ms), its limit (0: not said),
/// grants answered since the last call. Answers `{left, ms to the reset}`.
static LEARN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local r, to_reset = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, done = tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', key, 'left', 'reset', 'window', 'limit', 'out', 'born')
local reset = now + to_reset
local left, window, out, born = r, to_reset, 0, now
if h[2] then
  local was, old_window = tonumber(h[2]), tonumber(h[3])
  out, born = tonumber(h[5]), tonumber(h[6])
  if limit == 0 then limit = tonumber(h[4]) end
  if now >= was then out = 0 end
  out = math.max(0, out - done)
  left = math.max(0, r - out)
  if now < was and reset < was + 1000 then
    left = math.min(left, tonumber(h[1]))
    reset = was
    window = math.max(old_window, to_reset)
  end
end
redis.call('HSET', key, 'left', string.format('%.0f', left), 'reset', string.format('%.0f', reset),
  'window', string.format('%.0f', window), 'limit', string.format('%.0f', limit),
  'out', string.format('%.0f', out), 'born', string.format('%.0f', born))
redis.call('PEXPIRE', key, string.format('%.0f', reset - now + 1000))
return {left, reset - now}
",
    )
});

/// One scope's following of its server's quota, shared by every replica through Redis: see
/// the [module docs](self). Made by `Fleet::quota`; one per key while it lives.
#[derive(Clone)]
pub(crate) struct SharedQuota(Arc<QuotaShared>);

impl std::fmt::Debug for SharedQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuota")
            .field("key", &self.0.redis_key)
            .field("known", &self.0.known.load(SeqCst))
            .finish()
    }
}

pub(crate) struct QuotaShared {
    fleet: Arc<FleetInner>,
    redis_key: String,
    config: ServerQuotaConfig,
    /// This replica's own view: fed by every answer, asked by every attempt (the tightest of
    /// it and the fleet's wins), and all there is while Redis is not.
    local: ServerQuota,
    /// Whether Redis keeps a quota for the key, as far as this replica knows: until then an
    /// attempt asks nothing of Redis.
    known: AtomicBool,
    lease: Mutex<Lease>,
    /// A take is on its way.
    taking: AtomicBool,
    /// Callers that asked for a grant since the last take: the size of the next.
    asking: AtomicU64,
    /// Attempts let out with a grant and not answered yet.
    granted_out: AtomicU64,
    /// Grants answered and not yet reported to Redis (`out` less them): sent with the next
    /// call.
    done: AtomicU64,
    /// The newest answer's quota to publish, and whether a learn is on its way.
    learned: Mutex<Option<(Quota, Instant)>>,
    learning: AtomicBool,
}

/// What this replica holds of the fleet's quota, in microseconds since the fleet's base.
#[derive(Default)]
struct Lease {
    /// Grants not spent yet, good until `until` (the fleet's reset they were granted for).
    grants: u64,
    until: u64,
    /// Redis said the fleet's quota is spent until then (0: it did not).
    spent_until: u64,
    /// Redis said the key settles until then: nothing is granted before.
    settle_until: u64,
    /// The spent reset whose first waiter was told to go at it, and the hold's length then.
    first_out: Option<(u64, Duration)>,
    /// What Redis last said of the window's quota and of what is left (for snapshots).
    limit: Option<u64>,
    left: u64,
}

impl SharedQuota {
    pub(crate) fn get(fleet: &Arc<FleetInner>, key: &str, config: ServerQuotaConfig) -> Self {
        let shared = fleet.quota_for(key, || {
            Arc::new(QuotaShared {
                fleet: fleet.clone(),
                redis_key: fleet.key("quota", key),
                local: ServerQuota::new(config.clone()),
                config,
                known: AtomicBool::new(false),
                lease: Mutex::new(Lease::default()),
                taking: AtomicBool::new(false),
                asking: AtomicU64::new(0),
                granted_out: AtomicU64::new(0),
                done: AtomicU64::new(0),
                learned: Mutex::new(None),
                learning: AtomicBool::new(false),
            })
        });
        // The sync task learns whether another replica found a quota: start it now.
        let _ = fleet.link();
        SharedQuota(shared)
    }

    /// May an attempt go at `now`? See `ServerQuota::admit`: this replica's view first, and
    /// while the fleet shares a known quota, a grant of it too (asked of Redis in the
    /// background: the caller waits [`POLL`] and asks again).
    pub(crate) fn admit(&self, now: Instant, cap: Duration, place: Option<Place>) -> Admit {
        let shared = &self.0;
        if !shared.known.load(SeqCst) || !shared.fleet.sharing() {
            return shared.local.admit(now, cap, place);
        }
        let t = shared.fleet.micros(now);
        let mut lease = shared.lease();
        if lease.until <= t {
            lease.grants = 0;
        }
        if lease.grants > 0 {
            lease.grants -= 1;
            drop(lease);
            let admit = shared.local.admit(now, cap, place);
            match &admit {
                Admit::Go(_) => {
                    shared.granted_out.fetch_add(1, SeqCst);
                }
                // This replica's own view says wait: the grant is kept for the next one.
                Admit::Wait(..) => shared.lease().grants += 1,
            }
            return admit;
        }
        if lease.spent_until > t {
            let wait = Duration::from_micros(lease.spent_until - t);
            if wait > cap {
                // A reset beyond the cap holds nothing, as this replica's own view.
                drop(lease);
                return shared.local.admit(now, cap, place);
            }
            let release = match lease.first_out {
                Some((until, span)) if until == lease.spent_until => {
                    release_window_for(span).max(Duration::from_nanos(1))
                }
                _ => {
                    lease.first_out = Some((lease.spent_until, wait));
                    Duration::ZERO
                }
            };
            let spent = Spent {
                wait,
                left: 0,
                limit: lease.limit,
                policy: None,
                reset: wait,
                spent: true,
                release,
            };
            return Admit::Wait(spent, place);
        }
        // Settling (see the module docs), or waiting for a take's answer.
        let wait = Duration::from_micros(lease.settle_until.saturating_sub(t)).max(POLL);
        let settling = lease.settle_until > t;
        drop(lease);
        if !settling {
            shared.asking.fetch_add(1, SeqCst);
            self.take();
        }
        let spent = Spent {
            wait,
            left: 0,
            limit: None,
            policy: None,
            reset: wait,
            spent: false,
            release: Duration::ZERO,
        };
        Admit::Wait(spent, place)
    }

    /// Asks Redis for grants in the background, unless a take is on its way.
    fn take(&self) {
        let shared = &self.0;
        if shared.taking.swap(true, SeqCst) {
            return;
        }
        let Some(link) = shared.fleet.link() else {
            shared.taking.store(false, SeqCst);
            return;
        };
        let shared = shared.clone();
        link.handle.spawn(async move {
            let _taking = Taking(&shared);
            let want = shared.asking.swap(0, SeqCst).clamp(1, MAX_TAKE);
            let done = shared.done.swap(0, SeqCst);
            let settle = (2 * shared.fleet.timeout()).max(MIN_SETTLE);
            let mut script = TAKE.key(&shared.redis_key);
            script.arg(want).arg(done).arg(settle.as_millis());
            let sent = shared.fleet.micros(Instant::now());
            let answer: Option<Vec<i64>> = shared.fleet.call(&script).await;
            let Some(answer) = answer else {
                // Not reported: counted again with the next call. Redis is down meanwhile.
                shared.done.fetch_add(done, SeqCst);
                return;
            };
            let now = shared.fleet.micros(Instant::now());
            let mut lease = shared.lease();
            match answer[..] {
                [_, ms, _, -1] => {
                    // Settling: the callers waiting ask again then.
                    lease.settle_until = now.saturating_add(micros(ms));
                }
                [granted, ms, limit, left] => {
                    let granted = u64::try_from(granted).unwrap_or(0);
                    // Grants expire at the reset, counted from the sending (never later
                    // than the fleet's); a hold, from the answer (never shorter).
                    let kept = if lease.until > now { lease.grants } else { 0 };
                    lease.grants = kept + granted;
                    lease.until = sent.saturating_add(micros(ms));
                    lease.left = u64::try_from(left).unwrap_or(0);
                    lease.limit = u64::try_from(limit).ok().filter(|limit| *limit > 0);
                    lease.spent_until = if lease.grants == 0 {
                        now.saturating_add(micros(ms))
                    } else {
                        0
                    };
                }
                _ => {
                    // Redis keeps no quota for the key: this replica's view decides.
                    shared.known.store(false, SeqCst);
                    *lease = Lease::default();
                }
            }
        });
    }

    /// Learns from the answer to `ticket`: this replica's view, and the fleet's (in the
    /// background). See `ServerQuota::learn`.
    pub(crate) fn learn(&self, ticket: Ticket, headers: &HeaderMap, started: impl FnMut(&Quota)) {
        let shared = &self.0;
        let granted = shared
            .granted_out
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if granted {
            shared.done.fetch_add(1, SeqCst);
        }
        let Some(quotas) = read(headers, &shared.config.headers, SystemTime::now) else {
            return;
        };
        let now = Instant::now();
        shared.local.apply(ticket, &quotas, now, started);
        // The tightest the answer advertises is the one the fleet shares.
        let Some(tightest) = quotas
            .iter()
            .min_by_key(|quota| (quota.remaining, std::cmp::Reverse(quota.reset)))
        else {
            return;
        };
        shared.known.store(true, SeqCst);
        {
            // Answers arrive in any order: of two of one window, the one with fewer left is
            // the newer news; an answer of a later window replaces one of an earlier.
            let mut learned = shared.learned();
            let keep = learned.as_ref().is_some_and(|(kept, at)| {
                let (kept_reset, reset) = (*at + kept.reset, now + tightest.reset);
                kept_reset >= reset + SAME_WINDOW
                    || (reset < kept_reset + SAME_WINDOW && kept.remaining <= tightest.remaining)
            });
            if !keep {
                *learned = Some((tightest.clone(), now));
            }
        }
        self.publish();
    }

    /// Sends the newest answer's quota to Redis in the background, unless a learn is on its
    /// way (which sends it after its own).
    fn publish(&self) {
        let shared = &self.0;
        if !shared.fleet.sharing() || shared.learning.swap(true, SeqCst) {
            return;
        }
        let Some(link) = shared.fleet.link() else {
            shared.learning.store(false, SeqCst);
            return;
        };
        let shared = shared.clone();
        link.handle.spawn(async move {
            let learning = Learning(&shared);
            loop {
                let Some((quota, at)) = shared.learned().take() else {
                    break;
                };
                let done = shared.done.swap(0, SeqCst);
                // Counted from the answer's arrival: the time since is gone from the reset.
                let reset = quota.reset.saturating_sub(at.elapsed());
                let mut script = LEARN.key(&shared.redis_key);
                script
                    .arg(quota.remaining)
                    .arg(reset.as_millis())
                    .arg(quota.limit.unwrap_or(0))
                    .arg(done);
                let answer: Option<(i64, i64)> = shared.fleet.call(&script).await;
                let Some((left, ms)) = answer else {
                    shared.done.fetch_add(done, SeqCst);
                    break;
                };
                // Spent: every caller here holds until the reset (the grants this replica
                // holds are counted in `out`, so still its to spend). Not spent (a window
                // that began before this replica's guess of its reset): takes again.
                let mut lease = shared.lease();
                if left == 0 {
                    let until = shared
                        .fleet
                        .micros(Instant::now())
                        .saturating_add(micros(ms));
                    lease.spent_until = lease.spent_until.max(until);
                    lease.limit = quota.limit.or(lease.limit);
                } else {
                    lease.spent_until = 0;
                }
            }
            drop(learning);
        });
    }

    /// See `ServerQuota::snapshot`: this replica's view, or the fleet's if it has fewer left.
    pub(crate) fn snapshot(&self, now: Instant) -> Option<QuotaSnapshot> {
        let shared = &self.0;
        let local = shared.local.snapshot(now);
        if !shared.known.load(SeqCst) || !shared.fleet.is_up() {
            return local;
        }
        let t = shared.fleet.micros(now);
        let lease = shared.lease();
        let fleet = if lease.spent_until > t {
            Some(QuotaSnapshot {
                remaining: 0,
                reset: Duration::from_micros(lease.spent_until - t),
            })
        } else if lease.until > t {
            Some(QuotaSnapshot {
                remaining: lease.left + lease.grants,
                reset: Duration::from_micros(lease.until - t),
            })
        } else {
            None
        };
        match (local, fleet) {
            (Some(local), Some(fleet)) => Some(if fleet.remaining < local.remaining {
                fleet
            } else {
                local
            }),
            (local, fleet) => local.or(fleet),
        }
    }

    /// See `ServerQuota::busy`: also while the fleet's quota is spent.
    pub(crate) fn busy(&self, now: Instant) -> bool {
        let shared = &self.0;
        shared.local.busy(now) || shared.lease().spent_until > shared.fleet.micros(now)
    }
}

impl QuotaShared {
    fn lease(&self) -> MutexGuard<'_, Lease> {
        // Nothing panics while holding it; were it poisoned, the counts are still whole.
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn learned(&self) -> MutexGuard<'_, Option<(Quota, Instant)>> {
        self.learned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn redis_key(&self) -> &str {
        &self.redis_key
    }

    /// Whether the background sync should ask about this key: no quota known yet (another
    /// replica may have found one), or grants answered to report.
    pub(crate) fn wants_sync(&self) -> bool {
        !self.known.load(SeqCst) || self.done.load(SeqCst) > 0
    }

    /// The grants answered, taken for the sync to report.
    pub(crate) fn take_done(&self) -> u64 {
        self.done.swap(0, SeqCst)
    }

    /// The sync could not report `done`: the next call does.
    pub(crate) fn not_reported(&self, done: u64) {
        self.done.fetch_add(done, SeqCst);
    }

    /// The sync learned whether Redis keeps a quota for the key.
    pub(crate) fn synced(&self, known: bool) {
        self.known.store(known, SeqCst);
    }
}

/// Clears `taking` when the take ends, or is dropped unrun by a runtime shutting down.
struct Taking<'a>(&'a QuotaShared);

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        self.0.taking.store(false, SeqCst);
    }
}

/// Clears `learning` when the learn ends.
struct Learning<'a>(&'a QuotaShared);

impl Drop for Learning<'_> {
    fn drop(&mut self) {
        self.0.learning.store(false, SeqCst);
    }
}

/// `ms` (from Redis, never negative in practice) in microseconds.
fn micros(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1000)
}
