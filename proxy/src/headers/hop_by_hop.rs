//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy must not
//! forward them. configurable-http-proxy forwards them anyway (a client's `Connection: close`
//! reaches the upstream); we follow the RFC, which also keeps pooled upstream
//! connections alive.
//!
//! Upgrade requests are the exception: `Connection: upgrade` and `Upgrade` are what ask the
//! upstream to switch protocols, so the tunnel code sets them back explicitly.

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop names, each with a bit for the one-pass presence scan. A `static`: a `const`
/// array is built and dropped at every use, which measured some 400 instructions a request.
static HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
///
/// This runs on every request and every response (upstreams answer `Connection: keep-alive`), so
/// it scans the names once (standard names compare as enum tags, no hashing), removes only what
/// is present, and allocates only for unusual `Connection` tokens.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| connection_tokens(value.as_bytes()))
            .filter_map(named_by_connection)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether `name` is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// A header name as the relay of a raw head (a response's, or a request's) needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawName {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    /// Another of `HOP_BY_HOP`.
    HopByHop,
    Date,
    Location,
    Host,
    Expect,
    /// `X-Forwarded-*`: the proxy writes `-For`, `-Port`, `-Proto` and `-Host` itself, joined with
    /// what the client sent (see `forwarded::add_forwarded`, which looks for the same prefix).
    XForwarded,
    Other,
}

/// Classifies a header name as it came off the wire (any case), without building a
/// `HeaderName`: by length first, so most names cost one comparison.
pub fn classify_raw(name: &[u8]) -> RawName {
    let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is(b"te") => RawName::HopByHop,
        4 if is(b"date") => RawName::Date,
        4 if is(b"host") => RawName::Host,
        6 if is(b"expect") => RawName::Expect,
        7 if is(b"upgrade") => RawName::Upgrade,
        7 if is(b"trailer") => RawName::HopByHop,
        8 if is(b"location") => RawName::Location,
        10 if is(b"connection") => RawName::Connection,
        10 if is(b"keep-alive") => RawName::HopByHop,
        14 if is(b"content-length") => RawName::ContentLength,
        16 if is(b"proxy-connection") => RawName::HopByHop,
        17 if is(b"transfer-encoding") => RawName::TransferEncoding,
        n if n > 12 && name[..12].eq_ignore_ascii_case(b"x-forwarded-") => RawName::XForwarded,
        _ => RawName::Other,
    }
}

/// Whether a `Connection` value names headers besides the fixed hop-by-hop ones (which must then
/// be removed too).
pub fn connection_names_others(value: &[u8]) -> bool {
    // The value nearly every message carries, without splitting it.
    if value.eq_ignore_ascii_case(b"keep-alive") {
        return false;
    }
    connection_tokens(value).any(|t| named_by_connection(t).is_some())
}

fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// The header a `Connection` token names, unless it is an option (`close`, `keep-alive`), a
/// fixed hop-by-hop name, which goes anyway, or `Host`: every HTTP/1.1 request carries one
/// (RFC 9112 §3.2), so the proxy keeps the client's rather than forward a request without it.
fn named_by_connection(token: &[u8]) -> Option<HeaderName> {
    // `keep-alive` first: upstreams answer with it, so it is the token seen on nearly every
    // response.
    let known = token.is_empty()
        || token.eq_ignore_ascii_case(b"keep-alive")
        || token.eq_ignore_ascii_case(b"close")
        || matches!(
            classify_raw(token),
            RawName::Connection | RawName::Upgrade | RawName::TransferEncoding | RawName::HopByHop | RawName::Host
        );
    if known {
        None
    } else {
        HeaderName::from_bytes(token).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case; 5] = [
            (&[("host", "a"), ("accept", "*/*")], &["host", "accept"]),
            (&[("host", "a"), ("connection", "close")], &["host"]),
            (&[("host", "a"), ("connection", "Host, x-a"), ("x-a", "1")], &["host"]),
            (
                &[
                    ("connection", "keep-alive, x-secret"),
                    ("x-secret", "1"),
                    ("keep-alive", "timeout=5"),
                    ("cookie", "c"),
                ],
                &["cookie"],
            ),
            (
                &[
                    ("te", "trailers"),
                    ("trailer", "x"),
                    ("transfer-encoding", "chunked"),
                    ("upgrade", "websocket"),
                    ("proxy-connection", "keep-alive"),
                    ("x-ok", "1"),
                ],
                &["x-ok"],
            ),
        ];
        for (input, kept) in cases {
            let mut h = headers(input);
            remove_hop_by_hop(&mut h);
            let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            names.sort();
            let mut want = kept.to_vec();
            want.sort();
            assert_eq!(names, want, "from {input:?}");
        }
        assert!(connection_names_others(b"keep-alive, x-secret"));
        assert!(!connection_names_others(b"Keep-Alive, close,Upgrade"));
    }

    #[test]
    fn raw_classification_agrees_with_the_hop_by_hop_list() {
        for name in HOP_BY_HOP.iter() {
            for spelled in [name.as_str().to_owned(), name.as_str().to_ascii_uppercase()] {
                assert_ne!(classify_raw(spelled.as_bytes()), RawName::Other, "{spelled}");
            }
        }
        assert_eq!(classify_raw(b"Content-Type"), RawName::Other);
        assert_eq!(classify_raw(b"X-Connection"), RawName::Other);
        assert_eq!(classify_raw(b"LOCATION"), RawName::Location);
        for name in [
            "X-Forwarded-For",
            "x-forwarded-port",
            "X-FORWARDED-PROTO",
            "x-forwarded-host",
        ] {
            assert_eq!(classify_raw(name.as_bytes()), RawName::XForwarded, "{name}");
        }
        for name in ["x-forwarded-", "x-forwardedfor", "forwarded"] {
            assert_eq!(classify_raw(name.as_bytes()), RawName::Other, "{name}");
        }
        assert_eq!(classify_raw(b"Host"), RawName::Host);
        assert_eq!(classify_raw(b"upgrade"), RawName::Upgrade);
    }
}
