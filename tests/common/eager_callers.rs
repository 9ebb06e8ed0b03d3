//! What the fleet tests and the fleet bench measure a shared rate limit with: callers that
//! take every slot they are granted, and the most slots granted within any span.
// Each file uses what it needs of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilient_http::fleet::SharedRate;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

/// Callers on shared rates, each taking a slot whenever one is granted (sleeping the wait it
/// is told, never past the end), until the end.
pub struct EagerCallers {
    tasks: Vec<JoinHandle<()>>,
    granted: Arc<Mutex<Vec<Instant>>>,
}

impl EagerCallers {
    /// `each` callers on every one of `rates`, from now until `end`.
    pub fn start(rates: &[SharedRate], each: usize, end: Instant) -> Self {
        let granted = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for rate in rates {
            for _ in 0..each {
                let (rate, granted) = (rate.clone(), granted.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            return;
                        }
                        match rate.try_take(now) {
                            Ok(()) => granted.lock().unwrap().push(now),
                            Err(wait) => sleep(wait.min(end - now)).await,
                        }
                    }
                }));
            }
        }
        EagerCallers { tasks, granted }
    }

    /// Waits until they end: the instants their slots were granted at, in order.
    pub async fn granted(self) -> Vec<Instant> {
        for task in self.tasks {
            task.await.unwrap();
        }
        let mut granted = Arc::try_unwrap(self.granted).unwrap().into_inner().unwrap();
        granted.sort();
        granted
    }
}

/// The most instants of `sorted` within any closed span of `span`.
pub fn most_within(sorted: &[Instant], span: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while *at - sorted[first] > span {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Asserts that `sorted` holds at most `bound(span)` instants within any closed span of each
/// of `spans`.
pub fn assert_within(sorted: &[Instant], spans: &[Duration], bound: impl Fn(Duration) -> usize) {
    for span in spans {
        let most = most_within(sorted, *span);
        assert!(
            most <= bound(*span),
            "{most} in {span:?}: over {}",
            bound(*span)
        );
    }
}
