//! The one error type every layer returns.
//!
//! Every layer's `Service::Error` is [`Error`], never a `BoxError`, so a caller can `match` on
//! [`Error::kind`] and ask [`Error::is_timeout`] or [`Error::status`] no matter how many layers the
//! failure crossed. The error is one pointer wide (the details live in a `Box`), so a
//! `Result<reqwest::Response, Error>` costs nothing extra on the success path.
//!
//! An error also carries the **attempt history**: what happened on every attempt, when, and
//! whether the request may have reached the server. The URL it shows has its credentials and
//! secret query values removed; request headers are never stored at all.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use url::Url;

pub use crate::outcome::ErrorKind;
use crate::outcome::{Class, Delivery};
use crate::redact;

/// A boxed error, as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What one attempt came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// The server answered with this status.
    Status(StatusCode),
    /// The attempt ended without a response.
    Error(ErrorKind),
    /// The server answered with this status, then reading the body failed (a reset, a
    /// truncation, a timeout: the `kind`).
    Body {
        /// The status the response began with.
        status: StatusCode,
        /// What cut the body short.
        kind: ErrorKind,
    },
    /// Another attempt of the call answered first (see [`hedge`](crate::hedge)), and this
    /// one was dropped before it did.
    Cancelled,
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Status(status) => write!(f, "{status}"),
            AttemptOutcome::Error(kind) => write!(f, "{kind}"),
            AttemptOutcome::Body { status, kind } => {
                write!(f, "{status}, then {kind} while reading the body")
            }
            AttemptOutcome::Cancelled => f.write_str("cancelled: another attempt answered first"),
        }
    }
}

/// Every attempt of a call that succeeded after retries, the successful one last. Found in the
/// response's extensions; absent when the first attempt succeeded. Public as
/// `retry::RetryHistory`; beside [`Attempt`], so that what reads a body (`read/`) names it
/// without the retry layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryHistory(pub Vec<Attempt>);

/// Why a call stopped trying: the reason on every error a call ended with
/// ([`Error::give_up`]), the same as the `reason` of the `retry skipped` event and of the
/// [`GIVE_UPS`](crate::telemetry::GIVE_UPS) metric (see [`as_str`](Self::as_str)).
///
/// The attempts alone do not say it: a `POST` that failed once was not retried because it is
/// [not idempotent](GiveUp::NotIdempotent), not because its attempts were used up.
///
/// ```
/// use resilient_http::{Error, GiveUp};
///
/// fn advice(err: &Error) -> &'static str {
///     match err.give_up() {
///         Some(GiveUp::AttemptsExhausted | GiveUp::Deadline) => "still failing: try later",
///         Some(GiveUp::NotIdempotent) if err.sent() => "may have been processed: check first",
///         Some(GiveUp::CircuitOpen | GiveUp::RateLimited | GiveUp::BulkheadFull) => {
///             "not sent: the client held it back"
///         }
///         Some(GiveUp::Permanent) => "trying again will not help",
///         // Not from a call (a configuration error), or a reason added later.
///         _ => "see the message",
///     }
/// }
/// # let _ = advice;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUp {
    /// The failure is one trying again cannot fix (a `404`, a refused redirect, a body that
    /// does not decode, a hook's error: see [`Class::Permanent`]).
    Permanent,
    /// Every attempt the policy allows was made
    /// ([`max_attempts`](crate::retry::RetryPolicyBuilder::max_attempts); one with
    /// [`RetryPolicy::never`](crate::retry::RetryPolicy::never)).
    AttemptsExhausted,
    /// A `POST` or `PATCH` (without an `Idempotency-Key`) that may have been processed is
    /// not sent again (see
    /// [`retry_non_idempotent`](crate::retry::RetryPolicyBuilder::retry_non_idempotent)).
    NotIdempotent,
    /// The request's body is a stream that cannot be sent twice (kind
    /// [`BodyNotReplayable`](ErrorKind::BodyNotReplayable)).
    BodyNotReplayable,
    /// The server's `Retry-After` asked for a longer wait than the policy's
    /// [`retry_after_cap`](crate::retry::RetryPolicyBuilder::retry_after_cap).
    RetryAfterAboveCap,
    /// The next attempt could not start (or end) before the call's deadline.
    Deadline,
    /// A custom backoff schedule had no more delays.
    ScheduleEnded,
    /// The endpoint's retry budget had nothing left for a retry (kind
    /// [`BudgetExhausted`](ErrorKind::BudgetExhausted)).
    BudgetExhausted,
    /// The circuit breaker turned the attempt away (kind
    /// [`CircuitOpen`](ErrorKind::CircuitOpen)).
    CircuitOpen,
    /// A `Retry-After` hold or the rate limit would have kept the attempt back past the
    /// deadline (kind [`RateLimited`](ErrorKind::RateLimited)).
    RateLimited,
    /// The endpoint's bulkhead had no place for the call (kind
    /// [`BulkheadFull`](ErrorKind::BulkheadFull)).
    BulkheadFull,
    /// Client-side throttling turned the attempt away (kind
    /// [`Throttled`](ErrorKind::Throttled)).
    Throttled,
}

impl GiveUp {
    /// A short, stable, machine-readable name: `permanent`, `attempts_exhausted`,
    /// `non_idempotent`, `body_not_replayable`, `retry_after_above_cap`, `deadline`,
    /// `schedule_ended`, `budget_exhausted`, `circuit_open`, `rate_limited`,
    /// `bulkhead_full` or `throttled`: the `reason` of the `retry skipped` event, and the probe's `give_up`.
    ///
    /// ```
    /// assert_eq!(resilient_http::GiveUp::NotIdempotent.as_str(), "non_idempotent");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUp::Permanent => "permanent",
            GiveUp::AttemptsExhausted => "attempts_exhausted",
            GiveUp::NotIdempotent => "non_idempotent",
            GiveUp::BodyNotReplayable => "body_not_replayable",
            GiveUp::RetryAfterAboveCap => "retry_after_above_cap",
            GiveUp::Deadline => "deadline",
            GiveUp::ScheduleEnded => "schedule_ended",
            GiveUp::BudgetExhausted => "budget_exhausted",
            GiveUp::CircuitOpen => "circuit_open",
            GiveUp::RateLimited => "rate_limited",
            GiveUp::BulkheadFull => "bulkhead_full",
            GiveUp::Throttled => "throttled",
        }
    }

    /// The reason an error of `kind` is by itself: one that ends a call whatever the policy
    /// says (retrying cannot help, or it is not ours to decide); `None` for the others. The
    /// one list the retry's decision and the error's message share.
    pub(crate) const fn of_kind(kind: ErrorKind) -> Option<GiveUp> {
        Some(match kind {
            ErrorKind::DeadlineExceeded => GiveUp::Deadline,
            ErrorKind::CircuitOpen => GiveUp::CircuitOpen,
            ErrorKind::RateLimited => GiveUp::RateLimited,
            ErrorKind::BulkheadFull => GiveUp::BulkheadFull,
            ErrorKind::Throttled => GiveUp::Throttled,
            ErrorKind::BudgetExhausted => GiveUp::BudgetExhausted,
            ErrorKind::BodyNotReplayable => GiveUp::BodyNotReplayable,
            ErrorKind::InvalidConfig => GiveUp::Permanent,
            _ => return None,
        })
    }

    /// The reason a call ends with `error` when no retry was asked about (its guards turned
    /// it away, its deadline passed, a hook failed): what its kind says, else permanent.
    pub(crate) fn ending(error: &Error) -> GiveUp {
        GiveUp::of_kind(error.kind()).unwrap_or(GiveUp::Permanent)
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GiveUp::Permanent => "not retryable",
            GiveUp::AttemptsExhausted => "attempts used up",
            GiveUp::NotIdempotent => "not idempotent",
            GiveUp::BodyNotReplayable => "body not replayable",
            GiveUp::RetryAfterAboveCap => "Retry-After above the cap",
            GiveUp::Deadline => "no time left before the deadline",
            GiveUp::ScheduleEnded => "backoff schedule ended",
            GiveUp::BudgetExhausted => "retry budget spent",
            GiveUp::CircuitOpen => "circuit open",
            GiveUp::RateLimited => "rate limited",
            GiveUp::BulkheadFull => "bulkhead full",
            GiveUp::Throttled => "throttled",
        })
    }
}

/// One entry of an error's attempt history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// When the attempt started, relative to the start of the first attempt.
    pub started_after: Duration,
    /// How long the attempt took.
    pub duration: Duration,
    /// The delay slept before this attempt (zero for the first).
    pub delay_before: Duration,
    /// What came back.
    pub outcome: AttemptOutcome,
    /// How the classifier sorted it.
    pub class: Class,
    /// Whether the request reached the server.
    pub delivery: Delivery,
    /// Whether it was a [hedge](crate::hedge): sent while an earlier attempt was still in
    /// flight, not after it failed.
    pub hedge: bool,
    /// An HTTP/2 server turning its connections over turned the attempt's stream away
    /// (`REFUSED_STREAM`: [never sent](Delivery::NotSent); a graceful `GOAWAY`:
    /// [maybe sent](Delivery::MaybeSent)), and the call sent the request again (at once, or
    /// after a resend's short pause), spending none of the policy's attempts (see [`MAX_RESENDS`](crate::retry::MAX_RESENDS)).
    pub resent: bool,
}

impl Attempt {
    /// A first attempt that started at `started_after` and took `duration`.
    pub(crate) fn first(
        duration: Duration,
        outcome: AttemptOutcome,
        class: Class,
        delivery: Delivery,
    ) -> Self {
        Attempt {
            number: 1,
            started_after: Duration::ZERO,
            duration,
            delay_before: Duration::ZERO,
            outcome,
            class,
            delivery,
            hedge: false,
            resent: false,
        }
    }
}

impl Attempt {
    /// Whether the attempt's request may have reached the server: its
    /// [`delivery`](Self::delivery) is not [`NotSent`](Delivery::NotSent). `false` for an
    /// attempt the client's own guards turned away before sending anything (an open circuit,
    /// the rate limit or a `Retry-After` hold, a full bulkhead), and for one that never got a
    /// connection (refused, DNS): either is safe to send again, whatever the method. The same
    /// as the `sent` of an attempt in the probe's JSON.
    ///
    /// Such an attempt is still in the history, so that it says what happened; the error's
    /// message counts every attempt but the client's own refusals.
    pub fn sent(&self) -> bool {
        self.delivery != Delivery::NotSent
    }

    /// Whether the client made the attempt: `false` for one its own guards turned away (which
    /// the error's message does not count).
    fn made(&self) -> bool {
        !matches!(
            self.outcome,
            AttemptOutcome::Error(kind) if kind.is_refusal()
        )
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} at +{}", self.number, Short(self.started_after))?;
        if self.hedge {
            f.write_str(" (hedge)")?;
        }
        if !self.delay_before.is_zero() {
            write!(f, " (after sleeping {})", Short(self.delay_before))?;
        }
        write!(
            f,
            ": {} ({}, {}) in {}",
            self.outcome,
            self.class,
            self.delivery,
            Short(self.duration)
        )?;
        if self.resent {
            f.write_str(", resent: the server turned the stream away")?;
        }
        Ok(())
    }
}

/// A duration as people read it: `850.3ms`, `1.23s`.
pub(crate) struct Short(pub(crate) Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs >= 1.0 {
            write!(f, "{secs:.2}s")
        } else {
            write!(f, "{:.1}ms", secs * 1000.0)
        }
    }
}

/// The error of every layer in this crate.
///
/// ```
/// use resilient_http::{Error, ErrorKind};
///
/// fn describe(err: &Error) -> &'static str {
///     match err.kind() {
///         ErrorKind::Status if err.is_transient() => "server trouble, try later",
///         ErrorKind::Status => "our request is wrong",
///         ErrorKind::AttemptTimeout | ErrorKind::DeadlineExceeded => "too slow",
///         ErrorKind::Connect => "unreachable",
///         _ => "other",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Inner>);

#[derive(thiserror::Error)]
#[error("{}", Line(self))]
struct Inner {
    kind: ErrorKind,
    class: Class,
    delivery: Delivery,
    method: Option<Method>,
    /// Already redacted.
    url: Option<Url>,
    response: Option<reqwest::Response>,
    /// The status of a response whose body then failed (the response itself is gone).
    body_status: Option<StatusCode>,
    retry_after: Option<Duration>,
    /// The limit that fired, for timeouts.
    limit: Option<Duration>,
    /// Total time from the first attempt's start; derived from the history when `None`.
    elapsed: Option<Duration>,
    history: Vec<Attempt>,
    detail: Option<String>,
    /// The endpoint policy that handled the request.
    policy: Option<std::sync::Arc<str>>,
    /// Why the call that ended with this error stopped; `None` outside a call.
    give_up: Option<GiveUp>,
    /// The deadline that ended the call was its caller's, inherited from a
    /// `deadline::scope`.
    inherited: bool,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// A new error with no context yet; layers add what they know.
    pub(crate) fn new(kind: ErrorKind, class: Class, delivery: Delivery) -> Self {
        Error(Box::new(Inner {
            kind,
            class,
            delivery,
            method: None,
            url: None,
            response: None,
            body_status: None,
            retry_after: None,
            limit: None,
            elapsed: None,
            history: Vec::new(),
            detail: None,
            policy: None,
            give_up: None,
            inherited: false,
            source: None,
        }))
    }

    /// An invalid configuration, with a message saying what is wrong.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Error::new(
            ErrorKind::InvalidConfig,
            Class::Permanent,
            Delivery::NotSent,
        )
        .with_detail(message)
    }

    /// The error a builder returns when a setting is out of its range (`bounds.rs` says why):
    /// `max_breakers must be at least 1 and ...`.
    pub(crate) fn refused(name: &'static str) -> impl Fn(String) -> Self {
        move |message| Error::invalid_config(format!("{name} {message}"))
    }

    /// The error of a future of this crate polled again after it completed: one kind and one
    /// message wherever it happens.
    pub(crate) fn polled_after_completion() -> Self {
        Error::invalid_config("a future was polled after it completed")
    }

    /// An error of yours that trying again may fix: return it from a
    /// [`send_with`](crate::RequestBuilder::send_with) reader or an
    /// [`attempt_layer`](crate::ClientBuilder::attempt_layer), and the call retries it as it
    /// would a 503 (same attempts, backoff, deadline and idempotency rules) and the circuit
    /// breaker counts it as the endpoint's failure. From an outer
    /// [`layer`](crate::ClientBuilder::layer), around the whole call, it comes out as it is.
    ///
    /// `source` is kept in the error's source chain as redacted text (error reporters print
    /// chains as they are, and its text may quote a URL with credentials); the error itself is
    /// [`unredacted_source`](Self::unredacted_source). A `reqwest::Error` keeps its kind and
    /// delivery (a reset is still [`ConnectionClosed`](ErrorKind::ConnectionClosed)), and an
    /// [`Error`] keeps everything but its class. Any other source makes an error of kind
    /// [`Transport`](ErrorKind::Transport) that [may have been sent](Delivery::MaybeSent)
    /// (see [`with_delivery`](Self::with_delivery)); a reader's error is
    /// [delivered](Delivery::Delivered), since the server answered.
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) -> Result<(), resilient_http::Error> {
    /// use resilient_http::Error;
    ///
    /// // This API answers `200 {"status":"busy"}` when it wants us back later.
    /// let body = client
    ///     .get("http://127.0.0.1:8080/report")
    ///     .send_with(|response| async move {
    ///         let body = response.text().await?;
    ///         if body.contains(r#""status":"busy""#) {
    ///             return Err(Error::transient("the report is still being prepared"));
    ///         }
    ///         Ok(body)
    ///     })
    ///     .await?;
    /// # let _ = body;
    /// # Ok(())
    /// # }
    /// ```
    pub fn transient(source: impl Into<BoxError>) -> Self {
        Error::made_by_user(source.into(), Class::Transient)
    }

    /// An error of yours that trying again cannot fix: the call ends with it at once, and the
    /// circuit breaker does not count it against the endpoint. Kept as
    /// [`transient`](Self::transient) says.
    ///
    /// ```
    /// use resilient_http::{Class, Error, ErrorKind};
    ///
    /// #[derive(Debug)]
    /// struct UnknownSchema(u32);
    ///
    /// impl std::fmt::Display for UnknownSchema {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "unknown schema version {}", self.0)
    ///     }
    /// }
    ///
    /// impl std::error::Error for UnknownSchema {}
    ///
    /// let err = Error::permanent(UnknownSchema(7));
    /// assert_eq!(err.class(), Class::Permanent);
    /// assert_eq!(err.kind(), ErrorKind::Transport);
    /// assert!(err.to_string().contains("unknown schema version 7"));
    /// let mine = err.unredacted_source().and_then(|e| e.downcast_ref::<UnknownSchema>());
    /// assert_eq!(mine.map(|e| e.0), Some(7));
    /// ```
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Error::made_by_user(source.into(), Class::Permanent)
    }

    /// Says how far the request got, for an error of yours (see [`transient`](Self::transient)):
    /// an error of an [`attempt_layer`](crate::ClientBuilder::attempt_layer) that refused
    /// before calling the service below is [`NotSent`](Delivery::NotSent), which lets a retry
    /// resend even a `POST`.
    ///
    /// ```
    /// use resilient_http::{Delivery, Error};
    ///
    /// let err = Error::transient("local rate limit").with_delivery(Delivery::NotSent);
    /// assert_eq!(err.delivery(), Delivery::NotSent);
    /// ```
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.0.delivery = delivery;
        self
    }

    fn made_by_user(source: BoxError, class: Class) -> Self {
        let source = match source.downcast::<Error>() {
            Ok(mut error) => {
                error.0.class = class;
                return *error;
            }
            Err(source) => source,
        };
        match source.downcast::<reqwest::Error>() {
            Ok(source) => {
                let analysis = crate::transport::analyze(&source);
                Error::from_reqwest(*source, analysis.kind, class, analysis.delivery)
            }
            Err(source) => {
                // The one-line Display shows the detail, so the error says what went wrong
                // without its source chain; it is redacted there.
                let detail = source.to_string();
                Error::new(ErrorKind::Transport, class, Delivery::MaybeSent)
                    .with_detail(detail)
                    .with_foreign_source(source)
            }
        }
    }

    /// A request refused before sending, with a message saying why.
    pub(crate) fn invalid_request(detail: impl Into<String>, request: &reqwest::Request) -> Self {
        Error::new(
            ErrorKind::InvalidRequest,
            Class::Permanent,
            Delivery::NotSent,
        )
        .with_detail(detail)
        .with_request(request.method(), request.url())
    }

    /// A failure status: keeps the response (so its headers and body stay readable).
    pub(crate) fn from_response(
        response: reqwest::Response,
        class: Class,
        delivery: Delivery,
    ) -> Self {
        let mut err = Error::new(ErrorKind::Status, class, delivery);
        err.0.retry_after = crate::retry_after::parse(response.headers());
        err.0.url = Some(redact::url(response.url()));
        err.0.response = Some(response);
        err
    }

    /// A transport failure, sorted by what happened and by the classifier's verdict.
    pub(crate) fn from_reqwest(
        mut source: reqwest::Error,
        kind: ErrorKind,
        class: Class,
        delivery: Delivery,
    ) -> Self {
        let mut err = Error::new(kind, class, delivery);
        // reqwest prints its URL in Display; keep only the redacted form anywhere.
        if let Some(url) = source.url_mut() {
            *url = redact::url(url);
            err.0.url = Some(url.clone());
        }
        if source.is_redirect() {
            // Says what stopped the chain; the error itself is not kept (see `explain`).
            let (detail, origin) = crate::redirect::explain(&source);
            if origin.is_some() {
                err.0.url = origin;
            }
            return err.with_detail(detail);
        }
        // The reason is deep in the chain (a parser's, under reqwest's and hyper's errors): the
        // message says it, redacted where it is shown.
        if matches!(kind, ErrorKind::InvalidRequest | ErrorKind::InvalidResponse) {
            err.0.detail = Some(innermost(&source));
        }
        err.0.source = Some(Box::new(source));
        err
    }

    /// A copy of a configuration error (which has no source, response or history to share).
    pub(crate) fn clone_config(&self) -> Error {
        Error::invalid_config(self.detail().unwrap_or("invalid configuration"))
    }

    pub(crate) fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// An error of code we did not write (a user's layer, another middleware) as the source:
    /// only its redacted text is kept, chain included, since error reporters print sources
    /// as they are (`anyhow`'s `{:#}`, say) and its text may quote a URL with credentials.
    pub(crate) fn with_foreign_source(self, source: BoxError) -> Self {
        self.with_source(RedactedSource::of(source))
    }

    /// The error of code this crate did not write (a [`layer`](crate::ClientBuilder::layer)
    /// or [`attempt_layer`](crate::ClientBuilder::attempt_layer) of yours, another
    /// middleware), as that code made it: to downcast, say to
    /// `tower::load_shed::error::Overloaded` or a type of your own.
    ///
    /// `source()` shows such an error only as redacted text, since error reporters print
    /// source chains as they are. This one is not redacted: do not log it.
    pub fn unredacted_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.0
            .source
            .as_ref()?
            .downcast_ref::<RedactedSource>()?
            .original
            .as_deref()
    }

    /// The call that ends with this error stopped for `reason`.
    pub(crate) fn with_give_up(mut self, reason: GiveUp) -> Self {
        self.0.give_up = Some(reason);
        self
    }

    /// Why the call stopped trying: set on every error a call of this crate ended with, on
    /// every path ([`Client`](crate::Client), the middleware, the layers). `None` for an
    /// error no call ended with: a configuration error from a builder, an error you made
    /// ([`Error::transient`]) before a call saw it, one reading a body after the call
    /// returned.
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) {
    /// use resilient_http::GiveUp;
    ///
    /// if let Err(err) = client.post("http://127.0.0.1:8080/orders").body("{}").send().await {
    ///     if err.give_up() == Some(GiveUp::NotIdempotent) {
    ///         // A POST that may have been processed: look it up before sending it again.
    ///     }
    /// }
    /// # }
    /// ```
    pub fn give_up(&self) -> Option<GiveUp> {
        self.0.give_up
    }

    /// Whether the request may have reached the server: an attempt was [sent](Attempt::sent),
    /// or the error itself says so (its [`delivery`](Self::delivery) is not
    /// [`NotSent`](Delivery::NotSent)). `false` when the client's guards turned every attempt
    /// away (an open circuit, the rate limit, a full bulkhead) or no connection was made:
    /// sending it again is then safe, whatever the method. As far as the client knows: a
    /// timeout or a reset [may have been sent](Delivery::MaybeSent) and counts as sent.
    pub fn sent(&self) -> bool {
        Error::sent_of(&self.0)
    }

    pub(crate) fn with_history(mut self, history: Vec<Attempt>) -> Self {
        self.0.history = history;
        self
    }

    pub(crate) fn with_policy(mut self, policy: Option<&std::sync::Arc<str>>) -> Self {
        if let Some(policy) = policy {
            self.0.policy = Some(policy.clone());
        }
        self
    }

    /// The name of the endpoint policy that handled the request (`"default"` unless an
    /// endpoint rule matched), when the request went through a [`Client`](crate::Client).
    pub fn policy(&self) -> Option<&str> {
        self.0.policy.as_deref()
    }

    pub(crate) fn with_limit(mut self, limit: Duration) -> Self {
        self.0.limit = Some(limit);
        self
    }

    /// The deadline that ended the call was its caller's (see [`deadline_inherited`](Self::deadline_inherited)).
    pub(crate) fn with_inherited_deadline(mut self) -> Self {
        self.0.inherited = true;
        self
    }

    /// Whether the call ran out of its caller's deadline, inherited from a
    /// [`deadline::scope`](crate::deadline::scope) (or the
    /// [`IncomingDeadlineLayer`](crate::deadline::IncomingDeadlineLayer)) that ended before
    /// the call's own: then the endpoint was not too slow for the call, its caller was out
    /// of time. Only for [`DeadlineExceeded`](ErrorKind::DeadlineExceeded) errors.
    pub fn deadline_inherited(&self) -> bool {
        self.0.inherited && self.0.kind == ErrorKind::DeadlineExceeded
    }

    pub(crate) fn with_elapsed(mut self, elapsed: Duration) -> Self {
        self.0.elapsed = Some(elapsed);
        self
    }

    /// Fills in the method and URL if no inner layer did; `url` is redacted here.
    pub(crate) fn with_request(mut self, method: &Method, url: &Url) -> Self {
        if self.0.method.is_none() {
            self.0.method = Some(method.clone());
        }
        if self.0.url.is_none() {
            self.0.url = Some(redact::url(url));
        }
        self
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// The body of `response` did not decode as the caller asked; the call adds the method,
    /// the policy and the attempts.
    #[cfg(feature = "json")]
    pub(crate) fn decode(source: impl Into<BoxError>, response: &reqwest::Response) -> Self {
        let mut error = Error::new(ErrorKind::Decode, Class::Permanent, Delivery::Delivered)
            .with_source(source)
            .after_response(response.status());
        error.0.url = Some(redact::url(response.url()));
        error
    }

    /// This failure came while reading the body of a response with `status`: the server
    /// answered, so it was delivered (and a retry follows the idempotency rules).
    pub(crate) fn after_response(mut self, status: StatusCode) -> Self {
        if self.0.response.is_none() && self.0.body_status.is_none() {
            self.0.body_status = Some(status);
            self.0.delivery = Delivery::Delivered;
        }
        self
    }

    /// The retry this error called for was skipped because the body cannot be sent twice.
    /// The error keeps the attempt's answer (status, headers, body, `Retry-After`), as
    /// [`into_budget_exhausted`](Self::into_budget_exhausted) does; its source is the
    /// attempt's error, which keeps the answer's head (status and headers).
    pub(crate) fn not_replayable(mut cause: Error) -> Self {
        let mut err = Error::new(
            ErrorKind::BodyNotReplayable,
            cause.class(),
            cause.delivery(),
        )
        .with_detail("retry skipped: the request body is a stream that cannot be sent twice");
        err.0.method = cause.0.method.clone();
        err.0.url = cause.0.url.clone();
        err.0.retry_after = cause.0.retry_after;
        err.0.body_status = cause.0.body_status;
        if let Some(response) = cause.0.response.take() {
            cause.0.response = Some(head_of(&response));
            err.0.response = Some(response);
        }
        err.with_source(cause)
    }

    /// A call the circuit breaker of `key` did not let through.
    /// An attempt the endpoint's guards held back (a `Retry-After` hold, the rate limit) for
    /// longer than its deadline allows; `detail` names the endpoint and says why.
    pub(crate) fn rate_limited(detail: String, retry_in: std::time::Duration) -> Self {
        let mut err = Error::new(ErrorKind::RateLimited, Class::Transient, Delivery::NotSent)
            .with_detail(detail);
        err.0.retry_after = Some(retry_in);
        err
    }

    /// An attempt client-side throttling turned away; `detail` names the scope and the
    /// rejection probability.
    pub(crate) fn throttled(detail: String) -> Self {
        Error::new(ErrorKind::Throttled, Class::Transient, Delivery::NotSent).with_detail(detail)
    }

    /// A call the endpoint's bulkhead had no place for.
    pub(crate) fn bulkhead_full(detail: String) -> Self {
        Error::new(ErrorKind::BulkheadFull, Class::Transient, Delivery::NotSent).with_detail(detail)
    }

    /// This transient failure, returned because the retry budget had nothing left for a
    /// retry: the kind says so, the status, headers and cause of the last attempt stay.
    pub(crate) fn into_budget_exhausted(mut self) -> Self {
        self.0.kind = ErrorKind::BudgetExhausted;
        self.with_detail("not retried: the endpoint's retry budget is spent")
    }

    /// A call the breaker turned away; `detail` names the endpoint and says why.
    pub(crate) fn circuit_open(detail: String, retry_in: Option<std::time::Duration>) -> Self {
        let mut err = Error::new(ErrorKind::CircuitOpen, Class::Transient, Delivery::NotSent)
            .with_detail(detail);
        err.0.retry_after = retry_in;
        err
    }

    /// This error as one entry of an attempt history.
    pub(crate) fn outcome(&self) -> AttemptOutcome {
        match (&self.0.response, self.0.kind, self.0.body_status) {
            (Some(response), ErrorKind::Status, _) => AttemptOutcome::Status(response.status()),
            (_, kind, Some(status)) => AttemptOutcome::Body { status, kind },
            (_, kind, None) => AttemptOutcome::Error(kind),
        }
    }

    pub(crate) fn set_method(&mut self, method: Method) {
        self.0.method = Some(method);
    }

    /// Turns an attempt timeout into a deadline error: the attempt was cut short because the
    /// total deadline, not the attempt timeout, was the nearer limit.
    pub(crate) fn into_deadline_exceeded(mut self) -> Self {
        self.0.kind = ErrorKind::DeadlineExceeded;
        for attempt in &mut self.0.history {
            if attempt.outcome == AttemptOutcome::Error(ErrorKind::AttemptTimeout) {
                attempt.outcome = AttemptOutcome::Error(ErrorKind::DeadlineExceeded);
            }
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// How the last attempt was classified: [`Class::Transient`] or [`Class::Permanent`].
    pub fn class(&self) -> Class {
        self.0.class
    }

    /// Whether the last attempt's request reached the server.
    pub fn delivery(&self) -> Delivery {
        self.0.delivery
    }

    /// True if trying again later may succeed (a 503, a reset, a timeout, an open circuit).
    pub fn is_transient(&self) -> bool {
        self.0.class == Class::Transient
    }

    /// True for an attempt timeout or an exceeded total deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::AttemptTimeout | ErrorKind::DeadlineExceeded
        )
    }

    /// True if the connection could not be made: the request never reached the server.
    pub fn is_connect(&self) -> bool {
        self.0.kind == ErrorKind::Connect
    }

    /// The failure status the server answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        Error::status_of(&self.0)
    }

    /// The response headers of a failure status.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.0.response.as_ref().map(reqwest::Response::headers)
    }

    /// Takes the failure response out of the error, to read its body for diagnostics.
    /// [`status`](Self::status) and [`headers`](Self::headers) return `None` afterwards.
    pub fn take_response(&mut self) -> Option<reqwest::Response> {
        self.0.response.take()
    }

    /// Reads at most `limit` bytes of the failure response's body, for diagnostics (64 KiB is
    /// plenty for an error page). Takes the response out of the error; `None` when there is
    /// none or reading fails. The read is bounded in time by the attempt timeout.
    pub async fn read_body(&mut self, limit: usize) -> Option<bytes::Bytes> {
        let mut response = self.0.response.take()?;
        let mut body = bytes::BytesMut::new();
        while body.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(_) => return None,
            }
        }
        body.truncate(limit);
        Some(body.freeze())
    }

    /// The delay the server asked for in `Retry-After`, if it sent a valid one; for
    /// [`CircuitOpen`](ErrorKind::CircuitOpen), the time until the breaker lets a probe go
    /// (`None` while a probe is in flight or when forced open: no time can be promised).
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// The timeout or deadline that fired, for [`is_timeout`](Self::is_timeout) errors.
    pub fn timeout(&self) -> Option<Duration> {
        self.0.limit
    }

    /// What happened on every attempt, first to last, including one the client's guards
    /// turned away before sending anything (an open circuit, the rate limit, a hold), which
    /// was not [sent](Attempt::sent); the message counts every attempt but those.
    pub fn attempts(&self) -> &[Attempt] {
        &self.0.history
    }

    /// The request method, when known.
    pub fn method(&self) -> Option<&Method> {
        self.0.method.as_ref()
    }

    /// The request URL with user info removed and secret query values replaced by `REDACTED`.
    pub fn url(&self) -> Option<&Url> {
        self.0.url.as_ref()
    }

    /// Total time from the start of the first attempt until the failure.
    pub fn elapsed(&self) -> Duration {
        Error::elapsed_of(&self.0)
    }
}

/// A response with `response`'s status, version and headers and no body, for an error that
/// shows the head of an answer another error keeps.
fn head_of(response: &reqwest::Response) -> reqwest::Response {
    let mut head = http::Response::new(reqwest::Body::from(bytes::Bytes::new()));
    *head.status_mut() = response.status();
    *head.version_mut() = response.version();
    *head.headers_mut() = response.headers().clone();
    reqwest::Response::from(head)
}

/// The text of the last error in `error`'s source chain: the most specific reason.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    // Bounded: a `source()` that returns itself must not loop for ever.
    for _ in 0..RedactedSource::MAX_DEPTH {
        match last.source() {
            Some(next) => last = next,
            None => break,
        }
    }
    last.to_string()
}

/// The one-line Display.
struct Line<'a>(&'a Inner);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if e.kind == ErrorKind::InvalidConfig {
            f.write_str("invalid configuration")?;
            if let Some(detail) = &e.detail {
                write!(f, ": {detail}")?;
            }
            return Ok(());
        }
        match (&e.method, &e.url) {
            (Some(m), Some(u)) => write!(f, "{m} {u} ")?,
            (None, Some(u)) => write!(f, "{u} ")?,
            (Some(m), None) => write!(f, "{m} ")?,
            (None, None) => f.write_str("request ")?,
        }
        if let Some(policy) = e.policy.as_deref().filter(|p| *p != "default") {
            write!(f, "(policy {policy}) ")?;
        }
        // Only attempts the client made count: a refusal of its own sent nothing.
        let n = e.history.iter().filter(|a| a.made()).count();
        if n > 0 {
            let elapsed = Error::elapsed_of(e);
            let plural = if n == 1 { "" } else { "s" };
            write!(
                f,
                "failed after {n} attempt{plural} in {}: ",
                Short(elapsed)
            )?;
        } else if e.kind.is_refusal() {
            f.write_str("not sent: ")?;
        } else {
            f.write_str("failed: ")?;
        }
        match (&e.response, e.kind) {
            (Some(response), ErrorKind::Status) => write!(f, "{}", response.status())?,
            (_, kind) => write!(f, "{kind}")?,
        }
        match (
            e.limit,
            e.inherited && e.kind == ErrorKind::DeadlineExceeded,
        ) {
            (Some(limit), true) if limit.is_zero() => {
                f.write_str(": the caller's deadline (inherited) had passed")?;
            }
            (Some(limit), true) => {
                write!(f, ": the caller's deadline (inherited), {}", Short(limit))?;
            }
            (Some(limit), false) => write!(f, " after {}", Short(limit))?,
            (None, _) => {}
        }
        if let (None, Some(status)) = (&e.response, e.body_status) {
            write!(f, " while reading the body of a {status} response")?;
        }
        if let Some(detail) = &e.detail {
            write!(f, ": {}", redact::text(detail))?;
        }
        match (&e.response, e.kind) {
            (Some(response), kind) if kind != ErrorKind::Status => {
                write!(f, "; last answer {}", response.status())?;
            }
            _ => {}
        }
        write!(f, " ({}", e.class)?;
        // Why the call stopped, unless the kind or the class already said it.
        match e.give_up {
            Some(GiveUp::Permanent) | None => {}
            Some(reason) if GiveUp::of_kind(e.kind) == Some(reason) => {}
            Some(reason) => write!(f, ", {reason}")?,
        }
        // Whether the request may have reached the server, for the errors a call ended with,
        // unless the line began with it.
        let said_not_sent = n == 0 && e.kind.is_refusal();
        if e.give_up.is_some() && !said_not_sent && !Error::sent_of(e) {
            f.write_str(", not sent")?;
        }
        f.write_str(")")
    }
}

impl Error {
    /// The status of the response, or of the one whose body then failed: what
    /// [`status`](Error::status) returns and `Debug` shows.
    fn status_of(inner: &Inner) -> Option<StatusCode> {
        inner
            .response
            .as_ref()
            .map(reqwest::Response::status)
            .or(inner.body_status)
    }

    /// What [`sent`](Error::sent) returns and `Debug` shows.
    fn sent_of(inner: &Inner) -> bool {
        inner.delivery != Delivery::NotSent || inner.history.iter().any(Attempt::sent)
    }

    fn elapsed_of(inner: &Inner) -> Duration {
        inner.elapsed.unwrap_or_else(|| {
            inner
                .history
                .last()
                .map_or(Duration::ZERO, |a| a.started_after + a.duration)
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Written by hand: the response's headers may hold `Set-Cookie`, so they are shown redacted.
impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
        f.debug_struct("Error")
            .field("kind", &e.kind)
            .field("class", &e.class)
            .field("delivery", &e.delivery)
            .field("method", &e.method)
            .field("url", &e.url.as_ref().map(Url::as_str))
            .field("status", &Error::status_of(e))
            .field(
                "headers",
                &e.response.as_ref().map(|r| redact::headers(r.headers())),
            )
            .field("retry_after", &e.retry_after)
            .field("timeout", &e.limit)
            .field("attempts", &e.history)
            .field("detail", &e.detail.as_deref().map(redact::text))
            .field("policy", &e.policy)
            .field("give_up", &e.give_up)
            .field(
                "deadline_inherited",
                &(e.inherited && e.kind == ErrorKind::DeadlineExceeded),
            )
            .field("sent", &Error::sent_of(e))
            // The source's Debug could show more than we want (reqwest's shows its URL, which
            // is redacted by now); its Display is what a reader needs.
            .field(
                "source",
                &e.source
                    .as_ref()
                    .map(|s| redact::text(&s.to_string()).into_owned()),
            )
            .finish()
    }
}

/// The redacted text of a foreign error and of each error in its chain; the top one also
/// holds the error itself, for [`Error::unredacted_source`] only.
struct RedactedSource {
    text: String,
    next: Option<Box<RedactedSource>>,
    original: Option<BoxError>,
}

impl RedactedSource {
    /// How deep a chain is followed: a `source()` that returns itself must not overflow.
    const MAX_DEPTH: usize = 32;

    fn of(error: BoxError) -> Self {
        let mut top = RedactedSource::chain(&*error, 0);
        top.original = Some(error);
        top
    }

    fn chain(error: &(dyn std::error::Error + 'static), depth: usize) -> Self {
        RedactedSource {
            text: redact::text(&error.to_string()).into_owned(),
            next: error
                .source()
                .filter(|_| depth < Self::MAX_DEPTH)
                .map(|next| Box::new(RedactedSource::chain(next, depth + 1))),
            original: None,
        }
    }
}

impl fmt::Debug for RedactedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactedSource")
            .field("text", &self.text)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RedactedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RedactedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|next| next as _)
    }
}
