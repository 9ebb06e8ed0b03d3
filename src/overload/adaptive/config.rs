//! The public settings of an adaptive limit.

use std::time::Duration;

use crate::bounds;

/// A concurrency limit that adapts to the dependency (file: `[….adaptive_concurrency]`; the
/// policy's [`adaptive_concurrency`](crate::policy::EndpointPolicy::adaptive_concurrency)).
/// Off by default.
///
/// The limit bounds the attempts in flight to its scope (retries and hedges included) and
/// moves with what they observe: see [`LimitAlgorithm`] for how. An attempt over it waits
/// for a place, first come, first served, up to [`queue_timeout`](Self::queue_timeout) and
/// the call's deadline; then the call fails with
/// [`BulkheadFull`](crate::ErrorKind::BulkheadFull) naming the adaptive limit.
///
/// Each algorithm reads only its own knobs: `smoothing`, `rtt_tolerance` and `long_window`
/// are Gradient2's, `backoff_ratio` and `timeout` AIMD's; Vegas has none.
///
/// Ranges: `initial`, `min` and `max` 1 to 100,000, with `min ≤ initial ≤ max`;
/// `queue_timeout` zero to an hour; `smoothing` above 0 to 1; `rtt_tolerance` 1 to 10;
/// `long_window` 1 to 100,000 samples; `backoff_ratio` 0.5 to 0.99; `timeout` above zero
/// to a day.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::overload::AdaptiveConcurrencyConfig;
///
/// let limit = AdaptiveConcurrencyConfig::vegas().initial(20).min(2).max(200);
/// let aimd = AdaptiveConcurrencyConfig::aimd()
///     .backoff_ratio(0.8)
///     .timeout(Duration::from_secs(2))
///     .queue_timeout(Duration::from_millis(200));
/// # let _ = (limit, aimd);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveConcurrencyConfig {
    pub(crate) algorithm: LimitAlgorithm,
    /// `None`: 20, or the nearest of `min` and `max` if it is outside them.
    pub(crate) initial: Option<u32>,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) queue_timeout: Duration,
    pub(crate) smoothing: f64,
    pub(crate) rtt_tolerance: f64,
    pub(crate) long_window: u32,
    pub(crate) backoff_ratio: f64,
    pub(crate) timeout: Duration,
}

/// How the limit moves (file: `algorithm = ".."`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Netflix's Gradient2 (file: `"gradient2"`): the limit follows the ratio of a
    /// long-term latency average to the latest latency, growing while that latency stays
    /// within `rtt_tolerance` of the average and shrinking as it rises past it. It finds
    /// where the latency climbs relative to its recent past, not to the dependency's
    /// unloaded latency: under a steady overload of a dependency whose latency grows with
    /// its queue the average climbs too, and the limit drifts up to twice the callers (use
    /// Vegas there). For dependencies whose latency jumps when they saturate.
    Gradient2,
    /// Additive increase, multiplicative decrease (file: `"aimd"`): one place more per
    /// answer, `backoff_ratio` times fewer on a drop (a 429, 503 or 504, a refused
    /// connection, the attempt timeout) or an answer slower than `timeout`. Blind to latency
    /// below that: for dependencies that reject when full.
    Aimd,
    /// TCP Vegas, as Netflix's concurrency-limits applies it (the default; file:
    /// `"vegas"`): the least latency seen is the unloaded one, and `limit × (1 − unloaded /
    /// average)` estimates the attempts queued at the dependency, once per round (as many
    /// answers as the limit has places); the limit grows while fewer than 2 queue and
    /// shrinks while more than 4 do (Linux's `tcp_vegas` thresholds; 2 × and 4 ×
    /// log10(limit) past 100 places), and by one on a round with a drop. So it settles 2 to
    /// 4 places above the dependency's capacity. The least latency is kept for good: a
    /// dependency slower for good is seen as queueing, and the limit settles lower (about 8
    /// places for a doubled latency).
    #[default]
    Vegas,
}

impl LimitAlgorithm {
    /// Its name in a policy file: `"gradient2"`, `"aimd"`, `"vegas"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitAlgorithm::Gradient2 => "gradient2",
            LimitAlgorithm::Aimd => "aimd",
            LimitAlgorithm::Vegas => "vegas",
        }
    }
}

impl std::fmt::Display for LimitAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LimitAlgorithm {
    type Err = String;

    /// A policy file's name for it; else why not.
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "gradient2" => Ok(LimitAlgorithm::Gradient2),
            "aimd" => Ok(LimitAlgorithm::Aimd),
            "vegas" => Ok(LimitAlgorithm::Vegas),
            other => Err(format!(
                "unknown algorithm {other:?}: expected \"gradient2\", \"aimd\" or \"vegas\""
            )),
        }
    }
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        AdaptiveConcurrencyConfig {
            algorithm: LimitAlgorithm::Vegas,
            initial: None,
            min: 1,
            max: 200,
            queue_timeout: Duration::from_secs(1),
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            long_window: 600,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AdaptiveConcurrencyConfig {
    /// Gradient2.
    pub fn gradient2() -> Self {
        Self::default().algorithm(LimitAlgorithm::Gradient2)
    }

    /// AIMD.
    pub fn aimd() -> Self {
        Self::default().algorithm(LimitAlgorithm::Aimd)
    }

    /// Vegas (the default algorithm).
    pub fn vegas() -> Self {
        Self::default()
    }

    /// The algorithm (what the constructors set).
    pub fn algorithm(mut self, algorithm: LimitAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The limit to start from (default 20, or `min` or `max` if 20 is outside them; given,
    /// it must be within them).
    pub fn initial(mut self, limit: u32) -> Self {
        self.initial = Some(limit);
        self
    }

    /// The limit it starts from.
    pub(crate) fn initial_limit(&self) -> u32 {
        const DEFAULT: u32 = 20;
        (self.initial.unwrap_or(DEFAULT))
            .max(self.min.max(1))
            .min(self.max.max(1))
    }

    /// The lowest the limit goes (default 1: Netflix's 20 would hide a dependency whose
    /// capacity is below it).
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

    /// Gradient2: the share of the way to its target the limit moves per sample (default
    /// 0.2; 1: all the way).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Gradient2: how far above its long-term average the latency may rise before the limit
    /// shrinks (default 1.5: 50 %).
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }

    /// Gradient2: about how many samples the long-term latency average spans (default 600).
    pub fn long_window(mut self, samples: u32) -> Self {
        self.long_window = samples;
        self
    }

    /// AIMD: what a drop multiplies the limit by (default 0.9).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// AIMD: an answer slower than this counts as a drop (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Each part within its range in `bounds.rs`, and `min ≤ initial ≤ max`.
impl bounds::Parts for AdaptiveConcurrencyConfig {
    fn check_parts(self) -> Result<Self, String> {
        let limits = [
            ("initial", self.initial),
            ("min", Some(self.min)),
            ("max", Some(self.max)),
        ];
        for (name, limit) in limits {
            if let Some(limit) = limit {
                bounds::ADAPTIVE_LIMIT
                    .check(limit)
                    .map_err(|e| format!("{name} {e}"))?;
            }
        }
        if self.min > self.max {
            return Err(format!(
                "min must be at most max, got min {} and max {}",
                self.min, self.max
            ));
        }
        if let Some(initial) = self.initial
            && (initial < self.min || initial > self.max)
        {
            return Err(format!(
                "initial must be within min and max ({} to {}), got {initial}",
                self.min, self.max
            ));
        }
        bounds::QUEUE_TIMEOUT
            .check(self.queue_timeout)
            .map_err(|e| format!("queue_timeout {e}"))?;
        bounds::SMOOTHING
            .check(self.smoothing)
            .map_err(|e| format!("smoothing {e}"))?;
        bounds::RTT_TOLERANCE
            .check(self.rtt_tolerance)
            .map_err(|e| format!("rtt_tolerance {e}"))?;
        bounds::LONG_WINDOW
            .check(self.long_window)
            .map_err(|e| format!("long_window {e}"))?;
        bounds::BACKOFF_RATIO
            .check(self.backoff_ratio)
            .map_err(|e| format!("backoff_ratio {e}"))?;
        bounds::LIMIT_TIMEOUT
            .check(self.timeout)
            .map_err(|e| format!("timeout {e}"))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Parts;

    /// Each refusal names the part and the fix's bounds; an unset `initial` is never refused
    /// (it starts within `min` and `max`).
    #[test]
    fn parts_out_of_range_are_refused_by_name() {
        let refused = |config: AdaptiveConcurrencyConfig| config.check_parts().err();
        let base = AdaptiveConcurrencyConfig::default();
        assert_eq!(refused(base), None);
        assert_eq!(refused(base.min(30).max(40)), None);
        assert_eq!(base.min(30).max(40).initial_limit(), 30);
        assert_eq!(base.max(5).initial_limit(), 5);
        let cases = [
            (base.min(0), "min must be at least 1"),
            (
                base.max(100_001),
                "max must be at least 1 and at most 100000",
            ),
            (
                base.min(5).max(2),
                "min must be at most max, got min 5 and max 2",
            ),
            (
                base.initial(300),
                "initial must be within min and max (1 to 200), got 300",
            ),
            (
                base.queue_timeout(Duration::from_secs(7200)),
                "queue_timeout must be",
            ),
            (base.smoothing(0.0), "smoothing must be above 0"),
            (base.rtt_tolerance(0.9), "rtt_tolerance must be at least 1"),
            (base.long_window(0), "long_window must be at least 1"),
            (
                base.backoff_ratio(0.2),
                "backoff_ratio must be at least 0.5",
            ),
            (base.timeout(Duration::ZERO), "timeout must be above zero"),
        ];
        for (config, want) in cases {
            let got = refused(config).unwrap_or_default();
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn algorithms_by_their_file_names() {
        for algorithm in [
            LimitAlgorithm::Vegas,
            LimitAlgorithm::Gradient2,
            LimitAlgorithm::Aimd,
        ] {
            assert_eq!(algorithm.as_str().parse(), Ok(algorithm));
        }
        assert!("reno".parse::<LimitAlgorithm>().is_err());
        assert_eq!(LimitAlgorithm::default(), LimitAlgorithm::Vegas);
    }
}
