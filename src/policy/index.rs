//! Which endpoint rule a request matches, in time that does not grow with the rules.
//!
//! The rules are tried in order and the first that matches wins ([`Policies::select_index`]).
//! Trying each costs about 75 instructions a rule that does not match, so a policy file of
//! 100 rules cost 7,500 per call, more than the rest of the library. Most rules name a host
//! and many a path, and a request can only match the rules of its own host and path: this
//! index finds those **candidates** with a few hash lookups, and the full [`Matcher`] decides
//! among them, lowest index first. The answer is the linear scan's, exactly: every rule the
//! scan would find is a candidate, and a candidate counts only when its whole matcher agrees
//! (the property test `cargo test --lib policy::index::fuzz` compares the two).
//!
//! Rules are filed by host:
//! - an exact host (`api.example.com`), by the lowercase name: one lookup of the request's
//!   host (lowercase, without the one trailing dot that names the same host);
//! - a wildcard (`*.example.com`), by its suffix with the leading dot: one lookup per suffix
//!   of the request's host that starts at a dot after its first byte and has the length of
//!   some wildcard's suffix (`a.b.example.com` under `*.example.com`: `.example.com` only);
//! - no host: every request is a candidate host-wise.
//!
//! Then, within each of those, by path (in the normal form the matcher compares, see
//! [`Matcher::path`]): an exact path by itself; a prefix by its first segment with both of
//! its slashes (`/v1/charges*` under `/v1/`), which every path it is a prefix of shares; a
//! prefix without a whole first segment (`/v*`) by itself, looked up by the path's start of
//! each length such prefixes have; no path at all in a list always tried.
//! Methods and ports are left to the matcher: rules rarely differ only by them. Names of each
//! length are a bit of a mask: a host whose length no rule's has is not even hashed.
//!
//! Measured (`REPEAT=3 bash benches/instructions.sh 2000 resilient+1rule resilient+100rules`,
//! outside alloc): 100 rules that the request does not match cost +7.4k a call over 1 rule
//! tried in turn; through the index, +0.16k.
//!
//! [`Policies::select_index`]: super::compiled::Policies::select_index

use std::borrow::Cow;
use std::collections::HashMap;

use http::Method;
use url::Url;

use super::Matcher;
use super::matcher::{HostKey, PathKey, normal_path};

/// foldhash, as the endpoint maps (`keyed.rs`): the lookups run on every call.
type Map<T> = HashMap<Box<str>, T, foldhash::fast::RandomState>;

/// The endpoint rules by host and path; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    /// Rules for one host, by its lowercase name.
    exact: Hosts,
    /// Rules for every subdomain, by the lowercase suffix with its leading dot.
    wildcard: Hosts,
    /// Rules for any host.
    any: Paths,
    /// Whether some rule has a path: else a request's path is never read.
    paths: bool,
    /// Each policy's index by name (the first of a name: names are unique anyway).
    names: Map<usize>,
}

/// Hosts (or suffixes) and their rules, with a bit per length of the names (bit 63: 63 or
/// more): most hosts that are not there are told by their length, without hashing them.
#[derive(Debug, Default)]
struct Hosts {
    map: Map<Paths>,
    lengths: u64,
}

/// The bit of a length or count in the masks of [`Hosts`] and [`RuleIndex`].
fn bit(n: usize) -> u64 {
    1 << n.min(63)
}

impl Hosts {
    fn entry(&mut self, name: &str) -> &mut Paths {
        self.lengths |= bit(name.len());
        self.map
            .entry(name.to_ascii_lowercase().into())
            .or_default()
    }

    fn get(&self, name: &str) -> Option<&Paths> {
        if self.lengths & bit(name.len()) == 0 {
            return None;
        }
        self.map.get(name)
    }

    /// The suffixes of `host` that may be wildcard suffixes here: those of a length some
    /// suffix has, starting at a dot, with at least a byte before it (a wildcard does not
    /// match its bare domain). Shortest first; by the lengths' bits, not by walking `host`.
    fn suffixes<'h>(&self, host: &'h str) -> impl Iterator<Item = &'h str> {
        // The exact lengths below 63, each a bit; then every length from 63 up, bit 63's.
        let below = self.lengths & (bit(host.len().min(63)) - 1);
        let exact = Bits(below);
        let long = (self.lengths & bit(63) != 0).then_some(63..host.len());
        let lengths = exact.chain(long.into_iter().flatten());
        lengths.filter_map(move |len| {
            let suffix = host.get(host.len().checked_sub(len)?..)?;
            suffix.starts_with('.').then_some(suffix)
        })
    }
}

/// The positions of the bits set in a mask, lowest first.
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let at = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        // Below 64: fits any usize.
        Some(at as usize)
    }
}

/// The rules of one host entry, by path. Each list holds rule indices in increasing order.
#[derive(Debug, Default)]
struct Paths {
    /// Rules for one path (normal form), by that path.
    exact: Map<Vec<usize>>,
    /// Prefix rules, by their first segment with both slashes ([`segment`]).
    segment: Map<Vec<usize>>,
    /// Prefix rules without a whole first segment (`/v*`), by the prefix.
    short: Map<Vec<usize>>,
    /// The lengths of the `short` prefixes, each once, shortest first: a path is looked up by
    /// its start of each length.
    short_lengths: Vec<usize>,
    /// Rules without a path, which any path matches.
    rest: Vec<usize>,
}

impl Paths {
    fn add(&mut self, index: usize, path: PathKey<'_>) {
        let list = match path {
            PathKey::Exact(path) => self.exact.entry(path.into()).or_default(),
            PathKey::Prefix(prefix) => match segment(prefix) {
                Some(segment) => self.segment.entry(segment.into()).or_default(),
                None => {
                    if let Err(at) = self.short_lengths.binary_search(&prefix.len()) {
                        self.short_lengths.insert(at, prefix.len());
                    }
                    self.short.entry(prefix.into()).or_default()
                }
            },
            PathKey::Any => &mut self.rest,
        };
        list.push(index);
    }

    /// Lowers `best` to the lowest index of these rules below it whose matcher matches.
    fn probe(&self, path: &str, best: &mut usize, matches: &impl Fn(usize) -> bool) {
        if !self.exact.is_empty()
            && let Some(list) = self.exact.get(path)
        {
            first_match(list, best, matches);
        }
        if !self.segment.is_empty()
            && let Some(list) = segment(path).and_then(|segment| self.segment.get(segment))
        {
            first_match(list, best, matches);
        }
        for &len in &self.short_lengths {
            let Some(start) = path.get(..len) else {
                // Longer than the path (or inside a character, which no prefix ends in).
                if len > path.len() {
                    break;
                }
                continue;
            };
            if let Some(list) = self.short.get(start) {
                first_match(list, best, matches);
            }
        }
        first_match(&self.rest, best, matches);
    }
}

/// Lowers `best` to the first index of `list` (increasing) below it whose matcher matches.
fn first_match(list: &[usize], best: &mut usize, matches: &impl Fn(usize) -> bool) {
    for &index in list {
        if index >= *best {
            return;
        }
        if matches(index) {
            *best = index;
            return;
        }
    }
}

/// `path` up to its second slash, included (`/v1/` of `/v1/charges`); `None` without one.
/// A path that a prefix with a key starts with has the same key: the prefix holds it whole.
fn segment(path: &str) -> Option<&str> {
    let end = path.bytes().skip(1).position(|b| b == b'/')? + 1;
    path.get(..=end)
}

impl RuleIndex {
    /// The index of these rules, in order, with their policies' names.
    pub(crate) fn new<'a>(rules: impl IntoIterator<Item = (&'a Matcher, &'a str)>) -> Self {
        let mut index = RuleIndex::default();
        for (at, (matcher, name)) in rules.into_iter().enumerate() {
            let paths = match matcher.host_key() {
                Some(HostKey::Exact(host)) => index.exact.entry(host),
                Some(HostKey::Wildcard(suffix)) => index.wildcard.entry(suffix),
                None => &mut index.any,
            };
            let path = matcher.path_key();
            index.paths |= !matches!(path, PathKey::Any);
            paths.add(at, path);
            index.names.entry(name.into()).or_insert(at);
        }
        index
    }

    /// The index of the first of `rules` (those this index was made of, in order) that
    /// matches, as `rules.iter().position(|m| m.matches(method, url))` would find it.
    pub(crate) fn select<'a>(
        &self,
        rules: impl Fn(usize) -> Option<&'a Matcher>,
        method: &Method,
        url: &Url,
    ) -> Option<usize> {
        let matches = |at: usize| rules(at).is_some_and(|m| m.matches(method, url));
        let path: Cow<'_, str> = match url.path() {
            // No rule looks at paths: no list is filed by one.
            _ if !self.paths => Cow::Borrowed(""),
            // Most paths have no escapes: then the normal form is the path itself.
            raw if !raw.contains('%') => Cow::Borrowed(raw),
            raw => normal_path(raw),
        };
        let mut best = usize::MAX;
        self.any.probe(&path, &mut best, &matches);
        if let Some(host) = url.host_str()
            && (self.exact.lengths | self.wildcard.lengths) != 0
        {
            // `api.example.com.` is the same host as `api.example.com`.
            let host = host.strip_suffix('.').unwrap_or(host);
            // The matcher ignores case. A URL of HTTP's keeps its host in lowercase; one of
            // another scheme, as it was written.
            let host: Cow<'_, str> = match url.scheme() {
                "http" | "https" => Cow::Borrowed(host),
                _ if !host.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(host),
                _ => Cow::Owned(host.to_ascii_lowercase()),
            };
            if let Some(paths) = self.exact.get(&host) {
                paths.probe(&path, &mut best, &matches);
            }
            if self.wildcard.lengths != 0 {
                for suffix in self.wildcard.suffixes(&host) {
                    if let Some(paths) = self.wildcard.map.get(suffix) {
                        paths.probe(&path, &mut best, &matches);
                    }
                }
            }
        }
        (best != usize::MAX).then_some(best)
    }

    /// The index of the rule whose policy is called `name`.
    pub(crate) fn by_name(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    type Rules = Vec<(Matcher, String)>;

    fn rules(specs: &[(&str, Option<&str>, Option<&str>)]) -> Result<Rules, Error> {
        let mut rules = Vec::new();
        for (at, (name, host, path)) in specs.iter().enumerate() {
            let mut matcher = Matcher::new();
            if let Some(host) = host {
                matcher = matcher.host(host)?;
            }
            if let Some(path) = path {
                matcher = matcher.path(path);
            }
            let name = match name {
                &"" => format!("r{at}"),
                name => (*name).to_owned(),
            };
            rules.push((matcher, name));
        }
        Ok(rules)
    }

    /// The rule the index selects, checked against the scan's.
    fn select(rules: &Rules, method: &Method, url: &str) -> Option<usize> {
        let url = Url::parse(url).ok()?;
        let index = RuleIndex::new(rules.iter().map(|(m, n)| (m, n.as_str())));
        let found = index.select(|at| rules.get(at).map(|(m, _)| m), method, &url);
        let scan = rules.iter().position(|(m, _)| m.matches(method, &url));
        assert_eq!(found, scan, "{url}");
        found
    }

    #[test]
    fn the_first_rule_that_matches_wins_whichever_list_it_is_in() -> Result<(), Error> {
        let rules = rules(&[
            ("", Some("*.example.com"), Some("/v1/charges*")),
            ("", None, Some("/health")),
            ("", Some("api.example.com"), None),
            ("", Some("*.example.com"), None),
            ("", None, Some("/v*")),
            ("", None, None),
        ])?;
        let get = &Method::GET;
        assert_eq!(
            select(&rules, get, "https://api.example.com/v1/charges/7"),
            Some(0)
        );
        assert_eq!(
            select(&rules, get, "https://API.example.com./health"),
            Some(1)
        );
        assert_eq!(select(&rules, get, "https://api.example.com/v2"), Some(2));
        assert_eq!(select(&rules, get, "https://a.b.example.com/v2"), Some(3));
        assert_eq!(select(&rules, get, "https://example.com/v2"), Some(4));
        assert_eq!(select(&rules, get, "https://example.com/x"), Some(5));
        assert_eq!(
            select(&rules, get, "https://a.example.com/v1/%63harges"),
            Some(0)
        );
        Ok(())
    }

    #[test]
    fn hundred_rules_of_other_hosts_and_paths_leave_the_default() -> Result<(), Error> {
        let specs: Vec<(String, String)> = (0..100)
            .map(|i| (format!("svc{i}.example.com"), format!("/p{i}/*")))
            .collect();
        let specs: Vec<_> = (specs.iter())
            .flat_map(|(host, path)| {
                [
                    ("", Some(host.as_str()), None),
                    ("", None, Some(path.as_str())),
                ]
            })
            .collect();
        let rules = rules(&specs)?;
        let get = &Method::GET;
        assert_eq!(select(&rules, get, "http://127.0.0.1:8080/"), None);
        assert_eq!(select(&rules, get, "http://svc7.example.com/p3/x"), Some(7));
        assert_eq!(select(&rules, get, "http://127.0.0.1/p42/x"), Some(85));
        Ok(())
    }

    #[test]
    fn by_name_finds_the_first_of_a_name() -> Result<(), Error> {
        let rules = rules(&[("a", None, None), ("b", None, None), ("a", None, None)])?;
        let index = RuleIndex::new(rules.iter().map(|(m, n)| (m, n.as_str())));
        assert_eq!(index.by_name("a"), Some(0));
        assert_eq!(index.by_name("b"), Some(1));
        assert_eq!(index.by_name("c"), None);
        Ok(())
    }

    #[test]
    fn segments_hold_the_second_slash() {
        assert_eq!(segment("/v1/charges"), Some("/v1/"));
        assert_eq!(segment("/v1/"), Some("/v1/"));
        assert_eq!(segment("//x"), Some("//"));
        assert_eq!(segment("/v1"), None);
        assert_eq!(segment(""), None);
        assert_eq!(segment("/é/x"), Some("/é/"));
    }
}

/// Property tests: `cargo test --lib policy::index::fuzz`.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::error::Error;

    fn config() -> ProptestConfig {
        crate::fuzzing::config(2_000)
    }

    /// Host patterns of few labels, so that requests often match them: exact, wildcard,
    /// ports, case, a trailing dot, IP addresses, a name punycode writes, names past the 63
    /// bytes that the length masks tell apart.
    const HOSTS: [&str; 19] = [
        "*.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "*.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "b.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "a.com",
        "A.com",
        "b.a.com",
        "a.com.",
        "*.a.com",
        "*.com",
        "*.b.a.com",
        "a.com:8080",
        "*.a.com:443",
        "b.a.com:80",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "bücher.de",
        "*.de",
        "com",
    ];

    /// Path patterns, exact and prefixes, with and without a whole first segment, escaped.
    const PATHS: [&str; 14] = [
        "/", "/*", "/x", "/x*", "/x/", "/x/*", "/x/y", "/x/y*", "/y/*", "/%78/*", "/x%2f*", "/X/y",
        "*", "/x/y/",
    ];

    const METHODS: [Method; 3] = [Method::GET, Method::POST, Method::PUT];

    const SCHEMES: [&str; 3] = ["http", "https", "foo"];

    /// Request hosts: the patterns' hosts, their subdomains and neighbours, in any case.
    const REQUEST_HOSTS: [&str; 21] = [
        "x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "b.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        "c.b.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
        ".a.com",
        "a.com",
        "A.COM",
        "b.a.com",
        "c.b.a.com",
        "B.A.Com",
        "a.com.",
        "b.a.com.",
        "a.com..",
        "ba.com",
        "com",
        "127.0.0.1",
        "[::1]",
        "bücher.de",
        "x.xn--bcher-kva.de",
        "x.y",
        "0.0.1",
    ];

    const PORTS: [&str; 4] = ["", ":80", ":443", ":8080"];

    const REQUEST_PATHS: [&str; 14] = [
        "", "/", "/x", "/x/", "/x/y", "/x/y/z", "/%78/y", "/%78", "/xy", "/y/z", "/x/%79", "/X/y",
        "/x%2fy", "/x%2Fy/",
    ];

    /// A rule: host, path and methods, each left out (any) or one of the lists'.
    type Rule = (Option<usize>, Option<usize>, Option<Vec<usize>>);

    fn rule() -> impl Strategy<Value = Rule> {
        (
            proptest::option::weighted(0.8, 0..HOSTS.len()),
            proptest::option::weighted(0.6, 0..PATHS.len()),
            proptest::option::weighted(0.3, proptest::collection::vec(0..METHODS.len(), 1..3)),
        )
    }

    fn matcher((host, path, methods): &Rule) -> Result<Matcher, Error> {
        let mut matcher = Matcher::new();
        if let Some(host) = host {
            matcher = matcher.host(HOSTS[*host])?;
        }
        if let Some(path) = path {
            matcher = matcher.path(PATHS[*path]);
        }
        if let Some(methods) = methods {
            let methods = methods.iter().map(|m| METHODS[*m].as_str());
            matcher = matcher.methods(methods)?;
        }
        Ok(matcher)
    }

    /// A request: scheme, host (`None`: a URL without one), port, path, method.
    fn request() -> impl Strategy<Value = (usize, Option<usize>, usize, usize, usize)> {
        (
            0..SCHEMES.len(),
            proptest::option::weighted(0.95, 0..REQUEST_HOSTS.len()),
            0..PORTS.len(),
            0..REQUEST_PATHS.len(),
            0..METHODS.len(),
        )
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn the_index_finds_what_the_scan_finds(
            rules in proptest::collection::vec(rule(), 0..16),
            requests in proptest::collection::vec(request(), 1..16),
        ) {
            let rules = rules.iter().map(matcher).collect::<Result<Vec<_>, _>>();
            let rules = rules.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let names: Vec<String> = (0..rules.len()).map(|at| format!("r{at}")).collect();
            let index = RuleIndex::new(rules.iter().zip(names.iter().map(String::as_str)));
            for (scheme, host, port, path, method) in requests {
                let (scheme, path) = (SCHEMES[scheme], REQUEST_PATHS[path]);
                let url = match host {
                    Some(host) => format!("{scheme}://{}{}{path}", REQUEST_HOSTS[host], PORTS[port]),
                    None => format!("{scheme}:{path}"),
                };
                let Ok(url) = Url::parse(&url) else { continue };
                let method = &METHODS[method];
                let scan = rules.iter().position(|m| m.matches(method, &url));
                let found = index.select(|at| rules.get(at), method, &url);
                prop_assert_eq!(found, scan, "{} {}", method, url);
            }
        }
    }
}
