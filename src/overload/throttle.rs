//! Client-side adaptive throttling (Google SRE book, "Handling Overload"), and request
//! criticality.
//!
//! SKELETON (issue 26): the types and the guard's interface; the window and the rule are
//! filled in by the throttle work.
//!
//! Each scope counts, over a sliding window, the *requests* the application asked for
//! (those throttled here included) and the *accepts*: the attempts its dependency answered
//! without rejecting them for overload (see [`Answer`](super::pass::Answer)). An attempt is
//! throttled locally with probability `max(0, (requests − K × accepts) / (requests + 1))`,
//! so that in steady state the dependency sees about K times what it accepts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds;

/// Client-side adaptive throttling for a policy's scope (file: `[….throttle]`; the policy's
/// [`throttle`](crate::policy::EndpointPolicy::throttle)). Off by default.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::overload::ThrottleConfig;
///
/// let throttle = ThrottleConfig::new().k(2.0).window(Duration::from_secs(120));
/// # let _ = throttle;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// How many requests per accept the dependency may see before the client throttles
    /// (default 2.0).
    pub k: f64,
    /// The sliding window requests and accepts are counted over (default 2 minutes).
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            k: 2.0,
            window: Duration::from_secs(120),
        }
    }
}

impl ThrottleConfig {
    /// K = 2, over 2 minutes (the SRE book's).
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the dependency may see per request it accepts, before the client throttles.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The sliding window requests and accepts are counted over.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
}

/// Each part within its range in `bounds.rs`.
impl bounds::Parts for ThrottleConfig {
    fn check_parts(self) -> Result<Self, String> {
        // SKELETON: ranges are the surface work's.
        Ok(self)
    }
}

/// How much a request matters when its dependency is overloaded: sheddable work is throttled
/// first, critical work last (per request
/// [`RequestBuilder::criticality`](crate::RequestBuilder::criticality), per policy
/// [`criticality`](crate::policy::EndpointPolicy::criticality); file: `criticality = ".."`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Criticality {
    /// Work the caller cannot do without: throttled last.
    Critical,
    /// Everything else (the default).
    #[default]
    Default,
    /// Work that may be dropped under overload (prefetches, analytics): throttled first.
    Sheddable,
}

impl Criticality {
    /// `critical`, `default` or `sheddable`: the name in files, spans, metrics and the probe.
    pub const fn as_str(self) -> &'static str {
        match self {
            Criticality::Critical => "critical",
            Criticality::Default => "default",
            Criticality::Sheddable => "sheddable",
        }
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Criticality {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "critical" => Ok(Criticality::Critical),
            "default" => Ok(Criticality::Default),
            "sheddable" => Ok(Criticality::Sheddable),
            _ => Err(format!(
                "unknown criticality {name:?}: expected \"critical\", \"default\" or \"sheddable\""
            )),
        }
    }
}

/// One scope's throttle: its window of requests and accepts.
#[derive(Debug)]
pub(crate) struct Throttle {
    #[allow(dead_code)]
    config: ThrottleConfig,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Throttle { config }
    }

    /// May an attempt of `criticality` go at `now`? `Err` with the rejection probability
    /// when it is throttled (counted as a request, never an accept).
    pub(crate) fn admit(&self, _now: Instant, _criticality: Criticality) -> Result<(), f64> {
        // SKELETON: never throttles.
        Ok(())
    }

    /// An attempt let out ended at `now`: `accepted` if its dependency answered it without
    /// rejecting it for overload.
    pub(crate) fn record(&self, _now: Instant, _accepted: bool) {}

    /// The probability an attempt of `criticality` is throttled at `now`.
    pub(crate) fn probability(&self, _now: Instant, _criticality: Criticality) -> f64 {
        0.0
    }

    /// The window's (requests, accepts) at `now`: what the rule reads, for the handle and
    /// tests.
    pub(crate) fn counts(&self, _now: Instant) -> (u64, u64) {
        (0, 0)
    }

    /// Whether the window still holds counts that would throttle (asked when the map of
    /// endpoints is full).
    pub(crate) fn busy(&self, _now: Instant) -> bool {
        false
    }
}
