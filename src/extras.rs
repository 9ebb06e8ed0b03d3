//! A policy's own code around each attempt: a hook before it, a credentials refresh on 401,
//! a body classifier, the user's attempt layers. Kept apart from the policy's settings so
//! that a policy without any costs a call one null check.

use std::sync::Arc;

use crate::classify::BodyClassifier;
use crate::error::BoxError;
use crate::hook::{AttemptHook, AuthRefresher};

/// A policy's code around attempts; `None` in the policy when it has none, so a call without
/// them pays one null check.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    pub(crate) hook: Option<Arc<dyn AttemptHook>>,
    pub(crate) refresher: Option<Arc<dyn AuthRefresher>>,
    pub(crate) body_classifier: Option<Arc<dyn BodyClassifier>>,
    pub(crate) attempt_service: Option<AttemptService>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("hook", &self.hook.as_ref().map(|h| h.name().to_owned()))
            .field("refresher", &self.refresher.is_some())
            .field("body_classifier", &self.body_classifier.is_some())
            .field("attempt_service", &self.attempt_service.is_some())
            .finish()
    }
}

impl Extras {
    /// These, with `more` taking precedence where it sets something.
    pub(crate) fn overlaid(&self, more: &Extras) -> Extras {
        Extras {
            hook: more.hook.clone().or_else(|| self.hook.clone()),
            refresher: more.refresher.clone().or_else(|| self.refresher.clone()),
            body_classifier: more
                .body_classifier
                .clone()
                .or_else(|| self.body_classifier.clone()),
            attempt_service: more
                .attempt_service
                .clone()
                .or_else(|| self.attempt_service.clone()),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hook.is_none()
            && self.refresher.is_none()
            && self.body_classifier.is_none()
            && self.attempt_service.is_none()
    }
}

/// A user's layers over the `reqwest::Client`, run for each attempt.
pub(crate) type AttemptService =
    tower::util::BoxCloneSyncService<reqwest::Request, reqwest::Response, BoxError>;
