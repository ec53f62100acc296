//! The Kubernetes deployment (`deploy/kubernetes/`), checked as far as it can be without a
//! cluster: every manifest validates against the Kubernetes 1.33 API's own OpenAPI schemas, strictly
//! (an unknown or misspelt field is an error, as `kubectl apply --validate=strict` makes it), and
//! the kustomization applies every manifest there is. kubernetes-validate comes from the test venv
//! (scripts/ensure-pyenv.sh). The hub configuration inside the ConfigMap is checked by
//! config/tests/deploy_config.rs.
//!
//! Then what makes the deployment work, read from the manifests (by PyYAML from the same venv):
//! the edgeproxy replicas share one route table in Redis (their command, parsed by edgeproxy's
//! own parser, selects the route store at the Redis Service), are ready once it is loaded, and
//! the hub writes each change once to a load-balanced Service in front of them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use config::{HubConfig, Listen, ProxyReplicas, RouteStorage};
use serde_json::Value;

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

/// Every document of a manifest, as JSON. PyYAML (a dependency of kubernetes-validate) reads
/// them: the workspace has no YAML parser of its own.
fn documents(file: &str) -> Vec<Value> {
    let out = Command::new(support::pyenv_bin("python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(deploy_dir().join(file))
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(list: &Value) -> Vec<String> {
    let items = list.as_array().unwrap_or_else(|| panic!("not a list: {list}"));
    items.iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
}

/// A probe's or Service's port (a number or a container port's name) as a number.
fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().unwrap_or_else(|| panic!("a port: {port}"));
    container["ports"]
        .as_array()
        .expect("the container's ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// How long a probe lets a container fail before the kubelet acts: Kubernetes' defaults where
/// unset (period 10 s, 3 failures, no initial delay).
fn probe_budget_secs(probe: &Value) -> u64 {
    let field = |name: &str, default: u64| probe[name].as_u64().unwrap_or(default);
    field("initialDelaySeconds", 0) + field("periodSeconds", 10) * field("failureThreshold", 3)
}

/// `http://host:port/…` or `redis://host:port/…`: host and port.
fn host_port(url: &str) -> (String, u64) {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split('/').next().unwrap();
    let (host, port) = authority.rsplit_once(':').expect("a port in the URL");
    (host.to_owned(), port.parse().unwrap())
}

/// The Service `name` in `docs` selects the pods of `pod_template` and maps `port` to
/// `container`'s port `target`.
fn assert_service_reaches(docs: &[Value], name: &str, port: u64, pod_template: &Value, target: u64) {
    let service = object(docs, "Service", name);
    let labels = &pod_template["metadata"]["labels"];
    let selector = service["spec"]["selector"].as_object().expect("a selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "Service {name} selects {key}={value}");
    }
    let container = &pod_template["spec"]["containers"][0];
    let ports = service["spec"]["ports"].as_array().unwrap();
    let mapped = ports
        .iter()
        .find(|p| p["port"].as_u64() == Some(port))
        .unwrap_or_else(|| panic!("Service {name} has no port {port}"));
    let target_port = if mapped["targetPort"].is_null() {
        &mapped["port"]
    } else {
        &mapped["targetPort"]
    };
    assert_eq!(
        container_port(container, target_port),
        target,
        "Service {name} port {port}"
    );
}

#[test]
fn the_proxies_share_one_route_table_in_redis_and_are_ready_once_it_is_loaded() {
    let proxy_docs = documents("edgeproxy.yaml");
    let deployment = object(&proxy_docs, "Deployment", "edgeproxy");
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap() >= 2,
        "several replicas"
    );
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["name"], "edgeproxy");

    // The command, as edgeproxy parses it, with the auth config of the ConfigMap edgeproxy-auth
    // (mounted at /etc/edgeproxy) copied to a scratch directory.
    let mut args = strings(&container["command"]);
    assert_eq!(args[0], "edgeproxy");
    let auth = object(&proxy_docs, "ConfigMap", "edgeproxy-auth")["data"]["auth.toml"]
        .as_str()
        .expect("auth.toml");
    let dir = support::temp_dir("deploy-edgeproxy-args");
    std::fs::write(dir.join("auth.toml"), auth).unwrap();
    for arg in &mut args {
        if let Some(path) = arg.strip_prefix("--auth-config=") {
            assert_eq!(path, "/etc/edgeproxy/auth.toml");
            *arg = format!("--auth-config={}", dir.join("auth.toml").display());
        }
    }
    // The flags are the whole route-store configuration: no EDGEPROXY_STORAGE_* beside them.
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap();
        assert!(
            !name.starts_with("EDGEPROXY_STORAGE_"),
            "{name} in the env: use the flags"
        );
    }
    let cli = proxy::cli::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{e}\n{args:?}"));
    let parsed = cli
        .into_config(Some("token".to_owned()))
        .unwrap_or_else(|e| panic!("{e}\n{args:?}"));
    let proxy = parsed.config;
    let RouteStorage::Redis(store) = &proxy.storage else {
        panic!("the route table is not in Redis: {:?}\n{args:?}", proxy.storage)
    };
    assert!(store.url.starts_with("redis://"), "{}", store.url);

    // That Redis is the Service of redis.yaml.
    let (redis_host, redis_port) = host_port(&store.url);
    let redis_docs = documents("redis.yaml");
    let redis_pod = &object(&redis_docs, "Deployment", &redis_host)["spec"]["template"];
    assert_service_reaches(&redis_docs, &redis_host, redis_port, redis_pod, 6379);

    // Ready = the table is loaded: GET /ready on the port edgeproxy serves its admin API on.
    let Listen::Tcp { port: api_port, .. } = proxy.api else {
        panic!("admin API on a socket: {:?}", proxy.api)
    };
    let Listen::Tcp { port: public_port, .. } = proxy.public else {
        panic!("public port on a socket: {:?}", proxy.public)
    };
    let ready = &container["readinessProbe"]["httpGet"];
    assert_eq!(
        ready["path"], "/ready",
        "readinessProbe: {}",
        container["readinessProbe"]
    );
    assert_eq!(container_port(container, &ready["port"]), u64::from(api_port));
    let live = &container["livenessProbe"]["httpGet"];
    assert_eq!(live["path"], "/_chp_healthz");
    assert_eq!(container_port(container, &live["port"]), u64::from(public_port));
    // /_chp_healthz answers 503 until the first load: a replica waiting for Redis at start must
    // not be restarted in a loop. The startup probe (or, without one, the liveness probe) gives
    // the first load minutes.
    let startup = &container["startupProbe"];
    let first_load = if startup.is_null() {
        probe_budget_secs(&container["livenessProbe"])
    } else {
        assert_eq!(startup["httpGet"]["path"], "/_chp_healthz");
        probe_budget_secs(startup)
    };
    assert!(first_load >= 300, "only {first_load} s for the first load of the table");

    // The admin API Service: load-balanced over the pods (any replica takes a write), not
    // headless, and only ready replicas behind it.
    let api = object(&proxy_docs, "Service", "edgeproxy-api");
    assert_ne!(api["spec"]["clusterIP"], "None", "edgeproxy-api is headless");
    assert_ne!(api["spec"]["publishNotReadyAddresses"], true);
    assert_service_reaches(&proxy_docs, "edgeproxy-api", 8001, pod, u64::from(api_port));
    assert_service_reaches(&proxy_docs, "edgeproxy", 80, pod, u64::from(public_port));

    // The hub writes each change once, to that Service.
    let hub_docs = documents("hub-config.yaml");
    let toml_text = object(&hub_docs, "ConfigMap", "edgehub-config")["data"]["edgehub.toml"]
        .as_str()
        .expect("edgehub.toml");
    let hub: HubConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hub.proxy.replicas, ProxyReplicas::One, "not replicas = \"dns\"");
    let (api_host, port) = host_port(hub.proxy.api_url.as_deref().expect("api_url"));
    assert_eq!(api_host, "edgeproxy-api");
    assert_service_reaches(&proxy_docs, &api_host, port, pod, u64::from(api_port));
}

#[test]
fn redis_keeps_the_route_table_across_a_container_restart_and_is_never_two_pods() {
    let docs = documents("redis.yaml");
    let deployment = object(&docs, "Deployment", "edgehub-redis");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]).join(" ");
    assert!(args.contains("--appendonly yes"), "{args}");
    assert!(args.contains("--appendfsync everysec"), "{args}");
    // The proxies follow session deletions and expiries (docs/auth.md).
    assert!(args.contains("--notify-keyspace-events Egx"), "{args}");
    // The append-only file goes to /data (the image's working directory), an emptyDir, which
    // outlives a restart of the container.
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/data")
        .expect("a volume at /data");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the volume");
    assert!(volume["emptyDir"].is_object(), "{volume}");
}
