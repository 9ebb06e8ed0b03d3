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
use std::time::Duration;

use resilient_http::breaker::BreakerConfig;
use resilient_http::hedge::HedgeConfig;
use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
use resilient_http::policy::{EndpointPolicy, Matcher};
use resilient_http::retry::{BudgetConfig, Jitter, RetryPolicy};
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

/// Every metric in `snapshot` was described when the client was built: help text, and its
/// unit (the breaker state gauge has none: a state is no quantity).
fn described(snapshot: &Snapshot) {
    assert!(!snapshot.is_empty());
    for (key, unit, help, _) in snapshot {
        let name = key.key().name();
        assert!(
            help.as_ref().is_some_and(|h| !h.is_empty()),
            "{name} has no help text"
        );
        let expected = match name {
            telemetry::BREAKER_STATE => None,
            telemetry::REQUEST_DURATION | telemetry::ATTEMPT_DURATION => {
                Some(metrics::Unit::Seconds)
            }
            _ => Some(metrics::Unit::Count),
        };
        assert_eq!(*unit, expected, "{name}'s unit");
    }
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
            per_rule(EndpointPolicy::new().max_attempts(1)),
        )
        .build()
        .unwrap();

    // 503, 503, 200: one call, three attempts, two retries.
    let response = client.get(server.url("/search")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let search = [("policy", "search")];
    let s = &snapshotter.snapshot().into_vec();
    described(s);
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
    described(s);
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
    described(&snapshot);
    let breakers = client.breakers().unwrap();
    // Every breaker is open, and an open breaker is never dropped: the registry grew past
    // its bound (issue 22), and its series stayed bounded all the same.
    assert_eq!(
        breakers.len(),
        ENDPOINTS as usize,
        "{} breakers",
        breakers.len()
    );
    assert_eq!(
        counter(
            &snapshot,
            telemetry::ENDPOINTS_OVER_BOUND,
            &[("map", "breakers")]
        ),
        u64::from(ENDPOINTS) - MAX as u64
    );
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

/// Issue 14: the overload guards count what they hold back (`waits`), what they turn away
/// (`rejections`) and the holds servers ask for, by policy and guard; a call let through at
/// once counts nothing.
#[tokio::test(start_paused = true)]
async fn overload_waits_rejections_and_holds_are_counted_by_policy_and_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's own recorder: another test installs the global one.
    let _local = metrics::set_default_local_recorder(&recorder);

    let server = FaultServer::start().await.unwrap();
    server.script(
        "/held",
        [Reply::status(429).retry_after_secs(2), Reply::ok("")],
    );
    server.script("/slow", [Reply::ok("").delay(Duration::from_secs(1))]);
    server.script("/down", [Reply::status(503), Reply::status(503)]);
    let policy = |name: &str| Matcher::new().path(&format!("/{name}"));
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .endpoint(
            "held",
            policy("held"),
            // A key of its own: the other policies' guards are apart from this hold.
            per_rule(EndpointPolicy::new().max_attempts(1)),
        )
        .endpoint(
            "limited",
            policy("limited"),
            per_rule(
                EndpointPolicy::new()
                    .rate_limit(RateLimitConfig::new(1, Duration::from_secs(1)).burst(1)),
            ),
        )
        .endpoint(
            "slow",
            policy("slow"),
            per_rule(
                EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, Duration::from_millis(100))),
            ),
        )
        .endpoint(
            "down",
            policy("down"),
            per_rule(EndpointPolicy::new().retry_budget(BudgetConfig::new(
                0.0,
                0,
                Duration::from_secs(10),
            ))),
        )
        .build()
        .unwrap();

    // Let through at once: nothing counted.
    client.get(server.url("/plain")).send().await.unwrap();
    client.get(server.url("/limited")).send().await.unwrap();
    let s = &snapshotter.snapshot().into_vec();
    described(s);
    for name in [
        telemetry::OVERLOAD_WAITS,
        telemetry::OVERLOAD_REJECTIONS,
        telemetry::OVERLOAD_HOLDS,
    ] {
        assert_eq!(counter(s, name, &[]), 0, "{name}");
    }

    // The rate limit: a call waits for its slot, one whose deadline comes first is refused.
    client.get(server.url("/limited")).send().await.unwrap();
    let short = client
        .get(server.url("/limited"))
        .deadline(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert_eq!(short.kind(), ErrorKind::RateLimited, "{short}");
    // The hold: set by a 429, waited out by the next call, refused to one whose deadline
    // comes first.
    let held = client.get(server.url("/held")).send().await.unwrap_err();
    assert_eq!(held.status().map(|s| s.as_u16()), Some(429));
    let short = client
        .get(server.url("/held"))
        .deadline(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert_eq!(short.kind(), ErrorKind::RateLimited, "{short}");
    client.get(server.url("/held")).send().await.unwrap();
    // The bulkhead: the second call queues, then gives up.
    let (slow, over) = tokio::join!(
        client.get(server.url("/slow")).send(),
        client.get(server.url("/slow")).send()
    );
    slow.unwrap();
    assert_eq!(over.unwrap_err().kind(), ErrorKind::BulkheadFull);
    // The budget: nothing to spend on a retry.
    let down = client.get(server.url("/down")).send().await.unwrap_err();
    assert_eq!(down.kind(), ErrorKind::BudgetExhausted, "{down}");

    let s = &snapshotter.snapshot().into_vec();
    described(s);
    let of = |policy, reason| [("policy", policy), ("reason", reason)];
    let waits = |policy, reason| counter(s, telemetry::OVERLOAD_WAITS, &of(policy, reason));
    let rejections =
        |policy, reason| counter(s, telemetry::OVERLOAD_REJECTIONS, &of(policy, reason));
    assert_eq!(waits("held", "retry_after"), 1);
    assert_eq!(rejections("held", "retry_after"), 1);
    assert_eq!(waits("limited", "rate_limit"), 1);
    assert_eq!(rejections("limited", "rate_limit"), 1);
    assert_eq!(waits("slow", "bulkhead"), 1);
    assert_eq!(rejections("slow", "bulkhead"), 1);
    assert_eq!(rejections("down", "budget"), 1);
    assert_eq!(
        counter(s, telemetry::OVERLOAD_WAITS, &[]),
        3,
        "nothing else"
    );
    assert_eq!(
        counter(s, telemetry::OVERLOAD_REJECTIONS, &[]),
        4,
        "nothing else"
    );
    assert_eq!(
        counter(s, telemetry::OVERLOAD_HOLDS, &[("policy", "held")]),
        1
    );
    assert_eq!(counter(s, telemetry::OVERLOAD_HOLDS, &[]), 1);
    // Every series is labelled by policy, and only by policy and reason: no endpoint.
    for (key, _, _, _) in s {
        let key = key.key();
        if !key.name().starts_with("resilient_http.overload.") {
            continue;
        }
        let labels: Vec<_> = key.labels().map(|l| l.key()).collect();
        // (A throttled attempt's also names its criticality, one of three.)
        assert!(
            labels == ["policy", "reason"]
                || labels == ["policy"]
                || labels == ["policy", "reason", "criticality"],
            "{key:?}"
        );
    }
}

/// Issue 14: hedges are counted by outcome: sent, won (the hedge answered first), skipped
/// (due, but the budget kept it back).
#[tokio::test(start_paused = true)]
async fn hedges_are_counted_by_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let server = FaultServer::start().await.unwrap();
    let slow = || {
        [
            Reply::ok("slow").delay(Duration::from_secs(1)),
            Reply::ok("fast"),
        ]
    };
    server.script("/h", slow());
    // One retry or hedge in the budget: the second call's hedge is skipped.
    let policy = EndpointPolicy::new()
        .hedge(HedgeConfig::new(Duration::from_millis(50), 1))
        .retry_budget(BudgetConfig::new(0.0, 1, Duration::from_secs(1)));
    let client = Client::builder()
        .endpoint("search", Matcher::new().path("/h"), policy)
        .build()
        .unwrap();
    client.get(server.url("/h")).send().await.unwrap();
    server.script("/h", slow());
    client.get(server.url("/h")).send().await.unwrap();

    let s = &snapshotter.snapshot().into_vec();
    described(s);
    for (outcome, count) in [("sent", 1), ("won", 1), ("skipped", 1)] {
        let labels = [("policy", "search"), ("outcome", outcome)];
        assert_eq!(counter(s, telemetry::HEDGES, &labels), count, "{outcome}");
    }

    // The first attempt fails while its hedge is out; the hedge's answer is the call's.
    server.script(
        "/won",
        [
            Reply::status(503).delay(Duration::from_millis(100)),
            Reply::ok("").delay(Duration::from_millis(100)),
        ],
    );
    let client = Client::builder()
        .endpoint(
            "won",
            Matcher::new().path("/won"),
            EndpointPolicy::new().hedge(HedgeConfig::new(Duration::from_millis(50), 1)),
        )
        .build()
        .unwrap();
    client.get(server.url("/won")).send().await.unwrap();
    let s = &snapshotter.snapshot().into_vec();
    described(s);
    let labels = [("policy", "won"), ("outcome", "won")];
    assert_eq!(counter(s, telemetry::HEDGES, &labels), 1);
}

/// What a recorder was told about each metric: its kind, unit and help text.
#[derive(Default)]
struct Descriptions(std::sync::Mutex<Vec<Description>>);

/// A metric's kind, name, unit and help text.
type Description = (&'static str, String, Option<metrics::Unit>, String);

impl Descriptions {
    fn add(
        &self,
        kind: &'static str,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.0
            .lock()
            .unwrap()
            .push((kind, key.as_str().to_owned(), unit, help.to_string()));
    }
}

impl metrics::Recorder for Descriptions {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.add("counter", key, unit, help);
    }
    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.add("gauge", key, unit, help);
    }
    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        unit: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.add("histogram", key, unit, help);
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Every metric the library has, with its kind: the table in the telemetry docs.
const ALL: [(&str, &str); 14] = [
    (telemetry::REQUESTS, "counter"),
    (telemetry::REQUEST_DURATION, "histogram"),
    (telemetry::REQUEST_ATTEMPTS, "histogram"),
    (telemetry::ATTEMPTS, "counter"),
    (telemetry::ATTEMPT_DURATION, "histogram"),
    (telemetry::RETRIES, "counter"),
    (telemetry::GIVE_UPS, "counter"),
    (telemetry::BREAKER_REJECTIONS, "counter"),
    (telemetry::BREAKER_STATE, "gauge"),
    (telemetry::OVERLOAD_WAITS, "counter"),
    (telemetry::OVERLOAD_REJECTIONS, "counter"),
    (telemetry::OVERLOAD_HOLDS, "counter"),
    (telemetry::HEDGES, "counter"),
    (telemetry::ENDPOINTS_OVER_BOUND, "counter"),
];

fn described_once_each(recorder: &Descriptions) {
    let seen = recorder.0.lock().unwrap();
    assert_eq!(
        seen.len(),
        ALL.len(),
        "{:?}",
        seen.iter().map(|d| &d.1).collect::<Vec<_>>()
    );
    for (name, kind) in ALL {
        let found: Vec<_> = seen.iter().filter(|d| d.1 == name).collect();
        assert_eq!(found.len(), 1, "{name} described {} times", found.len());
        let (described_as, _, unit, help) = found[0];
        assert_eq!(*described_as, kind, "{name}");
        assert!(!help.is_empty(), "{name}");
        assert_eq!(
            unit.is_none(),
            name == telemetry::BREAKER_STATE,
            "{name}: {unit:?}"
        );
    }
}

#[test]
fn every_metric_is_described_with_its_kind_unit_and_help() {
    let recorder = Descriptions::default();
    metrics::with_local_recorder(&recorder, telemetry::describe);
    described_once_each(&recorder);
}

#[test]
fn building_a_client_or_a_retry_layer_describes_the_metrics_to_the_recorder_in_force() {
    let recorder = Descriptions::default();
    let built = metrics::with_local_recorder(&recorder, || Client::builder().build());
    assert!(built.is_ok());
    described_once_each(&recorder);

    let recorder = Descriptions::default();
    metrics::with_local_recorder(&recorder, || {
        use tower::Layer;
        resilient_http::retry::RetryLayer::new(RetryPolicy::default()).layer(tower::service_fn(
            |_: reqwest::Request| async {
                Err::<reqwest::Response, resilient_http::Error>(
                    resilient_http::Error::invalid_config("unused"),
                )
            },
        ))
    });
    described_once_each(&recorder);
}

/// The labels of the first series of metric `name` that has all of `labels`.
fn labels_of(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Vec<(String, String)> {
    snapshot
        .iter()
        .map(|(key, ..)| key.key())
        .filter(|key| key.name() == name)
        .map(|key| {
            key.labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect::<Vec<_>>()
        })
        .find(|found| {
            labels
                .iter()
                .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v))
        })
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn server_labels_are_opt_in_and_bounded_by_max_breakers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's own recorder: another test installs the global one.
    let _local = metrics::set_default_local_recorder(&recorder);

    let (a, b, c) = (
        FaultServer::start().await.unwrap(),
        FaultServer::start().await.unwrap(),
        FaultServer::start().await.unwrap(),
    );
    for server in [&a, &b, &c] {
        server.script("/labelled", [Reply::ok("ok")]);
        server.script("/plain", [Reply::ok("ok")]);
    }
    // Set in the file, under the default's two servers' bound (`max_breakers`).
    let client = Client::builder()
        .circuit_breaker(BreakerConfig::builder().max_breakers(2).build().unwrap())
        .config_toml(
            r#"
            [[endpoint]]
            name = "labelled"
            match = { path = "/labelled" }
            metrics_server_address = true
            "#,
        )
        .build()
        .unwrap();
    for server in [&a, &b, &c, &a] {
        client.get(server.url("/labelled")).send().await.unwrap();
        client.get(server.url("/plain")).send().await.unwrap();
    }
    let s = &snapshotter.snapshot().into_vec();
    described(s);
    let port = |server: &FaultServer| server.addr().port().to_string();
    let (a_port, b_port) = (port(&a), port(&b));
    // The first two servers have series of their own, on every per-call metric.
    assert_eq!(
        counter(s, telemetry::REQUESTS, &labelled("127.0.0.1", &a_port)),
        2
    );
    assert_eq!(
        counter(s, telemetry::ATTEMPTS, &labelled("127.0.0.1", &a_port)),
        2
    );
    assert_eq!(
        counter(s, telemetry::REQUESTS, &labelled("127.0.0.1", &b_port)),
        1
    );
    for name in [
        telemetry::ATTEMPT_DURATION,
        telemetry::REQUEST_DURATION,
        telemetry::REQUEST_ATTEMPTS,
    ] {
        assert_eq!(
            histogram(s, name, &labelled("127.0.0.1", &a_port)).len(),
            2,
            "{name}"
        );
    }
    // The third shares `_OTHER`.
    assert_eq!(
        counter(s, telemetry::REQUESTS, &labelled("_OTHER", "_OTHER")),
        1
    );
    assert_eq!(
        counter(s, telemetry::REQUESTS, &[("policy", "labelled")]),
        4
    );
    // Off by default: the default policy's series have no server labels.
    assert_eq!(counter(s, telemetry::REQUESTS, &[("policy", "default")]), 4);
    for name in [telemetry::REQUESTS, telemetry::ATTEMPT_DURATION] {
        let plain = labels_of(s, name, &[("policy", "default")]);
        assert!(!plain.is_empty(), "{name}");
        assert!(
            plain.iter().all(|(k, _)| !k.starts_with("server.")),
            "{name}: {plain:?}"
        );
    }
}

/// The labels of the `labelled` policy's series for one server.
fn labelled<'a>(server: &'a str, port: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("policy", "labelled"),
        ("server.address", server),
        ("server.port", port),
    ]
}

/// Every guard of the policy and its breaker scoped to the rule: one state each, under the
/// rule's name, whatever the host.
fn per_rule(policy: EndpointPolicy) -> EndpointPolicy {
    use resilient_http::policy::Scope;
    policy
        .breaker_scope(Scope::Rule)
        .hold_scope(Scope::Rule)
        .rate_limit_scope(Scope::Rule)
        .bulkhead_scope(Scope::Rule)
        .retry_budget_scope(Scope::Rule)
}

/// Issue 26: an attempt throttled locally is an overload rejection, reason `throttle`,
/// labelled with its criticality; every call's `requests` series says its criticality.
#[tokio::test(start_paused = true)]
async fn throttled_attempts_and_requests_are_counted_by_criticality() {
    use resilient_http::overload::{Criticality, ThrottleConfig};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's own recorder: another test installs the global one.
    let _local = metrics::set_default_local_recorder(&recorder);

    let server = FaultServer::start().await.unwrap();
    server.script("/refused", [Reply::status(503)]);
    let policy = EndpointPolicy::new()
        .max_attempts(1)
        .throttle(ThrottleConfig::new());
    let client = Client::builder()
        .endpoint("refused", Matcher::new().path("/refused"), policy)
        .build()
        .unwrap();
    let url = server.url("/refused");
    // Nothing is accepted: after these, most default attempts are throttled, and every
    // sheddable one.
    for _ in 0..10 {
        let _ = client.get(&url).send().await;
    }
    for _ in 0..5 {
        let error = client
            .get(&url)
            .criticality(Criticality::Sheddable)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Throttled);
    }
    let s = &snapshotter.snapshot().into_vec();
    let throttled = |criticality| {
        counter(
            s,
            telemetry::OVERLOAD_REJECTIONS,
            &[
                ("policy", "refused"),
                ("reason", "throttle"),
                ("criticality", criticality),
            ],
        )
    };
    assert_eq!(throttled("sheddable"), 5);
    let defaults = throttled("default");
    assert!((1..10).contains(&defaults), "{defaults}");
    let requests = |criticality| {
        counter(
            s,
            telemetry::REQUESTS,
            &[("policy", "refused"), ("criticality", criticality)],
        )
    };
    assert_eq!(requests("default"), 10);
    assert_eq!(requests("sheddable"), 5);
    assert_eq!(
        counter(
            s,
            telemetry::REQUESTS,
            &[("policy", "refused"), ("error.type", "throttled")]
        ),
        5 + defaults
    );
}
