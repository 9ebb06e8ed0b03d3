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
//! URLs inside a URL (in its path, its query, or making up an opaque URL such as
//! `blob:https://u:pw@h/`) are redacted too, escaped or not. Other secrets inside the *path*
//! (some webhook URLs) cannot be told apart from ordinary segments and are not removed.

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
    redact_url(url, 0)
}

/// [`url`], for a URL inside `depth` others: URLs in its path (`/fetch/https://u:pw@h/`), in
/// its query (`?next=https://u:pw@host/`, escaped or not) or making up its opaque path
/// (`blob:https://u:pw@h/`) are redacted too, up to [`NESTED_URLS`] deep, and hidden beyond.
fn redact_url(url: &Url, depth: usize) -> Url {
    let mut safe = url.clone();
    // Never sent to the server, and where OAuth implicit flows put their tokens.
    safe.set_fragment(None);
    if !safe.username().is_empty() || safe.password().is_some() {
        // Fails only for URLs that cannot have user info, which then have none to remove.
        let _ = safe.set_username("");
        let _ = safe.set_password(None);
    }
    if let Some(path) = redact_path(url, depth) {
        safe.set_path(&path);
        // Setting a path may escape or resolve what it holds: hide it rather than guess.
        if safe.path() != path {
            safe.set_path(REDACTED);
        }
    }
    let may_hide = url
        .query_pairs()
        .any(|(name, value)| is_secret_query(&name) || value.contains(':') || name.contains(':'));
    if may_hide {
        let mut changed = false;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let shown = if is_secret_query(&name) {
                    REDACTED.to_owned()
                } else {
                    redact_value(&value, depth).unwrap_or_else(|| value.to_string())
                };
                // `?https://u:pw@h/`, a URL with no `=`, is a name.
                let safe_name = redact_value(&name, depth);
                changed |= shown != value || safe_name.is_some();
                (safe_name.unwrap_or_else(|| name.into_owned()), shown)
            })
            .collect();
        // Rewritten only when a value changed: writing the pairs back escapes them anew.
        if changed {
            safe.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    safe
}

/// `value` (a query value, or an opaque path) redacted if it is a URL, `None` if it is kept.
///
/// It is read whole as one URL (what ends a URL in prose, `>` say, may be inside its user
/// info once unescaped). Not only with `://`: a parser reads `https:u:pw@h` and `https:\\u:pw@h`
/// as user `u`, password `pw`. A value with `://` that is no URL is hidden whole rather than
/// guessed at; one without stays as it is (`10:30`, `bob@x.example`).
fn redact_value(value: &str, depth: usize) -> Option<String> {
    if !value.contains(':') {
        return None;
    }
    match Url::parse(value) {
        Ok(_) if depth >= NESTED_URLS => Some(REDACTED.to_owned()),
        Ok(inner) => {
            let safe = redact_url(&inner, depth + 1);
            (safe != inner).then(|| safe.into())
        }
        Err(_) => value.contains("://").then(|| REDACTED.to_owned()),
    }
}

/// The path of `url`, a URL inside `depth` others, with the URLs in it redacted, or `None` if
/// it is kept as it is. A path without `://`, as written or escaped, is kept (no secret can be
/// told in it), unless it is the whole of an opaque URL (`blob:https:u:pw@h`).
fn redact_path(url: &Url, depth: usize) -> Option<String> {
    let path = url.path();
    let shown = if url.cannot_be_a_base() {
        redact_opaque_path(path, depth)
    } else if !path.contains("://") {
        None
    } else if depth >= NESTED_URLS {
        return Some(REDACTED.to_owned());
    } else {
        let mut shown = String::with_capacity(path.len());
        redact_into(&mut shown, path, depth + 1);
        (shown != path).then_some(shown)
    };
    // An escaped URL (`/fetch/https%3A%2F%2Fu%3Apw%40h`) hides the whole path if it holds
    // anything to hide: written back escaped, what it shows could not be told apart.
    let unescaped = unescape(shown.as_deref().unwrap_or(path));
    if let std::borrow::Cow::Owned(unescaped) = unescaped
        && unescaped.contains("://")
    {
        let mut again = String::with_capacity(unescaped.len());
        if depth < NESTED_URLS && !ends_url_in_text(&unescaped) {
            redact_into(&mut again, &unescaped, depth + 1);
        }
        if again != unescaped {
            return Some(REDACTED.to_owned());
        }
    }
    shown
}

/// An opaque path (`blob:…`, `data:…`) redacted: as one URL if it is one, else as text.
fn redact_opaque_path(path: &str, depth: usize) -> Option<String> {
    if !path.contains("://") {
        return redact_value(path, depth);
    }
    if depth >= NESTED_URLS {
        return Some(REDACTED.to_owned());
    }
    if let Ok(inner) = Url::parse(path) {
        let safe = redact_url(&inner, depth + 1);
        return (safe != inner).then(|| safe.into());
    }
    // Unlike a hierarchical path, an opaque one keeps spaces and quotes as written, which end
    // a URL in text and would leave the rest of its password shown.
    if ends_url_in_text(path) {
        return Some(REDACTED.to_owned());
    }
    let mut shown = String::with_capacity(path.len());
    redact_into(&mut shown, path, depth + 1);
    (shown != path).then_some(shown)
}

/// Whether `text` holds what ends a URL in text (see [`redact_into`]).
fn ends_url_in_text(text: &str) -> bool {
    text.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`'))
}

/// `text` with its `%XX` escapes decoded (bytes that are not UTF-8 replaced); borrowed if it
/// has none.
fn unescape(text: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

/// `text` with every URL in it redacted: a safety net for messages made by code we do not
/// control (a hook's error, an attempt layer's), which may quote a URL with credentials.
///
/// A URL runs until a space or a character that URLs escape (`"`, `<`, `>`, `` ` ``), less
/// closing punctuation. URLs inside it (glued on, `(http://a/)(http://u:pw@b/)`, or in a
/// query value) are redacted too, or hidden with all of it after its `://` when redacting it
/// rewrote them.
pub(crate) fn text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    redact_into(&mut out, text, 0);
    std::borrow::Cow::Owned(out)
}

/// How deep URLs inside URLs are read; deeper ones are hidden whole. Each level reads its URL
/// again, so without a limit a long chain of them would take time growing with its square
/// (and stack growing with its length).
const NESTED_URLS: usize = 4;

/// Appends `text` to `out` with every URL in it redacted; `depth` URLs hold this text.
fn redact_into(out: &mut String, text: &str, depth: usize) {
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        // Letters of any script may stand in a URL (a password with an `ä`): only space and
        // what a written URL always escapes end one, or else the rest of a secret would be
        // shown. Not `'`, which user info and fragments keep as it is (`http://u:it's@h/`).
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| at + i);
        // Closing punctuation ends a URL in prose more often than it belongs to one.
        let end = start.max(
            rest[..end]
                .trim_end_matches(|c: char| {
                    matches!(c, ')' | '.' | ',' | ';' | ':' | '\'')
                        || !(c.is_ascii() || c.is_alphanumeric())
                })
                .len(),
        );
        out.push_str(&rest[..start]);
        match Url::parse(&rest[start..end]) {
            Ok(found) => {
                let safe = redact_url(&found, depth);
                // Unchanged: keep it as written (parsing normalises, e.g. adds a slash).
                let shown = if safe == found {
                    &rest[start..end]
                } else {
                    safe.as_str()
                };
                // Other URLs may stand inside this one, glued on (`http://a/,http://u:pw@b/`)
                // or in its path or query: read on after this one's `://`. If redacting this
                // one rewrote them (escaped a query value, dropped an empty port's `:`),
                // they can no longer be read, so nothing after its `://` is shown.
                let after = shown.find("://").map_or(shown.len(), |i| i + 3);
                out.push_str(&shown[..after]);
                let inner = &shown[after..];
                let nested = rest[at + 3..end].matches("://").count();
                if nested == 0 && !inner.contains("://") {
                    out.push_str(inner);
                } else if depth < NESTED_URLS && inner.matches("://").count() == nested {
                    redact_into(out, inner, depth + 1);
                } else {
                    out.push_str(REDACTED);
                }
            }
            // Not a URL we can read: hide it whole rather than risk what it holds.
            Err(_) => out.push_str(REDACTED),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
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

/// What a DEBUG event echoes of a malformed field's value, at most.
pub(crate) const ECHO: usize = 64;

/// An untrusted header value as a DEBUG event shows it: its first [`ECHO`] bytes, escaped,
/// and its length when cut (a server's or a caller's value may be long, and may carry an
/// identifier a log need not keep whole).
pub(crate) struct Echo<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.get(..ECHO).unwrap_or(self.0);
        write!(f, "{}", shown.escape_ascii())?;
        if shown.len() < self.0.len() {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
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

    /// Found by `fuzz::messages_keep_no_secret`: a URL's user info and fragment keep `'` as
    /// written, and the URL used to end there, showing the rest of the password.
    #[test]
    fn a_quote_inside_a_url_does_not_end_it() {
        let message = "for http://bob:it's-hunter2@api.example/x#k=a'b: refused";
        let written = Url::parse("http://bob:it's-hunter2@api.example/x#k=a'b").unwrap();
        assert_eq!(
            written.as_str(),
            "http://bob:it's-hunter2@api.example/x#k=a'b"
        );
        assert_eq!(text(message), "for http://api.example/x: refused");
        assert_eq!(
            text("see 'http://u:p'w@h/a', or 'http://h/b'."),
            "see 'http://h/a', or 'http://h/b'."
        );
    }

    /// Found by `fuzz::messages_keep_no_secret`: a URL glued to the one before it was read as
    /// that one's path, which keeps what it holds.
    #[test]
    fn urls_inside_urls_are_redacted() {
        assert_eq!(
            text("(http://a.example/)(http://bob:pw@b.example/)"),
            "(http://a.example/)(http://b.example/)"
        );
        assert_eq!(
            text("tried http://a/,https://u:pw@b/x?api_key=k, then gave up"),
            "tried http://a/,https://b/x?api_key=REDACTED, then gave up"
        );
        // A URL in a query value is redacted with its URL (escaped anew, so that the text
        // no longer shows where it was, which hides the outer URL's rest too).
        assert_eq!(
            text("http://h/login?next=http://u:pw@x/"),
            format!("http://{REDACTED}")
        );
        assert_eq!(
            text("http://h/?token=t&next=http://u:pw@x/ then"),
            format!("http://{REDACTED} then")
        );
        assert_eq!(
            text("http://h/login?next=http://x/"),
            "http://h/login?next=http://x/"
        );
        // An opaque host swallowed the inner URL's scheme, and its empty port went missing.
        assert_eq!(
            text("foo://u@example.com(http://:pw@example.com/)"),
            format!("foo://{REDACTED})")
        );
        // A chain deeper than is ever written is hidden, not read again and again.
        let chain = "http://h/?u=".repeat(10_000);
        let shown = text(&chain);
        assert!(shown.ends_with(REDACTED) && shown.len() < 100, "{shown}");
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let raw = Url::parse("http://127.0.0.1:8080/search?q=rust&page=1").unwrap();
        assert_eq!(url(&raw), raw);
    }

    #[test]
    fn a_url_in_a_query_value_loses_its_secrets_too() {
        for raw in [
            "https://api.example/login?next=https://bob:hunter2@evil.example/x&page=2",
            "https://api.example/login?next=https%3A%2F%2Fbob%3Ahunter2%40evil.example%2Fx",
            "https://api.example/a?u=https://h.example/?token=hunter2",
            "https://api.example/a?u=https://h.example/?v=https://bob:hunter2@i.example/",
        ] {
            let shown = url(&Url::parse(raw).unwrap());
            assert!(!shown.as_str().contains("hunter2"), "{raw} -> {shown}");
            assert!(
                shown.as_str().starts_with("https://api.example/"),
                "{shown}"
            );
        }
        // A value that holds a URL with nothing secret is kept as written.
        let plain = "https://api.example/login?next=https://ok.example/x&page=2";
        assert_eq!(url(&Url::parse(plain).unwrap()).as_str(), plain);
        // URLs nested deeper than NESTED_URLS are hidden whole, never read without end.
        let mut deep = "https://bob:hunter2@z.example/".to_owned();
        for _ in 0..50 {
            deep = format!("https://a.example/?v={}", urlencode(&deep));
        }
        let shown = url(&Url::parse(&deep).unwrap());
        assert!(!shown.as_str().contains("hunter2"), "{shown}");
    }

    /// Found by review: URLs in a path, opaque URLs (`blob:…`) and the forms of a URL with
    /// user info that have no `://` (`https:u:pw@h`) kept their secrets.
    #[test]
    fn urls_in_paths_and_opaque_urls_lose_their_secrets() {
        for raw in [
            "https://api.example/fetch/https://bob:hunter2@x.example/",
            "https://api.example/a?next=https://proxy.example/https://bob:hunter2@x.example/",
            "https://api.example/a?next=a:https://bob:hunter2@x.example/",
            "https://api.example/a?next=blob:https://bob:hunter2@x.example/",
            "https://api.example/a?next=data:text/plain,https://bob:hunter2@x.example",
            "https://api.example/a?next=https:bob:hunter2@x.example",
            "https://api.example/a?next=https:/bob:hunter2@x.example",
            "https://api.example/a?next=https:%5C%5Cbob:hunter2@x.example",
            "https://api.example/a?next=blob:https:bob:hunter2@x.example",
            "https://api.example/a?next=https:x.example/?token=hunter2",
            "https://api.example/a?https://bob:hunter2@x.example/",
            "blob:https://bob:hunter2@x.example/",
            "data:text/plain,https://bob:hunter2@x.example",
            "a:https://bob:hunter 2@x.example",
            "data:text/plain,https://bob:hunter 2@x.example",
            "https://api.example/fetch/https%3A%2F%2Fbob%3Ahunter2%40x.example",
            "https://api.example/fetch/https://x.example/https%3A%2F%2Fbob%3Ahunter2%40x.example",
            "https://api.example/fetch/https%3A%2F%2Fx.example%2Fa%20b%3Ftoken%3Dhunter2",
        ] {
            let raw = Url::parse(raw).unwrap();
            let shown = url(&raw);
            assert!(!shown.as_str().contains("hunter"), "{raw} -> {shown}");
            assert_eq!(url(&shown), shown);
        }
        // What holds no secret is kept as written, whether it looks like a URL or not.
        for plain in [
            "https://api.example/fetch/https://x.example/a?q=1",
            "https://api.example/a?next=https:x.example&at=10:30&to=bob@x.example&m=mailto:b@x",
            "https://api.example/fetch/https%3A%2F%2Fx.example%2Fa",
            "blob:https://x.example/1",
            "data:text/plain,https://x.example/",
        ] {
            assert_eq!(url(&Url::parse(plain).unwrap()).as_str(), plain);
        }
    }

    fn urlencode(text: &str) -> String {
        url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
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

/// Property tests: `cargo test --lib redact::fuzz` runs a few thousand cases each;
/// `PROPTEST_CASES=1000000 cargo test --release --lib redact::fuzz` a million. Every secret
/// holds `MARK`: a redactor leaks if its output holds the mark, as written or escaped.
#[cfg(test)]
mod fuzz {
    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;
    use url::Url;

    use super::*;

    fn config() -> ProptestConfig {
        crate::fuzzing::config(2_000)
    }

    /// In every secret, and nowhere else: no name, host, path or prose can spell it.
    const MARK: &str = "ZXQJ7";

    /// `text` with its escapes decoded, so that an escaped leak shows too.
    fn decoded(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
            match (bytes[i], hex(i + 1), hex(i + 2)) {
                (b'%', Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn leaks(shown: &str) -> bool {
        shown.contains(MARK) || decoded(shown).contains(MARK)
    }

    /// Any text around the mark: quotes, `@`, `&`, `#`, spaces, other scripts.
    fn secret() -> impl Strategy<Value = String> {
        let around = prop_oneof![
            3 => "[ -~]{0,8}",
            1 => any::<String>(),
            1 => Just("'".to_owned()),
        ];
        (around.clone(), around).prop_map(|(a, b)| format!("{a}{MARK}{b}"))
    }

    /// `name` in mixed case, by the bits of `case`.
    fn mixed_case(name: &str, case: u64) -> String {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if case >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    /// A query parameter name that [`is_secret_query`] must catch.
    fn secret_query_name() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                "[a-z_.-]{0,4}",
                proptest::sample::select(SECRET_QUERY_PARTS),
                "[a-z_.-]{0,4}",
                any::<u64>()
            )
                .prop_map(|(a, part, b, case)| mixed_case(&format!("{a}{part}{b}"), case)),
            (proptest::sample::select(SECRET_QUERY_NAMES), any::<u64>())
                .prop_map(|(name, case)| mixed_case(name, case)),
        ]
    }

    const PLAIN_NAMES: &[&str] = &["page", "q", "limit", "sort", "lang", "id", "x", "cursor"];

    /// `text` escaped as a query component: every byte but letters and digits, and those
    /// too where `mask` says so, with hex digits of either case.
    fn escaped(text: &str, mask: u64) -> String {
        let mut out = String::new();
        for (i, b) in text.bytes().enumerate() {
            let bit = mask >> (i % 64) & 1 == 1;
            if b.is_ascii_alphanumeric() && !bit {
                out.push(b as char);
            } else if bit {
                out.push_str(&format!("%{b:02x}"));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// A URL with secrets in its user info, in credential-named query parameters and in its
    /// fragment, and harmless values everywhere else.
    #[derive(Debug, Clone)]
    struct Secrets {
        scheme: &'static str,
        host: &'static str,
        port: Option<u16>,
        path: Vec<String>,
        username: Option<String>,
        password: Option<String>,
        /// (name, value, whether the value is a secret)
        query: Vec<(String, String, bool)>,
        /// Written by hand, names and values escaped at random, rather than by the `url`
        /// crate's serializer.
        raw_query: Option<u64>,
        fragment: Option<String>,
    }

    impl Secrets {
        fn url(&self) -> Url {
            let mut url =
                Url::parse(&format!("{}://{}/", self.scheme, self.host)).expect("a valid base");
            let _ = url.set_port(self.port);
            url.set_path(&self.path.join("/"));
            if let Some(user) = &self.username {
                let _ = url.set_username(user);
            }
            if self.password.is_some() {
                let _ = url.set_password(self.password.as_deref());
            }
            if !self.query.is_empty() {
                match self.raw_query {
                    Some(mask) => {
                        let pairs: Vec<String> = (self.query.iter().enumerate())
                            .map(|(i, (name, value, _))| {
                                let mask = mask.rotate_left(i as u32 * 7);
                                format!("{}={}", escaped(name, mask), escaped(value, !mask))
                            })
                            .collect();
                        url.set_query(Some(&pairs.join("&")));
                    }
                    None => {
                        let pairs = self.query.iter().map(|(n, v, _)| (n, v));
                        url.query_pairs_mut().extend_pairs(pairs);
                    }
                }
            }
            url.set_fragment(self.fragment.as_deref());
            url
        }
    }

    fn secrets() -> impl Strategy<Value = Secrets> {
        let pair = prop_oneof![
            (secret_query_name(), secret()).prop_map(|(n, v)| (n, v, true)),
            (proptest::sample::select(PLAIN_NAMES), "[a-z0-9]{0,8}").prop_map(|(n, v)| (
                n.to_owned(),
                v,
                false
            )),
        ];
        (
            proptest::sample::select(&["http", "https", "ws", "wss", "ftp", "foo", "git+ssh"][..]),
            proptest::sample::select(
                &["example.com", "127.0.0.1", "[::1]", "xn--bcher-kva.de"][..],
            ),
            proptest::option::of(1..u16::MAX),
            proptest::collection::vec("[a-z0-9._~-]{0,6}", 0..4),
            (
                proptest::option::of(secret()),
                proptest::option::of(secret()),
            ),
            proptest::collection::vec(pair, 0..5),
            proptest::option::of(any::<u64>()),
            proptest::option::of(secret()),
        )
            .prop_map(
                |(scheme, host, port, path, (username, password), query, raw_query, fragment)| {
                    Secrets {
                        scheme,
                        host,
                        port,
                        path,
                        username,
                        password,
                        query,
                        raw_query,
                        fragment,
                    }
                },
            )
    }

    /// What may stand around a URL in a message.
    const WRAPPERS: &[(&str, &str)] = &[
        ("", ""),
        (" ", " "),
        ("(", ")"),
        ("\"", "\""),
        ("'", "'"),
        ("<", ">"),
        ("«", "»"),
        ("`", "`"),
        ("", "."),
        ("", ","),
        ("", ": "),
        ("[", "];"),
        ("url (", "): refused"),
    ];

    /// Prose: any text without a URL's `://` (and so without `/`) or the mark.
    fn prose() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 .,;:()'\"«»é@?#=&-]{0,12}",
            "[^/]{0,12}".prop_map(|s| s.replace(MARK, "")),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        /// User info, credential-named query values and the fragment never survive
        /// [`url`], and the rest of the URL does.
        #[test]
        fn urls_keep_no_secret(secrets in secrets()) {
            let raw = secrets.url();
            let safe = url(&raw);
            prop_assert!(!leaks(safe.as_str()), "{} -> {}", raw, safe);
            prop_assert_eq!(safe.host_str(), raw.host_str());
            prop_assert_eq!(safe.port(), raw.port());
            prop_assert_eq!(safe.path(), raw.path());
            let plain = |u: &Url| -> Vec<(String, String)> {
                u.query_pairs()
                    .filter(|(name, _)| !is_secret_query(name))
                    .map(|(n, v)| (n.into_owned(), v.into_owned()))
                    .collect()
            };
            prop_assert_eq!(plain(&safe), plain(&raw));
            // Showing it again changes nothing.
            prop_assert_eq!(url(&safe), safe);
        }

        /// A URL with secrets as the value of a plain query parameter (`?next=…`), escaped
        /// or as written, inside up to three URLs: no secret survives [`url`].
        #[test]
        fn urls_in_query_values_keep_no_secret(
            secrets in secrets(),
            depth in 1usize..=3,
            mask in any::<u64>(),
            name in proptest::sample::select(PLAIN_NAMES),
        ) {
            let mut nested = secrets.url().to_string();
            for level in 0..depth {
                // As written only where that keeps it the same value: an `&` or `#` would
                // make the rest of it the outer URL's (a parameter's name, its fragment), and
                // its own escapes would be undone (`%5C`, a backslash, is a `/` to a URL parser).
                let value = if mask >> level & 1 == 1 || nested.contains(['&', '#', '%']) {
                    escaped(&nested, mask)
                } else {
                    nested.clone()
                };
                nested = format!("https://outer.example/p?{name}={value}");
            }
            if let Ok(raw) = Url::parse(&nested) {
                let safe = url(&raw);
                prop_assert!(!leaks(safe.as_str()), "{} -> {}", raw, safe);
                prop_assert_eq!(safe.host_str(), Some("outer.example"));
            }
        }

        /// A URL with secrets, written with `://` or in a form a parser reads the same way
        /// (`https:u:pw@h`, `https:\\u:pw@h`), inside up to three URLs: in a query value, in a
        /// path (escaped or not), or as the whole of an opaque URL (`blob:…`, `a:…`,
        /// `data:text/plain,…`). No secret survives [`url`].
        #[test]
        fn urls_in_paths_and_opaque_urls_keep_no_secret(
            secrets in secrets(),
            form in proptest::sample::select(&["://", ":", ":/", ":\\\\", ":\\/", ":/\\"][..]),
            wraps in proptest::collection::vec(
                proptest::sample::select(
                    &["?v=", "/p/", "/p%2F", "blob:", "a:", "data:text/plain,"][..],
                ),
                1..=3,
            ),
            mask in any::<u64>(),
        ) {
            let mut nested = secrets.url().to_string();
            if ["http", "https", "ws", "wss", "ftp"].contains(&secrets.scheme) {
                nested = nested.replacen("://", form, 1);
            }
            for (level, wrap) in wraps.iter().enumerate() {
                // In a path or among other text, only a URL with `://` is told from the rest:
                // before its query and fragment, which the outer URL reads as its own (a
                // `://` in `#…` made a path of `http::pw@h`, which no reader tells from text).
                let text = wrap.starts_with("/p") || wrap.starts_with("data:");
                let marked = nested
                    .split(['?', '#'])
                    .next()
                    .is_some_and(|head| head.contains("://"));
                let wrap = if text && !marked { "?v=" } else { wrap };
                nested = match wrap {
                    "?v=" if mask >> level & 1 == 1 || nested.contains(['&', '#', '%']) => {
                        format!("https://outer.example/p?v={}", escaped(&nested, mask))
                    }
                    "?v=" | "/p/" => format!("https://outer.example/p{wrap}{nested}"),
                    "/p%2F" => format!("https://outer.example/p/{}", escaped(&nested, mask)),
                    _ => format!("{wrap}{nested}"),
                };
            }
            if let Ok(raw) = Url::parse(&nested) {
                let safe = url(&raw);
                prop_assert!(!leaks(safe.as_str()), "{} -> {}", raw, safe);
                prop_assert_eq!(safe.scheme(), raw.scheme());
                prop_assert_eq!(safe.host_str(), raw.host_str());
                prop_assert_eq!(url(&safe), safe);
            }
        }

        /// Any URL at all, as messages quote them: redacting never panics.
        #[test]
        fn any_url_redacts_without_panic(text in "[a-z+.-]{1,6}://[ -~]{0,40}") {
            if let Ok(raw) = Url::parse(&text) {
                let safe = url(&raw);
                prop_assert!(safe.password().is_none() && safe.username().is_empty());
                prop_assert!(safe.fragment().is_none());
            }
        }

        /// URLs with secrets inside messages: whatever stands around them, no secret is
        /// shown.
        #[test]
        fn messages_keep_no_secret(
            parts in proptest::collection::vec(
                (prose(), secrets(), proptest::sample::select(WRAPPERS)),
                1..4,
            ),
            tail in prose(),
        ) {
            let mut message = String::new();
            for (before, secrets, (open, close)) in &parts {
                message.push_str(before);
                message.push_str(open);
                let url = secrets.url();
                message.push_str(url.as_str());
                message.push_str(close);
            }
            message.push_str(&tail);
            let shown = text(&message);
            prop_assert!(!leaks(&shown), "{:?}\n -> {:?}", message, shown);
        }

        /// Any text at all: redacting never panics, and text without `://` is left as it is.
        #[test]
        fn any_text_redacts_without_panic(message in any::<String>(), glue in "(://)?") {
            let message = format!("{message}{glue}{message}");
            let shown = text(&message);
            if !message.contains("://") {
                prop_assert_eq!(shown.as_ref(), message.as_str());
            }
        }

        /// The values of `Authorization`, `Cookie` and every credential-named header are
        /// never shown; other values are.
        #[test]
        fn headers_keep_no_secret(
            secret_headers in proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(&[
                            "authorization", "proxy-authorization", "cookie", "set-cookie",
                            "x-api-key", "x-auth-token", "ocp-apim-subscription-key",
                        ][..]).prop_map(str::to_owned),
                        ("[a-z0-9-]{0,4}", proptest::sample::select(SECRET_HEADER_PARTS), "[a-z0-9-]{0,4}")
                            .prop_map(|(a, part, b)| format!("{a}{part}{b}")),
                    ],
                    any::<u64>(),
                    prop_oneof![
                        "(Bearer |Basic |token=)?".prop_map(|p| p.to_owned()),
                        Just("session=abc; id=".to_owned()),
                    ],
                    "[ -~]{0,12}",
                    proptest::collection::vec(0x80u8.., 0..3),
                ),
                1..4,
            ),
            plain_headers in proptest::collection::vec(
                (
                    proptest::sample::select(&["accept", "content-type", "x-request-id", "user-agent", "retry-after"][..]),
                    "[a-z0-9/.;= -]{0,12}",
                ),
                0..3,
            ),
        ) {
            let mut map = HeaderMap::new();
            for (name, case, prefix, rest, binary) in &secret_headers {
                let name = HeaderName::from_bytes(mixed_case(name, *case).as_bytes())
                    .expect("a token");
                let mut value = format!("{prefix}{MARK}{rest}").into_bytes();
                value.extend_from_slice(binary);
                let value = HeaderValue::from_bytes(&value).expect("visible bytes");
                map.append(name, value);
            }
            for (name, value) in &plain_headers {
                map.append(*name, HeaderValue::from_str(value.trim()).expect("visible ASCII"));
            }
            let shown = format!("{:?}", headers(&map));
            prop_assert!(!leaks(&shown), "{}", shown);
            for (name, value) in &plain_headers {
                let entry = format!("{:?}: {:?}", name, value.trim());
                prop_assert!(shown.contains(&entry), "{} not in {}", entry, shown);
            }
        }
    }
}
