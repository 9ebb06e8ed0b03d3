//! Deadline propagation, outgoing (`propagate_deadline`): what the server sees on each attempt
//! and hedge, through the client, the reqwest-middleware adapter, `ResilientLayer` and the
//! public layers (`PropagateDeadlineLayer` under the retry layer), against
//! the loopback fault server with tokio's clock paused (every limit below is exact virtual
//! time); and the setting in the builder and in policy files.
#![cfg(all(feature = "reqwest-middleware", feature = "config"))]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Method;
use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
use resilient_http::deadline::{DeadlineHeader, PropagateDeadlineLayer};
use resilient_http::hedge::HedgeConfig;
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{Jitter, RetryLayer, RetryPolicy};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
use resilient_http::{Client, ClientBuilder, Delivery, Error, ErrorKind, ResilientLayer};
use tokio::time::{Instant, Sleep};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

mod common;
use common::{Caller, MS, SECOND, Via};

const MILLIS: &str = "x-request-timeout-ms";

/// The two formats: gRPC's, and milliseconds in a header of the caller's choosing.
fn formats() -> [DeadlineHeader; 2] {
    [
        DeadlineHeader::grpc_timeout(),
        DeadlineHeader::millis(MILLIS),
    ]
}

/// The limit a header value says, read independently of the library's codec.
fn limit_of(name: &str, value: &str) -> Duration {
    if name == "grpc-timeout" {
        let (count, unit) = value.split_at(value.len() - 1);
        let count: u64 = count.parse().unwrap();
        match unit {
            "H" => Duration::from_secs(count * 3600),
            "M" => Duration::from_secs(count * 60),
            "S" => Duration::from_secs(count),
            "m" => Duration::from_millis(count),
            "u" => Duration::from_micros(count),
            "n" => Duration::from_nanos(count),
            _ => panic!("unit of {value:?}"),
        }
    } else {
        Duration::from_millis(value.parse().unwrap())
    }
}

/// The limit each request to `path` carried, in the order they came; `None` for a request
/// without the header. A request with two values of it fails the test.
fn seen(server: &FaultServer, path: &str, header: &DeadlineHeader) -> Vec<Option<Duration>> {
    let name = header.name().unwrap();
    server
        .requests(path)
        .iter()
        .map(|request| {
            let values: Vec<_> = request.headers.get_all(name).iter().collect();
            assert!(values.len() <= 1, "one value, not {values:?}");
            values
                .first()
                .map(|v| limit_of(name.as_str(), v.to_str().unwrap()))
        })
        .collect()
}

/// What every path is set up with: 500 ms attempts within `deadline`, `attempts` of them,
/// 175 ms apart (no jitter), hedged if `hedge`, propagated in `header`.
struct Setup {
    header: DeadlineHeader,
    attempts: u32,
    deadline: Duration,
    hedge: Option<HedgeConfig>,
}

impl Setup {
    fn new(header: &DeadlineHeader, attempts: u32) -> Self {
        Setup {
            header: header.clone(),
            attempts,
            deadline: 2 * SECOND,
            hedge: None,
        }
    }

    fn retry(&self) -> RetryPolicy {
        let retry = RetryPolicy::builder()
            .max_attempts(self.attempts)
            .backoff_base(175 * MS)
            .backoff_multiplier(1.0)
            .jitter(Jitter::None);
        match self.hedge {
            Some(hedge) => retry.hedge(hedge),
            None => retry,
        }
        .build()
        .unwrap()
    }

    fn builder(&self) -> ClientBuilder {
        Client::builder()
            .retry(self.retry())
            .no_circuit_breaker()
            .default_policy(
                EndpointPolicy::new()
                    .attempt_timeout(500 * MS)
                    .deadline(self.deadline)
                    .propagate_deadline(self.header.clone()),
            )
    }

    /// The public layers as the docs stack them, the header under the attempt timeout.
    fn layers(&self) -> BoxCloneService<reqwest::Request, reqwest::Response, Error> {
        let stack = ServiceBuilder::new()
            .layer(TotalDeadlineLayer::new(self.deadline))
            .layer(RetryLayer::new(self.retry()))
            .layer(AttemptTimeoutLayer::new(500 * MS))
            .layer(PropagateDeadlineLayer::new(self.header.clone()).unwrap())
            .layer(ClassifyLayer::new(DefaultClassifier))
            .service(reqwest::Client::new());
        BoxCloneService::new(stack)
    }
}

/// The ways a call runs: the client, the reqwest-middleware adapter, `ResilientLayer`, and
/// the public layers stacked by hand.
#[derive(Debug)]
enum Path {
    Via(Via),
    Tower,
    Layers,
}

const PATHS: [Path; 4] = [
    Path::Via(Via::Client),
    Path::Via(Via::Middleware),
    Path::Tower,
    Path::Layers,
];

impl Path {
    async fn get(&self, setup: &Setup, url: &str, headers: &[(&str, &str)]) -> Result<u16, Error> {
        let service = match self {
            Path::Via(via) => {
                return Caller::new(*via, setup.builder())
                    .send(Method::GET, url, headers)
                    .await
                    .map(|answer| answer.status);
            }
            Path::Tower => BoxCloneService::new(
                ServiceBuilder::new()
                    .layer(ResilientLayer::new(setup.builder()).unwrap())
                    .service(reqwest::Client::new()),
            ),
            Path::Layers => setup.layers(),
        };
        let mut request = reqwest::Request::new(Method::GET, url.parse().unwrap());
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let response = service.oneshot(request).await?;
        Ok(response.status().as_u16())
    }
}

/// 503, 503, then attempts that hang past their 500 ms: each of the first four is told its
/// 500 ms less the margin (480 ms); the fifth starts at 1.7 s (0, 175, 350, 1025 after a hang,
/// 1700 after another) with 300 ms of the deadline left, and is told 280 ms.
#[tokio::test(start_paused = true)]
async fn each_attempt_carries_its_own_limit_on_every_path() {
    for header in formats() {
        for path in PATHS {
            let server = FaultServer::start().await.unwrap();
            let replies = [Reply::status(503), Reply::status(503), Reply::hang()];
            server.script("/work", replies);
            let setup = Setup::new(&header, 5);
            let err = path
                .get(&setup, &server.url("/work"), &[])
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{path:?}: {err}");
            let seen = seen(&server, "/work", &header);
            assert_eq!(seen.len(), 5, "{path:?} {header:?}: {seen:?}");
            for limit in &seen[..4] {
                let limit = limit.unwrap();
                assert!(
                    limit <= 500 * MS && limit >= 400 * MS,
                    "{header:?}: {seen:?}"
                );
            }
            let last = seen[4].unwrap();
            assert!(
                last <= 300 * MS && last >= 250 * MS,
                "{path:?} {header:?}: {seen:?}"
            );
        }
    }
}

/// A hedge sent 200 ms into a 600 ms call has 400 ms left: it is told less than the first
/// attempt, which had its whole 500 ms.
#[tokio::test(start_paused = true)]
async fn a_hedge_carries_its_own_smaller_limit() {
    for header in formats() {
        for path in PATHS {
            let server = FaultServer::start().await.unwrap();
            server.script("/slow", [Reply::hang(), Reply::ok("hedge")]);
            let mut setup = Setup::new(&header, 1);
            setup.deadline = 600 * MS;
            setup.hedge = Some(HedgeConfig::new(200 * MS, 1));
            let status = path.get(&setup, &server.url("/slow"), &[]).await.unwrap();
            assert_eq!(status, 200);
            let seen = seen(&server, "/slow", &header);
            assert_eq!(seen.len(), 2, "{path:?}: {seen:?}");
            let (first, hedge) = (seen[0].unwrap(), seen[1].unwrap());
            assert!(first <= 500 * MS && first >= 450 * MS, "{path:?}: {seen:?}");
            assert!(hedge <= 400 * MS && hedge >= 350 * MS, "{path:?}: {seen:?}");
        }
    }
}

/// The caller's own value of the header is replaced, on every path: the server reads one.
#[tokio::test(start_paused = true)]
async fn a_callers_own_header_is_replaced() {
    for header in formats() {
        for path in PATHS {
            let server = FaultServer::start().await.unwrap();
            let name = header.name().unwrap().as_str();
            let own = if name == "grpc-timeout" {
                "99S"
            } else {
                "99000"
            };
            let status = path
                .get(&Setup::new(&header, 1), &server.url("/own"), &[(name, own)])
                .await
                .unwrap();
            assert_eq!(status, 200);
            let seen = seen(&server, "/own", &header);
            assert_eq!(seen, [Some(480 * MS)], "{path:?} {header:?}");
        }
    }
}

/// An attempt whose limit is not above the margin is not sent: the server would be told to
/// give up at once. The call ends as one the deadline left no time for. (A policy whose own
/// deadline is not above the margin is refused when built: here the deadline is a caller's,
/// 15 ms, inherited through `deadline::scope`.)
#[tokio::test(start_paused = true)]
async fn an_attempt_with_nothing_left_after_the_margin_is_not_sent() {
    for path in PATHS {
        let server = FaultServer::start().await.unwrap();
        let setup = Setup::new(&DeadlineHeader::grpc_timeout(), 3);
        let url = server.url("/late");
        let err = resilient_http::deadline::scope(15 * MS, path.get(&setup, &url, &[]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{path:?}: {err}");
        assert_eq!(err.delivery(), Delivery::NotSent, "{path:?}: {err}");
        let why = err.to_string();
        assert!(
            why.contains("propagate_deadline_margin (20ms)"),
            "{path:?}: {why}"
        );
        assert_eq!(server.hits("/late"), 0, "{path:?}");
    }
}

/// Off by default: no header, and a caller's own goes out untouched.
#[tokio::test(start_paused = true)]
async fn off_by_default() {
    let server = FaultServer::start().await.unwrap();
    let caller = Caller::new(Via::Client, Client::builder());
    caller
        .send(Method::GET, &server.url("/plain"), &[(MILLIS, "7")])
        .await
        .unwrap();
    let header = DeadlineHeader::grpc_timeout();
    assert_eq!(seen(&server, "/plain", &header), [None]);
    let own = seen(&server, "/plain", &DeadlineHeader::millis(MILLIS));
    assert_eq!(own, [Some(7 * MS)]);
}

/// The file's keys: a header name (gRPC's format for `grpc-timeout`), a margin, and `false`
/// in a rule that turns the default's off.
#[tokio::test(start_paused = true)]
async fn the_policy_file_sets_the_header_and_the_margin() {
    let server = FaultServer::start().await.unwrap();
    let file = r#"
        [default]
        attempt_timeout = "500ms"
        propagate_deadline = "x-envoy-expected-rq-timeout-ms"
        propagate_deadline_margin = "50ms"

        [[endpoint]]
        name = "grpc"
        match = { path = "/grpc" }
        propagate_deadline = "grpc-timeout"

        [[endpoint]]
        name = "quiet"
        match = { path = "/quiet" }
        propagate_deadline = false
    "#;
    let client = Client::builder().config_toml(file).build().unwrap();
    for path in ["/envoy", "/grpc", "/quiet"] {
        client.get(server.url(path)).send().await.unwrap();
    }
    let envoy = DeadlineHeader::millis("x-envoy-expected-rq-timeout-ms");
    assert_eq!(seen(&server, "/envoy", &envoy), [Some(450 * MS)]);
    let grpc = DeadlineHeader::grpc_timeout();
    assert_eq!(seen(&server, "/grpc", &grpc), [Some(450 * MS)]);
    assert_eq!(seen(&server, "/quiet", &envoy), [None]);
    assert_eq!(seen(&server, "/quiet", &grpc), [None]);
}

/// Each mistake names the file, the line and the key (or, from the builder, the setting).
#[test]
fn mistakes_name_the_setting_and_where_it_is() {
    let refused = |text: &str| {
        Client::builder()
            .config_toml(text)
            .build()
            .unwrap_err()
            .to_string()
    };
    let bad_name = refused("[default]\nmax_attempts = 2\npropagate_deadline = \"x timeout\"\n");
    assert!(
        bad_name.contains("<config_toml>:3") && bad_name.contains("\"propagate_deadline\""),
        "{bad_name}"
    );
    assert!(bad_name.contains("not a header name"), "{bad_name}");
    let on = refused("[default]\npropagate_deadline = true\n");
    assert!(
        on.contains("<config_toml>:2") && on.contains("name it"),
        "{on}"
    );
    let margin = refused(
        "[default]\npropagate_deadline = \"grpc-timeout\"\npropagate_deadline_margin = \"2m\"\n",
    );
    assert!(
        margin.contains("<config_toml>:3") && margin.contains("\"propagate_deadline_margin\""),
        "{margin}"
    );
    assert!(margin.contains("at most 1m"), "{margin}");
    let above = refused(
        "[default]\nattempt_timeout = \"100ms\"\npropagate_deadline = \"grpc-timeout\"\n\
         propagate_deadline_margin = \"100ms\"\n",
    );
    assert!(
        above.contains("<config_toml>:4") && above.contains("must be below attempt_timeout"),
        "{above}"
    );
    let past_deadline = refused(
        "[default]\ndeadline = \"50ms\"\nattempt_timeout = \"50ms\"\n\
         propagate_deadline = \"grpc-timeout\"\npropagate_deadline_margin = \"60ms\"\n",
    );
    assert!(past_deadline.contains("must be below"), "{past_deadline}");
    let deadline_only = refused(
        "[default]\ndeadline = \"40ms\"\npropagate_deadline = \"grpc-timeout\"\n\
         propagate_deadline_margin = \"50ms\"\n",
    );
    assert!(
        deadline_only.contains("must be below deadline (40ms)"),
        "{deadline_only}"
    );

    let built = |header: DeadlineHeader| {
        Client::builder()
            .default_policy(EndpointPolicy::new().propagate_deadline(header))
            .build()
            .unwrap_err()
    };
    let err = built(DeadlineHeader::millis("x timeout"));
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("propagate_deadline"), "{err}");
    let err = built(DeadlineHeader::millis("grpc-timeout"));
    assert!(err.to_string().contains("grpc_timeout()"), "{err}");
}

/// A service that, after each call, is not ready for 300 ms: a later attempt through
/// `ResilientLayer` waits for it inside its own limit.
struct Busy {
    inner: reqwest::Client,
    until: Arc<Mutex<Option<Instant>>>,
    // The wait for `until`, kept between polls (its timer wakes the task).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Clone for Busy {
    fn clone(&self) -> Self {
        Busy {
            inner: self.inner.clone(),
            until: self.until.clone(),
            sleep: None,
        }
    }
}

impl tower::Service<reqwest::Request> for Busy {
    type Response = reqwest::Response;
    type Error = reqwest::Error;
    type Future = <reqwest::Client as tower::Service<reqwest::Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), reqwest::Error>> {
        let until = *self.until.lock().unwrap();
        if let Some(until) = until.filter(|until| *until > Instant::now()) {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.sleep = None;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        *self.until.lock().unwrap() = Some(Instant::now() + 300 * MS);
        self.inner.call(request)
    }
}

/// Under `ResilientLayer`, a retry that waits 125 ms for its service to be ready (sent at
/// 175 ms, ready at 300 ms) tells the server what is left of its limit when it goes out:
/// 500 − 125 − 20 ms.
#[tokio::test(start_paused = true)]
async fn a_wait_for_the_service_comes_off_the_limit_told() {
    let server = FaultServer::start().await.unwrap();
    server.script("/busy", [Reply::status(503), Reply::ok("x")]);
    let header = DeadlineHeader::millis(MILLIS);
    let service = ServiceBuilder::new()
        .layer(ResilientLayer::new(Setup::new(&header, 2).builder()).unwrap())
        .service(Busy {
            inner: reqwest::Client::new(),
            until: Arc::default(),
            sleep: None,
        });
    let request = reqwest::Request::new(Method::GET, server.url("/busy").parse().unwrap());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        seen(&server, "/busy", &header),
        [Some(480 * MS), Some(355 * MS)]
    );
}

/// `PolicyConfig` from JSON: the same keys, the errors naming the policy and the key.
#[tokio::test(start_paused = true)]
async fn a_policy_config_from_any_format_has_the_same_keys() {
    use resilient_http::policy::PolicyConfig;

    let config = |json: serde_json::Value| serde_json::from_value::<PolicyConfig>(json);
    let good = config(serde_json::json!({
        "default": { "attempt_timeout": "500ms", "propagate_deadline": "grpc-timeout" },
        "endpoint": [{ "name": "quiet", "match": { "path": "/quiet" }, "propagate_deadline": false }],
    }))
    .unwrap();
    let server = FaultServer::start().await.unwrap();
    let client = Client::builder().config(good).build().unwrap();
    for path in ["/grpc", "/quiet"] {
        client.get(server.url(path)).send().await.unwrap();
    }
    let grpc = DeadlineHeader::grpc_timeout();
    assert_eq!(seen(&server, "/grpc", &grpc), [Some(480 * MS)]);
    assert_eq!(seen(&server, "/quiet", &grpc), [None]);

    let bad = config(serde_json::json!({ "default": { "propagate_deadline": "x:y" } }));
    let why = bad.unwrap_err().to_string();
    assert!(
        why.contains("\"propagate_deadline\": \"x:y\" is not a header name"),
        "{why}"
    );
    let bad = config(serde_json::json!({ "default": { "propagate_deadline_margin": "-1s" } }));
    let why = bad.unwrap_err().to_string();
    assert!(why.contains("\"propagate_deadline_margin\""), "{why}");
}

/// An attempt whose own limit (not the deadline) leaves nothing after the margin is not sent,
/// and fails as that attempt's timeout, not as the deadline: under the public layers, an
/// attempt timeout of 10 ms with the default 20 ms margin, far from the 2 s deadline.
#[tokio::test(start_paused = true)]
async fn an_attempt_limit_not_above_the_margin_is_an_attempt_timeout_not_the_deadline() {
    let server = FaultServer::start().await.unwrap();
    let stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(2 * SECOND))
        .layer(AttemptTimeoutLayer::new(10 * MS))
        .layer(PropagateDeadlineLayer::new(DeadlineHeader::grpc_timeout()).unwrap())
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(reqwest::Client::new());
    let request = reqwest::Request::new(Method::GET, server.url("/short").parse().unwrap());
    let err = stack.oneshot(request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout, "{err}");
    assert_eq!(err.delivery(), Delivery::NotSent, "{err}");
    assert!(
        err.to_string().contains("propagate_deadline_margin"),
        "{err}"
    );
    assert_eq!(server.hits("/short"), 0);
}
