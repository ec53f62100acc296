//! Listeners and connection serving: binding (TCP, dual-stack, or UNIX socket), TLS, HTTP/1.1 and
//! HTTP/2 (ALPN and h2c), the connection cap, header/keep-alive timeouts, and graceful shutdown.
//! Every listener is bound ([`bind`]) before anything is served ([`Bound::serve`]), so a port that
//! cannot be bound stops the process with an error instead of running without it (CHP logs the
//! error and runs on without that listener; docs/compatibility.md), and port 0 is any free port,
//! read back from the bound listener.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use config::{Listen, ProxyConfig};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore, watch};

use crate::body::{ClientBody, ResponseBody};
use crate::client_head::ClientHead;
use crate::client_io::ClientIo;
use crate::h1_server::{self, Handover};
use crate::headers::forwarded::ClientInfo;
pub use crate::listener::Listener;
use crate::{Proxy, StartError, admin_api, pipeline, redirect, workers};

/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Public,
    Api,
    Metrics,
    Redirect,
}

impl std::fmt::Display for Role {
    /// As the flags name them (`--port`, `--api-port`, `--metrics-port`, `--redirect-port`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Public => "public",
            Role::Api => "admin API",
            Role::Metrics => "metrics",
            Role::Redirect => "redirect",
        })
    }
}

/// Shared by every accept loop: the stop signal, the open-connection count, and the cap.
pub struct Lifecycle {
    stop: watch::Sender<bool>,
    open: AtomicUsize,
    drained: Notify,
    cap: Arc<Semaphore>,
}

impl Lifecycle {
    pub fn new(max_connections: usize) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            stop: watch::channel(false).0,
            open: AtomicUsize::new(0),
            drained: Notify::new(),
            cap: Arc::new(Semaphore::new(max_connections)),
        })
    }

    /// Stops accepting, asks open connections to finish their current exchange, and waits up to
    /// `grace` for them.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let drained = async {
            while self.open.load(Ordering::Acquire) > 0 {
                let notified = self.drained.notified();
                if self.open.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(
                "{} connections still open after {grace:?}; closing them",
                self.open.load(Ordering::Acquire)
            );
        }
    }
}

struct OpenGuard<'a>(&'a Lifecycle);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// How long the accept loop waits after a failed accept before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// While accepting keeps failing, how often the log says so.
const ACCEPT_FAILURE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// A failing accept (EMFILE: out of file descriptors) fails again at every retry, 20 times a
/// second: the first failure is logged, then one line every [`ACCEPT_FAILURE_REPORT_EVERY`]
/// with how many there were, then one when accepting works again. Else an overloaded proxy
/// would flood its log when it can least afford to.
#[derive(Default)]
struct AcceptFailures {
    /// When the last failure line was written; `None` while accepting works.
    reported: Option<Instant>,
    /// Failures since that line.
    unreported: u64,
}

impl AcceptFailures {
    fn failed(&mut self, role: Role, e: &io::Error) {
        match self.reported {
            Some(at) if at.elapsed() < ACCEPT_FAILURE_REPORT_EVERY => self.unreported += 1,
            None => {
                tracing::error!(
                    "accept on {role:?} listener failed: {e}; retrying every {} ms",
                    ACCEPT_RETRY.as_millis()
                );
                self.reported = Some(Instant::now());
            }
            Some(_) => {
                let n = self.unreported + 1;
                tracing::error!("accept on {role:?} listener still failing: {e} ({n} times since the last report)");
                (self.reported, self.unreported) = (Some(Instant::now()), 0);
            }
        }
    }

    fn ended(&mut self, role: Role) {
        if self.reported.take().is_some() {
            tracing::info!("accept on {role:?} listener works again");
            self.unreported = 0;
        }
    }
}

/// Accepts connections on `listener` until shutdown and serves each as `role`.
pub async fn accept_loop(
    listener: Listener,
    role: Role,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: Arc<Proxy>,
    life: Arc<Lifecycle>,
) {
    let mut stop = life.stop.subscribe();
    let mut failures = AcceptFailures::default();
    loop {
        // Only the public listener is capped: the admin API must stay reachable under load.
        let permit = if role == Role::Public {
            tokio::select! {
                p = life.cap.clone().acquire_owned() => match p { Ok(p) => Some(p), Err(_) => return },
                _ = stop.changed() => return,
            }
        } else {
            None
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = stop.changed() => return,
        };
        let (io, addr) = match accepted {
            Ok(pair) => {
                failures.ended(role);
                pair
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                failures.failed(role, &e);
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let proxy = proxy.clone();
        let life = life.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            life.open.fetch_add(1, Ordering::AcqRel);
            let _open = OpenGuard(&life);
            proxy.metrics.open_connections.increment(1.0);
            match (role, io) {
                (Role::Public, io) => serve_public(io, tls, addr, &proxy, &life).await,
                (_, Accepted::Tcp(s)) => serve_maybe_tls(s, tls, addr, role, &proxy, &life).await,
                (_, Accepted::Unix(s)) => serve_maybe_tls(s, tls, addr, role, &proxy, &life).await,
            }
            proxy.metrics.open_connections.decrement(1.0);
            drop(permit);
        });
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<(Accepted, Option<IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Accepted::Tcp(s), Some(addr.ip())))
        }
        Listener::Unix(l, _) => Ok((Accepted::Unix(l.accept().await?.0), None)),
    }
}

/// The public listener: HTTP/1.x on our own server (`h1_server`), HTTP/2 (ALPN `h2`, or the
/// h2c preface) on hyper's.
async fn serve_public(
    io: Accepted,
    tls: Option<tokio_rustls::TlsAcceptor>,
    addr: Option<IpAddr>,
    proxy: &Arc<Proxy>,
    life: &Lifecycle,
) {
    let client = Arc::new(ClientInfo::new(addr, tls.is_some()));
    let io = match (io, tls) {
        (Accepted::Tcp(s), None) => ClientIo::Tcp(s),
        (Accepted::Unix(s), None) => ClientIo::Unix(s),
        (Accepted::Tcp(s), Some(tls)) => match handshake(&tls, s).await {
            Some(s) => ClientIo::Tls(Box::new(s)),
            None => return,
        },
        (Accepted::Unix(s), Some(tls)) => match handshake(&tls, s).await {
            Some(s) => ClientIo::TlsUnix(Box::new(s)),
            None => return,
        },
    };
    if io.negotiated_h2() {
        return serve(io, client, Role::Public, proxy, life).await;
    }
    let service = |head, body| pipeline::handle(proxy.clone(), client.clone(), head, ClientBody::H1(body));
    let keep_alive = proxy.settings.keep_alive_timeout;
    match h1_server::serve(io, service, keep_alive, life.stop.subscribe()).await {
        Some(Handover::H2c(io)) => serve(io, client, Role::Public, proxy, life).await,
        None => {}
    }
}

/// The TLS handshake, within a bounded time.
async fn handshake<IO>(tls: &tokio_rustls::TlsAcceptor, io: IO) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(io)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// The other listeners, on hyper: completes the TLS handshake first when the listener has TLS.
async fn serve_maybe_tls<IO>(
    io: IO,
    tls: Option<tokio_rustls::TlsAcceptor>,
    addr: Option<IpAddr>,
    role: Role,
    proxy: &Arc<Proxy>,
    life: &Lifecycle,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(ClientInfo::new(addr, tls.is_some()));
    match tls {
        None => serve(io, client, role, proxy, life).await,
        Some(tls) => {
            if let Some(s) = handshake(&tls, io).await {
                serve(s, client, role, proxy, life).await;
            }
        }
    }
}

/// Serves a connection with hyper (HTTP/1.1 and HTTP/2).
async fn serve<IO>(io: IO, client: Arc<ClientInfo>, role: Role, proxy: &Arc<Proxy>, life: &Lifecycle)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let keep_alive = proxy.settings.keep_alive_timeout;
    let proxy = proxy.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        route_to_role(role, proxy, client.clone(), req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // One contiguous write per message: cheaper than a gather write for the small heads
        // and bodies that dominate proxied traffic.
        .writev(false)
        // hyper's header timer also runs while a keep-alive connection waits for its next
        // request, so one setting bounds both idle time and slow headers.
        .header_read_timeout(keep_alive);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stop = life.stop.subscribe();
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

type ServiceResult = Result<Response<ResponseBody>, pipeline::Abort>;

async fn route_to_role(
    role: Role,
    proxy: Arc<Proxy>,
    client: Arc<ClientInfo>,
    req: Request<Incoming>,
) -> ServiceResult {
    match role {
        Role::Public => {
            let (parts, body) = req.into_parts();
            pipeline::handle(proxy, client, ClientHead::from_parts(parts), ClientBody::Hyper(body))
        }
        .await
        .map(with_header_map),
        Role::Api => Ok(unwrap_infallible(admin_api::handle(proxy, req).await)),
        Role::Metrics => Ok(metrics_response(&proxy, &req)),
        Role::Redirect => Ok(redirect::respond(&proxy.settings, &req)),
    }
}

/// hyper writes headers from the map only: relayed raw header lines go into it.
fn with_header_map(mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
    if let Some(raw) = resp.body_mut().take_relayed_headers() {
        raw.fill_map(resp.headers_mut());
    }
    resp
}

fn unwrap_infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// `GET /metrics` exactly (any method, no query) → Prometheus text; anything else → 404.
fn metrics_response(proxy: &Proxy, req: &Request<Incoming>) -> Response<ResponseBody> {
    if req.uri().path_and_query().map(|pq| pq.as_str()) != Some("/metrics") {
        let mut resp = Response::new(ResponseBody::full("Not Found"));
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
        return resp;
    }
    let mut resp = Response::new(ResponseBody::full(proxy.metrics.render()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Listeners an embedder bound itself, served instead of binding the configured address: a
/// port kept across restarts of the proxy in one process is never free in between, so no other
/// process can take it (tests that stop and start a proxy on the same port). Each must already
/// listen, as `std::net::TcpListener::bind` leaves it; its backlog is the one it was given.
#[derive(Debug, Default)]
pub struct Prebound {
    pub public: Option<std::net::TcpListener>,
    pub api: Option<std::net::TcpListener>,
}

/// Every listener of a configuration, bound and with its certificates loaded, not yet served:
/// what [`bind`] returns. Its addresses are the real ones, port 0 replaced by the port the system
/// chose, so an embedder (or a test) binds port 0 and reads the port back instead of guessing a
/// free one.
pub struct Bound {
    public: Listener,
    /// The public listener's copies for the other workers (`--workers`), served on threads of
    /// their own.
    public_for_workers: Vec<crate::listener::WorkerListener>,
    api: Listener,
    metrics: Option<Listener>,
    redirect: Option<Listener>,
    public_tls: Option<tokio_rustls::TlsAcceptor>,
    api_tls: Option<tokio_rustls::TlsAcceptor>,
    config: ProxyConfig,
}

/// Loads the certificates, then binds every listener of `config` (a configuration error is
/// reported before any port is taken; a port that cannot be bound is an error, not a gap).
pub async fn bind(config: &ProxyConfig) -> Result<Bound, StartError> {
    bind_with(config, Prebound::default()).await
}

/// As [`bind`], with the listeners in `prebound` used for their roles instead of the addresses
/// in `config`.
pub async fn bind_with(config: &ProxyConfig, prebound: Prebound) -> Result<Bound, StartError> {
    // Certificates first: a bad file is a configuration error, reported before any port is taken.
    let public_tls = match config.public_tls.enabled() {
        true => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
            &config.public_tls,
            config.tls_versions,
            &[b"h2", b"http/1.1"],
        )?)),
        false => None,
    };
    let api_tls = match config.api_tls.enabled() {
        true => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
            &config.api_tls,
            config.tls_versions,
            &[b"http/1.1"],
        )?)),
        false => None,
    };
    let bind = |listen: Listen, role: Role, prebound: Option<std::net::TcpListener>| async move {
        let bound = match prebound {
            Some(listener) => Listener::from_std(listener),
            None => Listener::bind(&listen).await,
        };
        bound.map_err(|error| StartError::Bind {
            role,
            listen: listen.to_string(),
            error,
        })
    };
    let prebound_roles = (prebound.public.is_some(), prebound.api.is_some());
    let public = bind(config.public.clone(), Role::Public, prebound.public).await?;
    let api = bind(config.api.clone(), Role::Api, prebound.api).await?;
    let metrics = match &config.metrics {
        Some(l) => Some(bind(l.clone(), Role::Metrics, None).await?),
        None => None,
    };
    let redirect = match config.redirect_port {
        Some(port) => Some(
            bind(
                Listen::Tcp {
                    host: listen_host(&config.public),
                    port,
                },
                Role::Redirect,
                None,
            )
            .await?,
        ),
        None => None,
    };
    let mut config = config.clone();
    config.public = as_bound(&config.public, &public, prebound_roles.0);
    config.api = as_bound(&config.api, &api, prebound_roles.1);
    if let (Some(listen), Some(m)) = (&config.metrics, &metrics) {
        config.metrics = Some(as_bound(listen, m, false));
    }
    if let Some(addr) = redirect.as_ref().and_then(Listener::local_addr) {
        config.redirect_port = Some(addr.port());
    }
    // The other workers' handles on the public listener.
    let workers = config.workers.unwrap_or(1).saturating_sub(1);
    let public_for_workers = (0..workers)
        .map(|_| public.for_worker())
        .collect::<io::Result<Vec<_>>>()
        .map_err(public_listener_error(&config))?;
    Ok(Bound {
        public,
        public_for_workers,
        api,
        metrics,
        redirect,
        public_tls,
        api_tls,
        config,
    })
}

/// The configured address with the port the system chose; for a listener the embedder bound,
/// its own address.
/// The error of a public listener that could be bound but not shared with the worker event
/// loops (a duplicated descriptor, a thread that would not start): named like a bind error.
fn public_listener_error(config: &ProxyConfig) -> impl FnOnce(io::Error) -> StartError + '_ {
    move |error| StartError::Bind {
        role: Role::Public,
        listen: config.public.to_string(),
        error,
    }
}

fn as_bound(configured: &Listen, listener: &Listener, prebound: bool) -> Listen {
    match (configured, listener.local_addr()) {
        (Listen::Tcp { host, .. }, Some(addr)) if !prebound => Listen::Tcp {
            host: host.clone(),
            port: addr.port(),
        },
        (_, Some(addr)) => Listen::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        },
        (configured, None) => configured.clone(),
    }
}

impl Bound {
    /// The public listener's address; `None` on a UNIX socket.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public.local_addr()
    }

    /// The admin API's address; `None` on a UNIX socket.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.local_addr()
    }

    /// The metrics listener's address, when metrics are on over TCP.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(Listener::local_addr)
    }

    /// The HTTP-to-HTTPS redirect listener's address, when there is one.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(Listener::local_addr)
    }

    /// The configuration as bound: every TCP port 0 replaced by the port the system chose. Build
    /// the [`Proxy`] from it when a port was 0 and redirects are on, so that they name the real
    /// HTTPS port.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Logs the addresses (configurable-http-proxy's lines, with the bound ports), serves until
    /// `shutdown` resolves, then drains. The listeners are closed when it returns.
    pub async fn serve(self, proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Bound {
            public,
            public_for_workers,
            api,
            metrics,
            redirect,
            public_tls,
            api_tls,
            config,
        } = self;
        if let Some(pid_file) = &config.pid_file {
            std::fs::write(pid_file, std::process::id().to_string())
                .map_err(|e| StartError::PidFile(pid_file.display().to_string(), e))?;
        }

        let scheme = if public_tls.is_some() { "https" } else { "http" };
        tracing::info!(
            "Proxying {scheme}://{} to {}",
            listener_name(&public, &config.public),
            config.default_target.as_deref().unwrap_or("(no default)")
        );
        tracing::info!(
            "Proxy API at {}://{}/api/routes",
            if api_tls.is_some() { "https" } else { "http" },
            listener_name(&api, &config.api)
        );
        if let Some(m) = &metrics {
            tracing::info!(
                "Serve metrics at http://{}/metrics",
                listener_name(m, config.metrics.as_ref().unwrap_or(&config.public))
            );
        }
        if let Some(r) = &redirect {
            tracing::info!(
                "Added HTTP to HTTPS redirection from {}",
                r.local_addr().map_or_else(String::new, |a| a.to_string())
            );
        }

        if let Some(auth) = &proxy.auth {
            auth.start();
        }
        proxy.start_store();
        let life = Lifecycle::new(config.max_connections);
        let serve_public = {
            let (tls, proxy, life) = (public_tls.clone(), proxy.clone(), life.clone());
            let keep_alive = config.keep_alive_timeout;
            move |listener: Listener| {
                let (tls, proxy, life) = (tls.clone(), proxy.clone(), life.clone());
                async move {
                    tokio::spawn(keep_timer_armed(keep_alive));
                    accept_loop(listener, Role::Public, tls, proxy, life).await;
                }
            }
        };
        let workers = workers::start(public_for_workers, serve_public).map_err(public_listener_error(&config))?;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(keep_timer_armed(config.keep_alive_timeout)));
        tasks.push(tokio::spawn(accept_loop(
            public,
            Role::Public,
            public_tls,
            proxy.clone(),
            life.clone(),
        )));
        tasks.push(tokio::spawn(accept_loop(
            api,
            Role::Api,
            api_tls,
            proxy.clone(),
            life.clone(),
        )));
        if let Some(m) = metrics {
            tasks.push(tokio::spawn(accept_loop(
                m,
                Role::Metrics,
                None,
                proxy.clone(),
                life.clone(),
            )));
            let proxy = proxy.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::metrics::Metrics::UPKEEP_INTERVAL);
                loop {
                    tick.tick().await;
                    proxy.metrics.run_upkeep();
                }
            }));
        }
        if let Some(r) = redirect {
            tasks.push(tokio::spawn(accept_loop(
                r,
                Role::Redirect,
                None,
                proxy.clone(),
                life.clone(),
            )));
        }

        shutdown.await;
        life.shutdown(config.shutdown_grace).await;
        workers.stop().await;
        // Waited for, so that the listeners are closed when this returns.
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        if let Some(pid_file) = &config.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
        Ok(())
    }
}

/// Binds every listener of `config`, then serves until `shutdown` resolves, then drains: [`bind`]
/// then [`Bound::serve`]. `proxy` was built from `config`; with a port 0 in it, redirects would
/// name port 0: build the proxy from [`Bound::config`] instead.
pub async fn run(
    proxy: Arc<Proxy>,
    config: &ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    bind(config).await?.serve(proxy, shutdown).await
}

/// Keeps one timer pending at all times, due sooner than any connection's header timer.
///
/// hyper starts a header-read timer for every request. When tokio's timer wheel is empty as the
/// runtime goes to sleep (every connection is waiting on an upstream, say), the next timer to be
/// inserted wakes the sleeping driver through its eventfd: a `write` system call and an extra
/// `epoll_wait` for a quarter of all requests under load. With a timer always due earlier, a new
/// one never moves the wake-up forward, and that costs one wake-up a second.
async fn keep_timer_armed(keep_alive: Duration) {
    let period = (keep_alive / 2).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

fn listen_host(listen: &Listen) -> String {
    match listen {
        Listen::Tcp { host, .. } => host.clone(),
        Listen::Unix(_) => String::new(),
    }
}

fn listener_name(listener: &Listener, listen: &Listen) -> String {
    listener
        .local_addr()
        .map_or_else(|| listen.to_string(), |a| a.to_string())
}
