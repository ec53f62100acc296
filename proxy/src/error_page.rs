//! What a client gets when the proxy itself cannot serve a request, as in CHP: no route (404),
//! an unreachable upstream (503), or a request or target we cannot handle (500). A browser that
//! edge auth refuses (403) gets a page too, where an API client gets JSON.
//!
//! In order of preference: the `--error-target` server's page for the code (status forced to our
//! code), a page from `--error-path`, the built-in page, or the bare reason phrase. WebSocket
//! upgrades get only a status line with an empty body and the connection closed.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{RequestBody, ResponseBody, UpstreamBody};
use crate::request_path::encode_uri_component;
use crate::target::Target;
use crate::upstream::{HeaderForm, Upstream};

const BUILTIN_403: &str = include_str!("error_pages/403.html");
const BUILTIN_404: &str = include_str!("error_pages/404.html");
const BUILTIN_503: &str = include_str!("error_pages/503.html");
const BUILTIN_ERROR: &str = include_str!("error_pages/error.html");

pub enum ErrorPages {
    /// `--error-target`: a server that renders pages, e.g. JupyterHub's `/hub/error`.
    Target(Box<Target>),
    /// `--error-path` files, or the built-in pages: `<code>.html` by code, then `error.html`.
    Pages {
        by_code: HashMap<u16, Bytes>,
        fallback: Option<Bytes>,
    },
}

impl ErrorPages {
    pub fn builtin() -> Self {
        ErrorPages::Pages {
            by_code: HashMap::from([
                (403, Bytes::from_static(BUILTIN_403.as_bytes())),
                (404, Bytes::from_static(BUILTIN_404.as_bytes())),
                (503, Bytes::from_static(BUILTIN_503.as_bytes())),
            ]),
            fallback: Some(Bytes::from_static(BUILTIN_ERROR.as_bytes())),
        }
    }

    /// Reads `<dir>/<code>.html` for the codes the proxy produces, and `<dir>/error.html`, once
    /// at start-up (missing files are fine: they fall through to the bare reason phrase).
    pub fn from_dir(dir: &Path) -> std::io::Result<Self> {
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("error path {} is not a directory", dir.display()),
            ));
        }
        let read = |name: &str| std::fs::read(dir.join(name)).ok().map(Bytes::from);
        let by_code = [403, 404, 500, 503]
            .into_iter()
            .filter_map(|code| Some((code, read(&format!("{code}.html"))?)))
            .collect();
        Ok(ErrorPages::Pages {
            by_code,
            fallback: read("error.html"),
        })
    }

    /// `--error-target` with CHP's rule that a trailing `/` is added when missing.
    pub fn from_target(url: &str) -> Result<Self, crate::target::TargetError> {
        let url = if url.ends_with('/') {
            url.to_owned()
        } else {
            format!("{url}/")
        };
        Ok(ErrorPages::Target(Box::new(Target::parse(&url)?)))
    }

    /// The response for an error `code` on a request whose raw target was `original_url`.
    pub async fn respond(&self, upstream: &Upstream, code: StatusCode, original_url: &str) -> Response<ResponseBody> {
        match self {
            ErrorPages::Target(target) => match fetch(upstream, target, code, original_url).await {
                Some(resp) => resp,
                None => plain(code),
            },
            ErrorPages::Pages { by_code, fallback } => match by_code.get(&code.as_u16()).or(fallback.as_ref()) {
                Some(page) => {
                    let mut resp = Response::new(ResponseBody::full(page.clone()));
                    *resp.status_mut() = code;
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
                    resp
                }
                None => plain(code),
            },
        }
    }
}

/// The bare fallback, as CHP sends it: the reason phrase as a body, no Content-Type.
pub fn plain(code: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(code.canonical_reason().unwrap_or("Error")));
    *resp.status_mut() = code;
    resp
}

/// A WebSocket upgrade that fails before the tunnel exists: status only, then close.
pub fn websocket(code: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = code;
    resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Asks the error target for `<path><code>?url=<original>`; the client gets our status code with
/// the page's Content-Type and Content-Encoding, and nothing else of its headers (as CHP).
async fn fetch(
    upstream: &Upstream,
    target: &Target,
    code: StatusCode,
    original_url: &str,
) -> Option<Response<ResponseBody>> {
    let mut path = format!(
        "{}{}?url={}",
        target.path(),
        code.as_u16(),
        encode_uri_component(original_url)
    );
    if let Some(q) = target.query() {
        path.push('&');
        path.push_str(q);
    }
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, target.authority())
        .body(())
        .ok()?
        .into_parts()
        .0;
    let resp = match upstream
        .send(target, &req, RequestBody::Empty, &(), HeaderForm::Map)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("error target unavailable, answering {code} plainly: {e}");
            return None;
        }
    };
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(ResponseBody::upstream(UpstreamBody::new(body, None, None)));
    *out.status_mut() = code;
    for name in [CONTENT_TYPE, CONTENT_ENCODING] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    Some(out)
}
