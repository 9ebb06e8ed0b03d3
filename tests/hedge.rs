//! Hedged requests end to end, through the client's own call and through the
//! reqwest-middleware adapter, against the loopback fault server, with tokio's clock paused:
//! every delay below is exact virtual time, so "answered at 50 ms" means the hedge won.
#![cfg(feature = "reqwest-middleware")]

use std::time::Duration;

use http::Method;
use resilient_http::breaker::{BreakerConfig, Window};
use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::BudgetConfig;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Attempt, AttemptOutcome, Class, Client, ErrorKind};
use tokio::time::Instant;

mod common;
use common::*;

/// `(number, outcome, hedge)` of each attempt, in the order they ended.
fn summary(history: &[Attempt]) -> Vec<(u32, AttemptOutcome, bool)> {
    history
        .iter()
        .map(|a| (a.number, a.outcome, a.hedge))
        .collect()
}

fn ok() -> AttemptOutcome {
    AttemptOutcome::Status(http::StatusCode::OK)
}

/// A hedge 50 ms after the newest attempt, up to `max`, with `attempts` attempts.
fn hedged(via: Via, attempts: u32, max: u32) -> Caller {
    Caller::new(via, hedged_builder(attempts, max, EndpointPolicy::new()))
}

fn hedged_builder(
    attempts: u32,
    max: u32,
    policy: EndpointPolicy,
) -> resilient_http::ClientBuilder {
    builder(attempts, policy.hedge(HedgeConfig::new(50 * MS, max)))
}

async fn get(caller: &Caller, url: &str) -> Result<Answer, resilient_http::Error> {
    caller.send(Method::GET, url, &[]).await
}

/// Both ways a call runs.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test(start_paused = true)]
            async fn through_the_client() {
                super::$name(Via::Client).await;
            }

            #[tokio::test(start_paused = true)]
            async fn through_the_middleware() {
                super::$name(Via::Middleware).await;
            }
        }
    )*};
}

both!(
    a_slow_attempt_is_hedged_and_the_hedge_wins,
    an_answer_before_the_hedge_is_due_sends_none,
    the_first_attempt_wins_when_it_answers_first,
    only_requests_that_may_be_sent_twice_are_hedged,
    a_transient_failure_waits_for_the_other_attempts,
    a_permanent_failure_ends_the_race,
    when_every_attempt_fails_the_retry_decides,
    a_retry_is_hedged_after_its_own_send,
    hedges_come_one_after_another_up_to_max,
    hedges_spend_the_retry_budget,
    hedges_take_rate_limit_slots,
    the_breaker_counts_every_hedge,
    a_hedge_never_goes_past_the_deadline,
    a_dropped_race_gives_back_its_place,
    a_dropped_race_gives_back_its_probes,
);

async fn a_slow_attempt_is_hedged_and_the_hedge_wins(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::ok("slow").delay(SECOND), Reply::ok("fast")]);
    let caller = hedged(via, 3, 1);
    let start = Instant::now();

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    assert_eq!(answer.body, "fast");
    assert_eq!(start.elapsed(), 50 * MS);
    assert_eq!(server.hits("/h"), 2);
    assert_eq!(
        summary(&answer.history),
        [(1, AttemptOutcome::Cancelled, false), (2, ok(), true)]
    );
    let first = &answer.history[0];
    assert_eq!((first.class, first.duration), (Class::Transient, 50 * MS));
    assert_eq!(answer.history[1].started_after, 50 * MS);
}

async fn an_answer_before_the_hedge_is_due_sends_none(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::ok("quick").delay(49 * MS)]);
    let caller = hedged(via, 3, 1);

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    assert_eq!(answer.body, "quick");
    assert_eq!(server.hits("/h"), 1);
    assert!(answer.history.is_empty(), "{:?}", answer.history);
}

async fn the_first_attempt_wins_when_it_answers_first(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [
            Reply::ok("first").delay(80 * MS),
            Reply::ok("hedge").delay(100 * MS),
        ],
    );
    let caller = hedged(via, 3, 1);
    let start = Instant::now();

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    assert_eq!(answer.body, "first");
    assert_eq!(start.elapsed(), 80 * MS);
    assert_eq!(server.hits("/h"), 2);
    assert_eq!(
        summary(&answer.history),
        [(2, AttemptOutcome::Cancelled, true), (1, ok(), false)]
    );
}

async fn only_requests_that_may_be_sent_twice_are_hedged(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/p", [Reply::ok("slow").delay(200 * MS), Reply::ok("fast")]);
    // Not even when the policy retries POSTs: a hedge goes while the first may be processed.
    let policy = EndpointPolicy::new().retry_non_idempotent(true);
    let caller = Caller::new(via, hedged_builder(3, 1, policy));
    let url = server.url("/p");

    let answer = caller.send(Method::POST, &url, &[]).await.unwrap();
    assert_eq!((answer.body.as_str(), server.hits("/p")), ("slow", 1));

    server.script("/p", [Reply::ok("slow").delay(200 * MS), Reply::ok("fast")]);
    let keyed = [("idempotency-key", "k-1")];
    let answer = caller.send(Method::POST, &url, &keyed).await.unwrap();
    assert_eq!((answer.body.as_str(), server.hits("/p")), ("fast", 3));
    // The hedge is the same request: the same key.
    let keys: Vec<_> = server.requests("/p")[1..]
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["k-1", "k-1"]);

    server.script("/p", [Reply::ok("slow").delay(200 * MS), Reply::ok("fast")]);
    let answer = caller.send(Method::PUT, &url, &[]).await.unwrap();
    assert_eq!((answer.body.as_str(), server.hits("/p")), ("fast", 5));
}

async fn a_transient_failure_waits_for_the_other_attempts(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [
            Reply::status(503).delay(100 * MS),
            Reply::ok("hedge").delay(100 * MS),
        ],
    );
    let caller = hedged(via, 3, 1);
    let start = Instant::now();

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    assert_eq!(answer.body, "hedge");
    assert_eq!(start.elapsed(), 150 * MS);
    assert_eq!(server.hits("/h"), 2);
    assert_eq!(
        summary(&answer.history),
        [(1, status_503(), false), (2, ok(), true)]
    );
}

async fn a_permanent_failure_ends_the_race(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [
            Reply::status(404).delay(80 * MS),
            Reply::ok("hedge").delay(100 * MS),
        ],
    );
    let caller = hedged(via, 3, 1);
    let start = Instant::now();

    let err = get(&caller, &server.url("/h")).await.unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(start.elapsed(), 80 * MS);
    assert_eq!(
        summary(err.attempts()),
        [
            (2, AttemptOutcome::Cancelled, true),
            (
                1,
                AttemptOutcome::Status(http::StatusCode::NOT_FOUND),
                false
            ),
        ]
    );
}

/// Hedges use none of the policy's attempts: with 2 attempts, a hedge that failed too still
/// leaves the retry.
async fn when_every_attempt_fails_the_retry_decides(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [
            Reply::status(503).delay(60 * MS),
            Reply::status(503).delay(60 * MS),
            Reply::ok("retry"),
        ],
    );
    let caller = hedged(via, 2, 1);
    let start = Instant::now();

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    assert_eq!(answer.body, "retry");
    // The hedge failed last, at 110 ms; then the first retry's 100 ms.
    assert_eq!(start.elapsed(), 210 * MS);
    assert_eq!(
        summary(&answer.history),
        [
            (1, status_503(), false),
            (2, status_503(), true),
            (3, ok(), false)
        ]
    );
    assert_eq!(answer.history[2].delay_before, 100 * MS);
}

/// A retry is hedged as the first attempt is, 50 ms after it was sent: not at once (when
/// the first attempt's hedge would have been due), not never. (The driver keeps one hedge
/// timer per call, reset for each attempt.)
async fn a_retry_is_hedged_after_its_own_send(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [
            Reply::status(503),
            Reply::ok("slow").delay(SECOND),
            Reply::ok("hedge"),
        ],
    );
    let caller = hedged(via, 2, 1);
    let start = Instant::now();

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    assert_eq!(answer.body, "hedge");
    // The retry goes out after its 100 ms of backoff, its hedge 50 ms later.
    assert_eq!(start.elapsed(), 150 * MS);
    assert_eq!(
        summary(&answer.history),
        [
            (1, status_503(), false),
            (2, AttemptOutcome::Cancelled, false),
            (3, ok(), true),
        ]
    );
    assert_eq!(answer.history[2].started_after, 150 * MS);
}

async fn hedges_come_one_after_another_up_to_max(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [
            Reply::ok("1").delay(SECOND),
            Reply::ok("2").delay(SECOND),
            Reply::ok("3").delay(SECOND),
            Reply::ok("4"),
        ],
    );
    let caller = hedged(via, 3, 2);
    let start = Instant::now();

    let answer = get(&caller, &server.url("/h")).await.unwrap();
    // Hedges at 50 and 100 ms, then no more: the first answers at 1 s.
    assert_eq!(answer.body, "1");
    assert_eq!(start.elapsed(), SECOND);
    assert_eq!(server.hits("/h"), 3);
    let mut history = summary(&answer.history);
    history.sort_by_key(|a| a.0);
    assert_eq!(
        history,
        [
            (1, ok(), false),
            (2, AttemptOutcome::Cancelled, true),
            (3, AttemptOutcome::Cancelled, true),
        ]
    );
    let starts: Vec<_> = answer.history.iter().map(|a| a.started_after).collect();
    assert!(starts.contains(&(100 * MS)), "{starts:?}");
}

/// A budget of one retry a second (ratio 0) over one second: the first call's hedge spends
/// it, the second call's is not sent.
async fn hedges_spend_the_retry_budget(via: Via) {
    let server = FaultServer::start().await.unwrap();
    let slow = || [Reply::ok("slow").delay(200 * MS), Reply::ok("fast")];
    server.script("/h", slow());
    let budget = BudgetConfig::new(0.0, 1, SECOND);
    let caller = Caller::new(
        via,
        hedged_builder(3, 1, EndpointPolicy::new().retry_budget(budget)),
    );
    let url = server.url("/h");

    assert_eq!(get(&caller, &url).await.unwrap().body, "fast");
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.budget_available(), Some(0));
    }
    server.script("/h", slow());
    let answer = get(&caller, &url).await.unwrap();
    assert_eq!(answer.body, "slow");
    assert_eq!(server.hits("/h"), 3);
}

async fn hedges_take_rate_limit_slots(via: Via) {
    let server = FaultServer::start().await.unwrap();
    let slow = || [Reply::ok("slow").delay(200 * MS), Reply::ok("fast")];
    let url = server.url("/h");

    // A burst of 2: the call and its hedge.
    server.script("/h", slow());
    let policy = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, SECOND).burst(2));
    let caller = Caller::new(via, hedged_builder(3, 1, policy));
    assert_eq!(get(&caller, &url).await.unwrap().body, "fast");
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.rate_limit_idle(), Some(false));
    }

    // A burst of 1: the hedge finds no slot, and does not wait for one.
    server.script("/h", slow());
    let policy = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, SECOND));
    let caller = Caller::new(via, hedged_builder(3, 1, policy));
    let start = Instant::now();
    assert_eq!(get(&caller, &url).await.unwrap().body, "slow");
    assert_eq!(start.elapsed(), 200 * MS);
    assert_eq!(server.hits("/h"), 3);
}

/// A window of 4 calls that opens at half of them failing: two calls, each a slow 503 and a
/// hedge that fails too, are 4 failures.
async fn the_breaker_counts_every_hedge(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::status(503).delay(60 * MS)]);
    let breaker = BreakerConfig::builder()
        .window(Window::Calls(4))
        .min_calls(4)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let builder = Client::builder()
        .retry(plain(1))
        .circuit_breaker(breaker)
        .default_policy(EndpointPolicy::new().hedge(HedgeConfig::new(50 * MS, 1)));
    let caller = Caller::new(via, builder);
    let url = server.url("/h");

    for _ in 0..2 {
        let err = get(&caller, &url).await.unwrap_err();
        assert_eq!(
            summary(err.attempts()),
            [(1, status_503(), false), (2, status_503(), true)]
        );
    }
    assert_eq!(server.hits("/h"), 4);
    let err = get(&caller, &url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err}");
    assert_eq!(server.hits("/h"), 4);
}

async fn a_hedge_never_goes_past_the_deadline(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::hang()]);
    let caller = Caller::new(
        via,
        hedged_builder(3, 3, EndpointPolicy::new().deadline(120 * MS)),
    );
    let start = Instant::now();

    let err = get(&caller, &server.url("/h")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
    assert_eq!(start.elapsed(), 120 * MS);
    // The first at 0, hedges at 50 and 100 ms; none at 150.
    assert_eq!(server.hits("/h"), 3);
}

/// A call dropped while its attempts race gives back its bulkhead place.
async fn a_dropped_race_gives_back_its_place(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::ok("slow").delay(SECOND)]);
    let policy = EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, Duration::ZERO));
    let caller = Caller::new(via, hedged_builder(3, 1, policy));
    let url = server.url("/h");

    let dropped = tokio::time::timeout(80 * MS, get(&caller, &url)).await;
    assert!(dropped.is_err());
    assert_eq!(server.hits("/h"), 2);
    if let Some(guards) = caller.guards(&server) {
        assert_eq!(guards.bulkhead_in_flight(), Some(0));
    }
    server.script("/h", [Reply::ok("next")]);
    assert_eq!(get(&caller, &url).await.unwrap().body, "next");
}

/// A half-open breaker with two probe places: a call and its hedge take both; dropped while
/// they race, the call gives both back, and the next call may probe.
async fn a_dropped_race_gives_back_its_probes(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::status(503), Reply::status(503)]);
    let breaker = BreakerConfig::builder()
        .window(Window::Calls(2))
        .min_calls(2)
        .failure_rate(0.5)
        .open_for(SECOND)
        .open_for_max(SECOND)
        .half_open_probes(2)
        .build()
        .unwrap();
    let builder = Client::builder()
        .retry(plain(1))
        .circuit_breaker(breaker)
        .default_policy(EndpointPolicy::new().hedge(HedgeConfig::new(50 * MS, 1)));
    let caller = Caller::new(via, builder);
    let url = server.url("/h");
    for _ in 0..2 {
        get(&caller, &url).await.unwrap_err();
    }
    let err = get(&caller, &url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);

    tokio::time::sleep(SECOND).await;
    server.script("/h", [Reply::ok("slow").delay(SECOND)]);
    let dropped = tokio::time::timeout(80 * MS, get(&caller, &url)).await;
    assert!(dropped.is_err());
    assert_eq!(server.hits("/h"), 4);
    server.script("/h", [Reply::ok("probe")]);
    assert_eq!(get(&caller, &url).await.unwrap().body, "probe");
}

/// A hedge the rate limit keeps back spends nothing from the retry budget (it used to take
/// its budget token before asking the rate limit).
#[tokio::test(start_paused = true)]
async fn a_hedge_kept_back_by_the_rate_limit_spends_no_budget() {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::ok("slow").delay(200 * MS)]);
    let policy = EndpointPolicy::new()
        .rate_limit(RateLimitConfig::new(1, SECOND))
        .retry_budget(BudgetConfig::new(0.0, 1, SECOND));
    let caller = Caller::new(Via::Client, hedged_builder(3, 1, policy));
    assert_eq!(get(&caller, &server.url("/h")).await.unwrap().body, "slow");
    assert_eq!(server.hits("/h"), 1);
    let guards = caller.guards(&server).unwrap();
    assert_eq!(guards.budget_available(), Some(1));
}

/// What hedging buys on a server whose first answer is sometimes slow: 1,000 calls one after
/// another, every tenth first answer 1 s late, the rest 5 ms; a hedge 50 ms after the send
/// gets a 5 ms answer. Latency percentiles in virtual time, printed (`--nocapture`).
#[tokio::test(start_paused = true)]
async fn hedging_cuts_the_tail_of_a_server_with_slow_first_answers() {
    const CALLS: usize = 1000;
    let fast = || Reply::ok("x").delay(5 * MS);
    let slow = || Reply::ok("x").delay(SECOND);
    let mut percentiles = Vec::new();
    for max in [0, 1] {
        let server = FaultServer::start().await.unwrap();
        let mut script = Vec::new();
        for call in 0..CALLS {
            if call % 10 == 0 {
                script.push(slow());
                // The hedge's answer, when there is one.
                if max > 0 {
                    script.push(fast());
                }
            } else {
                script.push(fast());
            }
        }
        server.script("/t", script);
        let caller = hedged(Via::Client, 3, max);
        let url = server.url("/t");
        let mut took = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let start = Instant::now();
            get(&caller, &url).await.unwrap();
            took.push(start.elapsed());
        }
        took.sort();
        let at = |p: usize| took[(CALLS * p / 100).min(CALLS - 1)];
        eprintln!(
            "hedges {max}: p50 {:?}, p90 {:?}, p95 {:?}, p99 {:?}, max {:?}, server hits {} for {CALLS} calls",
            at(50),
            at(90),
            at(95),
            at(99),
            took[CALLS - 1],
            server.hits("/t"),
        );
        percentiles.push((at(50), at(95), took[CALLS - 1], server.hits("/t")));
    }
    let (without, with) = (percentiles[0], percentiles[1]);
    assert_eq!((without.0, with.0), (5 * MS, 5 * MS));
    assert_eq!((without.1, without.2), (SECOND, SECOND));
    assert_eq!((with.1, with.2), (55 * MS, 55 * MS));
    assert_eq!((without.3, with.3), (CALLS, CALLS + CALLS / 10));
}
