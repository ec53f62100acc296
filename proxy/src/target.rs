//! Route targets, parsed once when a route is added rather than on every request.
//!
//! CHP accepts any string as a target and fails at request time (500 for an unsupported scheme
//! or an unparseable URL); we keep that contract by storing the parse error and
//! answering 500 when a request is routed to it.

use std::sync::Arc;

use crate::request_path::percent_decode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    /// `http+unix://<percent-encoded socket path>` (also spelled `unix+http`).
    Unix,
}

/// Where a route's traffic goes. Kept compact (two or three allocations) because there is one
/// per route and a hub may hold 100,000 routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub port: u16,
    /// Identifies the upstream for connection pooling: `http://`, `https://` or `unix:` followed
    /// by the authority (or socket path). Shared with the pool, which clones the `Arc`.
    pool_key: Arc<str>,
    /// Host name or IP (IPv6 without brackets); for `Unix`, the decoded socket path.
    host: Box<str>,
    /// The target's own path and query, when it has more than `/`.
    path_and_query: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target {0:?} is not a URL")]
    NotAUrl(String),
    #[error("target {0:?} has an unsupported scheme (use http, https or http+unix)")]
    UnsupportedScheme(String),
}

impl Target {
    pub fn pool_key(&self) -> &Arc<str> {
        &self.pool_key
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host[:port]` as a `Host` header carries it: the port only when not the default.
    pub fn authority(&self) -> &str {
        match self.scheme {
            Scheme::Unix => "localhost",
            Scheme::Http => &self.pool_key["http://".len()..],
            Scheme::Https => &self.pool_key["https://".len()..],
        }
    }

    /// The target's own path and query as a request-target (at least `/`).
    pub fn path_and_query(&self) -> &str {
        self.path_and_query.as_deref().unwrap_or("/")
    }

    /// The target's own path (at least `/`), prepended to forwarded paths.
    pub fn path(&self) -> &str {
        match &self.path_and_query {
            Some(pq) => pq.split_once('?').map_or(pq, |(p, _)| p),
            None => "/",
        }
    }

    pub fn query(&self) -> Option<&str> {
        self.path_and_query
            .as_deref()
            .and_then(|pq| pq.split_once('?'))
            .map(|(_, q)| q)
    }

    pub fn parse(raw: &str) -> Result<Target, TargetError> {
        let not_a_url = || TargetError::NotAUrl(raw.to_owned());
        let (scheme, rest) = raw.split_once("://").ok_or_else(not_a_url)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "http+unix" | "unix+http" => Scheme::Unix,
            _ => return Err(TargetError::UnsupportedScheme(raw.to_owned())),
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = match tail {
            "" | "/" => None,
            t if t.starts_with('?') => Some(format!("/{t}").into_boxed_str()),
            t => Some(t.to_owned().into_boxed_str()),
        };
        // Credentials in a target URL are not forwarded; drop them like a browser would.
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        if host_port.is_empty() {
            return Err(not_a_url());
        }
        if scheme == Scheme::Unix {
            let socket = percent_decode(host_port).map_err(|_| not_a_url())?.into_owned();
            return Ok(Target {
                scheme,
                port: 0,
                pool_key: format!("unix:{socket}").into(),
                host: socket.into_boxed_str(),
                path_and_query,
            });
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        let (host, port) = split_host_port(host_port).ok_or_else(not_a_url)?;
        let port = port.unwrap_or(default_port);
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let prefix = if scheme == Scheme::Https { "https://" } else { "http://" };
        Ok(Target {
            scheme,
            port,
            pool_key: format!("{prefix}{authority}").into(),
            host: host.into(),
            path_and_query,
        })
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => Some(p.parse().ok()?),
            Some(_) => None,
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = if port.is_empty() {
                None
            } else {
                Some(port.parse().ok()?)
            };
            (!host.is_empty()).then_some((host, port))
        }
        Some(_) => None,
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_targets() {
        let t = Target::parse("http://127.0.0.1:8912/foo").unwrap();
        assert_eq!(
            (t.scheme, t.host(), t.port, t.authority(), t.path()),
            (Scheme::Http, "127.0.0.1", 8912, "127.0.0.1:8912", "/foo")
        );
        let t = Target::parse("https://hub.example").unwrap();
        assert_eq!(
            (t.port, t.authority(), t.path(), t.query()),
            (443, "hub.example", "/", None)
        );
        let t = Target::parse("http://up/sub/path?tq=1").unwrap();
        assert_eq!((t.path(), t.query()), ("/sub/path", Some("tq=1")));
        let t = Target::parse("http://up?tq=1").unwrap();
        assert_eq!((t.path(), t.query()), ("/", Some("tq=1")));
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!((t.host(), t.port, t.authority()), ("::1", 9000, "[::1]:9000"));
        let t = Target::parse("http+unix://%2Ftmp%2Fx.sock/base").unwrap();
        assert_eq!(
            (t.scheme, t.host(), t.path(), t.authority()),
            (Scheme::Unix, "/tmp/x.sock", "/base", "localhost")
        );
        let t = Target::parse("unix+http://%2Ftmp%2Fy.sock").unwrap();
        assert_eq!(t.host(), "/tmp/y.sock");
        let (a, b) = (
            Target::parse("http://h:1").unwrap(),
            Target::parse("https://h:1").unwrap(),
        );
        assert_ne!(
            a.pool_key(),
            b.pool_key(),
            "plain and TLS connections never share a pool"
        );
    }

    #[test]
    fn rejects_what_chp_fails_on() {
        assert!(matches!(Target::parse("not a url"), Err(TargetError::NotAUrl(_))));
        assert!(matches!(
            Target::parse("ftp://x/y"),
            Err(TargetError::UnsupportedScheme(_))
        ));
        assert!(matches!(Target::parse("http://"), Err(TargetError::NotAUrl(_))));
        assert!(matches!(
            Target::parse("http://host:notaport/"),
            Err(TargetError::NotAUrl(_))
        ));
    }
}
