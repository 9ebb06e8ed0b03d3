//! The fault server itself: scripts, recordings, and each way of failing.

use std::time::Duration;

use resilient_http::testkit::{FaultServer, Reply};

#[tokio::test]
async fn scripts_play_in_order_and_the_last_reply_repeats() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/seq",
        [Reply::status(503), Reply::status(502), Reply::ok("fine")],
    );
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(
            http.get(server.url("/seq"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(seen, [503, 502, 200, 200, 200]);
    assert_eq!(server.hits("/seq"), 5);
}

#[tokio::test]
async fn unscripted_paths_answer_200_and_are_recorded_with_method_headers_and_body() {
    let server = FaultServer::start().await.unwrap();
    let http = reqwest::Client::new();
    let response = http
        .put(server.url("/things/1?v=2"))
        .header("idempotency-key", "abc")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let recorded = server.requests("/things/1");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].method, http::Method::PUT);
    assert_eq!(recorded[0].path_and_query, "/things/1?v=2");
    assert_eq!(recorded[0].headers["idempotency-key"], "abc");
    assert_eq!(recorded[0].body, "payload");
    assert_eq!(server.hits("/elsewhere"), 0);
}

#[tokio::test]
async fn an_invalid_scripted_header_answers_500_instead_of_panicking() {
    let server = FaultServer::start().await.unwrap();
    server.script("/bad", [Reply::status(200).header("bad name", "x")]);
    let response = reqwest::get(server.url("/bad")).await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("invalid header name")
    );
}

#[tokio::test(start_paused = true)]
async fn delays_follow_tokio_time() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/later",
        [Reply::ok("late").delay(Duration::from_secs(3600))],
    );
    let started = tokio::time::Instant::now();
    let response = reqwest::get(server.url("/later")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "late");
    assert!(started.elapsed() >= Duration::from_secs(3600));
}

#[tokio::test]
async fn dropping_the_server_drops_its_connections() {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let url = server.url("/hang");
    let pending = tokio::spawn(async move { reqwest::get(url).await });
    while server.hits("/hang") == 0 {
        tokio::task::yield_now().await;
    }
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the client still hangs")
        .unwrap();
    assert!(result.is_err());
}

#[tokio::test]
async fn a_body_can_be_cut_off_by_a_close_or_a_reset() {
    let server = FaultServer::start().await.unwrap();
    server.script("/close", [Reply::body_then_close(200, "{\"rows\": [1,")]);
    server.script("/reset", [Reply::body_then_reset(200, "{\"rows\": [1,")]);
    for path in ["/close", "/reset"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let err = response.bytes().await.unwrap_err();
        assert!(
            err.is_body() || err.is_decode() || err.is_request(),
            "{path}: {err:?}"
        );
    }
    assert_eq!(server.hits("/close"), 1);
    assert_eq!(server.hits("/reset"), 1);
}

#[tokio::test]
async fn count_only_counts_without_keeping_requests() {
    let server = FaultServer::start().await.unwrap();
    let http = reqwest::Client::new();
    http.get(server.url("/n")).send().await.unwrap();
    server.count_only();
    http.get(server.url("/n")).send().await.unwrap();
    http.get(server.url("/n")).send().await.unwrap();
    assert_eq!(server.hits("/n"), 3);
    assert_eq!(
        server.requests("/n").len(),
        1,
        "only the one before count_only"
    );
}
