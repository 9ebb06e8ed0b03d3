//! The body a caller's reader (`send_with`) reads: its failures sorted by the policy's
//! classifier, as the client's own body reads are.
//!
//! A reader turns a failed read into an [`Error`](crate::Error) with `?`, through `From<reqwest::Error>`,
//! which knows no policy. So each failure is sorted here, where the policy is known, by
//! [`transport_verdict`] (the rule `send_buffered` follows), and travels inside the
//! `reqwest::Error` the reader sees; `From` takes the verdict from there ([`bare_verdict`]).
//! An error the reader makes itself ([`Error::transient`](crate::Error::transient),
//! [`Error::permanent`](crate::Error::permanent)) does not go
//! through `From`, and keeps its class.

use std::fmt;

use http::Method;

use super::future::transport_verdict;
use super::{Class, Classification, DefaultClassifier, SharedClassifier, analyze};
use crate::error::{BoxError, Error, ErrorKind};

/// A failure of a reader's body and the class the policy's classifier gave it. It stands in
/// for the `reqwest::Error` it holds: same text, same sources.
#[derive(Debug)]
struct Sorted {
    class: Class,
    error: reqwest::Error,
}

impl fmt::Display for Sorted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Sorted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// The error mapping of a reader's body: each failure sorted by `classifier`, as a request of
/// `method`.
pub(crate) fn sorting(
    classifier: SharedClassifier,
    method: Method,
) -> impl FnMut(reqwest::Error) -> BoxError + Send + Sync + 'static {
    move |error| {
        let (_, verdict) = transport_verdict(&classifier, &method, &error);
        Box::new(Sorted {
            class: verdict.class,
            error,
        })
    }
}

/// The verdict [`sorting`] gave `error`, if it failed a reader's body.
fn sorted(error: &reqwest::Error) -> Option<&Sorted> {
    std::iter::successors(std::error::Error::source(error), |e| e.source())
        .take(32)
        .find_map(|e| e.downcast_ref::<Sorted>())
}

/// What `From<reqwest::Error>` makes of `error`: the policy's verdict where [`sorting`] gave
/// one (a reader's body), else the default classifier's.
fn bare_verdict(error: &reqwest::Error, sorted: Option<&Sorted>) -> Classification {
    let default = DefaultClassifier::classify_error(error);
    match sorted {
        Some(sorted) => Classification {
            class: sorted.class,
            ..default
        },
        None => default,
    }
}

/// What an attempt timeout met while a body was read after the call (`send()`, `execute`, a
/// tower service, the middleware) says: the limit covers the body, which surprises those who
/// know tower's timeouts (they stop at the head), and the way to give a download more time.
const BODY_AFTER_SEND: &str = "the response body was still being read when the attempt's \
     time ran out (the attempt timeout, or what was left of the deadline, covers the body, as \
     reqwest's timeout does); give a download more time with `.attempt_timeout(..)` on its \
     request (and a `.deadline(..)` as long) or a longer `attempt_timeout` in its policy, or \
     read the body inside the attempt (`bytes()`, `text()`, `send_with`) to have it retried";

impl From<reqwest::Error> for Error {
    /// Sorts a bare `reqwest::Error` with the default classifier, for example one from reading a
    /// response body after [`send`](crate::RequestBuilder::send) returned; one from the body
    /// of a [`send_with`](crate::RequestBuilder::send_with) reader keeps the verdict of the
    /// policy's classifier. It has no history. A body read after `send` that ran out of time
    /// (the attempt timeout covers the body) says so, and how to give a download more time.
    fn from(err: reqwest::Error) -> Self {
        let kind = analyze(&err).kind;
        let sorted = sorted(&err);
        let verdict = bare_verdict(&err, sorted);
        // A reader's own body (sorted) is read inside the attempt, which retries it.
        let after_send = sorted.is_none()
            && kind == ErrorKind::AttemptTimeout
            && (err.is_body() || err.is_decode());
        let error = Error::from_reqwest(err, kind, verdict.class, verdict.delivery);
        if after_send {
            error.with_detail(BODY_AFTER_SEND)
        } else {
            error
        }
    }
}
