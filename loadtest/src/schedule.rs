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

/// Intended send times for a run of `warmup` followed by `duration`, or of `warmup` followed by
/// exactly N slots ([`Schedule::counted`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: ArrivalRate,
    warmup: f64,
    duration: f64,
    /// Counted schedules: no slot from this one on, whatever its time.
    slot_limit: Option<u64>,
}

impl Schedule {
    /// Rates must be finite and non-negative, and not both zero (checked by the CLI).
    pub fn new(rate: ArrivalRate, warmup: Duration, duration: Duration) -> Schedule {
        Schedule {
            rate,
            warmup: warmup.as_secs_f64(),
            duration: duration.as_secs_f64(),
            slot_limit: None,
        }
    }

    /// The warm-up's slots, then exactly `requests` slots intended from the end of the warm-up
    /// on (ab's count mode in the open model). The measured window is as long as those slots
    /// take at `rate`: `requests / rate`, or for a ramp the time over which its average rate
    /// gives `requests`, so a ramp still ends at its `to` rate. Rates as for [`Schedule::new`].
    pub fn counted(rate: ArrivalRate, warmup: Duration, requests: u64) -> Schedule {
        let n = requests as f64;
        let duration = match rate {
            ArrivalRate::Constant(r) => n / r,
            ArrivalRate::Ramp { from, to } => 2.0 * n / (from + to),
        };
        let mut s = Schedule {
            rate,
            warmup: warmup.as_secs_f64(),
            duration,
            slot_limit: None,
        };
        // The slot limit, not the window's end, bounds the schedule, so that rounding at the end
        // of the window can neither add nor drop a slot. The warm-up's slots are found with the
        // same arithmetic that dates them.
        s.slot_limit = Some(u64::MAX);
        let mut first_measured = match rate {
            ArrivalRate::Constant(r) | ArrivalRate::Ramp { from: r, .. } => (r * s.warmup).floor() as u64,
        };
        let in_warmup = |k| s.intended_offset(k).is_some_and(|t| t.as_secs_f64() < s.warmup);
        while in_warmup(first_measured) {
            first_measured += 1;
        }
        while first_measured > 0 && !in_warmup(first_measured - 1) {
            first_measured -= 1;
        }
        s.slot_limit = Some(first_measured + requests);
        s
    }

    /// The measured window: as given, or as long as a counted schedule's slots take.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
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
        if self.slot_limit.is_some_and(|limit| k >= limit) {
            return None;
        }
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
                        return (self.duration > 0.0 || self.slot_limit.is_some())
                            .then(|| Duration::from_secs_f64(self.warmup));
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
        (self.slot_limit.is_some() || t < self.warmup + self.duration).then(|| Duration::from_secs_f64(t))
    }
}

/// How late a dispatcher's sends were, and why. A slot sent later than `late_after` after its
/// intended time is late. It is late *behind a full limit* when the dispatcher had to wait for
/// room (every connection busy, the limit reached), or when it came after such a wait before
/// the schedule was caught up: that lateness is the target's slow answers, not the generator's
/// (see `bottleneck`). Every open-model dispatcher keeps one.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    late_after: Duration,
    behind_a_full_limit: bool,
}

/// What [`Lateness::of`] says of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    OnTime,
    Late,
    /// Late, and the wait for room at the limit is why.
    LateBehindFullLimit,
}

impl Lateness {
    pub fn new(late_after: Duration) -> Self {
        Lateness {
            late_after,
            behind_a_full_limit: false,
        }
    }

    /// The dispatcher had to wait for room before its next send.
    pub fn waited_for_room(&mut self) {
        self.behind_a_full_limit = true;
    }

    /// Judges a send intended at `intended` that left at `sent`.
    pub fn of(&mut self, intended: std::time::Instant, sent: std::time::Instant) -> Sent {
        if sent.saturating_duration_since(intended) <= self.late_after {
            // On time again: later lateness has another cause.
            self.behind_a_full_limit = false;
            return Sent::OnTime;
        }
        if self.behind_a_full_limit {
            Sent::LateBehindFullLimit
        } else {
            Sent::Late
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_behind_a_full_limit_lasts_until_a_send_is_on_time() {
        let t0 = std::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut l = Lateness::new(Duration::from_millis(1));
        assert_eq!(l.of(ms(0), ms(5)), Sent::Late);
        l.waited_for_room();
        assert_eq!(l.of(ms(1), ms(9)), Sent::LateBehindFullLimit);
        assert_eq!(l.of(ms(2), ms(9)), Sent::LateBehindFullLimit, "still catching up");
        assert_eq!(l.of(ms(10), ms(10)), Sent::OnTime);
        assert_eq!(l.of(ms(11), ms(20)), Sent::Late, "the wait is over");
    }

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
    fn a_counted_schedule_has_exactly_the_requested_measured_slots() {
        let cases = [
            (ArrivalRate::Constant(1000.0), 0.0, 1001),
            (ArrivalRate::Constant(333.0), 1.0, 7),
            (ArrivalRate::Constant(3.0), 0.5, 10),
            (ArrivalRate::Ramp { from: 100.0, to: 300.0 }, 1.0, 999),
            (ArrivalRate::Ramp { from: 0.0, to: 500.0 }, 0.0, 250),
        ];
        for (rate, warmup, n) in cases {
            let s = Schedule::counted(rate, Duration::from_secs_f64(warmup), n);
            let times: Vec<f64> = (0..)
                .map_while(|k| s.intended_offset(k))
                .map(|d| d.as_secs_f64())
                .collect();
            let measured = times.iter().filter(|t| **t >= warmup).count() as u64;
            assert_eq!(measured, n, "{rate:?} warm-up {warmup}");
            let last = *times.last().unwrap();
            let end = warmup + s.duration().as_secs_f64();
            assert!(
                last < end && end - last <= 0.34,
                "{rate:?}: last slot {last} for a window ending at {end}"
            );
        }
        assert_eq!(
            Schedule::counted(ArrivalRate::Constant(4.0), Duration::ZERO, 10).duration(),
            Duration::from_millis(2500)
        );
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
