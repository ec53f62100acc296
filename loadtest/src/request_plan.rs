//! The requests a load sends, prepared once: URLs parsed, host names resolved, header maps and
//! bodies built, so that issuing a request costs a few reference-count increments.
//!
//! Several URLs are sent round-robin. Each distinct scheme and `host:port` is an [`Origin`] with
//! its own connections. Names are resolved once, before the run, so DNS is never part of a
//! latency. `https://` origins share one TLS client configuration, built here once.
//!
//! A URL may carry headers of its own (a `--urls-file` line `URL<TAB>Name: value<TAB>…`), such
//! as each user's cookie when every URL is a different user's server: they are part of that
//! URL's prepared request, so they cost nothing per request either.

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rustls::pki_types::ServerName;

use crate::tls::{ALPN_H2, ALPN_HTTP1, TlsClient, TlsError, TlsOptions};

/// HTTP version spoken on every connection of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    /// HTTP/2: with prior knowledge (h2c) over plain TCP, negotiated by ALPN over TLS.
    Http2,
}

impl HttpVersion {
    pub fn label(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
        }
    }
}

/// What to send, as given on the command line.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Each a URL, optionally followed by tab-separated `Name: value` headers for that URL
    /// alone (see [`split_url_line`]).
    pub urls: Vec<String>,
    pub method: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    pub body: Bytes,
    pub version: HttpVersion,
    /// Reuse connections (default); without it every request opens a new connection and asks
    /// the server to close it (`Connection: close` on HTTP/1.1).
    pub keep_alive: bool,
    /// How `https://` servers are checked.
    pub tls: TlsOptions,
}

/// Why the requests could not be prepared. Each message names the offending input.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no URL given: pass one or more URLs, or --urls-file FILE")]
    NoUrls,
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("URL {url:?}: only http:// and https:// are supported")]
    UnsupportedScheme { url: String },
    #[error("URL {url:?}: {error}")]
    Tls { url: String, error: TlsError },
    #[error("cannot resolve {host:?} (from URL {url:?}): {reason}")]
    Resolve { url: String, host: String, reason: String },
    #[error("invalid header {header:?}: {reason}; expected \"Name: value\"")]
    BadHeader { header: String, reason: String },
    #[error("invalid method {method:?}: {reason}")]
    BadMethod { method: String, reason: String },
}

/// Splits a URL entry into the URL and the headers that follow it, tab-separated:
/// `http://h/user/alice/\tCookie: s=1\tX-Name: alice`. A URL cannot hold a raw tab (RFC 3986),
/// so an entry without one is just a URL. Blank fields (a trailing tab) are ignored.
pub fn split_url_line(entry: &str) -> (&str, impl Iterator<Item = &str>) {
    let mut fields = entry.split('\t');
    let url = fields.next().unwrap_or_default().trim();
    (url, fields.map(str::trim).filter(|f| !f.is_empty()))
}

/// A server address that connections are opened to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `host:port` as written in the URL.
    pub authority: String,
    pub addr: SocketAddr,
    /// For `https://`: the name the server's certificate must carry (and the SNI sent).
    pub tls: Option<ServerName<'static>>,
}

/// One request, ready to send.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// Index into [`RequestPlan::origins`].
    pub origin: usize,
    pub url: String,
    method: Method,
    /// Origin-form (`/path?q`) for HTTP/1.1, absolute form for HTTP/2 (`:authority`).
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The whole HTTP/1.1 request (request line, headers, body), serialized once.
    head: Bytes,
}

impl PreparedRequest {
    /// The serialized HTTP/1.1 request, sent as is on every exchange.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Whether this is a HEAD request (its response has no body).
    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// A request to send; clones share the prepared URI, header values and body.
    pub fn build(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if self.uri.scheme().is_some() {
            *req.version_mut() = http::Version::HTTP_2;
        }
        req
    }
}

/// Everything a run sends.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    pub origins: Vec<Origin>,
    pub requests: Vec<PreparedRequest>,
    pub version: HttpVersion,
    pub keep_alive: bool,
    pub method: String,
    /// The TLS client of the `https://` origins (`None` when there is none).
    pub tls: Option<TlsClient>,
}

impl RequestPlan {
    pub fn new(spec: &RequestSpec) -> Result<RequestPlan, PlanError> {
        if spec.urls.is_empty() {
            return Err(PlanError::NoUrls);
        }
        let method = Method::from_bytes(spec.method.as_bytes()).map_err(|e| PlanError::BadMethod {
            method: spec.method.clone(),
            reason: e.to_string(),
        })?;
        let mut common = HeaderMap::new();
        for line in &spec.headers {
            let (name, value) = parse_header(line)?;
            common.append(name, value);
        }
        if !common.contains_key(USER_AGENT) {
            common.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("edgeload/", env!("CARGO_PKG_VERSION"))),
            );
        }
        if !spec.keep_alive && spec.version == HttpVersion::Http1 {
            common.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let mut origins: Vec<Origin> = Vec::new();
        let mut requests = Vec::with_capacity(spec.urls.len());
        for entry in &spec.urls {
            let (url, own_headers) = split_url_line(entry);
            let url = &url.to_owned();
            let (uri, authority) = parse_url(url)?;
            let tls = match uri.scheme_str() {
                Some("https") => Some(
                    crate::tls::server_name(uri.host().unwrap_or_default()).map_err(|error| PlanError::Tls {
                        url: url.clone(),
                        error,
                    })?,
                ),
                _ => None,
            };
            let origin = match origins
                .iter()
                .position(|o| o.authority == authority && o.tls.is_some() == tls.is_some())
            {
                Some(i) => i,
                None => {
                    origins.push(Origin {
                        addr: resolve(url, &authority)?,
                        authority: authority.clone(),
                        tls,
                    });
                    origins.len() - 1
                }
            };
            let mut headers = common.clone();
            // The URL's own headers replace common ones of the same name (a per-user Cookie
            // over a -H Cookie), and repeat among themselves as given.
            let mut own = HeaderMap::new();
            for line in own_headers {
                let (name, value) = parse_header(line)?;
                own.append(name, value);
            }
            for name in own.keys() {
                headers.remove(name);
            }
            for (name, value) in &own {
                headers.append(name.clone(), value.clone());
            }
            let uri = match spec.version {
                HttpVersion::Http2 => uri,
                HttpVersion::Http1 => {
                    if !headers.contains_key(HOST) {
                        let host = HeaderValue::from_str(&authority).map_err(|e| PlanError::BadUrl {
                            url: url.clone(),
                            reason: e.to_string(),
                        })?;
                        headers.insert(HOST, host);
                    }
                    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
                    pq.parse().map_err(|e: http::uri::InvalidUri| PlanError::BadUrl {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?
                }
            };
            let head = serialize_h1(&method, &uri, &headers, &spec.body);
            requests.push(PreparedRequest {
                origin,
                url: url.clone(),
                method: method.clone(),
                uri,
                headers,
                body: spec.body.clone(),
                head,
            });
        }
        let tls = match origins.iter().position(|o| o.tls.is_some()) {
            None => None,
            Some(first) => {
                // One protocol offered, the one asked for. A server that does not agree to h2
                // fails the handshake instead of being measured on HTTP/1.1.
                let (alpn, required) = match spec.version {
                    HttpVersion::Http1 => (ALPN_HTTP1, false),
                    HttpVersion::Http2 => (ALPN_H2, true),
                };
                let client = TlsClient::new(&spec.tls, &[alpn], required).map_err(|error| PlanError::Tls {
                    url: requests
                        .iter()
                        .find(|r| r.origin == first)
                        .map_or_else(String::new, |r| r.url.clone()),
                    error,
                })?;
                Some(client)
            }
        };
        Ok(RequestPlan {
            origins,
            requests,
            version: spec.version,
            keep_alive: spec.keep_alive,
            method: method.to_string(),
            tls,
        })
    }
}

/// The HTTP/1.1 request bytes (RFC 9112 §3): request line, headers, a `Content-Length` when
/// there is a body or the method expects one, the empty line, the body.
fn serialize_h1(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let expects_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if !headers.contains_key(http::header::CONTENT_LENGTH) && (!body.is_empty() || expects_body) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Parses an absolute `http://` or `https://` URL; returns it and its `host:port` (port 80 or
/// 443 when absent).
fn parse_url(url: &str) -> Result<(Uri, String), PlanError> {
    let bad = |reason: &str| PlanError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let (scheme, default_port) = match uri.scheme_str() {
        Some("http") => ("http", 80),
        Some("https") => ("https", 443),
        Some(_) => return Err(PlanError::UnsupportedScheme { url: url.to_owned() }),
        None => return Err(bad("expected an absolute URL such as http://127.0.0.1:8080/")),
    };
    let auth = uri.authority().ok_or_else(|| bad("no host"))?;
    if auth.host().is_empty() {
        return Err(bad("no host"));
    }
    let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(default_port));
    // Make sure the path is at least "/" so every request line is well formed.
    let uri = if uri.path_and_query().is_none_or(|p| p.as_str().is_empty()) {
        format!("{scheme}://{authority}/")
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?
    } else {
        uri
    };
    Ok((uri, authority))
}

fn resolve(url: &str, authority: &str) -> Result<SocketAddr, PlanError> {
    let err = |reason: String| PlanError::Resolve {
        url: url.to_owned(),
        host: authority.to_owned(),
        reason,
    };
    // IPv6 literals come bracketed from the URL, which ToSocketAddrs does not accept.
    let lookup = authority.replace(['[', ']'], "");
    let (host, port) = lookup.rsplit_once(':').ok_or_else(|| err("no port".into()))?;
    let port: u16 = port.parse().map_err(|_| err("bad port".into()))?;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), PlanError> {
    let bad = |reason: String| PlanError::BadHeader {
        header: line.to_owned(),
        reason,
    };
    let (name, value) = line.split_once(':').ok_or_else(|| bad("no ':'".into()))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|e| bad(e.to_string()))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(urls: &[&str]) -> RequestSpec {
        RequestSpec {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            method: "GET".into(),
            headers: vec!["X-Test: 1".into()],
            body: Bytes::new(),
            version: HttpVersion::Http1,
            keep_alive: true,
            tls: TlsOptions::default(),
        }
    }

    #[test]
    fn urls_group_by_origin_and_keep_their_paths() {
        let plan = RequestPlan::new(&spec(&[
            "http://127.0.0.1:9000/a?x=1",
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9001/b",
        ]))
        .unwrap();
        assert_eq!(plan.origins.len(), 2);
        let origins: Vec<_> = plan.requests.iter().map(|r| r.origin).collect();
        assert_eq!(origins, vec![0, 0, 1]);
        let req = plan.requests[0].build();
        assert_eq!(req.uri(), "/a?x=1");
        assert_eq!(req.headers()["host"], "127.0.0.1:9000");
        assert_eq!(req.headers()["x-test"], "1");
        assert_eq!(plan.requests[1].build().uri(), "/");
        let head = String::from_utf8(plan.requests[0].head().to_vec()).unwrap();
        assert_eq!(
            head,
            "GET /a?x=1 HTTP/1.1\r\nx-test: 1\r\nuser-agent: edgeload/0.1.0\r\nhost: 127.0.0.1:9000\r\n\r\n"
        );
    }

    #[test]
    fn a_url_carries_its_own_headers_over_the_common_ones() {
        let mut s = spec(&[
            "http://127.0.0.1:9000/user/alice/\tCookie: s=alice\tX-Test: 2\tX-Test: 3\t",
            "http://127.0.0.1:9000/user/bob/ \t Cookie: s=bob",
            "http://127.0.0.1:9000/plain",
        ]);
        s.headers.push("Cookie: common".into());
        let plan = RequestPlan::new(&s).unwrap();
        assert_eq!(plan.origins.len(), 1);
        let urls: Vec<_> = plan.requests.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9000/user/alice/",
                "http://127.0.0.1:9000/user/bob/",
                "http://127.0.0.1:9000/plain"
            ]
        );
        let alice = String::from_utf8(plan.requests[0].head().to_vec()).unwrap();
        assert!(alice.starts_with("GET /user/alice/ HTTP/1.1\r\n"), "{alice}");
        assert!(alice.contains("cookie: s=alice\r\n"), "{alice}");
        assert!(alice.contains("x-test: 2\r\nx-test: 3\r\n"), "{alice}");
        assert!(!alice.contains("common") && !alice.contains("x-test: 1"), "{alice}");
        let bob = plan.requests[1].build();
        assert_eq!(bob.headers()["cookie"], "s=bob");
        assert_eq!(bob.headers()["x-test"], "1");
        assert_eq!(plan.requests[2].build().headers()["cookie"], "common");
        let e = RequestPlan::new(&spec(&["http://127.0.0.1:9000/\tno colon"])).unwrap_err();
        assert!(e.to_string().contains("\"no colon\""), "{e}");
    }

    #[test]
    fn bodies_get_a_content_length() {
        let mut s = spec(&["http://127.0.0.1:9000/p"]);
        s.method = "POST".into();
        s.body = Bytes::from_static(b"hello");
        let plan = RequestPlan::new(&s).unwrap();
        let head = String::from_utf8(plan.requests[0].head().to_vec()).unwrap();
        assert!(head.starts_with("POST /p HTTP/1.1\r\n"), "{head}");
        assert!(head.ends_with("content-length: 5\r\n\r\nhello"), "{head}");
    }

    #[test]
    fn http2_keeps_the_absolute_form_and_no_keepalive_asks_to_close() {
        let mut s = spec(&["http://127.0.0.1:9000/p"]);
        s.version = HttpVersion::Http2;
        let req = RequestPlan::new(&s).unwrap().requests[0].build();
        assert_eq!(req.uri(), "http://127.0.0.1:9000/p");
        let mut s = spec(&["http://127.0.0.1:9000/p"]);
        s.keep_alive = false;
        let req = RequestPlan::new(&s).unwrap().requests[0].build();
        assert_eq!(req.headers()["connection"], "close");
    }

    #[test]
    fn bad_input_is_named_in_the_error() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&[], "", "no URL"),
            (&["ftp://example.com/"], "", "only http:// and https://"),
            (&["/relative"], "", "\"/relative\""),
            (&["http://127.0.0.1:1/"], "Bad Header", "\"Bad Header\""),
            (&["http://127.0.0.1:1/"], "Name: \u{7}", "invalid header"),
        ];
        for (urls, header, want) in cases {
            let mut s = spec(urls);
            if !header.is_empty() {
                s.headers = vec![header.to_string()];
            }
            let e = RequestPlan::new(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{urls:?} {header:?}: {e}");
        }
        let mut s = spec(&["http://127.0.0.1:1/"]);
        s.method = "GE T".into();
        assert!(RequestPlan::new(&s).unwrap_err().to_string().contains("\"GE T\""));
    }
}
