//! The spans, events and metrics of one call, driven by the call's retry bookkeeping (the one
//! driver's, for every path).

use std::sync::Arc;
use std::time::Duration;

use tracing::Span;
use tracing::field::{Empty, display};

use super::overload::Guard;
use super::{ErrorType, outcome_of};
use crate::error::Error;
use crate::overload::Criticality;
use crate::redact::DisplayUrl;

/// Watches one call. Without a DEBUG subscriber and without the `metrics` feature it is one
/// null pointer, and each of its methods a branch.
#[derive(Default)]
pub(crate) struct Observer {
    spans: Option<Box<Spans>>,
    #[cfg(feature = "metrics")]
    method: &'static str,
    /// The call's `server.address` and `server.port` labels, if its policy adds them.
    #[cfg(feature = "metrics")]
    server: Option<Arc<super::servers::ServerLabels>>,
    /// The call's criticality, its requests' `criticality` label.
    #[cfg(feature = "metrics")]
    criticality: Criticality,
}

struct Spans {
    call: Span,
    attempt: Span,
    /// The attempts' `otel.kind`: `client`, or `internal` where the chain below sends them
    /// (see `Sender::EXCHANGES`).
    kind: &'static str,
}

pub(super) fn policy_name(policy: Option<&Arc<str>>) -> &str {
    policy.map_or("default", |p| p)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Observer {
    /// A call of `request` under `policy` begins; `exchanges`: whether each attempt is the
    /// exchange on the wire (its span then OpenTelemetry's CLIENT span); `servers`: the
    /// policy's server labels, if its metrics have them.
    pub(crate) fn new(
        request: &reqwest::Request,
        policy: Option<&Arc<str>>,
        criticality: Criticality,
        exchanges: bool,
        servers: Option<&super::ServerSeries>,
    ) -> Self {
        let call = tracing::debug_span!(
            target: "resilient_http",
            "request",
            otel.kind = "internal",
            http.request.method = %request.method(),
            url.full = %DisplayUrl(request.url()),
            policy = policy_name(policy),
            criticality = criticality.as_str(),
            http.response.status_code = Empty,
            error.type = Empty,
            attempts = Empty,
            duration_ms = Empty,
        );
        #[cfg(not(feature = "metrics"))]
        let _ = servers;
        let spans = (!call.is_disabled()).then(|| {
            Box::new(Spans {
                call,
                attempt: Span::none(),
                kind: if exchanges { "client" } else { "internal" },
            })
        });
        Observer {
            spans,
            #[cfg(feature = "metrics")]
            method: super::method(request.method()),
            #[cfg(feature = "metrics")]
            server: servers.map(|servers| servers.labels(request.url())),
            #[cfg(feature = "metrics")]
            criticality,
        }
    }

    /// Whether anything reports this call (a subscriber at DEBUG, or metrics).
    pub(crate) fn watching(&self) -> bool {
        cfg!(feature = "metrics") || self.spans.is_some()
    }

    /// The call's span, entered until the guard drops (`None` when nobody listens).
    pub(crate) fn enter_call(&self) -> Option<tracing::span::EnteredSpan> {
        self.spans.as_ref().map(|s| s.call.clone().entered())
    }

    /// The current attempt's span, entered until the guard drops.
    pub(crate) fn enter_attempt(&self) -> Option<tracing::span::EnteredSpan> {
        self.spans.as_ref().map(|s| s.attempt.clone().entered())
    }

    /// Attempt `number` (1 for the first) of `request` begins.
    pub(crate) fn attempt_started(&mut self, number: u32, request: &reqwest::Request) {
        if let Some(spans) = self.spans.as_mut() {
            spans.attempt = attempt_span(spans, number, request, false);
        }
    }

    /// The span of hedge `number`, of `request`, which begins beside the current attempt.
    pub(crate) fn hedge_span(&self, number: u32, request: &reqwest::Request) -> Span {
        match &self.spans {
            Some(spans) => attempt_span(spans, number, request, true),
            None => Span::none(),
        }
    }

    /// Makes `span` the current attempt's; returns the one it replaces.
    pub(crate) fn swap_attempt(&mut self, span: Span) -> Span {
        match self.spans.as_mut() {
            Some(spans) => std::mem::replace(&mut spans.attempt, span),
            None => Span::none(),
        }
    }

    /// Hedge `attempt` goes out.
    pub(crate) fn hedge_sent(&self, policy: Option<&Arc<str>>, attempt: u32) {
        tracing::debug!(attempt, policy = policy_name(policy), "hedge sent");
        #[cfg(feature = "metrics")]
        super::meters::hedge(policy, "sent");
    }

    /// The current attempt, a hedge, answered first; the others were cancelled.
    pub(crate) fn hedge_won(&self, policy: Option<&Arc<str>>) {
        #[cfg(feature = "metrics")]
        super::meters::hedge(policy, "won");
        #[cfg(not(feature = "metrics"))]
        let _ = policy;
    }

    /// A hedge was due, and `guard` kept it back.
    pub(crate) fn hedge_skipped(&self, policy: Option<&Arc<str>>, guard: Guard) {
        tracing::debug!(
            reason = guard.as_str(),
            policy = policy_name(policy),
            "hedge skipped"
        );
        #[cfg(feature = "metrics")]
        super::meters::hedge(policy, "skipped");
    }

    /// The current attempt lost its race: another answered first, and it was dropped.
    pub(crate) fn attempt_cancelled(&mut self) {
        if let Some(spans) = self.spans.as_mut() {
            spans.attempt.record("error.type", "cancelled");
            spans.attempt = Span::none();
        }
    }

    /// The current attempt ended with `result` after `duration`.
    pub(crate) fn attempt_ended(
        &mut self,
        policy: Option<&Arc<str>>,
        result: Result<http::StatusCode, &Error>,
        duration: Duration,
    ) {
        let (status, error_type) = outcome_of(result);
        #[cfg(feature = "metrics")]
        super::meters::attempt(
            policy,
            self.method,
            self.server.as_deref(),
            status,
            error_type,
            duration,
        );
        #[cfg(not(feature = "metrics"))]
        let _ = (policy, duration);
        if let Some(spans) = self.spans.as_mut() {
            record(&spans.attempt, status, error_type);
            spans.attempt = Span::none();
        }
    }

    /// The call ended with `result` after `attempts` attempts.
    pub(crate) fn call_ended(
        &self,
        policy: Option<&Arc<str>>,
        result: Result<http::StatusCode, &Error>,
        attempts: u32,
        duration: Duration,
    ) {
        let (status, error_type) = outcome_of(result);
        #[cfg(feature = "metrics")]
        super::meters::call(
            policy,
            self.criticality,
            self.method,
            self.server.as_deref(),
            error_type,
            attempts,
            duration,
        );
        #[cfg(not(feature = "metrics"))]
        let _ = policy;
        if let Some(spans) = &self.spans {
            record(&spans.call, status, error_type);
            spans.call.record("attempts", attempts);
            spans.call.record("duration_ms", millis(duration));
        }
    }

    /// The failed `attempt`'s stream was turned away by the server (an HTTP/2 refusal or
    /// graceful shutdown): the request goes out again at once, the call's `resent`-th such
    /// resend (see [`crate::retry::MAX_RESENDS`]). DEBUG: a server's routine connection turnover.
    pub(crate) fn resending(&self, policy: Option<&Arc<str>>, attempt: u32, resent: u32) {
        tracing::debug!(
            attempt,
            resent,
            policy = policy_name(policy),
            "resending: the server turned the stream away"
        );
    }

    /// A retry of the failed `attempt`, which failed with `reason`, is scheduled in `delay`
    /// (which the server's `Retry-After` set if `retry_after`).
    pub(crate) fn retrying(
        &self,
        policy: Option<&Arc<str>>,
        attempt: u32,
        reason: ErrorType,
        retry_after: bool,
        delay: Duration,
    ) {
        tracing::info!(
            attempt,
            reason = %reason,
            delay_ms = millis(delay),
            retry_after,
            policy = policy_name(policy),
            "retry scheduled"
        );
        #[cfg(feature = "metrics")]
        super::meters::retry(policy, reason);
    }

    /// The failed `attempt` is not retried, for `reason`. `permanent` when retrying could not
    /// have helped; `announced` when another event already said why (an open breaker, a
    /// hold or the rate limit).
    pub(crate) fn not_retried(
        &self,
        policy: Option<&Arc<str>>,
        attempt: u32,
        reason: &'static str,
        permanent: bool,
        announced: bool,
    ) {
        let name = policy_name(policy);
        if permanent || announced {
            // The caller sees the error; an operator need not, or already did.
            tracing::debug!(attempt, reason, policy = name, "not retried");
        } else {
            tracing::warn!(attempt, reason, policy = name, "retry skipped");
        }
        #[cfg(feature = "metrics")]
        if !permanent {
            super::meters::give_up(policy, reason);
        }
    }
}

/// The span of attempt `number` (1 for the first), following OpenTelemetry's HTTP client
/// span: named `{method}` (there is no low-cardinality target to add), `HTTP` for a
/// non-standard method.
fn attempt_span(spans: &Spans, number: u32, request: &reqwest::Request, hedge: bool) -> Span {
    let url = request.url();
    let name = match super::method(request.method()) {
        super::OTHER_METHOD => "HTTP",
        method => method,
    };
    tracing::debug_span!(
        target: "resilient_http",
        parent: &spans.call,
        "attempt",
        otel.name = name,
        otel.kind = spans.kind,
        http.request.resend_count = number.saturating_sub(1),
        http.request.method = %request.method(),
        url.full = %DisplayUrl(url),
        server.address = url.host_str().unwrap_or(""),
        server.port = url.port_or_known_default(),
        hedge,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

fn record(span: &Span, status: Option<http::StatusCode>, error_type: Option<ErrorType>) {
    if let Some(status) = status {
        span.record("http.response.status_code", status.as_u16());
    }
    if let Some(error_type) = error_type {
        span.record("error.type", display(error_type));
    }
}
