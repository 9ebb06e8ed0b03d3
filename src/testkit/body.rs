use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// A response body that is either sent whole (at once or after a wait) or sent in part and
/// then stalls forever.
pub(super) struct ReplyBody {
    chunk: Option<Bytes>,
    stall: bool,
    /// Before the chunk: a slow body.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A reply's [`hold`](super::Reply::hold), dropped with the body: once hyper has sent it
    /// all, or with the connection.
    _held: Option<Arc<dyn Any + Send + Sync>>,
}

impl ReplyBody {
    pub(super) fn full(bytes: Bytes) -> Self {
        ReplyBody {
            chunk: Some(bytes),
            stall: false,
            wait: None,
            _held: None,
        }
    }

    pub(super) fn stalling(first: Bytes) -> Self {
        ReplyBody {
            chunk: Some(first),
            stall: true,
            wait: None,
            _held: None,
        }
    }

    /// The chunk waits `delay` (none if zero).
    pub(super) fn after(mut self, delay: Duration) -> Self {
        self.wait = (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay)));
        self
    }

    pub(super) fn holding(mut self, held: Option<Arc<dyn Any + Send + Sync>>) -> Self {
        self._held = held;
        self
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        match self.chunk.take() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            // Never woken: the connection is dropped with the server or the client.
            None if self.stall => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.stall && self.chunk.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.chunk, self.stall) {
            (_, true) => SizeHint::default(),
            (Some(chunk), false) => SizeHint::with_exact(chunk.len() as u64),
            (None, false) => SizeHint::with_exact(0),
        }
    }
}
