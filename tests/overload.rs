//! Overload protection end to end: the retry budget, `Retry-After` holds, the rate limit and
//! the bulkhead, through the client's own call and through the reqwest-middleware adapter
//! (whose retry layer asks the same guards), against the loopback fault server, with tokio's
//! clock paused so that every wait is exact virtual time.
//!
//! The readings (`budget_available`, `held_for`, the bulkhead's counts, `rate_limit_idle`)
//! come from [`Client::overload`]; the adapter has no such handle, so through it the tests
//! compare what the caller and the server see, which must be the same.
#![cfg(feature = "reqwest-middleware")]

use std::collections::BTreeMap;
use std::time::Duration;

use resilient_http::breaker::{BreakerConfig, State, Window};
use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::{BulkheadConfig, Criticality, RateLimitConfig, ServerQuotaConfig};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::BudgetConfig;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Class, Client, ClientBuilder, Delivery, ErrorKind};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------
// The retry budget
// ---------------------------------------------------------------------------------------

/// A budget of half the first attempts plus 10 retries (1 a second over 10 s), against a
/// server that always fails, 3 attempts a call, 300 ms of backoff each (all within one
/// window). Before call `k`'s retries, `k` first attempts allow `⌊k/2 + 10⌋` retries: calls 1
/// to 6 are retried in full (12 retries); call 7's second retry would be the 14th of 13;
/// call 8's first attempt earns one more, which it spends; call 9's earns half of one, so it
/// is not retried at all; call 10's makes a 15th. A window later, the 10 retries are back.
async fn budget_exhaustion_and_refill(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/b",
        [Reply::status(503)
            .header("x-request-id", "r-1")
            .body("busy, try later")],
    );
    let budget = BudgetConfig::new(0.5, 1, 10 * SECOND);
    let caller = Caller::new(via, builder(3, EndpointPolicy::new().retry_budget(budget)));
    let url = server.url("/b");
    let start = Instant::now();

    for call in 1..=6 {
        let err = caller.get(&url, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Status, "call {call}: {err}");
        assert_eq!(outcomes(&err), [status_503(); 3], "call {call}");
    }
    assert_eq!(server.hits("/b"), 18);
    assert_eq!(start.elapsed(), 6 * 300 * MS);
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.budget_available(), Some(1));
    }

    for call in 7..=8 {
        let mut err = caller.get(&url, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BudgetExhausted, "call {call}: {err}");
        assert_eq!(err.class(), Class::Transient);
        assert_eq!(err.delivery(), Delivery::Delivered);
        // The history is whole, and the last attempt's answer is kept: status, headers, body.
        assert_eq!(outcomes(&err), [status_503(); 2], "call {call}");
        assert_eq!(err.attempts()[1].delay_before, 100 * MS);
        assert_eq!(err.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(err.headers().unwrap()["x-request-id"], "r-1");
        assert!(err.to_string().contains("retry budget"), "{err}");
        assert_eq!(err.policy(), Some("default"));
        assert_eq!(err.read_body(4).await.unwrap(), "busy");
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.budget_available(), Some(0));
        }
    }
    assert_eq!(server.hits("/b"), 22);
    assert_eq!(start.elapsed(), 2 * SECOND);

    // Not retried at all: no sleep either.
    let err = caller.get(&url, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExhausted, "{err}");
    assert_eq!(outcomes(&err), [status_503()]);
    assert_eq!(err.attempts()[0].class, Class::Transient);
    assert_eq!(err.headers().unwrap()["x-request-id"], "r-1");
    assert_eq!(server.hits("/b"), 23);
    assert_eq!(start.elapsed(), 2 * SECOND);

    let err = caller.get(&url, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExhausted, "{err}");
    assert_eq!(outcomes(&err), [status_503(); 2]);
    assert_eq!(server.hits("/b"), 25);

    // A window after the last retry, the budget is whole again: `min_per_second × window`.
    sleep(11 * SECOND).await;
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.budget_available(), Some(10));
    }
    let err = caller.get(&url, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status, "{err}");
    assert_eq!(outcomes(&err), [status_503(); 3]);
    assert_eq!(server.hits("/b"), 28);
    if let Some(guards) = caller.guards(&server) {
        // 10 + ⌊0.5 × 1⌋, less the 2 just spent.
        assert_eq!(guards.budget_available(), Some(8));
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_runs_out_and_refills_through_the_client() {
    budget_exhaustion_and_refill(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn the_budget_runs_out_and_refills_through_the_middleware() {
    budget_exhaustion_and_refill(Via::Middleware).await;
}

/// A budget turned off lets every retry through, whatever was spent.
#[tokio::test(start_paused = true)]
async fn a_budget_turned_off_never_runs_out() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script("/b", [Reply::status(503)]);
        let policy = EndpointPolicy::new()
            .retry_budget(BudgetConfig::new(0.0, 0, SECOND))
            .retry_budget_enabled(false);
        let caller = Caller::new(via, builder(3, policy));
        for _ in 0..5 {
            let err = caller.get(&server.url("/b"), None).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Status, "{via:?}: {err}");
        }
        assert_eq!(server.hits("/b"), 15, "{via:?}");
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.budget_available(), None);
        }
    }
}

/// `requests` GETs from 100 concurrent loops against an always-503 server: the server's hits
/// per request (every call must fail with the 503, retried or not).
async fn amplification(via: Via, builder: ClientBuilder, requests: usize) -> f64 {
    const WORKERS: usize = 100;
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    server.script("/down", [Reply::status(503)]);
    let caller = Caller::new(via, builder);
    let url = server.url("/down");
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        let (caller, url) = (caller.clone(), url.clone());
        tasks.spawn(async move {
            let mut kinds = BTreeMap::new();
            for _ in 0..requests / WORKERS {
                let err = caller.get(&url, None).await.unwrap_err();
                *kinds.entry(err.kind().as_str()).or_insert(0usize) += 1;
            }
            kinds
        });
    }
    let mut kinds = BTreeMap::new();
    while let Some(seen) = tasks.join_next().await {
        for (kind, count) in seen.unwrap() {
            *kinds.entry(kind).or_insert(0) += count;
        }
    }
    let requests = (requests / WORKERS * WORKERS) as f64;
    let ratio = server.hits("/down") as f64 / requests;
    eprintln!("{via:?}: {ratio:.3} server hits per request ({kinds:?})");
    for kind in kinds.keys() {
        assert!(["status", "budget_exhausted"].contains(kind), "{kinds:?}");
    }
    ratio
}

/// The issue's target: a full outage (breaker off, the library's defaults otherwise: 3
/// attempts, the default budget) sends the server at most 1.25 times as many requests as the
/// callers make, where it sent 3 times as many without the budget.
async fn amplification_with_and_without_the_budget(via: Via, requests: usize) {
    let real = std::time::Instant::now();
    let with = amplification(via, Client::builder().no_circuit_breaker(), requests).await;
    let without = amplification(
        via,
        Client::builder()
            .no_circuit_breaker()
            .default_policy(EndpointPolicy::new().retry_budget_enabled(false)),
        requests,
    )
    .await;
    eprintln!(
        "{via:?}: amplification under a full outage, {requests} requests: {with:.3}x with the \
         default budget, {without:.3}x without (real time {:.1?})",
        real.elapsed()
    );
    assert!(with <= 1.25, "{with}");
    assert!(
        with > 1.0,
        "{with}: the budget's minimum allows some retries"
    );
    assert_eq!(without, 3.0);
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_amplification_in_an_outage_through_the_client() {
    amplification_with_and_without_the_budget(Via::Client, 10_000).await;
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_amplification_in_an_outage_through_the_middleware() {
    amplification_with_and_without_the_budget(Via::Middleware, 10_000).await;
}

// ---------------------------------------------------------------------------------------
// Retry-After holds
// ---------------------------------------------------------------------------------------

/// A 429 asking for 2 s holds the endpoint: the next call waits those 2 s, then goes out
/// once; the server sees nothing from it before.
async fn a_hold_makes_the_next_call_wait(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [Reply::status(429).retry_after_secs(2), Reply::ok("after")],
    );
    let caller = Caller::new(via, builder(1, EndpointPolicy::new()));
    let url = server.url("/h");
    let start = Instant::now();
    let err = caller.get(&url, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.retry_after(), Some(2 * SECOND));
    assert_eq!(server.hits("/h"), 1);
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.held_for(), Some(2 * SECOND));
    }

    let next = tokio::spawn({
        let (caller, url) = (caller.clone(), url.clone());
        async move { caller.get(&url, None).await }
    });
    sleep(2 * SECOND - MS).await;
    assert_eq!(server.hits("/h"), 1, "{via:?}: went out during the hold");
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.held_for(), Some(MS));
    }
    assert_eq!(next.await.unwrap().unwrap(), (200, "after".to_owned()));
    assert_eq!(start.elapsed(), 2 * SECOND);
    assert_eq!(server.hits("/h"), 2);
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.held_for(), None);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hold_makes_the_next_call_wait_through_the_client() {
    a_hold_makes_the_next_call_wait(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_hold_makes_the_next_call_wait_through_the_middleware() {
    a_hold_makes_the_next_call_wait(Via::Middleware).await;
}

/// A call whose deadline ends before the hold does fails at once, never sent, saying what is
/// left of the hold; one whose deadline allows it waits.
async fn a_hold_past_the_deadline_fails_fast(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [Reply::status(503).retry_after_secs(5), Reply::ok("after")],
    );
    let caller = Caller::new(via, builder(1, EndpointPolicy::new()));
    let url = server.url("/h");
    let err = caller.get(&url, None).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    sleep(SECOND).await;

    let asked = Instant::now();
    let err = caller.get(&url, Some(2 * SECOND)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{via:?}: {err}");
    assert_eq!(
        err.retry_after(),
        Some(4 * SECOND),
        "what is left of the hold"
    );
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.status(), None);
    let message = err.to_string();
    assert!(message.contains("the server asked"), "{message}");
    assert!(message.contains("4.00s left"), "{message}");
    assert_eq!(asked.elapsed(), Duration::ZERO, "failed at once");
    assert_eq!(server.hits("/h"), 1, "{via:?}: never sent");

    // A deadline past the hold waits for it.
    let response = caller.get(&url, Some(10 * SECOND)).await.unwrap();
    assert_eq!(response, (200, "after".to_owned()));
    assert_eq!(asked.elapsed(), 4 * SECOND);
    assert_eq!(server.hits("/h"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hold_past_the_deadline_fails_fast_through_the_client() {
    a_hold_past_the_deadline_fails_fast(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_hold_past_the_deadline_fails_fast_through_the_middleware() {
    a_hold_past_the_deadline_fails_fast(Via::Middleware).await;
}

/// With `hold_on_retry_after(false)`, the next call goes out at once.
#[tokio::test(start_paused = true)]
async fn holds_turned_off_let_the_next_call_out() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script(
            "/h",
            [Reply::status(429).retry_after_secs(5), Reply::ok("x")],
        );
        let caller = Caller::new(
            via,
            builder(1, EndpointPolicy::new().hold_on_retry_after(false)),
        );
        let start = Instant::now();
        caller.get(&server.url("/h"), None).await.unwrap_err();
        let response = caller.get(&server.url("/h"), None).await.unwrap();
        assert_eq!(response.0, 200);
        assert_eq!(start.elapsed(), Duration::ZERO, "{via:?}");
        assert_eq!(server.hits("/h"), 2);
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.held_for(), None);
        }
    }
}

/// A `Retry-After` above the cap (20 s by default) is not obeyed, and holds nothing.
#[tokio::test(start_paused = true)]
async fn a_retry_after_above_the_cap_holds_nothing() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script(
            "/h",
            [Reply::status(429).retry_after_secs(60), Reply::ok("x")],
        );
        let caller = Caller::new(via, builder(3, EndpointPolicy::new()));
        let start = Instant::now();
        let err = caller.get(&server.url("/h"), None).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(60 * SECOND));
        assert_eq!(caller.get(&server.url("/h"), None).await.unwrap().0, 200);
        assert_eq!(start.elapsed(), Duration::ZERO, "{via:?}");
        assert_eq!(server.hits("/h"), 2);
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.held_for(), None);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The rate limit
// ---------------------------------------------------------------------------------------

/// 100 a second with bursts of 10, 50 callers each calling in a loop for 5 s: the server
/// sees the configured rate, within 5 %.
async fn rate_limited_throughput(via: Via) {
    const RATE: u32 = 100;
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let limit = RateLimitConfig::new(RATE, SECOND).burst(10);
    let caller = Caller::new(via, builder(1, EndpointPolicy::new().rate_limit(limit)));
    let url = server.url("/r");
    let start = Instant::now();
    let end = start + 5 * SECOND;
    let mut callers = JoinSet::new();
    for _ in 0..50 {
        let (caller, url) = (caller.clone(), url.clone());
        callers.spawn(async move {
            while Instant::now() < end {
                caller.get(&url, None).await.unwrap();
            }
        });
    }
    sleep(5 * SECOND).await;
    let hits = server.hits("/r");
    callers.shutdown().await;
    let rate = hits as f64 / 5.0;
    let off = (rate - f64::from(RATE)) / f64::from(RATE);
    eprintln!(
        "{via:?}: {hits} requests in 5 s at a limit of {RATE}/s, burst 10: {rate:.1}/s ({:+.2} %)",
        off * 100.0
    );
    assert!(off.abs() <= 0.05, "{rate}/s");
    // GCRA: the burst at once, then one per interval (the 501st slot is due at 5 s).
    assert!(hits <= 10 + 500, "{hits}");
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_holds_throughput_to_the_rate_through_the_client() {
    rate_limited_throughput(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_holds_throughput_to_the_rate_through_the_middleware() {
    rate_limited_throughput(Via::Middleware).await;
}

/// One request a minute: the second waits for its slot if its deadline allows, else fails
/// at once with the time to the slot.
#[tokio::test(start_paused = true)]
async fn over_the_rate_a_call_waits_or_fails_fast() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        let limit = RateLimitConfig::new(1, 60 * SECOND);
        // A deadline longer than any here: the adapter's requests are capped by it.
        let policy = EndpointPolicy::new()
            .rate_limit(limit)
            .deadline(120 * SECOND);
        let caller = Caller::new(via, builder(3, policy));
        let url = server.url("/r");
        let start = Instant::now();
        caller.get(&url, None).await.unwrap();
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.rate_limit_idle(), Some(false));
        }
        sleep(10 * SECOND).await;
        let err = caller.get(&url, Some(30 * SECOND)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{via:?}: {err}");
        assert_eq!(err.retry_after(), Some(50 * SECOND));
        assert_eq!(err.delivery(), Delivery::NotSent);
        assert!(err.to_string().contains("rate limit"), "{err}");
        assert_eq!(start.elapsed(), 10 * SECOND);
        assert_eq!(server.hits("/r"), 1);

        let response = caller.get(&url, Some(55 * SECOND)).await.unwrap();
        assert_eq!(response.0, 200);
        assert_eq!(start.elapsed(), 60 * SECOND);
        assert_eq!(server.hits("/r"), 2);
        sleep(60 * SECOND).await;
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.rate_limit_idle(), Some(true));
        }
    }
}

/// A call the open breaker will turn away takes no rate-limit slot: it fails at once with
/// `CircuitOpen` instead of waiting for a slot it would not use (and taking it from a call
/// that would go out).
#[tokio::test(start_paused = true)]
async fn a_call_the_open_breaker_refuses_takes_no_rate_limit_slot() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script("/down", [Reply::status(503)]);
        // Three slots at once, then one every 10 s.
        let limit = RateLimitConfig::new(1, 10 * SECOND).burst(3);
        let breaker = BreakerConfig::builder()
            .window(Window::Calls(3))
            .min_calls(3)
            .open_for(60 * SECOND)
            .open_for_max(60 * SECOND)
            .build()
            .unwrap();
        let builder = Client::builder()
            .retry(plain(1))
            .circuit_breaker(breaker)
            .default_policy(EndpointPolicy::new().rate_limit(limit));
        let caller = Caller::new(via, builder);
        let url = server.url("/down");
        for _ in 0..3 {
            let err = caller.get(&url, None).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Status, "{via:?}: {err}");
        }
        let start = Instant::now();
        for _ in 0..5 {
            let err = caller.get(&url, None).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{via:?}: {err}");
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "{via:?}: nobody waited for a slot"
        );
        assert_eq!(server.hits("/down"), 3);
    }
}

/// While a half-open probe is out, the breaker turns calls away: they take no rate-limit
/// slot either.
#[tokio::test(start_paused = true)]
async fn calls_turned_away_while_a_probe_is_out_take_no_rate_limit_slot() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script("/p", [Reply::status(503)]);
        let limit = RateLimitConfig::new(1, 10 * SECOND).burst(3);
        let breaker = BreakerConfig::builder()
            .window(Window::Calls(2))
            .min_calls(2)
            .open_for(SECOND)
            .open_for_max(SECOND)
            .build()
            .unwrap();
        let builder = Client::builder()
            .retry(plain(1))
            .circuit_breaker(breaker)
            .default_policy(EndpointPolicy::new().rate_limit(limit));
        let caller = Caller::new(via, builder);
        let url = server.url("/p");
        for _ in 0..2 {
            caller.get(&url, None).await.unwrap_err();
        }
        // Open for 1 s; the rate limit has one slot left, and refills one in 10 s.
        sleep(SECOND).await;
        server.script("/p", [Reply::hang()]);
        let probe = {
            let (caller, url) = (caller.clone(), url.clone());
            tokio::spawn(async move { caller.get(&url, Some(5 * SECOND)).await })
        };
        while server.hits("/p") < 3 {
            tokio::task::yield_now().await;
        }
        let start = Instant::now();
        for _ in 0..5 {
            let err = caller.get(&url, None).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{via:?}: {err}");
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "{via:?}: nobody waited for a slot"
        );
        probe.abort();
    }
}

/// An attempt let out after a wait (here a `Retry-After` hold) gets what is left of the
/// call's deadline, not what was left before the wait: a hang ends at the deadline, on both
/// paths.
#[tokio::test(start_paused = true)]
async fn an_attempt_after_a_wait_ends_at_the_deadline() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script(
            "/w",
            [Reply::status(503).retry_after_secs(2), Reply::hang()],
        );
        let caller = Caller::new(via, builder(1, EndpointPolicy::new()));
        let url = server.url("/w");
        caller.get(&url, None).await.unwrap_err();
        let start = Instant::now();
        let err = caller.get(&url, Some(5 * SECOND)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{via:?}: {err}");
        assert_eq!(start.elapsed(), 5 * SECOND, "{via:?}: ends at the deadline");
        assert_eq!(server.hits("/w"), 2);
    }
}

/// Only calls that go out earn the retry budget its deposit: one the bulkhead turns away
/// earns nothing (it did before: the deposit came when the call began).
#[tokio::test(start_paused = true)]
async fn a_call_turned_away_earns_the_budget_nothing() {
    let server = FaultServer::start().await.unwrap();
    server.script("/b", [Reply::hang()]);
    let policy = EndpointPolicy::new()
        .retry_budget(BudgetConfig::new(1.0, 0, 10 * SECOND))
        .bulkhead(BulkheadConfig::new(1, Duration::ZERO));
    let caller = Caller::new(Via::Client, builder(3, policy));
    let url = server.url("/b");
    let first = {
        let (caller, url) = (caller.clone(), url.clone());
        tokio::spawn(async move { caller.get(&url, None).await })
    };
    while server.hits("/b") < 1 {
        tokio::task::yield_now().await;
    }
    for _ in 0..3 {
        let err = caller.get(&url, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BulkheadFull, "{err}");
    }
    let guards = caller.guards(&server).unwrap();
    assert_eq!(guards.budget_available(), Some(1), "one call went out");
    first.abort();
}

// ---------------------------------------------------------------------------------------
// The bulkhead
// ---------------------------------------------------------------------------------------

fn bulkhead(max: u32, queue: Duration) -> EndpointPolicy {
    EndpointPolicy::new().bulkhead(BulkheadConfig::new(max, queue))
}

/// Two places, a third call queues until one is free, then succeeds.
async fn a_queued_call_gets_a_place(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("x").delay(60 * MS)]);
    let caller = Caller::new(via, builder(1, bulkhead(2, 100 * MS)));
    let url = server.url("/slow");
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..3 {
        let (caller, url) = (caller.clone(), url.clone());
        calls.spawn(async move { caller.get(&url, None).await.map(|_| start.elapsed()) });
    }
    sleep(10 * MS).await;
    assert_eq!(server.hits("/slow"), 2, "{via:?}");
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(2));
        assert_eq!(guards.bulkhead_waiting(), Some(1));
    }
    let mut took = Vec::new();
    while let Some(call) = calls.join_next().await {
        took.push(call.unwrap().unwrap());
    }
    took.sort();
    assert_eq!(took, [60 * MS, 60 * MS, 120 * MS], "{via:?}");
    assert_eq!(server.hits("/slow"), 3);
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(0));
        assert_eq!(guards.bulkhead_waiting(), Some(0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gets_a_place_through_the_client() {
    a_queued_call_gets_a_place(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gets_a_place_through_the_middleware() {
    a_queued_call_gets_a_place(Via::Middleware).await;
}

/// Two places held for 500 ms: a third call gives up after its 100 ms in the queue (or its
/// shorter deadline), never sent; with no queue at all, at once.
async fn a_full_bulkhead_turns_calls_away(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("x").delay(500 * MS)]);
    let url = server.url("/slow");
    for (queue, deadline, waits) in [
        (100 * MS, None, 100 * MS),
        (100 * MS, Some(40 * MS), 40 * MS),
        (Duration::ZERO, None, Duration::ZERO),
    ] {
        let hits = server.hits("/slow");
        let caller = Caller::new(via, builder(3, bulkhead(2, queue)));
        let mut calls = JoinSet::new();
        for _ in 0..2 {
            let (caller, url) = (caller.clone(), url.clone());
            calls.spawn(async move { caller.get(&url, None).await });
        }
        sleep(10 * MS).await;
        let start = Instant::now();
        let err = caller.get(&url, deadline).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BulkheadFull, "{via:?}: {err}");
        assert_eq!(err.delivery(), Delivery::NotSent);
        assert_eq!(err.class(), Class::Transient);
        let message = err.to_string();
        assert!(message.contains("bulkhead"), "{message}");
        assert!(
            message.contains(&format!("{}:", server.addr())),
            "{message}"
        );
        assert_eq!(start.elapsed(), waits, "{via:?}, queue {queue:?}");
        assert_eq!(server.hits("/slow"), hits + 2, "{via:?}: never sent");
        while let Some(call) = calls.join_next().await {
            assert_eq!(call.unwrap().unwrap().0, 200);
        }
        if let Some(guards) = caller.guards(&server) {
            assert_eq!(guards.bulkhead_in_flight(), Some(0));
            assert_eq!(guards.bulkhead_waiting(), Some(0));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_turns_calls_away_through_the_client() {
    a_full_bulkhead_turns_calls_away(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_turns_calls_away_through_the_middleware() {
    a_full_bulkhead_turns_calls_away(Via::Middleware).await;
}

/// A dropped call gives its place back at once: the queued call behind it goes out at that
/// instant. So does a dropped queued call (it stops counting as waiting).
async fn a_dropped_call_frees_its_place(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let caller = Caller::new(via, builder(1, bulkhead(1, 10 * SECOND)));
    let holder = tokio::spawn({
        let (caller, url) = (caller.clone(), server.url("/hang"));
        async move { caller.get(&url, None).await }
    });
    sleep(10 * MS).await;
    // Two queue behind it; the first of them is dropped while it waits.
    let dropped = tokio::spawn({
        let (caller, url) = (caller.clone(), server.url("/ok"));
        async move { caller.get(&url, None).await }
    });
    let queued = tokio::spawn({
        let (caller, url) = (caller.clone(), server.url("/ok"));
        async move { caller.get(&url, None).await.map(|_| Instant::now()) }
    });
    sleep(10 * MS).await;
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(1));
        assert_eq!(guards.bulkhead_waiting(), Some(2));
    }
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_waiting(), Some(1));
    }
    assert_eq!(server.hits("/hang"), 1);
    assert_eq!(server.hits("/ok"), 0);

    let released = Instant::now();
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    let went_out = queued.await.unwrap().unwrap();
    assert_eq!(went_out, released, "{via:?}: the place was freed at once");
    assert_eq!(server.hits("/ok"), 1);
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(0));
        assert_eq!(guards.bulkhead_waiting(), Some(0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_frees_its_place_through_the_client() {
    a_dropped_call_frees_its_place(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_frees_its_place_through_the_middleware() {
    a_dropped_call_frees_its_place(Via::Middleware).await;
}

// ---------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------

/// `Client::overload` finds the guards of an endpoint key under a policy once a call has
/// used them, under the rule's name when every guard it has is scoped to the rule, and
/// nothing else.
#[tokio::test(start_paused = true)]
async fn the_handle_finds_the_guards_a_call_used() {
    use resilient_http::policy::{Matcher, Scope};

    let server = FaultServer::start().await.unwrap();
    let client = Client::builder()
        .no_circuit_breaker()
        .endpoint(
            "search",
            Matcher::new().path("/search*"),
            EndpointPolicy::new()
                .bulkhead(BulkheadConfig::new(4, Duration::ZERO))
                .bulkhead_scope(Scope::Rule)
                .hold_scope(Scope::Rule)
                .retry_budget_scope(Scope::Rule),
        )
        .endpoint(
            "bare",
            Matcher::new().path("/bare*"),
            EndpointPolicy::new()
                .retry_budget_enabled(false)
                .hold_on_retry_after(false)
                .server_quota(ServerQuotaConfig::off()),
        )
        .build()
        .unwrap();
    let key = format!("http://{}", server.addr());
    assert!(client.overload("default", &key).is_none(), "no call yet");

    client.get(server.url("/")).send().await.unwrap();
    client.get(server.url("/search?q=x")).send().await.unwrap();
    client.get(server.url("/bare")).send().await.unwrap();

    let default = client.overload("default", &key).unwrap();
    assert_eq!(default.key(), key);
    assert_eq!(default.budget_available(), Some(100));
    assert_eq!(default.bulkhead_in_flight(), None);
    assert_eq!(default.rate_limit_idle(), None);

    // One key for all of the policy's requests; not the URL's.
    assert!(client.overload("search", &key).is_none());
    let search = client.overload("search", "search").unwrap();
    assert_eq!(search.bulkhead_in_flight(), Some(0));
    assert_eq!(search.bulkhead_waiting(), Some(0));

    // A policy with every guard off keeps none; an unknown policy has none.
    assert!(client.overload("bare", &key).is_none());
    assert!(client.overload("nope", &key).is_none());
    assert!(format!("{search:?}").contains("\"search\""));
}

// ---------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------

/// A random mix of answers, each after a random delay of up to 40 ms (so that failures do
/// not all come before successes): mostly 200s, some 503s and resets, now and then (0.3 %) a 429
/// asking for a second, and every few hundred answers an outage of 25 failures in a row, so
/// that the breaker opens and probes.
fn random_replies(rng: &mut fastrand::Rng, count: usize) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(count);
    while replies.len() < count {
        for _ in 0..rng.usize(100..400) {
            let delay = MS * rng.u32(0..40);
            replies.push(match rng.u16(0..1000) {
                0..=2 => Reply::status(429).retry_after_secs(1).delay(delay),
                3..=52 => Reply::reset(),
                53..=152 => Reply::status(503).delay(delay),
                _ => Reply::ok("ok").delay(delay),
            });
        }
        for _ in 0..25 {
            replies.push(Reply::status(503).delay(MS * rng.u32(0..40)));
        }
    }
    replies
}

/// What became of the calls.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    dropped: usize,
    errors: BTreeMap<&'static str, usize>,
}

/// 15,000 calls with every guard on (the default budget and holds, a generous rate limit, a
/// bulkhead with a queue, a breaker that opens in an outage) and hedging, 100 callers at a time, most
/// raced against a random short timer (so dropped wherever they are: queued, held, sending,
/// reading, sleeping before a retry, probing a half-open breaker), some with short deadlines
/// of their own. Then, a window later, the same caller and server, the server now answering
/// 200 after 100 ms.
async fn drop_calls_at_random_points(via: Via) -> (Caller, FaultServer, String) {
    const CALLERS: usize = 100;
    const CALLS: usize = 150;
    let real = std::time::Instant::now();
    let start = Instant::now();
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let mut rng = fastrand::Rng::with_seed(7);
    server.script("/mix", random_replies(&mut rng, 20_000));
    let half_opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let breaker = BreakerConfig::builder()
        .window(Window::Calls(40))
        .min_calls(20)
        .open_for(50 * MS)
        .open_for_max(400 * MS)
        .half_open_probes(2)
        .on_state_change({
            let half_opened = half_opened.clone();
            move |change| {
                if change.to == State::HalfOpen {
                    half_opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
        .build()
        .unwrap();
    // Hedges too, so that calls are also dropped while their attempts race.
    let policy = EndpointPolicy::new()
        .rate_limit(RateLimitConfig::new(5_000, SECOND).burst(40))
        .bulkhead(BulkheadConfig::new(40, 50 * MS))
        .hedge(HedgeConfig::new(20 * MS, 2));
    let builder = Client::builder()
        .circuit_breaker(breaker)
        .default_policy(policy);
    let caller = Caller::new(via, builder);
    let url = server.url("/mix");

    let mut callers = JoinSet::new();
    for seed in 0..CALLERS {
        let (caller, url) = (caller.clone(), url.clone());
        callers.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed as u64);
            let mut tally = Tally::default();
            for _ in 0..CALLS {
                // Callers think between calls, so that fast failures (an open breaker) do
                // not use up the calls in an instant.
                sleep(MS * rng.u32(0..30)).await;
                let deadline = (rng.u8(0..10) < 3).then(|| MS * rng.u32(1..300));
                let timer = (rng.u8(0..10) < 6).then(|| MS * rng.u32(0..150));
                let timer = async move {
                    match timer {
                        Some(after) => sleep(after).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    result = caller.get(&url, deadline) => match result {
                        Ok(_) => tally.ok += 1,
                        Err(err) => *tally.errors.entry(err.kind().as_str()).or_default() += 1,
                    },
                    () = timer => tally.dropped += 1,
                }
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(done) = callers.join_next().await {
        let done = done.unwrap();
        tally.ok += done.ok;
        tally.dropped += done.dropped;
        for (kind, count) in done.errors {
            *tally.errors.entry(kind).or_default() += count;
        }
    }
    let calls = tally.ok + tally.dropped + tally.errors.values().sum::<usize>();
    let half_opened = half_opened.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{via:?}: {calls} calls, {} server hits, {half_opened} half-open periods, in {:.1?} of \
         virtual time and {:.1?} of real time: {tally:?}",
        server.hits("/mix"),
        start.elapsed(),
        real.elapsed(),
    );
    assert_eq!(calls, CALLERS * CALLS);
    // Floors, not targets: how long the breaker stays open depends on when the loopback
    // answers arrive against paused time, so the mix varies from run to run (927 to 2,629
    // dropped calls seen on this machine); a few hundred drops exercise every point.
    assert!(tally.ok > 300 && tally.dropped > 300, "{tally:?}");
    assert!(half_opened > 0);
    for kind in ["bulkhead_full", "circuit_open", "rate_limited"] {
        assert!(tally.errors.contains_key(kind), "no {kind}: {tally:?}");
    }
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(0), "{guards:?}");
        assert_eq!(guards.bulkhead_waiting(), Some(0), "{guards:?}");
    }

    // A window later (and past any hold or open breaker), all must be back to idle.
    server.script("/mix", [Reply::ok("ok").delay(100 * MS)]);
    sleep(11 * SECOND).await;
    (caller, server, url)
}

/// What any caller can see of idle guards: the breaker closes again (two probes, if it is
/// half-open or open; a probe's place lost by a dropped call would keep it half-open), then
/// 40 calls at once all go out at once and take 100 ms (a place lost in the bulkhead would
/// make one queue and fail; a rate limit not back to its full burst of 40, or a hold, would
/// make some wait).
async fn idle_as_seen_by_calls(caller: &Caller, url: &str) {
    for _ in 0..3 {
        caller.get(url, None).await.unwrap();
    }
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..40 {
        let (caller, url) = (caller.clone(), url.to_owned());
        calls.spawn(async move { caller.get(&url, None).await.map(|_| start.elapsed()) });
    }
    while let Some(took) = calls.join_next().await {
        assert_eq!(took.unwrap().unwrap(), 100 * MS);
    }
}

/// Through the client: its readings, then what calls see.
#[tokio::test(start_paused = true)]
async fn calls_dropped_at_random_points_leave_every_guard_idle() {
    let (caller, server, url) = drop_calls_at_random_points(Via::Client).await;
    let guards = caller.guards(&server).unwrap();
    assert_eq!(guards.budget_available(), Some(100), "{guards:?}");
    assert_eq!(guards.held_for(), None);
    assert_eq!(guards.rate_limit_idle(), Some(true));
    assert_eq!(guards.bulkhead_in_flight(), Some(0));
    let Caller::Client(client) = &caller else {
        unreachable!()
    };
    let breaker = client.breakers().unwrap().get(guards.key()).unwrap();
    eprintln!("the breaker, idle: {:?}", breaker.state());
    idle_as_seen_by_calls(&caller, &url).await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(guards.bulkhead_in_flight(), Some(0));
    assert_eq!(guards.bulkhead_waiting(), Some(0));
}

/// Through the adapter, whose retry layer holds the places and the breaker's permits in
/// futures of its own: what calls see.
#[tokio::test(start_paused = true)]
async fn calls_dropped_at_random_points_through_the_middleware_leave_no_trace() {
    let (caller, _server, url) = drop_calls_at_random_points(Via::Middleware).await;
    idle_as_seen_by_calls(&caller, &url).await;
}

// ---------------------------------------------------------------------------------------
// Eviction: state that still limits a call is never dropped
// ---------------------------------------------------------------------------------------

/// Every host name resolves to the loopback: `t7.example.com:<port>` reaches the fault
/// server, under an endpoint key of its own (tenants under one `*.example.com` policy).
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))));
        Box::pin(std::future::ready(Ok(addrs)))
    }
}

/// A caller of either kind whose names all resolve to the loopback, keeping no idle
/// connection (a thousand hosts would keep a thousand).
fn tenants_caller(via: Via, builder: ClientBuilder) -> Caller {
    let configure = |b: reqwest::ClientBuilder| {
        b.dns_resolver(std::sync::Arc::new(Loopback))
            .pool_max_idle_per_host(0)
    };
    match via {
        Via::Client => Caller::Client(builder.reqwest(configure).build().unwrap()),
        Via::Middleware => {
            let http = configure(reqwest::Client::builder()).build().unwrap();
            Caller::Middleware(
                reqwest_middleware::ClientBuilder::new(http)
                    .with(resilient_http::middleware::ResilientMiddleware::new(builder).unwrap())
                    .build(),
            )
        }
    }
}

fn tenant(server: &FaultServer, name: &str, path: &str) -> String {
    format!("http://{name}.example.com:{}{path}", server.addr().port())
}

/// Rate 1 per 60 s (with the default bound of 1,024 endpoints): one call to A, then 1,100
/// calls to other tenants of the same policy, then A again within the minute: A's spent
/// limit was kept, so the server gets 1 request from A, not 2.
async fn a_spent_rate_limit_outlives_a_thousand_other_endpoints(via: Via) {
    let server = FaultServer::start().await.unwrap();
    let policy = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 60 * SECOND));
    let caller = tenants_caller(
        via,
        Client::builder().retry(plain(1)).default_policy(policy),
    );
    let a = tenant(&server, "a", "/a");
    assert_eq!(caller.get(&a, None).await.unwrap().0, 200);
    for i in 0..1_100 {
        let url = tenant(&server, &format!("t{i}"), "/other");
        assert_eq!(caller.get(&url, None).await.unwrap().0, 200, "tenant {i}");
    }
    let again = caller.get(&a, Some(10 * SECOND)).await;
    let err = again.expect_err("A's limit is spent for the minute");
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{via:?}: {err}");
    assert_eq!(server.hits("/a"), 1, "{via:?}");
    assert_eq!(server.hits("/other"), 1_100);
}

#[tokio::test(start_paused = true)]
async fn a_spent_rate_limit_outlives_a_thousand_other_endpoints_through_the_client() {
    a_spent_rate_limit_outlives_a_thousand_other_endpoints(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_spent_rate_limit_outlives_a_thousand_other_endpoints_through_the_middleware() {
    a_spent_rate_limit_outlives_a_thousand_other_endpoints(Via::Middleware).await;
}

/// A budget of 10 retries (no share of first attempts), spent against a failing A; then 20
/// other endpoints with `max_breakers(16)`: A's drawn-down budget was kept, so A's next call
/// is not retried.
async fn a_spent_budget_outlives_other_endpoints(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/a", [Reply::status(503)]);
    let breaker = BreakerConfig::builder()
        .max_breakers(16)
        .window(Window::Calls(500))
        .min_calls(500)
        .build()
        .unwrap();
    let policy = EndpointPolicy::new().retry_budget(BudgetConfig::new(0.0, 1, 10 * SECOND));
    let builder = Client::builder()
        .retry(plain(3))
        .circuit_breaker(breaker)
        .default_policy(policy);
    let caller = tenants_caller(via, builder);
    let a = tenant(&server, "a", "/a");
    for call in 0..5 {
        let err = caller.get(&a, None).await.unwrap_err();
        assert_eq!(outcomes(&err), [status_503(); 3], "call {call}");
    }
    let err = caller.get(&a, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExhausted, "{err}");
    assert_eq!(server.hits("/a"), 16);
    for i in 0..20 {
        let url = tenant(&server, &format!("t{i}"), "/other");
        assert_eq!(caller.get(&url, None).await.unwrap().0, 200);
    }
    let err = caller.get(&a, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExhausted, "{via:?}: {err}");
    assert_eq!(outcomes(&err), [status_503()], "{via:?}: no retry");
    assert_eq!(server.hits("/a"), 17, "{via:?}");
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_outlives_other_endpoints_through_the_client() {
    a_spent_budget_outlives_other_endpoints(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_outlives_other_endpoints_through_the_middleware() {
    a_spent_budget_outlives_other_endpoints(Via::Middleware).await;
}

/// `max_breakers(4)`, a bulkhead of 1, and 6 endpoints each with a call in flight: more busy
/// endpoints than the bound, so the map grows past it, and a second call to the first
/// endpoint is turned away (its bulkhead was not forgotten).
async fn busy_endpoints_past_the_bound_keep_their_bulkheads(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let breaker = BreakerConfig::builder().max_breakers(4).build().unwrap();
    let builder = Client::builder()
        .retry(plain(1))
        .circuit_breaker(breaker)
        .default_policy(bulkhead(1, Duration::ZERO));
    let caller = tenants_caller(via, builder);
    let mut calls = JoinSet::new();
    for i in 0..6 {
        let (caller, url) = (caller.clone(), tenant(&server, &format!("t{i}"), "/hang"));
        calls.spawn(async move { caller.get(&url, None).await });
        while server.hits("/hang") < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    let err = caller
        .get(&tenant(&server, "t0", "/hang"), None)
        .await
        .expect_err("t0's one place is taken");
    assert_eq!(err.kind(), ErrorKind::BulkheadFull, "{via:?}: {err}");
    assert_eq!(server.hits("/hang"), 6, "{via:?}: no second call let in");
    calls.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn busy_endpoints_past_the_bound_keep_their_bulkheads_through_the_client() {
    busy_endpoints_past_the_bound_keep_their_bulkheads(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn busy_endpoints_past_the_bound_keep_their_bulkheads_through_the_middleware() {
    busy_endpoints_past_the_bound_keep_their_bulkheads(Via::Middleware).await;
}

// ---------------------------------------------------------------------------------------
// Rate-limit waiters reserve their own slots
// ---------------------------------------------------------------------------------------

/// What [`rate_limit_load`] saw: each answered call's wait, the calls refused `RateLimited`,
/// and the requests the server got.
struct RateLoad {
    waits: Vec<Duration>,
    refused: usize,
    slots: usize,
}

impl RateLoad {
    fn percentile(&self, share: usize) -> Duration {
        self.waits[self.waits.len() * share / 100]
    }
}

/// The issue's load: 100 callers calling in a loop for `run` at a limit of 50/s, each call
/// with a 6 s deadline (a wait of about 2 s).
async fn rate_limit_load(via: Via, run: Duration) -> RateLoad {
    const CALLERS: usize = 100;
    let server = FaultServer::start().await.unwrap();
    server.count_only();
    let policy = EndpointPolicy::new().rate_limit(RateLimitConfig::new(50, SECOND));
    let caller = Caller::new(via, builder(1, policy));
    let url = server.url("/r");
    let end = Instant::now() + run;
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let (caller, url) = (caller.clone(), url.clone());
        callers.spawn(async move {
            let (mut waits, mut refused) = (Vec::new(), 0);
            while Instant::now() < end {
                let start = Instant::now();
                match caller.get(&url, Some(6 * SECOND)).await {
                    Ok(_) => waits.push(start.elapsed()),
                    Err(err) if err.kind() == ErrorKind::RateLimited => refused += 1,
                    Err(err) => panic!("{err}"),
                }
            }
            (waits, refused)
        });
    }
    let (mut waits, mut refused) = (Vec::new(), 0);
    while let Some(done) = callers.join_next().await {
        let (w, r) = done.unwrap();
        waits.extend(w);
        refused += r;
    }
    waits.sort();
    let slots = server.hits("/r");
    RateLoad {
        waits,
        refused,
        slots,
    }
}

/// The times a call waiting for the rate limit was woken, as counted in `snapshotter`.
#[cfg(feature = "metrics")]
fn rate_limit_wakeups(snapshotter: &metrics_util::debugging::Snapshotter) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .iter()
        .filter(|(key, ..)| {
            key.key().name() == resilient_http::telemetry::OVERLOAD_WAITS
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "reason" && l.value() == "rate_limit")
        })
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

/// 100 callers calling in a loop at a limit of 50/s, each call with a 6 s deadline: a call
/// waits about 2 s for its slot, well within its deadline, so none fails `RateLimited`; each
/// waiter sleeps once (wake-ups per slot ≈ 1). Returns (p50, p99) of the waits.
async fn waiters_get_their_own_slots(via: Via) -> (Duration, Duration) {
    #[cfg(feature = "metrics")]
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    #[cfg(feature = "metrics")]
    let snapshotter = recorder.snapshotter();
    #[cfg(feature = "metrics")]
    let _local = metrics::set_default_local_recorder(&recorder);

    let load = rate_limit_load(via, 20 * SECOND).await;
    let (p50, p99, slots, refused) = (
        load.percentile(50),
        load.percentile(99),
        load.slots,
        load.refused,
    );
    #[cfg(feature = "metrics")]
    let wakeups = rate_limit_wakeups(&snapshotter);
    #[cfg(not(feature = "metrics"))]
    let wakeups = 0;
    eprintln!(
        "{via:?}: {} calls, {refused} RateLimited, {slots} slots, {:.2} wake-ups per slot, \
         wait p50 {p50:?} p99 {p99:?}",
        load.waits.len(),
        wakeups as f64 / slots as f64
    );
    assert_eq!(
        refused, 0,
        "{via:?}: calls failed RateLimited within their deadline"
    );
    // 20 s at 50/s, and the calls waiting at the end go in their slots after it.
    assert!(slots >= 1_000, "{slots}");
    #[cfg(feature = "metrics")]
    assert!(
        wakeups <= slots as u64,
        "{via:?}: {wakeups} wake-ups for {slots} slots"
    );
    (p50, p99)
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waiters_get_their_own_slots_through_the_client() {
    let (_, p99) = waiters_get_their_own_slots(Via::Client).await;
    assert!(p99 <= 2 * SECOND + 20 * MS, "{p99:?}");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waiters_get_their_own_slots_through_the_middleware() {
    let (_, p99) = waiters_get_their_own_slots(Via::Middleware).await;
    assert!(p99 <= 2 * SECOND + 20 * MS, "{p99:?}");
}

/// One request a second. A calls at 0.5 ms; B at 100 ms, with a 1.5 s deadline, is told its
/// slot is at 1.0005 s, and its timer (rounded up to the millisecond, as a real wake-up comes
/// late) wakes it at 1.001 s. C comes at exactly 1.0005 s, before B wakes. B reserved that
/// slot when told to wait, so B goes when it wakes, and C waits for the next slot. (Before,
/// C took B's slot, and B, asking again, was told 1 s more: past its deadline,
/// `RateLimited`, the issue's 47 of 100 callers at 50/s.)
async fn a_waiter_keeps_its_slot_from_a_later_caller(via: Via) {
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }
    let server = FaultServer::start().await.unwrap();
    let policy = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, SECOND));
    let caller = Caller::new(via, builder(1, policy));
    let url = server.url("/r");
    let start = Instant::now();
    tokio::time::advance(Duration::from_micros(500)).await;
    caller.get(&url, None).await.unwrap();
    tokio::time::advance(start + 100 * MS - Instant::now()).await;
    let spawn = |deadline| {
        let (caller, url) = (caller.clone(), url.clone());
        tokio::spawn(async move {
            let result = caller.get(&url, Some(deadline)).await;
            (
                result.map(|r| r.0).map_err(|e| e.to_string()),
                start.elapsed(),
            )
        })
    };
    let b = spawn(1_500 * MS);
    settle().await;
    tokio::time::advance(start + Duration::from_micros(1_000_500) - Instant::now()).await;
    let c = spawn(5 * SECOND);
    settle().await;
    let (b, b_at) = b.await.unwrap();
    assert_eq!(b, Ok(200), "{via:?}: B");
    assert!(
        b_at > SECOND && b_at < SECOND + 2 * MS,
        "{via:?}: B at {b_at:?}"
    );
    let (c, c_at) = c.await.unwrap();
    assert_eq!(c, Ok(200), "{via:?}: C");
    assert!(
        c_at > 2 * SECOND && c_at < 2 * SECOND + 2 * MS,
        "{via:?}: C waits for the next slot, went at {c_at:?}"
    );
    assert_eq!(server.hits("/r"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_keeps_its_slot_from_a_later_caller_through_the_client() {
    a_waiter_keeps_its_slot_from_a_later_caller(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_waiter_keeps_its_slot_from_a_later_caller_through_the_middleware() {
    a_waiter_keeps_its_slot_from_a_later_caller(Via::Middleware).await;
}

/// A call dropped while it waits for its reserved slot gives the slot back: the next caller
/// goes in it, not one slot later.
async fn a_dropped_waiter_gives_its_slot_back(via: Via) {
    let server = FaultServer::start().await.unwrap();
    let policy = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, SECOND));
    let caller = Caller::new(via, builder(1, policy));
    let url = server.url("/r");
    let start = Instant::now();
    caller.get(&url, None).await.unwrap();
    let waiter = tokio::spawn({
        let (caller, url) = (caller.clone(), url.clone());
        async move { caller.get(&url, None).await }
    });
    sleep(500 * MS).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    caller.get(&url, None).await.unwrap();
    assert_eq!(
        start.elapsed(),
        SECOND,
        "{via:?}: the slot at 1 s was given back"
    );
    assert_eq!(server.hits("/r"), 2);
    if let Some(guards) = caller.guards(&server) {
        sleep(SECOND).await;
        assert_eq!(guards.rate_limit_idle(), Some(true));
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_slot_back_through_the_client() {
    a_dropped_waiter_gives_its_slot_back(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_slot_back_through_the_middleware() {
    a_dropped_waiter_gives_its_slot_back(Via::Middleware).await;
}

// ---------------------------------------------------------------------------------------
// A hold's end releases its waiting calls spread out
// ---------------------------------------------------------------------------------------

/// A 429 holds the endpoint for 2 s; 20 calls wait on the hold. The first goes at its end;
/// the others reach the server spread over the hold's release window (a quarter of it:
/// 500 ms) after its end, not all at once (before: all 20 at exactly 2 s). Returns when each
/// went, after the hold's end.
async fn held_calls_are_released_spread_out(via: Via) -> Vec<Duration> {
    const CALLS: usize = 20;
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [Reply::status(429).retry_after_secs(2), Reply::ok("x")],
    );
    let caller = Caller::new(via, builder(1, EndpointPolicy::new()));
    let url = server.url("/h");
    caller.get(&url, None).await.unwrap_err();
    let end = Instant::now() + 2 * SECOND;
    let mut calls = JoinSet::new();
    for _ in 0..CALLS {
        let (caller, url) = (caller.clone(), url.clone());
        calls.spawn(async move {
            caller.get(&url, Some(30 * SECOND)).await.unwrap();
            Instant::now()
        });
    }
    let mut went = Vec::new();
    while let Some(at) = calls.join_next().await {
        let at = at.unwrap();
        assert!(at >= end, "{via:?}: went during the hold");
        went.push(at - end);
    }
    went.sort();
    eprintln!("{via:?}: released after the hold's end at {went:?}");
    assert_eq!(server.hits("/h"), 1 + CALLS);
    assert_eq!(went[0], Duration::ZERO, "{via:?}: the first at the end");
    // Within the window (its timers fire on whole milliseconds: up to its end).
    assert!(went[CALLS - 1] <= 500 * MS, "{via:?}: within the window");
    // Spread: no 10 ms holds 8 of the 20 (uniform over 500 ms: 0.4 on average; 8 or more
    // in some 10 ms about once in 10^8 runs).
    for (i, first) in went.iter().enumerate() {
        let within = went[i..]
            .iter()
            .take_while(|at| **at < *first + 10 * MS)
            .count();
        assert!(within < 8, "{via:?}: {within} within 10 ms of {first:?}");
    }
    went
}

#[tokio::test(start_paused = true)]
async fn held_calls_are_released_spread_out_through_the_client() {
    held_calls_are_released_spread_out(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn held_calls_are_released_spread_out_through_the_middleware() {
    held_calls_are_released_spread_out(Via::Middleware).await;
}

/// The calls answered `429` at once, each retrying after the `Retry-After`, are the largest
/// herd a hold's end releases: their retries spread as the calls waiting on the hold do. The
/// first goes when the server asked; the others within the hold's release window after it
/// (before, all 20 retries went at the same instant).
async fn retries_after_one_retry_after_are_spread(via: Via) {
    const CALLS: usize = 20;
    let server = FaultServer::start().await.unwrap();
    let asked = std::iter::repeat_n(Reply::status(429).retry_after_secs(2), CALLS);
    server.script("/r", asked.chain([Reply::ok("x")]));
    let caller = Caller::new(via, builder(2, EndpointPolicy::new()));
    let url = server.url("/r");
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..CALLS {
        let (caller, url) = (caller.clone(), url.clone());
        calls.spawn(async move {
            caller.get(&url, Some(30 * SECOND)).await.unwrap();
            Instant::now()
        });
    }
    let end = start + 2 * SECOND;
    let mut went = Vec::new();
    while let Some(at) = calls.join_next().await {
        let at = at.unwrap();
        assert!(at >= end, "{via:?}: a retry went before the server asked");
        went.push(at - end);
    }
    went.sort();
    assert_eq!(server.hits("/r"), 2 * CALLS);
    assert_eq!(
        went[0],
        Duration::ZERO,
        "{via:?}: the first when the server asked"
    );
    assert!(
        went[CALLS - 1] <= 500 * MS,
        "{via:?}: within the window: {went:?}"
    );
    for (i, first) in went.iter().enumerate() {
        let within = went[i..]
            .iter()
            .take_while(|at| **at < *first + 10 * MS)
            .count();
        assert!(
            within < 8,
            "{via:?}: {within} within 10 ms of {first:?}: {went:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_after_one_retry_after_are_spread_through_the_client() {
    retries_after_one_retry_after_are_spread(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn retries_after_one_retry_after_are_spread_through_the_middleware() {
    retries_after_one_retry_after_are_spread(Via::Middleware).await;
}

/// A call whose deadline leaves less room after the hold than the window goes within half
/// of that room, keeping the other half for its attempt (rather than fail, or go at its
/// deadline with no time left).
#[tokio::test(start_paused = true)]
async fn a_held_calls_deadline_bounds_its_release() {
    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script(
            "/h",
            [Reply::status(503).retry_after_secs(4), Reply::ok("x")],
        );
        let caller = Caller::new(via, builder(1, EndpointPolicy::new()));
        let url = server.url("/h");
        caller.get(&url, None).await.unwrap_err();
        let end = Instant::now() + 4 * SECOND;
        let mut calls = JoinSet::new();
        for i in 0..20u32 {
            let (caller, url) = (caller.clone(), url.clone());
            // Deadlines 100 ms or 20 ms past the hold's end (its window: 1 s).
            let deadline = if i % 2 == 0 { 4_100 * MS } else { 4_020 * MS };
            calls.spawn(async move {
                caller.get(&url, Some(deadline)).await.unwrap();
                (deadline, Instant::now() - end)
            });
        }
        while let Some(done) = calls.join_next().await {
            let (deadline, after) = done.unwrap();
            let room = deadline - 4 * SECOND;
            assert!(
                after <= room / 2,
                "{via:?}: deadline {deadline:?}, went {after:?} after"
            );
        }
        assert_eq!(server.hits("/h"), 21);
    }
}

/// The issue's measurement, in real time on a multi-thread runtime: 100 callers calling in a
/// loop for 10 s at a limit of 50/s, each call with a 6 s deadline (a wait of about 2 s).
/// Prints the calls refused `RateLimited`, the wake-ups per slot and the p50/p99 wait, for
/// each path. A measurement, not a test: run by name with `--ignored --nocapture`.
#[cfg(feature = "metrics")]
#[test]
#[ignore = "a measurement in real time (10 s a path): run it by name"]
fn measure_rate_limit_waiters_in_real_time() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for via in [Via::Client, Via::Middleware] {
        let _ = snapshotter.snapshot();
        let load = runtime.block_on(rate_limit_load(via, 10 * SECOND));
        let wakeups = rate_limit_wakeups(&snapshotter);
        eprintln!(
            "{via:?}: {} calls, {} RateLimited, {} slots, {:.2} wake-ups per slot, wait p50 \
             {:?} p99 {:?}",
            load.waits.len(),
            load.refused,
            load.slots,
            wakeups as f64 / load.slots as f64,
            load.percentile(50),
            load.percentile(99),
        );
    }
}

// ---------------------------------------------------------------------------------------
// The bulkhead under load: first come, first served (issue 22, item 2)
// ---------------------------------------------------------------------------------------

/// What [`a_busy_bulkhead_serves_in_turn`] saw.
#[derive(Debug)]
struct Turns {
    /// Calls that went out (all of them answered `200`).
    sent: usize,
    /// Calls refused `BulkheadFull`.
    full: usize,
    /// Calls each caller had answered, fewest and most.
    per_caller: (usize, usize),
    /// Time spent queueing, over all calls (an answered call's virtual time less the
    /// server's 2 ms; a refused call's whole time): mean, p50, p99, max.
    wait: (Duration, Duration, Duration, Duration),
}

/// The issue's load: 64 callers calling again as soon as a call ends, 16 places, a 2 s queue
/// timeout, calls of 2 ms, for 2.5 virtual seconds. A freed place goes to the longest waiter,
/// so a caller that ends a call and calls again queues behind those already waiting instead
/// of taking its place back: no call waits out its queue timeout, every caller gets its turn,
/// and the waits are alike (p99 within 3× the mean). Before, callers that released and
/// called again kept the places while woken waiters found them taken again, until some had
/// waited their whole 2 s and failed `BulkheadFull`.
async fn a_busy_bulkhead_serves_in_turn(via: Via) {
    const CALLERS: usize = 64;
    const RUN: Duration = Duration::from_millis(2500);
    const CALL: Duration = Duration::from_millis(2);
    let server = FaultServer::start().await.unwrap();
    server.script("/busy", [Reply::ok("x").delay(CALL)]);
    server.count_only();
    let caller = Caller::new(via, builder(1, bulkhead(16, 2 * SECOND)));
    let url = server.url("/busy");
    let end = Instant::now() + RUN;
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let (caller, url) = (caller.clone(), url.clone());
        callers.spawn(async move {
            let (mut waits, mut full) = (Vec::new(), 0);
            while Instant::now() < end {
                let start = Instant::now();
                match caller.get(&url, None).await {
                    Ok((200, _)) => waits.push(start.elapsed().saturating_sub(CALL)),
                    Err(err) if err.kind() == ErrorKind::BulkheadFull => {
                        // Refused after queueing its whole time, never sent.
                        full += 1;
                        waits.push(start.elapsed());
                    }
                    other => panic!("{via:?}: {other:?}"),
                }
            }
            (waits, full)
        });
    }
    let (mut waits, mut full, mut answered) = (Vec::new(), 0, Vec::new());
    while let Some(caller) = callers.join_next().await {
        let (its_waits, its_full) = caller.unwrap();
        answered.push(its_waits.len() - its_full);
        waits.extend(its_waits);
        full += its_full;
    }
    waits.sort();
    let calls = waits.len();
    let mean = waits.iter().sum::<Duration>() / calls as u32;
    let at = |q: f64| waits[((calls as f64 * q) as usize).min(calls - 1)];
    let turns = Turns {
        sent: calls - full,
        full,
        per_caller: (
            *answered.iter().min().unwrap(),
            *answered.iter().max().unwrap(),
        ),
        wait: (mean, at(0.5), at(0.99), waits[calls - 1]),
    };
    eprintln!("{via:?}: {turns:?}");
    assert_eq!(
        server.hits("/busy"),
        turns.sent,
        "{via:?}: a refused call sent nothing"
    );
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(0));
        assert_eq!(guards.bulkhead_waiting(), Some(0));
    }
    assert_eq!(turns.full, 0, "{via:?}: {turns:?}");
    let (fewest, most) = turns.per_caller;
    assert!(fewest > 0 && 2 * fewest >= most, "{via:?}: {turns:?}");
    let (mean, _, p99, _) = turns.wait;
    assert!(p99 <= 3 * mean, "{via:?}: {turns:?}");
}

#[tokio::test(start_paused = true)]
async fn a_busy_bulkhead_serves_in_turn_through_the_client() {
    a_busy_bulkhead_serves_in_turn(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_bulkhead_serves_in_turn_through_the_middleware() {
    a_busy_bulkhead_serves_in_turn(Via::Middleware).await;
}

// ---------------------------------------------------------------------------------------
// The adaptive limit and throttling, as `Client::overload` shows them (issue 26)
// ---------------------------------------------------------------------------------------

/// An adaptive limit pinned to two places (min = max = 2), five calls at once to a server
/// that answers in 200 ms: mid-way the handle shows two attempts under the limit and three
/// queueing, and the server has seen two; at the end, none of either.
#[tokio::test(start_paused = true)]
async fn the_handle_shows_the_attempts_under_the_adaptive_limit_and_queueing() {
    use resilient_http::overload::AdaptiveConcurrencyConfig;

    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("x").delay(Duration::from_millis(200))]);
    let limit = AdaptiveConcurrencyConfig::aimd().initial(2).min(2).max(2);
    let client = builder(1, EndpointPolicy::new().adaptive_concurrency(limit))
        .build()
        .unwrap();
    let key = format!("http://{}", server.addr());
    let mut calls = JoinSet::new();
    for _ in 0..5 {
        let (client, url) = (client.clone(), server.url("/slow"));
        calls.spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    }
    sleep(Duration::from_millis(100)).await;
    let guards = client.overload("default", &key).unwrap();
    assert_eq!(guards.adaptive_limit(), Some(2));
    assert_eq!(
        (guards.adaptive_in_flight(), guards.adaptive_waiting()),
        (Some(2), Some(3))
    );
    assert_eq!(server.hits("/slow"), 2);
    while let Some(call) = calls.join_next().await {
        assert_eq!(call.unwrap().unwrap(), 200);
    }
    assert_eq!(
        (guards.adaptive_in_flight(), guards.adaptive_waiting()),
        (Some(0), Some(0))
    );
    assert_eq!(server.hits("/slow"), 5);
    assert_eq!(guards.throttle_requests(), None, "no throttling configured");
    assert_eq!(guards.throttle_probability(Criticality::Default), None);
}

/// Throttling's window as the handle shows it: three accepts (a 200, a 404, a 500) and two
/// rejections (a 503, a 429) are five requests and three accepts; with K = 2 nothing is
/// throttled (5 < 2 × 3); three more 503s make eight requests, and the probability
/// `(8 − 2 × 3) / 9` for `default`.
#[tokio::test(start_paused = true)]
async fn the_handle_shows_the_throttles_window_and_probability() {
    use resilient_http::overload::ThrottleConfig;

    let server = FaultServer::start().await.unwrap();
    server.script(
        "/mixed",
        [
            Reply::ok("x"),
            Reply::status(404),
            Reply::status(500),
            Reply::status(503),
            Reply::status(429),
            Reply::status(503),
        ],
    );
    let client = builder(
        1,
        EndpointPolicy::new().throttle(ThrottleConfig::new().k(2.0)),
    )
    .build()
    .unwrap();
    let url = server.url("/mixed");
    for _ in 0..5 {
        let _ = client.get(&url).send().await;
    }
    let guards = client
        .overload("default", &format!("http://{}", server.addr()))
        .unwrap();
    assert_eq!(
        (guards.throttle_requests(), guards.throttle_accepts()),
        (Some(5), Some(3))
    );
    assert_eq!(guards.throttle_probability(Criticality::Default), Some(0.0));
    for _ in 0..3 {
        let _ = client.get(&url).send().await;
    }
    // The probability was 0, 0, then (7 − 2 × 3) / 8 before the last, which may have been
    // throttled: a request either way.
    assert_eq!(guards.throttle_requests(), Some(8));
    assert_eq!(guards.throttle_accepts(), Some(3));
    let p = guards.throttle_probability(Criticality::Default).unwrap();
    assert!((p - 2.0 / 9.0).abs() < 1e-9, "{p}");
    assert_eq!(
        guards.adaptive_limit(),
        None,
        "no adaptive limit configured"
    );
}
