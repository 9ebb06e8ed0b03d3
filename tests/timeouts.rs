//! Attempt timeout (body included) and total deadline, retries off: against real stalls on loopback with
//! short real timeouts and wide margins, and against inner services that never answer with
//! tokio's clock paused.

use std::future::pending;
use std::time::Duration;

use resilient_http::policy::{EndpointPolicy, Matcher};
use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::timeout::{AttemptTimeoutLayer, BACKSTOP_GRACE, TotalDeadlineLayer};
use resilient_http::{Client, Delivery, Error, ErrorKind};
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

const SHORT: Duration = Duration::from_millis(300);
/// Far above SHORT, far below anything a hang would take.
const LATE: Duration = Duration::from_secs(4);

fn client(attempt: Duration, total: Duration) -> Client {
    Client::builder()
        .attempt_timeout(attempt)
        .deadline(total)
        .retry(RetryPolicy::never())
        .build()
        .unwrap()
}

/// Fails the test instead of hanging it.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("hung: no timeout fired")
}

#[tokio::test]
async fn a_stalled_body_ends_in_a_timeout_within_the_attempt_timeout() {
    let server = FaultServer::start().await.unwrap();
    server.script("/stall", [Reply::stall_body(200, "{\"items\": [")]);
    let client = client(SHORT, Duration::from_secs(30));
    let started = Instant::now();
    let response = bounded(client.get(server.url("/stall")).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body_error = bounded(response.bytes()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(body_error.is_timeout(), "{body_error:?}");
    assert!(
        elapsed >= SHORT - Duration::from_millis(5) && elapsed < LATE,
        "{elapsed:?}"
    );
    let typed = Error::from(body_error);
    assert_eq!(typed.kind(), ErrorKind::AttemptTimeout);
    assert!(typed.is_timeout() && typed.is_transient());
}

#[tokio::test]
async fn slow_headers_end_in_an_attempt_timeout() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::status(200).delay(Duration::from_secs(60))]);
    let client = client(SHORT, Duration::from_secs(30));
    let started = Instant::now();
    let err = bounded(client.get(server.url("/slow")).send())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert!(err.is_timeout() && err.is_transient());
    assert_eq!(err.timeout(), Some(SHORT));
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(
        err.attempts()[0].outcome,
        resilient_http::AttemptOutcome::Error(ErrorKind::AttemptTimeout)
    );
    assert!(
        elapsed >= SHORT - Duration::from_millis(5) && elapsed < LATE,
        "{elapsed:?}"
    );
    assert_eq!(server.hits("/slow"), 1);
}

/// The client gives its own reqwest client the default policy's attempt timeout and leaves
/// such attempts to it; an endpoint with another attempt timeout must still get its own,
/// longer or shorter.
#[tokio::test]
async fn an_endpoint_attempt_timeout_overrides_the_default_one_both_ways() {
    let server = FaultServer::start().await.unwrap();
    server.script("/patient", [Reply::status(200).delay(SHORT)]);
    server.script(
        "/hasty",
        [Reply::status(200).delay(Duration::from_secs(60))],
    );
    let client = Client::builder()
        .attempt_timeout(SHORT / 3)
        .retry(RetryPolicy::never())
        .endpoint(
            "patient",
            Matcher::new().path("/patient"),
            EndpointPolicy::new().attempt_timeout(LATE),
        )
        .endpoint(
            "hasty",
            Matcher::new().path("/hasty"),
            EndpointPolicy::new().attempt_timeout(SHORT),
        )
        .build()
        .unwrap();
    let response = bounded(client.get(server.url("/patient")).send()).await;
    assert_eq!(response.unwrap().status(), 200, "the longer limit held");

    let started = Instant::now();
    let err = bounded(client.get(server.url("/hasty")).send())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert_eq!(err.timeout(), Some(SHORT));
    assert!(started.elapsed() >= SHORT - Duration::from_millis(5));
}

/// The deadline counts from the first poll: futures collected first and run later (a few
/// at a time, say) keep their whole budget.
#[tokio::test(start_paused = true)]
async fn the_clock_starts_at_the_first_poll() {
    let server = FaultServer::start().await.unwrap();
    let client = client(Duration::from_secs(10), Duration::from_secs(30));
    let pending = client.get(server.url("/later")).send();
    tokio::time::advance(Duration::from_secs(60)).await;
    let response = pending.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits("/later"), 1);
}

/// The same rule on the layers' path: a call made, then run a minute later, keeps its whole
/// budget. The retry layer once started its deadline when called, and `TotalDeadline` its
/// timer, so such a call failed at its first poll.
#[tokio::test(start_paused = true)]
async fn the_layers_start_the_clock_at_the_first_poll_too() {
    use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
    use resilient_http::retry::RetryLayer;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::Service;

    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let flaky = service_fn(move |_req: reqwest::Request| {
        let status = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            503
        } else {
            200
        };
        let response = http::Response::builder().status(status).body("").unwrap();
        async move { Ok::<_, reqwest::Error>(reqwest::Response::from(response)) }
    });
    let mut stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(30)))
        .layer(RetryLayer::new(RetryPolicy::default()))
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(flaky);
    let call = stack.ready().await.unwrap().call(request());
    tokio::time::advance(Duration::from_secs(60)).await;
    let response = call.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // The deadline's own timer counts from the first poll too.
    let never = service_fn(|_req: reqwest::Request| pending::<Result<reqwest::Response, Error>>());
    let mut service = TotalDeadlineLayer::new(Duration::from_secs(3)).layer(never);
    let call = service.ready().await.unwrap().call(request());
    tokio::time::advance(Duration::from_secs(60)).await;
    let started = Instant::now();
    let err = call.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(started.elapsed(), Duration::from_secs(3) + BACKSTOP_GRACE);
}

/// An attempt layer sees the attempt's limit on the request, even where the reqwest client
/// would apply the same limit by itself.
#[tokio::test]
async fn attempt_layers_see_the_attempt_limit_on_the_request() {
    let server = FaultServer::start().await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let client = Client::builder()
        .attempt_timeout(SHORT)
        .attempt_layer(
            ServiceBuilder::new().map_request(move |request: reqwest::Request| {
                record.lock().unwrap().push(request.timeout().copied());
                request
            }),
        )
        .build()
        .unwrap();
    bounded(client.get(server.url("/seen")).send())
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(SHORT)]);
}

#[tokio::test]
async fn a_hang_ends_at_the_total_deadline_when_it_is_nearer() {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let client = client(Duration::from_secs(10), SHORT);
    let started = Instant::now();
    let err = bounded(client.get(server.url("/hang")).send())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err:?}");
    assert!(err.is_timeout());
    assert_eq!(err.timeout(), Some(SHORT));
    assert_eq!(err.attempts().len(), 1, "the attempt's history survives");
    assert!(
        elapsed >= SHORT - Duration::from_millis(5) && elapsed < LATE,
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_per_request_timeout_shortens_the_deadline() {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let client = client(Duration::from_secs(10), Duration::from_secs(30));
    let started = Instant::now();
    let request = client.get(server.url("/hang")).timeout(SHORT);
    let err = bounded(request.send()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < LATE);
}

#[tokio::test]
async fn the_deadline_also_bounds_a_stalled_body() {
    let server = FaultServer::start().await.unwrap();
    server.script("/stall", [Reply::stall_body(200, "partial")]);
    let client = client(Duration::from_secs(10), SHORT);
    let started = Instant::now();
    let response = bounded(client.get(server.url("/stall")).send())
        .await
        .unwrap();
    let body_error = bounded(response.text()).await.unwrap_err();
    assert!(body_error.is_timeout());
    assert!(started.elapsed() < LATE);
}

fn ok_response() -> reqwest::Response {
    reqwest::Response::from(http::Response::new("ok"))
}

fn request() -> reqwest::Request {
    reqwest::Request::new(
        http::Method::GET,
        "http://svc.internal/items".parse().unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn each_layer_narrows_the_request_timeout_it_passes_down() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let inner = service_fn(move |req: reqwest::Request| {
        record.lock().unwrap().push(req.timeout().copied());
        async { Ok::<_, Error>(ok_response()) }
    });
    let stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(30)))
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
        .service(inner);

    stack.clone().oneshot(request()).await.unwrap();
    let mut short = request();
    *short.timeout_mut() = Some(Duration::from_secs(2));
    stack.clone().oneshot(short).await.unwrap();

    let tight = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(4)))
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
        .service(stack);
    tight.oneshot(request()).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(2)),
            Some(Duration::from_secs(4)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_bounds_any_inner_service() {
    let never = service_fn(|_req: reqwest::Request| pending::<Result<reqwest::Response, Error>>());
    let service = AttemptTimeoutLayer::new(Duration::from_secs(2)).layer(never);
    let started = Instant::now();
    let err = service.oneshot(request()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2) + BACKSTOP_GRACE);
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout);
    assert_eq!(err.timeout(), Some(Duration::from_secs(2)));
    assert_eq!(err.attempts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_bounds_any_inner_service_and_names_the_request() {
    let never = service_fn(|_req: reqwest::Request| pending::<Result<reqwest::Response, Error>>());
    let service = TotalDeadlineLayer::new(Duration::from_secs(3)).layer(never);
    let started = Instant::now();
    let err = service.oneshot(request()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(3) + BACKSTOP_GRACE);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(err.method(), Some(&http::Method::GET));
    assert_eq!(err.url().unwrap().as_str(), "http://svc.internal/items");
}

#[tokio::test(start_paused = true)]
async fn no_time_left_means_not_sent_at_all() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |_req: reqwest::Request| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Error>(ok_response()) }
    });
    let service = AttemptTimeoutLayer::new(Duration::from_secs(2)).layer(inner);
    let mut spent = request();
    *spent.timeout_mut() = Some(Duration::ZERO);
    let err = service.oneshot(spent).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The layers nest in tower's own middleware: an outer deadline wins over a slower inner one.
#[tokio::test(start_paused = true)]
async fn nested_layers_compose_in_a_service_builder() {
    let never = service_fn(|_req: reqwest::Request| pending::<Result<reqwest::Response, Error>>());
    let service = ServiceBuilder::new()
        .concurrency_limit(4)
        .layer(TotalDeadlineLayer::new(Duration::from_secs(1)))
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(5)))
        .service(never);
    let started = Instant::now();
    let err = service.oneshot(request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(started.elapsed(), Duration::from_secs(1) + BACKSTOP_GRACE);
    assert_eq!(err.attempts().len(), 1, "the attempt layer reported first");
}

/// A hang under a per-request `.deadline(d)` or `.timeout(d)` shorter than the attempt timeout
/// is the endpoint's failure, as it is under a policy deadline of `d`: the attempt's limit is
/// capped by whichever deadline applies, so the breaker counts it and opens.
#[tokio::test(start_paused = true)]
async fn a_hang_trips_the_breaker_under_any_deadline() {
    use resilient_http::breaker::{BreakerConfig, State, Window};

    let server = FaultServer::start().await.unwrap();
    let key = format!("http://{}", server.addr());
    for how in ["policy deadline", "request deadline", "request timeout"] {
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
        let client = builder.build().unwrap();
        let mut kinds = Vec::new();
        for _ in 0..12 {
            let request = match how {
                "request deadline" => client.get(server.url(&path)).deadline(SHORT),
                "request timeout" => client.get(server.url(&path)).timeout(SHORT),
                _ => client.get(server.url(&path)),
            };
            kinds.push(bounded(request.send()).await.unwrap_err().kind());
        }
        // The caller still learns that its deadline ran out.
        assert_eq!(kinds[..5], [ErrorKind::DeadlineExceeded; 5], "{how}");
        assert_eq!(kinds[5..], [ErrorKind::CircuitOpen; 7], "{how}");
        assert_eq!(server.hits(&path), 5, "{how}");
        let handle = client.breakers().unwrap().get(&key).unwrap();
        assert_eq!(handle.state(), State::Open, "{how}");
    }
}
