//! What the node and its containers use, for `kubectl top` (metrics.k8s.io) and the endpoint's
//! `GET /stats/summary`.
//!
//! A container's CPU time is the time its instances' threads spend running them: every poll of
//! an instance (a command's run, an HTTP request's handler) is timed with the thread's CPU
//! clock, so host calls made on the guest's behalf count too, as a cgroup charges a process's
//! system calls. Its memory is the linear memory its live instances hold, the quantity its
//! memory limit bounds. The node's usage is the host's, as the kubelet reports its root cgroup:
//! busy time from /proc/stat, and memory in use from /proc/meminfo.
//!
//! Usage is a rate, so the node marks every counter every [`SAMPLE_PERIOD`] and reports the
//! rate since a mark at least [`MIN_WINDOW`] old (or since the container started).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// How often the counters are marked: usage is averaged over one to two of these.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(10);

/// The shortest window a rate is taken over, when a longer one is known.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// One container run's counters.
#[derive(Debug)]
pub struct ContainerUsage {
    /// CPU time spent running the container's instances, in nanoseconds.
    cpu_nanos: AtomicU64,
    /// Linear memory its live instances hold, in bytes.
    memory_bytes: AtomicU64,
    started: Mark,
    started_at: SystemTime,
    marks: Mutex<Marks>,
}

impl Default for ContainerUsage {
    fn default() -> Self {
        ContainerUsage {
            cpu_nanos: AtomicU64::new(0),
            memory_bytes: AtomicU64::new(0),
            started: Mark {
                at: Instant::now(),
                cpu_nanos: 0,
            },
            started_at: SystemTime::now(),
            marks: Mutex::default(),
        }
    }
}

impl ContainerUsage {
    /// CPU time spent so far.
    pub fn cpu(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    /// Linear memory held now, in bytes.
    pub fn memory(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// An instance's memory grew (or was created) by `bytes`.
    pub fn grew(&self, bytes: u64) {
        self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An instance holding `bytes` of memory went away (or a growth failed).
    pub fn released(&self, bytes: u64) {
        let _ = self
            .memory_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }

    fn charge(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn now(&self, at: Instant) -> Mark {
        Mark {
            at,
            cpu_nanos: self.cpu_nanos.load(Ordering::Relaxed),
        }
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Polls `future` to its end, charging the CPU time its polls take to `usage`.
pub async fn metered<F: Future>(usage: &ContainerUsage, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let before = thread_cpu_time();
        let polled = future.as_mut().poll(cx);
        usage.charge(thread_cpu_time().saturating_sub(before));
        polled
    })
    .await
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// A cumulative CPU counter read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    at: Instant,
    cpu_nanos: u64,
}

/// The last two marks of a counter.
#[derive(Debug, Default)]
struct Marks {
    latest: Option<Mark>,
    previous: Option<Mark>,
}

impl Marks {
    fn mark(&mut self, mark: Mark) {
        self.previous = self.latest.replace(mark);
    }

    /// The usage, in nanocores, from the newest mark at least [`MIN_WINDOW`] before `now` (the
    /// start, `origin`, when none is) to `now`, with that window.
    fn rate(&self, origin: Mark, now: Mark) -> (u64, Duration) {
        let known = [self.latest, self.previous, Some(origin)];
        let base = known
            .into_iter()
            .flatten()
            .find(|m| now.at.saturating_duration_since(m.at) >= MIN_WINDOW)
            .unwrap_or(origin);
        let window = now.at.saturating_duration_since(base.at);
        let used = now.cpu_nanos.saturating_sub(base.cpu_nanos) as f64;
        let rate = if window.is_zero() {
            0
        } else {
            (used / window.as_secs_f64()) as u64
        };
        (rate, window)
    }
}

/// The pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug)]
struct Entry {
    pod: PodRef,
    usage: Arc<ContainerUsage>,
}

#[derive(Debug)]
struct Registry {
    /// The running containers, by pod UID and container name.
    containers: HashMap<(String, String), Entry>,
    node_started: Mark,
    node: Marks,
}

/// The usage of a node's running containers, and of the node.
#[derive(Debug, Clone)]
pub struct Usage(Arc<Mutex<Registry>>);

impl Default for Usage {
    fn default() -> Self {
        Usage(Arc::new(Mutex::new(Registry {
            containers: HashMap::new(),
            node_started: Mark {
                at: Instant::now(),
                cpu_nanos: host_busy_nanos().unwrap_or(0),
            },
            node: Marks::default(),
        })))
    }
}

/// A running container's counters, known to the node's [`Usage`] until this is dropped.
#[derive(Debug)]
pub struct Tracked {
    registry: Usage,
    key: (String, String),
    usage: Arc<ContainerUsage>,
}

impl Tracked {
    pub fn usage(&self) -> &Arc<ContainerUsage> {
        &self.usage
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut registry = self.registry.lock();
        // A later run of the container may have taken the place already.
        if registry
            .containers
            .get(&self.key)
            .is_some_and(|e| Arc::ptr_eq(&e.usage, &self.usage))
        {
            registry.containers.remove(&self.key);
        }
    }
}

impl Usage {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters for a run of `container` of `pod` starting now.
    pub fn track(&self, pod: &PodRef, container: &str) -> Tracked {
        let usage = Arc::new(ContainerUsage::default());
        let key = (pod.uid.clone(), container.to_string());
        self.lock().containers.insert(
            key.clone(),
            Entry {
                pod: pod.clone(),
                usage: usage.clone(),
            },
        );
        Tracked {
            registry: self.clone(),
            key,
            usage,
        }
    }

    /// The memory every running container holds, in bytes.
    pub fn memory_in_use(&self) -> u64 {
        self.lock()
            .containers
            .values()
            .map(|e| e.usage.memory())
            .sum()
    }

    /// The memory each running container holds, by pod UID.
    pub fn memory_by_pod(&self) -> HashMap<String, Vec<(String, u64)>> {
        let mut pods: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for ((uid, name), entry) in &self.lock().containers {
            pods.entry(uid.clone())
                .or_default()
                .push((name.clone(), entry.usage.memory()));
        }
        pods
    }

    /// Whether a container of the pod with this UID still runs.
    pub fn holds(&self, uid: &str) -> bool {
        self.lock().containers.keys().any(|(u, _)| u == uid)
    }

    /// Marks every counter.
    pub fn sample(&self) {
        let now = Instant::now();
        let host = host_busy_nanos();
        let usages: Vec<Arc<ContainerUsage>> = {
            let mut registry = self.lock();
            if let Some(cpu_nanos) = host {
                registry.node.mark(Mark { at: now, cpu_nanos });
            }
            registry
                .containers
                .values()
                .map(|e| e.usage.clone())
                .collect()
        };
        for usage in usages {
            let mark = usage.now(now);
            usage.marks().mark(mark);
        }
    }

    /// Marks the counters every [`SAMPLE_PERIOD`], for as long as the process runs.
    pub async fn sample_forever(self) {
        let mut ticks = tokio::time::interval(SAMPLE_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sample();
        }
    }

    /// The node's summary, in the shape of the kubelet's `/stats/summary`.
    pub fn summary(&self, node_name: &str) -> Summary {
        // The host is read before the registry is locked: pods starting and ending wait on it.
        let host = host_busy_nanos();
        let meminfo = crate::node::meminfo();
        let total_kib = crate::node::meminfo_kib(&meminfo, "MemTotal").unwrap_or(0);
        let available_kib = crate::node::meminfo_kib(&meminfo, "MemAvailable").unwrap_or(0);
        let now = Instant::now();
        let time = rfc3339(SystemTime::now());
        let (node_rate, containers) = {
            let registry = self.lock();
            let node_rate = host.map(|cpu_nanos| {
                let now = Mark { at: now, cpu_nanos };
                let (rate, window) = registry.node.rate(registry.node_started, now);
                (rate, window, cpu_nanos)
            });
            let mut containers: Vec<(PodRef, String, Arc<ContainerUsage>)> = registry
                .containers
                .iter()
                .map(|((_, name), e)| (e.pod.clone(), name.clone(), e.usage.clone()))
                .collect();
            // By pod, UID included: a deleted pod and its successor of the same name stay apart.
            containers.sort_by(|a, b| {
                let key = |c: &(PodRef, String, Arc<ContainerUsage>)| {
                    (
                        c.0.namespace.clone(),
                        c.0.name.clone(),
                        c.0.uid.clone(),
                        c.1.clone(),
                    )
                };
                key(a).cmp(&key(b))
            });
            (node_rate, containers)
        };
        let in_use = total_kib.saturating_sub(available_kib) * 1024;
        let node = NodeStats {
            node_name: node_name.to_string(),
            cpu: node_rate.map(|(rate, window, total)| CpuStats {
                time: time.clone(),
                usage_nano_cores: rate,
                usage_core_nano_seconds: total,
                window_nano_seconds: window_nanos(window),
            }),
            memory: Some(MemoryStats {
                time: time.clone(),
                available_bytes: Some(available_kib * 1024),
                usage_bytes: in_use,
                working_set_bytes: in_use,
            }),
        };
        let mut pods: Vec<PodStats> = Vec::new();
        for (pod, name, usage) in containers {
            let (rate, window) = usage.marks().rate(usage.started, usage.now(now));
            let memory = usage.memory();
            let container = ContainerStats {
                name,
                start_time: rfc3339(usage.started_at),
                cpu: CpuStats {
                    time: time.clone(),
                    usage_nano_cores: rate,
                    usage_core_nano_seconds: usage.cpu_nanos.load(Ordering::Relaxed),
                    window_nano_seconds: window_nanos(window),
                },
                memory: MemoryStats {
                    time: time.clone(),
                    available_bytes: None,
                    usage_bytes: memory,
                    working_set_bytes: memory,
                },
            };
            match pods.last_mut().filter(|p| p.pod_ref == pod) {
                Some(stats) => stats.containers.push(container),
                None => pods.push(PodStats {
                    pod_ref: pod,
                    start_time: container.start_time.clone(),
                    containers: vec![container],
                }),
            }
        }
        Summary { node, pods }
    }
}

fn window_nanos(window: Duration) -> u64 {
    u64::try_from(window.as_nanos()).unwrap_or(u64::MAX)
}

fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The host's busy CPU time in all (every CPU's time but idle and iowait), from /proc/stat.
fn host_busy_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_nanos(&stat, rustix::param::clock_ticks_per_second())
}

fn busy_nanos(stat: &str, ticks_per_second: u64) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| !matches!(i, 3 | 4))
        .map(|(_, v)| v)
        .sum();
    let nanos = u128::from(busy) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
    Some(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The kubelet's summary (`/stats/summary`), as far as Skiff fills it in. Each CPU figure also
/// names the window its rate was taken over (`windowNanoSeconds`), which the kubelet leaves
/// out.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    pub start_time: String,
    pub containers: Vec<ContainerStats>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    pub usage_nano_cores: u64,
    pub usage_core_nano_seconds: u64,
    pub window_nano_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(origin: Instant, seconds: f64, cpu_seconds: f64) -> Mark {
        Mark {
            at: origin + Duration::from_secs_f64(seconds),
            cpu_nanos: (cpu_seconds * 1e9) as u64,
        }
    }

    #[test]
    fn a_rate_is_taken_from_the_newest_mark_old_enough() {
        let t0 = Instant::now();
        let origin = mark(t0, 0.0, 0.0);
        let mut marks = Marks::default();
        // Nothing marked yet: since the start.
        assert_eq!(
            marks.rate(origin, mark(t0, 2.0, 1.0)),
            (500_000_000, Duration::from_secs(2))
        );
        marks.mark(mark(t0, 10.0, 1.0));
        marks.mark(mark(t0, 20.0, 3.0));
        // The latest mark is 5 s old: a quarter of a CPU since.
        assert_eq!(
            marks.rate(origin, mark(t0, 25.0, 4.25)),
            (250_000_000, Duration::from_secs(5))
        );
        // Marked a moment ago: the one before it gives the window.
        assert_eq!(
            marks.rate(origin, mark(t0, 20.5, 3.625)),
            (250_000_000, Duration::from_millis(10_500))
        );
    }

    #[test]
    fn host_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 20 30 5000 70 1 2 3 0 0\ncpu0 50 10 15 2500 35 0 1 1 0 0\n";
        // user + nice + system + irq + softirq + steal = 156 ticks of 10 ms.
        assert_eq!(busy_nanos(stat, 100), Some(1_560_000_000));
        assert_eq!(busy_nanos("intr 1 2 3\n", 100), None);
        assert!(host_busy_nanos().is_some_and(|n| n > 0));
    }

    #[tokio::test]
    async fn polls_are_charged_with_the_threads_cpu_time() {
        let usage = ContainerUsage::default();
        // Three polls, each spinning for 10 ms of the thread's CPU time.
        let spun = metered(&usage, async {
            let mut x = 0u64;
            for _ in 0..3 {
                let start = thread_cpu_time();
                while thread_cpu_time().saturating_sub(start) < Duration::from_millis(10) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                tokio::task::yield_now().await;
            }
            x
        })
        .await;
        assert!(spun > 0);
        let charged = usage.cpu();
        assert!(charged >= Duration::from_millis(30), "{charged:?}");
        // Time asleep is not CPU time.
        let before = usage.cpu();
        metered(&usage, tokio::time::sleep(Duration::from_millis(50))).await;
        assert!(usage.cpu() - before < Duration::from_millis(20));
    }

    #[test]
    fn a_containers_counters_leave_with_its_run() {
        let usage = Usage::default();
        let pod = PodRef {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
        };
        let first = usage.track(&pod, "app");
        first.usage().grew(64 * 1024);
        let sidecar = usage.track(&pod, "shipper");
        let summary = usage.summary("edge");
        assert_eq!(summary.node.node_name, "edge");
        assert_eq!(summary.pods.len(), 1);
        let names: Vec<&str> = summary.pods[0]
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["app", "shipper"]);
        assert_eq!(
            summary.pods[0].containers[0].memory.working_set_bytes,
            65536
        );
        // A restart replaces the run; the old run ending leaves the new one be.
        let second = usage.track(&pod, "app");
        drop(first);
        assert_eq!(usage.summary("edge").pods[0].containers.len(), 2);
        drop(second);
        drop(sidecar);
        assert!(usage.summary("edge").pods.is_empty());
        // A pod deleted and made again under its name: two pods, each with its containers.
        let old = PodRef {
            uid: "u0".into(),
            ..pod.clone()
        };
        let _runs = [
            usage.track(&old, "app"),
            usage.track(&pod, "app"),
            usage.track(&old, "shipper"),
        ];
        let summary = usage.summary("edge");
        let pods: Vec<(&str, usize)> = summary
            .pods
            .iter()
            .map(|p| (p.pod_ref.uid.as_str(), p.containers.len()))
            .collect();
        assert_eq!(pods, [("u0", 2), ("u1", 1)]);
    }
}
