//! The error's shape: one readable line, no secrets anywhere, typed failures for bad input.

use std::error::Error as _;
use std::time::Duration;

use resilient_http::retry::RetryPolicy;
use resilient_http::testkit::{ClosedPort, FaultServer, Reply};
use resilient_http::{Class, Client, Delivery, Error, ErrorKind};

const SECRETS: [&str; 4] = ["hunter2", "s3cr3t-token", "cookie-value", "query-secret"];

/// Display, alternate Display, Debug and every source's Display and Debug.
fn everything_printed(err: &Error) -> String {
    let mut out = format!("{err}\n{err:#}\n{err:?}\n{err:#?}\n");
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    out
}

fn assert_no_secrets(err: &Error) {
    let printed = everything_printed(err);
    for secret in SECRETS {
        assert!(!printed.contains(secret), "{secret} leaked in:\n{printed}");
    }
}

fn client() -> Client {
    Client::builder()
        .attempt_timeout(Duration::from_secs(5))
        .retry(RetryPolicy::never())
        .build()
        .unwrap()
}

#[test]
fn the_error_is_one_pointer_and_thread_safe() {
    fn is_send_sync_static<T: Send + Sync + 'static>() {}
    is_send_sync_static::<Error>();
    assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
}

#[tokio::test]
async fn display_is_one_readable_line() {
    let server = FaultServer::start().await.unwrap();
    server.script("/orders", [Reply::status(503)]);
    let err = client()
        .get(server.url("/orders"))
        .send()
        .await
        .unwrap_err();
    let line = err.to_string();
    let prefix = format!("GET {} failed after 1 attempt in ", server.url("/orders"));
    assert!(line.starts_with(&prefix), "{line}");
    assert!(
        line.ends_with(": 503 Service Unavailable (transient, attempts used up)"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[tokio::test]
async fn secrets_never_appear_in_status_errors() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/pay",
        [Reply::status(401).header("set-cookie", "session=cookie-value")],
    );
    let url = format!(
        "http://alice:hunter2@{}/pay?token=query-secret&page=2",
        server.addr()
    );
    let err = client()
        .post(url)
        .bearer_auth("s3cr3t-token")
        .header("cookie", "id=cookie-value")
        .header("proxy-authorization", "Basic hunter2")
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_no_secrets(&err);
    let shown = err.url().unwrap().as_str();
    assert!(shown.ends_with("/pay?token=REDACTED&page=2"), "{shown}");
    // They were really sent: the redaction is ours, not a lost header.
    let received = &server.requests("/pay")[0];
    let auth: Vec<_> = received.headers.get_all("authorization").iter().collect();
    assert!(auth.iter().any(|v| *v == "Bearer s3cr3t-token"), "{auth:?}");
    assert!(received.path_and_query.contains("token=query-secret"));
}

#[tokio::test]
async fn secrets_never_appear_in_transport_errors() {
    let closed = ClosedPort::bind().unwrap();
    let refused = closed.url("/x");
    let url = refused.replace("http://", "http://bob:hunter2@") + "?api_key=query-secret";
    let err = client()
        .get(url)
        .bearer_auth("s3cr3t-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_no_secrets(&err);
    // The reqwest error in the chain shows the redacted URL too.
    let reqwest_error = err
        .source()
        .unwrap()
        .downcast_ref::<reqwest::Error>()
        .unwrap();
    assert!(
        reqwest_error
            .url()
            .unwrap()
            .as_str()
            .contains("api_key=REDACTED")
    );
}

#[tokio::test]
async fn an_invalid_url_is_a_typed_error_not_a_panic() {
    for url in ["not a url", "http://", "ftp//missing-colon", "http://[::1"] {
        let err = client().get(url).send().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{url}");
        assert_eq!(err.class(), Class::Permanent);
        assert_eq!(err.delivery(), Delivery::NotSent);
        assert!(err.source().is_some(), "the builder error stays reachable");
    }
}

#[tokio::test]
async fn an_invalid_header_is_a_typed_error_not_a_panic() {
    let server = FaultServer::start().await.unwrap();
    let err = client()
        .get(server.url("/h"))
        .header("x-bad", "line\nbreak")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let err = client()
        .get(server.url("/h"))
        .header("bad name", "v")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.hits("/h"), 0, "nothing was sent");
}

#[test]
fn invalid_configuration_is_rejected_at_build() {
    for builder in [
        Client::builder().attempt_timeout(Duration::ZERO),
        Client::builder().deadline(Duration::ZERO),
        Client::builder().connect_timeout(Duration::ZERO),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("must be above zero"), "{err}");
    }
}

#[tokio::test]
async fn the_history_says_what_happened() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slowfail",
        [Reply::status(502).delay(Duration::from_millis(50))],
    );
    let err = client()
        .delete(server.url("/slowfail"))
        .send()
        .await
        .unwrap_err();
    let attempt = &err.attempts()[0];
    assert_eq!(attempt.number, 1);
    assert_eq!(attempt.started_after, Duration::ZERO);
    assert_eq!(attempt.delay_before, Duration::ZERO);
    assert!(
        attempt.duration >= Duration::from_millis(45),
        "{:?}",
        attempt.duration
    );
    assert_eq!(
        attempt.outcome,
        resilient_http::AttemptOutcome::Status(http::StatusCode::BAD_GATEWAY)
    );
    assert_eq!(attempt.class, Class::Transient);
    assert_eq!(attempt.delivery, Delivery::Delivered);
    assert!(err.elapsed() >= attempt.duration);
    assert_eq!(err.method(), Some(&http::Method::DELETE));
}

#[tokio::test]
async fn a_redirect_error_does_not_leak_the_target_credentials() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/moved",
        [Reply::status(302).header(
            "location",
            "ftp://bob:hunter2@127.0.0.1/x?token=query-secret",
        )],
    );
    let err = client().get(server.url("/moved")).send().await.unwrap_err();
    assert_no_secrets(&err);
}

#[tokio::test]
async fn limits_as_large_as_duration_max_mean_no_limit_not_a_panic() {
    let server = FaultServer::start().await.unwrap();
    // A policy's timeouts go up to a day; the layers take any duration.
    let a_day = Duration::from_secs(86_400);
    let client = Client::builder()
        .attempt_timeout(a_day)
        .deadline(a_day)
        .build()
        .unwrap();
    let response = client.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
    use tower::{ServiceBuilder, ServiceExt};
    let http = reqwest::Client::new();
    let stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::MAX))
        .layer(AttemptTimeoutLayer::new(Duration::MAX))
        .layer(resilient_http::classify::ClassifyLayer::new(
            resilient_http::classify::DefaultClassifier,
        ))
        .service(http);
    let request = reqwest::Request::new(http::Method::GET, server.url("/ok").parse().unwrap());
    assert_eq!(stack.oneshot(request).await.unwrap().status(), 200);
}

/// Errors raised while the body is read inside the attempt name the request, as every other
/// error does: a body over the limit (announced or found while reading), a body cut off, a
/// body that stalls and a broken chunked encoding, through each way of reading it there.
#[tokio::test(start_paused = true)]
async fn errors_while_reading_a_body_name_the_request() {
    let server = FaultServer::start().await.unwrap();
    let big = "x".repeat(2048);
    let big_chunked = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         800\r\n{big}\r\n0\r\n\r\n"
    );
    let bad_chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
                       zz\r\nnot a chunk\r\n";
    let bodies = [
        ("too-large", Reply::ok(big), ErrorKind::BodyTooLarge),
        (
            "too-large-chunked",
            Reply::raw(big_chunked),
            ErrorKind::BodyTooLarge,
        ),
        (
            "cut-off",
            Reply::body_then_close(200, "par"),
            ErrorKind::ConnectionClosed,
        ),
        (
            "stalled",
            Reply::stall_body(200, "par"),
            ErrorKind::AttemptTimeout,
        ),
        ("bad-chunked", Reply::raw(bad_chunked), ErrorKind::Transport),
    ];
    let client = Client::builder()
        .attempt_timeout(Duration::from_secs(5))
        .retry(RetryPolicy::never())
        .default_policy(resilient_http::policy::EndpointPolicy::new().body_limit(1024))
        .build()
        .unwrap();
    for (name, reply, _kind) in bodies {
        for how in ["send_buffered", "bytes", "send_with"] {
            let path = format!("/{name}-{how}");
            server.script(&path, [reply.clone()]);
            let request = client.get(server.url(&path));
            let err = match how {
                "send_buffered" => request.send_buffered().await.map(drop),
                "bytes" => request.bytes().await.map(drop),
                _ => request
                    .send_with(|response| async move { Ok(response.bytes().await?) })
                    .await
                    .map(drop),
            }
            .unwrap_err();
            let url = server.url(&path);
            assert_eq!(err.method(), Some(&http::Method::GET), "{path}: {err}");
            assert_eq!(err.url().map(|u| u.as_str()), Some(&*url), "{path}: {err}");
            let prefix = format!("GET {url} failed after 1 attempt in ");
            assert!(err.to_string().starts_with(&prefix), "{path}: {err}");
            assert_eq!(err.status(), Some(http::StatusCode::OK), "{path}: {err}");
        }
    }
}

/// A reader's "come back later" found in a body (an error of its own).
#[derive(Debug)]
struct Busy(&'static str);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Busy {}

/// Up to 3 attempts, 100 ms then 200 ms apart.
fn three_attempts() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(3)
        .jitter(resilient_http::retry::Jitter::None)
        .build()
        .unwrap()
}

/// Retries up to 3 attempts; a classifier that calls every transport error
/// permanent, so an error a reader made keeping its class is not the classifier's doing.
fn retrying_client() -> Client {
    use resilient_http::classify::{Classification, Classifier, DefaultClassifier, classify_fn};
    Client::builder()
        .retry(three_attempts())
        .classifier(classify_fn(|method, result| match result {
            Ok(_) => DefaultClassifier.classify(method, result),
            Err(error) => Classification {
                class: Class::Permanent,
                ..DefaultClassifier::classify_error(error)
            },
        }))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_reader_makes_transient_and_permanent_errors_that_keep_their_class() {
    let server = FaultServer::start().await.unwrap();
    let client = retrying_client();
    let read = |response: reqwest::Response| async move {
        let body = response.text().await?;
        match body.as_str() {
            "busy" => Err(Error::transient(Busy("still preparing"))),
            "schema 7" => Err(Error::permanent(Busy("unknown schema version 7"))),
            _ => Ok(body),
        }
    };

    server.script(
        "/busy",
        [Reply::ok("busy"), Reply::ok("busy"), Reply::ok("done")],
    );
    let body = client.get(server.url("/busy")).send_with(read).await;
    assert_eq!(body.unwrap(), "done");
    assert_eq!(server.hits("/busy"), 3);

    server.script("/schema", [Reply::ok("schema 7"), Reply::ok("fine")]);
    let err = client
        .get(server.url("/schema"))
        .send_with(read)
        .await
        .unwrap_err();
    assert_eq!(
        server.hits("/schema"),
        1,
        "a permanent error is not retried"
    );
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert_eq!(err.delivery(), Delivery::Delivered, "the server answered");
    assert_eq!(err.status(), Some(http::StatusCode::OK));
    assert_eq!(err.attempts().len(), 1);
    assert!(
        err.to_string().contains("unknown schema version 7"),
        "{err}"
    );
    let source = err.source().map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("unknown schema version 7"));
    let mine = err
        .unredacted_source()
        .and_then(|e| e.downcast_ref::<Busy>());
    assert_eq!(mine.map(|e| e.0), Some("unknown schema version 7"));

    // A `reqwest::Error` keeps its kind; the class is the reader's, not the classifier's.
    server.script(
        "/reset",
        [Reply::body_then_reset(200, "par"), Reply::ok("whole")],
    );
    let body = client
        .get(server.url("/reset"))
        .send_with(|response| async move { response.text().await.map_err(Error::transient) })
        .await;
    assert_eq!(body.unwrap(), "whole");
    assert_eq!(server.hits("/reset"), 2);
}

#[tokio::test(start_paused = true)]
async fn an_error_made_from_a_reqwest_error_keeps_its_kind() {
    let server = FaultServer::start().await.unwrap();
    server.script("/reset", [Reply::body_then_reset(200, "par")]);
    let err = retrying_client()
        .get(server.url("/reset"))
        .send_with(|response| async move { response.text().await.map_err(Error::permanent) })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed, "{err}");
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(server.hits("/reset"), 1);
}

#[test]
fn errors_of_yours_never_show_secrets() {
    let leaky = "GET http://user:hunter2@example.com/?api_key=query-secret failed";
    for err in [Error::transient(leaky), Error::permanent(Busy(leaky))] {
        assert_no_secrets(&err);
        assert!(err.to_string().contains("example.com"), "{err}");
    }
    // The original is there, unredacted, for code that asks for it by name.
    let err = Error::permanent(Busy(leaky));
    let original = err.unredacted_source().map(ToString::to_string);
    assert_eq!(original.as_deref(), Some(leaky));
}

/// An attempt layer that turns away the first `refusals` attempts with `refusal`, before
/// sending them.
#[derive(Clone)]
struct Refusing<S> {
    inner: S,
    left: std::sync::Arc<std::sync::atomic::AtomicU32>,
    refusal: fn() -> Error,
}

impl<S> tower::Service<reqwest::Request> for Refusing<S>
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = reqwest::Error>,
    S::Future: Send + 'static,
{
    type Response = reqwest::Response;
    type Error = resilient_http::BoxError;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<reqwest::Response, resilient_http::BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        use std::sync::atomic::Ordering;
        let refuse = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            let error = (self.refusal)();
            return Box::pin(async move { Err(error.into()) });
        }
        let sending = self.inner.call(request);
        Box::pin(async move { Ok(sending.await?) })
    }
}

fn refusing(refusals: u32, refusal: fn() -> Error) -> Client {
    let left = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(refusals));
    Client::builder()
        .retry(three_attempts())
        .attempt_layer(tower::layer::layer_fn(move |inner| Refusing {
            inner,
            left: left.clone(),
            refusal,
        }))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_attempt_layer_makes_errors_that_keep_their_class_and_delivery() {
    let server = FaultServer::start().await.unwrap();
    server.script("/p", [Reply::ok("posted")]);
    // Never sent, so even a POST is sent again.
    let warming_up = || Error::transient("warming up").with_delivery(Delivery::NotSent);
    let response = refusing(2, warming_up)
        .post(server.url("/p"))
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "posted");
    assert_eq!(server.hits("/p"), 1);

    let forbidden = || Error::permanent("no calls to this host from here");
    let err = refusing(1, forbidden)
        .get(server.url("/g"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert_eq!(err.attempts().len(), 1, "{err}");
    assert_eq!(server.hits("/g"), 0);
}

/// Every future of this crate polled again after it completed fails the same way.
#[tokio::test]
async fn polling_after_completion_is_one_kind_of_error_everywhere() {
    use resilient_http::breaker::{BreakerConfig, CircuitBreakerLayer};
    use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
    use resilient_http::timeout::AttemptTimeoutLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};

    let server = FaultServer::start().await.unwrap();
    server.script("/done", [Reply::ok("ok")]);
    let mut again = Vec::new();

    let mut sent = client().get(server.url("/done")).send();
    assert!((&mut sent).await.is_ok());
    again.push((&mut sent).await.unwrap_err());

    let mut refused = client().get("not a url").send();
    assert_eq!(
        (&mut refused).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    again.push((&mut refused).await.unwrap_err());

    let breaker = CircuitBreakerLayer::new(BreakerConfig::default()).with_key("k");
    breaker.registry().unwrap().get_or_create("k").force_open();
    let mut service = ServiceBuilder::new()
        .layer(breaker)
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(reqwest::Client::new());
    let request = reqwest::Request::new(http::Method::GET, server.url("/done").parse().unwrap());
    let mut rejected = Box::pin(service.ready().await.unwrap().call(request));
    assert_eq!(
        rejected.as_mut().await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    again.push(rejected.as_mut().await.unwrap_err());

    let mut service = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(5)))
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(reqwest::Client::new());
    let mut request =
        reqwest::Request::new(http::Method::GET, server.url("/done").parse().unwrap());
    *request.timeout_mut() = Some(Duration::ZERO);
    let mut expired = Box::pin(service.ready().await.unwrap().call(request));
    assert_eq!(
        expired.as_mut().await.unwrap_err().kind(),
        ErrorKind::DeadlineExceeded
    );
    again.push(expired.as_mut().await.unwrap_err());

    for err in &again {
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
        assert_eq!(err.class(), Class::Permanent, "{err}");
        assert_eq!(err.to_string(), again[0].to_string());
    }
    assert_eq!(server.hits("/done"), 1);
}

/// Every service wrapping another hands it out as tower's own middleware do.
#[test]
fn every_service_hands_out_the_one_it_wraps() {
    use resilient_http::breaker::{BreakerConfig, CircuitBreakerLayer};
    use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
    use resilient_http::retry::RetryLayer;
    use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
    use tower::ServiceBuilder;

    let mut stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(9)))
        .layer(RetryLayer::new(RetryPolicy::never()))
        .layer(CircuitBreakerLayer::new(BreakerConfig::default()))
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(3)))
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(reqwest::Client::new());
    let _: &reqwest::Client = stack.get_ref().get_ref().get_ref().get_ref().get_ref();
    let _: &mut reqwest::Client = stack.get_mut().get_mut().get_mut().get_mut().get_mut();
    let _: reqwest::Client = stack
        .into_inner()
        .into_inner()
        .into_inner()
        .into_inner()
        .into_inner();

    let service = client().service();
    let _: &reqwest::Client = service.get_ref();
    let _: reqwest::Client = service.into_inner();
}

// ---- Issue 22: errors that say what they know -------------------------------------------

use resilient_http::policy::EndpointPolicy;

/// Either way a call runs: the client's own, or `ResilientMiddleware` in a chain.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    Client,
    #[cfg(feature = "reqwest-middleware")]
    Middleware,
}

const VIAS: &[Via] = &[
    Via::Client,
    #[cfg(feature = "reqwest-middleware")]
    Via::Middleware,
];

/// Sends `method` to `url` (with `body`, if any) through a caller built from `builder`, and
/// reads the body. Every caller is built anew: its breakers and guards are its own.
async fn send_via(
    via: Via,
    builder: resilient_http::ClientBuilder,
    method: http::Method,
    url: &str,
    body: Option<reqwest::Body>,
) -> Result<String, Error> {
    send_with_caller(&Caller::new(via, builder), method, url, body).await
}

#[derive(Clone)]
enum Caller {
    Client(Client),
    #[cfg(feature = "reqwest-middleware")]
    Middleware(reqwest_middleware::ClientWithMiddleware),
}

impl Caller {
    fn new(via: Via, builder: resilient_http::ClientBuilder) -> Self {
        match via {
            Via::Client => Caller::Client(builder.build().unwrap()),
            #[cfg(feature = "reqwest-middleware")]
            Via::Middleware => {
                let http = reqwest::Client::builder()
                    .retry(reqwest::retry::never())
                    .redirect(resilient_http::redirect::policy())
                    .build()
                    .unwrap();
                let resilience =
                    resilient_http::middleware::ResilientMiddleware::new(builder).unwrap();
                Caller::Middleware(
                    reqwest_middleware::ClientBuilder::new(http)
                        .with(resilience)
                        .build(),
                )
            }
        }
    }
}

async fn send_with_caller(
    caller: &Caller,
    method: http::Method,
    url: &str,
    body: Option<reqwest::Body>,
) -> Result<String, Error> {
    let response = match caller {
        Caller::Client(client) => {
            let mut request = client.request(method, url);
            if let Some(body) = body {
                request = request.body(body);
            }
            request.send().await?
        }
        #[cfg(feature = "reqwest-middleware")]
        Caller::Middleware(client) => {
            let mut request = client.request(method, url);
            if let Some(body) = body {
                request = request.body(body);
            }
            match request.send().await {
                Ok(response) => response,
                Err(reqwest_middleware::Error::Middleware(err)) => {
                    return Err(err.downcast::<Error>().expect("a typed error"));
                }
                Err(reqwest_middleware::Error::Reqwest(err)) => return Err(err.into()),
            }
        }
    };
    Ok(response.text().await?)
}

/// Item 14: a body that does not decode is an error like every other: it names the method,
/// the policy and the attempt, and its `Debug` shows the status `status()` returns.
#[cfg(feature = "json")]
#[tokio::test]
async fn a_body_that_does_not_decode_names_the_method_the_policy_and_the_attempt() {
    let server = FaultServer::start().await.unwrap();
    server.script("/items/4", [Reply::ok("not json")]);
    let client = Client::builder()
        .retry(three_attempts())
        .endpoint(
            "items",
            resilient_http::policy::Matcher::new().path("/items/*"),
            EndpointPolicy::new(),
        )
        .build()
        .unwrap();
    let url = server.url("/items/4");
    let err = client
        .get(&url)
        .recv_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert_eq!(err.class(), Class::Permanent);
    assert_eq!(err.method(), Some(&http::Method::GET), "{err}");
    assert_eq!(err.policy(), Some("items"), "{err}");
    assert_eq!(err.status(), Some(http::StatusCode::OK));
    assert_eq!(err.attempts().len(), 1, "{err}");
    let line = err.to_string();
    let prefix = format!("GET {url} (policy items) failed after 1 attempt in ");
    assert!(line.starts_with(&prefix), "{line}");
    assert!(line.contains("could not be decoded"), "{line}");
    let debug = format!("{err:?}");
    assert!(debug.contains("status: Some(200)"), "{debug}");
    assert_eq!(server.hits("/items/4"), 1, "permanent: not retried");
}

/// Item 15: a retry skipped because the body cannot be sent twice keeps the answer that
/// called for it (status, headers, body), as `BudgetExhausted` does.
#[tokio::test(start_paused = true)]
async fn not_replayable_after_a_503_keeps_its_status_headers_and_body() {
    for &via in VIAS {
        let server = FaultServer::start().await.unwrap();
        server.script(
            "/upload",
            [Reply::status(503)
                .header("x-request-id", "r-7")
                .body("busy, come back")],
        );
        let builder = Client::builder()
            .retry(three_attempts())
            .default_policy(EndpointPolicy::new().replay_buffer(0));
        let body = reqwest::Body::wrap(http_body_util::Full::new(bytes::Bytes::from("data")));
        let mut err = send_via(
            via,
            builder,
            http::Method::PUT,
            &server.url("/upload"),
            Some(body),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyNotReplayable, "{via:?}: {err}");
        assert_eq!(
            err.status(),
            Some(http::StatusCode::SERVICE_UNAVAILABLE),
            "{via:?}: {err}"
        );
        let headers = err.headers().expect("the 503's headers");
        assert_eq!(headers["x-request-id"], "r-7", "{via:?}");
        assert!(err.to_string().contains("503"), "{via:?}: {err}");
        let body = err.read_body(1024).await.expect("the 503's body");
        assert_eq!(&body[..], b"busy, come back", "{via:?}");
        assert_eq!(server.hits("/upload"), 1, "{via:?}");
    }
}

/// Item 16: a call the guards turned away before anything went out says "not sent", and a
/// call with attempts that went out counts only those.
#[tokio::test(start_paused = true)]
async fn refusals_that_sent_nothing_say_not_sent() {
    use resilient_http::breaker::{BreakerConfig, Window};
    use resilient_http::overload::{BulkheadConfig, RateLimitConfig};

    let strict = || {
        BreakerConfig::builder()
            .min_calls(1)
            .window(Window::Calls(10))
            .build()
            .unwrap()
    };
    for &via in VIAS {
        // The breaker: the first call's 503 opens it; the second call is turned away.
        let server = FaultServer::start().await.unwrap();
        server.script("/down", [Reply::status(503)]);
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .circuit_breaker(strict()),
        );
        let url = server.url("/down");
        send_with_caller(&caller, http::Method::GET, &url, None)
            .await
            .unwrap_err();
        let err = send_with_caller(&caller, http::Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{via:?}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("GET {url} not sent: circuit open: ")),
            "{via:?}: {line}"
        );
        assert!(!line.contains("attempt"), "{via:?}: {line}");
        // The history still says what happened: one attempt, turned away.
        assert_eq!(err.attempts().len(), 1, "{via:?}");
        assert_eq!(err.attempts()[0].delivery, Delivery::NotSent);
        assert!(!err.attempts()[0].sent(), "{via:?}");
        assert_eq!(server.hits("/down"), 1, "{via:?}");

        // A 503 opens it, the retry is turned away: one attempt went out.
        let server = FaultServer::start().await.unwrap();
        server.script("/down", [Reply::status(503)]);
        let url = server.url("/down");
        let builder = Client::builder()
            .retry(three_attempts())
            .circuit_breaker(strict());
        let err = send_via(via, builder, http::Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{via:?}");
        assert_eq!(err.attempts().len(), 2, "{via:?}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("GET {url} failed after 1 attempt in ")),
            "{via:?}: {line}"
        );

        // The rate limit: one request a minute; the second call cannot wait that long.
        let server = FaultServer::start().await.unwrap();
        let url = server.url("/limited");
        let limited = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 60 * SECOND));
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .deadline(SECOND)
                .default_policy(limited),
        );
        send_with_caller(&caller, http::Method::GET, &url, None)
            .await
            .unwrap();
        let err = send_with_caller(&caller, http::Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{via:?}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("GET {url} not sent: rate limited: ")),
            "{via:?}: {line}"
        );
        assert_eq!(server.hits("/limited"), 1, "{via:?}");

        // The bulkhead: one place, held 500 ms; the second call gives up after 100 ms.
        let server = FaultServer::start().await.unwrap();
        server.script("/full", [Reply::ok("x").delay(500 * MS)]);
        let url = server.url("/full");
        let one = EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, 100 * MS));
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .default_policy(one),
        );
        let (first, second) = tokio::join!(
            send_with_caller(&caller, http::Method::GET, &url, None),
            send_with_caller(&caller, http::Method::GET, &url, None),
        );
        first.unwrap();
        let err = second.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BulkheadFull, "{via:?}");
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("GET {url} not sent: bulkhead full: ")),
            "{via:?}: {line}"
        );
        assert_eq!(server.hits("/full"), 1, "{via:?}");
    }
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

/// Item 17: an invalid request or response says why in its message (redacted), not two
/// `source()` levels down.
#[tokio::test]
async fn invalid_requests_and_responses_say_why_in_their_message() {
    // A host that is no valid international domain name, with a secret in the query.
    let err = client()
        .get("http://xn--a.example/x?token=query-secret")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let line = err.to_string();
    assert!(
        line.contains("invalid request: invalid international domain name"),
        "{line}"
    );
    assert_no_secrets(&err);

    let server = FaultServer::start().await.unwrap();
    server.script("/oops", [Reply::raw(&b"HTTP/1.1 OOPS\r\n\r\n"[..])]);
    let err = client().get(server.url("/oops")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    let line = err.to_string();
    assert!(
        line.contains("invalid response: invalid HTTP status-code parsed"),
        "{line}"
    );
}

/// Item 8: each redirect error says what it is, and names the URL the caller asked for
/// (redacted), not the last hop.
#[tokio::test]
async fn each_redirect_error_says_what_it_is_and_names_the_callers_url() {
    for &via in VIAS {
        let server = FaultServer::start().await.unwrap();
        // 11 redirects in a row, one more than the limit.
        for hop in 0..11 {
            server.script(
                &format!("/hop/{hop}"),
                [Reply::status(302).header("location", format!("/hop/{}", hop + 1))],
            );
        }
        let asked = format!("{}?token=query-secret", server.url("/hop/0"));
        let shown = format!("{}?token=REDACTED", server.url("/hop/0"));
        let builder = Client::builder().retry(three_attempts());
        let err = send_via(via, builder, http::Method::GET, &asked, None)
            .await
            .unwrap_err();
        assert_eq!(err.class(), Class::Permanent, "{via:?}: {err}");
        assert_eq!(
            err.url().map(|u| u.as_str()),
            Some(&*shown),
            "{via:?}: {err}"
        );
        let line = err.to_string();
        assert!(
            line.starts_with(&format!("GET {shown} ")),
            "{via:?}: {line}"
        );
        assert!(line.contains("too many redirects"), "{via:?}: {line}");
        assert!(!line.contains("credentials"), "{via:?}: {line}");
        assert_no_secrets(&err);
        assert_eq!(server.hits("/hop/10"), 1, "{via:?}: not retried");

        // Two hops, then a target with user info.
        server.script(
            "/cred/0",
            [Reply::status(302).header("location", "/cred/1")],
        );
        server.script(
            "/cred/1",
            [Reply::status(302).header(
                "location",
                format!("http://bob:hunter2@{}/x", server.addr()),
            )],
        );
        let url = server.url("/cred/0");
        let builder = Client::builder().retry(three_attempts());
        let err = send_via(via, builder, http::Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(err.class(), Class::Permanent, "{via:?}: {err}");
        assert_eq!(err.url().map(|u| u.as_str()), Some(&*url), "{via:?}: {err}");
        let line = err.to_string();
        assert!(line.contains("user info"), "{via:?}: {line}");
        assert!(!line.contains("too many"), "{via:?}: {line}");
        assert_no_secrets(&err);

        // A Location reqwest cannot follow: a scheme other than http(s). (Before, the error
        // named the target and called it an invalid request.)
        for (path, location, says) in [("/bad-scheme", "ftp://127.0.0.1/x", "\"ftp\"")] {
            server.script(path, [Reply::status(302).header("location", location)]);
            let url = server.url(path);
            let builder = Client::builder().retry(three_attempts());
            let err = send_via(via, builder, http::Method::GET, &url, None)
                .await
                .unwrap_err();
            assert_eq!(err.class(), Class::Permanent, "{via:?} {path}: {err}");
            assert_eq!(err.url().map(|u| u.as_str()), Some(&*url), "{via:?}: {err}");
            let line = err.to_string();
            assert!(line.contains("Location"), "{via:?} {path}: {line}");
            assert!(line.contains(says), "{via:?} {path}: {line}");
            assert!(!line.contains("credentials"), "{via:?} {path}: {line}");
            assert_eq!(server.hits(path), 1, "{via:?} {path}: not retried");
        }
    }
}

// ---- Issue 24: why a call stopped, and whether it was sent ------------------------------

/// Sends `method` to `url` through a caller built from `builder`: the error.
async fn failing(
    via: Via,
    builder: resilient_http::ClientBuilder,
    method: http::Method,
    url: &str,
) -> Error {
    match send_via(via, builder, method, url, None).await {
        Ok(body) => panic!("{via:?}: {url} succeeded: {body}"),
        Err(err) => err,
    }
}

/// Item 2: every reason the driver gives up for, provoked on real servers, on both paths:
/// the reason, whether anything was sent, and the message that says it once.
#[tokio::test(start_paused = true)]
async fn every_error_says_why_the_call_stopped_and_whether_it_was_sent() {
    use http::Method;
    use resilient_http::GiveUp;
    use resilient_http::breaker::{BreakerConfig, Window};
    use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
    use resilient_http::retry::BudgetConfig;

    let retrying = || Client::builder().retry(three_attempts());
    for &via in VIAS {
        // A 503 on every attempt: the attempts are used up.
        let server = FaultServer::start().await.unwrap();
        server.script("/down", [Reply::status(503)]);
        let err = failing(via, retrying(), Method::GET, &server.url("/down")).await;
        assert_eq!(
            err.give_up(),
            Some(GiveUp::AttemptsExhausted),
            "{via:?}: {err}"
        );
        assert!(err.sent(), "{via:?}: {err}");
        let line = err.to_string();
        assert!(
            line.ends_with(": 503 Service Unavailable (transient, attempts used up)"),
            "{via:?}: {line}"
        );
        let debug = format!("{err:?}");
        assert!(
            debug.contains("give_up: Some(AttemptsExhausted)"),
            "{debug}"
        );
        assert!(debug.contains("sent: true"), "{debug}");
        assert_eq!(server.hits("/down"), 3, "{via:?}");

        // A POST that may have been processed is not sent again: one attempt, sent.
        let server = FaultServer::start().await.unwrap();
        server.script("/pay", [Reply::status(503)]);
        let err = failing(via, retrying(), Method::POST, &server.url("/pay")).await;
        assert_eq!(err.give_up(), Some(GiveUp::NotIdempotent), "{via:?}: {err}");
        assert!(err.sent(), "{via:?}: {err}");
        assert!(
            err.to_string().ends_with("(transient, not idempotent)"),
            "{err}"
        );
        assert_eq!(server.hits("/pay"), 1, "{via:?}");

        // A 404: permanent, said once (by the class).
        let server = FaultServer::start().await.unwrap();
        server.script("/gone", [Reply::status(404)]);
        let err = failing(via, retrying(), Method::GET, &server.url("/gone")).await;
        assert_eq!(err.give_up(), Some(GiveUp::Permanent), "{via:?}: {err}");
        assert!(err.sent(), "{via:?}: {err}");
        assert!(
            err.to_string().ends_with("404 Not Found (permanent)"),
            "{err}"
        );

        // An empty retry budget: the first attempt went out, its retry did not.
        let server = FaultServer::start().await.unwrap();
        server.script("/busy", [Reply::status(503)]);
        let empty = EndpointPolicy::new().retry_budget(BudgetConfig::new(0.0, 0, SECOND));
        let builder = retrying().default_policy(empty);
        let err = failing(via, builder, Method::GET, &server.url("/busy")).await;
        assert_eq!(
            err.give_up(),
            Some(GiveUp::BudgetExhausted),
            "{via:?}: {err}"
        );
        assert!(err.sent(), "{via:?}: {err}");
        assert!(
            err.to_string().ends_with("(transient)"),
            "the kind says it: {err}"
        );
        assert_eq!(server.hits("/busy"), 1, "{via:?}");

        // The deadline comes before the next retry (100 ms after the 503).
        let server = FaultServer::start().await.unwrap();
        server.script("/slow", [Reply::status(503)]);
        let builder = retrying().deadline(50 * MS);
        let err = failing(via, builder, Method::GET, &server.url("/slow")).await;
        assert_eq!(err.give_up(), Some(GiveUp::Deadline), "{via:?}: {err}");
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{via:?}: {err}");
        assert_eq!(server.hits("/slow"), 1, "{via:?}");

        // The server asks for a longer wait than the cap.
        let server = FaultServer::start().await.unwrap();
        server.script("/later", [Reply::status(503).retry_after_secs(120)]);
        let capped = RetryPolicy::builder()
            .max_attempts(3)
            .retry_after_cap(10 * SECOND)
            .build()
            .unwrap();
        let builder = Client::builder().retry(capped);
        let err = failing(via, builder, Method::GET, &server.url("/later")).await;
        assert_eq!(
            err.give_up(),
            Some(GiveUp::RetryAfterAboveCap),
            "{via:?}: {err}"
        );
        assert!(err.sent(), "{via:?}: {err}");
        assert!(
            err.to_string()
                .ends_with("(transient, Retry-After above the cap)")
        );
        assert_eq!(server.hits("/later"), 1, "{via:?}");

        // A stream that cannot be sent twice.
        let server = FaultServer::start().await.unwrap();
        server.script("/upload", [Reply::status(503)]);
        let builder = retrying().default_policy(EndpointPolicy::new().replay_buffer(0));
        let body = reqwest::Body::wrap(http_body_util::Full::new(bytes::Bytes::from("data")));
        let url = server.url("/upload");
        let err = send_via(via, builder, Method::PUT, &url, Some(body))
            .await
            .unwrap_err();
        assert_eq!(
            err.give_up(),
            Some(GiveUp::BodyNotReplayable),
            "{via:?}: {err}"
        );
        assert!(err.sent(), "{via:?}: {err}");

        // Nothing listens: every attempt made, none sent.
        let closed = ClosedPort::bind().unwrap();
        let err = failing(via, retrying(), Method::POST, &closed.url("/x")).await;
        assert_eq!(
            err.give_up(),
            Some(GiveUp::AttemptsExhausted),
            "{via:?}: {err}"
        );
        assert_eq!(
            err.attempts().len(),
            3,
            "a POST never sent is retried: {err}"
        );
        assert!(!err.sent(), "{via:?}: {err}");
        assert!(!err.attempts().iter().any(|a| a.sent()), "{via:?}: {err}");
        assert!(
            err.to_string().ends_with(", not sent)"),
            "the message says it was never sent: {err}"
        );

        // The breaker, opened by a first call, turns the second away: not sent.
        let server = FaultServer::start().await.unwrap();
        server.script("/flaky", [Reply::status(503)]);
        let strict = BreakerConfig::builder()
            .min_calls(1)
            .window(Window::Calls(10))
            .build()
            .unwrap();
        let url = server.url("/flaky");
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .circuit_breaker(strict),
        );
        let first = send_with_caller(&caller, Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(first.give_up(), Some(GiveUp::AttemptsExhausted), "{first}");
        let err = send_with_caller(&caller, Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(err.give_up(), Some(GiveUp::CircuitOpen), "{via:?}: {err}");
        assert!(!err.sent(), "{via:?}: {err}");
        assert!(
            err.to_string().ends_with("(transient)"),
            "the kind says it: {err}"
        );
        assert_eq!(server.hits("/flaky"), 1, "{via:?}");

        // The rate limit, one request a minute: the second call cannot wait that long.
        let server = FaultServer::start().await.unwrap();
        let url = server.url("/limited");
        let limited = EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 60 * SECOND));
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .deadline(SECOND)
                .default_policy(limited),
        );
        send_with_caller(&caller, Method::GET, &url, None)
            .await
            .unwrap();
        let err = send_with_caller(&caller, Method::GET, &url, None)
            .await
            .unwrap_err();
        assert_eq!(err.give_up(), Some(GiveUp::RateLimited), "{via:?}: {err}");
        assert!(!err.sent(), "{via:?}: {err}");

        // The bulkhead: one place, held 500 ms; the second call gives up after 100 ms.
        let server = FaultServer::start().await.unwrap();
        server.script("/full", [Reply::ok("x").delay(500 * MS)]);
        let url = server.url("/full");
        let one = EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, 100 * MS));
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .default_policy(one),
        );
        let (first, second) = tokio::join!(
            send_with_caller(&caller, Method::GET, &url, None),
            send_with_caller(&caller, Method::GET, &url, None),
        );
        first.unwrap();
        let err = second.unwrap_err();
        assert_eq!(err.give_up(), Some(GiveUp::BulkheadFull), "{via:?}: {err}");
        assert!(!err.sent(), "{via:?}: {err}");
    }
}

/// An error no call ended with has no reason; one the server answered was sent.
#[test]
fn errors_outside_a_call_have_no_reason() {
    let err = Error::invalid_config("max_attempts must be at least 1");
    assert_eq!(err.give_up(), None);
    assert!(!err.sent());
    assert!(!err.to_string().contains(','), "{err}");
    let err = Error::transient("busy").with_delivery(Delivery::Delivered);
    assert_eq!(err.give_up(), None);
    assert!(err.sent());
}
