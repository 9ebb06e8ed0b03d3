//! What is retried, when, and how to retry more than the response's head.
//!
//! # Retrying safely
//!
//! - Only transient outcomes are retried (by default 408, 429, 500, 502, 503, 504, connect and DNS
//!   failures, resets, timeouts); a permanent one (any other 4xx or 5xx, a failed TLS handshake,
//!   an invalid request) comes back after one attempt.
//! - What is transient is the [classifier](crate::classify)'s call: a policy's
//!   [`retry_statuses`](crate::policy::EndpointPolicy::retry_statuses) changes the statuses, a
//!   [`Classifier`](crate::classify::Classifier) of your own (given to
//!   [`ClientBuilder::classifier`](crate::ClientBuilder::classifier); an example in
//!   [migrating](super::migrating#a-classifier-of-your-own)) decides on anything, and a body
//!   classifier (below) on the body.
//! - GET, HEAD, OPTIONS, TRACE, PUT and DELETE are retried on any transient outcome. POST and
//!   PATCH only when the attempt never reached the server (connection refused, DNS, HTTP/2
//!   `REFUSED_STREAM`), when the request has an `Idempotency-Key` (sent unchanged every time), or
//!   with [`retry_non_idempotent(true)`](crate::policy::EndpointPolicy::retry_non_idempotent).
//!   [`idempotency_key(true)`](crate::policy::EndpointPolicy::idempotency_key) adds a random key
//!   to them.
//! - Retries wait with jittered exponential backoff (100 ms × 2, at most 20 s, full jitter;
//!   [`Jitter`](crate::retry::Jitter) has `Equal`, `Decorrelated` and `None`), or what the
//!   server's `Retry-After` says, up to `retry_after_cap` (20 s). Above the cap, or past the
//!   deadline, there is no retry, and [`Error::retry_after`](crate::Error::retry_after) says what
//!   the server asked. A malformed `Retry-After` (`soon`, `-5`) is ignored; a number too big for 64
//!   bits or a date in 9999 counts as "too long".
//! - No wait goes past the call's deadline.
//! - Retries exhausted: `Err` with the last status, headers, `Retry-After` and body
//!   ([`Error::read_body`](crate::Error::read_body), bounded), never `Ok(503)`.
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/orders", [Reply::status(503)]);
//!
//! let client = Client::new()?;
//! let mut err = client.post(server.url("/orders")).body("{}").send().await.err().ok_or("503")?;
//! assert_eq!(server.hits("/orders"), 1, "a POST that reached the server is not repeated");
//! assert_eq!(err.attempts().len(), 1);
//! let body = err.read_body(64 * 1024).await; // the 503's body, for diagnostics
//! # let _ = body;
//! # Ok(())
//! # }
//! ```
//!
//! ## What reqwest and hyper resend by themselves
//!
//! Every request the server sees is an attempt in the history. reqwest 0.13 by default resends a
//! request that HTTP/2 refused (`REFUSED_STREAM`, a graceful `GOAWAY`) up to twice by itself,
//! unseen by the history, spans, metrics and breaker, and under our retries (3 × 3). The reqwest
//! client that [`ClientBuilder::build`](crate::ClientBuilder::build) makes has that retry off, so
//! those refusals are our attempts. A `reqwest::Client` of your own
//! ([`ClientBuilder::reqwest_client`](crate::ClientBuilder::reqwest_client), or the one under
//! [`ResilientMiddleware`](crate::middleware::ResilientMiddleware)) keeps reqwest's retry until you
//! turn it off: `reqwest::Client::builder().retry(reqwest::retry::never())`. (hyper still resends,
//! on another connection, a request it had not begun to write when a pooled connection turns out
//! closed; the server never saw that one.)
//!
//! ## Streams an HTTP/2 server turns away
//!
//! A stream an HTTP/2 server turns away while turning its connections over (`REFUSED_STREAM`; a
//! graceful `GOAWAY`: nginx after `keepalive_requests`, on a reload) is sent again at once, on a
//! new connection, without spending an attempt or a backoff, even under a policy that never
//! retries, up to 32 times per call ([`MAX_RESENDS`](crate::retry::MAX_RESENDS); past the first 3,
//! [`FREE_RESENDS`](crate::retry::FREE_RESENDS), each spends from the retry budget, so that a
//! server refusing every stream is not sent 32 more per call), the second and later after a
//! random pause of up to 2 ms ([`RESEND_PAUSE`](crate::retry::RESEND_PAUSE)); the history shows
//! each one with `resent` set, and the breaker does not count it. Each turnover fails every
//! stream in flight above the server's last one, so with many calls at once a good share of them
//! meets one (a quarter, with 16 at once and `keepalive_requests 50`); with more calls at once
//! than the server allows per connection (64 against 50), the same calls meet one turnover after
//! another (up to 16 in a row against nginx), hence the bound. A refused stream was never
//! processed, and is resent for any method. A `GOAWAY` is "maybe sent": hyper also hands it to a
//! request whose stream it opened just before it saw the frame, which the server may have
//! processed (nginx logged one such), so a POST without an `Idempotency-Key` is neither resent nor
//! retried after one. Nothing is resent with a body that cannot be sent again, or past the
//! deadline.
//!
//! ## Streaming request bodies
//!
//! A streaming body is kept as it is sent, up to the policy's
//! [`replay_buffer`](crate::policy::EndpointPolicy::replay_buffer) (64 KiB by default, as
//! Linkerd's proxy does; 0 turns it off), so a small stream is retried with the same bytes. A
//! longer stream, or one not sent to its end, gets its one attempt; if that fails transiently the
//! error is [`BodyNotReplayable`](crate::ErrorKind::BodyNotReplayable), keeping the attempt's
//! status, headers and body, with the attempt's error as its source. To retry a stream of any size
//! (a file), make the body per attempt with
//! [`RequestBuilder::body_with`](crate::RequestBuilder::body_with):
//! `.body_with(|| async { tokio::fs::File::open("report.csv").await.map(reqwest::Body::from) })`
//! (`Body::from(File)` needs the `stream` feature). A factory's error is a permanent
//! [`ErrorKind::Hook`](crate::ErrorKind::Hook) naming the request; such a call sends no hedges.
//!
//! # How the body is bounded
//!
//! reqwest's timeout runs until the body has been read, so that is where the attempt timeout goes:
//! each attempt gets the smaller of the attempt timeout and what is left of the deadline, set on
//! the request, or left to the reqwest client when the client built it with that same timeout (the
//! default policy's), which saves reqwest three allocations per call. The body stays a stream
//! after `send()`; reading a stalled body fails with a `reqwest::Error` whose `is_timeout()` is
//! true; `resilient_http::Error::from(e)` turns it into the typed
//! [`AttemptTimeout`](crate::ErrorKind::AttemptTimeout) kind, whose message says that the
//! attempt timeout covers the body and how to give a download more time:
//! [`.attempt_timeout(Duration::from_secs(300))`](crate::RequestBuilder::attempt_timeout) on its
//! request, with a [`.deadline(..)`](crate::RequestBuilder::deadline) at least as long. To have
//! such a body retried, read it inside the attempt (next section). A [`RequestBuilder::timeout(d)`](crate::RequestBuilder::timeout)
//! keeps reqwest's meaning, a limit for the whole call, and can only shorten the configured
//! deadline.
//!
//! # Retrying the whole exchange
//!
//! [`send()`](crate::RequestBuilder::send) resolves when the response's head arrives, as reqwest's
//! does, so a body that breaks afterwards is yours to handle. Three things go further.
//!
//! ## The body, read inside the attempt
//!
//! [`send_buffered()`](crate::RequestBuilder::send_buffered),
//! [`bytes()`](crate::RequestBuilder::bytes), [`text()`](crate::RequestBuilder::text), [`recv_json::<T>()`](crate::RequestBuilder::recv_json)
//! (feature `json`) and [`send_with(|response| async move { … })`](crate::RequestBuilder::send_with)
//! read the body while the call is still running. A reset, a truncation or a stall while reading
//! is a failed attempt like any other: classified (transient, and delivered, so a POST without an
//! `Idempotency-Key` is not repeated), counted by the breaker, retried, and visible in the history
//! as `200 OK, then connection closed while reading the body`. The read is bounded by the attempt
//! timeout and by the policy's [`body_limit`](crate::policy::EndpointPolicy::body_limit) (16 MiB by
//! default): a longer body is [`BodyTooLarge`](crate::ErrorKind::BodyTooLarge), never an
//! out-of-memory. JSON that does not decode is [`Decode`](crate::ErrorKind::Decode), permanent,
//! with its status.
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! // The first answer is cut off after its head and a few bytes; the second is whole.
//! server.script("/export.csv", [
//!     Reply::body_then_reset(200, "a,b\n1,"),
//!     Reply::ok("a,b\n1,2\n3,4\n"),
//! ]);
//!
//! let client = Client::new()?;
//! let lines = client
//!     .get(server.url("/export.csv"))
//!     .send_with(|mut response| async move {
//!         // A streaming reader, run again on each attempt.
//!         let mut lines = 0;
//!         while let Some(chunk) = response.chunk().await? {
//!             lines += chunk.iter().filter(|b| **b == b'\n').count();
//!         }
//!         Ok(lines)
//!     })
//!     .await?;
//! assert_eq!(lines, 3);
//! assert_eq!(server.hits("/export.csv"), 2, "the broken body was retried");
//! # Ok(())
//! # }
//! ```
//!
//! ## The decision, made on the body
//!
//! A [body classifier](crate::classify::BodyClassifier) sees status, headers and body, so an API
//! that says "try again" in its body is retried:
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::classify::{Class, body_classifier_fn};
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/lock", [Reply::status(409).body("LOCK_TIMEOUT"), Reply::ok("done")]);
//!
//! let client = Client::builder()
//!     .body_classifier(body_classifier_fn(|status, _headers, body| {
//!         let retryable = status == 409 && body.windows(12).any(|w| w == b"LOCK_TIMEOUT");
//!         retryable.then_some(Class::Transient)
//!     }))
//!     .build()?;
//! assert_eq!(client.put(server.url("/lock")).text().await?, "done");
//! assert_eq!(server.hits("/lock"), 2);
//! # Ok(())
//! # }
//! ```
//!
//! A body classifier makes every call read the bodies it [`wants`](crate::classify::BodyClassifier::wants)
//! (all of them, for a function) inside the attempt, `send()` included, bounded by the
//! `body_limit`; without one nothing is buffered.
//!
//! ## The request, changed per attempt
//!
//! - [`before_attempt(hook_fn("sign", |request, attempt| async move { … }))`](crate::ClientBuilder::before_attempt)
//!   (or [`before_attempt_for("payments", …)`](crate::ClientBuilder::before_attempt_for)) runs
//!   before every attempt with the request and the history so far, and returns the request to
//!   send. An error or a panic ends the call with [`ErrorKind::Hook`](crate::ErrorKind::Hook),
//!   naming the hook; the client stays usable. Example: [`hook_fn`](crate::hook::hook_fn).
//! - [`refresh_auth_on_401(refresh_fn(|| async { … }))`](crate::ClientBuilder::refresh_auth_on_401):
//!   after a `401`, your refresher is called once and the request sent again with the new
//!   `Authorization`. That attempt is not counted against the policy's attempts; a second `401`
//!   is returned as the error, without another refresh. Example: [`refresh_fn`](crate::hook::refresh_fn).
//! - [`attempt_layer(ServiceBuilder::new().map_request(sign))`](crate::ClientBuilder::attempt_layer)
//!   runs any tower layer over the `reqwest::Client` around each attempt, inside the retry: a
//!   signature computed there is fresh on every attempt.
//! - [`layer(ConcurrencyLimitLayer::new(32))`](crate::ClientBuilder::layer) runs any generic tower
//!   layer around each **whole call**, retries and waits included, for every way of sending
//!   (`send`, the readers, `execute`). Its request is an [`Exchange`](crate::outer::Exchange)
//!   (`request_mut()` changes the request for all attempts), its response an
//!   [`Exchanged`](crate::outer::Exchanged); a tower timeout there ends the call with
//!   [`DeadlineExceeded`](crate::ErrorKind::DeadlineExceeded).
//!
//! Hooks, refreshers and body classifiers run on every path (the client,
//! `ResilientMiddleware`, `ResilientLayer`): one driver runs every call. Attempt layers wrap the
//! client's own `reqwest::Client`, so the adapters refuse a builder that sets them (put them in the
//! chain or the stack below instead), rather than ignore them.
//!
//! # Seeing what happened
//!
//! Every error carries its attempts ([`Error::attempts`](crate::Error::attempts)), and so does a
//! success that needed retries (`response.extensions().get::<RetryHistory>()`, see
//! [`RetryHistory`](crate::retry::RetryHistory)). A call the client turned away itself before
//! sending anything (an open circuit, the rate limit or a hold, a full bulkhead) says so:
//! `GET … not sent: circuit open: …`; `failed after N attempts` counts the attempts that were
//! sent ([`Attempt::sent`](crate::Attempt::sent)), while `err.attempts()` also lists the
//! refusal. Logs and metrics: [`observability`](super::observability).
//!
//! ```
//! use resilient_http::Client;
//! use resilient_http::retry::RetryHistory;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
//!
//! let client = Client::new()?;
//! let response = client.get(server.url("/flaky")).send().await?;
//! let history = response.extensions().get::<RetryHistory>().ok_or("retried")?;
//! assert_eq!(history.0.len(), 2);
//! for attempt in &history.0 {
//!     println!("{attempt}"); // its number, outcome and duration
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Why a call stopped
//!
//! Every error a call ends with says why it stopped ([`Error::give_up`](crate::Error::give_up),
//! a [`GiveUp`](crate::GiveUp)) and whether the request may have reached the server
//! ([`Error::sent`](crate::Error::sent)); do not guess from `attempts().len()`, which is 1 both
//! for a POST that was never retried and for a policy of one attempt. The message says it too:
//! `GET … failed after 3 attempts in 310ms: 503 Service Unavailable (transient, attempts used
//! up)`.
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::policy::EndpointPolicy;
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::{Client, GiveUp};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/orders", [Reply::status(503)]);
//!
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().backoff_base(Duration::ZERO))
//!     .build()?;
//! let err = client.get(server.url("/orders")).send().await.err().ok_or("503")?;
//! assert_eq!(err.give_up(), Some(GiveUp::AttemptsExhausted));
//! assert!(
//!     err.to_string().ends_with("503 Service Unavailable (transient, attempts used up)"),
//!     "{err}"
//! );
//!
//! let err = client.post(server.url("/orders")).body("{}").send().await.err().ok_or("503")?;
//! match err.give_up() {
//!     Some(GiveUp::AttemptsExhausted | GiveUp::Deadline) => { /* still failing: later */ }
//!     Some(GiveUp::NotIdempotent) if err.sent() => { /* a POST that may have been processed */ }
//!     Some(GiveUp::CircuitOpen | GiveUp::RateLimited | GiveUp::BulkheadFull) => { /* not sent */ }
//!     _ => {}
//! }
//! assert_eq!(err.give_up(), Some(GiveUp::NotIdempotent));
//! assert!(err.sent());
//! # Ok(())
//! # }
//! ```
//!
//! The same reason is the `retry skipped` event's `reason`, the `resilient_http.give_ups`
//! metric's label ([`GiveUp::as_str`](crate::GiveUp::as_str)) and the probe's `give_up` key.

// The page links to items of the `json` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]
