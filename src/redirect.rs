//! Which redirects a client follows.
//!
//! A [`Client`](crate::Client) built by [`Client::builder`](crate::Client::builder) follows
//! redirects as reqwest does by default (up to 10 in a chain), except one whose target carries
//! user info (`http://bob:pw@host/`), which it refuses: the call fails with
//! [`ErrorKind::Transport`](crate::ErrorKind::Transport), permanent, and neither the target nor
//! its credentials appear in the error.
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

use reqwest::redirect::Policy;

/// reqwest's default policy (at most 10 redirects in a chain), refusing any redirect whose
/// target carries user info.
pub fn policy() -> Policy {
    let default = Policy::default();
    Policy::custom(move |attempt| {
        let target = attempt.url();
        if target.username().is_empty() && target.password().is_none() {
            default.redirect(attempt)
        } else {
            attempt.error(UserInfoInTarget)
        }
    })
}

/// Names no part of the target: it would be the secret.
#[derive(Debug)]
struct UserInfoInTarget;

impl fmt::Display for UserInfoInTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused a redirect to a URL with user info (credentials)")
    }
}

impl std::error::Error for UserInfoInTarget {}
