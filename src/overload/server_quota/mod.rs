//! Following the quota a server advertises: the IETF `RateLimit` / `RateLimit-Policy`
//! fields (draft-ietf-httpapi-ratelimit-headers) and the `X-RateLimit-*` family, or the
//! fields an API names its own way.
//!
//! Many APIs say on every answer how many requests are left and when the count resets. A
//! policy that follows them ([`ServerQuotaConfig`], on by default as
//! [`ServerQuotaConfig::hold`]) counts the requests it sends against what the last answer
//! said, and holds (or, with [`ServerQuotaConfig::pace`], spreads) its calls as the count runs
//! out, so the server never has to answer 429. [`QuotaHeaders`] says which fields are read.
//! The parts: `fields` reads an answer's quota, `state` keeps one scope's view of it (a part
//! of its [`Guards`](super::Guards)).

mod fields;
pub(crate) mod state;

use http::HeaderName;

use crate::bounds;

pub(crate) use fields::{Quota, read};
pub(crate) use state::{Admit, Place, QuotaSnapshot, ServerQuota, Spent, Ticket};

/// What a policy does with the quota a server advertises (file: `[….server_quota]`; the
/// policy's [`server_quota`](crate::policy::EndpointPolicy::server_quota)).
///
/// Start from [`hold`](Self::hold) (the default), [`pace`](Self::pace) or
/// [`off`](Self::off), then say which fields carry the quota with
/// [`headers`](Self::headers) (default [`QuotaHeaders::auto`]). Set as a whole: a policy that
/// sets it replaces the default policy's, headers included. See [`QuotaHeaders`] for the
/// fields read, and the guide's
/// [overload](crate::guide::overload#following-the-servers-quota) page.
///
/// ```
/// use resilient_http::Client;
/// use resilient_http::overload::{QuotaHeaders, ResetFormat, ServerQuotaConfig};
/// use resilient_http::policy::{EndpointPolicy, Matcher};
///
/// let openai = ServerQuotaConfig::pace().headers(
///     QuotaHeaders::named("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
///         .reset_format(ResetFormat::Duration),
/// );
/// let client = Client::builder()
///     .endpoint(
///         "openai",
///         Matcher::new().host("api.openai.com")?,
///         EndpointPolicy::new().server_quota(openai),
///     )
///     .build()?;
/// # let _ = client;
/// # Ok::<(), resilient_http::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServerQuotaConfig {
    pub(crate) follow: Follow,
    pub(crate) headers: QuotaHeaders,
}

impl ServerQuotaConfig {
    /// Hold a scope whose remaining count reaches 0 until the reset, as a `Retry-After`
    /// hold: a call waits if the reset comes within its deadline and the policy's
    /// `retry_after_cap`, else fails at once with
    /// [`RateLimited`](crate::ErrorKind::RateLimited). The default (file:
    /// `follow = "hold"`).
    pub fn hold() -> Self {
        Self::default()
    }

    /// Spread the remaining count over the time to the reset (a rate the server set), so
    /// that a burst never runs the quota dry (file: `follow = "pace"`).
    pub fn pace() -> Self {
        ServerQuotaConfig {
            follow: Follow::Pace,
            ..Self::default()
        }
    }

    /// Ignore what the server advertises (file: `follow = "off"`): the policy keeps no quota
    /// state, and reads no fields.
    pub fn off() -> Self {
        ServerQuotaConfig {
            follow: Follow::Off,
            ..Self::default()
        }
    }

    /// Read the quota from these fields (default [`QuotaHeaders::auto`]; file: `headers`).
    pub fn headers(mut self, headers: QuotaHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// How the quota is followed.
    pub fn follow(&self) -> Follow {
        self.follow
    }

    /// `None` when off: what the guards keep.
    pub(crate) fn followed(self) -> Option<Self> {
        (self.follow != Follow::Off).then_some(self)
    }
}

impl bounds::Parts for ServerQuotaConfig {
    /// `self` if its header names are valid (a name given to [`QuotaHeaders::named`] is
    /// checked here, when the client is built, as reqwest checks a request's headers when it
    /// is sent); else why not.
    fn check_parts(self) -> Result<Self, String> {
        match &self.headers.0 {
            Names::Invalid(why) => Err(format!("headers: {why}")),
            Names::Auto | Names::Named { .. } => Ok(self),
        }
    }
}

impl QuotaHeaders {
    /// The IETF fields and the `X-RateLimit-*` family, resets read by magnitude (the
    /// default; file: `headers = "auto"`). See [the fields read](Self#the-fields-read).
    pub fn auto() -> Self {
        Self::default()
    }

    /// An API's own fields: the requests left in `remaining`, the time to the reset in
    /// `reset` (read by magnitude as [`auto`](Self::auto) reads it, unless
    /// [`reset_format`](Self::reset_format) says how it is written). File: `headers =
    /// { remaining = "…", reset = "…" }`.
    ///
    /// The names are taken as reqwest's `RequestBuilder::header` takes them (`&str`,
    /// `String`, [`HeaderName`], ...; upper case is lowered). A name that is not a valid
    /// header name is not a panic: the client's `build` refuses it with
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig), naming the policy,
    /// `server_quota` and the field.
    ///
    /// ```
    /// use resilient_http::{Client, ErrorKind};
    /// use resilient_http::overload::{QuotaHeaders, ServerQuotaConfig};
    /// use resilient_http::policy::EndpointPolicy;
    ///
    /// let headers = QuotaHeaders::named("requests left", "x-reset");
    /// let policy = EndpointPolicy::new().server_quota(ServerQuotaConfig::hold().headers(headers));
    /// let err = Client::builder()
    ///     .default_policy(policy)
    ///     .build()
    ///     .err()
    ///     .ok_or("an invalid header name is refused")?;
    /// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    /// assert!(err.to_string().contains("server_quota headers: `remaining`"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn named<R, T>(remaining: R, reset: T) -> Self
    where
        HeaderName: TryFrom<R> + TryFrom<T>,
        <HeaderName as TryFrom<R>>::Error: Into<http::Error>,
        <HeaderName as TryFrom<T>>::Error: Into<http::Error>,
    {
        let names = header_name("remaining", remaining).and_then(|remaining| {
            let reset = header_name("reset", reset)?;
            Ok(Names::Named {
                remaining,
                reset,
                reset_format: None,
                limit: None,
            })
        });
        QuotaHeaders(names.unwrap_or_else(Names::Invalid))
    }

    /// How the [`named`](Self::named) reset field is written (default: seconds or epoch
    /// seconds by magnitude, as `auto`). File: `reset_format = "seconds" | "epoch" |
    /// "duration" | "rfc3339"`. `auto`'s fields have formats of their own: on
    /// [`auto`](Self::auto), it is refused when the client is built.
    pub fn reset_format(self, format: ResetFormat) -> Self {
        self.and_named("reset_format", |names| {
            if let Names::Named { reset_format, .. } = names {
                *reset_format = Some(format);
            }
            Ok(())
        })
    }

    /// The field that says the window's whole quota, beside the [`named`](Self::named)
    /// ones (optional). File: `limit = "…"`. An invalid name is refused
    /// when the client is built, as `named`'s are; on [`auto`](Self::auto) (which reads its
    /// own), so is this.
    pub fn limit<L>(self, name: L) -> Self
    where
        HeaderName: TryFrom<L>,
        <HeaderName as TryFrom<L>>::Error: Into<http::Error>,
    {
        self.and_named("limit", |names| {
            let name = header_name("limit", name)?;
            if let Names::Named { limit, .. } = names {
                *limit = Some(name);
            }
            Ok(())
        })
    }

    /// `self` changed by `change` if it names its fields; refused (at `build`) on `auto`,
    /// as `setting` applies only to named fields. An earlier refusal stays.
    fn and_named(
        mut self,
        setting: &str,
        change: impl FnOnce(&mut Names) -> Result<(), Box<str>>,
    ) -> Self {
        let outcome = match &mut self.0 {
            Names::Invalid(_) => return self,
            Names::Auto => Err(format!(
                "{setting} applies to named fields: write QuotaHeaders::named(remaining, reset)\
                 .{setting}(..) (file: headers = {{ remaining = \"…\", reset = \"…\", {setting} = … }})"
            )
            .into()),
            names @ Names::Named { .. } => change(names),
        };
        match outcome {
            Ok(()) => self,
            Err(why) => QuotaHeaders(Names::Invalid(why)),
        }
    }
}

/// `name` as a header name, for the field `field`; else why not (never a panic).
fn header_name<N>(field: &str, name: N) -> Result<HeaderName, Box<str>>
where
    HeaderName: TryFrom<N>,
    <HeaderName as TryFrom<N>>::Error: Into<http::Error>,
{
    HeaderName::try_from(name).map_err(|e| {
        let e: http::Error = e.into();
        format!(
            "`{field}` is not a valid header name ({e}); write a field name such as \
             \"x-ratelimit-{field}\""
        )
        .into()
    })
}

/// How the client follows a quota the server advertises (file: `follow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Follow {
    /// Ignored (file: `"off"`).
    Off,
    /// A scope whose remaining count reaches 0 is held until its reset (the default; file:
    /// `"hold"`).
    #[default]
    Hold,
    /// The remaining count is spread over the time to the reset (file: `"pace"`).
    Pace,
}

/// Which response fields carry the quota (file: `headers`): [`auto`](Self::auto) (the
/// default) or an API's own names, [`named`](Self::named).
///
/// # The fields read
///
/// [`auto`](Self::auto) (the default, `headers = "auto"` in a file) reads, in this order,
/// the first family an answer carries:
///
/// 1. the IETF fields: `RateLimit` (`r` remaining, `t` seconds to the reset, `pk` partition
///    key) with `RateLimit-Policy` (`q` quota, `w` window), every named policy in them (the
///    tightest wins);
/// 2. `X-RateLimit-Remaining` with `X-RateLimit-Reset` (and `X-RateLimit-Limit`), as GitHub
///    and many gateways send them;
/// 3. `RateLimit-Remaining` with `RateLimit-Reset` (and `RateLimit-Limit`), the drafts before
///    the structured fields.
///
/// A reset without a format of its own is read **by magnitude**, as the APIs that send it
/// mean it: a number below 1e9 is seconds from now (`30`), from 1e9 it is seconds since the
/// Unix epoch (`1767225600`: GitHub's), and from 1e12 milliseconds since the epoch. A
/// malformed field is ignored (with one DEBUG event), never an error.
///
/// An API that spells its fields its own way is read with [`named`](Self::named):
///
/// ```
/// use resilient_http::overload::{QuotaHeaders, ResetFormat, ServerQuotaConfig};
///
/// // OpenAI: `x-ratelimit-reset-requests: 6m0s`.
/// let openai = ServerQuotaConfig::hold().headers(
///     QuotaHeaders::named("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
///         .reset_format(ResetFormat::Duration)
///         .limit("x-ratelimit-limit-requests"),
/// );
/// // Anthropic: an RFC 3339 instant.
/// let anthropic = ServerQuotaConfig::hold().headers(
///     QuotaHeaders::named(
///         "anthropic-ratelimit-requests-remaining",
///         "anthropic-ratelimit-requests-reset",
///     )
///     .reset_format(ResetFormat::Rfc3339),
/// );
/// // GitHub: `x-ratelimit-remaining` and `x-ratelimit-reset` (epoch seconds) are what `auto`
/// // reads.
/// let github = ServerQuotaConfig::hold();
/// # let _ = (openai, anthropic, github);
/// ```
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
    /// What the builder was given cannot be read (a name that is not a header name, a
    /// setting of named fields on `auto`): why, as `build` says it. `build` refuses it
    /// (`check_parts`), so no call ever reads with it.
    Invalid(Box<str>),
}

/// How a [named](QuotaHeaders::named) reset field is written (file: `reset_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetFormat {
    /// Seconds from now (`30`, `1.5`; file: `"seconds"`).
    Seconds,
    /// Seconds since the Unix epoch (`1767225600`; file: `"epoch"`).
    Epoch,
    /// A duration such as Go's (`6m0s`, `1.5s`, `250ms`; file: `"duration"`): OpenAI's.
    Duration,
    /// An RFC 3339 timestamp (`2026-12-07T10:00:00Z`; file: `"rfc3339"`): Anthropic's.
    Rfc3339,
}
