//! A loopback server that enforces a fixed-window quota and advertises it on every answer,
//! in one of three styles: the IETF fields, `X-RateLimit-*` with the reset in seconds, or
//! with the reset as epoch seconds. Windows are counted on tokio's clock from the server's
//! start, so a test with paused time sees exact windows; resets are rounded up to whole
//! seconds, as servers write them (an epoch reset from the wall clock: `SystemTime::now()`
//! plus the time to the window's end, rounded up, which holds under paused time too).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the server advertises its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `RateLimit-Policy: "default";q=10;w=2` and `RateLimit: "default";r=3;t=1`.
    Ietf,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` in seconds from now.
    XSeconds,
    /// The same, with the reset in seconds since the Unix epoch (GitHub's).
    XEpoch,
}

/// What the server saw: when each request arrived, and what it answered.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(Instant, u16)>,
}

/// The quota server; stops when dropped.
pub struct QuotaServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for QuotaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Quota {
    limit: u64,
    window: Duration,
    style: Style,
    start: Instant,
}

impl Quota {
    /// The answer to a request arriving at `now`, given what the window counted before it.
    fn answer(&self, now: Instant, counted: &mut (u64, u64)) -> Response<Full<Bytes>> {
        let elapsed = now.duration_since(self.start);
        let window = (elapsed.as_nanos() / self.window.as_nanos()) as u64;
        if counted.0 != window {
            *counted = (window, 0);
        }
        let end = self.start + self.window * (window as u32 + 1);
        let to_end = end.duration_since(now);
        let allowed = counted.1 < self.limit;
        if allowed {
            counted.1 += 1;
        }
        let remaining = self.limit - counted.1;
        let secs = to_end.as_secs() + u64::from(to_end.subsec_nanos() > 0);
        let mut response = if allowed {
            Response::new(Full::new(Bytes::from_static(b"ok")))
        } else {
            let mut response = Response::new(Full::new(Bytes::from_static(b"slow down")));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            response
        };
        let headers = response.headers_mut();
        match self.style {
            Style::Ietf => {
                let policy = format!("\"default\";q={};w={}", self.limit, self.window.as_secs());
                let state = format!("\"default\";r={remaining};t={secs}");
                headers.insert("ratelimit-policy", HeaderValue::from_str(&policy).unwrap());
                headers.insert("ratelimit", HeaderValue::from_str(&state).unwrap());
            }
            Style::XSeconds | Style::XEpoch => {
                let reset = if self.style == Style::XSeconds {
                    secs
                } else {
                    let at = SystemTime::now() + to_end;
                    let since = at.duration_since(UNIX_EPOCH).unwrap();
                    since.as_secs() + u64::from(since.subsec_nanos() > 0)
                };
                headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
                headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
                headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
            }
        }
        response
    }
}

impl QuotaServer {
    /// `limit` requests per `window` (whole seconds), 429 beyond, advertised in `style`.
    pub async fn start(limit: u64, window: Duration, style: Style) -> QuotaServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let quota = Arc::new(Quota {
            limit,
            window,
            style,
            start: Instant::now(),
        });
        let counted = Arc::new(Mutex::new((0u64, 0u64)));
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (quota, counted, seen) = (quota.clone(), counted.clone(), recorded.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let now = Instant::now();
                        let response = {
                            let mut counted =
                                counted.lock().unwrap_or_else(PoisonError::into_inner);
                            quota.answer(now, &mut counted)
                        };
                        let status = response.status().as_u16();
                        (seen.lock().unwrap_or_else(PoisonError::into_inner))
                            .arrivals
                            .push((now, status));
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .header_read_timeout(None)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        QuotaServer { addr, seen, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The statuses answered, in order of arrival.
    pub fn statuses(&self) -> Vec<u16> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.arrivals.iter().map(|(_, status)| *status).collect()
    }

    /// How many requests were answered 429.
    pub fn rejected(&self) -> usize {
        self.statuses().iter().filter(|s| **s == 429).count()
    }

    /// The most requests that arrived within any `span` (sliding, from each arrival), of
    /// those that arrived `after` the first one or later.
    pub fn most_within(&self, span: Duration, after: Duration) -> usize {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(&(first, _)) = seen.arrivals.first() else {
            return 0;
        };
        let times: Vec<Instant> = (seen.arrivals.iter())
            .map(|(at, _)| *at)
            .filter(|at| *at >= first + after)
            .collect();
        (times.iter())
            .map(|from| {
                times
                    .iter()
                    .filter(|at| **at >= *from && **at < *from + span)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}
