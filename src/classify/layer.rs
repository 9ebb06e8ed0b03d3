use tower::Layer;

use super::{Classify, DefaultClassifier};

/// Applies a [`Classifier`](super::Classifier) to every attempt; see [`Classify`].
///
/// A failure status becomes an [`Error`](crate::Error) of kind
/// [`Status`](crate::ErrorKind::Status), with its class, for the layers above it.
///
/// ```
/// use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
/// use resilient_http::testkit::{FaultServer, Reply};
/// use resilient_http::ErrorKind;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/busy", [Reply::status(503)]);
///
/// let service = ServiceBuilder::new()
///     .layer(ClassifyLayer::new(DefaultClassifier))
///     .service(reqwest::Client::new());
/// let request = reqwest::Request::new(reqwest::Method::GET, server.url("/busy").parse()?);
/// let err = service.oneshot(request).await.err().ok_or("a 503 is an error")?;
/// assert_eq!(err.kind(), ErrorKind::Status);
/// assert!(err.is_transient());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClassifyLayer<C = DefaultClassifier> {
    classifier: C,
}

impl<C> ClassifyLayer<C> {
    /// A layer that sorts outcomes with `classifier`.
    pub fn new(classifier: C) -> Self {
        ClassifyLayer { classifier }
    }
}

impl<S, C: Clone> Layer<S> for ClassifyLayer<C> {
    type Service = Classify<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify::new(inner, self.classifier.clone())
    }
}
