//! Coming from reqwest-middleware and reqwest-retry: what maps to what.
//!
//! Keep your `ClientWithMiddleware` and swap `RetryTransientMiddleware` for
//! [`ResilientMiddleware`](crate::middleware::ResilientMiddleware) (see
//! [tower](super::tower#reqwest-middleware)), or move to [`Client`](crate::Client), whose
//! [`RequestBuilder`](crate::RequestBuilder) mirrors reqwest's.
//!
//! | reqwest-middleware + reqwest-retry | resilient-http |
//! |---|---|
//! | `RetryTransientMiddleware::new_with_policy(ExponentialBackoff::builder().build_with_max_retries(2))` | [`RetryPolicy::builder().max_attempts(3)`](crate::retry::RetryPolicyBuilder::max_attempts) (attempts count the first), given to [`ClientBuilder::retry`](crate::ClientBuilder::retry) |
//! | `ExponentialBackoff`'s bounds and jitter | `backoff_base`, `backoff_max`, `backoff_multiplier`, [`Jitter`](crate::retry::Jitter); or your `backoff` schedule (feature `backoff`) |
//! | `RetryableStrategy`, `Retryable::Transient` / `Fatal` | [`Classifier`](crate::classify::Classifier), [`Class::Transient`](crate::Class::Transient) / `Permanent`, plus [`Delivery`](crate::Delivery) (was it sent?) |
//! | a 5xx left after the retries comes back as `Ok(response)` | `Err(Error)` of kind [`Status`](crate::ErrorKind::Status), with the response kept ([`err.take_response()`](crate::Error::take_response)) and every attempt ([`err.attempts()`](crate::Error::attempts)) |
//! | `Retry-After` ignored | obeyed up to `retry_after_cap`, and it holds the endpoint for every call |
//! | POST retried like GET | POST and PATCH retried only when never sent, or with an `Idempotency-Key` |
//! | a total retry duration | `total_deadline` (per policy) or [`.deadline(d)`](crate::RequestBuilder::deadline) (per request), counted from the first poll |
//! | a streaming body fails before the first attempt | [`body_with(factory)`](crate::RequestBuilder::body_with), or a stream kept up to `replay_buffer` |
//! | one policy per middleware | per-endpoint [policies](super::policies), per-request `.policy(name)`, `.max_attempts(n)`, `.no_retry()` |
//! | reqwest-tracing's spans | a `request` span per call and an `attempt` span per attempt: [observability](super::observability) |
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
