//! What the library tells an operator: tracing spans and events, and (feature `metrics`)
//! metrics through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Nothing fails silently: a retry, a retry not made, a breaker changing state, an endpoint
//! held at its server's request, a request an overload guard held back, and a request the
//! breaker, an overload guard or an outer layer turned away are all events, and every call is
//! a span with one child per attempt. Nothing is built when nobody listens: spans and events
//! cost a level check when their level is off, and metrics are compiled out without the
//! feature. URLs and headers pass through [`redact`](crate::redact) first.
//!
//! # Spans (target `resilient_http`, level DEBUG)
//!
//! - `request`, one per call, the logical operation (`otel.kind = "internal"`):
//!   `http.request.method`, `url.full` (redacted), `policy`, `criticality` (`critical`,
//!   `default` or `sheddable`: see [`Criticality`](crate::overload::Criticality)), and when
//!   it ends
//!   `http.response.status_code`, `error.type`, `attempts`, `duration_ms`.
//! - `attempt`, a child per attempt (hedges included), following OpenTelemetry's HTTP client
//!   span: `otel.name` (the method, `"GET"`, or `"HTTP"` for a non-standard one: no
//!   low-cardinality route is known), `otel.kind = "client"`, `http.request.resend_count`
//!   (0 for the first attempt, then the attempt's number less one), `http.request.method`,
//!   `url.full` (redacted), `server.address`, `server.port`, `hedge` (whether it is a
//!   [hedge](crate::hedge)), and when it ends `http.response.status_code` and `error.type`
//!   (`cancelled` for an attempt that lost its race to another).
//!
//! So each exchange on the wire has one CLIENT span, under one INTERNAL span for the call,
//! as OpenTelemetry asks of a client that retries. With
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) these become OpenTelemetry
//! spans as they are; enable DEBUG for target `resilient_http` in its filter.
//!
//! ## Next to reqwest-tracing
//!
//! Under [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) the exchange is the
//! rest of the reqwest-middleware chain's to make, so there the `attempt` span is
//! `otel.kind = "internal"`, and reqwest-tracing's `TracingMiddleware` makes the CLIENT span
//! (and, with one of its OpenTelemetry features, sends `traceparent`). Add it **after** `ResilientMiddleware`: each attempt runs the
//! chain below, so each exchange gets one CLIENT span of its own, inside the `attempt`
//! span. Before it, reqwest-tracing's one span would cover the whole call, retries and
//! waits included.
//!
//! ```no_run
//! # #[cfg(feature = "reqwest-middleware")]
//! # fn chain() -> Result<(), Box<dyn std::error::Error>> {
//! use resilient_http::middleware::ResilientMiddleware;
//! use reqwest_tracing::TracingMiddleware;
//!
//! let http = reqwest::Client::builder().retry(reqwest::retry::never()).build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(ResilientMiddleware::new(resilient_http::Client::builder())?)
//!     .with(TracingMiddleware::default()) // after: one CLIENT span per exchange
//!     .build();
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! `error.type` is the status code for a failure status (`"503"`), otherwise the error
//! kind's [`as_str`](crate::ErrorKind::as_str) (`"timeout"`, `"reset"`, `"circuit_open"`...).
//!
//! # Events
//!
//! | message | level | fields |
//! |---|---|---|
//! | `retry scheduled` | INFO | `attempt`, `reason` (the failed attempt's `error.type`), `delay_ms`, `retry_after` (whether the server's `Retry-After` set the delay), `policy` |
//! | `retry skipped` | WARN | `attempt`, `reason`: why the call stopped, as the error's [`give_up`](crate::Error::give_up) says it ([`GiveUp::as_str`](crate::GiveUp::as_str): `attempts_exhausted`, `non_idempotent`, `body_not_replayable`, `retry_after_above_cap`, `deadline`, `schedule_ended`, `budget_exhausted` (the endpoint's retry budget is spent), `bulkhead_full`), `policy` |
//! | `not retried` | DEBUG | a permanent failure (`reason = "permanent"`), or a refusal already announced by its own event: an open circuit (`circuit_open`), the hold or the rate limit (`rate_limited`): `attempt`, `reason`, `policy` |
//! | `circuit breaker opened` | WARN | `endpoint` (the breaker key), `from`, `to` |
//! | `circuit breaker state changed` | INFO | the same, for every other change |
//! | `request rejected: circuit open` | DEBUG | `endpoint` (one event per request turned away; the state change is the WARN) |
//! | `endpoint held` | INFO | `endpoint` (the key), `retry_after_ms`, `policy`: a 429 or 503 with a `Retry-After` within the cap holds the endpoint; once when the hold begins, not for each answer that lengthens it. Or `endpoint` (the server quota's scope), `reason = "server_quota"`, `reset_ms`, `policy`: the quota the server advertises is spent, said by the first call to wait for its reset |
//! | `server quota learned` | DEBUG | `endpoint` (the scope), `quota` (the server's policy name, if any), `limit`, `remaining`, `reset_ms`, `policy`: an answer advertised a quota the scope did not know, or a new window of one (not said for each answer) |
//! | `request delayed` | DEBUG | `endpoint`, `reason` (`retry_after`: the endpoint is held; `server_quota`: the server's quota is spent, or paced; `rate_limit`), `wait_ms`, `policy`: an attempt waits, then asks again (for the local rate limit it waits for the slot it reserved, and goes: one event per waiting attempt) |
//! | `request rejected: rate limited` | DEBUG | `endpoint`, `reason` (as above), `retry_after_ms` (the wait that did not fit the deadline), `policy` |
//! | `request queued: bulkhead full` | DEBUG | `endpoint`, `max_in_flight`, `queue_ms` (the longest it may queue: the queue timeout or the deadline), `policy` |
//! | `request rejected: bulkhead full` | DEBUG | `endpoint`, `max_in_flight`, `policy`: at once (no queue timeout) or after queueing |
//! | `request queued: adaptive concurrency limit reached` | DEBUG | `endpoint` (the adaptive limit's scope), `limit` (the limit now), `queue_ms`, `policy`: an attempt waits for a place under the adaptive limit |
//! | `request rejected: adaptive concurrency limit reached` | DEBUG | `endpoint`, `limit`, `policy`: at once (no queue timeout) or after queueing (kind `BulkheadFull`) |
//! | `adaptive concurrency limit changed` | INFO | `endpoint` (the scope), `old_limit` (the last one said), `limit`, `policy` (the call whose attempt moved it): the limit moved more than 10 % away from the last one said |
//! | `endpoint map over its bound` | WARN | `map` (`breakers`: a policy's endpoints, breaker and guards together when both are kept per endpoint, the default; `overload_guards`: guards without a breaker per endpoint), `endpoints`, `max_endpoints`: a policy's endpoints outgrew [`max_breakers`](crate::breaker::BreakerConfigBuilder::max_breakers) because every endpoint kept still limits a call (an open or half-open breaker, a spent rate limit, a drawn-down retry budget, a hold, calls in flight or queued), which is never dropped; once per map |
//! | `hedge sent` | DEBUG | `attempt` (the hedge's number), `policy` |
//! | `hedge skipped` | DEBUG | `reason` (`budget`, `retry_after`, `server_quota`, `rate_limit`, `circuit_open`, or `service_not_ready`: the service under a `RetryLayer` or `ResilientLayer` of your own pushed back), `policy`: a hedge was due and was kept back |
//! | `request rejected by an outer layer` | DEBUG | `http.request.method`, `url.full`, `error.type`, `error`: a [`layer`](crate::ClientBuilder::layer) of yours (a load shed, a bulkhead) refused the call |
//!
//! To see a request's attempts: `RUST_LOG=resilient_http=debug`.
//!
//! Per-request refusals are DEBUG, as the breaker's are: in an overload they come by the
//! thousand, and the caller has each as an error. What an operator sees at INFO is what
//! changed (a hold begins; an adaptive limit moves more than 10 %; a breaker's change is the
//! WARN), and the counters below. A spent
//! retry budget stays the WARN `retry skipped` of each call it ends, as every transient
//! failure returned without a retry is. There is no "bulkhead filled" or "budget ran dry"
//! event: knowing when one begins and ends would need a check on the path of calls let
//! through at once, which the guards keep free of anything but their own work.
//!
//! # Metrics (feature `metrics`)
//!
//! Names follow OpenTelemetry's HTTP client conventions where one exists. Labels are bounded:
//! the policy name, the method (`_OTHER` for non-standard ones), a status code or error type,
//! a reason, or a breaker key; never a URL. Request metrics have no host label unless a
//! policy asks for one ([server labels](#server-labels)): a service that calls user-supplied
//! URLs (webhooks) would have unbounded hosts, and endpoint policies are the bounded grouping.
//!
//! The breaker metrics are per breaker, labelled `breaker` with its key (`scheme://host:port`
//! unless the policy names one). Bounding the breakers does not bound these series: a
//! recorder keeps every series it was ever given (the `metrics` facade cannot delete one), so
//! a registry that evicts and makes breakers for ever new hosts would leave a trail of them.
//! So the label values are bounded themselves: each breaker registry (one per policy with a
//! breaker) gives a label of its own to at most
//! [`max_breakers`](crate::breaker::BreakerConfigBuilder::max_breakers) keys over its life,
//! the first it meets. Breakers beyond share `breaker = "_OTHER"`:
//!
//! - their rejections count under `_OTHER` (a sum means something);
//! - they have no state gauge (one value cannot stand for the states of many breakers); their
//!   state changes are still the events above, and `client.breakers()` reads them.
//!
//! An evicted breaker's gauge is set to 0 (closed), since that is what the next call to its
//! endpoint finds, rather than left saying "open" for a breaker that no longer exists. A key
//! has one series per process: two clients calling one endpoint write the same series. If
//! `_OTHER` grows, raise `max_breakers` (up to 100,000) or give the policy one breaker for
//! all its hosts ([`breaker_scope`](crate::policy::EndpointPolicy::breaker_scope)
//! [`Rule`](crate::policy::Scope::Rule), labelled with the rule's name; a named scope's is
//! `name:<name>`).
//!
//! | name | type | labels |
//! |---|---|---|
//! | [`REQUESTS`] | counter | `policy`, `http.request.method`, `outcome` (`success`/`error`), `criticality` (`critical`/`default`/`sheddable`), `error.type` on errors; `server.address`, `server.port` if the policy [asks](#server-labels) (so too the next four) |
//! | [`REQUEST_DURATION`] | histogram (seconds) | `policy`, `outcome` |
//! | [`REQUEST_ATTEMPTS`] | histogram | `policy` |
//! | [`ATTEMPTS`] | counter | `policy`, `http.request.method`, `http.response.status_code` and/or `error.type` |
//! | [`ATTEMPT_DURATION`] | histogram (seconds) | as [`ATTEMPTS`] |
//! | [`RETRIES`] | counter | `policy`, `reason` (the failed attempt's `error.type`) |
//! | [`GIVE_UPS`] | counter | `policy`, `reason` (as the `retry skipped` event) |
//! | [`BREAKER_REJECTIONS`] | counter | `breaker` (the breaker key, or `_OTHER` beyond `max_breakers`) |
//! | [`BREAKER_STATE`] | gauge | `breaker` (only breakers with a label of their own); 0 closed, 1 half-open, 2 open, 3 forced open, 4 forced closed |
//! | [`OVERLOAD_WAITS`] | counter | `policy`, `reason`: `retry_after`, `server_quota` and `rate_limit` (an attempt waited, as the `request delayed` event), `bulkhead` (a call queued), `adaptive_concurrency` (an attempt queued under the adaptive limit) |
//! | [`OVERLOAD_REJECTIONS`] | counter | `policy`, `reason`: `retry_after`, `server_quota` and `rate_limit` (kind `RateLimited`), `bulkhead` (`BulkheadFull`, at once or after queueing), `adaptive_concurrency` (`BulkheadFull` naming the adaptive limit), `budget` (a retry the budget refused: `BudgetExhausted`, also in [`GIVE_UPS`] as `budget_exhausted`), `throttle` (an attempt throttled locally: `Throttled`, with a `criticality` label) |
//! | [`OVERLOAD_HOLDS`] | counter | `policy`: endpoints that became held at their server's request (a `Retry-After`, or the quota it advertises spent) |
//! | [`HEDGES`] | counter | `policy`, `outcome`: `sent`, `won` (the call's answer came from a hedge), `skipped` (due, but kept back: see [`hedge`](crate::hedge)) |
//! | [`ENDPOINTS_OVER_BOUND`] | counter | `map`: `breakers` (with the guards beside them, when both are kept per endpoint) or `overload_guards`; an endpoint added past `max_breakers` because every one kept was busy (see the `endpoint map over its bound` event) |
//!
//! Every metric is described to the recorder, with its unit ([`metrics::Unit`]: seconds for
//! the durations, a count for the others; the breaker state has none) and help text, when a
//! client, an adapter or a layer is built: install the recorder first, or call [`describe`]
//! after installing it (see there for what happens otherwise).
//!
//! ## Server labels
//!
//! A policy with [`metrics_server_address`](crate::policy::EndpointPolicy::metrics_server_address)
//! (the file's `metrics_server_address = true` in its table; default off) adds
//! OpenTelemetry's `server.address` (the URL's host) and `server.port` to its request and
//! attempt metrics. They are bounded as the breaker labels are: the policy gives labels of
//! its own to the first [`max_breakers`](crate::breaker::BreakerConfigBuilder::max_breakers)
//! servers it meets, over its life (a reload keeps them), and the others share
//! `server.address = "_OTHER"`, `server.port = "_OTHER"`. Turn it on for a policy that calls
//! a known set of hosts, not for one that calls whatever URL it is given.
//!
//! ```
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! let client = resilient_http::Client::builder()
//!     .endpoint(
//!         "partners",
//!         Matcher::new().host("*.partners.example.com")?,
//!         EndpointPolicy::new().metrics_server_address(true),
//!     )
//!     .build();
//! # #[cfg(feature = "metrics")]
//! # assert!(client.is_ok());
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! ## Prometheus: histogram buckets
//!
//! [`metrics-exporter-prometheus`](https://docs.rs/metrics-exporter-prometheus) renders a
//! histogram as a *summary* (quantiles computed in each process, which cannot be added up
//! across replicas) unless it is given buckets for it. Give the durations OpenTelemetry's
//! buckets for HTTP client durations, 5 ms to 10 s. The durations are described in seconds
//! ([`metrics::Unit::Seconds`]); the exporter adds a `_seconds` suffix to their names only
//! with `PrometheusBuilder::set_enable_unit_suffix(true)`:
//!
//! ```
//! # #[cfg(feature = "metrics")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//! use resilient_http::telemetry;
//!
//! /// OpenTelemetry's advice for `http.client.request.duration`, in seconds.
//! const HTTP_DURATION: &[f64] = &[
//!     0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
//! ];
//!
//! let prometheus = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Full(telemetry::ATTEMPT_DURATION.into()), HTTP_DURATION)?
//!     .set_buckets_for_metric(Matcher::Full(telemetry::REQUEST_DURATION.into()), HTTP_DURATION)?
//!     .set_buckets_for_metric(
//!         Matcher::Full(telemetry::REQUEST_ATTEMPTS.into()),
//!         &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0],
//!     )?
//!     .install_recorder()?;
//! // Built after the recorder is installed: the metrics are described to it.
//! let client = resilient_http::Client::new()?;
//! # let server = resilient_http::testkit::FaultServer::start().await?;
//! # server.script("/", [resilient_http::testkit::Reply::ok("ok")]);
//! # let url = server.url("/");
//! client.get(&url).send().await?;
//!
//! // Serve this on your `/metrics` route.
//! let text = prometheus.render();
//! assert!(text.contains("# TYPE http_client_request_duration histogram"), "{text}");
//! assert!(text.contains(r#"le="0.005""#), "{text}");
//! assert!(text.contains("# HELP http_client_request_duration Duration of HTTP client"), "{text}");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "metrics"))]
//! # fn main() {}
//! ```
//!
//! The overload metrics are labelled by policy, not by endpoint, though each guard is per
//! endpoint key: policies are few and named by you, so the series stay bounded with no
//! bookkeeping, and they group as the request metrics do. An endpoint label would need the
//! breakers' scheme above (series handed out per registry, `_OTHER` beyond), for a set of
//! keys that is the breakers' under another label. The events name the endpoint. A
//! counter moves only when a guard holds a call back or turns it away, or a hold begins;
//! a call let through at once costs nothing here. For the same reason there are no gauges
//! (calls in flight, a hold's time left): keeping one true would mean writing it on every
//! call, or per endpoint.

// The docs link to `describe` and `metrics::Unit`, which only the `metrics` feature has
// (docs.rs builds every feature).
#![cfg_attr(not(feature = "metrics"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "metrics")]
pub(crate) mod meters;

/// Gives the recorder in force the unit ([`metrics::Unit`]) and help text of every metric
/// above (the exporter shows them: Prometheus's `# HELP` and, for the durations, seconds).
///
/// Building a [`Client`](crate::Client), a
/// [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) or a layer already does
/// this, so install the recorder first and there is nothing to call. A recorder installed
/// after that has none of the descriptions (the `metrics` facade hands them to the recorder
/// current at the time, and a description given to no recorder is lost): call this once it
/// is installed. The metrics themselves count either way. Describing again is harmless.
///
/// ```
/// let recorder = metrics_util::debugging::DebuggingRecorder::new();
/// metrics::with_local_recorder(&recorder, resilient_http::telemetry::describe);
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    meters::describe();
}
mod observer;
pub(crate) mod overload;
#[cfg(feature = "metrics")]
mod servers;

#[cfg(feature = "metrics")]
pub(crate) use servers::ServerSeries;
/// Without the `metrics` feature there are no server labels (the setting is refused).
#[cfg(not(feature = "metrics"))]
#[derive(Debug)]
pub(crate) enum ServerSeries {}

pub(crate) use observer::Observer;

/// Calls made (counter).
pub const REQUESTS: &str = "resilient_http.requests";
/// Duration of a whole call, retries and sleeps included (histogram, seconds).
pub const REQUEST_DURATION: &str = "resilient_http.request.duration";
/// Attempts per call (histogram).
pub const REQUEST_ATTEMPTS: &str = "resilient_http.request.attempts";
/// Attempts made (counter).
pub const ATTEMPTS: &str = "resilient_http.attempts";
/// Duration of one attempt: OpenTelemetry's HTTP client request duration (histogram, seconds).
pub const ATTEMPT_DURATION: &str = "http.client.request.duration";
/// Retries scheduled (counter).
pub const RETRIES: &str = "resilient_http.retries";
/// Calls that ended on a transient failure without retrying it (counter).
pub const GIVE_UPS: &str = "resilient_http.give_ups";
/// Requests an open breaker turned away (counter).
pub const BREAKER_REJECTIONS: &str = "resilient_http.breaker.rejections";
/// A breaker's state (gauge).
pub const BREAKER_STATE: &str = "resilient_http.breaker.state";
/// Calls or attempts an overload guard held back before letting them out (counter).
pub const OVERLOAD_WAITS: &str = "resilient_http.overload.waits";
/// Calls, attempts or retries an overload guard turned away (counter).
pub const OVERLOAD_REJECTIONS: &str = "resilient_http.overload.rejections";
/// Endpoints held at their server's request (`Retry-After`) (counter).
pub const OVERLOAD_HOLDS: &str = "resilient_http.overload.holds";
/// Hedged requests (counter), by `outcome`: `sent`, `won` (the call's answer came from a
/// hedge: a success or a permanent failure), `skipped` (due, but the budget, a hold, the
/// rate limit or the breaker kept it back).
pub const HEDGES: &str = "resilient_http.hedges";
/// Endpoints added to a policy's breakers or overload guards past `max_breakers`, because
/// every endpoint kept still limited a call (counter), by `map`.
pub const ENDPOINTS_OVER_BOUND: &str = "resilient_http.endpoints.over_bound";

use std::fmt;

use http::{Method, StatusCode};

use crate::error::{Error, ErrorKind};

/// OpenTelemetry's `http.request.method` value for a method outside its list.
pub(crate) const OTHER_METHOD: &str = "_OTHER";

/// OpenTelemetry's `http.request.method`: a standard method, else [`OTHER_METHOD`] (bounded).
pub(crate) fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => OTHER_METHOD,
    }
}

/// OpenTelemetry's `error.type` of an outcome: a failure status's code, else the kind.
#[derive(Clone, Copy)]
pub(crate) enum ErrorType {
    Status(StatusCode),
    Kind(ErrorKind),
}

impl ErrorType {
    pub(crate) fn of(error: &Error) -> Self {
        match (error.kind(), error.status()) {
            (ErrorKind::Status, Some(status)) => ErrorType::Status(status),
            (kind, _) => ErrorType::Kind(kind),
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorType::Status(status) => f.write_str(status.as_str()),
            ErrorType::Kind(kind) => f.write_str(kind.as_str()),
        }
    }
}

/// What an outcome shows: its status (the response's, or a failure's) and its error type.
pub(crate) fn outcome_of(
    result: Result<StatusCode, &Error>,
) -> (Option<StatusCode>, Option<ErrorType>) {
    match result {
        Ok(status) => (Some(status), None),
        Err(error) => (error.status(), Some(ErrorType::of(error))),
    }
}
