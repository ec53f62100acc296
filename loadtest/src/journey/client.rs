//! One simulated user's HTTP client: a keep-alive HTTP/1.1 connection to the hub's public
//! origin (through hyper's client connection), the user's [`CookieJar`], and the credentials the
//! journey attaches: `Authorization: token …` or cookies with the matching `X-XSRFToken`.
//!
//! Requests are sequential (a user does one thing at a time), so one connection suffices; it is
//! reopened when the server closed it, and a request that found a stale keep-alive connection is
//! sent again once, as browsers do.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use super::cookies::CookieJar;
use super::phase::Failure;
use crate::endpoint::Endpoint;
use crate::error_kind::ErrorKind;
use crate::tls::{ALPN_HTTP1, Stream, TlsClient, TlsOptions};

/// Bodies above this are cut (the journey reads small JSON documents and a login page).
const MAX_BODY: usize = 1 << 20;

/// Where the hub is: one origin, and the path prefix it is served under (JupyterHub's
/// `base_url`, without the trailing slash: `""` for `/`).
#[derive(Debug, Clone)]
pub struct Hub {
    /// Its address, and `host[:port]` as written in the URL (`authority`), for `Host` and
    /// WebSocket URLs.
    pub endpoint: Endpoint,
    pub prefix: String,
    /// For an `https://` hub: the TLS client and the hub's name.
    tls: Option<(TlsClient, ServerName<'static>)>,
}

impl Hub {
    /// Parses `http[s]://host[:port][/prefix/]`, resolving the host once; `tls` checks an
    /// `https://` hub's certificate.
    pub fn parse(url: &str, tls: &TlsOptions) -> Result<Hub, String> {
        let endpoint = Endpoint::parse(url, crate::endpoint::HTTP).map_err(|e| e.to_string())?;
        let client = endpoint
            .tls_client(tls, &[ALPN_HTTP1])
            .map_err(|e| format!("{url:?}: {e}"))?;
        let prefix = endpoint.path_and_query.split('?').next().unwrap_or_default();
        Ok(Hub {
            prefix: prefix.trim_end_matches('/').to_owned(),
            tls: client.zip(endpoint.tls.clone()),
            endpoint,
        })
    }

    /// Whether the hub is `https://` (its WebSockets are then `wss://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection to the hub, with the TLS handshake of an `https://` hub.
    pub async fn connect(&self) -> Result<Stream, ErrorKind> {
        let tls = self.tls.as_ref().map(|(client, name)| (client, name));
        Ok(crate::tls::open(self.endpoint.addr, tls).await?.stream)
    }

    /// `path` (starting with `/`) under the hub's prefix.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// How the user proves who they are.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Nothing yet (before login).
    None,
    /// Cookies from the form login; state-changing requests carry `X-XSRFToken`.
    Cookies,
    /// An API token for the user.
    Token(String),
}

/// A finished exchange with its body read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION)?.to_str().ok()
    }

    /// `Retry-After` in seconds (the delay form; an HTTP date counts from now).
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(s) = v.parse::<f64>() {
            return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
        }
        let at = super::dates::parse_http_date(v)?;
        Some(Duration::from_secs((at - super::dates::unix_now()).max(0) as u64))
    }
}

pub struct Client {
    pub hub: Hub,
    pub jar: CookieJar,
    pub credentials: Credentials,
    timeout: Duration,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

/// A request body and its content type.
#[derive(Clone)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Bytes,
}

impl Body {
    pub fn json(v: &serde_json::Value) -> Body {
        Body {
            content_type: "application/json",
            bytes: Bytes::from(v.to_string()),
        }
    }
}

impl Client {
    pub fn new(hub: Hub, timeout: Duration) -> Client {
        Client {
            hub,
            jar: CookieJar::default(),
            credentials: Credentials::None,
            timeout,
            sender: None,
        }
    }

    /// Headers that authenticate a request to `path`: the token, or the cookies and (for the
    /// hub's and jupyter_server's XSRF checks) the `_xsrf` cookie's value as `X-XSRFToken`.
    pub fn auth_headers(&self, path: &str) -> Vec<(header::HeaderName, String)> {
        let mut h = Vec::new();
        if let Credentials::Token(t) = &self.credentials {
            h.push((header::AUTHORIZATION, format!("token {t}")));
        }
        if let Some(c) = self.jar.header_for(path) {
            h.push((header::COOKIE, c));
        }
        if let (Credentials::Cookies, Some(x)) = (&self.credentials, self.jar.get("_xsrf", path)) {
            h.push((header::HeaderName::from_static("x-xsrftoken"), x.to_owned()));
        }
        h
    }

    /// Sends one request (`path_and_query` absolute, prefix included) with the user's
    /// credentials and reads the whole response. Cookies it sets go into the jar.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<Response, Failure> {
        let (parts, incoming) = self.send(method, path_and_query, body, &[]).await?;
        let read = async {
            let mut buf = BytesMut::new();
            let mut incoming = incoming;
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| Failure::Http(ErrorKind::from_hyper(&e)))?;
                if let Ok(data) = frame.into_data()
                    && buf.len() < MAX_BODY
                {
                    buf.extend_from_slice(&data);
                }
            }
            Ok::<_, Failure>(buf.freeze())
        };
        let body = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| Failure::Http(ErrorKind::Timeout))?
            .inspect_err(|_| self.sender = None)?;
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request and returns the response head with its body unread (for event
    /// streams). The connection is given up: it stays busy until the body is dropped.
    pub async fn request_stream(
        &mut self,
        method: Method,
        path_and_query: &str,
        extra: &[(header::HeaderName, &'static str)],
    ) -> Result<(http::response::Parts, Incoming), Failure> {
        let r = self.send(method, path_and_query, None, extra).await;
        self.sender = None;
        r
    }

    async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
        extra: &[(header::HeaderName, &'static str)],
    ) -> Result<(http::response::Parts, Incoming), Failure> {
        let path = path_and_query.split('?').next().unwrap_or("/").to_owned();
        let auth = self.auth_headers(&path);
        let authority = self.hub.endpoint.authority.clone();
        let build = || {
            let mut b = Request::builder()
                .method(method.clone())
                .uri(path_and_query)
                .header(header::HOST, authority.as_str())
                .header(header::USER_AGENT, concat!("edgeload/", env!("CARGO_PKG_VERSION")));
            for (k, v) in &auth {
                b = b.header(k, v.as_str());
            }
            for (k, v) in extra {
                b = b.header(k, HeaderValue::from_static(v));
            }
            let bytes = match &body {
                Some(body) => {
                    b = b.header(header::CONTENT_TYPE, body.content_type);
                    body.bytes.clone()
                }
                None => Bytes::new(),
            };
            b.body(Full::new(bytes)).map_err(|_| Failure::BadResponse)
        };
        let exchange = async {
            // A kept connection may have been closed by the server while idle: if it fails
            // before answering, try once more on a new one.
            for attempt in 0..2 {
                let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
                if !reused {
                    self.sender = Some(connect(&self.hub).await?);
                }
                let sender = self.sender.as_mut().expect("connected above");
                if sender.ready().await.is_err() {
                    self.sender = None;
                    continue;
                }
                match sender.send_request(build()?).await {
                    Ok(resp) => return Ok(resp.into_parts()),
                    Err(e) => {
                        self.sender = None;
                        if !(reused && attempt == 0 && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()))
                        {
                            return Err(Failure::Http(ErrorKind::from_hyper(&e)));
                        }
                    }
                }
            }
            Err(Failure::Http(ErrorKind::Closed))
        };
        let (parts, incoming) = tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            self.sender = None;
            Failure::Http(ErrorKind::Timeout)
        })??;
        for v in parts.headers.get_all(header::SET_COOKIE) {
            if let Ok(v) = v.to_str() {
                self.jar.store(&path, v);
            }
        }
        Ok((parts, incoming))
    }
}

async fn connect(hub: &Hub) -> Result<http1::SendRequest<Full<Bytes>>, Failure> {
    let stream = hub.connect().await.map_err(Failure::Http)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Http(ErrorKind::from_hyper(&e)))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode(k, &mut out);
        out.push('=');
        percent_encode(v, &mut out);
    }
    out
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// The value of the hidden `_xsrf` input of an HTML form, attributes in either order.
pub fn xsrf_field(html: &str) -> Option<String> {
    let at = html.find("name=\"_xsrf\"")?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let v = tag.find("value=\"")? + "value=\"".len();
    let len = tag[v..].find('"')?;
    Some(tag[v..v + len].replace("&#124;", "|").replace("&amp;", "&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_split_into_origin_and_prefix() {
        let plain = TlsOptions::default();
        let h = Hub::parse("http://127.0.0.1:8000/", &plain).unwrap();
        assert_eq!(
            (h.endpoint.authority.as_str(), h.prefix.as_str()),
            ("127.0.0.1:8000", "")
        );
        assert_eq!(h.path("/hub/login"), "/hub/login");
        let h = Hub::parse("http://127.0.0.1:8000/jhub/", &plain).unwrap();
        assert_eq!(h.path("/hub/login"), "/jhub/hub/login");
        assert_eq!(
            Hub::parse("http://127.0.0.1/", &plain).unwrap().endpoint.addr.port(),
            80
        );
        assert!(
            Hub::parse("ftp://127.0.0.1/", &plain)
                .unwrap_err()
                .contains("http:// or https://")
        );
        let insecure = TlsOptions {
            insecure: true,
            cacert: None,
        };
        let h = Hub::parse("https://127.0.0.1/", &insecure).unwrap();
        assert!(h.is_tls() && h.endpoint.addr.port() == 443);
    }

    #[test]
    fn forms_are_encoded() {
        assert_eq!(
            form_encode(&[("username", "a b"), ("_xsrf", "2|x/y=")]),
            "username=a+b&_xsrf=2%7Cx%2Fy%3D"
        );
    }

    #[test]
    fn the_xsrf_field_is_found_in_either_attribute_order() {
        let cases = [
            (
                r#"<input type="hidden" name="_xsrf" value="2|ab|cd|1"/>"#,
                Some("2|ab|cd|1"),
            ),
            (r#"<input value="2&#124;ab" name="_xsrf" type="hidden">"#, Some("2|ab")),
            (r#"<form><input name="username"></form>"#, None),
        ];
        for (html, want) in cases {
            assert_eq!(xsrf_field(html).as_deref(), want, "{html}");
        }
    }
}
