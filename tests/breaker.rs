//! The circuit breaker, deterministic: an in-process inner service (real `reqwest::Response`s,
//! no sockets) under tokio's paused clock, plus the whole client against the fault server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_http::breaker::{
    BreakerConfig, BreakerRegistry, CircuitBreakerLayer, State, StateChange, Window,
};
use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{Jitter, RetryPolicy};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, Error, ErrorKind};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// What the fake endpoint does next.
#[derive(Clone, Copy)]
enum Next {
    Status(u16),
    /// Answers 200 after this long.
    Slow(Duration),
    /// Waits for the gate before answering 200.
    Gated,
}

#[derive(Clone)]
struct Endpoint {
    next: Arc<Mutex<Next>>,
    gate: Arc<Notify>,
    calls: Arc<AtomicUsize>,
}

impl Endpoint {
    fn new() -> Self {
        Endpoint {
            next: Arc::new(Mutex::new(Next::Status(200))),
            gate: Arc::new(Notify::new()),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn answer(&self, next: Next) {
        *self.next.lock().unwrap() = next;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

type Stack = tower::util::BoxCloneSyncService<reqwest::Request, reqwest::Response, Error>;

fn build(config: BreakerConfig, endpoint: &Endpoint) -> (Stack, BreakerRegistry) {
    let layer = CircuitBreakerLayer::new(config);
    let registry = layer.registry().unwrap().clone();
    let endpoint = endpoint.clone();
    let inner = service_fn(move |_req: reqwest::Request| {
        let endpoint = endpoint.clone();
        async move {
            endpoint.calls.fetch_add(1, Ordering::SeqCst);
            let next = *endpoint.next.lock().unwrap();
            let status = match next {
                Next::Status(code) => code,
                Next::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    200
                }
                Next::Gated => {
                    endpoint.gate.notified().await;
                    200
                }
            };
            let response = http::Response::builder().status(status).body("").unwrap();
            Ok::<_, reqwest::Error>(reqwest::Response::from(response))
        }
    });
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(inner);
    (Stack::new(service), registry)
}

fn get(url: &str) -> reqwest::Request {
    reqwest::Request::new(http::Method::GET, url.parse().unwrap())
}

async fn call(stack: &Stack, url: &str) -> Result<reqwest::Response, Error> {
    stack.clone().oneshot(get(url)).await
}

const A: &str = "http://a.internal/items";

fn config() -> resilient_http::breaker::BreakerConfigBuilder {
    BreakerConfig::builder()
        .window(Window::Calls(20))
        .min_calls(10)
        .failure_rate(0.5)
        .open_for(Duration::from_secs(1))
        .open_for_max(Duration::from_secs(3))
}

fn state(registry: &BreakerRegistry, url: &str) -> State {
    let key = resilient_http::breaker::endpoint_key(&url.parse().unwrap()).into_owned();
    registry.get(&key).unwrap().state()
}

#[tokio::test(start_paused = true)]
async fn it_opens_exactly_at_the_threshold_and_not_before_min_calls() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().build().unwrap(), &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..9 {
        call(&stack, A).await.unwrap_err();
    }
    assert_eq!(state(&registry, A), State::Closed, "9 calls < min_calls");
    call(&stack, A).await.unwrap_err();
    assert_eq!(state(&registry, A), State::Open);

    // 10 successes, then failures: 9 of 19 is below 50 %, 10 of 20 is not.
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().build().unwrap(), &endpoint);
    for _ in 0..10 {
        call(&stack, A).await.unwrap();
    }
    endpoint.answer(Next::Status(500));
    for _ in 0..9 {
        call(&stack, A).await.unwrap_err();
    }
    assert_eq!(state(&registry, A), State::Closed);
    call(&stack, A).await.unwrap_err();
    assert_eq!(state(&registry, A), State::Open);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_rejects_without_calling_and_says_when_to_come_back() {
    let endpoint = Endpoint::new();
    let (stack, _) = build(config().build().unwrap(), &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..10 {
        call(&stack, A).await.unwrap_err();
    }
    tokio::time::advance(300 * MS).await;
    let err = call(&stack, A).await.unwrap_err();
    assert_eq!(
        endpoint.calls(),
        10,
        "the rejected call never reached the endpoint"
    );
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(700 * MS));
    assert!(
        err.to_string()
            .contains("http://a.internal: next probe in 700.0ms"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn old_outcomes_leave_a_call_window() {
    let endpoint = Endpoint::new();
    let cfg = config().window(Window::Calls(10)).build().unwrap();
    let (stack, registry) = build(cfg, &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..4 {
        call(&stack, A).await.unwrap_err();
    }
    endpoint.answer(Next::Status(200));
    for _ in 0..10 {
        call(&stack, A).await.unwrap();
    }
    let key = "http://a.internal";
    assert_eq!(registry.get(key).unwrap().counts().failures, 0);
    endpoint.answer(Next::Status(503));
    for _ in 0..4 {
        call(&stack, A).await.unwrap_err();
    }
    assert_eq!(state(&registry, A), State::Closed, "4 of the last 10");
    call(&stack, A).await.unwrap_err();
    assert_eq!(state(&registry, A), State::Open, "5 of the last 10");
}

#[tokio::test(start_paused = true)]
async fn old_buckets_leave_a_time_window() {
    let endpoint = Endpoint::new();
    let cfg = config()
        .window(Window::Time {
            length: Duration::from_secs(10),
            buckets: 10,
        })
        .min_calls(4)
        .build()
        .unwrap();
    let (stack, registry) = build(cfg, &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..3 {
        call(&stack, A).await.unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    call(&stack, A).await.unwrap_err();
    assert_eq!(
        state(&registry, A),
        State::Closed,
        "the first three expired"
    );
    assert_eq!(registry.get("http://a.internal").unwrap().counts().calls, 1);
    for _ in 0..3 {
        call(&stack, A).await.unwrap_err();
    }
    assert_eq!(state(&registry, A), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_it_when_counted() {
    let endpoint = Endpoint::new();
    let cfg = config()
        .min_calls(4)
        .slow_calls(100 * MS, 0.5)
        .build()
        .unwrap();
    let (stack, registry) = build(cfg, &endpoint);
    endpoint.answer(Next::Slow(50 * MS));
    for _ in 0..4 {
        call(&stack, A).await.unwrap();
    }
    endpoint.answer(Next::Slow(150 * MS));
    for _ in 0..3 {
        call(&stack, A).await.unwrap();
    }
    assert_eq!(state(&registry, A), State::Closed, "3 slow of 7");
    call(&stack, A).await.unwrap();
    assert_eq!(state(&registry, A), State::Open, "4 slow of 8");
}

#[tokio::test(start_paused = true)]
async fn the_open_duration_doubles_up_to_its_cap_and_starts_over_after_closing() {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let endpoint = Endpoint::new();
    let cfg = config()
        .on_state_change(move |c: &StateChange| seen.lock().unwrap().push((c.from, c.to)))
        .build()
        .unwrap();
    let (stack, registry) = build(cfg, &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..10 {
        call(&stack, A).await.unwrap_err();
    }
    let mut opened_for = Vec::new();
    for _ in 0..3 {
        let err = call(&stack, A).await.unwrap_err();
        let wait = err.retry_after().unwrap();
        opened_for.push(wait);
        tokio::time::advance(wait).await;
        call(&stack, A).await.unwrap_err(); // the probe fails
    }
    assert_eq!(
        opened_for,
        [
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(3)
        ]
    );
    let wait = call(&stack, A).await.unwrap_err().retry_after().unwrap();
    assert_eq!(wait, Duration::from_secs(3), "capped");
    tokio::time::advance(wait).await;
    endpoint.answer(Next::Status(200));
    call(&stack, A).await.unwrap();
    assert_eq!(state(&registry, A), State::Closed);
    endpoint.answer(Next::Status(503));
    for _ in 0..10 {
        call(&stack, A).await.unwrap_err();
    }
    let wait = call(&stack, A).await.unwrap_err().retry_after().unwrap();
    assert_eq!(wait, Duration::from_secs(1), "back to the first duration");

    let changes = changes.lock().unwrap().clone();
    assert_eq!(changes[0], (State::Closed, State::Open));
    assert_eq!(changes[1], (State::Open, State::HalfOpen));
    assert_eq!(changes[2], (State::HalfOpen, State::Open));
    assert!(changes.contains(&(State::HalfOpen, State::Closed)));
}

async fn open_then_wait(stack: &Stack, endpoint: &Endpoint) {
    endpoint.answer(Next::Status(503));
    for _ in 0..10 {
        call(stack, A).await.unwrap_err();
    }
    tokio::time::advance(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_exactly_the_probes_through() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().half_open_probes(3).build().unwrap(), &endpoint);
    open_then_wait(&stack, &endpoint).await;
    endpoint.answer(Next::Gated);
    let probes: Vec<_> = (0..3)
        .map(|_| tokio::spawn(call_owned(stack.clone())))
        .collect();
    tokio::task::yield_now().await;
    while endpoint.calls() < 13 {
        tokio::task::yield_now().await;
    }
    let err = call(&stack, A).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::CircuitOpen,
        "a fourth call is not a probe"
    );
    // When the probes end is not known: no time is promised (a zero invited busy loops).
    assert_eq!(err.retry_after(), None);
    assert!(
        err.to_string()
            .contains("http://a.internal: half-open, probe in flight"),
        "{err}"
    );
    assert_eq!(state(&registry, A), State::HalfOpen);
    endpoint.gate.notify_waiters();
    for probe in probes {
        probe.await.unwrap().unwrap();
    }
    assert_eq!(
        state(&registry, A),
        State::Closed,
        "all three probes succeeded"
    );
    assert_eq!(endpoint.calls(), 13);
}

async fn call_owned(stack: Stack) -> Result<reqwest::Response, Error> {
    stack.oneshot(get(A)).await
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_place_back() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().build().unwrap(), &endpoint);
    open_then_wait(&stack, &endpoint).await;
    endpoint.answer(Next::Gated);
    let mut service = stack.clone();
    let probe = service.call(get(A));
    let cancelled = tokio::time::timeout(50 * MS, probe).await;
    assert!(
        cancelled.is_err(),
        "the probe was still waiting when dropped"
    );
    assert_eq!(state(&registry, A), State::HalfOpen);
    // Without the release this would be rejected forever.
    endpoint.answer(Next::Status(200));
    call(&stack, A).await.unwrap();
    assert_eq!(state(&registry, A), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_never_open_it() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().build().unwrap(), &endpoint);
    for code in [404, 400, 401, 409, 501] {
        endpoint.answer(Next::Status(code));
        for _ in 0..20 {
            call(&stack, A).await.unwrap_err();
        }
    }
    assert_eq!(state(&registry, A), State::Closed);
    assert_eq!(endpoint.calls(), 100);
}

#[tokio::test(start_paused = true)]
async fn one_host_down_does_not_block_another() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().build().unwrap(), &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..10 {
        call(&stack, A).await.unwrap_err();
    }
    endpoint.answer(Next::Status(200));
    assert_eq!(
        call(&stack, A).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    call(&stack, "http://b.internal/items").await.unwrap();
    call(&stack, "http://a.internal:8080/other-port")
        .await
        .unwrap();
    assert_eq!(state(&registry, "http://b.internal/"), State::Closed);
    assert_eq!(registry.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_registry_stays_bounded_and_keeps_open_breakers_longest() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().max_breakers(16).build().unwrap(), &endpoint);
    endpoint.answer(Next::Status(503));
    for _ in 0..10 {
        call(&stack, A).await.unwrap_err();
    }
    endpoint.answer(Next::Status(200));
    for host in 0..1000 {
        call(&stack, &format!("http://host-{host}.internal/"))
            .await
            .unwrap();
        assert!(registry.len() <= 16);
    }
    assert_eq!(
        state(&registry, A),
        State::Open,
        "the open breaker was not evicted"
    );
}

#[tokio::test(start_paused = true)]
async fn forcing_and_resetting() {
    let endpoint = Endpoint::new();
    let (stack, registry) = build(config().build().unwrap(), &endpoint);
    call(&stack, A).await.unwrap();
    let handle = registry.get("http://a.internal").unwrap();
    handle.force_open();
    let err = call(&stack, A).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert!(err.to_string().contains("forced open"), "{err}");
    handle.force_closed();
    endpoint.answer(Next::Status(503));
    for _ in 0..30 {
        call(&stack, A).await.unwrap_err();
    }
    assert_eq!(handle.state(), State::ForcedClosed);
    assert_eq!(
        handle.counts().calls,
        1,
        "forced closed records nothing (1 from before)"
    );
    handle.reset();
    assert_eq!(handle.state(), State::Closed);
}

#[test]
fn invalid_settings_are_rejected_by_name() {
    let cases: Vec<(resilient_http::breaker::BreakerConfigBuilder, &str)> = vec![
        (BreakerConfig::builder().failure_rate(0.0), "failure_rate"),
        (BreakerConfig::builder().failure_rate(1.5), "failure_rate"),
        (
            BreakerConfig::builder().failure_rate(f64::NAN),
            "failure_rate",
        ),
        (
            BreakerConfig::builder().slow_calls(MS, 2.0),
            "slow_call_rate",
        ),
        (BreakerConfig::builder().window(Window::Calls(0)), "window"),
        (
            BreakerConfig::builder().window(Window::Time {
                length: Duration::ZERO,
                buckets: 10,
            }),
            "window",
        ),
        (BreakerConfig::builder().min_calls(0), "min_calls"),
        (
            BreakerConfig::builder().open_for(Duration::ZERO),
            "open_for",
        ),
        (
            BreakerConfig::builder()
                .open_for(Duration::from_secs(5))
                .open_for_max(Duration::from_secs(1)),
            "open_for_max must not be below open_for",
        ),
        (
            BreakerConfig::builder().half_open_probes(0),
            "half_open_probes",
        ),
        (BreakerConfig::builder().max_breakers(0), "max_breakers"),
    ];
    for (builder, name) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

/// Many tasks on a multi-thread runtime hammer one breaker while it flips between states, some
/// calls cancelled mid-flight. Afterwards it must still work: not stuck half-open with a
/// leaked probe permit, and able to close again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hammering_it_from_many_threads_leaks_no_permit() {
    let endpoint = Endpoint::new();
    let cfg = BreakerConfig::builder()
        .window(Window::Calls(20))
        .min_calls(5)
        .half_open_probes(2)
        .open_for(MS)
        .open_for_max(4 * MS)
        .build()
        .unwrap();
    let (stack, registry) = build(cfg, &endpoint);
    endpoint.answer(Next::Slow(Duration::ZERO));
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let stack = stack.clone();
        let endpoint = endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(task);
            for _ in 0..300 {
                match rng.u8(0..10) {
                    0..=3 => endpoint.answer(Next::Status(503)),
                    4..=7 => endpoint.answer(Next::Status(200)),
                    _ => endpoint.answer(Next::Slow(Duration::from_micros(200))),
                }
                let call = call_owned(stack.clone());
                if rng.bool() {
                    // Cancel some calls part way.
                    let _ = tokio::time::timeout(Duration::from_micros(100), call).await;
                } else {
                    let _ = call.await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    endpoint.answer(Next::Status(200));
    let handle = registry.get("http://a.internal").unwrap();
    // Every call is over: at most 4 ms open, then two probes close it. Counted in calls, each
    // at least 2 ms apart, so a slow machine cannot fail it; 100 is ample.
    for _ in 0..100 {
        if handle.state() == State::Closed {
            break;
        }
        let _ = call(&stack, A).await;
        tokio::time::sleep(2 * MS).await;
    }
    assert_eq!(handle.state(), State::Closed, "stuck: a permit leaked");
    let counts = handle.counts();
    assert!(counts.calls <= 20 * 64 && counts.failures <= counts.calls);
}

#[tokio::test(start_paused = true)]
async fn through_the_client_an_open_circuit_ends_the_retries_at_once() {
    let server = FaultServer::start().await.unwrap();
    server.script("/down", [Reply::status(503)]);
    let client = Client::builder()
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .circuit_breaker(
            BreakerConfig::builder()
                .min_calls(3)
                .open_for(Duration::from_secs(5))
                .open_for_max(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let first = client.get(server.url("/down")).send().await.unwrap_err();
    assert_eq!(first.kind(), ErrorKind::Status);
    assert_eq!(first.attempts().len(), 3);
    assert_eq!(server.hits("/down"), 3);

    let started = Instant::now();
    let second = client.get(server.url("/down")).send().await.unwrap_err();
    assert_eq!(second.kind(), ErrorKind::CircuitOpen);
    assert_eq!(second.attempts().len(), 1);
    assert_eq!(server.hits("/down"), 3, "nothing reached the server");
    assert_eq!(started.elapsed(), Duration::ZERO);
    let key = format!("http://{}", server.addr());
    assert_eq!(
        client.breakers().unwrap().get(&key).unwrap().state(),
        State::Open
    );
}

/// A policy finds an endpoint's breaker and guards in one lookup (one map holds both): a
/// breaker its registry dropped is not used again, the registry's new one is, so forcing
/// that one open turns the next call away.
#[tokio::test(start_paused = true)]
async fn through_the_client_a_breaker_its_registry_dropped_is_not_used_again() {
    let server = FaultServer::start().await.unwrap();
    server.script("/ok", [Reply::ok("ok")]);
    let client = Client::builder()
        .circuit_breaker(BreakerConfig::builder().max_breakers(2).build().unwrap())
        .build()
        .unwrap();
    let breakers = client.breakers().unwrap();
    let key = format!("http://{}", server.addr());
    client.get(server.url("/ok")).send().await.unwrap();
    assert!(breakers.get(&key).is_some());
    // Two more endpoints fill the registry: the idlest, the server's, is dropped.
    breakers.get_or_create("http://a.test");
    breakers.get_or_create("http://b.test");
    assert!(breakers.get(&key).is_none(), "dropped as the idlest");
    breakers.get_or_create(&key).force_open();
    let refused = client.get(server.url("/ok")).send().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
    assert_eq!(server.hits("/ok"), 1);
}

/// The same for the guards: guards their registry dropped (with the breaker beside them in
/// their entry) are not used again, so the next call's are the registry's, as
/// `Client::overload` shows. (The policy's map keeps a held endpoint's entry and drops the
/// server's instead.)
#[tokio::test(start_paused = true)]
async fn through_the_client_guards_their_registry_dropped_are_not_used_again() {
    let server = FaultServer::start().await.unwrap();
    server.script("/ok", [Reply::ok("ok")]);
    server.script("/held", [Reply::status(503).retry_after_secs(3600)]);
    let client = Client::builder()
        .circuit_breaker(BreakerConfig::builder().max_breakers(2).build().unwrap())
        .default_policy(EndpointPolicy::new().retry_after_cap(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let port = server.addr().port();
    let (key, held_key) = (
        format!("http://{}", server.addr()),
        format!("http://localhost:{port}"),
    );
    let held = format!("{held_key}/held");
    client.get(&held).no_retry().send().await.unwrap_err();
    let held_for = client
        .overload("default", &held_key)
        .and_then(|o| o.held_for());
    assert!(held_for.is_some(), "held");
    client.get(server.url("/ok")).send().await.unwrap();
    assert!(client.overload("default", &key).is_some());
    // A third endpoint (nothing listens there) fills the registry: the held guards stay.
    client
        .get("http://127.0.0.2:1/")
        .no_retry()
        .send()
        .await
        .unwrap_err();
    assert!(client.overload("default", &key).is_none(), "dropped");
    assert!(client.overload("default", &held_key).is_some());
    client.get(server.url("/ok")).send().await.unwrap();
    assert!(client.overload("default", &key).is_some());
}

/// Calls mark their endpoint's entry used, so that new endpoints push out the idle ones, not
/// the one in use: every call lands in the one breaker, never dropped and made afresh. (No
/// handle is held through the churn: a handle alone keeps its breaker.)
#[tokio::test(start_paused = true)]
async fn through_the_client_a_breaker_in_use_is_not_taken_for_idle() {
    let server = FaultServer::start().await.unwrap();
    server.script("/ok", [Reply::ok("ok")]);
    let client = Client::builder()
        .circuit_breaker(BreakerConfig::builder().max_breakers(4).build().unwrap())
        .build()
        .unwrap();
    let breakers = client.breakers().unwrap();
    let key = format!("http://{}", server.addr());
    client.get(server.url("/ok")).send().await.unwrap();
    for i in 0..20 {
        breakers.get_or_create(&format!("http://h{i}.test"));
        client.get(server.url("/ok")).send().await.unwrap();
        assert!(breakers.len() <= 4);
    }
    let breaker = breakers.get(&key).unwrap();
    assert_eq!(
        breaker.counts().calls,
        21,
        "the breaker was dropped and made afresh"
    );
    breaker.force_open();
    let refused = client.get(server.url("/ok")).send().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
    assert_eq!(server.hits("/ok"), 21);
}

/// The scenario of a reported defect: a healthy period with calls from many threads, then a
/// total outage seen from the test's thread only. Returns how many failing calls went out
/// before the breaker turned calls away (`None`: never, in 300). The window must be the
/// endpoint's recent calls whichever threads made them, so with the default config (last 100
/// calls, 50 %) it opens within the 100 calls that fill it. (Kept per thread, the window held
/// the other threads' successes for ever and never opened.)
async fn outage_after_calls_from_many_threads<F, Fut>(call: F) -> Option<u32>
where
    F: Fn(&'static str) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ErrorKind>> + Send,
{
    for _ in 0..100 {
        call("/ok").await.unwrap();
    }
    // Fresh OS threads, each awaiting its calls itself (the runtime's workers drive the IO).
    let runtime = tokio::runtime::Handle::current();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (call, runtime) = (call.clone(), runtime.clone());
            std::thread::spawn(move || {
                runtime.block_on(async {
                    for _ in 0..100 {
                        call("/ok").await.unwrap();
                    }
                })
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for sent in 0..300 {
        match call("/down").await {
            Err(ErrorKind::CircuitOpen) => return Some(sent),
            Err(ErrorKind::Status) => {}
            other => panic!("{other:?}"),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_outage_opens_the_breaker_whichever_threads_called() {
    let server = FaultServer::start().await.unwrap();
    server.script("/ok", [Reply::ok("ok")]);
    server.script("/down", [Reply::status(503)]);
    let client = Client::builder()
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    let base = server.url("");
    let opened_after = outage_after_calls_from_many_threads(move |path| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move { client.get(url).send().await.map(drop).map_err(|e| e.kind()) }
    })
    .await;
    let sent = opened_after.expect("300 consecutive 503s and the breaker never opened");
    assert!((20..=100).contains(&sent), "opened after {sent} failures");
    assert_eq!(server.hits("/down"), sent as usize);
}

#[cfg(feature = "reqwest-middleware")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_middleware_a_total_outage_opens_the_breaker_whichever_threads_called() {
    use resilient_http::middleware::ResilientMiddleware;

    let server = FaultServer::start().await.unwrap();
    server.script("/ok", [Reply::ok("ok")]);
    server.script("/down", [Reply::status(503)]);
    let builder = Client::builder().retry(RetryPolicy::never());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(ResilientMiddleware::new(builder).unwrap())
        .build();
    let base = server.url("");
    let opened_after = outage_after_calls_from_many_threads(move |path| {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        async move {
            match client.get(url).send().await {
                Ok(_) => Ok(()),
                Err(err) => Err(ResilientMiddleware::error(&err).expect("typed").kind()),
            }
        }
    })
    .await;
    let sent = opened_after.expect("300 consecutive 503s and the breaker never opened");
    assert!((20..=100).contains(&sent), "opened after {sent} failures");
    assert_eq!(server.hits("/down"), sent as usize);
}
/// A failing probe opens the circuit again even while other probes are taken and given back
/// at that very moment. (Its result was dropped when the half-open word's counts changed
/// under it: the probe's permit leaked, and after one success the breaker stayed half-open
/// for ever, turning every call away.) Two threads race on purpose; the check is exact (only
/// this thread's failures open the circuit), so a correct breaker cannot fail it.
#[test]
fn a_failing_probe_reopens_while_other_probes_come_and_go() {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    let config = BreakerConfig::builder()
        .window(Window::Calls(1))
        .min_calls(1)
        .half_open_probes(2)
        // Below the breaker's millisecond clock: half-open again at once.
        .open_for(Duration::from_micros(1))
        .open_for_max(Duration::from_micros(1))
        .on_state_change(move |change| {
            if change.to == State::Open {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let registry = BreakerRegistry::new(config);
    let handle = registry.get_or_create("http://a.internal");
    handle.try_acquire().unwrap().failure();
    assert_eq!(handle.state(), State::Open);
    let done = std::sync::atomic::AtomicBool::new(false);
    let lost = std::thread::scope(|s| {
        // Cancelled probes: each taken and given back.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                drop(handle.try_acquire());
            }
        });
        let lost = (0..500_000).find(|_| {
            let probe = loop {
                if let Ok(probe) = handle.try_acquire() {
                    break probe;
                }
            };
            let before = opened.load(Ordering::SeqCst);
            probe.failure();
            opened.load(Ordering::SeqCst) == before
        });
        done.store(true, Ordering::Relaxed);
        lost
    });
    assert_eq!(
        lost,
        None,
        "a failing probe left the breaker {:?}",
        handle.state()
    );
}

/// Threads that open a breaker at the same moment agree on how long it stays open: a loser
/// of the race once wrote the next opening's (doubled) duration over the winner's.
#[test]
fn racing_openers_agree_on_the_open_duration() {
    let config = BreakerConfig::builder()
        .window(Window::Calls(4))
        .min_calls(1)
        .open_for(Duration::from_secs(10))
        .open_for_max(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..3_000 {
        let registry = BreakerRegistry::new(config.clone());
        let handle = registry.get_or_create("http://a.internal");
        let permits: Vec<_> = (0..2).map(|_| handle.try_acquire().unwrap()).collect();
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for permit in permits {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    permit.failure();
                });
            }
        });
        let wait = handle.try_acquire().unwrap_err().retry_after().unwrap();
        assert!(wait <= Duration::from_secs(10), "open for {wait:?}");
    }
}

// ---- Issue 22 ------------------------------------------------------------------------------

#[cfg(feature = "reqwest-middleware")]
mod common;

#[cfg(feature = "reqwest-middleware")]
#[path = "common/logs.rs"]
mod logs;

/// Everything logged at ERROR while `f` runs on this thread, one line each.
#[cfg(feature = "reqwest-middleware")]
async fn errors_logged<F: std::future::Future>(f: F) -> (F::Output, Vec<String>) {
    logs::logged_async(tracing::Level::ERROR, f).await
}

/// Item 4: a panic in `on_state_change` does not reach the caller: the transition happens all
/// the same, and the panic is logged at ERROR once per breaker.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(start_paused = true)]
async fn a_panicking_state_change_callback_never_reaches_the_caller() {
    use common::{Caller, Via};

    for via in [Via::Client, Via::Middleware] {
        let server = FaultServer::start().await.unwrap();
        server.script("/down", [Reply::status(503)]);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        let config = BreakerConfig::builder()
            .min_calls(1)
            .window(Window::Calls(10))
            .on_state_change(move |change: &StateChange| {
                seen.lock().unwrap().push((change.from, change.to));
                panic!("a bug in the callback");
            })
            .build()
            .unwrap();
        let caller = Caller::new(
            via,
            Client::builder()
                .retry(RetryPolicy::never())
                .circuit_breaker(config),
        );
        let url = server.url("/down");
        let (kinds, logged) = errors_logged(async {
            let mut kinds = Vec::new();
            // Opens; turned away; after 5 s a probe goes, fails, and it opens again.
            for wait in [Duration::ZERO, Duration::ZERO, Duration::from_secs(5)] {
                tokio::time::sleep(wait).await;
                kinds.push(caller.get(&url, None).await.unwrap_err().kind());
            }
            kinds
        })
        .await;
        assert_eq!(
            kinds,
            [ErrorKind::Status, ErrorKind::CircuitOpen, ErrorKind::Status],
            "{via:?}"
        );
        assert_eq!(
            *changes.lock().unwrap(),
            [
                (State::Closed, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Open)
            ],
            "{via:?}: every transition happened"
        );
        assert_eq!(server.hits("/down"), 2, "{via:?}");
        let panics: Vec<_> = logged
            .iter()
            .filter(|line| line.contains("on_state_change"))
            .collect();
        assert_eq!(panics.len(), 1, "{via:?}: once per breaker: {logged:#?}");
        assert!(panics[0].contains("ERROR"), "{}", panics[0]);
        assert!(panics[0].contains("a bug in the callback"), "{}", panics[0]);
        assert!(
            panics[0].contains(&format!("http://{}", server.addr())),
            "{}",
            panics[0]
        );
    }
}

/// Item 6: a 429 means "slow down", not "unhealthy": by default 16 of them in a row (with
/// and without `Retry-After`) do not open the breaker; they hold and back off as before.
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(start_paused = true)]
async fn a_429_does_not_open_the_breaker_by_default() {
    use common::{Caller, Via};

    for via in [Via::Client, Via::Middleware] {
        for retry_after in [None, Some(1)] {
            let server = FaultServer::start().await.unwrap();
            let reply = match retry_after {
                Some(secs) => Reply::status(429).retry_after_secs(secs),
                None => Reply::status(429),
            };
            server.script("/limited", [reply]);
            let config = BreakerConfig::builder()
                .min_calls(10)
                .window(Window::Calls(20))
                .build()
                .unwrap();
            let caller = Caller::new(
                via,
                Client::builder()
                    .retry(RetryPolicy::never())
                    .circuit_breaker(config),
            );
            let url = server.url("/limited");
            for call in 0..16 {
                let err = caller.get(&url, None).await.unwrap_err();
                assert_eq!(
                    (err.kind(), err.status().map(|s| s.as_u16())),
                    (ErrorKind::Status, Some(429)),
                    "{via:?} {retry_after:?} call {call}: {err}"
                );
            }
            assert_eq!(server.hits("/limited"), 16, "{via:?} {retry_after:?}");
            if let Caller::Client(client) = &caller {
                let key = format!("http://{}", server.addr());
                let handle = client.breakers().unwrap().get(&key).unwrap();
                assert_eq!(handle.state(), State::Closed, "{retry_after:?}");
                assert_eq!(handle.counts().failures, 0, "{retry_after:?}");
            }
        }
    }
}

/// Item 6, opted in: a policy that counts 429s opens on them, through the client and the
/// middleware (the policy's setting and the file's key), and the layer (the breaker's own).
#[cfg(feature = "reqwest-middleware")]
#[tokio::test(start_paused = true)]
async fn a_policy_may_count_429_as_a_breaker_failure() {
    use common::{Caller, Via};
    use resilient_http::policy::EndpointPolicy;

    let config = || {
        BreakerConfig::builder()
            .min_calls(10)
            .window(Window::Calls(20))
            .build()
            .unwrap()
    };
    type MakeBuilder = Box<dyn Fn() -> resilient_http::ClientBuilder>;
    #[cfg_attr(not(feature = "config"), allow(unused_mut))]
    let mut builders: Vec<(&str, MakeBuilder)> = vec![
        (
            "policy",
            Box::new(move || {
                Client::builder()
                    .retry(RetryPolicy::never())
                    .circuit_breaker(config())
                    .default_policy(EndpointPolicy::new().breaker_count_429(true))
            }),
        ),
        (
            "breaker config",
            Box::new(move || {
                let counting = config().to_builder().count_429(true).build().unwrap();
                Client::builder()
                    .retry(RetryPolicy::never())
                    .circuit_breaker(counting)
            }),
        ),
    ];
    #[cfg(feature = "config")]
    builders.push((
        "file",
        Box::new(move || {
            Client::builder()
                .retry(RetryPolicy::never())
                .circuit_breaker(config())
                .config_toml("[default.breaker]\ncount_429 = true\n")
        }),
    ));
    for (how, builder) in &builders {
        for via in [Via::Client, Via::Middleware] {
            for retry_after in [None, Some(1)] {
                let server = FaultServer::start().await.unwrap();
                let reply = match retry_after {
                    Some(secs) => Reply::status(429).retry_after_secs(secs),
                    None => Reply::status(429),
                };
                server.script("/limited", [reply]);
                let caller = Caller::new(via, builder());
                let url = server.url("/limited");
                let mut kinds = Vec::new();
                for _ in 0..16 {
                    kinds.push(caller.get(&url, None).await.unwrap_err().kind());
                }
                let statuses = kinds.iter().filter(|k| **k == ErrorKind::Status).count();
                assert_eq!(statuses, 10, "{how} {via:?} {retry_after:?}: {kinds:?}");
                assert_eq!(kinds[10..], [ErrorKind::CircuitOpen; 6], "{how} {via:?}");
                assert_eq!(server.hits("/limited"), 10, "{how} {via:?} {retry_after:?}");
            }
        }
    }

    // The layer on its own: by default a 429 counts as nothing; counted, it opens.
    for (count, opens) in [(false, false), (true, true)] {
        let endpoint = Endpoint::new();
        let counting = config().to_builder().count_429(count).build().unwrap();
        let (stack, registry) = build(counting, &endpoint);
        endpoint.answer(Next::Status(429));
        for _ in 0..10 {
            call(&stack, A).await.unwrap_err();
        }
        let expected = if opens { State::Open } else { State::Closed };
        assert_eq!(state(&registry, A), expected, "count_429({count})");
    }
}
