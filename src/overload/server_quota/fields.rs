//! Reading a server's quota from an answer's fields. (Skeleton.)

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use super::QuotaHeaders;

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

/// The quotas `headers` advertise, read with `names` (`now`: the wall clock, for epoch and
/// RFC 3339 resets); `None` when they advertise none. Malformed fields are ignored.
pub(crate) fn read(
    headers: &HeaderMap,
    names: &QuotaHeaders,
    now: SystemTime,
) -> Option<Vec<Quota>> {
    let _ = (headers, names, now);
    None
}
