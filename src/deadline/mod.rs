//! Deadlines that cross process boundaries: telling a server how long the caller will wait
//! (outgoing), and inheriting what is left of an incoming request's deadline (incoming).
//! (Skeleton: the docs come with the code.)

// Skeleton: used by the outgoing and the incoming halves.
#[allow(dead_code)]
pub(crate) mod wire;
