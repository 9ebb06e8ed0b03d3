//! One table of scenarios, run through every way a call can run, which must agree.
//!
//! The client runs a call in one future of its own (`Call`); `ResilientMiddleware` and users'
//! `ServiceBuilder`s run the public tower layers. Both must make the same decisions, so each
//! scenario below goes through each path that can express it, against a fresh loopback
//! server, and the outcomes are compared as one normalized record: the server's hits (and
//! the `Idempotency-Key`s it saw), then for each call the result, status, error kind, class,
//! delivery, `retry_after()`, the limit that fired and the per-attempt history.
//!
//! The paths:
//! - `Client`: `send()`, the body read after the call;
//! - `Service`: `Client::service()`, called with a plain `reqwest::Request`;
//! - `Middleware`: `ResilientMiddleware` in a `reqwest_middleware` chain;
//! - `Tower`: a `ServiceBuilder` of `ResilientLayer` (the client's policies) over a
//!   `reqwest::Client`;
//! - `Layers`: a `ServiceBuilder` of `TotalDeadlineLayer`, `RetryLayer`,
//!   `CircuitBreakerLayer`, `AttemptTimeoutLayer` and `ClassifyLayer` over a `reqwest::Client`
//!   (no endpoint rules, so no policy names);
//! - `Wrapped`: `send()` through a client with an (identity) attempt layer and outer layer,
//!   which take other stages of the client's call;
//! - `Buffered` and `Reader`: the client's `send_buffered()` and `send_with(reader)`, the body
//!   read inside each attempt (a reader's success carries no history to compare).
//!
//! Whether the breaker counted an attempt shows in a second call of the same request under a
//! breaker that opens on one counted failure: `circuit_open`, or another try at the server.
//!
//! The overload guards (retry budget, `Retry-After` holds, the server's quota, rate limit,
//! bulkhead, adaptive concurrency limit, client-side throttling) are per policy, so the paths with policies have them (`Tower` included: a
//! user's own `ServiceBuilder` gets them from `ResilientLayer`); the `Layers` path, public
//! layers stacked by hand, has none (a `RetryLayer` alone keeps no per-endpoint state), so the overload
//! scenarios skip it. Their calls are timed (virtual time: how long a call waited shows),
//! and a bulkhead or adaptive-limit scenario runs its calls at once. Client-side throttling
//! is random: it has a test of its own below, each path run with the same seed.
//!
//! The scope scenarios (which requests share a guard's state: the host, the rule, a name)
//! call two routes under two rules, and one of them again under another endpoint key of the
//! same server (`localhost`), on the paths with rules.
//!
//! The inherited-deadline scenarios run each call inside a `deadline::scope` (the caller's
//! deadline, which caps the call's own), on every path.
//! Deadline propagation (`propagate_deadline`) shows as the value each request carried in
//! `x-request-timeout-ms`, after the calls in the outcome; the public layers write it with a
//! `PropagateDeadlineLayer` under their attempt timeout.
//!
//! Time is paused: backoff, `Retry-After`, deadlines and hangs cost no real time.
#![cfg(feature = "reqwest-middleware")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::Method;
use resilient_http::breaker::{BreakerConfig, CircuitBreakerLayer, Window};
use resilient_http::classify::{
    Class, Classification, Classifier, ClassifyLayer, DefaultClassifier, classify_fn,
};
use resilient_http::deadline::{self, DeadlineHeader, PropagateDeadlineLayer};
use resilient_http::hedge::HedgeConfig;
use resilient_http::middleware::ResilientMiddleware;
use resilient_http::overload::{
    AdaptiveConcurrencyConfig, BulkheadConfig, RateLimitConfig, ThrottleConfig,
};
use resilient_http::policy::{EndpointPolicy, Matcher, Scope};
use resilient_http::retry::{
    BudgetConfig, IDEMPOTENCY_KEY, Jitter, RESEND_PAUSE, RetryHistory, RetryLayer, RetryPolicy,
};
use resilient_http::testkit::{ClosedPort, FaultServer, Reply};
use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
use resilient_http::{
    Attempt, AttemptOutcome, Client, ClientBuilder, Delivery, Error, ErrorKind, ResilientLayer,
};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

#[cfg(feature = "http2")]
#[path = "common/h2_script.rs"]
mod h2_script;

const SHORT: Duration = Duration::from_millis(300);
/// Where the scenarios that propagate deadlines send each attempt's limit.
const DEADLINE_HEADER: &str = "x-request-timeout-ms";
const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Client,
    Service,
    Middleware,
    Tower,
    Layers,
    Wrapped,
    Buffered,
    Reader,
}

use Path::{Buffered, Layers, Middleware, Reader, Service, Tower, Wrapped};

/// Scenarios whose body, if any, is whole: every path.
const ALL: &[Path] = &[
    Path::Client,
    Service,
    Middleware,
    Tower,
    Layers,
    Wrapped,
    Buffered,
    Reader,
];
/// Scenarios whose body fails, read after the call: the paths that hand back the head.
const HEAD: &[Path] = &[Path::Client, Service, Middleware, Tower, Layers, Wrapped];
/// Scenarios whose body fails, read inside the attempt: the client's readers.
const INSIDE: &[Path] = &[Buffered, Reader];
/// Scenarios about endpoint rules: the paths that have them.
const RULES: &[Path] = &[
    Path::Client,
    Service,
    Middleware,
    Tower,
    Wrapped,
    Buffered,
    Reader,
];
/// Scenarios about the overload guards: the paths with policies, which have them (public
/// layers stacked by hand have none).
const GUARDED: &[Path] = RULES;

/// The limit a request sets for itself.
#[derive(Clone, Copy, Debug)]
enum PerRequest {
    /// The client's `.deadline(d)`; `.timeout(d)` on the paths that have no other way.
    Deadline(Duration),
    /// `.timeout(d)` everywhere.
    Timeout(Duration),
}

/// What every path is configured with.
#[derive(Clone)]
struct Setup {
    attempts: u32,
    attempt_timeout: Duration,
    deadline: Duration,
    retry_after_cap: Duration,
    /// A breaker that opens on the first counted failure (else the default one, which
    /// needs 20 calls).
    strict_breaker: bool,
    classifier: Option<Arc<dyn Classifier>>,
    /// Hedging, in the retry policy (so the public `RetryLayer` has it too).
    hedge: Option<HedgeConfig>,
    /// The default policy's other settings (the overload guards).
    policy: EndpointPolicy,
    /// The breakers' (and the guards') bound, if not the default.
    max_breakers: Option<usize>,
    /// Whether each attempt's limit goes out in [`DEADLINE_HEADER`] (`propagate_deadline`;
    /// a `PropagateDeadlineLayer` under the attempt timeout for the public layers).
    propagate: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            attempts: 3,
            attempt_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(20),
            strict_breaker: false,
            classifier: None,
            hedge: None,
            policy: EndpointPolicy::new(),
            max_breakers: None,
            propagate: false,
        }
    }
}

impl Setup {
    fn retry(&self) -> RetryPolicy {
        let retry = RetryPolicy::builder()
            .max_attempts(self.attempts)
            .jitter(Jitter::None)
            .retry_after_cap(self.retry_after_cap);
        match self.hedge {
            Some(hedge) => retry.hedge(hedge),
            None => retry,
        }
        .build()
        .unwrap()
    }

    fn breaker(&self) -> BreakerConfig {
        let builder = if self.strict_breaker {
            BreakerConfig::builder()
                .min_calls(1)
                .window(Window::Calls(10))
        } else {
            BreakerConfig::builder()
        };
        match self.max_breakers {
            Some(max) => builder.max_breakers(max),
            None => builder,
        }
        .build()
        .unwrap()
    }

    fn builder(&self) -> ClientBuilder {
        let builder = Client::builder()
            .retry(self.retry())
            .attempt_timeout(self.attempt_timeout)
            .deadline(self.deadline)
            .circuit_breaker(self.breaker())
            .default_policy(
                self.policy
                    .clone()
                    .propagate_deadline(self.deadline_header()),
            )
            .endpoint(
                "payments",
                Matcher::new().path("/pay*"),
                EndpointPolicy::new().max_attempts(1),
            );
        match &self.classifier {
            Some(classifier) => builder.classifier(classifier.clone()),
            None => builder,
        }
    }

    /// The header each attempt's limit goes out in: none unless the scenario propagates it.
    fn deadline_header(&self) -> DeadlineHeader {
        if self.propagate {
            DeadlineHeader::millis(DEADLINE_HEADER)
        } else {
            DeadlineHeader::none()
        }
    }

    /// The public layers as the docs say to stack them: the attempt timeout no longer than
    /// the deadline (the layer cannot know the deadline of a call).
    fn layers(&self) -> BoxCloneService<reqwest::Request, reqwest::Response, Error> {
        self.layers_over(reqwest_client())
    }

    /// The client's policies as one layer (`ResilientLayer`) in a `ServiceBuilder` over `http`.
    fn tower_over(
        &self,
        http: reqwest::Client,
    ) -> BoxCloneService<reqwest::Request, reqwest::Response, Error> {
        let stack = ServiceBuilder::new()
            .layer(ResilientLayer::new(self.builder()).unwrap())
            .service(http);
        BoxCloneService::new(stack)
    }

    /// [`layers`](Self::layers) over `http`.
    fn layers_over(
        &self,
        http: reqwest::Client,
    ) -> BoxCloneService<reqwest::Request, reqwest::Response, Error> {
        let classifier: Arc<dyn Classifier> = self
            .classifier
            .clone()
            .unwrap_or_else(|| Arc::new(DefaultClassifier));
        let stack = ServiceBuilder::new()
            .layer(TotalDeadlineLayer::new(self.deadline))
            .layer(RetryLayer::new(self.retry()))
            .layer(CircuitBreakerLayer::new(self.breaker()))
            .layer(AttemptTimeoutLayer::new(
                self.attempt_timeout.min(self.deadline),
            ))
            .layer(PropagateDeadlineLayer::new(self.deadline_header()).unwrap())
            .layer(ClassifyLayer::new(classifier))
            .service(http);
        BoxCloneService::new(stack)
    }
}

/// A route of a scenario's server, and its script.
type Route = (&'static str, fn() -> Vec<Reply>);

struct Scenario {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// Made afresh for each run: a `Retry-After` date is relative to now.
    script: Box<dyn Fn() -> Vec<Reply>>,
    /// Sent to a port that refuses connections instead of the server.
    refused: bool,
    headers: &'static [(&'static str, &'static str)],
    per_request: Option<PerRequest>,
    /// Each call runs inside a `deadline::scope` of this limit: its caller's deadline.
    scope: Option<Duration>,
    setup: Setup,
    /// The same request, this many times in a row through one client.
    calls: usize,
    paths: &'static [Path],
    /// Paths known to disagree, and why: the test checks that they still do.
    differs: &'static [(Path, &'static str)],
    /// The window a `Retry-After` date falls in (wall-clock time, whole seconds).
    date_window: Option<(Duration, Duration)>,
    /// Whether each call's duration (virtual time) is part of the outcome.
    timed: bool,
    /// Whether the calls run at once, polled in order.
    concurrent: bool,
    /// With `concurrent`: the first caller, its call over, calls again at once (a third
    /// call), as a caller in a loop does.
    calls_again: bool,
    /// Between two calls, one call to another endpoint key (the same server, as `localhost`,
    /// another path), for which a policy bounded to one endpoint must make room.
    between: bool,
    /// A second route of the same server, with its script: every other call (the 2nd, the
    /// 4th, ...) goes there instead, under the default policy (the scope scenarios: the
    /// scenario's own path is under the `payments` rule), and the calls to the path after
    /// the first go to `localhost` (the same server under another endpoint key, which a
    /// scope wider than the host shares). Its hits count with the path's.
    other: Option<Route>,
    /// After the calls, this many more at once (a crowd waiting on what the calls left).
    waiters: usize,
    /// The span `[low, high]` the waiters' durations fall in (they are spread at random
    /// within it): shown as that span, not each duration.
    release: Option<(Duration, Duration)>,
    /// The outcome in short (see [`Outcome::short`]), as every path must have it.
    expect: &'static str,
}

impl Scenario {
    fn new(name: &'static str, method: Method, script: Vec<Reply>) -> Self {
        Scenario {
            name,
            method,
            // Each scenario runs against a server of its own.
            path: Box::leak(format!("/{}", name.replace(' ', "-")).into_boxed_str()),
            script: Box::new(move || script.clone()),
            refused: false,
            headers: &[],
            per_request: None,
            scope: None,
            setup: Setup::default(),
            calls: 1,
            paths: ALL,
            differs: &[],
            date_window: None,
            timed: false,
            concurrent: false,
            calls_again: false,
            between: false,
            other: None,
            waiters: 0,
            release: None,
            expect: "",
        }
    }

    fn get(name: &'static str, script: Vec<Reply>) -> Self {
        Scenario::new(name, Method::GET, script)
    }

    fn post(name: &'static str, script: Vec<Reply>) -> Self {
        Scenario::new(name, Method::POST, script)
    }

    /// A `429` asking to wait until `after` from now, then a `200`.
    fn retry_after_date(name: &'static str, after: Duration) -> Self {
        let mut s = Scenario::get(name, vec![]);
        s.script = Box::new(move || {
            let at = SystemTime::now() + after;
            vec![Reply::status(429).retry_after_date(at), Reply::ok("x")]
        });
        // HTTP dates have whole seconds, and the wall clock runs on while the test does.
        s.date_window = Some((after.saturating_sub(Duration::from_secs(4)), after));
        s
    }

    fn expect(mut self, expect: &'static str) -> Self {
        self.expect = expect;
        self
    }

    fn paths(mut self, paths: &'static [Path]) -> Self {
        self.paths = paths;
        self
    }

    fn setup(mut self, f: impl FnOnce(&mut Setup)) -> Self {
        f(&mut self.setup);
        self
    }

    /// A hedging scenario: one timed call, a hedge 50 ms after the newest attempt (up to
    /// `max`), with `attempts`, on every path.
    fn hedged(mut self, attempts: u32, max: u32) -> Self {
        self.timed = true;
        self.setup(|s| {
            s.attempts = attempts;
            s.hedge = Some(HedgeConfig::new(50 * MS, max));
        })
    }

    /// An overload scenario: `calls` timed calls under `policy` (and `attempts`), on the
    /// paths with guards.
    fn guarded(mut self, calls: usize, attempts: u32, policy: EndpointPolicy) -> Self {
        self.calls = calls;
        self.timed = true;
        self.paths = GUARDED;
        self.setup(|s| {
            s.attempts = attempts;
            s.policy = policy;
        })
    }
}

fn scenarios() -> Vec<Scenario> {
    let transport_errors_are_permanent: Arc<dyn Classifier> =
        Arc::new(classify_fn(|method, result| match result {
            Err(_) => Classification {
                class: Class::Permanent,
                ..DefaultClassifier.classify(method, result)
            },
            Ok(_) => DefaultClassifier.classify(method, result),
        }));
    let conflict_is_transient_503_permanent: Arc<dyn Classifier> =
        Arc::new(classify_fn(|method, result| match result {
            Ok(r) if r.status() == 409 => Classification::delivered(Class::Transient),
            Ok(r) if r.status() == 503 => Classification::delivered(Class::Permanent),
            _ => DefaultClassifier.classify(method, result),
        }));
    let hang_twice = |name, per_request| {
        // The same for every deadline: the attempt had the whole call's time and timed out on
        // its own, so the breaker counted it and the second call does not reach the server.
        let mut s = Scenario::get(name, vec![Reply::hang()])
            .setup(|s| s.strict_breaker = true)
            .expect(
                "1 hit: deadline transient maybe sent ×1 / circuit_open transient never sent ×1",
            );
        s.calls = 2;
        match per_request {
            Some(limit) => s.per_request = Some(limit),
            None => s.setup.deadline = SHORT,
        }
        s
    };

    vec![
        Scenario::get("ok", vec![Reply::ok("x")]).expect("1 hit: 200 x ×1"),
        Scenario::get(
            "503s then 200",
            vec![Reply::status(503), Reply::status(503), Reply::ok("x")],
        )
        .expect("3 hits: 200 x ×3"),
        Scenario::get("exhausted", vec![Reply::status(503)])
            .expect("3 hits: status 503 transient delivered ×3"),
        Scenario::get("not found", vec![Reply::status(404)])
            .expect("1 hit: status 404 permanent delivered ×1"),
        Scenario::get(
            "invalid response",
            vec![Reply::raw(&b"HTTP/1.1 OOPS\r\n\r\n"[..])],
        )
        .expect("1 hit: invalid_response permanent maybe sent ×1"),
        Scenario::get(
            "retry-after seconds",
            vec![Reply::status(429).retry_after_secs(2), Reply::ok("x")],
        )
        .expect("2 hits: 200 x ×2"),
        Scenario::retry_after_date("retry-after date", Duration::from_secs(5))
            .expect("2 hits: 200 x ×2"),
        Scenario::get(
            "retry-after above the cap",
            vec![Reply::status(429).retry_after_secs(60), Reply::ok("x")],
        )
        .expect("1 hit: status 429 transient delivered ×1"),
        Scenario::retry_after_date("retry-after date above the cap", Duration::from_secs(3600))
            .expect("1 hit: status 429 transient delivered ×1"),
        Scenario::get(
            "retry-after past the deadline",
            vec![Reply::status(429).retry_after_secs(10), Reply::ok("x")],
        )
        .setup(|s| s.deadline = Duration::from_secs(5))
        .expect("1 hit: status 429 transient delivered ×1"),
        Scenario::get("reset get", vec![Reply::reset(), Reply::ok("x")])
            .expect("2 hits: 200 x ×2"),
        Scenario::get("close get", vec![Reply::close(), Reply::ok("x")])
            .expect("2 hits: 200 x ×2"),
        Scenario::post("reset post", vec![Reply::reset(), Reply::ok("x")])
            .expect("1 hit: reset transient maybe sent ×1"),
        Scenario::post("close post", vec![Reply::close(), Reply::ok("x")])
            .expect("1 hit: reset transient maybe sent ×1"),
        Scenario::post("503 post", vec![Reply::status(503), Reply::ok("x")])
            .expect("1 hit: status 503 transient delivered ×1"),
        Scenario {
            refused: true,
            ..Scenario::post("refused post", vec![]).expect("0 hits: connect transient never sent ×3")
        },
        Scenario {
            headers: &[(IDEMPOTENCY_KEY, "order-7")],
            ..Scenario::post("keyed post", vec![Reply::reset(), Reply::ok("x")])
                .expect("2 hits: 200 x ×2")
        },
        Scenario::get("stall after the head", vec![Reply::stall_body(200, "x")])
            .setup(|s| s.attempt_timeout = SHORT)
            .paths(HEAD)
            .expect("1 hit: 200 body timeout transient ×1"),
        Scenario::get(
            "stall inside the attempt",
            vec![Reply::stall_body(200, "x"), Reply::ok("x")],
        )
        .setup(|s| s.attempt_timeout = SHORT)
        .paths(INSIDE)
        .expect("2 hits: 200 x ×2"),
        Scenario::get(
            "reset inside the attempt",
            vec![Reply::body_then_reset(200, "par"), Reply::ok("x")],
        )
        .paths(INSIDE)
        .expect("2 hits: 200 x ×2"),
        hang_twice("hang under a policy deadline", None),
        Scenario {
            differs: &[(
                Layers,
                "an AttemptTimeoutLayer sees what is left of a call, not the request's own \
                 limit: the hang ends at the caller's deadline, which the breaker ignores",
            )],
            ..hang_twice(
                "hang under a request deadline",
                Some(PerRequest::Deadline(SHORT)),
            )
        },
        Scenario {
            differs: &[(
                Layers,
                "an AttemptTimeoutLayer sees what is left of a call, not the request's own \
                 limit: the hang ends at the caller's deadline, which the breaker ignores",
            )],
            ..hang_twice(
                "hang under a request timeout",
                Some(PerRequest::Timeout(SHORT)),
            )
        },
        // The caller's deadline (a `deadline::scope` around each call) caps the call's own
        // 30 s: the hang ends at it, which the breaker ignores (the second call goes out).
        Scenario {
            calls: 2,
            scope: Some(SHORT),
            ..Scenario::get("hang under an inherited deadline", vec![Reply::hang()])
                .setup(|s| s.strict_breaker = true)
                .expect("2 hits: deadline (inherited) transient maybe sent ×1 / deadline (inherited) transient maybe sent ×1")
        },
        // A caller that has given up: the call fails at once, not sent.
        Scenario {
            scope: Some(Duration::ZERO),
            ..Scenario::get("inherited deadline passed", vec![Reply::ok("x")])
                .expect("0 hits: deadline (inherited) transient never sent ×0")
        },
        // No retry waits past the caller's deadline either.
        Scenario {
            scope: Some(Duration::from_secs(5)),
            ..Scenario::get(
                "retry-after past the inherited deadline",
                vec![Reply::status(429).retry_after_secs(10), Reply::ok("x")],
            )
            .expect("1 hit: status 429 transient delivered ×1")
        },
        Scenario {
            calls: 2,
            ..Scenario::get("open breaker", vec![Reply::status(503)])
                .setup(|s| s.strict_breaker = true)
                .expect(
                    "1 hit: circuit_open transient never sent ×2 / circuit_open transient never sent ×1",
                )
        },
        Scenario::get("classified status", vec![Reply::status(409), Reply::ok("x")])
            .setup(|s| s.classifier = Some(conflict_is_transient_503_permanent.clone()))
            .expect("2 hits: 200 x ×2"),
        Scenario::get("classified 503", vec![Reply::status(503), Reply::ok("x")])
            .setup(|s| s.classifier = Some(conflict_is_transient_503_permanent.clone()))
            .expect("1 hit: status 503 permanent delivered ×1"),
        Scenario::get(
            "classified transport error",
            vec![Reply::reset(), Reply::ok("x")],
        )
        .setup(|s| s.classifier = Some(transport_errors_are_permanent.clone()))
        .expect("1 hit: reset permanent maybe sent ×1"),
        Scenario::get(
            "classified body error",
            vec![Reply::body_then_reset(200, "par"), Reply::ok("x")],
        )
        .setup(|s| s.classifier = Some(transport_errors_are_permanent.clone()))
        .paths(INSIDE)
        .expect("1 hit: reset 200 permanent delivered ×1"),
        Scenario::get("pay", vec![Reply::status(503), Reply::ok("x")])
            .paths(RULES)
            .expect("1 hit: status 503 transient delivered ×1"),
        Scenario::get("payroll", vec![Reply::status(503), Reply::ok("x")])
            .paths(RULES)
            .expect("1 hit: status 503 transient delivered ×1"),
        Scenario::get("repay", vec![Reply::status(503), Reply::ok("x")])
            .paths(RULES)
            .expect("2 hits: 200 x ×2"),
        // Overload protection. One retry in the budget (1 a second over 1 s, no share of
        // first attempts): the second would overdraw it.
        Scenario::get("budget exhausted", vec![Reply::status(503)])
            .guarded(
                1,
                3,
                EndpointPolicy::new().retry_budget(BudgetConfig::new(0.0, 1, SECOND)),
            )
            .expect("2 hits: budget_exhausted 503 transient delivered ×2 in 100ms"),
        // The first call's 429 holds the endpoint for 2 s: the second waits, then goes out.
        Scenario::get(
            "hold wait",
            vec![Reply::status(429).retry_after_secs(2), Reply::ok("x")],
        )
        .guarded(2, 1, EndpointPolicy::new())
        .expect("2 hits: status 429 transient delivered ×1 in 0ns / 200 x ×1 in 2s"),
        // Held for 5 s, past the 1 s the second call has: it fails at once, never sent.
        Scenario {
            per_request: Some(PerRequest::Deadline(SECOND)),
            ..Scenario::get(
                "hold fail fast",
                vec![Reply::status(503).retry_after_secs(5), Reply::ok("x")],
            )
            .guarded(2, 1, EndpointPolicy::new())
            .expect(
                "1 hit: status 503 transient delivered ×1 in 0ns / rate_limited transient \
                 never sent ×1 in 0ns",
            )
        },
        // The first answer says the server's quota is spent (IETF fields) until its reset
        // in 2 s: the second call waits for it, then goes out.
        Scenario::get(
            "quota wait",
            vec![
                Reply::ok("x")
                    .header("ratelimit-policy", "\"default\";q=1;w=2")
                    .header("ratelimit", "\"default\";r=0;t=2"),
                Reply::ok("x"),
            ],
        )
        .guarded(2, 1, EndpointPolicy::new())
        .expect("2 hits: 200 x ×1 in 0ns / 200 x ×1 in 2s"),
        // Spent for 5 s (`X-RateLimit-*`), past the 1 s the second call has: it fails at
        // once, never sent.
        Scenario {
            per_request: Some(PerRequest::Deadline(SECOND)),
            ..Scenario::get(
                "quota fail fast",
                vec![
                    Reply::ok("x")
                        .header("x-ratelimit-remaining", "0")
                        .header("x-ratelimit-reset", "5"),
                    Reply::ok("x"),
                ],
            )
            .guarded(2, 1, EndpointPolicy::new())
            .expect("1 hit: 200 x ×1 in 0ns / rate_limited transient never sent ×1 in 0ns")
        },
        // One request every 2 s: the second call waits for its slot.
        Scenario::get("rate limit wait", vec![Reply::ok("x")])
            .guarded(
                2,
                3,
                EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 2 * SECOND)),
            )
            .expect("2 hits: 200 x ×1 in 0ns / 200 x ×1 in 2s"),
        // One request a minute: the second call's deadline ends before its slot.
        Scenario {
            per_request: Some(PerRequest::Deadline(10 * SECOND)),
            ..Scenario::get("rate limited", vec![Reply::ok("x")])
                .guarded(
                    2,
                    3,
                    EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 60 * SECOND)),
                )
                .expect("1 hit: 200 x ×1 in 0ns / rate_limited transient never sent ×1 in 0ns")
        },
        // One place: the second call, started with the first, queues until it is free.
        Scenario {
            concurrent: true,
            ..Scenario::get("bulkhead queue", vec![Reply::ok("x").delay(100 * MS)])
                .guarded(
                    2,
                    3,
                    EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, SECOND)),
                )
                .expect("2 hits: 200 x ×1 in 100ms / 200 x ×1 in 200ms")
        },
        // One place, held for 500 ms: the second call gives up after 100 ms in the queue.
        Scenario {
            concurrent: true,
            ..Scenario::get("bulkhead full", vec![Reply::ok("x").delay(500 * MS)])
                .guarded(
                    2,
                    3,
                    EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, 100 * MS)),
                )
                .expect("1 hit: 200 x ×1 in 500ms / bulkhead_full transient never sent ×0 in 100ms")
        },
        // Issue 26: an adaptive limit pinned to two places (min = max = 2): six calls at
        // once, each answered 503 then 200, 100 ms per answer. Two attempts at a time reach
        // the server, the others queue first come, first served, a retry behind the first
        // attempts queued before it: the calls end in pairs, 400, 500 and 600 ms (without the
        // limit, all six in 300 ms).
        Scenario {
            concurrent: true,
            ..Scenario::get(
                "adaptive limit",
                vec![
                    Reply::status(503).delay(100 * MS),
                    Reply::status(503).delay(100 * MS),
                    Reply::status(503).delay(100 * MS),
                    Reply::status(503).delay(100 * MS),
                    Reply::status(503).delay(100 * MS),
                    Reply::status(503).delay(100 * MS),
                    Reply::ok("x").delay(100 * MS),
                ],
            )
            .guarded(
                6,
                3,
                EndpointPolicy::new().adaptive_concurrency(
                    AdaptiveConcurrencyConfig::gradient2().initial(2).min(2).max(2),
                ),
            )
            .expect(
                "12 hits: 200 x ×2 in 400ms / 200 x ×2 in 400ms / 200 x ×2 in 500ms / \
                 200 x ×2 in 500ms / 200 x ×2 in 600ms / 200 x ×2 in 600ms",
            )
        },
        // Hedging. (A reader's success has no history: `×1` is its count.)
        Scenario::get(
            "hedge wins",
            vec![Reply::ok("slow").delay(SECOND), Reply::ok("x")],
        )
        .hedged(3, 1)
        .expect("2 hits: 200 x ×2 in 50ms"),
        Scenario::get(
            "first beats its hedge",
            vec![Reply::ok("x").delay(80 * MS), Reply::ok("y").delay(100 * MS)],
        )
        .hedged(3, 1)
        .expect("2 hits: 200 x ×2 in 80ms"),
        Scenario::get(
            "hedge after a 503",
            vec![Reply::status(503).delay(100 * MS), Reply::ok("x").delay(100 * MS)],
        )
        .hedged(3, 1)
        .expect("2 hits: 200 x ×2 in 150ms"),
        Scenario::get(
            "404 ends the race",
            vec![Reply::status(404).delay(80 * MS), Reply::ok("x").delay(100 * MS)],
        )
        .hedged(3, 1)
        .expect("2 hits: status 404 permanent delivered ×2 in 80ms"),
        Scenario::get(
            "hedges fail then a retry",
            vec![
                Reply::status(503).delay(60 * MS),
                Reply::status(503).delay(60 * MS),
                Reply::ok("x"),
            ],
        )
        .hedged(2, 1)
        .expect("3 hits: 200 x ×3 in 210ms"),
        Scenario::post(
            "unkeyed post is not hedged",
            vec![Reply::ok("x").delay(200 * MS), Reply::ok("y")],
        )
        .hedged(3, 1)
        .expect("1 hit: 200 x ×1 in 200ms"),
        Scenario {
            headers: &[(IDEMPOTENCY_KEY, "order-8")],
            ..Scenario::post(
                "keyed post is hedged",
                vec![Reply::ok("slow").delay(SECOND), Reply::ok("x")],
            )
            .hedged(3, 1)
            .expect("2 hits: 200 x ×2 in 50ms")
        },
        // A 429 is a rate limiter's "slow down", not a failing endpoint: under a breaker
        // that opens on one counted failure, the next call still goes out (issue 22, item 6).
        Scenario {
            calls: 2,
            ..Scenario::get("429 is no breaker failure", vec![Reply::status(429), Reply::ok("x")])
                .setup(|s| {
                    s.strict_breaker = true;
                    s.attempts = 1;
                })
                .expect("2 hits: status 429 transient delivered ×1 / 200 x ×1")
        },
        // A policy that counts 429s opens on one (the paths with policies).
        Scenario {
            calls: 2,
            ..Scenario::get("429 counted by the policy", vec![Reply::status(429), Reply::ok("x")])
                .setup(|s| {
                    s.strict_breaker = true;
                    s.attempts = 1;
                    s.policy = EndpointPolicy::new().breaker_count_429(true);
                })
                .paths(RULES)
                .expect(
                    "1 hit: status 429 transient delivered ×1 / circuit_open transient never sent ×1",
                )
        },
        // Fairness (issue 22, item 2). One place: the first call holds it for 100 ms while
        // the second queues; the first caller then calls again at once. The place it gives
        // back is the waiting call's, so its new call queues behind: 100 ms, then 200 ms
        // each (before, it took the place back: 100 ms, 300 ms, 100 ms).
        Scenario {
            concurrent: true,
            calls_again: true,
            ..Scenario::get("bulkhead in turn", vec![Reply::ok("x").delay(100 * MS)])
                .guarded(
                    3,
                    3,
                    EndpointPolicy::new().bulkhead(BulkheadConfig::new(1, SECOND)),
                )
                .expect("3 hits: 200 x ×1 in 100ms / 200 x ×1 in 200ms / 200 x ×1 in 200ms")
        },
        // Issue 22, item 7: a 2 s hold, and 8 calls waiting on it. The first goes at its end,
        // the others spread over its release window (a quarter of the hold) after it.
        Scenario {
            waiters: 8,
            release: Some((2 * SECOND, 2_500 * MS)),
            ..Scenario::get(
                "holds released with jitter",
                vec![Reply::status(429).retry_after_secs(2), Reply::ok("x")],
            )
            .guarded(1, 1, EndpointPolicy::new())
            .expect(
                "9 hits: status 429 transient delivered ×1 in 0ns / 200 x ×1 in [2s, 2.5s] / \
                 200 x ×1 in [2s, 2.5s] / 200 x ×1 in [2s, 2.5s] / 200 x ×1 in [2s, 2.5s] / \
                 200 x ×1 in [2s, 2.5s] / 200 x ×1 in [2s, 2.5s] / 200 x ×1 in [2s, 2.5s] / \
                 200 x ×1 in [2s, 2.5s]",
            )
        },
        // Issue 22, item 1: one endpoint kept per policy, one request a minute. Another
        // endpoint called between the two calls does not evict the first's spent limit: the
        // second call's deadline ends before its slot.
        Scenario {
            per_request: Some(PerRequest::Deadline(10 * SECOND)),
            between: true,
            ..Scenario::get("eviction", vec![Reply::ok("x")])
                .guarded(
                    2,
                    1,
                    EndpointPolicy::new().rate_limit(RateLimitConfig::new(1, 60 * SECOND)),
                )
                .setup(|s| s.max_breakers = Some(1))
                .expect("1 hit: 200 x ×1 in 0ns / rate_limited transient never sent ×1 in 0ns")
        },
        // Scopes (issue 24, item 4). A host-wide quota named once in the default policy,
        // which the `payments` rule inherits: one bucket for both rules, one request every
        // 2 s, so the default rule's call waits for the slot the payments call took (with
        // host scopes, each rule had a bucket of its own: the second call went at once).
        Scenario {
            other: Some(("/scope-other", || vec![Reply::ok("x")])),
            ..Scenario::post("payments share a named rate limit", vec![Reply::ok("x")])
                .guarded(
                    3,
                    1,
                    EndpointPolicy::new()
                        .rate_limit(RateLimitConfig::new(1, 2 * SECOND))
                        .rate_limit_scope(Scope::named("api-host").unwrap()),
                )
                .paths(RULES)
                .expect("3 hits: 200 x ×1 in 0ns / 200 x ×1 in 2s / 200 x ×1 in 2s")
        },
        // One breaker per rule: the failing payments route opens its breaker, the healthy
        // route under the default rule keeps working, and the payments rule's breaker is
        // open for its calls to any host (`localhost`: with host scopes, a breaker of its
        // own, and another try at the server).
        Scenario {
            other: Some(("/scope-other", || vec![Reply::ok("x")])),
            ..Scenario::get("payments breaker per rule", vec![Reply::status(503)])
                .guarded(
                    3,
                    1,
                    EndpointPolicy::new().breaker_scope(Scope::Rule),
                )
                .setup(|s| s.strict_breaker = true)
                .paths(RULES)
                .expect(
                    "2 hits: status 503 transient delivered ×1 in 0ns / 200 x ×1 in 0ns / \
                     circuit_open transient never sent ×1 in 0ns",
                )
        },
        // A hold per rule: the payments route's 429 holds the payments rule (its call to
        // `localhost` too: with host scopes, not held), not the default rule's route.
        Scenario {
            other: Some(("/scope-other", || vec![Reply::ok("x")])),
            ..Scenario::get(
                "payments hold per rule",
                vec![Reply::status(429).retry_after_secs(2), Reply::ok("x")],
            )
            .guarded(3, 1, EndpointPolicy::new().hold_scope(Scope::Rule))
            .paths(RULES)
            .expect(
                "3 hits: status 429 transient delivered ×1 in 0ns / 200 x ×1 in 0ns / \
                 200 x ×1 in 2s",
            )
        },
        // Deadline propagation: each attempt is told its own limit, less the 20 ms margin:
        // 500 ms, then 500 ms, then the 200 ms left of the 1 s deadline (after 100 ms, 500 ms
        // and 200 ms); a hedge 50 ms into a 520 ms call, the 470 ms left.
        Scenario::get(
            "propagated deadline",
            vec![Reply::status(503), Reply::hang(), Reply::ok("x")],
        )
        .setup(|s| {
            s.attempt_timeout = 500 * MS;
            s.deadline = SECOND;
            s.propagate = true;
        })
        .expect("3 hits: 200 x ×3 | x-request-timeout-ms 480, 480, 180"),
        Scenario::get(
            "propagated deadline of a hedge",
            vec![Reply::hang(), Reply::ok("x")],
        )
        .hedged(3, 1)
        .setup(|s| {
            s.attempt_timeout = 500 * MS;
            s.deadline = 520 * MS;
            s.propagate = true;
        })
        .expect("2 hits: 200 x ×2 in 50ms | x-request-timeout-ms 480, 450"),
    ]
}

/// One attempt of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Try {
    number: u32,
    hedge: bool,
    resent: bool,
    outcome: AttemptOutcome,
    class: Class,
    delivery: Delivery,
    delay_before: String,
    started_after: String,
    duration: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Ok {
        status: u16,
        /// The body, or how reading it after the call failed.
        body: Result<String, (ErrorKind, Class)>,
        /// `None` where the path has no way to show it.
        history: Option<Vec<Try>>,
    },
    Err {
        kind: ErrorKind,
        class: Class,
        delivery: Delivery,
        status: Option<u16>,
        retry_after: Option<String>,
        timeout: Option<Duration>,
        /// Whether the deadline that ended the call was its caller's.
        inherited: bool,
        /// `None` on the paths without policies.
        policy: Option<String>,
        history: Vec<Try>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    hits: usize,
    /// The `Idempotency-Key` of each request the server saw.
    keys: Vec<Option<String>>,
    /// The [`DEADLINE_HEADER`] of each request the server saw.
    deadlines: Vec<Option<String>>,
    calls: Vec<Call>,
    /// How long each call took (virtual time), for timed scenarios: as `Debug` shows a
    /// duration, or the scenario's `release` span it fell in.
    took: Option<Vec<String>>,
    /// Whether the waiters (at least two) all went within 10 ms of one another.
    bunched: bool,
}

impl Outcome {
    /// Leaves out what `path` cannot show.
    fn seen_by(mut self, path: Path) -> Self {
        for call in &mut self.calls {
            match call {
                Call::Ok { history, .. } if path == Reader => *history = None,
                Call::Err { policy, .. } if path == Layers => *policy = None,
                _ => {}
            }
        }
        self
    }

    /// `3 hits: 200 x ×3`, `1 hit: status 404 permanent delivered ×1 / ...`.
    fn short(&self) -> String {
        let calls: Vec<String> = self
            .calls
            .iter()
            .map(|call| match call {
                Call::Ok {
                    status,
                    body,
                    history,
                } => {
                    let body = match body {
                        Ok(text) => text.clone(),
                        Err((kind, class)) => format!("body {} {class}", kind.as_str()),
                    };
                    let tries = history.as_ref().map_or(0, Vec::len).max(1);
                    format!("{status} {body} ×{tries}")
                }
                Call::Err {
                    kind,
                    class,
                    delivery,
                    status,
                    history,
                    inherited,
                    ..
                } => {
                    let status = status.map(|s| format!(" {s}")).unwrap_or_default();
                    let inherited = if *inherited { " (inherited)" } else { "" };
                    format!(
                        "{}{inherited}{status} {class} {delivery} ×{}",
                        kind.as_str(),
                        history.len()
                    )
                }
            })
            .enumerate()
            .map(|(i, call)| match &self.took {
                Some(took) => format!("{call} in {}", took[i]),
                None => call,
            })
            .collect();
        let plural = if self.hits == 1 { "" } else { "s" };
        let bunched = if self.bunched { " (bunched)" } else { "" };
        let deadlines: Vec<&str> = self
            .deadlines
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let deadlines = if deadlines.is_empty() {
            String::new()
        } else {
            format!(" | {DEADLINE_HEADER} {}", deadlines.join(", "))
        };
        format!(
            "{} hit{plural}: {}{bunched}{deadlines}",
            self.hits,
            calls.join(" / ")
        )
    }
}

/// What a path was built into, once per scenario.
enum Runner {
    Client(Client),
    Middleware(reqwest_middleware::ClientWithMiddleware),
    Layers(BoxCloneService<reqwest::Request, reqwest::Response, Error>),
}

struct Normalize<'a> {
    scenario: &'a Scenario,
}

impl Normalize<'_> {
    /// A duration as compared: exact, except inside the window of a `Retry-After` date,
    /// which depends on the wall clock.
    fn time(&self, d: Duration) -> String {
        match self.scenario.date_window {
            Some((low, high)) if d > low && d <= high => format!("({low:?}, {high:?}]"),
            _ => format!("{d:?}"),
        }
    }

    /// A resend's pause is random (up to `RESEND_PAUSE`, from a call's second resend on): it
    /// is compared as that bound, and the times after it as "after a pause".
    fn history(&self, attempts: &[Attempt]) -> Vec<Try> {
        let mut paused = false;
        let mut previous_resent = false;
        attempts
            .iter()
            .map(|a| {
                let pause =
                    previous_resent && !a.delay_before.is_zero() && a.delay_before <= RESEND_PAUSE;
                paused |= pause;
                previous_resent = a.resent;
                Try {
                    number: a.number,
                    hedge: a.hedge,
                    resent: a.resent,
                    outcome: a.outcome,
                    class: a.class,
                    delivery: a.delivery,
                    delay_before: match pause {
                        true => format!("(0, {RESEND_PAUSE:?}]"),
                        false => self.time(a.delay_before),
                    },
                    started_after: match paused {
                        true => "after a resend's pause".to_owned(),
                        false => self.time(a.started_after),
                    },
                    duration: self.time(a.duration),
                }
            })
            .collect()
    }

    fn error(&self, err: &Error) -> Call {
        Call::Err {
            kind: err.kind(),
            class: err.class(),
            delivery: err.delivery(),
            status: err.status().map(|s| s.as_u16()),
            retry_after: err.retry_after().map(|d| self.time(d)),
            timeout: err.timeout(),
            inherited: err.deadline_inherited(),
            policy: err.policy().map(str::to_owned),
            history: self.history(err.attempts()),
        }
    }

    /// A response handed back with its body unread (or in memory): read it now.
    async fn response(&self, response: reqwest::Response) -> Call {
        let status = response.status().as_u16();
        let history = Some(
            response
                .extensions()
                .get::<RetryHistory>()
                .map(|RetryHistory(h)| self.history(h))
                .unwrap_or_default(),
        );
        let body = match response.bytes().await {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(err) => {
                let err = Error::from(err);
                Err((err.kind(), err.class()))
            }
        };
        Call::Ok {
            status,
            body,
            history,
        }
    }
}

/// Reads the whole body as a caller's reader would, `?` on every chunk.
async fn read_all(mut response: reqwest::Response) -> Result<(u16, String), Error> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One `reqwest::Client` for the middleware, the layers and building plain requests: making
/// one costs milliseconds, and each scenario's server has a port (a pool) of its own.
fn reqwest_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

fn plain_request(s: &Scenario, url: &str) -> reqwest::Request {
    let mut request = reqwest_client().request(s.method.clone(), url);
    for (name, value) in s.headers {
        request = request.header(*name, *value);
    }
    if s.method == Method::POST {
        request = request.body("payload");
    }
    match s.per_request {
        Some(PerRequest::Deadline(limit) | PerRequest::Timeout(limit)) => {
            request = request.timeout(limit);
        }
        None => {}
    }
    request.build().unwrap()
}

/// A call of `s` on `path`, inside the scenario's deadline scope, if it has one.
async fn call(s: &Scenario, path: Path, runner: &Runner, url: &str) -> Call {
    match s.scope {
        Some(limit) => deadline::scope(limit, call_unscoped(s, path, runner, url)).await,
        None => call_unscoped(s, path, runner, url).await,
    }
}

async fn call_unscoped(s: &Scenario, path: Path, runner: &Runner, url: &str) -> Call {
    let norm = Normalize { scenario: s };
    match (runner, path) {
        (Runner::Client(client), Service) => {
            match client.service().oneshot(plain_request(s, url)).await {
                Ok(response) => norm.response(response).await,
                Err(err) => norm.error(&err),
            }
        }
        (Runner::Client(client), _) => {
            let mut request = client.request(s.method.clone(), url);
            for (name, value) in s.headers {
                request = request.header(*name, *value);
            }
            if s.method == Method::POST {
                request = request.body("payload");
            }
            match s.per_request {
                Some(PerRequest::Deadline(limit)) => request = request.deadline(limit),
                Some(PerRequest::Timeout(limit)) => request = request.timeout(limit),
                None => {}
            }
            let result = match path {
                Reader => {
                    return match request.send_with(read_all).await {
                        Ok((status, body)) => Call::Ok {
                            status,
                            body: Ok(body),
                            history: None,
                        },
                        Err(err) => norm.error(&err),
                    };
                }
                Buffered => request.send_buffered().await,
                _ => request.send().await,
            };
            match result {
                Ok(response) => norm.response(response).await,
                Err(err) => norm.error(&err),
            }
        }
        (Runner::Middleware(client), _) => {
            let mut request = client.request(s.method.clone(), url);
            for (name, value) in s.headers {
                request = request.header(*name, *value);
            }
            if s.method == Method::POST {
                request = request.body("payload");
            }
            if let Some(PerRequest::Deadline(limit) | PerRequest::Timeout(limit)) = s.per_request {
                request = request.timeout(limit);
            }
            match request.send().await {
                Ok(response) => norm.response(response).await,
                Err(err) => norm.error(ResilientMiddleware::error(&err).expect("a typed error")),
            }
        }
        (Runner::Layers(stack), _) => match stack.clone().oneshot(plain_request(s, url)).await {
            Ok(response) => norm.response(response).await,
            Err(err) => norm.error(&err),
        },
    }
}

async fn run(s: &Scenario, path: Path) -> Outcome {
    let server = FaultServer::start().await.unwrap();
    let closed = ClosedPort::bind().unwrap();
    server.script(s.path, (s.script)());
    let url = if s.refused {
        closed.url(s.path)
    } else {
        server.url(s.path)
    };
    if let Some((other, script)) = s.other {
        server.script(other, script());
    }
    // Leaked (a few bytes per run), so that the timed calls below may take either.
    let url: &'static str = Box::leak(url.into_boxed_str());
    let other_url: Option<&'static str> = s
        .other
        .map(|(other, _)| &*Box::leak(server.url(other).into_boxed_str()));
    let port = server.addr().port();
    let local_url: &'static str =
        Box::leak(format!("http://localhost:{port}{}", s.path).into_boxed_str());
    let runner = match path {
        Middleware => Runner::Middleware(
            reqwest_middleware::ClientBuilder::new(reqwest_client())
                .with(ResilientMiddleware::new(s.setup.builder()).unwrap())
                .build(),
        ),
        Tower => Runner::Layers(s.setup.tower_over(reqwest_client())),
        Layers => Runner::Layers(s.setup.layers()),
        Wrapped => Runner::Client(
            s.setup
                .builder()
                .attempt_layer(ServiceBuilder::new())
                .layer(ServiceBuilder::new())
                .build()
                .unwrap(),
        ),
        _ => Runner::Client(s.setup.builder().build().unwrap()),
    };
    let timed_to = |started: tokio::time::Instant, url: &'static str| {
        let bounded = tokio::time::timeout(Duration::from_secs(600), call(s, path, &runner, url));
        async move {
            let call = bounded.await.expect("hung: no limit fired");
            (call, started.elapsed())
        }
    };
    let timed = |started: tokio::time::Instant| timed_to(started, url);
    let mut calls = Vec::new();
    let mut took = Vec::new();
    if s.concurrent && s.calls_again {
        assert_eq!(s.calls, 3, "{}: two calls at once, then one", s.name);
        let now = tokio::time::Instant::now();
        let again = async {
            let first = timed(now).await;
            (first, timed(tokio::time::Instant::now()).await)
        };
        let ((first, third), second) = tokio::join!(again, timed(now));
        for (call, elapsed) in [first, second, third] {
            calls.push(call);
            took.push(elapsed);
        }
    } else if s.concurrent {
        let now = tokio::time::Instant::now();
        for (call, elapsed) in join_all((0..s.calls).map(|_| timed(now)).collect()).await {
            calls.push(call);
            took.push(elapsed);
        }
    } else {
        let other = format!("http://localhost:{}/other", server.addr().port());
        for i in 0..s.calls {
            if s.between && i > 0 {
                call(s, path, &runner, &other).await;
            }
            let to = match other_url {
                Some(other) if i % 2 == 1 => other,
                Some(_) if i > 0 => local_url,
                _ => url,
            };
            let (call, elapsed) = timed_to(tokio::time::Instant::now(), to).await;
            calls.push(call);
            took.push(elapsed);
        }
    }
    let now = tokio::time::Instant::now();
    let waiters = join_all((0..s.waiters).map(|_| timed(now)).collect()).await;
    let mut went: Vec<Duration> = waiters.iter().map(|(_, elapsed)| *elapsed).collect();
    went.sort();
    let bunched = went.len() >= 2 && went[went.len() - 1] - went[0] < 10 * MS;
    for (call, elapsed) in waiters {
        calls.push(call);
        took.push(elapsed);
    }
    let took = took
        .into_iter()
        .map(|d| match s.release {
            Some((low, high)) if d >= low && d <= high => format!("[{low:?}, {high:?}]"),
            _ => format!("{d:?}"),
        })
        .collect();
    let keys = server
        .requests(s.path)
        .iter()
        .map(|r| {
            r.headers
                .get(IDEMPOTENCY_KEY)
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    let deadlines = server
        .requests(s.path)
        .iter()
        .map(|r| {
            r.headers
                .get(DEADLINE_HEADER)
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    Outcome {
        deadlines,
        hits: server.hits(s.path) + s.other.map_or(0, |(other, _)| server.hits(other)),
        keys,
        calls,
        took: s.timed.then_some(took),
        bunched,
    }
}

/// Runs `futures` at once, polled in order, and gives their outputs in that order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(&mut outputs) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// The policy an error must name, on the paths that have policies.
fn policy_of(s: &Scenario) -> &'static str {
    if s.path.starts_with("/pay") {
        "payments"
    } else {
        "default"
    }
}

/// Runs every scenario through each of its paths and compares the outcomes with the first
/// path's (and that one with the scenario's expectation). Prints how many runs each path made.
#[tokio::test(start_paused = true)]
async fn every_path_agrees_on_every_scenario() {
    let mut problems = Vec::new();
    let mut runs = Vec::new();
    let table = scenarios();
    assert!(table.len() >= 20, "{} scenarios", table.len());
    for s in &table {
        let reference_path = s.paths[0];
        let reference = run(s, reference_path).await;
        if reference.short() != s.expect {
            problems.push(format!(
                "{}: {reference_path:?} gave {:?}, expected {:?}\n  {reference:?}",
                s.name,
                reference.short(),
                s.expect
            ));
        }
        let policies = reference.calls.iter().filter_map(|call| match call {
            Call::Err { policy, .. } => policy.as_deref(),
            Call::Ok { .. } => None,
        });
        for policy in policies.filter(|p| *p != policy_of(s)) {
            problems.push(format!("{}: policy {policy:?}", s.name));
        }
        runs.push(reference_path);
        for &path in &s.paths[1..] {
            let outcome = run(s, path).await;
            runs.push(path);
            let (ours, theirs) = (outcome.seen_by(path), reference.clone().seen_by(path));
            let known = s.differs.iter().find(|(p, _)| *p == path);
            match (ours == theirs, known) {
                (true, None) => {}
                (false, Some((_, why))) => {
                    eprintln!(
                        "{}: {path:?} differs, as known ({why}):\n  {ours:?}",
                        s.name
                    );
                }
                (true, Some((_, why))) => problems.push(format!(
                    "{}: {path:?} now agrees; remove it from `differs` ({why})",
                    s.name
                )),
                (false, None) => problems.push(format!(
                    "{}: {path:?} differs from {reference_path:?}\n  {path:?}: {ours:?}\n  \
                     {reference_path:?}: {theirs:?}",
                    s.name
                )),
            }
        }
    }
    let count = |p: Path| runs.iter().filter(|r| **r == p).count();
    eprintln!(
        "{} scenarios; runs per path: Client {}, Service {}, Middleware {}, Tower {}, Layers {}, \
         Wrapped {}, Buffered {}, Reader {}",
        table.len(),
        count(Path::Client),
        count(Service),
        count(Middleware),
        count(Tower),
        count(Layers),
        count(Wrapped),
        count(Buffered),
        count(Reader),
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Issue 26: client-side throttling with K = 1 against a dependency that answers 503 to
/// everything, 40 calls of one attempt in a row, on every path with guards. The first call
/// reaches the server (nothing is counted yet); after it, the probability climbs towards 1
/// (`requests / (requests + 1)`, no accepts) and most calls fail at once with `throttled`:
/// transient, never sent, the probability in the message. Each path runs with the same seed
/// of the thread's random numbers, which the throttle draws from: they agree call by call.
#[tokio::test(start_paused = true)]
async fn every_path_throttles_a_rejecting_dependency_alike() {
    const CALLS: usize = 40;
    let s = Scenario::get("throttled", vec![Reply::status(503)]).guarded(
        CALLS,
        1,
        EndpointPolicy::new().throttle(ThrottleConfig::new().k(1.0)),
    );
    let mut problems = Vec::new();
    let mut reference: Option<Outcome> = None;
    for &path in GUARDED {
        fastrand::seed(26);
        let outcome = run(&s, path).await;
        let throttled: Vec<&Call> = (outcome.calls.iter())
            .filter(|call| {
                matches!(
                    call,
                    Call::Err {
                        kind: ErrorKind::Throttled,
                        ..
                    }
                )
            })
            .collect();
        let short = outcome.short();
        if !short.starts_with(&format!(
            "{} hits: status 503 transient delivered ×1 in 0ns /",
            outcome.hits
        )) {
            problems.push(format!(
                "{path:?}: the first call must reach the server: {short}"
            ));
        }
        if throttled.len() < CALLS / 2 || outcome.hits + throttled.len() != CALLS {
            problems.push(format!(
                "{path:?}: {} hits and {} throttled of {CALLS}: {short}",
                outcome.hits,
                throttled.len()
            ));
        }
        for call in throttled {
            if let Call::Err {
                class, delivery, ..
            } = call
                && (*class != Class::Transient || *delivery != Delivery::NotSent)
            {
                problems.push(format!("{path:?}: throttled {class} {delivery}: {short}"));
            }
        }
        match &reference {
            None => reference = Some(outcome),
            Some(first) if first.clone().seen_by(path) != outcome.clone().seen_by(path) => {
                problems.push(format!(
                    "{path:?} differs from {:?}\n  {path:?}: {short}\n  {:?}: {}",
                    GUARDED[0],
                    GUARDED[0],
                    first.short()
                ));
            }
            Some(_) => {}
        }
    }
    // The message says how likely a throttled call is.
    let throttled = Client::builder()
        .default_policy(
            EndpointPolicy::new()
                .max_attempts(1)
                .throttle(ThrottleConfig::new().k(1.0)),
        )
        .build()
        .unwrap();
    let server = FaultServer::start().await.unwrap();
    server.script("/", [Reply::status(503)]);
    let mut message = None;
    for _ in 0..CALLS {
        if let Err(err) = throttled.get(server.url("/")).send().await
            && err.kind() == ErrorKind::Throttled
        {
            message = Some(err.to_string());
            break;
        }
    }
    match message {
        Some(message) if message.contains('%') => {}
        other => problems.push(format!("a throttled call's message: {other:?}")),
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Streams an HTTP/2 server did not process (graceful GOAWAYs and REFUSED_STREAMs, as nginx
/// gives them when it turns connections over or reloads), on every path, over a
/// prior-knowledge HTTP/2 client: each is resent at once, spending none of the policy's one
/// attempt, and shows in the history as resent; the breaker, which opens on one counted
/// failure, does not count them (the second call goes out). Not in the table above: its
/// server speaks HTTP/1.
#[cfg(feature = "http2")]
#[tokio::test(start_paused = true)]
async fn every_path_resends_streams_the_server_never_processed() {
    use h2_script::{H2Script, Step};
    let h2 = || {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .retry(reqwest::retry::never())
            .build()
            .unwrap()
    };
    let mut problems = Vec::new();
    for method in [Method::GET, Method::POST] {
        let name = if method == Method::GET {
            "goaway get"
        } else {
            "goaway post"
        };
        let mut s = Scenario::new(name, method, vec![]).setup(|s| {
            s.attempts = 1;
            s.strict_breaker = true;
        });
        s.calls = 2;
        let mut reference: Option<(Path, Outcome)> = None;
        for &path in ALL {
            // A POST is resent after a refusal; after a graceful GOAWAY, only a request that
            // may be repeated (the server may have processed it: see tests/http2.rs).
            let script = if s.method == Method::GET {
                vec![Step::GoAway, Step::Refuse, Step::GoAway]
            } else {
                vec![Step::Refuse; 3]
            };
            let server = H2Script::start(script).await;
            let url = format!("{}{}", server.url, &s.path[1..]);
            let runner = match path {
                Middleware => Runner::Middleware(
                    reqwest_middleware::ClientBuilder::new(h2())
                        .with(ResilientMiddleware::new(s.setup.builder()).unwrap())
                        .build(),
                ),
                Tower => Runner::Layers(s.setup.tower_over(h2())),
                Layers => Runner::Layers(s.setup.layers_over(h2())),
                Wrapped => Runner::Client(
                    s.setup
                        .builder()
                        .reqwest(|b| b.http2_prior_knowledge())
                        .attempt_layer(ServiceBuilder::new())
                        .layer(ServiceBuilder::new())
                        .build()
                        .unwrap(),
                ),
                _ => Runner::Client(
                    s.setup
                        .builder()
                        .reqwest(|b| b.http2_prior_knowledge())
                        .build()
                        .unwrap(),
                ),
            };
            let mut calls = Vec::new();
            for _ in 0..s.calls {
                let bounded = tokio::time::timeout(60 * SECOND, call(&s, path, &runner, &url));
                calls.push(bounded.await.expect("hung"));
            }
            let outcome = Outcome {
                hits: server.seen(),
                keys: Vec::new(),
                deadlines: Vec::new(),
                calls,
                took: None,
                bunched: false,
            };
            match &reference {
                None => {
                    let expect = "5 hits: 200  ×4 / 200  ×1";
                    if outcome.short() != expect {
                        problems.push(format!(
                            "{name}: {path:?} gave {:?}\n  {outcome:?}",
                            outcome.short()
                        ));
                    }
                    let resent = match &outcome.calls[0] {
                        Call::Ok {
                            history: Some(history),
                            ..
                        } => history
                            .iter()
                            .filter(|t| t.resent && t.delivery != Delivery::Delivered)
                            .count(),
                        _ => 0,
                    };
                    if resent != 3 {
                        problems.push(format!("{name}: {path:?}: {resent} resent"));
                    }
                    reference = Some((path, outcome));
                }
                Some((first, theirs)) => {
                    let (ours, theirs) = (outcome.seen_by(path), theirs.clone().seen_by(path));
                    if ours != theirs {
                        problems.push(format!(
                            "{name}: {path:?} differs from {first:?}\n  {path:?}: {ours:?}\n  \
                             {first:?}: {theirs:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Issue 26: a request's own criticality reaches the throttle on every path that lets a
/// request carry one: the client's request builder (`.criticality(..)`: `send`, the client
/// with layers, `send_buffered`, `send_with`) and `ResilientMiddleware` (a `Criticality` in
/// the request's extensions). Throttling with K = 1 against a dependency that answers 503
/// to everything, 60 calls of one attempt whose criticality turns critical, default,
/// sheddable: each path, run with the same seed, throttles the same calls; sheddable ones
/// are shed, critical ones kept up to their cap, and the same calls without a criticality
/// of their own (the policy's, default) are throttled otherwise. (`Client::service()` and a
/// user's tower stack carry none: a `reqwest::Request` has no extensions; they use the
/// policy's.)
#[tokio::test(start_paused = true)]
async fn every_path_carries_a_requests_criticality_to_the_throttle() {
    use resilient_http::overload::Criticality;

    const CALLS: usize = 60;
    let of = |i: usize| {
        [
            Criticality::Critical,
            Criticality::Default,
            Criticality::Sheddable,
        ][i % 3]
    };
    let setup = Setup {
        attempts: 1,
        policy: EndpointPolicy::new().throttle(ThrottleConfig::new().k(1.0)),
        ..Setup::default()
    };
    // What each call came to: its status, or `throttled`.
    let run = |path: Path, own: bool| {
        let setup = setup.clone();
        async move {
            fastrand::seed(26);
            let server = FaultServer::start().await.unwrap();
            server.script("/c", [Reply::status(503)]);
            let url = server.url("/c");
            let client = match path {
                Wrapped => setup
                    .builder()
                    .attempt_layer(ServiceBuilder::new())
                    .layer(ServiceBuilder::new())
                    .build()
                    .unwrap(),
                _ => setup.builder().build().unwrap(),
            };
            let chain = reqwest_middleware::ClientBuilder::new(reqwest_client())
                .with(ResilientMiddleware::new(setup.builder()).unwrap())
                .build();
            let mut came_to = Vec::new();
            for i in 0..CALLS {
                let result = if path == Middleware {
                    let request = chain.get(&url);
                    let request = if own {
                        request.with_extension(of(i))
                    } else {
                        request
                    };
                    match request.send().await {
                        Ok(response) => Ok(response.status().as_u16()),
                        Err(err) => Err(ResilientMiddleware::error(&err).expect("typed").kind()),
                    }
                } else {
                    let request = client.get(&url);
                    let request = if own {
                        request.criticality(of(i))
                    } else {
                        request
                    };
                    match path {
                        Reader => request.send_with(read_all).await.map(|(status, _)| status),
                        Buffered => request.send_buffered().await.map(|r| r.status().as_u16()),
                        _ => request.send().await.map(|r| r.status().as_u16()),
                    }
                    .map_err(|err| err.kind())
                };
                came_to.push(match result {
                    Ok(status) => format!("{status}"),
                    Err(kind) => kind.as_str().to_owned(),
                });
            }
            (came_to, server.hits("/c"))
        }
    };
    let (reference, hits) = run(Path::Client, true).await;
    let throttled = |criticality| {
        (reference.iter().enumerate())
            .filter(|(i, came)| of(*i) == criticality && *came == "throttled")
            .count()
    };
    let (critical, sheddable) = (
        throttled(Criticality::Critical),
        throttled(Criticality::Sheddable),
    );
    assert!(
        sheddable > CALLS / 3 - 3 && critical < sheddable,
        "throttled: {critical} critical, {sheddable} sheddable of {} each: {reference:?}",
        CALLS / 3
    );
    let throttled_all = reference.iter().filter(|came| *came == "throttled").count();
    assert_eq!(hits + throttled_all, CALLS, "{reference:?}");
    for path in [Middleware, Wrapped, Buffered, Reader] {
        let (ours, _) = run(path, true).await;
        assert_eq!(ours, reference, "{path:?} differs from Client");
    }
    let (policys, _) = run(Path::Client, false).await;
    assert_ne!(
        policys, reference,
        "the requests' own criticality changed nothing"
    );
}
