//! What the stack costs per call, next to bare reqwest in the same run.
//!
//! - `layers/*`: the layers alone over an inner service that answers at once (no I/O), so the
//!   difference is pure layer cost: cloning the stack, clock reads, timer registrations, the
//!   request copy kept for a retry, the URL clone kept for errors.
//! - `loopback/*`: one GET at a time against a local server (running on its own runtime thread),
//!   bare `reqwest::Client` against `resilient_http::Client` over the same kind of pool.
//!
//! `cargo bench --bench overhead`

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use resilient_http::Error;
use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
use resilient_http::retry::{RetryLayer, RetryPolicy};
use resilient_http::testkit::FaultServer;
use resilient_http::timeout::{AttemptTimeoutLayer, TotalDeadlineLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn request() -> reqwest::Request {
    let url = "http://svc.internal/items?page=2"
        .parse()
        .expect("valid URL");
    reqwest::Request::new(http::Method::GET, url)
}

fn layers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let inner = service_fn(|_req: reqwest::Request| async {
        Ok::<_, reqwest::Error>(reqwest::Response::from(http::Response::new("")))
    });
    let stack = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(30)))
        .layer(RetryLayer::new(RetryPolicy::default()))
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
        .layer(ClassifyLayer::new(DefaultClassifier))
        .service(inner);

    let mut group = c.benchmark_group("layers");
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter(|| {
            let mut svc = inner;
            async move { svc.call(request()).await }
        })
    });
    group.bench_function("deadline+retry+timeout+classify", |b| {
        b.to_async(&runtime).iter(|| {
            let svc = stack.clone();
            async move { svc.oneshot(request()).await.map_err(|e: Error| e) }
        })
    });
    group.finish();
}

fn loopback(c: &mut Criterion) {
    // The server gets its own thread and runtime so it does not share the client's.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async {
            let server = FaultServer::start().await.expect("server");
            addr_tx.send(server.url("/bench")).expect("send url");
            std::future::pending::<()>().await;
        });
    });
    let url = addr_rx.recv().expect("server url");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bare = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    let resilient = resilient_http::Client::builder()
        .reqwest_client(bare.clone())
        .build()
        .expect("client");

    let mut group = c.benchmark_group("loopback");
    group.bench_function("reqwest", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = bare.get(&url).send().await.expect("ok");
            response.bytes().await.expect("body")
        })
    });
    group.bench_function("resilient", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = resilient.get(&url).send().await.expect("ok");
            response.bytes().await.expect("body")
        })
    });
    group.finish();
}

criterion_group!(benches, layers, loopback);
criterion_main!(benches);
