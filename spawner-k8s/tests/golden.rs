//! Manifests compared with `tests/golden/*.json`, exactly. After an intended change, regenerate
//! with `UPDATE_GOLDEN=1 cargo test -p spawner-k8s --test golden` and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::kubernetes::{KubernetesConfig, PodConfig};
use spawner_k8s::render::{self, Owner, PodInput};

fn golden(name: &str, value: &impl serde::Serialize) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    assert!(
        want == text,
        "{} differs; run with UPDATE_GOLDEN=1 and review the diff. Rendered:\n{text}",
        path.display()
    );
}

fn hub_env(user: &str, server: &str, prefix: &str) -> BTreeMap<String, String> {
    [
        ("JUPYTERHUB_API_TOKEN", "secret-token"),
        ("JUPYTERHUB_API_URL", "http://hub:8081/hub/api"),
        ("JUPYTERHUB_USER", user),
        ("JUPYTERHUB_SERVER_NAME", server),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix),
        ("JUPYTERHUB_BASE_URL", "/"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A configuration using every pod setting, with a GPU profile over it.
fn full_config() -> KubernetesConfig {
    let config: KubernetesConfig = toml::from_str(
        r#"
namespace = "jhub"
stop_grace_secs = 15
launcher_command = ["/usr/local/bin/edgehub-launcher"]
[pod]
image = "quay.io/jupyter/scipy-notebook:2025-01-01"
image_pull_policy = "IfNotPresent"
image_pull_secrets = ["registry"]
command = ["jupyterhub-singleuser"]
args = ["--debug"]
working_dir = "/home/jovyan"
cpu_guarantee = 0.5
cpu_limit = 2.0
mem_guarantee = "1G"
mem_limit = "2Gi"
node_selector = { "hub.jupyter.org/node-purpose" = "user" }
tolerations = [{ key = "hub.jupyter.org/dedicated", operator = "Equal", value = "user", effect = "NoSchedule" }]
scheduler_name = "user-scheduler"
priority_class_name = "user-pods"
service_account = "notebook"
uid = 1000
gid = 100
fs_gid = 100
container_security_context = { allowPrivilegeEscalation = false }
extra_labels = { team = "physics" }
extra_annotations = { "example.com/owner" = "ops" }
environment = { JUPYTER_ENABLE_LAB = "yes", GREETING = "hello $(JUPYTERHUB_USER)" }
volumes = [{ name = "shared", nfs = { server = "nfs.example.com", path = "/export/{user}" } }]
volume_mounts = [{ name = "shared", mountPath = "/shared" }]
[pod.affinity.nodeAffinity]
preferredDuringSchedulingIgnoredDuringExecution = [{ weight = 100, preference = { matchExpressions = [{ key = "hub.jupyter.org/node-purpose", operator = "In", values = ["user"] }] } }]
[pod.storage]
enabled = true
class = "fast"
capacity = "20Gi"

[[profiles]]
slug = "cpu"
display_name = "Small, pooled"
warm_pool = 2
[profiles.pod]
cpu_limit = 1.0
storage = { enabled = false }
volumes = []
volume_mounts = []

[[profiles]]
slug = "gpu"
display_name = "GPU"
[profiles.pod]
image = "quay.io/jupyter/pytorch-notebook:cuda12"
extra_resource_guarantees = { "nvidia.com/gpu" = "1" }
extra_resource_limits = { "nvidia.com/gpu" = "1" }
node_selector = { "cloud.google.com/gke-accelerator" = "nvidia-l4" }
"#,
    )
    .unwrap();
    config
}

fn render_user_pod(
    config: &KubernetesConfig,
    profile: Option<&str>,
    user: &str,
    server: &str,
) -> k8s_openapi::api::core::v1::Pod {
    let chosen = config.profile(profile).unwrap();
    let pod: PodConfig = match chosen {
        Some(p) => config.pod.overlaid(&p.pod),
        None => config.pod.clone(),
    };
    let prefix = if server.is_empty() {
        format!("/user/{user}/")
    } else {
        format!("/user/{user}/{server}/")
    };
    let env = hub_env(user, server, &prefix);
    let claim = pod
        .storage
        .as_ref()
        .filter(|s| s.enabled)
        .map(|s| spawner_k8s::names::object_name(&s.name_template, user, server));
    let input = PodInput {
        namespace: &config.namespace,
        name: spawner_k8s::names::object_name(&config.pod_name_template, user, server),
        owner: Some(Owner {
            user: user.into(),
            server: server.into(),
        }),
        profile: chosen.map(|p| p.slug.as_str()),
        pod: &pod,
        hub_env: &env,
        prefix: &prefix,
        claim,
        grace_secs: config.stop_grace_secs,
        launcher: None,
    };
    render::pod(&input).unwrap()
}

#[test]
fn default_pod() {
    let config = KubernetesConfig::default();
    golden("pod_default", &render_user_pod(&config, None, "alice", ""));
}

#[test]
fn full_gpu_pod() {
    let config = full_config();
    config.validate().unwrap();
    golden("pod_gpu_full", &render_user_pod(&config, Some("gpu"), "alice", "lab"));
}

#[test]
fn odd_names_pod() {
    let config = KubernetesConfig::default();
    golden(
        "pod_odd_names",
        &render_user_pod(&config, None, "Zoë.O'Brien@Example.COM", "My Lab $1"),
    );
}

#[test]
fn pool_pod() {
    let config = full_config();
    let profile = config.profile(Some("cpu")).unwrap().unwrap();
    let pod = config.pod.overlaid(&profile.pod);
    let none = BTreeMap::new();
    let input = PodInput {
        namespace: &config.namespace,
        name: "edgehub-pool-cpu-abc123".into(),
        owner: None,
        profile: Some("cpu"),
        pod: &pod,
        hub_env: &none,
        prefix: "/",
        claim: None,
        grace_secs: config.stop_grace_secs,
        launcher: Some(&config.launcher_command),
    };
    golden("pod_pool", &render::pod(&input).unwrap());
}

#[test]
fn claim_and_service_and_patch() {
    let config = full_config();
    let owner = Owner {
        user: "alice".into(),
        server: "lab".into(),
    };
    let storage = config.pod.storage.clone().unwrap();
    golden(
        "pvc",
        &render::claim(
            "jhub",
            "claim-alice--lab",
            &owner,
            &storage,
            config.pod.extra_labels.as_ref(),
        )
        .unwrap(),
    );
    golden(
        "service",
        &render::service(
            "jhub",
            "jupyter-alice--lab",
            "0b6f3e55-1c2d-4c5e-9f00-0123456789ab",
            &owner,
            8888,
        )
        .unwrap(),
    );
    let env = render::user_env(&hub_env("alice", "lab", "/user/alice/lab/"), "/user/alice/lab/", 8888);
    golden("claim_patch", &render::claim_patch(&owner, "12345", &env));
}

#[test]
fn a_bad_raw_object_is_a_clear_error() {
    let mut config = KubernetesConfig::default();
    config.pod.tolerations = Some(vec![toml::from_str("key = 5").unwrap()]);
    let env = BTreeMap::new();
    let input = PodInput {
        namespace: "default",
        name: "jupyter-alice".into(),
        owner: Some(Owner {
            user: "alice".into(),
            server: String::new(),
        }),
        profile: None,
        pod: &config.pod,
        hub_env: &env,
        prefix: "/user/alice/",
        claim: None,
        grace_secs: 30,
        launcher: None,
    };
    let err = render::pod(&input).unwrap_err().to_string();
    assert!(err.contains("not valid Kubernetes"), "{err}");
}
