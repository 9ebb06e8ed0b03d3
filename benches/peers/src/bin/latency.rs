//! `peers-latency [RATE] [SECONDS] [ROUNDS] [STACK...]`: the latency a stack adds to a call
//! under an open load, against bare reqwest in the same run.
//!
//! Each stack in turn sends RATE calls a second (default 2,000) for SECONDS (default 2), on a
//! schedule fixed in advance: a call is due every 1/RATE s whether or not the earlier ones have
//! answered (an open load: a slow call does not slow the arrivals, so it cannot hide its own
//! delay). A call's latency runs from its start to its 2-byte body read. tokio's timer has a
//! 1 ms grain, so calls start in pairs on each millisecond rather than every 500 µs; a call
//! started more than 2 ms after it was due (the client thread busy) is counted as a late start
//! (a load the client cannot keep up with shows there, not in the latencies). ROUNDS rounds (default 10), each stack once
//! per round, each round starting one stack further on; the figures are the median over the
//! rounds of each round's p50 and p99, with their spread (min..max over the rounds): the
//! noise of the machine, which a difference smaller than the spread does not rise above.
//! Stacks: `reqwest` first, then the ones named (default `reqwest+timeout resilient
//! resilient-middleware reqwest-middleware+retry`). One thread on CPU 0 (the server on CPU 1).

use std::rc::Rc;
use std::time::{Duration, Instant};

use resilient_http_peers::{AnyStack, Server, arg, block_on, is_stack, pin_to};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate = arg(&args, 1, 2_000);
    let seconds = arg(&args, 2, 2);
    let rounds = arg(&args, 3, 10);
    let mut names = vec!["reqwest"];
    if args.len() > 4 {
        names.extend(args[4..].iter().map(String::as_str));
    } else {
        names.extend([
            "reqwest+timeout",
            "resilient",
            "resilient-middleware",
            "reqwest-middleware+retry",
        ]);
    }
    if let Some(bad) = names.iter().find(|n| !is_stack(n)) {
        eprintln!("unknown stack {bad:?}: see `peers list`");
        std::process::exit(2);
    }
    let server = Server::start();
    pin_to(0);
    let stacks: Vec<Rc<AnyStack>> = names.iter().map(|n| Rc::new(AnyStack::named(n))).collect();
    // Per stack, per round: (p50, p99) in µs.
    let mut figures = vec![Vec::new(); stacks.len()];
    let mut late = vec![0usize; stacks.len()];
    block_on(async {
        for stack in &stacks {
            stack.warm_up(server.url).await;
        }
        for r in 0..rounds {
            for k in 0..stacks.len() {
                let i = (r + k) % stacks.len();
                let (mut latencies, behind) =
                    open_load(&stacks[i], server.url, rate, seconds).await;
                late[i] += behind;
                latencies.sort_unstable();
                let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
                figures[i].push((at(0.50), at(0.99)));
            }
            eprintln!("round {}/{rounds} done", r + 1);
        }
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("{lo:.0}..{hi:.0}")
    };
    let column = |i: usize, q: usize| -> Vec<f64> {
        figures[i]
            .iter()
            .map(|f: &(Duration, Duration)| {
                let d = if q == 0 { f.0 } else { f.1 };
                d.as_secs_f64() * 1e6
            })
            .collect()
    };
    let (base50, base99) = (median(column(0, 0)), median(column(0, 1)));
    println!(
        "latency per call under an open load of {rate} calls/s ({seconds} s per stack and round, \
         {rounds} interleaved rounds; from each call's start to its body read; \
         medians over the rounds, min..max of the rounds)"
    );
    println!(
        "{:<26} {:>8} {:>9} {:>13}   {:>8} {:>9} {:>13}   {:>12}",
        "stack",
        "p50 µs",
        "vs reqw",
        "p50 rounds",
        "p99 µs",
        "vs reqw",
        "p99 rounds",
        "late starts"
    );
    for (i, name) in names.iter().enumerate() {
        let (p50, p99) = (median(column(i, 0)), median(column(i, 1)));
        println!(
            "{name:<26} {p50:>8.0} {:>+9.0} {:>13}   {p99:>8.0} {:>+9.0} {:>13}   {:>12}",
            p50 - base50,
            spread(&column(i, 0)),
            p99 - base99,
            spread(&column(i, 1)),
            late[i],
        );
    }
    println!(
        "late starts: calls begun more than 2 ms after they were due (the client thread was busy)"
    );
}

/// `rate` calls a second for `seconds`, each due at its fixed instant; the latencies, and how
/// many calls began over 1 ms late.
async fn open_load(
    stack: &Rc<AnyStack>,
    url: &'static str,
    rate: usize,
    seconds: usize,
) -> (Vec<Duration>, usize) {
    let calls = rate * seconds;
    let every = Duration::from_secs(1) / rate as u32;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut behind = 0;
    for n in 0..calls {
        let due = start + every * n as u32;
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > Duration::from_millis(2) {
            behind += 1;
        }
        let stack = stack.clone();
        let started = Instant::now();
        tasks.spawn_local(async move {
            assert!(stack.call(url).await, "a call failed");
            started.elapsed()
        });
    }
    let mut latencies = Vec::with_capacity(calls);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done.expect("a task panicked"));
    }
    (latencies, behind)
}
