//! The facade: `Client::builder() … .build()`, then `client.get(url).send().await`.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use crate::breaker::{BreakerConfig, BreakerRegistry};
use crate::call::{Call, Which};
use crate::classify::{BodyClassifier, Classifier, SharedClassifier};
use crate::error::BoxError;
use crate::error::Error;
use crate::exchange::{AttemptService, Extras, Read, Reader, Success};
use crate::hook::{AttemptHook, AuthRefresher, BoxFuture};
use crate::outer::{CallService, Exchange, Exchanged, OuterService, outer_service};
use crate::pending::{Pending, Reading, State};
use crate::policy::compiled::{Base, Overrides};
use crate::policy::{CompiledPolicy, EndpointPolicy, Matcher, Policies, PolicyFile};
use crate::retry::RetryPolicy;
use crate::timeout::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOTAL_DEADLINE, attempt_limit,
};

/// An HTTP client whose calls time out, classify their failures and return typed errors.
///
/// Cheap to clone (it shares the connection pool), like `reqwest::Client`.
///
/// ```no_run
/// # async fn run() -> Result<(), resilient_http::Error> {
/// use std::time::Duration;
///
/// let client = resilient_http::Client::builder()
///     .attempt_timeout(Duration::from_secs(2))
///     .total_deadline(Duration::from_secs(5))
///     .build()?;
/// let response = client.get("http://127.0.0.1:8080/health").send().await?;
/// println!("{}", response.status());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    policies: Arc<Policies>,
    outer: Option<OuterService>,
}

impl Client {
    /// A client with the defaults: 10 s per attempt (body included), 30 s in total, 5 s to
    /// connect, [`DefaultClassifier`](crate::classify::DefaultClassifier), 3 attempts with
    /// jittered exponential backoff ([`RetryPolicy::default`]).
    pub fn new() -> Result<Self, Error> {
        Client::builder().build()
    }

    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Starts a request with any method.
    pub fn request<U: reqwest::IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        RequestBuilder {
            inner: self.http.request(method, url),
            policies: self.policies.clone(),
            outer: self.outer.clone(),
            overrides: None,
        }
    }

    /// Starts a GET request.
    pub fn get<U: reqwest::IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// Starts a POST request.
    pub fn post<U: reqwest::IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Starts a PUT request.
    pub fn put<U: reqwest::IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// Starts a PATCH request.
    pub fn patch<U: reqwest::IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// Starts a DELETE request.
    pub fn delete<U: reqwest::IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// Starts a HEAD request.
    pub fn head<U: reqwest::IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// Sends a request built elsewhere through its policy.
    pub fn execute(&self, request: reqwest::Request) -> Pending {
        match &self.outer {
            None => tower::Service::call(&mut self.service(), request),
            Some(outer) => {
                let (http, policies) = (self.http.clone(), self.policies.clone());
                Pending::new(State::Outer(crate::outer::run(
                    outer,
                    request,
                    move |request| {
                        let reader = Reader::Response(std::convert::identity);
                        new_call(http, policies, None, request, reader, false)
                    },
                )))
            }
        }
    }

    /// The whole stack as a tower service, for composing with your own middleware. It picks
    /// each request's policy as [`send`](RequestBuilder::send) does.
    ///
    /// ```
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # fn run() -> Result<(), resilient_http::Error> {
    /// let client = resilient_http::Client::new()?;
    /// let service = ServiceBuilder::new()
    ///     .concurrency_limit(64)
    ///     .service(client.service());
    /// # let _ = service;
    /// # Ok(())
    /// # }
    /// ```
    pub fn service(&self) -> PolicyService {
        PolicyService {
            http: self.http.clone(),
            policies: self.policies.clone(),
        }
    }

    /// The name of the policy a request with this method and URL follows (`"default"` unless
    /// an endpoint rule matches).
    pub fn policy_name(&self, method: &Method, url: &url::Url) -> &str {
        &self.policies.select(method, url).name
    }

    /// The default policy's circuit breakers, one per endpoint, to read and steer; `None` when
    /// turned off.
    pub fn breakers(&self) -> Option<&BreakerRegistry> {
        self.policies.default.breakers()
    }

    /// The circuit breakers of the policy called `policy` (`"default"` or an endpoint rule).
    pub fn breakers_for(&self, policy: &str) -> Option<&BreakerRegistry> {
        self.policies.by_name(policy)?.breakers()
    }

    /// The `reqwest::Client` underneath, for calls that should bypass the stack.
    ///
    /// One the builder made itself has the default policy's attempt timeout as its `timeout`
    /// (10 s unless configured): a long download or stream through it needs a longer
    /// `.timeout(..)` of its own on the request.
    pub fn reqwest_client(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Configures a [`Client`].
pub struct ClientBuilder {
    http: Option<reqwest::Client>,
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
}

type MakeAttemptService = dyn Fn(reqwest::Client) -> AttemptService + Send + Sync;

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            http: None,
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
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("default", &self.default)
            .field("endpoints", &self.endpoints)
            .field("classifier", &self.classifier)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("custom_reqwest_client", &self.http.is_some())
            .field("extras", &self.extras)
            .field("policy_extras", &self.policy_extras)
            .field("attempt_layer", &self.attempt_layer.is_some())
            .field("outer_layer", &self.outer.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// Longest time one attempt may take, from sending to the last byte of the body
    /// (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.default.attempt_timeout = Some(timeout);
        self
    }

    /// Longest time a whole call may take, all attempts and sleeps included (default 30 s),
    /// counted from the call's first poll (a future made early and run later loses nothing).
    pub fn total_deadline(mut self, deadline: Duration) -> Self {
        self.default.deadline = Some(deadline);
        self
    }

    /// Longest time to establish a connection (default 5 s). Ignored when you bring your own
    /// `reqwest::Client` with [`reqwest_client`](Self::reqwest_client): set it there.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.default.connect_timeout = Some(timeout);
        self
    }

    /// Sets the default policy's settings (those `policy` leaves unset stay as they were).
    /// See [`policy`](crate::policy).
    pub fn default_policy(mut self, policy: EndpointPolicy) -> Self {
        self.default = policy.inherit(&self.default);
        self
    }

    /// Adds an endpoint rule: requests that `matcher` selects follow `policy`, which inherits
    /// what it leaves unset from the default policy. Rules are tried in the order added; the
    /// first match wins. `name` shows in errors and picks the rule in
    /// [`RequestBuilder::policy`].
    pub fn endpoint(
        mut self,
        name: impl Into<String>,
        matcher: Matcher,
        policy: EndpointPolicy,
    ) -> Self {
        self.endpoints.push((name.into(), matcher, policy));
        self
    }

    /// Reads the default policy and endpoint rules from a TOML file (see the README for the
    /// layout). A file that cannot be read or is invalid makes [`build`](Self::build) fail
    /// with an error naming the file, the line and the key.
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
    /// [`config_file`](Self::config_file) does.
    pub fn config_toml(self, text: &str) -> Self {
        self.apply_config("policy.toml", text)
    }

    fn apply_config(mut self, origin: &str, text: &str) -> Self {
        let before: Vec<&str> = self.endpoints.iter().map(|(name, _, _)| &**name).collect();
        match PolicyFile::parse(origin, text, &before) {
            Ok(file) => {
                self.default = file.default.inherit(&self.default);
                self.endpoints.extend(file.endpoints);
                self
            }
            Err(err) => self.fail(err),
        }
    }

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
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Guards every endpoint with a circuit breaker following `config` (default
    /// [`BreakerConfig::default`]: opens at 50 % failures over the last 100 calls, once 20 are
    /// in; open 5 s doubling to 60 s; one probe).
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// No circuit breaker at all.
    pub fn no_circuit_breaker(mut self) -> Self {
        self.breaker = None;
        self
    }

    /// Wraps a `reqwest::Client` you configured yourself (TLS, proxies, pool, ...).
    ///
    /// Its own `timeout` is superseded: every attempt sets a per-request timeout (the attempt
    /// timeout, or what is left of the deadline), which reqwest prefers. Its connect timeout
    /// stays, and this builder's [`connect_timeout`](Self::connect_timeout) is not applied.
    ///
    /// Without this, the client builds its own reqwest client whose `timeout` is the default
    /// policy's attempt timeout, and leaves attempts with that limit to it. That is cheaper:
    /// setting a timeout on a request costs reqwest three allocations (about 1.3k
    /// instructions per call in `benches/instructions.sh`).
    ///
    /// Its own retry stays as you set it. reqwest's default resends a request that HTTP/2
    /// refused (`REFUSED_STREAM`, or a graceful `GOAWAY` naming it unprocessed) up to twice
    /// within one of our attempts: the history, spans, metrics and breaker see one attempt, the
    /// server up to three requests. Turn it off, as the client's own reqwest client does, and
    /// each refusal is an attempt of ours, never sent, so retried even for a POST:
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
        let connect_timeout = self
            .default
            .connect_timeout
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        // A client of our own times out, by itself, any attempt given the default policy's
        // attempt timeout (usually every first attempt): see `Policies::client_timeout`.
        let own_timeout = attempt_limit(
            self.default
                .attempt_timeout
                .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
            Some(self.default.deadline.unwrap_or(DEFAULT_TOTAL_DEADLINE)),
            None,
        )
        .0;
        let (http, client_timeout) = match self.http.take() {
            Some(http) => (http, None),
            None => {
                let http = reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .timeout(own_timeout)
                    .redirect(crate::redirect::policy())
                    // reqwest would resend an HTTP/2 REFUSED_STREAM or graceful GOAWAY up to
                    // twice, unseen by the history, metrics and breaker; our retry handles
                    // them (never sent). No retries at all also spares copying each request.
                    .retry(reqwest::retry::never().max_retries_per_request(0))
                    .build()
                    .map_err(|e| {
                        Error::invalid_config("the reqwest client could not be built")
                            .with_source(e)
                    })?;
                (http, Some(own_timeout))
            }
        };
        let mut policies = self.build_policies(Some(&http))?;
        if let Some(policies) = Arc::get_mut(&mut policies) {
            // Only if the default policy agrees, so that a mismatch costs speed, never time.
            let default = &policies.default;
            let first_limit = attempt_limit(
                default.attempt_timeout(),
                Some(default.total_deadline()),
                None,
            )
            .0;
            policies.client_timeout = client_timeout.filter(|t| *t == first_limit);
        }
        Ok(Client {
            http,
            policies,
            outer: self.outer,
        })
    }

    /// Checks the settings and compiles every policy; `http` is the client's reqwest client,
    /// `None` for the reqwest-middleware adapter, which runs no hooks.
    pub(crate) fn build_policies(
        &self,
        http: Option<&reqwest::Client>,
    ) -> Result<Arc<Policies>, Error> {
        if let Some(err) = &self.config_error {
            return Err(err.clone_config());
        }
        if self.layers_set_twice {
            return Err(Error::invalid_config(
                "layer or attempt_layer was set twice; compose several layers in one \
                 tower::ServiceBuilder and set that once",
            ));
        }
        let base = Base {
            retry: &self.retry,
            breaker: self.breaker.as_ref(),
            classifier: &self.classifier,
        };
        let default = CompiledPolicy::compile("default", &self.default, &base)?;
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
            let compiled = CompiledPolicy::compile(name, &policy.inherit(&self.default), &base)?;
            endpoints.push((matcher.clone(), compiled));
        }
        let mut policies = Policies {
            default,
            endpoints,
            client_timeout: None,
        };
        self.add_extras(&mut policies, http)?;
        Ok(Arc::new(policies))
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
        if http.is_none() && self.outer.is_some() {
            return Err(Error::invalid_config(
                "outer layers run in the client's own calls only; in a reqwest-middleware \
                 chain, add your middleware to the chain instead",
            ));
        }
        if !has_any {
            return Ok(());
        }
        if http.is_none() {
            return Err(Error::invalid_config(
                "hooks, auth refreshers, body classifiers and attempt layers run in the client's \
                 own calls only; the reqwest-middleware adapter cannot run them",
            ));
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

/// A request being built; [`send`](Self::send) runs it through the stack.
///
/// The methods mirror `reqwest::RequestBuilder`; [`map`](Self::map) reaches any other.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    inner: reqwest::RequestBuilder,
    policies: Arc<Policies>,
    outer: Option<OuterService>,
    overrides: Option<Box<Overrides>>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // reqwest's Debug would print the headers, credentials included.
        f.debug_struct("RequestBuilder").finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// Adds a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.map(|b| b.header(key, value))
    }

    /// Adds headers.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.map(|b| b.headers(headers))
    }

    /// Sets HTTP basic authentication (the value is marked sensitive).
    pub fn basic_auth<U: fmt::Display, P: fmt::Display>(
        self,
        username: U,
        password: Option<P>,
    ) -> Self {
        self.map(|b| b.basic_auth(username, password))
    }

    /// Sets bearer authentication (the value is marked sensitive).
    pub fn bearer_auth<T: fmt::Display>(self, token: T) -> Self {
        self.map(|b| b.bearer_auth(token))
    }

    /// Sets the body.
    pub fn body<T: Into<reqwest::Body>>(self, body: T) -> Self {
        self.map(|b| b.body(body))
    }

    /// Limits this call, all attempts included, to `timeout`. It can only shorten the client's
    /// total deadline.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|b| b.timeout(timeout))
    }

    /// Sets the HTTP version.
    pub fn version(self, version: Version) -> Self {
        self.map(|b| b.version(version))
    }

    /// Applies any `reqwest::RequestBuilder` method (`json`, `query`, `form`, `multipart`, ...
    /// where the matching reqwest feature is on).
    pub fn map(
        mut self,
        f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// Follows the policy called `name` (`"default"` or an endpoint rule's name) instead of
    /// the one its method and URL select. An unknown name fails at
    /// [`send`](Self::send) with [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest).
    pub fn policy(mut self, name: impl Into<String>) -> Self {
        self.overrides().policy = Some(name.into());
        self
    }

    /// Sends this request once, whatever the policy says about retries.
    pub fn no_retry(self) -> Self {
        self.attempts(1)
    }

    /// Makes at most `attempts` attempts in all for this request (at least 1).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.overrides().attempts = Some(attempts);
        self
    }

    /// Limits this request, retries and sleeps included, to `deadline`, replacing the policy's.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.overrides().deadline = Some(deadline);
        self
    }

    fn overrides(&mut self) -> &mut Overrides {
        self.overrides.get_or_insert_with(Default::default)
    }

    /// Builds the request and runs it through the stack; resolves when the response's head
    /// has arrived (its body is read afterwards, outside the retries; see
    /// [`send_buffered`](Self::send_buffered) and [`send_with`](Self::send_with) to read it
    /// inside them).
    ///
    /// An invalid URL or header fails here with
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest), before anything is sent.
    pub fn send(self) -> Pending {
        Pending::new(self.run(Reader::Response(std::convert::identity), false))
    }

    /// Like [`send`](Self::send), but reads the whole body into memory **inside each
    /// attempt**: a body that is cut off, reset or stalls is a failed attempt, classified and
    /// retried like any other (with the idempotency rules: the server did answer). The read
    /// is bounded by the attempt timeout and the policy's body limit
    /// ([`EndpointPolicy::body_limit`](crate::policy::EndpointPolicy::body_limit), 16 MiB by
    /// default); a longer body fails with
    /// [`ErrorKind::BodyTooLarge`](crate::ErrorKind::BodyTooLarge).
    ///
    /// The response resolves with its body in memory, so `bytes()`, `text()` and `json()` on
    /// it cannot fail for transport reasons; a retried success keeps its
    /// [`RetryHistory`](crate::retry::RetryHistory).
    pub fn send_buffered(self) -> Pending {
        Pending::new(self.run(Reader::Response(std::convert::identity), true))
    }

    /// The body as bytes, read inside each attempt (see [`send_buffered`](Self::send_buffered)).
    pub fn bytes(self) -> impl Future<Output = Result<Bytes, Error>> + Send {
        let pending = self.send_buffered();
        async move { Ok(pending.await?.bytes().await?) }
    }

    /// The body as text, decoded as reqwest does (the `charset` of `Content-Type`, else
    /// UTF-8), read inside each attempt (see [`send_buffered`](Self::send_buffered)).
    pub fn text(self) -> impl Future<Output = Result<String, Error>> + Send {
        let pending = self.send_buffered();
        async move { Ok(pending.await?.text().await?) }
    }

    /// The body decoded from JSON, read inside each attempt (see
    /// [`send_buffered`](Self::send_buffered)). A body that does not decode is a permanent
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) carrying the status; it is not retried.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(
        self,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        let pending = self.send_buffered();
        async move {
            let response = pending.await?;
            let status = response.status();
            let url = response.url().clone();
            let body = response.bytes().await?;
            serde_json::from_slice(&body).map_err(|e| Error::decode(e, status, &url))
        }
    }

    /// Runs `read` on each attempt's response, **inside the attempt**, and resolves to what it
    /// returns. A failure while it reads (a reset, a truncated body, the attempt timeout:
    /// anything it turns into an [`Error`] with `?`) is a failed attempt, classified and
    /// retried like any other; an error it makes itself ([`Error::transient`],
    /// [`Error::permanent`]) keeps its class. The body is limited
    /// as in [`send_buffered`](Self::send_buffered). A panic in `read` fails the call with
    /// [`ErrorKind::Hook`](crate::ErrorKind::Hook).
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) -> Result<(), resilient_http::Error> {
    /// // Count the lines of a large body as it streams, retrying if it breaks.
    /// let lines = client
    ///     .get("http://127.0.0.1:8080/export.csv")
    ///     .send_with(|mut response| async move {
    ///         let mut lines = 0;
    ///         while let Some(chunk) = response.chunk().await? {
    ///             lines += chunk.iter().filter(|b| **b == b'\n').count();
    ///         }
    ///         Ok(lines)
    ///     })
    ///     .await?;
    /// # let _ = lines;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_with<T, F, Fut>(self, mut read: F) -> Reading<T>
    where
        T: Send + 'static,
        F: FnMut(reqwest::Response) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let reader = Reader::With(Box::new(move |response: reqwest::Response| {
            let status = response.status();
            let reading = read(response);
            Box::pin(async move { reading.await.map(|value| Read { status, value }) })
                as BoxFuture<Result<Read<T>, Error>>
        }));
        Reading::new(self.run(reader, false))
    }

    /// Builds the request and starts its call, through the outer layers if there are any.
    #[inline]
    fn run<O: Success>(self, reader: Reader<O>, buffered: bool) -> State<O> {
        let (http, request) = self.inner.build_split();
        let request = match request {
            Ok(request) => request,
            Err(error) => return State::Failed(Some(Error::from(error))),
        };
        let (policies, overrides) = (self.policies, self.overrides);
        match &self.outer {
            None => match new_call(http, policies, overrides, request, reader, buffered) {
                Ok(call) => State::Running(call),
                Err(error) => State::Failed(Some(error)),
            },
            Some(outer) => State::Outer(crate::outer::run(outer, request, move |request| {
                new_call(http, policies, overrides, request, reader, buffered)
            })),
        }
    }
}

/// The call of `request` under the policy it selects (or the overrides name).
#[inline]
fn new_call<O: Success>(
    http: reqwest::Client,
    policies: Arc<Policies>,
    overrides: Option<Box<Overrides>>,
    request: reqwest::Request,
    reader: Reader<O>,
    buffered: bool,
) -> Result<Box<Call<O>>, Error> {
    let Some(overrides) = overrides else {
        let which = Which::Shared(policies.select_index(request.method(), request.url()));
        return Ok(Call::new(http, policies, which, request, reader, buffered));
    };
    if overrides.deadline.is_some_and(|d| d.is_zero()) {
        return Err(Error::invalid_request(
            "the deadline must be above zero",
            &request,
        ));
    }
    let index = match &overrides.policy {
        Some(name) => policies
            .index_of(name)
            .ok_or_else(|| Error::invalid_request(format!("no policy named {name:?}"), &request))?,
        None => policies.select_index(request.method(), request.url()),
    };
    let which = if overrides.attempts.is_none() && overrides.deadline.is_none() {
        Which::Shared(index)
    } else {
        Which::Custom(Box::new(policies.get(index).with_overrides(&overrides)))
    };
    Ok(Call::new(http, policies, which, request, reader, buffered))
}

/// The [`Client`]'s stack as a tower service; see [`Client::service`].
#[derive(Clone, Debug)]
pub struct PolicyService {
    http: reqwest::Client,
    policies: Arc<Policies>,
}

// No `get_mut`: calls leave some attempt limits to the `reqwest::Client`'s own timeout, which
// the client was built with, so another one put in its place could leave attempts unbounded.
impl PolicyService {
    /// The `reqwest::Client` every attempt goes out on (see [`Client::reqwest_client`]).
    pub fn get_ref(&self) -> &reqwest::Client {
        &self.http
    }

    /// The `reqwest::Client` every attempt goes out on; this service is consumed.
    pub fn into_inner(self) -> reqwest::Client {
        self.http
    }
}

impl tower::Service<reqwest::Request> for PolicyService {
    type Response = reqwest::Response;
    type Error = Error;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A call waits for nothing before it starts: reqwest's client is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        let index = self.policies.select_index(request.method(), request.url());
        Pending::call(Call::new(
            self.http.clone(),
            self.policies.clone(),
            Which::Shared(index),
            request,
            Reader::Response(std::convert::identity),
            false,
        ))
    }
}
