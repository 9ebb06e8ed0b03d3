//! Runs a simulation: the replicas' clients, the load, the samples, on a paused clock.
//!
//! The contract with `loopback.rs`: `run_with(simulation, dependency, Way::Loopback(origin))`
//! runs the same load and records the same report in real time, the attempts going over real
//! sockets to `origin` (the scenario URL's host resolved to it), where the testkit's server
//! answers from the same `Dependency` (its clock: [`Dependency::since_start`], which the run
//! starts once its clients are built).
//!
//! One current-thread runtime: in memory its clock is paused, and tokio jumps it to the next
//! timer whenever every task waits, so virtual time is exact and costs nothing; the library's
//! own jitter comes from `fastrand`'s thread-local generator, seeded first on this thread,
//! where every task runs. Each call is one spawned task; one more task, the watch, reads the
//! breakers every 10 ms (their bands) and the guards at each step's end (the series). What a
//! call saw goes into preallocated accumulators per step and per phase (no record per call:
//! a 10-minute run at 1,000 requests/s has 600,000), with latencies in log-spaced buckets
//! 2 % wide, so that a reported percentile is within 1 % of the true one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until};

use super::Simulation;
use super::dependency::{Dependency, step_of, steps};
use super::load::{Arrivals, Ended, Mix, call};
use super::report::{BreakerBand, BreakerSpan, Percentiles, Report, SCHEMA, Series, Stats};
use super::scenario::Arrivals as Offered;
use super::transport::SimLayer;
use super::{PolicySource, Scenario};
use crate::breaker::{BreakerRegistry, State};
use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::overload::Criticality;

/// Where the replicas' attempts go, and on which clock.
// `Loopback` is the loopback run's (`loopback.rs`, feature `testkit`).
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub(crate) enum Way {
    /// To the model in memory, on a paused clock.
    Memory,
    /// Over real sockets to this loopback address, in real time.
    Loopback(std::net::SocketAddr),
}

/// Runs `simulation` in memory on virtual time.
pub(crate) fn run(simulation: &Simulation) -> Result<Report, Error> {
    let dependency = Arc::new(Dependency::new(simulation.scenario()));
    run_with(simulation, dependency, Way::Memory)
}

/// Runs `simulation` with its attempts going `way`, to `dependency`.
///
/// On a thread of its own: a runtime cannot start inside another's tasks, and the caller
/// may be in one; the thread's `fastrand` generator, seeded, is then the run's alone.
pub(crate) fn run_with(
    simulation: &Simulation,
    dependency: Arc<Dependency>,
    way: Way,
) -> Result<Report, Error> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| run_here(simulation, dependency, way))
            .join()
            .unwrap_or_else(|_| Err(Error::invalid_config("the simulation's thread failed")))
    })
}

fn run_here(
    simulation: &Simulation,
    dependency: Arc<Dependency>,
    way: Way,
) -> Result<Report, Error> {
    let real = std::time::Instant::now();
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    runtime.enable_all();
    if matches!(way, Way::Memory) {
        runtime.start_paused(true);
    }
    let runtime = runtime
        .build()
        .map_err(|e| Error::invalid_config(format!("the simulation's runtime: {e}")))?;
    let mut report = runtime.block_on(drive(simulation, dependency, way))?;
    report.real_secs = real.elapsed().as_secs_f64();
    Ok(report)
}

/// The step of the breakers' watch: open and close times are this exact.
const BREAKER_TICK: Duration = Duration::from_millis(10);

/// Seeds of the run's own streams, apart from one another for one scenario seed.
const ARRIVALS_SEED: u64 = 0xA771_7A15;
const MIX_SEED: u64 = 0x0000_4D1C;

async fn drive(
    simulation: &Simulation,
    dependency: Arc<Dependency>,
    way: Way,
) -> Result<Report, Error> {
    let scenario = simulation.scenario();
    // The library's jitter draws from this thread's generator: every task runs here.
    fastrand::seed(scenario.seed);
    let policy = Policy::of(simulation)?;
    let start = Instant::now();
    let (base, origin) = match way {
        Way::Memory => (scenario.url.clone(), None),
        Way::Loopback(addr) => (loopback_url(&scenario.url, addr)?, Some(addr)),
    };
    let replicas = scenario.replicas.max(1);
    // Redis-shared limits: one client for the fleet (see the module docs of `sim`).
    let clients = if policy.shared { 1 } else { replicas };
    let clients: Vec<Client> = (0..clients)
        .map(|_| policy.client(&dependency, start, origin, &scenario.url))
        .collect::<Result<_, _>>()?;
    let clients: Arc<[Client]> = clients.into();
    let mix = Arc::new(Mix::new(scenario, &base)?);
    // In memory no time passed while the clients were built; on loopback it did.
    let start = if origin.is_some() {
        Instant::now()
    } else {
        start
    };
    dependency.mark_start();

    let step = scenario.sample_every.max(Duration::from_millis(1));
    let n_steps = steps(scenario.duration, step);
    let shared = Arc::new(Shared {
        recorder: Mutex::new(Recorder::new(n_steps, scenario.phases.len().max(1))),
        outstanding: AtomicUsize::new(0),
        idle: Notify::new(),
        numbers: AtomicU64::new(0),
        start,
        step,
        n_steps,
        phase_starts: scenario.phases.iter().map(|p| p.at).collect(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn(watch(Watch {
        clients: clients.clone(),
        mix: mix.clone(),
        dependency: dependency.clone(),
        start,
        step,
        n_steps,
        duration: scenario.duration,
        stop: stop.clone(),
    }));

    match &scenario.load.arrivals {
        Offered::Rate(points) => {
            open_loop(scenario, points, &clients, &mix, &shared).await;
        }
        Offered::Callers { callers, think } => {
            closed_loop(scenario, *callers, *think, &clients, &mix, &shared);
        }
    }
    // The calls still in flight finish, bounded (a call with no limit at all would hang the
    // run): those still going then are not counted.
    let grace = scenario.duration.max(Duration::from_secs(60));
    let drained = tokio::time::timeout(grace, async {
        while shared.outstanding.load(Ordering::Acquire) > 0 {
            shared.idle.notified().await;
        }
    });
    let _ = drained.await;
    stop.store(true, Ordering::Release);
    let watched = watch
        .await
        .map_err(|e| Error::invalid_config(format!("the simulation's watch failed: {e}")))?;

    let recorder = {
        let mut recorder = shared.recorder.lock().unwrap_or_else(|e| e.into_inner());
        let mut recorder = std::mem::replace(&mut *recorder, Recorder::new(0, 0));
        recorder.close_step();
        recorder
    };
    Ok(report(
        scenario,
        &policy.label,
        &dependency,
        recorder,
        watched,
        step,
    ))
}

/// The scenario's URL pointed at `addr` over plain HTTP, its host kept (the policy's rules
/// match it; the replicas resolve it to `addr`).
fn loopback_url(given: &url::Url, addr: std::net::SocketAddr) -> Result<url::Url, Error> {
    let mut url = given.clone();
    let refused = |what: &str| {
        Error::invalid_config(format!(
            "the loopback run cannot use {what} of the URL {given}"
        ))
    };
    url.set_scheme("http").map_err(|()| refused("the scheme"))?;
    url.set_port(Some(addr.port()))
        .map_err(|()| refused("the port"))?;
    Ok(url)
}

async fn open_loop(
    scenario: &Scenario,
    points: &[super::scenario::RatePoint],
    clients: &Arc<[Client]>,
    mix: &Arc<Mix>,
    shared: &Arc<Shared>,
) {
    let mut arrivals = Arrivals::new(points, scenario.seed ^ ARRIVALS_SEED);
    let mut rng = fastrand::Rng::with_seed(scenario.seed ^ MIX_SEED);
    let mut at = Duration::ZERO;
    let mut replica = 0usize;
    while let Some(next) = arrivals.next(at, scenario.duration) {
        at = next;
        sleep_until(shared.start + at).await;
        let Some(kind) = mix.pick(&mut rng) else {
            return;
        };
        let index = mix.kinds().iter().position(|k| std::ptr::eq(k, kind));
        let Some(index) = index else { return };
        replica = (replica + 1) % clients.len().max(1);
        shared.offered(at);
        shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let (clients, mix, shared) = (clients.clone(), mix.clone(), shared.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            let n = shared.numbers.fetch_add(1, Ordering::Relaxed);
            if let (Some(client), Some(kind)) = (clients.get(replica), mix.kinds().get(index)) {
                let ended = call(client, kind, n).await;
                shared.ended(began, ended);
            }
            shared.one_less();
        });
    }
}

fn closed_loop(
    scenario: &Scenario,
    callers: u32,
    think: Duration,
    clients: &Arc<[Client]>,
    mix: &Arc<Mix>,
    shared: &Arc<Shared>,
) {
    let duration = scenario.duration;
    for caller in 0..callers {
        let (clients, mix, shared) = (clients.clone(), mix.clone(), shared.clone());
        let seed = scenario.seed ^ MIX_SEED ^ (u64::from(caller) << 32);
        shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let replica = usize::try_from(caller).unwrap_or_default() % clients.len().max(1);
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let client = clients.get(replica);
            while let Some(client) = client {
                let began = Instant::now();
                let at = began.duration_since(shared.start);
                if at >= duration {
                    break;
                }
                let Some(kind) = mix.pick(&mut rng) else {
                    break;
                };
                shared.offered(at);
                let n = shared.numbers.fetch_add(1, Ordering::Relaxed);
                let ended = call(client, kind, n).await;
                shared.ended(began, ended);
                // At most one call per caller per millisecond (the timer's resolution): a
                // call that takes no virtual time (an open breaker's refusal) followed by no
                // pause would otherwise call again at the same instant forever, and the
                // paused clock never move.
                let gap = MIN_CALL_GAP.saturating_sub(began.elapsed());
                sleep(think.max(gap)).await;
            }
            shared.one_less();
        });
    }
}

/// The least time between the starts of one closed-loop caller's calls.
const MIN_CALL_GAP: Duration = Duration::from_millis(1);

/// What the calls' tasks share.
struct Shared {
    recorder: Mutex<Recorder>,
    /// Calls (open loop) or callers (closed loop) not finished yet.
    outstanding: AtomicUsize,
    idle: Notify,
    /// The calls' numbers (their `Idempotency-Key`s).
    numbers: AtomicU64,
    start: Instant,
    step: Duration,
    n_steps: usize,
    phase_starts: Vec<Duration>,
}

impl Shared {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn phase(&self, at: Duration) -> usize {
        self.phase_starts
            .iter()
            .rposition(|start| *start <= at)
            .unwrap_or_default()
    }

    fn offered(&self, at: Duration) {
        let step = step_of(at, self.step, self.n_steps);
        let phase = self.phase(at);
        self.recorder().offered(step, phase);
    }

    fn ended(&self, began: Instant, ended: Ended) {
        let now = Instant::now();
        let latency = now.duration_since(began);
        let at = now.duration_since(self.start);
        let step = step_of(at, self.step, self.n_steps);
        let phase = self.phase(at);
        self.recorder().ended(step, phase, latency, ended);
    }

    fn one_less(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }
}

/// Every error kind, in the report's order (an exhaustive match keeps it complete).
const KINDS: [ErrorKind; 18] = [
    ErrorKind::AttemptTimeout,
    ErrorKind::DeadlineExceeded,
    ErrorKind::Connect,
    ErrorKind::ConnectionClosed,
    ErrorKind::Status,
    ErrorKind::CircuitOpen,
    ErrorKind::BudgetExhausted,
    ErrorKind::BodyNotReplayable,
    ErrorKind::InvalidRequest,
    ErrorKind::InvalidResponse,
    ErrorKind::InvalidConfig,
    ErrorKind::Transport,
    ErrorKind::BodyTooLarge,
    ErrorKind::Decode,
    ErrorKind::Hook,
    ErrorKind::RateLimited,
    ErrorKind::BulkheadFull,
    ErrorKind::Throttled,
];

fn kind_index(kind: ErrorKind) -> usize {
    match kind {
        ErrorKind::AttemptTimeout => 0,
        ErrorKind::DeadlineExceeded => 1,
        ErrorKind::Connect => 2,
        ErrorKind::ConnectionClosed => 3,
        ErrorKind::Status => 4,
        ErrorKind::CircuitOpen => 5,
        ErrorKind::BudgetExhausted => 6,
        ErrorKind::BodyNotReplayable => 7,
        ErrorKind::InvalidRequest => 8,
        ErrorKind::InvalidResponse => 9,
        ErrorKind::InvalidConfig => 10,
        ErrorKind::Transport => 11,
        ErrorKind::BodyTooLarge => 12,
        ErrorKind::Decode => 13,
        ErrorKind::Hook => 14,
        ErrorKind::RateLimited => 15,
        ErrorKind::BulkheadFull => 16,
        ErrorKind::Throttled => 17,
    }
}

/// Latency buckets: bucket `b ≥ 1` holds `[R^(b-1), R^b)` microseconds, read as its
/// geometric middle, within 1 % of any value in it.
const RATIO: f64 = 1.02;
const BUCKETS: usize = 1200;

#[derive(Clone)]
struct Histogram {
    counts: Box<[u32]>,
    n: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            n: 0,
        }
    }

    fn add(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        let bucket = if micros < 1.0 {
            0
        } else {
            let b = (micros.ln() / RATIO.ln()).floor() + 1.0;
            // A float's bucket: finite and non-negative here, bounded by the last.
            if b.is_finite() {
                (b as usize).min(BUCKETS - 1)
            } else {
                BUCKETS - 1
            }
        };
        if let Some(count) = self.counts.get_mut(bucket) {
            *count = count.saturating_add(1);
        }
        self.n += 1;
    }

    fn clear(&mut self) {
        self.counts.fill(0);
        self.n = 0;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.n += other.n;
    }

    /// The `q` quantile in milliseconds (`None` when empty).
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                if bucket == 0 {
                    return Some(0.0);
                }
                let middle = RATIO.powf(bucket as f64 - 0.5);
                return Some(middle / 1e3);
            }
        }
        None
    }
}

/// What calls did over a span.
#[derive(Clone, Default)]
struct Acc {
    offered: u64,
    calls: u64,
    succeeded: u64,
    errors: [u64; KINDS.len()],
    /// A phase's latencies; a step's are in the recorder's open histogram until it ends.
    latency: Option<Histogram>,
    /// A step's p50 and p99, once it ended.
    p50: Option<f64>,
    p99: Option<f64>,
    hedges_sent: u64,
    hedges_won: u64,
}

impl Acc {
    /// A call ended; its latency into this span's own histogram (a phase's), or `None`
    /// where the recorder keeps it (a step's).
    fn ended(&mut self, latency: Option<Duration>, ended: Ended) {
        self.calls += 1;
        match ended.error {
            None => self.succeeded += 1,
            Some(kind) => {
                if let Some(count) = self.errors.get_mut(kind_index(kind)) {
                    *count += 1;
                }
            }
        }
        if let Some(latency) = latency {
            self.latency.get_or_insert_with(Histogram::new).add(latency);
        }
        self.hedges_sent += u64::from(ended.hedges);
        self.hedges_won += u64::from(ended.hedge_won);
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        self.latency.as_ref().and_then(|h| h.quantile(q))
    }
}

struct Recorder {
    steps: Vec<Acc>,
    phases: Vec<Acc>,
    /// The latencies of the calls that ended in step `open.0`: calls end in time order, so
    /// a step is over when a call ends in a later one, and its p50 and p99 are kept then.
    /// One histogram for the run rather than one per step (100,000 steps of 4.8 KB each).
    open: (usize, Histogram),
}

impl Recorder {
    fn new(steps: usize, phases: usize) -> Self {
        Recorder {
            steps: vec![Acc::default(); steps],
            phases: vec![Acc::default(); phases],
            open: (0, Histogram::new()),
        }
    }

    fn offered(&mut self, step: usize, phase: usize) {
        if let Some(acc) = self.steps.get_mut(step) {
            acc.offered += 1;
        }
        if let Some(acc) = self.phases.get_mut(phase) {
            acc.offered += 1;
        }
    }

    fn ended(&mut self, step: usize, phase: usize, latency: Duration, ended: Ended) {
        if step > self.open.0 {
            self.close_step();
            self.open.0 = step;
        }
        self.open.1.add(latency);
        if let Some(acc) = self.steps.get_mut(step) {
            acc.ended(None, ended);
        }
        if let Some(acc) = self.phases.get_mut(phase) {
            acc.ended(Some(latency), ended);
        }
    }

    /// The open step's percentiles kept, its histogram emptied for the next.
    fn close_step(&mut self) {
        let (step, histogram) = &mut self.open;
        if let Some(acc) = self.steps.get_mut(*step) {
            acc.p50 = histogram.quantile(0.5);
            acc.p99 = histogram.quantile(0.99);
        }
        histogram.clear();
    }
}

struct Watch {
    clients: Arc<[Client]>,
    mix: Arc<Mix>,
    dependency: Arc<Dependency>,
    start: Instant,
    step: Duration,
    n_steps: usize,
    duration: Duration,
    stop: Arc<AtomicBool>,
}

/// What the watch saw.
struct Watched {
    samples: Vec<Sample>,
    bands: Vec<BreakerBand>,
}

/// The levels at one step's end.
#[derive(Default)]
struct Sample {
    in_flight: u64,
    breakers_open: u64,
    budget: Option<u64>,
    bulkhead: Option<u64>,
    adaptive: Option<u64>,
    throttle: Option<f64>,
}

/// One breaker the watch follows.
struct Followed {
    replica: u32,
    policy: String,
    endpoint: String,
    registry: Option<BreakerRegistry>,
    /// Its state now (`None`: closed), and since when.
    open: Option<(&'static str, f64)>,
    spans: Vec<BreakerSpan>,
}

async fn watch(watch: Watch) -> Watched {
    let mut followed = Vec::new();
    for (replica, client) in watch.clients.iter().enumerate() {
        let mut seen: Vec<(String, String)> = Vec::new();
        for kind in watch.mix.kinds() {
            let policy = client.policy_name(&kind.method, &kind.url).to_string();
            let endpoint = crate::breaker::endpoint_key(&kind.url).into_owned();
            if seen.iter().any(|(p, e)| *p == policy && *e == endpoint) {
                continue;
            }
            seen.push((policy.clone(), endpoint.clone()));
            let Some(registry) = client.breakers_for(&policy) else {
                continue;
            };
            followed.push(Followed {
                replica: u32::try_from(replica).unwrap_or(u32::MAX),
                policy,
                endpoint,
                registry: Some(registry),
                open: None,
                spans: Vec::new(),
            });
        }
    }
    let mut samples = Vec::with_capacity(watch.n_steps);
    let mut tick = Duration::ZERO;
    loop {
        let next_step = u32::try_from(samples.len() + 1)
            .ok()
            .and_then(|n| watch.step.checked_mul(n))
            .unwrap_or(Duration::MAX)
            .min(watch.duration);
        let sampled = samples.len() >= watch.n_steps;
        if sampled && watch.stop.load(Ordering::Acquire) {
            break;
        }
        let next = if sampled {
            tick + BREAKER_TICK
        } else {
            (tick + BREAKER_TICK).min(next_step)
        };
        sleep_until(watch.start + next).await;
        tick = next;
        let secs = tick.as_secs_f64();
        for breaker in &mut followed {
            follow(breaker, secs);
        }
        if !sampled && tick >= next_step {
            samples.push(sample(&watch, &followed));
        }
    }
    let end = tick.max(watch.duration).as_secs_f64();
    let bands = followed
        .into_iter()
        .map(|mut breaker| {
            if let Some((state, from)) = breaker.open.take() {
                breaker.spans.push(span(state, from, end));
            }
            BreakerBand {
                replica: breaker.replica,
                policy: breaker.policy,
                endpoint: breaker.endpoint,
                spans: breaker.spans,
            }
        })
        // Only breakers that were ever open, as the report documents.
        .filter(|band| !band.spans.is_empty())
        .collect();
    Watched { samples, bands }
}

fn span(state: &str, from: f64, to: f64) -> BreakerSpan {
    BreakerSpan {
        state: state.to_owned(),
        from_secs: from,
        to_secs: to,
    }
}

fn follow(breaker: &mut Followed, secs: f64) {
    let state = breaker
        .registry
        .as_ref()
        .and_then(|r| r.get(&breaker.endpoint))
        .map_or(State::Closed, |handle| handle.state());
    let now = match state {
        State::Open | State::ForcedOpen => Some("open"),
        State::HalfOpen => Some("half_open"),
        _ => None,
    };
    if now == breaker.open.map(|(state, _)| state) {
        return;
    }
    if let Some((state, from)) = breaker.open.take() {
        breaker.spans.push(span(state, from, secs));
    }
    breaker.open = now.map(|state| (state, secs));
}

fn sample(watch: &Watch, followed: &[Followed]) -> Sample {
    let mut sample = Sample {
        in_flight: watch.dependency.in_flight(),
        breakers_open: followed.iter().filter(|b| b.open.is_some()).count() as u64,
        ..Sample::default()
    };
    let add = |total: &mut Option<u64>, value: Option<u64>| {
        if let Some(value) = value {
            *total = Some(total.unwrap_or_default() + value);
        }
    };
    let mut throttles = Vec::new();
    for client in watch.clients.iter() {
        let mut keys: Vec<String> = Vec::new();
        for kind in watch.mix.kinds() {
            let Some(guards) = client.overload_of(&kind.method, &kind.url) else {
                continue;
            };
            if keys.iter().any(|k| k == guards.key()) {
                continue;
            }
            keys.push(guards.key().to_owned());
            add(&mut sample.budget, guards.budget_available());
            add(
                &mut sample.bulkhead,
                guards.bulkhead_in_flight().map(u64::from),
            );
            add(&mut sample.adaptive, guards.adaptive_limit().map(u64::from));
            if let Some(p) = guards.throttle_probability(Criticality::Default) {
                throttles.push(p);
            }
        }
    }
    if !throttles.is_empty() {
        sample.throttle = Some(throttles.iter().sum::<f64>() / throttles.len() as f64);
    }
    sample
}

/// The policy of a run, read once.
struct Policy {
    label: String,
    /// Its text and the name its errors give it (`None`: the defaults).
    text: Option<(String, String)>,
    /// It had a `[redis]` table (dropped): the replicas share limits, modelled as one client.
    shared: bool,
}

impl Policy {
    fn of(simulation: &Simulation) -> Result<Policy, Error> {
        let (label, origin, text) = match &simulation.policy {
            PolicySource::Defaults => {
                return Ok(Policy {
                    label: "defaults".to_owned(),
                    text: None,
                    shared: false,
                });
            }
            PolicySource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    Error::invalid_config(format!("{}: cannot read: {err}", path.display()))
                })?;
                let label = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                (label, path.display().to_string(), text)
            }
            PolicySource::Toml(label, text) => (label.clone(), label.clone(), text.clone()),
        };
        let (text, shared) = without_redis(&text);
        if shared && has_redis(&text) {
            return Err(Error::invalid_config(format!(
                "{origin}: the simulator runs the fleet as one client without Redis, and drops \
                 the policy's `[redis]` table, which it finds only written as a table of its \
                 own: write it as `[redis]` followed by its keys"
            )));
        }
        Ok(Policy {
            label,
            text: Some((text, origin)),
            shared,
        })
    }

    /// One replica's client.
    fn client(
        &self,
        dependency: &Arc<Dependency>,
        start: Instant,
        origin: Option<std::net::SocketAddr>,
        url: &url::Url,
    ) -> Result<Client, Error> {
        let mut builder = Client::builder();
        if let Some((text, _)) = &self.text {
            builder = builder.config_toml(text);
        }
        builder = match (origin, url.host_str()) {
            (Some(addr), Some(host)) => {
                let host = host.to_owned();
                builder.reqwest(move |b| b.resolve(&host, addr))
            }
            _ => builder.attempt_layer(SimLayer {
                dependency: dependency.clone(),
                start,
            }),
        };
        builder
            .build()
            .map_err(|error| match (&self.text, error.detail()) {
                // The text went in as `config_toml`: its errors name the file (or label).
                (Some((_, origin)), Some(detail)) if error.kind() == ErrorKind::InvalidConfig => {
                    Error::invalid_config(detail.replace("<config_toml>", origin))
                }
                _ => error,
            })
    }
}

/// `text` with its `[redis]` table commented out and its limits shared through Redis made
/// local (`shared = "redis"` → `shared = "local"`: one client for the fleet shares them so),
/// line for line so that errors keep their lines; and whether it had the table.
fn without_redis(text: &str) -> (String, bool) {
    if !has_redis(text) {
        return (text.to_owned(), false);
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            inside = trimmed.starts_with("[redis]") || trimmed.starts_with("[redis.");
        }
        if inside {
            out.push_str("# ");
            out.push_str(line);
        } else {
            out.push_str(&shared_locally(line));
        }
        out.push('\n');
    }
    (out, true)
}

/// Whether the policy TOML `text` has a `redis` table (however it is written).
fn has_redis(text: &str) -> bool {
    text.parse::<toml::Table>()
        .is_ok_and(|table| table.contains_key("redis"))
}

/// `line` with each `shared = "redis"` (any spacing) made `shared = "local"`.
fn shared_locally(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("shared") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after = from.trim_start_matches("shared").trim_start();
        let value = after.strip_prefix('=').map(str::trim_start);
        match value.and_then(|v| v.strip_prefix("\"redis\"")) {
            Some(tail) => {
                out.push_str("shared = \"local\"");
                rest = tail;
            }
            None => {
                out.push_str("shared");
                rest = from.get("shared".len()..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

fn stats(name: &str, start: f64, end: f64, acc: &Acc, attempts: u64) -> Stats {
    let span = (end - start).max(1e-9);
    Stats {
        name: name.to_owned(),
        start_secs: start,
        end_secs: end,
        calls: acc.calls,
        succeeded: acc.succeeded,
        success_rate: (acc.calls > 0).then(|| acc.succeeded as f64 / acc.calls as f64),
        errors: KINDS
            .iter()
            .zip(acc.errors.iter())
            .map(|(kind, count)| (kind.as_str().to_owned(), *count))
            .collect(),
        latency_ms: Percentiles {
            p50: acc.quantile(0.5),
            p99: acc.quantile(0.99),
            p999: acc.quantile(0.999),
        },
        offered_rps: acc.offered as f64 / span,
        attempts,
        attempts_rps: attempts as f64 / span,
        amplification: (acc.offered > 0).then(|| attempts as f64 / acc.offered as f64),
        hedges_sent: acc.hedges_sent,
        hedges_won: acc.hedges_won,
    }
}

fn report(
    scenario: &Scenario,
    policy: &str,
    dependency: &Dependency,
    recorder: Recorder,
    watched: Watched,
    step: Duration,
) -> Report {
    let duration = scenario.duration.as_secs_f64();
    let mut total = Acc::default();
    for acc in &recorder.phases {
        total.offered += acc.offered;
        total.calls += acc.calls;
        total.succeeded += acc.succeeded;
        for (mine, theirs) in total.errors.iter_mut().zip(acc.errors.iter()) {
            *mine += theirs;
        }
        if let Some(h) = &acc.latency {
            total.latency.get_or_insert_with(Histogram::new).merge(h);
        }
        total.hedges_sent += acc.hedges_sent;
        total.hedges_won += acc.hedges_won;
    }
    let per_phase = dependency.attempts_per_phase();
    let phases = scenario
        .phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let start = phase.at.as_secs_f64().min(duration);
            let end = scenario
                .phases
                .get(i + 1)
                .map_or(duration, |next| next.at.as_secs_f64().min(duration));
            let acc = recorder.phases.get(i).cloned().unwrap_or_default();
            let attempts = per_phase.get(i).copied().unwrap_or_default();
            stats(&phase.name, start, end, &acc, attempts)
        })
        .collect();
    let step_secs = step.as_secs_f64();
    let per_step = dependency.attempts_per_step();
    let n = recorder.steps.len();
    let mut series = Series {
        t_secs: Vec::with_capacity(n),
        offered_rps: Vec::with_capacity(n),
        attempts_rps: Vec::with_capacity(n),
        success_rate: Vec::with_capacity(n),
        p50_ms: Vec::with_capacity(n),
        p99_ms: Vec::with_capacity(n),
        dependency_in_flight: Vec::with_capacity(n),
        breakers_open: Vec::with_capacity(n),
        budget_available: Vec::with_capacity(n),
        bulkhead_in_flight: Vec::with_capacity(n),
        adaptive_limit: Vec::with_capacity(n),
        throttle_probability: Vec::with_capacity(n),
        rate_limited: Vec::with_capacity(n),
        hedges_sent: Vec::with_capacity(n),
    };
    let empty = Sample::default();
    for (i, acc) in recorder.steps.iter().enumerate() {
        let from = i as f64 * step_secs;
        let to = ((i + 1) as f64 * step_secs).min(duration);
        let span = (to - from).max(1e-9);
        let sample = watched.samples.get(i).unwrap_or(&empty);
        series.t_secs.push(to);
        series.offered_rps.push(acc.offered as f64 / span);
        series
            .attempts_rps
            .push(per_step.get(i).copied().unwrap_or_default() as f64 / span);
        series
            .success_rate
            .push((acc.calls > 0).then(|| acc.succeeded as f64 / acc.calls as f64));
        series.p50_ms.push(acc.p50);
        series.p99_ms.push(acc.p99);
        series.dependency_in_flight.push(sample.in_flight);
        series.breakers_open.push(sample.breakers_open);
        series.budget_available.push(sample.budget);
        series.bulkhead_in_flight.push(sample.bulkhead);
        series.adaptive_limit.push(sample.adaptive);
        series.throttle_probability.push(sample.throttle);
        series.rate_limited.push(
            acc.errors
                .get(kind_index(ErrorKind::RateLimited))
                .copied()
                .unwrap_or_default(),
        );
        series.hedges_sent.push(acc.hedges_sent);
    }
    Report {
        schema: SCHEMA,
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        policy: policy.to_owned(),
        seed: scenario.seed,
        duration_secs: duration,
        replicas: scenario.replicas.max(1),
        real_secs: 0.0,
        total: stats("total", 0.0, duration, &total, dependency.attempts()),
        phases,
        series,
        breakers: watched.bands,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sim::scenario::{
        Fault, FaultKind, Latency, Load, Phase, QuotaFields, RatePoint, RequestKind,
    };

    /// A phase of `latency` with `faults`.
    pub(crate) fn phase(name: &str, at_secs: u64, latency: Latency, faults: Vec<Fault>) -> Phase {
        Phase {
            name: name.to_owned(),
            at: Duration::from_secs(at_secs),
            latency,
            faults,
            capacity: None,
            quota: None,
        }
    }

    /// GETs at `rps` for `secs` against `phases`.
    pub(crate) fn scenario(
        rps: f64,
        secs: u64,
        phases: Vec<Phase>,
    ) -> std::result::Result<Scenario, url::ParseError> {
        Ok(Scenario {
            name: "test".to_owned(),
            description: String::new(),
            duration: Duration::from_secs(secs),
            seed: 7,
            url: url::Url::parse("https://api.example.com/v1/items")?,
            replicas: 2,
            sample_every: Duration::from_secs(1),
            load: Load {
                arrivals: Offered::Rate(vec![RatePoint {
                    at: Duration::ZERO,
                    rps,
                }]),
                mix: vec![RequestKind {
                    weight: 1.0,
                    method: http::Method::GET,
                    path: String::new(),
                    idempotency_key: false,
                    criticality: None,
                }],
            },
            phases,
        })
    }

    pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn fixed(ms: u64) -> Latency {
        Latency::Fixed(Duration::from_millis(ms))
    }

    fn status(status: u16, share: f64) -> Fault {
        Fault {
            kind: FaultKind::Status {
                status,
                retry_after: None,
            },
            share,
        }
    }

    fn invariants(report: &Report) {
        let t = &report.total;
        let errors: u64 = t.errors.values().sum();
        assert_eq!(t.calls, t.succeeded + errors, "{t:?}");
        assert_eq!(t.errors.len(), KINDS.len());
        let phase_calls: u64 = report.phases.iter().map(|p| p.calls).sum();
        assert_eq!(phase_calls, t.calls);
        // The attempts made after the end, while calls in flight finish, are in the total
        // only.
        let phase_attempts: u64 = report.phases.iter().map(|p| p.attempts).sum();
        assert!(phase_attempts <= t.attempts, "{t:?}");
        let step_attempts: f64 = report.series.attempts_rps.iter().sum();
        assert!((step_attempts - phase_attempts as f64).abs() < 1e-6 * t.attempts.max(1) as f64);
        assert_eq!(report.series.t_secs.len(), report.series.hedges_sent.len());
    }

    #[test]
    fn a_healthy_dependency_sees_one_attempt_per_call() -> Result {
        let healthy = vec![phase("healthy", 0, fixed(20), vec![])];
        let report = Simulation::new(scenario(100.0, 20, healthy)?).run()?;
        invariants(&report);
        let t = &report.total;
        // Poisson at 100/s for 20 s: 2,000 ± 3 sigma.
        assert!((1_850..=2_150).contains(&t.calls), "{t:?}");
        assert_eq!(t.succeeded, t.calls);
        assert_eq!(t.amplification, Some(1.0));
        let p50 = t.latency_ms.p50.ok_or("no p50")?;
        assert!((19.8..=20.2).contains(&p50), "{p50}");
        assert_eq!(report.series.t_secs.len(), 20);
        // The default budget is on, the other guards off.
        assert!(report.series.budget_available.iter().all(Option::is_some));
        assert!(report.series.bulkhead_in_flight.iter().all(Option::is_none));
        assert!(
            report.breakers.iter().all(|b| b.spans.is_empty()),
            "{:?}",
            report.breakers
        );
        Ok(())
    }

    #[test]
    fn a_permanent_503_without_budget_is_amplified_to_max_attempts() -> Result {
        let policy = "[default]\nmax_attempts = 5\n\
                      [default.retry_budget]\nenabled = false\n\
                      [default.breaker]\nenabled = false\n";
        let sim = Simulation::new(scenario(
            50.0,
            20,
            vec![phase("down", 0, fixed(5), vec![status(503, 1.0)])],
        )?)
        .config_toml("no-budget", policy);
        let report = sim.run()?;
        invariants(&report);
        let t = &report.total;
        assert_eq!(t.succeeded, 0);
        let amplification = t.amplification.ok_or("no amplification")?;
        assert!(amplification > 4.5 && amplification <= 5.0, "{t:?}");
        Ok(())
    }

    /// An outage from 10 s to 20 s: each replica's breaker opens soon after it starts and
    /// closes soon after it ends; the default budget keeps the amplification low.
    #[test]
    fn an_outage_opens_the_breakers_and_recovery_closes_them() -> Result {
        let phases = vec![
            phase("healthy", 0, fixed(20), vec![]),
            phase("down", 10, fixed(20), vec![status(503, 1.0)]),
            phase("recovered", 20, fixed(20), vec![]),
        ];
        let report = Simulation::new(scenario(100.0, 40, phases)?).run()?;
        invariants(&report);
        assert_eq!(report.breakers.len(), 2, "{:?}", report.breakers);
        for band in &report.breakers {
            let first = band.spans.first().ok_or("never opened")?;
            let last = band.spans.last().ok_or("never opened")?;
            assert_eq!(first.state, "open");
            assert!((10.0..11.0).contains(&first.from_secs), "{band:?}");
            assert!((20.0..40.0).contains(&last.to_secs), "{band:?}");
        }
        assert_eq!(report.phases[0].success_rate, Some(1.0));
        // The breakers close some seconds into the recovery; then every call succeeds.
        let tail = report.series.success_rate.iter().rev().take(10);
        assert!(
            tail.clone().all(|rate| *rate == Some(1.0)),
            "{:?}",
            report.series
        );
        let down = &report.phases[1];
        assert!(down.amplification.ok_or("no calls")? < 1.5, "{down:?}");
        assert!(report.series.breakers_open.contains(&2));
        Ok(())
    }

    /// A run from inside a runtime's task runs too (on its own thread).
    #[tokio::test]
    async fn a_run_inside_a_runtime_runs_on_its_own_thread() -> Result {
        let healthy = vec![phase("healthy", 0, fixed(20), vec![])];
        let report = Simulation::new(scenario(10.0, 2, healthy)?).run()?;
        assert!(report.total.calls > 0);
        Ok(())
    }

    /// The same scenario, policy and seed: the same report (but the real time it took);
    /// another seed: another report.
    #[test]
    fn a_run_is_deterministic_for_its_seed() -> Result {
        let lognormal = Latency::LogNormal {
            p50: Duration::from_millis(20),
            p99: Duration::from_millis(200),
        };
        let flaky = vec![status(503, 0.2)];
        let phases = vec![phase("flaky", 0, lognormal, flaky)];
        let policy = "[default]\nmax_attempts = 3\n[default.hedge]\nafter = \"50ms\"\n";
        let sim = Simulation::new(scenario(50.0, 20, phases)?).config_toml("hedged", policy);
        let mut first = sim.run()?;
        let mut second = sim.run()?;
        first.real_secs = 0.0;
        second.real_secs = 0.0;
        assert_eq!(first, second);
        let total = &first.total;
        assert!(
            total.hedges_won > 0 && total.hedges_won < total.hedges_sent,
            "{total:?}"
        );
        assert_eq!(
            first.series.hedges_sent.iter().sum::<u64>(),
            total.hedges_sent
        );
        let mut other = sim.scenario().clone();
        other.seed += 1;
        let mut third = Simulation::new(other).config_toml("hedged", policy).run()?;
        third.real_secs = 0.0;
        third.seed = first.seed;
        assert_ne!(first, third);
        Ok(())
    }

    /// Closed-loop callers: each calls again after its call ends and the pause, so 10
    /// callers with 20 ms calls and 80 ms pauses offer 100 calls a second.
    #[test]
    fn closed_loop_callers_call_again_after_their_pause() -> Result {
        let mut closed = scenario(0.0, 10, vec![phase("p", 0, fixed(20), vec![])])?;
        closed.load.arrivals = Offered::Callers {
            callers: 10,
            think: Duration::from_millis(80),
        };
        let report = Simulation::new(closed).run()?;
        invariants(&report);
        assert_eq!(report.total.calls, 1_000, "{:?}", report.total);
        assert_eq!(report.total.offered_rps, 100.0);
        Ok(())
    }

    /// Closed-loop callers with no pause, whose calls take no virtual time (the breaker
    /// open through an outage): the run still ends, each caller calling at most once a
    /// millisecond. Without the least gap, the paused clock never moved again.
    #[test]
    fn closed_loop_callers_whose_calls_take_no_time_do_not_stop_the_clock() -> Result {
        let phases = vec![
            phase("healthy", 0, fixed(20), vec![]),
            phase("down", 2, fixed(20), vec![status(503, 1.0)]),
        ];
        let mut closed = scenario(0.0, 10, phases)?;
        closed.load.arrivals = Offered::Callers {
            callers: 10,
            think: Duration::ZERO,
        };
        let (done, ran) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(Simulation::new(closed).run().map_err(|e| e.to_string()));
        });
        let report = ran.recv_timeout(Duration::from_secs(60))??;
        invariants(&report);
        let down = &report.phases[1];
        assert!(down.errors["circuit_open"] > 0, "{down:?}");
        // 10 callers, at most one call a millisecond each, for 8 s.
        assert!(down.calls <= 80_000, "{down:?}");
        Ok(())
    }

    /// A policy with `[redis]` runs as one client for the fleet: its shared limits are
    /// fleet-wide, its lines (and so its errors' lines) kept.
    #[test]
    fn a_policy_sharing_limits_through_redis_runs_as_one_client() -> Result {
        let policy = "[default]\nmax_attempts = 2\n\n[redis]\nurl = \"redis://localhost\"\n\n\
                      [default.rate_limit]\nrate = 10\nper = \"1s\"\nshared = \"redis\"\n";
        let (text, shared) = without_redis(policy);
        assert!(shared);
        assert_eq!(text.lines().count(), policy.lines().count());
        let mut fleet = scenario(80.0, 10, vec![phase("p", 0, fixed(10), vec![])])?;
        fleet.replicas = 4;
        let report = Simulation::new(fleet).config_toml("redis", policy).run()?;
        invariants(&report);
        // 10 a second for the whole fleet (its burst aside), not for each of the 4 replicas.
        let rates = &report.series.attempts_rps;
        let during = rates.get(..9).ok_or("10 steps")?;
        assert!(during.iter().all(|r| (9.0..=12.0).contains(r)), "{rates:?}");
        let (_, plain) = without_redis("[default]\nmax_attempts = 2\n");
        assert!(!plain);
        // A table the line-by-line rewrite cannot find is refused, never sent to Redis.
        let inline = "redis = { url = \"redis://localhost\" }\n[default]\nmax_attempts = 2\n";
        let error = Simulation::new(scenario(1.0, 1, vec![])?)
            .config_toml("inline.toml", inline)
            .run()
            .err()
            .ok_or("an inline [redis] table is refused")?;
        assert!(error.to_string().contains("`[redis]`"), "{error}");
        let broken = "[default]\nmax_attempts = 0\n[redis]\nurl = \"redis://localhost\"\n";
        let error = Simulation::new(scenario(1.0, 1, vec![])?)
            .config_toml("broken.toml", broken)
            .run()
            .err()
            .ok_or("0 attempts is refused")?;
        assert!(error.to_string().contains("broken.toml:2"), "{error}");
        Ok(())
    }

    /// A quota the dependency advertises is followed by our own client (it holds until the
    /// window's end): the dependency sees its limit and no 429; unadvertised, one 429 a
    /// window more.
    #[test]
    fn an_advertised_quota_is_followed() -> Result {
        let mut seen = Vec::new();
        for fields in [
            QuotaFields::XRateLimit,
            QuotaFields::Ietf,
            QuotaFields::None,
        ] {
            let mut limited = phase("q", 0, fixed(10), vec![]);
            limited.quota = Some(crate::sim::scenario::Quota {
                limit: 20,
                window: Duration::from_secs(1),
                fields,
            });
            let mut squeeze = scenario(40.0, 10, vec![limited])?;
            squeeze.replicas = 1;
            let report = Simulation::new(squeeze).run()?;
            invariants(&report);
            let rates = report.series.attempts_rps.get(..9).ok_or("10 steps")?;
            seen.push(rates.iter().sum::<f64>() / 9.0);
        }
        // Advertised: the limit exactly. Not: the client learns from a 429 a window (and
        // its Retry-After), one attempt more a second.
        assert!(seen[0] <= 20.0 && seen[1] <= 20.0, "{seen:?}");
        assert!(seen[2] > 20.5, "{seen:?}");
        Ok(())
    }

    /// The speed gate: the outage of `examples/scenarios/outage.toml` (1,000 requests/s,
    /// healthy, 503s, recovery) under four policies, then two under the command line's
    /// tracing subscriber. Run with `SIM_SECS=600 cargo test --release --features
    /// cli,testkit --lib sim::runner::tests::speed -- --ignored --nocapture` (measured on the
    /// shared 2-core box: 1.8 s for the default policy, 3.8 s for five attempts with neither
    /// budget nor breaker; the same with the subscriber).
    #[test]
    #[ignore]
    fn speed() -> Result {
        let secs = std::env::var("SIM_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        let healthy = Latency::LogNormal {
            p50: Duration::from_millis(20),
            p99: Duration::from_millis(120),
        };
        let phases = vec![
            phase("healthy", 0, healthy, vec![]),
            phase("outage", secs / 5, healthy, vec![status(503, 1.0)]),
            phase("recovery", secs / 2, healthy, vec![]),
        ];
        let mut outage = scenario(1000.0, secs, phases)?;
        outage.replicas = 1;
        let policies = [
            ("default", "[default]\n"),
            (
                "no-budget",
                "[default]\nmax_attempts = 5\n[default.retry_budget]\nenabled = false\n",
            ),
            (
                "no-budget-no-breaker",
                "[default]\nmax_attempts = 5\n[default.retry_budget]\nenabled = false\n[default.breaker]\nenabled = false\n",
            ),
            (
                "default-no-breaker",
                "[default]\n[default.breaker]\nenabled = false\n",
            ),
        ];
        let mut runs: Vec<(String, &str)> = policies
            .iter()
            .map(|(label, policy)| ((*label).to_owned(), *policy))
            .collect();
        // Then two again under the subscriber the command line installs (`RUST_LOG` unset:
        // errors only), installed before their runs.
        runs.push(("traced default".to_owned(), policies[0].1));
        runs.push(("traced no-budget-no-breaker".to_owned(), policies[2].1));
        for (i, (label, policy)) in runs.into_iter().enumerate() {
            if i == policies.len() {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                    .with_writer(std::io::stderr)
                    .try_init();
            }
            let report = Simulation::new(outage.clone())
                .config_toml(&label, policy)
                .run()?;
            // The gate: under 10 s real for 10 virtual minutes, in release.
            assert!(
                cfg!(debug_assertions) || report.real_secs < 10.0,
                "{label}: too slow"
            );
            let down = &report.phases[1];
            println!(
                "{label}: {:.2} s real for {secs} s virtual, {} calls; outage amplification {:?}, success {:?}; total amplification {:?}",
                report.real_secs,
                report.total.calls,
                down.amplification,
                down.success_rate,
                report.total.amplification
            );
        }
        Ok(())
    }
}
