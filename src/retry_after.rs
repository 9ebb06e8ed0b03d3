//! Parsing `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
//!
//! A malformed value is ignored (`None`): the caller falls back to its own backoff rather than
//! failing a request because a server sent a bad header. A date in the past means "now".
//! Capping absurd values is the retry policy's job; this only reads what the server asked for.
//! It sits on the ground floor: the error reads it from a response (`Error::retry_after`),
//! and the retry policy and the holds use what the error carries.

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
}

/// Property tests: `cargo test --lib retry_after::fuzz` runs a few thousand cases each;
/// `PROPTEST_CASES=1000000 cargo test --release --lib retry_after::fuzz` a million.
#[cfg(test)]
mod fuzz {
    use std::time::{Duration, SystemTime};

    use http::HeaderMap;
    use http::header::RETRY_AFTER;
    use proptest::prelude::*;

    use super::{parse, parse_value};

    fn config() -> ProptestConfig {
        crate::fuzzing::config(4_000)
    }

    /// The latest second an HTTP-date can name (`Fri, 31 Dec 9999 23:59:59 GMT`).
    const LAST_DATE: u64 = 253_402_300_799;
    const DAY_NAMES: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const LONG_DAY_NAMES: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// Year, month (1-12), day (1-31) of `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
    fn civil(days: u64) -> (u64, usize, u64) {
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        (year, month as usize, day)
    }

    /// `secs` after the epoch in the three forms RFC 9110 (5.6.7) makes recipients accept:
    /// IMF-fixdate, the obsolete RFC 850 form (two-digit year) and asctime.
    fn http_dates(secs: u64) -> [String; 3] {
        let days = secs / 86_400;
        let (year, month, day) = civil(days);
        let weekday = (days % 7) as usize;
        let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
        let month = MONTHS[month - 1];
        [
            format!(
                "{}, {day:02} {month} {year} {h:02}:{m:02}:{s:02} GMT",
                DAY_NAMES[weekday]
            ),
            format!(
                "{}, {day:02}-{month}-{:02} {h:02}:{m:02}:{s:02} GMT",
                LONG_DAY_NAMES[weekday],
                year % 100
            ),
            format!(
                "{} {month} {day:>2} {h:02}:{m:02}:{s:02} {year}",
                DAY_NAMES[weekday]
            ),
        ]
    }

    fn header(value: &str) -> Option<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().ok()?);
        Some(headers)
    }

    #[test]
    fn the_three_date_forms_of_the_rfc() {
        // RFC 9110's own example, in its three forms.
        assert_eq!(
            http_dates(784_111_777),
            [
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "Sunday, 06-Nov-94 08:49:37 GMT",
                "Sun Nov  6 08:49:37 1994",
            ]
        );
        assert_eq!(http_dates(LAST_DATE)[0], "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn never_panics_on_any_string(value in any::<String>()) {
            let now = SystemTime::now();
            let _ = parse_value(&value, now);
            let _ = parse_value(value.trim(), now);
        }

        #[test]
        fn never_panics_on_near_dates(
            value in "[A-Za-z]{0,9},? [0-9]{1,3}[ -][A-Za-z]{3}[ -][0-9]{1,5} [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}( GMT| UTC|)",
        ) {
            let _ = parse_value(&value, SystemTime::UNIX_EPOCH);
        }

        #[test]
        fn never_panics_on_any_header_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                let mut headers = HeaderMap::new();
                headers.insert(RETRY_AFTER, value);
                let _ = parse(&headers);
            }
        }

        /// Delta-seconds are read exactly, whatever their leading zeros and the optional
        /// whitespace around a header value; beyond `u64` they saturate (the retry policy's
        /// cap then decides).
        #[test]
        fn delta_seconds_are_that_many_seconds(
            secs in prop_oneof![any::<u64>(), 0..100_000u64, Just(u64::MAX)],
            zeros in 0..30usize,
            before in "[ \t]{0,3}",
            after in "[ \t]{0,3}",
        ) {
            let text = format!("{}{secs}", "0".repeat(zeros));
            let expected = Some(Duration::from_secs(secs));
            prop_assert_eq!(parse_value(&text, SystemTime::UNIX_EPOCH), expected);
            let headers = header(&format!("{before}{text}{after}")).expect("a valid header value");
            prop_assert_eq!(parse(&headers), expected);
        }

        #[test]
        fn delta_seconds_beyond_u64_saturate(digits in "[1-9][0-9]{20,60}") {
            let parsed = parse_value(&digits, SystemTime::UNIX_EPOCH);
            prop_assert_eq!(parsed, Some(Duration::from_secs(u64::MAX)));
        }

        /// Any date an HTTP-date can name, in any of its three forms, is read back as the
        /// time from `now` until then, or zero once it has passed.
        #[test]
        fn http_dates_round_trip(
            at in 0..=LAST_DATE,
            now in 0..=LAST_DATE,
            now_nanos in 0..1_000_000_000u32,
        ) {
            let now = SystemTime::UNIX_EPOCH + Duration::new(now, now_nanos);
            let target = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
            let expected = Some(target.duration_since(now).unwrap_or(Duration::ZERO));
            let [imf, rfc850, asctime] = http_dates(at);
            prop_assert_eq!(parse_value(&imf, now), expected, "{}", imf);
            prop_assert_eq!(httpdate::fmt_http_date(target), imf.clone());
            prop_assert_eq!(parse_value(&asctime, now), expected, "{}", asctime);
            // Two digits name a year from 1970 to 2069.
            if (1970..2070).contains(&civil(at / 86_400).0) {
                prop_assert_eq!(parse_value(&rfc850, now), expected, "{}", rfc850);
            }
        }
    }
}
