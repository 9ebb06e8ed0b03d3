//! The range of every numeric setting, checked here and nowhere else.
//!
//! The builders ([`BreakerConfigBuilder`](crate::breaker::BreakerConfigBuilder),
//! [`RetryPolicyBuilder`](crate::retry::RetryPolicyBuilder), the client builder through
//! [`EndpointPolicy`](crate::policy::EndpointPolicy)) and the policy file all ask these
//! ranges, so a value is accepted or refused the same way whichever way it came in; only how
//! the refusal is located differs (a setting's name, or a file, line and key).
//!
//! On the ground floor: the configs import their ranges, not the other way round. A setting
//! made of several numbers (a rate limit, a bulkhead, a hedging policy, a retry budget) is
//! checked part by part by its own type ([`Parts`]), against the ranges here; a refusal
//! becomes an error in `error.rs` (`Error::refused`).
//!
//! Why maxima at all: a setting is an input, and each of these either sizes an allocation, a
//! loop, or a timer. A window of 4 000 000 000 calls aborted the process on its first request;
//! one of 50 000 000 made every failure take seconds. The maxima are far above any sensible
//! value and far below where memory, time or arithmetic go wrong.

use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A whole number between `min` and `max`, both included.
pub(crate) struct Count {
    pub(crate) min: u64,
    pub(crate) max: u64,
}

/// A duration above zero (or from zero, when `zero_ok`) up to `max`, included.
pub(crate) struct Span {
    pub(crate) zero_ok: bool,
    pub(crate) max: Duration,
}

/// A duration from `min` up to `max`, both included: a [`Span`] whose least value is not 0.
pub(crate) struct SpanFrom {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

/// A number above `min` (or from it, when `min_included`) up to `max`, included.
pub(crate) struct Real {
    pub(crate) min: f64,
    pub(crate) min_included: bool,
    pub(crate) max: f64,
}

/// Attempts in all, the first included: more than 100 is a loop, not a retry policy.
pub(crate) const ATTEMPTS: Count = Count { min: 1, max: 100 };
/// Attempt timeout, total deadline, connect timeout: at most a day.
pub(crate) const TIMEOUT: Span = Span {
    zero_ok: false,
    max: DAY,
};
/// The longest `Retry-After` obeyed: at most a day (a deadline bounds it anyway).
pub(crate) const RETRY_AFTER_CAP: Span = Span {
    zero_ok: true,
    max: DAY,
};
/// Backoff base and cap: at most an hour between two attempts.
pub(crate) const BACKOFF_DELAY: Span = Span {
    zero_ok: true,
    max: HOUR,
};
/// Backoff growth per retry: from 1 (constant) to 100 (the cap is reached at once anyway).
pub(crate) const BACKOFF_MULTIPLIER: Real = Real {
    min: 1.0,
    min_included: true,
    max: 100.0,
};
/// Bytes of a body read inside an attempt: it is held in memory, so at most 1 GiB.
pub(crate) const BODY_LIMIT: Count = Count {
    min: 1,
    max: 1 << 30,
};
/// Bytes of a streaming request body kept for a retry (0: none): held in memory while the
/// request is sent, by every call in flight, so at most 16 MiB.
pub(crate) const REPLAY_BUFFER: Count = Count {
    min: 0,
    max: 16 << 20,
};
/// Entries in a list of retried statuses: there are 500 status codes.
const STATUS_LIST: Count = Count { min: 0, max: 500 };
/// One HTTP status code.
const STATUS: Count = Count { min: 100, max: 599 };
/// A list of retried statuses: at most [`STATUS_LIST`] entries, each a [`STATUS`].
pub(crate) const STATUSES: Statuses = Statuses;

/// See [`STATUSES`].
pub(crate) struct Statuses;
/// Calls in a breaker's call window. Its memory does not grow with it (at most 19 buckets),
/// but a bucket counts up to `n / 10` calls, and no useful window is larger.
pub(crate) const WINDOW_CALLS: Count = Count {
    min: 1,
    max: 10_000,
};
/// The length of a breaker's time window.
pub(crate) const WINDOW_LENGTH: Span = Span {
    zero_ok: false,
    max: HOUR,
};
/// Buckets of a time window: each thread's stripe holds them all (24 bytes each, rounded up
/// to a power of two), and every failure adds them up.
pub(crate) const WINDOW_BUCKETS: Count = Count { min: 1, max: 100 };
/// The shortest bucket of a time window.
pub(crate) const MIN_BUCKET: Duration = Duration::from_millis(1);
/// Fewest calls before a breaker may open (and, for a call window, at most its size).
pub(crate) const MIN_CALLS: Count = Count {
    min: 1,
    max: WINDOW_CALLS.max,
};
/// Failure and slow-call rates.
pub(crate) const RATE: Real = Real {
    min: 0.0,
    min_included: false,
    max: 1.0,
};
/// How long a call must take to count as slow: no attempt outlives a day.
pub(crate) const SLOW_CALL_DURATION: Span = TIMEOUT;
/// How long a breaker stays open, the first time and at most: an hour.
pub(crate) const OPEN_DURATION: Span = Span {
    zero_ok: false,
    max: HOUR,
};
/// Trial calls in half-open: the breaker's state word counts them in 10 bits.
pub(crate) const HALF_OPEN_PROBES: Count = Count { min: 1, max: 1023 };
/// Endpoints with a breaker (and breaker metric series) per registry; adding one copies the
/// registry's map.
pub(crate) const MAX_BREAKERS: Count = Count {
    min: 1,
    max: 100_000,
};

/// Requests per `per` of a client-side rate limit. Its interval, `per / rate`, is at least
/// 1 ns within these ranges (1,000,000 per millisecond) and counts as 1 ns below that.
pub(crate) const REQUEST_RATE: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// The span a rate limit's `rate` applies to.
pub(crate) const RATE_PER: Span = Span {
    zero_ok: false,
    max: HOUR,
};
/// Requests a rate limit lets out at once. With the longest interval (an hour) its
/// tolerance, `(burst - 1) × interval`, is about 3.6e18 ns: within a u64 of nanoseconds.
pub(crate) const BURST: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// A rate limit's settings, each in its range.
pub(crate) const RATE_LIMIT: EachPart = EachPart;
/// Calls at once through a bulkhead (a `u32` count, far from overflow).
pub(crate) const MAX_IN_FLIGHT: Count = Count {
    min: 1,
    max: 100_000,
};
/// How long a call may queue at a bulkhead; zero: it fails at once.
pub(crate) const QUEUE_TIMEOUT: Span = Span {
    zero_ok: true,
    max: HOUR,
};
/// A bulkhead's settings, each in its range.
pub(crate) const BULKHEAD: EachPart = EachPart;

/// How long an attempt goes unanswered before a hedge is sent.
pub(crate) const HEDGE_AFTER: Span = Span {
    zero_ok: false,
    max: HOUR,
};
/// Hedges per call: each is a whole extra request, so a few at most (0: none).
pub(crate) const HEDGES: Count = Count { min: 0, max: 3 };
/// A hedging policy's settings, each in its range.
pub(crate) const HEDGE: EachPart = EachPart;
/// Following a server's quota: no numbers, but header names given to a builder that cannot
/// refuse them (as reqwest's), checked here with the other settings.
pub(crate) const SERVER_QUOTA: EachPart = EachPart;
/// An adaptive concurrency limit's `initial`, `min` and `max`: places, as a bulkhead's.
pub(crate) const ADAPTIVE_LIMIT: Count = MAX_IN_FLIGHT;
/// Gradient2's `smoothing`: the share of the way to its target the limit moves per sample.
pub(crate) const SMOOTHING: Real = Real {
    min: 0.0,
    min_included: false,
    max: 1.0,
};
/// Gradient2's `rtt_tolerance`: below 1 the limit would shrink at a steady latency; past 10
/// it would never see a queue.
pub(crate) const RTT_TOLERANCE: Real = Real {
    min: 1.0,
    min_included: true,
    max: 10.0,
};
/// Gradient2's `long_window`, in samples (its average's weight is `2 / (n + 1)`).
pub(crate) const LONG_WINDOW: Count = Count {
    min: 1,
    max: 100_000,
};
/// AIMD's `backoff_ratio`: Netflix's range (below a half, one drop undoes most of the limit;
/// at 1, drops do nothing).
pub(crate) const BACKOFF_RATIO: Real = Real {
    min: 0.5,
    min_included: true,
    max: 0.99,
};
/// AIMD's `timeout`: an answer slower than it counts as a drop.
pub(crate) const LIMIT_TIMEOUT: Span = TIMEOUT;
/// An adaptive concurrency limit: each part's range is checked by its type.
pub(crate) const ADAPTIVE_CONCURRENCY: EachPart = EachPart;
/// Client-side throttling: each part's range is checked by its type.
pub(crate) const THROTTLE: EachPart = EachPart;
/// Client-side throttling's K, requests the dependency may see per accept: from 1 (below
/// it, a dependency that rejects nothing could be throttled) to 10 (above it, throttling
/// does next to nothing: the book's K is 2).
pub(crate) const THROTTLE_K: Real = Real {
    min: 1.0,
    min_included: true,
    max: 10.0,
};
/// How far back client-side throttling counts: from 1 s (10 steps of 100 ms; shorter, a
/// few answers decide) to an hour (the book's 2 minutes is the default).
pub(crate) const THROTTLE_WINDOW: SpanFrom = SpanFrom {
    min: Duration::from_secs(1),
    max: HOUR,
};

/// The margin a propagated deadline leaves for the request's way to the server and the
/// answer's way back (`propagate_deadline_margin`): zero (gRPC's own choice) to a minute,
/// far above any network's round trip.
pub(crate) const DEADLINE_MARGIN: Span = Span {
    zero_ok: true,
    max: Duration::from_secs(60),
};
/// The header a deadline is propagated in: a header name, checked by its own type.
pub(crate) const DEADLINE_HEADER: EachPart = EachPart;

/// A setting made of several numbers, each with its range here: its type checks them (beside
/// its fields), so that this file need not import the configs it bounds.
pub(crate) trait Parts: Sized {
    /// `self` if each part is in range; else why not, naming the first part that is not.
    fn check_parts(self) -> Result<Self, String>;
}

/// The range of a setting made of [`Parts`], as the settings table names it (`within
/// bounds::RATE_LIMIT`): each part in its own.
pub(crate) struct EachPart;

/// The share of first attempts a retry budget lets retries add: 0 (its `min_per_second`
/// alone) to 1 (a retry per first attempt).
pub(crate) const BUDGET_RATIO: Real = Real {
    min: 0.0,
    min_included: true,
    max: 1.0,
};
/// Retries a second a retry budget allows whatever the traffic. Over the longest window the
/// reserve is at most 3.6e9 retries (3.6e15 millionths, far within a u64).
pub(crate) const MIN_PER_SECOND: Count = Count {
    min: 0,
    max: 1_000_000,
};
/// How far back a retry budget counts: at least [`BUDGET_BUCKETS`] steps of [`MIN_BUCKET`]
/// (10 ms), at most an hour. One range, stated the same way for the file and the builders
/// (the file once said "above zero" and the builder "10 ms"; the guide's ranges say 10 ms to 1 h).
pub(crate) const BUDGET_WINDOW: SpanFrom = SpanFrom {
    min: MIN_BUCKET.saturating_mul(BUDGET_BUCKETS),
    max: HOUR,
};
/// A retry budget's window slides in this many steps.
pub(crate) const BUDGET_BUCKETS: u32 = 10;
/// A retry budget's settings, each in its range.
pub(crate) const BUDGET: EachPart = EachPart;

/// The longest a Redis call of the fleet may take: at most 10 s (a call waits for it at
/// most once, when its rate limit's lease is refilled: seconds would be felt).
#[cfg_attr(not(any(feature = "redis", feature = "config")), allow(dead_code))]
pub(crate) const REDIS_TIMEOUT: Span = Span {
    zero_ok: false,
    max: Duration::from_secs(10),
};
/// How often the fleet syncs holds and budgets with Redis: at most a minute.
#[cfg_attr(not(any(feature = "redis", feature = "config")), allow(dead_code))]
pub(crate) const REDIS_SYNC_INTERVAL: Span = Span {
    zero_ok: false,
    max: Duration::from_secs(60),
};
/// The fleet's key prefix, in bytes: it is written into every key.
const REDIS_PREFIX: Count = Count { min: 0, max: 256 };

/// Why the fleet's key `prefix` is refused, if it is (see [`REDIS_PREFIX`]).
#[cfg_attr(not(any(feature = "redis", feature = "config")), allow(dead_code))]
pub(crate) fn redis_prefix(prefix: &str) -> Result<(), String> {
    let bytes = u64::try_from(prefix.len()).unwrap_or(u64::MAX);
    REDIS_PREFIX
        .check(bytes)
        .map(|_| ())
        .map_err(|why| format!("{why} bytes"))
}

/// "must be at least 1 and at most 100, got 0": what every refusal says, after the name.
fn refusal(low: String, high: String, got: String) -> String {
    format!("must be {low} and at most {high}, got {got}")
}

impl Count {
    /// `value` if it is in range; else why not. Takes any integer, so a negative number from
    /// a file is refused with the same words as one too large.
    pub(crate) fn check<T: Copy + Into<i128> + std::fmt::Display>(
        &self,
        value: T,
    ) -> Result<T, String> {
        let wide: i128 = value.into();
        if wide >= i128::from(self.min) && wide <= i128::from(self.max) {
            Ok(value)
        } else {
            Err(refusal(
                format!("at least {}", self.min),
                self.max.to_string(),
                value.to_string(),
            ))
        }
    }
}

impl Span {
    /// `value` if it is in range; else why not.
    pub(crate) fn check(&self, value: Duration) -> Result<Duration, String> {
        if (self.zero_ok || !value.is_zero()) && value <= self.max {
            Ok(value)
        } else {
            let low = if self.zero_ok {
                "at least zero"
            } else {
                "above zero"
            };
            Err(refusal(low.into(), show(self.max), show(value)))
        }
    }
}

impl SpanFrom {
    /// `value` if it is in range; else why not.
    pub(crate) fn check(&self, value: Duration) -> Result<Duration, String> {
        if value >= self.min && value <= self.max {
            Ok(value)
        } else {
            let low = format!("at least {}", show(self.min));
            Err(refusal(low, show(self.max), show(value)))
        }
    }
}

impl Real {
    /// `value` if it is in range (NaN never is); else why not.
    pub(crate) fn check(&self, value: f64) -> Result<f64, String> {
        let above = if self.min_included {
            value >= self.min
        } else {
            value > self.min
        };
        if above && value <= self.max {
            Ok(value)
        } else {
            let low = if self.min_included {
                format!("at least {}", self.min)
            } else {
                format!("above {}", self.min)
            };
            Err(refusal(low, self.max.to_string(), value.to_string()))
        }
    }
}

/// A duration as the policy file writes it: `1h`, `250ms`, `1day 2h` (humantime's units, so
/// the file reads it back; written here so that builds without the `config` feature, and so
/// without humantime, say it the same way).
pub(crate) fn show(value: Duration) -> String {
    let (secs, nanos) = (value.as_secs(), u64::from(value.subsec_nanos()));
    let days = secs / 86_400;
    let parts = [
        (days, if days > 1 { "days" } else { "day" }),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (nanos / 1_000_000, "ms"),
        (nanos / 1000 % 1000, "us"),
        (nanos % 1000, "ns"),
    ];
    let shown: Vec<String> = (parts.iter())
        .filter(|(count, _)| *count > 0)
        .map(|(count, unit)| format!("{count}{unit}"))
        .collect();
    if shown.is_empty() {
        "0s".to_owned()
    } else {
        shown.join(" ")
    }
}

impl Statuses {
    /// `list` if its length, then each code, is in range; else why not.
    pub(crate) fn check(&self, list: Vec<u16>) -> Result<Vec<u16>, String> {
        STATUS_LIST
            .check(list.len() as u64)
            .map_err(|e| format!("holds too many entries: {e}"))?;
        match list.iter().find(|code| STATUS.check(**code).is_err()) {
            Some(code) => Err(format!("{code} is not an HTTP status")),
            None => Ok(list),
        }
    }
}

impl EachPart {
    /// `value` if each of its parts is in range; else why not.
    pub(crate) fn check<T: Parts>(&self, value: T) -> Result<T, String> {
        value.check_parts()
    }
}

/// Checks a time window: its length, its buckets, and that each bucket is at least 1 ms.
pub(crate) fn time_window(length: Duration, buckets: u32) -> Result<(), String> {
    WINDOW_LENGTH
        .check(length)
        .map_err(|e| format!("length {e}"))?;
    WINDOW_BUCKETS
        .check(buckets)
        .map_err(|e| format!("buckets {e}"))?;
    if length < MIN_BUCKET * buckets {
        return Err(format!(
            "buckets must be at least {} each, got {buckets} buckets in {}",
            show(MIN_BUCKET),
            show(length)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_the_units_the_file_reads() {
        let cases = [
            (Duration::ZERO, "0s"),
            (DAY, "1day"),
            (
                DAY + HOUR + Duration::from_millis(61_001),
                "1day 1h 1m 1s 1ms",
            ),
            (DAY * 400, "400days"),
            (Duration::from_nanos(1_002_003), "1ms 2us 3ns"),
        ];
        for (value, shown) in cases {
            assert_eq!(show(value), shown);
            #[cfg(feature = "config")]
            assert_eq!(humantime::parse_duration(shown).ok(), Some(value));
        }
    }

    #[test]
    fn refusals_say_the_range_and_the_value() {
        assert_eq!(
            WINDOW_CALLS.check(4_000_000_000u32).unwrap_err(),
            "must be at least 1 and at most 10000, got 4000000000"
        );
        assert_eq!(
            ATTEMPTS.check(-5i64).unwrap_err(),
            "must be at least 1 and at most 100, got -5"
        );
        assert_eq!(
            TIMEOUT.check(Duration::ZERO).unwrap_err(),
            "must be above zero and at most 1day, got 0s"
        );
        assert_eq!(
            RATE.check(1.5).unwrap_err(),
            "must be above 0 and at most 1, got 1.5"
        );
        assert!(RATE.check(f64::NAN).is_err());
        assert!(BACKOFF_MULTIPLIER.check(f64::INFINITY).is_err());
        assert_eq!(WINDOW_CALLS.check(10_000u32), Ok(10_000));
        assert_eq!(OPEN_DURATION.check(HOUR), Ok(HOUR));
    }

    #[test]
    fn rate_limits_and_bulkheads_are_bounded_and_name_the_setting() {
        use crate::overload::bulkhead::BulkheadConfig;
        use crate::overload::rate::RateLimitConfig;

        let fastest = RateLimitConfig::new(1_000_000, Duration::from_nanos(1)).burst(1_000_000);
        assert_eq!(RATE_LIMIT.check(fastest), Ok(fastest));
        let slowest = RateLimitConfig::new(1, HOUR).burst(1_000_000);
        assert_eq!(RATE_LIMIT.check(slowest), Ok(slowest));
        assert_eq!(
            RATE_LIMIT
                .check(RateLimitConfig::new(0, Duration::from_secs(1)))
                .unwrap_err(),
            "rate must be at least 1 and at most 1000000, got 0"
        );
        assert_eq!(
            RATE_LIMIT
                .check(RateLimitConfig::new(1, Duration::ZERO))
                .unwrap_err(),
            "per must be above zero and at most 1h, got 0s"
        );
        assert!(RATE_LIMIT.check(RateLimitConfig::new(1, HOUR * 2)).is_err());
        assert!(REQUEST_RATE.check(1_000_001u32).is_err());
        assert_eq!(
            RATE_LIMIT
                .check(RateLimitConfig::new(1, HOUR).burst(0))
                .unwrap_err(),
            "burst must be at least 1 and at most 1000000, got 0"
        );
        assert!(BURST.check(1_000_001u32).is_err());

        assert_eq!(
            BULKHEAD.check(BulkheadConfig::new(100_000, HOUR)),
            Ok(BulkheadConfig::new(100_000, HOUR))
        );
        assert!(
            BULKHEAD
                .check(BulkheadConfig::new(1, Duration::ZERO))
                .is_ok()
        );
        assert_eq!(
            BULKHEAD
                .check(BulkheadConfig::new(0, Duration::ZERO))
                .unwrap_err(),
            "max_in_flight must be at least 1 and at most 100000, got 0"
        );
        assert!(MAX_IN_FLIGHT.check(100_001u32).is_err());
        assert_eq!(
            BULKHEAD
                .check(BulkheadConfig::new(1, HOUR + Duration::from_millis(1)))
                .unwrap_err(),
            "queue_timeout must be at least zero and at most 1h, got 1h 1ms"
        );
    }

    #[test]
    fn retry_budgets_are_bounded_and_name_the_setting() {
        use crate::retry::BudgetConfig;

        let ms = Duration::from_millis;
        for fine in [
            BudgetConfig::default(),
            BudgetConfig::new(0.0, 10, ms(10)),
            BudgetConfig::new(1.0, 0, HOUR),
            BudgetConfig::new(0.0, 1_000_000, HOUR),
        ] {
            assert_eq!(BUDGET.check(fine), Ok(fine));
        }
        let refusal = |ratio, min, window| BUDGET.check(BudgetConfig::new(ratio, min, window));
        assert_eq!(
            refusal(1.5, 10, HOUR).unwrap_err(),
            "ratio must be at least 0 and at most 1, got 1.5"
        );
        assert!(refusal(-0.1, 10, HOUR).is_err());
        assert!(refusal(f64::NAN, 10, HOUR).is_err());
        assert_eq!(
            refusal(0.2, 1_000_001, HOUR).unwrap_err(),
            "min_per_second must be at least 0 and at most 1000000, got 1000001"
        );
        // One range, 10 ms (10 steps of 1 ms) to 1 h, said the same way below and above it.
        assert_eq!(
            refusal(0.2, 10, Duration::ZERO).unwrap_err(),
            "window must be at least 10ms and at most 1h, got 0s"
        );
        assert!(refusal(0.2, 10, HOUR + ms(1)).is_err());
        assert_eq!(
            refusal(0.2, 10, ms(9)).unwrap_err(),
            "window must be at least 10ms and at most 1h, got 9ms"
        );
        assert_eq!(BUDGET_WINDOW.min, MIN_BUCKET * BUDGET_BUCKETS);
    }

    #[test]
    fn time_windows_are_bounded_in_length_buckets_and_bucket_size() {
        assert!(time_window(HOUR, 100).is_ok());
        assert!(time_window(HOUR + Duration::from_millis(1), 10).is_err());
        assert!(time_window(HOUR, 101).is_err());
        assert!(time_window(Duration::from_millis(9), 10).is_err());
        assert!(time_window(Duration::ZERO, 1).is_err());
    }
}
