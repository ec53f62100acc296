//! Worker threads for a scenario: one single-threaded tokio runtime per thread (tasks never
//! cross threads, recording takes no lock), each with its own [`Recorder`]; the calling thread
//! collects the per-second intervals into the [`Timeline`] and shows progress; the workers'
//! totals are merged at the end.
//!
//! Every scenario (HTTP, WebSocket, admin API, journey) runs through [`run_workers`]; only the
//! body of a worker differs.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::error_kind::ErrorKind;
use crate::http_load::RunError;
use crate::process_stats::{CpuMeter, GeneratorUsage, ThreadLife, thread_sched};
use crate::progress::Progress;
use crate::recorder::{CounterId, IntervalSnapshot, Layout, Recorder, RunClock, SeriesId, Totals};
use crate::schedule::Sent;
use crate::timeline::{IntervalRow, Timeline};

/// How often workers hand over their interval even when idle.
const TICK: Duration = Duration::from_millis(200);

/// What a worker's body gets: its place among the workers, the run's clock and its recorder.
#[derive(Clone)]
pub struct WorkerCtx {
    pub index: usize,
    pub threads: usize,
    pub clock: RunClock,
    recorder: Rc<RefCell<Recorder>>,
}

impl WorkerCtx {
    /// Records a latency of `series` for an event that started (or was intended to) at
    /// `started` and ended at `done`.
    pub fn record(&self, series: SeriesId, started: Instant, done: Instant) {
        self.recorder
            .borrow_mut()
            .record(series, done.saturating_duration_since(started), started, done);
    }

    /// Records a latency measured from `from` (which may differ from the event's start, e.g. the
    /// actual send time when the event is dated by its intended time `started`).
    pub fn record_from(&self, series: SeriesId, from: Instant, started: Instant, done: Instant) {
        self.recorder
            .borrow_mut()
            .record(series, done.saturating_duration_since(from), started, done);
    }

    /// Records the TLS handshake of a new connection ([`Recorder::record_tls_handshake`]).
    pub fn record_tls_handshake(&self, started: Instant, took: Duration) {
        self.recorder.borrow_mut().record_tls_handshake(started, took);
    }

    pub fn error(&self, kind: ErrorKind, started: Instant, at: Instant) {
        self.recorder.borrow_mut().record_error(kind, started, at);
    }

    pub fn count(&self, counter: CounterId, n: u64, started: Instant, at: Instant) {
        self.recorder.borrow_mut().count(counter, n, started, at);
    }

    /// Counts a send [`Lateness`](crate::schedule::Lateness) judged ([`Recorder::count_lateness`]).
    pub fn count_lateness(&self, sent: Sent, counters: [CounterId; 2], intended: Instant, at: Instant) {
        self.recorder.borrow_mut().count_lateness(sent, counters, intended, at);
    }

    /// The worker's recorder, for a body that records on its hot path without going through
    /// this context.
    pub(crate) fn recorder(&self) -> Rc<RefCell<Recorder>> {
        self.recorder.clone()
    }

    /// This worker's share of `total` items split over all workers (the first ones get one more).
    pub fn share_of(&self, total: usize) -> usize {
        total / self.threads + usize::from(self.index < total % self.threads)
    }

    /// The place, among all `total` items, of this worker's first one when they are split as
    /// [`share_of`](Self::share_of) splits them (worker 0 takes the first share, and so on).
    pub fn first_of(&self, total: usize) -> usize {
        total / self.threads * self.index + self.index.min(total % self.threads)
    }
}

/// The merged result of all workers.
pub struct Finished<T> {
    pub totals: Totals,
    pub rows: Vec<IntervalRow>,
    pub generator: GeneratorUsage,
    /// Each worker's own result, in worker order.
    pub outputs: Vec<T>,
}

/// Runs `body` on `threads` worker threads and blocks until all have finished. The clock is
/// fixed beforehand; bodies decide themselves when to stop (normally at `clock.end`).
pub fn run_workers<T, F, Fut>(
    layout: Layout,
    clock: RunClock,
    threads: usize,
    progress: &mut Progress,
    body: F,
) -> Result<Finished<T>, RunError>
where
    F: Fn(WorkerCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let threads = threads.max(1);
    let cpu = CpuMeter::start();
    let body = Arc::new(body);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let body = body.clone();
        let tx = tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("edgeload-{index}"))
            .spawn(move || worker_thread(index, threads, layout, clock, tx, &*body))
            .map_err(|error| RunError::Worker { index, error })?;
        handles.push(handle);
    }
    drop(tx);
    let mut timeline = Timeline::new(layout, clock, threads);
    progress.start(layout, clock);
    for snap in rx {
        let n = timeline.absorb(snap);
        progress.show(&timeline.rows()[timeline.rows().len() - n..]);
    }
    let n = timeline.finish();
    progress.show(&timeline.rows()[timeline.rows().len() - n..]);
    progress.finish();
    let mut totals = Totals::empty(layout);
    let mut outputs = Vec::with_capacity(threads);
    let mut lives = Vec::with_capacity(threads);
    for (index, h) in handles.into_iter().enumerate() {
        let (worker_totals, output, life) = h
            .join()
            .map_err(|_| RunError::WorkerPanicked { index })?
            .map_err(|error| RunError::Worker { index, error })?;
        totals.merge(&worker_totals);
        outputs.push(output);
        lives.push(life);
    }
    Ok(Finished {
        totals,
        rows: timeline.into_rows(),
        generator: cpu.finish(threads).with_worker_lives(&lives),
        outputs,
    })
}

fn worker_thread<T, F, Fut>(
    index: usize,
    threads: usize,
    layout: Layout,
    clock: RunClock,
    tx: mpsc::Sender<IntervalSnapshot>,
    body: &F,
) -> std::io::Result<(Totals, T, ThreadLife)>
where
    F: Fn(WorkerCtx) -> Fut,
    Fut: Future<Output = T>,
{
    // What the thread did over its life, for the generator's bottleneck verdict.
    let (sched_start, born) = (thread_sched(), Instant::now());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let recorder = Rc::new(RefCell::new(Recorder::new(index, layout, clock, Some(tx))));
    let ctx = WorkerCtx {
        index,
        threads,
        clock,
        recorder: recorder.clone(),
    };
    let local = tokio::task::LocalSet::new();
    let output = local.block_on(&runtime, async {
        let ticker = {
            let recorder = recorder.clone();
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(TICK).await;
                    recorder.borrow_mut().tick(Instant::now());
                }
            })
        };
        let output = body(ctx).await;
        ticker.abort();
        output
    });
    drop(local);
    let life = ThreadLife {
        sched: sched_start.zip(thread_sched()).map(|(a, b)| b.since(a)),
        unparked: runtime.metrics().worker_total_busy_duration(0),
        lived: born.elapsed(),
    };
    let totals = recorder.borrow_mut().finish();
    Ok((totals, output, life))
}
