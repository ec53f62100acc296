//! HTTP/1.1 wire pieces shared by both sides of the proxy: the client side (`h1_server`) and the
//! upstream side (`upstream`) read bodies with the same decoder and hand over upgraded
//! connections with the same rewinding stream.

pub mod decoder;
pub mod framing;
mod io_enum;
pub mod rewind;

pub use decoder::{BadChunk, BodyDecoder, Decoded};
pub use framing::{BadContentLength, FramingHeaders};
pub use rewind::Rewind;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a request without one; a response to HEAD, 1xx, 204, 304, or a `101` whose
    /// connection is taken over.
    Empty,
    Length(u64),
    Chunked,
    /// Delimited by the end of the connection (responses only).
    UntilClose,
}

/// Whether a response has no body whatever its headers say (RFC 9112 §6.3): one to `HEAD`, a
/// 1xx, a 204 or a 304. Its `Content-Length` then describes the representation, not the message.
pub fn response_is_bodiless(status: http::StatusCode, head_request: bool) -> bool {
    head_request
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// The one error type message bodies yield; a server turns it into an aborted connection.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Appends `n` in decimal: what `write!` does for a `Content-Length`, without the formatting
/// machinery it costs on every response.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Read buffers grow by this much when they run low.
pub const READ_RESERVE: usize = 8 * 1024;

/// Reads what the socket has into `buf`, first making room when less than a quarter of
/// `READ_RESERVE` is left. `Ok(0)`: end of stream.
pub fn poll_fill<IO: tokio::io::AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut bytes::BytesMut,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_RESERVE / 4 {
        buf.reserve(READ_RESERVE);
    }
    tokio_util::io::poll_read_buf(std::pin::Pin::new(io), cx, buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for n in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut out = b"x".to_vec();
            super::push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
