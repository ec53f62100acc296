//! The scheduler: binds pending pods to nodes with the default scheduler's idea, filter then
//! score.
//!
//! Filter (a node must pass all): not cordoned; `nodeSelector` and required node affinity
//! (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`); every NoSchedule/NoExecute taint
//! tolerated; the pod's requests fit beside the requests of the pods already bound there (cpu,
//! memory, `nvidia.com/gpu`, any other extended resource, and the pod count). A container's
//! request defaults to its limit, as in Kubernetes.
//!
//! Score: least-requested plus balanced-allocation over cpu and memory (each 0–100), with the
//! scheduler's non-zero defaults (100m cpu, 200 MiB) for pods that request nothing, so such pods
//! still spread. Highest total wins; ties go to the first node by name (deterministic, where the
//! real scheduler picks at random).
//!
//! A pod that fits nowhere gets `PodScheduled=False/Unschedulable` and one `FailedScheduling`
//! event per distinct message; it is retried whenever pods, nodes or claims change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::events::{self, EventRecorder, EventType};
use super::object;
use super::quantity;
use super::registry::Registry;
use super::resources;
use super::store::{Change, ChangeKind};

/// Requested or allocatable amounts by resource name: cpu in millicores, everything else in
/// whole units.
pub type Resources = BTreeMap<String, u64>;

const DEFAULT_CPU_REQUEST_MILLIS: u64 = 100;
const DEFAULT_MEMORY_REQUEST_BYTES: u64 = 200 << 20;

/// A node as the scheduler sees it: what it offers and what is already asked of it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Value>,
    pub allocatable: Resources,
    pub requested: Resources,
    /// cpu and memory requested, counting the non-zero defaults (scoring only).
    pub scoring_requested: Resources,
    pub pods: u64,
}

impl NodeInfo {
    pub fn new(node: Arc<Value>) -> Self {
        let mut allocatable = Resources::new();
        if let Some(map) = node.pointer("/status/allocatable").and_then(Value::as_object) {
            for (resource, amount) in map {
                if let Some(q) = amount.as_str().and_then(quantity::parse) {
                    allocatable.insert(resource.clone(), if resource == "cpu" { q.millis() } else { q.units() });
                }
            }
        }
        Self {
            name: object::name(&node).to_string(),
            node,
            allocatable,
            requested: Resources::new(),
            scoring_requested: Resources::new(),
            pods: 0,
        }
    }

    /// Accounts for a pod bound to this node.
    pub fn add_pod(&mut self, pod: &Value) {
        for (resource, amount) in pod_requests(pod) {
            *self.requested.entry(resource).or_default() += amount;
        }
        for (resource, amount) in scoring_requests(pod) {
            *self.scoring_requested.entry(resource).or_default() += amount;
        }
        self.pods += 1;
    }
}

/// A pod's requests: per resource, the sum over containers (a missing request defaults to the
/// limit), or the largest init container's if that is more.
pub fn pod_requests(pod: &Value) -> Resources {
    let of_container = |c: &Value| {
        let mut r = Resources::new();
        for kind in ["limits", "requests"] {
            if let Some(map) = c.pointer(&format!("/resources/{kind}")).and_then(Value::as_object) {
                for (resource, amount) in map {
                    if let Some(q) = amount.as_str().and_then(quantity::parse) {
                        r.insert(resource.clone(), if resource == "cpu" { q.millis() } else { q.units() });
                    }
                }
            }
        }
        r
    };
    let list = |path: &str| pod.pointer(path).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut total = Resources::new();
    for c in list("/spec/containers") {
        for (resource, amount) in of_container(&c) {
            *total.entry(resource).or_default() += amount;
        }
    }
    for c in list("/spec/initContainers") {
        for (resource, amount) in of_container(&c) {
            let entry = total.entry(resource).or_default();
            *entry = (*entry).max(amount);
        }
    }
    total
}

fn scoring_requests(pod: &Value) -> Resources {
    let requests = pod_requests(pod);
    let cpu = requests
        .get("cpu")
        .copied()
        .filter(|&c| c > 0)
        .unwrap_or(DEFAULT_CPU_REQUEST_MILLIS);
    let memory = requests
        .get("memory")
        .copied()
        .filter(|&m| m > 0)
        .unwrap_or(DEFAULT_MEMORY_REQUEST_BYTES);
    Resources::from([("cpu".to_string(), cpu), ("memory".to_string(), memory)])
}

/// Why a node cannot take a pod (the phrases of the scheduler's FitError).
pub fn filter(pod: &Value, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        reasons.push("node(s) were unschedulable".to_string());
    }
    if !matches_node_selector(pod, &node.node) || !matches_required_affinity(pod, &node.node) {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_string());
    }
    if let Some(taint) = untolerated_taint(pod, &node.node) {
        reasons.push(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            object::str_at(taint, "/key"),
            object::str_at(taint, "/value")
        ));
    }
    if node.allocatable.get("pods").is_some_and(|&max| node.pods + 1 > max) {
        reasons.push("Too many pods".to_string());
    }
    for (resource, amount) in pod_requests(pod) {
        if amount == 0 {
            continue;
        }
        let free = node.allocatable.get(&resource).copied().unwrap_or(0);
        let used = node.requested.get(&resource).copied().unwrap_or(0);
        if used + amount > free {
            reasons.push(format!("Insufficient {resource}"));
        }
    }
    reasons
}

fn matches_node_selector(pod: &Value, node: &Value) -> bool {
    let Some(selector) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object) else {
        return true;
    };
    selector.iter().all(|(k, v)| object::label(node, k) == v.as_str())
}

/// `requiredDuringSchedulingIgnoredDuringExecution`: any term may match; within a term, every
/// expression must.
fn matches_required_affinity(pod: &Value, node: &Value) -> bool {
    let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    terms.iter().any(|term| {
        let expressions = |field: &str| term.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
        let labels_ok = expressions("matchExpressions").iter().all(|e| {
            let key = object::str_at(e, "/key");
            expression_holds(e, object::label(node, key))
        });
        let fields_ok = expressions("matchFields").iter().all(|e| {
            let value = (object::str_at(e, "/key") == "metadata.name").then(|| object::name(node));
            expression_holds(e, value)
        });
        labels_ok && fields_ok
    })
}

fn expression_holds(expression: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = expression
        .get("values")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match object::str_at(expression, "/operator") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint no toleration of the pod covers.
fn untolerated_taint<'a>(pod: &Value, node: &'a Value) -> Option<&'a Value> {
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    node.pointer("/spec/taints")?.as_array()?.iter().find(|taint| {
        let effect = object::str_at(taint, "/effect");
        if effect == "PreferNoSchedule" {
            return false;
        }
        !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = object::str_at(toleration, "/effect");
    if !effect.is_empty() && effect != object::str_at(taint, "/effect") {
        return false;
    }
    let key = object::str_at(toleration, "/key");
    match object::str_at(toleration, "/operator") {
        "Exists" => key.is_empty() || key == object::str_at(taint, "/key"),
        _ => {
            key == object::str_at(taint, "/key")
                && object::str_at(toleration, "/value") == object::str_at(taint, "/value")
        }
    }
}

/// least-requested + balanced-allocation, each 0–100, over cpu and memory.
pub fn score(pod: &Value, node: &NodeInfo) -> i64 {
    let adding = scoring_requests(pod);
    let mut least = 0i64;
    let mut fractions = Vec::new();
    for resource in ["cpu", "memory"] {
        let capacity = node.allocatable.get(resource).copied().unwrap_or(0);
        let requested =
            node.scoring_requested.get(resource).copied().unwrap_or(0) + adding.get(resource).copied().unwrap_or(0);
        if capacity == 0 || requested > capacity {
            fractions.push(1.0);
            continue;
        }
        least += ((capacity - requested) * 100 / capacity) as i64;
        fractions.push(requested as f64 / capacity as f64);
    }
    let least = least / 2;
    let std_dev = (fractions[0] - fractions[1]).abs() / 2.0;
    let balanced = ((1.0 - std_dev) * 100.0) as i64;
    least + balanced
}

/// Where a pod goes: the best node, or the scheduler's "0/N nodes are available: …" message.
pub fn place(pod: &Value, nodes: &[NodeInfo]) -> Result<usize, String> {
    let mut best: Option<(i64, usize)> = None;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let why_not = filter(pod, node);
        if why_not.is_empty() {
            let s = score(pod, node);
            let better = match best {
                None => true,
                Some((best_score, best_i)) => s > best_score || (s == best_score && node.name < nodes[best_i].name),
            };
            if better {
                best = Some((s, i));
            }
        }
        for reason in why_not {
            *reasons.entry(reason).or_default() += 1;
        }
    }
    if let Some((_, i)) = best {
        return Ok(i);
    }
    let mut parts: Vec<String> = reasons.into_iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    parts.sort();
    Err(format!("0/{} nodes are available: {}.", nodes.len(), parts.join(", ")))
}

/// The claims a pod's volumes name that do not exist (scheduling waits for them).
fn missing_claim(registry: &Registry, pod: &Value) -> Option<String> {
    let volumes = pod.pointer("/spec/volumes").and_then(Value::as_array)?;
    volumes.iter().find_map(|v| {
        let claim = v.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str)?;
        registry
            .store
            .get(resources::PVCS.plural, object::namespace(pod), claim)
            .is_none()
            .then(|| claim.to_string())
    })
}

/// The scheduling loop: runs a round whenever pods, nodes or claims changed.
pub async fn run(registry: Arc<Registry>, recorder: Arc<EventRecorder>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = registry.store.subscribe();
    let mut cursor = 0u64;
    let mut reported: HashMap<String, String> = HashMap::new();
    loop {
        let waiting = !reported.is_empty();
        let relevant = match registry.store.changes_since(cursor) {
            Ok(batch) => {
                cursor = batch.last().map_or(cursor, |c| c.resource_version);
                batch.iter().any(|c| may_change_placement(c, waiting))
            }
            Err(_) => {
                cursor = registry.store.current_resource_version();
                true
            }
        };
        if relevant {
            schedule_round(&registry, &recorder, &mut reported);
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether a change can alter a scheduling decision, so a round is worth its full scan: a new
/// (or respecified) unbound pod, any node or claim change, and, while pods wait, anything that
/// frees room (a pod deleted or finished). The kubelet's status writes are none of these.
fn may_change_placement(change: &Change, waiting: bool) -> bool {
    match change.resource {
        "nodes" | "persistentvolumeclaims" => true,
        "pods" => {
            let unbound = object::str_at(&change.object, "/spec/nodeName").is_empty();
            let previous = change.previous.as_deref();
            match change.kind {
                ChangeKind::Added => unbound,
                ChangeKind::Deleted => waiting,
                ChangeKind::Modified if unbound => previous.is_none_or(|p| p.get("spec") != change.object.get("spec")),
                ChangeKind::Modified => {
                    let finished = |p: &Value| matches!(object::str_at(p, "/status/phase"), "Succeeded" | "Failed");
                    waiting && finished(&change.object) && !previous.is_some_and(finished)
                }
            }
        }
        _ => false,
    }
}

fn schedule_round(registry: &Registry, recorder: &EventRecorder, reported: &mut HashMap<String, String>) {
    let (pods, _) = registry.store.list(resources::PODS.plural, None);
    let is_pending = |p: &Value| {
        object::str_at(p, "/spec/nodeName").is_empty()
            && p.pointer("/metadata/deletionTimestamp").is_none()
            && matches!(object::str_at(p, "/spec/schedulerName"), "" | "default-scheduler")
    };
    let mut pending: Vec<&Arc<Value>> = pods.iter().filter(|p| is_pending(p)).collect();
    let pending_uids: HashSet<&str> = pending.iter().map(|p| object::uid(p)).collect();
    reported.retain(|uid, _| pending_uids.contains(uid.as_str()));
    if pending.is_empty() {
        return;
    }
    // First come, first served (higher priority first), as the scheduling queue orders them.
    pending.sort_by_key(|p| {
        let priority = p.pointer("/spec/priority").and_then(Value::as_i64).unwrap_or(0);
        (-priority, object::resource_version(p))
    });
    let (node_objects, _) = registry.store.list(resources::NODES.plural, None);
    if node_objects.is_empty() {
        // A simulator without nodes is an API server only: pods stay Pending, untouched.
        return;
    }
    let mut nodes: Vec<NodeInfo> = node_objects.into_iter().map(NodeInfo::new).collect();
    for pod in &pods {
        let phase = object::str_at(pod, "/status/phase");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        let bound_to = object::str_at(pod, "/spec/nodeName");
        if let Some(node) = nodes.iter_mut().find(|n| !bound_to.is_empty() && n.name == bound_to) {
            node.add_pod(pod);
        }
    }
    for pod in pending {
        let decision = match missing_claim(registry, pod) {
            Some(claim) => Err(format!(
                "0/{} nodes are available: persistentvolumeclaim \"{claim}\" not found.",
                nodes.len()
            )),
            None => place(pod, &nodes),
        };
        match decision {
            Ok(i) => {
                if bind(registry, recorder, pod, &nodes[i].name) {
                    nodes[i].add_pod(pod);
                    reported.remove(object::uid(pod));
                }
            }
            Err(message) => {
                if reported.get(object::uid(pod)) != Some(&message) {
                    report_unschedulable(registry, recorder, pod, &message);
                    reported.insert(object::uid(pod).to_string(), message);
                }
            }
        }
    }
}

fn bind(registry: &Registry, recorder: &EventRecorder, pod: &Value, node: &str) -> bool {
    let (namespace, name) = object::key(pod);
    let uid = object::uid(pod).to_string();
    let bound = registry
        .store
        .update(resources::PODS.plural, &namespace, &name, |current| {
            if object::uid(current) != uid
                || !object::str_at(current, "/spec/nodeName").is_empty()
                || current.pointer("/metadata/deletionTimestamp").is_some()
            {
                return Ok(None);
            }
            let mut next = current.clone();
            next["spec"]["nodeName"] = json!(node);
            object::set_condition(&mut next, "PodScheduled", true, None, None);
            Ok(Some(next))
        });
    match bound {
        Ok(pod) if object::str_at(&pod, "/spec/nodeName") == node => {
            let message = format!("Successfully assigned {namespace}/{name} to {node}");
            recorder.record(&pod, None, EventType::Normal, "Scheduled", &message, events::SCHEDULER);
            true
        }
        _ => false,
    }
}

fn report_unschedulable(registry: &Registry, recorder: &EventRecorder, pod: &Value, message: &str) {
    let (namespace, name) = object::key(pod);
    let uid = object::uid(pod).to_string();
    let updated = registry
        .store
        .update(resources::PODS.plural, &namespace, &name, |current| {
            if object::uid(current) != uid {
                return Ok(None);
            }
            let mut next = current.clone();
            object::set_condition(&mut next, "PodScheduled", false, Some("Unschedulable"), Some(message));
            Ok(Some(next))
        });
    if let Ok(pod) = updated {
        recorder.record(
            &pod,
            None,
            EventType::Warning,
            "FailedScheduling",
            message,
            events::SCHEDULER,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> NodeInfo {
        let mut allocatable = json!({"cpu": cpu, "memory": memory, "pods": "110"});
        if let Some(map) = extra.get("allocatable").and_then(Value::as_object) {
            for (k, v) in map {
                allocatable[k] = v.clone();
            }
        }
        let object = json!({
            "metadata": {"name": name, "labels": extra.get("labels").cloned().unwrap_or(json!({}))},
            "spec": {"taints": extra.get("taints").cloned().unwrap_or(json!([]))},
            "status": {"allocatable": allocatable},
        });
        NodeInfo::new(Arc::new(object))
    }

    fn pod(requests: Value, spec_extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": requests}}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_init_containers_take_the_max() {
        let p = json!({"spec": {
            "containers": [
                {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}},
                {"resources": {"requests": {"nvidia.com/gpu": "1"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
        }});
        let r = pod_requests(&p);
        assert_eq!(r["cpu"], 2000);
        assert_eq!(r["memory"], 1 << 30);
        assert_eq!(r["nvidia.com/gpu"], 1);
    }

    #[test]
    fn unschedulable_messages_count_reasons_per_node() {
        let nodes = [node("a", "1", "1Gi", json!({})), node("b", "1", "1Gi", json!({}))];
        let err = place(&pod(json!({"cpu": "2"}), json!({})), &nodes).unwrap_err();
        assert_eq!(err, "0/2 nodes are available: 2 Insufficient cpu.");
        let err = place(&pod(json!({"cpu": "2", "memory": "2Gi"}), json!({})), &nodes).unwrap_err();
        assert_eq!(
            err,
            "0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory."
        );
        let err = place(&pod(json!({"nvidia.com/gpu": "1"}), json!({})), &nodes).unwrap_err();
        assert_eq!(err, "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.");
    }

    #[test]
    fn gpu_pods_go_to_the_gpu_node() {
        let nodes = [
            node("a", "16", "64Gi", json!({})),
            node("b", "16", "64Gi", json!({"allocatable": {"nvidia.com/gpu": "2"}})),
        ];
        assert_eq!(place(&pod(json!({"nvidia.com/gpu": "1"}), json!({})), &nodes), Ok(1));
    }

    #[test]
    fn taints_need_tolerations() {
        let tainted = json!({"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]});
        let nodes = [node("a", "16", "64Gi", tainted)];
        let err = place(&pod(json!({}), json!({})), &nodes).unwrap_err();
        assert_eq!(
            err,
            "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."
        );
        for toleration in [
            json!({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}),
            json!({"key": "gpu", "operator": "Exists"}),
            json!({"operator": "Exists"}),
        ] {
            assert_eq!(
                place(&pod(json!({}), json!({"tolerations": [toleration]})), &nodes),
                Ok(0)
            );
        }
        let wrong = json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "false"}]});
        assert!(place(&pod(json!({}), wrong), &nodes).is_err());
    }

    #[test]
    fn node_selector_and_required_affinity_filter() {
        let nodes = [
            node("a", "16", "64Gi", json!({"labels": {"zone": "x"}})),
            node("b", "16", "64Gi", json!({"labels": {"zone": "y", "ssd": ""}})),
        ];
        assert_eq!(
            place(&pod(json!({}), json!({"nodeSelector": {"zone": "y"}})), &nodes),
            Ok(1)
        );
        let affinity = |op: &str, values: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": if op.contains("Exist") { "ssd" } else { "zone" }, "operator": op, "values": values}]}]}}}});
        assert_eq!(place(&pod(json!({}), affinity("In", json!(["y"]))), &nodes), Ok(1));
        assert_eq!(place(&pod(json!({}), affinity("NotIn", json!(["y"]))), &nodes), Ok(0));
        assert_eq!(place(&pod(json!({}), affinity("Exists", json!([]))), &nodes), Ok(1));
        assert_eq!(
            place(&pod(json!({}), affinity("DoesNotExist", json!([]))), &nodes),
            Ok(0)
        );
        let err = place(&pod(json!({}), json!({"nodeSelector": {"zone": "z"}})), &nodes).unwrap_err();
        assert_eq!(
            err,
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn scoring_spreads_pods_evenly_and_prefers_balance() {
        let mut nodes = vec![node("a", "16", "64Gi", json!({})), node("b", "16", "64Gi", json!({}))];
        let p = pod(json!({"cpu": "1", "memory": "4Gi"}), json!({}));
        let mut counts = [0, 0];
        for _ in 0..8 {
            let i = place(&p, &nodes).unwrap();
            nodes[i].add_pod(&p);
            counts[i] += 1;
        }
        assert_eq!(counts, [4, 4]);
        // Pods requesting nothing still spread, through the non-zero defaults.
        let empty = pod(json!({}), json!({}));
        let mut nodes = vec![node("a", "16", "64Gi", json!({})), node("b", "16", "64Gi", json!({}))];
        let first = place(&empty, &nodes).unwrap();
        nodes[first].add_pod(&empty);
        assert_ne!(place(&empty, &nodes).unwrap(), first);
    }
}
