//! What the end-to-end tests of the overload guards and hedging share: a caller of either
//! kind (the client's own call, or the reqwest-middleware adapter) built from one builder.
#![allow(dead_code)]

use std::time::Duration;

use resilient_http::middleware::ResilientMiddleware;
use resilient_http::overload::OverloadHandle;
use resilient_http::policy::EndpointPolicy;
use resilient_http::retry::{Jitter, RetryHistory, RetryPolicy};
use resilient_http::testkit::FaultServer;
use resilient_http::{Attempt, AttemptOutcome, Client, ClientBuilder, Error};

pub const MS: Duration = Duration::from_millis(1);
pub const SECOND: Duration = Duration::from_secs(1);

/// The two ways a call runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Via {
    Client,
    Middleware,
}

/// A client of either kind, built from the same builder.
#[derive(Clone)]
pub enum Caller {
    Client(Client),
    Middleware(reqwest_middleware::ClientWithMiddleware),
}

impl Caller {
    pub fn new(via: Via, builder: ClientBuilder) -> Self {
        match via {
            Via::Client => Caller::Client(builder.build().unwrap()),
            Via::Middleware => Caller::Middleware(
                reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(ResilientMiddleware::new(builder).unwrap())
                    .build(),
            ),
        }
    }

    /// GETs `url`, within `deadline` if given (the client's `.deadline`, the request's
    /// `.timeout` through the adapter, which makes it the call's deadline), and reads the body.
    pub async fn get(&self, url: &str, deadline: Option<Duration>) -> Result<(u16, String), Error> {
        let response = match self {
            Caller::Client(client) => {
                let mut request = client.get(url);
                if let Some(deadline) = deadline {
                    request = request.deadline(deadline);
                }
                request.send().await?
            }
            Caller::Middleware(client) => {
                let mut request = client.get(url);
                if let Some(deadline) = deadline {
                    request = request.timeout(deadline);
                }
                match request.send().await {
                    Ok(response) => response,
                    Err(reqwest_middleware::Error::Middleware(err)) => {
                        return Err(err.downcast::<Error>().expect("a typed error"));
                    }
                    Err(reqwest_middleware::Error::Reqwest(err)) => return Err(err.into()),
                }
            }
        };
        let status = response.status().as_u16();
        let body = response.text().await.map_err(Error::from)?;
        Ok((status, body))
    }

    /// The guards of `server`'s endpoint under the default policy (the client only).
    pub fn guards(&self, server: &FaultServer) -> Option<OverloadHandle> {
        match self {
            Caller::Client(client) => {
                let key = format!("http://{}", server.addr());
                Some(
                    client
                        .overload("default", &key)
                        .expect("the endpoint was called"),
                )
            }
            Caller::Middleware(_) => None,
        }
    }
}

/// No jitter, 100 ms × 2: delays 100, 200 ms.
pub fn plain(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

pub fn builder(attempts: u32, policy: EndpointPolicy) -> ClientBuilder {
    Client::builder()
        .retry(plain(attempts))
        .no_circuit_breaker()
        .default_policy(policy)
}

pub fn outcomes(err: &Error) -> Vec<AttemptOutcome> {
    err.attempts().iter().map(|a| a.outcome).collect()
}

pub fn status_503() -> AttemptOutcome {
    AttemptOutcome::Status(http::StatusCode::SERVICE_UNAVAILABLE)
}

/// What a call that succeeded came back with.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Its attempts, when it took more than one.
    pub history: Vec<Attempt>,
}

impl Caller {
    /// Sends `method` to `url` with `headers`, and reads the body.
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, Error> {
        let response = match self {
            Caller::Client(client) => {
                let mut request = client.request(method, url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send().await?
            }
            Caller::Middleware(client) => {
                let mut request = client.request(method, url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                match request.send().await {
                    Ok(response) => response,
                    Err(reqwest_middleware::Error::Middleware(err)) => {
                        return Err(err.downcast::<Error>().expect("a typed error"));
                    }
                    Err(reqwest_middleware::Error::Reqwest(err)) => return Err(err.into()),
                }
            }
        };
        let status = response.status().as_u16();
        let history = response
            .extensions()
            .get::<RetryHistory>()
            .map(|h| h.0.clone())
            .unwrap_or_default();
        let body = response.text().await.map_err(Error::from)?;
        Ok(Answer {
            status,
            body,
            history,
        })
    }
}
