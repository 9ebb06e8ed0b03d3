//! Sorting every attempt's outcome into success, transient or permanent.
//!
//! Retry and circuit breaker must agree on what a failure is, and the caller must be able to
//! change that agreement in one place (a 409 that means "try again" for one API, a 503 that
//! means "never again" for another). So the outcome of each attempt is classified **once**, by
//! the policy's [`Classifier`], and everything after it (retry, breaker, the caller) reads the
//! verdict from the [`Error`] it receives. In a stack of layers that is the
//! [`Classify`] layer sitting directly on top of `reqwest::Client`; the driver of the client,
//! `ResilientMiddleware` and `ResilientLayer` runs the same functions inline, and sorts with
//! the same classifier what the layers never see: an error while reading a body inside the
//! attempt (`send_buffered`, a reader of yours), a failure status whose body is over the
//! limit. A transport error is never a success. A policy's `retry_statuses` wrap its
//! classifier ([`SharedClassifier`]).
//!
//! A classification has two parts:
//! - a [`Class`]: [`Success`](Class::Success), [`Transient`](Class::Transient) (worth trying
//!   again) or [`Permanent`](Class::Permanent) (trying again cannot help);
//! - a [`Delivery`]: whether the request [never reached the server](Delivery::NotSent) (connect
//!   refused, DNS failure, HTTP/2 `REFUSED_STREAM`: safe to retry for any method), [may have
//!   been processed](Delivery::MaybeSent) (reset after writing, timeout while waiting, an HTTP/2
//!   graceful `GOAWAY`, which hyper may hand to a stream the server kept), or was
//!   [answered](Delivery::Delivered).
//!
//! The [`DefaultClassifier`] follows curl, urllib3 and .NET: 2xx/3xx succeed; 408, 429, 500,
//! 502, 503 and 504 are transient; every other 4xx/5xx is permanent; connect errors, timeouts,
//! resets and HTTP/2 `REFUSED_STREAM`/`GOAWAY` are transient; a failed TLS handshake (an
//! invalid certificate) is permanent. Plug in your own with
//! [`classify_fn`] or by implementing [`Classifier`]:
//!
//! ```
//! use resilient_http::classify::{classify_fn, Class, Classification, Classifier, DefaultClassifier};
//!
//! // This API answers 409 while another writer holds the lock: worth retrying.
//! let classifier = classify_fn(|method, result| match result {
//!     Ok(response) if response.status() == 409 => Classification::delivered(Class::Transient),
//!     _ => DefaultClassifier.classify(method, result),
//! });
//! # let _ = classifier;
//! ```
//!
//! Layers that stop an attempt themselves (the attempt timeout's backstop, the total deadline)
//! report their timeout as transient and possibly sent without asking the classifier: there is
//! no `reqwest::Error` to show it.

use std::fmt;
use std::sync::Arc;

use http::Method;

use crate::error::{Error, ErrorKind};

mod body;
mod default;
mod future;
mod layer;
mod layer_error;
mod reader;
mod service;

pub use body::{BodyClassifier, BodyClassifierFn, body_classifier_fn};
pub use default::DefaultClassifier;
#[cfg(feature = "reqwest-middleware")]
pub(crate) use future::foreign_error;
pub use future::{ResponseFuture, TransportError};
pub(crate) use future::{outcome, response_outcome, transport_error};
pub use layer::ClassifyLayer;
pub(crate) use layer_error::{is_tower_timeout, layer_error};
pub(crate) use reader::sorting;
pub use service::Classify;

pub use crate::outcome::{Class, Delivery};
pub(crate) use crate::transport::{Turnover, analyze};

/// Whether the attempt that failed with `error` was turned away by an HTTP/2 server turning
/// its connections over (see [`Turnover`]).
pub(crate) fn turnover(error: &Error) -> Option<Turnover> {
    // A cheap check first: the source chain is walked only for these.
    if error.kind() != ErrorKind::ConnectionClosed || error.delivery() == Delivery::Delivered {
        return None;
    }
    crate::transport::turnover_in(error)
}

/// A classifier's verdict on one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Classification {
    /// Success, transient or permanent.
    pub class: Class,
    /// Whether the request reached the server.
    pub delivery: Delivery,
}

impl Classification {
    /// A verdict on an attempt the server answered.
    pub const fn delivered(class: Class) -> Self {
        Classification {
            class,
            delivery: Delivery::Delivered,
        }
    }
}

/// Sorts one attempt's outcome. See the [module docs](self).
///
/// It sees the request's method and either the response (whatever its status) or the
/// `reqwest::Error`. It runs once per attempt on the request path, so keep it cheap.
pub trait Classifier: Send + Sync + 'static {
    /// The verdict on one attempt.
    fn classify(
        &self,
        method: &Method,
        result: Result<&reqwest::Response, &reqwest::Error>,
    ) -> Classification;
}

impl<C: Classifier + ?Sized> Classifier for Arc<C> {
    fn classify(
        &self,
        method: &Method,
        result: Result<&reqwest::Response, &reqwest::Error>,
    ) -> Classification {
        (**self).classify(method, result)
    }
}

impl<C: Classifier + ?Sized> Classifier for Box<C> {
    fn classify(
        &self,
        method: &Method,
        result: Result<&reqwest::Response, &reqwest::Error>,
    ) -> Classification {
        (**self).classify(method, result)
    }
}

/// A [`Classifier`] made from a closure; see [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F>(F);

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClassifyFn")
    }
}

/// Makes a [`Classifier`] from a closure (see the [module docs](self) for an example).
pub fn classify_fn<F>(f: F) -> ClassifyFn<F>
where
    F: Fn(&Method, Result<&reqwest::Response, &reqwest::Error>) -> Classification
        + Send
        + Sync
        + 'static,
{
    ClassifyFn(f)
}

impl<F> Classifier for ClassifyFn<F>
where
    F: Fn(&Method, Result<&reqwest::Response, &reqwest::Error>) -> Classification
        + Send
        + Sync
        + 'static,
{
    fn classify(
        &self,
        method: &Method,
        result: Result<&reqwest::Response, &reqwest::Error>,
    ) -> Classification {
        (self.0)(method, result)
    }
}

/// The classifier a [`Client`](crate::Client) uses: the default one, or yours behind an `Arc`.
///
/// Cloning it per call costs nothing for the default and one reference count otherwise.
///
/// ```
/// use std::sync::Arc;
/// use resilient_http::classify::{Classifier, DefaultClassifier, SharedClassifier};
///
/// let default = SharedClassifier::default();
/// let mine = SharedClassifier::new(DefaultClassifier);
/// let shared: Arc<dyn Classifier> = Arc::new(DefaultClassifier);
/// let also_mine = SharedClassifier::from(shared);
/// # let _ = (default, mine, also_mine);
/// ```
#[derive(Clone, Default)]
pub struct SharedClassifier(Shared);

/// What a [`SharedClassifier`] holds; private, so that new kinds of sharing can come.
#[derive(Clone, Default)]
enum Shared {
    #[default]
    Default,
    Custom(Arc<dyn Classifier>),
    /// An endpoint policy's list of transient statuses over another classifier.
    Statuses(Arc<(Vec<u16>, SharedClassifier)>),
}

impl SharedClassifier {
    /// Your classifier, shared.
    pub fn new(classifier: impl Classifier) -> Self {
        SharedClassifier(Shared::Custom(Arc::new(classifier)))
    }

    /// `statuses` transient, every other failure status permanent, and the rest (successes,
    /// transport errors) as `self` says: an endpoint policy's `retry_statuses`.
    pub(crate) fn with_transient_statuses(&self, statuses: Vec<u16>) -> Self {
        SharedClassifier(Shared::Statuses(Arc::new((statuses, self.clone()))))
    }
}

impl From<DefaultClassifier> for SharedClassifier {
    fn from(_: DefaultClassifier) -> Self {
        SharedClassifier::default()
    }
}

impl From<Arc<dyn Classifier>> for SharedClassifier {
    fn from(classifier: Arc<dyn Classifier>) -> Self {
        SharedClassifier(Shared::Custom(classifier))
    }
}

impl fmt::Debug for SharedClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Shared::Default => f.write_str("Default"),
            Shared::Custom(_) => f.write_str("Custom"),
            Shared::Statuses(inner) => {
                write!(f, "Statuses({:?}, {:?})", inner.0, inner.1)
            }
        }
    }
}

impl Classifier for SharedClassifier {
    fn classify(
        &self,
        method: &Method,
        result: Result<&reqwest::Response, &reqwest::Error>,
    ) -> Classification {
        match &self.0 {
            Shared::Default => DefaultClassifier.classify(method, result),
            Shared::Custom(custom) => custom.classify(method, result),
            Shared::Statuses(inner) => {
                let (transient, base) = &**inner;
                match result {
                    Ok(response) => {
                        let status = response.status();
                        let class = if transient.contains(&status.as_u16()) {
                            Class::Transient
                        } else if status.is_client_error() || status.is_server_error() {
                            Class::Permanent
                        } else {
                            return base.classify(method, result);
                        };
                        Classification::delivered(class)
                    }
                    Err(_) => base.classify(method, result),
                }
            }
        }
    }
}
