//! The caller's deadline, inherited by every call made inside a [`scope`]: a tokio
//! task-local holding the date the scope ends.
//!
//! A task-local, not a parameter: a handler's own code (and the libraries it calls) need not
//! pass a `Duration` through every function for the calls at the bottom to see it. The cost
//! outside any scope is one `LocalKey::try_with` at a call's start (a thread-local read, no
//! allocation, no clock read).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

tokio::task_local! {
    // When the innermost scope the task is in ends (already the earliest of the nested ones).
    static ENDS: Instant;
}

/// When the current task's scope ends, if it is in one: what every call made now inherits.
#[inline]
pub(crate) fn end() -> Option<Instant> {
    ENDS.try_with(|end| *end).ok()
}

/// Runs `future` with a deadline `limit` from now, which every call of this crate made inside
/// it inherits: its own deadline is capped at the scope's end (the earlier of the two wins).
///
/// The limit counts from now, when `scope` is called, not from the future's first poll: it is
/// the caller's deadline, already running. Inside another scope, the earlier end wins: an
/// inner scope can only shorten what the outer one allows. A `limit` too large to add to now
/// sets no deadline of its own (an outer scope still applies).
///
/// Every path honours it: [`Client`](crate::Client), the
/// [middleware](crate::middleware::ResilientMiddleware), [`ResilientLayer`](crate::ResilientLayer),
/// and the [`Retry`](crate::retry::Retry) and
/// [`TotalDeadline`](crate::timeout::TotalDeadline) layers. A call whose inherited deadline
/// has passed fails at once, not sent, with [`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded)
/// and [`GiveUp::Deadline`](crate::GiveUp::Deadline); a call that runs out of the inherited
/// time says so ([`Error::deadline_inherited`](crate::Error::deadline_inherited), and its
/// message: "the caller's deadline (inherited), 800ms"). An attempt cut short by the caller's
/// deadline is the caller's doing, which the circuit breaker does not count against the
/// endpoint.
///
/// A call inherits the scope it is first polled in (where its clock starts), so a call made
/// inside a scope and awaited outside it inherits nothing.
///
/// **A task-local does not cross [`tokio::spawn`]**: a task spawned inside a scope starts
/// outside it. Pass what is left on with [`remaining`]:
/// `tokio::spawn(deadline::scope(left, work))`.
///
/// Time is tokio's ([`tokio::time::Instant`]), so a test with paused time controls it.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::testkit::{FaultServer, Reply};
/// use resilient_http::{Client, ErrorKind, deadline};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/slow", [Reply::hang()]);
/// let client = Client::builder().deadline(Duration::from_secs(30)).build()?;
///
/// // A handler whose own caller will wait 200 ms: the call ends then, not after 30 s.
/// let err = deadline::scope(Duration::from_millis(200), async {
///     client.get(server.url("/slow")).send().await
/// })
/// .await
/// .err()
/// .ok_or("a hang runs out of the caller's time")?;
/// assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
/// assert!(err.deadline_inherited());
/// // "GET http://127.0.0.1:…/slow failed after 1 attempt in 200.0ms: total deadline exceeded:
/// // the caller's deadline (inherited), 199.9ms (transient)"
/// assert!(err.to_string().contains("the caller's deadline (inherited)"));
/// # Ok(())
/// # }
/// ```
pub fn scope<F: Future>(limit: Duration, future: F) -> ScopeFuture<F> {
    ScopeFuture::ending(Instant::now().checked_add(limit), future)
}

/// [`scope`], ending at `deadline` instead of after a limit.
pub fn scope_until<F: Future>(deadline: Instant, future: F) -> ScopeFuture<F> {
    ScopeFuture::ending(Some(deadline), future)
}

/// What is left of the current task's scope (see [`scope`]), zero once it has passed; `None`
/// outside any scope. For passing the caller's deadline on to a task of its own, which a
/// task-local does not reach:
///
/// ```
/// use std::time::Duration;
/// use resilient_http::deadline;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// deadline::scope(Duration::from_secs(2), async {
///     let left = deadline::remaining();
///     let task = async { /* calls made here inherit what was left */ };
///     let handle = match left {
///         Some(left) => tokio::spawn(deadline::scope(left, task)),
///         None => tokio::spawn(async move { task.await }),
///     };
///     let _ = handle.await;
/// })
/// .await;
/// assert_eq!(deadline::remaining(), None);
/// # }
/// ```
pub fn remaining() -> Option<Duration> {
    end().map(|end| end.saturating_duration_since(Instant::now()))
}

pin_project! {
    /// A future run inside a deadline [`scope`]; also the future of
    /// [`IncomingDeadline`](super::IncomingDeadline).
    #[must_use = "futures do nothing unless polled"]
    pub struct ScopeFuture<F> {
        #[pin]
        future: F,
        // `None`: no deadline of its own (too far to reach, or none asked), so the task's
        // current scope, if any, stays as it is.
        ends: Option<Instant>,
    }
}

impl<F> ScopeFuture<F> {
    /// A scope ending at `ends`; with `None`, one that sets no deadline of its own:
    /// `future` runs as it would without it.
    pub(crate) fn ending(ends: Option<Instant>, future: F) -> Self {
        ScopeFuture { future, ends }
    }
}

impl<F: Future> Future for ScopeFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(ends) = *this.ends else {
            return this.future.poll(cx);
        };
        // Asked at each poll, not when the scope was made: a scope made outside another and
        // then run inside it still only shortens it.
        let ends = end().map_or(ends, |outer| outer.min(ends));
        ENDS.sync_scope(ends, || this.future.poll(cx))
    }
}

impl<F> std::fmt::Debug for ScopeFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeFuture")
            .field("ends", &self.ends)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn outside_any_scope_nothing_is_inherited() {
        assert_eq!(end(), None);
        assert_eq!(remaining(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_counts_down_from_when_it_was_made() {
        let scoped = scope(800 * MS, async {
            let first = remaining();
            tokio::time::sleep(300 * MS).await;
            (first, remaining())
        });
        // Made now, run later: the wait before the first poll is the caller's time too.
        tokio::time::sleep(100 * MS).await;
        assert_eq!(scoped.await, (Some(700 * MS), Some(400 * MS)));
        assert_eq!(remaining(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_inner_scope_only_shortens() {
        let left = scope(500 * MS, async {
            let longer = scope(900 * MS, async { remaining() }).await;
            let shorter = scope(200 * MS, async { remaining() }).await;
            (longer, shorter, remaining())
        })
        .await;
        assert_eq!(left, (Some(500 * MS), Some(200 * MS), Some(500 * MS)));
        // Made outside the outer scope, run inside it: still the earlier end.
        let made_outside = scope(900 * MS, async { remaining() });
        let left = scope(500 * MS, made_outside).await;
        assert_eq!(left, Some(500 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_scope_has_nothing_left_and_a_huge_one_sets_nothing() {
        let past = scope_until(Instant::now(), async {
            tokio::time::sleep(MS).await;
            remaining()
        });
        assert_eq!(past.await, Some(Duration::ZERO));
        assert_eq!(scope(Duration::MAX, async { remaining() }).await, None);
        let inside = scope(400 * MS, scope(Duration::MAX, async { remaining() }));
        assert_eq!(inside.await, Some(400 * MS));
    }
}
