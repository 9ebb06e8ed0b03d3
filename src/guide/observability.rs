//! What a call did, in `tracing` spans and events and in metrics; and what is never shown.
//!
//! # Logs and spans
//!
//! `RUST_LOG=resilient_http=debug` shows each request's attempts (spans of target
//! `resilient_http`, level DEBUG): every call is one `request` span (`otel.kind = "internal"`;
//! method, redacted `url.full`, policy, and when it ends its status or `error.type`, attempts
//! and `duration_ms`), and inside it one `attempt` span per exchange, OpenTelemetry's CLIENT span:
//! `otel.name` (`"GET"`), redacted `url.full`, `http.request.resend_count` (0 for the first),
//! `http.request.method`, `server.address`, `server.port`, `http.response.status_code` and
//! `error.type` (`"503"`, `"timeout"`, `"reset"`, ...). With
//! [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry) they become OpenTelemetry
//! spans as they are. The fields, one by one: [`telemetry`](crate::telemetry#spans-target-resilient_http-level-debug).
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // What `RUST_LOG=resilient_http=debug` shows, on stderr (tracing-subscriber with its
//! // `env-filter` and `fmt` features).
//! let _ = tracing_subscriber::fmt()
//!     .with_env_filter(tracing_subscriber::EnvFilter::new("resilient_http=debug"))
//!     .with_writer(std::io::stderr)
//!     .try_init();
//!
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
//! // Logs a `request` span with two `attempt` spans, and `retry scheduled` at INFO.
//! Client::new()?.get(server.url("/flaky")).send().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Next to reqwest-tracing
//!
//! With reqwest-middleware, add reqwest-tracing's `TracingMiddleware` **after**
//! `ResilientMiddleware`: each attempt runs the chain below it, so each exchange gets one CLIENT
//! span of its own (under the middleware our `attempt` span is `internal`, as the exchange is
//! the chain's to make). Before it, reqwest-tracing's one span would cover the whole call,
//! retries and waits included.
//!
//! ```
//! use resilient_http::middleware::ResilientMiddleware;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
//!
//! let http = reqwest::Client::builder().retry(reqwest::retry::never()).build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(ResilientMiddleware::new(resilient_http::Client::builder())?)
//!     .with(reqwest_tracing::TracingMiddleware::default()) // after: a CLIENT span per exchange
//!     .build();
//! assert_eq!(client.get(server.url("/flaky")).send().await?.status(), 200);
//! assert_eq!(server.hits("/flaky"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Events
//!
//! Events, at the levels an operator wants by default:
//!
//! | event | level | when |
//! |---|---|---|
//! | `retry scheduled` | INFO | a failed attempt will be retried: `reason`, `delay_ms`, `retry_after` (whether the server set the delay) |
//! | `retry skipped` | WARN | a transient failure ends the call: `reason` is why, as the error's [`give_up()`](crate::Error::give_up) says it (`attempts_exhausted`, `non_idempotent`, `deadline`, `budget_exhausted`, …: [`GiveUp::as_str`](crate::GiveUp::as_str)) |
//! | `circuit breaker opened` / `state changed` | WARN / INFO | every breaker state change, with its key |
//! | `request rejected: circuit open` | DEBUG | per request turned away (the opening was the WARN) |
//! | `request rejected by an outer layer` | DEBUG | a [layer](crate::ClientBuilder::layer) of yours (a load shed, a bulkhead) refused the call: `error.type`, `error`, redacted `url.full` |
//! | `not retried` | DEBUG | a permanent failure, returned at once; an open circuit or a rate-limit refusal (already an event of its own) |
//! | `endpoint held` | INFO | a 429/503 with `Retry-After` holds the endpoint: `endpoint`, `retry_after_ms`, `policy` (once when a hold begins) |
//! | `request delayed` | DEBUG | a call waits for a hold or the rate limit: `endpoint`, `reason` (`retry_after`, `rate_limit`), `wait_ms` |
//! | `request rejected: rate limited` | DEBUG | the wait would pass the deadline: `endpoint`, `reason`, `retry_after_ms` |
//! | `request queued: bulkhead full` / `request rejected: bulkhead full` | DEBUG | a call queues for, or is refused, a place in the bulkhead: `endpoint`, `max_in_flight` |
//! | `endpoint map over its bound` | WARN | a policy keeps more breakers or guards than `max_breakers`, as every one kept still limits a call (see [overload](super::overload)) |
//! | `hedge sent` / `hedge skipped` | DEBUG | a [hedge](super::overload#hedged-requests) went out, or was due and kept back: `reason` |
//!
//! Capturing these events in your tests with a thread-scoped subscriber
//! (`tracing::subscriber::with_default`, `set_default`)? tracing-core remembers per call site, for
//! the whole process, whether anyone listens; while only thread-scoped subscribers exist, a call
//! site first reached on a thread without one is remembered as unwanted and your subscriber
//! misses it (tokio-rs/tracing#3611). Set a global default too, even `tracing_subscriber::registry()`
//! that writes nothing (the example above sets its subscriber as the global default).
//!
//! Nothing is built when the level is off. The full list is in [`telemetry`](crate::telemetry).
//!
//! # Metrics
//!
//! Feature `metrics`, through the [`metrics`](https://docs.rs/metrics) facade, so any exporter
//! works: install its recorder (for Prometheus, `metrics-exporter-prometheus`) as that crate
//! says, and every client reports to it. Names follow OpenTelemetry's HTTP client conventions
//! (`http.client.request.duration` per attempt, `resilient_http.request.duration` per call,
//! `resilient_http.requests`, `resilient_http.retries`, `resilient_http.give_ups`, the breaker
//! and overload counters, …: the whole list, with labels, is in
//! [`telemetry`](crate::telemetry#metrics-feature-metrics)).
//!
//! - Every metric is described, with its unit and help text, to the recorder in force when a
//!   client is built: install the recorder first, or call `telemetry::describe()` afterwards.
//! - With metrics-exporter-prometheus, give `http.client.request.duration` and
//!   `resilient_http.request.duration` OpenTelemetry's buckets (0.005 to 10 s) with
//!   `set_buckets_for_metric`, or they become summaries, which cannot be added up across
//!   replicas: the setup is [in `telemetry`](crate::telemetry#prometheus-histogram-buckets).
//! - Labels are bounded: policy name, method, status code or error type, reason; never a URL,
//!   and no host on request metrics unless a policy asks for one (webhook senders would have
//!   unbounded hosts). For a policy that calls a known set of hosts,
//!   [`metrics_server_address(true)`](crate::policy::EndpointPolicy::metrics_server_address)
//!   (the file's `metrics_server_address = true`) adds `server.address` and `server.port`; at
//!   most `max_breakers` servers get their own, the rest are `_OTHER`.
//! - Breaker metrics carry the breaker's key (the endpoint key, the rule's name or
//!   `name:<name>`, by its [scope](super::policies#endpoints-and-scopes)), bounded the same way:
//!   each policy labels at most `max_breakers` keys over its life, and breakers beyond count
//!   their rejections under `breaker="_OTHER"`.
//!
//! # Secrets
//!
//! One module, [`redact`](crate::redact), decides what is shown, for errors (Display,
//! Debug and their `source()` chains: reqwest's error holds the redacted URL, and the error of a
//! layer of yours or of another middleware is kept as its redacted text), spans, events and the
//! probe: URL user info goes; query values whose names contain
//! `token`, `key`, `secret`, `password`, `signature`, `sig` (and a few more) become `REDACTED`, as
//! do the values of `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and of headers
//! whose names contain `api-key`, `token` or `secret`. Add your own names with
//! [`redact::add_names(["x-tenant-pin"])`](crate::redact::add_names) (process-wide: errors outlive clients).
//! Secrets in URL *paths* cannot be recognised and are not removed.
//!
//! # Redirects to a URL with user info are refused
//!
//! reqwest follows a redirect to its target as
//! written, and puts the target's user info (`http://bob:pw@host/`) in the connection pool's key,
//! which hyper-util logs at DEBUG; its redirect policy can follow, stop or fail a redirect, not
//! rewrite the target, so the credentials cannot be dropped as curl drops them. A client from
//! `Client::builder().build()` therefore fails such a redirect: `ErrorKind::Transport`, permanent
//! (not retried; the breaker treats it as any permanent error), and the error names neither the
//! target nor its credentials. Other redirects are followed as reqwest does, up to 10. A
//! `reqwest::Client` of your own (`ClientBuilder::reqwest_client`, or the one under
//! `ResilientMiddleware`) keeps its own redirect policy, and with it this leak; give it ours:
//! `reqwest::Client::builder().redirect(resilient_http::redirect::policy())` ([`redirect::policy`](crate::redirect::policy)).
