//! The errors of users' tower layers (attempt layers, outer layers), sorted: this crate's
//! keep their meaning, tower's timeout is a timeout, anything else is the layer's refusal.

use crate::error::{BoxError, Error, ErrorKind};
use crate::outcome::{Class, Delivery};

/// The error of a user's tower layer (`what` says which): this crate's keeps its meaning,
/// tower's timeout is the error `timed_out` makes (the caller's clock, from
/// `timeout::in_layer`), and any other is the layer's own refusal, a permanent
/// [`ErrorKind::Hook`] that the breaker does not count.
pub(crate) fn layer_error(error: BoxError, what: &str, timed_out: impl FnOnce() -> Error) -> Error {
    let error = match error.downcast::<Error>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    let sorted = if is_tower_timeout(&*error) {
        timed_out()
    } else {
        Error::new(ErrorKind::Hook, Class::Permanent, Delivery::NotSent)
    };
    sorted
        .with_detail(format!("{what} failed: {error}"))
        .with_foreign_source(error)
}

/// Whether `error` is tower's timeout, or wraps one (as `tower::buffer` does).
pub(crate) fn is_tower_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .take(32)
        .any(|e| e.is::<tower::timeout::error::Elapsed>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeout::{Clock, in_layer};

    #[derive(Debug)]
    struct Wrapped(tower::timeout::error::Elapsed);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("buffered service failed")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// `tower::buffer` and others wrap the timeout: it is still the timeout.
    #[test]
    fn a_wrapped_tower_timeout_is_a_timeout() {
        let wrapped: BoxError = Box::new(Wrapped(tower::timeout::error::Elapsed::new()));
        let error = layer_error(wrapped, "a layer", || in_layer(Clock::Attempt));
        assert_eq!(error.kind(), ErrorKind::AttemptTimeout);
        assert!(error.is_transient());
        let refused: BoxError = "full".into();
        assert_eq!(
            layer_error(refused, "a layer", || in_layer(Clock::Attempt)).kind(),
            ErrorKind::Hook
        );
    }
}
