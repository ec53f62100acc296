//! `GET /hub/api/users/{name}/server/progress`: the spawn's progress log as server-sent events
//! (`data: {json}`), from the first event, then live, ending with the `ready` or `failed` event.
//! A comment line every 8 s keeps idle proxies from closing the stream (JupyterHub's keepalive).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::hub::Hub;
use crate::model::Phase;
use crate::progress::ProgressEvent;
use crate::web::{Body, json_error};

const KEEPALIVE: Duration = Duration::from_secs(8);

fn event_bytes(event: &ProgressEvent) -> Bytes {
    let json = serde_json::to_string(event).unwrap_or_default();
    Bytes::from(format!("data: {json}\n\n"))
}

pub fn respond(hub: &Arc<Hub>, user: &str, server: &str) -> http::Response<Body> {
    let Some(s) = hub.follow(user, server) else {
        return json_error(StatusCode::NOT_FOUND, &format!("{user} has no server {server:?}"));
    };
    let prefix = hub.prefix(user, server);
    let failed = s.spawn_failed();
    let log = match (s.phase(), s.progress) {
        (Phase::Pending, Some(log)) => Some(log),
        (Phase::Running, _) => None,
        // A failed spawn's log still says why, once.
        (Phase::Stopped, Some(log)) if failed => Some(log),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("{user}'s server {server:?} is not running or starting"),
            );
        }
    };
    let stream = futures_util::stream::unfold((log, 0usize, false), move |(log, seen, done)| {
        let prefix = prefix.clone();
        async move {
            if done {
                return None;
            }
            let Some(log) = log else {
                // Already running: one event says so.
                let mut ready = ProgressEvent::message(100, format!("Server ready at {prefix}"));
                ready.ready = true;
                ready.url = Some(prefix);
                return Some((
                    Ok::<_, std::convert::Infallible>(Frame::data(event_bytes(&ready))),
                    (None, 0, true),
                ));
            };
            match tokio::time::timeout(KEEPALIVE, log.next_batch(seen)).await {
                Err(_) => Some((
                    Ok(Frame::data(Bytes::from_static(b":keepalive\n\n"))),
                    (Some(log), seen, false),
                )),
                Ok(None) => None,
                Ok(Some(batch)) => {
                    let ended = batch.last().is_some_and(ProgressEvent::is_final);
                    let mut out = Vec::new();
                    for e in &batch {
                        out.extend_from_slice(&event_bytes(e));
                    }
                    Some((
                        Ok(Frame::data(Bytes::from(out))),
                        (Some(log), seen + batch.len(), ended),
                    ))
                }
            }
        }
    });
    let mut r = http::Response::new(StreamBody::new(stream).boxed());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering proxies (nginx) to pass events through at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
