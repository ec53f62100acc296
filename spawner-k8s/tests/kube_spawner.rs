//! The Kubernetes spawner against the API-server simulator, through kube-rs exactly as against a
//! cluster: pods run as local processes on their own 127.x address.
//!
//! Each test starts its own simulator and spawner. Servers are `python3` one-liners bound to
//! `$(POD_IP)` (expanded by the simulated kubelet as Kubernetes does).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config::kubernetes::KubernetesConfig;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::Api;
use serde_json::{Value, json};
use spawner_k8s::sim::{Fault, SimConfig, Simulator, Verb};
use spawner_k8s::{KubeSpawnError, KubeSpawner, PodPoll, PodRequest, ProgressFn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that answers every GET with its pid and environment, as JSON.
const ENV_SERVER: &str = "import http.server, json, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    \
def do_GET(self):\n        \
b = json.dumps({'pid': os.getpid(), 'env': dict(os.environ)}).encode()\n        \
self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n    \
def log_message(self, *a): pass\n\
http.server.HTTPServer((os.environ['POD_IP'], 8888), H).serve_forever()\n";

/// The same, ignoring SIGTERM: only the end of the grace period (SIGKILL) stops it.
fn stubborn_server() -> String {
    format!("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n{ENV_SERVER}")
}

fn launcher() -> String {
    format!("{}/launcher/edgehub-launcher", env!("CARGO_MANIFEST_DIR"))
}

/// The test configuration: `extra` is TOML laid under `[kubernetes]`.
fn config(sim: &Simulator, extra: &str) -> KubernetesConfig {
    let text = format!(
        r#"
kubeconfig = {kubeconfig:?}
start_timeout_secs = 30
stop_grace_secs = 2
launcher_command = [{launcher:?}]
{extra}
"#,
        kubeconfig = sim.kubeconfig_path().display().to_string(),
        launcher = launcher(),
    );
    let mut config: KubernetesConfig = toml::from_str(&text).unwrap();
    if config.pod.command.is_none() {
        config.pod.command = Some(vec!["python3".into(), "-c".into(), ENV_SERVER.into()]);
    }
    if config.pod.image.is_none() {
        config.pod.image = Some("python:3".into());
    }
    for p in &mut config.profiles {
        if p.pod.command.is_none() {
            p.pod.command = config.pod.command.clone();
        }
    }
    config.validate().unwrap();
    config
}

fn request(user: &str, server: &str, profile: Option<&str>) -> PodRequest {
    let prefix = if server.is_empty() {
        format!("/user/{user}/")
    } else {
        format!("/user/{user}/{server}/")
    };
    let env: BTreeMap<String, String> = [
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", server.to_owned()),
        ("JUPYTERHUB_API_TOKEN", format!("token-of-{user}")),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    PodRequest {
        user: user.into(),
        server_name: server.into(),
        prefix,
        env,
        profile: profile.map(str::to_owned),
    }
}

/// Progress reports seen: (percent, message).
type Seen = Arc<Mutex<Vec<(u8, String)>>>;

/// Progress messages, collected.
fn recorder() -> (ProgressFn, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Arc::new(move |p, m| sink.lock().unwrap().push((p, m))), seen)
}

fn quiet() -> ProgressFn {
    Arc::new(|_, _| {})
}

/// Starts `req`, or fails the test with the pod's log (the simulator keeps it under its root).
async fn start_ok(sim: &Simulator, spawner: &KubeSpawner, req: PodRequest) -> spawner_k8s::PodStarted {
    let user = req.user.clone();
    match spawner.start(req, quiet()).await {
        Ok(started) => started,
        Err(e) => {
            let pods = sim.root_dir().join("pods/default");
            let logs: Vec<String> = std::fs::read_dir(&pods)
                .into_iter()
                .flatten()
                .flatten()
                .map(|d| {
                    let log = std::fs::read_to_string(d.path().join("notebook.log")).unwrap_or_default();
                    format!("{}: {log}", d.file_name().to_string_lossy())
                })
                .collect();
            panic!("start for {user}: {e}\npod logs:\n{}", logs.join("\n"));
        }
    }
}

/// GETs `url` until it answers 200 or `within` passes; the body.
async fn get_json(url: &str, within: Duration) -> Option<Value> {
    let addr = url.strip_prefix("http://")?.trim_end_matches('/').to_owned();
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await {
            let _ = stream.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await;
            let mut text = String::new();
            if stream.read_to_string(&mut text).await.is_ok()
                && text.starts_with("HTTP/1.0 200")
                && let Some((_, body)) = text.split_once("\r\n\r\n")
            {
                return serde_json::from_str(body).ok();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn pod_name(state: &Value) -> String {
    state["pod"].as_str().unwrap().to_owned()
}

/// Requests since `before`, by verb.
fn delta(sim: &Simulator, before: &spawner_k8s::sim::Stats, verb: Verb, resource: &str) -> u64 {
    sim.stats().count(verb, resource) - before.count(verb, resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_answers_http_reports_progress_and_stops() {
    let sim = Simulator::start(SimConfig {
        image_pull: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .unwrap();
    // Resources, which the server also sees as JupyterHub's MEM_LIMIT, CPU_LIMIT…
    let resources = "[pod]\nmem_limit = \"1Gi\"\nmem_guarantee = \"512M\"\ncpu_limit = 0.5";
    let spawner = KubeSpawner::connect(&config(&sim, resources)).await.unwrap();
    let before = sim.stats();
    let (progress, seen) = recorder();
    let started = spawner.start(request("alice", "", None), progress).await.unwrap();
    let after = sim.stats();

    // Writes: the pod only (no claim, no Service configured). Reads: none but the watches.
    assert_eq!(after.writes() - before.writes(), 1, "{:?}", after.requests);
    for verb in [Verb::Get, Verb::List] {
        assert_eq!(
            after.verb(verb),
            before.verb(verb),
            "no {verb} during a spawn: {:?}",
            after.requests
        );
    }
    assert_eq!(started.state["namespace"], "default");
    assert_eq!(pod_name(&started.state), "jupyter-alice");
    assert!(started.url.starts_with("http://127."), "{}", started.url);

    let answer = get_json(&started.url, Duration::from_secs(10))
        .await
        .expect("the server answers");
    let env = &answer["env"];
    assert_eq!(env["JUPYTERHUB_USER"], "alice");
    assert_eq!(env["JUPYTERHUB_API_TOKEN"], "token-of-alice");
    let ip = started.url.trim_start_matches("http://").split(':').next().unwrap();
    assert_eq!(env["JUPYTERHUB_SERVICE_URL"], format!("http://{ip}:8888/user/alice/"));
    assert_eq!(
        (&env["MEM_LIMIT"], &env["MEM_GUARANTEE"], &env["CPU_LIMIT"]),
        (&json!("1073741824"), &json!("512000000"), &json!("0.5")),
        "{env}"
    );
    assert!(env.get("CPU_GUARANTEE").is_none(), "none configured: {env}");

    let messages: Vec<String> = seen.lock().unwrap().iter().map(|(_, m)| m.clone()).collect();
    let text = messages.join("\n");
    assert!(text.contains("Creating the pod jupyter-alice"), "{text}");
    assert!(text.contains("Scheduled"), "{text}");
    assert!(text.contains("Pulling"), "{text}");
    let percents: Vec<u8> = seen.lock().unwrap().iter().map(|(p, _)| *p).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {percents:?}"
    );

    assert_eq!(
        spawner.poll(&started.state).await,
        PodPoll::Running {
            url: started.url.clone()
        }
    );
    let began = Instant::now();
    spawner.stop(&started.state).await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "a server that exits on SIGTERM stops at once"
    );
    assert!(matches!(spawner.poll(&started.state).await, PodPoll::Gone { .. }));
    assert!(get_json(&started.url, Duration::from_millis(300)).await.is_none());
    assert_eq!(
        sim.stats().verb(Verb::Get),
        0,
        "nothing polled: {:?}",
        sim.stats().requests
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_honours_the_grace_period() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut cfg = config(&sim, "");
    cfg.pod.command = Some(vec!["python3".into(), "-c".into(), stubborn_server()]);
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    let started = start_ok(&sim, &spawner, request("bob", "", None)).await;
    get_json(&started.url, Duration::from_secs(10))
        .await
        .expect("the server answers");
    let began = Instant::now();
    spawner.stop(&started.state).await.unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(1800),
        "SIGKILL came before the 2 s grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(matches!(spawner.poll(&started.state).await, PodPoll::Gone { .. }));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_and_service_are_created_with_owner_reference() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(
        &sim,
        "service_per_pod = true\n[pod.storage]\nenabled = true\ncapacity = \"1Gi\"\nclass = \"standard\"\n",
    );
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    let before = sim.stats();
    let started = spawner
        .start(request("Carol@Example.org", "lab", None), quiet())
        .await
        .unwrap();
    let after = sim.stats();
    assert_eq!(
        after.writes() - before.writes(),
        3,
        "claim + pod + service: {:?}",
        after.requests
    );

    let client = sim.client().await;
    let name = pod_name(&started.state);
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get(&name)
        .await
        .unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get(&name)
        .await
        .unwrap();
    let owners = svc.metadata.owner_references.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].uid, uid);
    assert_eq!(owners[0].kind, "Pod");
    let claim_name = started.state["pvc"].as_str().unwrap();
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client, "default")
        .get(claim_name)
        .await
        .unwrap();
    let labels = pvc.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "edgehub");
    assert_eq!(
        pvc.metadata.annotations.unwrap()["hub.jupyter.org/username"],
        "Carol@Example.org"
    );
    assert_eq!(started.url, format!("http://{name}.default.svc:8888"));

    // A second start after a stop re-uses the claim (409 is "there already").
    spawner.stop(&started.state).await.unwrap();
    let again = spawner
        .start(request("Carol@Example.org", "lab", None), quiet())
        .await
        .unwrap();
    assert_eq!(again.state["pvc"], started.state["pvc"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_fast() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "[pod]\nimage = \"example.org/does-not-exist:1\"\n");
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    let began = Instant::now();
    let err = spawner.start(request("dave", "", None), quiet()).await.unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "failed only after {:?}",
        began.elapsed()
    );
    assert!(matches!(err, KubeSpawnError::ImagePull { .. }), "{err:?}");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
    // The failed pod is cleaned up.
    let client = sim.client().await;
    let pods = Api::<Pod>::namespaced(client, "default");
    let until = Instant::now() + Duration::from_secs(5);
    while pods.get_opt("jupyter-dave").await.unwrap().is_some() {
        assert!(Instant::now() < until, "the failed pod was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_fails_fast_with_the_schedulers_message() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "[pod]\nextra_resource_limits = { \"nvidia.com/gpu\" = \"1\" }\n");
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    let began = Instant::now();
    let err = spawner.start(request("erin", "", None), quiet()).await.unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "failed only after {:?}",
        began.elapsed()
    );
    match &err {
        KubeSpawnError::Unschedulable { message } => assert!(message.contains("nvidia.com/gpu"), "{message}"),
        other => panic!("{other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_spawner_re_adopts_without_a_duplicate() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "");
    let first = KubeSpawner::connect(&cfg).await.unwrap();
    let started = start_ok(&sim, &first, request("frank", "nb", None)).await;
    drop(first); // the hub restarts

    let second = KubeSpawner::connect(&cfg).await.unwrap();
    assert_eq!(
        second.poll(&started.state).await,
        PodPoll::Running {
            url: started.url.clone()
        }
    );
    let found = second.found_servers();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].user.as_str(), found[0].server_name.as_str()), ("frank", "nb"));
    assert_eq!(found[0].state["uid"], started.state["uid"]);

    // A start of the same server (a hub that lost its state) re-attaches.
    let before = sim.stats();
    let again = start_ok(&sim, &second, request("frank", "nb", None)).await;
    assert_eq!(again.state["uid"], started.state["uid"]);
    assert_eq!(delta(&sim, &before, Verb::Create, "pods"), 0, "no duplicate pod");
    let client = sim.client().await;
    let pods = Api::<Pod>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_held_by_someone_else_is_a_clear_error() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let client = sim.client().await;
    let foreign: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "jupyter-gina"},
        "spec": {"containers": [{"name": "x", "image": "python:3", "command": ["sleep", "60"]}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client, "default")
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "")).await.unwrap();
    let err = spawner.start(request("gina", "", None), quiet()).await.unwrap_err();
    assert!(matches!(err, KubeSpawnError::NameTaken { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_writes_are_retried_after_retry_after() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "")).await.unwrap();
    sim.inject(Fault::status(Verb::Create, "pods", 429, 2).with_retry_after(1));
    let began = Instant::now();
    let started = start_ok(&sim, &spawner, request("hank", "", None)).await;
    assert!(
        began.elapsed() >= Duration::from_millis(1900),
        "Retry-After was not honoured: {:?}",
        began.elapsed()
    );
    get_json(&started.url, Duration::from_secs(10))
        .await
        .expect("the server answers");

    sim.inject(Fault::status(Verb::Create, "pods", 503, 1));
    start_ok(&sim, &spawner, request("ida", "", None)).await;
    sim.shutdown().await;
}

/// A throttled API server is tried `1 + api_retries` times, then the spawn fails with its answer:
/// the only retries are the spawner's own (kube's retry layer is off, or it would retry inside
/// each attempt and multiply the load on a server asking for less).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_api_retries() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "api_retries = 2")).await.unwrap();
    sim.inject(Fault::status(Verb::Create, "pods", 429, 100));
    let before = sim.stats();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        spawner.start(request("jon", "", None), quiet()),
    )
    .await
    .expect("3 tries with backoffs of 0.1 and 0.2 s end well within 30 s");
    let err = result.expect_err("every create was throttled");
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(delta(&sim, &before, Verb::Create, "pods"), 3, "one try and 2 retries");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watch_is_restarted_by_the_watchdog() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "watch_stale_secs = 2"))
        .await
        .unwrap();
    // Quiet but alive (bookmarks arrive every second): no restart.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(spawner.watch_starts(), (1, 1), "a quiet watch was restarted");
    assert!(spawner.watch_ages().0 < Duration::from_secs(2));
    let (pod_starts, _) = spawner.watch_starts();
    sim.inject(Fault::StallWatches {
        for_: Duration::from_secs(600),
    });
    // The spawn is not stuck behind the dead streams: within a few stale periods a fresh watch
    // (kube-runtime resuming a silent call, or the watchdog's relist) shows the pod.
    let began = Instant::now();
    let started = start_ok(&sim, &spawner, request("jack", "", None)).await;
    assert!(began.elapsed() < Duration::from_secs(15), "{:?}", began.elapsed());
    get_json(&started.url, Duration::from_secs(10))
        .await
        .expect("the server answers");
    // The watchdog relists a watch that delivered nothing for watch_stale_secs.
    let until = Instant::now() + Duration::from_secs(10);
    while spawner.watch_starts().0 <= pod_starts {
        assert!(
            Instant::now() < until,
            "the watchdog never restarted the silent pod watch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the cache is current after the restarts: a stop is seen.
    spawner.stop(&started.state).await.unwrap();
    assert!(matches!(spawner.poll(&started.state).await, PodPoll::Gone { .. }));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_claim_is_fast_refills_and_hands_over_the_users_env() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "[[profiles]]\nslug = \"fast\"\nwarm_pool = 2\n");
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    pool_reaches(&spawner, 2, "the pool did not fill").await;

    let before = sim.stats();
    let began = Instant::now();
    let started = spawner.start(request("kate", "", Some("fast")), quiet()).await.unwrap();
    let claimed_in = began.elapsed();
    assert_eq!(delta(&sim, &before, Verb::Patch, "pods"), 1, "one patch claims");
    assert_eq!(delta(&sim, &before, Verb::Get, "pods"), 0);
    let answer = get_json(&started.url, Duration::from_secs(10))
        .await
        .expect("the claimed server answers");
    let ready_in = began.elapsed();
    eprintln!("warm spawn: claimed in {claimed_in:?}, answering in {ready_in:?}");
    assert!(ready_in < Duration::from_secs(3), "{ready_in:?}");
    let env = &answer["env"];
    assert_eq!(env["JUPYTERHUB_USER"], "kate");
    assert_eq!(env["JUPYTERHUB_API_TOKEN"], "token-of-kate");
    let ip = started.url.trim_start_matches("http://").split(':').next().unwrap();
    assert_eq!(env["JUPYTERHUB_SERVICE_URL"], format!("http://{ip}:8888/user/kate/"));

    // No restart: the container never restarted, and the claimed pod is kate's by label.
    let client = sim.client().await;
    let pod = Api::<Pod>::namespaced(client, "default")
        .get(&pod_name(&started.state))
        .await
        .unwrap();
    let restarts = pod.status.unwrap().container_statuses.unwrap()[0].restart_count;
    assert_eq!(restarts, 0);
    let labels = pod.metadata.labels.unwrap();
    assert_eq!(labels["hub.jupyter.org/username"], "kate");
    assert_eq!(labels["edgehub.io/claimed"], "true");

    // The pool refills itself.
    pool_reaches(&spawner, 2, "the pool did not refill").await;
    // Two spawns at once never get the same pod.
    let (a, b) = tokio::join!(
        spawner.start(request("leo", "", Some("fast")), quiet()),
        spawner.start(request("mia", "", Some("fast")), quiet()),
    );
    assert_ne!(a.unwrap().state["uid"], b.unwrap().state["uid"]);
    // A stop of a claimed pod works like any other.
    spawner.stop(&started.state).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_fails_fast_with_the_exit_status() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut cfg = config(&sim, "");
    cfg.pod.command = Some(vec!["python3".into(), "-c".into(), "import sys; sys.exit(3)".into()]);
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    let began = Instant::now();
    let err = spawner.start(request("nina", "", None), quiet()).await.unwrap_err();
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "failed only after {:?}",
        began.elapsed()
    );
    match &err {
        KubeSpawnError::CrashLoop { code, .. } | KubeSpawnError::Exited { code, .. } => assert_eq!(*code, Some(3)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("status 3"), "{err}");
    assert!(matches!(
        spawner.poll(&serde_json::json!({"pod": "jupyter-nina"})).await,
        PodPoll::Gone { .. }
    ));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caches_survive_closed_watches_and_expired_history() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "")).await.unwrap();
    let first = start_ok(&sim, &spawner, request("olga", "", None)).await;
    sim.inject(Fault::ExpireHistory);
    sim.inject(Fault::CloseWatches);
    // A change made while the watches are down is seen once they relist.
    spawner.stop(&first.state).await.unwrap();
    let second = start_ok(&sim, &spawner, request("pete", "", None)).await;
    assert!(matches!(spawner.poll(&first.state).await, PodPoll::Gone { .. }));
    assert!(matches!(spawner.poll(&second.state).await, PodPoll::Running { .. }));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_spawns_share_the_api_limit_and_write_once_each() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "api_concurrency = 2"))
        .await
        .unwrap();
    let before = sim.stats();
    let users: Vec<String> = (0..12).map(|i| format!("user{i}")).collect();
    let starts = users.iter().map(|u| spawner.start(request(u, "", None), quiet()));
    let results = futures::future::join_all(starts).await;
    let mut urls = std::collections::HashSet::new();
    for (user, r) in users.iter().zip(results) {
        let started = r.unwrap_or_else(|e| {
            let log = std::fs::read_to_string(sim.root_dir().join(format!("pods/default/jupyter-{user}/notebook.log")));
            panic!("{user}: {e}; log: {log:?}")
        });
        urls.insert(started.url);
    }
    assert_eq!(urls.len(), users.len(), "every server has its own address");
    let after = sim.stats();
    assert_eq!(
        after.writes() - before.writes(),
        users.len() as u64,
        "{:?}",
        after.requests
    );
    assert_eq!(after.verb(Verb::Get), before.verb(Verb::Get));
    assert_eq!(after.verb(Verb::List), before.verb(Verb::List));
    for url in &urls {
        get_json(url, Duration::from_secs(10))
            .await
            .expect("every server answers");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_start_leaves_no_pod() {
    let sim = Simulator::start(SimConfig {
        image_pull: Duration::from_secs(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let spawner = KubeSpawner::connect(&config(&sim, "")).await.unwrap();
    // The hub bounds start with its own timeout and drops the future when it runs out.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        spawner.start(request("quinn", "", None), quiet()),
    )
    .await;
    assert!(gave_up.is_err());
    let pods = Api::<Pod>::namespaced(sim.client().await, "default");
    let until = Instant::now() + Duration::from_secs(10);
    while pods.get_opt("jupyter-quinn").await.unwrap().is_some() {
        assert!(Instant::now() < until, "the abandoned pod was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the next start is clean.
    let started = start_ok(&sim, &spawner, request("quinn", "", None)).await;
    assert_eq!(pod_name(&started.state), "jupyter-quinn");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_never_claim_the_same_warm_pod() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "[[profiles]]\nslug = \"fast\"\nwarm_pool = 2\n");
    let a = KubeSpawner::connect(&cfg).await.unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while a.pool_ready("fast") < 2 {
        assert!(Instant::now() < until, "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = KubeSpawner::connect(&cfg).await.unwrap();
    // Both hubs see the same two warm pods and both pick the oldest first: the resourceVersion
    // in the claim patch lets only one of them have it; the other moves on.
    let before = sim.stats();
    let (x, y) = tokio::join!(
        a.start(request("rose", "", Some("fast")), quiet()),
        b.start(request("sam", "", Some("fast")), quiet()),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_ne!(x.state["uid"], y.state["uid"]);
    assert!(delta(&sim, &before, Verb::Patch, "pods") >= 2);
    for (started, user) in [(&x, "rose"), (&y, "sam")] {
        let answer = get_json(&started.url, Duration::from_secs(10))
            .await
            .expect("the claimed server answers");
        assert_eq!(answer["env"]["JUPYTERHUB_USER"], user);
    }
    sim.shutdown().await;
}

/// The Role's grants in `deploy/kubernetes/rbac.yaml`: (resource, verb) pairs, read from its
/// `resources: [...]` and `verbs: [...]` lines (flow sequences, which are JSON).
fn deployment_role() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let list = |line: &str, key: &str| -> Option<Vec<String>> {
        let rest = line.trim().strip_prefix(key)?.trim();
        Some(serde_json::from_str(rest).unwrap_or_else(|e| panic!("{key} {rest}: {e}")))
    };
    let mut grants = Vec::new();
    let mut resources: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(r) = list(line, "resources:") {
            resources = r;
        } else if let Some(verbs) = list(line, "verbs:") {
            for resource in &resources {
                grants.extend(verbs.iter().map(|v| (resource.clone(), v.clone())));
            }
        }
    }
    assert!(!grants.is_empty(), "no rules read from {path}");
    grants
}

/// The deployment's RBAC (`deploy/kubernetes/rbac.yaml`) grants every call the spawner makes in
/// a server's life: cold spawns with a volume claim and a Service, a restart of a stopped server
/// (the claim is there: 409; a leftover Service is adopted), the warm pool's fill and claims,
/// stops, and a hub restart that re-adopts. A call outside the Role would be a 403 on a cluster; a grant never used is more
/// than the hub needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployments_role_allows_every_call_the_spawner_makes() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(
        &sim,
        "service_per_pod = true\n\
         [pod.storage]\nenabled = true\ncapacity = \"1Gi\"\n\
         [[profiles]]\nslug = \"standard\"\ndefault = true\n\
         [[profiles]]\nslug = \"fast\"\nwarm_pool = 1\npod = { storage = { enabled = false } }\n",
    );
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    pool_reaches(&spawner, 1, "the pool did not fill").await;
    let cold = start_ok(&sim, &spawner, request("alice", "", None)).await;
    let warm = start_ok(&sim, &spawner, request("bob", "", Some("fast"))).await;
    spawner.stop(&cold.state).await.unwrap();
    spawner.stop(&warm.state).await.unwrap();
    // A Service the garbage collector has not removed yet: the next start adopts it.
    let leftover: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": pod_name(&cold.state)},
        "spec": {"ports": [{"port": 8888}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(sim.client().await, "default")
        .create(&Default::default(), &leftover)
        .await
        .unwrap();
    let again = start_ok(&sim, &spawner, request("alice", "", None)).await;
    drop(spawner); // the hub restarts and finds alice's pod
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    let adopted = start_ok(&sim, &spawner, request("alice", "", None)).await;
    assert_eq!(adopted.state["uid"], again.state["uid"]);

    let grants = deployment_role();
    let calls = sim.stats().requests;
    let denied: Vec<String> = calls
        .keys()
        .filter(|(verb, resource)| !grants.contains(&(resource.clone(), verb.as_str().to_owned())))
        .map(|(verb, resource)| format!("{verb} {resource}"))
        .collect();
    assert!(
        denied.is_empty(),
        "the Role does not allow {denied:?} (calls: {calls:?})"
    );
    let unused: Vec<String> = grants
        .iter()
        .filter(|(resource, verb)| !calls.keys().any(|(v, r)| r == resource && v.as_str() == verb))
        .map(|(resource, verb)| format!("{verb} {resource}"))
        .collect();
    assert!(
        unused.is_empty(),
        "granted but never called: {unused:?} (calls: {calls:?})"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_told_another_keeps_the_pools_claims_but_does_not_refill() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "[[profiles]]\nslug = \"fast\"\nwarm_pool = 2\n");
    let spawner = KubeSpawner::connect(&cfg).await.unwrap();
    pool_reaches(&spawner, 2, "the pool did not fill").await;
    // Another hub replica holds the background work now: this one claims, and leaves the pool.
    spawner.set_pool_refill(false);
    let before = sim.stats();
    let started = spawner.start(request("olga", "", Some("fast")), quiet()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(delta(&sim, &before, Verb::Create, "pods"), 0, "no pod made to refill");
    assert_eq!(spawner.pool_ready("fast"), 1);
    // It holds the background work again: the pool is topped up.
    spawner.set_pool_refill(true);
    pool_reaches(&spawner, 2, "the pool did not refill once asked to").await;
    spawner.stop(&started.state).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_started_without_the_background_work_makes_no_pool_pod_until_told() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let cfg = config(&sim, "[[profiles]]\nslug = \"fast\"\nwarm_pool = 2\n");
    let before = sim.stats();
    let spawner = KubeSpawner::connect_refilling(&cfg, false).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(delta(&sim, &before, Verb::Create, "pods"), 0, "not one pod made");
    spawner.set_pool_refill(true);
    pool_reaches(&spawner, 2, "the pool did not fill once asked to").await;
    sim.shutdown().await;
}

/// Waits (20 s at most) until the `fast` profile's pool has `ready` claimable pods.
async fn pool_reaches(spawner: &KubeSpawner, ready: usize, failure: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while spawner.pool_ready("fast") < ready {
        assert!(Instant::now() < until, "{failure}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
