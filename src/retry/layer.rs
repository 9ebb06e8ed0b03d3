use std::sync::Arc;

use tower::Layer;

use super::{Retry, RetryPolicy};

/// Retries transient failures of the service it wraps; see the [module docs](super).
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
