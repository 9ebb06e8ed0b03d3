//! The guide: how to use resilient-http, one page per topic.
//!
//! Start with the first call in the [crate docs](crate); then:
//!
//! - [`policies`]: what an endpoint is; per-endpoint rules in code, in a TOML file or in your
//!   own serde configuration; which setting wins; scopes (host, rule, `name:<name>`);
//!   reloading; every setting's range.
//! - [`retries`]: what is retried and when, streaming bodies, reading the body inside the
//!   attempt, body classifiers, hooks, the history of attempts, and why a call stopped.
//! - [`breaker`]: circuit breakers per endpoint.
//! - [`overload`]: retry budget, `Retry-After` holds, following the server's quota, rate
//!   limit, bulkhead, adaptive concurrency, client-side throttling and criticality, hedged
//!   requests.
//! - [`deadline`](crate::deadline): telling the server how long the caller will wait
//!   (`propagate_deadline`, `grpc-timeout`), and inheriting a caller's deadline in a server
//!   ([`deadline::scope`](crate::deadline::scope), `IncomingDeadlineLayer`).
//! - [`fleet`]: limits shared by the replicas of a service through Redis.
//! - [`observability`]: spans, events and metrics; what is redacted; redirects.
//! - [`tower`]: the client as a service, under tower-http's layers,
//!   [`ResilientLayer`](crate::ResilientLayer), the single-purpose layers, reqwest-middleware.
//! - [`migrating`]: coming from reqwest, reqwest-middleware and reqwest-retry.
//! - [`testing`]: a loopback server that fails on demand, paused time, test policies.
//! - [`probe`]: trying a policy from the command line.
//! - [`simulate`]: seeing what a policy does during an outage, a brownout or a quota squeeze
//!   before it happens: the library's rules on virtual time against a modelled dependency.
//! - [`features`]: Cargo features, supported Rust, cost per call.
//!
//! Every example on these pages is compiled, and run, by `cargo test`.

pub mod breaker;
pub mod features;
pub mod fleet;
pub mod migrating;
pub mod observability;
pub mod overload;
pub mod policies;
pub mod probe;
pub mod retries;
pub mod simulate;
pub mod testing;
pub mod tower;
