//! An upstream response body, read straight off its connection (RFC 9112 §6 and §7.1).
//!
//! The body owns the connection. Data frames are split off the read buffer without copying.
//! When the body has been read to its end and the connection may carry another request, it goes
//! back to the pool at that moment, before the client has even been sent the last bytes; a body
//! dropped part-way closes it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::connection::Connection;
use super::h1::{Framing, H1Error};
use super::io::Upgraded;
use super::pool;

/// Chunk-size lines and trailer sections longer than this are refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

pub struct ResponseStream {
    conn: Option<Connection>,
    state: State,
    reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    /// Chunked: the next thing expected.
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers {
        seen: usize,
    },
    UntilClose,
    Done,
}

impl ResponseStream {
    pub(super) fn new(conn: Connection, framing: Framing, reusable: bool, upgrade: bool) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        let mut stream = ResponseStream {
            conn: Some(conn),
            state,
            reusable,
        };
        // A body-less response frees its connection now, unless the connection is being
        // taken over by an upgrade.
        if state == State::Done && !upgrade {
            stream.finish();
        }
        stream
    }

    /// Keeps the connection out of the pool (it will be closed when the body is done).
    pub fn forbid_reuse(&mut self) {
        self.reusable = false;
    }

    /// The whole body when it is already in the buffer, which frees the connection at once. For
    /// small responses this saves streaming a one-frame body through the client connection.
    pub fn take_complete(&mut self) -> Option<Bytes> {
        match self.state {
            State::Done => Some(Bytes::new()),
            State::Length(n) => {
                let conn = self.conn.as_mut()?;
                let n = usize::try_from(n).ok().filter(|n| *n <= conn.buf.len())?;
                let data = conn.buf.split_to(n).freeze();
                self.finish();
                Some(data)
            }
            _ => None,
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
        self.state = State::Done;
    }

    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            pool::put(conn);
        }
    }

    /// The next data frame decodable from the buffer, moving the state along; `None` when more
    /// bytes are needed (or the body is done).
    fn decode(&mut self) -> Result<Option<Bytes>, H1Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let buf = &mut conn.buf;
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(n) | State::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(n).map_or(buf.len(), |n| n.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    let left = n - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    if self.state == State::Done {
                        self.finish();
                    }
                    return Ok(Some(data));
                }
                State::UntilClose => {
                    return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers { seen: 0 }
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::BadChunk);
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers { seen } => {
                    // Trailer fields are read and dropped: hyper's server would not send them
                    // on to an HTTP/1.1 client that did not ask with `TE: trailers` anyway.
                    let Some(line) = take_line(buf, MAX_TRAILERS - seen)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.finish();
                        return Ok(None);
                    }
                    self.state = State::Trailers {
                        seen: seen + line.len() + 2,
                    };
                }
            }
        }
    }
}

/// Splits one CRLF-terminated line off the front of `buf` (without the CRLF).
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, H1Error> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        Some(_) => Err(H1Error::BadChunk),
        None if buf.len() > max => Err(H1Error::BadChunk),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optional extensions, which are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let rest = line[digits..].trim_ascii_start();
    if digits == 0 || digits > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(H1Error::BadChunk);
    }
    line[..digits].iter().try_fold(0u64, |n, b| {
        let d = (*b as char).to_digit(16).ok_or(H1Error::BadChunk)?;
        Ok(n << 4 | u64::from(d))
    })
}

impl http_body::Body for ResponseStream {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        loop {
            match this.decode() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if this.state == State::Done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    this.close();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let error = match ready!(conn.poll_fill(cx)) {
                Ok(0) => (this.state != State::UntilClose).then_some(H1Error::ClosedInBody),
                Ok(_) => continue,
                Err(e) => Some(e.into()),
            };
            // End of stream ends a body delimited by close; any other is cut short.
            this.close();
            return Poll::Ready(error.map(Err));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_parse_with_extensions_and_refuse_junk() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"0").unwrap(), 0);
        assert_eq!(parse_chunk_size(b"FF;name=value").unwrap(), 255);
        assert_eq!(parse_chunk_size(b"10 ;x").unwrap(), 16);
        for bad in [&b""[..], b"x1", b"1x", b"-1", b"1234567890abcdef0", b";ext"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_need_crlf_and_a_bound() {
        let mut buf = BytesMut::from(&b"5\r\nhello"[..]);
        assert_eq!(&take_line(&mut buf, 16).unwrap().unwrap()[..], b"5");
        assert_eq!(&buf[..], b"hello");
        assert!(take_line(&mut buf, 16).unwrap().is_none());
        assert!(take_line(&mut BytesMut::from(&b"5\n"[..]), 16).is_err());
        assert!(take_line(&mut BytesMut::from(&b"123456"[..]), 4).is_err());
    }
}
