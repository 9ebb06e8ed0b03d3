//! The metrics (feature `metrics`), read back from `metrics-util`'s debugging recorder.

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// One reading of every metric (reading drains histograms, so take one per check).
type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;
use resilient_http::breaker::BreakerConfig;
use resilient_http::policy::{EndpointPolicy, Matcher};
use resilient_http::retry::{Jitter, RetryPolicy};
use resilient_http::telemetry;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};

/// The value of metric `name` whose labels include all of `labels`, summed over the rest.
fn value(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<DebugValue> {
    let mut found: Option<DebugValue> = None;
    for (key, _, _, value) in snapshot {
        let key = key.key();
        let matches = key.name() == name
            && labels.iter().all(|(k, v)| {
                key.labels()
                    .any(|label| label.key() == *k && label.value() == *v)
            });
        if !matches {
            continue;
        }
        found = Some(match (found, value) {
            (Some(DebugValue::Counter(a)), DebugValue::Counter(b)) => DebugValue::Counter(a + b),
            (Some(DebugValue::Histogram(mut a)), DebugValue::Histogram(b)) => {
                a.extend(b.iter().copied());
                DebugValue::Histogram(a)
            }
            (_, DebugValue::Counter(n)) => DebugValue::Counter(*n),
            (_, DebugValue::Gauge(g)) => DebugValue::Gauge(*g),
            (_, DebugValue::Histogram(h)) => DebugValue::Histogram(h.clone()),
        });
    }
    found
}

fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(snapshot, name, labels) {
        Some(DebugValue::Counter(n)) => n,
        None => 0,
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

fn histogram(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    match value(snapshot, name, labels) {
        Some(DebugValue::Histogram(values)) => values.into_iter().map(|v| v.into_inner()).collect(),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn calls_attempts_retries_give_ups_and_breakers_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let server = FaultServer::start().await.unwrap();
    server.script(
        "/search",
        [Reply::status(503), Reply::status(503), Reply::ok("ok")],
    );
    server.script("/down", [Reply::status(500), Reply::status(500)]);
    let breaker = BreakerConfig::builder()
        .min_calls(2)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .circuit_breaker(breaker)
        .endpoint(
            "search",
            Matcher::new().path("/search"),
            EndpointPolicy::new().breaker_min_calls(10),
        )
        .endpoint(
            "down",
            Matcher::new().path("/down"),
            EndpointPolicy::new().attempts(1).breaker_key("down"),
        )
        .build()
        .unwrap();

    // 503, 503, 200: one call, three attempts, two retries.
    let response = client.get(server.url("/search")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let search = [("policy", "search")];
    let s = &snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(
            s,
            telemetry::REQUESTS,
            &[("policy", "search"), ("outcome", "success")]
        ),
        1
    );
    assert_eq!(counter(s, telemetry::ATTEMPTS, &search), 3);
    assert_eq!(
        counter(
            s,
            telemetry::ATTEMPTS,
            &[("policy", "search"), ("error.type", "503")]
        ),
        2
    );
    assert_eq!(
        counter(
            s,
            telemetry::ATTEMPTS,
            &[
                ("http.response.status_code", "200"),
                ("http.request.method", "GET")
            ]
        ),
        1
    );
    assert_eq!(
        counter(
            s,
            telemetry::RETRIES,
            &[("policy", "search"), ("reason", "503")]
        ),
        2
    );
    assert_eq!(histogram(s, telemetry::REQUEST_ATTEMPTS, &search), [3.0]);
    let duration = histogram(s, telemetry::REQUEST_DURATION, &search);
    assert!(
        duration[0] >= 0.3,
        "two sleeps, 100 and 200 ms: {duration:?}"
    );
    assert_eq!(histogram(s, telemetry::ATTEMPT_DURATION, &search).len(), 3);

    // Two 500s open the breaker; the third call is turned away.
    for _ in 0..2 {
        let error = client.get(server.url("/down")).send().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Status);
    }
    let error = client.get(server.url("/down")).send().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    let s = &snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(s, telemetry::BREAKER_REJECTIONS, &[("breaker", "down")]),
        1
    );
    assert_eq!(
        value(s, telemetry::BREAKER_STATE, &[("breaker", "down")]),
        Some(DebugValue::Gauge(2.0.into())),
        "open"
    );
    let down = |reason| [("policy", "down"), ("reason", reason)];
    assert_eq!(
        counter(s, telemetry::GIVE_UPS, &down("attempts_exhausted")),
        2
    );
    assert_eq!(counter(s, telemetry::GIVE_UPS, &down("circuit_open")), 1);
    assert_eq!(
        counter(
            s,
            telemetry::REQUESTS,
            &[
                ("policy", "down"),
                ("outcome", "error"),
                ("error.type", "500")
            ]
        ),
        2
    );
    assert_eq!(
        counter(
            s,
            telemetry::REQUESTS,
            &[("policy", "down"), ("error.type", "circuit_open")]
        ),
        1
    );
}
