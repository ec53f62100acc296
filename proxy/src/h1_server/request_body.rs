//! A request body read straight off the client connection.
//!
//! While the request is being forwarded the body owns the connection (its stream and read
//! buffer), so no lock or channel sits between the upstream writer and the socket. When the
//! body is dropped (read to its end, or abandoned because the request failed early) it sends the
//! connection home to the serving loop, saying whether the body was read whole: only then can
//! the connection carry another request.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::Conn;
use crate::http1::{BodyDecoder, BodyError, Decoded, Framing};

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The connection on its way back to the serving loop.
pub struct Returned {
    pub conn: Conn,
    /// The body was read to its end, so the next request starts where it stopped.
    pub complete: bool,
}

pub struct H1Body {
    conn: Option<Conn>,
    decoder: BodyDecoder,
    /// Bytes of `100 Continue` still to write, for a client that waits for it (RFC 9110
    /// §10.1.1); sent when the body is first read, so a request refused before forwarding does
    /// not invite its upload.
    continue_left: usize,
    home: Option<oneshot::Sender<Returned>>,
}

impl H1Body {
    /// The body of a request that has none: the connection stays with the serving loop.
    pub(super) fn empty() -> H1Body {
        H1Body {
            conn: None,
            decoder: BodyDecoder::new(Framing::Empty),
            continue_left: 0,
            home: None,
        }
    }

    pub(super) fn new(conn: Conn, framing: Framing, expect_continue: bool) -> (H1Body, oneshot::Receiver<Returned>) {
        let (tx, rx) = oneshot::channel();
        let body = H1Body {
            conn: Some(conn),
            decoder: BodyDecoder::new(framing),
            continue_left: if expect_continue { CONTINUE.len() } else { 0 },
            home: Some(tx),
        };
        (body, rx)
    }

    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while self.continue_left > 0 {
            let sent = CONTINUE.len() - self.continue_left;
            let n = ready!(Pin::new(&mut conn.io).poll_write(cx, &CONTINUE[sent..]))?;
            if n == 0 {
                return Poll::Ready(Err("client connection closed".into()));
            }
            self.continue_left -= n;
        }
        Poll::Ready(Ok(()))
    }
}

impl http_body::Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Err(e) = ready!(this.poll_continue(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::Done) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Some(Err("client closed the connection mid-body".into()))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }
}

impl Drop for H1Body {
    fn drop(&mut self) {
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take()) {
            let complete = self.decoder.is_done() && self.continue_left == 0;
            let _ = home.send(Returned { conn, complete });
        }
    }
}
