//! The `[redis]` table, `ClientBuilder::redis` and `shared = "redis"`: checked as every
//! other setting is, with errors that name the file, the line and the key, and never show
//! the URL's password. Runs with and without the `redis` feature (no Redis needed), with the
//! `config` feature (policy files).
#![cfg(feature = "config")]

use resilient_http::{Client, ErrorKind};

fn refusal(text: &str) -> String {
    let err = Client::builder().config_toml(text).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    err.to_string()
}

#[test]
fn a_bad_redis_url_names_the_line_and_key_and_never_the_password() {
    for (text, why) in [
        (
            "[redis]\nurl = \"http://:hunter2@cache:6379\"\n",
            "must start with redis://",
        ),
        (
            "[redis]\nurl = \"redis://:hunter2@cache:port\"\n",
            "is not a Redis URL",
        ),
    ] {
        let shown = refusal(text);
        let why = if cfg!(feature = "redis") {
            why
        } else {
            "needs the `redis` feature"
        };
        let expected = format!("<config_toml>:2: \"url\": {why}");
        assert!(shown.contains(&expected), "{shown}");
        assert!(shown.ends_with(" in [redis]"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[test]
fn redis_settings_out_of_range_name_the_line_and_key() {
    let url = "[redis]\nurl = \"redis://cache\"\n";
    let long_prefix = format!("prefix = \"{}\"\n", "p".repeat(257));
    for (setting, expected) in [
        (
            "timeout = \"0s\"\n",
            "<config_toml>:3: \"timeout\": must be above zero",
        ),
        (
            "timeout = \"11s\"\n",
            "<config_toml>:3: \"timeout\": must be above zero and at most 10s",
        ),
        (
            "sync_interval = \"2m\"\n",
            "<config_toml>:3: \"sync_interval\": must be above zero and at most 1m",
        ),
        (
            long_prefix.as_str(),
            "<config_toml>:3: \"prefix\": must be at least 0 and at most 256, got 257 bytes",
        ),
        (
            "port = 6379\n",
            "<config_toml>:3: unknown key \"port\" in [redis]",
        ),
    ] {
        let shown = refusal(&format!("{url}{setting}"));
        assert!(shown.contains(expected), "{shown}");
    }
}

#[test]
fn shared_is_local_or_redis() {
    let shown = refusal("[default.rate_limit]\nrate = 5\nshared = \"memcached\"\n");
    assert!(
        shown.contains(
            "<config_toml>:3: \"shared\": invalid value: string \"memcached\", expected \"local\" or \"redis\""
        ),
        "{shown}"
    );
    let local = "[default.rate_limit]\nrate = 5\nshared = \"local\"\n\n[default.retry_budget]\nshared = \"local\"\n";
    Client::builder().config_toml(local).build().unwrap();
}

/// From the builder, a shared limit without a Redis names the policy and the setting.
#[test]
fn a_shared_limit_without_a_redis_is_refused_naming_the_policy() {
    use resilient_http::overload::RateLimitConfig;
    use resilient_http::policy::{EndpointPolicy, Matcher};

    let rate = RateLimitConfig::new(5, std::time::Duration::from_secs(1));
    for (policy, setting, builder) in [
        (
            "default",
            "rate_limit_shared: a shared rate limit needs a Redis",
            Client::builder().default_policy(
                EndpointPolicy::new()
                    .rate_limit(rate)
                    .rate_limit_shared(true),
            ),
        ),
        (
            "partner",
            "retry_budget_shared: a shared retry budget needs a Redis",
            Client::builder().endpoint(
                "partner",
                Matcher::new(),
                EndpointPolicy::new().retry_budget_shared(true),
            ),
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let expected = format!("policy \"{policy}\": {setting}");
        assert!(
            err.to_string().contains(&expected),
            "{err}\n  want: {expected}"
        );
    }
}

#[cfg(feature = "redis")]
#[test]
fn the_builder_checks_its_redis_settings_as_the_file_does() {
    use resilient_http::fleet::FleetConfig;
    use std::time::Duration;

    let err = Client::builder()
        .redis("http://:hunter2@cache")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(
        err.to_string()
            .contains("redis url must start with redis://"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let config = FleetConfig::new("redis://cache").timeout(Duration::from_secs(11));
    let err = Client::builder().redis_config(config).build().unwrap_err();
    assert!(
        err.to_string()
            .contains("redis timeout must be above zero and at most 10s"),
        "{err}"
    );
    // No connection is made to build: an unreachable Redis is not an error.
    let client = Client::builder()
        .redis("redis://127.0.0.1:1")
        .build()
        .unwrap();
    assert!(client.fleet().is_some());
    assert!(Client::builder().build().unwrap().fleet().is_none());
}

/// An endpoint rule inherits `shared` from the default policy, and `shared = "local"` sets it
/// back: its limit is its own (no fallbacks to count), the default's is the fleet's (an
/// unreachable Redis: every slot so far granted locally).
#[cfg(feature = "redis")]
#[tokio::test]
async fn an_endpoint_rule_may_set_shared_back_to_local() {
    use resilient_http::testkit::FaultServer;

    let server = FaultServer::start().await.unwrap();
    let file = "[redis]\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"5ms\"\n\n\
                [default.rate_limit]\nrate = 1000\nburst = 100\nshared = \"redis\"\n\n\
                [[endpoint]]\nname = \"own\"\nmatch = { path = \"/own*\" }\n\
                [endpoint.rate_limit]\nrate = 1000\nburst = 100\nshared = \"local\"\n\n\
                [[endpoint]]\nname = \"inherits\"\nmatch = { path = \"/inherits*\" }\n\
                [endpoint.rate_limit]\nrate = 500\nburst = 50\n";
    let client = Client::builder().config_toml(file).build().unwrap();
    for path in ["/own", "/inherits", "/default"] {
        client.get(server.url(path)).send().await.unwrap();
    }
    let key = format!("http://{}", server.addr());
    let fallbacks = |policy: &str| {
        let handle = client.overload(policy, &key).unwrap();
        handle.rate_limit_fallbacks()
    };
    assert_eq!(fallbacks("own"), None, "a local limit");
    assert!(fallbacks("inherits").is_some(), "shared, inherited");
    assert!(fallbacks("default").is_some(), "shared");
}

/// Issue 22, item 18: a file's `shared = "redis"` with no Redis for it (no `[redis]` table,
/// no `ClientBuilder::redis`) names the file, the line and the key, as every other mistake
/// in a file does (it named the policy only).
#[test]
fn a_shared_limit_without_a_redis_names_the_line_and_key() {
    for (text, line, table) in [
        (
            "[default.rate_limit]\nrate = 5\nshared = \"redis\"\n",
            3,
            "[default.rate_limit]",
        ),
        (
            "[default.retry_budget]\nshared = \"redis\"\n",
            2,
            "[default.retry_budget]",
        ),
        (
            "[default]\nmax_attempts = 2\nrate_limit = { rate = 5, shared = \"redis\" }\n",
            3,
            "[default]",
        ),
        (
            "[[endpoint]]\nname = \"partner\"\nmatch = { host = \"a.example\" }\n\
             [endpoint.retry_budget]\nshared = \"redis\"\n",
            5,
            "[[endpoint]] \"partner\"",
        ),
    ] {
        let shown = refusal(text);
        let want = format!("<config_toml>:{line}: \"shared\": ");
        assert!(shown.contains(&want), "{shown}\n  want: {want}");
        assert!(shown.contains("needs a Redis"), "{shown}");
        assert!(shown.ends_with(&format!(" in {table}")), "{shown}");
        // A Redis given to the builder after the file is as good as a `[redis]` table.
        #[cfg(feature = "redis")]
        Client::builder()
            .config_toml(text)
            .redis("redis://127.0.0.1:1")
            .build()
            .unwrap();
    }
}

#[cfg(feature = "redis")]
#[path = "common/logs.rs"]
mod logs;

/// What is logged at WARN on this thread while `f` runs, one entry per line.
#[cfg(feature = "redis")]
fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    logs::logged(tracing::Level::WARN, f)
}

/// Issue 22, item 13: a shared rate limit whose lease lives less than the Redis timeout
/// (`per / rate × max(1, ⌊burst / 2⌋)`: 500 µs at 2,000/s with the default burst of 1,
/// against the default 20 ms) is warned about once when the client is built, naming the
/// file, the line and the key, and the real cause: a refill Redis answers within its timeout
/// may bring a lease already expired, whose slots are then granted locally. Nothing was said
/// (and 99–100 % of the slots were local). A warning, not an error: 1,000/s with burst 20
/// (10 ms leases) is a common configuration that works wherever Redis answers in a few ms.
/// No Redis is needed: building connects nothing.
#[cfg(feature = "redis")]
#[test]
fn a_shared_rate_limit_whose_lease_dies_before_redis_answers_is_warned_about() {
    let redis = "[redis]\nurl = \"redis://127.0.0.1:1\"\n";
    for (text, line, key, table, fix) in [
        (
            format!("{redis}\n[default.rate_limit]\nrate = 2000\nshared = \"redis\"\n"),
            5,
            "rate",
            "[default.rate_limit]",
            "raise burst to at least 80",
        ),
        (
            format!(
                "{redis}timeout = \"5ms\"\n\n[default.rate_limit]\nrate = 2000\nburst = 10\n\
                 shared = \"redis\"\n"
            ),
            7,
            "burst",
            "[default.rate_limit]",
            "raise burst to at least 20",
        ),
        (
            format!(
                "{redis}\n[[endpoint]]\nname = \"partner\"\nmatch = {{ host = \"a.example\" }}\n\
                 [endpoint.rate_limit]\nrate = 500\nshared = \"redis\"\n"
            ),
            8,
            "rate",
            "[[endpoint]] \"partner\"",
            "raise burst to at least 20",
        ),
    ] {
        let (built, logged) = warnings(|| Client::builder().config_toml(&text).build());
        built.unwrap();
        assert_eq!(logged.len(), 1, "{logged:#?}");
        let shown = &logged[0];
        assert!(shown.contains("WARN"), "{shown}");
        let want = format!("<config_toml>:{line}: \"{key}\": ");
        assert!(shown.contains(&want), "{shown}\n  want: {want}");
        assert!(shown.contains("less than the Redis timeout"), "{shown}");
        assert!(shown.contains("expire before Redis answers"), "{shown}");
        assert!(shown.contains(fix), "{shown}\n  want: {fix}");
        assert!(shown.contains(&format!(" in {table}")), "{shown}");
    }
    // A lease that lives as long as the timeout, a local limit, a shared budget: nothing.
    for fine in [
        format!("{redis}\n[default.rate_limit]\nrate = 2000\nburst = 80\nshared = \"redis\"\n"),
        format!(
            "{redis}timeout = \"500us\"\n[default.rate_limit]\nrate = 2000\nshared = \"redis\"\n"
        ),
        format!("{redis}\n[default.rate_limit]\nrate = 2000\n"),
        format!("{redis}\n[default.retry_budget]\nshared = \"redis\"\n"),
    ] {
        let (built, logged) = warnings(|| Client::builder().config_toml(&fine).build());
        built.unwrap();
        assert!(logged.is_empty(), "{fine}\n{logged:#?}");
    }
}

/// Issue 22, item 13, from the builder: checked in `build` with the client's final Redis (a
/// timeout set after the file counts), through the client and the middleware alike.
#[cfg(feature = "redis")]
#[test]
fn the_builder_warns_of_a_lease_shorter_than_the_redis_timeout() {
    use resilient_http::fleet::FleetConfig;
    use resilient_http::overload::RateLimitConfig;
    use resilient_http::policy::{EndpointPolicy, Matcher};
    use std::time::Duration;

    let url = "redis://127.0.0.1:1";
    let fast = RateLimitConfig::new(2000, Duration::from_secs(1));
    let builder = || {
        Client::builder().redis(url).endpoint(
            "partner",
            Matcher::new().host("a.example").unwrap(),
            EndpointPolicy::new()
                .rate_limit(fast)
                .rate_limit_shared(true),
        )
    };
    let (built, logged) = warnings(|| builder().build());
    built.unwrap();
    assert_eq!(logged.len(), 1, "{logged:#?}");
    let shown = &logged[0];
    assert!(
        shown.contains("policy \"partner\": rate_limit: "),
        "{shown}"
    );
    assert!(
        shown.contains("less than the Redis timeout (20ms)"),
        "{shown}"
    );
    assert!(shown.contains("raise burst to at least 80"), "{shown}");
    #[cfg(feature = "reqwest-middleware")]
    {
        use resilient_http::middleware::ResilientMiddleware;
        let (built, logged) = warnings(|| ResilientMiddleware::new(builder()));
        built.unwrap();
        assert_eq!(logged.len(), 1, "{logged:#?}");
        assert!(
            logged[0].contains("less than the Redis timeout"),
            "{logged:#?}"
        );
    }
    // The same limit with a timeout its lease outlives, or with burst enough: nothing.
    let quick = FleetConfig::new(url).timeout(Duration::from_micros(500));
    let (built, logged) = warnings(|| builder().redis_config(quick).build());
    built.unwrap();
    assert!(logged.is_empty(), "{logged:#?}");
    let burst = EndpointPolicy::new()
        .rate_limit(fast.burst(80))
        .rate_limit_shared(true);
    let (built, logged) = warnings(|| Client::builder().redis(url).default_policy(burst).build());
    built.unwrap();
    assert!(logged.is_empty(), "{logged:#?}");
    // A file's limit is checked against the Redis the builder ends with, and still located.
    let file = "[default.rate_limit]\nrate = 2000\nshared = \"redis\"\n";
    let (built, logged) = warnings(|| Client::builder().config_toml(file).redis(url).build());
    built.unwrap();
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].contains("<config_toml>:2: \"rate\": "),
        "{logged:#?}"
    );
    let quick = FleetConfig::new(url).timeout(Duration::from_micros(500));
    let (built, logged) = warnings(|| {
        Client::builder()
            .config_toml(file)
            .redis_config(quick)
            .build()
    });
    built.unwrap();
    assert!(logged.is_empty(), "{logged:#?}");
}

/// Issue 29: `cluster`, `seeds` and `ca_file` in `[redis]`, checked as the builder checks
/// them: a seed's own mistake names its line, settings that do not go together name the key
/// and the table's line; no password shown.
#[cfg(feature = "redis")]
#[test]
fn cluster_and_tls_settings_name_the_line_and_key() {
    let url = "[redis]\nurl = \"redis://:hunter2@cache:7000\"\n";
    for (setting, expected) in [
        (
            "cluster = true\nseeds = [\"http://:hunter2@cache:7001\"]\n",
            "<config_toml>:4: \"seeds\": must start with redis://",
        ),
        (
            "seeds = [\"redis://:hunter2@cache:7001\"]\n",
            "\"seeds\": needs cluster = true",
        ),
        (
            "cluster = true\nprefix = \"{app}:\"\n",
            "\"prefix\": must not hold { or } with cluster = true",
        ),
        (
            "ca_file = \"/nonexistent/ca.pem\"\n",
            "<config_toml>:3: \"ca_file\": /nonexistent/ca.pem cannot be read",
        ),
        (
            "ca_file = \"Cargo.toml\"\n",
            "<config_toml>:3: \"ca_file\": Cargo.toml holds no PEM certificate",
        ),
        (
            "cluster = \"yes\"\n",
            "<config_toml>:3: \"cluster\": invalid type: string \"yes\", expected a boolean",
        ),
    ] {
        let shown = refusal(&format!("{url}{setting}"));
        println!("{shown}");
        assert!(shown.contains(expected), "{shown}");
        assert!(shown.contains("<config_toml>:"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    // How the keys go together: the line of the key named, not the table's header.
    for (text, expected) in [
        (
            format!("{url}seeds = [\"redis://:hunter2@cache:7001\"]\n"),
            "<config_toml>:3: \"seeds\": needs cluster = true",
        ),
        (
            format!("{url}cluster = true\nseeds = [\"redis://:hunter3@cache:7001\"]\n"),
            "<config_toml>:4: \"seeds\": must each carry the url's user and password",
        ),
        (
            format!("{url}cluster = true\nseeds = [\"redis://cache:7001\"]\n"),
            "<config_toml>:4: \"seeds\": must each carry the url's user and password",
        ),
        (
            "[redis]\ncluster = true\nurl = \"redis://:hunter2@cache:7000/2\"\n".to_owned(),
            "<config_toml>:3: \"url\": must name no database (or /0) with cluster = true",
        ),
        (
            format!("{url}cluster = true\nseeds = [\"redis://:hunter2@cache:7001/1\"]\n"),
            "<config_toml>:4: \"seeds\": must name no database",
        ),
    ] {
        let shown = refusal(&text);
        println!("{shown}");
        assert!(shown.contains(expected), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
    assert!(
        Client::builder()
            .config_toml("[redis]\ncluster = true\nurl = \"redis://:pw@cache:7000/0\"\n")
            .build()
            .is_ok(),
        "database 0 is a cluster's"
    );
    let cluster = format!("{url}cluster = true\nseeds = [\"redis://:hunter2@cache:7001\"]\n");
    let client = Client::builder().config_toml(&cluster).build().unwrap();
    let shown = format!("{:?}", client.fleet().unwrap());
    assert!(
        shown.contains("cluster: true") && shown.contains("7001"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A CA file is read whole when the file is, at most 1 MiB of it, and its certificates parsed:
/// a bad one names the `ca_file` line, not the url's.
#[cfg(feature = "redis-tls")]
#[test]
fn a_bad_ca_file_names_its_line() {
    let dir = std::env::temp_dir().join(format!("rh-fleet-config-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_body = dir.join("bad.pem");
    std::fs::write(
        &bad_body,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_der = dir.join("not-der.pem");
    std::fs::write(
        &not_der,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let url = "[redis]\nurl = \"rediss://app:hunter2@cache:6380\"\n";
    for (path, expected) in [
        (
            bad_body.display().to_string(),
            "is not a PEM file of certificates",
        ),
        (not_der.display().to_string(), "holds a bad certificate"),
        ("/dev/zero".to_owned(), "/dev/zero is larger than 1 MiB"),
    ] {
        let shown = refusal(&format!("{url}ca_file = \"{path}\"\n"));
        println!("{shown}");
        assert!(shown.contains("<config_toml>:3: \"ca_file\": "), "{shown}");
        assert!(shown.contains(expected), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
