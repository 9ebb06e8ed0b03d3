use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::State;
use crate::bounds;
use crate::error::Error;
use crate::policy::{EndpointPolicy, Named};
use crate::window::Window;

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
    pub(super) open_for: Duration,
    pub(super) open_for_max: Duration,
    pub(super) half_open_probes: u32,
    pub(super) max_breakers: usize,
    pub(super) count_429: bool,
    pub(super) on_state_change: Option<Callback>,
    /// The settings the builder was told (see [`BreakerConfigBuilder`]'s setters), the ones
    /// `ClientBuilder::circuit_breaker` writes.
    pub(crate) named: Named,
}

/// The bits of [`Named`] for a breaker's settings.
mod bit {
    pub(super) const WINDOW: u16 = 1;
    pub(super) const MIN_CALLS: u16 = 1 << 1;
    pub(super) const FAILURE_RATE: u16 = 1 << 2;
    pub(super) const SLOW_CALLS: u16 = 1 << 3;
    pub(super) const OPEN_FOR: u16 = 1 << 4;
    pub(super) const OPEN_FOR_MAX: u16 = 1 << 5;
    pub(super) const HALF_OPEN_PROBES: u16 = 1 << 6;
    pub(super) const MAX_BREAKERS: u16 = 1 << 7;
    pub(super) const COUNT_429: u16 = 1 << 8;
    pub(super) const ON_STATE_CHANGE: u16 = 1 << 9;
}

impl BreakerConfig {
    /// Whether `other` sets every number as this does (the state-change callback aside: a
    /// closure cannot be compared, and a reload that rebuilds it must still keep the
    /// breakers).
    pub(crate) fn same_settings(&self, other: &BreakerConfig) -> bool {
        self.window == other.window
            && self.min_calls == other.min_calls
            && self.failure_rate == other.failure_rate
            && self.slow_call_rate == other.slow_call_rate
            && self.slow_call_duration == other.slow_call_duration
            && self.open_for == other.open_for
            && self.open_for_max == other.open_for_max
            && self.half_open_probes == other.half_open_probes
            && self.max_breakers == other.max_breakers
            && self.count_429 == other.count_429
    }
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call_rate", &self.slow_call_rate)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("open_for", &self.open_for)
            .field("open_for_max", &self.open_for_max)
            .field("half_open_probes", &self.half_open_probes)
            .field("max_breakers", &self.max_breakers)
            .field("count_429", &self.count_429)
            .field("on_state_change", &self.on_state_change.is_some())
            .finish()
    }
}

impl Default for BreakerConfig {
    /// Last 100 calls, at least 20 of them, 50 % failures; slow calls not counted; open 5 s
    /// doubling to 60 s; one probe; at most 1024 endpoints; a 429 is no failure.
    fn default() -> Self {
        BreakerConfig {
            window: Window::Calls(100),
            min_calls: 20,
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call_duration: None,
            open_for: Duration::from_secs(5),
            open_for_max: Duration::from_secs(60),
            half_open_probes: 1,
            max_breakers: 1024,
            count_429: false,
            on_state_change: None,
            named: Named::default(),
        }
    }
}

impl BreakerConfig {
    /// Starts from the defaults.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: BreakerConfig::default(),
            open_for_max: None,
        }
    }

    /// A builder that starts from these settings, and from its record of which of them were
    /// named (see [`BreakerConfigBuilder`]).
    pub fn to_builder(&self) -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: self.clone(),
            open_for_max: None,
        }
    }

    /// Writes the settings `later` names (see [`BreakerConfigBuilder`]) over what earlier
    /// calls set, and turns the breaker on: those an [`EndpointPolicy`] can say into `policy`
    /// (where every way of setting them meets, the later call winning), the others (a time
    /// window, slow calls, `max_breakers`, `on_state_change`) into `self`, the client
    /// builder's config, which has them for every rule.
    pub(crate) fn write_named(&mut self, later: &BreakerConfig, policy: &mut EndpointPolicy) {
        let named = later.named;
        let mut set = EndpointPolicy::new().breaker_enabled(true);
        set.breaker_failure_rate = named.has(bit::FAILURE_RATE).then_some(later.failure_rate);
        set.breaker_min_calls = named.has(bit::MIN_CALLS).then_some(later.min_calls);
        set.breaker_open_for = named.has(bit::OPEN_FOR).then_some(later.open_for);
        set.breaker_open_for_max = named.has(bit::OPEN_FOR_MAX).then_some(later.open_for_max);
        set.breaker_half_open_probes = named
            .has(bit::HALF_OPEN_PROBES)
            .then_some(later.half_open_probes);
        set.breaker_count_429 = named.has(bit::COUNT_429).then_some(later.count_429);
        let mut time_window = false;
        if named.has(bit::WINDOW) {
            match later.window {
                Window::Calls(calls) => set.breaker_window = Some(calls),
                Window::Time { .. } => {
                    self.window = later.window;
                    time_window = true;
                }
            }
        }
        *policy = set.inherit(policy);
        if time_window {
            // The time window replaces a call window set before it; a later call window
            // replaces it in turn (as `compile` applies `breaker_window`).
            policy.breaker_window = None;
        }
        if named.has(bit::SLOW_CALLS) {
            self.slow_call_duration = later.slow_call_duration;
            self.slow_call_rate = later.slow_call_rate;
        }
        if named.has(bit::MAX_BREAKERS) {
            self.max_breakers = later.max_breakers;
        }
        if named.has(bit::ON_STATE_CHANGE) {
            self.on_state_change = later.on_state_change.clone();
        }
    }

    /// The most endpoints with a breaker of their own.
    pub(crate) fn max_breakers(&self) -> usize {
        self.max_breakers
    }

    /// Whether a `429 Too Many Requests` counts as a failure (see
    /// [`BreakerConfigBuilder::count_429`]).
    pub(crate) fn counts_429(&self) -> bool {
        self.count_429
    }

    /// How long the circuit stays open after its `n`-th consecutive opening (0 for the first).
    pub(super) fn open_for_after(&self, consecutive: u32) -> Duration {
        let factor = 2u32.checked_pow(consecutive.min(31)).unwrap_or(u32::MAX);
        self.open_for.saturating_mul(factor).min(self.open_for_max)
    }
}

/// Configures a [`BreakerConfig`]; [`build`](Self::build) checks the settings.
///
/// The config remembers which setters were called: given to
/// [`ClientBuilder::circuit_breaker`](crate::ClientBuilder::circuit_breaker), it changes only
/// those settings (and turns the breaker on), and the others keep what earlier calls or a
/// policy file set. A setting given its default value explicitly is named too.
#[derive(Debug)]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
    // Set by `open_for_max`: without it, the cap grows to `open_for` when that is longer.
    open_for_max: Option<Duration>,
}

impl BreakerConfigBuilder {
    /// The window the rates are computed over (default: the last 100 calls). A call window
    /// holds 1 to 10,000 calls; a time window is at most 1 hour long, in 1 to 100 buckets of
    /// at least 1 ms each.
    pub fn window(mut self, window: Window) -> Self {
        self.config.named.add(bit::WINDOW);
        self.config.window = window;
        self
    }

    /// Fewest calls in the window before the breaker may open (default 20; 1 to 10,000, and
    /// for a call window at most its size, or the breaker could never open).
    pub fn min_calls(mut self, calls: u32) -> Self {
        self.config.named.add(bit::MIN_CALLS);
        self.config.min_calls = calls;
        self
    }

    /// Opens when at least this share of the window's calls failed (default 0.5; above 0, at
    /// most 1).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.config.named.add(bit::FAILURE_RATE);
        self.config.failure_rate = rate;
        self
    }

    /// Counts calls slower than `duration` (above zero, at most 1 day) as slow, and opens
    /// when at least `rate` (above 0, at most 1) of the window's calls were slow (default:
    /// off).
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.config.named.add(bit::SLOW_CALLS);
        self.config.slow_call_duration = Some(duration);
        self.config.slow_call_rate = rate;
        self
    }

    /// How long the circuit stays open the first time (default 5 s; above zero, at most 1
    /// hour). It doubles on every re-opening from half-open, up to
    /// [`open_for_max`](Self::open_for_max), and starts over after closing. The policy's
    /// `breaker_open_for`, the file's `open_for` in `[….breaker]`.
    pub fn open_for(mut self, first: Duration) -> Self {
        self.config.named.add(bit::OPEN_FOR);
        self.config.open_for = first;
        self
    }

    /// The longest the circuit stays open after re-openings (default 60 s, or `open_for` if
    /// that is longer and this is not set; above zero, at most 1 hour, not below `open_for`).
    /// The policy's `breaker_open_for_max`, the file's `open_for_max` in `[….breaker]`.
    pub fn open_for_max(mut self, max: Duration) -> Self {
        self.config.named.add(bit::OPEN_FOR_MAX);
        self.open_for_max = Some(max);
        self
    }

    /// How many trial calls half-open lets through; all must succeed to close (default 1; 1
    /// to 1023).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.named.add(bit::HALF_OPEN_PROBES);
        self.config.half_open_probes = probes;
        self
    }

    /// Most endpoints with a breaker at once; beyond, the idlest closed ones are dropped
    /// (default 1024; 1 to 100,000). A breaker that is not closed is never dropped: when
    /// every one is, the map grows past this instead (a WARN once, and the
    /// [`ENDPOINTS_OVER_BOUND`](crate::telemetry::ENDPOINTS_OVER_BOUND) counter). The
    /// policy's overload guards are kept per endpoint under the same bound and rule. It also bounds the breaker metric series: see
    /// [`telemetry`](crate::telemetry).
    pub fn max_breakers(mut self, max: usize) -> Self {
        self.config.named.add(bit::MAX_BREAKERS);
        self.config.max_breakers = max;
        self
    }

    /// Whether a `429 Too Many Requests` counts as a failure (default `false`). A 429 is a
    /// rate limiter saying "slow down", not an endpoint that is down: by default it counts as
    /// neither failure nor success, while the call still backs off (and a `Retry-After` holds
    /// the endpoint) as before. Set it for a server whose 429s do mean it is overwhelmed.
    /// The policy's `breaker_count_429`, the file's `count_429` in `[….breaker]`.
    pub fn count_429(mut self, yes: bool) -> Self {
        self.config.named.add(bit::COUNT_429);
        self.config.count_429 = yes;
        self
    }

    /// Calls `f` on every state change, after the `tracing` event. Keep it quick: it runs on
    /// the request path. A panic in it does not reach the call that made the change, nor undo
    /// the change: it is logged at ERROR, once per breaker.
    pub fn on_state_change(mut self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.config.named.add(bit::ON_STATE_CHANGE);
        self.config.on_state_change = Some(Arc::new(f));
        self
    }

    /// Checks the settings against their ranges (see each setter); the error names the one
    /// that is wrong.
    pub fn build(self) -> Result<BreakerConfig, Error> {
        let mut c = self.config;
        c.open_for_max = match self.open_for_max {
            Some(max) => max,
            None => c.open_for_max.max(c.open_for),
        };
        bounds::RATE
            .check(c.failure_rate)
            .map_err(Error::refused("failure_rate"))?;
        bounds::RATE
            .check(c.slow_call_rate)
            .map_err(Error::refused("slow_call_rate"))?;
        match c.window {
            Window::Calls(calls) => {
                bounds::WINDOW_CALLS
                    .check(calls)
                    .map_err(Error::refused("window (calls)"))?;
            }
            Window::Time { length, buckets } => {
                bounds::time_window(length, buckets).map_err(Error::refused("window"))?;
            }
        }
        bounds::MIN_CALLS
            .check(c.min_calls)
            .map_err(Error::refused("min_calls"))?;
        if let Window::Calls(calls) = c.window
            && c.min_calls > calls
        {
            // The window never holds that many calls: the breaker could never open.
            return Err(Error::invalid_config(format!(
                "min_calls ({}) must not exceed the window's {calls} calls, or the breaker \
                 never opens",
                c.min_calls
            )));
        }
        if let Some(duration) = c.slow_call_duration {
            bounds::SLOW_CALL_DURATION
                .check(duration)
                .map_err(Error::refused("slow_call_duration"))?;
        }
        bounds::OPEN_DURATION
            .check(c.open_for)
            .map_err(Error::refused("open_for"))?;
        bounds::OPEN_DURATION
            .check(c.open_for_max)
            .map_err(Error::refused("open_for_max"))?;
        if c.open_for_max < c.open_for {
            return Err(Error::invalid_config(
                "open_for_max must not be below open_for",
            ));
        }
        bounds::HALF_OPEN_PROBES
            .check(c.half_open_probes)
            .map_err(Error::refused("half_open_probes"))?;
        bounds::MAX_BREAKERS
            .check(c.max_breakers as u64)
            .map_err(Error::refused("max_breakers"))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the named settings reach the default policy; what it cannot say (a time window
    /// here) goes to the client's config, and replaces a call window set before it.
    #[test]
    fn a_config_writes_the_settings_it_names() -> Result<(), Error> {
        assert_eq!(BreakerConfig::default().named, Named::default());
        let named = BreakerConfig::builder().min_calls(3).build()?;
        let again = named.to_builder().failure_rate(0.25).build()?;
        let mut default = EndpointPolicy::new()
            .breaker_enabled(false)
            .breaker_min_calls(5)
            .breaker_open_for(Duration::from_secs(9));
        let mut client = BreakerConfig::default();
        client.write_named(&again, &mut default);
        assert_eq!(default.breaker_enabled, Some(true));
        assert_eq!(default.breaker_min_calls, Some(3));
        assert_eq!(default.breaker_failure_rate, Some(0.25));
        assert_eq!(default.breaker_open_for, Some(Duration::from_secs(9)));
        assert_eq!(default.breaker_count_429, None);

        let time = Window::Time {
            length: Duration::from_secs(10),
            buckets: 10,
        };
        let timed = BreakerConfig::builder().window(time).build()?;
        let mut default = EndpointPolicy::new().breaker_window(50);
        client.write_named(&timed, &mut default);
        assert_eq!(default.breaker_window, None);
        assert_eq!(client.window, time);
        Ok(())
    }
}
