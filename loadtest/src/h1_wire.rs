//! HTTP/1.1 response framing for the lean client path: where a response head ends, how its body
//! is delimited (RFC 9112 §6.3), and a chunked-body decoder (RFC 9112 §7.1). Pure functions over
//! byte buffers, so they are tested by tables of inputs.
//!
//! The body is only delimited, never kept: a load generator needs the status code and the end of
//! the response, not the content.

use crate::error_kind::ErrorKind;

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, or status 204 or 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// A parsed final response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The connection cannot carry another request (`Connection: close`, HTTP/1.0 without
    /// keep-alive, or a body delimited by the close).
    pub close: bool,
    /// Bytes of `buf` taken by this head (and any interim 1xx heads before it).
    pub len: usize,
}

/// The most header lines a response may have.
const MAX_HEADERS: usize = 64;
/// A response head longer than this is refused.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Parses the response head at the start of `buf`: `Ok(None)` when more bytes are needed.
/// Interim 1xx responses (other than 101) are skipped.
pub fn parse_head(buf: &[u8], request_was_head: bool) -> Result<Option<ResponseHead>, ErrorKind> {
    let mut offset = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&buf[offset..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() - offset > MAX_HEAD_BYTES => return Err(ErrorKind::Protocol),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ErrorKind::Protocol),
        };
        let status = response.code.ok_or(ErrorKind::Protocol)?;
        if (100..200).contains(&status) && status != 101 {
            offset += len;
            continue;
        }
        let mut close = response.version == Some(0);
        let mut length = None;
        let mut chunked = false;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(h.value).map_err(|_| ErrorKind::Protocol)?;
                let n: u64 = text.trim().parse().map_err(|_| ErrorKind::Protocol)?;
                if length.is_some_and(|m| m != n) {
                    return Err(ErrorKind::Protocol);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = has_token(h.value, b"chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                if has_token(h.value, b"close") {
                    close = true;
                } else if has_token(h.value, b"keep-alive") {
                    close = false;
                }
            }
        }
        let framing = if request_was_head || status == 204 || status == 304 || status == 101 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return Ok(Some(ResponseHead {
            status,
            framing,
            close: close || framing == Framing::UntilClose || status == 101,
            len: offset + len,
        }));
    }
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// Walks a chunked body as it arrives, without keeping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

impl ChunkedDecoder {
    /// Consumes what it can of `buf`; returns the bytes consumed. Call again with the rest plus
    /// new bytes until [`ChunkedDecoder::is_done`].
    pub fn advance(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                ChunkState::Done => return Ok(at),
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > MAX_LINE {
                            return Err(ErrorKind::Protocol);
                        }
                        return Ok(at);
                    };
                    let line = &rest[..end];
                    at += end + 2;
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
                    let text = std::str::from_utf8(digits).map_err(|_| ErrorKind::Protocol)?;
                    let size = u64::from_str_radix(text, 16).map_err(|_| ErrorKind::Protocol)?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = left.min(rest.len() as u64);
                    at += take as usize;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ErrorKind::Protocol);
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_their_framing() {
        let cases: &[(&str, bool, u16, Framing, bool)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                false,
                200,
                Framing::Length(2),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                200,
                Framing::Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
                false,
                200,
                Framing::Length(2),
                true,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, 200, Framing::UntilClose, true),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, 204, Framing::Empty, false),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                true,
                200,
                Framing::Empty,
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                200,
                Framing::Length(0),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                false,
                200,
                Framing::Length(0),
                false,
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
                false,
                500,
                Framing::Length(0),
                false,
            ),
        ];
        for (text, head, status, framing, close) in cases {
            let h = parse_head(text.as_bytes(), *head)
                .unwrap()
                .unwrap_or_else(|| panic!("complete: {text:?}"));
            assert_eq!((h.status, h.framing, h.close), (*status, *framing, *close), "{text:?}");
            let body_at = text.rfind("\r\n\r\n").unwrap() + 4;
            assert_eq!(h.len, body_at, "{text:?}");
        }
    }

    #[test]
    fn partial_and_malformed_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-", false), Ok(None));
        assert_eq!(parse_head(b"", false), Ok(None));
        for bad in [
            "HTPT/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad.as_bytes(), false), Err(ErrorKind::Protocol), "{bad:?}");
        }
    }

    #[test]
    fn chunked_bodies_are_walked_byte_by_byte_or_at_once() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut whole = ChunkedDecoder::default();
        let used = whole.advance(body).unwrap();
        assert!(whole.is_done());
        assert_eq!(&body[used..], b"NEXT");
        // Fed one byte at a time, as a slow socket would.
        let mut d = ChunkedDecoder::default();
        let mut pending: Vec<u8> = Vec::new();
        for &b in &body[..body.len() - 4] {
            pending.push(b);
            let n = d.advance(&pending).unwrap();
            pending.drain(..n);
        }
        assert!(d.is_done() && pending.is_empty());
    }

    #[test]
    fn malformed_chunks_are_protocol_errors() {
        for bad in [&b"zz\r\n"[..], b"2\r\nabX\r\n"] {
            assert_eq!(
                ChunkedDecoder::default().advance(bad),
                Err(ErrorKind::Protocol),
                "{bad:?}"
            );
        }
    }
}
