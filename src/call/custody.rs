//! The request in custody: the one parked for the next attempt, the copy a later attempt
//! sends, and a streaming body kept as it went out (see [`super::replay`]).
//!
//! The hand-off is in the types: a request is parked by [`RetryState::begin`] or
//! [`RetryState::next_request`], which give a [`Parked`] token; only that token takes it out
//! ([`RetryState::take_request`]), giving an [`Out`] token that the end of the attempt
//! consumes; the guards pass the [`Parked`] token on ([`super::gate`]). The
//! request itself stays here meanwhile, in one place, while the endpoint's guards decide: it
//! is large, and moving it from step to step costs more than the guards themselves.
//!
//! [`RetryState::begin`]: super::state::RetryState::begin
//! [`RetryState::next_request`]: super::state::RetryState::next_request
//! [`RetryState::take_request`]: super::state::RetryState::take_request

use http::{HeaderName, HeaderValue};

use crate::classify::{Class, Delivery};
use crate::error::{Error, ErrorKind};
use crate::retry::replay::Replay;
use crate::retry::{IDEMPOTENCY_KEY, RetryPolicy, is_idempotent};

/// A request is parked for the next attempt: the only way to take it out.
#[must_use = "a parked request goes out with `take_request`, or the call ends"]
pub(crate) struct Parked(());

/// An attempt is out: its request left custody (or never will: a hedge's copy, a refusal
/// at the guards). The end of the attempt consumes it ([`RetryState::finish_attempt`] and the
/// like), once.
///
/// [`RetryState::finish_attempt`]: super::state::RetryState::finish_attempt
#[must_use = "an attempt that is out ends with `finish_attempt` (or the like)"]
pub(crate) struct Out(());

/// The request of a call, its copy, and a streaming body kept for replay.
#[derive(Default)]
pub(crate) struct Custody {
    // The request of the attempt about to go out, from when it is parked until it is taken
    // out (`take`).
    parked: Option<reqwest::Request>,
    // The copy the next attempt sends (`None` when the body cannot be copied, or no retry is
    // possible). Not boxed, since a large allocation per call costs more than moving it.
    spare: Option<reqwest::Request>,
    // A streaming body kept as the first attempt sends it: `spare` has no body until a retry
    // takes this one's (see `super::replay`).
    replay: Option<Replay>,
}

impl Custody {
    /// Parks the first attempt's `request`; its token comes with the call's start.
    #[inline]
    pub(crate) fn park_first(&mut self, request: reqwest::Request) {
        self.parked = Some(request);
    }

    /// Parks a hedge's or a hook's `request` for the attempt about to go out, which takes
    /// it out (or drops it, turned away).
    pub(crate) fn park(&mut self, request: reqwest::Request) -> Parked {
        self.parked = Some(request);
        Parked(())
    }

    /// The parked request, if one is.
    pub(crate) fn parked(&self) -> Option<&reqwest::Request> {
        self.parked.as_ref()
    }

    /// Drops the parked request: its attempt will not send it (the copy for a later attempt
    /// is apart, in `spare`).
    pub(crate) fn drop_parked(&mut self) {
        self.parked = None;
    }

    /// The parked request, to change before it goes out.
    pub(crate) fn parked_mut(&mut self) -> Option<&mut reqwest::Request> {
        self.parked.as_mut()
    }

    /// The first attempt's request, readied under `policy`: an `Idempotency-Key` if the policy
    /// adds them, then the copy for a later attempt if one may come (`copy`: retries, hedges
    /// or resends), a streaming body kept for replay if `retries` and the policy buffers one.
    /// Returns the parked request and whether the body is being kept (no hedges then: a hedge
    /// goes out while the stream is still being read). `None` when nothing is parked.
    pub(crate) fn ready_first(
        &mut self,
        policy: &RetryPolicy,
        copy: bool,
        retries: bool,
    ) -> Option<(&mut reqwest::Request, bool)> {
        let request = self.parked.as_mut()?;
        if policy.idempotency_key
            && policy.max_attempts > 1
            && !is_idempotent(request.method())
            && !request.headers().contains_key(IDEMPOTENCY_KEY)
        {
            request.headers_mut().insert(IDEMPOTENCY_KEY, random_key());
        }
        let mut kept = false;
        if copy {
            copy_into(&mut self.spare, request);
            // Only a streaming body cannot be copied: it is kept as it is sent, up to the
            // policy's `replay_buffer`, and the copy a retry sends gets the kept body then.
            if self.spare.is_none()
                && retries
                && policy.replay_buffer() > 0
                && let Some(body) = request.body_mut().take()
            {
                copy_into(&mut self.spare, request);
                let (sending, replay) = Replay::keep(body, policy.replay_buffer());
                *request.body_mut() = Some(sending);
                self.replay = Some(replay);
                kept = true;
            }
        }
        Some((request, kept))
    }

    /// Takes the parked request out, into the sender, for the attempt of `_out` (see
    /// [`RetryState::going_out`](super::state::RetryState::going_out)), changed in place
    /// until then. `None` only if nothing is parked (unreachable: the attempt was readied
    /// with its request).
    pub(crate) fn take_sent(&mut self, _out: &Out) -> Option<reqwest::Request> {
        self.parked.take()
    }

    /// Takes the parked request out to send it.
    pub(crate) fn take(&mut self, _parked: Parked) -> Result<(reqwest::Request, Out), Error> {
        match self.parked.take() {
            Some(request) => Ok((request, Out(()))),
            // Unreachable: `Parked` is made only with a request parked.
            None => Err(Error::invalid_config(
                "no request to send: it went out already",
            )),
        }
    }

    /// The next attempt's request, made from the copy (with `header` set on it and on every
    /// later copy, if given); a copy of it kept again if `copy_again`. Fails (permanent,
    /// not sent) when there is no copy or a kept stream did not go out whole.
    pub(crate) fn next(
        &mut self,
        header: Option<(HeaderName, HeaderValue)>,
        copy_again: bool,
    ) -> Result<&mut reqwest::Request, Error> {
        let not_replayable = || {
            Error::new(
                ErrorKind::BodyNotReplayable,
                Class::Permanent,
                Delivery::NotSent,
            )
        };
        // Unreachable without a copy: a retry is only scheduled with one in hand.
        let mut request = self.spare.take().ok_or_else(not_replayable)?;
        if let Some(replay) = self.replay.take() {
            // Checked by the retry's decision: the stream went out whole.
            *request.body_mut() = Some(replay.into_body().ok_or_else(not_replayable)?);
        }
        if let Some((name, value)) = header {
            request.headers_mut().insert(name, value);
        }
        if copy_again {
            copy_into(&mut self.spare, &request);
        }
        Ok(self.parked.insert(request))
    }

    /// A copy for a hedge; `None` without one.
    pub(crate) fn hedge_copy(&self) -> Option<reqwest::Request> {
        copy_request(self.spare.as_ref()?)
    }

    /// Whether a copy is kept for a later attempt.
    pub(crate) fn has_copy(&self) -> bool {
        self.spare.is_some()
    }

    /// Whether the request can be sent again: a copy was kept, and a streaming body kept
    /// as it was sent went out whole within the buffer.
    pub(crate) fn replayable(&self) -> bool {
        self.spare.is_some() && self.replay.as_ref().is_none_or(Replay::whole)
    }
}

/// A parked request's token, made only where a request is parked.
pub(super) fn parked() -> Parked {
    Parked(())
}

/// The token of an attempt that never takes the parked request out: turned away at the
/// guards (`parked` is spent, the request dropped: the next attempt parks a fresh copy); or
/// of one that goes
/// out, and takes it with [`Custody::take_sent`] only when it is sent.
pub(super) fn unsent(_parked: Parked) -> Out {
    Out(())
}

/// A random UUID (version 4) as an `Idempotency-Key`.
pub(crate) fn random_key() -> HeaderValue {
    // The operating system's generator: keys must not be guessable or repeat across processes.
    let mut buffer = uuid::Uuid::encode_buffer();
    let key = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    // Hex digits and dashes are always a valid header value.
    HeaderValue::from_str(key).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"))
}

/// A copy of `request` for a later attempt; `None` when its body is a stream.
///
/// `reqwest::Request::try_clone` writes the timeout into the copy's extensions even when there
/// is none, which allocates a map (three allocations per call). The timeout is the only thing
/// reqwest 0.13 keeps in a request's extensions, so copying it when set copies them all
/// (`the_copy_matches_reqwests_own` checks this against each reqwest release we build with).
pub(crate) fn copy_request(request: &reqwest::Request) -> Option<reqwest::Request> {
    let mut copy = None;
    copy_into(&mut copy, request);
    copy
}

/// [`copy_request`] written straight into `spare` (`None` when the body is a stream): the
/// request is large (264 bytes), and a copy made apart and then moved in costs two more
/// copies of it than the copy itself (issue 28).
#[inline]
fn copy_into(spare: &mut Option<reqwest::Request>, request: &reqwest::Request) {
    if request.body().is_some() {
        // Only reqwest can share a body's bytes without copying them.
        *spare = request.try_clone();
        return;
    }
    let copy = spare.insert(reqwest::Request::new(
        request.method().clone(),
        request.url().clone(),
    ));
    // Most requests carry no headers of their own yet (reqwest adds its defaults when it
    // sends): cloning an empty map and dropping the copy's own costs about 100 instructions.
    if !request.headers().is_empty() {
        *copy.headers_mut() = request.headers().clone();
    }
    *copy.version_mut() = request.version();
    if let Some(timeout) = request.timeout() {
        *copy.timeout_mut() = Some(*timeout);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_look_like_uuid_v4_and_differ() {
        let a = super::random_key();
        let b = super::random_key();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    /// `copy_request` must copy everything reqwest's `try_clone` does: a reqwest release that
    /// keeps more per request would show up here.
    #[test]
    fn the_copy_matches_reqwests_own() {
        let url = "http://u:p@127.0.0.1:8080/a?q=1".parse().unwrap();
        let mut request = reqwest::Request::new(http::Method::PATCH, url);
        request.headers_mut().insert("x-a", "1".parse().unwrap());
        request.headers_mut().append("x-a", "2".parse().unwrap());
        *request.version_mut() = http::Version::HTTP_2;
        for timeout in [None, Some(std::time::Duration::from_millis(1500))] {
            *request.timeout_mut() = timeout;
            let ours = super::copy_request(&request).unwrap();
            let theirs = request.try_clone().unwrap();
            assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
            assert_eq!(ours.timeout(), theirs.timeout());
            assert_eq!(ours.version(), theirs.version());
            assert_eq!(ours.headers(), theirs.headers());
        }
        let mut with_body = request.try_clone().unwrap();
        *with_body.body_mut() = Some(reqwest::Body::from("{}"));
        let copy = super::copy_request(&with_body).unwrap();
        assert_eq!(copy.body().and_then(|b| b.as_bytes()), Some(&b"{}"[..]));
    }
}
