//! `peers serve` — the loopback server (prints its URL, runs until killed).
//! `peers list` — the stacks, one a line (not the fleet's: `resilient+rate` and
//!   `resilient+shared-rate`, run by name only; the shared one needs `REDIS_URL`).
//! `peers one STACK N URL` — warm up, then N calls with one stack: what callgrind counts
//!   (`benches/instructions.sh` runs N and 2N and divides the difference by N).
//! `peers free-port` — a free loopback port (for the Redis `benches/instructions.sh` starts).
//! `peers cpu [ROUNDS] [REQUESTS]` — client CPU time per call, stacks interleaved in each of
//!   ROUNDS rounds (default 10) of REQUESTS calls each (default 100,000); the median per stack
//!   and its ratio to bare reqwest in the same run.
//!
//! Allocations per call: the `peers-allocs` binary.

use std::time::Duration;

use resilient_http_peers::{
    AnyStack, IN_FLIGHT, STACKS, Server, all, arg, block_on, measured_calls, pin_to, process_cpu,
    runtime, stats,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => resilient_http_peers::serve(),
        Some("list") => STACKS.iter().for_each(|s| println!("{s}")),
        Some("one") => one(&args),
        Some("free-port") => println!("{}", resilient_http_peers::free_port()),
        Some("cpu") | None => cpu(arg(&args, 1, 10), arg(&args, 2, 100_000)),
        Some(other) => {
            eprintln!(
                "unknown command {other:?}: serve | list | one STACK N URL | cpu [ROUNDS] [REQUESTS]"
            );
            std::process::exit(2);
        }
    }
}

fn one(args: &[String]) {
    let (Some(name), Some(url)) = (args.get(1), args.get(3)) else {
        eprintln!("usage: peers one STACK N URL");
        std::process::exit(2);
    };
    if !resilient_http_peers::is_stack(name) {
        eprintln!(
            "unknown stack {name:?}: see `peers list`, or resilient+rate, resilient+shared-rate, \
             resilient+adaptive, resilient+throttle, resilient+hedge, resilient+hedge-armed, \
             resilient+1rule, resilient+100rules, reqwest+timeout-keysN, resilient-keysN"
        );
        std::process::exit(2);
    }
    let requests = arg(args, 2, 2_000);
    let url: &'static str = String::leak(url.clone());
    let rt = runtime();
    let local = tokio::task::LocalSet::new();
    let stack = local.block_on(&rt, async {
        let stack = AnyStack::named(name);
        stack.connect().await;
        stack.warm_up(url).await;
        stack
    });
    let fleet = stack.fleet();
    let trips = fleet.as_ref().map(|f| f.round_trips());
    let before = stats(url).0;
    measured_calls(&rt, &local, &stack, url, requests);
    // The question itself is one connection.
    eprintln!("connections opened: {}", stats(url).0 - before - 1);
    if let (Some(fleet), Some(trips)) = (fleet, trips) {
        // Shared all along, or the counts are the local limit's.
        assert!(fleet.is_up(), "the fleet fell back to local limits");
        eprintln!("redis round trips: {}", fleet.round_trips() - trips);
    }
}

fn cpu(rounds: usize, requests: usize) {
    let load_before = load_average();
    let server = Server::start();
    pin_to(0);
    let all = all();
    let mut opened = 0;
    let mut per_call: Vec<Vec<Duration>> = vec![Vec::new(); STACKS.len()];
    block_on(async {
        for stack in &all {
            stack.warm_up(server.url).await;
        }
        opened = server.stats().0;
        for r in 0..rounds {
            // Each round starts one stack further on, so that no stack always runs first.
            for k in 0..STACKS.len() {
                let i = (r + k) % STACKS.len();
                let started = process_cpu();
                all[i].round(server.url, requests).await;
                per_call[i].push((process_cpu() - started) / requests as u32);
            }
            eprintln!("round {}/{rounds} done", r + 1);
        }
    });
    let (connections, served) = server.stats();
    let opened = connections - opened - 1;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let micros = |t: &Duration| t.as_secs_f64() * 1e6;
    let base = median(per_call[0].iter().map(micros).collect());
    println!(
        "client CPU per request (getrusage: the whole client process; the server is another), \
         {rounds} interleaved rounds x {requests} requests, {IN_FLIGHT} in flight; load average \
         before {load_before}, after {}",
        load_average()
    );
    println!(
        "{:<26} {:>9} {:>11} {:>8} {:>14} {:>9} {:>17}",
        "stack", "median µs", "vs reqwest", "ratio", "round ratios", "min µs", "rounds min..max"
    );
    for (name, times) in STACKS.iter().zip(&per_call) {
        let us: Vec<f64> = times.iter().map(micros).collect();
        let own = median(us.clone());
        // The ratio to bare reqwest within each round (measured seconds apart), then the
        // median of those: less exposed to the machine's load drifting between rounds.
        let ratios = median(
            us.iter()
                .zip(&per_call[0])
                .map(|(t, b)| t / micros(b))
                .collect(),
        );
        let (lo, hi) = (
            us.iter().copied().fold(f64::MAX, f64::min),
            us.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "{name:<26} {own:>9.2} {:>+8.0} ns {:>7.3}x {ratios:>13.3}x {lo:>9.2} {:>8.2}..{:<8.2}",
            (own - base) * 1e3,
            own / base,
            lo,
            hi,
        );
    }
    println!(
        "server: {served} requests in all; {opened} connections opened during the timed rounds"
    );
}

/// The 1-minute load average: how busy the machine was (other builds disturb CPU time).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_default()
}
