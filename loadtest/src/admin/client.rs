//! A client for the configurable-http-proxy REST API (docs/routing.md#admin-api):
//! `POST /api/routes/<path>` with `{"target": …}` (201), `DELETE /api/routes/<path>` (204),
//! `GET /api/routes` (200, a JSON object), `Authorization: token <T>`; and edgeproxy's
//! `POST /api/batch` extension for loading many routes at once. One keep-alive HTTP/1.1
//! connection (hyper) per concurrent caller.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::endpoint::{Endpoint, EndpointError};
use crate::error_kind::ErrorKind;
use crate::tls::{ALPN_HTTP1, TlsClient, TlsError, TlsOptions};

/// A URL or token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} (the API's URL, e.g. http://127.0.0.1:8001)")]
    Url(#[from] EndpointError),
    #[error("--token: not a valid header value")]
    Token,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The API's address, path prefix and credentials, prepared once.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    pub url: String,
    endpoint: Endpoint,
    tls: Option<(TlsClient, ServerName<'static>)>,
    host: HeaderValue,
    /// Path before `/api/…` (empty for CHP's own listener).
    prefix: String,
    auth: Option<HeaderValue>,
    /// `{"target": "<route target>"}`, the body of every add.
    route_body: Bytes,
    pub route_target: String,
}

/// One keep-alive connection.
pub struct ApiConn {
    sender: SendRequest<Full<Bytes>>,
}

/// A response: its status and, when asked for, its body.
pub struct ApiResponse {
    pub status: u16,
    pub body: Option<Bytes>,
}

impl ApiTarget {
    /// The API at `url` (http:// or https://, with `tls` checking the latter).
    pub fn new(url: &str, token: Option<&str>, route_target: &str, tls: &TlsOptions) -> Result<ApiTarget, ApiError> {
        let endpoint = Endpoint::parse(url, crate::endpoint::HTTP)?;
        let auth = token
            .map(|t| HeaderValue::from_str(&format!("token {t}")).map_err(|_| ApiError::Token))
            .transpose()?;
        let client = endpoint.tls_client(tls, &[ALPN_HTTP1])?;
        Ok(ApiTarget {
            url: url.to_owned(),
            host: HeaderValue::from_str(&endpoint.authority).map_err(|_| {
                ApiError::Url(EndpointError::Url {
                    url: url.to_owned(),
                    reason: "not a valid Host header".into(),
                })
            })?,
            prefix: endpoint
                .path_and_query
                .split('?')
                .next()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            tls: client.zip(endpoint.tls.clone()),
            endpoint,
            auth,
            route_body: Bytes::from(serde_json::json!({ "target": route_target }).to_string()),
            route_target: route_target.to_owned(),
        })
    }

    pub async fn connect(&self) -> Result<ApiConn, ErrorKind> {
        let tls = self.tls.as_ref().map(|(client, name)| (client, name));
        let stream = crate::tls::open(self.endpoint.addr, tls).await?.stream;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ErrorKind::from_hyper(&e))?;
        tokio::spawn(conn);
        Ok(ApiConn { sender })
    }

    /// Sends one request on `conn` (opening it first when `None`; a broken connection is dropped
    /// so that the next call opens a fresh one) and reads the whole response.
    pub async fn call(
        &self,
        conn: &mut Option<ApiConn>,
        method: Method,
        path: &str,
        body: Bytes,
        keep_body: bool,
    ) -> Result<ApiResponse, ErrorKind> {
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let result = self
            .exchange(conn.as_mut().expect("opened above"), method, path, body, keep_body)
            .await;
        if result.is_err() {
            *conn = None;
        }
        result
    }

    async fn exchange(
        &self,
        conn: &mut ApiConn,
        method: Method,
        path: &str,
        body: Bytes,
        keep_body: bool,
    ) -> Result<ApiResponse, ErrorKind> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = format!("{}{path}", self.prefix)
            .parse()
            .map_err(|_| ErrorKind::Protocol)?;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("edgeload/", env!("CARGO_PKG_VERSION"))),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = &self.auth {
            h.insert(AUTHORIZATION, a.clone());
        }
        conn.sender.ready().await.map_err(|e| ErrorKind::from_hyper(&e))?;
        let response = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| ErrorKind::from_hyper(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ErrorKind::from_hyper(&e))?
            .to_bytes();
        Ok(ApiResponse {
            status,
            body: keep_body.then_some(body),
        })
    }

    /// `POST /api/routes<key>`.
    pub async fn add(&self, conn: &mut Option<ApiConn>, key: &str) -> Result<ApiResponse, ErrorKind> {
        let path = format!("/api/routes{key}");
        self.call(conn, Method::POST, &path, self.route_body.clone(), false)
            .await
    }

    /// `DELETE /api/routes<key>`.
    pub async fn delete(&self, conn: &mut Option<ApiConn>, key: &str) -> Result<ApiResponse, ErrorKind> {
        let path = format!("/api/routes{key}");
        self.call(conn, Method::DELETE, &path, Bytes::new(), false).await
    }

    /// `GET /api/routes`, with the body when `keep_body`.
    pub async fn get_all(&self, conn: &mut Option<ApiConn>, keep_body: bool) -> Result<ApiResponse, ErrorKind> {
        self.call(conn, Method::GET, "/api/routes", Bytes::new(), keep_body)
            .await
    }

    /// `POST /api/batch` (edgeproxy only).
    pub async fn batch(&self, conn: &mut Option<ApiConn>, body: Bytes) -> Result<ApiResponse, ErrorKind> {
        self.call(conn, Method::POST, "/api/batch", body, false).await
    }
}

/// `Ok` for the status an operation expects; a 4xx/5xx is `status_NNN`, any other status a
/// `protocol` error.
pub fn expect_status(status: u16, expected: u16) -> Result<(), ErrorKind> {
    if status == expected {
        Ok(())
    } else {
        Err(ErrorKind::from_status(status).unwrap_or(ErrorKind::Protocol))
    }
}

/// The number of routes in a `GET /api/routes` body (a JSON object keyed by route).
pub fn count_routes(body: &[u8]) -> Option<usize> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()? {
        serde_json::Value::Object(m) => Some(m.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tokens() {
        let t = ApiTarget::new(
            "http://127.0.0.1:8001/",
            Some("secret"),
            "http://127.0.0.1:9",
            &TlsOptions::default(),
        )
        .unwrap();
        assert_eq!(t.prefix, "");
        assert_eq!(t.auth.as_ref().unwrap(), "token secret");
        assert_eq!(&t.route_body[..], br#"{"target":"http://127.0.0.1:9"}"#);
        let t = ApiTarget::new("http://127.0.0.1:8001/hub/", None, "http://x", &TlsOptions::default()).unwrap();
        assert_eq!(t.prefix, "/hub");
        assert!(t.auth.is_none());
        let plain = TlsOptions::default();
        assert!(ApiTarget::new("ftp://127.0.0.1:8001", None, "http://x", &plain).is_err());
        assert!(ApiTarget::new("http:///api", None, "http://x", &plain).is_err());
        assert!(ApiTarget::new("http://127.0.0.1:1", Some("bad\ntoken"), "http://x", &plain).is_err());
        let insecure = TlsOptions {
            insecure: true,
            cacert: None,
        };
        let t = ApiTarget::new("https://127.0.0.1/", None, "http://x", &insecure).unwrap();
        assert_eq!(t.endpoint.addr.port(), 443);
        assert!(t.tls.is_some());
    }

    #[test]
    fn statuses_and_route_counts() {
        assert_eq!(expect_status(201, 201), Ok(()));
        assert_eq!(expect_status(403, 201), Err(ErrorKind::Status(403)));
        assert_eq!(expect_status(200, 201), Err(ErrorKind::Protocol));
        assert_eq!(count_routes(br#"{"/a": {}, "/b": {}}"#), Some(2));
        assert_eq!(count_routes(b"[]"), None);
    }
}
