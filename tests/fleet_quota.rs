//! A server's advertised quota followed by a fleet: three clients standing for replicas, each
//! with its own `Fleet` on one real `redis-server`, against one loopback server that enforces
//! a fixed window of 20 requests per 2 s and says so on every answer. Sharing what each learns
//! through Redis, the server answers no 429; each alone, it answers many. Redis killed
//! mid-run costs no call: the replicas go on with their own view.
//!
//! Real time: Redis keeps its own clock, and paused time does not mix with its round trips.
//! The Redis timeout is 250 ms (as in `tests/fleet_client.rs`): these tests check sharing, and
//! a loaded machine must not turn a replica to its own view.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use resilient_http::Client;
use resilient_http::fleet::FleetConfig;
use resilient_http::policy::{EndpointPolicy, Scope};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[path = "common/redis.rs"]
mod real_redis;
use real_redis::RedisServer;

#[path = "common/quota_server.rs"]
mod quota_server;
use quota_server::{QuotaServer, Style};

/// 10 a second, in windows of 2 s: the whole seconds its fields are written in tell its
/// windows apart (see `ServerQuota`), and 60 calls take three windows.
const QUOTA: u64 = 20;
const WINDOW: Duration = Duration::from_secs(2);
const REPLICAS: usize = 3;
const CALLS: usize = 20;
/// Each replica's callers at once: the first burst (3 × 6, before any answer) fits the quota.
const CONCURRENCY: usize = 6;
const DEADLINE: Duration = Duration::from_secs(8);
/// Long, so that the round trips counted are mostly the quota's (a sync a second, for the
/// holds, is the rest).
const SYNC: Duration = Duration::from_secs(1);

/// A replica: its own client, with its own fleet on `redis` (if any) under `prefix`. One
/// attempt a call unless `retries`: a 429 is then seen as a failure, not retried away.
fn replica(redis: Option<&RedisServer>, prefix: &str, retries: bool) -> Client {
    let attempts = if retries { 3 } else { 1 };
    let policy = (EndpointPolicy::new().max_attempts(attempts)).breaker_enabled(false);
    let mut builder = Client::builder().default_policy(policy);
    if let Some(redis) = redis {
        let fleet = FleetConfig::new(redis.url())
            .prefix(prefix)
            .timeout(Duration::from_millis(250))
            .sync_interval(SYNC);
        builder = builder.redis_config(fleet);
    }
    builder.build().unwrap()
}

/// `CALLS` calls from each replica at `CONCURRENCY` each, all at once: how many succeeded.
async fn run(replicas: &[Client], url: &str) -> usize {
    let mut calls = JoinSet::new();
    for client in replicas {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        for _ in 0..CALLS {
            let (client, url, permits) = (client.clone(), url.to_owned(), permits.clone());
            calls.spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                match client.get(&url).deadline(DEADLINE).send().await {
                    Ok(response) => response.status().is_success(),
                    Err(_) => false,
                }
            });
        }
    }
    let mut succeeded = 0;
    while let Some(ok) = calls.join_next().await {
        succeeded += usize::from(ok.unwrap());
    }
    succeeded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_sharing_a_redis_get_no_429() {
    let redis = RedisServer::start();
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let replicas: Vec<Client> = (0..REPLICAS)
        .map(|_| replica(Some(&redis), "share:", false))
        .collect();
    let start = std::time::Instant::now();
    let succeeded = run(&replicas, &server.url("/q")).await;
    let took = start.elapsed();
    let statuses = server.statuses();
    assert_eq!(server.rejected(), 0, "{statuses:?}");
    assert_eq!(succeeded, REPLICAS * CALLS);
    assert_eq!(statuses.len(), REPLICAS * CALLS, "one request a call");
    for client in &replicas {
        assert!(client.fleet().unwrap().is_up(), "shared throughout");
    }
    let trips: u64 = replicas
        .iter()
        .map(|client| client.fleet().unwrap().round_trips())
        .sum();
    eprintln!(
        "{} requests in {took:?}, {trips} round trips to Redis ({:.2} a request)",
        statuses.len(),
        trips as f64 / statuses.len() as f64
    );
    // One key for the scope, expiring a second past the quota's reset (2 s at most ahead).
    let keys: Vec<String> = (redis.keys().into_iter())
        .filter(|key| key.starts_with("share:quota:"))
        .collect();
    assert_eq!(
        keys,
        vec![format!("share:quota:default|{}", server.url(""))]
    );
    let pttl = redis.pttl(&keys[0]);
    assert!(pttl > 0 && pttl <= 3_000, "{pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_each_alone_get_many_429s() {
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let replicas: Vec<Client> = (0..REPLICAS).map(|_| replica(None, "", false)).collect();
    run(&replicas, &server.url("/q")).await;
    assert!(server.rejected() >= 5, "{:?}", server.statuses());
}

/// Redis killed while the replicas call, then started again: no call fails (a 429 a
/// replica's own view lets through while Redis is away is retried after its `Retry-After`,
/// as without a fleet), the fleets say they are down meanwhile, and share again once Redis is
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_costs_no_call() {
    redis_away_mid_run(Away::Killed).await;
}

/// The same with Redis frozen (`SIGSTOP`: connections open, nothing answered): calls wait
/// for it no longer than its timeout, and go on with their own view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_mid_run_costs_no_call() {
    redis_away_mid_run(Away::Frozen).await;
}

#[derive(Clone, Copy, Debug)]
enum Away {
    Killed,
    Frozen,
}

async fn redis_away_mid_run(away: Away) {
    let mut redis = RedisServer::start();
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let prefix = format!("{away:?}:");
    let replicas: Vec<Client> = (0..REPLICAS)
        .map(|_| replica(Some(&redis), &prefix, true))
        .collect();
    let calls = tokio::spawn({
        let (replicas, url) = (replicas.clone(), server.url("/q"));
        async move { run(&replicas, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let up = |replicas: &[Client]| {
        (replicas.iter())
            .map(|client| client.fleet().unwrap().is_up())
            .collect::<Vec<_>>()
    };
    assert_eq!(up(&replicas), vec![true; REPLICAS], "shared at first");
    match away {
        Away::Killed => redis.stop(),
        Away::Frozen => redis.freeze(true),
    }
    let before = server.statuses().len();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(up(&replicas), vec![false; REPLICAS], "each on its own");
    // The window from 2 s on started while Redis was away: calls went on without it.
    let during = server.statuses().len() - before;
    assert!(
        during >= QUOTA as usize / 2,
        "{during} sent while Redis was away"
    );
    match away {
        Away::Killed => redis.restart(),
        Away::Frozen => redis.freeze(false),
    }
    let succeeded = calls.await.unwrap();
    assert_eq!(succeeded, REPLICAS * CALLS, "{:?}", server.statuses());
    for client in &replicas {
        assert!(client.fleet().unwrap().sync().await, "redis answers again");
    }
    assert_eq!(up(&replicas), vec![true; REPLICAS], "shared again");
}

/// A replica that has not called the server yet learns from the background sync that
/// another one found a quota, and spent it: its first call waits for the reset rather than
/// meeting a 429. (The quota is the rule's, so that each replica follows it from its start;
/// one kept per host is made by its first call, which goes out before its first sync.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_learns_a_spent_quota_from_the_sync_before_its_first_call() {
    const SMALL: u64 = 5;
    // Long enough that the first replica spends it well before its end, even on a loaded
    // machine (its calls wait for the key to settle first).
    const LONG: Duration = Duration::from_secs(4);
    let redis = RedisServer::start();
    let server = QuotaServer::start(SMALL, LONG, Style::Ietf).await;
    let begin = std::time::Instant::now();
    let replica = || {
        let policy = (EndpointPolicy::new().max_attempts(1))
            .breaker_enabled(false)
            .server_quota_scope(Scope::Rule);
        let fleet = FleetConfig::new(redis.url())
            .prefix("sync:")
            .timeout(Duration::from_millis(250));
        (Client::builder().default_policy(policy))
            .redis_config(fleet)
            .build()
            .unwrap()
    };
    let (first, second) = (replica(), replica());
    let url = server.url("/q");
    for _ in 0..SMALL {
        let response = first.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(second.fleet().unwrap().sync().await, "redis answers");
    let start = std::time::Instant::now();
    let spent = start - begin;
    let response = second.get(&url).deadline(LONG * 2).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.rejected(), 0, "{:?}", server.statuses());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "spent in {spent:?}, waited {waited:?}"
    );
}
