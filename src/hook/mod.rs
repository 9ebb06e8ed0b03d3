//! Code of yours that runs around each attempt: change the request before it is sent (a fresh
//! signature, a token), stop the call, or refresh credentials after a `401`.
//!
//! - [`AttemptHook`] (or [`hook_fn`]) runs before **every** attempt, the first included, with
//!   the request about to be sent and the attempts so far. It returns the request to send
//!   (changed as it likes) or an error, which ends the call with
//!   [`ErrorKind::Hook`](crate::ErrorKind::Hook) naming the hook. A hook that panics does the
//!   same; the panic goes no further and the client stays usable.
//! - [`refresh_fn`] handles the commonest case: when an attempt gets `401 Unauthorized`, it
//!   calls your async refresher **once**, then sends the request again with the new
//!   `Authorization` value. That extra attempt is not counted against the policy's attempts,
//!   and a second `401` is returned as the error: it never loops.
//!
//! Both are set per client or per policy on the [`ClientBuilder`](crate::ClientBuilder). A
//! tower layer that runs inside the retry, around each attempt, is the other way to change
//! every attempt's request ([`ClientBuilder::attempt_layer`](crate::ClientBuilder::attempt_layer)).

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use crate::error::{Attempt, BoxError, Error};

pub use crate::boxed::BoxFuture;

/// Makes a request's body afresh for each attempt
/// ([`RequestBuilder::body_with`](crate::RequestBuilder::body_with)): user code run before
/// every attempt, as a hook is.
#[derive(Clone)]
pub(crate) struct BodyFactory(
    pub(crate) Arc<dyn Fn() -> BoxFuture<Result<reqwest::Body, Error>> + Send + Sync>,
);

impl fmt::Debug for BodyFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyFactory")
    }
}

/// What a hook knows about the attempt about to be made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AttemptInfo {
    /// 1 for the first attempt.
    pub number: u32,
    /// The attempts made so far, oldest first.
    pub history: Vec<Attempt>,
    /// The policy the call follows.
    pub policy: Arc<str>,
}

/// Runs before every attempt; see the [module docs](self).
pub trait AttemptHook: Send + Sync + 'static {
    /// The name errors give when this hook fails.
    fn name(&self) -> &str;

    /// Returns the request to send now, or an error that ends the call.
    fn before_attempt(
        &self,
        request: reqwest::Request,
        attempt: AttemptInfo,
    ) -> BoxFuture<Result<reqwest::Request, BoxError>>;
}

/// An [`AttemptHook`] from an async function.
///
/// ```
/// use resilient_http::hook::hook_fn;
///
/// // A fresh timestamp on every attempt, as time-based signatures need.
/// let stamp = hook_fn("timestamp", |mut request, attempt| async move {
///     let now = std::time::SystemTime::now()
///         .duration_since(std::time::UNIX_EPOCH)?
///         .as_millis();
///     request.headers_mut().insert("x-timestamp", now.to_string().parse()?);
///     request.headers_mut().insert("x-attempt", attempt.number.to_string().parse()?);
///     Ok(request)
/// });
/// let client = resilient_http::Client::builder().before_attempt(stamp).build()?;
/// # let _ = client;
/// # Ok::<(), resilient_http::Error>(())
/// ```
pub fn hook_fn<F, Fut>(name: impl Into<String>, f: F) -> HookFn<F>
where
    F: Fn(reqwest::Request, AttemptInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<reqwest::Request, BoxError>> + Send + 'static,
{
    HookFn {
        name: name.into(),
        f,
    }
}

/// The [`AttemptHook`] made by [`hook_fn`].
pub struct HookFn<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for HookFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookFn").field("name", &self.name).finish()
    }
}

impl<F, Fut> AttemptHook for HookFn<F>
where
    F: Fn(reqwest::Request, AttemptInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<reqwest::Request, BoxError>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn before_attempt(
        &self,
        request: reqwest::Request,
        attempt: AttemptInfo,
    ) -> BoxFuture<Result<reqwest::Request, BoxError>> {
        Box::pin((self.f)(request, attempt))
    }
}

/// Fetches a new `Authorization` value after a `401`; see [`refresh_fn`].
pub trait AuthRefresher: Send + Sync + 'static {
    /// The new value of the `Authorization` header (for example `Bearer <token>`).
    fn refresh(&self) -> BoxFuture<Result<HeaderValue, BoxError>>;
}

/// An [`AuthRefresher`] from an async function.
///
/// ```
/// use resilient_http::hook::refresh_fn;
///
/// let refresher = refresh_fn(|| async {
///     let token = "fresh-token"; // ask your identity provider here
///     Ok(http::HeaderValue::try_from(format!("Bearer {token}"))?)
/// });
/// let client = resilient_http::Client::builder()
///     .refresh_auth_on_401(refresher)
///     .build()?;
/// # let _ = client;
/// # Ok::<(), resilient_http::Error>(())
/// ```
pub fn refresh_fn<F, Fut>(f: F) -> RefreshFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HeaderValue, BoxError>> + Send + 'static,
{
    RefreshFn(f)
}

/// The [`AuthRefresher`] made by [`refresh_fn`].
pub struct RefreshFn<F>(F);

impl<F> fmt::Debug for RefreshFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshFn")
    }
}

impl<F, Fut> AuthRefresher for RefreshFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<HeaderValue, BoxError>> + Send + 'static,
{
    fn refresh(&self) -> BoxFuture<Result<HeaderValue, BoxError>> {
        Box::pin((self.0)())
    }
}
