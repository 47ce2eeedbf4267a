//! `meta.k8s.io/v1` Table rendering: the columns and cells upstream's API server prints for each kind.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::registry::Resource;

/// One column of a Table, as in upstream's `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

/// Columns for a kind, in upstream's order; `-o wide` columns have priority 1.
pub fn columns(resource: &Resource) -> Vec<Column> {
    use doc::*;
    let name = Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: OBJECT_META_NAME,
        priority: 0,
    };
    let age = col("Age", "string", OBJECT_META_CREATION_TIMESTAMP);
    let containers = wide("Containers", "string", CONTAINER_NAMES);
    let images = wide("Images", "string", CONTAINER_IMAGES);
    match printer(resource) {
        Printer::Pod => vec![
            name,
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age,
            wide("IP", "string", POD_STATUS_POD_IP),
            wide("Node", "string", POD_SPEC_NODE_NAME),
            wide("Nominated Node", "string", POD_STATUS_NOMINATED_NODE_NAME),
            wide("Readiness Gates", "string", POD_SPEC_READINESS_GATES),
        ],
        Printer::PodTemplate => vec![
            name,
            col("Containers", "string", CONTAINER_NAMES),
            col("Images", "string", CONTAINER_IMAGES),
            col("Pod Labels", "string", "The labels for the pod template."),
        ],
        Printer::PodDisruptionBudget => vec![
            name,
            col(
                "Min Available",
                "string",
                "The minimum number of pods that must be available.",
            ),
            col(
                "Max Unavailable",
                "string",
                "The maximum number of pods that may be unavailable.",
            ),
            col(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age,
        ],
        Printer::ReplicationController => vec![
            name,
            col("Desired", "integer", RC_SPEC_REPLICAS),
            col("Current", "integer", RC_STATUS_REPLICAS),
            col("Ready", "integer", RC_STATUS_READY_REPLICAS),
            age,
            containers,
            images,
            wide("Selector", "string", RC_SPEC_SELECTOR),
        ],
        Printer::ReplicaSet => vec![
            name,
            col("Desired", "integer", RS_SPEC_REPLICAS),
            col("Current", "integer", RS_STATUS_REPLICAS),
            col("Ready", "integer", RS_STATUS_READY_REPLICAS),
            age,
            containers,
            images,
            wide("Selector", "string", RS_SPEC_SELECTOR),
        ],
        Printer::DaemonSet => vec![
            name,
            col("Desired", "integer", DS_STATUS_DESIRED),
            col("Current", "integer", DS_STATUS_CURRENT),
            col("Ready", "integer", DS_STATUS_READY),
            col("Up-to-date", "integer", DS_STATUS_UPDATED),
            col("Available", "integer", DS_STATUS_AVAILABLE),
            col("Node Selector", "string", POD_SPEC_NODE_SELECTOR),
            age,
            containers,
            images,
            wide("Selector", "string", DS_SPEC_SELECTOR),
        ],
        Printer::Job => vec![
            name,
            col("Status", "string", "Status of the job."),
            col("Completions", "string", JOB_STATUS_SUCCEEDED),
            col("Duration", "string", "Time required to complete the job."),
            age,
            containers,
            images,
            wide("Selector", "string", JOB_SPEC_SELECTOR),
        ],
        Printer::CronJob => vec![
            name,
            col("Schedule", "string", CRON_JOB_SPEC_SCHEDULE),
            col("Timezone", "string", CRON_JOB_SPEC_TIME_ZONE),
            col("Suspend", "boolean", CRON_JOB_SPEC_SUSPEND),
            col("Active", "integer", CRON_JOB_STATUS_ACTIVE),
            col(
                "Last Schedule",
                "string",
                CRON_JOB_STATUS_LAST_SCHEDULE_TIME,
            ),
            age,
            containers,
            images,
            wide("Selector", "string", JOB_SPEC_SELECTOR),
        ],
        Printer::Service => vec![
            name,
            col("Type", "string", SERVICE_SPEC_TYPE),
            col("Cluster-IP", "string", SERVICE_SPEC_CLUSTER_IP),
            col("External-IP", "string", SERVICE_SPEC_EXTERNAL_IPS),
            col("Port(s)", "string", SERVICE_SPEC_PORTS),
            age,
            wide("Selector", "string", SERVICE_SPEC_SELECTOR),
        ],
        Printer::Ingress => vec![
            name,
            col(
                "Class",
                "string",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            col(
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            col(
                "Address",
                "string",
                "Address is a list containing ingress points for the load-balancer",
            ),
            col("Ports", "string", "Ports of TLS configurations that open"),
            age,
        ],
        Printer::IngressClass => vec![
            name,
            col(
                "Controller",
                "string",
                "Controller that is responsible for handling this class",
            ),
            col(
                "Parameters",
                "string",
                "A reference to a resource with additional parameters",
            ),
            age,
        ],
        Printer::StatefulSet => vec![
            name,
            col("Ready", "string", "Number of the pod with ready state"),
            age,
            containers,
            images,
        ],
        Printer::Endpoints => vec![name, col("Endpoints", "string", ENDPOINTS_SUBSETS), age],
        Printer::Node => vec![
            name,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            age,
            col("Version", "string", NODE_INFO_KUBELET_VERSION),
            wide("Internal-IP", "string", NODE_STATUS_ADDRESSES),
            wide("External-IP", "string", NODE_STATUS_ADDRESSES),
            wide("OS-Image", "string", NODE_INFO_OS_IMAGE),
            wide("Kernel-Version", "string", NODE_INFO_KERNEL_VERSION),
            wide(
                "Container-Runtime",
                "string",
                NODE_INFO_CONTAINER_RUNTIME_VERSION,
            ),
        ],
        // Upstream leads with when and what happened; the event's own name is a wide column.
        Printer::Event | Printer::EventsV1Event => vec![
            col("Last Seen", "string", EVENT_LAST_TIMESTAMP),
            col("Type", "string", EVENT_TYPE),
            col("Reason", "string", EVENT_REASON),
            col("Object", "string", EVENT_INVOLVED_OBJECT),
            wide("Subobject", "string", OBJECT_REFERENCE_FIELD_PATH),
            wide("Source", "string", EVENT_SOURCE),
            col("Message", "string", EVENT_MESSAGE),
            wide("First Seen", "string", EVENT_FIRST_TIMESTAMP),
            wide("Count", "string", EVENT_COUNT),
            Column {
                priority: 1,
                ..name
            },
        ],
        Printer::Namespace => vec![
            name,
            col("Status", "string", "The status of the namespace"),
            age,
        ],
        Printer::Secret => vec![
            name,
            col("Type", "string", SECRET_TYPE),
            col("Data", "string", SECRET_DATA),
            age,
        ],
        Printer::ServiceAccount => {
            vec![name, col("Secrets", "string", SERVICE_ACCOUNT_SECRETS), age]
        }
        Printer::PersistentVolume => vec![
            name,
            col("Capacity", "string", PV_SPEC_CAPACITY),
            col("Access Modes", "string", PV_SPEC_ACCESS_MODES),
            col("Reclaim Policy", "string", PV_SPEC_RECLAIM_POLICY),
            col("Status", "string", PV_STATUS_PHASE),
            col("Claim", "string", PV_SPEC_CLAIM_REF),
            col("StorageClass", "string", "StorageClass of the pv"),
            col(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pv",
            ),
            col("Reason", "string", PV_STATUS_REASON),
            age,
            wide("VolumeMode", "string", PV_SPEC_VOLUME_MODE),
        ],
        Printer::PersistentVolumeClaim => vec![
            name,
            col("Status", "string", PVC_STATUS_PHASE),
            col("Volume", "string", PVC_SPEC_VOLUME_NAME),
            col("Capacity", "string", PVC_STATUS_CAPACITY),
            col("Access Modes", "string", PVC_STATUS_ACCESS_MODES),
            col("StorageClass", "string", "StorageClass of the pvc"),
            col(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pvc",
            ),
            age,
            wide("VolumeMode", "string", PVC_SPEC_VOLUME_MODE),
        ],
        Printer::Deployment => vec![
            name,
            col("Ready", "string", "Number of the pod with ready state"),
            col("Up-to-date", "string", DEPLOYMENT_STATUS_UPDATED_REPLICAS),
            col("Available", "string", DEPLOYMENT_STATUS_AVAILABLE_REPLICAS),
            age,
            containers,
            images,
            wide("Selector", "string", DEPLOYMENT_SPEC_SELECTOR),
        ],
        Printer::HorizontalPodAutoscaler => vec![
            name,
            col("Reference", "string", HPA_SPEC_SCALE_TARGET_REF),
            col("Targets", "string", HPA_SPEC_METRICS),
            col("MinPods", "string", HPA_SPEC_MIN_REPLICAS),
            col("MaxPods", "string", HPA_SPEC_MAX_REPLICAS),
            col("Replicas", "string", HPA_STATUS_CURRENT_REPLICAS),
            age,
        ],
        Printer::ConfigMap => vec![name, col("Data", "string", CONFIG_MAP_DATA), age],
        Printer::NetworkPolicy => vec![
            name,
            col("Pod-Selector", "string", NETWORK_POLICY_SPEC_POD_SELECTOR),
            age,
        ],
        Printer::RoleBinding | Printer::ClusterRoleBinding => {
            let (role_ref, users, groups, service_accounts) =
                if matches!(printer(resource), Printer::RoleBinding) {
                    (
                        ROLE_BINDING_ROLE_REF,
                        "Users in the roleBinding",
                        "Groups in the roleBinding",
                        "ServiceAccounts in the roleBinding",
                    )
                } else {
                    (
                        CLUSTER_ROLE_BINDING_ROLE_REF,
                        "Users in the clusterRoleBinding",
                        "Groups in the clusterRoleBinding",
                        "ServiceAccounts in the clusterRoleBinding",
                    )
                };
            vec![
                name,
                col("Role", "string", role_ref),
                age,
                wide("Users", "string", users),
                wide("Groups", "string", groups),
                wide("ServiceAccounts", "string", service_accounts),
            ]
        }
        Printer::Lease => vec![
            name,
            col("Holder", "string", LEASE_SPEC_HOLDER_IDENTITY),
            age,
        ],
        Printer::StorageClass => vec![
            name,
            col("Provisioner", "string", STORAGE_CLASS_PROVISIONER),
            col("ReclaimPolicy", "string", STORAGE_CLASS_RECLAIM_POLICY),
            col(
                "VolumeBindingMode",
                "string",
                STORAGE_CLASS_VOLUME_BINDING_MODE,
            ),
            col(
                "AllowVolumeExpansion",
                "string",
                STORAGE_CLASS_ALLOW_VOLUME_EXPANSION,
            ),
            age,
        ],
        Printer::ControllerRevision => vec![
            name,
            col("Controller", "string", "Controller of the object"),
            col("Revision", "string", CONTROLLER_REVISION_REVISION),
            age,
        ],
        Printer::ResourceQuota => vec![
            name,
            col(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            col(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
            age,
        ],
        Printer::PriorityClass => vec![
            name,
            col("Value", "integer", PRIORITY_CLASS_VALUE),
            col("Global-Default", "boolean", PRIORITY_CLASS_GLOBAL_DEFAULT),
            age,
            wide(
                "PreemptionPolicy",
                "string",
                PRIORITY_CLASS_PREEMPTION_POLICY,
            ),
        ],
        Printer::EndpointSlice => vec![
            name,
            col("AddressType", "string", ENDPOINT_SLICE_ADDRESS_TYPE),
            col("Ports", "string", ENDPOINT_SLICE_PORTS),
            col("Endpoints", "string", ENDPOINT_SLICE_ENDPOINTS),
            age,
        ],
        // metrics-server's: the pod's usage summed over its containers.
        Printer::Metrics => vec![
            Column {
                description: "Name of the resource",
                ..name
            },
            Column {
                format: "quantity",
                ..col("cpu", "string", "")
            },
            Column {
                format: "quantity",
                ..col("memory", "string", "")
            },
            Column {
                format: "duration",
                ..col("Window", "string", "")
            },
        ],
        Printer::Default => vec![
            name,
            col("Created At", "date", OBJECT_META_CREATION_TIMESTAMP),
        ],
    }
}

/// Cells for one stored object (upstream JSON field names), one per column of [`columns`].
pub fn cells(resource: &Resource, object: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let o = object;
    match printer(resource) {
        Printer::Pod => pod_cells(o, now),
        Printer::PodTemplate => {
            let (names, images) = container_cells(o, "/template/spec/containers");
            vec![
                name(o),
                names,
                images,
                format_labels(at(o, "/template/metadata/labels")).into(),
            ]
        }
        Printer::PodDisruptionBudget => vec![
            name(o),
            int_or_string(at(o, "/spec/minAvailable")).into(),
            int_or_string(at(o, "/spec/maxUnavailable")).into(),
            int(o, "/status/disruptionsAllowed").into(),
            age(o, now),
        ],
        Printer::ReplicationController => {
            let (names, images) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                replicas(o).into(),
                int(o, "/status/replicas").into(),
                int(o, "/status/readyReplicas").into(),
                age(o, now),
                names,
                images,
                format_labels(at(o, "/spec/selector")).into(),
            ]
        }
        Printer::ReplicaSet => {
            let (names, images) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                replicas(o).into(),
                int(o, "/status/replicas").into(),
                int(o, "/status/readyReplicas").into(),
                age(o, now),
                names,
                images,
                format_label_selector(at(o, "/spec/selector")).into(),
            ]
        }
        Printer::DaemonSet => {
            let (names, images) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                int(o, "/status/desiredNumberScheduled").into(),
                int(o, "/status/currentNumberScheduled").into(),
                int(o, "/status/numberReady").into(),
                int(o, "/status/updatedNumberScheduled").into(),
                int(o, "/status/numberAvailable").into(),
                format_labels(at(o, "/spec/template/spec/nodeSelector")).into(),
                age(o, now),
                names,
                images,
                format_label_selector(at(o, "/spec/selector")).into(),
            ]
        }
        Printer::Job => job_cells(o, now),
        Printer::CronJob => {
            let last_schedule = match at(o, "/status/lastScheduleTime") {
                Value::Null => "<none>".to_string(),
                t => since(t, now),
            };
            let (names, images) =
                container_cells(o, "/spec/jobTemplate/spec/template/spec/containers");
            vec![
                name(o),
                text(o, "/spec/schedule").into(),
                non_empty(text(o, "/spec/timeZone"))
                    .unwrap_or("<none>")
                    .into(),
                // Upstream defaults `suspend` to false before anything is printed.
                if bool_at(o, "/spec/suspend") {
                    "True"
                } else {
                    "False"
                }
                .into(),
                (list(o, "/status/active").len() as i64).into(),
                last_schedule.into(),
                age(o, now),
                names,
                images,
                format_label_selector(at(o, "/spec/jobTemplate/spec/selector")).into(),
            ]
        }
        Printer::Service => service_cells(o, now),
        Printer::Ingress => {
            let tls = !list(o, "/spec/tls").is_empty();
            vec![
                name(o),
                non_empty(text(o, "/spec/ingressClassName"))
                    .unwrap_or("<none>")
                    .into(),
                ingress_hosts(list(o, "/spec/rules")).into(),
                load_balancer_addresses(at(o, "/status/loadBalancer")).into(),
                if tls { "80, 443" } else { "80" }.into(),
                age(o, now),
            ]
        }
        Printer::IngressClass => {
            let parameters = match at(o, "/spec/parameters") {
                p @ Value::Object(_) => {
                    let mut s = text(p, "/kind").to_string();
                    if let Some(group) = at(p, "/apiGroup").as_str() {
                        s = format!("{s}.{group}");
                    }
                    format!("{s}/{}", text(p, "/name"))
                }
                _ => "<none>".to_string(),
            };
            vec![
                name(o),
                text(o, "/spec/controller").into(),
                parameters.into(),
                age(o, now),
            ]
        }
        Printer::StatefulSet => {
            let (names, images) = container_cells(o, "/spec/template/spec/containers");
            vec![
                name(o),
                format!("{}/{}", int(o, "/status/readyReplicas"), replicas(o)).into(),
                age(o, now),
                names,
                images,
            ]
        }
        Printer::Endpoints => vec![
            name(o),
            format_endpoints(list(o, "/subsets")).into(),
            age(o, now),
        ],
        Printer::Node => node_cells(o, now),
        Printer::Event => event_cells(o, &EVENT_V1_FIELDS, now),
        Printer::EventsV1Event => event_cells(o, &EVENTS_K8S_IO_FIELDS, now),
        Printer::Namespace => vec![
            name(o),
            // Namespaces are created Active; the phase is never left empty upstream.
            non_empty(text(o, "/status/phase"))
                .unwrap_or("Active")
                .into(),
            age(o, now),
        ],
        Printer::Secret => {
            // `stringData` is folded into `data` on write upstream, so both count as keys.
            let mut data_keys = keys(o, "/data");
            data_keys.extend(keys_of(o, "/stringData"));
            data_keys.sort();
            data_keys.dedup();
            vec![
                name(o),
                non_empty(text(o, "/type")).unwrap_or("Opaque").into(),
                (data_keys.len() as i64).into(),
                age(o, now),
            ]
        }
        Printer::ServiceAccount => vec![
            name(o),
            (list(o, "/secrets").len() as i64).into(),
            age(o, now),
        ],
        Printer::PersistentVolume => persistent_volume_cells(o, now),
        Printer::PersistentVolumeClaim => persistent_volume_claim_cells(o, now),
        Printer::Deployment => {
            let (names, images) = container_cells(o, "/spec/template/spec/containers");
            // Upstream prints the bare selector here, without FormatLabelSelector's "<none>".
            let selector = label_selector_string(at(o, "/spec/selector"))
                .unwrap_or_else(|()| "<invalid>".to_string());
            vec![
                name(o),
                format!("{}/{}", int(o, "/status/readyReplicas"), replicas(o)).into(),
                int(o, "/status/updatedReplicas").into(),
                int(o, "/status/availableReplicas").into(),
                age(o, now),
                names,
                images,
                selector.into(),
            ]
        }
        Printer::HorizontalPodAutoscaler => {
            let min_pods = match at(o, "/spec/minReplicas").as_i64() {
                Some(n) => n.to_string(),
                None => "<unset>".to_string(),
            };
            vec![
                name(o),
                format!(
                    "{}/{}",
                    text(o, "/spec/scaleTargetRef/kind"),
                    text(o, "/spec/scaleTargetRef/name")
                )
                .into(),
                hpa_targets(list(o, "/spec/metrics"), list(o, "/status/currentMetrics")).into(),
                min_pods.into(),
                int(o, "/spec/maxReplicas").into(),
                int(o, "/status/currentReplicas").into(),
                age(o, now),
            ]
        }
        Printer::ConfigMap => vec![
            name(o),
            ((keys(o, "/data").len() + keys(o, "/binaryData").len()) as i64).into(),
            age(o, now),
        ],
        Printer::NetworkPolicy => vec![
            name(o),
            format_label_selector(at(o, "/spec/podSelector")).into(),
            age(o, now),
        ],
        Printer::RoleBinding | Printer::ClusterRoleBinding => {
            let (users, groups, service_accounts) = subjects(list(o, "/subjects"));
            vec![
                name(o),
                format!("{}/{}", text(o, "/roleRef/kind"), text(o, "/roleRef/name")).into(),
                age(o, now),
                users.join(", ").into(),
                groups.join(", ").into(),
                service_accounts.join(", ").into(),
            ]
        }
        Printer::Lease => vec![name(o), text(o, "/spec/holderIdentity").into(), age(o, now)],
        Printer::StorageClass => {
            let mut shown = text(o, "/metadata/name").to_string();
            if is_default_storage_class(o) {
                shown.push_str(" (default)");
            }
            vec![
                shown.into(),
                text(o, "/provisioner").into(),
                non_empty(text(o, "/reclaimPolicy"))
                    .unwrap_or("Delete")
                    .into(),
                non_empty(text(o, "/volumeBindingMode"))
                    .unwrap_or("Immediate")
                    .into(),
                bool_at(o, "/allowVolumeExpansion").into(),
                age(o, now),
            ]
        }
        Printer::ControllerRevision => vec![
            name(o),
            controller_of(o).into(),
            int(o, "/revision").into(),
            age(o, now),
        ],
        Printer::ResourceQuota => {
            let (requests, limits) = quota_usage(o);
            vec![name(o), requests.into(), limits.into(), age(o, now)]
        }
        Printer::PriorityClass => vec![
            name(o),
            int(o, "/value").into(),
            bool_at(o, "/globalDefault").into(),
            age(o, now),
            non_empty(text(o, "/preemptionPolicy"))
                .unwrap_or("PreemptLowerPriority")
                .into(),
        ],
        Printer::EndpointSlice => vec![
            name(o),
            text(o, "/addressType").into(),
            endpoint_slice_ports(list(o, "/ports")).into(),
            endpoint_slice_endpoints(list(o, "/endpoints")).into(),
            age(o, now),
        ],
        Printer::Metrics => {
            let (cpu, memory) = super::metrics::total_usage(o);
            vec![
                name(o),
                cpu.into(),
                memory.into(),
                text(o, "/window").into(),
            ]
        }
        Printer::Default => {
            // Upstream formats Go's zero time when the timestamp is missing.
            let created = at(o, "/metadata/creationTimestamp")
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| {
                    t.with_timezone(&Utc)
                        .to_rfc3339_opts(SecondsFormat::Secs, true)
                })
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
            vec![name(o), created.into()]
        }
    }
}

/// The whole `meta.k8s.io/v1` Table; `include` is "None", "Metadata" (the default) or "Object".
pub fn table(
    resource: &Resource,
    objects: &[Value],
    list_metadata: Value,
    include: &str,
    now: DateTime<Utc>,
) -> Value {
    let column_definitions: Vec<Value> = columns(resource)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(resource, object, now)));
            if let Some(conditions) = row_conditions(resource, object) {
                row.insert("conditions".into(), conditions);
            }
            match include {
                "None" => {}
                "Object" => {
                    row.insert("object".into(), with_type_meta(resource, object));
                }
                _ => {
                    let metadata = match at(object, "/metadata") {
                        m @ Value::Object(_) => m.clone(),
                        _ => json!({}),
                    };
                    row.insert(
                        "object".into(),
                        json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": metadata,
                        }),
                    );
                }
            }
            Value::Object(row)
        })
        .collect();
    // Upstream's ListMeta omits empty fields.
    let metadata: Map<String, Value> = match list_metadata {
        Value::Object(m) => m
            .into_iter()
            .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
            .collect(),
        _ => Map::new(),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// apimachinery's `duration.HumanDuration`: about two significant figures ("90s", "3h12m", "2d3h", "4y").
pub fn human_duration(d: Duration) -> String {
    // Truncates toward zero like Go's int(d.Seconds()); up to a second of clock skew reads as "0s".
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Which upstream printer a served kind uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    EventsV1Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    Lease,
    StorageClass,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    EndpointSlice,
    /// metrics-server's: Name, cpu, memory and Window.
    Metrics,
    /// Upstream's default convertor: Name and Created At. LimitRange, Role, ClusterRole and the
    /// review kinds have no printer upstream and get this.
    Default,
}

fn printer(resource: &Resource) -> Printer {
    match (resource.group, resource.kind) {
        ("", "Pod") => Printer::Pod,
        ("", "PodTemplate") => Printer::PodTemplate,
        ("policy", "PodDisruptionBudget") => Printer::PodDisruptionBudget,
        ("", "ReplicationController") => Printer::ReplicationController,
        ("apps", "ReplicaSet") => Printer::ReplicaSet,
        ("apps", "DaemonSet") => Printer::DaemonSet,
        ("batch", "Job") => Printer::Job,
        ("batch", "CronJob") => Printer::CronJob,
        ("", "Service") => Printer::Service,
        ("networking.k8s.io", "Ingress") => Printer::Ingress,
        ("networking.k8s.io", "IngressClass") => Printer::IngressClass,
        ("apps", "StatefulSet") => Printer::StatefulSet,
        ("", "Endpoints") => Printer::Endpoints,
        ("", "Node") => Printer::Node,
        ("", "Event") => Printer::Event,
        ("events.k8s.io", "Event") => Printer::EventsV1Event,
        ("", "Namespace") => Printer::Namespace,
        ("", "Secret") => Printer::Secret,
        ("", "ServiceAccount") => Printer::ServiceAccount,
        ("", "PersistentVolume") => Printer::PersistentVolume,
        ("", "PersistentVolumeClaim") => Printer::PersistentVolumeClaim,
        ("apps", "Deployment") => Printer::Deployment,
        ("autoscaling", "HorizontalPodAutoscaler") => Printer::HorizontalPodAutoscaler,
        ("", "ConfigMap") => Printer::ConfigMap,
        ("networking.k8s.io", "NetworkPolicy") => Printer::NetworkPolicy,
        ("rbac.authorization.k8s.io", "RoleBinding") => Printer::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Printer::ClusterRoleBinding,
        ("coordination.k8s.io", "Lease") => Printer::Lease,
        ("storage.k8s.io", "StorageClass") => Printer::StorageClass,
        ("apps", "ControllerRevision") => Printer::ControllerRevision,
        ("", "ResourceQuota") => Printer::ResourceQuota,
        ("scheduling.k8s.io", "PriorityClass") => Printer::PriorityClass,
        ("discovery.k8s.io", "EndpointSlice") => Printer::EndpointSlice,
        ("metrics.k8s.io", _) => Printer::Metrics,
        _ => Printer::Default,
    }
}

fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..col(name, type_, description)
    }
}

/// Upstream marks finished pods so clients can tell them apart from live ones.
fn row_conditions(resource: &Resource, object: &Value) -> Option<Value> {
    if printer(resource) != Printer::Pod {
        return None;
    }
    let (reason, message) = match text(object, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// The object as upstream encodes it, with its `apiVersion` and `kind` first.
fn with_type_meta(resource: &Resource, object: &Value) -> Value {
    let Value::Object(fields) = object else {
        return object.clone();
    };
    let mut out = Map::new();
    out.insert(
        "apiVersion".into(),
        fields
            .get("apiVersion")
            .cloned()
            .unwrap_or_else(|| resource.api_version().into()),
    );
    out.insert(
        "kind".into(),
        fields
            .get("kind")
            .cloned()
            .unwrap_or_else(|| resource.kind.into()),
    );
    for (k, v) in fields {
        if k != "apiVersion" && k != "kind" {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

// ---- JSON access: missing or mistyped fields read as upstream's zero values ----

static NULL: Value = Value::Null;

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&NULL)
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer).as_str().unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    at(v, pointer).as_i64().unwrap_or(0)
}

fn bool_at(v: &Value, pointer: &str) -> bool {
    at(v, pointer).as_bool().unwrap_or(false)
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    at(v, pointer).as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn keys_of<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a String> {
    at(v, pointer).as_object().into_iter().flat_map(Map::keys)
}

fn keys<'a>(v: &'a Value, pointer: &str) -> Vec<&'a String> {
    keys_of(v, pointer).collect()
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn name(o: &Value) -> Value {
    text(o, "/metadata/name").into()
}

/// `spec.replicas`, which upstream defaults to 1.
fn replicas(o: &Value) -> i64 {
    at(o, "/spec/replicas").as_i64().unwrap_or(1)
}

/// A timestamp; Go's zero time counts as unset, as `metav1.Time.IsZero` does.
fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()?
        .with_timezone(&Utc);
    let zero = t.timestamp() == -62_135_596_800 && t.timestamp_subsec_nanos() == 0;
    (!zero).then_some(t)
}

/// Upstream's `translateTimestampSince`.
fn since(v: &Value, now: DateTime<Utc>) -> String {
    match parse_time(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn age(o: &Value, now: DateTime<Utc>) -> Value {
    since(at(o, "/metadata/creationTimestamp"), now).into()
}

/// Keeps the later of two optional times, as upstream tracks the last restart.
fn keep_latest(latest: &mut Option<DateTime<Utc>>, candidate: Option<DateTime<Utc>>) {
    if let Some(c) = candidate
        && latest.is_none_or(|l| l < c)
    {
        *latest = Some(c);
    }
}

/// A quantity or int-or-string as upstream prints it (the stored form).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A `*resource.Quantity`'s String(): "<nil>" when absent.
fn quantity(v: &Value) -> String {
    if v.is_null() {
        "<nil>".to_string()
    } else {
        scalar(v)
    }
}

fn int_or_string(v: &Value) -> String {
    if v.is_null() {
        "N/A".to_string()
    } else {
        scalar(v)
    }
}

/// `layoutContainerCells`: names and images, comma-separated.
fn container_cells(o: &Value, pointer: &str) -> (Value, Value) {
    let containers = list(o, pointer);
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(",").into(), images.join(",").into())
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or "<none>".
fn format_labels(v: &Value) -> String {
    let Some(map) = v.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", scalar(v)))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, "<none>" when it selects nothing or
/// everything, "<error>" when it does not parse.
fn format_label_selector(v: &Value) -> String {
    match label_selector_string(v) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// `LabelSelectorAsSelector(...).String()`: requirements sorted by key, joined by commas.
fn label_selector_string(v: &Value) -> Result<String, ()> {
    let Value::Object(_) = v else {
        return Ok(String::new());
    };
    let mut requirements: Vec<(&str, String)> = Vec::new();
    if let Some(labels) = at(v, "/matchLabels").as_object() {
        for (key, value) in labels {
            let value = value.as_str().ok_or(())?;
            requirements.push((key, format!("{key}={value}")));
        }
    }
    for expr in list(v, "/matchExpressions") {
        let key = text(expr, "/key");
        let values: Vec<&str> = list(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let rendered = match text(expr, "/operator") {
            "In" if !values.is_empty() => format!("{key} in ({})", sorted.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", sorted.join(",")),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        requirements.push((key, rendered));
    }
    // Stable, like upstream's insertion sort over a selector's few requirements.
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// Comma-joined, with " + N more..." past `max` items; "<unset>" when empty.
fn list_with_more(items: Vec<String>, max: usize) -> String {
    let count = items.len();
    if count > max {
        format!("{} + {} more...", items[..max].join(","), count - max)
    } else if count == 0 {
        "<unset>".to_string()
    } else {
        items.join(",")
    }
}

// ---- Pods ----

fn is_restartable(container: &Value) -> bool {
    text(container, "/restartPolicy") == "Always"
}

fn has_condition(pod: &Value, type_: &str, status: &str) -> bool {
    list(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == type_ && text(c, "/status") == status)
}

/// Upstream's `printPod`: the aggregate status kubectl shows for a pod.
fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let init_specs = list(pod, "/spec/initContainers");
    let mut total = list(pod, "/spec/containers").len();
    // Sidecars (restartable init containers) run alongside the app containers, so they count.
    total += init_specs.iter().filter(|c| is_restartable(c)).count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    // Pods are created Pending upstream, so an absent phase reads as that.
    let phase = non_empty(text(pod, "/status/phase")).unwrap_or("Pending");
    let mut reason = non_empty(text(pod, "/status/reason"))
        .unwrap_or(phase)
        .to_string();
    if list(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, status) in list(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let restartable = init_specs
            .iter()
            .find(|c| text(c, "/name") == text(status, "/name"))
            .is_some_and(is_restartable);
        let count = int(status, "/restartCount");
        let finished = parse_time(at(status, "/lastState/terminated/finishedAt"));
        restarts += count;
        keep_latest(&mut last_restart, finished);
        if restartable {
            sidecar_restarts += count;
            keep_latest(&mut last_sidecar_restart, finished);
        }
        let terminated = at(status, "/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_object() && int(terminated, "/exitCode") == 0 {
            continue;
        }
        if restartable && bool_at(status, "/started") {
            if bool_at(status, "/ready") {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match non_empty(text(terminated, "/reason")) {
                Some(r) => format!("Init:{r}"),
                None if int(terminated, "/signal") != 0 => {
                    format!("Init:Signal:{}", int(terminated, "/signal"))
                }
                None => format!("Init:ExitCode:{}", int(terminated, "/exitCode")),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    // An initialized pod's restarts are its app containers' plus its sidecars'; ordinary init
    // containers that restarted while initializing no longer count.
    let initialized = list(pod, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == "Initialized")
        .is_some_and(|c| text(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked backwards so the first container's state is the one shown.
        for status in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(status, "/restartCount");
            keep_latest(
                &mut last_restart,
                parse_time(at(status, "/lastState/terminated/finishedAt")),
            );
            let terminated = at(status, "/state/terminated");
            let waiting_reason = text(status, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if terminated.is_object() {
                reason = match non_empty(text(terminated, "/reason")) {
                    Some(r) => r.to_string(),
                    None if int(terminated, "/signal") != 0 => {
                        format!("Signal:{}", int(terminated, "/signal"))
                    }
                    None => format!("ExitCode:{}", int(terminated, "/exitCode")),
                };
            } else if bool_at(status, "/ready") && at(status, "/state/running").is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a completed container and one still running is not done.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready", "True") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = !at(pod, "/metadata/deletionTimestamp").is_null();
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    // podIPs supersedes podIP upstream and is kept in step with it.
    let ip = list(pod, "/status/podIPs")
        .first()
        .map(|p| text(p, "/ip"))
        .or_else(|| Some(text(pod, "/status/podIP")))
        .and_then(non_empty)
        .unwrap_or("<none>");
    let gates = list(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(pod, "/status/conditions");
        let satisfied = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| text(c, "/type") == text(g, "/conditionType"))
                    .is_some_and(|c| text(c, "/status") == "True")
            })
            .count();
        format!("{satisfied}/{}", gates.len())
    };

    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts.into(),
        age(pod, now),
        ip.into(),
        non_empty(text(pod, "/spec/nodeName"))
            .unwrap_or("<none>")
            .into(),
        non_empty(text(pod, "/status/nominatedNodeName"))
            .unwrap_or("<none>")
            .into(),
        readiness_gates.into(),
    ]
}

// ---- Workloads ----

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(job, "/status/succeeded");
    let completions = match at(job, "/spec/completions").as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        parse_time(at(job, "/status/startTime")),
        parse_time(at(job, "/status/completionTime")),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    // Upstream reads the first condition of each type.
    let condition = |type_: &str| {
        list(job, "/status/conditions")
            .iter()
            .find(|c| text(c, "/type") == type_)
            .is_some_and(|c| text(c, "/status") == "True")
    };
    let status = if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if !at(job, "/metadata/deletionTimestamp").is_null() {
        "Terminating"
    } else if condition("Suspended") {
        "Suspended"
    } else if condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(job, "/spec/template/spec/containers");
    vec![
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        names,
        images,
        format_label_selector(at(job, "/spec/selector")).into(),
    ]
}

fn controller_of(o: &Value) -> String {
    let Some(owner) = list(o, "/metadata/ownerReferences")
        .iter()
        .find(|r| bool_at(r, "/controller"))
    else {
        return "<none>".to_string();
    };
    let name = text(owner, "/name");
    let kind = text(owner, "/kind");
    let group = match text(owner, "/apiVersion")
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_version] => "",
        [group, _version] => group,
        // Upstream fails the whole request on a malformed apiVersion; the bare name keeps the row.
        _ => return name.to_string(),
    };
    match (group, kind) {
        ("", "") => name.to_string(),
        ("", kind) => format!("{}/{name}", kind.to_lowercase()),
        (group, kind) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

fn hpa_targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let mut items = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        // Current values line up with the spec by position upstream.
        let status = statuses.get(i).unwrap_or(&NULL);
        let item = match text(spec, "/type") {
            source @ ("External" | "Object") => {
                let field = if source == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = at(spec, &format!("/{field}/target"));
                let current = at(status, &format!("/{field}"));
                if !at(target, "/averageValue").is_null() {
                    let cur = match at(current, "/current/averageValue") {
                        v if current.is_object() && !v.is_null() => scalar(v),
                        _ => "<unknown>".to_string(),
                    };
                    format!("{cur}/{} (avg)", quantity(at(target, "/averageValue")))
                } else {
                    let cur = if current.is_object() {
                        quantity(at(current, "/current/value"))
                    } else {
                        "<unknown>".to_string()
                    };
                    format!("{cur}/{}", quantity(at(target, "/value")))
                }
            }
            "Pods" => {
                let current = at(status, "/pods");
                let cur = if current.is_object() {
                    quantity(at(current, "/current/averageValue"))
                } else {
                    "<unknown>".to_string()
                };
                format!("{cur}/{}", quantity(at(spec, "/pods/target/averageValue")))
            }
            source @ ("Resource" | "ContainerResource") => {
                let field = if source == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let metric = at(spec, &format!("/{field}"));
                let target = at(metric, "/target");
                let current = at(status, &format!("/{field}"));
                let resource = text(metric, "/name");
                if !at(target, "/averageValue").is_null() {
                    let cur = if current.is_object() {
                        quantity(at(current, "/current/averageValue"))
                    } else {
                        "<unknown>".to_string()
                    };
                    format!(
                        "{resource}: {cur}/{}",
                        quantity(at(target, "/averageValue"))
                    )
                } else {
                    let cur = match at(current, "/current/averageUtilization").as_i64() {
                        Some(u) => format!("{u}%"),
                        None => "<unknown>".to_string(),
                    };
                    let goal = match at(target, "/averageUtilization").as_i64() {
                        Some(u) => format!("{u}%"),
                        None => "<auto>".to_string(),
                    };
                    format!("{resource}: {cur}/{goal}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        items.push(item);
    }
    if items.len() > MAX {
        format!(
            "{} + {} more...",
            items[..MAX].join(", "),
            items.len() - MAX
        )
    } else {
        items.join(", ")
    }
}

// ---- Services and networking ----

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Upstream defaults the type to ClusterIP and clusterIPs from clusterIP before printing.
    let type_ = non_empty(text(svc, "/spec/type")).unwrap_or("ClusterIP");
    let cluster_ip = list(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| at(svc, "/spec/clusterIP").as_str())
        .and_then(non_empty)
        .unwrap_or("<none>");
    let external_ips: Vec<String> = list(svc, "/spec/externalIPs").iter().map(scalar).collect();
    let external = match type_ {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(at(svc, "/status/loadBalancer"));
            if !external_ips.is_empty() {
                let mut all: Vec<String> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').map(str::to_string).collect()
                };
                all.extend(external_ips);
                all.join(",")
            } else if lb.is_empty() {
                "<pending>".to_string()
            } else {
                lb
            }
        }
        "ExternalName" => text(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = non_empty(text(p, "/protocol")).unwrap_or("TCP");
            match int(p, "/nodePort") {
                node_port if node_port > 0 => format!("{}:{node_port}/{protocol}", int(p, "/port")),
                _ => format!("{}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name(svc),
        type_.into(),
        cluster_ip.into(),
        external.into(),
        ports.into(),
        age(svc, now),
        format_labels(at(svc, "/spec/selector")).into(),
    ]
}

/// Load-balancer ingress IPs (or hostnames), sorted and de-duplicated; the server prints them
/// untruncated because it always renders the wide form.
fn load_balancer_addresses(status: &Value) -> String {
    let mut addresses: Vec<&str> = list(status, "/ingress")
        .iter()
        .filter_map(|i| non_empty(text(i, "/ip")).or_else(|| non_empty(text(i, "/hostname"))))
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses.join(",")
}

fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        if let Some(host) = non_empty(text(rule, "/host"))
            && !more
        {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

/// `net.JoinHostPort`: IPv6 addresses get brackets.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream's `formatEndpoints`: up to three `ip:port`s, then "+ N more...".
fn format_endpoints(subsets: &[Value]) -> String {
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = list(subset, "/addresses");
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            shown.extend(
                addresses
                    .iter()
                    .map(|a| text(a, "/ip").to_string())
                    .take(MAX - shown.len()),
            );
            continue;
        }
        for port in ports {
            count += addresses.len();
            let port = int(port, "/port");
            shown.extend(
                addresses
                    .iter()
                    .map(|a| host_port(text(a, "/ip"), port))
                    .take(MAX - shown.len()),
            );
        }
    }
    if count > shown.len() {
        format!("{} + {} more...", shown.join(","), count - MAX)
    } else {
        shown.join(",")
    }
}

fn endpoint_slice_ports(ports: &[Value]) -> String {
    let items = ports
        .iter()
        .map(|p| match at(p, "/port").as_i64() {
            Some(n) => n.to_string(),
            None => at(p, "/name").as_str().unwrap_or("*").to_string(),
        })
        .collect();
    list_with_more(items, 3)
}

fn endpoint_slice_endpoints(endpoints: &[Value]) -> String {
    let items = endpoints
        .iter()
        .flat_map(|e| list(e, "/addresses").iter().map(scalar))
        .collect();
    list_with_more(items, 3)
}

// ---- Nodes, events, storage, RBAC, quota ----

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Only the Ready condition feeds the status; the last one of that type wins, as in
    // upstream's condition map.
    let ready = list(node, "/status/conditions")
        .iter()
        .rfind(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = at(node, "/metadata/labels").as_object() {
        for (key, value) in labels {
            if let Some(role) = key
                .strip_prefix("node-role.kubernetes.io/")
                .and_then(non_empty)
            {
                roles.push(role);
            } else if key == "kubernetes.io/role"
                && let Some(role) = value.as_str().and_then(non_empty)
            {
                roles.push(role);
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |type_: &str| {
        list(node, "/status/addresses")
            .iter()
            .find(|a| text(a, "/type") == type_)
            .map_or("<none>", |a| text(a, "/address"))
    };
    let info = |field: &str| {
        non_empty(text(node, &format!("/status/nodeInfo/{field}"))).unwrap_or("<unknown>")
    };
    vec![
        name(node),
        status.join(",").into(),
        roles.into(),
        age(node, now),
        text(node, "/status/nodeInfo/kubeletVersion").into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

/// Where an event's fields live: core/v1 and events.k8s.io/v1 name them differently, and
/// upstream converts both to one internal type before printing.
struct EventFields {
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    reporting_controller: &'static str,
}

const EVENT_V1_FIELDS: EventFields = EventFields {
    regarding: "/involvedObject",
    message: "/message",
    source: "/source",
    first_timestamp: "/firstTimestamp",
    last_timestamp: "/lastTimestamp",
    count: "/count",
    reporting_controller: "/reportingComponent",
};

const EVENTS_K8S_IO_FIELDS: EventFields = EventFields {
    regarding: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    first_timestamp: "/deprecatedFirstTimestamp",
    last_timestamp: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    reporting_controller: "/reportingController",
};

fn event_cells(event: &Value, fields: &EventFields, now: DateTime<Utc>) -> Vec<Value> {
    let first_seen = match parse_time(at(event, fields.first_timestamp)) {
        Some(_) => since(at(event, fields.first_timestamp), now),
        None => since(at(event, "/eventTime"), now),
    };
    let mut last_seen = match parse_time(at(event, fields.last_timestamp)) {
        Some(_) => since(at(event, fields.last_timestamp), now),
        None => first_seen.clone(),
    };
    let mut count = int(event, fields.count);
    let series = at(event, "/series");
    if series.is_object() {
        last_seen = since(at(series, "/lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        // Singleton events have no count in the newer API.
        count = 1;
    }

    let regarding = at(event, fields.regarding);
    let kind = text(regarding, "/kind").to_lowercase();
    let object = match non_empty(text(regarding, "/name")) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    };
    let component = non_empty(text(event, &format!("{}/component", fields.source)))
        .unwrap_or_else(|| text(event, fields.reporting_controller));
    let instance = non_empty(text(event, &format!("{}/host", fields.source)))
        .unwrap_or_else(|| text(event, "/reportingInstance"));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen.into(),
        text(event, "/type").into(),
        text(event, "/reason").into(),
        object.into(),
        text(regarding, "/fieldPath").into(),
        source.into(),
        text(event, fields.message).trim().into(),
        first_seen.into(),
        count.into(),
        name(event),
    ]
}

/// `helper.GetAccessModesAsString`: a fixed order regardless of how they were listed.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta annotation still takes precedence over `storageClassName` upstream.
fn storage_class_of(o: &Value) -> &str {
    at(o, "/metadata/annotations")
        .get("volume.beta.kubernetes.io/storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(o, "/spec/storageClassName"))
}

fn persistent_volume_cells(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match at(pv, "/spec/claimRef") {
        c @ Value::Object(_) => format!("{}/{}", text(c, "/namespace"), text(c, "/name")),
        _ => String::new(),
    };
    let capacity = match at(pv, "/spec/capacity/storage") {
        Value::Null => "0".to_string(),
        q => scalar(q),
    };
    // Phase, reclaim policy and volume mode are defaulted on create upstream.
    let phase = if at(pv, "/metadata/deletionTimestamp").is_null() {
        non_empty(text(pv, "/status/phase")).unwrap_or("Pending")
    } else {
        "Terminating"
    };
    vec![
        name(pv),
        capacity.into(),
        access_modes(list(pv, "/spec/accessModes")).into(),
        non_empty(text(pv, "/spec/persistentVolumeReclaimPolicy"))
            .unwrap_or("Retain")
            .into(),
        phase.into(),
        claim.into(),
        storage_class_of(pv).into(),
        non_empty(text(pv, "/spec/volumeAttributesClassName"))
            .unwrap_or("<unset>")
            .into(),
        text(pv, "/status/reason").into(),
        age(pv, now),
        non_empty(text(pv, "/spec/volumeMode"))
            .unwrap_or("Filesystem")
            .into(),
    ]
}

fn persistent_volume_claim_cells(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if at(pvc, "/metadata/deletionTimestamp").is_null() {
        non_empty(text(pvc, "/status/phase")).unwrap_or("Pending")
    } else {
        "Terminating"
    };
    let volume = text(pvc, "/spec/volumeName");
    // Capacity and access modes describe the bound volume, so they stay blank until binding.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let capacity = match at(pvc, "/status/capacity/storage") {
            Value::Null => "0".to_string(),
            q => scalar(q),
        };
        (capacity, access_modes(list(pvc, "/status/accessModes")))
    };
    vec![
        name(pvc),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class_of(pvc).into(),
        non_empty(text(pvc, "/spec/volumeAttributesClassName"))
            .unwrap_or("<unset>")
            .into(),
        age(pvc, now),
        non_empty(text(pvc, "/spec/volumeMode"))
            .unwrap_or("Filesystem")
            .into(),
    ]
}

fn is_default_storage_class(sc: &Value) -> bool {
    let annotations = at(sc, "/metadata/annotations");
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| annotations.get(*key).and_then(Value::as_str) == Some("true"))
}

/// `rbac.SubjectsStrings`: users, groups and `namespace/name` service accounts.
fn subjects(subjects: &[Value]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for s in subjects {
        match text(s, "/kind") {
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{}", text(s, "/namespace"), text(s, "/name")))
            }
            "User" => users.push(text(s, "/name").to_string()),
            "Group" => groups.push(text(s, "/name").to_string()),
            _ => {}
        }
    }
    (users, groups, service_accounts)
}

/// `resource: used/hard` per hard limit, sorted; `limits.*` go to the second column.
fn quota_usage(quota: &Value) -> (String, String) {
    let mut resources = keys(quota, "/status/hard");
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used = match at(quota, "/status/used").get(resource.as_str()) {
            Some(q) => scalar(q),
            None => "0".to_string(),
        };
        let hard = at(quota, "/status/hard")
            .get(resource.as_str())
            .map(scalar)
            .unwrap_or_default();
        let entry = format!("{resource}: {used}/{hard}");
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    (requests.join(", "), limits.join(", "))
}

/// Descriptions upstream takes from the API's field documentation.
mod doc {
    pub(super) const CONTAINER_NAMES: &str = "Names of each container in the template.";
    pub(super) const CONTAINER_IMAGES: &str =
        "Images referenced by each container in the template.";
    pub(super) const OBJECT_META_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
    pub(super) const OBJECT_META_CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
    pub(super) const POD_STATUS_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
    pub(super) const POD_SPEC_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
    pub(super) const POD_STATUS_NOMINATED_NODE_NAME: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
    pub(super) const POD_SPEC_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
    pub(super) const POD_SPEC_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
    pub(super) const RC_SPEC_REPLICAS: &str = "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
    pub(super) const RC_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
    pub(super) const RC_STATUS_READY_REPLICAS: &str =
        "The number of ready replicas for this replication controller.";
    pub(super) const RC_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const RS_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub(super) const RS_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub(super) const RS_STATUS_READY_REPLICAS: &str =
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
    pub(super) const RS_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const DS_STATUS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
    pub(super) const DS_STATUS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
    pub(super) const DS_STATUS_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
    pub(super) const DS_STATUS_UPDATED: &str =
        "The total number of nodes that are running updated daemon pod";
    pub(super) const DS_STATUS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
    pub(super) const DS_SPEC_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const JOB_STATUS_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
    pub(super) const JOB_SPEC_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const CRON_JOB_SPEC_SCHEDULE: &str =
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
    pub(super) const CRON_JOB_SPEC_TIME_ZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
    pub(super) const CRON_JOB_SPEC_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
    pub(super) const CRON_JOB_STATUS_ACTIVE: &str = "A list of pointers to currently running jobs.";
    pub(super) const CRON_JOB_STATUS_LAST_SCHEDULE_TIME: &str =
        "Information when was the last time the job was successfully scheduled.";
    pub(super) const SERVICE_SPEC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
    pub(super) const SERVICE_SPEC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub(super) const SERVICE_SPEC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
    pub(super) const SERVICE_SPEC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub(super) const SERVICE_SPEC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
    pub(super) const ENDPOINTS_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
    pub(super) const NODE_INFO_KUBELET_VERSION: &str = "Kubelet Version reported by the node.";
    pub(super) const NODE_STATUS_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
    pub(super) const NODE_INFO_OS_IMAGE: &str =
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
    pub(super) const NODE_INFO_KERNEL_VERSION: &str =
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
    pub(super) const NODE_INFO_CONTAINER_RUNTIME_VERSION: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
    pub(super) const EVENT_LAST_TIMESTAMP: &str =
        "The time at which the most recent occurrence of this event was recorded.";
    pub(super) const EVENT_TYPE: &str =
        "Type of this event (Normal, Warning), new types could be added in the future";
    pub(super) const EVENT_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
    pub(super) const EVENT_INVOLVED_OBJECT: &str = "The object that this event is about.";
    pub(super) const OBJECT_REFERENCE_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
    pub(super) const EVENT_SOURCE: &str =
        "The component reporting this event. Should be a short machine understandable string.";
    pub(super) const EVENT_MESSAGE: &str =
        "A human-readable description of the status of this operation.";
    pub(super) const EVENT_FIRST_TIMESTAMP: &str =
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
    pub(super) const EVENT_COUNT: &str = "The number of times this event has occurred.";
    pub(super) const SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
    pub(super) const SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
    pub(super) const SERVICE_ACCOUNT_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
    pub(super) const PV_SPEC_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
    pub(super) const PV_SPEC_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
    pub(super) const PV_SPEC_RECLAIM_POLICY: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
    pub(super) const PV_STATUS_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
    pub(super) const PV_SPEC_CLAIM_REF: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
    pub(super) const PV_STATUS_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
    pub(super) const PV_SPEC_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
    pub(super) const PVC_STATUS_PHASE: &str =
        "phase represents the current phase of PersistentVolumeClaim.";
    pub(super) const PVC_SPEC_VOLUME_NAME: &str =
        "volumeName is the binding reference to the PersistentVolume backing this claim.";
    pub(super) const PVC_STATUS_CAPACITY: &str =
        "capacity represents the actual resources of the underlying volume.";
    pub(super) const PVC_STATUS_ACCESS_MODES: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";
    pub(super) const PVC_SPEC_VOLUME_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";
    pub(super) const DEPLOYMENT_STATUS_UPDATED_REPLICAS: &str = "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
    pub(super) const DEPLOYMENT_STATUS_AVAILABLE_REPLICAS: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
    pub(super) const DEPLOYMENT_SPEC_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
    pub(super) const HPA_SPEC_SCALE_TARGET_REF: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
    pub(super) const HPA_SPEC_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.";
    pub(super) const HPA_SPEC_MIN_REPLICAS: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
    pub(super) const HPA_SPEC_MAX_REPLICAS: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
    pub(super) const HPA_STATUS_CURRENT_REPLICAS: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";
    pub(super) const CONFIG_MAP_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
    pub(super) const NETWORK_POLICY_SPEC_POD_SELECTOR: &str = "podSelector selects the pods to which this NetworkPolicy object applies. The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace.";
    pub(super) const ROLE_BINDING_ROLE_REF: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
    pub(super) const CLUSTER_ROLE_BINDING_ROLE_REF: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
    pub(super) const LEASE_SPEC_HOLDER_IDENTITY: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
    pub(super) const STORAGE_CLASS_PROVISIONER: &str =
        "provisioner indicates the type of the provisioner.";
    pub(super) const STORAGE_CLASS_RECLAIM_POLICY: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";
    pub(super) const STORAGE_CLASS_VOLUME_BINDING_MODE: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";
    pub(super) const STORAGE_CLASS_ALLOW_VOLUME_EXPANSION: &str =
        "allowVolumeExpansion shows whether the storage class allow volume expand.";
    pub(super) const CONTROLLER_REVISION_REVISION: &str =
        "Revision indicates the revision of the state represented by Data.";
    pub(super) const PRIORITY_CLASS_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
    pub(super) const PRIORITY_CLASS_GLOBAL_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
    pub(super) const PRIORITY_CLASS_PREEMPTION_POLICY: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
    pub(super) const ENDPOINT_SLICE_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
    pub(super) const ENDPOINT_SLICE_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
    pub(super) const ENDPOINT_SLICE_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RESOURCES;

    fn resource(group: &str, kind: &str) -> &'static Resource {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .expect("served kind")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The timestamp `d` before `now()`.
    fn ago(d: Duration) -> String {
        (now() - d).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn row(group: &str, kind: &str, object: Value) -> Vec<Value> {
        cells(resource(group, kind), &object, now())
    }

    /// The cell under the named column.
    fn cell(group: &str, kind: &str, object: &Value, column: &str) -> Value {
        let r = resource(group, kind);
        let i = columns(r)
            .iter()
            .position(|c| c.name == column)
            .expect("column");
        cells(r, object, now())[i].clone()
    }

    #[test]
    fn human_duration_follows_upstream_at_every_boundary() {
        let cases = [
            (Duration::seconds(0), "0s"),
            (Duration::seconds(90), "90s"),
            (Duration::seconds(119), "119s"),
            (Duration::seconds(120), "2m"),
            (Duration::seconds(125), "2m5s"),
            (Duration::seconds(599), "9m59s"),
            (Duration::minutes(10), "10m"),
            (Duration::minutes(119), "119m"),
            (Duration::minutes(179), "179m"),
            (Duration::minutes(180), "3h"),
            (Duration::minutes(192), "3h12m"),
            (Duration::minutes(479), "7h59m"),
            (Duration::hours(8), "8h"),
            (Duration::hours(47), "47h"),
            (Duration::hours(48), "2d"),
            (Duration::hours(51), "2d3h"),
            (Duration::hours(24 * 8 - 1), "7d23h"),
            (Duration::days(8), "8d"),
            (Duration::days(729), "729d"),
            (Duration::days(730), "2y"),
            (Duration::days(735), "2y5d"),
            (Duration::days(365 * 8), "8y"),
            (Duration::days(365 * 8 + 100), "8y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn clock_skew_under_two_seconds_reads_as_zero_and_more_as_invalid() {
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(Duration::seconds(-1)), "0s");
        assert_eq!(human_duration(Duration::seconds(-2)), "<invalid>");
    }

    fn running_container(name: &str, ready: bool, restarts: i64) -> Value {
        json!({
            "name": name, "ready": ready, "restartCount": restarts, "started": true,
            "state": {"running": {"startedAt": ago(Duration::hours(1))}},
        })
    }

    #[test]
    fn running_pod_with_one_of_two_containers_ready_shows_restarts_and_when() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": ago(Duration::hours(3))},
            "spec": {"containers": [{"name": "app"}, {"name": "proxy"}], "nodeName": "node-a"},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    running_container("app", true, 0),
                    {
                        "name": "proxy", "ready": false, "restartCount": 2,
                        "state": {"running": {"startedAt": ago(Duration::minutes(5))}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                            "finishedAt": ago(Duration::minutes(5))}},
                    },
                ],
            },
        });
        let cells = row("", "Pod", pod);
        assert_eq!(
            cells[..5],
            [
                json!("web-1"),
                json!("1/2"),
                json!("Running"),
                json!("2 (5m ago)"),
                json!("3h")
            ]
        );
    }

    #[test]
    fn pod_in_crash_loop_prints_crash_loop_back_off() {
        let pod = json!({
            "metadata": {"name": "api"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 7,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(Duration::seconds(40))}},
                }],
            },
        });
        let cells = row("", "Pod", pod);
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "7 (40s ago)");
        assert_eq!(cells[4], "<unknown>");
    }

    #[test]
    fn restarts_without_a_recorded_finish_print_the_bare_count() {
        let pod = json!({
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [running_container("app", true, 3)]},
        });
        assert_eq!(cell("", "Pod", &pod, "Restarts"), "3");
    }

    #[test]
    fn pod_with_deletion_timestamp_prints_terminating_unless_finished() {
        let mut pod = json!({
            "metadata": {"name": "web", "deletionTimestamp": ago(Duration::seconds(10))},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [running_container("app", true, 0)]},
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "Terminating");
        pod["status"] = json!({"phase": "Succeeded", "containerStatuses": [{
            "name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        }]});
        assert_eq!(cell("", "Pod", &pod, "Status"), "Completed");
    }

    #[test]
    fn pod_on_a_lost_node_being_deleted_prints_unknown() {
        let pod = json!({
            "metadata": {"deletionTimestamp": ago(Duration::minutes(1))},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "reason": "NodeLost"},
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "Unknown");
    }

    #[test]
    fn pod_without_status_prints_pending_and_none_for_wide_cells() {
        let pod = json!({"metadata": {"name": "new"}, "spec": {"containers": [{"name": "app"}]}});
        let cells = row("", "Pod", pod);
        assert_eq!(
            cells,
            [
                json!("new"),
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("<unknown>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pod_waiting_on_its_first_init_container_prints_init_zero_of_two() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "migrate"}, {"name": "seed"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "migrate", "restartCount": 0, "state": {"running": {}}},
                    {"name": "seed", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
                ],
                "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}],
            },
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "Init:0/2");
        assert_eq!(cell("", "Pod", &pod, "Ready"), "0/1");
    }

    #[test]
    fn pod_with_crash_looping_init_container_prints_init_crash_loop_back_off() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "migrate"}, {"name": "seed"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {
                        "name": "seed", "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 2, "finishedAt": ago(Duration::minutes(3))}},
                    },
                ],
            },
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "Init:CrashLoopBackOff");
        // While initializing, ordinary init containers' restarts are what is shown.
        assert_eq!(cell("", "Pod", &pod, "Restarts"), "4 (3m ago)");
    }

    #[test]
    fn failed_init_container_prints_its_reason_or_else_its_exit_code_or_signal() {
        let mut pod = json!({
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}},
            ]},
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "Init:Error");
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cell("", "Pod", &pod, "Status"), "Init:ExitCode:3");
        pod["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 137, "signal": 9}});
        assert_eq!(cell("", "Pod", &pod, "Status"), "Init:Signal:9");
    }

    #[test]
    fn started_sidecar_counts_as_a_ready_container_and_its_restarts_count() {
        let pod = json!({
            "spec": {
                "initContainers": [{"name": "init"}, {"name": "mesh", "restartPolicy": "Always"}],
                "containers": [{"name": "app"}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "init", "restartCount": 5, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {
                        "name": "mesh", "ready": true, "started": true, "restartCount": 1,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(Duration::minutes(20))}},
                    },
                ],
                "containerStatuses": [running_container("app", true, 0)],
            },
        });
        let cells = row("", "Pod", pod);
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        // The finished init container's restarts no longer count once the pod is initialized.
        assert_eq!(cells[3], "1 (20m ago)");
    }

    #[test]
    fn completed_container_beside_a_running_one_prints_running_only_when_the_pod_is_ready() {
        let mut pod = json!({
            "spec": {"containers": [{"name": "job"}, {"name": "server"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running_container("server", true, 0),
                ],
            },
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "NotReady");
        pod["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(cell("", "Pod", &pod, "Status"), "Running");
    }

    #[test]
    fn scheduling_gated_pod_prints_scheduling_gated() {
        let pod = json!({
            "spec": {"containers": [{"name": "app"}], "schedulingGates": [{"name": "quota"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
            ]},
        });
        assert_eq!(cell("", "Pod", &pod, "Status"), "SchedulingGated");
    }

    #[test]
    fn pod_wide_cells_show_ip_node_nominee_and_readiness_gates() {
        let pod = json!({
            "spec": {
                "containers": [{"name": "app"}],
                "nodeName": "node-a",
                "readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "dns/ready"}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.1.0.7",
                "podIPs": [{"ip": "10.1.0.7"}, {"ip": "fd00::7"}],
                "nominatedNodeName": "node-b",
                "conditions": [{"type": "lb/ready", "status": "True"}, {"type": "dns/ready", "status": "False"}],
            },
        });
        let cells = row("", "Pod", pod);
        assert_eq!(
            cells[5..],
            [
                json!("10.1.0.7"),
                json!("node-a"),
                json!("node-b"),
                json!("1/2")
            ]
        );
    }

    #[test]
    fn finished_pods_carry_a_completed_row_condition() {
        let pod = json!({"metadata": {"name": "done"}, "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [
            {"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        ]}});
        let t = table(resource("", "Pod"), &[pod], json!({}), "None", now());
        assert_eq!(t["rows"][0]["cells"][2], "Completed");
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                "message": "The pod has completed successfully."}])
        );
    }

    #[test]
    fn node_port_service_prints_node_ports_and_no_external_ip() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(Duration::days(3))},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.20",
                "clusterIPs": ["10.96.0.20"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "nodePort": 30053, "protocol": "UDP"}],
                "selector": {"tier": "front", "app": "web"},
            },
        });
        assert_eq!(
            row("", "Service", svc),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.20"),
                json!("<none>"),
                json!("80:30080/TCP,53:30053/UDP"),
                json!("3d"),
                json!("app=web,tier=front"),
            ]
        );
    }

    #[test]
    fn service_external_ip_depends_on_its_type() {
        let mut svc = json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"], "ports": [{"port": 443}]}});
        assert_eq!(cell("", "Service", &svc, "External-IP"), "<pending>");
        assert_eq!(cell("", "Service", &svc, "Port(s)"), "443/TCP");
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}});
        assert_eq!(
            cell("", "Service", &svc, "External-IP"),
            "203.0.113.9,lb.example.com"
        );
        svc["spec"]["externalIPs"] = json!(["198.51.100.1"]);
        assert_eq!(
            cell("", "Service", &svc, "External-IP"),
            "203.0.113.9,lb.example.com,198.51.100.1"
        );

        let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(
            cell("", "Service", &external, "External-IP"),
            "db.example.com"
        );
        assert_eq!(cell("", "Service", &external, "Cluster-IP"), "<none>");
        assert_eq!(cell("", "Service", &external, "Port(s)"), "<none>");
        assert_eq!(cell("", "Service", &external, "Selector"), "<none>");
    }

    #[test]
    fn deployment_prints_ready_over_desired_and_its_template_in_wide_columns() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(Duration::minutes(45))},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27"},
                    {"name": "log", "image": "busybox"},
                ]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            row("apps", "Deployment", deploy),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("45m"),
                json!("web,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn new_deployment_without_replicas_or_status_prints_zero_of_one() {
        let deploy = json!({"metadata": {"name": "api"}, "spec": {"template": {"spec": {"containers": []}}}});
        assert_eq!(cell("apps", "Deployment", &deploy, "Ready"), "0/1");
        assert_eq!(cell("apps", "Deployment", &deploy, "Up-to-date"), 0);
        assert_eq!(cell("apps", "Deployment", &deploy, "Selector"), "");
    }

    #[test]
    fn replica_set_stateful_set_and_daemon_set_print_their_counts() {
        let rs = json!({"spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            row("apps", "ReplicaSet", rs)[1..4],
            [json!(2), json!(2), json!(1)]
        );

        let sts = json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 3}});
        assert_eq!(cell("apps", "StatefulSet", &sts, "Ready"), "3/3");

        let ds = json!({
            "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberReady": 3,
                "updatedNumberScheduled": 4, "numberAvailable": 3},
        });
        assert_eq!(
            row("apps", "DaemonSet", ds)[1..7],
            [
                json!(4),
                json!(4),
                json!(3),
                json!(4),
                json!(3),
                json!("kubernetes.io/os=linux")
            ]
        );
    }

    #[test]
    fn complete_job_prints_completions_and_how_long_it_ran() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": ago(Duration::minutes(10))},
            "spec": {
                "completions": 1, "parallelism": 1,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}},
            },
            "status": {
                "succeeded": 1,
                "startTime": ago(Duration::minutes(10)),
                "completionTime": ago(Duration::seconds(570)),
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
            },
        });
        assert_eq!(
            row("batch", "Job", job),
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("30s"),
                json!("10m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=abc"),
            ]
        );
    }

    #[test]
    fn running_parallel_job_without_completions_prints_of_parallelism() {
        let mut job = json!({
            "spec": {"parallelism": 3},
            "status": {"startTime": ago(Duration::minutes(4)), "active": 3},
        });
        assert_eq!(cell("batch", "Job", &job, "Status"), "Running");
        assert_eq!(cell("batch", "Job", &job, "Completions"), "0/1 of 3");
        assert_eq!(cell("batch", "Job", &job, "Duration"), "4m");
        job["spec"]["suspend"] = json!(true);
        job["status"]["conditions"] = json!([{"type": "Suspended", "status": "True"}]);
        assert_eq!(cell("batch", "Job", &job, "Status"), "Suspended");
        job["status"]["conditions"] = json!([{"type": "Failed", "status": "True"}]);
        assert_eq!(cell("batch", "Job", &job, "Status"), "Failed");
        let unstarted = json!({"spec": {}});
        assert_eq!(cell("batch", "Job", &unstarted, "Duration"), "");
        assert_eq!(cell("batch", "Job", &unstarted, "Completions"), "0/1");
    }

    #[test]
    fn cronjob_prints_schedule_time_zone_suspend_active_and_last_schedule() {
        let cj = json!({
            "metadata": {"name": "backup", "creationTimestamp": ago(Duration::days(20))},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "dump", "image": "pg:16"}]}}}},
            },
            "status": {"active": [{"name": "backup-123"}], "lastScheduleTime": ago(Duration::minutes(3))},
        });
        assert_eq!(
            row("batch", "CronJob", cj.clone()),
            [
                json!("backup"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("3m"),
                json!("20d"),
                json!("dump"),
                json!("pg:16"),
                json!("<none>"),
            ]
        );
        let mut suspended = cj;
        suspended["spec"]["suspend"] = json!(true);
        suspended["spec"]["timeZone"] = json!("Europe/Paris");
        suspended["status"] = json!({});
        assert_eq!(
            row("batch", "CronJob", suspended)[2..6],
            [
                json!("Europe/Paris"),
                json!("True"),
                json!(0),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn cordoned_control_plane_node_prints_scheduling_disabled_and_its_roles() {
        let node = json!({
            "metadata": {"name": "cp-1", "creationTimestamp": ago(Duration::days(400)), "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "kubernetes.io/role": "master",
                "kubernetes.io/hostname": "cp-1",
            }},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"},
            },
        });
        assert_eq!(
            row("", "Node", node),
            [
                json!("cp-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("400d"),
                json!("v1.33.1"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("containerd://1.7.13"),
            ]
        );
        let bare = json!({"metadata": {"name": "n"}});
        assert_eq!(
            row("", "Node", bare)[1..3],
            [json!("Unknown"), json!("<none>")]
        );
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cell("", "Node", &not_ready, "Status"), "NotReady");
    }

    #[test]
    fn label_selectors_print_like_format_label_selector() {
        assert_eq!(format_label_selector(&json!(null)), "<none>");
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchLabels": {"app": "web"}})),
            "app=web"
        );
        assert_eq!(
            format_label_selector(&json!({
                "matchLabels": {"tier": "front"},
                "matchExpressions": [
                    {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "app", "operator": "In", "values": ["web"]},
                    {"key": "canary", "operator": "Exists"},
                ],
            })),
            "app in (web),canary,env notin (dev,prod),!legacy,tier=front"
        );
        assert_eq!(
            format_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
            ),
            "<error>"
        );
        assert_eq!(
            format_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
            ),
            "<error>"
        );
    }

    #[test]
    fn network_policy_selecting_every_pod_prints_none() {
        let np = json!({"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}}});
        assert_eq!(
            cell("networking.k8s.io", "NetworkPolicy", &np, "Pod-Selector"),
            "<none>"
        );
        let np = json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(
            cell("networking.k8s.io", "NetworkPolicy", &np, "Pod-Selector"),
            "role=db"
        );
    }

    #[test]
    fn core_event_prints_its_object_source_and_trimmed_message() {
        let event = json!({
            "metadata": {"name": "web-1.17c1", "creationTimestamp": ago(Duration::minutes(30))},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": ago(Duration::minutes(30)),
            "lastTimestamp": ago(Duration::minutes(2)),
            "count": 12,
            "type": "Warning",
        });
        assert_eq!(
            row("", "Event", event),
            [
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{app}"),
                json!("kubelet, node-a"),
                json!("Back-off restarting failed container"),
                json!("30m"),
                json!(12),
                json!("web-1.17c1"),
            ]
        );
        let event_columns: Vec<&str> = columns(resource("", "Event"))
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            event_columns,
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
    }

    #[test]
    fn events_api_event_reads_regarding_note_and_series() {
        let event = json!({
            "metadata": {"name": "node-a.1"},
            "eventTime": ago(Duration::hours(1)),
            "series": {"count": 4, "lastObservedTime": ago(Duration::seconds(30))},
            "regarding": {"kind": "Node", "name": "node-a"},
            "note": "Node node-a status is now: NodeReady",
            "reason": "NodeReady",
            "type": "Normal",
            "reportingController": "kubelet",
            "reportingInstance": "node-a",
        });
        assert_eq!(
            row("events.k8s.io", "Event", event),
            [
                json!("30s"),
                json!("Normal"),
                json!("NodeReady"),
                json!("node/node-a"),
                json!(""),
                json!("kubelet, node-a"),
                json!("Node node-a status is now: NodeReady"),
                json!("60m"),
                json!(4),
                json!("node-a.1"),
            ]
        );
        let singleton =
            json!({"eventTime": ago(Duration::seconds(5)), "regarding": {"kind": "Lease"}});
        assert_eq!(
            row("events.k8s.io", "Event", singleton)[..4],
            [json!("5s"), json!(""), json!(""), json!("lease")]
        );
    }

    #[test]
    fn table_embeds_partial_object_metadata_by_default() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "default", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c"}]},
        });
        let t = table(
            resource("", "Pod"),
            std::slice::from_ref(&pod),
            json!({"resourceVersion": "9", "continue": ""}),
            "Metadata",
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "9"}));
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(
            t["columnDefinitions"][5],
            json!({
                "name": "IP", "type": "string", "format": "",
                "description": doc::POD_STATUS_POD_IP, "priority": 1,
            })
        );
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": "a", "namespace": "default", "resourceVersion": "7"}})
        );
        assert!(t["rows"][0].get("conditions").is_none());
    }

    #[test]
    fn table_embeds_whole_objects_or_none_as_asked() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        let r = resource("", "ConfigMap");
        let whole = table(r, std::slice::from_ref(&cm), json!({}), "Object", now());
        assert_eq!(whole["rows"][0]["object"]["kind"], "ConfigMap");
        assert_eq!(whole["rows"][0]["object"]["apiVersion"], "v1");
        assert_eq!(whole["rows"][0]["object"]["data"]["b"], "2");
        assert_eq!(whole["rows"][0]["cells"], json!(["cfg", 3, "<unknown>"]));
        let none = table(r, &[cm], json!(null), "None", now());
        assert!(none["rows"][0].get("object").is_none());
        assert_eq!(none["metadata"], json!({}));
        let empty = table(r, &[], json!({}), "Metadata", now());
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn every_served_kind_prints_one_cell_per_column_even_for_odd_objects() {
        for r in RESOURCES {
            let cols = columns(r);
            assert!(!cols.is_empty(), "{}", r.kind);
            let name_column = cols
                .iter()
                .find(|c| c.format == "name")
                .expect("a name column");
            assert_eq!(name_column.name, "Name", "{}", r.kind);
            if r.kind != "Event" {
                assert_eq!(cols[0].format, "name", "{}", r.kind);
                assert_eq!(cols[0].priority, 0, "{}", r.kind);
            }
            for odd in [
                json!({}),
                json!(null),
                json!({"metadata": 5, "spec": "x", "status": []}),
            ] {
                assert_eq!(cells(r, &odd, now()).len(), cols.len(), "{}", r.kind);
            }
        }
    }

    #[test]
    fn kinds_without_an_upstream_printer_print_name_and_creation_time() {
        for (group, kind) in [
            ("", "LimitRange"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("authorization.k8s.io", "SelfSubjectAccessReview"),
            ("authentication.k8s.io", "TokenReview"),
        ] {
            let cols = columns(resource(group, kind));
            assert_eq!(cols.len(), 2);
            assert_eq!((cols[1].name, cols[1].type_), ("Created At", "date"));
            assert_eq!(cols[1].description, doc::OBJECT_META_CREATION_TIMESTAMP);
        }
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2024-04-30T08:15:00Z"}});
        assert_eq!(
            row("rbac.authorization.k8s.io", "Role", role),
            [json!("reader"), json!("2024-04-30T08:15:00Z")]
        );
        let review = json!({"spec": {}});
        assert_eq!(
            row("authentication.k8s.io", "TokenReview", review),
            [json!(""), json!("0001-01-01T00:00:00Z")]
        );
    }

    #[test]
    fn hpa_prints_reference_targets_and_replica_bounds() {
        let hpa = json!({
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                ],
            },
            "status": {
                "currentReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 41}}}],
            },
        });
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", hpa)[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 41%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
            ]
        );
        let bare = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 4}});
        assert_eq!(
            cell("autoscaling", "HorizontalPodAutoscaler", &bare, "Targets"),
            "<none>"
        );
        assert_eq!(
            cell("autoscaling", "HorizontalPodAutoscaler", &bare, "MinPods"),
            "<unset>"
        );
    }

    #[test]
    fn controller_revision_names_its_controller_by_lowercased_group_kind() {
        let rev = json!({
            "metadata": {"name": "web-6d4f", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "other"},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true},
            ]},
            "revision": 3,
        });
        assert_eq!(
            row("apps", "ControllerRevision", rev)[1..3],
            [json!("statefulset.apps/web"), json!(3)]
        );
        let orphan = json!({"metadata": {"name": "x"}});
        assert_eq!(
            cell("apps", "ControllerRevision", &orphan, "Controller"),
            "<none>"
        );
    }

    #[test]
    fn role_binding_wide_columns_list_subjects_by_kind() {
        let rb = json!({
            "metadata": {"name": "readers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
                {"kind": "User", "name": "bob"},
            ],
        });
        assert_eq!(
            row("rbac.authorization.k8s.io", "RoleBinding", rb)[1..],
            [
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("devs"),
                json!("build/ci")
            ]
        );
        let crb_columns = columns(resource("rbac.authorization.k8s.io", "ClusterRoleBinding"));
        assert_eq!(
            crb_columns[3].description,
            "Users in the clusterRoleBinding"
        );
    }

    #[test]
    fn endpoints_show_three_addresses_then_how_many_more() {
        let ep = json!({"subsets": [
            {"addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}], "ports": [{"port": 8080}, {"port": 9090}]},
        ]});
        assert_eq!(
            cell("", "Endpoints", &ep, "Endpoints"),
            "10.1.0.1:8080,10.1.0.2:8080,10.1.0.1:9090 + 1 more..."
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}]}]});
        assert_eq!(cell("", "Endpoints", &headless, "Endpoints"), "fd00::1");
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]});
        assert_eq!(cell("", "Endpoints", &v6, "Endpoints"), "[fd00::1]:53");
        assert_eq!(cell("", "Endpoints", &json!({}), "Endpoints"), "<none>");
    }

    #[test]
    fn endpoint_slice_prints_ports_and_addresses_or_unset() {
        let slice = json!({
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80}, {"name": "metrics"}],
            "endpoints": [{"addresses": ["10.1.0.1"]}, {"addresses": ["10.1.0.2"]}, {"addresses": ["10.1.0.3"]}, {"addresses": ["10.1.0.4"]}],
        });
        assert_eq!(
            row("discovery.k8s.io", "EndpointSlice", slice)[1..4],
            [
                json!("IPv4"),
                json!("80,metrics"),
                json!("10.1.0.1,10.1.0.2,10.1.0.3 + 1 more...")
            ]
        );
        let empty = json!({"addressType": "IPv6"});
        assert_eq!(
            row("discovery.k8s.io", "EndpointSlice", empty)[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn ingress_prints_class_hosts_address_and_ports() {
        let ing = json!({
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["a.example.com"]}],
                "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}, {}, {"host": "c.example.com"}, {"host": "d.example.com"}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}},
        });
        assert_eq!(
            row("networking.k8s.io", "Ingress", ing)[1..5],
            [
                json!("nginx"),
                json!("a.example.com,b.example.com,c.example.com + 2 more..."),
                json!("192.0.2.10"),
                json!("80, 443")
            ]
        );
        let bare = json!({"spec": {"rules": [{}]}});
        assert_eq!(
            row("networking.k8s.io", "Ingress", bare)[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
    }

    #[test]
    fn ingress_class_prints_controller_and_parameters_reference() {
        let class = json!({"spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external"}}});
        assert_eq!(
            row("networking.k8s.io", "IngressClass", class)[1..3],
            [
                json!("k8s.io/ingress-nginx"),
                json!("IngressParameters.k8s.example.com/external")
            ]
        );
    }

    #[test]
    fn default_storage_class_is_marked_in_its_name() {
        let sc = json!({
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
        });
        assert_eq!(
            row("storage.k8s.io", "StorageClass", sc)[..5],
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
    }

    #[test]
    fn resource_quota_splits_requests_and_limits() {
        let quota = json!({"status": {
            "hard": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "10", "limits.cpu": "4"},
            "used": {"requests.cpu": "500m", "limits.cpu": "1", "pods": "3"},
        }});
        assert_eq!(
            row("", "ResourceQuota", quota)[1..3],
            [
                json!("pods: 3/10, requests.cpu: 500m/2"),
                json!("limits.cpu: 1/4, limits.memory: 0/4Gi")
            ]
        );
    }

    #[test]
    fn bound_claim_prints_its_volume_while_a_pending_one_leaves_it_blank() {
        let bound = json!({
            "metadata": {"name": "data"},
            "spec": {"volumeName": "pv-1", "storageClassName": "standard", "accessModes": ["ReadWriteOnce"]},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]},
        });
        assert_eq!(
            row("", "PersistentVolumeClaim", bound)[1..],
            [
                json!("Bound"),
                json!("pv-1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("standard"),
                json!("<unset>"),
                json!("<unknown>"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"spec": {"storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            row("", "PersistentVolumeClaim", pending)[1..5],
            [json!("Pending"), json!(""), json!(""), json!("")]
        );
    }

    #[test]
    fn persistent_volume_prints_claim_and_terminating_phase() {
        let pv = json!({
            "metadata": {"name": "pv-1", "deletionTimestamp": ago(Duration::seconds(3))},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "app", "name": "data"},
                "storageClassName": "standard"},
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            row("", "PersistentVolume", pv)[1..9],
            [
                json!("10Gi"),
                json!("RWO"),
                json!("Delete"),
                json!("Terminating"),
                json!("app/data"),
                json!("standard"),
                json!("<unset>"),
                json!("")
            ]
        );
    }

    #[test]
    fn config_secret_account_and_namespace_print_their_counts_and_phase() {
        let secret = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}, "stringData": {"ca.crt": "x"}});
        assert_eq!(
            row("", "Secret", secret)[1..3],
            [json!("kubernetes.io/tls"), json!(3)]
        );
        assert_eq!(
            row("", "Secret", json!({}))[1..3],
            [json!("Opaque"), json!(0)]
        );
        let sa = json!({"secrets": [{"name": "token"}]});
        assert_eq!(cell("", "ServiceAccount", &sa, "Secrets"), 1);
        let ns = json!({"metadata": {"name": "prod", "deletionTimestamp": ago(Duration::seconds(1))}, "status": {"phase": "Terminating"}});
        assert_eq!(cell("", "Namespace", &ns, "Status"), "Terminating");
    }

    #[test]
    fn pod_disruption_budget_prints_int_or_percent_and_na() {
        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            row("policy", "PodDisruptionBudget", pdb)[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        let pdb = json!({"spec": {"maxUnavailable": 1}});
        assert_eq!(
            row("policy", "PodDisruptionBudget", pdb)[1..4],
            [json!("N/A"), json!("1"), json!(0)]
        );
    }

    #[test]
    fn lease_priority_class_template_and_controller_print_upstream_cells() {
        let lease = json!({"spec": {"holderIdentity": "node-a"}});
        assert_eq!(
            cell("coordination.k8s.io", "Lease", &lease, "Holder"),
            "node-a"
        );
        let pc = json!({"metadata": {"name": "high"}, "value": 1000000, "globalDefault": true});
        assert_eq!(
            row("scheduling.k8s.io", "PriorityClass", pc),
            [
                json!("high"),
                json!(1000000),
                json!(true),
                json!("<unknown>"),
                json!("PreemptLowerPriority")
            ]
        );
        let template = json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}]},
        }});
        assert_eq!(
            row("", "PodTemplate", template),
            [json!("t"), json!("a"), json!("nginx"), json!("app=web")]
        );
        let rc = json!({"spec": {"replicas": 2, "selector": {"app": "web"}}, "status": {"replicas": 2, "readyReplicas": 2}});
        assert_eq!(
            row("", "ReplicationController", rc)[1..],
            [
                json!(2),
                json!(2),
                json!(2),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("app=web")
            ]
        );
    }
}
