//! The caller's code (hooks, readers, refreshers, body classifiers) run so that a panic or a
//! failure of it ends the call with a typed error naming it, never a crash of the caller; a
//! breaker's state-change callback, which no call owns, is caught and logged instead.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use crate::boxed::BoxFuture;
use crate::error::{Error, ErrorKind};
use crate::outcome::{Class, Delivery};

/// Polls a future of user code, turning a panic into an error.
pub(crate) fn poll_caught<T: Send + 'static>(
    future: &mut BoxFuture<Result<T, Error>>,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<Result<T, Error>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(panic) => Poll::Ready(Err(hook_failed(what, panic_message(&*panic)))),
    }
}

/// Calls user code (`what` names it), turning a panic into an error.
pub(crate) fn caught<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Error> {
    panicked(f).map_err(|message| hook_failed(what, message))
}

/// Calls user code that has no caller to fail (a breaker's state-change callback), turning a
/// panic into its message: `panicked: …`.
pub(crate) fn panicked<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| panic_message(&*panic))
}

/// Calls user code that starts a future, turning a panic into an error.
pub(crate) fn call_caught<T: Send + 'static>(
    what: &str,
    start: impl FnOnce() -> BoxFuture<Result<T, Error>>,
) -> BoxFuture<Result<T, Error>> {
    match std::panic::catch_unwind(AssertUnwindSafe(start)) {
        Ok(future) => future,
        Err(panic) => {
            let error = hook_failed(what, panic_message(&*panic));
            Box::pin(std::future::ready(Err(error)))
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("panicked: {message}")
}

/// The error of a hook (`what` names it) that failed with `message`.
pub(crate) fn hook_failed(what: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Hook, Class::Permanent, Delivery::NotSent)
        .with_detail(format!("{what} {message}"))
}
