//! Circuit breaking per endpoint: stop calling a dependency that is down, let it recover.
//!
//! ## States
//!
//! - **Closed**: calls go through; their outcomes enter a sliding [`Window`]. When the window
//!   holds at least `min_calls` and the share of failures reaches `failure_rate` (or the share
//!   of slow calls reaches `slow_call_rate`, if slow calls are counted), the breaker opens.
//!   Failures are the classifier's [transient](crate::Class::Transient) outcomes (5xx,
//!   timeouts, connect errors). Permanent ones (404, 400) are the caller's problem and count as
//!   successes; an attempt cut short by the caller's own total deadline counts as neither, and
//!   so does a `429 Too Many Requests` (a rate limiter's "slow down", not an endpoint that is
//!   down; the call still backs off and holds) unless
//!   [`count_429`](BreakerConfigBuilder::count_429) is set.
//! - **Open**: calls fail at once with [`ErrorKind::CircuitOpen`](crate::ErrorKind::CircuitOpen),
//!   naming the endpoint and the time until the next probe ([`Error::retry_after`]); nothing
//!   touches the network. The first opening lasts `open_for` (5 s); each re-opening from
//!   half-open doubles it, up to 60 s; closing starts over.
//! - **Half-open**: `half_open_probes` calls (1) go through as probes; the rest are rejected,
//!   with no [`Error::retry_after`] (`None`): when the probe ends is not known, only that its
//!   attempt timeout bounds it. All probes succeed: closed, with an empty window. One fails:
//!   open again, for longer.
//!
//! **A cancelled probe counts as nothing.** If its future is dropped (the caller gave up, an
//! outer timeout fired), its place is given back and the next call becomes the probe. Counting
//! it as a failure would re-open a circuit because of the *caller*; counting it as a success
//! would close it without evidence; keeping the place taken is how breakers elsewhere got stuck
//! half-open forever.
//!
//! ## Where it sits
//!
//! Inside the retry layer, so every attempt asks the breaker: a retry never hammers an open
//! circuit, and an open circuit ends the retry loop at once, with the history so far.
//!
//! ## One breaker per endpoint
//!
//! The key is scheme, host and port ([`endpoint_key`]): host A being down does not block host
//! B. A client's policies can scope a breaker to the rule instead (one for everything the
//! rule matches, under the rule's name) or to a name several rules share (`name:<name>`):
//! see [`Scope`](crate::policy::Scope). The [`BreakerRegistry`] is bounded (`max_breakers`, 1024): beyond it, the idlest closed
//! breakers are dropped, never one that is not closed (the map grows past its bound instead,
//! with a WARN once).
//!
//! ## Cost
//!
//! In the closed state, admitting a call reads one atomic word and recording its outcome
//! writes into a stripe of the window that belongs to the calling thread, so threads do not
//! contend; one shared counter is bumped per bucket of `n / 10` calls. Time is read only when
//! needed (time windows, slow calls, the open state). The window holds the endpoint's most
//! recent calls whichever threads made them, within a bound given in [`Window::Calls`].
//!
//! [`Error::retry_after`]: crate::Error::retry_after

mod config;
mod future;
mod layer;
mod registry;
mod service;
pub(crate) mod state;
mod window;

pub use crate::circuit::State;
pub use crate::keyed::endpoint_key;
pub use config::{BreakerConfig, BreakerConfigBuilder, StateChange};
pub use future::ResponseFuture;
pub(crate) use future::error_verdict;
pub use layer::CircuitBreakerLayer;
pub(crate) use registry::BreakerMap;
pub use registry::{BreakerHandle, BreakerRegistry, CallPermit};
pub use service::CircuitBreaker;
pub(crate) use state::Breaker;
pub use window::{Window, WindowCounts};
