//! One client connection and one request/response exchange on a connection slot, with the
//! outcome reduced to a status code or an [`ErrorKind`].
//!
//! HTTP/1.1 takes a lean path: the request was serialized once ([`PreparedRequest::head`]), so
//! sending is one `write` of shared bytes; the response head is parsed in place, keeping only the
//! status and the framing fields, and its body is delimited and skipped ([`crate::h1_wire`]),
//! never collected or moved. No allocation per request on an open connection, one task per
//! connection. HTTP/2 (prior knowledge, or ALPN over TLS) goes through hyper's client connection,
//! whose driver runs in a task of its own. `https://` origins add a TLS handshake when a
//! connection opens ([`crate::tls`]), reported to the caller apart from the request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error_kind::ErrorKind;
use crate::h1_wire::{ChunkedDecoder, Framing, parse_head};
use crate::request_plan::{HttpVersion, PreparedRequest, RequestPlan};
use crate::tls::Stream;

/// Initial read buffer of an HTTP/1.1 connection, and the free space kept before each read.
const READ_CHUNK: usize = 8 * 1024;

/// An open connection to one origin.
pub struct Connection {
    protocol: Protocol,
    /// Whether a request has completed on it: a failure before the first response byte on a
    /// reused connection is the server's idle close, not an error of the request.
    reused: bool,
}

enum Protocol {
    H1 { stream: Stream, buf: Vec<u8> },
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Why an exchange failed, and whether any response byte had arrived.
enum SendError {
    /// Nothing came back (the request may not even have been written): on a reused connection,
    /// the server had closed it while idle.
    NoResponse(ErrorKind),
    Failed(ErrorKind),
}

impl Connection {
    /// Connects to origin `origin` of `plan` (TCP_NODELAY on), with the TLS handshake of an
    /// `https://` origin, and for HTTP/2 the HTTP/2 handshake. `on_tls_handshake` is told when
    /// a TLS handshake started and how long it took.
    pub async fn open(
        plan: &RequestPlan,
        origin: usize,
        on_tls_handshake: &dyn Fn(Instant, Duration),
    ) -> Result<Connection, ErrorKind> {
        let origin = &plan.origins[origin];
        let tls = plan.tls.as_ref().zip(origin.tls.as_ref());
        let opened = crate::tls::open(origin.addr, tls).await?;
        if let Some((started, took)) = opened.tls_handshake {
            on_tls_handshake(started, took);
        }
        let stream = opened.stream;
        let protocol = match plan.version {
            HttpVersion::Http1 => Protocol::H1 {
                stream,
                buf: Vec::with_capacity(READ_CHUNK),
            },
            HttpVersion::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(|e| ErrorKind::from_hyper(&e))?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                Protocol::H2(sender)
            }
        };
        Ok(Connection {
            protocol,
            reused: false,
        })
    }

    /// Sends `req` and reads the whole response; returns the status and whether the connection
    /// can carry another request.
    async fn send(&mut self, req: &PreparedRequest) -> Result<(u16, bool), SendError> {
        let result = match &mut self.protocol {
            Protocol::H1 { stream, buf } => send_h1(stream, buf, req).await,
            Protocol::H2(sender) => send_h2(sender, req).await,
        };
        self.reused = true;
        result
    }
}

async fn send_h1(stream: &mut Stream, buf: &mut Vec<u8>, req: &PreparedRequest) -> Result<(u16, bool), SendError> {
    let no_response = |e: std::io::Error| SendError::NoResponse(ErrorKind::from_io(&e));
    let head = req.head();
    match stream {
        // The send buffer nearly always has room: one non-blocking write, without a future.
        Stream::Plain(tcp) => match tcp.try_write(head) {
            Ok(n) if n == head.len() => {}
            Ok(n) => tcp.write_all(&head[n..]).await.map_err(no_response)?,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tcp.write_all(head).await.map_err(no_response)?,
            Err(e) => return Err(no_response(e)),
        },
        // Encrypted into the session's buffer, then flushed to the socket in one write.
        Stream::Tls(_) => {
            stream.write_all(head).await.map_err(no_response)?;
            stream.flush().await.map_err(no_response)?;
        }
    }
    buf.clear();
    let head = loop {
        let got_nothing = buf.is_empty();
        match read_more(stream, buf).await {
            Ok(0) if got_nothing => return Err(SendError::NoResponse(ErrorKind::Closed)),
            Ok(0) => return Err(SendError::Failed(ErrorKind::Closed)),
            Ok(_) => {}
            Err(e) if got_nothing => return Err(no_response(e)),
            Err(e) => return Err(SendError::Failed(ErrorKind::from_io(&e))),
        }
        if let Some(head) = parse_head(buf, req.is_head()).map_err(SendError::Failed)? {
            break head;
        }
    };
    // `at`: the first byte of `buf` not consumed yet. Consumed bytes are dropped only when the
    // buffer is refilled, so a response that arrived in one read costs no copy.
    let mut at = head.len;
    let failed = |e: std::io::Error| SendError::Failed(ErrorKind::from_io(&e));
    match head.framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            let mut left = length - length.min((buf.len() - at) as u64);
            while left > 0 {
                match discard(stream, left).await.map_err(failed)? {
                    0 => return Err(SendError::Failed(ErrorKind::Closed)),
                    n => left -= n as u64,
                }
            }
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            loop {
                at += decoder.advance(&buf[at..]).map_err(SendError::Failed)?;
                if decoder.is_done() {
                    break;
                }
                // Keep the part of a chunk-size line that has arrived.
                buf.drain(..at);
                at = 0;
                if read_more(stream, buf).await.map_err(failed)? == 0 {
                    return Err(SendError::Failed(ErrorKind::Closed));
                }
            }
        }
        Framing::UntilClose => while discard(stream, u64::MAX).await.map_err(failed)? > 0 {},
    }
    Ok((head.status, !head.close))
}

/// The most body bytes read (and dropped) at once.
const DISCARD_CHUNK: usize = 256 * 1024;

thread_local! {
    /// Where body bytes are read to be dropped: one buffer per worker thread, borrowed for the
    /// length of one read only (never across an await), shared by all of its connections. A large
    /// body then takes few system calls, whatever the size of each connection's own buffer.
    static DISCARD: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; DISCARD_CHUNK].into_boxed_slice());
}

/// Reads at most `max` bytes of a body and drops them; returns how many were read (0 at the
/// end of the stream).
async fn discard(stream: &mut Stream, max: u64) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        DISCARD.with_borrow_mut(|scratch| {
            let len = scratch.len().min(usize::try_from(max).unwrap_or(usize::MAX));
            let mut out = tokio::io::ReadBuf::new(&mut scratch[..len]);
            std::task::ready!(std::pin::Pin::new(&mut *stream).poll_read(cx, &mut out))?;
            std::task::Poll::Ready(Ok(out.filled().len()))
        })
    })
    .await
}

/// Reads once into the free space of `buf`, keeping at least [`READ_CHUNK`] bytes free so that a
/// large body is read in few calls.
async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK {
        buf.reserve(READ_CHUNK);
    }
    stream.read_buf(buf).await
}

async fn send_h2(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    req: &PreparedRequest,
) -> Result<(u16, bool), SendError> {
    sender
        .ready()
        .await
        .map_err(|e| SendError::NoResponse(ErrorKind::from_hyper(&e)))?;
    let response = sender
        .send_request(req.build())
        .await
        .map_err(|e| SendError::Failed(ErrorKind::from_hyper(&e)))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| SendError::Failed(ErrorKind::from_hyper(&e)))?;
    }
    Ok((status, true))
}

/// One request on a connection slot: opens a connection when the slot is empty, sends, reads
/// the response. On success the slot keeps the connection when `keep_alive` and the server
/// allows it; on failure it is emptied. A reused connection that yields no response byte at all
/// is replaced once, silently: servers close idle keep-alive connections. A TLS handshake of a
/// new connection is reported to `on_tls_handshake` (its start and length).
pub async fn exchange(
    slot: &mut Option<Connection>,
    plan: &RequestPlan,
    req: &PreparedRequest,
    on_tls_handshake: &dyn Fn(Instant, Duration),
) -> Result<u16, ErrorKind> {
    loop {
        let conn = match slot {
            Some(c) => c,
            // Boxed: a connection is opened rarely (with keep-alive), and its future inlined here,
            // HTTP/2 handshake included, made the stack frame of every poll of the request path
            // 11 KB, probed page by page. One small allocation per connection instead.
            None => slot.insert(Box::pin(Connection::open(plan, req.origin, on_tls_handshake)).await?),
        };
        let reused = conn.reused;
        match conn.send(req).await {
            Ok((status, reusable)) => {
                if !(plan.keep_alive && reusable) {
                    *slot = None;
                }
                return Ok(status);
            }
            Err(SendError::NoResponse(_)) if reused => {
                *slot = None;
            }
            Err(SendError::NoResponse(kind) | SendError::Failed(kind)) => {
                *slot = None;
                return Err(kind);
            }
        }
    }
}
