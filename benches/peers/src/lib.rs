//! resilient-http against its peers, per request: instructions (callgrind, driven by
//! `benches/instructions.sh`), client CPU time (`peers cpu`) and allocations
//! (`peers-allocs`, a binary of its own so that the counting allocator costs the other
//! figures nothing).
//!
//! Every stack makes the same call: one GET of `/bench` on a loopback HTTP/1.1 server in
//! another process (so only the client's cost is counted), 64 calls in flight, the 2-byte body
//! read, everything at defaults. The harness itself allocates nothing per call: each stack is
//! a concrete type, and each of the 64 tasks awaits its calls one after another.

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use tower::ServiceExt;

/// Calls in flight at once, as in the issue.
pub const IN_FLIGHT: usize = 64;

/// Calls before anything is measured, twice: at twice the width, then at the measured width
/// (see [`AnyStack::warm_up`]).
pub const WARM_UP: usize = 2_000;

/// The stacks, in the order of every table (bare reqwest first: the ratios are to it).
pub const STACKS: &[&str] = &[
    "reqwest",
    "reqwest+timeout",
    "reqwest-middleware",
    "reqwest-middleware+retry",
    "reqwest-middleware+retry+timeout",
    "tower-timeout+retry",
    "tower-resilience-breaker",
    "floor-by-hand",
    "resilient",
    "resilient-bytes",
    "resilient+rate+bulkhead",
    "resilient-middleware",
    "resilient-given-client",
    "resilient-timeouts-only",
    "resilient-layers",
];

/// Stacks run only when asked for by name (`peers one`, `peers-fleet`), not in the tables of
/// every stack: a rate limit that never refuses, kept locally, and the same limit shared
/// through Redis (at `REDIS_URL`). [`rate_limit`] is their setting.
pub const FLEET_STACKS: &[&str] = &["resilient+rate", "resilient+shared-rate"];

/// Stacks run only when asked for by name, like the fleet's: the default client with an
/// adaptive concurrency limit that never queues (its lowest limit, 128, is above the 64 in
/// flight), and with client-side throttling that never throttles (every answer accepts):
/// what asking them costs a call.
pub const OVERLOAD_STACKS: &[&str] = &["resilient+adaptive", "resilient+throttle"];

/// Stacks run only when asked for by name, for what a setting costs a call that does not use
/// it: hedging configured (after 10 s, the attempt timeout: it never fires, and the client
/// sets no timer for it; after 5 s in `resilient+hedge-armed`: each call arms the hedge's
/// timer), and one or a hundred endpoint rules
/// that the request does not match (it follows the default policy), a fifth of them wildcard
/// hosts, a fifth other paths on the request's own host.
pub const COST_STACKS: &[&str] = &[
    "resilient+hedge",
    "resilient+hedge-armed",
    "resilient+1rule",
    "resilient+100rules",
];

/// Stacks that call many endpoints round-robin (run by name only): `STACK-keysN` (STACK
/// `reqwest+timeout` or `resilient`, N from 1 to 100,000) calls `http://k0.test:PORT/bench`,
/// `k1.test`, … `k{N-1}.test` in turn, every name resolved to 127.0.0.1 by a resolver of its
/// own (the same for both stacks, so the floor pays the same), each with its own connections:
/// past the client's bound of 1,024 endpoints, every call is to an endpoint it has forgotten.
pub const KEYS_STACKS: &[&str] = &[
    "reqwest+timeout-keys2000",
    "resilient-keys2000",
    "reqwest+timeout-keys10000",
    "resilient-keys10000",
];

/// The rate limit of the [`FLEET_STACKS`]: 1,000,000 a second, burst `RATE_BURST` (default
/// 1,000,000), so that it never refuses and only the cost of asking is measured. Shared, a
/// burst that large makes a lease live half a second (`⌊burst / 2⌋` intervals of 1 µs) and
/// hold its most, 64 slots, at any pace above 171 calls a second; with `RATE_BURST=1000` a
/// lease lives 500 µs and holds what the replica spends in 375 µs.
pub fn rate_limit() -> resilient_http::overload::RateLimitConfig {
    let burst = std::env::var("RATE_BURST")
        .ok()
        .map(|b| b.replace('_', "").parse().expect("RATE_BURST: a number"))
        .unwrap_or(1_000_000);
    resilient_http::overload::RateLimitConfig::new(1_000_000, Duration::from_secs(1)).burst(burst)
}

/// `REDIS_URL`, which the shared stacks need; exits with a message without it.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        eprintln!(
            "resilient+shared-rate needs a Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379); \
             benches/instructions.sh and peers-fleet start a redis-server of their own"
        );
        std::process::exit(2)
    })
}

/// One way of making the call; `true` when it succeeded and read the 2-byte body.
pub trait Stack: Clone + 'static {
    /// One call of `url`.
    fn call(&self, url: &'static str) -> impl Future<Output = bool>;
}

async fn read<E>(response: Result<reqwest::Response, E>) -> bool {
    match response {
        Ok(r) if r.status() == 200 => r.bytes().await.is_ok_and(|b| b.len() == 2),
        _ => false,
    }
}

fn request(url: &str) -> reqwest::Request {
    reqwest::Request::new(reqwest::Method::GET, url.parse().expect("valid URL"))
}

#[derive(Clone)]
pub struct Reqwest(reqwest::Client);
impl Stack for Reqwest {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.get(url).send().await).await
    }
}

#[derive(Clone)]
pub struct ReqwestTimeout(reqwest::Client);
impl Stack for ReqwestTimeout {
    async fn call(&self, url: &'static str) -> bool {
        read(
            self.0
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await,
        )
        .await
    }
}

#[derive(Clone)]
pub struct MiddlewareRetry(reqwest_middleware::ClientWithMiddleware);
impl Stack for MiddlewareRetry {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.get(url).send().await).await
    }
}

/// tower's retry as a peer would set it up over reqwest: retry errors up to `n` times,
/// copying the request with `try_clone` (reqwest's request is not `Clone`).
#[derive(Clone)]
pub struct CloneRetry(usize);

impl<E> tower::retry::Policy<reqwest::Request, reqwest::Response, E> for CloneRetry {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut reqwest::Request,
        result: &mut Result<reqwest::Response, E>,
    ) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &reqwest::Request) -> Option<reqwest::Request> {
        req.try_clone()
    }
}

#[derive(Clone)]
pub struct TowerRetry(tower::retry::Retry<CloneRetry, tower::timeout::Timeout<reqwest::Client>>);
impl Stack for TowerRetry {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.clone().oneshot(request(url)).await).await
    }
}

/// resilient-http's single-purpose public layers, stacked by hand as its docs show (the
/// outermost first): the `RetryLayer` runs the library's driver over the layers below it.
type HandStacked = resilient_http::timeout::TotalDeadline<
    resilient_http::retry::Retry<
        resilient_http::breaker::CircuitBreaker<
            resilient_http::timeout::AttemptTimeout<
                resilient_http::classify::Classify<
                    reqwest::Client,
                    resilient_http::classify::DefaultClassifier,
                >,
            >,
        >,
    >,
>;

#[derive(Clone)]
pub struct ResilientLayers(HandStacked);
impl Stack for ResilientLayers {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.clone().oneshot(request(url)).await).await
    }
}

type Breaker = tower_resilience::circuitbreaker::CircuitBreaker<
    reqwest::Client,
    tower_resilience::circuitbreaker::DefaultClassifier,
>;

#[derive(Clone)]
pub struct TowerResilience(Breaker);
impl Stack for TowerResilience {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.clone().oneshot(request(url)).await).await
    }
}

/// What a fused path could cost at best: the essentials of the full stack written out by
/// hand (request copy for a retry, per-request timeout, breaker lookup, admit and record,
/// status check), no layers.
#[derive(Clone)]
pub struct Floor(reqwest::Client, resilient_http::breaker::BreakerRegistry);
impl Stack for Floor {
    async fn call(&self, url: &'static str) -> bool {
        let Ok(url) = url.parse::<url::Url>() else {
            return false;
        };
        let breaker = self
            .1
            .get_or_create(&resilient_http::breaker::endpoint_key(&url));
        let mut request = reqwest::Request::new(reqwest::Method::GET, url);
        let spare = request.try_clone();
        *request.timeout_mut() = Some(Duration::from_secs(10));
        let Ok(permit) = breaker.try_acquire() else {
            return false;
        };
        let ok = read(self.0.execute(request).await).await;
        permit.success();
        drop(spare);
        ok
    }
}

#[derive(Clone)]
pub struct Resilient(resilient_http::Client);
impl Stack for Resilient {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.get(url).send().await).await
    }
}

/// The body read inside the attempt (`RequestBuilder::bytes`), so a cut-off body is retried.
#[derive(Clone)]
pub struct ResilientBytes(resilient_http::Client);
impl Stack for ResilientBytes {
    async fn call(&self, url: &'static str) -> bool {
        self.0.get(url).bytes().await.is_ok_and(|b| b.len() == 2)
    }
}

#[derive(Clone)]
pub struct ResilientMiddleware(reqwest_middleware::ClientWithMiddleware);
impl Stack for ResilientMiddleware {
    async fn call(&self, url: &'static str) -> bool {
        read(self.0.get(url).send().await).await
    }
}

/// Every host name to 127.0.0.1 (the URL's port is kept): the many-keys stacks' resolver.
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))));
        Box::pin(std::future::ready(Ok(addrs)))
    }
}

/// A reqwest client whose every host name is 127.0.0.1.
fn loopback_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(std::sync::Arc::new(Loopback))
}

/// `stack` calling `keys` endpoints in turn (see [`KEYS_STACKS`]): the URLs are made from the
/// first URL it is given (its port) and leaked, once.
#[derive(Clone)]
pub struct Keys<S> {
    stack: S,
    keys: usize,
    urls: std::rc::Rc<KeyUrls>,
}

#[derive(Default)]
struct KeyUrls {
    urls: std::cell::OnceCell<Vec<&'static str>>,
    next: std::cell::Cell<usize>,
}

impl<S> Keys<S> {
    fn new(stack: S, keys: usize) -> Self {
        Keys {
            stack,
            keys,
            urls: Default::default(),
        }
    }

    fn next(&self, url: &str) -> &'static str {
        let urls = self.urls.urls.get_or_init(|| {
            let port = url::Url::parse(url)
                .ok()
                .and_then(|u| u.port())
                .expect("a URL with a port");
            (0..self.keys)
                .map(|i| &*String::leak(format!("http://k{i}.test:{port}/bench")))
                .collect()
        });
        let i = self.urls.next.get();
        self.urls.next.set((i + 1) % urls.len());
        urls[i]
    }
}

impl<S: Stack> Stack for Keys<S> {
    async fn call(&self, url: &'static str) -> bool {
        self.stack.call(self.next(url)).await
    }
}

/// One of the stacks, built (each with its own reqwest client, so its own connections).
pub enum AnyStack {
    Reqwest(Reqwest),
    ReqwestTimeout(ReqwestTimeout),
    MiddlewareRetry(MiddlewareRetry),
    TowerRetry(TowerRetry),
    ResilientLayers(ResilientLayers),
    TowerResilience(TowerResilience),
    Floor(Floor),
    Resilient(Resilient),
    ResilientBytes(ResilientBytes),
    ResilientMiddleware(ResilientMiddleware),
    ReqwestTimeoutKeys(Keys<ReqwestTimeout>),
    ResilientKeys(Keys<Resilient>),
}

impl AnyStack {
    /// Stack number `i` of [`STACKS`].
    pub fn new(i: usize) -> AnyStack {
        AnyStack::named(STACKS[i])
    }

    /// The stack called `name`, one of [`STACKS`], [`FLEET_STACKS`], [`OVERLOAD_STACKS`],
    /// [`COST_STACKS`] or `STACK-keysN` ([`KEYS_STACKS`]).
    pub fn named(name: &str) -> AnyStack {
        if let Some((stack, keys)) = keys_stack(name) {
            return match stack {
                "reqwest+timeout" => AnyStack::ReqwestTimeoutKeys(Keys::new(
                    ReqwestTimeout(loopback_client().build().expect("reqwest client")),
                    keys,
                )),
                _ => AnyStack::ResilientKeys(Keys::new(
                    Resilient(
                        resilient_http::Client::builder()
                            .reqwest(|b| b.dns_resolver(std::sync::Arc::new(Loopback)))
                            .build()
                            .expect("client"),
                    ),
                    keys,
                )),
            };
        }
        use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
        use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
        use resilient_http::policy::EndpointPolicy;

        let resilient = |builder: resilient_http::ClientBuilder| {
            AnyStack::Resilient(Resilient(builder.build().expect("client")))
        };
        match name {
            "reqwest" => AnyStack::Reqwest(Reqwest(reqwest::Client::new())),
            "reqwest+timeout" => AnyStack::ReqwestTimeout(ReqwestTimeout(reqwest::Client::new())),
            "reqwest-middleware+retry" => {
                // reqwest-retry's README: the builder's defaults, 3 retries.
                let policy = ExponentialBackoff::builder().build_with_max_retries(3);
                AnyStack::MiddlewareRetry(MiddlewareRetry(
                    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                        .with(RetryTransientMiddleware::new_with_policy(policy))
                        .build(),
                ))
            }
            // The chain alone: what every reqwest-middleware stack pays before its middlewares.
            "reqwest-middleware" => AnyStack::MiddlewareRetry(MiddlewareRetry(
                reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build(),
            )),
            // reqwest-retry with a timeout on each attempt (the client's, body included), as
            // every resilient stack has.
            "reqwest-middleware+retry+timeout" => {
                let policy = ExponentialBackoff::builder().build_with_max_retries(3);
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("reqwest client");
                AnyStack::MiddlewareRetry(MiddlewareRetry(
                    reqwest_middleware::ClientBuilder::new(http)
                        .with(RetryTransientMiddleware::new_with_policy(policy))
                        .build(),
                ))
            }
            "resilient-layers" => {
                use resilient_http::breaker::CircuitBreakerLayer;
                use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
                use resilient_http::retry::RetryLayer;
                use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
                let http = reqwest::Client::builder()
                    .retry(reqwest::retry::never())
                    .build()
                    .expect("reqwest client");
                AnyStack::ResilientLayers(ResilientLayers(
                    tower::ServiceBuilder::new()
                        .layer(TotalDeadlineLayer::new(Duration::from_secs(30)))
                        .layer(RetryLayer::default())
                        .layer(CircuitBreakerLayer::default())
                        .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
                        .layer(ClassifyLayer::new(DefaultClassifier))
                        .service(http),
                ))
            }
            "tower-timeout+retry" => AnyStack::TowerRetry(TowerRetry(
                tower::ServiceBuilder::new()
                    .retry(CloneRetry(2))
                    .timeout(Duration::from_secs(10))
                    .service(reqwest::Client::new()),
            )),
            "tower-resilience-breaker" => {
                let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                    .build()
                    .expect("tower-resilience breaker at defaults");
                AnyStack::TowerResilience(TowerResilience(layer.layer_fn(reqwest::Client::new())))
            }
            "floor-by-hand" => AnyStack::Floor(Floor(
                reqwest::Client::new(),
                resilient_http::breaker::BreakerRegistry::new(
                    resilient_http::breaker::BreakerConfig::default(),
                ),
            )),
            "resilient" => resilient(resilient_http::Client::builder()),
            "resilient-bytes" => AnyStack::ResilientBytes(ResilientBytes(
                resilient_http::Client::builder().build().expect("client"),
            )),
            // Never refusing: only the cost of asking is measured.
            "resilient+rate+bulkhead" => resilient(
                resilient_http::Client::builder().default_policy(
                    EndpointPolicy::new()
                        .rate_limit(
                            RateLimitConfig::new(1_000_000, Duration::from_secs(1))
                                .burst(1_000_000),
                        )
                        .bulkhead(BulkheadConfig::new(100_000, Duration::ZERO)),
                ),
            ),
            "resilient-middleware" => {
                let middleware = resilient_http::middleware::ResilientMiddleware::new(
                    resilient_http::Client::builder(),
                )
                .expect("middleware");
                AnyStack::ResilientMiddleware(ResilientMiddleware(
                    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                        .with(middleware)
                        .build(),
                ))
            }
            // A reqwest client of the user's (reqwest's defaults, its own retry included):
            // each attempt sets its timeout on the request.
            "resilient-given-client" => {
                resilient(resilient_http::Client::builder().reqwest_client(reqwest::Client::new()))
            }
            "resilient-timeouts-only" => resilient(
                resilient_http::Client::builder()
                    .retry(resilient_http::retry::RetryPolicy::never())
                    .no_circuit_breaker(),
            ),
            "resilient+adaptive" => resilient(
                resilient_http::Client::builder().default_policy(
                    EndpointPolicy::new().adaptive_concurrency(
                        resilient_http::overload::AdaptiveConcurrencyConfig::gradient2()
                            .initial(256)
                            .min(128)
                            .max(1024),
                    ),
                ),
            ),
            "resilient+throttle" => resilient(resilient_http::Client::builder().default_policy(
                EndpointPolicy::new().throttle(resilient_http::overload::ThrottleConfig::new()),
            )),
            "resilient+rate" => resilient(
                resilient_http::Client::builder()
                    .default_policy(EndpointPolicy::new().rate_limit(rate_limit())),
            ),
            // Every call also reads the endpoint's shared hold (one load), as any client with
            // a Redis does. Each process its own prefix: runs never share a key. A timeout of
            // 1 s, not 20 ms: under callgrind (50 times slower) 20 ms is 0.4 ms of real work,
            // refills would come late and calls turn to the local limit, which is not what
            // is measured; on loopback at full speed neither is ever reached.
            "resilient+shared-rate" => resilient(
                resilient_http::Client::builder()
                    .redis_config(
                        resilient_http::fleet::FleetConfig::new(redis_url())
                            .prefix(format!("peers:{}:", std::process::id()))
                            .timeout(Duration::from_secs(1)),
                    )
                    .default_policy(
                        EndpointPolicy::new()
                            .rate_limit(rate_limit())
                            .rate_limit_shared(true),
                    ),
            ),
            "resilient+hedge" => resilient(resilient_http::Client::builder().default_policy(
                EndpointPolicy::new().hedge(resilient_http::hedge::HedgeConfig::new(
                    Duration::from_secs(10),
                    1,
                )),
            )),
            // Due before the attempt timeout (10 s), so each call arms its hedge's timer.
            "resilient+hedge-armed" => resilient(resilient_http::Client::builder().default_policy(
                EndpointPolicy::new().hedge(resilient_http::hedge::HedgeConfig::new(
                    Duration::from_secs(5),
                    1,
                )),
            )),
            "resilient+1rule" => resilient(rules(resilient_http::Client::builder(), 1)),
            "resilient+100rules" => resilient(rules(resilient_http::Client::builder(), 100)),
            other => panic!("no stack {other}"),
        }
    }

    /// The Redis connection of a stack that has one.
    pub fn fleet(&self) -> Option<resilient_http::fleet::Fleet> {
        match self {
            AnyStack::Resilient(s) => s.0.fleet(),
            _ => None,
        }
    }

    /// Waits until a stack with a Redis connection has reached it (at most 5 s); exits with
    /// a message if it does not answer.
    pub async fn connect(&self) {
        if let Some(fleet) = self.fleet() {
            connect(&fleet).await;
        }
    }

    /// Fills the stack's connection pool, then runs it at the measured width.
    ///
    /// reqwest's pool (hyper-util's) keeps a host's idle connections in a list that it drops
    /// when it empties and makes anew on the next return: with exactly as many connections
    /// as calls in flight, that is one more allocation (288 bytes) and a map insertion and
    /// removal per call. How many connections a stack ends up with is a race (a call that
    /// finds none idle opens one; 64 in flight settle on anything from 64 to about 125), so
    /// unless the pool is filled first, that cost comes and goes between runs. At twice the
    /// width the pool holds at least 128 connections, and measured rounds never empty its list
    /// nor open another (each figure's output says how many they did open).
    ///
    /// A stack of many endpoints first calls each of them once, twice over (so that each has
    /// its connection), before the usual warm-up.
    pub async fn warm_up(&self, url: &'static str) {
        if self.keys() > 1 {
            self.round_of(url, 2 * self.keys(), IN_FLIGHT).await;
        }
        self.round_of(url, WARM_UP, 2 * IN_FLIGHT).await;
        self.round(url, WARM_UP).await;
    }

    /// `requests` calls, 64 at a time.
    pub async fn round(&self, url: &'static str, requests: usize) {
        self.round_of(url, requests, IN_FLIGHT).await;
    }

    async fn round_of(&self, url: &'static str, requests: usize, in_flight: usize) {
        match self {
            AnyStack::Reqwest(s) => round(s, url, requests, in_flight).await,
            AnyStack::ReqwestTimeout(s) => round(s, url, requests, in_flight).await,
            AnyStack::MiddlewareRetry(s) => round(s, url, requests, in_flight).await,
            AnyStack::TowerRetry(s) => round(s, url, requests, in_flight).await,
            AnyStack::ResilientLayers(s) => round(s, url, requests, in_flight).await,
            AnyStack::TowerResilience(s) => round(s, url, requests, in_flight).await,
            AnyStack::Floor(s) => round(s, url, requests, in_flight).await,
            AnyStack::Resilient(s) => round(s, url, requests, in_flight).await,
            AnyStack::ResilientBytes(s) => round(s, url, requests, in_flight).await,
            AnyStack::ResilientMiddleware(s) => round(s, url, requests, in_flight).await,
            AnyStack::ReqwestTimeoutKeys(s) => round(s, url, requests, in_flight).await,
            AnyStack::ResilientKeys(s) => round(s, url, requests, in_flight).await,
        }
    }

    /// One call of `url`; `true` when it succeeded and read the 2-byte body.
    pub async fn call(&self, url: &'static str) -> bool {
        match self {
            AnyStack::Reqwest(s) => s.call(url).await,
            AnyStack::ReqwestTimeout(s) => s.call(url).await,
            AnyStack::MiddlewareRetry(s) => s.call(url).await,
            AnyStack::TowerRetry(s) => s.call(url).await,
            AnyStack::ResilientLayers(s) => s.call(url).await,
            AnyStack::TowerResilience(s) => s.call(url).await,
            AnyStack::Floor(s) => s.call(url).await,
            AnyStack::Resilient(s) => s.call(url).await,
            AnyStack::ResilientBytes(s) => s.call(url).await,
            AnyStack::ResilientMiddleware(s) => s.call(url).await,
            AnyStack::ReqwestTimeoutKeys(s) => s.call(url).await,
            AnyStack::ResilientKeys(s) => s.call(url).await,
        }
    }

    /// How many endpoints the stack calls in turn (1 but for the [`KEYS_STACKS`]).
    pub fn keys(&self) -> usize {
        match self {
            AnyStack::ReqwestTimeoutKeys(s) => s.keys,
            AnyStack::ResilientKeys(s) => s.keys,
            _ => 1,
        }
    }
}

/// `builder` with `n` endpoint rules that `/bench` on 127.0.0.1 does not match (see
/// [`COST_STACKS`]); the last, if any, on another path of the request's host.
fn rules(mut builder: resilient_http::ClientBuilder, n: usize) -> resilient_http::ClientBuilder {
    use resilient_http::policy::{EndpointPolicy, Matcher};
    for i in (0..n).rev() {
        let matcher = match i % 5 {
            0 => Matcher::new()
                .host("127.0.0.1")
                .expect("host")
                .path(&format!("/other{i}/*")),
            1 => Matcher::new()
                .host(&format!("*.svc{i}.example"))
                .expect("host"),
            _ => Matcher::new()
                .host(&format!("api{i}.example.com"))
                .expect("host"),
        };
        let policy = EndpointPolicy::new().max_attempts(2);
        builder = builder.endpoint(format!("rule{i}"), matcher, policy);
    }
    builder
}

/// `("reqwest+timeout" | "resilient", N)` for a stack called `STACK-keysN`.
fn keys_stack(name: &str) -> Option<(&str, usize)> {
    let (stack, keys) = name.rsplit_once("-keys")?;
    let keys: usize = keys.parse().ok().filter(|k| (1..=100_000).contains(k))?;
    matches!(stack, "reqwest+timeout" | "resilient").then_some((stack, keys))
}

/// Waits until `fleet` has reached its Redis (at most 5 s); exits with a message if it does
/// not answer.
pub async fn connect(fleet: &resilient_http::fleet::Fleet) {
    for _ in 0..50 {
        if fleet.sync().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("no answer from the Redis at REDIS_URL");
    std::process::exit(2)
}

/// Every stack of [`STACKS`], in order.
pub fn all() -> Vec<AnyStack> {
    (0..STACKS.len()).map(AnyStack::new).collect()
}

/// The index of a stack in [`STACKS`], by name.
pub fn stack_index(name: &str) -> usize {
    STACKS
        .iter()
        .position(|s| *s == name)
        .unwrap_or_else(|| panic!("unknown stack {name:?}; one of {STACKS:?}"))
}

/// Whether `name` is a stack: of [`STACKS`], [`FLEET_STACKS`], [`OVERLOAD_STACKS`],
/// [`COST_STACKS`], or `STACK-keysN`.
pub fn is_stack(name: &str) -> bool {
    STACKS.contains(&name)
        || FLEET_STACKS.contains(&name)
        || OVERLOAD_STACKS.contains(&name)
        || COST_STACKS.contains(&name)
        || keys_stack(name).is_some()
}

async fn round<S: Stack>(stack: &S, url: &'static str, requests: usize, in_flight: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..in_flight {
        let stack = stack.clone();
        // Spread the remainder so that exactly `requests` calls are made.
        let calls = requests / in_flight + usize::from(t < requests % in_flight);
        tasks.spawn_local(async move {
            for _ in 0..calls {
                assert!(stack.call(url).await, "a call failed");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a task panicked");
    }
}

/// A one-thread runtime: the client's cost on one core, as the reference figures were taken.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `f` on the one-thread runtime inside a `LocalSet` (the tasks are spawned locally).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::task::LocalSet::new().block_on(&runtime(), f)
}

/// The calls that callgrind counts (`--toggle-collect=*measured_calls*`): only while this
/// function runs, so that start-up (TLS roots, clients) and warm-up, which vary by a few
/// million instructions between runs, are left out.
#[inline(never)]
pub fn measured_calls(
    rt: &tokio::runtime::Runtime,
    local: &tokio::task::LocalSet,
    stack: &AnyStack,
    url: &'static str,
    requests: usize,
) {
    local.block_on(rt, stack.round(url, requests));
}

/// Pins the calling thread (and the threads it starts later) to `cpu`, if there is one.
pub fn pin_to(cpu: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpu >= cores {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// User + system CPU time of this whole process (every thread of the client; the server is
/// another process).
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

// The server ---------------------------------------------------------------------------------

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// `peers serve`: a loopback HTTP/1.1 server on CPU 1 answering `200 ok` (2 bytes) to every
/// request, and `<connections> <requests>` to `/stats`. Prints its URL, runs until killed.
///
/// With `BENCH_QUOTA_FIELDS=ietf` every answer also advertises a quota no run spends, in the
/// IETF fields (`RateLimit-Policy` and `RateLimit`); with `BENCH_QUOTA_FIELDS=x`, in the
/// `X-RateLimit-*` family: what following a server's quota costs when the server says it on
/// every answer.
pub fn serve() -> ! {
    pin_to(1);
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        println!("http://{addr}/bench");
        std::io::stdout().flush().expect("stdout");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            CONNECTIONS.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path() == "/stats" {
        Bytes::from(format!(
            "{} {}",
            CONNECTIONS.load(Relaxed),
            REQUESTS.load(Relaxed)
        ))
    } else {
        REQUESTS.fetch_add(1, Relaxed);
        Bytes::from_static(b"ok")
    };
    let mut response = hyper::Response::new(Full::new(body));
    for (name, value) in quota_fields() {
        response
            .headers_mut()
            .insert(*name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// The quota fields `BENCH_QUOTA_FIELDS` asks every answer to carry (see [`serve`]).
fn quota_fields() -> &'static [(&'static str, &'static str)] {
    static FIELDS: std::sync::OnceLock<&'static [(&'static str, &'static str)]> =
        std::sync::OnceLock::new();
    FIELDS.get_or_init(|| match std::env::var("BENCH_QUOTA_FIELDS").as_deref() {
        Ok("ietf") => &[
            ("ratelimit-policy", "\"default\";q=1000000000;w=3600"),
            ("ratelimit", "\"default\";r=999999999;t=3600"),
        ],
        Ok("x") => &[
            ("x-ratelimit-limit", "1000000000"),
            ("x-ratelimit-remaining", "999999999"),
            ("x-ratelimit-reset", "3600"),
        ],
        _ => &[],
    })
}

/// The server as a child process of this binary, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>/bench`, leaked: every call borrows it.
    pub url: &'static str,
}

impl Server {
    /// Starts `<this binary> serve` (the `peers` binary next to this one, if this is another).
    pub fn start() -> Server {
        let me = std::env::current_exe().expect("current exe");
        let peers = me.with_file_name("peers");
        let exe = if peers.exists() { peers } else { me };
        let mut child = Command::new(exe)
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server URL");
        Server {
            child,
            url: String::leak(line.trim().to_owned()),
        }
    }

    /// Connections accepted and requests answered so far (see [`stats`]).
    pub fn stats(&self) -> (u64, u64) {
        stats(self.url)
    }
}

/// Connections accepted and requests answered so far by the server at `url`: asked over a
/// plain blocking socket (no runtime, no pool), which adds one connection of its own.
pub fn stats(url: &str) -> (u64, u64) {
    use std::io::Read;
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect for stats");
    write!(
        stream,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("ask for stats");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("stats");
    let body = reply.rsplit("\r\n\r\n").next().unwrap_or_default();
    let mut numbers = body.split(' ').map(|n| n.trim().parse().expect("a number"));
    (
        numbers.next().expect("connections"),
        numbers.next().expect("requests"),
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A positional argument, or its default.
pub fn arg(args: &[String], i: usize, default: usize) -> usize {
    args.get(i)
        .map(|a| a.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

// Redis --------------------------------------------------------------------------------------

/// A free loopback port (free when asked; nothing holds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The Redis the shared stacks use: `REDIS_URL`'s, or else a `redis-server` of our own on a
/// free loopback port, without persistence, killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub url: String,
}

impl Redis {
    pub fn from_env_or_start() -> Redis {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Redis { child: None, url };
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("cannot run redis-server ({e}): apt-get install redis-server");
                std::process::exit(2)
            });
        let redis = Redis {
            child: Some(child),
            url: format!("redis://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            let ping = redis
                .connection()
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn).ok());
            if ping.is_some() {
                // SAFETY: nothing else touches the environment; the stacks read it later.
                unsafe { std::env::set_var("REDIS_URL", &redis.url) };
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url.as_str())
            .ok()?
            .get_connection()
            .ok()
    }

    fn info(&self, section: &str) -> String {
        let mut conn = self.connection().expect("Redis answers");
        redis::cmd("INFO")
            .arg(section)
            .query(&mut conn)
            .expect("INFO")
    }

    /// The CPU time Redis has used (user + system, all its threads), from `INFO cpu`.
    pub fn cpu(&self) -> Duration {
        let info = self.info("cpu");
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Duration::from_secs_f64(field("used_cpu_user") + field("used_cpu_sys"))
    }

    /// Calls of `command` and the microseconds Redis spent on each (its own accounting, the
    /// commands its scripts ran included), from `INFO commandstats`.
    pub fn command_stats(&self, command: &str) -> (u64, f64) {
        let info = self.info("commandstats");
        let stats = info
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
            .unwrap_or_default();
        let field = |name: &str| {
            stats
                .split(',')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (field("calls") as u64, field("usec_per_call"))
    }

    /// Round trips the fleets made, as Redis counts them: scripts run (`EVALSHA`, and
    /// `SCRIPT LOAD` and `EVAL` when it did not know one yet) and `PING`s (not the commands
    /// the scripts ran, nor those of setting up a connection, nor our `INFO`s).
    pub fn round_trips(&self) -> u64 {
        let info = self.info("commandstats");
        let calls = |command: &str| -> u64 {
            info.lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        ["evalsha", "eval", "script", "ping"]
            .into_iter()
            .map(calls)
            .sum::<u64>()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
