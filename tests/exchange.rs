//! Retrying the whole exchange: bodies read inside the attempt, body-aware classification,
//! hooks before each attempt, the 401 credentials refresh and layers around each attempt,
//! against the loopback fault server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::HeaderValue;
use resilient_http::classify::{Class, body_classifier_fn};
use resilient_http::hook::{hook_fn, refresh_fn};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{Jitter, RetryHistory, RetryPolicy};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{AttemptOutcome, Client, ClientBuilder, Delivery, Error, ErrorKind};

fn builder() -> ClientBuilder {
    let retry = RetryPolicy::builder()
        .max_attempts(3)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    Client::builder().retry(retry)
}

fn history(response: &reqwest::Response) -> Vec<AttemptOutcome> {
    response
        .extensions()
        .get::<RetryHistory>()
        .map(|RetryHistory(h)| h.iter().map(|a| a.outcome).collect())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_body_reset_mid_stream_is_retried_and_shows_in_the_history() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/r",
        [
            Reply::body_then_reset(200, "{\"par"),
            Reply::ok("{\"whole\":1}"),
        ],
    );
    let response = builder()
        .build()
        .unwrap()
        .get(server.url("/r"))
        .send_buffered()
        .await
        .unwrap();
    assert_eq!(server.hits("/r"), 2);
    let outcomes = history(&response);
    assert_eq!(
        outcomes[0],
        AttemptOutcome::Body {
            status: http::StatusCode::OK,
            kind: ErrorKind::ConnectionClosed
        },
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], AttemptOutcome::Status(http::StatusCode::OK));
    assert_eq!(response.url().as_str(), server.url("/r"));
    assert_eq!(response.text().await.unwrap(), "{\"whole\":1}");
}

#[tokio::test(start_paused = true)]
async fn bytes_and_text_read_inside_the_attempt_too() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/b",
        [Reply::body_then_close(200, "he"), Reply::ok("hello")],
    );
    server.script(
        "/t",
        [Reply::body_then_close(200, "wo"), Reply::ok("world")],
    );
    let client = builder().build().unwrap();
    assert_eq!(
        &client.get(server.url("/b")).bytes().await.unwrap()[..],
        b"hello"
    );
    assert_eq!(client.get(server.url("/t")).text().await.unwrap(), "world");
    assert_eq!(server.hits("/b") + server.hits("/t"), 4);
}

#[tokio::test(start_paused = true)]
async fn a_post_whose_body_broke_is_not_retried_without_an_idempotency_key() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/pay",
        [Reply::body_then_reset(200, "{\"par"), Reply::ok("{}")],
    );
    let error = builder()
        .build()
        .unwrap()
        .post(server.url("/pay"))
        .body("charge")
        .send_buffered()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/pay"), 1);
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed, "{error}");
    assert_eq!(error.status(), Some(http::StatusCode::OK));
    assert_eq!(error.delivery(), Delivery::Delivered);
    assert!(error.is_transient());
    assert!(error.to_string().contains("not retried"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out_inside_the_attempt_and_is_retried() {
    let server = FaultServer::start().await.unwrap();
    server.script("/s", [Reply::stall_body(200, "par"), Reply::ok("full")]);
    let client = builder()
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let body = client.get(server.url("/s")).text().await.unwrap();
    assert_eq!(body, "full");
    assert_eq!(server.hits("/s"), 2);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_typed_error_and_not_retried() {
    let server = FaultServer::start().await.unwrap();
    let big = "x".repeat(2048);
    server.script("/big", [Reply::ok(big.clone()), Reply::ok(big.clone())]);
    server.script("/cut", [Reply::body_then_close(200, big.clone())]);
    let client = builder()
        .default_policy(EndpointPolicy::new().body_limit(1024))
        .build()
        .unwrap();

    // Announced by Content-Length: refused before reading.
    let error = client.get(server.url("/big")).bytes().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    assert!(!error.is_transient());
    assert_eq!(error.status(), Some(http::StatusCode::OK));
    assert_eq!(server.hits("/big"), 1);

    // Found while reading, through a reader of the caller's.
    let error = client
        .get(server.url("/big"))
        .send_with(|response| async move { Ok(response.bytes().await?.len()) })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    assert_eq!(server.hits("/big"), 2);
}

#[tokio::test]
async fn a_streaming_reader_past_the_limit_is_stopped() {
    let server = FaultServer::start().await.unwrap();
    // No Content-Length check can catch it: the body announces more than the limit only as
    // it streams, so the limit must hold while reading.
    server.script("/stream", [Reply::body_then_close(200, "y".repeat(4096))]);
    let client = builder()
        .default_policy(EndpointPolicy::new().body_limit(1024).max_attempts(1))
        .build()
        .unwrap();
    let error = client
        .get(server.url("/stream"))
        .send_with(|mut response| async move {
            let mut n = 0;
            while let Some(chunk) = response.chunk().await? {
                n += chunk.len();
            }
            Ok(n)
        })
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::BodyTooLarge), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_reader_runs_again_on_each_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/csv",
        [
            Reply::body_then_reset(200, "a\nb\n"),
            Reply::ok("a\nb\nc\n"),
        ],
    );
    let runs = Arc::new(AtomicU32::new(0));
    let seen = runs.clone();
    let lines = builder()
        .build()
        .unwrap()
        .get(server.url("/csv"))
        .send_with(move |mut response| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut lines = 0;
                while let Some(chunk) = response.chunk().await? {
                    lines += chunk.iter().filter(|b| **b == b'\n').count();
                }
                Ok(lines)
            }
        })
        .await
        .unwrap();
    assert_eq!(lines, 3);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_body_classifier_makes_a_409_transient() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/lock",
        [
            Reply::status(409).body("{\"code\":\"LOCK_TIMEOUT\"}"),
            Reply::ok("done"),
        ],
    );
    server.script(
        "/conflict",
        [
            Reply::status(409).body("{\"code\":\"DUPLICATE\"}"),
            Reply::ok(""),
        ],
    );
    let client = builder()
        .body_classifier(body_classifier_fn(|status, _, body| {
            let lock = status == 409 && body.windows(12).any(|w| w == b"LOCK_TIMEOUT");
            lock.then_some(Class::Transient)
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/lock")).send().await.unwrap();
    assert_eq!(server.hits("/lock"), 2);
    assert_eq!(response.text().await.unwrap(), "done");

    // Anything else stays with the status classifier: a 409 is permanent.
    let mut error = client
        .get(server.url("/conflict"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/conflict"), 1);
    assert_eq!(error.status(), Some(http::StatusCode::CONFLICT));
    assert!(!error.is_transient());
    // The body read for the classifier is still there.
    assert_eq!(
        error.read_body(1024).await.unwrap(),
        "{\"code\":\"DUPLICATE\"}"
    );
}

#[cfg(feature = "json")]
#[tokio::test]
async fn json_that_does_not_decode_is_a_permanent_typed_error() {
    #[derive(serde::Deserialize, Debug)]
    struct Order {
        #[allow(dead_code)]
        id: u64,
    }
    let server = FaultServer::start().await.unwrap();
    server.script("/o", [Reply::ok("{\"id\":"), Reply::ok("{\"id\":7}")]);
    let error = builder()
        .build()
        .unwrap()
        .get(server.url("/o"))
        .recv_json::<Order>()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode, "{error}");
    assert_eq!(error.status(), Some(http::StatusCode::OK));
    assert!(!error.is_transient());
    assert_eq!(server.hits("/o"), 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_with_it() {
    let server = FaultServer::start().await.unwrap();
    server.script("/me", [Reply::status(401), Reply::ok("me")]);
    server.script(
        "/never",
        [Reply::status(401), Reply::status(401), Reply::ok("")],
    );
    let refreshes = Arc::new(AtomicU32::new(0));
    let counter = refreshes.clone();
    let client = builder()
        .default_policy(EndpointPolicy::new().max_attempts(1))
        .refresh_auth_on_401(refresh_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(HeaderValue::try_from(format!("Bearer fresh-{n}"))?) }
        }))
        .build()
        .unwrap();

    // One attempt allowed by the policy, and still the refreshed retry happens.
    let response = client
        .get(server.url("/me"))
        .bearer_auth("stale")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let sent = server.requests("/me");
    assert_eq!(sent[0].headers["authorization"], "Bearer stale");
    assert_eq!(sent[1].headers["authorization"], "Bearer fresh-1");

    // A second 401 is the answer: no second refresh, no loop.
    let error = client
        .get(server.url("/never"))
        .bearer_auth("stale")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(error.attempts().len(), 2);
    assert_eq!(server.hits("/never"), 2);
    assert_eq!(refreshes.load(Ordering::SeqCst), 2, "one per call");
}

#[tokio::test(start_paused = true)]
async fn the_refreshed_attempt_does_not_count_against_the_policy() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/q",
        [
            Reply::status(401),
            Reply::status(503),
            Reply::status(503),
            Reply::ok("ok"),
        ],
    );
    let client = builder()
        .refresh_auth_on_401(refresh_fn(|| async {
            Ok(HeaderValue::from_static("Bearer new"))
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/q")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Three attempts by the policy, plus the one with new credentials.
    assert_eq!(server.hits("/q"), 4);
    assert_eq!(history(&response).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_hook_changes_each_attempt_and_sees_the_history() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/h",
        [Reply::status(503), Reply::status(503), Reply::ok("ok")],
    );
    let client = builder()
        .before_attempt(hook_fn(
            "attempt-number",
            |mut request, attempt| async move {
                let value = format!("{}:{}", attempt.number, attempt.history.len());
                request.headers_mut().insert("x-attempt", value.parse()?);
                Ok(request)
            },
        ))
        .build()
        .unwrap();
    client.get(server.url("/h")).send().await.unwrap();
    let sent: Vec<_> = server
        .requests("/h")
        .iter()
        .map(|r| r.headers["x-attempt"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["1:0", "2:1", "3:2"]);
}

#[tokio::test]
async fn a_failing_or_panicking_hook_is_a_typed_error_naming_it() {
    let server = FaultServer::start().await.unwrap();
    server.script("/x", [Reply::ok("ok")]);
    let refusing = builder()
        .before_attempt(hook_fn("signer", |_, _| async { Err("no key".into()) }))
        .build()
        .unwrap();
    let error = refusing.get(server.url("/x")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Hook);
    assert!(error.to_string().contains("\"signer\""), "{error}");
    assert!(error.to_string().contains("no key"), "{error}");
    // The attempt the hook stopped is in the history, never sent.
    assert_eq!(error.attempts().len(), 1, "{error:?}");
    let attempt = &error.attempts()[0];
    assert_eq!(attempt.outcome, AttemptOutcome::Error(ErrorKind::Hook));
    assert_eq!(attempt.delivery, Delivery::NotSent);

    let panicking = builder()
        .before_attempt(hook_fn("boom", |request, attempt| async move {
            if attempt.number == 1 && request.url().path() == "/x" {
                panic!("the hook broke");
            }
            Ok(request)
        }))
        .build()
        .unwrap();
    let error = panicking.get(server.url("/x")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Hook);
    assert!(error.to_string().contains("panicked"), "{error}");
    assert_eq!(server.hits("/x"), 0);
    // The client is still usable.
    server.script("/y", [Reply::ok("fine")]);
    let response = panicking.get(server.url("/y")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "fine");
}

#[tokio::test(start_paused = true)]
async fn a_signing_layer_inside_the_retry_signs_each_attempt_anew() {
    use tower::ServiceBuilder;
    let server = FaultServer::start().await.unwrap();
    server.script("/signed", [Reply::status(503), Reply::ok("ok")]);
    let counter = Arc::new(AtomicU32::new(0));
    let sign = move |mut request: reqwest::Request| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let signature = format!("sig-{n}-{}", request.url().path());
        request
            .headers_mut()
            .insert("x-signature", signature.parse().unwrap());
        request
    };
    let client = builder()
        .attempt_layer(ServiceBuilder::new().map_request(sign))
        .build()
        .unwrap();
    client.get(server.url("/signed")).send().await.unwrap();
    let signatures: Vec<_> = server
        .requests("/signed")
        .iter()
        .map(|r| r.headers["x-signature"].clone())
        .collect();
    assert_eq!(signatures, ["sig-0-/signed", "sig-1-/signed"]);
}

/// (Hooks run under the middleware too, since it runs the client's driver:
/// `tests/middleware.rs`; outer layers, which wrap the client's own calls, do not.)
#[tokio::test]
async fn hooks_for_an_unknown_policy_or_outer_layers_in_the_middleware_are_config_errors() {
    let error = builder()
        .before_attempt_for("nope", hook_fn("h", |r, _| async { Ok(r) }))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig);
    assert!(error.to_string().contains("\"nope\""), "{error}");

    #[cfg(feature = "reqwest-middleware")]
    {
        let error = resilient_http::middleware::ResilientMiddleware::new(
            builder().layer(tower::limit::ConcurrencyLimitLayer::new(1)),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidConfig);
    }
}

/// Without hooks or readers, `send` does not touch the body: a body that breaks after the
/// head is the caller's to read (and `Error::from` types it).
#[tokio::test]
async fn send_alone_still_resolves_at_the_head() {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::body_then_reset(200, "par")]);
    let response = builder()
        .build()
        .unwrap()
        .get(server.url("/h"))
        .send()
        .await
        .unwrap();
    let error = Error::from(response.bytes().await.unwrap_err());
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert_eq!(server.hits("/h"), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_after_a_refresh_keep_the_new_credentials() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/r",
        [Reply::status(401), Reply::status(503), Reply::ok("ok")],
    );
    let client = builder()
        .refresh_auth_on_401(refresh_fn(|| async {
            Ok(HeaderValue::from_static("Bearer new"))
        }))
        .build()
        .unwrap();
    client
        .get(server.url("/r"))
        .bearer_auth("stale")
        .send()
        .await
        .unwrap();
    let sent: Vec<_> = server
        .requests("/r")
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(sent, ["Bearer stale", "Bearer new", "Bearer new"]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_holds_for_a_hook_that_hangs() {
    let server = FaultServer::start().await.unwrap();
    server.script("/x", [Reply::ok("ok")]);
    let client = builder()
        .deadline(Duration::from_millis(300))
        .before_attempt(hook_fn("slow", |request, _| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(request)
        }))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let error = client.get(server.url("/x")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DeadlineExceeded, "{error}");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(server.hits("/x"), 0);
    assert_eq!(
        error.attempts()[0].outcome,
        AttemptOutcome::Error(ErrorKind::DeadlineExceeded)
    );
}

#[tokio::test]
async fn a_failing_refresher_does_not_leak_its_secrets() {
    let server = FaultServer::start().await.unwrap();
    server.script("/me", [Reply::status(401)]);
    let client = builder()
        .refresh_auth_on_401(refresh_fn(|| async {
            Err("token endpoint http://idp.local/token?client_secret=TOPSECRET refused".into())
        }))
        .build()
        .unwrap();
    let error = client.get(server.url("/me")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Hook);
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("client_secret=REDACTED"), "{shown}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_tower_timeout_inside_the_attempt_is_a_retried_attempt_timeout() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [
            Reply::ok("late").delay(Duration::from_secs(5)),
            Reply::ok("ok"),
        ],
    );
    let client = builder()
        .attempt_layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(1)))
        .build()
        .unwrap();
    let response = client.get(server.url("/slow")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(server.hits("/slow"), 2);
}

#[tokio::test]
async fn a_panicking_body_classifier_is_a_typed_error() {
    let server = FaultServer::start().await.unwrap();
    server.script("/p", [Reply::ok("ok")]);
    let client = builder()
        .body_classifier(body_classifier_fn(|_, _, _| panic!("classifier bug")))
        .build()
        .unwrap();
    let error = client.get(server.url("/p")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Hook);
    assert!(error.to_string().contains("body classifier"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn outer_layers_wrap_every_whole_call() {
    use resilient_http::outer::{Exchange, Exchanged};
    use tower::ServiceBuilder;
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/o",
        [Reply::status(503), Reply::ok("one"), Reply::ok("two")],
    );
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let client = builder()
        .layer(
            ServiceBuilder::new()
                .map_response(move |exchanged: Exchanged| {
                    seen.lock().unwrap().push(exchanged.status().as_u16());
                    exchanged
                })
                .map_request(|mut exchange: Exchange| {
                    exchange
                        .request_mut()
                        .headers_mut()
                        .insert("x-tenant", HeaderValue::from_static("acme"));
                    exchange
                }),
        )
        .build()
        .unwrap();
    // Once per call (not per attempt), and for readers too.
    let response = client.get(server.url("/o")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "one");
    let read = client
        .get(server.url("/o"))
        .send_with(|response| async move { Ok(response.text().await?) })
        .await
        .unwrap();
    assert_eq!(read, "two");
    assert_eq!(*statuses.lock().unwrap(), [200, 200]);
    let tenants: Vec<_> = server
        .requests("/o")
        .iter()
        .map(|r| r.headers["x-tenant"].clone())
        .collect();
    assert_eq!(tenants, ["acme", "acme", "acme"]);
}

#[tokio::test(start_paused = true)]
async fn an_outer_timeout_ends_the_call_with_a_deadline_error() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [Reply::status(503), Reply::status(503), Reply::ok("")],
    );
    let client = builder()
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            150,
        )))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let error = client.get(server.url("/slow")).bytes().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DeadlineExceeded, "{error}");
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    // The first retry (after 100 ms) went out; the second (at 300 ms) never did.
    assert_eq!(server.hits("/slow"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_limit_outside_holds_across_retries() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/one-at-a-time",
        [Reply::status(503), Reply::ok("a"), Reply::ok("b")],
    );
    let client = builder()
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .build()
        .unwrap();
    let first = client.get(server.url("/one-at-a-time")).text();
    let second = client.get(server.url("/one-at-a-time")).text();
    let (first, second) = tokio::join!(first, second);
    // The second call waited for the first, retry included, so got the third answer.
    assert_eq!(
        (first.unwrap().as_str(), second.unwrap().as_str()),
        ("a", "b")
    );
}

#[tokio::test(start_paused = true)]
async fn a_readers_time_limit_starts_when_the_attempt_is_sent() {
    let server = FaultServer::start().await.unwrap();
    server.script("/r", [Reply::ok("ok")]);
    let client = builder()
        .attempt_timeout(Duration::from_secs(1))
        .before_attempt(hook_fn("slow", |request, _| async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(request)
        }))
        .build()
        .unwrap();
    let read = client
        .get(server.url("/r"))
        .send_with(|response| async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(response.text().await?)
        })
        .await
        .unwrap();
    assert_eq!(read, "ok");
}

#[tokio::test]
async fn unbounded_timeouts_do_not_overflow_a_reader() {
    let server = FaultServer::start().await.unwrap();
    server.script("/r", [Reply::ok("ok")]);
    // The longest a policy allows.
    let a_day = Duration::from_secs(86_400);
    let client = builder()
        .attempt_timeout(a_day)
        .deadline(a_day)
        .build()
        .unwrap();
    let read = client
        .get(server.url("/r"))
        .send_with(|response| async move { Ok(response.text().await?) })
        .await
        .unwrap();
    assert_eq!(read, "ok");
}

#[tokio::test(start_paused = true)]
async fn outer_errors_name_the_request_and_layers_cannot_be_set_twice() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("").delay(Duration::from_secs(5))]);
    let client = builder()
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
        .build()
        .unwrap();
    let error = client.get(server.url("/slow")).send().await.unwrap_err();
    assert_eq!(error.url().map(|u| u.path()), Some("/slow"), "{error}");
    assert!(error.to_string().starts_with("GET "), "{error}");

    let error = builder()
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .layer(tower::limit::ConcurrencyLimitLayer::new(2))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig);
}

/// A response of `status` whose `body` comes in chunks, with no `Content-Length`: its size
/// shows only as it is read.
fn chunked(status: u16, body: &str) -> Reply {
    let mut raw =
        format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    for chunk in body.as_bytes().chunks(512) {
        raw.push_str(&format!("{:x}\r\n", chunk.len()));
        raw.push_str(std::str::from_utf8(chunk).unwrap());
        raw.push_str("\r\n");
    }
    raw.push_str("0\r\n\r\n");
    Reply::raw(raw)
}

/// A 503 stays a 503 whatever the size of its page: retried as a 503 is, however the body is
/// read inside the attempt, and whether its size is announced or found while reading.
#[tokio::test(start_paused = true)]
async fn a_failure_status_over_the_body_limit_keeps_its_class() {
    let server = FaultServer::start().await.unwrap();
    let page = "x".repeat(4096);
    let client = builder()
        .default_policy(EndpointPolicy::new().body_limit(1024))
        .build()
        .unwrap();
    // A body classifier reads every body inside the attempt, `send_with`'s included; this one
    // leaves every verdict to the status.
    let with_body_classifier = builder()
        .default_policy(EndpointPolicy::new().body_limit(1024))
        .body_classifier(body_classifier_fn(|_, _, _| None))
        .build()
        .unwrap();
    let big_503s = [
        ("announced", Reply::status(503).body(page.clone())),
        ("chunked", chunked(503, &page)),
    ];
    let clients = [
        ("plain", &client),
        ("body-classifier", &with_body_classifier),
    ];
    for ((size, big_503), (which, client)) in big_503s
        .iter()
        .flat_map(|b| clients.iter().map(move |c| (b, c)))
    {
        for how in ["send_buffered", "bytes", "send_with"] {
            let path = format!("/{size}-{which}-{how}");
            server.script(&path, [big_503.clone(), Reply::ok("fine")]);
            let request = client.get(server.url(&path));
            let body = match how {
                "send_buffered" => {
                    let response = request.send_buffered().await;
                    let response = response.unwrap_or_else(|e| panic!("{path}: {e}"));
                    let outcomes = history(&response);
                    assert_eq!(
                        outcomes,
                        [
                            AttemptOutcome::Status(http::StatusCode::SERVICE_UNAVAILABLE),
                            AttemptOutcome::Status(http::StatusCode::OK)
                        ],
                        "{path}"
                    );
                    response.bytes().await.unwrap()
                }
                "bytes" => request
                    .bytes()
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {e}")),
                _ => request
                    .send_with(|response| async move { Ok(response.bytes().await?) })
                    .await
                    .unwrap_or_else(|e| panic!("{path}: {e}")),
            };
            assert_eq!(&body[..], b"fine", "{path}");
            assert_eq!(server.hits(&path), 2, "{path}");
        }
    }

    // When no attempt is left, the error is the 503, with its headers and as much of its page
    // as the limit allows.
    for (size, big_503) in [
        (
            "announced",
            Reply::status(503)
                .header("x-trace", "t1")
                .body(page.clone()),
        ),
        ("chunked", chunked(503, &page)),
    ] {
        let path = format!("/down-{size}");
        server.script(&path, [big_503]);
        let mut error = client
            .get(server.url(&path))
            .send_buffered()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Status, "{path}: {error}");
        assert_eq!(error.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
        assert!(error.is_transient(), "{path}: {error}");
        assert_eq!(server.hits(&path), 3, "{path}");
        if size == "announced" {
            assert_eq!(error.headers().unwrap()["x-trace"], "t1");
        }
        let kept = error.read_body(8192).await.unwrap();
        assert_eq!(kept, page.as_bytes()[..1024], "{path}");
    }
}

/// The breaker counts a 503 over the body limit as the failure it is.
#[tokio::test(start_paused = true)]
async fn the_breaker_counts_a_failure_status_over_the_body_limit() {
    use resilient_http::breaker::{BreakerConfig, State, Window};

    let server = FaultServer::start().await.unwrap();
    server.script("/b", [Reply::status(503).body("x".repeat(4096))]);
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .default_policy(EndpointPolicy::new().body_limit(1024))
        .circuit_breaker(
            BreakerConfig::builder()
                .min_calls(2)
                .window(Window::Calls(4))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..5 {
        kinds.push(
            client
                .get(server.url("/b"))
                .bytes()
                .await
                .unwrap_err()
                .kind(),
        );
    }
    assert_eq!(kinds[..2], [ErrorKind::Status; 2]);
    assert_eq!(kinds[2..], [ErrorKind::CircuitOpen; 3]);
    assert_eq!(server.hits("/b"), 2);
    let key = format!("http://{}", server.addr());
    let handle = client.breakers().unwrap().get(&key).unwrap();
    assert_eq!(handle.state(), State::Open);
}

/// A body that comes in many chunks reaches every way of reading it whole and in order, and a
/// failure's page over the limit keeps exactly the bytes up to it; an outer layer sees the
/// response of `bytes`, `text` and `recv_json` as it sees `send_buffered`'s.
#[tokio::test(start_paused = true)]
async fn a_body_in_many_chunks_is_read_whole_and_in_order() {
    use resilient_http::outer::Exchanged;
    let body: String = (0..3000u32)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let json = format!("\"{body}\"");
    let server = FaultServer::start().await.unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let counted = seen.clone();
    let client = builder()
        .layer(
            tower::ServiceBuilder::new().map_response(move |exchanged: Exchanged| {
                if exchanged.response().is_some() {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                exchanged
            }),
        )
        .build()
        .unwrap();
    let url = |path: &str| server.url(path);
    server.script("/b", [chunked(200, &body)]);
    let bytes = client.get(url("/b")).bytes().await.unwrap();
    assert_eq!(&bytes[..], body.as_bytes());
    server.script("/t", [chunked(200, &body)]);
    assert_eq!(client.get(url("/t")).text().await.unwrap(), body);
    server.script("/s", [chunked(200, &body)]);
    let response = client.get(url("/s")).send_buffered().await.unwrap();
    assert_eq!(&response.bytes().await.unwrap()[..], body.as_bytes());
    server.script("/j", [chunked(200, &json)]);
    let request = client.get(url("/j"));
    #[cfg(feature = "json")]
    assert_eq!(request.recv_json::<String>().await.unwrap(), body);
    #[cfg(not(feature = "json"))]
    drop(request.bytes().await.unwrap());
    assert_eq!(seen.load(Ordering::SeqCst), 4);

    let limited = builder()
        .default_policy(EndpointPolicy::new().body_limit(1300).max_attempts(1))
        .build()
        .unwrap();
    server.script("/503", [chunked(503, &body)]);
    let mut error = limited.get(url("/503")).bytes().await.unwrap_err();
    assert_eq!(error.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let page = error.read_body(usize::MAX).await.unwrap();
    assert_eq!(&page[..], &body.as_bytes()[..1300]);
}
