//! Policies turned, once, into the settings of every layer.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use url::Url;

use super::{EndpointPolicy, Matcher};
use crate::breaker::{BreakerConfig, BreakerRegistry, CircuitBreakerLayer, Window};
use crate::classify::SharedClassifier;
use crate::error::Error;
use crate::extras::Extras;
use crate::keyed::key_for;
use crate::overload::{Fleet, FleetKeys, GuardRegistry, Guards, GuardsConfig};
use crate::read::DEFAULT_BODY_LIMIT;
use crate::retry::{RetryLayer, RetryPolicy};
use crate::telemetry::ServerSeries;
use crate::timeout::{DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_TOTAL_DEADLINE};

/// What a policy inherits from the client builder beyond the settings of the default policy.
pub(crate) struct Base<'a> {
    pub(crate) retry: &'a RetryPolicy,
    pub(crate) breaker: Option<&'a BreakerConfig>,
    pub(crate) classifier: &'a SharedClassifier,
    pub(crate) redis: Redis<'a>,
}

/// The client's Redis, as far as it is known when a policy is compiled.
#[derive(Clone, Copy)]
pub(crate) enum Redis<'a> {
    /// Not known yet: a policy file checked as it is read (the builder may be given its
    /// Redis after it). Compiles as if every limit were local.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    NotYet,
    None,
    Fleet(&'a Fleet),
}

/// The server labels of a policy whose `metrics_server_address` is `on`, for at most `max`
/// servers; refused without the `metrics` feature, where it would do nothing.
fn server_series(on: Option<bool>, max: usize) -> Result<Option<Arc<ServerSeries>>, Error> {
    if on != Some(true) {
        return Ok(None);
    }
    #[cfg(feature = "metrics")]
    return Ok(Some(Arc::new(ServerSeries::new(max))));
    #[cfg(not(feature = "metrics"))]
    {
        let _ = max;
        Err(Error::invalid_config(
            "metrics_server_address needs the `metrics` feature: enable it, or remove the \
             setting",
        ))
    }
}

/// One policy, ready to wrap a `reqwest::Client` per call.
#[derive(Clone, Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) name: Arc<str>,
    attempt_timeout: Duration,
    body_limit: u64,
    // Hooks, a body classifier, attempt layers: `None` when the policy has none.
    extras: Option<Arc<Extras>>,
    total_deadline: Option<Duration>,
    classifier: SharedClassifier,
    retry: RetryLayer,
    breaker: CircuitBreakerLayer,
    // The endpoints' overload guards; `None` when the policy turns none on.
    guards: Option<GuardRegistry>,
    // The one key for all of the policy's requests (`breaker_key`), if it has one.
    endpoint_key: Option<Arc<str>>,
    // The servers with metric labels of their own (`metrics_server_address`), if it is on.
    server_series: Option<Arc<ServerSeries>>,
}

impl CompiledPolicy {
    /// `settings`, checked (every range, by [`EndpointPolicy::check`]) and compiled over
    /// `base`; errors name the policy.
    pub(crate) fn compile(
        name: &str,
        settings: &EndpointPolicy,
        base: &Base<'_>,
    ) -> Result<Self, Error> {
        let name: Arc<str> = Arc::from(name);
        let named = |err: Error| {
            let detail = err.detail().unwrap_or("invalid setting").to_owned();
            Error::invalid_config(format!("policy {name:?}: {detail}"))
        };
        settings.check().map_err(named)?;
        // Every setting by name, no `..`: a new one does not build until it is used here.
        let EndpointPolicy {
            max_attempts,
            attempt_timeout,
            deadline,
            // reqwest's, set once per client in `ClientBuilder::build`.
            connect_timeout: _,
            retry_statuses,
            retry_non_idempotent,
            idempotency_key,
            retry_after_cap,
            body_limit,
            replay_buffer,
            backoff_base,
            backoff_max,
            backoff_multiplier,
            jitter,
            breaker_enabled,
            breaker_window,
            breaker_failure_rate,
            breaker_min_calls,
            breaker_open_for,
            breaker_open_for_max,
            breaker_half_open_probes,
            breaker_count_429,
            breaker_key,
            retry_budget,
            retry_budget_enabled,
            // Read by `shares_budget` and `shares_rate`, with the settings they go with.
            retry_budget_shared: _,
            hold_on_retry_after,
            rate_limit,
            rate_limit_shared: _,
            bulkhead,
            hedge,
            metrics_server_address,
        } = settings;
        let attempt_timeout = attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT);
        // Kept as set: each call caps it by the deadline that applies to it (this policy's, or
        // a shorter one of the request's), in `timeout::attempt_limit`.
        let total_deadline = deadline.unwrap_or(DEFAULT_TOTAL_DEADLINE);

        let mut retry = base.retry.to_builder();
        // A backoff setting of the policy's own replaces a `backoff` crate schedule of the
        // builder's `RetryPolicy`, as any later setting wins (see `ClientBuilder`).
        if backoff_base.is_some()
            || backoff_max.is_some()
            || backoff_multiplier.is_some()
            || jitter.is_some()
        {
            retry = retry.exponential();
        }
        if let Some(attempts) = *max_attempts {
            retry = retry.max_attempts(attempts);
        }
        if let Some(base) = *backoff_base {
            retry = retry.backoff_base(base);
        }
        if let Some(max) = *backoff_max {
            retry = retry.backoff_max(max);
        }
        if let Some(multiplier) = *backoff_multiplier {
            retry = retry.backoff_multiplier(multiplier);
        }
        if let Some(jitter) = *jitter {
            retry = retry.jitter(jitter);
        }
        if let Some(cap) = *retry_after_cap {
            retry = retry.retry_after_cap(cap);
        }
        if let Some(yes) = *retry_non_idempotent {
            retry = retry.retry_non_idempotent(yes);
        }
        if let Some(yes) = *idempotency_key {
            retry = retry.idempotency_key(yes);
        }
        if let Some(hedge) = *hedge {
            retry = retry.hedge(hedge);
        }
        if let Some(bytes) = *replay_buffer {
            retry = retry.replay_buffer(bytes);
        }
        let retry = retry.build().map_err(named)?.named(name.clone());

        let breaker = if *breaker_enabled == Some(false) {
            CircuitBreakerLayer::disabled()
        } else {
            let mut config = base.breaker.cloned().unwrap_or_default().to_builder();
            if let Some(calls) = *breaker_window {
                config = config.window(Window::Calls(calls));
            }
            if let Some(rate) = *breaker_failure_rate {
                config = config.failure_rate(rate);
            }
            if let Some(calls) = *breaker_min_calls {
                config = config.min_calls(calls);
            }
            if let Some(open_for) = *breaker_open_for {
                config = config.open_for(open_for);
            }
            if let Some(max) = *breaker_open_for_max {
                config = config.open_for_max(max);
            }
            if let Some(probes) = *breaker_half_open_probes {
                config = config.half_open_probes(probes);
            }
            if let Some(yes) = *breaker_count_429 {
                config = config.count_429(yes);
            }
            let disabled_by_builder = base.breaker.is_none() && breaker_enabled.is_none();
            if disabled_by_builder {
                CircuitBreakerLayer::disabled()
            } else {
                let layer = CircuitBreakerLayer::new(config.build().map_err(named)?);
                match breaker_key {
                    Some(key) => layer.with_key(key.as_str()),
                    None => layer,
                }
            }
        };

        // Keyed as the breakers are, and as many.
        let guards = GuardsConfig {
            budget: (*retry_budget_enabled != Some(false))
                .then(|| retry_budget.unwrap_or_default()),
            hold_up_to: (*hold_on_retry_after != Some(false)).then(|| retry.retry_after_cap()),
            rate: *rate_limit,
            bulkhead: *bulkhead,
            shared_rate: settings.shares_rate(),
            shared_budget: settings.shares_budget(),
        };
        // Holds are shared whenever the client has a Redis. What a shared limit needs of it is
        // checked by `build`, which knows it: `EndpointPolicy::check_sharing`.
        let fleet = match base.redis {
            Redis::Fleet(fleet) => Some(FleetKeys::new(fleet.clone(), name.clone())),
            Redis::None | Redis::NotYet => None,
        };
        let max_endpoints = base.breaker.map_or(1024, |b| b.max_breakers());
        let guards = GuardRegistry::new(guards, max_endpoints, breaker_key.as_deref(), fleet);
        let server_series = server_series(*metrics_server_address, max_endpoints).map_err(named)?;

        let classifier = match retry_statuses {
            Some(statuses) => base.classifier.with_transient_statuses(statuses.clone()),
            None => base.classifier.clone(),
        };

        Ok(CompiledPolicy {
            name,
            attempt_timeout,
            body_limit: body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
            extras: None,
            total_deadline: Some(total_deadline),
            classifier,
            retry: RetryLayer::new(retry),
            breaker,
            guards,
            endpoint_key: breaker_key.as_deref().map(Arc::from),
            server_series,
        })
    }

    /// The `server.address` and `server.port` labels of this policy's metrics, if it has
    /// them (`metrics_server_address`).
    pub(crate) fn server_series(&self) -> Option<&ServerSeries> {
        self.server_series.as_deref()
    }

    pub(crate) fn breakers(&self) -> Option<&BreakerRegistry> {
        self.breaker.registry()
    }

    pub(crate) fn body_limit(&self) -> u64 {
        self.body_limit
    }

    pub(crate) fn extras(&self) -> Option<&Extras> {
        self.extras.as_deref()
    }

    /// Gives this policy its code around attempts.
    pub(crate) fn set_extras(&mut self, extras: Extras) {
        self.extras = (!extras.is_empty()).then(|| Arc::new(extras));
    }

    pub(crate) fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    pub(crate) fn total_deadline(&self) -> Option<Duration> {
        self.total_deadline
    }

    pub(crate) fn classifier(&self) -> &SharedClassifier {
        &self.classifier
    }

    pub(crate) fn retry_policy(&self) -> Arc<RetryPolicy> {
        self.retry.shared()
    }

    /// The retry policy in force.
    pub(crate) fn retry(&self) -> &RetryPolicy {
        self.retry.policy()
    }

    /// The policy of a public [`Retry`](crate::retry::Retry) layer: `retry` within `deadline`,
    /// and nothing else (the layers under it classify, time and break each attempt).
    pub(crate) fn retry_only(retry: Arc<RetryPolicy>, deadline: Option<Duration>) -> Self {
        CompiledPolicy {
            name: retry
                .name()
                .cloned()
                .unwrap_or_else(|| Arc::from("default")),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
            extras: None,
            total_deadline: deadline,
            classifier: SharedClassifier::default(),
            retry: RetryLayer::from_shared(retry),
            breaker: CircuitBreakerLayer::disabled(),
            guards: None,
            endpoint_key: None,
            server_series: None,
        }
    }

    /// Takes over `before`'s breakers and guards where this policy's are set up the same way
    /// (see [`Policies::keep_state_of`]).
    fn keep_state_of(&mut self, before: &CompiledPolicy) {
        if self.endpoint_key != before.endpoint_key {
            return;
        }
        self.breaker.keep_state_of(&before.breaker);
        // The servers already labelled keep their series: a reload hands out no new ones.
        if self.server_series.is_some() && before.server_series.is_some() {
            self.server_series.clone_from(&before.server_series);
        }
        if let (Some(guards), Some(old)) = (&mut self.guards, &before.guards)
            && guards.same_setup(old)
        {
            *guards = old.clone();
        }
    }

    /// The breaker (if breakers are on) and the overload guards (if any are on) of requests
    /// to `url` under this policy: both under one endpoint key, worked out once.
    pub(crate) fn endpoint(
        &self,
        url: &Url,
    ) -> (Option<Arc<crate::breaker::Breaker>>, Option<Arc<Guards>>) {
        if self.guards.is_none() && !self.breaker.enabled() {
            return (None, None);
        }
        let key = key_for(self.endpoint_key.as_deref(), url);
        let breaker = self.breaker.breaker_at(&key);
        let guards = self.guards.as_ref().map(|guards| guards.guards_at(&key));
        (breaker, guards)
    }

    /// The endpoints' overload guards under this policy; `None` when it turns none on.
    pub(crate) fn guards(&self) -> Option<&GuardRegistry> {
        self.guards.as_ref()
    }

    /// This policy with per-request changes.
    pub(crate) fn with_overrides(&self, overrides: &Overrides) -> CompiledPolicy {
        let mut policy = self.clone();
        if let Some(deadline) = overrides.deadline {
            policy.total_deadline = Some(deadline);
        }
        if let Some(timeout) = overrides.attempt_timeout {
            policy.attempt_timeout = timeout;
        }
        if let Some(attempts) = overrides.attempts {
            let mut retry = self.retry.policy().clone();
            retry.set_max_attempts(attempts.max(1));
            policy.retry = RetryLayer::new(retry);
        }
        policy
    }
}

/// Per-request changes to the chosen policy; see [`RequestBuilder`](crate::RequestBuilder).
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) policy: Option<String>,
    pub(crate) attempts: Option<u32>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    /// Makes each attempt's body ([`RequestBuilder::body_with`](crate::RequestBuilder::body_with)):
    /// not a policy change, but the one per-request slot the builder carries; taken out
    /// before the call starts.
    pub(crate) body: Option<crate::hook::BodyFactory>,
}

/// The default policy and the endpoint rules, in order.
#[derive(Debug)]
pub(crate) struct Policies {
    pub(crate) default: CompiledPolicy,
    pub(crate) endpoints: Vec<(Matcher, CompiledPolicy)>,
    /// The timeout the reqwest client applies to a request that sets none, when the client
    /// built that reqwest client itself. An attempt whose limit is this one leaves it to the
    /// client: setting a request's timeout allocates reqwest's extension map.
    pub(crate) client_timeout: Option<Duration>,
    /// The Redis the policies' guards share, if the client has one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fleet: Option<Fleet>,
}

impl Policies {
    /// Only `default`, for every request.
    pub(crate) fn only(default: CompiledPolicy) -> Self {
        // Built where a client, an adapter or a layer is: the metrics' units and help text
        // go to the recorder in force (see `telemetry::describe`).
        #[cfg(feature = "metrics")]
        crate::telemetry::describe();
        Policies {
            default,
            endpoints: Vec::new(),
            client_timeout: None,
            fleet: None,
        }
    }

    /// The first endpoint rule that matches, else the default.
    pub(crate) fn select(&self, method: &Method, url: &Url) -> &CompiledPolicy {
        self.get(self.select_index(method, url))
    }

    /// The index of the first endpoint rule that matches; `None` for the default.
    pub(crate) fn select_index(&self, method: &Method, url: &Url) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|(matcher, _)| matcher.matches(method, url))
    }

    /// An endpoint rule's policy by index; the default for `None` (or an index out of range).
    pub(crate) fn get(&self, index: Option<usize>) -> &CompiledPolicy {
        index
            .and_then(|i| self.endpoints.get(i))
            .map_or(&self.default, |(_, policy)| policy)
    }

    /// The index of the policy called `name` (`Some(None)` for the default).
    pub(crate) fn index_of(&self, name: &str) -> Option<Option<usize>> {
        if &*self.default.name == name {
            return Some(None);
        }
        self.endpoints
            .iter()
            .position(|(_, policy)| &*policy.name == name)
            .map(Some)
    }

    /// Takes over, for each policy that `old` has by the same name, the state of its breakers
    /// and overload guards (open breakers, budgets, holds, rate limits, bulkheads) when their
    /// settings did not change: a reload keeps what the endpoints taught the client.
    pub(crate) fn keep_state_of(&mut self, old: &Policies) {
        let policies = std::iter::once(&mut self.default)
            .chain(self.endpoints.iter_mut().map(|(_, policy)| policy));
        for policy in policies {
            if let Some(before) = old.by_name(&policy.name) {
                policy.keep_state_of(before);
            }
        }
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&CompiledPolicy> {
        if &*self.default.name == name {
            return Some(&self.default);
        }
        self.endpoints
            .iter()
            .map(|(_, policy)| policy)
            .find(|policy| &*policy.name == name)
    }
}
