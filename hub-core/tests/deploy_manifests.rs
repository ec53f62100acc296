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
//! the hub writes each change once to a load-balanced Service in front of them. The hub runs as
//! two replicas that roll one at a time (never fewer than two ready, a disruption budget of one,
//! time to finish their requests when stopped), their state in the PostgreSQL of postgres.yaml,
//! reached by a URL whose password comes from a Secret of secrets.yaml.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use config::{HubConfig, Listen, ProxyReplicas, RouteStorage, StateConfig};
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
    for file in [
        "secrets.yaml",
        "redis.yaml",
        "postgres.yaml",
        "hub-config.yaml",
        "hub.yaml",
        "edgeproxy.yaml",
    ] {
        assert!(
            listed.contains(&file),
            "{file} is not in kustomization.yaml: {listed:?}"
        );
    }
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
    let hub = hub_config();
    assert_eq!(hub.proxy.replicas, ProxyReplicas::One, "not replicas = \"dns\"");
    let (api_host, port) = host_port(hub.proxy.api_url.as_deref().expect("api_url"));
    assert_eq!(api_host, "edgeproxy-api");
    assert_service_reaches(&proxy_docs, &api_host, port, pod, u64::from(api_port));

    // API tokens are checked with the hub, through the Service the hub's servers use.
    let hub_tokens = proxy
        .auth
        .as_ref()
        .and_then(|a| a.hub_tokens.as_ref())
        .expect("auth.toml has [hub_tokens]");
    let hub_url = hub.hub_connect_url.as_deref().expect("hub_connect_url");
    assert_eq!(hub_tokens.url, format!("{hub_url}/hub/api/user"));
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

/// The hub's Deployment in hub.yaml, its pod template and its one container.
fn hub_deployment(docs: &[Value]) -> (&Value, &Value, &Value) {
    let deployment = object(docs, "Deployment", "edgehub-hub");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["name"], "hub");
    (deployment, pod, container)
}

/// The hub's `edgehub.toml`, from the ConfigMap of hub-config.yaml.
fn hub_config() -> HubConfig {
    let docs = documents("hub-config.yaml");
    let text = object(&docs, "ConfigMap", "edgehub-config")["data"]["edgehub.toml"]
        .as_str()
        .expect("edgehub.toml");
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
}

/// `selector.matchLabels` matches the labels of `pod_template`.
fn selects(selector: &Value, pod_template: &Value) -> bool {
    let labels = &pod_template["metadata"]["labels"];
    selector["matchLabels"]
        .as_object()
        .is_some_and(|wanted| !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v))
}

/// An `IntOrString` of a rolling update (`0`, `1`, `"25%"`) as a count of `replicas`, rounded as
/// Kubernetes rounds `maxUnavailable` (down) when `round_up` is false and `maxSurge` (up) when
/// true.
fn count_of(value: &Value, replicas: u64, round_up: bool) -> u64 {
    if let Some(n) = value.as_u64() {
        return n;
    }
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a count or percentage: {value}"));
    let percent: u64 = text.strip_suffix('%').expect("a percentage").parse().unwrap();
    let scaled = replicas * percent;
    if round_up { scaled.div_ceil(100) } else { scaled / 100 }
}

#[test]
fn the_hub_runs_two_replicas_that_roll_one_at_a_time_and_finish_their_requests() {
    let docs = documents("hub.yaml");
    let (deployment, pod, container) = hub_deployment(&docs);
    let spec = &deployment["spec"];
    let replicas = spec["replicas"].as_u64().expect("replicas");
    assert_eq!(replicas, 2, "two active hub replicas");

    // An upgrade starts a new replica and waits for it to be ready before stopping an old one.
    assert_eq!(spec["strategy"]["type"], "RollingUpdate", "{}", spec["strategy"]);
    let rolling = &spec["strategy"]["rollingUpdate"];
    assert_eq!(count_of(&rolling["maxUnavailable"], replicas, false), 0, "{rolling}");
    assert!(count_of(&rolling["maxSurge"], replicas, true) >= 1, "{rolling}");

    // Nothing on disk: a ReadWriteOnce volume shared by the replicas is what made it Recreate.
    let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    for volume in &volumes {
        assert!(
            volume["persistentVolumeClaim"].is_null(),
            "the hub mounts a PVC, which two replicas on different nodes cannot share: {volume}"
        );
    }

    // Ready = the hub answers GET /hub/health on the port its Service sends to.
    let ready = &container["readinessProbe"]["httpGet"];
    assert_eq!(ready["path"], "/hub/health", "{}", container["readinessProbe"]);
    let hub_port = container_port(container, &ready["port"]);
    assert_eq!(hub_port, 8081);
    let hub = hub_config();
    let hub_bind: std::net::SocketAddr = hub.hub_bind.parse().expect("hub_bind");
    assert_eq!(u64::from(hub_bind.port()), hub_port, "hub_bind vs the probed port");
    // The proxies and the user servers reach whichever replica is ready, through the Service.
    let (service, port) = host_port(hub.hub_connect_url.as_deref().expect("hub_connect_url"));
    assert_eq!(service, "edgehub-hub");
    assert_service_reaches(&docs, &service, port, pod, hub_port);
    let proxy_docs = documents("edgeproxy.yaml");
    let proxy = &object(&proxy_docs, "Deployment", "edgeproxy")["spec"]["template"]["spec"]["containers"][0];
    let command = strings(&proxy["command"]);
    assert!(
        command.contains(&format!("--default-target=http://{service}:{port}")),
        "the proxies send /hub/ to the Service: {command:?}"
    );

    // Stopping: the preStop sleep keeps the hub serving while the endpoints' removal reaches the
    // proxies, then SIGTERM: it drains what it took (10 s at most, web::DRAIN) and hands its
    // spawns and leases over (database calls, each answered within ANSWER_WITHIN or failed),
    // all before the kubelet's SIGKILL.
    let pre_stop = strings(&container["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop[0], "sleep", "{pre_stop:?}");
    let pause: u64 = pre_stop[1].parse().expect("seconds");
    assert!(pause >= 5, "a {pause} s preStop");
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let drain = 10;
    let hand_over = hub_core::store::postgres::ANSWER_WITHIN.as_secs();
    assert!(
        grace >= pause + drain + hand_over,
        "terminationGracePeriodSeconds {grace} < preStop {pause} + drain {drain} + hand-over {hand_over}"
    );

    // Spread over nodes where there are several; preferred, so that one node still runs both.
    let anti = &pod["spec"]["affinity"]["podAntiAffinity"];
    assert!(
        anti["requiredDuringSchedulingIgnoredDuringExecution"].is_null(),
        "{anti}"
    );
    let terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .expect("{anti}");
    assert!(
        terms.iter().any(|t| {
            let term = &t["podAffinityTerm"];
            term["topologyKey"] == "kubernetes.io/hostname" && selects(&term["labelSelector"], pod)
        }),
        "no preferred anti-affinity of the hub pods across nodes: {anti}"
    );

    // Node drains evict one hub at a time, never the last ready one.
    let budgets: Vec<Value> = manifests()
        .iter()
        .flat_map(|p| documents(p.file_name().unwrap().to_str().unwrap()))
        .filter(|d| d["kind"] == "PodDisruptionBudget" && selects(&d["spec"]["selector"], pod))
        .collect();
    assert_eq!(
        budgets.len(),
        1,
        "one PodDisruptionBudget selects the hub pods: {budgets:?}"
    );
    let budget = &budgets[0]["spec"];
    assert_eq!(budget["minAvailable"], 1, "{budget}");
    assert!(budget["maxUnavailable"].is_null(), "{budget}");
}

/// The parts of `postgres://user:password@host:port/db`.
struct PostgresUrl {
    user: String,
    password: String,
    host: String,
    port: u64,
    database: String,
}

fn postgres_url(url: &str) -> PostgresUrl {
    assert!(StateConfig::is_postgres(url), "not a PostgreSQL URL: {url}");
    let rest = url.split_once("://").unwrap().1;
    let (userinfo, rest) = rest.rsplit_once('@').expect("user and password in the URL");
    let (user, password) = userinfo.split_once(':').expect("a password in the URL");
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let (host, port) = authority.rsplit_once(':').expect("a port in the URL");
    PostgresUrl {
        user: user.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port: port.parse().expect("a port"),
        database: path.split('?').next().unwrap().to_owned(),
    }
}

/// The value a Secret of secrets.yaml gives `secretKeyRef` (its `name` and `key`).
fn secret_value(secrets: &[Value], key_ref: &Value) -> String {
    let name = key_ref["name"].as_str().expect("secretKeyRef.name");
    let key = key_ref["key"].as_str().expect("secretKeyRef.key");
    let secret = object(secrets, "Secret", name);
    let value = &secret["stringData"][key];
    value
        .as_str()
        .unwrap_or_else(|| panic!("Secret {name} in secrets.yaml has no key {key}"))
        .to_owned()
}

/// The environment variable `name` of `container`, with `$(VAR)` references to variables set
/// earlier in its `env` expanded as the kubelet does, Secret values taken from secrets.yaml.
/// Also whether any of it came from a Secret.
fn resolved_env(container: &Value, name: &str, secrets: &[Value]) -> (String, bool) {
    let env = container["env"].as_array().expect("env");
    let mut known: Vec<(String, String, bool)> = Vec::new();
    for var in env {
        let var_name = var["name"].as_str().unwrap().to_owned();
        let (value, secret) = if let Some(key_ref) = var["valueFrom"]["secretKeyRef"].as_object() {
            (secret_value(secrets, &Value::Object(key_ref.clone())), true)
        } else if let Some(text) = var["value"].as_str() {
            let mut value = text.to_owned();
            let mut secret = false;
            for (other, other_value, other_secret) in &known {
                let reference = format!("$({other})");
                if value.contains(&reference) {
                    value = value.replace(&reference, other_value);
                    secret |= other_secret;
                }
            }
            assert!(
                !value.contains("$("),
                "{var_name} refers to a variable not set before it: {text}"
            );
            (value, secret)
        } else {
            panic!("{var_name}: neither a value nor a secretKeyRef: {var}")
        };
        if var_name == name {
            return (value, secret);
        }
        known.push((var_name, value, secret));
    }
    panic!("{name} is not in the container's env")
}

#[test]
fn the_hubs_share_their_state_in_the_postgres_of_the_deployment_with_its_password_from_a_secret() {
    let secrets = documents("secrets.yaml");
    let hub_docs = documents("hub.yaml");
    let (_, _, hub) = hub_deployment(&hub_docs);

    // No password in the ConfigMap: the URL is the environment's, which overrides `[state] url`.
    let config = hub_config();
    assert_eq!(
        config.state.url, None,
        "[state] url in hub-config.yaml: use EDGEHUB_STATE_URL"
    );
    let (url, from_secret) = resolved_env(hub, "EDGEHUB_STATE_URL", &secrets);
    assert!(from_secret, "EDGEHUB_STATE_URL takes nothing from a Secret");
    // As the hub reads it (EDGEHUB_STATE_URL sets state.url), it validates.
    let mut with_url = config.clone();
    with_url.state.url = Some(url.clone());
    with_url.validate().unwrap_or_else(|e| panic!("{e}"));
    let parts = postgres_url(&url);
    if let Some(literal) = hub["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "EDGEHUB_STATE_URL")
        .and_then(|v| v["value"].as_str())
    {
        let written = postgres_url(literal);
        assert!(
            written.password.starts_with("$(") && written.password.ends_with(')'),
            "the password is written into the manifest: {literal}"
        );
    }
    // The password goes into the URL as it is: the placeholder must not need escaping (and the
    // docs say to make the real one with `openssl rand -hex`).
    assert!(
        parts
            .password
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
        "the password would need percent-encoding in the URL"
    );

    // The host is the Service of postgres.yaml, in front of the StatefulSet's pods.
    let docs = documents("postgres.yaml");
    let statefulset = object(&docs, "StatefulSet", "edgehub-postgres");
    let pod = &statefulset["spec"]["template"];
    let postgres = &pod["spec"]["containers"][0];
    assert_eq!(parts.host, "edgehub-postgres");
    assert_service_reaches(&docs, &parts.host, parts.port, pod, 5432);
    let service = object(&docs, "Service", &parts.host);
    assert_ne!(service["spec"]["publishNotReadyAddresses"], true);

    // The user, database and password the image creates at its first start are the URL's.
    let env_value = |name: &str| {
        postgres["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not set in postgres.yaml"))
            .clone()
    };
    assert_eq!(env_value("POSTGRES_USER")["value"], parts.user.as_str());
    assert_eq!(env_value("POSTGRES_DB")["value"], parts.database.as_str());
    let password_ref = &env_value("POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"];
    assert!(password_ref.is_object(), "POSTGRES_PASSWORD is not from a Secret");
    assert_eq!(
        secret_value(&secrets, password_ref),
        parts.password,
        "the hub's password vs the database's"
    );
}

#[test]
fn postgres_keeps_its_data_on_a_volume_of_its_own_and_is_ready_once_it_takes_connections() {
    let docs = documents("postgres.yaml");
    let statefulset = object(&docs, "StatefulSet", "edgehub-postgres");
    let spec = &statefulset["spec"];
    assert_eq!(spec["replicas"], 1);
    let pod = &spec["template"];
    let service = spec["serviceName"].as_str().expect("serviceName");
    assert_service_reaches(&docs, service, 5432, pod, 5432);
    assert!(selects(&spec["selector"], pod));
    let container = &pod["spec"]["containers"][0];
    let image = container["image"].as_str().unwrap();
    assert!(image == "postgres:17" || image.starts_with("postgres:17."), "{image}");

    // The data: a claim per pod, mounted where the image keeps it (up to PostgreSQL 17), in a
    // subdirectory (PGDATA) so that a fresh filesystem's lost+found does not stop initdb.
    let claims = spec["volumeClaimTemplates"].as_array().expect("volumeClaimTemplates");
    assert_eq!(claims.len(), 1);
    let claim = claims[0]["metadata"]["name"].as_str().unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let data = mounts
        .iter()
        .find(|m| m["name"] == claim)
        .expect("the claim is mounted");
    assert_eq!(data["mountPath"], "/var/lib/postgresql/data");
    let pgdata = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "PGDATA")
        .and_then(|v| v["value"].as_str())
        .expect("PGDATA");
    assert!(pgdata.starts_with("/var/lib/postgresql/data/"), "{pgdata}");
    assert!(claims[0]["spec"]["resources"]["requests"]["storage"].is_string());

    // Ready when the server takes connections over TCP, as the hubs make them.
    let probe = strings(&container["readinessProbe"]["exec"]["command"]);
    assert_eq!(probe[0], "pg_isready", "{probe:?}");
    assert!(probe.iter().any(|a| a == "--host=127.0.0.1" || a == "-h"), "{probe:?}");

    let resources = &container["resources"];
    assert!(resources["requests"]["cpu"].is_string(), "{resources}");
    assert!(resources["requests"]["memory"].is_string(), "{resources}");
    assert!(resources["limits"]["memory"].is_string(), "{resources}");

    // The image's postgres user, not root; with a read-only root filesystem, what the server
    // writes outside its data (the socket directory, /tmp) is a volume.
    let security = &pod["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 999);
    assert_eq!(security["fsGroup"], 999);
    if container["securityContext"]["readOnlyRootFilesystem"] == true {
        for path in ["/var/run/postgresql", "/tmp"] {
            assert!(mounts.iter().any(|m| m["mountPath"] == path), "{path} is read-only");
        }
    }
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
}
