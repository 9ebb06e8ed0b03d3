//! `ClientBuilder::reqwest`: the user's settings reach the reqwest client the builder makes,
//! and the timeouts and retry the crate sets on it hold over the user's.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
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

/// The builder's connect timeout holds over one set inside `reqwest(..)`: the connection gives
/// up after 100 ms as a connect error, not at the 30 s attempt timeout. (Time is paused: the
/// timers fire in order, whatever the machine's speed.)
#[tokio::test(start_paused = true)]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "relies on Linux dropping SYNs to a listener whose accept queue is full"
)]
async fn our_connect_timeout_holds_over_the_users() {
    let (listener, _filler) = unanswered_port().await;
    let url = format!("http://{}/c", listener.local_addr().unwrap());
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .attempt_timeout(Duration::from_secs(30))
        .deadline(Duration::from_secs(60))
        .connect_timeout(Duration::from_millis(100))
        .reqwest(|b| b.connect_timeout(Duration::from_secs(3600)))
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let err = client.get(url).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert_eq!(err.class(), Class::Transient);
    assert_eq!(err.attempts().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
}

/// The default policy's attempt timeout holds over a `timeout` set inside `reqwest(..)`, also
/// when the crate leaves it to the reqwest client (a request without a timeout of its own, the
/// default policy's first attempt).
#[tokio::test]
async fn the_policys_attempt_timeout_holds_over_the_users() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::hang()]);
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .attempt_timeout(Duration::from_millis(200))
        .deadline(Duration::from_secs(20))
        .reqwest(|b| b.timeout(Duration::from_secs(3600)))
        .build()
        .unwrap();

    // Left to the reqwest client, the attempt (and so the call) would wait the user's hour.
    let call = client.get(server.url("/slow")).send();
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the attempt timeout did not apply")
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err:?}");
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(server.hits("/slow"), 1);
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
