//! Policies reloaded on a live client (`Client::reload`): later calls follow the new ones,
//! calls in flight finish on theirs, what the endpoints taught the client stays where the
//! settings did not change, and a bad reload changes nothing. Against the loopback fault
//! server, with tokio's clock paused.
#![cfg(feature = "config")]

use std::time::Duration;

use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};
use tokio::time::Instant;
use tower::ServiceExt;

const MS: Duration = Duration::from_millis(1);

/// A client from policy file text alone, with no jitter so that waits are exact.
fn from_toml(text: &str) -> resilient_http::ClientBuilder {
    Client::builder().config_toml(&format!("{text}\n[default.backoff]\njitter = \"none\"\n"))
}

#[tokio::test(start_paused = true)]
async fn later_calls_follow_the_new_policies() {
    let server = FaultServer::start().await.unwrap();
    let url = server.url("/r");
    let client = from_toml("[default]\nmax_attempts = 1").build().unwrap();
    server.script("/r", [Reply::status(503), Reply::ok("x")]);
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);

    client
        .reload(from_toml("[default]\nmax_attempts = 3"))
        .unwrap();
    server.script("/r", [Reply::status(503), Reply::ok("x")]);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(server.hits("/r"), 3);

    // The tower service and the clones of the client follow too.
    client
        .reload(from_toml("[default]\nmax_attempts = 1"))
        .unwrap();
    server.script("/r", [Reply::status(503), Reply::ok("x")]);
    let request = reqwest::Request::new(http::Method::GET, url.parse().unwrap());
    let err = client.service().oneshot(request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    let clone = client.clone();
    client
        .reload(from_toml("[default]\nmax_attempts = 2"))
        .unwrap();
    assert_eq!(clone.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_finishes_on_its_policy() {
    let server = FaultServer::start().await.unwrap();
    let url = server.url("/r");
    server.script(
        "/r",
        [
            Reply::status(503).delay(50 * MS),
            Reply::status(503),
            Reply::ok("x"),
        ],
    );
    let client = from_toml("[default]\nmax_attempts = 3").build().unwrap();
    let call = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(&url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(10 * MS).await;
    client
        .reload(from_toml("[default]\nmax_attempts = 1"))
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 200);
    assert_eq!(server.hits("/r"), 3);
}

/// An open breaker stays open across a reload that keeps its settings, and starts closed
/// after one that changes them.
#[tokio::test(start_paused = true)]
async fn an_open_breaker_stays_open_unless_its_settings_change() {
    let server = FaultServer::start().await.unwrap();
    let url = server.url("/down");
    server.script("/down", [Reply::status(503)]);
    let breaker = "[default.breaker]\nwindow = 2\nmin_calls = 2\nopen_for = \"60s\"\n";
    let client = from_toml(&format!("[default]\nmax_attempts = 1\n{breaker}"))
        .build()
        .unwrap();
    for _ in 0..2 {
        client.get(&url).send().await.unwrap_err();
    }
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);

    // Other settings change; the breaker's do not.
    client
        .reload(from_toml(&format!(
            "[default]\nmax_attempts = 2\n{breaker}"
        )))
        .unwrap();
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(server.hits("/down"), 2);

    client
        .reload(from_toml(
            "[default]\nmax_attempts = 1\n[default.breaker]\nwindow = 3\nmin_calls = 3\n",
        ))
        .unwrap();
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(server.hits("/down"), 3);
}

/// A `Retry-After` hold and a spent retry budget stay across a reload of other settings.
#[tokio::test(start_paused = true)]
async fn holds_and_budgets_stay_across_a_reload() {
    let server = FaultServer::start().await.unwrap();
    let url = server.url("/h");
    server.script(
        "/h",
        [Reply::status(429).retry_after_secs(2), Reply::ok("x")],
    );
    let budget = "[default.retry_budget]\nratio = 0.0\nmin_per_second = 0\nwindow = \"10s\"\n";
    let client = from_toml(&format!("[default]\nmax_attempts = 1\n{budget}"))
        .build()
        .unwrap();
    client.get(&url).send().await.unwrap_err();

    client
        .reload(from_toml(&format!("[default]\nmax_attempts = 2\n{budget}")))
        .unwrap();
    let start = Instant::now();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(start.elapsed(), 2 * Duration::from_secs(1));

    // The budget (none to spend) still refuses the retry the new policy would make.
    server.script("/h", [Reply::status(503), Reply::ok("x")]);
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BudgetExhausted, "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_bad_reload_changes_nothing_and_says_where() {
    let server = FaultServer::start().await.unwrap();
    let url = server.url("/r");
    let client = from_toml("[default]\nmax_attempts = 3").build().unwrap();

    let dir = std::env::temp_dir().join(format!("rh-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, "[default]\nmax_attempts = 1\natempts = 2\n").unwrap();
    let err = client.reload_file(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let expected = format!("{}:3: unknown key \"atempts\"", path.display());
    assert!(err.to_string().contains(&expected), "{err}");
    std::fs::write(&path, "[default.breaker]\nwindow = 5\nmin_calls = 6\n").unwrap();
    let err = client.reload_file(&path).unwrap_err();
    assert!(err.to_string().contains(":3: min_calls (6)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    server.script(
        "/r",
        [Reply::status(503), Reply::status(503), Reply::ok("x")],
    );
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // What the reqwest client was built with cannot change.
    let err = client
        .reload(Client::builder().connect_timeout(Duration::from_secs(1)))
        .unwrap_err();
    assert!(err.to_string().contains("connect_timeout"), "{err}");
    let err = client
        .reload(Client::builder().reqwest(|b| b.user_agent("x")))
        .unwrap_err();
    assert!(err.to_string().contains("policies only"), "{err}");
    // The connect timeout it has is no change.
    client
        .reload(Client::builder().connect_timeout(Duration::from_secs(5)))
        .unwrap();
}
