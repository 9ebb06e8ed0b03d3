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
use crate::error::{BoxError, Error};

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

/// What `From<reqwest::Error>` makes of `error`: the policy's verdict where [`sorting`] gave
/// one (a reader's body), else the default classifier's.
fn bare_verdict(error: &reqwest::Error) -> Classification {
    let default = DefaultClassifier::classify_error(error);
    let sorted = std::iter::successors(std::error::Error::source(error), |e| e.source())
        .take(32)
        .find_map(|e| e.downcast_ref::<Sorted>());
    match sorted {
        Some(sorted) => Classification {
            class: sorted.class,
            ..default
        },
        None => default,
    }
}

impl From<reqwest::Error> for Error {
    /// Sorts a bare `reqwest::Error` with the default classifier, for example one from reading a
    /// response body after [`send`](crate::RequestBuilder::send) returned; one from the body
    /// of a [`send_with`](crate::RequestBuilder::send_with) reader keeps the verdict of the
    /// policy's classifier. It has no history.
    fn from(err: reqwest::Error) -> Self {
        let kind = analyze(&err).kind;
        let verdict = bare_verdict(&err);
        Error::from_reqwest(err, kind, verdict.class, verdict.delivery)
    }
}
