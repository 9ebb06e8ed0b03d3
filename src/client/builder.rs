//! Configuring a [`Client`]: settings, policies, hooks and layers, checked once in `build`.

use std::fmt;
#[cfg(feature = "config")]
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tower::{Layer, Service, ServiceExt};

use crate::breaker::BreakerConfig;
use crate::classify::{BodyClassifier, Classifier, SharedClassifier};
use crate::error::{BoxError, Error, Short};
use crate::extras::{AttemptService, Extras};
use crate::hook::{AttemptHook, AuthRefresher};
use crate::outer::{CallService, Exchange, Exchanged, OuterService, outer_service};
use crate::overload::Fleet;
use crate::policy::compiled::{Base, Redis};
use crate::policy::{CompiledPolicy, EndpointPolicy, Matcher, NamedStates, Policies, Unshared};
#[cfg(feature = "config")]
use crate::policy::{FileSource, PolicyConfig, PolicyFile};
use crate::retry::RetryPolicy;
use crate::timeout::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOTAL_DEADLINE, attempt_limit,
};

use super::reqwest_timeouts::ReqwestTimeouts;
use super::{Built, Client};

/// Configures a [`Client`].
///
/// Every setting has a default (see [the guide](crate::guide::policies#defaults-and-why));
/// [`build`](Self::build) checks them all and names the one out of range.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::Client;
/// use resilient_http::policy::{EndpointPolicy, Matcher};
///
/// let client = Client::builder()
///     .attempt_timeout(Duration::from_secs(2)) // per attempt, body included
///     .deadline(Duration::from_secs(5)) // the whole call, retries included
///     .connect_timeout(Duration::from_secs(1))
///     .endpoint(
///         "payments",
///         Matcher::new().host("api.example.com")?.methods(["POST"])?,
///         EndpointPolicy::new().max_attempts(1),
///     )
///     .reqwest(|b| b.user_agent("orders/1.4"))
///     .build()?;
/// # let _ = client;
/// # Ok::<(), resilient_http::Error>(())
/// ```
///
/// # One setting, one value: which call wins
///
/// Every setting of the default policy is kept in one place, the default
/// [`EndpointPolicy`], and each way of setting it writes there, **setting by setting, in the
/// order of the calls: the later call wins**. A call that does not name a setting leaves it
/// as it was. A [`RetryPolicy`] or [`BreakerConfig`] sets the settings it **names**, the
/// setters of its builder that were called (whatever their value), and no other.
/// A policy file's (or [`config`](Self::config)'s) `[default]` is merged at the point of the
/// `config_*` call. Endpoint rules inherit from the result, whatever the order. The
/// timeouts a reqwest client already has are the exception: they are taken when nothing
/// else sets them, and refused when something does ([`build`](Self::build) fails, naming
/// both), since their place in the calls says nothing.
///
/// | Setting | `ClientBuilder` | [`default_policy`](Self::default_policy) / file `[default]` | reqwest |
/// |---|---|---|---|
/// | attempts, backoff (base, max, multiplier, jitter), `Retry-After` cap, non-idempotent retries, idempotency key, hedging, replay buffer | [`retry`](Self::retry): those its policy names ([`RetryPolicy::never`]: attempts) | [`max_attempts`](EndpointPolicy::max_attempts), `backoff_*`, … / `max_attempts`, `[default.backoff]`, … | — |
/// | a `backoff` crate schedule (it replaces the backoff settings made before it; a later backoff setting, or a rule's, replaces it), a jitter seed | [`retry`](Self::retry) only, when its policy names them | — | — |
/// | breaker on/off, window (calls), failure rate, min calls, open durations (first, longest), half-open probes, `count_429` | [`circuit_breaker`](Self::circuit_breaker): on, and those its config names; [`no_circuit_breaker`](Self::no_circuit_breaker): off | `breaker_*` / `[default.breaker]` | — |
/// | breaker time window (replaces a call window set before it), slow calls, `max_breakers`, `on_state_change` | [`circuit_breaker`](Self::circuit_breaker) only, when its config names them | — | — |
/// | attempt timeout | [`attempt_timeout`](Self::attempt_timeout) | `attempt_timeout` | `timeout` in [`reqwest`](Self::reqwest) or on a [`reqwest_client`](Self::reqwest_client): taken alone, refused with another; under [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) and [`ResilientLayer`](crate::ResilientLayer), which never see the client, the policy's replaces it on every attempt |
/// | deadline | [`deadline`](Self::deadline) | `deadline` | — |
/// | connect timeout | [`connect_timeout`](Self::connect_timeout) | `connect_timeout` | `connect_timeout` in [`reqwest`](Self::reqwest): taken alone, refused with another; a [`reqwest_client`](Self::reqwest_client) keeps its own, and refuses ours |
/// | every other policy setting | — | its setter / its key | — |
///
/// ```
/// use std::time::Duration;
/// use resilient_http::Client;
/// use resilient_http::policy::EndpointPolicy;
/// use resilient_http::retry::RetryPolicy;
///
/// let retry = RetryPolicy::builder().max_attempts(2).seed(7).build()?;
/// // The later call wins, setting by setting: 5 attempts; the seed stays retry's.
/// let client = Client::builder()
///     .retry(retry.clone())
///     .default_policy(EndpointPolicy::new().max_attempts(5))
///     .build()?;
/// // The other order: `retry` names max_attempts, so 2 attempts.
/// let client = Client::builder()
///     .default_policy(EndpointPolicy::new().max_attempts(5))
///     .retry(retry)
///     .build()?;
/// // `retry` changes only what its policy names: the file's 1 attempt stays, with
/// // the policy's backoff.
/// let client = Client::builder()
///     .config_toml("[default]\nmax_attempts = 1\n")
///     .retry(RetryPolicy::builder().backoff_base(Duration::from_millis(10)).build()?)
///     .build()?;
/// // A file's [default] is merged where it is read: 4 attempts, then the 1 s timeout wins.
/// let client = Client::builder()
///     .config_toml("[default]\nmax_attempts = 4\nattempt_timeout = \"3s\"\n")
///     .attempt_timeout(Duration::from_secs(1))
///     .build()?;
/// // reqwest's `timeout` alone is the attempt timeout...
/// let client = Client::builder()
///     .reqwest(|b| b.timeout(Duration::from_millis(500)))
///     .build()?;
/// // ...and refused together with another.
/// let refused = Client::builder()
///     .attempt_timeout(Duration::from_secs(2))
///     .reqwest(|b| b.timeout(Duration::from_millis(500)))
///     .build();
/// assert!(refused.is_err());
/// # let _ = client;
/// # Ok::<(), resilient_http::Error>(())
/// ```
pub struct ClientBuilder {
    http: Option<reqwest::Client>,
    /// The user's settings for the reqwest client we build, applied in the order given.
    configure: Vec<Box<ConfigureReqwest>>,
    default: EndpointPolicy,
    endpoints: Vec<(String, Matcher, EndpointPolicy)>,
    classifier: SharedClassifier,
    retry: RetryPolicy,
    breaker: Option<BreakerConfig>,
    /// A policy file that could not be read, reported by `build`.
    config_error: Option<Error>,
    /// Hooks and the body classifier of every policy.
    extras: Extras,
    /// Hooks of one policy each, by name.
    policy_extras: Vec<(String, Extras)>,
    /// The user's layers around each attempt, applied to the reqwest client once built.
    attempt_layer: Option<Arc<MakeAttemptService>>,
    /// The user's layers around the whole call.
    outer: Option<OuterService>,
    /// `layer` or `attempt_layer` was called twice, which `build` reports.
    layers_set_twice: bool,
    /// The Redis the replicas share limits through.
    #[cfg(feature = "redis")]
    redis: Option<crate::fleet::FleetConfig>,
    /// The policy files read, in order, so that what `build` alone can refuse names the
    /// file, the line and the key.
    #[cfg(feature = "config")]
    sources: Vec<FileSource>,
    /// Who set the default policy's timeouts that reqwest's can clash with, for the error.
    set_by: SetBy,
}

/// Which call last set the default policy's attempt and connect timeouts, as an error names
/// it: `attempt_timeout(..)`, `default_policy(..)`, or a policy file's line.
#[derive(Clone, Debug, Default)]
struct SetBy {
    attempt_timeout: Option<String>,
    connect_timeout: Option<String>,
}

impl SetBy {
    /// Records that `by` set whichever of the two timeouts `policy` sets.
    fn record(&mut self, policy: &EndpointPolicy, by: impl Fn(&str) -> String) {
        if policy.attempt_timeout.is_some() {
            self.attempt_timeout = Some(by("attempt_timeout"));
        }
        if policy.connect_timeout.is_some() {
            self.connect_timeout = Some(by("connect_timeout"));
        }
    }
}

/// Where the reqwest client's settings come from, and the `timeout` it was given there.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Theirs {
    /// A client handed over with `reqwest_client(..)`.
    Given(Option<Duration>),
    /// The builder's own client, configured with `reqwest(..)` (or not at all).
    Configured(Option<Duration>),
}

type MakeAttemptService = dyn Fn(reqwest::Client) -> AttemptService + Send + Sync;

type ConfigureReqwest = dyn FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync;

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            http: None,
            configure: Vec::new(),
            default: EndpointPolicy::default(),
            endpoints: Vec::new(),
            classifier: SharedClassifier::default(),
            retry: RetryPolicy::default(),
            breaker: Some(BreakerConfig::default()),
            config_error: None,
            extras: Extras::default(),
            policy_extras: Vec::new(),
            attempt_layer: None,
            outer: None,
            layers_set_twice: false,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "config")]
            sources: Vec::new(),
            set_by: SetBy::default(),
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ClientBuilder");
        f.field("default", &self.default)
            .field("endpoints", &self.endpoints)
            .field("classifier", &self.classifier)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("custom_reqwest_client", &self.http.is_some())
            .field("reqwest_settings", &self.configure.len())
            .field("extras", &self.extras)
            .field("policy_extras", &self.policy_extras)
            .field("attempt_layer", &self.attempt_layer.is_some())
            .field("outer_layer", &self.outer.is_some());
        #[cfg(feature = "redis")]
        f.field("redis", &self.redis);
        f.finish()
    }
}

impl ClientBuilder {
    /// Longest time one attempt may take, from sending to the last byte of the body
    /// (default 10 s): the default policy's `attempt_timeout`, the later call wins (see the
    /// table in [`ClientBuilder`]'s docs). A `timeout` on the reqwest client as well makes
    /// [`build`](Self::build) fail.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.default.attempt_timeout = Some(timeout);
        self.set_by.attempt_timeout = Some("attempt_timeout(..)".to_owned());
        self
    }

    /// Longest time a whole call may take, all attempts and sleeps included (default 30 s),
    /// counted from the call's first poll (a future made early and run later loses nothing):
    /// the default policy's `deadline`, the later call wins (see the table in
    /// [`ClientBuilder`]'s docs).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.default.deadline = Some(deadline);
        self
    }

    /// Longest time to establish a connection (default 5 s). Set it one way: with a
    /// `connect_timeout` also set in [`reqwest`](Self::reqwest), or a `reqwest::Client`
    /// handed over with [`reqwest_client`](Self::reqwest_client) (which keeps its own),
    /// [`build`](Self::build) fails.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.default.connect_timeout = Some(timeout);
        self.set_by.connect_timeout = Some("connect_timeout(..)".to_owned());
        self
    }

    /// Sets the default policy's settings that `policy` sets; those it leaves unset stay as
    /// they were. It wins over earlier calls that set the same settings, and loses to later
    /// ones (see the table in [`ClientBuilder`]'s docs). See [`policy`](crate::policy).
    pub fn default_policy(mut self, policy: EndpointPolicy) -> Self {
        self.set_by
            .record(&policy, |_| "default_policy(..)".to_owned());
        self.default = policy.inherit(&self.default);
        self
    }

    /// Adds an endpoint rule: requests that `matcher` selects follow `policy`, which inherits
    /// what it leaves unset from the default policy. Rules are tried in the order added; the
    /// first match wins. `name` shows in errors and picks the rule in
    /// [`RequestBuilder::policy`](crate::RequestBuilder::policy).
    pub fn endpoint(
        mut self,
        name: impl Into<String>,
        matcher: Matcher,
        policy: EndpointPolicy,
    ) -> Self {
        self.endpoints.push((name.into(), matcher, policy));
        self
    }

    /// Reads the default policy and endpoint rules from a TOML file (every key, with its
    /// default: [the guide](crate::guide::policies#in-a-toml-file)). A file that cannot be
    /// read or is invalid makes [`build`](Self::build) fail with an error naming the file, the
    /// line and the key. Every `[[endpoint]]` needs a `match` table (`match = {}` takes every
    /// request): a rule without one is refused, as it would hide every rule after it.
    ///
    /// ```
    /// use resilient_http::Client;
    ///
    /// // A file of your own; written here so that the example runs.
    /// let path = std::env::temp_dir().join(format!("policy-{}.toml", std::process::id()));
    /// std::fs::write(&path, r#"
    /// [default]
    /// max_attempts = 3
    /// deadline = "10s"
    ///
    /// [[endpoint]]
    /// name = "payments"
    /// match = { host = "api.example.com", path = "/v1/charges*", methods = ["POST"] }
    /// max_attempts = 1
    /// "#)?;
    ///
    /// let client = Client::builder().config_file(&path).build()?;
    /// # let _ = std::fs::remove_file(&path);
    /// # let _ = client;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn config_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => self.apply_config(&path.display().to_string(), &text),
            Err(err) => self.fail(Error::invalid_config(format!(
                "{}: cannot read: {err}",
                path.display()
            ))),
        }
    }

    /// Reads the default policy and endpoint rules from TOML text, as
    /// [`config_file`](Self::config_file) does. There is no file to name, so an error names
    /// `<config_toml>` where a file's would name the file:
    /// `<config_toml>:2: "max_attempts": must be at least 1 and at most 100, got 0 in [default]`.
    ///
    /// ```
    /// use resilient_http::{Client, ErrorKind};
    ///
    /// let client = Client::builder()
    ///     .config_toml(
    ///         r#"
    ///         [default]
    ///         max_attempts = 3
    ///         attempt_timeout = "2s"
    ///
    ///         [[endpoint]]
    ///         name = "search"
    ///         match = { host = "search.internal" }
    ///         [endpoint.rate_limit]
    ///         rate = 100
    ///         per = "1s"
    ///         "#,
    ///     )
    ///     .build()?;
    /// # let _ = client;
    ///
    /// let err = Client::builder()
    ///     .config_toml("[default]\nmax_attempts = 0\n")
    ///     .build()
    ///     .err()
    ///     .ok_or("0 attempts is refused")?;
    /// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    /// assert!(err.to_string().contains("<config_toml>:2"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn config_toml(self, text: &str) -> Self {
        self.apply_config("<config_toml>", text)
    }

    /// Takes the default policy and endpoint rules from `config`, the policy file's layout read
    /// from your own configuration in any serde format (see [`PolicyConfig`]), as
    /// [`config_toml`](Self::config_toml) does. There is no file line to name, so an error
    /// names the policy and the key: `policy "payments": "connect_timeout": ...`.
    #[cfg(feature = "config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn config(self, config: PolicyConfig) -> Self {
        self.apply_policies(None, |before| PolicyFile::from_config(config, before))
    }

    /// Shares limits with the other replicas of this service through the Redis at `url`
    /// (`redis://[user:password@]host[:port][/db]`): every endpoint's `Retry-After` holds,
    /// and the rate limits and retry budgets of the policies that set
    /// [`rate_limit_shared`](EndpointPolicy::rate_limit_shared) or
    /// [`retry_budget_shared`](EndpointPolicy::retry_budget_shared) (the file's
    /// `shared = "redis"`). While Redis is unreachable each replica uses its own limits;
    /// no call fails because of Redis. See [`fleet`](crate::fleet) and the guide's
    /// [fleet](crate::guide::fleet).
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_http::Client;
    /// use resilient_http::overload::RateLimitConfig;
    /// use resilient_http::policy::{EndpointPolicy, Matcher};
    ///
    /// let client = Client::builder()
    ///     .redis("redis://127.0.0.1:6379")
    ///     .endpoint(
    ///         "partner",
    ///         Matcher::new().host("api.partner.example")?,
    ///         EndpointPolicy::new()
    ///             .rate_limit(RateLimitConfig::new(100, Duration::from_secs(1)).burst(40))
    ///             .rate_limit_shared(true),
    ///     )
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), resilient_http::Error>(())
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_config(crate::fleet::FleetConfig::new(url))
    }

    /// [`redis`](Self::redis) with every setting: key prefix, timeout, sync interval.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_config(mut self, config: crate::fleet::FleetConfig) -> Self {
        self.redis = Some(config);
        self
    }

    #[cfg(feature = "config")]
    fn apply_config(self, origin: &str, text: &str) -> Self {
        self.apply_policies(Some((origin, text)), |before| {
            PolicyFile::parse(origin, text, before)
        })
    }

    /// Adds the policies `read` makes (given the names of the endpoint rules so far) once each
    /// of them compiles; `file` is the name and text of the file they come from, if any, for
    /// the errors.
    #[cfg(feature = "config")]
    fn apply_policies(
        mut self,
        file: Option<(&str, &str)>,
        read: impl FnOnce(&[&str]) -> Result<PolicyFile, Error>,
    ) -> Self {
        let before: Vec<&str> = self.endpoints.iter().map(|(name, _, _)| &**name).collect();
        let parsed = read(&before).and_then(|policies| {
            let named = NamedStates::new(None);
            let base = Base {
                retry: &self.retry,
                breaker: self.breaker.as_ref(),
                classifier: &self.classifier,
                redis: Redis::NotYet,
                named: &named,
            };
            policies.compiles(file, &self.default, &base)?;
            Ok(policies)
        });
        match parsed {
            Ok(mut policies) => {
                let source = policies.source.as_ref();
                self.set_by.record(&policies.default, |key| {
                    match (source.and_then(|f| f.default_key(key)), file) {
                        (Some(line), _) => line,
                        (None, Some((origin, _))) => format!("{origin}: {key:?} in [default]"),
                        (None, None) => format!("config(..): {key:?} of the default policy"),
                    }
                });
                self.default = policies.default.inherit(&self.default);
                self.endpoints.extend(policies.endpoints);
                self.sources.extend(policies.source.take());
                #[cfg(feature = "redis")]
                if policies.redis.is_some() {
                    self.redis = policies.redis;
                }
                self
            }
            Err(err) => self.fail(err),
        }
    }

    #[cfg(feature = "config")]
    fn fail(mut self, err: Error) -> Self {
        self.config_error.get_or_insert(err);
        self
    }

    /// Sorts outcomes with your classifier instead of the default one.
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = SharedClassifier::new(classifier);
        self
    }

    /// Retries transient failures according to `policy` (default
    /// [`RetryPolicy::default`]: 3 attempts, 100 ms × 2 with full jitter, `Retry-After` up to
    /// 20 s, POST/PATCH only when safe). [`RetryPolicy::never`] turns retries off.
    ///
    /// It sets only the settings `policy` **names**, the [`RetryPolicyBuilder`] setters that
    /// were called ([`RetryPolicy::never`] names `max_attempts`; [`RetryPolicy::default`]
    /// names nothing): the others keep what an earlier call or policy file set. Like any
    /// call, it wins over earlier ones for what it names and loses to later ones (see the
    /// table in [`ClientBuilder`]'s docs). A `backoff` crate schedule replaces the backoff
    /// settings made before it.
    ///
    /// [`RetryPolicyBuilder`]: crate::retry::RetryPolicyBuilder
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry.write_named(&policy, &mut self.default);
        self
    }

    /// Guards every endpoint with a circuit breaker following `config` (default
    /// [`BreakerConfig::default`]: opens at 50 % failures over the last 100 calls, once 20 are
    /// in; open 5 s doubling to 60 s; one probe).
    ///
    /// It turns the breaker on and sets only the settings `config` **names**, the
    /// [`BreakerConfigBuilder`] setters that were called, as [`retry`](Self::retry) does for
    /// retries: the others keep what an earlier call or policy file set, and later calls
    /// that name a setting win (see the table in [`ClientBuilder`]'s docs).
    ///
    /// [`BreakerConfigBuilder`]: crate::breaker::BreakerConfigBuilder
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker
            .get_or_insert_with(BreakerConfig::default)
            .write_named(&config, &mut self.default);
        self
    }

    /// No circuit breaker in the default policy, nor in the endpoint rules that do not turn
    /// theirs on: the default policy's `breaker_enabled(false)`, the file's
    /// `[default.breaker] enabled = false`. Later calls that turn it on win.
    pub fn no_circuit_breaker(mut self) -> Self {
        self.default.breaker_enabled = Some(false);
        self
    }

    /// Configures the reqwest client this builder builds: user agent, default headers,
    /// proxies, TLS roots and identity, pool, HTTP/2 settings, DNS, anything
    /// `reqwest::ClientBuilder` offers.
    ///
    /// Timeouts: a `timeout` set in `configure` is the default policy's attempt timeout, and a
    /// `connect_timeout` the client's connect timeout, when nothing else sets them; set also
    /// with [`attempt_timeout`](Self::attempt_timeout) or
    /// [`connect_timeout`](Self::connect_timeout) (or a default policy, or a policy file's
    /// `[default]`), [`build`](Self::build) fails, naming both: one setting, one way (a
    /// [`reload`](Client::reload) keeps it so). A
    /// `read_timeout` (reqwest's limit on each wait for more bytes, which this crate has not)
    /// works as in reqwest, and its expiry is an
    /// [`AttemptTimeout`](crate::ErrorKind::AttemptTimeout).
    ///
    /// reqwest's own retry stays off whatever `configure` sets: its resends would be attempts
    /// that the history, the breaker and the metrics never see. It starts from
    /// [`redirect::policy`](crate::redirect::policy), which `configure` may replace.
    ///
    /// Called once, in [`build`](Self::build); called again, the settings add up in order.
    /// Together with `reqwest_client`, `build` fails: the given client would leave them unused.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-tenant", HeaderValue::from_static("acme"));
    /// let client = resilient_http::Client::builder()
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .reqwest(|builder| {
    ///         builder
    ///             .user_agent("orders/1.4")
    ///             .default_headers(headers)
    ///             .pool_max_idle_per_host(8)
    ///     })
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), resilient_http::Error>(())
    /// ```
    pub fn reqwest<F>(mut self, configure: F) -> Self
    where
        F: FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync + 'static,
    {
        self.configure.push(Box::new(configure));
        self
    }

    /// Wraps a `reqwest::Client` you configured yourself (TLS, proxies, pool, ...). To change
    /// a few settings of the client this builder makes instead, and keep its timeouts, use
    /// [`reqwest`](Self::reqwest).
    ///
    /// Its own `timeout`, if it has one, is the default policy's attempt timeout (a reload
    /// keeps it so); an attempt timeout set also another way ([`attempt_timeout`](Self::attempt_timeout),
    /// a default policy, a policy file's `[default]`) makes [`build`](Self::build) fail,
    /// naming both. Its connect timeout stays as you set it, so this builder's
    /// [`connect_timeout`](Self::connect_timeout) is refused with it. Attempts whose limit is
    /// its `timeout` are left to it; the others (a shorter remaining deadline, an endpoint
    /// rule's own attempt timeout) set a per-request timeout, which reqwest prefers and which
    /// costs it three allocations per call.
    ///
    /// Its own retry stays as you set it. reqwest's default resends a request that HTTP/2
    /// refused (`REFUSED_STREAM`, or a graceful `GOAWAY` naming it unprocessed) up to twice
    /// within one of our attempts: the history, spans, metrics and breaker see one attempt, the
    /// server up to three requests (a POST after a `GOAWAY` too, which the server may have
    /// processed). Turn it off, as the client's own reqwest client does, and each one is in
    /// the history, resent without spending an attempt when that is safe (see
    /// [`retry::MAX_RESENDS`](crate::retry::MAX_RESENDS)):
    ///
    /// ```
    /// let http = reqwest::Client::builder()
    ///     .retry(reqwest::retry::never())
    ///     .redirect(resilient_http::redirect::policy()) // see crate::redirect
    ///     .build()?;
    /// let client = resilient_http::Client::builder().reqwest_client(http).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Below reqwest, hyper still resends a request it had not begun to write when the pooled
    /// connection it picked turns out to be closed; the server never saw that one.
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Runs `hook` before every attempt of every policy (a policy's own, set with
    /// [`before_attempt_for`](Self::before_attempt_for), replaces it). See [`crate::hook`].
    pub fn before_attempt(mut self, hook: impl AttemptHook) -> Self {
        self.extras.hook = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` before every attempt of the policy called `policy` (`"default"` or an
    /// endpoint rule's name; an unknown name fails [`build`](Self::build)).
    pub fn before_attempt_for(mut self, policy: &str, hook: impl AttemptHook) -> Self {
        self.extras_of(policy).hook = Some(Arc::new(hook));
        self
    }

    /// After a `401 Unauthorized`, asks `refresher` for a new `Authorization` value once and
    /// sends the request again with it, in every policy. See [`crate::hook`].
    pub fn refresh_auth_on_401(mut self, refresher: impl AuthRefresher) -> Self {
        self.extras.refresher = Some(Arc::new(refresher));
        self
    }

    /// [`refresh_auth_on_401`](Self::refresh_auth_on_401) for one policy only.
    pub fn refresh_auth_on_401_for(mut self, policy: &str, refresher: impl AuthRefresher) -> Self {
        self.extras_of(policy).refresher = Some(Arc::new(refresher));
        self
    }

    /// Classifies responses by their body too; see [`BodyClassifier`].
    ///
    /// This changes what [`send`](crate::RequestBuilder::send) does: every response the
    /// classifier [`wants`](BodyClassifier::wants) (all of them unless it says otherwise) has
    /// its whole body read into memory inside the attempt, before `send` resolves, as
    /// [`send_buffered`](crate::RequestBuilder::send_buffered) would. So the policy's
    /// [`body_limit`](crate::policy::EndpointPolicy::body_limit) (16 MiB by default) applies
    /// to every such call, and a longer body fails it with
    /// [`ErrorKind::BodyTooLarge`](crate::ErrorKind::BodyTooLarge); a streamed download is
    /// held in memory whole. Narrow it with `wants` (by status, say, or `Content-Type`), so
    /// that the other responses stream as before.
    pub fn body_classifier(mut self, classifier: impl BodyClassifier) -> Self {
        self.extras.body_classifier = Some(Arc::new(classifier));
        self
    }

    fn extras_of(&mut self, policy: &str) -> &mut Extras {
        let index = match self.policy_extras.iter().position(|(n, _)| n == policy) {
            Some(index) => index,
            None => {
                self.policy_extras
                    .push((policy.to_owned(), Extras::default()));
                self.policy_extras.len() - 1
            }
        };
        &mut self.policy_extras[index].1
    }

    /// Applies a tower `layer` around **each attempt**, inside the retry: it sees every
    /// attempt's request (after the hooks) and its response's head, and runs again on every
    /// retry. For signing, tracing per attempt, or any tower middleware over the
    /// `reqwest::Client`.
    ///
    /// Its errors keep their meaning when they are a `reqwest::Error` or this crate's
    /// [`Error`]; tower's timeout is an attempt timeout (retried); any other error ends the
    /// call as a permanent [`ErrorKind::Hook`](crate::ErrorKind::Hook), which the breaker does
    /// not count, with the layer's error as source (redacted text; the error itself is
    /// [`Error::unredacted_source`]).
    ///
    /// Set once: to run several layers, compose them in one `ServiceBuilder` (a second call
    /// makes [`build`](Self::build) fail rather than silently drop one).
    ///
    /// ```
    /// use http::HeaderValue;
    /// use tower::ServiceBuilder;
    ///
    /// // A signature that must be fresh on every attempt.
    /// fn sign(mut request: reqwest::Request) -> reqwest::Request {
    ///     let at = std::time::SystemTime::now()
    ///         .duration_since(std::time::UNIX_EPOCH)
    ///         .map_or(0, |d| d.as_nanos());
    ///     let signature = format!("t={at},sig=…");
    ///     if let Ok(value) = HeaderValue::try_from(signature) {
    ///         request.headers_mut().insert("x-signature", value);
    ///     }
    ///     request
    /// }
    ///
    /// let client = resilient_http::Client::builder()
    ///     .attempt_layer(ServiceBuilder::new().map_request(sign))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), resilient_http::Error>(())
    /// ```
    pub fn attempt_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<reqwest::Client> + Send + Sync + 'static,
        L::Service:
            Service<reqwest::Request, Response = reqwest::Response> + Clone + Send + Sync + 'static,
        <L::Service as Service<reqwest::Request>>::Error: Into<BoxError>,
        <L::Service as Service<reqwest::Request>>::Future: Send + 'static,
    {
        if self.attempt_layer.is_some() {
            self.layers_set_twice = true;
        }
        self.attempt_layer = Some(Arc::new(move |http| {
            AttemptService::new(layer.layer(http).map_err(Into::into))
        }));
        self
    }

    /// Applies a tower `layer` around **each whole call**, retries and sleeps included: a
    /// concurrency limit, a timeout, load shedding. It wraps [`CallService`], so the generic
    /// tower layers work unchanged; see [`crate::outer`]. It applies to every way of sending
    /// from this client except [`Client::service`], which hands out the policies alone for
    /// your own `ServiceBuilder`.
    ///
    /// Set once: to run several layers, compose them in one `ServiceBuilder` (a second call
    /// makes [`build`](Self::build) fail rather than silently drop one).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<CallService>,
        L::Service: Service<Exchange, Response = Exchanged> + Clone + Send + Sync + 'static,
        <L::Service as Service<Exchange>>::Error: Into<BoxError>,
        <L::Service as Service<Exchange>>::Future: Send + 'static,
    {
        if self.outer.is_some() {
            self.layers_set_twice = true;
        }
        self.outer = Some(outer_service(layer));
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// Fails with [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig), naming the
    /// setting, for a zero timeout, an invalid retry or breaker setting, a policy file error,
    /// two rules with one name, or when the `reqwest::Client` cannot be built.
    pub fn build(mut self) -> Result<Client, Error> {
        if self.http.is_some() && !self.configure.is_empty() {
            return Err(Error::invalid_config(
                "reqwest(..) configures the reqwest client this builder makes, so it cannot \
                 be combined with reqwest_client(..): configure the given client instead",
            ));
        }
        let (http, built) = match self.http.take() {
            Some(http) => {
                let theirs = ReqwestTimeouts::of_client(&http);
                let given = Theirs::Given(theirs.timeout);
                self.take_reqwest_timeouts(given, None)?;
                // Its own timeout bounds a request that sets none, as ours would.
                let built = Built {
                    connect_timeout: None,
                    timeout: theirs.timeout,
                    reqwest_timeout: given,
                };
                (http, built)
            }
            None => {
                let users = reqwest::Client::builder().redirect(crate::redirect::policy());
                let users = self
                    .configure
                    .drain(..)
                    .fold(users, |b, configure| configure(b));
                let theirs = ReqwestTimeouts::of_builder(&users);
                let configured = Theirs::Configured(theirs.timeout);
                self.take_reqwest_timeouts(configured, theirs.connect_timeout)?;
                let connect_timeout = self
                    .default
                    .connect_timeout
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                // A client of our own times out, by itself, any attempt given the default
                // policy's attempt timeout (usually every first attempt): see
                // `Policies::client_timeout`.
                let own_timeout = attempt_limit(
                    self.default
                        .attempt_timeout
                        .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
                    Some(self.default.deadline.unwrap_or(DEFAULT_TOTAL_DEADLINE)),
                    None,
                )
                .0;
                // Ours after the user's settings: the same values where the user's were taken
                // over, above, and the only ones otherwise.
                let http = users
                    .connect_timeout(connect_timeout)
                    .timeout(own_timeout)
                    // reqwest would resend an HTTP/2 REFUSED_STREAM or graceful GOAWAY up to
                    // twice, unseen by the history, metrics and breaker; our resends handle
                    // them (`RetryState::resends`). Its retry would also copy each request.
                    .retry(reqwest::retry::never().max_retries_per_request(0))
                    .build()
                    .map_err(|e| {
                        Error::invalid_config("the reqwest client could not be built")
                            .with_source(e)
                    })?;
                let built = Built {
                    connect_timeout: Some(connect_timeout),
                    timeout: Some(own_timeout),
                    reqwest_timeout: configured,
                };
                (http, built)
            }
        };
        let policies = self.client_policies(&http, built, None)?;
        Ok(Client {
            http,
            policies: Arc::new(ArcSwap::from_pointee(policies)),
            outer: self.outer,
            built,
        })
    }

    /// Takes the timeouts set on the user's reqwest client or builder (`theirs`, and
    /// `connect_timeout` from `reqwest(..)`) as the default policy's, or refuses them when
    /// the default policy sets its own too: the one rule for each timeout that two ways can
    /// set, so that neither silently wins. A client handed over keeps its own connect timeout,
    /// so one of ours, which cannot apply, is refused too.
    fn take_reqwest_timeouts(
        &mut self,
        theirs: Theirs,
        connect_timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let (timeout, place) = match theirs {
            Theirs::Given(timeout) => (timeout, "the client given to reqwest_client(..)"),
            Theirs::Configured(timeout) => (timeout, "reqwest(..)"),
        };
        let set_by = &self.set_by;
        if let (Theirs::Given(_), Some(ours)) = (theirs, self.default.connect_timeout) {
            let by = set_by
                .connect_timeout
                .as_deref()
                .unwrap_or("the default policy");
            return Err(Error::invalid_config(format!(
                "connect_timeout {ours:?} ({by}) cannot apply to the client given to \
                 reqwest_client(..), which keeps its own: set it on that client with \
                 reqwest::ClientBuilder::connect_timeout instead"
            )));
        }
        let both = [
            (
                timeout,
                &mut self.default.attempt_timeout,
                "timeout",
                "attempt_timeout",
                &set_by.attempt_timeout,
            ),
            (
                connect_timeout,
                &mut self.default.connect_timeout,
                "connect_timeout",
                "connect_timeout",
                &set_by.connect_timeout,
            ),
        ];
        for (theirs, ours, reqwest_name, our_name, by) in both {
            let Some(theirs) = theirs else { continue };
            match *ours {
                None => *ours = Some(theirs),
                Some(ours) => {
                    let by = by.as_deref().unwrap_or("the default policy");
                    return Err(Error::invalid_config(format!(
                        "{our_name} is set twice: reqwest's {reqwest_name} {theirs:?} in \
                         {place}, and {ours:?} by {by}; keep one (reqwest's {reqwest_name} \
                         alone is taken as the {our_name})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The policies of a client whose reqwest client is `http`, built as `built` says,
    /// replacing `previous` if it is a reload.
    fn client_policies(
        &self,
        http: &reqwest::Client,
        built: Built,
        previous: Option<&Policies>,
    ) -> Result<Policies, Error> {
        let mut policies = self.build_policies(Some(http), previous)?;
        // Only if the default policy agrees, so that a mismatch costs speed, never time.
        let default = &policies.default;
        let first_limit =
            attempt_limit(default.attempt_timeout(), default.total_deadline(), None).0;
        policies.client_timeout = built.timeout.filter(|t| *t == first_limit);
        Ok(policies)
    }

    /// The policies this builder describes, for a client already built (see
    /// [`Client::reload`]): they may change everything but its reqwest client.
    pub(crate) fn reload_policies(
        self,
        http: &reqwest::Client,
        built: Built,
        previous: &Policies,
    ) -> Result<Policies, Error> {
        if self.http.is_some() || !self.configure.is_empty() || self.outer.is_some() {
            return Err(Error::invalid_config(
                "a reload changes the policies only: reqwest_client(..), reqwest(..) and \
                 layer(..) stay as the client was built",
            ));
        }
        if let Some(asked) = self.default.connect_timeout
            && built.connect_timeout != Some(asked)
        {
            return Err(Error::invalid_config(format!(
                "connect_timeout: {} cannot change on a reload (reqwest sets it per client)",
                Short(asked)
            )));
        }
        // The reqwest client's own timeout is still the attempt timeout, by the same rule.
        let mut this = self;
        this.take_reqwest_timeouts(built.reqwest_timeout, None)?;
        this.client_policies(http, built, Some(previous))
    }

    /// Checks the settings and compiles every policy; `http` is the client's reqwest client,
    /// `None` for the adapters (`ResilientMiddleware`, `ResilientLayer`), which have none of
    /// their own: attempt layers, `reqwest(..)` and outer layers are refused there. A reload passes the
    /// `previous` policies, whose Redis connection is kept if its settings did not change.
    pub(crate) fn build_policies(
        &self,
        http: Option<&reqwest::Client>,
        previous: Option<&Policies>,
    ) -> Result<Policies, Error> {
        if let Some(err) = &self.config_error {
            return Err(err.clone_config());
        }
        if self.layers_set_twice {
            return Err(Error::invalid_config(
                "layer or attempt_layer was set twice; compose several layers in one \
                 tower::ServiceBuilder and set that once",
            ));
        }
        let fleet = self.fleet(previous)?;
        // A reload keeps the named scopes' states whose setup did not change.
        let named = Arc::new(NamedStates::new(previous.map(|p| &*p.named)));
        let base = Base {
            retry: &self.retry,
            breaker: self.breaker.as_ref(),
            classifier: &self.classifier,
            redis: fleet.as_ref().map_or(Redis::None, Redis::Fleet),
            named: &named,
        };
        let default = CompiledPolicy::compile("default", &self.default, &base)?;
        self.check_sharing(None, &self.default, &self.default)?;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (index, (name, matcher, policy)) in self.endpoints.iter().enumerate() {
            // The rules the policy file checks too (it says where in the file).
            let before = self
                .endpoints
                .iter()
                .take(index)
                .map(|(name, _, _)| &**name);
            if let Err(refused) = policy.check_rule(name, before) {
                let (key, why) = (refused.key, refused.why);
                return Err(Error::invalid_config(format!(
                    "policy {name:?}: {key}: {why}"
                )));
            }
            let settings = policy.inherit(&self.default);
            let compiled = CompiledPolicy::compile(name, &settings, &base)?;
            self.check_sharing(Some((name, policy)), &settings, &self.default)?;
            endpoints.push((matcher.clone(), compiled));
        }
        named.forget_previous();
        // The metrics' units and help text, to the recorder in force (see
        // `telemetry::describe`).
        #[cfg(feature = "metrics")]
        crate::telemetry::describe();
        let mut policies = Policies {
            default,
            index: Policies::rule_index(&endpoints),
            endpoints,
            client_timeout: None,
            fleet,
            named,
        };
        self.add_extras(&mut policies, http)?;
        Ok(policies)
    }

    /// Checks what the policy `rule` (its name and own settings; `None`: the default policy)
    /// asks of the client's Redis, with `settings` its settings as compiled and `default` the
    /// default policy's ([`EndpointPolicy::check_sharing`]): an error, or a WARN, each once
    /// per build, that names the file, the line and the key when a policy file made the
    /// setting (the rule's own, or the default's it inherits), else the policy and the
    /// setting.
    fn check_sharing(
        &self,
        rule: Option<(&str, &EndpointPolicy)>,
        settings: &EndpointPolicy,
        default: &EndpointPolicy,
    ) -> Result<(), Error> {
        #[cfg(feature = "redis")]
        let timeout = self.redis.as_ref().map(|redis| redis.timeout);
        #[cfg(not(feature = "redis"))]
        let timeout = None;
        let name = rule.map_or("default", |(name, _)| name);
        match settings.check_sharing(timeout) {
            Ok(None) => Ok(()),
            Ok(Some(warning)) => {
                let message = self.located(rule, default, &warning);
                tracing::warn!(policy = name, "{message}");
                Ok(())
            }
            Err(refused) => Err(Error::invalid_config(self.located(rule, default, &refused))),
        }
    }

    /// What `check_sharing` says about `refused`: at the file's line, if a file made it.
    fn located(
        &self,
        rule: Option<(&str, &EndpointPolicy)>,
        default: &EndpointPolicy,
        refused: &Unshared,
    ) -> String {
        let name = rule.map_or("default", |(name, _)| name);
        #[cfg(feature = "config")]
        {
            let own = rule.filter(|(_, own)| refused.setting.is_set(own));
            let located = match own {
                Some((name, own)) => {
                    (self.sources.iter()).find_map(|file| file.locate(Some(name), own, refused))
                }
                // Inherited from the default policy: the last file that set it so.
                None => {
                    (self.sources.iter().rev()).find_map(|file| file.locate(None, default, refused))
                }
            };
            if let Some(message) = located {
                return message;
            }
        }
        let _ = default;
        let (setting, why) = (refused.setting.name(), &refused.why);
        format!("policy {name:?}: {setting}: {why}")
    }

    /// The Redis connection of the policies: `previous`'s when its settings are the same (a
    /// reload keeps the connection, and the shared state it learned).
    fn fleet(&self, previous: Option<&Policies>) -> Result<Option<Fleet>, Error> {
        #[cfg(feature = "redis")]
        if let Some(config) = &self.redis {
            let kept = previous
                .and_then(|previous| previous.fleet.as_ref())
                .filter(|fleet| fleet.config() == config);
            return match kept {
                Some(fleet) => Ok(Some(fleet.clone())),
                None => Fleet::new(config.clone()).map(Some),
            };
        }
        let _ = previous;
        Ok(None)
    }

    /// Gives each policy its hooks, body classifier and attempt layers.
    fn add_extras(
        &self,
        policies: &mut Policies,
        http: Option<&reqwest::Client>,
    ) -> Result<(), Error> {
        for (name, _) in &self.policy_extras {
            if policies.by_name(name).is_none() {
                return Err(Error::invalid_config(format!(
                    "a hook is set for policy {name:?}, but there is no policy of that name"
                )));
            }
        }
        let mut client_wide = self.extras.clone();
        client_wide.attempt_service = match (&self.attempt_layer, http) {
            (Some(make), Some(http)) => Some(make(http.clone())),
            _ => None,
        };
        let has_any = !client_wide.is_empty()
            || self.attempt_layer.is_some()
            || !self.policy_extras.is_empty();
        if http.is_none() && !self.configure.is_empty() {
            return Err(Error::invalid_config(
                "reqwest(..) configures the client's own reqwest client; under \
                 ResilientMiddleware or ResilientLayer, configure the reqwest::Client below them",
            ));
        }
        if http.is_none() && self.outer.is_some() {
            return Err(Error::invalid_config(
                "outer layers run in the client's own calls only; under ResilientMiddleware or \
                 ResilientLayer, add your middleware or layer around them instead",
            ));
        }
        // Not refused: one policy file may serve a client and an adapter alike. But said, once
        // per build, so that it is not silently unused.
        if let (None, Some(unused)) = (http, self.default.connect_timeout) {
            let by = self
                .set_by
                .connect_timeout
                .as_deref()
                .unwrap_or("the default policy");
            tracing::warn!(
                "connect_timeout {unused:?} ({by}) is not used under ResilientMiddleware or \
                 ResilientLayer: the reqwest::Client below has its own, set it there"
            );
        }
        // Hooks, refreshers and body classifiers run on every path (one driver); attempt
        // layers wrap the client's own reqwest client, which the adapters do not have.
        if http.is_none() && self.attempt_layer.is_some() {
            return Err(Error::invalid_config(
                "attempt layers wrap the client's own reqwest client; under ResilientMiddleware \
                 or ResilientLayer, put them in the chain or the stack below instead",
            ));
        }
        if !has_any {
            return Ok(());
        }
        let all = std::iter::once(&mut policies.default)
            .chain(policies.endpoints.iter_mut().map(|(_, policy)| policy));
        for policy in all {
            let own = self
                .policy_extras
                .iter()
                .filter(|(name, _)| **name == *policy.name)
                .fold(client_wide.clone(), |extras, (_, more)| {
                    extras.overlaid(more)
                });
            policy.set_extras(own);
        }
        Ok(())
    }
}
