//! The opt-in `backoff` feature: a `backoff::ExponentialBackoff` as the delay schedule.
#![cfg(feature = "backoff")]

use std::time::Duration;

use backoff::ExponentialBackoff;
use resilient_http::Client;
use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{FaultServer, Reply};
use tokio::time::Instant;

fn schedule(max_elapsed: Option<Duration>) -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: Duration::from_millis(50),
        randomization_factor: 0.0,
        multiplier: 2.0,
        max_interval: Duration::from_secs(1),
        max_elapsed_time: max_elapsed,
        ..ExponentialBackoff::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_backoff_crate_schedule_sets_the_delays() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/s",
        [Reply::status(503), Reply::status(503), Reply::ok("ok")],
    );
    let policy = RetryPolicy::builder()
        .backoff_schedule(schedule(None))
        .build()
        .unwrap();
    let client = Client::builder().retry(policy).build().unwrap();
    let started = Instant::now();
    client.get(server.url("/s")).send().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    // Every call starts the schedule afresh.
    server.script("/t", [Reply::status(503), Reply::ok("ok")]);
    let started = Instant::now();
    client.get(server.url("/t")).send().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn a_schedule_that_ends_stops_the_retries() {
    let server = FaultServer::start().await.unwrap();
    server.script("/s", [Reply::status(503)]);
    let policy = RetryPolicy::builder()
        .backoff_schedule(schedule(Some(Duration::ZERO)))
        .build()
        .unwrap();
    let client = Client::builder().retry(policy).build().unwrap();
    let err = client.get(server.url("/s")).send().await.unwrap_err();
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(
        err.give_up(),
        Some(resilient_http::GiveUp::ScheduleEnded),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("(transient, backoff schedule ended)"),
        "{err}"
    );
    assert_eq!(server.hits("/s"), 1);
}
