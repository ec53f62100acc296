//! HTTP/1.1 response framing for the lean client path: where a response head ends, how its body
//! is delimited (RFC 9112 §6.3), and a chunked-body decoder (RFC 9112 §7.1). Pure functions over
//! byte buffers, so they are tested by tables of inputs.
//!
//! The body is only delimited, never kept: a load generator needs the status code and the end of
//! the response, not the content. For the same reason the head parser keeps only the status and
//! the three fields that decide framing and reuse (`Content-Length`, `Transfer-Encoding`,
//! `Connection`), and reads lines eight bytes at a time. It accepts and refuses exactly what
//! `httparse` does with its default settings, which a test checks on every prefix of thousands of
//! altered heads; it exists because `httparse` and the field loop around it were the largest
//! item in edgeload's per-request profile.

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
        let head = match parse_one(&buf[offset..]) {
            Ok(head) => head,
            Err(Stop::Partial) if buf.len() - offset > MAX_HEAD_BYTES => return Err(ErrorKind::Protocol),
            Err(Stop::Partial) => return Ok(None),
            Err(Stop::Invalid) => return Err(ErrorKind::Protocol),
        };
        let status = head.status;
        if (100..200).contains(&status) && status != 101 {
            offset += head.len;
            continue;
        }
        let framing = if request_was_head || status == 204 || status == 304 || status == 101 {
            Framing::Empty
        } else if head.chunked {
            Framing::Chunked
        } else if let Some(n) = head.length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return Ok(Some(ResponseHead {
            status,
            framing,
            close: head.close || framing == Framing::UntilClose || status == 101,
            len: offset + head.len,
        }));
    }
}

/// Why [`parse_one`] stopped without a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The head is not complete yet.
    Partial,
    /// The bytes cannot be the start of a valid response head.
    Invalid,
}

/// What a load generator needs from one response head: the status, how the body is delimited
/// and whether the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawHead {
    status: u16,
    length: Option<u64>,
    chunked: bool,
    close: bool,
    len: usize,
}

/// Parses one response head (RFC 9112 §4 status line, §5 field lines) at the start of `buf`,
/// keeping only the fields that delimit the body or end the connection.
///
/// As strict as `httparse` with its default settings: leading empty lines are skipped; the
/// status line is `HTTP/1.0` or `HTTP/1.1`, one space, three digits, then a space and a reason
/// or the end of the line; field names are tokens directly followed by `:`; the reason and field
/// values may hold HTAB, SP, visible ASCII and obs-text, nothing else; lines end in CRLF or a
/// bare LF (§2.2); obs-fold is refused; at most [`MAX_HEADERS`] fields. One difference: a bad
/// framing field is refused as soon as its line is complete, not once the head is.
fn parse_one(buf: &[u8]) -> Result<RawHead, Stop> {
    let mut at = 0;
    loop {
        match buf.get(at) {
            None => return Err(Stop::Partial),
            Some(b'\n') => at += 1,
            Some(b'\r') => match buf.get(at + 1) {
                None => return Err(Stop::Partial),
                Some(b'\n') => at += 2,
                Some(_) => return Err(Stop::Invalid),
            },
            Some(_) => break,
        }
    }
    let line = &buf[at..buf.len().min(at + STATUS_PREFIX)];
    if !is_status_line_prefix(line) {
        return Err(Stop::Invalid);
    }
    if line.len() < STATUS_PREFIX {
        return Err(Stop::Partial);
    }
    let digit = |i: usize| u16::from(line[i] - b'0');
    let mut head = RawHead {
        status: digit(9) * 100 + digit(10) * 10 + digit(11),
        length: None,
        chunked: false,
        close: line[7] == b'0',
        len: 0,
    };
    at += STATUS_PREFIX;
    at = match buf.get(at) {
        None => return Err(Stop::Partial),
        Some(b' ') => line_end(buf, at + 1)?.1,
        Some(b'\r' | b'\n') => line_end(buf, at)?.1,
        Some(_) => return Err(Stop::Invalid),
    };
    let mut fields = 0;
    loop {
        // The whole line first (eight bytes at a time), then its name.
        let (end, next) = match line_end(buf, at) {
            Ok(ends) => ends,
            // Refuse a bad name before its line is complete, as a byte-by-byte parser does.
            Err(Stop::Partial) if !is_field_line_prefix(&buf[at..]) => return Err(Stop::Invalid),
            Err(stop) => return Err(stop),
        };
        let line = &buf[at..end];
        at = next;
        if line.is_empty() {
            head.len = at;
            return Ok(head);
        }
        let (name, value) = match line.iter().position(|&b| !TCHAR[usize::from(b)]) {
            Some(colon) if colon > 0 && line[colon] == b':' => (&line[..colon], &line[colon + 1..]),
            _ => return Err(Stop::Invalid),
        };
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(Stop::Invalid);
        }
        head.apply_field(name, value.trim_ascii())?;
    }
}

/// Whether an incomplete field line can still become valid: a token so far, then `:` or nothing
/// (or the CR of the empty line that ends the head).
fn is_field_line_prefix(rest: &[u8]) -> bool {
    match rest.iter().position(|&b| !TCHAR[usize::from(b)]) {
        None => true,
        Some(0) => rest == b"\r",
        Some(i) => rest[i] == b':',
    }
}

impl RawHead {
    /// Takes note of one header field, if it is one of the three that matter here.
    fn apply_field(&mut self, name: &[u8], value: &[u8]) -> Result<(), Stop> {
        if is_name(name, b"content-length") {
            let n = parse_length(value).ok_or(Stop::Invalid)?;
            if self.length.is_some_and(|m| m != n) {
                return Err(Stop::Invalid);
            }
            self.length = Some(n);
        } else if is_name(name, b"transfer-encoding") {
            self.chunked = has_token(value, b"chunked");
        } else if is_name(name, b"connection") {
            if has_token(value, b"close") {
                self.close = true;
            } else if has_token(value, b"keep-alive") {
                self.close = false;
            }
        }
        Ok(())
    }
}

/// Whether the field name `name` (a token) is `lower` (lowercase letters and `-`, at least eight
/// bytes), ignoring ASCII case. Compares eight bytes at a time with bit 0x20 set in each: that
/// maps `A`–`Z` onto `a`–`z`, and the only other byte it maps onto a letter or `-` is CR, which
/// is not a token byte.
fn is_name(name: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    debug_assert!(lower.len() >= 8);
    if name.len() != lower.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes")) | CASE;
    // The last word may overlap the one before it.
    let last = name.len() - 8;
    (0..name.len()).step_by(8).all(|at| {
        let at = at.min(last);
        word(name, at) == word(lower, at)
    })
}

/// `HTTP/1.x NNN`: the fixed-width start of a status line.
const STATUS_PREFIX: usize = 12;

/// Whether `line` (at most [`STATUS_PREFIX`] bytes) can start a status line: `HTTP/1.`, `0` or
/// `1`, one space, three digits. Checking only the bytes present tells a partial line from an
/// invalid one.
fn is_status_line_prefix(line: &[u8]) -> bool {
    line.iter().enumerate().all(|(i, &b)| match i {
        0..7 => b == b"HTTP/1."[i],
        7 => b == b'0' || b == b'1',
        8 => b == b' ',
        _ => b.is_ascii_digit(),
    })
}

/// Field-name bytes: `tchar` (RFC 9110 §5.6.2).
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        i += 1;
    }
    table
};

/// The end of the line whose content starts at `at`: `(end of the content, start of the next
/// line)`. Content is HTAB, SP, visible ASCII or obs-text (RFC 9110 §5.5); the line ends in CRLF
/// or a bare LF.
fn line_end(buf: &[u8], mut at: usize) -> Result<(usize, usize), Stop> {
    loop {
        at = first_control(buf, at).ok_or(Stop::Partial)?;
        match buf[at] {
            b'\t' => at += 1,
            b'\n' => return Ok((at, at + 1)),
            b'\r' => {
                return match buf.get(at + 1) {
                    None => Err(Stop::Partial),
                    Some(b'\n') => Ok((at, at + 2)),
                    Some(_) => Err(Stop::Invalid),
                };
            }
            _ => return Err(Stop::Invalid),
        }
    }
}

/// The position of the first control byte (below SP, or DEL) at or after `from`. Looks at eight
/// bytes at a time: a header line is mostly value bytes, and this is the loop that reads them.
#[inline]
fn first_control(buf: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    while let Some(word) = buf.get(at..at + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // High bit set in each byte below 0x20 and each byte equal to 0x7f. Borrows only
        // propagate upwards from a byte that is itself flagged, so the lowest flag is exact.
        let below_space = x.wrapping_sub(ONES * 0x20) & !x;
        let del = x ^ (ONES * 0x7f);
        let del = del.wrapping_sub(ONES) & !del;
        let flags = (below_space | del) & HIGH;
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = buf.get(at..)?;
    rest.iter().position(|&b| b < 0x20 || b == 0x7f).map(|i| at + i)
}

/// A `Content-Length` value: one or more digits (RFC 9110 §8.6), no sign, no list.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
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
    fn every_proper_prefix_of_a_head_is_partial() {
        for text in CORPUS
            .iter()
            .filter(|t| parse_head(t, false).is_ok_and(|h| h.is_some()))
        {
            let end = parse_head(text, false).unwrap().unwrap().len;
            for n in 0..end {
                assert_eq!(
                    parse_head(&text[..n], false),
                    Ok(None),
                    "{:?}",
                    text[..n].escape_ascii()
                );
            }
        }
    }

    /// The same head through `httparse` (default settings) and the same field rules.
    fn reference(buf: &[u8]) -> Result<RawHead, Stop> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Err(Stop::Partial),
            Err(_) => return Err(Stop::Invalid),
        };
        let mut head = RawHead {
            status: response.code.unwrap(),
            length: None,
            chunked: false,
            close: response.version == Some(0),
            len,
        };
        for h in response.headers.iter() {
            head.apply_field(h.name.as_bytes(), h.value)?;
        }
        Ok(head)
    }

    const CORPUS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 15:23:12 GMT\r\n\
         Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length:  12 \r\n\r\n",
        b"HTTP/1.0 404 Not Found\nConnection: Keep-Alive, Upgrade\nX-A:\t\tb\tc\n\n",
        b"\r\n\nHTTP/1.1 204\r\n\r\n",
        b"HTTP/1.1 200 Ok \x80\xff\r\nTransfer-Encoding: gzip, Chunked\r\nX-Empty:\r\n\r\n",
        b"HTTP/1.1 301 Moved\r\nLocation: /a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 500 \r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
    ];

    #[test]
    fn agrees_with_httparse_on_heads_with_one_byte_changed() {
        let bytes = [
            0u8, b'\t', b'\n', b'\r', b' ', b':', b'0', b'9', b'a', b',', b'"', b'(', 0x1f, 0x7f, 0x80, 0xff,
        ];
        let mut checked = 0;
        for text in CORPUS {
            let base = *text;
            let mut variants = vec![base.to_vec()];
            for i in 0..base.len() {
                for &b in &bytes {
                    let mut v = base.to_vec();
                    v[i] = b;
                    variants.push(v);
                }
                let mut cut = base.to_vec();
                cut.remove(i);
                variants.push(cut);
            }
            // Every prefix too: a partial head must be told from an invalid one as early.
            for v in variants {
                for n in 0..=v.len() {
                    let (mine, theirs) = (parse_one(&v[..n]), reference(&v[..n]));
                    if mine == Err(Stop::Invalid) && theirs == Err(Stop::Partial) {
                        // A field is refused as soon as its line is complete (an empty
                        // Content-Length, say), not only once the whole head is.
                        let ended = [&v[..n], b"\r\n\r\n"].concat();
                        assert_eq!(reference(&ended), Err(Stop::Invalid), "{}", ended.escape_ascii());
                    } else {
                        assert_eq!(mine, theirs, "{}", v[..n].escape_ascii());
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 500_000, "{checked}");
    }

    #[test]
    fn too_many_fields_and_odd_lengths() {
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_head(many.as_bytes(), false), Err(ErrorKind::Protocol));
        let enough = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS));
        assert!(parse_head(enough.as_bytes(), false).unwrap().is_some());
        for bad in ["+2", "-2", "2, 2", "0x2", "", "18446744073709551616"] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(parse_head(text.as_bytes(), false), Err(ErrorKind::Protocol), "{bad:?}");
        }
        let long = format!("HTTP/1.1 200 OK\r\nA: {}", "x".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_head(long.as_bytes(), false), Err(ErrorKind::Protocol));
    }

    #[test]
    fn field_names_match_ignoring_case_and_nothing_else() {
        for lower in [&b"content-length"[..], b"transfer-encoding", b"connection"] {
            assert!(is_name(&lower.to_ascii_uppercase(), lower));
            assert!(!is_name(&lower[1..], lower));
            for i in 0..lower.len() {
                for b in 0..=255u8 {
                    let mut name = lower.to_vec();
                    name[i] = b;
                    if name.iter().all(|&c| TCHAR[usize::from(c)]) {
                        assert_eq!(
                            is_name(&name, lower),
                            name.eq_ignore_ascii_case(lower),
                            "{}",
                            name.escape_ascii()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn first_control_finds_the_first_one_in_any_word_position() {
        for len in 0..20 {
            for pos in 0..len {
                for c in [0u8, b'\t', b'\r', 0x1f, 0x7f] {
                    let mut v = vec![b'a'; len];
                    v[pos] = c;
                    // A second control byte further on must not be reported instead.
                    if pos + 1 < len {
                        v[len - 1] = 0;
                    }
                    assert_eq!(first_control(&v, 0), Some(pos), "{v:?}");
                    assert_eq!(first_control(&v, pos + 1), (pos + 1 < len).then_some(len - 1), "{v:?}");
                }
            }
            let clean: Vec<u8> = (0..len).map(|i| [b' ', b'~', 0x80, 0xff, b'!'][i % 5]).collect();
            assert_eq!(first_control(&clean, 0), None);
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
