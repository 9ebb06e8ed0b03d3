//! The driver ([`Call`]) on its own: every scenario runs through a scripted [`Sender`] on
//! paused time, with no server, so that each runs in microseconds and asserts exactly what
//! went out, when, and what the call made of the answers.
//!
//! The script is a queue of replies, taken in the order the driver sends its requests
//! (hedges included). Each reply comes after a virtual delay, unless the request's timeout
//! (the one the driver sets, as reqwest would enforce it) ends the attempt first; a hang waits
//! for that timeout or forever. The sender logs every request it was given and when its
//! attempt ended, or was dropped unanswered (cancelled).
//!
//! The rules are set up as users set them: a [`ClientBuilder`], compiled with
//! `build_policies`, so that the scenarios pin the same rules the integration tests reach
//! through a loopback server.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use reqwest::ResponseBuilderExt;
use tokio::time::{Instant, sleep};

use super::{Call, Failed, Sender, Sent, Which};
use crate::breaker::{BreakerConfig, Window};
use crate::classify::{Class, Delivery};
use crate::error::{Attempt, AttemptOutcome, BoxError, Error, ErrorKind};
use crate::hedge::HedgeConfig;
use crate::hook::{AttemptInfo, hook_fn};
use crate::overload::{BulkheadConfig, RateLimitConfig};
use crate::policy::{EndpointPolicy, Policies};
use crate::read::Reader;
use crate::retry::{BudgetConfig, Jitter, RetryHistory, RetryPolicy};
use crate::{Client, ClientBuilder};

/// The script's shared state, even if a test already panicked while holding it (the lock
/// is then poisoned, and its data is still what the failing test wants to report).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------------------
// The scripted sender.

/// What a scripted attempt answers.
enum Answer {
    /// A response of this status, with these headers.
    Status(u16, Vec<(&'static str, String)>),
    /// A failure already typed (the error is made when the answer is given).
    Fail(Box<dyn FnOnce() -> Error + Send>),
    /// No answer: the request's timeout ends the attempt, if it has one.
    Hang,
}

/// One scripted reply: `answer`, `after` the request was sent.
struct Reply {
    after: Duration,
    answer: Answer,
}

/// A response of `code` at once.
fn status(code: u16) -> Reply {
    Reply {
        after: Duration::ZERO,
        answer: Answer::Status(code, Vec::new()),
    }
}

/// A typed failure at once.
fn fail(kind: ErrorKind, class: Class, delivery: Delivery) -> Reply {
    Reply {
        after: Duration::ZERO,
        answer: Answer::Fail(Box::new(move || Error::new(kind, class, delivery))),
    }
}

/// A stream the HTTP/2 server refused (`REFUSED_STREAM`), as reqwest's error reads once
/// classified: connection closed, never sent, with h2's error in its source chain.
#[cfg(feature = "http2")]
fn refused_stream() -> Reply {
    Reply {
        after: Duration::ZERO,
        answer: Answer::Fail(Box::new(|| {
            Error::new(
                ErrorKind::ConnectionClosed,
                Class::Transient,
                Delivery::NotSent,
            )
            .with_source(h2::Error::from(h2::Reason::REFUSED_STREAM))
        })),
    }
}

/// No answer at all.
fn hang() -> Reply {
    Reply {
        after: Duration::ZERO,
        answer: Answer::Hang,
    }
}

impl Reply {
    /// The answer comes `after` the send.
    fn after(mut self, after: Duration) -> Self {
        self.after = after;
        self
    }

    /// The response carries this header.
    fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Answer::Status(_, headers) = &mut self.answer {
            headers.push((name, value.to_owned()));
        }
        self
    }
}

/// A request the sender was given.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    /// The body, if it is in memory.
    body: Option<Vec<u8>>,
    /// The request's own timeout (set by the driver).
    timeout: Option<Duration>,
    /// When it was sent, from the script's start.
    at: Duration,
    /// When its attempt ended: answered, or dropped.
    ended: Option<Duration>,
    /// Whether it was dropped before it answered (a hedge race's loser, a dropped call).
    cancelled: bool,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    replies: VecDeque<Reply>,
    seen: Vec<Seen>,
    start: Instant,
}

/// The script, shared by its senders (one per call) and the test.
#[derive(Clone)]
struct Script(Arc<Mutex<Shared>>);

impl Script {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Script(Arc::new(Mutex::new(Shared {
            replies: replies.into_iter().collect(),
            seen: Vec::new(),
            start: Instant::now(),
        })))
    }

    fn seen(&self) -> Vec<Seen> {
        lock(&self.0).seen.clone()
    }

    /// When each request was sent.
    fn sent_at(&self) -> Vec<Duration> {
        self.seen().iter().map(|s| s.at).collect()
    }

    /// Replies not asked for yet.
    fn left(&self) -> usize {
        lock(&self.0).replies.len()
    }
}

/// Notes in the log when an attempt's future ends, answered or not.
struct Ending {
    script: Script,
    index: usize,
    answered: bool,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let mut shared = lock(&self.script.0);
        let now = shared.start.elapsed();
        let seen = &mut shared.seen[self.index];
        seen.ended = Some(now);
        seen.cancelled = !self.answered;
    }
}

type Answering = Pin<Box<dyn Future<Output = Sent> + Send>>;

impl Sender for Script {
    type Future = Answering;

    // Each attempt ends by its request's timeout, as reqwest's does (see `send`).
    fn ends_at_limit(&self) -> bool {
        true
    }

    fn send(&mut self, request: reqwest::Request) -> Answering {
        let timeout = request.timeout().copied();
        let (method, url) = (request.method().clone(), request.url().clone());
        let (reply, index) = {
            let mut shared = lock(&self.0);
            let at = shared.start.elapsed();
            shared.seen.push(Seen {
                method: request.method().clone(),
                path: url.path().to_owned(),
                headers: request.headers().clone(),
                body: request
                    .body()
                    .and_then(|b| b.as_bytes())
                    .map(<[u8]>::to_vec),
                timeout,
                at,
                ended: None,
                cancelled: false,
            });
            let reply = shared.replies.pop_front();
            (reply, shared.seen.len() - 1)
        };
        // A test failing on purpose (test code only, `#[cfg(test)]`): the driver sent a request
        // its scenario did not script, which is the defect the scenario exists to catch.
        let reply = reply.unwrap_or_else(|| panic!("request {} was not scripted", index + 1));
        let ending = Ending {
            script: self.clone(),
            index,
            answered: false,
        };
        Box::pin(async move {
            // The whole guard, moved in: it notes when this future is dropped.
            let mut ending = ending;
            let answers_in = match reply.answer {
                Answer::Hang => None,
                _ => Some(reply.after),
            };
            // The request's timeout, as reqwest enforces it: an attempt timeout.
            let times_out = match (answers_in, timeout) {
                (Some(after), Some(limit)) => (limit <= after).then_some(limit),
                (None, limit) => limit,
                (Some(_), None) => None,
            };
            let sent = match (times_out, answers_in) {
                (Some(limit), _) => {
                    sleep(limit).await;
                    let timeout = Error::new(
                        ErrorKind::AttemptTimeout,
                        Class::Transient,
                        Delivery::MaybeSent,
                    );
                    Err(Failed::Sorted(timeout.with_request(&method, &url)))
                }
                (None, Some(after)) => {
                    sleep(after).await;
                    answer(reply.answer, &method, url)
                }
                (None, None) => std::future::pending().await,
            };
            ending.answered = true;
            sent
        })
    }
}

fn answer(answer: Answer, method: &Method, url: url::Url) -> Sent {
    match answer {
        Answer::Status(code, headers) => {
            let mut response = http::Response::builder().status(code).url(url);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            // Test code only: the statuses and headers come from the scenarios' own literals,
            // all valid, so the builder cannot fail.
            Ok(reqwest::Response::from(response.body("").unwrap()))
        }
        // reqwest's errors name the request.
        Answer::Fail(make) => Err(Failed::Sorted(make().with_request(method, &url))),
        Answer::Hang => unreachable!("a hang never answers"),
    }
}

// ---------------------------------------------------------------------------------------
// Calls.

/// The policies `builder` makes, as the client compiles them. Hooks and refreshers need the
/// client's reqwest client (it never sends anything here): one for the whole module, made
/// only for them, since making it takes 150 ms (TLS set up, in a debug build).
fn policies(builder: ClientBuilder) -> Arc<Policies> {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let policies = builder
        .build_policies(None, None)
        .or_else(|_| builder.build_policies(Some(HTTP.get_or_init(reqwest::Client::new)), None));
    // Test code only: every scenario's builder is valid; a typo there should fail the test.
    Arc::new(policies.unwrap())
}

/// 3 attempts, 100 ms then 200 ms between them, no jitter.
fn retry() -> crate::retry::RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff_base(ms(100))
        .backoff_multiplier(2.0)
        .jitter(Jitter::None)
}

/// A client with [`retry`], no breaker, and the library's other defaults.
fn builder() -> ClientBuilder {
    Client::builder()
        // Test code only: the retry policy below is a fixed, valid one.
        .retry(retry().build().unwrap())
        .no_circuit_breaker()
}

fn request(method: Method, path: &str) -> reqwest::Request {
    let url = format!("http://api.test{path}").parse().unwrap();
    reqwest::Request::new(method, url)
}

/// A call of `request` through the default policy, sent by `script`.
fn call_with(
    script: &Script,
    policies: &Arc<Policies>,
    request: reqwest::Request,
) -> Box<Call<reqwest::Response, Script>> {
    Call::new(
        script.clone(),
        policies.clone(),
        Which::Shared(None),
        request,
        Reader::response(),
        false,
    )
}

fn get(script: &Script, policies: &Arc<Policies>) -> Box<Call<reqwest::Response, Script>> {
    call_with(script, policies, request(Method::GET, "/a"))
}

type Output = Result<reqwest::Response, Error>;

thread_local! {
    /// How many times a call on this thread set its hedge timer (see `HedgeTimer::due`):
    /// what paused time cannot show when the hedge and the attempt's timeout are due at
    /// once. Each test runs on a thread of its own (a current-thread runtime).
    pub(super) static HEDGE_TIMERS_SET: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `call` to its end; with the virtual time it took.
async fn timed(call: Box<Call<reqwest::Response, Script>>) -> (Output, Duration) {
    let start = Instant::now();
    let output = call.await;
    (output, start.elapsed())
}

/// Polls `call` for `long`, then drops it (it must not have ended).
async fn drop_after(call: Box<Call<reqwest::Response, Script>>, long: Duration) {
    let ended = tokio::time::timeout(long, call).await;
    assert!(ended.is_err(), "the call ended before it was dropped");
}

/// The attempts of a success that needed more than one (none for a first-try success).
fn history(response: &reqwest::Response) -> Vec<Attempt> {
    response
        .extensions()
        .get::<RetryHistory>()
        .map(|h| h.0.clone())
        .unwrap_or_default()
}

/// `(number, outcome, hedge)` of each attempt.
fn outcomes(attempts: &[Attempt]) -> Vec<(u32, AttemptOutcome, bool)> {
    attempts
        .iter()
        .map(|a| (a.number, a.outcome, a.hedge))
        .collect()
}

fn st(code: u16) -> AttemptOutcome {
    AttemptOutcome::Status(StatusCode::from_u16(code).unwrap())
}

fn err(kind: ErrorKind) -> AttemptOutcome {
    AttemptOutcome::Error(kind)
}

#[track_caller]
fn assert_error(output: &Output, kind: ErrorKind, class: Class, delivery: Delivery) -> &Error {
    let error = output.as_ref().expect_err("the call succeeded");
    assert_eq!(
        (error.kind(), error.class(), error.delivery()),
        (kind, class, delivery),
        "{error}"
    );
    error
}

#[track_caller]
fn assert_ok(output: &Output, code: u16) -> &reqwest::Response {
    match output {
        Ok(response) => {
            assert_eq!(response.status().as_u16(), code);
            response
        }
        Err(error) => panic!("the call failed: {error}"),
    }
}

// ---------------------------------------------------------------------------------------
// The sequence: send, classify, decide, wait.

#[tokio::test(start_paused = true)]
async fn a_first_try_success_is_one_request_and_no_history() {
    let script = Script::new([status(200).after(ms(5))]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    assert!(history(response).is_empty());
    let seen = script.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.clone(), seen[0].path.as_str()),
        (Method::GET, "/a")
    );
    assert_eq!(seen[0].at, Duration::ZERO);
    // The default attempt timeout (10 s), within the default deadline (30 s).
    assert_eq!(seen[0].timeout, Some(secs(10)));
    assert_eq!(took, ms(5));
}

#[tokio::test(start_paused = true)]
async fn a_503_is_retried_after_the_backoff_then_succeeds() {
    let script = Script::new([
        status(503).after(ms(10)),
        status(503).after(ms(10)),
        status(200).after(ms(10)),
    ]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    let attempts = history(response);
    assert_eq!(
        outcomes(&attempts),
        [
            (1, st(503), false),
            (2, st(503), false),
            (3, st(200), false)
        ]
    );
    let delays: Vec<_> = attempts.iter().map(|a| a.delay_before).collect();
    assert_eq!(delays, [Duration::ZERO, ms(100), ms(200)]);
    let started: Vec<_> = attempts.iter().map(|a| a.started_after).collect();
    assert_eq!(started, [Duration::ZERO, ms(110), ms(320)]);
    assert_eq!(script.sent_at(), started);
    assert_eq!(took, ms(330));
}

#[tokio::test(start_paused = true)]
async fn a_404_is_permanent_and_not_retried() {
    let script = Script::new([status(404), status(200)]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Status,
        Class::Permanent,
        Delivery::Delivered,
    );
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(outcomes(error.attempts()), [(1, st(404), false)]);
    assert_eq!(script.left(), 1);
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn attempts_run_out_on_the_last_503() {
    let script = Script::new([status(503), status(503), status(503), status(200)]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [
            (1, st(503), false),
            (2, st(503), false),
            (3, st(503), false)
        ]
    );
    assert_eq!(script.sent_at(), [Duration::ZERO, ms(100), ms(300)]);
    assert_eq!(script.left(), 1);
    assert_eq!(took, ms(300));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_waited_instead_of_the_backoff() {
    let script = Script::new([status(503).header("retry-after", "2"), status(200)]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    let attempts = history(response);
    assert_eq!(attempts[1].delay_before, secs(2));
    assert_eq!(script.sent_at(), [Duration::ZERO, secs(2)]);
    assert_eq!(took, secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_above_the_cap_is_not_waited() {
    let script = Script::new([status(503).header("retry-after", "5"), status(200)]);
    let retry = retry().retry_after_cap(secs(1)).build().unwrap();
    let policies = policies(builder().retry(retry));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(error.retry_after(), Some(secs(5)));
    assert_eq!(outcomes(error.attempts()), [(1, st(503), false)]);
    assert!(error.to_string().contains("above the 1.00s cap"), "{error}");
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_is_not_waited() {
    let script = Script::new([status(503).header("retry-after", "10"), status(200)]);
    let policies = policies(builder().deadline(secs(3)));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(outcomes(error.attempts()), [(1, st(503), false)]);
    assert!(error.to_string().contains("past the deadline"), "{error}");
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_post_that_may_have_been_processed_is_not_retried() {
    let script = Script::new([
        fail(
            ErrorKind::ConnectionClosed,
            Class::Transient,
            Delivery::MaybeSent,
        ),
        status(200),
    ]);
    let policies = policies(builder());
    let call = call_with(&script, &policies, request(Method::POST, "/pay"));
    let (output, took) = timed(call).await;
    let error = assert_error(
        &output,
        ErrorKind::ConnectionClosed,
        Class::Transient,
        Delivery::MaybeSent,
    );
    assert_eq!(error.method(), Some(&Method::POST));
    assert!(error.to_string().contains("Idempotency-Key"), "{error}");
    assert_eq!(
        outcomes(error.attempts()),
        [(1, err(ErrorKind::ConnectionClosed), false)]
    );
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_post_answered_503_is_not_retried() {
    let script = Script::new([status(503), status(200)]);
    let policies = policies(builder());
    let call = call_with(&script, &policies, request(Method::POST, "/pay"));
    let (output, _) = timed(call).await;
    assert_error(
        &output,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(script.left(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_never_sent_is_retried() {
    let script = Script::new([
        fail(ErrorKind::Connect, Class::Transient, Delivery::NotSent),
        status(201),
    ]);
    let policies = policies(builder());
    let call = call_with(&script, &policies, request(Method::POST, "/pay"));
    let (output, took) = timed(call).await;
    let response = assert_ok(&output, 201);
    assert_eq!(
        outcomes(&history(response)),
        [(1, err(ErrorKind::Connect), false), (2, st(201), false)]
    );
    let seen = script.seen();
    assert!(seen.iter().all(|s| s.method == Method::POST));
    assert_eq!(script.sent_at(), [Duration::ZERO, ms(100)]);
    assert_eq!(took, ms(100));
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_is_retried_with_the_same_key() {
    let script = Script::new([status(503), status(200)]);
    let policies = policies(builder());
    let mut post = request(Method::POST, "/pay");
    post.headers_mut()
        .insert("idempotency-key", "k-1".parse().unwrap());
    let (output, _) = timed(call_with(&script, &policies, post)).await;
    assert_ok(&output, 200);
    let keys: Vec<_> = script
        .seen()
        .iter()
        .map(|s| s.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(keys, [Some("k-1".to_owned()), Some("k-1".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn a_generated_idempotency_key_makes_a_post_retryable_and_stays_the_same() {
    let script = Script::new([status(503), status(200)]);
    let retry = retry().idempotency_key(true).build().unwrap();
    let policies = policies(builder().retry(retry));
    let (output, _) = timed(call_with(&script, &policies, request(Method::POST, "/pay"))).await;
    assert_ok(&output, 200);
    let seen = script.seen();
    assert_eq!(seen.len(), 2);
    let first = seen[0].header("idempotency-key").expect("a generated key");
    assert_eq!(seen[1].header("idempotency-key"), Some(first));
}

// ---------------------------------------------------------------------------------------
// Time: the attempt timeout and the deadline.

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_is_retried() {
    let script = Script::new([hang(), status(200).after(ms(20))]);
    let policies = policies(builder().attempt_timeout(secs(1)));
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    let attempts = history(response);
    assert_eq!(
        outcomes(&attempts),
        [
            (1, err(ErrorKind::AttemptTimeout), false),
            (2, st(200), false)
        ]
    );
    assert_eq!(attempts[0].duration, secs(1));
    assert_eq!(attempts[0].delivery, Delivery::MaybeSent);
    let seen = script.seen();
    assert_eq!(script.sent_at(), [Duration::ZERO, ms(1100)]);
    assert_eq!(
        (seen[0].timeout, seen[1].timeout),
        (Some(secs(1)), Some(secs(1)))
    );
    assert_eq!(took, ms(1120));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_caps_a_late_attempt_and_ends_the_call() {
    // 1 s attempts, 100 ms then 200 ms apart, in a 2.5 s call: the third attempt starts at
    // 2.3 s with 200 ms left, and the deadline, not the attempt timeout, ends it.
    let script = Script::new([hang(), hang(), hang()]);
    let policies = policies(builder().attempt_timeout(secs(1)).deadline(ms(2500)));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::DeadlineExceeded,
        Class::Transient,
        Delivery::MaybeSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [
            (1, err(ErrorKind::AttemptTimeout), false),
            (2, err(ErrorKind::AttemptTimeout), false),
            (3, err(ErrorKind::DeadlineExceeded), false),
        ]
    );
    let timeouts: Vec<_> = script.seen().iter().map(|s| s.timeout).collect();
    assert_eq!(timeouts, [Some(secs(1)), Some(secs(1)), Some(ms(200))]);
    assert_eq!(script.sent_at(), [Duration::ZERO, ms(1100), ms(2300)]);
    assert_eq!(took, ms(2500));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_with_the_whole_call_ahead_times_out_as_an_attempt() {
    // The deadline (2 s) is shorter than the attempt timeout (10 s): the first attempt had
    // the whole call, so it timed out on its own (the breaker counts it); no retry fits after.
    let script = Script::new([hang()]);
    let policies = policies(builder().deadline(secs(2)));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::DeadlineExceeded,
        Class::Transient,
        Delivery::MaybeSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [(1, err(ErrorKind::AttemptTimeout), false)]
    );
    assert!(
        error.to_string().contains("would start past the deadline"),
        "{error}"
    );
    assert_eq!(script.seen()[0].timeout, Some(secs(2)));
    assert_eq!(took, secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_backoff_that_would_end_past_the_deadline_ends_the_call_at_once() {
    let script = Script::new([status(503).after(ms(300)), status(200)]);
    let retry = retry().backoff_base(ms(800)).build().unwrap();
    let policies = policies(builder().retry(retry).deadline(secs(1)));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::DeadlineExceeded,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(outcomes(error.attempts()), [(1, st(503), false)]);
    assert!(error.to_string().contains("past the deadline"), "{error}");
    assert_eq!((script.left(), took), (1, ms(300)));
}

// ---------------------------------------------------------------------------------------
// The endpoint's guards: retry budget, Retry-After holds, rate limit, bulkhead.

/// [`builder`] with `policy` as the default policy.
fn guarded(policy: EndpointPolicy) -> ClientBuilder {
    builder().default_policy(policy)
}

#[tokio::test(start_paused = true)]
async fn retries_spend_the_budget_and_an_empty_one_ends_the_call() {
    // Half a retry per first attempt, none for free: the second call's retry spends what
    // two first attempts earned; the third call's finds half a retry.
    let budget = BudgetConfig::new(0.5, 0, secs(10));
    let policies = policies(guarded(EndpointPolicy::new().retry_budget(budget)));
    let script = Script::new([
        status(200),
        status(503),
        status(200),
        status(503),
        status(200),
    ]);
    assert_ok(&get(&script, &policies).await, 200);
    let response = get(&script, &policies).await;
    assert_eq!(history(assert_ok(&response, 200)).len(), 2);
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::BudgetExhausted,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(outcomes(error.attempts()), [(1, st(503), false)]);
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_holds_the_endpoint_for_the_next_call() {
    let policies = policies(guarded(EndpointPolicy::new().max_attempts(1)));
    let script = Script::new([status(429).header("retry-after", "2"), status(200)]);
    let first = get(&script, &policies).await;
    let error = assert_error(
        &first,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    assert_eq!(error.retry_after(), Some(secs(2)));
    // A call that starts 500 ms later waits out the hold before its first attempt.
    sleep(ms(500)).await;
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!(script.sent_at(), [Duration::ZERO, secs(2)]);
    assert_eq!(took, ms(1500));
}

#[tokio::test(start_paused = true)]
async fn a_hold_longer_than_the_deadline_refuses_the_next_call_at_once() {
    let policies = policies(guarded(EndpointPolicy::new().max_attempts(1)).deadline(secs(1)));
    let script = Script::new([status(429).header("retry-after", "5"), status(200)]);
    let first = get(&script, &policies).await;
    assert_error(
        &first,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::RateLimited,
        Class::Transient,
        Delivery::NotSent,
    );
    assert!(!error.attempts().is_empty() && !error.attempts()[0].sent());
    assert_eq!(error.url().map(|u| u.path()), Some("/a"));
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_calls_out() {
    let limit = RateLimitConfig::new(1, secs(1));
    let policies = policies(guarded(EndpointPolicy::new().rate_limit(limit)));
    let script = Script::new([status(200), status(200), status(200)]);
    let (a, b, c) = tokio::join!(
        get(&script, &policies),
        get(&script, &policies),
        get(&script, &policies)
    );
    for output in [&a, &b, &c] {
        assert_ok(output, 200);
    }
    assert_eq!(script.sent_at(), [Duration::ZERO, secs(1), secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_refuses_a_call_whose_deadline_comes_before_its_slot() {
    let limit = RateLimitConfig::new(1, secs(10));
    let policies = policies(guarded(EndpointPolicy::new().rate_limit(limit)).deadline(secs(2)));
    let script = Script::new([status(200), status(200)]);
    assert_ok(&get(&script, &policies).await, 200);
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::RateLimited,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!(error.retry_after(), Some(secs(10)));
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn retries_take_rate_limit_slots_too() {
    let limit = RateLimitConfig::new(1, secs(1));
    let policies = policies(guarded(EndpointPolicy::new().rate_limit(limit)));
    let script = Script::new([status(503), status(200)]);
    let (output, took) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    // The backoff (100 ms) is shorter than the slot's interval: the retry waits for its slot.
    assert_eq!(script.sent_at(), [Duration::ZERO, secs(1)]);
    assert_eq!(attempts[1].started_after, secs(1));
    assert_eq!(took, secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_lets_queued_calls_in_first_come_first_served() {
    let bulkhead = BulkheadConfig::new(1, secs(5));
    let policies = policies(guarded(EndpointPolicy::new().bulkhead(bulkhead)));
    let script = Script::new([
        status(200).after(ms(100)),
        status(200).after(ms(100)),
        status(200).after(ms(100)),
    ]);
    // Each starts 10 ms after the one before: the order they queue in is known.
    let call = |path, after| {
        let call = call_with(&script, &policies, request(Method::GET, path));
        async move {
            sleep(after).await;
            call.await
        }
    };
    let (a, b, c) = tokio::join!(call("/1", ms(0)), call("/2", ms(10)), call("/3", ms(20)));
    for output in [&a, &b, &c] {
        assert_ok(output, 200);
    }
    let seen = script.seen();
    let order: Vec<_> = seen.iter().map(|s| (s.path.as_str(), s.at)).collect();
    assert_eq!(order, [("/1", ms(0)), ("/2", ms(100)), ("/3", ms(200))]);
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_turns_a_call_away_after_its_queue_timeout() {
    let bulkhead = BulkheadConfig::new(1, ms(50));
    let policies = policies(guarded(EndpointPolicy::new().bulkhead(bulkhead)));
    let script = Script::new([status(200).after(secs(1)), status(200)]);
    let (a, (b, took)) = tokio::join!(get(&script, &policies), timed(get(&script, &policies)));
    assert_ok(&a, 200);
    let error = assert_error(
        &b,
        ErrorKind::BulkheadFull,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!(error.url().map(|u| u.path()), Some("/a"));
    assert_eq!(took, ms(50));
    assert_eq!(script.left(), 1);
}

// ---------------------------------------------------------------------------------------
// The breaker.

/// A breaker that opens after 2 calls of which half failed, for 5 s, with `probes` trial
/// calls in half-open.
fn breaker(probes: u32) -> BreakerConfig {
    BreakerConfig::builder()
        .window(Window::Calls(2))
        .min_calls(2)
        .failure_rate(0.5)
        .open_for(secs(5))
        .open_for_max(secs(60))
        .half_open_probes(probes)
        .build()
        .unwrap()
}

/// A client of one attempt per call and a [`breaker`] of `probes`, opened by two 500s.
async fn opened(script: &Script, probes: u32, retry: RetryPolicy) -> Arc<Policies> {
    let builder = builder()
        .retry(retry)
        .circuit_breaker(breaker(probes))
        .default_policy(EndpointPolicy::new().max_attempts(1));
    let policies = policies(builder);
    for _ in 0..2 {
        let output = get(script, &policies).await;
        assert_error(
            &output,
            ErrorKind::Status,
            Class::Transient,
            Delivery::Delivered,
        );
    }
    policies
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_calls_without_sending_them() {
    let script = Script::new([status(500), status(500), status(200)]);
    let policies = opened(&script, 1, retry().build().unwrap()).await;
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::CircuitOpen,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!(error.retry_after(), Some(secs(5)));
    assert_eq!(
        outcomes(error.attempts()),
        [(1, err(ErrorKind::CircuitOpen), false)]
    );
    assert!(!error.attempts()[0].sent());
    assert_eq!((script.seen().len(), took), (2, Duration::ZERO));
}

/// The request an open breaker turned away is dropped at once, not held (its body too)
/// until the call is dropped, or through a backoff or a race.
#[tokio::test(start_paused = true)]
async fn a_request_the_breaker_turns_away_is_dropped_at_once() {
    let script = Script::new([status(500), status(500)]);
    let policies = opened(&script, 1, retry().build().unwrap()).await;
    let mut call = get(&script, &policies);
    let output = (&mut call).await;
    assert_error(
        &output,
        ErrorKind::CircuitOpen,
        Class::Transient,
        Delivery::NotSent,
    );
    assert!(
        call.retry.request().is_none(),
        "the refused request is held"
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_lets_one_probe_through_and_closes_on_its_success() {
    let script = Script::new([
        status(500),
        status(500),
        status(200).after(ms(100)),
        status(200),
    ]);
    let policies = opened(&script, 1, retry().build().unwrap()).await;
    sleep(secs(5)).await;
    // The probe is in flight for 100 ms: a call meanwhile is refused.
    let (probe, other) = tokio::join!(get(&script, &policies), async {
        sleep(ms(10)).await;
        get(&script, &policies).await
    });
    assert_ok(&probe, 200);
    assert_error(
        &other,
        ErrorKind::CircuitOpen,
        Class::Transient,
        Delivery::NotSent,
    );
    // Closed again.
    assert_ok(&get(&script, &policies).await, 200);
    assert_eq!(script.sent_at(), [ms(0), ms(0), secs(5), ms(5100)]);
}

// ---------------------------------------------------------------------------------------
// Hedging.

/// [`builder`] that hedges after 100 ms, `max` times per call.
fn hedging(max: u32) -> ClientBuilder {
    let retry = retry()
        .hedge(HedgeConfig::new(ms(100), max))
        .build()
        .unwrap();
    builder().retry(retry)
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_out_after_its_delay_and_wins() {
    let script = Script::new([status(200).after(ms(300)), status(200).after(ms(50))]);
    let policies = policies(hedging(1));
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    let attempts = history(response);
    assert_eq!(
        outcomes(&attempts),
        [(1, AttemptOutcome::Cancelled, false), (2, st(200), true)]
    );
    assert_eq!(attempts[1].started_after, ms(100));
    let seen = script.seen();
    assert_eq!(script.sent_at(), [ms(0), ms(100)]);
    // The first attempt was dropped when the hedge answered.
    assert_eq!((seen[0].cancelled, seen[0].ended), (true, Some(ms(150))));
    assert!(!seen[1].cancelled);
    assert_eq!(took, ms(150));
}

/// A hedge due when its attempt times out, or later, never goes out for that attempt (the
/// driver sets no timer for it, issue 28): the attempt times out and the retry follows, as
/// without hedging; each retry's own hedge is due after its limit too.
///
/// Paused time cannot tell a set timer from none here (due with the attempt's own timeout,
/// the hedge loses the tie), so the test counts the timers set (`HEDGE_TIMERS_SET`); a
/// hedge due before the limit, the control, sets one.
#[tokio::test(start_paused = true)]
async fn a_hedge_due_no_sooner_than_the_attempt_timeout_never_goes_out() {
    for after in [secs(1), secs(2)] {
        let script = Script::new([hang(), status(200).after(ms(20))]);
        let hedged = retry().hedge(HedgeConfig::new(after, 1)).build().unwrap();
        let policies = policies(builder().retry(hedged).attempt_timeout(secs(1)));
        HEDGE_TIMERS_SET.with(|set| set.set(0));
        let (output, took) = timed(get(&script, &policies)).await;
        assert_eq!(
            HEDGE_TIMERS_SET.with(std::cell::Cell::get),
            0,
            "a timer set for a hedge due after {after:?}"
        );
        let response = assert_ok(&output, 200);
        assert_eq!(
            outcomes(&history(response)),
            [
                (1, err(ErrorKind::AttemptTimeout), false),
                (2, st(200), false)
            ],
            "hedge after {after:?}"
        );
        assert_eq!(script.sent_at(), [Duration::ZERO, ms(1100)]);
        assert_eq!(took, ms(1120));
    }
}

/// The control of the test above: a hedge due before the attempt's limit sets the call's
/// one timer, once, and goes out when it fires.
#[tokio::test(start_paused = true)]
async fn a_hedge_due_before_the_attempt_timeout_sets_one_timer() {
    let script = Script::new([hang(), status(200).after(ms(20))]);
    let hedged = retry().hedge(HedgeConfig::new(ms(500), 1)).build().unwrap();
    let policies = policies(builder().retry(hedged).attempt_timeout(secs(1)));
    HEDGE_TIMERS_SET.with(|set| set.set(0));
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!(HEDGE_TIMERS_SET.with(std::cell::Cell::get), 1);
    assert_eq!(script.sent_at(), [Duration::ZERO, ms(500)]);
    assert_eq!(took, ms(520));
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_wins_over_its_hedge() {
    let script = Script::new([status(200).after(ms(150)), hang()]);
    let policies = policies(hedging(1));
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    let attempts = history(response);
    // The losers are recorded as they are cancelled, before the winner ends.
    assert_eq!(
        outcomes(&attempts),
        [(2, AttemptOutcome::Cancelled, true), (1, st(200), false)]
    );
    let seen = script.seen();
    assert_eq!(script.sent_at(), [ms(0), ms(100)]);
    assert_eq!((seen[1].cancelled, seen[1].ended), (true, Some(ms(150))));
    assert_eq!(took, ms(150));
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_in_a_race_waits_for_the_other_attempt() {
    let script = Script::new([status(503).after(ms(200)), status(200).after(ms(300))]);
    let policies = policies(hedging(1));
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    assert_eq!(
        outcomes(&history(response)),
        [(1, st(503), false), (2, st(200), true)]
    );
    assert_eq!(script.sent_at(), [ms(0), ms(100)]);
    assert!(script.seen().iter().all(|s| !s.cancelled));
    assert_eq!(took, ms(400));
}

#[tokio::test(start_paused = true)]
async fn hedges_stop_at_their_maximum() {
    let script = Script::new([
        status(200).after(ms(1000)),
        status(200).after(ms(1000)),
        status(200).after(ms(1000)),
    ]);
    let policies = policies(hedging(2));
    let (output, took) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    // The winner is recorded last; the losers before it, in no order the driver promises.
    assert_eq!(attempts.last().map(|a| a.number), Some(1));
    let mut all = outcomes(&attempts);
    all.sort_by_key(|a| a.0);
    assert_eq!(
        all,
        [
            (1, st(200), false),
            (2, AttemptOutcome::Cancelled, true),
            (3, AttemptOutcome::Cancelled, true),
        ]
    );
    assert_eq!(script.sent_at(), [ms(0), ms(100), ms(200)]);
    assert_eq!(script.left(), 0);
    assert_eq!(took, ms(1000));
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_hedged() {
    let script = Script::new([status(200).after(ms(300))]);
    let policies = policies(hedging(1));
    let (output, took) = timed(call_with(&script, &policies, request(Method::POST, "/pay"))).await;
    assert_ok(&output, 200);
    assert_eq!((script.seen().len(), took), (1, ms(300)));
}

// ---------------------------------------------------------------------------------------
// Cancellation: a dropped call gives back what it held.

/// [`builder`] with a bulkhead of one place, queueing up to 5 s.
fn one_place() -> Arc<Policies> {
    let bulkhead = BulkheadConfig::new(1, secs(5));
    policies(guarded(EndpointPolicy::new().bulkhead(bulkhead)))
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_attempt_gives_its_bulkhead_place_back() {
    let script = Script::new([hang(), status(200)]);
    let policies = one_place();
    drop_after(get(&script, &policies), ms(50)).await;
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    let seen = script.seen();
    assert_eq!((seen[0].cancelled, seen[0].ended), (true, Some(ms(50))));
    assert_eq!(script.sent_at(), [ms(0), ms(50)]);
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_backoff_gives_its_bulkhead_place_back() {
    let script = Script::new([status(503), status(200)]);
    let policies = one_place();
    drop_after(get(&script, &policies), ms(50)).await;
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!(script.sent_at(), [ms(0), ms(50)]);
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_in_the_queue_leaves_its_turn_to_the_next() {
    let script = Script::new([status(200).after(secs(1)), status(200)]);
    let policies = one_place();
    let (first, (), (third, took)) = tokio::join!(
        get(&script, &policies),
        // Queued behind the first, then dropped.
        drop_after(get(&script, &policies), ms(100)),
        async {
            sleep(ms(200)).await;
            timed(get(&script, &policies)).await
        }
    );
    assert_ok(&first, 200);
    assert_ok(&third, 200);
    // The third call gets the place when the first gives it back.
    assert_eq!(script.sent_at(), [ms(0), secs(1)]);
    assert_eq!(took, ms(800));
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_mid_attempt_gives_its_place_back() {
    let script = Script::new([status(500), status(500), hang(), status(200)]);
    let policies = opened(&script, 1, retry().build().unwrap()).await;
    sleep(secs(5)).await;
    drop_after(get(&script, &policies), ms(50)).await;
    // Not refused: the probe's place is free again.
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!(script.sent_at(), [ms(0), ms(0), secs(5), ms(5050)]);
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_race_dropped_mid_flight_gives_every_probe_place_back() {
    let script = Script::new([
        status(500),
        status(500),
        hang(),
        hang(),
        status(200),
        status(200),
    ]);
    let hedged = retry().hedge(HedgeConfig::new(ms(100), 1)).build().unwrap();
    let policies = opened(&script, 2, hedged).await;
    sleep(secs(5)).await;
    // The first attempt and its hedge are both probes; the call is dropped while they race.
    drop_after(get(&script, &policies), ms(150)).await;
    let seen = script.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen[2].cancelled && seen[3].cancelled);
    // Both places are free again: two calls at once are both let through.
    let (a, b) = tokio::join!(get(&script, &policies), get(&script, &policies));
    assert_ok(&a, 200);
    assert_ok(&b, 200);
    assert_eq!(script.left(), 0);
}

// ---------------------------------------------------------------------------------------
// Hooks.

#[tokio::test(start_paused = true)]
async fn a_hook_rewrites_each_attempts_request() {
    let stamp = hook_fn(
        "stamp",
        |mut request: reqwest::Request, info: AttemptInfo| async move {
            let number = info.number.to_string().parse()?;
            request.headers_mut().insert("x-attempt", number);
            Ok(request)
        },
    );
    let script = Script::new([status(503), status(200)]);
    let policies = policies(builder().before_attempt(stamp));
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    let stamped: Vec<_> = script
        .seen()
        .iter()
        .map(|s| s.header("x-attempt").map(str::to_owned))
        .collect();
    assert_eq!(stamped, [Some("1".to_owned()), Some("2".to_owned())]);
    assert_eq!(took, ms(100));
}

#[tokio::test(start_paused = true)]
async fn a_failing_hook_ends_the_call_unsent_and_unretried() {
    let refuse = hook_fn("sign", |_: reqwest::Request, _: AttemptInfo| async {
        Err::<reqwest::Request, BoxError>("no signing key".into())
    });
    let script = Script::new([status(200)]);
    let policies = policies(builder().before_attempt(refuse));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Hook,
        Class::Permanent,
        Delivery::NotSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [(1, err(ErrorKind::Hook), false)]
    );
    assert!(error.to_string().contains("sign"), "{error}");
    assert_eq!(error.url().map(|u| u.path()), Some("/a"));
    assert_eq!(error.give_up(), Some(crate::GiveUp::Permanent), "{error}");
    assert!(!error.sent(), "{error}");
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_hook_forbids_hedges() {
    let pass = hook_fn("pass", |request: reqwest::Request, _: AttemptInfo| async {
        Ok(request)
    });
    let script = Script::new([status(200).after(ms(300))]);
    let policies = policies(hedging(1).before_attempt(pass));
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!((script.seen().len(), took), (1, ms(300)));
}

// ---------------------------------------------------------------------------------------
// HTTP/2 turnover: a refused stream is sent again at once, spending no attempt.

#[cfg(feature = "http2")]
#[tokio::test(start_paused = true)]
async fn a_refused_stream_is_resent_at_once_without_spending_an_attempt() {
    let script = Script::new([refused_stream(), refused_stream(), status(200)]);
    let policies = policies(guarded(EndpointPolicy::new().max_attempts(1)));
    let call = call_with(&script, &policies, request(Method::POST, "/pay"));
    let (output, took) = timed(call).await;
    let attempts = history(assert_ok(&output, 200));
    let resent: Vec<_> = attempts.iter().map(|a| (a.number, a.resent)).collect();
    assert_eq!(resent, [(1, true), (2, true), (3, false)]);
    assert_eq!(attempts[0].outcome, err(ErrorKind::ConnectionClosed));
    // The first resend goes at once; the second after a random pause of up to 2 ms.
    let at = script.sent_at();
    assert_eq!(&at[..2], [ms(0), ms(0)]);
    assert!(at[2] <= crate::retry::RESEND_PAUSE, "{at:?}");
    assert_eq!(took, at[2]);
}

// ---------------------------------------------------------------------------------------
// More of the sequence.

#[tokio::test(start_paused = true)]
async fn a_get_that_may_have_been_processed_is_retried() {
    let script = Script::new([
        fail(
            ErrorKind::ConnectionClosed,
            Class::Transient,
            Delivery::MaybeSent,
        )
        .after(ms(5)),
        status(200),
    ]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    assert_eq!(attempts[0].delivery, Delivery::MaybeSent);
    assert_eq!(attempts[0].duration, ms(5));
    assert_eq!(script.sent_at(), [ms(0), ms(105)]);
    assert_eq!(took, ms(105));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_transport_failure_is_not_retried() {
    let script = Script::new([
        fail(
            ErrorKind::InvalidResponse,
            Class::Permanent,
            Delivery::Delivered,
        ),
        status(200),
    ]);
    let policies = policies(builder());
    let (output, _) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::InvalidResponse,
        Class::Permanent,
        Delivery::Delivered,
    );
    assert_eq!(error.method(), Some(&Method::GET));
    assert_eq!(script.left(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_requests_own_timeout_bounds_the_whole_call() {
    // 1 s attempts in a call the request bounds to 1.5 s: the retry at 1.1 s has 400 ms.
    let script = Script::new([hang(), hang()]);
    let policies = policies(builder().attempt_timeout(secs(1)));
    let mut get = request(Method::GET, "/a");
    *get.timeout_mut() = Some(ms(1500));
    let (output, took) = timed(call_with(&script, &policies, get)).await;
    let error = assert_error(
        &output,
        ErrorKind::DeadlineExceeded,
        Class::Transient,
        Delivery::MaybeSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [
            (1, err(ErrorKind::AttemptTimeout), false),
            (2, err(ErrorKind::DeadlineExceeded), false),
        ]
    );
    let timeouts: Vec<_> = script.seen().iter().map(|s| s.timeout).collect();
    assert_eq!(timeouts, [Some(secs(1)), Some(ms(400))]);
    assert_eq!(took, ms(1500));
}

#[tokio::test(start_paused = true)]
async fn a_post_body_in_memory_is_sent_again_on_a_retry() {
    let script = Script::new([
        fail(ErrorKind::Connect, Class::Transient, Delivery::NotSent),
        status(200),
    ]);
    let policies = policies(builder());
    let mut post = request(Method::POST, "/pay");
    *post.body_mut() = Some(reqwest::Body::from("amount=5"));
    let (output, _) = timed(call_with(&script, &policies, post)).await;
    assert_ok(&output, 200);
    let bodies: Vec<_> = script.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(
        bodies,
        [Some(b"amount=5".to_vec()), Some(b"amount=5".to_vec())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_factory_makes_each_attempts_body_and_forbids_hedges() {
    let made = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = made.clone();
    let factory = super::BodyFactory(Arc::new(move || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Box::pin(async move { Ok(reqwest::Body::from(format!("body {n}"))) })
    }));
    let script = Script::new([status(503).after(ms(300)), status(200)]);
    let policies = policies(hedging(1));
    let call = get(&script, &policies).with_body(factory);
    let (output, took) = timed(call).await;
    assert_ok(&output, 200);
    let bodies: Vec<_> = script.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, [Some(b"body 1".to_vec()), Some(b"body 2".to_vec())]);
    // No hedge at 100 ms: the second request is the retry, after the first's 503 and 100 ms.
    assert_eq!(script.sent_at(), [ms(0), ms(400)]);
    assert_eq!(took, ms(400));
}

#[tokio::test(start_paused = true)]
async fn a_401_refreshes_the_credentials_once_and_sends_again_with_them() {
    let refresher = crate::hook::refresh_fn(|| async {
        sleep(ms(30)).await;
        Ok(http::HeaderValue::from_static("Bearer fresh"))
    });
    // One attempt allowed: the retry with new credentials is one more.
    let script = Script::new([status(401), status(401), status(200)]);
    let policies =
        policies(guarded(EndpointPolicy::new().max_attempts(1)).refresh_auth_on_401(refresher));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Status,
        Class::Permanent,
        Delivery::Delivered,
    );
    assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(
        outcomes(error.attempts()),
        [(1, st(401), false), (2, st(401), false)]
    );
    let auth: Vec<_> = script
        .seen()
        .iter()
        .map(|s| s.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(auth, [None, Some("Bearer fresh".to_owned())]);
    assert_eq!(script.sent_at(), [ms(0), ms(30)]);
    assert_eq!((script.left(), took), (1, ms(30)));
}

#[tokio::test(start_paused = true)]
async fn a_call_polled_after_its_end_says_so() {
    let script = Script::new([status(200)]);
    let policies = policies(builder());
    let mut call = get(&script, &policies);
    assert_ok(&(&mut call).await, 200);
    let again = std::future::poll_fn(|cx| Pin::new(&mut call).poll(cx)).await;
    assert!(again.is_err());
}

// ---------------------------------------------------------------------------------------
// More of the guards.

#[tokio::test(start_paused = true)]
async fn calls_held_by_one_retry_after_are_released_spread_over_its_window() {
    let policies = policies(guarded(EndpointPolicy::new().max_attempts(1)));
    let script = Script::new([
        status(429).header("retry-after", "2"),
        status(200),
        status(200),
        status(200),
    ]);
    assert_error(
        &get(&script, &policies).await,
        ErrorKind::Status,
        Class::Transient,
        Delivery::Delivered,
    );
    let (a, b, c) = tokio::join!(
        get(&script, &policies),
        get(&script, &policies),
        get(&script, &policies)
    );
    for output in [&a, &b, &c] {
        assert_ok(output, 200);
    }
    // The first at the hold's end, the others within its release window (a quarter of 2 s).
    let at = script.sent_at();
    assert_eq!(at[1], secs(2));
    assert!(
        at[2..].iter().all(|&t| t >= secs(2) && t <= ms(2500)),
        "{at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_it_waits_for_its_rate_limit_slot_gives_the_slot_back() {
    let limit = RateLimitConfig::new(1, secs(1));
    let policies = policies(guarded(EndpointPolicy::new().rate_limit(limit)));
    let script = Script::new([status(200), status(200)]);
    assert_ok(&get(&script, &policies).await, 200);
    // Waits for the slot at 1 s; dropped at 500 ms.
    drop_after(get(&script, &policies), ms(500)).await;
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    // The slot at 1 s is free again, not taken by the dropped call: not 2 s.
    assert_eq!(script.sent_at(), [ms(0), secs(1)]);
    assert_eq!(took, ms(500));
}

#[tokio::test(start_paused = true)]
async fn a_429_is_no_breaker_failure() {
    let script = Script::new([status(429), status(429), status(429), status(200)]);
    let builder = builder()
        .circuit_breaker(breaker(1))
        .default_policy(EndpointPolicy::new().max_attempts(1));
    let policies = policies(builder);
    for _ in 0..3 {
        let output = get(&script, &policies).await;
        assert_error(
            &output,
            ErrorKind::Status,
            Class::Transient,
            Delivery::Delivered,
        );
    }
    assert_ok(&get(&script, &policies).await, 200);
}

#[cfg(feature = "http2")]
#[tokio::test(start_paused = true)]
async fn a_refused_stream_is_no_breaker_failure() {
    let script = Script::new([
        refused_stream(),
        refused_stream(),
        refused_stream(),
        status(200),
    ]);
    let builder = builder()
        .circuit_breaker(breaker(1))
        .default_policy(EndpointPolicy::new().max_attempts(1));
    let policies = policies(builder);
    let (output, _) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    assert_eq!(attempts.len(), 4);
    assert!(attempts[..3].iter().all(|a| a.resent));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_the_half_open_breaker_refuses_is_not_sent_and_the_first_goes_on() {
    let script = Script::new([status(500), status(500), status(200).after(ms(300))]);
    let hedged = retry().hedge(HedgeConfig::new(ms(100), 1)).build().unwrap();
    // One probe: the hedge would be a second.
    let policies = opened(&script, 1, hedged).await;
    sleep(secs(5)).await;
    let (output, took) = timed(get(&script, &policies)).await;
    let response = assert_ok(&output, 200);
    // Skipped, not sent: no attempt of it in the history, which a first-try success lacks.
    assert!(history(response).is_empty());
    assert_eq!(script.seen().len(), 3);
    assert_eq!(took, ms(300));
}

#[tokio::test(start_paused = true)]
async fn both_attempts_of_a_race_failing_leads_to_a_retry_after_the_backoff() {
    let script = Script::new([
        status(503).after(ms(200)),
        status(503).after(ms(200)),
        status(200),
    ]);
    let policies = policies(hedging(1));
    let (output, took) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    assert_eq!(
        outcomes(&attempts),
        [(1, st(503), false), (2, st(503), true), (3, st(200), false)]
    );
    // The race ends at 300 ms with the hedge's 503; the retry follows 100 ms later.
    assert_eq!(script.sent_at(), [ms(0), ms(100), ms(400)]);
    assert_eq!(attempts[2].delay_before, ms(100));
    assert_eq!(took, ms(400));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_answer_ends_a_race_at_once() {
    let script = Script::new([status(200).after(ms(500)), status(404).after(ms(50))]);
    let policies = policies(hedging(1));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Status,
        Class::Permanent,
        Delivery::Delivered,
    );
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    let seen = script.seen();
    assert_eq!((seen[0].cancelled, seen[0].ended), (true, Some(ms(150))));
    assert_eq!(took, ms(150));
}

// ---------------------------------------------------------------------------------------
// Where rules meet.

#[tokio::test(start_paused = true)]
async fn a_race_cut_by_the_deadline_ends_at_the_deadline() {
    let script = Script::new([hang(), hang()]);
    let policies = policies(hedging(1).deadline(ms(500)));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = output.as_ref().expect_err("the call succeeded");
    assert_eq!(error.kind(), ErrorKind::DeadlineExceeded, "{error}");
    // The first had the whole call; the hedge, 100 ms later, what was left of it.
    let timeouts: Vec<_> = script.seen().iter().map(|s| s.timeout).collect();
    assert_eq!(timeouts, [Some(ms(500)), Some(ms(400))]);
    assert_eq!(error.attempts().len(), 2);
    assert_eq!(took, ms(500));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_in_a_race_still_holds_the_endpoint() {
    let script = Script::new([
        status(503).header("retry-after", "1").after(ms(150)),
        status(200).after(ms(100)),
        status(200),
    ]);
    let policies = policies(hedging(1));
    let (output, took) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    assert_eq!(
        outcomes(&attempts),
        [(1, st(503), false), (2, st(200), true)]
    );
    assert_eq!(took, ms(200));
    // The 503 at 150 ms asked for 1 s: the next call waits until 1.15 s.
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!(script.sent_at(), [ms(0), ms(100), ms(1150)]);
    assert_eq!(took, ms(950));
}

#[tokio::test(start_paused = true)]
async fn a_call_keeps_its_bulkhead_place_through_its_retries() {
    let script = Script::new([status(503), status(200).after(ms(50)), status(200)]);
    let policies = one_place();
    let (a, (b, took)) = tokio::join!(get(&script, &policies), async {
        sleep(ms(10)).await;
        timed(get(&script, &policies)).await
    });
    assert_ok(&a, 200);
    assert_ok(&b, 200);
    // The first call's retry (at 100 ms, answered at 150 ms) goes before the second call.
    assert_eq!(script.sent_at(), [ms(0), ms(100), ms(150)]);
    assert_eq!(took, ms(140));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_a_wait_in_the_bulkhead_queue() {
    let bulkhead = BulkheadConfig::new(1, secs(5));
    let policies = policies(guarded(EndpointPolicy::new().bulkhead(bulkhead)).deadline(secs(1)));
    let script = Script::new([status(200).after(ms(900)), status(200)]);
    let (a, (b, took)) = tokio::join!(get(&script, &policies), async {
        sleep(ms(500)).await;
        timed(get(&script, &policies)).await
    });
    assert_ok(&a, 200);
    // The place comes free at 900 ms, within the second call's deadline (1.5 s).
    assert_ok(&b, 200);
    assert_eq!(took, ms(400));
    // A call whose deadline (its request's own timeout, 300 ms) comes first leaves the queue
    // then.
    let script = Script::new([status(200).after(ms(900)), status(200)]);
    let (a, (b, took)) = tokio::join!(get(&script, &policies), async {
        sleep(ms(10)).await;
        let mut short = request(Method::GET, "/a");
        *short.timeout_mut() = Some(ms(300));
        timed(call_with(&script, &policies, short)).await
    });
    assert_ok(&a, 200);
    let error = assert_error(
        &b,
        ErrorKind::BulkheadFull,
        Class::Transient,
        Delivery::NotSent,
    );
    assert!(!error.attempts().iter().any(Attempt::sent));
    assert_eq!((script.left(), took), (1, ms(300)));
}

#[tokio::test(start_paused = true)]
async fn the_hooks_time_comes_out_of_the_attempts() {
    let slow = hook_fn("slow", |request: reqwest::Request, _: AttemptInfo| async {
        sleep(ms(300)).await;
        Ok(request)
    });
    let script = Script::new([status(200)]);
    let policies = policies(builder().deadline(secs(1)).before_attempt(slow));
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    let seen = script.seen();
    assert_eq!((seen[0].at, seen[0].timeout), (ms(300), Some(ms(700))));
    assert_eq!(took, ms(300));
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_outlasts_the_deadline_ends_the_call_unsent() {
    let stuck = hook_fn("stuck", |request: reqwest::Request, _: AttemptInfo| async {
        sleep(secs(60)).await;
        Ok(request)
    });
    let script = Script::new([status(200)]);
    let policies = policies(builder().deadline(secs(1)).before_attempt(stuck));
    let (output, took) = timed(get(&script, &policies)).await;
    assert_error(
        &output,
        ErrorKind::DeadlineExceeded,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!((script.left(), took), (1, secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_hook_is_an_error_of_the_call_not_a_panic() {
    let broken = hook_fn("broken", |_: reqwest::Request, _: AttemptInfo| async {
        if true {
            panic!("the hook broke");
        }
        Err::<reqwest::Request, BoxError>("unreachable".into())
    });
    let script = Script::new([status(200)]);
    let policies = policies(builder().before_attempt(broken));
    let (output, _) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Hook,
        Class::Permanent,
        Delivery::NotSent,
    );
    assert!(error.to_string().contains("broken"), "{error}");
    assert_eq!(script.left(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_over_the_rate_limit_is_skipped_not_waited_for() {
    let limit = RateLimitConfig::new(1, secs(1));
    let retry = retry().hedge(HedgeConfig::new(ms(100), 1)).build().unwrap();
    let policies = policies(
        builder()
            .retry(retry)
            .default_policy(EndpointPolicy::new().rate_limit(limit)),
    );
    let script = Script::new([status(200).after(ms(300))]);
    let (output, took) = timed(get(&script, &policies)).await;
    assert!(history(assert_ok(&output, 200)).is_empty());
    assert_eq!((script.seen().len(), took), (1, ms(300)));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_zero_retries_at_once() {
    let script = Script::new([status(503).header("retry-after", "0"), status(200)]);
    let policies = policies(builder());
    let (output, took) = timed(get(&script, &policies)).await;
    let attempts = history(assert_ok(&output, 200));
    assert_eq!(attempts[1].delay_before, Duration::ZERO);
    assert_eq!(
        (script.sent_at(), took),
        (vec![ms(0), ms(0)], Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again_and_its_retry_is_refused() {
    let script = Script::new([status(500), status(500), status(500), status(200)]);
    let policies = policies(builder().circuit_breaker(breaker(1)));
    // Two 500s open the breaker: the call's third attempt is refused, unsent.
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::CircuitOpen,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [
            (1, st(500), false),
            (2, st(500), false),
            (3, err(ErrorKind::CircuitOpen), false),
        ]
    );
    assert_eq!(took, ms(300));
    sleep(secs(5)).await;
    // The probe fails: open again, so the probe's own retry is refused.
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::CircuitOpen,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [(1, st(500), false), (2, err(ErrorKind::CircuitOpen), false)]
    );
    assert_eq!(took, ms(100));
    assert_eq!(script.left(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_whose_rate_limit_slot_comes_after_the_deadline_is_refused() {
    let limit = RateLimitConfig::new(1, secs(1));
    let policies = policies(guarded(EndpointPolicy::new().rate_limit(limit)).deadline(ms(800)));
    let script = Script::new([status(503), status(200)]);
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::RateLimited,
        Class::Transient,
        Delivery::NotSent,
    );
    assert_eq!(
        outcomes(error.attempts()),
        [(1, st(503), false), (2, err(ErrorKind::RateLimited), false)]
    );
    // Refused when its backoff ended (100 ms), not left to wait for a slot at 1 s.
    assert_eq!((script.left(), took), (1, ms(100)));
}

#[tokio::test(start_paused = true)]
async fn a_failing_auth_refresher_ends_the_call_with_the_401_attempt() {
    let refresher = crate::hook::refresh_fn(|| async {
        Err::<http::HeaderValue, BoxError>("the identity provider is down".into())
    });
    let script = Script::new([status(401), status(200)]);
    let policies = policies(builder().refresh_auth_on_401(refresher));
    let (output, took) = timed(get(&script, &policies)).await;
    let error = assert_error(
        &output,
        ErrorKind::Hook,
        Class::Permanent,
        Delivery::NotSent,
    );
    assert!(error.to_string().contains("auth refresher"), "{error}");
    assert_eq!(error.attempts().first().map(|a| a.outcome), Some(st(401)));
    assert_eq!((script.left(), took), (1, Duration::ZERO));
}

/// A call gives its bulkhead place back when it ends, not when its future is dropped: a
/// call over but still held (a `select!` on `&mut pending` keeps the `Pending`, which keeps
/// its `Call`) turns no other call of the endpoint away. (Before: the second call queued 5 s
/// and failed `BulkheadFull`.)
#[tokio::test(start_paused = true)]
async fn a_call_that_ended_gives_its_bulkhead_place_back_before_it_is_dropped() {
    let script = Script::new([status(200), status(200)]);
    let policies = one_place();
    let mut first = get(&script, &policies);
    assert_ok(&(&mut first).await, 200);
    // `first` is over but still held (as a `select!` on `&mut call` holds it).
    let (output, took) = timed(get(&script, &policies)).await;
    assert_ok(&output, 200);
    assert_eq!(took, Duration::ZERO);
    drop(first);
}

// ---------------------------------------------------------------------------------------
// Cancellation fuzz (issue 26): calls dropped at random points leave the adaptive limit and
// the throttle exact.

/// What the fuzz ran, and what it left.
#[derive(Debug, Default)]
struct Fuzzed {
    calls: u64,
    /// Calls dropped before their first poll, and after it at a random time.
    dropped_unpolled: u64,
    dropped: u64,
    /// Attempts dropped in flight (a dropped call's, a lost race's).
    cancelled: u64,
    /// Calls that were queueing for an adaptive place when they were dropped.
    dropped_queueing: u64,
    /// Attempts answered (accepted, and rejected for overload), and calls throttled.
    accepted: u64,
    rejected: u64,
    throttled: u64,
    /// What the guards say, summed over the batches (each batch's own policies).
    in_flight: u64,
    waiting: u64,
    samples: u64,
    requests: u64,
    accepts: u64,
    /// Attempts the sender was given whose future never ended.
    unended: u64,
}

/// Batches of 8 calls, under an adaptive limit pinned to 4 places (a queue of up to 1 s),
/// throttling (K = 10), 3 attempts and one hedge after 100 ms; answers 200 (60 %), 404
/// (25 %) or 503 (15 %) after up to 300 ms. Each batch's policies are new, so that each
/// batch's counts are its own. Its first call runs alone to a 200, so that its throttle
/// starts with an accept: with K = 10, nothing is throttled afterwards unless ten times
/// more is rejected than accepted (a hedge kept back by the throttle would count as a
/// request unseen here). The 7 others run at once, each dropped before its first poll (1 in
/// 10), at a random time in its first 800 ms (6 in 10), or run to their end.
async fn fuzz_cancellation(calls: u64, seed: u64) -> Fuzzed {
    use crate::overload::{AdaptiveConcurrencyConfig, ThrottleConfig};

    const BATCH: u64 = 8;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut fuzzed = Fuzzed::default();
    let hedged = retry().hedge(HedgeConfig::new(ms(100), 1)).build().unwrap();
    let limit = AdaptiveConcurrencyConfig::aimd()
        .initial(4)
        .min(4)
        .max(4)
        .queue_timeout(secs(1));
    let policy = EndpointPolicy::new()
        .adaptive_concurrency(limit)
        .throttle(ThrottleConfig::new().k(10.0));
    let url: url::Url = "http://api.test/a".parse().unwrap();
    let key = crate::keyed::endpoint_key(&url).into_owned();
    for _ in 0..calls.div_ceil(BATCH) {
        // Enough replies for every attempt and hedge of the batch; each one's code, in order.
        let codes: Vec<u16> = (0..BATCH * 6)
            .map(|i| match rng.u8(..100) {
                _ if i == 0 => 200,
                0..60 => 200,
                60..85 => 404,
                _ => 503,
            })
            .collect();
        let script =
            Script::new((codes.iter()).map(|&code| status(code).after(ms(rng.u64(..=300)))));
        let policies = policies(guarded(policy.clone()).retry(hedged.clone()));
        fuzzed.calls += 1;
        if let Err(error) = get(&script, &policies).await {
            fuzzed.throttled += u64::from(error.kind() == ErrorKind::Throttled);
        }
        let mut runs = Vec::new();
        for _ in 1..BATCH {
            let call = get(&script, &policies);
            fuzzed.calls += 1;
            match rng.u8(..10) {
                0 => {
                    fuzzed.dropped_unpolled += 1;
                    drop(call);
                }
                1..=6 => runs.push((call, Some(ms(rng.u64(..800))))),
                _ => runs.push((call, None)),
            }
        }
        let mut running = tokio::task::JoinSet::new();
        for (call, drop_at) in runs {
            let policies = policies.clone();
            let key = key.clone();
            running.spawn(run_or_drop(call, drop_at, policies, key));
        }
        while let Some(ran) = running.join_next().await {
            match ran {
                Ok(Ran::Ended(Err(error))) if error.kind() == ErrorKind::Throttled => {
                    fuzzed.throttled += 1;
                }
                Ok(Ran::Ended(_)) => {}
                Ok(Ran::Dropped { queueing }) => {
                    fuzzed.dropped += 1;
                    fuzzed.dropped_queueing += u64::from(queueing);
                }
                // A call that panicked: the assertions below say what it left.
                Err(_) => fuzzed.unended += 1,
            }
        }
        // Let every dropped attempt's future end, and the hedges' timers pass.
        sleep(secs(5)).await;
        for (i, seen) in script.seen().iter().enumerate() {
            match (seen.ended, seen.cancelled) {
                (None, _) => fuzzed.unended += 1,
                (Some(_), true) => fuzzed.cancelled += 1,
                (Some(_), false) => match codes[i] {
                    503 => fuzzed.rejected += 1,
                    _ => fuzzed.accepted += 1,
                },
            }
        }
        if let Some(guards) = policies.default.guards().and_then(|r| r.get(&key)) {
            let now = Instant::now();
            let (_, in_flight, waiting) = guards.adaptive_counts().unwrap_or_default();
            fuzzed.in_flight += u64::from(in_flight);
            fuzzed.waiting += u64::from(waiting);
            fuzzed.samples += guards.adaptive_samples().unwrap_or_default();
            let (requests, accepts) = guards.throttle_counts(now).unwrap_or_default();
            fuzzed.requests += requests;
            fuzzed.accepts += accepts;
        }
    }
    fuzzed
}

/// How a fuzzed call went.
enum Ran {
    Ended(Output),
    /// Dropped; whether a call of its scope was queueing for an adaptive place then.
    Dropped {
        queueing: bool,
    },
}

/// Runs `call` to its end, or drops it after `drop_at`.
async fn run_or_drop(
    mut call: Box<Call<reqwest::Response, Script>>,
    drop_at: Option<Duration>,
    policies: Arc<Policies>,
    key: String,
) -> Ran {
    let Some(at) = drop_at else {
        return Ran::Ended(call.await);
    };
    match tokio::time::timeout(at, &mut call).await {
        Ok(output) => Ran::Ended(output),
        Err(_) => {
            let queueing = (policies.default.guards())
                .and_then(|registry| registry.get(&key))
                .and_then(|guards| guards.adaptive_counts())
                .is_some_and(|(_, _, waiting)| waiting > 0);
            drop(call);
            Ran::Dropped { queueing }
        }
    }
}

/// 10,000 calls dropped at random points (before their first poll, while queueing for an
/// adaptive place, in flight, while a hedge races): every place is given back, no attempt
/// is left in flight or queueing.
#[tokio::test(start_paused = true)]
async fn calls_dropped_at_random_points_give_every_adaptive_place_back() {
    let fuzzed = fuzz_cancellation(10_000, 26).await;
    eprintln!("{fuzzed:?}");
    // The fuzz reached every point it is about.
    assert!(fuzzed.dropped_unpolled > 500, "{fuzzed:?}");
    assert!(fuzzed.dropped > 800, "{fuzzed:?}");
    assert!(fuzzed.dropped_queueing > 400, "{fuzzed:?}");
    assert!(fuzzed.cancelled > 1_300, "{fuzzed:?}");
    assert_eq!(fuzzed.unended, 0, "{fuzzed:?}");
    assert_eq!((fuzzed.in_flight, fuzzed.waiting), (0, 0), "{fuzzed:?}");
}

/// The same fuzz: a cancelled attempt is no latency sample and counts nothing in the
/// throttle's window; every answered attempt is one sample, and one request (an accept
/// unless rejected for overload); every call throttled locally is one request.
#[tokio::test(start_paused = true)]
async fn calls_dropped_at_random_points_are_no_sample_and_count_nothing() {
    let fuzzed = fuzz_cancellation(10_000, 62).await;
    eprintln!("{fuzzed:?}");
    assert!(fuzzed.cancelled > 1_300, "{fuzzed:?}");
    let answered = fuzzed.accepted + fuzzed.rejected;
    assert_eq!(fuzzed.samples, answered, "{fuzzed:?}");
    assert_eq!(
        (fuzzed.requests, fuzzed.accepts),
        (answered + fuzzed.throttled, fuzzed.accepted),
        "{fuzzed:?}"
    );
}
