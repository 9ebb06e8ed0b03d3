//! The cost of sharing a rate limit through Redis (feature `redis`), against the same limit
//! kept locally. Uses `REDIS_URL`'s Redis, or starts a `redis-server` of its own on a free
//! loopback port (and kills it at the end); the loopback HTTP server is `peers serve`.
//!
//! `peers-fleet cpu [ROUNDS] [REQUESTS]` — client CPU time per call of `reqwest`,
//!   `resilient+rate` and `resilient+shared-rate` (a limit that never refuses: see
//!   `resilient_http_peers::rate_limit`), interleaved as `peers cpu` does (default 10 rounds
//!   of 100,000 calls, 64 in flight, as fast as they go), with Redis's own CPU time (`INFO
//!   cpu`) and the round trips per call in each stack's rounds.
//! `peers-fleet pace [SECONDS]` — calls paced at 1,000 a second in all, for SECONDS (default
//!   5) after a second of warm-up, by one replica or by three (three clients, each its own
//!   Redis connection, as three processes would have), under a shared limit: the Redis round
//!   trips per call, as the clients count them (`Fleet::round_trips`) and as Redis does
//!   (`INFO commandstats`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use resilient_http::fleet::FleetConfig;
use resilient_http::overload::RateLimitConfig;
use resilient_http::policy::EndpointPolicy;
use resilient_http_peers::{
    AnyStack, IN_FLIGHT, Redis, Server, arg, block_on, pin_to, process_cpu,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cpu") | None => cpu(arg(&args, 1, 10), arg(&args, 2, 100_000)),
        Some("pace") => pace(arg(&args, 1, 5)),
        Some(other) => {
            eprintln!("unknown command {other:?}: cpu [ROUNDS] [REQUESTS] | pace [SECONDS]");
            std::process::exit(2);
        }
    }
}

const CPU_STACKS: [&str; 3] = ["reqwest", "resilient+rate", "resilient+shared-rate"];

fn cpu(rounds: usize, requests: usize) {
    let redis = Redis::from_env_or_start();
    let server = Server::start();
    pin_to(0);
    let stacks: Vec<AnyStack> = CPU_STACKS.iter().map(|s| AnyStack::named(s)).collect();
    let n = CPU_STACKS.len();
    let (mut client, mut server_side, mut wall, mut trips) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![0; n],
    );
    block_on(async {
        for stack in &stacks {
            stack.connect().await;
            stack.warm_up(server.url).await;
        }
        let fleet_trips = || -> u64 {
            stacks
                .iter()
                .filter_map(|s| s.fleet())
                .map(|f| f.round_trips())
                .sum()
        };
        for r in 0..rounds {
            for k in 0..n {
                let i = (r + k) % n;
                let (cpu, redis_cpu, rt) = (process_cpu(), redis.cpu(), fleet_trips());
                let started = Instant::now();
                stacks[i].round(server.url, requests).await;
                wall[i].push(micros(started.elapsed()) / requests as f64);
                client[i].push(micros(process_cpu() - cpu) / requests as f64);
                server_side[i].push(micros(redis.cpu() - redis_cpu) / requests as f64);
                trips[i] += fleet_trips() - rt;
            }
            eprintln!("round {}/{rounds} done", r + 1);
        }
        for fleet in stacks.iter().filter_map(|s| s.fleet()) {
            assert!(fleet.is_up(), "the fleet fell back to local limits");
        }
    });
    println!(
        "client CPU per request (getrusage, the whole client process) and Redis's (INFO cpu, \
         during the same rounds), {rounds} interleaved rounds x {requests} requests, \
         {IN_FLIGHT} in flight; rate limit {:?}",
        resilient_http_peers::rate_limit()
    );
    println!(
        "{:<24} {:>9} {:>11} {:>11} {:>16} {:>11} {:>12} {:>9} {:>8}",
        "stack",
        "median µs",
        "vs reqwest",
        "round ratio",
        "vs resilient+rate",
        "round ratio",
        "Redis µs/req",
        "trips/req",
        "wall µs"
    );
    let base = median(&client[0]);
    let local = median(&client[1]);
    for i in 0..n {
        let own = median(&client[i]);
        let within = |of: usize| {
            median(
                &client[i]
                    .iter()
                    .zip(&client[of])
                    .map(|(t, b)| t / b)
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "{:<24} {own:>9.2} {:>+8.0} ns {:>10.3}x {:>+13.0} ns {:>10.3}x {:>12.3} {:>9.4} {:>8.2}",
            CPU_STACKS[i],
            (own - base) * 1e3,
            within(0),
            (own - local) * 1e3,
            within(1),
            median(&server_side[i]),
            trips[i] as f64 / (rounds * requests) as f64,
            median(&wall[i]),
        );
    }
    println!(
        "(round ratio: the median of the ratios within each round, to reqwest, to \
         resilient+rate; Redis µs/req: Redis's CPU time during the stack's rounds, over their \
         calls; trips/req: the fleet's round trips in them; wall µs: elapsed time per call. The shared stack's background \
         sync, 10 a second, runs during every round)"
    );
    let (calls, each) = redis.command_stats("evalsha");
    println!("Redis: {calls} EVALSHA calls in all, {each:.2} µs each by its own count");
}

/// One setting of `pace`.
struct Scenario {
    what: &'static str,
    replicas: u32,
    /// Calls a second, all replicas together.
    pace: u32,
    limit: u32,
    burst: u32,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        what: "1 replica, room to spare",
        replicas: 1,
        pace: 1_000,
        limit: 2_000,
        burst: 200,
    },
    Scenario {
        what: "3 replicas, room to spare",
        replicas: 3,
        pace: 1_000,
        limit: 2_000,
        burst: 200,
    },
    Scenario {
        what: "3 replicas, at the limit",
        replicas: 3,
        pace: 1_000,
        limit: 1_000,
        burst: 200,
    },
    // Leases live half a second: each holds its most, 64 slots.
    Scenario {
        what: "3 replicas, at the limit, big burst",
        replicas: 3,
        pace: 1_000,
        limit: 1_000,
        burst: 1_000,
    },
];

fn pace(seconds: usize) {
    let redis = Redis::from_env_or_start();
    let server = Server::start();
    pin_to(0);
    println!(
        "Redis round trips per call, calls paced for {seconds} s (after 1 s of warm-up), \
         shared rate limit per second with its burst; fleet sync every 100 ms (the default)"
    );
    println!(
        "{:<35} {:>8} {:>6} {:>12} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9}",
        "scenario",
        "replicas",
        "pace/s",
        "limit/burst",
        "calls",
        "served/s",
        "trips/call",
        "Redis's",
        "mean ms",
        "max ms"
    );
    for (n, s) in SCENARIOS.iter().enumerate() {
        let limit = RateLimitConfig::new(s.limit, Duration::from_secs(1)).burst(s.burst);
        let clients: Vec<resilient_http::Client> = (0..s.replicas)
            .map(|_| {
                resilient_http::Client::builder()
                    .redis_config(
                        FleetConfig::new(redis.url.clone())
                            .prefix(format!("pace:{}:{n}:", std::process::id())),
                    )
                    .default_policy(
                        EndpointPolicy::new()
                            .rate_limit(limit)
                            .rate_limit_shared(true),
                    )
                    .build()
                    .expect("client")
            })
            .collect();
        let url = server.url;
        let row = block_on(async {
            for fleet in clients.iter().filter_map(|c| c.fleet()) {
                resilient_http_peers::connect(&fleet).await;
            }
            let trips = || -> u64 {
                clients
                    .iter()
                    .map(|c| c.fleet().map_or(0, |f| f.round_trips()))
                    .sum()
            };
            let each = Duration::from_secs_f64(f64::from(s.replicas) / f64::from(s.pace));
            run(&clients, url, each, Duration::from_secs(1)).await;
            let (ours, theirs) = (trips(), redis.round_trips());
            let started = Instant::now();
            let (calls, latency_sum, latency_max) =
                run(&clients, url, each, Duration::from_secs(seconds as u64)).await;
            let elapsed = started.elapsed().as_secs_f64();
            for client in &clients {
                assert!(client.fleet().is_some_and(|f| f.is_up()), "Redis fell away");
            }
            let (ours, theirs) = (trips() - ours, redis.round_trips() - theirs);
            (
                calls,
                calls as f64 / elapsed,
                ours,
                theirs,
                latency_sum / calls as f64,
                latency_max,
            )
        });
        let (calls, served, ours, theirs, mean, max) = row;
        println!(
            "{:<35} {:>8} {:>6} {:>12} {:>8} {:>9.0} {:>10.4} {:>10.4} {:>9.3} {:>9.3}",
            s.what,
            s.replicas,
            s.pace,
            format!("{}/{}", s.limit, s.burst),
            calls,
            served,
            ours as f64 / calls as f64,
            theirs as f64 / calls as f64,
            mean * 1e3,
            max * 1e3,
        );
    }
    println!(
        "(trips/call: the clients' Fleet::round_trips; Redis's: EVALSHA, EVAL, SCRIPT and PING \
         calls in INFO commandstats; calls: started in the measured span, all finished and \
         succeeded; ms: from the tick to the body read, the wait for a rate-limit slot included)"
    );
}

/// Each client calls `url` once every `each` for `span` (a call a tick, as the ticks come, not
/// waiting for the last call), then waits for its calls to finish: how many, and the sum and
/// the longest of their latencies, in seconds.
async fn run(
    clients: &[resilient_http::Client],
    url: &'static str,
    each: Duration,
    span: Duration,
) -> (u64, f64, f64) {
    let calls = Rc::new(Cell::new(0u64));
    let sum = Rc::new(Cell::new(0.0f64));
    let max = Rc::new(Cell::new(0.0f64));
    let mut replicas = tokio::task::JoinSet::new();
    for (k, client) in clients.iter().enumerate() {
        let (client, calls, sum, max) = (client.clone(), calls.clone(), sum.clone(), max.clone());
        // Replicas' ticks spread over the period, as independent processes' would be.
        let offset = each * k as u32 / clients.len() as u32;
        replicas.spawn_local(async move {
            let start = tokio::time::Instant::now() + offset;
            let mut ticks = tokio::time::interval_at(start, each);
            let mut in_flight = tokio::task::JoinSet::new();
            while start.elapsed() < span {
                let tick = ticks.tick().await;
                let (client, calls, sum, max) =
                    (client.clone(), calls.clone(), sum.clone(), max.clone());
                in_flight.spawn_local(async move {
                    let ok = client.get(url).send().await.expect("a call").bytes().await;
                    assert!(ok.is_ok_and(|b| b.len() == 2), "a call failed");
                    let took = tick.elapsed().as_secs_f64();
                    calls.set(calls.get() + 1);
                    sum.set(sum.get() + took);
                    max.set(max.get().max(took));
                });
            }
            while let Some(done) = in_flight.join_next().await {
                done.expect("a call panicked");
            }
        });
    }
    while let Some(done) = replicas.join_next().await {
        done.expect("a replica panicked");
    }
    (calls.get(), sum.get(), max.get())
}

fn micros(t: Duration) -> f64 {
    t.as_secs_f64() * 1e6
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
