//! Manifests as pure functions: a user's pod, a warm-pool pod, the per-user claim, the per-pod
//! Service and the claim patch of a warm-pool pod. No I/O; golden files in `tests/golden/`.
//!
//! Invariants:
//! - Every object carries `app.kubernetes.io/managed-by=edgehub`, which the pod cache selects
//!   on; user objects carry the safe user and server names as labels and the raw names as
//!   annotations (labels find, annotations confirm: a slug is not proof of identity).
//! - The hub's environment reaches the server unchanged: its values are escaped (`$` → `$$`) so
//!   Kubernetes' `$(VAR)` expansion leaves them alone; only the values this module writes
//!   (`JUPYTERHUB_SERVICE_URL`) and the operator's `environment` use expansion.
//! - `POD_IP` is the first variable, so later ones may refer to it.

use std::collections::BTreeMap;

use config::kubernetes::{KubernetesConfig, PodConfig, RawObject, StorageConfig};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use serde_json::{Map, Value, json};

use crate::names;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "edgehub";
pub const COMPONENT: &str = "component";
pub const COMPONENT_SERVER: &str = "singleuser-server";
pub const COMPONENT_POOL: &str = "singleuser-pool";
pub const USERNAME: &str = "hub.jupyter.org/username";
pub const SERVERNAME: &str = "hub.jupyter.org/servername";
pub const PROFILE: &str = "edgehub.io/profile";
pub const POOL: &str = "edgehub.io/pool";
pub const CLAIMED: &str = "edgehub.io/claimed";
/// Annotation of a claimed pool pod: the user's environment, a JSON object.
pub const CLAIM_ENV: &str = "edgehub.io/env";
/// Annotation of a pool pod: hash of its spec, so pods of an older configuration are replaced.
pub const POOL_SPEC: &str = "edgehub.io/pool-spec";
/// Where a pool pod's downward-API volume is mounted, and the file the launcher reads.
pub const PODINFO_DIR: &str = "/etc/edgehub/podinfo";
pub const PODINFO_FILE: &str = "/etc/edgehub/podinfo/annotations";
/// The selector of the pod cache.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=edgehub";

pub const CONTAINER: &str = "notebook";
pub const PORT_NAME: &str = "notebook-port";
pub const DEFAULT_IMAGE: &str = "quay.io/jupyterhub/singleuser:latest";
pub const DEFAULT_PORT: u16 = 8888;

/// A rendering mistake in the configuration (a raw object Kubernetes would refuse).
#[derive(Debug, thiserror::Error)]
#[error("the pod configuration is not valid Kubernetes: {0}")]
pub struct RenderError(String);

/// Whose pod it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub server: String,
}

/// Everything a pod is made from.
#[derive(Debug, Clone)]
pub struct PodInput<'a> {
    pub namespace: &'a str,
    pub name: String,
    /// `None` for a warm-pool pod (its owner comes with the claim).
    pub owner: Option<Owner>,
    pub profile: Option<&'a str>,
    /// The base pod with the profile laid over it.
    pub pod: &'a PodConfig,
    /// The hub's environment (`JUPYTERHUB_*`); empty for a pool pod.
    pub hub_env: &'a BTreeMap<String, String>,
    /// The server's URL prefix, e.g. `/user/alice/`.
    pub prefix: &'a str,
    /// The user's claim, mounted at `storage.mount_path`.
    pub claim: Option<String>,
    /// Grace period of the pod's deletion, seconds.
    pub grace_secs: u64,
    /// Pool pods only: the launcher that waits for the claim.
    pub launcher: Option<&'a [String]>,
}

impl PodInput<'_> {
    pub fn port(&self) -> u16 {
        self.pod.port.unwrap_or(DEFAULT_PORT)
    }
}

/// Labels of every object of `owner`'s server.
pub fn owner_labels(
    owner: &Owner,
    profile: Option<&str>,
    extra: Option<&BTreeMap<String, String>>,
) -> Map<String, Value> {
    let mut labels = Map::new();
    for (k, v) in extra.into_iter().flatten() {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert(MANAGED_BY.into(), json!(MANAGED_BY_VALUE));
    labels.insert("app.kubernetes.io/name".into(), json!("edgehub"));
    labels.insert("app.kubernetes.io/component".into(), json!(COMPONENT_SERVER));
    labels.insert(COMPONENT.into(), json!(COMPONENT_SERVER));
    labels.insert(USERNAME.into(), json!(names::label_value(&owner.user)));
    labels.insert(SERVERNAME.into(), json!(names::label_value(&owner.server)));
    if let Some(p) = profile {
        labels.insert(PROFILE.into(), json!(p));
    }
    labels
}

fn owner_annotations(owner: &Owner) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert(USERNAME.into(), json!(owner.user));
    a.insert(SERVERNAME.into(), json!(owner.server));
    a
}

/// `$` → `$$`: Kubernetes expands `$(VAR)` in env values, command and args; the hub's values are
/// data, not references.
pub fn escape_expansion(v: &str) -> String {
    v.replace('$', "$$")
}

/// The user's environment as the server sees it (before Kubernetes' expansion): the hub's
/// variables, escaped, and `JUPYTERHUB_SERVICE_URL` binding the pod IP. This is also what a claim
/// hands a pool pod.
pub fn user_env(hub_env: &BTreeMap<String, String>, prefix: &str, port: u16) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = hub_env.iter().map(|(k, v)| (k.clone(), escape_expansion(v))).collect();
    env.insert(
        "JUPYTERHUB_SERVICE_URL".into(),
        format!("http://$(POD_IP):{port}{}", escape_expansion(prefix)),
    );
    env
}

/// Replaces `{user}` and `{server}` in every string of a raw object.
fn fill_raw(value: &Value, owner: &Owner) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("{user}", &owner.user).replace("{server}", &owner.server)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_raw(v, owner)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), fill_raw(v, owner))).collect()),
        other => other.clone(),
    }
}

fn raw(object: &RawObject) -> Value {
    // A TOML table always converts; the fallback only guards against a serializer surprise.
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// CPU cores as a quantity: whole cores as integers, the rest in millicores.
pub fn cpu_quantity(cores: f64) -> String {
    let milli = (cores * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// JupyterHub's `MEM_LIMIT` and `MEM_GUARANTEE` (bytes) and `CPU_LIMIT` and `CPU_GUARANTEE`
/// (cores) for what the pod is given, as its spawners set them: jupyter-resource-usage shows the
/// user their memory against `MEM_LIMIT`.
fn resource_env(pod: &PodConfig) -> Vec<(String, String)> {
    let bytes = |q: &Option<String>| {
        let value = config::kubernetes::quantity_value(q.as_deref()?)?;
        Some((value.round() as u64).to_string())
    };
    let cores = |c: Option<f64>| c.map(|c| c.to_string());
    [
        ("MEM_LIMIT", bytes(&pod.mem_limit)),
        ("MEM_GUARANTEE", bytes(&pod.mem_guarantee)),
        ("CPU_LIMIT", cores(pod.cpu_limit)),
        ("CPU_GUARANTEE", cores(pod.cpu_guarantee)),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?)))
    .collect()
}

fn resources(pod: &PodConfig) -> Value {
    let mut requests = Map::new();
    let mut limits = Map::new();
    if let Some(c) = pod.cpu_guarantee {
        requests.insert("cpu".into(), json!(cpu_quantity(c)));
    }
    if let Some(m) = &pod.mem_guarantee {
        requests.insert("memory".into(), json!(m));
    }
    for (k, v) in pod.extra_resource_guarantees.iter().flatten() {
        requests.insert(k.clone(), json!(v));
    }
    if let Some(c) = pod.cpu_limit {
        limits.insert("cpu".into(), json!(cpu_quantity(c)));
    }
    if let Some(m) = &pod.mem_limit {
        limits.insert("memory".into(), json!(m));
    }
    for (k, v) in pod.extra_resource_limits.iter().flatten() {
        limits.insert(k.clone(), json!(v));
    }
    let mut r = Map::new();
    if !requests.is_empty() {
        r.insert("requests".into(), Value::Object(requests));
    }
    if !limits.is_empty() {
        r.insert("limits".into(), Value::Object(limits));
    }
    Value::Object(r)
}

fn pod_security_context(pod: &PodConfig) -> Option<Value> {
    let mut ctx = match &pod.pod_security_context {
        Some(t) => match raw(t) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        None => Map::new(),
    };
    for (key, id) in [("runAsUser", pod.uid), ("runAsGroup", pod.gid), ("fsGroup", pod.fs_gid)] {
        if let Some(id) = id {
            ctx.insert(key.into(), json!(id));
        }
    }
    (!ctx.is_empty()).then_some(Value::Object(ctx))
}

/// The pod: a user's server, or (with `launcher`) a warm-pool pod waiting for its claim.
pub fn pod(input: &PodInput<'_>) -> Result<Pod, RenderError> {
    let p = input.pod;
    let port = input.port();
    let (labels, mut annotations) = match &input.owner {
        Some(owner) => (
            owner_labels(owner, input.profile, p.extra_labels.as_ref()),
            owner_annotations(owner),
        ),
        None => (
            pool_labels(input.profile.unwrap_or(""), p.extra_labels.as_ref()),
            Map::new(),
        ),
    };
    for (k, v) in p.extra_annotations.iter().flatten() {
        annotations.entry(k.clone()).or_insert_with(|| json!(v));
    }

    // Environment, in the order Kubernetes expands `$(VAR)` (a reference sees earlier variables
    // only): POD_IP, the hub's variables, the pod's resources as JupyterHub names them, the
    // operator's (which may refer to the others; the hub's win on a clash, the operator's over
    // the resources'), and last JUPYTERHUB_SERVICE_URL, made from POD_IP.
    let mut env = vec![json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})];
    let mut hub = if input.owner.is_some() {
        user_env(input.hub_env, input.prefix, port)
    } else {
        BTreeMap::from([("EDGEHUB_PODINFO".to_owned(), PODINFO_FILE.to_owned())])
    };
    hub.remove("POD_IP");
    let service_url = hub.remove("JUPYTERHUB_SERVICE_URL");
    let operator = p
        .environment
        .iter()
        .flatten()
        .filter(|(k, _)| !hub.contains_key(*k) && k.as_str() != "POD_IP" && k.as_str() != "JUPYTERHUB_SERVICE_URL");
    let operator: Vec<(String, String)> = operator.map(|(k, v)| (k.clone(), v.clone())).collect();
    let given: Vec<(String, String)> = resource_env(p)
        .into_iter()
        .filter(|(k, _)| !hub.contains_key(k) && !operator.iter().any(|(o, _)| o == k))
        .collect();
    env.extend(
        hub.into_iter()
            .chain(given)
            .chain(operator)
            .map(|(name, value)| json!({"name": name, "value": value})),
    );
    if let Some(url) = service_url {
        env.push(json!({"name": "JUPYTERHUB_SERVICE_URL", "value": url}));
    }

    let server_command = p
        .command
        .clone()
        .unwrap_or_else(|| vec!["jupyterhub-singleuser".to_owned()]);
    let server_args = p.args.clone().unwrap_or_default();
    let (command, args) = match input.launcher {
        Some(launcher) => {
            let mut args = vec!["--".to_owned()];
            args.extend(server_command);
            args.extend(server_args);
            (launcher.to_vec(), args)
        }
        None => (server_command, server_args),
    };

    let mut mounts: Vec<Value> = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    if let (Some(claim), Some(storage)) = (&input.claim, &p.storage) {
        volumes.push(json!({"name": "home", "persistentVolumeClaim": {"claimName": claim}}));
        mounts.push(json!({"name": "home", "mountPath": storage.mount_path}));
    }
    // Pool pods never name an owner in their volumes (validation refuses such a pool).
    let fill = |o: &RawObject| match &input.owner {
        Some(owner) => fill_raw(&raw(o), owner),
        None => raw(o),
    };
    volumes.extend(p.volumes.iter().flatten().map(fill));
    mounts.extend(p.volume_mounts.iter().flatten().map(fill));
    if input.launcher.is_some() {
        volumes.push(json!({"name": "podinfo", "downwardAPI": {"items": [
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
        ]}}));
        mounts.push(json!({"name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": true}));
    }

    let mut container = json!({
        "name": CONTAINER,
        "image": p.image.as_deref().unwrap_or(DEFAULT_IMAGE),
        "command": command,
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "resources": resources(p),
    });
    let c = container
        .as_object_mut()
        .ok_or_else(|| RenderError("container".into()))?;
    if !args.is_empty() {
        c.insert("args".into(), json!(args));
    }
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), json!(mounts));
    }
    if let Some(policy) = &p.image_pull_policy {
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    if let Some(dir) = &p.working_dir {
        c.insert("workingDir".into(), json!(dir));
    }
    if let Some(ctx) = &p.container_security_context {
        c.insert("securityContext".into(), raw(ctx));
    }

    let mut spec = json!({
        "containers": [container],
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": input.grace_secs,
        "automountServiceAccountToken": p.automount_service_account_token.unwrap_or(false),
    });
    let s = spec.as_object_mut().ok_or_else(|| RenderError("spec".into()))?;
    if !volumes.is_empty() {
        s.insert("volumes".into(), json!(volumes));
    }
    if let Some(sel) = &p.node_selector {
        s.insert("nodeSelector".into(), json!(sel));
    }
    if let Some(t) = &p.tolerations {
        s.insert("tolerations".into(), Value::Array(t.iter().map(raw).collect()));
    }
    if let Some(a) = &p.affinity {
        s.insert("affinity".into(), raw(a));
    }
    if let Some(sa) = &p.service_account {
        s.insert("serviceAccountName".into(), json!(sa));
    }
    if let Some(ctx) = pod_security_context(p) {
        s.insert("securityContext".into(), ctx);
    }
    if let Some(n) = &p.scheduler_name {
        s.insert("schedulerName".into(), json!(n));
    }
    if let Some(n) = &p.priority_class_name {
        s.insert("priorityClassName".into(), json!(n));
    }
    if let Some(secrets) = &p.image_pull_secrets {
        let refs: Vec<Value> = secrets.iter().map(|n| json!({"name": n})).collect();
        s.insert("imagePullSecrets".into(), Value::Array(refs));
    }

    if input.launcher.is_some() {
        // The spec hash lets the pool replace pods made from an older configuration.
        annotations.insert(POOL_SPEC.into(), json!(names::short_hash(&spec.to_string())));
    }
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": input.name,
            "namespace": input.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    });
    serde_json::from_value(manifest).map_err(|e| RenderError(e.to_string()))
}

/// Labels of an unclaimed pool pod.
pub fn pool_labels(profile: &str, extra: Option<&BTreeMap<String, String>>) -> Map<String, Value> {
    let mut labels = Map::new();
    for (k, v) in extra.into_iter().flatten() {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert(MANAGED_BY.into(), json!(MANAGED_BY_VALUE));
    labels.insert("app.kubernetes.io/name".into(), json!("edgehub"));
    labels.insert("app.kubernetes.io/component".into(), json!(COMPONENT_POOL));
    labels.insert(COMPONENT.into(), json!(COMPONENT_POOL));
    labels.insert(POOL.into(), json!(profile));
    labels.insert(PROFILE.into(), json!(profile));
    labels.insert(CLAIMED.into(), json!("false"));
    labels
}

/// The merge patch that hands pool pod `resource_version` to `owner`: its identity as labels and
/// annotations, and the user's environment for the launcher. The resource version makes the
/// patch fail with 409 if anyone changed the pod since it was read, so one pod is never claimed
/// twice.
pub fn claim_patch(owner: &Owner, resource_version: &str, env: &BTreeMap<String, String>) -> Value {
    let mut labels = Map::new();
    labels.insert(CLAIMED.into(), json!("true"));
    labels.insert(USERNAME.into(), json!(names::label_value(&owner.user)));
    labels.insert(SERVERNAME.into(), json!(names::label_value(&owner.server)));
    labels.insert(COMPONENT.into(), json!(COMPONENT_SERVER));
    labels.insert("app.kubernetes.io/component".into(), json!(COMPONENT_SERVER));
    let mut annotations = owner_annotations(owner);
    annotations.insert(CLAIM_ENV.into(), json!(serde_json::to_string(env).unwrap_or_default()));
    json!({"metadata": {"resourceVersion": resource_version, "labels": labels, "annotations": annotations}})
}

/// The per-user claim.
pub fn claim(
    namespace: &str,
    name: &str,
    owner: &Owner,
    storage: &StorageConfig,
    extra_labels: Option<&BTreeMap<String, String>>,
) -> Result<PersistentVolumeClaim, RenderError> {
    let mut labels = owner_labels(owner, None, extra_labels);
    labels.remove(COMPONENT);
    labels.remove("app.kubernetes.io/component");
    let mut spec = json!({
        "accessModes": storage.access_modes,
        "resources": {"requests": {"storage": storage.capacity}},
    });
    if let (Some(class), Some(s)) = (&storage.class, spec.as_object_mut()) {
        s.insert("storageClassName".into(), json!(class));
    }
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": owner_annotations(owner)},
        "spec": spec,
    });
    serde_json::from_value(manifest).map_err(|e| RenderError(e.to_string()))
}

/// The per-pod Service, owned by the pod (deleted with it by Kubernetes' garbage collector).
pub fn service(
    namespace: &str,
    pod_name: &str,
    pod_uid: &str,
    owner: &Owner,
    port: u16,
) -> Result<Service, RenderError> {
    let mut labels = owner_labels(owner, None, None);
    labels.remove(COMPONENT);
    labels.remove("app.kubernetes.io/component");
    let selector = json!({
        USERNAME: names::label_value(&owner.user),
        SERVERNAME: names::label_value(&owner.server),
        MANAGED_BY: MANAGED_BY_VALUE,
    });
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": owner_annotations(owner),
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid,
                "blockOwnerDeletion": false, "controller": false,
            }],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": PORT_NAME, "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    });
    serde_json::from_value(manifest).map_err(|e| RenderError(e.to_string()))
}

/// Renders a pod of every profile, so that a raw object Kubernetes would refuse (a toleration
/// with a number for a key) is reported at start-up, naming the profile, not at the first spawn.
pub fn check_config(config: &KubernetesConfig) -> Result<(), String> {
    let env = BTreeMap::new();
    let choices = std::iter::once(None).chain(config.profiles.iter().map(Some));
    for profile in choices {
        let settings = match profile {
            Some(p) => config.pod.overlaid(&p.pod),
            None => config.pod.clone(),
        };
        for launcher in [None, Some(config.launcher_command.as_slice())] {
            let input = PodInput {
                namespace: &config.namespace,
                name: "check".into(),
                owner: launcher.is_none().then(|| Owner {
                    user: "check".into(),
                    server: String::new(),
                }),
                profile: profile.map(|p| p.slug.as_str()),
                pod: &settings,
                hub_env: &env,
                prefix: "/",
                claim: Some("check".into()),
                grace_secs: config.stop_grace_secs,
                launcher,
            };
            if let Err(e) = pod(&input) {
                let which = profile.map_or("kubernetes.pod".to_owned(), |p| format!("profile {}", p.slug));
                return Err(format!("{which}: {e}"));
            }
        }
    }
    Ok(())
}
