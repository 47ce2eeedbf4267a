//! The scheduler's filters and scores, as upstream's default profile runs them: a node passes
//! the filters in upstream's order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit) and the first that refuses it gives its reasons; the nodes left are scored
//! by NodeResourcesFit (least allocated), NodeResourcesBalancedAllocation, NodeAffinity
//! (preferred terms), TaintToleration (PreferNoSchedule) and spreading, with upstream's weights.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm,
    PodSpec, PreferredSchedulingTerm, Taint, Toleration, WeightedPodAffinityTerm,
};

use super::topology::{Placed, PodTerms, Topology};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::registry::ParsedQuantity;

/// Upstream's stand-ins for a container that requests nothing, when scoring (not filtering):
/// 100 millicores and 200 MiB.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;
/// The taint a cordoned node carries; tolerating it lets a pod onto an unschedulable node.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Amounts of the resources a pod requests and a node offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`), in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a ResourceList; unparsable amounts count as none.
    pub fn of(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            let Some(q) = ParsedQuantity::parse(&quantity.0) else {
                continue;
            };
            match name.as_str() {
                "cpu" => out.milli_cpu = ceil_div(q.nanos(), 1_000_000),
                "memory" => out.memory = ceil_div(q.nanos(), 1_000_000_000),
                "ephemeral-storage" => out.ephemeral_storage = ceil_div(q.nanos(), 1_000_000_000),
                "pods" => {}
                other if is_extended(other) => {
                    out.scalar
                        .insert(other.to_string(), ceil_div(q.nanos(), 1_000_000_000));
                }
                _ => {}
            }
        }
        out
    }

    fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (name, amount) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += amount;
        }
    }

    fn subtract(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (name, amount) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= amount;
        }
    }

    /// Each resource at the larger of the two amounts.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, amount) in &other.scalar {
            let mine = self.scalar.entry(name.clone()).or_default();
            *mine = (*mine).max(*amount);
        }
    }
}

/// Extended resources: names with a domain outside kubernetes.io (and hugepages, which upstream
/// also fits by amount).
fn is_extended(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.split_once('/').is_some_and(|(domain, _)| {
            domain != "kubernetes.io" && !domain.ends_with(".kubernetes.io")
        })
}

fn ceil_div(nanos: i128, unit: i128) -> i64 {
    let value = nanos.div_euclid(unit) + i128::from(nanos.rem_euclid(unit) != 0);
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What the scheduler needs of a pod, read once when it arrives.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// What the filters fit: upstream's effective requests (init containers, sidecars, overhead).
    pub requests: Resources,
    /// What the scores count: the same with upstream's defaults for containers requesting nothing.
    pub nonzero: (i64, i64),
    /// (protocol, hostIP, hostPort) of the ports asking for a host port.
    pub host_ports: Vec<(String, String, i32)>,
    pub node_selector: BTreeMap<String, String>,
    pub required: Option<NodeSelector>,
    pub preferred: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub never_preempts: bool,
    /// The uid of the controller owning the pod, whose pods are spread over the nodes.
    pub owner: Option<String>,
    pub labels: Arc<BTreeMap<String, String>>,
    /// Its affinity to other pods and its topology spread constraints.
    pub terms: PodTerms,
    /// Its required anti-affinity, as other pods see it once it is placed.
    pub anti: Arc<Vec<PodAffinityTerm>>,
}

impl PodInfo {
    pub fn of(pod: &Pod) -> PodInfo {
        let empty = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let (mut requests, mut nonzero) =
            pod_requests(&spec.containers, spec.init_containers.as_deref());
        if let Some(overhead) = &spec.overhead {
            let overhead = Resources::of(Some(overhead));
            requests.add(&overhead);
            nonzero.0 += overhead.milli_cpu;
            nonzero.1 += overhead.memory;
        }
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some((
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                    port,
                ))
            })
            .collect();
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let metadata = &pod.metadata;
        let pod_affinity = spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
        let pod_anti = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref());
        fn weighted(
            terms: Option<&Vec<WeightedPodAffinityTerm>>,
            sign: i64,
        ) -> impl Iterator<Item = (i64, PodAffinityTerm)> + '_ {
            terms
                .into_iter()
                .flatten()
                .map(move |t| (sign * i64::from(t.weight), t.pod_affinity_term.clone()))
        }
        let terms = PodTerms {
            required: pod_affinity
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            required_anti: pod_anti
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            preferred: weighted(
                pod_affinity.and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                1,
            )
            .chain(weighted(
                pod_anti.and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
                -1,
            ))
            .collect(),
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
        };
        let anti = Arc::new(terms.required_anti.clone());
        PodInfo {
            namespace: metadata.namespace.clone().unwrap_or_default(),
            name: metadata.name.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            requests,
            nonzero,
            host_ports,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required: node_affinity.as_ref().and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            preferred: node_affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            owner: metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            labels: Arc::new(metadata.labels.clone().unwrap_or_default()),
            terms,
            anti,
        }
    }
}

/// Upstream's effective pod requests: app containers and sidecars run together; each regular
/// init container runs alone beside the sidecars started before it; the pod needs the larger.
/// The second value is (millicores, bytes) with the scoring defaults for empty requests.
fn pod_requests(containers: &[Container], init: Option<&[Container]>) -> (Resources, (i64, i64)) {
    let requests =
        |c: &Container| Resources::of(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    let nonzero = |r: &Resources, c: &Container| {
        let listed = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let has = |name: &str| listed.is_some_and(|l| l.contains_key(name));
        Resources {
            milli_cpu: if has("cpu") {
                r.milli_cpu
            } else {
                DEFAULT_MILLI_CPU
            },
            memory: if has("memory") {
                r.memory
            } else {
                DEFAULT_MEMORY
            },
            ..Resources::default()
        }
    };
    let mut total = Resources::default();
    let mut total_nonzero = Resources::default();
    for c in containers {
        let r = requests(c);
        total_nonzero.add(&nonzero(&r, c));
        total.add(&r);
    }
    let mut sidecars = Resources::default();
    let mut sidecars_nonzero = Resources::default();
    let mut init_peak = Resources::default();
    let mut init_peak_nonzero = Resources::default();
    for c in init.into_iter().flatten() {
        let r = requests(c);
        let nz = nonzero(&r, c);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&r);
            total_nonzero.add(&nz);
            sidecars.add(&r);
            sidecars_nonzero.add(&nz);
            init_peak.max_with(&sidecars);
            init_peak_nonzero.max_with(&sidecars_nonzero);
        } else {
            let mut alone = r;
            alone.add(&sidecars);
            init_peak.max_with(&alone);
            let mut alone_nonzero = nz;
            alone_nonzero.add(&sidecars_nonzero);
            init_peak_nonzero.max_with(&alone_nonzero);
        }
    }
    total.max_with(&init_peak);
    total_nonzero.max_with(&init_peak_nonzero);
    (total, (total_nonzero.milli_cpu, total_nonzero.memory))
}

/// What the scheduler knows of a node: what it offers and what the pods bound to it take.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    pub nonzero_requested: (i64, i64),
    pub pods: i64,
    pub host_ports: Vec<(String, String, i32)>,
    /// Pods per owning controller, for spreading.
    pub owners: HashMap<String, i64>,
    /// The pods here, as inter-pod affinity and topology spread see them.
    pub placed: Vec<Placed>,
    /// How many of them have required anti-affinity.
    pub anti_affinity_pods: i64,
}

impl NodeInfo {
    /// Takes a node's current spec and status, keeping what its pods take.
    pub fn update(&mut self, node: &Node) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = Resources::of(allocatable);
        self.allowed_pods = allocatable
            .and_then(|a| a.get("pods"))
            .and_then(|q| ParsedQuantity::parse(&q.0))
            .map(|q| ceil_div(q.nanos(), 1_000_000_000))
            .unwrap_or(0);
    }

    /// What decides where pods go, to tell a change that matters from a heartbeat.
    pub fn placement(&self) -> impl PartialEq + use<> {
        (
            self.labels.clone(),
            self.taints.clone(),
            self.unschedulable,
            self.allocatable.clone(),
            self.allowed_pods,
        )
    }

    pub fn add_pod(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.nonzero_requested.0 += pod.nonzero.0;
        self.nonzero_requested.1 += pod.nonzero.1;
        self.pods += 1;
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
        if !pod.anti.is_empty() {
            self.anti_affinity_pods += 1;
        }
        self.placed.push(Placed {
            uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            anti: pod.anti.clone(),
        });
    }

    pub fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested.subtract(&pod.requests);
        self.nonzero_requested.0 -= pod.nonzero.0;
        self.nonzero_requested.1 -= pod.nonzero.1;
        self.pods -= 1;
        for port in &pod.host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &pod.owner
            && let Some(count) = self.owners.get_mut(owner)
        {
            *count -= 1;
            if *count <= 0 {
                self.owners.remove(owner);
            }
        }
        if let Some(i) = self.placed.iter().position(|p| p.uid == pod.uid) {
            if !self.placed[i].anti.is_empty() {
                self.anti_affinity_pods -= 1;
            }
            self.placed.swap_remove(i);
        }
    }
}

/// Why a node cannot take a pod: upstream's reasons, and whether preempting lower-priority pods
/// could change that (resources and ports) or not (selectors, taints, cordons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Refusal {
    pub fn unresolvable(reason: impl Into<String>) -> Refusal {
        Refusal {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// Runs the filters in upstream's order; the first refusal stands.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Result<(), Refusal> {
    if node.unschedulable {
        let cordon = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !pod.tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Err(Refusal::unresolvable("node(s) were unschedulable"));
        }
    }
    if let Some(taint) = node.taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !pod.tolerations.iter().any(|t| tolerates(t, taint))
    }) {
        return Err(Refusal::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        )));
    }
    if !matches_node_selector(pod, node) {
        return Err(Refusal::unresolvable(
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    if pod.host_ports.iter().any(|wanted| {
        node.host_ports
            .iter()
            .any(|used| ports_conflict(wanted, used))
    }) {
        return Err(Refusal {
            reasons: vec!["node(s) didn't have free ports for the requested pod ports".into()],
            resolvable: true,
        });
    }
    let reasons = insufficient(pod, node);
    if !reasons.is_empty() {
        return Err(Refusal {
            reasons,
            resolvable: true,
        });
    }
    Ok(())
}

/// Upstream's ToleratesTaint.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if toleration
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether a pod with `spec` may run on `node` by its nodeSelector, required node affinity and
/// the node's NoSchedule and NoExecute taints, resources aside: the DaemonSet controller's
/// `NodeShouldRunDaemonPod`.
pub fn node_admits(spec: &PodSpec, node: &Node) -> bool {
    let mut info = NodeInfo::default();
    info.update(node);
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| info.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    selected
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, &info)))
        && info
            .taints
            .iter()
            .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Whether the node is one the pod's nodeSelector and required node affinity allow.
pub fn node_matches_pod(pod: &PodInfo, node: &NodeInfo) -> bool {
    matches_node_selector(pod, node)
}

/// nodeSelector and the required node affinity: both must hold; the affinity's terms are ORed.
fn matches_node_selector(pod: &PodInfo, node: &NodeInfo) -> bool {
    let selected = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    selected
        && pod.required.as_ref().is_none_or(|required| {
            required
                .node_selector_terms
                .iter()
                .any(|term| term_matches(term, node))
        })
}

/// A node selector term: every expression on labels and every one on fields; an empty term
/// matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // metadata.name is the only field upstream supports.
            r.key == "metadata.name" && requirement_matches(r, Some(&node.name))
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Two host ports clash on the same protocol and port when either listens on every address.
fn ports_conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1 == b.1 || a.1 == "0.0.0.0" || b.1 == "0.0.0.0")
}

/// NodeResourcesFit's reasons, in upstream's order.
fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.pods + 1 > node.allowed_pods {
        reasons.push("Too many pods".to_string());
    }
    let want = &pod.requests;
    let free = |allocatable: i64, requested: i64| allocatable - requested;
    if want.milli_cpu > 0
        && want.milli_cpu > free(node.allocatable.milli_cpu, node.requested.milli_cpu)
    {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory > 0 && want.memory > free(node.allocatable.memory, node.requested.memory) {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage
            > free(
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage,
            )
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, amount) in &want.scalar {
        let offered = node.allocatable.scalar.get(name).copied().unwrap_or(0);
        let taken = node.requested.scalar.get(name).copied().unwrap_or(0);
        if *amount > 0 && *amount > offered - taken {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// The most a plugin gives a node.
const MAX_SCORE: i64 = 100;

/// Scores the nodes that passed the filters: the weighted sum of upstream's default scores.
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo], topology: Option<&Topology>) -> Vec<i64> {
    let least: Vec<i64> = nodes.iter().map(|n| least_allocated(pod, n)).collect();
    let balanced: Vec<i64> = nodes.iter().map(|n| balanced_allocation(pod, n)).collect();
    let mut affinity: Vec<i64> = nodes
        .iter()
        .map(|n| {
            pod.preferred
                .iter()
                .filter(|term| term_matches(&term.preference, n))
                .map(|term| i64::from(term.weight))
                .sum()
        })
        .collect();
    normalize(&mut affinity, false);
    let mut taints: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|taint| taint.effect == "PreferNoSchedule")
                .filter(|taint| {
                    !pod.tolerations.iter().any(|t| {
                        t.effect
                            .as_deref()
                            .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                            && tolerates(t, taint)
                    })
                })
                .count() as i64
        })
        .collect();
    normalize(&mut taints, true);
    let mut spread: Vec<i64> = nodes
        .iter()
        .map(|n| {
            pod.owner
                .as_ref()
                .and_then(|o| n.owners.get(o))
                .copied()
                .unwrap_or(0)
        })
        .collect();
    normalize(&mut spread, true);
    let (mut pods_affinity, mut pods_spread) = (vec![0; nodes.len()], vec![0; nodes.len()]);
    if let Some(t) = topology {
        pods_affinity = nodes.iter().map(|n| t.affinity_score(n)).collect();
        // Upstream scales affinity between the lowest and highest node, negatives included.
        let low = pods_affinity.iter().copied().min().unwrap_or(0);
        let high = pods_affinity.iter().copied().max().unwrap_or(0);
        for score in pods_affinity.iter_mut() {
            *score = if high > low {
                MAX_SCORE * (*score - low) / (high - low)
            } else {
                0
            };
        }
        pods_spread = nodes.iter().map(|n| t.spread_count(n)).collect();
        normalize(&mut pods_spread, true);
    }
    (0..nodes.len())
        .map(|i| {
            least[i]
                + balanced[i]
                + 2 * affinity[i]
                + 3 * taints[i]
                + 2 * spread[i]
                + 2 * pods_affinity[i]
                + 2 * pods_spread[i]
        })
        .collect()
}

/// Upstream's LeastAllocated over cpu and memory, equally weighted.
fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let part = |requested: i64, capacity: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_SCORE / capacity
        }
    };
    let cpu = part(
        node.nonzero_requested.0 + pod.nonzero.0,
        node.allocatable.milli_cpu,
    );
    let memory = part(
        node.nonzero_requested.1 + pod.nonzero.1,
        node.allocatable.memory,
    );
    (cpu + memory) / 2
}

/// Upstream's BalancedAllocation: the closer cpu and memory are to the same share of the node,
/// the better.
fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let share = |requested: i64, capacity: i64| {
        if capacity <= 0 {
            0.0
        } else {
            (requested as f64 / capacity as f64).min(1.0)
        }
    };
    let cpu = share(
        node.nonzero_requested.0 + pod.nonzero.0,
        node.allocatable.milli_cpu,
    );
    let memory = share(
        node.nonzero_requested.1 + pod.nonzero.1,
        node.allocatable.memory,
    );
    let deviation = (cpu - memory).abs() / 2.0;
    ((1.0 - deviation) * MAX_SCORE as f64) as i64
}

/// Upstream's DefaultNormalizeScore: scaled to 0..=100 by the highest, reversed when fewer is
/// better.
fn normalize(scores: &mut [i64], reverse: bool) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    for score in scores.iter_mut() {
        *score = match (highest, reverse) {
            (0, true) => MAX_SCORE,
            (0, false) => 0,
            (h, false) => MAX_SCORE * *score / h,
            (h, true) => MAX_SCORE - MAX_SCORE * *score / h,
        };
    }
}

/// Upstream's FitError message: `0/3 nodes are available: 1 Insufficient memory, 2 node(s) had
/// untolerated taint {k: v}. preemption: 0/3 nodes are available: 1 No preemption victims found
/// for incoming pod, 2 Preemption is not helpful for scheduling.` Reasons are counted over the
/// nodes and sorted as strings. Skiff's pods all have the same priority unless set otherwise;
/// a node where only lower-priority pods could make room is reported as upstream's preemption
/// would find it, without victims.
pub fn fit_message(pod: &PodInfo, refusals: &[Refusal]) -> String {
    let total = refusals.len();
    let mut message = format!("0/{total} nodes are available");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for refusal in refusals {
        for reason in &refusal.reasons {
            *counts.entry(reason.as_str()).or_default() += 1;
        }
    }
    message.push_str(&histogram(counts));
    if pod.never_preempts {
        message.push_str(" preemption: not eligible due to preemptionPolicy=Never.");
        return message;
    }
    let mut preemption: BTreeMap<&str, usize> = BTreeMap::new();
    for refusal in refusals {
        let reason = if refusal.resolvable {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        };
        *preemption.entry(reason).or_default() += 1;
    }
    message.push_str(&format!(
        " preemption: 0/{total} nodes are available{}",
        histogram(preemption)
    ));
    message
}

/// `: 1 a, 2 b.`: counts before reasons, sorted as strings, as upstream sorts them.
fn histogram(counts: BTreeMap<&str, usize>) -> String {
    if counts.is_empty() {
        return ".".into();
    }
    let mut entries: Vec<String> = counts
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    entries.sort();
    format!(": {}.", entries.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": spec,
        }))
        .unwrap();
        PodInfo::of(&pod)
    }

    fn node(value: serde_json::Value) -> NodeInfo {
        let node: Node = serde_json::from_value(value).unwrap();
        let mut info = NodeInfo::default();
        info.update(&node);
        info
    }

    fn small_node(name: &str) -> NodeInfo {
        node(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}},
        }))
    }

    #[test]
    fn requests_count_sidecars_with_the_app_and_init_containers_alone() {
        let p = pod(json!({
            "initContainers": [
                {"name": "setup", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "proxy", "image": "i", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}},
                {"name": "late", "image": "i", "resources": {"requests": {"cpu": "500m"}}},
            ],
            "containers": [
                {"name": "a", "image": "i", "resources": {"requests": {"cpu": "300m", "memory": "128Mi"}}},
                {"name": "b", "image": "i"},
            ],
            "overhead": {"cpu": "10m"},
        }));
        // App + sidecar: 500m and 192Mi; "setup" alone: 1 and 1Gi; "late" beside the sidecar:
        // 700m. The larger of each, plus the overhead.
        assert_eq!(p.requests.milli_cpu, 1010);
        assert_eq!(p.requests.memory, 1024 * 1024 * 1024);
        // Scoring counts "b" as 100m and 200Mi.
        assert_eq!(p.nonzero.0, 1010);
        assert_eq!(p.nonzero.1, 1024 * 1024 * 1024);
        let q = pod(json!({"containers": [{"name": "b", "image": "i"}]}));
        assert_eq!(q.requests, Resources::default());
        assert_eq!(q.nonzero, (100, 200 * 1024 * 1024));
    }

    #[test]
    fn filters_refuse_with_upstreams_reasons_in_upstreams_order() {
        let mut n = small_node("a");
        let big = pod(json!({"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "3", "memory": "8Gi", "example.com/gpu": "1"}}}]}));
        assert_eq!(
            filter(&big, &n).unwrap_err().reasons,
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        n.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }];
        let refusal = filter(&big, &n).unwrap_err();
        assert_eq!(
            refusal.reasons,
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(!refusal.resolvable);
        n.unschedulable = true;
        assert_eq!(
            filter(&big, &n).unwrap_err().reasons,
            ["node(s) were unschedulable"]
        );
        let tolerant = pod(json!({
            "containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"operator": "Exists"}],
        }));
        assert_eq!(filter(&tolerant, &n), Ok(()));
        let selective = pod(json!({
            "containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"operator": "Exists"}],
            "nodeSelector": {"disk": "ssd"},
        }));
        assert_eq!(
            filter(&selective, &n).unwrap_err().reasons,
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        n.labels.insert("disk".into(), "ssd".into());
        assert_eq!(filter(&selective, &n), Ok(()));
    }

    #[test]
    fn tolerations_match_as_upstream_matches_them() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            ..Taint::default()
        };
        let t = |v: serde_json::Value| serde_json::from_value::<Toleration>(v).unwrap();
        assert!(tolerates(&t(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(
            &t(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(tolerates(&t(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(&t(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(
            &t(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(!tolerates(
            &t(json!({"key": "other", "operator": "Exists"})),
            &taint
        ));
    }

    #[test]
    fn node_affinity_terms_are_ored_and_their_expressions_anded() {
        let mut n = small_node("a");
        n.labels.insert("zone".into(), "z1".into());
        n.labels.insert("cores".into(), "8".into());
        let p = pod(json!({
            "containers": [{"name": "c", "image": "i"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]},
                    {"matchExpressions": [
                        {"key": "cores", "operator": "Gt", "values": ["4"]},
                        {"key": "gpu", "operator": "DoesNotExist"},
                    ], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
                ]}}},
        }));
        assert_eq!(filter(&p, &n), Ok(()));
        n.labels.insert("gpu".into(), "yes".into());
        assert!(filter(&p, &n).is_err());
    }

    #[test]
    fn host_ports_and_pod_counts_fill_a_node() {
        let mut n = small_node("a");
        n.allowed_pods = 2;
        let web = pod(json!({"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
        assert_eq!(filter(&web, &n), Ok(()));
        n.add_pod(&web);
        assert_eq!(
            filter(&web, &n).unwrap_err().reasons,
            ["node(s) didn't have free ports for the requested pod ports"]
        );
        let plain = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        n.add_pod(&plain);
        assert_eq!(filter(&plain, &n).unwrap_err().reasons, ["Too many pods"]);
        n.remove_pod(&plain);
        n.remove_pod(&web);
        assert_eq!(n.pods, 0);
        assert!(n.host_ports.is_empty());
        assert_eq!(filter(&web, &n), Ok(()));
    }

    #[test]
    fn scores_prefer_emptier_nodes_and_spread_a_controllers_pods() {
        let mut busy = small_node("busy");
        let free = small_node("free");
        let filler = pod(json!({"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}));
        busy.add_pod(&filler);
        let p = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        let scores = score(&p, &[&busy, &free], None);
        assert!(scores[1] > scores[0], "{scores:?}");

        // Two equal nodes: the one without a sibling of the same ReplicaSet wins.
        let mut a = small_node("a");
        let b = small_node("b");
        let mut sibling = p.clone();
        sibling.owner = Some("rs".into());
        a.add_pod(&sibling);
        let mut b_loaded = b.clone();
        b_loaded.add_pod(&p);
        let scores = score(&sibling, &[&a, &b_loaded], None);
        assert!(scores[1] > scores[0], "{scores:?}");
    }

    #[test]
    fn the_fit_message_is_upstreams() {
        let p = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        let refusals = [
            Refusal {
                reasons: vec!["Insufficient memory".into()],
                resolvable: true,
            },
            Refusal::unresolvable(
                "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
            ),
            Refusal::unresolvable(
                "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
            ),
        ];
        assert_eq!(
            fit_message(&p, &refusals),
            "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: \
             1 No preemption victims found for incoming pod, 2 Preemption is not helpful for \
             scheduling."
        );
    }
}
