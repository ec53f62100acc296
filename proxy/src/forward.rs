//! Forwarding a routed HTTP request to its target and relaying the response, with CHP's path,
//! header and `Location` rules (docs/routing.md, docs/compatibility.md).

use std::sync::Arc;

use http::header::{HOST, HeaderValue, LOCATION};
use http::{Response, StatusCode, Uri, Version};

use crate::Proxy;
use crate::activity::Activity;
use crate::body::{ClientBody, RequestBody, ResponseBody, UpstreamBody};
use crate::client_head::ClientHead;
use crate::headers::forwarded::{ClientInfo, ForwardedLines, add_forwarded, host_or_authority, request_host};
use crate::headers::hop_by_hop::remove_hop_by_hop;
use crate::headers::location::rewrite_location;
use crate::headers::raw::RawHeaders;
use crate::headers::request_lines::{Forwarding, RequestLines};
use crate::http1::BadChunk;
use crate::recycle::Recycled;
use crate::request_path::{join_paths, strip_segments};
use crate::route_table::Route;
use crate::target::Target;
use crate::upstream::{H1Error, HeaderForm, UpstreamError};

/// Why a request could not be forwarded; the pipeline turns it into an error page.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The upstream could not be reached or did not answer in time: 503.
    #[error(transparent)]
    Unavailable(#[from] crate::upstream::UpstreamError),
    /// The forwarded path could not be formed: 500.
    #[error("cannot form the upstream path {0:?}")]
    BadPath(String),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            // The client's chunked body broke its framing on the way: the client's mistake.
            ForwardError::Unavailable(UpstreamError::Http(_, H1Error::ClientBody(e))) if e.is::<BadChunk>() => {
                StatusCode::BAD_REQUEST
            }
            ForwardError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::BadPath(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Sends the request to `target` and streams the response back. Its headers are the head's
/// lines, as the client sent them, or else its map (see `pipeline::handle`).
pub async fn forward_http(
    proxy: &Proxy,
    mut head: Recycled<ClientHead>,
    body: ClientBody,
    route: Arc<Route>,
    target: &Target,
    wire_path: &str,
    client: &ClientInfo,
) -> Result<Response<ResponseBody>, ForwardError> {
    let UpstreamHead { host, forwarded } = upstream_parts(proxy, &mut head, &route, target, wire_path, client, false)?;
    let ClientHead { parts, lines } = &*head;
    let body = RequestBody::Client {
        body,
        activity: Some(Activity::new(route.clone(), &proxy.metrics)),
    };
    let no_lines = RawHeaders::default();
    let extra = Forwarding(lines.as_ref().map_or(&no_lines, RequestLines::end_to_end), &forwarded);
    // As in `pipeline::handle`: without a limit (the default) the send is awaited as it is.
    let resp = match proxy.settings.proxy_timeout {
        None => {
            proxy
                .upstream
                .send(target, parts, body, &extra, HeaderForm::Raw)
                .await?
        }
        Some(limit) => tokio::time::timeout(limit, proxy.upstream.send(target, parts, body, &extra, HeaderForm::Raw))
            .await
            .map_err(|_| UpstreamError::ResponseTimeout(target.authority().to_owned()))??,
    };

    let (mut parts, mut body) = resp.into_parts();
    let relayed = body.take_raw_headers();
    remove_hop_by_hop(&mut parts.headers);
    let s = &proxy.settings;
    if let Some(location) = parts.headers.get(LOCATION).and_then(|v| v.to_str().ok())
        && let Some(new) = rewrite_location(
            parts.status,
            location,
            target,
            host.as_ref().and_then(|h| h.to_str().ok()),
            s.auto_rewrite,
            s.protocol_rewrite.as_deref(),
        )
        && let Ok(v) = HeaderValue::from_str(&new)
    {
        parts.headers.insert(LOCATION, v);
    }
    // Activity counts only for successful responses, once they have been delivered whole.
    let activity = (parts.status.as_u16() < 300).then(|| Activity::new(route, &proxy.metrics));
    let body = if let Some(whole) = body.take_complete() {
        // The whole body came with the head (and the connection is back in the pool): send it
        // as it is, and finish the bookkeeping now.
        if let Some(activity) = activity {
            activity.mark();
        }
        ResponseBody::full(whole)
    } else {
        ResponseBody::upstream(UpstreamBody::new(body, activity, proxy.settings.proxy_timeout))
    };
    let body = body.relaying(relayed);
    Ok(Response::from_parts(parts, body))
}

/// What `upstream_parts` leaves beside the edited head.
pub struct UpstreamHead {
    /// The host the client named (`Host`, or `:authority` on HTTP/2).
    pub host: Option<HeaderValue>,
    /// Header lines to write after the head's own (see `add_forwarded`).
    pub forwarded: Option<ForwardedLines>,
}

/// Turns the client's request head into the upstream's: path per prepend-path/include-prefix,
/// `X-Forwarded-*`, `Host`, custom headers, HTTP/1.1. The pipeline has removed the client's
/// hop-by-hop headers already (before adding the identity headers, which must stay). With
/// `lines`, the client's headers are those lines, to be forwarded as they are, and the map
/// gets only what the proxy adds.
pub fn upstream_parts(
    proxy: &Proxy,
    head: &mut ClientHead,
    route: &Route,
    target: &Target,
    wire_path: &str,
    client: &ClientInfo,
    websocket: bool,
) -> Result<UpstreamHead, ForwardError> {
    let s = &proxy.settings;
    let host = client_host(head);
    let ClientHead { parts, lines } = head;
    if websocket {
        parts
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
        parts
            .headers
            .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let forwarded = match s.x_forward {
        true => add_forwarded(&mut parts.headers, client, host.as_ref(), websocket),
        false => None,
    };
    if s.change_origin {
        if let Ok(v) = HeaderValue::from_str(target.authority()) {
            parts.headers.insert(HOST, v);
        }
    } else if !lines
        .as_ref()
        .map_or_else(|| parts.headers.contains_key(HOST), RequestLines::has_host)
        && let Some(h) = &host
    {
        // HTTP/2 clients name the host in :authority; HTTP/1.1 upstreams need it as Host.
        parts.headers.insert(HOST, h.clone());
    }
    for (name, value) in &s.custom_headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    parts.version = Version::HTTP_11;
    parts.uri = upstream_uri(s, &parts.uri, route, target, wire_path)?;
    Ok(UpstreamHead { host, forwarded })
}

/// The host the client named: `Host`, else the target's authority (absolute-form, HTTP/2).
pub fn client_host(head: &ClientHead) -> Option<HeaderValue> {
    match &head.lines {
        Some(lines) => host_or_authority(lines.host(), &head.parts.uri),
        None => request_host(&head.parts.headers, &head.parts.uri),
    }
}

/// The origin-form request-target sent upstream: CHP's `--prepend-path` and `--include-prefix`
/// rules.
fn upstream_uri(
    s: &crate::Settings,
    uri: &Uri,
    route: &Route,
    target: &Target,
    wire_path: &str,
) -> Result<Uri, ForwardError> {
    // The common case: a target without a path of its own, the prefix kept, and a path that
    // needed no cleaning. The client's origin-form target is then forwarded as it is.
    let unchanged = s.include_prefix
        && (!s.prepend_path || (target.path() == "/" && target.query().is_none()))
        && uri.scheme().is_none()
        && uri.path() == wire_path
        && uri.query() != Some("");
    if unchanged {
        return Ok(uri.clone());
    }
    let query = uri.query().filter(|q| !q.is_empty());
    let path = if s.include_prefix {
        wire_path
    } else {
        // Under host routing the key's first segment is the host, which is not in the path.
        let host_segment = usize::from(s.host_routing && route.key_segments > 0);
        strip_segments(wire_path, route.key_segments - host_segment)
    };
    let path_and_query = if s.prepend_path {
        join_paths(target.path(), target.query(), path, query)
    } else {
        join_paths("", None, path, query)
    };
    path_and_query
        .parse()
        .map_err(|_| ForwardError::BadPath(path_and_query))
}
