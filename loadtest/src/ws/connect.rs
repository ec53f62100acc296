//! Opening a WebSocket: TCP connect, the TLS handshake for `wss://`, and the HTTP/1.1 upgrade
//! (RFC 6455 §4.1), through tokio-tungstenite with a reduced [`WebSocketConfig`].
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

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::endpoint::{Endpoint, EndpointError};
use crate::error_kind::ErrorKind;
use crate::tls::{ALPN_HTTP1, Stream, TlsClient, TlsError, TlsOptions};

/// A client WebSocket, over TCP or TLS.
pub type WsStream = WebSocketStream<Stream>;

/// A URL or header that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0} (e.g. ws://127.0.0.1:8080/ws)")]
    Url(#[from] EndpointError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("--header {0:?}: expected \"Name: value\"")]
    Header(String),
}

/// Where and how to open WebSockets.
#[derive(Debug, Clone)]
pub struct WsTarget {
    pub url: String,
    pub addr: SocketAddr,
    /// For `wss://`: the TLS client and the server's name.
    tls: Option<(TlsClient, ServerName<'static>)>,
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
    /// Parses `url` (ws://, wss://, or http://, https:// meaning the same), resolves its host
    /// once and prepares the upgrade request with the extra `headers` ("Name: value").
    pub fn new(
        url: &str,
        headers: &[String],
        config: WebSocketConfig,
        tls: &TlsOptions,
    ) -> Result<WsTarget, TargetError> {
        let endpoint = Endpoint::parse(url, crate::endpoint::WEBSOCKET)?;
        let client = endpoint.tls_client(tls, &[ALPN_HTTP1])?;
        let path = &endpoint.path_and_query;
        let authority = &endpoint.authority;
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
            addr: endpoint.addr,
            tls: client.zip(endpoint.tls),
            head,
            config,
        })
    }

    /// Whether the target is `wss://`.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a WebSocket: TCP connect (with `TCP_NODELAY`), the TLS handshake for `wss://`, and
    /// the upgrade; returns the socket and the TLS handshake's start and length. The caller
    /// bounds the time it may take.
    pub async fn connect(&self) -> Result<(WsStream, Option<(Instant, Duration)>), ErrorKind> {
        let tls = self.tls.as_ref().map(|(client, name)| (client, name));
        let opened = crate::tls::open(self.addr, tls).await?;
        let mut tcp = opened.stream;
        let key = generate_key();
        let mut request = Vec::with_capacity(self.head.len() + key.len() + 4);
        request.extend_from_slice(&self.head);
        request.extend_from_slice(key.as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        tcp.write_all(&request).await.map_err(|e| ErrorKind::from_io(&e))?;
        tcp.flush().await.map_err(|e| ErrorKind::from_io(&e))?;
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
        let ws = if head_len == buf.len() {
            drop(buf);
            WebSocketStream::from_raw_socket(tcp, Role::Client, Some(self.config)).await
        } else {
            // Frames the server sent right after its answer.
            let tail = buf[head_len..].to_vec();
            drop(buf);
            WebSocketStream::from_partially_read(tcp, tail, Role::Client, Some(self.config)).await
        };
        Ok((ws, opened.tls_handshake))
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
        let plain = TlsOptions::default();
        let t = WsTarget::new("ws://127.0.0.1:9/ws?x=1", &["X-A: b".into()], cfg, &plain).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        let head = String::from_utf8(t.head.clone()).unwrap();
        assert!(
            head.starts_with("GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-a: b\r\n"), "{head}");
        assert!(head.ends_with("\r\nSec-WebSocket-Key: "), "{head}");
        assert!(
            WsTarget::new("http://127.0.0.1/", &[], cfg, &plain)
                .unwrap()
                .addr
                .port()
                == 80
        );
        let insecure = TlsOptions {
            insecure: true,
            cacert: None,
        };
        let t = WsTarget::new("wss://127.0.0.1/ws", &[], cfg, &insecure).unwrap();
        assert!(t.is_tls() && t.addr.port() == 443);
        let cases = [
            ("ftp://h/", "starting with ws://"),
            ("ws:///x", "expected a URL"),
            ("ws://127.0.0.1:1/", ""),
        ];
        for (url, want) in cases {
            match WsTarget::new(url, &[], cfg, &plain) {
                Ok(_) => assert!(want.is_empty(), "{url} should fail"),
                Err(e) => assert!(e.to_string().contains(want), "{url}: {e}"),
            }
        }
        assert!(WsTarget::new("ws://127.0.0.1/", &["nocolon".into()], cfg, &plain).is_err());
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
