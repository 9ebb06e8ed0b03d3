//! The words for an attempt's outcome that every floor of the crate speaks: its [`Class`]
//! (success, transient, permanent) and its [`Delivery`] (how far the request got).
//!
//! They sit on the ground floor, below the error that carries them and the classifiers that
//! decide them, so that neither has to import the other's floor for them. Public as
//! `resilient_http::Class` and `resilient_http::classify::Class` (and `Delivery` alike).

use std::fmt;

/// What an attempt's outcome means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The call worked.
    Success,
    /// The call failed in a way that trying again (later) may fix.
    Transient,
    /// The call failed in a way that trying again cannot fix.
    Permanent,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Success => "success",
            Class::Transient => "transient",
            Class::Permanent => "permanent",
        })
    }
}

/// How far the request got: decides whether a non-idempotent request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The request never reached the server (connect refused, DNS failure, `REFUSED_STREAM`):
    /// sending it again is safe for any method.
    NotSent,
    /// The request may have been processed (reset after writing, timeout while waiting, an
    /// HTTP/2 graceful `GOAWAY`: see [`retry::MAX_RESENDS`](crate::retry::MAX_RESENDS)).
    MaybeSent,
    /// The server answered.
    Delivered,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::NotSent => "never sent",
            Delivery::MaybeSent => "maybe sent",
            Delivery::Delivered => "delivered",
        })
    }
}
