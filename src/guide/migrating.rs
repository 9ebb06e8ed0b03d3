//! Coming from reqwest, reqwest-middleware and reqwest-retry: what maps to what.
//!
//! Keep your `ClientWithMiddleware` and swap `RetryTransientMiddleware` for
//! [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) (see
//! [tower](super::tower#reqwest-middleware)), or move to [`Client`](crate::Client), whose
//! [`RequestBuilder`](crate::RequestBuilder) is reqwest's.
//!
//! # Coming from reqwest
//!
//! [`RequestBuilder`](crate::RequestBuilder) has every setter of reqwest's, with the same names,
//! meanings and Cargo features: [`json(&body)`](crate::RequestBuilder::json),
//! [`query(&pairs)`](crate::RequestBuilder::query), [`form(&pairs)`](crate::RequestBuilder::form),
//! `multipart`, [`header`](crate::RequestBuilder::header), `headers`,
//! [`basic_auth`](crate::RequestBuilder::basic_auth), `bearer_auth`,
//! [`body`](crate::RequestBuilder::body), [`timeout`](crate::RequestBuilder::timeout),
//! `version`, [`try_clone`](crate::RequestBuilder::try_clone),
//! [`build`](crate::RequestBuilder::build). Your chains compile unchanged:
//!
//! ```
//! # #[cfg(feature = "json")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use resilient_http::Client;
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! #[derive(serde::Serialize)]
//! struct NewOrder {
//!     sku: &'static str,
//! }
//! #[derive(serde::Deserialize)]
//! struct Order {
//!     id: u64,
//! }
//!
//! let server = FaultServer::start().await?;
//! server.script("/orders", [Reply::ok(r#"{"id": 7}"#)]);
//! let (client, url, token) = (Client::new()?, server.url("/orders"), "s3cr3t");
//!
//! let order: Order = client
//!     .post(&url)
//!     .bearer_auth(token)
//!     .json(&NewOrder { sku: "A-1" }) // the request's body, as in reqwest
//!     .send()
//!     .await?
//!     .error_for_status()?
//!     .json() // reqwest's Response::json
//!     .await?;
//! assert_eq!(order.id, 7);
//!
//! // Read and decoded inside each attempt: a body cut off mid-way is retried.
//! let order: Order = client.get(&url).recv_json().await?;
//! # let _ = order;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "json"))]
//! # fn main() {}
//! ```
//!
//! Two differences. A failure status (4xx and 5xx by default) is an `Err` once retries are
//! spent, not `Ok(response)` (below). And [`.timeout(d)`](crate::RequestBuilder::timeout)
//! limits the whole call, retries included. To have the body read and decoded *inside* each
//! attempt, so that a cut-off body is retried, use
//! [`recv_json::<T>()`](crate::RequestBuilder::recv_json) (feature `json`),
//! [`text()`](crate::RequestBuilder::text), [`bytes()`](crate::RequestBuilder::bytes) or
//! [`send_with`](crate::RequestBuilder::send_with). The attempt timeout covers the body read
//! after `send()` too; give one download more time with
//! [`.attempt_timeout(Duration::from_secs(300))`](crate::RequestBuilder::attempt_timeout) (and a
//! [`.deadline(..)`](crate::RequestBuilder::deadline) at least as long). With the `gzip`,
//! `brotli`, `zstd` or `deflate` features, answers are decoded as they are read, and the
//! policy's `body_limit` counts decoded bytes, so a small answer that expands past it is
//! [`BodyTooLarge`](crate::ErrorKind::BodyTooLarge).
//!
//! # Coming from reqwest-retry
//!
//! | reqwest-middleware + reqwest-retry | resilient-http |
//! |---|---|
//! | `RetryTransientMiddleware::new_with_policy(ExponentialBackoff::builder().build_with_max_retries(2))` | [`RetryPolicy::builder().max_attempts(3)`](crate::retry::RetryPolicyBuilder::max_attempts) (attempts count the first), given to [`ClientBuilder::retry`](crate::ClientBuilder::retry) |
//! | `ExponentialBackoff`'s bounds and jitter | `backoff_base`, `backoff_max`, `backoff_multiplier`, [`Jitter`](crate::retry::Jitter); or your `backoff` schedule (feature `backoff`) |
//! | `RetryableStrategy`, `Retryable::Transient` / `Fatal` | [`Classifier`](crate::classify::Classifier), [`Class::Transient`](crate::Class::Transient) / `Permanent`, plus [`Delivery`](crate::Delivery) (was it sent?) |
//! | a 5xx left after the retries comes back as `Ok(response)` | `Err(Error)` of kind [`Status`](crate::ErrorKind::Status), with the response kept ([`err.take_response()`](crate::Error::take_response)) and every attempt ([`err.attempts()`](crate::Error::attempts)) |
//! | `Retry-After` ignored | obeyed up to `retry_after_cap`, and it holds the endpoint for every call |
//! | POST retried like GET | POST and PATCH retried only when never sent, or with an `Idempotency-Key` |
//! | a total retry duration | `deadline` (per policy) or [`.deadline(d)`](crate::RequestBuilder::deadline) (per request), counted from the first poll |
//! | a streaming body fails before the first attempt | [`body_with(factory)`](crate::RequestBuilder::body_with), or a stream kept up to `replay_buffer` |
//! | one policy per middleware | per-endpoint [policies](super::policies), per-request `.policy(name)`, `.max_attempts(n)`, `.no_retry()` |
//! | guessing why it stopped from the attempts | [`err.give_up()`](crate::Error::give_up): attempts used up, not idempotent, deadline, budget spent, `Retry-After` above the cap, circuit open, …; [`err.sent()`](crate::Error::sent): whether it may have reached the server |
//! | reqwest-tracing's spans | a `request` span per call and an `attempt` span per attempt; add reqwest-tracing **after** `ResilientMiddleware` for one CLIENT span per exchange: [observability](super::observability) |
//! | — | circuit breakers, retry budget, rate limit, bulkhead, hedging, live reload |
//!
//! # `Ok(503)` becomes `Err`
//!
//! reqwest-retry hands back the last failing response as `Ok`, so every caller must check the
//! status. Here a failure is always an `Err`; the response is still there:
//!
//! ```
//! use resilient_http::{Client, ErrorKind};
//! use resilient_http::testkit::{FaultServer, Reply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = FaultServer::start().await?;
//! server.script("/busy", [Reply::status(503).body("maintenance until 14:00")]);
//!
//! let client = Client::builder().default_policy(
//!     resilient_http::policy::EndpointPolicy::new().backoff_base(std::time::Duration::ZERO),
//! ).build()?;
//! let mut err = client.get(server.url("/busy")).send().await.err().ok_or("a 503 is an error")?;
//! assert_eq!(err.kind(), ErrorKind::Status);
//! assert_eq!(err.attempts().len(), 3, "retried twice");
//! // The last response, as reqwest-retry would have returned it:
//! let response = err.take_response().ok_or("kept")?;
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.text().await?, "maintenance until 14:00");
//! # Ok(())
//! # }
//! ```
//!
//! # A classifier of your own
//!
//! ```
//! use reqwest::StatusCode;
//! use resilient_http::classify::{Classification, Classifier, DefaultClassifier, classify_fn};
//! use resilient_http::{Class, Client};
//!
//! // A 404 from this API means "not replicated yet": worth another try.
//! let classifier = classify_fn(|method, result| match result {
//!     Ok(response) if response.status() == StatusCode::NOT_FOUND => {
//!         Classification::delivered(Class::Transient)
//!     }
//!     _ => DefaultClassifier.classify(method, result),
//! });
//! let client = Client::builder().classifier(classifier).build()?;
//! # let _ = client;
//! # Ok::<(), resilient_http::Error>(())
//! ```

// The page links to items of the `json` feature: docs.rs builds every feature, and a build
// without it would only find those links broken.
#![cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]
