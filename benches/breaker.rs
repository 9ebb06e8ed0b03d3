//! Circuit breaker hot path: admit a call and record its success, in the closed state.
//!
//! 1 thread, and 2 threads hammering the same breaker (per-call time per thread), next to
//! failsafe 1.3's state machine doing the same in the same run. Then the retry budget's
//! deposit, which every call makes (targets: 20 ns on 1 thread, 40 ns per call per thread on
//! 2), the same way.
//!
//! `cargo bench --bench breaker`

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::StateMachine;
use failsafe::backoff::Constant;
use failsafe::failure_policy::ConsecutiveFailures;
use resilient_http::breaker::{BreakerConfig, BreakerHandle, BreakerRegistry};
use resilient_http::retry::{__bench_budget, BenchBudget};

fn ours() -> BreakerHandle {
    BreakerRegistry::new(BreakerConfig::default()).get_or_create("http://bench.internal")
}

type Failsafe = StateMachine<ConsecutiveFailures<Constant>, ()>;

fn failsafe() -> Failsafe {
    let policy = failsafe::failure_policy::consecutive_failures(
        5,
        failsafe::backoff::constant(Duration::from_secs(5)),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

fn ours_once(breaker: &BreakerHandle) {
    if let Ok(permit) = breaker.try_acquire() {
        permit.success();
    }
}

fn failsafe_once(breaker: &Failsafe) {
    if breaker.is_call_permitted() {
        breaker.on_success();
    }
}

fn deposit_once(budget: &BenchBudget) {
    budget.deposit();
}

/// Time per call per thread, with `threads` threads making `iters` calls each at once.
fn hammer<B: Sync>(breaker: &B, threads: usize, iters: u64, once: fn(&B)) -> Duration {
    let barrier = std::sync::Barrier::new(threads);
    let total: Duration = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let started = Instant::now();
                    for _ in 0..iters {
                        once(std::hint::black_box(breaker));
                    }
                    started.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .sum()
    });
    total / threads as u32
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit+record");
    for threads in [1, 2] {
        let breaker = ours();
        group.bench_function(format!("resilient-http/{threads} thread"), |b| {
            b.iter_custom(|iters| hammer(&breaker, threads, iters, ours_once))
        });
        let breaker = failsafe();
        group.bench_function(format!("failsafe/{threads} thread"), |b| {
            b.iter_custom(|iters| hammer(&breaker, threads, iters, failsafe_once))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("budget deposit");
    for threads in [1, 2] {
        let budget = __bench_budget();
        group.bench_function(format!("resilient-http/{threads} thread"), |b| {
            b.iter_custom(|iters| hammer(&budget, threads, iters, deposit_once))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
