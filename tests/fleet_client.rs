//! Clients (and `probe` processes) standing for replicas of one service, sharing one Redis
//! and one loopback server, configured as users configure them: a policy file with a
//! `[redis]` table and `shared = "redis"`. The fleet's own bounds are tested in
//! `tests/fleet.rs`; these check that every path of the client uses them.
//!
//! Real time (Redis keeps its own clock). The Redis timeout is 250 ms here rather than
//! 20 ms: these tests check sharing, not degrading, and a loaded machine must not make a
//! replica fall back to its local limits (which would let it through on its own).
#![cfg(feature = "redis")]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};
use tokio::task::JoinSet;

#[path = "common/redis.rs"]
mod real_redis;
use real_redis::RedisServer;

const SECOND: Duration = Duration::from_secs(1);

/// The policy file of every replica in a test: `[redis]` (each test has its own prefix, so
/// that a test's keys are its own), then `policies`.
fn policy_file(redis: &RedisServer, test: &str, policies: &str) -> String {
    format!(
        "[redis]\nurl = \"{}\"\nprefix = \"{test}:\"\ntimeout = \"250ms\"\n\
         sync_interval = \"50ms\"\n\n{policies}",
        redis.url()
    )
}

fn replicas(count: usize, file: &str) -> Vec<Client> {
    (0..count)
        .map(|_| Client::builder().config_toml(file).build().unwrap())
        .collect()
}

async fn sync_all(clients: &[Client]) {
    for client in clients {
        assert!(
            client.fleet().expect("a fleet").sync().await,
            "redis answers"
        );
    }
}

/// Three replicas with four eager callers each, under one shared limit of 100 a second
/// (burst 20), for 10 s: the server gets at most `100 × T + 20` in all, and most of that.
/// Each replica alone would send 100 a second: 3 × as many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_rate_limit() {
    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let file = policy_file(
        &redis,
        "rate",
        "[default.rate_limit]\nrate = 100\nburst = 20\nshared = \"redis\"\n",
    );
    let clients = replicas(3, &file);
    let run = 10 * SECOND;
    let start = Instant::now();
    let failed = Arc::new(AtomicUsize::new(0));
    let mut callers = JoinSet::new();
    for client in &clients {
        for _ in 0..4 {
            let (client, url, failed) = (client.clone(), server.url("/quota"), failed.clone());
            callers.spawn(async move {
                while start.elapsed() < run {
                    if client.get(url.as_str()).send().await.is_err() {
                        failed.fetch_add(1, SeqCst);
                    }
                }
            });
        }
    }
    callers.join_all().await;
    let elapsed = start.elapsed();
    let hits = server.hits("/quota");
    let bound = 100.0 * elapsed.as_secs_f64() + 20.0;
    println!(
        "3 replicas, {elapsed:?}: {hits} requests reached the server (bound {bound:.0}), \
         {} round trips to Redis",
        redis.round_trips()
    );
    let key = format!("http://{}", server.addr());
    let fallbacks: Vec<_> = (clients.iter())
        .map(|c| c.overload("default", &key).unwrap().rate_limit_fallbacks())
        .collect();
    println!("slots granted locally instead (Redis slower than its timeout): {fallbacks:?}");
    assert!(fallbacks.iter().all(Option::is_some), "shared limits");
    assert_eq!(failed.load(SeqCst), 0, "no call failed");
    // A replica whose lease came back later than the timeout (a loaded machine) granted
    // those slots by its own limit, outside the fleet's bound: they are counted.
    let local: u64 = fallbacks.iter().flatten().sum();
    assert!(
        hits as f64 <= bound + local as f64,
        "{hits} > {bound} + {local}"
    );
    assert!(
        hits as f64 >= 0.6 * 100.0 * run.as_secs_f64(),
        "{hits}: most of the rate"
    );
}

/// A `429` with `Retry-After: 2` answered to one replica holds the endpoint for the others:
/// their calls that cannot wait that long fail at once with `RateLimited`, sending nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_sent_to_one_replica_holds_them_all() {
    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/held",
        [Reply::status(429).retry_after_secs(2), Reply::ok("ok")],
    );
    let file = policy_file(&redis, "hold", "[default]\nmax_attempts = 1\n");
    let clients = replicas(3, &file);
    // Replicas at work: each has called the endpoint (a replica's first call there goes out
    // before it could learn of a hold).
    for client in &clients {
        client.get(server.url("/warm")).send().await.unwrap();
    }
    let url = server.url("/held");

    let first = clients[0].get(url.as_str()).send().await.unwrap_err();
    assert_eq!(first.status().map(|s| s.as_u16()), Some(429));
    sync_all(&clients).await;
    for other in &clients[1..] {
        let err = (other.get(url.as_str()))
            .deadline(Duration::from_millis(500))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
        let key = format!("http://{}", server.addr());
        let held = other.overload("default", &key).unwrap().held_for().unwrap();
        assert!(held > SECOND && held <= 2 * SECOND, "{held:?}");
    }
    assert_eq!(server.hits("/held"), 1, "the others sent nothing");

    // A call that can wait goes out when the hold ends, on any replica.
    let start = Instant::now();
    clients[2].get(url.as_str()).send().await.unwrap();
    assert!(start.elapsed() > SECOND, "{:?}", start.elapsed());
    assert_eq!(server.hits("/held"), 2);
}

/// A budget of 10 retries per 10 s (`min_per_second` 1, `ratio` 0), shared by three
/// replicas whose every call fails: the fleet retries 10 times in all, not 10 each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_budget_caps_fleet_wide_retries() {
    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503)]);
    let file = policy_file(
        &redis,
        "budget",
        "[default]\nmax_attempts = 3\n\n[default.backoff]\nbase = \"1ms\"\nmax = \"2ms\"\n\n\
         [default.retry_budget]\nratio = 0.0\nmin_per_second = 1\nwindow = \"10s\"\nshared = \"redis\"\n",
    );
    // Syncs only when the test asks (and once a second): a view goes stale after 2.25 s,
    // never between a sync and the call after it, however loaded the machine.
    let file = file.replace("sync_interval = \"50ms\"", "sync_interval = \"1s\"");
    let clients = replicas(3, &file);
    let url = server.url("/down");
    let mut exhausted = 0;
    for _ in 0..10 {
        for client in &clients {
            // Each replica sees the others' spending before it calls: no sync lag.
            sync_all(&clients).await;
            let err = client.get(url.as_str()).send().await.unwrap_err();
            exhausted += usize::from(err.kind() == ErrorKind::BudgetExhausted);
        }
    }
    let retries = server.hits("/down") - 30;
    println!("30 calls, 3 replicas: {retries} retries, {exhausted} refused by the budget");
    assert_eq!(retries, 10, "the fleet's budget, spent once");
    assert!(exhausted >= 20, "{exhausted}");
}

/// Redis killed in the middle of a run, then started again: every call still succeeds
/// (the replicas use their local limits meanwhile), and sharing resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_costs_no_call() {
    let mut redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    // The default 20 ms timeout: this test is about degrading. A limit the callers never
    // reach, so that the slowest call shows what Redis costs, not a wait for a slot.
    let file = format!(
        "[redis]\nurl = \"{}\"\nprefix = \"kill:\"\n\n\
         [default.rate_limit]\nrate = 100000\nburst = 1000\nshared = \"redis\"\n",
        redis.url()
    );
    let clients = replicas(2, &file);
    let run = 3 * SECOND;
    let start = Instant::now();
    let mut callers = JoinSet::new();
    for client in &clients {
        for _ in 0..2 {
            let (client, url) = (client.clone(), server.url("/ok"));
            callers.spawn(async move {
                // Each call: when it began (since the start) and how long it took.
                let mut calls = Vec::new();
                while start.elapsed() < run {
                    let began = Instant::now();
                    let sent = client.get(url.as_str()).send().await;
                    assert!(sent.is_ok(), "{:?}", sent.err());
                    calls.push((began - start, began.elapsed()));
                }
                calls
            });
        }
    }
    tokio::time::sleep(SECOND).await;
    redis.stop();
    tokio::time::sleep(SECOND).await;
    let down = clients
        .iter()
        .filter(|c| !c.fleet().unwrap().is_up())
        .count();
    redis.restart();
    let calls: Vec<_> = callers.join_all().await.into_iter().flatten().collect();
    // The slowest call before the kill, while Redis was down, and after it came back: what
    // the outage added, beside what a loaded machine adds anyway.
    let slowest = |from: Duration, to: Duration| {
        (calls.iter())
            .filter(|(began, _)| *began >= from && *began < to)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default()
    };
    println!(
        "{} calls, none failed; slowest before the kill {:?}, while down {:?}, after {:?}; \
         {down} of 2 fleets down",
        calls.len(),
        slowest(Duration::ZERO, SECOND),
        slowest(SECOND, 2 * SECOND),
        slowest(2 * SECOND, run),
    );
    assert_eq!(down, 2, "both replicas noticed the outage");
    let key = format!("http://{}", server.addr());
    for client in &clients {
        let handle = client.overload("default", &key).unwrap();
        let local = handle.rate_limit_fallbacks().unwrap();
        assert!(local > 0, "the outage's calls took local slots: {handle:?}");
    }
    let back = Instant::now();
    for client in &clients {
        let fleet = client.fleet().unwrap();
        while !fleet.sync().await {
            assert!(back.elapsed() < 10 * SECOND, "sharing resumed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(fleet.is_up());
    }
}

/// The `probe` example built with the `redis` feature (the tests' own build may lack it).
fn probe_binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--example",
            "probe",
            "--features",
            // The probe example runs the command line's code.
            "redis cli",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let dir = std::env::current_exe().unwrap();
    dir.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/probe")
}

/// Two `probe` processes, as two replicas, with one policy file: a shared limit of 100 a
/// second (burst 10) over 300 requests makes the pair take at least 2.9 s, where each alone
/// would be done in 1.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_probe_processes_share_one_limit() {
    let probe = probe_binary();
    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let file = std::env::temp_dir().join(format!("fleet-probe-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        policy_file(
            &redis,
            "probe",
            "[default.rate_limit]\nrate = 100\nburst = 10\nshared = \"redis\"\n",
        ),
    )
    .unwrap();
    let start = Instant::now();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            tokio::process::Command::new(&probe)
                .args(["--config", file.to_str().unwrap()])
                .args(["--repeat", "150", "--concurrency", "4"])
                .arg(server.url("/probe"))
                .env_remove("RUST_LOG")
                .output()
        })
        .collect();
    let mut lasted = Vec::new();
    for run in runs {
        let output = run.await.unwrap();
        lasted.push(start.elapsed());
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 150);
    }
    let _ = std::fs::remove_file(&file);
    let both = start.elapsed();
    println!("two probes, 300 requests: {both:?} (each done after {lasted:?})");
    assert_eq!(server.hits("/probe"), 300);
    assert!(
        both.as_secs_f64() >= 2.9,
        "{both:?}: the probes shared the limit"
    );
}

/// A reload that keeps the `[redis]` table keeps the connection (and what it learned); one
/// that changes it makes a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_redis_connection_when_its_settings_stay() {
    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    let file = policy_file(
        &redis,
        "reload",
        "[default.rate_limit]\nrate = 100\nburst = 20\nshared = \"redis\"\n",
    );
    let client = Client::builder().config_toml(&file).build().unwrap();
    server.script(
        "/r",
        [Reply::status(503).retry_after_secs(2), Reply::ok("ok")],
    );
    let _ = client.get(server.url("/r")).max_attempts(1).send().await;
    let fleet = client.fleet().unwrap();
    assert!(fleet.sync().await);
    let used = fleet.round_trips();
    assert!(used > 0);
    let key = format!("http://{}", server.addr());
    let held = |client: &Client| client.overload("default", &key).unwrap().held_for();
    assert!(held(&client).is_some());

    client.reload(Client::builder().config_toml(&file)).unwrap();
    assert!(
        client.fleet().unwrap().round_trips() >= used,
        "the same connection"
    );
    assert!(held(&client).is_some(), "and the same guards, still held");

    let moved = file.replace("prefix = \"reload:\"", "prefix = \"moved:\"");
    client
        .reload(Client::builder().config_toml(&moved))
        .unwrap();
    let fresh = client.fleet().unwrap();
    assert_eq!(fresh.round_trips(), 0, "a new connection");
    assert_eq!(fresh.config().prefix, "moved:");
}

/// A replica that calls through `ResilientMiddleware` in a reqwest-middleware chain shares
/// the fleet's holds as a `Client` does: the same guards, on the other path.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middleware_replica_honours_a_hold_a_client_replica_set() {
    use resilient_http::middleware::ResilientMiddleware;

    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/held",
        [Reply::status(503).retry_after_secs(2), Reply::ok("ok")],
    );
    let file = policy_file(&redis, "middleware", "[default]\nmax_attempts = 1\n");
    let client = Client::builder().config_toml(&file).build().unwrap();
    let middleware = ResilientMiddleware::new(Client::builder().config_toml(&file)).unwrap();
    let fleet = middleware.fleet().expect("a fleet");
    let chain = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    chain.get(server.url("/warm")).send().await.unwrap();

    let first = client.get(server.url("/held")).send().await.unwrap_err();
    assert_eq!(first.status().map(|s| s.as_u16()), Some(503));
    assert!(client.fleet().unwrap().sync().await);
    assert!(fleet.sync().await);
    let err = chain
        .get(server.url("/held"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    let err = ResilientMiddleware::error(&err).expect("a typed error");
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert_eq!(
        server.hits("/held"),
        1,
        "the middleware replica sent nothing"
    );
}

/// A client first used on a runtime that then shuts down (start-up code in `block_on`, a
/// test's runtime, one worker of several), then on another: no call may fail for it, and
/// the limit is shared on the second (the fleet's connection and background work run on a
/// thread of its own, which the first runtime's end does not touch).
#[test]
fn a_client_outliving_its_first_runtime_keeps_working_and_shares_again() {
    let redis = RedisServer::start();
    let serving = tokio::runtime::Runtime::new().unwrap();
    let server = serving.block_on(FaultServer::start()).unwrap();
    let file = policy_file(
        &redis,
        "runtimes",
        "[default.rate_limit]\nrate = 1000\nburst = 100\nshared = \"redis\"\n",
    );
    let client = Client::builder().config_toml(&file).build().unwrap();
    let url = server.url("/rt");

    let first = tokio::runtime::Runtime::new().unwrap();
    first.block_on(async {
        for _ in 0..20 {
            client.get(url.as_str()).send().await.unwrap();
        }
    });
    drop(first);

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let start = Instant::now();
        for _ in 0..200 {
            let sent = (client.get(url.as_str())).deadline(2 * SECOND).send().await;
            assert!(sent.is_ok(), "{:?}", sent.err());
        }
        println!("200 calls on the second runtime in {:?}", start.elapsed());
        let fleet = client.fleet().unwrap();
        let back = Instant::now();
        while !(fleet.sync().await && fleet.is_up()) {
            assert!(back.elapsed() < 10 * SECOND, "sharing resumed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Sharing for real: a slot comes from a lease Redis granted, not the local limit.
        let key = format!("http://{}", server.addr());
        let handle = client.overload("default", &key).unwrap();
        let local = handle.rate_limit_fallbacks().unwrap();
        for _ in 0..50 {
            client.get(url.as_str()).send().await.unwrap();
        }
        let after = handle.rate_limit_fallbacks().unwrap();
        assert!(after - local < 50, "{local} -> {after}: shared again");
    });
    assert_eq!(server.hits("/rt"), 270);
}

/// A client that calls a new endpoint on almost every call (a webhook sender): each new key
/// asks for an early sync, and those come at most every quarter `sync_interval`, so Redis
/// sees a few dozen syncs a second, not one per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_endpoints_on_every_call_do_not_sync_on_every_call() {
    let redis = RedisServer::start();
    let file = policy_file(&redis, "churn", "[default]\nmax_attempts = 1\n");
    let client = Client::builder().config_toml(&file).build().unwrap();
    let fleet = client.fleet().unwrap();
    // Ports where nothing listens: each call fails at once, each with its own endpoint key
    // (and its own shared hold).
    let closed: Vec<_> = (0..300)
        .map(|_| resilient_http::testkit::ClosedPort::bind().unwrap())
        .collect();
    let start = Instant::now();
    for port in &closed {
        let _ = client.get(port.url("/hook")).send().await;
    }
    let elapsed = start.elapsed();
    let trips = fleet.round_trips();
    // Syncs at most every 12.5 ms (the tests' 50 ms interval / 4), each one round trip per
    // 64 keys it holds, plus one in flight as the run ends.
    let syncs = elapsed.as_secs_f64() / 0.0125 + 2.0;
    let bound = (syncs * (300.0_f64 / 64.0).ceil()) as u64;
    println!("300 new endpoints in {elapsed:?}: {trips} round trips (bound {bound})");
    assert!(trips <= bound, "{trips} > {bound}");
    assert!(trips < 300, "{trips}: fewer than one per call");
}

/// Policies `x` and `x|y`, each with a rate limit scoped to the rule (Redis keys `x|rule`
/// and `x%7Cy|rule`): two policies, two rate limits, although a policy's name ends at the
/// first `|` of its key. Each spends
/// its one slot a minute, `x` through a client and `x|y` through `ResilientMiddleware` (a
/// replica of either kind); neither finds its slot spent by the other.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_whose_names_and_keys_join_alike_keep_their_own_limits() {
    use resilient_http::middleware::ResilientMiddleware;

    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let rule = |name: &str, path: &str| {
        format!(
            "[[endpoint]]\nname = \"{name}\"\nmatch = {{ path = \"{path}\" }}\n\
             [endpoint.rate_limit]\nrate = 1\nper = \"60s\"\nshared = \"redis\"\n\
             scope = \"rule\"\n\n"
        )
    };
    let file = policy_file(
        &redis,
        "joined",
        &format!("{}{}", rule("x", "/x"), rule("x|y", "/xy")),
    );
    let client = Client::builder().config_toml(&file).build().unwrap();
    let chain = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ResilientMiddleware::new(Client::builder().config_toml(&file)).unwrap())
        .build();
    let wait = Duration::from_millis(500);

    let sent = client.get(server.url("/x")).deadline(wait).send().await;
    assert!(sent.is_ok(), "policy x: {:?}", sent.err());
    let sent = chain.get(server.url("/xy")).timeout(wait).send().await;
    let sent = sent.map_err(|e| ResilientMiddleware::error(&e).map(ToString::to_string));
    assert!(sent.is_ok(), "policy x|y: {:?}", sent.err());
    // Each limit is spent now, fleet-wide: the client finds `x|y`'s spent by the middleware.
    let again = (client.get(server.url("/xy")))
        .deadline(wait)
        .send()
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::RateLimited, "{again}");
    assert_eq!(again.policy(), Some("x|y"));
    assert_eq!(server.hits("/x") + server.hits("/xy"), 2);
    let keys = redis.keys();
    println!("{keys:?}");
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("joined:gcra:"))
            .count(),
        2
    );
}

/// A named rate limit shared through Redis (issue 24, item 4): one bucket for every rule that
/// names it and every replica. Two clients, two rules each (the default on `/a`, `bulk` on
/// `/bulk`), one limit of 4 a minute named in the default policy: 4 calls reach the server
/// in all, whichever client and rule made them (with host scopes: 4 per rule, 8), under one
/// Redis key, `name:api`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_shared_rate_limit_is_one_bucket_for_every_rule_and_replica() {
    let redis = RedisServer::start();
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let file = policy_file(
        &redis,
        "named",
        "[default]\nmax_attempts = 1\n\n[default.rate_limit]\nrate = 1\nper = \"60s\"\n\
         shared = \"redis\"\nscope = \"name:api\"\n\n\
         [[endpoint]]\nname = \"bulk\"\nmatch = { path = \"/bulk*\" }\n",
    );
    let clients = replicas(2, &file);
    let wait = Duration::from_millis(300);
    let mut refused = 0;
    for round in 0..4 {
        for client in &clients {
            for path in ["/a", "/bulk"] {
                let sent = client.get(server.url(path)).deadline(wait).send().await;
                match sent {
                    Ok(_) => {}
                    Err(err) if err.kind() == ErrorKind::RateLimited => refused += 1,
                    Err(err) => panic!("round {round}, {path}: {err}"),
                }
            }
        }
    }
    let hits = server.hits("/a") + server.hits("/bulk");
    let key = format!("http://{}", server.addr());
    let local: u64 = (clients.iter())
        .flat_map(|c| ["default", "bulk"].map(|p| c.overload(p, &key)))
        .flatten()
        .filter_map(|guards| guards.rate_limit_fallbacks())
        .sum();
    println!("{hits} hits, {refused} refused, {local} granted locally");
    assert!(hits <= 1 + local as usize, "{hits} hits: one bucket of 1");
    assert!(hits >= 1, "{hits} hits");
    assert_eq!(hits + refused, 16);
    let keys = redis.keys();
    println!("{keys:?}");
    let buckets: Vec<&String> = (keys.iter())
        .filter(|k| k.starts_with("named:gcra:"))
        .collect();
    assert_eq!(buckets, ["named:gcra:name:api"], "{keys:?}");
}

/// Start-up code on a current-thread runtime that is kept but never run again (a common
/// shape: `new_current_thread().block_on(init)`, the runtime stored for later), then the
/// service's own runtime. The fleet's connection and background work must not be stuck on
/// the idle runtime: the 200 later calls share the limit (slots from Redis's leases), and
/// `is_up()` never says "sharing" while slots are granted locally.
#[test]
fn a_client_first_used_on_an_idle_runtime_still_shares() {
    let redis = RedisServer::start();
    let serving = tokio::runtime::Runtime::new().unwrap();
    let server = serving.block_on(FaultServer::start()).unwrap();
    // Start-up calls another service (a connection reqwest made there is driven by that
    // runtime too: it must not be the one the service calls later).
    let other = serving.block_on(FaultServer::start()).unwrap();
    let file = policy_file(
        &redis,
        "idle",
        "[default.rate_limit]\nrate = 1000\nburst = 100\nshared = \"redis\"\n",
    );
    let client = Client::builder().config_toml(&file).build().unwrap();
    let url = server.url("/idle");

    let startup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    startup.block_on(async {
        client.get(other.url("/init")).send().await.unwrap();
    });
    // `startup` stays alive, idle.

    let service = tokio::runtime::Runtime::new().unwrap();
    service.block_on(async {
        for _ in 0..200 {
            let sent = (client.get(url.as_str())).deadline(2 * SECOND).send().await;
            assert!(sent.is_ok(), "{:?}", sent.err());
        }
        let key = format!("http://{}", server.addr());
        let handle = client.overload("default", &key).unwrap();
        let local = handle.rate_limit_fallbacks().unwrap();
        let fleet = client.fleet().unwrap();
        println!(
            "200 calls after start-up on an idle runtime: {local} slots granted locally, \
             is_up() {}, {} Redis round trips",
            fleet.is_up(),
            redis.round_trips()
        );
        // On d5a7ead: 200 of 200 local, and is_up() true. (A refill that comes later than
        // the timeout on a loaded machine may still make a few local, by design.)
        assert!(fleet.is_up());
        assert!(
            local < 50,
            "{local} of 200 slots local while is_up() says sharing"
        );
    });
    drop(startup);
    assert_eq!(server.hits("/idle"), 200);
}

/// The same through `ResilientMiddleware`: first used by start-up code on a current-thread
/// runtime kept idle, then 200 calls on the service's runtime take their slots from leases
/// Redis granted (Redis counts the lease scripts), not from the local limit.
#[cfg(feature = "reqwest-middleware")]
#[test]
fn a_middleware_first_used_on_an_idle_runtime_still_shares() {
    use resilient_http::middleware::ResilientMiddleware;

    let redis = RedisServer::start();
    let serving = tokio::runtime::Runtime::new().unwrap();
    let server = serving.block_on(FaultServer::start()).unwrap();
    let other = serving.block_on(FaultServer::start()).unwrap();
    let file = policy_file(
        &redis,
        "idle-mw",
        "[default.rate_limit]\nrate = 1000\nburst = 100\nshared = \"redis\"\n",
    );
    let middleware = ResilientMiddleware::new(Client::builder().config_toml(&file)).unwrap();
    let fleet = middleware.fleet().expect("a fleet");
    let chain = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();

    let startup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    startup.block_on(async {
        chain.get(other.url("/init")).send().await.unwrap();
    });

    let service = tokio::runtime::Runtime::new().unwrap();
    service.block_on(async {
        let before = redis.round_trips();
        let start = Instant::now();
        for _ in 0..200 {
            let sent = chain.get(server.url("/idle")).send().await;
            assert!(sent.is_ok(), "{:?}", sent.err());
        }
        let leases = redis.round_trips() - before;
        println!(
            "200 calls through the middleware in {:?}: {leases} Redis round trips, is_up() {}",
            start.elapsed(),
            fleet.is_up()
        );
        assert!(fleet.is_up());
        // 200 slots of leases of at most 50 (burst 100): at least 4 refills.
        assert!(leases >= 4, "{leases} round trips: the slots were local");
    });
    drop(startup);
    assert_eq!(server.hits("/idle"), 200);
}
