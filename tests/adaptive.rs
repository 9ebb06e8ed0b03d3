//! Issue 26's acceptance for adaptive concurrency: against a loopback server whose latency
//! is `20 ms × max(1, in_flight / 8)` (capacity 8: 400 requests a second at 20 ms), 64
//! callers through `Client`, the limit finds the capacity (at most 16 at the server after
//! the warm-up, at least 80 % of 400 answers a second, the server's p99 within 3 × 20 ms),
//! and follows it within 5 s when it doubles. Without the limit, the same callers put all
//! 64 in the server (the run that shows the test can fail). Real time, about 16 s.
//!
//! The p99 gate is the server's latency (from a request's arrival to its answer), not the
//! callers': 64 callers in a closed loop against 400 answers a second wait 64 / 400 = 160 ms
//! a call on average whatever the limit (Little's law), so a caller's p99 within 60 ms is
//! impossible; what the limit changes is where they wait: in the client's queue, not in the
//! dependency (whose own p99 is then its unloaded latency). Both are printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_http::Client;
use resilient_http::overload::AdaptiveConcurrencyConfig;
use resilient_http::policy::EndpointPolicy;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[path = "common/load_server.rs"]
mod load_server;
use load_server::{LoadServer, UNLOADED, Visit};

mod common;
use common::{Caller, MS, SECOND, Via, builder};
use resilient_http::ErrorKind;
use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::RateLimitConfig;
use resilient_http::retry::BudgetConfig;
use resilient_http::testkit::{FaultServer, Reply};

const CALLERS: usize = 64;

/// The `adaptive concurrency limit changed` events said: (old_limit, limit) each.
#[derive(Clone, Default)]
struct Changes(Arc<Mutex<Vec<(u64, u64)>>>);

impl Changes {
    /// Keeps the events that name an `old_limit` (only that one does), for the whole test
    /// binary (its one test runs on several threads).
    fn install() -> Changes {
        use tracing_subscriber::layer::SubscriberExt;
        let changes = Changes::default();
        let only = tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_event() && meta.fields().field("old_limit").is_some()
        });
        let layer = tracing_subscriber::Layer::with_filter(changes.clone(), only);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        changes
    }

    fn taken(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Changes {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Limits(u64, u64);
        impl tracing::field::Visit for Limits {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                match field.name() {
                    "old_limit" => self.0 = value,
                    "limit" => self.1 = value,
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut limits = Limits(0, 0);
        event.record(&mut limits);
        self.0.lock().unwrap().push((limits.0, limits.1));
    }
}

fn client(adaptive: Option<AdaptiveConcurrencyConfig>) -> Client {
    let mut policy = EndpointPolicy::new().max_attempts(1).deadline(5 * SECOND);
    if let Some(adaptive) = adaptive {
        policy = policy.adaptive_concurrency(adaptive);
    }
    Client::builder().default_policy(policy).build().unwrap()
}

/// One call: when it ended, how long it took, whether it succeeded.
type Call = (Instant, Duration, bool);

/// `CALLERS` callers calling `url` in a loop until `stop`.
async fn call_until(client: &Client, url: &str, stop: Instant) -> Vec<Call> {
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let (client, url) = (client.clone(), url.to_owned());
        callers.spawn(async move {
            let mut calls = Vec::new();
            while Instant::now() < stop {
                let start = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(response) => response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                calls.push((Instant::now(), start.elapsed(), ok));
            }
            calls
        });
    }
    let mut all = Vec::new();
    while let Some(calls) = callers.join_next().await {
        all.extend(calls.unwrap());
    }
    all
}

/// The `q` quantile of `values`.
fn quantile(mut values: Vec<Duration>, q: f64) -> Duration {
    values.sort();
    let at = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len().max(1));
    values.get(at - 1).copied().unwrap_or_default()
}

/// What the server saw of `visits` over `span`: the most it held at once, its answers a
/// second, its p99.
fn served(visits: &[Visit], span: Duration) -> (u32, f64, Duration) {
    let most = visits.iter().map(|v| v.found).max().unwrap_or(0);
    let rate = visits.len() as f64 / span.as_secs_f64();
    let p99 = quantile(visits.iter().map(|v| v.took).collect(), 0.99);
    (most, rate, p99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_finds_the_capacity_and_follows_it() {
    let changes = Changes::install();
    let server = LoadServer::start(8).await;
    let url = server.url("/work");

    // Without a limit: every caller is in the server.
    let start = Instant::now();
    call_until(&client(None), &url, start + 2 * SECOND).await;
    let without = server.visits(start + SECOND, start + 2 * SECOND);
    let (most, rate, p99) = served(&without, SECOND);
    eprintln!("without a limit: at most {most} in the server, {rate:.0}/s, server p99 {p99:?}");
    assert!(most > 32, "the callers never overloaded the server: {most}");

    // With the default limit (Vegas): 8 s at capacity 8, then 6 s at 16.
    let client = client(Some(AdaptiveConcurrencyConfig::default()));
    let start = Instant::now();
    let doubled = start + 8 * SECOND;
    let end = doubled + 6 * SECOND;
    let calling = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { call_until(&client, &url, end).await })
    };
    tokio::time::sleep_until(doubled).await;
    server.set_capacity(16);
    let calls = calling.await.unwrap();

    // The limit's changes, said: from 20 down to the first capacity, then up to the second.
    let said = changes.taken();
    eprintln!("{} changes of the limit said in 14 s: {said:?}", said.len());
    assert!(
        said.first()
            .is_some_and(|(old, new)| *old == 20 && *new < 18),
        "{said:?}"
    );
    assert!(said.iter().any(|(_, new)| *new >= 16), "{said:?}");

    // After a 5 s warm-up.
    let settled = server.visits(start + 5 * SECOND, doubled);
    let (most, rate, p99) = served(&settled, 3 * SECOND);
    let mut found: Vec<u32> = settled.iter().map(|v| v.found).collect();
    found.sort_unstable();
    let at = |q: f64| found.get((found.len() as f64 * q) as usize).copied();
    eprintln!(
        "found in the server: p50 {:?}, p90 {:?}, p99 {:?}",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    let waited: Vec<Duration> = (calls.iter())
        .filter(|(at, _, _)| *at >= start + 5 * SECOND && *at < doubled)
        .map(|(_, took, _)| *took)
        .collect();
    let (calls_p50, calls_p99) = (quantile(waited.clone(), 0.5), quantile(waited, 0.99));
    let failed = calls.iter().filter(|(_, _, ok)| !ok).count();
    eprintln!(
        "capacity 8, 5 s to 8 s: at most {most} in the server, {rate:.0}/s, server p99 \
         {p99:?}; callers' p50 {calls_p50:?}, p99 {calls_p99:?}; {failed} of {} calls failed",
        calls.len()
    );
    assert!(most <= 16, "{most} in the server at once");
    assert!(rate >= 0.8 * 400.0, "{rate:.0} answers a second");
    assert!(p99 <= 3 * UNLOADED, "server p99 {p99:?}");
    assert!(failed * 100 <= calls.len(), "{failed} failed");

    // Capacity doubled: when the limit first reached the new capacity (in 100 ms steps, the
    // first whose median request found at least 16 in the server: the limit is that high,
    // as the callers always fill it), and the 2 s after the 4th second.
    let step = SECOND / 10;
    let followed = (0..60)
        .map(|i| doubled + step * i)
        .find(|from| {
            let mut found: Vec<u32> = (server.visits(*from, *from + step).iter())
                .map(|v| v.found)
                .collect();
            found.sort_unstable();
            found
                .get(found.len() / 2)
                .is_some_and(|median| *median >= 16)
        })
        .map(|at| at - doubled);
    let late = server.visits(doubled + 4 * SECOND, end);
    let (most, rate, p99) = served(&late, 2 * SECOND);
    eprintln!(
        "capacity 16: the limit reached 16 after {followed:?}; 4 s to 6 s after: at most \
         {most} in the server, {rate:.0}/s, server p99 {p99:?}"
    );
    assert!(
        followed.is_some_and(|after| after <= 5 * SECOND),
        "{followed:?}"
    );
    assert!(rate >= 0.8 * 800.0, "{rate:.0} answers a second");
    assert!(most <= 32, "{most} in the server at once");
}

/// A limit that cannot move (AIMD between 2 and 2): what the guard does with it, whatever
/// the algorithm.
fn fixed(places: u32, queue: Duration) -> AdaptiveConcurrencyConfig {
    AdaptiveConcurrencyConfig::aimd()
        .min(places)
        .max(places)
        .queue_timeout(queue)
}

/// Two places, 60 ms answers: a third call queues for a place (first come, first served),
/// and gets it after 60 ms within a 100 ms queue timeout; a fourth, with a 30 ms one, fails
/// with `BulkheadFull` naming the adaptive limit. Through the client and the middleware.
async fn a_call_over_the_limit_queues_then_is_refused(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("x").delay(60 * MS)]);
    let url = server.url("/slow");
    for (queue, want) in [(100 * MS, None), (30 * MS, Some(ErrorKind::BulkheadFull))] {
        let policy = EndpointPolicy::new().adaptive_concurrency(fixed(2, queue));
        let caller = Caller::new(via, builder(1, policy));
        let start = Instant::now();
        let mut calls = JoinSet::new();
        for _ in 0..3 {
            let (caller, url) = (caller.clone(), url.clone());
            calls.spawn(async move { caller.get(&url, None).await.map(|_| start.elapsed()) });
        }
        let mut took = Vec::new();
        let mut refused = Vec::new();
        while let Some(call) = calls.join_next().await {
            match call.unwrap() {
                Ok(after) => took.push(after),
                Err(error) => refused.push(error),
            }
        }
        took.sort();
        match want {
            None => assert_eq!(took, [60 * MS, 60 * MS, 120 * MS], "{via:?}"),
            Some(kind) => {
                assert_eq!(took, [60 * MS, 60 * MS], "{via:?}");
                assert_eq!(refused.len(), 1, "{via:?}");
                assert_eq!(refused[0].kind(), kind, "{via:?}");
                let shown = refused[0].to_string();
                assert!(shown.contains("adaptive concurrency limit"), "{shown}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_limit_queues_then_is_refused_through_the_client() {
    a_call_over_the_limit_queues_then_is_refused(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_limit_queues_then_is_refused_through_the_middleware() {
    a_call_over_the_limit_queues_then_is_refused(Via::Middleware).await;
}

/// A hedge takes a place only if one is free now, and a hedge kept back by the adaptive
/// limit spends nothing: neither the retry budget's token nor the rate limit's slot (the
/// next call goes at once, not when the slot the hedge would have taken comes round).
#[tokio::test(start_paused = true)]
async fn a_hedge_without_a_free_place_is_skipped_and_spends_nothing() {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::ok("slow").delay(200 * MS)]);
    let policy = EndpointPolicy::new()
        .adaptive_concurrency(fixed(1, SECOND))
        .rate_limit(RateLimitConfig::new(2, SECOND).burst(2))
        .retry_budget(BudgetConfig::new(0.0, 1, SECOND))
        .hedge(HedgeConfig::new(50 * MS, 1));
    let caller = Caller::new(Via::Client, builder(3, policy));
    let url = server.url("/h");
    let start = Instant::now();
    assert!(caller.get(&url, None).await.is_ok());
    assert_eq!(server.hits("/h"), 1, "the hedge went");
    let guards = caller.guards(&server).unwrap();
    assert_eq!(guards.budget_available(), Some(1));
    // The burst's second slot is still there: this call goes at once.
    assert!(caller.get(&url, None).await.is_ok());
    assert_eq!(start.elapsed(), 400 * MS);
}

/// A call cancelled while its attempt is in flight (its future dropped) gives its place
/// back: with one place and no queue, the next call gets it. Through the client and the
/// middleware.
async fn a_cancelled_call_gives_its_place_back(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/c", [Reply::ok("slow").delay(SECOND), Reply::ok("fast")]);
    let policy = EndpointPolicy::new().adaptive_concurrency(fixed(1, Duration::ZERO));
    let caller = Caller::new(via, builder(1, policy));
    let url = server.url("/c");
    let cancelled = tokio::time::timeout(100 * MS, caller.get(&url, None)).await;
    assert!(cancelled.is_err(), "{via:?}: the call was not cancelled");
    let next = caller.get(&url, None).await;
    assert!(next.is_ok(), "{via:?}: {next:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_gives_its_place_back_through_the_client() {
    a_cancelled_call_gives_its_place_back(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_gives_its_place_back_through_the_middleware() {
    a_cancelled_call_gives_its_place_back(Via::Middleware).await;
}

/// Limits that contradict each other are refused when the client is built, by the builder
/// naming the setting, by a file naming its line.
#[test]
fn contradictory_limits_are_refused_at_build() {
    let policy = EndpointPolicy::new()
        .adaptive_concurrency(AdaptiveConcurrencyConfig::default().min(50).max(10));
    let refused = Client::builder().default_policy(policy).build().err();
    let shown = refused.map(|e| e.to_string()).unwrap_or_default();
    assert!(shown.contains("adaptive_concurrency"), "{shown}");
    assert!(
        shown.contains("min must be at most max, got min 50 and max 10"),
        "{shown}"
    );
    #[cfg(feature = "config")]
    {
        let text = "[default]\nmax_attempts = 2\n[default.adaptive_concurrency]\nmin = 4\n\
                    initial = 2\n";
        let refused = Client::builder().config_toml(text).build().err();
        let shown = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(shown.contains("<config_toml>:5"), "{shown}");
        assert!(
            shown.contains("initial must be within min and max (4 to 200), got 2"),
            "{shown}"
        );
    }
}

/// An attempt the breaker turns away after it took its place gives the place back at once,
/// not when its call's future is dropped: a caller may keep a finished future (`select!` over
/// `&mut pending`). With one place, the next call meets the open breaker, not a full limit
/// (it failed with `BulkheadFull` while the finished future was kept).
#[tokio::test]
async fn an_attempt_the_breaker_refuses_gives_its_place_back() {
    use resilient_http::breaker::{BreakerConfig, Window};
    use resilient_http::retry::RetryPolicy;
    let server = FaultServer::start().await.unwrap();
    server.script("/down", (0..10).map(|_| Reply::status(500)));
    let breaker = BreakerConfig::builder()
        .window(Window::Calls(4))
        .min_calls(2)
        .failure_rate(0.5)
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .circuit_breaker(breaker)
        .default_policy(EndpointPolicy::new().adaptive_concurrency(fixed(1, 200 * MS)))
        .build()
        .unwrap();
    let url = server.url("/down");
    for _ in 0..3 {
        let _ = client.get(&url).send().await;
    }
    let key = format!("http://{}", server.addr());
    let guards = client.overload("default", &key).expect("guards");
    let mut pending = Box::pin(client.get(&url).send());
    let refused = (&mut pending).await.expect_err("the breaker is open");
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
    assert_eq!(guards.adaptive_in_flight(), Some(0));
    let next = client
        .get(&url)
        .send()
        .await
        .expect_err("the breaker is open");
    assert_eq!(next.kind(), ErrorKind::CircuitOpen, "{next}");
    drop(pending);
}

/// An attempt meets the adaptive limit before the rate limit: one that finds no place spends
/// no rate-limit slot, so the next call goes at once when the place comes free (it waited
/// 300 ms for the slot the refused attempt had taken). Through the client and the middleware.
async fn an_attempt_without_a_place_spends_no_rate_limit_slot(via: Via) {
    let server = FaultServer::start().await.unwrap();
    server.script("/s", [Reply::ok("slow").delay(200 * MS)]);
    let policy = EndpointPolicy::new()
        .adaptive_concurrency(fixed(1, Duration::ZERO))
        .rate_limit(RateLimitConfig::new(2, SECOND).burst(2));
    let caller = Arc::new(Caller::new(via, builder(1, policy)));
    let url = server.url("/s");
    let start = Instant::now();
    let first = {
        let (caller, url) = (caller.clone(), url.clone());
        tokio::spawn(async move { caller.get(&url, None).await })
    };
    tokio::time::sleep(10 * MS).await;
    let refused = caller.get(&url, None).await.expect_err("no place");
    assert_eq!(refused.kind(), ErrorKind::BulkheadFull, "{refused}");
    assert!(first.await.unwrap().is_ok());
    assert!(caller.get(&url, None).await.is_ok());
    assert_eq!(start.elapsed(), 400 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_without_a_place_spends_no_rate_limit_slot_through_the_client() {
    an_attempt_without_a_place_spends_no_rate_limit_slot(Via::Client).await;
}

#[tokio::test(start_paused = true)]
async fn an_attempt_without_a_place_spends_no_rate_limit_slot_through_the_middleware() {
    an_attempt_without_a_place_spends_no_rate_limit_slot(Via::Middleware).await;
}
