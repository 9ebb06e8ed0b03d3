//! Removing secrets from URLs before they reach an error, a log line or a Debug print.
//!
//! User info (`user:password@`) and the fragment are dropped; the values of query parameters
//! whose names look like credentials are replaced by `REDACTED`. Names are matched
//! case-insensitively: exact names for short ambiguous ones (`key`, `sig`, `code`), substrings
//! for the rest (`access_token`, `X-Amz-Signature`, `client_secret`, `subscription-key`, ...).
//! Secrets inside the *path* (some webhook URLs) cannot be told apart from ordinary segments
//! and are not removed.

use url::Url;

/// What replaces a secret value.
pub const REDACTED: &str = "REDACTED";

const SECRET_NAMES: &[&str] = &["key", "sig", "code", "pass", "pwd"];
const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "accesskey",
    "auth",
    "subscription-key",
    "subscription_key",
    "session",
    "signature",
    "credential",
    "private",
];

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.contains(&name.as_str()) || SECRET_PARTS.iter().any(|part| name.contains(part))
}

/// A copy of `url` that is safe to show in logs and output.
///
/// ```
/// let raw = url::Url::parse("https://bob:pw@api.example/x?api_key=k&page=2#t").unwrap();
/// assert_eq!(
///     resilient_http::redact::url(&raw).as_str(),
///     "https://api.example/x?api_key=REDACTED&page=2"
/// );
/// ```
pub fn url(url: &Url) -> Url {
    let mut safe = url.clone();
    // Never sent to the server, and where OAuth implicit flows put their tokens.
    safe.set_fragment(None);
    if !safe.username().is_empty() || safe.password().is_some() {
        // Fails only for URLs that cannot have user info, which then have none to remove.
        let _ = safe.set_username("");
        let _ = safe.set_password(None);
    }
    let has_secret = url.query_pairs().any(|(name, _)| is_secret(&name));
    if has_secret {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    REDACTED.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        safe.query_pairs_mut().clear().extend_pairs(pairs);
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_user_info_and_secret_values() {
        let raw = Url::parse(
            "https://alice:hunter2@api.example/v1/items?page=2&access_token=abc&X-Amz-Signature=def&key=k1&Subscription-Key=s&session_id=x#id_token=t",
        )
        .unwrap();
        let safe = url(&raw).to_string();
        assert_eq!(
            safe,
            "https://api.example/v1/items?page=2&access_token=REDACTED&X-Amz-Signature=REDACTED&key=REDACTED&Subscription-Key=REDACTED&session_id=REDACTED"
        );
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let raw = Url::parse("http://127.0.0.1:8080/search?q=rust&page=1").unwrap();
        assert_eq!(url(&raw), raw);
    }
}
