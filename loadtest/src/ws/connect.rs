//! Opening a WebSocket: TCP connect and the HTTP/1.1 upgrade (RFC 6455 §4.1), through
//! tokio-tungstenite with a reduced [`WebSocketConfig`].
//!
//! tungstenite allocates a 128 KiB read buffer per socket by default and lets its write buffer
//! grow to 128 KiB before writing; 10,000 sockets would then need about 2.5 GB. edgeload sizes
//! the read buffer per scenario (512 B for idle sockets, more for large messages) and writes
//! every frame at once (`write_buffer_size = 0`).
//!
//! The upgrade itself is done here rather than by tungstenite's client handshake, which hands
//! its 4 KiB handshake buffer on to the socket as its read buffer whatever the configuration
//! says. The target is resolved once and the request head written once; each connection only
//! appends a fresh `Sec-WebSocket-Key`, checks the `101` answer and its `Sec-WebSocket-Accept`,
//! and gives the socket (and any bytes that followed the answer) to tungstenite.

use std::net::{SocketAddr, ToSocketAddrs};

use http::Uri;
use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::error_kind::ErrorKind;

/// A client WebSocket over plain TCP.
pub type WsStream = WebSocketStream<TcpStream>;

/// A URL or header that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?}: expected a ws:// (or http://) URL, e.g. ws://127.0.0.1:8080/ws")]
    Url(String),
    #[error("{0:?}: wss:// (TLS) is not supported yet; put a TLS terminator in front or use ws://")]
    Tls(String),
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: String },
    #[error("--header {0:?}: expected \"Name: value\"")]
    Header(String),
}

/// Where and how to open WebSockets.
#[derive(Debug, Clone)]
pub struct WsTarget {
    pub url: String,
    pub addr: SocketAddr,
    /// The upgrade request up to the value of `Sec-WebSocket-Key`.
    head: Vec<u8>,
    pub config: WebSocketConfig,
}

/// Largest upgrade response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The client's WebSocket settings: a `read_buffer` of that many bytes, frames written at once,
/// and messages up to `max_message` bytes in one frame.
pub fn client_config(read_buffer: usize, max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

impl WsTarget {
    /// Parses `url` (ws:// or http://), resolves its host once and prepares the upgrade request
    /// with the extra `headers` ("Name: value").
    pub fn new(url: &str, headers: &[String], config: WebSocketConfig) -> Result<WsTarget, TargetError> {
        let rest = if let Some(r) = url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://")) {
            r
        } else if url.starts_with("wss://") || url.starts_with("https://") {
            return Err(TargetError::Tls(url.to_owned()));
        } else {
            return Err(TargetError::Url(url.to_owned()));
        };
        let uri: Uri = format!("ws://{rest}")
            .parse()
            .map_err(|_| TargetError::Url(url.to_owned()))?;
        let authority = uri.authority().ok_or_else(|| TargetError::Url(url.to_owned()))?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| TargetError::Resolve {
                host: host.clone(),
                error: e.to_string(),
            })?
            .next()
            .ok_or_else(|| TargetError::Resolve {
                host: host.clone(),
                error: "no address".into(),
            })?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n"
        )
        .into_bytes();
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("user-agent:"))
        {
            head.extend_from_slice(concat!("User-Agent: edgeload/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes());
        }
        for h in headers {
            let (name, value) = h.split_once(':').ok_or_else(|| TargetError::Header(h.clone()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| TargetError::Header(h.clone()))?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| TargetError::Header(h.clone()))?;
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Sec-WebSocket-Key: ");
        Ok(WsTarget {
            url: url.to_owned(),
            addr,
            head,
            config,
        })
    }

    /// Opens a WebSocket: TCP connect (with `TCP_NODELAY`) and the upgrade. The caller bounds
    /// the time it may take.
    pub async fn connect(&self) -> Result<WsStream, ErrorKind> {
        let mut tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| ErrorKind::from_connect(&e))?;
        let _ = tcp.set_nodelay(true);
        let key = generate_key();
        let mut request = Vec::with_capacity(self.head.len() + key.len() + 4);
        request.extend_from_slice(&self.head);
        request.extend_from_slice(key.as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        tcp.write_all(&request).await.map_err(|e| ErrorKind::from_io(&e))?;
        drop(request);
        let mut buf = Vec::with_capacity(1024);
        let head_len = loop {
            if tcp.read_buf(&mut buf).await.map_err(|e| ErrorKind::from_io(&e))? == 0 {
                return Err(ErrorKind::Closed);
            }
            if let Some(len) = check_response(&buf, &key)? {
                break len;
            }
            if buf.len() >= MAX_RESPONSE_HEAD {
                return Err(ErrorKind::Protocol);
            }
            buf.reserve(1024);
        };
        Ok(if head_len == buf.len() {
            drop(buf);
            WebSocketStream::from_raw_socket(tcp, Role::Client, Some(self.config)).await
        } else {
            // Frames the server sent right after its answer.
            let tail = buf[head_len..].to_vec();
            drop(buf);
            WebSocketStream::from_partially_read(tcp, tail, Role::Client, Some(self.config)).await
        })
    }
}

/// Checks an upgrade answer (RFC 6455 §4.1, client requirements 1–4): `Ok(Some(head length))`
/// when complete and valid, `Ok(None)` when more bytes are needed, the error kind otherwise
/// (`status_NNN` for another status than 101).
pub fn check_response(buf: &[u8], key: &str) -> Result<Option<usize>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::Protocol),
    };
    let code = response.code.unwrap_or(0);
    if code != 101 {
        return Err(ErrorKind::Status(code));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let upgrade_ok = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    let accept_ok = header("sec-websocket-accept").is_some_and(|v| v == derive_accept_key(key.as_bytes()).as_bytes());
    if upgrade_ok && accept_ok {
        Ok(Some(len))
    } else {
        Err(ErrorKind::Protocol)
    }
}

/// The error kind of a WebSocket failure. An upgrade answered with another status than 101
/// counts as `status_NNN`.
pub fn classify(e: &WsError) -> ErrorKind {
    match e {
        WsError::Io(io) => ErrorKind::from_io(io),
        WsError::Http(response) => ErrorKind::Status(response.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ErrorKind::Closed,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ErrorKind::Reset,
        _ => ErrorKind::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let cfg = client_config(512, 1 << 20);
        let t = WsTarget::new("ws://127.0.0.1:9/ws?x=1", &["X-A: b".into()], cfg).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        let head = String::from_utf8(t.head.clone()).unwrap();
        assert!(
            head.starts_with("GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-a: b\r\n"), "{head}");
        assert!(head.ends_with("\r\nSec-WebSocket-Key: "), "{head}");
        assert!(WsTarget::new("http://127.0.0.1/", &[], cfg).unwrap().addr.port() == 80);
        let cases = [
            ("wss://h/", "not supported"),
            ("ftp://h/", "expected a ws://"),
            ("ws://127.0.0.1:1/", ""),
        ];
        for (url, want) in cases {
            match WsTarget::new(url, &[], cfg) {
                Ok(_) => assert!(want.is_empty(), "{url} should fail"),
                Err(e) => assert!(e.to_string().contains(want), "{url}: {e}"),
            }
        }
        assert!(WsTarget::new("ws://127.0.0.1/", &["nocolon".into()], cfg).is_err());
    }

    #[test]
    fn upgrade_answers_are_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_response(ok.as_bytes(), key), Ok(Some(ok.len())));
        assert_eq!(check_response(&ok.as_bytes()[..40], key), Ok(None));
        let wrong_key = ok.replace("s3pP", "AAAA");
        assert_eq!(check_response(wrong_key.as_bytes(), key), Err(ErrorKind::Protocol));
        let refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check_response(refused.as_bytes(), key), Err(ErrorKind::Status(403)));
        assert_eq!(check_response(b"garbage\r\n\r\n", key), Err(ErrorKind::Protocol));
    }
}
