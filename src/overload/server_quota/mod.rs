//! Following the quota a server advertises: the IETF `RateLimit` / `RateLimit-Policy`
//! fields (draft-ietf-httpapi-ratelimit-headers) and the `X-RateLimit-*` family, or the
//! fields an API names its own way. (Skeleton: the docs come with the code.)

// Skeleton: the pieces are filled in by the parser, the guard and the config work.
#![allow(dead_code, unused_imports)]

mod fields;
pub(crate) mod state;

use http::HeaderName;

pub(crate) use fields::{Quota, read};
pub(crate) use state::{Admit, Place, QuotaSnapshot, ServerQuota, Spent, Ticket};

/// What a policy does with the quota a server advertises (file: `[….server_quota]`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServerQuotaConfig {
    pub(crate) follow: Follow,
    pub(crate) headers: QuotaHeaders,
}

impl ServerQuotaConfig {
    /// Hold a scope whose remaining count reaches 0 until the reset (the default).
    pub fn hold() -> Self {
        Self::default()
    }

    /// Spread the remaining count over the time to the reset.
    pub fn pace() -> Self {
        ServerQuotaConfig {
            follow: Follow::Pace,
            ..Self::default()
        }
    }

    /// Ignore what the server advertises.
    pub fn off() -> Self {
        ServerQuotaConfig {
            follow: Follow::Off,
            ..Self::default()
        }
    }

    /// Read the quota from these fields (default [`QuotaHeaders::auto`]).
    pub fn headers(mut self, headers: QuotaHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// `None` when off: what the guards keep.
    pub(crate) fn followed(self) -> Option<Self> {
        (self.follow != Follow::Off).then_some(self)
    }
}

impl QuotaHeaders {
    /// The IETF fields and the `X-RateLimit-*` family (the default).
    pub fn auto() -> Self {
        Self::default()
    }
}

/// How the client follows a quota the server advertises (file: `follow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Follow {
    /// Ignored.
    Off,
    /// A scope whose remaining count reaches 0 is held until its reset (the default).
    #[default]
    Hold,
    /// The remaining count is spread over the time to the reset.
    Pace,
}

/// Which response fields carry the quota (file: `headers`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QuotaHeaders(pub(crate) Names);

/// The fields read.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) enum Names {
    /// IETF `RateLimit` / `RateLimit-Policy`, then `X-RateLimit-Remaining` /
    /// `X-RateLimit-Reset` / `X-RateLimit-Limit` (and `RateLimit-Remaining`/`-Reset`/`-Limit`
    /// of the earlier drafts); a reset read as seconds or epoch seconds by magnitude.
    #[default]
    Auto,
    /// An API's own names.
    Named {
        remaining: HeaderName,
        reset: HeaderName,
        /// `None`: seconds or epoch seconds by magnitude, as `Auto`.
        reset_format: Option<ResetFormat>,
        limit: Option<HeaderName>,
    },
}

/// How a named reset field is written (file: `reset_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetFormat {
    /// Seconds from now (`30`, `1.5`).
    Seconds,
    /// Seconds since the Unix epoch (`1767225600`).
    Epoch,
    /// A duration such as Go's (`6m0s`, `1.5s`, `250ms`).
    Duration,
    /// An RFC 3339 timestamp (`2026-12-07T10:00:00Z`).
    Rfc3339,
}
