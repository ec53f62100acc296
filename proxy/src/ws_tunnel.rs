//! WebSocket upgrades (docs/websockets.md): the handshake is forwarded like a request; on `101`
//! the two connections are joined by a byte-level tunnel that never parses frames.
//!
//! Lifecycle of a tunnel:
//! 1. upgrade request routed → fresh upstream connection → request forwarded;
//! 2. upstream answers 101 → the 101 (with the upstream's headers) goes to the client, and a task
//!    waits for both sides to hand over their sockets;
//! 3. bytes are copied both ways; every chunk from the client counts as route activity (traffic
//!    from the server alone does not, as in CHP);
//! 4. end of stream on one side is passed on as a write shutdown to the other; the tunnel ends
//!    when both directions have ended, or at the first error, closing both sockets.
//!
//! An idle tunnel owns no buffer: reads go into a per-thread scratch buffer and are written
//! straight through; only bytes the receiver cannot take yet are copied into an owned buffer,
//! which is freed as soon as it drains. So 10,000 idle notebooks cost their sockets and a small
//! task each, not 16 KiB of copy buffers.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::CONNECTION;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Proxy;
use crate::activity::Activity;
use crate::body::{RequestBody, ResponseBody, UpstreamBody};
use crate::client_head::ClientHead;
use crate::forward::{ForwardError, upstream_parts};
use crate::headers::forwarded::ClientInfo;
use crate::recycle::Recycled;
use crate::route_table::Route;
use crate::target::Target;
use crate::upgrade::PendingUpgrade;
use crate::upstream::{H1Error, UpstreamError};

/// Whether a request asks for a protocol upgrade at all (any `Upgrade` header).
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
}

/// Only `GET` + `Upgrade: websocket` is proxied; CHP drops other upgrades without an answer.
pub fn is_websocket(head: &Parts) -> bool {
    head.method == Method::GET
        && head
            .headers
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

pub async fn forward_upgrade(
    proxy: &Arc<Proxy>,
    mut head: Recycled<ClientHead>,
    client_upgrade: PendingUpgrade,
    route: Arc<Route>,
    target: &Target,
    wire_path: &str,
    client: &ClientInfo,
) -> Result<Response<ResponseBody>, ForwardError> {
    let forwarded = upstream_parts(proxy, &mut head, &route, target, wire_path, client, true)?.forwarded;
    let parts = &head.parts;

    // A tunnel holds its upstream connection for good, so it never comes from the pool.
    let conn = proxy.upstream.connect(target).await?;
    let answered = async {
        conn.send(parts, RequestBody::Empty, &forwarded)
            .await
            .map_err(|e| UpstreamError::Http(target.authority().to_owned(), e))
    };
    // As for a request (`forward::forward_http`): without a limit the answer is awaited as it is.
    let resp = match proxy.settings.proxy_timeout {
        None => answered.await?,
        Some(limit) => tokio::time::timeout(limit, answered)
            .await
            .map_err(|_| UpstreamError::ResponseTimeout(target.authority().to_owned()))??,
    };

    let (mut resp_parts, body) = resp.into_parts();
    if resp_parts.status != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream refused the upgrade: relay its answer, then close (as CHP does).
        resp_parts.headers.insert(CONNECTION, HeaderValue::from_static("close"));
        let body = ResponseBody::upstream(UpstreamBody::without_pool(body));
        return Ok(Response::from_parts(resp_parts, body));
    }
    let Some(upstream_io) = body.into_upgraded() else {
        return Err(UpstreamError::Http(target.authority().to_owned(), H1Error::ClosedBeforeResponse).into());
    };

    let activity = Activity::new(route, &proxy.metrics);
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let Some(client_io) = client_upgrade.connection().await else {
            tracing::debug!("WebSocket upgrade did not complete: the 101 did not reach the client");
            return;
        };
        proxy.metrics.open_tunnels.increment(1.0);
        if let Err(e) = Tunnel::new(client_io, upstream_io, activity).await {
            tracing::debug!("WebSocket tunnel closed: {e}");
        }
        proxy.metrics.open_tunnels.decrement(1.0);
    });
    Ok(Response::from_parts(resp_parts, ResponseBody::empty()))
}

const SCRATCH_SIZE: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// One direction of the tunnel.
#[derive(Default)]
struct Direction {
    /// Bytes read but not yet accepted by the writer; empty (and unallocated) when idle.
    pending: Vec<u8>,
    written: usize,
    needs_flush: bool,
    read_done: bool,
    done: bool,
}

impl Direction {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut src: Pin<&mut R>,
        mut dst: Pin<&mut W>,
        on_data: &dyn Fn(),
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            while self.written < self.pending.len() {
                let n = ready!(dst.as_mut().poll_write(cx, &self.pending[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.written = 0;
            }
            if self.needs_flush {
                ready!(dst.as_mut().poll_flush(cx))?;
                self.needs_flush = false;
            }
            if self.read_done {
                ready!(dst.as_mut().poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            let step = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                ready!(src.as_mut().poll_read(cx, &mut buf))?;
                let n = buf.filled().len();
                if n == 0 {
                    self.read_done = true;
                    return Poll::Ready(Ok(()));
                }
                on_data();
                let mut off = 0;
                while off < n {
                    match dst.as_mut().poll_write(cx, &scratch[off..n]) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Poll::Ready(Ok(w)) => off += w,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            self.pending = scratch[off..n].to_vec();
                            break;
                        }
                    }
                }
                self.needs_flush = true;
                Poll::Ready(Ok(()))
            });
            ready!(step)?;
        }
    }
}

/// The tunnel future: both directions polled from one task.
pub struct Tunnel<C, U> {
    client: C,
    upstream: U,
    to_upstream: Direction,
    to_client: Direction,
    activity: Activity,
}

impl<C, U> Tunnel<C, U> {
    pub fn new(client: C, upstream: U, activity: Activity) -> Self {
        Tunnel {
            client,
            upstream,
            to_upstream: Direction::default(),
            to_client: Direction::default(),
            activity,
        }
    }
}

impl<C, U> Future for Tunnel<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let activity = &this.activity;
        let up = this
            .to_upstream
            .poll_copy(cx, Pin::new(&mut this.client), Pin::new(&mut this.upstream), &|| {
                activity.mark()
            })?;
        let down = this
            .to_client
            .poll_copy(cx, Pin::new(&mut this.upstream), Pin::new(&mut this.client), &|| {})?;
        match (up, down) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }
}
