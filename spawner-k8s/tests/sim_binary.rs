//! The `k8s-sim` binary: prints its URL, writes the kubeconfig, serves `/sim/stats`, and on
//! SIGTERM kills the pod processes it started.

mod sim_support;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use sim_support::{container_state, pod, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn k8s_sim_serves_a_cluster_until_sigterm_and_then_kills_its_pods() {
    let dir = std::env::temp_dir().join(format!("k8s-sim-binary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_k8s-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            "3",
            "--node-cpu",
            "4",
            "--node-memory",
            "8Gi",
            "--image-pull-ms",
            "0",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("k8s-sim starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("k8s-sim prints its URL within 10 s")
        .unwrap()
        .expect("a URL line");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let config = kube::config::Kubeconfig::read_from(&kubeconfig).expect("the kubeconfig was written");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
    pods.create(&PostParams::default(), &pod("bench", &["sleep", "300"], json!({})))
        .await
        .unwrap();
    let running = wait_for("the pod to run", Duration::from_secs(10), || async {
        pods.get("bench")
            .await
            .ok()
            .filter(|p| container_state(p).as_deref() == Some("running"))
    })
    .await;
    let pid: i32 = running.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("sim://"))
        .and_then(|p| p.parse().ok())
        .unwrap();

    let authority = url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("GET /sim/stats HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let stats: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(stats["requests"]["create pods"], 1);
    assert!(stats["writes"].as_u64() >= Some(1));

    let sim_pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(sim_pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("k8s-sim exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // SAFETY: signal 0 only checks that the process exists.
    assert!(unsafe { libc::kill(pid, 0) } != 0, "the pod process is gone");
    let _ = std::fs::remove_dir_all(&dir);
}
