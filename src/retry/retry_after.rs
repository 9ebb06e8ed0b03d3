//! Parsing `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
//!
//! A malformed value is ignored (`None`): the caller falls back to its own backoff rather than
//! failing a request because a server sent a bad header. A date in the past means "now".
//! Capping absurd values is the retry policy's job; this only reads what the server asked for.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The delay asked for by the `Retry-After` header in `headers`, if it is valid.
pub(crate) fn parse(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_value(value, SystemTime::now())
}

fn parse_value(value: &str, now: SystemTime) -> Option<Duration> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Beyond u64 seconds is "forever": saturate so the cap, not an overflow, decides.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_value("0", now), Some(Duration::ZERO));
        assert_eq!(parse_value("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_value("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_value(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_value(&earlier, now), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_ignored() {
        let now = SystemTime::UNIX_EPOCH;
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Mon, 99 Foo 2020 00:00:00 GMT",
            "12 s",
        ] {
            assert_eq!(parse_value(bad, now), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_string(value in ".*") {
            let _ = parse_value(&value, SystemTime::now());
        }

        #[test]
        fn digits_always_parse_to_their_value_or_saturate(value in "[0-9]{1,40}") {
            let parsed = parse_value(&value, SystemTime::UNIX_EPOCH);
            let expected = value.parse::<u64>().unwrap_or(u64::MAX);
            proptest::prop_assert_eq!(parsed, Some(Duration::from_secs(expected)));
        }

        #[test]
        fn never_panics_on_any_header_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                let mut headers = HeaderMap::new();
                headers.insert(RETRY_AFTER, value);
                let _ = parse(&headers);
            }
        }
    }
}
