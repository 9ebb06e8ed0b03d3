//! A hundred replicas on one shared rate limit, and a Redis restart under them (issue 29).
//!
//! `cargo bench --features redis --bench fleet_replicas` starts its own `redis-server` on a
//! free loopback port (killed at the end) and, in one process, makes `REPLICAS` (default 100)
//! [`Fleet`]s, each with its own connection and runtime thread, as 100 processes would.
//!
//! - `steady`: an open load (`LOAD` requests a second fleet-wide, spread evenly over the
//!   replicas, each on its own phase) against one `SharedRate` of `LIMIT` a second (default
//!   `LOAD`) with `BURST` (default 40 per replica, as the guide recommends), for `SECONDS` after a second of warm-up; `EXTRAS=1` adds a shared hold (read on
//!   every call) and a shared retry budget (a deposit per call, a withdrawal per hundred). It
//!   reports the limit held (the most granted in any span `T` against `LIMIT × T + BURST`,
//!   plus the slots granted locally, counted apart), Redis round trips per request (Redis's
//!   own `INFO commandstats`), Redis CPU per request (`INFO cpu`, user + sys) and the
//!   commands Redis ran.
//! - `failover`: the same load at `LOAD` with holds and budgets; Redis is killed, stays down
//!   `DOWN_MS` (default 3,000), and starts again on its port. Reports Redis's commands in
//!   every 100 ms after it returns (`INFO stats` `total_commands_processed`, sampled; the
//!   sampler's own `INFO` taken off), their peak, and when each replica shared again.
//!
//! Without `LOAD`, `steady` runs 1,000/s and 10,000/s at the limit, and 2,000/s against a
//! limit of 1,000/s, each without and with the hold and budget. `BENCH=steady` or
//! `BENCH=failover` runs one of them (default: both). Not a test: it is
//! never run by `cargo test` (`test = false`).

#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_http::fleet::{Fleet, FleetConfig, SharedBudget, SharedHold, SharedRate};
use resilient_http::overload::RateLimitConfig;
use resilient_http::retry::BudgetConfig;
use tokio::time::{Instant, sleep};

#[path = "../tests/common/redis.rs"]
mod real_redis;
use real_redis::RedisServer;

#[path = "../tests/common/eager_callers.rs"]
mod eager_callers;
use eager_callers::most_within;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What Redis says of itself: CPU seconds (user + sys), commands processed, and per command
/// its calls and microseconds.
struct RedisStats {
    cpu: f64,
    commands: u64,
    per_command: Vec<(String, u64, u64)>,
}

fn info(conn: &mut redis::Connection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query(conn)
        .unwrap_or_default()
}

fn field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
}

fn redis_stats(conn: &mut redis::Connection) -> RedisStats {
    let cpu = info(conn, "cpu");
    let cpu = ["used_cpu_sys", "used_cpu_user"]
        .iter()
        .filter_map(|name| field(&cpu, name)?.parse::<f64>().ok())
        .sum();
    let commands = field(&info(conn, "stats"), "total_commands_processed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let per_command = info(conn, "commandstats")
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let value = |key: &str| -> Option<u64> {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key))?
                    .parse()
                    .ok()
            };
            Some((name.to_owned(), value("calls=")?, value("usec=")?))
        })
        .collect();
    RedisStats {
        cpu,
        commands,
        per_command,
    }
}

/// Round trips the fleets made, by Redis's count (as `tests/common/redis.rs` counts).
fn round_trips(stats: &RedisStats) -> u64 {
    (stats.per_command.iter())
        .filter(|(name, _, _)| ["evalsha", "eval", "script", "ping"].contains(&name.as_str()))
        .map(|(_, calls, _)| calls)
        .sum()
}

/// One replica's handles.
#[derive(Clone)]
struct Replica {
    rate: SharedRate,
    extras: Option<(SharedHold, SharedBudget)>,
}

/// A replica's open load: `every` apart, from a random phase, until `running` is cleared;
/// each request takes a slot (waiting as `try_take` says, without delaying the next
/// request), and its grant instant is recorded.
async fn drive(
    replica: Replica,
    every: Duration,
    running: Arc<AtomicBool>,
    granted: Arc<Mutex<Vec<Instant>>>,
    longest: Arc<Mutex<Duration>>,
) {
    sleep(every.mul_f64(fastrand::f64())).await;
    let mut ticks = tokio::time::interval(every);
    let mut n = 0u64;
    while running.load(SeqCst) {
        ticks.tick().await;
        n += 1;
        let now = Instant::now();
        if let Some((hold, budget)) = &replica.extras {
            let _ = hold.remaining(now);
            budget.deposit(now);
            if n.is_multiple_of(100) {
                budget.withdraw(now);
            }
        }
        match replica.rate.try_take(now) {
            Ok(()) => granted.lock().unwrap().push(now),
            Err(wait) => {
                let (rate, granted, longest) =
                    (replica.rate.clone(), granted.clone(), longest.clone());
                tokio::spawn(async move {
                    let asked = Instant::now();
                    let mut wait = wait;
                    loop {
                        sleep(wait).await;
                        let now = Instant::now();
                        match rate.try_take(now) {
                            Ok(()) => {
                                granted.lock().unwrap().push(now);
                                let mut longest = longest.lock().unwrap();
                                *longest = (*longest).max(now - asked);
                                return;
                            }
                            Err(next) => wait = next,
                        }
                    }
                });
            }
        }
    }
}

struct Load {
    running: Arc<AtomicBool>,
    granted: Arc<Mutex<Vec<Instant>>>,
    longest: Arc<Mutex<Duration>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(replicas: &[Replica], load: u64) -> Load {
    let every = SECOND * u32::try_from(replicas.len()).unwrap() / u32::try_from(load).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let granted = Arc::new(Mutex::new(Vec::new()));
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let tasks = (replicas.iter())
        .map(|replica| {
            tokio::spawn(drive(
                replica.clone(),
                every,
                running.clone(),
                granted.clone(),
                longest.clone(),
            ))
        })
        .collect();
    Load {
        running,
        granted,
        longest,
        tasks,
    }
}

impl Load {
    async fn stop(self) {
        self.running.store(false, SeqCst);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn make_replicas(
    redis: &RedisServer,
    n: u64,
    key: &str,
    limit: RateLimitConfig,
    extras: bool,
) -> (Vec<Fleet>, Vec<Replica>) {
    let config = FleetConfig::new(redis.url()).prefix("bench:");
    let fleets: Vec<_> = (0..n)
        .map(|_| Fleet::new(config.clone()).unwrap())
        .collect();
    let replicas = (fleets.iter())
        .map(|fleet| Replica {
            rate: fleet.rate(key, limit),
            extras: extras.then(|| (fleet.hold(key), fleet.budget(key, BudgetConfig::default()))),
        })
        .collect();
    (fleets, replicas)
}

async fn steady(redis: &RedisServer, n: u64, load: u64, rate: u64, burst: u64, extras: bool) {
    let (rate, burst) = (u32::try_from(rate).unwrap(), u32::try_from(burst).unwrap());
    let seconds = env("SECONDS", 5);
    let limit = RateLimitConfig::new(rate, SECOND).burst(burst);
    let key = format!("steady-{load}-{rate}-{burst}-{extras}");
    let (fleets, replicas) = make_replicas(redis, n, &key, limit, extras);
    let run = start_load(&replicas, load);
    sleep(SECOND).await;
    let mut conn = redis.conn();
    let before = redis_stats(&mut conn);
    let fallbacks_before: u64 = replicas.iter().map(|r| r.rate.fallbacks()).sum();
    let counted_before: u64 = fleets.iter().map(Fleet::round_trips).sum();
    let from = run.granted.lock().unwrap().len();
    let start = Instant::now();
    sleep(SECOND * u32::try_from(seconds).unwrap()).await;
    let after = redis_stats(&mut conn);
    let elapsed = start.elapsed();
    let mut granted = run.granted.lock().unwrap()[from..].to_vec();
    let longest = *run.longest.lock().unwrap();
    let local: u64 = replicas.iter().map(|r| r.rate.fallbacks()).sum::<u64>() - fallbacks_before;
    let counted: u64 = fleets.iter().map(Fleet::round_trips).sum::<u64>() - counted_before;
    let up = fleets.iter().filter(|f| f.is_up()).count();
    run.stop().await;
    granted.sort();
    let requests = granted.len() as f64;
    // Redis's count, less this benchmark's own `INFO`s (3 per `redis_stats`).
    let trips = round_trips(&after) - round_trips(&before);
    let cpu = after.cpu - before.cpu;
    println!(
        "\n## {n} replicas, {load}/s offered, limit {rate}/s burst {burst}{}: {elapsed:.2?}",
        if extras {
            ", with a shared hold and budget"
        } else {
            ""
        }
    );
    println!(
        "granted {} ({:.0}/s), {local} of them locally; longest wait for a slot {longest:?}; \
         {up} of {n} replicas up at the end",
        granted.len(),
        requests / elapsed.as_secs_f64()
    );
    let mut held = true;
    for span in [10 * MS, 100 * MS, SECOND, elapsed] {
        let most = most_within(&granted, span);
        let bound = (f64::from(rate) * span.as_secs_f64()) as u64 + u64::from(burst);
        let ok = most as u64 <= bound + local;
        held &= ok;
        println!(
            "  most in {span:.2?}: {most} (rate × T + burst = {bound}, + {local} local){}",
            if ok { "" } else { "  OVER" }
        );
    }
    let commands = (after.commands - before.commands).saturating_sub(3);
    println!(
        "limit held: {held}; Redis ran {commands} commands ({:.0}/s); round trips {trips} ({counted} by the fleets' count): {:.4} per \
         request; Redis CPU {:.3} s ({:.1} % of a core): {:.2} µs per request",
        commands as f64 / elapsed.as_secs_f64(),
        trips as f64 / requests,
        cpu,
        100.0 * cpu / elapsed.as_secs_f64(),
        cpu * 1e6 / requests
    );
    for (name, calls, usec) in &after.per_command {
        let (c0, u0) = (before.per_command.iter())
            .find(|(other, _, _)| other == name)
            .map_or((0, 0), |(_, c, u)| (*c, *u));
        if calls > &c0 {
            println!(
                "  {name}: {} calls ({:.1}/s), {:.1} µs each",
                calls - c0,
                (calls - c0) as f64 / elapsed.as_secs_f64(),
                (usec - u0) as f64 / (calls - c0) as f64
            );
        }
    }
}

async fn failover(redis: &mut RedisServer, n: u64, load: u64, rate: u64, burst: u64) {
    let (rate, burst) = (u32::try_from(rate).unwrap(), u32::try_from(burst).unwrap());
    let down_for = MS * u32::try_from(env("DOWN_MS", 3000)).unwrap();
    let limit = RateLimitConfig::new(rate, SECOND).burst(burst);
    let (fleets, replicas) = make_replicas(redis, n, "failover", limit, true);
    let run = start_load(&replicas, load);
    sleep(2 * SECOND).await;
    redis.stop();
    let killed = Instant::now();
    while fleets.iter().any(Fleet::is_up) && killed.elapsed() < 5 * SECOND {
        sleep(5 * MS).await;
    }
    println!(
        "\n## failover: {n} replicas at {load}/s, limit {rate}/s burst {burst}, hold and \
         budget; Redis down for {down_for:?}"
    );
    println!("all replicas local {:?} after the kill", killed.elapsed());
    sleep(down_for.saturating_sub(killed.elapsed())).await;
    let fallbacks_before: u64 = replicas.iter().map(|r| r.rate.fallbacks()).sum();
    // When each replica shares again, polled every millisecond.
    let back_at = Arc::new(Mutex::new(vec![None::<Duration>; fleets.len()]));
    redis.restart();
    let back = Instant::now();
    let watcher = {
        let (fleets, back_at) = (fleets.clone(), back_at.clone());
        tokio::spawn(async move {
            while back.elapsed() < 5 * SECOND {
                for (i, fleet) in fleets.iter().enumerate() {
                    let mut at = back_at.lock().unwrap();
                    if at[i].is_none() && fleet.is_up() {
                        at[i] = Some(back.elapsed());
                    }
                }
                sleep(MS).await;
            }
        })
    };
    let mut conn = redis.conn();
    let mut samples = Vec::new();
    let mut last = 0u64;
    let mut ticks = tokio::time::interval(100 * MS);
    for i in 0..30u32 {
        ticks.tick().await;
        let commands: u64 = field(&info(&mut conn, "stats"), "total_commands_processed")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Less this sampler's `INFO`s so far.
        let fleet = commands.saturating_sub(u64::from(i) + 1);
        samples.push(fleet - last.min(fleet));
        last = fleet;
    }
    let _ = watcher.await;
    let local: u64 = replicas.iter().map(|r| r.rate.fallbacks()).sum::<u64>() - fallbacks_before;
    run.stop().await;
    let mut ups: Vec<Duration> = back_at.lock().unwrap().iter().flatten().copied().collect();
    ups.sort();
    let peak = samples.iter().max().copied().unwrap_or(0);
    let first_second: u64 = samples.iter().take(10).sum();
    let mut last_second = samples[samples.len() - 10..].to_vec();
    last_second.sort();
    println!(
        "commands per 100 ms after the restart: {samples:?}\npeak {peak} in 100 ms ({} a \
         second at that pace); {first_second} in the first second; steady again (the last \
         second's median): {} in 100 ms",
        peak * 10,
        last_second[5]
    );
    if let (Some(first), Some(last)) = (ups.first(), ups.last()) {
        println!(
            "{} of {n} replicas sharing again: first {first:?}, median {:?}, last {last:?} \
             after the restart; {local} slots granted locally meanwhile",
            ups.len(),
            ups[ups.len() / 2]
        );
    }
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        // `cargo test --benches` runs it without `--bench`: nothing to test here.
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut redis = RedisServer::start();
        let n = env("REPLICAS", 100);
        let which = std::env::var("BENCH").unwrap_or_default();
        let one = std::env::var("LOAD").is_ok();
        // The burst the guide recommends: 40 per replica at the limit's rate.
        let burst = env("BURST", 40 * n);
        if which.is_empty() || which == "steady" {
            if one {
                let load = env("LOAD", 1000);
                let limit = env("LIMIT", load);
                let extras = env("EXTRAS", 0) == 1;
                steady(&redis, n, load, limit, burst, extras).await;
            } else {
                // At the limit, then twice over it (where the bound bites).
                for (load, limit) in [(1000, 1000), (10_000, 10_000), (2000, 1000)] {
                    for extras in [false, true] {
                        steady(&redis, n, load, limit, burst, extras).await;
                    }
                }
            }
        }
        if which.is_empty() || which == "failover" {
            let load = env("LOAD", 1000);
            failover(&mut redis, n, load, env("LIMIT", load), burst).await;
        }
    });
}
