//! Spawn progress: an append-only log of events per spawn, followed by any number of readers
//! (the SSE stream of `/hub/api/users/{name}/server/progress`, the pending page).
//!
//! A reader that attaches late gets every event from the start, then follows live; nothing is
//! dropped for a slow reader, because readers hold an index into the log, not a queue.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One event, in JupyterHub's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// 0–100.
    pub progress: u8,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_message: Option<String>,
    /// Set only by the hub, on the last event: the server is up at `url`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl ProgressEvent {
    pub fn message(progress: u8, message: impl Into<String>) -> ProgressEvent {
        ProgressEvent {
            progress: progress.min(100),
            message: message.into(),
            html_message: None,
            ready: false,
            failed: false,
            url: None,
        }
    }

    /// The event that ends a log.
    pub fn is_final(&self) -> bool {
        self.ready || self.failed
    }
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<ProgressEvent>,
}

/// Called with each event a log takes: how the replica running a spawn shares its progress with
/// the other replicas (through the state database).
pub type Publisher = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

/// The writing end, given to the spawner (`push`) and kept by the hub (`finish`).
#[derive(Clone)]
pub struct ProgressSink {
    log: Arc<watch::Sender<Arc<Log>>>,
    publish: Option<Publisher>,
}

/// The reading end; cheap to clone.
#[derive(Clone)]
pub struct ProgressLog {
    log: Arc<watch::Sender<Arc<Log>>>,
}

/// A new, empty log.
pub fn channel() -> (ProgressSink, ProgressLog) {
    let (tx, _) = watch::channel(Arc::new(Log::default()));
    let tx = Arc::new(tx);
    (
        ProgressSink {
            log: tx.clone(),
            publish: None,
        },
        ProgressLog { log: tx },
    )
}

impl ProgressSink {
    /// The same log, each event also handed to `publish`.
    pub fn publishing(self, publish: Publisher) -> ProgressSink {
        ProgressSink {
            publish: Some(publish),
            ..self
        }
    }

    /// The same log, its events kept to this replica.
    pub fn unpublished(&self) -> ProgressSink {
        ProgressSink {
            log: self.log.clone(),
            publish: None,
        }
    }

    /// Adds an event another replica's spawn published, as it was (a final event ends the log).
    pub fn replay(&self, event: ProgressEvent) {
        self.append(event);
    }

    /// How many events the log holds.
    pub fn len(&self) -> usize {
        self.log.borrow().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the log has ended.
    pub fn ended(&self) -> bool {
        self.log.borrow().events.last().is_some_and(ProgressEvent::is_final)
    }

    /// Adds a spawner's event. Spawners cannot end the log: `ready`/`failed` are the hub's to set,
    /// so they are cleared here (as JupyterHub strips them).
    pub fn push(&self, mut event: ProgressEvent) {
        event.ready = false;
        event.failed = false;
        event.url = None;
        event.progress = event.progress.min(99);
        self.append(event);
    }

    /// The hub's last event.
    pub fn finish(&self, event: ProgressEvent) {
        self.append(event);
    }

    fn append(&self, event: ProgressEvent) {
        let mut appended = false;
        self.log.send_modify(|log| {
            if log.events.last().is_some_and(ProgressEvent::is_final) {
                return;
            }
            let mut events = log.events.clone();
            events.push(event.clone());
            *log = Arc::new(Log { events });
            appended = true;
        });
        if appended && let Some(publish) = &self.publish {
            publish(&event);
        }
    }
}

impl ProgressLog {
    /// Events from index `from` on, waiting until there is at least one. `None` once the log has
    /// ended and everything was read (or the spawn was abandoned with no final event).
    pub async fn next_batch(&self, from: usize) -> Option<Vec<ProgressEvent>> {
        let mut rx = self.log.subscribe();
        loop {
            {
                let log = rx.borrow_and_update();
                if log.events.len() > from {
                    return Some(log.events[from..].to_vec());
                }
                if log.events.last().is_some_and(ProgressEvent::is_final) {
                    return None;
                }
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Ends a log whose spawn was cancelled, so followers stop waiting (no-op if it ended).
    pub fn abandon(&self, message: &str) {
        let mut event = ProgressEvent::message(100, message);
        event.failed = true;
        ProgressSink {
            log: self.log.clone(),
            publish: None,
        }
        .finish(event);
    }

    /// Everything so far.
    pub fn snapshot(&self) -> Vec<ProgressEvent> {
        self.log.borrow().events.clone()
    }

    pub fn last(&self) -> Option<ProgressEvent> {
        self.log.borrow().events.last().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_reader_gets_everything_then_the_end() {
        let (sink, log) = channel();
        sink.push(ProgressEvent::message(10, "one"));
        let mut spoofed = ProgressEvent::message(100, "spawner says ready");
        spoofed.ready = true;
        sink.push(spoofed);
        let reader = log.clone();
        let follow = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(batch) = reader.next_batch(seen.len()).await {
                seen.extend(batch);
            }
            seen
        });
        let mut done = ProgressEvent::message(100, "ready");
        done.ready = true;
        sink.finish(done);
        sink.push(ProgressEvent::message(50, "after the end"));
        let seen = follow.await.unwrap();
        let messages: Vec<_> = seen.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["one", "spawner says ready", "ready"]);
        assert!(!seen[1].ready, "a spawner cannot end the log");
        assert_eq!(seen[1].progress, 99);
        assert!(seen[2].ready);
    }
}
