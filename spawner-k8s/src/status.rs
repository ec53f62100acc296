//! Reading a pod's status and its events: is it running, has it failed for good, what does a
//! user see in the progress stream. Pure functions over the cached objects.
//!
//! Fail fast: a pod whose image cannot be pulled, whose container crash-loops or cannot be
//! created, or that no node can take, fails the spawn at once rather than at the start timeout.
//! The one exception is an unschedulable pod for which the cluster autoscaler announced a
//! scale-up (`TriggeredScaleUp`): a node is coming, so the spawn waits.

use k8s_openapi::api::core::v1::{Event, Pod};

use crate::error::KubeSpawnError;

/// Where a starting pod stands.
#[derive(Debug, Clone, PartialEq)]
pub enum StartState {
    /// Not running yet; a short description for the timeout message.
    Waiting(String),
    /// Running at this IP; `ready` once every container is ready (its readiness probe passed, or
    /// it runs and has none).
    Running { ip: String, ready: bool },
    /// Will not run.
    Failed(KubeSpawnError),
}

const IMAGE_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
const CONTAINER_REASONS: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Judges a starting pod. `scale_up` says whether the autoscaler announced a node for it.
pub fn start_state(pod: &Pod, scale_up: bool) -> StartState {
    if pod.metadata.deletion_timestamp.is_some() {
        return StartState::Failed(KubeSpawnError::Deleted {
            pod: pod.metadata.name.clone().unwrap_or_default(),
        });
    }
    let Some(status) = &pod.status else {
        return StartState::Waiting("created, not yet seen by the scheduler".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    for cs in status.container_statuses.iter().flatten() {
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or("");
        let message = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
        if IMAGE_REASONS.contains(&reason) {
            return StartState::Failed(KubeSpawnError::ImagePull {
                image: cs.image.clone(),
                reason: reason.to_owned(),
                message,
            });
        }
        if reason == "CrashLoopBackOff" {
            let code = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code);
            return StartState::Failed(KubeSpawnError::CrashLoop { code, message });
        }
        if CONTAINER_REASONS.contains(&reason) {
            return StartState::Failed(KubeSpawnError::Container {
                reason: reason.to_owned(),
                message,
            });
        }
    }
    if phase == "Failed" || phase == "Succeeded" {
        return StartState::Failed(KubeSpawnError::Exited {
            code: exit_code(pod),
            message: status
                .message
                .clone()
                .or_else(|| status.reason.clone())
                .unwrap_or_default(),
        });
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    if let Some(c) = unschedulable {
        let message = c.message.clone().unwrap_or_else(|| "no reason given".into());
        if !scale_up {
            return StartState::Failed(KubeSpawnError::Unschedulable { message });
        }
        return StartState::Waiting(format!("waiting for a new node: {message}"));
    }
    match (&status.pod_ip, phase) {
        (Some(ip), "Running") if !ip.is_empty() => StartState::Running {
            ip: ip.clone(),
            ready: status.container_statuses.iter().flatten().all(|c| c.ready),
        },
        _ => StartState::Waiting(format!("phase {phase}")),
    }
}

/// The server container's exit code, when it has ended.
pub fn exit_code(pod: &Pod) -> Option<i32> {
    let status = pod.status.as_ref()?;
    status.container_statuses.iter().flatten().find_map(|cs| {
        let state = cs.state.as_ref()?;
        state
            .terminated
            .as_ref()
            .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
            .map(|t| t.exit_code)
    })
}

/// Restarts of the server container so far.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// Is the server down although its pod is not finished? `Some(exit code)` when its container has
/// terminated, or waits in CrashLoopBackOff (`restartPolicy: OnFailure` restarts it, but nothing
/// answers meanwhile); `None` while it runs or has not started yet.
pub fn server_down(pod: &Pod) -> Option<Option<i32>> {
    let cs = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let state = cs.state.as_ref()?;
    if let Some(t) = &state.terminated {
        return Some(Some(t.exit_code));
    }
    let crash_looping = state
        .waiting
        .as_ref()
        .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
    crash_looping.then(|| exit_code(pod))
}

/// Is this pod finished (it will not run again)?
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// The progress a pod event stands for (percent), and whether to show it at all. At most 60: the
/// hub reports 70 once `start` returns and takes it from there.
pub fn event_progress(reason: &str) -> Option<u8> {
    Some(match reason {
        "TriggeredScaleUp" | "NotTriggerScaleUp" | "FailedScheduling" => 15,
        "Scheduled" => 20,
        "SuccessfulAttachVolume" | "FailedAttachVolume" | "FailedMount" => 25,
        "Pulling" => 30,
        "Pulled" => 45,
        "Created" => 50,
        "Started" => 55,
        "Failed" | "BackOff" | "ErrImagePull" | "Killing" | "Unhealthy" => 30,
        _ => return None,
    })
}

/// One progress line for an event: `[Warning] FailedScheduling: 0/3 nodes are available…`.
pub fn event_message(event: &Event) -> String {
    let kind = event.type_.as_deref().unwrap_or("Normal");
    let reason = event.reason.as_deref().unwrap_or("");
    let message = event.message.as_deref().unwrap_or("").trim();
    if kind == "Normal" {
        format!("{reason}: {message}")
    } else {
        format!("[{kind}] {reason}: {message}")
    }
}

/// Does this event belong to the pod `name` with `uid` (when the uid is known)?
pub fn event_is_for(event: &Event, name: &str, uid: Option<&str>) -> bool {
    let obj = &event.involved_object;
    obj.name.as_deref() == Some(name)
        && obj.kind.as_deref().is_none_or(|k| k == "Pod")
        && match (uid, obj.uid.as_deref()) {
            (Some(want), Some(got)) => want == got,
            _ => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": status}))
            .unwrap()
    }

    fn waiting(reason: &str) -> serde_json::Value {
        json!({"phase": "Pending", "containerStatuses": [{
            "name": "notebook", "image": "img:1", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": reason, "message": "it went wrong"}},
            "lastState": {"terminated": {"exitCode": 2}},
        }]})
    }

    #[test]
    fn start_states() {
        assert_eq!(
            start_state(&pod(json!({"phase": "Running", "podIP": "10.0.0.5"})), false),
            StartState::Running {
                ip: "10.0.0.5".into(),
                ready: true
            }
        );
        assert!(matches!(
            start_state(&pod(json!({"phase": "Pending"})), false),
            StartState::Waiting(_)
        ));
        assert!(matches!(
            start_state(&pod(json!({"phase": "Running"})), false),
            StartState::Waiting(_)
        ));
        for (reason, want) in [
            ("ErrImagePull", "could not be pulled"),
            ("ImagePullBackOff", "could not be pulled"),
            ("InvalidImageName", "could not be pulled"),
            ("CrashLoopBackOff", "last exit status 2"),
            ("CreateContainerConfigError", "could not be created"),
        ] {
            match start_state(&pod(waiting(reason)), false) {
                StartState::Failed(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(want) && text.contains("it went wrong"),
                        "{reason}: {text}"
                    );
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
        assert!(matches!(
            start_state(&pod(waiting("ContainerCreating")), false),
            StartState::Waiting(_)
        ));
        let unschedulable = json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        }]});
        match start_state(&pod(unschedulable.clone()), false) {
            StartState::Failed(e) => assert!(e.to_string().contains("Insufficient nvidia.com/gpu")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(start_state(&pod(unschedulable), true), StartState::Waiting(_)));
        let exited = json!({"phase": "Failed", "containerStatuses": [{
            "name": "notebook", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }]});
        match start_state(&pod(exited), false) {
            StartState::Failed(KubeSpawnError::Exited { code, .. }) => assert_eq!(code, Some(1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_server_is_down_when_its_container_is() {
        assert_eq!(
            server_down(&pod(json!({"phase": "Running", "podIP": "10.0.0.5"}))),
            None
        );
        assert_eq!(server_down(&pod(waiting("CrashLoopBackOff"))), Some(Some(2)));
        assert_eq!(server_down(&pod(waiting("ContainerCreating"))), None);
        let ended = json!({"phase": "Running", "containerStatuses": [{
            "name": "notebook", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
            "state": {"terminated": {"exitCode": 137}},
        }]});
        assert_eq!(server_down(&pod(ended.clone())), Some(Some(137)));
        assert_eq!(restarts(&pod(ended)), 1);
    }

    #[test]
    fn events_become_progress() {
        let mut last = 0;
        for reason in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
            let p = event_progress(reason).unwrap();
            assert!(p > last, "{reason} should move progress forward");
            last = p;
        }
        assert!(last <= 60, "the hub takes over at 70");
        assert_eq!(event_progress("SandboxChanged"), None);
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "uid": "u1"},
            "type": "Warning", "reason": "FailedScheduling", "message": "0/1 nodes are available ",
        }))
        .unwrap();
        assert_eq!(
            event_message(&ev),
            "[Warning] FailedScheduling: 0/1 nodes are available"
        );
        assert!(event_is_for(&ev, "p", Some("u1")));
        assert!(event_is_for(&ev, "p", None));
        assert!(!event_is_for(&ev, "p", Some("u2")));
        assert!(!event_is_for(&ev, "q", None));
    }
}
