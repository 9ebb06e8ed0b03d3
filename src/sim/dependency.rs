//! The modelled dependency: what it answers an attempt, given the phase, the load on it and
//! its quota. One per run, shared by every replica (and served for real by `loopback.rs`).
//!
//! Each attempt that reaches [`Dependency::answer`] is counted (per step of the report's
//! series, per phase and in total) and is in flight until its [`InFlight`] guard drops: the
//! in-memory transport keeps the guard until the attempt ends however it ends (an answer read,
//! a timeout, a hedge cancelled), the loopback server until its connection's exchange ends.
//! Counting here, not in the transport, gives both ways of running the same numbers.
//!
//! The answer, in this order: the phase in force at the arrival (the last whose `at` is not
//! after it); a fault drawn by share (one uniform draw against the shares' running sum); a
//! connection refused goes no further (it takes no capacity and no quota); then the capacity
//! (`Reject`: its status at once beyond `concurrency` attempts in flight, this one included;
//! `Queue`: the latency stretched by `in_flight / concurrency`, at least 1); then the quota
//! (fixed windows from the run's start; beyond its limit a `429` at once, with `Retry-After`
//! the window's rest, rounded up to whole seconds as the field requires); then the drawn fault
//! or a `200`. Every answer advertises the quota in the chosen fields, as our own client's
//! `server_quota` reader reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::scenario::{Beyond, FaultKind, Latency, Phase, Quota, QuotaFields, Scenario};

/// What the model answers one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ModelReply {
    /// A response: its head after `head_after`, its body `body_after` later.
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        head_after: Duration,
        body_after: Duration,
    },
    /// The connection reset after `after`.
    Reset { after: Duration },
    /// Refused at once.
    Refused,
    /// Never answered.
    Hang,
}

/// The dependency of one run.
#[derive(Debug)]
pub(crate) struct Dependency {
    phases: Vec<Phase>,
    /// The report's step (its steps and phases count the attempts that arrive before
    /// `duration`; those after it, while calls in flight finish, count in the total only).
    step: Duration,
    duration: Duration,
    attempts_per_step: Vec<AtomicU64>,
    attempts_per_phase: Vec<AtomicU64>,
    total: AtomicU64,
    in_flight: Arc<AtomicU64>,
    /// The random draws and the quota's window, behind one lock: the loopback server
    /// answers from its own tasks.
    drawn: Mutex<Drawn>,
    /// When the run started, in real time (for the loopback server's clock).
    started: std::sync::OnceLock<std::time::Instant>,
}

#[derive(Debug)]
struct Drawn {
    rng: fastrand::Rng,
    /// The quota's current window: its length and its index from the start (fixed windows
    /// from the start of the run, kept across phases while their quotas' windows are the
    /// same), and the requests it has let through.
    window: Option<(Duration, u64)>,
    used: u64,
}

/// An attempt in flight at the dependency: dropped when it ends, however it ends.
#[derive(Debug)]
pub(crate) struct InFlight {
    in_flight: Arc<AtomicU64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many steps of `step` cover `duration` (at least one).
pub(crate) fn steps(duration: Duration, step: Duration) -> usize {
    let step = step.as_secs_f64().max(1e-9);
    let n = (duration.as_secs_f64() / step).ceil();
    // A float count of steps to an index: bounded below by 1 and above by what a run holds.
    if n.is_finite() && n >= 1.0 {
        (n as usize).min(10_000_000)
    } else {
        1
    }
}

/// The index of the step containing `at` (the last for anything after the run).
pub(crate) fn step_of(at: Duration, step: Duration, steps: usize) -> usize {
    let nanos = step.as_nanos().max(1);
    let index = at.as_nanos() / nanos;
    usize::try_from(index)
        .unwrap_or(usize::MAX)
        .min(steps.saturating_sub(1))
}

/// The index of the phase in force at `at` (phases are in time order, the first at zero).
pub(crate) fn phase_of(phases: &[Phase], at: Duration) -> usize {
    phases
        .iter()
        .rposition(|phase| phase.at <= at)
        .unwrap_or_default()
}

impl Dependency {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let steps = steps(scenario.duration, scenario.sample_every);
        Dependency {
            phases: scenario.phases.clone(),
            step: scenario.sample_every,
            duration: scenario.duration,
            attempts_per_step: (0..steps).map(|_| AtomicU64::new(0)).collect(),
            attempts_per_phase: (0..scenario.phases.len().max(1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            total: AtomicU64::new(0),
            in_flight: Arc::new(AtomicU64::new(0)),
            // Its own stream, apart from the load's: the same seed, another sequence.
            drawn: Mutex::new(Drawn {
                rng: fastrand::Rng::with_seed(scenario.seed ^ 0x5EED_DE9E_4DE4_C700),
                window: None,
                used: 0,
            }),
            started: std::sync::OnceLock::new(),
        }
    }

    /// The run starts now (in real time): the runner says so once its clients are built.
    pub(crate) fn mark_start(&self) {
        let _ = self.started.set(std::time::Instant::now());
    }

    /// Real time since the run started (zero before it did): the loopback server's
    /// `since_start` for [`answer`](Self::answer).
    // Read by the loopback server (`loopback.rs`, feature `testkit`).
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub(crate) fn since_start(&self) -> Duration {
        self.started.get().map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// The answer to an attempt arriving `since_start` into the run.
    pub(crate) fn answer(&self, since_start: Duration) -> (ModelReply, InFlight) {
        let phase_index = phase_of(&self.phases, since_start);
        if since_start < self.duration {
            let step = step_of(since_start, self.step, self.attempts_per_step.len());
            if let Some(count) = self.attempts_per_step.get(step) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(count) = self.attempts_per_phase.get(phase_index) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let guard = InFlight {
            in_flight: self.in_flight.clone(),
        };
        let Some(phase) = self.phases.get(phase_index) else {
            // No phase at all: a healthy, instant dependency.
            return (ok(Vec::new(), Duration::ZERO, Duration::ZERO), guard);
        };
        let mut drawn = self.drawn.lock().unwrap_or_else(|e| e.into_inner());
        let reply = drawn.reply(phase, since_start, in_flight);
        (reply, guard)
    }

    /// Attempts that arrived in each step (before the run's end).
    pub(crate) fn attempts_per_step(&self) -> Vec<u64> {
        load_all(&self.attempts_per_step)
    }

    /// Attempts that arrived in each phase (before the run's end).
    pub(crate) fn attempts_per_phase(&self) -> Vec<u64> {
        load_all(&self.attempts_per_phase)
    }

    /// Attempts that arrived in all, those after the run's end included.
    pub(crate) fn attempts(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Attempts in flight now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

fn load_all(counts: &[AtomicU64]) -> Vec<u64> {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

fn ok(
    headers: Vec<(&'static str, String)>,
    head_after: Duration,
    body_after: Duration,
) -> ModelReply {
    ModelReply::Answer {
        status: 200,
        headers,
        head_after,
        body_after,
    }
}

impl Drawn {
    fn reply(&mut self, phase: &Phase, at: Duration, in_flight: u64) -> ModelReply {
        let fault = self.fault(phase);
        if matches!(fault, Some(FaultKind::Refused)) {
            return ModelReply::Refused;
        }
        let mut latency = self.latency(phase.latency);
        if let Some(capacity) = phase.capacity {
            let concurrency = u64::from(capacity.concurrency.max(1));
            match capacity.beyond {
                Beyond::Reject { status } if in_flight > concurrency => {
                    let headers = self.quota_fields(phase.quota, at);
                    return ModelReply::Answer {
                        status,
                        headers,
                        head_after: Duration::ZERO,
                        body_after: Duration::ZERO,
                    };
                }
                Beyond::Queue if in_flight > concurrency => {
                    latency = latency.mul_f64(in_flight as f64 / concurrency as f64);
                }
                _ => {}
            }
        }
        if let Some(quota) = phase.quota
            && !self.admit(quota, at)
        {
            let mut headers = self.quota_fields(Some(quota), at);
            let rest = window_rest(quota, at);
            headers.push(("retry-after", whole_secs(rest).to_string()));
            return ModelReply::Answer {
                status: 429,
                headers,
                head_after: Duration::ZERO,
                body_after: Duration::ZERO,
            };
        }
        let mut headers = self.quota_fields(phase.quota, at);
        match fault {
            None | Some(FaultKind::Refused) => ok(headers, latency, Duration::ZERO),
            Some(FaultKind::Status {
                status,
                retry_after,
            }) => {
                if let Some(after) = retry_after {
                    headers.push(("retry-after", whole_secs(after).to_string()));
                }
                ModelReply::Answer {
                    status,
                    headers,
                    head_after: latency,
                    body_after: Duration::ZERO,
                }
            }
            Some(FaultKind::Reset) => ModelReply::Reset { after: latency },
            Some(FaultKind::Hang) => ModelReply::Hang,
            Some(FaultKind::SlowBody { body_delay }) => ok(headers, latency, body_delay),
        }
    }

    /// The fault this attempt meets, if any: one draw against the shares' running sum.
    fn fault(&mut self, phase: &Phase) -> Option<FaultKind> {
        if phase.faults.is_empty() {
            return None;
        }
        let draw = self.rng.f64();
        let mut sum = 0.0;
        for fault in &phase.faults {
            sum += fault.share;
            if draw < sum {
                return Some(fault.kind);
            }
        }
        None
    }

    fn latency(&mut self, latency: Latency) -> Duration {
        match latency {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                let span = max.saturating_sub(min);
                min + span.mul_f64(self.rng.f64())
            }
            Latency::LogNormal { p50, p99 } => {
                let p50s = p50.as_secs_f64().max(1e-9);
                let p99s = p99.as_secs_f64().max(p50s);
                let mu = p50s.ln();
                let sigma = (p99s / p50s).ln() / 2.326;
                // Box–Muller: 1 - f64() is in (0, 1], so its log is finite.
                let u1 = 1.0 - self.rng.f64();
                let u2 = self.rng.f64();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let secs = (mu + sigma * z).exp();
                // At most an hour: a draw far in the tail stays a number tokio can sleep.
                Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
            }
        }
    }

    /// Whether the quota lets this request through (counting it if so).
    fn admit(&mut self, quota: Quota, at: Duration) -> bool {
        self.roll(quota, at);
        if self.used >= quota.limit {
            return false;
        }
        self.used += 1;
        true
    }

    /// Starts a new window when `at` is past the current one, or the quota's window changed
    /// length (a new limit alone applies to what the window has let through already).
    fn roll(&mut self, quota: Quota, at: Duration) {
        let window = (quota.window, window_index(quota, at));
        if self.window != Some(window) {
            self.window = Some(window);
            self.used = 0;
        }
    }

    /// The quota's fields on an answer: what is left of the window after this request.
    fn quota_fields(&mut self, quota: Option<Quota>, at: Duration) -> Vec<(&'static str, String)> {
        let Some(quota) = quota else {
            return Vec::new();
        };
        self.roll(quota, at);
        let remaining = quota.limit.saturating_sub(self.used);
        let rest = window_rest(quota, at);
        let window = whole_secs(quota.window);
        match quota.fields {
            QuotaFields::None => Vec::new(),
            QuotaFields::XRateLimit => vec![
                ("x-ratelimit-limit", quota.limit.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
                // Fractions are read (some gateways send them): the reset exactly.
                ("x-ratelimit-reset", format!("{:.3}", rest.as_secs_f64())),
            ],
            QuotaFields::Ietf => vec![
                (
                    "ratelimit-policy",
                    format!("\"sim\";q={};w={window}", quota.limit),
                ),
                (
                    "ratelimit",
                    format!("\"sim\";r={remaining};t={}", whole_secs(rest)),
                ),
            ],
        }
    }
}

fn window_index(quota: Quota, at: Duration) -> u64 {
    let window = quota.window.as_nanos().max(1);
    u64::try_from(at.as_nanos() / window).unwrap_or(u64::MAX)
}

/// The time from `at` to the end of its window.
fn window_rest(quota: Quota, at: Duration) -> Duration {
    let window = quota.window.as_nanos().max(1);
    let into = at.as_nanos() % window;
    Duration::from_nanos(u64::try_from(window - into).unwrap_or(u64::MAX))
}

/// Whole seconds, rounded up (what `Retry-After` and the IETF fields carry).
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overload::QuotaHeaders;
    use crate::sim::runner::tests::{Result, phase, scenario};
    use crate::sim::scenario::{Capacity, Fault};

    fn one_phase(phase: Phase) -> std::result::Result<Dependency, url::ParseError> {
        Ok(Dependency::new(&scenario(1.0, 60, vec![phase])?))
    }

    fn head_after(reply: &ModelReply) -> Option<Duration> {
        match reply {
            ModelReply::Answer { head_after, .. } => Some(*head_after),
            _ => None,
        }
    }

    fn status(reply: &ModelReply) -> Option<u16> {
        match reply {
            ModelReply::Answer { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        let index = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
        sorted[index]
    }

    /// Log-normal from p50 and p99: the draws' quantiles are the ones asked for.
    #[test]
    fn log_normal_latency_has_the_asked_percentiles() -> Result {
        let latency = Latency::LogNormal {
            p50: Duration::from_millis(20),
            p99: Duration::from_millis(120),
        };
        let dependency = one_phase(phase("p", 0, latency, vec![]))?;
        let mut draws: Vec<f64> = (0..100_000)
            .map(|_| {
                let (reply, _guard) = dependency.answer(Duration::ZERO);
                head_after(&reply).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
            })
            .collect();
        draws.sort_by(f64::total_cmp);
        let (p50, p99) = (quantile(&draws, 0.5), quantile(&draws, 0.99));
        assert!((19.4..=20.6).contains(&p50), "p50 {p50}");
        assert!((114.0..=126.0).contains(&p99), "p99 {p99}");
        let uniform = Latency::Uniform {
            min: Duration::from_millis(10),
            max: Duration::from_millis(30),
        };
        let dependency = one_phase(phase("u", 0, uniform, vec![]))?;
        for _ in 0..1_000 {
            let (reply, _guard) = dependency.answer(Duration::ZERO);
            let after = head_after(&reply).ok_or("no answer")?;
            assert!(after >= Duration::from_millis(10) && after <= Duration::from_millis(30));
        }
        Ok(())
    }

    /// Each fault meets its share of the attempts; the rest are 200s.
    #[test]
    fn faults_are_drawn_by_share() -> Result {
        let faults = vec![
            Fault {
                kind: FaultKind::Status {
                    status: 503,
                    retry_after: Some(Duration::from_millis(1500)),
                },
                share: 0.3,
            },
            Fault {
                kind: FaultKind::Reset,
                share: 0.1,
            },
            Fault {
                kind: FaultKind::Refused,
                share: 0.1,
            },
            Fault {
                kind: FaultKind::Hang,
                share: 0.05,
            },
            Fault {
                kind: FaultKind::SlowBody {
                    body_delay: Duration::from_secs(3),
                },
                share: 0.05,
            },
        ];
        let fixed = Latency::Fixed(Duration::from_millis(5));
        let dependency = one_phase(phase("f", 0, fixed, faults))?;
        let mut counts = [0u32; 6];
        let n: u32 = 100_000;
        for _ in 0..n {
            let (reply, _guard) = dependency.answer(Duration::ZERO);
            let index = match &reply {
                ModelReply::Answer {
                    status: 503,
                    headers,
                    ..
                } => {
                    // Retry-After in whole seconds, rounded up.
                    assert!(
                        headers.contains(&("retry-after", "2".to_owned())),
                        "{headers:?}"
                    );
                    0
                }
                ModelReply::Reset { after } => {
                    assert_eq!(*after, Duration::from_millis(5));
                    1
                }
                ModelReply::Refused => 2,
                ModelReply::Hang => 3,
                ModelReply::Answer {
                    status: 200,
                    body_after,
                    ..
                } if !body_after.is_zero() => 4,
                ModelReply::Answer { status: 200, .. } => 5,
                other => return Err(format!("unexpected {other:?}").into()),
            };
            counts[index] += 1;
        }
        let shares = [0.3, 0.1, 0.1, 0.05, 0.05, 0.4];
        for (count, share) in counts.iter().zip(shares) {
            let seen = f64::from(*count) / f64::from(n);
            assert!((seen - share).abs() < 0.01, "{counts:?}");
        }
        assert_eq!(dependency.attempts(), u64::from(n));
        assert_eq!(dependency.in_flight(), 0);
        Ok(())
    }

    /// Beyond the capacity: rejected at once, or slowed down in proportion.
    #[test]
    fn capacity_rejects_or_queues_beyond_concurrency() -> Result {
        let fixed = Latency::Fixed(Duration::from_millis(100));
        let mut rejecting = phase("r", 0, fixed, vec![]);
        rejecting.capacity = Some(Capacity {
            concurrency: 2,
            beyond: Beyond::Reject { status: 503 },
        });
        let dependency = one_phase(rejecting)?;
        let (first, one) = dependency.answer(Duration::ZERO);
        let (second, _two) = dependency.answer(Duration::ZERO);
        let (third, three) = dependency.answer(Duration::ZERO);
        assert_eq!((status(&first), status(&second)), (Some(200), Some(200)));
        assert_eq!(status(&third), Some(503));
        assert_eq!(head_after(&third), Some(Duration::ZERO));
        assert_eq!(dependency.in_flight(), 3);
        drop((one, three));
        assert_eq!(dependency.in_flight(), 1);
        let (fourth, _four) = dependency.answer(Duration::ZERO);
        assert_eq!(status(&fourth), Some(200));

        let mut queueing = phase("q", 0, fixed, vec![]);
        queueing.capacity = Some(Capacity {
            concurrency: 2,
            beyond: Beyond::Queue,
        });
        let dependency = one_phase(queueing)?;
        let guards: Vec<_> = (0..4).map(|_| dependency.answer(Duration::ZERO)).collect();
        let heads: Vec<_> = guards.iter().map(|(r, _)| head_after(r)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(heads, [ms(100), ms(100), ms(150), ms(200)]);
        Ok(())
    }

    /// A quota of 3 a second: the 4th request of a window is a 429 until the next window;
    /// every answer says what is left, in fields our own client reads back.
    #[test]
    fn the_quota_is_enforced_per_window_and_advertised() -> Result {
        for fields in [QuotaFields::XRateLimit, QuotaFields::Ietf] {
            let mut limited = phase("q", 0, Latency::Fixed(Duration::from_millis(1)), vec![]);
            limited.quota = Some(Quota {
                limit: 3,
                window: Duration::from_secs(1),
                fields,
            });
            let dependency = one_phase(limited)?;
            let at = Duration::from_millis(2_400);
            for left in [2, 1, 0] {
                let (reply, _guard) = dependency.answer(at);
                assert_eq!(status(&reply), Some(200));
                let quota = read_back(&reply).ok_or("no quota read")?;
                assert_eq!(quota.remaining, left, "{fields:?} {reply:?}");
                assert!(quota.reset <= Duration::from_millis(1_000), "{quota:?}");
            }
            let (reply, _guard) = dependency.answer(Duration::from_millis(2_900));
            assert_eq!(status(&reply), Some(429), "{fields:?}");
            let ModelReply::Answer { headers, .. } = &reply else {
                return Err("no answer".into());
            };
            assert!(
                headers.contains(&("retry-after", "1".to_owned())),
                "{headers:?}"
            );
            assert_eq!(read_back(&reply).map(|q| q.remaining), Some(0));
            let (reply, _guard) = dependency.answer(Duration::from_millis(3_000));
            assert_eq!(status(&reply), Some(200), "a new window");
        }
        Ok(())
    }

    /// A phase that keeps the quota (inherited) keeps its window: what the window let
    /// through before the phase changed still counts. A new window length starts afresh.
    #[test]
    fn a_quota_window_runs_on_across_phases() -> Result {
        let quota = |window| Quota {
            limit: 3,
            window: Duration::from_secs(window),
            fields: QuotaFields::None,
        };
        let fixed = Latency::Fixed(Duration::from_millis(1));
        let mut a = phase("a", 0, fixed, vec![]);
        a.quota = Some(quota(10));
        let mut b = phase("b", 5, fixed, vec![]);
        b.quota = Some(quota(10));
        let mut c = phase("c", 7, fixed, vec![]);
        c.quota = Some(quota(20));
        let dependency = Dependency::new(&scenario(1.0, 30, vec![a, b, c])?);
        let statuses = |at: u64, n: usize| -> Vec<Option<u16>> {
            (0..n)
                .map(|_| status(&dependency.answer(Duration::from_secs(at)).0))
                .collect()
        };
        assert_eq!(statuses(1, 2), [Some(200); 2]);
        // Phase b, the same window of 10 s: one left.
        assert_eq!(statuses(6, 2), [Some(200), Some(429)]);
        // Phase c, windows of 20 s: a new one.
        assert_eq!(statuses(8, 3), [Some(200); 3]);
        Ok(())
    }

    fn read_back(reply: &ModelReply) -> Option<crate::overload::server_quota::Quota> {
        let ModelReply::Answer { headers, .. } = reply else {
            return None;
        };
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, http::HeaderValue::from_str(value).ok()?);
        }
        let advertised = crate::overload::server_quota::read(
            &map,
            &QuotaHeaders::auto(),
            std::time::SystemTime::now,
        )?;
        advertised.first().cloned()
    }

    /// Attempts are counted in their step and phase; phases change at their `at`; those
    /// after the run's end in the total only.
    #[test]
    fn attempts_are_counted_per_step_and_phase() -> Result {
        let fixed = Latency::Fixed(Duration::ZERO);
        let failing = vec![Fault {
            kind: FaultKind::Refused,
            share: 1.0,
        }];
        let scenario = scenario(
            1.0,
            3,
            vec![phase("a", 0, fixed, vec![]), phase("b", 2, fixed, failing)],
        )?;
        let dependency = Dependency::new(&scenario);
        for ms in [0, 999, 1_000, 2_000, 2_500, 9_000] {
            let (reply, _guard) = dependency.answer(Duration::from_millis(ms));
            let refused = reply == ModelReply::Refused;
            assert_eq!(refused, ms >= 2_000, "{ms}: {reply:?}");
        }
        // The attempt at 9 s, after the run's 3 s, counts in the total only.
        assert_eq!(dependency.attempts_per_step(), [2, 1, 2]);
        assert_eq!(dependency.attempts_per_phase(), [3, 2]);
        assert_eq!(dependency.attempts(), 6);
        Ok(())
    }
}
