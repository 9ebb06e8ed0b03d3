//! Hedged requests: when an attempt has not answered after a while, send another and take
//! whichever answers first.
//!
//! A slow answer is often one slow server, one lost packet or one long garbage-collection
//! pause, not a slow service: a second copy of the request, sent a little later, usually
//! answers first. Hedging trades a few extra requests for a shorter tail; "The Tail at Scale"
//! (Dean and Barroso) and Envoy's and gRPC's hedging policies are the model.
//!
//! The rules, the same on every path (one driver: the client, `ResilientMiddleware`,
//! [`ResilientLayer`](crate::ResilientLayer) and the tower [`Retry`](crate::retry::Retry) layer):
//!
//! - Only requests that may be sent twice are hedged: idempotent methods, or a request
//!   carrying an `Idempotency-Key` (yours, or the one the policy's `idempotency_key` adds).
//!   A POST or PATCH without one never is, whatever `retry_non_idempotent` says: a hedge is
//!   sent while the first copy may still be processed, by design.
//! - [`HedgeConfig::after`] after the newest attempt was sent, if the call has no answer
//!   yet, one more is sent, up to [`HedgeConfig::max`] per call, and never past the call's
//!   deadline.
//! - A hedge is extra load, so it must get past everything a retry must, and never waits:
//!   the retry budget (it withdraws as a retry does), a `Retry-After` hold, the rate limit
//!   (it takes a slot) and the breaker (which admits and counts it like any attempt). When
//!   one of them says no, no hedge is sent.
//! - The first answer that is not a transient failure wins: a success, or a permanent
//!   failure (a second copy would get the same `404`). The other attempts are cancelled:
//!   their futures and connections are dropped, the breaker hears nothing of them, and the
//!   history records them as [`Cancelled`](crate::AttemptOutcome::Cancelled).
//! - A transient failure of one attempt while others are in flight is recorded, and the
//!   call waits for the others; when the last one fails, the retry decides as it would for a
//!   single attempt.
//! - Every attempt, hedge or not, is in the history ([`Attempt::hedge`](crate::Attempt::hedge)
//!   says which were hedges) and has its own `attempt` span (field `hedge`; `error.type`
//!   `cancelled` for a loser). The attempt metrics count the attempts that ended with an
//!   answer or an error, and [`HEDGES`](crate::telemetry::HEDGES) the hedges sent, won and
//!   skipped. Hedges do not use up the policy's attempts.
//! - A hedge belongs to its call: it takes no second place in a bulkhead.
//! - A call answered before its first hedge is due pays at most one timer for it, and
//!   nothing else: the timer is made the first time an attempt that may be hedged is left
//!   waiting for its answer (none for an answer ready at once), set from that attempt's send
//!   time, and kept until the call is dropped: a retry, and each hedge, reset the same timer.
//!   The race of attempts is built only when the first hedge comes due. An attempt whose
//!   timeout (or what is left of the call's deadline) ends it no later than its hedge would
//!   be due has no timer at all: the hedge is skipped, as the timeout ends the attempt at
//!   that same instant (to within the few µs between the attempt's start and reqwest's
//!   timer), and a retry, not a hedge, follows a timed-out attempt (the client's own
//!   attempts; through attempt layers or a middleware chain the timer is kept).
//! - The race is over the response's head. With `send_buffered` and the other readers, a
//!   head that is a transient failure still waits for the others; with a
//!   [`BodyClassifier`](crate::classify::BodyClassifier), whose verdict needs the body, the
//!   first head ends the race.
//! - A policy with a [hook](crate::hook) sends no hedges: the hook prepares each attempt's
//!   request in turn, and a hedge would go out without it.
//! - A [`RetryLayer`](crate::retry::RetryLayer) of your own hedges too
//!   ([`RetryPolicyBuilder::hedge`](crate::retry::RetryPolicyBuilder::hedge)), but keeps no
//!   per-endpoint state: no budget, holds or rate limit to ask (the client and the
//!   reqwest-middleware adapter have them).
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::hedge::HedgeConfig;
//! use resilient_http::policy::{EndpointPolicy, Matcher};
//!
//! let client = Client::builder()
//!     .endpoint(
//!         "search",
//!         Matcher::new().host("search.internal")?,
//!         EndpointPolicy::new().hedge(HedgeConfig::new(Duration::from_millis(50), 1)),
//!     )
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```
//!
//! In a policy file: `[endpoint.hedge]` with `after = "50ms"` and `max = 1`.

use std::time::Duration;

use crate::bounds;

/// When to send a hedge, and how many: see the [module docs](self).
///
/// Ranges: `after` above zero, at most an hour; `max` 0 (no hedging: turns off a hedge an
/// endpoint rule would inherit) to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeConfig {
    /// How long the newest attempt may go unanswered before the next hedge is sent.
    pub after: Duration,
    /// Hedges per call, at most.
    pub max: u32,
}

impl HedgeConfig {
    /// Up to `max` hedges, each sent when the attempt before it has not answered after
    /// `after`.
    pub fn new(after: Duration, max: u32) -> Self {
        HedgeConfig { after, max }
    }
}

/// Each part within its range in `bounds.rs`.
impl bounds::Parts for HedgeConfig {
    /// `self` if `after` and `max` are in range; else why not, naming the first one that
    /// is not.
    fn check_parts(self) -> Result<Self, String> {
        bounds::HEDGE_AFTER
            .check(self.after)
            .map_err(|e| format!("after {e}"))?;
        bounds::HEDGES
            .check(self.max)
            .map_err(|e| format!("max {e}"))?;
        Ok(self)
    }
}
