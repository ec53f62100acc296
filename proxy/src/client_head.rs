//! A client's request head as the request path carries it.
//!
//! It is made once, boxed, where the head is read (the HTTP/1 server, or the HTTP/2 one), and
//! handed down every level of the request path as that box: carried by value, the head (some
//! 350 bytes with its lines) was copied again at each level, which measured more instructions
//! per request than the allocation (docs/benchmarks.md). The box is [`Recycled`]: the next
//! request on the thread reuses it, so a keep-alive request allocates nothing for its head.

use http::request::Parts;

use crate::headers::request_lines::RequestLines;
use crate::recycle::Recycled;

pub struct ClientHead {
    /// Method, target, version, extensions; and the headers, unless `lines` holds them.
    pub parts: Parts,
    /// An HTTP/1 request's header lines as received. While they are here, `parts.headers` is
    /// empty: most requests are forwarded from their lines without a map ever being built, and
    /// code that needs the map fills it with `RequestLines::fill_map`.
    pub lines: Option<RequestLines>,
}

impl ClientHead {
    /// A head whose headers are in `parts` already (HTTP/2).
    pub fn from_parts(parts: Parts) -> Recycled<ClientHead> {
        Recycled::new(ClientHead { parts, lines: None })
    }
}

crate::recycled!(ClientHead);
