use std::sync::Arc;

use tower::Layer;

use super::{Retry, RetryPolicy};

/// Retries transient failures of the service it wraps; see the [module docs](super).
///
/// The service below must sort its outcomes: put a [`ClassifyLayer`](crate::classify::ClassifyLayer)
/// under it (the [guide](crate::guide::tower#one-rule-at-a-time) stacks every layer).
///
/// ```
/// use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
/// use resilient_http::retry::{RetryLayer, RetryPolicy};
/// use resilient_http::testkit::{FaultServer, Reply};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
///
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::builder().max_attempts(3).build()?))
///     .layer(ClassifyLayer::new(DefaultClassifier))
///     .service(reqwest::Client::new());
/// let request = reqwest::Request::new(reqwest::Method::GET, server.url("/flaky").parse()?);
/// assert_eq!(service.oneshot(request).await?.status(), 200);
/// assert_eq!(server.hits("/flaky"), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RetryLayer {
    policy: Arc<RetryPolicy>,
}

impl RetryLayer {
    /// A layer that retries according to `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            policy: Arc::new(policy),
        }
    }
}

impl RetryLayer {
    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub(crate) fn from_shared(policy: Arc<RetryPolicy>) -> Self {
        RetryLayer { policy }
    }

    pub(crate) fn shared(&self) -> Arc<RetryPolicy> {
        self.policy.clone()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}
