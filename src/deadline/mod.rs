//! Deadlines that cross process boundaries: telling a server how long the caller will wait
//! (outgoing), and inheriting what is left of an incoming request's deadline (incoming).
//!
//! ## Incoming: the caller's deadline, inherited
//!
//! A caller that will give up in 800 ms should not have its server work for 10 s, nor the
//! server's own outbound calls wait longer than that. [`scope`] runs a future with a
//! deadline that every call of this crate made inside it inherits: each call's own deadline
//! (the policy's, a request's `.deadline(d)` or `.timeout(d)`) is capped at the scope's end,
//! on every path (the [`Client`](crate::Client), the middleware, the tower layers). Nested
//! scopes only shorten. A call whose inherited deadline has passed fails at once, not sent;
//! one that runs out of it fails with [`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded),
//! its message naming "the caller's deadline (inherited)", and
//! [`Error::deadline_inherited`](crate::Error::deadline_inherited) true.
//!
//! On a server, [`IncomingDeadlineLayer`] reads the deadline a request carries (`grpc-timeout`,
//! or a header of milliseconds) and runs its handler inside such a scope, so that a service
//! in the middle of a chain passes its caller's deadline on without code.
//!
//! The scope is a tokio task-local: it does not cross [`tokio::spawn`]. Pass it on with
//! [`remaining`]: `tokio::spawn(deadline::scope(left, work))`.

mod incoming;
mod scope;
// Skeleton: used by the outgoing and the incoming halves.
#[allow(dead_code)]
pub(crate) mod wire;

pub use incoming::{IncomingDeadline, IncomingDeadlineLayer};
pub(crate) use scope::end;
pub use scope::{Scope, remaining, scope, scope_until};
