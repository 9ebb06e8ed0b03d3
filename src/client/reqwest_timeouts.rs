//! The timeouts a user gave their reqwest client or builder, read back so that the client
//! builder can honour them or refuse a second one (see `ClientBuilder`'s table: no silent
//! precedence). reqwest has no getters for them.

use std::time::Duration;

/// The timeouts a reqwest client or builder was given. reqwest has no getters, so they are
/// read from its `Debug`, which prints each one set; the tests pin the field names and the
/// format, so that a reqwest release that changes them fails a test rather than a user.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ReqwestTimeouts {
    pub(crate) timeout: Option<Duration>,
    pub(super) connect_timeout: Option<Duration>,
}

impl ReqwestTimeouts {
    /// A builder prints `timeout` and `connect_timeout` (not `read_timeout`, which needs no
    /// reading: it works under this crate as it does alone).
    pub(super) fn of_builder(builder: &reqwest::ClientBuilder) -> Self {
        let debug = format!("{builder:#?}");
        ReqwestTimeouts {
            timeout: debug_field(&debug, "timeout"),
            connect_timeout: debug_field(&debug, "connect_timeout"),
        }
    }

    /// A client prints its timeout under its type's name (and no connect timeout).
    pub(crate) fn of_client(client: &reqwest::Client) -> Self {
        let debug = format!("{client:#?}");
        ReqwestTimeouts {
            timeout: debug_field(&debug, "reqwest::config::TotalTimeout"),
            connect_timeout: None,
        }
    }
}

/// The duration a top-level field `name` of a struct's pretty `Debug` holds: its line reads
/// `    name: 1.5s,`. Nested fields are indented further, and header values, the only text
/// of the user's in it, are quoted and cannot hold a line break.
fn debug_field(debug: &str, name: &str) -> Option<Duration> {
    debug.lines().find_map(|line| {
        let value = line
            .strip_prefix("    ")?
            .strip_prefix(name)?
            .strip_prefix(": ")?;
        parse_debug_duration(value.strip_suffix(',').unwrap_or(value))
    })
}

/// A `Duration` as its `Debug` prints it: `1.5s`, `250ms`, `10µs`, `7ns`.
fn parse_debug_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let unit_nanos: u128 = match unit {
        "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "µs" => 1_000,
        "ns" => 1,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let mut nanos = whole.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in fraction.chars() {
        scale /= 10;
        nanos += u128::from(digit.to_digit(10)?) * scale;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    let subsec = u32::try_from(nanos % 1_000_000_000).ok()?;
    Some(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins what reqwest's `Debug` prints: a release that renames the fields or changes their
    /// format fails here, not in users' timeouts.
    #[test]
    fn reqwests_debug_shows_the_timeouts_it_was_given() -> Result<(), reqwest::Error> {
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(1500))
            .connect_timeout(Duration::from_micros(2500))
            .default_headers(http::HeaderMap::from_iter([(
                http::header::HeaderName::from_static("x-note"),
                http::HeaderValue::from_static("timeout: 9s,"),
            )]));
        let read = ReqwestTimeouts::of_builder(&builder);
        assert_eq!(read.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(read.connect_timeout, Some(Duration::from_micros(2500)));
        let client = builder.build()?;
        let read = ReqwestTimeouts::of_client(&client);
        assert_eq!(read.timeout, Some(Duration::from_millis(1500)));

        let plain = reqwest::Client::builder();
        assert_eq!(
            ReqwestTimeouts::of_builder(&plain),
            ReqwestTimeouts::default()
        );
        let plain = plain.build()?;
        assert_eq!(
            ReqwestTimeouts::of_client(&plain),
            ReqwestTimeouts::default()
        );
        Ok(())
    }

    #[test]
    fn durations_read_back_as_debug_prints_them() {
        let durations = [
            Duration::ZERO,
            Duration::from_nanos(7),
            Duration::from_micros(10),
            Duration::from_micros(1500),
            Duration::from_millis(250),
            Duration::from_secs(1),
            Duration::new(1, 1),
            Duration::from_secs(86_400),
            Duration::MAX,
        ];
        for duration in durations {
            let printed = format!("{duration:?}");
            assert_eq!(parse_debug_duration(&printed), Some(duration), "{printed}");
        }
        assert_eq!(parse_debug_duration("5 s"), None);
        assert_eq!(parse_debug_duration("5"), None);
    }
}
