//! Adaptive concurrency: a limit on the attempts in flight to a scope that finds the
//! dependency's capacity from the latency it observes.
//!
//! SKELETON (issue 26): the config, and the guard's interface over a fixed limit; the
//! algorithms and the moving limit are filled in by the adaptive work.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::bulkhead::{Acquire, Bulkhead, BulkheadConfig, BulkheadPermit};
use super::pass::Answer;
use crate::bounds;

/// A concurrency limit that adapts to the dependency (file: `[….adaptive_concurrency]`; the
/// policy's [`adaptive_concurrency`](crate::policy::EndpointPolicy::adaptive_concurrency)).
/// Off by default.
///
/// ```
/// use resilient_http::overload::AdaptiveConcurrencyConfig;
///
/// let limit = AdaptiveConcurrencyConfig::gradient2().initial(20).min(2).max(200);
/// # let _ = limit;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveConcurrencyConfig {
    pub(crate) algorithm: LimitAlgorithm,
    pub(crate) initial: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) queue_timeout: Duration,
}

/// How the limit moves (file: `algorithm = ".."`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Netflix's Gradient2 (the default): the limit follows the ratio of a long-term to a
    /// short-term latency average (file: `"gradient2"`).
    #[default]
    Gradient2,
    /// Additive increase, multiplicative decrease on drops (file: `"aimd"`).
    Aimd,
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        AdaptiveConcurrencyConfig {
            algorithm: LimitAlgorithm::Gradient2,
            initial: 20,
            min: 1,
            max: 200,
            queue_timeout: Duration::from_secs(1),
        }
    }
}

impl AdaptiveConcurrencyConfig {
    /// Gradient2 (the default algorithm).
    pub fn gradient2() -> Self {
        Self::default()
    }

    /// AIMD.
    pub fn aimd() -> Self {
        AdaptiveConcurrencyConfig {
            algorithm: LimitAlgorithm::Aimd,
            ..Self::default()
        }
    }

    /// The limit to start from (default 20).
    pub fn initial(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest the limit goes (default 1).
    pub fn min(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The highest the limit goes (default 200).
    pub fn max(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// How long an attempt over the limit may wait for a place (default 1 s; zero: not at
    /// all), and at most until the call's deadline.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }
}

/// Each part within its range in `bounds.rs`.
impl bounds::Parts for AdaptiveConcurrencyConfig {
    fn check_parts(self) -> Result<Self, String> {
        // SKELETON: ranges are the surface work's.
        Ok(self)
    }
}

/// One scope's adaptive limit: the places, and the algorithm that moves their number.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    places: Arc<Bulkhead>,
    queue_timeout: Duration,
}

/// An attempt's place under an [`AdaptiveLimit`]: [`end`](Self::end) gives it back with a
/// sample; dropped (the attempt was cancelled), it gives it back and is no sample.
#[derive(Debug)]
pub(crate) struct LimitPermit {
    _place: BulkheadPermit,
    #[allow(dead_code)]
    limit: Arc<AdaptiveLimit>,
    #[allow(dead_code)]
    since: Instant,
}

impl AdaptiveLimit {
    pub(crate) fn new(config: AdaptiveConcurrencyConfig) -> Self {
        let places = BulkheadConfig::new(config.initial, config.queue_timeout);
        AdaptiveLimit {
            places: Arc::new(Bulkhead::new(places)),
            queue_timeout: config.queue_timeout,
        }
    }

    /// How long an attempt may queue (the caller bounds it by its deadline too).
    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// A place now, if one is free and nobody queues for it.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<LimitPermit> {
        let place = self.places.try_acquire()?;
        Some(self.permit(place))
    }

    /// Waits for a place until `until`, behind the attempts already waiting (see
    /// [`Bulkhead::acquire`]).
    pub(crate) fn acquire(self: &Arc<Self>, until: Instant) -> PlaceFuture {
        let limit = Arc::clone(self);
        let waiting: Acquire = self.places.acquire(until);
        Box::pin(async move { waiting.await.map(|place| limit.permit(place)) })
    }

    fn permit(self: &Arc<Self>, place: BulkheadPermit) -> LimitPermit {
        LimitPermit {
            _place: place,
            limit: Arc::clone(self),
            since: Instant::now(),
        }
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> u32 {
        self.places.max()
    }

    /// Attempts holding a place.
    pub(crate) fn in_flight(&self) -> u32 {
        self.places.in_flight()
    }

    /// Attempts waiting for a place.
    pub(crate) fn waiting(&self) -> u32 {
        self.places.waiting()
    }

    /// Latency samples taken so far (cancelled attempts are none), for tests.
    pub(crate) fn samples(&self) -> u64 {
        0
    }

    /// Whether forgetting it would forget a constraint (asked when the map is full).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0 || self.waiting() > 0
    }
}

/// What [`AdaptiveLimit::acquire`] returns.
pub(crate) type PlaceFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<LimitPermit>> + Send>>;

impl LimitPermit {
    /// The attempt went out now (its latency counts from here).
    pub(crate) fn sent(&mut self, at: Instant) {
        self.since = at;
    }

    /// The attempt ended at `now` as `answer` says: a sample for the algorithm (unless
    /// [`Answer::Uncounted`]), and the place back.
    pub(crate) fn end(self, _answer: Answer, _now: Instant) {
        // SKELETON: the place goes back; no sample.
    }
}
