//! Watches over nodes as kube-controller-manager's node lifecycle and taint-eviction
//! controllers do. A node whose Lease (or status) has not been renewed for the grace period
//! gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions set to Unknown
//! (`NodeStatusUnknown`, "Kubelet stopped posting node status."), and its pods are marked not
//! ready. Nodes carry the taints their state implies: `node.kubernetes.io/not-ready` while Ready
//! is False, `node.kubernetes.io/unreachable` while it is Unknown (each NoSchedule and
//! NoExecute), `node.kubernetes.io/memory-pressure`, `disk-pressure`, `pid-pressure` and
//! `network-unavailable` (NoSchedule) while those conditions are True, and
//! `node.kubernetes.io/unschedulable:NoSchedule` while cordoned; they go when the node
//! recovers. A pod on a node with a NoExecute taint it does not tolerate is deleted at
//! once, one that tolerates it for `tolerationSeconds` once that has passed since the taint was
//! added (`TaintManagerEviction`); its controller then makes a replacement elsewhere.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::Lifecycle;
use super::events::{Recorder, Type};
use super::pods::PodCache;
use crate::scheduler::plugins::tolerates;

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The NoSchedule taints of the conditions that are True when something is wrong (upstream's
/// TaintNodesByCondition).
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];
/// Upstream's --node-monitor-period: how often each node is looked at.
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// What reconciling a Node can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {name}: {source}")]
    Api { name: String, source: kube::Error },
}

struct Context {
    client: Client,
    leases: Store<Lease>,
    pods: Store<Pod>,
    settings: Lifecycle,
    nodes_recorder: Recorder,
    eviction_recorder: Recorder,
}

/// Runs the node lifecycle and taint-eviction loops.
pub async fn run(client: Client, cache: Arc<PodCache>, settings: Lifecycle) {
    let (leases, writer) = reflector::store::<Lease>();
    let lease_changes = reflector(
        writer,
        watcher::watcher(
            Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let context = Arc::new(Context {
        client: client.clone(),
        leases,
        pods: cache.store(),
        settings,
        nodes_recorder: Recorder::new(client.clone(), "node-controller"),
        eviction_recorder: Recorder::new(client.clone(), "taint-eviction-controller"),
    });
    Controller::new(Api::<Node>::all(client), watcher::Config::default())
        .watches_stream(lease_changes, |lease: Lease| {
            Some(ObjectRef::<Node>::new(&lease.name_any()))
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

fn ready_status(node: &Node) -> Option<&str> {
    condition_status(node, "Ready")
}

fn condition_status<'a>(node: &'a Node, kind: &str) -> Option<&'a str> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.as_str())
}

/// The taints a node's state implies, keeping the time of those it has already.
fn wanted_taints(node: &Node, now: Timestamp) -> Vec<Taint> {
    let have = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ours: Vec<&str> = [NOT_READY, UNREACHABLE, UNSCHEDULABLE]
        .into_iter()
        .chain(CONDITION_TAINTS.iter().map(|(_, taint)| *taint))
        .collect();
    let mut taints: Vec<Taint> = have
        .iter()
        .filter(|t| !ours.contains(&t.key.as_str()))
        .cloned()
        .collect();
    let mut add = |key: &str, effect: &str| {
        let kept = have.iter().find(|t| t.key == key && t.effect == effect);
        taints.push(kept.cloned().unwrap_or_else(|| Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: (effect == "NoExecute").then_some(Time(now)),
        }));
    };
    match ready_status(node) {
        Some("False") => {
            add(NOT_READY, "NoSchedule");
            add(NOT_READY, "NoExecute");
        }
        Some("Unknown") => {
            add(UNREACHABLE, "NoSchedule");
            add(UNREACHABLE, "NoExecute");
        }
        _ => {}
    }
    for (condition, taint) in CONDITION_TAINTS {
        if condition_status(node, condition) == Some("True") {
            add(taint, "NoSchedule");
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        add(UNSCHEDULABLE, "NoSchedule");
    }
    taints
}

/// When the node last showed it was alive: its Lease's renewal or its Ready heartbeat, else
/// its creation.
fn last_heartbeat(node: &Node, leases: &Store<Lease>) -> Option<Timestamp> {
    let lease = leases
        .get(&ObjectRef::new(&node.name_any()).within("kube-node-lease"))
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
    let heartbeat = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    lease.max(heartbeat).or(created)
}

#[tracing::instrument(name = "node_lifecycle", skip_all, fields(node = %node.name_any()))]
async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.leases.wait_until_ready().await.is_err() || ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = node.name_any();
    let api_error = |source| Error::Api {
        name: name.clone(),
        source,
    };
    // The cached Node will do: every write below is guarded by its resourceVersion.
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut node = (*node).clone();
    let now = Timestamp::now();
    let grace = ctx.settings.grace_period.as_secs() as i64;
    let silent =
        last_heartbeat(&node, &ctx.leases).is_some_and(|t| now.as_second() - t.as_second() > grace);

    // A silent node's conditions go Unknown.
    if silent && ready_status(&node) != Some("Unknown") {
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            let stamp = Some(Time(now));
            match conditions.iter_mut().find(|c| c.type_ == kind) {
                Some(c) => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = stamp;
                }
                None => conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: stamp.clone(),
                    last_heartbeat_time: stamp,
                }),
            }
        }
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "status": {"conditions": conditions},
        });
        node = nodes
            .patch_status(&name, &super::patch_params(), &Patch::Merge(patch))
            .await
            .map_err(api_error)?;
        ctx.nodes_recorder.publish(
            &node,
            Type::Normal,
            "NodeNotReady",
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        );
        mark_pods_not_ready(&name, &ctx).await;
    }

    // The taints its state implies.
    let taints = wanted_taints(&node, now);
    if node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        != taints
    {
        let mut updated = node.clone();
        updated.spec.get_or_insert_default().taints = (!taints.is_empty()).then(|| taints.clone());
        updated.metadata.managed_fields = None;
        node = nodes
            .replace(&name, &super::post_params(), &updated)
            .await
            .map_err(api_error)?;
    }

    // Pods that may no longer stay.
    let next = evict(&node, &taints, now, &ctx).await.map_err(api_error)?;
    let wait = next.map_or(MONITOR_PERIOD, |d| d.min(MONITOR_PERIOD));
    Ok(Action::requeue(wait))
}

/// Sets the Ready condition of the node's pods to False, as upstream's `MarkPodsNotReady`.
async fn mark_pods_not_ready(node: &str, ctx: &Context) {
    for pod in ctx.pods.state() {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            continue;
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": crate::api::now_rfc3339()}
        ]}});
        if let Err(error) = api
            .patch_status(
                &pod.name_any(),
                &super::patch_params(),
                &Patch::Strategic(patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), %error, "marking a pod not ready failed");
        }
    }
}

/// Deletes the node's pods whose toleration of its NoExecute taints has run out; how long until
/// the next one's does.
async fn evict(
    node: &Node,
    taints: &[Taint],
    now: Timestamp,
    ctx: &Context,
) -> Result<Option<Duration>, kube::Error> {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Ok(None);
    }
    let name = node.name_any();
    let mut next: Option<Duration> = None;
    for pod in ctx.pods.state() {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(name.as_str())
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        // Each taint must be tolerated; the pod may stay until the earliest toleration ends.
        let mut due: Option<i64> = None;
        let mut now_out = false;
        for taint in &no_execute {
            let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
            if matching.is_empty() {
                now_out = true;
                break;
            }
            if matching.iter().any(|t| t.toleration_seconds.is_none()) {
                continue;
            }
            let seconds = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .unwrap_or(0)
                .max(0);
            let added = taint
                .time_added
                .as_ref()
                .map_or(now.as_second(), |t| t.0.as_second());
            let until = added + seconds;
            due = Some(due.map_or(until, |d| d.min(until)));
        }
        let out = now_out || due.is_some_and(|d| d <= now.as_second());
        if !out {
            if let Some(d) = due {
                let wait = Duration::from_secs((d - now.as_second()).max(1) as u64);
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": crate::api::now_rfc3339(),
        }]}});
        let _ = api
            .patch_status(
                &pod.name_any(),
                &super::patch_params(),
                &Patch::Strategic(condition),
            )
            .await;
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => ctx.eviction_recorder.publish(
                pod.as_ref(),
                Type::Normal,
                "TaintManagerEviction",
                "Delete",
                format!("Marking for deletion Pod {namespace}/{}", pod.name_any()),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(next)
}

fn error_policy(_node: Arc<Node>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "node lifecycle reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, unschedulable: bool, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": unschedulable, "taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_nodes_state_sets_its_taints_and_keeps_the_rest() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let keys = |taints: Vec<Taint>| {
            taints
                .into_iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(wanted_taints(
                &node(
                    "Unknown",
                    false,
                    json!([{"key": "dedicated", "effect": "NoSchedule"}])
                ),
                now
            )),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(
            keys(wanted_taints(&node("False", true, json!([])), now)),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/unschedulable:NoSchedule"
            ]
        );
        // A recovered node loses them; the time of a kept NoExecute taint stays.
        let recovered = node(
            "True",
            false,
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"}]),
        );
        assert!(wanted_taints(&recovered, now).is_empty());
        let still = node(
            "Unknown",
            false,
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"}]),
        );
        let pressed: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "MemoryPressure", "status": "True"},
                {"type": "DiskPressure", "status": "False"},
            ]}
        }))
        .unwrap();
        assert_eq!(
            keys(wanted_taints(&pressed, now)),
            ["node.kubernetes.io/memory-pressure:NoSchedule"]
        );
        let kept = wanted_taints(&still, now);
        let no_execute = kept.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(
            no_execute.time_added,
            Some(Time("2025-01-01T00:00:00Z".parse().unwrap()))
        );
    }
}
