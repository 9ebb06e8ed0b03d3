//! The retry layer against the loopback fault server, with tokio's clock paused: the delays are
//! exact virtual time, so the assertions are too.

use std::time::{Duration, SystemTime};

use resilient_http::retry::{Backoff, Jitter, RetryHistory, RetryPolicy};
use resilient_http::testkit::{ClosedPort, FaultServer, Reply};
use resilient_http::{AttemptOutcome, Client, Delivery, Error, ErrorKind};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// No jitter, 100 ms × 2: delays 100, 200, 400, ... ms.
fn plain(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

fn client(policy: RetryPolicy) -> Client {
    Client::builder().retry(policy).build().unwrap()
}

fn delays(err: &Error) -> Vec<Duration> {
    err.attempts().iter().map(|a| a.delay_before).collect()
}

#[tokio::test(start_paused = true)]
async fn a_transient_sequence_then_success_takes_exactly_the_backoff() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/s",
        [Reply::status(503), Reply::status(502), Reply::ok("done")],
    );
    let started = Instant::now();
    let response = client(plain(3)).get(server.url("/s")).send().await.unwrap();
    let RetryHistory(history) = response.extensions().get::<RetryHistory>().unwrap().clone();
    let outcomes: Vec<_> = history.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [503, 502, 200].map(|c| AttemptOutcome::Status(http::StatusCode::from_u16(c).unwrap()))
    );
    let slept: Vec<_> = history.iter().map(|a| a.delay_before).collect();
    assert_eq!(slept, [Duration::ZERO, 100 * MS, 200 * MS]);
    assert_eq!(history[2].class, resilient_http::Class::Success);
    assert_eq!(response.text().await.unwrap(), "done");
    assert_eq!(started.elapsed(), 300 * MS);
    assert_eq!(server.hits("/s"), 3);
}

#[tokio::test(start_paused = true)]
async fn seeded_full_jitter_is_reproducible() {
    let server = FaultServer::start().await.unwrap();
    server.script("/s", [Reply::status(503)]);
    let policy = RetryPolicy::builder()
        .seed(42)
        .max_attempts(4)
        .build()
        .unwrap();
    let err = client(policy)
        .get(server.url("/s"))
        .send()
        .await
        .unwrap_err();

    let mut rng = fastrand::Rng::with_seed(42);
    let schedule = Backoff::default();
    let first = schedule.delay(1, Duration::ZERO, rng.f64());
    let second = schedule.delay(2, first, rng.f64());
    let third = schedule.delay(3, second, rng.f64());
    assert_eq!(delays(&err), [Duration::ZERO, first, second, third]);
    assert!(first <= 100 * MS && second <= 200 * MS && third <= 400 * MS);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_return_the_last_status_with_every_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/down",
        [Reply::status(503).body("maintenance until 10:00")],
    );
    let started = Instant::now();
    let mut err = client(plain(3))
        .get(server.url("/down"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.status().unwrap(), 503);
    assert!(err.is_transient());
    assert_eq!(server.hits("/down"), 3);
    assert_eq!(delays(&err), [Duration::ZERO, 100 * MS, 200 * MS]);
    let numbers: Vec<u32> = err.attempts().iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(err.attempts()[2].started_after, 300 * MS);
    assert_eq!(err.elapsed(), started.elapsed());
    assert!(
        err.to_string()
            .contains("failed after 3 attempts in 300.0ms: 503"),
        "{err}"
    );
    let body = err.read_body(8).await.unwrap();
    assert_eq!(body, "maintena");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_sent_once() {
    let server = FaultServer::start().await.unwrap();
    server.script("/missing", [Reply::status(404)]);
    let started = Instant::now();
    let err = client(plain(5))
        .get(server.url("/missing"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().unwrap(), 404);
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(server.hits("/missing"), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_is_obeyed_instead_of_the_backoff() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/busy",
        [Reply::status(429).retry_after_secs(1), Reply::ok("ok")],
    );
    let started = Instant::now();
    client(plain(3))
        .get(server.url("/busy"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(server.hits("/busy"), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_a_date_is_obeyed() {
    let server = FaultServer::start().await.unwrap();
    let at = SystemTime::now() + Duration::from_secs(5);
    server.script("/busy", [Reply::status(503).retry_after_date(at)]);
    let err = client(plain(2))
        .get(server.url("/busy"))
        .send()
        .await
        .unwrap_err();
    let waited = err.attempts()[1].delay_before;
    // HTTP dates have whole seconds.
    assert!(
        waited > Duration::from_secs(3) && waited <= Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_retry_after_falls_back_to_the_backoff() {
    let server = FaultServer::start().await.unwrap();
    for (i, bad) in ["soon", "-5", "1.5", &"junk ".repeat(2_000)]
        .iter()
        .enumerate()
    {
        let path = format!("/bad{i}");
        server.script(&path, [Reply::status(503).header("retry-after", *bad)]);
        let err = client(plain(2))
            .get(server.url(&path))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            delays(&err),
            [Duration::ZERO, 100 * MS],
            "{}",
            &bad[..bad.len().min(8)]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_above_the_cap_stops_at_once_and_says_what_was_asked() {
    let server = FaultServer::start().await.unwrap();
    server.script("/far", [Reply::status(503).retry_after_secs(3600)]);
    server.script(
        "/forever",
        [Reply::status(503).header("retry-after", "99999999999999999999")],
    );
    server.script(
        "/y9999",
        [Reply::status(503).header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
    );
    let client = client(plain(3));
    let started = Instant::now();
    let err = client.get(server.url("/far")).send().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(server.hits("/far"), 1);
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert!(err.to_string().contains("above the 20.00s cap"), "{err}");
    for path in ["/forever", "/y9999"] {
        let err = client.get(server.url(path)).send().await.unwrap_err();
        assert_eq!(server.hits(path), 1);
        assert!(err.retry_after().unwrap() > Duration::from_secs(3600 * 24 * 365));
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_never_overrun_by_a_sleep() {
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503)]);
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .backoff_base(400 * MS)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let client = Client::builder()
        .retry(policy)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get(server.url("/down")).send().await.unwrap_err();
    // Attempt at 0 ms, sleep 400 ms, attempt at 400 ms; the next sleep (800 ms) would end at
    // 1200 ms, past the 1 s deadline, so the call ends at 400 ms.
    assert_eq!(started.elapsed(), 400 * MS);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(err.status().unwrap(), 503, "the last answer is kept");
    assert_eq!(err.attempts().len(), 2);
    assert_eq!(server.hits("/down"), 2);
    assert!(
        err.to_string().contains("would start past the deadline"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_deadline_stops_at_once() {
    let server = FaultServer::start().await.unwrap();
    server.script("/busy", [Reply::status(429).retry_after_secs(5)]);
    let client = Client::builder()
        .retry(plain(3))
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get(server.url("/busy")).send().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(server.hits("/busy"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_that_may_have_been_processed_is_not_retried() {
    let server = FaultServer::start().await.unwrap();
    server.script("/pay", [Reply::status(503), Reply::ok("paid")]);
    let err = client(plain(3))
        .post(server.url("/pay"))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/pay"), 1);
    assert_eq!(err.status().unwrap(), 503);
    assert!(err.to_string().contains("Idempotency-Key"), "{err}");

    server.script("/patch", [Reply::reset()]);
    let err = client(plain(3))
        .patch(server.url("/patch"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    assert_eq!(server.hits("/patch"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_that_never_reached_the_server_is_retried() {
    let closed = ClosedPort::bind().unwrap();
    let url = closed.url("/pay");
    let err = client(plain(3))
        .post(url)
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.attempts().len(), 3);
    assert!(
        err.attempts()
            .iter()
            .all(|a| a.delivery == Delivery::NotSent)
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_is_retried_with_the_same_key() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/pay",
        [Reply::status(503), Reply::reset(), Reply::ok("paid")],
    );
    let response = client(plain(3))
        .post(server.url("/pay"))
        .header("Idempotency-Key", "order-7")
        .body("{\"amount\": 10}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "paid");
    let requests = server.requests("/pay");
    assert_eq!(requests.len(), 3);
    for request in requests {
        assert_eq!(request.headers["idempotency-key"], "order-7");
        assert_eq!(request.body, "{\"amount\": 10}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_generated_idempotency_key_makes_a_post_retryable() {
    let server = FaultServer::start().await.unwrap();
    server.script("/pay", [Reply::status(503), Reply::ok("paid")]);
    let policy = RetryPolicy::builder()
        .idempotency_key(true)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    client(policy)
        .post(server.url("/pay"))
        .send()
        .await
        .unwrap();
    let requests = server.requests("/pay");
    assert_eq!(requests.len(), 2);
    let first = requests[0].headers["idempotency-key"].clone();
    assert_eq!(first.len(), 36);
    assert_eq!(requests[1].headers["idempotency-key"], first);
    // GET needs no key and gets none.
    client(plain(2))
        .get(server.url("/get"))
        .send()
        .await
        .unwrap();
    assert!(
        !server.requests("/get")[0]
            .headers
            .contains_key("idempotency-key")
    );
}

#[tokio::test(start_paused = true)]
async fn opting_in_retries_non_idempotent_requests() {
    let server = FaultServer::start().await.unwrap();
    server.script("/events", [Reply::status(502), Reply::ok("ok")]);
    let policy = RetryPolicy::builder()
        .retry_non_idempotent(true)
        .build()
        .unwrap();
    client(policy)
        .post(server.url("/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(server.hits("/events"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_gets_one_attempt_and_a_clear_error() {
    let server = FaultServer::start().await.unwrap();
    server.script("/upload", [Reply::status(503), Reply::ok("stored")]);
    let stream = http_body_util::Full::new(bytes::Bytes::from_static(b"chunk"));
    // Nothing of a stream kept for a retry (tests/bodies.rs has the streams that are).
    let policy = plain(3).to_builder().replay_buffer(0).build().unwrap();
    let err = client(policy)
        .put(server.url("/upload"))
        .body(reqwest::Body::wrap(stream))
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/upload"), 1);
    assert_eq!(server.requests("/upload")[0].body, "chunk");
    assert_eq!(err.kind(), ErrorKind::BodyNotReplayable);
    assert!(err.to_string().contains("cannot be sent twice"), "{err}");
    let cause = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<Error>()
        .unwrap();
    assert_eq!(cause.status().unwrap(), 503);
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(
        err.attempts()[0].outcome,
        AttemptOutcome::Status(http::StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_mid_backoff_stops_everything() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::status(503), Reply::ok("late")]);
    let policy = RetryPolicy::builder()
        .backoff_base(Duration::from_secs(10))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let call = client(policy).get(server.url("/slow")).send();
    let cut = tokio::time::timeout(Duration::from_secs(1), call).await;
    assert!(cut.is_err(), "the call was still sleeping");
    assert_eq!(server.hits("/slow"), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(server.hits("/slow"), 1, "nothing retried after the drop");
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_retried_and_each_attempt_is_bounded() {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang(), Reply::ok("fast")]);
    let client = Client::builder()
        .retry(plain(3))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client.get(server.url("/hang")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "fast");
    assert_eq!(started.elapsed(), Duration::from_secs(2) + 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_classifier_can_declare_an_answer_unprocessed_making_a_post_retryable() {
    use resilient_http::classify::{
        Class, Classification, Classifier, DefaultClassifier, classify_fn,
    };
    let server = FaultServer::start().await.unwrap();
    // This gateway answers 503 with `x-not-forwarded: 1` when it never reached the backend.
    server.script(
        "/pay",
        [
            Reply::status(503).header("x-not-forwarded", "1"),
            Reply::ok("paid"),
        ],
    );
    let client = Client::builder()
        .retry(plain(3))
        .classifier(classify_fn(|method, result| match result {
            Ok(r) if r.headers().contains_key("x-not-forwarded") => Classification {
                class: Class::Transient,
                delivery: Delivery::NotSent,
            },
            _ => DefaultClassifier.classify(method, result),
        }))
        .build()
        .unwrap();
    client.post(server.url("/pay")).send().await.unwrap();
    assert_eq!(server.hits("/pay"), 2);
}
