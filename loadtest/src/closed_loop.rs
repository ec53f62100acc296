//! Closed-loop load: each connection sends its next request as soon as the previous response
//! has been read, until the end of the run. This finds capacity; its latencies are queueing at
//! saturation and hide server stalls (coordinated omission), which every report says.
//!
//! "As soon as" means after the responses that arrived together have all been read: a
//! connection yields once before each request, so the worker reads every ready response first
//! and then sends the next requests back to back, as wrk does (it writes in the next turn of its
//! event loop). Sent one by one, each request would find a one-core server idle and wake it;
//! sent together, the server takes them in one batch. In paired runs against nginx on one core
//! this gave 1–8% more requests/s when the server was the bottleneck, for 1–2% more client CPU
//! per request. Service time is measured from the actual send.

use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::error_kind::ErrorKind;
use crate::http_conn::{Connection, exchange};
use crate::http_load::Worker;

/// After a failed connect a connection waits this long before trying again, so a refused port
/// is counted without spinning a core.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Runs `connections` connection loops on this worker's runtime until the end of the run. With
/// `pinned_from`, the place of this worker's first connection among all of the run's, connection
/// *i* of the run sends only URL *i* mod N; otherwise each takes the next of the round-robin.
pub async fn run(worker: Rc<Worker>, connections: usize, pinned_from: Option<usize>) {
    let urls = worker.plan.requests.len();
    let loops: Vec<_> = (0..connections)
        .map(|k| {
            let pinned = pinned_from.map(|first| (first + k) % urls);
            tokio::task::spawn_local(connection_loop(worker.clone(), pinned))
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

async fn connection_loop(worker: Rc<Worker>, pinned: Option<usize>) {
    let plan = &worker.plan;
    let end = worker.clock.end;
    let mut slots: Vec<Option<Connection>> = plan.origins.iter().map(|_| None).collect();
    // One timer for the connection's whole life, re-armed only when it fires early (see below),
    // instead of a timer registered and cancelled for every request. Once polled, it holds this
    // task's waker (the same for the whole loop), so it is polled again only after it was re-armed
    // or has fired: polling it for every request showed in the profile.
    let timer = tokio::time::sleep(worker.timeout);
    tokio::pin!(timer);
    let mut timer_registered = false;
    let on_tls_handshake = |at, took| worker.record_tls_handshake(at, took);
    loop {
        // Let the other connections read their responses first (see the module documentation).
        tokio::task::yield_now().await;
        let started = Instant::now();
        if started >= end || !worker.may_send(started) {
            break;
        }
        let req = match pinned {
            Some(i) => &plan.requests[i],
            None => worker.next_request(),
        };
        let slot = &mut slots[req.origin];
        let deadline = started + worker.timeout;
        let result = {
            let work = exchange(slot, plan, req, &on_tls_handshake);
            tokio::pin!(work);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = work.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                while !timer_registered || timer.is_elapsed() {
                    match timer.as_mut().poll(cx) {
                        Poll::Pending => timer_registered = true,
                        // The timer is never later than this request's deadline (it was armed for
                        // an earlier request's), so when it fires the request may still have time
                        // left: then re-arm it for this request's deadline and keep waiting.
                        Poll::Ready(()) => {
                            if Instant::now() >= deadline {
                                return Poll::Ready(Err(ErrorKind::Timeout));
                            }
                            timer.as_mut().reset(deadline.into());
                            timer_registered = false;
                        }
                    }
                }
                Poll::Pending
            })
            .await
        };
        if result == Err(ErrorKind::Timeout) {
            *slot = None;
        }
        let done = Instant::now();
        let connect_failed = matches!(result, Err(ErrorKind::ConnectRefused | ErrorKind::ConnectFailed));
        worker.record_exchange(None, started, done, result);
        if connect_failed {
            tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        }
    }
}
