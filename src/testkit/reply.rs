use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// What the [`FaultServer`](super::FaultServer) does with one request.
///
/// ```
/// use std::time::Duration;
/// use resilient_http::testkit::{FaultServer, Reply};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = FaultServer::start().await?;
/// server.script("/orders", [
///     Reply::status(429).retry_after_secs(1),            // slow down, for a second
///     Reply::status(503).delay(Duration::from_millis(50)), // a slow failure
///     Reply::body_then_reset(200, "[{\"id\":"),            // the body cut off by a TCP reset
///     Reply::ok("[]").header("content-type", "application/json"), // then, always, this
/// ]);
/// let client = resilient_http::Client::builder()
///     .default_policy(resilient_http::policy::EndpointPolicy::new().max_attempts(4))
///     .build()?;
/// assert_eq!(client.get(server.url("/orders")).text().await?, "[]");
/// assert_eq!(server.hits("/orders"), 4);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Reply {
    pub(super) action: Action,
    pub(super) delay: Duration,
    /// How long the body of an answer takes after its head.
    pub(super) body_delay: Duration,
    /// Kept alive until the reply is over (see [`Reply::hold`]).
    pub(super) held: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("action", &self.action)
            .field("delay", &self.delay)
            .field("body_delay", &self.body_delay)
            .field("holds", &self.held.is_some())
            .finish()
    }
}

#[derive(Clone, Debug)]
pub(super) enum Action {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Sends the head, announcing more body than it then sends, and stalls.
    StallBody {
        status: u16,
        sent: Bytes,
    },
    Hang,
    Reset,
    Close,
    Raw(Bytes),
    /// Writes the bytes, then resets the connection (TCP RST).
    RawThenReset(Bytes),
}

impl Reply {
    fn new(action: Action) -> Self {
        Reply {
            action,
            delay: Duration::ZERO,
            body_delay: Duration::ZERO,
            held: None,
        }
    }

    /// Answers with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        Reply::new(Action::Respond {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        })
    }

    /// Answers 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Reply::status(200).body(body)
    }

    /// Sends the head of a `status` response with a `Content-Length` larger than `first`, then
    /// `first`, then nothing more, keeping the connection open.
    pub fn stall_body(status: u16, first: impl Into<Bytes>) -> Self {
        Reply::new(Action::StallBody {
            status,
            sent: first.into(),
        })
    }

    /// Reads the request and never answers, keeping the connection open.
    pub fn hang() -> Self {
        Reply::new(Action::Hang)
    }

    /// Reads the request and resets the connection (TCP RST) without answering.
    pub fn reset() -> Self {
        Reply::new(Action::Reset)
    }

    /// Reads the request and closes the connection cleanly (FIN) without answering.
    pub fn close() -> Self {
        Reply::new(Action::Close)
    }

    /// Reads the request, writes `bytes` as they are, and closes the connection. For answers
    /// that are not valid HTTP, such as `b"HTTP/1.1 OOPS\r\n\r\n"`.
    pub fn raw(bytes: impl Into<Bytes>) -> Self {
        Reply::new(Action::Raw(bytes.into()))
    }

    /// Sends the head of a `status` response announcing more body than `first`, then `first`,
    /// then closes the connection cleanly: a body cut off mid-stream.
    pub fn body_then_close(status: u16, first: impl Into<Bytes>) -> Self {
        Reply::new(Action::Raw(partial_response(status, &first.into())))
    }

    /// Like [`body_then_close`](Self::body_then_close), but resets the connection (TCP RST).
    pub fn body_then_reset(status: u16, first: impl Into<Bytes>) -> Self {
        Reply::new(Action::RawThenReset(partial_response(
            status,
            &first.into(),
        )))
    }

    /// Waits `delay` before doing anything else (before the response head, for answers).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sends the body `delay` after the head (a slow body: the head says its whole length, so
    /// the client waits for it). Only for answers ([`status`](Self::status), [`ok`](Self::ok)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use resilient_http::testkit::{FaultServer, Reply};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = FaultServer::start().await?;
    /// server.script("/slow", [Reply::ok("done").body_after(Duration::from_secs(5))]);
    /// let started = tokio::time::Instant::now();
    /// let response = reqwest::get(server.url("/slow")).await?;
    /// assert!(started.elapsed() < Duration::from_secs(5), "the head comes at once");
    /// assert_eq!(response.text().await?, "done");
    /// assert!(started.elapsed() >= Duration::from_secs(5), "the body 5 s later");
    /// # Ok(())
    /// # }
    /// ```
    pub fn body_after(mut self, delay: Duration) -> Self {
        self.body_delay = delay;
        self
    }

    /// Keeps `value` alive until this reply is over, then drops it: when its body has been
    /// sent, or its connection is closed (a [hang](Self::hang), a [stalled body](Self::stall_body),
    /// a [reset](Self::reset), or the client giving up). A guard whose `Drop` counts the requests
    /// a [`respond_with`](super::FaultServer::respond_with) function has in hand, for instance.
    pub fn hold(mut self, value: impl Any + Send + Sync) -> Self {
        self.held = Some(Arc::new(value));
        self
    }

    /// Adds a response header. An invalid name or value makes the server answer 500 with a
    /// body that says which.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Action::Respond { headers, .. } = &mut self.action {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Adds `Retry-After: <seconds>`.
    pub fn retry_after_secs(self, seconds: u64) -> Self {
        self.header("retry-after", seconds.to_string())
    }

    /// Adds `Retry-After: <HTTP date>`.
    pub fn retry_after_date(self, at: SystemTime) -> Self {
        self.header("retry-after", httpdate::fmt_http_date(at))
    }

    /// Sets the response body.
    pub fn body(mut self, new_body: impl Into<Bytes>) -> Self {
        if let Action::Respond { body, .. } = &mut self.action {
            *body = new_body.into();
        }
        self
    }
}

/// The bytes of a response head announcing 1 KiB more body than `first`, followed by `first`.
fn partial_response(status: u16, first: &Bytes) -> Bytes {
    let mut bytes = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n",
        first.len() + 1024
    )
    .into_bytes();
    bytes.extend_from_slice(first);
    Bytes::from(bytes)
}
