//! Small accessors for objects held as JSON: metadata fields, timestamps, uids.
//!
//! Objects stay `serde_json::Value` inside the simulator so every resource (and fields the
//! simulator does not model) round-trips unchanged; these helpers are the one place that knows
//! where the metadata lives.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

/// `(namespace, name)`; cluster-scoped objects have an empty namespace.
pub fn key(object: &Value) -> (String, String) {
    (namespace(object).to_string(), name(object).to_string())
}

pub fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

pub fn name(object: &Value) -> &str {
    str_at(object, "/metadata/name")
}

pub fn namespace(object: &Value) -> &str {
    str_at(object, "/metadata/namespace")
}

pub fn uid(object: &Value) -> &str {
    str_at(object, "/metadata/uid")
}

pub fn resource_version(object: &Value) -> u64 {
    str_at(object, "/metadata/resourceVersion").parse().unwrap_or(0)
}

pub fn set_resource_version(object: &mut Value, version: u64) {
    if let Some(meta) = metadata_mut(object) {
        meta.insert("resourceVersion".into(), Value::String(version.to_string()));
    }
}

/// `metadata` as a map, created if missing (or if it was not an object).
pub fn metadata_mut(object: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let map = object.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    meta.as_object_mut()
}

/// A label or annotation value (`None` if absent).
pub fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/labels")?.get(key)?.as_str()
}

/// Now, as the API server writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    timestamp(k8s_openapi::jiff::Timestamp::now())
}

/// `MicroTime` fields (events' `eventTime`) keep microseconds.
pub fn timestamp(at: k8s_openapi::jiff::Timestamp) -> String {
    let seconds = at.as_second();
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A random-enough 64-bit number without a dependency: std's per-process SipHash keys
/// mixed with a counter.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A version-4 style UUID string, as `metadata.uid` looks on a cluster.
pub fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Five lowercase alphanumerics for `generateName`, from the API server's alphabet (no vowels,
/// no digits that look like letters).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Sets a condition in `status.conditions` (`PodScheduled`, `Ready`, …), keeping its
/// `lastTransitionTime` when the status does not change, as the kubelet and scheduler do.
pub fn set_condition(object: &mut Value, kind: &str, status: bool, reason: Option<&str>, message: Option<&str>) {
    let Some(map) = object.as_object_mut() else { return };
    let status_obj = map.entry("status").or_insert_with(|| Value::Object(Default::default()));
    if !status_obj.is_object() {
        *status_obj = Value::Object(Default::default());
    }
    let conditions = status_obj
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| Value::Array(Vec::new())));
    let Some(Value::Array(conditions)) = conditions else {
        return;
    };
    let status_text = if status { "True" } else { "False" };
    let mut condition = serde_json::json!({"type": kind, "status": status_text, "lastProbeTime": null});
    if let Some(reason) = reason {
        condition["reason"] = Value::String(reason.to_string());
    }
    if let Some(message) = message {
        condition["message"] = Value::String(message.to_string());
    }
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(existing) => {
            let transition = if existing.get("status").and_then(Value::as_str) == Some(status_text) {
                existing
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or_else(|| Value::String(now()))
            } else {
                Value::String(now())
            };
            condition["lastTransitionTime"] = transition;
            *existing = condition;
        }
        None => {
            condition["lastTransitionTime"] = Value::String(now());
            conditions.push(condition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_whole_seconds_utc() {
        let at = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(timestamp(at), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn uids_look_like_uuids_and_differ() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
