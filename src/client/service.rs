//! The client's stack as a `tower::Service`, for users' own `ServiceBuilder`s.

use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;

use crate::call::{Call, ClientSender, Which};
use crate::error::Error;
use crate::pending::Pending;
use crate::policy::Policies;
use crate::read::Reader;

/// The [`Client`](crate::Client)'s stack as a tower service; see [`Client::service`](crate::Client::service).
#[derive(Clone, Debug)]
pub struct PolicyService {
    pub(super) http: reqwest::Client,
    pub(super) policies: Arc<ArcSwap<Policies>>,
}

// No `get_mut`: calls leave some attempt limits to the `reqwest::Client`'s own timeout, which
// the client was built with, so another one put in its place could leave attempts unbounded.
impl PolicyService {
    /// The `reqwest::Client` every attempt goes out on (see [`Client::reqwest_client`](crate::Client::reqwest_client)).
    pub fn get_ref(&self) -> &reqwest::Client {
        &self.http
    }

    /// The `reqwest::Client` every attempt goes out on; this service is consumed.
    pub fn into_inner(self) -> reqwest::Client {
        self.http
    }
}

impl tower::Service<reqwest::Request> for PolicyService {
    type Response = reqwest::Response;
    type Error = Error;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A call waits for nothing before it starts: reqwest's client is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        // The policies in force now, for the whole call (a reload changes later calls only).
        let policies = self.policies.load_full();
        let index = policies.select_index(request.method(), request.url());
        Pending::call(Call::new(
            ClientSender::new(self.http.clone(), policies.client_timeout),
            policies,
            Which::Shared(index),
            request,
            Reader::response(),
            false,
        ))
    }
}
