//! The facade: `Client::builder() … .build()`, then `client.get(url).send().await`.
//!
//! The client (here), its builder (`builder.rs`), a request being built (`request.rs`) and the
//! stack as a tower service (`service.rs`).

mod builder;
mod request;
mod reqwest_timeouts;
mod service;

pub use builder::ClientBuilder;
pub use request::RequestBuilder;
pub(crate) use reqwest_timeouts::ReqwestTimeouts;
pub use service::{HttpFuture, HttpLayer, HttpService, PolicyService};

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Method;

use crate::breaker::BreakerRegistry;
use crate::call::{Call, ClientSender, Which};
use crate::error::Error;
use crate::outer::OuterService;
use crate::pending::{Pending, State};
use crate::policy::Policies;
use crate::policy::compiled::Overrides;
use crate::read::{Reader, Success};

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
///     .deadline(Duration::from_secs(5))
///     .build()?;
/// let response = client.get("http://127.0.0.1:8080/health").send().await?;
/// println!("{}", response.status());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    // Swapped whole by `reload`; each call loads them once and keeps them to its end.
    policies: Arc<ArcSwap<Policies>>,
    outer: Option<OuterService>,
    built: Built,
}

/// What the client's reqwest client was built with, which a reload cannot change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Built {
    /// Its connect timeout; `None` for a reqwest client handed over.
    pub(crate) connect_timeout: Option<Duration>,
    /// Its timeout (see `Policies::client_timeout`), if it has one.
    pub(crate) timeout: Option<Duration>,
    /// Where it came from, and the `timeout` the user gave it there, which the default
    /// policy takes as its attempt timeout on every reload too.
    pub(crate) reqwest_timeout: builder::Theirs,
}

impl Client {
    /// A client with the defaults: 10 s per attempt (body included), 30 s in total, 5 s to
    /// connect, [`DefaultClassifier`](crate::classify::DefaultClassifier), 3 attempts with
    /// jittered exponential backoff ([`RetryPolicy::default`](crate::retry::RetryPolicy::default)).
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
            policies: self.policies.load_full(),
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
                let (http, policies) = (self.http.clone(), self.policies.load_full());
                Pending::new(State::Outer(crate::outer::run(
                    outer,
                    request,
                    move |request| {
                        let reader = Reader::response();
                        new_call(http, policies, None, request, reader, false)
                    },
                )))
            }
        }
    }

    /// The whole stack as a tower service over `reqwest::Request`s, for composing with your
    /// own middleware. It picks each request's policy as [`send`](RequestBuilder::send) does.
    /// For tower-http's layers, which take `http::Request`s, use
    /// [`http_service`](Self::http_service).
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

    /// The whole stack as a tower service over `http::Request<B>` (any body `B` that is
    /// `Into<reqwest::Body>`), answering `http::Response<reqwest::Body>`: the form tower-http's
    /// layers wrap. It is [`service`](Self::service) in an [`HttpService`]; see there.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use http_body_util::BodyExt;
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_http::trace::TraceLayer;
    ///
    /// let client = resilient_http::Client::new()?;
    /// let service = ServiceBuilder::new()
    ///     .layer(TraceLayer::new_for_http())
    ///     .service(client.http_service());
    /// let request = http::Request::get("http://127.0.0.1:8080/items").body(String::new())?;
    /// let response = service.oneshot(request).await?;
    /// let body = response.into_body().collect().await?.to_bytes();
    /// println!("{} bytes", body.len());
    /// # Ok(())
    /// # }
    /// ```
    pub fn http_service(&self) -> HttpService<PolicyService> {
        HttpService::new(self.service())
    }

    /// The name of the policy a request with this method and URL follows (`"default"` unless
    /// an endpoint rule matches).
    pub fn policy_name(&self, method: &Method, url: &url::Url) -> Arc<str> {
        self.policies.load().select(method, url).name.clone()
    }

    /// The default policy's circuit breakers, one per endpoint, to read and steer; `None` when
    /// turned off.
    pub fn breakers(&self) -> Option<BreakerRegistry> {
        self.policies.load().default.breakers().cloned()
    }

    /// The circuit breakers of the policy called `policy` (`"default"` or an endpoint rule).
    pub fn breakers_for(&self, policy: &str) -> Option<BreakerRegistry> {
        self.policies.load().by_name(policy)?.breakers().cloned()
    }

    /// Swaps in the policies `builder` describes, at once for every later call: its default
    /// policy, endpoint rules, retry policy, breaker settings, classifier, hooks and attempt
    /// layers. Calls already started finish under the policies they started with.
    ///
    /// The state the endpoints taught the client stays where a policy of the same name keeps
    /// the same settings: its breakers (open, half-open, their windows) when its breaker
    /// settings did not change, and its overload guards (retry budget, `Retry-After` holds,
    /// rate limit, bulkhead) when their settings did not change. Changed settings start from
    /// a clean state.
    ///
    /// What the reqwest client was built with stays: a `builder` that sets another
    /// `connect_timeout`, hands over a `reqwest_client`, configures one with `reqwest(..)` or
    /// sets an outer `layer` is refused. A `timeout` the reqwest client was given stays the
    /// default policy's attempt timeout, so a `builder` that sets one too is refused, as
    /// [`build`](ClientBuilder::build) refuses it. Any error (a bad file, a contradiction) changes
    /// nothing: the error names the file, line and key as [`build`](ClientBuilder::build)'s.
    ///
    /// ```
    /// # fn run() -> Result<(), resilient_http::Error> {
    /// use resilient_http::Client;
    ///
    /// let client = Client::builder().config_toml("[default]\nmax_attempts = 3\n").build()?;
    /// // Later, on a signal or when the file changes:
    /// client.reload(Client::builder().config_toml("[default]\nmax_attempts = 5\n"))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn reload(&self, builder: ClientBuilder) -> Result<(), Error> {
        let current = self.policies.load();
        let mut next = builder.reload_policies(&self.http, self.built, &current)?;
        next.keep_state_of(&current);
        self.policies.store(Arc::new(next));
        Ok(())
    }

    /// [`reload`](Self::reload) with a client configured by its policy file alone: the same
    /// as `client.reload(Client::builder().config_file(path))`.
    #[cfg(feature = "config")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config")))]
    pub fn reload_file(&self, path: impl AsRef<std::path::Path>) -> Result<(), Error> {
        self.reload(Client::builder().config_file(path))
    }

    /// What the overload guards of endpoint `key` hold now under the policy called `policy`
    /// (`"default"` or an endpoint rule): retries left in the budget, a `Retry-After` hold,
    /// the bulkhead's calls, the rate limit, the server's advertised quota. `key` is the
    /// endpoint's
    /// [`endpoint_key`](crate::breaker::endpoint_key); when no guard of the policy is scoped
    /// to the host, `name:<name>` if they all share that named scope, else the rule's name
    /// (see [`OverloadHandle::key`](crate::overload::OverloadHandle::key)). `None`
    /// when there is no such policy, it turns no guard on, or no call has gone to that
    /// endpoint under it yet. See [`OverloadHandle`](crate::overload::OverloadHandle).
    pub fn overload(&self, policy: &str, key: &str) -> Option<crate::overload::OverloadHandle> {
        let guards = self.policies.load().by_name(policy)?.guards()?.get(key)?;
        Some(crate::overload::OverloadHandle(guards))
    }

    /// [`overload`](Self::overload) for the guards a request `method url` uses, whatever
    /// their key (the probe's view); `None` as there.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn overload_of(
        &self,
        method: &Method,
        url: &url::Url,
    ) -> Option<crate::overload::OverloadHandle> {
        let policies = self.policies.load();
        let registry = policies.select(method, url).guards()?;
        let guards = match registry.only() {
            Some(only) => only.clone(),
            None => registry.get(&crate::keyed::endpoint_key(url))?,
        };
        Some(crate::overload::OverloadHandle(guards))
    }

    /// The criticality of a request `method url` that sets none of its own: its policy's
    /// (the probe's view).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn criticality_of(
        &self,
        method: &Method,
        url: &url::Url,
    ) -> crate::overload::Criticality {
        self.policies.load().select(method, url).criticality()
    }

    /// The Redis connection this client shares limits through
    /// ([`ClientBuilder::redis`](crate::ClientBuilder::redis) or the file's `[redis]`);
    /// `None` without one. Call [`Fleet::sync`](crate::fleet::Fleet::sync) on it at shutdown
    /// so that the last retry-budget counts reach the other replicas; watch
    /// [`Fleet::is_up`](crate::fleet::Fleet::is_up) in health checks.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fleet(&self) -> Option<crate::fleet::Fleet> {
        self.policies.load().fleet.clone()
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
    let (which, criticality) = match overrides {
        None => (
            Which::Shared(policies.select_index(request.method(), request.url())),
            None,
        ),
        Some(overrides) => (
            which_overridden(&policies, &overrides, &request)?,
            overrides.criticality,
        ),
    };
    let mut call = Call::new(
        ClientSender::new(http, policies.client_timeout),
        policies,
        which,
        request,
        reader,
        buffered,
    );
    if let Some(criticality) = criticality {
        call.set_criticality(criticality);
    }
    Ok(call)
}

/// The policy a request with `overrides` follows: the one they name (else the one it
/// selects), changed by them if they change it.
fn which_overridden(
    policies: &Policies,
    overrides: &Overrides,
    request: &reqwest::Request,
) -> Result<Which, Error> {
    if overrides.deadline.is_some_and(|d| d.is_zero()) {
        return Err(Error::invalid_request(
            "the deadline must be above zero",
            request,
        ));
    }
    if overrides.attempt_timeout.is_some_and(|d| d.is_zero()) {
        return Err(Error::invalid_request(
            "the attempt timeout must be above zero",
            request,
        ));
    }
    let index = match &overrides.policy {
        Some(name) => policies
            .index_of(name)
            .ok_or_else(|| Error::invalid_request(format!("no policy named {name:?}"), request))?,
        None => policies.select_index(request.method(), request.url()),
    };
    Ok(
        if overrides.attempts.is_none()
            && overrides.deadline.is_none()
            && overrides.attempt_timeout.is_none()
        {
            Which::Shared(index)
        } else {
            Which::Custom(Box::new(policies.get(index).with_overrides(overrides)))
        },
    )
}
