//! Header lines kept as the bytes they arrived in, for relaying without a `HeaderMap`.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// A response's header lines ready to relay to an HTTP/1 client (`name: value\r\n` each, as
/// the upstream spelled them), hop-by-hop ones left out; the framing headers too unless the
/// response has no body, whose `Content-Length` describes the representation. Building a
/// `HeaderMap` only to write it out again was the largest cost left on the request path.
#[derive(Debug, Clone)]
pub struct RawHeaders {
    pub lines: Bytes,
    pub has_date: bool,
}

impl RawHeaders {
    /// Adds the lines to `map`, for a client that needs a map (HTTP/2).
    pub fn fill_map(&self, map: &mut HeaderMap) {
        let mut at = 0;
        for line in self.lines.split(|b| *b == b'\n') {
            let start = at;
            at += line.len() + 1;
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let value = self
                .lines
                .slice(start + colon + 1..start + line.len().saturating_sub(1));
            let value = value.slice(value.len() - value.trim_ascii_start().len()..);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_maybe_shared(value),
            ) {
                map.append(name, value);
            }
        }
    }
}
