//! Which requests an endpoint rule applies to: methods, host, path. Matching allocates nothing.

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
    pub fn path(mut self, pattern: &str) -> Self {
        self.path = Some(match pattern.strip_suffix('*') {
            Some(prefix) => PathPattern::Prefix(prefix.to_owned()),
            None => PathPattern::Exact(pattern.to_owned()),
        });
        self
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
        match &self.path {
            None => true,
            Some(PathPattern::Exact(path)) => url.path() == path,
            Some(PathPattern::Prefix(prefix)) => url.path().starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
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
}
