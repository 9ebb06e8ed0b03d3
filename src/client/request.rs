//! A request being built, as reqwest's, plus this call's own policy overrides.

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
use crate::pending::{Pending, Reading, State};
use crate::policy::Policies;
use crate::policy::compiled::Overrides;
use crate::read::{Read, Reader, Success};
use crate::timeout::{Clock, in_layer};

use super::new_call;

/// A request being built; [`send`](Self::send) runs it through the stack.
///
/// The methods mirror `reqwest::RequestBuilder`; [`map`](Self::map) reaches any other.
/// Per-request settings ([`policy`](Self::policy), [`attempts`](Self::attempts),
/// [`no_retry`](Self::no_retry), [`deadline`](Self::deadline)) override the policy's.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::Client;
/// use resilient_http::testkit::{FaultServer, Reply};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/orders", [Reply::status(201)]);
///
/// let client = Client::new()?;
/// let response = client
///     .post(server.url("/orders"))
///     .bearer_auth("secret-token")
///     .header("idempotency-key", "order-7") // makes the POST safe to retry
///     .header("content-type", "application/json")
///     .body(r#"{"item":7}"#)
///     .timeout(Duration::from_secs(5))
///     .send()
///     .await?;
/// assert_eq!(response.status(), 201);
///
/// let received = &server.requests("/orders")[0];
/// assert_eq!(received.body, r#"{"item":7}"#);
/// assert_eq!(received.headers["authorization"], "Bearer secret-token");
/// # Ok(())
/// # }
/// ```
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
        self.max_attempts(1)
    }

    /// Makes at most `attempts` attempts in all for this request (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
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
    ///
    /// ```
    /// use resilient_http::Client;
    /// use resilient_http::testkit::{FaultServer, Reply};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = FaultServer::start().await?;
    /// server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
    ///
    /// let client = Client::new()?;
    /// // The 503 is retried; a failure that stays is an `Err`, never an `Ok(503)`.
    /// let response = client.get(server.url("/flaky")).send().await?;
    /// assert_eq!(response.status(), 200);
    /// // Read after the call, as with reqwest: a body that breaks here is not retried.
    /// assert_eq!(response.text().await?, "ok");
    /// # Ok(())
    /// # }
    /// ```
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

    /// The body decoded from JSON, read and decoded inside each attempt (see
    /// [`send_buffered`](Self::send_buffered)). A body that does not decode is a permanent
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode), an attempt that failed like any other:
    /// it is not retried, and the error carries the status, the request, the policy and the
    /// attempts.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::de::DeserializeOwned + Send + 'static>(
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
        let mut request = match request {
            Ok(request) => request,
            Err(error) => return State::Failed(Some(Error::from(error))),
        };
        let body = self.overrides.as_mut().and_then(|o| o.body.take());
        if body.is_some() {
            // Made per attempt: the request itself carries none, so it is copied for retries.
            *request.body_mut() = None;
        }
        let (policies, overrides) = (self.policies, self.overrides);
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

/// `response`'s JSON `body`, decoded: `json`'s decoder, run inside the attempt.
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
