//! A small HTTP/1.1 client for the hub's own calls: the proxy's admin API, servers' readiness
//! checks, and the built-in server's activity reports. One connection per call: these are few,
//! on loopback or in-cluster, and a fresh connection never hits a half-closed pooled one.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Largest response body read (a routing table of tens of thousands of routes fits).
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} is not an http:// URL with a host and port")]
    Url(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
}

/// An `http://host:port/path` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port`
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, ClientError> {
        let bad = || ClientError::Url(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad());
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpUrl {
            authority,
            path: path.to_owned(),
        })
    }

    /// This URL with `path` (which starts with `/`) appended to its own path, one `/` between.
    pub fn join(&self, path: &str) -> HttpUrl {
        HttpUrl {
            authority: self.authority.clone(),
            path: format!("{}{}", self.path.trim_end_matches('/'), path),
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends one request and reads the whole answer, all within `timeout`.
pub async fn call(
    method: Method,
    url: &HttpUrl,
    headers: &[(header::HeaderName, String)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let name = || url.authority.clone();
    let exchange = async {
        let tcp = TcpStream::connect(&url.authority)
            .await
            .map_err(|e| ClientError::Connect(name(), e))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ClientError::Http(name(), e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url.path)
            .header(header::HOST, &url.authority);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(name(), e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(name(), e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| ClientError::Http(name(), e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(name(), timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8001").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str()), ("127.0.0.1:8001", "/"));
        let u = HttpUrl::parse("http://hub/x/").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str()), ("hub:80", "/x/"));
        assert_eq!(u.join("/api/routes").path, "/x/api/routes");
        assert_eq!(HttpUrl::parse("http://[::1]:9/").unwrap().authority, "[::1]:9");
        for bad in ["https://x:1", "http://", "ftp://x"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
