//! A loopback HTTP server that fails on demand (feature `testkit`).
//!
//! Test a policy against real failures instead of mocks: the server speaks real HTTP/1.1 over a
//! real socket on `127.0.0.1`, so reqwest, hyper and the kernel behave as they do in production.
//! Script the replies for a path (they are served in order; the last one repeats), then ask the
//! server how many times it was really called and with what.
//!
//! ```
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/flaky", [Reply::status(503), Reply::status(200)]);
//! server.script("/gone", [Reply::status(404)]);
//!
//! let client = resilient_http::Client::new()?;
//! let response = client.get(server.url("/flaky")).send().await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(server.hits("/flaky"), 2, "the 503 was retried");
//!
//! let err = client.get(server.url("/gone")).send().await.unwrap_err();
//! assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
//! assert_eq!(server.hits("/gone"), 1, "a 404 is not retried");
//! # Ok(())
//! # }
//! ```
//!
//! # Tests that do not wait: zero backoff
//!
//! A retry waits its backoff (100 ms, then 200 ms... by default). A test policy with no
//! backoff retries at once, on any runtime:
//!
//! ```
//! use std::time::Duration;
//!
//! use resilient_http::policy::EndpointPolicy;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/down", [Reply::status(503)]);
//!
//! let client = resilient_http::Client::builder()
//!     .default_policy(EndpointPolicy::new().backoff_base(Duration::ZERO))
//!     .build()?;
//! let err = client.get(server.url("/down")).send().await.unwrap_err();
//! assert_eq!(server.hits("/down"), 3, "three attempts");
//! assert!(err.attempts().iter().all(|a| a.delay_before.is_zero()), "no waits: {err:?}");
//! # Ok(())
//! # }
//! ```
//!
//! # Tests on paused time
//!
//! To test the waits themselves (backoff, `Retry-After`, deadlines, a breaker's open time)
//! without waiting them, run the test on tokio's paused clock: it jumps to the next timer
//! whenever the runtime has nothing else to do. That needs tokio's `test-util` feature in
//! your dev-dependencies (and `macros` and `rt` for the attribute):
//!
//! ```toml
//! [dev-dependencies]
//! resilient-http = { version = "0.1", features = ["testkit"] }
//! tokio = { version = "1", features = ["macros", "rt", "test-util"] }
//! ```
//!
//! In a test, `#[tokio::test(start_paused = true)]`; this example is a doctest, so its
//! `main` starts the same runtime:
//!
//! ```
//! use std::time::Duration;
//!
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! // In your tests: #[tokio::test(start_paused = true)]
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = FaultServer::start().await?;
//!     // Come back in 15 s, twice: half a minute on the real clock.
//!     let busy = || Reply::status(503).retry_after_secs(15);
//!     server.script("/busy", [busy(), busy(), Reply::ok("ok")]);
//!
//!     let client = resilient_http::Client::builder()
//!         .deadline(Duration::from_secs(60))
//!         .build()?;
//!     let (paused, real) = (tokio::time::Instant::now(), std::time::Instant::now());
//!     let response = client.get(server.url("/busy")).send().await?;
//!     assert_eq!(response.status(), 200);
//!     // Both waits were made on the paused clock, in no time on the real one.
//!     assert!(paused.elapsed() >= Duration::from_secs(30));
//!     assert!(real.elapsed() < Duration::from_secs(10));
//!     Ok(())
//! }
//! ```
//!
//! The server runs on the test's own runtime, on loopback: what it writes is readable before
//! the runtime next goes idle, so the clock's jumps do not overtake its replies. A
//! [`Reply::delay`] is a wait on the paused clock too. Start the server inside the paused
//! runtime, as above: the clock is the runtime's.
//!
//! What a [`Reply`] can do: answer with any status, headers, `Retry-After` (seconds or HTTP
//! date) and body, after a delay; [hang](Reply::hang) without answering; send the head and
//! [stall the body](Reply::stall_body), or cut it off with a [clean close](Reply::body_then_close)
//! or a [reset](Reply::body_then_reset); [reset](Reply::reset) the connection with a TCP RST;
//! [close](Reply::close) it cleanly without answering; or write [raw bytes](Reply::raw), such as
//! a malformed status line; send the body [after its head](Reply::body_after) (a slow body); and
//! [hold](Reply::hold) a value until the reply is over. [`ClosedPort`] gives a URL whose
//! connection is refused.
//!
//! # Replies decided when the request arrives
//!
//! Instead of a script, [`FaultServer::respond_with`] (one path) and
//! [`FaultServer::respond_with_any`] (every other path) take a function that picks each reply
//! from the request, the time, or what came before: a model of a dependency rather than a list
//! of its answers. The simulator's check against the real network
//! (`resilient_http::sim`, feature `cli`) serves its modelled dependency this way.

mod body;
mod reply;
mod server;

pub use reply::Reply;

/// Builds every window of this process (the breakers' and the retry budgets') with the stripe
/// count a machine of `cores` cores would give them, if no window was built yet; whether the
/// count is now that one. For tests of the memory per endpoint at a core count the test
/// machine does not have (`tests/endpoint_memory.rs`); not for use outside tests.
#[doc(hidden)]
pub fn __assume_cores(cores: usize) -> bool {
    crate::window::assume_cores(cores)
}
pub use server::{ClosedPort, FaultServer, RecordedRequest};
