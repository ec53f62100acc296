//! The `--redirect-port` listener: plain HTTP that sends every request to https (as CHP: 301 to `https://<host>[:port]<path>`).

use http::header::{CONNECTION, HOST, HeaderValue, LOCATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::Settings;
use crate::body::ResponseBody;

pub fn respond(settings: &Settings, req: &Request<Incoming>) -> Response<ResponseBody> {
    let redirect = settings.redirect.as_ref();
    // Where clients are sent: `--redirect-to` (the public HTTPS port, e.g. 443 behind a load
    // balancer), else the proxy's own `--port`.
    let https_port = redirect.map(|r| r.to.unwrap_or(r.https_port));
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        let port = https_port.unwrap_or_default();
        let mut resp = Response::new(ResponseBody::full(format!(
            "This server is HTTPS-only on port {port}, but an HTTP request was made and the host could not be determined from the request."
        )));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return resp;
    };
    let hostname = match host.rfind(']') {
        Some(i) => &host[..=i],
        None => host.split(':').next().unwrap_or(host),
    };
    // As in CHP, an explicit --redirect-to is always written, even 443.
    let port = match (redirect.and_then(|r| r.to), https_port) {
        (Some(p), _) => format!(":{p}"),
        (None, Some(443) | None) => String::new(),
        (None, Some(p)) => format!(":{p}"),
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&format!("https://{hostname}{port}{path}")) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}
