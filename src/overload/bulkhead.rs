//! The bulkhead: at most `max_in_flight` calls at once per endpoint key; a call over it
//! queues for a bounded time, then fails.
//!
//! Not tokio's `Semaphore`: its `release` takes the waiter list's mutex on every call
//! (`batch_semaphore.rs`, `add_permits_locked`), waiters or not. Here the success path is
//! one compare-exchange on the in-flight count to take a place and one decrement (plus a load
//! of the waiter count) to give it back; only a call that has to queue touches a
//! [`Notify`], and a release calls `notify_one` only when someone waits.
//!
//! The queue is not strictly first-come first-served: a woken waiter races new callers for
//! the freed place, and one that loses waits again at the back. Waiting is bounded by the
//! queue timeout and the call's deadline, so no caller waits forever; this keeps the fast
//! path free of any queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A bulkhead: at most `max_in_flight` calls to an endpoint at once; a call over it waits up
/// to `queue_timeout` for a place (less if its deadline comes first), then fails.
///
/// Ranges: `max_in_flight` 1 to 100,000; `queue_timeout` zero (no queueing: fail at once) to
/// an hour.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// Calls at once, at most.
    pub max_in_flight: u32,
    /// How long a call over the limit may wait for a place (zero: not at all).
    pub queue_timeout: Duration,
}

impl BulkheadConfig {
    /// At most `max_in_flight` calls at once; others wait up to `queue_timeout`.
    pub fn new(max_in_flight: u32, queue_timeout: Duration) -> Self {
        BulkheadConfig {
            max_in_flight,
            queue_timeout,
        }
    }
}

/// One endpoint's bulkhead: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Bulkhead {
    in_flight: AtomicU32,
    /// Callers in [`Bulkhead::acquire`]'s slow path, from before their last try to take a
    /// place until they leave it (with a place, without, or dropped).
    waiting: AtomicU32,
    max: u32,
    queue_timeout: Duration,
    released: Notify,
}

/// A place in a [`Bulkhead`], given back when dropped.
#[derive(Debug)]
pub(crate) struct BulkheadPermit {
    bulkhead: Arc<Bulkhead>,
}

/// What [`Bulkhead::acquire`] returns: boxed, since only calls that queue need it.
pub(crate) type Acquire = Pin<Box<dyn Future<Output = Option<BulkheadPermit>> + Send>>;

impl Bulkhead {
    /// An empty bulkhead. A zero `max_in_flight` (refused by the builders and the file first)
    /// counts as 1.
    pub(crate) fn new(config: BulkheadConfig) -> Self {
        Bulkhead {
            in_flight: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            max: config.max_in_flight.max(1),
            queue_timeout: config.queue_timeout,
            released: Notify::new(),
        }
    }

    /// How long a call may queue (the caller bounds it by its deadline too).
    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// A place now, if one is free. Try this first: [`acquire`](Self::acquire) allocates.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<BulkheadPermit> {
        self.take().then(|| BulkheadPermit {
            bulkhead: Arc::clone(self),
        })
    }

    /// Waits for a place until `until` at the latest (the caller passes min(now +
    /// queue_timeout, its deadline)); `None` if none came. An `until` already past tries once
    /// and does not queue. Dropping the future leaves the bulkhead as if it had never been
    /// called, and passes on any wake-up it was given.
    pub(crate) fn acquire(self: &Arc<Self>, until: Instant) -> Acquire {
        Box::pin(Arc::clone(self).queue(until))
    }

    /// Calls at once, at most.
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Calls holding a place.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(SeqCst)
    }

    /// Calls waiting for a place.
    pub(crate) fn waiting(&self) -> u32 {
        self.waiting.load(SeqCst)
    }

    fn take(&self) -> bool {
        let mut current = self.in_flight.load(SeqCst);
        loop {
            if current >= self.max {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(current, current + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self) {
        // With the waiter's increment-then-take in `queue`, a Dekker pair (all four SeqCst):
        // either the waiter's take sees this decrement, or this load sees the waiter, which
        // is then listed in `released` (enabled before its take) and gets the wake-up.
        self.in_flight.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.released.notify_one();
        }
    }

    async fn queue(self: Arc<Self>, until: Instant) -> Option<BulkheadPermit> {
        if let Some(permit) = self.try_acquire() {
            return Some(permit);
        }
        if until <= Instant::now() {
            return None;
        }
        let _waiting = Waiting::enter(&self.waiting);
        let mut timeout = std::pin::pin!(tokio::time::sleep_until(until));
        let mut released = std::pin::pin!(self.released.notified());
        loop {
            // Listed before trying, so that a release after the try wakes this future, not a
            // stored permit that two releases would share (tokio's `Notified::enable` docs).
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                // `released` is dropped here; if a release had already picked it, tokio's
                // `Notified` passes that `notify_one` on to the next waiter when dropped
                // (`drop_notified`), so no wake-up is swallowed. The same holds when the
                // caller drops this future, and when it times out below.
                return Some(permit);
            }
            let woken = std::future::poll_fn(|cx| {
                if released.as_mut().poll(cx).is_ready() {
                    Poll::Ready(true)
                } else if timeout.as_mut().poll(cx).is_ready() {
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if !woken {
                return None;
            }
            // Woken, but a new caller may take the place first: wait again if so.
            released.set(self.released.notified());
        }
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

/// Counts a caller in [`Bulkhead::waiting`] for as long as it lives, however it ends.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;
    use std::task::{Context, Waker};

    const MS: Duration = Duration::from_millis(1);

    fn bulkhead(max: u32) -> Arc<Bulkhead> {
        Arc::new(Bulkhead::new(BulkheadConfig::new(max, 100 * MS)))
    }

    fn poll(future: &mut Acquire) -> Poll<Option<BulkheadPermit>> {
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    fn is_send_static<T: Send + 'static>() {}

    #[test]
    fn permits_and_acquire_futures_are_send_and_static() {
        is_send_static::<BulkheadPermit>();
        is_send_static::<Acquire>();
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_in_flight_and_release_on_drop() {
        let bulkhead = bulkhead(3);
        let permits: Vec<_> = (0..3).map(|_| bulkhead.try_acquire().unwrap()).collect();
        assert!(bulkhead.try_acquire().is_none());
        assert_eq!(bulkhead.in_flight(), 3);
        drop(permits);
        assert_eq!(bulkhead.in_flight(), 0);
        assert!(bulkhead.try_acquire().is_some());
        assert_eq!(bulkhead.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_gets_the_place_released_while_it_waits() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let start = Instant::now();
        let waiter = tokio::spawn(bulkhead.acquire(start + 100 * MS));
        tokio::time::sleep(30 * MS).await;
        assert_eq!(bulkhead.waiting(), 1);
        drop(held);
        let permit = waiter.await.unwrap();
        assert!(permit.is_some());
        assert_eq!(Instant::now(), start + 30 * MS);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_gives_up_at_its_time() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let start = Instant::now();
        assert!(bulkhead.acquire(start + 50 * MS).await.is_none());
        assert_eq!(Instant::now(), start + 50 * MS);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 0));

        // A time already past (zero queue timeout): one try, no queueing.
        assert!(bulkhead.acquire(Instant::now()).await.is_none());
        assert_eq!(Instant::now(), start + 50 * MS);
        drop(held);
        assert!(bulkhead.acquire(Instant::now()).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_passes_its_wake_up_on() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        let mut first = bulkhead.acquire(until);
        let mut second = bulkhead.acquire(until);
        assert!(poll(&mut first).is_pending());
        assert!(poll(&mut second).is_pending());
        assert_eq!(bulkhead.waiting(), 2);

        // The release wakes the first waiter, which is dropped before it runs again.
        drop(held);
        drop(first);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 1));

        // The second waiter got the wake-up (it would otherwise sleep until `until`).
        match poll(&mut second) {
            Poll::Ready(Some(permit)) => drop(permit),
            other => panic!("the wake-up was lost: {other:?}"),
        }
        drop(second);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_leave_no_trace() {
        let bulkhead = bulkhead(2);
        let held: Vec<_> = (0..2).map(|_| bulkhead.try_acquire().unwrap()).collect();
        let until = Instant::now() + Duration::from_secs(1);
        let mut waiters: Vec<_> = (0..10).map(|_| bulkhead.acquire(until)).collect();
        for waiter in &mut waiters {
            assert!(poll(waiter).is_pending());
        }
        assert_eq!(bulkhead.waiting(), 10);
        drop(waiters);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (2, 0));
        drop(held);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    /// Many tasks, each holding a place for a random time or cancelled at a random point
    /// while queued, on paused time: never more than `max` at once, and idle at the end.
    #[tokio::test(start_paused = true)]
    async fn randomly_cancelled_tasks_end_idle() {
        let bulkhead = bulkhead(4);
        let held = Arc::new(AtomicU32::new(0));
        let got = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..200u64)
            .map(|seed| {
                let (bulkhead, held, got) = (bulkhead.clone(), held.clone(), got.clone());
                tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    for _ in 0..50 {
                        let until = Instant::now() + MS * rng.u32(0..20);
                        let cancel = tokio::time::sleep(MS * rng.u32(0..20));
                        tokio::select! {
                            permit = bulkhead.acquire(until) => if let Some(permit) = permit {
                                assert!(held.fetch_add(1, Relaxed) < 4);
                                got.fetch_add(1, Relaxed);
                                tokio::time::sleep(MS * rng.u32(0..5)).await;
                                held.fetch_sub(1, Relaxed);
                                drop(permit);
                            },
                            () = cancel => {}
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(got.load(Relaxed) > 500, "{}", got.load(Relaxed));
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    /// `places` places released on as many threads while as many waiters arrive on others,
    /// each thread starting at a random offset (spinning, so that the offsets sweep the few
    /// nanoseconds where a release and an arrival cross), many times over. Each waiter is
    /// polled once, with a waker that records being woken; after the round, woken waiters are
    /// polled again until none is. A waiter left pending and never woken, with places free,
    /// is a lost wake-up: found without waiting for any timer.
    fn race_releases_and_arrivals(places: u32, rounds: usize) {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::task::Wake;

        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, SeqCst);
            }
        }
        type Waiter = (Acquire, Arc<Flag>, Poll<Option<BulkheadPermit>>);

        /// Waits for `counter` to reach `value`; false if the round was called off.
        fn spin_until(counter: &AtomicUsize, value: usize) -> bool {
            loop {
                match counter.load(SeqCst) {
                    usize::MAX => return false,
                    now if now >= value => return true,
                    _ => std::thread::yield_now(),
                }
            }
        }
        fn spin(rng: &mut fastrand::Rng) {
            for _ in 0..rng.u32(0..400) {
                std::hint::spin_loop();
            }
        }

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _time = runtime.enter();
        let bulkhead = bulkhead(places);
        let until = Instant::now() + Duration::from_secs(3600);
        let held: Vec<Mutex<Option<BulkheadPermit>>> =
            (0..places).map(|_| Mutex::default()).collect();
        let waiters: Vec<Mutex<Option<Waiter>>> = (0..places).map(|_| Mutex::default()).collect();
        let racers = 2 * places as usize;
        let (start, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut lost = None;
        std::thread::scope(|scope| {
            for side in 0..places as usize {
                let (held, start, done) = (&held[side], &start, &done);
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(side as u64);
                    for round in 1..=rounds {
                        if !spin_until(start, round) {
                            return;
                        }
                        spin(&mut rng);
                        drop(held.lock().unwrap().take());
                        done.fetch_add(1, SeqCst);
                    }
                });
                let (waiter, bulkhead) = (&waiters[side], &bulkhead);
                let handle = runtime.handle().clone();
                scope.spawn(move || {
                    let _time = handle.enter();
                    let mut rng = fastrand::Rng::with_seed(1000 + side as u64);
                    for round in 1..=rounds {
                        if !spin_until(start, round) {
                            return;
                        }
                        spin(&mut rng);
                        let mut acquire = bulkhead.acquire(until);
                        let flag = Arc::new(Flag(AtomicBool::new(false)));
                        let waker = Waker::from(flag.clone());
                        let first = acquire.as_mut().poll(&mut Context::from_waker(&waker));
                        *waiter.lock().unwrap() = Some((acquire, flag, first));
                        done.fetch_add(1, SeqCst);
                    }
                });
            }
            for round in 1..=rounds {
                for place in &held {
                    *place.lock().unwrap() = Some(bulkhead.try_acquire().unwrap());
                }
                start.store(round, SeqCst);
                assert!(spin_until(&done, round * racers));
                let mut all: Vec<Waiter> = waiters
                    .iter()
                    .map(|w| w.lock().unwrap().take().unwrap())
                    .collect();
                let mut woken = true;
                while woken {
                    woken = false;
                    for (acquire, flag, state) in &mut all {
                        if state.is_pending() && flag.0.swap(false, SeqCst) {
                            woken = true;
                            let waker = Waker::from(flag.clone());
                            *state = acquire.as_mut().poll(&mut Context::from_waker(&waker));
                        }
                    }
                }
                let served = all
                    .iter()
                    .all(|(_, _, state)| matches!(state, Poll::Ready(Some(_))));
                drop(all);
                if !served {
                    // Called off, so that the threads end and the test fails, not hangs.
                    lost = Some(round);
                    start.store(usize::MAX, SeqCst);
                    break;
                }
                assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
            }
        });
        assert_eq!(
            lost, None,
            "in this round, a waiter was never woken with a place free"
        );
    }

    /// The Dekker pair: one release against one arrival.
    #[test]
    fn a_release_crossing_an_arrival_loses_no_wake_up() {
        race_releases_and_arrivals(1, 50_000);
    }

    /// Two releases against two arrivals: two wake-ups must not merge into one.
    #[test]
    fn releases_crossing_arrivals_lose_no_wake_up() {
        race_releases_and_arrivals(2, 20_000);
    }

    /// Real threads racing releases against new waiters (the Dekker pair), some waiters
    /// cancelled after a few polls: a lost wake-up would leave a waiter asleep until its
    /// minute is up, with places free; no call may come back empty.
    #[test]
    fn threads_racing_lose_no_wake_up() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        let bulkhead = bulkhead(2);
        let held = Arc::new(AtomicU32::new(0));
        runtime.block_on(async {
            let tasks: Vec<_> = (0..16u64)
                .map(|seed| {
                    let (bulkhead, held) = (bulkhead.clone(), held.clone());
                    tokio::spawn(async move {
                        let mut rng = fastrand::Rng::with_seed(seed);
                        for _ in 0..2000 {
                            let until = Instant::now() + Duration::from_secs(60);
                            let mut acquire = bulkhead.acquire(until);
                            if rng.u8(0..4) == 0 {
                                // Cancelled after a few polls, whatever state it is in.
                                for _ in 0..rng.u8(1..4) {
                                    if let Poll::Ready(permit) = std::future::poll_fn(|cx| {
                                        Poll::Ready(acquire.as_mut().poll(cx))
                                    })
                                    .await
                                    {
                                        assert!(permit.is_some());
                                        break;
                                    }
                                    tokio::task::yield_now().await;
                                }
                                continue;
                            }
                            let permit = acquire.await.expect("a wake-up was lost");
                            assert!(held.fetch_add(1, Relaxed) < 2);
                            tokio::task::yield_now().await;
                            held.fetch_sub(1, Relaxed);
                            drop(permit);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }
}
