//! The hub configuration shipped in `deploy/kubernetes/hub-config.yaml` (the ConfigMap's
//! `edgehub.toml: |` block) parses and validates with the real parser, so the manifests cannot
//! drift from the keys the hub accepts.

use config::{HubConfig, ProxyReplicas, SpawnerClass};

/// The literal block under `key: |`: the lines indented deeper than the key, with the block's
/// indentation removed (blank lines kept).
fn block_under(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().expect("the ConfigMap has the key");
    let key_indent = header.len() - header.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let text: Vec<&str> = body.iter().map(|l| l.get(indent..).unwrap_or("")).collect();
    text.join("\n").trim_end().to_owned()
}

#[test]
fn the_kubernetes_deployments_hub_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/hub-config.yaml");
    let yaml = std::fs::read_to_string(path).unwrap();
    let text = block_under(&yaml, "edgehub.toml");
    let config: HubConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.validate().unwrap();

    assert_eq!(config.spawner_class, SpawnerClass::Kubernetes);
    // The proxies share one route table in Redis (edgeproxy.yaml), so each change goes once to
    // the load-balanced Service edgeproxy-api: "dns" would send it to every pod (and needs a
    // headless Service, which edgeproxy-api no longer is).
    assert_eq!(config.proxy.replicas, ProxyReplicas::One);
    assert!(
        text.contains("\nreplicas = \"one\"\n"),
        "replicas is written out, for the comment above it"
    );
    assert_eq!(config.proxy.api_url.as_deref(), Some("http://edgeproxy-api:8001"));
    // The route store belongs to the external edgeproxy replicas (--storage-url there); the
    // hub's storage_* keys configure only the proxy `edgehub up` embeds.
    assert_eq!(config.proxy.storage_backend, None);
    assert_eq!(config.proxy.storage_url, None);
    let kubernetes = config.kubernetes.as_ref().unwrap();
    assert_eq!(kubernetes.namespace, "edgehub");
    let slugs: Vec<&str> = kubernetes.profiles.iter().map(|p| p.slug.as_str()).collect();
    assert_eq!(slugs, ["standard", "gpu"]);
    assert_eq!(kubernetes.profiles[0].warm_pool, 2);
}

#[test]
fn the_block_ends_where_the_indentation_does() {
    let yaml = "data:\n  edgehub.toml: |\n    a = 1\n\n    [b]\n    c = 2\nother: x\n";
    assert_eq!(block_under(yaml, "edgehub.toml"), "a = 1\n\n[b]\nc = 2");
}
