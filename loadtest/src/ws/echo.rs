//! Messages over open WebSockets against an echo server: `echo` (small messages at a fixed rate
//! per socket, the open model) and `large` (big messages, by default one at a time per socket,
//! the closed model, for throughput).
//!
//! Every message carries its sequence number in its first 8 bytes (little endian), the rest is
//! zeros; the echo must come back whole and in order, otherwise it counts as a `protocol` error.
//!
//! Open model: socket *i* of *N* sends message *k* at `start + (i/N + k) / rate`, staggered so
//! that the sockets together send evenly. The socket is split: a writer task follows the
//! schedule (blocked writes make later messages late, not fewer), a reader matches echoes to the
//! queue of messages in flight. Latency is measured from the intended send time (`corrected`)
//! and from the actual one (`service_time`), as for HTTP. At the end the reader waits up to
//! `timeout` for outstanding echoes; those that never come count as `timeout` errors.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::error_kind::ErrorKind;
use crate::recorder::{CounterId, Layout, Series, SeriesId};
use crate::workers::WorkerCtx;
use crate::ws::connect::{WsStream, WsTarget, classify};
use crate::ws::connect_close::{RETRY_PAUSE, close_politely, connect};

pub const CORRECTED: Series = Series {
    name: "corrected",
    description: "from the intended send time of a message to the end of its echo (corrected for coordinated omission)",
};
pub const SERVICE_TIME: Series = Series {
    name: "service_time",
    description: "from the actual send time of a message to the end of its echo (uncorrected)",
};
pub const ROUND_TRIP: Series = Series {
    name: "round_trip",
    description: "from sending a message to the end of its echo, one message at a time per socket",
};

/// Open model: `corrected`, `service_time`. (Handshakes happen in the warm-up; the handshake
/// scenario measures them.)
pub const OPEN: Layout = Layout {
    series: &[CORRECTED, SERVICE_TIME],
    counters: &["sent", "received", "late", "missed"],
};
/// Closed model: `round_trip`.
pub const CLOSED: Layout = Layout {
    series: &[ROUND_TRIP],
    counters: &["sent", "received"],
};
pub const SENT: CounterId = CounterId(0);
pub const RECEIVED: CounterId = CounterId(1);
const LATE: CounterId = CounterId(2);
const MISSED: CounterId = CounterId(3);

/// How long after the end of the run an overdue message may still be sent.
const END_SLACK: Duration = Duration::from_millis(5);

/// Smallest message: the 8-byte sequence number.
pub const MIN_MESSAGE: usize = 8;

/// What the sockets do.
#[derive(Debug)]
pub struct EchoPlan {
    pub target: WsTarget,
    pub sockets: usize,
    /// Messages per second per socket (open model), or `None`: one message at a time (closed).
    pub rate_per_socket: Option<f64>,
    pub message_size: usize,
    pub timeout: Duration,
    pub late_after: Duration,
}

/// Message `seq` of `size` bytes.
pub fn payload(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::zeroed(size.max(MIN_MESSAGE));
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b.freeze()
}

/// Whether `echo` is message `seq` of `size` bytes.
pub fn is_echo_of(echo: &[u8], seq: u64, size: usize) -> bool {
    echo.len() == size.max(MIN_MESSAGE) && echo[..8] == seq.to_le_bytes()
}

/// A worker's part: its share of the sockets, each until the end of the run.
pub async fn worker(ctx: WorkerCtx, plan: Arc<EchoPlan>) {
    let tasks: Vec<_> = (0..ctx.share_of(plan.sockets))
        .map(|j| {
            let socket = ctx.index + j * ctx.threads;
            let (ctx, plan) = (ctx.clone(), plan.clone());
            tokio::task::spawn_local(async move {
                match plan.rate_per_socket {
                    Some(rate) => open_socket(ctx, plan, socket, rate).await,
                    None => closed_socket(ctx, plan).await,
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn closed_socket(ctx: WorkerCtx, plan: Arc<EchoPlan>) {
    let mut seq = 0u64;
    while Instant::now() < ctx.clock.end {
        let started = Instant::now();
        let mut ws = match connect(&ctx, &plan.target, plan.timeout).await {
            Ok(ws) => ws,
            Err(kind) => {
                ctx.error(kind, started, Instant::now());
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        loop {
            let sent_at = Instant::now();
            if sent_at >= ctx.clock.end {
                let _ = close_politely(ws, plan.timeout).await;
                return;
            }
            ctx.count(SENT, 1, sent_at, sent_at);
            let result = tokio::time::timeout(plan.timeout, round_trip(&mut ws, seq, plan.message_size))
                .await
                .unwrap_or(Err(ErrorKind::Timeout));
            let done = Instant::now();
            seq += 1;
            match result {
                Ok(()) => {
                    ctx.record(SeriesId(0), sent_at, done);
                    ctx.count(RECEIVED, 1, sent_at, done);
                }
                Err(kind) => {
                    ctx.error(kind, sent_at, done);
                    break;
                }
            }
        }
    }
}

async fn round_trip(ws: &mut WsStream, seq: u64, size: usize) -> Result<(), ErrorKind> {
    ws.send(Message::Binary(payload(seq, size)))
        .await
        .map_err(|e| classify(&e))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if is_echo_of(&b, seq, size) => return Ok(()),
            Some(Ok(Message::Binary(_) | Message::Text(_))) => return Err(ErrorKind::Protocol),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(classify(&e)),
            None => return Err(ErrorKind::Closed),
        }
    }
}

/// A message sent and not yet echoed: sequence number, intended and actual send time.
type InFlight = Rc<RefCell<VecDeque<(u64, Instant, Instant)>>>;

async fn open_socket(ctx: WorkerCtx, plan: Arc<EchoPlan>, socket: usize, rate: f64) {
    let clock = ctx.clock;
    let slot = |k: u64| -> Option<Instant> {
        let offset = (socket as f64 / plan.sockets as f64 + k as f64) / rate;
        let at = clock.start + Duration::from_secs_f64(offset);
        (at < clock.end).then_some(at)
    };
    let missed_from = |k: u64| {
        let now = Instant::now();
        let mut k = k;
        while let Some(at) = slot(k) {
            ctx.count(MISSED, 1, at, now);
            k += 1;
        }
    };
    let started = Instant::now();
    let ws = match connect(&ctx, &plan.target, plan.timeout).await {
        Ok(ws) => ws,
        Err(kind) => {
            ctx.error(kind, started, Instant::now());
            return missed_from(0);
        }
    };
    let (mut sink, stream) = ws.split();
    let in_flight: InFlight = Rc::default();
    let writer_done = Rc::new(Cell::new(false));
    let wake_reader = Rc::new(Notify::new());
    let reader = tokio::task::spawn_local(read_echoes(
        ctx.clone(),
        stream,
        in_flight.clone(),
        writer_done.clone(),
        wake_reader.clone(),
        plan.message_size,
    ));
    let mut k = 0u64;
    while let Some(intended) = slot(k) {
        if reader.is_finished() {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let sent_at = Instant::now();
        // A slot intended before the end still goes when the timer fires a little after it; one
        // that could not go for longer (a blocked socket) is missed.
        if sent_at >= clock.end + END_SLACK {
            break;
        }
        if sent_at.saturating_duration_since(intended) > plan.late_after {
            ctx.count(LATE, 1, intended, sent_at);
        }
        ctx.count(SENT, 1, intended, sent_at);
        in_flight.borrow_mut().push_back((k, intended, sent_at));
        k += 1;
        if let Err(e) = sink.send(Message::Binary(payload(k - 1, plan.message_size))).await {
            in_flight.borrow_mut().pop_back();
            ctx.error(classify(&e), intended, Instant::now());
            break;
        }
    }
    missed_from(k);
    writer_done.set(true);
    wake_reader.notify_one();
    let grace = clock.end.max(Instant::now()) + plan.timeout;
    let stream = match tokio::time::timeout_at(grace.into(), reader).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => None,
        Err(_) => None,
    };
    // Whatever is still in flight never came back.
    let now = Instant::now();
    for (_, intended, _) in in_flight.borrow_mut().drain(..) {
        ctx.error(ErrorKind::Timeout, intended, now);
    }
    if let Some(ws) = stream.and_then(|s| sink.reunite(s).ok()) {
        let _ = close_politely(ws, plan.timeout).await;
    }
}

/// Matches echoes to `in_flight` until the writer is done and nothing is outstanding. Returns
/// the stream half for a closing handshake, or `None` after a failure (recorded).
async fn read_echoes(
    ctx: WorkerCtx,
    mut stream: SplitStream<WsStream>,
    in_flight: InFlight,
    writer_done: Rc<Cell<bool>>,
    wake: Rc<Notify>,
    size: usize,
) -> Option<SplitStream<WsStream>> {
    loop {
        if writer_done.get() && in_flight.borrow().is_empty() {
            return Some(stream);
        }
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = wake.notified() => continue,
        };
        let now = Instant::now();
        let failure = match msg {
            Some(Ok(Message::Binary(b))) => {
                let front = in_flight.borrow_mut().pop_front();
                match front {
                    Some((seq, intended, sent_at)) if is_echo_of(&b, seq, size) => {
                        ctx.record(SeriesId(0), intended, now);
                        ctx.record_from(SeriesId(1), sent_at, intended, now);
                        ctx.count(RECEIVED, 1, intended, now);
                        continue;
                    }
                    Some((_, intended, _)) => {
                        ctx.error(ErrorKind::Protocol, intended, now);
                        continue;
                    }
                    None => ErrorKind::Protocol,
                }
            }
            Some(Ok(Message::Text(_))) => ErrorKind::Protocol,
            Some(Ok(_)) => continue,
            Some(Err(e)) => classify(&e),
            None => ErrorKind::Closed,
        };
        // The connection is unusable: every message in flight fails with it.
        let mut queue = in_flight.borrow_mut();
        match queue.pop_front() {
            Some((_, intended, _)) => ctx.error(failure, intended, now),
            None => ctx.error(failure, now, now),
        }
        for (_, intended, _) in queue.drain(..) {
            ctx.error(failure, intended, now);
        }
        return None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_sequence_number() {
        let p = payload(42, 100);
        assert_eq!(p.len(), 100);
        assert!(is_echo_of(&p, 42, 100));
        assert!(!is_echo_of(&p, 43, 100));
        assert!(!is_echo_of(&p[..99], 42, 100));
        assert_eq!(payload(1, 2).len(), MIN_MESSAGE);
    }
}
