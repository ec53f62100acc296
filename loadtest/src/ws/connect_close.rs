//! Connection life cycles without messages: the **handshake storm** (connect, upgrade, close, as
//! fast as N connections can go or at a fixed rate of new connections) and **churn** (new
//! connections at a fixed rate, each held open for `hold`, then closed with a closing handshake
//! whose duration is measured too).
//!
//! The open-model variants follow [`crate::open_loop`]: connection *k* is intended to start at
//! the schedule's slot *k*, its handshake latency is measured from that intended time as well as
//! from the actual start, at most `max_connections` life cycles are in progress at once (slots
//! beyond wait and count as late), and slots never started before the end count as missed.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::error_kind::ErrorKind;
use crate::recorder::{CounterId, Layout, Series, SeriesId};
use crate::schedule::{Lateness, Schedule};
use crate::workers::WorkerCtx;
use crate::ws::connect::{WsStream, WsTarget, classify};

pub const HANDSHAKE: Series = Series {
    name: "handshake",
    description: "TCP connect and WebSocket upgrade, from the actual start to the 101 response",
};
pub const CORRECTED: Series = Series {
    name: "corrected",
    description: "from the intended start of the connection to the 101 response (corrected for coordinated omission)",
};
pub const CLOSE: Series = Series {
    name: "close",
    description: "closing handshake: from sending Close to the end of the connection",
};

/// Storm, closed model.
pub const STORM_CLOSED: Layout = Layout {
    series: &[HANDSHAKE],
    counters: &["sent"],
};
/// Storm, open model.
pub const STORM_OPEN: Layout = Layout {
    series: &[CORRECTED, HANDSHAKE],
    counters: &["sent", "late", "missed", "late_pool_full"],
};
/// Churn (open model only).
pub const CHURN: Layout = Layout {
    series: &[CORRECTED, HANDSHAKE, CLOSE],
    counters: &["sent", "late", "missed", "late_pool_full", "closed"],
};

/// Connection attempts (each got a 101 or an error).
pub const SENT: CounterId = CounterId(0);
const LATE: CounterId = CounterId(1);
const MISSED: CounterId = CounterId(2);
/// Late slots that waited for room at `--max-connections` (see `schedule::Lateness`).
const LATE_POOL_FULL: CounterId = CounterId(3);
const CLOSED: CounterId = CounterId(4);

/// After a failed connect a closed-model connection waits this long before trying again, so a
/// refused port is counted without spinning a core.
pub const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What each life cycle does.
#[derive(Debug)]
pub struct Lifecycle {
    pub target: WsTarget,
    /// Upgrade (connect included) and closing handshake, each.
    pub timeout: Duration,
    /// Churn: how long a connection stays open before it is closed.
    pub hold: Duration,
    /// Churn: record the closing handshake in the `close` series.
    pub measure_close: bool,
}

/// Opens a WebSocket within `timeout`; its TLS handshake, if any, goes to `ctx`'s
/// `tls_handshake` series.
pub async fn connect(ctx: &WorkerCtx, target: &WsTarget, timeout: Duration) -> Result<WsStream, ErrorKind> {
    let (ws, tls) = tokio::time::timeout(timeout, target.connect())
        .await
        .unwrap_or(Err(ErrorKind::Timeout))?;
    if let Some((started, took)) = tls {
        ctx.record_tls_handshake(started, took);
    }
    Ok(ws)
}

/// Sends Close and reads until the server has answered and the connection ended (RFC 6455 §7).
pub async fn close_politely(mut ws: WsStream, timeout: Duration) -> Result<(), ErrorKind> {
    tokio::time::timeout(timeout, async {
        ws.close(None).await.map_err(|e| classify(&e))?;
        while let Some(m) = ws.next().await {
            m.map_err(|e| classify(&e))?;
        }
        Ok(())
    })
    .await
    .unwrap_or(Err(ErrorKind::Timeout))
}

/// Keeps `ws` open until `until`, reading (and discarding) whatever arrives so that pings are
/// answered. Fails when the server closes or breaks the connection first.
pub async fn hold_open(ws: &mut WsStream, until: Instant) -> Result<(), ErrorKind> {
    let deadline = tokio::time::sleep_until(until.into());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            m = ws.next() => match m {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(classify(&e)),
                None => return Err(ErrorKind::Closed),
            },
        }
    }
}

/// Storm, closed model: this worker's share of `connections` each connect, upgrade and close,
/// back to back, until the end of the run.
pub async fn closed(ctx: WorkerCtx, life: Arc<Lifecycle>, connections: usize) {
    let tasks: Vec<_> = (0..ctx.share_of(connections))
        .map(|_| tokio::task::spawn_local(closed_connection(ctx.clone(), life.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn closed_connection(ctx: WorkerCtx, life: Arc<Lifecycle>) {
    while Instant::now() < ctx.clock.end {
        let started = Instant::now();
        let result = connect(&ctx, &life.target, life.timeout).await;
        let done = Instant::now();
        ctx.count(SENT, 1, started, done);
        match result {
            Ok(ws) => {
                ctx.record(SeriesId(0), started, done);
                if let Err(kind) = close_politely(ws, life.timeout).await {
                    ctx.error(kind, started, Instant::now());
                }
            }
            Err(kind) => {
                ctx.error(kind, started, done);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Open model (storm or churn): this worker's slots of `schedule` (`index, index + threads, …`),
/// with at most `max_in_flight` life cycles in progress.
pub async fn open(
    ctx: WorkerCtx,
    life: Arc<Lifecycle>,
    schedule: Schedule,
    max_in_flight: usize,
    late_after: Duration,
) {
    let clock = ctx.clock;
    let in_flight = Rc::new(Cell::new(0usize));
    let released = Rc::new(Notify::new());
    let mut lateness = Lateness::new(late_after);
    let mut k = ctx.index as u64;
    let step = ctx.threads as u64;
    'slots: while let Some(offset) = schedule.intended_offset(k) {
        let intended = clock.start + offset;
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        while in_flight.get() >= max_in_flight.max(1) {
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
        let (ctx2, life2, in_flight2, released2) = (ctx.clone(), life.clone(), in_flight.clone(), released.clone());
        tokio::task::spawn_local(async move {
            open_lifecycle(&ctx2, &life2, intended).await;
            in_flight2.set(in_flight2.get() - 1);
            released2.notify_one();
        });
        k += step;
    }
    let now = Instant::now();
    while let Some(offset) = schedule.intended_offset(k) {
        ctx.count(MISSED, 1, clock.start + offset, now);
        k += step;
    }
    while in_flight.get() > 0 {
        released.notified().await;
    }
}

async fn open_lifecycle(ctx: &WorkerCtx, life: &Lifecycle, intended: Instant) {
    let started = Instant::now();
    let result = connect(ctx, &life.target, life.timeout).await;
    let done = Instant::now();
    ctx.count(SENT, 1, intended, done);
    let mut ws = match result {
        Ok(ws) => ws,
        Err(kind) => return ctx.error(kind, intended, done),
    };
    ctx.record(SeriesId(0), intended, done);
    ctx.record_from(SeriesId(1), started, intended, done);
    if !life.hold.is_zero()
        && let Err(kind) = hold_open(&mut ws, Instant::now() + life.hold).await
    {
        return ctx.error(kind, intended, Instant::now());
    }
    let closing = Instant::now();
    match close_politely(ws, life.timeout).await {
        Ok(()) if life.measure_close => {
            let closed = Instant::now();
            ctx.record_from(SeriesId(2), closing, intended, closed);
            ctx.count(CLOSED, 1, intended, closed);
        }
        Ok(()) => {}
        Err(kind) => ctx.error(kind, intended, Instant::now()),
    }
}
