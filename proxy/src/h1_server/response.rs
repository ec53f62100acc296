//! Writing a response to an HTTP/1.x client: the head, then the body framed by length, by
//! chunks, or by closing the connection (RFC 9112 §4–§7).

use std::io::Write;
use std::pin::Pin;
use std::task::Poll;

use std::fmt::Display;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::{StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::date::write_date_line;
use crate::client_io::ClientIo;
use crate::headers::raw::RawHeaders;
use crate::http1::{push_decimal, response_is_bodiless};

/// Data frames up to this size are copied behind their framing to go out in one write; larger
/// ones are written where they are.
const COPY_LIMIT: usize = 16 * 1024;

/// What the server writes a response's body from: its data, and the header lines it carries
/// from where it came, written after the head's own as they are (see `RawHeaders`).
pub trait Outgoing: Body<Data = Bytes> + Unpin {
    fn relayed_headers(&self) -> Option<&RawHeaders> {
        None
    }
}

impl Outgoing for http_body_util::Empty<Bytes> {}

/// What the request decided about its response.
pub struct ResponseContext {
    pub version: Version,
    pub head_request: bool,
    /// The client and the server both let the connection continue.
    pub keep_alive: bool,
}

/// How the body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Writes the response; `Ok(true)` when the connection may serve another request.
///
/// A body of known size (`size_hint().exact()`) goes out with a `Content-Length`, any other as
/// chunks (HTTP/1.1) or until the connection closes (HTTP/1.0). Whatever the body yields at once
/// leaves in the same write as the head.
pub async fn write_response<B>(
    io: &mut ClientIo,
    out: &mut Vec<u8>,
    parts: &Parts,
    mut body: B,
    cx: &ResponseContext,
) -> std::io::Result<bool>
where
    B: Outgoing,
    B::Error: Display,
{
    let status = parts.status;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let bodiless = response_is_bodiless(status, cx.head_request);
    let size = body.size_hint().exact();
    let framing = match size {
        _ if bodiless => BodyFraming::None,
        Some(n) => BodyFraming::Length(n),
        None if cx.version == Version::HTTP_11 => BodyFraming::Chunked,
        None => BodyFraming::UntilClose,
    };
    let mut keep_alive = cx.keep_alive && framing != BodyFraming::UntilClose;

    write_status_line(out, parts);
    let mut has_date = false;
    let mut has_length = false;
    for (name, value) in &parts.headers {
        if *name == CONNECTION && !switching {
            // The connection's fate is ours to state; a response that asks to close gets it.
            keep_alive &= !value.as_bytes().windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
            continue;
        }
        if (*name == CONTENT_LENGTH || *name == TRANSFER_ENCODING) && !bodiless {
            continue;
        }
        has_date |= *name == DATE;
        has_length |= *name == CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(raw) = body.relayed_headers() {
        raw.write_to(out);
        has_date |= raw.has_date;
    }
    if !has_date {
        write_date_line(out);
    }
    match framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A response to HEAD made here (an error page) states the length a GET would get.
        BodyFraming::None if cx.head_request && !has_length => {
            if let Some(n) = size.filter(|n| *n > 0) {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
        }
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    if !switching {
        // Stated even where HTTP/1.1 implies it: CHP does, and so clients written against it
        // look for it.
        out.extend_from_slice(match keep_alive {
            true => b"connection: keep-alive\r\n",
            false => b"connection: close\r\n",
        });
    }
    out.extend_from_slice(b"\r\n");

    if framing != BodyFraming::None && !stream_body(io, out, &mut body, framing).await? {
        return Ok(false);
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(keep_alive)
}

fn write_status_line(out: &mut Vec<u8>, parts: &Parts) {
    if parts.status == StatusCode::OK && parts.extensions.is_empty() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    // An upstream's own reason phrase is relayed, as CHP does.
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
}

/// Small data joins what is already buffered (one write for head and body); large data is
/// written where it is, after the buffer.
async fn append_or_write(io: &mut ClientIo, out: &mut Vec<u8>, data: &Bytes) -> std::io::Result<()> {
    if data.len() <= COPY_LIMIT {
        out.extend_from_slice(data);
        return Ok(());
    }
    io.write_all(out).await?;
    out.clear();
    io.write_all(data).await
}

/// Relays a streamed body; `Ok(false)` when it ended early (the connection must then close,
/// as the client cannot know where the message ends).
async fn stream_body<B>(
    io: &mut ClientIo,
    out: &mut Vec<u8>,
    body: &mut B,
    framing: BodyFraming,
) -> std::io::Result<bool>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    loop {
        // Whatever is buffered goes out before waiting on the upstream.
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            Some(Err(e)) => {
                tracing::debug!("response body from upstream failed: {e}");
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                return Ok(false);
            }
        };
        if framing == BodyFraming::Chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
            append_or_write(io, out, &data).await?;
            out.extend_from_slice(b"\r\n");
        } else {
            append_or_write(io, out, &data).await?;
        }
    }
    if framing == BodyFraming::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(true)
}
