//! The soak: hundreds of thousands of calls, 64 in flight, through the whole stack (the
//! client's own call and the reqwest-middleware adapter, each with a retry budget, a rate
//! limit, a bulkhead, a breaker and hedging) against a loopback server that fails at random,
//! and every call's outcome checked against what the server did to it.
//!
//! ```text
//! cargo test --release --test soak -- --ignored --nocapture
//! SOAK_CALLS=2000000 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! **The truth.** Every request carries its call's id (`x-call`). The server numbers the
//! requests of each call as they arrive and draws what to do with each from a hash of (seed,
//! call id, arrival number), so no other call's timing changes what a call meets. It logs
//! what it did before doing it. (Arrival numbers, not the caller's attempt numbers: a request
//! carries none, and an attempt layer that added one would take the client off its plain path;
//! for attempts made one after another the two are the same.) When a call ends, its driver
//! takes the server's log of that call and checks the outcome against it:
//!
//! - A call whose attempts ran one after another (no hedge) is predicted exactly: each
//!   attempt's outcome, class and delivery from the server's action and the documented
//!   classification (`classify/default.rs`, `transport.rs`), when the retry stops
//!   (`Decision::decide` in `call/decision.rs`: transient failures retried up to 3 attempts,
//!   a POST without an `Idempotency-Key` not after it may have been processed), the delay
//!   before each retry (`Retry-After: 0` obeyed exactly, else full jitter under
//!   100 ms × 2^(n−1)), and the final error's kind, class, delivery and status, or which
//!   request's body the success carries.
//! - A call that raced a hedge is checked against the rules that hold whatever the timing
//!   (the `hedge` module docs): every attempt it saw matches a request the server logged, every
//!   request the server logged is one it saw or one it cancelled, at most one hedge and three
//!   other attempts, the hedge went out no earlier than `after`, the success carries a body
//!   the server sent, and a failure ended the call only with its attempts used up.
//!
//! **Decidable by design.** The breaker keeps its defaults (50 % failures of the last 100
//! calls): the server fails about 11 % of requests, so a window past 50 % is about 12 standard
//! deviations out; a state-change callback proves it never opened. `Retry-After` is `0`, so
//! a 429 retries at once and the endpoint hold it sets is over before anyone asks (a longer
//! one would hold every call of the endpoint and skip hedges on timing alone). The retry
//! budget allows a million retries a second; the rate limit a million requests a second; the
//! bulkhead is exactly as wide as the driver's 64 calls in flight, so it never refuses, and a
//! place never given back would show up as a `BulkheadFull` the checker rejects. The total
//! deadline (30 s) is far beyond a call's worst case (three 2 s stalls). The attempt timeout is
//! 2 s instead of 10 s so a stalled body costs 2 s of one slot; the slowest answer that
//! must succeed (300 ms) keeps a 1.7 s margin, which only a machine stalled for seconds eats.
//!
//! At the end: no permit, hold or token is left taken (the client's overload readings, its
//! breaker; the adapter's guards have no public reading, but a leaked bulkhead place would
//! have refused calls), the server saw no request it could not account for, nothing panicked, and the
//! resident memory after the run is within [`RSS_GROWTH_BOUND`] of what it was after warm-up.
#![cfg(feature = "reqwest-middleware")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant as WallClock};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use resilient_http::breaker::{BreakerConfig, State};
use resilient_http::classify::DefaultClassifier;
use resilient_http::hedge::HedgeConfig;
use resilient_http::middleware::ResilientMiddleware;
use resilient_http::overload::{BulkheadConfig, RateLimitConfig};
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{BudgetConfig, RetryHistory, RetryPolicy};
use resilient_http::{
    Attempt, AttemptOutcome, Class, Client, ClientBuilder, Delivery, Error, ErrorKind,
};
use tokio::sync::mpsc;

/// Calls at once, as the driver's tasks.
const IN_FLIGHT: usize = 64;
/// Calls unless `SOAK_CALLS` says otherwise.
const DEFAULT_CALLS: u64 = 200_000;
/// The server's seed unless `SOAK_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x0005_eed1_5002;
/// Calls made before the memory baseline is read: pools, maps and the allocator settle.
const WARM_UP_CALLS: u64 = 20_000;
/// How much resident memory may grow from after warm-up to the end of the run.
const RSS_GROWTH_BOUND: u64 = 16 * 1024 * 1024;

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const HEDGE_AFTER: Duration = Duration::from_millis(100);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const MAX_ATTEMPTS: usize = 3;
/// The retry budget's window: the end of the run waits this long for it to empty.
const BUDGET_WINDOW: Duration = Duration::from_secs(1);
const BUDGET_PER_SECOND: u32 = 1_000_000;
/// How long a slow answer takes: past the hedge's `after`, well within the attempt timeout.
const SLOW: Duration = Duration::from_millis(300);
/// How long the server keeps a stalled body's connection: past the attempt timeout.
const STALL: Duration = Duration::from_secs(5);
/// A success's body, and how much of it a cut-off or stalled body sends.
const BODY_LEN: usize = 256;
const SENT_OF_BROKEN_BODY: usize = 64;
/// The body of PUTs and POSTs.
const REQUEST_BODY_LEN: usize = 1024;

/// What the server does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ok,
    /// 200 after [`SLOW`].
    Slow,
    Unavailable,
    /// 429 with `Retry-After: 0`.
    TooMany,
    /// Resets the connection (RST) without reading the request's body.
    ResetBeforeBody,
    /// Reads the whole request, then resets.
    ResetAfterBody,
    /// Reads the whole request, then closes cleanly (FIN) without answering.
    Close,
    /// A 200 head announcing [`BODY_LEN`] bytes, [`SENT_OF_BROKEN_BODY`] of them, then nothing
    /// for [`STALL`].
    Stall,
    /// The same head and part, then a clean close.
    Cut,
}

/// Per mille; `Ok` takes the rest.
const MIX: [(Action, u64); 8] = [
    (Action::Slow, 30),
    (Action::Unavailable, 40),
    (Action::TooMany, 20),
    (Action::ResetBeforeBody, 12),
    (Action::ResetAfterBody, 12),
    (Action::Close, 12),
    (Action::Stall, 2),
    (Action::Cut, 12),
];
const ACTIONS: [Action; 9] = [
    Action::Ok,
    Action::Slow,
    Action::Unavailable,
    Action::TooMany,
    Action::ResetBeforeBody,
    Action::ResetAfterBody,
    Action::Close,
    Action::Stall,
    Action::Cut,
];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What the server does with the `index`-th request (1 for the first) of call `call`.
fn draw(seed: u64, call: u64, index: u32) -> Action {
    let mut roll = splitmix(seed ^ splitmix(call ^ splitmix(u64::from(index)))) % 1000;
    for (action, share) in MIX {
        if roll < share {
            return action;
        }
        roll -= share;
    }
    Action::Ok
}

/// A success's body: it names the call and the request, so the caller knows which request
/// answered.
fn response_body(call: u64, index: u32) -> Bytes {
    let mut body = format!("c={call};a={index};").into_bytes();
    body.resize(BODY_LEN, b'.');
    Bytes::from(body)
}

fn request_body(call: u64) -> Bytes {
    let mut body = format!("call {call} ").into_bytes();
    body.resize(REQUEST_BODY_LEN, b'#');
    Bytes::from(body)
}

/// How a call is made: by the client or through the middleware, which method, whether the
/// body is read inside the attempts (`send_buffered`) or after the call (head only).
#[derive(Clone, Debug)]
struct Shape {
    middleware: bool,
    method: Method,
    buffered: bool,
    idempotency_key: bool,
}

impl Shape {
    fn of(call: u64) -> Shape {
        let shape = |middleware, method, buffered, idempotency_key| Shape {
            middleware,
            method,
            buffered,
            idempotency_key,
        };
        match call % 20 {
            0..=9 => shape(false, Method::GET, true, false),
            10 | 11 => shape(false, Method::GET, false, false),
            12 => shape(false, Method::PUT, true, false),
            13 => shape(false, Method::POST, true, false),
            14 => shape(false, Method::POST, true, true),
            15..=18 => shape(true, Method::GET, false, false),
            _ => shape(true, Method::PUT, false, false),
        }
    }

    fn label(&self) -> String {
        format!(
            "{} {}{}{}",
            if self.middleware {
                "middleware"
            } else {
                "client"
            },
            self.method,
            if self.buffered { " buffered" } else { "" },
            if self.idempotency_key { " keyed" } else { "" },
        )
    }

    /// The documented rule (`RetryPolicy::may_repeat`): may it be sent again after it may
    /// have been processed.
    fn may_repeat(&self) -> bool {
        let mut headers = http::HeaderMap::new();
        if self.idempotency_key {
            headers.insert("idempotency-key", http::HeaderValue::from_static("k"));
        }
        RetryPolicy::default().may_repeat(&self.method, &headers)
    }
}

/// What an attempt came back with, as its history entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    outcome: AttemptOutcome,
    class: Class,
    delivery: Delivery,
}

impl Seen {
    fn of(attempt: &Attempt) -> Seen {
        Seen {
            outcome: attempt.outcome,
            class: attempt.class,
            delivery: attempt.delivery,
        }
    }
}

/// The outcome an attempt must have when the server did `action`, by the documented rules.
/// `head_only`: the call ends with the head (the body is read after it), so a body that
/// breaks is no failure of the attempt.
fn expected(action: Action, head_only: bool) -> Seen {
    let status = |code: StatusCode| Seen {
        outcome: AttemptOutcome::Status(code),
        class: DefaultClassifier::classify_status(code),
        delivery: Delivery::Delivered,
    };
    // A reset or a close before the answer: reqwest's io error `ConnectionReset` or hyper's
    // incomplete message, both `ConnectionClosed`, maybe processed, transient.
    let closed = Seen {
        outcome: AttemptOutcome::Error(ErrorKind::ConnectionClosed),
        class: Class::Transient,
        delivery: Delivery::MaybeSent,
    };
    // A body that fails inside the attempt: the server answered, so delivered.
    let body = |kind| Seen {
        outcome: AttemptOutcome::Body {
            status: StatusCode::OK,
            kind,
        },
        class: Class::Transient,
        delivery: Delivery::Delivered,
    };
    match action {
        Action::Ok | Action::Slow => status(StatusCode::OK),
        Action::Stall | Action::Cut if head_only => status(StatusCode::OK),
        Action::Unavailable => status(StatusCode::SERVICE_UNAVAILABLE),
        Action::TooMany => status(StatusCode::TOO_MANY_REQUESTS),
        Action::ResetBeforeBody | Action::ResetAfterBody | Action::Close => closed,
        // The attempt timeout bounds the body.
        Action::Stall => body(ErrorKind::AttemptTimeout),
        // An early end of a body with a length: hyper's `UnexpectedEof`.
        Action::Cut => body(ErrorKind::ConnectionClosed),
    }
}

/// What reading the body after a head-only call ends with, when the server did `action`.
fn body_read_after(action: Action) -> Option<ErrorKind> {
    match action {
        Action::Stall => Some(ErrorKind::AttemptTimeout),
        Action::Cut => Some(ErrorKind::ConnectionClosed),
        _ => None,
    }
}

/// The kind of the error a call ends with when its deciding attempt came back with `seen`.
fn kind_of(seen: &Seen) -> Option<ErrorKind> {
    match seen.outcome {
        AttemptOutcome::Status(_) => Some(ErrorKind::Status),
        AttemptOutcome::Error(kind) | AttemptOutcome::Body { kind, .. } => Some(kind),
        _ => None,
    }
}

fn status_of(seen: &Seen) -> Option<StatusCode> {
    match seen.outcome {
        AttemptOutcome::Status(status) | AttemptOutcome::Body { status, .. } => Some(status),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// One call's requests as the server saw them.
enum CallLog {
    /// Not checked yet: what the server did with each request, in arrival order.
    Open(Vec<(Action, Method)>),
    /// Checked, with requests the caller cancelled that may still arrive (`slack`).
    Closed { next: u32, slack: u32 },
}

/// What the server did, and what it could not account for.
struct Log {
    seed: u64,
    calls: Mutex<HashMap<u64, CallLog>>,
    actions: [AtomicU64; ACTIONS.len()],
    /// Requests of a call already checked that the caller had cancelled (expected, rare).
    late: AtomicU64,
    /// Requests of a call already checked that it cannot have sent.
    unexpected: AtomicU64,
    /// Requests whose headers or body were not what their call sends.
    malformed: AtomicU64,
}

impl Log {
    fn new(seed: u64) -> Self {
        Log {
            seed,
            calls: Mutex::new(HashMap::new()),
            actions: Default::default(),
            late: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CallLog>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request of `call` arrived: logged, and what to do with it.
    fn arrive(&self, call: u64, method: Method) -> (u32, Action) {
        let mut calls = self.calls();
        let log = calls.entry(call).or_insert(CallLog::Open(Vec::new()));
        let (index, action) = match log {
            CallLog::Open(requests) => {
                let index = requests.len() as u32 + 1;
                let action = draw(self.seed, call, index);
                requests.push((action, method));
                (index, action)
            }
            CallLog::Closed { next, slack } => {
                let index = *next;
                *next += 1;
                if *slack > 0 {
                    *slack -= 1;
                    self.late.fetch_add(1, Relaxed);
                } else {
                    self.unexpected.fetch_add(1, Relaxed);
                }
                (index, draw(self.seed, call, index))
            }
        };
        let position = ACTIONS.iter().position(|a| *a == action).unwrap_or(0);
        self.actions[position].fetch_add(1, Relaxed);
        (index, action)
    }
}

/// What the connection's task does with the raw socket once hyper has let go of it.
enum Takeover {
    Reset,
    Close,
    /// Writes these bytes, then closes after holding the connection this long.
    Raw(Bytes, Duration),
}

fn start_server(log: Arc<Log>) -> SocketAddr {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    // A runtime of its own: the server's timing does not wait on the client's tasks.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, log.clone()));
                }
            }
        });
    });
    addr
}

async fn serve(stream: tokio::net::TcpStream, log: Arc<Log>) {
    // A second handle on the socket, to reset, close or write raw bytes once hyper is gone.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(raw) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
        return;
    };
    let (takeover_tx, mut takeover_rx) = mpsc::unbounded_channel();
    let service = service_fn(move |request| handle(request, log.clone(), takeover_tx.clone()));
    let mut connection = Box::pin(
        http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(stream), service),
    );
    let takeover = tokio::select! {
        _ = &mut connection => None,
        Some(takeover) = takeover_rx.recv() => Some(takeover),
    };
    drop(connection);
    let Some(takeover) = takeover else {
        return;
    };
    match takeover {
        Takeover::Reset => {
            // Closing with a zero linger sends RST instead of FIN.
            let _ = socket2::SockRef::from(&raw).set_linger(Some(Duration::ZERO));
        }
        Takeover::Close => {
            let _ = raw.shutdown(Shutdown::Both);
        }
        Takeover::Raw(bytes, hold) => {
            let _ = raw.set_nonblocking(false);
            let _ = (&raw).write_all(&bytes);
            if !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
            let _ = raw.shutdown(Shutdown::Both);
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    log: Arc<Log>,
    takeover: mpsc::UnboundedSender<Takeover>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let call = request
        .headers()
        .get("x-call")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let Some(call) = call else {
        log.malformed.fetch_add(1, Relaxed);
        let mut response = Response::new(Full::new(Bytes::from_static(b"no x-call")));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    let (index, action) = log.arrive(call, request.method().clone());
    let take_over = |what| {
        let _ = takeover.send(what);
    };
    if action == Action::ResetBeforeBody {
        take_over(Takeover::Reset);
        return std::future::pending().await;
    }
    let method = request.method().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let sent = if method == Method::GET {
        Bytes::new()
    } else {
        request_body(call)
    };
    if body != sent {
        log.malformed.fetch_add(1, Relaxed);
    }
    let answer = |status: StatusCode, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
    };
    let broken_body = |hold| {
        let mut raw = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY_LEN}\r\n\r\n").into_bytes();
        raw.extend_from_slice(&response_body(call, index)[..SENT_OF_BROKEN_BODY]);
        Takeover::Raw(Bytes::from(raw), hold)
    };
    match action {
        Action::Ok => return Ok(answer(StatusCode::OK, response_body(call, index))),
        Action::Slow => {
            tokio::time::sleep(SLOW).await;
            return Ok(answer(StatusCode::OK, response_body(call, index)));
        }
        Action::Unavailable => return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, Bytes::new())),
        Action::TooMany => {
            let mut response = answer(StatusCode::TOO_MANY_REQUESTS, Bytes::new());
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("0"),
            );
            return Ok(response);
        }
        Action::ResetBeforeBody | Action::ResetAfterBody => take_over(Takeover::Reset),
        Action::Close => take_over(Takeover::Close),
        Action::Stall => take_over(broken_body(STALL)),
        Action::Cut => take_over(broken_body(Duration::ZERO)),
    }
    std::future::pending().await
}

// ---------------------------------------------------------------------------------------------
// The calls
// ---------------------------------------------------------------------------------------------

/// How a call ended, as its caller saw it.
#[derive(Debug)]
struct Observed {
    /// Every attempt, when there was more than one (a first-try success keeps none).
    history: Vec<Attempt>,
    result: Result<Won, Failed>,
}

#[derive(Debug)]
struct Won {
    status: StatusCode,
    /// The body, or what arrived of it and why the rest did not.
    body: Result<Bytes, (Bytes, ErrorKind)>,
}

#[derive(Debug)]
struct Failed {
    kind: ErrorKind,
    class: Class,
    delivery: Delivery,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    history: Vec<Attempt>,
    text: String,
}

impl Failed {
    fn of(error: &Error) -> Failed {
        Failed {
            kind: error.kind(),
            class: error.class(),
            delivery: error.delivery(),
            status: error.status(),
            retry_after: error.retry_after(),
            history: error.attempts().to_vec(),
            text: error.to_string(),
        }
    }
}

struct Soak {
    client: Client,
    middleware: reqwest_middleware::ClientWithMiddleware,
    url: String,
    log: Arc<Log>,
    /// Problems found, the first few in full.
    problems: Mutex<Vec<String>>,
    problem_count: AtomicU64,
    checked: AtomicU64,
    raced: AtomicU64,
    hedges: AtomicU64,
    cancelled: AtomicU64,
    outcomes: Mutex<HashMap<String, u64>>,
}

impl Soak {
    fn problem(&self, text: String) {
        self.problem_count.fetch_add(1, Relaxed);
        let mut problems = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        if problems.len() < 20 {
            problems.push(text);
        }
    }

    async fn call(&self, call: u64) -> Observed {
        let shape = Shape::of(call);
        let result = if shape.middleware {
            let mut request = self
                .middleware
                .request(shape.method.clone(), &self.url)
                .header("x-call", call);
            if shape.method != Method::GET {
                request = request.body(request_body(call));
            }
            request
                .send()
                .await
                .map_err(|error| match ResilientMiddleware::error(&error) {
                    Some(typed) => Failed::of(typed),
                    None => Failed {
                        kind: ErrorKind::Transport,
                        class: Class::Permanent,
                        delivery: Delivery::NotSent,
                        status: None,
                        retry_after: None,
                        history: Vec::new(),
                        text: format!("not the middleware's typed error: {error}"),
                    },
                })
        } else {
            let mut request = self
                .client
                .request(shape.method.clone(), &self.url)
                .header("x-call", call);
            if shape.method != Method::GET {
                request = request.body(request_body(call));
            }
            if shape.idempotency_key {
                request = request.header("idempotency-key", format!("key-{call}"));
            }
            let pending = if shape.buffered {
                request.send_buffered()
            } else {
                request.send()
            };
            pending.await.map_err(|error| Failed::of(&error))
        };
        match result {
            Ok(mut response) => {
                let history = response
                    .extensions()
                    .get::<RetryHistory>()
                    .map(|h| h.0.clone())
                    .unwrap_or_default();
                let status = response.status();
                let mut body = BytesMut::new();
                let body = loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) => break Ok(body.freeze()),
                        Err(error) => break Err((body.freeze(), Error::from(error).kind())),
                    }
                };
                Observed {
                    history,
                    result: Ok(Won { status, body }),
                }
            }
            Err(mut failed) => Observed {
                history: std::mem::take(&mut failed.history),
                result: Err(failed),
            },
        }
    }

    /// Makes `call`, then checks it against the server's log.
    async fn run(&self, call: u64) {
        let shape = Shape::of(call);
        let observed = self.call(call).await;
        let mut calls = self.log.calls();
        let requests = match calls.remove(&call) {
            Some(CallLog::Open(requests)) => requests,
            Some(CallLog::Closed { .. }) => {
                drop(calls);
                self.problem(format!("call {call}: checked twice"));
                return;
            }
            None => Vec::new(),
        };
        let checked = check(call, &shape, &requests, &observed);
        match checked {
            Ok(verdict) => {
                if verdict.slack > 0 {
                    calls.insert(
                        call,
                        CallLog::Closed {
                            next: requests.len() as u32 + 1,
                            slack: verdict.slack,
                        },
                    );
                }
                drop(calls);
                self.checked.fetch_add(1, Relaxed);
                if verdict.raced {
                    self.raced.fetch_add(1, Relaxed);
                }
                let hedges = observed.history.iter().filter(|a| a.hedge).count();
                let cancelled = observed
                    .history
                    .iter()
                    .filter(|a| a.outcome == AttemptOutcome::Cancelled)
                    .count();
                self.hedges.fetch_add(hedges as u64, Relaxed);
                self.cancelled.fetch_add(cancelled as u64, Relaxed);
                let label = match &observed.result {
                    Ok(won) => match &won.body {
                        Ok(_) => "ok".to_owned(),
                        Err((_, kind)) => format!("ok, then body {}", kind.as_str()),
                    },
                    Err(failed) => match failed.status {
                        Some(status) if failed.kind == ErrorKind::Status => {
                            format!("error {}", status.as_u16())
                        }
                        _ => format!("error {}", failed.kind.as_str()),
                    },
                };
                let attempts = observed.history.len().max(1);
                let label = format!("{label} after {attempts}");
                *self
                    .outcomes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(label)
                    .or_default() += 1;
            }
            Err(why) => {
                drop(calls);
                let actions: Vec<_> = requests.iter().map(|(a, _)| *a).collect();
                self.problem(format!(
                    "call {call} ({}): {why}\n  server: {actions:?}\n  caller: {:?}",
                    shape.label(),
                    observed
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------

struct Verdict {
    /// A hedge raced: checked against the timing-free rules only.
    raced: bool,
    /// Cancelled attempts the server has not seen yet (it may still).
    slack: u32,
}

/// Which request of the call answered with `won`'s body, and that the body is what that
/// request's action sends.
fn winner(
    call: u64,
    shape: &Shape,
    won: &Won,
    requests: &[(Action, Method)],
) -> Result<u32, String> {
    if won.status != StatusCode::OK {
        return Err(format!("success with status {}", won.status));
    }
    let got = match &won.body {
        Ok(body) => body,
        Err((part, _)) => part,
    };
    let text = std::str::from_utf8(got).map_err(|_| "a body that is not text".to_owned())?;
    let prefix = format!("c={call};a=");
    let rest = text
        .strip_prefix(&prefix)
        .ok_or_else(|| format!("a body of another call: {:?}", &text[..text.len().min(40)]))?;
    let index: u32 = rest
        .split(';')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "a body without its request number".to_owned())?;
    let action = requests
        .get(index as usize - 1)
        .map(|(a, _)| *a)
        .ok_or_else(|| format!("the body of request {index}, which the server never logged"))?;
    let full = response_body(call, index);
    match (&won.body, action) {
        (Ok(body), Action::Ok | Action::Slow) if *body == full => Ok(index),
        (Err((part, kind)), Action::Stall | Action::Cut)
            if !shape.buffered
                && Some(*kind) == body_read_after(action)
                && full.starts_with(part) =>
        {
            Ok(index)
        }
        _ => Err(format!(
            "the body read {:?} does not fit request {index}'s action {action:?}",
            won.body
                .as_ref()
                .map(Bytes::len)
                .map_err(|(p, k)| (p.len(), *k))
        )),
    }
}

/// The most a full-jitter delay before retry `n` (1 for the first) can be.
fn backoff_bound(n: usize) -> Duration {
    BACKOFF_BASE * (1 << (n - 1))
}

/// `failed` is the error a call must end with when its deciding attempt came back `seen`.
fn check_error(failed: &Failed, seen: &Seen) -> Result<(), String> {
    let want = (kind_of(seen), seen.class, seen.delivery, status_of(seen));
    let got = (
        Some(failed.kind),
        failed.class,
        failed.delivery,
        failed.status,
    );
    if want != got {
        return Err(format!(
            "ended with {got:?}, its last attempt says {want:?}: {}",
            failed.text
        ));
    }
    let retry_after = (seen.outcome == AttemptOutcome::Status(StatusCode::TOO_MANY_REQUESTS))
        .then_some(Duration::ZERO);
    if failed.retry_after != retry_after {
        return Err(format!("retry_after {:?}", failed.retry_after));
    }
    Ok(())
}

fn check(
    call: u64,
    shape: &Shape,
    requests: &[(Action, Method)],
    observed: &Observed,
) -> Result<Verdict, String> {
    if let Some((_, method)) = requests.iter().find(|(_, m)| *m != shape.method) {
        return Err(format!("the server saw a {method}"));
    }
    let history = &observed.history;
    let mut numbers: Vec<u32> = history.iter().map(|a| a.number).collect();
    numbers.sort_unstable();
    if numbers
        .iter()
        .enumerate()
        .any(|(i, n)| *n as usize != i + 1)
    {
        return Err(format!("attempt numbers {numbers:?}"));
    }
    let hedges = history.iter().filter(|a| a.hedge).count();
    let tries = history.len() - hedges;
    if tries > MAX_ATTEMPTS || hedges > 1 {
        return Err(format!("{tries} attempts and {hedges} hedges"));
    }
    let may_hedge = shape.may_repeat();
    if hedges > 0 && !may_hedge {
        return Err("a hedge of a request that must not be sent twice".to_owned());
    }
    let head_only = !shape.buffered;
    let winner = match &observed.result {
        Ok(won) => Some(winner(call, shape, won, requests)?),
        Err(_) => None,
    };
    let raced = hedges > 0
        || history
            .iter()
            .any(|a| a.outcome == AttemptOutcome::Cancelled);
    if !raced {
        sequential(shape, requests, observed, winner)?;
        return Ok(Verdict {
            raced: false,
            slack: 0,
        });
    }
    // A race: who answered first is timing; what each attempt met is not.
    let mut unmatched: Vec<(usize, Seen)> = requests
        .iter()
        .enumerate()
        .map(|(i, (action, _))| (i + 1, expected(*action, head_only)))
        .collect();
    let last = history.last().ok_or("a race with no history")?;
    if let Some(index) = winner {
        unmatched.retain(|(i, _)| *i != index as usize);
        let successes = history.iter().filter(|a| a.class == Class::Success).count();
        if successes != 1 || last.class != Class::Success {
            return Err("a success whose history does not end with its one success".into());
        }
        if Seen::of(last) != expected(Action::Ok, head_only) {
            return Err(format!("the success recorded as {:?}", Seen::of(last)));
        }
    }
    for attempt in history {
        if attempt.outcome == AttemptOutcome::Cancelled || attempt.class == Class::Success {
            continue;
        }
        let seen = Seen::of(attempt);
        let position = unmatched
            .iter()
            .position(|(_, want)| *want == seen)
            .ok_or_else(|| {
                format!(
                    "attempt {} met {seen:?}, no request the server logged",
                    attempt.number
                )
            })?;
        unmatched.swap_remove(position);
    }
    let cancelled = history
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Cancelled)
        .count();
    if unmatched.len() > cancelled {
        return Err(format!(
            "the server logged {} requests the caller neither saw nor cancelled",
            unmatched.len() - cancelled
        ));
    }
    if let Err(failed) = &observed.result {
        if last.outcome == AttemptOutcome::Cancelled || last.class == Class::Success {
            return Err("an error whose history ends with no failure".into());
        }
        check_error(failed, &Seen::of(last))?;
        if tries != MAX_ATTEMPTS {
            return Err(format!("gave up after {tries} attempts"));
        }
    }
    for (position, attempt) in history.iter().enumerate() {
        if attempt.hedge {
            // Sent when the newest attempt had not answered for `after`.
            let newest = history
                .iter()
                .find(|a| a.number == attempt.number - 1)
                .ok_or("a hedge of nothing")?;
            if attempt.started_after < newest.started_after + HEDGE_AFTER
                || !attempt.delay_before.is_zero()
            {
                return Err(format!("hedge {} sent too early", attempt.number));
            }
            continue;
        }
        if attempt.number == 1 {
            continue;
        }
        // A retry starts after every earlier attempt ended, so all of them are recorded
        // before it; the one recorded last decided.
        let recorded_before: Vec<&Attempt> = history[..position]
            .iter()
            .filter(|a| a.number < attempt.number)
            .collect();
        if recorded_before.len() + 1 != attempt.number as usize {
            return Err(format!(
                "retry {} overlapped an earlier attempt",
                attempt.number
            ));
        }
        let decided = recorded_before.last().ok_or("a retry before any attempt")?;
        let before = recorded_before.iter().filter(|a| !a.hedge).count();
        check_delay(attempt, &Seen::of(decided), before)?;
    }
    Ok(Verdict {
        raced: true,
        slack: (cancelled - unmatched.len()) as u32,
    })
}

/// `attempt`, a retry after `tries` attempts, waited as the decision on `decided` says.
fn check_delay(attempt: &Attempt, decided: &Seen, tries: usize) -> Result<(), String> {
    if decided.class != Class::Transient {
        return Err(format!("retry {} after {decided:?}", attempt.number));
    }
    let ok = if decided.outcome == AttemptOutcome::Status(StatusCode::TOO_MANY_REQUESTS) {
        attempt.delay_before.is_zero()
    } else {
        attempt.delay_before < backoff_bound(tries)
    };
    if !ok {
        return Err(format!(
            "retry {} waited {:?} after {decided:?}",
            attempt.number, attempt.delay_before
        ));
    }
    Ok(())
}

/// A call whose attempts ran one after another: everything follows from the server's log.
fn sequential(
    shape: &Shape,
    requests: &[(Action, Method)],
    observed: &Observed,
    winner: Option<u32>,
) -> Result<(), String> {
    let head_only = !shape.buffered;
    let mut want = Vec::new();
    let mut success = false;
    for (action, _) in requests {
        let seen = expected(*action, head_only);
        want.push(seen);
        if seen.class == Class::Success {
            success = true;
            break;
        }
        // `Decision::decide`: transient (all of ours), attempts left, and a request that may
        // be sent again after it may have been processed (none of ours was never sent).
        if want.len() == MAX_ATTEMPTS || !shape.may_repeat() {
            break;
        }
    }
    if want.len() != requests.len() {
        return Err(format!(
            "the rules call for {} requests, the server saw {}",
            want.len(),
            requests.len()
        ));
    }
    if !success && want.len() < MAX_ATTEMPTS && shape.may_repeat() {
        return Err(format!(
            "the server saw {} requests, the rules call for more",
            requests.len()
        ));
    }
    let history = &observed.history;
    if !(history.is_empty() && success && want.len() == 1) {
        let got: Vec<Seen> = history.iter().map(Seen::of).collect();
        if got != want {
            return Err(format!("history {got:?}, the server's log says {want:?}"));
        }
        for (i, attempt) in history.iter().enumerate() {
            if attempt.number as usize != i + 1 {
                return Err(format!(
                    "attempt {} recorded in place {}",
                    attempt.number,
                    i + 1
                ));
            }
            if i > 0 {
                check_delay(attempt, &want[i - 1], i)?;
            }
        }
    }
    match (&observed.result, success) {
        (Ok(_), true) if winner == Some(want.len() as u32) => Ok(()),
        (Ok(_), _) => Err(format!("succeeded with request {winner:?}")),
        (Err(failed), false) => check_error(failed, want.last().ok_or("no request")?),
        (Err(failed), true) => Err(format!("failed, the server answered: {}", failed.text)),
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// `(VmRSS, VmHWM)` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let read = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    (read("VmRSS:"), read("VmHWM:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// The soak's policy, for both ways of calling.
fn builder(transitions: Arc<AtomicUsize>) -> ClientBuilder {
    let breaker = BreakerConfig::builder()
        .on_state_change(move |_| {
            transitions.fetch_add(1, Relaxed);
        })
        .build()
        .unwrap();
    Client::builder()
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .circuit_breaker(breaker)
        .default_policy(
            EndpointPolicy::new()
                .hedge(HedgeConfig::new(HEDGE_AFTER, 1))
                .retry_budget(BudgetConfig::new(1.0, BUDGET_PER_SECOND, BUDGET_WINDOW))
                .rate_limit(RateLimitConfig::new(1_000_000, Duration::from_secs(1)).burst(100_000))
                .bulkhead(BulkheadConfig::new(IN_FLIGHT as u32, Duration::ZERO)),
        )
}

/// Calls `range`, [`IN_FLIGHT`] at a time.
async fn drive(soak: &Arc<Soak>, range: std::ops::Range<u64>) {
    let next = Arc::new(AtomicU64::new(range.start));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (soak, next, end) = (soak.clone(), next.clone(), range.end);
        tasks.spawn(async move {
            loop {
                let call = next.fetch_add(1, Relaxed);
                if call >= end {
                    break;
                }
                soak.run(call).await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a driver task panicked");
    }
}

#[test]
#[ignore = "a soak of minutes: run in release, see the module docs"]
fn soak_under_random_faults() {
    let calls = env_u64("SOAK_CALLS", DEFAULT_CALLS);
    let seed = env_u64("SOAK_SEED", DEFAULT_SEED);
    assert!(
        calls > WARM_UP_CALLS,
        "SOAK_CALLS must be above {WARM_UP_CALLS}"
    );
    // A panic anywhere (a task of hyper's, the server's) is counted, not lost in a task.
    let panics = Arc::new(AtomicUsize::new(0));
    let previous = std::panic::take_hook();
    let counted = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Relaxed);
        previous(info);
    }));

    let log = Arc::new(Log::new(seed));
    let addr = start_server(log.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let transitions = Arc::new(AtomicUsize::new(0));
    let (client, middleware) = {
        let _entered = runtime.enter();
        let client = builder(transitions.clone()).build().unwrap();
        let adapter = ResilientMiddleware::new(builder(transitions.clone())).unwrap();
        let http = reqwest::Client::builder()
            .retry(reqwest::retry::never())
            .build()
            .unwrap();
        let middleware = reqwest_middleware::ClientBuilder::new(http)
            .with(adapter)
            .build();
        (client, middleware)
    };
    let soak = Arc::new(Soak {
        client,
        middleware,
        url: format!("http://{addr}/soak"),
        log: log.clone(),
        problems: Mutex::new(Vec::new()),
        problem_count: AtomicU64::new(0),
        checked: AtomicU64::new(0),
        raced: AtomicU64::new(0),
        hedges: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        outcomes: Mutex::new(HashMap::new()),
    });

    let started = WallClock::now();
    runtime.block_on(drive(&soak, 0..WARM_UP_CALLS));
    let (warm_rss, _) = memory();
    let measured = WallClock::now();
    runtime.block_on(drive(&soak, WARM_UP_CALLS..calls));
    let elapsed = measured.elapsed();
    let total = started.elapsed();
    let (end_rss, peak_rss) = memory();

    // Quiet: the budget's window and the rate limit's burst refill; then nothing may be
    // left taken. Late requests of cancelled hedges arrive meanwhile.
    runtime
        .block_on(async { tokio::time::sleep(BUDGET_WINDOW + Duration::from_millis(500)).await });
    let key = format!("http://{addr}");
    let breakers = soak.client.breakers().expect("the client has breakers");
    let breaker = breakers.get(&key).expect("the endpoint's breaker");
    let guards = {
        let _entered = runtime.enter();
        soak.client
            .overload("default", &key)
            .expect("the endpoint's guards")
    };
    let leftovers: Vec<u64> = {
        let calls = log.calls();
        calls
            .iter()
            .filter(|(_, log)| matches!(log, CallLog::Open(_)))
            .map(|(call, _)| *call)
            .take(10)
            .collect()
    };
    let unseen_cancelled: u64 = log
        .calls()
        .values()
        .map(|log| match log {
            CallLog::Closed { slack, .. } => u64::from(*slack),
            CallLog::Open(_) => 0,
        })
        .sum();

    let checked = soak.checked.load(Relaxed);
    let per_second = (calls - WARM_UP_CALLS) as f64 / elapsed.as_secs_f64();
    let actions: Vec<String> = ACTIONS
        .iter()
        .zip(&log.actions)
        .map(|(action, count)| format!("{action:?} {}", count.load(Relaxed)))
        .collect();
    let mut outcomes: Vec<(String, u64)> = soak
        .outcomes
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    outcomes.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    println!(
        "soak: {calls} calls (seed {seed:#x}) in {:.1} s, {per_second:.0} calls/s after warm-up, \
         {IN_FLIGHT} in flight",
        total.as_secs_f64()
    );
    println!("soak: server actions: {}", actions.join(", "));
    println!(
        "soak: {} calls raced a hedge ({} hedges, {} attempts cancelled; {} cancelled requests \
         arrived after their call, {} never did)",
        soak.raced.load(Relaxed),
        soak.hedges.load(Relaxed),
        soak.cancelled.load(Relaxed),
        log.late.load(Relaxed),
        unseen_cancelled,
    );
    println!("soak: outcomes: {outcomes:?}");
    println!(
        "soak: RSS after warm-up {:.1} MiB, at the end {:.1} MiB (bound +{:.0} MiB), peak {:.1} \
         MiB",
        mib(warm_rss),
        mib(end_rss),
        mib(RSS_GROWTH_BOUND),
        mib(peak_rss)
    );
    println!(
        "soak: client guards at the end: {guards:?}, breaker {:?}",
        breaker.state()
    );

    let problems = soak.problems.lock().unwrap();
    assert!(
        problems.is_empty(),
        "{} calls did not match the server's log; the first:\n{}",
        soak.problem_count.load(Relaxed),
        problems.join("\n")
    );
    assert_eq!(checked, calls, "every call checked");
    assert_eq!(panics.load(Relaxed), 0, "panics");
    assert_eq!(
        log.unexpected.load(Relaxed),
        0,
        "requests of calls already over"
    );
    assert_eq!(
        log.malformed.load(Relaxed),
        0,
        "requests not as their call sent them"
    );
    assert!(
        leftovers.is_empty(),
        "requests of calls never checked: {leftovers:?}"
    );
    assert_eq!(transitions.load(Relaxed), 0, "a breaker changed state");
    assert_eq!(breakers.len(), 1);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(guards.bulkhead_in_flight(), Some(0));
    assert_eq!(guards.bulkhead_waiting(), Some(0));
    assert_eq!(guards.held_for(), None);
    {
        let _entered = runtime.enter();
        let full = u64::from(BUDGET_PER_SECOND) * BUDGET_WINDOW.as_secs();
        assert_eq!(guards.budget_available(), Some(full), "retry budget");
        assert_eq!(guards.rate_limit_idle(), Some(true), "rate limit");
    }
    assert!(
        end_rss <= warm_rss + RSS_GROWTH_BOUND,
        "RSS grew from {:.1} MiB after warm-up to {:.1} MiB",
        mib(warm_rss),
        mib(end_rss)
    );
}
