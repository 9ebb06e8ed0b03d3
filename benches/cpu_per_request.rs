//! Client cost per request: bare reqwest against the resilient stack, in the same run.
//!
//! Wall-clock throughput on a shared 2-core machine swings by 2× between identical runs, so this
//! measures the client thread's CPU time per request: the server runs on its own thread pinned
//! to CPU 1, the client on a one-thread runtime pinned to CPU 0, 64 requests in flight, and the
//! stacks take turns in interleaved rounds.
//!
//! `cargo bench --bench cpu_per_request` (`BENCH_REQUESTS` per round, default 20000;
//! `BENCH_ROUNDS`, default 10).
//!
//! On a virtual machine CPU time still drifts by a few µs between runs, so instructions are
//! the figure to trust: `benches/instructions.sh` counts them for these stacks and the peers,
//! with the harness in `benches/peers/` (see BENCHMARKS.md). This binary can still serve
//! (`BENCH_SERVE=1`) and run one stack (`BENCH_URL`, `BENCH_STACK`, `BENCH_REQUESTS`) for a
//! quick callgrind profile of the main crate alone.

#![allow(missing_docs, unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::FaultServer;
use tower::ServiceExt;

type Call = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = bool>>>>;

const IN_FLIGHT: usize = 64;

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// tower's retry as a peer would set it up over reqwest: retry errors up to `n` times,
/// copying the request with `try_clone` (reqwest's request is not `Clone`).
#[derive(Clone)]
struct CloneRetry(usize);

impl<E> tower::retry::Policy<reqwest::Request, reqwest::Response, E> for CloneRetry {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut reqwest::Request,
        result: &mut Result<reqwest::Response, E>,
    ) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The stacks compared, by name.
fn stacks() -> Vec<(&'static str, Call)> {
    let bare = reqwest::Client::new();
    // As most users build it: with its own reqwest client (as `bare`, plus the timeouts).
    let full = resilient_http::Client::builder().build().expect("client");
    let given = resilient_http::Client::builder()
        .reqwest_client(bare.clone())
        .build()
        .expect("client");
    let no_retry = resilient_http::Client::builder()
        .retry(RetryPolicy::never())
        .no_circuit_breaker()
        .build()
        .expect("client");
    let with_timeout = bare.clone();
    let floor_client = bare.clone();
    let breakers = resilient_http::breaker::BreakerRegistry::new(
        resilient_http::breaker::BreakerConfig::default(),
    );
    let tower_stack = tower::ServiceBuilder::new()
        .retry(CloneRetry(2))
        .timeout(Duration::from_secs(10))
        .service(bare.clone());
    vec![
        (
            "reqwest",
            Box::new(move |url| {
                let c = bare.clone();
                Box::pin(async move { c.get(url).send().await.is_ok_and(|r| r.status() == 200) })
            }),
        ),
        (
            "reqwest+timeout",
            Box::new(move |url| {
                let c = with_timeout.clone();
                Box::pin(async move {
                    c.get(url)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                })
            }),
        ),
        (
            "tower-retry+timeout",
            Box::new(move |url: String| {
                let service = tower_stack.clone();
                Box::pin(async move {
                    let request = reqwest::Request::new(
                        reqwest::Method::GET,
                        url.parse().expect("valid URL"),
                    );
                    service
                        .oneshot(request)
                        .await
                        .is_ok_and(|r| r.status() == 200)
                })
            }),
        ),
        (
            // What a fused path could cost at best: the essentials of the full stack written
            // out by hand (request copy for a retry, per-request timeout, breaker lookup,
            // admit and record, status check), no layers.
            "floor-by-hand",
            Box::new(move |url: String| {
                let client = floor_client.clone();
                let breakers = breakers.clone();
                Box::pin(async move {
                    let Ok(url) = url.parse::<url::Url>() else {
                        return false;
                    };
                    let breaker =
                        breakers.get_or_create(&resilient_http::breaker::endpoint_key(&url));
                    let mut request = reqwest::Request::new(reqwest::Method::GET, url);
                    let spare = request.try_clone();
                    *request.timeout_mut() = Some(Duration::from_secs(10));
                    let Ok(permit) = breaker.try_acquire() else {
                        return false;
                    };
                    let ok = client
                        .execute(request)
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    permit.success();
                    drop(spare);
                    ok
                })
            }),
        ),
        (
            "resilient",
            Box::new(move |url| {
                let c = full.clone();
                Box::pin(async move { c.get(url).send().await.is_ok_and(|r| r.status() == 200) })
            }),
        ),
        (
            // A reqwest client of the user's: each attempt sets its timeout on the request.
            "resilient-given-client",
            Box::new(move |url| {
                let c = given.clone();
                Box::pin(async move { c.get(url).send().await.is_ok_and(|r| r.status() == 200) })
            }),
        ),
        (
            "resilient-timeouts-only",
            Box::new(move |url| {
                let c = no_retry.clone();
                Box::pin(async move { c.get(url).send().await.is_ok_and(|r| r.status() == 200) })
            }),
        ),
    ]
}

async fn round(call: &Call, url: &str, requests: usize) -> Duration {
    let started = thread_cpu();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let futures: Vec<_> = (0..requests / IN_FLIGHT)
            .map(|_| call(url.to_owned()))
            .collect();
        tasks.spawn_local(async move {
            for f in futures {
                assert!(f.await, "request failed");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (thread_cpu() - started) / requests as u32
}

/// `BENCH_SERVE=1`: a server for the instruction count; prints its URL, runs until killed.
fn serve() {
    runtime().block_on(async {
        let server = FaultServer::start().await.expect("server");
        server.count_only();
        println!("{}", server.url("/bench"));
        std::future::pending::<()>().await;
    });
}

/// `BENCH_URL=.. BENCH_STACK=..`: warm up, then make `BENCH_REQUESTS` requests with one stack.
fn run_one_stack(url: &str) {
    let name = std::env::var("BENCH_STACK").unwrap_or_else(|_| "reqwest".into());
    let requests = env("BENCH_REQUESTS", 2_000);
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async {
        let stacks = stacks();
        let (_, call) = stacks
            .iter()
            .find(|(n, _)| *n == name)
            .expect("unknown BENCH_STACK");
        round(call, url, IN_FLIGHT * 4).await;
        round(call, url, requests).await;
    });
}

fn main() {
    if std::env::var_os("BENCH_SERVE").is_some() {
        return serve();
    }
    if let Ok(url) = std::env::var("BENCH_URL") {
        return run_one_stack(&url);
    }
    let requests = env("BENCH_REQUESTS", 20_000);
    let rounds = env("BENCH_ROUNDS", 10);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        pin_to(1);
        runtime().block_on(async {
            let server = FaultServer::start().await.expect("server");
            server.count_only();
            tx.send(server.url("/bench")).expect("send url");
            std::future::pending::<()>().await;
        });
    });
    let url = rx.recv().expect("server url");
    pin_to(0);
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async {
        let stacks = stacks();
        for (_, call) in &stacks {
            round(call, &url, 2_000).await;
        }
        let mut results: Vec<Vec<Duration>> = vec![Vec::new(); stacks.len()];
        for _ in 0..rounds {
            for (i, (_, call)) in stacks.iter().enumerate() {
                results[i].push(round(call, &url, requests).await);
            }
        }
        let medians: Vec<Duration> = results
            .iter_mut()
            .map(|r| {
                r.sort();
                r[r.len() / 2]
            })
            .collect();
        println!(
            "client CPU per request, median of {rounds} rounds x {requests} requests, {IN_FLIGHT} in flight:"
        );
        for ((name, _), median) in stacks.iter().zip(&medians) {
            let ratio = median.as_secs_f64() / medians[0].as_secs_f64();
            let extra = (median.as_secs_f64() - medians[0].as_secs_f64()) * 1e9;
            println!(
                "  {name:<24} {:>8.2} µs   {ratio:.3}x   {extra:+.0} ns",
                median.as_secs_f64() * 1e6
            );
        }
    });
}
