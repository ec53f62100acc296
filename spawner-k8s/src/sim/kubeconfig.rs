//! The kubeconfig a client uses to reach the simulator, exactly as it would a cluster: one
//! cluster (plain HTTP), one user with a bearer token (accepted, never checked), one context
//! whose default namespace is `default`.

/// The kubeconfig YAML for a server URL.
pub fn render(server_url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: edgehub-sim
  cluster:
    server: {server_url}
users:
- name: edgehub-sim
  user:
    token: edgehub-sim
contexts:
- name: edgehub-sim
  context:
    cluster: edgehub-sim
    user: edgehub-sim
    namespace: default
current-context: edgehub-sim
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn kube_reads_it_as_a_cluster_at_the_url() {
        let yaml = super::render("http://127.0.0.1:4242");
        let config = kube::config::Kubeconfig::from_yaml(&yaml).expect("valid kubeconfig");
        assert_eq!(config.current_context.as_deref(), Some("edgehub-sim"));
        let cluster = config.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:4242"));
    }
}
