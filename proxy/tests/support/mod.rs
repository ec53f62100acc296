//! Black-box test harness: the real `edgeproxy` binary as a child process, upstream servers on
//! real sockets (in a background runtime), and a raw HTTP/1.1 client that sends request-targets
//! byte for byte (HTTP libraries normalise exactly the paths these tests are about).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

pub mod embedded;
pub mod pki;
pub mod redis;
pub mod route_store;

pub const TOKEN: &str = "secret";

/// A loopback port that refuses connections: bound for the whole test process but never
/// listening, so no other process can take it. (A port merely found free could be taken, and
/// answer, before the test connects.)
pub fn refused_port() -> u16 {
    static SOCKET: OnceLock<tokio::net::TcpSocket> = OnceLock::new();
    let socket = SOCKET.get_or_init(|| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        socket
    });
    socket.local_addr().unwrap().port()
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeproxy-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A shared runtime on a background thread for the in-process upstream servers.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// The proxy under test.

pub struct Edgeproxy {
    pub port: u16,
    pub api_port: u16,
    child: Child,
    pub log: PathBuf,
}

impl Edgeproxy {
    /// Starts edgeproxy on loopback ports the system picks (`--port 0 --api-port 0`) with token
    /// `secret`, and reads them back from the lines it logs once its listeners are bound.
    pub fn start(extra: &[&str]) -> Edgeproxy {
        Self::start_with(extra, Some(TOKEN))
    }

    pub fn start_with(extra: &[&str], token: Option<&str>) -> Edgeproxy {
        Self::launch(&on_loopback(extra), token)
    }

    /// As [`Edgeproxy::start`], with environment variables set for the proxy.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Edgeproxy {
        Self::launch_with_env(&on_loopback(extra), Some(TOKEN), env)
    }

    /// Starts edgeproxy with exactly `args` (TCP public and API listeners; port 0 for any free
    /// one), and waits until it has logged where both listen.
    pub fn launch(args: &[&str], token: Option<&str>) -> Edgeproxy {
        Self::launch_with_env(args, token, &[])
    }

    /// As [`Edgeproxy::launch`], with environment variables set for the proxy.
    pub fn launch_with_env(args: &[&str], token: Option<&str>, env: &[(&str, &str)]) -> Edgeproxy {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("edgeproxy-{}-{n}.log", std::process::id()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeproxy"));
        cmd.args(args)
            .env_remove("CONFIGPROXY_AUTH_TOKEN")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .envs(env.iter().copied());
        if let Some(t) = token {
            cmd.env("CONFIGPROXY_AUTH_TOKEN", t);
        }
        let child = cmd.spawn().expect("spawn edgeproxy");
        let mut proxy = Edgeproxy {
            port: 0,
            api_port: 0,
            child,
            log,
        };
        let ready = proxy
            .logged_addr(PUBLIC_LINE)
            .and_then(|public| Ok((public, proxy.logged_addr(API_LINE)?)));
        match ready {
            Ok((public, api)) => {
                (proxy.port, proxy.api_port) = (public.port(), api.port());
                proxy
            }
            Err(why) => panic!("edgeproxy did not start: {why}\n{}", proxy.log_text()),
        }
    }

    /// The address in the start-up line that contains `marker` (CHP's wording, with the bound
    /// port), once logged.
    fn logged_addr(&mut self, marker: &str) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(addr) = logged_addr(&self.log_text(), marker) {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("no {marker:?} line within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The metrics listener (`--metrics-port`, 0 for any free one), as logged.
    pub fn metrics_addr(&mut self) -> SocketAddr {
        self.logged_addr(METRICS_LINE)
            .unwrap_or_else(|why| panic!("no metrics listener: {why}\n{}", self.log_text()))
    }

    /// The HTTP-to-HTTPS redirect listener (`--redirect-port`, 0 for any free one), as logged.
    pub fn redirect_addr(&mut self) -> SocketAddr {
        self.logged_addr(REDIRECT_LINE)
            .unwrap_or_else(|why| panic!("no redirect listener: {why}\n{}", self.log_text()))
    }

    pub fn public(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal and waits for the exit status.
    pub fn stop(&mut self, signal: &str) -> std::process::ExitStatus {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        wait_exit(&mut self.child, Duration::from_secs(15)).expect("edgeproxy did not exit after the signal")
    }

    /// An admin API request with the token.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.api_with(method, path, body, &[("Authorization", &format!("token {TOKEN}"))])
    }

    pub fn api_with(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Response {
        request(self.api_addr(), method, path, headers, body.map(str::as_bytes))
    }

    pub fn add_route(&self, key: &str, target: &str) {
        let r = self.api(
            "POST",
            &format!("/api/routes{key}"),
            Some(&json!({ "target": target }).to_string()),
        );
        assert_eq!(r.status, 201, "adding {key}: {}", r.text());
    }

    pub fn routes(&self) -> Value {
        let r = self.api("GET", "/api/routes", None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn last_activity(&self, key: &str) -> String {
        self.routes()[key]["last_activity"]
            .as_str()
            .unwrap_or_else(|| panic!("no route {key}"))
            .to_owned()
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.public(), path)
    }
}

impl Drop for Edgeproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The public and API listeners on loopback, on ports the system picks.
pub const LOOPBACK_PORT_0: [&str; 8] = [
    "--ip",
    "127.0.0.1",
    "--port",
    "0",
    "--api-ip",
    "127.0.0.1",
    "--api-port",
    "0",
];

/// [`LOOPBACK_PORT_0`] followed by `extra`.
pub fn on_loopback<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    LOOPBACK_PORT_0.iter().chain(extra).copied().collect()
}

const PUBLIC_LINE: &str = "Proxying ";
const API_LINE: &str = "Proxy API at ";
const METRICS_LINE: &str = "Serve metrics at ";
const REDIRECT_LINE: &str = "Added HTTP to HTTPS redirection from ";

/// The address after `marker` in edgeproxy's log: `Proxying http://127.0.0.1:41234 to …`,
/// `Proxy API at http://127.0.0.1:41235/api/routes`, `Added HTTP to HTTPS redirection from
/// 127.0.0.1:41236`.
fn logged_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.split_once("://").map_or(rest, |(_, after)| after);
    let addr = rest.split(|c: char| c == '/' || c.is_whitespace()).next()?;
    addr.parse().ok()
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Runs edgeproxy with `args` expecting it to exit on its own; returns (code, stdout+stderr).
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    run_to_exit_with_env(args, &[])
}

/// As `run_to_exit`, with environment variables set for the proxy.
pub fn run_to_exit_with_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.and_then(|s| s.code()), text)
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 client.

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends raw bytes (which must ask for `Connection: close`) and reads the response to EOF.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Some(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..i])
                .unwrap_or("0")
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[i + 2..i + 2 + size]);
        data = &data[i + 2 + size + 2..];
    }
    out
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    raw(addr, &bytes).unwrap_or_else(|| panic!("no response to {method} {target}"))
}

pub fn get(addr: SocketAddr, target: &str) -> Response {
    request(addr, "GET", target, &[], None)
}

// ---------------------------------------------------------------------------------------------
// Upstream servers.

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// An upstream on a real socket. By default it answers like CHP's test upstream: JSON with its
/// target, the route key it stands for, the request-target it received and the headers; as a
/// WebSocket server it sends `connected` and answers each message with JSON.
pub struct Upstream {
    pub target: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn echo(route_key: &str) -> Upstream {
        Self::with_handler(route_key, None)
    }

    pub fn with(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Upstream {
        Self::with_handler("/", Some(Arc::new(handler)))
    }

    fn with_handler(route_key: &str, handler: Option<Handler>) -> Upstream {
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        Self::serve(TestListener::Tcp(listener), None, target, route_key, handler)
    }

    /// An echo upstream on a UNIX socket; `target` is its `http+unix://` URL.
    pub fn echo_unix(route_key: &str, path: &Path) -> Upstream {
        let _ = std::fs::remove_file(path);
        let listener = runtime()
            .block_on(async { tokio::net::UnixListener::bind(path) })
            .unwrap();
        let target = format!("http+unix://{}", path.to_str().unwrap().replace('/', "%2F"));
        Self::serve(TestListener::Unix(listener), None, target, route_key, None)
    }

    /// An echo upstream behind TLS (the acceptor decides about client certificates).
    pub fn echo_tls(route_key: &str, acceptor: tokio_rustls::TlsAcceptor, host: &str) -> Upstream {
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let target = format!("https://{host}:{}", listener.local_addr().unwrap().port());
        Self::serve(TestListener::Tcp(listener), Some(acceptor), target, route_key, None)
    }

    /// Accepts on `listener` in the background and answers every connection.
    fn serve(
        listener: TestListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        target: String,
        route_key: &str,
        handler: Option<Handler>,
    ) -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(UpstreamState {
            target: target.clone(),
            key: route_key.to_owned(),
            handler,
            seen: seen.clone(),
        });
        let task = runtime().spawn(async move {
            loop {
                let (state, tls) = (state.clone(), tls.clone());
                match &listener {
                    TestListener::Tcp(l) => {
                        let Ok((s, _)) = l.accept().await else { continue };
                        tokio::spawn(async move {
                            match tls {
                                Some(acceptor) => {
                                    if let Ok(s) = acceptor.accept(s).await {
                                        serve_upstream(s, state).await;
                                    }
                                }
                                None => serve_upstream(s, state).await,
                            }
                        });
                    }
                    TestListener::Unix(l) => {
                        let Ok((s, _)) = l.accept().await else { continue };
                        tokio::spawn(serve_upstream(s, state));
                    }
                }
            }
        });
        Upstream { target, seen, task }
    }

    pub fn port(&self) -> u16 {
        self.target
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

enum TestListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

struct UpstreamState {
    target: String,
    key: String,
    handler: Option<Handler>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn serve_upstream<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: IO, state: Arc<UpstreamState>) {
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, hyper::Error>(answer(state, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

async fn answer(state: Arc<UpstreamState>, mut req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let url = req.uri().to_string();
    let method = req.method().to_string();
    let is_ws = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if is_ws && state.handler.is_none() {
        state.seen.lock().unwrap().push(Seen {
            method,
            url,
            headers,
            body: Vec::new(),
        });
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let path = state.key.clone();
        tokio::spawn(async move {
            use futures_util::{SinkExt, StreamExt};
            use tokio_tungstenite::tungstenite::Message;
            let Ok(upgraded) = on_upgrade.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let _ = ws.send(Message::text("connected")).await;
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    Message::Text(t) => Message::text(json!({ "path": path, "message": t.as_str() }).to_string()),
                    Message::Binary(b) => Message::binary(b),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
        return hyper::Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .header("x-upstream", "yes")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let seen = Seen {
        method,
        url,
        headers,
        body,
    };
    state.seen.lock().unwrap().push(seen.clone());
    let reply = match &state.handler {
        Some(h) => h(&seen),
        None => {
            let headers: BTreeMap<&str, &str> = seen.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let body = json!({
                "target": state.target, "path": state.key, "url": seen.url, "method": seen.method,
                "headers": headers, "body": String::from_utf8_lossy(&seen.body),
            });
            Reply::new(200, body.to_string()).header("content-type", "application/json")
        }
    };
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = hyper::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    resp.body(Full::new(Bytes::from(reply.body))).unwrap()
}

// ---------------------------------------------------------------------------------------------
// WebSocket client (blocking).

pub type Ws = tokio_tungstenite::tungstenite::WebSocket<TcpStream>;

pub fn ws_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), tokio_tungstenite::tungstenite::Error> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{addr}{path}");
    tokio_tungstenite::tungstenite::client::client(url.as_str(), stream).map_err(|e| match e {
        tokio_tungstenite::tungstenite::HandshakeError::Failure(e) => e,
        tokio_tungstenite::tungstenite::HandshakeError::Interrupted(_) => {
            tokio_tungstenite::tungstenite::Error::ConnectionClosed
        }
    })
}

pub fn ws_read_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("WebSocket read") {
            tokio_tungstenite::tungstenite::Message::Text(t) => return t.as_str().to_owned(),
            tokio_tungstenite::tungstenite::Message::Ping(_) | tokio_tungstenite::tungstenite::Message::Pong(_) => {
                continue;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Parses an ISO timestamp from the API into comparable milliseconds.
pub fn ms(iso: &str) -> i64 {
    proxy::timestamp::parse_iso(iso).unwrap_or_else(|| panic!("bad timestamp {iso}"))
}

/// Spawns edgeproxy with exactly `args` (no defaults added) and the token; the caller decides
/// when it is ready.
pub fn spawn_raw(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edgeproxy"))
        .args(args)
        .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `connect` succeeds, up to 10 s.
pub fn wait_until(mut connect: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connect() {
        assert!(Instant::now() < deadline, "timed out waiting for edgeproxy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like `raw`, over a UNIX socket.
pub fn raw_unix(path: &Path, request: &[u8]) -> Option<Response> {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// Runs a future in the background on the harness runtime (an embedded proxy's `serve`).
pub fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(f)
}

/// Runs a future on the harness runtime (for async clients such as hyper's HTTP/2).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}
