//! The hub with the Kubernetes spawner, end to end: `edgehub up` drives kube-rs against the
//! API-server simulator (`spawner_k8s::sim`), whose kubelet runs each pod's command as a local
//! process on its own loopback pod IP, so a request goes client → edgeproxy → "pod". Covers the
//! profile choice (options page, API), progress from pod events, the edge owner check, stop, a
//! hub restart that re-adopts its pods without creating new ones, and, in Chromium, a user who
//! picks a profile and gets its warm pool's pod.

mod support;

use std::time::Duration;

use config::SpawnerClass;
use config::kubernetes::KubernetesConfig;
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use spawner_k8s::sim::{SimConfig, Simulator, Verb};
use support::webdriver::Browser;
use support::*;

/// Every pod runs the built-in server, which binds the pod IP from `JUPYTERHUB_SERVICE_URL`.
fn kube_config(sim: &Simulator) -> KubernetesConfig {
    let table = format!(
        r#"
kubeconfig = {kubeconfig:?}
stop_grace_secs = 2
start_timeout_secs = 60
[pod]
image = "edgehub/builtin:test"
command = [{edgehub:?}, "singleuser"]
port = 8888
[[profiles]]
slug = "small"
display_name = "Small"
description = "half a CPU"
default = true
pod = {{ cpu_guarantee = 0.5, mem_guarantee = "512Mi" }}
[[profiles]]
slug = "big"
display_name = "Big"
description = "two CPUs"
pod = {{ cpu_guarantee = 2.0, mem_guarantee = "4Gi" }}
"#,
        kubeconfig = sim.kubeconfig_path().display().to_string(),
        edgehub = env!("CARGO_BIN_EXE_edgehub"),
    );
    toml::from_str(&table).expect("the test's [kubernetes] table parses")
}

fn hub_config(dir: &std::path::Path, sim: &Simulator) -> config::HubConfig {
    let mut config = test_config(dir);
    config.spawner_class = SpawnerClass::Kubernetes;
    config.kubernetes = Some(kube_config(sim));
    config
}

async fn user_pods(sim: &Simulator, user: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(sim.client().await, "default");
    let selector = format!("hub.jupyter.org/username={user}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
}

fn cpu_request(pod: &Pod) -> String {
    let container = &pod.spec.as_ref().expect("spec").containers[0];
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .expect("requests");
    requests["cpu"].0.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_chooses_a_profile_and_reaches_their_pod_through_the_proxy() {
    let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
    let dir = temp_dir("k8s-flow");
    let hub = TestHub::start(hub_config(&dir, &sim)).await;

    // With profiles, the implicit start from /user/alice/ asks first.
    let mut alice = hub.login("alice").await;
    let r = alice.get("/hub/user/alice/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let page = r.text();
    assert!(page.contains("Server options"), "{page}");
    assert!(page.contains(r#"value="small" checked"#), "{page}");
    assert!(page.contains(r#"value="big""#) && page.contains("two CPUs"), "{page}");
    assert!(
        user_pods(&sim, "alice").await.is_empty(),
        "nothing starts before the choice"
    );

    let xsrf = alice.cookies.get("_xsrf").cloned().expect("_xsrf cookie");
    let r = alice
        .post_form("/hub/spawn/alice", &[("profile", "big"), ("_xsrf", &xsrf)])
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/hub/spawn-pending/alice");

    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    let last = events.last().expect("events");
    assert_eq!(last["ready"], true, "{events:?}");
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("node-")),
        "the pod's scheduling shows in the progress: {messages:?}"
    );

    // The pod has the chosen profile's requests, and answers through the proxy.
    let pods = user_pods(&sim, "alice").await;
    assert_eq!(pods.len(), 1, "one pod");
    assert_eq!(cpu_request(&pods[0]), "2");
    let r = alice.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("alice"), "{}", r.text());
    let mut bob = hub.login("bob").await;
    assert_eq!(bob.get("/user/alice/").await.status, StatusCode::FORBIDDEN);

    // The API takes the profile as user_options, and names the choices when it is wrong.
    let r = bob
        .api(Method::POST, "/users/bob/server", Some(json!({"profile": "huge"})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("choose one of small, big"), "{}", r.text());
    let r = bob.api(Method::POST, "/users/bob/server", Some(json!({}))).await;
    assert!(r.status.is_success(), "{}", r.text());
    follow_progress(&mut bob, "/hub/api/users/bob/server/progress").await;
    assert_eq!(
        cpu_request(&user_pods(&sim, "bob").await[0]),
        "500m",
        "the default profile"
    );
    let info = hub.admin().api(Method::GET, "/info", None).await.json();
    assert_eq!(info["spawner"]["class"], "kubernetes");
    assert_eq!(info["spawner"]["profiles"][1]["slug"], "big");

    // Stop: the pod goes (after its grace period at most), the route with it.
    let r = alice.api(Method::DELETE, "/users/alice/server", None).await;
    assert!(r.status.is_success(), "{}", r.text());
    eventually(Duration::from_secs(10), "alice's pod is deleted", || async {
        user_pods(&sim, "alice").await.is_empty()
    })
    .await;
    assert_eq!(alice.get("/user/alice/").await.status, StatusCode::FOUND);

    hub.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_re_adopts_its_pods_without_creating_any() {
    let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
    let dir = temp_dir("k8s-restart");
    // The same public port after the restart, kept bound in between.
    let public = KeptPort::new();
    let hub = TestHub::start_with(hub_config(&dir, &sim), public.overrides()).await;
    let mut admin = hub.admin();
    for user in ["carol", "dave"] {
        let r = admin.api(Method::POST, &format!("/users/{user}"), None).await;
        assert!(r.status.is_success(), "{}", r.text());
        let r = admin.api(Method::POST, &format!("/users/{user}/server"), None).await;
        assert!(r.status.is_success(), "{}", r.text());
        follow_progress(&mut admin, &format!("/hub/api/users/{user}/server/progress")).await;
    }
    let uid = |pods: Vec<Pod>| pods[0].metadata.uid.clone().expect("uid");
    let carol_uid = uid(user_pods(&sim, "carol").await);
    hub.stop_keeping_servers().await;
    let creates = sim.stats().count(Verb::Create, "pods");

    let hub = TestHub::start_with(hub_config(&dir, &sim), public.overrides()).await;
    let mut carol = hub.login("carol").await;
    let model = hub.admin().api(Method::GET, "/users/carol", None).await.json();
    assert_eq!(model["servers"][""]["ready"], true, "{model}");
    assert_eq!(uid(user_pods(&sim, "carol").await), carol_uid, "the same pod");
    let r = carol.get("/user/carol/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(sim.stats().count(Verb::Create, "pods"), creates, "no pod was created");

    hub.stop().await;
    sim.shutdown().await;
}

/// In Chromium: sign in, choose the profile with a warm pool on the options page, and land on the
/// server's page through the proxy, its WebSocket echo included. The server is the pool's pod,
/// claimed and turned into alice's by the launcher, not a pod created for her.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_user_picks_a_profile_and_gets_a_warm_pod() {
    const WAIT: Duration = Duration::from_secs(30);
    let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
    let dir = temp_dir("k8s-browser");
    let mut config = hub_config(&dir, &sim);
    let kube = config.kubernetes.as_mut().expect("kubernetes");
    kube.launcher_command =
        vec![concat!(env!("CARGO_MANIFEST_DIR"), "/../spawner-k8s/launcher/edgehub-launcher").to_owned()];
    kube.profiles[1].warm_pool = 1;
    let hub = TestHub::start(config).await;
    let pods: Api<Pod> = Api::namespaced(sim.client().await, "default");
    let pool_pod = || async {
        let listed = pods
            .list(&ListParams::default().labels("edgehub.io/pool=big"))
            .await
            .expect("list pods");
        listed.items.into_iter().next()
    };
    eventually(WAIT, "the warm pod of `big` runs", || async {
        pool_pod()
            .await
            .and_then(|p| p.status?.phase)
            .is_some_and(|phase| phase == "Running")
    })
    .await;
    let warm = pool_pod().await.and_then(|p| p.metadata.name).expect("pool pod");

    let browser = Browser::start().await.expect("chromium and chromedriver start");
    browser
        .sign_in(&hub.url("/user/alice/"), "alice", WAIT)
        .await
        .expect("the login page, then signed in");

    browser
        .wait_for("#options-heading", WAIT)
        .await
        .expect("the options page");
    browser.find("input[value=big]").await.unwrap().click().await.unwrap();
    browser.submit().await.unwrap();

    let server_page = hub.url("/user/alice/");
    let landed = browser.wait_until_url(|u| u == server_page, WAIT).await;
    let body = browser.find("body").await.unwrap().text().await.unwrap_or_default();
    landed.unwrap_or_else(|e| panic!("on the server's page once ready: {e}; the page says {body:?}"));
    assert_builtin_server_page(&browser, "alice", WAIT).await;

    let mine = user_pods(&sim, "alice").await;
    assert_eq!(mine.len(), 1, "one pod is alice's");
    assert_eq!(
        mine[0].metadata.name.as_deref(),
        Some(warm.as_str()),
        "the warm pod, claimed"
    );
    assert_eq!(cpu_request(&mine[0]), "2", "of the chosen profile");
    drop(browser);
    hub.stop().await;
    sim.shutdown().await;
}
