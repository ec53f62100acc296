//! The resource types the simulator serves (all core/v1), and which fields each lets a
//! `fieldSelector` use.

use serde_json::Value;

use super::object;

/// One served resource: its URL plural, its kind, and its shape.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// The plural in URLs and in errors (`pods`).
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: main writes keep the stored status, status writes keep
    /// everything else.
    pub has_status: bool,
    pub short_names: &'static [&'static str],
}

pub const PODS: &ResourceType = &ResourceType {
    plural: "pods",
    kind: "Pod",
    namespaced: true,
    has_status: true,
    short_names: &["po"],
};
pub const EVENTS: &ResourceType = &ResourceType {
    plural: "events",
    kind: "Event",
    namespaced: true,
    has_status: false,
    short_names: &["ev"],
};
pub const PVCS: &ResourceType = &ResourceType {
    plural: "persistentvolumeclaims",
    kind: "PersistentVolumeClaim",
    namespaced: true,
    has_status: true,
    short_names: &["pvc"],
};
pub const SERVICES: &ResourceType = &ResourceType {
    plural: "services",
    kind: "Service",
    namespaced: true,
    has_status: true,
    short_names: &["svc"],
};
pub const CONFIGMAPS: &ResourceType = &ResourceType {
    plural: "configmaps",
    kind: "ConfigMap",
    namespaced: true,
    has_status: false,
    short_names: &["cm"],
};
pub const SECRETS: &ResourceType = &ResourceType {
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
    has_status: false,
    short_names: &[],
};
pub const NAMESPACES: &ResourceType = &ResourceType {
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
    has_status: true,
    short_names: &["ns"],
};
pub const NODES: &ResourceType = &ResourceType {
    plural: "nodes",
    kind: "Node",
    namespaced: false,
    has_status: true,
    short_names: &["no"],
};

pub const ALL: &[&ResourceType] = &[PODS, EVENTS, PVCS, SERVICES, CONFIGMAPS, SECRETS, NAMESPACES, NODES];

pub fn by_plural(plural: &str) -> Option<&'static ResourceType> {
    ALL.iter().copied().find(|r| r.plural == plural)
}

impl ResourceType {
    /// Whether `field` may appear in a `fieldSelector` for this resource.
    pub fn selectable(&self, field: &str) -> bool {
        if matches!(field, "metadata.name" | "metadata.namespace") {
            return true;
        }
        match self.plural {
            "pods" => matches!(
                field,
                "spec.nodeName"
                    | "spec.restartPolicy"
                    | "spec.schedulerName"
                    | "spec.serviceAccountName"
                    | "status.phase"
                    | "status.podIP"
                    | "status.nominatedNodeName"
            ),
            "events" => matches!(
                field,
                "involvedObject.kind"
                    | "involvedObject.namespace"
                    | "involvedObject.name"
                    | "involvedObject.uid"
                    | "involvedObject.apiVersion"
                    | "involvedObject.resourceVersion"
                    | "involvedObject.fieldPath"
                    | "reason"
                    | "reportingComponent"
                    | "source"
                    | "type"
            ),
            "nodes" => field == "spec.unschedulable",
            "namespaces" => field == "status.phase",
            "secrets" => field == "type",
            _ => false,
        }
    }

    /// A selectable field's value; absent fields read as "" (booleans as "true"/"false").
    pub fn field_value(&self, object: &Value, field: &str) -> String {
        if field == "source" {
            return object::str_at(object, "/source/component").to_string();
        }
        let pointer = format!("/{}", field.replace('.', "/"));
        match object.pointer(&pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ if field == "spec.unschedulable" => "false".into(),
            _ => String::new(),
        }
    }
}
