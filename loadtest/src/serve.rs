//! The test server (`edgeload serve`): answers every request with a small body, after an optional
//! fixed delay and inside periodic *stalls*, and counts requests and connections. Tests and
//! benchmarks load it to check what edgeload reports against what really happened.
//!
//! A stall models a GC pause or a blocked event loop: from every multiple of `stall_every` since
//! the server started, for `stall_for`, no response leaves; requests arriving inside a stall are
//! answered when it ends. `GET /status/<code>` answers with that status, to provoke errors.
//! HTTP/1.1 and HTTP/2 (prior knowledge) are both served on the same port; with a certificate,
//! HTTPS instead (ALPN `h2` or `http/1.1`), WebSockets included.
//!
//! Any HTTP/1.1 request with `Upgrade: websocket` (on any path, `/ws` by convention) becomes a
//! WebSocket that echoes every text and binary message back unchanged, for `edgeload ws`. Its
//! buffers are small ([`ws_config`]), so that tens of thousands of idle tunnels stay cheap.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Periodic stalls: every `every`, for `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub every: Duration,
    pub length: Duration,
}

/// How the test server behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Added to every response (default none).
    pub delay: Duration,
    pub stall: Option<Stall>,
    /// The body of every 200 response (default `ok`).
    pub body: Bytes,
    /// Serve TLS with this configuration (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            delay: Duration::ZERO,
            stall: None,
            body: Bytes::from_static(b"ok"),
            tls: None,
        }
    }
}

impl Stall {
    /// How long a request arriving `since_start` after the server started waits for the stall
    /// it falls into to end (zero outside stalls).
    pub fn wait_at(&self, since_start: Duration) -> Duration {
        if self.every.is_zero() {
            return Duration::ZERO;
        }
        let phase = Duration::from_nanos((since_start.as_nanos() % self.every.as_nanos()) as u64);
        self.length.saturating_sub(phase)
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    /// WebSocket upgrades completed.
    pub websockets: AtomicU64,
    /// WebSocket messages echoed.
    pub ws_messages: AtomicU64,
}

impl ServerCounters {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn websockets(&self) -> u64 {
        self.websockets.load(Ordering::Relaxed)
    }

    pub fn ws_messages(&self) -> u64 {
        self.ws_messages.load(Ordering::Relaxed)
    }
}

/// The echo endpoint's WebSocket settings: a 4 KiB read buffer (tungstenite allocates it eagerly,
/// 128 KiB by default), frames written as soon as they are sent, and tungstenite's default limits
/// (64 MiB messages, 16 MiB frames).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

/// Serves `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServeConfig>,
    counters: Arc<ServerCounters>,
    shutdown: impl Future<Output = ()>,
) {
    let started = Instant::now();
    let acceptor = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of fds or a connection reset before accept: keep serving the others.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let config = config.clone();
        let counters = counters.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, config.clone(), counters.clone(), started));
            let server = auto::Builder::new(TokioExecutor::new());
            match acceptor {
                None => {
                    let _ = server
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
                // A failed handshake only ends this connection.
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = server.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
                    }
                }
            }
        });
    }
}

async fn respond(
    mut req: Request<Incoming>,
    config: Arc<ServeConfig>,
    counters: Arc<ServerCounters>,
    started: Instant,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let stall = config.stall.map_or(Duration::ZERO, |s| s.wait_at(started.elapsed()));
    let wait = stall + config.delay;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    if is_websocket_upgrade(&req) {
        return Ok(upgrade_to_echo(&mut req, counters));
    }
    let status = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let body = if status == StatusCode::OK {
        config.body.clone()
    } else {
        Bytes::new()
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    Ok(response)
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Answers `101 Switching Protocols` (RFC 6455 §4.2.2) and echoes on the upgraded connection.
fn upgrade_to_echo(req: &mut Request<Incoming>, counters: Arc<ServerCounters>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"missing Sec-WebSocket-Key")));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        counters.websockets.fetch_add(1, Ordering::Relaxed);
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config())).await;
        echo(ws, &counters).await;
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// Sends every data message back until the peer closes. Pings are answered and the closing
/// handshake completed by tungstenite itself.
async fn echo<S>(mut ws: WebSocketStream<S>, counters: &ServerCounters)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() || msg.is_binary() {
            counters.ws_messages.fetch_add(1, Ordering::Relaxed);
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    }
}

/// A test server on its own thread and runtime, for tests in the same process; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    tls: bool,
    pub counters: Arc<ServerCounters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub fn start(config: ServeConfig) -> std::io::Result<TestServer> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let counters = Arc::new(ServerCounters::default());
        let tls = config.tls.is_some();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("edgeload-serve".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        if let Ok(listener) = TcpListener::from_std(std_listener) {
                            serve(listener, Arc::new(config), counters, async {
                                let _ = stopped.await;
                            })
                            .await;
                        }
                    });
                })?
        };
        Ok(TestServer {
            addr,
            tls,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port><path>`, or `https://` when it serves TLS.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_waits_until_the_end_of_the_window() {
        let s = Stall {
            every: Duration::from_secs(1),
            length: Duration::from_millis(200),
        };
        let ms = Duration::from_millis;
        assert_eq!(s.wait_at(ms(0)), ms(200));
        assert_eq!(s.wait_at(ms(150)), ms(50));
        assert_eq!(s.wait_at(ms(200)), Duration::ZERO);
        assert_eq!(s.wait_at(ms(999)), Duration::ZERO);
        assert_eq!(s.wait_at(ms(2100)), ms(100));
    }
}
