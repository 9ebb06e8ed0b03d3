//! A tour of resilient-http against an embedded fault server on 127.0.0.1 (no network needed).
//!
//! Run it with `cargo run --example demo`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use resilient_http::breaker::BreakerConfig;
use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::{AdaptiveConcurrencyConfig, Criticality, ThrottleConfig};
use resilient_http::policy::{EndpointPolicy, Matcher, Scope};
use resilient_http::retry::{RetryHistory, RetryPolicy};
use resilient_http::testkit::{ClosedPort, FaultServer, Reply};
use resilient_http::{Client, Error, ErrorKind};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = FaultServer::start().await?;
    let client = Client::builder()
        .attempt_timeout(Duration::from_millis(500))
        .deadline(Duration::from_secs(5))
        .build()?;

    section("1. A transient failure: the server answers 503, 503, then 200; one call succeeds");
    server.script(
        "/inventory",
        [
            Reply::status(503),
            Reply::status(503),
            Reply::ok("42 widgets"),
        ],
    );
    let response = client.get(server.url("/inventory")).send().await?;
    show_history(&response);
    println!("ok: {}", response.text().await?);

    section("2. A permanent failure: 404 comes back at once as a typed error");
    server.script("/orders/7", [Reply::status(404).body("no such order")]);
    match client.get(server.url("/orders/7")).send().await {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(mut err) => {
            show(&err);
            if let Some(response) = err.take_response() {
                println!("body kept for diagnostics: {:?}", response.text().await?);
            }
        }
    }

    section("3. Headers arrive, then the body stalls: the attempt timeout still fires");
    server.script("/report", [Reply::stall_body(200, "{\"rows\": [")]);
    let started = tokio::time::Instant::now();
    let response = client.get(server.url("/report")).send().await?;
    println!(
        "headers after {:.0?}: {}",
        started.elapsed(),
        response.status()
    );
    match response.bytes().await {
        Ok(body) => println!("unexpected body of {} bytes", body.len()),
        Err(body_error) => {
            println!("body read failed after {:.0?}", started.elapsed());
            show(&Error::from(body_error));
        }
    }

    section("3b. The body is cut off once, then served whole: read inside the attempt, retried");
    server.script(
        "/export",
        [
            Reply::body_then_reset(200, "id,name\n1,ada\n"),
            Reply::ok("id,name\n1,ada\n2,grace\n"),
        ],
    );
    let response = client.get(server.url("/export")).send_buffered().await?;
    show_history(&response);
    println!("ok: {:?}", response.text().await?);

    section("4. Nobody listening: never reached the server, so retried (3 attempts)");
    let closed = ClosedPort::bind()?;
    match client.get(closed.url("/health")).send().await {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(err) => show(&err),
    }

    section("5. A POST answered 503 is not retried: it may have been processed");
    server.script("/pay", [Reply::status(503), Reply::ok("paid")]);
    match client
        .post(server.url("/pay"))
        .body("{\"amount\": 10}")
        .send()
        .await
    {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(err) => show(&err),
    }
    println!("the server saw /pay {}x", server.hits("/pay"));

    section("6. The same POST with an Idempotency-Key is retried, with the same key");
    server.script("/pay-keyed", [Reply::status(503), Reply::ok("paid")]);
    let response = client
        .post(server.url("/pay-keyed"))
        .header("Idempotency-Key", "order-7-payment")
        .body("{\"amount\": 10}")
        .send()
        .await?;
    println!("ok: {}", response.text().await?);
    for request in server.requests("/pay-keyed") {
        println!(
            "  server got Idempotency-Key {:?}",
            request.headers["idempotency-key"]
        );
    }

    section("7. 429 with Retry-After: 1 is obeyed instead of the backoff");
    server.script(
        "/search",
        [Reply::status(429).retry_after_secs(1), Reply::ok("results")],
    );
    let started = tokio::time::Instant::now();
    let response = client.get(server.url("/search")).send().await?;
    println!(
        "ok after {:.2?}: {}",
        started.elapsed(),
        response.text().await?
    );

    section("8. Retry-After: 3600 is above the 20 s cap: no retry, the caller learns the delay");
    server.script("/batch", [Reply::status(503).retry_after_secs(3600)]);
    match client.get(server.url("/batch")).send().await {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(err) => show(&err),
    }

    section("9. A dependency goes down: the circuit breaker opens, probes, and recovers");
    let guarded = Client::builder()
        .retry(RetryPolicy::never())
        .circuit_breaker(
            BreakerConfig::builder()
                .min_calls(4)
                .open_for(Duration::from_millis(500))
                .open_for_max(Duration::from_secs(5))
                .build()?,
        )
        .build()?;
    server.script("/quotes", [Reply::status(503)]);
    let key = format!("http://{}", server.addr());
    for call in 1..=7 {
        let outcome = match guarded.get(server.url("/quotes")).send().await {
            Ok(response) => response.status().to_string(),
            Err(err) => err.to_string(),
        };
        let state = breaker_state(&guarded, &key);
        println!(
            "call {call}: server hits {}, breaker {state}\n    {outcome}",
            server.hits("/quotes")
        );
    }
    println!("(calls 5 to 7 never reached the server)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.script("/quotes", [Reply::ok("EUR/USD 1.08")]);
    let response = guarded.get(server.url("/quotes")).send().await?;
    let state = breaker_state(&guarded, &key);
    println!(
        "after 500 ms the probe goes through: {} -> breaker {state}",
        response.text().await?
    );

    section("10. A short outage, and the retry budget capping the extra load");
    // The breaker would stop these calls by itself: off here, so the budget is seen alone.
    // Short backoffs keep this quick; the counts do not depend on them.
    server.script("/prices", [Reply::status(503)]);
    let outage_client = |budget: bool| {
        Client::builder()
            .default_policy(
                EndpointPolicy::new()
                    .breaker_enabled(false)
                    .retry_budget_enabled(budget)
                    .backoff_base(Duration::from_millis(1))
                    .backoff_max(Duration::from_millis(5)),
            )
            .build()
    };
    for (label, budget) in [
        ("with the default budget", true),
        ("without a budget", false),
    ] {
        let before = server.hits("/prices");
        let started = tokio::time::Instant::now();
        let cut_short = storm(&outage_client(budget)?, &server.url("/prices")).await;
        let hits = server.hits("/prices") - before;
        println!(
            "{label:>23}: {STORM} requests, {hits} server hits ({:.2}x); {cut_short} ended BudgetExhausted, in {:.1?}",
            hits as f64 / STORM as f64,
            started.elapsed()
        );
    }
    println!(
        "(the default budget: retries may add 20 % of the requests, {}, plus 10 a second over its 10 s window, 100)",
        STORM / 5
    );

    section(
        "11. One 429 with Retry-After: 1 holds the endpoint: the next calls wait instead of going out",
    );
    server.script(
        "/rates",
        [
            Reply::status(429).retry_after_secs(1),
            Reply::ok("EUR 1.08"),
        ],
    );
    let held = Client::builder().build()?;
    match held.get(server.url("/rates")).no_retry().send().await {
        Ok(response) => println!("unexpected: {}", response.status()),
        Err(err) => println!("call 1: {err}\n  retry_after={:?}", err.retry_after()),
    }
    let started = tokio::time::Instant::now();
    let mut waiting = tokio::task::JoinSet::new();
    for call in 2..=6 {
        let (held, url) = (held.clone(), server.url("/rates"));
        waiting.spawn(async move { (call, held.get(url).send().await) });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "after 0.5 s, 5 more calls made: the server has seen /rates {}x",
        server.hits("/rates")
    );
    let mut results = waiting.join_all().await;
    results.sort_by_key(|(call, _)| *call);
    for (call, result) in results {
        match result {
            Ok(response) => println!(
                "call {call}: {} after {:.1?}",
                response.status(),
                started.elapsed()
            ),
            Err(err) => println!("call {call}: {err}"),
        }
    }

    section(
        "12. One slow server: a hedge after 50 ms answers first, and the slow attempt is dropped",
    );
    server.script(
        "/search",
        [
            Reply::ok("slow results").delay(Duration::from_secs(2)),
            Reply::ok("results"),
        ],
    );
    let hedging = Client::builder()
        .default_policy(EndpointPolicy::new().hedge(HedgeConfig::new(Duration::from_millis(50), 1)))
        .build()?;
    let started = tokio::time::Instant::now();
    let response = hedging.get(server.url("/search")).send().await?;
    show_history(&response);
    println!(
        "ok after {:.0?}: {}",
        started.elapsed(),
        response.text().await?
    );
    server.script(
        "/search",
        [Reply::ok("slow").delay(Duration::from_millis(300))],
    );
    match hedging.post(server.url("/search")).send().await {
        Ok(response) => println!(
            "a POST without an Idempotency-Key is never hedged: {} after one attempt",
            response.status()
        ),
        Err(err) => show(&err),
    }

    section(
        "13. The server says what is left of its quota: at 0 the client holds until the reset, instead of drawing a 429",
    );
    // GitHub's fields: 3 requests per window, reset in 1 s (seconds from now: below 1e9).
    let quota = |left: u32, body: &'static str| {
        Reply::ok(body)
            .header("x-ratelimit-limit", "3")
            .header("x-ratelimit-remaining", left.to_string())
            .header("x-ratelimit-reset", "1")
    };
    server.script(
        "/feed",
        [quota(2, "a"), quota(1, "b"), quota(0, "c"), quota(2, "d")],
    );
    // Followed by default (`follow = "hold"`, `headers = "auto"`): nothing to configure.
    let polite = Client::builder().build()?;
    let started = tokio::time::Instant::now();
    for call in 1..=4 {
        let outcome = match polite.get(server.url("/feed")).send().await {
            Ok(response) => response.status().to_string(),
            Err(err) => err.to_string(),
        };
        let guards = polite.overload("default", &key);
        let left = guards.as_ref().and_then(|g| g.server_quota_remaining());
        let reset = guards.as_ref().and_then(|g| g.server_quota_reset());
        println!(
            "call {call}: {outcome} after {:.1?}; quota left {left:?}, reset in {reset:?}",
            started.elapsed()
        );
    }
    println!(
        "(a call that finds the quota spent waits for its reset, as for a Retry-After; none drew a 429)"
    );

    adaptive_concurrency().await?;
    throttling().await?;

    println!(
        "\nthe server saw: /inventory {}x, /orders/7 {}x, /report {}x, /export {}x, /pay {}x, /pay-keyed {}x, /search {}x, /batch {}x, /quotes {}x",
        server.hits("/inventory"),
        server.hits("/orders/7"),
        server.hits("/report"),
        server.hits("/export"),
        server.hits("/pay"),
        server.hits("/pay-keyed"),
        server.hits("/search"),
        server.hits("/batch"),
        server.hits("/quotes"),
    );
    println!(
        "                /prices {}x, /rates {}x, /feed {}x",
        server.hits("/prices"),
        server.hits("/rates"),
        server.hits("/feed"),
    );
    Ok(())
}

/// Section 14: 64 callers against a dependency whose latency grows past its capacity; the
/// adaptive limit settles near that capacity, and the dependency's queue with it.
async fn adaptive_concurrency() -> Result<(), Box<dyn std::error::Error>> {
    section(
        "14. A dependency whose latency grows with its load (capacity 8 at 20 ms): 64 callers, without and with an adaptive limit",
    );
    let dependency = Dependency::start().await?;
    let url = format!("http://{}/work", dependency.addr);
    let key = format!("http://{}", dependency.addr);
    for adaptive in [false, true] {
        let policy = EndpointPolicy::new().max_attempts(1);
        let policy = if adaptive {
            let limit = AdaptiveConcurrencyConfig::default()
                .initial(20)
                .min(2)
                .max(64);
            policy.adaptive_concurrency(limit)
        } else {
            policy
        };
        let client = Client::builder().default_policy(policy).build()?;
        let label = if adaptive {
            "adaptive limit"
        } else {
            "no limit"
        };
        dependency.reset();
        let run = Duration::from_secs(if adaptive { 4 } else { 1 });
        let stop = tokio::time::Instant::now() + run;
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (client, url) = (client.clone(), url.clone());
            callers.spawn(async move {
                let mut waited = Vec::new();
                while tokio::time::Instant::now() < stop {
                    let started = tokio::time::Instant::now();
                    if client.get(&url).send().await.is_ok() {
                        waited.push(started.elapsed());
                    }
                }
                waited
            });
        }
        let started = tokio::time::Instant::now();
        while tokio::time::Instant::now() < stop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let guards = client.overload("default", &key);
            let limit = match guards.as_ref().and_then(|g| g.adaptive_limit()) {
                Some(limit) => format!(
                    "limit {limit}, {} attempts under it, {} queueing; ",
                    guards
                        .as_ref()
                        .and_then(|g| g.adaptive_in_flight())
                        .unwrap_or(0),
                    guards
                        .as_ref()
                        .and_then(|g| g.adaptive_waiting())
                        .unwrap_or(0),
                ),
                None => String::new(),
            };
            println!(
                "  {label} at {:.1?}: {limit}the dependency has {} in flight",
                started.elapsed(),
                dependency.in_flight.load(Relaxed),
            );
        }
        let mut waited: Vec<Duration> = callers.join_all().await.concat();
        let took = started.elapsed();
        println!(
            "  {label}: {:.0} requests/s; p99 at the dependency {:.0?} (unloaded: 20 ms), at the callers {:.0?}; at most {} in flight at the dependency",
            waited.len() as f64 / took.as_secs_f64(),
            p99(&mut dependency.latencies()),
            p99(&mut waited),
            dependency.peak.load(Relaxed),
        );
    }
    println!(
        "(the limit is found from the latency alone: nobody told the client the capacity. The callers wait as long \
         either way, 64 of them sharing 400 answers a second; with the limit they wait in the client, where a \
         deadline or a bulkhead can act on it, instead of in the dependency's queue)"
    );
    Ok(())
}

/// Section 15: a dependency that accepts 10 requests a second and rejects the rest with
/// 503, offered 100 a second: client-side throttling keeps what reaches it near K times what
/// it accepts, critical work first.
async fn throttling() -> Result<(), Box<dyn std::error::Error>> {
    section(
        "15. A dependency that accepts 10 requests/s and answers 503 beyond: 100 requests/s offered, without and with client-side throttling",
    );
    let dependency = Dependency::start().await?;
    let key = format!("http://{}", dependency.addr);
    let scope = Scope::named("limited")?;
    for throttled in [false, true] {
        // One attempt, no breaker (it would stop the calls by itself): throttling alone. One
        // throttle for the dependency's host, shared by three rules: reports are sheddable,
        // checkouts critical, the rest default.
        let policy = |criticality| {
            let policy = EndpointPolicy::new()
                .max_attempts(1)
                .breaker_enabled(false)
                .criticality(criticality);
            if throttled {
                let window = Duration::from_secs(2);
                policy
                    .throttle(ThrottleConfig::new().k(2.0).window(window))
                    .throttle_scope(scope.clone())
            } else {
                policy
            }
        };
        let client = Client::builder()
            .default_policy(policy(Criticality::Default))
            .endpoint(
                "reports",
                Matcher::new().path("/limited/reports"),
                policy(Criticality::Sheddable),
            )
            .endpoint(
                "checkout",
                Matcher::new().path("/limited/checkout"),
                policy(Criticality::Critical),
            )
            .build()?;
        let label = if throttled {
            "throttling"
        } else {
            "no throttling"
        };
        dependency.reset();
        let mut sent = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let seconds = if throttled { 4 } else { 1 };
        for n in 0..seconds * 100 {
            tick.tick().await;
            let path = ["/limited/reports", "/limited/other", "/limited/checkout"][n % 3];
            let (caller, url) = (client.clone(), format!("http://{}{path}", dependency.addr));
            sent.spawn(async move { (path, caller.get(url).send().await) });
            if n % 100 == 99 {
                let guards = client.overload("default", &key);
                let probability = |criticality| {
                    (guards.as_ref())
                        .and_then(|g| g.throttle_probability(criticality))
                        .map_or("-".to_owned(), |p| format!("{:.0} %", p * 100.0))
                };
                println!(
                    "  {label} after {} s: {} offered, {} reached the dependency, {} accepted; \
                     throttled with probability {} (sheddable), {} (default), {} (critical)",
                    n / 100 + 1,
                    n + 1,
                    dependency.hits.load(Relaxed),
                    dependency.accepted.load(Relaxed),
                    probability(Criticality::Sheddable),
                    probability(Criticality::Default),
                    probability(Criticality::Critical),
                );
            }
        }
        let mut outcomes = std::collections::BTreeMap::<&str, [u32; 3]>::new();
        for (path, result) in sent.join_all().await {
            let counts = outcomes.entry(path).or_default();
            match result {
                Ok(_) => counts[0] += 1,
                Err(err) if err.kind() == ErrorKind::Throttled => counts[2] += 1,
                Err(_) => counts[1] += 1,
            }
        }
        for (path, [ok, rejected, throttled]) in outcomes {
            println!(
                "    {path}: {ok} ok, {rejected} rejected by the dependency, {throttled} throttled locally"
            );
        }
    }
    println!(
        "(with throttling, what reaches the dependency falls towards K = 2 times what it accepts once the first \
         window has passed, instead of everything offered; what the dependency accepts goes to critical work \
         first, and sheddable work is shed first)"
    );
    Ok(())
}

/// A loopback dependency with two routes: `/work`, whose latency is 20 ms while it has at
/// most 8 requests in flight and grows in proportion beyond (`20 ms × in_flight / 8`), and
/// `/limited/...`, which accepts 10 requests a second and answers 503 beyond.
struct Dependency {
    addr: SocketAddr,
    in_flight: Arc<AtomicU32>,
    peak: Arc<AtomicU32>,
    hits: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    // The limited route's window: the second (since the start) in the high half, what it
    // accepted in that second in the low half.
    window: Arc<AtomicU64>,
    // How long each `/work` request took at the dependency.
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Dependency {
    async fn start() -> std::io::Result<Dependency> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let dependency = Dependency {
            addr: listener.local_addr()?,
            in_flight: Arc::default(),
            peak: Arc::default(),
            hits: Arc::default(),
            accepted: Arc::default(),
            window: Arc::default(),
            latencies: Arc::default(),
        };
        let shared = dependency.shared();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.shared();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.shared();
                    let path = request.uri().path().to_owned();
                    async move { Ok::<_, Infallible>(shared.answer(&path, start).await) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Ok(dependency)
    }

    /// Another handle on the same counters.
    fn shared(&self) -> Dependency {
        Dependency {
            addr: self.addr,
            in_flight: self.in_flight.clone(),
            peak: self.peak.clone(),
            hits: self.hits.clone(),
            accepted: self.accepted.clone(),
            window: self.window.clone(),
            latencies: self.latencies.clone(),
        }
    }

    /// How long each `/work` request took at the dependency, since the last reset.
    fn latencies(&self) -> Vec<Duration> {
        self.latencies.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn reset(&self) {
        for counter in [&self.hits, &self.accepted, &self.window] {
            counter.store(0, Relaxed);
        }
        self.peak.store(0, Relaxed);
        if let Ok(mut latencies) = self.latencies.lock() {
            latencies.clear();
        }
    }

    async fn answer(
        &self,
        path: &str,
        start: tokio::time::Instant,
    ) -> hyper::Response<Full<Bytes>> {
        let status = if path == "/work" {
            let in_flight = self.in_flight.fetch_add(1, Relaxed) + 1;
            self.peak.fetch_max(in_flight, Relaxed);
            let latency = Duration::from_millis(20) * in_flight.max(8) / 8;
            tokio::time::sleep(latency).await;
            self.in_flight.fetch_sub(1, Relaxed);
            if let Ok(mut latencies) = self.latencies.lock() {
                latencies.push(latency);
            }
            200
        } else {
            self.hits.fetch_add(1, Relaxed);
            let second = start.elapsed().as_secs();
            let accept = self
                .window
                .fetch_update(Relaxed, Relaxed, |word| {
                    let (at, taken) = (word >> 32, word & 0xffff_ffff);
                    match (at == second, taken < 10) {
                        (false, _) => Some(second << 32 | 1),
                        (true, true) => Some(word + 1),
                        (true, false) => None,
                    }
                })
                .is_ok();
            if accept {
                self.accepted.fetch_add(1, Relaxed);
                200
            } else {
                503
            }
        };
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        response
    }
}

/// The 99th percentile of `latencies`.
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    let at = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
    latencies.get(at).copied().unwrap_or_default()
}

/// Requests the demo's outage sends, 16 at a time.
const STORM: usize = 2000;

/// [`STORM`] GETs to `url`, 16 at a time; returns how many the retry budget cut short.
async fn storm(client: &Client, url: &str) -> usize {
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let (client, url) = (client.clone(), url.to_owned());
        workers.spawn(async move {
            let mut cut_short = 0;
            for _ in (worker..STORM).step_by(16) {
                if let Err(err) = client.get(&url).send().await {
                    cut_short += usize::from(err.kind() == ErrorKind::BudgetExhausted);
                }
            }
            cut_short
        });
    }
    workers.join_all().await.into_iter().sum()
}

fn breaker_state(client: &Client, key: &str) -> String {
    client
        .breakers()
        .and_then(|breakers| breakers.get(key))
        .map_or_else(|| "none".to_owned(), |b| format!("{:?}", b.state()))
}

fn show_history(response: &reqwest::Response) {
    if let Some(RetryHistory(attempts)) = response.extensions().get::<RetryHistory>() {
        for attempt in attempts {
            println!("  attempt {attempt}");
        }
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn show(err: &Error) {
    println!("error: {err}");
    println!(
        "  kind={:?} transient={} timeout={} connect={} delivery={} status={:?} retry_after={:?}",
        err.kind(),
        err.is_transient(),
        err.is_timeout(),
        err.is_connect(),
        err.delivery(),
        err.status().map(|s| s.as_u16()),
        err.retry_after(),
    );
    for attempt in err.attempts() {
        println!("  attempt {attempt}");
    }
}
