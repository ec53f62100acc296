//! What the API server does to an object on each verb, before and after the store: defaults,
//! validation, system metadata, the status-subresource split, graceful pod deletion and
//! owner-reference garbage collection.
//!
//! Invariants:
//! - clients never set system metadata (`uid`, `creationTimestamp`, `deletionTimestamp`,
//!   `generation`, `resourceVersion`): it is carried over from the stored object;
//! - a write to the main resource keeps the stored `status`; a write to `/status` keeps
//!   everything but `status` (for resources that have the subresource);
//! - a stale `metadata.resourceVersion` in an update or patch is a 409 Conflict;
//! - a pod bound to a node is deleted in two steps (marked with `deletionTimestamp`, then
//!   removed by the kubelet once its process is gone); anything else goes at once;
//! - removing an object deletes the objects whose `ownerReferences` name its uid, unless it was
//!   deleted with `propagationPolicy: Orphan`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use super::api_error::ApiError;
use super::merge_patch;
use super::object;
use super::quantity;
use super::resources::{self, ResourceType};
use super::store::Store;

/// The finalizer a graceful delete with `propagationPolicy: Orphan` leaves on the object, as the
/// API server does, so the final removal knows not to collect dependents.
const ORPHAN_FINALIZER: &str = "orphan";

/// How a PATCH body is to be read (the request's `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// The parts of `DeleteOptions` the simulator honours (from the body or the query string).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn from_json(body: &Value) -> Self {
        let orphan = body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        Self {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation_policy: body
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| orphan.then(|| "Orphan".to_string())),
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    fn orphans(&self) -> bool {
        self.propagation_policy.as_deref() == Some("Orphan")
    }
}

pub struct Registry {
    pub store: Arc<Store>,
    next_service_ip: AtomicU32,
}

impl Registry {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            next_service_ip: AtomicU32::new(10),
        }
    }

    /// POST: a new object in `namespace` ("" for cluster-scoped resources).
    pub fn create(&self, rt: &'static ResourceType, namespace: &str, body: Value) -> Result<Arc<Value>, ApiError> {
        let mut object = self.checked_body(rt, namespace, body)?;
        let meta = object::metadata_mut(&mut object).ok_or_else(|| ApiError::bad_request("object expected"))?;
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() && generate.is_empty() {
            return Err(ApiError::invalid(
                rt.plural,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        let mut attempt = 0;
        loop {
            if !generate.is_empty() && (name.is_empty() || attempt > 0) {
                name = format!("{generate}{}", object::name_suffix());
            }
            let mut candidate = object.clone();
            validate_metadata(rt, &name, &candidate)?;
            stamp_new(rt, &mut candidate, &name, namespace);
            self.prepare_for_create(rt, &mut candidate)?;
            match self.store.create(rt.plural, candidate) {
                // A generated name that collides is retried with a new suffix, as the API server
                // does; an explicit name that collides is the client's 409.
                Err(e) if e.code == 409 && !generate.is_empty() && attempt < 8 => attempt += 1,
                result => return result,
            }
        }
    }

    /// PUT, on the object or its `/status`.
    pub fn replace(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        body: Value,
        status_only: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let body = self.checked_body(rt, namespace, body)?;
        let body_name = object::name(&body);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        self.store.update(rt.plural, namespace, name, |current| {
            check_preconditions(rt, name, current, &body)?;
            Ok(Some(merge_write(rt, current, body, status_only)))
        })
    }

    /// PATCH, on the object or its `/status`; an apply patch creates a missing object.
    pub fn patch(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        patch: Value,
        status_only: bool,
    ) -> Result<Arc<Value>, ApiError> {
        if !patch.is_object() {
            return Err(ApiError::bad_request("a patch must be a JSON object"));
        }
        if patch_type == PatchType::Apply && !status_only && self.store.get(rt.plural, namespace, name).is_none() {
            let mut body = patch.clone();
            if let Some(meta) = object::metadata_mut(&mut body) {
                meta.insert("name".into(), json!(name));
            }
            match self.create(rt, namespace, body) {
                Err(e) if e.code == 409 => {} // created meanwhile: patch it below
                result => return result,
            }
        }
        self.store.update(rt.plural, namespace, name, |current| {
            let mut patched = (*current).clone();
            merge_patch::apply(&mut patched, &patch);
            check_preconditions(rt, name, current, &patch)?;
            validate_metadata(rt, name, &patched)?;
            Ok(Some(merge_write(rt, current, patched, status_only)))
        })
    }

    /// DELETE. Returns the object as it is after the call: marked for deletion, or its last
    /// state if it is gone.
    pub fn delete(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let current = self
            .store
            .get(rt.plural, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt.plural, name))?;
        if options
            .precondition_uid
            .as_deref()
            .is_some_and(|uid| uid != object::uid(&current))
            || options
                .precondition_resource_version
                .as_deref()
                .is_some_and(|rv| rv != object::str_at(&current, "/metadata/resourceVersion"))
        {
            return Err(ApiError::conflict(rt.plural, name));
        }
        if let Some(grace) = self.graceful_period(rt, &current, options) {
            return self.store.update(rt.plural, namespace, name, |current| {
                let mut marked = (*current).clone();
                let already = marked
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                // A second delete may shorten the grace period, never lengthen it.
                if already.is_some_and(|a| a <= grace) {
                    return Ok(None);
                }
                let deadline = k8s_openapi::jiff::Timestamp::now()
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(grace))
                    .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
                let Some(meta) = object::metadata_mut(&mut marked) else {
                    return Ok(None);
                };
                meta.insert("deletionTimestamp".into(), json!(object::timestamp(deadline)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if options.orphans() {
                    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
                    if let Some(list) = finalizers.as_array_mut()
                        && !list.iter().any(|f| f == ORPHAN_FINALIZER)
                    {
                        list.push(json!(ORPHAN_FINALIZER));
                    }
                }
                Ok(Some(marked))
            });
        }
        let uid = object::uid(&current).to_string();
        self.remove(rt, namespace, name, &uid, options.orphans())
            .ok_or_else(|| ApiError::not_found(rt.plural, name))
    }

    /// The grace period if this delete is a two-step one: a pod on an existing node, asked for
    /// a period above zero.
    fn graceful_period(&self, rt: &ResourceType, current: &Value, options: &DeleteOptions) -> Option<i64> {
        if rt.plural != "pods" {
            return None;
        }
        let node = object::str_at(current, "/spec/nodeName");
        if node.is_empty() || self.store.get("nodes", "", node).is_none() {
            return None;
        }
        let grace = options.grace_period_seconds.unwrap_or_else(|| {
            current
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        (grace > 0).then_some(grace)
    }

    /// The final removal (the kubelet calls this once a deleted pod's process is gone), then
    /// garbage collection of dependents.
    pub fn remove(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        uid: &str,
        orphan: bool,
    ) -> Option<Arc<Value>> {
        let last = self.store.remove(rt.plural, namespace, name, Some(uid))?;
        let orphan = orphan
            || last
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|f| f == ORPHAN_FINALIZER));
        if !orphan {
            self.collect_dependents(rt, namespace, uid);
        }
        Some(last)
    }

    /// Background cascading deletion: every object owned by `owner_uid` is deleted (pods
    /// gracefully, with their own grace period).
    fn collect_dependents(&self, owner: &ResourceType, namespace: &str, owner_uid: &str) {
        for rt in resources::ALL {
            if !rt.namespaced {
                continue;
            }
            let scope = owner.namespaced.then_some(namespace);
            let (objects, _) = self.store.list(rt.plural, scope);
            for dependent in objects {
                let owned = dependent
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
                    });
                if owned {
                    let (ns, name) = object::key(&dependent);
                    let _ = self.delete(rt, &ns, &name, &DeleteOptions::default());
                }
            }
        }
    }

    /// Checks kind/apiVersion/namespace of a request body and fills them in.
    fn checked_body(&self, rt: &ResourceType, namespace: &str, body: Value) -> Result<Value, ApiError> {
        let Value::Object(map) = body else {
            return Err(ApiError::bad_request(format!("the body must be a {} object", rt.kind)));
        };
        if let Some(kind) = map.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!("expected kind {}, got {kind}", rt.kind)));
        }
        if let Some(version) = map.get("apiVersion").and_then(Value::as_str)
            && version != "v1"
        {
            return Err(ApiError::bad_request(format!("expected apiVersion v1, got {version}")));
        }
        // kind and apiVersion first, as the API server prints objects.
        let mut ordered = serde_json::Map::new();
        ordered.insert("kind".into(), json!(rt.kind));
        ordered.insert("apiVersion".into(), json!("v1"));
        ordered.extend(map.into_iter().filter(|(k, _)| k != "kind" && k != "apiVersion"));
        let mut object = Value::Object(ordered);
        if rt.namespaced {
            let given = object::namespace(&object);
            if !given.is_empty() && given != namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if let Some(meta) = object::metadata_mut(&mut object) {
                meta.insert("namespace".into(), json!(namespace));
            }
        } else if let Some(meta) = object::metadata_mut(&mut object) {
            meta.remove("namespace");
        }
        Ok(object)
    }

    /// Per-resource defaults and validation on create (`PrepareForCreate` + `Validate`).
    fn prepare_for_create(&self, rt: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
        let name = object::name(object).to_string();
        match rt.plural {
            "pods" => prepare_pod(object, &name)?,
            "persistentvolumeclaims" => {
                // No volume provisioner to wait for: a claim is bound as soon as it exists.
                let storage = object
                    .pointer("/spec/resources/requests/storage")
                    .cloned()
                    .unwrap_or(json!("1Gi"));
                let modes = object
                    .pointer("/spec/accessModes")
                    .cloned()
                    .unwrap_or(json!(["ReadWriteOnce"]));
                object["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": storage}});
                if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.entry("volumeName")
                        .or_insert_with(|| json!(format!("pvc-{}", object::new_uid())));
                }
            }
            "services" => {
                let ip = object
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if ip.is_empty() {
                    let n = self.next_service_ip.fetch_add(1, Ordering::Relaxed);
                    let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
                    if let Some(spec) = object
                        .as_object_mut()
                        .map(|o| o.entry("spec").or_insert_with(|| json!({})))
                    {
                        spec["clusterIP"] = json!(ip);
                        spec["clusterIPs"] = json!([ip]);
                    }
                }
                object["status"] = json!({"loadBalancer": {}});
            }
            "namespaces" => object["status"] = json!({"phase": "Active"}),
            "events" => {
                let now = object::now();
                for field in ["firstTimestamp", "lastTimestamp"] {
                    if object.get(field).is_none_or(Value::is_null) {
                        object[field] = json!(now);
                    }
                }
                if object.get("count").is_none() {
                    object["count"] = json!(1);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// System metadata for a new object.
fn stamp_new(rt: &ResourceType, object: &mut Value, name: &str, namespace: &str) {
    if let Some(meta) = object::metadata_mut(object) {
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        meta.insert("uid".into(), json!(object::new_uid()));
        meta.insert("creationTimestamp".into(), json!(object::now()));
        meta.insert("generation".into(), json!(1));
        for system_only in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(system_only);
        }
    }
}

/// The object a write stores: the client's object with system metadata carried over, and the
/// status from the side the request may not touch.
fn merge_write(rt: &ResourceType, current: &Value, body: Value, status_only: bool) -> Value {
    if status_only && rt.has_status {
        let mut next = current.clone();
        match body.get("status") {
            Some(status) => next["status"] = status.clone(),
            None => {
                if let Some(map) = next.as_object_mut() {
                    map.remove("status");
                }
            }
        }
        return next;
    }
    let mut next = body;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generation",
    ] {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(value) => {
                if let Some(meta) = object::metadata_mut(&mut next) {
                    meta.insert(field.into(), value.clone());
                }
            }
            None => {
                if let Some(meta) = object::metadata_mut(&mut next) {
                    meta.remove(field);
                }
            }
        }
    }
    if rt.has_status
        && let Some(map) = next.as_object_mut()
    {
        match current.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
    if next.get("spec") != current.get("spec") {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if let Some(meta) = object::metadata_mut(&mut next) {
            meta.insert("generation".into(), json!(generation + 1));
        }
    }
    next
}

/// The optimistic-concurrency checks of an update: a `resourceVersion` or `uid` in the request
/// must be the stored one.
fn check_preconditions(rt: &ResourceType, name: &str, current: &Value, request: &Value) -> Result<(), ApiError> {
    let rv = object::str_at(request, "/metadata/resourceVersion");
    if !rv.is_empty() && rv != object::str_at(current, "/metadata/resourceVersion") {
        return Err(ApiError::conflict(rt.plural, name));
    }
    let uid = object::str_at(request, "/metadata/uid");
    if !uid.is_empty() && uid != object::uid(current) {
        return Err(ApiError::conflict(rt.plural, name));
    }
    Ok(())
}

/// Name and label rules (DNS-1123 subdomain names; qualified-name label keys; 63-character
/// label values), with the API server's error wording.
fn validate_metadata(rt: &ResourceType, name: &str, object: &Value) -> Result<(), ApiError> {
    if let Some(problem) = dns_subdomain_problem(name) {
        return Err(ApiError::invalid(
            rt.plural,
            name,
            format!("metadata.name: Invalid value: {name:?}: {problem}"),
        ));
    }
    if let Some(labels) = object.pointer("/metadata/labels").and_then(Value::as_object) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            let key_name = key.rsplit('/').next().unwrap_or_default();
            if key_name.is_empty() || key_name.len() > 63 || !label_chars_ok(key_name) {
                return Err(ApiError::invalid(
                    rt.plural,
                    name,
                    format!(
                        "metadata.labels: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ),
                ));
            }
            if value.len() > 63 {
                return Err(ApiError::invalid(
                    rt.plural,
                    name,
                    format!("metadata.labels: Invalid value: {value:?}: must be no more than 63 characters"),
                ));
            }
            if !value.is_empty() && !label_chars_ok(value) {
                return Err(ApiError::invalid(
                    rt.plural,
                    name,
                    format!(
                        "metadata.labels: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn label_chars_ok(s: &str) -> bool {
    let edges_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edges_ok(s.chars().next())
        && edges_ok(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn dns_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.len() > 253 {
        return Some("must be no more than 253 characters");
    }
    let edges_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !chars_ok || !edges_ok(name.chars().next()) || !edges_ok(name.chars().last()) {
        return Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        );
    }
    None
}

/// Pod defaults, validation, and the status every new pod starts with.
fn prepare_pod(pod: &mut Value, name: &str) -> Result<(), ApiError> {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(ApiError::invalid("pods", name, "spec.containers: Required value"));
    }
    for (i, c) in containers.iter().enumerate() {
        for field in ["name", "image"] {
            if c.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    "pods",
                    name,
                    format!("spec.containers[{i}].{field}: Required value"),
                ));
            }
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err(ApiError::invalid("pods", name, "spec: Required value"));
    };
    spec.entry("restartPolicy").or_insert_with(|| json!("Always"));
    spec.entry("terminationGracePeriodSeconds").or_insert_with(|| json!(30));
    spec.entry("schedulerName")
        .or_insert_with(|| json!("default-scheduler"));
    spec.entry("dnsPolicy").or_insert_with(|| json!("ClusterFirst"));
    let qos = qos_class(&containers);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
    Ok(())
}

/// Guaranteed if every container's cpu and memory limits equal its requests, BestEffort if no
/// container asks for anything, Burstable otherwise.
fn qos_class(containers: &[Value]) -> &'static str {
    let amount = |c: &Value, kind: &str, res: &str| {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str)
            .and_then(quantity::parse)
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        for res in ["cpu", "memory"] {
            let limit = amount(c, "limits", res);
            let request = amount(c, "requests", res).or(limit);
            any |= limit.is_some() || request.is_some();
            guaranteed &= limit.is_some() && limit == request;
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let c = |r: Value| json!({"name": "c", "image": "i", "resources": r});
        assert_eq!(qos_class(&[c(json!({}))]), "BestEffort");
        assert_eq!(
            qos_class(&[c(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))]),
            "Guaranteed"
        );
        assert_eq!(qos_class(&[c(json!({"requests": {"cpu": "1"}}))]), "Burstable");
    }

    #[test]
    fn names_follow_rfc1123_subdomains() {
        assert!(dns_subdomain_problem("jupyter-alice-2e").is_none());
        assert!(dns_subdomain_problem("a.b").is_none());
        for bad in ["", "Alice", "-a", "a-", "a_b", &"a".repeat(254)] {
            assert!(dns_subdomain_problem(bad).is_some(), "{bad:?}");
        }
    }
}
