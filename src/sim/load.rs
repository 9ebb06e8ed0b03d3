//! The offered load: arrivals (open loop, Poisson, on the scenario's rate curve; or closed-loop
//! callers) and the request mix.
//!
//! Open loop: Poisson arrivals on the piecewise-linear rate, drawn by thinning (candidates at
//! the curve's highest rate, each kept with probability `rate(t) / highest`), which is exact
//! for any curve, and cheap as long as the curve's peak is not far above its mean. Closed
//! loop: each caller calls again `think` after its call ends.
//!
//! The mix: each call draws its kind by weight; the URL is joined once per kind and cloned
//! per call; an `Idempotency-Key` unique to the call when the kind asks for one (the
//! header's value is the call's number), its criticality when it sets one. Calls read their
//! body inside the attempt (`send_buffered`): a slow body is a failed attempt, and the
//! history comes back on the response, as on the error.

use std::time::Duration;

use http::Method;

use super::scenario::{RatePoint, Scenario};
use crate::client::Client;
use crate::error::{Error, ErrorKind, RetryHistory};
use crate::overload::Criticality;

/// One kind of request, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Kind {
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    idempotency_key: bool,
    criticality: Option<Criticality>,
    /// The running sum of the weights up to this kind.
    upto: f64,
}

/// The request mix.
#[derive(Debug, Clone)]
pub(crate) struct Mix {
    kinds: Vec<Kind>,
    total: f64,
}

impl Mix {
    /// The scenario's mix, its paths joined to `base` (the scenario's URL, or the loopback
    /// run's rewrite of it).
    pub(crate) fn new(scenario: &Scenario, base: &url::Url) -> Result<Mix, Error> {
        let mut kinds = Vec::with_capacity(scenario.load.mix.len().max(1));
        let mut total = 0.0;
        for kind in &scenario.load.mix {
            let url = if kind.path.is_empty() {
                base.clone()
            } else {
                base.join(&kind.path).map_err(|e| {
                    Error::invalid_config(format!(
                        "scenario {:?}: path {:?} does not join the URL {base}: {e}",
                        scenario.name, kind.path
                    ))
                })?
            };
            total += kind.weight.max(0.0);
            kinds.push(Kind {
                method: kind.method.clone(),
                url,
                idempotency_key: kind.idempotency_key,
                criticality: kind.criticality,
                upto: total,
            });
        }
        if kinds.is_empty() || total <= 0.0 {
            // No mix: GETs of the URL itself.
            kinds = vec![Kind {
                method: Method::GET,
                url: base.clone(),
                idempotency_key: false,
                criticality: None,
                upto: 1.0,
            }];
            total = 1.0;
        }
        Ok(Mix { kinds, total })
    }

    /// The kinds, in the scenario's order.
    pub(crate) fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// A kind drawn by weight (`None` never: a mix has a kind at least).
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> Option<&Kind> {
        if self.kinds.len() == 1 {
            return self.kinds.first();
        }
        let draw = rng.f64() * self.total;
        let index = self.kinds.partition_point(|kind| kind.upto <= draw);
        self.kinds.get(index).or(self.kinds.last())
    }
}

/// How one call ended, as the recorder wants it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    /// `None`: a success.
    pub(crate) error: Option<ErrorKind>,
    /// Hedges the call sent.
    pub(crate) hedges: u32,
    /// Whether a hedge's answer ended the call successfully.
    pub(crate) hedge_won: bool,
}

/// Sends one call of `kind` (the `n`th of the run) through `client`.
pub(crate) async fn call(client: &Client, kind: &Kind, n: u64) -> Ended {
    let mut request = client.request(kind.method.clone(), kind.url.clone());
    if kind.idempotency_key {
        request = request.header(crate::retry::IDEMPOTENCY_KEY, n);
    }
    if let Some(criticality) = kind.criticality {
        request = request.criticality(criticality);
    }
    match request.send_buffered().await {
        Ok(response) => {
            // A first try's success carries no history: one attempt, no hedge.
            let history = response.extensions().get::<RetryHistory>();
            let attempts = history.map_or(&[][..], |h| &h.0[..]);
            let hedges = attempts.iter().filter(|a| a.hedge).count();
            let hedge_won = attempts
                .iter()
                .rev()
                .find(|a| a.class == crate::classify::Class::Success)
                .is_some_and(|a| a.hedge);
            Ended {
                error: None,
                hedges: u32::try_from(hedges).unwrap_or(u32::MAX),
                hedge_won,
            }
        }
        Err(error) => {
            let hedges = error.attempts().iter().filter(|a| a.hedge).count();
            Ended {
                error: Some(error.kind()),
                hedges: u32::try_from(hedges).unwrap_or(u32::MAX),
                hedge_won: false,
            }
        }
    }
}

/// Poisson arrivals on a piecewise-linear rate curve, by thinning.
#[derive(Debug)]
pub(crate) struct Arrivals {
    points: Vec<RatePoint>,
    peak: f64,
    rng: fastrand::Rng,
}

impl Arrivals {
    pub(crate) fn new(points: &[RatePoint], seed: u64) -> Self {
        let peak = points
            .iter()
            .map(|p| p.rps)
            .filter(|r| r.is_finite())
            .fold(0.0, f64::max);
        Arrivals {
            points: points.to_vec(),
            peak,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The arrival after `after`, if there is one before `end`.
    pub(crate) fn next(&mut self, after: Duration, end: Duration) -> Option<Duration> {
        if self.peak <= 0.0 {
            return None;
        }
        let mut t = after.as_secs_f64();
        let end = end.as_secs_f64();
        loop {
            // 1 - f64() is in (0, 1]: its log is finite.
            t += -(1.0 - self.rng.f64()).ln() / self.peak;
            if t >= end {
                return None;
            }
            let at = Duration::from_secs_f64(t);
            if self.rng.f64() * self.peak < rate_at(&self.points, at) {
                return Some(at);
            }
        }
    }
}

/// The offered rate at `at`: linear between the points, the first's before it, the last's
/// after it.
pub(crate) fn rate_at(points: &[RatePoint], at: Duration) -> f64 {
    let after = points.partition_point(|p| p.at <= at);
    let rate = match (
        after.checked_sub(1).and_then(|i| points.get(i)),
        points.get(after),
    ) {
        (None, None) => 0.0,
        (None, Some(next)) => next.rps,
        (Some(before), None) => before.rps,
        (Some(before), Some(next)) => {
            let span = (next.at - before.at).as_secs_f64();
            if span <= 0.0 {
                next.rps
            } else {
                let into = (at - before.at).as_secs_f64() / span;
                before.rps + (next.rps - before.rps) * into
            }
        }
    };
    if rate.is_finite() { rate.max(0.0) } else { 0.0 }
}
