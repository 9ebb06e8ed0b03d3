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

/// The new tests' result: `?` rather than `unwrap`.
type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn a_function_decides_each_reply_when_the_request_arrives() -> TestResult {
    let server = FaultServer::start().await?;
    // A script is overridden by a function, and a later script overrides the function.
    server.script("/f", [Reply::status(418)]);
    server.respond_with("/f", |request| {
        let wanted = request.headers.get("x-want").and_then(|v| v.to_str().ok());
        match wanted.and_then(|v| v.parse::<u16>().ok()) {
            Some(status) => Reply::status(status),
            None => Reply::ok(request.path_and_query.clone()),
        }
    });
    server.respond_with_any(|request| Reply::status(404).body(request.path_and_query.clone()));
    let http = reqwest::Client::new();
    let answer = |path: &'static str, want: Option<&'static str>| {
        let mut request = http.get(server.url(path));
        if let Some(want) = want {
            request = request.header("x-want", want);
        }
        async move {
            let response = request.send().await?;
            Ok::<_, reqwest::Error>((response.status().as_u16(), response.text().await?))
        }
    };
    assert_eq!(answer("/f?a=1", None).await?, (200, "/f?a=1".to_owned()));
    assert_eq!(answer("/f", Some("503")).await?.0, 503);
    assert_eq!(
        answer("/other?x", None).await?,
        (404, "/other?x".to_owned())
    );
    server.script("/scripted", [Reply::status(202)]);
    assert_eq!(
        answer("/scripted", None).await?.0,
        202,
        "a script beats the any-path function"
    );
    assert_eq!(server.hits("/f"), 2);
    assert_eq!(server.hits("/other"), 1);
    assert_eq!(
        server
            .requests("/other")
            .first()
            .map(|r| r.path_and_query.as_str()),
        Some("/other?x")
    );
    server.script("/f", [Reply::status(201)]);
    assert_eq!(
        answer("/f", Some("503")).await?.0,
        201,
        "the script replaced the function"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_comes_after_its_head() -> TestResult {
    let server = FaultServer::start().await?;
    server.script(
        "/slow",
        [Reply::ok("tail")
            .delay(Duration::from_secs(1))
            .body_after(Duration::from_secs(10))],
    );
    let started = tokio::time::Instant::now();
    let response = reqwest::get(server.url("/slow")).await?;
    let head = started.elapsed();
    assert!(
        head >= Duration::from_secs(1) && head < Duration::from_secs(2),
        "{head:?}"
    );
    assert_eq!(response.text().await?, "tail");
    let body = started.elapsed();
    assert!(
        body >= Duration::from_secs(11) && body < Duration::from_secs(12),
        "{body:?}"
    );
    Ok(())
}

/// Counts the values alive: a reply's `hold`.
struct Alive(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Alive {
    fn new(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Alive(count.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_held_value_lives_until_the_reply_is_over() -> TestResult {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    let server = FaultServer::start().await?;
    let alive = Arc::new(AtomicUsize::new(0));
    let count = alive.clone();
    server.respond_with("/slow", move |_| {
        Reply::ok("x")
            .body_after(Duration::from_millis(300))
            .hold(Alive::new(&count))
    });
    let count = alive.clone();
    server.respond_with("/hang", move |_| Reply::hang().hold(Alive::new(&count)));
    let count = alive.clone();
    server.respond_with("/reset", move |_| Reply::reset().hold(Alive::new(&count)));

    let http = reqwest::Client::new();
    let response = http.get(server.url("/slow")).send().await?;
    assert_eq!(alive.load(SeqCst), 1, "held while the body is to come");
    assert_eq!(response.text().await?, "x");
    let settled = |want: usize| {
        let alive = alive.clone();
        async move {
            for _ in 0..200 {
                if alive.load(SeqCst) == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(settled(0).await, "dropped once the body is sent");

    let hang = http
        .get(server.url("/hang"))
        .timeout(Duration::from_millis(300))
        .send();
    let waiting = tokio::spawn(hang);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(alive.load(SeqCst), 1, "held while the request hangs");
    assert!(waiting.await?.is_err_and(|e| e.is_timeout()));
    assert!(settled(0).await, "dropped once the client gave up");

    assert!(http.get(server.url("/reset")).send().await.is_err());
    assert!(settled(0).await, "dropped with the reset connection");
    Ok(())
}
