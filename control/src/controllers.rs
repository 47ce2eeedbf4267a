//! The control loops, each in its own file, all started from [`start`] (with the scheduler).
//! They are clients of the API like any operator (a kube `Client` over the in-process router),
//! so each is also correct against a real cluster; the garbage collector alone reads the
//! store's objects and events directly (its module says why), and writes through the API as
//! the others do. `skiff server --disable NAME` skips one.

pub mod cron_job;
pub mod daemon_set;
pub mod deployment;
pub mod disruption;
pub mod endpoint_slice;
pub mod events;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pods;
pub mod replica_set;
pub mod revisions;
pub mod stateful_set;

use kube::Client;
use kube::core::ApiResource;

use crate::registry::Resource;

/// Every controller's name, as `--disable` takes it.
pub const NAMES: &[&str] = &[
    "namespace",
    "garbage-collector",
    "node-ipam",
    "scheduler",
    "replicaset",
    "deployment",
    "job",
    "cronjob",
    "statefulset",
    "daemonset",
    "node-lifecycle",
    "disruption",
    "endpointslice",
];

/// The node lifecycle's timings: upstream's kube-controller-manager `--node-monitor-grace-period`
/// and kube-apiserver `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    /// How long a node may stay silent before it is Unknown.
    pub grace_period: std::time::Duration,
    pub not_ready_toleration_seconds: i64,
    pub unreachable_toleration_seconds: i64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            grace_period: std::time::Duration::from_secs(50),
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// How nodes get their pod ranges: cut from the /16 at `cluster_cidr`, of
/// `node_cidr_mask_size` bits each.
#[derive(Clone, Copy, Debug)]
pub struct PodRanges {
    pub cluster_cidr: std::net::Ipv4Addr,
    pub node_cidr_mask_size: u8,
}

impl Default for PodRanges {
    fn default() -> Self {
        PodRanges {
            cluster_cidr: node_ipam::DEFAULT_CLUSTER,
            node_cidr_mask_size: 24,
        }
    }
}

/// Starts every controller not in `disabled`; they run until the process ends.
pub fn start(
    client: Client,
    store: crate::store::Store,
    disabled: &[String],
    lifecycle: &Lifecycle,
    ranges: PodRanges,
) {
    let enabled = |name: &str| !disabled.iter().any(|d| d == name);
    if enabled("namespace") {
        tokio::spawn(namespace::run(client.clone()));
    }
    if enabled("node-ipam") {
        tokio::spawn(node_ipam::run(
            client.clone(),
            ranges.cluster_cidr,
            ranges.node_cidr_mask_size,
        ));
    }
    if enabled("scheduler") {
        tokio::spawn(crate::scheduler::run(client.clone()));
    }
    // The workload controllers share one cache of every pod.
    let workloads = [
        "replicaset",
        "deployment",
        "job",
        "statefulset",
        "daemonset",
        "node-lifecycle",
        "disruption",
        "endpointslice",
    ];
    if workloads.iter().any(|w| enabled(w)) {
        let pods = pods::PodCache::start(client.clone());
        if enabled("replicaset") {
            tokio::spawn(replica_set::run(client.clone(), pods.clone()));
        }
        if enabled("deployment") {
            tokio::spawn(deployment::run(client.clone(), pods.clone()));
        }
        if enabled("job") {
            tokio::spawn(job::run(client.clone(), pods.clone()));
        }
        if enabled("statefulset") {
            tokio::spawn(stateful_set::run(client.clone(), pods.clone()));
        }
        if enabled("daemonset") {
            tokio::spawn(daemon_set::run(client.clone(), pods.clone()));
        }
        if enabled("node-lifecycle") {
            tokio::spawn(node_lifecycle::run(
                client.clone(),
                pods.clone(),
                lifecycle.clone(),
            ));
        }
        if enabled("disruption") {
            tokio::spawn(disruption::run(client.clone(), pods.clone()));
        }
        if enabled("endpointslice") {
            tokio::spawn(endpoint_slice::run(client.clone(), pods));
        }
    }
    if enabled("cronjob") {
        tokio::spawn(cron_job::run(client.clone()));
    }
    if enabled("garbage-collector") {
        tokio::spawn(garbage_collector::run(client, store));
    }
}

/// The field manager of the controllers' writes, as upstream's controller manager names it.
pub const MANAGER: &str = "kube-controller-manager";

/// Parameters of a create or update by a controller.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Parameters of a patch by a controller.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// The object as the API holds it now, `None` once it is gone. The controllers read the object
/// they reconcile afresh: their cache of it may lag their caches of what it owns.
pub async fn fresh<K>(client: &Client, object: &K) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    use kube::ResourceExt;
    let api: kube::Api<K> =
        kube::Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    api.get_opt(&object.name_any()).await
}

/// Writes an object's status, taken whole from `object`; one gone meanwhile is no error.
pub async fn write_status<K>(client: &Client, object: &K) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    use kube::ResourceExt;
    let api: kube::Api<K> =
        kube::Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let mut body = object.clone();
    body.meta_mut().managed_fields = None;
    match api
        .replace_status(&object.name_any(), &post_params(), &body)
        .await
    {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(error) => Err(error),
    }
}

/// The kube-rs description of a served resource, for dynamic clients.
pub fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    }
}
