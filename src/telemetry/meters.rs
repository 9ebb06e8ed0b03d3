//! The metrics, through the `metrics` facade (feature `metrics`).

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use http::StatusCode;
use metrics::{Label, SharedString};

use super::ErrorType;
use super::overload::Guard;
use super::servers::ServerLabels;
use crate::circuit::State;

/// Gives the recorder in force the unit and help text of every metric. Descriptions go to the
/// recorder that is current when this runs (the global one, or a thread's local one); with
/// none yet installed they are lost, and the metrics still count, undescribed.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    describe_counter!(
        super::REQUESTS,
        Unit::Count,
        "Calls made, each counted once however many attempts it took."
    );
    describe_histogram!(
        super::REQUEST_DURATION,
        Unit::Seconds,
        "Duration of whole calls: every attempt, and the waits between them."
    );
    describe_histogram!(
        super::REQUEST_ATTEMPTS,
        Unit::Count,
        "Attempts a call took, hedges included."
    );
    describe_counter!(
        super::ATTEMPTS,
        Unit::Count,
        "Attempts made: each request sent, retries and hedges included."
    );
    describe_histogram!(
        super::ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of HTTP client requests (one attempt each)."
    );
    describe_counter!(
        super::RETRIES,
        Unit::Count,
        "Retries scheduled, by the failed attempt's error type."
    );
    describe_counter!(
        super::GIVE_UPS,
        Unit::Count,
        "Calls that ended on a transient failure without retrying it, by reason."
    );
    describe_counter!(
        super::BREAKER_REJECTIONS,
        Unit::Count,
        "Requests an open circuit breaker turned away."
    );
    // A state has no unit.
    describe_gauge!(
        super::BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open, 3 forced open, 4 forced closed."
    );
    describe_counter!(
        super::OVERLOAD_WAITS,
        Unit::Count,
        "Calls or attempts an overload guard held back before letting them out, by reason."
    );
    describe_counter!(
        super::OVERLOAD_REJECTIONS,
        Unit::Count,
        "Calls, attempts or retries an overload guard turned away, by reason."
    );
    describe_counter!(
        super::OVERLOAD_HOLDS,
        Unit::Count,
        "Endpoints held at their server's request (Retry-After, or its advertised quota spent)."
    );
    describe_counter!(
        super::HEDGES,
        Unit::Count,
        "Hedged requests, by outcome: sent, won or skipped."
    );
    describe_counter!(
        super::ENDPOINTS_OVER_BOUND,
        Unit::Count,
        "Endpoints added to a policy's breakers or overload guards past max_breakers."
    );
}

fn policy_label(policy: Option<&Arc<str>>) -> Label {
    let value = match policy {
        Some(name) => SharedString::from(name.clone()),
        None => SharedString::const_str("default"),
    };
    Label::new("policy", value)
}

fn error_type_value(error_type: ErrorType) -> SharedString {
    match error_type {
        ErrorType::Status(status) => SharedString::from_owned(status.as_str().to_owned()),
        ErrorType::Kind(kind) => SharedString::const_str(kind.as_str()),
    }
}

/// Adds `server`'s `server.address` and `server.port` to `labels`.
fn push_server(labels: &mut Vec<Label>, server: Option<&ServerLabels>) {
    if let Some(server) = server {
        labels.push(Label::new("server.address", server.address.clone()));
        labels.push(Label::new("server.port", server.port.clone()));
    }
}

/// Room for a call's or an attempt's labels: four, and the server's two if it has them.
fn capacity(server: Option<&ServerLabels>) -> usize {
    if server.is_some() { 6 } else { 4 }
}

pub(super) fn attempt(
    policy: Option<&Arc<str>>,
    method: &'static str,
    server: Option<&ServerLabels>,
    status: Option<StatusCode>,
    error_type: Option<ErrorType>,
    duration: Duration,
) {
    let mut labels = Vec::with_capacity(capacity(server));
    labels.push(policy_label(policy));
    labels.push(Label::from_static_parts("http.request.method", method));
    push_server(&mut labels, server);
    if let Some(status) = status {
        labels.push(Label::new(
            "http.response.status_code",
            SharedString::from_owned(status.as_str().to_owned()),
        ));
    }
    if let Some(error_type) = error_type {
        labels.push(Label::new("error.type", error_type_value(error_type)));
    }
    metrics::counter!(super::ATTEMPTS, labels.clone()).increment(1);
    metrics::histogram!(super::ATTEMPT_DURATION, labels).record(duration.as_secs_f64());
}

pub(super) fn call(
    policy: Option<&Arc<str>>,
    criticality: crate::overload::Criticality,
    method: &'static str,
    server: Option<&ServerLabels>,
    error_type: Option<ErrorType>,
    attempts: u32,
    duration: Duration,
) {
    let policy = policy_label(policy);
    let outcome = if error_type.is_some() {
        "error"
    } else {
        "success"
    };
    let outcome = Label::from_static_parts("outcome", outcome);
    let mut labels = Vec::with_capacity(capacity(server) + 1);
    labels.push(policy.clone());
    labels.push(Label::from_static_parts("http.request.method", method));
    labels.push(outcome.clone());
    labels.push(Label::from_static_parts(
        "criticality",
        criticality.as_str(),
    ));
    if let Some(error_type) = error_type {
        labels.push(Label::new("error.type", error_type_value(error_type)));
    }
    push_server(&mut labels, server);
    metrics::counter!(super::REQUESTS, labels).increment(1);
    let mut labels = Vec::with_capacity(capacity(server) - 2);
    labels.push(policy.clone());
    labels.push(outcome);
    push_server(&mut labels, server);
    metrics::histogram!(super::REQUEST_DURATION, labels).record(duration.as_secs_f64());
    let mut labels = Vec::with_capacity(capacity(server) - 3);
    labels.push(policy);
    push_server(&mut labels, server);
    metrics::histogram!(super::REQUEST_ATTEMPTS, labels).record(f64::from(attempts));
}

pub(super) fn retry(policy: Option<&Arc<str>>, reason: ErrorType) {
    let labels = vec![
        policy_label(policy),
        Label::new("reason", error_type_value(reason)),
    ];
    metrics::counter!(super::RETRIES, labels).increment(1);
}

/// One more of the overload counter `name`, for `guard` (no `reason` label: a hold set).
pub(super) fn overload(name: &'static str, policy: Option<&Arc<str>>, guard: Option<Guard>) {
    let mut labels = Vec::with_capacity(2);
    labels.push(policy_label(policy));
    if let Some(guard) = guard {
        labels.push(Label::from_static_parts("reason", guard.as_str()));
    }
    metrics::counter!(name, labels).increment(1);
}

/// An attempt of `criticality` throttled locally: an overload rejection, reason `throttle`,
/// labelled with its criticality (3 values).
pub(super) fn throttled(policy: Option<&Arc<str>>, criticality: crate::overload::Criticality) {
    let labels = vec![
        policy_label(policy),
        Label::from_static_parts("reason", Guard::Throttle.as_str()),
        Label::from_static_parts("criticality", criticality.as_str()),
    ];
    metrics::counter!(super::OVERLOAD_REJECTIONS, labels).increment(1);
}

/// A hedge `outcome`: `sent`, `won` (it answered first), `skipped` (a guard kept it back).
pub(super) fn hedge(policy: Option<&Arc<str>>, outcome: &'static str) {
    let labels = vec![
        policy_label(policy),
        Label::from_static_parts("outcome", outcome),
    ];
    metrics::counter!(super::HEDGES, labels).increment(1);
}

pub(super) fn give_up(policy: Option<&Arc<str>>, reason: &'static str) {
    let labels = vec![
        policy_label(policy),
        Label::from_static_parts("reason", reason),
    ];
    metrics::counter!(super::GIVE_UPS, labels).increment(1);
}

/// The breaker keys with metric series of their own, in the whole process: a series cannot
/// be removed from a recorder once made, so this only grows, and only through
/// [`breaker_series`], which each registry calls at most `max_breakers` times with room.
static BREAKER_SERIES: LazyLock<RwLock<Keys>> = LazyLock::new(Default::default);

type Keys = HashSet<Arc<str>, foldhash::fast::RandomState>;

/// The `breaker` label of the breakers without a series of their own.
pub(crate) const OTHER_BREAKERS: &str = "_OTHER";

/// Whether the breaker `key` has series of its own. One that has none yet gets them when
/// `room` (its registry has handed out fewer than `max_breakers`); the answer is
/// [`Series::New`] only then, so the registry can count what it handed out.
pub(crate) fn breaker_series(key: &Arc<str>, room: bool) -> Series {
    if has_series(key) {
        return Series::Own;
    }
    if !room {
        return Series::Shared;
    }
    let mut keys = BREAKER_SERIES
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if keys.insert(key.clone()) {
        Series::New
    } else {
        Series::Own
    }
}

fn has_series(key: &str) -> bool {
    BREAKER_SERIES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(key)
}

/// What [`breaker_series`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Series {
    /// The key already had series.
    Own,
    /// The key has just been given series.
    New,
    /// The key has none: its rejections count under [`OTHER_BREAKERS`].
    Shared,
}

/// The key's own label value, if it has series of its own.
fn breaker_label(key: &Arc<str>) -> Option<SharedString> {
    has_series(key).then(|| SharedString::from(key.clone()))
}

pub(crate) fn breaker_rejected(key: &Arc<str>) {
    let label = breaker_label(key).unwrap_or(SharedString::const_str(OTHER_BREAKERS));
    metrics::counter!(super::BREAKER_REJECTIONS, "breaker" => label).increment(1);
}

/// Sets the state gauge of a breaker with series of its own. The others have no gauge: one
/// value cannot stand for the states of many breakers (their state changes are still events,
/// and `client.breakers()` reads them).
pub(crate) fn breaker_state(key: &Arc<str>, state: State) {
    let Some(label) = breaker_label(key) else {
        return;
    };
    let value = match state {
        State::Closed => 0.0,
        State::HalfOpen => 1.0,
        State::Open => 2.0,
        State::ForcedOpen => 3.0,
        State::ForcedClosed => 4.0,
    };
    metrics::gauge!(super::BREAKER_STATE, "breaker" => label).set(value);
}
