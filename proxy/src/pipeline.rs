//! The public request path, in the order it runs:
//!
//! 1. health check (`/_chp_healthz`, before routing, never counted);
//! 2. path: WHATWG clean-up, percent-decoding, host prefix under host routing;
//! 3. route lookup in the current table snapshot (no lock);
//! 4. edge authentication and authorization, when configured (`auth`): token, session, policy;
//! 5. the client's hop-by-hop headers removed, then the headers the proxy adds (identity, the
//!    route's upstream credential; `X-Forwarded-*` follow in `forward`);
//! 6. forward: a plain request, or a WebSocket upgrade and tunnel;
//! 7. error page when any step fails; metrics for the finished exchange.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::Proxy;
use crate::admin_api::{READY_PATH, ready};
use crate::body::{ClientBody, ResponseBody};
use crate::client_head::ClientHead;
use crate::error_page;
use crate::forward::{client_host, forward_http};
use crate::headers::forwarded::ClientInfo;
use crate::headers::hop_by_hop::remove_hop_by_hop;
use crate::headers::request_lines::RequestLines;
use crate::recycle::Recycled;
use crate::request_path::{clean_wire_path, percent_decode};
use crate::route_store::RouteStore;
use crate::upgrade::PendingUpgrade;
use crate::ws_tunnel::{forward_upgrade, is_upgrade, is_websocket};

pub const HEALTH_PATH: &str = "/_chp_healthz";

/// Ends the client connection without a response (what CHP does for unsupported upgrades and
/// for `--timeout`).
#[derive(Debug, thiserror::Error)]
#[error("connection closed without response: {0}")]
pub struct Abort(pub &'static str);

/// The response to the request `head` and `body`, or [`Abort`]. The `Connection` header of the answer is the server's
/// to write (`h1_server`): HTTP/2 has none.
///
/// An HTTP/1 request comes with its header lines as received and an empty header map. It is
/// forwarded from those lines when nothing on the way reads or edits its headers; otherwise the
/// map is filled here, and every step works on the map (as for HTTP/2, which has no lines).
///
/// The head and the body travel apart from here on: rebuilding a `Request` at each step kept a
/// copy of it in each step's state, and every request's future is moved whole.
pub async fn handle(
    proxy: Arc<Proxy>,
    client: Arc<ClientInfo>,
    mut head: Recycled<ClientHead>,
    body: ClientBody,
) -> Result<Response<ResponseBody>, Abort> {
    if let Some(lines) = head.lines.take_if(|lines| needs_map(&proxy, lines)) {
        lines.fill_map(&mut head.parts.headers);
    }
    // A `match`, not a wrapper that holds an optional timer around the future: measured, the
    // wrapper cost some 270 instructions a request in copies and polls (docs/benchmarks.md).
    match proxy.settings.timeout {
        None => handle_request(proxy, client, head, body).await,
        Some(limit) => tokio::time::timeout(limit, handle_request(proxy, client, head, body))
            .await
            .map_err(|_| Abort("client inactive for longer than --timeout"))?,
    }
}

/// Whether a request's headers must be a map on its way: something reads or edits them beyond
/// `Host`, or its lines cannot be forwarded as they are.
fn needs_map(proxy: &Proxy, lines: &RequestLines) -> bool {
    let s = &proxy.settings;
    lines.needs_map || lines.upgrade || proxy.auth.is_some() || s.change_origin || !s.custom_headers.is_empty()
}

async fn handle_request(
    proxy: Arc<Proxy>,
    client: Arc<ClientInfo>,
    mut head: Recycled<ClientHead>,
    body: ClientBody,
) -> Result<Response<ResponseBody>, Abort> {
    let (proxy, client) = (&proxy, &*client);
    let parts = &mut head.parts;
    // With lines, the map is empty and the request is no upgrade (see `needs_map`).
    let upgrade = is_upgrade(&parts.headers);
    let started = proxy.metrics.is_enabled().then(Instant::now);

    // 1. Health checks: exact request-target, any method, not for upgrades. `/ready` only with
    // the Redis store: with the memory backend every path is routed, as in CHP.
    if !upgrade {
        match parts.uri.path_and_query().map(|pq| pq.as_str()) {
            Some(HEALTH_PATH) => return Ok(health(proxy)),
            Some(READY_PATH) if !matches!(proxy.store, RouteStore::Memory) => return Ok(ready(proxy)),
            _ => {}
        }
    }
    // The client's side of an upgrade comes from the HTTP/1.1 server; HTTP/2 has none.
    let client_upgrade = match upgrade {
        true if is_websocket(parts) => match parts.extensions.remove::<PendingUpgrade>() {
            Some(pending) => Some(pending),
            None => return Err(Abort("WebSocket upgrades need HTTP/1.1")),
        },
        true => return Err(Abort("only GET + Upgrade: websocket is proxied")),
        false => None,
    };
    if upgrade {
        proxy.metrics.requests_ws.increment(1);
    } else {
        proxy.metrics.requests_web.increment(1);
    }
    // The request is moved into the forwarder; keep its target (a cheap, shared clone) for
    // routing and for error pages.
    let uri = parts.uri.clone();

    // 2. Path.
    let wire_path = clean_wire_path(uri.path());
    let Some(lookup_path) = lookup_path(proxy, &head, &wire_path) else {
        // The client's mistake, not ours: 400 (RFC 9110 §15.5.1), where CHP answers 500.
        let why = "malformed percent-encoding in path";
        return Ok(Box::pin(error(proxy, StatusCode::BAD_REQUEST, upgrade, &uri, why)).await);
    };

    // 3. Route lookup.
    let route = proxy.routes.load().lookup(&lookup_path).cloned();
    if let Some(t) = started {
        proxy.metrics.find_target_for_req.record(t.elapsed().as_secs_f64());
    }
    let Some(route) = route else {
        // Before the shared table is loaded, a missing route says nothing about the path.
        let (code, why) = match proxy.store.is_loaded() {
            true => (StatusCode::NOT_FOUND, "no route"),
            false => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the route table is still loading from Redis",
            ),
        };
        return Ok(Box::pin(error(proxy, code, upgrade, &uri, why)).await);
    };

    // 4. Edge authentication and authorization (when configured).
    let admission = match &proxy.auth {
        // Inline: what can wait long (a Redis lookup, a question to the hub, a JWKS refetch) is
        // boxed inside, where it runs on a cache miss only, so this future is small (376 bytes,
        // against 2,384 with them inline) and takes no allocation on the common path.
        Some(auth) => match auth.check(&mut head.parts, &route, upgrade).await {
            Ok(admission) => Some(admission),
            Err(refusal) => {
                proxy.metrics.proxy_status(refusal.status().as_u16());
                if refusal.status() == StatusCode::FORBIDDEN && crate::auth::navigation(&head.parts, upgrade) {
                    // A person, not a script: the error page says it in words (the hub's own,
                    // with `--error-target`), with the same status.
                    let original_url = uri.path_and_query().map_or("/", |pq| pq.as_str());
                    let page = proxy
                        .errors
                        .respond(&proxy.upstream, StatusCode::FORBIDDEN, original_url);
                    return Ok(Box::pin(page).await);
                }
                return Ok(refusal);
            }
        },
        None => None,
    };
    // When auth took the token out of the query, what is logged from here on is the URL without
    // it. Most requests have no query, and then nothing changed and nothing is copied.
    let parts = &mut head.parts;
    let stripped = (parts.uri.query() != uri.query()).then(|| parts.uri.clone());
    let uri = stripped.as_ref().unwrap_or(&uri);

    // 5. Hop-by-hop headers (RFC 9110 §7.6.1): those the client sent go first, so that a
    // `Connection` header naming what the proxy adds next cannot remove it.
    remove_hop_by_hop(&mut parts.headers);
    if let (Some(auth), Some(admission)) = (&proxy.auth, admission) {
        auth.admit(&mut parts.headers, admission);
    }

    // 6. Forward.
    let target = match &route.target {
        Ok(t) => t,
        Err(e) => {
            let why = e.to_string();
            return Ok(Box::pin(error(proxy, StatusCode::INTERNAL_SERVER_ERROR, upgrade, uri, &why)).await);
        }
    };
    let result = if let Some(client_upgrade) = client_upgrade {
        Box::pin(forward_upgrade(
            proxy,
            head,
            client_upgrade,
            route.clone(),
            target,
            &wire_path,
            client,
        ))
        .await
    } else {
        forward_http(proxy, head, body, route.clone(), target, &wire_path, client).await
    };
    let resp = match result {
        // A server may switch protocols only when asked (RFC 9110 §15.2.2); relayed, the 101
        // would leave the client reading a stream it never asked for. The upstream connection
        // is dropped with the response, never pooled.
        Ok(resp) if !upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let why = "the server switched protocols without being asked";
            return Ok(Box::pin(error(proxy, StatusCode::SERVICE_UNAVAILABLE, upgrade, uri, why)).await);
        }
        Ok(resp) => resp,
        Err(e) => return Ok(Box::pin(error(proxy, e.status(), upgrade, uri, &e.to_string())).await),
    };

    // 7. Metrics.
    proxy.metrics.proxy_status(resp.status().as_u16());
    if let Some(t) = started {
        proxy.metrics.request_duration.record(t.elapsed().as_secs_f64());
    }
    Ok(resp)
}

/// The decoded path the route table is searched with; `None` for malformed percent-encoding.
fn lookup_path<'a>(proxy: &Proxy, head: &ClientHead, wire_path: &'a str) -> Option<Cow<'a, str>> {
    let decoded = percent_decode(wire_path).ok()?;
    if !proxy.settings.host_routing {
        return Some(decoded);
    }
    // CHP uses the Host up to its first `:`, case preserved, and `undefined` when absent.
    let host = client_host(head);
    let host = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map_or("undefined", |h| h.split(':').next().unwrap_or(h));
    Some(Cow::Owned(format!("/{host}{decoded}")))
}

/// `{"status": "OK"}`, or 503 while the shared route table is still being loaded: a replica
/// that would answer 404 for every route is not healthy yet.
fn health(proxy: &Proxy) -> Response<ResponseBody> {
    let mut resp = match proxy.store.is_loaded() {
        true => Response::new(ResponseBody::full(&b"{\"status\":\"OK\"}"[..])),
        false => {
            let mut resp = Response::new(ResponseBody::full(&b"{\"status\":\"loading routes\"}"[..]));
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp
        }
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn error(proxy: &Proxy, code: StatusCode, upgrade: bool, uri: &http::Uri, why: &str) -> Response<ResponseBody> {
    let original_url = uri
        .path_and_query()
        .map_or_else(|| uri.to_string(), |pq| pq.as_str().to_owned());
    if code.is_server_error() {
        tracing::error!("{} {original_url} {why}", code.as_u16());
    } else {
        tracing::debug!("{} {original_url} {why}", code.as_u16());
    }
    proxy.metrics.proxy_status(code.as_u16());
    if upgrade {
        error_page::websocket(code)
    } else {
        proxy.errors.respond(&proxy.upstream, code, &original_url).await
    }
}
