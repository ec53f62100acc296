//! The simulated API server through a real kube::Client: CRUD, conflicts, selectors, the status
//! subresource, pagination and injected errors.

mod sim_support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sim_support::pod;
use spawner_k8s::sim::{Fault, SimConfig, Simulator, Verb};

fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

/// A simulator whose pods stay Pending: no nodes, so nothing is scheduled or run.
async fn api_only() -> Simulator {
    Simulator::start(SimConfig {
        nodes: vec![],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

#[tokio::test]
async fn create_get_list_delete_pods_through_the_kubeconfig() {
    let sim = api_only().await;
    assert!(sim.kubeconfig_path().exists());
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);

    let created = pods
        .create(&PostParams::default(), &pod("alpha", &["true"], json!({})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert!(meta.resource_version.is_some());
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    let got = pods.get("alpha").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let mut generated = pod("ignored", &["true"], json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("jupyter-".into());
    let generated = pods.create(&PostParams::default(), &generated).await.unwrap();
    let generated_name = generated.metadata.name.unwrap();
    assert!(
        generated_name.starts_with("jupyter-") && generated_name.len() == "jupyter-".len() + 5,
        "{generated_name}"
    );

    let list = pods.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = list.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec!["alpha".to_string(), generated_name.clone()]);
    assert!(list.metadata.resource_version.is_some());

    pods.delete("alpha", &DeleteParams::default()).await.unwrap();
    let err = api_error(pods.get("alpha").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    let err = api_error(pods.delete("alpha", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(err.code, 404);

    let stats = sim.stats();
    assert_eq!(stats.count(Verb::Create, "pods"), 2);
    assert_eq!(stats.count(Verb::Delete, "pods"), 2);
    assert_eq!(stats.count(Verb::List, "pods"), 1);
    assert_eq!(stats.count(Verb::Get, "pods"), 2);
    assert_eq!(stats.writes(), 4);
    assert_eq!(stats.reads(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_create_and_stale_update_are_409() {
    let sim = api_only().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    let first = pods
        .create(&PostParams::default(), &pod("dup", &["true"], json!({})))
        .await
        .unwrap();
    let err = api_error(
        pods.create(&PostParams::default(), &pod("dup", &["true"], json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.details.as_ref().map(|d| d.name.as_str()), Some("dup"));

    // Someone else changes the pod; our copy is now stale.
    pods.patch(
        "dup",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    let mut stale = first.clone();
    stale.metadata.labels = Some(BTreeMap::from([("y".to_string(), "2".to_string())]));
    let err = api_error(pods.replace("dup", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    // With the current resourceVersion the same update goes through.
    let mut fresh = pods.get("dup").await.unwrap();
    fresh.metadata.labels = Some(BTreeMap::from([("y".to_string(), "2".to_string())]));
    let replaced = pods.replace("dup", &PostParams::default(), &fresh).await.unwrap();
    assert_eq!(
        replaced.metadata.labels.unwrap().get("y").map(String::as_str),
        Some("2")
    );
    assert_eq!(replaced.metadata.uid, first.metadata.uid);

    // A merge patch carrying a stale resourceVersion is a conflict too.
    let stale_rv = first.metadata.resource_version.clone().unwrap();
    let patch = Patch::Merge(json!({"metadata": {"resourceVersion": stale_rv, "labels": {"z": "3"}}}));
    let err = api_error(pods.patch("dup", &PatchParams::default(), &patch).await.unwrap_err());
    assert_eq!(err.code, 409);
    sim.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let sim = api_only().await;
    let client = sim.client().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web"})),
        ("c", json!({"app": "db"})),
    ] {
        let mut p = pod(name, &["true"], json!({}));
        p.metadata.labels = serde_json::from_value(labels).unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let other_ns: Api<Pod> = Api::namespaced(client.clone(), "other");
    other_ns
        .create(&PostParams::default(), &pod("a", &["true"], json!({})))
        .await
        .unwrap();

    let names = |list: kube::core::ObjectList<Pod>| {
        list.items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect::<Vec<_>>()
    };
    let cases = [
        ("app=web", vec!["a", "b"]),
        ("app!=web", vec!["c"]),
        ("app in (db,cache)", vec!["c"]),
        ("app notin (db)", vec!["a", "b"]),
        ("tier", vec!["a"]),
        ("!tier", vec!["b", "c"]),
        ("app==web,!tier", vec!["b"]),
    ];
    for (selector, expected) in cases {
        let got = names(pods.list(&ListParams::default().labels(selector)).await.unwrap());
        assert_eq!(got, expected, "labelSelector {selector:?}");
    }
    let got = names(
        pods.list(&ListParams::default().fields("metadata.name=b"))
            .await
            .unwrap(),
    );
    assert_eq!(got, vec!["b"]);
    let got = names(
        pods.list(&ListParams::default().fields("spec.nodeName=,status.phase=Pending,metadata.name!=a"))
            .await
            .unwrap(),
    );
    assert_eq!(got, vec!["b", "c"]);

    let all: Api<Pod> = Api::all(client.clone());
    let got = all
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    let namespaces: Vec<_> = got.items.iter().filter_map(|p| p.metadata.namespace.clone()).collect();
    assert_eq!(namespaces, vec!["default", "other"]);

    let err = api_error(
        pods.list(&ListParams::default().fields("status.hostIP=1.2.3.4"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert!(err.message.contains("field label not supported"), "{}", err.message);
    let err = api_error(
        pods.list(&ListParams::default().labels("app in (web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let sim = api_only().await;
    let maps: Api<ConfigMap> = Api::default_namespaced(sim.client().await);
    for i in 0..7 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}))
                .unwrap();
        maps.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = maps.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_status_subresource_and_the_main_resource_do_not_write_each_other() {
    let sim = api_only().await;
    let pods: Api<Pod> = Api::default_namespaced(sim.client().await);
    pods.create(&PostParams::default(), &pod("s", &["true"], json!({})))
        .await
        .unwrap();

    // A main-resource patch that touches status: labels change, status does not.
    let patch = json!({"metadata": {"labels": {"a": "1"}}, "status": {"phase": "Running"}});
    let after = pods
        .patch("s", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    assert_eq!(after.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    assert_eq!(after.metadata.labels.unwrap()["a"], "1");

    // A status patch that touches labels: status changes, labels do not.
    let patch = json!({"metadata": {"labels": {"a": "2"}}, "status": {"phase": "Running", "podIP": "10.0.0.9"}});
    let after = pods
        .patch_status("s", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let status = after.status.unwrap();
    assert_eq!(
        (status.phase.as_deref(), status.pod_ip.as_deref()),
        (Some("Running"), Some("10.0.0.9"))
    );
    assert_eq!(after.metadata.labels.unwrap()["a"], "1");

    // Strategic merge patches merge maps like merge patches.
    let patch = json!({"metadata": {"annotations": {"k": "v"}}});
    let after = pods
        .patch("s", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    assert_eq!(after.metadata.annotations.unwrap()["k"], "v");

    // Server-side apply creates what is missing.
    let applied: Pod = pods
        .patch(
            "applied",
            &PatchParams::apply("test").force(),
            &Patch::Apply(pod("applied", &["true"], json!({}))),
        )
        .await
        .unwrap();
    assert!(applied.metadata.uid.is_some());
    assert_eq!(sim.stats().count(Verb::Patch, "pods/status"), 1);
    assert_eq!(sim.stats().count(Verb::Patch, "pods"), 3);
    sim.shutdown().await;
}

/// A client that surfaces 429s instead of retrying them (kube's default client retries 429,
/// 503 and 504, honouring Retry-After, up to 15 times).
async fn client_without_retries(sim: &Simulator) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(sim.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn injected_429_carries_retry_after_and_then_clears() {
    let sim = api_only().await;
    let pods: Api<Pod> = Api::default_namespaced(client_without_retries(&sim).await);
    sim.inject(Fault::status(Verb::Create, "pods", 429, 2).with_retry_after(3));
    for _ in 0..2 {
        let err = api_error(
            pods.create(&PostParams::default(), &pod("busy", &["true"], json!({})))
                .await
                .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (429, "TooManyRequests"));
        assert_eq!(err.details.map(|d| d.retry_after_seconds), Some(3));
    }
    pods.create(&PostParams::default(), &pod("busy", &["true"], json!({})))
        .await
        .expect("the fault is used up");
    assert_eq!(sim.stats().count(Verb::Create, "pods"), 3);

    // The Retry-After header is there for clients that read it …
    sim.inject(Fault::Status {
        verb: Some(Verb::Get),
        resource: None,
        code: 429,
        times: 1,
        retry_after: Some(7),
    });
    let url = format!("{}/api/v1/namespaces/default/pods/busy", sim.url());
    let (status, retry_after) = raw_get(&url).await;
    assert_eq!(status, 429);
    assert_eq!(retry_after.as_deref(), Some("7"));

    // … and kube's default client honours it: one 429, a retry a second later, success.
    let retrying: Api<Pod> = Api::default_namespaced(sim.client().await);
    sim.inject(Fault::Status {
        verb: Some(Verb::Get),
        resource: None,
        code: 429,
        times: 1,
        retry_after: Some(1),
    });
    let started = std::time::Instant::now();
    retrying.get("busy").await.expect("retried after Retry-After");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "waited for Retry-After"
    );
    assert_eq!(sim.stats().count(Verb::Get, "pods"), 3);

    sim.inject(Fault::Status {
        verb: None,
        resource: Some("pods".into()),
        code: 500,
        times: 1,
        retry_after: None,
    });
    let err = api_error(pods.get("busy").await.unwrap_err());
    assert_eq!(err.code, 500);
    pods.get("busy").await.expect("served again");
    sim.shutdown().await;
}

/// A GET over a plain TCP connection: the status code and the Retry-After header.
async fn raw_get(url: &str) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let retry_after = response.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_string())
    });
    (status, retry_after)
}

#[tokio::test]
async fn nodes_discovery_and_bad_input() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let client = sim.client().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    let capacity = list.items[0].status.as_ref().and_then(|s| s.capacity.clone()).unwrap();
    assert_eq!(capacity["cpu"].0, "16000m");
    assert_eq!(capacity["memory"].0, (64u64 << 30).to_string());

    // Invalid names and label values are 422s with the API server's wording.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let err = api_error(
        pods.create(&PostParams::default(), &pod("Bad_Name", &["true"], json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let mut long_label = pod("ok", &["true"], json!({}));
    long_label.metadata.labels = Some(BTreeMap::from([("user".to_string(), "x".repeat(64))]));
    let err = api_error(pods.create(&PostParams::default(), &long_label).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("63 characters"), "{}", err.message);

    // A body that is not JSON is a 400 Status, not a hang or a crash.
    let request = http::Request::post("/api/v1/namespaces/default/pods")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .unwrap();
    let err = api_error(client.request::<Pod>(request).await.unwrap_err());
    assert_eq!(err.code, 400);
    sim.shutdown().await;
}
