//! Per-worker recording: named latency series in HdrHistograms, errors by kind, named counters,
//! each kept for the whole measured window and for the current one-second interval.
//!
//! One `Recorder` per worker thread, owned by that thread alone (no locks on the hot path). At
//! each second boundary the worker hands its interval to the [`crate::timeline::Timeline`]
//! through a channel and starts a fresh one, so memory does not grow with the run length: a run
//! holds `series × (1 + workers × a few)` histograms however long it lasts. At the end the
//! workers' [`Totals`] are merged. No per-request sample is ever stored.
//!
//! Every scenario (HTTP now; WebSocket, admin API and journeys later) describes its series and
//! counters with a [`Layout`] and records through the same type.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::error_kind::{ErrorCounts, ErrorKind};
use crate::schedule::Sent;

/// Histogram values are microseconds.
pub const UNIT: &str = "us";
/// Three significant figures: 0.1% value resolution, about 100–200 KB per histogram.
pub const SIGNIFICANT_FIGURES: u8 = 3;
/// Latencies above one hour are recorded as one hour.
pub const HIGHEST_TRACKABLE_US: u64 = 3_600_000_000;

/// A fresh latency histogram (µs, 3 significant figures, 1 µs to 1 h).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_US, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

/// The names of a scenario's latency series and counters, in index order. Series are phases or
/// views of one phase (for HTTP in open mode: `corrected` and `service_time`); counters are
/// event counts that are not latencies (`late`, `missed`, …). The first series is the primary
/// one: progress lines and comparisons quote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub series: &'static [Series],
    pub counters: &'static [&'static str],
}

/// A named latency series and a one-line description for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    pub name: &'static str,
    pub description: &'static str,
}

/// The TLS handshake of each new connection to an `https://`/`wss://` target, a series every
/// scenario appends to its layout when it has such targets ([`Layout::with_tls_handshake`]).
pub const TLS_HANDSHAKE: Series = Series {
    name: "tls_handshake",
    description: "TLS handshake of each new connection, from the TCP connection being established to the end of \
                  the handshake; warm-up included, since kept-alive connections open then",
};

impl Layout {
    /// This layout with the [`TLS_HANDSHAKE`] series last. A run builds its layout once, so the
    /// few bytes of the new series list are leaked rather than every layout made owned.
    pub fn with_tls_handshake(self) -> Layout {
        let mut series = self.series.to_vec();
        series.push(TLS_HANDSHAKE);
        Layout {
            series: Vec::leak(series),
            counters: self.counters,
        }
    }
}

/// Index of a series in its [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesId(pub usize);

/// Index of a counter in its [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterId(pub usize);

/// The time frame of a run: warm-up from `start` to `measure_from`, measurement until `end`.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    pub start: Instant,
    pub measure_from: Instant,
    pub end: Instant,
    /// Wall-clock time of `start`, for timestamps in reports (ms since the Unix epoch).
    pub start_unix_ms: u64,
}

impl RunClock {
    pub fn starting_now(warmup: Duration, duration: Duration) -> RunClock {
        let start = Instant::now();
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        RunClock {
            start,
            measure_from: start + warmup,
            end: start + warmup + duration,
            start_unix_ms,
        }
    }

    pub fn warmup(&self) -> Duration {
        self.measure_from - self.start
    }

    pub fn duration(&self) -> Duration {
        self.end - self.measure_from
    }

    /// Whether an event that *started* at `started` counts (it did not start in the warm-up).
    pub fn is_measured(&self, started: Instant) -> bool {
        started >= self.measure_from
    }

    /// Number of one-second intervals in the run, warm-up included.
    pub fn interval_count(&self) -> u64 {
        (self.end - self.start).as_secs_f64().ceil().max(1.0) as u64
    }

    /// The interval an event at `at` falls into; late stragglers go into the last one.
    pub fn interval_index(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start)
            .as_secs()
            .min(self.interval_count() - 1)
    }

    /// When interval `index` ends: `None` for the last one (and beyond), which takes every
    /// event up to the end of the run and any straggler after it.
    pub fn interval_end(&self, index: u64) -> Option<Instant> {
        (index < self.interval_count() - 1).then(|| self.start + Duration::from_secs(index + 1))
    }

    /// Whether interval `index` lies (mostly) in the warm-up.
    pub fn is_warmup_interval(&self, index: u64) -> bool {
        (index as f64 + 0.5) < self.warmup().as_secs_f64()
    }
}

/// One worker's data for one second, sent to the timeline.
#[derive(Debug)]
pub struct IntervalSnapshot {
    pub worker: usize,
    pub index: u64,
    /// The worker has no more data for intervals up to and including this one.
    pub complete_through: u64,
    pub histograms: Vec<Histogram<u64>>,
    pub errors: ErrorCounts,
    pub counters: Vec<u64>,
}

/// Whole-window data of one worker, or of all workers once merged.
#[derive(Debug, Clone)]
pub struct Totals {
    pub histograms: Vec<Histogram<u64>>,
    pub errors: ErrorCounts,
    pub counters: Vec<u64>,
}

impl Totals {
    pub fn empty(layout: Layout) -> Totals {
        Totals {
            histograms: layout.series.iter().map(|_| new_histogram()).collect(),
            errors: ErrorCounts::default(),
            counters: vec![0; layout.counters.len()],
        }
    }

    pub fn merge(&mut self, other: &Totals) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            // Same bounds everywhere (new_histogram), so adding cannot fail.
            let _ = mine.add(theirs);
        }
        self.errors.merge(&other.errors);
        for (mine, theirs) in self.counters.iter_mut().zip(&other.counters) {
            *mine += theirs;
        }
    }
}

/// One worker's recorder. See the module documentation.
///
/// A latency is recorded once, into the current interval: into `measured` when its event
/// started in the measured window, into `interval.histograms` otherwise. When the interval is
/// handed over, `measured` is added to both the totals and the interval. This keeps the hot path
/// at one histogram update per latency instead of two.
pub struct Recorder {
    worker: usize,
    layout: Layout,
    clock: RunClock,
    totals: Totals,
    interval: IntervalSnapshot,
    /// This interval's latencies of events that started in the measured window.
    measured: Vec<Histogram<u64>>,
    /// When the current interval ends; `None` for the last one, which takes every straggler.
    interval_end: Option<Instant>,
    sink: Option<Sender<IntervalSnapshot>>,
    /// The [`TLS_HANDSHAKE`] series, when the layout has it.
    tls_series: Option<SeriesId>,
}

impl Recorder {
    /// `sink` receives each finished interval; `None` keeps only the totals.
    pub fn new(worker: usize, layout: Layout, clock: RunClock, sink: Option<Sender<IntervalSnapshot>>) -> Recorder {
        let totals = Totals::empty(layout);
        let interval = IntervalSnapshot {
            worker,
            index: 0,
            complete_through: 0,
            histograms: totals.histograms.clone(),
            errors: ErrorCounts::default(),
            counters: totals.counters.clone(),
        };
        let measured = totals.histograms.clone();
        Recorder {
            worker,
            layout,
            clock,
            totals,
            interval,
            measured,
            interval_end: clock.interval_end(0),
            sink,
            tls_series: layout.series.iter().position(|s| *s == TLS_HANDSHAKE).map(SeriesId),
        }
    }

    pub fn clock(&self) -> &RunClock {
        &self.clock
    }

    /// Records one latency of `series` for an event that started (or was intended to start) at
    /// `started` and completed at `completed`. Warm-up events only show in the time series.
    pub fn record(&mut self, series: SeriesId, latency: Duration, started: Instant, completed: Instant) {
        let us = (latency.as_micros() as u64).clamp(1, HIGHEST_TRACKABLE_US);
        self.advance_to(completed);
        if self.clock.is_measured(started) {
            self.measured[series.0].saturating_record(us);
        } else {
            self.interval.histograms[series.0].saturating_record(us);
        }
    }

    /// Records the TLS handshake of a new connection, which started at `started`, when the
    /// layout has the [`TLS_HANDSHAKE`] series. Handshakes of the warm-up count too: with
    /// keep-alive that is when the connections open, and they carry the measured requests.
    pub fn record_tls_handshake(&mut self, started: Instant, took: Duration) {
        if let Some(series) = self.tls_series {
            let counted_from = started.max(self.clock.measure_from);
            self.record(series, took, counted_from, started + took);
        }
    }

    /// Counts one error of `kind`.
    pub fn record_error(&mut self, kind: ErrorKind, started: Instant, at: Instant) {
        self.advance_to(at);
        self.interval.errors.add(kind, 1);
        if self.clock.is_measured(started) {
            self.totals.errors.add(kind, 1);
        }
    }

    /// Adds `n` to a counter.
    pub fn count(&mut self, counter: CounterId, n: u64, started: Instant, at: Instant) {
        self.advance_to(at);
        self.interval.counters[counter.0] += n;
        if self.clock.is_measured(started) {
            self.totals.counters[counter.0] += n;
        }
    }

    /// Counts a send [`Lateness`](crate::schedule::Lateness) judged: in `late` when it was late,
    /// and in `late_pool_full` as well when the wait for room at the limit made it so.
    pub fn count_lateness(
        &mut self,
        sent: Sent,
        [late, late_pool_full]: [CounterId; 2],
        intended: Instant,
        at: Instant,
    ) {
        if sent != Sent::OnTime {
            self.count(late, 1, intended, at);
        }
        if sent == Sent::LateBehindFullLimit {
            self.count(late_pool_full, 1, intended, at);
        }
    }

    /// Hands over the current interval if `now` is past it. Workers call this a few times a
    /// second so that an idle worker does not hold up the time series.
    pub fn tick(&mut self, now: Instant) {
        self.advance_to(now);
    }

    /// Sends the last interval, closes this recorder's end of the channel (the timeline ends
    /// when every recorder has finished) and returns the totals.
    pub fn finish(&mut self) -> Totals {
        self.flush(u64::MAX, u64::MAX);
        self.sink = None;
        std::mem::replace(&mut self.totals, Totals::empty(self.layout))
    }

    #[inline]
    fn advance_to(&mut self, at: Instant) {
        // One comparison on the hot path; the index only when the interval is over.
        if self.interval_end.is_some_and(|end| at >= end) {
            let index = self.clock.interval_index(at);
            self.flush(index, index - 1);
        }
    }

    fn flush(&mut self, next_index: u64, complete_through: u64) {
        for (measured, (total, interval)) in self
            .measured
            .iter_mut()
            .zip(self.totals.histograms.iter_mut().zip(&mut self.interval.histograms))
        {
            if !measured.is_empty() {
                // Same bounds everywhere (new_histogram), so adding cannot fail.
                let _ = total.add(&*measured);
                let _ = interval.add(&*measured);
                measured.reset();
            }
        }
        self.interval_end = self.clock.interval_end(next_index);
        let fresh = IntervalSnapshot {
            worker: self.worker,
            index: next_index,
            complete_through: 0,
            histograms: self.interval.histograms.iter().map(Histogram::new_from).collect(),
            errors: ErrorCounts::default(),
            counters: vec![0; self.interval.counters.len()],
        };
        let mut done = std::mem::replace(&mut self.interval, fresh);
        done.complete_through = complete_through;
        if let Some(sink) = &self.sink {
            // A closed timeline means the run is being torn down; the totals still count.
            let _ = sink.send(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        series: &[Series {
            name: "latency",
            description: "test",
        }],
        counters: &["late"],
    };

    fn clock(warmup_ms: u64, duration_ms: u64) -> RunClock {
        let start = Instant::now();
        RunClock {
            start,
            measure_from: start + Duration::from_millis(warmup_ms),
            end: start + Duration::from_millis(warmup_ms + duration_ms),
            start_unix_ms: 0,
        }
    }

    #[test]
    fn warmup_events_stay_out_of_the_totals_but_not_the_intervals() {
        let c = clock(1000, 2000);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = Recorder::new(0, LAYOUT, c, Some(tx));
        let at = |ms| c.start + Duration::from_millis(ms);
        r.record(SeriesId(0), Duration::from_millis(5), at(100), at(105));
        r.record_error(ErrorKind::Timeout, at(200), at(300));
        r.record(SeriesId(0), Duration::from_millis(7), at(1500), at(1507));
        r.count(CounterId(0), 2, at(1500), at(1500));
        r.record(SeriesId(0), Duration::from_millis(9), at(2500), at(2509));
        let totals = r.finish();
        assert_eq!(totals.histograms[0].len(), 2);
        assert_eq!(totals.errors.total(), 0);
        assert_eq!(totals.counters, vec![2]);
        let snaps: Vec<_> = rx.try_iter().collect();
        let indexes: Vec<_> = snaps.iter().map(|s| (s.index, s.histograms[0].len())).collect();
        assert_eq!(indexes, vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(snaps[0].errors.total(), 1);
        assert_eq!(snaps[0].complete_through, 0);
        assert_eq!(snaps[2].complete_through, u64::MAX);
    }

    #[test]
    fn an_interval_across_the_end_of_the_warmup_holds_both_kinds() {
        let c = clock(1500, 1500);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = Recorder::new(0, LAYOUT, c, Some(tx));
        let at = |ms| c.start + Duration::from_millis(ms);
        r.record(SeriesId(0), Duration::from_millis(2), at(1400), at(1402));
        r.record(SeriesId(0), Duration::from_millis(4), at(1600), at(1604));
        r.record(SeriesId(0), Duration::from_millis(8), at(1990), at(2010));
        r.record(SeriesId(0), Duration::from_millis(6), at(2900), at(9000));
        let totals = r.finish();
        assert_eq!(totals.histograms[0].len(), 3);
        assert_eq!(totals.histograms[0].min(), 4000);
        let snaps: Vec<_> = rx.try_iter().map(|s| (s.index, s.histograms[0].len())).collect();
        assert_eq!(snaps, vec![(0, 0), (1, 2), (2, 2)]);
    }

    #[test]
    fn idle_ticks_hand_over_empty_intervals() {
        let c = clock(0, 3000);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = Recorder::new(0, LAYOUT, c, Some(tx));
        r.tick(c.start + Duration::from_millis(2100));
        let snap = rx.try_recv().unwrap();
        assert_eq!((snap.index, snap.complete_through), (0, 1));
    }

    #[test]
    fn stragglers_after_the_end_land_in_the_last_interval() {
        let c = clock(0, 2000);
        assert_eq!(c.interval_count(), 2);
        assert_eq!(c.interval_index(c.start + Duration::from_secs(9)), 1);
    }

    #[test]
    fn totals_merge() {
        let mut a = Totals::empty(LAYOUT);
        let mut b = Totals::empty(LAYOUT);
        a.histograms[0].record(10).unwrap();
        b.histograms[0].record(1000).unwrap();
        b.counters[0] = 3;
        a.merge(&b);
        assert_eq!(a.histograms[0].len(), 2);
        assert_eq!(a.histograms[0].max(), 1000);
        assert_eq!(a.counters, vec![3]);
    }
}
