//! Watch streams: newline-delimited `{"type": …, "object": …}` events after a resourceVersion,
//! filtered by namespace and selectors, with bookmarks, a server-side timeout, and the
//! injected watch faults.
//!
//! Invariants (as the API server's watch cache keeps them):
//! - events arrive in resourceVersion order, each exactly once;
//! - an object entering the selected set arrives as ADDED and one leaving it as DELETED, so a
//!   client's cache of "objects matching my selector" stays exact;
//! - a bookmark carries a version the stream has already delivered everything up to, so a
//!   client may resume from it;
//! - resuming from a version the history no longer holds ends the stream with an ERROR event
//!   carrying a 410 Expired `Status`, which is how kube-runtime's watcher learns to re-list.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::api_error::ApiError;
use super::faults::Faults;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Change, ChangeKind, Store};

/// What one watch request asked for.
pub struct WatchRequest {
    pub resource: &'static ResourceType,
    /// `None` watches every namespace.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// The version to resume after; `None` (or "0") first sends the current state as ADDED.
    pub since: Option<u64>,
    /// `sendInitialEvents=true`: the current state as ADDED, then a bookmark marking its end.
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
}

/// What a watch stream needs from the server around it.
pub struct WatchContext {
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    pub bookmark_interval: Duration,
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        let namespace_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| super::object::namespace(object) == ns);
        namespace_ok
            && self.labels.matches(object)
            && self.fields.matches(object, |o, f| self.resource.field_value(o, f))
    }

    /// The event a change is, as seen through this request's filters.
    fn event_for<'c>(&self, change: &'c Change) -> Option<(&'static str, &'c Value)> {
        if change.resource != self.resource.plural {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.previous.as_deref().is_some_and(|p| self.selects(p));
        let kind = match (change.kind, before, now) {
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Modified, false, true) => "ADDED",
            (ChangeKind::Modified, true, true) => "MODIFIED",
            (ChangeKind::Modified, true, false) => "DELETED",
            (ChangeKind::Deleted, _, true) => "DELETED",
            _ => return None,
        };
        Some((kind, &change.object))
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.resource.kind, "apiVersion": "v1", "metadata": metadata})
    }
}

/// Streams events into `out` until the timeout, a fault, shutdown, or the client going away.
pub async fn run(request: WatchRequest, mut ctx: WatchContext, out: mpsc::Sender<Bytes>) {
    let stream_id = ctx.faults.open_stream();
    let mut closes = ctx.faults.close_generation.subscribe();
    closes.borrow_and_update();
    let mut stalls = ctx.faults.stall.subscribe();
    let mut changes = ctx.store.subscribe();
    let deadline = Instant::now() + request.timeout;
    let mut next_bookmark = Instant::now() + ctx.bookmark_interval;

    let send = |kind: &str, object: &Value| {
        let mut line = serde_json::to_vec(&Line { kind, object }).unwrap_or_default();
        line.push(b'\n');
        let out = out.clone();
        async move { out.send(Bytes::from(line)).await.is_ok() }
    };

    let mut cursor = match request.since {
        Some(since) if !request.send_initial_events => since,
        _ => {
            let (objects, version) = ctx.store.list(request.resource.plural, request.namespace.as_deref());
            for object in objects.iter().filter(|o| request.selects(o)) {
                if !send("ADDED", object).await {
                    return;
                }
            }
            if request.send_initial_events && !send("BOOKMARK", &request.bookmark(version, true)).await {
                return;
            }
            version
        }
    };

    loop {
        let stalled_until = (*stalls.borrow_and_update())
            .filter(|s| stream_id < s.opened_before && std::time::Instant::now() < s.until)
            .map(|s| Instant::from_std(s.until));
        if stalled_until.is_none() {
            // Mark the store's version as seen before reading, so a write that lands while we
            // send still wakes the `changed()` below.
            changes.borrow_and_update();
            match ctx.store.changes_since(cursor) {
                Err(expired) => {
                    let error = ApiError::gone(format!(
                        "too old resource version: {cursor} ({})",
                        expired.oldest_available
                    ));
                    send("ERROR", &error.to_status()).await;
                    return;
                }
                Ok(batch) => {
                    for change in &batch {
                        if let Some((kind, object)) = request.event_for(change)
                            && !send(kind, object).await
                        {
                            return;
                        }
                        cursor = change.resource_version;
                    }
                }
            }
            if request.bookmarks && Instant::now() >= next_bookmark {
                if !send("BOOKMARK", &request.bookmark(cursor, false)).await {
                    return;
                }
                next_bookmark = Instant::now() + ctx.bookmark_interval;
            }
        }
        let wake_for_bookmark = if request.bookmarks && stalled_until.is_none() {
            next_bookmark
        } else {
            deadline
        };
        tokio::select! {
            _ = changes.changed(), if stalled_until.is_none() => {}
            _ = sleep_until(wake_for_bookmark.min(deadline)) => {
                if Instant::now() >= deadline {
                    return;
                }
            }
            _ = sleep_until(stalled_until.unwrap_or(deadline)), if stalled_until.is_some() => {}
            _ = stalls.changed() => {}
            _ = closes.changed() => return,
            _ = ctx.shutdown.changed() => return,
            _ = out.closed() => return,
        }
    }
}
