//! `ResilientLayer` and the public `RetryLayer` over tower services that are not a
//! `reqwest::Client`: one that ignores the request's timeout, one that pushes back
//! (`ConcurrencyLimit`). The driver cannot lean on reqwest there; these pin what it does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::RateLimitConfig;
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{Jitter, Retry, RetryPolicy};
use resilient_http::{Client, ResilientLayer};
use tokio::time::Instant;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceExt};

const MS: Duration = Duration::from_millis(1);

type Answer<E> = Pin<Box<dyn Future<Output = Result<reqwest::Response, E>> + Send>>;

fn request() -> reqwest::Request {
    reqwest::Request::new(
        reqwest::Method::GET,
        "http://127.0.0.1:9/x".parse().unwrap(),
    )
}

fn response(status: u16) -> reqwest::Response {
    let mut response = http::Response::new(Vec::<u8>::new());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    reqwest::Response::from(response)
}

/// Never answers, and ignores the request's timeout.
#[derive(Clone)]
struct Hangs;

impl Service<reqwest::Request> for Hangs {
    type Response = reqwest::Response;
    type Error = Infallible;
    type Future = Answer<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: reqwest::Request) -> Self::Future {
        Box::pin(std::future::pending())
    }
}

/// Answers 200 after 500 ms.
#[derive(Clone)]
struct Slow;

impl Service<reqwest::Request> for Slow {
    type Response = reqwest::Response;
    type Error = Infallible;
    type Future = Answer<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: reqwest::Request) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(500 * MS).await;
            Ok(response(200))
        })
    }
}

/// When each request came, and its timeout.
type Seen = Arc<Mutex<Vec<(Duration, Option<Duration>)>>>;

/// Answers 503 first, then 200; records what it saw.
#[derive(Clone)]
struct Records(Seen, Instant);

impl Service<reqwest::Request> for Records {
    type Response = reqwest::Response;
    type Error = reqwest::Error;
    type Future = Answer<reqwest::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        let mut seen = self.0.lock().unwrap();
        seen.push((self.1.elapsed(), request.timeout().copied()));
        let status = if seen.len() == 1 { 503 } else { 200 };
        Box::pin(async move { Ok(response(status)) })
    }
}

/// A service that ignores the request's timeout still has its attempts bounded: each by a
/// backstop at the attempt's limit (before: the call never ended).
#[tokio::test(start_paused = true)]
async fn a_service_that_ignores_the_timeout_is_bounded_by_the_attempt_timeout() {
    let layer = ResilientLayer::new(
        Client::builder()
            .retry(
                RetryPolicy::builder()
                    .max_attempts(2)
                    .jitter(Jitter::None)
                    .build()
                    .unwrap(),
            )
            .attempt_timeout(100 * MS)
            .deadline(Duration::from_secs(1)),
    )
    .unwrap();
    let started = Instant::now();
    let called = tokio::time::timeout(
        Duration::from_secs(60),
        layer.layer(Hangs).oneshot(request()),
    )
    .await
    .expect("bounded");
    let error = called.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(error.attempts().len(), 2, "{error:?}");
    // Two attempts of 100 ms (and the backstop's grace) and a backoff between: well inside
    // the deadline.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A hedge the guards keep back (here the rate limit) gives back the place it was readied
/// with: the service below has room for another caller (before: the hedge's copy held its
/// `ConcurrencyLimit` permit for the rest of the call).
#[tokio::test(start_paused = true)]
async fn a_hedge_that_does_not_go_out_holds_no_place_below() {
    let retry = RetryPolicy::builder()
        .hedge(HedgeConfig::new(10 * MS, 1))
        .build()
        .unwrap();
    let one_per_second = RateLimitConfig::new(1, Duration::from_secs(1));
    let layer = ResilientLayer::new(
        Client::builder()
            .retry(retry)
            .default_policy(EndpointPolicy::new().rate_limit(one_per_second)),
    )
    .unwrap();
    let limited = ConcurrencyLimitLayer::new(2).layer(Slow);
    let mut service = layer.layer(limited.clone());
    let call = tokio::spawn(service.ready().await.unwrap().call(request()));
    tokio::time::sleep(50 * MS).await;
    let mut other = limited.clone();
    let ready = std::future::poll_fn(|cx| Poll::Ready(other.poll_ready(cx).is_ready())).await;
    assert!(ready, "a hedge that did not go out kept a place");
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

/// A retry that waits for the service below to be ready has that wait taken from what is
/// left of the deadline, which its request carries as its timeout (before: the timeout was
/// reckoned before the wait, 994 ms for a retry sent 602 ms into a 1 s deadline).
#[tokio::test(start_paused = true)]
async fn a_retry_that_waits_for_the_service_below_has_the_wait_taken_from_its_budget() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let records = Records(seen.clone(), Instant::now());
    let limited =
        ConcurrencyLimitLayer::new(1).layer(ClassifyLayer::new(DefaultClassifier).layer(records));
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .backoff_base(10 * MS)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let mut retry =
        Retry::new(limited.clone(), Arc::new(policy)).with_deadline(Some(Duration::from_secs(1)));
    let call = tokio::spawn(retry.ready().await.unwrap().call(request()));
    tokio::time::sleep(2 * MS).await;
    // Another caller holds the only place from 2 ms to 602 ms.
    let mut hog = limited.clone();
    hog.ready().await.unwrap();
    tokio::time::sleep(600 * MS).await;
    drop(hog);
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (sent, timeout) = seen[1];
    assert!(sent >= 600 * MS, "{seen:?}");
    let left = timeout.expect("the budget rides in the request");
    assert!(left <= 400 * MS && left >= 390 * MS, "{seen:?}");
}

/// What a tower-http `TraceLayer` saw: the statuses of the responses, and how many calls
/// failed (an `Err` from the stack, or a 5xx).
#[derive(Clone, Default)]
struct Traced {
    statuses: Arc<Mutex<Vec<u16>>>,
    failures: Arc<Mutex<usize>>,
}

/// tower-http's `TraceLayer::new_for_http()` over the client's stack, in its `http::Request`
/// form: the layer sees one call, retries included, and its final answer; the body streams
/// through its `ResponseBody`. A relative URI fails as an invalid request, not sent.
#[tokio::test]
async fn tower_https_trace_layer_wraps_the_clients_http_service() {
    use http_body_util::BodyExt;
    use resilient_http::testkit::{FaultServer, Reply};
    use tower_http::classify::ServerErrorsFailureClass;

    let server = FaultServer::start().await.unwrap();
    server.script("/t", [Reply::status(503), Reply::ok("done")]);
    server.script("/down", [Reply::status(503)]);
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let seen = Traced::default();
    let (statuses, failures) = (seen.statuses.clone(), seen.failures.clone());
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .on_response(
            move |response: &http::Response<reqwest::Body>, _: Duration, _: &tracing::Span| {
                statuses.lock().unwrap().push(response.status().as_u16());
            },
        )
        .on_failure(
            move |_: ServerErrorsFailureClass, _: Duration, _: &tracing::Span| {
                *failures.lock().unwrap() += 1;
            },
        );
    let service = tower::ServiceBuilder::new()
        .layer(trace)
        .service(client.http_service());

    let request = http::Request::get(server.url("/t"))
        .body(String::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "done");
    assert_eq!(server.hits("/t"), 2);
    assert_eq!(*seen.statuses.lock().unwrap(), [200]);
    assert_eq!(*seen.failures.lock().unwrap(), 0);

    let request = http::Request::get(server.url("/down"))
        .body(String::new())
        .unwrap();
    let err = service
        .clone()
        .oneshot(request)
        .await
        .err()
        .expect("a 503 to the end");
    assert_eq!(err.kind(), resilient_http::ErrorKind::Status, "{err}");
    assert_eq!(server.hits("/down"), 2);
    assert_eq!(*seen.failures.lock().unwrap(), 1);

    // The URI is not repeated in the error: its query may hold a key.
    let request = http::Request::get("/relative?api_key=s3cr3t")
        .body(String::new())
        .unwrap();
    let err = service.oneshot(request).await.err().expect("refused");
    assert_eq!(
        err.kind(),
        resilient_http::ErrorKind::InvalidRequest,
        "{err}"
    );
    assert!(err.to_string().contains("not an absolute URL"), "{err}");
    assert!(!format!("{err} {err:?}").contains("s3cr3t"), "{err:?}");
}

/// The same over a `ResilientLayer` stack of the user's own, through `HttpLayer`; a POST's
/// body (here a `reqwest::Body`) reaches the server.
#[tokio::test]
async fn tower_https_trace_layer_wraps_a_resilient_layer_stack_through_http_layer() {
    use resilient_http::HttpLayer;
    use resilient_http::testkit::{FaultServer, Reply};

    let server = FaultServer::start().await.unwrap();
    server.script("/p", [Reply::status(503), Reply::ok("taken")]);
    let resilience = ResilientLayer::new(
        Client::builder()
            .retry(
                RetryPolicy::builder()
                    .max_attempts(2)
                    .backoff_base(Duration::ZERO)
                    .build()
                    .unwrap(),
            )
            .default_policy(EndpointPolicy::new().retry_non_idempotent(true)),
    )
    .unwrap();
    let seen = Traced::default();
    let statuses = seen.statuses.clone();
    let service = tower::ServiceBuilder::new()
        .layer(tower_http::trace::TraceLayer::new_for_http().on_response(
            move |response: &http::Response<reqwest::Body>, _: Duration, _: &tracing::Span| {
                statuses.lock().unwrap().push(response.status().as_u16());
            },
        ))
        .layer(HttpLayer)
        .layer(resilience)
        .service(reqwest::Client::new());

    let request = http::Request::post(server.url("/p"))
        .body(reqwest::Body::from(b"order=7".to_vec()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(*seen.statuses.lock().unwrap(), [200]);
    let requests = server.requests("/p");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body, "order=7");
}
