use std::sync::Arc;

use tower::Layer;

use super::state::Breaker;
use super::{BreakerConfig, BreakerRegistry, CircuitBreaker};

/// One circuit breaker per endpoint for every attempt; see the [module docs](super).
///
/// Services made by the same layer (and their clones) share the breakers. The service below
/// must sort its outcomes: put a [`ClassifyLayer`](crate::classify::ClassifyLayer) under it.
///
/// ```
/// use resilient_http::breaker::{BreakerConfig, CircuitBreakerLayer};
/// use resilient_http::classify::{ClassifyLayer, DefaultClassifier};
/// use resilient_http::testkit::{FaultServer, Reply};
/// use resilient_http::ErrorKind;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/down", [Reply::status(503)]);
///
/// let service = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(BreakerConfig::builder().min_calls(4).build()?))
///     .layer(ClassifyLayer::new(DefaultClassifier))
///     .service(reqwest::Client::new());
/// let url: reqwest::Url = server.url("/down").parse()?;
/// let get = || reqwest::Request::new(reqwest::Method::GET, url.clone());
/// for _ in 0..4 {
///     let _ = service.clone().oneshot(get()).await;
/// }
/// let err = service.oneshot(get()).await.err().ok_or("open")?;
/// assert_eq!(err.kind(), ErrorKind::CircuitOpen);
/// assert_eq!(server.hits("/down"), 4, "the fifth was not sent");
/// # Ok(())
/// # }
/// ```
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

    /// A layer over `registry`'s breakers (a named scope's, shared by several policies).
    pub(crate) fn of(registry: BreakerRegistry) -> Self {
        CircuitBreakerLayer {
            registry: Some(registry),
            key: None,
        }
    }

    /// A layer that lets everything through and keeps no state.
    pub fn disabled() -> Self {
        CircuitBreakerLayer {
            registry: None,
            key: None,
        }
    }

    /// The breaker under `key` (an endpoint key, or a rule's or named scope's key); `None`
    /// when disabled.
    pub(crate) fn breaker_at(&self, key: &str) -> Option<Arc<Breaker>> {
        Some(self.registry.as_ref()?.breaker(key))
    }

    /// Takes over `before`'s breakers (and their state) if both keep breakers under the same
    /// key and settings (a reload: see `Policies::keep_state_of`); whether it did.
    pub(crate) fn keep_state_of(&mut self, before: &CircuitBreakerLayer) -> bool {
        if let (Some(registry), Some(old)) = (&self.registry, &before.registry)
            && self.key == before.key
            && registry.config().same_settings(old.config())
        {
            self.registry = Some(old.clone());
            return true;
        }
        false
    }

    /// Whether it keeps breakers at all.
    pub(crate) fn enabled(&self) -> bool {
        self.registry.is_some()
    }

    /// The breakers, to read and steer; `None` when disabled.
    pub fn registry(&self) -> Option<&BreakerRegistry> {
        self.registry.as_ref()
    }
}

/// The breaker that guards a request to `url`: the one under `key` when one is set (the
/// layer's [`with_key`](CircuitBreakerLayer::with_key)), else the endpoint's (see [`endpoint_key`](super::endpoint_key)).
/// The one rule for the layer's services and the client's own call.
pub(crate) fn breaker_for(
    registry: &BreakerRegistry,
    key: Option<&str>,
    url: &url::Url,
) -> Arc<Breaker> {
    registry.breaker(&*crate::keyed::key_for(key, url))
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
