//! Which requests share a guard's state: see [`Scope`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::Error;

/// Which requests share one state of a guard (the breaker, the `Retry-After` hold, the rate
/// limit, the bulkhead, the retry budget). Each guard of a policy has its own scope
/// ([`EndpointPolicy::breaker_scope`](super::EndpointPolicy::breaker_scope) and the like;
/// the file's `scope` in `[….breaker]`, `[….rate_limit]`, `[….bulkhead]`, `[….retry_budget]`, and
/// `hold_scope`), inherited as the other settings are.
///
/// | Scope | One state for | Its key (breakers, [`OverloadHandle::key`](crate::overload::OverloadHandle::key), telemetry) | In a file |
/// |---|---|---|---|
/// | [`Host`](Scope::Host) (the default) | each endpoint key under the rule | the endpoint key, `https://api.example.com` | `"host"` |
/// | [`Rule`](Scope::Rule) | everything the rule matches, whatever the host | the rule's name | `"rule"` |
/// | [`Named`](Scope::Named) | every request of every rule that names it, client-wide (and fleet-wide for a limit shared through Redis) | `name:<name>` | `"name:<name>"` |
///
/// A named scope is **one** limit: every rule that names it for a guard must have the same
/// settings for that guard (after inheritance), else `build` fails naming both rules. The
/// easy way is to set the guard and its scope once, in the default policy, which every rule
/// inherits. (A hold has no settings of its own: each rule holds it up to its own
/// `retry_after_cap`.)
///
/// `Display` writes the file's form, and [`FromStr`] reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One state per endpoint key (scheme, host and port) under each rule.
    #[default]
    Host,
    /// One state for everything the rule matches.
    Rule,
    /// One state shared by every rule that names it; made by [`Scope::named`].
    Named(ScopeName),
}

/// The name of a [`Scope::Named`]: 1 to 64 characters, each an ASCII letter, digit, `_`, `.`
/// or `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopeName(Arc<str>);

impl ScopeName {
    /// The name, as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most characters a scope's name may have.
const MAX_NAME: usize = 64;

impl Scope {
    /// A named scope, shared by every rule that names it: `Scope::named("github")`. Fails
    /// with [`InvalidConfig`](crate::ErrorKind::InvalidConfig) unless `name` has 1 to 64
    /// characters, each an ASCII letter, digit, `_`, `.` or `-`.
    ///
    /// ```
    /// use resilient_http::policy::Scope;
    ///
    /// let github = Scope::named("github")?;
    /// assert_eq!(github.to_string(), "name:github");
    /// assert!(Scope::named("git hub").is_err());
    /// # Ok::<(), resilient_http::Error>(())
    /// ```
    pub fn named(name: impl AsRef<str>) -> Result<Scope, Error> {
        let name = name.as_ref();
        check_name(name)
            .map_err(|why| Error::invalid_config(format!("scope name {name:?}: {why}")))?;
        Ok(Scope::Named(ScopeName(Arc::from(name))))
    }

    /// The key of this scope's one state, for a rule called `rule`; `None` for
    /// [`Host`](Scope::Host), whose states are keyed by endpoint.
    pub(crate) fn fixed_key(&self, rule: &Arc<str>) -> Option<Arc<str>> {
        match self {
            Scope::Host => None,
            Scope::Rule => Some(rule.clone()),
            Scope::Named(name) => Some(Arc::from(format!("name:{name}"))),
        }
    }
}

/// Why `name` is not a scope's name, if it is not.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty; write 1 to 64 letters, digits, `_`, `.` or `-`".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("longer than {MAX_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed; use ASCII letters, digits, `_`, `.` or `-`"
        ));
    }
    Ok(())
}

impl fmt::Display for Scope {
    /// The file's form: `host`, `rule`, `name:<name>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Host => f.write_str("host"),
            Scope::Rule => f.write_str("rule"),
            Scope::Named(name) => write!(f, "name:{name}"),
        }
    }
}

impl FromStr for Scope {
    type Err = Error;

    /// Reads the file's form: `"host"`, `"rule"` or `"name:<name>"`.
    fn from_str(text: &str) -> Result<Scope, Error> {
        match text {
            "host" => Ok(Scope::Host),
            "rule" => Ok(Scope::Rule),
            _ => match text.strip_prefix("name:") {
                Some(name) => Scope::named(name),
                None => Err(Error::invalid_config(format!(
                    "unknown scope {text:?}; one of \"host\", \"rule\", \"name:<name>\""
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_form_reads_back_as_written() -> Result<(), Error> {
        for text in ["host", "rule", "name:github", "name:a.b-c_9"] {
            assert_eq!(text.parse::<Scope>()?.to_string(), text);
        }
        Ok(())
    }

    #[test]
    fn bad_names_and_forms_are_refused_with_the_forms() {
        let long = "x".repeat(65);
        for bad in ["", "git hub", "ü", long.as_str()] {
            assert!(Scope::named(bad).is_err(), "{bad:?}");
        }
        assert!(Scope::named("x".repeat(64)).is_ok());
        let err = "hosts".parse::<Scope>().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("\"name:<name>\"")),
            "{err:?}"
        );
        assert!("name:".parse::<Scope>().is_err());
    }
}
