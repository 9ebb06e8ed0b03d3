//! A tour of resilient-http against an embedded fault server on 127.0.0.1 (no network needed).
//!
//! Run it with `cargo run --example demo`.

use std::time::Duration;

use resilient_http::breaker::BreakerConfig;
use resilient_http::hedge::HedgeConfig;
use resilient_http::policy::EndpointPolicy;
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
