//! A container's environment and command line, with Kubernetes' rules: literal values,
//! `valueFrom.fieldRef` (the downward API), and `$(VAR)` expansion of earlier variables in env
//! values and of all of them in `command`/`args` (`$$` is a literal `$`; an undefined `$(X)`
//! stays as written).

use serde_json::Value;

use super::super::object;

/// Expands `$(NAME)` references with `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A `fieldRef.fieldPath` read from the pod (the kubelet's downward API).
pub fn field_ref(pod: &Value, path: &str) -> Option<String> {
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").and_then(|r| r.strip_suffix("']")))
            .map(str::to_string)
    };
    if let Some(key) = keyed("metadata.labels") {
        return pod
            .pointer("/metadata/labels")
            .and_then(|l| l.get(&key))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(key) = keyed("metadata.annotations") {
        return pod
            .pointer("/metadata/annotations")
            .and_then(|l| l.get(&key))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let pointer = match path {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" => "/metadata/namespace",
        "metadata.uid" => "/metadata/uid",
        "spec.nodeName" => "/spec/nodeName",
        "spec.serviceAccountName" => "/spec/serviceAccountName",
        "status.podIP" | "status.podIPs" => "/status/podIP",
        "status.hostIP" | "status.hostIPs" => "/status/hostIP",
        _ => return None,
    };
    Some(object::str_at(pod, pointer).to_string())
}

/// The container's env entries in order, each value resolved and expanded against the ones
/// before it. Unsupported sources (`configMapKeyRef`, `secretKeyRef`, `resourceFieldRef`) read
/// as empty.
pub fn container_env(pod: &Value, container: &Value) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(value) = entry.get("value").and_then(Value::as_str) {
            let earlier = env.clone();
            let lookup = move |n: &str| earlier.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            expand(value, &lookup)
        } else if let Some(path) = entry.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
            field_ref(pod, path).unwrap_or_default()
        } else {
            String::new()
        };
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), value));
    }
    env
}

/// `command` + `args` (or `args` alone when there is no command: the image's entrypoint is not
/// known here, so the first arg is taken as the program), expanded against the environment.
pub fn command_line(container: &Value, env: &[(String, String)]) -> Vec<String> {
    let strings = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let lookup = |n: &str| env.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    strings("command")
        .into_iter()
        .chain(strings("args"))
        .map(|s| expand(&s, &lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes() {
        let lookup = |n: &str| match n {
            "A" => Some("a".to_string()),
            "POD_IP" => Some("127.1.0.2".to_string()),
            _ => None,
        };
        let cases = [
            ("$(A)", "a"),
            ("x$(A)y$(A)", "xaya"),
            ("$$(A)", "$(A)"),
            ("$$", "$"),
            ("$(UNSET)", "$(UNSET)"),
            ("--bind $(POD_IP)", "--bind 127.1.0.2"),
            ("$(A", "$(A"),
            ("cost $5", "cost $5"),
            ("end$", "end$"),
        ];
        for (text, expected) in cases {
            assert_eq!(expand(text, &lookup), expected, "{text:?}");
        }
    }

    #[test]
    fn env_resolves_field_refs_and_earlier_vars() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}, "annotations": {"a.io/x": "1"}},
            "spec": {"nodeName": "node-1"},
            "status": {"podIP": "127.9.0.1"},
        });
        let container = json!({"env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(POD_IP):8888/$(LATER)"},
            {"name": "LATER", "value": "x"},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a.io/x']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ]});
        let env = container_env(&pod, &container);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_IP"), Some("127.9.0.1"));
        assert_eq!(get("URL"), Some("http://127.9.0.1:8888/$(LATER)"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("ANN"), Some("1"));
        assert_eq!(get("NODE"), Some("node-1"));
        let argv = command_line(
            &json!({"command": ["python3", "-m", "http.server"], "args": ["--bind", "$(POD_IP)", "$(LATER)"]}),
            &env,
        );
        assert_eq!(argv, ["python3", "-m", "http.server", "--bind", "127.9.0.1", "x"]);
    }
}
