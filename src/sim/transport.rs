//! The simulation's way out: an attempt layer whose service answers from the model in
//! memory (no socket), honouring the attempt's timeout itself as reqwest would.
//!
//! The replicas are real clients: [`SimLayer`] is their only attempt layer, and its service
//! ignores the `reqwest::Client` under it. An attempt asks [`Dependency::answer`] at once
//! (the attempt reaches the dependency when it is sent), then waits on tokio's clock.
//!
//! With an attempt layer, the driver never leaves the attempt's limit to reqwest's own
//! timeout: it puts it on the request (`Request::timeout`), and so this service bounds the
//! head and the body by it itself. Each failure comes back as the error the classifier
//! makes of reqwest's real one, so that the driver, the breaker, the retry decision and the
//! guards' `Answer` treat it alike:
//! - no head within the limit (a hang, a slow head): [`ErrorKind::AttemptTimeout`], maybe
//!   sent (the driver then names it for the nearer clock, as for reqwest's);
//! - a connection reset: [`ErrorKind::ConnectionClosed`], maybe sent;
//! - a connection refused: [`ErrorKind::Connect`], never sent;
//! - a body that does not arrive within the limit: an `io::Error` of kind `TimedOut` from the
//!   body, which reqwest wraps and `is_timeout()` finds, as for its own body timeout: an
//!   attempt timeout after the head (delivered).
//!
//! The attempt's [`InFlight`] guard lives in the future until the head, then in the body,
//! so the dependency counts the attempt in flight until it ends however it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use reqwest::ResponseBuilderExt;
use tokio::time::{Instant, Sleep, sleep, sleep_until};

use super::dependency::{Dependency, InFlight, ModelReply};
use crate::classify::{Class, Delivery};
use crate::error::{BoxError, Error, ErrorKind};

/// The attempt layer of the replicas: every attempt goes to `dependency`.
#[derive(Clone)]
pub(crate) struct SimLayer {
    pub(crate) dependency: Arc<Dependency>,
    /// The run's start: the model's clock is the time since.
    pub(crate) start: Instant,
}

impl<S> tower::Layer<S> for SimLayer {
    type Service = SimService;

    fn layer(&self, _inner: S) -> SimService {
        SimService {
            dependency: self.dependency.clone(),
            start: self.start,
        }
    }
}

/// Answers attempts from the model (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct SimService {
    dependency: Arc<Dependency>,
    start: Instant,
}

type Answering = Pin<Box<dyn Future<Output = Result<reqwest::Response, BoxError>> + Send>>;

impl tower::Service<reqwest::Request> for SimService {
    type Response = reqwest::Response;
    type Error = BoxError;
    type Future = Answering;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Answering {
        let now = Instant::now();
        let (reply, guard) = self.dependency.answer(now.duration_since(self.start));
        // The driver always sets the attempt's limit here on this path.
        let deadline = request.timeout().map(|limit| now + *limit);
        Box::pin(answer(reply, guard, deadline, request))
    }
}

async fn answer(
    reply: ModelReply,
    guard: InFlight,
    deadline: Option<Instant>,
    request: reqwest::Request,
) -> Result<reqwest::Response, BoxError> {
    let now = Instant::now();
    // The reply's head comes at `now + after`, unless the limit comes first (or at once).
    let by_limit = |after: Option<Duration>| match (deadline, after) {
        (Some(deadline), Some(after)) => deadline <= now + after,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let failed = |kind, delivery, detail: &str| -> BoxError {
        Box::new(
            Error::new(kind, Class::Transient, delivery)
                .with_detail(detail.to_owned())
                .with_request(request.method(), request.url()),
        )
    };
    let timed_out = || failed(ErrorKind::AttemptTimeout, Delivery::MaybeSent, TIMED_OUT);
    match reply {
        ModelReply::Refused => Err(failed(
            ErrorKind::Connect,
            Delivery::NotSent,
            "connection refused (simulated)",
        )),
        ModelReply::Hang => {
            wait_for_limit(deadline).await;
            Err(timed_out())
        }
        ModelReply::Reset { after } => {
            if by_limit(Some(after)) {
                wait_for_limit(deadline).await;
                return Err(timed_out());
            }
            sleep(after).await;
            Err(failed(
                ErrorKind::ConnectionClosed,
                Delivery::MaybeSent,
                "connection reset (simulated)",
            ))
        }
        ModelReply::Answer {
            status,
            headers,
            head_after,
            body_after,
        } => {
            if by_limit(Some(head_after)) {
                wait_for_limit(deadline).await;
                return Err(timed_out());
            }
            if !head_after.is_zero() {
                sleep(head_after).await;
            }
            let body_at = Instant::now() + body_after;
            let body = match deadline {
                Some(deadline) if deadline <= body_at => SimBody::new(deadline, true, guard),
                _ if body_after.is_zero() => SimBody::ready(guard),
                _ => SimBody::new(body_at, false, guard),
            };
            let mut response = http::Response::builder()
                .status(status)
                .url(request.url().clone());
            for (name, value) in headers {
                response = response.header(name, value);
            }
            let response = response
                .body(reqwest::Body::wrap(body))
                .map_err(|e| -> BoxError { Box::new(e) })?;
            Ok(reqwest::Response::from(response))
        }
    }
}

const TIMED_OUT: &str = "attempt timed out (simulated)";

async fn wait_for_limit(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        // No limit at all: nothing ends it (the call's own deadline, if any, does).
        None => std::future::pending().await,
    }
}

/// An empty body that ends at a time: at once, when the body is due, or with a timeout when
/// the attempt's limit comes first. It holds the attempt's [`InFlight`] guard.
struct SimBody {
    wait: Option<Pin<Box<Sleep>>>,
    times_out: bool,
    done: bool,
    _guard: InFlight,
}

impl SimBody {
    fn ready(guard: InFlight) -> Self {
        SimBody {
            wait: None,
            times_out: false,
            done: false,
            _guard: guard,
        }
    }

    fn new(at: Instant, times_out: bool, guard: InFlight) -> Self {
        SimBody {
            wait: Some(Box::pin(sleep_until(at))),
            times_out,
            done: false,
            _guard: guard,
        }
    }
}

impl http_body::Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        self.done = true;
        if self.times_out {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "attempt timed out reading the body (simulated)",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Each fault through the simulated transport gives what the real failure gives through
/// reqwest and a real socket (the testkit's fault server): the same error kind, class and
/// delivery, the same attempts (retried or not), the same breaker counts.
#[cfg(all(test, feature = "testkit"))]
mod tests {
    use std::time::Duration;

    use http::Method;

    use super::*;
    use crate::error::AttemptOutcome;
    use crate::sim::runner::tests::{Result, phase, scenario};
    use crate::sim::scenario::{Fault, FaultKind, Latency};
    use crate::testkit::{ClosedPort, FaultServer, Reply};
    use crate::{Client, ClientBuilder};

    const POLICY: &str = "[default]\nmax_attempts = 2\nattempt_timeout = \"300ms\"\n\
                          [default.retry_budget]\nenabled = false\n";

    /// What a call's failure looks like, to compare.
    #[derive(Debug, PartialEq)]
    struct Seen {
        kind: ErrorKind,
        class: Class,
        delivery: Delivery,
        attempts: Vec<(AttemptOutcome, Class, Delivery)>,
        breaker: Option<(u64, u64)>,
    }

    fn seen(
        client: &Client,
        url: &str,
        result: std::result::Result<reqwest::Response, Error>,
    ) -> Result<Seen> {
        let error = result.err().ok_or("the call succeeded")?;
        let key = crate::breaker::endpoint_key(&url::Url::parse(url)?).into_owned();
        let breaker = client
            .breakers()
            .and_then(|b| b.get(&key))
            .map(|b| (b.counts().calls, b.counts().failures));
        Ok(Seen {
            kind: error.kind(),
            class: error.class(),
            delivery: error.delivery(),
            attempts: error
                .attempts()
                .iter()
                .map(|a| (a.outcome, a.class, a.delivery))
                .collect(),
            breaker,
        })
    }

    fn builder() -> ClientBuilder {
        Client::builder().config_toml(POLICY)
    }

    /// The call through reqwest against the real failure.
    fn real(method: Method, reply: Option<Reply>) -> Result<Seen> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = builder().build()?;
            let (url, _closed, _server);
            match reply {
                Some(reply) => {
                    let server = FaultServer::start().await?;
                    server.script("/x", [reply.clone(), reply]);
                    url = server.url("/x");
                    _server = Some(server);
                    _closed = None;
                }
                None => {
                    let closed = ClosedPort::bind()?;
                    url = closed.url("/x");
                    _closed = Some(closed);
                    _server = None;
                }
            }
            let result = client.request(method, &url).send_buffered().await;
            seen(&client, &url, result)
        })
    }

    /// The same call through the simulated transport, on paused time.
    fn simulated(method: Method, fault: FaultKind) -> Result<Seen> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?;
        runtime.block_on(async {
            let faults = vec![Fault {
                kind: fault,
                share: 1.0,
            }];
            let latency = Latency::Fixed(Duration::from_millis(10));
            let dependency = Arc::new(Dependency::new(&scenario(
                1.0,
                60,
                vec![phase("p", 0, latency, faults)],
            )?));
            let layer = SimLayer {
                dependency: dependency.clone(),
                start: Instant::now(),
            };
            let client = builder().attempt_layer(layer).build()?;
            let url = "http://sim.test/x";
            let result = client.request(method, url).send_buffered().await;
            assert_eq!(dependency.in_flight(), 0, "every attempt ended");
            seen(&client, url, result)
        })
    }

    fn same(method: Method, reply: Option<Reply>, fault: FaultKind) -> Result {
        let real = real(method.clone(), reply)?;
        let simulated = simulated(method.clone(), fault)?;
        assert_eq!(simulated, real, "{method} {fault:?}");
        Ok(())
    }

    #[test]
    fn a_hang_is_an_attempt_timeout_as_for_real() -> Result {
        same(Method::GET, Some(Reply::hang()), FaultKind::Hang)
    }

    #[test]
    fn a_reset_may_have_been_sent_as_for_real() -> Result {
        same(Method::GET, Some(Reply::reset()), FaultKind::Reset)?;
        // Maybe sent: a POST without a key is not tried again.
        same(Method::POST, Some(Reply::reset()), FaultKind::Reset)
    }

    #[test]
    fn a_refusal_was_never_sent_as_for_real() -> Result {
        same(Method::GET, None, FaultKind::Refused)?;
        // Never sent: a POST is tried again.
        same(Method::POST, None, FaultKind::Refused)
    }

    #[test]
    fn a_stalled_body_times_the_attempt_out_as_for_real() -> Result {
        let stalled = Reply::stall_body(200, "");
        let slow = FaultKind::SlowBody {
            body_delay: Duration::from_secs(5),
        };
        same(Method::GET, Some(stalled), slow)
    }

    #[test]
    fn a_503_is_a_status_as_for_real() -> Result {
        let status = FaultKind::Status {
            status: 503,
            retry_after: None,
        };
        same(Method::GET, Some(Reply::status(503)), status)
    }
}
