//! Many GETs against an HTTP/2 server that shuts connections down gracefully (nginx with
//! `keepalive_requests`, reloads): how many failed, and how many streams the server named
//! unprocessed were resent (see `resilient_http::retry::MAX_RESENDS`). A manual check
//! against real servers, not part of CI (see README, "Retries").
//!
//! ```text
//! cargo run --release --example goaway_load -- https://127.0.0.1:28443/ 6000 16 client ca.pem
//! ```
//!
//! Arguments: URL, total GETs, how many at once, `client` or `middleware`, and the PEM file of
//! a CA to trust (optional).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use resilient_http::middleware::ResilientMiddleware;
use resilient_http::retry::RetryHistory;
use resilient_http::{Attempt, Client};

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
    resent: AtomicUsize,
    retried: AtomicUsize,
    // Failed attempts that may have reached the server (retried or not).
    maybe_sent: AtomicUsize,
    longest_chain: AtomicUsize,
}

impl Counts {
    fn history(&self, attempts: &[Attempt]) {
        let resent = attempts.iter().filter(|a| a.resent).count();
        self.resent.fetch_add(resent, Ordering::Relaxed);
        let retried = attempts.len().saturating_sub(1 + resent);
        self.retried.fetch_add(retried, Ordering::Relaxed);
        self.longest_chain.fetch_max(resent, Ordering::Relaxed);
        let maybe_sent = attempts
            .iter()
            .filter(|a| a.delivery == resilient_http::Delivery::MaybeSent)
            .count();
        self.maybe_sent.fetch_add(maybe_sent, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or("https://127.0.0.1:28443/".into());
    let total: usize = args.get(2).map_or(Ok(6000), |a| a.parse())?;
    let at_once: usize = args.get(3).map_or(Ok(16), |a| a.parse())?;
    let via = args.get(4).cloned().unwrap_or("client".into());
    let ca = match args.get(5) {
        Some(path) => Some(reqwest::Certificate::from_pem(&std::fs::read(path)?)?),
        None => None,
    };
    let ca2 = ca.clone();
    let builder = Client::builder();
    enum Caller {
        Client(Client),
        Middleware(reqwest_middleware::ClientWithMiddleware),
    }
    let caller = Arc::new(if via == "middleware" {
        let mut http = reqwest::Client::builder().retry(reqwest::retry::never());
        if let Some(ca) = ca {
            http = http.add_root_certificate(ca);
        }
        let chain = reqwest_middleware::ClientBuilder::new(http.build()?)
            .with(ResilientMiddleware::new(builder)?)
            .build();
        Caller::Middleware(chain)
    } else {
        let builder = builder.reqwest(move |b| match ca2 {
            Some(ca) => b.add_root_certificate(ca),
            None => b,
        });
        Caller::Client(builder.build()?)
    });
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..at_once {
        let (caller, counts, next, url) =
            (caller.clone(), counts.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                // Each call's number, for the server's log: which calls it processed twice.
                let result = match &*caller {
                    Caller::Client(client) => client.get(&url).header("x-call", n).send().await,
                    Caller::Middleware(chain) => {
                        match chain.get(&url).header("x-call", n).send().await {
                            Ok(response) => Ok(response),
                            Err(err) => match ResilientMiddleware::error(&err) {
                                Some(_) => Err(match err {
                                    reqwest_middleware::Error::Middleware(e) => e
                                        .downcast::<resilient_http::Error>()
                                        .map_err(|_| "untyped")?,
                                    reqwest_middleware::Error::Reqwest(_) => return Err("untyped"),
                                }),
                                None => return Err("untyped"),
                            },
                        }
                    }
                };
                match result {
                    Ok(response) => {
                        if let Some(RetryHistory(attempts)) = response.extensions().get() {
                            counts.history(attempts);
                            let attempts: Vec<String> =
                                attempts.iter().map(|a| a.to_string()).collect();
                            eprintln!("call {n}: {}", attempts.join(" | "));
                        }
                        let _ = response.bytes().await;
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        counts.history(err.attempts());
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        let attempts: Vec<String> =
                            err.attempts().iter().map(|a| a.to_string()).collect();
                        eprintln!("failed: {err}; attempts: {}", attempts.join(" | "));
                    }
                }
            }
            Ok::<(), &'static str>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!(
        "{via}: {total} GETs, {at_once} at once, in {:.1}s: {} ok, {} failed; {} resent \
         (longest run in one call: {}), {} retried by the policy; {} failed attempts maybe \
         sent",
        started.elapsed().as_secs_f64(),
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.resent.load(Ordering::Relaxed),
        counts.longest_chain.load(Ordering::Relaxed),
        counts.retried.load(Ordering::Relaxed),
        counts.maybe_sent.load(Ordering::Relaxed),
    );
    Ok(())
}
