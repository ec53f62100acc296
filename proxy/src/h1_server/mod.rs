//! The public listener's HTTP/1.x server.
//!
//! One loop per connection, with no task, channel or header map between the socket and the
//! service: read a head, call the service with the request, write its response, and go round
//! again while both sides keep the connection alive. Like hyper's `serve_connection`, it knows
//! nothing of what the service does (the proxy's is `pipeline::handle`, given by `server`).
//! hyper still serves HTTP/2 (ALPN `h2`, or the h2c preface, which this loop spots and hands
//! back) and the other listeners.
//!
//! - Heads are parsed straight off the read buffer (`request`); pipelined requests are served
//!   in order from what is already buffered.
//! - A request body owns the connection while it is forwarded and sends it back when dropped
//!   (`request_body`); a body not read to its end closes the connection after the response.
//! - The keep-alive timeout bounds both the wait for a next request and a slow head, as it did
//!   with hyper (`--keep-alive-timeout`); one timer per connection, reset only when waiting.
//! - On shutdown, idle connections close at once and busy ones after their current response.
//! - A `101` hands the socket, and whatever the client sent behind its head, to whoever holds
//!   the request's [`PendingUpgrade`](crate::upgrade::PendingUpgrade) (the WebSocket tunnel).

mod date;
mod request;
mod request_body;
mod response;

use std::fmt::Display;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode, Version};
use http_body_util::Empty;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

pub use request_body::H1Body;
pub use response::Outgoing;

use crate::client_head::ClientHead;
use crate::client_io::ClientIo;
use crate::http1::{Framing, READ_RESERVE, Rewind};
use crate::recycle::Recycled;
use crate::upgrade;
use request::{HeadError, RequestHead, parse_request_head};
use response::{ResponseContext, write_response};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client connection: its stream and what has been read from it but not yet used.
pub struct Conn {
    io: ClientIo,
    buf: BytesMut,
}

impl Conn {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        crate::http1::poll_fill(&mut self.io, &mut self.buf, cx)
    }
}

/// How a connection ended, when it is not simply closed.
pub enum Handover {
    /// The client opened with the HTTP/2 preface: serve it with HTTP/2 (the preface included).
    H2c(Rewind<ClientIo>),
}

/// Serves HTTP/1.x requests on `io` with `service` until either side ends the connection, or
/// the connection has been idle for `keep_alive`, or `stop` turns true.
///
/// The service answers each request; an `Err` ends the connection without a response (it is
/// logged at debug level). A request comes as its head, boxed, with its header lines as
/// received and an empty `HeaderMap` (see `ClientHead`), and its body.
pub async fn serve<S, F, B, E>(
    io: ClientIo,
    service: S,
    keep_alive: Duration,
    stop: watch::Receiver<bool>,
) -> Option<Handover>
where
    S: Fn(Recycled<ClientHead>, H1Body) -> F,
    F: Future<Output = Result<Response<B>, E>>,
    B: Outgoing,
    B::Error: Display,
    E: Display,
{
    let mut stop_wait = stop.clone();
    let stopping = pin!(async move {
        let _ = stop_wait.wait_for(|s| *s).await;
    });
    let mut reader = HeadReader {
        idle: IdleTimer::new(keep_alive),
        stopping,
        first: true,
    };
    let mut out = Vec::with_capacity(512);
    let mut slot = Some(Conn {
        io,
        buf: BytesMut::with_capacity(READ_RESERVE),
    });
    while let Some(mut conn) = slot.take() {
        let head = match reader.read(&mut conn).await {
            Ok(Read::Head(head)) => head,
            Ok(Read::H2c) => return Some(Handover::H2c(Rewind::new(conn.io, conn.buf.freeze()))),
            Ok(Read::Closed) => return None,
            Err(e) => {
                tracing::debug!("{e}");
                refuse(conn, e.status(), &mut out).await;
                return None;
            }
        };
        slot = exchange(conn, head, &service, &stop, &mut out).await;
    }
    None
}

/// One request and its response; the connection back when it may carry another.
async fn exchange<S, F, B, E>(
    conn: Conn,
    head: RequestHead,
    service: &S,
    stop: &watch::Receiver<bool>,
    out: &mut Vec<u8>,
) -> Option<Conn>
where
    S: Fn(Recycled<ClientHead>, H1Body) -> F,
    F: Future<Output = Result<Response<B>, E>>,
    B: Outgoing,
    B::Error: Display,
    E: Display,
{
    // An `Expect: 100-continue` is answered here when the body is first read, and its line is
    // not among the request's lines: the upstream gets the body at once.
    let RequestHead {
        mut head,
        framing,
        keep_alive,
        expect_continue,
    } = head;
    let version = head.parts.version;
    let head_request = head.parts.method == Method::HEAD;
    let upgrade = head.lines.as_ref().is_some_and(|l| l.upgrade);
    let upgrade = (version == Version::HTTP_11 && upgrade).then(|| {
        let (handover, pending) = upgrade::pending();
        head.parts.extensions.insert(pending);
        handover
    });
    let (body, returned, kept) = if framing == Framing::Empty {
        (H1Body::empty(), None, Some(conn))
    } else {
        let (body, returned) = H1Body::new(conn, framing, expect_continue);
        (body, Some(returned), None)
    };

    let result = service(head, body).await;

    // The body is gone by now (forwarded or dropped), and with it went the connection home.
    let (mut conn, body_complete) = match (kept, returned) {
        (Some(conn), _) => (conn, true),
        (None, Some(mut returned)) => match returned.try_recv() {
            Ok(r) => (r.conn, r.complete),
            Err(_) => return None,
        },
        (None, None) => return None,
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!("{e}");
            return None;
        }
    };
    let (parts, body) = resp.into_parts();
    let cx = ResponseContext {
        version,
        head_request,
        keep_alive: keep_alive && body_complete && !*stop.borrow(),
    };
    let keep = match write_response(&mut conn.io, out, &parts, body, &cx).await {
        Ok(keep) => keep,
        Err(e) => {
            tracing::debug!("writing the response failed: {e}");
            return None;
        }
    };
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(handover) = upgrade {
            // Copied, not frozen: the tunnel must not keep the whole read buffer alive.
            let leftover = Bytes::copy_from_slice(&conn.buf);
            handover.complete(Rewind::new(conn.io, leftover));
        }
        return None;
    }
    if !keep {
        let _ = conn.io.shutdown().await;
        return None;
    }
    Some(conn)
}

/// Answers a head that cannot be served, empty and with `connection: close`, then closes.
async fn refuse(mut conn: Conn, status: StatusCode, out: &mut Vec<u8>) {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    let cx = ResponseContext {
        version: Version::HTTP_11,
        head_request: false,
        keep_alive: false,
    };
    if write_response(&mut conn.io, out, &parts, Empty::<Bytes>::new(), &cx)
        .await
        .is_ok()
    {
        let _ = conn.io.shutdown().await;
    }
}

enum Read {
    Head(RequestHead),
    H2c,
    Closed,
}

struct HeadReader<S> {
    idle: IdleTimer,
    stopping: Pin<S>,
    /// Nothing has been read yet: the h2c preface may come.
    first: bool,
}

impl<S: std::ops::DerefMut<Target: Future<Output = ()>>> HeadReader<S> {
    /// The next request head; `Closed` when the client leaves, goes quiet for the keep-alive
    /// timeout, or the server is stopping.
    async fn read(&mut self, conn: &mut Conn) -> Result<Read, HeadError> {
        let mut waiting = false;
        loop {
            if !conn.buf.is_empty() {
                if self.first {
                    let n = conn.buf.len().min(H2_PREFACE.len());
                    if conn.buf[..n] == H2_PREFACE[..n] {
                        if n == H2_PREFACE.len() {
                            return Ok(Read::H2c);
                        }
                    } else {
                        self.first = false;
                    }
                }
                if !self.first
                    && let Some(head) = parse_request_head(&mut conn.buf)?
                {
                    return Ok(Read::Head(head));
                }
            }
            let filled = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = conn.poll_fill(cx) {
                    return Poll::Ready(Some(r));
                }
                if !waiting {
                    self.idle.arm();
                    waiting = true;
                }
                if self.idle.poll_expired(cx) || self.stopping.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match filled {
                Some(Ok(n)) if n > 0 => {}
                // The client left (mid-head or between requests), timed out, or we stop.
                _ => return Ok(Read::Closed),
            }
        }
    }
}

/// The keep-alive / header-read limit. One sleep per connection, made on first use; arming it
/// again later is an atomic store in tokio's timer when the deadline moves forward.
struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    fn new(limit: Duration) -> Self {
        IdleTimer { limit, sleep: None }
    }

    fn arm(&mut self) {
        let deadline = Instant::now() + self.limit;
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.sleep.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }
}
