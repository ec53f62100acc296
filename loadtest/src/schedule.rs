//! The open-loop arrival schedule: when the k-th request is *intended* to be sent.
//!
//! The schedule is a pure function of the slot number, so nothing is stored per slot and a worker
//! that falls behind still knows exactly when each overdue request should have gone out: that
//! intended time is what latency is measured from (the coordinated-omission correction).
//!
//! Arrivals are evenly spaced (deterministic, not Poisson), as in wrk2: a constant rate gives one
//! slot every `1/rate` seconds; a ramp raises the rate linearly from `from` to `to` over the
//! measured window, after a warm-up run at `from`.

use std::time::Duration;

/// The arrival rate over time, in requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrivalRate {
    /// The same rate for the whole run (warm-up included).
    Constant(f64),
    /// `from` during the warm-up, then linear from `from` to `to` over the measured window.
    Ramp { from: f64, to: f64 },
}

/// Intended send times for a run of `warmup` followed by `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: ArrivalRate,
    warmup: f64,
    duration: f64,
}

impl Schedule {
    /// Rates must be finite and non-negative, and not both zero (checked by the CLI).
    pub fn new(rate: ArrivalRate, warmup: Duration, duration: Duration) -> Schedule {
        Schedule {
            rate,
            warmup: warmup.as_secs_f64(),
            duration: duration.as_secs_f64(),
        }
    }

    pub fn rate(&self) -> ArrivalRate {
        self.rate
    }

    /// The instantaneous rate at `t` seconds after the run started.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self.rate {
            ArrivalRate::Constant(r) => r,
            ArrivalRate::Ramp { from, to } => {
                let s = (t - self.warmup).clamp(0.0, self.duration);
                if self.duration == 0.0 {
                    from
                } else {
                    from + (to - from) * s / self.duration
                }
            }
        }
    }

    /// Expected number of arrivals in `[0, t)` seconds: the integral of the rate.
    pub fn arrivals_before(&self, t: f64) -> f64 {
        match self.rate {
            ArrivalRate::Constant(r) => r * t.max(0.0),
            ArrivalRate::Ramp { from, .. } => {
                let w = t.clamp(0.0, self.warmup);
                let s = (t - self.warmup).clamp(0.0, self.duration);
                from * w + (from + self.rate_at(self.warmup + s)) / 2.0 * s
            }
        }
    }

    /// The intended send time of slot `k` (0-based) as an offset from the run start, or `None`
    /// when the slot falls after the end of the run (or the rate is zero from there on).
    pub fn intended_offset(&self, k: u64) -> Option<Duration> {
        let k = k as f64;
        let t = match self.rate {
            ArrivalRate::Constant(r) => {
                if r <= 0.0 {
                    return None;
                }
                k / r
            }
            ArrivalRate::Ramp { from, to } => {
                let in_warmup = from * self.warmup;
                if k < in_warmup {
                    k / from
                } else {
                    // Solve from·s + (to−from)·s²/(2D) = m for s, in the form that stays exact
                    // when to == from and does not divide by a zero `from`.
                    let m = k - in_warmup;
                    if m == 0.0 {
                        return (self.duration > 0.0).then(|| Duration::from_secs_f64(self.warmup));
                    }
                    let slope = if self.duration > 0.0 {
                        (to - from) / self.duration
                    } else {
                        0.0
                    };
                    let disc = from * from + 2.0 * slope * m;
                    if disc < 0.0 {
                        return None;
                    }
                    let denom = from + disc.sqrt();
                    if denom <= 0.0 {
                        return None;
                    }
                    self.warmup + 2.0 * m / denom
                }
            }
        };
        (t < self.warmup + self.duration).then(|| Duration::from_secs_f64(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Option<Duration>) -> f64 {
        d.expect("inside the run").as_secs_f64()
    }

    #[test]
    fn constant_rate_spaces_slots_evenly() {
        let s = Schedule::new(ArrivalRate::Constant(1000.0), Duration::ZERO, Duration::from_secs(2));
        assert_eq!(secs(s.intended_offset(0)), 0.0);
        assert!((secs(s.intended_offset(1)) - 0.001).abs() < 1e-12);
        assert!((secs(s.intended_offset(1999)) - 1.999).abs() < 1e-9);
        assert_eq!(s.intended_offset(2000), None);
        assert_eq!(s.arrivals_before(2.0), 2000.0);
    }

    #[test]
    fn zero_rate_has_no_slots() {
        let s = Schedule::new(ArrivalRate::Constant(0.0), Duration::ZERO, Duration::from_secs(2));
        assert_eq!(s.intended_offset(0), None);
    }

    #[test]
    fn ramp_slot_times_invert_the_cumulative_count() {
        let cases = [
            (100.0, 300.0, 1.0),
            (0.0, 500.0, 0.0),
            (400.0, 100.0, 2.0),
            (200.0, 200.0, 1.0),
        ];
        for (from, to, warmup) in cases {
            let s = Schedule::new(
                ArrivalRate::Ramp { from, to },
                Duration::from_secs_f64(warmup),
                Duration::from_secs(4),
            );
            let total = s.arrivals_before(warmup + 4.0);
            assert!((total - (from * warmup + (from + to) / 2.0 * 4.0)).abs() < 1e-9);
            let mut last = -1.0;
            for k in (0..total as u64).step_by(7) {
                let t = secs(s.intended_offset(k));
                assert!(t > last, "slots are increasing ({from}->{to}, k={k})");
                last = t;
                let n = s.arrivals_before(t);
                assert!((n - k as f64).abs() < 1e-6, "N(t(k)) = k for {from}->{to}: k={k} N={n}");
            }
            assert_eq!(s.intended_offset(total.ceil() as u64 + 1), None);
        }
    }

    #[test]
    fn ramp_rate_is_linear_over_the_measured_window() {
        let s = Schedule::new(
            ArrivalRate::Ramp { from: 100.0, to: 300.0 },
            Duration::from_secs(1),
            Duration::from_secs(4),
        );
        assert_eq!(s.rate_at(0.5), 100.0);
        assert_eq!(s.rate_at(3.0), 200.0);
        assert_eq!(s.rate_at(5.0), 300.0);
    }
}
