//! An HTTP load run: the worker threads of [`run_workers`] (one single-threaded tokio runtime
//! each, so a request never crosses threads, each with its own [`Recorder`]) drive the closed or
//! open loop; their totals and intervals become a [`Report`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error_kind::ErrorKind;
use crate::progress::Progress;
use crate::recorder::{CounterId, Layout, Recorder, RunClock, Series, SeriesId};
use crate::report::{LoadModelKind, Report};
use crate::request_plan::{PreparedRequest, RequestPlan};
use crate::schedule::{ArrivalRate, Schedule, Sent};
use crate::workers::{Finished, WorkerCtx, run_workers};
use crate::{closed_loop, open_loop};

/// Latency from the intended send time to the end of the response (open mode only).
pub const CORRECTED: Series = Series {
    name: "corrected",
    description: "from the intended send time to the last byte of the response (corrected for coordinated omission)",
};
/// Latency from the actual send time to the end of the response.
pub const SERVICE_TIME: Series = Series {
    name: "service_time",
    description: "from the actual send time to the last byte of the response (uncorrected)",
};

/// Closed mode: one series, and the count of requests sent.
pub const CLOSED_LAYOUT: Layout = Layout {
    series: &[SERVICE_TIME],
    counters: &["sent"],
};
/// Open mode: corrected latency first (the one to quote), service time beside it.
pub const OPEN_LAYOUT: Layout = Layout {
    series: &[CORRECTED, SERVICE_TIME],
    counters: &["sent", "late", "missed", "late_pool_full"],
};

/// Requests sent (a response or a transport error followed).
pub const SENT: CounterId = CounterId(0);
/// Open mode: slots sent more than `late_after` after their intended time.
pub const LATE: CounterId = CounterId(1);
/// Open mode: slots intended before the end of the run but never sent.
pub const MISSED: CounterId = CounterId(2);
/// Open mode: late slots that had to wait for a connection, every one being busy and the pool at
/// its limit (or that came after such a wait, before the schedule was caught up): lateness the
/// target's slow answers cause, not the generator.
pub const LATE_POOL_FULL: CounterId = CounterId(3);

/// How load is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// `connections` connections send back to back.
    Closed { connections: usize },
    /// Requests follow `rate`; at most `max_connections` connections (all workers together).
    Open {
        rate: ArrivalRate,
        max_connections: usize,
        /// A slot sent later than this after its intended time counts as late.
        late_after: Duration,
    },
}

/// Everything an HTTP run needs, validated.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub requests: Arc<RequestPlan>,
    pub model: LoadModel,
    /// Worker threads, each with its own runtime.
    pub threads: usize,
    /// Discarded from the totals (still shown in the time series).
    pub warmup: Duration,
    /// The measured window (ignored in count mode).
    pub duration: Duration,
    /// Count mode: exactly this many measured requests, however long they take.
    pub count: Option<u64>,
    /// Per request, connect included.
    pub timeout: Duration,
    /// Closed model: connection *i* of all sends only URL *i* mod N, instead of every connection
    /// taking the next URL of the round-robin (`--pin-urls`). With as many connections as URLs,
    /// each URL is one client's, as each user of ab-style tests has one connection of their own.
    pub pin_urls: bool,
}

impl LoadPlan {
    /// The series and counters of the run; `https://` targets add `tls_handshake`.
    pub fn layout(&self) -> Layout {
        let layout = match self.model {
            LoadModel::Closed { .. } => CLOSED_LAYOUT,
            LoadModel::Open { .. } => OPEN_LAYOUT,
        };
        if self.requests.tls.is_some() {
            layout.with_tls_handshake()
        } else {
            layout
        }
    }

    /// The load parameters, for reports.
    pub fn parameters(&self) -> Map<String, Value> {
        let mut p = Map::new();
        match self.model {
            LoadModel::Closed { connections } => {
                p.insert("connections".into(), connections.into());
                p.insert("pin_urls".into(), self.pin_urls.into());
            }
            LoadModel::Open {
                rate,
                max_connections,
                late_after,
            } => {
                let (from, to) = match rate {
                    ArrivalRate::Constant(r) => (r, r),
                    ArrivalRate::Ramp { from, to } => (from, to),
                };
                p.insert("rate_from".into(), json!(from));
                p.insert("rate_to".into(), json!(to));
                p.insert("max_connections".into(), max_connections.into());
                p.insert("late_after_ms".into(), json!(late_after.as_secs_f64() * 1e3));
            }
        }
        if let Some(n) = self.count {
            p.insert("requests".into(), n.into());
        }
        p.insert("threads".into(), self.threads.into());
        p.insert("timeout_ms".into(), json!(self.timeout.as_secs_f64() * 1e3));
        p.insert("method".into(), self.requests.method.clone().into());
        p.insert("keep_alive".into(), self.requests.keep_alive.into());
        p.insert("http_version".into(), self.requests.version.label().into());
        p
    }
}

/// Why a run could not take place.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start worker thread {index}: {error}")]
    Worker { index: usize, error: std::io::Error },
    #[error("worker thread {index} panicked")]
    WorkerPanicked { index: usize },
}

/// What a worker thread shares with its connection tasks.
pub struct Worker {
    pub index: usize,
    pub plan: Arc<RequestPlan>,
    pub clock: RunClock,
    pub timeout: Duration,
    recorder: Rc<RefCell<Recorder>>,
    service_series: SeriesId,
    next: Cell<usize>,
    /// Count mode: the measured requests all workers may still send.
    budget: Option<Arc<AtomicU64>>,
}

impl Worker {
    /// The next request of the URL list (round-robin; workers start at different offsets).
    pub fn next_request(&self) -> &PreparedRequest {
        &self.plan.requests[self.next_request_index()]
    }

    pub fn next_request_index(&self) -> usize {
        let i = self.next.get();
        self.next.set((i + 1) % self.plan.requests.len());
        i
    }

    /// Whether a request starting at `started` may go: always in a timed run and in the warm-up;
    /// in count mode, while the shared budget lasts (then it takes one).
    pub fn may_send(&self, started: Instant) -> bool {
        match &self.budget {
            Some(budget) if self.clock.is_measured(started) => budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            _ => true,
        }
    }

    pub fn count(&self, counter: CounterId, started: Instant, at: Instant) {
        self.recorder.borrow_mut().count(counter, 1, started, at);
    }

    /// Counts a send [`Lateness`](crate::schedule::Lateness) judged ([`Recorder::count_lateness`]).
    pub fn count_lateness(&self, sent: Sent, intended: Instant, at: Instant) {
        self.recorder
            .borrow_mut()
            .count_lateness(sent, [LATE, LATE_POOL_FULL], intended, at);
    }

    /// Records the TLS handshake of a new connection ([`Recorder::record_tls_handshake`]).
    pub fn record_tls_handshake(&self, started: Instant, took: Duration) {
        self.recorder.borrow_mut().record_tls_handshake(started, took);
    }

    /// Records one exchange. `intended` is the scheduled send time (open mode), `started` the
    /// actual one. Responses of any status have their latency recorded; 4xx/5xx also count as
    /// errors. Transport errors and timeouts are errors only.
    pub fn record_exchange(
        &self,
        intended: Option<Instant>,
        started: Instant,
        done: Instant,
        result: Result<u16, ErrorKind>,
    ) {
        let mut rec = self.recorder.borrow_mut();
        let origin = intended.unwrap_or(started);
        rec.count(SENT, 1, origin, done);
        match result {
            Ok(status) => {
                if let Some(intended) = intended {
                    rec.record(SeriesId(0), done - intended, intended, done);
                }
                rec.record(self.service_series, done - started, origin, done);
                if let Some(kind) = ErrorKind::from_status(status) {
                    rec.record_error(kind, origin, done);
                }
            }
            Err(kind) => rec.record_error(kind, origin, done),
        }
    }
}

/// Runs the load and returns its report. Blocks the calling thread (the collector) until the
/// run is over: warm-up + duration + at most one `timeout` for requests in flight.
pub fn run(plan: &LoadPlan, mut progress: Progress) -> Result<Report, RunError> {
    let layout = plan.layout();
    // A counted run has no planned end: its clock's end is only a bound that it never reaches.
    let clock = RunClock::starting_now(plan.warmup, plan.count.map_or(plan.duration, |_| COUNTED_RUN_BOUND));
    let shared = Arc::new(plan.clone());
    let budget = plan.count.map(|n| Arc::new(AtomicU64::new(n)));
    if let Some(n) = plan.count {
        progress.counting(n);
    }
    let Finished {
        totals,
        rows,
        generator,
        outputs,
    } = run_workers(layout, clock, plan.threads, &mut progress, move |ctx| {
        drive(ctx, shared.clone(), budget.clone())
    })?;
    let model = match plan.model {
        LoadModel::Closed { .. } => LoadModelKind::Closed,
        LoadModel::Open { .. } => LoadModelKind::Open,
    };
    let mut report = Report::new("http", model, layout, &clock, totals, rows, generator);
    if plan.count.is_some() {
        // The measured window of a counted run: until its last response.
        let ended = outputs.into_iter().max().unwrap_or(clock.measure_from);
        report.duration = ended.saturating_duration_since(clock.measure_from);
    }
    report.parameters = plan.parameters();
    report.targets = plan.requests.requests.iter().map(|r| r.url.clone()).collect();
    report.targets.dedup();
    report
        .environment_extra
        .insert("keep_alive".into(), plan.requests.keep_alive.into());
    report
        .environment_extra
        .insert("http_version".into(), plan.requests.version.label().into());
    report
        .environment_extra
        .insert("tls".into(), plan.requests.tls.is_some().into());
    if let LoadModel::Open { .. } = plan.model {
        let missed = report.totals.counters[MISSED.0];
        if missed > 0 {
            report.warnings.push(format!(
                "{missed} scheduled requests were never sent: the connection limit (--max-connections) or the \
                 generator could not keep up, so the requested rate was not offered"
            ));
        }
    }
    Ok(report)
}

/// The clock's end in count mode, which no counted run is meant to reach (a day, as for the
/// admin API's counted phases).
const COUNTED_RUN_BOUND: Duration = Duration::from_secs(24 * 3600);

/// One worker's part of the run: its share of the connections, closed or open model. Returns
/// when its last request finished.
async fn drive(ctx: WorkerCtx, plan: Arc<LoadPlan>, budget: Option<Arc<AtomicU64>>) -> Instant {
    let worker = Rc::new(Worker {
        index: ctx.index,
        plan: plan.requests.clone(),
        clock: ctx.clock,
        timeout: plan.timeout,
        recorder: ctx.recorder(),
        service_series: match plan.model {
            LoadModel::Closed { .. } => SeriesId(0),
            LoadModel::Open { .. } => SeriesId(1),
        },
        next: Cell::new(ctx.index % plan.requests.requests.len()),
        budget,
    });
    match plan.model {
        LoadModel::Closed { connections } => {
            let first = plan.pin_urls.then(|| ctx.first_of(connections));
            closed_loop::run(worker, ctx.share_of(connections), first).await
        }
        LoadModel::Open {
            rate,
            max_connections,
            late_after,
        } => {
            let schedule = match plan.count {
                Some(n) => Schedule::counted(rate, plan.warmup, n),
                None => Schedule::new(rate, plan.warmup, plan.duration),
            };
            let share = ctx.share_of(max_connections).max(1);
            open_loop::run(worker, schedule, ctx.threads, share, late_after).await;
        }
    }
    Instant::now()
}
