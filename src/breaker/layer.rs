use std::sync::Arc;

use tower::Layer;

use super::{BreakerConfig, BreakerRegistry, CircuitBreaker};

/// One circuit breaker per endpoint for every attempt; see the [module docs](super).
///
/// Services made by the same layer (and their clones) share the breakers.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    registry: Option<BreakerRegistry>,
    key: Option<Arc<str>>,
}

impl CircuitBreakerLayer {
    /// Breakers that follow `config`.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreakerLayer {
            registry: Some(BreakerRegistry::new(config)),
            key: None,
        }
    }

    /// One breaker under `key` for every request, instead of one per endpoint.
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// A layer that lets everything through and keeps no state.
    pub fn disabled() -> Self {
        CircuitBreakerLayer {
            registry: None,
            key: None,
        }
    }

    /// The breaker for requests to `url`: the fixed key's, or the endpoint's.
    pub(crate) fn breaker_for(&self, url: &url::Url) -> Option<Arc<super::state::Breaker>> {
        let registry = self.registry.as_ref()?;
        Some(match &self.key {
            Some(key) => registry.breaker(key),
            None => registry.breaker_for(url),
        })
    }

    /// The breakers, to read and steer; `None` when disabled.
    pub fn registry(&self) -> Option<&BreakerRegistry> {
        self.registry.as_ref()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        CircuitBreakerLayer::new(BreakerConfig::default())
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.registry.clone()).with_key(self.key.clone())
    }
}
