use tower::Layer;

use super::{Classify, DefaultClassifier};

/// Applies a [`Classifier`](super::Classifier) to every attempt; see [`Classify`].
#[derive(Clone, Debug, Default)]
pub struct ClassifyLayer<C = DefaultClassifier> {
    classifier: C,
}

impl<C> ClassifyLayer<C> {
    /// A layer that sorts outcomes with `classifier`.
    pub fn new(classifier: C) -> Self {
        ClassifyLayer { classifier }
    }
}

impl<S, C: Clone> Layer<S> for ClassifyLayer<C> {
    type Service = Classify<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Classify::new(inner, self.classifier.clone())
    }
}
