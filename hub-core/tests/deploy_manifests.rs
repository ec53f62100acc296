//! The Kubernetes deployment (`deploy/kubernetes/`), checked as far as it can be without a
//! cluster: every manifest validates against the Kubernetes 1.33 API's own OpenAPI schemas, strictly
//! (an unknown or misspelt field is an error, as `kubectl apply --validate=strict` makes it), and
//! the kustomization applies every manifest there is. kubernetes-validate comes from the test venv
//! (scripts/ensure-pyenv.sh). The hub configuration inside the ConfigMap is checked by
//! config/tests/deploy_config.rs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest Kubernetes the spawner's API types target (k8s-openapi's `v1_33`).
const KUBERNETES: &str = "1.33";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// The manifests, kustomization.yaml aside (kustomize's own format, which has no API schema).
fn manifests() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    found.sort();
    assert!(found.len() >= 5, "the manifests: {found:?}");
    found
}

/// kubernetes-validate's verdict on `files`: success, and what it printed.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(support::pyenv_bin("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_manifest_matches_the_kubernetes_api_schema() {
    let (ok, text) = validate(&manifests());
    assert!(ok, "{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn the_schema_check_catches_a_misspelt_field() {
    // The same check on a copy of the edgeproxy Deployment with `replicas` misspelt: it must fail,
    // or the test above would pass on anything.
    let original = std::fs::read_to_string(deploy_dir().join("edgeproxy.yaml")).unwrap();
    assert!(original.contains("\n  replicas: "), "the Deployment sets replicas");
    let broken = original.replacen("\n  replicas: ", "\n  replica: ", 1);
    let dir = support::temp_dir("deploy-typo");
    let path = dir.join("edgeproxy.yaml");
    std::fs::write(&path, broken).unwrap();
    let (ok, text) = validate(&[path]);
    assert!(!ok, "a misspelt field passed: {text}");
    assert!(text.contains("'replica' was unexpected"), "{text}");
}

#[test]
fn the_kustomization_applies_every_manifest() {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "resources:")
        .skip(1)
        .take_while(|l| l.starts_with("  ") || l.trim().is_empty())
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    let mut files: Vec<String> = manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, files,
        "kustomization.yaml resources vs the files in deploy/kubernetes"
    );
    assert_eq!(listed.first(), Some(&"namespace.yaml"), "the namespace comes first");
}

/// The items of the YAML list under `key:` (one `- item` per line, comments skipped), from the
/// first occurrence of `key:` on.
fn list_under(yaml: &str, key: &str) -> Vec<String> {
    yaml.lines()
        .skip_while(|l| l.trim() != format!("{key}:"))
        .skip(1)
        .filter(|l| !l.trim_start().starts_with('#'))
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().to_owned())
        .collect()
}

#[test]
fn the_proxies_share_the_route_store_and_are_ready_when_it_is_loaded() {
    use clap::Parser;
    let yaml = std::fs::read_to_string(deploy_dir().join("edgeproxy.yaml")).unwrap();
    let command = list_under(&yaml, "command");
    assert_eq!(command.first().map(String::as_str), Some("edgeproxy"), "{command:?}");
    // The arguments as edgeproxy itself reads them (but the auth file, which is in a ConfigMap).
    let args = command.iter().filter(|a| !a.starts_with("--auth-config"));
    let cli = proxy::cli::Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
    let parsed = cli.into_config(Some("token".into())).unwrap();
    match &parsed.config.storage {
        config::RouteStorage::Redis(store) => assert_eq!(store.url, "redis://edgehub-redis:6379/1"),
        other => panic!("the proxies keep their routes in {other:?}"),
    }
    // Readiness is "the table is loaded", on the admin port; the admin Service is not headless
    // (any replica takes a write for all).
    let readiness = yaml.split("readinessProbe:").nth(1).expect("a readiness probe");
    let probe: Vec<&str> = readiness.lines().take(4).map(str::trim).collect();
    assert!(
        probe.contains(&"path: /ready") && probe.contains(&"port: api"),
        "{probe:?}"
    );
    assert!(
        !yaml.contains("clusterIP: None"),
        "edgeproxy-api is an ordinary Service"
    );
    let redis = std::fs::read_to_string(deploy_dir().join("redis.yaml")).unwrap();
    assert!(
        redis.contains("\"--appendonly\", \"yes\""),
        "Redis keeps the routes across restarts"
    );
}
