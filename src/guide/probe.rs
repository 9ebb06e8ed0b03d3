//! Trying a policy from the command line: `resilient-http probe`.
//!
//! ```sh
//! cargo install resilient-http --features cli
//! resilient-http probe [--config FILE] [--cacert FILE] [-X METHOD] [-H 'Name: value']... [-d BODY] [--repeat N] [--concurrency N] [--criticality LEVEL] URL
//! ```
//!
//! For example, `resilient-http probe --config policy.toml --repeat 20 --concurrency 4
//! https://api.example.com/health`. (From a clone of the repository,
//! `cargo run --features cli --example probe -- …` runs the same.) `--cacert ca.pem` trusts a
//! private CA's certificate (PEM) besides the system's roots, as curl's does.
//!
//! It sends the request (`--repeat` N times through the same client, up to `--concurrency` N of
//! them in flight at once: default 1, at most 10,000), reads each body to the end inside each
//! attempt (a body that stalls is a timeout, not a success; one cut off mid-stream is retried
//! under the policy, and its attempt shows the status with the `error_kind` that broke the body)
//! and prints one JSON object per request on stdout, each on one whole line (with
//! `--concurrency`, in the order the requests end), with every key on every line (`null` where
//! one does not apply), in the order documented on
//! [`cli::probe::Line`](crate::cli::probe::Line) and
//! [`AttemptLine`](crate::cli::probe::AttemptLine), ending with `give_up` (why the call
//! stopped: [`GiveUp::as_str`](crate::GiveUp::as_str)), `sent` (whether the request may have
//! reached the server), what the scope knows of the server's advertised quota when the request
//! ends (`server_quota_remaining`, `server_quota_reset_ms`; null until an answer advertised
//! one: see [following the server's quota](super::overload#following-the-servers-quota)), the
//! request's `criticality`, its scope's adaptive concurrency limit and the attempts under it
//! (`adaptive_limit`, `adaptive_in_flight`) and the probability that throttling turns an
//! attempt of its criticality away (`throttle_probability`; each null when the policy does
//! not turn it on: see [adaptive concurrency](super::overload#adaptive-concurrency) and
//! [client-side throttling](super::overload#client-side-throttling-and-criticality)), and
//! the `attempts`:
//!
//! ```json
//! {"method":"GET","url":"http://127.0.0.1:8080/a","policy":"default","outcome":"success","status":200,"error_kind":null,"transient":null,"retry_after_ms":null,"total_ms":312,"body_bytes":2,"message":null,"give_up":null,"sent":true,"server_quota_remaining":null,"server_quota_reset_ms":null,"criticality":"default","adaptive_limit":null,"adaptive_in_flight":null,"throttle_probability":null,"attempts":[{"n":1,"status":503,"error_kind":null,"sent":true,"delay_before_ms":0,"elapsed_ms":2,"hedge":false,"cancelled":false},{"n":2,"status":200,"error_kind":null,"sent":true,"delay_before_ms":97,"elapsed_ms":1,"hedge":false,"cancelled":false}]}
//! ```
//!
//! An attempt's `hedge` says it was a [hedge](super::overload#hedged-requests); `cancelled`, that
//! another attempt answered first and this one was dropped (its `status` and `error_kind` are
//! null).
//!
//! `error_kind` is one of `timeout`, `deadline`, `connect`, `reset`, `status`, `circuit_open`,
//! `budget_exhausted`, `rate_limited`, `bulkhead_full`, `throttled`, `body_not_replayable`, `invalid_request`,
//! `invalid_response`, `transport`, `body_too_large`, `decode`, `hook` (or null); `message` is the
//! error's line followed by its causes (`: Connection refused (os error 111)`); URLs and messages
//! never contain credentials. For `rate_limited`, `retry_after_ms` is what is left of the server's
//! `Retry-After` hold, or the time to the rate limit's next slot; a call the overload guards
//! stopped has no attempt with `"sent":true`.
//!
//! The policy file's [overload](super::overload) keys (`[default.retry_budget]`, `hold_on_retry_after`,
//! `[x.rate_limit]`, `[x.bulkhead]`, `[x.hedge]`) apply as in any client, so the probe shows what
//! they do under load: `--repeat 4000 --concurrency 16` against an endpoint that is down, with
//! `[default.breaker] enabled = false`, makes 4,900 requests reach it (1.225×; the attempts in the
//! lines add up to the same) where `[default.retry_budget] enabled = false` makes 12,000 (3×). The
//! default budget lets retries add 20 % of the requests plus 100 (10 a second over its 10 s
//! window), so runs shorter than the window stay under 1.25× from 2,000 requests.
//!
//! Exit code 0 when every request succeeded, 1 when any failed, 2 for bad usage (an argument that
//! is not UTF-8, a URL that does not parse or is not http/https, a `--repeat` or `--concurrency`
//! out of range, ...), a bad policy file or a bad `--cacert`, with a message on stderr that never
//! repeats a header value or a URL, and nothing on stdout. `--help` prints the usage on stdout and exits 0. A reader
//! that stops early (`probe ... | head`) ends the run quietly with the exit code of the requests
//! made so far. `RUST_LOG=debug` shows tracing on stderr. Two probes given one policy file with a
//! `[redis]` table act as two replicas of a [fleet](super::fleet).

// The page links to items of the `cli` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "cli"), allow(rustdoc::broken_intra_doc_links))]
