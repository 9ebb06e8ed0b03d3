//! Removing secrets before they reach an error, a span, a log line, a metric or the probe.
//!
//! This is the one place that decides what is secret; errors, tracing and the `probe` example
//! all go through it.
//!
//! - **URLs**: user info (`user:password@`) and the fragment are dropped; the values of query
//!   parameters whose names look like credentials are replaced by [`REDACTED`].
//! - **Headers**: the values of `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`
//!   and of any header whose name looks like a credential are replaced by [`REDACTED`].
//!
//! Names are matched case-insensitively, mostly by substring: `token` covers `access_token`
//! and `X-Auth-Token`, `key` covers `api_key` and `X-Api-Key`, `sig` covers
//! `X-Amz-Signature`. Redacting a harmless value costs a reader a little; missing a secret
//! costs a leak, so the lists err on the side of hiding. [`add_names`] adds names of your own.
//!
//! Secrets inside the *path* (some webhook URLs) cannot be told apart from ordinary segments
//! and are not removed.

use std::fmt;
use std::sync::RwLock;

use http::HeaderMap;
use url::Url;

/// What replaces a secret value.
pub const REDACTED: &str = "REDACTED";

/// Query parameter names that are secret when they contain one of these.
const SECRET_QUERY_PARTS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "signature",
    "sig",
    "auth",
    "session",
    "credential",
    "private",
];
/// Query parameter names that are secret only as a whole (short, and common inside others).
const SECRET_QUERY_NAMES: &[&str] = &["code", "pass", "pwd"];

/// Header names that are secret when they contain one of these (`authorization`,
/// `proxy-authorization`, `cookie` and `set-cookie` included).
const SECRET_HEADER_PARTS: &[&str] = &[
    "auth",
    "cookie",
    "api-key",
    "apikey",
    "api_key",
    "token",
    "secret",
    "password",
    "signature",
    "session",
    "credential",
    "subscription-key",
];

/// Names added with [`add_names`], lowercased.
static EXTRA_NAMES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds names whose values are secret, in headers and in query strings, for the whole process.
///
/// A name matches any header or query parameter name that contains it, ignoring case. The
/// setting is process-wide because errors outlive the client that made them and are printed
/// wherever the caller likes; names can be added, never removed.
///
/// ```
/// resilient_http::redact::add_names(["x-tenant"]);
/// assert!(resilient_http::redact::is_secret_header("X-Tenant-Id"));
/// ```
pub fn add_names<I, S>(names: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut extra = EXTRA_NAMES.write().unwrap_or_else(|e| e.into_inner());
    for name in names {
        let name = name.as_ref().trim().to_ascii_lowercase();
        if !name.is_empty() && !extra.contains(&name) {
            extra.push(name);
        }
    }
}

fn added(name: &str) -> bool {
    let extra = EXTRA_NAMES.read().unwrap_or_else(|e| e.into_inner());
    extra.iter().any(|part| name.contains(part.as_str()))
}

/// Whether the value of the query parameter `name` is hidden.
pub fn is_secret_query(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_NAMES.contains(&name.as_str())
        || SECRET_QUERY_PARTS.iter().any(|part| name.contains(part))
        || added(&name)
}

/// Whether the value of the header `name` is hidden.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADER_PARTS.iter().any(|part| name.contains(part)) || added(&name)
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
    let has_secret = url.query_pairs().any(|(name, _)| is_secret_query(&name));
    if has_secret {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_query(&name) {
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

/// `text` with every URL in it redacted: a safety net for messages made by code we do not
/// control (a hook's error, an attempt layer's), which may quote a URL with credentials.
pub(crate) fn text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        // Letters of any script may stand in a URL (a password with an `ä`): only space and
        // quotes end one, or else the rest of a secret would be shown.
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| at + i);
        // Closing punctuation ends a URL in prose more often than it belongs to one.
        let end = start.max(
            rest[..end]
                .trim_end_matches(|c: char| {
                    matches!(c, ')' | '.' | ',' | ';' | ':')
                        || !(c.is_ascii() || c.is_alphanumeric())
                })
                .len(),
        );
        out.push_str(&rest[..start]);
        match Url::parse(&rest[start..end]) {
            Ok(found) => {
                let safe = url(&found);
                // Unchanged: keep it as written (parsing normalises, e.g. adds a slash).
                out.push_str(if safe == found {
                    &rest[start..end]
                } else {
                    safe.as_str()
                });
            }
            // Not a URL we can read: hide it whole rather than risk what it holds.
            Err(_) => out.push_str(REDACTED),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Shows `url` redacted, computing the redacted form only when it is printed (so a disabled
/// span or event costs nothing).
pub(crate) struct DisplayUrl<'a>(pub(crate) &'a Url);

impl fmt::Display for DisplayUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(url(self.0).as_str())
    }
}

/// Headers as they may be shown: secret values replaced by [`REDACTED`], values that are not
/// text shown as `<binary>`.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cr3t".parse().unwrap());
/// headers.insert("accept", "text/plain".parse().unwrap());
/// let shown = format!("{:?}", resilient_http::redact::headers(&headers));
/// assert!(shown.contains("REDACTED") && shown.contains("text/plain"));
/// assert!(!shown.contains("s3cr3t"));
/// ```
pub fn headers(headers: &HeaderMap) -> Headers<'_> {
    Headers(headers)
}

/// The redacted view of a header map returned by [`headers`].
pub struct Headers<'a>(&'a HeaderMap);

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_secret_header(name.as_str()) {
                    REDACTED
                } else {
                    value.to_str().unwrap_or("<binary>")
                };
                (name.as_str(), shown)
            }))
            .finish()
    }
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
    fn urls_inside_messages_are_redacted() {
        let message = "error sending request for url (http://127.0.0.1:1/token?client_secret=TOP&x=1): refused";
        assert_eq!(
            text(message),
            "error sending request for url (http://127.0.0.1:1/token?client_secret=REDACTED&x=1): refused"
        );
        assert_eq!(text("see https://u:pw@h/p."), "see https://h/p.");
        assert_eq!(text("no links here"), "no links here");
        assert_eq!(
            text("refusé «https://u:pw@idp.local/t» ok"),
            "refusé «https://idp.local/t» ok"
        );
        assert_eq!(text("é://"), "é://".replace("://", REDACTED));
        assert_eq!(
            text("at http://u:pässword@h/x, then"),
            "at http://h/x, then"
        );
        assert_eq!(
            text("token=«http://h/?token=geheimß»"),
            "token=«http://h/?token=REDACTED»"
        );
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let raw = Url::parse("http://127.0.0.1:8080/search?q=rust&page=1").unwrap();
        assert_eq!(url(&raw), raw);
    }

    #[test]
    fn secret_headers_by_name() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "set-cookie",
            "X-Api-Key",
            "x-auth-token",
            "X-Client-Secret",
        ] {
            assert!(is_secret_header(name), "{name}");
        }
        for name in ["accept", "content-type", "x-request-id", "retry-after"] {
            assert!(!is_secret_header(name), "{name}");
        }
    }

    #[test]
    fn added_names_hide_headers_and_query_values() {
        add_names(["X-Internal-Pin"]);
        assert!(is_secret_header("x-internal-pin"));
        let raw = Url::parse("http://h/p?x-internal-pin=1234&q=a").unwrap();
        assert_eq!(url(&raw).as_str(), "http://h/p?x-internal-pin=REDACTED&q=a");
    }
}
