//! The fleet against a real Redis Cluster (`FleetConfig::cluster`): three primaries with a
//! replica each, started by each test on free loopback ports (`redis-server --cluster-enabled
//! yes` × 6, joined by `redis-cli --cluster create`). Several `Fleet`s in one test stand for
//! replicas, each with its own connection, reaching the cluster through different nodes.
//!
//! Real time, as `tests/fleet.rs`: the assertions are the bounds the design guarantees
//! whatever the machine's speed; only lower bounds allow a wide margin.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use resilient_http::fleet::{Fleet, FleetConfig, SharedRate};
use resilient_http::overload::RateLimitConfig;
use resilient_http::retry::BudgetConfig;
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

#[path = "common/redis.rs"]
mod real_redis;
use real_redis::RedisCluster;

#[path = "common/eager_callers.rs"]
mod eager_callers;
use eager_callers::{EagerCallers, assert_within};

/// A replica reaching the cluster through `node` first (the others as seeds).
fn replica(
    cluster: &RedisCluster,
    node: usize,
    config: impl Fn(FleetConfig) -> FleetConfig,
) -> Fleet {
    let urls = cluster.urls();
    let seeds: Vec<_> = (urls.iter().enumerate())
        .filter(|(other, _)| *other != node)
        .map(|(_, url)| url.clone())
        .collect();
    let base = FleetConfig::new(&urls[node]).cluster(true).seeds(seeds);
    Fleet::new(config(base)).unwrap()
}

/// Takes a slot, sleeping the waits `try_take` asks for: the longest of those waits.
async fn take(rate: &SharedRate) -> Duration {
    let mut longest = Duration::ZERO;
    loop {
        match rate.try_take(Instant::now()) {
            Ok(()) => return longest,
            Err(wait) => {
                longest = longest.max(wait);
                sleep(wait).await;
            }
        }
    }
}

/// Three replicas, each through another primary, four eager callers each, one limit of 200 a
/// second with a burst of 20: over 1.5 s the fleet gets at most `200 × T + 20` in every span
/// `T`, and most of that, as on one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_one_rate_limit_across_three_replicas() {
    let cluster = RedisCluster::start(3, 1);
    let limit = RateLimitConfig::new(200, SECOND).burst(20);
    let fleets: Vec<_> = (0..3)
        .map(|node| replica(&cluster, node, |config| config.timeout(500 * MS)))
        .collect();
    let rates: Vec<_> = (fleets.iter())
        .map(|f| f.rate("api.example", limit))
        .collect();
    let start = Instant::now();
    let end = start + 1500 * MS;
    let granted = EagerCallers::start(&rates, 4, end).granted().await;
    let elapsed = start.elapsed();
    let total = granted.len();
    let local: u64 = rates.iter().map(SharedRate::fallbacks).sum();
    let local = usize::try_from(local).unwrap();
    let bound = |span: Duration| (200.0 * span.as_secs_f64()) as usize + 20 + local;
    let primary = cluster.primary_of("resilient-http:gcra:{api.example}", 0);
    println!(
        "3 replicas through 3 nodes at 200/s, burst 20, {elapsed:?}: {total} granted (bound \
         {}), {local} by local limits; the key's primary ran {} scripts",
        bound(elapsed),
        cluster.scripts_run(primary),
    );
    for fleet in &fleets {
        assert!(fleet.is_up(), "the cluster went down during the test");
    }
    assert_within(
        &granted,
        &[10 * MS, 100 * MS, 250 * MS, 500 * MS, SECOND, elapsed],
        bound,
    );
    assert!(total >= 150, "{total}: far under the rate");
    // The key is hash-tagged, and lives on the primary of its slot.
    let tagged: i64 = cluster
        .query(
            primary,
            redis::cmd("EXISTS").arg("resilient-http:gcra:{api.example}"),
        )
        .unwrap();
    assert_eq!(tagged, 1, "the rate's key is not where its tag says");
}

/// A hold set through one node is seen by a replica that reaches the cluster through another
/// (a replica node, even: the client finds the primaries), within `sync_interval + 2 ×
/// timeout`; and a sync of many endpoints, whose keys are in many slots, succeeds (one script
/// per slot: one script with keys of several slots is refused by a cluster, `CROSSSLOT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_set_through_one_node_is_seen_through_another() {
    let cluster = RedisCluster::start(3, 1);
    let (every, timeout) = (50 * MS, 200 * MS);
    let settings = |config: FleetConfig| config.sync_interval(every).timeout(timeout);
    let setter = replica(&cluster, 0, settings);
    let watcher = replica(&cluster, cluster.len() - 1, settings);
    let endpoints: Vec<String> = (0..12).map(|n| format!("api-{n}.example")).collect();
    let set_holds: Vec<_> = endpoints.iter().map(|e| setter.hold(e)).collect();
    let seen_holds: Vec<_> = endpoints.iter().map(|e| watcher.hold(e)).collect();
    let budgets: Vec<_> = (endpoints.iter())
        .map(|e| watcher.budget(e, BudgetConfig::default()))
        .collect();
    // Odd keys too: empty, with braces (they get a hash of their own as a tag).
    let odd: Vec<_> = ["", "a}b{c", "{x}"]
        .iter()
        .map(|k| setter.hold(k))
        .collect();
    budgets[0].deposit(Instant::now());
    assert!(setter.sync().await, "a sync of keys in many slots failed");
    assert!(watcher.sync().await, "a sync of keys in many slots failed");
    assert!(setter.is_up() && watcher.is_up());
    // One script per endpoint key (its hold and budget together), sent at once: counted on a
    // replica of its own whose background sync waits far longer than the test (a nudged one
    // a quarter interval, 15 s), so that round trips count this sync's scripts only.
    let counter = replica(&cluster, 1, |config| {
        config.sync_interval(60 * SECOND).timeout(timeout)
    });
    let _counted: Vec<_> = (endpoints.iter())
        .map(|e| (counter.hold(e), counter.budget(e, BudgetConfig::default())))
        .collect();
    assert!(counter.sync().await, "a sync of keys in many slots failed");
    let before = counter.round_trips();
    let started = Instant::now();
    assert!(counter.sync().await);
    let (scripts, took) = (counter.round_trips() - before, started.elapsed());
    println!("a sync of 12 endpoints (a hold and a budget each): {scripts} scripts in {took:?}");
    assert_eq!(scripts, 12);

    let set = Instant::now();
    for hold in set_holds.iter().chain(&odd) {
        hold.hold_until(set + 3 * SECOND);
    }
    let bound = every + 2 * timeout;
    for hold in &seen_holds {
        while hold.remaining(Instant::now()).is_none() {
            assert!(set.elapsed() <= bound, "not held after {:?}", set.elapsed());
            sleep(MS).await;
        }
    }
    println!(
        "12 holds seen through another node after {:?} (bound {bound:?})",
        set.elapsed()
    );
    let in_redis = cluster.pttl("resilient-http:hold:{api-3.example}");
    assert!(in_redis > 2000 && in_redis <= 3000, "{in_redis}");
    assert!(setter.sync().await && setter.is_up());
    assert!(
        odd_key_tagged(&cluster),
        "the hold of a key with braces is not in Redis"
    );
}

/// Whether the hold of the key `a}b{c` is in Redis under some hash tag (its name's hash is
/// the fleet's business; only that it is there, alone in its slot, matters).
fn odd_key_tagged(cluster: &RedisCluster) -> bool {
    (0..cluster.len()).any(|node| {
        let keys: Vec<String> = cluster
            .query(
                node,
                redis::cmd("KEYS").arg("resilient-http:hold:{#*}a}b{c"),
            )
            .unwrap_or_default();
        !keys.is_empty()
    })
}

/// Three replicas calling steadily (about 375 a second in all, under a limit of 1,000); the
/// primary of the limit's slot is killed after a second. Every call gets its slot, none waits
/// for Redis beyond the timeout, the replicas fall back to local limits while the slot has no
/// primary, and share again once its replica has taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_run_costs_no_call_and_sharing_resumes() {
    let mut cluster = RedisCluster::start(3, 1);
    let timeout = 50 * MS;
    let fleets: Vec<_> = (0..3)
        .map(|node| {
            replica(&cluster, node, |c| {
                c.timeout(timeout).sync_interval(50 * MS)
            })
        })
        .collect();
    let limit = RateLimitConfig::new(1000, SECOND).burst(100);
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for fleet in &fleets {
        let rate = fleet.rate("api.example", limit);
        let hold = fleet.hold("api.example");
        let budget = fleet.budget("api.example", BudgetConfig::default());
        let (running, fleet) = (running.clone(), fleet.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(8 * MS);
            let (mut calls, mut most_waited) = (0u32, Duration::ZERO);
            let mut down = false;
            while running.load(SeqCst) {
                ticks.tick().await;
                let start = Instant::now();
                assert_eq!(hold.remaining(start), None);
                budget.deposit(start);
                most_waited = most_waited.max(take(&rate).await);
                budget.withdraw(Instant::now());
                calls += 1;
                down |= !fleet.is_up();
            }
            (calls, most_waited, down, rate.fallbacks())
        }));
    }

    sleep(SECOND).await;
    let key = "resilient-http:gcra:{api.example}";
    let primary = cluster.primary_of(key, 0);
    assert!(
        cluster.scripts_run(primary) > 0,
        "not shared before the kill"
    );
    cluster.kill(primary);
    let killed = Instant::now();
    let live: Vec<usize> = (0..cluster.len())
        .filter(|n| cluster.is_running(*n))
        .collect();
    // The replica takes over once the others have failed the primary (the node timeout).
    let new_primary = loop {
        if let Some(serving) = cluster.serving(key, live[0])
            && serving != primary
        {
            break serving;
        }
        assert!(killed.elapsed() < 20 * SECOND, "no failover");
        sleep(20 * MS).await;
    };
    cluster.wait_until_ok(&live);
    println!(
        "failed over to node {new_primary} {:?} after the kill",
        killed.elapsed()
    );
    let before = cluster.scripts_run(new_primary);
    let over = Instant::now();
    while !fleets.iter().all(Fleet::is_up) || cluster.scripts_run(new_primary) < before + 20 {
        assert!(
            over.elapsed() < 10 * SECOND,
            "sharing never resumed after the failover"
        );
        sleep(10 * MS).await;
    }
    println!("sharing again {:?} after the failover", over.elapsed());
    sleep(300 * MS).await;
    running.store(false, SeqCst);

    let mut all = 0;
    for task in tasks {
        let (calls, most_waited, down, local) = task.await.unwrap();
        println!(
            "{calls} calls, {local} slots granted locally; longest wait asked for a slot \
             {most_waited:?}"
        );
        all += calls;
        assert!(most_waited <= timeout, "{most_waited:?} waited for Redis");
        // While the slot had no primary the replica used its local limit.
        assert!(down && local > 0, "never fell back to local limits");
    }
    assert!(all >= 500, "{all} calls");
}
