//! The simulated kubelet: pods as local processes on their own loopback IPs, readiness, image
//! pull failures, crash loops, graceful deletion, the downward API, and owner-reference GC.

mod sim_support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sim_support::{container_state, event_reasons, is_ready, pod, wait_for};
use spawner_k8s::sim::{SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(15);

async fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).await.expect("simulator starts")
}

async fn get_when(pods: &Api<Pod>, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    wait_for(&format!("pod {name}: {what}"), WAIT, || async {
        pods.get(name).await.ok().filter(&check)
    })
    .await
}

fn pid_of(pod: &Pod) -> i32 {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].container_id.clone());
    id.and_then(|id| id.strip_prefix("sim://").and_then(|p| p.parse().ok()))
        .expect("a running container has a sim:// id")
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn a_python_http_server_pod_becomes_ready_and_answers_on_its_pod_ip() {
    let sim = sim().await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut server = pod(
        "web",
        &["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8888"],
        json!({}),
    );
    let container = &mut server.spec.as_mut().unwrap().containers[0];
    container.env = Some(
        serde_json::from_value(json!([{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]))
            .unwrap(),
    );
    container.ports = Some(serde_json::from_value(json!([{"name": "notebook-port", "containerPort": 8888}])).unwrap());
    pods.create(&PostParams::default(), &server).await.unwrap();

    let ready = get_when(&pods, "web", "Ready", is_ready).await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");

    let mut stream = tokio::net::TcpStream::connect((ip.as_str(), 8888))
        .await
        .expect("the pod listens on its IP");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");

    let events: Api<Event> = Api::default_namespaced(client.clone());
    let reasons = event_reasons(&events, "web").await;
    assert_eq!(reasons, ["Scheduled", "Pulling", "Pulled", "Created", "Started"]);

    // A second pod with the same image on the same node finds it cached.
    let mut again = pod(
        "again",
        &["sleep", "300"],
        json!({"nodeName": ready.spec.as_ref().unwrap().node_name}),
    );
    again.spec.as_mut().unwrap().containers[0].image = Some("busybox:1.36".into());
    pods.create(&PostParams::default(), &again).await.unwrap();
    get_when(&pods, "again", "running", |p| {
        container_state(p).as_deref() == Some("running")
    })
    .await;
    let reasons = event_reasons(&events, "again").await;
    assert_eq!(reasons, ["Pulled", "Created", "Started"]);
    let pulled = events
        .list(&kube::api::ListParams::default().fields("involvedObject.name=again,reason=Pulled"))
        .await
        .unwrap();
    assert!(
        pulled.items[0]
            .message
            .as_deref()
            .unwrap()
            .contains("already present on machine")
    );

    let pid = pid_of(&ready);
    sim.shutdown().await;
    assert!(!process_alive(pid), "shutdown kills pod processes");
}

#[tokio::test]
async fn a_missing_image_is_err_image_pull_then_back_off() {
    let sim = sim().await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut p = pod("noimage", &["sleep", "300"], json!({}));
    p.spec.as_mut().unwrap().containers[0].image = Some("registry.example/does-not-exist:1".into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    get_when(&pods, "noimage", "ErrImagePull", |p| {
        container_state(p).as_deref() == Some("ErrImagePull")
    })
    .await;
    let backing_off = get_when(&pods, "noimage", "ImagePullBackOff", |p| {
        container_state(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(backing_off.status.unwrap().phase.as_deref(), Some("Pending"));
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let failed = events
        .list(&kube::api::ListParams::default().fields("involvedObject.name=noimage,type=Warning,reason=Failed"))
        .await
        .unwrap();
    let messages: Vec<_> = failed.items.iter().filter_map(|e| e.message.clone()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Failed to pull image \"registry.example/does-not-exist:1\"")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m == "Error: ErrImagePull"), "{messages:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn exits_follow_the_restart_policy() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    pods.create(
        &PostParams::default(),
        &pod("crasher", &["sh", "-c", "echo crashing; exit 3"], json!({})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("fails", &["sh", "-c", "exit 3"], json!({"restartPolicy": "Never"})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("done", &["true"], json!({"restartPolicy": "OnFailure"})),
    )
    .await
    .unwrap();

    let crashing = get_when(&pods, "crasher", "CrashLoopBackOff after a restart", |p| {
        let restarts = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c[0].restart_count);
        container_state(p).as_deref() == Some("CrashLoopBackOff") && restarts >= 2
    })
    .await;
    let last = crashing.status.unwrap().container_statuses.unwrap()[0]
        .last_state
        .clone()
        .unwrap();
    assert_eq!(last.terminated.unwrap().exit_code, 3);
    let events: Api<Event> = Api::default_namespaced(sim.client().await);
    assert!(event_reasons(&events, "crasher").await.contains(&"BackOff".to_string()));
    let log = pods.logs("crasher", &LogParams::default()).await.unwrap();
    assert!(log.starts_with("crashing\ncrashing\n"), "{log:?}");

    let failed = get_when(&pods, "fails", "Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let terminated = failed.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (3, Some("Error")));
    get_when(&pods, "done", "Succeeded", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_terminates_gracefully_then_kills_after_the_grace_period() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    pods.create(&PostParams::default(), &pod("polite", &["sleep", "300"], json!({})))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &pod(
            "stubborn",
            &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
            json!({}),
        ),
    )
    .await
    .unwrap();
    let polite = get_when(&pods, "polite", "running", |p| {
        container_state(p).as_deref() == Some("running")
    })
    .await;
    let stubborn = get_when(&pods, "stubborn", "running", |p| {
        container_state(p).as_deref() == Some("running")
    })
    .await;
    let (polite_pid, stubborn_pid) = (pid_of(&polite), pid_of(&stubborn));
    // Give the shell time to install its trap.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let marked = pods
        .delete(
            "stubborn",
            &DeleteParams {
                grace_period_seconds: Some(2),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    let marked = marked.left().expect("a graceful delete returns the pod, marked");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(2));

    let started = std::time::Instant::now();
    pods.delete(
        "polite",
        &DeleteParams {
            grace_period_seconds: Some(30),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    wait_for("polite to be removed", WAIT, || async {
        pods.get_opt("polite").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2), "SIGTERM ends sleep at once");
    assert!(!process_alive(polite_pid));

    assert!(
        process_alive(stubborn_pid),
        "a process ignoring SIGTERM lives until the grace period ends"
    );
    wait_for("stubborn to be removed", WAIT, || async {
        pods.get_opt("stubborn").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "removed only after the grace period"
    );
    assert!(!process_alive(stubborn_pid), "SIGKILL after the grace period");
    sim.shutdown().await;
}

#[tokio::test]
async fn downward_api_files_follow_annotation_patches() {
    let sim = sim().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    // The process copies what it sees at the mount path into its working directory.
    let script =
        "while true; do cp \"$PODINFO/annotations\" seen.tmp 2>/dev/null && mv seen.tmp seen; sleep 0.05; done";
    let mut p = pod(
        "info",
        &["sh", "-c", script],
        json!({"volumes": [{"name": "podinfo", "downwardAPI": {"items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}]}),
    );
    p.metadata.annotations = Some([("hub.jupyter.org/username".to_string(), "alice".to_string())].into());
    let container = &mut p.spec.as_mut().unwrap().containers[0];
    container.volume_mounts =
        Some(serde_json::from_value(json!([{"name": "podinfo", "mountPath": "/etc/podinfo"}])).unwrap());
    container.env = Some(serde_json::from_value(json!([{"name": "PODINFO", "value": "/etc/podinfo"}])).unwrap());
    pods.create(&PostParams::default(), &p).await.unwrap();

    let seen = sim.root_dir().join("pods/default/info/seen");
    let read = || async { std::fs::read_to_string(&seen).ok() };
    let first = wait_for("the process to read the annotations", WAIT, || async {
        read().await.filter(|s| s.contains("alice"))
    })
    .await;
    assert_eq!(first, "hub.jupyter.org/username=\"alice\"");

    let patch = json!({"metadata": {"annotations": {"edgehub/last-activity": "2026-01-01T00:00:00Z"}}});
    pods.patch("info", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let updated = wait_for("the refreshed annotations file", Duration::from_secs(5), || async {
        read().await.filter(|s| s.contains("last-activity"))
    })
    .await;
    assert_eq!(
        updated,
        "edgehub/last-activity=\"2026-01-01T00:00:00Z\"\nhub.jupyter.org/username=\"alice\""
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_pod_collects_the_service_it_owns() {
    let sim = sim().await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let owner = pods
        .create(&PostParams::default(), &pod("owner", &["sleep", "300"], json!({})))
        .await
        .unwrap();
    let service = |name: &str, owned: bool| -> Service {
        let mut s = json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 8888}], "selector": {"app": "x"}}});
        if owned {
            s["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner.metadata.uid}]);
        }
        serde_json::from_value(s).unwrap()
    };
    let owned = services
        .create(&PostParams::default(), &service("owner", true))
        .await
        .unwrap();
    assert!(
        owned
            .spec
            .unwrap()
            .cluster_ip
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    services
        .create(&PostParams::default(), &service("bystander", false))
        .await
        .unwrap();
    get_when(&pods, "owner", "running", |p| {
        container_state(p).as_deref() == Some("running")
    })
    .await;

    pods.delete(
        "owner",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    wait_for("the owned service to be collected", WAIT, || async {
        services.get_opt("owner").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert!(pods.get_opt("owner").await.unwrap().is_none());
    assert!(services.get_opt("bystander").await.unwrap().is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn orphan_propagation_keeps_dependents_and_deletecollection_deletes_by_selector() {
    let sim = sim().await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let owner = pods
        .create(&PostParams::default(), &pod("keeper", &["sleep", "300"], json!({})))
        .await
        .unwrap();
    let dependent: Service = serde_json::from_value(json!({
        "metadata": {"name": "keeper", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "keeper", "uid": owner.metadata.uid}]},
        "spec": {"ports": [{"port": 80}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &dependent).await.unwrap();
    get_when(&pods, "keeper", "running", |p| {
        container_state(p).as_deref() == Some("running")
    })
    .await;
    let orphan = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::orphan()
    };
    pods.delete("keeper", &orphan).await.unwrap();
    wait_for("keeper to be removed", WAIT, || async {
        pods.get_opt("keeper").await.ok().flatten().is_none().then_some(())
    })
    .await;
    assert!(
        services.get_opt("keeper").await.unwrap().is_some(),
        "an orphaned dependent stays"
    );

    for (name, group) in [("g1", "batch"), ("g2", "batch"), ("g3", "other")] {
        let mut p = pod(name, &["sleep", "300"], json!({}));
        p.metadata.labels = Some([("group".to_string(), group.to_string())].into());
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete_collection(&now, &kube::api::ListParams::default().labels("group=batch"))
        .await
        .unwrap();
    let left: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(left, vec!["g3".to_string()]);
    sim.shutdown().await;
}
