//! What the library tells an operator, and that no secret reaches it.
//!
//! Every test here listens at TRACE, in a binary of its own. tracing caches per call site,
//! for the whole process, whether anyone listens. While exactly one subscriber is registered
//! (one test's, set for its thread only), a call site first reached on a thread without a
//! subscriber is cached as unwanted, and the test that listens then misses that event
//! (tracing-core 0.1.36, tokio-rs/tracing#3611). A test here that sent a call without
//! listening made `a_refusal_by_an_outer_layer_is_an_event` see nothing, a few times in 100
//! runs under load. So no test goes without a subscriber, and a thread without one of its own
//! falls back to a global one that listens and writes nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_http::breaker::BreakerConfig;
use resilient_http::hedge::HedgeConfig;
use resilient_http::outer::{CallService, Exchange, Exchanged};
use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{BudgetConfig, Jitter, RetryPolicy};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Fields = BTreeMap<String, String>;

/// A key the capture adds to each span's fields: how many CLIENT spans are around it.
const CLIENT_SPANS_AROUND: &str = "(client spans around)";

/// A closed span, or an event with the names of the spans around it (innermost last).
#[derive(Debug)]
enum Seen {
    Span {
        name: &'static str,
        fields: Fields,
    },
    Event {
        level: Level,
        fields: Fields,
        scope: Vec<&'static str>,
    },
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

struct FieldMap<'a>(&'a mut Fields);

impl Visit for FieldMap<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut FieldMap(&mut fields));
        let span = ctx.span(id).unwrap();
        // How many OpenTelemetry CLIENT spans this one is inside (`otel.kind` as created).
        let around = span
            .scope()
            .skip(1)
            .filter(|parent| {
                parent
                    .extensions()
                    .get::<Fields>()
                    .is_some_and(|f| f.get("otel.kind").map(String::as_str) == Some("client"))
            })
            .count();
        fields.insert(CLIENT_SPANS_AROUND.to_owned(), around.to_string());
        span.extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(&mut FieldMap(extensions.get_mut::<Fields>().unwrap()));
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut FieldMap(&mut fields));
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|span| span.name()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen::Event {
            level: *event.metadata().level(),
            fields,
            scope,
        });
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions_mut().remove::<Fields>().unwrap();
        self.0.lock().unwrap().push(Seen::Span {
            name: span.name(),
            fields,
        });
    }
}

/// Everything traced at TRACE, from every crate, while `f` runs on this thread: as records,
/// and as the text a `fmt` subscriber writes (span openings and closings included).
async fn traced<F: std::future::Future>(f: F) -> (F::Output, Vec<Seen>, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(capture.clone())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
                .with_writer(move || writer.clone()),
        )
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    static FALLBACK: std::sync::Once = std::sync::Once::new();
    FALLBACK.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();
    });
    let _guard = tracing::subscriber::set_default(subscriber);
    let output = f.await;
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let seen = std::mem::take(&mut *capture.0.lock().unwrap());
    (output, seen, text)
}

fn retrying(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

fn spans<'a>(seen: &'a [Seen], wanted: &str) -> Vec<&'a Fields> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Span { name, fields } if *name == wanted => Some(fields),
            _ => None,
        })
        .collect()
}

fn events<'a>(seen: &'a [Seen], message: &str) -> Vec<(&'a Level, &'a Fields, &'a [&'static str])> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Event {
                level,
                fields,
                scope,
            } if fields.get("message").map(String::as_str) == Some(message) => {
                Some((level, fields, scope.as_slice()))
            }
            _ => None,
        })
        .collect()
}

/// Issue 26: the call's span says how much it matters: the request's criticality, else its
/// policy's.
#[tokio::test(start_paused = true)]
async fn the_request_span_names_its_criticality() {
    use resilient_http::overload::Criticality;
    use resilient_http::policy::EndpointPolicy;
    let server = FaultServer::start().await.unwrap();
    let client = Client::builder()
        .default_policy(EndpointPolicy::new().criticality(Criticality::Sheddable))
        .build()
        .unwrap();
    let (_, seen, _) = traced(client.get(server.url("/s")).send()).await;
    assert_eq!(spans(&seen, "request")[0]["criticality"], "sheddable");
    let critical = client
        .get(server.url("/s"))
        .criticality(Criticality::Critical);
    let (_, seen, _) = traced(critical.send()).await;
    assert_eq!(spans(&seen, "request")[0]["criticality"], "critical");
}

#[tokio::test(start_paused = true)]
async fn a_request_and_its_attempts_are_spans_with_opentelemetry_fields() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/s",
        [Reply::status(503), Reply::status(503), Reply::ok("ok")],
    );
    let client = Client::builder()
        .retry(retrying(3))
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let (result, seen, _) = traced(client.get(server.url("/s")).send()).await;
    assert_eq!(result.unwrap().status(), 200);

    let attempts = spans(&seen, "attempt");
    assert_eq!(attempts.len(), 3, "{seen:#?}");
    let port = server.addr().port().to_string();
    for (n, (attempt, status)) in attempts.iter().zip(["503", "503", "200"]).enumerate() {
        assert_eq!(attempt["http.request.resend_count"], n.to_string());
        assert_eq!(attempt["http.request.method"], "GET");
        assert_eq!(attempt["server.address"], "127.0.0.1");
        assert_eq!(attempt["server.port"], port);
        assert_eq!(attempt["otel.kind"], "client");
        // OpenTelemetry's HTTP client span name: `{method}` (no route template is known).
        assert_eq!(attempt["otel.name"], "GET");
        assert_eq!(attempt["url.full"], server.url("/s"));
        assert_eq!(attempt["http.response.status_code"], status);
        assert_eq!(
            attempt.get("error.type").map(String::as_str),
            (status != "200").then_some("503"),
            "{attempt:?}"
        );
    }
    let requests = spans(&seen, "request");
    assert_eq!(requests.len(), 1, "{seen:#?}");
    let request = requests[0];
    assert_eq!(request["http.request.method"], "GET");
    assert_eq!(request["url.full"], server.url("/s"));
    // The logical call: not a CLIENT span, so that each exchange has exactly one.
    assert_eq!(request["otel.kind"], "internal");
    assert_eq!(request["policy"], "default");
    assert_eq!(request["criticality"], "default");
    assert_eq!(request["attempts"], "3");
    assert_eq!(request["http.response.status_code"], "200");
    assert!(!request.contains_key("error.type"), "{request:?}");
    // Two sleeps, 100 ms and 200 ms, on the paused clock.
    assert!(
        request["duration_ms"].parse::<u64>().unwrap() >= 300,
        "{request:?}"
    );

    let retries = events(&seen, "retry scheduled");
    assert_eq!(retries.len(), 2, "{seen:#?}");
    for ((level, fields, scope), delay) in retries.iter().zip(["100", "200"]) {
        assert_eq!(**level, Level::INFO);
        assert_eq!(fields["reason"], "503");
        assert_eq!(fields["delay_ms"], delay);
        assert_eq!(fields["retry_after"], "false");
        assert_eq!(fields["attempt"], if delay == "100" { "1" } else { "2" });
        // Between attempts: inside the request's span, outside any attempt's.
        assert_eq!(scope.last(), Some(&"request"), "{scope:?}");
        assert!(!scope.contains(&"attempt"), "{scope:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn skipped_retries_say_why() {
    let server = FaultServer::start().await.unwrap();
    server.script("/pay", [Reply::status(503)]);
    server.script(
        "/wait",
        [Reply::status(503).retry_after_secs(3600), Reply::ok("")],
    );
    let client = Client::builder().retry(retrying(3)).build().unwrap();

    let (result, seen, _) = traced(client.post(server.url("/pay")).send()).await;
    result.unwrap_err();
    let skipped = events(&seen, "retry skipped");
    assert_eq!(skipped.len(), 1, "{seen:#?}");
    assert_eq!(*skipped[0].0, Level::WARN);
    assert_eq!(skipped[0].1["reason"], "non_idempotent");
    let request = spans(&seen, "request")[0];
    assert_eq!(request["error.type"], "503");
    assert_eq!(request["attempts"], "1");

    let (result, seen, _) = traced(client.get(server.url("/wait")).send()).await;
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Status);
    assert_eq!(
        events(&seen, "retry skipped")[0].1["reason"],
        "retry_after_above_cap"
    );
}

/// A refusal by an outer layer of the user's (a bulkhead, a load shed) is an event: nothing
/// else in the stack sees it.
#[tokio::test(start_paused = true)]
async fn a_refusal_by_an_outer_layer_is_an_event() {
    let server = FaultServer::start().await.unwrap();
    let bulkhead = tower::layer::layer_fn(|_: CallService| {
        tower::service_fn(|_: Exchange| async { Err::<Exchanged, _>("bulkhead full") })
    });
    let client = Client::builder().layer(bulkhead).build().unwrap();

    let (result, seen, _) = traced(client.get(server.url("/q?api_key=k-31337")).send()).await;
    let error = result.unwrap_err();
    let refused = events(&seen, "request rejected by an outer layer");
    assert_eq!(refused.len(), 1, "{seen:#?}");
    let (level, fields, _) = refused[0];
    assert_eq!(*level, Level::DEBUG);
    assert_eq!(fields["error.type"], error.kind().as_str());
    assert_eq!(fields["http.request.method"], "GET");
    assert!(fields["error"].contains("bulkhead full"), "{fields:?}");
    assert!(!fields["url.full"].contains("k-31337"), "{fields:?}");
    assert_eq!(server.hits("/q"), 0);

    // A call's own failure passes through the layer: it is not a refusal.
    server.script("/gone", [Reply::status(404)]);
    let passing = tower::layer::layer_fn(|inner: CallService| inner);
    let client = Client::builder().layer(passing).build().unwrap();
    let (result, seen, _) = traced(client.get(server.url("/gone")).send()).await;
    assert_eq!(result.unwrap_err().status().map(|s| s.as_u16()), Some(404));
    assert!(events(&seen, "request rejected by an outer layer").is_empty());
}

/// The error of a layer of the user's is kept as a source only as redacted text, chain
/// included: error reporters print a source chain as it is.
#[tokio::test(start_paused = true)]
async fn a_foreign_error_chain_is_redacted() {
    #[derive(Debug)]
    struct Refused(std::io::Error);
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused by http://gate:pw-31337@gate.local/check?token=tok-31337")
        }
    }
    impl std::error::Error for Refused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let server = FaultServer::start().await.unwrap();
    let refusing = tower::layer::layer_fn(|_: CallService| {
        tower::service_fn(|_: Exchange| async {
            let cause = std::io::Error::other("see https://idp.local/?client_secret=cs-31337");
            Err::<Exchanged, _>(Refused(cause))
        })
    });
    let client = Client::builder().layer(refusing).build().unwrap();
    let (result, _, text) = traced(client.get(server.url("/x")).send()).await;
    let error = result.unwrap_err();
    assert!(text.contains("rejected by an outer layer"), "{text}");

    let mut chain = vec![error.to_string(), format!("{error:?}")];
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        chain.push(s.to_string());
        chain.push(format!("{s:?}"));
        source = s.source();
    }
    assert!(chain.len() >= 6, "the chain stays as deep: {chain:#?}");
    for text in chain.iter().chain([&text]) {
        for secret in ["pw-31337", "tok-31337", "cs-31337"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    assert!(chain[2].contains("gate.local/check"), "{chain:#?}");
    // The error itself stays reachable, on request, to downcast.
    let original = error.unredacted_source().expect("the layer's error");
    assert!(original.downcast_ref::<Refused>().is_some());
}

const SECRETS: [&str; 4] = [
    "userinfo-pw-31337",
    "apikey-val-31337",
    "bearer-tok-31337",
    "cookie-val-31337",
];

/// The acceptance test of redaction: secrets in the `Authorization` header, the URL's user
/// info and an `api_key` query value, through retries, a breaker opening and a final failure,
/// appear nowhere in the TRACE output of every crate, nor in the errors.
#[tokio::test(start_paused = true)]
async fn secrets_never_reach_logs_or_errors() {
    let server = FaultServer::start().await.unwrap();
    let failing = || Reply::status(503).header("set-cookie", format!("session={}", SECRETS[3]));
    server.script("/s", [failing(), failing(), failing(), failing()]);
    let breaker = BreakerConfig::builder()
        .min_calls(3)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let client = Client::builder()
        .retry(retrying(3))
        .circuit_breaker(breaker)
        .build()
        .unwrap();
    let url = server
        .url(&format!("/s?api_key={}&page=2", SECRETS[1]))
        .replace("http://", &format!("http://alice:{}@", SECRETS[0]));

    let calls = async {
        let mut errors = Vec::new();
        for _ in 0..2 {
            let error = client
                .get(&url)
                .bearer_auth(SECRETS[2])
                .header("cookie", format!("id={}", SECRETS[3]))
                .send()
                .await
                .unwrap_err();
            errors.push(error);
        }
        errors
    };
    let (errors, seen, text) = traced(calls).await;

    // The run went where it should: retries, the breaker opened, the last call turned away.
    assert!(!events(&seen, "retry scheduled").is_empty(), "{text}");
    assert_eq!(events(&seen, "circuit breaker opened").len(), 1, "{text}");
    assert_eq!(errors[0].kind(), ErrorKind::Status, "{}", errors[0]);
    assert_eq!(errors[1].kind(), ErrorKind::CircuitOpen, "{}", errors[1]);
    assert!(text.contains("api_key=REDACTED"), "{text}");
    // Every span that names the URL names it redacted: the call's and each attempt's.
    for name in ["request", "attempt"] {
        let with_url = spans(&seen, name);
        assert!(!with_url.is_empty(), "no {name} span: {text}");
        for fields in with_url {
            assert!(
                fields["url.full"].contains("api_key=REDACTED"),
                "{fields:?}"
            );
        }
    }

    let shown: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}"), format!("{e:#?}")])
        .collect();
    assert!(shown[1].contains("set-cookie"), "{}", shown[1]);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
        for shown in &shown {
            assert!(!shown.contains(secret), "{secret} in an error: {shown}");
        }
    }
}

/// The `ms` field of an event, as a number.
fn ms(fields: &Fields, name: &str) -> u64 {
    fields[name].parse().unwrap()
}

/// Issue 14: a server's `Retry-After` holds its endpoint. The hold is one INFO when it
/// begins, however many calls then wait for it; each call that waits is a DEBUG.
#[tokio::test(start_paused = true)]
async fn a_hold_is_announced_once_and_each_call_waiting_for_it_is_an_event() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/busy",
        [
            Reply::status(503).retry_after_secs(2),
            Reply::ok("a"),
            Reply::ok("b"),
        ],
    );
    let client = Client::builder().retry(retrying(1)).build().unwrap();
    let url = server.url("/busy");
    let calls = async {
        let first = client.get(&url).send().await.unwrap_err();
        let (a, b) = tokio::join!(client.get(&url).send(), client.get(&url).send());
        (first, a.unwrap().status(), b.unwrap().status())
    };
    let ((first, a, b), seen, _) = traced(calls).await;
    assert_eq!(first.status().map(|s| s.as_u16()), Some(503));
    assert_eq!((a.as_u16(), b.as_u16()), (200, 200));

    let held = events(&seen, "endpoint held");
    assert_eq!(held.len(), 1, "{seen:#?}");
    let (level, fields, scope) = held[0];
    assert_eq!(*level, Level::INFO);
    assert_eq!(fields["endpoint"], format!("http://{}", server.addr()));
    assert_eq!(fields["retry_after_ms"], "2000");
    assert_eq!(fields["policy"], "default");
    assert_eq!(scope.first(), Some(&"request"), "{scope:?}");

    let delayed = events(&seen, "request delayed");
    assert_eq!(delayed.len(), 2, "one per waiting call: {seen:#?}");
    for (level, fields, scope) in delayed {
        assert_eq!(*level, Level::DEBUG);
        assert_eq!(fields["reason"], "retry_after");
        assert_eq!(fields["endpoint"], format!("http://{}", server.addr()));
        let wait = ms(fields, "wait_ms");
        // The hold's 2 s, and for the second waiter its share of the release window (a
        // quarter of the hold) after it.
        assert!(wait > 1_000 && wait < 2_500, "{fields:?}");
        assert_eq!(scope.first(), Some(&"request"), "{scope:?}");
    }
}

/// Issue 25: a quota the server advertises is a DEBUG when learned and when a new window of
/// it starts, not for each answer; its running out holds the endpoint (one INFO, reason
/// `server_quota`), and each call that waits for its reset is a DEBUG.
#[tokio::test(start_paused = true)]
async fn a_quota_is_said_once_a_window_and_a_spent_one_once_a_reset() {
    let server = FaultServer::start().await.unwrap();
    let replies = [2, 1, 0, 2].map(|left| {
        Reply::ok("x")
            .header("ratelimit-policy", "\"default\";q=3;w=2")
            .header("ratelimit", format!("\"default\";r={left};t=2"))
    });
    server.script("/q", replies);
    let client = Client::builder().build().unwrap();
    let url = server.url("/q");
    let calls = async {
        for _ in 0..4 {
            client.get(&url).send().await.unwrap();
        }
    };
    let ((), seen, _) = traced(calls).await;
    assert_eq!(server.hits("/q"), 4);
    let endpoint = format!("http://{}", server.addr());

    // Learned, then its new window (the fourth answer): not each answer.
    let learned = events(&seen, "server quota learned");
    assert_eq!(learned.len(), 2, "{seen:#?}");
    for (level, fields, _) in &learned {
        assert_eq!(**level, Level::DEBUG);
        assert_eq!(fields["endpoint"], endpoint);
        assert_eq!(fields["quota"], "default");
        assert_eq!(fields["limit"], "3");
        assert_eq!(fields["reset_ms"], "2000");
        assert_eq!(fields["policy"], "default");
    }
    assert_eq!(learned[0].1["remaining"], "2");

    let held = events(&seen, "endpoint held");
    assert_eq!(held.len(), 1, "{seen:#?}");
    let (level, fields, _) = held[0];
    assert_eq!(*level, Level::INFO);
    assert_eq!(fields["reason"], "server_quota");
    assert_eq!(fields["reset_ms"], "2000");

    let delayed = events(&seen, "request delayed");
    assert_eq!(delayed.len(), 1, "{seen:#?}");
    assert_eq!(delayed[0].1["reason"], "server_quota");
    assert_eq!(delayed[0].1["wait_ms"], "2000");
}

/// Issue 14: a call refused at once, because the hold or the rate limit would keep it past
/// its deadline, is a DEBUG event that says which, not a WARN per request.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_refusal_is_a_debug_event_that_says_which_guard() {
    let server = FaultServer::start().await.unwrap();
    server.script("/held", [Reply::status(429).retry_after_secs(5)]);
    let one_per_10s = RateLimitConfig::new(1, Duration::from_secs(10)).burst(1);
    let limited = Client::builder()
        .retry(retrying(3))
        .deadline(Duration::from_secs(1))
        .default_policy(EndpointPolicy::new().rate_limit(one_per_10s))
        .build()
        .unwrap();
    let held = Client::builder()
        .retry(retrying(1))
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let calls = async {
        limited.get(server.url("/a")).send().await.unwrap();
        let over = limited.get(server.url("/a")).send().await.unwrap_err();
        held.get(server.url("/held")).send().await.unwrap_err();
        let during = held.get(server.url("/held")).send().await.unwrap_err();
        (over, during)
    };
    let ((over, during), seen, _) = traced(calls).await;
    assert_eq!(over.kind(), ErrorKind::RateLimited, "{over}");
    assert_eq!(during.kind(), ErrorKind::RateLimited, "{during}");

    let refused = events(&seen, "request rejected: rate limited");
    assert_eq!(refused.len(), 2, "{seen:#?}");
    let reasons: Vec<_> = refused
        .iter()
        .map(|(_, f, _)| f["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["rate_limit", "retry_after"]);
    for (level, fields, scope) in &refused {
        assert_eq!(**level, Level::DEBUG);
        assert_eq!(fields["endpoint"], format!("http://{}", server.addr()));
        let left = ms(fields, "retry_after_ms");
        assert!(left > 4_000 && left <= 10_000, "{fields:?}");
        assert_eq!(scope.first(), Some(&"request"), "{scope:?}");
    }
    // The refusal was the event: ending the call is not a WARN besides.
    let skipped: Vec<_> = events(&seen, "retry skipped")
        .into_iter()
        .filter(|(_, fields, _)| fields["reason"] == "rate_limited")
        .collect();
    assert!(skipped.is_empty(), "{skipped:#?}");
    let not_retried = events(&seen, "not retried");
    assert_eq!(not_retried.len(), 2, "{seen:#?}");
    assert!(not_retried.iter().all(|(level, fields, _)| {
        **level == Level::DEBUG && fields["reason"] == "rate_limited"
    }));
}

/// Issue 14: a call over the bulkhead queues (DEBUG), then, no place having come in time, is
/// refused (DEBUG).
#[tokio::test(start_paused = true)]
async fn bulkhead_queueing_and_refusal_are_events() {
    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("slow").delay(Duration::from_secs(1))]);
    let client = Client::builder()
        .retry(retrying(1))
        .default_policy(
            EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, Duration::from_millis(100))),
        )
        .build()
        .unwrap();
    let calls = async {
        let (slow, over) = tokio::join!(
            client.get(server.url("/slow")).send(),
            client.get(server.url("/slow")).send()
        );
        (slow.unwrap().status(), over.unwrap_err())
    };
    let ((slow, over), seen, _) = traced(calls).await;
    assert_eq!(slow, 200);
    assert_eq!(over.kind(), ErrorKind::BulkheadFull, "{over}");

    let queued = events(&seen, "request queued: bulkhead full");
    assert_eq!(queued.len(), 1, "{seen:#?}");
    let (level, fields, scope) = queued[0];
    assert_eq!(*level, Level::DEBUG);
    assert_eq!(fields["endpoint"], format!("http://{}", server.addr()));
    assert_eq!(fields["max_in_flight"], "1");
    assert_eq!(fields["queue_ms"], "100");
    assert_eq!(scope.first(), Some(&"request"), "{scope:?}");

    let refused = events(&seen, "request rejected: bulkhead full");
    assert_eq!(refused.len(), 1, "{seen:#?}");
    let (level, fields, scope) = refused[0];
    assert_eq!(*level, Level::DEBUG);
    assert_eq!(fields["max_in_flight"], "1");
    assert_eq!(fields["policy"], "default");
    assert_eq!(scope.first(), Some(&"request"), "{scope:?}");
}

/// Issue 14: a retry the budget refuses ends the call with the `retry skipped` WARN, as every
/// other transient failure not retried, with its own reason.
#[tokio::test(start_paused = true)]
async fn a_spent_retry_budget_is_a_skipped_retry_warning() {
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503), Reply::status(503)]);
    let nothing_to_spend = BudgetConfig::new(0.0, 0, Duration::from_secs(10));
    let client = Client::builder()
        .retry(retrying(3))
        .default_policy(EndpointPolicy::new().retry_budget(nothing_to_spend))
        .build()
        .unwrap();
    let (result, seen, _) = traced(client.get(server.url("/down")).send()).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BudgetExhausted, "{error}");
    assert_eq!(server.hits("/down"), 1);

    let skipped = events(&seen, "retry skipped");
    assert_eq!(skipped.len(), 1, "{seen:#?}");
    let (level, fields, _) = skipped[0];
    assert_eq!(*level, Level::WARN);
    assert_eq!(fields["reason"], "budget_exhausted");
    assert_eq!(fields["attempt"], "1");
    assert_eq!(fields["policy"], "default");
}

/// Issue 14: each attempt of a race is a span of its own, marked `hedge` when it is one; the
/// loser ends as `cancelled`; sending a hedge is a DEBUG event inside the request's span.
#[tokio::test(start_paused = true)]
async fn hedges_are_attempt_spans_of_their_own() {
    let server = FaultServer::start().await.unwrap();
    server.script(
        "/slow",
        [
            Reply::ok("slow").delay(Duration::from_secs(1)),
            Reply::ok("fast"),
        ],
    );
    let hedge = HedgeConfig::new(Duration::from_millis(50), 1);
    let client = Client::builder()
        .default_policy(EndpointPolicy::new().hedge(hedge))
        .build()
        .unwrap();
    let (result, seen, _) = traced(client.get(server.url("/slow")).send()).await;
    assert_eq!(result.unwrap().text().await.unwrap(), "fast");

    let attempts = spans(&seen, "attempt");
    assert_eq!(attempts.len(), 2, "{seen:#?}");
    assert_eq!(attempts[0]["hedge"], "false");
    assert_eq!(attempts[0]["error.type"], "cancelled");
    assert!(!attempts[0].contains_key("http.response.status_code"));
    assert_eq!(attempts[1]["hedge"], "true");
    assert_eq!(attempts[1]["http.request.resend_count"], "1");
    assert_eq!(attempts[1]["http.response.status_code"], "200");
    let sent = events(&seen, "hedge sent");
    assert_eq!(sent.len(), 1, "{seen:#?}");
    let (level, fields, scope) = sent[0];
    assert_eq!(*level, Level::DEBUG);
    assert_eq!(fields["attempt"], "2");
    assert_eq!(scope.last(), Some(&"request"), "{scope:?}");
}

/// A `RetryLayer` of the user's own over a service that pushes back (here a concurrency
/// limit of 1, held by the first attempt): a hedge that falls due never waits for it; it is
/// skipped, and says so (`hedge skipped`, reason `service_not_ready`) rather than silently.
#[tokio::test(start_paused = true)]
async fn a_hedge_the_service_below_is_not_ready_for_says_it_was_skipped() {
    use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
    use resilient_http::retry::RetryLayer;
    use tower::{Service, ServiceBuilder, ServiceExt};

    let server = FaultServer::start().await.unwrap();
    server.script("/slow", [Reply::ok("slow").delay(Duration::from_secs(1))]);
    let policy = RetryPolicy::builder()
        .hedge(HedgeConfig::new(Duration::from_millis(50), 1))
        .build()
        .unwrap();
    let mut stack = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .concurrency_limit(1)
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(reqwest::Client::new());
    let request = reqwest::Request::new(reqwest::Method::GET, server.url("/slow").parse().unwrap());
    let call = async {
        let ready = stack.ready().await.unwrap();
        ready.call(request).await
    };
    let (result, seen, _) = traced(call).await;
    assert_eq!(result.unwrap().text().await.unwrap(), "slow");
    assert_eq!(server.hits("/slow"), 1, "no hedge went out");
    let skipped = events(&seen, "hedge skipped");
    assert_eq!(skipped.len(), 1, "{seen:#?}");
    assert_eq!(*skipped[0].0, Level::DEBUG);
    assert_eq!(skipped[0].1["reason"], "service_not_ready");
}

/// The spans of `seen` that are OpenTelemetry CLIENT spans, by name.
fn client_spans(seen: &[Seen]) -> Vec<(&'static str, &Fields)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Span { name, fields }
                if fields.get("otel.kind").map(String::as_str) == Some("client") =>
            {
                Some((*name, fields))
            }
            _ => None,
        })
        .collect()
}

/// A reqwest-middleware chain over a fresh client without reqwest's own retry, and a call
/// that the server answers 503 then 200: two exchanges.
#[cfg(feature = "reqwest-middleware")]
async fn two_exchanges_through(tracing_first: bool) -> (Vec<Seen>, String) {
    use reqwest_tracing::TracingMiddleware;
    use resilient_http::middleware::ResilientMiddleware;

    let server = FaultServer::start().await.unwrap();
    server.script("/s", [Reply::status(503), Reply::ok("ok")]);
    let resilience = ResilientMiddleware::new(Client::builder().retry(retrying(3))).unwrap();
    let http = reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .unwrap();
    let chain = reqwest_middleware::ClientBuilder::new(http);
    let client = if tracing_first {
        chain.with(TracingMiddleware::default()).with(resilience)
    } else {
        chain.with(resilience).with(TracingMiddleware::default())
    }
    .build();
    let (result, seen, text) = traced(client.get(server.url("/s")).send()).await;
    assert_eq!(result.unwrap().status(), 200, "{text}");
    assert_eq!(spans(&seen, "attempt").len(), 2, "{text}");
    (seen, text)
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test(start_paused = true)]
async fn reqwest_tracing_after_the_middleware_gives_one_client_span_per_exchange() {
    let (seen, text) = two_exchanges_through(false).await;
    // reqwest-tracing's span, once per exchange (each attempt runs the rest of the chain),
    // and nothing else is a CLIENT span, nor is one inside another.
    let clients = client_spans(&seen);
    assert_eq!(clients.len(), 2, "{text}");
    for (name, fields) in clients {
        assert_eq!(name, "HTTP request", "{fields:?}");
        assert_eq!(fields[CLIENT_SPANS_AROUND], "0", "{fields:?}");
    }
    // Ours stand for the call and its attempts, around reqwest-tracing's.
    for attempt in spans(&seen, "attempt") {
        assert_eq!(attempt["otel.kind"], "internal", "{attempt:?}");
    }
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test(start_paused = true)]
async fn reqwest_tracing_before_the_middleware_gives_one_client_span_for_a_whole_call() {
    let (seen, text) = two_exchanges_through(true).await;
    // The other order: reqwest-tracing's one span covers both exchanges and the wait
    // between them, which is not what an OpenTelemetry CLIENT span stands for.
    let clients = client_spans(&seen);
    assert_eq!(clients.len(), 1, "{text}");
    assert_eq!(clients[0].0, "HTTP request");
}
