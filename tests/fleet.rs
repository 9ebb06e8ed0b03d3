//! Limits shared through Redis (`resilient_http::fleet`), against a real `redis-server`
//! started by each test on a free loopback port (and killed when the test ends). Several
//! `Fleet`s in one test stand for replicas: each has its own connection and background task,
//! exactly as separate processes would.
//!
//! Redis keeps its own clock, so these tests run in real time. Their assertions are the
//! bounds the design guarantees whatever the machine's speed (a rate never above
//! `rate × T + burst`, a budget never above its balance, no wait for Redis beyond its
//! timeout); only the lower bounds ("the fleet got a fair share of its rate") allow a wide
//! margin. `.ci/run` installs `redis-server` (`apt-get install -y redis-server`).
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use resilient_http::fleet::{Fleet, FleetConfig, SharedRate};
use resilient_http::overload::RateLimitConfig;
use resilient_http::retry::BudgetConfig;
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

#[path = "common/redis.rs"]
mod real_redis;
use real_redis::RedisServer;

#[path = "common/eager_callers.rs"]
mod eager_callers;
use eager_callers::{EagerCallers, assert_within, most_within};

fn fleet(config: FleetConfig) -> Fleet {
    Fleet::new(config).unwrap()
}

/// Takes a slot, sleeping the waits `try_take` asks for: the sum of those waits.
async fn take(rate: &SharedRate) -> Duration {
    let mut waited = Duration::ZERO;
    loop {
        match rate.try_take(Instant::now()) {
            Ok(()) => return waited,
            Err(wait) => {
                waited += wait;
                sleep(wait).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (a) The shared rate limit
// ---------------------------------------------------------------------------------------

/// Three replicas, four eager callers each, one limit of 200 a second with a burst of 20:
/// over 2 s the fleet gets at most `200 × T + 20` in every span `T` (leases included), and
/// most of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_rate_limit() {
    let redis = RedisServer::start();
    let limit = RateLimitConfig::new(200, SECOND).burst(20);
    // A generous timeout: this test is about sharing, not about a slow machine's Redis.
    let config = FleetConfig::new(redis.url()).timeout(500 * MS);
    let fleets: Vec<_> = (0..3).map(|_| fleet(config.clone())).collect();
    let rates: Vec<_> = fleets
        .iter()
        .map(|f| f.rate("api.example", limit))
        .collect();
    let before = redis.round_trips();
    let start = Instant::now();
    let end = start + 2 * SECOND;
    let granted = EagerCallers::start(&rates, 4, end).granted().await;
    let elapsed = start.elapsed();
    let round_trips = redis.round_trips() - before;
    let counted: u64 = fleets.iter().map(Fleet::round_trips).sum();
    let total = granted.len();
    // Slots the local limits granted: none, unless the machine stalled for longer than a
    // Redis call may take (the fleet then falls back, by design, and its bound with it).
    let local: u64 = rates.iter().map(SharedRate::fallbacks).sum();
    let local = usize::try_from(local).unwrap();
    let bound = |span: Duration| (200.0 * span.as_secs_f64()) as usize + 20 + local;
    println!(
        "3 replicas at 200/s, burst 20, {elapsed:?}: {total} granted (bound {}), \
         {round_trips} round trips ({counted} calls by the fleets, {:.3} per slot); most in \
         100 ms: {}, in 500 ms: {}; {local} by local limits",
        bound(elapsed),
        round_trips as f64 / total as f64,
        most_within(&granted, 100 * MS),
        most_within(&granted, 500 * MS),
    );
    for fleet in &fleets {
        assert!(fleet.is_up(), "Redis went down during the test");
    }
    assert!(total <= bound(elapsed), "{total} > {}", bound(elapsed));
    assert_within(
        &granted,
        &[10 * MS, 100 * MS, 250 * MS, 500 * MS, SECOND],
        bound,
    );
    // Not starved (a wide margin: the machine may be slow).
    assert!(total >= 200, "{total}: far under the rate");
}

/// Redis round trips per request at about 1,000 requests a second, under a limit of 2,000 a
/// second with a burst of 200 (so leases live 50 ms): one replica, then three sharing the
/// load. Counted by Redis itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_request_at_1000_a_second() {
    let redis = RedisServer::start();
    let limit = RateLimitConfig::new(2000, SECOND).burst(200);
    let config = FleetConfig::new(redis.url()).timeout(500 * MS);
    for replicas in [1u32, 3] {
        let fleets: Vec<_> = (0..replicas).map(|_| fleet(config.clone())).collect();
        let key = format!("api-{replicas}");
        let before = redis.round_trips();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for fleet in &fleets {
            let rate = fleet.rate(&key, limit);
            // Each replica its share of 1,000 a second, for 2 s.
            let every = MS * replicas;
            let calls = 2000 / replicas;
            tasks.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                let mut waited = Duration::ZERO;
                for _ in 0..calls {
                    ticks.tick().await;
                    waited = waited.max(take(&rate).await);
                }
                waited
            }));
        }
        let mut longest = Duration::ZERO;
        for task in tasks {
            longest = longest.max(task.await.unwrap());
        }
        let elapsed = start.elapsed();
        let round_trips = redis.round_trips() - before;
        let requests = 2000 / replicas * replicas;
        let per_request = round_trips as f64 / f64::from(requests);
        let counted: u64 = fleets.iter().map(Fleet::round_trips).sum();
        println!(
            "{replicas} replica(s), {requests} requests in {elapsed:?}: {round_trips} round \
             trips ({counted} calls by the fleets), {per_request:.3} per request; longest wait \
             for a slot {longest:?}"
        );
        assert!(per_request <= 0.1, "{per_request} round trips per request");
    }
}

/// Twelve replicas held at one limit (500 a second, burst 480, 40 per replica: leases live
/// 480 ms), each sent more than its share (its callers eager, two at a time), for 1.5 s
/// once the burst is spent: the bound holds, and the replicas refused are told distinct
/// instants, each when its own batch is free. Told all the same instant (as before), they
/// came back at once, one got the batch and the rest asked again: 0.39–0.40 round trips per
/// slot granted here (3.0 with 100 replicas, BENCHMARKS.md); in turn, 0.07. A lone replica
/// held at the limit first: served at the rate, as before. Counted by Redis itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_held_at_the_limit_come_back_in_turn() {
    let redis = RedisServer::start();
    for replicas in [1, 12] {
        let per_slot = held_at_the_limit(&redis, replicas).await;
        assert!(
            per_slot <= 0.2,
            "{per_slot:.3} round trips per slot granted: {replicas} replica(s) held at the \
             limit come back as a herd"
        );
    }
}

/// `replicas` fleets, two eager callers each, on one limit of 500 a second with a burst of
/// 480, for 2 s: asserts the bound and that the fleet got most of the rate in the last
/// 1.5 s; answers Redis's round trips per slot granted then.
async fn held_at_the_limit(redis: &RedisServer, replicas: usize) -> f64 {
    const BURST: usize = 480;
    let limit = RateLimitConfig::new(500, SECOND).burst(BURST as u32);
    let config = FleetConfig::new(redis.url()).timeout(500 * MS);
    let fleets: Vec<_> = (0..replicas).map(|_| fleet(config.clone())).collect();
    let key = format!("held-{replicas}");
    let rates: Vec<_> = fleets.iter().map(|f| f.rate(&key, limit)).collect();
    let start = Instant::now();
    // Counted after half a second, once the burst is spent: held at the limit.
    let counted = start + 500 * MS;
    let end = counted + 1500 * MS;
    let callers = EagerCallers::start(&rates, 2, end);
    sleep(counted - Instant::now()).await;
    let before = redis.round_trips();
    let granted = callers.granted().await;
    let elapsed = start.elapsed();
    let round_trips = redis.round_trips() - before;
    let total = granted.len();
    let held = granted.iter().filter(|at| **at >= counted).count();
    let local: u64 = rates.iter().map(SharedRate::fallbacks).sum();
    let local = usize::try_from(local).unwrap();
    let bound = |span: Duration| (500.0 * span.as_secs_f64()) as usize + BURST + local;
    // Per slot Redis granted: a stall past the timeout grants slots locally, with no round
    // trip, which would flatter the figure.
    let per_slot = round_trips as f64 / held.saturating_sub(local).max(1) as f64;
    println!(
        "{replicas} replica(s) held at 500/s, burst {BURST}: {total} granted in {elapsed:?} \
         (bound {}), {held} in the last 1.5 s with {round_trips} round trips, {per_slot:.3} \
         per slot Redis granted; most in 100 ms: {}; {local} by local limits",
        bound(elapsed),
        most_within(&granted, 100 * MS),
    );
    assert!(total <= bound(elapsed), "{total} > {}", bound(elapsed));
    assert_within(&granted, &[10 * MS, 100 * MS, 500 * MS, SECOND], bound);
    // Held at the limit: most of the rate granted (a wide margin: the machine may be slow).
    assert!(held >= 600, "{held} of 750: far under the rate");
    per_slot
}

/// One replica at a quarter of its limit (250 a second of 1,000, burst 200: leases live
/// 100 ms, and hold what it spends in 75 ms, 19 slots): its leases are what it spends (at
/// most 45 slots leased at any time), refilled with a quarter left (20 ms of calls, for a
/// round trip), so that calls are seldom told to wait, even after a burst. Leases that
/// expired with slots left used to count as running dry: after a burst the next was doubled
/// (up to 64 slots, 256 ms of calls), expired unspent in its turn, and so on: 63 slots
/// leased, every 100 ms a caller finding none and waiting for a refill (15 of 375 calls),
/// and the TAT in Redis ahead of what the fleet spent (what refused another replica for
/// 15-24 ms in `redis_killed_mid_run_falls_back_and_resumes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_under_its_rate_leases_what_it_spends() {
    let redis = RedisServer::start();
    let fleet = fleet(FleetConfig::new(redis.url()).timeout(500 * MS));
    let rate = fleet.rate("quarter", RateLimitConfig::new(1000, SECOND).burst(200));
    let mut ticks = tokio::time::interval(4 * MS);
    // No catch-up bursts after a stall of a loaded machine: the rate stays a quarter.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Past the first lease and its ramp up (1, 2, 4... slots).
    for _ in 0..25 {
        ticks.tick().await;
        take(&rate).await;
    }
    // A stall's worth of calls at once, as an `interval` catching up sends them: more than
    // a lease holds, so it runs dry.
    for _ in 0..40 {
        take(&rate).await;
    }
    // Its next lease may be too large once (expiring with slots left, then a caller waits
    // for a refill); the one after is what it spends again.
    for _ in 0..100 {
        ticks.tick().await;
        take(&rate).await;
    }
    let (mut refused, mut most_leased) = (0, 0);
    for _ in 0..375 {
        ticks.tick().await;
        if take(&rate).await > Duration::ZERO {
            refused += 1;
        }
        most_leased = most_leased.max(rate.leased(Instant::now()));
    }
    println!("{refused} of 375 calls told to wait; at most {most_leased} slots leased");
    // Leases of what it spends (19), at most twice that after running dry, and what is
    // left of the last one: not 64 (the most a lease holds) again and again. (How many calls
    // wait is printed, not asserted: a loaded machine's late refills add waits, up to 8 of
    // 375 with the whole file running, against 15 for leases expiring every lease life.)
    assert!(most_leased <= 45, "{most_leased} slots leased");
    assert_eq!(rate.fallbacks(), 0);
}

// ---------------------------------------------------------------------------------------
// (b) Shared holds
// ---------------------------------------------------------------------------------------

/// A hold set by one replica is seen by the others within `sync_interval + 2 × timeout`
/// (by the background sync), and by a replica that only refills its rate lease, through the
/// refill's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_set_by_one_replica_holds_the_others() {
    let redis = RedisServer::start();
    let (every, timeout) = (50 * MS, 100 * MS);
    let config = FleetConfig::new(redis.url())
        .sync_interval(every)
        .timeout(timeout);
    let fleets: Vec<_> = (0..3).map(|_| fleet(config.clone())).collect();
    let holds: Vec<_> = fleets.iter().map(|f| f.hold("api.example")).collect();
    // A fourth replica that syncs only every minute: it can learn the hold from a refill.
    let slow = fleet(config.clone().sync_interval(60 * SECOND));
    let slow_hold = slow.hold("api.example");
    let slow_rate = slow.rate("api.example", RateLimitConfig::new(1000, SECOND).burst(8));
    take(&slow_rate).await;
    sleep(200 * MS).await; // every sync task has started and found nothing held

    let set = Instant::now();
    holds[0].hold_until(set + 3 * SECOND);
    assert_eq!(holds[0].remaining(set), Some(3 * SECOND));
    let bound = every + 2 * timeout;
    for hold in &holds[1..] {
        while hold.remaining(Instant::now()).is_none() {
            assert!(set.elapsed() <= bound, "not held after {:?}", set.elapsed());
            sleep(MS).await;
        }
        let seen = set.elapsed();
        let left = hold.remaining(Instant::now()).unwrap();
        println!("seen by another replica after {seen:?} (bound {bound:?}), {left:?} left");
        // Never longer than the hold itself, but for Redis's clock: it counts whole
        // milliseconds, read once per event-loop pass (a script's time is frozen at its start),
        // so under load the key's TTL may read a few milliseconds long (seen: 1 run in ~20 on a
        // busy 2-core machine, past a 1 ms slack).
        assert!(left <= 3 * SECOND - seen + 5 * MS, "{left:?}");
    }
    let in_redis = redis.pttl("resilient-http:hold:api.example");
    assert!(in_redis > 2000 && in_redis <= 3000, "{in_redis}");

    assert_eq!(slow_hold.remaining(Instant::now()), None);
    while slow_hold.remaining(Instant::now()).is_none() {
        assert!(
            set.elapsed() < 2 * SECOND,
            "the refills never carried the hold"
        );
        take(&slow_rate).await;
    }
    println!("learned through a lease refill after {:?}", set.elapsed());
}

// ---------------------------------------------------------------------------------------
// (c) The shared budget
// ---------------------------------------------------------------------------------------

/// A budget of half the first attempts, 60 of them all made by one replica: 30 retries for
/// the whole fleet, whichever replicas spend them (the two that made no first attempt have
/// nothing in their local budgets). With a sync before and after each withdrawal the cap is
/// exact; without, each replica may spend what it last saw (the staleness bound), and the
/// excess is paid back: after a sync nobody may retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_budget_caps_fleet_wide_retries() {
    let redis = RedisServer::start();
    // Syncs only when the test asks: each step is then exact.
    let config = FleetConfig::new(redis.url())
        .sync_interval(60 * SECOND)
        .timeout(500 * MS);
    let fleets: Vec<_> = (0..3).map(|_| fleet(config.clone())).collect();
    let budget = BudgetConfig::new(0.5, 0, 10 * SECOND);

    for key in ["exact", "stale"] {
        let budgets: Vec<_> = fleets.iter().map(|f| f.budget(key, budget)).collect();
        let now = Instant::now();
        for _ in 0..60 {
            budgets[0].deposit(now);
        }
        // Not synced yet: the others' local budgets have nothing.
        assert!(!budgets[1].withdraw(now));
        assert!(fleets[0].sync().await);
        for fleet in &fleets[1..] {
            assert!(fleet.sync().await);
        }
        for budget in &budgets {
            assert_eq!(budget.available(Instant::now()), 30, "{key}");
        }
        let mut spent = [0u32; 3];
        if key == "exact" {
            for turn in 0..90 {
                let replica = turn % 3;
                assert!(fleets[replica].sync().await);
                if budgets[replica].withdraw(Instant::now()) {
                    spent[replica] += 1;
                }
                assert!(fleets[replica].sync().await);
            }
            assert_eq!(spent.iter().sum::<u32>(), 30, "{spent:?}");
            assert_eq!(spent, [10, 10, 10]);
        } else {
            // Each spends what it last saw, not knowing the others do too.
            for (replica, budget) in budgets.iter().enumerate() {
                while budget.withdraw(Instant::now()) {
                    spent[replica] += 1;
                }
            }
            assert_eq!(spent, [30, 30, 30], "at most replicas × balance");
        }
        for fleet in &fleets {
            assert!(fleet.sync().await);
        }
        for budget in &budgets {
            assert_eq!(budget.available(Instant::now()), 0, "{key}");
            assert!(!budget.withdraw(Instant::now()), "{key}");
        }
        println!("{key}: {spent:?} retries spent of 30");
    }
}

/// A `sync()` dropped while its flush waits (a caller's timeout, a shutdown) loses no
/// retries: the counts it took go back, and the next sync flushes them. Redis is frozen
/// while the flush waits, then killed, so that it never arrives; a Redis started again is
/// empty, and the other replica then sees exactly the retries flushed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sync_loses_no_retry() {
    let mut redis = RedisServer::start();
    let config = FleetConfig::new(redis.url())
        .sync_interval(60 * SECOND)
        .timeout(500 * MS);
    let (a, b) = (fleet(config.clone()), fleet(config));
    let budget = BudgetConfig::new(0.0, 1, 10 * SECOND);
    let (spender, watcher) = (a.budget("k", budget), b.budget("k", budget));
    assert!(a.sync().await && b.sync().await);
    for _ in 0..3 {
        assert!(spender.withdraw(Instant::now()));
    }
    redis.freeze(true);
    let dropped = tokio::time::timeout(5 * MS, a.sync()).await;
    assert!(dropped.is_err(), "the sync was still waiting when dropped");
    redis.stop();
    redis.restart();
    let back = Instant::now();
    while !a.sync().await {
        assert!(back.elapsed() < 10 * SECOND, "redis answers again");
        sleep(20 * MS).await;
    }
    while !b.sync().await {
        assert!(back.elapsed() < 10 * SECOND, "redis answers again");
        sleep(20 * MS).await;
    }
    assert_eq!(
        watcher.available(Instant::now()),
        7,
        "10 less the 3 retries"
    );
}

// ---------------------------------------------------------------------------------------
// (d) Redis down: local limits, no error, no wait beyond the timeout
// ---------------------------------------------------------------------------------------

#[path = "common/logs.rs"]
mod logs;

/// Log lines of this test binary (the fleets log with their prefix, so tests can tell
/// theirs apart), at INFO and above.
fn capture_logs() {
    logs::capture_globally(tracing::Level::INFO);
}

/// Stops `redis`, and waits until every one of `fleets` has noticed (within 5 s): the
/// instant it stopped.
async fn stop_until_noticed(redis: &mut RedisServer, fleets: &[Fleet]) -> Instant {
    redis.stop();
    let down = Instant::now();
    while fleets.iter().any(Fleet::is_up) {
        assert!(
            down.elapsed() < 5 * SECOND,
            "never noticed that Redis is down"
        );
        sleep(5 * MS).await;
    }
    down
}

/// Lines logged with `prefix` that contain `text`.
fn logged(prefix: &str, text: &str) -> usize {
    logs::captured()
        .lines()
        .filter(|line| line.contains(&format!("prefix={prefix}")) && line.contains(text))
        .count()
}

/// Two replicas calling steadily (500 a second in all, under a limit of 1,000) with the
/// default 20 ms timeout; Redis is killed after 1 s and started again after 2 s. Every call
/// gets its slot, no wait for Redis ever exceeds the timeout, the outage is logged once per
/// change, and sharing resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_falls_back_and_resumes() {
    capture_logs();
    let mut redis = RedisServer::start();
    let prefix = "killed:";
    let config = FleetConfig::new(redis.url())
        .prefix(prefix)
        .sync_interval(50 * MS);
    let timeout = config.timeout;
    assert_eq!(timeout, 20 * MS, "the default");
    let fleets: Vec<_> = (0..2).map(|_| fleet(config.clone())).collect();
    let limit = RateLimitConfig::new(1000, SECOND).burst(100);
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut tasks = Vec::new();
    for fleet in &fleets {
        let rate = fleet.rate("api.example", limit);
        let hold = fleet.hold("api.example");
        let budget = fleet.budget("api.example", BudgetConfig::default());
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(4 * MS);
            let (mut calls, mut most_waited, mut slowest) = (0u32, Duration::ZERO, Duration::ZERO);
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                ticks.tick().await;
                let start = Instant::now();
                assert_eq!(hold.remaining(start), None);
                budget.deposit(start);
                let waited = take(&rate).await;
                budget.withdraw(Instant::now());
                calls += 1;
                most_waited = most_waited.max(waited);
                slowest = slowest.max(start.elapsed());
            }
            (calls, most_waited, slowest)
        }));
    }

    sleep(SECOND).await;
    // (The rate key itself comes and goes: it expires whenever the fleet is under its rate.)
    assert!(redis.round_trips() > 0, "shared before the outage");
    let down = stop_until_noticed(&mut redis, &fleets).await;
    println!(
        "both replicas on local limits {:?} after the kill",
        down.elapsed()
    );
    sleep(SECOND).await;
    redis.restart();
    let back = Instant::now();
    // A new redis-server: its counts start again from zero.
    while !fleets.iter().all(Fleet::is_up) || redis.round_trips() < 10 {
        assert!(back.elapsed() < 10 * SECOND, "sharing never resumed");
        sleep(5 * MS).await;
    }
    println!("sharing again {:?} after the restart", back.elapsed());
    sleep(200 * MS).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);

    let mut all = 0;
    for task in tasks {
        let (calls, most_waited, slowest) = task.await.unwrap();
        println!(
            "{calls} calls; longest wait asked for a slot {most_waited:?}, slowest {slowest:?}"
        );
        all += calls;
        assert!(most_waited <= timeout, "{most_waited:?} waited for Redis");
    }
    assert!(all >= 500, "{all} calls");
    let (warned, recovered) = (
        logged(prefix, "fleet: redis unavailable, using local limits"),
        logged(prefix, "fleet: redis available again"),
    );
    println!("{warned} WARN and {recovered} INFO lines for {all} calls");
    // Once per replica and change (a loaded machine may add a change, never one per call).
    assert!((2..=6).contains(&warned), "{warned} warnings");
    assert!((2..=6).contains(&recovered), "{recovered} recoveries");
    // Up at the end, or soon: a call that a loaded machine made later than the timeout
    // after the restart (the extra change the counts allow) takes the fleet down until its
    // probe is answered in time, as it should.
    let end = Instant::now();
    while !fleets.iter().all(Fleet::is_up) {
        assert!(end.elapsed() < 5 * SECOND, "sharing did not last");
        sleep(5 * MS).await;
    }
}

/// Twenty replicas lose Redis together and it comes back after 3 s: they do not all come
/// back in the same instant. Each reconnects on its own jittered backoff (the connection
/// manager's delays of up to 1 s, each stretched by a random share of itself), so they share
/// again spread over about a second. The `redis` crate seeds that jitter with one constant
/// unless backon's `std` feature is on (`default-features = false` in `redis`): every
/// replica then drew the same delays, and all twenty came back within 6 ms of one another
/// (1.2–1.6 s apart since; a hundred came back within 170 ms, up to 1,231 Redis commands in
/// one 100 ms: `benches/fleet_replicas.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_come_back_spread_out_after_a_restart() {
    let mut redis = RedisServer::start();
    // A generous timeout: a slow machine's first connections must not count as an outage.
    let config = FleetConfig::new(redis.url())
        .prefix("spread:")
        .timeout(500 * MS);
    let fleets: Vec<_> = (0..20).map(|_| fleet(config.clone())).collect();
    // A hold each: the background sync (and, while Redis is down, its probe) runs.
    let _holds: Vec<_> = fleets.iter().map(|f| f.hold("api.example")).collect();
    let start = Instant::now();
    for fleet in &fleets {
        while !(fleet.sync().await && fleet.is_up()) {
            assert!(start.elapsed() < 10 * SECOND, "Redis never answered");
        }
    }
    let down = stop_until_noticed(&mut redis, &fleets).await;
    // Long enough for every reconnection's delay to reach its longest (1 s).
    sleep((3 * SECOND).saturating_sub(down.elapsed())).await;
    redis.restart();
    let back = Instant::now();
    let mut up_after = vec![None; fleets.len()];
    while up_after.iter().any(Option::is_none) {
        assert!(
            back.elapsed() < 10 * SECOND,
            "sharing never resumed: {up_after:?}"
        );
        for (fleet, at) in fleets.iter().zip(&mut up_after) {
            if at.is_none() && fleet.is_up() {
                *at = Some(back.elapsed());
            }
        }
        sleep(MS).await;
    }
    let mut up_after: Vec<Duration> = up_after.into_iter().flatten().collect();
    up_after.sort();
    let spread = up_after[up_after.len() - 1] - up_after[0];
    println!("20 replicas sharing again after the restart, spread over {spread:?}: {up_after:?}");
    // Twenty independent delays of 1-2 s land within 300 ms of one another with a
    // probability far below 10⁻¹⁰; the same delays, always.
    assert!(
        spread >= 300 * MS,
        "all back within {spread:?}: {up_after:?}"
    );
}

/// A Redis that hangs (frozen: its connection open, no answer) rather than refuses: every
/// call still gets its slot with no wait beyond the timeout, and sharing resumes when it
/// answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_costs_at_most_the_timeout() {
    let redis = RedisServer::start();
    let fleet = fleet(FleetConfig::new(redis.url()).sync_interval(50 * MS));
    let timeout = fleet.config().timeout;
    let rate = fleet.rate("api.example", RateLimitConfig::new(1000, SECOND).burst(100));
    let mut most_waited = Duration::ZERO;
    let mut ticks = tokio::time::interval(2 * MS);
    let call = |phase: &'static str| {
        let rate = rate.clone();
        async move {
            let waited = take(&rate).await;
            assert!(waited <= timeout, "{phase}: waited {waited:?} for Redis");
            waited
        }
    };
    for _ in 0..100 {
        ticks.tick().await;
        most_waited = most_waited.max(call("before").await);
    }
    assert!(fleet.is_up());
    redis.freeze(true);
    let frozen = Instant::now();
    for _ in 0..250 {
        ticks.tick().await;
        most_waited = most_waited.max(call("frozen").await);
    }
    assert!(!fleet.is_up(), "500 ms frozen, still sharing");
    redis.freeze(false);
    let thawed = Instant::now();
    while !fleet.is_up() {
        assert!(thawed.elapsed() < 5 * SECOND, "sharing never resumed");
        ticks.tick().await;
        most_waited = most_waited.max(call("thawed").await);
    }
    println!(
        "frozen for {:?}, sharing again {:?} after; longest wait for a slot {most_waited:?}",
        thawed - frozen,
        thawed.elapsed()
    );
}

/// A Redis that never was: every call is answered by the local limits, no wait beyond the
/// timeout, and no error anywhere; made and used outside a runtime too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_every_call_is_answered_locally() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fleet = fleet(FleetConfig::new(format!("redis://127.0.0.1:{port}")));
    let rate = fleet.rate("api.example", RateLimitConfig::new(100, SECOND).burst(10));
    let budget = fleet.budget("api.example", BudgetConfig::new(0.5, 0, 10 * SECOND));
    let hold = fleet.hold("api.example");
    let start = Instant::now();
    let mut most_waited = Duration::ZERO;
    for _ in 0..10 {
        most_waited = most_waited.max(take(&rate).await);
    }
    assert!(most_waited <= 20 * MS, "{most_waited:?}");
    // The refill that found no Redis ends at its timeout, and turns the fleet down.
    while fleet.is_up() {
        assert!(start.elapsed() < SECOND, "still up");
        sleep(MS).await;
    }
    // Then the local limit: 10 at once, then 100 a second (so a few more, on a machine slow
    // to notice that Redis is gone, but not another 10).
    let now = Instant::now();
    let more = (0..10).filter(|_| rate.try_take(now).is_ok()).count();
    let earned = (now - start).as_secs_f64() * 100.0;
    assert!(
        more as f64 <= earned + 1.0,
        "{more} more after {:?}",
        now - start
    );
    println!("10 slots in {:?} without Redis", start.elapsed());
    for _ in 0..4 {
        budget.deposit(now);
    }
    assert!(budget.withdraw(now) && budget.withdraw(now) && !budget.withdraw(now));
    hold.hold_until(now + SECOND);
    assert_eq!(hold.remaining(now), Some(SECOND));
    assert!(!fleet.sync().await);

    // Outside any runtime: the fleet's own runtime thread looks for Redis (and finds none
    // here), and the local limit answers within the timeout.
    let url = format!("redis://127.0.0.1:{port}");
    std::thread::spawn(move || {
        let fleet = Fleet::new(FleetConfig::new(url)).unwrap();
        let rate = fleet.rate("api.example", RateLimitConfig::new(1, SECOND));
        let mut waited = Duration::ZERO;
        while let Err(wait) = rate.try_take(Instant::now()) {
            waited += wait;
            std::thread::sleep(wait);
        }
        assert!(waited <= 20 * MS, "{waited:?}");
        let start = std::time::Instant::now();
        while fleet.is_up() {
            assert!(start.elapsed() < SECOND, "still up");
            std::thread::sleep(MS);
        }
        assert!(rate.try_take(Instant::now()).is_err());
    })
    .join()
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// (e) Keys
// ---------------------------------------------------------------------------------------

/// Every key carries the prefix and an expiry; an idle rate key is gone once its TAT is
/// past, and a budget's hash keeps a bounded number of fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_the_prefix_and_expire() {
    let redis = RedisServer::start();
    let fleet = fleet(
        FleetConfig::new(redis.url())
            .prefix("svc-a/")
            .timeout(500 * MS)
            .sync_interval(20 * MS),
    );
    let rate = fleet.rate("api.example", RateLimitConfig::new(100, SECOND).burst(10));
    let hold = fleet.hold("api.example");
    let budget = fleet.budget("api.example", BudgetConfig::new(0.5, 1, SECOND));
    for _ in 0..30 {
        take(&rate).await;
        budget.deposit(Instant::now());
        budget.withdraw(Instant::now());
        sleep(MS).await;
    }
    hold.hold_until(Instant::now() + 2 * SECOND);
    assert!(fleet.sync().await);
    assert_eq!(
        redis.keys(),
        [
            "svc-a/budget:api.example",
            "svc-a/gcra:api.example",
            "svc-a/hold:api.example"
        ]
    );
    // The TAT is at most the burst ahead (100 ms), and its settings are kept a second after
    // the last grant (so that a replica with others does not replace them while these are
    // in use); the hold 2 s, the budget a window and a step (1.1 s).
    let ttl = |kind: &str| redis.pttl(&format!("svc-a/{kind}:api.example"));
    assert!((1..=1_001).contains(&ttl("gcra")), "{}", ttl("gcra"));
    assert!((1_500..=2_000).contains(&ttl("hold")), "{}", ttl("hold"));
    assert!((1..=1_100).contains(&ttl("budget")), "{}", ttl("budget"));
    let fields: u64 = redis::cmd("HLEN")
        .arg("svc-a/budget:api.example")
        .query(&mut redis.conn())
        .unwrap();
    assert!(fields <= 22, "{fields} fields");

    // Idle: the rate key goes first, then the budget's (no more flushes), then the hold.
    let idle = Instant::now();
    while !redis.keys().is_empty() {
        assert!(idle.elapsed() < 5 * SECOND, "left: {:?}", redis.keys());
        sleep(50 * MS).await;
    }
    println!("every key expired {:?} after the last call", idle.elapsed());
    drop((rate, hold, budget));
}

// ---------------------------------------------------------------------------------------
// (f) A Redis that answers but refuses writes, settings that differ, leases too short
// ---------------------------------------------------------------------------------------

/// `WARN` and `INFO` lines a fleet with `prefix` logged about Redis being down or back.
fn fleet_changes(prefix: &str) -> (usize, usize) {
    let lines = logs::captured();
    let count = |level: &str| {
        lines
            .lines()
            .filter(|line| line.contains(&format!("prefix={prefix}")))
            .filter(|line| line.contains(level) && line.contains("fleet: redis"))
            .count()
    };
    (count(" WARN "), count(" INFO "))
}

/// Redis out of memory (`noeviction`, full): the lease script's `SET` is refused while its
/// reads, the sync's and a `PING`, are answered. The fleet is down for sharing until a write
/// succeeds: one WARN on the way down, no flapping, `is_up()` false at every instant, and one
/// INFO once memory is freed. (`maxmemory` 2 MB rather than 1 MB: an empty Redis 7 already
/// uses about 0.9 MB, so 1 MB is full with the test's own connections.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_is_down_until_a_write_succeeds() {
    capture_logs();
    let redis = RedisServer::start();
    let prefix = "oom:";
    let fleet = fleet(
        FleetConfig::new(redis.url())
            .prefix(prefix)
            .timeout(500 * MS)
            .sync_interval(50 * MS),
    );
    let rate = fleet.rate("api.example", RateLimitConfig::new(1000, SECOND).burst(100));
    let hold = fleet.hold("api.example");
    let budget = fleet.budget("api.example", BudgetConfig::default());
    // Callers at 500 a second, throughout.
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let caller = {
        let (rate, running) = (rate.clone(), running.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(2 * MS);
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                ticks.tick().await;
                budget.deposit(Instant::now());
                take(&rate).await;
            }
        })
    };
    sleep(300 * MS).await;
    assert!(fleet.is_up());
    assert_eq!(hold.remaining(Instant::now()), None);

    let mut conn = redis.conn();
    let filler = vec![b'x'; 3_000_000];
    let _: () = redis::cmd("SET")
        .arg("filler")
        .arg(filler)
        .query(&mut conn)
        .unwrap();
    for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "2mb")] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut conn)
            .unwrap();
    }
    let full = Instant::now();
    while fleet.is_up() {
        assert!(
            full.elapsed() < 5 * SECOND,
            "a refused write went unnoticed"
        );
        sleep(MS).await;
    }
    // `is_up()` turns false a moment before the WARN is written, on another thread.
    let mut went_down = fleet_changes(prefix);
    while went_down == (0, 0) && full.elapsed() < 5 * SECOND {
        sleep(MS).await;
        went_down = fleet_changes(prefix);
    }
    // 3 s of a full Redis: down at every instant, and nothing more logged.
    let mut up_seen = 0;
    let watch = Instant::now();
    while watch.elapsed() < 3 * SECOND {
        up_seen += usize::from(fleet.is_up());
        sleep(MS).await;
    }
    let (warned, recovered) = fleet_changes(prefix);
    println!(
        "redis full: {warned} WARN and {recovered} INFO lines in 3 s, is_up() true at {up_seen} \
         instants"
    );
    assert_eq!(went_down, (1, 0), "one WARN on the way down");
    assert_eq!((warned, recovered), (1, 0), "no flapping while full");
    assert_eq!(up_seen, 0, "is_up() stayed false");

    let _: () = redis::cmd("DEL").arg("filler").query(&mut conn).unwrap();
    let freed = Instant::now();
    while !fleet.is_up() {
        assert!(freed.elapsed() < 5 * SECOND, "sharing never resumed");
        sleep(MS).await;
    }
    let mut down_seen = 0;
    while freed.elapsed() < 3 * SECOND {
        down_seen += usize::from(!fleet.is_up());
        sleep(MS).await;
    }
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    caller.await.unwrap();
    let (warned, recovered) = fleet_changes(prefix);
    println!("memory freed: {warned} WARN and {recovered} INFO lines in all");
    assert_eq!((warned, recovered), (1, 1), "one INFO on the way back");
    assert_eq!(down_seen, 0, "is_up() stayed true");
}

/// Two replicas with different settings for one shared limit (a rolling deploy that raises
/// it): A at 100 a second, burst 20, and B at 200 a second, burst 20. Every replica
/// enforces the settings in Redis (A's: it leased first), both get a fair share of it, and
/// B logs the mismatch once, with both settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_different_settings_enforce_one_limit_and_share_it() {
    capture_logs();
    let redis = RedisServer::start();
    let prefix = "mixed:";
    let config = FleetConfig::new(redis.url())
        .prefix(prefix)
        .timeout(500 * MS);
    let (a, b) = (fleet(config.clone()), fleet(config));
    let rate_a = a.rate("api.example", RateLimitConfig::new(100, SECOND).burst(20));
    let rate_b = b.rate("api.example", RateLimitConfig::new(200, SECOND).burst(20));
    take(&rate_a).await;
    let start = Instant::now();
    let end = start + 3 * SECOND;
    let mut tasks = Vec::new();
    for rate in [&rate_a, &rate_b] {
        for _ in 0..2 {
            let rate = rate.clone();
            tasks.push(tokio::spawn(async move {
                let mut granted = 0usize;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        return granted;
                    }
                    match rate.try_take(now) {
                        Ok(()) => granted += 1,
                        Err(wait) => sleep(wait.min(end - now)).await,
                    }
                }
            }));
        }
    }
    let mut counts = [0usize; 2];
    for (i, task) in tasks.into_iter().enumerate() {
        counts[i / 2] += task.await.unwrap();
    }
    let elapsed = start.elapsed();
    let total = counts[0] + counts[1];
    let local = usize::try_from(rate_a.fallbacks() + rate_b.fallbacks()).unwrap();
    let bound = (100.0 * elapsed.as_secs_f64()) as usize + 20 + local;
    let mismatches = {
        logs::captured()
            .lines()
            .filter(|line| line.contains(&format!("prefix={prefix}")) && line.contains(" WARN "))
            .inspect(|line| println!("{line}"))
            .count()
    };
    println!(
        "A (100/s, burst 20) {} and B (200/s, burst 20) {} in {elapsed:?}: {total} (bound \
         {bound} at A's settings, {local} local); {mismatches} WARN",
        counts[0], counts[1]
    );
    assert!(total <= bound, "{total} > {bound}: one limit enforced");
    assert!(total >= 200, "{total}: far under the limit");
    // A fair share is a half. Two replicas sharing one limit split it unevenly on a loaded
    // machine (whichever fleet's thread runs less gets less): from 101/205 to 205/101 in 18
    // runs with both cores busy, 50/257 once under scripts/flaky.sh (with equal settings,
    // 125/183 to 178/127). Before the settings were shared, B got 0 to 2 of about 305.
    for (name, count) in ["A", "B"].iter().zip(counts) {
        assert!(
            count * 10 >= total,
            "{name} got {count} of {total}: starved"
        );
    }
    assert_eq!(mismatches, 1, "the mismatch logged once");
}

/// A limit whose leases live far less than one round trip (100,000 a second with the
/// default burst of 1: 10 µs) is local, and says why, once: its leases expire before they
/// arrive, and `burst` is the setting to change. Redis answers within its timeout (a
/// generous one, so that a loaded machine does not make a refill really late): no WARN says
/// otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_shorter_than_a_round_trip_are_named_as_the_cause() {
    capture_logs();
    let redis = RedisServer::start();
    let prefix = "short:";
    let fleet = fleet(
        FleetConfig::new(redis.url())
            .prefix(prefix)
            .timeout(500 * MS),
    );
    let rate = fleet.rate("api.example", RateLimitConfig::new(100_000, SECOND));
    let start = Instant::now();
    let mut ticks = tokio::time::interval(MS / 2);
    while start.elapsed() < SECOND {
        ticks.tick().await;
        take(&rate).await;
    }
    let warnings: Vec<String> = {
        logs::captured()
            .lines()
            .filter(|line| line.contains(&format!("prefix={prefix}")) && line.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    };
    for line in &warnings {
        println!("{line}");
    }
    assert!(fleet.is_up(), "Redis answered");
    assert!(rate.fallbacks() > 0, "local");
    assert_eq!(warnings.len(), 1, "logged once: {warnings:?}");
    let line = &warnings[0];
    assert!(!line.contains("later than"), "{line}");
    assert!(line.contains("expire") && line.contains("burst"), "{line}");
}
