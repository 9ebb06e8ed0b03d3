//! Issue 26, client-side adaptive throttling, end to end: a loopback server that accepts 10
//! requests a second and answers 503 beyond, offered 100 requests a second (a twentieth
//! critical, nine twentieths default, half sheddable).
//!
//! Shortened from the 30 s with a 2-minute window, which cannot show a steady state
//! within the run: the window is 5 s, the run 15 s, and the gates are read from the 6th
//! second on (after the first window's warm-up, and a step of it). Real time, on a loaded
//! 2-core box: the gates leave room (measured 1.75–2.2× where 2.5× is asked; critical calls
//! 100 % successful where 90 % is asked, with up to 7 attempts: 95 % with 5).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use resilient_http::overload::{Criticality, ThrottleConfig};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{BudgetConfig, Jitter};
use resilient_http::{Client, ErrorKind};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, interval};

const SECOND: Duration = Duration::from_secs(1);

/// Accepts `per_second` requests in each second of its clock (from its start), 503 beyond;
/// remembers when each arrived and what it answered.
struct Server {
    addr: SocketAddr,
    start: Instant,
    seen: Arc<Mutex<Vec<(Instant, bool)>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(per_second: u64) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counted = Arc::new(Mutex::new((0u64, 0u64)));
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (counted, seen) = (counted.clone(), recorded.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let now = Instant::now();
                        let second = now.duration_since(start).as_secs();
                        let accepted = {
                            let mut counted =
                                counted.lock().unwrap_or_else(PoisonError::into_inner);
                            if counted.0 != second {
                                *counted = (second, 0);
                            }
                            counted.1 += 1;
                            counted.1 <= per_second
                        };
                        (seen.lock().unwrap_or_else(PoisonError::into_inner)).push((now, accepted));
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        if !accepted {
                            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            start,
            seen,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/work", self.addr)
    }

    /// Requests that arrived, and of them accepted, from `from` after the server started.
    fn counts_from(&self, from: Duration) -> (usize, usize) {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let after = seen.iter().filter(|(at, _)| *at >= self.start + from);
        let (mut arrived, mut accepted) = (0, 0);
        for (_, ok) in after {
            arrived += 1;
            accepted += usize::from(*ok);
        }
        (arrived, accepted)
    }
}

/// How each criticality's calls ended, from the warm-up on.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    calls: usize,
    ok: usize,
    throttled: usize,
    budget: usize,
    other: usize,
    attempts: usize,
}

impl Tally {
    fn success(&self) -> f64 {
        self.ok as f64 / self.calls.max(1) as f64
    }
}

fn index(criticality: Criticality) -> usize {
    match criticality {
        Criticality::Critical => 0,
        Criticality::Default => 1,
        _ => 2,
    }
}

/// One call in 20 critical, 9 default, 10 sheddable, drawn at random (seeded): in a fixed
/// order, the server's first 10 of each second went to whichever criticality the second
/// began with.
fn criticality_of(draw: &mut fastrand::Rng) -> Criticality {
    match draw.usize(0..20) {
        0 => Criticality::Critical,
        1..=9 => Criticality::Default,
        _ => Criticality::Sheddable,
    }
}

/// Offers 100 calls a second for `run` to a server accepting 10 a second; returns the
/// server's (arrived, accepted) and each criticality's tally, from `warm_up` on.
async fn offer(throttle: Option<ThrottleConfig>, run: Duration, warm_up: Duration) -> Report {
    let server = Server::start(10).await;
    // Critical calls get through by retrying (about half of what reaches the server is
    // accepted): up to 7 attempts, within 5 s.
    let mut policy = EndpointPolicy::new()
        .max_attempts(7)
        .backoff_base(Duration::from_millis(200))
        .backoff_max(SECOND)
        .jitter(Jitter::Full)
        .breaker_enabled(false)
        // The default budget: 20 % of the first attempts, plus 10 a second.
        .retry_budget(BudgetConfig::default());
    if let Some(throttle) = throttle {
        policy = policy.throttle(throttle);
    }
    let client = Client::builder().default_policy(policy).build().unwrap();
    let url = server.url();
    let mut calls = JoinSet::new();
    let mut tick = interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let start = server.start;
    let total = (run.as_millis() / 10) as usize;
    let mut draw = fastrand::Rng::with_seed(26);
    for _ in 0..total {
        tick.tick().await;
        let (client, url) = (client.clone(), url.clone());
        let criticality = criticality_of(&mut draw);
        calls.spawn(async move {
            let began = Instant::now();
            let result = client
                .get(&url)
                .criticality(criticality)
                .deadline(Duration::from_secs(5))
                .send()
                .await;
            let attempts = match &result {
                Ok(_) => 0,
                Err(error) => error.attempts().len(),
            };
            (
                began,
                criticality,
                result.map(|_| ()).map_err(|e| e.kind()),
                attempts,
            )
        });
    }
    let mut tallies = [Tally::default(); 3];
    while let Some(joined) = calls.join_next().await {
        let (began, criticality, result, attempts) = joined.unwrap();
        if began < start + warm_up {
            continue;
        }
        let tally = &mut tallies[index(criticality)];
        tally.calls += 1;
        tally.attempts += attempts;
        match result {
            Ok(()) => tally.ok += 1,
            Err(ErrorKind::Throttled) => tally.throttled += 1,
            Err(ErrorKind::BudgetExhausted) => tally.budget += 1,
            Err(_) => tally.other += 1,
        }
    }
    let (arrived, accepted) = server.counts_from(warm_up);
    Report {
        arrived,
        accepted,
        tallies,
    }
}

#[derive(Debug)]
struct Report {
    arrived: usize,
    accepted: usize,
    /// Critical, default, sheddable.
    tallies: [Tally; 3],
}

impl Report {
    fn ratio(&self) -> f64 {
        self.arrived as f64 / self.accepted.max(1) as f64
    }

    fn print(&self, name: &str) {
        println!(
            "{name}: the server saw {} requests and accepted {} ({:.2}x)",
            self.arrived,
            self.accepted,
            self.ratio()
        );
        for (criticality, tally) in ["critical", "default", "sheddable"]
            .iter()
            .zip(self.tallies)
        {
            println!(
                "  {criticality:>9}: {} calls, {:.1} % succeeded; failed: {} throttled, {} \
                 budget exhausted, {} other (attempts of failed calls: {})",
                tally.calls,
                tally.success() * 100.0,
                tally.throttled,
                tally.budget,
                tally.other,
                tally.attempts
            );
        }
    }
}

/// With throttling on (K = 2, a 5 s window), the server sees at most 2.5 times what it
/// accepts once the window has warmed up; critical calls succeed (≥ 90 %), sheddable ones
/// are shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_keeps_what_the_server_sees_near_k_times_what_it_accepts() {
    let throttle = ThrottleConfig::new().k(2.0).window(Duration::from_secs(5));
    let report = offer(
        Some(throttle),
        Duration::from_secs(15),
        Duration::from_secs(6),
    )
    .await;
    report.print("throttled");
    let [critical, default, sheddable] = report.tallies;
    assert!(report.ratio() <= 2.5, "{report:?}");
    // The server still gets its fill: throttling does not starve it.
    assert!(report.accepted >= 80, "{report:?}");
    assert!(critical.success() >= 0.9, "{report:?}");
    assert!(sheddable.success() <= 0.1, "{report:?}");
    assert!(
        sheddable.throttled * 10 >= sheddable.calls * 8,
        "{report:?}"
    );
    // The default ones get what the critical ones leave.
    assert!(default.success() < critical.success(), "{report:?}");
}

/// The same load without throttling: the server sees about ten times what it accepts (more
/// with retries, as far as the budget lets them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_throttling_the_server_sees_ten_times_what_it_accepts() {
    let report = offer(None, Duration::from_secs(10), Duration::from_secs(3)).await;
    report.print("not throttled");
    assert!(report.ratio() >= 8.0, "{report:?}");
    assert_eq!(report.tallies.iter().map(|t| t.throttled).sum::<usize>(), 0);
}

/// How a call failed: its kind, its message, its attempts.
type Failure = (ErrorKind, String, usize);

fn failure(error: &resilient_http::Error) -> Failure {
    (error.kind(), error.to_string(), error.attempts().len())
}

/// The criticality a request names reaches the throttle, through the client's
/// `.criticality(..)` and through the middleware's extensions: against a dependency that
/// accepts nothing, the throttled attempts' errors name it, sheddable ones are all throttled
/// and critical ones never more than 3 in 4 (the rest are sent).
#[tokio::test]
async fn criticality_reaches_the_throttle_through_the_client_and_the_middleware() {
    use resilient_http::middleware::ResilientMiddleware;
    for via_middleware in [false, true] {
        let server = resilient_http::testkit::FaultServer::start().await.unwrap();
        server.script("/work", [resilient_http::testkit::Reply::status(503)]);
        let url = server.url("/work");
        let builder = || {
            Client::builder().default_policy(
                EndpointPolicy::new()
                    .max_attempts(1)
                    .breaker_enabled(false)
                    .throttle(ThrottleConfig::new()),
            )
        };
        let client = builder().build().unwrap();
        let chain = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(ResilientMiddleware::new(builder()).unwrap())
            .build();
        let send = |criticality: Criticality| {
            let (client, chain, url) = (client.clone(), chain.clone(), url.clone());
            async move {
                if via_middleware {
                    let sent = chain.get(&url).with_extension(criticality).send().await;
                    match sent {
                        Ok(response) => Ok::<u16, Failure>(response.status().as_u16()),
                        Err(error) => Err(failure(ResilientMiddleware::error(&error).unwrap())),
                    }
                } else {
                    let sent = client.get(&url).criticality(criticality).send().await;
                    sent.map(|response| response.status().as_u16())
                        .map_err(|error| failure(&error))
                }
            }
        };
        // Twenty default requests, each sent or throttled: nothing is accepted.
        let mut default_sent = 0;
        for _ in 0..20 {
            let (kind, shown, _) = send(Criticality::Default).await.unwrap_err();
            assert!(
                matches!(kind, ErrorKind::Status | ErrorKind::Throttled),
                "{shown}"
            );
            default_sent += usize::from(kind == ErrorKind::Status);
        }
        let mut sent = 0;
        for _ in 0..40 {
            let (kind, shown, _) = send(Criticality::Critical).await.unwrap_err();
            match kind {
                ErrorKind::Throttled => {
                    assert!(shown.contains("of critical attempts"), "{shown}");
                }
                _ => sent += 1,
            }
        }
        assert!((3..=25).contains(&sent), "{sent} of 40 critical sent");
        for _ in 0..20 {
            let (kind, shown, attempts) = send(Criticality::Sheddable).await.unwrap_err();
            assert_eq!(kind, ErrorKind::Throttled, "{shown}");
            assert!(shown.contains("of sheddable attempts"), "{shown}");
            // Ended at once: one attempt, not sent, not retried.
            assert_eq!(attempts, 1, "{shown}");
        }
        // Throttled attempts never reach the server.
        assert_eq!(server.hits("/work"), default_sent + sent);
    }
}

/// The user-composed tower stack throttles as the client does, with its policy's
/// criticality (a `reqwest::Request` carries none of its own).
#[tokio::test]
async fn a_resilient_layer_throttles_with_its_policys_criticality() {
    use resilient_http::ResilientLayer;
    use tower::{ServiceBuilder, ServiceExt};
    let server = resilient_http::testkit::FaultServer::start().await.unwrap();
    server.script("/work", [resilient_http::testkit::Reply::status(503)]);
    let layer = ResilientLayer::new(
        Client::builder().default_policy(
            EndpointPolicy::new()
                .max_attempts(1)
                .breaker_enabled(false)
                .throttle(ThrottleConfig::new())
                .criticality(Criticality::Sheddable),
        ),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service(http);
    // The throttle draws from this thread's generator (the calls run on it).
    fastrand::seed(26);
    let mut kinds = Vec::new();
    for _ in 0..10 {
        let request =
            reqwest::Request::new(reqwest::Method::GET, server.url("/work").parse().unwrap());
        let error = service.clone().oneshot(request).await.unwrap_err();
        kinds.push(error.kind());
        if error.kind() == ErrorKind::Throttled {
            assert!(
                error.to_string().contains("of sheddable attempts"),
                "{error}"
            );
        }
    }
    // The first is sent (nothing counted yet); after it, every sheddable one is throttled
    // (one request, no accept: (1 − 0) / (1 + 1) is one half, then more).
    assert_eq!(kinds[0], ErrorKind::Status);
    let throttled = kinds
        .iter()
        .filter(|&&kind| kind == ErrorKind::Throttled)
        .count();
    assert!(throttled >= 5, "{kinds:?}");
    assert_eq!(server.hits("/work"), 10 - throttled);
}
