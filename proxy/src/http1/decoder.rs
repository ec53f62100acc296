//! Reading a framed message body off a connection's read buffer (RFC 9112 §6 and §7.1): by
//! length, chunked (extensions ignored, trailers read and dropped), or until the connection
//! closes. Data is split off the buffer without copying.

use bytes::{Buf, Bytes, BytesMut};
use http_body::SizeHint;

use super::Framing;

/// Chunk-size lines and trailer sections longer than this are refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// A chunked body that breaks the grammar (or its limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body")]
pub struct BadChunk;

/// What the buffer gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// More bytes are needed from the connection.
    NeedMore,
    /// The body is complete; the buffer holds whatever follows it.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    /// Chunked: the next thing expected.
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers {
        seen: usize,
    },
    UntilClose,
    Done,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether only the end of the connection ends the body.
    pub fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// The bytes still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// `remaining` as an `http_body` size hint.
    pub fn size_hint(&self) -> SizeHint {
        self.remaining().map_or_else(SizeHint::default, SizeHint::with_exact)
    }

    /// Marks the body complete (a body delimited by close, at end of stream; or abandoned).
    pub fn end(&mut self) {
        self.state = State::Done;
    }

    /// The next data decodable from `buf`, moving the state along.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BadChunk> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Length(n) | State::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(n).map_or(buf.len(), |n| n.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    let left = n - take as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Decoded::Data(data));
                }
                State::UntilClose => {
                    return Ok(match buf.is_empty() {
                        true => Decoded::NeedMore,
                        false => Decoded::Data(buf.split().freeze()),
                    });
                }
                State::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers { seen: 0 }
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BadChunk);
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers { seen } => {
                    // Trailer fields are read and dropped: an HTTP/1.1 recipient that did not
                    // ask with `TE: trailers` would not be sent them anyway.
                    let Some(line) = take_line(buf, MAX_TRAILERS - seen)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = if line.is_empty() {
                        State::Done
                    } else {
                        State::Trailers {
                            seen: seen + line.len() + 2,
                        }
                    };
                }
            }
        }
    }
}

/// Splits one CRLF-terminated line off the front of `buf` (without the CRLF).
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, BadChunk> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        Some(_) => Err(BadChunk),
        None if buf.len() > max => Err(BadChunk),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optional extensions, which are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BadChunk> {
    let digits = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let rest = line[digits..].trim_ascii_start();
    if digits == 0 || digits > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(BadChunk);
    }
    line[..digits].iter().try_fold(0u64, |n, b| {
        let d = (*b as char).to_digit(16).ok_or(BadChunk)?;
        Ok(n << 4 | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_parse_with_extensions_and_refuse_junk() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"0").unwrap(), 0);
        assert_eq!(parse_chunk_size(b"FF;name=value").unwrap(), 255);
        assert_eq!(parse_chunk_size(b"10 ;x").unwrap(), 16);
        for bad in [&b""[..], b"x1", b"1x", b"-1", b"1234567890abcdef0", b";ext"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_need_crlf_and_a_bound() {
        let mut buf = BytesMut::from(&b"5\r\nhello"[..]);
        assert_eq!(&take_line(&mut buf, 16).unwrap().unwrap()[..], b"5");
        assert_eq!(&buf[..], b"hello");
        assert!(take_line(&mut buf, 16).unwrap().is_none());
        assert!(take_line(&mut BytesMut::from(&b"5\n"[..]), 16).is_err());
        assert!(take_line(&mut BytesMut::from(&b"123456"[..]), 4).is_err());
    }

    #[test]
    fn a_chunked_body_arriving_in_pieces_decodes_and_leaves_what_follows() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"3\r\nab"[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"ab")));
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::NeedMore);
        buf.extend_from_slice(b"c\r\n0\r\nX-T: 1\r\n\r\nGET");
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"c")));
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Done);
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut d = BodyDecoder::new(Framing::Length(4));
        let mut buf = BytesMut::from(&b"abcdefg"[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"abcd")));
        assert!(d.is_done());
        assert_eq!(&buf[..], b"efg");
    }
}
