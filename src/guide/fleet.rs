//! Limits shared by the replicas of a service through Redis (feature `redis`).
//!
//! Every limit of the [overload](super::overload) guards lives in one process. A service running as 20 replicas that calls an API
//! with a quota of 100 requests a second cannot keep to it with per-process limits, and when
//! that API answers one replica with `429` and `Retry-After`, the other 19 keep calling. With
//! the `redis` feature, the replicas share them through the Redis they already run:
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let toml = r#"
//! [redis]
//! url = "redis://10.0.0.7:6379/2"   # redis://, unix://, rediss:// (TLS); the password is never logged
//! prefix = "checkout:"              # before every key (default "resilient-http:")
//! timeout = "20ms"                  # the longest any Redis call may take (default 20 ms)
//! sync_interval = "100ms"           # how often holds and budgets are synced (default 100 ms)
//!
//! [[endpoint]]
//! name = "partner"
//! match = { host = "api.partner.example" }
//! [endpoint.rate_limit]
//! rate = 100                        # for the whole fleet
//! burst = 40
//! shared = "redis"                  # "local" (the default): each replica its own
//! [endpoint.retry_budget]
//! shared = "redis"                  # retries counted fleet-wide
//! # "#;
//! # #[cfg(feature = "redis")]
//! # resilient_http::Client::builder().config_toml(toml).build()?;
//! # let _ = toml;
//! # Ok(())
//! # }
//! ```
//!
//! A Redis Cluster (or a managed service: TLS, an ACL user) is a few more keys:
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let toml = r#"
//! [redis]
//! url = "rediss://app:secret@node-1.cache.example:6380"  # TLS (feature `redis-tls`), ACL user app
//! cluster = true                    # a Redis Cluster: the fleet follows its slots and failovers
//! seeds = ["rediss://app:secret@node-2.cache.example:6380"]  # more nodes to reach it through
//! ## ca_file = "/etc/ssl/cache-ca.pem" # a PEM file of the servers' CAs (default: system roots)
//! # "#;
//! # #[cfg(feature = "redis-tls")]
//! # resilient_http::Client::builder().config_toml(toml).build()?;
//! # let _ = toml;
//! # Ok(())
//! # }
//! ```
//!
//! or [`Client::builder().redis(url)`](crate::ClientBuilder::redis)
//! ([`redis_config(FleetConfig)`](crate::ClientBuilder::redis_config) for every setting) with
//! [`EndpointPolicy::rate_limit_shared(true)`](crate::policy::EndpointPolicy::rate_limit_shared) and
//! [`retry_budget_shared(true)`](crate::policy::EndpointPolicy::retry_budget_shared).
//!
//! - **`Retry-After` holds** are shared whenever the client has a Redis: a hold one replica
//!   sets is seen within about `1.25 × sync_interval` plus two round trips by every replica
//!   that has called that endpoint before (a replica's very first call to an endpoint may go
//!   out before it learned of the fleet's hold).
//! - **A server's advertised quota** ([`server_quota`](super::overload)) is shared whenever
//!   the client has a Redis, as holds are: what one replica learns from an answer (what is
//!   left, the reset) holds every replica of that scope, and every replica's requests count
//!   against it (each takes a grant from Redis before it goes, a batch per round trip). Three
//!   replicas with 6 callers each against a quota of 20 per 2 s get no 429. Before any answer
//!   nothing is known: the replicas' first burst together must fit the quota. While Redis is
//!   down each replica follows what its own answers say.
//! - **A shared rate limit** runs its GCRA in Redis (one Lua script, Redis's clock). Each
//!   replica leases small batches of slots and spends them locally, refilled in the background,
//!   so a call seldom waits for Redis (when its lease ran dry, for the refill on its way, never
//!   past the timeout): at 1,000 requests a second a replica makes about 0.03 round trips per
//!   request.
//!   Leases expire, and what they may add is taken out of `burst`: over any span `T` the whole
//!   fleet sends at most `rate × T + burst`. A lease lives `per / rate × max(1, ⌊burst / 2⌋)`;
//!   when that is shorter than the Redis `timeout`, `build` logs a `WARN` naming the file, line
//!   and key (or the policy): a refill Redis answers in time may bring a lease already expired,
//!   and its slots are granted locally (2,000/s with the default burst of 1: leases of 500 µs,
//!   almost every slot local). It says the `burst` that would do, or lower the `timeout`.
//!   **Many replicas: a `burst` of 40 per replica.** A replica leases what it spends in three
//!   quarters of a lease's life, so its round trips per request are about `8 × replicas × rate
//!   / (3 × burst × traffic)`: 100 replicas sharing 1,000 requests a second (10 each) make
//!   0.08 round trips per request with a burst of 4,000 under a limit of 1,000/s, and 0.2 with
//!   3,000 under 2,000/s. Give a limit shared by `n` replicas a `burst` of about `40 × n ×
//!   rate / traffic` (40 per replica at the limit); the price is the bound above, `rate × T +
//!   burst`: a larger burst is more slots the fleet may send in a short span.
//!   Replicas whose settings differ (a deploy in
//!   progress) all enforce the ones in Redis: the first replica's, until no replica with them
//!   has been granted a slot for a second, then the next one's; each replica that differs logs
//!   it once per key (`WARN`, with both settings).
//! - **A shared retry budget** counts first attempts and retries fleet-wide; each replica syncs
//!   its counts every `sync_interval`, so the fleet may overspend by what the others retry
//!   within one sync, and pays it back before retrying again.
//! - **Redis down or slow is never an error.** Every Redis call has its `timeout`; past it the
//!   replica uses its local limits (the same settings, per process: while Redis is down, N
//!   replicas may send N times the rate), logs once (`WARN`) and once more when Redis is back
//!   (`INFO`; a fleet that flaps logs each way at most once per 10 s, counting the rest in
//!   `changes_not_logged`), and reconnects in the background. No call fails and none waits for Redis beyond
//!   the timeout. A Redis that answers but refuses writes (out of memory, a read-only replica)
//!   is down until it accepts one. The connection and its background work run on a thread of
//!   their own, whichever runtime first used the client.
//! - **When Redis comes back**, replicas do not all come back at once: while down, each probes
//!   after a random share of its `sync_interval`, and one Redis's connection reconnects on its
//!   own jittered backoff (50 ms doubling to 1 s, each delay stretched by a random share of
//!   itself; a cluster's client reconnects to a node when a call needs it). A hundred
//!   replicas come back over about 1.8 s after a restart, Redis's load no higher than its
//!   steady one; meanwhile each keeps its local limits.
//! - **Where one Redis saturates.** Redis spends 30–60 µs of its one core per round trip (a Lua
//!   script; less as its load rises), so one primary saturates between about 17,000 and 35,000
//!   round trips a second. Every replica syncs its holds and budgets every `sync_interval`,
//!   whatever its traffic: 10 round trips a second each at 100 ms, so 2,000–3,000 replicas fill a
//!   primary on their own (raise `sync_interval` well before that: holds are then seen later).
//!   Leases with a burst of 40 per replica cost about `rate / 15` round trips a second per limit.
//!   A fleet held at its limit costs about `rate / 10`: replicas refused are told when to come
//!   back in turn, each when its own batch is free, not all at one instant (0.09 round trips
//!   per slot granted with 100 replicas sent twice the limit). One limit is one key, on one
//!   node of a cluster too: a cluster spreads different limits over primaries, not one hot
//!   limit.
//! - State is kept per policy and endpoint key, as in one process, or by the guard's
//!   [scope](super::policies#endpoints-and-scopes): a named scope (`scope = "name:partner"`)
//!   is one Redis key for every rule that names it and every replica. Keys carry the prefix
//!   and an expiry, so nothing grows in Redis. Give each service its own `prefix`: two services
//!   with the same policy names share limits otherwise. Redis 5 or later, one node or a
//!   cluster.
//! - **Redis Cluster** (`cluster = true`): each endpoint's keys carry one hash tag, so every
//!   script runs on one primary; the background sync sends one script per endpoint key, 16 at
//!   a time. Database 0 only (a `/2` in `url` or a seed is refused), and every seed with the
//!   `url`'s user and password. While a primary fails over, its endpoints use local limits,
//!   and share again once a replica has taken over (about a second after the cluster's node
//!   timeout).
//! - **TLS and ACL users** (`rediss://user:password@host`, feature `redis-tls`): rustls, the
//!   system's roots or `ca_file` (PEM, at most 1 MiB, parsed when the file is read; a relative
//!   path is from the working directory). A wrong password is Redis unreachable (local limits,
//!   a `WARN`); no password shows in errors, `Debug` or logs. rustls needs a crypto provider:
//!   it picks `aws-lc-rs` by itself, unless another dependency enables rustls's `ring` too;
//!   then the fleet is refused (`InvalidConfig`) until the application installs one, first
//!   thing in `main`:
//!   `rustls::crypto::aws_lc_rs::default_provider().install_default()`.
//! - A shared limit that answers locally shows: one `WARN` per change (one in all when its
//!   leases expire before they arrive, naming the `burst` that would do), and
//!   `client.overload(policy, key)?.rate_limit_fallbacks()` counts the slots granted locally.
//!
//! [`client.fleet()`](crate::Client::fleet) gives the connection: `is_up()` for health checks, `round_trips()`, and
//! `sync().await` at shutdown so the last budget counts reach the others. A reload keeps the
//! connection when `[redis]` is unchanged. Two [`probe`](super::probe) processes given one such file act as two
//! replicas. Details and the bounds' proofs: [`fleet`](crate::fleet).

// The page links to items of the `redis` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "redis"), allow(rustdoc::broken_intra_doc_links))]
