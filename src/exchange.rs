//! Reading the response inside the attempt: the pieces the client's call uses when a body is
//! read before the call decides (a reader of the caller's, `send_buffered`, a body
//! classifier), and the per-policy extras that run around attempts.
//!
//! Why inside: a body that breaks halfway is a failed attempt like any other, so it must be
//! classified, counted by the breaker and retried under the same rules, which only works
//! while the call is still running. reqwest's per-request timeout, which the attempt timeout
//! sets, keeps running until the body is read, so the read is bounded in time for free.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Extensions, HeaderMap, Method, StatusCode, Version};
use url::Url;

use crate::classify::{
    BodyClassifier, Class, Classifier, SharedClassifier, sorting, transport_error,
};
use crate::error::{BoxError, Error, ErrorKind};
use crate::hook::{AttemptHook, AuthRefresher, BoxFuture};
use crate::retry::RetryHistory;

/// The body limit when a policy sets none: large enough for any API answer, small enough
/// that a runaway body cannot take the process down.
pub const DEFAULT_BODY_LIMIT: u64 = 16 * 1024 * 1024;

/// A policy's code around attempts; `None` in the policy when it has none, so a call without
/// them pays one null check.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    pub(crate) hook: Option<Arc<dyn AttemptHook>>,
    pub(crate) refresher: Option<Arc<dyn AuthRefresher>>,
    pub(crate) body_classifier: Option<Arc<dyn BodyClassifier>>,
    pub(crate) attempt_service: Option<AttemptService>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("hook", &self.hook.as_ref().map(|h| h.name().to_owned()))
            .field("refresher", &self.refresher.is_some())
            .field("body_classifier", &self.body_classifier.is_some())
            .field("attempt_service", &self.attempt_service.is_some())
            .finish()
    }
}

impl Extras {
    /// These, with `more` taking precedence where it sets something.
    pub(crate) fn overlaid(&self, more: &Extras) -> Extras {
        Extras {
            hook: more.hook.clone().or_else(|| self.hook.clone()),
            refresher: more.refresher.clone().or_else(|| self.refresher.clone()),
            body_classifier: more
                .body_classifier
                .clone()
                .or_else(|| self.body_classifier.clone()),
            attempt_service: more
                .attempt_service
                .clone()
                .or_else(|| self.attempt_service.clone()),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hook.is_none()
            && self.refresher.is_none()
            && self.body_classifier.is_none()
            && self.attempt_service.is_none()
    }
}

/// A user's layers over the `reqwest::Client`, run for each attempt.
pub(crate) type AttemptService =
    tower::util::BoxCloneSyncService<reqwest::Request, reqwest::Response, BoxError>;

/// What a call hands back on success, and the status it came from.
pub(crate) trait Success: Send + 'static {
    fn status(&self) -> StatusCode;
    /// Keeps the attempts of a call that needed retries, where the type has room for them.
    fn keep_history(&mut self, history: RetryHistory);
}

impl Success for reqwest::Response {
    fn status(&self) -> StatusCode {
        self.status()
    }

    fn keep_history(&mut self, history: RetryHistory) {
        self.extensions_mut().insert(history);
    }
}

/// A reader's value and the status of the response it read.
pub(crate) struct Read<T> {
    pub(crate) status: StatusCode,
    pub(crate) value: T,
}

impl<T: Send + 'static> Success for Read<T> {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn keep_history(&mut self, _: RetryHistory) {}
}

/// A reader of the caller's, run on each attempt's response.
pub(crate) type ReadFn<O> = Box<dyn FnMut(reqwest::Response) -> BoxFuture<Result<O, Error>> + Send>;

/// How a call turns an accepted response into its output.
pub(crate) enum Reader<O> {
    /// The response itself (`send`, `send_buffered`).
    Response(fn(reqwest::Response) -> O),
    /// A reader of the caller's, inside each attempt (`send_with`).
    With(ReadFn<O>),
}

/// A response whose body has been read into memory.
pub(crate) struct Buffered {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    url: Url,
    pub(crate) body: Bytes,
    /// The body was cut at the limit: a failure status's page, kept as far as it fits.
    pub(crate) truncated: bool,
}

impl Buffered {
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// A `reqwest::Response` again, with the body served from memory.
    pub(crate) fn into_response(self) -> reqwest::Response {
        rebuild(
            self.status,
            self.version,
            self.headers,
            self.extensions,
            self.url,
            self.body,
        )
    }
}

fn rebuild(
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    url: Url,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    // reqwest takes a response's URL only through its builder extension.
    let builder = http::response::Builder::new()
        .status(status)
        .version(version);
    match reqwest::ResponseBuilderExt::url(builder, url).body(body.into()) {
        Ok(mut response) => {
            *response.headers_mut() = headers;
            response.extensions_mut().extend(extensions);
            reqwest::Response::from(response)
        }
        // Unreachable: the status and version came from a response.
        Err(_) => reqwest::Response::from(http::Response::new(reqwest::Body::from(Bytes::new()))),
    }
}

fn too_large(limit: u64, status: StatusCode) -> Error {
    Error::new(
        ErrorKind::BodyTooLarge,
        Class::Permanent,
        crate::Delivery::Delivered,
    )
    .with_detail(format!("the body is over the {limit}-byte limit"))
    .after_response(status)
}

/// Fails at once when the response's `Content-Length` is already over `limit`.
fn refuse_announced_excess(response: &reqwest::Response, limit: u64) -> Result<(), Error> {
    if announces_excess(response, limit) {
        return Err(too_large(limit, response.status()));
    }
    Ok(())
}

fn announces_excess(response: &reqwest::Response, limit: u64) -> bool {
    response
        .content_length()
        .is_some_and(|length| length > limit)
}

/// A failure while reading the body of a response with `status`, classified as the attempt's
/// transport errors are (but delivered: the server answered).
pub(crate) fn body_error(
    error: reqwest::Error,
    classifier: &SharedClassifier,
    method: &Method,
    status: StatusCode,
) -> Error {
    transport_error(classifier, method, error).after_response(status)
}

/// Reads `response`'s body into memory, at most `limit` bytes.
///
/// A body over the limit fails the attempt with [`ErrorKind::BodyTooLarge`], unless the
/// status is a failure (by the policy's `classifier`): a 503 stays a 503 whatever the size of
/// its page, so its body is kept up to the limit (the rest is not read) and marked
/// [`truncated`](Buffered::truncated), for the status to decide the attempt.
pub(crate) async fn buffer(
    mut response: reqwest::Response,
    limit: u64,
    classifier: SharedClassifier,
    method: Method,
) -> Result<Buffered, Error> {
    let status = response.status();
    let url = response.url().clone();
    let failed = |error: Error| Err(error.with_request(&method, &url));
    // Asked only once a body is over the limit, which is rare.
    let is_failure = |response: &reqwest::Response| {
        classifier.classify(&method, Ok(response)).class != Class::Success
    };
    let mut known_failure = false;
    if announces_excess(&response, limit) {
        if !is_failure(&response) {
            return failed(too_large(limit, status));
        }
        known_failure = true;
    }
    let room = to_usize(limit);
    let mut body = BytesMut::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let fits = room - body.len();
                if chunk.len() > fits {
                    if !known_failure && !is_failure(&response) {
                        return failed(too_large(limit, status));
                    }
                    body.extend_from_slice(&chunk[..fits]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => return failed(body_error(error, &classifier, &method, status)),
        }
    }
    let version = response.version();
    let mut response = http::Response::<reqwest::Body>::from(response);
    Ok(Buffered {
        status,
        version,
        headers: std::mem::take(response.headers_mut()),
        extensions: std::mem::take(response.extensions_mut()),
        url,
        body: body.freeze(),
        truncated,
    })
}

/// `response`, for a reader: its body limited to `limit` bytes (reading past it fails with
/// [`ErrorKind::BodyTooLarge`] once the error reaches [`Error::from`]), and each failure to
/// read it sorted by the policy's `classifier`, for `Error::from` to keep (see
/// [`sorting`]).
pub(crate) fn limited(
    response: reqwest::Response,
    limit: u64,
    classifier: SharedClassifier,
    method: Method,
) -> Result<reqwest::Response, Error> {
    let status = response.status();
    refuse_announced_excess(&response, limit)?;
    let url = response.url().clone();
    let version = response.version();
    let mut http_response = http::Response::<reqwest::Body>::from(response);
    let headers = std::mem::take(http_response.headers_mut());
    let extensions = std::mem::take(http_response.extensions_mut());
    let body =
        http_body_util::BodyExt::map_err(http_response.into_body(), sorting(classifier, method));
    let body = http_body_util::Limited::new(body, to_usize(limit));
    Ok(rebuild(
        status,
        version,
        headers,
        extensions,
        url,
        reqwest::Body::wrap(body),
    ))
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Polls a future of user code, turning a panic into an error.
pub(crate) fn poll_caught<T: Send + 'static>(
    future: &mut BoxFuture<Result<T, Error>>,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<Result<T, Error>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(panic) => Poll::Ready(Err(hook_failed(what, panic_message(&*panic)))),
    }
}

/// Calls user code (`what` names it), turning a panic into an error.
pub(crate) fn caught<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Error> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|panic| hook_failed(what, panic_message(&*panic)))
}

/// Calls user code that starts a future, turning a panic into an error.
pub(crate) fn call_caught<T: Send + 'static>(
    what: &str,
    start: impl FnOnce() -> BoxFuture<Result<T, Error>>,
) -> BoxFuture<Result<T, Error>> {
    match std::panic::catch_unwind(AssertUnwindSafe(start)) {
        Ok(future) => future,
        Err(panic) => {
            let error = hook_failed(what, panic_message(&*panic));
            Box::pin(std::future::ready(Err(error)))
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("panicked: {message}")
}

/// The error of a user's tower layer (`what` says which): this crate's keeps its meaning,
/// tower's timeout becomes a transient `timeout` kind, and any other is the layer's own
/// refusal, a permanent [`ErrorKind::Hook`] that the breaker does not count.
pub(crate) fn layer_error(error: BoxError, what: &str, timeout: ErrorKind) -> Error {
    let error = match error.downcast::<Error>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    let (kind, class, delivery) = if is_tower_timeout(&*error) {
        (timeout, Class::Transient, crate::Delivery::MaybeSent)
    } else {
        (ErrorKind::Hook, Class::Permanent, crate::Delivery::NotSent)
    };
    Error::new(kind, class, delivery)
        .with_detail(format!("{what} failed: {error}"))
        .with_foreign_source(error)
}

/// Whether `error` is tower's timeout, or wraps one (as `tower::buffer` does).
pub(crate) fn is_tower_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .take(32)
        .any(|e| e.is::<tower::timeout::error::Elapsed>())
}

/// The error of a hook (`what` names it) that failed with `message`.
pub(crate) fn hook_failed(what: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Hook, Class::Permanent, crate::Delivery::NotSent)
        .with_detail(format!("{what} {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(tower::timeout::error::Elapsed);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("buffered service failed")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// `tower::buffer` and others wrap the timeout: it is still the timeout.
    #[test]
    fn a_wrapped_tower_timeout_is_a_timeout() {
        let wrapped: BoxError = Box::new(Wrapped(tower::timeout::error::Elapsed::new()));
        let error = layer_error(wrapped, "a layer", ErrorKind::AttemptTimeout);
        assert_eq!(error.kind(), ErrorKind::AttemptTimeout);
        assert!(error.is_transient());
        let refused: BoxError = "full".into();
        assert_eq!(
            layer_error(refused, "a layer", ErrorKind::AttemptTimeout).kind(),
            ErrorKind::Hook
        );
    }
}
