//! How a time limit is written in a request header, and read back: gRPC's `grpc-timeout`
//! (`TimeoutValue TimeoutUnit`: at most 8 ASCII digits, then `H`, `M`, `S`, `m`, `u` or `n`;
//! see gRPC's "gRPC over HTTP2" protocol document), or integer milliseconds (Envoy's
//! `x-envoy-expected-rq-timeout-ms` and most others). One place for both directions, so that
//! what the client sends is exactly what the server side reads.

use std::time::Duration;

use http::HeaderValue;

/// How a limit is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// gRPC's `grpc-timeout`.
    GrpcTimeout,
    /// Whole milliseconds.
    Millis,
}

/// The largest value gRPC's `TimeoutValue` holds: 8 digits.
const GRPC_MAX: u128 = 99_999_999;

/// `limit`, written as `format` says, rounded down (a server told less than the caller allows
/// stops early, never late). `None` when that is zero: a request with no time left is not
/// sent. A limit too long for 8 digits of gRPC's coarsest unit is written as that maximum.
pub(crate) fn encode(limit: Duration, format: Format) -> Option<HeaderValue> {
    let value = match format {
        Format::Millis => {
            let millis = limit.as_millis();
            if millis == 0 {
                return None;
            }
            HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX))
        }
        Format::GrpcTimeout => {
            // The finest unit whose count fits in 8 digits keeps the most precision.
            let nanos = limit.as_nanos();
            if nanos == 0 {
                return None;
            }
            let units: [(u128, &str); 6] = [
                (1, "n"),
                (1_000, "u"),
                (1_000_000, "m"),
                (1_000_000_000, "S"),
                (60_000_000_000, "M"),
                (3_600_000_000_000, "H"),
            ];
            let (count, unit) = units
                .iter()
                .map(|&(size, unit)| (nanos / size, unit))
                .find(|&(count, _)| count <= GRPC_MAX)
                .unwrap_or((GRPC_MAX, "H"));
            // The nanosecond count of a non-zero limit is at least 1, so `count` is too.
            let text = format!("{count}{unit}");
            HeaderValue::from_str(&text).ok()?
        }
    };
    Some(value)
}

/// The limit `value` says, read as `format`; `None` when it is malformed (not ASCII digits,
/// more than 8 digits for gRPC, an unknown unit).
pub(crate) fn decode(value: &HeaderValue, format: Format) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    match format {
        Format::Millis => {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse::<u64>().ok().map(Duration::from_millis)
        }
        Format::GrpcTimeout => {
            let split = text.len().checked_sub(1)?;
            let (digits, unit) = (text.get(..split)?, text.get(split..)?);
            if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let count: u64 = digits.parse().ok()?;
            Some(match unit {
                "H" => Duration::from_secs(count.checked_mul(3600)?),
                "M" => Duration::from_secs(count.checked_mul(60)?),
                "S" => Duration::from_secs(count),
                "m" => Duration::from_millis(count),
                "u" => Duration::from_micros(count),
                "n" => Duration::from_nanos(count),
                _ => return None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(limit: Duration, format: Format) -> Option<String> {
        encode(limit, format).and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    #[test]
    fn grpc_timeout_keeps_the_finest_unit_that_fits_and_rounds_down() {
        assert_eq!(
            text(Duration::from_millis(450), Format::GrpcTimeout).as_deref(),
            Some("450000u")
        );
        assert_eq!(
            text(Duration::from_nanos(1), Format::GrpcTimeout).as_deref(),
            Some("1n")
        );
        assert_eq!(
            text(Duration::from_secs(2), Format::GrpcTimeout).as_deref(),
            Some("2000000u")
        );
        assert_eq!(
            text(Duration::from_secs(1000), Format::GrpcTimeout).as_deref(),
            Some("1000000m")
        );
        assert_eq!(
            text(Duration::from_secs(u64::MAX), Format::GrpcTimeout).as_deref(),
            Some("99999999H")
        );
        assert_eq!(text(Duration::ZERO, Format::GrpcTimeout), None);
    }

    #[test]
    fn millis_round_down_and_zero_is_not_sent() {
        assert_eq!(
            text(Duration::from_micros(1999), Format::Millis).as_deref(),
            Some("1")
        );
        assert_eq!(text(Duration::from_micros(999), Format::Millis), None);
    }

    #[test]
    fn what_is_written_reads_back_within_its_unit() {
        for limit in [1, 999, 1000, 450_000, 2_000_000, 99_999_999_999u64] {
            let limit = Duration::from_micros(limit);
            for format in [Format::GrpcTimeout, Format::Millis] {
                if let Some(value) = encode(limit, format) {
                    let back = decode(&value, format);
                    assert!(back.is_some_and(|b| b <= limit), "{limit:?} {format:?}");
                }
            }
        }
    }

    #[test]
    fn malformed_values_read_as_nothing() {
        for bad in ["", "m", "123456789m", "12x", "-5m", "1.5S", "abc"] {
            let value = HeaderValue::from_static(bad);
            assert_eq!(decode(&value, Format::GrpcTimeout), None, "{bad:?}");
        }
        for bad in ["", "1.5", "-1", "12ms", "99999999999999999999999"] {
            let value = HeaderValue::from_static(bad);
            assert_eq!(decode(&value, Format::Millis), None, "{bad:?}");
        }
        let ok = HeaderValue::from_static("250m");
        assert_eq!(
            decode(&ok, Format::GrpcTimeout),
            Some(Duration::from_millis(250))
        );
    }
}
