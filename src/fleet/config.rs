//! The fleet's settings and their ranges (checked once, here, for the builder and the policy
//! file's `[redis]` table).

use std::path::{Path, PathBuf};
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
///
/// // A Redis Cluster, reached through any of its nodes.
/// let cluster = FleetConfig::new("redis://10.0.0.7:7000")
///     .cluster(true)
///     .seeds(["redis://10.0.0.8:7000", "redis://10.0.0.9:7000"]);
/// assert!(cluster.cluster);
/// ```
///
/// Ranges: `url` a `redis://` or `unix://` URL, or `rediss://` (TLS) with the `redis-tls`
/// feature; with `cluster`, `redis://` or `rediss://` only, `seeds` likewise (none without
/// `cluster`, each with `url`'s scheme, user and password), database 0 only, and a `prefix`
/// without `{` or `}` (the fleet puts its own hash tags in keys); `ca_file` only with
/// `rediss://`, a PEM file of certificates of at most 1 MiB; `prefix` at most 256 bytes;
/// `timeout` above zero, at most 10 s; `sync_interval` above zero, at most a minute. Checked by
/// [`Fleet::new`](super::Fleet::new), and by the policy file's `[redis]` table, with the same
/// ranges.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, feature `redis-tls`) or
    /// `unix:///path/to/socket`; with [`cluster`](Self::cluster), one node of the cluster.
    /// An ACL user and its password go in the URL (`rediss://app:secret@cache:6380`). Never
    /// shown in errors, `Debug` or logs.
    pub url: String,
    /// Whether `url` is a node of a Redis Cluster (false by default): the fleet then uses the
    /// `redis` crate's cluster client, which follows `MOVED`/`ASK` and failovers, and puts
    /// each endpoint's keys in one hash slot (see the [module docs](super#redis-cluster)).
    pub cluster: bool,
    /// More nodes of the cluster (`redis://…` or `rediss://…`, with `url`'s user and
    /// password, or none when `url` has none), tried when `url`'s does not answer; empty by
    /// default, and only with `cluster`. Never shown in errors, `Debug` or logs.
    pub seeds: Vec<String>,
    /// A PEM file of the certificate authorities that sign the servers' certificates, for
    /// `rediss://` (a CA of your own, or a managed service's); `None` (the default): the
    /// system's roots. Read when the fleet is made (and when a policy file is read), at most
    /// 1 MiB; a relative path is from the process's working directory.
    pub ca_file: Option<PathBuf>,
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
            cluster: false,
            seeds: Vec::new(),
            ca_file: None,
            prefix: "resilient-http:".to_owned(),
            timeout: Duration::from_millis(20),
            sync_interval: Duration::from_millis(100),
        }
    }

    /// Whether `url` (and `seeds`) are nodes of a Redis Cluster.
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// More nodes of the cluster to reach it through (see [`seeds`](Self::seeds)).
    pub fn seeds<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// The PEM file of the certificate authorities to trust for `rediss://`, instead of the
    /// system's roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
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

    /// The Redis client for these settings, if every one is in range; else an
    /// [`InvalidConfig`](crate::ErrorKind::InvalidConfig) error naming the setting (and never
    /// showing a URL, which may hold a password).
    pub(crate) fn check(&self) -> Result<Connector, Error> {
        let refused =
            |name: &str, why: String| Error::invalid_config(format!("redis {name} {why}"));
        (bounds::REDIS_TIMEOUT.check(self.timeout)).map_err(|why| refused("timeout", why))?;
        (bounds::REDIS_SYNC_INTERVAL.check(self.sync_interval))
            .map_err(|why| refused("sync_interval", why))?;
        bounds::redis_prefix(&self.prefix).map_err(|why| refused("prefix", why))?;
        check_url(&self.url).map_err(|why| refused("url", why))?;
        for seed in &self.seeds {
            check_url(seed).map_err(|why| refused("seeds", why))?;
        }
        if let Some((name, why)) = self.mismatch() {
            return Err(refused(name, why.to_owned()));
        }
        let roots = match &self.ca_file {
            Some(path) => Some(read_ca_file(path).map_err(|why| refused("ca_file", why))?),
            None => None,
        };
        #[cfg(feature = "redis-tls")]
        if self.nodes().any(is_tls) {
            crypto_provider().map_err(|why| refused("url", why.to_owned()))?;
        }
        // Every setting was checked above, each naming its key: what the client still
        // refuses is about them together.
        self.connector(roots).map_err(|e| {
            Error::invalid_config(format!(
                "redis settings refused by the redis client: {}",
                crate::redact::text(&e.to_string())
            ))
        })
    }

    /// Which setting does not go with the others, and why: the checks across settings, the
    /// one place for the builder and the policy file.
    pub(crate) fn mismatch(&self) -> Option<(&'static str, &'static str)> {
        let tls = is_tls(&self.url);
        if !self.cluster && !self.seeds.is_empty() {
            return Some((
                "seeds",
                "needs cluster = true (seeds are nodes of a Redis Cluster)",
            ));
        }
        if self.cluster {
            if !self
                .nodes()
                .all(|url| url.starts_with("redis://") || is_tls(url))
            {
                return Some((
                    "url",
                    "must start with redis:// or rediss:// with cluster = true (a cluster \
                     names its nodes by address, not by socket)",
                ));
            }
            if self.seeds.iter().any(|seed| is_tls(seed) != tls) {
                return Some(("seeds", "must all use the url's scheme (TLS or not)"));
            }
            // The cluster client logs in to every node as the first one says.
            let login = |url: &str| {
                redis::IntoConnectionInfo::into_connection_info(url).map(|info| {
                    let settings = info.redis_settings();
                    let login = (settings.username(), settings.password());
                    (login.0.map(str::to_owned), login.1.map(str::to_owned))
                })
            };
            let url_login = login(&self.url).ok();
            if self.seeds.iter().any(|seed| login(seed).ok() != url_login) {
                return Some((
                    "seeds",
                    "must each carry the url's user and password (or, as the url, none)",
                ));
            }
            let database = |url: &str| {
                redis::IntoConnectionInfo::into_connection_info(url)
                    .map_or(0, |info| info.redis_settings().db())
            };
            if database(&self.url) != 0 {
                return Some((
                    "url",
                    "must name no database (or /0) with cluster = true: a Redis Cluster has \
                     database 0 only",
                ));
            }
            if self.seeds.iter().any(|seed| database(seed) != 0) {
                return Some((
                    "seeds",
                    "must name no database (or /0) with cluster = true: a Redis Cluster has \
                     database 0 only",
                ));
            }
            if self.prefix.contains(['{', '}']) {
                return Some((
                    "prefix",
                    "must not hold { or } with cluster = true: the fleet puts its own hash \
                     tags in keys",
                ));
            }
        }
        if self.ca_file.is_some() && !tls {
            return Some(("ca_file", "needs a rediss:// url (TLS)"));
        }
        None
    }

    fn nodes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.seeds.iter().map(String::as_str))
    }

    /// The client: one node's, or the cluster's, with `roots` (the CA file's certificates,
    /// PEM) if set.
    fn connector(&self, roots: Option<Vec<u8>>) -> redis::RedisResult<Connector> {
        if self.cluster {
            let mut builder = redis::cluster::ClusterClientBuilder::new(self.nodes());
            #[cfg(feature = "redis-tls")]
            if let Some(pem) = roots {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                });
            }
            builder = builder
                // MOVED, ASK and a failover's errors are retried within the fleet's timeout
                // (which cuts them short: a replica never waits longer).
                .retries(16)
                .min_retry_wait(2)
                .max_retry_wait(100)
                .connection_timeout(self.timeout.max(Duration::from_secs(1)));
            return builder.build().map(Connector::Cluster);
        }
        #[cfg(feature = "redis-tls")]
        if let Some(pem) = roots {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            return redis::Client::build_with_tls(self.url.as_str(), certificates)
                .map(Connector::Single);
        }
        let _ = roots;
        redis::Client::open(self.url.as_str()).map(Connector::Single)
    }
}

/// How the fleet connects: one Redis (the tokio connection manager, which reconnects by
/// itself), or a Redis Cluster (the cluster client, which follows slots and failovers).
#[derive(Clone)]
// One per fleet, made once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Connector {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// Which kind only: the clients' own `Debug` would show their URLs.
impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connector::Single(_) => "Single",
            Connector::Cluster(_) => "Cluster",
        })
    }
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// Why the CA file at `path` cannot be used, if it cannot (the policy file's check, naming
/// its key and line; the fleet reads it again when it is made).
#[cfg(feature = "config")] // its one caller is the policy file
pub(crate) fn check_ca_file(path: &Path) -> Result<(), String> {
    read_ca_file(path).map(|_| ())
}

/// The most a CA file may hold: a bundle of every public root is about 200 KiB.
const CA_FILE_MAX: u64 = 1024 * 1024;

/// The certificates of the PEM file at `path`, read now (a relative path from the working
/// directory); the refusal names the file (a path is no secret) and what is wrong with it.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("{shown} cannot be read: {e}");
    let mut pem = Vec::new();
    (std::fs::File::open(path).map_err(cannot)?)
        .take(CA_FILE_MAX + 1)
        .read_to_end(&mut pem)
        .map_err(cannot)?;
    if pem.len() as u64 > CA_FILE_MAX {
        return Err(format!(
            "{shown} is larger than 1 MiB: not a file of certificate authorities"
        ));
    }
    check_pem(&pem).map_err(|why| format!("{shown} {why}"))?;
    Ok(pem)
}

/// Why `pem` is not a PEM file of certificates rustls takes as roots, if it is not.
#[cfg(feature = "redis-tls")]
fn check_pem(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate =
            certificate.map_err(|e| format!("is not a PEM file of certificates: {e}"))?;
        (roots.add(certificate)).map_err(|e| format!("holds a bad certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate".to_owned());
    }
    Ok(())
}

/// Without TLS a CA file is refused with its url (`rediss://` needs the feature): only its
/// header is looked for.
#[cfg(not(feature = "redis-tls"))]
fn check_pem(pem: &[u8]) -> Result<(), String> {
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err("holds no PEM certificate".to_owned());
    }
    Ok(())
}

/// Why rustls could not build a TLS client config for the redis crate, if it could not. The
/// redis crate builds its config with rustls's process-wide crypto provider; when none is
/// installed, rustls installs the one its features name, and panics when they name two
/// (`aws_lc_rs`, which this crate enables, and `ring`, which another dependency may): on the
/// fleet's thread, sharing would stop without a word. Asked here instead, once, so that the
/// fleet is refused with the remedy. This crate installs no provider itself: rustls does, as
/// it would on the first TLS connection.
#[cfg(feature = "redis-tls")]
fn crypto_provider() -> Result<(), &'static str> {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    match std::panic::catch_unwind(rustls::ClientConfig::builder) {
        Ok(_) => Ok(()),
        Err(_) => Err(
            "is rediss:// (TLS), and rustls cannot choose a crypto provider by itself (its \
             features name more than one, e.g. aws_lc_rs and ring): call \
             rustls::crypto::CryptoProvider::install_default before making the fleet",
        ),
    }
}

/// `url` without its secrets, for `Debug` (of [`FleetConfig`], and of the policy file's
/// `[redis]` table): user info, and the `pass` a `unix://` URL carries in its query (redacted
/// as every URL the crate shows).
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => crate::redact::url(&url).to_string(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The redis crate's own words, redacted: its errors name the part it could not parse, never
/// the password, but that is not left to chance.
fn not_redis(e: &redis::RedisError) -> String {
    format!(
        "is not a Redis URL: {}",
        crate::redact::text(&e.to_string())
    )
}

/// Why `url` is not a Redis URL this build can use, in words that never show it; the one
/// check for the builder and the policy file (the `url` and each of the `seeds`).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis" | "unix" | "redis+unix") => {}
        Some("rediss") if cfg!(feature = "redis-tls") => {}
        Some("rediss") => {
            return Err(
                "rediss:// (TLS) needs the `redis-tls` feature, which this build of \
                        resilient-http does not have"
                    .to_owned(),
            );
        }
        _ => return Err("must start with redis://, rediss:// or unix://".to_owned()),
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(|_| ())
        .map_err(|e| not_redis(&e))
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seeds: Vec<_> = self.seeds.iter().map(|seed| shown_url(seed)).collect();
        f.debug_struct("FleetConfig")
            .field("url", &shown_url(&self.url))
            .field("cluster", &self.cluster)
            .field("seeds", &seeds)
            .field("ca_file", &self.ca_file)
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
            #[cfg(not(feature = "redis-tls"))]
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

    #[test]
    fn settings_that_do_not_go_together_are_named() {
        let url = "redis://127.0.0.1:7000";
        let seeds = refusal(FleetConfig::new(url).seeds(["redis://:hunter2@127.0.0.1:7001"]));
        assert!(
            seeds.contains("redis seeds needs cluster = true"),
            "{seeds}"
        );
        assert!(!seeds.contains("hunter2"), "{seeds}");
        let unix = refusal(FleetConfig::new("unix:///run/redis.sock").cluster(true));
        assert!(
            unix.contains("redis url must start with redis:// or rediss://"),
            "{unix}"
        );
        let braces = refusal(FleetConfig::new(url).cluster(true).prefix("{app}:"));
        assert!(
            braces.contains("redis prefix must not hold { or }"),
            "{braces}"
        );
        let ca = refusal(FleetConfig::new(url).ca_file("/etc/ssl/ca.pem"));
        assert!(ca.contains("redis ca_file needs a rediss:// url"), "{ca}");
        let bad_seed = refusal(
            FleetConfig::new(url)
                .cluster(true)
                .seeds(["redis://:hunter2@cache:port"]),
        );
        assert!(
            bad_seed.contains("redis seeds is not a Redis URL"),
            "{bad_seed}"
        );
        assert!(!bad_seed.contains("hunter2"), "{bad_seed}");
        // A seed's password the cluster client would silently not use (it logs in to
        // every node as `url` says), and one it would refuse.
        for seeds in ["redis://:hunter2@127.0.0.1:7001", "redis://127.0.0.1:7001"] {
            let login = refusal(
                FleetConfig::new("redis://app:hunter3@127.0.0.1:7000")
                    .cluster(true)
                    .seeds([seeds]),
            );
            assert!(
                login.contains("redis seeds must each carry the url's user and password"),
                "{login}"
            );
            assert!(!login.contains("hunter"), "{login}");
        }
        let database = refusal(FleetConfig::new("redis://127.0.0.1:7000/2").cluster(true));
        assert!(
            database.contains("redis url must name no database (or /0) with cluster = true"),
            "{database}"
        );
        let cluster = FleetConfig::new("redis://:hunter2@127.0.0.1:7000")
            .cluster(true)
            .seeds(["redis://:hunter2@127.0.0.1:7001"]);
        assert!(cluster.check().is_ok());
        let debug = format!("{cluster:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("7001"),
            "{debug}"
        );
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn a_ca_file_is_read_when_the_fleet_is_made_and_named_when_it_cannot_be() {
        let url = "rediss://app:hunter2@cache:6380";
        assert!(FleetConfig::new(url).check().is_ok(), "system roots");
        let missing = refusal(FleetConfig::new(url).ca_file("/nonexistent/ca.pem"));
        assert!(
            missing.contains("redis ca_file /nonexistent/ca.pem cannot be read"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("rh-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let shown = refusal(FleetConfig::new(url).ca_file(&not_pem));
        assert!(shown.contains("holds no PEM certificate"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
