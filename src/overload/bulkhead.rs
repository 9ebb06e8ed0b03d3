//! The bulkhead: at most `max_in_flight` calls at once per endpoint key; a call over it
//! queues for a bounded time, then fails.
//!
//! First come, first served while anyone waits: a place given back while calls queue goes
//! straight to the longest waiter (it never becomes free for anyone else), and a new call
//! takes a free place at once only when nobody queues. So a caller that ends a call and
//! calls again queues behind those already waiting instead of taking its place back before
//! the woken waiter runs, and a queued call's wait is bounded by the turnover ahead of it,
//! not by luck.
//!
//! Not tokio's `Semaphore` (which is fair too): its `release` takes the waiter list's mutex
//! on every call (`batch_semaphore.rs`, `add_permits_locked`), waiters or not. Here the
//! places in flight and the calls waiting are one atomic word, so the success path is one
//! compare-exchange to take a place (refused while anyone waits) and one subtraction to give
//! it back, whose result says whether anyone waits; only then does the release take the
//! queue's lock, to hand the place over. A call that has to queue takes the lock and
//! allocates its turn.
//!
//! A waiter that leaves (its time is up, or its future is dropped) before its turn leaves
//! no trace; one dropped after it was handed a place passes the place on, to the next
//! waiter or back to the count.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::bounds;

/// One waiter, in [`Bulkhead::count`]: the waiters are counted in its upper 32 bits.
const WAITER: u64 = 1 << 32;
/// The places in flight, in [`Bulkhead::count`]'s lower 32 bits.
const IN_FLIGHT: u64 = WAITER - 1;

/// A bulkhead: at most `max_in_flight` calls to an endpoint at once; a call over it waits up
/// to `queue_timeout` for a place (less if its deadline comes first), then fails. Waiting
/// calls get places in the order they came.
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
    /// At most `max_in_flight` calls at once; others wait up to `queue_timeout`, first come,
    /// first served.
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
    /// Places in flight (lower 32 bits, at most `max`) and calls queued (upper 32 bits: as
    /// many as `queue` has waiting turns), in one word: taking a place and seeing that
    /// nobody waits are one step, and so are giving one back and seeing that someone does.
    /// The waiters change only under `queue`'s lock.
    count: AtomicU64,
    /// Places at most: fixed for a bulkhead, moved by an adaptive limit
    /// ([`set_max`](Self::set_max)).
    max: AtomicU32,
    queue_timeout: Duration,
    queue: Mutex<Queue>,
}

/// The waiting calls' turns, oldest first.
#[derive(Debug, Default)]
struct Queue {
    turns: VecDeque<Arc<Turn>>,
    /// Turns in `turns` whose waiters left before their turn came: skipped when reached,
    /// swept out when they are half the queue (so that waiters timing out while no place
    /// is freed cannot grow it without bound).
    gone: usize,
}

/// A queued call's turn, shared by the queue and the waiting future.
#[derive(Debug, Default)]
struct Turn(Mutex<TurnState>);

#[derive(Debug, Default)]
struct TurnState {
    stage: Stage,
    /// The waiting future's, to wake when its place comes.
    waker: Option<Waker>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Stage {
    #[default]
    Waiting,
    /// Handed a place: it is counted in flight, and belongs to the waiter.
    Placed,
    /// The waiter left without a place.
    Gone,
}

/// A place in a [`Bulkhead`], given back when dropped.
#[derive(Debug)]
pub(crate) struct BulkheadPermit {
    bulkhead: Arc<Bulkhead>,
}

/// What [`Bulkhead::acquire`] returns: boxed, since only calls that queue need it.
pub(crate) type Acquire = Pin<Box<dyn Future<Output = Option<BulkheadPermit>> + Send>>;

/// A lock that a panic elsewhere does not poison: every update under these locks leaves
/// them consistent at each step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Bulkhead {
    /// An empty bulkhead. A zero `max_in_flight` (refused by the builders and the file first)
    /// counts as 1.
    pub(crate) fn new(config: BulkheadConfig) -> Self {
        Bulkhead {
            count: AtomicU64::new(0),
            max: AtomicU32::new(config.max_in_flight.max(1)),
            queue_timeout: config.queue_timeout,
            queue: Mutex::default(),
        }
    }

    /// How long a call may queue (the caller bounds it by its deadline too).
    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// A place now, if one is free and nobody queues for it. Try this first:
    /// [`acquire`](Self::acquire) allocates.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<BulkheadPermit> {
        self.take().then(|| BulkheadPermit {
            bulkhead: Arc::clone(self),
        })
    }

    /// Waits for a place until `until` at the latest (the caller passes min(now +
    /// queue_timeout, its deadline)), behind the calls already waiting; `None` if none came.
    /// An `until` already past tries once and does not queue. Dropping the future leaves the
    /// bulkhead as if it had never been called, and passes on any place it was handed.
    pub(crate) fn acquire(self: &Arc<Self>, until: Instant) -> Acquire {
        Box::pin(Arc::clone(self).queue(until))
    }

    /// Calls at once, at most.
    pub(crate) fn max(&self) -> u32 {
        self.max.load(SeqCst)
    }

    /// Moves the most calls at once to `max` (at least 1). Raised, the places it frees go to
    /// the waiters at once, oldest first; lowered, no call loses its place: the calls in
    /// flight drain below it as they end, and no place is taken or handed over meanwhile.
    ///
    /// Against a release or an arrival at the same time: the new max is stored before the
    /// hand-over looks at the queue, and both `take` and `place_next` read it after their
    /// own step on the count, so a waiter that queued after the store hands itself the
    /// place on arrival (as for a release, see [`release`](Self::release)).
    pub(crate) fn set_max(&self, max: u32) {
        let max = max.max(1);
        if self.max.swap(max, SeqCst) < max && self.waiting() > 0 {
            self.hand_over();
        }
    }

    /// Calls holding a place.
    pub(crate) fn in_flight(&self) -> u32 {
        (self.count.load(SeqCst) & IN_FLIGHT) as u32
    }

    /// Calls waiting for a place.
    pub(crate) fn waiting(&self) -> u32 {
        (self.count.load(SeqCst) >> 32) as u32
    }

    /// The fast path: a free place, unless someone waits (the place is theirs).
    fn take(&self) -> bool {
        let mut current = self.count.load(SeqCst);
        loop {
            if current >= WAITER || current & IN_FLIGHT >= u64::from(self.max()) {
                return false;
            }
            match self
                .count
                .compare_exchange_weak(current, current + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self) {
        // Freed for everyone only if nobody waits, in the same step; otherwise no new call
        // can take it (`take` refuses while anyone waits) until `hand_over` gives it to the
        // head of the queue. A waiter that queues after this subtraction sees the place free
        // when it hands over on arrival.
        if self.count.fetch_sub(1, SeqCst) >= WAITER {
            self.hand_over();
        }
    }

    /// Hands the free places to the waiters at the head of the queue, oldest first, waking
    /// each after the lock is let go.
    fn hand_over(&self) {
        loop {
            let placed = self.place_next(&mut lock(&self.queue));
            match placed {
                Some(Some(waker)) => waker.wake(),
                // Placed before its first wait: it finds its place when it looks.
                Some(None) => {}
                None => return,
            }
        }
    }

    /// Under the queue's lock: gives a free place to the oldest waiter, if there are both;
    /// `Some` with its waker if it did.
    fn place_next(&self, queue: &mut Queue) -> Option<Option<Waker>> {
        let turn = loop {
            let turn = queue.turns.pop_front()?;
            if lock(&turn.0).stage == Stage::Waiting {
                break turn;
            }
            queue.gone -= 1;
        };
        // The place and the waiter, in one step: the waiter leaves the count as the place
        // becomes its own (stages change only under the queue's lock, so it cannot leave
        // meanwhile).
        let mut current = self.count.load(SeqCst);
        loop {
            if current & IN_FLIGHT >= u64::from(self.max()) {
                queue.turns.push_front(turn);
                return None;
            }
            match self
                .count
                .compare_exchange_weak(current, current + 1 - WAITER, SeqCst, SeqCst)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let mut state = lock(&turn.0);
        state.stage = Stage::Placed;
        Some(state.waker.take())
    }

    /// Queues a turn at the back, counted among the waiters, and hands over any place free.
    fn join(self: &Arc<Self>) -> InLine {
        let turn = Arc::new(Turn::default());
        {
            let mut queue = lock(&self.queue);
            queue.turns.push_back(Arc::clone(&turn));
            self.count.fetch_add(WAITER, SeqCst);
        }
        // A place given back since this call's first try (its release saw no waiter).
        self.hand_over();
        InLine {
            bulkhead: Arc::clone(self),
            turn,
            done: false,
        }
    }

    async fn queue(self: Arc<Self>, until: Instant) -> Option<BulkheadPermit> {
        if let Some(permit) = self.try_acquire() {
            return Some(permit);
        }
        if until <= Instant::now() {
            return None;
        }
        let in_line = self.join();
        let mut timeout = std::pin::pin!(tokio::time::sleep_until(until));
        let placed = std::future::poll_fn(|cx| {
            if in_line.poll_placed(cx) {
                Poll::Ready(true)
            } else if timeout.as_mut().poll(cx).is_ready() {
                Poll::Ready(false)
            } else {
                Poll::Pending
            }
        })
        .await;
        in_line.end(placed)
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

/// A call's turn in the queue, for as long as it waits: however its wait ends (placed, out
/// of time, dropped), it leaves the queue and the count as they would be without it.
struct InLine {
    bulkhead: Arc<Bulkhead>,
    turn: Arc<Turn>,
    /// Left the queue (by [`end`](Self::end)).
    done: bool,
}

impl InLine {
    /// Whether the turn came; if not, wakes `cx` when it does.
    fn poll_placed(&self, cx: &Context<'_>) -> bool {
        let mut state = lock(&self.turn.0);
        if state.stage == Stage::Placed {
            return true;
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        false
    }

    /// The wait is over: the place if it came (`placed`); else out of the queue, passing on
    /// a place handed over after the time was up.
    fn end(mut self, placed: bool) -> Option<BulkheadPermit> {
        self.done = true;
        if placed {
            return Some(BulkheadPermit {
                bulkhead: Arc::clone(&self.bulkhead),
            });
        }
        if self.leave() {
            self.bulkhead.release();
        }
        None
    }

    /// Out of the queue; true if a place had been handed over first (it is the caller's to
    /// give back).
    fn leave(&self) -> bool {
        let mut queue = lock(&self.bulkhead.queue);
        let mut state = lock(&self.turn.0);
        match state.stage {
            Stage::Placed => true,
            Stage::Gone => false,
            Stage::Waiting => {
                state.stage = Stage::Gone;
                state.waker = None;
                drop(state);
                self.bulkhead.count.fetch_sub(WAITER, SeqCst);
                queue.gone += 1;
                if 2 * queue.gone > queue.turns.len() {
                    queue
                        .turns
                        .retain(|turn| lock(&turn.0).stage == Stage::Waiting);
                    queue.gone = 0;
                }
                false
            }
        }
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        if !self.done && self.leave() {
            // Handed a place, then dropped before it looked: the place goes on, to the next
            // waiter or back to the count.
            self.bulkhead.release();
        }
    }
}

/// Each part within its range in `bounds.rs`.
impl bounds::Parts for BulkheadConfig {
    /// `self` if `max_in_flight` and `queue_timeout` are in range; else why not, naming the
    /// first one that is not.
    fn check_parts(self) -> Result<Self, String> {
        bounds::MAX_IN_FLIGHT
            .check(self.max_in_flight)
            .map_err(|e| format!("max_in_flight {e}"))?;
        bounds::QUEUE_TIMEOUT
            .check(self.queue_timeout)
            .map_err(|e| format!("queue_timeout {e}"))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
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

    /// Drops `held` and a waiter placed in its stead, in turn: each place goes to the next.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_passes_its_place_on() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        let mut first = bulkhead.acquire(until);
        let mut second = bulkhead.acquire(until);
        assert!(poll(&mut first).is_pending());
        assert!(poll(&mut second).is_pending());
        assert_eq!(bulkhead.waiting(), 2);

        // The release hands the place to the first waiter, which is dropped before it runs.
        drop(held);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 1));
        drop(first);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 0));

        // The second waiter has it (it would otherwise sleep until `until`).
        match poll(&mut second) {
            Poll::Ready(Some(permit)) => drop(permit),
            other => panic!("the place was lost: {other:?}"),
        }
        drop(second);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));

        // With nobody behind it, a dropped waiter's place goes back to the count.
        let held = bulkhead.try_acquire().unwrap();
        let mut last = bulkhead.acquire(until);
        assert!(poll(&mut last).is_pending());
        drop(held);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 0));
        drop(last);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
        assert!(bulkhead.try_acquire().is_some());
    }

    /// A place given back while a call waits is that call's: a new call does not get it,
    /// even before the waiter has run again.
    #[tokio::test(start_paused = true)]
    async fn a_place_given_back_goes_to_the_waiter_not_a_new_call() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let mut waiter = bulkhead.acquire(Instant::now() + Duration::from_secs(1));
        assert!(poll(&mut waiter).is_pending());
        drop(held);
        assert!(
            bulkhead.try_acquire().is_none(),
            "a new call took the place"
        );
        let mut newcomer = bulkhead.acquire(Instant::now() + Duration::from_secs(1));
        assert!(
            poll(&mut newcomer).is_pending(),
            "a new call took the place"
        );
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 1));
        let Poll::Ready(Some(permit)) = poll(&mut waiter) else {
            panic!("the waiter has no place");
        };
        // And the next place goes to the call that queued next.
        drop(permit);
        assert!(matches!(poll(&mut newcomer), Poll::Ready(Some(_))));
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    /// Waiters get places in the order they came, while each caller that is done calls
    /// again at once (at the back of the queue).
    #[tokio::test(start_paused = true)]
    async fn waiters_are_placed_in_the_order_they_came() {
        use std::sync::Mutex;

        let bulkhead = bulkhead(2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..6)
            .map(|caller| {
                let (bulkhead, order) = (bulkhead.clone(), order.clone());
                tokio::spawn(async move {
                    for _ in 0..3 {
                        let until = Instant::now() + Duration::from_secs(1);
                        let permit = bulkhead.acquire(until).await.unwrap();
                        order.lock().unwrap().push(caller);
                        tokio::time::sleep(MS).await;
                        drop(permit);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Callers 0 and 1 take the places and 2 to 5 queue, in the order they were spawned;
        // from then on, round and round.
        let order = order.lock().unwrap().clone();
        assert_eq!(order, [[0, 1, 2, 3, 4, 5]; 3].concat());
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    /// A caller that gives its place back and asks again at once, without yielding, in a
    /// loop, cannot starve a waiter: the place it gives back is the waiter's.
    #[tokio::test(start_paused = true)]
    async fn a_caller_calling_again_at_once_cannot_starve_a_waiter() {
        let bulkhead = bulkhead(1);
        let start = Instant::now();
        let first = bulkhead.try_acquire().unwrap();
        let looper = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move {
                let mut permit = first;
                for _ in 0..100 {
                    tokio::time::sleep(MS).await;
                    drop(permit);
                    let until = Instant::now() + Duration::from_secs(1);
                    permit = bulkhead.acquire(until).await.unwrap();
                }
            }
        });
        let waiter = bulkhead.acquire(start + 50 * MS).await;
        assert!(waiter.is_some(), "starved: no place in 50 ms");
        assert_eq!(Instant::now(), start + MS, "the first place given back");
        drop(waiter);
        looper.await.unwrap();
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    /// A waiter whose time is up leaves the queue without a trace: those behind it keep
    /// their order, and the count is as if it had never queued.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_out_of_time_leaves_no_trace() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let start = Instant::now();
        let mut first = bulkhead.acquire(start + Duration::from_secs(1));
        let brief = tokio::spawn(bulkhead.acquire(start + 10 * MS));
        tokio::task::yield_now().await;
        let mut third = bulkhead.acquire(start + Duration::from_secs(1));
        assert!(poll(&mut first).is_pending());
        assert!(poll(&mut third).is_pending());
        assert_eq!(bulkhead.waiting(), 3);
        assert!(brief.await.unwrap().is_none());
        assert_eq!(Instant::now(), start + 10 * MS);
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 2));

        drop(held);
        let Poll::Ready(Some(permit)) = poll(&mut first) else {
            panic!("the first waiter has no place");
        };
        assert!(poll(&mut third).is_pending());
        drop(permit);
        assert!(matches!(poll(&mut third), Poll::Ready(Some(_))));
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
        assert!(lock(&bulkhead.queue).turns.is_empty());
    }

    /// Waiters that leave while no place is freed (all places held for long) do not grow the
    /// queue without bound: their turns are swept out once they are half of it.
    #[tokio::test(start_paused = true)]
    async fn waiters_leaving_do_not_grow_the_queue() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        let mut staying = bulkhead.acquire(until);
        assert!(poll(&mut staying).is_pending());
        for _ in 0..1000 {
            let mut leaving = bulkhead.acquire(until);
            assert!(poll(&mut leaving).is_pending());
            drop(leaving);
            assert!(lock(&bulkhead.queue).turns.len() <= 3);
        }
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 1));
        drop(held);
        assert!(matches!(poll(&mut staying), Poll::Ready(Some(_))));
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

    /// Raising the max hands the places it frees to the waiters at once, oldest first;
    /// lowering it takes no place from a call in flight, and lets none in until the calls in
    /// flight are below it.
    #[tokio::test(start_paused = true)]
    async fn a_moving_max_hands_places_to_waiters_and_drains_when_lowered() {
        let bulkhead = bulkhead(1);
        let held = bulkhead.try_acquire().unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        let mut waiters: Vec<_> = (0..3).map(|_| bulkhead.acquire(until)).collect();
        for waiter in &mut waiters {
            assert!(poll(waiter).is_pending());
        }
        bulkhead.set_max(3);
        // Two places freed: the two oldest waiters have them, the third still waits.
        let first = poll(&mut waiters[0]);
        let second = poll(&mut waiters[1]);
        assert!(matches!(first, Poll::Ready(Some(_))));
        assert!(matches!(second, Poll::Ready(Some(_))));
        assert!(poll(&mut waiters[2]).is_pending());
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (3, 1));
        // Lowered to 1 with 3 in flight: nobody loses a place, and two releases hand nothing
        // over (2 and then 1 still in flight, not below the max).
        bulkhead.set_max(1);
        assert_eq!(bulkhead.in_flight(), 3);
        drop(first);
        drop(second);
        assert!(poll(&mut waiters[2]).is_pending());
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 1));
        // The last release goes to the waiter.
        drop(held);
        let last = poll(&mut waiters[2]);
        assert!(matches!(last, Poll::Ready(Some(_))));
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 0));
        assert!(bulkhead.try_acquire().is_none());
        // Zero counts as 1.
        bulkhead.set_max(0);
        assert_eq!(bulkhead.max(), 1);
    }

    /// Real threads moving the max up and down while others take, queue and release: never
    /// more in flight than the highest max, every waiter served within its minute, idle at
    /// the end.
    #[test]
    fn a_max_moving_under_racing_threads_loses_no_wake_up() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        let bulkhead = bulkhead(2);
        let held = Arc::new(AtomicU32::new(0));
        runtime.block_on(async {
            let mover = {
                let bulkhead = bulkhead.clone();
                tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(99);
                    for _ in 0..20_000 {
                        bulkhead.set_max(rng.u32(1..=4));
                        tokio::task::yield_now().await;
                    }
                    // Left at its highest, so that every waiter gets its place.
                    bulkhead.set_max(4);
                })
            };
            let tasks: Vec<_> = (0..12u64)
                .map(|seed| {
                    let (bulkhead, held) = (bulkhead.clone(), held.clone());
                    tokio::spawn(async move {
                        let mut rng = fastrand::Rng::with_seed(seed);
                        for _ in 0..1500 {
                            let until = Instant::now() + Duration::from_secs(60);
                            let permit = bulkhead.acquire(until).await.expect("a wake-up was lost");
                            assert!(held.fetch_add(1, Relaxed) < 4);
                            if rng.bool() {
                                tokio::task::yield_now().await;
                            }
                            held.fetch_sub(1, Relaxed);
                            drop(permit);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            mover.await.unwrap();
        });
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

    /// One release against one arrival: the release's subtraction and the arrival's count
    /// and hand-over, in either order.
    #[test]
    fn a_release_crossing_an_arrival_loses_no_wake_up() {
        race_releases_and_arrivals(1, 50_000);
    }

    /// Two releases against two arrivals: two wake-ups must not merge into one.
    #[test]
    fn releases_crossing_arrivals_lose_no_wake_up() {
        race_releases_and_arrivals(2, 20_000);
    }

    /// Real threads racing releases against new waiters, some waiters cancelled after a few
    /// polls: a lost wake-up would leave a waiter asleep until its minute is up, with places
    /// free; no call may come back empty.
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

    /// Real threads racing takes, releases, hand-overs, timeouts and cancellations (a waiter
    /// dropped at a random point, maybe just after it was handed a place; a waiter whose few
    /// microseconds run out as a place comes): never more than `max` places held, and at the
    /// end every place is back (exactly `max` can be taken), none waits, the queue is empty.
    #[test]
    fn threads_racing_neither_lose_nor_duplicate_places() {
        const MAX: u32 = 3;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        let bulkhead = bulkhead(MAX);
        let held = Arc::new(AtomicU32::new(0));
        let (placed, out_of_time) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        runtime.block_on(async {
            let tasks: Vec<_> = (0..24u64)
                .map(|seed| {
                    let (bulkhead, held) = (bulkhead.clone(), held.clone());
                    let (placed, out_of_time) = (placed.clone(), out_of_time.clone());
                    tokio::spawn(async move {
                        let mut rng = fastrand::Rng::with_seed(seed);
                        for _ in 0..1500 {
                            let wait = match rng.u8(0..4) {
                                0 => Duration::from_micros(rng.u64(0..200)),
                                _ => Duration::from_secs(60),
                            };
                            let mut acquire = bulkhead.acquire(Instant::now() + wait);
                            let permit = if rng.u8(0..4) == 0 {
                                // Dropped after a few polls, whatever state it is in.
                                let mut got = None;
                                for _ in 0..rng.u8(1..4) {
                                    if let Poll::Ready(permit) = std::future::poll_fn(|cx| {
                                        Poll::Ready(acquire.as_mut().poll(cx))
                                    })
                                    .await
                                    {
                                        got = Some(permit);
                                        break;
                                    }
                                    tokio::task::yield_now().await;
                                }
                                match got {
                                    Some(permit) => permit,
                                    None => continue,
                                }
                            } else {
                                acquire.await
                            };
                            let Some(permit) = permit else {
                                assert!(wait < Duration::from_secs(60), "a place was lost");
                                out_of_time.fetch_add(1, Relaxed);
                                continue;
                            };
                            placed.fetch_add(1, Relaxed);
                            assert!(held.fetch_add(1, SeqCst) < MAX, "a place was duplicated");
                            assert!(bulkhead.in_flight() <= MAX);
                            if rng.bool() {
                                tokio::task::yield_now().await;
                            }
                            held.fetch_sub(1, SeqCst);
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
        assert!(lock(&bulkhead.queue).turns.is_empty());
        let all: Vec<_> = (0..MAX).filter_map(|_| bulkhead.try_acquire()).collect();
        assert_eq!(all.len(), MAX as usize, "a place was lost");
        assert!(bulkhead.try_acquire().is_none(), "a place was duplicated");
        drop(all);
        // Both outcomes happened: places went round, and some waits ran out.
        let (placed, out_of_time) = (placed.load(Relaxed), out_of_time.load(Relaxed));
        eprintln!("placed {placed}, out of time {out_of_time}");
        assert!(
            placed > 10_000 && out_of_time > 0,
            "{placed}, {out_of_time}"
        );
    }
}
