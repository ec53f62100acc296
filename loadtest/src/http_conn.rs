//! One client connection (hyper 1, HTTP/1.1 or HTTP/2 prior knowledge) and one request/response
//! exchange on a connection slot, with the outcome reduced to a status code or an [`ErrorKind`].
//!
//! Connections are driven on the worker's own single-threaded runtime; the response body is read
//! to the end and discarded frame by frame, never collected.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::error_kind::ErrorKind;
use crate::request_plan::{HttpVersion, Origin, PreparedRequest};

/// An open connection to one origin.
pub struct Connection {
    sender: Sender,
    /// Whether a request has completed on it: a failure before the first byte of a reused
    /// connection is the server's idle close, not an error of the request.
    reused: bool,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// Connects (TCP_NODELAY on) and performs the HTTP handshake.
    pub async fn open(origin: &Origin, version: HttpVersion) -> Result<Connection, ErrorKind> {
        let stream = TcpStream::connect(origin.addr)
            .await
            .map_err(|e| ErrorKind::from_connect(&e))?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let sender = match version {
            HttpVersion::Http1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(|e| ErrorKind::from_hyper(&e))?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                Sender::H1(sender)
            }
            HttpVersion::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| ErrorKind::from_hyper(&e))?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                Sender::H2(sender)
            }
        };
        Ok(Connection { sender, reused: false })
    }

    /// Sends `req`, reads the whole response body, returns the status code.
    async fn send(&mut self, req: &PreparedRequest) -> Result<u16, SendError> {
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(SendError::NotReady)?;
                s.send_request(req.build()).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(SendError::NotReady)?;
                s.send_request(req.build()).await
            }
        }
        .map_err(|e| SendError::Failed(ErrorKind::from_hyper(&e)))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| SendError::Failed(ErrorKind::from_hyper(&e)))?;
        }
        self.reused = true;
        Ok(status)
    }
}

enum SendError {
    /// The connection was closed before the request could be written.
    NotReady(hyper::Error),
    Failed(ErrorKind),
}

/// One request on a connection slot: opens a connection when the slot is empty, sends, reads
/// the response. On success the slot keeps the connection when `keep_alive`; on failure it is
/// emptied. A reused connection that turns out to be closed before the request is written is
/// replaced once, silently (servers close idle keep-alive connections).
pub async fn exchange(
    slot: &mut Option<Connection>,
    origin: &Origin,
    version: HttpVersion,
    keep_alive: bool,
    req: &PreparedRequest,
) -> Result<u16, ErrorKind> {
    loop {
        let conn = match slot {
            Some(c) => c,
            None => slot.insert(Connection::open(origin, version).await?),
        };
        let reused = conn.reused;
        match conn.send(req).await {
            Ok(status) => {
                if !keep_alive {
                    *slot = None;
                }
                return Ok(status);
            }
            Err(SendError::NotReady(_)) if reused => {
                *slot = None;
            }
            Err(SendError::NotReady(e)) => {
                *slot = None;
                return Err(ErrorKind::from_hyper(&e));
            }
            Err(SendError::Failed(kind)) => {
                *slot = None;
                return Err(kind);
            }
        }
    }
}
