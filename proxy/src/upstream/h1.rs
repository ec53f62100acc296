//! HTTP/1.1 towards upstreams (RFC 9112), as pure functions over buffers: writing a request head
//! and reading a response head with the framing of the body behind it.
//!
//! The proxy already holds the request as `http::request::Parts`, and hyper's server wants the
//! response as `http::Response`; in between, a general client (a connection task, channels, a
//! dispatcher) cost a third of all the instructions per proxied request. This module is the little
//! that is needed instead: the head is serialized once into a reused buffer, and the response
//! head is parsed in place, its header values sharing the read buffer's memory.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::response;
use http::{Response, StatusCode, Version};

use crate::headers::hop_by_hop::{RawName, classify_raw, connection_names_others, is_hop_by_hop};
use crate::headers::lines::HeaderLines;
use crate::headers::raw::{RawHeaders, RawHeadersBuilder};

/// Response heads larger than this are refused (hyper's default read buffer limit is of the
/// same order; real upstreams send a few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers parsed on the stack; more fall back to a larger array (up to `MAX_HEADERS`).
const FAST_HEADERS: usize = 32;
const MAX_HEADERS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Reading the client's request body failed (the client went away mid-upload).
    #[error("reading the request body failed: {0}")]
    ClientBody(crate::http1::BodyError),
    #[error("connection closed before a response")]
    ClosedBeforeResponse,
    #[error("connection closed in the middle of the response head")]
    ClosedInHead,
    #[error("connection closed in the middle of the response body")]
    ClosedInBody,
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("malformed chunked body")]
    BadChunk,
    #[error("invalid header in response: {0}")]
    BadHeader(&'static str),
    /// `Transfer-Encoding` other than `chunked`: relayed, the body would reach the client with
    /// a coding it is not told of (nginx refuses these too).
    #[error("unsupported Transfer-Encoding in response")]
    TransferCoding,
}

pub use crate::http1::Framing;
use crate::http1::{FramingHeaders, response_is_bodiless};

impl From<crate::http1::BadChunk> for H1Error {
    fn from(_: crate::http1::BadChunk) -> Self {
        H1Error::BadChunk
    }
}

/// How a parsed response's headers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderForm {
    /// In `parts.headers`, for code that reads them.
    Map,
    /// As the lines to relay (`RawHeaders`, in the parts' extensions), with `parts.headers`
    /// empty; what the forwarder asks for. Heads it must edit (a `Location` to rewrite, a
    /// `Connection` naming other headers) and `101`s still come as a map.
    Raw,
}

/// A parsed response head.
pub struct ResponseHead {
    pub parts: response::Parts,
    /// With `HeaderForm::Raw`, the lines to relay (and `parts.headers` is empty).
    pub raw: Option<RawHeaders>,
    pub framing: Framing,
    /// Whether the connection may carry another request once this body is read.
    pub reusable: bool,
}

crate::recycled!(ResponseHead);

/// Appends the request line and headers for `parts`, which must be in origin form (the forwarder
/// rewrites the target). `extra` holds header lines already rendered (`name: value\r\n`).
/// `chunked` adds `Transfer-Encoding: chunked` for a body of unknown length.
pub fn encode_request_head(parts: &Parts, extra: &(dyn HeaderLines + Sync), chunked: bool, out: &mut Vec<u8>) {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    extra.write_to(out);
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses a response head from the front of `buf`. On success the head's bytes are split off
/// `buf` (the header values keep pointing into them), leaving whatever followed. `Ok(None)`:
/// the head is not complete yet.
pub fn parse_response_head(
    buf: &mut BytesMut,
    head_request: bool,
    form: HeaderForm,
) -> Result<Option<ResponseHead>, H1Error> {
    match parse_with::<FAST_HEADERS>(buf, head_request, form) {
        Err(H1Error::Malformed(httparse::Error::TooManyHeaders)) => parse_with::<MAX_HEADERS>(buf, head_request, form),
        other => other,
    }
}

/// Where a header's name and value sit in the head: name start and end, value start and end.
type HeaderSpan = [u32; 4];

fn parse_with<const N: usize>(
    buf: &mut BytesMut,
    head_request: bool,
    form: HeaderForm,
) -> Result<Option<ResponseHead>, H1Error> {
    // Left uninitialised (httparse fills what it parses), and the spans zeroed rather than built
    // element by element: initialising both arrays cost more than parsing a short head.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; N];
    let mut spans: [HeaderSpan; N] = [[0; 4]; N];
    let (len, code, version, custom_reason, count) = {
        let mut resp = httparse::Response::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(H1Error::HeadTooLarge),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(H1Error::Malformed(e)),
            };
        let code = resp.code.unwrap_or_default();
        let version = if resp.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let status = StatusCode::from_u16(code).map_err(|_| H1Error::Malformed(httparse::Error::Status))?;
        // Only a reason that differs from the standard one is worth keeping (hyper's server
        // writes it back); the check costs a comparison, the copy only when it differs.
        let custom_reason = resp
            .reason
            .filter(|r| Some(*r) != status.canonical_reason())
            .map(|r| Bytes::copy_from_slice(r.as_bytes()));
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| {
            let start = (s.as_ptr() as usize - base) as u32;
            (start, start + s.len() as u32)
        };
        let count = resp.headers.len();
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let (name, value) = (offset(h.name.as_bytes()), offset(h.value));
            *span = [name.0, name.1, value.0, value.1];
        }
        (len, status, version, custom_reason, count)
    };
    let head = buf.split_to(len).freeze();
    let slice = |start: u32, end: u32| head.slice(start as usize..end as usize);

    let upgrade = code == StatusCode::SWITCHING_PROTOCOLS;
    if form == HeaderForm::Raw && !upgrade {
        let bodiless = response_is_bodiless(code, head_request);
        let mut framing = FramingHeaders::default();
        if let Some(raw) = raw_headers(head.clone(), &spans[..count], bodiless, &mut framing)? {
            let Some((framing, reusable)) = framing.decide(code, version, head_request) else {
                return Err(H1Error::TransferCoding);
            };
            return Ok(Some(ResponseHead {
                parts: response_parts(code, version, custom_reason, HeaderMap::new()),
                raw: Some(raw),
                framing,
                reusable,
            }));
        }
    }

    let mut map = HeaderMap::with_capacity(count);
    let mut framing = FramingHeaders::default();
    // Hop-by-hop headers (RFC 9110 §7.6.1) stay out of the map, so the proxy does not insert
    // them only to remove them again; except on a `101`, which relays `Upgrade`, and a
    // `Connection` that names further headers: it stays for the forwarder's `remove_hop_by_hop`,
    // which takes those out with it.
    for &[name_start, name_end, value_start, value_end] in &spans[..count] {
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
            .map_err(|_| H1Error::BadHeader("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(slice(value_start, value_end))
            .map_err(|_| H1Error::BadHeader("invalid header value"))?;
        framing.note(&name, &value).map_err(|_| H1Error::BadContentLength)?;
        let dropped =
            !upgrade && is_hop_by_hop(&name) && !(name == CONNECTION && connection_names_others(value.as_bytes()));
        if !dropped {
            map.append(name, value);
        }
    }

    let Some((framing, reusable)) = framing.decide(code, version, head_request) else {
        return Err(H1Error::TransferCoding);
    };
    Ok(Some(ResponseHead {
        parts: response_parts(code, version, custom_reason, map),
        raw: None,
        framing,
        reusable,
    }))
}

fn response_parts(
    status: StatusCode,
    version: Version,
    custom_reason: Option<Bytes>,
    headers: HeaderMap,
) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    if let Some(reason) = custom_reason
        && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason)
    {
        parts.extensions.insert(reason);
    }
    parts
}

/// The relayable lines of a head, noting its framing on the way; `None` when the head needs a
/// map after all (see `HeaderForm::Raw`).
fn raw_headers(
    head: Bytes,
    spans: &[HeaderSpan],
    bodiless: bool,
    framing: &mut FramingHeaders,
) -> Result<Option<RawHeaders>, H1Error> {
    let mut lines = RawHeadersBuilder::new(head.clone());
    for &[name_start, name_end, value_start, value_end] in spans {
        let name = &head[name_start as usize..name_end as usize];
        let value = &head[value_start as usize..value_end as usize];
        let class = classify_raw(name);
        let keep = match class {
            RawName::ContentLength => {
                framing.content_length(value).map_err(|_| H1Error::BadContentLength)?;
                bodiless
            }
            RawName::TransferEncoding => {
                framing.transfer_encoding(value);
                false
            }
            RawName::Connection if connection_names_others(value) => return Ok(None),
            RawName::Connection => {
                framing.connection(value);
                false
            }
            RawName::Location => return Ok(None),
            RawName::Upgrade | RawName::HopByHop => false,
            RawName::Date | RawName::Host | RawName::Expect | RawName::XForwarded | RawName::Other => true,
        };
        if keep {
            lines.keep(name_start as usize, value_end as usize, class == RawName::Date);
        }
    }
    Ok(Some(lines.finish()))
}

impl FramingHeaders {
    /// The body's framing and whether the connection can be reused; `None` for a transfer
    /// coding the proxy cannot relay. (An `Option`, not a `Result` with [`H1Error`]: that cost
    /// every response a hundred instructions in moves of the larger value.)
    fn decide(self, status: StatusCode, version: Version, head_request: bool) -> Option<(Framing, bool)> {
        let persistent = if version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        };
        if response_is_bodiless(status, head_request) {
            return Some((Framing::Empty, persistent && status != StatusCode::SWITCHING_PROTOCOLS));
        }
        if self.transfer_encoding {
            if !self.has_codings() {
                // `identity` only: no coding to lose, so read until close, as before chunked.
                return Some((Framing::UntilClose, false));
            }
            if !self.only_chunked() {
                return None;
            }
            // Both Transfer-Encoding and Content-Length: the length is ignored, and the
            // connection is not trusted with another request (RFC 9112 §6.3, smuggling).
            return Some((Framing::Chunked, persistent && self.content_length.is_none()));
        }
        Some(match self.content_length {
            Some(0) => (Framing::Empty, persistent),
            Some(n) => (Framing::Length(n), persistent),
            None => (Framing::UntilClose, false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head_request: bool) -> Result<Option<(ResponseHead, BytesMut)>, H1Error> {
        let mut buf = BytesMut::from(raw.as_bytes());
        Ok(parse_response_head(&mut buf, head_request, HeaderForm::Map)?.map(|h| (h, buf)))
    }

    #[test]
    fn request_head_is_origin_form_with_headers_in_order() {
        let (mut parts, ()) = http::Request::builder()
            .method("POST")
            .uri("/user/a/api?x=1")
            .header("host", "h:80")
            .header("x-forwarded-for", "127.0.0.1")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = Vec::new();
        encode_request_head(&parts, &&b"x-extra: 1\r\n"[..], false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /user/a/api?x=1 HTTP/1.1\r\nhost: h:80\r\nx-forwarded-for: 127.0.0.1\r\nx-extra: 1\r\n\r\n"
        );
        parts.uri = "*".parse().unwrap();
        let mut out = Vec::new();
        encode_request_head(&parts, &(), true, &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("transfer-encoding: chunked\r\n\r\n")
        );
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let cases: &[(&str, bool, Framing, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                false,
                Framing::Length(2),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                true,
                Framing::Empty,
                true,
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, Framing::Empty, true),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Chunked,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                true,
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                false,
                Framing::Empty,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
                false,
                Framing::Length(3),
                true,
            ),
        ];
        for (raw, head, framing, reusable) in cases {
            let (h, _) = parse(raw, *head).unwrap().unwrap();
            assert_eq!((h.framing, h.reusable), (*framing, *reusable), "{raw:?}");
        }
    }

    #[test]
    fn bad_heads_are_errors_and_partial_heads_wait() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTPS/1.1 200 OK\r\n\r\n",
        ] {
            assert!(parse(raw, false).is_err(), "{raw:?}");
        }
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", false).unwrap().is_none());
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(parse(&huge, false), Err(H1Error::HeadTooLarge)));
    }

    #[test]
    fn transfer_codings_besides_chunked_are_refused_in_either_form() {
        for raw in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            for form in [HeaderForm::Map, HeaderForm::Raw] {
                let mut buf = BytesMut::from(raw.as_bytes());
                let head = parse_response_head(&mut buf, false, form);
                assert!(matches!(head, Err(H1Error::TransferCoding)), "{raw:?}");
            }
        }
        // `identity` is no coding: the body is read until close, as it always was.
        let (head, _) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::UntilClose, false));
        let (head, _) = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        // A bodiless answer has no body to garble.
        let (head, _) = parse("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn hop_by_hop_headers_stay_out_of_the_map_except_where_needed() {
        let names = |raw: &str| -> Vec<String> {
            let (h, _) = parse(raw, false).unwrap().unwrap();
            h.parts.headers.keys().map(|k| k.to_string()).collect()
        };
        assert_eq!(
            names(
                "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
            ),
            ["x-a"]
        );
        assert_eq!(
            names("HTTP/1.1 200 OK\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n"),
            ["connection", "x-secret", "content-length"]
        );
        assert_eq!(
            names("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            ["connection", "upgrade"]
        );
    }

    #[test]
    fn head_is_split_off_and_values_are_kept_with_reason() {
        let many: String = (0..60).map(|i| format!("x-h{i}: v{i}\r\n")).collect();
        let raw = format!("HTTP/1.1 299 Fine Thanks\r\n{many}Content-Length: 2\r\n\r\nokNEXT");
        let (h, rest) = parse(&raw, false).unwrap().unwrap();
        assert_eq!(&rest[..], b"okNEXT");
        assert_eq!(h.parts.status.as_u16(), 299);
        assert_eq!(h.parts.headers.len(), 61);
        assert_eq!(h.parts.headers["x-h59"], "v59");
        let reason = h.parts.extensions.get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(reason.as_bytes(), b"Fine Thanks");
        let (h, _) = parse("HTTP/1.1 404 Not Found\r\n\r\n", false).unwrap().unwrap();
        assert!(h.parts.extensions.get::<hyper::ext::ReasonPhrase>().is_none());
    }
}
