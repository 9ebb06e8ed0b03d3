//! Per-endpoint policies: different rules for different APIs, from one client.
//!
//! A client has a **default policy** and an ordered list of **endpoint rules**, each a
//! [`Matcher`] (methods, host, path) and an [`EndpointPolicy`]. The first rule that matches a
//! request decides its policy; every setting the rule leaves unset comes from the default
//! policy, and every setting the default leaves unset from the library defaults. Each policy
//! is compiled once, when the client is built, into the settings of every layer, so choosing
//! one per request is a few string comparisons and allocates nothing.
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().attempts(3).deadline(Duration::from_secs(10)))
//!     .endpoint(
//!         "payments",
//!         Matcher::new().host("api.example.com")?.path("/v1/charges*").methods(["POST"])?,
//!         EndpointPolicy::new().attempts(1).deadline(Duration::from_secs(2)),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! The same can come from a TOML file: see [`ClientBuilder::config_file`](crate::ClientBuilder::config_file).
//! The chosen policy's name is in every error ([`Error::policy`](crate::Error::policy)).

use std::time::Duration;

pub(crate) mod bounds;
pub(crate) mod compiled;
mod file;
mod matcher;

pub(crate) use compiled::{CompiledPolicy, Policies};
pub(crate) use file::PolicyFile;
pub use matcher::Matcher;

use crate::retry::Jitter;

/// The settings of one policy. Unset settings are inherited; see the [module docs](self).
///
/// Builder-style: `EndpointPolicy::new().attempts(1).deadline(Duration::from_secs(2))`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct EndpointPolicy {
    pub(crate) attempts: Option<u32>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) retry_statuses: Option<Vec<u16>>,
    pub(crate) retry_non_idempotent: Option<bool>,
    pub(crate) idempotency_key: Option<bool>,
    pub(crate) retry_after_cap: Option<Duration>,
    pub(crate) body_limit: Option<u64>,
    pub(crate) backoff_base: Option<Duration>,
    pub(crate) backoff_max: Option<Duration>,
    pub(crate) backoff_multiplier: Option<f64>,
    pub(crate) jitter: Option<Jitter>,
    pub(crate) breaker_enabled: Option<bool>,
    pub(crate) breaker_window: Option<u32>,
    pub(crate) breaker_failure_rate: Option<f64>,
    pub(crate) breaker_min_calls: Option<u32>,
    pub(crate) breaker_open_for: Option<Duration>,
    pub(crate) breaker_half_open_probes: Option<u32>,
    pub(crate) breaker_key: Option<String>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = Some(value.into());
                self
            }
        )*
    };
}

impl EndpointPolicy {
    /// A policy that sets nothing: everything is inherited.
    pub fn new() -> Self {
        EndpointPolicy::default()
    }

    setters! {
        /// Attempts in all, the first included (1: no retries; at most 100).
        attempts: attempts: u32;
        /// Longest time for one attempt, response body included (above zero, at most 1 day).
        attempt_timeout: attempt_timeout: Duration;
        /// Longest time for the whole call, retries and sleeps included (above zero, at most
        /// 1 day).
        deadline: deadline: Duration;
        /// Longest time to connect (above zero, at most 1 day). Only the default policy's is
        /// used: reqwest sets it per client, so an endpoint rule that sets it is rejected when
        /// the client is built.
        connect_timeout: connect_timeout: Duration;
        /// Whether POST, PATCH and other non-idempotent requests may be retried after they may
        /// have been processed.
        retry_non_idempotent: retry_non_idempotent: bool;
        /// Whether to add a random `Idempotency-Key` to non-idempotent requests without one.
        idempotency_key: idempotency_key: bool;
        /// The longest `Retry-After` obeyed (at most 1 day).
        retry_after_cap: retry_after_cap: Duration;
        /// The most bytes of a response body read inside an attempt (`send_buffered`,
        /// `bytes`, `text`, `json`, `send_with`, a body classifier); a longer body fails with
        /// [`ErrorKind::BodyTooLarge`](crate::ErrorKind::BodyTooLarge). Default 16 MiB; 1 byte
        /// to 1 GiB, since it is held in memory (read a larger body after `send()`).
        body_limit: body_limit: u64;
        /// The first retry's delay before jitter (at most 1 hour).
        backoff_base: backoff_base: Duration;
        /// The longest delay between attempts (at most 1 hour).
        backoff_max: backoff_max: Duration;
        /// Growth of the delay per retry (1 to 100).
        backoff_multiplier: backoff_multiplier: f64;
        /// The jitter mode.
        jitter: jitter: Jitter;
        /// Whether the circuit breaker guards this policy's requests.
        breaker_enabled: breaker_enabled: bool;
        /// Calls in the breaker's window (1 to 10,000).
        breaker_window: breaker_window: u32;
        /// The failure rate that opens the breaker (above 0, at most 1).
        breaker_failure_rate: breaker_failure_rate: f64;
        /// Fewest calls in the window before the breaker may open (1 to 10,000, and at most
        /// the window's size).
        breaker_min_calls: breaker_min_calls: u32;
        /// How long the breaker stays open the first time (above zero, at most 1 hour).
        breaker_open_for: breaker_open_for: Duration;
        /// Trial calls in half-open (1 to 1023).
        breaker_half_open_probes: breaker_half_open_probes: u32;
    }

    /// The statuses that are transient (retried, counted by the breaker); every other 4xx and
    /// 5xx is permanent. Transport errors are classified as usual. Codes from 100 to 599, at
    /// most 500 entries.
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.retry_statuses = Some(statuses.into_iter().collect());
        self
    }

    /// One breaker for all of this policy's requests, under this name, instead of one per
    /// endpoint (scheme, host and port).
    pub fn breaker_key(mut self, key: impl Into<String>) -> Self {
        self.breaker_key = Some(key.into());
        self
    }

    /// Checks every setting this policy sets against its range ([`bounds`], the same check
    /// the policy file and the layers' builders make); the error names the setting.
    pub(crate) fn check(&self) -> Result<(), crate::Error> {
        macro_rules! check {
            ($($field:ident: $bound:expr;)*) => {$(
                if let Some(value) = self.$field {
                    $bound.check(value).map_err(bounds::refused(stringify!($field)))?;
                }
            )*};
        }
        check! {
            attempts: bounds::ATTEMPTS;
            attempt_timeout: bounds::TIMEOUT;
            deadline: bounds::TIMEOUT;
            connect_timeout: bounds::TIMEOUT;
            retry_after_cap: bounds::RETRY_AFTER_CAP;
            body_limit: bounds::BODY_LIMIT;
            backoff_base: bounds::BACKOFF_DELAY;
            backoff_max: bounds::BACKOFF_DELAY;
            backoff_multiplier: bounds::BACKOFF_MULTIPLIER;
            breaker_window: bounds::WINDOW_CALLS;
            breaker_failure_rate: bounds::RATE;
            breaker_min_calls: bounds::MIN_CALLS;
            breaker_open_for: bounds::OPEN_DURATION;
            breaker_half_open_probes: bounds::HALF_OPEN_PROBES;
        }
        if let Some(statuses) = &self.retry_statuses {
            bounds::statuses(statuses).map_err(bounds::refused("retry_statuses"))?;
        }
        Ok(())
    }

    /// `self`, with every setting it leaves unset taken from `parent`.
    pub(crate) fn inherit(&self, parent: &EndpointPolicy) -> EndpointPolicy {
        macro_rules! pick {
            ($($field:ident),*) => {
                EndpointPolicy { $($field: self.$field.clone().or_else(|| parent.$field.clone()),)* }
            };
        }
        pick!(
            attempts,
            attempt_timeout,
            deadline,
            connect_timeout,
            retry_statuses,
            retry_non_idempotent,
            idempotency_key,
            retry_after_cap,
            body_limit,
            backoff_base,
            backoff_max,
            backoff_multiplier,
            jitter,
            breaker_enabled,
            breaker_window,
            breaker_failure_rate,
            breaker_min_calls,
            breaker_open_for,
            breaker_half_open_probes,
            breaker_key
        )
    }
}
