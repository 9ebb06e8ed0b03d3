//! What a `reqwest::Error` means: which [`ErrorKind`] and how far the request got, the facts
//! before any classifier's verdict.
//!
//! On the error's floor, below the classifiers: the error's own constructors read a
//! `reqwest::Error` with it (`Error::transient`, `Error::permanent`), and the classifiers
//! (`classify/`) add their verdict to what it finds.
//!
//! reqwest answers `is_connect()`, `is_timeout()` and `is_builder()` itself; for resets,
//! malformed responses and HTTP/2 stream refusals we walk the source chain down to the hyper,
//! h2 and io errors, which reqwest keeps reachable through `source()`.

use std::error::Error as StdError;
use std::io;

use crate::outcome::{Delivery, ErrorKind};

/// The facts about a transport error, before any classifier's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Analysis {
    pub(crate) kind: ErrorKind,
    pub(crate) delivery: Delivery,
    /// The TLS handshake failed (bad certificate, not TLS at all): trying again cannot help.
    pub(crate) tls_failed: bool,
}

const fn analysis(kind: ErrorKind, delivery: Delivery) -> Analysis {
    Analysis {
        kind,
        delivery,
        tls_failed: false,
    }
}

/// A timeout (reqwest's, hyper's, the system's): the attempt's clock ran out, as reqwest's
/// timer is set to the attempt's limit, with the request out, so maybe sent. The timeout
/// module then names it for the nearer clock and gives it its limit (`timeout::timed_out`).
const TIMED_OUT: Analysis = analysis(ErrorKind::AttemptTimeout, Delivery::MaybeSent);

pub(crate) fn analyze(error: &reqwest::Error) -> Analysis {
    if error.is_builder() {
        return analysis(ErrorKind::InvalidRequest, Delivery::NotSent);
    }
    // Covers refused connections, DNS failures, connect timeouts and TLS handshakes.
    if error.is_connect() {
        return Analysis {
            tls_failed: !error.is_timeout() && tls_failed(error.source()),
            ..analysis(ErrorKind::Connect, Delivery::NotSent)
        };
    }
    if error.is_timeout() {
        return TIMED_OUT;
    }
    analyze_chain(error.source()).unwrap_or_else(|| {
        // A body that is not what it claims (invalid JSON, a corrupt gzip stream with no io
        // error under it) is no transport failure: the same bytes would come again.
        let kind = if error.is_decode() {
            ErrorKind::Decode
        } else {
            ErrorKind::Transport
        };
        analysis(kind, Delivery::MaybeSent)
    })
}

/// rustls reports a failed handshake, certificate errors included, as an `io::Error` of kind
/// `InvalidData`, often wrapped in another `io::Error`, whose `source()` skips the wrapped
/// error: so look inside with `get_ref`. native-tls reports an error of its own; only OpenSSL's
/// says why (Secure Transport's and SChannel's failures stay transient).
fn tls_failed(mut source: Option<&(dyn StdError + 'static)>) -> bool {
    while let Some(err) = source {
        // OpenSSL gives its reason (a certificate, a protocol error) as the source; a connection
        // lost under the handshake gives an `io::Error`, or nothing at a clean close.
        #[cfg(feature = "native-tls")]
        if err.is::<native_tls::Error>() {
            return err.source().is_some_and(|reason| !reason.is::<io::Error>());
        }
        let mut io = err.downcast_ref::<io::Error>();
        while let Some(e) = io {
            if e.kind() == io::ErrorKind::InvalidData {
                return true;
            }
            io = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<io::Error>());
        }
        source = err.source();
    }
    false
}

/// How an HTTP/2 server turned a stream away while turning its connections over: what the
/// call may resend at once, spending none of its attempts (`RetryState::resends`), and what
/// the breaker does not count (`breaker::error_verdict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Without HTTP/2 (the `http2` feature), no server turns a stream away.
#[cfg_attr(not(feature = "http2"), allow(dead_code))]
pub(crate) enum Turnover {
    /// `REFUSED_STREAM`: the server did no work on the stream (RFC 9113 §8.7). Never sent.
    Refused,
    /// A graceful `GOAWAY` (`NO_ERROR`). RFC 9113 §6.8 promises that the streams above its last
    /// stream id were not processed, and h2 fails only those (streams it kept that the
    /// connection then loses fail with an io error), but hyper 1.x also hands the connection's
    /// GOAWAY to a request whose stream it opened just before it saw the frame ("check
    /// poll_ready() again" in its HTTP/2 client task), which the server may have kept and
    /// processed: nginx logged such a stream, the one that reached its `keepalive_requests`,
    /// as answered. So: maybe sent, and resent only when the request may be repeated.
    GoingAway,
}

#[cfg(feature = "http2")]
fn turnover_of(h2: &h2::Error) -> Option<Turnover> {
    if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
        Some(Turnover::Refused)
    } else if h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR) {
        Some(Turnover::GoingAway)
    } else {
        None
    }
}

/// The HTTP/2 turnover somewhere in `error`'s source chain, if there is one (see
/// [`Turnover`]); `classify::turnover` asks it of an error that may be one.
pub(crate) fn turnover_in(error: &(dyn StdError + 'static)) -> Option<Turnover> {
    #[cfg(feature = "http2")]
    {
        let mut source: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(err) = source {
            if let Some(h2) = err.downcast_ref::<h2::Error>() {
                return turnover_of(h2);
            }
            source = err.source();
        }
    }
    #[cfg(not(feature = "http2"))]
    let _ = error;
    None
}

fn analyze_chain(mut source: Option<&(dyn StdError + 'static)>) -> Option<Analysis> {
    while let Some(err) = source {
        if let Some(found) = analyze_one(err) {
            return Some(found);
        }
        source = err.source();
    }
    None
}

fn analyze_one(err: &(dyn StdError + 'static)) -> Option<Analysis> {
    use Delivery::{Delivered, MaybeSent, NotSent};
    use ErrorKind::{BodyTooLarge, Connect, ConnectionClosed, InvalidResponse};

    // The body limit of `send_with` readers (see `crate::exchange`).
    if err.is::<http_body_util::LengthLimitError>() {
        return Some(analysis(BodyTooLarge, Delivered));
    }

    // Without the feature, reqwest speaks no HTTP/2, so no h2 error can be in the chain.
    #[cfg(feature = "http2")]
    if let Some(h2) = err.downcast_ref::<h2::Error>() {
        match turnover_of(h2) {
            Some(Turnover::Refused) => return Some(analysis(ConnectionClosed, NotSent)),
            Some(Turnover::GoingAway) => return Some(analysis(ConnectionClosed, MaybeSent)),
            None => {}
        }
        if h2.reason().is_some() || h2.is_go_away() || h2.is_io() {
            return Some(analysis(ConnectionClosed, MaybeSent));
        }
    }
    if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
        if hyper.is_timeout() {
            return Some(TIMED_OUT);
        }
        if hyper.is_parse() || hyper.is_parse_status() {
            return Some(analysis(InvalidResponse, MaybeSent));
        }
        if hyper.is_incomplete_message()
            || hyper.is_closed()
            || hyper.is_canceled()
            || hyper.is_body_write_aborted()
        {
            return Some(analysis(ConnectionClosed, MaybeSent));
        }
    }
    if let Some(io) = err.downcast_ref::<io::Error>() {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused => Some(analysis(Connect, NotSent)),
            io::ErrorKind::TimedOut => Some(TIMED_OUT),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected => Some(analysis(ConnectionClosed, MaybeSent)),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose source is `inner`, as reqwest and hyper wrap theirs.
    #[derive(Debug)]
    struct Wrapper(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapper")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    fn chain(inner: impl StdError + Send + Sync + 'static) -> Option<Analysis> {
        let outer = Wrapper(Box::new(Wrapper(Box::new(inner))));
        analyze_chain(Some(&outer))
    }

    #[test]
    #[cfg(feature = "http2")]
    fn refused_stream_was_never_sent() {
        let found = chain(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert_eq!(
            found,
            Some(analysis(ErrorKind::ConnectionClosed, Delivery::NotSent))
        );
    }

    /// hyper may hand a graceful GOAWAY to a stream the server kept (see `Turnover`).
    #[test]
    #[cfg(feature = "http2")]
    fn a_graceful_goaway_may_have_been_processed() {
        // No public constructor for a remote GOAWAY: a GOAWAY frame read by a real h2 client
        // is in tests/http2.rs; here, what `turnover_of` makes of a refusal.
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert_eq!(turnover_of(&refused), Some(Turnover::Refused));
        let internal = h2::Error::from(h2::Reason::INTERNAL_ERROR);
        assert_eq!(turnover_of(&internal), None);
    }

    #[test]
    #[cfg(feature = "http2")]
    fn other_stream_resets_may_have_been_processed() {
        let found = chain(h2::Error::from(h2::Reason::INTERNAL_ERROR));
        assert_eq!(
            found,
            Some(analysis(ErrorKind::ConnectionClosed, Delivery::MaybeSent))
        );
    }

    /// A timeout the transport reports is what `timeout::ran_out` makes of the attempt's
    /// clock running out with the request out (its class is the classifier's).
    #[test]
    fn a_timeout_is_the_attempts_clock_maybe_sent() {
        use crate::timeout::{Clock, ran_out};
        let ran_out = ran_out(Clock::Attempt, Delivery::MaybeSent, None);
        let timed_out = chain(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(
            timed_out,
            Some(analysis(ran_out.kind(), ran_out.delivery()))
        );
    }

    #[test]
    fn io_errors_deep_in_the_chain() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            chain(reset),
            Some(analysis(ErrorKind::ConnectionClosed, Delivery::MaybeSent))
        );
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            chain(refused),
            Some(analysis(ErrorKind::Connect, Delivery::NotSent))
        );
        let other = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(chain(other), None);
    }
}
