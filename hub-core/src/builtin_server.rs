//! The built-in single-user server (`edgehub singleuser --port N`): a page, a status API and a
//! WebSocket echo under the server's prefix, so `edgehub up` works on a machine with no Python
//! packages. It keeps enough of jupyterhub-singleuser's contract for the hub to treat it like the
//! real thing: it reads `JUPYTERHUB_SERVICE_PREFIX` and `JUPYTERHUB_USER`, answers `{prefix}api`
//! (the hub's readiness check), and reports activity to `JUPYTERHUB_ACTIVITY_URL`.
//!
//! It runs no user code and keeps no data, so it has nothing to flush on shutdown: SIGTERM or
//! SIGINT ends it at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use proxy::timestamp::{format_iso, now_ms};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::http_client::{self, ClientError, HttpUrl};

/// `edgehub singleuser` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinArgs {
    /// Port to listen on.
    pub port: u16,
    /// Address to listen on; the local spawner's servers use `127.0.0.1`.
    pub ip: String,
}

/// The activity report interval when `JUPYTERHUB_ACTIVITY_INTERVAL` is unset, as
/// jupyterhub-singleuser's.
const DEFAULT_ACTIVITY_INTERVAL: Duration = Duration::from_secs(300);
/// One activity report, connect to response, may take this long.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest WebSocket message echoed; an echo has no use for tungstenite's 64 MiB default.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Serves until SIGTERM or SIGINT. Reads its prefix (default `/`), user and activity settings
/// from the `JUPYTERHUB_*` environment.
pub async fn run(args: BuiltinArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let env = |name: &str| std::env::var(name).ok();
    let prefix = normalize_prefix(env("JUPYTERHUB_SERVICE_PREFIX").as_deref().unwrap_or("/"));
    let user = env("JUPYTERHUB_USER").unwrap_or_else(|| "an unknown user".to_owned());
    let activity = match ActivityTarget::from_env(env) {
        Ok(target) => target,
        Err(e) => {
            tracing::warn!(error = %e, "activity reporting is off");
            None
        }
    };

    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let listener = tokio::net::TcpListener::bind((args.ip.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.ip, args.port))?;
    let local = listener.local_addr().context("reading the listening address")?;

    let state = Arc::new(ServerState::new(prefix, &user));
    if let Some(target) = activity {
        tokio::spawn(report_activity(target, state.clone()));
    }
    println!("edgehub built-in server for {user} at http://{local}{}", state.prefix);

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, state.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, usually; pausing lets connections close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::info!("built-in server stopping");
    Ok(())
}

/// What every request reads, and what the status API reports.
struct ServerState {
    /// Starts and ends with `/`.
    prefix: String,
    page: Bytes,
    started_ms: u64,
    last_activity_ms: AtomicU64,
    /// Open WebSocket connections (jupyter_server counts its kernel sockets the same way).
    connections: AtomicUsize,
}

impl ServerState {
    fn new(prefix: String, user: &str) -> ServerState {
        let started_ms = now_ms();
        ServerState {
            page: Bytes::from(home_page(user, &prefix)),
            prefix,
            started_ms,
            last_activity_ms: AtomicU64::new(started_ms),
            connections: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.last_activity_ms.fetch_max(now_ms(), Ordering::Relaxed);
    }

    fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }

    fn status_json(&self) -> String {
        serde_json::json!({
            "version": "edgehub-builtin",
            "started": format_iso(self.started_ms),
            "last_activity": format_iso(self.last_activity_ms()),
            "connections": self.connections.load(Ordering::Relaxed),
            "kernels": 0,
        })
        .to_string()
    }
}

/// Counts one open WebSocket for as long as it lives.
struct OpenConnection(Arc<ServerState>);

impl OpenConnection {
    fn new(state: Arc<ServerState>) -> OpenConnection {
        state.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(state)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<ServerState>) {
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(req, state)) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        // The timer arms hyper's header read timeout, so a silent client cannot hold a socket.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What a path under the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The home page, also at the paths Jupyter's UIs live at, so links made for Jupyter land
    /// somewhere useful.
    Page,
    /// `{prefix}api` and `{prefix}api/status`.
    Status,
    /// `{prefix}ws`, the echo.
    WebSocket,
    /// The prefix without its final `/`: redirected to the prefix.
    AddSlash,
    NotFound,
}

fn route(path: &str, prefix: &str) -> Route {
    let Some(rest) = path.strip_prefix(prefix) else {
        return if prefix.len() > 1 && prefix.strip_suffix('/') == Some(path) {
            Route::AddSlash
        } else {
            Route::NotFound
        };
    };
    match rest {
        "" | "tree" | "lab" => Route::Page,
        _ if rest.starts_with("tree/") || rest.starts_with("lab/") => Route::Page,
        "api" | "api/" | "api/status" => Route::Status,
        "ws" => Route::WebSocket,
        _ => Route::NotFound,
    }
}

fn respond(mut req: Request<Incoming>, state: Arc<ServerState>) -> Response<Full<Bytes>> {
    let route = route(req.uri().path(), &state.prefix);
    // Status checks are monitoring, not use: like jupyter_server's status handler, they leave
    // last_activity alone, or a health check would keep an idle server from being culled.
    if route != Route::Status {
        state.touch();
    }
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    match route {
        Route::Page | Route::Status if !readable => method_not_allowed(),
        Route::Page => html(StatusCode::OK, state.page.clone()),
        Route::Status => {
            let mut response = Response::new(Full::new(Bytes::from(state.status_json())));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Route::WebSocket => upgrade_to_echo(&mut req, state),
        Route::AddSlash => match HeaderValue::from_str(&state.prefix) {
            Ok(location) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::FOUND;
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Err(_) => not_found(req.uri()),
        },
        Route::NotFound => not_found(req.uri()),
    }
}

/// Answers a WebSocket handshake (RFC 6455 §4.2) and echoes on the upgraded connection.
fn upgrade_to_echo(req: &mut Request<Incoming>, state: Arc<ServerState>) -> Response<Full<Bytes>> {
    let Some(accept) = websocket_accept(req.method(), req.headers()) else {
        let mut response = text(StatusCode::BAD_REQUEST, "expected a WebSocket handshake (version 13)\n");
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => echo(TokioIo::new(upgraded), state).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The `Sec-WebSocket-Accept` for a valid opening handshake: a GET with `Upgrade: websocket`,
/// `Connection: upgrade`, `Sec-WebSocket-Version: 13` and a key (RFC 6455 §4.2.1).
fn websocket_accept(method: &Method, headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let valid = method == Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
        && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| valid)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept).ok()
}

async fn echo<S>(io: S, state: Arc<ServerState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _open = OpenConnection::new(state.clone());
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    // Pings are answered and a close is returned by tungstenite itself while reading; the loop
    // reads on after a close so that the reply gets flushed, and ends when the stream does.
    while let Some(message) = ws.next().await {
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket closed with an error");
                break;
            }
        };
        state.touch();
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

fn html(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are served here\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn not_found(uri: &Uri) -> Response<Full<Bytes>> {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\
         <body><h1>404 Not Found</h1><p><code>{}</code> is not a page of this server.</p></body></html>\n",
        crate::pages::escape(uri.path())
    );
    html(StatusCode::NOT_FOUND, body)
}

fn home_page(user: &str, prefix: &str) -> String {
    // The prefix goes into a script as a JSON string; `<` is escaped too so that no `</script>`
    // can end the script early.
    let prefix_js = serde_json::Value::from(prefix).to_string().replace('<', "\\u003c");
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgehub · {user}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#222}}
code{{background:#f0f0f0;padding:0 .25em;border-radius:3px}}
.note{{border-left:4px solid #f37524;padding:.25rem 1rem;background:#fff7f0}}
</style></head><body>
<h1>edgehub built-in server for {user}</h1>
<p>This page comes from your own server, at <code>{prefix}</code>.</p>
<p>WebSocket echo: <span id="ws"><em>connecting…</em></span></p>
<p class="note">This is edgehub's built-in server: it runs no notebooks. To get Jupyter, install it
where edgehub runs, with <code>pip install jupyterhub jupyterlab</code>, then stop this server from
the hub's home page and start it again.</p>
<script>
const out = document.getElementById("ws");
const prefix = {prefix_js};
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + prefix + "ws");
ws.onopen = () => {{
  const sent = performance.now();
  ws.onmessage = (e) => {{
    out.textContent = `"${{e.data}}" came back in ${{(performance.now() - sent).toFixed(1)}} ms`;
    ws.close();
  }};
  ws.send("hello");
}};
ws.onerror = () => {{ out.textContent = "the WebSocket failed"; }};
</script>
</body></html>
"#,
        user = crate::pages::escape(user),
        prefix = crate::pages::escape(prefix),
    )
}

/// `/`, `/user/alice/`: a leading and a trailing slash, whatever the environment gave.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// Where and how activity is reported (jupyterhub-singleuser's `JUPYTERHUB_ACTIVITY_URL`).
#[derive(Debug)]
struct ActivityTarget {
    url: HttpUrl,
    /// `token <JUPYTERHUB_API_TOKEN>`, checked to be usable in a header.
    authorization: String,
    server_name: String,
    interval: Duration,
}

#[derive(Debug, thiserror::Error)]
enum ActivityConfigError {
    #[error("JUPYTERHUB_ACTIVITY_URL {url:?} is not an http:// URL with a host")]
    Url { url: String },
    #[error("JUPYTERHUB_API_TOKEN is not usable in a header")]
    Token,
    #[error("JUPYTERHUB_ACTIVITY_INTERVAL {0:?} is not a number of seconds")]
    Interval(String),
}

impl ActivityTarget {
    /// `None` when the hub asked for no reports: no URL or token, or an interval of 0.
    fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<ActivityTarget>, ActivityConfigError> {
        let nonempty = |name| env(name).filter(|v| !v.is_empty());
        let (Some(url_text), Some(token)) = (nonempty("JUPYTERHUB_ACTIVITY_URL"), nonempty("JUPYTERHUB_API_TOKEN"))
        else {
            return Ok(None);
        };
        let interval = match nonempty("JUPYTERHUB_ACTIVITY_INTERVAL") {
            None => DEFAULT_ACTIVITY_INTERVAL,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(0) => return Ok(None),
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => return Err(ActivityConfigError::Interval(text)),
            },
        };
        // TLS is not spoken here: edgehub's hub is reached over the local network.
        let url = HttpUrl::parse(&url_text).map_err(|_| ActivityConfigError::Url { url: url_text.clone() })?;
        let authorization = format!("token {token}");
        HeaderValue::from_str(&authorization).map_err(|_| ActivityConfigError::Token)?;
        Ok(Some(ActivityTarget {
            authorization,
            server_name: env("JUPYTERHUB_SERVER_NAME").unwrap_or_default(),
            interval,
            url,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the hub answered {0}")]
    Status(StatusCode),
}

/// Posts the last activity every interval in which there was some. Failures are logged and the
/// report is retried at the next tick; they never stop the server.
async fn report_activity(target: ActivityTarget, state: Arc<ServerState>) {
    let mut reported = state.started_ms;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + target.interval, target.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let last = state.last_activity_ms();
        if last <= reported {
            continue;
        }
        match post_activity(&target, last).await {
            Ok(()) => reported = last,
            Err(e) => tracing::warn!(url = %target.url, error = %e, "could not report activity to the hub"),
        }
    }
}

async fn post_activity(target: &ActivityTarget, last_ms: u64) -> Result<(), ReportError> {
    let body = activity_body(&target.server_name, last_ms).into_bytes();
    let headers = [(header::AUTHORIZATION, target.authorization.clone())];
    let reply = http_client::call(Method::POST, &target.url, &headers, Some(body), REPORT_TIMEOUT).await?;
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(ReportError::Status(reply.status))
    }
}

/// jupyterhub-singleuser's activity body: the server's last activity, and the user's.
fn activity_body(server_name: &str, last_ms: u64) -> String {
    let when = format_iso(last_ms);
    serde_json::json!({
        "servers": { server_name: { "last_activity": when } },
        "last_activity": when,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn routes_under_a_prefix() {
        let prefix = "/user/alice/";
        let cases = [
            ("/user/alice/", Route::Page),
            ("/user/alice/tree", Route::Page),
            ("/user/alice/tree/notebooks/a.ipynb", Route::Page),
            ("/user/alice/lab", Route::Page),
            ("/user/alice/lab/workspaces/x", Route::Page),
            ("/user/alice/api", Route::Status),
            ("/user/alice/api/", Route::Status),
            ("/user/alice/api/status", Route::Status),
            ("/user/alice/ws", Route::WebSocket),
            ("/user/alice", Route::AddSlash),
            ("/user/alice/treehouse", Route::NotFound),
            ("/user/alice/api/kernels", Route::NotFound),
            ("/user/alice/ws/x", Route::NotFound),
            ("/user/alice2/", Route::NotFound),
            ("/user/bob/", Route::NotFound),
            ("/", Route::NotFound),
            ("/ws", Route::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(route(path, prefix), want, "{path}");
        }
        assert_eq!(route("/", "/"), Route::Page);
        assert_eq!(route("/ws", "/"), Route::WebSocket);
        assert_eq!(route("/elsewhere", "/"), Route::NotFound);
    }

    #[test]
    fn prefixes_get_both_slashes() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/user/alice/", "/user/alice/"),
            ("/user/alice", "/user/alice/"),
            ("user/alice", "/user/alice/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_prefix(input), want, "{input:?}");
        }
    }

    #[test]
    fn the_page_escapes_what_it_is_given() {
        let page = home_page("<b>&\"mallory'", "/user/x</script>/");
        assert!(page.contains("for &lt;b&gt;&amp;&quot;mallory&#39;</h1>"), "{page}");
        assert!(!page.contains("x</script>"), "{page}");
        assert!(page.contains(r#"const prefix = "/user/x\u003c/script>/";"#), "{page}");
    }

    #[test]
    fn websocket_handshakes_are_checked() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        let good = [
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        // RFC 6455 §1.3's example.
        assert_eq!(
            websocket_accept(&Method::GET, &headers(&good)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(websocket_accept(&Method::POST, &headers(&good)).is_none());
        for missing in 0..good.len() {
            let mut partial = good.to_vec();
            partial.remove(missing);
            assert!(
                websocket_accept(&Method::GET, &headers(&partial)).is_none(),
                "{missing}"
            );
        }
        let mut old = good.to_vec();
        old[2] = ("sec-websocket-version", "8");
        assert!(websocket_accept(&Method::GET, &headers(&old)).is_none());
    }

    #[test]
    fn activity_body_is_jupyterhubs_shape() {
        let body: serde_json::Value = serde_json::from_str(&activity_body("lab2", 1_700_000_000_123)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "servers": {"lab2": {"last_activity": "2023-11-14T22:13:20.123Z"}},
                "last_activity": "2023-11-14T22:13:20.123Z",
            })
        );
    }

    #[test]
    fn activity_target_from_the_environment() {
        let target = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            ActivityTarget::from_env(move |name| map.get(name).cloned())
        };
        let url = (
            "JUPYTERHUB_ACTIVITY_URL",
            "http://127.0.0.1:8081/hub/api/users/alice/activity",
        );
        let token = ("JUPYTERHUB_API_TOKEN", "abc");

        assert!(target(&[]).unwrap().is_none());
        assert!(target(&[url]).unwrap().is_none());
        assert!(
            target(&[url, token, ("JUPYTERHUB_ACTIVITY_INTERVAL", "0")])
                .unwrap()
                .is_none()
        );

        let t = target(&[url, token]).unwrap().unwrap();
        assert_eq!(t.url.authority, "127.0.0.1:8081");
        assert_eq!(t.authorization, "token abc");
        assert_eq!(t.server_name, "");
        assert_eq!(t.interval, DEFAULT_ACTIVITY_INTERVAL);

        let t = target(&[
            ("JUPYTERHUB_ACTIVITY_URL", "http://[::1]/activity"),
            token,
            ("JUPYTERHUB_ACTIVITY_INTERVAL", "7"),
            ("JUPYTERHUB_SERVER_NAME", "lab2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.url.authority.as_str(), t.url.path.as_str()),
            ("[::1]:80", "/activity")
        );
        assert_eq!(t.interval, Duration::from_secs(7));
        assert_eq!(t.server_name, "lab2");

        for bad_url in ["https://hub/activity", "/hub/activity", "not a url"] {
            let err = target(&[("JUPYTERHUB_ACTIVITY_URL", bad_url), token]).unwrap_err();
            assert!(matches!(err, ActivityConfigError::Url { .. }), "{bad_url}: {err}");
        }
        let err = target(&[url, token, ("JUPYTERHUB_ACTIVITY_INTERVAL", "soon")]).unwrap_err();
        assert!(matches!(err, ActivityConfigError::Interval(_)), "{err}");
        let err = target(&[url, ("JUPYTERHUB_API_TOKEN", "a\nb")]).unwrap_err();
        assert!(matches!(err, ActivityConfigError::Token), "{err}");
    }
}
