//! Connections to upstreams: connect (TCP, TLS or UNIX socket), HTTP/1.1 exchanges, and a
//! keep-alive pool.
//!
//! - `io`: the byte stream (an enum over TCP, TLS and UNIX sockets);
//! - `h1`: request heads out, response heads in, as pure functions over buffers;
//! - `connection`: one connection, driven by the request using it;
//! - `response_stream`: the response body, which returns the connection to the pool at its end;
//! - `pool`: idle connections per worker thread.

mod connection;
pub mod h1;
pub mod io;
mod pool;
mod response_stream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response};
use http_body::Body;
use http_body_util::Empty;
use tokio::net::{TcpStream, UnixStream};

use crate::headers::lines::HeaderLines;
use crate::http1::BodyError;
use crate::recycle::Recycled;
use crate::target::{Scheme, Target};

pub use connection::Connection;
pub use h1::{H1Error, HeaderForm};
pub use io::{Upgraded, UpstreamIo};
pub use response_stream::ResponseStream;

/// Why an upstream could not be reached; every variant is answered with 503.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, H1Error),
    #[error("no response from {0} within --proxy-timeout")]
    ResponseTimeout(String),
}

#[derive(Clone, Copy)]
pub(crate) struct PoolLimits {
    idle_per_host: usize,
    idle_timeout: Duration,
}

/// Connects to upstreams and pools their connections.
pub struct Upstream {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    limits: PoolLimits,
}

impl Upstream {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
        idle_per_host: usize,
        idle_timeout: Duration,
    ) -> Self {
        Upstream {
            tls: tokio_rustls::TlsConnector::from(tls),
            connect_timeout,
            limits: PoolLimits {
                idle_per_host,
                idle_timeout,
            },
        }
    }

    /// Sends a request (`parts` in origin form, `body`) to `target` over a pooled connection (or a new one) and returns the response;
    /// its body gives the connection back to the pool when it has been read to the end.
    /// `extra_head` holds header lines (`name: value\r\n`) written after `parts`' headers.
    ///
    /// A pooled connection that the upstream closed while it sat idle fails before any answer;
    /// a request without a body is then sent once more on a fresh connection.
    pub async fn send<B>(
        &self,
        target: &Target,
        parts: &Parts,
        body: B,
        extra_head: &(dyn HeaderLines + Sync),
        form: HeaderForm,
    ) -> Result<Response<ResponseStream>, UpstreamError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BodyError>,
    {
        let head_request = parts.method == Method::HEAD;
        let bodiless = body.is_end_stream();
        let chunked = needs_chunked(&body);
        let http_err = |e| UpstreamError::Http(target.authority().to_owned(), e);

        let key = target.pool_key();
        let Some(mut pooled) = pool::take(key, self.limits.idle_timeout) else {
            // Boxed: the connect future (TCP, TLS) is many times the size of the rest, and inline
            // it would be moved around with every request's future although pooled requests
            // never run it.
            let mut conn = Box::new(Box::pin(self.connect(target)).await?);
            conn.encode_head(parts, extra_head, chunked);
            let head = conn
                .exchange(body, chunked, head_request, form)
                .await
                .map_err(http_err)?;
            return Ok(respond(conn, head));
        };
        pooled.encode_head(parts, extra_head, chunked);
        match pooled.exchange(body, chunked, head_request, form).await {
            Ok(head) => return Ok(respond(pooled, head)),
            Err(H1Error::ClosedBeforeResponse) if bodiless => {}
            Err(e) => return Err(http_err(e)),
        }
        let mut conn = Box::new(Box::pin(self.connect(target)).await?);
        conn.take_head_from(&mut pooled);
        let head = conn
            .exchange(Empty::<Bytes>::new(), false, head_request, form)
            .await
            .map_err(http_err)?;
        Ok(respond(conn, head))
    }

    /// Opens a new connection to `target` (for a request that must not share one: an upgrade).
    pub async fn connect(&self, target: &Target) -> Result<Connection, UpstreamError> {
        let name = || target.authority().to_owned();
        let connecting = async {
            let io = match target.scheme {
                Scheme::Http => UpstreamIo::Tcp(self.tcp(target).await?),
                Scheme::Https => {
                    let tcp = self.tcp(target).await?;
                    let server_name =
                        rustls::pki_types::ServerName::try_from(target.host().to_owned()).map_err(|e| {
                            UpstreamError::Tls(name(), std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                        })?;
                    let tls = self
                        .tls
                        .connect(server_name, tcp)
                        .await
                        .map_err(|e| UpstreamError::Tls(name(), e))?;
                    UpstreamIo::Tls(Box::new(tls))
                }
                Scheme::Unix => UpstreamIo::Unix(
                    UnixStream::connect(target.host())
                        .await
                        .map_err(|e| UpstreamError::Connect(target.host().to_owned(), e))?,
                ),
            };
            Ok(Connection::new(io, target.pool_key().clone(), self.limits))
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(name()))?
    }

    async fn tcp(&self, target: &Target) -> Result<TcpStream, UpstreamError> {
        let stream = TcpStream::connect((target.host(), target.port))
            .await
            .map_err(|e| UpstreamError::Connect(target.authority().to_owned(), e))?;
        // Requests are written whole; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Connection {
    /// Sends one request on this connection (not pooled first; used for upgrades and for
    /// one-off fetches) and returns the response.
    pub async fn send<B>(
        mut self,
        parts: &Parts,
        body: B,
        extra_head: &(dyn HeaderLines + Sync),
    ) -> Result<Response<ResponseStream>, H1Error>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BodyError>,
    {
        let head_request = parts.method == Method::HEAD;
        let chunked = needs_chunked(&body);
        self.encode_head(parts, extra_head, chunked);
        let head = self.exchange(body, chunked, head_request, HeaderForm::Map).await?;
        Ok(respond(Box::new(self), head))
    }
}

/// A body of unknown length goes chunked. A known one has its `Content-Length` in the head
/// already: lengths come from that header, in the map or among the relayed lines.
fn needs_chunked<B: Body>(body: &B) -> bool {
    !body.is_end_stream() && body.size_hint().exact().is_none()
}

fn respond(conn: Box<Connection>, head: Recycled<h1::ResponseHead>) -> Response<ResponseStream> {
    let head = Recycled::into_inner(head);
    let upgrade = head.parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let body = ResponseStream::new(conn, head.framing, head.reusable, upgrade, head.raw);
    Response::from_parts(head.parts, body)
}
