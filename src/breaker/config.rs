use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::State;
use crate::error::Error;

/// Which calls the failure rate is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// The last `n` calls (per worker thread; see the [module docs](crate::breaker)).
    Calls(u32),
    /// The calls of the last `length`, kept in `buckets` buckets that expire one at a time.
    Time {
        /// How far back the window reaches.
        length: Duration,
        /// How many slices it is kept in (more: smoother expiry, more memory).
        buckets: u32,
    },
}

/// A state change, as given to [`BreakerConfigBuilder::on_state_change`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The endpoint key, e.g. `https://api.example:443`.
    pub key: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

type Callback = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// How the circuit breakers of a layer behave; see the [module docs](crate::breaker).
#[derive(Clone)]
pub struct BreakerConfig {
    pub(super) window: Window,
    pub(super) min_calls: u32,
    pub(super) failure_rate: f64,
    pub(super) slow_call_rate: f64,
    pub(super) slow_call_duration: Option<Duration>,
    pub(super) open_duration: Duration,
    pub(super) max_open_duration: Duration,
    pub(super) half_open_probes: u32,
    pub(super) max_breakers: usize,
    pub(super) on_state_change: Option<Callback>,
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call_rate", &self.slow_call_rate)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("open_duration", &self.open_duration)
            .field("max_open_duration", &self.max_open_duration)
            .field("half_open_probes", &self.half_open_probes)
            .field("max_breakers", &self.max_breakers)
            .field("on_state_change", &self.on_state_change.is_some())
            .finish()
    }
}

impl Default for BreakerConfig {
    /// Last 100 calls, at least 20 of them, 50 % failures; slow calls not counted; open 5 s
    /// doubling to 60 s; one probe; at most 1024 endpoints.
    fn default() -> Self {
        BreakerConfig {
            window: Window::Calls(100),
            min_calls: 20,
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call_duration: None,
            open_duration: Duration::from_secs(5),
            max_open_duration: Duration::from_secs(60),
            half_open_probes: 1,
            max_breakers: 1024,
            on_state_change: None,
        }
    }
}

impl BreakerConfig {
    /// Starts from the defaults.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder(BreakerConfig::default())
    }

    /// A builder that starts from these settings.
    pub fn to_builder(&self) -> BreakerConfigBuilder {
        BreakerConfigBuilder(self.clone())
    }

    /// How long the circuit stays open after its `n`-th consecutive opening (0 for the first).
    pub(super) fn open_duration_after(&self, consecutive: u32) -> Duration {
        let factor = 2u32.checked_pow(consecutive.min(31)).unwrap_or(u32::MAX);
        self.open_duration
            .saturating_mul(factor)
            .min(self.max_open_duration)
    }
}

/// Configures a [`BreakerConfig`]; [`build`](Self::build) checks the settings.
#[derive(Debug)]
pub struct BreakerConfigBuilder(BreakerConfig);

/// Most probes the state word can count.
pub(super) const MAX_PROBES: u32 = 1023;

impl BreakerConfigBuilder {
    /// The window the rates are computed over (default: the last 100 calls).
    pub fn window(mut self, window: Window) -> Self {
        self.0.window = window;
        self
    }

    /// Fewest calls in the window before the breaker may open (default 20).
    pub fn min_calls(mut self, calls: u32) -> Self {
        self.0.min_calls = calls;
        self
    }

    /// Opens when at least this share of the window's calls failed (default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.0.failure_rate = rate;
        self
    }

    /// Counts calls slower than `duration` as slow, and opens when at least `rate` of the
    /// window's calls were slow (default: off).
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.0.slow_call_duration = Some(duration);
        self.0.slow_call_rate = rate;
        self
    }

    /// How long the circuit stays open the first time (default 5 s); it doubles on every
    /// re-opening from half-open, up to `max` (default 60 s), and starts over after closing.
    pub fn open_duration(mut self, first: Duration, max: Duration) -> Self {
        self.0.open_duration = first;
        self.0.max_open_duration = max;
        self
    }

    /// Sets only the first open duration; the cap grows to it if it was lower.
    pub(crate) fn first_open_duration(mut self, first: Duration) -> Self {
        self.0.open_duration = first;
        self.0.max_open_duration = self.0.max_open_duration.max(first);
        self
    }

    /// How many trial calls half-open lets through; all must succeed to close (default 1).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.0.half_open_probes = probes;
        self
    }

    /// Most endpoints with a breaker at once; beyond, the idlest closed ones are dropped
    /// (default 1024).
    pub fn max_breakers(mut self, max: usize) -> Self {
        self.0.max_breakers = max;
        self
    }

    /// Calls `f` on every state change, after the `tracing` event. Keep it quick: it runs on
    /// the request path.
    pub fn on_state_change(mut self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.0.on_state_change = Some(Arc::new(f));
        self
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn build(self) -> Result<BreakerConfig, Error> {
        let c = self.0;
        let bad = |message: String| Err(Error::invalid_config(message));
        for (name, rate) in [
            ("failure_rate", c.failure_rate),
            ("slow_call_rate", c.slow_call_rate),
        ] {
            if !(rate > 0.0 && rate <= 1.0) {
                return bad(format!("{name} must be above 0 and at most 1, got {rate}"));
            }
        }
        match c.window {
            Window::Calls(0) => return bad("window must hold at least 1 call".into()),
            Window::Time { length, .. } if length.is_zero() => {
                return bad("window length must be above zero".into());
            }
            Window::Time { buckets: 0, .. } => {
                return bad("window buckets must be at least 1".into());
            }
            Window::Time { length, buckets } if length < Duration::from_millis(buckets.into()) => {
                return bad("window buckets must be at least 1 ms each".into());
            }
            _ => {}
        }
        if c.min_calls == 0 {
            return bad("min_calls must be at least 1".into());
        }
        if c.slow_call_duration.is_some_and(|d| d.is_zero()) {
            return bad("slow_call_duration must be above zero".into());
        }
        if c.open_duration.is_zero() {
            return bad("open_duration must be above zero".into());
        }
        if c.max_open_duration < c.open_duration {
            return bad("max_open_duration must not be below open_duration".into());
        }
        if c.half_open_probes == 0 || c.half_open_probes > MAX_PROBES {
            return bad(format!(
                "half_open_probes must be between 1 and {MAX_PROBES}"
            ));
        }
        if c.max_breakers == 0 {
            return bad("max_breakers must be at least 1".into());
        }
        Ok(c)
    }
}
