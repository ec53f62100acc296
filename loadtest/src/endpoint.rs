//! The server a URL names, for the clients that talk to one server (WebSocket, journey, admin
//! API): its address, resolved once before the run so that DNS is never part of a latency, the
//! `host:port` for the `Host` header, whether it speaks TLS and the rest of the URL.

use std::net::{SocketAddr, ToSocketAddrs};

use http::Uri;
use rustls::pki_types::ServerName;

use crate::tls::{TlsClient, TlsError, TlsOptions};

/// The URL schemes a client accepts: plain ones and their TLS counterparts.
#[derive(Debug, Clone, Copy)]
pub struct Schemes {
    pub plain: &'static [&'static str],
    pub secure: &'static [&'static str],
}

/// HTTP clients.
pub const HTTP: Schemes = Schemes {
    plain: &["http"],
    secure: &["https"],
};
/// WebSocket clients, which take the HTTP spelling too.
pub const WEBSOCKET: Schemes = Schemes {
    plain: &["ws", "http"],
    secure: &["wss", "https"],
};

/// Why a URL names no usable server.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: String },
    #[error("{url:?}: {error}")]
    Tls { url: String, error: TlsError },
}

/// A server and the path of the URL that named it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `host[:port]` as written in the URL, for the `Host` header.
    pub authority: String,
    /// For TLS schemes: the name the certificate must carry (and the SNI sent).
    pub tls: Option<ServerName<'static>>,
    /// Path and query as written (`/` when the URL has none).
    pub path_and_query: String,
}

impl Endpoint {
    /// Parses an absolute URL of one of `schemes` and resolves its host (port 80, or 443 for TLS
    /// schemes, when absent).
    pub fn parse(url: &str, schemes: Schemes) -> Result<Endpoint, EndpointError> {
        let bad = |reason: String| EndpointError::Url {
            url: url.to_owned(),
            reason,
        };
        let expected = || {
            let all: Vec<String> = schemes
                .plain
                .iter()
                .chain(schemes.secure)
                .map(|s| format!("{s}://"))
                .collect();
            format!("expected a URL starting with {}", all.join(" or "))
        };
        let uri: Uri = url.parse().map_err(|_| bad(expected()))?;
        let scheme = uri.scheme_str().ok_or_else(|| bad(expected()))?;
        let secure = if schemes.plain.contains(&scheme) {
            false
        } else if schemes.secure.contains(&scheme) {
            true
        } else {
            return Err(bad(expected()));
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| bad("no host".into()))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let resolve_error = |error: String| EndpointError::Resolve {
            host: host.to_owned(),
            error,
        };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| resolve_error(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_error("no address".into()))?;
        let tls = secure
            .then(|| crate::tls::server_name(host))
            .transpose()
            .map_err(|error| EndpointError::Tls {
                url: url.to_owned(),
                error,
            })?;
        Ok(Endpoint {
            addr,
            authority: authority.as_str().to_owned(),
            tls,
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }

    /// The TLS client for this endpoint, when it speaks TLS: offering `alpn`, built from the
    /// run's `--insecure`/`--cacert`.
    pub fn tls_client(&self, options: &TlsOptions, alpn: &[&[u8]]) -> Result<Option<TlsClient>, TlsError> {
        self.tls
            .as_ref()
            .map(|_| TlsClient::new(options, alpn, false))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_ports_and_paths() {
        let e = Endpoint::parse("https://127.0.0.1/hub/api?x=1", HTTP).unwrap();
        assert_eq!(e.addr.port(), 443);
        assert_eq!(e.authority, "127.0.0.1");
        assert!(e.tls.is_some());
        assert_eq!(e.path_and_query, "/hub/api?x=1");
        let e = Endpoint::parse("http://127.0.0.1:8001", HTTP).unwrap();
        assert_eq!(
            (e.addr.port(), e.tls.is_none(), e.path_and_query.as_str()),
            (8001, true, "/")
        );
        let e = Endpoint::parse("wss://[::1]:9/ws", WEBSOCKET).unwrap();
        assert_eq!((e.addr.port(), e.authority.as_str()), (9, "[::1]:9"));
        assert!(e.tls.is_some());
        assert!(Endpoint::parse("ws://127.0.0.1/", WEBSOCKET).unwrap().tls.is_none());
    }

    #[test]
    fn bad_urls_are_named() {
        for (url, schemes, want) in [
            (
                "ftp://127.0.0.1/",
                HTTP,
                "expected a URL starting with http:// or https://",
            ),
            ("ws://127.0.0.1/", HTTP, "with http:// or https://"),
            ("127.0.0.1:80", HTTP, "expected"),
            ("http:///path", HTTP, "expected"),
            ("ftp://x/", WEBSOCKET, "ws:// or http:// or wss:// or https://"),
        ] {
            let e = Endpoint::parse(url, schemes).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(url), "{url}: {e}");
        }
    }
}
