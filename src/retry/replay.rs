//! A streaming request body kept as it is sent, so that a retry can send it again.
//!
//! A stream can be read once, so a request with one could not be retried. Linkerd's proxy
//! keeps such a body as it goes out, up to 64 KiB, and replays it; so do we, up to the
//! policy's `replay_buffer`: the chunks the stream yields are kept (shared, not copied) while
//! they fit, and a retry gets them as one bytes body once the stream was read to its end. A
//! longer stream, one that failed, or one that was not read to its end (the attempt was cut
//! short) keeps nothing, and the call ends as before with `BodyNotReplayable`.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// What was kept of a stream; read by the call, written by the attempt's body.
#[derive(Default)]
struct Kept {
    chunks: Vec<Bytes>,
    len: u64,
    /// The stream ended, and every byte of it is in `chunks`.
    whole: bool,
    /// Nothing will be replayed: the stream outgrew the buffer, failed, or held trailers.
    given_up: bool,
}

impl Kept {
    fn give_up(&mut self) {
        self.given_up = true;
        // Kept only for a replay there will not be.
        self.chunks = Vec::new();
    }
}

/// The call's side: what a retry will send, once the first attempt's body has gone out whole.
pub(crate) struct Replay {
    kept: Arc<Mutex<Kept>>,
}

/// The body the first attempt sends: the stream, kept as it is read.
struct Keeping {
    inner: reqwest::Body,
    kept: Arc<Mutex<Kept>>,
    limit: u64,
    // The length the stream says it has: hyper stops reading it there, without asking for
    // its end.
    len: Option<u64>,
}

fn lock(kept: &Mutex<Kept>) -> MutexGuard<'_, Kept> {
    // Nothing panics while it is held; a poisoned lock still holds consistent data.
    kept.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Replay {
    /// `body`, a stream, kept up to `limit` bytes as it is sent: the body to send instead,
    /// and the replay for later attempts.
    pub(crate) fn keep(body: reqwest::Body, limit: u64) -> (reqwest::Body, Replay) {
        let len = body.size_hint().exact();
        // An empty one is never read at all.
        let kept = Kept {
            whole: body.is_end_stream() || len == Some(0),
            ..Kept::default()
        };
        let kept = Arc::new(Mutex::new(kept));
        let keeping = Keeping {
            len,
            inner: body,
            kept: kept.clone(),
            limit,
        };
        (reqwest::Body::wrap(keeping), Replay { kept })
    }

    /// Whether the stream went out whole within the limit, so that it can be sent again.
    pub(crate) fn whole(&self) -> bool {
        let kept = lock(&self.kept);
        kept.whole && !kept.given_up
    }

    /// The stream's bytes as a body that can be copied, if it went out whole within the
    /// limit. Called once, for the first retry: later ones copy that body.
    pub(crate) fn into_body(self) -> Option<reqwest::Body> {
        let mut kept = lock(&self.kept);
        if !kept.whole || kept.given_up {
            return None;
        }
        let chunks = std::mem::take(&mut kept.chunks);
        let bytes = match <[Bytes; 1]>::try_from(chunks) {
            Ok([one]) => one,
            Err(chunks) => {
                let mut all = BytesMut::with_capacity(usize::try_from(kept.len).ok()?);
                for chunk in &chunks {
                    all.extend_from_slice(chunk);
                }
                all.freeze()
            }
        };
        Some(reqwest::Body::from(bytes))
    }
}

impl HttpBody for Keeping {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let ended = self.inner.is_end_stream();
        let mut kept = lock(&self.kept);
        if kept.given_up {
            return Poll::Ready(frame);
        }
        match &frame {
            // A stream that says it has ended and goes on is not one we can replay.
            Some(_) if kept.whole => kept.give_up(),
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) if kept.len + data.len() as u64 <= self.limit => {
                    kept.len += data.len() as u64;
                    // A reference to the chunk, not a copy of it.
                    kept.chunks.push(data.clone());
                    kept.whole = ended || self.len == Some(kept.len);
                }
                // Too long, or trailers, which a bytes body cannot carry.
                _ => kept.give_up(),
            },
            Some(Err(_)) => kept.give_up(),
            None => kept.whole = true,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // An exact length still goes out as `Content-Length`.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A stream of `chunks`, then its end; `error` fails it after them instead.
    struct Chunks {
        chunks: VecDeque<Bytes>,
        error: bool,
    }

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(match self.chunks.pop_front() {
                Some(chunk) => Some(Ok(Frame::data(chunk))),
                None if self.error => Some(Err(std::io::Error::other("broken"))),
                None => None,
            })
        }
    }

    fn stream(chunks: &[&'static str], error: bool) -> reqwest::Body {
        let chunks = chunks.iter().map(|c| Bytes::from_static(c.as_bytes()));
        reqwest::Body::wrap(Chunks {
            chunks: chunks.collect(),
            error,
        })
    }

    /// Reads `body` to its end, or to its first error.
    fn drain(mut body: reqwest::Body) -> Vec<u8> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut all = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            all.extend_from_slice(frame.data_ref().unwrap());
        }
        all
    }

    #[test]
    fn a_stream_sent_whole_within_the_limit_is_replayed() {
        let (sending, replay) = Replay::keep(stream(&["ab", "cd", "e"], false), 5);
        assert!(!replay.whole());
        assert_eq!(drain(sending), b"abcde");
        assert!(replay.whole());
        let again = replay.into_body().unwrap();
        assert_eq!(again.as_bytes(), Some(&b"abcde"[..]));
    }

    #[test]
    fn a_stream_longer_than_the_limit_failed_or_cut_short_is_not() {
        let (sending, replay) = Replay::keep(stream(&["ab", "cd"], false), 3);
        assert_eq!(drain(sending), b"abcd", "the stream itself goes out whole");
        assert!(!replay.whole());
        assert!(replay.into_body().is_none());

        let (sending, replay) = Replay::keep(stream(&["ab"], true), 64);
        assert_eq!(drain(sending), b"ab");
        assert!(!replay.whole());

        let (sending, replay) = Replay::keep(stream(&["ab", "cd"], false), 64);
        let mut sending = sending;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _first = Pin::new(&mut sending).poll_frame(&mut cx);
        drop(sending);
        assert!(!replay.whole());
    }

    #[test]
    fn a_stream_of_known_length_is_whole_at_its_length() {
        let body = reqwest::Body::wrap(http_body_util::Full::new(Bytes::from_static(b"abc")));
        let (mut sending, replay) = Replay::keep(body, 64);
        assert_eq!(
            sending.size_hint().exact(),
            Some(3),
            "still sent with its length"
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _all = Pin::new(&mut sending).poll_frame(&mut cx);
        assert!(replay.whole(), "hyper asks no further");
    }

    #[test]
    fn an_empty_stream_and_a_single_chunk_are_replayed_without_copying() {
        let (sending, replay) = Replay::keep(stream(&[], false), 0);
        assert_eq!(drain(sending), b"");
        assert_eq!(replay.into_body().unwrap().as_bytes(), Some(&b""[..]));
        let empty = reqwest::Body::wrap(http_body_util::Empty::<Bytes>::new());
        let (_never_read, replay) = Replay::keep(empty, 64);
        assert!(replay.whole());

        let chunk = Bytes::from_static(b"only");
        let body = reqwest::Body::wrap(Chunks {
            chunks: VecDeque::from([chunk.clone()]),
            error: false,
        });
        let (sending, replay) = Replay::keep(body, 64);
        drain(sending);
        let again = replay.into_body().unwrap();
        assert_eq!(again.as_bytes().map(<[u8]>::as_ptr), Some(chunk.as_ptr()));
    }
}
