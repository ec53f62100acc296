//! Helpers shared by the simulator's tests: bounded waits with clear failure messages, and pod
//! manifests.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pod with one container `main` running `command`; `extra_spec` is merged into the spec.
pub fn pod(name: &str, command: &[&str], extra_spec: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "main", "image": "busybox:1.36", "command": command}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
        .expect("a valid pod manifest")
}

/// A pod that sleeps, with these container resource requests.
pub fn sleeper(name: &str, requests: Value) -> Pod {
    let mut p = pod(name, &["sleep", "300"], json!({}));
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].resources = Some(serde_json::from_value(json!({"requests": requests})).expect("resources"));
    }
    p
}

/// The pod's events' reasons, oldest first.
pub async fn event_reasons(events: &Api<Event>, pod: &str) -> Vec<String> {
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    let mut list = events.list(&lp).await.map(|l| l.items).unwrap_or_default();
    list.sort_by_key(|e| {
        e.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    });
    list.into_iter().filter_map(|e| e.reason).collect()
}

/// The pod's first container state (`waiting.reason` / "running" / "terminated").
pub fn container_state(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let state = status.state.as_ref()?;
    if let Some(w) = &state.waiting {
        return w.reason.clone();
    }
    if state.running.is_some() {
        return Some("running".into());
    }
    state.terminated.as_ref().map(|_| "terminated".into())
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}
