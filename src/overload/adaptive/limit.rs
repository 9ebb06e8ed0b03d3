//! One scope's adaptive limit: the places (a [`Bulkhead`] whose max moves), and the
//! algorithm that moves it, fed by the attempts' ends.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::algorithm::{Algorithm, Sample};
use super::config::AdaptiveConcurrencyConfig;
use crate::overload::bulkhead::{Acquire, Bulkhead, BulkheadConfig, BulkheadPermit};
use crate::overload::pass::Answer;
use crate::telemetry::overload as telemetry;

/// One scope's adaptive limit: the places, and the algorithm that moves their number.
#[derive(Debug)]
pub(crate) struct AdaptiveLimit {
    /// The scope's key, which events name.
    key: Arc<str>,
    places: Arc<Bulkhead>,
    queue_timeout: Duration,
    /// Taken once per sample, by the attempt that ends: a few float operations under it, no
    /// allocation, no I/O (the event is said after it is let go). Contended only by attempts
    /// ending at the same instant; an atomic estimate would need a compare-exchange loop
    /// around the same arithmetic and could not keep the long average and the limit in step.
    moving: Mutex<Moving>,
}

#[derive(Debug)]
struct Moving {
    algorithm: Algorithm,
    /// The limit last said in an event (at first, `initial`): the next is said when the limit
    /// is more than 10 % away from it.
    announced: u32,
    samples: u64,
}

/// An attempt's place under an [`AdaptiveLimit`]: [`end`](Self::end) gives it back with a
/// sample; dropped (the attempt was cancelled), it gives it back and is no sample.
#[derive(Debug)]
pub(crate) struct LimitPermit {
    /// Dropped last, after the sample has moved the limit: a place given back goes to a
    /// waiter only if the new limit has room for it.
    _place: BulkheadPermit,
    limit: Arc<AdaptiveLimit>,
    /// When the attempt went out (`None`: not yet, and never if it is not sent).
    since: Option<Instant>,
    /// Attempts holding a place when it took its own, itself included.
    in_flight: u32,
    /// The call's policy, named in the event if this attempt moves the limit far.
    policy: Option<Arc<str>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under this lock (there is none: float arithmetic) would leave it consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AdaptiveLimit {
    pub(crate) fn new(config: AdaptiveConcurrencyConfig) -> Self {
        let initial = config.initial_limit();
        let places = BulkheadConfig::new(initial, config.queue_timeout);
        AdaptiveLimit {
            key: Arc::from(""),
            places: Arc::new(Bulkhead::new(places)),
            queue_timeout: config.queue_timeout,
            moving: Mutex::new(Moving {
                algorithm: Algorithm::new(&config),
                announced: initial,
                samples: 0,
            }),
        }
    }

    /// Named `key` in its events.
    pub(crate) fn keyed(mut self, key: Arc<str>) -> Self {
        self.key = key;
        self
    }

    /// How long an attempt may queue (the caller bounds it by its deadline too).
    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// A place now, if one is free and nobody queues for it.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<LimitPermit> {
        self.try_acquire_for(None)
    }

    /// [`try_acquire`](Self::try_acquire) for a call of `policy` (named in the events).
    pub(crate) fn try_acquire_for(
        self: &Arc<Self>,
        policy: Option<&Arc<str>>,
    ) -> Option<LimitPermit> {
        let place = self.places.try_acquire()?;
        Some(self.permit(place, policy.cloned()))
    }

    /// Waits for a place until `until`, behind the attempts already waiting (see
    /// [`Bulkhead::acquire`]).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn acquire(self: &Arc<Self>, until: Instant) -> PlaceFuture {
        self.acquire_for(until, None)
    }

    /// [`acquire`](Self::acquire) for a call of `policy`.
    pub(crate) fn acquire_for(
        self: &Arc<Self>,
        until: Instant,
        policy: Option<&Arc<str>>,
    ) -> PlaceFuture {
        let limit = Arc::clone(self);
        let policy = policy.cloned();
        let waiting: Acquire = self.places.acquire(until);
        Box::pin(async move { waiting.await.map(|place| limit.permit(place, policy)) })
    }

    fn permit(self: &Arc<Self>, place: BulkheadPermit, policy: Option<Arc<str>>) -> LimitPermit {
        LimitPermit {
            _place: place,
            limit: Arc::clone(self),
            since: None,
            in_flight: self.places.in_flight(),
            policy,
        }
    }

    /// The limit now.
    pub(crate) fn limit(&self) -> u32 {
        self.places.max()
    }

    /// Attempts holding a place.
    pub(crate) fn in_flight(&self) -> u32 {
        self.places.in_flight()
    }

    /// Attempts waiting for a place.
    pub(crate) fn waiting(&self) -> u32 {
        self.places.waiting()
    }

    /// Latency samples taken so far (cancelled attempts are none).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn samples(&self) -> u64 {
        lock(&self.moving).samples
    }

    /// Whether forgetting it would forget a constraint (asked when the map is full). A limit
    /// with nothing in flight or waiting is forgotten with what it has learned: a scope
    /// unused long enough to be evicted starts over from `initial`.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0 || self.waiting() > 0
    }

    /// Learns from `sample` and moves the places to the algorithm's new limit; the limit
    /// last announced, if this one is more than 10 % away from it (now announced in its
    /// place).
    fn learn(&self, sample: Sample) -> Option<(u32, u32)> {
        let mut moving = lock(&self.moving);
        moving.samples += 1;
        let limit = moving.algorithm.sample(sample);
        // Under the lock: two samples ending together store their limits in their order.
        if limit != self.places.max() {
            self.places.set_max(limit);
        }
        let old = moving.announced;
        if u64::from(limit.abs_diff(old)) * 10 > u64::from(old) {
            moving.announced = limit;
            return Some((old, limit));
        }
        None
    }
}

/// What [`AdaptiveLimit::acquire`] returns.
pub(crate) type PlaceFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<LimitPermit>> + Send>>;

impl LimitPermit {
    /// The attempt went out now (its latency counts from here).
    pub(crate) fn sent(&mut self, at: Instant) {
        self.since = Some(at);
    }

    /// The attempt ended at `now` as `answer` says: a sample for the algorithm (unless
    /// [`Answer::Uncounted`], or it was never sent), and the place back.
    pub(crate) fn end(self, answer: Answer, now: Instant) {
        let dropped = match answer {
            Answer::Accepted => false,
            Answer::Rejected => true,
            Answer::Uncounted => return,
        };
        let Some(since) = self.since else {
            return;
        };
        let sample = Sample {
            rtt: now.saturating_duration_since(since),
            in_flight: self.in_flight,
            dropped,
        };
        let limit = &self.limit;
        if let Some((old, new)) = limit.learn(sample) {
            telemetry::limit_changed(&limit.key, self.policy.as_ref(), old, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    const MS: Duration = Duration::from_millis(1);

    fn limit(config: AdaptiveConcurrencyConfig) -> Arc<AdaptiveLimit> {
        Arc::new(AdaptiveLimit::new(config).keyed(Arc::from("test")))
    }

    /// What the closed loop of [`run`] saw.
    #[derive(Debug)]
    struct Run {
        /// The most attempts at the server at once, after the warm-up.
        most_in_server: u32,
        /// The limit at the end.
        limit: u32,
        /// Answers per second after the warm-up.
        per_second: f64,
    }

    /// `callers` callers in a loop for `secs` seconds of paused time, against a model of the
    /// acceptance test's server: an attempt's latency is `20 ms × max(1, n / capacity)`,
    /// `n` the attempts at the server when it arrives, itself included.
    async fn run(limit: &Arc<AdaptiveLimit>, callers: u32, capacity: u32, secs: u64) -> Run {
        let in_server = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let answers = Arc::new(AtomicU32::new(0));
        let start = Instant::now();
        let warm = start + Duration::from_secs(secs / 2);
        let end = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (limit, in_server) = (limit.clone(), in_server.clone());
                let (most, answers) = (most.clone(), answers.clone());
                tokio::spawn(async move {
                    while Instant::now() < end {
                        let Some(mut place) = limit.acquire(end).await else {
                            break;
                        };
                        let now = Instant::now();
                        place.sent(now);
                        let n = in_server.fetch_add(1, SeqCst) + 1;
                        if now >= warm {
                            most.fetch_max(n, SeqCst);
                        }
                        let latency = 20 * MS * n.max(capacity) / capacity;
                        tokio::time::sleep(latency).await;
                        in_server.fetch_sub(1, SeqCst);
                        if Instant::now() >= warm {
                            answers.fetch_add(1, SeqCst);
                        }
                        place.end(Answer::Accepted, Instant::now());
                    }
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.is_ok());
        }
        Run {
            most_in_server: most.load(SeqCst),
            limit: limit.limit(),
            per_second: f64::from(answers.load(SeqCst)) / (secs / 2) as f64,
        }
    }

    /// The acceptance test's shape on paused time: Vegas (the default) finds a capacity of 8
    /// (64 callers, 10 to 12 at the server after the warm-up, the full 400 answers a
    /// second), and follows it when it doubles.
    #[tokio::test(start_paused = true)]
    async fn vegas_finds_the_capacity_and_follows_it() {
        let limit = limit(AdaptiveConcurrencyConfig::default());
        let first = run(&limit, 64, 8, 10).await;
        assert!((10..=12).contains(&first.most_in_server), "{first:?}");
        assert!(first.limit == first.most_in_server, "{first:?}");
        assert!(first.per_second >= 0.95 * 400.0, "{first:?}");
        let second = run(&limit, 64, 16, 10).await;
        assert!(
            second.limit >= 16 && second.most_in_server <= 32,
            "{second:?}"
        );
        assert!(second.per_second >= 0.95 * 800.0, "{second:?}");
        // Back to 8: it comes down again.
        let third = run(&limit, 64, 8, 10).await;
        assert!(third.most_in_server <= 16, "{third:?}");
    }

    /// Gradient2 and AIMD against the same server, measured: both end far above its
    /// capacity (why Vegas is the default). Gradient2's long average follows the loaded
    /// latency; AIMD sees no drop. Both stop at twice the callers (a sample with fewer than
    /// half the places in use moves nothing).
    #[tokio::test(start_paused = true)]
    async fn gradient2_and_aimd_drift_against_a_latency_that_grows_with_the_queue() {
        for config in [
            AdaptiveConcurrencyConfig::gradient2(),
            AdaptiveConcurrencyConfig::aimd(),
        ] {
            let limit = limit(config);
            let run = run(&limit, 64, 8, 10).await;
            assert!(run.limit > 64 && run.most_in_server == 64, "{run:?}");
            assert!(run.limit <= 129, "{run:?}");
        }
    }

    fn sample(rtt: Duration, in_flight: u32, dropped: bool) -> Sample {
        Sample {
            rtt,
            in_flight,
            dropped,
        }
    }

    #[test]
    fn aimd_backs_off_on_drops_and_slow_answers_and_grows_when_busy() {
        let config = AdaptiveConcurrencyConfig::aimd().initial(10).min(3).max(12);
        let mut aimd = Algorithm::new(&config);
        assert_eq!(aimd.sample(sample(20 * MS, 10, false)), 11);
        assert_eq!(aimd.sample(sample(20 * MS, 10, false)), 12);
        // At its max.
        assert_eq!(aimd.sample(sample(20 * MS, 12, false)), 12);
        // Fewer than half in use: no growth (and no shrink).
        assert_eq!(aimd.sample(sample(20 * MS, 5, false)), 12);
        // A drop: × 0.9, floored (12 → 10.8 → 10).
        assert_eq!(aimd.sample(sample(20 * MS, 12, true)), 10);
        // Slower than the timeout (5 s): a drop.
        assert_eq!(aimd.sample(sample(6000 * MS, 10, false)), 9);
        for _ in 0..20 {
            aimd.sample(sample(20 * MS, 10, true));
        }
        // Never below its min.
        assert_eq!(aimd.sample(sample(20 * MS, 10, true)), 3);
    }

    #[test]
    fn gradient2_shrinks_when_the_latency_rises_and_grows_while_it_is_steady() {
        let config = AdaptiveConcurrencyConfig::gradient2()
            .initial(20)
            .min(2)
            .max(30);
        let mut gradient = Algorithm::new(&config);
        let mut last = 0;
        for _ in 0..10 {
            last = gradient.sample(sample(20 * MS, 20, false));
        }
        // Steady: + smoothing × 4 a sample, up to its max.
        assert!(last > 20, "{last}");
        for _ in 0..100 {
            last = gradient.sample(sample(20 * MS, 30, false));
        }
        assert_eq!(last, 30);
        // Four times the latency: the gradient is 0.5 (its floor), the limit shrinks by
        // about 10 % a sample, down to its min.
        let shrunk = gradient.sample(sample(80 * MS, 30, false));
        assert!((26..30).contains(&shrunk), "{shrunk}");
        for _ in 0..100 {
            last = gradient.sample(sample(80 * MS, 30, false));
        }
        assert!(last < shrunk, "{last}");
        // App-limited samples (fewer than half the places in use) move nothing.
        assert_eq!(gradient.sample(sample(500 * MS, 0, false)), last);
    }

    #[test]
    fn vegas_steps_once_per_round_and_shrinks_on_a_drop() {
        let config = AdaptiveConcurrencyConfig::vegas()
            .initial(10)
            .min(2)
            .max(100);
        let mut vegas = Algorithm::new(&config);
        // A round of 10 at the least latency: nothing queues, + 4.
        let limits: Vec<u32> = (0..10)
            .map(|_| vegas.sample(sample(20 * MS, 10, false)))
            .collect();
        assert_eq!(limits[..9], [10; 9]);
        assert_eq!(limits[9], 14);
        // A round of 14 at twice the latency: 7 queue (more than 4), - 1.
        let limits: Vec<u32> = (0..14)
            .map(|_| vegas.sample(sample(40 * MS, 14, false)))
            .collect();
        assert_eq!(limits[13], 13);
        // 13 × (1 − 20 / 27) = 3.4: 4 queue, within 2 to 4, no step.
        for _ in 0..13 {
            assert_eq!(vegas.sample(sample(27 * MS, 13, false)), 13);
        }
        // 13 × (1 − 20 / 21) = 0.6: at most one queues, + 4.
        for _ in 0..12 {
            vegas.sample(sample(21 * MS, 13, false));
        }
        assert_eq!(vegas.sample(sample(21 * MS, 13, false)), 17);
        // A drop in a round of otherwise unqueued answers: - 1.
        for _ in 0..16 {
            vegas.sample(sample(20 * MS, 17, false));
        }
        assert_eq!(vegas.sample(sample(20 * MS, 17, true)), 16);
    }

    /// A fast drop (a connection refused in 100 µs) is not taken for the unloaded latency:
    /// the limit still grows to its max on healthy answers (it was pinned at 4 by the drop).
    #[test]
    fn vegas_takes_no_outlier_for_the_unloaded_latency() {
        let config = AdaptiveConcurrencyConfig::vegas()
            .initial(10)
            .min(2)
            .max(200);
        let mut vegas = Algorithm::new(&config);
        let micros = Duration::from_micros(100);
        vegas.sample(sample(micros, 10, true));
        let mut last = 0;
        for _ in 0..5000 {
            let in_flight = last.max(10);
            last = vegas.sample(sample(20 * MS, in_flight, false));
        }
        assert_eq!(last, 200);
    }

    /// A cancelled attempt (its permit dropped), one that ended uncounted, and one never
    /// sent give their places back and are no sample; an answered one is.
    #[tokio::test(start_paused = true)]
    async fn only_answered_attempts_are_samples_and_every_place_comes_back()
    -> Result<(), &'static str> {
        let limit = limit(AdaptiveConcurrencyConfig::aimd().initial(4).min(1).max(10));
        let now = Instant::now();
        let mut cancelled = limit.try_acquire().ok_or("no place")?;
        cancelled.sent(now);
        let mut uncounted = limit.try_acquire().ok_or("no place")?;
        uncounted.sent(now);
        let unsent = limit.try_acquire().ok_or("no place")?;
        let mut answered = limit.try_acquire().ok_or("no place")?;
        answered.sent(now);
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.in_flight(), 4);
        drop(cancelled);
        uncounted.end(Answer::Uncounted, now + 20 * MS);
        unsent.end(Answer::Accepted, now + 20 * MS);
        assert_eq!(
            (limit.samples(), limit.limit(), limit.in_flight()),
            (0, 4, 1)
        );
        answered.end(Answer::Accepted, now + 20 * MS);
        // AIMD: + 1 (4 in flight when it took its place, at least half of 4).
        assert_eq!(
            (limit.samples(), limit.limit(), limit.in_flight()),
            (1, 5, 0)
        );
        let mut rejected = limit.try_acquire().ok_or("no place")?;
        rejected.sent(now);
        rejected.end(Answer::Rejected, now + 20 * MS);
        // × 0.9, floored.
        assert_eq!(
            (limit.samples(), limit.limit(), limit.in_flight()),
            (2, 4, 0)
        );
        Ok(())
    }

    /// A waiter queued for a place gets it when a sample raises the limit, not only when a
    /// place is given back; a limit lowered below the attempts in flight lets none in.
    #[tokio::test(start_paused = true)]
    async fn a_raised_limit_lets_a_waiter_in_and_a_lowered_one_drains() -> Result<(), &'static str>
    {
        let limit = limit(AdaptiveConcurrencyConfig::aimd().initial(2).min(1).max(10));
        let now = Instant::now();
        let mut first = limit.try_acquire().ok_or("no place")?;
        first.sent(now);
        let second = limit.try_acquire().ok_or("no place")?;
        let waiter = tokio::spawn(limit.acquire(now + Duration::from_secs(1)));
        tokio::task::yield_now().await;
        assert_eq!(limit.waiting(), 1);
        // Raised to 3 by the first's answer: its place and the new one; the waiter takes one.
        first.end(Answer::Accepted, now + 10 * MS);
        let placed = waiter.await;
        assert!(matches!(placed, Ok(Some(_))));
        assert_eq!(
            (limit.limit(), limit.in_flight(), limit.waiting()),
            (3, 2, 0)
        );
        let mut third = limit.try_acquire().ok_or("no place")?;
        third.sent(now);
        // A drop: 3 × 0.9 → 2, with 3 in flight: none may enter until one has gone.
        third.end(Answer::Rejected, now + 10 * MS);
        assert_eq!((limit.limit(), limit.in_flight()), (2, 2));
        assert!(limit.try_acquire().is_none());
        drop(second);
        assert!(limit.try_acquire().is_some());
        drop(placed);
        Ok(())
    }

    /// The event said when the limit moves more than 10 % from the last one said (and not
    /// for smaller moves).
    #[test]
    fn a_limit_moved_more_than_a_tenth_is_announced() {
        let limit = limit(
            AdaptiveConcurrencyConfig::aimd()
                .initial(20)
                .min(1)
                .max(100),
        );
        let busy = sample(20 * MS, 100, false);
        // 21, 22: within 10 % of 20.
        assert_eq!(limit.learn(busy), None);
        assert_eq!(limit.learn(busy), None);
        // 23: 15 % away.
        assert_eq!(limit.learn(busy), Some((20, 23)));
        assert_eq!(limit.learn(busy), None);
        // A drop: 24 → 21, 8.7 % below 23: not said; another, 18: said.
        assert_eq!(limit.learn(sample(20 * MS, 100, true)), None);
        assert_eq!(limit.learn(sample(20 * MS, 100, true)), Some((23, 18)));
    }
}
