//! The scheduler: places each pod that names no node on one that can take it, as
//! kube-scheduler's default profile does, and binds it there through `pods/binding`.
//!
//! One task owns the picture of the cluster: every node, and what the pods bound to each
//! request, kept current from two watches. Pods waiting for a node sit in a queue ordered by
//! priority, then by arrival. Each is filtered and scored against every node ([`plugins`]);
//! the chosen node is charged at once (the pod is "assumed" there) and the binding is written
//! in the background, so that the next pod is placed without waiting for it. A pod no node
//! can take gets `PodScheduled=False` (reason `Unschedulable`, upstream's message) and a
//! `FailedScheduling` event, and waits until a node is added or changes where pods may go, a
//! pod leaves a node, or five minutes pass. A binding the API refuses is retried with a
//! back-off from one to ten seconds.

pub(crate) mod plugins;
mod topology;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as Change};
use kube::{Client, ResourceExt};
use rand::Rng;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::now_rfc3339;
use crate::controllers::events::{Recorder, Type};
use plugins::{NodeInfo, PodInfo, Refusal};

/// The name pods carry in `spec.schedulerName` for this scheduler, and its events' source.
pub const NAME: &str = "default-scheduler";
/// Bindings written at once.
const BINDS_IN_FLIGHT: usize = 64;
/// Upstream's podMaxInUnschedulablePodsDuration: an unschedulable pod is tried again after
/// this long even when nothing it waits for has changed.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(300);
/// Upstream's podInitialBackoffDuration and podMaxBackoffDuration.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs the scheduler until the process ends.
pub async fn run(client: Client) {
    let pods = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let nodes = watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let (scheduler, results) = Scheduler::new(client);
    scheduler.run(results, pods, nodes).await;
}

/// A pod as the scheduler last saw it.
struct Known {
    info: PodInfo,
    /// The node its requests are charged to: the one it is bound to, or the one it is being
    /// bound to (`assumed`).
    node: Option<String>,
    assumed: bool,
    /// Whether it waits for this scheduler to place it.
    waiting: bool,
    /// Its PodScheduled condition: (status, reason, message).
    condition: Option<(String, String, String)>,
}

/// What a binding came to.
struct Bound {
    uid: String,
    node: String,
    result: Result<(), kube::Error>,
}

/// Every node the scheduler knows, with what the pods bound to each take.
#[derive(Default)]
struct Nodes {
    slots: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// The slots of the nodes that exist, in the order they appeared. A slot can also hold the
    /// charges of pods bound to a node not seen (yet, or any more).
    present: Vec<usize>,
    /// Where the next pod's walk over the nodes starts (upstream's nextStartNodeIndex).
    next_start: usize,
}

impl Nodes {
    /// The node's slot, made empty when it has none.
    fn charge(&mut self, name: &str) -> &mut NodeInfo {
        let slot = match self.index.get(name) {
            Some(slot) => *slot,
            None => {
                self.slots.push(NodeInfo {
                    name: name.to_string(),
                    ..NodeInfo::default()
                });
                self.index.insert(name.to_string(), self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        &mut self.slots[slot]
    }

    /// Marks the node as existing; true when it was not.
    fn appeared(&mut self, name: &str) -> bool {
        let Some(slot) = self.index.get(name).copied() else {
            return false;
        };
        if self.present.contains(&slot) {
            return false;
        }
        self.present.push(slot);
        true
    }

    fn gone(&mut self, name: &str) {
        if let Some(slot) = self.index.get(name) {
            self.present.retain(|s| s != slot);
        }
    }

    /// After a relist: only the nodes listed exist.
    fn keep_present(&mut self, listed: &HashSet<String>) {
        let slots = &self.slots;
        self.present.retain(|s| listed.contains(&slots[*s].name));
    }
}

/// Upstream's numFeasibleNodesToFind: every node of a small cluster; of a larger one, a share
/// falling from half with the node count (42% of 1,000 nodes), at least 5% and 100 nodes.
fn feasible_to_find(nodes: usize) -> usize {
    const MIN_NODES: usize = 100;
    if nodes < MIN_NODES {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_NODES)
}

struct Scheduler {
    client: Client,
    nodes: Nodes,
    pods: HashMap<String, Known>,
    /// Pods ready to be placed: highest priority first, then first come.
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    queued: HashSet<String>,
    arrivals: u64,
    /// Pods no node could take, with when they were set aside.
    unschedulable: HashMap<String, Instant>,
    /// Pods whose binding failed, with when to try again.
    backoff: HashMap<String, Instant>,
    attempts: HashMap<String, u32>,
    binding: HashSet<String>,
    results: mpsc::UnboundedSender<Bound>,
    recorder: Recorder,
}

impl Scheduler {
    /// The scheduler, and where its bindings' outcomes arrive.
    fn new(client: Client) -> (Self, mpsc::UnboundedReceiver<Bound>) {
        let (results, results_rx) = mpsc::unbounded_channel();
        let scheduler = Scheduler {
            client: client.clone(),
            nodes: Nodes::default(),
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            queued: HashSet::new(),
            arrivals: 0,
            unschedulable: HashMap::new(),
            backoff: HashMap::new(),
            attempts: HashMap::new(),
            binding: HashSet::new(),
            results,
            recorder: Recorder::new(client.clone(), NAME),
        };
        (scheduler, results_rx)
    }

    async fn run(
        mut self,
        mut results: mpsc::UnboundedReceiver<Bound>,
        mut pods: impl Stream<Item = Result<Change<Pod>, watcher::Error>> + Unpin,
        mut nodes: impl Stream<Item = Result<Change<Node>, watcher::Error>> + Unpin,
    ) {
        let (mut pods_listed, mut nodes_listed) = (false, false);
        let mut pods_relist: Option<HashSet<String>> = None;
        let mut nodes_relist: Option<HashSet<String>> = None;
        loop {
            let ready = pods_listed
                && nodes_listed
                && !self.active.is_empty()
                && self.binding.len() < BINDS_IN_FLIGHT;
            let wake = self.next_wake();
            tokio::select! {
                biased;
                change = pods.next() => match change {
                    Some(Ok(change)) => {
                        if self.pod_change(change, &mut pods_relist) {
                            pods_listed = true;
                        }
                    }
                    Some(Err(error)) => tracing::debug!(%error, "the scheduler's pod watch was interrupted"),
                    None => return,
                },
                change = nodes.next() => match change {
                    Some(Ok(change)) => {
                        if self.node_change(change, &mut nodes_relist) {
                            nodes_listed = true;
                        }
                    }
                    Some(Err(error)) => tracing::debug!(%error, "the scheduler's node watch was interrupted"),
                    None => return,
                },
                Some(bound) = results.recv() => self.bound(bound),
                _ = tokio::time::sleep_until(wake) => self.requeue_due(),
                _ = std::future::ready(()), if ready => self.schedule_next(),
            }
        }
    }

    /// When the next backed-off pod is due, and at least every 30 seconds, when set-aside pods
    /// past their five minutes are found. Computed on every turn of the loop, so it does not
    /// walk the set-aside pods, which can be many.
    fn next_wake(&self) -> Instant {
        let tick = Instant::now() + Duration::from_secs(30);
        self.backoff.values().copied().fold(tick, Instant::min)
    }

    fn requeue_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(uid, _)| uid.clone())
            .chain(
                self.unschedulable
                    .iter()
                    .filter(|(_, since)| **since + UNSCHEDULABLE_RETRY <= now)
                    .map(|(uid, _)| uid.clone()),
            )
            .collect();
        for uid in due {
            self.backoff.remove(&uid);
            self.unschedulable.remove(&uid);
            self.enqueue(&uid);
        }
    }

    /// Something changed that may let set-aside pods in: they are all tried again.
    fn wake_unschedulable(&mut self) {
        let parked: Vec<String> = self.unschedulable.drain().map(|(uid, _)| uid).collect();
        for uid in parked {
            self.enqueue(&uid);
        }
    }

    fn enqueue(&mut self, uid: &str) {
        let Some(known) = self.pods.get(uid) else {
            return;
        };
        if !known.waiting
            || self.queued.contains(uid)
            || self.binding.contains(uid)
            || self.backoff.contains_key(uid)
            || self.unschedulable.contains_key(uid)
        {
            return;
        }
        self.arrivals += 1;
        self.active
            .push((known.info.priority, Reverse(self.arrivals), uid.to_string()));
        self.queued.insert(uid.to_string());
    }

    /// Applies a pod watch event; true once the first listing is complete.
    fn pod_change(&mut self, change: Change<Pod>, relist: &mut Option<HashSet<String>>) -> bool {
        match change {
            Change::Init => *relist = Some(HashSet::new()),
            Change::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (relist.as_mut(), pod.metadata.uid.as_ref()) {
                    seen.insert(uid.clone());
                }
                self.pod_applied(&pod);
            }
            Change::InitDone => {
                let seen = relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.forget(&uid);
                }
                return true;
            }
            Change::Apply(pod) => self.pod_applied(&pod),
            Change::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.forget(uid);
                }
            }
        }
        false
    }

    fn pod_applied(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let spec = pod.spec.as_ref();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        let assigned = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n.is_empty() || n == NAME);
        let gated = spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let condition = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let old = self.pods.remove(&uid);
        let mut freed = false;
        let mut kept_assumption = None;
        if let Some(old) = &old
            && let Some(node) = &old.node
        {
            self.nodes.charge(node).remove_pod(&old.info);
            if old.assumed && assigned.is_none() && !terminal && !deleting {
                // The binding is on its way; the watch has not caught up with it yet.
                kept_assumption = Some(node.clone());
            } else if assigned.as_ref() != Some(node) || terminal {
                freed = true;
            }
        }
        let info = PodInfo::of(pod);
        let node = if terminal {
            None
        } else {
            assigned.clone().or(kept_assumption)
        };
        if let Some(node) = &node {
            self.nodes.charge(node).add_pod(&info);
        }
        let waiting = !terminal && node.is_none() && ours && !gated && !deleting;
        self.pods.insert(
            uid.clone(),
            Known {
                info,
                assumed: node.is_some() && assigned.is_none(),
                node,
                waiting,
                condition,
            },
        );
        if waiting {
            self.enqueue(&uid);
        } else {
            self.unschedulable.remove(&uid);
            self.backoff.remove(&uid);
        }
        if freed {
            self.wake_unschedulable();
        }
    }

    fn forget(&mut self, uid: &str) {
        self.unschedulable.remove(uid);
        self.backoff.remove(uid);
        self.attempts.remove(uid);
        if let Some(known) = self.pods.remove(uid)
            && let Some(node) = &known.node
        {
            self.nodes.charge(node).remove_pod(&known.info);
            self.wake_unschedulable();
        }
    }

    /// Applies a node watch event; true once the first listing is complete.
    fn node_change(&mut self, change: Change<Node>, relist: &mut Option<HashSet<String>>) -> bool {
        match change {
            Change::Init => *relist = Some(HashSet::new()),
            Change::InitApply(node) => {
                if let Some(seen) = relist.as_mut() {
                    seen.insert(node.name_any());
                }
                self.node_applied(&node);
            }
            Change::InitDone => {
                let seen = relist.take().unwrap_or_default();
                self.nodes.keep_present(&seen);
                return true;
            }
            Change::Apply(node) => self.node_applied(&node),
            Change::Delete(node) => self.nodes.gone(&node.name_any()),
        }
        false
    }

    fn node_applied(&mut self, node: &Node) {
        let name = node.name_any();
        let info = self.nodes.charge(&name);
        let before = info.placement();
        info.update(node);
        let changed = before != info.placement();
        // A node's status is renewed every few seconds; only a new node or a change to what
        // decides placement lets waiting pods in.
        if self.nodes.appeared(&name) || changed {
            self.wake_unschedulable();
        }
    }

    /// Places the next queued pod, or sets it aside.
    fn schedule_next(&mut self) {
        let Some((_, _, uid)) = self.active.pop() else {
            return;
        };
        self.queued.remove(&uid);
        let Some(known) = self.pods.get(&uid).filter(|k| k.waiting) else {
            return;
        };
        let info = known.info.clone();
        let count = self.nodes.present.len();
        if count == 0 {
            self.unschedulable_now(&uid, "no nodes available to schedule pods".into());
            return;
        }
        // As upstream: the walk starts where the last one stopped, and ends once enough nodes
        // fit (all of them when none does, so that every refusal is counted).
        let wanted = feasible_to_find(count);
        let start = self.nodes.next_start % count;
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted);
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut walked = 0;
        let topology = topology::Topology::prepare(
            &info,
            self.nodes.present.iter().map(|i| &self.nodes.slots[*i]),
        );
        for i in 0..count {
            let node = &self.nodes.slots[self.nodes.present[(start + i) % count]];
            walked += 1;
            let fits = plugins::filter(&info, node)
                .and_then(|()| topology.as_ref().map_or(Ok(()), |t| t.filter(node)));
            match fits {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= wanted {
                        break;
                    }
                }
                Err(refusal) => refusals.push(refusal),
            }
        }
        self.nodes.next_start = (start + walked) % count;
        if feasible.is_empty() {
            let message = plugins::fit_message(&info, &refusals);
            self.unschedulable_now(&uid, message);
            return;
        }
        let scores = plugins::score(&info, &feasible, topology.as_ref());
        let best = scores.iter().copied().max().unwrap_or(0);
        let top: Vec<&NodeInfo> = feasible
            .iter()
            .zip(&scores)
            .filter(|(_, s)| **s == best)
            .map(|(n, _)| *n)
            .collect();
        let chosen = top[rand::rng().random_range(0..top.len())].name.clone();
        self.assume(&uid, &chosen);
        self.bind(uid, info, chosen);
    }

    /// Charges the pod to `node` before its binding is written.
    fn assume(&mut self, uid: &str, node: &str) {
        let Some(known) = self.pods.get_mut(uid) else {
            return;
        };
        known.node = Some(node.to_string());
        known.assumed = true;
        known.waiting = false;
        self.nodes.charge(node).add_pod(&known.info);
        self.binding.insert(uid.to_string());
    }

    fn bind(&self, uid: String, info: PodInfo, node: String) {
        let client = self.client.clone();
        let results = self.results.clone();
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, &info.namespace);
            let binding = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": info.name, "namespace": info.namespace, "uid": info.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &info.name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(|_| ());
            let _ = results.send(Bound { uid, node, result });
        });
    }

    /// A binding was written or refused.
    fn bound(&mut self, bound: Bound) {
        self.binding.remove(&bound.uid);
        let Some(known) = self.pods.get(&bound.uid) else {
            return;
        };
        let info = known.info.clone();
        match bound.result {
            Ok(()) => {
                self.attempts.remove(&bound.uid);
                self.event(
                    &info,
                    Type::Normal,
                    "Scheduled",
                    "Binding",
                    format!(
                        "Successfully assigned {}/{} to {}",
                        info.namespace, info.name, bound.node
                    ),
                );
            }
            Err(error) => {
                // Undo the assumption; the pod waits again unless it is gone or placed.
                if let Some(known) = self.pods.get_mut(&bound.uid)
                    && known.assumed
                {
                    if let Some(node) = known.node.take() {
                        self.nodes.charge(&node).remove_pod(&known.info);
                    }
                    known.assumed = false;
                    known.waiting = true;
                }
                let not_found = matches!(&error, kube::Error::Api(s) if s.code == 404);
                if not_found {
                    self.forget(&bound.uid);
                    return;
                }
                tracing::debug!(pod = %info.name, %error, "binding failed");
                self.event(
                    &info,
                    Type::Warning,
                    "FailedScheduling",
                    "Scheduling",
                    format!("Binding rejected: {error}"),
                );
                let attempts = self.attempts.entry(bound.uid.clone()).or_default();
                *attempts += 1;
                let delay = INITIAL_BACKOFF
                    .saturating_mul(1 << (*attempts - 1).min(4))
                    .min(MAX_BACKOFF);
                self.backoff.insert(bound.uid, Instant::now() + delay);
            }
        }
    }

    /// No node can take the pod: it is told so and set aside.
    fn unschedulable_now(&mut self, uid: &str, message: String) {
        self.unschedulable.insert(uid.to_string(), Instant::now());
        let Some(known) = self.pods.get_mut(uid) else {
            return;
        };
        let info = known.info.clone();
        let wanted = (
            "False".to_string(),
            "Unschedulable".to_string(),
            message.clone(),
        );
        if known.condition.as_ref() != Some(&wanted) {
            let changed_status = known
                .condition
                .as_ref()
                .is_none_or(|(status, _, _)| status != "False");
            known.condition = Some(wanted);
            self.report_unschedulable(&info, &message, changed_status);
        }
        self.event(
            &info,
            Type::Warning,
            "FailedScheduling",
            "Scheduling",
            message,
        );
    }

    /// Writes `PodScheduled=False` to the pod's status, as upstream's scheduler patches it.
    fn report_unschedulable(&self, info: &PodInfo, message: &str, changed_status: bool) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &info.namespace);
        let mut condition = json!({
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": null,
            "reason": "Unschedulable",
            "message": message,
        });
        if changed_status {
            condition["lastTransitionTime"] = json!(now_rfc3339());
        }
        let patch = json!({"status": {"conditions": [condition]}});
        let name = info.name.clone();
        tokio::spawn(async move {
            let params = PatchParams::default();
            if let Err(error) = api
                .patch_status(&name, &params, &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(pod = %name, %error, "reporting an unschedulable pod failed");
            }
        });
    }

    /// Records an event about a pod, as the scheduler's event recorder does.
    fn event(&self, info: &PodInfo, kind: Type, reason: &str, action: &str, message: String) {
        let involved = ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: Some(info.namespace.clone()),
            name: Some(info.name.clone()),
            uid: Some(info.uid.clone()),
            ..ObjectReference::default()
        };
        self.recorder
            .publish_about(involved, kind, reason, action, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_clusters_are_sampled_as_upstream_samples_them() {
        assert_eq!(feasible_to_find(3), 3);
        assert_eq!(feasible_to_find(99), 99);
        assert_eq!(feasible_to_find(100), 100);
        assert_eq!(feasible_to_find(1000), 420);
        assert_eq!(feasible_to_find(5000), 500);
        assert_eq!(feasible_to_find(10_000), 500);
    }

    #[test]
    fn nodes_keep_charges_for_nodes_not_seen_and_walk_only_present_ones() {
        let mut nodes = Nodes::default();
        nodes.charge("a").pods = 2;
        assert!(nodes.present.is_empty());
        assert!(nodes.appeared("a"));
        assert!(!nodes.appeared("a"));
        nodes.charge("b");
        assert!(nodes.appeared("b"));
        nodes.gone("a");
        assert_eq!(nodes.present, [1]);
        assert_eq!(nodes.charge("a").pods, 2);
        nodes.appeared("a");
        nodes.keep_present(&HashSet::from(["a".to_string()]));
        assert_eq!(nodes.present, [0]);
    }
}
