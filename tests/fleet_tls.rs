//! The fleet against a managed-style Redis: TLS only (`rediss://`, `redis-server --tls-port`,
//! with a certificate signed by a CA this test makes), and an ACL user (`app`, the default user
//! off). Sharing works through it, and a wrong password shows nowhere: not in errors, `Debug`
//! or logs (the fleet's and the redis crate's, captured at every level).
#![cfg(feature = "redis-tls")]

use std::time::Duration;

use resilient_http::fleet::{Fleet, FleetConfig};
use resilient_http::overload::RateLimitConfig;
use tokio::time::{Instant, sleep};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const PASSWORD: &str = "s3cret-Pa55";
const WRONG: &str = "hunter2-wrong";

#[path = "common/redis.rs"]
mod real_redis;
use real_redis::{RedisCluster, TlsRedis};

#[path = "common/logs.rs"]
mod logs;

/// Everything this test binary logs, at every level, the redis crate's `log` records too.
fn capture_logs() {
    logs::capture_globally(tracing::Level::TRACE);
}

/// Two replicas through TLS, as the ACL user: a hold set by one holds the other, a rate limit
/// is leased from Redis (not granted locally), and both stay up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limits_over_tls_as_an_acl_user() {
    capture_logs();
    let redis = TlsRedis::start("app", PASSWORD);
    let config = FleetConfig::new(redis.url(PASSWORD))
        .ca_file(redis.ca_file())
        .prefix("tls:")
        .timeout(500 * MS)
        .sync_interval(50 * MS);
    let (one, two) = (
        Fleet::new(config.clone()).unwrap(),
        Fleet::new(config).unwrap(),
    );
    let rate = one.rate("api.example", RateLimitConfig::new(100, SECOND).burst(10));
    let (hold, other) = (one.hold("api.example"), two.hold("api.example"));
    assert!(one.sync().await, "no sync over TLS");
    let set = Instant::now();
    hold.hold_until(set + 2 * SECOND);
    while other.remaining(Instant::now()).is_none() {
        assert!(
            set.elapsed() < 2 * SECOND,
            "the hold never reached the other replica"
        );
        sleep(5 * MS).await;
    }
    for _ in 0..5 {
        while rate.try_take(Instant::now()).is_err() {
            sleep(MS).await;
        }
    }
    assert_eq!(
        rate.fallbacks(),
        0,
        "slots granted locally: Redis was not reached"
    );
    assert!(one.is_up() && two.is_up());
    assert!(one.round_trips() >= 2);
    assert!(
        !logs::captured().contains(PASSWORD),
        "the password was logged"
    );
}

/// A wrong password: the fleet is down (local limits), and the password shows in no log line,
/// no `Debug`, no error; nor does it when the server's CA is not trusted, or a URL is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_shows_nowhere() {
    capture_logs();
    let redis = TlsRedis::start("app", PASSWORD);
    let config = FleetConfig::new(redis.url(WRONG))
        .ca_file(redis.ca_file())
        .prefix("wrong:")
        .timeout(500 * MS);
    let fleet = Fleet::new(config.clone()).unwrap();
    let rate = fleet.rate("api.example", RateLimitConfig::new(100, SECOND).burst(10));
    // A call still gets its slot (the local limit's), waiting at most the timeout.
    let asked = Instant::now();
    while let Err(wait) = rate.try_take(Instant::now()) {
        assert!(asked.elapsed() <= 600 * MS, "a call waited for Redis");
        sleep(wait).await;
    }
    // A sync with something to sync: a round trip, refused.
    let _hold = fleet.hold("api.example");
    assert!(!fleet.sync().await, "a wrong password synced");
    assert!(!fleet.is_up());
    // The system's roots do not know the test's CA: refused too, and as quiet.
    let untrusted = Fleet::new(FleetConfig::new(redis.url(WRONG)).prefix("untrusted:")).unwrap();
    let _other = untrusted.hold("api.example");
    assert!(
        !untrusted.sync().await,
        "a certificate of an unknown CA was accepted"
    );

    let shown = [
        format!("{config:?}"),
        format!("{fleet:?}"),
        format!("{untrusted:?}"),
        format!("{rate:?}"),
        Fleet::new(config.clone().timeout(Duration::ZERO))
            .unwrap_err()
            .to_string(),
        Fleet::new(FleetConfig::new(format!(
            "rediss://app:{WRONG}@127.0.0.1:port"
        )))
        .unwrap_err()
        .to_string(),
        Fleet::new(config.clone().ca_file(redis.dir().join("missing.pem")))
            .unwrap_err()
            .to_string(),
        Fleet::new(config.clone().cluster(true).seeds(["redis://127.0.0.1:1"]))
            .unwrap_err()
            .to_string(),
    ];
    // The policy file's settings, as the application deserialised them.
    #[cfg(feature = "config")]
    let shown = {
        let mut shown = shown.to_vec();
        let seed = format!("rediss://app:{WRONG}@127.0.0.1:1");
        let policy: resilient_http::policy::PolicyConfig =
            serde_json::from_value(serde_json::json!({
                "redis": { "url": redis.url(WRONG), "cluster": true, "seeds": [seed] }
            }))
            .unwrap();
        shown.push(format!("{policy:?}"));
        shown
    };
    for text in &shown {
        println!("{text}");
        assert!(!text.contains(WRONG), "shown: {text}");
    }
    assert!(shown[6].contains("missing.pem"), "{}", shown[6]);
    let logs = logs::captured();
    let warned: Vec<_> = (logs.lines())
        .filter(|line| line.contains("prefix=wrong:") || line.contains("prefix=untrusted:"))
        .collect();
    println!("{}", warned.join("\n"));
    assert!(
        warned.iter().any(|l| l.contains("redis unavailable")),
        "the fleet did not say it is down"
    );
    assert!(!logs.contains(WRONG), "the password was logged:\n{logs}");
}

/// A managed Redis in cluster mode: three primaries speaking TLS only (to clients and to one
/// another), reached with `rediss://` seeds and the CA file. A hold set through one node is
/// seen by a replica that reaches the cluster through another, and a sync of keys in many
/// slots succeeds over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_shares_holds_through_any_node() {
    let cluster = RedisCluster::start_tls(3, 0);
    let urls = cluster.urls();
    assert!(urls[0].starts_with("rediss://"));
    let replica = |node: usize| {
        let seeds: Vec<_> = (urls.iter().enumerate())
            .filter(|(other, _)| *other != node)
            .map(|(_, url)| url.clone())
            .collect();
        let config = FleetConfig::new(&urls[node])
            .cluster(true)
            .seeds(seeds)
            .ca_file(cluster.ca_file())
            .timeout(500 * MS)
            .sync_interval(50 * MS);
        Fleet::new(config).unwrap()
    };
    let (setter, watcher) = (replica(0), replica(2));
    let endpoints: Vec<String> = (0..6).map(|n| format!("api-{n}.example")).collect();
    let set: Vec<_> = endpoints.iter().map(|e| setter.hold(e)).collect();
    let seen: Vec<_> = endpoints.iter().map(|e| watcher.hold(e)).collect();
    assert!(
        setter.sync().await && watcher.sync().await,
        "no sync over TLS"
    );
    let start = Instant::now();
    for hold in &set {
        hold.hold_until(start + 2 * SECOND);
    }
    for hold in &seen {
        while hold.remaining(Instant::now()).is_none() {
            assert!(
                start.elapsed() < SECOND,
                "a hold never reached the other replica"
            );
            sleep(5 * MS).await;
        }
    }
    assert!(setter.is_up() && watcher.is_up());
}

/// rustls picks its crypto provider from its features when the application installs none: with
/// both `aws_lc_rs` and `ring` on (another dependency enabling `ring`) it cannot, and building
/// a TLS config panics. The fleet never panics on its thread for it (sharing would silently
/// stop): either `Fleet::new` refuses, saying to install a provider, or TLS works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_crypto_provider_is_refused_when_the_fleet_is_made() {
    let redis = TlsRedis::start("app", PASSWORD);
    let config = FleetConfig::new(redis.url(PASSWORD))
        .ca_file(redis.ca_file())
        .prefix("provider:")
        .timeout(500 * MS);
    match Fleet::new(config) {
        Ok(fleet) => {
            let _hold = fleet.hold("api.example");
            assert!(fleet.sync().await, "no sync over TLS");
            assert!(fleet.is_up());
        }
        Err(e) => {
            let shown = e.to_string();
            assert_eq!(
                e.kind(),
                resilient_http::ErrorKind::InvalidConfig,
                "{shown}"
            );
            assert!(shown.contains("CryptoProvider::install_default"), "{shown}");
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
    }
}
