//! Per-endpoint policies: different rules for different APIs, from one client.
//!
//! A client has a **default policy** and an ordered list of **endpoint rules**, each a
//! [`Matcher`] (methods, host, path) and an [`EndpointPolicy`]. The first rule that matches a
//! request decides its policy; every setting the rule leaves unset comes from the default
//! policy, and every setting the default leaves unset from the library defaults. Each policy
//! is compiled once, when the client is built, into the settings of every layer, so choosing
//! one per request is a few hash lookups, however many rules there are (the rules are indexed
//! by host and path), and allocates nothing (but once, for a request path with an escape not
//! in normal form, such as `%7e` or `%41`, when three or more rules are indexed by path).
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().max_attempts(3).deadline(Duration::from_secs(10)))
//!     .endpoint(
//!         "payments",
//!         Matcher::new().host("api.example.com")?.path("/v1/charges*").methods(["POST"])?,
//!         EndpointPolicy::new().max_attempts(1).deadline(Duration::from_secs(2)),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! The same can come from a TOML file: see [`ClientBuilder::config_file`](crate::ClientBuilder::config_file).
//! The chosen policy's name is in every error ([`Error::policy`](crate::Error::policy)).
//!
//! # Endpoints and scopes
//!
//! An **endpoint** is where a request goes, named by its **endpoint key**: scheme, host and
//! port, e.g. `https://api.example.com` (a default port left out; never the path, query or
//! user info: see [`endpoint_key`](crate::breaker::endpoint_key)). `/a` and `/b` on one host
//! are one endpoint; routes are told apart by rules ([`Matcher`]).
//!
//! The guards that keep state (the circuit breaker, `Retry-After` holds, the rate limit, the
//! bulkhead, the retry budget, the server's advertised quota) keep it per endpoint key under
//! each rule by default. Each
//! guard's [`Scope`] can say otherwise: one state for everything a rule matches
//! ([`Scope::Rule`]), or one shared by every rule that names it ([`Scope::named`]): one
//! quota in one bucket, whichever rule a request matches and **whatever its host**, so name
//! it in the rules that call one API. A named scope is one limit, so set it once; in the
//! default policy, which every rule inherits, when the client calls that one API only:
//!
//! ```
//! # #[cfg(feature = "config")] {
//! use resilient_http::Client;
//!
//! let client = Client::builder()
//!     .config_toml(r#"
//!         ## 20 requests a second, whichever rule a request matches and whatever its
//!         ## host: this client calls one API.
//!         [default.rate_limit]
//!         rate = 20
//!         scope = "name:api"
//!
//!         ## One breaker per rule, whatever the host (under the default, "host", one
//!         ## per endpoint key under each rule: rules already keep theirs apart).
//!         [default.breaker]
//!         scope = "rule"
//!
//!         [[endpoint]]
//!         name = "payments"
//!         match = { path = "/v1/payments*", methods = ["POST"] }
//!         max_attempts = 1
//!     "#)
//!     .build()?;
//! # let _ = client;
//! # }
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! In the builder: `EndpointPolicy::new().rate_limit_scope(Scope::named("api")?)`, and
//! `breaker_scope`, `hold_scope`, `bulkhead_scope`, `retry_budget_scope`,
//! `server_quota_scope`, `adaptive_concurrency_scope`, `throttle_scope`. In a file: `scope` in
//! `[….breaker]`, `[….rate_limit]`, `[….bulkhead]`, `[….retry_budget]`, `[….server_quota]`,
//! `[….adaptive_concurrency]` and `[….throttle]`, and
//! `hold_scope` in the policy's table; values `"host"` (the default), `"rule"`,
//! `"name:<name>"`. A scope's state has a key, which breakers, errors,
//! [`Client::overload`](crate::Client::overload) and telemetry show: the endpoint key, the
//! rule's name, or `name:<name>`. With a Redis (feature `redis`), a named scope's shared
//! rate limit, budget and holds are one Redis key (`name:<name>`, after the prefix) for every
//! rule and every replica.

use std::time::Duration;

pub(crate) mod compiled;
#[cfg(feature = "config")]
mod file;
/// The words and places of a TOML file's mistakes, shared with the simulator's scenario files.
#[cfg(feature = "cli")]
pub(crate) use file::{section_at, toml_error};
mod index;
mod matcher;
mod named;
mod scope;

pub(crate) use compiled::{CompiledPolicy, Policies};
#[cfg(feature = "config")]
pub use file::PolicyConfig;
#[cfg(feature = "config")]
pub(crate) use file::{FileSource, PolicyFile};
pub use matcher::Matcher;
pub(crate) use named::NamedStates;
pub use scope::{Scope, ScopeName};

use crate::bounds;
use crate::error::Error;
use crate::retry::Jitter;

/// Every setting of a policy, once: its field, its setter (unless the setter is written out
/// below, `[own setter]`), its range (`within`, in [`bounds`]) and its inheritance come from
/// this table. Compiling a policy (`compiled.rs`) and reading one from a file (`file.rs`) name
/// every field, so a setting added here does not build until both use it.
macro_rules! settings {
    ($(
        $(#[$doc:meta])*
        $field:ident: $ty:ty $([$own:ident setter])? $(, within $bound:expr)?;
    )*) => {
        /// The settings of one policy: how requests that a rule matches (or the default
        /// policy's) are retried, timed and guarded. Unset settings are inherited; see the
        /// [module docs](self).
        ///
        /// The guards keep their state per **endpoint** by default: per endpoint key, the
        /// scheme, host and port a request goes to (`https://api.example.com`; never its
        /// path), under each rule. Each guard's scope (`breaker_scope`, `hold_scope`,
        /// `rate_limit_scope`, `bulkhead_scope`, `retry_budget_scope`, `server_quota_scope`,
        /// `adaptive_concurrency_scope`, `throttle_scope`) widens that to the
        /// rule or to a name several rules share: see [`Scope`] and the
        /// [module docs](self#endpoints-and-scopes).
        ///
        ///
        /// Builder-style: `EndpointPolicy::new().max_attempts(1).deadline(Duration::from_secs(2))`.
        /// The same keys in a policy file: [the guide](crate::guide::policies).
        ///
        /// ```
        /// use std::time::Duration;
        /// use resilient_http::Client;
        /// use resilient_http::overload::RateLimitConfig;
        /// use resilient_http::policy::{EndpointPolicy, Matcher};
        ///
        /// let payments = EndpointPolicy::new()
        ///     .max_attempts(1)
        ///     .deadline(Duration::from_secs(2))
        ///     .breaker_failure_rate(0.2)
        ///     .rate_limit(RateLimitConfig::new(20, Duration::from_secs(1)));
        /// let client = Client::builder()
        ///     .default_policy(EndpointPolicy::new().max_attempts(3))
        ///     .endpoint("payments", Matcher::new().host("api.example.com")?, payments)
        ///     .build()?;
        /// # let _ = client;
        /// # Ok::<(), resilient_http::Error>(())
        /// ```
        #[derive(Clone, Debug, Default, PartialEq)]
        #[non_exhaustive]
        pub struct EndpointPolicy {
            $(pub(crate) $field: Option<$ty>,)*
        }

        impl EndpointPolicy {
            $(settings!(@setter $(#[$doc])* $field: $ty $([$own])?);)*

            /// Checks every setting this policy sets against its range ([`bounds`], the same
            /// check the policy file and the layers' builders make); the error names the
            /// setting.
            pub(crate) fn check(&self) -> Result<(), Error> {
                $($(
                    if let Some(value) = self.$field.clone() {
                        $bound.check(value).map_err(Error::refused(stringify!($field)))?;
                    }
                )?)*
                Ok(())
            }

            /// `self`, with every setting it leaves unset taken from `parent`.
            pub(crate) fn inherit(&self, parent: &EndpointPolicy) -> EndpointPolicy {
                EndpointPolicy {
                    $($field: self.$field.clone().or_else(|| parent.$field.clone()),)*
                }
            }
        }
    };
    (@setter $(#[$doc:meta])* $field:ident: $ty:ty [own]) => {};
    (@setter $(#[$doc:meta])* $field:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $field(mut self, value: $ty) -> Self {
            self.$field = Some(value);
            self
        }
    };
}

settings! {
    /// Attempts in all, the first included (1: no retries; at most 100).
    max_attempts: u32, within bounds::ATTEMPTS;
    /// Longest time for one attempt, response body included (above zero, at most 1 day).
    attempt_timeout: Duration, within bounds::TIMEOUT;
    /// Longest time for the whole call, retries and sleeps included (above zero, at most
    /// 1 day).
    deadline: Duration, within bounds::TIMEOUT;
    /// Longest time to connect (above zero, at most 1 day). Only the default policy's is
    /// used: reqwest sets it per client, so an endpoint rule that sets it is rejected when
    /// the client is built.
    connect_timeout: Duration, within bounds::TIMEOUT;
    retry_statuses: Vec<u16> [own setter], within bounds::STATUSES;
    /// Whether POST, PATCH and other non-idempotent requests may be retried after they may
    /// have been processed.
    retry_non_idempotent: bool;
    /// Whether to add a random `Idempotency-Key` to non-idempotent requests without one.
    idempotency_key: bool;
    /// The longest `Retry-After` obeyed (at most 1 day).
    retry_after_cap: Duration, within bounds::RETRY_AFTER_CAP;
    /// The most bytes of a response body read inside an attempt (`send_buffered`,
    /// `bytes`, `text`, `recv_json`, `send_with`, a body classifier); a longer body fails with
    /// [`ErrorKind::BodyTooLarge`](crate::ErrorKind::BodyTooLarge). Default 16 MiB; 1 byte
    /// to 1 GiB, since it is held in memory (read a larger body after `send()`). It counts
    /// the decoded bytes of a compressed answer (features `gzip`, `brotli`, `zstd`,
    /// `deflate`), read chunk by chunk, so a small answer that expands past it stops there.
    body_limit: u64, within bounds::BODY_LIMIT;
    /// The most bytes of a streaming request body kept as it is sent, so that a retry can
    /// send it again (see [`RequestBuilder::body_with`](crate::RequestBuilder::body_with) for
    /// larger ones). Default 64 KiB; 0 keeps none; at most 16 MiB. A longer stream gets one
    /// attempt, and a transient failure of it is
    /// [`BodyNotReplayable`](crate::ErrorKind::BodyNotReplayable).
    replay_buffer: u64, within bounds::REPLAY_BUFFER;
    /// The first retry's delay before jitter (at most 1 hour).
    backoff_base: Duration, within bounds::BACKOFF_DELAY;
    /// The longest delay between attempts (at most 1 hour).
    backoff_max: Duration, within bounds::BACKOFF_DELAY;
    /// Growth of the delay per retry (1 to 100).
    backoff_multiplier: f64, within bounds::BACKOFF_MULTIPLIER;
    /// The jitter mode.
    jitter: Jitter;
    /// Whether the circuit breaker guards this policy's requests.
    breaker_enabled: bool;
    /// Calls in the breaker's window (1 to 10,000).
    breaker_window: u32, within bounds::WINDOW_CALLS;
    /// The failure rate that opens the breaker (above 0, at most 1).
    breaker_failure_rate: f64, within bounds::RATE;
    /// Fewest calls in the window before the breaker may open (1 to 10,000, and at most
    /// the window's size).
    breaker_min_calls: u32, within bounds::MIN_CALLS;
    /// How long the breaker stays open the first time (above zero, at most 1 hour).
    breaker_open_for: Duration, within bounds::OPEN_DURATION;
    /// The longest the breaker stays open after re-openings (above zero, at most 1 hour, not
    /// below `breaker_open_for`; default 60 s, or `breaker_open_for` if that is longer).
    breaker_open_for_max: Duration, within bounds::OPEN_DURATION;
    /// Trial calls in half-open (1 to 1023).
    breaker_half_open_probes: u32, within bounds::HALF_OPEN_PROBES;
    /// Whether a `429 Too Many Requests` counts as a breaker failure (default false: a rate
    /// limiter's "slow down" is not an endpoint that is down; the call still backs off and
    /// a `Retry-After` holds the endpoint). See
    /// [`BreakerConfigBuilder::count_429`](crate::breaker::BreakerConfigBuilder::count_429);
    /// the file's `count_429` in `[….breaker]`.
    breaker_count_429: bool;
    /// Which requests share a breaker (default [`Scope::Host`]: one per endpoint key).
    /// [`Scope::Rule`] gives the rule one breaker whatever the host; a [`Scope::named`]
    /// one is shared by every rule that names it. See [`Scope`].
    breaker_scope: Scope;
    /// The endpoint's retry budget: retries may add `ratio` of the first attempts plus
    /// `min_per_second`, over `window` (default 0.2, 10, 10 s); when it is spent, a transient
    /// failure is returned at once as [`BudgetExhausted`](crate::ErrorKind::BudgetExhausted).
    /// Set as a whole: what it leaves out takes the library default, not the default
    /// policy's.
    retry_budget: crate::retry::BudgetConfig, within bounds::BUDGET;
    /// Whether retries spend from the retry budget (default true).
    retry_budget_enabled: bool;
    /// Whether the retry budget is counted fleet-wide, in the client's Redis (feature
    /// `redis`; the file's `shared = "redis"` in `[….retry_budget]`). Default false.
    retry_budget_shared: bool;
    /// Which requests share one retry budget (default [`Scope::Host`]). See [`Scope`].
    retry_budget_scope: Scope;
    /// Whether a 429 or 503 with a `Retry-After` within the cap holds its endpoint for every
    /// call until then: later calls wait if that fits their deadline, else fail at once with
    /// [`RateLimited`](crate::ErrorKind::RateLimited) (default true). When the hold ends, the
    /// calls that waited go spread over a short window after it, not at once (see
    /// [`overload`](crate::overload#when-a-hold-ends)).
    hold_on_retry_after: bool;
    /// Which requests a `Retry-After` hold stops (default [`Scope::Host`]: every call to
    /// the endpoint key under this rule, so a 429 on `/a` does not hold `/b` under another
    /// rule). [`Scope::Rule`]: every call of this rule, whatever the host. See [`Scope`].
    hold_scope: Scope;
    /// A client-side rate limit per endpoint key (default: none): a request over it waits
    /// for its slot if that fits its deadline (reserving it: see
    /// [`RateLimitConfig`](crate::overload::RateLimitConfig)), else fails at once with
    /// [`RateLimited`](crate::ErrorKind::RateLimited). Retries take slots too.
    rate_limit: crate::overload::RateLimitConfig, within bounds::RATE_LIMIT;
    /// Whether the rate limit is the fleet's: one limit for every replica of the service,
    /// kept in the client's Redis ([`ClientBuilder::redis`](crate::ClientBuilder), feature
    /// `redis`; the file's `shared = "redis"` in `[….rate_limit]`). Default false: each
    /// process keeps its own. Inherited on its own, as `retry_budget_enabled` is; it applies
    /// when the policy has a rate limit. A shared limit's lease lives
    /// `per / rate × max(1, ⌊burst / 2⌋)`; when that is shorter than the Redis timeout,
    /// `build` logs a WARN: a refill Redis answers in time could bring a lease already
    /// expired, whose slots are then granted locally (raise `burst`, or lower the timeout).
    rate_limit_shared: bool;
    /// Which requests share one rate limit (default [`Scope::Host`]). A [`Scope::named`] one
    /// is one bucket for every rule that names it (and, shared, for every replica), whatever
    /// the host: a quota across rules. See [`Scope`].
    rate_limit_scope: Scope;
    /// A bulkhead per endpoint key (default: none): at most `max_in_flight` calls at once;
    /// a call over it queues up to `queue_timeout` (and its deadline), then fails with
    /// [`BulkheadFull`](crate::ErrorKind::BulkheadFull).
    bulkhead: crate::overload::BulkheadConfig, within bounds::BULKHEAD;
    /// Which requests share one bulkhead (default [`Scope::Host`]). See [`Scope`].
    bulkhead_scope: Scope;
    /// Following the quota the server advertises in its answers (IETF `RateLimit` fields,
    /// `X-RateLimit-*`, or an API's own names): holding a scope whose remaining count reaches
    /// 0 until its reset (the default,
    /// [`ServerQuotaConfig::hold`](crate::overload::ServerQuotaConfig::hold)), pacing the
    /// count over the time to the reset, or not at all. Set as a whole (headers included);
    /// header names are checked when the client is built. The file's `[….server_quota]`;
    /// see [`ServerQuotaConfig`](crate::overload::ServerQuotaConfig).
    server_quota: crate::overload::ServerQuotaConfig, within bounds::SERVER_QUOTA;
    /// Which requests share one view of the server's quota (default: the hold's,
    /// `hold_scope`, itself [`Scope::Host`] by default: the answers of one endpoint key
    /// teach its calls, and a `Retry-After` and a quota, the two things a server says of its
    /// limits, hold the same requests). A server that counts one quota for several hosts or
    /// rules (one API key) wants a [`Scope::named`] one. See [`Scope`]; the file's `scope`
    /// in `[….server_quota]`.
    server_quota_scope: Scope;
    /// An adaptive limit on the attempts in flight (default: none): it finds the
    /// dependency's capacity from the latency it observes; an attempt over it waits for a
    /// place (first come, first served) up to its `queue_timeout` and the deadline, then
    /// fails with [`BulkheadFull`](crate::ErrorKind::BulkheadFull). Retries and hedges take
    /// places too. The file's `[….adaptive_concurrency]`; see
    /// [`AdaptiveConcurrencyConfig`](crate::overload::AdaptiveConcurrencyConfig).
    adaptive_concurrency: crate::overload::AdaptiveConcurrencyConfig, within bounds::ADAPTIVE_CONCURRENCY;
    /// Which requests share one adaptive limit (default [`Scope::Host`]). See [`Scope`].
    adaptive_concurrency_scope: Scope;
    /// Client-side adaptive throttling (default: off): when the dependency rejects much of
    /// what it gets, attempts are turned away before they are sent, with
    /// [`Throttled`](crate::ErrorKind::Throttled). The file's `[….throttle]`; see
    /// [`ThrottleConfig`](crate::overload::ThrottleConfig).
    throttle: crate::overload::ThrottleConfig, within bounds::THROTTLE;
    /// Which requests share one throttle (default [`Scope::Host`]). See [`Scope`].
    throttle_scope: Scope;
    /// How much this policy's requests matter under overload (default
    /// [`Criticality::Default`](crate::overload::Criticality::Default)); a request's own
    /// ([`RequestBuilder::criticality`](crate::RequestBuilder::criticality)) wins. The
    /// file's `criticality`.
    criticality: crate::overload::Criticality;
    /// The header that tells the server each attempt's limit (default: none): the attempt
    /// timeout capped by what is left of the deadline, less
    /// [`propagate_deadline_margin`](Self::propagate_deadline_margin); an attempt with nothing
    /// left after the margin is not sent. See [`DeadlineHeader`](crate::deadline::DeadlineHeader)
    /// and [`deadline`](crate::deadline#outgoing-telling-the-server-how-long-the-caller-waits).
    propagate_deadline: crate::deadline::DeadlineHeader, within bounds::DEADLINE_HEADER;
    /// What [`propagate_deadline`](Self::propagate_deadline) takes off each attempt's limit,
    /// for the request's way to the server and the answer's way back (default 20 ms; zero to
    /// 1 minute, and below the attempt timeout).
    propagate_deadline_margin: Duration, within bounds::DEADLINE_MARGIN;
    /// Hedged requests (default: none): when an attempt has not answered after `after`, send
    /// another, up to `max` per call, and take the first good answer. Only requests that may
    /// be sent twice (idempotent, or with an `Idempotency-Key`); hedges spend the retry budget
    /// and rate-limit slots. See [`crate::hedge`].
    hedge: crate::hedge::HedgeConfig, within bounds::HEDGE;
    /// Whether this policy's request and attempt metrics (feature `metrics`) carry
    /// OpenTelemetry's `server.address` and `server.port` labels (default false; refused
    /// without the feature). Bounded as the breaker labels are: the first
    /// [`max_breakers`](crate::breaker::BreakerConfigBuilder::max_breakers) servers the
    /// policy meets get labels of their own, the others share `_OTHER` (see
    /// [`telemetry`](crate::telemetry#server-labels)). Off by default because a service
    /// that calls user-supplied URLs (webhooks) has unbounded hosts.
    metrics_server_address: bool;
}

impl EndpointPolicy {
    /// A policy that sets nothing: everything is inherited.
    pub fn new() -> Self {
        EndpointPolicy::default()
    }

    /// The statuses that are transient (retried, counted by the breaker); every other 4xx and
    /// 5xx is permanent. Transport errors are classified as usual. Codes from 100 to 599, at
    /// most 500 entries.
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.retry_statuses = Some(statuses.into_iter().collect());
        self
    }

    /// Checks that this policy may be an endpoint rule called `name`, after the rules called
    /// `before`: the one check for rules from the builder and from files, which only say
    /// where the refused rule came from. Its name must be new (`"default"` is taken), and it
    /// may not set what only the default policy can.
    pub(crate) fn check_rule<'a>(
        &self,
        name: &str,
        mut before: impl Iterator<Item = &'a str>,
    ) -> Result<(), Refused> {
        if name == "default" || before.any(|other| other == name) {
            return Err(Refused {
                key: "name",
                why: "a policy of this name is already defined",
            });
        }
        if self.connect_timeout.is_some() {
            return Err(Refused {
                key: "connect_timeout",
                why: "only the default policy can set it (reqwest sets it per client)",
            });
        }
        Ok(())
    }
}

impl EndpointPolicy {
    /// Whether this policy's rate limit is the fleet's: it has one, and shares it. The one
    /// test, for compiling a policy and for [`check_sharing`](Self::check_sharing).
    pub(crate) fn shares_rate(&self) -> bool {
        self.rate_limit.is_some() && self.rate_limit_shared == Some(true)
    }

    /// The server's quota this policy follows (the default when it sets none: hold, reading
    /// `auto`'s fields); `None` when it sets `follow = "off"`, which keeps no quota state.
    pub(crate) fn followed_quota(&self) -> Option<crate::overload::ServerQuotaConfig> {
        self.server_quota.clone().unwrap_or_default().followed()
    }

    /// Whether this policy's retry budget is the fleet's: it spends one, and shares it.
    pub(crate) fn shares_budget(&self) -> bool {
        self.retry_budget_enabled != Some(false) && self.retry_budget_shared == Some(true)
    }

    /// Checks what this policy (its settings as compiled, inherited ones included) asks of
    /// the client's Redis, whose calls may take up to `redis_timeout` (`None`: the client has
    /// no Redis): a shared limit needs one (else an error), and a shared rate limit's lease
    /// should outlive the timeout (else a warning, `Ok(Some(..))`: see
    /// `fleet::check_lease_life`). Only `build` knows the Redis (a file may come before
    /// `ClientBuilder::redis`), so this is checked there, for policies from the builder and
    /// from files alike, which only say where the setting was made.
    ///
    /// A lease shorter than the timeout is a warning, not an error: it is how a common
    /// configuration that works is written (1,000/s, burst 20, the default 20 ms timeout:
    /// leases of 10 ms, where a refill takes well under a millisecond), and it only fails
    /// when Redis is slower than the lease lives. The warning says so, and how to avoid it.
    pub(crate) fn check_sharing(
        &self,
        redis_timeout: Option<Duration>,
    ) -> Result<Option<Unshared>, Unshared> {
        let Some(timeout) = redis_timeout else {
            let how = if cfg!(feature = "redis") {
                "a [redis] table in the policy file, or ClientBuilder::redis(url)"
            } else {
                "the `redis` feature, which this build of resilient-http does not have"
            };
            let (setting, what) = if self.shares_rate() {
                (Setting::RateLimitShared, "rate limit")
            } else if self.shares_budget() {
                (Setting::RetryBudgetShared, "retry budget")
            } else {
                return Ok(None);
            };
            let why = format!("a shared {what} needs a Redis: {how}");
            return Err(Unshared { setting, why });
        };
        #[cfg(feature = "redis")]
        if let Some(config) = self.rate_limit.filter(|_| self.shares_rate())
            && let Err(why) = crate::fleet::check_lease_life(config, timeout)
        {
            let setting = Setting::RateLimit;
            return Ok(Some(Unshared { setting, why }));
        }
        let _ = timeout;
        Ok(None)
    }
}

/// Why [`EndpointPolicy::check_sharing`] refused a policy, or warns about it: the setting at
/// fault, and why.
#[derive(Debug)]
pub(crate) struct Unshared {
    pub(crate) setting: Setting,
    pub(crate) why: String,
}

/// A setting that only `build` can refuse or warn about (it depends on the client's Redis),
/// so that the message can say where it was made: the builder's name, or a policy file's
/// table and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Setting {
    // Warned about only against a Redis.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    RateLimit,
    RateLimitShared,
    RetryBudgetShared,
}

impl Setting {
    /// The builder's name for it, as errors from the builder say it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Setting::RateLimit => "rate_limit",
            Setting::RateLimitShared => "rate_limit_shared",
            Setting::RetryBudgetShared => "retry_budget_shared",
        }
    }

    /// Its table in a policy file, and the keys that set it there, the one to name first.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn in_file(self) -> (&'static str, &'static [&'static str]) {
        match self {
            // A lease too short is raised by `burst`, if the table sets it.
            Setting::RateLimit => ("rate_limit", &["burst", "rate"]),
            Setting::RateLimitShared => ("rate_limit", &["shared"]),
            Setting::RetryBudgetShared => ("retry_budget", &["shared"]),
        }
    }

    /// Whether `policy` sets it.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn is_set(self, policy: &EndpointPolicy) -> bool {
        match self {
            Setting::RateLimit => policy.rate_limit.is_some(),
            Setting::RateLimitShared => policy.rate_limit_shared.is_some(),
            Setting::RetryBudgetShared => policy.retry_budget_shared.is_some(),
        }
    }

    /// Whether `a` and `b` set it to the same value (or both leave it unset).
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn same(self, a: &EndpointPolicy, b: &EndpointPolicy) -> bool {
        match self {
            Setting::RateLimit => a.rate_limit == b.rate_limit,
            Setting::RateLimitShared => a.rate_limit_shared == b.rate_limit_shared,
            Setting::RetryBudgetShared => a.retry_budget_shared == b.retry_budget_shared,
        }
    }
}

/// Why an endpoint rule was refused: the key at fault, and what is wrong with it.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) key: &'static str,
    pub(crate) why: &'static str,
}

/// Which setters of a [`RetryPolicyBuilder`](crate::retry::RetryPolicyBuilder) or
/// [`BreakerConfigBuilder`](crate::breaker::BreakerConfigBuilder) were called, one bit each
/// (the bits are the builder's own constants). `ClientBuilder::retry` and `circuit_breaker`
/// write only these into the default policy, so that a setting the user did not name keeps
/// what an earlier call or a policy file set. Kept in the built value, copied by
/// `to_builder`; a call never reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Named(u16);

impl Named {
    /// Records that setting `bit` was named.
    pub(crate) fn add(&mut self, bit: u16) {
        self.0 |= bit;
    }

    /// Forgets that setting `bit` was named.
    pub(crate) fn remove(&mut self, bit: u16) {
        self.0 &= !bit;
    }

    /// Whether setting `bit` was named.
    pub(crate) fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }

    /// `Named` with only `bit`.
    pub(crate) const fn only(bit: u16) -> Self {
        Named(bit)
    }
}
