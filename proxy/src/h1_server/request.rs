//! Parsing a client's request head (RFC 9112 §2–§3, §6.3 for requests).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, Request, StatusCode, Uri, Version};

use crate::client_head::ClientHead;
use crate::headers::hop_by_hop::{RawName, classify_raw};
use crate::headers::request_lines::RequestLinesBuilder;
use crate::http1::{Framing, FramingHeaders};
use crate::recycle::Recycled;

/// Request heads larger than this get `431` (Node, so CHP, allows 16 KiB; nginx 8–32 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// More header fields than this get `431`, as with hyper's default.
const MAX_HEADERS: usize = 100;
/// Header fields parsed on the stack at first; a head with more is parsed again with room for
/// `MAX_HEADERS`.
const FAST_HEADERS: usize = 32;

pub struct RequestHead {
    /// Method, target and version, and the header lines as received (the map left empty).
    pub head: Recycled<ClientHead>,
    pub framing: Framing,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body.
    pub expect_continue: bool,
}

/// A head that cannot be served; answered with its status, then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("bad request: {0}")]
    Bad(&'static str),
    #[error("request header fields too large")]
    TooLarge,
    /// A transfer coding the proxy cannot relay (RFC 9112 §6.1: 501).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::Bad(_) => StatusCode::BAD_REQUEST,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// Parses a request head from the front of `buf`; its bytes are split off (header values and
/// the target keep pointing into them). `Ok(None)`: not complete yet.
pub fn parse_request_head(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    match parse_with::<FAST_HEADERS>(buf) {
        Err(HeadError::TooLarge) if buf.len() < MAX_HEAD_BYTES => parse_with::<MAX_HEADERS>(buf),
        other => other,
    }
}

fn parse_with<const N: usize>(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; N];
    // Where each header's name and value sit in the head, as plain integers (name start and
    // end, value start and end), so the array is zeroed rather than built element by element.
    let mut spans = [[0u32; 4]; N];
    let (len, method, target, version, count) = {
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Bad("malformed request head")),
        };
        if len > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let span = |s: &[u8]| {
            let r = offset(s);
            (r.start as u32, r.end as u32)
        };
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| HeadError::Bad("invalid method"))?;
        // A reverse proxy opens no tunnels to where a client names (RFC 9110 §9.3.6 is for
        // forward proxies); WebSockets arrive as `Upgrade`.
        if method == Method::CONNECT {
            return Err(HeadError::NotImplemented("CONNECT"));
        }
        let target = offset(req.path.unwrap_or_default().as_bytes());
        let version = match req.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let count = req.headers.len();
        for (at, h) in spans.iter_mut().zip(req.headers.iter()) {
            let (name, value) = (span(h.name.as_bytes()), span(h.value));
            *at = [name.0, name.1, value.0, value.1];
        }
        (len, method, target, version, count)
    };
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target)).map_err(|_| HeadError::Bad("invalid request-target"))?;

    let mut lines = RequestLinesBuilder::new(head.clone());
    let mut framing = FramingHeaders::default();
    let mut expect_continue = false;
    let mut hosts = 0u32;
    for &[name_start, name_end, value_start, value_end] in &spans[..count] {
        let class = classify_raw(&head[name_start as usize..name_end as usize]);
        let value = &head[value_start as usize..value_end as usize];
        match class {
            // The line goes upstream as received, so it must be one plain number: a list or a
            // second line, even of the same value, could be read otherwise by the server
            // behind (RFC 9110 §8.6 lets a recipient refuse them; nginx and Node do).
            RawName::ContentLength if framing.content_length.is_some() || value.contains(&b',') => {
                return Err(HeadError::Bad("repeated Content-Length"));
            }
            RawName::ContentLength => framing
                .content_length(value)
                .map_err(|_| HeadError::Bad("invalid Content-Length"))?,
            RawName::TransferEncoding => framing.transfer_encoding(value),
            RawName::Connection => framing.connection(value),
            RawName::Expect => expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            RawName::Host => hosts += 1,
            _ => {}
        }
        lines.header(class, name_start as usize, (value_start as usize, value_end as usize));
    }
    check_host(version, hosts)?;
    let body = request_framing(&framing)?;

    let keep_alive = match version {
        Version::HTTP_10 => framing.keep_alive && !framing.close,
        _ => !framing.close,
    };
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    let expect_continue = expect_continue && version == Version::HTTP_11 && body != Framing::Empty;
    Ok(Some(RequestHead {
        head: Recycled::new(ClientHead {
            parts,
            lines: Some(lines.finish(expect_continue)),
        }),
        framing: body,
        keep_alive,
        expect_continue,
    }))
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with two, gets 400. With
/// two, the proxy and the server behind it could each read a different one (nginx and Node, so
/// CHP, refuse a missing one too).
fn check_host(version: Version, hosts: u32) -> Result<(), HeadError> {
    match hosts {
        0 if version == Version::HTTP_11 => Err(HeadError::Bad("missing Host header")),
        0 | 1 => Ok(()),
        _ => Err(HeadError::Bad("more than one Host header")),
    }
}

/// A request body is chunked or has a length; anything else is refused (RFC 9112 §6.3): a
/// transfer coding other than a final `chunked`, or `Transfer-Encoding` beside
/// `Content-Length`, which is how requests are smuggled past a proxy. Codings before the final
/// `chunked` (`gzip, chunked`) frame the body well enough, but the proxy could only pass the
/// body on without them: 501, as nginx answers.
fn request_framing(f: &FramingHeaders) -> Result<Framing, HeadError> {
    if f.transfer_encoding {
        if f.content_length.is_some() {
            return Err(HeadError::Bad("both Transfer-Encoding and Content-Length"));
        }
        if !f.chunked_last {
            return Err(HeadError::Bad("unsupported Transfer-Encoding"));
        }
        if !f.only_chunked() {
            return Err(HeadError::NotImplemented("transfer codings other than chunked"));
        }
        return Ok(Framing::Chunked);
    }
    Ok(match f.content_length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::request_lines::RequestLines;
    use http::HeaderMap;

    fn parse(raw: &[u8]) -> Result<Option<(RequestHead, BytesMut)>, HeadError> {
        let mut buf = BytesMut::from(raw);
        Ok(parse_request_head(&mut buf)?.map(|h| (h, buf)))
    }

    #[test]
    fn a_head_is_split_off_and_what_follows_stays() {
        let (head, rest) = parse(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET")
            .unwrap()
            .unwrap();
        assert_eq!(head.head.parts.method, Method::POST);
        assert_eq!(head.head.parts.uri.path_and_query().unwrap().as_str(), "/a?b=1");
        assert_eq!(lines(&head).host().unwrap(), "x");
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.keep_alive && !head.expect_continue);
        assert_eq!(&rest[..], b"abcGET");
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_refused() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let big = [
            b"GET / HTTP/1.1\r\nHost: x\r\nX: ".as_slice(),
            &vec![b'a'; MAX_HEAD_BYTES],
        ]
        .concat();
        assert_eq!(parse(&big).err(), Some(HeadError::TooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()).err(), Some(HeadError::TooLarge));
    }

    #[test]
    fn framing_and_persistence_follow_rfc_9112() {
        let cases: &[(&[u8], Framing, bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing::Empty, true),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Framing::Empty,
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", Framing::Empty, false),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                Framing::Empty,
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n",
                Framing::Chunked,
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                Framing::Empty,
                true,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            let (head, _) = parse(raw).unwrap().unwrap();
            assert_eq!(
                (head.framing, head.keep_alive),
                (*framing, *keep_alive),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn transfer_codings_besides_chunked_and_connect_are_not_implemented() {
        for raw in [
            &b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        ] {
            assert_eq!(
                parse(raw).err().map(HeadError::status),
                Some(StatusCode::NOT_IMPLEMENTED),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn smuggling_shapes_and_junk_are_bad_requests() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"NONSENSE\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw), Err(HeadError::Bad(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn host_is_required_once_in_http_1_1_and_at_most_once_in_1_0() {
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw), Err(HeadError::Bad(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        for raw in [&b"GET / HTTP/1.0\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost: \r\n\r\n"] {
            assert!(parse(raw).unwrap().is_some(), "{}", String::from_utf8_lossy(raw));
        }
    }

    fn lines(head: &RequestHead) -> &RequestLines {
        head.head.lines.as_ref().unwrap()
    }

    fn end_to_end(head: &RequestHead) -> String {
        let mut out = Vec::new();
        lines(head).end_to_end().write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_kept_as_sent_and_a_map_gets_every_one() {
        let (head, _) = parse(b"GET / HTTP/1.1\r\nHost: x:1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-A:  1 \r\nte: trailers\r\nX-A: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.head.parts.headers.is_empty(), "no map is built");
        assert_eq!(end_to_end(&head), "Host: x:1\r\nX-A:  1 \r\nX-A: 2\r\n");
        assert_eq!(lines(&head).host().unwrap(), "x:1");
        assert!(lines(&head).upgrade && !lines(&head).needs_map);
        let mut map = HeaderMap::new();
        lines(&head).fill_map(&mut map);
        assert_eq!(map.len(), 6);
        assert_eq!(map["upgrade"], "websocket");
        let a: Vec<_> = map.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);

        // Bare LF line ends, an empty value, colons within a value, a long line.
        let cookie = format!("a=1; t={}", "x".repeat(600));
        let raw = format!("GET / HTTP/1.1\nHost: h\nX-Empty:\nX-Url: http://a:1/b\nCookie: {cookie}\n\n");
        let (head, _) = parse(raw.as_bytes()).unwrap().unwrap();
        let mut map = HeaderMap::new();
        lines(&head).fill_map(&mut map);
        assert_eq!(map.len(), 4, "{map:?}");
        assert_eq!(map["host"], "h");
        assert_eq!(map["x-empty"], "");
        assert_eq!(map["x-url"], "http://a:1/b");
        assert_eq!(map["cookie"], cookie.as_str());

        let (head, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(end_to_end(&head), "");
        assert!(lines(&head).host().is_none());
        let mut map = HeaderMap::new();
        lines(&head).fill_map(&mut map);
        assert!(map.is_empty());
    }

    #[test]
    fn lines_that_cannot_be_forwarded_as_they_are_ask_for_a_map() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        ] {
            let (head, _) = parse(raw).unwrap().unwrap();
            assert!(lines(&head).needs_map, "{}", String::from_utf8_lossy(raw));
        }
        let (head, _) = parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, keep-alive\r\nX-Forwarded: no\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!lines(&head).needs_map);
    }

    #[test]
    fn an_answered_expect_is_not_among_the_lines() {
        let (head, _) = parse(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(end_to_end(&head), "Host: x\r\nContent-Length: 5\r\n");
        let mut map = HeaderMap::new();
        lines(&head).fill_map(&mut map);
        assert!(map.get("expect").is_none() && map.len() == 2, "{map:?}");
    }

    #[test]
    fn expect_continue_only_matters_with_a_body() {
        let (head, _) = parse(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.expect_continue);
        let (head, _) = parse(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.expect_continue);
    }
}
