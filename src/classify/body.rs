//! Classification that reads the response body.

use http::{HeaderMap, StatusCode};

use super::Class;

/// Sorts a response by its status, headers **and body**: for APIs that say "try again" in the
/// body (`409 {"code":"LOCK_TIMEOUT"}`, a `200` carrying a retryable error).
///
/// With one set ([`ClientBuilder::body_classifier`](crate::ClientBuilder::body_classifier)),
/// every response it [`wants`](Self::wants) has its body read inside the attempt, bounded by
/// the attempt timeout and the policy's body limit, before the call decides; the response
/// handed back then carries that body in memory. Responses it does not want, and every call
/// of a client without one, are classified by status alone and not buffered.
///
/// ```
/// use resilient_http::classify::{body_classifier_fn, Class};
///
/// let lock_timeouts_are_transient = body_classifier_fn(|status, _headers, body| {
///     let retryable = status == 409 && body.windows(12).any(|w| w == b"LOCK_TIMEOUT");
///     retryable.then_some(Class::Transient)
/// });
/// # let _ = lock_timeouts_are_transient;
/// ```
pub trait BodyClassifier: Send + Sync + 'static {
    /// Whether to read this response's body to classify it (all responses by default).
    /// Saying no for statuses you never reclassify saves buffering their bodies.
    fn wants(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        true
    }

    /// The class of this response, or `None` to leave it to the status classifier.
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Class>;
}

/// A [`BodyClassifier`] from a function; it wants every response.
pub fn body_classifier_fn<F>(f: F) -> BodyClassifierFn<F>
where
    F: Fn(StatusCode, &HeaderMap, &[u8]) -> Option<Class> + Send + Sync + 'static,
{
    BodyClassifierFn(f)
}

/// The [`BodyClassifier`] made by [`body_classifier_fn`].
#[derive(Clone, Copy)]
pub struct BodyClassifierFn<F>(F);

impl<F> std::fmt::Debug for BodyClassifierFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyClassifierFn")
    }
}

impl<F> BodyClassifier for BodyClassifierFn<F>
where
    F: Fn(StatusCode, &HeaderMap, &[u8]) -> Option<Class> + Send + Sync + 'static,
{
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Class> {
        (self.0)(status, headers, body)
    }
}
