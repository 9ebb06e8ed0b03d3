//! Every row of the default classification, against a real server on loopback.

use std::time::{Duration, SystemTime};

use resilient_http::classify::{Class, Classification, Classifier, DefaultClassifier, classify_fn};
use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{ClosedPort, FaultServer, Reply};
use resilient_http::{Client, Delivery, ErrorKind};

/// Retries off: these tests look at one attempt's classification.
fn client() -> Client {
    Client::builder()
        .attempt_timeout(Duration::from_secs(5))
        .retry(RetryPolicy::never())
        .build()
        .unwrap()
}

#[tokio::test]
async fn success_statuses_come_back_as_responses() {
    let server = FaultServer::start().await.unwrap();
    let client = client();
    for code in [200, 201, 204, 301, 304] {
        let path = format!("/ok/{code}");
        server.script(&path, [Reply::status(code)]);
        let response = client.get(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(server.hits(&path), 1);
    }
}

#[tokio::test]
async fn failure_statuses_are_typed_errors_with_their_class() {
    let server = FaultServer::start().await.unwrap();
    let client = client();
    let rows = [
        (400, Class::Permanent),
        (401, Class::Permanent),
        (403, Class::Permanent),
        (404, Class::Permanent),
        (408, Class::Transient),
        (409, Class::Permanent),
        (429, Class::Transient),
        (500, Class::Transient),
        (501, Class::Permanent),
        (502, Class::Transient),
        (503, Class::Transient),
        (504, Class::Transient),
        (505, Class::Permanent),
    ];
    for (code, class) in rows {
        let path = format!("/fail/{code}");
        server.script(&path, [Reply::status(code).body("details")]);
        let err = client.get(server.url(&path)).send().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Status, "{code}");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(code));
        assert_eq!(err.class(), class, "{code}");
        assert_eq!(err.is_transient(), class == Class::Transient, "{code}");
        assert_eq!(err.delivery(), Delivery::Delivered);
        assert!(!err.is_timeout() && !err.is_connect());
        assert_eq!(err.attempts().len(), 1);
        assert_eq!(server.hits(&path), 1, "{code} must be sent exactly once");
    }
}

#[tokio::test]
async fn the_failure_response_stays_readable() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/teapot",
        [Reply::status(418)
            .header("x-reason", "tea")
            .body("short and stout")],
    );
    let mut err = client()
        .get(server.url("/teapot"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.headers().unwrap()["x-reason"], "tea");
    let response = err.take_response().unwrap();
    assert_eq!(response.text().await.unwrap(), "short and stout");
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date() {
    let server = FaultServer::start().await.unwrap();
    let client = client();
    server.script("/seconds", [Reply::status(429).retry_after_secs(7)]);
    let err = client.get(server.url("/seconds")).send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    let at = SystemTime::now() + Duration::from_secs(120);
    server.script("/date", [Reply::status(503).retry_after_date(at)]);
    let err = client.get(server.url("/date")).send().await.unwrap_err();
    let asked = err.retry_after().unwrap();
    assert!(
        asked > Duration::from_secs(100) && asked <= Duration::from_secs(120),
        "{asked:?}"
    );

    server.script(
        "/past",
        [Reply::status(503).retry_after_date(SystemTime::UNIX_EPOCH)],
    );
    let err = client.get(server.url("/past")).send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::ZERO));

    server.script(
        "/garbage",
        [Reply::status(503).header("retry-after", "soon-ish")],
    );
    let err = client.get(server.url("/garbage")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.retry_after(), None);
}

#[tokio::test]
async fn refused_connection_was_never_sent() {
    let closed = ClosedPort::bind().unwrap();
    let url = closed.url("/nobody");
    let err = client().get(url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.is_connect());
    assert!(err.is_transient());
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(err.attempts()[0].delivery, Delivery::NotSent);
    // The reqwest error stays reachable.
    let source = std::error::Error::source(&err).unwrap();
    assert!(
        source
            .downcast_ref::<reqwest::Error>()
            .unwrap()
            .is_connect()
    );
}

#[tokio::test]
async fn reset_after_sending_may_have_been_processed() {
    let server = FaultServer::start().await.unwrap();
    server.script("/reset", [Reply::reset()]);
    let err = client().get(server.url("/reset")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    assert_eq!(server.hits("/reset"), 1);
}

#[tokio::test]
async fn clean_close_without_answer_may_have_been_processed() {
    let server = FaultServer::start().await.unwrap();
    server.script("/close", [Reply::close()]);
    let err = client()
        .post(server.url("/close"))
        .body("order")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    assert_eq!(server.requests("/close")[0].body, "order");
}

#[tokio::test]
async fn malformed_status_line_is_a_permanent_invalid_response() {
    let server = FaultServer::start().await.unwrap();
    server.script("/garbled", [Reply::raw(&b"HTTP/1.1 OOPS\r\n\r\n"[..])]);
    let err = client()
        .get(server.url("/garbled"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err:?}");
    assert_eq!(err.class(), Class::Permanent);
}

#[tokio::test]
async fn a_custom_classifier_can_make_409_transient() {
    let server = FaultServer::start().await.unwrap();
    server.script("/locked", [Reply::status(409)]);
    server.script("/missing", [Reply::status(404)]);
    let client = Client::builder()
        .classifier(classify_fn(|method, result| match result {
            Ok(r) if r.status() == 409 => Classification::delivered(Class::Transient),
            _ => DefaultClassifier.classify(method, result),
        }))
        .build()
        .unwrap();
    let err = client.get(server.url("/locked")).send().await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.attempts()[0].class, Class::Transient);
    let err = client.get(server.url("/missing")).send().await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        server.hits("/locked"),
        3,
        "retried, as transient outcomes are"
    );
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(server.hits("/missing"), 1);
}

#[tokio::test]
async fn a_custom_classifier_can_accept_a_failure_status() {
    let server = FaultServer::start().await.unwrap();
    server.script("/gone", [Reply::status(410)]);
    let client = Client::builder()
        .classifier(classify_fn(|_, result| match result {
            Ok(_) => Classification::delivered(Class::Success),
            Err(e) => DefaultClassifier::classify_error(e),
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/gone")).send().await.unwrap();
    assert_eq!(response.status(), 410);
}

#[tokio::test]
async fn a_failed_tls_handshake_is_permanent_and_not_retried() {
    // The fault server speaks plain HTTP, so a TLS client's handshake fails.
    let server = FaultServer::start().await.unwrap();
    let url = format!("https://{}/secure", server.addr());
    let err = Client::new().unwrap().get(url).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(err.attempts().len(), 1, "not retried");
}

/// A connection lost during the TLS handshake says nothing about TLS: a server that reads the
/// ClientHello and closes is transient and retried, whichever TLS backend (OpenSSL reports
/// this clean close with no reason, which is not a failed handshake).
#[tokio::test]
async fn a_connection_closed_during_the_tls_handshake_is_transient() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.read(&mut [0; 4096]).await;
            let _ = socket.shutdown().await;
        }
    });
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
    let err = client
        .get(format!("https://{addr}/secure"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert_eq!(err.class(), Class::Transient, "{err:?}");
    assert_eq!(err.delivery(), Delivery::NotSent);
    assert_eq!(err.attempts().len(), 2, "retried");
}

/// A gateway that promises `x-not-processed` answers did no work: the classifier says they
/// were never sent, so even a POST is sent again. Whether the status or a body classifier
/// gave the class, the delivery is the classifier's: one verdict, both paths.
#[tokio::test(start_paused = true)]
async fn a_body_classifiers_verdict_keeps_the_classifiers_delivery() {
    use resilient_http::classify::body_classifier_fn;
    let server = FaultServer::start().await.unwrap();
    let not_processed = || Reply::status(503).header("x-not-processed", "1");
    let busy = || Reply::ok("busy").header("x-not-processed", "1");
    server.script("/status", [not_processed(), Reply::ok("done")]);
    server.script("/body", [busy(), Reply::ok("done")]);
    let client = Client::builder()
        .classifier(classify_fn(|method, result| {
            let verdict = DefaultClassifier.classify(method, result);
            match result {
                Ok(r) if r.headers().contains_key("x-not-processed") => Classification {
                    delivery: Delivery::NotSent,
                    ..verdict
                },
                _ => verdict,
            }
        }))
        .body_classifier(body_classifier_fn(|_, _, body| {
            (body == b"busy").then_some(Class::Transient)
        }))
        .build()
        .unwrap();
    for path in ["/status", "/body"] {
        let response = client.post(server.url(path)).body("order").send().await;
        assert_eq!(response.unwrap().text().await.unwrap(), "done", "{path}");
        assert_eq!(server.hits(path), 2, "{path}");
    }
}
