//! Endpoints in flight under key churn: a call that is still running keeps its endpoint's
//! breaker and guards in the policy's map however many other endpoints come and go, so that
//! its outcome lands in the breaker `client.breakers()` shows afterwards (a closed breaker
//! with a call in flight is not idle). Against the loopback fault server, many host names
//! resolved to it, with tokio's clock paused.

use std::time::Duration;

use resilient_http::breaker::{BreakerConfig, State, Window};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};

/// Every host name resolves to the loopback: `t7.example.com:<port>` reaches the fault
/// server under an endpoint key of its own.
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

fn tenant(server: &FaultServer, name: &str, path: &str) -> String {
    format!("http://{name}.example.com:{}{path}", server.addr().port())
}

/// A bound of 4 endpoints, a breaker that opens on one failure in a window of one call. A
/// call to t0 is answered 503 after 100 ms; meanwhile 40 other endpoints are called once
/// each (ten times the bound). t0's breaker, closed but with a call in flight, is kept: the
/// 503 opens the breaker `client.breakers()` shows, and the next call to t0 is turned away.
async fn a_call_in_flight_keeps_its_breaker(breaker_only: bool) {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [Reply::status(503).delay(Duration::from_millis(100))],
    );
    let breaker = BreakerConfig::builder()
        .max_breakers(4)
        .window(Window::Calls(1))
        .min_calls(1)
        .failure_rate(0.5)
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let retry = RetryPolicy::builder().max_attempts(1).build().unwrap();
    let mut builder = Client::builder().retry(retry).circuit_breaker(breaker);
    if breaker_only {
        let no_guards = EndpointPolicy::new()
            .retry_budget_enabled(false)
            .hold_on_retry_after(false);
        builder = builder.default_policy(no_guards);
    }
    let client = builder
        .reqwest(|b| {
            b.dns_resolver(std::sync::Arc::new(Loopback))
                .pool_max_idle_per_host(0)
        })
        .build()
        .unwrap();
    let slow = tenant(&server, "t0", "/slow");
    let call = tokio::spawn({
        let (client, slow) = (client.clone(), slow.clone());
        async move { client.get(&slow).send().await }
    });
    while server.hits("/slow") < 1 {
        tokio::task::yield_now().await;
    }
    for i in 1..=40 {
        let url = tenant(&server, &format!("t{i}"), "/ok");
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    assert!(
        !call.is_finished(),
        "t0's call ended during the churn: nothing was tested"
    );
    let breakers = client.breakers().expect("breakers are on");
    assert!(breakers.len() <= 5, "{} breakers kept", breakers.len());
    let err = call.await.unwrap().expect_err("t0 answers 503");
    assert_eq!(err.kind(), ErrorKind::Status, "{err}");
    let key = format!("http://t0.example.com:{}", server.addr().port());
    let t0 = breakers
        .get(&key)
        .expect("t0's breaker was kept while its call ran");
    assert_eq!(
        t0.state(),
        State::Open,
        "the 503 did not land in t0's breaker"
    );
    let err = client.get(&slow).send().await.expect_err("t0 is open");
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err}");
    assert_eq!(server.hits("/slow"), 1);
}

/// The default client: the breaker and the guards (a retry budget) both per endpoint.
#[tokio::test(start_paused = true)]
async fn a_call_in_flight_keeps_its_breaker_and_guards_under_churn() {
    a_call_in_flight_keeps_its_breaker(false).await;
}

/// A breaker per endpoint and no guards.
#[tokio::test(start_paused = true)]
async fn a_call_in_flight_keeps_its_breaker_under_churn() {
    a_call_in_flight_keeps_its_breaker(true).await;
}
