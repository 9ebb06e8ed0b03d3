//! The states of named scopes ([`Scope::Named`](crate::policy::Scope::Named)): one per guard and
//! name, client-wide, made when the first policy that names it compiles and shared by every
//! other. A name is one limit, so a policy that names it with other settings is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::ScopeName;
use crate::breaker::{BreakerConfig, BreakerRegistry};
use crate::error::Error;
use crate::overload::adaptive::AdaptiveLimit;
use crate::overload::bulkhead::Bulkhead;
use crate::overload::throttle::Throttle;
use crate::overload::{
    AdaptiveConcurrencyConfig, Budget, BulkheadConfig, Fleet, Held, Part, Quotas, Rate,
    RateLimitConfig, ServerQuotaConfig, ThrottleConfig,
};
use crate::retry::BudgetConfig;

/// A guard, as a named scope is per guard: `name:github` for the rate limit and for the
/// breaker are two states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Breaker,
    Hold,
    RateLimit,
    Bulkhead,
    RetryBudget,
    ServerQuota,
    AdaptiveConcurrency,
    Throttle,
}

impl Kind {
    /// The setting that turns the guard on, as errors name it.
    fn setting(self) -> &'static str {
        match self {
            Kind::Breaker => "breaker",
            Kind::Hold => "hold_on_retry_after",
            Kind::RateLimit => "rate_limit",
            Kind::Bulkhead => "bulkhead",
            Kind::RetryBudget => "retry_budget",
            Kind::ServerQuota => "server_quota",
            Kind::AdaptiveConcurrency => "adaptive_concurrency",
            Kind::Throttle => "throttle",
        }
    }
}

/// What a named state was made with; two policies that name it must agree.
#[derive(Clone, Debug)]
pub(crate) enum Setup {
    Breaker(BreakerConfig),
    /// A hold has no settings of its own: each policy holds it up to its own
    /// `retry_after_cap`, so policies with other caps share it.
    Hold,
    /// The limit, and whether the fleet shares it.
    RateLimit(RateLimitConfig, bool),
    Bulkhead(BulkheadConfig),
    /// The budget, and whether the fleet shares it.
    RetryBudget(BudgetConfig, bool),
    /// How the server's quota is followed and read: rules that share one view of it hold
    /// (or pace) it alike, and read it from the same fields.
    ServerQuota(ServerQuotaConfig),
    AdaptiveConcurrency(AdaptiveConcurrencyConfig),
    Throttle(ThrottleConfig),
}

impl Setup {
    /// The guard it sets up.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Setup::Breaker(_) => Kind::Breaker,
            Setup::Hold => Kind::Hold,
            Setup::RateLimit(..) => Kind::RateLimit,
            Setup::Bulkhead(_) => Kind::Bulkhead,
            Setup::RetryBudget(..) => Kind::RetryBudget,
            Setup::ServerQuota(_) => Kind::ServerQuota,
            Setup::AdaptiveConcurrency(_) => Kind::AdaptiveConcurrency,
            Setup::Throttle(_) => Kind::Throttle,
        }
    }

    /// Whether the two differ only in whether the fleet shares the state.
    fn only_sharing_differs(&self, other: &Setup) -> bool {
        match (self, other) {
            (Setup::RateLimit(a, x), Setup::RateLimit(b, y)) => a == b && x != y,
            (Setup::RetryBudget(a, x), Setup::RetryBudget(b, y)) => a == b && x != y,
            _ => false,
        }
    }

    fn same(&self, other: &Setup) -> bool {
        match (self, other) {
            (Setup::Breaker(a), Setup::Breaker(b)) => a.same_settings(b),
            (Setup::Hold, Setup::Hold) => true,
            (Setup::RateLimit(a, x), Setup::RateLimit(b, y)) => a == b && x == y,
            (Setup::Bulkhead(a), Setup::Bulkhead(b)) => a == b,
            (Setup::RetryBudget(a, x), Setup::RetryBudget(b, y)) => a == b && x == y,
            (Setup::ServerQuota(a), Setup::ServerQuota(b)) => a == b,
            (Setup::AdaptiveConcurrency(a), Setup::AdaptiveConcurrency(b)) => a == b,
            (Setup::Throttle(a), Setup::Throttle(b)) => a == b,
            _ => false,
        }
    }
}

/// A named state: a breaker (in a registry of its own, which the policies' `breakers_for`
/// show), or an overload guard's part.
#[derive(Clone)]
pub(crate) enum State {
    Breaker(BreakerRegistry),
    Hold(Arc<Part<Held>>),
    RateLimit(Arc<Part<Rate>>),
    Bulkhead(Part<Arc<Bulkhead>>),
    RetryBudget(Arc<Part<Budget>>),
    ServerQuota(Arc<Part<Quotas>>),
    AdaptiveConcurrency(Part<Arc<AdaptiveLimit>>),
    Throttle(Arc<Part<Throttle>>),
}

#[derive(Clone)]
struct Named {
    /// The policy that made it, which errors name.
    owner: Arc<str>,
    setup: Setup,
    /// The Redis it shares through, if any: a reload that changes it makes the state anew.
    fleet: Option<Fleet>,
    state: State,
}

/// The named states of one client's policies.
#[derive(Default)]
pub(crate) struct NamedStates {
    states: Mutex<HashMap<(Kind, ScopeName), Named>>,
    /// The states of the policies a reload replaces: kept when their setup is unchanged,
    /// while the new policies compile ([`forget_previous`](Self::forget_previous) then drops
    /// the rest, so that a state no policy names, its Redis link with it, does not live on).
    previous: Mutex<HashMap<(Kind, ScopeName), Named>>,
}

impl std::fmt::Debug for NamedStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = (states.keys())
            .map(|(kind, name)| format!("{}:name:{name}", kind.setting()))
            .collect();
        names.sort();
        f.debug_struct("NamedStates")
            .field("states", &names)
            .finish()
    }
}

impl NamedStates {
    /// No states yet; a reload passes the states it replaces, to keep.
    pub(crate) fn new(previous: Option<&NamedStates>) -> Self {
        let previous = previous.map_or_else(HashMap::new, |previous| {
            (previous
                .states
                .lock()
                .unwrap_or_else(PoisonError::into_inner))
            .clone()
        });
        NamedStates {
            states: Mutex::new(HashMap::new()),
            previous: Mutex::new(previous),
        }
    }

    /// Drops the replaced policies' states that no new policy took over: called once every
    /// policy has compiled.
    pub(crate) fn forget_previous(&self) {
        (self.previous.lock().unwrap_or_else(PoisonError::into_inner)).clear();
    }

    /// The state of `kind` named `name`, for the policy `rule` that sets it up as `setup`
    /// (sharing through `fleet`, if any): the one made before (by another policy, or before
    /// a reload, with the same setup), else `make`'s. Refused when another policy named it
    /// with other settings: one name is one limit.
    pub(crate) fn get_or_make(
        &self,
        kind: Kind,
        name: &ScopeName,
        rule: &Arc<str>,
        setup: Setup,
        fleet: Option<&Fleet>,
        make: impl FnOnce() -> State,
    ) -> Result<State, Error> {
        let same_fleet = |other: &Option<Fleet>| match (fleet, other) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same(b),
            _ => false,
        };
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (kind, name.clone());
        if let Some(named) = states.get(&key) {
            if named.setup.same(&setup) {
                return Ok(named.state.clone());
            }
            let (setting, owner) = (kind.setting(), &named.owner);
            let other = if named.setup.only_sharing_differs(&setup) {
                format!("the same {setting}, but one shares it through Redis and one does not")
            } else {
                format!("another {setting}")
            };
            return Err(Error::invalid_config(format!(
                "{setting}: scope \"name:{name}\" is one limit, and policy {owner:?} names it \
                 with {other}; give every rule that names it the same {setting} \
                 (the easy way: set it, with its scope, in the default policy, which every \
                 rule inherits)"
            )));
        }
        let kept = (self.previous.lock().unwrap_or_else(PoisonError::into_inner))
            .remove(&key)
            .filter(|named| named.setup.same(&setup) && same_fleet(&named.fleet))
            .map(|named| named.state);
        let state = kept.unwrap_or_else(make);
        let named = Named {
            owner: rule.clone(),
            setup,
            fleet: fleet.cloned(),
            state: state.clone(),
        };
        states.insert(key, named);
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overload::{QuotaHeaders, ResetFormat, hold_part};

    /// A named server quota is one view of one quota: rules that name it must follow it and
    /// read it alike, and the refusal names the setting, the scope and the other rule.
    #[test]
    fn a_named_server_quota_is_refused_with_other_settings() -> Result<(), Error> {
        let named = NamedStates::new(None);
        let crate::policy::Scope::Named(name) = crate::policy::Scope::named("openai")? else {
            return Err(Error::invalid_config("Scope::named made another scope"));
        };
        let headers = || {
            QuotaHeaders::named(
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            )
            .reset_format(ResetFormat::Duration)
        };
        let setup = |config: ServerQuotaConfig| Setup::ServerQuota(config);
        // The part is the guard's; any state shows what `get_or_make` hands back.
        let make = || State::Hold(hold_part(Arc::from("name:openai"), None));
        let chat: Arc<str> = Arc::from("chat");
        let pace = ServerQuotaConfig::pace().headers(headers());
        let kind = Kind::ServerQuota;
        named.get_or_make(kind, &name, &chat, setup(pace.clone()), None, make)?;
        let embed: Arc<str> = Arc::from("embeddings");
        let same = named.get_or_make(kind, &name, &embed, setup(pace), None, make);
        assert!(same.is_ok());
        for other in [
            ServerQuotaConfig::hold().headers(headers()),
            ServerQuotaConfig::pace(),
        ] {
            let refused = named.get_or_make(kind, &name, &embed, setup(other), None, make);
            let shown = refused.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                shown.contains(
                    "server_quota: scope \"name:openai\" is one limit, and policy \"chat\" \
                     names it with another server_quota"
                ),
                "{shown}"
            );
        }
        Ok(())
    }
}
