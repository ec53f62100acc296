//! What a message's headers say about its framing and its connection (RFC 9112 §6, §9.3),
//! gathered in the one pass that builds the header map.

use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};

/// A `Content-Length` that is not a number, or several that disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Content-Length")]
pub struct BadContentLength;

/// What the headers say about framing and persistence, gathered while the map is built.
#[derive(Default)]
pub struct FramingHeaders {
    pub content_length: Option<u64>,
    pub transfer_encoding: bool,
    /// The last transfer coding seen is `chunked`.
    pub chunked_last: bool,
    /// Codings besides one final `chunked` were seen (`gzip, chunked`, `chunked, chunked`).
    pub other_codings: bool,
    /// How many codings were listed.
    codings: u8,
    pub close: bool,
    pub keep_alive: bool,
}

impl FramingHeaders {
    pub fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), BadContentLength> {
        if *name == CONTENT_LENGTH {
            self.content_length(value.as_bytes())?;
        } else if *name == TRANSFER_ENCODING {
            self.transfer_encoding(value.as_bytes());
        } else if *name == CONNECTION {
            self.connection(value.as_bytes());
        }
        Ok(())
    }

    pub fn content_length(&mut self, value: &[u8]) -> Result<(), BadContentLength> {
        // Repeated or comma-joined values must agree (RFC 9110 §8.6).
        for part in value.split(|b| *b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(BadContentLength)?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(BadContentLength);
            }
            self.content_length = Some(n);
        }
        Ok(())
    }

    pub fn transfer_encoding(&mut self, value: &[u8]) {
        self.transfer_encoding = true;
        // The codings of every `Transfer-Encoding` line, in order, as one list (RFC 9110 §5.3).
        for coding in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            // `identity` is no coding at all (RFC 2616's; old servers still send it).
            if coding.is_empty() || coding.eq_ignore_ascii_case(b"identity") {
                continue;
            }
            // Whatever came before this one is a coding besides the final `chunked`.
            self.other_codings |= self.codings > 0;
            self.codings = self.codings.saturating_add(1);
            self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
        }
        self.other_codings |= self.codings > 0 && !self.chunked_last;
    }

    /// `Transfer-Encoding` names a coding (`identity` is none).
    pub fn has_codings(&self) -> bool {
        self.codings > 0
    }

    /// `Transfer-Encoding` is there and is exactly `chunked`: the only transfer coding the
    /// proxy can relay. It decodes `chunked` and frames the body again for the next hop, so
    /// any other coding (`gzip, chunked`) would reach it undeclared, and the body be garbled.
    pub fn only_chunked(&self) -> bool {
        self.transfer_encoding && self.chunked_last && !self.other_codings
    }

    pub fn connection(&mut self, value: &[u8]) {
        // The value nearly every message carries, without splitting it.
        if value.eq_ignore_ascii_case(b"keep-alive") {
            self.keep_alive = true;
            return;
        }
        // Split here rather than through `hop_by_hop::connection_tokens`, which measured about
        // 220 more instructions per response (it is not inlined into this loop).
        for token in value.split(|b| *b == b',') {
            let token = token.trim_ascii();
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter()
        .try_fold(0u64, |n, b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}
