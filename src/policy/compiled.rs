//! Policies turned, once, into the settings of every layer.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use url::Url;

use super::index::RuleIndex;
use super::named::{Kind, NamedStates, Setup, State};
use super::{EndpointPolicy, Matcher, Scope};
use crate::bounds;
use crate::breaker::{Breaker, BreakerConfig, BreakerRegistry, CircuitBreakerLayer, Window};
use crate::classify::SharedClassifier;
use crate::deadline::{DEFAULT_MARGIN, Propagate};
use crate::error::Error;
use crate::extras::Extras;
use crate::keyed::endpoint_key;
use crate::overload::adaptive::AdaptiveLimit;
use crate::overload::bulkhead::Bulkhead;
use crate::overload::throttle::{Criticality, Throttle};
use crate::overload::{
    Budget, Endpoint, FixedParts, Fleet, FleetKeys, GuardRegistry, GuardScopes, Guards,
    GuardsConfig, Held, Part, Quotas, Rate, adaptive_part, budget_part, bulkhead_part, hold_part,
    quota_part, rate_part, throttle_part,
};
use crate::read::DEFAULT_BODY_LIMIT;
use crate::retry::{RetryLayer, RetryPolicy};
use crate::telemetry::ServerSeries;
use crate::timeout::{DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_TOTAL_DEADLINE};

/// What a policy inherits from the client builder beyond the settings of the default policy.
#[derive(Clone, Copy)]
pub(crate) struct Base<'a> {
    pub(crate) retry: &'a RetryPolicy,
    pub(crate) breaker: Option<&'a BreakerConfig>,
    pub(crate) classifier: &'a SharedClassifier,
    pub(crate) redis: Redis<'a>,
    /// The client's named scopes, which the policies compiled over this base share.
    pub(crate) named: &'a NamedStates,
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
    breaker_scope: Scope,
    // The one breaker of every request, when it is scoped to the rule or a name (made when
    // the policy compiles: no lookup per call).
    fixed_breaker: Option<Arc<Breaker>>,
    // The endpoints' overload guards; `None` when the policy turns none on.
    guards: Option<GuardRegistry>,
    // Each endpoint's breaker and guards, found in one lookup; `None` unless both are kept
    // per endpoint in one map (else there is one lookup or none already).
    endpoints: Option<Endpoints>,
    // The servers with metric labels of their own (`metrics_server_address`), if it is on.
    server_series: Option<Arc<ServerSeries>>,
    // The header each attempt's limit goes out in (`propagate_deadline`); `None` when off.
    propagate: Option<Propagate>,
    // How much its requests matter under overload, unless a request says otherwise.
    criticality: Criticality,
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
            breaker_scope,
            retry_budget,
            retry_budget_enabled,
            // Read by `shares_budget` and `shares_rate`, with the settings they go with.
            retry_budget_shared: _,
            retry_budget_scope,
            hold_on_retry_after,
            hold_scope,
            rate_limit,
            rate_limit_shared: _,
            rate_limit_scope,
            bulkhead,
            bulkhead_scope,
            // Read by `followed_quota`, which says whether it is on.
            server_quota: _,
            server_quota_scope,
            adaptive_concurrency,
            adaptive_concurrency_scope,
            throttle,
            throttle_scope,
            criticality,
            hedge,
            metrics_server_address,
            propagate_deadline,
            propagate_deadline_margin,
        } = settings;
        let fleet = match base.redis {
            Redis::Fleet(fleet) => Some(fleet),
            Redis::None | Redis::NotYet => None,
        };
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
                let config = config.build().map_err(named)?;
                match breaker_scope.clone().unwrap_or_default() {
                    Scope::Named(scope) => {
                        let setup = Setup::Breaker(config.clone());
                        let make = || State::Breaker(BreakerRegistry::new(config));
                        let state = (base.named)
                            .get_or_make(Kind::Breaker, &scope, &name, setup, None, make)
                            .and_then(from_state::<BreakerRegistry>)
                            .map_err(named)?;
                        CircuitBreakerLayer::of(state)
                    }
                    _ => CircuitBreakerLayer::new(config),
                }
            }
        };
        let breaker_scope = breaker_scope.clone().unwrap_or_default();
        // Rule and named scopes: the one breaker, made now.
        let fixed_breaker = match breaker_scope.fixed_key(&name) {
            Some(key) => breaker.breaker_at(&key),
            None => None,
        };

        let guards = GuardsConfig {
            budget: (*retry_budget_enabled != Some(false))
                .then(|| retry_budget.unwrap_or_default()),
            hold_up_to: (*hold_on_retry_after != Some(false)).then(|| retry.retry_after_cap()),
            rate: *rate_limit,
            bulkhead: *bulkhead,
            server_quota: settings.followed_quota(),
            adaptive: *adaptive_concurrency,
            throttle: *throttle,
            retry_after_cap: retry.retry_after_cap(),
            shared_rate: settings.shares_rate(),
            shared_budget: settings.shares_budget(),
            scopes: GuardScopes {
                budget: retry_budget_scope.clone().unwrap_or_default(),
                hold: hold_scope.clone().unwrap_or_default(),
                rate: rate_limit_scope.clone().unwrap_or_default(),
                bulkhead: bulkhead_scope.clone().unwrap_or_default(),
                // Unset, the hold's: the two things a server says of its limits (a
                // `Retry-After`, a quota) hold the same requests, and a policy whose holds
                // are kept per rule or name gets no per-host lookup it did not have.
                server_quota: (server_quota_scope.clone())
                    .or_else(|| hold_scope.clone())
                    .unwrap_or_default(),
                adaptive: adaptive_concurrency_scope.clone().unwrap_or_default(),
                throttle: throttle_scope.clone().unwrap_or_default(),
            },
        };
        // Holds are shared whenever the client has a Redis. What a shared limit needs of it is
        // checked by `build`, which knows it: `EndpointPolicy::check_sharing`.
        let keys = fleet.map(|fleet| FleetKeys::new(fleet.clone(), name.clone()));
        let fixed = fixed_parts(&name, &guards, keys.as_ref(), base.named).map_err(named)?;
        let max_endpoints = base.breaker.map_or(1024, |b| b.max_breakers());
        // Breakers and guards both kept per endpoint: in one map, the guards', so that one
        // lookup finds both.
        let breakers_by_host = breaker.registry().filter(|_| fixed_breaker.is_none());
        let max_breakers = breakers_by_host.map(|breakers| breakers.config().max_breakers());
        let guards = GuardRegistry::new(guards, max_endpoints, keys, fixed, &name, max_breakers);
        let breakers_with_guards = match (breakers_by_host, &guards) {
            (Some(breakers), Some(guards)) if guards.with_breakers() => {
                Some(breakers.over(guards.endpoints().clone()))
            }
            _ => None,
        };
        let breaker = breakers_with_guards.map_or(breaker, CircuitBreakerLayer::of);
        let endpoints = Endpoints::over(&breaker, fixed_breaker.as_ref(), guards.as_ref());
        let server_series = server_series(*metrics_server_address, max_endpoints).map_err(named)?;
        let propagate = propagate_deadline.as_ref().and_then(|header| {
            Propagate::new(header, propagate_deadline_margin.unwrap_or(DEFAULT_MARGIN))
        });
        // The margin must leave an attempt something to tell the server, under both limits.
        let shortest = [
            ("attempt_timeout", attempt_timeout),
            ("deadline", total_deadline),
        ]
        .into_iter()
        .min_by_key(|&(_, limit)| limit);
        if let (Some(margin), Some((setting, limit))) =
            (propagate.as_ref().map(Propagate::margin), shortest)
            && margin >= limit
        {
            return Err(named(Error::invalid_config(format!(
                "propagate_deadline_margin ({}) must be below {setting} ({}): no attempt \
                 would have time left to send; lower the margin",
                bounds::show(margin),
                bounds::show(limit),
            ))));
        }

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
            breaker_scope,
            fixed_breaker,
            guards,
            endpoints,
            server_series,
            propagate,
            criticality: criticality.unwrap_or_default(),
        })
    }

    /// How much this policy's requests matter under overload (its `criticality`), unless a
    /// request says otherwise.
    #[inline]
    pub(crate) fn criticality(&self) -> Criticality {
        self.criticality
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

    /// The header each attempt's limit goes out in; `None` when the policy sends none.
    pub(crate) fn propagate(&self) -> Option<&Propagate> {
        self.propagate.as_ref()
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
            breaker_scope: Scope::Host,
            fixed_breaker: None,
            guards: None,
            endpoints: None,
            server_series: None,
            propagate: None,
            criticality: Criticality::Default,
        }
    }

    /// Takes over `before`'s breakers and guards where this policy's are set up the same way
    /// (see [`Policies::keep_state_of`]). Named states are kept as they are made
    /// ([`NamedStates::new`]).
    fn keep_state_of(&mut self, before: &CompiledPolicy) {
        let named = matches!(self.breaker_scope, Scope::Named(_));
        if self.breaker_scope == before.breaker_scope
            && !named
            && self.breaker.keep_state_of(&before.breaker)
        {
            self.fixed_breaker = before.fixed_breaker.clone();
        }
        // The servers already labelled keep their series: a reload hands out no new ones.
        if self.server_series.is_some() && before.server_series.is_some() {
            self.server_series.clone_from(&before.server_series);
        }
        if let (Some(guards), Some(old)) = (&mut self.guards, &before.guards)
            && guards.same_setup(old)
        {
            let dropped = guards.endpoints().clone();
            *guards = old.clone();
            // New breakers made to share the new guards' map: a map of their own, as a
            // policy keeps whose guards are not beside them (looked up without a `dyn`).
            if let Some(fresh) = (self.breaker.registry()).filter(|fresh| fresh.is_over(&dropped)) {
                self.breaker = CircuitBreakerLayer::of(fresh.own());
            }
            // The guards kept, the breakers beside them in their map not: the old breakers
            // are retired when their registry is dropped with the old policy (their states,
            // an open one that no call probes any more, then no longer keep the entries).
        }
        // One lookup for both if both were kept, or neither (then over one map still).
        let fixed = self.fixed_breaker.as_ref();
        self.endpoints = Endpoints::over(&self.breaker, fixed, self.guards.as_ref());
    }

    /// The breaker (if breakers are on) and the overload guards (if any are on) of requests
    /// to `url` under this policy. Parts scoped to the rule or a name were made when the
    /// policy compiled; only host-scoped ones are looked up, under one endpoint key worked
    /// out once.
    #[inline]
    pub(crate) fn endpoint(&self, url: &Url) -> (Option<Arc<Breaker>>, Option<Arc<Guards>>) {
        if let Some(endpoints) = &self.endpoints {
            let (breaker, guards) = endpoints.at(&endpoint_key(url));
            return (Some(breaker), Some(guards));
        }
        let only = self.guards.as_ref().map(GuardRegistry::only);
        let breaker_by_host = self.fixed_breaker.is_none() && self.breaker.enabled();
        let guards_by_host = matches!(only, Some(None));
        if !breaker_by_host && !guards_by_host {
            return (self.fixed_breaker.clone(), only.flatten().cloned());
        }
        let key = endpoint_key(url);
        let breaker = match &self.fixed_breaker {
            Some(breaker) => Some(breaker.clone()),
            None => self.breaker.breaker_at(&key),
        };
        let guards = self.guards.as_ref().map(|guards| guards.guards_at(&*key));
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

/// A policy's breaker and guards by endpoint key, when both are kept per endpoint: the two
/// registries over one map ([`Endpoint`]), so that a call finds both in one lookup.
///
/// The registries stay what they were to everything else: what `client.breakers()` and
/// `client.overload(..)` read, what a reload keeps part by part. A reload that keeps one
/// registry and not the other leaves them over two maps (the kept one's and the new one's):
/// then each is looked up in its own, as for a policy that keeps only one per endpoint (the
/// old breakers left beside kept guards are retired: see [`BreakerRegistry::retire`]).
#[derive(Clone)]
struct Endpoints {
    breakers: BreakerRegistry,
    guards: GuardRegistry,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").finish_non_exhaustive()
    }
}

impl Endpoints {
    /// The registries of a policy with `breaker` and `guards`, if both keep their state per
    /// endpoint in one map (no `fixed` breaker, guards with a host-scoped part).
    fn over(
        breaker: &CircuitBreakerLayer,
        fixed: Option<&Arc<Breaker>>,
        guards: Option<&GuardRegistry>,
    ) -> Option<Self> {
        let breakers = breaker.registry().filter(|_| fixed.is_none())?;
        let guards = guards.filter(|guards| guards.only().is_none())?;
        breakers.is_over(guards.endpoints()).then(|| Endpoints {
            breakers: breakers.clone(),
            guards: guards.clone(),
        })
    }

    /// The breaker and guards of endpoint `key`.
    #[inline]
    fn at(&self, key: &str) -> (Arc<Breaker>, Arc<Guards>) {
        let entry = self.guards.endpoints().get_or_insert(key, |key| {
            let breaker = self.breakers.make(&key);
            let guards = self.guards.make(&key);
            Endpoint::new(key, Some(breaker), Some(guards))
        });
        let breaker = entry.breaker(|key| self.breakers.make(key)).clone();
        (breaker, self.guards.guards_of(&entry).clone())
    }
}

/// The parts of the guards `config` turns on that are scoped to the rule called `rule` or to
/// a name (from `named`, where the client's policies share them), made now; `keys` is the
/// Redis the policy's guards share, if any.
///
/// In Redis, a rule's part is under `{rule}|rule` (as a host's is under `{rule}|{endpoint
/// key}`), and a named part under `name:<name>`, for every rule and replica.
fn fixed_parts(
    rule: &Arc<str>,
    config: &GuardsConfig,
    keys: Option<&FleetKeys>,
    named: &NamedStates,
) -> Result<FixedParts, Error> {
    let scopes = &config.scopes;
    let fixed = Fixed { rule, keys, named };
    let mut parts = FixedParts::default();
    if let Some(budget) = config.budget {
        let shared = config.shared_budget;
        let setup = Setup::RetryBudget(budget, shared);
        parts.budget = fixed.part(&scopes.budget, shared, setup, |key, redis| {
            State::RetryBudget(budget_part(key, budget, redis))
        })?;
    }
    if config.hold_up_to.is_some() {
        parts.hold = fixed.part(&scopes.hold, true, Setup::Hold, |key, redis| {
            State::Hold(hold_part(key, redis))
        })?;
    }
    if let Some(rate) = config.rate {
        let shared = config.shared_rate;
        let setup = Setup::RateLimit(rate, shared);
        parts.rate = fixed.part(&scopes.rate, shared, setup, |key, redis| {
            State::RateLimit(rate_part(key, rate, redis))
        })?;
    }
    if let Some(bulkhead) = config.bulkhead {
        let setup = Setup::Bulkhead(bulkhead);
        parts.bulkhead = fixed.part(&scopes.bulkhead, false, setup, |key, _| {
            State::Bulkhead(bulkhead_part(key, bulkhead))
        })?;
    }
    if let Some(quota) = &config.server_quota {
        let setup = Setup::ServerQuota(quota.clone());
        parts.server_quota = fixed.part(&scopes.server_quota, true, setup, |key, redis| {
            State::ServerQuota(quota_part(key, quota.clone(), redis))
        })?;
    }
    if let Some(adaptive) = config.adaptive {
        let setup = Setup::AdaptiveConcurrency(adaptive);
        parts.adaptive = fixed.part(&scopes.adaptive, false, setup, |key, _| {
            State::AdaptiveConcurrency(adaptive_part(key, adaptive))
        })?;
    }
    if let Some(throttle) = config.throttle {
        let setup = Setup::Throttle(throttle);
        parts.throttle = fixed.part(&scopes.throttle, false, setup, |key, _| {
            State::Throttle(throttle_part(key, throttle))
        })?;
    }
    Ok(parts)
}

/// What making a rule's fixed parts needs: see [`fixed_parts`].
struct Fixed<'a> {
    rule: &'a Arc<str>,
    keys: Option<&'a FleetKeys>,
    named: &'a NamedStates,
}

impl Fixed<'_> {
    /// The part of a guard with `scope` (`None` for a host scope), set up as `setup`: made by
    /// `make` from its key and its Redis key (when `shared` and the client has a Redis), or
    /// for a name, the one the client's policies share.
    fn part<T: FromState>(
        &self,
        scope: &Scope,
        shared: bool,
        setup: Setup,
        make: impl FnOnce(Arc<str>, Option<(&Fleet, String)>) -> State,
    ) -> Result<Option<T>, Error> {
        let Some(key) = scope.fixed_key(self.rule) else {
            return Ok(None);
        };
        let fleet = self.keys.map(|keys| &keys.fleet);
        let redis = match scope {
            Scope::Named(_) => key.to_string(),
            _ => self.keys.map_or_else(String::new, |keys| keys.key("rule")),
        };
        let redis = fleet.filter(|_| shared).map(|fleet| (fleet, redis));
        let state = match scope {
            Scope::Named(name) => {
                let make = || make(key, redis);
                let kind = setup.kind();
                (self.named).get_or_make(kind, name, self.rule, setup, fleet, make)?
            }
            _ => make(key, redis),
        };
        from_state(state).map(Some)
    }
}

/// The part `state` holds. Each kind's state is made and kept under its kind
/// ([`NamedStates::get_or_make`]), so another is a bug, refused rather than ignored.
fn from_state<T: FromState>(state: State) -> Result<T, Error> {
    T::from_state(state)
        .ok_or_else(|| Error::invalid_config("a named scope held another guard's state (a bug)"))
}

/// A part, out of the [`State`] that holds it.
trait FromState: Sized {
    fn from_state(state: State) -> Option<Self>;
}

macro_rules! from_state {
    ($($kind:ident: $part:ty;)*) => {$(
        impl FromState for $part {
            fn from_state(state: State) -> Option<Self> {
                match state {
                    State::$kind(part) => Some(part),
                    _ => None,
                }
            }
        }
    )*};
}

from_state! {
    Breaker: BreakerRegistry;
    RetryBudget: Arc<Part<Budget>>;
    Hold: Arc<Part<Held>>;
    RateLimit: Arc<Part<Rate>>;
    Bulkhead: Part<Arc<Bulkhead>>;
    ServerQuota: Arc<Part<Quotas>>;
    AdaptiveConcurrency: Part<Arc<AdaptiveLimit>>;
    Throttle: Arc<Part<Throttle>>;
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
    /// The request's criticality ([`RequestBuilder::criticality`](crate::RequestBuilder::criticality)):
    /// not a policy change either (the call's, set beside the policy it follows), so it
    /// never makes the request a policy of its own.
    pub(crate) criticality: Option<Criticality>,
}

/// Up to this many endpoint rules, a request tries each in turn rather than through the
/// index: a rule that does not match costs about 75 instructions, the index about 100 to
/// 150 (a hash of the host, its lookup), measured with callgrind (`benches/instructions.sh`).
const SCAN_UP_TO: usize = 2;

/// The default policy and the endpoint rules, in order.
#[derive(Debug)]
pub(crate) struct Policies {
    pub(crate) default: CompiledPolicy,
    pub(crate) endpoints: Vec<(Matcher, CompiledPolicy)>,
    /// `endpoints` by host, path and name ([`Policies::rule_index`]): matching a request does
    /// not grow with the rules. Made of `endpoints` as they are, which never change after.
    pub(crate) index: RuleIndex,
    /// The timeout the reqwest client applies to a request that sets none, when the client
    /// built that reqwest client itself. An attempt whose limit is this one leaves it to the
    /// client: setting a request's timeout allocates reqwest's extension map.
    pub(crate) client_timeout: Option<Duration>,
    /// The Redis the policies' guards share, if the client has one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fleet: Option<Fleet>,
    /// The named scopes' states, which the policies share (kept by a reload that does not
    /// change them).
    pub(crate) named: Arc<NamedStates>,
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
            index: RuleIndex::default(),
            client_timeout: None,
            fleet: None,
            named: Arc::default(),
        }
    }

    /// The first endpoint rule that matches, else the default.
    pub(crate) fn select(&self, method: &Method, url: &Url) -> &CompiledPolicy {
        self.get(self.select_index(method, url))
    }

    /// The index of `endpoints` by host, path and name, to set as `Policies::index`.
    pub(crate) fn rule_index(endpoints: &[(Matcher, CompiledPolicy)]) -> RuleIndex {
        RuleIndex::new((endpoints.iter()).map(|(matcher, policy)| (matcher, &*policy.name)))
    }

    /// The index of the first endpoint rule that matches; `None` for the default. Through
    /// the rules' index: a few hash lookups however many rules there are (see
    /// `policy::index`), or for a few rules, each tried in turn: cheaper than hashing.
    pub(crate) fn select_index(&self, method: &Method, url: &Url) -> Option<usize> {
        if self.endpoints.len() <= SCAN_UP_TO {
            return (self.endpoints.iter()).position(|(matcher, _)| matcher.matches(method, url));
        }
        let rule = |at: usize| self.endpoints.get(at).map(|(matcher, _)| matcher);
        self.index.select(rule, method, url)
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
        self.index.by_name(name).map(Some)
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
        let at = self.index.by_name(name)?;
        self.endpoints.get(at).map(|(_, policy)| policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy(breaker: &BreakerConfig) -> CompiledPolicy {
        let base = Base {
            retry: &RetryPolicy::default(),
            breaker: Some(breaker),
            classifier: &SharedClassifier::default(),
            redis: Redis::None,
            named: &NamedStates::default(),
        };
        CompiledPolicy::compile("default", &EndpointPolicy::default(), &base)
            .expect("the default policy compiles")
    }

    /// A new endpoint's breaker and guards, made in the policy's one map of both, share one
    /// copy of its key with the map's entry: one allocation for the key, not three.
    #[test]
    fn an_endpoint_key_is_allocated_once_for_its_breaker_and_guards() {
        let policy = default_policy(&BreakerConfig::default());
        let url = Url::parse("http://tenant-7.example:8080/x").expect("a URL");
        let (Some(breaker), Some(guards)) = policy.endpoint(&url) else {
            panic!("the default policy keeps a breaker and guards per endpoint");
        };
        assert_eq!(&**breaker.key(), "http://tenant-7.example:8080");
        assert_eq!(guards.key(), "http://tenant-7.example:8080");
        assert!(
            std::ptr::eq(breaker.key().as_ptr(), guards.key().as_ptr()),
            "the breaker and the guards each made a copy of the key"
        );
    }

    /// A reload that keeps the guards but not the breakers beside them in their map: once the
    /// old policy is gone, the old breakers (an open one stays open, no call probing it any
    /// more) no longer keep their entries busy, so the guards' map can drop them when idle.
    /// A reload abandoned (another one stored instead) retires nothing: the breakers stay in
    /// use.
    #[test]
    fn a_reload_keeping_the_guards_alone_lets_the_old_breakers_go() {
        use crate::breaker::State;
        use crate::keyed::Entry;
        let before = default_policy(&BreakerConfig::default());
        let url = Url::parse("http://tenant-7.example:8080/x").expect("a URL");
        let (Some(breaker), Some(_)) = before.endpoint(&url) else {
            panic!("the default policy keeps a breaker and guards per endpoint");
        };
        breaker.force(State::ForcedOpen);
        drop(breaker);
        let other = BreakerConfig::builder()
            .failure_rate(0.9)
            .build()
            .expect("a breaker config");
        let entry = |policy: &CompiledPolicy| {
            (policy.guards().expect("guards on").endpoints())
                .get("http://tenant-7.example:8080")
                .expect("the endpoint's entry")
        };
        // Abandoned: the breakers stay busy as they were.
        let mut abandoned = default_policy(&other);
        abandoned.keep_state_of(&before);
        drop(abandoned);
        assert!(
            entry(&before).busy(),
            "an abandoned reload retired an open breaker"
        );
        let mut after = default_policy(&other);
        after.keep_state_of(&before);
        let (Some(kept), Some(old)) = (after.guards(), before.guards()) else {
            panic!("guards on");
        };
        assert!(
            Arc::ptr_eq(kept.endpoints(), old.endpoints()),
            "guards kept"
        );
        // A breaker made by the old policy after the reload (a call that loaded it just
        // before the swap) is retired with the others.
        let late = Url::parse("http://tenant-8.example:8080/x").expect("a URL");
        let (Some(late_breaker), Some(_)) = before.endpoint(&late) else {
            panic!("a breaker and guards");
        };
        late_breaker.force(State::ForcedOpen);
        drop(late_breaker);
        assert!(
            entry(&after).busy(),
            "retired while the old policy is still in use"
        );
        drop(before);
        assert!(
            !entry(&after).busy(),
            "the old open breaker keeps the entry"
        );
        let late_entry = (after.guards().expect("guards on").endpoints())
            .get("http://tenant-8.example:8080")
            .expect("the late endpoint's entry");
        assert!(
            !late_entry.busy(),
            "a breaker made after the reload keeps its entry"
        );
        // The new policy's own breaker for the endpoint is a fresh one, closed.
        let (Some(fresh), Some(_)) = after.endpoint(&url) else {
            panic!("a breaker and guards");
        };
        assert_eq!(fresh.state(), State::Closed);
    }

    /// A reload that keeps the guards alone drops the new guards' map, which the new
    /// breakers were made to share: they get a map of their own, as for a policy whose
    /// guards are not beside them, and calls find them there (not through a map no guards
    /// are in).
    #[test]
    fn a_reload_keeping_the_guards_alone_gives_the_new_breakers_a_map_of_their_own() {
        let before = default_policy(&BreakerConfig::default());
        let other = BreakerConfig::builder()
            .failure_rate(0.9)
            .build()
            .expect("a breaker config");
        let mut after = default_policy(&other);
        assert!(after.breakers().is_some_and(BreakerRegistry::shares_a_map));
        after.keep_state_of(&before);
        let breakers = after.breakers().expect("breakers on");
        assert!(
            !breakers.shares_a_map(),
            "the new breakers are in a dropped map"
        );
        let url = Url::parse("http://tenant-7.example:8080/x").expect("a URL");
        let (Some(breaker), Some(_)) = after.endpoint(&url) else {
            panic!("a breaker and guards");
        };
        let shown = breakers.get("http://tenant-7.example:8080").expect("shown");
        assert_eq!(shown.key(), &**breaker.key());
        assert_eq!(breakers.len(), 1);
    }
}
