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
//! What a [`Reply`] can do: answer with any status, headers, `Retry-After` (seconds or HTTP
//! date) and body, after a delay; [hang](Reply::hang) without answering; send the head and
//! [stall the body](Reply::stall_body), or cut it off with a [clean close](Reply::body_then_close)
//! or a [reset](Reply::body_then_reset); [reset](Reply::reset) the connection with a TCP RST;
//! [close](Reply::close) it cleanly without answering; or write [raw bytes](Reply::raw), such as
//! a malformed status line. [`ClosedPort`] gives a URL whose connection is refused.

mod body;
mod reply;
mod server;

pub use reply::Reply;
pub use server::{ClosedPort, FaultServer, RecordedRequest};
