//! Breadth: calls to 10,000 distinct endpoint keys (127.10.y.z on loopback: Linux routes all
//! of 127/8 to `lo`, and one listener on 0.0.0.0 answers them all) leave every per-endpoint
//! registry within its bound (`max_breakers`, 1024 by default): the breakers and the
//! overload guards (retry budget, `Retry-After` hold, rate limit, bulkhead), read through
//! `Client::breakers` and `Client::overload`. The idlest go first; an endpoint with state worth
//! keeping (a forced-open breaker, a hold, a call in flight) stays.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use resilient_http::breaker::State;
use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
use resilient_http::policy::EndpointPolicy;
use resilient_http::{Client, ErrorKind};
use tokio::sync::Notify;

const ENDPOINTS: usize = 10_000;
/// `BreakerConfig::default().max_breakers`, which also bounds the guards.
const BOUND: usize = 1024;
/// A full registry drops a quarter of its entries at once (`keyed.rs`: a sixteenth until
/// issue 28, whose batches amortise the rebuild and the busy checks over more insertions).
const EVICTED_AT_ONCE: usize = BOUND / 4;
const IN_FLIGHT: usize = 32;
/// How much resident memory may grow while calling endpoints beyond the bound.
const RSS_GROWTH_BOUND_MIB: f64 = 16.0;
/// Endpoints called before memory is read again: twice the bound, the registries are full.
const FULL: usize = 2 * BOUND;

/// The `i`-th endpoint's address.
fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 10, (i / 200) as u8, (1 + i % 200) as u8)
}

/// Endpoints with state worth keeping: a breaker forced open, a server that asked to wait an
/// hour, and a call that stays in flight until the end.
const FORCED_OPEN: usize = 0;
const HELD: usize = 1;
const IN_FLIGHT_TO_THE_END: usize = 2;

/// The resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A server on every loopback address: 200, except for the held endpoint (503 with
/// `Retry-After: 3600`) and the one whose call stays in flight until `release`.
async fn start_server(release: Arc<Notify>) -> u16 {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            // Bound to every interface for 127/8's sake: anyone else is turned away.
            if !peer.ip().is_loopback() {
                continue;
            }
            let Ok(SocketAddr::V4(local)) = stream.local_addr() else {
                continue;
            };
            let release = release.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let (local, release) = (*local.ip(), release.clone());
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        if local == host(HELD) {
                            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            response.headers_mut().insert(
                                http::header::RETRY_AFTER,
                                http::HeaderValue::from_static("3600"),
                            );
                        } else if local == host(IN_FLIGHT_TO_THE_END) {
                            release.notified().await;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .header_read_timeout(None)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_endpoints_stay_within_the_registries_bounds() {
    let release = Arc::new(Notify::new());
    let port = start_server(release.clone()).await;
    let url = |i: usize| format!("http://{}:{port}/", host(i));
    let key = |i: usize| format!("http://{}:{port}", host(i));
    let client = Client::builder()
        // One connection per endpoint would be 10,000 sockets kept open on each side.
        .reqwest(|builder| builder.pool_max_idle_per_host(0))
        .default_policy(
            EndpointPolicy::new()
                // Long enough for the call kept in flight to outlast the test on any machine.
                .attempt_timeout(Duration::from_secs(120))
                .deadline(Duration::from_secs(120))
                .retry_after_cap(Duration::from_secs(3600))
                .rate_limit(RateLimitConfig::new(100, Duration::from_secs(1)).burst(10))
                .bulkhead(BulkheadConfig::new(4, Duration::ZERO)),
        )
        .build()
        .unwrap();
    let breakers = client.breakers().expect("breakers on by default").clone();

    // The endpoints worth keeping come first, so they are the oldest when eviction starts.
    breakers.get_or_create(&key(FORCED_OPEN)).force_open();
    let refused = client.get(url(FORCED_OPEN)).send().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
    let held = client.get(url(HELD)).no_retry().send().await.unwrap_err();
    assert_eq!(held.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url(IN_FLIGHT_TO_THE_END);
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    let placed = async {
        while client
            .overload("default", &key(IN_FLIGHT_TO_THE_END))
            .and_then(|guards| guards.bulkhead_in_flight())
            != Some(1)
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), placed)
        .await
        .expect("the call kept in flight took its bulkhead place");
    let rss_before = rss_mib();

    let most = Arc::new(AtomicUsize::new(0));
    let call_all = |range: std::ops::Range<usize>| {
        let next = Arc::new(AtomicUsize::new(range.start));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let (client, breakers, next, most) =
                (client.clone(), breakers.clone(), next.clone(), most.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= range.end {
                        break;
                    }
                    let response = client
                        .get(format!("http://{}:{port}/", host(i)))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("endpoint {i}: {e}"));
                    assert_eq!(response.status(), StatusCode::OK);
                    most.fetch_max(breakers.len(), Relaxed);
                }
            });
        }
        async move {
            while let Some(joined) = workers.join_next().await {
                joined.unwrap();
            }
        }
    };
    // Past the bound, the registries are full: from then on memory should stay flat.
    call_all(IN_FLIGHT_TO_THE_END + 1..FULL).await;
    let rss_full = rss_mib();
    call_all(FULL..ENDPOINTS).await;
    let rss_after = rss_mib();

    let with_guards: Vec<usize> = (0..ENDPOINTS)
        .filter(|i| client.overload("default", &key(*i)).is_some())
        .collect();
    let with_breakers: Vec<usize> = (0..ENDPOINTS)
        .filter(|i| breakers.get(&key(*i)).is_some())
        .collect();
    println!(
        "breadth: {ENDPOINTS} endpoints: {} breakers (at most {} during the run), {} with guards; \
         RSS {rss_before:.1} MiB before, {rss_full:.1} MiB after {FULL} endpoints, \
         {rss_after:.1} MiB after {ENDPOINTS}",
        breakers.len(),
        most.load(Relaxed),
        with_guards.len(),
    );

    // Full registries hold about 8 KiB per endpoint here (breaker and guards, with 4 stripes
    // per window): the 8,000 endpoints after they filled would have added about 60 MiB.
    assert!(
        rss_after <= rss_full + RSS_GROWTH_BOUND_MIB,
        "RSS grew from {rss_full:.1} to {rss_after:.1} MiB once the registries were full"
    );
    // Within the bound, and only just: eviction drops a quarter at a time.
    assert!(most.load(Relaxed) <= BOUND, "{}", most.load(Relaxed));
    for (what, len) in [
        ("breakers", breakers.len()),
        ("breakers by key", with_breakers.len()),
        ("guards", with_guards.len()),
    ] {
        assert!(
            (BOUND - EVICTED_AT_ONCE..=BOUND).contains(&len),
            "{what}: {len}"
        );
    }
    assert_eq!(breakers.keys().len(), breakers.len());
    // The idlest went first: the first ordinary endpoints are gone, the last ones stay.
    let first = IN_FLIGHT_TO_THE_END + 1;
    assert!(breakers.get(&key(first)).is_none());
    assert!(client.overload("default", &key(first)).is_none());
    assert!(with_breakers.contains(&(ENDPOINTS - 1)));
    assert!(with_guards.contains(&(ENDPOINTS - 1)));

    // State worth keeping was kept through all those insertions.
    let forced = breakers
        .get(&key(FORCED_OPEN))
        .expect("a forced-open breaker is kept");
    assert_eq!(forced.state(), State::ForcedOpen);
    let held = client
        .overload("default", &key(HELD))
        .expect("a held endpoint's guards are kept");
    assert!(held.held_for().is_some());
    let busy = client
        .overload("default", &key(IN_FLIGHT_TO_THE_END))
        .expect("guards with a call in flight are kept");
    assert_eq!(busy.bulkhead_in_flight(), Some(1));

    // The call in flight ends and gives its place back.
    release.notify_one();
    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::OK);
    assert_eq!(busy.bulkhead_in_flight(), Some(0));
}
