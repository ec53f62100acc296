//! A client's request header lines kept as they arrived, for forwarding without a `HeaderMap`.
//!
//! Building a map for every request head (a name and a value object per line, hashing, two
//! allocations), asking it for `Host`, and writing it out again line by line upstream cost more
//! user-space instructions than anything else a proxied request does, once responses were
//! relayed raw (`raw`). So the HTTP/1 server keeps the head's header block as received and, in
//! the one pass that reads its framing, notes what the proxy asks of a request: the `Host`
//! value, whether it is an upgrade, and whether anything in it needs the map after all. The
//! end-to-end lines (the hop-by-hop ones left out) are kept as runs of the head itself, ready to
//! be written upstream. A request that must be read or edited as a map (edge auth, WebSocket
//! upgrades, custom headers, a `Connection` naming other headers, `X-Forwarded-*` sent by the
//! client) gets one from [`RequestLines::fill_map`], with every line the client sent.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::hop_by_hop::{RawName, classify_raw, connection_names_others};
use super::lines::HeaderLines;
use super::raw::{RawHeaders, RawHeadersBuilder};

/// A request head's header lines, as received.
#[derive(Debug, Clone)]
pub struct RequestLines {
    /// The whole head, request line included.
    head: Bytes,
    /// The `Host` value, where it is in `head`.
    host: Option<(u32, u32)>,
    /// The end-to-end lines: all but the hop-by-hop ones (and an answered `Expect`).
    end_to_end: RawHeaders,
    /// The request has an `Upgrade` header.
    pub upgrade: bool,
    /// Forwarding the end-to-end lines as they are would be wrong: a `Connection` header names
    /// others to remove, the client sent `X-Forwarded-*` to merge with, or `Host` twice.
    pub needs_map: bool,
    /// The server answered `Expect: 100-continue` itself: the line is not the upstream's.
    expect_answered: bool,
}

/// Collects a head's lines while its headers are read in order.
pub struct RequestLinesBuilder {
    lines: RequestLines,
    end_to_end: RawHeadersBuilder,
}

impl RequestLinesBuilder {
    /// Lines will be kept from `head`, the request head as received.
    pub fn new(head: Bytes) -> Self {
        RequestLinesBuilder {
            end_to_end: RawHeadersBuilder::new(head.clone()),
            lines: RequestLines {
                head,
                host: None,
                end_to_end: RawHeaders::default(),
                upgrade: false,
                needs_map: false,
                expect_answered: false,
            },
        }
    }

    /// Notes the header whose name is `name_start..name_end` and whose value is
    /// `value_start..value_end` in the head, classified as `class`.
    pub fn header(&mut self, class: RawName, name_start: usize, value: (usize, usize)) {
        let l = &mut self.lines;
        match class {
            RawName::Connection => l.needs_map |= connection_names_others(&l.head[value.0..value.1]),
            RawName::Upgrade => l.upgrade = true,
            // One at most: the parser refuses a second (RFC 9112 §3.2).
            RawName::Host => l.host = Some((value.0 as u32, value.1 as u32)),
            RawName::XForwarded => l.needs_map = true,
            _ => {}
        }
        if end_to_end(class) {
            self.end_to_end.keep(name_start, value.1, false);
        }
    }

    /// The lines; `expect_answered` when the server answers `Expect: 100-continue` itself.
    pub fn finish(self, expect_answered: bool) -> RequestLines {
        let mut lines = self.lines;
        lines.expect_answered = expect_answered;
        lines.end_to_end = if expect_answered {
            // Rare: an upload asking to continue. Its lines are gathered again without it.
            lines.without_expect()
        } else {
            self.end_to_end.finish()
        };
        lines
    }
}

/// Whether a request header travels past this hop (RFC 9110 §7.6.1): not the ones about this
/// connection, which the server has acted on (framing, persistence, upgrade).
fn end_to_end(class: RawName) -> bool {
    !matches!(
        class,
        RawName::Connection | RawName::Upgrade | RawName::TransferEncoding | RawName::HopByHop
    )
}

/// Each header line of a request head: the offset of its name, the name, and the value's range
/// (in `head`), the value trimmed as httparse trims it. The lines run from after the request
/// line to where the empty line that ends the head starts.
fn each_line(head: &Bytes) -> impl Iterator<Item = (usize, &[u8], (usize, usize))> {
    let start = memchr::memchr(b'\n', head).map_or(head.len(), |i| i + 1);
    let end = head.len().saturating_sub(if head.ends_with(b"\r\n") { 2 } else { 1 });
    let lines = &head[start..end.max(start)];
    // `memchr`, not a byte-at-a-time split: a browser's `Cookie` line alone is hundreds of bytes.
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < lines.len() {
            let line_end = memchr::memchr(b'\n', &lines[at..]).map_or(lines.len(), |i| at + i + 1);
            let (line_start, line) = (start + at, &lines[at..line_end]);
            at = line_end;
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let value = line[colon + 1..].trim_ascii();
            let value_start = value.as_ptr() as usize - line.as_ptr() as usize + line_start;
            return Some((line_start, &line[..colon], (value_start, value_start + value.len())));
        }
        None
    })
}

impl RequestLines {
    /// The `Host` value the client sent, if any.
    pub fn host(&self) -> Option<HeaderValue> {
        let (start, end) = self.host?;
        HeaderValue::from_maybe_shared(self.head.slice(start as usize..end as usize)).ok()
    }

    pub fn has_host(&self) -> bool {
        self.host.is_some()
    }

    /// The lines to forward: all but the hop-by-hop ones, as the client wrote them.
    pub fn end_to_end(&self) -> &RawHeaders {
        &self.end_to_end
    }

    /// Adds every line the client sent to `map` (an answered `Expect` aside), for code that
    /// reads or edits the headers.
    pub fn fill_map(&self, map: &mut HeaderMap) {
        map.reserve(16);
        for (_, name, (start, end)) in each_line(&self.head) {
            if self.expect_answered && classify_raw(name) == RawName::Expect {
                continue;
            }
            // The server's parser has checked names and values already: neither fails here.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(self.head.slice(start..end)),
            ) {
                map.append(name, value);
            }
        }
    }

    /// The end-to-end lines gathered again, the `Expect` line left out.
    fn without_expect(&self) -> RawHeaders {
        let mut kept = RawHeadersBuilder::new(self.head.clone());
        for (name_start, name, (_, value_end)) in each_line(&self.head) {
            let class = classify_raw(name);
            if end_to_end(class) && class != RawName::Expect {
                kept.keep(name_start, value_end, false);
            }
        }
        kept.finish()
    }
}

/// The end-to-end lines of a request, then the lines the proxy adds.
pub struct Forwarding<'a, T>(pub &'a RawHeaders, pub &'a T);

impl<T: HeaderLines> HeaderLines for Forwarding<'_, T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        self.0.write_to(out);
        self.1.write_to(out);
    }
}
