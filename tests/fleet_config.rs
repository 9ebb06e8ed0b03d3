//! The `[redis]` table, `ClientBuilder::redis` and `shared = "redis"`: checked as every
//! other setting is, with errors that name the file, the line and the key, and never show
//! the URL's password. Runs with and without the `redis` feature (no Redis needed).

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
        let expected = format!("policy.toml:2: \"url\": {why}");
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
            "policy.toml:3: \"timeout\": must be above zero",
        ),
        (
            "timeout = \"11s\"\n",
            "policy.toml:3: \"timeout\": must be above zero and at most 10s",
        ),
        (
            "sync_interval = \"2m\"\n",
            "policy.toml:3: \"sync_interval\": must be above zero and at most 1m",
        ),
        (
            long_prefix.as_str(),
            "policy.toml:3: \"prefix\": must be at least 0 and at most 256, got 257 bytes",
        ),
        (
            "port = 6379\n",
            "policy.toml:3: unknown key \"port\" in [redis]",
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
            "policy.toml:3: \"shared\": unknown variant `memcached`, expected `local` or `redis`"
        ),
        "{shown}"
    );
    let local = "[default.rate_limit]\nrate = 5\nshared = \"local\"\n\n[default.budget]\nshared = \"local\"\n";
    Client::builder().config_toml(local).build().unwrap();
}

#[test]
fn a_shared_limit_without_a_redis_is_refused_naming_the_policy() {
    for (text, policy) in [
        (
            "[default.rate_limit]\nrate = 5\nshared = \"redis\"\n",
            "default",
        ),
        ("[default.budget]\nshared = \"redis\"\n", "default"),
        (
            "[[endpoint]]\nname = \"partner\"\nmatch = { host = \"a.example\" }\n\
             [endpoint.budget]\nshared = \"redis\"\n",
            "partner",
        ),
    ] {
        let shown = refusal(text);
        let expected =
            format!("policy \"{policy}\": a shared rate limit or retry budget needs a Redis");
        assert!(shown.contains(&expected), "{shown}");
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
