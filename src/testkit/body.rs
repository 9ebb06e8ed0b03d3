use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// A response body that is either sent whole or sent in part and then stalls forever.
pub(super) struct ReplyBody {
    chunk: Option<Bytes>,
    stall: bool,
}

impl ReplyBody {
    pub(super) fn full(bytes: Bytes) -> Self {
        ReplyBody {
            chunk: Some(bytes),
            stall: false,
        }
    }

    pub(super) fn stalling(first: Bytes) -> Self {
        ReplyBody {
            chunk: Some(first),
            stall: true,
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
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
