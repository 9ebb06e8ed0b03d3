//! Reading a server's quota from an answer's fields: what [`read`] returns, and how.
//!
//! [`read`] runs on every answer of a policy that follows server quotas (the default), so
//! an answer without quota fields costs one pass over its header names and nothing else:
//! no allocation, no parsing. Only a field that is there is parsed.
//!
//! # Auto ([`QuotaHeaders::auto`])
//!
//! 1. The IETF fields (draft-ietf-httpapi-ratelimit-headers, revisions 09 to 11):
//!    `RateLimit` and `RateLimit-Policy`, structured-field Lists (RFC 8941/9651, parsed with
//!    the `sfv` crate) whose members are named policies (a String or a Token) with
//!    parameters. In `RateLimit`: `r` (remaining, required), `t` (seconds to the reset),
//!    `pk` (partition key); in `RateLimit-Policy`: `q` (quota), `w` (window seconds), `qu`
//!    (quota unit), `pk`. Each `RateLimit` member is one quota, joined to the policy of the
//!    same name (and partition key, when both say one): its limit is the policy's `q`, its
//!    reset `t`, or the policy's `w` when `t` is absent (a member with neither is skipped).
//!    A policy whose unit is not `"requests"` (`"content-bytes"`, …) does not count
//!    requests: its members are skipped. Several field lines are one List (RFC 9651 §4.2),
//!    and a policy-only answer (no `RateLimit`) advertises nothing left to count.
//! 2. Otherwise `X-RateLimit-Remaining` / `X-RateLimit-Reset` / `X-RateLimit-Limit`, or,
//!    without them, the earlier drafts' `RateLimit-Remaining` / `RateLimit-Reset` /
//!    `RateLimit-Limit`: integers (of a `Limit` such as `100, 100;w=60`, the leading one);
//!    remaining and reset are both needed. With several lines of one of these, the first
//!    counts.
//!
//! # Named fields
//!
//! An API's own names (`Names::Named`): its remaining field (an integer), its reset field
//! as its `ResetFormat` says (`Seconds` from now, `Epoch` seconds, a Go `Duration` such as
//! OpenAI's `6m0s`, `1h2m3.5s` or `250ms`, an `Rfc3339` timestamp such as Anthropic's
//! `2026-12-07T10:00:00Z`, with fractions and `±hh:mm` offsets; none: by magnitude), and
//! its limit field if named (the leading integer). An answer without the remaining field
//! has no quota; one with it but no reset is malformed.
//!
//! # A reset read by magnitude
//!
//! A reset field that does not say its unit (auto, and named fields without a
//! `reset_format`) is a non-negative decimal read by its size: below 10⁹ it is seconds
//! from now (`30`, `1.5`: some gateways send fractions), from 10⁹ seconds since the Unix
//! epoch (GitHub's `1767225600`; 10⁹ seconds is 31 years, so no window is that long and no
//! clock that far back), from 10¹² milliseconds since the epoch (10¹² seconds would be
//! year 33658). An epoch already past is a reset now.
//!
//! # Bounds
//!
//! Nothing is rounded down: a fractional epoch second is kept, and digits past the
//! nanosecond round up, so the client never goes before the server's reset. A reset beyond
//! one day ([`MAX_RESET`]) is read as one day: a server's monthly quota still holds the
//! client for a day, after which the next answer says again. A malformed field (not a
//! structured field, a negative number, text where a number goes, a remaining without a
//! reset) is ignored with one DEBUG event naming it (and at most the first 64 bytes of its
//! value): never an error, never a panic. The event is `quota field ignored: malformed`
//! (`field`, `value`, `reason`), or `quota field ignored in part: malformed` when only some
//! members of an IETF List are (with `skipped`, their count, and the first one's
//! `reason`). At most 16 IETF policies ([`MAX_POLICIES`]) are read from one field.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use sfv::visitor::{
    EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ListVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, KeyRef, Parser};

use super::{Names, QuotaHeaders, ResetFormat};
use crate::redact::Echo;

/// The quotas an answer advertised: most answers say one (the `X-RateLimit-*` family, an
/// API's named fields, one IETF policy), kept without a `Vec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Advertised {
    One(Quota),
    Many(Vec<Quota>),
}

impl std::ops::Deref for Advertised {
    type Target = [Quota];

    fn deref(&self) -> &[Quota] {
        match self {
            Advertised::One(quota) => std::slice::from_ref(quota),
            Advertised::Many(quotas) => quotas,
        }
    }
}

/// One quota an answer advertised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// The IETF policy's name, if it has one.
    pub(crate) policy: Option<Box<str>>,
    /// The IETF partition key (`pk`), if any.
    pub(crate) partition: Option<Box<[u8]>>,
    /// Requests left in the window.
    pub(crate) remaining: u64,
    /// Time from the answer to the window's reset.
    pub(crate) reset: Duration,
    /// The window's quota (`q`, or a `Limit` field), if said.
    pub(crate) limit: Option<u64>,
}

/// The longest reset taken: a longer one is read as this.
pub(crate) const MAX_RESET: Duration = Duration::from_secs(24 * 60 * 60);

/// The most IETF policies read from one answer: the tightest wins, and a server has a few
/// (per second, per minute, per day); past this many, the rest are validated and dropped, so
/// a hostile field cannot make the client keep thousands.
const MAX_POLICIES: usize = 16;

/// The quotas `headers` advertise, read with `names` (`now`: the wall clock, for epoch and
/// RFC 3339 resets); `None` when they advertise none. Malformed fields are ignored.
pub(crate) fn read(
    headers: &HeaderMap,
    names: &QuotaHeaders,
    now: impl FnOnce() -> SystemTime,
) -> Option<Advertised> {
    match &names.0 {
        Names::Auto => auto(headers, now),
        Names::Named {
            remaining,
            reset,
            reset_format,
            limit,
        } => named(
            headers,
            remaining,
            reset,
            *reset_format,
            limit.as_ref(),
            now,
        ),
        // Refused when the policy is built: no client reads with it.
        Names::Invalid(_) => None,
    }
}

// ---- Auto --------------------------------------------------------------------------------

/// The auto fields an answer carries: the first line of each, and whether `RateLimit` or
/// `RateLimit-Policy` has more (then they are joined).
#[derive(Default)]
struct Found<'a> {
    ietf: Option<&'a HeaderValue>,
    ietf_lines: bool,
    policy: Option<&'a HeaderValue>,
    policy_lines: bool,
    /// `X-RateLimit-*`: remaining, reset, limit.
    x: Family<'a>,
    /// The earlier drafts' `RateLimit-*`: remaining, reset, limit.
    draft: Family<'a>,
}

#[derive(Default)]
struct Family<'a> {
    remaining: Option<&'a HeaderValue>,
    reset: Option<&'a HeaderValue>,
    limit: Option<&'a HeaderValue>,
}

/// Auto: a pass over the answer's names, and over its fields if one may be an auto field,
/// then the IETF fields, else a `*-RateLimit-*` family.
///
/// One pass over the fields, not a `HeaderMap::get` per name: a `get` hashes the name and
/// probes, and auto needs three (`RateLimit`, `X-RateLimit-Remaining`,
/// `RateLimit-Remaining`) to know an answer has none, while the pass costs a first-byte
/// test per field (`content-*`, `date`, `server`, `cache-control`, … stop at it) and keeps
/// the values it finds, so an answer that has them is not looked up again. Measured with
/// callgrind (release) on a `content-type`, `content-length`, `date` answer: 124
/// instructions for the bare pass against 531 for the three `get`s (they meet near 15
/// fields), about 210 for the whole of `read`. A first pass over the names alone (`keys`)
/// brought an answer without auto fields to 79 for the whole of `read` (from 137, the
/// benchmark's answer, callgrind): it skips `iter`'s cursor over extra values and the
/// `Found` it fills. With fields, `read` costs about 670 for
/// the `X-RateLimit-*` three, and 2,400 for one IETF `RateLimit` member (sfv's parse is
/// about 1,100 of it, the returned `Vec` and the policy's name about 400).
fn auto(headers: &HeaderMap, now: impl FnOnce() -> SystemTime) -> Option<Advertised> {
    // First the names alone (`keys` walks the entries, without `iter`'s cursor over extra
    // values, and keeps no `Found`): most answers have no auto field and stop here.
    if !headers.keys().any(might_be_auto) {
        return None;
    }
    let mut found = Found::default();
    let mut any = false;
    for (name, value) in headers {
        if !might_be_auto(name) {
            continue;
        }
        let name = name.as_str();
        let (slot, lines) = match name {
            "ratelimit" => (&mut found.ietf, Some(&mut found.ietf_lines)),
            "ratelimit-policy" => (&mut found.policy, Some(&mut found.policy_lines)),
            "x-ratelimit-remaining" => (&mut found.x.remaining, None),
            "x-ratelimit-reset" => (&mut found.x.reset, None),
            "x-ratelimit-limit" => (&mut found.x.limit, None),
            "ratelimit-remaining" => (&mut found.draft.remaining, None),
            "ratelimit-reset" => (&mut found.draft.reset, None),
            "ratelimit-limit" => (&mut found.draft.limit, None),
            _ => continue,
        };
        any = true;
        if slot.is_none() {
            *slot = Some(value);
        } else if let Some(lines) = lines {
            *lines = true;
        }
    }
    if !any {
        return None;
    }
    slow(headers, &found, now())
}

/// Whether `name` may be an auto field: every auto name starts with `r` or `x`, so the
/// common fields (`content-*`, `date`, `server`, ...) stop at their first byte.
#[inline]
fn might_be_auto(name: &HeaderName) -> bool {
    matches!(name.as_str().as_bytes().first(), Some(b'r' | b'x'))
}

/// An answer with at least one auto field (kept out of line, so that `auto`'s pass stays
/// small).
#[inline(never)]
fn slow(headers: &HeaderMap, found: &Found<'_>, now: SystemTime) -> Option<Advertised> {
    if let Some(first) = found.ietf {
        let quotas = ietf(headers, first, found);
        if !quotas.is_empty() {
            return Some(Advertised::Many(quotas));
        }
    }
    // The `X-` family when it is whole, or when the drafts' is not (its lone field is then
    // reported as ignored); else the drafts'.
    let whole = |family: &Family<'_>| family.remaining.is_some() && family.reset.is_some();
    let x = &found.x;
    let x_says_any = x.remaining.is_some() || x.reset.is_some();
    let (family, names) = if whole(x) || (x_says_any && !whole(&found.draft)) {
        (x, X_NAMES)
    } else {
        (&found.draft, DRAFT_NAMES)
    };
    let quota = family_quota(family, names, now)?;
    Some(Advertised::One(quota))
}

/// The names of a family's fields (remaining, reset, limit), for its DEBUG events.
type FamilyNames = [&'static str; 3];
const X_NAMES: FamilyNames = [
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-limit",
];
const DRAFT_NAMES: FamilyNames = ["ratelimit-remaining", "ratelimit-reset", "ratelimit-limit"];

/// A `*-RateLimit-*` family's quota: remaining and reset (by magnitude) both needed.
fn family_quota(family: &Family<'_>, names: FamilyNames, now: SystemTime) -> Option<Quota> {
    let [remaining_name, reset_name, limit_name] = names;
    let (remaining, reset) = match (family.remaining, family.reset) {
        (Some(remaining), Some(reset)) => (remaining, reset),
        (Some(remaining), None) => {
            return ignored(
                remaining_name,
                remaining.as_bytes(),
                "no reset field beside it",
            );
        }
        (None, Some(reset)) => {
            return ignored(reset_name, reset.as_bytes(), "no remaining field beside it");
        }
        (None, None) => return None,
    };
    let Some(remaining) = integer(remaining.as_bytes()) else {
        return ignored(
            remaining_name,
            remaining.as_bytes(),
            "not a non-negative integer",
        );
    };
    let Some(reset) = decimal(reset.as_bytes()).map(|d| by_magnitude(d, now)) else {
        return ignored(reset_name, reset.as_bytes(), "not a non-negative number");
    };
    Some(Quota {
        policy: None,
        partition: None,
        remaining,
        reset,
        limit: family
            .limit
            .and_then(|limit| leading_integer(limit_name, limit)),
    })
}

// ---- IETF --------------------------------------------------------------------------------

/// The quotas of the IETF `RateLimit` field (its first line `first`), joined to
/// `RateLimit-Policy`; empty when it has none (then the `*-RateLimit-*` families are read).
///
/// Each List is read by `sfv`'s visitor, member by member, straight into what is kept (a
/// `Policy`, borrowing its name from the field; a `Quota`): no parsed tree is built, and
/// the allocations are the returned `Vec`, each quota's name, and the policies' `Vec` when
/// there is a `RateLimit-Policy`.
fn ietf(headers: &HeaderMap, first: &HeaderValue, found: &Found<'_>) -> Vec<Quota> {
    let policy_value = found
        .policy
        .map(|first| lines(headers, "ratelimit-policy", first, found.policy_lines));
    let policies = match policy_value.as_deref() {
        Some(value) => {
            let policies = list("ratelimit-policy", value, Policies::default());
            policies.map(|p| p.policies).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let value = lines(headers, "ratelimit", first, found.ietf_lines);
    let limits = Limits {
        policies: &policies,
        quotas: Vec::new(),
        outcome: Outcome::default(),
    };
    list("ratelimit", &value, limits).map_or_else(Vec::new, |l| l.quotas)
}

/// A field's lines as one value: the first alone (borrowed), or all joined with `, `, as
/// RFC 9651 §4.2 combines the lines of a List.
fn lines<'a>(
    headers: &'a HeaderMap,
    name: &str,
    first: &'a HeaderValue,
    more: bool,
) -> Cow<'a, [u8]> {
    if !more {
        return Cow::Borrowed(first.as_bytes());
    }
    let mut joined = Vec::new();
    for (i, line) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    Cow::Owned(joined)
}

/// `value` read as a List by `members`, with one DEBUG event if it is not a List (then
/// `None`: the whole field is ignored) or if some of its members were skipped.
fn list<'de, M: Members<'de>>(field: &'static str, value: &'de [u8], members: M) -> Option<M> {
    match Parser::new(value).parse_list_with_visitor(ListOf(members)) {
        Ok(ListOf(mut members)) => {
            if let Some((reason, count)) = members.outcome().skipped {
                tracing::debug!(
                    field,
                    value = %Echo(value),
                    reason,
                    skipped = count,
                    "quota field ignored in part: malformed"
                );
            }
            Some(members)
        }
        Err(error) => ignored(field, value, &error.to_string()),
    }
}

/// What a List's members are made into: `Policies` or `Limits`.
trait Members<'de> {
    /// One member, read: its name (or why it has none) and its parameters.
    fn member(&mut self, name: Result<Cow<'de, str>, &'static str>, params: Params);
    /// How many members were seen, and the first reason one was skipped.
    fn outcome(&mut self) -> &mut Outcome;
}

#[derive(Default)]
struct Outcome {
    seen: usize,
    skipped: Option<(&'static str, usize)>,
}

impl Outcome {
    fn skip(&mut self, reason: &'static str) {
        let (_, count) = self.skipped.get_or_insert((reason, 0));
        *count += 1;
    }
}

/// One policy of `RateLimit-Policy`, checked.
struct Policy<'de> {
    name: Cow<'de, str>,
    partition: Option<Vec<u8>>,
    quota: u64,
    window: Option<Duration>,
    /// `qu` is `"requests"` or absent.
    counts_requests: bool,
}

/// `RateLimit-Policy`'s well-formed policies.
#[derive(Default)]
struct Policies<'de> {
    policies: Vec<Policy<'de>>,
    outcome: Outcome,
}

impl<'de> Members<'de> for Policies<'de> {
    fn member(&mut self, name: Result<Cow<'de, str>, &'static str>, params: Params) {
        match policy(name, params) {
            Ok(policy) => self.policies.push(policy),
            Err(reason) => self.outcome.skip(reason),
        }
    }

    fn outcome(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

fn policy<'de>(
    name: Result<Cow<'de, str>, &'static str>,
    params: Params,
) -> Result<Policy<'de>, &'static str> {
    let name = name?;
    let quota = match params.q {
        Param::Int(q) => u64::try_from(q).map_err(|_| "`q` is negative")?,
        Param::Absent => return Err("a policy without `q`"),
        Param::Wrong => return Err("`q` is not an integer"),
    };
    let window = match params.w {
        Param::Int(w) => Some(seconds(w).ok_or("`w` is negative")?),
        Param::Absent => None,
        Param::Wrong => return Err("`w` is not an integer"),
    };
    let counts_requests = match params.qu {
        Unit::Absent | Unit::Requests => true,
        Unit::Other => false,
        Unit::Wrong => return Err("`qu` is not a string"),
    };
    Ok(Policy {
        name,
        partition: params.pk.into_key()?,
        quota,
        window,
        counts_requests,
    })
}

/// `RateLimit`'s members as quotas, joined to `policies`.
struct Limits<'p, 'de> {
    policies: &'p [Policy<'de>],
    quotas: Vec<Quota>,
    outcome: Outcome,
}

impl<'de> Members<'de> for Limits<'_, '_> {
    fn member(&mut self, name: Result<Cow<'de, str>, &'static str>, params: Params) {
        match quota(name, params, self.policies) {
            Ok(Some(quota)) => self.quotas.push(quota),
            // Not counted in requests: not ours to follow, not malformed either.
            Ok(None) => {}
            Err(reason) => self.outcome.skip(reason),
        }
    }

    fn outcome(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}

/// The quota of one `RateLimit` member; `Ok(None)` when its policy counts something else
/// than requests.
fn quota(
    name: Result<Cow<'_, str>, &'static str>,
    params: Params,
    policies: &[Policy<'_>],
) -> Result<Option<Quota>, &'static str> {
    let name = name?;
    let remaining = match params.r {
        Param::Int(r) => u64::try_from(r).map_err(|_| "`r` is negative")?,
        Param::Absent => return Err("a member without `r`"),
        Param::Wrong => return Err("`r` is not an integer"),
    };
    let partition = params.pk.into_key()?;
    let policy = policies.iter().find(|p| {
        p.name == name
            && match (&p.partition, &partition) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    });
    if policy.is_some_and(|p| !p.counts_requests) {
        return Ok(None);
    }
    let reset = match params.t {
        Param::Int(t) => seconds(t).ok_or("`t` is negative")?,
        Param::Absent => policy
            .and_then(|p| p.window)
            .ok_or("no `t`, and no `w` in its policy")?,
        Param::Wrong => return Err("`t` is not an integer"),
    };
    Ok(Some(Quota {
        policy: Some(name.into()),
        partition: partition.map(Vec::into_boxed_slice),
        remaining,
        reset,
        limit: policy.map(|p| p.quota),
    }))
}

/// Integer seconds, capped at [`MAX_RESET`]; `None` if negative.
fn seconds(secs: i64) -> Option<Duration> {
    let secs = u64::try_from(secs).ok()?;
    Some(Duration::from_secs(secs).min(MAX_RESET))
}

/// The parameters of one member that either field defines, as read: a repeated parameter's
/// last value wins (RFC 9651), so types are checked once the member is read.
#[derive(Default)]
struct Params {
    r: Param,
    t: Param,
    q: Param,
    w: Param,
    qu: Unit,
    pk: Key,
}

/// An Integer parameter.
#[derive(Default)]
enum Param {
    #[default]
    Absent,
    Int(i64),
    Wrong,
}

/// `qu`, a String.
#[derive(Default)]
enum Unit {
    #[default]
    Absent,
    Requests,
    Other,
    Wrong,
}

/// `pk`, a Byte Sequence.
#[derive(Default)]
enum Key {
    #[default]
    Absent,
    Bytes(Vec<u8>),
    Wrong,
}

impl Key {
    fn into_key(self) -> Result<Option<Vec<u8>>, &'static str> {
        match self {
            Key::Absent => Ok(None),
            Key::Bytes(key) => Ok(Some(key)),
            Key::Wrong => Err("`pk` is not a byte sequence"),
        }
    }
}

/// Hands a List's members to `M`, at most [`MAX_POLICIES`] of them.
struct ListOf<M>(M);

impl<'de, M: Members<'de>> ListVisitor<'de> for ListOf<M> {
    type Out = Self;
    type Error = std::convert::Infallible;

    fn entry(&mut self) -> Result<impl EntryVisitor<'de>, Self::Error> {
        let outcome = self.0.outcome();
        if outcome.seen == MAX_POLICIES {
            return Ok(None);
        }
        outcome.seen += 1;
        Ok(Some(MemberVisitor {
            members: &mut self.0,
            name: Err("no name"),
            params: Params::default(),
        }))
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(self)
    }
}

/// Reads one member, then hands it to its `Members`.
struct MemberVisitor<'a, 'de, M> {
    members: &'a mut M,
    name: Result<Cow<'de, str>, &'static str>,
    params: Params,
}

impl<'de, M: Members<'de>> EntryVisitor<'de> for MemberVisitor<'_, 'de, M> {
    type Error = std::convert::Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        Ok(self)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
        // Neither field has inner lists.
        self.members.outcome().skip("an inner list");
        Ok(Ignored)
    }
}

impl<'de, M: Members<'de>> ItemVisitor<'de> for MemberVisitor<'_, 'de, M> {
    type Out = ();
    type Error = std::convert::Infallible;

    fn bare_item(
        mut self,
        bare_item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
        // The policy's name: a String (revisions 09 to 11) or a Token (earlier examples).
        self.name = match bare_item {
            BareItemFromInput::String(Cow::Borrowed(name)) => Ok(Cow::Borrowed(name.as_str())),
            BareItemFromInput::String(Cow::Owned(name)) => Ok(Cow::Owned(name.into())),
            BareItemFromInput::Token(name) => Ok(Cow::Borrowed(name.as_str())),
            _ => Err("a policy name that is not a string or a token"),
        };
        Ok(self)
    }
}

impl<'de, M: Members<'de>> ParameterVisitor<'de> for MemberVisitor<'_, 'de, M> {
    type Out = ();
    type Error = std::convert::Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Self::Error> {
        let integer = |value: &BareItemFromInput<'_>| match value {
            BareItemFromInput::Integer(n) => Param::Int(i64::from(*n)),
            _ => Param::Wrong,
        };
        let params = &mut self.params;
        match key.as_str() {
            "r" => params.r = integer(&value),
            "t" => params.t = integer(&value),
            "q" => params.q = integer(&value),
            "w" => params.w = integer(&value),
            "qu" => {
                params.qu = match &value {
                    BareItemFromInput::String(unit) if unit.as_str() == "requests" => {
                        Unit::Requests
                    }
                    BareItemFromInput::String(_) => Unit::Other,
                    _ => Unit::Wrong,
                }
            }
            "pk" => {
                params.pk = match value {
                    BareItemFromInput::ByteSequence(key) => Key::Bytes(key),
                    _ => Key::Wrong,
                }
            }
            // Unknown parameters are ignored, as the draft asks.
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        self.members.member(self.name, self.params);
        Ok(())
    }
}

// ---- Named -------------------------------------------------------------------------------

/// An API's own fields. One `HeaderMap::get` of the remaining field decides (the names
/// are the user's, built once with the policy): an answer without it has no quota.
fn named(
    headers: &HeaderMap,
    remaining_name: &HeaderName,
    reset_name: &HeaderName,
    format: Option<ResetFormat>,
    limit_name: Option<&HeaderName>,
    now: impl FnOnce() -> SystemTime,
) -> Option<Advertised> {
    let remaining = headers.get(remaining_name)?;
    named_slow(
        headers,
        remaining,
        remaining_name,
        reset_name,
        format,
        limit_name,
        now(),
    )
}

/// An answer with the remaining field (out of line, as auto's `slow`).
#[inline(never)]
fn named_slow(
    headers: &HeaderMap,
    remaining: &HeaderValue,
    remaining_name: &HeaderName,
    reset_name: &HeaderName,
    format: Option<ResetFormat>,
    limit_name: Option<&HeaderName>,
    now: SystemTime,
) -> Option<Advertised> {
    let Some(reset) = headers.get(reset_name) else {
        return ignored(
            remaining_name.as_str(),
            remaining.as_bytes(),
            "no reset field beside it",
        );
    };
    let Some(remaining) = integer(remaining.as_bytes()) else {
        return ignored(
            remaining_name.as_str(),
            remaining.as_bytes(),
            "not a non-negative integer",
        );
    };
    let Some(reset_at) = reset_in(reset.as_bytes(), format, now) else {
        return ignored(
            reset_name.as_str(),
            reset.as_bytes(),
            format_expected(format),
        );
    };
    let limit = limit_name
        .and_then(|name| Some((name, headers.get(name)?)))
        .and_then(|(name, limit)| leading_integer(name.as_str(), limit));
    Some(Advertised::One(Quota {
        policy: None,
        partition: None,
        remaining,
        reset: reset_at.min(MAX_RESET),
        limit,
    }))
}

/// A named reset field's value, as `format` says.
fn reset_in(value: &[u8], format: Option<ResetFormat>, now: SystemTime) -> Option<Duration> {
    match format {
        None => decimal(value).map(|d| by_magnitude(d, now)),
        Some(ResetFormat::Seconds) => decimal(value).map(Decimal::duration),
        Some(ResetFormat::Epoch) => decimal(value).map(|d| until(d.duration(), now)),
        Some(ResetFormat::Duration) => go_duration(value),
        Some(ResetFormat::Rfc3339) => rfc3339(value, now),
    }
}

fn format_expected(format: Option<ResetFormat>) -> &'static str {
    match format {
        None | Some(ResetFormat::Seconds) | Some(ResetFormat::Epoch) => "not a non-negative number",
        Some(ResetFormat::Duration) => "not a duration such as `6m0s` or `250ms`",
        Some(ResetFormat::Rfc3339) => "not an RFC 3339 timestamp",
    }
}

/// A duration as Go writes one (`6m0s`, `1h2m3.5s`, `250ms`), as OpenAI sends it;
/// humantime reads these exactly (it also takes its own spellings, `1min 30s`, harmlessly).
fn go_duration(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    humantime::parse_duration(text).ok()
}

/// An RFC 3339 timestamp (`2026-12-07T10:00:00Z`, `…T10:00:00.5+01:00`), as Anthropic
/// sends it, as time from `now`. humantime reads the date and time but only UTC, so the
/// offset is taken off here and applied after.
fn rfc3339(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let bytes = text.as_bytes();
    let (local, east) = match bytes {
        [.., b'Z' | b'z'] => (text.get(..text.len() - 1)?, 0i64),
        [.., sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |b: &u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
            let hours = digit(h1)? * 10 + digit(h2)?;
            let minutes = digit(m1)? * 10 + digit(m2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            let east = if *sign == b'-' { -offset } else { offset };
            (text.get(..text.len() - 6)?, east)
        }
        _ => return None,
    };
    let local = humantime::parse_rfc3339_weak(local).ok()?;
    // The local time is `east` seconds ahead of UTC.
    let shift = Duration::from_secs(east.unsigned_abs());
    let at = if east >= 0 {
        local.checked_sub(shift)?
    } else {
        local.checked_add(shift)?
    };
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

// ---- Numbers -----------------------------------------------------------------------------

/// A non-negative decimal, exact to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decimal {
    whole: u64,
    nanos: u32,
}

impl Decimal {
    fn duration(self) -> Duration {
        Duration::new(self.whole, self.nanos)
    }
}

/// `digits[.digits]` with optional whitespace around it; digits past the nanosecond round
/// the value up (a reset never comes early); `None` for anything else, or beyond `u64`.
fn decimal(value: &[u8]) -> Option<Decimal> {
    let value = value.trim_ascii();
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (value.get(..dot)?, Some(value.get(dot + 1..)?)),
        None => (value, None),
    };
    let whole = digits(whole)?;
    let mut nanos = 0u32;
    let mut round_up = false;
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut scale = 100_000_000;
        for &b in fraction {
            if scale > 0 {
                nanos += u32::from(b - b'0') * scale;
                scale /= 10;
            } else if b != b'0' {
                round_up = true;
            }
        }
    }
    if !round_up {
        return Some(Decimal { whole, nanos });
    }
    if nanos < 999_999_999 {
        Some(Decimal {
            whole,
            nanos: nanos + 1,
        })
    } else {
        Some(Decimal {
            whole: whole.checked_add(1)?,
            nanos: 0,
        })
    }
}

/// One or more ASCII digits as a `u64`.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
    })
}

/// A whole field as a non-negative integer (whitespace around it allowed).
fn integer(value: &[u8]) -> Option<u64> {
    digits(value.trim_ascii())
}

/// A `Limit` field's leading integer (`100` of `100, 100;w=60`); `None`, with a DEBUG
/// event, if it does not start with one.
fn leading_integer(field: &str, value: &HeaderValue) -> Option<u64> {
    let bytes = value.as_bytes().trim_ascii_start();
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    let leading = bytes.get(..end).and_then(digits);
    if leading.is_none() {
        return ignored(field, value.as_bytes(), "does not start with an integer");
    }
    leading
}

/// The magnitudes of the module docs.
const EPOCH_SECONDS: u64 = 1_000_000_000;
const EPOCH_MILLIS: u64 = 1_000_000_000_000;

/// A reset read by magnitude (see the module docs), capped at [`MAX_RESET`].
fn by_magnitude(value: Decimal, now: SystemTime) -> Duration {
    let reset = if value.whole < EPOCH_SECONDS {
        value.duration()
    } else if value.whole < EPOCH_MILLIS {
        until(value.duration(), now)
    } else {
        // The fraction of a millisecond, in nanoseconds, rounded up.
        let nanos = u64::from(value.nanos).div_ceil(1_000_000);
        let since_epoch =
            Duration::from_millis(value.whole).saturating_add(Duration::from_nanos(nanos));
        until(since_epoch, now)
    };
    reset.min(MAX_RESET)
}

/// From `now` to `since_epoch` after the Unix epoch; zero if that is past.
fn until(since_epoch: Duration, now: SystemTime) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    since_epoch.saturating_sub(now)
}

// ---- Malformed fields --------------------------------------------------------------------

/// Says at DEBUG that `field` is ignored, and why; `None`, for the caller to return.
#[cold]
fn ignored<T>(field: &str, value: &[u8], reason: &str) -> Option<T> {
    tracing::debug!(
        field,
        value = %Echo(value),
        reason,
        "quota field ignored: malformed"
    );
    None
}

#[cfg(test)]
impl Quota {
    /// A quota of no named policy or partition, as the `X-RateLimit-*` family says one.
    pub(crate) fn plain(remaining: u64, reset: Duration, limit: Option<u64>) -> Self {
        Quota {
            policy: None,
            partition: None,
            remaining,
            reset,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

    /// 2026-12-07T09:50:00Z: ten minutes before the resets below.
    const NOW_SECS: u64 = 1_796_637_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A map with these fields, in order; a name given twice is two field lines.
    fn headers(fields: &[(&str, &str)]) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("content-length", HeaderValue::from_static("2"));
        headers.append(
            "date",
            HeaderValue::from_static("Mon, 07 Dec 2026 09:50:00 GMT"),
        );
        for (name, value) in fields {
            headers.append(HeaderName::try_from(*name)?, HeaderValue::try_from(*value)?);
        }
        Ok(headers)
    }

    fn auto(fields: &[(&str, &str)]) -> Result<Option<Vec<Quota>>> {
        Ok(read(&headers(fields)?, &QuotaHeaders::auto(), now).map(|q| q.to_vec()))
    }

    fn named(
        fields: &[(&str, &str)],
        remaining: &'static str,
        reset: &'static str,
        reset_format: Option<ResetFormat>,
        limit: Option<&'static str>,
    ) -> Result<Option<Vec<Quota>>> {
        let names = QuotaHeaders(Names::Named {
            remaining: HeaderName::from_static(remaining),
            reset: HeaderName::from_static(reset),
            reset_format,
            limit: limit.map(HeaderName::from_static),
        });
        Ok(read(&headers(fields)?, &names, now).map(|q| q.to_vec()))
    }

    fn plain(remaining: u64, reset: Duration, limit: Option<u64>) -> Quota {
        Quota::plain(remaining, reset, limit)
    }

    fn policy(name: &str, remaining: u64, reset: Duration, limit: Option<u64>) -> Quota {
        Quota {
            policy: Some(name.into()),
            ..plain(remaining, reset, limit)
        }
    }

    #[test]
    fn no_quota_fields_is_none() -> Result {
        assert_eq!(auto(&[])?, None);
        assert_eq!(
            auto(&[("x-request-id", "abc"), ("retry-after", "5")])?,
            None
        );
        // A limit alone says nothing left to count.
        assert_eq!(auto(&[("x-ratelimit-limit", "100")])?, None);
        let fields = [("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "5")];
        assert_eq!(
            named(&fields, "x-other-remaining", "x-other-reset", None, None)?,
            None
        );
        Ok(())
    }

    #[test]
    fn github_epoch_seconds() -> Result {
        let reset = (NOW_SECS + 600).to_string();
        let quotas = auto(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-reset", &reset),
            ("x-ratelimit-used", "1"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(4999, secs(600.0), Some(5000))]));
        Ok(())
    }

    #[test]
    fn gateway_seconds_with_a_fraction() -> Result {
        let quotas = auto(&[
            ("X-RateLimit-Remaining", "10"),
            ("X-RateLimit-Reset", " 1.5 "),
        ])?;
        assert_eq!(quotas, Some(vec![plain(10, secs(1.5), None)]));
        Ok(())
    }

    #[test]
    fn epoch_milliseconds_and_past_epochs() -> Result {
        let reset = (NOW_SECS * 1000 + 2_500).to_string();
        let quotas = auto(&[
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", &reset),
        ])?;
        assert_eq!(quotas, Some(vec![plain(3, secs(2.5), None)]));
        let past = (NOW_SECS - 10).to_string();
        let quotas = auto(&[("x-ratelimit-remaining", "3"), ("x-ratelimit-reset", &past)])?;
        assert_eq!(quotas, Some(vec![plain(3, Duration::ZERO, None)]));
        Ok(())
    }

    #[test]
    fn magnitudes_keep_fractions_and_round_up() {
        let at = |text: &str| decimal(text.as_bytes()).map(|d| by_magnitude(d, now()));
        assert_eq!(at("999999999"), Some(MAX_RESET));
        assert_eq!(at("0"), Some(Duration::ZERO));
        assert_eq!(at("0.25"), Some(secs(0.25)));
        // A fractional epoch second stays.
        assert_eq!(at(&format!("{}.25", NOW_SECS + 1)), Some(secs(1.25)));
        // Past the nanosecond, up.
        assert_eq!(at("1.0000000001"), Some(Duration::new(1, 1)));
        assert_eq!(at("1.9999999999"), Some(Duration::new(2, 0)));
        assert_eq!(at("1.0000000000"), Some(Duration::new(1, 0)));
        // Epoch milliseconds: a fraction of a millisecond, up to the nanosecond.
        assert_eq!(
            at(&format!("{}.0000001", NOW_SECS * 1000 + 1)),
            Some(Duration::new(0, 1_000_001))
        );
        // Far future epochs: one day.
        assert_eq!(at("99999999999"), Some(MAX_RESET));
        assert_eq!(at("18446744073709551615"), Some(MAX_RESET));
        for bad in [
            "",
            ".5",
            "5.",
            "1e3",
            "-1",
            "+1",
            "0x10",
            "1.2.3",
            "18446744073709551616",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn earlier_drafts_take_the_leading_limit() -> Result {
        let quotas = auto(&[
            ("RateLimit-Limit", "100, 100;w=60"),
            ("RateLimit-Remaining", "50"),
            ("RateLimit-Reset", "30"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(50, secs(30.0), Some(100))]));
        // X-RateLimit-* first, when both families are there.
        let quotas = auto(&[
            ("ratelimit-remaining", "50"),
            ("ratelimit-reset", "30"),
            ("x-ratelimit-remaining", "5"),
            ("x-ratelimit-reset", "3"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(5, secs(3.0), None)]));
        // A lone X- field does not hide the drafts' whole set.
        let quotas = auto(&[
            ("ratelimit-remaining", "50"),
            ("ratelimit-reset", "30"),
            ("x-ratelimit-reset", "3"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(50, secs(30.0), None)]));
        Ok(())
    }

    #[test]
    fn openai_go_durations() -> Result {
        let quotas = named(
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "59"),
                ("x-ratelimit-reset-requests", "6m0s"),
                ("x-ratelimit-reset-tokens", "20ms"),
            ],
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            Some(ResetFormat::Duration),
            Some("x-ratelimit-limit-requests"),
        )?;
        assert_eq!(quotas, Some(vec![plain(59, secs(360.0), Some(60))]));
        let go = |text: &str| reset_in(text.as_bytes(), Some(ResetFormat::Duration), now());
        assert_eq!(go("1h2m3.5s"), Some(secs(3723.5)));
        assert_eq!(go("250ms"), Some(secs(0.25)));
        assert_eq!(go("1.5s"), Some(secs(1.5)));
        assert_eq!(go("20ms"), Some(secs(0.02)));
        assert_eq!(go("0s"), Some(Duration::ZERO));
        for bad in ["", "-1s", "6", "soon", "1.5.s"] {
            assert_eq!(go(bad), None, "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn anthropic_rfc3339() -> Result {
        let quotas = named(
            &[
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-requests-remaining", "49"),
                ("anthropic-ratelimit-requests-reset", "2026-12-07T10:00:00Z"),
            ],
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            Some(ResetFormat::Rfc3339),
            Some("anthropic-ratelimit-requests-limit"),
        )?;
        assert_eq!(quotas, Some(vec![plain(49, secs(600.0), Some(50))]));
        let at = |text: &str| reset_in(text.as_bytes(), Some(ResetFormat::Rfc3339), now());
        assert_eq!(at("2026-12-07T11:00:00.5+01:00"), Some(secs(600.5)));
        assert_eq!(at("2026-12-07T08:30:00-01:30"), Some(secs(600.0)));
        assert_eq!(
            at("2026-12-07T10:00:00.000000001z"),
            Some(Duration::new(600, 1))
        );
        assert_eq!(at("2026-12-07T09:00:00Z"), Some(Duration::ZERO));
        for bad in [
            "",
            "2026-12-07T10:00:00",
            "2026-13-07T10:00:00Z",
            "2026-12-07T10:00:00+24:00",
            "2026-12-07T10:00:00+1:00",
            "tomorrow",
            "1796637600",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn named_formats_seconds_and_epoch() -> Result {
        let fields = |reset: &str| -> Result<Option<Vec<Quota>>> {
            let fields = [("x-left", "7"), ("x-reset", reset)];
            named(
                &fields,
                "x-left",
                "x-reset",
                Some(ResetFormat::Seconds),
                None,
            )
        };
        assert_eq!(fields("2.5")?, Some(vec![plain(7, secs(2.5), None)]));
        // Seconds say seconds, whatever their size (capped).
        assert_eq!(fields("1796637600")?, Some(vec![plain(7, MAX_RESET, None)]));
        let epoch = |reset: &str| reset_in(reset.as_bytes(), Some(ResetFormat::Epoch), now());
        assert_eq!(epoch("1796637600"), Some(secs(600.0)));
        assert_eq!(epoch("30"), Some(Duration::ZERO));
        Ok(())
    }

    #[test]
    fn ietf_two_policies() -> Result {
        let quotas = auto(&[
            (
                "RateLimit-Policy",
                r#""burst";q=100;w=60, "daily";q=1000;w=86400"#,
            ),
            ("RateLimit", r#""burst";r=50;t=30, "daily";r=999;t=3600"#),
            // Not read when the IETF fields say a quota.
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", "1"),
        ])?;
        let expected = vec![
            policy("burst", 50, secs(30.0), Some(100)),
            policy("daily", 999, secs(3600.0), Some(1000)),
        ];
        assert_eq!(quotas, Some(expected));
        // Token names (revision 08's examples), and no policy field: no limit.
        let quotas = auto(&[("ratelimit", "default;r=5;t=1;extension=?1")])?;
        assert_eq!(quotas, Some(vec![policy("default", 5, secs(1.0), None)]));
        Ok(())
    }

    #[test]
    fn ietf_partition_keys() -> Result {
        let policies = r#""peruser";q=100;w=60;pk=:cHsdsRa894==:, "peruser";q=5;w=60;pk=:AAE=:"#;
        let quotas = auto(&[
            ("ratelimit-policy", policies),
            ("ratelimit", r#""peruser";r=10;t=5;pk=:AAE=:"#),
        ])?;
        let expected = Quota {
            partition: Some(Box::from(&[0u8, 1][..])),
            ..policy("peruser", 10, secs(5.0), Some(5))
        };
        assert_eq!(quotas, Some(vec![expected]));
        // A key of a policy not advertised: no limit, still a quota.
        let quotas = auto(&[
            ("ratelimit-policy", policies),
            ("ratelimit", r#""peruser";r=10;t=5;pk=:AAI=:"#),
        ])?;
        let expected = Quota {
            partition: Some(Box::from(&[0u8, 2][..])),
            ..policy("peruser", 10, secs(5.0), None)
        };
        assert_eq!(quotas, Some(vec![expected]));
        Ok(())
    }

    #[test]
    fn ietf_window_when_no_reset() -> Result {
        let quotas = auto(&[
            ("ratelimit-policy", r#""default";q=10;w=2"#),
            ("ratelimit", r#""default";r=3"#),
        ])?;
        assert_eq!(
            quotas,
            Some(vec![policy("default", 3, secs(2.0), Some(10))])
        );
        // No `t` and no policy window: nothing to follow.
        assert_eq!(auto(&[("ratelimit", r#""default";r=3"#)])?, None);
        let quotas = auto(&[
            ("ratelimit-policy", r#""default";q=10"#),
            ("ratelimit", r#""default";r=3"#),
        ])?;
        assert_eq!(quotas, None);
        Ok(())
    }

    #[test]
    fn ietf_policy_alone_is_nothing() -> Result {
        assert_eq!(
            auto(&[("ratelimit-policy", r#""default";q=10;w=2"#)])?,
            None
        );
        Ok(())
    }

    #[test]
    fn ietf_other_units_are_skipped() -> Result {
        let quotas = auto(&[
            (
                "ratelimit-policy",
                r#""bytes";q=1000;qu="content-bytes";w=10, "calls";q=10;qu="requests";w=10"#,
            ),
            ("ratelimit", r#""bytes";r=500;t=5, "calls";r=3;t=5"#),
        ])?;
        assert_eq!(quotas, Some(vec![policy("calls", 3, secs(5.0), Some(10))]));
        Ok(())
    }

    #[test]
    fn ietf_field_lines_combine() -> Result {
        let quotas = auto(&[
            ("ratelimit-policy", r#""a";q=10;w=1"#),
            ("ratelimit", r#""a";r=1"#),
            ("ratelimit-policy", r#""b";q=20;w=2"#),
            ("ratelimit", r#""b";r=2"#),
        ])?;
        let expected = vec![
            policy("a", 1, secs(1.0), Some(10)),
            policy("b", 2, secs(2.0), Some(20)),
        ];
        assert_eq!(quotas, Some(expected));
        Ok(())
    }

    #[test]
    fn ietf_keeps_a_bounded_number_of_policies() -> Result {
        let many: Vec<String> = (0..40).map(|i| format!("\"p{i}\";r={i};t=1")).collect();
        let quotas = auto(&[("ratelimit", &many.join(", "))])?;
        assert_eq!(quotas.map(|q| q.len()), Some(MAX_POLICIES));
        Ok(())
    }

    #[test]
    fn malformed_fields_are_ignored() -> Result {
        let cases: &[&[(&str, &str)]] = &[
            // Not a structured-field List (revision 07's Dictionary-like form is not one).
            &[("ratelimit", "limit=10, remaining=1, reset=7")],
            &[("ratelimit", r#""default";r=1;t=1,"#)],
            &[("ratelimit", r#""unterminated;r=1;t=1"#)],
            &[("ratelimit", "\"caf\u{e9}\";r=1;t=1")],
            // Members of the wrong shape.
            &[("ratelimit", r#""default";r=-1;t=5"#)],
            &[("ratelimit", r#""default";r="5";t=5"#)],
            &[("ratelimit", r#""default";r=5;t=-5"#)],
            &[("ratelimit", r#""default";r=5;t=1.5"#)],
            &[("ratelimit", r#""default";t=5"#)],
            &[("ratelimit", r#"("a" "b");r=5;t=5"#)],
            &[("ratelimit", r#"5;r=5;t=5"#)],
            &[("ratelimit", r#""default";r=5;t=5;pk="key""#)],
            &[
                ("ratelimit-policy", r#""default";q=-1;w=5"#),
                ("ratelimit", r#""default";r=5"#),
            ],
            // The families.
            &[("x-ratelimit-remaining", "abc"), ("x-ratelimit-reset", "5")],
            &[("x-ratelimit-remaining", "-3"), ("x-ratelimit-reset", "5")],
            &[("x-ratelimit-remaining", "1e3"), ("x-ratelimit-reset", "5")],
            &[
                ("x-ratelimit-remaining", "99999999999999999999999"),
                ("x-ratelimit-reset", "5"),
            ],
            &[("x-ratelimit-remaining", "3"), ("x-ratelimit-reset", "-5")],
            &[
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "soon"),
            ],
            &[("x-ratelimit-remaining", "3"), ("x-ratelimit-reset", "NaN")],
            &[("x-ratelimit-remaining", "3")],
            &[("x-ratelimit-reset", "3")],
            &[("ratelimit-remaining", "3"), ("ratelimit-reset", "inf")],
        ];
        for fields in cases {
            assert_eq!(auto(fields)?, None, "{fields:?}");
        }
        // A malformed limit is dropped, the quota kept.
        let quotas = auto(&[
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "5"),
            ("x-ratelimit-limit", "lots"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(3, secs(5.0), None)]));
        // A malformed policy field leaves the quotas, without their limits.
        let quotas = auto(&[
            ("ratelimit-policy", "q=10"),
            ("ratelimit", r#""a";r=1;t=1"#),
        ])?;
        assert_eq!(quotas, Some(vec![policy("a", 1, secs(1.0), None)]));
        // A malformed IETF field falls back to the family beside it.
        let quotas = auto(&[
            ("ratelimit", "limit=10"),
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "5"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(3, secs(5.0), None)]));
        // Named: no reset beside the remaining, or a reset not in its format.
        let rfc = Some(ResetFormat::Rfc3339);
        let fields = [("x-left", "3")];
        assert_eq!(named(&fields, "x-left", "x-reset", rfc, None)?, None);
        let fields = [("x-left", "3"), ("x-reset", "6m0s")];
        assert_eq!(named(&fields, "x-left", "x-reset", rfc, None)?, None);
        let fields = [("x-left", "many"), ("x-reset", "2026-12-07T10:00:00Z")];
        assert_eq!(named(&fields, "x-left", "x-reset", rfc, None)?, None);
        Ok(())
    }

    #[test]
    fn resets_beyond_a_day_are_a_day() -> Result {
        let quotas = auto(&[
            ("x-ratelimit-remaining", "3"),
            ("x-ratelimit-reset", "900000"),
        ])?;
        assert_eq!(quotas, Some(vec![plain(3, MAX_RESET, None)]));
        let quotas = auto(&[("ratelimit", r#""month";r=3;t=2592000"#)])?;
        assert_eq!(quotas, Some(vec![policy("month", 3, MAX_RESET, None)]));
        let fields = [("x-left", "3"), ("x-reset", "2027-12-07T10:00:00Z")];
        let quotas = named(
            &fields,
            "x-left",
            "x-reset",
            Some(ResetFormat::Rfc3339),
            None,
        )?;
        assert_eq!(quotas, Some(vec![plain(3, MAX_RESET, None)]));
        Ok(())
    }

    #[test]
    fn echoes_at_most_64_bytes() {
        let long = [b'a'; 100];
        let shown = Echo(&long).to_string();
        assert_eq!(shown, format!("{}… (100 bytes)", "a".repeat(64)));
        assert_eq!(Echo(b"r=\xff\n").to_string(), "r=\\xff\\n");
    }

    /// Each malformed field is said once, at DEBUG, with its name, and a long value cut.
    #[test]
    fn one_debug_event_per_malformed_field() -> Result {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                lines.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // tracing-core computes a callsite's interest from the global dispatcher alone while
        // at most one dispatcher is registered, so a callsite first reached on another test
        // thread while this test's subscriber is the only one would be cached as never
        // enabled: a second one (which wants nothing) keeps it computed from both.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let long = format!("\"default\";r=-1;t=5, {}", "x".repeat(200));
        let cases: &[&[(&str, &str)]] = &[
            &[("ratelimit", &long)],
            &[("ratelimit", r#""a";r=-1;t=5, "b";t=5"#)],
            &[
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "soon"),
            ],
        ];
        tracing::subscriber::with_default(subscriber, || -> Result {
            for fields in cases {
                assert_eq!(auto(fields)?, None, "{fields:?}");
            }
            Ok(())
        })?;
        let text = String::from_utf8(
            lines
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )?;
        let events: Vec<&str> = text.lines().collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(events.iter().all(|e| e.contains("DEBUG")), "{text}");
        assert!(events[0].contains("field=\"ratelimit\""), "{text}");
        assert!(events[0].contains("(220 bytes)"), "{text}");
        assert!(!events[0].contains(&"x".repeat(50)), "{text}");
        assert!(events[1].contains("skipped=2"), "{text}");
        assert!(events[2].contains("field=\"x-ratelimit-reset\""), "{text}");
        Ok(())
    }
}

/// Property tests: `cargo test --lib server_quota::fields::fuzz`.
#[cfg(test)]
mod fuzz {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::{MAX_RESET, Names, QuotaHeaders, ResetFormat, read};

    fn config() -> ProptestConfig {
        crate::fuzzing::config(2_000)
    }

    const AUTO: [&str; 8] = [
        "ratelimit",
        "ratelimit-policy",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-limit",
    ];

    const FORMATS: [Option<ResetFormat>; 5] = [
        None,
        Some(ResetFormat::Seconds),
        Some(ResetFormat::Epoch),
        Some(ResetFormat::Duration),
        Some(ResetFormat::Rfc3339),
    ];

    /// Values near the fields' grammars, and any bytes a field may hold.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[\"a-z0-9;=:, .*?@%()+/\\-]{0,60}".prop_map(String::into_bytes),
            "(\"[a-z]{1,3}\"|[a-z]{1,3})(;[a-z]{1,2}=(-?[0-9]{1,16}|\"[a-z-]{0,8}\"|:[A-Za-z0-9+/=]{0,8}:|[0-9]{1,3}\\.[0-9]{1,4})){0,4}(, .{0,20})?"
                .prop_map(String::into_bytes),
            "[0-9]{0,22}(\\.[0-9]{0,12})?[a-zµ]{0,3}([0-9]{0,3}[a-z]{0,2}){0,3}".prop_map(String::into_bytes),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
                .prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..100),
        ]
    }

    fn fields() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
        proptest::collection::vec((0..AUTO.len(), value()), 0..6)
    }

    fn map(fields: &[(usize, Vec<u8>)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(HeaderName::from_static(AUTO[*name]), value);
            }
        }
        headers
    }

    fn check(quotas: Option<super::Advertised>) -> Result<(), TestCaseError> {
        for quota in quotas.as_deref().unwrap_or_default() {
            prop_assert!(quota.reset <= MAX_RESET);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn auto_never_panics(fields in fields(), now in any::<u64>()) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now >> 24)).unwrap_or(UNIX_EPOCH);
            check(read(&map(&fields), &QuotaHeaders::auto(), || now))?;
            check(read(&map(&fields), &QuotaHeaders::auto(), SystemTime::now))?;
        }

        #[test]
        fn named_never_panics(fields in fields(), format in 0..FORMATS.len()) {
            let names = QuotaHeaders(Names::Named {
                remaining: HeaderName::from_static("x-ratelimit-remaining"),
                reset: HeaderName::from_static("x-ratelimit-reset"),
                reset_format: FORMATS[format],
                limit: Some(HeaderName::from_static("ratelimit")),
            });
            check(read(&map(&fields), &names, SystemTime::now))?;
        }
    }
}
