//! Upstream (Kubernetes 1.33) defaulting of served objects, applied on create and update before validation.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::registry::Resource;
use crate::registry::validation::Quantity;

/// Upstream defaulting (SetDefaults_*), applied on create and update before validation.
///
/// A few create-time steps of upstream's registry strategies are done here too, because they
/// precede validation: a Job's generated selector (needs `metadata.uid`), the `kubernetes`
/// finalizer of a new Namespace, a Secret's `stringData` merged into `data`, and a Service's
/// `clusterIPs` mirrored from `clusterIP`. "Create" is recognised by an empty `metadata.resourceVersion`.
pub fn apply_defaults(resource: &Resource, object: &mut Value) {
    if !object.is_object() {
        return;
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => pod(object),
        ("", "PodTemplate") => pod_template(child(object, "template")),
        ("", "ReplicationController") => replication_controller(object),
        ("", "Service") => service(object),
        ("", "Secret") => secret(object),
        ("", "Namespace") => namespace(object),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(object),
        ("", "PersistentVolume") => persistent_volume(object),
        ("", "Endpoints") => endpoints(object),
        ("", "LimitRange") => limit_range(object),
        ("", "ResourceQuota") => {
            resource_list(child(child(object, "spec"), "hard"));
        }
        ("", "Node") => node(object),
        ("apps", "Deployment") => deployment(object),
        ("apps", "ReplicaSet") => replica_set(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("batch", "Job") => job(object),
        ("batch", "CronJob") => cron_job(object),
        ("autoscaling", "HorizontalPodAutoscaler") => horizontal_pod_autoscaler(object),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(object),
        ("networking.k8s.io", "IngressClass") => ingress_class(object),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(object),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => role_binding(object),
        ("storage.k8s.io", "StorageClass") => {
            set(object, "reclaimPolicy", json!("Delete"));
            set(object, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set(object, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

/// Whether a field counts as unset: absent, null, or (for Go strings) empty.
fn unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Sets `key` when it is unset.
fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(m) = object.as_object_mut()
        && unset(m.get(key))
    {
        m.insert(key.to_string(), value);
    }
}

/// The object at `key`, created empty when absent. Typed input only ever has an object or
/// nothing there; anything else is replaced, which keeps this free of panics.
fn child<'a>(object: &'a mut Value, key: &str) -> &'a mut Value {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let entry = &mut object[key];
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry
}

/// The existing object at `key`, if any.
fn existing<'a>(object: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    object.get_mut(key).filter(|v| v.is_object())
}

fn items<'a>(object: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    object
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter(|v| v.is_object())
}

fn str_at<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_create(object: &Value) -> bool {
    unset(
        object
            .get("metadata")
            .and_then(|m| m.get("resourceVersion")),
    )
}

// ---------------------------------------------------------------------------------------------
// Resource lists
// ---------------------------------------------------------------------------------------------

/// Upstream `SetDefaults_ResourceList`: quantities round up to milli precision, and are kept in
/// the canonical form upstream serializes (`0.5` → `500m`, `1024Mi` → `1Gi`).
fn resource_list(list: &mut Value) {
    let Some(m) = list.as_object_mut() else {
        return;
    };
    for v in m.values_mut() {
        let parsed = match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        };
        if let Some(q) = parsed {
            *v = Value::String(q.round_up_milli().to_string());
        }
    }
}

fn resource_requirements(res: &mut Value) {
    for key in ["limits", "requests"] {
        if let Some(list) = existing(res, key) {
            resource_list(list);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates
// ---------------------------------------------------------------------------------------------

/// `SetDefaults_Pod` plus everything a pod template gets.
fn pod(object: &mut Value) {
    let spec = child(object, "spec");
    for key in ["containers", "initContainers"] {
        for c in items(spec, key) {
            requests_from_limits(c);
        }
    }
    set(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for c in items(spec, key) {
                for p in items(c, "ports") {
                    let unset_host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0;
                    if unset_host && let Some(cp) = p.get("containerPort").cloned() {
                        p["hostPort"] = cp;
                    }
                }
            }
        }
    }
    pod_spec(spec);
}

/// Requests default to limits, on Pods only (templates keep what the user wrote).
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let requests = child(child(c, "resources"), "requests");
    if let Some(r) = requests.as_object_mut() {
        for (k, v) in limits {
            r.entry(k).or_insert(v);
        }
    }
}

fn pod_template(template: &mut Value) {
    pod_spec(child(template, "spec"));
}

/// `SetDefaults_PodSpec` and the defaults of everything nested in a pod spec.
fn pod_spec(spec: &mut Value) {
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "securityContext", json!({}));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items(spec, key) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        volume(v);
    }
    for key in ["overhead"] {
        if let Some(list) = existing(spec, key) {
            resource_list(list);
        }
    }
    if let Some(res) = existing(spec, "resources") {
        resource_requirements(res);
    }
}

fn container(c: &mut Value) {
    if unset(c.get("imagePullPolicy")) {
        let policy = if image_tag(str_at(c, "image")).as_deref() == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c["imagePullPolicy"] = json!(policy);
    }
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    for p in items(c, "ports") {
        set(p, "protocol", json!("TCP"));
    }
    for e in items(c, "env") {
        if let Some(from) = existing(e, "valueFrom")
            && let Some(fr) = existing(from, "fieldRef")
        {
            set(fr, "apiVersion", json!("v1"));
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing(c, key) {
            probe(p);
        }
    }
    if let Some(l) = existing(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(h) = existing(l, key) {
                handler(h);
            }
        }
    }
    if let Some(res) = existing(c, "resources") {
        resource_requirements(res);
    }
}

/// The tag upstream's `parsers.ParseImageName` reports: `latest` when neither tag nor digest is
/// given, `None` when the reference does not parse or carries only a digest.
fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace()) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    // The repository path (after an optional registry host) must be lowercase.
    let path = match repo.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => repo,
    };
    if path.is_empty() || path.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_string()),
    }
}

/// `SetDefaults_Probe` and its handler.
fn probe(p: &mut Value) {
    for (key, default) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        let zero = p.get(key).and_then(Value::as_i64).unwrap_or(0) == 0;
        if zero {
            p[key] = json!(default);
        }
    }
    handler(p);
    if let Some(g) = existing(p, "grpc") {
        set(g, "service", json!(""));
    }
}

/// `SetDefaults_HTTPGetAction` inside probes and lifecycle hooks.
fn handler(h: &mut Value) {
    if let Some(get) = existing(h, "httpGet") {
        set(get, "path", json!("/"));
        set(get, "scheme", json!("HTTP"));
    }
}

/// Volume defaults: a source-less volume is an emptyDir; file modes default to 0644.
fn volume(v: &mut Value) {
    let has_source = v
        .as_object()
        .is_some_and(|m| m.iter().any(|(k, val)| k != "name" && !val.is_null()));
    if !has_source {
        v["emptyDir"] = json!({});
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = existing(v, key) {
            set(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = existing(v, "downwardAPI") {
        downward_api_items(d);
    }
    if let Some(p) = existing(v, "projected") {
        for src in items(p, "sources") {
            if let Some(t) = existing(src, "serviceAccountToken") {
                set(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = existing(src, "downwardAPI") {
                downward_api_items(d);
            }
        }
    }
    if let Some(hp) = existing(v, "hostPath")
        && hp.get("type").is_none_or(Value::is_null)
    {
        hp["type"] = json!("");
    }
    if let Some(i) = existing(v, "iscsi") {
        set(i, "iscsiInterface", json!("default"));
    }
    if let Some(r) = existing(v, "rbd") {
        set(r, "pool", json!("rbd"));
        set(r, "user", json!("admin"));
        set(r, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(a) = existing(v, "azureDisk") {
        set(a, "cachingMode", json!("ReadWrite"));
        set(a, "kind", json!("Shared"));
        set(a, "fsType", json!("ext4"));
        set(a, "readOnly", json!(false));
    }
    if let Some(s) = existing(v, "scaleIO") {
        set(s, "storageMode", json!("ThinProvisioned"));
        set(s, "fsType", json!("xfs"));
    }
    if let Some(img) = existing(v, "image")
        && unset(img.get("pullPolicy"))
    {
        let policy = if image_tag(str_at(img, "reference")).as_deref() == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        img["pullPolicy"] = json!(policy);
    }
    if let Some(e) = existing(v, "ephemeral")
        && let Some(t) = existing(e, "volumeClaimTemplate")
    {
        pvc_spec(child(t, "spec"));
    }
}

fn downward_api_items(d: &mut Value) {
    for item in items(d, "items") {
        if let Some(fr) = existing(item, "fieldRef") {
            set(fr, "apiVersion", json!("v1"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Core kinds
// ---------------------------------------------------------------------------------------------

fn replication_controller(object: &mut Value) {
    let template_labels = object
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        let spec = child(object, "spec");
        let empty = spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            spec["selector"] = labels.clone();
        }
        let meta = child(object, "metadata");
        let no_labels = meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if no_labels {
            meta["labels"] = labels;
        }
    }
    let spec = child(object, "spec");
    set(spec, "replicas", json!(1));
    if let Some(t) = existing(spec, "template") {
        pod_template(t);
    }
}

fn service(object: &mut Value) {
    let spec = child(object, "spec");
    set(spec, "sessionAffinity", json!("None"));
    match str_at(spec, "sessionAffinity") {
        "None" => {
            if let Some(m) = spec.as_object_mut() {
                m.remove("sessionAffinityConfig");
            }
        }
        "ClientIP" => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 10800 } });
            }
        }
        _ => {}
    }
    set(spec, "type", json!("ClusterIP"));
    for p in items(spec, "ports") {
        set(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(v) => v.as_i64() == Some(0),
        };
        if target_unset && let Some(port) = p.get("port").cloned() {
            p["targetPort"] = port;
        }
    }
    let svc_type = str_at(spec, "type").to_string();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && external_ips);
    if externally_accessible {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type != "ExternalName" {
        // The registry keeps clusterIPs in step with clusterIP and picks the cluster's single family.
        let ip = str_at(spec, "clusterIP").to_string();
        let ips_unset = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !ip.is_empty() && ips_unset {
            spec["clusterIPs"] = json!([ip]);
        }
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        let families_unset = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if families_unset {
            let v6 = str_at(spec, "clusterIP").contains(':');
            spec["ipFamilies"] = json!([if v6 { "IPv6" } else { "IPv4" }]);
        }
    }
}

fn secret(object: &mut Value) {
    set(object, "type", json!("Opaque"));
    // Upstream's conversion folds stringData into data (stringData wins) and never stores it.
    let string_data = object
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| v.as_object().cloned());
    if let Some(sd) = string_data {
        let data = child(object, "data");
        if let Some(d) = data.as_object_mut() {
            for (k, v) in sd {
                let text = v.as_str().unwrap_or("");
                d.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

fn namespace(object: &mut Value) {
    let create = is_create(object);
    let name = object
        .get("metadata")
        .map(|m| str_at(m, "name").to_string())
        .unwrap_or_default();
    if !name.is_empty() {
        let labels = child(child(object, "metadata"), "labels");
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    set(child(object, "status"), "phase", json!("Active"));
    if create {
        let spec = child(object, "spec");
        if !spec.get("finalizers").is_some_and(Value::is_array) {
            spec["finalizers"] = json!([]);
        }
        if let Some(f) = spec.get_mut("finalizers").and_then(Value::as_array_mut)
            && !f.iter().any(|x| x.as_str() == Some("kubernetes"))
        {
            f.push(json!("kubernetes"));
        }
    }
}

fn pvc_spec(spec: &mut Value) {
    set(spec, "volumeMode", json!("Filesystem"));
    if let Some(res) = existing(spec, "resources") {
        resource_requirements(res);
    }
}

fn persistent_volume_claim(object: &mut Value) {
    set(child(object, "status"), "phase", json!("Pending"));
    pvc_spec(child(object, "spec"));
}

fn persistent_volume(object: &mut Value) {
    set(child(object, "status"), "phase", json!("Pending"));
    let spec = child(object, "spec");
    set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set(spec, "volumeMode", json!("Filesystem"));
    if let Some(c) = existing(spec, "capacity") {
        resource_list(c);
    }
}

fn endpoints(object: &mut Value) {
    for ss in items(object, "subsets") {
        for p in items(ss, "ports") {
            set(p, "protocol", json!("TCP"));
        }
    }
}

fn limit_range(object: &mut Value) {
    for item in items(child(object, "spec"), "limits") {
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            if let Some(l) = existing(item, key) {
                resource_list(l);
            }
        }
        if str_at(item, "type") != "Container" {
            continue;
        }
        let max = item.get("max").cloned();
        let min = item.get("min").cloned();
        let default = child(item, "default");
        for (k, v) in max
            .as_ref()
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(d) = default.as_object_mut() {
                d.entry(k.clone()).or_insert(v.clone());
            }
        }
        let default = item.get("default").cloned();
        let request = child(item, "defaultRequest");
        for source in [default, min] {
            for (k, v) in source
                .as_ref()
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(r) = request.as_object_mut() {
                    r.entry(k.clone()).or_insert(v.clone());
                }
            }
        }
    }
}

fn node(object: &mut Value) {
    let status = child(object, "status");
    if let Some(c) = existing(status, "capacity") {
        resource_list(c);
    }
    let capacity = status.get("capacity").filter(|c| c.is_object()).cloned();
    if let Some(cap) = capacity
        && status.get("allocatable").is_none_or(Value::is_null)
    {
        status["allocatable"] = cap;
    }
}

// ---------------------------------------------------------------------------------------------
// apps/v1
// ---------------------------------------------------------------------------------------------

fn deployment(object: &mut Value) {
    let spec = child(object, "spec");
    set(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    set(strategy, "type", json!("RollingUpdate"));
    if str_at(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        set(ru, "maxUnavailable", json!("25%"));
        set(ru, "maxSurge", json!("25%"));
    }
    set(spec, "revisionHistoryLimit", json!(10));
    set(spec, "progressDeadlineSeconds", json!(600));
    pod_template(child(spec, "template"));
}

fn replica_set(object: &mut Value) {
    let spec = child(object, "spec");
    set(spec, "replicas", json!(1));
    pod_template(child(spec, "template"));
}

fn stateful_set(object: &mut Value) {
    let spec = child(object, "spec");
    set(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = child(spec, "updateStrategy");
    if unset(strategy.get("type")) {
        strategy["type"] = json!("RollingUpdate");
        set(strategy, "rollingUpdate", json!({}));
    }
    if str_at(strategy, "type") == "RollingUpdate"
        && let Some(ru) = existing(strategy, "rollingUpdate")
    {
        set(ru, "partition", json!(0));
    }
    let policy = child(spec, "persistentVolumeClaimRetentionPolicy");
    set(policy, "whenDeleted", json!("Retain"));
    set(policy, "whenScaled", json!("Retain"));
    set(spec, "replicas", json!(1));
    set(spec, "revisionHistoryLimit", json!(10));
    pod_template(child(spec, "template"));
    for claim in items(spec, "volumeClaimTemplates") {
        set(child(claim, "status"), "phase", json!("Pending"));
        pvc_spec(child(claim, "spec"));
    }
}

fn daemon_set(object: &mut Value) {
    let spec = child(object, "spec");
    let strategy = child(spec, "updateStrategy");
    set(strategy, "type", json!("RollingUpdate"));
    if str_at(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        set(ru, "maxUnavailable", json!(1));
        set(ru, "maxSurge", json!(0));
    }
    set(spec, "revisionHistoryLimit", json!(10));
    pod_template(child(spec, "template"));
}

// ---------------------------------------------------------------------------------------------
// batch/v1
// ---------------------------------------------------------------------------------------------

fn job(object: &mut Value) {
    let create = is_create(object);
    let (name, uid) = object
        .get("metadata")
        .map(|m| (str_at(m, "name").to_string(), str_at(m, "uid").to_string()))
        .unwrap_or_default();
    let spec = child(object, "spec");
    let completions_unset = unset(spec.get("completions"));
    if completions_unset && unset(spec.get("parallelism")) {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set(spec, "parallelism", json!(1));
    let per_index = !unset(spec.get("backoffLimitPerIndex"));
    set(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    let has_failure_policy = !unset(spec.get("podFailurePolicy"));
    if let Some(fp) = existing(spec, "podFailurePolicy") {
        for rule in items(fp, "rules") {
            for pattern in items(rule, "onPodConditions") {
                set(pattern, "status", json!("True"));
            }
        }
    }
    set(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if create && !manual && !uid.is_empty() {
        generate_job_selector(spec, &name, &uid);
    }
    pod_template(child(spec, "template"));
    let template_labels = object
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let Some(labels) = template_labels {
        let meta = child(object, "metadata");
        let empty = meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            meta["labels"] = labels;
        }
    }
}

/// The selector and pod labels the Job registry generates on create, tying pods to this Job.
fn generate_job_selector(spec: &mut Value, name: &str, uid: &str) {
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    if let Some(l) = labels.as_object_mut() {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            l.entry(key).or_insert(json!(name));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            l.entry(key).or_insert(json!(uid));
        }
    }
    let match_labels = child(child(spec, "selector"), "matchLabels");
    if let Some(m) = match_labels.as_object_mut() {
        m.entry("batch.kubernetes.io/controller-uid")
            .or_insert(json!(uid));
    }
}

fn cron_job(object: &mut Value) {
    let spec = child(object, "spec");
    set(spec, "concurrencyPolicy", json!("Allow"));
    set(spec, "suspend", json!(false));
    set(spec, "successfulJobsHistoryLimit", json!(3));
    set(spec, "failedJobsHistoryLimit", json!(1));
    pod_template(child(child(child(spec, "jobTemplate"), "spec"), "template"));
}

// ---------------------------------------------------------------------------------------------
// Other groups
// ---------------------------------------------------------------------------------------------

fn horizontal_pod_autoscaler(object: &mut Value) {
    let spec = child(object, "spec");
    set(spec, "minReplicas", json!(1));
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 80 } }
        }]);
    }
    if let Some(behavior) = existing(spec, "behavior") {
        let up = child(behavior, "scaleUp");
        set(up, "stabilizationWindowSeconds", json!(0));
        set(up, "selectPolicy", json!("Max"));
        if up.get("policies").is_none_or(Value::is_null) {
            up["policies"] = json!([
                { "type": "Pods", "value": 4, "periodSeconds": 15 },
                { "type": "Percent", "value": 100, "periodSeconds": 15 }
            ]);
        }
        let down = child(behavior, "scaleDown");
        set(down, "selectPolicy", json!("Max"));
        if down.get("policies").is_none_or(Value::is_null) {
            down["policies"] = json!([{ "type": "Percent", "value": 100, "periodSeconds": 15 }]);
        }
    }
}

fn network_policy(object: &mut Value) {
    let spec = child(object, "spec");
    for (dir, _) in [("ingress", "from"), ("egress", "to")] {
        for rule in items(spec, dir) {
            for p in items(rule, "ports") {
                set(p, "protocol", json!("TCP"));
            }
        }
    }
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_types {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        spec["policyTypes"] = if egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
    }
}

fn ingress_class(object: &mut Value) {
    let spec = child(object, "spec");
    if let Some(params) = existing(spec, "parameters") {
        set(params, "scope", json!("Cluster"));
    }
}

fn endpoint_slice(object: &mut Value) {
    for p in items(object, "ports") {
        if p.get("name").is_none_or(Value::is_null) {
            p["name"] = json!("");
        }
        set(p, "protocol", json!("TCP"));
    }
}

fn role_binding(object: &mut Value) {
    set(
        child(object, "roleRef"),
        "apiGroup",
        json!("rbac.authorization.k8s.io"),
    );
    for s in items(object, "subjects") {
        if matches!(str_at(s, "kind"), "User" | "Group") {
            set(s, "apiGroup", json!("rbac.authorization.k8s.io"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn defaulted(group: &str, plural: &str, mut object: Value) -> Value {
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        let r = find(group, version, plural).expect("served resource");
        apply_defaults(r, &mut object);
        object
    }

    fn template_pod_defaults_hold(spec: &Value) {
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        let c = &spec["containers"][0];
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
    }

    #[test]
    fn deployment_defaults_match_upstream() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
            ]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let pod = &spec["template"]["spec"];
        template_pod_defaults_hold(pod);
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        // enableServiceLinks is a Pod default, not a template default.
        assert!(pod.get("enableServiceLinks").is_none());
    }

    #[test]
    fn recreate_deployments_get_no_rolling_update() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {}}}}),
        );
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn pod_defaults_match_upstream() {
        let p = defaulted(
            "",
            "pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "image": "registry.example.com:5000/team/app:1.2",
                 "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}},
                 "livenessProbe": {"httpGet": {"port": 8080}},
                 "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
                {"name": "b", "image": "busybox"},
                {"name": "c", "image": "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
            ], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}),
        );
        let spec = &p["spec"];
        template_pod_defaults_hold(spec);
        assert_eq!(spec["enableServiceLinks"], true);
        let a = &spec["containers"][0];
        assert_eq!(a["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            a["resources"]["limits"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(
            a["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(
            a["livenessProbe"],
            json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                   "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(a["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][2]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
    }

    #[test]
    fn host_network_pods_default_host_ports() {
        let p = defaulted(
            "",
            "pods",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "a", "ports": [{"containerPort": 9100}]}]}}),
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["hostPort"], 9100);
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let s = defaulted(
            "",
            "services",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][1]["targetPort"], "https");
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert!(spec.get("externalTrafficPolicy").is_none());
    }

    #[test]
    fn externally_reachable_services_get_traffic_policies() {
        let s = defaulted(
            "",
            "services",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(s["spec"]["allocateLoadBalancerNodePorts"], true);
        let s = defaulted(
            "",
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "a.example.com"}}),
        );
        assert!(s["spec"].get("ipFamilies").is_none());
        assert!(s["spec"].get("internalTrafficPolicy").is_none());
        let s = defaulted(
            "",
            "services",
            json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            s["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
    }

    #[test]
    fn stateful_set_defaults_match_upstream() {
        let s = defaulted(
            "apps",
            "statefulsets",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1024Mi"}}}}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let claim = &spec["volumeClaimTemplates"][0];
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(claim["status"]["phase"], "Pending");
        template_pod_defaults_hold(&spec["template"]["spec"]);
    }

    #[test]
    fn daemon_set_and_replica_set_defaults_match_upstream() {
        let d = defaulted(
            "apps",
            "daemonsets",
            json!({"spec": {"template": {"spec": {}}}}),
        );
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        let r = defaulted(
            "apps",
            "replicasets",
            json!({"spec": {"template": {"spec": {}}}}),
        );
        assert_eq!(r["spec"]["replicas"], 1);
        assert_eq!(r["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn job_defaults_match_upstream() {
        let j = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
        );
        let spec = &j["spec"];
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert!(spec.get("manualSelector").is_none());
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = json!({"job-name": "pi", "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"});
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn parallel_jobs_keep_completions_unset() {
        let j = defaulted(
            "batch",
            "jobs",
            json!({"spec": {"parallelism": 3, "template": {"spec": {}}}}),
        );
        assert!(j["spec"].get("completions").is_none());
        assert_eq!(j["spec"]["parallelism"], 3);
        let j = defaulted(
            "batch",
            "jobs",
            json!({"spec": {"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}, "template": {"spec": {}}}}),
        );
        assert_eq!(j["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(
            j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
    }

    #[test]
    fn cron_job_defaults_match_upstream() {
        let c = defaulted(
            "batch",
            "cronjobs",
            json!({"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c:1"}]}}}}}}),
        );
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let job_spec = &spec["jobTemplate"]["spec"];
        assert!(job_spec.get("backoffLimit").is_none());
        assert_eq!(
            job_spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn secret_and_namespace_defaults_match_upstream() {
        let s = defaulted(
            "",
            "secrets",
            json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "hello"}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "YQ==", "b": "aGVsbG8="}));
        assert!(s.get("stringData").is_none());
        let n = defaulted("", "namespaces", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(n["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(n["status"]["phase"], "Active");
        assert_eq!(
            n["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        // An update after finalization does not bring the finalizer back.
        let n = defaulted(
            "",
            "namespaces",
            json!({"metadata": {"name": "team-a", "resourceVersion": "9"}, "spec": {}}),
        );
        assert!(n["spec"].get("finalizers").is_none());
    }

    #[test]
    fn claims_and_bindings_get_upstream_defaults() {
        let pvc = defaulted(
            "",
            "persistentvolumeclaims",
            json!({"spec": {"resources": {"requests": {"storage": "0.5Gi"}}}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "512Mi");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "Group", "name": "g"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(rb["subjects"][1].get("apiGroup").is_none());
        let np = defaulted(
            "networking.k8s.io",
            "networkpolicies",
            json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn defaults_are_idempotent() {
        let object = json!({"metadata": {"name": "web", "uid": "u"}, "spec": {"template": {"spec": {"containers": [
            {"name": "w", "image": "nginx", "resources": {"limits": {"cpu": "1.5"}}}]}}}});
        for (group, plural) in [
            ("apps", "deployments"),
            ("batch", "jobs"),
            ("apps", "statefulsets"),
            ("", "pods"),
        ] {
            let once = defaulted(group, plural, object.clone());
            let twice = defaulted(group, plural, once.clone());
            assert_eq!(once, twice, "{group}/{plural}");
        }
    }

    #[test]
    fn image_tags_are_read_like_upstream() {
        assert_eq!(image_tag("nginx").as_deref(), Some("latest"));
        assert_eq!(image_tag("nginx:latest").as_deref(), Some("latest"));
        assert_eq!(image_tag("localhost:5000/nginx").as_deref(), Some("latest"));
        assert_eq!(
            image_tag("localhost:5000/nginx:1.0").as_deref(),
            Some("1.0")
        );
        assert_eq!(image_tag("nginx@sha256:abc"), None);
        assert_eq!(image_tag("Nginx"), None);
        assert_eq!(image_tag(""), None);
    }
}
