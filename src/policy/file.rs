//! Policy files in TOML: the `[default]` policy and `[[endpoint]]` rules; the same layout
//! from any serde format as [`PolicyConfig`].
//!
//! Every mistake is an error that names the file, the line and the key, e.g.
//! `policy.toml:14: unknown key "atempts" in [[endpoint]] "payments"`: unknown keys are
//! rejected (a typo must not silently keep the default), and so are wrong types and values out
//! of range: every numeric key has a maximum, the same one its builder setter has (see
//! [`bounds`]). Durations are written as humans write them: `"250ms"`, `"2s"`, `"1m 30s"`.
//! Formats without lines get the key in the message itself (`"max_attempts": must be ...`), and a
//! policy's name where the file would give its line.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::compiled::Base;
use super::{CompiledPolicy, EndpointPolicy, Matcher, Scope, Unshared};
use crate::bounds;
use crate::deadline::DeadlineHeader;
use crate::error::Error;
use crate::hedge::HedgeConfig;
use crate::overload::{
    AdaptiveConcurrencyConfig, BulkheadConfig, Criticality, Follow, LimitAlgorithm, QuotaHeaders,
    RateLimitConfig, ResetFormat, ServerQuotaConfig, ThrottleConfig,
};
use crate::retry::{BudgetConfig, Jitter};

/// The parsed file: the default policy's settings and the endpoint rules, in order.
#[derive(Debug)]
pub(crate) struct PolicyFile {
    pub(crate) default: EndpointPolicy,
    pub(crate) endpoints: Vec<(String, Matcher, EndpointPolicy)>,
    /// The `[redis]` table's settings.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::fleet::FleetConfig>,
    /// The file these policies come from, if they come from one.
    pub(crate) source: Option<FileSource>,
}

/// A policy file's name, text and policies, kept by the client builder so that what only
/// `build` can refuse (a shared limit, against the client's Redis, which may be given after
/// the file) names the file, the line and the key, as the file's other mistakes do.
#[derive(Clone, Debug)]
pub(crate) struct FileSource {
    origin: String,
    text: String,
    default: EndpointPolicy,
    rules: Vec<(String, EndpointPolicy)>,
}

impl FileSource {
    /// `refused` as `file:line: "key": why in [section]`, if this file made the setting it
    /// is about as `value` has it: in its default policy (`rule` `None`), or in its endpoint
    /// rule `rule`. `None` when the file did not (the builder, or another file, did).
    pub(crate) fn locate(
        &self,
        rule: Option<&str>,
        value: &EndpointPolicy,
        refused: &Unshared,
    ) -> Option<String> {
        let setting = refused.setting;
        let (index, ours) = match rule {
            None => (None, &self.default),
            Some(name) => {
                let index = self.rules.iter().position(|(n, _)| n == name)?;
                (Some(index), &self.rules.get(index)?.1)
            }
        };
        if !setting.is_set(ours) || !setting.same(ours, value) {
            return None;
        }
        let (table, keys) = setting.in_file();
        let lines = policy_lines(&self.text, index);
        // The line that sets the first of `keys` it can find in `table`: in its own header's
        // lines (`[default.rate_limit]`), inline (`rate_limit = { rate = 5 }`) or dotted
        // (`rate_limit.rate = 5`).
        let in_table = |line: &str, header: &str, key: &str| {
            let header: String = header.chars().filter(|c| !c.is_whitespace()).collect();
            let bare: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            let sets = |parts: &[char]| line.split(parts).any(|part| part.trim() == key);
            (header.ends_with(&format!(".{table}]")) && sets(&['{', ',', '=']))
                || ((bare.starts_with(&format!("{table}="))
                    || bare.starts_with(&format!("{table}.")))
                    && sets(&['{', ',', '=', '.']))
        };
        let (number, key, header) = keys.iter().find_map(|key| {
            let (number, _, header) = lines
                .iter()
                .find(|(_, line, header)| in_table(line, header, key))?;
            Some((*number, *key, header.as_str()))
        })?;
        let section = match rule {
            Some(name) => format!("[[endpoint]] {name:?}"),
            None => header.to_owned(),
        };
        let (origin, why) = (&self.origin, &refused.why);
        Some(format!("{origin}:{number}: {key:?}: {why} in {section}"))
    }
}

impl FileSource {
    /// `file:line: "key" in [default]` for a `key` of this file's `[default]` table itself
    /// (`attempt_timeout = "2s"`), if the file sets it there.
    pub(crate) fn default_key(&self, key: &str) -> Option<String> {
        let (number, _, _) =
            policy_lines(&self.text, None)
                .into_iter()
                .find(|(_, line, table)| {
                    table == "[default]" && line.split('=').next().map(str::trim) == Some(key)
                })?;
        Some(format!("{}:{number}: {key:?} in [default]", self.origin))
    }
}

/// The policy file's layout, read from any serde format: a section of your own configuration
/// (TOML, YAML, JSON, through `config`, `figment`, ...) for
/// [`ClientBuilder::config`](crate::ClientBuilder::config).
///
/// The keys are the policy file's (see [the guide](crate::guide::policies#in-a-toml-file)): a `default` table and an `endpoint`
/// list, each entry with a `name`, a `match` table (required: `match = {}` takes every
/// request) and the same settings. Durations are
/// strings as humans write them (`"250ms"`, `"2s"`, `"1m 30s"`). Unknown keys are refused, and
/// so are values out of range, with the same ranges as the builders; the message names the
/// key. Settings that contradict each other are refused by the builder, naming the policy.
///
/// ```
/// use resilient_http::Client;
/// use resilient_http::policy::PolicyConfig;
///
/// #[derive(serde::Deserialize)]
/// struct Settings {
///     database_url: String,
///     http: PolicyConfig,
/// }
///
/// let settings: Settings = toml::from_str(r#"
///     database_url = "postgres://localhost/orders"
///
///     [http.default]
///     max_attempts = 3
///     deadline = "10s"
///
///     [[http.endpoint]]
///     name = "payments"
///     match = { host = "api.example.com", path = "/v1/charges*", methods = ["POST"] }
///     max_attempts = 1
/// "#).map_err(|e| resilient_http::Error::invalid_config(e.to_string()))?;
/// let client = Client::builder().config(settings.http).build()?;
/// # let _ = (client, settings.database_url);
/// # Ok::<(), resilient_http::Error>(())
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub struct PolicyConfig {
    default: Option<RawPolicy>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
    // Read only to be refused (by its `url`) without the `redis` feature.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    #[serde(default, deserialize_with = "redis_table")]
    redis: Option<RedisTable>,
}

/// The settings a policy table may hold; `[[endpoint]]` tables also hold `name` and `match`.
macro_rules! policy_table {
    ($name:ident { $($extra:tt)* }) => {
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            #[serde(default, deserialize_with = "max_attempts")]
            max_attempts: Option<u32>,
            #[serde(default, deserialize_with = "attempt_timeout")]
            attempt_timeout: Option<Duration>,
            #[serde(default, deserialize_with = "deadline")]
            deadline: Option<Duration>,
            #[serde(default, deserialize_with = "connect_timeout")]
            connect_timeout: Option<Duration>,
            #[serde(default, deserialize_with = "retry_statuses")]
            retry_statuses: Option<Vec<u16>>,
            retry_non_idempotent: Option<bool>,
            idempotency_key: Option<bool>,
            #[serde(default, deserialize_with = "retry_after_cap")]
            retry_after_cap: Option<Duration>,
            #[serde(default, deserialize_with = "body_limit")]
            body_limit: Option<u64>,
            #[serde(default, deserialize_with = "replay_buffer")]
            replay_buffer: Option<u64>,
            hold_on_retry_after: Option<bool>,
            #[serde(default, deserialize_with = "hold_scope")]
            hold_scope: Option<Scope>,
            backoff: Option<RawBackoff>,
            breaker: Option<RawBreaker>,
            retry_budget: Option<RawBudget>,
            rate_limit: Option<RawRateLimit>,
            bulkhead: Option<RawBulkhead>,
            hedge: Option<RawHedge>,
            metrics_server_address: Option<bool>,
            server_quota: Option<RawServerQuota>,
            adaptive_concurrency: Option<RawAdaptive>,
            #[serde(default, deserialize_with = "propagate_deadline")]
            propagate_deadline: Option<DeadlineHeader>,
            #[serde(default, deserialize_with = "propagate_deadline_margin")]
            propagate_deadline_margin: Option<Duration>,
            throttle: Option<RawThrottle>,
            #[serde(default, deserialize_with = "criticality")]
            criticality: Option<Criticality>,
        }

        impl $name {
            /// The policy these keys set. A struct literal, no `..`: a setting without a key
            /// does not build (and a key that sets nothing is a field never read).
            fn settings(self) -> EndpointPolicy {
                let backoff = self.backoff.unwrap_or_default();
                let breaker = self.breaker.unwrap_or_default();
                let budget = self.retry_budget.unwrap_or_default();
                let redis = |shared: Option<Sharing>| shared.map(|s| s == Sharing::Redis);
                EndpointPolicy {
                    max_attempts: self.max_attempts,
                    attempt_timeout: self.attempt_timeout,
                    deadline: self.deadline,
                    connect_timeout: self.connect_timeout,
                    retry_statuses: self.retry_statuses,
                    retry_non_idempotent: self.retry_non_idempotent,
                    idempotency_key: self.idempotency_key,
                    retry_after_cap: self.retry_after_cap,
                    body_limit: self.body_limit,
                    replay_buffer: self.replay_buffer,
                    backoff_base: backoff.base,
                    backoff_max: backoff.max,
                    backoff_multiplier: backoff.multiplier,
                    jitter: backoff.jitter,
                    breaker_enabled: breaker.enabled,
                    breaker_window: breaker.window,
                    breaker_failure_rate: breaker.failure_rate,
                    breaker_min_calls: breaker.min_calls,
                    breaker_open_for: breaker.open_for,
                    breaker_open_for_max: breaker.open_for_max,
                    breaker_half_open_probes: breaker.half_open_probes,
                    breaker_count_429: breaker.count_429,
                    breaker_scope: breaker.scope,
                    retry_budget: budget.config(),
                    retry_budget_enabled: budget.enabled,
                    retry_budget_shared: redis(budget.shared),
                    retry_budget_scope: budget.scope,
                    hold_on_retry_after: self.hold_on_retry_after,
                    hold_scope: self.hold_scope,
                    rate_limit_shared: redis(self.rate_limit.as_ref().and_then(|r| r.shared)),
                    rate_limit_scope: self.rate_limit.as_ref().and_then(|r| r.scope.clone()),
                    bulkhead_scope: self.bulkhead.as_ref().and_then(|b| b.scope.clone()),
                    rate_limit: self.rate_limit.map(|r| {
                        RateLimitConfig::new(r.rate, r.per.unwrap_or(Duration::from_secs(1)))
                            .burst(r.burst.unwrap_or(1))
                    }),
                    bulkhead: self.bulkhead.map(|b| {
                        BulkheadConfig::new(b.max_in_flight, b.queue_timeout.unwrap_or_default())
                    }),
                    hedge: self
                        .hedge
                        .map(|h| HedgeConfig::new(h.after, h.max.unwrap_or(1))),
                    metrics_server_address: self.metrics_server_address,
                    propagate_deadline: self.propagate_deadline,
                    propagate_deadline_margin: self.propagate_deadline_margin,
                    server_quota_scope: (self.server_quota.as_ref())
                        .and_then(|q| q.scope.clone()),
                    server_quota: self.server_quota.and_then(RawServerQuota::settings),
                    adaptive_concurrency_scope: (self.adaptive_concurrency.as_ref())
                        .and_then(|a| a.scope.clone()),
                    adaptive_concurrency: self
                        .adaptive_concurrency
                        .and_then(RawAdaptive::settings),
                    throttle_scope: self.throttle.as_ref().and_then(|t| t.scope.clone()),
                    throttle: self.throttle.and_then(RawThrottle::settings),
                    criticality: self.criticality,
                }
            }
        }
    };
}

policy_table!(RawPolicy {});
policy_table!(RawEndpoint {
    name: String,
    // Required: a rule without one matched every request, shadowing every rule after it.
    // `match = {}` says so on purpose.
    #[serde(rename = "match")]
    matcher: RawMatch,
});

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    #[serde(default, deserialize_with = "backoff_base")]
    base: Option<Duration>,
    #[serde(default, deserialize_with = "backoff_max")]
    max: Option<Duration>,
    #[serde(default, deserialize_with = "multiplier")]
    multiplier: Option<f64>,
    #[serde(default, deserialize_with = "jitter")]
    jitter: Option<Jitter>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "breaker_window")]
    window: Option<u32>,
    #[serde(default, deserialize_with = "failure_rate")]
    failure_rate: Option<f64>,
    #[serde(default, deserialize_with = "min_calls")]
    min_calls: Option<u32>,
    #[serde(default, deserialize_with = "open_for")]
    open_for: Option<Duration>,
    #[serde(default, deserialize_with = "open_for_max")]
    open_for_max: Option<Duration>,
    #[serde(default, deserialize_with = "half_open_probes")]
    half_open_probes: Option<u32>,
    count_429: Option<bool>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
    /// Removed: read only to say what replaced it.
    #[serde(default, deserialize_with = "removed_key")]
    #[allow(dead_code)]
    key: Option<()>,
}

/// `[….retry_budget]`: keys it leaves out take the library's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "budget_ratio")]
    ratio: Option<f64>,
    #[serde(default, deserialize_with = "min_per_second")]
    min_per_second: Option<u32>,
    #[serde(default, deserialize_with = "budget_window")]
    window: Option<Duration>,
    shared: Option<Sharing>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
}

impl RawBudget {
    /// The budget these keys describe, if they set any of it.
    fn config(&self) -> Option<BudgetConfig> {
        if self.ratio.is_none() && self.min_per_second.is_none() && self.window.is_none() {
            return None;
        }
        let default = BudgetConfig::default();
        Some(BudgetConfig::new(
            self.ratio.unwrap_or(default.ratio),
            self.min_per_second.unwrap_or(default.min_per_second),
            self.window.unwrap_or(default.window),
        ))
    }
}

/// `[….rate_limit]`: `rate` requests per `per` (default 1 s), bursts of `burst` (default 1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(deserialize_with = "request_rate")]
    rate: u32,
    #[serde(default, deserialize_with = "rate_per")]
    per: Option<Duration>,
    #[serde(default, deserialize_with = "burst")]
    burst: Option<u32>,
    shared: Option<Sharing>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
}

/// `shared` in `[….rate_limit]` and `[….retry_budget]`: kept by each process (`"local"`, the
/// default) or by the fleet in the `[redis]` table's Redis (`"redis"`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sharing {
    Local,
    Redis,
}

/// By hand, so that a value of the wrong type says what it may be (`expected "local" or
/// "redis"`; a derived enum says `wanted string or table` in TOML).
impl<'de> Deserialize<'de> for Sharing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expected;
        impl serde::de::Visitor<'_> for Expected {
            type Value = Sharing;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"local\" or \"redis\"")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Sharing, E> {
                match value {
                    "local" => Ok(Sharing::Local),
                    "redis" => Ok(Sharing::Redis),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(value), &self)),
                }
            }
        }
        d.deserialize_str(Expected)
    }
}

/// `[redis]`: the Redis the replicas share limits through (feature `redis`). Each key is
/// checked as it is read; how they go together (`seeds` only with `cluster`, …) once the table
/// is whole, by the fleet's own check (in `redis_table`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
struct RawRedis {
    #[serde(deserialize_with = "redis_url")]
    url: String,
    #[serde(default)]
    cluster: bool,
    #[serde(default, deserialize_with = "redis_seeds")]
    seeds: Vec<String>,
    #[serde(default, deserialize_with = "redis_ca_file")]
    ca_file: Option<std::path::PathBuf>,
    #[serde(default, deserialize_with = "redis_prefix")]
    prefix: Option<String>,
    #[serde(default, deserialize_with = "redis_timeout")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "sync_interval")]
    sync_interval: Option<Duration>,
}

/// What a `[redis]` table leaves once read: the fleet's settings, kept (and shown by
/// `Debug`, URLs without their secrets) as [`FleetConfig`](crate::fleet::FleetConfig).
#[cfg(feature = "redis")]
type RedisTable = crate::fleet::FleetConfig;

/// Without the `redis` feature no `[redis]` table is kept: its `url` refuses it.
#[cfg(not(feature = "redis"))]
type RedisTable = std::convert::Infallible;

/// The `[redis]` table, its keys checked together once it is whole. A mismatch names its key
/// first (`"seeds": needs cluster = true …`): a file's error then points at that key's line
/// (see `toml_error`).
fn redis_table<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RedisTable>, D::Error> {
    let Some(keys) = Option::<RawRedis>::deserialize(d)? else {
        return Ok(None);
    };
    #[cfg(feature = "redis")]
    {
        let config = keys.settings();
        match config.mismatch() {
            Some((key, why)) => Err(refused(key, why)),
            None => Ok(Some(config)),
        }
    }
    // `redis_url` refuses every `url` in this build, and `url` is required: no table gets
    // here, and one that did would be refused as its `url` is.
    #[cfg(not(feature = "redis"))]
    {
        let _ = keys;
        Err(refused("url", REDIS_FEATURE_MISSING))
    }
}

#[cfg(feature = "redis")]
impl RawRedis {
    fn settings(self) -> crate::fleet::FleetConfig {
        let mut config = crate::fleet::FleetConfig::new(self.url)
            .cluster(self.cluster)
            .seeds(self.seeds);
        if let Some(path) = self.ca_file {
            config = config.ca_file(path);
        }
        if let Some(prefix) = self.prefix {
            config = config.prefix(prefix);
        }
        if let Some(timeout) = self.timeout {
            config = config.timeout(timeout);
        }
        if let Some(every) = self.sync_interval {
            config = config.sync_interval(every);
        }
        config
    }
}

/// `[….bulkhead]`: `max_in_flight` calls at once, queueing up to `queue_timeout` (default 0).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulkhead {
    #[serde(deserialize_with = "max_in_flight")]
    max_in_flight: u32,
    #[serde(default, deserialize_with = "queue_timeout")]
    queue_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
}

/// `[….adaptive_concurrency]`: `algorithm` (default `"vegas"`), `initial`, `min`, `max`,
/// `queue_timeout`, the algorithm's own knobs and `scope`. A table with only `scope` sets
/// the scope alone; an empty one turns the limit on with the library defaults; any other
/// key sets the whole limit, what it leaves out taking the library default. A knob of
/// another algorithm than the table's is refused (it would silently do nothing).
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "AdaptiveKeys")]
struct RawAdaptive {
    keys: AdaptiveKeys,
    scope: Option<Scope>,
}

/// The keys of `[….adaptive_concurrency]`, each in its range.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveKeys {
    #[serde(default, deserialize_with = "limit_algorithm")]
    algorithm: Option<LimitAlgorithm>,
    #[serde(default, deserialize_with = "adaptive_initial")]
    initial: Option<u32>,
    #[serde(default, deserialize_with = "adaptive_min")]
    min: Option<u32>,
    #[serde(default, deserialize_with = "adaptive_max")]
    max: Option<u32>,
    #[serde(default, deserialize_with = "queue_timeout")]
    queue_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "smoothing")]
    smoothing: Option<f64>,
    #[serde(default, deserialize_with = "rtt_tolerance")]
    rtt_tolerance: Option<f64>,
    #[serde(default, deserialize_with = "long_window")]
    long_window: Option<u32>,
    #[serde(default, deserialize_with = "backoff_ratio")]
    backoff_ratio: Option<f64>,
    #[serde(default, deserialize_with = "limit_timeout")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
}

/// `[….throttle]`: client-side adaptive throttling, `k` (default 2.0) and `window` (default
/// 2 min); `scope`. A table with only `scope` sets the scope alone, as `[….server_quota]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    #[serde(default, deserialize_with = "throttle_k")]
    k: Option<f64>,
    #[serde(default, deserialize_with = "throttle_window")]
    window: Option<Duration>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
}

impl TryFrom<AdaptiveKeys> for RawAdaptive {
    type Error = String;

    fn try_from(mut keys: AdaptiveKeys) -> Result<Self, String> {
        let algorithm = keys.algorithm.unwrap_or_default();
        let knobs = [
            (
                "smoothing",
                keys.smoothing.is_some(),
                LimitAlgorithm::Gradient2,
            ),
            (
                "rtt_tolerance",
                keys.rtt_tolerance.is_some(),
                LimitAlgorithm::Gradient2,
            ),
            (
                "long_window",
                keys.long_window.is_some(),
                LimitAlgorithm::Gradient2,
            ),
            (
                "backoff_ratio",
                keys.backoff_ratio.is_some(),
                LimitAlgorithm::Aimd,
            ),
            ("timeout", keys.timeout.is_some(), LimitAlgorithm::Aimd),
        ];
        for (key, set, owner) in knobs {
            if set && owner != algorithm {
                return Err(format!(
                    "{key:?}: {key} is {owner}'s, and this limit's algorithm is {algorithm}: \
                     remove it, or set algorithm = \"{owner}\""
                ));
            }
        }
        let scope = keys.scope.take();
        Ok(RawAdaptive { keys, scope })
    }
}

impl RawAdaptive {
    /// The config these keys set, if they set any of it or none at all (an empty table turns
    /// the limit on with the defaults, as an empty `[….throttle]` does); `None` for `scope`
    /// alone.
    fn settings(self) -> Option<AdaptiveConcurrencyConfig> {
        let scope_alone = self.scope.is_some();
        let keys = self.keys;
        let set = keys.algorithm.is_some()
            || keys.initial.is_some()
            || keys.min.is_some()
            || keys.max.is_some()
            || keys.queue_timeout.is_some()
            || keys.smoothing.is_some()
            || keys.rtt_tolerance.is_some()
            || keys.long_window.is_some()
            || keys.backoff_ratio.is_some()
            || keys.timeout.is_some();
        if !set && scope_alone {
            return None;
        }
        let mut config = AdaptiveConcurrencyConfig::default();
        let defaults = config;
        config = config
            .algorithm(keys.algorithm.unwrap_or_default())
            .min(keys.min.unwrap_or(defaults.min))
            .max(keys.max.unwrap_or(defaults.max))
            .queue_timeout(keys.queue_timeout.unwrap_or(defaults.queue_timeout))
            .smoothing(keys.smoothing.unwrap_or(defaults.smoothing))
            .rtt_tolerance(keys.rtt_tolerance.unwrap_or(defaults.rtt_tolerance))
            .long_window(keys.long_window.unwrap_or(defaults.long_window))
            .backoff_ratio(keys.backoff_ratio.unwrap_or(defaults.backoff_ratio))
            .timeout(keys.timeout.unwrap_or(defaults.timeout));
        if let Some(initial) = keys.initial {
            config = config.initial(initial);
        }
        Some(config)
    }
}

/// `algorithm` in `[….adaptive_concurrency]`.
fn limit_algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LimitAlgorithm>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map(Some)
        .map_err(|why: String| refused("algorithm", why))
}

impl RawThrottle {
    /// The config these keys set, if they set any of it (not `scope` alone); what it leaves
    /// out takes the library default.
    fn settings(self) -> Option<ThrottleConfig> {
        if self.k.is_none() && self.window.is_none() && self.scope.is_some() {
            return None;
        }
        let default = ThrottleConfig::default();
        Some(
            ThrottleConfig::new()
                .k(self.k.unwrap_or(default.k))
                .window(self.window.unwrap_or(default.window)),
        )
    }
}

/// The policy's `criticality`: `"critical"`, `"default"` or `"sheddable"`.
fn criticality<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Criticality>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map(Some)
        .map_err(|why: String| refused("criticality", why))
}

/// `[….hedge]`: a hedge when an attempt has not answered after `after`, up to `max`
/// (default 1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHedge {
    #[serde(deserialize_with = "hedge_after")]
    after: Duration,
    #[serde(default, deserialize_with = "hedges")]
    max: Option<u32>,
}

/// `[….server_quota]`: `follow` (default `"hold"`), `headers` (default `"auto"`) and
/// `scope`. A table with only `scope` sets the scope alone, leaving the policy's quota
/// settings inherited.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerQuota {
    #[serde(default, deserialize_with = "follow")]
    follow: Option<Follow>,
    #[serde(default, deserialize_with = "quota_headers")]
    headers: Option<QuotaHeaders>,
    #[serde(default, deserialize_with = "scope")]
    scope: Option<Scope>,
}

impl RawServerQuota {
    /// The config these keys set, if they set any of it (not `scope` alone): set as a
    /// whole, what it leaves out takes the library default.
    fn settings(self) -> Option<ServerQuotaConfig> {
        if self.follow.is_none() && self.headers.is_none() {
            return None;
        }
        Some(ServerQuotaConfig {
            follow: self.follow.unwrap_or_default(),
            headers: self.headers.unwrap_or_default(),
        })
    }
}

/// `headers = { … }` in `[….server_quota]`: an API's own field names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuotaHeaders {
    #[serde(deserialize_with = "remaining_header")]
    remaining: http::HeaderName,
    #[serde(deserialize_with = "reset_header")]
    reset: http::HeaderName,
    #[serde(default, deserialize_with = "reset_format")]
    reset_format: Option<ResetFormat>,
    #[serde(default, deserialize_with = "limit_header")]
    limit: Option<http::HeaderName>,
}

impl RawQuotaHeaders {
    fn settings(self) -> QuotaHeaders {
        let headers = QuotaHeaders::named(self.remaining, self.reset);
        let headers = match self.reset_format {
            Some(format) => headers.reset_format(format),
            None => headers,
        };
        match self.limit {
            Some(limit) => headers.limit(limit),
            None => headers,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    host: Option<String>,
    path: Option<String>,
    methods: Option<Vec<String>>,
}

/// `why` the value of `key` is refused, naming the key: the one place a format without lines
/// (JSON, YAML, a `config` value) says where the mistake is.
fn refused<E: serde::de::Error>(key: &str, why: impl std::fmt::Display) -> E {
    E::custom(format!("{key:?}: {why}"))
}

fn duration<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        refused(
            key,
            format!("invalid duration {text:?} ({e}); write e.g. \"250ms\" or \"2s\""),
        )
    })
}

/// A whole number in `bound`. Read as a signed 64-bit number, so that `-1` and `5000000000`
/// are refused with the range rather than a type error.
fn whole<'de, D, T>(d: D, key: &str, bound: &bounds::Count) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let value = (bound.check(i64::deserialize(d)?)).map_err(|why| refused(key, why))?;
    T::try_from(value).map_err(|_| refused(key, format!("{value} is out of range")))
}

fn span<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
    bound: &bounds::Span,
) -> Result<Duration, D::Error> {
    duration(d, key).and_then(|value| bound.check(value).map_err(|why| refused(key, why)))
}

fn span_from<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
    bound: &bounds::SpanFrom,
) -> Result<Duration, D::Error> {
    duration(d, key).and_then(|value| bound.check(value).map_err(|why| refused(key, why)))
}

fn real<'de, D: Deserializer<'de>>(d: D, key: &str, bound: &bounds::Real) -> Result<f64, D::Error> {
    (bound.check(f64::deserialize(d)?)).map_err(|why| refused(key, why))
}

/// One function per key, for serde, each checking the key's range in [`bounds`] (the same
/// ranges the builders check) and naming the key when it refuses.
macro_rules! bounded {
    ($($name:ident($key:literal): $ty:ty = $how:ident($bound:expr);)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            $how(d, $key, &$bound).map(Some)
        }
    )*};
}

bounded! {
    max_attempts("max_attempts"): u32 = whole(bounds::ATTEMPTS);
    attempt_timeout("attempt_timeout"): Duration = span(bounds::TIMEOUT);
    deadline("deadline"): Duration = span(bounds::TIMEOUT);
    connect_timeout("connect_timeout"): Duration = span(bounds::TIMEOUT);
    retry_after_cap("retry_after_cap"): Duration = span(bounds::RETRY_AFTER_CAP);
    body_limit("body_limit"): u64 = whole(bounds::BODY_LIMIT);
    replay_buffer("replay_buffer"): u64 = whole(bounds::REPLAY_BUFFER);
    backoff_base("base"): Duration = span(bounds::BACKOFF_DELAY);
    backoff_max("max"): Duration = span(bounds::BACKOFF_DELAY);
    multiplier("multiplier"): f64 = real(bounds::BACKOFF_MULTIPLIER);
    breaker_window("window"): u32 = whole(bounds::WINDOW_CALLS);
    failure_rate("failure_rate"): f64 = real(bounds::RATE);
    min_calls("min_calls"): u32 = whole(bounds::MIN_CALLS);
    open_for("open_for"): Duration = span(bounds::OPEN_DURATION);
    open_for_max("open_for_max"): Duration = span(bounds::OPEN_DURATION);
    half_open_probes("half_open_probes"): u32 = whole(bounds::HALF_OPEN_PROBES);
    budget_ratio("ratio"): f64 = real(bounds::BUDGET_RATIO);
    min_per_second("min_per_second"): u32 = whole(bounds::MIN_PER_SECOND);
    budget_window("window"): Duration = span_from(bounds::BUDGET_WINDOW);
    rate_per("per"): Duration = span(bounds::RATE_PER);
    burst("burst"): u32 = whole(bounds::BURST);
    queue_timeout("queue_timeout"): Duration = span(bounds::QUEUE_TIMEOUT);
    hedges("max"): u32 = whole(bounds::HEDGES);
    redis_timeout("timeout"): Duration = span(bounds::REDIS_TIMEOUT);
    sync_interval("sync_interval"): Duration = span(bounds::REDIS_SYNC_INTERVAL);
    propagate_deadline_margin("propagate_deadline_margin"): Duration = span(bounds::DEADLINE_MARGIN);
    adaptive_initial("initial"): u32 = whole(bounds::ADAPTIVE_LIMIT);
    adaptive_min("min"): u32 = whole(bounds::ADAPTIVE_LIMIT);
    adaptive_max("max"): u32 = whole(bounds::ADAPTIVE_LIMIT);
    smoothing("smoothing"): f64 = real(bounds::SMOOTHING);
    rtt_tolerance("rtt_tolerance"): f64 = real(bounds::RTT_TOLERANCE);
    long_window("long_window"): u32 = whole(bounds::LONG_WINDOW);
    backoff_ratio("backoff_ratio"): f64 = real(bounds::BACKOFF_RATIO);
    limit_timeout("timeout"): Duration = span(bounds::LIMIT_TIMEOUT);
    throttle_k("k"): f64 = real(bounds::THROTTLE_K);
    throttle_window("window"): Duration = span_from(bounds::THROTTLE_WINDOW);
}

/// `propagate_deadline`: a header name (`"grpc-timeout"` in gRPC's format, any other in
/// milliseconds), or `false` for none (a rule turning off the default policy's).
fn propagate_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DeadlineHeader>, D::Error> {
    const KEY: &str = "propagate_deadline";
    struct Header;
    impl serde::de::Visitor<'_> for Header {
        type Value = DeadlineHeader;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "a header name, e.g. \"grpc-timeout\" or \"x-request-timeout-ms\", or false",
            )
        }

        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<DeadlineHeader, E> {
            bounds::DEADLINE_HEADER
                .check(DeadlineHeader::named(name))
                .map_err(|why| refused(KEY, why))
        }

        fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<DeadlineHeader, E> {
            if on {
                return Err(refused(
                    KEY,
                    "true does not say which header: name it, e.g. \"grpc-timeout\" or \
                     \"x-request-timeout-ms\" (false sends none)",
                ));
            }
            Ok(DeadlineHeader::none())
        }
    }
    d.deserialize_any(Header).map(Some)
}

/// `scope` in `[….breaker]`, `[….rate_limit]`, `[….bulkhead]`, `[….retry_budget]`: `"host"`,
/// `"rule"` or `"name:<name>"`.
fn scope<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Scope>, D::Error> {
    scope_of(d, "scope")
}

/// The policy's `hold_scope`, as `scope`.
fn hold_scope<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Scope>, D::Error> {
    scope_of(d, "hold_scope")
}

fn scope_of<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Option<Scope>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map(Some)
        .map_err(|e: Error| refused(key, e.detail().unwrap_or("invalid scope")))
}

/// `follow` in `[….server_quota]`.
fn follow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Follow>, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "off" => Ok(Some(Follow::Off)),
        "hold" => Ok(Some(Follow::Hold)),
        "pace" => Ok(Some(Follow::Pace)),
        _ => Err(refused(
            "follow",
            format!("unknown value {text:?}; one of \"hold\" (the default), \"pace\", \"off\""),
        )),
    }
}

/// `headers` in `[….server_quota]`: `"auto"`, or a table naming an API's own fields (read
/// by hand, so that a wrong value says what it may be, and the table's own keys say theirs).
fn quota_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<QuotaHeaders>, D::Error> {
    struct Expected;
    impl<'de> serde::de::Visitor<'de> for Expected {
        type Value = QuotaHeaders;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("\"auto\" or a table { remaining = \"…\", reset = \"…\" }")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<QuotaHeaders, E> {
            match value {
                "auto" => Ok(QuotaHeaders::auto()),
                _ => Err(refused(
                    "headers",
                    format!(
                        "unknown value {value:?}; \"auto\", or a table naming the fields: \
                         {{ remaining = \"…\", reset = \"…\" }}"
                    ),
                )),
            }
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<QuotaHeaders, A::Error> {
            let deserializer = serde::de::value::MapAccessDeserializer::new(map);
            RawQuotaHeaders::deserialize(deserializer).map(RawQuotaHeaders::settings)
        }
    }
    d.deserialize_any(Expected).map(Some)
}

/// A header name for `key` of `headers = { … }`.
fn header_name<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<http::HeaderName, D::Error> {
    let text = String::deserialize(d)?;
    http::HeaderName::from_bytes(text.as_bytes()).map_err(|_| {
        refused(
            key,
            format!("{text:?} is not a valid header name; write a field name such as \"x-ratelimit-{key}\""),
        )
    })
}

fn remaining_header<'de, D: Deserializer<'de>>(d: D) -> Result<http::HeaderName, D::Error> {
    header_name(d, "remaining")
}

fn reset_header<'de, D: Deserializer<'de>>(d: D) -> Result<http::HeaderName, D::Error> {
    header_name(d, "reset")
}

fn limit_header<'de, D: Deserializer<'de>>(d: D) -> Result<Option<http::HeaderName>, D::Error> {
    header_name(d, "limit").map(Some)
}

/// `reset_format` in `headers = { … }`.
fn reset_format<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ResetFormat>, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "seconds" => Ok(Some(ResetFormat::Seconds)),
        "epoch" => Ok(Some(ResetFormat::Epoch)),
        "duration" => Ok(Some(ResetFormat::Duration)),
        "rfc3339" => Ok(Some(ResetFormat::Rfc3339)),
        _ => Err(refused(
            "reset_format",
            format!(
                "unknown format {text:?}; one of \"seconds\", \"epoch\", \"duration\", \"rfc3339\""
            ),
        )),
    }
}

/// `key` in `[….breaker]`, removed: it put the breaker and every guard of the rule under one
/// key. Refused, saying what does that now.
fn removed_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Err(refused(
        "key",
        "removed; for one breaker per rule write scope = \"rule\" in this table (or \
         scope = \"name:<name>\" to share one with other rules), and the same `scope` in \
         [….rate_limit], [….bulkhead], [….retry_budget] and hold_scope = \"rule\" for the guards \
         it also keyed",
    ))
}

/// Why a `[redis]` table is refused by a build without the `redis` feature.
const REDIS_FEATURE_MISSING: &str =
    "needs the `redis` feature, which this build of resilient-http does not have";

/// A Redis URL the `redis` crate takes; the refusal never shows it (it may hold a password).
fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    if !cfg!(feature = "redis") {
        return Err(refused("url", REDIS_FEATURE_MISSING));
    }
    #[cfg(feature = "redis")]
    crate::fleet::check_url(&url).map_err(|why| refused("url", why))?;
    Ok(url)
}

/// More nodes of a cluster, each a URL as `url` is; the refusal never shows one.
fn redis_seeds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let seeds = Vec::<String>::deserialize(d)?;
    #[cfg(feature = "redis")]
    for seed in &seeds {
        crate::fleet::check_url(seed).map_err(|why| refused("seeds", why))?;
    }
    Ok(seeds)
}

/// A PEM file of certificate authorities that can be read now.
fn redis_ca_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::path::PathBuf>, D::Error> {
    let path = std::path::PathBuf::deserialize(d)?;
    #[cfg(feature = "redis")]
    crate::fleet::check_ca_file(&path).map_err(|why| refused("ca_file", why))?;
    Ok(Some(path))
}

fn redis_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let prefix = String::deserialize(d)?;
    bounds::redis_prefix(&prefix)
        .map(|()| Some(prefix))
        .map_err(|why| refused("prefix", why))
}

/// A required key's value, in its range.
fn request_rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole(d, "rate", &bounds::REQUEST_RATE)
}

fn max_in_flight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole(d, "max_in_flight", &bounds::MAX_IN_FLIGHT)
}

fn hedge_after<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    span(d, "after", &bounds::HEDGE_AFTER)
}

fn jitter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Jitter>, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "full" => Ok(Some(Jitter::Full)),
        "equal" => Ok(Some(Jitter::Equal)),
        "decorrelated" => Ok(Some(Jitter::Decorrelated)),
        "none" => Ok(Some(Jitter::None)),
        _ => Err(refused(
            "jitter",
            format!(
                "unknown jitter {text:?}; one of \"full\", \"equal\", \"decorrelated\", \"none\""
            ),
        )),
    }
}

fn retry_statuses<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u16>>, D::Error> {
    let list = Vec::<u16>::deserialize(d)?;
    (bounds::STATUSES.check(list))
        .map(Some)
        .map_err(|why| refused("retry_statuses", why))
}

impl PolicyFile {
    /// Parses `text`; `origin` (the file name) starts every error message. `before` names
    /// the endpoint rules defined before this file, which its rules may not redefine.
    pub(crate) fn parse(origin: &str, text: &str, before: &[&str]) -> Result<PolicyFile, Error> {
        let config: PolicyConfig = toml::from_str(text).map_err(|e| locate(origin, text, &e))?;
        let mut file = PolicyFile::read(config, Some((origin, text)), before)?;
        file.source = Some(FileSource {
            origin: origin.to_owned(),
            text: text.to_owned(),
            default: file.default.clone(),
            rules: (file.endpoints.iter())
                .map(|(name, _, policy)| (name.clone(), policy.clone()))
                .collect(),
        });
        Ok(file)
    }

    /// The policies of `config`, a value from any format; errors name the policy and the key.
    /// `before` as in [`parse`](Self::parse).
    pub(crate) fn from_config(config: PolicyConfig, before: &[&str]) -> Result<PolicyFile, Error> {
        PolicyFile::read(config, None, before)
    }

    /// `config`'s policies, from the file `origin` with `text` (whose lines errors name) or,
    /// for `None`, from a value (errors name the policy instead).
    fn read(
        config: PolicyConfig,
        file: Option<(&str, &str)>,
        before: &[&str],
    ) -> Result<PolicyFile, Error> {
        let default = config.default.map(RawPolicy::settings).unwrap_or_default();
        let mut endpoints: Vec<(String, Matcher, EndpointPolicy)> =
            Vec::with_capacity(config.endpoint.len());
        for (index, mut endpoint) in config.endpoint.into_iter().enumerate() {
            let name = std::mem::take(&mut endpoint.name);
            let matches = std::mem::take(&mut endpoint.matcher);
            let settings = endpoint.settings();
            let at = |key: &str, message: &str| match file {
                Some((origin, text)) => {
                    let line = endpoint_line(text, index, key);
                    Error::invalid_config(format!(
                        "{origin}:{line}: {key:?}: {message} in [[endpoint]] {name:?}"
                    ))
                }
                None => Error::invalid_config(format!("policy {name:?}: {key:?}: {message}")),
            };
            let defined =
                (before.iter().copied()).chain(endpoints.iter().map(|(n, _, _)| n.as_str()));
            if let Err(refused) = settings.check_rule(&name, defined) {
                return Err(at(refused.key, refused.why));
            }
            let mut matcher = Matcher::new();
            if let Some(host) = &matches.host {
                matcher = matcher
                    .host(host)
                    .map_err(|e| at("host", e.detail().unwrap_or("invalid host")))?;
            }
            if let Some(path) = &matches.path {
                matcher = matcher.path(path);
            }
            if let Some(methods) = &matches.methods {
                matcher = matcher
                    .methods(methods)
                    .map_err(|e| at("methods", e.detail().unwrap_or("invalid method")))?;
            }
            endpoints.push((name, matcher, settings));
        }
        Ok(PolicyFile {
            default,
            endpoints,
            #[cfg(feature = "redis")]
            redis: config.redis,
            source: None,
        })
    }
}

impl PolicyFile {
    /// Compiles each of the file's policies as `build` will (over `default`, what the
    /// builder's default policy sets so far, and `base`), so that a mistake only a whole
    /// policy shows (settings that contradict each other, as a breaker's `min_calls` above
    /// its `window`) names the file and the line too, when `file` is the file's name and
    /// text as in [`parse`](Self::parse); for `None` (a [`PolicyConfig`]), the error names the
    /// policy, as the builder's do.
    pub(crate) fn compiles(
        &self,
        file: Option<(&str, &str)>,
        default: &EndpointPolicy,
        base: &Base<'_>,
    ) -> Result<(), Error> {
        let located = |endpoint: Option<(usize, &str)>, err: Error| match file {
            Some((origin, text)) => at_setting(origin, text, endpoint, &err),
            None => err,
        };
        let default = self.default.inherit(default);
        CompiledPolicy::compile("default", &default, base).map_err(|err| located(None, err))?;
        for (index, (name, _, settings)) in self.endpoints.iter().enumerate() {
            CompiledPolicy::compile(name, &settings.inherit(&default), base)
                .map_err(|err| located(Some((index, name)), err))?;
        }
        Ok(())
    }
}

/// `err`, from compiling the file's default policy (`None`) or its `index`-th endpoint rule
/// `name`, as `file:line: message in [section]`: the line that sets the first key the message
/// names, else the policy's first line.
fn at_setting(origin: &str, text: &str, endpoint: Option<(usize, &str)>, err: &Error) -> Error {
    let detail = err.detail().unwrap_or("invalid setting");
    // `compile` starts its messages with `policy "name": `; the section says that here.
    let detail = match detail.split_once(": ") {
        Some((policy, rest)) if policy.starts_with("policy ") => rest,
        _ => detail,
    };
    let lines = policy_lines(text, endpoint.map(|(index, _)| index));
    let words = detail
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty());
    let sets = |line: &str, key: &str| line.split(['{', ',', '=']).any(|part| part.trim() == key);
    let found = words
        .flat_map(|word| lines.iter().filter(move |(_, line, _)| sets(line, word)))
        .next()
        .or(lines.first());
    let (line, table) = found.map_or((1, "[default]"), |(n, _, t)| (*n, t.as_str()));
    let section = match endpoint {
        Some((_, name)) => format!("[[endpoint]] {name:?}"),
        None => table.to_owned(),
    };
    Error::invalid_config(format!("{origin}:{line}: {detail} in {section}"))
}

/// The lines of the default policy (`None`) or of the `index`-th endpoint rule: each line's
/// number, text, and the header of the table it is in.
fn policy_lines(text: &str, endpoint: Option<usize>) -> Vec<(usize, &str, String)> {
    let mut lines = Vec::new();
    let mut table = String::new();
    let mut endpoints = 0;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if is_header(trimmed) {
            table = trimmed.split('#').next().unwrap_or("").trim().to_owned();
            endpoints += usize::from(table.replace(' ', "") == "[[endpoint]]");
        }
        let ours = match endpoint {
            None => table == "[default]" || table.starts_with("[default."),
            Some(index) => endpoints == index + 1,
        };
        if ours {
            lines.push((number + 1, line, table.clone()));
        }
    }
    lines
}

/// The line of the `index`-th `[[endpoint]]` header.
fn endpoint_line(text: &str, index: usize, key: &str) -> usize {
    let line_of = |at: usize| text.get(..at).map_or(1, |t| t.matches('\n').count() + 1);
    let Some((start, _)) = headers(text)
        .filter(|(_, h)| h == "[[endpoint]]")
        .nth(index)
    else {
        return 1;
    };
    // The line that sets `key` within this endpoint's table, else its header.
    let block = text.get(start..).unwrap_or("");
    let end = headers(block)
        .skip(1)
        .find(|(_, h)| h == "[[endpoint]]")
        .map_or(block.len(), |(at, _)| at);
    let mut at = start;
    for line in block.get(..end).unwrap_or("").split_inclusive('\n') {
        let mentions = line.split(['{', ',', '=']).any(|part| part.trim() == key);
        if mentions {
            return line_of(at);
        }
        at += line.len();
    }
    line_of(start)
}

/// Turns a TOML error into `file:line: message in [section]`, naming the key.
fn locate(origin: &str, text: &str, err: &toml::de::Error) -> Error {
    Error::invalid_config(toml_error(origin, text, err, "endpoint", renamed))
}

/// A TOML error as `file:line: message in [section]`, naming the key: the words of every
/// TOML file the crate reads (policy files; the simulator's scenario files, whose array of
/// named tables is `phase` where a policy's is `endpoint`). `renamed` gives the key that
/// replaced an old one.
pub(crate) fn toml_error(
    origin: &str,
    text: &str,
    err: &toml::de::Error,
    array: &str,
    renamed: fn(&str) -> Option<&'static str>,
) -> String {
    let message = err.message().trim();
    let Some(span) = err.span() else {
        return format!("{origin}: {message}");
    };
    let offset = span.start.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let mut line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    // The key is the last `key =` before the offending value on its line (inline tables
    // hold several).
    let line_text = text.get(line_start..offset).unwrap_or("");
    let section = section_at(text, offset, array);
    // The key the error is about, as serde names it (`unknown field `x``).
    let named = |rest: &str| rest.split('`').next().unwrap_or(rest).to_owned();
    let message = if let Some(rest) = message.strip_prefix("unknown field `") {
        let key = named(rest);
        match renamed(&key) {
            Some(now) => format!("unknown key {key:?} (renamed to {now:?} in 0.1)"),
            None => format!("unknown key {key:?}"),
        }
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let key = named(rest);
        let hint = if key == "match" {
            " (write match = {} for a rule that takes every request)"
        } else {
            ""
        };
        format!("missing key {key:?}{hint}")
    } else if message.starts_with("duplicate key") {
        // toml names no key: it is the one the error points at.
        let key = text.get(span.clone()).unwrap_or("").trim();
        let key = key
            .split(['=', ' '])
            .next()
            .unwrap_or(key)
            .trim_matches(['"', '\'']);
        format!("duplicate key {key:?}")
    } else {
        match line_text.rsplit_once('=') {
            Some((key, _)) => {
                let key = key.rsplit(['{', ',']).next().unwrap_or(key).trim();
                // Our own messages name the key (for formats without lines): say it once, as
                // the line writes it (`breaker.min_calls`).
                let leaf = key.rsplit('.').next().unwrap_or(key);
                let message =
                    (message.strip_prefix(&quoted(leaf))).map_or(message, str::trim_start);
                format!("{} {message}", quoted(key))
            }
            None => {
                // A table's own check (how its keys go together) points at the table: the
                // line is that of the key its message names (`"seeds": …`), if the table
                // sets it.
                let named = (message.strip_prefix('"'))
                    .and_then(|rest| rest.split_once("\":"))
                    .map(|(key, _)| key);
                if let Some(at) = named.and_then(|key| key_line(text, line_start, key)) {
                    line = at;
                }
                message.to_owned()
            }
        }
    };
    format!("{origin}:{line}: {message} in {section}")
}

/// The line that sets `key` in the table whose header (or first line) starts at `start`.
fn key_line(text: &str, start: usize, key: &str) -> Option<usize> {
    let first = text.get(..start)?.matches('\n').count() + 1;
    let table = text.get(start..)?.lines().enumerate();
    for (index, line) in table {
        let trimmed = line.trim();
        if is_header(trimmed) {
            if index == 0 {
                continue;
            }
            return None;
        }
        let sets = trimmed
            .split_once('=')
            .map(|(name, _)| name.trim().trim_matches(['"', '\'']));
        if sets == Some(key) {
            return Some(first + index);
        }
    }
    None
}

/// The key that replaced a key of an earlier draft of the file's layout, so that an old file
/// says what to write instead of only "unknown key" (see CHANGELOG.md).
fn renamed(key: &str) -> Option<&'static str> {
    Some(match key {
        "attempts" => "max_attempts",
        "window_size" => "window",
        "budget" => "retry_budget",
        _ => return None,
    })
}

fn quoted(key: &str) -> String {
    format!("{key:?}:")
}

/// The table that holds byte `offset`: `[default.backoff]`, or `[[endpoint]] "payments"`
/// (`array` names the file's array of named tables: `endpoint`).
pub(crate) fn section_at(text: &str, offset: usize, array: &str) -> String {
    let line_start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(offset..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| offset + i);
    // A mistake in a header line is about that table (a missing key, say); one in a key line
    // belongs to the header above it.
    let current = text.get(line_start..line_end).unwrap_or("").trim();
    let upto = if is_header(current) {
        line_end
    } else {
        line_start
    };
    let before = text.get(..upto).unwrap_or("");
    let Some((header_at, header)) = headers(before).last() else {
        return "the top level".to_owned();
    };
    let (item, sub) = (format!("[[{array}]]"), format!("[{array}."));
    if !header.starts_with(&item) && !header.starts_with(&sub) {
        return header;
    }
    // The endpoint's name may come after the offending line: look through its whole table.
    let start = headers(before)
        .filter(|(_, h)| *h == item)
        .last()
        .map_or(header_at, |(at, _)| at);
    let after = text.get(start..).unwrap_or("");
    let end = headers(after)
        .skip(1)
        .find(|(_, h)| *h == item)
        .map_or(after.len(), |(at, _)| at);
    match endpoint_name(after.get(..end).unwrap_or("")) {
        Some(name) => format!("{item} {name:?}"),
        None => item,
    }
}

fn is_header(line: &str) -> bool {
    line.starts_with('[')
}

/// Table headers with their byte offsets, spaces removed (`[[ endpoint ]]` is valid TOML).
fn headers(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut at = 0;
    text.split_inclusive('\n').filter_map(move |line| {
        let start = at;
        at += line.len();
        let trimmed = line.trim();
        is_header(trimmed).then(|| {
            let header: String = trimmed
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            (start, header)
        })
    })
}

/// The `name = "..."` of an endpoint table (comments and spacing allowed).
fn endpoint_name(block: &str) -> Option<String> {
    block.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "name" {
            return None;
        }
        let value = value.trim().strip_prefix('"')?;
        Some(value.split('"').next().unwrap_or(value).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overload::{QuotaHeaders, ResetFormat, ServerQuotaConfig};

    fn parse(text: &str) -> Result<PolicyFile, Error> {
        PolicyFile::parse("quota.toml", text, &[])
    }

    /// `text` is refused with a message that contains `want` and names `table`.
    fn assert_refused(text: &str, want: &str, table: &str) {
        let shown = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            shown.contains(want),
            "{text}\n  got: {shown}\n  want: {want}"
        );
        assert!(shown.contains(table), "{text}\n  got: {shown}");
    }

    /// Every key of `[….server_quota]`, in a header table and inline.
    #[test]
    fn every_server_quota_key_is_read() -> Result<(), Error> {
        let file = parse(
            r#"
            [default.server_quota]
            follow = "pace"
            scope = "name:openai"
            headers = { remaining = "X-RateLimit-Remaining-Requests", reset = "x-ratelimit-reset-requests", reset_format = "duration", limit = "x-ratelimit-limit-requests" }

            [[endpoint]]
            name = "anthropic"
            match = { host = "api.anthropic.com" }
            [endpoint.server_quota]
            follow = "hold"
            scope = "rule"
            [endpoint.server_quota.headers]
            remaining = "anthropic-ratelimit-requests-remaining"
            reset = "anthropic-ratelimit-requests-reset"
            reset_format = "rfc3339"
            "#,
        )?;
        let openai = ServerQuotaConfig::pace().headers(
            QuotaHeaders::named(
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            )
            .reset_format(ResetFormat::Duration)
            .limit("x-ratelimit-limit-requests"),
        );
        assert_eq!(file.default.server_quota, Some(openai));
        assert_eq!(
            file.default.server_quota_scope,
            Some(Scope::named("openai")?)
        );
        let anthropic = ServerQuotaConfig::hold().headers(
            QuotaHeaders::named(
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            )
            .reset_format(ResetFormat::Rfc3339),
        );
        let rule = file.endpoints.first().map(|(_, _, policy)| policy);
        assert_eq!(rule.and_then(|p| p.server_quota.clone()), Some(anthropic));
        assert_eq!(
            rule.and_then(|p| p.server_quota_scope.clone()),
            Some(Scope::Rule)
        );
        Ok(())
    }

    #[test]
    fn each_follow_and_reset_format_is_read() -> Result<(), Error> {
        for (follow, want) in [
            ("hold", ServerQuotaConfig::hold()),
            ("pace", ServerQuotaConfig::pace()),
            ("off", ServerQuotaConfig::off()),
        ] {
            let file = parse(&format!("[default.server_quota]\nfollow = \"{follow}\"\n"))?;
            assert_eq!(file.default.server_quota, Some(want), "{follow}");
        }
        for (format, want) in [
            ("seconds", ResetFormat::Seconds),
            ("epoch", ResetFormat::Epoch),
            ("duration", ResetFormat::Duration),
            ("rfc3339", ResetFormat::Rfc3339),
        ] {
            let file = parse(&format!(
                "[default.server_quota]\nheaders = {{ remaining = \"a\", reset = \"b\", \
                 reset_format = \"{format}\" }}\n"
            ))?;
            // `follow` left out: "hold".
            let headers = QuotaHeaders::named("a", "b").reset_format(want);
            let want = ServerQuotaConfig::hold().headers(headers);
            assert_eq!(file.default.server_quota, Some(want), "{format}");
        }
        let file = parse("[default.server_quota]\nheaders = \"auto\"\n")?;
        assert_eq!(file.default.server_quota, Some(ServerQuotaConfig::hold()));
        Ok(())
    }

    /// The default follows the quota (hold, `auto`); `follow = "off"` keeps no guard; a
    /// table with only `scope` leaves the quota inherited.
    #[test]
    fn off_is_off_and_the_default_is_hold() -> Result<(), Error> {
        let file = parse("[default]\nmax_attempts = 2\n")?;
        assert_eq!(file.default.server_quota, None);
        assert_eq!(
            file.default.followed_quota(),
            Some(ServerQuotaConfig::hold())
        );
        let file = parse("[default.server_quota]\nfollow = \"off\"\n")?;
        assert_eq!(file.default.followed_quota(), None);
        let file = parse("[default.server_quota]\nscope = \"rule\"\n")?;
        assert_eq!(file.default.server_quota, None);
        assert_eq!(file.default.server_quota_scope, Some(Scope::Rule));
        Ok(())
    }

    /// Each mistake names the file, the line and the key.
    #[test]
    fn server_quota_mistakes_name_the_line_and_the_key() {
        let table = "[default.server_quota]";
        let cases = [
            (
                "follow = \"sometimes\"",
                "quota.toml:3: \"follow\": unknown value \"sometimes\"; one of \"hold\" (the \
                 default), \"pace\", \"off\" in [default.server_quota]",
            ),
            (
                "headers = { remaining = \"a\", reset = \"b\", reset_format = \"weeks\" }",
                "quota.toml:3: \"reset_format\": unknown format \"weeks\"",
            ),
            (
                "headers = { remaining = \"requests left\", reset = \"b\" }",
                "quota.toml:3: \"remaining\": \"requests left\" is not a valid header \
                 name; write a field name such as \"x-ratelimit-remaining\"",
            ),
            ("folow = \"hold\"", "quota.toml:3: unknown key \"folow\""),
            (
                "headers = { remaining = \"a\", reset = \"b\", format = \"epoch\" }",
                "quota.toml:3: unknown key \"format\"",
            ),
            (
                "headers = { remaining = \"a\" }",
                "quota.toml:3: missing key \"reset\"",
            ),
            (
                "headers = \"manual\"",
                "quota.toml:3: \"headers\": unknown value \"manual\"",
            ),
            ("scope = \"everywhere\"", "quota.toml:3: \"scope\":"),
        ];
        for (line, want) in cases {
            assert_refused(&format!("\n{table}\n{line}\n"), want, table);
        }
        // In an endpoint rule's own `headers` table: its line, and the rule.
        let text = "[[endpoint]]\nname = \"openai\"\nmatch = {}\n[endpoint.server_quota.headers]\n\
                    remaining = \"a\"\nreset = \"b\"\nreset_format = \"weeks\"\n";
        let shown = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        let want = "quota.toml:7: \"reset_format\": unknown format \"weeks\"";
        assert!(shown.contains(want), "got: {shown}\n  want: {want}");
        assert!(shown.ends_with("in [[endpoint]] \"openai\""), "{shown}");
    }

    /// Every key of `[….adaptive_concurrency]`; a table of `scope` alone sets the scope
    /// alone; a table without `initial` starts within its `min` and `max`.
    #[test]
    fn every_adaptive_concurrency_key_is_read() -> Result<(), Error> {
        use crate::overload::AdaptiveConcurrencyConfig;
        let file = parse(
            r#"
            [default.adaptive_concurrency]
            algorithm = "gradient2"
            initial = 10
            min = 2
            max = 50
            queue_timeout = "250ms"
            smoothing = 0.5
            rtt_tolerance = 2.0
            long_window = 100
            scope = "rule"

            [[endpoint]]
            name = "slow"
            match = {}
            [endpoint.adaptive_concurrency]
            algorithm = "aimd"
            backoff_ratio = 0.75
            timeout = "2s"
            max = 8
            "#,
        )?;
        let want = AdaptiveConcurrencyConfig::gradient2()
            .initial(10)
            .min(2)
            .max(50)
            .queue_timeout(Duration::from_millis(250))
            .smoothing(0.5)
            .rtt_tolerance(2.0)
            .long_window(100);
        assert_eq!(file.default.adaptive_concurrency, Some(want));
        assert_eq!(file.default.adaptive_concurrency_scope, Some(Scope::Rule));
        let rule = file.endpoints.first().map(|(_, _, p)| p);
        let aimd = AdaptiveConcurrencyConfig::aimd()
            .backoff_ratio(0.75)
            .timeout(Duration::from_secs(2))
            .max(8);
        assert_eq!(rule.and_then(|p| p.adaptive_concurrency), Some(aimd));
        // 20 is above its max: it starts at 8.
        assert_eq!(aimd.initial_limit(), 8);
        let file = parse("[default.adaptive_concurrency]\nscope = \"name:db\"\n")?;
        assert_eq!(file.default.adaptive_concurrency, None);
        assert!(file.default.adaptive_concurrency_scope.is_some());
        // An empty table turns it on with the defaults.
        let file = parse("[default.adaptive_concurrency]\n")?;
        assert_eq!(
            file.default.adaptive_concurrency,
            Some(AdaptiveConcurrencyConfig::default())
        );
        let file = parse("[default.adaptive_concurrency]\nalgorithm = \"vegas\"\n")?;
        assert_eq!(
            file.default.adaptive_concurrency,
            Some(AdaptiveConcurrencyConfig::vegas())
        );
        Ok(())
    }

    #[test]
    fn adaptive_concurrency_mistakes_name_the_line_and_the_key() {
        let table = "[default.adaptive_concurrency]";
        let cases = [
            (
                "algorithm = \"bbr\"",
                "quota.toml:3: \"algorithm\": unknown algorithm \"bbr\": expected \
                 \"gradient2\", \"aimd\" or \"vegas\"",
            ),
            (
                "max = 0",
                "quota.toml:3: \"max\": must be at least 1 and at most 100000, got 0",
            ),
            (
                "smoothing = 1.5",
                "quota.toml:3: \"smoothing\": must be above 0 and at most 1, got 1.5",
            ),
            (
                "rtt_tolerance = 0.5",
                "quota.toml:3: \"rtt_tolerance\": must be at least 1",
            ),
            (
                "backoff_ratio = 1.0",
                "quota.toml:3: \"backoff_ratio\": must be at least 0.5 and at most 0.99",
            ),
            (
                "timeout = \"0s\"",
                "quota.toml:3: \"timeout\": must be above zero",
            ),
            ("inital = 5", "quota.toml:3: unknown key \"inital\""),
            (
                "smoothing = 0.5",
                "\"smoothing\": smoothing is gradient2's, and this limit's algorithm is \
                 vegas: remove it, or set algorithm = \"gradient2\"",
            ),
        ];
        for (line, want) in cases {
            assert_refused(&format!("\n{table}\n{line}\n"), want, table);
        }
    }

    /// Issue 26: `[….throttle]` (`k`, `window`, `scope`) and the policy's `criticality`.
    #[test]
    fn throttle_keys_and_criticality_are_read() -> Result<(), Error> {
        use crate::overload::{Criticality, ThrottleConfig};
        let file = parse(
            r#"
            [default]
            criticality = "sheddable"
            [default.throttle]
            k = 1.5
            window = "30s"
            scope = "rule"

            [[endpoint]]
            name = "payments"
            match = { host = "pay.example.com" }
            criticality = "critical"
            [endpoint.throttle]
            "#,
        )?;
        let config = ThrottleConfig::new().k(1.5).window(Duration::from_secs(30));
        assert_eq!(file.default.throttle, Some(config));
        assert_eq!(file.default.throttle_scope, Some(Scope::Rule));
        assert_eq!(file.default.criticality, Some(Criticality::Sheddable));
        let rule = file.endpoints.first().map(|(_, _, policy)| policy);
        // An empty table turns it on with the defaults (K = 2, 2 minutes).
        assert_eq!(rule.and_then(|p| p.throttle), Some(ThrottleConfig::new()));
        assert_eq!(
            rule.and_then(|p| p.criticality),
            Some(Criticality::Critical)
        );
        // `scope` alone sets the scope, and leaves the throttle as it is inherited.
        let file = parse("[default.throttle]\nscope = \"name:shared\"\n")?;
        assert_eq!(file.default.throttle, None);
        assert_eq!(file.default.throttle_scope, Some(Scope::named("shared")?));
        Ok(())
    }

    /// Each mistake names the file, the line and the key, and the range.
    #[test]
    fn throttle_mistakes_name_the_line_and_the_key() {
        let cases = [
            (
                "[default.throttle]\nk = 0.5",
                "quota.toml:3: \"k\": ",
                "[default.throttle]",
            ),
            (
                "[default.throttle]\nk = 11.0",
                "quota.toml:3: \"k\": ",
                "[default.throttle]",
            ),
            (
                "[default.throttle]\nwindow = \"100ms\"",
                "quota.toml:3: \"window\": ",
                "[default.throttle]",
            ),
            (
                "[default.throttle]\nK = 2.0",
                "quota.toml:3: unknown key \"K\"",
                "",
            ),
            (
                "[default]\ncriticality = \"urgent\"",
                "quota.toml:3: \"criticality\": unknown criticality \"urgent\": expected \
                 \"critical\", \"default\" or \"sheddable\"",
                "[default]",
            ),
        ];
        for (lines, want, table) in cases {
            assert_refused(&format!("\n{lines}\n"), want, table);
        }
        // The range, as the builder says it.
        let shown = parse("[default.throttle]\nk = 0.5\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(shown.contains("at least 1"), "{shown}");
    }

    /// `[redis]` from a format without lines: keys that do not go together are refused as the
    /// value is deserialised, naming the key (as a key out of range is); the table kept is the
    /// fleet's settings, shown without the password.
    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_table_is_checked_whole_as_it_is_read() -> Result<(), Error> {
        use serde_json::json;
        let table = |redis| serde_json::from_value::<PolicyConfig>(json!({ "redis": redis }));
        let (url, seed) = ("redis://:hunter2@cache:7000", "redis://:hunter2@cache:7001");
        let refused = (table(json!({ "url": url, "seeds": [seed] })).err())
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.starts_with("\"seeds\": needs cluster = true"),
            "{refused}"
        );
        assert!(!refused.contains("hunter2"), "{refused}");
        let kept = table(json!({ "url": url, "cluster": true, "seeds": [seed] }))
            .map_err(|e| Error::invalid_config(e.to_string()))?;
        let shown = format!("{kept:?}");
        assert!(shown.contains("cluster: true"), "{shown}");
        assert!(shown.contains("cache:7001"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let file = PolicyFile::from_config(kept, &[])?;
        assert!(file.redis.is_some_and(|config| config.mismatch().is_none()));
        Ok(())
    }
}
