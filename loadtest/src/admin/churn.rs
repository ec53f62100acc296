//! Route churn: adds and deletes at a fixed rate (the open model), to run beside an HTTP or
//! WebSocket load and show what route-table changes do to its tail latency.
//!
//! Slot *k* of the schedule adds route `window + k/2` when *k* is even and deletes route
//! `(k−1)/2` when odd, so the churned routes stay about `window` in number (set up before the
//! run). Latency is measured from the intended time (`corrected`, both operations) and from the
//! actual send time (`add`, `delete`). At most `max_connections` calls are in flight; slots
//! beyond wait and count as late; slots never sent count as missed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::admin::client::{ApiConn, ApiTarget, expect_status};
use crate::error_kind::ErrorKind;
use crate::recorder::{CounterId, Layout, Series, SeriesId};
use crate::schedule::{Lateness, Schedule};
use crate::workers::WorkerCtx;

pub const LAYOUT: Layout = Layout {
    series: &[
        Series {
            name: "corrected",
            description: "add or delete, from the intended send time to the end of the response (corrected for coordinated omission)",
        },
        Series {
            name: "add",
            description: "POST /api/routes/…, from the actual send time to the end of the response",
        },
        Series {
            name: "delete",
            description: "DELETE /api/routes/…, from the actual send time to the end of the response",
        },
    ],
    counters: &["sent", "late", "missed", "late_pool_full"],
};
const SENT: CounterId = CounterId(0);
const LATE: CounterId = CounterId(1);
const MISSED: CounterId = CounterId(2);
/// Late slots that waited for room at `--max-connections` (see `schedule::Lateness`).
const LATE_POOL_FULL: CounterId = CounterId(3);

/// A validated churn run.
#[derive(Debug)]
pub struct ChurnPlan {
    pub api: ApiTarget,
    pub schedule: Schedule,
    pub warmup: Duration,
    pub duration: Duration,
    /// Churned routes alive at any time (added before the run).
    pub window: usize,
    pub max_connections: usize,
    pub late_after: Duration,
    pub timeout: Duration,
    pub key_prefix: String,
}

impl ChurnPlan {
    pub fn key(&self, j: u64) -> String {
        format!("{}/churn/{j}", self.key_prefix)
    }
}

/// Runs the schedule; returns the number of slots sent, from which the routes that may remain
/// follow ([`remaining_keys`]).
pub async fn worker(ctx: WorkerCtx, plan: Arc<ChurnPlan>) -> u64 {
    let clock = ctx.clock;
    let idle: Rc<RefCell<Vec<ApiConn>>> = Rc::default();
    let in_flight = Rc::new(Cell::new(0usize));
    let released = Rc::new(Notify::new());
    let mut lateness = Lateness::new(plan.late_after);
    let mut k = 0u64;
    'slots: while let Some(offset) = plan.schedule.intended_offset(k) {
        let intended = clock.start + offset;
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        while in_flight.get() >= plan.max_connections.max(1) {
            lateness.waited_for_room();
            tokio::select! {
                _ = released.notified() => {}
                _ = tokio::time::sleep_until(clock.end.into()) => break 'slots,
            }
        }
        let started = Instant::now();
        if started >= clock.end {
            break;
        }
        ctx.count_lateness(
            lateness.of(intended, started),
            [LATE, LATE_POOL_FULL],
            intended,
            started,
        );
        in_flight.set(in_flight.get() + 1);
        let (ctx2, plan2, idle2, in_flight2, released2) = (
            ctx.clone(),
            plan.clone(),
            idle.clone(),
            in_flight.clone(),
            released.clone(),
        );
        tokio::task::spawn_local(async move {
            let mut conn = idle2.borrow_mut().pop();
            slot(&ctx2, &plan2, k, intended, &mut conn).await;
            if let Some(c) = conn {
                idle2.borrow_mut().push(c);
            }
            in_flight2.set(in_flight2.get() - 1);
            released2.notify_one();
        });
        k += 1;
    }
    let sent = k;
    let now = Instant::now();
    while let Some(offset) = plan.schedule.intended_offset(k) {
        ctx.count(MISSED, 1, clock.start + offset, now);
        k += 1;
    }
    while in_flight.get() > 0 {
        released.notified().await;
    }
    sent
}

async fn slot(ctx: &WorkerCtx, plan: &ChurnPlan, k: u64, intended: Instant, conn: &mut Option<ApiConn>) {
    let add = k.is_multiple_of(2);
    let (key, series, expected) = if add {
        (plan.key(plan.window as u64 + k / 2), SeriesId(1), 201)
    } else {
        (plan.key(k / 2), SeriesId(2), 204)
    };
    let started = Instant::now();
    let call = async {
        if add {
            plan.api.add(conn, &key).await
        } else {
            plan.api.delete(conn, &key).await
        }
    };
    let result = tokio::time::timeout(plan.timeout, call).await;
    let done = Instant::now();
    ctx.count(SENT, 1, intended, done);
    let failure = match result {
        Ok(Ok(response)) => {
            ctx.record(SeriesId(0), intended, done);
            ctx.record_from(series, started, intended, done);
            expect_status(response.status, expected).err()
        }
        Ok(Err(kind)) => Some(kind),
        Err(_) => {
            *conn = None;
            Some(ErrorKind::Timeout)
        }
    };
    if let Some(kind) = failure {
        ctx.error(kind, intended, done);
    }
}

/// The churned routes that may still exist after `sent` slots: those added and not yet deleted.
pub fn remaining_keys(plan: &ChurnPlan, sent: u64) -> Vec<String> {
    let deleted = sent / 2;
    let added = plan.window as u64 + sent.div_ceil(2);
    (deleted..added).map(|j| plan.key(j)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ArrivalRate;

    #[test]
    fn the_routes_left_are_those_added_and_not_deleted() {
        let plan = ChurnPlan {
            api: ApiTarget::new("http://127.0.0.1:1", None, "http://x", &Default::default()).unwrap(),
            schedule: Schedule::new(ArrivalRate::Constant(1.0), Duration::ZERO, Duration::from_secs(1)),
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            window: 3,
            max_connections: 1,
            late_after: Duration::from_millis(2),
            timeout: Duration::from_secs(1),
            key_prefix: "/p".into(),
        };
        // Nothing sent: the window.
        assert_eq!(remaining_keys(&plan, 0), vec!["/p/churn/0", "/p/churn/1", "/p/churn/2"]);
        // Slots 0..5: adds 3, 4, 5 and deletes 0, 1.
        assert_eq!(
            remaining_keys(&plan, 5),
            vec!["/p/churn/2", "/p/churn/3", "/p/churn/4", "/p/churn/5"]
        );
    }
}
