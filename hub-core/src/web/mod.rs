//! The hub's HTTP side: one listener, requests dispatched by path to the REST API
//! ([`api`]), the pages ([`pages`]) and the progress stream ([`progress_stream`]).
//!
//! Every response is built here or in those modules with the helpers below; nothing on this path
//! panics or unwraps on input: a bad request gets a status and a short message.

pub mod api;
pub mod caller;
pub mod cookies;
pub mod groups;
pub mod input;
pub mod oauth;
pub mod pages;
pub mod pagination;
pub mod progress_stream;
pub mod share_codes;
pub mod shares;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::hub::Hub;

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body the hub reads (API JSON, login forms).
const MAX_BODY: usize = 1 << 20;

/// A parsed request: what handlers need, with the body already read.
#[derive(Clone)]
pub struct Req {
    pub method: Method,
    /// The path below the hub's base prefix, without the leading `/`, percent-decoded per
    /// segment by the handlers that need names.
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// The query as it came, with its `?`, or "" without one.
    pub fn query_suffix(&self) -> String {
        self.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// One field of an `application/x-www-form-urlencoded` body (the first, if repeated).
    pub fn form_field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The body as JSON (`Null` when empty); the error is the message for a 400.
    pub fn json(&self) -> Result<Value, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| format!("Invalid JSON body: {e}"))
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the client wants JSON rather than a page (API clients, fetch calls).
    pub fn wants_json(&self) -> bool {
        self.header(header::ACCEPT)
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
    }
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An optional list of strings in a request body (`users`, `groups`, `scopes`, `roles`):
/// `Ok(None)` when absent or null, [`NotStrings`] when it is anything but a list of strings
/// (each caller says so in its own words).
pub fn optional_strings(body: &Value, key: &str) -> Result<Option<Vec<String>>, NotStrings> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .map(Some)
            .ok_or(NotStrings),
        Some(_) => Err(NotStrings),
    }
}

/// A body field that should have been a list of strings was not.
#[derive(Debug)]
pub struct NotStrings;

/// JupyterHub's error body: `{"status": 404, "message": "…"}`. A client error carries its
/// message for the dispatcher to log ([`Refused`]).
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = json(
        status,
        &serde_json::json!({"status": status.as_u16(), "message": message}),
    );
    if status.is_client_error() {
        r.extensions_mut().insert(Refused(message.to_owned()));
    }
    r
}

/// The message of a refused request, kept on its response so that [`handle`] logs each refusal
/// once, in one place, whichever handler refused it.
#[derive(Clone)]
struct Refused(String);

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut r = Response::new(full(page));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Pages load their script and style from the hub only; nothing inline runs.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'self'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut r = empty(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// How long a stopping hub lets the requests it has accepted finish. Long-lived ones (progress
/// streams) are told to end; a browser's EventSource reconnects, to another replica if any.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the hub on `listener` until `stop` completes, then stops accepting and lets the
/// requests in flight finish (up to [`DRAIN`]): a hub replica restarted in a rolling upgrade
/// fails no request it took.
pub async fn serve(hub: Arc<Hub>, listener: TcpListener, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors or a reset during accept: not fatal; try the next.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        let service = hyper::service::service_fn(move |req| {
            let hub = hub.clone();
            async move { Ok::<_, Infallible>(handle(hub, req).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, connections.shutdown()).await.is_err() {
        tracing::warn!(
            "requests still running {} s after the stop; ending them",
            DRAIN.as_secs()
        );
    }
}

async fn handle(hub: Arc<Hub>, request: Request<Incoming>) -> Response<Body> {
    let began = Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large or unreadable"),
    };
    let full_path = parts.uri.path();
    let Some(path) = full_path.strip_prefix(hub.base.as_str()).or_else(|| {
        // `/jhub` without its slash still means the hub.
        (full_path == hub.base.trim_end_matches('/')).then_some("")
    }) else {
        return html(
            StatusCode::NOT_FOUND,
            crate::pages::error(&pages::context(&hub, None, ""), 404, "Not under this hub's base URL"),
        );
    };
    let req = Req {
        method,
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let (handler, mut response) = route(&hub, &req).await;
    if let Some(Refused(why)) = response.extensions_mut().remove::<Refused>() {
        // The path only: a query may hold a token or a share code.
        tracing::info!(
            "refused {} /{}: {} {why}",
            req.method,
            req.path,
            response.status().as_u16()
        );
    }
    // Servers (jupyterhub-singleuser) read the hub's version from every answer.
    response.headers_mut().insert(
        "x-jupyterhub-version",
        HeaderValue::from_static(crate::hub::JUPYTERHUB_API_VERSION),
    );
    hub.metrics
        .request(req.method.as_str(), handler, response.status().as_u16())
        .record(began.elapsed().as_secs_f64());
    response
}

/// Dispatch by path. Returns the handler's name for the request metric.
async fn route(hub: &Arc<Hub>, req: &Req) -> (&'static str, Response<Body>) {
    let path = req.path.as_str();
    if path == "hub/health" || path == "hub/api/health" {
        return ("health", json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
    }
    if let Some(rest) = path.strip_prefix("hub/api") {
        return ("api", api::handle(hub, req, rest.trim_start_matches('/')).await);
    }
    if path == "hub/metrics" {
        return ("metrics", api::metrics(hub, req).await);
    }
    ("pages", pages::handle(hub, req).await)
}

/// Splits a path into percent-decoded segments; `None` if an escape does not decode
/// ([`input::path_segments`] says why).
pub fn segments(path: &str) -> Option<Vec<String>> {
    input::path_segments(path).ok()
}
