//! The fleet's settings and their ranges (checked once, here, for the builder and, in time,
//! the policy file's `[redis]` table).

use std::time::Duration;

use crate::bounds;
use crate::error::Error;

/// How a [`Fleet`](super::Fleet) reaches its Redis.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::fleet::FleetConfig;
///
/// let config = FleetConfig::new("redis://10.0.0.7:6379/2")
///     .prefix("checkout:")
///     .timeout(Duration::from_millis(10));
/// assert_eq!(config.sync_interval, Duration::from_millis(100));
/// ```
///
/// Ranges: `url` a `redis://` or `unix://` URL (`rediss://` needs TLS, which this build of
/// the `redis` crate has not); `prefix` at most 256 bytes; `timeout` above zero, at most 10 s;
/// `sync_interval` above zero, at most a minute. Checked by [`Fleet::new`](super::Fleet::new),
/// and by the policy file's `[redis]` table, with the same ranges.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path/to/socket`. Never shown
    /// in errors or logs.
    pub url: String,
    /// Put before every key this fleet writes (`resilient-http:` by default), so that
    /// several services, or several environments, can share one Redis.
    pub prefix: String,
    /// The longest any Redis call may take (20 ms by default); past it the call is
    /// abandoned and the fleet uses local limits until Redis answers again.
    pub timeout: Duration,
    /// How often holds and budgets are synchronised with Redis (100 ms by default): how
    /// stale another replica's hold or spending may be (see the [module docs](super)).
    pub sync_interval: Duration,
}

impl FleetConfig {
    /// The defaults, with the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        FleetConfig {
            url: url.into(),
            prefix: "resilient-http:".to_owned(),
            timeout: Duration::from_millis(20),
            sync_interval: Duration::from_millis(100),
        }
    }

    /// Puts `prefix` before every key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest a Redis call may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often holds and budgets are synchronised.
    pub fn sync_interval(mut self, every: Duration) -> Self {
        self.sync_interval = every;
        self
    }

    /// The Redis client for `url`, if every setting is in range; else an
    /// [`InvalidConfig`](crate::ErrorKind::InvalidConfig) error naming the setting (and never
    /// showing the URL, which may hold a password).
    pub(crate) fn check(&self) -> Result<redis::Client, Error> {
        let refused =
            |name: &str, why: String| Error::invalid_config(format!("redis {name} {why}"));
        (bounds::REDIS_TIMEOUT.check(self.timeout)).map_err(|why| refused("timeout", why))?;
        (bounds::REDIS_SYNC_INTERVAL.check(self.sync_interval))
            .map_err(|why| refused("sync_interval", why))?;
        bounds::redis_prefix(&self.prefix).map_err(|why| refused("prefix", why))?;
        client(&self.url).map_err(|why| refused("url", why))
    }

    /// The URL without its secrets, for `Debug`: user info, and the `pass` a `unix://` URL
    /// carries in its query (redacted as every URL the crate shows).
    fn shown_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(url) => crate::redact::url(&url).to_string(),
            Err(_) => "(not a URL)".to_owned(),
        }
    }
}

/// Why `url` is not a Redis URL this build can use, in words that never show it; the one
/// check for the builder and the policy file.
#[cfg(feature = "config")] // its one caller is the policy file
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    client(url).map(|_| ())
}

fn client(url: &str) -> Result<redis::Client, String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("redis" | "unix" | "redis+unix")) {
        return Err(
            "must start with redis:// or unix:// (rediss:// needs TLS, not built in)".to_owned(),
        );
    }
    // The redis crate's own words, redacted: its errors name the part it could not parse,
    // never the password, but that is not left to chance.
    redis::Client::open(url).map_err(|e| {
        format!(
            "is not a Redis URL: {}",
            crate::redact::text(&e.to_string())
        )
    })
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("url", &self.shown_url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("sync_interval", &self.sync_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn refusal(config: FleetConfig) -> String {
        let err = config.check().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        err.to_string()
    }

    #[test]
    fn good_urls_pass() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:pw@cache.internal:6380/3",
            "redis://user:pw@cache.internal",
            "unix:///run/redis.sock",
        ] {
            assert!(FleetConfig::new(url).check().is_ok(), "{url}");
        }
    }

    #[test]
    fn a_bad_url_is_invalid_config_and_never_shows_the_password() {
        for url in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "rediss://:hunter2@cache:6379",
            "redis://:hunter2@cache:port",
            "redis://:hunter2@/",
        ] {
            let shown = refusal(FleetConfig::new(url));
            assert!(shown.contains("redis url"), "{url}: {shown}");
            assert!(!shown.contains("hunter2"), "{url}: {shown}");
        }
        let debug = format!("{:?}", FleetConfig::new("redis://app:hunter2@cache:6379"));
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("cache"), "{debug}");
        // A unix socket's password is a query value.
        let unix = FleetConfig::new("unix:///run/redis.sock?db=2&pass=hunter2");
        assert!(unix.check().is_ok());
        let debug = format!("{unix:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redis.sock"), "{debug}");
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let url = "redis://127.0.0.1";
        let zero = refusal(FleetConfig::new(url).timeout(Duration::ZERO));
        assert!(zero.contains("redis timeout must be above zero"), "{zero}");
        let long = refusal(FleetConfig::new(url).timeout(Duration::from_secs(11)));
        assert!(long.contains("redis timeout"), "{long}");
        let sync = refusal(FleetConfig::new(url).sync_interval(Duration::from_secs(61)));
        assert!(sync.contains("redis sync_interval"), "{sync}");
        let prefix = refusal(FleetConfig::new(url).prefix("p".repeat(257)));
        assert!(
            prefix.contains("redis prefix must be at least 0 and at most 256, got 257 bytes"),
            "{prefix}"
        );
        assert!(
            FleetConfig::new(url)
                .prefix("p".repeat(256))
                .check()
                .is_ok()
        );
    }
}
