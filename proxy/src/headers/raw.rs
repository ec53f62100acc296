//! Header lines kept as the bytes they arrived in, for relaying without a `HeaderMap`.
//!
//! A response's lines are relayed to an HTTP/1 client as the upstream wrote them, hop-by-hop
//! lines left out. The kept lines are runs of the received head itself (shared, not copied):
//! a typical upstream head is one run, `Server` to `Content-Type`, with `Content-Length` and
//! `Connection` cut off its end. Building a `HeaderMap` only to write it out again, and then
//! rendering the lines into a buffer of their own, were the largest user-space costs of a
//! proxied request.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::lines::HeaderLines;

/// Runs kept in place; a head whose kept lines are scattered over more runs is copied instead.
const RUNS: usize = 4;

/// A response's header lines ready to relay to an HTTP/1 client (`name: value\r\n` each, as
/// the upstream spelled them), hop-by-hop ones left out; the framing headers too unless the
/// response has no body, whose `Content-Length` describes the representation.
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    /// What the runs point into: the head as received, or a copy of the kept lines.
    bytes: Bytes,
    runs: [(u32, u32); RUNS],
    count: u8,
    /// One of the lines is a `Date`, so the server adds none.
    pub has_date: bool,
}

impl RawHeaders {
    /// Appends every line to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for &(start, end) in &self.runs[..usize::from(self.count)] {
            out.extend_from_slice(&self.bytes[start as usize..end as usize]);
        }
    }

    /// The lines, each ending in `\r\n`, in order.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.runs[..usize::from(self.count)]
            .iter()
            .flat_map(|&(start, end)| self.bytes[start as usize..end as usize].split_inclusive(|b| *b == b'\n'))
    }

    /// Adds the lines to `map`, for a client that needs a map (HTTP/2).
    pub fn fill_map(&self, map: &mut HeaderMap) {
        for line in self.lines() {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let value = line[colon + 1..].trim_ascii();
            let value = self.bytes.slice_ref(value);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_maybe_shared(value),
            ) {
                map.append(name, value);
            }
        }
    }
}

impl HeaderLines for RawHeaders {
    fn write_to(&self, out: &mut Vec<u8>) {
        RawHeaders::write_to(self, out);
    }
}

/// Collects the lines to keep from a received head, in order.
pub struct RawHeadersBuilder {
    head: Bytes,
    runs: [(u32, u32); RUNS],
    count: usize,
    /// The kept lines, copied, once they did not fit in `runs` or one did not end in `\r\n`.
    spilled: Option<Vec<u8>>,
    has_date: bool,
}

impl RawHeadersBuilder {
    /// Lines will be kept from `head`, the received head (status line and all).
    pub fn new(head: Bytes) -> Self {
        RawHeadersBuilder {
            head,
            runs: [(0, 0); RUNS],
            count: 0,
            spilled: None,
            has_date: false,
        }
    }

    /// Keeps the header whose name starts at `name_start` and whose value ends at `value_end`
    /// (offsets in the head): its whole line, to and with its line end. `date` notes a `Date`.
    pub fn keep(&mut self, name_start: usize, value_end: usize, date: bool) {
        self.has_date |= date;
        let head = &self.head[..];
        // The line ends at the next LF; httparse has checked that only whitespace (and CR)
        // stands between the value and it.
        let end = head[value_end..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(head.len(), |i| value_end + i + 1);
        let crlf = end >= 2 && head[end - 2] == b'\r' && head[end - 1] == b'\n';
        if self.spilled.is_none() && crlf {
            if self.count > 0 && self.runs[self.count - 1].1 as usize == name_start {
                self.runs[self.count - 1].1 = end as u32;
                return;
            }
            if self.count < RUNS {
                self.runs[self.count] = (name_start as u32, end as u32);
                self.count += 1;
                return;
            }
        }
        let spilled = self.spilled.get_or_insert_with(|| {
            let mut copy = Vec::with_capacity(head.len());
            for &(start, end) in &self.runs[..self.count] {
                copy.extend_from_slice(&head[start as usize..end as usize]);
            }
            copy
        });
        // A bare LF line end becomes CRLF; whitespace before it goes.
        let line = head[name_start..end].trim_ascii_end();
        spilled.extend_from_slice(line);
        spilled.extend_from_slice(b"\r\n");
    }

    pub fn finish(self) -> RawHeaders {
        match self.spilled {
            Some(copy) => {
                let len = copy.len() as u32;
                let mut runs = [(0, 0); RUNS];
                runs[0] = (0, len);
                RawHeaders {
                    bytes: Bytes::from(copy),
                    runs,
                    count: u8::from(len > 0),
                    has_date: self.has_date,
                }
            }
            None => RawHeaders {
                bytes: self.head,
                runs: self.runs,
                count: self.count as u8,
                has_date: self.has_date,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the headers of `head` whose names `keep` accepts, as a response parser would.
    fn relay(head: &'static [u8], keep: impl Fn(&str) -> bool) -> RawHeaders {
        let mut builder = RawHeadersBuilder::new(Bytes::from_static(head));
        let mut at = head.iter().position(|b| *b == b'\n').unwrap() + 1;
        while head[at] != b'\r' && head[at] != b'\n' {
            let line_end = at + head[at..].iter().position(|b| *b == b'\n').unwrap() + 1;
            let colon = at + head[at..].iter().position(|b| *b == b':').unwrap();
            let name = std::str::from_utf8(&head[at..colon]).unwrap();
            let value_end = at + head[at..line_end].trim_ascii_end().len();
            if keep(name) {
                builder.keep(at, value_end, name.eq_ignore_ascii_case("date"));
            }
            at = line_end;
        }
        builder.finish()
    }

    fn written(raw: &RawHeaders) -> String {
        let mut out = Vec::new();
        raw.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn kept_lines_are_the_heads_own_bytes_in_order() {
        let head = b"HTTP/1.1 200 OK\r\nServer: x\r\nDate: d\r\nContent-Type: t\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n";
        let raw = relay(head, |n| n != "Content-Length" && n != "Connection");
        assert_eq!(written(&raw), "Server: x\r\nDate: d\r\nContent-Type: t\r\n");
        assert!(raw.has_date);
        assert_eq!(raw.count, 1, "consecutive lines are one run");
        assert!(std::ptr::eq(raw.bytes.as_ptr(), head.as_ptr()), "not copied");
        let lines: Vec<&[u8]> = raw.lines().collect();
        assert_eq!(lines, [&b"Server: x\r\n"[..], b"Date: d\r\n", b"Content-Type: t\r\n"]);
    }

    #[test]
    fn scattered_lines_are_copied_and_bare_line_feeds_become_crlf() {
        let head = b"HTTP/1.1 200 OK\r\na: 1\r\nx: 0\r\nb: 2\r\nx: 0\r\nc: 3\r\nx: 0\r\nd: 4\r\nx: 0\r\ne: 5\r\nx: 0\r\nf: 6\r\n\r\n";
        let raw = relay(head, |n| n != "x");
        assert_eq!(written(&raw), "a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\nf: 6\r\n");
        let raw = relay(b"HTTP/1.1 200 OK\nA: 1  \nB:2\n\n", |_| true);
        assert_eq!(written(&raw), "A: 1\r\nB:2\r\n");
    }

    #[test]
    fn a_map_gets_every_line() {
        let head = b"HTTP/1.1 200 OK\r\nX-One: a\r\nSkip: s\r\nX-Two:  b c \r\nX-One: z\r\n\r\n";
        let raw = relay(head, |n| n != "Skip");
        let mut map = HeaderMap::new();
        raw.fill_map(&mut map);
        let ones: Vec<_> = map.get_all("x-one").iter().collect();
        assert_eq!(ones, ["a", "z"]);
        assert_eq!(map["x-two"], "b c");
        assert_eq!(map.len(), 3);
    }
}
