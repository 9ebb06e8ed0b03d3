//! The client's own path through a policy: every layer's job in one future.
//!
//! The tower layers are there to be composed, and each costs a future, a copy of the request
//! on the way down and of the response on the way up, and its own bookkeeping. The client
//! knows its whole stack, so it does the same work (the same functions: classification, the
//! attempt timeout, the breaker, [`RetryState`]) in one future instead. It also does what
//! the layers cannot: read the body inside the attempt ([`crate::exchange`]) and run hooks
//! before attempts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use tokio::time::{Instant, Sleep, sleep};
use tower::{Service, ServiceExt};

use crate::breaker::state::{Permit, Verdict};
use crate::breaker::{Breaker, error_verdict};
use crate::caught::{call_caught, caught, hook_failed, poll_caught};
use crate::classify::layer_error;
use crate::classify::{Class, Delivery, outcome, response_outcome};
use crate::error::{BoxError, Error, ErrorKind};
use crate::extras::Extras;
use crate::hook::{AttemptInfo, AuthRefresher, BoxFuture};
use crate::policy::{CompiledPolicy, Policies};
use crate::read::{Buffered, Reader, Success, buffer, limited};
use crate::retry::state::{Next, RetryState};
use crate::timeout::{attempt_limit, expired, timed_out};

type ReqwestFuture = <reqwest::Client as Service<reqwest::Request>>::Future;

/// Which policy a call follows.
pub(crate) enum Which {
    /// An endpoint rule by index, or the default (`None`).
    Shared(Option<usize>),
    /// A policy changed for this request.
    Custom(Box<CompiledPolicy>),
}

/// What a step of a call leads to: its output, or (`None`) the next stage to poll.
type Step<O> = Option<Result<O, Error>>;

/// Where a call is.
enum Stage<O> {
    /// Not polled yet.
    Start,
    /// The policy's hook is preparing the next attempt's request. Its name and the URL (for
    /// errors) are boxed: this enum is part of every call's future.
    Hook(
        BoxFuture<Result<reqwest::Request, Error>>,
        Box<(String, url::Url)>,
    ),
    /// An attempt is waiting for the response's head.
    Send(ReqwestFuture),
    /// An attempt is waiting for the response's head, through the user's attempt layers.
    SendLayered(BoxFuture<Result<reqwest::Response, BoxError>>),
    /// Reading the body into memory (for `send_buffered` or a body classifier).
    Buffer(BoxFuture<Result<Buffered, Error>>),
    /// The caller's reader is reading the response (see [`reading_until`]).
    Read(BoxFuture<Result<O, Error>>),
    /// Fetching new credentials after a `401`.
    Refresh(BoxFuture<Result<HeaderValue, Error>>),
    /// Waiting before the next attempt.
    Sleep(Pin<Box<Sleep>>),
    /// Over.
    Done,
}

/// One call through one policy, resolving to `O`.
pub(crate) struct Call<O> {
    stage: Stage<O>,
    http: reqwest::Client,
    policies: Arc<Policies>,
    which: Which,
    // Holds the request until the first poll, then each retry's copy.
    retry: RetryState,
    method: Method,
    breaker: Option<Arc<Breaker>>,
    // The current attempt's breaker permit and, if slow calls are counted, its start.
    permit: Option<(Permit, Option<Instant>)>,
    limit: Duration,
    by_deadline: bool,
    reader: Reader<O>,
    // Whether the body is read into memory inside the attempt.
    buffered: bool,
    // Whether credentials were refreshed once already.
    refreshed: bool,
    // When the current attempt was sent, for a reader's time limit (readers only).
    sent_at: Option<Instant>,
}

impl<O> Drop for Call<O> {
    fn drop(&mut self) {
        // A cancelled call gives a half-open probe's place back.
        self.report(Verdict::Ignored);
    }
}

impl<O> Call<O> {
    /// Tells the breaker how the current attempt went, if it admitted one (`Ignored` gives a
    /// half-open probe's place back).
    fn report(&mut self, verdict: Verdict) {
        if let (Some(breaker), Some((permit, started))) =
            (self.breaker.as_ref(), self.permit.take())
        {
            breaker.record(permit, verdict, started);
        }
    }
}

impl<O: Success> Call<O> {
    #[inline]
    pub(crate) fn new(
        http: reqwest::Client,
        policies: Arc<Policies>,
        which: Which,
        request: reqwest::Request,
        reader: Reader<O>,
        buffered: bool,
    ) -> Box<Self> {
        let chosen = policy(&policies, &which);
        let mut retry = RetryState::new(
            chosen.retry_policy(),
            Some(chosen.total_deadline()),
            request,
        );
        if chosen.extras().is_some_and(|e| e.refresher.is_some()) {
            retry.allow_extra_attempt();
        }
        retry.keep_budget_out_of_requests();
        Box::new(Call {
            stage: Stage::Start,
            method: Method::GET,
            http,
            policies,
            which,
            retry,
            breaker: None,
            permit: None,
            limit: Duration::ZERO,
            by_deadline: false,
            reader,
            buffered,
            refreshed: false,
            sent_at: None,
        })
    }

    fn policy(&self) -> &CompiledPolicy {
        policy(&self.policies, &self.which)
    }

    fn extras(&self) -> Option<&Extras> {
        self.policy().extras()
    }

    /// The request for the next attempt is ready: through the hook, if any, then out.
    #[inline]
    fn prepare(&mut self, request: reqwest::Request) -> Step<O> {
        let Some(hook) = self.extras().and_then(|e| e.hook.clone()) else {
            return self.send(request);
        };
        let info = AttemptInfo {
            number: self.retry.attempt_number(),
            history: self.retry.history().to_vec(),
            policy: self.policy().name.clone(),
        };
        let what = format!("hook {:?}", hook.name());
        let label = what.clone();
        let url = request.url().clone();
        let start = move || -> BoxFuture<Result<reqwest::Request, Error>> {
            let future = hook.before_attempt(request, info);
            Box::pin(async move { future.await.map_err(|e| hook_failed(&label, failed(e))) })
        };
        let hooking = within(self.retry.deadline(), call_caught(&what, start));
        self.stage = Stage::Hook(hooking, Box::new((what, url)));
        None
    }

    /// Admits the attempt through the breaker and sends it.
    fn send(&mut self, mut request: reqwest::Request) -> Step<O> {
        if let Some(breaker) = self.breaker.as_ref() {
            match breaker.admit() {
                Ok(permit) => self.permit = Some((permit, breaker.call_started())),
                Err(rejection) => {
                    let error = breaker.rejected(rejection, &request);
                    return self.finish(Err(error));
                }
            }
        }
        let (limit, by_deadline) = attempt_limit(
            self.policy().attempt_timeout(),
            self.retry.budget(),
            self.retry.time_left(),
        );
        if limit.is_zero() {
            self.report(Verdict::Ignored);
            self.stage = Stage::Done;
            return Some(Err(self.retry.fail(expired(&request, limit))));
        }
        self.limit = limit;
        self.by_deadline = by_deadline;
        if matches!(self.reader, Reader::With(_)) {
            self.sent_at = Some(Instant::now());
        }
        let layered = self.extras().and_then(|e| e.attempt_service.clone());
        // A request with no timeout of its own gets the reqwest client's, which may be this.
        // Attempt layers always see the limit on the request: some read it.
        let inherited = request.timeout().is_none()
            && layered.is_none()
            && self.policies.client_timeout == Some(limit);
        if !inherited {
            *request.timeout_mut() = Some(limit);
        }
        self.stage = match layered {
            None => Stage::Send(self.http.call(request)),
            Some(service) => Stage::SendLayered(Box::pin(service.oneshot(request))),
        };
        None
    }

    /// The response's head arrived (or the attempt failed before it).
    #[inline]
    fn received(&mut self, result: Result<reqwest::Response, reqwest::Error>) -> Step<O> {
        if let Ok(response) = &result {
            let wants = self
                .extras()
                .and_then(|e| e.body_classifier.as_ref())
                .map(|c| {
                    caught("body classifier", || {
                        c.wants(response.status(), response.headers())
                    })
                });
            let classify_body = match wants {
                None => false,
                Some(Ok(wants)) => wants,
                Some(Err(error)) => {
                    let error = error.with_request(&self.method, response.url());
                    return self.finish(Err(error));
                }
            };
            if self.buffered || classify_body {
                if let Ok(response) = result {
                    let policy = self.policy();
                    let reading = buffer(
                        response,
                        policy.body_limit(),
                        policy.classifier().clone(),
                        self.method.clone(),
                    );
                    self.stage = Stage::Buffer(Box::pin(reading));
                }
                return None;
            }
        }
        let result = self.classify(result);
        self.classified(result)
    }

    /// The attempt's result, sorted by the policy's classifier.
    fn classify(
        &self,
        result: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, Error> {
        let elapsed = self.retry.attempt_started().elapsed();
        outcome(self.policy().classifier(), &self.method, result, elapsed)
    }

    /// The body is in memory: the body classifier, if it wants it, then the status.
    fn buffered(&mut self, body: Buffered) -> Step<O> {
        let body_classifier = self
            .extras()
            .and_then(|e| e.body_classifier.as_ref())
            // Part of a failure's page is not its body: the status decides.
            .filter(|_| !body.truncated);
        let verdict = match body_classifier {
            None => None,
            Some(c) => {
                let verdict = caught("body classifier", || {
                    c.wants(body.status(), body.headers())
                        .then(|| c.classify(body.status(), body.headers(), &body.body))
                        .flatten()
                });
                match verdict {
                    Ok(verdict) => verdict,
                    Err(error) => {
                        let error = error.with_request(&self.method, body.url());
                        return self.finish(Err(error));
                    }
                }
            }
        };
        let elapsed = self.retry.attempt_started().elapsed();
        let classifier = self.policy().classifier();
        let result = response_outcome(
            classifier,
            &self.method,
            body.into_response(),
            verdict,
            elapsed,
        );
        self.classified(result)
    }

    /// The attempt is classified: a success goes to the reader.
    #[inline]
    fn classified(&mut self, result: Result<reqwest::Response, Error>) -> Step<O> {
        let response = match result {
            Ok(response) => response,
            Err(error) => return self.finish(Err(error)),
        };
        match &self.reader {
            Reader::Response(into) => {
                let output = into(response);
                self.finish(Ok(output))
            }
            Reader::With(_) => {
                let status = response.status();
                let limit = self.policy().body_limit();
                // reqwest's timeout covers the body, not whatever else the reader waits for:
                // the attempt's limit, counted from the send, holds for both.
                let ends = self.sent_at.and_then(|at| at.checked_add(self.limit));
                let (method, url) = (self.method.clone(), response.url().clone());
                let classifier = self.policy().classifier().clone();
                let Reader::With(read) = &mut self.reader else {
                    return None;
                };
                match limited(response, limit, classifier, method.clone()) {
                    Ok(response) => {
                        let reading = call_caught("reader", || read(response));
                        self.stage = Stage::Read(reading_until(reading, ends, status, method, url));
                        None
                    }
                    Err(error) => self.finish(Err(error.with_request(&method, &url))),
                }
            }
        }
    }

    /// The attempt is over: the breaker hears of it, then the retry decides.
    fn finish(&mut self, result: Result<O, Error>) -> Step<O> {
        // The output goes straight out: it is the large part, and each move copies it.
        let error = match result {
            Ok(output) => return self.succeeded(output),
            Err(error) => timed_out(error, self.limit, self.by_deadline),
        };
        self.report(error_verdict(&error));
        if let Some(refresher) = self.refresher_for(&error).cloned() {
            return self.refresh(error, refresher);
        }
        let next = self.retry.finish_attempt(Err(error));
        self.next(next)
    }

    fn succeeded(&mut self, output: O) -> Step<O> {
        self.report(Verdict::Success);
        if self.retry.first_try_succeeded(output.status()) {
            self.stage = Stage::Done;
            return Some(Ok(output));
        }
        let next = self.retry.finish_attempt(Ok(output));
        self.next(next)
    }

    fn next(&mut self, next: Next<O>) -> Step<O> {
        match next {
            Next::Done(result) => {
                self.stage = Stage::Done;
                Some(result)
            }
            Next::Retry(delay) => {
                self.stage = Stage::Sleep(Box::pin(sleep(delay)));
                None
            }
        }
    }

    /// A first `401` with a refresher in the policy: new credentials, then the attempt again.
    fn refresh(&mut self, error: Error, refresher: Arc<dyn AuthRefresher>) -> Step<O> {
        self.refreshed = true;
        let (method, url) = (self.method.clone(), error.url().cloned());
        if let Err(error) = self.retry.retry_with_new_credentials(error) {
            self.stage = Stage::Done;
            return Some(Err(error));
        }
        let start = move || -> BoxFuture<Result<HeaderValue, Error>> {
            let future = refresher.refresh();
            Box::pin(async move {
                future
                    .await
                    .map_err(|e| hook_failed("auth refresher", failed(e)))
            })
        };
        let refreshing = within(self.retry.deadline(), call_caught("auth refresher", start));
        let refreshing = Box::pin(async move {
            refreshing.await.map_err(|error| match &url {
                Some(url) => error.with_request(&method, url),
                None => error,
            })
        });
        self.stage = Stage::Refresh(refreshing);
        None
    }

    /// The refresher to call for `error`: a first `401`, with a refresher in the policy.
    fn refresher_for(&self, error: &Error) -> Option<&Arc<dyn AuthRefresher>> {
        let first_401 = !self.refreshed
            && error.kind() == ErrorKind::Status
            && error.status() == Some(StatusCode::UNAUTHORIZED);
        first_401
            .then(|| self.extras().and_then(|e| e.refresher.as_ref()))
            .flatten()
    }

    /// New credentials arrived (or did not): send the request again with them.
    fn finish_refresh(&mut self, value: Result<HeaderValue, Error>) -> Step<O> {
        let mut value = match value {
            Ok(value) => value,
            Err(error) => {
                self.stage = Stage::Done;
                return Some(Err(self.retry.fail(error)));
            }
        };
        value.set_sensitive(true);
        // On this attempt's request and on the copy kept for later retries.
        match self
            .retry
            .next_request_with(Some((http::header::AUTHORIZATION, value)))
        {
            Ok(request) => self.prepare(request),
            Err(error) => {
                self.stage = Stage::Done;
                Some(Err(error))
            }
        }
    }
}

/// `future`, ended with [`ErrorKind::DeadlineExceeded`] at the call's `deadline`.
fn within<T: Send + 'static>(
    deadline: Option<Instant>,
    future: BoxFuture<Result<T, Error>>,
) -> BoxFuture<Result<T, Error>> {
    ending_at(deadline, future, || {
        Error::new(
            ErrorKind::DeadlineExceeded,
            Class::Transient,
            Delivery::NotSent,
        )
        .with_detail("the deadline passed while a hook or the auth refresher ran")
    })
}

/// `future`, ended at `at` (if any) with the error `late` makes.
fn ending_at<T: Send + 'static>(
    at: Option<Instant>,
    future: BoxFuture<Result<T, Error>>,
    late: impl FnOnce() -> Error + Send + 'static,
) -> BoxFuture<Result<T, Error>> {
    let Some(at) = at else {
        return future;
    };
    Box::pin(async move {
        tokio::time::timeout_at(at, future)
            .await
            .unwrap_or_else(|_| Err(late()))
    })
}

/// A reader's run on the response of `status` to `method` `url`: ended with an attempt
/// timeout at `ends`, a panic in it made an error, and every error it ends with naming the
/// request and the status, as any other attempt's.
fn reading_until<O: Send + 'static>(
    mut reading: BoxFuture<Result<O, Error>>,
    ends: Option<Instant>,
    status: StatusCode,
    method: Method,
    url: url::Url,
) -> BoxFuture<Result<O, Error>> {
    Box::pin(async move {
        let caught = std::future::poll_fn(|cx| poll_caught(&mut reading, cx, "reader"));
        let result = match ends {
            Some(at) => tokio::time::timeout_at(at, caught)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::AttemptTimeout,
                        Class::Transient,
                        Delivery::Delivered,
                    ))
                }),
            None => caught.await,
        };
        result.map_err(|e| e.with_request(&method, &url).after_response(status))
    })
}

/// A user's error, as the message of a typed one.
fn failed(error: BoxError) -> String {
    format!("failed: {error}")
}

fn policy<'a>(policies: &'a Policies, which: &'a Which) -> &'a CompiledPolicy {
    match which {
        Which::Shared(index) => policies.get(*index),
        Which::Custom(policy) => policy,
    }
}

/// An attempt layer's error: ours and reqwest's keep their meaning; any other is the layer's
/// own refusal, permanent.
fn layered_error(error: BoxError, method: &Method) -> Result<reqwest::Error, Error> {
    let error = match error.downcast::<reqwest::Error>() {
        Ok(error) => return Ok(*error),
        Err(error) => error,
    };
    let mut error = layer_error(error, "an attempt layer", ErrorKind::AttemptTimeout);
    error.set_method(method.clone());
    Err(error)
}

impl<O: Success> Future for Call<O> {
    type Output = Result<O, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if matches!(this.stage, Stage::Start) {
            this.retry.watch();
        }
        let _call = this.retry.observer().enter_call();
        loop {
            let step = match &mut this.stage {
                // The call's clock starts here, at its first poll (see `CallClock`).
                Stage::Start => match this.retry.begin() {
                    Ok(request) => {
                        // Once per call: the breaker of this endpoint.
                        this.method = request.method().clone();
                        this.breaker = this.policy().breaker_for(request.url());
                        this.prepare(request)
                    }
                    Err(error) => {
                        this.stage = Stage::Done;
                        Some(Err(error))
                    }
                },
                Stage::Hook(hook, about) => match ready!(poll_caught(hook, cx, &about.0)) {
                    // The hook's time comes out of the budget: `send` counts from now.
                    Ok(request) => this.send(request),
                    // An attempt that failed before it was sent: recorded (history, span,
                    // metrics) as any other, and never retried (a hook's failure is permanent).
                    Err(error) => {
                        let error = error.with_request(&this.method, &about.1);
                        this.finish(Err(error))
                    }
                },
                Stage::Send(future) => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(Pin::new(future).poll(cx))
                    };
                    this.received(result)
                }
                Stage::SendLayered(future) => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(future.as_mut().poll(cx))
                    };
                    match result.map_err(|e| layered_error(e, &this.method)) {
                        Ok(response) => this.received(Ok(response)),
                        Err(Ok(error)) => this.received(Err(error)),
                        Err(Err(error)) => this.finish(Err(error)),
                    }
                }
                Stage::Buffer(reading) => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(reading.as_mut().poll(cx))
                    };
                    match result {
                        Ok(body) => this.buffered(body),
                        Err(error) => this.finish(Err(error)),
                    }
                }
                Stage::Read(reading) => {
                    let result = {
                        let _attempt = this.retry.observer().enter_attempt();
                        ready!(reading.as_mut().poll(cx))
                    };
                    this.finish(result)
                }
                Stage::Refresh(refreshing) => {
                    let value = ready!(poll_caught(refreshing, cx, "auth refresher"));
                    this.finish_refresh(value)
                }
                Stage::Sleep(pause) => {
                    ready!(pause.as_mut().poll(cx));
                    match this.retry.next_request() {
                        Ok(request) => this.prepare(request),
                        Err(error) => {
                            this.stage = Stage::Done;
                            Some(Err(error))
                        }
                    }
                }
                Stage::Done => Some(Err(Error::polled_after_completion())),
            };
            if let Some(output) = step {
                return Poll::Ready(output);
            }
        }
    }
}
