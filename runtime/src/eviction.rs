//! Node-pressure eviction, as the kubelet's eviction manager does it.
//!
//! Every [`MONITORING_PERIOD`] the node observes its signals: `memory.available` (the node's
//! memory capacity less what its containers hold, or the host's available memory when that is
//! lower) and the free space and inodes of the filesystem holding its data (`nodefs.*`, and
//! `imagefs.*`, the same filesystem here). A signal under its hard threshold (`--eviction-hard`)
//! puts the node under pressure: MemoryPressure or DiskPressure turns True, and stays True
//! until the threshold has not been met for `--eviction-pressure-transition-period`.
//!
//! While `memory.available` is under its threshold, the node evicts one pod at a time and waits
//! for its containers to be gone before it looks again: first the pods using more memory than
//! they request, among those the lowest priority, and among those the one furthest over its
//! request. Critical pods (priority 2,000,000,000 and over) are never evicted. An evicted pod
//! is stopped at once, ends Failed with reason `Evicted`, a message naming the threshold and
//! the containers over their requests, and the `DisruptionTarget` condition (reason
//! `TerminationByKubelet`), and gets a Warning `Evicted` event; its controller replaces it.
//! Under pressure the node also turns away new pods as the kubelet's admission does:
//! BestEffort pods under memory pressure, every pod under disk pressure, critical pods never.
//!
//! Disk pressure is reported and turns pods away, but evicts nothing: the node does not yet
//! account the disk its pods use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::EventRecorder;
use crate::usage::Usage;

/// How often the signals are observed (the kubelet's housekeeping period is 10 s; observing
/// costs a read of /proc/meminfo, a statvfs and a sum over the running containers).
pub const MONITORING_PERIOD: Duration = Duration::from_secs(1);

/// How long the node waits for an evicted pod's containers to be gone before it evicts again.
const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Pods at or above this priority (`system-cluster-critical`) are critical: never evicted,
/// always admitted.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The status reason of an evicted or turned-away pod.
pub const REASON: &str = "Evicted";

/// What an eviction signal measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
}

impl Signal {
    const ALL: [Signal; 5] = [
        Signal::MemoryAvailable,
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
        }
    }

    /// The resource the kubelet names when it reclaims for this signal.
    fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsAvailable | Signal::ImagefsAvailable => "ephemeral-storage",
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => "inodes",
        }
    }

    fn is_memory(self) -> bool {
        self == Signal::MemoryAvailable
    }

    /// Whether the signal counts inodes rather than bytes.
    fn counts_inodes(self) -> bool {
        matches!(self, Signal::NodefsInodesFree | Signal::ImagefsInodesFree)
    }
}

/// How low a signal may go.
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    /// A quantity (`100Mi`, or an inode count), with the text it was given as.
    Quantity { value: u64, text: String },
    /// A share of the capacity, from 0 to 1.
    Share(f64),
}

/// A hard eviction threshold: the signal must stay at or above the amount.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub amount: Amount,
}

impl Threshold {
    /// The amount as a quantity of a capacity.
    fn quantity(&self, capacity: u64) -> u64 {
        match &self.amount {
            Amount::Quantity { value, .. } => *value,
            Amount::Share(share) => (capacity as f64 * share) as u64,
        }
    }

    /// The amount as the kubelet prints it in an eviction message.
    fn text(&self, capacity: u64) -> String {
        match &self.amount {
            Amount::Quantity { text, .. } => text.clone(),
            Amount::Share(_) => self.format(self.quantity(capacity)),
        }
    }

    fn format(&self, value: u64) -> String {
        if self.signal.counts_inodes() {
            value.to_string()
        } else {
            binary_quantity(value)
        }
    }

    fn met(&self, observed: Observed) -> bool {
        observed.available < self.quantity(observed.capacity)
    }
}

/// The hard eviction thresholds, as `--eviction-hard` takes them:
/// `memory.available<100Mi,nodefs.available<10%`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

impl std::str::FromStr for Thresholds {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut thresholds: Vec<Threshold> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((name, amount)) = item.split_once('<') else {
                return Err(format!(
                    "{item:?}: a threshold is SIGNAL<AMOUNT, as memory.available<100Mi"
                ));
            };
            let name = name.trim();
            let Some(signal) = Signal::ALL.into_iter().find(|s| s.name() == name) else {
                let known: Vec<&str> = Signal::ALL.iter().map(|s| s.name()).collect();
                return Err(format!(
                    "unsupported eviction signal {name:?} (supported: {})",
                    known.join(", ")
                ));
            };
            if thresholds.iter().any(|t| t.signal == signal) {
                return Err(format!("{name} is given more than once"));
            }
            let amount = amount.trim();
            if amount.starts_with('-') {
                return Err(format!("{item:?}: a threshold cannot be negative"));
            }
            let amount = if let Some(percent) = amount.strip_suffix('%') {
                match percent.parse::<f64>() {
                    Ok(p) if (0.0..=100.0).contains(&p) => Amount::Share(p / 100.0),
                    _ => {
                        return Err(format!("{item:?}: a percentage is between 0% and 100%"));
                    }
                }
            } else {
                let value = if signal.counts_inodes() {
                    amount.parse::<u64>().ok()
                } else {
                    crate::pods::quantity_bytes(amount)
                };
                match value {
                    Some(value) => Amount::Quantity {
                        value,
                        text: amount.to_string(),
                    },
                    None => {
                        return Err(format!(
                            "{item:?}: {amount:?} is neither a quantity nor a percentage"
                        ));
                    }
                }
            };
            thresholds.push(Threshold { signal, amount });
        }
        Ok(Thresholds(thresholds))
    }
}

impl Thresholds {
    /// The memory the hard `memory.available` threshold keeps back from pods, out of
    /// `capacity`: the node's allocatable memory is its capacity less this.
    pub fn memory_reserve(&self, capacity: u64) -> u64 {
        self.0
            .iter()
            .find(|t| t.signal.is_memory())
            .map_or(0, |t| t.quantity(capacity))
    }
}

/// How the node evicts.
#[derive(Debug, Clone)]
pub struct EvictionConfig {
    pub hard: Thresholds,
    /// How long a pressure condition stays True after its threshold was last met.
    pub pressure_transition: Duration,
    /// The memory the node offers its pods, when it is not the host's.
    pub memory: Option<u64>,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        EvictionConfig {
            hard: DEFAULT_HARD.parse().expect("valid default thresholds"),
            pressure_transition: Duration::from_secs(300),
            memory: None,
        }
    }
}

/// The hard thresholds a node has unless told otherwise. Memory and inodes are the kubelet's;
/// disk is a floor rather than the kubelet's 10%: a share of a large filesystem shared with
/// other work can be tens of gigabytes the node never needs, while components are megabytes.
pub const DEFAULT_HARD: &str = "memory.available<100Mi,nodefs.available<1Gi,nodefs.inodesFree<5%";

impl EvictionConfig {
    /// The node's memory capacity: its budget, else the host's memory.
    pub fn memory_capacity(&self) -> u64 {
        self.memory.unwrap_or_else(|| {
            crate::node::meminfo_kib(&crate::node::meminfo(), "MemTotal").unwrap_or(0) * 1024
        })
    }
}

/// A signal's observed value and the capacity it is out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub available: u64,
    pub capacity: u64,
}

/// Observes every signal now.
fn observe(
    config: &EvictionConfig,
    usage: &Usage,
    data_dir: &Path,
    images_dir: &Path,
) -> HashMap<Signal, Observed> {
    let mut observed = HashMap::new();
    let meminfo = crate::node::meminfo();
    let host_total = crate::node::meminfo_kib(&meminfo, "MemTotal").map(|k| k * 1024);
    let host_available = crate::node::meminfo_kib(&meminfo, "MemAvailable").map(|k| k * 1024);
    let memory = match config.memory {
        Some(budget) => {
            let left = budget.saturating_sub(usage.memory_in_use());
            Some(Observed {
                available: host_available.map_or(left, |host| host.min(left)),
                capacity: budget,
            })
        }
        None => host_total
            .zip(host_available)
            .map(|(capacity, available)| Observed {
                available,
                capacity,
            }),
    };
    if let Some(memory) = memory {
        observed.insert(Signal::MemoryAvailable, memory);
    }
    let mut filesystem = |dir: &Path, bytes: Signal, inodes: Signal| {
        if let Ok(fs) = rustix::fs::statvfs(dir) {
            observed.insert(
                bytes,
                Observed {
                    available: fs.f_bavail.saturating_mul(fs.f_frsize),
                    capacity: fs.f_blocks.saturating_mul(fs.f_frsize),
                },
            );
            observed.insert(
                inodes,
                Observed {
                    available: fs.f_favail,
                    capacity: fs.f_files,
                },
            );
        }
    };
    filesystem(data_dir, Signal::NodefsAvailable, Signal::NodefsInodesFree);
    filesystem(
        images_dir,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
    );
    observed
}

/// The node's pressure conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
}

impl Pressure {
    /// The conditions as the kubelet lists them in messages: `[MemoryPressure DiskPressure]`.
    fn names(self) -> String {
        let mut names = Vec::new();
        if self.memory {
            names.push("MemoryPressure");
        }
        if self.disk {
            names.push("DiskPressure");
        }
        format!("[{}]", names.join(" "))
    }

    /// Why a new pod is turned away, if it is, as the kubelet's eviction admission decides.
    pub fn refuses(self, pod: &Pod) -> Option<String> {
        if !(self.memory || self.disk) || is_critical(pod) {
            return None;
        }
        if self.memory && !self.disk {
            let best_effort =
                pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) == Some("BestEffort");
            let tolerates = pod
                .spec
                .iter()
                .flat_map(|s| s.tolerations.iter().flatten())
                .any(|t| {
                    // The taint has no value: Equal matches it with an empty value only.
                    let key = t.key.as_deref().unwrap_or("");
                    let effect = t.effect.as_deref().unwrap_or("");
                    let operator = t.operator.as_deref().unwrap_or("Equal");
                    let value = t.value.as_deref().unwrap_or("");
                    let key_matches = if operator == "Exists" {
                        key.is_empty() || key == "node.kubernetes.io/memory-pressure"
                    } else {
                        operator == "Equal"
                            && key == "node.kubernetes.io/memory-pressure"
                            && value.is_empty()
                    };
                    key_matches && (effect.is_empty() || effect == "NoSchedule")
                });
            if !best_effort || tolerates {
                return None;
            }
        }
        Some(format!("The node had condition: {}. ", self.names()))
    }
}

fn is_critical(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// The pressure conditions, given when each was last met.
fn pressure(last_met: &HashMap<bool, Instant>, now: Instant, transition: Duration) -> Pressure {
    let within = |memory: bool| {
        last_met
            .get(&memory)
            .is_some_and(|at| now.saturating_duration_since(*at) < transition)
    };
    Pressure {
        memory: within(true),
        disk: within(false),
    }
}

/// A quantity of bytes as Go's `resource.Quantity` prints a BinarySI one: the largest power
/// of 1024 that divides it exactly (`100Mi`, `156388Ki`, `1000`).
pub fn binary_quantity(bytes: u64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut suffix = 0;
    while value != 0 && value.is_multiple_of(1024) && suffix + 1 < SUFFIXES.len() {
        value /= 1024;
        suffix += 1;
    }
    format!("{value}{}", SUFFIXES[suffix])
}

/// A running pod as the eviction manager weighs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pod: Pod,
    /// Tells the pod's worker to evict it.
    pub evict: watch::Sender<Option<Eviction>>,
}

/// What a pod's worker is told when its pod is evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub message: String,
    /// How long its containers get to stop.
    pub grace: Duration,
}

/// A pod's memory, as ranking needs it.
#[derive(Debug, Clone, PartialEq)]
struct Weighed {
    priority: i32,
    usage: u64,
    request: u64,
}

impl Weighed {
    fn of(pod: &Pod, memory: &[(String, u64)]) -> Weighed {
        let requested = |c: &k8s_openapi::api::core::v1::Container| {
            c.resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("memory")
                .and_then(|q| crate::pods::quantity_bytes(&q.0))
        };
        // As upstream's pod request: the app containers' sum, or an init container's request
        // when that is larger.
        let spec = pod.spec.as_ref();
        let apps: u64 = spec
            .iter()
            .flat_map(|s| &s.containers)
            .filter_map(requested)
            .sum();
        let init = spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter_map(requested)
            .max()
            .unwrap_or(0);
        let request = apps.max(init);
        Weighed {
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            usage: memory.iter().map(|(_, bytes)| bytes).sum(),
            request,
        }
    }

    fn over(&self) -> bool {
        self.usage > self.request
    }
}

/// Orders pods for eviction under memory pressure, first to go first: those over their memory
/// requests, then the lowest priority, then the furthest over (or least under) their requests.
fn rank_memory(pods: &mut [(Weighed, usize)]) {
    pods.sort_by(|(a, _), (b, _)| {
        b.over()
            .cmp(&a.over())
            .then(a.priority.cmp(&b.priority))
            .then_with(|| {
                let excess = |w: &Weighed| i128::from(w.usage) - i128::from(w.request);
                excess(b).cmp(&excess(a))
            })
    });
}

/// The message of a pod evicted for memory, and the event's annotations, as the kubelet
/// writes them.
fn memory_message(
    pod: &Pod,
    memory: &[(String, u64)],
    threshold: &Threshold,
    observed: Observed,
) -> (String, serde_json::Value) {
    let mut message = format!(
        "The node was low on resource: memory. Threshold quantity: {}, available: {}. ",
        threshold.text(observed.capacity),
        binary_quantity(observed.available)
    );
    let mut containers = Vec::new();
    let mut usages = Vec::new();
    for container in pod.spec.iter().flat_map(|s| &s.containers) {
        let Some((_, used)) = memory.iter().find(|(name, _)| *name == container.name) else {
            continue;
        };
        let request = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref()?.get("memory"))
            .map(|q| q.0.clone());
        let request_bytes = request
            .as_deref()
            .and_then(crate::pods::quantity_bytes)
            .unwrap_or(0);
        if *used > request_bytes {
            let used = binary_quantity(*used);
            message += &format!(
                "Container {} was using {used}, request is {}, has larger consumption of memory. ",
                container.name,
                request.as_deref().unwrap_or("0"),
            );
            containers.push(container.name.clone());
            usages.push(used);
        }
    }
    let annotations = json!({
        "offending_containers": containers.join(","),
        "offending_containers_usage": usages.join(","),
        "starved_resource": "memory",
    });
    (message, annotations)
}

/// What the eviction manager works with.
pub struct Manager {
    pub config: EvictionConfig,
    pub usage: Usage,
    pub events: EventRecorder,
    pub node: String,
    pub data_dir: PathBuf,
    pub images_dir: PathBuf,
    /// The node's pressure, for its status and its admission of pods.
    pub pressure: watch::Sender<Pressure>,
}

impl Manager {
    /// Observes and evicts every [`MONITORING_PERIOD`] for as long as the process runs;
    /// `active` lists the pods running on the node and not yet being stopped.
    pub async fn run(self, active: impl Fn() -> Vec<Candidate>) {
        let mut last_met: HashMap<bool, Instant> = HashMap::new();
        let mut reclaiming: Option<(String, Instant)> = None;
        let mut ticks = tokio::time::interval(MONITORING_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let observed = observe(&self.config, &self.usage, &self.data_dir, &self.images_dir);
            let met: Vec<(&Threshold, Observed)> = self
                .config
                .hard
                .0
                .iter()
                .filter_map(|t| Some((t, *observed.get(&t.signal)?)))
                .filter(|(t, o)| t.met(*o))
                .collect();
            for (threshold, _) in &met {
                last_met.insert(threshold.signal.is_memory(), now);
            }
            let pressure = pressure(&last_met, now, self.config.pressure_transition);
            let before = *self.pressure.borrow();
            if pressure != before {
                tracing::info!(node = %self.node, ?pressure, "node pressure changed");
                self.condition_events(before, pressure);
                self.pressure.send_replace(pressure);
            }
            let Some((threshold, observed)) = met.into_iter().find(|(t, _)| t.signal.is_memory())
            else {
                continue;
            };
            // One pod at a time: the last one evicted is given time to let go of its memory,
            // and the node looks again before it evicts another.
            if let Some((uid, since)) = &reclaiming {
                if !self.usage.holds(uid) || since.elapsed() >= POD_CLEANUP_TIMEOUT {
                    reclaiming = None;
                }
                continue;
            }
            if let Some(uid) = self.evict_one(active(), threshold, observed) {
                reclaiming = Some((uid, Instant::now()));
            }
        }
    }

    /// Evicts the first pod in eviction order that may be evicted; answers its UID.
    fn evict_one(
        &self,
        candidates: Vec<Candidate>,
        threshold: &Threshold,
        observed: Observed,
    ) -> Option<String> {
        let memory = self.usage.memory_by_pod();
        let none = Vec::new();
        let mut order: Vec<(Weighed, usize)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| !is_critical(&c.pod))
            .map(|(i, c)| {
                let uid = c.pod.metadata.uid.as_deref().unwrap_or("");
                (Weighed::of(&c.pod, memory.get(uid).unwrap_or(&none)), i)
            })
            .collect();
        rank_memory(&mut order);
        let (_, first) = order.first()?;
        // Announced when there is a pod to evict: nothing to reclaim from, the node says so
        // once, by its condition, rather than every second.
        self.node_event(
            "Warning",
            "EvictionThresholdMet",
            &format!("Attempting to reclaim {}", threshold.signal.resource()),
        );
        let candidate = &candidates[*first];
        let uid = candidate.pod.metadata.uid.clone().unwrap_or_default();
        let (message, annotations) = memory_message(
            &candidate.pod,
            memory.get(&uid).unwrap_or(&none),
            threshold,
            observed,
        );
        tracing::info!(
            node = %self.node,
            pod = candidate.pod.metadata.name.as_deref().unwrap_or(""),
            %message,
            "evicting a pod"
        );
        if let Some(event) = crate::events::kubelet_event(
            &self.node,
            crate::events::pod_reference(&candidate.pod),
            "Warning",
            REASON,
            &message,
            Some(annotations),
        ) {
            self.events.record(event);
        }
        candidate.evict.send_replace(Some(Eviction {
            message,
            grace: Duration::ZERO,
        }));
        Some(uid)
    }

    fn node_event(&self, kind: &str, reason: &str, message: &str) {
        let involved =
            json!({"kind": "Node", "apiVersion": "v1", "name": self.node, "uid": self.node});
        if let Some(event) =
            crate::events::kubelet_event(&self.node, involved, kind, reason, message, None)
        {
            self.events.record(event);
        }
    }

    /// The kubelet's events for a changed pressure condition.
    fn condition_events(&self, before: Pressure, now: Pressure) {
        let changes = [
            (
                before.memory,
                now.memory,
                "NodeHasInsufficientMemory",
                "NodeHasSufficientMemory",
            ),
            (
                before.disk,
                now.disk,
                "NodeHasDiskPressure",
                "NodeHasNoDiskPressure",
            ),
        ];
        for (was, is, under, clear) in changes {
            if was != is {
                let reason = if is { under } else { clear };
                let message = format!("Node {} status is now: {reason}", self.node);
                self.node_event("Normal", reason, &message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn thresholds_parse_as_the_kubelet_takes_them() {
        let parsed: Thresholds =
            "memory.available<100Mi, nodefs.available<10%,nodefs.inodesFree<5%"
                .parse()
                .unwrap();
        assert_eq!(parsed.0.len(), 3);
        assert_eq!(
            parsed.0[0],
            Threshold {
                signal: Signal::MemoryAvailable,
                amount: Amount::Quantity {
                    value: 100 << 20,
                    text: "100Mi".into()
                },
            }
        );
        assert_eq!(parsed.0[1].amount, Amount::Share(0.1));
        assert_eq!(parsed.memory_reserve(1 << 30), 100 << 20);
        let share: Thresholds = "memory.available<10%".parse().unwrap();
        assert_eq!(share.memory_reserve(1000 << 20), 100 << 20);
        assert_eq!("".parse::<Thresholds>().unwrap(), Thresholds::default());
        assert!(DEFAULT_HARD.parse::<Thresholds>().is_ok());
        for bad in [
            "memory.free<1Gi",
            "memory.available>1Gi",
            "memory.available<lots",
            "nodefs.available<120%",
            "memory.available<1Gi,memory.available<2Gi",
            "memory.available<-1Gi",
        ] {
            assert!(bad.parse::<Thresholds>().is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities_print_as_go_prints_binary_ones() {
        assert_eq!(binary_quantity(100 << 20), "100Mi");
        assert_eq!(binary_quantity(156_388 * 1024), "156388Ki");
        assert_eq!(binary_quantity(1000), "1000");
        assert_eq!(binary_quantity(0), "0");
        assert_eq!(binary_quantity(3 << 30), "3Gi");
    }

    #[test]
    fn pressure_lasts_the_transition_period_after_the_threshold_was_last_met() {
        let now = Instant::now();
        let transition = Duration::from_secs(300);
        let mut last_met = HashMap::new();
        assert_eq!(pressure(&last_met, now, transition), Pressure::default());
        last_met.insert(true, now);
        let later = now + Duration::from_secs(299);
        assert!(pressure(&last_met, later, transition).memory);
        assert!(!pressure(&last_met, later, transition).disk);
        let over = now + Duration::from_secs(300);
        assert!(!pressure(&last_met, over, transition).memory);
    }

    #[test]
    fn pods_over_their_requests_go_first_then_low_priority_then_the_biggest() {
        let weighed = |priority, usage, request| Weighed {
            priority,
            usage,
            request,
        };
        let mut pods = vec![
            (weighed(0, 50, 100), 0),   // under its request
            (weighed(10, 300, 100), 1), // over, higher priority
            (weighed(0, 150, 100), 2),  // over by 50
            (weighed(0, 400, 100), 3),  // over by 300
            (weighed(-5, 10, 100), 4),  // under, lowest priority
        ];
        rank_memory(&mut pods);
        let order: Vec<usize> = pods.iter().map(|(_, i)| *i).collect();
        assert_eq!(order, [3, 2, 1, 4, 0]);
    }

    #[test]
    fn the_message_names_the_threshold_and_the_containers_over_their_requests() {
        let pod = pod(json!({
            "metadata": {"name": "hog", "uid": "u1"},
            "spec": {"containers": [
                {"name": "hog", "image": "hog:1"},
                {"name": "quiet", "image": "quiet:1", "resources": {"requests": {"memory": "64Mi"}}},
            ]},
        }));
        let threshold: Thresholds = "memory.available<100Mi".parse().unwrap();
        let memory = vec![
            ("hog".to_string(), 200 << 20),
            ("quiet".to_string(), 1 << 20),
        ];
        let observed = Observed {
            available: 56 << 20,
            capacity: 512 << 20,
        };
        let (message, annotations) = memory_message(&pod, &memory, &threshold.0[0], observed);
        assert_eq!(
            message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 56Mi. \
             Container hog was using 200Mi, request is 0, has larger consumption of memory. "
        );
        assert_eq!(annotations["offending_containers"], "hog");
        assert_eq!(annotations["offending_containers_usage"], "200Mi");
        assert_eq!(annotations["starved_resource"], "memory");
    }

    #[test]
    fn pressure_turns_away_pods_as_the_kubelets_admission_does() {
        let best_effort =
            pod(json!({"spec": {"containers": []}, "status": {"qosClass": "BestEffort"}}));
        let burstable =
            pod(json!({"spec": {"containers": []}, "status": {"qosClass": "Burstable"}}));
        let tolerant = pod(json!({
            "spec": {"containers": [], "tolerations": [
                {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]},
            "status": {"qosClass": "BestEffort"},
        }));
        let critical = pod(
            json!({"spec": {"containers": [], "priority": 2_000_001_000}, "status": {"qosClass": "BestEffort"}}),
        );
        let memory = Pressure {
            memory: true,
            disk: false,
        };
        assert_eq!(
            memory.refuses(&best_effort).as_deref(),
            Some("The node had condition: [MemoryPressure]. ")
        );
        assert_eq!(memory.refuses(&burstable), None);
        assert_eq!(memory.refuses(&tolerant), None);
        let wrong_value = pod(json!({
            "spec": {"containers": [], "tolerations": [
                {"key": "node.kubernetes.io/memory-pressure", "operator": "Equal", "value": "x"}]},
            "status": {"qosClass": "BestEffort"},
        }));
        assert!(memory.refuses(&wrong_value).is_some());
        assert_eq!(memory.refuses(&critical), None);
        let both = Pressure {
            memory: true,
            disk: true,
        };
        assert_eq!(
            both.refuses(&burstable).as_deref(),
            Some("The node had condition: [MemoryPressure DiskPressure]. ")
        );
        assert_eq!(Pressure::default().refuses(&best_effort), None);
    }
}
