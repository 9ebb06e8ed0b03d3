//! Policy files in TOML: the `[default]` policy and `[[endpoint]]` rules.
//!
//! Every mistake is an error that names the file, the line and the key, e.g.
//! `policy.toml:14: unknown key "atempts" in [[endpoint]] "payments"`: unknown keys are
//! rejected (a typo must not silently keep the default), and so are wrong types and values out
//! of range. Durations are written as humans write them: `"250ms"`, `"2s"`, `"1m 30s"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{EndpointPolicy, Matcher};
use crate::error::Error;
use crate::retry::Jitter;

/// The parsed file: the default policy's settings and the endpoint rules, in order.
#[derive(Debug)]
pub(crate) struct PolicyFile {
    pub(crate) default: EndpointPolicy,
    pub(crate) endpoints: Vec<(String, Matcher, EndpointPolicy)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<RawPolicy>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
}

/// The settings a policy table may hold; `[[endpoint]]` tables also hold `name` and `match`.
macro_rules! policy_table {
    ($name:ident { $($extra:tt)* }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            #[serde(default, deserialize_with = "at_least_one")]
            attempts: Option<u32>,
            #[serde(default, deserialize_with = "positive_duration")]
            attempt_timeout: Option<Duration>,
            #[serde(default, deserialize_with = "positive_duration")]
            deadline: Option<Duration>,
            #[serde(default, deserialize_with = "positive_duration")]
            connect_timeout: Option<Duration>,
            #[serde(default, deserialize_with = "statuses")]
            retry_statuses: Option<Vec<u16>>,
            retry_non_idempotent: Option<bool>,
            idempotency_key: Option<bool>,
            #[serde(default, deserialize_with = "duration")]
            retry_after_cap: Option<Duration>,
            backoff: Option<RawBackoff>,
            breaker: Option<RawBreaker>,
        }

        impl $name {
            fn settings(self) -> EndpointPolicy {
                let backoff = self.backoff.unwrap_or_default();
                let breaker = self.breaker.unwrap_or_default();
                EndpointPolicy {
                    attempts: self.attempts,
                    attempt_timeout: self.attempt_timeout,
                    deadline: self.deadline,
                    connect_timeout: self.connect_timeout,
                    retry_statuses: self.retry_statuses,
                    retry_non_idempotent: self.retry_non_idempotent,
                    idempotency_key: self.idempotency_key,
                    retry_after_cap: self.retry_after_cap,
                    backoff_base: backoff.base,
                    backoff_max: backoff.max,
                    backoff_multiplier: backoff.multiplier,
                    jitter: backoff.jitter,
                    breaker_enabled: breaker.enabled,
                    breaker_window: breaker.window_size,
                    breaker_failure_rate: breaker.failure_rate,
                    breaker_min_calls: breaker.min_calls,
                    breaker_open_for: breaker.open_for,
                    breaker_half_open_probes: breaker.half_open_probes,
                    breaker_key: breaker.key,
                }
            }
        }
    };
}

policy_table!(RawPolicy {});
policy_table!(RawEndpoint {
    name: String,
    #[serde(rename = "match", default)]
    matcher: RawMatch,
});

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    #[serde(default, deserialize_with = "duration")]
    base: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    max: Option<Duration>,
    #[serde(default, deserialize_with = "multiplier")]
    multiplier: Option<f64>,
    #[serde(default, deserialize_with = "jitter")]
    jitter: Option<Jitter>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "at_least_one")]
    window_size: Option<u32>,
    #[serde(default, deserialize_with = "rate")]
    failure_rate: Option<f64>,
    #[serde(default, deserialize_with = "at_least_one")]
    min_calls: Option<u32>,
    #[serde(default, deserialize_with = "positive_duration")]
    open_for: Option<Duration>,
    #[serde(default, deserialize_with = "at_least_one")]
    half_open_probes: Option<u32>,
    key: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    host: Option<String>,
    path: Option<String>,
    methods: Option<Vec<String>>,
}

fn custom<E: serde::de::Error>(message: String) -> E {
    E::custom(message)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        custom(format!(
            "invalid duration {text:?} ({e}); write e.g. \"250ms\" or \"2s\""
        ))
    })
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match duration(d)? {
        Some(value) if value.is_zero() => Err(custom("must be above zero".into())),
        value => Ok(value),
    }
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(custom("must be at least 1".into())),
        value => Ok(Some(value)),
    }
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let value = f64::deserialize(d)?;
    if value > 0.0 && value <= 1.0 {
        Ok(Some(value))
    } else {
        Err(custom(format!(
            "must be above 0 and at most 1, got {value}"
        )))
    }
}

fn multiplier<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let value = f64::deserialize(d)?;
    if value >= 1.0 {
        Ok(Some(value))
    } else {
        Err(custom(format!("must be at least 1, got {value}")))
    }
}

fn jitter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Jitter>, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "full" => Ok(Some(Jitter::Full)),
        "equal" => Ok(Some(Jitter::Equal)),
        "decorrelated" => Ok(Some(Jitter::Decorrelated)),
        "none" => Ok(Some(Jitter::None)),
        _ => Err(custom(format!(
            "unknown jitter {text:?}; one of \"full\", \"equal\", \"decorrelated\", \"none\""
        ))),
    }
}

fn statuses<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u16>>, D::Error> {
    let list = Vec::<u16>::deserialize(d)?;
    match list.iter().find(|code| !(100..=599).contains(*code)) {
        Some(code) => Err(custom(format!("{code} is not an HTTP status"))),
        None => Ok(Some(list)),
    }
}

impl PolicyFile {
    /// Parses `text`; `origin` (the file name) starts every error message.
    pub(crate) fn parse(origin: &str, text: &str) -> Result<PolicyFile, Error> {
        let raw: RawFile = toml::from_str(text).map_err(|e| locate(origin, text, &e))?;
        let default = raw.default.map(RawPolicy::settings).unwrap_or_default();
        let mut endpoints = Vec::with_capacity(raw.endpoint.len());
        for (index, endpoint) in raw.endpoint.into_iter().enumerate() {
            let name = endpoint.name.clone();
            let at = |message: String| {
                let line = endpoint_line(text, index);
                Error::invalid_config(format!(
                    "{origin}:{line}: {message} in [[endpoint]] {name:?}"
                ))
            };
            let mut matcher = Matcher::new();
            if let Some(host) = &endpoint.matcher.host {
                matcher = matcher
                    .host(host)
                    .map_err(|e| at(e.detail().unwrap_or("invalid host").into()))?;
            }
            if let Some(path) = &endpoint.matcher.path {
                matcher = matcher.path(path);
            }
            if let Some(methods) = &endpoint.matcher.methods {
                matcher = matcher
                    .methods(methods)
                    .map_err(|e| at(e.detail().unwrap_or("invalid method").into()))?;
            }
            endpoints.push((name, matcher, endpoint.settings()));
        }
        Ok(PolicyFile { default, endpoints })
    }
}

/// The line of the `index`-th `[[endpoint]]` header.
fn endpoint_line(text: &str, index: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with("[[endpoint]]"))
        .nth(index)
        .map_or(1, |(n, _)| n + 1)
}

/// Turns a TOML error into `file:line: message in [section]`, naming the key.
fn locate(origin: &str, text: &str, err: &toml::de::Error) -> Error {
    let message = err.message().trim();
    let Some(span) = err.span() else {
        return Error::invalid_config(format!("{origin}: {message}"));
    };
    let offset = span.start.min(text.len());
    let line = text[..offset].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let section = section_at(text, offset);
    let message = match message.strip_prefix("unknown field `") {
        Some(rest) => {
            let key = rest.split('`').next().unwrap_or(rest);
            format!("unknown key {key:?}")
        }
        None => match line_text.split_once('=') {
            Some((key, _)) => format!("{} {message}", quoted(key.trim())),
            None => message.to_owned(),
        },
    };
    Error::invalid_config(format!("{origin}:{line}: {message} in {section}"))
}

fn quoted(key: &str) -> String {
    format!("{key:?}:")
}

/// The table that holds byte `offset`: `[default.backoff]`, or `[[endpoint]] "payments"`.
fn section_at(text: &str, offset: usize) -> String {
    // Headers before the offending line: a mistake in a header line belongs to the level above.
    let before = &text[..text[..offset].rfind('\n').map_or(0, |i| i + 1)];
    let header = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .unwrap_or("the top level");
    if !header.starts_with("[[endpoint]]") && !header.starts_with("[endpoint.") {
        return header.to_owned();
    }
    // The endpoint's name may come after the offending line: look through its whole table.
    let start = before.rfind("[[endpoint]]").unwrap_or(0);
    let block = &text[start..];
    let end = block[1..]
        .find("[[endpoint]]")
        .map_or(block.len(), |i| i + 1);
    let name = block[..end].lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches('"').to_owned())
    });
    match name {
        Some(name) => format!("[[endpoint]] {name:?}"),
        None => "[[endpoint]]".to_owned(),
    }
}
