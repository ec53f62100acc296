//! Open-loop load: requests leave on a schedule of intended send times ([`Schedule`]), whatever
//! the server is doing, and latency is measured from the intended time. When every connection is
//! busy the worker opens another, up to its share of `--max-connections`; beyond that, slots wait
//! for a free connection and go out late, and their waiting counts in the corrected latency
//! (this is the coordinated-omission correction, as in wrk2). Slots that could not be sent before
//! the end of the run are counted as missed, like k6's `dropped_iterations`; a counted run
//! (`--requests`) has no end to miss, so its slots all leave, however late. Late slots that
//! waited for a connection with the pool full are counted apart (`late_pool_full`): that lateness
//! is the target's, the rest the generator's (see [`crate::bottleneck`]).
//!
//! Worker `w` of `n` takes slots `w, w+n, w+2n, …`, so the workers interleave evenly.
//! Timer resolution is 1 ms (tokio), so a slot may leave up to about 1 ms after its intended time
//! even on an idle machine; that slack is part of the corrected latency, never of service time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error_kind::ErrorKind;
use crate::http_conn::{Connection, exchange};
use crate::http_load::{MISSED, Worker};
use crate::schedule::{Lateness, Schedule};

/// Idle connections per origin and the number open; shared by the dispatcher and its requests.
struct Pool {
    idle: RefCell<Vec<Vec<Connection>>>,
    /// Connections open or being opened, idle ones included; at most `max`.
    open: Cell<usize>,
    in_flight: Cell<usize>,
    max: usize,
    /// Signalled whenever a request finishes (a connection is idle again or its place freed).
    released: Notify,
}

impl Pool {
    /// A connection for `origin`: `Some(Some(idle))`, or `Some(None)` with permission to open a
    /// new one, or `None` when the pool is at its limit. At the limit, an idle connection to
    /// another origin is closed to make room.
    fn acquire(&self, origin: usize) -> Option<Option<Connection>> {
        let mut idle = self.idle.borrow_mut();
        if let Some(c) = idle[origin].pop() {
            return Some(Some(c));
        }
        if self.open.get() < self.max {
            self.open.set(self.open.get() + 1);
            return Some(None);
        }
        let other = idle.iter_mut().find(|v| !v.is_empty())?;
        other.pop();
        Some(None)
    }

    /// Gives back what [`Pool::acquire`] handed out: the connection if it is still usable,
    /// otherwise its place.
    fn give_back(&self, origin: usize, conn: Option<Connection>) {
        match conn {
            Some(c) => self.idle.borrow_mut()[origin].push(c),
            None => self.open.set(self.open.get() - 1),
        }
    }
}

/// Runs worker `index` of `workers`: dispatches its share of `schedule` until the end of the run,
/// using at most `max_connections` connections, then waits for the requests in flight.
pub async fn run(worker: Rc<Worker>, schedule: Schedule, workers: usize, max_connections: usize, late_after: Duration) {
    let origins = worker.plan.origins.len();
    let pool = Rc::new(Pool {
        idle: RefCell::new((0..origins).map(|_| Vec::new()).collect()),
        open: Cell::new(0),
        in_flight: Cell::new(0),
        max: max_connections.max(1),
        released: Notify::new(),
    });
    let clock = worker.clock;
    let mut k = worker.index as u64;
    let step = workers as u64;
    let mut lateness = Lateness::new(late_after);
    'slots: while let Some(offset) = schedule.intended_offset(k) {
        let intended = clock.start + offset;
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let req_index = worker.next_request_index();
        let origin = worker.plan.requests[req_index].origin;
        let conn = loop {
            if let Some(c) = pool.acquire(origin) {
                break c;
            }
            lateness.waited_for_room();
            tokio::select! {
                _ = pool.released.notified() => {}
                _ = tokio::time::sleep_until(clock.end.into()) => break 'slots,
            }
        };
        let sent_at = Instant::now();
        if sent_at >= clock.end {
            // Waiting for a connection ran past the end: this slot was never sent.
            pool.give_back(origin, conn);
            break;
        }
        worker.count_lateness(lateness.of(intended, sent_at), intended, sent_at);
        pool.in_flight.set(pool.in_flight.get() + 1);
        tokio::task::spawn_local(request(worker.clone(), pool.clone(), req_index, intended, conn));
        k += step;
    }
    // Everything still unsent was intended before the end of the run: missed.
    let now = Instant::now();
    while let Some(offset) = schedule.intended_offset(k) {
        worker.count(MISSED, clock.start + offset, now);
        k += step;
    }
    while pool.in_flight.get() > 0 {
        pool.released.notified().await;
    }
}

async fn request(worker: Rc<Worker>, pool: Rc<Pool>, req_index: usize, intended: Instant, conn: Option<Connection>) {
    let plan = &worker.plan;
    let req = &plan.requests[req_index];
    let mut slot = conn;
    let started = Instant::now();
    let result = tokio::time::timeout(
        worker.timeout,
        exchange(&mut slot, plan, req, &|at, took| worker.record_tls_handshake(at, took)),
    )
    .await
    .unwrap_or(Err(ErrorKind::Timeout));
    if result == Err(ErrorKind::Timeout) {
        slot = None;
    }
    let done = Instant::now();
    worker.record_exchange(Some(intended), started, done, result);
    pool.give_back(req.origin, slot);
    pool.in_flight.set(pool.in_flight.get() - 1);
    pool.released.notify_one();
}
