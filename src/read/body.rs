//! A response's body read within the body limit: into memory (`send_buffered`, a body
//! classifier), or limited for a reader of the caller's.

use bytes::{Bytes, BytesMut};
use http::{Extensions, HeaderMap, Method, StatusCode, Version};
use url::Url;

use crate::classify::{Classifier, SharedClassifier, sorting, transport_error};
use crate::error::{Error, ErrorKind};
use crate::outcome::{Class, Delivery};

/// The body limit when a policy sets none: large enough for any API answer, small enough
/// that a runaway body cannot take the process down.
pub const DEFAULT_BODY_LIMIT: u64 = 16 * 1024 * 1024;

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
    let mut response = http::Response::new(body.into());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    *response.extensions_mut() = with_url(extensions, url);
    reqwest::Response::from(response)
}

/// `extensions`, plus `url` where `reqwest::Response::from` finds a response's URL. reqwest's
/// type for it is private: only its `ResponseBuilderExt` on an `http` builder sets one, so
/// the builder is lent the extensions to insert it into (a new map merged into them cost
/// two allocations and some 600 instructions more per response).
fn with_url(extensions: Extensions, url: Url) -> Extensions {
    let mut builder = http::response::Builder::new();
    // Always `Some`, here and below: a builder holds an error only after a status, version,
    // URI or header given to it failed to convert, and this one is given none (a new builder
    // and an extension cannot fail). Were it `None`, the response would keep its extensions
    // and reqwest's stand-in URL.
    let Some(lent) = builder.extensions_mut() else {
        return extensions;
    };
    *lent = extensions;
    let mut builder = reqwest::ResponseBuilderExt::url(builder, url);
    builder
        .extensions_mut()
        .map(std::mem::take)
        .unwrap_or_default()
}

fn too_large(limit: u64, status: StatusCode) -> Error {
    Error::new(
        ErrorKind::BodyTooLarge,
        Class::Permanent,
        Delivery::Delivered,
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
    let mut body = Gathered::Empty;
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let fits = room - body.len();
                if chunk.len() > fits {
                    if !known_failure && !is_failure(&response) {
                        return failed(too_large(limit, status));
                    }
                    body.push(chunk.slice(..fits));
                    truncated = true;
                    break;
                }
                body.push(chunk);
            }
            Ok(None) => break,
            Err(error) => return failed(body_error(error, &classifier, &method, status)),
        }
    }
    // Taken from the response itself: turning it into an `http::Response` first would box
    // its spent body.
    Ok(Buffered {
        status,
        version: response.version(),
        headers: std::mem::take(response.headers_mut()),
        extensions: std::mem::take(response.extensions_mut()),
        url,
        body: body.freeze(),
        truncated,
    })
}

/// A body as it is read. Most bodies come in one chunk, kept as it came, as reqwest's own
/// `bytes()` does; the chunks of a longer one are copied together.
enum Gathered {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Gathered {
    fn len(&self) -> usize {
        match self {
            Gathered::Empty => 0,
            Gathered::One(chunk) => chunk.len(),
            Gathered::Many(chunks) => chunks.len(),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        *self = match std::mem::replace(self, Gathered::Empty) {
            Gathered::Empty => Gathered::One(chunk),
            Gathered::One(first) => {
                let mut chunks = BytesMut::with_capacity(first.len() + chunk.len());
                chunks.extend_from_slice(&first);
                chunks.extend_from_slice(&chunk);
                Gathered::Many(chunks)
            }
            Gathered::Many(mut chunks) => {
                chunks.extend_from_slice(&chunk);
                Gathered::Many(chunks)
            }
        }
    }

    fn freeze(self) -> Bytes {
        match self {
            Gathered::Empty => Bytes::new(),
            Gathered::One(chunk) => chunk,
            Gathered::Many(chunks) => chunks.freeze(),
        }
    }
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
