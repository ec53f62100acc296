//! Closed-loop load: each connection sends its next request as soon as the previous response
//! has been read, until the end of the run. This finds capacity; its latencies are queueing at
//! saturation and hide server stalls (coordinated omission), which every report says.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http_conn::exchange;
use crate::http_load::Worker;

/// After a failed connect a connection waits this long before trying again, so a refused port
/// is counted without spinning a core.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Runs `connections` connection loops on this worker's runtime until the end of the run.
pub async fn run(worker: Rc<Worker>, connections: usize) {
    let loops: Vec<_> = (0..connections)
        .map(|_| tokio::task::spawn_local(connection_loop(worker.clone())))
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

async fn connection_loop(worker: Rc<Worker>) {
    let plan = &worker.plan;
    let end = worker.clock.end;
    let mut slots: Vec<Option<crate::http_conn::Connection>> = plan.origins.iter().map(|_| None).collect();
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let req = worker.next_request();
        let slot = &mut slots[req.origin];
        let result = tokio::time::timeout(
            worker.timeout,
            exchange(slot, &plan.origins[req.origin], plan.version, plan.keep_alive, req),
        )
        .await;
        if result.is_err() {
            *slot = None;
        }
        let done = Instant::now();
        let connect_failed = matches!(
            result,
            Ok(Err(
                crate::error_kind::ErrorKind::ConnectRefused | crate::error_kind::ErrorKind::ConnectFailed
            ))
        );
        worker.record_exchange(None, started, done, result);
        if connect_failed {
            tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        }
    }
}
