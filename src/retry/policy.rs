use std::fmt;
#[cfg(feature = "backoff")]
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::backoff::{Backoff, Jitter};
use crate::bounds;
use crate::error::Error;
use crate::hedge::HedgeConfig;
use crate::policy::{EndpointPolicy, Named};

/// The header that makes a non-idempotent request safe to send twice (IETF
/// `draft-ietf-httpapi-idempotency-key-header`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// When and how often to retry; see the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use resilient_http::retry::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(4)
///     .backoff_base(Duration::from_millis(50))
///     .jitter(Jitter::Equal)
///     .retry_after_cap(Duration::from_secs(5))
///     .build()?;
/// # let _ = policy;
/// # Ok::<(), resilient_http::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(super) schedule: Schedule,
    pub(crate) retry_after_cap: Duration,
    pub(crate) retry_non_idempotent: bool,
    pub(crate) idempotency_key: bool,
    pub(crate) seed: Option<u64>,
    /// When to send hedges; `None` (the default): never.
    pub(crate) hedge: Option<HedgeConfig>,
    /// The most bytes of a streaming request body kept for a retry (0: none).
    pub(crate) replay_buffer: u64,
    /// The endpoint policy this belongs to, for errors.
    pub(crate) policy_name: Option<std::sync::Arc<str>>,
    /// The settings the builder was told (see [`RetryPolicyBuilder`]'s setters), the ones
    /// `ClientBuilder::retry` writes.
    pub(crate) named: Named,
}

/// The bits of [`Named`] for a retry policy's settings.
mod bit {
    pub(super) const MAX_ATTEMPTS: u16 = 1;
    pub(super) const BACKOFF_BASE: u16 = 1 << 1;
    pub(super) const BACKOFF_MAX: u16 = 1 << 2;
    pub(super) const BACKOFF_MULTIPLIER: u16 = 1 << 3;
    pub(super) const JITTER: u16 = 1 << 4;
    pub(super) const RETRY_AFTER_CAP: u16 = 1 << 5;
    pub(super) const RETRY_NON_IDEMPOTENT: u16 = 1 << 6;
    pub(super) const IDEMPOTENCY_KEY: u16 = 1 << 7;
    pub(super) const HEDGE: u16 = 1 << 8;
    pub(super) const REPLAY_BUFFER: u16 = 1 << 9;
    pub(super) const SEED: u16 = 1 << 10;
    /// A `backoff` crate schedule.
    pub(super) const SCHEDULE: u16 = 1 << 11;
}

impl Default for RetryPolicy {
    /// 3 attempts in all; 100 ms × 2 up to 20 s with full jitter; `Retry-After` obeyed up to
    /// 20 s; POST and PATCH retried only when never sent or carrying an `Idempotency-Key`.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            schedule: Schedule::Exponential(Backoff::default()),
            retry_after_cap: Duration::from_secs(20),
            retry_non_idempotent: false,
            idempotency_key: false,
            seed: None,
            hedge: None,
            replay_buffer: DEFAULT_REPLAY_BUFFER,
            policy_name: None,
            named: Named::default(),
        }
    }
}

/// The most bytes of a streaming request body kept for a retry unless a policy says
/// otherwise: 64 KiB, as Linkerd's proxy keeps.
pub(crate) const DEFAULT_REPLAY_BUFFER: u64 = 64 * 1024;

impl RetryPolicy {
    /// Starts from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicy::default().to_builder()
    }

    /// One attempt, no retries. A stream the server never processed is still sent again,
    /// spending no attempt (see [`MAX_RESENDS`](super::MAX_RESENDS)). Given to
    /// [`ClientBuilder::retry`](crate::ClientBuilder::retry), it sets `max_attempts` (to 1)
    /// and nothing else.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            named: Named::only(bit::MAX_ATTEMPTS),
            ..RetryPolicy::default()
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// A builder that starts from this policy's settings, and from its record of which of
    /// them were named (see [`RetryPolicyBuilder`]).
    pub fn to_builder(&self) -> RetryPolicyBuilder {
        let mut builder = RetryPolicyBuilder {
            policy: self.clone(),
            #[cfg(feature = "backoff")]
            external: None,
            base: Duration::from_millis(100),
            multiplier: 2.0,
            cap: Duration::from_secs(20),
            jitter: Jitter::Full,
        };
        match &self.schedule {
            Schedule::Exponential(backoff) => {
                builder.base = backoff.base();
                builder.multiplier = backoff.multiplier();
                builder.cap = backoff.cap();
                builder.jitter = backoff.jitter();
            }
            #[cfg(feature = "backoff")]
            Schedule::External(_) => builder.external = Some(self.schedule.clone()),
        }
        builder
    }

    /// Names the endpoint policy this belongs to; errors carry the name.
    pub(crate) fn named(mut self, name: std::sync::Arc<str>) -> Self {
        self.policy_name = Some(name);
        self
    }

    /// Writes the settings `later` names (see [`RetryPolicyBuilder`]) over what earlier calls
    /// set: those an [`EndpointPolicy`] can say into `policy` (where every way of setting them
    /// meets, the later call winning), a seed and a `backoff` crate schedule into `self`, the
    /// client builder's policy, which has them for every rule.
    pub(crate) fn write_named(&mut self, later: &RetryPolicy, policy: &mut EndpointPolicy) {
        let named = later.named;
        let mut set = EndpointPolicy::new();
        set.max_attempts = named.has(bit::MAX_ATTEMPTS).then_some(later.max_attempts);
        set.retry_after_cap = named
            .has(bit::RETRY_AFTER_CAP)
            .then_some(later.retry_after_cap);
        set.retry_non_idempotent = named
            .has(bit::RETRY_NON_IDEMPOTENT)
            .then_some(later.retry_non_idempotent);
        set.idempotency_key = named
            .has(bit::IDEMPOTENCY_KEY)
            .then_some(later.idempotency_key);
        set.hedge = later.hedge.filter(|_| named.has(bit::HEDGE));
        set.replay_buffer = named.has(bit::REPLAY_BUFFER).then_some(later.replay_buffer);
        match &later.schedule {
            Schedule::Exponential(backoff) => {
                set.backoff_base = named.has(bit::BACKOFF_BASE).then_some(backoff.base());
                set.backoff_max = named.has(bit::BACKOFF_MAX).then_some(backoff.cap());
                set.backoff_multiplier = named
                    .has(bit::BACKOFF_MULTIPLIER)
                    .then_some(backoff.multiplier());
                set.jitter = named.has(bit::JITTER).then_some(backoff.jitter());
            }
            #[cfg(feature = "backoff")]
            Schedule::External(_) => {}
        }
        *policy = set.inherit(policy);
        if named.has(bit::SEED) {
            self.seed = later.seed;
        }
        if named.has(bit::SCHEDULE) {
            // The schedule replaces every backoff setting made before it; a later one
            // replaces it in turn (`RetryPolicyBuilder::exponential`).
            self.schedule = later.schedule.clone();
            policy.backoff_base = None;
            policy.backoff_max = None;
            policy.backoff_multiplier = None;
            policy.jitter = None;
        }
    }

    pub(crate) fn set_max_attempts(&mut self, attempts: u32) {
        self.max_attempts = attempts;
    }

    /// The longest `Retry-After` obeyed.
    pub(crate) fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }

    /// The most bytes of a streaming request body kept for a retry (0: none).
    pub(crate) fn replay_buffer(&self) -> u64 {
        self.replay_buffer
    }

    /// Whether calls may send hedges.
    pub(crate) fn hedges(&self) -> bool {
        self.hedge.is_some_and(|h| h.max > 0)
    }

    pub(crate) fn name(&self) -> Option<&std::sync::Arc<str>> {
        self.policy_name.as_ref()
    }

    /// Whether a request with this method and headers may be sent again after it *may* have
    /// been processed. (Any request may be sent again when it never reached the server.)
    pub fn may_repeat(&self, method: &Method, headers: &http::HeaderMap) -> bool {
        is_idempotent(method) || self.retry_non_idempotent || headers.contains_key(IDEMPOTENCY_KEY)
    }
}

/// GET, HEAD, OPTIONS, TRACE, PUT and DELETE (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Configures a [`RetryPolicy`]; [`build`](Self::build) checks the settings.
///
/// The policy remembers which setters were called: given to
/// [`ClientBuilder::retry`](crate::ClientBuilder::retry), it changes only those settings,
/// and the others keep what earlier calls or a policy file set. A setting given its default
/// value explicitly is named too.
#[derive(Debug)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
    #[cfg(feature = "backoff")]
    external: Option<Schedule>,
    base: Duration,
    multiplier: f64,
    cap: Duration,
    jitter: Jitter,
}

impl RetryPolicyBuilder {
    /// Attempts in all, the first included (default 3; 1 means no retries; 1 to 100).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy.named.add(bit::MAX_ATTEMPTS);
        self.policy.max_attempts = attempts;
        self
    }

    /// The first retry's delay before jitter (default 100 ms; at most 1 hour, and not above
    /// the cap).
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.policy.named.add(bit::BACKOFF_BASE);
        self.base = base;
        self
    }

    /// Growth per retry (default 2; 1 to 100).
    pub fn backoff_multiplier(mut self, multiplier: f64) -> Self {
        self.policy.named.add(bit::BACKOFF_MULTIPLIER);
        self.multiplier = multiplier;
        self
    }

    /// The largest delay (default 20 s; at most 1 hour).
    pub fn backoff_max(mut self, cap: Duration) -> Self {
        self.policy.named.add(bit::BACKOFF_MAX);
        self.cap = cap;
        self
    }

    /// The jitter mode (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy.named.add(bit::JITTER);
        self.jitter = jitter;
        self
    }

    /// The longest `Retry-After` obeyed (default 20 s; at most 1 day). A server asking for
    /// more gets no retry: the error comes back at once, and `Error::retry_after` tells the
    /// caller what was asked.
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.policy.named.add(bit::RETRY_AFTER_CAP);
        self.policy.retry_after_cap = cap;
        self
    }

    /// Retries POST, PATCH and other non-idempotent requests like GET, even when they may have
    /// been processed (default off). Only for endpoints you know to be safe.
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.policy.named.add(bit::RETRY_NON_IDEMPOTENT);
        self.policy.retry_non_idempotent = yes;
        self
    }

    /// Adds a random `Idempotency-Key` to non-idempotent requests that have none, which makes
    /// them retryable (default off; the server must honour the header).
    pub fn idempotency_key(mut self, yes: bool) -> Self {
        self.policy.named.add(bit::IDEMPOTENCY_KEY);
        self.policy.idempotency_key = yes;
        self
    }

    /// Sends hedges of slow attempts (default: none): see [`crate::hedge`]. `after` above
    /// zero, at most an hour; `max` 0 (none) to 3.
    pub fn hedge(mut self, config: HedgeConfig) -> Self {
        self.policy.named.add(bit::HEDGE);
        self.policy.hedge = Some(config);
        self
    }

    /// Keeps up to `bytes` of a streaming request body as it is sent, so that a small stream
    /// can be retried too (default 64 KiB; 0 keeps none; at most 16 MiB). A longer stream
    /// gets one attempt, and a transient failure of it is
    /// [`BodyNotReplayable`](crate::ErrorKind::BodyNotReplayable).
    pub fn replay_buffer(mut self, bytes: u64) -> Self {
        self.policy.named.add(bit::REPLAY_BUFFER);
        self.policy.replay_buffer = bytes;
        self
    }

    /// Seeds the jitter, making every call's delays the same sequence. For tests: in production
    /// identical sequences defeat the point of jitter.
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.named.add(bit::SEED);
        self.policy.seed = Some(seed);
        self
    }

    /// Takes the delays from a [`backoff`](https://docs.rs/backoff) schedule instead (feature
    /// `backoff`). Each call starts from a fresh clone, `reset()` first; `None` from
    /// `next_backoff` stops the retries. The backoff settings of this builder are then unused.
    #[cfg(feature = "backoff")]
    #[cfg_attr(docsrs, doc(cfg(feature = "backoff")))]
    pub fn backoff_schedule<B>(mut self, schedule: B) -> Self
    where
        B: backoff::backoff::Backoff + Clone + Send + Sync + 'static,
    {
        self.policy.named.add(bit::SCHEDULE);
        self.external = Some(Schedule::External(Arc::new(move || {
            let mut fresh = schedule.clone();
            fresh.reset();
            Box::new(fresh)
        })));
        self
    }

    /// Drops a [`backoff_schedule`](Self::backoff_schedule) (one taken over by `to_builder`
    /// too), so that this builder's backoff settings apply: how a policy that sets one of
    /// them replaces the schedule of the client's `RetryPolicy` it inherits.
    #[cfg_attr(not(feature = "backoff"), allow(unused_mut))]
    pub(crate) fn exponential(mut self) -> Self {
        #[cfg(feature = "backoff")]
        {
            self.external = None;
        }
        self.policy.named.remove(bit::SCHEDULE);
        self
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn build(self) -> Result<RetryPolicy, Error> {
        let mut policy = self.policy;
        bounds::ATTEMPTS
            .check(policy.max_attempts)
            .map_err(|e| Error::invalid_config(format!("max_attempts {e} (1 means no retries)")))?;
        bounds::BACKOFF_DELAY
            .check(self.base)
            .map_err(Error::refused("backoff_base"))?;
        bounds::BACKOFF_DELAY
            .check(self.cap)
            .map_err(Error::refused("backoff_max"))?;
        bounds::BACKOFF_MULTIPLIER
            .check(self.multiplier)
            .map_err(Error::refused("backoff_multiplier"))?;
        bounds::RETRY_AFTER_CAP
            .check(policy.retry_after_cap)
            .map_err(Error::refused("retry_after_cap"))?;
        bounds::REPLAY_BUFFER
            .check(policy.replay_buffer)
            .map_err(Error::refused("replay_buffer"))?;
        if let Some(hedge) = policy.hedge {
            bounds::HEDGE
                .check(hedge)
                .map_err(|e| Error::invalid_config(format!("hedge {e}")))?;
        }
        let backoff = Backoff::new(self.base, self.multiplier, self.cap, self.jitter)?;
        policy.schedule = Schedule::Exponential(backoff);
        #[cfg(feature = "backoff")]
        if let Some(external) = self.external {
            policy.schedule = external;
        }
        Ok(policy)
    }
}

/// Makes a fresh per-call `backoff` crate schedule.
#[cfg(feature = "backoff")]
pub(super) type MakeExternal =
    Arc<dyn Fn() -> Box<dyn backoff::backoff::Backoff + Send + Sync> + Send + Sync>;

/// Where the delays come from.
#[derive(Clone)]
pub(super) enum Schedule {
    Exponential(Backoff),
    #[cfg(feature = "backoff")]
    External(MakeExternal),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Exponential(backoff) => backoff.fmt(f),
            #[cfg(feature = "backoff")]
            Schedule::External(_) => f.write_str("backoff crate schedule"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each constructor names, and that `to_builder` keeps it.
    #[test]
    fn a_policy_names_the_setters_called() -> Result<(), Error> {
        assert_eq!(RetryPolicy::default().named, Named::default());
        assert_eq!(RetryPolicy::builder().build()?.named, Named::default());
        assert_eq!(RetryPolicy::never().named, Named::only(bit::MAX_ATTEMPTS));
        let policy = RetryPolicy::builder().max_attempts(2).build()?;
        let again = policy.to_builder().jitter(Jitter::None).build()?;
        assert!(again.named.has(bit::MAX_ATTEMPTS) && again.named.has(bit::JITTER));
        assert!(!again.named.has(bit::BACKOFF_BASE));

        // Only the named settings reach the default policy; the others keep theirs.
        let mut default = EndpointPolicy::new()
            .max_attempts(5)
            .backoff_base(Duration::ZERO);
        let mut client = RetryPolicy::default();
        client.write_named(&again, &mut default);
        assert_eq!(default.max_attempts, Some(2));
        assert_eq!(default.jitter, Some(Jitter::None));
        assert_eq!(default.backoff_base, Some(Duration::ZERO));
        assert_eq!(default.retry_after_cap, None);
        Ok(())
    }

    #[test]
    fn zero_attempts_are_rejected_by_name() {
        let err = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidConfig);
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }

    #[test]
    fn only_safe_methods_repeat_by_default() {
        let policy = RetryPolicy::default();
        let none = http::HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(policy.may_repeat(&method, &none), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!policy.may_repeat(&method, &none), "{method}");
        }
        let mut keyed = http::HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, http::HeaderValue::from_static("k-1"));
        assert!(policy.may_repeat(&Method::POST, &keyed));
        let opted_in = RetryPolicy::builder()
            .retry_non_idempotent(true)
            .build()
            .unwrap();
        assert!(opted_in.may_repeat(&Method::PATCH, &none));
    }
}
