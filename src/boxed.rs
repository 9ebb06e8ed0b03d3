//! The one boxed future type of the crate, on the ground floor: user code (hooks, readers,
//! refreshers, request bodies) hands its futures over in it, and every floor that runs them
//! names it (public as `hook::BoxFuture`).

use std::future::Future;
use std::pin::Pin;

/// A future that can be sent to another thread, boxed.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
