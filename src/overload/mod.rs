//! May this call go out now, per endpoint key: `Retry-After` holds, rate limit, bulkhead.
//!
//! Each piece is a small self-contained primitive, lock-free on the success path and
//! cancellation-safe (a dropped call leaves no trace: it gives back every permit, and a denied
//! or abandoned rate-limit request takes no slot). Time comes from tokio, so tests pause it.
//!
//! - `rate.rs`: the client-side rate limit (GCRA, one atomic word).
//! - `bulkhead.rs`: at most `max_in_flight` calls at once, with a bounded queue.

pub(crate) mod bulkhead;
mod guards;
pub(crate) mod hold;
pub(crate) mod rate;

pub use bulkhead::BulkheadConfig;
pub(crate) use guards::{Admission, Entry, GuardRegistry, Guards, GuardsConfig};
pub use rate::RateLimitConfig;
