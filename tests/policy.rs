//! Per-endpoint policies: matching, inheritance, per-request overrides and policy files, all
//! through the client against the fault server (tokio's clock paused).
#![cfg(feature = "config")]

use std::time::Duration;

use resilient_http::policy::{EndpointPolicy, Matcher};
use resilient_http::retry::Jitter;
use resilient_http::testkit::{FaultServer, Reply};
use resilient_http::{Client, ErrorKind};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// Default: 3 attempts, 100 ms × 2, no jitter. "payments": POST on /v1/charges*, 1 attempt.
/// "search": paths under /search, 10 attempts, a 1 s deadline.
fn client(server: &FaultServer) -> Client {
    let host = server.addr().to_string();
    Client::builder()
        .default_policy(EndpointPolicy::new().max_attempts(3).jitter(Jitter::None))
        .endpoint(
            "payments",
            Matcher::new()
                .host(&host)
                .unwrap()
                .path("/v1/charges*")
                .methods(["POST"])
                .unwrap(),
            EndpointPolicy::new().max_attempts(1),
        )
        .endpoint(
            "search",
            Matcher::new().path("/search*"),
            EndpointPolicy::new()
                .max_attempts(10)
                .deadline(Duration::from_secs(1)),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_first_matching_rule_decides_and_the_rest_is_inherited() {
    let server = FaultServer::start().await.unwrap();
    let client = client(&server);
    for path in ["/v1/charges", "/v1/charges/7", "/search/q", "/other"] {
        server.script(path, [Reply::status(503)]);
    }
    // POST /v1/charges/7 is "payments": one attempt, even with an Idempotency-Key.
    let err = client
        .post(server.url("/v1/charges/7"))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("payments"));
    assert_eq!(server.hits("/v1/charges/7"), 1);
    assert!(err.to_string().contains("(policy payments)"), "{err}");

    // An escaped letter is the letter: a server reads /v1/charges/8, and so does the rule.
    server.script("/v1/%63harges/8", [Reply::status(503)]);
    let err = client
        .post(server.url("/v1/%63harges/8"))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("payments"));
    assert_eq!(server.hits("/v1/%63harges/8"), 1);

    // GET /v1/charges is not (POST only): the default, 3 attempts.
    let err = client
        .get(server.url("/v1/charges"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("default"));
    assert_eq!(server.hits("/v1/charges"), 3);

    // "search" inherits the backoff (100 ms × 2, no jitter) and stops at its own 1 s
    // deadline, long before its 10 attempts: attempts at 0, 100, 300 and 700 ms; the next
    // sleep (800 ms) would end past the deadline.
    let started = Instant::now();
    let err = client
        .get(server.url("/search/q"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("search"));
    assert_eq!(server.hits("/search/q"), 4);
    assert_eq!(started.elapsed(), 700 * MS);
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(err.timeout(), Some(Duration::from_secs(1)));

    client.get(server.url("/other")).send().await.unwrap_err();
    assert_eq!(server.hits("/other"), 3);
}

#[tokio::test(start_paused = true)]
async fn per_request_overrides() {
    let server = FaultServer::start().await.unwrap();
    let client = client(&server);
    server.script("/a", [Reply::status(503)]);
    client
        .get(server.url("/a"))
        .no_retry()
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/a"), 1);

    server.script("/b", [Reply::status(503)]);
    client
        .get(server.url("/b"))
        .max_attempts(5)
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/b"), 5);

    server.script("/c", [Reply::status(503)]);
    let err = client
        .get(server.url("/c"))
        .policy("payments")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("payments"));
    assert_eq!(server.hits("/c"), 1);

    server.script("/d", [Reply::hang()]);
    let started = Instant::now();
    let err = client
        .get(server.url("/d"))
        .deadline(Duration::from_millis(250))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(started.elapsed(), 250 * MS);

    let err = client
        .get(server.url("/e"))
        .policy("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.to_string().contains("no policy named \"nope\""),
        "{err}"
    );
    assert_eq!(server.hits("/e"), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_statuses_and_breaker_scopes_per_policy() {
    let server = FaultServer::start().await.unwrap();
    let client = Client::builder()
        .default_policy(EndpointPolicy::new().jitter(Jitter::None))
        .endpoint(
            "locks",
            Matcher::new().path("/locks*"),
            EndpointPolicy::new()
                .retry_statuses([409])
                .breaker_scope(resilient_http::policy::Scope::Rule),
        )
        .build()
        .unwrap();
    server.script("/locks/1", [Reply::status(409)]);
    server.script("/locks/2", [Reply::status(503)]);
    client.get(server.url("/locks/1")).send().await.unwrap_err();
    assert_eq!(server.hits("/locks/1"), 3, "409 is transient here");
    let err = client.get(server.url("/locks/2")).send().await.unwrap_err();
    assert!(!err.is_transient(), "503 is not in this policy's list");
    assert_eq!(server.hits("/locks/2"), 1);
    let breakers = client.breakers_for("locks").unwrap();
    // One breaker for the rule, under its name.
    assert!(breakers.get("locks").is_some());
    assert_eq!(breakers.len(), 1);
}

#[test]
fn invalid_combinations_fail_at_build() {
    let err = Client::builder()
        .endpoint("a", Matcher::new(), EndpointPolicy::new())
        .endpoint("a", Matcher::new(), EndpointPolicy::new())
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("policy \"a\": name: a policy of this name is already defined"),
        "{err}"
    );
    let err = Client::builder()
        .endpoint(
            "x",
            Matcher::new(),
            EndpointPolicy::new().connect_timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("policy \"x\": connect_timeout: only the default policy can set it"),
        "{err}"
    );
    let err = Client::builder()
        .endpoint(
            "slow",
            Matcher::new(),
            EndpointPolicy::new().backoff_base(Duration::from_secs(60)),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(
        err.to_string().contains("policy \"slow\": backoff base"),
        "{err}"
    );
}

/// A rule is refused by the same check whether it comes from the builder or a file, and a
/// file's rule is located in the file even when the name it redefines came from elsewhere
/// (the builder, an earlier file): the file once checked only its own names.
#[test]
fn a_rule_name_taken_before_the_file_is_refused_at_its_line() {
    let file = "[default]\nmax_attempts = 2\n\n[[endpoint]]\nname = \"x\"\nmatch = {}\n";
    let want =
        "<config_toml>:5: \"name\": a policy of this name is already defined in [[endpoint]] \"x\"";
    let from_builder = Client::builder()
        .endpoint("x", Matcher::new(), EndpointPolicy::new())
        .config_toml(file)
        .build()
        .unwrap_err();
    let from_a_file = Client::builder()
        .config_toml("[[endpoint]]\nname = \"x\"\nmatch = {}\n")
        .config_toml(file)
        .build()
        .unwrap_err();
    for err in [from_builder, from_a_file] {
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.to_string().contains(want), "got: {err}\n  want: {want}");
    }
    // A builder rule after the file is the builder's mistake, with the same words.
    let err = Client::builder()
        .config_toml(file)
        .endpoint("x", Matcher::new(), EndpointPolicy::new())
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("policy \"x\": name: a policy of this name is already defined"),
        "{err}"
    );
}

const FILE: &str = r#"
[default]
max_attempts = 3                 # total attempts, including the first
attempt_timeout = "10s"      # per attempt, including reading the body
deadline = "30s"             # across all attempts and sleeps
connect_timeout = "5s"
retry_statuses = [408, 429, 500, 502, 503, 504]
retry_non_idempotent = false # POST/PATCH only with an Idempotency-Key unless true
retry_after_cap = "20s"

[default.backoff]
base = "100ms"
max = "20s"
multiplier = 2.0
jitter = "none"              # full | equal | decorrelated | none

[default.breaker]
enabled = true
window = 100            # calls in the count-based window
failure_rate = 0.5
min_calls = 20
open_for = "5s"
half_open_probes = 1

[[endpoint]]
name = "payments"
match = { host = "HOST", path = "/v1/charges*", methods = ["POST"] }
max_attempts = 1
deadline = "2s"
[endpoint.breaker]
failure_rate = 0.2
"#;

#[tokio::test(start_paused = true)]
async fn the_documented_policy_file_works() {
    let server = FaultServer::start().await.unwrap();
    let text = FILE.replace("HOST", &server.addr().to_string());
    let client = Client::builder().config_toml(&text).build().unwrap();
    server.script("/v1/charges", [Reply::status(503)]);
    server.script("/v1/other", [Reply::status(503)]);
    let err = client
        .post(server.url("/v1/charges"))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.policy(), Some("payments"));
    assert_eq!(server.hits("/v1/charges"), 1);
    let started = Instant::now();
    client
        .get(server.url("/v1/other"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(server.hits("/v1/other"), 3);
    assert_eq!(started.elapsed(), 300 * MS, "no jitter: 100 ms + 200 ms");
}

#[test]
fn a_policy_file_is_read_from_disk() {
    let dir = std::env::temp_dir().join(format!("resilient-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, "[default]\nmax_attempts = 2\n").unwrap();
    Client::builder().config_file(&path).build().unwrap();
    std::fs::write(&path, "[default]\natempts = 2\n").unwrap();
    let err = Client::builder().config_file(&path).build().unwrap_err();
    let expected = format!("{}:2: unknown key \"atempts\" in [default]", path.display());
    assert!(err.to_string().contains(&expected), "{err}");
    let missing = Client::builder()
        .config_file(dir.join("missing.toml"))
        .build();
    assert!(missing.unwrap_err().to_string().contains("cannot read"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_file_mistake_names_the_line_and_the_key() {
    let cases = [
        (
            "[default]\nmax_attempts = 3\n\n[[endpoint]]\nname = \"payments\"\natempts = 1\n",
            "<config_toml>:6: unknown key \"atempts\" in [[endpoint]] \"payments\"",
        ),
        (
            "[default]\nmax_attempts = \"three\"\n",
            "<config_toml>:2: \"max_attempts\":",
        ),
        (
            "[default]\nmax_attempts = 0\n",
            "<config_toml>:2: \"max_attempts\": must be at least 1",
        ),
        (
            "[default]\ndeadline = \"2 parsecs\"\n",
            "<config_toml>:2: \"deadline\": invalid duration",
        ),
        (
            "[default.backoff]\njitter = \"fuzzy\"\n",
            "<config_toml>:2: \"jitter\": unknown jitter \"fuzzy\"",
        ),
        (
            "[default.breaker]\nfailure_rate = 1.5\n",
            "<config_toml>:2: \"failure_rate\": must be above 0 and at most 1, got 1.5 in [default.breaker]",
        ),
        (
            "[default]\nretry_statuses = [200, 999]\n",
            "<config_toml>:2: \"retry_statuses\": 999 is not an HTTP status",
        ),
        (
            "[[endpoint]]\nname = \"x\"\nmatch = { hots = \"a\" }\n",
            "<config_toml>:3: unknown key \"hots\" in [[endpoint]] \"x\"",
        ),
        (
            "[[endpoint]]\nname = \"x\"\nmatch = { methods = [\"post\"] }\n",
            "<config_toml>:3: \"methods\": invalid method \"post\" in match: methods are case-sensitive",
        ),
        (
            "[[endpoint]]\nname = \"x\"\nconnect_timeout = \"1s\"\nmatch = {}\n",
            "<config_toml>:3: \"connect_timeout\": only the default policy can set it",
        ),
        (
            "[[endpoint]]\nname = \"x\"\nmatch = {}\n[[endpoint]]\nname = \"x\"\nmatch = {}\n",
            "<config_toml>:5: \"name\": a policy of this name is already defined",
        ),
        (
            "[[endpoint]]\nname = \"a\"\nmatch = {}\n[[ endpoint ]]\nmax_attempts = 2\n",
            "<config_toml>:4: missing key \"name\" in [[endpoint]]",
        ),
        (
            "[default]\nbackoff = { base = \"fast\" }\n",
            "<config_toml>:2: \"base\": invalid duration",
        ),
        (
            "\u{FEFF}\n[endpoint.match]\nhost = \"a\"\n[[endpoint]]\nname = \"x\"\n",
            "<config_toml>:",
        ),
        ("[default\nmax_attempts = 1\n", "<config_toml>:1:"),
        ("[sideways]\n", "<config_toml>:1: unknown key \"sideways\""),
    ];
    for (text, expected) in cases {
        let err = Client::builder().config_toml(text).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let shown = err.to_string();
        assert!(
            shown.contains(expected),
            "{text:?}\n  got: {shown}\n  want: {expected}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hang_under_a_short_deadline_still_trips_the_breaker() {
    let server = FaultServer::start().await.unwrap();
    server.script("/v1/charges", [Reply::hang()]);
    let client = Client::builder()
        .endpoint(
            "payments",
            Matcher::new().path("/v1/charges*"),
            EndpointPolicy::new()
                .max_attempts(1)
                .deadline(Duration::from_secs(2))
                .breaker_min_calls(2),
        )
        .build()
        .unwrap();
    for _ in 0..2 {
        let err = client
            .get(server.url("/v1/charges"))
            .send()
            .await
            .unwrap_err();
        // The call ended at its deadline; its attempt timed out on its own clock, and the
        // breaker counted that against the endpoint.
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err:?}");
        assert_eq!(
            err.attempts()[0].outcome,
            resilient_http::AttemptOutcome::Error(ErrorKind::AttemptTimeout)
        );
    }
    let err = client
        .get(server.url("/v1/charges"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(server.hits("/v1/charges"), 2);
}

/// Defect 6 of issue 12: `window = 4000000000` was accepted and the first request
/// aborted the process on a 4 GB allocation; 50 000 000 made every failure scan the window
/// for seconds. Every numeric key now has a maximum, refused with the file, line and key.
#[test]
fn every_numeric_key_has_a_maximum_in_the_file() {
    let cases = [
        (
            "[default.breaker]\nwindow = 4000000000\n",
            "<config_toml>:2: \"window\": must be at least 1 and at most 10000, got 4000000000 in [default.breaker]",
        ),
        (
            "[default.breaker]\nwindow = 50000000\n",
            "<config_toml>:2: \"window\": must be at least 1 and at most 10000, got 50000000",
        ),
        (
            "[default.breaker]\nwindow = 99999999999\n",
            "<config_toml>:2: \"window\": must be at least 1 and at most 10000",
        ),
        (
            "[default.breaker]\nwindow = -1\n",
            "<config_toml>:2: \"window\": must be at least 1 and at most 10000, got -1",
        ),
        (
            "[[endpoint]]\nname = \"x\"\n\n[endpoint.breaker]\nwindow = 10001\n",
            "<config_toml>:5: \"window\": must be at least 1 and at most 10000, got 10001 in [[endpoint]] \"x\"",
        ),
        (
            "[default.breaker]\nmin_calls = 10001\n",
            "<config_toml>:2: \"min_calls\": must be at least 1 and at most 10000",
        ),
        (
            "[default.breaker]\nopen_for = \"2h\"\n",
            "<config_toml>:2: \"open_for\": must be above zero and at most 1h, got 2h",
        ),
        (
            "[default.breaker]\nhalf_open_probes = 5000\n",
            "<config_toml>:2: \"half_open_probes\": must be at least 1 and at most 1023",
        ),
        (
            "[default]\nmax_attempts = 4000000000\n",
            "<config_toml>:2: \"max_attempts\": must be at least 1 and at most 100, got 4000000000 in [default]",
        ),
        (
            "[default]\n\nattempt_timeout = \"25h\"\n",
            "<config_toml>:3: \"attempt_timeout\": must be above zero and at most 1day, got 1day 1h",
        ),
        (
            "[default]\ndeadline = \"400years\"\n",
            "<config_toml>:2: \"deadline\": must be above zero and at most 1day",
        ),
        (
            "[default]\nconnect_timeout = \"2days\"\n",
            "<config_toml>:2: \"connect_timeout\": must be above zero and at most 1day",
        ),
        (
            "[default]\nretry_after_cap = \"2days\"\n",
            "<config_toml>:2: \"retry_after_cap\": must be at least zero and at most 1day",
        ),
        (
            "[default]\nbody_limit = 2147483648\n",
            "<config_toml>:2: \"body_limit\": must be at least 1 and at most 1073741824",
        ),
        (
            "[default.backoff]\nmax = \"2h\"\n",
            "<config_toml>:2: \"max\": must be at least zero and at most 1h, got 2h in [default.backoff]",
        ),
        (
            "[default.backoff]\nmultiplier = 1e300\n",
            "<config_toml>:2: \"multiplier\": must be at least 1 and at most 100",
        ),
        (
            "[[endpoint]]\nname = \"y\"\nbackoff = { base = \"90m\" }\n",
            "<config_toml>:3: \"base\": must be at least zero and at most 1h",
        ),
        (
            "[default.hedge]\nafter = \"50ms\"\nmax = 4\n",
            "<config_toml>:3: \"max\": must be at least 0 and at most 3, got 4 in [default.hedge]",
        ),
        (
            "[[endpoint]]\nname = \"h\"\n[endpoint.hedge]\nafter = \"0s\"\n",
            "<config_toml>:4: \"after\": must be above zero and at most 1h",
        ),
        (
            "[default.hedge]\nmax = 1\n",
            "<config_toml>:1: missing key \"after\"",
        ),
    ];
    for (text, expected) in cases {
        let err = Client::builder().config_toml(text).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let shown = err.to_string();
        assert!(
            shown.contains(expected),
            "{text:?}\n  got: {shown}\n  want: {expected}"
        );
    }
    // The largest values are accepted.
    let largest = "[default]\nmax_attempts = 100\ndeadline = \"1day\"\nbody_limit = 1073741824\n\
                   [default.breaker]\nwindow = 10000\nmin_calls = 10000\nopen_for = \"1h\"\n\
                   [default.hedge]\nafter = \"1h\"\nmax = 3\n";
    Client::builder().config_toml(largest).build().unwrap();
}

#[test]
fn a_file_from_disk_names_itself_when_a_value_is_too_large() {
    let dir = std::env::temp_dir().join(format!("rh-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge.toml");
    std::fs::write(&path, "[default.breaker]\nwindow = 4000000000\n").unwrap();
    let err = Client::builder().config_file(&path).build().unwrap_err();
    let expected = format!("{}:2: \"window\": must be", path.display());
    assert!(err.to_string().contains(&expected), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same maxima through the builders: the breaker's (call and time windows), the retry
/// policy's, the client's and an endpoint policy's; each error names the setting.
#[test]
fn every_numeric_setting_has_a_maximum_in_the_builders() {
    use resilient_http::breaker::{BreakerConfig, Window};
    use resilient_http::hedge::HedgeConfig;
    use resilient_http::retry::RetryPolicy;
    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    let breaker = |b: resilient_http::breaker::BreakerConfigBuilder| b.build().unwrap_err();
    let time = |length, buckets| BreakerConfig::builder().window(Window::Time { length, buckets });
    let cases = [
        (
            breaker(BreakerConfig::builder().window(Window::Calls(4_000_000_000))),
            "window (calls) must be at least 1 and at most 10000, got 4000000000",
        ),
        (
            breaker(BreakerConfig::builder().window(Window::Calls(10_001))),
            "at most 10000",
        ),
        (
            breaker(time(HOUR + MS, 10)),
            "window length must be above zero and at most 1h",
        ),
        (
            breaker(time(HOUR, 101)),
            "window buckets must be at least 1 and at most 100, got 101",
        ),
        (
            breaker(time(Duration::from_millis(99), 100)),
            "window buckets must be at least 1ms each",
        ),
        (
            breaker(time(HOUR, u32::MAX)),
            "window buckets must be at least 1 and at most 100",
        ),
        (
            breaker(BreakerConfig::builder().min_calls(10_001)),
            "min_calls must be at least 1 and at most 10000",
        ),
        (
            breaker(
                BreakerConfig::builder()
                    .window(Window::Calls(10))
                    .min_calls(11),
            ),
            "min_calls (11) must not exceed the window's 10 calls",
        ),
        (
            breaker(
                BreakerConfig::builder()
                    .open_for(HOUR)
                    .open_for_max(2 * HOUR),
            ),
            "open_for_max must be above zero and at most 1h",
        ),
        (
            breaker(BreakerConfig::builder().slow_calls(2 * DAY, 0.5)),
            "slow_call_duration must be above zero and at most 1day",
        ),
        (
            breaker(BreakerConfig::builder().max_breakers(usize::MAX)),
            "max_breakers must be at least 1 and at most 100000",
        ),
        (
            RetryPolicy::builder()
                .max_attempts(101)
                .build()
                .unwrap_err(),
            "max_attempts must be at least 1 and at most 100, got 101",
        ),
        (
            RetryPolicy::builder()
                .backoff_multiplier(f64::INFINITY)
                .build()
                .unwrap_err(),
            "backoff_multiplier must be at least 1 and at most 100, got inf",
        ),
        (
            RetryPolicy::builder()
                .backoff_max(Duration::MAX)
                .build()
                .unwrap_err(),
            "backoff_max must be at least zero and at most 1h",
        ),
        (
            RetryPolicy::builder()
                .retry_after_cap(2 * DAY)
                .build()
                .unwrap_err(),
            "retry_after_cap must be at least zero and at most 1day",
        ),
        (
            RetryPolicy::builder()
                .hedge(HedgeConfig::new(HOUR + MS, 1))
                .build()
                .unwrap_err(),
            "hedge after must be above zero and at most 1h",
        ),
        (
            Client::builder()
                .default_policy(EndpointPolicy::new().hedge(HedgeConfig::new(MS, 4)))
                .build()
                .unwrap_err(),
            "policy \"default\": hedge max must be at least 0 and at most 3, got 4",
        ),
        (
            Client::builder()
                .deadline(Duration::MAX)
                .build()
                .unwrap_err(),
            "policy \"default\": deadline must be above zero and at most 1day",
        ),
        (
            Client::builder()
                .attempt_timeout(DAY + MS)
                .build()
                .unwrap_err(),
            "policy \"default\": attempt_timeout must be above zero and at most 1day",
        ),
        (
            Client::builder()
                .connect_timeout(2 * DAY)
                .build()
                .unwrap_err(),
            "policy \"default\": connect_timeout must be above zero and at most 1day",
        ),
        (
            Client::builder()
                .default_policy(EndpointPolicy::new().body_limit(u64::MAX))
                .build()
                .unwrap_err(),
            "policy \"default\": body_limit must be at least 1 and at most 1073741824",
        ),
        (
            Client::builder()
                .endpoint(
                    "bulk",
                    Matcher::new(),
                    EndpointPolicy::new().breaker_window(50_000_000),
                )
                .build()
                .unwrap_err(),
            "policy \"bulk\": breaker_window must be at least 1 and at most 10000, got 50000000",
        ),
        (
            Client::builder()
                .endpoint(
                    "statuses",
                    Matcher::new(),
                    EndpointPolicy::new().retry_statuses(std::iter::repeat_n(503, 501)),
                )
                .build()
                .unwrap_err(),
            "policy \"statuses\": retry_statuses holds too many entries",
        ),
    ];
    for (err, expected) in cases {
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let shown = err.to_string();
        assert!(shown.contains(expected), "got: {shown}\n  want: {expected}");
    }
    // The largest values are accepted.
    BreakerConfig::builder()
        .window(Window::Time {
            length: HOUR,
            buckets: 100,
        })
        .min_calls(10_000)
        .open_for(HOUR)
        .open_for_max(HOUR)
        .max_breakers(100_000)
        .build()
        .unwrap();
    BreakerConfig::builder()
        .window(Window::Calls(10_000))
        .min_calls(10_000)
        .build()
        .unwrap();
    RetryPolicy::builder()
        .max_attempts(100)
        .backoff_max(HOUR)
        .backoff_multiplier(100.0)
        .build()
        .unwrap();
}

/// A mistake only the whole policy shows (two settings that contradict each other) names the
/// file, the line that sets one of them, and the table, as any other mistake in a file.
#[test]
fn settings_that_contradict_each_other_name_the_line_too() {
    let cases = [
        (
            "[default]\nmax_attempts = 2\n\n[default.breaker]\nwindow = 100\nmin_calls = 9523\n",
            "<config_toml>:6: min_calls (9523) must not exceed the window's 100 calls",
            "in [default.breaker]",
        ),
        (
            "[default.backoff]\nmax = \"1ms\"\nbase = \"7s\"\n",
            "<config_toml>:3: backoff base (7s) must not exceed",
            "in [default.backoff]",
        ),
        (
            "[default]\nmax_attempts = 2\n\n[[endpoint]]\nname = \"x\"\nbackoff = { base = \"2s\", max = \"1s\" }\nmatch = {}\n",
            "<config_toml>:6: backoff base (2s) must not exceed",
            "in [[endpoint]] \"x\"",
        ),
    ];
    for (text, line, section) in cases {
        let err = Client::builder().config_toml(text).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let shown = err.to_string();
        assert!(
            shown.contains(line) && shown.contains(section),
            "{text:?}\n  got: {shown}\n  want: {line} … {section}"
        );
    }
}
