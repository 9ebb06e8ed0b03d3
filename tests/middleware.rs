//! The reqwest-middleware adapter: bounds, configuration errors and the breaker. That it
//! agrees with the client scenario by scenario is `tests/parity.rs`.
#![cfg(feature = "reqwest-middleware")]

use std::time::Duration;

use resilient_http::middleware::ResilientMiddleware;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};

#[tokio::test]
async fn the_middleware_bounds_a_hang() {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let resilience = ResilientMiddleware::new(
        Client::builder()
            .attempt_timeout(Duration::from_millis(200))
            .total_deadline(Duration::from_millis(300)),
    )
    .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(resilience)
        .build();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(server.url("/hang")).send(),
    )
    .await
    .expect("bounded")
    .unwrap_err();
    let typed = ResilientMiddleware::error(&err).unwrap();
    assert!(typed.is_timeout(), "{typed:?}");
    assert_eq!(typed.kind(), ErrorKind::DeadlineExceeded);
}

#[cfg(feature = "config")]
#[test]
fn an_invalid_configuration_is_reported_when_building_the_middleware() {
    let err = ResilientMiddleware::new(Client::builder().config_toml("[default]\nattempts = 0\n"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

/// Through the adapter too, a hang under the request's own `.timeout(d)` (shorter than the
/// attempt timeout) trips the breaker, as under a policy deadline of `d`.
#[tokio::test(start_paused = true)]
async fn a_hang_under_a_request_timeout_trips_the_breaker() {
    use resilient_http::breaker::{BreakerConfig, Window};
    use resilient_http::retry::RetryPolicy;

    const SHORT: Duration = Duration::from_millis(300);
    let server = FaultServer::start().await.unwrap();
    for how in ["policy deadline", "request timeout"] {
        let path = format!("/hang-{}", how.replace(' ', "-"));
        server.script(&path, [Reply::hang()]);
        let breaker = BreakerConfig::builder()
            .min_calls(5)
            .window(Window::Calls(10))
            .build()
            .unwrap();
        let mut builder = Client::builder()
            .retry(RetryPolicy::never())
            .circuit_breaker(breaker);
        if how == "policy deadline" {
            builder = builder.total_deadline(SHORT);
        }
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(ResilientMiddleware::new(builder).unwrap())
            .build();
        let mut kinds = Vec::new();
        for _ in 0..12 {
            let mut request = client.get(server.url(&path));
            if how == "request timeout" {
                request = request.timeout(SHORT);
            }
            let err = tokio::time::timeout(Duration::from_secs(20), request.send())
                .await
                .expect("bounded")
                .unwrap_err();
            kinds.push(ResilientMiddleware::error(&err).expect("typed").kind());
        }
        assert_eq!(kinds[..5], [ErrorKind::DeadlineExceeded; 5], "{how}");
        assert_eq!(kinds[5..], [ErrorKind::CircuitOpen; 7], "{how}");
        assert_eq!(server.hits(&path), 5, "{how}");
    }
}
