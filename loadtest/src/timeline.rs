//! The per-second time series: merges the workers' interval snapshots into one row per second.
//!
//! A second is final once every worker has said it has nothing more for it
//! ([`IntervalSnapshot::complete_through`]); then its merged histograms are reduced to a few
//! percentiles and dropped. Only rows are kept, so memory grows by one small row per second.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::error_kind::ErrorCounts;
use crate::recorder::{IntervalSnapshot, Layout, RunClock, new_histogram};

/// Latency percentiles of one series in one interval, in microseconds (0 when `count` is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IntervalStats {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl IntervalStats {
    pub fn of(h: &Histogram<u64>) -> IntervalStats {
        if h.is_empty() {
            return IntervalStats::default();
        }
        IntervalStats {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One second of the run, all workers merged.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// Seconds since the run started (warm-up included): the row covers `[index, index + 1)`.
    pub index: u64,
    /// Wall-clock start of the interval, ms since the Unix epoch.
    pub unix_ms: u64,
    pub warmup: bool,
    /// One entry per series of the layout.
    pub series: Vec<IntervalStats>,
    pub errors: ErrorCounts,
    /// One entry per counter of the layout.
    pub counters: Vec<u64>,
}

struct Pending {
    histograms: Vec<Histogram<u64>>,
    errors: ErrorCounts,
    counters: Vec<u64>,
}

/// Collects interval snapshots into rows. Driven by one thread (the run's collector).
pub struct Timeline {
    layout: Layout,
    clock: RunClock,
    complete_through: Vec<Option<u64>>,
    pending: BTreeMap<u64, Pending>,
    rows: Vec<IntervalRow>,
}

impl Timeline {
    pub fn new(layout: Layout, clock: RunClock, workers: usize) -> Timeline {
        Timeline {
            layout,
            clock,
            complete_through: vec![None; workers],
            pending: BTreeMap::new(),
            rows: Vec::new(),
        }
    }

    /// Merges a snapshot; returns how many rows became final (they are the last ones of
    /// [`Timeline::rows`]).
    pub fn absorb(&mut self, snap: IntervalSnapshot) -> usize {
        let layout = self.layout;
        let p = self.pending.entry(snap.index).or_insert_with(|| Pending {
            histograms: layout.series.iter().map(|_| new_histogram()).collect(),
            errors: ErrorCounts::default(),
            counters: vec![0; layout.counters.len()],
        });
        for (mine, theirs) in p.histograms.iter_mut().zip(&snap.histograms) {
            let _ = mine.add(theirs);
        }
        p.errors.merge(&snap.errors);
        for (mine, theirs) in p.counters.iter_mut().zip(&snap.counters) {
            *mine += theirs;
        }
        if let Some(slot) = self.complete_through.get_mut(snap.worker) {
            *slot = Some(slot.map_or(snap.complete_through, |c| c.max(snap.complete_through)));
        }
        let through = self.complete_through.iter().map(|c| c.unwrap_or(0)).min().unwrap_or(0);
        let all_reported = self.complete_through.iter().all(Option::is_some);
        if all_reported {
            self.finalize_through(through)
        } else {
            0
        }
    }

    /// Finalizes everything still pending (all workers are done).
    pub fn finish(&mut self) -> usize {
        self.finalize_through(u64::MAX)
    }

    pub fn rows(&self) -> &[IntervalRow] {
        &self.rows
    }

    pub fn into_rows(self) -> Vec<IntervalRow> {
        self.rows
    }

    fn finalize_through(&mut self, through: u64) -> usize {
        let mut n = 0;
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > through {
                break;
            }
            let index = *entry.key();
            let p = entry.remove();
            // Seconds in which no worker recorded anything still get a row, so that plots show
            // a stall as a gap at zero rather than skipping it.
            let mut next = self.rows.last().map_or(0, |r| r.index + 1);
            while next < index {
                self.rows.push(self.empty_row(next));
                n += 1;
                next += 1;
            }
            self.rows.push(IntervalRow {
                index,
                unix_ms: self.clock.start_unix_ms + index * 1000,
                warmup: self.clock.is_warmup_interval(index),
                series: p.histograms.iter().map(IntervalStats::of).collect(),
                errors: p.errors,
                counters: p.counters,
            });
            n += 1;
        }
        n
    }

    fn empty_row(&self, index: u64) -> IntervalRow {
        IntervalRow {
            index,
            unix_ms: self.clock.start_unix_ms + index * 1000,
            warmup: self.clock.is_warmup_interval(index),
            series: vec![IntervalStats::default(); self.layout.series.len()],
            errors: ErrorCounts::default(),
            counters: vec![0; self.layout.counters.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::recorder::{Recorder, Series, SeriesId};

    const LAYOUT: Layout = Layout {
        series: &[Series {
            name: "latency",
            description: "test",
        }],
        counters: &[],
    };

    #[test]
    fn a_second_is_final_only_when_every_worker_is_past_it() {
        let start = Instant::now();
        let clock = RunClock {
            start,
            measure_from: start,
            end: start + Duration::from_secs(4),
            start_unix_ms: 1_000_000,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let mut a = Recorder::new(0, LAYOUT, clock, Some(tx.clone()));
        let mut b = Recorder::new(1, LAYOUT, clock, Some(tx));
        let at = |ms| start + Duration::from_millis(ms);
        a.record(SeriesId(0), Duration::from_millis(1), at(0), at(10));
        b.record(SeriesId(0), Duration::from_millis(3), at(0), at(20));
        a.tick(at(1100));
        let mut t = Timeline::new(LAYOUT, clock, 2);
        let mut finalized: usize = rx.try_iter().map(|s| t.absorb(s)).sum();
        assert_eq!(finalized, 0, "worker b has not reported second 0 yet");
        b.record(SeriesId(0), Duration::from_millis(5), at(3000), at(3005));
        finalized += rx.try_iter().map(|s| t.absorb(s)).sum::<usize>();
        assert_eq!(finalized, 1);
        assert_eq!(t.rows()[0].series[0].count, 2);
        assert_eq!(t.rows()[0].unix_ms, 1_000_000);
        drop((a.finish(), b.finish()));
        rx.try_iter().for_each(|s| {
            t.absorb(s);
        });
        t.finish();
        let counts: Vec<_> = t.rows().iter().map(|r| (r.index, r.series[0].count)).collect();
        assert_eq!(counts, vec![(0, 2), (1, 0), (2, 0), (3, 1)]);
    }
}
