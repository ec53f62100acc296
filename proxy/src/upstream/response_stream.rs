//! An upstream response body, read straight off its connection (RFC 9112 §6 and §7.1).
//!
//! The body owns the connection. Data frames are split off the read buffer without copying.
//! When the body has been read to its end and the connection may carry another request, it goes
//! back to the pool at that moment, before the client has even been sent the last bytes; a body
//! dropped part-way closes it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::connection::Connection;
use super::h1::H1Error;
use super::io::Upgraded;
use super::pool;
use crate::headers::raw::RawHeaders;
use crate::http1::{BodyDecoder, Decoded, Framing};

pub struct ResponseStream {
    conn: Option<Box<Connection>>,
    decoder: BodyDecoder,
    reusable: bool,
    /// The head's header lines, when they were kept raw (`HeaderForm::Raw`).
    raw: Option<RawHeaders>,
}

impl ResponseStream {
    pub(super) fn new(
        conn: Box<Connection>,
        framing: Framing,
        reusable: bool,
        upgrade: bool,
        raw: Option<RawHeaders>,
    ) -> Self {
        let decoder = BodyDecoder::new(framing);
        let mut stream = ResponseStream {
            conn: Some(conn),
            decoder,
            reusable,
            raw,
        };
        // A body-less response frees its connection now, unless the connection is being
        // taken over by an upgrade.
        if decoder.is_done() && !upgrade {
            stream.finish();
        }
        stream
    }

    /// The response's header lines as the upstream wrote them, hop-by-hop ones left out, when
    /// they were asked for raw (`HeaderForm::Raw`); the response's `HeaderMap` is then empty.
    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        self.raw.take()
    }

    /// Keeps the connection out of the pool (it will be closed when the body is done).
    pub fn forbid_reuse(&mut self) {
        self.reusable = false;
    }

    /// The whole body when it is already in the buffer, which frees the connection at once. For
    /// small responses this saves streaming a one-frame body through the client connection.
    pub fn take_complete(&mut self) -> Option<Bytes> {
        match self.decoder.remaining() {
            Some(0) => Some(Bytes::new()),
            Some(n) => {
                let conn = self.conn.as_mut()?;
                let n = usize::try_from(n).ok().filter(|n| *n <= conn.buf.len())?;
                let data = conn.buf.split_to(n).freeze();
                self.finish();
                Some(data)
            }
            None => None,
        }
    }

    /// After a `101`, the connection itself, with any bytes the upstream sent behind the head.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        let conn = self.conn.take()?;
        // Copied, not frozen: a frozen read buffer would keep its whole 8 KiB allocation alive
        // for the life of the tunnel, and idle tunnels must stay small (docs/websockets.md).
        let leftover = Bytes::copy_from_slice(&conn.buf);
        Some(Upgraded::new(conn.io, leftover))
    }

    /// Ends the body without pooling its connection, which is dropped, so closed.
    fn close(&mut self) {
        self.conn = None;
        self.decoder.end();
    }

    fn finish(&mut self) {
        self.decoder.end();
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            pool::put(conn);
        }
    }
}

impl http_body::Body for ResponseStream {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    this.close();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            let error = match ready!(conn.poll_fill(cx)) {
                Ok(0) => (!this.decoder.until_close()).then_some(H1Error::ClosedInBody),
                Ok(_) => continue,
                Err(e) => Some(e.into()),
            };
            // End of stream ends a body delimited by close; any other is cut short.
            this.close();
            return Poll::Ready(error.map(Err));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }
}
