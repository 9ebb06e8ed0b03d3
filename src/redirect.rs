//! Which redirects a client follows.
//!
//! A [`Client`](crate::Client) built by [`Client::builder`](crate::Client::builder) follows
//! redirects as reqwest does by default (up to 10 in a chain), except one whose target carries
//! user info (`http://bob:pw@host/`), which it refuses: the call fails with
//! [`ErrorKind::Transport`](crate::ErrorKind::Transport), permanent, and neither the target nor
//! its credentials appear in the error.
//!
//! Each redirect error says what stopped the chain (more than 10 redirects, a loop most
//! likely; a target with user info; a `Location` whose scheme is not `http` or `https`) and
//! names the URL the caller asked for (redacted), not the last hop. A `Location` that is no
//! URL at all is not followed: the redirect comes back as the response, as reqwest does.
//!
//! Why refuse rather than drop the credentials, as curl does on a redirect to another host:
//! reqwest 0.13 takes the target as written in `Location` into the connection pool's key, which
//! hyper-util logs at DEBUG, and its redirect policy can follow, stop or fail a redirect but not
//! rewrite its target. Refusing is the only way to keep the secret out of the logs.
//!
//! A `reqwest::Client` of your own (given to
//! [`ClientBuilder::reqwest_client`](crate::ClientBuilder::reqwest_client), or the one under
//! `ResilientMiddleware`) keeps the redirect policy you gave it: give it this one with
//! `reqwest::Client::builder().redirect(resilient_http::redirect::policy())`.

use std::fmt;

use reqwest::redirect::{Attempt, Policy};
use url::Url;

/// The most redirects in a chain, as reqwest's default policy allows.
const MAX_REDIRECTS: usize = 10;

/// reqwest's default policy (at most 10 redirects in a chain), refusing any redirect whose
/// target carries user info, or is not `http` or `https` (which reqwest cannot follow).
///
/// Its errors say which of these stopped the chain, and name the URL the chain began with
/// (redacted), never the target.
pub fn policy() -> Policy {
    Policy::custom(|attempt| {
        let why = refusal(&attempt);
        match why {
            None => attempt.follow(),
            Some(why) => {
                // The first of `previous` is the URL the caller asked for.
                let origin = attempt.previous().first().map(crate::redact::url);
                attempt.error(Refused { why, origin })
            }
        }
    })
}

/// Why `attempt` is not followed, if it is not.
fn refusal(attempt: &Attempt<'_>) -> Option<Why> {
    // `previous` holds the URL asked for and each redirect followed since.
    if attempt.previous().len() > MAX_REDIRECTS {
        return Some(Why::TooMany);
    }
    let target = attempt.url();
    if !target.username().is_empty() || target.password().is_some() {
        return Some(Why::UserInfo);
    }
    if !matches!(target.scheme(), "http" | "https") {
        return Some(Why::Scheme(target.scheme().to_owned()));
    }
    None
}

/// A redirect this crate's policy did not follow. Names no part of the target: it may hold
/// the secret.
#[derive(Debug)]
pub(crate) struct Refused {
    why: Why,
    /// The URL of the call, redacted (reqwest's error names the last hop instead).
    origin: Option<Url>,
}

impl Refused {
    /// The URL the chain began with, redacted.
    pub(crate) fn origin(&self) -> Option<&Url> {
        self.origin.as_ref()
    }
}

#[derive(Debug)]
enum Why {
    /// More than [`MAX_REDIRECTS`] in a chain: a loop, most likely.
    TooMany,
    /// The target carries user info (credentials).
    UserInfo,
    /// The target's scheme is not `http` or `https`.
    Scheme(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.why {
            Why::TooMany => write!(
                f,
                "too many redirects: more than {MAX_REDIRECTS} in a row (a redirect loop?)"
            ),
            Why::UserInfo => f.write_str(
                "refused a redirect to a URL with user info (credentials); the target is withheld",
            ),
            Why::Scheme(scheme) => write!(
                f,
                "the Location of a redirect is no http or https URL (its scheme is {scheme:?})"
            ),
        }
    }
}

impl std::error::Error for Refused {}

/// What a redirect error of reqwest's (`is_redirect()`) says, and the URL it should name
/// (`None`: the one reqwest gave, the last hop). The error itself is not kept: it nests
/// another reqwest error holding the *next* URL, which may carry credentials and cannot be
/// redacted in place.
pub(crate) fn explain(error: &reqwest::Error) -> (String, Option<Url>) {
    use std::error::Error as _;
    let cause = error.source();
    if let Some(refused) = cause.and_then(|c| c.downcast_ref::<Refused>()) {
        return (refused.to_string(), refused.origin().cloned());
    }
    // reqwest's own policy, in a `reqwest::Client` of the user's: its limit is the one
    // refusal it makes, and its error names the last hop.
    let detail = if cause.is_some_and(|c| c.to_string() == "too many redirects") {
        "too many redirects (the URL shown is the last hop; with \
         `resilient_http::redirect::policy()` it is the one asked for)"
    } else {
        "the redirect policy refused a redirect (its reason is withheld: it may name the target)"
    };
    (detail.to_owned(), None)
}
