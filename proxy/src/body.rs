//! The body types that cross the proxy, as enums rather than boxed trait objects so the hot path
//! allocates nothing for them.
//!
//! - `ClientBody` is what a client sends: read by our HTTP/1 server or by hyper's HTTP/2 one.
//! - `RequestBody` goes upstream: the client's body (streamed, each data chunk counted as route
//!   activity, as in CHP) or nothing.
//! - `ResponseBody` goes to the client: a body we generated, or the upstream's body streamed
//!   through with its bookkeeping (activity on success, connection back to the pool at the end,
//!   the upstream inactivity limit).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::activity::Activity;
use crate::h1_server::Outgoing;
use crate::headers::raw::RawHeaders;
use crate::http1::BodyError;
use crate::upstream::ResponseStream;

/// A client's request body: from our HTTP/1 server, or from hyper's HTTP/2 one.
pub enum ClientBody {
    H1(crate::h1_server::H1Body),
    Hyper(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ClientBody::H1(body) => Pin::new(body).poll_frame(cx),
            ClientBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(body) => body.is_end_stream(),
            ClientBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(body) => body.size_hint(),
            ClientBody::Hyper(body) => body.size_hint(),
        }
    }
}

pub enum RequestBody {
    Empty,
    Client {
        body: ClientBody,
        activity: Option<Activity>,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Client { body, activity } => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                if let (Some(Ok(f)), Some(activity)) = (&frame, activity)
                    && f.is_data()
                {
                    activity.mark();
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Client { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Client { body, .. } => body.size_hint(),
        }
    }
}

/// A response on its way to the client: its body, and the upstream's header lines when they
/// are relayed as they arrived (the response's `HeaderMap` then holds only what the proxy
/// adds).
pub struct ResponseBody {
    data: ResponseData,
    relayed: Option<RawHeaders>,
}

enum ResponseData {
    Full(Option<Bytes>),
    Upstream(Box<UpstreamBody>),
}

impl ResponseBody {
    pub fn empty() -> Self {
        ResponseBody {
            data: ResponseData::Full(None),
            relayed: None,
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            data: ResponseData::Full((!bytes.is_empty()).then_some(bytes)),
            relayed: None,
        }
    }

    /// An upstream's body, streamed through.
    pub fn upstream(body: UpstreamBody) -> Self {
        ResponseBody {
            data: ResponseData::Upstream(Box::new(body)),
            relayed: None,
        }
    }

    /// The upstream's header lines go with the body (see `HeaderForm::Raw`).
    pub fn relaying(mut self, lines: Option<RawHeaders>) -> Self {
        self.relayed = lines;
        self
    }

    /// The relayed header lines, for a server that writes headers from a map (hyper's HTTP/2).
    pub fn take_relayed_headers(&mut self) -> Option<RawHeaders> {
        self.relayed.take()
    }
}

impl Outgoing for ResponseBody {
    fn relayed_headers(&self) -> Option<&RawHeaders> {
        self.relayed.as_ref()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().data {
            ResponseData::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseData::Upstream(up) => Pin::new(up.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.data {
            ResponseData::Full(bytes) => bytes.is_none(),
            ResponseData::Upstream(up) => up.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.data {
            ResponseData::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseData::Full(None) => SizeHint::with_exact(0),
            ResponseData::Upstream(up) => up.body.size_hint(),
        }
    }
}

/// An upstream response body on its way to the client.
pub struct UpstreamBody {
    /// Returns its connection to the pool once it has been read to its end.
    body: ResponseStream,
    /// Marked active when the body completes (a response with status < 300, as in CHP).
    activity: Option<Activity>,
    idle: Option<IdleLimit>,
}

struct IdleLimit {
    limit: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl UpstreamBody {
    pub fn new(body: ResponseStream, activity: Option<Activity>, idle_limit: Option<Duration>) -> Self {
        UpstreamBody {
            body,
            activity,
            idle: idle_limit.map(|limit| IdleLimit {
                limit,
                sleep: Box::pin(tokio::time::sleep(limit)),
            }),
        }
    }

    /// A body whose connection is not reusable (it is closed once the body is done).
    pub fn without_pool(mut body: ResponseStream) -> Self {
        body.forbid_reuse();
        UpstreamBody {
            body,
            activity: None,
            idle: None,
        }
    }

    fn finish(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.mark();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = &mut this.idle {
                    idle.sleep.as_mut().reset(Instant::now() + idle.limit);
                }
                if this.body.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // The stream has dropped (closed) its connection.
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => {
                if let Some(idle) = &mut this.idle
                    && idle.sleep.as_mut().poll(cx).is_ready()
                {
                    // Dropping the body (which hyper does after this error) closes the connection.
                    this.body.forbid_reuse();
                    return Poll::Ready(Some(Err("upstream inactive for longer than --proxy-timeout".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
