//! The served kinds: group, version, plural, scope, short names, categories and subresources, with the
//! k8s-openapi type behind each, which gives decoding (type checking) and the OpenAPI schema.

mod defaults;
mod validation;
mod zero_objects;

pub use defaults::apply_defaults;
pub(crate) use validation::Quantity as ParsedQuantity;
pub use validation::{ErrorType, FieldError, validate};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// One served resource (a kind at one group/version).
#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `status` subresource whose writes touch only `.status`.
    pub status: bool,
    /// Has a `scale` subresource answering `autoscaling/v1 Scale`.
    pub scale: bool,
    /// Verbs on the main resource (create-only kinds such as reviews have fewer).
    pub verbs: &'static [&'static str],
    /// Deserializes into the typed object and back: type-checks and normalizes a body.
    pub decode: fn(Value) -> Result<Value, DecodeError>,
    /// The OpenAPI schema of the kind, as a `$ref` into the generator's definitions.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

/// A body that does not deserialize into the kind's type, with the JSON path that failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

impl Resource {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store's resource key: `deployments.apps`, or `pods` for the core group.
    pub fn storage_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The name of the kind's schema in `#/components/schemas`, as upstream names it.
    pub fn definition_name(&self) -> String {
        let group = match self.group {
            "" => "core",
            g => g.split('.').next().unwrap_or(g),
        };
        if self.group == METRICS_GROUP {
            return format!(
                "io.k8s.metrics.pkg.apis.metrics.{}.{}",
                self.version, self.kind
            );
        }
        if self.group == "apiextensions.k8s.io" {
            return format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}",
                self.version, self.kind
            );
        }
        format!("io.k8s.api.{group}.{}.{}", self.version, self.kind)
    }
}

/// The object as its kind's type reads and writes it back, or where and why the type refuses it.
fn decode<K: DeserializeOwned + Serialize>(value: Value) -> Result<Value, DecodeError> {
    // Tracking the path costs a copy of every key passed, so only a refused object is read a
    // second time with it, to say where it fails.
    let typed = match K::deserialize(&value) {
        Ok(typed) => typed,
        Err(_) => serde_path_to_error::deserialize::<_, K>(value).map_err(|e| DecodeError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?,
    };
    serde_json::to_value(typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
    })
}

fn schema<K: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<K>()
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const READ_ONLY: &[&str] = &["get", "list"];

/// The group whose objects are measured on the nodes, never stored (see [`crate::api::metrics`]).
pub const METRICS_GROUP: &str = "metrics.k8s.io";

macro_rules! resource {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal,
     namespaced: $ns:literal, short: [$($short:literal),*], categories: [$($cat:literal),*],
     status: $status:literal, scale: $scale:literal $(, verbs: $verbs:expr)?) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            status: $status,
            scale: $scale,
            verbs: resource!(@verbs $($verbs)?),
            decode: decode::<$ty>,
            schema: schema::<$ty>,
        }
    };
    (@verbs) => { ALL_VERBS };
    (@verbs $verbs:expr) => { $verbs };
}

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
    autoscaling::v2 as autoscaling, batch::v1 as batch, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;

/// Every served resource, in discovery order.
pub static RESOURCES: &[Resource] = &[
    // core/v1
    resource!(core::Pod, "", "v1", "Pod", "pods", "pod", namespaced: true, short: ["po"], categories: ["all"], status: true, scale: false),
    resource!(core::Service, "", "v1", "Service", "services", "service", namespaced: true, short: ["svc"], categories: ["all"], status: true, scale: false),
    resource!(core::Endpoints, "", "v1", "Endpoints", "endpoints", "endpoints", namespaced: true, short: ["ep"], categories: [], status: false, scale: false),
    resource!(core::ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap", namespaced: true, short: ["cm"], categories: [], status: false, scale: false),
    resource!(core::Secret, "", "v1", "Secret", "secrets", "secret", namespaced: true, short: [], categories: [], status: false, scale: false),
    resource!(core::Namespace, "", "v1", "Namespace", "namespaces", "namespace", namespaced: false, short: ["ns"], categories: [], status: true, scale: false),
    resource!(core::Node, "", "v1", "Node", "nodes", "node", namespaced: false, short: ["no"], categories: [], status: true, scale: false),
    resource!(core::Event, "", "v1", "Event", "events", "event", namespaced: true, short: ["ev"], categories: [], status: false, scale: false),
    resource!(core::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", namespaced: true, short: ["sa"], categories: [], status: false, scale: false),
    resource!(core::ResourceQuota, "", "v1", "ResourceQuota", "resourcequotas", "resourcequota", namespaced: true, short: ["quota"], categories: [], status: true, scale: false),
    resource!(core::LimitRange, "", "v1", "LimitRange", "limitranges", "limitrange", namespaced: true, short: ["limits"], categories: [], status: false, scale: false),
    resource!(core::PersistentVolumeClaim, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", namespaced: true, short: ["pvc"], categories: [], status: true, scale: false),
    resource!(core::PersistentVolume, "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", namespaced: false, short: ["pv"], categories: [], status: true, scale: false),
    resource!(core::ReplicationController, "", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", namespaced: true, short: ["rc"], categories: ["all"], status: true, scale: true),
    resource!(core::PodTemplate, "", "v1", "PodTemplate", "podtemplates", "podtemplate", namespaced: true, short: [], categories: [], status: false, scale: false),
    // apps/v1
    resource!(apps::Deployment, "apps", "v1", "Deployment", "deployments", "deployment", namespaced: true, short: ["deploy"], categories: ["all"], status: true, scale: true),
    resource!(apps::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", "replicaset", namespaced: true, short: ["rs"], categories: ["all"], status: true, scale: true),
    resource!(apps::StatefulSet, "apps", "v1", "StatefulSet", "statefulsets", "statefulset", namespaced: true, short: ["sts"], categories: ["all"], status: true, scale: true),
    resource!(apps::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", "daemonset", namespaced: true, short: ["ds"], categories: ["all"], status: true, scale: false),
    resource!(apps::ControllerRevision, "apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", namespaced: true, short: [], categories: [], status: false, scale: false),
    // batch/v1
    resource!(batch::Job, "batch", "v1", "Job", "jobs", "job", namespaced: true, short: [], categories: ["all"], status: true, scale: false),
    resource!(batch::CronJob, "batch", "v1", "CronJob", "cronjobs", "cronjob", namespaced: true, short: ["cj"], categories: ["all"], status: true, scale: false),
    // autoscaling/v2
    resource!(autoscaling::HorizontalPodAutoscaler, "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", namespaced: true, short: ["hpa"], categories: ["all"], status: true, scale: false),
    // networking.k8s.io/v1
    resource!(networking::Ingress, "networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", namespaced: true, short: ["ing"], categories: [], status: true, scale: false),
    resource!(networking::IngressClass, "networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", namespaced: false, short: [], categories: [], status: false, scale: false),
    resource!(networking::NetworkPolicy, "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", namespaced: true, short: ["netpol"], categories: [], status: false, scale: false),
    // discovery.k8s.io/v1
    resource!(discovery::EndpointSlice, "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", namespaced: true, short: [], categories: [], status: false, scale: false),
    // coordination.k8s.io/v1
    resource!(coordination::Lease, "coordination.k8s.io", "v1", "Lease", "leases", "lease", namespaced: true, short: [], categories: [], status: false, scale: false),
    // policy/v1
    resource!(policy::PodDisruptionBudget, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", namespaced: true, short: ["pdb"], categories: [], status: true, scale: false),
    // rbac.authorization.k8s.io/v1
    resource!(rbac::Role, "rbac.authorization.k8s.io", "v1", "Role", "roles", "role", namespaced: true, short: [], categories: [], status: false, scale: false),
    resource!(rbac::RoleBinding, "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", namespaced: true, short: [], categories: [], status: false, scale: false),
    resource!(rbac::ClusterRole, "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", namespaced: false, short: [], categories: [], status: false, scale: false),
    resource!(rbac::ClusterRoleBinding, "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", namespaced: false, short: [], categories: [], status: false, scale: false),
    // authorization.k8s.io/v1 and authentication.k8s.io/v1: reviews are created, never stored
    resource!(authz::SelfSubjectAccessReview, "authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", namespaced: false, short: [], categories: [], status: false, scale: false, verbs: CREATE_ONLY),
    resource!(authz::SubjectAccessReview, "authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", namespaced: false, short: [], categories: [], status: false, scale: false, verbs: CREATE_ONLY),
    resource!(authn::TokenReview, "authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", namespaced: false, short: [], categories: [], status: false, scale: false, verbs: CREATE_ONLY),
    resource!(authn::SelfSubjectReview, "authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", namespaced: false, short: [], categories: [], status: false, scale: false, verbs: CREATE_ONLY),
    // storage.k8s.io/v1
    resource!(storage::StorageClass, "storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", namespaced: false, short: ["sc"], categories: [], status: false, scale: false),
    // events.k8s.io/v1
    resource!(events::Event, "events.k8s.io", "v1", "Event", "events", "event", namespaced: true, short: ["ev"], categories: [], status: false, scale: false),
    // apiextensions.k8s.io/v1
    resource!(apiextensions::CustomResourceDefinition, "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", namespaced: false, short: ["crd", "crds"], categories: ["api-extensions"], status: true, scale: false),
    // scheduling.k8s.io/v1
    resource!(scheduling::PriorityClass, "scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", namespaced: false, short: ["pc"], categories: [], status: false, scale: false),
    // metrics.k8s.io/v1beta1: measured on the nodes when asked for
    resource!(crate::api::metrics::NodeMetrics, "metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "", namespaced: false, short: [], categories: [], status: false, scale: false, verbs: READ_ONLY),
    resource!(crate::api::metrics::PodMetrics, "metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "", namespaced: true, short: [], categories: [], status: false, scale: false, verbs: READ_ONLY),
];

/// The resource served at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The preferred served resource for a kind of `group`, whatever the version an owner names.
pub fn find_group_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// The group/versions served, in discovery order (core first).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Whether objects of this resource are kept in the store (reviews are answered and metrics
/// measured, never stored).
pub fn is_stored(r: &Resource) -> bool {
    r.verbs.contains(&"create") && r.verbs.contains(&"get")
}

/// The zero value of the kind with OpenAPI definition `name`, as upstream's JSON has it.
pub fn zero_object(name: &str) -> Option<&'static Value> {
    static PARSED: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    let table = zero_objects::ZERO_OBJECTS;
    let index = table.binary_search_by_key(&name, |(n, _)| n).ok()?;
    let parsed = PARSED.get_or_init(|| {
        table
            .iter()
            .map(|(_, text)| serde_json::from_str(text).expect("generated zero objects are JSON"))
            .collect()
    });
    parsed.get(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_objects_are_sorted_and_every_stored_kind_has_one() {
        let table = zero_objects::ZERO_OBJECTS;
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        for r in RESOURCES
            .iter()
            .filter(|r| is_stored(r) && r.definition_name().starts_with("io.k8s.api."))
        {
            assert!(zero_object(&r.definition_name()).is_some(), "{}", r.kind);
        }
    }

    #[test]
    fn storage_names_are_unique() {
        let mut names: Vec<_> = RESOURCES.iter().map(|r| r.storage_name()).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn decode_reports_the_failing_path() {
        let r = find("apps", "v1", "deployments").unwrap();
        let err = (r.decode)(serde_json::json!({"spec": {"replicas": "three"}})).unwrap_err();
        assert_eq!(err.path, "spec.replicas");
    }

    #[test]
    fn decode_writes_back_what_the_type_keeps() {
        let r = find("", "v1", "configmaps").unwrap();
        let decoded = (r.decode)(serde_json::json!({
            "metadata": {"name": "a", "labels": null, "creationTimestamp": "2026-01-02T03:04:05.678Z"},
            "data": {"k": "v"},
        }))
        .unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "a", "creationTimestamp": "2026-01-02T03:04:05Z"},
                "data": {"k": "v"},
            })
        );
    }

    #[test]
    fn definition_names_follow_upstream() {
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().definition_name(),
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            find("", "v1", "pods").unwrap().definition_name(),
            "io.k8s.api.core.v1.Pod"
        );
        assert_eq!(
            find("rbac.authorization.k8s.io", "v1", "roles")
                .unwrap()
                .definition_name(),
            "io.k8s.api.rbac.v1.Role"
        );
    }
}
