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

/// Defect 5 of issue 12: `max_breakers(64)` and 2,000 endpoints left 64 breakers but 2,000
/// `breaker.state` series, since a recorder never forgets one. Now a registry gives series of
/// their own to at most `max_breakers` keys; the breakers beyond count their rejections under
/// `_OTHER` and have no state gauge, and an evicted breaker's gauge says closed, as a new
/// breaker for that key would be.
#[tokio::test]
async fn breaker_series_stay_within_max_breakers() {
    const MAX: usize = 16;
    const ENDPOINTS: u32 = 200;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's own recorder: the other test installs the global one.
    let _local = metrics::set_default_local_recorder(&recorder);

    let closed = resilient_http::testkit::ClosedPort::bind().unwrap();
    let port = closed.url("").rsplit(':').next().unwrap().to_owned();
    let breaker = BreakerConfig::builder()
        .min_calls(1)
        .max_breakers(MAX)
        .build()
        .unwrap();
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    // Every address in 127/8 is loopback, and nothing listens on the reserved port: the
    // first call to each endpoint is refused and opens its breaker, the second is turned away.
    for i in 0..ENDPOINTS {
        let url = format!("http://127.1.{}.{}:{port}/", i / 200, i % 200 + 1);
        let refused = client.get(&url).send().await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Connect, "{refused}");
        let rejected = client.get(&url).send().await.unwrap_err();
        assert_eq!(rejected.kind(), ErrorKind::CircuitOpen, "{rejected}");
    }

    let snapshot = snapshotter.snapshot().into_vec();
    let breakers = client.breakers().unwrap();
    assert!(breakers.len() <= MAX, "{} breakers", breakers.len());
    let label = |key: &metrics::Key| {
        key.labels()
            .find(|l| l.key() == "breaker")
            .map(|l| l.value().to_owned())
    };
    let mut states = Vec::new();
    let mut labels = std::collections::HashSet::new();
    for (key, _, _, value) in &snapshot {
        let name = key.key().name();
        if name != telemetry::BREAKER_STATE && name != telemetry::BREAKER_REJECTIONS {
            continue;
        }
        let breaker = label(key.key()).expect("a breaker label");
        labels.insert(breaker.clone());
        if name == telemetry::BREAKER_STATE {
            states.push((breaker, value));
        }
    }
    assert!(
        states.len() <= MAX,
        "{} breaker-state series, max_breakers {MAX}",
        states.len()
    );
    assert!(
        labels.len() <= MAX + 1,
        "{} breaker label values, max_breakers {MAX}: {labels:?}",
        labels.len()
    );
    for (breaker, value) in states {
        // Open if the registry still has it; closed, as a new one would be, if evicted.
        let expected = match breakers.get(&breaker) {
            Some(handle) => {
                assert_eq!(handle.state(), resilient_http::breaker::State::Open);
                2.0
            }
            None => 0.0,
        };
        assert_eq!(
            *value,
            DebugValue::Gauge(expected.into()),
            "state of {breaker}"
        );
    }
    let rejections =
        |labels: &[(&str, &str)]| counter(&snapshot, telemetry::BREAKER_REJECTIONS, labels);
    assert_eq!(rejections(&[]), u64::from(ENDPOINTS), "every second call");
    assert_eq!(
        rejections(&[("breaker", "_OTHER")]),
        u64::from(ENDPOINTS) - MAX as u64,
        "the breakers without series of their own"
    );
}
