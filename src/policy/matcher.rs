//! Which requests an endpoint rule applies to: methods, host, path. Matching allocates nothing.
//! (The rule index, `index.rs`, allocates a path's normal form when it differs from the path.)

use std::borrow::Cow;

use http::Method;
use url::Url;

use crate::error::Error;

/// Selects requests by method, host and path; every part left out matches anything.
///
/// ```
/// use resilient_http::policy::Matcher;
///
/// let payments = Matcher::new()
///     .host("api.example.com")?
///     .path("/v1/charges*")
///     .methods(["POST"])?;
/// let search = Matcher::new().host("*.search.example.com:8443")?;
/// # let _ = (payments, search);
/// # Ok::<(), resilient_http::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    methods: Option<Vec<Method>>,
    host: Option<HostPattern>,
    path: Option<PathPattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    /// Lowercase; for a wildcard, the suffix including its leading dot (`.example.com`).
    name: String,
    wildcard: bool,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PathPattern {
    Exact(String),
    Prefix(String),
}

impl Matcher {
    /// Matches every request.
    pub fn new() -> Self {
        Matcher::default()
    }

    /// Only these methods (case-sensitive, as HTTP methods are).
    pub fn methods<I, M>(mut self, methods: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        let parsed = methods
            .into_iter()
            .map(|m| {
                let m = m.as_ref();
                // Methods are case-sensitive: "post" would be an extension method that never
                // matches POST, silently skipping the rule.
                if m.bytes().any(|b| b.is_ascii_lowercase()) {
                    return Err(Error::invalid_config(format!(
                        "invalid method {m:?} in match: methods are case-sensitive, write {:?}",
                        m.to_ascii_uppercase()
                    )));
                }
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| Error::invalid_config(format!("invalid method {m:?} in match")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.methods = Some(parsed);
        Ok(self)
    }

    /// Only this host: exact (`api.example.com`) or every subdomain (`*.example.com`, which
    /// does not match `example.com` itself), optionally with a port (`api.example.com:8443`;
    /// without one, any port matches).
    pub fn host(mut self, pattern: &str) -> Result<Self, Error> {
        let bad = || Error::invalid_config(format!("invalid host pattern {pattern:?} in match"));
        let bracketed = pattern.starts_with('[') && pattern.ends_with(']');
        let (name, port) = match pattern.rsplit_once(':') {
            Some((name, port)) if !bracketed => {
                (name, Some(port.parse::<u16>().map_err(|_| bad())?))
            }
            _ => (pattern, None),
        };
        let (name, wildcard) = match name.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (name, false),
        };
        if name.is_empty() || name.contains(['*', '/', ' ', '@', '?', '#']) {
            return Err(bad());
        }
        // The form URLs hold: lowercase, punycode, compressed IPv6, no trailing dot.
        let canonical = Url::parse(&format!("http://{name}/"))
            .ok()
            .and_then(|url| url.host_str().map(|h| h.trim_end_matches('.').to_owned()))
            .filter(|h| !h.is_empty())
            .ok_or_else(bad)?;
        let name = if wildcard {
            format!(".{canonical}")
        } else {
            canonical
        };
        self.host = Some(HostPattern {
            name,
            wildcard,
            port,
        });
        Ok(self)
    }

    /// Only this path: exact (`/v1/charges`) or a prefix, with a trailing `*` (`/v1/*`).
    ///
    /// Paths are compared as a server reads them (RFC 3986, 6.2.2): an escaped letter, digit
    /// or `-._~` is the character itself (`/v1/%63harges` is `/v1/charges`), and other escapes
    /// match in either case (`%2f` is `%2F`, but never `/`).
    pub fn path(mut self, pattern: &str) -> Self {
        self.path = Some(match pattern.strip_suffix('*') {
            Some(prefix) => PathPattern::Prefix(normal_pattern(prefix, true)),
            None => PathPattern::Exact(normal_pattern(pattern, false)),
        });
        self
    }

    /// The host this matcher selects, for the rule index (`policy::index`).
    pub(super) fn host_key(&self) -> Option<HostKey<'_>> {
        let host = self.host.as_ref()?;
        Some(match host.wildcard {
            true => HostKey::Wildcard(&host.name),
            false => HostKey::Exact(&host.name),
        })
    }

    /// The path this matcher selects, in normal form, for the rule index (`policy::index`).
    pub(super) fn path_key(&self) -> PathKey<'_> {
        match &self.path {
            None => PathKey::Any,
            Some(PathPattern::Exact(path)) => PathKey::Exact(path),
            Some(PathPattern::Prefix(prefix)) => PathKey::Prefix(prefix),
        }
    }

    /// Whether a request with this method and URL is selected.
    pub fn matches(&self, method: &Method, url: &Url) -> bool {
        if self.methods.as_ref().is_some_and(|m| !m.contains(method)) {
            return false;
        }
        if let Some(host) = &self.host {
            let Some(actual) = url.host_str() else {
                return false;
            };
            // `api.example.com.` is the same host as `api.example.com`.
            let actual = actual.strip_suffix('.').unwrap_or(actual);
            let name_ok = if host.wildcard {
                actual.len() > host.name.len()
                    && actual
                        .get(actual.len() - host.name.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(&host.name))
            } else {
                actual.eq_ignore_ascii_case(&host.name)
            };
            if !name_ok
                || host
                    .port
                    .is_some_and(|p| url.port_or_known_default() != Some(p))
            {
                return false;
            }
        }
        let path = url.path();
        // Most paths have no escapes: then the normal form is the path itself.
        let escaped = path.contains('%');
        match &self.path {
            None => true,
            Some(PathPattern::Exact(pattern)) if !escaped => path == pattern,
            Some(PathPattern::Prefix(prefix)) if !escaped => path.starts_with(prefix.as_str()),
            Some(PathPattern::Exact(pattern)) => normalized(path).eq(pattern.bytes()),
            Some(PathPattern::Prefix(prefix)) => {
                let mut path = normalized(path);
                prefix.bytes().all(|b| path.next() == Some(b))
            }
        }
    }
}

/// A matcher's host, as [`Matcher::matches`] compares it: any ASCII case, a request's host
/// without one trailing dot.
pub(super) enum HostKey<'a> {
    /// This host only.
    Exact(&'a str),
    /// Every host ending with this suffix, which starts with a dot, and is longer than it.
    Wildcard(&'a str),
}

/// A matcher's path, in the normal form of [`normal_path`].
pub(super) enum PathKey<'a> {
    /// Any path.
    Any,
    /// This path only.
    Exact(&'a str),
    /// Every path starting with this one.
    Prefix(&'a str),
}

/// A request's path in the normal form that [`Matcher::matches`] compares with its pattern.
pub(super) fn normal_path(path: &str) -> Cow<'_, str> {
    // Most escapes (`%40`, `%2F`) are already in normal form: then nothing is allocated.
    if normalized(path).eq(path.bytes()) {
        return Cow::Borrowed(path);
    }
    let bytes: Vec<u8> = normalized(path).collect();
    // Decoding only ever yields ASCII and leaves every other byte as it was: the bytes stay
    // the UTF-8 they were (the lossy path is never taken; it only avoids a panic).
    match String::from_utf8(bytes) {
        Ok(path) => Cow::Owned(path),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// A path pattern in the form request paths take: as the `url` crate writes a path (spaces
/// and non-ASCII escaped, dot segments resolved), then [`normalized`]. A `prefix` that ends
/// inside an escape (`/a%e`) gets its digits in uppercase, as the whole escape would.
fn normal_pattern(pattern: &str, prefix: bool) -> String {
    let written = Url::parse("http://h/").map(|mut url| {
        url.set_path(pattern);
        url.path().to_owned()
    });
    let written = written.as_deref().unwrap_or(pattern);
    let mut bytes: Vec<u8> = normalized(written).collect();
    if let Some(at) = bytes.iter().rposition(|b| *b == b'%')
        && prefix
        && bytes.len() - at <= 2
    {
        bytes[at..].make_ascii_uppercase();
    }
    // Decoding only ever yields ASCII, so the bytes stay UTF-8.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The bytes of `path` in the normal form of RFC 3986 (6.2.2.1 and 6.2.2.2): escaped
/// unreserved characters decoded, other escapes in uppercase. Allocates nothing.
fn normalized(path: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = path.as_bytes();
    let mut i = 0;
    let mut pending: [u8; 2] = [0; 2];
    let mut pending_len = 0;
    std::iter::from_fn(move || {
        if pending_len > 0 {
            let b = pending[2 - pending_len];
            pending_len -= 1;
            return Some(b);
        }
        let b = *bytes.get(i)?;
        i += 1;
        if b != b'%' {
            return Some(b);
        }
        let hex = |at: usize| bytes.get(at).and_then(|h| (*h as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i), hex(i + 1)) else {
            return Some(b'%');
        };
        i += 2;
        // Both digits are below 16, so this fits a byte.
        let decoded = (hi * 16 + lo) as u8;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            return Some(decoded);
        }
        pending = [
            bytes[i - 2].to_ascii_uppercase(),
            bytes[i - 1].to_ascii_uppercase(),
        ];
        pending_len = 2;
        Some(b'%')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_path_already_in_normal_form_is_borrowed_not_copied() {
        // The rule index asks for the normal form of every escaped request path.
        assert!(matches!(
            normal_path("/users/a%40b%2F"),
            Cow::Borrowed("/users/a%40b%2F")
        ));
        assert!(matches!(normal_path("/a%7eb%2f"), Cow::Owned(ref p) if p == "/a~b%2F"));
    }

    #[test]
    fn hosts_exact_wildcard_and_port() {
        let exact = Matcher::new().host("API.example.com").unwrap();
        assert!(exact.matches(&Method::GET, &url("https://api.example.com/x")));
        assert!(!exact.matches(&Method::GET, &url("https://www.example.com/x")));
        let wild = Matcher::new().host("*.example.com").unwrap();
        assert!(wild.matches(&Method::GET, &url("https://a.b.example.com/")));
        assert!(!wild.matches(&Method::GET, &url("https://example.com/")));
        assert!(!wild.matches(&Method::GET, &url("https://badexample.com/")));
        let port = Matcher::new().host("api.example.com:443").unwrap();
        assert!(port.matches(&Method::GET, &url("https://api.example.com/")));
        assert!(!port.matches(&Method::GET, &url("http://api.example.com/")));
        let ip = Matcher::new().host("127.0.0.1:8080").unwrap();
        assert!(ip.matches(&Method::GET, &url("http://127.0.0.1:8080/a")));
        let v6 = Matcher::new().host("[0:0::1]").unwrap();
        assert!(v6.matches(&Method::GET, &url("http://[::1]:9/")));
        let idn = Matcher::new().host("bücher.de").unwrap();
        assert!(idn.matches(&Method::GET, &url("https://bücher.de/")));
        assert!(exact.matches(&Method::GET, &url("https://api.example.com./x")));
        assert!(Matcher::new().host("*").is_err());
        assert!(Matcher::new().host("a.com:http").is_err());
    }

    #[test]
    fn paths_and_methods() {
        let m = Matcher::new()
            .path("/v1/charges*")
            .methods(["POST", "PUT"])
            .unwrap();
        assert!(m.matches(&Method::POST, &url("http://h/v1/charges/7")));
        assert!(!m.matches(&Method::GET, &url("http://h/v1/charges/7")));
        assert!(!m.matches(&Method::POST, &url("http://h/v1/refunds")));
        let exact = Matcher::new().path("/health");
        assert!(exact.matches(&Method::GET, &url("http://h/health?x=1")));
        assert!(!exact.matches(&Method::GET, &url("http://h/health/deep")));
        assert!(Matcher::new().methods(["GE T"]).is_err());
        assert!(Matcher::new().methods(["post"]).is_err());
    }

    #[test]
    fn escaped_paths_match_as_the_server_reads_them() {
        let charges = Matcher::new().path("/v1/charges*");
        for path in [
            "/v1/%63harges",
            "/v1/%63%68arges/7",
            "/%76%31/charges",
            "/v1/charge%73",
        ] {
            assert!(
                charges.matches(&Method::POST, &url(&format!("http://h{path}"))),
                "{path}"
            );
        }
        assert!(!charges.matches(&Method::POST, &url("http://h/v1/%2563harges")));
        let exact = Matcher::new().path("/a%2fb");
        assert!(exact.matches(&Method::GET, &url("http://h/a%2Fb")));
        assert!(!exact.matches(&Method::GET, &url("http://h/a/b")));
        let tilde = Matcher::new().path("/%7Euser");
        assert!(tilde.matches(&Method::GET, &url("http://h/~user")));
        let odd = Matcher::new().path("/100%*");
        assert!(odd.matches(&Method::GET, &url("http://h/100%")));
        assert!(
            !Matcher::new()
                .path("/x")
                .matches(&Method::GET, &url("http://h/%78y"))
        );
        let partial = Matcher::new().path("/a%e*");
        assert!(partial.matches(&Method::GET, &url("http://h/a%e9")));
        let literal = Matcher::new().path("/x%a");
        assert!(literal.matches(&Method::GET, &url("http://h/x%a")));
        let unicode = Matcher::new().path("/café/*");
        assert!(unicode.matches(&Method::GET, &url("http://h/caf%C3%A9/menu")));
        assert!(unicode.matches(&Method::GET, &url("http://h/café/menu")));
        let dots = Matcher::new().path("/v1/%2e%2e/charges");
        assert!(dots.matches(&Method::GET, &url("http://h/charges")));
    }
}
