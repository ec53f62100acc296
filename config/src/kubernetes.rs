//! Configuration of the Kubernetes spawner (`[kubernetes]` in the hub's TOML file).
//!
//! Two layers: settings of the spawner itself (cluster, namespace, timeouts, API limits) and
//! [`PodConfig`], what a user's pod looks like. Profiles ([`Profile`]) carry a `PodConfig` of their
//! own that is laid over the base one: scalars and lists are replaced, maps (`node_selector`,
//! `extra_labels`, `environment`, resources…) are merged key by key, the profile winning.
//!
//! Raw Kubernetes objects (`tolerations`, `affinity`, `volumes`, security contexts) are TOML
//! tables written with Kubernetes' own camelCase keys; they are passed to the pod as given and
//! checked by the spawner when it renders the first pod (and at start-up, see `validate`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

/// A raw Kubernetes object written as a TOML table (camelCase keys as in a manifest).
pub type RawObject = toml::Table;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// A kubeconfig file. Default: none, inferred as kubectl does (`$KUBECONFIG`, `~/.kube/config`,
    /// then the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use. Default: the file's current context.
    pub context: Option<String>,
    /// Namespace of user pods, claims and services. Default: `default`.
    pub namespace: String,
    /// Pod name; `{user}` is the user's safe name, `{server}` the server's, `{-server}` is `--` and
    /// the server's safe name, or nothing for the default server. Made safe and at most 63
    /// characters. Default: `jupyter-{user}{-server}`.
    pub pod_name_template: String,
    /// Create a ClusterIP Service per pod (owned by the pod, so deleted with it) and reach the
    /// server by its DNS name instead of the pod IP. Default: false.
    pub service_per_pod: bool,
    /// Time allowed from the start of a spawn to a running pod (scheduling, image pull, start),
    /// seconds. Default: 300.
    pub start_timeout_secs: u64,
    /// Grace period of a pod's deletion (SIGTERM to SIGKILL), seconds. Default: 30.
    pub stop_grace_secs: u64,
    /// API writes in flight at once, across all spawns. Default: 16.
    pub api_concurrency: usize,
    /// Retries of an API call answered 429 or 5xx (with backoff, honouring the server's
    /// `retryAfterSeconds`). Default: 5.
    pub api_retries: u32,
    /// A watch that delivered nothing for this long is restarted (relisted), seconds. Default: 300.
    pub watch_stale_secs: u64,
    /// The command warm-pool pods run before the server: it waits for the claim, then execs the
    /// server's command (given after `--`). Default: `["edgehub-launcher"]`.
    pub launcher_command: Vec<String>,
    /// What every user pod looks like (profiles change parts of it).
    pub pod: PodConfig,
    /// Choices offered on the spawn page and as `user_options.profile`. Default: none (every
    /// server gets `pod`).
    pub profiles: Vec<Profile>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            kubeconfig: None,
            context: None,
            namespace: "default".to_owned(),
            pod_name_template: "jupyter-{user}{-server}".to_owned(),
            service_per_pod: false,
            start_timeout_secs: 300,
            stop_grace_secs: 30,
            api_concurrency: 16,
            api_retries: 5,
            watch_stale_secs: 300,
            launcher_command: vec!["edgehub-launcher".to_owned()],
            pod: PodConfig::default(),
            profiles: Vec::new(),
        }
    }
}

/// A user's pod. Every field is optional so that a profile can set only what it changes; the
/// default stated is the one used when neither the base nor the profile sets it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodConfig {
    /// Container image. Default: `quay.io/jupyterhub/singleuser:latest`.
    pub image: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`. Default: Kubernetes' (by tag).
    pub image_pull_policy: Option<String>,
    /// Names of Secrets for pulling the image. Default: none.
    pub image_pull_secrets: Option<Vec<String>>,
    /// The server's command. Default: `["jupyterhub-singleuser"]`.
    pub command: Option<Vec<String>>,
    /// Its arguments. Default: none.
    pub args: Option<Vec<String>>,
    /// Port the server listens on (named `notebook-port`). Default: 8888.
    pub port: Option<u16>,
    /// Working directory of the server. Default: the image's.
    pub working_dir: Option<String>,
    /// CPU request, cores (e.g. 0.5). Default: none.
    pub cpu_guarantee: Option<f64>,
    /// CPU limit, cores. Default: none.
    pub cpu_limit: Option<f64>,
    /// Memory request, a Kubernetes quantity (`512Mi`, `1G`). Default: none.
    pub mem_guarantee: Option<String>,
    /// Memory limit, a Kubernetes quantity. Default: none.
    pub mem_limit: Option<String>,
    /// Other requests, resource name to quantity (e.g. `"nvidia.com/gpu" = "1"`). Default: none.
    pub extra_resource_guarantees: Option<BTreeMap<String, String>>,
    /// Other limits, resource name to quantity. Default: none.
    pub extra_resource_limits: Option<BTreeMap<String, String>>,
    /// Node labels the pod must be scheduled on. Default: none.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Kubernetes tolerations, as in a manifest. Default: none.
    pub tolerations: Option<Vec<RawObject>>,
    /// A Kubernetes `affinity` object, as in a manifest. Default: none.
    pub affinity: Option<RawObject>,
    /// Scheduler of the pod (e.g. a packing user scheduler). Default: the cluster's.
    pub scheduler_name: Option<String>,
    /// Priority class of the pod. Default: none.
    pub priority_class_name: Option<String>,
    /// Service account the pod runs as. Default: the namespace's `default`.
    pub service_account: Option<String>,
    /// Mount the service account's token. Default: false (a notebook has no business with the
    /// Kubernetes API unless asked).
    pub automount_service_account_token: Option<bool>,
    /// `runAsUser` of the pod. Default: the image's.
    pub uid: Option<i64>,
    /// `runAsGroup` of the pod. Default: the image's.
    pub gid: Option<i64>,
    /// `fsGroup` of the pod (owner group of mounted volumes). Default: none.
    pub fs_gid: Option<i64>,
    /// A raw pod `securityContext`; `uid`, `gid`, `fs_gid` are laid over it. Default: none.
    pub pod_security_context: Option<RawObject>,
    /// A raw container `securityContext`. Default: none.
    pub container_security_context: Option<RawObject>,
    /// Labels added to user pods (and claims and services). Default: none.
    pub extra_labels: Option<BTreeMap<String, String>>,
    /// Annotations added to user pods. Default: none.
    pub extra_annotations: Option<BTreeMap<String, String>>,
    /// Extra environment of the server; the hub's `JUPYTERHUB_*` variables win. Default: none.
    pub environment: Option<BTreeMap<String, String>>,
    /// The per-user volume claim. A profile's `storage` replaces the base one whole.
    pub storage: Option<StorageConfig>,
    /// Extra pod volumes, as in a manifest (e.g. `{ name = "shared", nfs = { server = "…",
    /// path = "/export" } }`); `{user}` and `{server}` in string values are replaced. Default: none.
    pub volumes: Option<Vec<RawObject>>,
    /// Their mounts in the server's container, as in a manifest. Default: none.
    pub volume_mounts: Option<Vec<RawObject>>,
}

/// The per-user PersistentVolumeClaim, created before the pod if missing and never deleted by a
/// stop.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Give each server a claim. Default: false.
    pub enabled: bool,
    /// Storage class. Default: the cluster's default class.
    pub class: Option<String>,
    /// Size, a Kubernetes quantity. Default: `10Gi`.
    pub capacity: String,
    /// Access modes. Default: `["ReadWriteOnce"]`.
    pub access_modes: Vec<String>,
    /// Claim name, with the placeholders of `pod_name_template`. Default: `claim-{user}{-server}`.
    pub name_template: String,
    /// Where the claim is mounted in the server's container. Default: `/home/jovyan`.
    pub mount_path: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            enabled: false,
            class: None,
            capacity: "10Gi".to_owned(),
            access_modes: vec!["ReadWriteOnce".to_owned()],
            name_template: "claim-{user}{-server}".to_owned(),
            mount_path: "/home/jovyan".to_owned(),
        }
    }
}

/// A choice of pod offered to users, as KubeSpawner's `profile_list`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Its identifier in `user_options.profile`: lowercase letters, digits and `-`. Required.
    pub slug: String,
    /// Shown on the spawn page. Default: the slug.
    pub display_name: String,
    /// Shown under the name. Default: empty.
    pub description: String,
    /// Chosen when the user chooses none. Default: false; with no default profile, the first.
    pub default: bool,
    /// Pods of this profile kept started ahead of demand, claimed at spawn. Default: 0 (none).
    pub warm_pool: u32,
    /// What this profile changes in the base `pod`.
    pub pod: PodConfig,
}

impl Profile {
    /// The name shown to users.
    pub fn title(&self) -> &str {
        if self.display_name.is_empty() {
            &self.slug
        } else {
            &self.display_name
        }
    }
}

impl PodConfig {
    /// `self` with `over` laid on it: `over`'s scalars and lists replace, its maps merge in.
    pub fn overlaid(&self, over: &PodConfig) -> PodConfig {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        fn merge(
            base: &Option<BTreeMap<String, String>>,
            over: &Option<BTreeMap<String, String>>,
        ) -> Option<BTreeMap<String, String>> {
            match (base, over) {
                (Some(b), Some(o)) => {
                    let mut m = b.clone();
                    m.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Some(m)
                }
                _ => pick(base, over),
            }
        }
        PodConfig {
            image: pick(&self.image, &over.image),
            image_pull_policy: pick(&self.image_pull_policy, &over.image_pull_policy),
            image_pull_secrets: pick(&self.image_pull_secrets, &over.image_pull_secrets),
            command: pick(&self.command, &over.command),
            args: pick(&self.args, &over.args),
            port: pick(&self.port, &over.port),
            working_dir: pick(&self.working_dir, &over.working_dir),
            cpu_guarantee: pick(&self.cpu_guarantee, &over.cpu_guarantee),
            cpu_limit: pick(&self.cpu_limit, &over.cpu_limit),
            mem_guarantee: pick(&self.mem_guarantee, &over.mem_guarantee),
            mem_limit: pick(&self.mem_limit, &over.mem_limit),
            extra_resource_guarantees: merge(&self.extra_resource_guarantees, &over.extra_resource_guarantees),
            extra_resource_limits: merge(&self.extra_resource_limits, &over.extra_resource_limits),
            node_selector: merge(&self.node_selector, &over.node_selector),
            tolerations: pick(&self.tolerations, &over.tolerations),
            affinity: pick(&self.affinity, &over.affinity),
            scheduler_name: pick(&self.scheduler_name, &over.scheduler_name),
            priority_class_name: pick(&self.priority_class_name, &over.priority_class_name),
            service_account: pick(&self.service_account, &over.service_account),
            automount_service_account_token: pick(
                &self.automount_service_account_token,
                &over.automount_service_account_token,
            ),
            uid: pick(&self.uid, &over.uid),
            gid: pick(&self.gid, &over.gid),
            fs_gid: pick(&self.fs_gid, &over.fs_gid),
            pod_security_context: pick(&self.pod_security_context, &over.pod_security_context),
            container_security_context: pick(&self.container_security_context, &over.container_security_context),
            extra_labels: merge(&self.extra_labels, &over.extra_labels),
            extra_annotations: merge(&self.extra_annotations, &over.extra_annotations),
            environment: merge(&self.environment, &over.environment),
            storage: pick(&self.storage, &over.storage),
            volumes: pick(&self.volumes, &over.volumes),
            volume_mounts: pick(&self.volume_mounts, &over.volume_mounts),
        }
    }
}

impl KubernetesConfig {
    /// The profile for `slug`, or the default one (the one marked `default`, else the first)
    /// when `slug` is `None`. `Err` names the offered slugs when `slug` is unknown.
    pub fn profile(&self, slug: Option<&str>) -> Result<Option<&Profile>, String> {
        match slug {
            Some(s) => self.profiles.iter().find(|p| p.slug == s).map(Some).ok_or_else(|| {
                let known: Vec<&str> = self.profiles.iter().map(|p| p.slug.as_str()).collect();
                if known.is_empty() {
                    format!("no profiles are configured, so profile {s:?} cannot be chosen")
                } else {
                    format!("unknown profile {s:?}; choose one of {}", known.join(", "))
                }
            }),
            None => Ok(self.profiles.iter().find(|p| p.default).or(self.profiles.first())),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::invalid;
        if !is_dns_label(&self.namespace) {
            return Err(invalid(
                "kubernetes.namespace",
                self.namespace.clone(),
                "a DNS label: lowercase letters, digits and '-', at most 63 characters",
            ));
        }
        for (setting, template) in [
            ("kubernetes.pod_name_template", &self.pod_name_template),
            (
                "kubernetes.pod.storage.name_template",
                &self.pod.storage.clone().unwrap_or_default().name_template,
            ),
        ] {
            if !template.contains("{user}") {
                return Err(invalid(
                    setting,
                    template.clone(),
                    "a template containing {user} (and {server} or {-server} for named servers)",
                ));
            }
        }
        if !self.pod_name_template.contains("{server}") && !self.pod_name_template.contains("{-server}") {
            // Without it, a user's named servers would all want the same pod.
            return Err(invalid(
                "kubernetes.pod_name_template",
                self.pod_name_template.clone(),
                "a template containing {server} or {-server} as well as {user}",
            ));
        }
        for (setting, value) in [
            ("kubernetes.start_timeout_secs", self.start_timeout_secs),
            ("kubernetes.watch_stale_secs", self.watch_stale_secs),
            ("kubernetes.api_concurrency", self.api_concurrency as u64),
        ] {
            if value == 0 {
                return Err(invalid(setting, "0".into(), "at least 1"));
            }
        }
        if self.launcher_command.is_empty() && self.profiles.iter().any(|p| p.warm_pool > 0) {
            return Err(invalid(
                "kubernetes.launcher_command",
                "[]".into(),
                "the launcher program, needed by warm pools",
            ));
        }
        validate_pod(&self.pod, "kubernetes.pod")?;
        let mut defaults = 0;
        for (i, profile) in self.profiles.iter().enumerate() {
            if !is_dns_label(&profile.slug) || profile.slug.len() > 40 {
                return Err(invalid(
                    "kubernetes.profiles.slug",
                    format!("profile #{}: {:?}", i + 1, profile.slug),
                    "lowercase letters, digits and '-', at most 40 characters",
                ));
            }
            if self.profiles[..i].iter().any(|p| p.slug == profile.slug) {
                return Err(invalid(
                    "kubernetes.profiles.slug",
                    profile.slug.clone(),
                    "a slug used by one profile only",
                ));
            }
            defaults += usize::from(profile.default);
            let pod = self.pod.overlaid(&profile.pod);
            let per_user_volume = pod.storage.as_ref().is_some_and(|s| s.enabled)
                || pod.volumes.iter().flatten().any(|v| {
                    let text = format!("{v:?}");
                    text.contains("{user}") || text.contains("{server}")
                });
            if profile.warm_pool > 0 && per_user_volume {
                // A warm pod starts before its user is known: it cannot mount the user's volume,
                // and a user's files written to it would be lost with the pod.
                return Err(invalid(
                    "kubernetes.profiles.warm_pool",
                    format!("profile {}: {}", profile.slug, profile.warm_pool),
                    "0 for a profile with storage.enabled or volumes naming {user} or {server} (set storage = { enabled = false } and volumes = [] in the profile's pod to pool it)",
                ));
            }
            validate_pod(&self.pod.overlaid(&profile.pod), "kubernetes.profiles.pod").map_err(|e| match e {
                ConfigError::Invalid {
                    setting,
                    value,
                    expected,
                } => ConfigError::Invalid {
                    setting,
                    value: format!("profile {}: {value}", profile.slug),
                    expected,
                },
                other => other,
            })?;
        }
        if defaults > 1 {
            return Err(ConfigError::Conflict(
                "kubernetes.profiles: more than one profile has default = true",
            ));
        }
        Ok(())
    }
}

/// Checks the parts of a pod Kubernetes would refuse, so the mistake shows at start-up.
fn validate_pod(pod: &PodConfig, table: &'static str) -> Result<(), ConfigError> {
    let invalid = ConfigError::invalid;
    // `table` is one of two statics; the keys below are spelled out for each so that the error
    // names the full key without allocating a 'static string.
    let base = table == "kubernetes.pod";
    let key = |base_key: &'static str, profile_key: &'static str| if base { base_key } else { profile_key };
    if pod.command.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(invalid(
            key("kubernetes.pod.command", "kubernetes.profiles.pod.command"),
            "[]".into(),
            "a program and its arguments",
        ));
    }
    if pod.port == Some(0) {
        return Err(invalid(
            key("kubernetes.pod.port", "kubernetes.profiles.pod.port"),
            "0".into(),
            "a port from 1 to 65535",
        ));
    }
    for (setting, cores) in [
        (
            key("kubernetes.pod.cpu_guarantee", "kubernetes.profiles.pod.cpu_guarantee"),
            pod.cpu_guarantee,
        ),
        (
            key("kubernetes.pod.cpu_limit", "kubernetes.profiles.pod.cpu_limit"),
            pod.cpu_limit,
        ),
    ] {
        if let Some(c) = cores
            && !(c.is_finite() && c > 0.0)
        {
            return Err(invalid(setting, c.to_string(), "a positive number of cores, e.g. 0.5"));
        }
    }
    let mut quantities: Vec<(&'static str, &str)> = Vec::new();
    if let Some(q) = &pod.mem_guarantee {
        quantities.push((
            key("kubernetes.pod.mem_guarantee", "kubernetes.profiles.pod.mem_guarantee"),
            q,
        ));
    }
    if let Some(q) = &pod.mem_limit {
        quantities.push((key("kubernetes.pod.mem_limit", "kubernetes.profiles.pod.mem_limit"), q));
    }
    for q in pod.extra_resource_guarantees.iter().flat_map(|m| m.values()) {
        quantities.push((
            key(
                "kubernetes.pod.extra_resource_guarantees",
                "kubernetes.profiles.pod.extra_resource_guarantees",
            ),
            q,
        ));
    }
    for q in pod.extra_resource_limits.iter().flat_map(|m| m.values()) {
        quantities.push((
            key(
                "kubernetes.pod.extra_resource_limits",
                "kubernetes.profiles.pod.extra_resource_limits",
            ),
            q,
        ));
    }
    if let Some(storage) = &pod.storage {
        quantities.push((
            key(
                "kubernetes.pod.storage.capacity",
                "kubernetes.profiles.pod.storage.capacity",
            ),
            &storage.capacity,
        ));
        if storage.access_modes.is_empty() {
            return Err(invalid(
                key(
                    "kubernetes.pod.storage.access_modes",
                    "kubernetes.profiles.pod.storage.access_modes",
                ),
                "[]".into(),
                "at least one of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod",
            ));
        }
        if !storage.mount_path.starts_with('/') {
            return Err(invalid(
                key(
                    "kubernetes.pod.storage.mount_path",
                    "kubernetes.profiles.pod.storage.mount_path",
                ),
                storage.mount_path.clone(),
                "an absolute path",
            ));
        }
    }
    for (setting, q) in quantities {
        if !is_quantity(q) {
            return Err(invalid(
                setting,
                q.to_owned(),
                "a Kubernetes quantity: a number with an optional suffix (Ki, Mi, Gi, Ti, k, M, G, T, m)",
            ));
        }
    }
    if let Some(policy) = &pod.image_pull_policy
        && !["Always", "IfNotPresent", "Never"].contains(&policy.as_str())
    {
        return Err(invalid(
            key(
                "kubernetes.pod.image_pull_policy",
                "kubernetes.profiles.pod.image_pull_policy",
            ),
            policy.clone(),
            "one of Always, IfNotPresent, Never",
        ));
    }
    Ok(())
}

/// An RFC 1123 label, as namespaces and profile slugs must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The suffixes of a Kubernetes quantity and what each multiplies by, binary ones first so that
/// `Mi` is not read as `M` followed by garbage.
const QUANTITY_SUFFIXES: [(&str, f64); 15] = [
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// A Kubernetes resource quantity: a decimal number and an optional SI or binary suffix.
pub fn is_quantity(s: &str) -> bool {
    quantity_value(s).is_some()
}

/// The quantity's value in base units (bytes for memory): `512Mi` is 536,870,912.
pub fn quantity_value(s: &str) -> Option<f64> {
    let (number, scale) = QUANTITY_SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| Some((s.strip_suffix(suffix)?, *scale)))
        .unwrap_or((s, 1.0));
    let well_formed = number.bytes().filter(|b| *b == b'.').count() <= 1
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().any(|b| b.is_ascii_digit());
    let value: f64 = number.parse().ok().filter(|_| well_formed)?;
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KubernetesConfig, ConfigError> {
        let config: KubernetesConfig = toml::from_str(text).map_err(|e| ConfigError::File {
            path: "t".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn empty_table_gets_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.namespace, "default");
        assert_eq!(c.pod_name_template, "jupyter-{user}{-server}");
        assert_eq!(c.start_timeout_secs, 300);
        assert_eq!(c.stop_grace_secs, 30);
        assert_eq!(c.api_concurrency, 16);
        assert_eq!(c.api_retries, 5);
        assert_eq!(c.watch_stale_secs, 300);
        assert!(!c.service_per_pod);
        assert!(c.profiles.is_empty());
        let storage = StorageConfig::default();
        assert_eq!(storage.capacity, "10Gi");
        assert_eq!(storage.name_template, "claim-{user}{-server}");
        assert_eq!(storage.mount_path, "/home/jovyan");
    }

    #[test]
    fn a_full_config_reads_as_written() {
        let c = parse(
            r#"
namespace = "jhub"
[pod]
image = "jupyter/scipy-notebook:2024"
cpu_guarantee = 0.5
mem_limit = "2Gi"
node_selector = { "hub.jupyter.org/node-purpose" = "user" }
tolerations = [{ key = "hub.jupyter.org/dedicated", operator = "Equal", value = "user", effect = "NoSchedule" }]
volumes = [{ name = "shared", nfs = { server = "nfs.example", path = "/export/shared" } }]
volume_mounts = [{ name = "shared", mountPath = "/shared" }]
[pod.storage]
enabled = true
class = "standard"

[[profiles]]
slug = "gpu"
display_name = "GPU"
warm_pool = 2
[profiles.pod]
image = "cuda-notebook"
extra_resource_limits = { "nvidia.com/gpu" = "1" }
node_selector = { gpu = "true" }
storage = { enabled = false }
"#,
        )
        .unwrap();
        assert_eq!(c.namespace, "jhub");
        let gpu = c.profile(Some("gpu")).unwrap().unwrap();
        assert_eq!(gpu.title(), "GPU");
        let pod = c.pod.overlaid(&gpu.pod);
        assert_eq!(pod.image.as_deref(), Some("cuda-notebook"));
        assert_eq!(pod.cpu_guarantee, Some(0.5));
        let selector = pod.node_selector.unwrap();
        assert_eq!(selector.len(), 2, "maps merge: {selector:?}");
        assert!(!pod.storage.unwrap().enabled, "storage is replaced whole");
        assert!(c.pod.storage.as_ref().unwrap().enabled);
        assert_eq!(c.profile(None).unwrap().unwrap().slug, "gpu");
        assert!(c.profile(Some("cpu")).unwrap_err().contains("gpu"));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("namespce = \"x\"", "namespce"),
            ("namespace = \"Jhub\"", "kubernetes.namespace"),
            ("pod_name_template = \"jupyter\"", "kubernetes.pod_name_template"),
            ("pod_name_template = \"jupyter-{user}\"", "{-server}"),
            ("start_timeout_secs = 0", "kubernetes.start_timeout_secs"),
            ("[pod]\ncommand = []", "kubernetes.pod.command"),
            ("[pod]\ncpu_limit = -1.0", "kubernetes.pod.cpu_limit"),
            ("[pod]\nmem_limit = \"2 GB\"", "kubernetes.pod.mem_limit"),
            ("[pod]\nimage_pull_policy = \"always\"", "image_pull_policy"),
            (
                "[pod]\nextra_resource_limits = { \"nvidia.com/gpu\" = \"one\" }",
                "extra_resource_limits",
            ),
            ("[pod.storage]\ncapacity = \"lots\"", "kubernetes.pod.storage.capacity"),
            ("[pod.storage]\nmount_path = \"home\"", "mount_path"),
            ("[pod.storage]\nsize = \"1Gi\"", "size"),
            ("[[profiles]]\nslug = \"Big One\"", "kubernetes.profiles.slug"),
            (
                "[[profiles]]\nslug = \"a\"\n[[profiles]]\nslug = \"a\"",
                "used by one profile",
            ),
            (
                "[[profiles]]\nslug = \"a\"\ndefault = true\n[[profiles]]\nslug = \"b\"\ndefault = true",
                "more than one profile",
            ),
            (
                "[[profiles]]\nslug = \"a\"\n[profiles.pod]\nmem_limit = \"x\"",
                "profile a",
            ),
            (
                "[pod.storage]\nenabled = true\n[[profiles]]\nslug = \"a\"\nwarm_pool = 1",
                "kubernetes.profiles.warm_pool",
            ),
            (
                "[pod]\nvolumes = [{ name = \"h\", nfs = { server = \"n\", path = \"/h/{user}\" } }]\n[[profiles]]\nslug = \"a\"\nwarm_pool = 1",
                "kubernetes.profiles.warm_pool",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}, wanted {needle:?}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "0.5", "512Mi", "1G", "100m", "10Gi", "1.5Gi"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "1 Gi", "1GB", "-1", "1..2", "one", "inf", "1e9", "."] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert_eq!(quantity_value("512Mi"), Some(536_870_912.0));
        assert_eq!(quantity_value("1.5Gi"), Some(1_610_612_736.0));
        assert_eq!(quantity_value("2G"), Some(2e9));
        assert_eq!(quantity_value("250m"), Some(0.25));
        assert_eq!(quantity_value("7"), Some(7.0));
    }
}
