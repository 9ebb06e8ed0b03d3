//! A request being built, as reqwest's (the same setters, names and features), plus this
//! call's own policy overrides.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::classify::layer_error;
use crate::error::{BoxError, Error};
use crate::hook::BodyFactory;
use crate::hook::BoxFuture;
use crate::outer::OuterService;
use crate::overload::Criticality;
use crate::pending::{Pending, Reading, State};
use crate::policy::Policies;
use crate::policy::compiled::Overrides;
use crate::read::{Read, Reader, Success};
use crate::timeout::{Clock, in_layer};

use super::new_call;

/// A request being built; [`send`](Self::send) runs it through the stack.
///
/// Every setter of `reqwest::RequestBuilder` is here, with its name, signature and meaning,
/// behind the same cargo features: [`header`](Self::header), [`headers`](Self::headers),
/// [`basic_auth`](Self::basic_auth), [`bearer_auth`](Self::bearer_auth), [`body`](Self::body),
/// [`timeout`](Self::timeout), [`version`](Self::version), `json(&body)` (feature `json`),
/// `query(&pairs)` (`query`), `form(&pairs)` (`form`), `multipart(form)` (`multipart`), and
/// [`try_clone`](Self::try_clone), [`build`](Self::build), [`from_parts`](Self::from_parts).
/// So a reqwest call chain compiles and behaves unchanged:
///
/// ```
/// # #[cfg(feature = "json")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use resilient_http::Client;
/// # use resilient_http::testkit::{FaultServer, Reply};
///
/// #[derive(serde::Serialize)]
/// struct NewOrder<'a> {
///     sku: &'a str,
///     quantity: u32,
/// }
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: u64,
/// }
///
/// # let server = FaultServer::start().await?;
/// # server.script("/orders", [Reply::ok(r#"{"id": 7}"#)]);
/// # let url = server.url("/orders");
/// let client = Client::new()?;
/// let order: Order = client
///     .post(url)
///     .bearer_auth("s3cr3t")
///     .header("x-request-source", "checkout")
///     .json(&NewOrder { sku: "A-1", quantity: 2 }) // sets the request's body, as in reqwest
///     .send()
///     .await?
///     .error_for_status()?
///     .json::<Order>() // reqwest's `Response::json`
///     .await?;
/// assert_eq!(order.id, 7);
/// # assert_eq!(&server.requests("/orders")[0].body[..], br#"{"sku":"A-1","quantity":2}"#);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "json"))]
/// # fn main() {}
/// ```
///
/// Beyond reqwest's: [`recv_json`](Self::recv_json), [`text`](Self::text) and
/// [`bytes`](Self::bytes) send the request **and** read the answer inside each attempt (a
/// body that breaks halfway is retried), as do [`send_buffered`](Self::send_buffered) and
/// [`send_with`](Self::send_with); [`policy`](Self::policy), [`max_attempts`](Self::max_attempts),
/// [`no_retry`](Self::no_retry), [`deadline`](Self::deadline) and
/// [`attempt_timeout`](Self::attempt_timeout) change this call's policy;
/// [`body_with`](Self::body_with) makes the body afresh for each attempt;
/// [`criticality`](Self::criticality) says how much it matters under overload; [`map`](Self::map)
/// reaches anything else on the `reqwest::RequestBuilder` underneath.
// Links to `recv_json`, which only the `json` feature has (docs.rs builds every feature).
#[cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    pub(super) inner: reqwest::RequestBuilder,
    pub(super) policies: Arc<Policies>,
    pub(super) outer: Option<OuterService>,
    pub(super) overrides: Option<Box<Overrides>>,
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
    ///
    /// A body of bytes is sent again by each retry. A stream (`reqwest::Body::wrap_stream`,
    /// `wrap`, a file) can be read once: the policy's
    /// [`replay_buffer`](crate::policy::EndpointPolicy::replay_buffer) keeps up to 64 KiB of
    /// it as it is sent, for the retries; a longer one gets one attempt (see
    /// [`body_with`](Self::body_with) to retry those).
    pub fn body<T: Into<reqwest::Body>>(self, body: T) -> Self {
        self.map(|b| b.body(body))
    }

    /// Sets the body to `json` serialized as JSON, and `Content-Type: application/json` unless
    /// a content type is already set, as reqwest's `RequestBuilder::json` does: a failure to
    /// serialize fails [`send`](Self::send) with
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest), before anything is sent.
    ///
    /// It **sets** the request's body. To read the answer as JSON, call `.json::<T>()` on the
    /// response (reqwest's), or [`recv_json::<T>()`](Self::recv_json) here, which reads and
    /// decodes it inside each attempt.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        self.map(|b| b.json(json))
    }

    /// Appends `query`, serialized as `application/x-www-form-urlencoded` pairs (a slice of
    /// pairs, a map, a struct), to the URL's query string, as reqwest's
    /// `RequestBuilder::query` does. A value that does not serialize fails
    /// [`send`](Self::send) with [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest).
    ///
    /// The policy is selected by the URL with this query (an endpoint rule matches the path).
    #[cfg(feature = "query")]
    #[cfg_attr(docsrs, doc(cfg(feature = "query")))]
    pub fn query<T: serde::Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|b| b.query(query))
    }

    /// Sets the body to `form`, URL-encoded, and `Content-Type:
    /// application/x-www-form-urlencoded`, as reqwest's `RequestBuilder::form` does. A value
    /// that does not serialize fails [`send`](Self::send) with
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest).
    #[cfg(feature = "form")]
    #[cfg_attr(docsrs, doc(cfg(feature = "form")))]
    pub fn form<T: serde::Serialize + ?Sized>(self, form: &T) -> Self {
        self.map(|b| b.form(form))
    }

    /// Sets a `multipart/form-data` body, as reqwest's `RequestBuilder::multipart` does.
    ///
    /// A form with a streamed part can be sent once: it gets one attempt unless it fits the
    /// policy's [`replay_buffer`](crate::policy::EndpointPolicy::replay_buffer) (see
    /// [`body`](Self::body)).
    #[cfg(feature = "multipart")]
    #[cfg_attr(docsrs, doc(cfg(feature = "multipart")))]
    pub fn multipart(self, multipart: reqwest::multipart::Form) -> Self {
        self.map(|b| b.multipart(multipart))
    }

    /// Makes the body afresh for each attempt with `factory`, so that a stream of any
    /// length (a file, say) is retried like any other request. It replaces any body set
    /// otherwise, and runs before the attempt, after the endpoint's guards let it out and
    /// before the policy's [hook](crate::hook) (which sees the new body), within the call's
    /// deadline. The outer layers ([`ClientBuilder::layer`](crate::ClientBuilder::layer))
    /// see the request without it. A call with a factory sends no
    /// [hedges](crate::hedge).
    ///
    /// An error of the factory, or a panic in it, ends the call with a permanent
    /// [`ErrorKind::Hook`](crate::ErrorKind::Hook) naming the request, whose
    /// [`unredacted_source`](Error::unredacted_source) is the factory's error; an [`Error`]
    /// it makes itself ([`Error::transient`], ...) keeps its meaning.
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) -> Result<(), resilient_http::Error> {
    /// // A file streamed from disk at each attempt (`Body::from(File)` needs reqwest's
    /// // `stream` feature; `tokio::fs::read` reads it whole instead).
    /// let path = std::path::PathBuf::from("report.csv");
    /// let response = client
    ///     .put("http://127.0.0.1:8080/reports/today")
    ///     .body_with(move || {
    ///         let path = path.clone();
    ///         async move { tokio::fs::read(path).await.map(reqwest::Body::from) }
    ///     })
    ///     .send()
    ///     .await?;
    /// # let _ = response;
    /// # Ok(())
    /// # }
    /// ```
    pub fn body_with<F, Fut, E>(mut self, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<reqwest::Body, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let make = move || -> BoxFuture<Result<reqwest::Body, Error>> {
            let making = factory();
            Box::pin(async move { making.await.map_err(|e| factory_failed(e.into())) })
        };
        self.overrides().body = Some(BodyFactory(Arc::new(make)));
        self
    }

    /// Limits this request to `timeout`, from when it starts connecting until its body has
    /// been read, as reqwest's `RequestBuilder::timeout`. With retries, that is the whole
    /// call, all attempts, backoff and body included: it can only shorten the policy's total
    /// deadline, as [`deadline`](Self::deadline) would. Each attempt still ends at the
    /// policy's attempt timeout if that comes first: to give one download longer than that,
    /// use [`attempt_timeout`](Self::attempt_timeout).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|b| b.timeout(timeout))
    }

    /// Sets the HTTP version.
    pub fn version(self, version: Version) -> Self {
        self.map(|b| b.version(version))
    }

    /// Applies any `reqwest::RequestBuilder` method to the request underneath: the escape
    /// hatch for what this builder does not mirror (a method a later reqwest adds, say).
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
        self.max_attempts(1)
    }

    /// Makes at most `attempts` attempts in all for this request (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.overrides().attempts = Some(attempts);
        self
    }

    /// Limits this request, retries and sleeps included, to `deadline`, replacing the policy's
    /// (longer or shorter). Given with [`timeout`](Self::timeout) too, the shorter of the two
    /// applies, in either order: both bound the same call.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.overrides().deadline = Some(deadline);
        self
    }

    /// A copy of this builder, overrides included; `None` if its body is a stream (which can
    /// be read once), as reqwest's `RequestBuilder::try_clone`. A body factory
    /// ([`body_with`](Self::body_with)) is shared by the copies.
    pub fn try_clone(&self) -> Option<Self> {
        Some(RequestBuilder {
            inner: self.inner.try_clone()?,
            policies: self.policies.clone(),
            outer: self.outer.clone(),
            overrides: self.overrides.clone(),
        })
    }

    /// Builds the `reqwest::Request`, to inspect or change it and send it with
    /// [`Client::execute`](crate::Client::execute), as reqwest's `RequestBuilder::build`.
    ///
    /// The request keeps everything reqwest's would (method, URL, headers, body, version,
    /// `timeout`); `execute` then selects its policy by its method and URL, as `send` does.
    /// This call's own overrides cannot travel in a `reqwest::Request`, so a builder with any
    /// ([`policy`](Self::policy), [`max_attempts`](Self::max_attempts), [`no_retry`](Self::no_retry),
    /// [`deadline`](Self::deadline), [`attempt_timeout`](Self::attempt_timeout),
    /// [`body_with`](Self::body_with), [`criticality`](Self::criticality)) is refused with
    /// [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest) rather than losing them:
    /// send it with [`send`](Self::send) instead. An invalid URL or header, or a body that
    /// does not serialize, is also `InvalidRequest`.
    ///
    /// ```
    /// # fn run() -> Result<(), resilient_http::Error> {
    /// let client = resilient_http::Client::new()?;
    /// let mut request = client.get("http://127.0.0.1:8080/items").build()?;
    /// request
    ///     .headers_mut()
    ///     .insert("x-trace", http::HeaderValue::from_static("on"));
    /// let pending = client.execute(request); // sent when awaited
    /// # drop(pending);
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Result<reqwest::Request, Error> {
        let request = self.inner.build().map_err(Error::from)?;
        if self.overrides.is_some() {
            return Err(Error::invalid_request(
                "`build()` makes a plain reqwest::Request, which cannot carry this call's \
                 `.policy(..)`, `.max_attempts(..)`, `.no_retry()`, `.deadline(..)`, \
                 `.attempt_timeout(..)`, `.body_with(..)` or `.criticality(..)`: send it \
                 with `.send()` instead, or build it without them",
                &request,
            ));
        }
        Ok(request)
    }

    /// A builder for `request`, sent by `client`, as reqwest's `RequestBuilder::from_parts`.
    pub fn from_parts(client: crate::Client, request: reqwest::Request) -> Self {
        RequestBuilder {
            inner: reqwest::RequestBuilder::from_parts(client.http.clone(), request),
            policies: client.policies.load_full(),
            outer: client.outer.clone(),
            overrides: None,
        }
    }

    /// Gives each attempt of this request `timeout`, replacing the policy's
    /// [`attempt_timeout`](crate::policy::EndpointPolicy::attempt_timeout), longer or
    /// shorter: the time from connecting until the body has been read (after
    /// [`send`](Self::send) too), so this is how one download gets more time than the
    /// policy's other calls. The call's deadline still bounds it: raise
    /// [`deadline`](Self::deadline) too if `timeout` is longer. Zero fails
    /// [`send`](Self::send) with [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest).
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let response = client
    ///     .get("http://127.0.0.1:8080/exports/2026.csv")
    ///     .attempt_timeout(Duration::from_secs(300))
    ///     .deadline(Duration::from_secs(600))
    ///     .send()
    ///     .await?;
    /// let export = response.bytes().await?; // read within the 300 s
    /// # let _ = export;
    /// # Ok(())
    /// # }
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.overrides().attempt_timeout = Some(timeout);
        self
    }

    /// How much this request matters when its dependency is overloaded, instead of its
    /// policy's [`criticality`](crate::policy::EndpointPolicy::criticality): with
    /// client-side throttling on ([`EndpointPolicy::throttle`](crate::policy::EndpointPolicy::throttle)),
    /// sheddable requests are throttled first and critical ones last (never more than 3 in
    /// 4 of them); when the retry budget is nearly spent, critical retries go first. Not a
    /// policy change: the request still shares its policy's state.
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) -> Result<(), resilient_http::Error> {
    /// use resilient_http::overload::Criticality;
    ///
    /// let prefetch = client
    ///     .get("http://127.0.0.1:8080/recommendations")
    ///     .criticality(Criticality::Sheddable)
    ///     .send()
    ///     .await;
    /// # let _ = prefetch;
    /// # Ok(())
    /// # }
    /// ```
    pub fn criticality(mut self, criticality: Criticality) -> Self {
        self.overrides().criticality = Some(criticality);
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
    /// A status the policy's classifier calls a failure (any 4xx or 5xx by default) is an
    /// [`ErrorKind::Status`](crate::ErrorKind::Status) error once the policy gives up on it:
    /// unlike reqwest, `Ok(response)` is a success (`error_for_status()` on it is harmless).
    ///
    /// The body of the response is read after the call, bounded by the attempt's timeout
    /// (which reqwest's own timer carries to the end of the body), and not retried if it
    /// breaks: read it with [`recv_json`](Self::recv_json), [`text`](Self::text),
    /// [`bytes`](Self::bytes) or [`send_with`](Self::send_with) to have it read inside each
    /// attempt, and retried.
    ///
    /// ```
    /// use resilient_http::testkit::{FaultServer, Reply};
    /// use resilient_http::{Client, ErrorKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = FaultServer::start().await?;
    /// // A 503, then the answer: the default policy retries the 503.
    /// server.script("/items", [Reply::status(503), Reply::ok("[1, 2, 3]")]);
    /// server.script("/missing", [Reply::status(404)]);
    ///
    /// let client = Client::new()?;
    /// let response = client.get(server.url("/items")).send().await?;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.text().await?, "[1, 2, 3]");
    ///
    /// // A 404 is not worth retrying: an error at once, which says what happened.
    /// let error = client.get(server.url("/missing")).send().await.expect_err("a 404");
    /// assert_eq!(error.kind(), ErrorKind::Status);
    /// assert_eq!(error.status(), Some(http::StatusCode::NOT_FOUND));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]
    pub fn send(self) -> Pending {
        Pending::new(self.run(Reader::response(), false))
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
        Pending::new(self.run(Reader::response(), true))
    }

    /// The body as bytes, read inside each attempt (see [`send_buffered`](Self::send_buffered)).
    pub fn bytes(self) -> impl Future<Output = Result<Bytes, Error>> + Send {
        let call = self.run(Reader::in_memory(), true);
        async move { Ok(call.await?.bytes().await?) }
    }

    /// The body as text, decoded as reqwest does (the `charset` of `Content-Type`, else
    /// UTF-8), read inside each attempt (see [`send_buffered`](Self::send_buffered)).
    pub fn text(self) -> impl Future<Output = Result<String, Error>> + Send {
        let pending = self.send_buffered();
        async move { Ok(pending.await?.text().await?) }
    }

    /// Sends the request and decodes the answer's body from JSON, read and decoded inside
    /// each attempt (see [`send_buffered`](Self::send_buffered)). A body that does not decode
    /// is a permanent [`ErrorKind::Decode`](crate::ErrorKind::Decode), an attempt that failed
    /// like any other: it is not retried, and the error carries the status, the request, the
    /// policy and the attempts. A status the policy's classifier calls a failure (any 4xx or
    /// 5xx by default) is an [`ErrorKind::Status`](crate::ErrorKind::Status) error, as from
    /// [`send`](Self::send).
    ///
    /// The name is surf's for the same thing; [`json(&body)`](Self::json) *sets* the
    /// request's body, as in reqwest.
    ///
    /// ```no_run
    /// # async fn run(client: resilient_http::Client) -> Result<(), resilient_http::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Health {
    ///     status: String,
    /// }
    ///
    /// let health: Health = client
    ///     .get("http://127.0.0.1:8080/health")
    ///     .recv_json()
    ///     .await?;
    /// # let _ = health.status;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn recv_json<T: serde::de::DeserializeOwned + Send + 'static>(
        self,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        let call = self.run(Reader::Decode(decode_json::<T>), true);
        async move { Ok(call.await?.value) }
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
    fn run<O: Success>(mut self, reader: Reader<O>, buffered: bool) -> State<O> {
        let (http, request) = self.inner.build_split();
        let body = self.overrides.as_mut().and_then(|o| o.body.take());
        let (policies, overrides) = (self.policies, self.overrides);
        if body.is_none() && self.outer.is_none() {
            // The common call: the request goes straight from reqwest's result into the call,
            // not through a local and a closure first (each a move of the whole request).
            return match request
                .map_err(Error::from)
                .and_then(|request| new_call(http, policies, overrides, request, reader, buffered))
            {
                Ok(call) => State::Running(call),
                Err(error) => State::Failed(Some(error)),
            };
        }
        let mut request = match request {
            Ok(request) => request,
            Err(error) => return State::Failed(Some(Error::from(error))),
        };
        if body.is_some() {
            // Made per attempt: the request itself carries none, so it is copied for retries.
            *request.body_mut() = None;
        }
        let start = move |request| {
            let call = new_call(http, policies, overrides, request, reader, buffered)?;
            Ok(match body {
                Some(factory) => call.with_body(factory),
                None => call,
            })
        };
        match &self.outer {
            None => match start(request) {
                Ok(call) => State::Running(call),
                Err(error) => State::Failed(Some(error)),
            },
            Some(outer) => State::Outer(crate::outer::run(outer, request, start)),
        }
    }
}

/// `response`'s JSON `body`, decoded: `recv_json`'s decoder, run inside the attempt.
#[cfg(feature = "json")]
fn decode_json<T: serde::de::DeserializeOwned + Send + 'static>(
    response: reqwest::Response,
    body: &[u8],
) -> Result<crate::read::Decoded<T>, Error> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(crate::read::Decoded { response, value }),
        Err(error) => Err(Error::decode(error, &response)),
    }
}

/// The error of a body factory: one of ours keeps its meaning, any other is a permanent
/// [`ErrorKind::Hook`] naming the factory.
fn factory_failed(error: BoxError) -> Error {
    layer_error(error, "body factory", || in_layer(Clock::Attempt))
}
