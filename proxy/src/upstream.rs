//! Connections to upstreams: connect (TCP, TLS or UNIX socket), HTTP/1.1 handshake, and a
//! keep-alive pool.
//!
//! The pool is per worker thread (a `thread_local!`), so checking a connection out or in takes no
//! lock and touches no shared cache line. A connection that a task checks out on one thread and
//! releases on another simply joins the other thread's pool. Idle connections are bounded per
//! upstream and per thread and expire after an idle timeout; a connection is only pooled once its
//! response body has been read to the end.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::body::RequestBody;
use crate::target::{Scheme, Target};

/// Why an upstream could not be reached; every variant is answered with 503.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {0} failed: {1}")]
    Connect(String, io::Error),
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(String, io::Error),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, hyper::Error),
    #[error("no response from {0} within --proxy-timeout")]
    ResponseTimeout(String),
}

#[derive(Clone, Copy)]
struct PoolLimits {
    idle_per_host: usize,
    idle_timeout: Duration,
}

/// Connects to upstreams and pools their connections.
pub struct Upstream {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    limits: PoolLimits,
}

/// A checked-out connection. `release` returns it to the pool; dropping it closes it once the
/// exchange in flight (if any) is over.
pub struct PooledConnection {
    sender: SendRequest<RequestBody>,
    key: Arc<str>,
    limits: PoolLimits,
}

impl PooledConnection {
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            idle.sweep(self.limits.idle_timeout);
            let slot = idle.by_key.entry(self.key).or_default();
            if slot.len() < self.limits.idle_per_host {
                slot.push(IdleConnection {
                    sender: self.sender,
                    since: Instant::now(),
                });
            }
        });
    }
}

struct IdleConnection {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

#[derive(Default)]
struct IdlePool {
    // Keyed by targets the admin API set, not by client input, so a fixed-seed fast hash is safe;
    // SipHash showed up in profiles at two lookups per request.
    by_key: HashMap<Arc<str>, Vec<IdleConnection>, foldhash::fast::FixedState>,
    last_sweep: Option<Instant>,
}

impl IdlePool {
    /// Drops expired and closed connections, at most once a second.
    fn sweep(&mut self, idle_timeout: Duration) {
        let now = Instant::now();
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.by_key.retain(|_, conns| {
            conns.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < idle_timeout);
            !conns.is_empty()
        });
    }

    fn take(&mut self, key: &str, idle_timeout: Duration) -> Option<SendRequest<RequestBody>> {
        let conns = self.by_key.get_mut(key)?;
        // Most recently used first: it is the least likely to have been closed by the upstream.
        while let Some(c) = conns.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < idle_timeout {
                return Some(c.sender);
            }
        }
        None
    }
}

thread_local! {
    static IDLE: RefCell<IdlePool> = RefCell::new(IdlePool::default());
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

    /// Sends `req` to `target` over a pooled connection (or a new one) and returns the response
    /// head with the connection, which the caller releases when the body is done.
    ///
    /// A pooled connection that the upstream closed while it sat idle fails before anything was
    /// written; that request is retried once on a fresh connection.
    pub async fn send(
        &self,
        target: &Target,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, PooledConnection), UpstreamError> {
        let key = target.pool_key();
        let pooled = IDLE.with(|idle| idle.borrow_mut().take(key, self.limits.idle_timeout));
        if let Some(mut sender) = pooled
            && sender.ready().await.is_ok()
        {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.wrap(sender, key))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Http(target.authority().to_owned(), e.into_error())),
                },
            }
        }
        // Boxed: the connect future (TCP, TLS, handshake) is ten times the size of the rest, and
        // inline it would be moved around with every request's future although pooled requests
        // never run it.
        let mut sender = Box::pin(self.connect(target)).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Http(target.authority().to_owned(), e))?;
        Ok((resp, self.wrap(sender, key)))
    }

    fn wrap(&self, sender: SendRequest<RequestBody>, key: &Arc<str>) -> PooledConnection {
        PooledConnection {
            sender,
            key: key.clone(),
            limits: self.limits,
        }
    }

    /// Opens a new connection to `target` and performs the HTTP/1.1 handshake.
    pub async fn connect(&self, target: &Target) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let name = || target.authority().to_owned();
        let connecting = async {
            match target.scheme {
                Scheme::Http => handshake(self.tcp(target).await?).await,
                Scheme::Https => {
                    let tcp = self.tcp(target).await?;
                    let server_name = rustls::pki_types::ServerName::try_from(target.host().to_owned())
                        .map_err(|e| UpstreamError::Tls(name(), io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                    let tls = self
                        .tls
                        .connect(server_name, tcp)
                        .await
                        .map_err(|e| UpstreamError::Tls(name(), e))?;
                    handshake(tls).await
                }
                Scheme::Unix => {
                    let stream = UnixStream::connect(target.host())
                        .await
                        .map_err(|e| UpstreamError::Connect(target.host().to_owned(), e))?;
                    handshake(stream).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(name()))?
            .map_err(|e| match e {
                HandshakeError::Upstream(e) => e,
                HandshakeError::Http(e) => UpstreamError::Http(name(), e),
            })
    }

    async fn tcp(&self, target: &Target) -> Result<TcpStream, HandshakeError> {
        let stream = TcpStream::connect((target.host(), target.port))
            .await
            .map_err(|e| UpstreamError::Connect(target.authority().to_owned(), e))?;
        // Requests are written whole; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

enum HandshakeError {
    Upstream(UpstreamError),
    Http(hyper::Error),
}

impl From<UpstreamError> for HandshakeError {
    fn from(e: UpstreamError) -> Self {
        HandshakeError::Upstream(e)
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<RequestBody>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(io))
        .await
        .map_err(HandshakeError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    Ok(sender)
}
