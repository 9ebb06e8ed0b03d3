use tower::Layer;

use super::{BreakerConfig, BreakerRegistry, CircuitBreaker};

/// One circuit breaker per endpoint for every attempt; see the [module docs](super).
///
/// Services made by the same layer (and their clones) share the breakers.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    registry: Option<BreakerRegistry>,
}

impl CircuitBreakerLayer {
    /// Breakers that follow `config`.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreakerLayer {
            registry: Some(BreakerRegistry::new(config)),
        }
    }

    /// A layer that lets everything through and keeps no state.
    pub fn disabled() -> Self {
        CircuitBreakerLayer { registry: None }
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
        CircuitBreaker::new(inner, self.registry.clone())
    }
}
