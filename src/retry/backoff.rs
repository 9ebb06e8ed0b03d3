//! How long to wait before each retry.
//!
//! Exponential growth (`base × multiplier^(retry − 1)`, capped) spreads retries out; jitter
//! spreads *clients* out, so a fleet that failed together does not retry together. Full jitter
//! is the default because it spreads best ("Exponential Backoff And Jitter", AWS architecture
//! blog); gRPC's ±20 % is closer to [`Jitter::Equal`].

use std::time::Duration;

use crate::error::Error;

/// How randomness is applied to the exponential delay `d` of a retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// Uniform in `[0, d]`.
    #[default]
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// Uniform in `[base, 3 × previous delay]`, capped (AWS "decorrelated jitter"); ignores
    /// the multiplier.
    Decorrelated,
    /// Exactly `d`.
    None,
}

/// An exponential backoff schedule with jitter; see the [retry module docs](crate::retry).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    base: Duration,
    multiplier: f64,
    cap: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    /// 100 ms, ×2, capped at 20 s, full jitter.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            multiplier: 2.0,
            cap: Duration::from_secs(20),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// A validated schedule: the multiplier must be a number ≥ 1 and the base must not exceed
    /// the cap. The error names the offending setting.
    pub fn new(
        base: Duration,
        multiplier: f64,
        cap: Duration,
        jitter: Jitter,
    ) -> Result<Self, Error> {
        if multiplier.is_nan() || multiplier < 1.0 {
            return Err(Error::invalid_config(format!(
                "backoff multiplier must be a number of at least 1, got {multiplier}"
            )));
        }
        if base > cap {
            return Err(Error::invalid_config(format!(
                "backoff base ({base:?}) must not exceed backoff cap ({cap:?})"
            )));
        }
        Ok(Backoff {
            base,
            multiplier,
            cap,
            jitter,
        })
    }

    /// The first delay before jitter.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth per retry.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The largest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter mode.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry number `retry` (1 for the first retry), given the previous delay
    /// (zero before the first) and a uniform random number in `[0, 1)` (clamped into it).
    pub fn delay(&self, retry: u32, previous: Duration, random: f64) -> Duration {
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        let exponential = self.exponential(retry);
        match self.jitter {
            Jitter::None => exponential,
            Jitter::Full => exponential.mul_f64(random),
            Jitter::Equal => exponential / 2 + (exponential / 2).mul_f64(random),
            Jitter::Decorrelated => {
                let previous = previous.max(self.base);
                let high = previous.saturating_mul(3).min(self.cap);
                let spread = high.saturating_sub(self.base);
                (self.base + spread.mul_f64(random)).min(self.cap)
            }
        }
    }

    /// `base × multiplier^(retry − 1)`, capped; saturates instead of overflowing.
    fn exponential(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.base.as_secs_f64() * self.multiplier.powi(exponent);
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff::new(100 * MS, 2.0, 2000 * MS, jitter).unwrap()
    }

    #[test]
    fn no_jitter_doubles_up_to_the_cap() {
        let b = backoff(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(1);
        let delays: Vec<_> = (1..=7)
            .map(|n| b.delay(n, Duration::ZERO, rng.f64()))
            .collect();
        assert_eq!(
            delays,
            [
                100 * MS,
                200 * MS,
                400 * MS,
                800 * MS,
                1600 * MS,
                2000 * MS,
                2000 * MS
            ]
        );
        assert_eq!(b.delay(u32::MAX, Duration::ZERO, rng.f64()), 2000 * MS);
    }

    #[test]
    fn every_jitter_mode_stays_in_its_bounds_over_many_seeds() {
        for seed in 0..2000 {
            let mut rng = fastrand::Rng::with_seed(seed);
            for retry in 1..=8 {
                let exp = backoff(Jitter::None).delay(retry, Duration::ZERO, rng.f64());
                let full = backoff(Jitter::Full).delay(retry, Duration::ZERO, rng.f64());
                assert!(full <= exp, "full {full:?} > {exp:?}");
                let equal = backoff(Jitter::Equal).delay(retry, Duration::ZERO, rng.f64());
                assert!(
                    equal >= exp / 2 && equal <= exp,
                    "equal {equal:?} vs {exp:?}"
                );
                let previous =
                    backoff(Jitter::None).delay(retry.max(2) - 1, Duration::ZERO, rng.f64());
                let dec = backoff(Jitter::Decorrelated).delay(retry, previous, rng.f64());
                assert!(
                    dec >= 100 * MS && dec <= (previous * 3).min(2000 * MS),
                    "{dec:?}"
                );
            }
        }
    }

    #[test]
    fn full_jitter_actually_spreads() {
        let b = backoff(Jitter::Full);
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<_> = (0..1000)
            .map(|_| b.delay(3, Duration::ZERO, rng.f64()))
            .collect();
        let low = delays.iter().filter(|d| **d < 200 * MS).count();
        assert!(
            (400..600).contains(&low),
            "{low} of 1000 below the midpoint"
        );
    }

    #[test]
    fn invalid_settings_name_themselves() {
        let nan = Backoff::new(MS, f64::NAN, MS, Jitter::Full).unwrap_err();
        assert!(nan.to_string().contains("multiplier"), "{nan}");
        let small = Backoff::new(MS, 0.5, MS, Jitter::Full).unwrap_err();
        assert!(small.to_string().contains("multiplier"), "{small}");
        let inverted = Backoff::new(2 * MS, 2.0, MS, Jitter::Full).unwrap_err();
        assert!(inverted.to_string().contains("base"), "{inverted}");
        let huge = Backoff::new(MS, f64::INFINITY, 5 * MS, Jitter::None).unwrap();
        assert_eq!(huge.delay(3, Duration::ZERO, 0.5), 5 * MS);
    }
}
