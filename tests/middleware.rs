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
            .deadline(Duration::from_millis(300)),
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
    let err =
        ResilientMiddleware::new(Client::builder().config_toml("[default]\nmax_attempts = 0\n"))
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
            builder = builder.deadline(SHORT);
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

/// One driver for every path: a hook runs before each attempt under the middleware and under
/// `ResilientLayer` as in the client's own calls (they were refused before: the adapters ran
/// the public layers, which had no place for hooks); attempt layers, which wrap the client's
/// own reqwest client, are still refused there, saying where they go instead.
#[tokio::test(start_paused = true)]
async fn hooks_run_on_every_path_and_attempt_layers_are_refused_where_there_is_no_client() {
    use resilient_http::ResilientLayer;
    use resilient_http::hook::hook_fn;
    use tower::{ServiceBuilder, ServiceExt};

    let builder = || {
        Client::builder()
            .retry(
                resilient_http::retry::RetryPolicy::builder()
                    .max_attempts(3)
                    .jitter(resilient_http::retry::Jitter::None)
                    .build()
                    .unwrap(),
            )
            .before_attempt(hook_fn(
                "attempt-number",
                |mut request, attempt| async move {
                    let value = format!("{}:{}", attempt.number, attempt.history.len());
                    request.headers_mut().insert("x-attempt", value.parse()?);
                    Ok(request)
                },
            ))
    };
    let server = FaultServer::start().await.unwrap();
    let script = [Reply::status(503), Reply::status(503), Reply::ok("ok")];
    server.script("/middleware", script.clone());
    server.script("/layer", script);

    let chain = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ResilientMiddleware::new(builder()).unwrap())
        .build();
    let response = chain.get(server.url("/middleware")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let stack = ServiceBuilder::new()
        .layer(ResilientLayer::new(builder()).unwrap())
        .service(reqwest::Client::new());
    let request =
        reqwest::Request::new(reqwest::Method::GET, server.url("/layer").parse().unwrap());
    assert_eq!(stack.oneshot(request).await.unwrap().status(), 200);

    for path in ["/middleware", "/layer"] {
        let sent: Vec<_> = server
            .requests(path)
            .iter()
            .map(|r| r.headers["x-attempt"].to_str().unwrap().to_owned())
            .collect();
        assert_eq!(sent, ["1:0", "2:1", "3:2"], "{path}");
    }

    let layered = || builder().attempt_layer(ServiceBuilder::new());
    let refused = ResilientMiddleware::new(layered()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidConfig);
    assert!(refused.to_string().contains("attempt layers"), "{refused}");
    let refused = ResilientLayer::new(layered()).unwrap_err();
    assert!(refused.to_string().contains("ResilientLayer"), "{refused}");
}
