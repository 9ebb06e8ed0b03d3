//! Policies from the user's own configuration (`ClientBuilder::config` with `PolicyConfig`):
//! the policy file's layout as a section of a larger TOML document and as JSON, driving a
//! client against the fault server exactly as the file does; mistakes name the key, and
//! settings that contradict each other name the policy.
#![cfg(feature = "config")]

use std::time::Duration;

use resilient_http::policy::PolicyConfig;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ClientBuilder, ErrorKind};
use serde::Deserialize;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// The policy as a file: default 3 attempts, 100 ms × 2, no jitter; "payments" (POST on
/// /v1/charges* at HOST) 1 attempt; "search" (/search*) 10 attempts within 1 s; "fragile"
/// (/fragile) 1 attempt, its breaker opening after 2 failures of 2.
const FILE: &str = r#"
[default]
max_attempts = 3
deadline = "30s"
retry_statuses = [500, 503]

[default.backoff]
base = "100ms"
max = "20s"
jitter = "none"

[[endpoint]]
name = "payments"
match = { host = "HOST", path = "/v1/charges*", methods = ["POST"] }
max_attempts = 1
deadline = "2s"

[[endpoint]]
name = "search"
match = { path = "/search*" }
max_attempts = 10
deadline = "1s"

[[endpoint]]
name = "fragile"
match = { path = "/fragile" }
max_attempts = 1
[endpoint.breaker]
window = 4
min_calls = 2
failure_rate = 0.5
open_for = "10s"
"#;

/// The same policy as the `[http]` section of a service's own TOML configuration.
const NESTED_TOML: &str = r#"
service = "orders"

[database]
url = "postgres://localhost/orders"

[http]

[http.default]
max_attempts = 3
deadline = "30s"
retry_statuses = [500, 503]

[http.default.backoff]
base = "100ms"
max = "20s"
jitter = "none"

[[http.endpoint]]
name = "payments"
match = { host = "HOST", path = "/v1/charges*", methods = ["POST"] }
max_attempts = 1
deadline = "2s"

[[http.endpoint]]
name = "search"
match = { path = "/search*" }
max_attempts = 10
deadline = "1s"

[[http.endpoint]]
name = "fragile"
match = { path = "/fragile" }
max_attempts = 1
[http.endpoint.breaker]
window = 4
min_calls = 2
failure_rate = 0.5
open_for = "10s"
"#;

/// The same policy in JSON.
const JSON: &str = r#"{
  "service": "orders",
  "database": { "url": "postgres://localhost/orders" },
  "http": {
    "default": {
      "max_attempts": 3,
      "deadline": "30s",
      "retry_statuses": [500, 503],
      "backoff": { "base": "100ms", "max": "20s", "jitter": "none" }
    },
    "endpoint": [
      {
        "name": "payments",
        "match": { "host": "HOST", "path": "/v1/charges*", "methods": ["POST"] },
        "max_attempts": 1,
        "deadline": "2s"
      },
      { "name": "search", "match": { "path": "/search*" }, "max_attempts": 10, "deadline": "1s" },
      {
        "name": "fragile",
        "match": { "path": "/fragile" },
        "max_attempts": 1,
        "breaker": { "window": 4, "min_calls": 2, "failure_rate": 0.5, "open_for": "10s" }
      }
    ]
  }
}"#;

/// A service's configuration, of which the policies are one section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    service: String,
    database: Database,
    http: PolicyConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Database {
    url: String,
}

/// What the policy does, through a client made by `builder`, against a fresh server.
async fn behaves_as_the_file(make: impl Fn(&str) -> ClientBuilder) {
    let server = FaultServer::start().await.unwrap();
    let client = make(&server.addr().to_string()).build().unwrap();
    for path in ["/v1/charges/7", "/other", "/search/q", "/fragile"] {
        server.script(path, [Reply::status(503)]);
    }

    // "payments": one attempt, even with an Idempotency-Key.
    let err = client
        .post(server.url("/v1/charges/7"))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("payments"));
    assert_eq!(server.hits("/v1/charges/7"), 1);

    // The default: 3 attempts, 100 ms then 200 ms apart.
    let started = Instant::now();
    let err = client.get(server.url("/other")).send().await.unwrap_err();
    assert_eq!(err.policy(), Some("default"));
    assert_eq!(server.hits("/other"), 3);
    assert_eq!(started.elapsed(), 300 * MS);

    // "search" inherits the backoff and stops at its own 1 s deadline: attempts at 0, 100,
    // 300 and 700 ms, the next sleep would end past it.
    let started = Instant::now();
    let err = client
        .get(server.url("/search/q"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("search"));
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(server.hits("/search/q"), 4);
    assert_eq!(started.elapsed(), 700 * MS);

    // "fragile": its breaker opens after two failures, and the third call is refused
    // without reaching the server.
    for _ in 0..2 {
        let err = client.get(server.url("/fragile")).send().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Status);
    }
    let err = client.get(server.url("/fragile")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(server.hits("/fragile"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_section_of_a_toml_document_works_as_the_file_does() {
    behaves_as_the_file(|host| Client::builder().config_toml(&FILE.replace("HOST", host))).await;
    behaves_as_the_file(|host| {
        let settings: Settings = toml::from_str(&NESTED_TOML.replace("HOST", host)).unwrap();
        assert_eq!(settings.service, "orders");
        assert_eq!(settings.database.url, "postgres://localhost/orders");
        Client::builder().config(settings.http)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn json_works_as_the_file_does() {
    behaves_as_the_file(|host| {
        let settings: Settings = serde_json::from_str(&JSON.replace("HOST", host)).unwrap();
        Client::builder().config(settings.http)
    })
    .await;
}

/// A section left out (`#[serde(default)]`) changes nothing: the library's defaults.
#[tokio::test(start_paused = true)]
async fn an_absent_section_keeps_the_defaults() {
    #[derive(Deserialize)]
    struct Optional {
        #[serde(default)]
        http: PolicyConfig,
    }
    let settings: Optional = toml::from_str("").unwrap();
    let server = FaultServer::start().await.unwrap();
    server.script("/flaky", [Reply::status(503)]);
    let client = Client::builder().config(settings.http).build().unwrap();
    client.get(server.url("/flaky")).send().await.unwrap_err();
    assert_eq!(server.hits("/flaky"), 3, "the default policy's 3 attempts");
}

/// JSON has no line to show, so the message names the key itself.
#[test]
fn json_mistakes_name_the_key() {
    let cases = [
        (
            r#"{"default": {"max_attempts": 0}}"#,
            r#""max_attempts": must be at least 1 and at most 100, got 0"#,
        ),
        (
            r#"{"default": {"max_attempts": 5000000000}}"#,
            r#""max_attempts": must be at least 1 and at most 100, got 5000000000"#,
        ),
        (
            r#"{"endpoint": [{"name": "x", "breaker": {"failure_rate": 1.5}}]}"#,
            r#""failure_rate": must be above 0 and at most 1, got 1.5"#,
        ),
        (
            r#"{"default": {"backoff": {"max": "2h"}}}"#,
            r#""max": must be at least zero and at most 1h, got 2h"#,
        ),
        (
            r#"{"default": {"deadline": "soon"}}"#,
            r#""deadline": invalid duration "soon""#,
        ),
        (
            r#"{"default": {"backoff": {"jitter": "fuzzy"}}}"#,
            r#""jitter": unknown jitter "fuzzy""#,
        ),
        (
            r#"{"default": {"retry_statuses": [503, 999]}}"#,
            r#""retry_statuses": 999 is not an HTTP status"#,
        ),
        (
            r#"{"default": {"rate_limit": {"rate": 0}}}"#,
            r#""rate": must be at least 1"#,
        ),
        (r#"{"default": {"atempts": 3}}"#, "unknown field `atempts`"),
        (
            r#"{"endpoint": [{"name": "x", "breaker": {"min_call": 3}}]}"#,
            "unknown field `min_call`",
        ),
        (r#"{"defaults": {}}"#, "unknown field `defaults`"),
        (
            r#"{"endpoint": [{"max_attempts": 1}]}"#,
            "missing field `name`",
        ),
    ];
    for (json, expected) in cases {
        let err = serde_json::from_str::<PolicyConfig>(json).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{json}\n  got: {err}\n  want: {expected}"
        );
    }
}

/// What only the builder can tell (a contradiction, a name taken twice, a setting only the
/// default policy has, a bad host) names the policy and the setting, as there is no line.
#[test]
fn what_the_builder_refuses_names_the_policy_and_the_key() {
    let cases = [
        (
            r#"{"endpoint": [{"name": "payments", "match": {}, "breaker": {"window": 10, "min_calls": 20}}]}"#,
            "policy \"payments\": min_calls (20) must not exceed the window's 10 calls",
        ),
        (
            r#"{"default": {"backoff": {"base": "2s", "max": "1s"}}}"#,
            "policy \"default\": backoff base (2s) must not exceed",
        ),
        (
            r#"{"endpoint": [{"name": "payments", "match": {}, "connect_timeout": "1s"}]}"#,
            "policy \"payments\": \"connect_timeout\": only the default policy can set it",
        ),
        (
            r#"{"endpoint": [{"name": "x", "match": {}}, {"name": "x", "match": {}}]}"#,
            "policy \"x\": \"name\": a policy of this name is already defined",
        ),
        (
            r#"{"endpoint": [{"name": "x", "match": {"host": "a b"}}]}"#,
            "policy \"x\": \"host\":",
        ),
        (
            r#"{"endpoint": [{"name": "x", "match": {"methods": ["GE T"]}}]}"#,
            "policy \"x\": \"methods\":",
        ),
    ];
    for (json, expected) in cases {
        let config: PolicyConfig = serde_json::from_str(json).unwrap();
        let err = Client::builder().config(config).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.to_string().contains(expected),
            "{json}\n  got: {err}\n  want: {expected}"
        );
    }

    // A rule's name is checked against those defined before, by the builder or a file.
    let config: PolicyConfig =
        serde_json::from_str(r#"{"endpoint": [{"name": "x", "match": {}}]}"#).unwrap();
    let err = Client::builder()
        .config_toml("[[endpoint]]\nname = \"x\"\nmatch = {}\n")
        .config(config.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("policy \"x\": \"name\""), "{err}");
    // And the config's rules against those of a file read after it.
    let err = Client::builder()
        .config(config)
        .config_toml("[[endpoint]]\nname = \"x\"\nmatch = {}\n")
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("<config_toml>:2: \"name\""),
        "{err}"
    );
}

/// The reqwest-middleware adapter takes the same builder, so the same check.
#[cfg(feature = "reqwest-middleware")]
#[test]
fn the_middleware_refuses_a_contradiction_too() {
    use resilient_http::middleware::ResilientMiddleware;
    let config: PolicyConfig =
        serde_json::from_str(r#"{"default": {"breaker": {"window": 10, "min_calls": 20}}}"#)
            .unwrap();
    let err = ResilientMiddleware::new(Client::builder().config(config)).unwrap_err();
    assert!(
        err.to_string()
            .contains("policy \"default\": min_calls (20) must not exceed"),
        "{err}"
    );
}

/// The refusal of `text` as a policy file given as text.
fn toml_refusal(text: &str) -> String {
    let err = Client::builder().config_toml(text).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    err.to_string()
}

/// Issue 22, item 18: text given to `config_toml` comes from no file, so its errors name
/// none (they named a `policy.toml` that did not exist); `config_file` names its path.
#[test]
fn config_toml_names_no_file() {
    let shown = toml_refusal("[default]\nmax_attempts = 0\n");
    assert!(
        shown.contains("<config_toml>:2: \"max_attempts\": must be at least 1"),
        "{shown}"
    );
    assert!(!shown.contains("policy.toml"), "{shown}");
}

/// Issue 22, item 18: a key written twice is named (it was `duplicate key in [...]`), in text
/// and in a file.
#[test]
fn a_duplicated_key_is_named() {
    let text = "[default.retry_budget]\nwindow = \"1s\"\nwindow = \"2s\"\n";
    let shown = toml_refusal(text);
    assert!(
        shown.contains("<config_toml>:3: duplicate key \"window\" in [default.retry_budget]"),
        "{shown}"
    );
    let dir = std::env::temp_dir().join(format!("resilient-http-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("b_dup.toml");
    std::fs::write(&path, text).unwrap();
    let err = Client::builder().config_file(&path).build().unwrap_err();
    let want = format!(
        "{}:3: duplicate key \"window\" in [default.retry_budget]",
        path.display()
    );
    assert!(err.to_string().contains(&want), "{err}\n  want: {want}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 22, item 18: a budget window out of range is refused with one range, the README's
/// (10 ms to 1 hour), in the same words from the file, from JSON and from the builder: `0s`
/// said "above zero", and `5ms` got the builder's own wording.
#[test]
fn a_budget_window_has_one_range_in_the_file_and_the_builder() {
    use resilient_http::policy::EndpointPolicy;
    use resilient_http::retry::BudgetConfig;

    for (window, value) in [
        ("5ms", 5 * MS),
        ("0s", Duration::ZERO),
        ("2h", 7_200_000 * MS),
    ] {
        let range = format!("must be at least 10ms and at most 1h, got {window}");
        let shown = toml_refusal(&format!("[default.retry_budget]\nwindow = \"{window}\"\n"));
        let want = format!("<config_toml>:2: \"window\": {range} in [default.retry_budget]");
        assert!(shown.contains(&want), "{shown}\n  want: {want}");

        let json = format!(r#"{{"default": {{"retry_budget": {{"window": "{window}"}}}}}}"#);
        let err = serde_json::from_str::<PolicyConfig>(&json).unwrap_err();
        let want = format!("\"window\": {range}");
        assert!(err.to_string().contains(&want), "{err}\n  want: {want}");

        let budget = BudgetConfig::new(0.2, 10, value);
        let err = Client::builder()
            .default_policy(EndpointPolicy::new().retry_budget(budget))
            .build()
            .unwrap_err();
        let want = format!("policy \"default\": retry_budget window {range}");
        assert!(err.to_string().contains(&want), "{err}\n  want: {want}");
    }
    for window in ["10ms", "1h"] {
        let text = format!("[default.retry_budget]\nwindow = \"{window}\"\n");
        Client::builder().config_toml(&text).build().unwrap();
    }
}

/// Issue 22, item 18: `shared` of the wrong type says what it may be (it said `wanted string
/// or table`), naming the line and the key.
#[test]
fn shared_of_the_wrong_type_says_local_or_redis() {
    for (text, line, table) in [
        (
            "[default.rate_limit]\nrate = 5\nshared = true\n",
            3,
            "[default.rate_limit]",
        ),
        (
            "[default.retry_budget]\nshared = 1\n",
            2,
            "[default.retry_budget]",
        ),
    ] {
        let shown = toml_refusal(text);
        let want = format!("<config_toml>:{line}: \"shared\":");
        assert!(shown.contains(&want), "{shown}\n  want: {want}");
        assert!(shown.contains("expected \"local\" or \"redis\""), "{shown}");
        assert!(shown.ends_with(&format!(" in {table}")), "{shown}");
    }
    let json = r#"{"default": {"rate_limit": {"rate": 5, "shared": true}}}"#;
    let err = serde_json::from_str::<PolicyConfig>(json).unwrap_err();
    assert!(
        err.to_string().contains("expected \"local\" or \"redis\""),
        "{err}"
    );
}

/// Issue 22, item 18: an endpoint rule without `match` matched every request, shadowing every
/// rule after it. It is refused at its line; `match = {}` says "every request" on purpose.
#[test]
fn an_endpoint_rule_without_match_is_refused() {
    let text = "[default]\nmax_attempts = 2\n\n[[endpoint]]\nname = \"catch-all\"\nmax_attempts = 1\n\n\
                [[endpoint]]\nname = \"payments\"\nmatch = { path = \"/pay*\" }\n";
    let shown = toml_refusal(text);
    let want = "<config_toml>:4: missing key \"match\"";
    assert!(shown.contains(want), "{shown}\n  want: {want}");
    assert!(
        shown.contains("match = {}"),
        "says how to match everything: {shown}"
    );
    assert!(shown.ends_with(" in [[endpoint]] \"catch-all\""), "{shown}");

    let json = r#"{"endpoint": [{"name": "catch-all", "max_attempts": 1}]}"#;
    let err = serde_json::from_str::<PolicyConfig>(json).unwrap_err();
    assert!(err.to_string().contains("missing field `match`"), "{err}");

    // Every request, said on purpose.
    let text = text.replace(
        "name = \"catch-all\"\n",
        "name = \"catch-all\"\nmatch = {}\n",
    );
    let client = Client::builder().config_toml(&text).build().unwrap();
    let url = url::Url::parse("http://api.example/pay/7").unwrap();
    assert_eq!(&*client.policy_name(&http::Method::POST, &url), "catch-all");
}

/// Issue 24, item 5: a key renamed so that each setting has one name says its new name.
#[test]
fn an_old_key_names_its_new_name() {
    // Each old key is written apart from its `=`, so that a rename by search and replace
    // over the tree cannot turn this test into one of the new keys.
    for (table, old, value, new) in [
        ("default", "attempts", "3", "max_attempts"),
        ("default.breaker", "window_size", "10", "window"),
        ("default.budget", "ratio", "0.1", "retry_budget"),
    ] {
        let text = format!("[{table}]\n{old} = {value}\n");
        let old = if new == "retry_budget" { "budget" } else { old };
        let want = format!("unknown key {old:?} (renamed to {new:?} in 0.1)");
        let shown = toml_refusal(&text);
        assert!(
            shown.contains(&want),
            "{text:?}\n  got: {shown}\n  want: {want}"
        );
        assert!(
            shown.starts_with("invalid configuration: <config_toml>:"),
            "{shown}"
        );
    }
}

/// Issue 24, item 5: `open_for_max` is in the file, and refused below `open_for`.
#[test]
fn the_breaker_open_for_max_is_a_file_key() {
    let ok = "[default.breaker]\nopen_for = \"2s\"\nopen_for_max = \"10s\"\n";
    assert!(Client::builder().config_toml(ok).build().is_ok());
    let shown = toml_refusal("[default.breaker]\nopen_for = \"20s\"\nopen_for_max = \"10s\"\n");
    assert!(
        shown.contains("open_for_max must not be below open_for"),
        "{shown}"
    );
}

/// Issue 25: `[….server_quota]` from JSON names the key as the file does, and a header name
/// the builder cannot take is an `InvalidConfig` at `build` naming the policy and the
/// setting, never a panic.
#[test]
fn server_quota_mistakes_name_the_setting() {
    use resilient_http::overload::{QuotaHeaders, ResetFormat, ServerQuotaConfig};
    use resilient_http::policy::EndpointPolicy;

    for (json, want) in [
        (
            r#"{"default": {"server_quota": {"follow": "sometimes"}}}"#,
            r#""follow": unknown value "sometimes""#,
        ),
        (
            r#"{"default": {"server_quota": {"headers": {"remaining": "a", "reset": "b", "reset_format": "weeks"}}}}"#,
            r#""reset_format": unknown format "weeks""#,
        ),
        (
            r#"{"default": {"server_quota": {"headers": {"remaining": "a b", "reset": "b"}}}}"#,
            r#""remaining": "a b" is not a valid header name"#,
        ),
        (
            r#"{"default": {"server_quota": {"followed": "hold"}}}"#,
            "unknown field `followed`",
        ),
    ] {
        let err = serde_json::from_str::<PolicyConfig>(json).unwrap_err();
        assert!(
            err.to_string().contains(want),
            "{json}\n  got: {err}\n  want: {want}"
        );
    }
    let json = r#"{"default": {"server_quota": {"follow": "pace", "headers": {"remaining": "x-left", "reset": "x-reset", "reset_format": "epoch"}}}}"#;
    let config: PolicyConfig = serde_json::from_str(json).unwrap();
    Client::builder().config(config).build().unwrap();

    let cases = [
        (
            QuotaHeaders::named("x-left", "reset\n"),
            "policy \"default\": server_quota headers: `reset` is not a valid header name",
        ),
        (
            QuotaHeaders::named("x-left", "x-reset").limit("x limit"),
            "policy \"default\": server_quota headers: `limit` is not a valid header name",
        ),
        (
            QuotaHeaders::auto().reset_format(ResetFormat::Epoch),
            "policy \"default\": server_quota headers: reset_format applies to named fields",
        ),
    ];
    for (headers, want) in cases {
        let quota = ServerQuotaConfig::hold().headers(headers);
        let err = Client::builder()
            .default_policy(EndpointPolicy::new().server_quota(quota))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(want), "{err}\n  want: {want}");
    }
    let fine = QuotaHeaders::named("X-Left", http::HeaderName::from_static("x-reset"));
    let quota = ServerQuotaConfig::pace().headers(fine.limit(String::from("x-limit")));
    Client::builder()
        .default_policy(EndpointPolicy::new().server_quota(quota))
        .build()
        .unwrap();
}
