//! The simulated scheduler through the API: where pods land, and what an unschedulable pod
//! shows (condition and FailedScheduling event).

mod sim_support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use sim_support::{event_reasons, node_of, pod, sleeper, wait_for};
use spawner_k8s::sim::{NodeSpec, SimConfig, Simulator, Taint, TaintEffect};

const WAIT: Duration = Duration::from_secs(10);

async fn start(nodes: Vec<NodeSpec>) -> Simulator {
    Simulator::start(SimConfig {
        nodes,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

async fn bound_node(pods: &Api<Pod>, name: &str) -> String {
    wait_for(&format!("pod {name} to be scheduled"), WAIT, || async {
        pods.get(name).await.ok().as_ref().and_then(node_of)
    })
    .await
}

/// The message of the pod's FailedScheduling event, once there is one.
async fn failed_scheduling(events: &Api<Event>, name: &str) -> String {
    wait_for(&format!("a FailedScheduling event for {name}"), WAIT, || async {
        let lp = ListParams::default().fields(&format!("involvedObject.name={name},reason=FailedScheduling"));
        events
            .list(&lp)
            .await
            .ok()?
            .items
            .into_iter()
            .last()
            .and_then(|e| e.message)
    })
    .await
}

#[tokio::test]
async fn pods_spread_evenly_over_equal_nodes() {
    let sim = start(SimConfig::default().nodes).await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    for i in 0..8 {
        pods.create(
            &PostParams::default(),
            &sleeper(&format!("p{i}"), json!({"cpu": "1", "memory": "4Gi"})),
        )
        .await
        .unwrap();
    }
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..8 {
        *per_node.entry(bound_node(&pods, &format!("p{i}")).await).or_default() += 1;
    }
    assert_eq!(
        per_node.into_iter().collect::<Vec<_>>(),
        vec![("node-1".to_string(), 4), ("node-2".to_string(), 4)]
    );
    let events: Api<Event> = Api::default_namespaced(sim.client().await);
    let scheduled = events
        .list(&ListParams::default().fields("involvedObject.name=p0,reason=Scheduled"))
        .await
        .unwrap();
    let message = scheduled.items[0].message.clone().unwrap();
    assert!(
        message.starts_with("Successfully assigned default/p0 to node-"),
        "{message}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unschedulable_pod_waits_and_is_placed_when_room_appears() {
    let sim = start(vec![
        NodeSpec::new("small-1", 2000, 8 << 30),
        NodeSpec::new("small-2", 2000, 8 << 30),
    ])
    .await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());

    pods.create(&PostParams::default(), &sleeper("huge", json!({"cpu": "3"})))
        .await
        .unwrap();
    assert_eq!(
        failed_scheduling(&events, "huge").await,
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    let huge = pods.get("huge").await.unwrap();
    let condition = huge
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    pods.delete("huge", &DeleteParams::default()).await.unwrap();

    // Fill both nodes; the next pod must wait until one of them is deleted.
    let a = sleeper("fill-a", json!({"cpu": "2"}));
    let b = sleeper("fill-b", json!({"cpu": "2"}));
    pods.create(&PostParams::default(), &a).await.unwrap();
    pods.create(&PostParams::default(), &b).await.unwrap();
    let node_a = bound_node(&pods, "fill-a").await;
    assert_ne!(node_a, bound_node(&pods, "fill-b").await);
    pods.create(&PostParams::default(), &sleeper("waiter", json!({"cpu": "1500m"})))
        .await
        .unwrap();
    assert_eq!(
        failed_scheduling(&events, "waiter").await,
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    pods.delete(
        "fill-a",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(bound_node(&pods, "waiter").await, node_a);
    sim.shutdown().await;
}

#[tokio::test]
async fn gpu_pods_land_only_on_the_gpu_node() {
    let sim = start(vec![
        NodeSpec::new("cpu-node", 16_000, 64 << 30),
        NodeSpec::new("gpu-node", 16_000, 64 << 30).with_gpus(1),
    ])
    .await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let gpu = |name: &str| {
        let mut p = sleeper(name, json!({"cpu": "1"}));
        p.spec.as_mut().unwrap().containers[0].resources =
            Some(serde_json::from_value(json!({"limits": {"nvidia.com/gpu": "1"}})).unwrap());
        p
    };
    pods.create(&PostParams::default(), &gpu("gpu-1")).await.unwrap();
    assert_eq!(bound_node(&pods, "gpu-1").await, "gpu-node");
    pods.create(&PostParams::default(), &gpu("gpu-2")).await.unwrap();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    assert_eq!(
        failed_scheduling(&events, "gpu-2").await,
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn taints_repel_pods_without_a_toleration() {
    let taint = Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: TaintEffect::NoSchedule,
    };
    let sim = start(vec![
        NodeSpec::new("tainted", 16_000, 64 << 30)
            .with_taint(taint)
            .with_label("pool", "gpu"),
    ])
    .await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &sleeper("plain", json!({})))
        .await
        .unwrap();
    assert_eq!(
        failed_scheduling(&events, "plain").await,
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
    );

    let tolerant = pod(
        "tolerant",
        &["sleep", "300"],
        json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "gpu"},
        }),
    );
    pods.create(&PostParams::default(), &tolerant).await.unwrap();
    assert_eq!(bound_node(&pods, "tolerant").await, "tainted");

    let elsewhere = pod(
        "elsewhere",
        &["sleep", "300"],
        json!({"tolerations": [{"operator": "Exists"}], "nodeSelector": {"pool": "cpu"}}),
    );
    pods.create(&PostParams::default(), &elsewhere).await.unwrap();
    assert_eq!(
        failed_scheduling(&events, "elsewhere").await,
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pod_waits_for_its_claim_and_claims_bind_at_once() {
    let sim = start(SimConfig::default().nodes).await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let with_claim = pod(
        "needs-claim",
        &["sleep", "300"],
        json!({"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}]}),
    );
    pods.create(&PostParams::default(), &with_claim).await.unwrap();
    assert_eq!(
        failed_scheduling(&events, "needs-claim").await,
        "0/2 nodes are available: persistentvolumeclaim \"claim-alice\" not found."
    );
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "claim-alice"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }))
    .unwrap();
    let created = claims.create(&PostParams::default(), &claim).await.unwrap();
    assert_eq!(created.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    bound_node(&pods, "needs-claim").await;
    let reasons = event_reasons(&events, "needs-claim").await;
    assert_eq!(reasons.first().map(String::as_str), Some("FailedScheduling"));
    assert!(reasons.iter().any(|r| r == "Scheduled"), "{reasons:?}");
    sim.shutdown().await;
}
