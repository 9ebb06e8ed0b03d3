//! `ClientBuilder::reqwest` and `reqwest_client`: the user's settings reach the reqwest
//! client, its timeouts are the policy's when nothing else sets them and refused when
//! something does, and reqwest's own retry stays off.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
#[cfg(feature = "config")]
use resilient_http::breaker::BreakerConfig;
#[cfg(any(feature = "config", feature = "backoff"))]
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Class, Client, ErrorKind};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn tenant_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("acme"));
    headers
}

/// Every attempt carries the user agent and default headers; settings given in two calls add
/// up, the later winning.
#[tokio::test]
async fn the_user_agent_and_default_headers_reach_the_server_on_every_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script("/h", [Reply::status(503), Reply::ok("done")]);
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .reqwest(|b| b.user_agent("first/0").default_headers(tenant_headers()))
        .reqwest(|b| b.user_agent("orders/1.4"))
        .build()
        .unwrap();

    let body = client.get(server.url("/h")).text().await.unwrap();

    assert_eq!(body, "done");
    let requests = server.requests("/h");
    assert_eq!(requests.len(), 2);
    for request in requests {
        assert_eq!(request.headers["user-agent"], "orders/1.4");
        assert_eq!(request.headers["x-tenant"], "acme");
    }
}

/// A proxy set through `reqwest` carries the calls: the server, as the proxy, is asked for a
/// host that does not exist.
#[tokio::test]
async fn a_proxy_set_in_reqwest_carries_the_calls() {
    let proxy = FaultServer::start().await.unwrap();
    let proxy_url = proxy.url("/");
    let client = Client::builder()
        .reqwest(move |b| b.proxy(reqwest::Proxy::http(proxy_url).unwrap()))
        .build()
        .unwrap();

    let body = client
        .get("http://orders.invalid/o/7")
        .text()
        .await
        .unwrap();

    assert_eq!(body, "ok");
    let requests = proxy.requests("/o/7");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].headers["host"], "orders.invalid");
}

/// A loopback port where a connection is never established: a listener whose accept queue
/// (length 0, room for one) is full, so the kernel drops further SYNs and the client waits.
/// The filler connection and the listener must live as long as the test needs the port.
async fn unanswered_port() -> (TcpListener, TcpStream) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let filler = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    (listener, filler)
}

/// A connect timeout set inside `reqwest(..)`, and no other, is the client's: the connection
/// gives up after 100 ms as a connect error, not at the 30 s attempt timeout. (Time is paused:
/// the timers fire in order, whatever the machine's speed.)
#[tokio::test(start_paused = true)]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "relies on Linux dropping SYNs to a listener whose accept queue is full"
)]
async fn a_connect_timeout_set_in_reqwest_alone_is_used() {
    let (listener, _filler) = unanswered_port().await;
    let url = format!("http://{}/c", listener.local_addr().unwrap());
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .attempt_timeout(Duration::from_secs(30))
        .deadline(Duration::from_secs(60))
        .reqwest(|b| b.connect_timeout(Duration::from_millis(100)))
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let err = client.get(url).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.attempts().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(1), "{err}");
}

/// A `timeout` set inside `reqwest(..)`, and no attempt timeout of ours, is the attempt
/// timeout: each of the two attempts at a hanging server ends after 200 ms. (It used to be
/// replaced by the default 10 s: one attempt, ended by the 3 s deadline.)
#[tokio::test(start_paused = true)]
async fn a_timeout_set_in_reqwest_alone_is_the_attempt_timeout() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::hang()]);
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .deadline(Duration::from_secs(3))
        .reqwest(|b| b.timeout(Duration::from_millis(200)))
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let err = client.get(server.url("/slow")).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert_eq!(err.attempts().len(), 2, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits("/slow"), 2);
}

/// The same for the `timeout` of a client handed over with `reqwest_client(..)`, which
/// every attempt used to replace with a per-request timeout of its own.
#[tokio::test(start_paused = true)]
async fn the_timeout_of_a_given_client_alone_is_the_attempt_timeout() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::hang()]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .deadline(Duration::from_secs(3))
        .reqwest_client(http)
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let err = client.get(server.url("/slow")).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert_eq!(err.attempts().len(), 2, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A reload keeps it, by the same rule.
    client
        .reload(Client::builder().deadline(Duration::from_secs(3)))
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = client.get(server.url("/slow")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// reqwest's `read_timeout` (a limit on each wait for the next bytes, which this crate has
/// not) still works under the client: a body that stalls ends after 200 ms, not at the 10 s
/// attempt timeout, as an attempt timeout.
#[tokio::test(start_paused = true)]
async fn reqwests_read_timeout_still_works() {
    let server = FaultServer::start().await.unwrap();
    server.script("/stall", [Reply::stall_body(200, "{\"items\": [")]);
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .reqwest(|b| b.read_timeout(Duration::from_millis(200)))
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let err = client.get(server.url("/stall")).bytes().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// One timeout given two ways is refused, naming both and the fix, whichever way ours came.
#[cfg(feature = "config")]
#[test]
fn a_timeout_set_both_in_reqwest_and_here_is_refused() {
    let given = || {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let refused = [
        (
            Client::builder()
                .attempt_timeout(Duration::from_secs(2))
                .reqwest(|b| b.timeout(Duration::from_millis(500)))
                .build()
                .unwrap_err(),
            [
                "reqwest's timeout 500ms in reqwest(..)",
                "2s by attempt_timeout(..)",
            ],
        ),
        (
            Client::builder()
                .reqwest_client(given())
                .default_policy(EndpointPolicy::new().attempt_timeout(Duration::from_secs(2)))
                .build()
                .unwrap_err(),
            [
                "the client given to reqwest_client(..)",
                "by default_policy(..)",
            ],
        ),
        (
            Client::builder()
                .config_toml("[default]\nmax_attempts = 2\nattempt_timeout = \"2s\"\n")
                .reqwest_client(given())
                .build()
                .unwrap_err(),
            [
                "reqwest_client(..)",
                "by <config_toml>:3: \"attempt_timeout\" in [default]",
            ],
        ),
        (
            Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .reqwest(|b| b.connect_timeout(Duration::from_secs(2)))
                .build()
                .unwrap_err(),
            [
                "reqwest's connect_timeout 2s in reqwest(..)",
                "1s by connect_timeout(..)",
            ],
        ),
        (
            Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .reqwest_client(reqwest::Client::new())
                .build()
                .unwrap_err(),
            [
                "connect_timeout 1s (connect_timeout(..))",
                "set it on that client",
            ],
        ),
    ];
    for (err, says) in refused {
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        for part in says {
            assert!(err.to_string().contains(part), "{err}\nshould say: {part}");
        }
    }
}

/// reqwest's own retry stays off whatever the user sets: its retries would be requests that
/// the history, the breaker and the metrics never see. Here the user's would resend every 503
/// up to five times within each of our attempts.
#[tokio::test]
async fn reqwests_own_retry_stays_off() {
    let server = FaultServer::start().await.unwrap();
    server.script("/r", [Reply::status(503)]);
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .reqwest(|b| {
            let resend_503 = reqwest::retry::for_host("127.0.0.1")
                .no_budget()
                .max_retries_per_request(5)
                .classify_fn(|rr| match rr.status() {
                    Some(status) if status == 503 => rr.retryable(),
                    _ => rr.success(),
                });
            b.retry(resend_503)
        })
        .build()
        .unwrap();

    let err = client.get(server.url("/r")).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.attempts().len(), 2);
    assert_eq!(server.hits("/r"), 2);
}

#[test]
fn reqwest_settings_with_a_given_client_are_a_config_error() {
    let err = Client::builder()
        .reqwest_client(reqwest::Client::new())
        .reqwest(|b| b.user_agent("x"))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("reqwest_client"), "{err}");
}

#[cfg(feature = "reqwest-middleware")]
#[test]
fn reqwest_settings_in_the_middleware_are_a_config_error() {
    let err = resilient_http::middleware::ResilientMiddleware::new(
        Client::builder().reqwest(|b| b.user_agent("x")),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("ResilientMiddleware"), "{err}");
}

#[cfg(feature = "config")]
fn attempts(n: u32) -> EndpointPolicy {
    EndpointPolicy::new().max_attempts(n)
}

#[cfg(feature = "config")]
fn retry(n: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(n)
        .backoff_base(Duration::ZERO)
        .build()
        .unwrap()
}

/// A policy file's `[default]` with `attempts = n` and no backoff.
#[cfg(feature = "config")]
fn file(n: u32) -> String {
    format!("[default]\nmax_attempts = {n}\n[default.backoff]\nbase = \"0s\"\n")
}

/// Each way of setting the default policy's attempts, in each order: the later call wins,
/// setting by setting; a `RetryPolicy` sets the settings it names. (`retry(..)` used to lose
/// to `default_policy(..)` and to a file in either order.)
#[cfg(feature = "config")]
#[tokio::test]
async fn the_later_of_two_ways_to_set_attempts_wins() {
    let server = FaultServer::start().await.unwrap();
    let no_backoff =
        || Client::builder().default_policy(EndpointPolicy::new().backoff_base(Duration::ZERO));
    let cases = [
        (
            "retry, then default_policy",
            Client::builder()
                .retry(retry(2))
                .default_policy(attempts(3)),
            3,
        ),
        (
            "default_policy, then retry",
            no_backoff().default_policy(attempts(3)).retry(retry(2)),
            2,
        ),
        (
            "retry, then a file",
            Client::builder().retry(retry(2)).config_toml(&file(4)),
            4,
        ),
        (
            "a file, then retry",
            Client::builder().config_toml(&file(4)).retry(retry(2)),
            2,
        ),
        (
            "a file, then default_policy",
            Client::builder()
                .config_toml(&file(4))
                .default_policy(attempts(3)),
            3,
        ),
        (
            "default_policy, then a file",
            no_backoff()
                .default_policy(attempts(3))
                .config_toml(&file(4)),
            4,
        ),
        // A later call that does not name the setting leaves it.
        (
            "retry, then default_policy naming another setting",
            Client::builder()
                .retry(retry(2))
                .default_policy(EndpointPolicy::new().retry_after_cap(Duration::from_secs(1))),
            2,
        ),
        (
            "retry, then a file naming another setting",
            Client::builder()
                .retry(retry(2))
                .config_toml("[default]\nbody_limit = 1024\n"),
            2,
        ),
    ];
    for (index, (case, builder, expected)) in cases.into_iter().enumerate() {
        let path = format!("/attempts-{index}");
        server.script(&path, [Reply::status(503)]);
        let client = builder.build().unwrap();

        let err = client.get(server.url(&path)).send().await.unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Status, "{case}: {err}");
        assert_eq!(server.hits(&path), expected, "{case}");
    }
}

/// The breaker, on and off, each way and in each order (`circuit_breaker(..)` used to lose to
/// a default policy or file that turned it off, in either order).
#[cfg(feature = "config")]
#[test]
fn the_later_of_two_ways_to_turn_the_breaker_on_or_off_wins() {
    let on = || BreakerConfig::builder().min_calls(2).build().unwrap();
    let off = || EndpointPolicy::new().breaker_enabled(false);
    let file_off = "[default.breaker]\nenabled = false\n";
    let cases = [
        (
            "circuit_breaker, then no_circuit_breaker",
            Client::builder().circuit_breaker(on()).no_circuit_breaker(),
            false,
        ),
        (
            "no_circuit_breaker, then circuit_breaker",
            Client::builder().no_circuit_breaker().circuit_breaker(on()),
            true,
        ),
        (
            "default_policy off, then circuit_breaker",
            Client::builder()
                .default_policy(off())
                .circuit_breaker(on()),
            true,
        ),
        (
            "circuit_breaker, then default_policy off",
            Client::builder()
                .circuit_breaker(on())
                .default_policy(off()),
            false,
        ),
        (
            "a file off, then circuit_breaker",
            Client::builder()
                .config_toml(file_off)
                .circuit_breaker(on()),
            true,
        ),
        (
            "circuit_breaker, then a file off",
            Client::builder()
                .circuit_breaker(on())
                .config_toml(file_off),
            false,
        ),
        (
            "no_circuit_breaker, then default_policy on",
            Client::builder()
                .no_circuit_breaker()
                .default_policy(EndpointPolicy::new().breaker_enabled(true)),
            true,
        ),
    ];
    for (case, builder, expected) in cases {
        let client = builder.build().unwrap();
        assert_eq!(client.breakers().is_some(), expected, "{case}");
    }
}

/// The attempt timeout from the setter, a default policy and a file, in each order: the
/// later wins. Each call is one attempt at a hanging server, on paused time.
#[cfg(feature = "config")]
#[tokio::test(start_paused = true)]
async fn the_later_of_two_ways_to_set_the_attempt_timeout_wins() {
    let server = FaultServer::start().await.unwrap();
    server.script("/hang", [Reply::hang()]);
    let one = Duration::from_secs(1);
    let three = EndpointPolicy::new().attempt_timeout(Duration::from_secs(3));
    let file_three = "[default]\nattempt_timeout = \"3s\"\n";
    let base = || Client::builder().retry(RetryPolicy::never());
    let cases = [
        (
            "the setter, then a file",
            base().attempt_timeout(one).config_toml(file_three),
            3,
        ),
        (
            "a file, then the setter",
            base().config_toml(file_three).attempt_timeout(one),
            1,
        ),
        (
            "the setter, then default_policy",
            base().attempt_timeout(one).default_policy(three.clone()),
            3,
        ),
        (
            "default_policy, then the setter",
            base().default_policy(three).attempt_timeout(one),
            1,
        ),
    ];
    for (case, builder, seconds) in cases {
        let client = builder.build().unwrap();
        let started = tokio::time::Instant::now();

        let err = client.get(server.url("/hang")).send().await.unwrap_err();

        assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{case}: {err}");
        assert_eq!(started.elapsed().as_secs(), seconds, "{case}");
    }
}

/// A `backoff` crate schedule given with `retry(..)` and the default policy's backoff
/// settings: the later wins here too (the schedule used to win in either order).
#[cfg(feature = "backoff")]
#[tokio::test(start_paused = true)]
async fn the_later_of_a_backoff_schedule_and_backoff_settings_wins() {
    use resilient_http::retry::Jitter;

    let server = FaultServer::start().await.unwrap();
    let schedule = backoff::ExponentialBackoff {
        initial_interval: Duration::from_millis(50),
        randomization_factor: 0.0,
        multiplier: 2.0,
        max_elapsed_time: None,
        ..backoff::ExponentialBackoff::default()
    };
    let scheduled = RetryPolicy::builder()
        .backoff_schedule(schedule)
        .build()
        .unwrap();
    let settings = EndpointPolicy::new()
        .backoff_base(Duration::from_millis(200))
        .jitter(Jitter::None);
    let cases = [
        (
            "the schedule, then settings",
            Client::builder()
                .retry(scheduled.clone())
                .default_policy(settings.clone()),
            600,
        ),
        (
            "settings, then the schedule",
            Client::builder().default_policy(settings).retry(scheduled),
            150,
        ),
    ];
    for (index, (case, builder, millis)) in cases.into_iter().enumerate() {
        let path = format!("/backoff-{index}");
        server.script(
            &path,
            [Reply::status(503), Reply::status(503), Reply::ok("ok")],
        );
        let client = builder.build().unwrap();
        let started = tokio::time::Instant::now();

        client.get(server.url(&path)).send().await.unwrap();

        assert_eq!(started.elapsed(), Duration::from_millis(millis), "{case}");
    }
}

#[cfg(feature = "config")]
#[path = "common/logs.rs"]
mod logs;

/// A connect timeout under `ResilientLayer` (whose service below connects by its own
/// settings) is not refused, so that one policy file serves a client and an adapter, but it
/// is said: a WARN at build, naming where it was set.
#[cfg(feature = "config")]
#[test]
fn a_connect_timeout_unused_under_an_adapter_is_warned_about() {
    use resilient_http::ResilientLayer;

    let builder = || Client::builder().config_toml("[default]\nconnect_timeout = \"2s\"\n");
    let (layer, lines) = logs::logged(tracing::Level::WARN, || ResilientLayer::new(builder()));
    assert!(layer.is_ok());
    let said = lines
        .iter()
        .filter(|line| line.contains("connect_timeout 2s"))
        .count();
    assert_eq!(said, 1, "{lines:?}");
    assert!(
        lines[0].contains("<config_toml>:2: \"connect_timeout\" in [default]"),
        "{lines:?}"
    );
    // The client uses it: nothing to say.
    let (client, lines) = logs::logged(tracing::Level::WARN, || builder().build());
    assert!(client.is_ok());
    assert!(lines.is_empty(), "{lines:?}");
}

/// A reload keeps the `timeout` set in `reqwest(..)` as the attempt timeout, so one that sets
/// an attempt timeout too is refused, and changes nothing.
#[test]
fn a_reload_that_sets_a_second_attempt_timeout_is_refused() {
    let client = Client::builder()
        .reqwest(|b| b.timeout(Duration::from_millis(500)))
        .build()
        .unwrap();

    let err = client
        .reload(Client::builder().attempt_timeout(Duration::from_secs(2)))
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(
        err.to_string()
            .contains("reqwest's timeout 500ms in reqwest(..)"),
        "{err}"
    );
    assert!(client.reload(Client::builder()).is_ok());
}

/// A breaker setting, each way and in each order: a `BreakerConfig` that names `min_calls`
/// sets it (2), a later default policy changes it (5). Six failing calls: the breaker
/// opens after the `min_calls`-th, and the rest never reach the server. (The default
/// policy's used to win in either order.)
#[cfg(feature = "config")]
#[tokio::test]
async fn the_later_of_two_ways_to_set_a_breaker_setting_wins() {
    let server = FaultServer::start().await.unwrap();
    let config = || {
        BreakerConfig::builder()
            .min_calls(2)
            .window(resilient_http::breaker::Window::Calls(10))
            .build()
            .unwrap()
    };
    let five = || EndpointPolicy::new().breaker_min_calls(5);
    let cases = [
        (
            "circuit_breaker, then default_policy",
            Client::builder()
                .circuit_breaker(config())
                .default_policy(five()),
            5,
        ),
        (
            "default_policy, then circuit_breaker",
            Client::builder()
                .default_policy(five())
                .circuit_breaker(config()),
            2,
        ),
    ];
    for (index, (case, builder, reached)) in cases.into_iter().enumerate() {
        let path = format!("/breaker-{index}");
        server.script(&path, [Reply::status(503)]);
        let client = builder.retry(RetryPolicy::never()).build().unwrap();
        let mut kinds = Vec::new();
        for _ in 0..6 {
            kinds.push(
                client
                    .get(server.url(&path))
                    .send()
                    .await
                    .unwrap_err()
                    .kind(),
            );
        }

        assert_eq!(server.hits(&path), reached, "{case}: {kinds:?}");
        assert_eq!(kinds[5], ErrorKind::CircuitOpen, "{case}");
    }
}

/// Hits of `calls` GETs (or POSTs) at a path that always answers 503, each call's error
/// checked; with a clean path per case.
#[cfg(feature = "config")]
async fn hits_of(
    server: &FaultServer,
    path: &str,
    client: &Client,
    method: http::Method,
    calls: usize,
) -> (usize, Vec<ErrorKind>) {
    server.script(path, [Reply::status(503)]);
    let mut kinds = Vec::new();
    for _ in 0..calls {
        let err = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap_err();
        kinds.push(err.kind());
    }
    (server.hits(path), kinds)
}

/// `retry(..)` changes only the settings its policy names: what it leaves out keeps what a
/// file or `default_policy` set before it. (It used to reset every retry setting: the file's
/// 1 attempt became 3, the zero backoff came back as 100 ms.)
#[cfg(feature = "config")]
#[tokio::test(start_paused = true)]
async fn retry_changes_only_the_settings_it_names() {
    use resilient_http::retry::Jitter;

    let server = FaultServer::start().await.unwrap();
    let get = http::Method::GET;

    // A file's attempts, then a policy that names nothing.
    let client = Client::builder()
        .config_toml("[default]\nmax_attempts = 1")
        .retry(RetryPolicy::builder().build().unwrap())
        .build()
        .unwrap();
    let (hits, _) = hits_of(&server, "/named-file", &client, get.clone(), 1).await;
    assert_eq!(hits, 1, "the file's max_attempts");

    // A zero backoff, then a policy that names the attempts only: no sleep between them.
    let client = Client::builder()
        .default_policy(EndpointPolicy::new().backoff_base(Duration::ZERO))
        .retry(RetryPolicy::builder().max_attempts(2).build().unwrap())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let (hits, _) = hits_of(&server, "/named-backoff", &client, get.clone(), 1).await;
    assert_eq!(hits, 2, "retry's max_attempts");
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "default_policy's backoff"
    );

    // The same with a backoff that shows: 2 s, no jitter, kept.
    let client = Client::builder()
        .default_policy(
            EndpointPolicy::new()
                .backoff_base(Duration::from_secs(2))
                .jitter(Jitter::None),
        )
        .retry(RetryPolicy::builder().max_attempts(2).build().unwrap())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let (hits, _) = hits_of(&server, "/named-backoff-2s", &client, get.clone(), 1).await;
    assert_eq!(hits, 2);
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    // The reqwest-retry habit: a file, then `retry` for the backoff. The file's attempts and
    // non-idempotent retries stay (a POST is retried), as do its other retry settings.
    let their_file = "[default]\nmax_attempts = 4\nretry_non_idempotent = true\n\
                idempotency_key = true\nretry_after_cap = \"1s\"\n";
    let client = Client::builder()
        .config_toml(their_file)
        .retry(
            RetryPolicy::builder()
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (hits, _) = hits_of(&server, "/named-post", &client, http::Method::POST, 1).await;
    assert_eq!(hits, 4, "the file's max_attempts and retry_non_idempotent");

    // `never()` names the attempts: one, whatever the file said.
    let client = Client::builder()
        .config_toml(&file(4))
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    let (hits, _) = hits_of(&server, "/named-never", &client, get.clone(), 1).await;
    assert_eq!(hits, 1, "never() after a file");

    // A later file wins for what it names, and leaves what `retry` named otherwise.
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .retry_non_idempotent(true)
                .backoff_base(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .config_toml("[default]\nmax_attempts = 3\n")
        .build()
        .unwrap();
    let (hits, _) = hits_of(&server, "/named-later-file", &client, http::Method::POST, 1).await;
    assert_eq!(
        hits, 3,
        "the later file's max_attempts, retry's retry_non_idempotent"
    );

    // A policy rebuilt with `to_builder` keeps its names: the attempts, not the backoff.
    let named = RetryPolicy::builder().max_attempts(2).build().unwrap();
    let client = Client::builder()
        .default_policy(EndpointPolicy::new().backoff_base(Duration::ZERO))
        .retry(
            named
                .to_builder()
                .retry_non_idempotent(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let (hits, _) = hits_of(&server, "/named-to-builder", &client, http::Method::POST, 1).await;
    assert_eq!(hits, 2);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// `circuit_breaker(..)` changes only the settings its config names (and turns the breaker
/// on). Six failing calls, one attempt each: the breaker opens after `min_calls` of them and
/// the rest never reach the server. (It used to reset every breaker setting: the file's
/// `min_calls = 2` became 20, and all six calls went through.)
#[cfg(feature = "config")]
#[tokio::test]
async fn circuit_breaker_changes_only_the_settings_it_names() {
    let server = FaultServer::start().await.unwrap();
    let open_for = || {
        BreakerConfig::builder()
            .open_for(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let min_calls = |n| BreakerConfig::builder().min_calls(n).build().unwrap();
    let file_two = "[default.breaker]\nwindow = 10\nmin_calls = 2\n";
    let cases = [
        (
            "a file, then circuit_breaker naming another setting",
            Client::builder()
                .config_toml(file_two)
                .circuit_breaker(open_for()),
            2,
        ),
        (
            "a file off, then circuit_breaker naming another setting: on, the file's min_calls",
            Client::builder()
                .config_toml("[default.breaker]\nenabled = false\nwindow = 10\nmin_calls = 2\n")
                .circuit_breaker(open_for()),
            2,
        ),
        (
            "default_policy, then circuit_breaker naming another setting",
            Client::builder()
                .default_policy(
                    EndpointPolicy::new()
                        .breaker_window(10)
                        .breaker_min_calls(2),
                )
                .circuit_breaker(open_for()),
            2,
        ),
        (
            "circuit_breaker, then a file naming min_calls",
            Client::builder()
                .circuit_breaker(min_calls(2))
                .config_toml("[default.breaker]\nmin_calls = 5\n"),
            5,
        ),
        (
            "a file, then circuit_breaker naming min_calls",
            Client::builder()
                .config_toml("[default.breaker]\nmin_calls = 5\n")
                .circuit_breaker(min_calls(3)),
            3,
        ),
    ];
    for (index, (case, builder, reached)) in cases.into_iter().enumerate() {
        let path = format!("/breaker-named-{index}");
        let client = builder.retry(RetryPolicy::never()).build().unwrap();

        let (hits, kinds) = hits_of(&server, &path, &client, http::Method::GET, 6).await;

        assert_eq!(hits, reached, "{case}: {kinds:?}");
        assert_eq!(kinds[5], ErrorKind::CircuitOpen, "{case}");
    }
}

/// A timeout on the `reqwest::Client` right below a `ResilientLayer` is replaced by each
/// attempt's own timeout: the layer says so, once, when the stack is built; a client without
/// one makes it say nothing.
#[test]
fn a_timeout_on_the_client_below_a_resilient_layer_is_warned_about() {
    use resilient_http::ResilientLayer;
    use tower::Layer;

    let layer = ResilientLayer::new(Client::builder()).unwrap();
    let with_timeout = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (_service, lines) = logs::logged(tracing::Level::WARN, || layer.layer(with_timeout));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("timeout of 300ms") && lines[0].contains("set attempt_timeout"),
        "{lines:?}"
    );
    let plain = reqwest::Client::new();
    let (_service, lines) = logs::logged(tracing::Level::WARN, || layer.layer(plain));
    assert!(lines.is_empty(), "{lines:?}");
}
