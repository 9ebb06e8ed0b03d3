//! The caller's deadline, inherited (`resilient_http::deadline`): a scope caps every call made
//! inside it, a call whose caller gave up fails at once, and `IncomingDeadlineLayer` turns an
//! incoming request's `grpc-timeout` (or milliseconds header) into such a scope, across two
//! hops on loopback. Against the testkit's `FaultServer`, tokio's clock paused: hangs and
//! deadlines cost no real time, and durations are exact.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
use resilient_http::deadline::{self, IncomingDeadlineLayer};
use resilient_http::overload::RateLimitConfig;
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::timeout::{AttemptTimeoutLayer, BACKSTOP_GRACE, TotalDeadlineLayer};
use resilient_http::{Client, ErrorKind, GiveUp};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A client whose own limits are far away: a 10 s attempt timeout, a 30 s deadline.
fn client() -> Result<Client, resilient_http::Error> {
    Client::builder()
        .attempt_timeout(10 * SECOND)
        .deadline(30 * SECOND)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_scope_caps_a_calls_deadline_and_the_error_says_it_was_the_callers() -> TestResult {
    let server = FaultServer::start().await?;
    server.script("/slow", [Reply::hang()]);
    let client = client()?;
    let started = Instant::now();
    let result = deadline::scope(800 * MS, client.get(server.url("/slow")).send()).await;
    let err = result.err().ok_or("a hang cannot succeed")?;
    assert_eq!(started.elapsed(), 800 * MS);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
    assert!(err.deadline_inherited(), "{err:?}");
    assert_eq!(err.timeout(), Some(800 * MS));
    assert_eq!(err.give_up(), Some(GiveUp::Deadline));
    assert_eq!(err.attempts().len(), 1);
    assert!(err.sent());
    let message = err.to_string();
    assert!(
        message.contains("total deadline exceeded: the caller's deadline (inherited), 800.0ms"),
        "{message}"
    );
    assert_eq!(server.hits("/slow"), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_caller_gave_up_fails_at_once_not_sent_and_takes_no_slot() -> TestResult {
    let server = FaultServer::start().await?;
    server.script("/x", [Reply::ok("x")]);
    // One request a minute: a call that took the slot would make the next one wait.
    let client = Client::builder()
        .deadline(30 * SECOND)
        .default_policy(EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 60 * SECOND)))
        .build()?;
    let started = Instant::now();
    let passed = deadline::scope_until(Instant::now(), async {
        tokio::time::sleep(MS).await;
        client.get(server.url("/x")).send().await
    })
    .await;
    let err = passed.err().ok_or("the caller gave up")?;
    assert_eq!(started.elapsed(), MS);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
    assert_eq!(err.give_up(), Some(GiveUp::Deadline));
    assert!(err.deadline_inherited());
    assert!(!err.sent());
    assert_eq!(err.timeout(), Some(Duration::ZERO));
    let message = err.to_string();
    assert!(
        message.contains("the caller's deadline (inherited) had passed"),
        "{message}"
    );
    assert!(message.ends_with("not sent)"), "{message}");
    assert_eq!(server.hits("/x"), 0);
    // The rate limit's one slot is still there.
    let started = Instant::now();
    let response = client.get(server.url("/x")).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(started.elapsed(), Duration::ZERO);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn nested_scopes_only_shorten() -> TestResult {
    let server = FaultServer::start().await?;
    server.script("/slow", [Reply::hang()]);
    let client = client()?;
    let call = || client.get(server.url("/slow")).send();
    for (outer, inner, ends) in [(500, 2000, 500), (2000, 300, 300)] {
        let started = Instant::now();
        let nested = deadline::scope(outer * MS, deadline::scope(inner * MS, call()));
        let err = nested.await.err().ok_or("a hang cannot succeed")?;
        assert_eq!(started.elapsed(), ends * MS, "{outer} then {inner}");
        assert!(err.deadline_inherited(), "{err}");
        assert_eq!(err.timeout(), Some(ends * MS));
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_calls_own_deadline_when_shorter_says_what_it_says_today() -> TestResult {
    let server = FaultServer::start().await?;
    server.script("/slow", [Reply::hang()]);
    let client = Client::builder()
        .attempt_timeout(10 * SECOND)
        .deadline(300 * MS)
        .build()?;
    let started = Instant::now();
    let in_scope = deadline::scope(5 * SECOND, client.get(server.url("/slow")).send()).await;
    let err = in_scope.err().ok_or("a hang cannot succeed")?;
    assert_eq!(started.elapsed(), 300 * MS);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert!(!err.deadline_inherited());
    assert!(
        err.to_string().contains("deadline exceeded after 300.0ms"),
        "{err}"
    );
    // A request's own timeout, shorter than the scope, too.
    let started = Instant::now();
    let request = client.get(server.url("/slow")).timeout(200 * MS).send();
    let err = deadline::scope(5 * SECOND, request)
        .await
        .err()
        .ok_or("a hang cannot succeed")?;
    assert_eq!(started.elapsed(), 200 * MS);
    assert!(!err.deadline_inherited(), "{err}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn outside_any_scope_nothing_changes() -> TestResult {
    let server = FaultServer::start().await?;
    server.script("/slow", [Reply::hang()]);
    let client = Client::builder()
        .attempt_timeout(SECOND)
        .deadline(30 * SECOND)
        .retry(RetryPolicy::never())
        .build()?;
    assert_eq!(deadline::remaining(), None);
    let started = Instant::now();
    let err = client
        .get(server.url("/slow"))
        .send()
        .await
        .err()
        .ok_or("a hang cannot succeed")?;
    assert_eq!(started.elapsed(), SECOND);
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout);
    assert!(!err.deadline_inherited());
    // A scope ended before the call was made is no scope of the call's.
    deadline::scope(MS, async {}).await;
    assert_eq!(deadline::remaining(), None);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_attempt_cut_short_by_the_caller_is_not_the_endpoints_failure() -> TestResult {
    let server = FaultServer::start().await?;
    server.script("/slow", [Reply::hang()]);
    // A breaker that opens on one counted failure.
    let breaker = resilient_http::breaker::BreakerConfig::builder()
        .min_calls(1)
        .window(resilient_http::breaker::Window::Calls(10))
        .build()?;
    let client = Client::builder()
        .attempt_timeout(10 * SECOND)
        .deadline(30 * SECOND)
        .retry(RetryPolicy::never())
        .circuit_breaker(breaker)
        .build()?;
    for _ in 0..2 {
        let result = deadline::scope(300 * MS, client.get(server.url("/slow")).send()).await;
        let err = result.err().ok_or("a hang cannot succeed")?;
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
    }
    // Both calls reached the server: the first did not open the breaker.
    assert_eq!(server.hits("/slow"), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_layer_ends_by_the_callers_deadline() -> TestResult {
    // Over a service that never answers: its own timer fires at the caller's deadline.
    let never = service_fn(|_request: reqwest::Request| {
        std::future::pending::<Result<reqwest::Response, resilient_http::Error>>()
    });
    let stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(30 * SECOND))
        .service(never);
    let request = reqwest::Request::new(http::Method::GET, "http://127.0.0.1:9/x".parse()?);
    let started = Instant::now();
    let result = deadline::scope(300 * MS, stack.oneshot(request)).await;
    let err = result.err().ok_or("nothing answers")?;
    assert_eq!(started.elapsed(), 300 * MS + BACKSTOP_GRACE);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert!(err.deadline_inherited(), "{err}");
    assert_eq!(err.timeout(), Some(300 * MS));
    // Without its timer, over an attempt timeout and a real hang: the layers below are told.
    let server = FaultServer::start().await?;
    server.script("/slow", [Reply::hang()]);
    let stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(30 * SECOND).without_backstop())
        .layer(AttemptTimeoutLayer::new(10 * SECOND))
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(reqwest::Client::new());
    let request = reqwest::Request::new(http::Method::GET, server.url("/slow").parse()?);
    let started = Instant::now();
    let result = deadline::scope(300 * MS, stack.oneshot(request)).await;
    let err = result.err().ok_or("a hang cannot succeed")?;
    assert_eq!(started.elapsed(), 300 * MS);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert!(err.deadline_inherited(), "{err}");
    Ok(())
}

/// What the handler behind the layer saw: what was left of its scope, as it started.
async fn remaining_behind(
    layer: IncomingDeadlineLayer,
    header: Option<(&'static str, &'static str)>,
) -> Result<Option<Duration>, Infallible> {
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        |_request: http::Request<()>| async { Ok::<_, Infallible>(deadline::remaining()) },
    ));
    let mut request = http::Request::new(());
    if let Some((name, value)) = header {
        request.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    service.oneshot(request).await
}

#[tokio::test(start_paused = true)]
async fn the_layer_reads_grpc_timeout_or_milliseconds_and_caps_them() -> TestResult {
    let grpc = IncomingDeadlineLayer::grpc_timeout;
    let millis = || IncomingDeadlineLayer::millis(HeaderName::from_static("x-request-timeout-ms"));
    let cases = [
        (grpc(), Some(("grpc-timeout", "250m")), Some(250 * MS)),
        (grpc(), Some(("grpc-timeout", "2S")), Some(2 * SECOND)),
        (grpc(), Some(("grpc-timeout", "0n")), Some(Duration::ZERO)),
        (
            grpc().max(SECOND),
            Some(("grpc-timeout", "5S")),
            Some(SECOND),
        ),
        (
            grpc().max(SECOND),
            Some(("grpc-timeout", "300m")),
            Some(300 * MS),
        ),
        (grpc(), None, None),
        // The other layer's header is not this one's.
        (grpc(), Some(("x-request-timeout-ms", "800")), None),
        (
            millis(),
            Some(("x-request-timeout-ms", "800")),
            Some(800 * MS),
        ),
        (
            millis().max(500 * MS),
            Some(("x-request-timeout-ms", "800")),
            Some(500 * MS),
        ),
        (millis(), Some(("grpc-timeout", "800m")), None),
        // Named `grpc-timeout`, the header is read in gRPC's format, not ignored.
        (
            IncomingDeadlineLayer::millis(HeaderName::from_static("grpc-timeout")),
            Some(("grpc-timeout", "800m")),
            Some(800 * MS),
        ),
    ];
    for (layer, header, expected) in cases {
        let seen = remaining_behind(layer, header).await?;
        assert_eq!(seen, expected, "{header:?}");
    }
    // Without a header, the scope the server runs in (if any) stays.
    let outer = deadline::scope(SECOND, remaining_behind(grpc(), None)).await?;
    assert_eq!(outer, Some(SECOND));
    let shorter = deadline::scope(
        SECOND,
        remaining_behind(grpc(), Some(("grpc-timeout", "9S"))),
    );
    assert_eq!(shorter.await?, Some(SECOND));
    Ok(())
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_ignores_a_malformed_value_with_one_debug_event() -> TestResult {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let millis = IncomingDeadlineLayer::millis(HeaderName::from_static("x-request-timeout-ms"));
    for (layer, header) in [
        (
            IncomingDeadlineLayer::grpc_timeout(),
            ("grpc-timeout", "12x"),
        ),
        (
            IncomingDeadlineLayer::grpc_timeout(),
            ("grpc-timeout", "123456789m"),
        ),
        (millis, ("x-request-timeout-ms", "1.5")),
    ] {
        assert_eq!(
            remaining_behind(layer, Some(header)).await?,
            None,
            "{header:?}"
        );
    }
    let text = captured
        .0
        .lock()
        .map(|buffer| String::from_utf8_lossy(&buffer).into_owned())
        .map_err(|_| "poisoned")?;
    let events: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("ignored a malformed incoming deadline"))
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    assert!(events.iter().all(|line| line.contains("DEBUG")), "{text}");
    assert!(
        events[0].contains("grpc-timeout") && events[0].contains("12x"),
        "{text}"
    );
    Ok(())
}

/// Service A of the two hops: a hyper server on loopback whose handler, behind
/// `IncomingDeadlineLayer::grpc_timeout()`, calls service B with `client` and answers `504`
/// with the error's message when its caller's deadline ran out, and what it had left of that
/// deadline as it started in `left`.
async fn start_service_a(
    client: Client,
    b_url: String,
    left: Arc<Mutex<Option<Duration>>>,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handler = move |_request: http::Request<hyper::body::Incoming>| {
        let (client, b_url, left) = (client.clone(), b_url.clone(), left.clone());
        async move {
            if let Ok(mut slot) = left.lock() {
                *slot = deadline::remaining();
            }
            let (status, body) = match client.get(b_url).send().await {
                Ok(response) => (200, response.text().await.unwrap_or_default()),
                Err(err) if err.deadline_inherited() => (504, err.to_string()),
                Err(err) => (502, err.to_string()),
            };
            let mut response = http::Response::new(body);
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
            Ok::<_, Infallible>(response)
        }
    };
    let service = ServiceBuilder::new()
        .layer(IncomingDeadlineLayer::grpc_timeout())
        .service_fn(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            // hyper calls by `&self`: each request gets its own copy of the tower service.
            let hyper_service = hyper::service::service_fn(move |request| {
                let service = service.clone();
                service.oneshot(request)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), hyper_service),
            );
        }
    });
    Ok(addr)
}

/// The acceptance's two hops: a test client calls service A with `grpc-timeout: 800m`; A's
/// handler calls service B, which hangs, with a client whose own deadline is 30 s. A's call
/// ends at its caller's deadline, and A answers in time.
#[tokio::test(start_paused = true)]
async fn two_hops_a_service_passes_its_callers_deadline_on() -> TestResult {
    let b = FaultServer::start().await?;
    b.script("/b", [Reply::hang()]);
    // A tells B what is left, as its own caller told it.
    let a_client = Client::builder()
        .attempt_timeout(10 * SECOND)
        .deadline(30 * SECOND)
        .default_policy(
            EndpointPolicy::new()
                .propagate_deadline(resilient_http::deadline::DeadlineHeader::grpc_timeout()),
        )
        .build()?;
    let left = Arc::new(Mutex::new(None));
    let a = start_service_a(a_client, b.url("/b"), left.clone()).await?;
    let caller = reqwest::Client::new();
    let started = Instant::now();
    let answer = caller
        .get(format!("http://{a}/a"))
        .header("grpc-timeout", "800m")
        .send()
        .await?;
    assert_eq!(started.elapsed(), 800 * MS);
    assert_eq!(answer.status(), 504);
    let body = answer.text().await?;
    assert!(
        body.contains("total deadline exceeded: the caller's deadline (inherited), 800.0ms"),
        "{body}"
    );
    let seen = left.lock().map(|slot| *slot).map_err(|_| "poisoned")?;
    assert_eq!(seen, Some(800 * MS));
    assert_eq!(b.hits("/b"), 1);
    // B was told A's caller's deadline, less the 20 ms margin, in gRPC's format.
    let told = b
        .requests("/b")
        .first()
        .and_then(|r| r.headers.get("grpc-timeout").cloned());
    assert_eq!(told, Some(http::HeaderValue::from_static("780000u")));
    Ok(())
}
