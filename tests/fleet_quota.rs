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
use resilient_http::policy::EndpointPolicy;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

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

/// A replica: its own client, with its own fleet on `redis` (if any) under `prefix`. One
/// attempt a call: a 429 is seen as a failure, not retried away.
fn replica(redis: Option<&RedisServer>, prefix: &str) -> Client {
    let policy = EndpointPolicy::new().max_attempts(1).breaker_enabled(false);
    let mut builder = Client::builder().default_policy(policy);
    if let Some(redis) = redis {
        let fleet = FleetConfig::new(redis.url())
            .prefix(prefix)
            .timeout(Duration::from_millis(250))
            .sync_interval(Duration::from_millis(50));
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
        .map(|_| replica(Some(&redis), "share:"))
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
    assert!(
        redis
            .keys()
            .iter()
            .any(|key| key.starts_with("share:quota:"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_each_alone_get_many_429s() {
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let replicas: Vec<Client> = (0..REPLICAS).map(|_| replica(None, "")).collect();
    run(&replicas, &server.url("/q")).await;
    assert!(server.rejected() >= 10, "{:?}", server.statuses());
}
