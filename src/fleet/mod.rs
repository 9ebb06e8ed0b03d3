//! Limits shared by many replicas through Redis: a rate limit, `Retry-After` holds, a retry
//! budget and the quota a server advertises per endpoint key, each falling back to the local
//! one while Redis is unreachable.
//!
//! A service running as 20 replicas that calls an API with a quota of 100 requests a second
//! cannot respect it with per-process limits, and when that API answers `429` with
//! `Retry-After` to one replica the other 19 keep calling. A [`Fleet`] (one per process, one
//! Redis connection) hands out per-key handles that share their state through Redis:
//!
//! | handle | hot path (every call) | Redis |
//! |---|---|---|
//! | [`SharedRate`] | `try_take`: one compare-and-swap on a local lease | a GCRA in one Lua script, leasing batches of slots, refilled in the background |
//! | [`SharedHold`] | `remaining`: one load | a key with a `PX` expiry, read by the background sync and by every lease refill |
//! | [`SharedBudget`] | `deposit`: two adds; `withdraw`: one compare-and-swap | per-step counters in a hash, flushed and read by the background sync |
//! | a server's quota (the client's guards) | nothing known: one load; known: a short lock, spending a grant held | a hash per key: grants taken (one Lua script, while callers wait) from what the last answers said, learned from each answer that advertises it |
//!
//! No call fails because of Redis, and none waits for it beyond [`FleetConfig::timeout`] (20 ms
//! by default): on a Redis error or timeout the fleet switches every handle to its local limit
//! (the crate's own GCRA, hold and budget), logs once (`WARN fleet: redis unavailable, using
//! local limits`), keeps probing in the background, and switches back when Redis accepts a
//! write again (`INFO fleet: redis available again, sharing limits`). Replicas that lost
//! Redis together come back spread out, not in one instant: each reconnects on its own
//! jittered backoff, and probes after a random share (½ to 1½) of its sync interval. A Redis that answers
//! reads but refuses writes (out of memory with `noeviction`, a read-only replica) is down
//! until then: the probe is a write that writes nothing (`SET {prefix}probe 1 XX`), so a read
//! that succeeds never turns the fleet back up only for the next lease to be refused.
//! [`Fleet::is_up`] is false whenever the handles use their local limits for the fleet's sake.
//! A rate limit also answers locally, on its own, after a refill of its lease that failed or
//! came after its timeout (so that a caller waits for at most one such refill, even while
//! Redis flaps; logged per key, once per change), and after two leases in a row that expired
//! before they arrived (a lease's life, `per / rate × ⌊burst / 2⌋`, shorter than a round
//! trip: logged once per key, naming the `burst` that would do), until a refill, asked for in
//! the background, succeeds. While local, the fleet-wide bounds below do not hold: each
//! replica keeps its own.
//!
//! # The shared rate limit, and how leasing bounds the overshoot
//!
//! Redis keeps the GCRA's theoretical arrival time (TAT) of each key, in microseconds of
//! Redis's own clock (`TIME`, so replicas' clocks never matter). A replica asks for up to `n`
//! slots at once; the script grants as many as the GCRA allows now (`k ≤ n`), pushes the TAT
//! `k` intervals ahead, and answers in one round trip. The replica spends them locally, and
//! asks for the next lease in the background when a quarter of the last one is left.
//!
//! A slot granted but not yet spent can be spent later, when the fleet may also be granted
//! fresh ones: that is the whole overshoot of leasing. It is bounded, whatever the number of
//! replicas, by making every lease expire `ttl` after it was asked for (unspent slots are
//! dropped) and by taking what expiring leases may add out of `burst`:
//!
//! - `reserve = ⌊burst / 2⌋` (at least 1), `ttl = reserve × interval` (`interval = per /
//!   rate`): the slots the fleet earns while a lease is alive;
//! - Redis runs the GCRA with `burst − reserve` (at least 1).
//!
//! Over any span `T` the fleet then spends at most `rate × T + burst` slots (with `burst` 1,
//! one more): Redis grants at most `rate × T + (burst − reserve) − D` in the span, `D` being
//! how far (in slots) its TAT was ahead at the span's start; every slot still unspent then was
//! granted less than `ttl` earlier, so the TAT is ahead by at least those slots minus the
//! `reserve` slots earned since: unspent `< D + reserve`. The bound holds in every window,
//! across any number of replicas, as long as each lease is spent within `ttl` (a lease that
//! is not, is dropped).
//!
//! A lease holds what this replica spends in three quarters of `ttl` (measured between
//! refills, doubled when the newest lease was spent to its last slot; one that expired with
//! slots left did not run dry), at most twice the last lease, at most 64 slots and at most
//! `burst − reserve`. A refill
//! asked for while callers wait takes any free slot, unless the last one got less than it
//! asked for (the fleet is at its limit); others take nothing below half their size, and are
//! told when that many are free, so replicas at the limit come back for batches rather than
//! polling for single slots. Replicas refused are told that in turn: each the instant the
//! one refused before it was told, plus its own batch's time, if later (told all the same
//! instant, they came back as a herd, one got the batch and the rest asked again: 3 round
//! trips per slot granted with 100 replicas held at the limit). Round trips per
//! request for a replica spending `r` a second: about `4 / (3 r × ttl)`, at least 1/64. With
//! a limit of 2,000 a second and `burst` 200 (`ttl` 50 ms), a replica at 1,000 requests a
//! second leases about 38 slots: 0.03 round trips per request (`tests/fleet.rs` measures it).
//! Leasing needs a `burst`: with `burst` 1 every slot is a round trip of its own.
//!
//! # Replicas with different settings (a deploy in progress)
//!
//! The key's hash in Redis carries the settings its GCRA runs with (interval, tolerance and
//! lease life), and every replica's lease runs with those, whatever its own: replicas that
//! disagree share one limit rather than each running its own against one TAT (where the one
//! with the shorter tolerance would never find a slot). The settings are those of the first
//! replica to lease since the key was last idle, and they stay while replicas with them keep
//! being granted slots; once none has been for a second (or twice the time the burst takes to
//! come back, if longer), the next lease puts its replica's settings in their place. So a
//! rolling deploy that changes a limit enforces the old one until the last old replica stops
//! leasing, then the new one; replicas of either version get their share of whichever is in
//! force. A replica whose settings differ from the fleet's logs it once per key, at `WARN`,
//! with both (`fleet=… this_replica=…`).
//!
//! # Holds
//!
//! [`SharedHold::hold_until`] holds locally at once and publishes the hold to Redis with the
//! next sync, which it asks for at once (a key with a `PX` expiry of the hold's length,
//! lengthened, never shortened). Other replicas learn it from the background sync, every
//! [`FleetConfig::sync_interval`] (100 ms by default), and from every lease refill of the same
//! key, whichever comes first: a hold is seen fleet-wide within `1.25 × sync_interval + 2 ×
//! timeout` (publish, then the next sync), without a round trip per call. A sync asked for
//! early (a hold to publish, a key this replica has just started using) comes at most every
//! quarter `sync_interval`. A replica that has not used a key yet learns of its hold only with
//! its first sync of that key: its first call there may go out into a hold the fleet set
//! (a shared rate limit's first lease refill learns it in time). Polling rather than pub/sub:
//! a message sent while a replica was reconnecting would be lost, and the poll also carries
//! the budgets.
//!
//! # A server's quota
//!
//! A scope that follows the quota its server advertises
//! ([`ServerQuotaConfig`](crate::overload::ServerQuotaConfig)) shares it whenever the client
//! has a Redis, as holds are (no `shared` key: what the server said is true for every
//! replica, and a replica that ignored it would spend the others' share). What any replica
//! learns from an answer (what is left, the reset, the window's quota) is kept in Redis in
//! Redis's own clock; every attempt of every replica takes a *grant* from it first (one Lua
//! script per batch of callers waiting, spent locally until the reset), so replicas' requests
//! count against one another before any answer says so; each answer that advertises the quota
//! sets what is left, less the grants still out fleet-wide (one fire-and-forget script; the
//! newest news goes when answers come faster). Past the reset, Redis refills to the quota (if
//! an answer said it) and the next reset is a window on. A spent quota holds every replica
//! until its reset, as a `Retry-After` hold. Each replica's own view (every answer feeds it)
//! runs beside the fleet's (the tightest wins) and is what is followed while Redis is down or
//! slower than the timeout; a call dropped after its grant leaves it counted until the
//! window's end, never longer.
//!
//! While no quota is known, a call costs no round trip: the background sync asks whether
//! another replica found one. Before any answer, nothing counts the fleet's first requests:
//! **the first burst of every replica together must fit the quota** (replicas × callers at
//! once). A key made by a first answer grants nothing for a short while (twice the timeout,
//! at least 50 ms), so that the other replicas' first answers, which arrive together, lower
//! what is left first. One quota is shared per scope, the tightest an answer advertises;
//! pacing (`follow = "pace"`) spreads each replica's own view. Three replicas calling one
//! server with a quota of 20 per 2 s, 6 callers each, get no 429 with it (`tests/fleet_quota.rs`;
//! about 1.5 round trips per request there, where every answer advertises the quota), and
//! many without.
//!
//! # The shared budget, and its staleness
//!
//! Each replica counts its first attempts (deposits) and retries (withdrawals) locally and
//! flushes them with the background sync into a hash of per-step counters (the budget's
//! window in 10 steps of Redis time, as the local budget slides), which answers with the
//! fleet's sums over the window. A withdrawal succeeds against the last fleet balance this
//! replica saw, minus what it spent since. What other replicas spent since their last sync is
//! not seen yet: fleet-wide, withdrawals may exceed the balance by what the other replicas
//! withdraw within one sync lag (`sync_interval + timeout`), at most `(replicas − 1) ×
//! balance` in the worst case; the excess is counted, so it is paid back before anyone
//! retries again. Until a replica's first sync of a key (asked for as the key is first used),
//! and when its view is older than `2 × sync_interval + timeout`, it withdraws from its local
//! budget; those retries are counted fleet-wide too, unless Redis is down.
//!
//! # Keys
//!
//! `{prefix}gcra:{key}` (a hash: the TAT, the settings above and when a replica with them was
//! last granted a slot; expires when the TAT is past, and not before those settings' second,
//! so an idle key is gone), `{prefix}hold:{key}` (expires with the hold),
//! `{prefix}budget:{key}` (a hash of at most 22 fields per window setting; expires a window
//! after its last flush), `{prefix}quota:{key}` (a hash of 6 fields; expires a second past the
//! quota's reset, or the next one's while replicas take from it). Nothing else is written (`{prefix}probe` is only ever written if it
//! exists). A client's guards use as `key`, by their [scope](crate::policy::Scope):
//! `{policy}|{endpoint key}` (host, the default) or `{policy}|rule` (rule), the policy's `%`
//! and `|` percent-encoded, so that no two policies' keys meet; and `name:<name>` (named:
//! one key for every policy and replica that names it, e.g. `{prefix}gcra:name:github`). Redis 5 or later (scripts call
//! `TIME`), one node or a [Redis Cluster](#redis-cluster).
//!
//! # Redis Cluster
//!
//! With [`FleetConfig::cluster`] (`cluster = true` in `[redis]`), `url` and
//! [`seeds`](FleetConfig::seeds) are nodes of a Redis Cluster (or Valkey in cluster mode, a
//! managed service's cluster mode): the fleet uses the `redis` crate's cluster client, which
//! learns the slots from any node it reaches, follows `MOVED` and `ASK`, and finds the new
//! primary after a failover. A script's keys must be in one slot, so every key of one endpoint
//! carries the endpoint key as its hash tag: `resilient-http:gcra:{api.example}`,
//! `resilient-http:hold:{api.example}`, … (a key that is empty or holds a brace has `#` and a
//! hash of it as its tag, the key after it: `resilient-http:hold:{#<hash>}<key>`); the prefix
//! may not hold braces. A lease (its rate and hold)
//! is one script on one primary, as on one node. The background sync sends one script per
//! endpoint key (per hash tag; several tags may share a slot) instead of one for up to 64
//! keys, 16 at a time: a sync of up to 16 endpoints takes one round trip's time still, and as
//! many commands as the endpoints it syncs. One Redis keeps the names it always had (no tags),
//! so a fleet moving to a cluster starts its keys afresh. A cluster has database 0 only: a
//! `url` or seed naming another (`redis://node:7000/2`) is refused, as is a seed whose user or
//! password is not the `url`'s (the cluster client logs in to every node alike).
//!
//! While a primary is down, the calls of its slots fail or time out: the fleet turns to its
//! local limits as it does when one Redis dies (logged once), keeps probing, and shares again
//! once a replica has taken over (`tests/fleet_cluster.rs`: a primary killed mid-run, no call
//! lost, sharing back within a second of the failover). The cluster client reconnects to a
//! node when a call needs it (not on the single-node backoff). The probe key,
//! `{prefix}probe`, carries no hash tag of the fleet's (its braces above stand for the
//! prefix): it lands in whichever slot its name hashes to. So until the failed slot has a
//! primary again, the fleet may go up on a good probe and down on the next call to that slot,
//! at every sync: one flag serves the whole fleet. Its log says so once each way, then at
//! most once each way every 10 seconds, with `changes_not_logged` counting the rest; the state
//! it settles in is logged within 10 seconds.
//!
//! # Managed Redis: TLS and ACL users
//!
//! `rediss://` (feature `redis-tls`) connects with TLS (rustls), checking the server's
//! certificate against the system's roots, or against the CAs of
//! [`FleetConfig::ca_file`] (a PEM file: a CA of your own, or one a managed service gives;
//! at most 1 MiB, its certificates parsed when the fleet is made or the policy file read; a
//! relative path is from the process's working directory, not the policy file's folder).
//! An ACL user and its password go in the URL: `rediss://app:secret@cache.example:6380`.
//! The password (and the user info of every URL) never appears in errors, in `Debug` or in
//! logs (`tests/fleet_tls.rs` checks all three against a wrong password). A wrong password is
//! Redis unreachable: local limits, and the fleet's `WARN`.
//!
//! The redis crate builds its TLS settings with rustls's process-wide crypto provider. When
//! the application installed none, rustls picks the one its features name: `aws_lc_rs`, which
//! this crate enables, unless another dependency enables `ring` too; then it cannot pick,
//! and [`Fleet::new`] (and `build`, for a `[redis]` table) refuses a `rediss://` URL with an
//! [`InvalidConfig`](crate::ErrorKind::InvalidConfig) error saying so, rather than the fleet's
//! thread panicking later. Install one first, once, at the start of `main`:
//! `rustls::crypto::aws_lc_rs::default_provider().install_default()` (or `ring`'s). This
//! crate installs none itself; asking rustls to choose, when `Fleet::new` checks a `rediss://`
//! URL, installs the one its features name, as the first TLS connection would: an application
//! installing its own must do so before making the fleet.

mod budget;
mod config;
mod hold;
mod link;
mod quota;
mod rate;

pub use budget::SharedBudget;
pub use config::FleetConfig;
#[cfg(feature = "config")]
pub(crate) use config::{check_ca_file, check_url};
pub use hold::SharedHold;
pub(crate) use quota::SharedQuota;
pub use rate::SharedRate;
pub(crate) use rate::check_lease_life;

use std::sync::Arc;

use crate::error::Error;
use crate::overload::rate::RateLimitConfig;
use crate::retry::BudgetConfig;
use link::FleetInner;

/// One process's connection to the Redis that its replicas share, and the source of the
/// shared limits' handles. Cheap to clone (one `Arc`).
///
/// Making one connects nothing: on first use (inside a tokio runtime or not), the fleet starts
/// a small runtime on a thread of its own (`resilient-http-fleet`), and its connection (the
/// `redis` crate's tokio connection manager, which reconnects by itself), the background sync
/// and every lease refill run there, never on a caller's runtime: start-up code on a runtime
/// that is then kept idle, or one that shuts down, stalls nothing. The thread ends when the
/// fleet (every clone, and every handle it gave) is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), resilient_http::Error> {
/// use std::time::Duration;
/// use resilient_http::fleet::{Fleet, FleetConfig};
/// use resilient_http::overload::RateLimitConfig;
///
/// let fleet = Fleet::new(FleetConfig::new("redis://127.0.0.1:6379").prefix("billing:"))?;
/// let rate = fleet.rate("api.example.com", RateLimitConfig::new(100, Duration::from_secs(1)).burst(40));
/// match rate.try_take(tokio::time::Instant::now()) {
///     Ok(()) => { /* send */ }
///     Err(wait) => tokio::time::sleep(wait).await,
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetInner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("config", self.inner.config())
            .field("up", &self.inner.is_up())
            .finish()
    }
}

impl Fleet {
    /// A fleet of the replicas that share `config`'s Redis. Fails only on a setting out of
    /// range or a URL that is not a Redis URL (kind
    /// [`InvalidConfig`](crate::ErrorKind::InvalidConfig)); an unreachable Redis is not an
    /// error.
    pub fn new(config: FleetConfig) -> Result<Self, Error> {
        Ok(Fleet {
            inner: FleetInner::new(config)?,
        })
    }

    /// The rate limit of endpoint `key`, shared by every replica that uses the same key and
    /// prefix (and, while Redis is unreachable, `config` applied locally).
    pub fn rate(&self, key: &str, config: RateLimitConfig) -> SharedRate {
        SharedRate::new(&self.inner, key, config)
    }

    /// The `Retry-After` hold of endpoint `key`, shared by every replica. One per key: asking
    /// again while the first is alive gives the same hold.
    pub fn hold(&self, key: &str) -> SharedHold {
        SharedHold::get(&self.inner, key)
    }

    /// The server quota followed under scope `key`, shared by every replica (and followed by
    /// this replica's own view alone while Redis is unreachable). One per key: asking again
    /// while the first is alive gives the same one.
    pub(crate) fn quota(
        &self,
        key: &str,
        config: crate::overload::ServerQuotaConfig,
    ) -> SharedQuota {
        SharedQuota::get(&self.inner, key, config)
    }

    /// The retry budget of endpoint `key`, counted fleet-wide (and locally while Redis is
    /// unreachable). Replicas sharing a key should share its `window`: counts kept with
    /// another window are not summed with these.
    pub fn budget(&self, key: &str, config: BudgetConfig) -> SharedBudget {
        SharedBudget::new(&self.inner, key, config)
    }

    /// Flushes the budgets' counts and reads the holds and fleet balances now, instead of at
    /// the next background sync (at shutdown, so that the last counts are not lost; in
    /// tests). `false` if Redis did not answer in time, or if the fleet is down and Redis
    /// still refuses writes.
    pub async fn sync(&self) -> bool {
        self.inner.sync_now().await
    }

    /// Whether the fleet is sharing, rather than using local limits: no Redis call has failed
    /// (or answered later than the timeout) since Redis last accepted a write.
    pub fn is_up(&self) -> bool {
        self.inner.is_up()
    }

    /// Redis calls made so far (each one round trip, or three when Redis had to be sent a
    /// script again after a restart): for telemetry and benchmarks.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips()
    }

    /// The settings this fleet was made with.
    pub fn config(&self) -> &FleetConfig {
        self.inner.config()
    }

    /// Whether `other` is this fleet (a clone of it), not merely one with the same settings.
    pub(crate) fn same(&self, other: &Fleet) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overload::FleetKeys;

    fn key(policy: &str, endpoint: &str) -> String {
        let fleet = Fleet::new(FleetConfig::new("redis://127.0.0.1:1")).unwrap();
        FleetKeys::new(fleet, policy.into()).key(endpoint)
    }

    #[test]
    fn no_two_policy_and_endpoint_pairs_share_a_key() {
        assert_eq!(key("default", "http://a:80"), "default|http://a:80");
        assert_eq!(key("x", "y|z"), "x|y|z");
        assert_eq!(key("x|y", "z"), "x%7Cy|z");
        assert_eq!(key("x%7Cy", "z"), "x%257Cy|z");
        let names = [
            "", "x", "x|", "|x", "x|y", "x%", "%7C", "x%7Cy", "y|z", "z", "|",
        ];
        let mut seen = std::collections::HashMap::new();
        for policy in names {
            for endpoint in names {
                let k = key(policy, endpoint);
                if let Some(other) = seen.insert(k.clone(), (policy, endpoint)) {
                    panic!("{k}: both {other:?} and {:?}", (policy, endpoint));
                }
            }
        }
    }
}
