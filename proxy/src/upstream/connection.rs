//! One HTTP/1.1 connection to an upstream, driven by the request that uses it: no task of its
//! own, no channels. A request writes its head (and body), reads the response head, and hands
//! the connection to the response body, which returns it to the pool once the body has been
//! read to its end.

use std::io::{self, Write as _};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http_body::Body;
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;

use super::PoolLimits;
use super::h1::{self, H1Error, HeaderForm, ResponseHead};
use super::io::UpstreamIo;
use crate::headers::lines::HeaderLines;
use crate::http1::{BodyError, READ_RESERVE};
use crate::recycle::Recycled;

pub struct Connection {
    pub(super) io: UpstreamIo,
    /// Bytes read from the upstream and not consumed yet.
    pub(super) buf: BytesMut,
    /// The request head being sent, reused across requests.
    write_buf: Vec<u8>,
    /// The pool this connection goes back to.
    pub(super) key: Arc<str>,
    pub(super) limits: PoolLimits,
}

impl Connection {
    pub(super) fn new(io: UpstreamIo, key: Arc<str>, limits: PoolLimits) -> Self {
        Connection {
            io,
            buf: BytesMut::new(),
            write_buf: Vec::new(),
            key,
            limits,
        }
    }

    /// Serializes the request head; `chunked` frames a body of unknown length.
    pub(super) fn encode_head(&mut self, parts: &Parts, extra_head: &(dyn HeaderLines + Sync), chunked: bool) {
        self.write_buf.clear();
        h1::encode_request_head(parts, extra_head, chunked, &mut self.write_buf);
    }

    /// Moves an encoded head over from a connection that turned out to be dead.
    pub(super) fn take_head_from(&mut self, dead: &mut Connection) {
        std::mem::swap(&mut self.write_buf, &mut dead.write_buf);
    }

    /// Sends the encoded head and the body, then reads the response head (skipping `1xx`
    /// interim responses other than `101`).
    pub(super) async fn exchange<B>(
        &mut self,
        body: B,
        chunked: bool,
        head_request: bool,
        form: HeaderForm,
    ) -> Result<Recycled<ResponseHead>, H1Error>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BodyError>,
    {
        let sent = self.write_request(body, chunked).await;
        if let Err(e @ H1Error::ClientBody(_)) = sent {
            return Err(e);
        }
        match self.read_head(head_request, form).await {
            // An upstream may answer before it has read the whole body (a 413, say) and close
            // its side; the answer counts, but the connection is not reused.
            Ok(mut head) => {
                head.reusable &= sent.is_ok();
                Ok(head)
            }
            Err(e) => Err(sent.err().map_or(e, stale_as_closed)),
        }
    }

    async fn write_request<B>(&mut self, mut body: B, chunked: bool) -> Result<(), H1Error>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BodyError>,
    {
        if body.is_end_stream() {
            // A failed write is mapped by `exchange`, like every other.
            return Ok(self.io.write_all(&self.write_buf).await?);
        }
        // `write_buf` holds the head until the first data frame goes out with it.
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| H1Error::ClientBody(e.into()))?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            if chunked {
                let _ = write!(self.write_buf, "{:x}\r\n", data.len());
            }
            // Small frames are copied to go out in one write with their framing; large ones
            // are written where they are.
            if data.len() <= READ_RESERVE {
                self.write_buf.extend_from_slice(&data);
                if chunked {
                    self.write_buf.extend_from_slice(b"\r\n");
                }
                self.io.write_all(&self.write_buf).await?;
            } else {
                self.io.write_all(&self.write_buf).await?;
                self.io.write_all(&data).await?;
                if chunked {
                    self.io.write_all(b"\r\n").await?;
                }
            }
            self.write_buf.clear();
        }
        if chunked {
            self.write_buf.extend_from_slice(b"0\r\n\r\n");
        }
        if !self.write_buf.is_empty() {
            self.io.write_all(&self.write_buf).await?;
        }
        Ok(())
    }

    /// The head is boxed, in a recycled box, for the same reason as a request's (`client_head`):
    /// it is moved up through every level of the request path.
    async fn read_head(&mut self, head_request: bool, form: HeaderForm) -> Result<Recycled<ResponseHead>, H1Error> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = h1::parse_response_head(&mut self.buf, head_request, form)?
            {
                if head.parts.status.is_informational() && head.parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
                    continue;
                }
                return Ok(Recycled::new(head));
            }
            let nothing_yet = self.buf.is_empty();
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) if nothing_yet => return Err(H1Error::ClosedBeforeResponse),
                Ok(0) => return Err(H1Error::ClosedInHead),
                Ok(_) => {}
                Err(e) if nothing_yet => return Err(stale_as_closed(e.into())),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads whatever the upstream has sent into the buffer; `Ok(0)` is end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        crate::http1::poll_fill(&mut self.io, &mut self.buf, cx)
    }

    /// Whether an idle connection can still carry a request: the upstream has neither closed
    /// it nor sent anything unasked. Costs no system call when the socket has had no event.
    pub(super) fn is_reusable_idle(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.buf.is_empty() && matches!(self.poll_fill(&mut cx), Poll::Pending)
    }
}

/// A connection reset or broken pipe before any response byte means the upstream had closed
/// the (pooled) connection; the request never reached it and may be sent again.
fn stale_as_closed(e: H1Error) -> H1Error {
    match &e {
        H1Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
            ) =>
        {
            H1Error::ClosedBeforeResponse
        }
        _ => e,
    }
}
