//! Cargo features, the supported Rust version, and what a call costs.
//!
//! # Cargo features
//!
//! | feature | what |
//! |---|---|
//! | `default-tls` (default), `rustls`, `native-tls` | reqwest's TLS backends (`default-tls` is rustls in reqwest 0.13) |
//! | `http2` (default) | reqwest's HTTP/2, negotiated over TLS |
//! | `charset` (default) | reqwest's `text()` decoding by the response's charset |
//! | `system-proxy` (default) | reqwest reading proxies from the system's settings |
//! | `config` (default) | policy files and `PolicyConfig` (`serde`, `toml`); without it, policies come from the builders |
//! | `testkit` | the fault server of [testing](super::testing) |
//! | `reqwest-middleware` (default) | [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) for `reqwest_middleware` |
//! | `json`, `query`, `form`, `multipart` | reqwest's features, and [`RequestBuilder`](crate::RequestBuilder)'s setters of the same names; `json` also brings [`recv_json`](crate::RequestBuilder::recv_json), which reads the answer as JSON inside each attempt |
//! | `gzip`, `brotli`, `zstd`, `deflate` | reqwest's decoding of compressed answers (off by default, as in reqwest); the policy's `body_limit` bounds the decoded body |
//! | `cli` | the `resilient-http` command line (`cargo install resilient-http --features cli`): [`probe`](super::probe), [`simulate`](super::simulate) (`resilient_http::sim`) |
//! | `stream` | reqwest's streaming bodies (`Body::wrap_stream`, `Body::from(tokio::fs::File)`), for [`body_with`](crate::RequestBuilder::body_with) |
//! | `metrics` | counters, gauges and histograms through the `metrics` facade (see [observability](super::observability)) |
//! | `redis` | limits shared by the replicas of a service through Redis (see [fleet](super::fleet)): the `redis` crate with its tokio connection manager and its cluster client |
//! | `redis-tls` | `redis`, and `rediss://` (TLS with rustls, the system's roots or a CA file) for managed Redis |
//! | `backoff` | accept a `backoff::backoff::Backoff` (e.g. `ExponentialBackoff`) as the retry schedule: `RetryPolicy::builder().backoff_schedule(b)` |
//!
//! The `backoff` crate is **off by default** and the default build does not depend on it: it is
//! unmaintained (RUSTSEC-2025-0012) and pulls in `instant` (RUSTSEC-2024-0384). The built-in
//! `Backoff` covers the same schedules; the feature only exists so that code already written
//! against `backoff` can move over unchanged.
//!
//! The crate takes reqwest without its default features and forwards these, so the defaults
//! are reqwest's (plus `reqwest-middleware` and `config`), and `default-features = false, features = ["rustls"]`
//! (or `"native-tls"`) gives a smaller build, as with reqwest itself.
//!
//! Minimum supported Rust: 1.88 (the ICU crates behind `url`, and `encoding_rs`, need it).
//!
//! # Cost per call
//!
//! `BENCHMARKS.md`, in the repository, has the commands, the machine, every figure and how each was
//! checked. In short, for a loopback GET with 64 in flight, counted by callgrind against bare
//! reqwest and its peers in the same run (`bash benches/instructions.sh`):
//!
//! | stack | instructions per call over bare reqwest | allocations over bare reqwest |
//! |---|---|---|
//! | reqwest with `.timeout(10s)` | +1.6k to +1.9k | +4 |
//! | reqwest-middleware alone (the chain, no middleware) | +1.3k | +1 |
//! | reqwest-middleware + reqwest-retry (retry only, no timeout) | +4.1k to +4.3k | +7 |
//! | the same over a client with a timeout | +5.6k | +8 |
//! | resilient-http, everything on by default (deadline, attempt timeout covering the body, retry, retry budget, holds, breaker, classification) | +3.8k to +4.1k | +1 |
//! | the same plus a rate limit and a bulkhead | +3.9k to +4.5k | +1 |
//! | `ResilientMiddleware` in a reqwest-middleware chain | +8.6k | +9 |
//!
//! With everything on, the default client costs about what reqwest-middleware with reqwest-retry
//! costs (−0.1k in the latest same-run comparison, medians of 5), though that peer has no timeout
//! at all; reqwest's own `.timeout()` is 1.6k to 1.9k of ours. `ResilientMiddleware` runs the
//! client's own driver over the rest of the chain: the chain's cost plus the driver's, about 3k
//! above the same peer with a timeout (run M in `BENCHMARKS.md`). `cargo bench --bench breaker` measures the breaker (10 ns per admit and record on one
//! thread, 13 ns with two) and the retry budget (8 ns per deposit) against `failsafe`.

// The page links to items of the `json` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]
