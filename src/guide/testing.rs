//! Testing your own code and policies against real failures: the `testkit` feature.
//!
//! [`FaultServer`](crate::testkit::FaultServer) is a real HTTP/1.1 server on `127.0.0.1:0` whose
//! replies are scripted per path (`503, 503, 200`; the last one repeats), with `Retry-After`
//! (seconds or HTTP date), delays, hangs, stalled bodies, TCP resets, clean closes and raw
//! malformed answers ([`Reply`](crate::testkit::Reply)). It records every request's method,
//! headers and body, so a test can assert how often the server was really called
//! ([`hits`](crate::testkit::FaultServer::hits), [`requests`](crate::testkit::FaultServer::requests)).
//! [`ClosedPort`](crate::testkit::ClosedPort) gives a URL whose connection is refused.
//!
//! ```toml
//! [dev-dependencies]
//! resilient-http = { version = "0.1", features = ["testkit"] }
//! tokio = { version = "1", features = ["macros", "rt", "test-util"] } # test-util: paused time
//! ```
//!
//! # A test
//!
//! In your tests, `#[tokio::test]` does what the hidden lines below do:
//!
//! ```
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::{Client, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/orders", [Reply::status(503), Reply::status(503), Reply::ok("[]")]);
//! server.script("/gone", [Reply::status(404)]);
//!
//! let client = Client::new()?;
//! assert_eq!(client.get(server.url("/orders")).text().await?, "[]");
//! assert_eq!(server.hits("/orders"), 3, "two 503s retried");
//!
//! let err = client.get(server.url("/gone")).send().await.err().ok_or("a 404 is an error")?;
//! assert_eq!(err.kind(), ErrorKind::Status);
//! assert_eq!(server.hits("/gone"), 1, "a 404 is not retried");
//! # Ok(())
//! # }
//! ```
//!
//! # Paused time
//!
//! Timeouts, backoff and `Retry-After` run on tokio's clock, so a test can pause it
//! (`#[tokio::test(start_paused = true)]`, tokio's `test-util` feature): while every task waits,
//! the clock jumps to the next timer, and a 30 s deadline takes no real time. The server's own
//! delays and hangs run on the same clock.
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::testkit::{FaultServer, Reply};
//! use resilient_http::{Client, ErrorKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build()?
//! #     .block_on(async {
//! let server = FaultServer::start().await?;
//! server.script("/slow", [Reply::hang()]);
//!
//! let client = Client::builder()
//!     .attempt_timeout(Duration::from_secs(2))
//!     .deadline(Duration::from_secs(30))
//!     .build()?;
//! let started = tokio::time::Instant::now();
//! let err = client.get(server.url("/slow")).send().await.err().ok_or("a hang times out")?;
//! assert_eq!(err.kind(), ErrorKind::AttemptTimeout);
//! assert_eq!(server.hits("/slow"), 3, "three attempts of 2 s each");
//! assert!(started.elapsed() >= Duration::from_secs(6), "on tokio's clock, not the wall's");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! # A test policy without waits
//!
//! Zero backoff keeps retries instant on the real clock too, when pausing time is not an option:
//!
//! ```
//! use std::time::Duration;
//! use resilient_http::Client;
//! use resilient_http::policy::EndpointPolicy;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::ok("ok")]);
//!
//! let client = Client::builder()
//!     .default_policy(EndpointPolicy::new().backoff_base(Duration::ZERO).max_attempts(3))
//!     .build()?;
//! assert_eq!(client.get(server.url("/flaky")).text().await?, "ok");
//! # Ok(())
//! # }
//! ```
//!
//! Where a script is not enough (the answer depends on the time, on the load, on the request),
//! [`FaultServer::respond_with`](crate::testkit::FaultServer::respond_with) (one path) and
//! [`respond_with_any`](crate::testkit::FaultServer::respond_with_any) (every other path)
//! answer with what a function of the request returns when it arrives;
//! [`Reply::body_after`](crate::testkit::Reply::body_after) sends a body some time after its
//! head, and [`Reply::hold`](crate::testkit::Reply::hold) keeps a value (a counter's guard)
//! alive until the reply is over. The simulator's faithfulness test serves its modelled
//! dependency so ([`guide::simulate`](super::simulate)).

// The page links to items of the `testkit` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "testkit"), allow(rustdoc::broken_intra_doc_links))]
