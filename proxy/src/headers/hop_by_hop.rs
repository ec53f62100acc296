//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy must not
//! forward them. configurable-http-proxy forwards them anyway (a client's `Connection: close`
//! reaches the upstream, chp-spec §5.3); we follow the RFC, which also keeps pooled upstream
//! connections alive.
//!
//! Upgrade requests are the exception: `Connection: upgrade` and `Upgrade` are what ask the
//! upstream to switch protocols, so the tunnel code sets them back explicitly.

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Fast path: one pass over the names (standard names compare as enum tags, no hashing)
    // finds nothing to do for the common request.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
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
        let cases: [Case; 4] = [
            (&[("host", "a"), ("accept", "*/*")], &["host", "accept"]),
            (&[("host", "a"), ("connection", "close")], &["host"]),
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
    }
}
