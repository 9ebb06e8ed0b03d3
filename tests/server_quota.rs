//! Following the quota a server advertises, end to end: a loopback server that enforces a
//! fixed window of 10 requests per 2 s and says so on every answer (IETF fields,
//! `X-RateLimit-*` with the reset in seconds, or as epoch seconds), 60 calls at
//! concurrency 8 through the client, on paused time. Following it (the default, `hold`),
//! the server answers no 429; not following it (`off`), it answers many; pacing it, the
//! requests are spread over each window.

use std::sync::Arc;
use std::time::Duration;

use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::ServerQuotaConfig;
use resilient_http::policy::{EndpointPolicy, Scope};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[path = "common/quota_server.rs"]
mod quota_server;
use quota_server::{QuotaServer, Style};

const SECOND: Duration = Duration::from_secs(1);
const QUOTA: u64 = 10;
const WINDOW: Duration = Duration::from_secs(2);
const CALLS: usize = 60;
const CONCURRENCY: usize = 8;
const DEADLINE: Duration = Duration::from_secs(10);

fn client(quota: ServerQuotaConfig) -> Client {
    Client::builder()
        .default_policy(EndpointPolicy::new().server_quota(quota))
        .build()
        .unwrap()
}

/// What 60 calls at concurrency 8, each within `DEADLINE`, came to: the calls that
/// succeeded, and the longest a call took.
async fn run(client: &Client, url: &str) -> (usize, Duration) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut calls = JoinSet::new();
    for _ in 0..CALLS {
        let (client, url, permits) = (client.clone(), url.to_owned(), permits.clone());
        calls.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let start = Instant::now();
            let result = client.get(&url).deadline(DEADLINE).send().await;
            let ok = match result {
                Ok(response) => response.status().is_success() && response.text().await.is_ok(),
                Err(_) => false,
            };
            (ok, start.elapsed())
        });
    }
    let (mut succeeded, mut longest) = (0, Duration::ZERO);
    while let Some(joined) = calls.join_next().await {
        let (ok, took) = joined.unwrap();
        succeeded += usize::from(ok);
        longest = longest.max(took);
    }
    (succeeded, longest)
}

async fn followed_without_a_429(style: Style) {
    let server = QuotaServer::start(QUOTA, WINDOW, style).await;
    let client = client(ServerQuotaConfig::hold());
    let (succeeded, longest) = run(&client, &server.url("/q")).await;
    assert_eq!(server.rejected(), 0, "{style:?}: {:?}", server.statuses());
    assert_eq!(succeeded, CALLS, "{style:?}");
    assert!(longest < DEADLINE, "{style:?}: {longest:?}");
    assert_eq!(
        server.statuses().len(),
        CALLS,
        "{style:?}: one request a call"
    );
}

#[tokio::test(start_paused = true)]
async fn the_ietf_fields_are_followed_without_a_429() {
    followed_without_a_429(Style::Ietf).await;
}

#[tokio::test(start_paused = true)]
async fn x_ratelimit_with_a_reset_in_seconds_is_followed_without_a_429() {
    followed_without_a_429(Style::XSeconds).await;
}

#[tokio::test(start_paused = true)]
async fn x_ratelimit_with_an_epoch_reset_is_followed_without_a_429() {
    followed_without_a_429(Style::XEpoch).await;
}

#[tokio::test(start_paused = true)]
async fn not_followed_the_server_answers_many_429s() {
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let client = client(ServerQuotaConfig::off());
    run(&client, &server.url("/q")).await;
    assert!(server.rejected() >= 10, "{:?}", server.statuses());
}

#[tokio::test(start_paused = true)]
async fn paced_no_second_sends_more_than_the_quota_and_one() {
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let client = client(ServerQuotaConfig::pace());
    let (succeeded, _) = run(&client, &server.url("/q")).await;
    assert_eq!(server.rejected(), 0, "{:?}", server.statuses());
    assert_eq!(succeeded, CALLS);
    let most = server.most_within(SECOND, Duration::ZERO);
    assert!(most <= QUOTA as usize + 1, "{most} within a second");
    // Spread, not in bursts: after the first window (whose first 8 go before anything is
    // known), about half the quota a second (a window's 10 over its 2 s), where holding
    // sends each window's 10 at its start.
    let most = server.most_within(SECOND, WINDOW);
    assert!(most <= QUOTA as usize * 3 / 4, "{most} within a second");
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_past_the_deadline_is_refused_at_once_naming_it() {
    let server = QuotaServer::start(QUOTA, WINDOW, Style::Ietf).await;
    let client = client(ServerQuotaConfig::hold());
    let url = server.url("/q");
    for _ in 0..QUOTA {
        client.get(&url).send().await.unwrap();
    }
    let start = Instant::now();
    let error = client.get(&url).deadline(SECOND).send().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error}");
    assert_eq!(error.retry_after(), Some(WINDOW));
    let message = error.to_string();
    assert!(
        message.contains("the server's quota is spent (0 of 10 left, policy \"default\")"),
        "{message}"
    );
    assert_eq!(server.statuses().len(), QUOTA as usize, "nothing sent");
    // Within the deadline, the call waits for the reset, and goes.
    let response = client.get(&url).deadline(3 * SECOND).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(start.elapsed() >= WINDOW);
    assert_eq!(server.rejected(), 0);
}

/// An answer advertising `remaining` requests left in a window of `q` resetting in `t`
/// seconds (IETF fields).
fn advertising(reply: Reply, q: u64, remaining: u64, t: u64) -> Reply {
    reply
        .header("ratelimit-policy", format!("\"default\";q={q};w={t}"))
        .header("ratelimit", format!("\"default\";r={remaining};t={t}"))
}

#[tokio::test(start_paused = true)]
async fn a_429_with_quota_fields_teaches_the_quota_beside_its_retry_after() {
    let server = FaultServer::start().await.unwrap();
    let spent = advertising(Reply::status(429).retry_after_secs(1), 10, 0, 5);
    server.script("/q", [spent, Reply::ok("x")]);
    let client = Client::builder()
        .default_policy(EndpointPolicy::new().max_attempts(2))
        .build()
        .unwrap();
    let start = Instant::now();
    let response = client.get(server.url("/q")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The retry waited for the quota's reset (5 s), past the 1 s the `Retry-After` asked.
    assert_eq!(start.elapsed(), 5 * SECOND);
    assert_eq!(server.hits("/q"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_is_kept_back_while_the_quota_is_spent() {
    let server = FaultServer::start().await.unwrap();
    let slow = advertising(
        Reply::ok("slow").delay(500 * Duration::from_millis(1)),
        10,
        0,
        10,
    );
    server.script("/h", [advertising(Reply::ok("x"), 10, 1, 10), slow]);
    let policy = EndpointPolicy::new()
        .max_attempts(3)
        .hedge(HedgeConfig::new(Duration::from_millis(100), 1));
    let client = Client::builder().default_policy(policy).build().unwrap();
    let url = server.url("/h");
    client.get(&url).send().await.unwrap();
    // One left: the second call takes it; its hedge, due at 100 ms, would overshoot.
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "slow");
    assert_eq!(server.hits("/h"), 2, "no hedge");
}

#[tokio::test(start_paused = true)]
async fn a_rule_scope_is_one_view_of_the_quota_for_every_host() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/r",
        [advertising(Reply::ok("x"), 10, 0, 3), Reply::ok("x")],
    );
    let local = format!("http://localhost:{}/r", server.addr().port());
    let by_host = EndpointPolicy::new().server_quota_scope(Scope::Host);
    let by_rule = EndpointPolicy::new().server_quota_scope(Scope::Rule);
    // Unset, the scope is the hold's.
    let as_held = EndpointPolicy::new().hold_scope(Scope::Rule);
    for (scope, policy, waited) in [
        ("host", by_host, Duration::ZERO),
        ("rule", by_rule, 3 * SECOND),
        ("the hold's", as_held, 3 * SECOND),
    ] {
        let client = Client::builder().default_policy(policy).build().unwrap();
        client.get(server.url("/r")).send().await.unwrap();
        // The same server, under another endpoint key: held only if the scope is the rule.
        let start = Instant::now();
        client.get(&local).send().await.unwrap();
        assert_eq!(start.elapsed(), waited, "{scope}");
        server.script(
            "/r",
            [advertising(Reply::ok("x"), 10, 0, 3), Reply::ok("x")],
        );
    }
}
