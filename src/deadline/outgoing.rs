//! The outgoing half: which header tells a server how long an attempt may take, and the one
//! rule that writes it (see the [module docs](super#outgoing-telling-the-server-how-long-the-caller-waits)).

use std::time::Duration;

use http::header::{HeaderMap, HeaderName};

use super::wire::{self, Format};
use crate::bounds;
use crate::error::Error;
use crate::outcome::Delivery;
use crate::timeout::{Clock, expired, ran_out};

/// The margin taken off each attempt's limit when none is set: see
/// [`EndpointPolicy::propagate_deadline_margin`](crate::policy::EndpointPolicy::propagate_deadline_margin).
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(20);

/// The header that carries each attempt's limit to the server: the setting
/// [`EndpointPolicy::propagate_deadline`](crate::policy::EndpointPolicy::propagate_deadline)
/// (the file's `propagate_deadline = "grpc-timeout"`, or any other header name).
///
/// ```
/// use resilient_http::deadline::DeadlineHeader;
/// use resilient_http::policy::EndpointPolicy;
///
/// // gRPC's `grpc-timeout: 480000u`.
/// let grpc = EndpointPolicy::new().propagate_deadline(DeadlineHeader::grpc_timeout());
/// // Whole milliseconds, as Envoy's `x-envoy-expected-rq-timeout-ms: 480`.
/// let envoy = EndpointPolicy::new()
///     .propagate_deadline(DeadlineHeader::millis("x-envoy-expected-rq-timeout-ms"));
/// // An endpoint rule that sends none, whatever the default policy sends.
/// let quiet = EndpointPolicy::new().propagate_deadline(DeadlineHeader::none());
/// # let _ = (grpc, envoy, quiet);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineHeader(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    None,
    Header(HeaderName, Format),
    // A name that is no header name: refused when the client is built (see `check_parts`).
    Invalid(String),
}

impl DeadlineHeader {
    /// gRPC's `grpc-timeout`, in gRPC's `TimeoutValue` format (`480000u`, `2S`): the finest
    /// unit whose count fits in 8 digits, rounded down.
    pub fn grpc_timeout() -> Self {
        DeadlineHeader(Kind::Header(
            HeaderName::from_static("grpc-timeout"),
            Format::GrpcTimeout,
        ))
    }

    /// The header `name`, in whole milliseconds rounded down (`480`), as Envoy's
    /// `x-envoy-expected-rq-timeout-ms` and most services read it. A `name` that is not a
    /// header name, or is `grpc-timeout` (which has a format of its own:
    /// [`grpc_timeout`](Self::grpc_timeout)), is refused with
    /// [`InvalidConfig`](crate::ErrorKind::InvalidConfig) when the client is built.
    pub fn millis(name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) if header != "grpc-timeout" => {
                DeadlineHeader(Kind::Header(header, Format::Millis))
            }
            _ => DeadlineHeader(Kind::Invalid(name.to_owned())),
        }
    }

    /// The header `name` as a policy file names it: `grpc-timeout` (any case) in gRPC's
    /// format, any other in milliseconds ([`millis`](Self::millis)).
    pub fn named(name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case("grpc-timeout") {
            DeadlineHeader::grpc_timeout()
        } else {
            DeadlineHeader::millis(name)
        }
    }

    /// No header: what a policy sends when it leaves the setting unset; for an endpoint rule
    /// that turns off the default policy's.
    pub fn none() -> Self {
        DeadlineHeader(Kind::None)
    }

    /// The header's name; `None` for [`none`](Self::none) and for a name that is refused.
    pub fn name(&self) -> Option<&HeaderName> {
        match &self.0 {
            Kind::Header(name, _) => Some(name),
            Kind::None | Kind::Invalid(_) => None,
        }
    }
}

impl bounds::Parts for DeadlineHeader {
    /// `self` if it names a header; else why not.
    fn check_parts(self) -> Result<Self, String> {
        match &self.0 {
            Kind::Invalid(name) if name.eq_ignore_ascii_case("grpc-timeout") => Err(format!(
                "{name:?} is written in gRPC's format, not in milliseconds: \
                 DeadlineHeader::grpc_timeout()"
            )),
            Kind::Invalid(name) => Err(format!(
                "{name:?} is not a header name: write one token of letters, digits and \
                 `-`, e.g. \"x-request-timeout-ms\", or \"grpc-timeout\""
            )),
            Kind::None | Kind::Header(..) => Ok(self),
        }
    }
}

/// A policy's deadline propagation, compiled: what each attempt's request carries.
#[derive(Clone, Debug)]
pub(crate) struct Propagate {
    name: HeaderName,
    format: Format,
    margin: Duration,
}

impl Propagate {
    /// What `header` and `margin` ask for; `None` when no header is sent. Both were checked
    /// ([`bounds::Parts`], [`bounds::DEADLINE_MARGIN`]).
    pub(crate) fn new(header: &DeadlineHeader, margin: Duration) -> Option<Self> {
        match &header.0 {
            Kind::Header(name, format) => Some(Propagate {
                name: name.clone(),
                format: *format,
                margin,
            }),
            Kind::None | Kind::Invalid(_) => None,
        }
    }

    pub(crate) fn margin(&self) -> Duration {
        self.margin
    }

    /// This header, less `margin` (checked: [`bounds::DEADLINE_MARGIN`]).
    pub(crate) fn with_margin(self, margin: Duration) -> Self {
        Propagate { margin, ..self }
    }

    /// Writes `limit` less the margin into `request`'s header, replacing any value it had
    /// (the caller's own guess cannot be fresher than the attempt's limit). An error, and
    /// nothing written, when that leaves nothing: such an attempt is not sent, since the
    /// server would be told to give up at once. `clock` set the limit: the error is the one
    /// of that clock running out (the deadline's, or the attempt's own, which a wait for a
    /// service to be ready may have spent).
    pub(crate) fn stamp(
        &self,
        request: &mut reqwest::Request,
        limit: Duration,
        clock: Clock,
    ) -> Result<(), Error> {
        if self.stamp_headers(request.headers_mut(), limit) {
            return Ok(());
        }
        let error = match clock {
            Clock::Deadline => expired(request, limit),
            Clock::Attempt => ran_out(Clock::Attempt, Delivery::NotSent, Some(limit))
                .with_request(request.method(), request.url()),
        };
        let margin = bounds::show(self.margin);
        Err(error.with_detail(format!(
            "nothing left of the attempt's limit after propagate_deadline_margin ({margin}) \
             to tell the server: not sent"
        )))
    }

    /// [`stamp`](Self::stamp), on `headers`; `false` when nothing is left.
    fn stamp_headers(&self, headers: &mut HeaderMap, limit: Duration) -> bool {
        let left = limit.saturating_sub(self.margin);
        match wire::encode(left, self.format) {
            Some(value) => {
                headers.insert(self.name.clone(), value);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Parts;

    fn stamped(header: DeadlineHeader, limit: Duration) -> Option<String> {
        let propagate = Propagate::new(&header, DEFAULT_MARGIN)?;
        let mut headers = HeaderMap::new();
        headers.append("grpc-timeout", http::HeaderValue::from_static("10S"));
        headers.append("grpc-timeout", http::HeaderValue::from_static("20S"));
        headers.append("x-timeout-ms", http::HeaderValue::from_static("99999"));
        if !propagate.stamp_headers(&mut headers, limit) {
            return None;
        }
        let name = header.name()?;
        let values: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "replaced, not appended");
        values
            .first()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn the_limit_less_the_margin_replaces_the_callers_value() {
        let limit = Duration::from_millis(500);
        let grpc = stamped(DeadlineHeader::grpc_timeout(), limit);
        assert_eq!(grpc.as_deref(), Some("480000u"));
        let millis = stamped(DeadlineHeader::millis("x-timeout-ms"), limit);
        assert_eq!(millis.as_deref(), Some("480"));
    }

    #[test]
    fn nothing_left_after_the_margin_is_not_stamped() {
        for limit in [0, 5, 20] {
            let limit = Duration::from_millis(limit);
            assert_eq!(stamped(DeadlineHeader::grpc_timeout(), limit), None);
        }
        // Under a millisecond left: zero milliseconds, never sent as "0".
        let limit = DEFAULT_MARGIN + Duration::from_micros(900);
        assert_eq!(stamped(DeadlineHeader::millis("x-timeout-ms"), limit), None);
        assert_eq!(
            stamped(DeadlineHeader::grpc_timeout(), limit).as_deref(),
            Some("900000n")
        );
    }

    #[test]
    fn names_are_checked_and_grpc_timeout_keeps_its_format() {
        assert_eq!(
            DeadlineHeader::named("GRPC-Timeout"),
            DeadlineHeader::grpc_timeout()
        );
        assert!(
            DeadlineHeader::named("x-request-timeout-ms")
                .check_parts()
                .is_ok()
        );
        assert!(DeadlineHeader::none().check_parts().is_ok());
        for bad in ["", "x timeout", "x:ms", "naïve"] {
            let refused = DeadlineHeader::named(bad).check_parts();
            assert!(
                refused.is_err_and(|why| why.contains("not a header name")),
                "{bad:?}"
            );
        }
        let refused = DeadlineHeader::millis("grpc-timeout").check_parts();
        assert!(refused.is_err_and(|why| why.contains("grpc_timeout()")));
        assert!(Propagate::new(&DeadlineHeader::none(), DEFAULT_MARGIN).is_none());
    }
}
