//! core/v1 Events from the simulated scheduler and kubelet, as a client-go event recorder
//! writes them: one object per distinct (object, reason, message), whose `count` and
//! `lastTimestamp` go up when the same thing happens again (a crash loop's `BackOff`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::object;
use super::registry::Registry;
use super::resources;

/// Normal or Warning, the two event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Who reports an event (`source.component`) and from where (`source.host`).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
}

pub const SCHEDULER: Source<'static> = Source {
    component: "default-scheduler",
    host: None,
};

pub fn kubelet(node: &str) -> Source<'_> {
    Source {
        component: "kubelet",
        host: Some(node),
    }
}

/// (involved object's uid, reason, message): what makes two events "the same thing again".
type Occurrence = (String, String, String);

pub struct EventRecorder {
    registry: Arc<Registry>,
    /// (involved uid, reason, message) → the event's name, to bump `count` on repeats.
    existing: Mutex<HashMap<Occurrence, (String, String)>>,
}

impl EventRecorder {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            existing: Mutex::new(HashMap::new()),
        }
    }

    /// Records that `reason` happened to `involved` (a stored object). `field_path` points at a
    /// container (`spec.containers{notebook}`) for container events.
    pub fn record(
        &self,
        involved: &Value,
        field_path: Option<&str>,
        event_type: EventType,
        reason: &str,
        message: &str,
        source: Source<'_>,
    ) {
        let (namespace, name) = object::key(involved);
        let uid = object::uid(involved).to_string();
        let dedup_key = (uid.clone(), reason.to_string(), message.to_string());
        let mut existing = self.existing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((ns, event_name)) = existing.get(&dedup_key) {
            let bumped = self
                .registry
                .store
                .update(resources::EVENTS.plural, ns, event_name, |event| {
                    let mut event = event.clone();
                    let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
                    event["count"] = json!(count + 1);
                    event["lastTimestamp"] = json!(object::now());
                    Ok(Some(event))
                });
            if bumped.is_ok() {
                return;
            }
        }
        let mut involved_object = json!({
            "kind": involved.get("kind").and_then(Value::as_str).unwrap_or("Pod"),
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "apiVersion": "v1",
            "resourceVersion": object::str_at(involved, "/metadata/resourceVersion"),
        });
        if let Some(path) = field_path {
            involved_object["fieldPath"] = json!(path);
        }
        let mut source_json = json!({"component": source.component});
        if let Some(host) = source.host {
            source_json["host"] = json!(host);
        }
        let now = object::now();
        let event_name = format!("{name}.{:016x}", object::random_u64());
        let event = json!({
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": involved_object,
            "reason": reason,
            "message": message,
            "source": source_json,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": match event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "reportingComponent": source.component,
            "reportingInstance": source.host.unwrap_or(source.component),
        });
        let event_namespace = if namespace.is_empty() {
            "default".to_string()
        } else {
            namespace
        };
        if let Ok(created) = self.registry.create(resources::EVENTS, &event_namespace, event) {
            existing.insert(dedup_key, object::key(&created));
        }
    }

    /// Forgets the repeat bookkeeping of an object that is gone.
    pub fn forget(&self, uid: &str) {
        self.existing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(u, _, _), _| u != uid);
    }
}
