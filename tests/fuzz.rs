//! Property tests over inputs the library does not control, through its public API: policy
//! files (the loader) and request paths (the endpoint matcher). The `Retry-After` parser and
//! the redactors are crate-private: their properties are in `src/retry_after.rs` and
//! `src/redact.rs`.
//!
//! `cargo test --test fuzz` runs a few thousand cases per property;
//! `PROPTEST_CASES=1000000 cargo test --release --test fuzz` runs a million.
#![cfg(feature = "config")]

use std::fmt::Write as _;
use std::sync::OnceLock;

use http::Method;
use proptest::prelude::*;
use resilient_http::policy::Matcher;
use resilient_http::{Client, ErrorKind};
use url::Url;

fn config() -> ProptestConfig {
    // Failures are kept as regression tests in the code, not in files beside it.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok());
    ProptestConfig {
        cases: cases.unwrap_or(3_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The policy file loader: `cargo test --test fuzz policy_file::`.
mod policy_file {
    use super::*;

    /// One reqwest client for every case: building one per case would measure TLS setup.
    fn http() -> reqwest::Client {
        static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
        HTTP.get_or_init(reqwest::Client::new).clone()
    }

    /// Loads `text` as a policy file and builds a client with it: the whole path a file takes.
    fn load(text: &str) -> Result<Client, resilient_http::Error> {
        Client::builder()
            .reqwest_client(http())
            .config_toml(text)
            .build()
    }

    /// A TOML value, of any type.
    #[derive(Clone, Debug)]
    enum Value {
        Int(i64),
        Float(f64),
        Bool(bool),
        Str(String),
        Date,
        Array(Vec<Value>),
        Table(Vec<(String, Value)>),
    }

    impl Value {
        fn write(&self, out: &mut String) {
            match self {
                Value::Int(i) => write!(out, "{i}").unwrap(),
                Value::Float(f) if f.is_nan() => out.push_str("nan"),
                Value::Float(f) if f.is_infinite() => {
                    out.push_str(if *f > 0.0 { "inf" } else { "-inf" })
                }
                Value::Float(f) => write!(out, "{f:?}").unwrap(),
                Value::Bool(b) => write!(out, "{b}").unwrap(),
                Value::Str(s) => out.push_str(&quoted(s)),
                Value::Date => out.push_str("1979-05-27T07:32:00Z"),
                Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        item.write(out);
                    }
                    out.push(']');
                }
                Value::Table(entries) => {
                    out.push_str("{ ");
                    for (i, (key, value)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        write!(out, "{key} = ").unwrap();
                        value.write(out);
                    }
                    out.push_str(" }");
                }
            }
        }
    }

    /// `s` as a TOML basic string.
    fn quoted(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => write!(out, "\\u{:04X}", c as u32).unwrap(),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// What a key holds, for making values it takes and values it refuses.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Count(i64, i64),
        Span(&'static str),
        Real(f64, f64),
        Bool,
        Jitter,
        Statuses,
        Host,
        Path,
        Methods,
        Name,
        Text,
        /// A header name, or `false` (`propagate_deadline`).
        Header,
        Table(&'static [(&'static str, Kind)]),
    }

    const BACKOFF: &[(&str, Kind)] = &[
        ("base", Kind::Span("1h")),
        ("max", Kind::Span("1h")),
        ("multiplier", Kind::Real(1.0, 100.0)),
        ("jitter", Kind::Jitter),
    ];
    const BREAKER: &[(&str, Kind)] = &[
        ("enabled", Kind::Bool),
        ("window", Kind::Count(1, 10_000)),
        ("failure_rate", Kind::Real(0.0, 1.0)),
        ("min_calls", Kind::Count(1, 10_000)),
        ("open_for", Kind::Span("1h")),
        ("half_open_probes", Kind::Count(1, 1023)),
        ("count_429", Kind::Bool),
        ("key", Kind::Text),
    ];
    const BUDGET: &[(&str, Kind)] = &[
        ("enabled", Kind::Bool),
        ("ratio", Kind::Real(0.0, 1.0)),
        ("min_per_second", Kind::Count(0, 1_000_000)),
        ("window", Kind::Span("1h")),
    ];
    const RATE_LIMIT: &[(&str, Kind)] = &[
        ("rate", Kind::Count(1, 1_000_000)),
        ("per", Kind::Span("1h")),
        ("burst", Kind::Count(1, 1_000_000)),
    ];
    const BULKHEAD: &[(&str, Kind)] = &[
        ("max_in_flight", Kind::Count(1, 100_000)),
        ("queue_timeout", Kind::Span("1h")),
    ];
    const HEDGE: &[(&str, Kind)] = &[("after", Kind::Span("1h")), ("max", Kind::Count(0, 3))];
    const MATCH: &[(&str, Kind)] = &[
        ("host", Kind::Host),
        ("path", Kind::Path),
        ("methods", Kind::Methods),
    ];
    /// Every key a policy table holds.
    const POLICY: &[(&str, Kind)] = &[
        ("max_attempts", Kind::Count(1, 100)),
        ("attempt_timeout", Kind::Span("1day")),
        ("deadline", Kind::Span("1day")),
        ("connect_timeout", Kind::Span("1day")),
        ("retry_statuses", Kind::Statuses),
        ("retry_non_idempotent", Kind::Bool),
        ("idempotency_key", Kind::Bool),
        ("retry_after_cap", Kind::Span("1day")),
        ("body_limit", Kind::Count(1, 1 << 30)),
        ("replay_buffer", Kind::Count(0, 16 << 20)),
        ("hold_on_retry_after", Kind::Bool),
        ("backoff", Kind::Table(BACKOFF)),
        ("breaker", Kind::Table(BREAKER)),
        ("retry_budget", Kind::Table(BUDGET)),
        ("rate_limit", Kind::Table(RATE_LIMIT)),
        ("bulkhead", Kind::Table(BULKHEAD)),
        ("hedge", Kind::Table(HEDGE)),
        ("propagate_deadline", Kind::Header),
        ("propagate_deadline_margin", Kind::Span("1m")),
    ];
    /// What an `[[endpoint]]` table holds besides a policy's keys.
    const ENDPOINT: &[(&str, Kind)] = &[("name", Kind::Name), ("match", Kind::Table(MATCH))];

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            any::<bool>().prop_map(Value::Bool),
            any::<String>().prop_map(Value::Str),
            Just(Value::Date),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[a-z_]{1,12}", inner), 0..3).prop_map(Value::Table),
            ]
        })
    }

    fn duration() -> impl Strategy<Value = Value> {
        prop_oneof![
            proptest::sample::select(
                &[
                    "0s",
                    "0ms",
                    "1ms",
                    "9ms",
                    "10ms",
                    "250ms",
                    "1s",
                    "2s",
                    "1m 30s",
                    "1h",
                    "1h 1s",
                    "1day",
                    "25h",
                    "2days",
                    "18446744073709551615s",
                    "",
                    "fast",
                    "-1s",
                    "1.5s",
                ][..]
            )
            .prop_map(|s| Value::Str(s.to_owned())),
            "[0-9]{1,6} ?(ns|us|ms|s|m|h|d|day|days|w|y)".prop_map(Value::Str),
        ]
    }

    fn strings(
        choices: &'static [&'static str],
        random: &'static str,
    ) -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => proptest::sample::select(choices).prop_map(|s| Value::Str(s.to_owned())),
            1 => random.prop_map(Value::Str),
        ]
    }

    /// A value for a key of `kind`: mostly one it may take, sometimes any value at all.
    fn value_of(kind: Kind) -> BoxedStrategy<Value> {
        let fitting: BoxedStrategy<Value> = match kind {
            Kind::Count(min, max) => prop_oneof![
                4 => (min..=max).prop_map(Value::Int),
                1 => proptest::sample::select(vec![min - 1, max + 1, -1, 0, 4_000_000_000, i64::MAX, i64::MIN])
                    .prop_map(Value::Int),
            ]
            .boxed(),
            Kind::Span(_) => duration().boxed(),
            Kind::Real(min, max) => prop_oneof![
                4 => (min..=max).prop_map(Value::Float),
                1 => proptest::sample::select(vec![min, max, min - 0.5, max + 0.5, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
                    .prop_map(Value::Float),
            ]
            .boxed(),
            Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Kind::Jitter => strings(&["full", "equal", "decorrelated", "none", "fuzzy", "Full"], "[a-z]{0,6}").boxed(),
            Kind::Statuses => prop_oneof![
                8 => proptest::collection::vec(prop_oneof![100..600i64, any::<i64>()].prop_map(Value::Int), 0..5)
                    .prop_map(Value::Array),
                1 => Just(Value::Array(vec![Value::Int(503); 501])),
            ]
            .boxed(),
            Kind::Host => strings(
                &["api.example.com", "*.example.com", "example.com:8443", "[::1]", "[0:0::1]:8080", "*", "a.com:http", "bücher.de", "", "x/y", "h:65536", "*.", "127.0.0.1"],
                "[a-z0-9*.:\\[\\]/@-]{0,12}",
            )
            .boxed(),
            Kind::Path => strings(
                &["/v1/charges*", "/health", "/a%2fb", "/%7Euser", "/100%*", "/a%e*", "/café/*", "/v1/%2e%2e/x", "*", ""],
                "[/a-zA-Z0-9%.*~é -]{0,12}",
            )
            .boxed(),
            Kind::Methods => proptest::collection::vec(
                strings(&["GET", "POST", "PUT", "DELETE", "post", "GE T", "", "PATCH"], "[A-Za-z ]{0,6}"),
                0..4,
            )
            .prop_map(Value::Array)
            .boxed(),
            Kind::Name => strings(&["a", "b", "payments", "default", ""], ".{0,8}").boxed(),
            Kind::Text => any::<String>().prop_map(Value::Str).boxed(),
            Kind::Header => prop_oneof![
                strings(
                    &["grpc-timeout", "GRPC-Timeout", "x-request-timeout-ms", "x timeout", ""],
                    "[a-zA-Z0-9 :-]{0,12}",
                ),
                any::<bool>().prop_map(Value::Bool),
            ]
            .boxed(),
            Kind::Table(keys) => table(keys).prop_map(Value::Table).boxed(),
        };
        prop_oneof![8 => fitting, 1 => any_value()].boxed()
    }

    /// Some of `keys`, each with a value, in any order; now and then a key twice, or a key of
    /// no table.
    fn table(keys: &'static [(&'static str, Kind)]) -> impl Strategy<Value = Vec<(String, Value)>> {
        let entries = proptest::sample::subsequence(keys.to_vec(), 0..=keys.len().min(6))
            .prop_shuffle()
            .prop_flat_map(|chosen| {
                chosen
                    .into_iter()
                    .map(|(key, kind)| (Just(key.to_owned()), value_of(kind)))
                    .collect::<Vec<_>>()
            });
        (
            entries,
            proptest::bool::weighted(0.03),
            proptest::option::weighted(0.05, ("[a-z_]{1,10}", any_value())),
        )
            .prop_map(|(mut entries, twice, stray)| {
                if twice && let Some(first) = entries.first().cloned() {
                    entries.push(first);
                }
                entries.extend(stray);
                entries
            })
    }

    /// How a table is written in a file.
    #[derive(Clone, Copy, Debug)]
    struct Layout {
        /// Subtables as `[default.backoff]` sections rather than inline `backoff = { .. }`.
        sections: bool,
        /// `\r\n` line ends.
        crlf: bool,
        /// A comment after each line.
        comments: bool,
    }

    fn layout() -> impl Strategy<Value = Layout> {
        (
            any::<bool>(),
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(sections, crlf, comments)| Layout {
                sections,
                crlf,
                comments,
            })
    }

    /// A policy file: an optional `[default]` table and `[[endpoint]]` tables.
    #[derive(Clone, Debug)]
    struct Document {
        default: Option<Vec<(String, Value)>>,
        endpoints: Vec<Vec<(String, Value)>>,
        layout: Layout,
    }

    fn document() -> impl Strategy<Value = Document> {
        let endpoint = (table(ENDPOINT), table(POLICY)).prop_map(|(mut head, policy)| {
            head.extend(policy);
            head
        });
        (
            proptest::option::of(table(POLICY)),
            proptest::collection::vec(endpoint, 0..3),
            layout(),
        )
            .prop_map(|(default, endpoints, layout)| Document {
                default,
                endpoints,
                layout,
            })
    }

    impl Document {
        fn text(&self) -> String {
            let mut out = String::new();
            if let Some(default) = &self.default {
                write_table(&mut out, "[default]", "default", default, self.layout);
            }
            for endpoint in &self.endpoints {
                write_table(&mut out, "[[endpoint]]", "endpoint", endpoint, self.layout);
            }
            out
        }
    }

    fn write_table(
        out: &mut String,
        header: &str,
        path: &str,
        entries: &[(String, Value)],
        layout: Layout,
    ) {
        let end = if layout.crlf { "\r\n" } else { "\n" };
        let comment = if layout.comments { " # note" } else { "" };
        out.push_str(header);
        out.push_str(comment);
        out.push_str(end);
        let mut sections = Vec::new();
        for (key, value) in entries {
            match value {
                Value::Table(inner) if layout.sections => sections.push((key, inner)),
                _ => {
                    write!(out, "{key} = ").unwrap();
                    value.write(out);
                    out.push_str(comment);
                    out.push_str(end);
                }
            }
        }
        for (key, inner) in sections {
            write_table(
                out,
                &format!("[{path}.{key}]"),
                &format!("{path}.{key}"),
                inner,
                layout,
            );
        }
    }

    /// Byte-level damage to a file: what an editor, a truncated write or a merge leaves.
    #[derive(Clone, Debug)]
    enum Damage {
        Cut(usize),
        Insert(usize, String),
        Remove(usize, usize),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        let token = prop_oneof![
            proptest::sample::select(
                &[
                    "[", "]", "[[", "\"", "'''", "=", "{", "}", ",", "\n", "#", ".", "\\",
                    "\u{FEFF}", "\0", "é"
                ][..]
            )
            .prop_map(str::to_owned),
            ".{0,4}",
        ];
        prop_oneof![
            any::<usize>().prop_map(Damage::Cut),
            (any::<usize>(), token).prop_map(|(at, t)| Damage::Insert(at, t)),
            (any::<usize>(), 1..8usize).prop_map(|(at, n)| Damage::Remove(at, n)),
        ]
    }

    fn apply(text: &str, damage: &[Damage]) -> String {
        let mut text = text.to_owned();
        let boundary = |text: &str, at: usize| {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        for d in damage {
            match d {
                Damage::Cut(at) => {
                    let at = boundary(&text, *at);
                    text.truncate(at);
                }
                Damage::Insert(at, token) => {
                    let at = boundary(&text, *at);
                    text.insert_str(at, token);
                }
                Damage::Remove(at, n) => {
                    let at = boundary(&text, *at);
                    let to = boundary(&text, at + n);
                    if to > at {
                        text.replace_range(at..to, "");
                    }
                }
            }
        }
        text
    }

    /// What every refusal of a file must be: an invalid configuration, naming the file and a
    /// line, or, for a refusal made after the file was read (settings that contradict each
    /// other), the policy and the setting.
    fn check_refusal(text: &str, err: &resilient_http::Error) -> Result<(), TestCaseError> {
        prop_assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{:?}: {}", text, err);
        let shown = err.to_string();
        let located = shown
            .split("<config_toml>:")
            .nth(1)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        // Every mistake names the line, those between settings too (they used to name only
        // the policy).
        prop_assert!(located, "no line in {:?}\nfor {:?}", shown, text);
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Files made of the real keys, with values of every type: a client, or a refusal that
        /// says where; never a panic.
        #[test]
        fn policy_files_load_or_say_where(doc in document()) {
            let text = doc.text();
            if let Err(err) = load(&text) {
                check_refusal(&text, &err)?;
            }
        }

        /// The same files damaged at the byte level.
        #[test]
        fn damaged_policy_files_load_or_say_where(
            doc in document(),
            damage in proptest::collection::vec(damage(), 1..4),
        ) {
            let text = apply(&doc.text(), &damage);
            if let Err(err) = load(&text) {
                check_refusal(&text, &err)?;
            }
        }

        /// Arbitrary bytes (as the file reader would get them, made text): never a panic.
        #[test]
        fn any_bytes_load_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(err) = load(&text) {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidConfig);
                prop_assert!(err.to_string().contains("<config_toml>"), "{}", err);
            }
        }
    }

    /// A valid value for a key of `kind` (never one the others could contradict).
    fn valid(kind: Kind) -> Value {
        match kind {
            Kind::Count(min, max) => Value::Int(min.max(1).min(max)),
            Kind::Span(_) => Value::Str("1s".into()),
            Kind::Real(_, max) => Value::Float(max),
            Kind::Bool => Value::Bool(true),
            Kind::Jitter => Value::Str("full".into()),
            Kind::Statuses => Value::Array(vec![Value::Int(503)]),
            Kind::Host => Value::Str("api.example.com".into()),
            Kind::Path => Value::Str("/v1/*".into()),
            Kind::Methods => Value::Array(vec![Value::Str("GET".into())]),
            Kind::Name | Kind::Text => Value::Str("x".into()),
            // None sent: nothing for the margin to contradict.
            Kind::Header => Value::Bool(false),
            Kind::Table(keys) => Value::Table(
                keys.iter()
                    .map(|(k, kind)| (k.to_string(), valid(*kind)))
                    .collect(),
            ),
        }
    }

    /// Values a key of `kind` refuses on their own.
    fn invalid(kind: Kind) -> Vec<Value> {
        let text = |s: &str| Value::Str(s.to_owned());
        match kind {
            Kind::Count(min, max) => vec![
                Value::Int(min - 1),
                Value::Int(max + 1),
                text("3"),
                Value::Float(1.5),
            ],
            Kind::Span(max) => vec![
                text("2 parsecs"),
                Value::Int(5),
                text(&format!("{max} 1s")),
                Value::Bool(true),
            ],
            Kind::Real(min, max) => vec![
                Value::Float(min - 0.5),
                Value::Float(max + 0.5),
                Value::Float(f64::NAN),
                text("1"),
            ],
            Kind::Bool => vec![text("yes"), Value::Int(1)],
            Kind::Jitter => vec![text("fuzzy"), Value::Int(1)],
            Kind::Statuses => vec![
                Value::Array(vec![Value::Int(999)]),
                text("503"),
                Value::Array(vec![Value::Int(503); 501]),
            ],
            Kind::Host => vec![text("*"), text("a.com:http"), Value::Int(1)],
            Kind::Path => vec![Value::Int(1)],
            Kind::Methods => vec![
                Value::Array(vec![text("post")]),
                Value::Array(vec![text("GE T")]),
                text("GET"),
            ],
            Kind::Name => vec![Value::Int(1)],
            Kind::Text => vec![Value::Int(1)],
            Kind::Header => vec![text("x timeout"), Value::Bool(true), Value::Int(1)],
            Kind::Table(_) => vec![Value::Int(5), text("x")],
        }
    }

    /// Every key of a table, with where it is: (key, kind, path of tables above it).
    fn keys_of(
        keys: &'static [(&'static str, Kind)],
    ) -> Vec<(&'static str, Kind, Vec<&'static str>)> {
        let mut out = Vec::new();
        for (key, kind) in keys {
            out.push((*key, *kind, Vec::new()));
            if let Kind::Table(inner) = kind {
                for (k, kind, mut path) in keys_of(inner) {
                    path.insert(0, key);
                    out.push((k, kind, path));
                }
            }
        }
        out
    }

    fn every_faulty_key() -> Vec<(bool, &'static str, Kind, Vec<&'static str>, Value)> {
        let mut cases = Vec::new();
        for in_endpoint in [false, true] {
            let mut keys = keys_of(POLICY);
            if in_endpoint {
                keys.extend(
                    keys_of(ENDPOINT)
                        .into_iter()
                        .filter(|(k, _, _)| *k != "name"),
                );
            }
            for (key, kind, path) in keys {
                for bad in invalid(kind) {
                    cases.push((in_endpoint, key, kind, path.clone(), bad));
                }
            }
        }
        cases
    }

    proptest! {
        #![proptest_config(config())]

        /// One wrong value in an otherwise valid file, for every key: the refusal names the
        /// file, the line of the key, and the key.
        #[test]
        fn a_wrong_value_is_located(
            (in_endpoint, key, _kind, path, bad) in proptest::sample::select(every_faulty_key()),
            layout in layout(),
            others in proptest::sample::subsequence(POLICY.to_vec(), 0..=POLICY.len()),
        ) {
            // A valid table of other keys, and the faulty key where it belongs.
            let mut entries: Vec<(String, Value)> = others
                .iter()
                .filter(|(k, kind)| {
                    // Never the faulty key's own table, nor what only the default may set.
                    Some(k) != path.first() && *k != key && !matches!(kind, Kind::Table(_))
                        && !(in_endpoint && *k == "connect_timeout")
                })
                .map(|(k, kind)| (k.to_string(), valid(*kind)))
                .collect();
            let mut faulty = bad;
            for table in path.iter().rev() {
                faulty = Value::Table(vec![(key_at(&path, table, key), faulty)]);
            }
            entries.push((path.first().copied().unwrap_or(key).to_owned(), faulty));
            let mut text = String::new();
            if in_endpoint {
                entries.insert(0, ("name".into(), Value::Str("x".into())));
                write_table(&mut text, "[[endpoint]]", "endpoint", &entries, layout);
            } else {
                write_table(&mut text, "[default]", "default", &entries, layout);
            }
            let err = match load(&text) {
                Ok(_) => return Err(TestCaseError::fail(format!("{key} accepted in {text:?}"))),
                Err(err) => err,
            };
            let line = 1 + text
                .lines()
                .position(|l| l.split(['{', ',']).any(|part| part.trim_start().starts_with(&format!("{key} ="))))
                .unwrap_or_else(|| panic!("{key} in {text:?}"));
            let shown = err.to_string();
            prop_assert!(
                shown.contains(&format!("<config_toml>:{line}:")) && shown.contains(&format!("\"{key}\"")),
                "{:?} should name line {} and {:?}:\n{}",
                shown,
                line,
                key,
                text
            );
        }
    }

    /// The key under `table` on the way to `key` along `path`.
    fn key_at(path: &[&'static str], table: &str, key: &'static str) -> String {
        let at = path.iter().position(|t| *t == table).unwrap_or(0);
        path.get(at + 1).copied().unwrap_or(key).to_owned()
    }
}

/// The endpoint matcher's path normalisation: `cargo test --test fuzz matcher::`.
mod matcher {
    use super::*;

    /// Unreserved characters: escaping one changes nothing for a server (RFC 3986, 6.2.2.2).
    const UNRESERVED: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~";

    /// Escapes that stay escapes for a server, in their normal form, with the character a URL
    /// writes as that escape (if any).
    const KEPT_ESCAPES: &[(&str, Option<&str>)] = &[
        ("%2F", None),
        ("%3F", None),
        ("%23", None),
        ("%25", None),
        ("%3B", None),
        ("%20", Some(" ")),
        ("%22", Some("\"")),
        ("%3C", Some("<")),
        ("%7B", Some("{")),
        ("%C3%A9", Some("é")),
    ];

    /// One piece of a path in its normal form: a character as it is, or an escape kept as one.
    #[derive(Clone, Debug)]
    enum Piece {
        Char(char),
        Escape(usize),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            6 => proptest::sample::select(UNRESERVED.chars().collect::<Vec<_>>()).prop_map(Piece::Char),
            1 => (0..KEPT_ESCAPES.len()).prop_map(Piece::Escape),
        ]
    }

    /// A path in normal form, as segments of pieces: no segment is `.` or `..`.
    fn normal_path() -> impl Strategy<Value = Vec<Vec<Piece>>> {
        proptest::collection::vec(proptest::collection::vec(piece(), 0..5), 1..5).prop_map(
            |mut segments| {
                for segment in &mut segments {
                    if segment.iter().all(|p| matches!(p, Piece::Char('.'))) && !segment.is_empty()
                    {
                        segment.push(Piece::Char('x'));
                    }
                }
                segments
            },
        )
    }

    fn normal_text(segments: &[Vec<Piece>]) -> String {
        let mut out = String::new();
        for segment in segments {
            out.push('/');
            for piece in segment {
                match piece {
                    Piece::Char(c) => out.push(*c),
                    Piece::Escape(i) => out.push_str(KEPT_ESCAPES[*i].0),
                }
            }
        }
        out
    }

    /// How a path in normal form may be written so that a server reads the same path.
    #[derive(Clone, Debug)]
    struct Disguise {
        /// Per piece: escape an unreserved character, or write a kept escape's character.
        escape: u64,
        /// Per escape: lowercase hex digits.
        lower: u64,
        /// Per slash: add `./` or `x/../` after it (in any of their escaped spellings), or write
        /// `\` for it.
        dots: Vec<u8>,
    }

    fn disguise() -> impl Strategy<Value = Disguise> {
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 8),
        )
            .prop_map(|(escape, lower, dots)| Disguise {
                escape,
                lower,
                dots,
            })
    }

    const DOT: &[&str] = &[".", "%2e", "%2E"];
    const DOT_DOT: &[&str] = &["..", "%2e%2e", ".%2E", "%2E.", "%2e%2E"];

    fn written(segments: &[Vec<Piece>], d: &Disguise) -> String {
        let mut out = String::new();
        let mut n = 0usize;
        for (i, segment) in segments.iter().enumerate() {
            let bits = d.dots.get(i % d.dots.len()).copied().unwrap_or(0);
            out.push(if bits & 0x80 != 0 { '\\' } else { '/' });
            match bits & 0x7 {
                1 => write!(out, "{}/", DOT[usize::from(bits >> 3) % DOT.len()]).unwrap(),
                2 => write!(
                    out,
                    "zz/{}/",
                    DOT_DOT[usize::from(bits >> 3) % DOT_DOT.len()]
                )
                .unwrap(),
                _ => {}
            }
            for piece in segment {
                let escape = d.escape >> (n % 64) & 1 == 1;
                let lower = d.lower >> (n % 64) & 1 == 1;
                n += 1;
                let hex = |s: String| if lower { s.to_ascii_lowercase() } else { s };
                match piece {
                    Piece::Char(c) if escape => out.push_str(&hex(format!("%{:02X}", *c as u32))),
                    Piece::Char(c) => out.push(*c),
                    Piece::Escape(i) => match KEPT_ESCAPES[*i] {
                        (_, Some(raw)) if escape => out.push_str(raw),
                        (normal, _) => out.push_str(&hex(normal.to_owned())),
                    },
                }
            }
        }
        out
    }

    /// Where the request's path is taken from the rule's, so that matches are common.
    #[derive(Clone, Debug)]
    enum Relation {
        Same,
        Longer(Vec<Vec<Piece>>),
        Cut(usize),
        Other(Vec<Vec<Piece>>),
    }

    fn relation() -> impl Strategy<Value = Relation> {
        prop_oneof![
            Just(Relation::Same),
            normal_path().prop_map(Relation::Longer),
            any::<usize>().prop_map(Relation::Cut),
            normal_path().prop_map(Relation::Other),
        ]
    }

    fn request_path(rule: &[Vec<Piece>], relation: &Relation) -> Vec<Vec<Piece>> {
        match relation {
            Relation::Same => rule.to_vec(),
            Relation::Longer(more) => rule.iter().chain(more).cloned().collect(),
            Relation::Cut(at) => {
                let mut path = rule.to_vec();
                let n = path.len();
                path.truncate(at % n + 1);
                if let Some(last) = path.last_mut() {
                    last.truncate(at % (last.len() + 1));
                    // A cut that leaves `.` or `..` would be a dot segment, not a name.
                    if last.iter().all(|p| matches!(p, Piece::Char('.'))) {
                        last.clear();
                    }
                }
                path
            }
            Relation::Other(other) => other.clone(),
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// A request path however written (escaped letters, hex digits in either case, `.` and
        /// `..` segments in any spelling, `\`) matches a rule however written exactly when the
        /// server's reading of it does: escaping never takes a request out of its rule, nor into
        /// another one.
        #[test]
        fn escaped_paths_never_escape_their_rule(
            rule in normal_path(),
            prefix in any::<bool>(),
            rule_disguise in disguise(),
            relation in relation(),
            request_disguise in disguise(),
            query in "(\\?[a-z=&%./]{0,6})?",
        ) {
            let rule_text = normal_text(&rule);
            // A user writes a rule's path like a request's, bar the `\`.
            let mut written_rule = written(&rule, &Disguise { dots: rule_disguise.dots.iter().map(|b| b & 0x7f).collect(), ..rule_disguise.clone() });
            if prefix {
                written_rule.push('*');
            }
            let matcher = Matcher::new().path(&written_rule);

            let target = request_path(&rule, &relation);
            let target_text = normal_text(&target);
            let expected = if prefix { target_text.starts_with(&rule_text) } else { target_text == rule_text };
            // The fragment keeps a last space inside the URL (a URL parser trims the ends).
            let request = format!("http://h{}{query}#end", written(&target, &request_disguise));
            let url = Url::parse(&request).expect("a valid URL");
            prop_assert_eq!(
                matcher.matches(&Method::GET, &url),
                expected,
                "rule {:?} (normal {:?}), request {:?} (normal {:?}, as sent {:?})",
                written_rule, rule_text, request, target_text, url.path()
            );
        }

        /// Any rule and any request path: never a panic.
        #[test]
        fn any_path_matches_without_panic(rule in any::<String>(), path in any::<String>()) {
            let matcher = Matcher::new().path(&rule);
            if let Ok(url) = Url::parse(&format!("http://h/{path}")) {
                let _ = matcher.matches(&Method::GET, &url);
            }
            let _ = Matcher::new().host(&rule);
        }
    }
}
