//! What a call hands back, and reading the response inside the attempt: the pieces the
//! client's call uses when a body is read before the call decides (a reader of the caller's,
//! `send_buffered`, a body classifier).
//!
//! Why inside: a body that breaks halfway is a failed attempt like any other, so it must be
//! classified, counted by the breaker and retried under the same rules, which only works
//! while the call is still running. reqwest's per-request timeout, which the attempt timeout
//! sets, keeps running until the body is read, so the read is bounded in time for free.

mod body;

use bytes::Bytes;
use http::StatusCode;

use crate::error::{Error, RetryHistory};
use crate::hook::BoxFuture;

pub use body::DEFAULT_BODY_LIMIT;
pub(crate) use body::{Buffered, buffer, limited};

/// What a call hands back on success, and the status it came from.
pub(crate) trait Success: Send + 'static {
    fn status(&self) -> StatusCode;
    /// Keeps the attempts of a call that needed retries, where the type has room for them.
    fn keep_history(&mut self, history: RetryHistory);
    /// The response, where the output keeps it (for outer layers: `Exchanged::response`).
    fn response(&self) -> Option<&reqwest::Response> {
        None
    }
}

impl Success for reqwest::Response {
    fn status(&self) -> StatusCode {
        self.status()
    }

    fn response(&self) -> Option<&reqwest::Response> {
        Some(self)
    }

    fn keep_history(&mut self, history: RetryHistory) {
        self.extensions_mut().insert(history);
    }
}

/// A success of `bytes` and `recv_json`: the response as `send_buffered` hands it back,
/// and its body, taken from memory rather than read from the response a second time.
pub(crate) struct InMemory {
    pub(crate) response: reqwest::Response,
    /// `None` when the call took the response without reading its body first (a head that
    /// lost its race, taken after all).
    pub(crate) body: Option<Bytes>,
}

impl InMemory {
    fn new(response: reqwest::Response, body: Option<Bytes>) -> Self {
        InMemory { response, body }
    }

    /// The body, from memory, else read from the response now.
    pub(crate) async fn bytes(self) -> Result<Bytes, reqwest::Error> {
        match self.body {
            Some(body) => Ok(body),
            None => self.response.bytes().await,
        }
    }
}

impl Success for InMemory {
    fn status(&self) -> StatusCode {
        self.response.status()
    }

    fn keep_history(&mut self, history: RetryHistory) {
        self.response.keep_history(history);
    }

    fn response(&self) -> Option<&reqwest::Response> {
        Some(&self.response)
    }
}

/// A success of `recv_json`: the response (its body read) and the value its body decoded to.
#[cfg(feature = "json")]
pub(crate) struct Decoded<T> {
    pub(crate) response: reqwest::Response,
    pub(crate) value: T,
}

#[cfg(feature = "json")]
impl<T: Send + 'static> Success for Decoded<T> {
    fn status(&self) -> StatusCode {
        self.response.status()
    }

    fn keep_history(&mut self, history: RetryHistory) {
        self.response.keep_history(history);
    }

    fn response(&self) -> Option<&reqwest::Response> {
        Some(&self.response)
    }
}

/// A reader's value and the status of the response it read.
pub(crate) struct Read<T> {
    pub(crate) status: StatusCode,
    pub(crate) value: T,
}

impl<T: Send + 'static> Success for Read<T> {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn keep_history(&mut self, _: RetryHistory) {}
}

/// A reader of the caller's, run on each attempt's response.
pub(crate) type ReadFn<O> = Box<dyn FnMut(reqwest::Response) -> BoxFuture<Result<O, Error>> + Send>;

/// A decoder of a response's body read into memory (`recv_json`); its error names the response's
/// status and URL (the call adds the rest).
pub(crate) type DecodeFn<O> = fn(reqwest::Response, &[u8]) -> Result<O, Error>;

/// How a call turns an accepted response into its output.
pub(crate) enum Reader<O> {
    /// The response itself, with its body where it was read into memory first (`send`,
    /// `send_buffered`, and [`InMemory`] for `bytes`).
    Response(fn(reqwest::Response, Option<Bytes>) -> O),
    /// The body read into memory, decoded inside the attempt (`recv_json`): a body that does not
    /// decode fails the attempt, and the call's error names its request, policy and attempts
    /// as any other.
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    Decode(DecodeFn<O>),
    /// A reader of the caller's, inside each attempt (`send_with`).
    With(ReadFn<O>),
}

impl Reader<reqwest::Response> {
    /// The response, its body (if read into memory) inside it.
    pub(crate) fn response() -> Self {
        Reader::Response(|response, _| response)
    }
}

impl Reader<InMemory> {
    /// The response and the body read into memory.
    pub(crate) fn in_memory() -> Self {
        Reader::Response(InMemory::new)
    }
}
