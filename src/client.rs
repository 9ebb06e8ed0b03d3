//! The facade: `Client::builder() … .build()`, then `client.get(url).send().await`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use tower::Layer;

use crate::breaker::{BreakerConfig, BreakerRegistry, CircuitBreaker, CircuitBreakerLayer};
use crate::classify::{Classifier, Classify, ClassifyLayer, SharedClassifier};
use crate::error::Error;
use crate::pending::Pending;
use crate::retry::{Retry, RetryLayer, RetryPolicy};
use crate::timeout::{
    AttemptTimeout, AttemptTimeoutLayer, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TOTAL_DEADLINE, TotalDeadline, TotalDeadlineLayer,
};

/// The tower service a [`Client`] calls, outermost layer first. [`Client::service`] hands out a
/// copy for use with `ServiceBuilder` and any other tower middleware.
pub type Stack = TotalDeadline<
    Retry<CircuitBreaker<AttemptTimeout<Classify<reqwest::Client, SharedClassifier>>>>,
>;

/// The layers' settings, kept apart from the `reqwest::Client` so that a request can wrap the
/// client its `reqwest::RequestBuilder` already holds instead of cloning another.
#[derive(Clone, Debug)]
struct Layers {
    attempt_timeout: Duration,
    total_deadline: Duration,
    classifier: SharedClassifier,
    retry: RetryLayer,
    breaker: CircuitBreakerLayer,
}

impl Layers {
    fn wrap(&self, http: reqwest::Client) -> Stack {
        let classified = ClassifyLayer::new(self.classifier.clone()).layer(http);
        // reqwest enforces the request timeout these layers set, body included, and the retry
        // layer never sleeps past the deadline: the layers' own timers would be redundant.
        let timed = AttemptTimeoutLayer::new(self.attempt_timeout)
            .without_backstop()
            .layer(classified);
        let guarded = self.breaker.layer(timed);
        let retried = self.retry.layer(guarded);
        TotalDeadlineLayer::new(self.total_deadline)
            .without_backstop()
            .layer(retried)
    }
}

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
    layers: Layers,
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
            layers: self.layers.clone(),
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

    /// Sends a request built elsewhere through the stack.
    pub fn execute(&self, request: reqwest::Request) -> Pending {
        Pending::start(self.service(), request)
    }

    /// The whole stack as a tower service, for composing with your own middleware.
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
    pub fn service(&self) -> Stack {
        self.layers.wrap(self.http.clone())
    }

    /// The circuit breakers, one per endpoint, to read and steer; `None` when turned off.
    pub fn breakers(&self) -> Option<&BreakerRegistry> {
        self.layers.breaker.registry()
    }

    /// The `reqwest::Client` underneath, for calls that should bypass the stack.
    pub fn reqwest_client(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Configures a [`Client`].
pub struct ClientBuilder {
    http: Option<reqwest::Client>,
    attempt_timeout: Duration,
    total_deadline: Duration,
    connect_timeout: Duration,
    classifier: SharedClassifier,
    retry: RetryPolicy,
    breaker: Option<BreakerConfig>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            http: None,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            total_deadline: DEFAULT_TOTAL_DEADLINE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            classifier: SharedClassifier::Default,
            retry: RetryPolicy::default(),
            breaker: Some(BreakerConfig::default()),
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("attempt_timeout", &self.attempt_timeout)
            .field("total_deadline", &self.total_deadline)
            .field("connect_timeout", &self.connect_timeout)
            .field("classifier", &self.classifier)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("custom_reqwest_client", &self.http.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// Longest time one attempt may take, from sending to the last byte of the body
    /// (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Longest time a whole call may take, all attempts and sleeps included (default 30 s).
    pub fn total_deadline(mut self, deadline: Duration) -> Self {
        self.total_deadline = deadline;
        self
    }

    /// Longest time to establish a connection (default 5 s). Ignored when you bring your own
    /// `reqwest::Client` with [`reqwest_client`](Self::reqwest_client): set it there.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sorts outcomes with your classifier instead of the default one.
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = SharedClassifier::Custom(Arc::new(classifier));
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
    /// Its own `timeout` is superseded: every call sets a per-request timeout (the attempt
    /// timeout, or what is left of the deadline), which reqwest prefers. Its connect timeout
    /// stays, and this builder's [`connect_timeout`](Self::connect_timeout) is not applied.
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// Fails with [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero
    /// timeout or when the `reqwest::Client` cannot be built (for example TLS setup).
    pub fn build(self) -> Result<Client, Error> {
        for (name, value) in [
            ("attempt_timeout", self.attempt_timeout),
            ("total_deadline", self.total_deadline),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::invalid_config(format!("{name} must be above zero")));
            }
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .build()
                .map_err(|e| {
                    Error::invalid_config("the reqwest client could not be built").with_source(e)
                })?,
        };
        Ok(Client {
            http,
            layers: Layers {
                attempt_timeout: self.attempt_timeout,
                total_deadline: self.total_deadline,
                classifier: self.classifier,
                retry: RetryLayer::new(self.retry),
                breaker: self
                    .breaker
                    .map_or_else(CircuitBreakerLayer::disabled, CircuitBreakerLayer::new),
            },
        })
    }
}

/// A request being built; [`send`](Self::send) runs it through the stack.
///
/// The methods mirror `reqwest::RequestBuilder`; [`map`](Self::map) reaches any other.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    inner: reqwest::RequestBuilder,
    layers: Layers,
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

    /// Builds the request and runs it through the stack.
    ///
    /// An invalid URL or header fails here with
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest), before anything is sent.
    pub fn send(self) -> Pending {
        let (http, request) = self.inner.build_split();
        match request {
            Ok(request) => Pending::start(self.layers.wrap(http), request),
            Err(error) => Pending::failed(Error::from(error)),
        }
    }
}
