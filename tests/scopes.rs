//! Scopes (issue 24, item 4): which requests share a guard's state, set in the builder, the
//! policy file and `PolicyConfig`, with file/line errors for a bad value, for a named scope
//! given two settings, and for the removed `[breaker] key`; a reload keeps named states. The
//! scopes' behaviour on every path is in `tests/parity.rs`; sharing through Redis in
//! `tests/fleet_client.rs`.
#![cfg(feature = "config")]

use std::time::Duration;

use resilient_http::overload::RateLimitConfig;
use resilient_http::policy::{EndpointPolicy, Matcher, PolicyConfig, Scope};
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, Error, ErrorKind};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The message of a build that must fail.
fn refusal(built: std::result::Result<Client, Error>) -> String {
    match built {
        Ok(_) => String::from("built"),
        Err(err) => {
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            err.to_string()
        }
    }
}

/// A named rate limit of one request a minute, set in the default policy, inherited by a
/// rule on another path: the rule's call finds the slot spent by the default's.
const NAMED: &str = r#"
[default]
max_attempts = 1
hold_scope = "rule"

[default.rate_limit]
rate = 1
per = "60s"
scope = "name:api-host"

[default.breaker]
scope = "rule"

[default.bulkhead]
max_in_flight = 4
scope = "rule"

[default.retry_budget]
scope = "name:api-host"

[[endpoint]]
name = "payments"
match = { path = "/pay*" }
"#;

#[tokio::test(start_paused = true)]
async fn each_file_form_sets_its_scope() -> Result {
    let server = FaultServer::start().await?;
    server.script("/a", [Reply::ok("x")]);
    server.script("/pay", [Reply::ok("x")]);
    let client = Client::builder().config_toml(NAMED).build()?;
    client.get(server.url("/a")).send().await?;
    let err = client
        .get(server.url("/pay"))
        .deadline(Duration::from_secs(5))
        .send()
        .await
        .err()
        .ok_or("the named limit let a second request through")?;
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    // The named limit's key, in the error.
    assert!(err.to_string().contains("name:api-host"), "{err}");
    assert_eq!(server.hits("/pay"), 0);

    // Nothing is host-scoped: each rule's guards are one entry, under its name.
    let key = format!("http://{}", server.addr());
    assert!(client.overload("default", &key).is_none());
    let payments = client
        .overload("payments", "payments")
        .ok_or("rule guards")?;
    assert_eq!(payments.key(), "payments");
    assert_eq!(payments.bulkhead_in_flight(), Some(0));
    // One breaker per rule, under the rule's name.
    let breakers = client.breakers_for("payments").ok_or("breakers")?;
    let keys: Vec<String> = breakers.keys().iter().map(|k| k.to_string()).collect();
    assert_eq!(keys, ["payments"]);
    Ok(())
}

/// The same through `PolicyConfig` (here from JSON), and through the builder.
#[tokio::test(start_paused = true)]
async fn serde_and_builder_forms_set_the_same_scopes() -> Result {
    let json = r#"{
        "default": { "rate_limit": { "rate": 1, "per": "60s", "scope": "name:q" } },
        "endpoint": [ { "name": "b", "match": { "path": "/b" } } ]
    }"#;
    let config: PolicyConfig = serde_json::from_str(json)?;
    let limit = RateLimitConfig::new(1, Duration::from_secs(60));
    let built = Client::builder()
        .default_policy(
            EndpointPolicy::new()
                .rate_limit(limit)
                .rate_limit_scope(Scope::named("q")?),
        )
        .endpoint("b", Matcher::new().path("/b"), EndpointPolicy::new());
    for client in [Client::builder().config(config).build()?, built.build()?] {
        let server = FaultServer::start().await?;
        client.get(server.url("/a")).send().await?;
        let err = client
            .get(server.url("/b"))
            .deadline(Duration::from_secs(5))
            .send()
            .await
            .err()
            .ok_or("one bucket for both rules")?;
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    }
    Ok(())
}

#[test]
fn a_bad_scope_names_the_file_line_key_and_the_three_forms() {
    let file = "[default]\nmax_attempts = 2\n\n[default.rate_limit]\nrate = 5\nscope = \"hosts\"\n";
    let err = refusal(Client::builder().config_toml(file).build());
    assert!(err.contains("<config_toml>:6:"), "{err}");
    assert!(err.contains("scope"), "{err}");
    assert!(err.contains(r#""host", "rule", "name:<name>""#), "{err}");
    let file = "[default]\nhold_scope = \"name:a b\"\n";
    let err = refusal(Client::builder().config_toml(file).build());
    assert!(err.contains("<config_toml>:2:"), "{err}");
    assert!(err.contains("hold_scope"), "{err}");
    assert!(err.contains("not allowed"), "{err}");
}

#[test]
fn the_removed_breaker_key_says_to_use_scope() {
    let file = "[[endpoint]]\nname = \"x\"\nmatch = {}\n[endpoint.breaker]\nkey = \"ledger\"\n";
    let err = refusal(Client::builder().config_toml(file).build());
    assert!(err.contains("<config_toml>:5:"), "{err}");
    assert!(err.contains("removed"), "{err}");
    assert!(err.contains("scope = \"rule\""), "{err}");
}

/// One name, one limit: two rules that name it with other settings are refused, naming both
/// rules, the guard and the name; from a file, with the line.
#[test]
fn a_named_scope_with_two_settings_is_refused() {
    let named = Scope::named("api").ok();
    let limit = |rate| RateLimitConfig::new(rate, Duration::from_secs(1));
    let policy = |rate| {
        let policy = EndpointPolicy::new().rate_limit(limit(rate));
        match named.clone() {
            Some(scope) => policy.rate_limit_scope(scope),
            None => policy,
        }
    };
    let err = refusal(
        Client::builder()
            .endpoint("one", Matcher::new().path("/1"), policy(5))
            .endpoint("two", Matcher::new().path("/2"), policy(6))
            .build(),
    );
    for part in ["policy \"two\"", "policy \"one\"", "rate_limit", "name:api"] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // The same settings are one limit: built.
    let same = Client::builder()
        .endpoint("one", Matcher::new().path("/1"), policy(5))
        .endpoint("two", Matcher::new().path("/2"), policy(5))
        .build();
    assert!(same.is_ok(), "{:?}", same.err());

    let file = r#"
[default.rate_limit]
rate = 5
scope = "name:api"

[[endpoint]]
name = "bulk"
match = { path = "/bulk*" }
rate_limit = { rate = 50, scope = "name:api" }
"#;
    let err = refusal(Client::builder().config_toml(file).build());
    assert!(err.contains("<config_toml>:9:"), "{err}");
    for part in ["[[endpoint]] \"bulk\"", "policy \"default\"", "name:api"] {
        assert!(err.contains(part), "{part}: {err}");
    }
}

/// A reload that keeps a named limit's settings keeps its state (the slot spent before it);
/// one that changes them starts afresh.
#[tokio::test(start_paused = true)]
async fn a_reload_keeps_a_named_limit_it_does_not_change() -> Result {
    let server = FaultServer::start().await?;
    let client = Client::builder().config_toml(NAMED).build()?;
    client.get(server.url("/a")).send().await?;
    client.reload(Client::builder().config_toml(NAMED))?;
    let kept = client
        .get(server.url("/pay"))
        .deadline(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        kept.as_ref()
            .is_err_and(|err| err.kind() == ErrorKind::RateLimited),
        "{kept:?}"
    );
    client.reload(Client::builder().config_toml(&NAMED.replace("rate = 1", "rate = 2")))?;
    client.get(server.url("/pay")).send().await?;
    Ok(())
}

/// An endpoint's guards are dropped for another's (one endpoint kept) when their own,
/// host-scoped parts are idle, whatever the named parts they share: a named limit spent by
/// the first call does not keep its endpoint's entry, which would grow the map instead.
#[tokio::test(start_paused = true)]
async fn shared_parts_do_not_keep_an_idle_endpoint() -> Result {
    use resilient_http::breaker::BreakerConfig;

    let server = FaultServer::start().await?;
    let limit = RateLimitConfig::new(1, Duration::from_secs(60));
    let client = Client::builder()
        .circuit_breaker(BreakerConfig::builder().max_breakers(1).build()?)
        .default_policy(
            EndpointPolicy::new()
                .rate_limit(limit)
                .rate_limit_scope(Scope::named("api")?),
        )
        .build()?;
    client.get(server.url("/a")).send().await?;
    let first = format!("http://{}", server.addr());
    assert!(client.overload("default", &first).is_some());
    let other = format!("http://localhost:{}/a", server.addr().port());
    let refused = client
        .get(other.as_str())
        .deadline(Duration::from_secs(1))
        .send()
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|err| err.kind() == ErrorKind::RateLimited),
        "one bucket for both hosts: {refused:?}"
    );
    assert!(
        client.overload("default", &first).is_none(),
        "the first endpoint's entry is idle: dropped for the second"
    );
    Ok(())
}

/// A named hold is one for every rule that names it, whatever each rule's cap: a 429 on one
/// rule's route holds the other rule's, which fails at once rather than wait past its
/// deadline, sending nothing.
#[tokio::test(start_paused = true)]
async fn a_named_hold_holds_every_rule_that_names_it() -> Result {
    let server = FaultServer::start().await?;
    server.script("/a", [Reply::status(429).retry_after_secs(2)]);
    let client = Client::builder()
        .default_policy(
            EndpointPolicy::new()
                .max_attempts(1)
                .hold_scope(Scope::named("api")?),
        )
        .endpoint(
            "a",
            Matcher::new().path("/a"),
            EndpointPolicy::new().retry_after_cap(Duration::from_secs(10)),
        )
        .build()?;
    let first = client.get(server.url("/a")).send().await;
    assert!(first.is_err(), "{first:?}");
    let held = client
        .get(server.url("/b"))
        .deadline(Duration::from_secs(1))
        .send()
        .await;
    let err = held.err().ok_or("the named hold let /b through")?;
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert!(err.to_string().contains("name:api"), "{err}");
    assert_eq!(server.hits("/b"), 0);
    Ok(())
}

/// A reload keeps a rule's breaker (here forced open) when its settings and scope are
/// unchanged, and starts afresh when the scope changes.
#[tokio::test(start_paused = true)]
async fn a_reload_keeps_a_rule_breaker_it_does_not_change() -> Result {
    let file = "[default.breaker]\nscope = \"rule\"\n";
    let client = Client::builder().config_toml(file).build()?;
    let breakers = client.breakers().ok_or("breakers")?;
    breakers
        .get("default")
        .ok_or("the rule's breaker, made with the policy")?
        .force_open();
    client.reload(Client::builder().config_toml(file))?;
    let server = FaultServer::start().await?;
    let kept = client.get(server.url("/")).send().await;
    assert!(
        kept.as_ref()
            .is_err_and(|err| err.kind() == ErrorKind::CircuitOpen),
        "{kept:?}"
    );
    client.reload(Client::builder().config_toml("[default.breaker]\nscope = \"host\"\n"))?;
    client.get(server.url("/")).send().await?;
    Ok(())
}

/// A policy whose guards all share one named scope has one entry under `name:<name>`; with
/// a rule scope among them, under the rule's name.
#[tokio::test(start_paused = true)]
async fn the_handle_key_of_a_policy_without_host_scopes() -> Result {
    let api = Scope::named("api")?;
    let all_named = EndpointPolicy::new()
        .rate_limit(RateLimitConfig::new(10, Duration::from_secs(1)))
        .rate_limit_scope(api.clone())
        .hold_scope(api.clone())
        .retry_budget_scope(api.clone());
    let client = Client::builder()
        .default_policy(all_named.clone())
        .endpoint(
            "mixed",
            Matcher::new().path("/mixed"),
            all_named.hold_scope(Scope::Rule),
        )
        .build()?;
    let default = client.overload("default", "name:api").ok_or("named")?;
    assert_eq!(default.key(), "name:api");
    assert_eq!(default.rate_limit_idle(), Some(true));
    let mixed = client.overload("mixed", "mixed").ok_or("rule")?;
    assert_eq!(mixed.key(), "mixed");
    assert!(client.overload("mixed", "name:api").is_none());
    Ok(())
}
