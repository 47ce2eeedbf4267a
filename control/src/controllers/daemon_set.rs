//! Runs one pod of each DaemonSet on every node that should have one, as kube-controller-
//! manager's daemonset controller does. A node should when the pod's nodeSelector and required
//! node affinity select it and the pod tolerates its NoSchedule and NoExecute taints; daemon
//! pods tolerate what upstream adds to them (not-ready, unreachable, pressure and unschedulable
//! taints), so they stay on cordoned and failing nodes. Each pod is pinned to its node by a
//! required `metadata.name` node affinity and placed by the scheduler. Nodes joining get a pod,
//! pods of nodes that go or stop qualifying are deleted, failed pods are made again. Templates
//! are kept as ControllerRevisions; a RollingUpdate replaces old pods while no more than
//! `maxUnavailable` nodes lack an available pod. Status: `desiredNumberScheduled`,
//! `currentNumberScheduled`, `numberMisscheduled`, `numberReady`, `updatedNumberScheduled`,
//! `numberAvailable`, `numberUnavailable`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::events::{Recorder, Type};
use super::pods::{self, Expectations, PodCache};
use super::replica_set::error_message;
use super::revisions;
use crate::scheduler::plugins::node_admits;

/// The events' source, as upstream names it.
const COMPONENT: &str = "daemonset-controller";
const REVISION_LABEL: &str = "controller-revision-hash";
const GENERATION_LABEL: &str = "pod-template-generation";

/// What reconciling a DaemonSet can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("daemonset {name}: {source}")]
    Api { name: String, source: kube::Error },
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// Runs the daemonset controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let sets: Api<DaemonSet> = Api::all(client.clone());
    let controller = Controller::new(sets, watcher::Config::default());
    let all_sets = controller.store();
    let (nodes, writer) = kube::runtime::reflector::store::<Node>();
    let node_changes = kube::runtime::reflector(
        writer,
        kube::runtime::WatchStreamExt::default_backoff(watcher::watcher(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
        )),
    );
    let node_changes = kube::runtime::WatchStreamExt::touched_objects(node_changes);
    let expectations = Arc::new(Expectations::default());
    let context = Arc::new(Context {
        client: client.clone(),
        pods: cache.store(),
        nodes,
        expectations: expectations.clone(),
        recorder: Recorder::new(client, COMPONENT),
    });
    controller
        .watches_stream(cache.subscribe(), move |pod| {
            let owner = pods::controller_of(&pod).filter(|o| o.kind == "DaemonSet")?;
            let namespace = pod.namespace()?;
            expectations.observed(&format!("{namespace}/{}", owner.name), &pod.name_any());
            Some(ObjectRef::<DaemonSet>::new(&owner.name).within(&namespace))
        })
        // Any node change may change where daemon pods belong.
        .watches_stream(node_changes, move |_node: Node| {
            all_sets
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The tolerations upstream gives every daemon pod.
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut taints = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        taints.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    taints
        .into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        })
        .collect()
}

/// The template's pod spec with the tolerations upstream gives every daemon pod: what decides
/// which nodes should run one.
fn daemon_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_default();
    for t in daemon_tolerations(host_network) {
        if !tolerations
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect)
        {
            tolerations.push(t);
        }
    }
    spec
}

/// The daemon pod for `node`: the template with the revision labels, upstream's tolerations
/// and a required affinity to the node by name in place of the template's.
fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pods::pod_from_template(&template, &ds.name_any(), pods::controller_ref(ds));
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert(REVISION_LABEL.into(), hash.into());
    labels.insert(
        GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    let pod_spec = pod.spec.insert(daemon_spec(ds));
    let affinity = pod_spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    pod
}

/// The node a daemon pod is for: where it is bound, else its affinity's node.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone() {
        return Some(node);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

#[tracing::instrument(name = "daemonset", skip_all, fields(daemonset = %ds.name_any()))]
async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ready = futures::future::join(ctx.pods.wait_until_ready(), ctx.nodes.wait_until_ready());
    if let (Err(_), _) | (_, Err(_)) = ready.await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let api_error = |source| Error::Api {
        name: name.clone(),
        source,
    };
    let Some(ds) = super::fresh(&ctx.client, ds.as_ref())
        .await
        .map_err(api_error)?
    else {
        return Ok(Action::await_change());
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Until the cache shows this controller's last writes, it would act on the world before them.
    let key = format!("{namespace}/{name}");
    if !ctx.expectations.satisfied(&key, &namespace, &ctx.pods) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let uid = ds.uid().unwrap_or_default();
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let (_, update_revision) = revisions::sync(
        &ctx.client,
        &ds,
        &spec.template,
        collisions,
        None,
        spec.revision_history_limit,
    )
    .await
    .map_err(api_error)?;
    let hash = update_revision
        .strip_prefix(&format!("{name}-"))
        .unwrap_or(&update_revision)
        .to_string();

    // Pods by node.
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in pods::owned_by(&ctx.pods, &namespace, &uid) {
        if let Some(node) = node_of(&pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let probe_spec = daemon_spec(&ds);
    let nodes = ctx.nodes.state();
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<Arc<Pod>> = Vec::new();
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: collisions,
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..DaemonSetStatus::default()
    };
    let (mut available, mut updated_old_available) = (0, Vec::new());
    let mut unavailable = 0;
    for node in &nodes {
        let node_name = node.name_any();
        let should_run =
            node.metadata.deletion_timestamp.is_none() && node_admits(&probe_spec, node);
        let mut here: Vec<Arc<Pod>> = by_node
            .remove(&node_name)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if !should_run {
            if !here.is_empty() {
                status.number_misscheduled += 1;
            }
            delete.extend(here);
            continue;
        }
        status.desired_number_scheduled += 1;
        // Failed pods are made again; of several, the oldest stays.
        let (failed, mut live): (Vec<_>, Vec<_>) = here
            .drain(..)
            .partition(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"));
        for pod in &failed {
            ctx.recorder.publish(
                &ds,
                Type::Warning,
                "FailedDaemonPod",
                "Delete",
                format!(
                    "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                    namespace,
                    pod.name_any()
                ),
            );
        }
        delete.extend(failed);
        live.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let Some(pod) = live.first().cloned() else {
            create_on.push(node_name);
            unavailable += 1;
            continue;
        };
        delete.extend(live.into_iter().skip(1));
        status.current_number_scheduled += 1;
        let is_available = pods::is_available(&pod, min_ready, now);
        if pods::is_ready(&pod) {
            status.number_ready += 1;
        }
        let current = pod.labels().get(REVISION_LABEL) == Some(&hash);
        if current {
            *status.updated_number_scheduled.get_or_insert(0) += 1;
        }
        if is_available {
            available += 1;
            if !current {
                updated_old_available.push(pod);
            }
        } else {
            unavailable += 1;
            if !current {
                // An old pod that is not available anyway can go at once.
                delete.push(pod);
            }
        }
    }
    // Pods of nodes that are gone.
    delete.extend(
        by_node
            .into_values()
            .flatten()
            .filter(|p| p.metadata.deletion_timestamp.is_none()),
    );
    // A rolling update takes old available pods while few enough nodes lack one.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map(|v| pods::scaled(v, status.desired_number_scheduled, true).unwrap_or(1))
            .unwrap_or(1)
            .max(1);
        for pod in updated_old_available {
            if unavailable >= max_unavailable {
                break;
            }
            unavailable += 1;
            delete.push(pod);
        }
    }
    status.number_available = (available > 0).then_some(available);
    let missing = status.desired_number_scheduled - available;
    status.number_unavailable = (missing > 0).then_some(missing);

    let victims: Vec<String> = delete.iter().map(|p| p.name_any()).collect();
    ctx.expectations.expect(&key, Vec::new(), victims);
    for node in create_on {
        let pod = pod_for(&ds, &hash, &node);
        match pods_api.create(&super::post_params(), &pod).await {
            Ok(made) => {
                ctx.expectations
                    .expect(&key, vec![made.name_any()], Vec::new());
                ctx.recorder.publish(
                    &ds,
                    Type::Normal,
                    "SuccessfulCreate",
                    "Create",
                    format!("Created pod: {}", made.name_any()),
                );
            }
            Err(error) => {
                ctx.recorder.publish(
                    &ds,
                    Type::Warning,
                    "FailedCreate",
                    "Create",
                    format!("Error creating: {}", error_message(&error)),
                );
                return Err(api_error(error));
            }
        }
    }
    for pod in delete {
        match pods_api
            .delete(&pod.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => ctx.recorder.publish(
                &ds,
                Type::Normal,
                "SuccessfulDelete",
                "Delete",
                format!("Deleted pod: {}", pod.name_any()),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => return Err(api_error(error)),
        }
    }
    if ds.status.as_ref() != Some(&status) {
        let mut written = ds.clone();
        written.status = Some(status.clone());
        super::write_status(&ctx.client, &written)
            .await
            .map_err(api_error)?;
    }
    if min_ready > 0 && status.number_available != Some(status.number_ready) {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

fn error_policy(_ds: Arc<DaemonSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "daemonset reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn daemon_pods_are_pinned_to_their_node_and_tolerate_what_upstream_adds() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "uid": "u", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a"}]}}}
        }))
        .unwrap();
        let pod = pod_for(&ds, "abc", "node-2");
        assert_eq!(node_of(&pod).as_deref(), Some("node-2"));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[REVISION_LABEL], "abc");
        assert_eq!(labels[GENERATION_LABEL], "3");
        let cordoned: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-2"},
            "spec": {"unschedulable": true, "taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
            ]}
        }))
        .unwrap();
        assert!(node_admits(&daemon_spec(&ds), &cordoned));
        let dedicated: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-3"},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}
        }))
        .unwrap();
        assert!(!node_admits(&daemon_spec(&ds), &dedicated));
    }
}
