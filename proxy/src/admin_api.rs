//! The configurable-http-proxy REST API (docs/routing.md#admin-api), served on the API listener.
//!
//! Dispatch runs in CHP's order: path (404), method (405), path decoding (400, where CHP hangs),
//! POST body parsing (400, before auth, as CHP), token (403), handler. Bodies are accepted
//! whatever their Content-Type, since JupyterHub 6 sends `text/plain`.
//!
//! One extension for hubs that change many routes at once: `POST /api/batch` with
//! `{"replace": bool, "remove": [key, ...], "add": {key: data, ...}}` validates everything first
//! and then applies it as one table swap (a proxy never serves half a batch).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::Proxy;
use crate::body::ResponseBody;
use crate::headers::secret::constant_time_eq;
use crate::request_path::{normalize_route_key, percent_decode, segments};
use crate::route_store::{Change, StoreUnavailable};
use crate::timestamp::parse_iso;

/// Largest request body the API reads (a batch of 100,000 routes is about 10 MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

enum Endpoint<'a> {
    /// `/api/routes` followed by this suffix (`""` or starting with `/`).
    Routes(&'a str),
    Batch,
}

pub async fn handle(proxy: Arc<Proxy>, req: Request<Incoming>) -> Result<Response<ResponseBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = dispatch(&proxy, req).await;
    let status = resp.status().as_u16();
    proxy.metrics.api_status(status);
    // Reads are routine: a hub polls the table every few seconds to reconcile it and collect
    // activity, and a line for each would bury the changes. Those stay at INFO, as in CHP.
    match status {
        0..400 if method == Method::GET => tracing::debug!("{status} {method} {path}"),
        0..400 => tracing::info!("{status} {method} {path}"),
        400..500 => tracing::warn!("{status} {method} {path}"),
        _ => tracing::error!("{status} {method} {path}"),
    }
    Ok(resp)
}

async fn dispatch(proxy: &Proxy, req: Request<Incoming>) -> Response<ResponseBody> {
    let path = req.uri().path().to_owned();
    // For load balancers and orchestrators: no token, like the public `/_chp_healthz`.
    if path == READY_PATH {
        return ready(proxy);
    }
    let endpoint = match path.strip_prefix("/api/routes") {
        Some(suffix) if suffix.is_empty() || suffix.starts_with('/') => Endpoint::Routes(suffix),
        _ if path == "/api/batch" => Endpoint::Batch,
        _ => return text(StatusCode::NOT_FOUND, "Not Found"),
    };
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::POST | Method::DELETE)
        || (matches!(endpoint, Endpoint::Batch) && method != Method::POST)
    {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method not supported");
    }
    let key = match endpoint {
        Endpoint::Routes("") => None,
        Endpoint::Routes(suffix) => match percent_decode(suffix) {
            Ok(decoded) => Some(normalize_route_key(&decoded)),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("Invalid route path: {e}")),
        },
        Endpoint::Batch => None,
    };
    let authorized = is_authorized(proxy.auth_token.as_deref(), req.headers().get(AUTHORIZATION));
    let query = req.uri().query().map(str::to_owned);

    if method == Method::POST {
        let body = match read_json(req.into_body()).await {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        if !authorized {
            return forbidden();
        }
        return match endpoint {
            Endpoint::Batch => apply_batch(proxy, body).await,
            Endpoint::Routes(_) => add_route(proxy, key.as_deref().unwrap_or("/"), body).await,
        };
    }
    if !authorized {
        return forbidden();
    }
    match (method, key) {
        (Method::GET, None) => list_routes(proxy, query.as_deref()).await,
        (Method::GET, Some(key)) if key == "/" && path.ends_with("/api/routes/") => {
            list_routes(proxy, query.as_deref()).await
        }
        (Method::GET, Some(key)) => get_route(proxy, &key).await,
        (Method::DELETE, Some(key)) => delete_route(proxy, &key).await,
        // CHP's handler crashes here and never answers (docs/compatibility.md).
        (Method::DELETE, None) => text(
            StatusCode::BAD_REQUEST,
            "DELETE needs a route path, e.g. /api/routes/user/alice (use /api/routes/ for the root route)",
        ),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not supported"),
    }
}

/// CHP's rule: the header must contain a match of `token\s+(\S+)` (unanchored, case-sensitive)
/// whose capture equals the token. Compared in constant time.
pub fn is_authorized(token: Option<&str>, header: Option<&HeaderValue>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    first_token_capture(value).is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// The capture of the leftmost match of `token\s+(\S+)`.
fn first_token_capture(value: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = value[from..].find("token") {
        let after = &value[from + i + "token".len()..];
        let rest = after.trim_start();
        if rest.len() < after.len() && !rest.is_empty() {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            return Some(&rest[..end]);
        }
        from += i + 1;
    }
    None
}

async fn read_json(body: Incoming) -> Result<Value, Response<ResponseBody>> {
    let bytes: Bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Body larger than {MAX_BODY} bytes"),
            ));
        }
        Err(e) => return Err(text(StatusCode::BAD_REQUEST, &format!("Body could not be read: {e}"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| text(StatusCode::BAD_REQUEST, &format!("Body not valid JSON: {e}")))
}

/// Validates a POSTed route body: a JSON object whose `target` is a string. CHP turns falsy
/// bodies (`null`, `false`, `0`, `""`) into `{}`, which then fails the same check.
fn route_data(body: Value) -> Result<Map<String, Value>, &'static str> {
    match body {
        Value::Object(map) if matches!(map.get("target"), Some(Value::String(_))) => Ok(map),
        _ => Err("Must specify 'target' as string"),
    }
}

async fn add_route(proxy: &Proxy, key: &str, body: Value) -> Response<ResponseBody> {
    let data = match route_data(body) {
        Ok(d) => d,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let target = data
        .get("target")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    tracing::info!("Adding route {key} -> {target}");
    let change = Change::Set {
        key: key.to_owned(),
        data: stored_data(key, data, proxy.settings.host_routing),
    };
    if let Err(e) = write(proxy, change).await {
        return unavailable(e);
    }
    proxy.metrics.api_route_add.increment(1);
    tracing::info!("Route added {key} -> {target}");
    empty(StatusCode::CREATED)
}

/// The data stored for `key`: any client-supplied `last_activity` is dropped (the route's own
/// clock replaces it), and under host routing the key's first segment is recorded as `host`.
fn stored_data(key: &str, mut data: Map<String, Value>, host_routing: bool) -> Map<String, Value> {
    data.remove("last_activity");
    if host_routing
        && key != "/"
        && let Some(host) = segments(key).next()
    {
        data.insert("host".to_owned(), Value::String(host.to_owned()));
    }
    data
}

/// Makes `change` through the store and keeps the route gauge current.
async fn write(proxy: &Proxy, change: Change) -> Result<crate::route_store::Applied, StoreUnavailable> {
    let applied = proxy.store.write(&proxy.routes, change).await?;
    proxy.metrics.routes.set(applied.len as f64);
    Ok(applied)
}

/// 503: the store could not take the change, so nothing changed (and nothing was acknowledged).
fn unavailable(e: StoreUnavailable) -> Response<ResponseBody> {
    tracing::error!("{e}");
    text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

async fn delete_route(proxy: &Proxy, key: &str) -> Response<ResponseBody> {
    proxy.metrics.api_route_delete.increment(1);
    let change = Change::Delete { key: key.to_owned() };
    match write(proxy, change).await {
        Ok(applied) if applied.removed > 0 => {
            tracing::info!("Removing route {key}");
            empty(StatusCode::NO_CONTENT)
        }
        Ok(_) => empty(StatusCode::NOT_FOUND),
        Err(e) => unavailable(e),
    }
}

async fn get_route(proxy: &Proxy, key: &str) -> Response<ResponseBody> {
    let shared = proxy.store.shared_activity(Some(key)).await;
    let Some(route) = proxy.routes.load().get(key).cloned() else {
        return empty(StatusCode::NOT_FOUND);
    };
    if let Some(at) = shared.as_ref().and_then(|s| s.get(key)) {
        route.note_activity(*at);
    }
    let mut out = Vec::with_capacity(route.data().len() + 48);
    route.write_json(&mut out);
    json(StatusCode::OK, out)
}

async fn list_routes(proxy: &Proxy, query: Option<&str>) -> Response<ResponseBody> {
    let since = match inactive_since(query) {
        Ok(since) => since,
        Err(raw) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Invalid datestamp '{raw}' must be ISO8601."),
            );
        }
    };
    // Activity other replicas saw is added to this replica's record of it, so that the listing
    // of any replica shows the newest.
    let shared = proxy.store.shared_activity(None).await;
    let table = proxy.routes.load_full();
    let routes = table.routes();
    let mut out = Vec::with_capacity(routes.len() * 160 + 2);
    out.push(b'{');
    let mut first = true;
    for (key, route) in &routes {
        if let Some(at) = shared.as_ref().and_then(|s| s.get(key)) {
            route.note_activity(*at);
        }
        if since.is_some_and(|since| route.last_activity_ms() as i64 >= since) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        // A string always serialises.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        route.write_json(&mut out);
    }
    out.push(b'}');
    proxy.metrics.api_route_get.increment(1);
    json(StatusCode::OK, out)
}

/// `GET /ready` on the API listener (and on the public one with the Redis store): 200 once the
/// table may be served, 503 before, with what the store knows.
pub fn ready(proxy: &Proxy) -> Response<ResponseBody> {
    let readiness = proxy.store.readiness(&proxy.routes);
    let status = match readiness.ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(status, serde_json::to_vec(&readiness).unwrap_or_default())
}

pub const READY_PATH: &str = "/ready";

/// `inactiveSince` (checked first) or `inactive_since`, form-decoded; empty means no filter.
fn inactive_since(query: Option<&str>) -> Result<Option<i64>, String> {
    let Some(query) = query else {
        return Ok(None);
    };
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k) == name).then(|| form_decode(v))
        })
    };
    match param("inactiveSince").or_else(|| param("inactive_since")) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => parse_iso(&v).map(Some).ok_or(v),
    }
}

fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode(&spaced).map(|c| c.into_owned()).unwrap_or(spaced)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    #[serde(default)]
    replace: bool,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    add: Map<String, Value>,
}

async fn apply_batch(proxy: &Proxy, body: Value) -> Response<ResponseBody> {
    let batch: Batch = match serde_json::from_value(body) {
        Ok(b) => b,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Batch must be {{\"replace\": bool, \"remove\": [keys], \"add\": {{key: data}}}}: {e}"),
            );
        }
    };
    let host_routing = proxy.settings.host_routing;
    let mut add = Vec::with_capacity(batch.add.len());
    for (key, data) in batch.add {
        match route_data(data) {
            Ok(data) => {
                let key = normalize_route_key(&key);
                let data = stored_data(&key, data, host_routing);
                add.push((key, data));
            }
            Err(msg) => return text(StatusCode::BAD_REQUEST, &format!("Route {key:?}: {msg}")),
        }
    }
    let added = add.len();
    let change = Change::Batch {
        replace: batch.replace,
        remove: batch.remove.iter().map(|k| normalize_route_key(k)).collect(),
        add,
    };
    let applied = match write(proxy, change).await {
        Ok(applied) => applied,
        Err(e) => return unavailable(e),
    };
    let (removed, len) = (applied.removed, applied.len);
    tracing::info!("Batch applied: {added} added, {removed} removed, {len} routes");
    json(
        StatusCode::OK,
        serde_json::json!({ "added": added, "removed": removed, "routes": len }).to_string(),
    )
}

fn text(status: StatusCode, body: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body.to_owned()));
    *resp.status_mut() = status;
    resp
}

fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp
}

fn forbidden() -> Response<ResponseBody> {
    empty(StatusCode::FORBIDDEN)
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rule_matches_chps_regex() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        let cases = [
            ("token secret", true),
            ("token \t secret", true),
            ("token secret extra", true),
            ("xtoken secret", true),
            ("Basic x, token secret", true),
            ("Token secret", false),
            ("Bearer secret", false),
            ("token secretX", false),
            ("token", false),
            ("token ", false),
            ("tokensecret", false),
            ("token  token secret", false),
        ];
        for (header, want) in cases {
            assert_eq!(is_authorized(Some("secret"), Some(&h(header))), want, "{header:?}");
        }
        assert!(!is_authorized(Some("secret"), None));
        assert!(is_authorized(None, None), "no token configured: open API");
    }

    #[test]
    fn inactive_since_reads_either_spelling() {
        assert_eq!(inactive_since(None), Ok(None));
        assert_eq!(inactive_since(Some("inactive_since=")), Ok(None));
        assert_eq!(
            inactive_since(Some("inactive_since=1970-01-01T00:00:00.001Z")),
            Ok(Some(1))
        );
        assert_eq!(
            inactive_since(Some("inactiveSince=1970-01-01T00:00:00.002Z&inactive_since=garbage")),
            Ok(Some(2))
        );
        assert_eq!(
            inactive_since(Some("inactive_since=garbage")),
            Err("garbage".to_owned())
        );
        assert_eq!(
            inactive_since(Some("inactive_since=1970-01-01T00%3A00%3A00Z")),
            Ok(Some(0))
        );
        assert_eq!(inactive_since(Some("other=1")), Ok(None));
    }
}
