//! A loopback server whose latency grows with its load: a request that finds `n` requests
//! in the server (itself included) takes `20 ms × max(1, n / capacity)`, so up to
//! `capacity` at once it answers in 20 ms and past it it serves `capacity / 20 ms` requests
//! a second however many queue. The capacity can change while it runs. Real time: it
//! records when each request came, how many it found, and how long it took.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The latency of a request that finds no queue.
pub const UNLOADED: Duration = Duration::from_millis(20);

/// One request, as the server saw it.
#[derive(Clone, Copy, Debug)]
pub struct Visit {
    pub arrived: Instant,
    /// Requests in the server when it arrived, itself included.
    pub found: u32,
    pub took: Duration,
}

/// The server; stops when dropped.
pub struct LoadServer {
    addr: SocketAddr,
    capacity: Arc<AtomicU32>,
    visits: Arc<Mutex<Vec<Visit>>>,
    task: JoinHandle<()>,
}

impl Drop for LoadServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LoadServer {
    pub async fn start(capacity: u32) -> LoadServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let capacity = Arc::new(AtomicU32::new(capacity));
        let visits = Arc::new(Mutex::new(Vec::with_capacity(16_384)));
        let in_server = Arc::new(AtomicU32::new(0));
        let (cap, seen) = (capacity.clone(), visits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (cap, seen, in_server) = (cap.clone(), seen.clone(), in_server.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let (cap, seen, in_server) = (cap.clone(), seen.clone(), in_server.clone());
                        async move {
                            let arrived = Instant::now();
                            let found = in_server.fetch_add(1, SeqCst) + 1;
                            let capacity = cap.load(SeqCst).max(1);
                            let took = UNLOADED * found.max(capacity) / capacity;
                            tokio::time::sleep(took).await;
                            in_server.fetch_sub(1, SeqCst);
                            let visit = Visit {
                                arrived,
                                found,
                                took: arrived.elapsed(),
                            };
                            (seen.lock().unwrap_or_else(PoisonError::into_inner)).push(visit);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LoadServer {
            addr,
            capacity,
            visits,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `capacity` at once in 20 ms from now on.
    pub fn set_capacity(&self, capacity: u32) {
        self.capacity.store(capacity, SeqCst);
    }

    /// The requests that arrived from `from` to `to`.
    pub fn visits(&self, from: Instant, to: Instant) -> Vec<Visit> {
        let visits = self.visits.lock().unwrap_or_else(PoisonError::into_inner);
        (visits.iter())
            .filter(|v| v.arrived >= from && v.arrived < to)
            .copied()
            .collect()
    }
}
