//! `X-Forwarded-*` headers, as configurable-http-proxy writes them:
//! `For`, `Port` and `Proto` are appended to what the client sent, joined with `,` and no space;
//! `Host` is set only when absent, and never on WebSocket upgrades.
//!
//! One deliberate difference: an IPv4 client reaching a dual-stack listener is written as
//! `127.0.0.1`, not CHP's `::ffff:127.0.0.1`.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{HOST, HeaderName, HeaderValue};

use super::lines::HeaderLines;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy knows about the client connection, prepared once per connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// `None` for clients on a UNIX socket.
    pub addr: Option<IpAddr>,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// `addr` as an `X-Forwarded-For` value, formatted once rather than per request.
    forwarded_for: Option<HeaderValue>,
}

impl ClientInfo {
    pub fn new(addr: Option<IpAddr>, tls: bool) -> Self {
        let forwarded_for = addr.and_then(|a| HeaderValue::from_str(&a.to_canonical().to_string()).ok());
        ClientInfo {
            addr,
            tls,
            forwarded_for,
        }
    }
}

/// The `X-Forwarded-*` lines of a request whose client sent none of them (the common case),
/// rendered straight into the upstream request's head: inserting four custom names into the
/// map grew and re-hashed it on every request, and rendering them into a buffer of their own
/// cost an allocation.
pub struct ForwardedLines {
    forwarded_for: Option<HeaderValue>,
    host: Option<HeaderValue>,
    tls: bool,
    websocket: bool,
}

impl HeaderLines for ForwardedLines {
    fn write_to(&self, out: &mut Vec<u8>) {
        // Each name with its `: ` is one constant: written apart they were two more copies a line.
        let mut line = |name_colon: &[u8], value: &[u8]| {
            out.extend_from_slice(name_colon);
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        if let Some(value) = &self.forwarded_for {
            line(b"x-forwarded-for: ", value.as_bytes());
        }
        line(b"x-forwarded-port: ", port(self.host.as_ref(), self.tls));
        line(b"x-forwarded-proto: ", proto(self.websocket, self.tls).as_bytes());
        if !self.websocket {
            line(
                b"x-forwarded-host: ",
                self.host.as_ref().map_or(&b""[..], |h| h.as_bytes()),
            );
        }
    }
}

fn port(host: Option<&HeaderValue>, tls: bool) -> &[u8] {
    let default_port: &[u8] = if tls { b"443" } else { b"80" };
    host.and_then(|h| host_port(h.as_bytes())).unwrap_or(default_port)
}

fn proto(websocket: bool, tls: bool) -> &'static str {
    match (websocket, tls) {
        (false, false) => "http",
        (false, true) => "https",
        (true, false) => "ws",
        (true, true) => "wss",
    }
}

/// Adds the `X-Forwarded-*` headers for a request whose `Host` (or `:authority`) is `host`.
///
/// When the client sent none of them they come back as lines for the upstream connection to
/// write after the request's other headers. Otherwise they are merged into `headers`, joined
/// with what the client sent, and nothing comes back. Other `X-Forwarded-` names, such as the
/// identity headers edge auth has just set, need no merging and leave the lines alone.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
    websocket: bool,
) -> Option<ForwardedLines> {
    let present = !headers.is_empty()
        && [X_FORWARDED_FOR, X_FORWARDED_PORT, X_FORWARDED_PROTO, X_FORWARDED_HOST]
            .iter()
            .any(|name| headers.contains_key(name));
    if !present {
        return Some(ForwardedLines {
            forwarded_for: client.forwarded_for.clone(),
            host: host.cloned(),
            tls: client.tls,
            websocket,
        });
    }
    let port = port(host, client.tls);
    let proto = proto(websocket, client.tls);
    if let Some(value) = &client.forwarded_for {
        append(headers, X_FORWARDED_FOR, value.clone());
    }
    if let Ok(port) = HeaderValue::from_bytes(port) {
        append(headers, X_FORWARDED_PORT, port);
    }
    append(headers, X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if !websocket && !headers.contains_key(X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST, host.cloned().unwrap_or(HeaderValue::from_static("")));
    }
    None
}

/// The request's host as the client named it: `Host`, else the URI authority (HTTP/2).
pub fn request_host(headers: &HeaderMap, uri: &http::Uri) -> Option<HeaderValue> {
    host_or_authority(headers.get(HOST).cloned(), uri)
}

/// The `Host` value `host`, else the URI authority.
pub fn host_or_authority(host: Option<HeaderValue>, uri: &http::Uri) -> Option<HeaderValue> {
    host.or_else(|| uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

/// The port part of a `Host` value, if any (`example.com:8443` → `8443`, `[::1]:80` → `80`):
/// the digits after the last `:`, when nothing else (such as an IPv6 literal's `]`) follows it.
fn host_port(host: &[u8]) -> Option<&[u8]> {
    let digits = host.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let colon = host.len().checked_sub(digits + 1)?;
    (digits > 0 && host[colon] == b':').then(|| &host[colon + 1..])
}

fn append(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if !headers.contains_key(&name) {
        headers.insert(name, value);
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for existing in headers.get_all(&name) {
        joined.extend_from_slice(existing.as_bytes());
        joined.push(b',');
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(addr: &str, tls: bool) -> ClientInfo {
        ClientInfo::new(Some(addr.parse().unwrap()), tls)
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    /// `add_forwarded`, with the rendered lines parsed back into the map: what the upstream sees.
    fn forwarded(h: &mut HeaderMap, client: &ClientInfo, host: Option<&HeaderValue>, websocket: bool) {
        let mut lines = Vec::new();
        add_forwarded(h, client, host, websocket).write_to(&mut lines);
        for line in std::str::from_utf8(&lines).unwrap().split_terminator("\r\n") {
            let (name, value) = line.split_once(": ").unwrap();
            assert!(!h.contains_key(name), "{name} rendered although present");
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), hv(value));
        }
    }

    #[test]
    fn fresh_request_gets_all_four() {
        let mut h = HeaderMap::new();
        forwarded(
            &mut h,
            &client("127.0.0.1", false),
            Some(&hv("hub.example:18000")),
            false,
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(get(&h, "x-forwarded-port"), Some("18000"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("hub.example:18000"));
    }

    #[test]
    fn other_x_forwarded_names_leave_the_four_to_be_written_as_lines() {
        // Edge auth's identity headers are set before forwarding; they need no merging, and
        // the four come back as lines, the map untouched.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "alice".parse().unwrap());
        let lines = add_forwarded(&mut h, &client("127.0.0.1", false), Some(&hv("hub:80")), false);
        assert!(lines.is_some());
        assert_eq!(h.len(), 1);
        // One of the four sent by the client is merged into the map, the rest added there.
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        forwarded(&mut h, &client("127.0.0.1", false), Some(&hv("hub:80")), false);
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https,http"));
        assert_eq!(get(&h, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(get(&h, "x-forwarded-user"), Some("alice"));
    }

    #[test]
    fn existing_values_are_appended_without_space_and_host_kept() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-forwarded-port", "443".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "orig.example".parse().unwrap());
        forwarded(
            &mut h,
            &client("::ffff:127.0.0.1", false),
            Some(&hv("127.0.0.1:18000")),
            false,
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("1.2.3.4,127.0.0.1"));
        assert_eq!(get(&h, "x-forwarded-port"), Some("443,18000"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https,http"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("orig.example"));
    }

    #[test]
    fn the_port_is_the_digits_after_the_last_colon() {
        let cases = [
            ("example.com:8443", Some("8443")),
            ("[::1]:80", Some("80")),
            ("a:b:81", Some("81")),
            ("example.com", None),
            ("example.com:", None),
            ("[::1]", None),
            ("[::1]5", None),
            ("1234", None),
            ("host:12a", None),
            ("", None),
        ];
        for (host, port) in cases {
            assert_eq!(host_port(host.as_bytes()), port.map(str::as_bytes), "{host}");
        }
    }

    #[test]
    fn port_defaults_by_tls_and_websockets_get_ws_and_no_host() {
        let cases = [
            (Some("example.com"), false, false, "80", "http"),
            (Some("example.com"), true, false, "443", "https"),
            (Some("example.com:8443"), true, false, "8443", "https"),
            (Some("[::1]:9000"), false, false, "9000", "http"),
            (Some("[::1]"), false, false, "80", "http"),
            (None, false, true, "80", "ws"),
            (Some("example.com"), true, true, "443", "wss"),
        ];
        for (host, tls, ws, port, proto) in cases {
            let mut h = HeaderMap::new();
            forwarded(&mut h, &client("10.0.0.1", tls), host.map(hv).as_ref(), ws);
            assert_eq!(get(&h, "x-forwarded-port"), Some(port), "{host:?}");
            assert_eq!(get(&h, "x-forwarded-proto"), Some(proto), "{host:?}");
            assert_eq!(h.contains_key("x-forwarded-host"), !ws, "{host:?}");
        }
    }
}
