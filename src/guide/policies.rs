//! Per-endpoint policies: one client, different rules per API, in code or in a TOML file.
//!
//! An **endpoint** is where a request goes, named by its **endpoint key**: scheme, host and port
//! (`https://api.example.com`; never the path). A **policy** is a set of settings: the default
//! policy, and endpoint rules, each matched by method, host (`api.example.com`,
//! `*.example.com`, an optional `:port`) and path (`/v1/charges`, or the prefix `/v1/*`). The
//! first rule that matches wins; what a rule leaves unset comes from the default policy. Paths
//! compare as a server reads them: `/v1/%63harges` is `/v1/charges`. The chosen policy's name
//! is in every error ([`Error::policy`](crate::Error::policy)).
//!
//! The breaker, `Retry-After` holds, the rate limit, the bulkhead and the retry budget keep
//! their state per endpoint key under each rule, unless the guard's
//! [`Scope`](crate::policy::Scope) says otherwise (see [below](#endpoints-and-scopes)).
//!
//! # Defaults and why
//!
//! | setting | default | as in |
//! |---|---|---|
//! | attempt timeout | 10 s, covers the body | .NET standard resilience handler |
//! | deadline | 30 s for the whole call, from the first poll | .NET standard resilience handler |
//! | connect timeout | 5 s | common practice |
//! | transient statuses | 408, 429, 500, 502, 503, 504 | curl `--retry`, urllib3, .NET |
//! | permanent statuses | every other 4xx and 5xx (501, 505 included) | |
//! | transient errors | connect/DNS failure, timeout, reset, HTTP/2 `REFUSED_STREAM`/`GOAWAY` | |
//! | permanent errors | invalid request, malformed response, failed TLS handshake (bad certificate), redirect loop, redirect to a URL with user info | |
//! | redirects | followed, up to 10; one whose target carries user info (`http://bob:pw@…`) is refused (see [observability](super::observability#redirects-to-a-url-with-user-info-are-refused)) | reqwest; curl drops such credentials |
//! | attempts | 3 in total | Polly/.NET, AWS standard mode |
//! | streams an HTTP/2 server turns away (`REFUSED_STREAM`; a graceful `GOAWAY`, for requests that may be repeated) | resent, the first at once and the rest after a pause of up to 2 ms, up to 32 per call ([`MAX_RESENDS`](crate::retry::MAX_RESENDS)) and within the deadline, spending no attempt or backoff, and no retry budget for the first 3 ([`FREE_RESENDS`](crate::retry::FREE_RESENDS)); not a breaker failure | gRPC transparent retry (A6) |
//! | backoff | 100 ms × 2, cap 20 s, full jitter (`equal`, `decorrelated`, `none` available) | AWS "Exponential Backoff And Jitter" |
//! | `Retry-After` | obeyed up to 20 s; above, or past the deadline: no retry, [`err.retry_after()`](crate::Error::retry_after) tells | Envoy discards > 300 s |
//! | POST / PATCH | retried only if never sent, or with `Idempotency-Key`, or opted in | Envoy, gRPC, IETF idempotency-key draft |
//! | breaker | opens at ≥ 50 % failures of the last 100 calls (once ≥ 20); open 5 s, doubling to 60 s; 1 probe; ≤ 1024 endpoints | Resilience4j, .NET |
//! | breaker and 429 | a 429 is not a breaker failure (a rate limiter's "slow down"; the call still backs off and holds); `count_429` opts in | |
//! | retry budget | retries add at most 20 % of first attempts + 10/s, over 10 s, per endpoint | Finagle (exactly this), Envoy 20 % |
//! | `Retry-After` hold | a 429/503 with `Retry-After` (within the cap) holds its endpoint for every call | |
//! | rate limit, bulkhead | off unless configured | |
//! | the server's advertised quota (IETF `RateLimit`, `X-RateLimit-*`) | followed: a scope whose remaining count reaches 0 is held until the reset | |
//! | whose state a guard keeps (breaker, hold, rate limit, bulkhead, budget) | one per endpoint key under each rule (scope `"host"`) | |
//!
//! # The reqwest client underneath
//!
//! To set a user agent, default headers, a proxy, TLS roots or anything else on the reqwest client
//! the builder makes, give it a closure, [`ClientBuilder::reqwest`](crate::ClientBuilder::reqwest):
//! the builder turns reqwest's own retry off after yours. A `timeout` set there is the default
//! policy's attempt timeout, and a `connect_timeout` the client's, when nothing else sets them;
//! set also another way, [`build`](crate::ClientBuilder::build) fails naming both (reqwest's
//! `read_timeout` works as in reqwest).
//! [`ClientBuilder::reqwest_client`](crate::ClientBuilder::reqwest_client) hands over a whole
//! `reqwest::Client` instead; its `timeout` is taken the same way, its connect timeout stays its
//! own (the builder's `connect_timeout` is refused with it), and reqwest's own HTTP/2 retry stays
//! until you turn it off (see [retries](super::retries#what-reqwest-and-hyper-resend-by-themselves)).
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//!
//! let client = Client::builder()
//!     .connect_timeout(Duration::from_secs(2))
//!     .reqwest(|b| b.user_agent("orders/1.4").pool_max_idle_per_host(8))
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! # In code
//!
//! ```
//! use std::time::Duration;
//! use reqwest::Method;
//! use resilient_http::Client;
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().max_attempts(3))
//!     .endpoint(
//!         "payments",
//!         Matcher::new().host("api.example.com")?.path("/v1/charges*").methods(["POST"])?,
//!         EndpointPolicy::new().max_attempts(1).deadline(Duration::from_secs(2)),
//!     )
//!     .build()?;
//!
//! let charges = "https://api.example.com/v1/charges".parse()?;
//! assert_eq!(&*client.policy_name(&Method::POST, &charges), "payments");
//! assert_eq!(&*client.policy_name(&Method::GET, &charges), "default");
//! # Ok(())
//! # }
//! ```
//!
//! Per request, [`RequestBuilder`](crate::RequestBuilder) overrides the policy:
//! [`.policy("payments")`](crate::RequestBuilder::policy), [`.no_retry()`](crate::RequestBuilder::no_retry),
//! [`.max_attempts(5)`](crate::RequestBuilder::max_attempts), [`.deadline(d)`](crate::RequestBuilder::deadline):
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/report", [Reply::status(503)]);
//!
//! let client = Client::new()?;
//! let err = client.get(server.url("/report")).no_retry().send().await.err().ok_or("a 503")?;
//! assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
//! assert_eq!(server.hits("/report"), 1, "no_retry: one attempt");
//! # Ok(())
//! # }
//! ```
//!
//! # Which setting wins
//!
//! A setting of the default policy can be given several ways: the
//! [`ClientBuilder`](crate::ClientBuilder) setters, [`retry(RetryPolicy)`](crate::ClientBuilder::retry),
//! [`circuit_breaker(BreakerConfig)`](crate::ClientBuilder::circuit_breaker),
//! [`default_policy(EndpointPolicy)`](crate::ClientBuilder::default_policy), or a policy file's
//! `[default]`. They all write into one default policy, setting by setting, and the later call
//! wins. A `RetryPolicy` or `BreakerConfig` sets only the settings it names (the setters of
//! its builder that were called; `RetryPolicy::never()` names `max_attempts`), so
//! `.config_file(..)` then `.retry(..)` keeps the file's settings that `retry` leaves out. A
//! file is merged where `config_file` is called. A `timeout` or `connect_timeout` already on
//! your reqwest client or builder is used when nothing else sets it; if something else does,
//! `build()` fails and names both: one setting, one way. The table of what each way sets is in
//! [`ClientBuilder`'s docs](crate::ClientBuilder#one-setting-one-value-which-call-wins).
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::policy::EndpointPolicy;
//! use resilient_http::retry::RetryPolicy;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/down", [Reply::status(503)]);
//!
//! let client = Client::builder()
//!     .retry(RetryPolicy::builder().max_attempts(2).seed(7).build()?)
//!     // Later, so 5 attempts (the seed stays the retry policy's).
//!     .default_policy(EndpointPolicy::new().max_attempts(5).backoff_base(Duration::ZERO))
//!     .reqwest(|b| b.timeout(Duration::from_millis(500))) // the attempt timeout
//!     .build()?;
//! let _ = client.get(server.url("/down")).send().await;
//! assert_eq!(server.hits("/down"), 5);
//!
//! // `retry` names only the backoff: the file's 1 attempt stays.
//! server.script("/once", [Reply::status(503)]);
//! let client = Client::builder()
//!     .config_toml("[default]\nmax_attempts = 1\n")
//!     .retry(RetryPolicy::builder().backoff_base(Duration::ZERO).build()?)
//!     .build()?;
//! let _ = client.get(server.url("/once")).send().await;
//! assert_eq!(server.hits("/once"), 1);
//!
//! // The same setting two ways is refused, naming both.
//! let refused = Client::builder()
//!     .attempt_timeout(Duration::from_secs(2))
//!     .reqwest(|b| b.timeout(Duration::from_millis(500)))
//!     .build();
//! assert!(refused.is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # In a TOML file
//!
//! [`ClientBuilder::config_file("policy.toml")`](crate::ClientBuilder::config_file) reads a file,
//! [`config_toml(text)`](crate::ClientBuilder::config_toml) the same from a string. Every key,
//! with its default (feature `config`, on by default):
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let client = resilient_http::Client::builder().config_toml(r#"
//! [default]
//! max_attempts = 3             # total attempts, including the first
//! attempt_timeout = "10s"      # per attempt, including reading the body
//! deadline = "30s"             # across all attempts and waits
//! connect_timeout = "5s"       # default policy only: reqwest sets it per client
//! retry_statuses = [408, 429, 500, 502, 503, 504]
//! retry_non_idempotent = false # POST/PATCH only with an Idempotency-Key unless true
//! idempotency_key = false      # true: add a random Idempotency-Key to POST/PATCH
//! retry_after_cap = "20s"
//! hold_scope = "host"          # which calls a Retry-After hold stops: "host" | "rule" | "name:<name>"
//! body_limit = 16777216        # bytes read inside an attempt (send_buffered, bytes, text, recv_json, send_with)
//! replay_buffer = 65536        # bytes of a streaming request body kept for retries (0: none)
//! ## metrics_server_address = true  # feature `metrics`: server.address/port labels (off)
//! ## propagate_deadline = "grpc-timeout"  # or a header name (ms); false: none (off)
//! propagate_deadline_margin = "20ms"  # taken off the limit each attempt tells the server
//!
//! [default.backoff]
//! base = "100ms"
//! max = "20s"
//! multiplier = 2.0
//! jitter = "full"              # full | equal | decorrelated | none
//!
//! [default.breaker]
//! enabled = true
//! window = 100            # calls in the count-based window
//! failure_rate = 0.5
//! min_calls = 20
//! open_for = "5s"              # open the first time; doubling while probes fail
//! open_for_max = "60s"
//! half_open_probes = 1
//! count_429 = false            # true: a 429 counts as a failure
//! scope = "host"               # one breaker per endpoint key; "rule": one for the rule, whatever the host; "name:<name>": shared
//!
//! [default.retry_budget]             # retries may add 20 % of first attempts plus 10 a second
//! enabled = true
//! ratio = 0.2
//! min_per_second = 10
//! window = "10s"
//! scope = "host"               # "host" | "rule" | "name:<name>"
//!
//! [default.server_quota]       # the quota the server advertises (see the overload page)
//! follow = "hold"              # "hold" | "pace" | "off"
//! headers = "auto"             # or { remaining = "…", reset = "…", reset_format = "…", limit = "…" }
//! scope = "host"               # "host" | "rule" | "name:<name>"
//!
//! [[endpoint]]
//! name = "payments"
//! match = { host = "api.example.com", path = "/v1/charges*", methods = ["POST"] }
//! max_attempts = 1
//! deadline = "2s"
//! [endpoint.breaker]
//! failure_rate = 0.2
//!
//! [[endpoint]]
//! name = "search"
//! match = { host = "search.internal" }
//! hold_on_retry_after = true   # the default: a 429/503 with Retry-After holds the host
//! [endpoint.rate_limit]        # off unless set
//! rate = 100
//! per = "1s"
//! burst = 20
//! scope = "host"               # "name:<name>": one bucket for every rule that names it
//! [endpoint.bulkhead]          # off unless set
//! max_in_flight = 50
//! queue_timeout = "100ms"
//! [endpoint.hedge]             # off unless set; GET, HEAD, PUT, ... or keyed requests only
//! after = "50ms"
//! max = 1                      # 0 turns off a hedge the default policy sets
//! # "#).build()?;
//! # Ok(())
//! # }
//! ```
//!
//! Every mistake is an error naming the file, the line and the key: unknown keys, keys written
//! twice, wrong types and out-of-range values are refused, never ignored (text given to
//! `config_toml` is named `<config_toml>`):
//!
//! ```
//! use resilient_http::{Client, ErrorKind};
//!
//! let err = Client::builder()
//!     .config_toml("[default]\natempts = 3\n")
//!     .build()
//!     .err()
//!     .ok_or("a typo is refused")?;
//! assert_eq!(err.kind(), ErrorKind::InvalidConfig);
//! assert!(err.to_string().contains("<config_toml>:2"), "{err}");
//! assert!(err.to_string().contains("atempts"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every `[[endpoint]]` needs its `match`: `match = {}` takes every request, on purpose (a rule
//! without one is refused, as it would hide every rule after it).
//!
//! # In your own configuration (serde)
//!
//! The same keys can be a section of your service's own configuration, in any serde format
//! (TOML, YAML, JSON, through `config` or `figment`): a
//! [`PolicyConfig`](crate::policy::PolicyConfig) field reads `[http.default]` and
//! `[[http.endpoint]]` (or `{"http": {"default": …, "endpoint": […]}}`) with the same checks, and
//! [`ClientBuilder::config`](crate::ClientBuilder::config) applies it as `config_toml` would.
//! Without lines to show, a mistake names the key (`"max_attempts": must be at least 1 …`), and one
//! the builder finds names the policy (`policy "payments": min_calls (20) must not exceed the
//! window's 10 calls`). The example is on [`PolicyConfig`](crate::policy::PolicyConfig).
//!
//! # Endpoints and scopes
//!
//! An *endpoint* is where a request goes, named by its endpoint key: scheme, host and port
//! (`https://api.example.com`; never the path). The breaker, `Retry-After` holds, the rate
//! limit, the bulkhead and the retry budget keep their state per endpoint key under each rule,
//! unless the guard's [`Scope`](crate::policy::Scope) says otherwise. So routes are told apart
//! by rules: give a route a rule of its own, and its failures open only that rule's breaker
//! and its `Retry-After` holds stop only that rule's calls, even on a shared host. `"rule"`
//! gives one state for everything the rule matches, whatever the host (one breaker for a rule
//! that calls many hosts). `"name:<name>"` gives one state shared by every rule that names
//! it: one quota in one bucket, whatever the host (so name it in the rules that call one
//! API), locally and, with Redis, for every replica ([fleet](super::fleet)). A name is one
//! limit, so set it once; in `[default]` when the client calls that one API only:
//!
//! ```
//! # fn main() -> Result<(), resilient_http::Error> {
//! # let client = resilient_http::Client::builder().config_toml(r#"
//! [default.rate_limit]
//! rate = 20                    # 20 a second, whichever rule and host: one API only
//! scope = "name:api"
//!
//! [default.breaker]
//! scope = "rule"               # one breaker per rule, whatever the host
//!
//! [[endpoint]]
//! name = "payments"
//! match = { path = "/v1/payments*", methods = ["POST"] }
//! max_attempts = 1
//! # "#).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! In code, [`EndpointPolicy::new().rate_limit_scope(Scope::named("api")?)`](crate::policy::EndpointPolicy::rate_limit_scope),
//! and likewise [`breaker_scope`](crate::policy::EndpointPolicy::breaker_scope),
//! [`hold_scope`](crate::policy::EndpointPolicy::hold_scope),
//! [`bulkhead_scope`](crate::policy::EndpointPolicy::bulkhead_scope),
//! [`retry_budget_scope`](crate::policy::EndpointPolicy::retry_budget_scope) and
//! [`server_quota_scope`](crate::policy::EndpointPolicy::server_quota_scope); in a file, `scope`
//! in `[….breaker]`, `[….rate_limit]`, `[….bulkhead]`, `[….retry_budget]`,
//! `[….server_quota]`, and `hold_scope` in
//! the policy's table. Rules that name one scope for a guard must give that guard the same
//! settings, or `build` fails naming both rules. Errors,
//! [`Client::overload`](crate::Client::overload) and metrics name the state's key: the endpoint
//! key, the rule's name, or `name:<name>`.
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::overload::RateLimitConfig;
//! use resilient_http::policy::{EndpointPolicy, Matcher, Scope};
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::{Client, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/orders", [Reply::ok("[]")]);
//! server.script("/reports", [Reply::ok("[]")]);
//!
//! // One request a minute to the API, whichever rule a request matches.
//! let client = Client::builder()
//!     .default_policy(
//!         EndpointPolicy::new()
//!             .rate_limit(RateLimitConfig::new(1, Duration::from_secs(60)))
//!             .rate_limit_scope(Scope::named("api")?),
//!     )
//!     .endpoint("reports", Matcher::new().path("/reports*"), EndpointPolicy::new())
//!     .build()?;
//! assert_eq!(client.get(server.url("/orders")).text().await?, "[]");
//! // The "reports" rule shares the bucket the default policy's call spent.
//! let err = client.get(server.url("/reports")).send().await.err().ok_or("limited")?;
//! assert_eq!(err.kind(), ErrorKind::RateLimited);
//! assert!(err.to_string().contains("name:api"), "{err}");
//! assert_eq!(server.hits("/reports"), 0, "not sent");
//! # Ok(())
//! # }
//! ```
//!
//! # Reloading
//!
//! [`Client::reload(builder)`](crate::Client::reload) swaps in the policies a builder describes,
//! for every later call of the client and its clones
//! ([`reload_file(path)`](crate::Client::reload_file) for a client configured by its file alone).
//! Calls already started finish under their policies. Breakers keep their state when their policy
//! keeps its breaker settings, and so do the overload guards (budgets, holds, rate limits,
//! bulkheads); changed settings start clean. A bad file changes nothing, and the error names the
//! file, line and key. The reqwest client stays as built, so a reload that changes
//! `connect_timeout`, `reqwest(..)`, `reqwest_client(..)` or `layer(..)` is refused. The `reload`
//! example in the repository reloads on a file change or `SIGHUP`.
//!
//! # Ranges
//!
//! Every numeric setting has a range, checked by one validator for the builders, the file and
//! serde configs: out of range is an error naming the setting (builders) or the file, line and
//! key, e.g. `policy.toml:2: "window": must be at least 1 and at most 10000, got 4000000000
//! in [default.breaker]`. The maxima are far above any sensible value and far below where a
//! setting would allocate gigabytes, loop for hours or overflow:
//!
//! | setting | range |
//! |---|---|
//! | `max_attempts` | 1 to 100 |
//! | `attempt_timeout`, `deadline`, `connect_timeout` | above 0, at most 1 day |
//! | `retry_after_cap` | 0 to 1 day |
//! | `backoff_base`, `backoff_max` (file: `[….backoff]` `base`, `max`) | 0 to 1 hour, base ≤ max |
//! | `backoff_multiplier` (file: `[….backoff]` `multiplier`) | 1 to 100 |
//! | `body_limit` (held in memory) | 1 byte to 1 GiB |
//! | `replay_buffer` (held in memory while sent) | 0 to 16 MiB |
//! | `retry_statuses` | codes 100 to 599, at most 500 entries |
//! | breaker `window` in calls (`Window::Calls`; policy `breaker_window`) | 1 to 10,000 calls |
//! | breaker time window (`Window::Time`) | above 0, at most 1 hour, in 1 to 100 buckets of at least 1 ms |
//! | `min_calls` | 1 to 10,000, and at most a call window's size (or the breaker never opens) |
//! | `failure_rate`, slow-call rate | above 0, at most 1 |
//! | slow-call duration | above 0, at most 1 day |
//! | `open_for`, `open_for_max` (policy `breaker_open_for`, `breaker_open_for_max`) | above 0, at most 1 hour, `open_for` ≤ `open_for_max` |
//! | `half_open_probes` | 1 to 1023 |
//! | `max_breakers` (per policy; also bounds the breaker metric series) | 1 to 100,000 |
//! | `[….retry_budget]` `ratio` / `min_per_second` / `window` | 0 to 1 / 0 to 1,000,000 / 10 ms to 1 hour |
//! | rate limit `rate` / `per` / `burst` | 1 to 1,000,000 / above 0, at most 1 hour / 1 to 1,000,000 |
//! | bulkhead `max_in_flight` / `queue_timeout` | 1 to 100,000 / 0 to 1 hour |
//! | hedge `after` / `max` | above 0, at most 1 hour / 0 to 3 |
//! | a scope's name (`"name:<name>"`, [`Scope::named`](crate::policy::Scope::named)) | 1 to 64 ASCII letters, digits, `_`, `.`, `-` |
//! | `[redis]` `timeout` / `sync_interval` / `prefix` (`FleetConfig`) | above 0, at most 10 s / above 0, at most 1 minute / at most 256 bytes |
//! | `[redis]` `url` / `cluster` / `seeds` / `ca_file` | `redis://`, `rediss://` (feature `redis-tls`) or `unix://` / `true` or `false` / with `cluster` only, `redis://` or `rediss://` as `url`, and no `{` `}` in `prefix` / a readable PEM file, with `rediss://` only |
