//! Running one pod: its init containers in order, then its app containers, each restarted as
//! the pod's restartPolicy says (with the kubelet's crash-loop back-off), and the pod's status
//! (phase, conditions, containerStatuses) reported as it changes. A pod being deleted has its
//! containers stopped, then is removed with grace period 0, as the kubelet does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Container, ContainerStatus, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::engine::{Exit, Kind, LoadError, RunSpec, Runtime};
use crate::events::EventRecorder;
use crate::eviction::Eviction;
use crate::image::credentials::Keyring;
use crate::image::registry::Registries;
use crate::image::{Image, ImageStore};
use crate::logs::{LiveLogs, LogFile, Rotation, run_log};
use crate::net::PodAddress;
use crate::probes::{Probe, Probes};

/// The kubelet's crash-loop back-off: 10 s doubling to 5 minutes.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run this long resets the back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// What every pod worker of a node shares.
pub struct Context {
    pub client: kube::Client,
    pub runtime: Runtime,
    pub images: ImageStore,
    pub registries: Registries,
    pub events: EventRecorder,
    /// The node's data directory (its `config.json` holds registry credentials).
    pub data_dir: PathBuf,
    /// Where pods keep their logs: `DIR/NAMESPACE_NAME_UID/CONTAINER/N.log`.
    pub pods_dir: PathBuf,
    pub log_rotation: Rotation,
    /// The container logs being written now.
    pub live_logs: LiveLogs,
    /// What the running containers use.
    pub usage: crate::usage::Usage,
    /// Where pods keep their volumes: `DIR/UID/NAME`.
    pub volumes_dir: PathBuf,
    /// The node's address: HTTP containers are served on it at their hostPorts.
    pub address: String,
    pub node: String,
    /// The node's pod addresses.
    pub addresses: crate::net::Addresses,
    /// What the node's pods share of the pod network.
    pub network: Arc<crate::net::NodeNetwork>,
}

/// The directory of one pod's logs.
pub fn pod_dir(pods_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    pods_dir.join(format!("{namespace}_{name}_{uid}"))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One container's entry in the pod's status.
#[derive(Clone)]
struct ContainerReport {
    name: String,
    image: String,
    image_id: String,
    container_id: Option<String>,
    restart_count: u32,
    state: Value,
    last_state: Value,
    ready: bool,
    started: bool,
}

impl ContainerReport {
    /// A container's report when its pod's worker starts. A container that had run on this
    /// node before (the node restarted) starts again as after a node reboot: its restart count
    /// goes on from the old status, and a run cut short by the restart shows as the last
    /// state, terminated with reason Unknown and exit code 255, as upstream shows it.
    fn resumed(container: &Container, old: Option<&ContainerStatus>, policy: &str) -> Self {
        let mut report = ContainerReport::new(container);
        let Some(old) = old.filter(|o| o.container_id.is_some()) else {
            return report;
        };
        let state = old.state.clone().unwrap_or_default();
        report.restart_count = old.restart_count.max(0) as u32;
        report.last_state = serde_json::to_value(old.last_state.clone().unwrap_or_default())
            .unwrap_or_else(|_| json!({}));
        if let Some(running) = &state.running {
            report.restart_count += 1;
            report.last_state = json!({"terminated": {
                "exitCode": 255, "reason": "Unknown",
                "startedAt": running.started_at, "finishedAt": now(),
                "containerID": old.container_id,
            }});
        } else if let Some(terminated) = &state.terminated {
            let restarts = match policy {
                "Never" => false,
                "OnFailure" => terminated.exit_code != 0,
                _ => true,
            };
            if restarts {
                report.restart_count += 1;
                report.last_state = json!({ "terminated": terminated });
            } else {
                // Finished for good: it keeps its state and does not run again.
                report.container_id = old.container_id.clone();
                report.image_id = old.image_id.clone();
                report.state = json!({ "terminated": terminated });
            }
        }
        report
    }

    fn new(container: &Container) -> Self {
        ContainerReport {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: None,
            restart_count: 0,
            state: json!({"waiting": {"reason": "PodInitializing"}}),
            last_state: json!({}),
            ready: false,
            started: false,
        }
    }

    fn json(&self) -> Value {
        let mut status = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "started": self.started,
        });
        if let Some(id) = &self.container_id {
            status["containerID"] = id.clone().into();
        }
        status
    }

    fn waiting(&mut self, reason: &str, message: Option<&str>) {
        let mut waiting = json!({"reason": reason});
        if let Some(message) = message {
            waiting["message"] = message.into();
        }
        self.state = json!({"waiting": waiting});
        self.ready = false;
        self.started = false;
    }
}

/// The pod's status as the worker knows it.
struct Report {
    init: Vec<ContainerReport>,
    app: Vec<ContainerReport>,
    phase: &'static str,
    initialized: bool,
    start_time: String,
    host_ip: String,
    /// The pod's address, once it has one.
    pod_ip: Option<String>,
    /// Why the node evicted the pod, once it has.
    evicted: Option<String>,
}

impl Report {
    fn json(&self) -> Value {
        let now = now();
        let condition = |kind: &str, ok: bool, reason: Option<&str>| {
            let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                "lastProbeTime": null, "lastTransitionTime": now});
            if let Some(reason) = reason.filter(|_| !ok) {
                c["reason"] = reason.into();
            }
            c
        };
        let app_ready = !self.app.is_empty() && self.app.iter().all(|c| c.ready);
        let done = matches!(self.phase, "Succeeded" | "Failed");
        let mut conditions = vec![
            condition("PodReadyToStartContainers", !done, None),
            condition(
                "Initialized",
                self.initialized,
                Some("ContainersNotInitialized"),
            ),
            condition(
                "Ready",
                app_ready,
                Some(if done {
                    "PodCompleted"
                } else {
                    "ContainersNotReady"
                }),
            ),
            condition(
                "ContainersReady",
                app_ready,
                Some(if done {
                    "PodCompleted"
                } else {
                    "ContainersNotReady"
                }),
            ),
            condition("PodScheduled", true, None),
        ];
        let mut status = json!({
            "phase": self.phase,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": self.start_time,
            "initContainerStatuses": self.init.iter().map(ContainerReport::json).collect::<Vec<_>>(),
            "containerStatuses": self.app.iter().map(ContainerReport::json).collect::<Vec<_>>(),
        });
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = ip.as_str().into();
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if let Some(message) = &self.evicted {
            status["reason"] = crate::eviction::REASON.into();
            status["message"] = message.as_str().into();
            conditions.push(json!({"type": "DisruptionTarget", "status": "True",
                "reason": "TerminationByKubelet", "message": message,
                "lastProbeTime": null, "lastTransitionTime": now}));
        }
        status["conditions"] = conditions.into();
        status
    }
}

/// A pod's worker: its report, and what it needs to publish it.
struct Worker {
    ctx: Arc<Context>,
    pod: Pod,
    volumes: std::sync::OnceLock<BTreeMap<String, crate::volumes::Prepared>>,
    /// The pod's address, taken before its containers start.
    address: std::sync::OnceLock<PodAddress>,
    report: Mutex<Report>,
    /// Counts status changes; the status writer writes the latest report when it moves.
    changes: watch::Sender<u64>,
    /// The change the status writer last wrote.
    written: watch::Sender<u64>,
    /// The grace period, once the pod is being deleted.
    stopping: watch::Receiver<Option<Duration>>,
    /// Set once the node evicts the pod.
    evicting: watch::Receiver<Option<Eviction>>,
}

impl Worker {
    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or("")
    }

    /// A `fieldRef` value for the environment: the pod's fields, and its and its node's
    /// addresses.
    fn field(&self, path: &str) -> Result<String, String> {
        let pod_ip = || {
            self.address
                .get()
                .map(|a| a.ip.to_string())
                .unwrap_or_default()
        };
        Ok(match path {
            "status.podIP" | "status.podIPs" => pod_ip(),
            "status.hostIP" | "status.hostIPs" => self.ctx.address.clone(),
            _ => field(&self.pod, path)?,
        })
    }

    /// Whether the pod is being deleted or evicted: its containers are stopping and none
    /// starts again.
    fn is_terminating(&self) -> bool {
        self.stopping.borrow().is_some() || self.evicting.borrow().is_some()
    }

    /// Whether the pod is being evicted with no grace period: its containers are killed.
    fn killed_at_once(&self) -> bool {
        self.stopping.borrow().is_none()
            && self
                .evicting
                .borrow()
                .as_ref()
                .is_some_and(|e| e.grace.is_zero())
    }

    /// Resolves once the pod is being deleted or evicted.
    async fn terminating(&self) {
        let mut stopping = self.stopping.clone();
        let mut evicting = self.evicting.clone();
        tokio::select! {
            _ = stopping.wait_for(Option::is_some) => {}
            _ = evicting.wait_for(Option::is_some) => {}
        }
    }

    fn update(&self, f: impl FnOnce(&mut Report)) {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn container(&self, init: bool, index: usize, f: impl FnOnce(&mut ContainerReport)) {
        self.update(|r| {
            f(if init {
                &mut r.init[index]
            } else {
                &mut r.app[index]
            })
        });
    }

    /// Has the status writer report the pod's status: soon, and without waiting for it, as the
    /// kubelet's status manager does. Changes made while a write is under way are written
    /// together by the next one.
    fn publish(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Waits until every change published so far is written.
    async fn flush(&self) {
        let wanted = *self.changes.borrow();
        let _ = self.written.subscribe().wait_for(|n| *n >= wanted).await;
    }

    /// Writes the pod's status as it is now. Fails when the API could not take it for now; a
    /// pod that is gone (or replaced by another of its name) counts as written, and so does a
    /// status the API refuses outright.
    async fn write_status(&self) -> Result<(), kube::Error> {
        let status = self.report.lock().unwrap_or_else(|p| p.into_inner()).json();
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let patch = json!({"metadata": {"uid": self.uid()}, "status": status});
        match pods
            .patch_status(self.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            // A refusal that a second try would get again (the status is invalid, say) is
            // given up on; a busy or unreachable API is tried again.
            Err(kube::Error::Api(e)) if (400..500).contains(&e.code) && e.code != 429 => {
                tracing::warn!(pod = %self.name(), error = %e, "the API refused the pod's status");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reports a container that could not start: waiting with `reason` and `message`, and a
    /// Failed event, as the kubelet reports them.
    async fn could_not_start(
        &self,
        init: bool,
        index: usize,
        container: &str,
        reason: &str,
        message: &str,
    ) -> Attempt {
        self.container(init, index, |c| c.waiting(reason, Some(message)));
        self.publish();
        self.event(
            "Warning",
            "Failed",
            &format!("Error: {message}"),
            Some(container),
        );
        Attempt::NotStarted
    }

    /// Shows the container waiting for `reason` and records a Warning event with the same
    /// message.
    async fn waiting_with_event(
        &self,
        at: (bool, usize),
        container: &str,
        reason: &str,
        event: &str,
        message: &str,
    ) {
        self.container(at.0, at.1, |c| c.waiting(reason, Some(message)));
        self.publish();
        self.event("Warning", event, message, Some(container));
    }

    /// Records an event about the pod (and a container of it), in the background.
    fn event(&self, kind: &str, reason: &str, message: &str, container: Option<&str>) {
        let mut involved = crate::events::pod_reference(&self.pod);
        if let Some(container) = container {
            involved["fieldPath"] = format!("spec.containers{{{container}}}").into();
        }
        let event =
            crate::events::kubelet_event(&self.ctx.node, involved, kind, reason, message, None);
        if let Some(event) = event {
            self.ctx.events.record(event);
        }
    }
}

/// What one attempt to run a container came to.
enum Attempt {
    /// It ran and ended.
    Exited(Exit),
    /// It could not start (image, component or configuration); retried with back-off whatever
    /// the restart policy.
    NotStarted,
}

/// Runs `pod` until it ends, or `stop` is set (the pod is being deleted or left the node), or
/// `evict` is (the node evicts it: it is stopped and reported Failed, and stays until deleted).
/// The pod comes boxed: this future lives as long as the pod, and keeps no room for a copy of
/// it.
pub async fn run(
    ctx: Arc<Context>,
    pod: Box<Pod>,
    mut stop: watch::Receiver<Option<Duration>>,
    mut evict: watch::Receiver<Option<Eviction>>,
) {
    let (worker, sandbox_changed) = new_worker(ctx, *pod, &stop, &evict);
    let _status_writer = AbortOnDrop(tokio::spawn(write_statuses(worker.clone())));
    // The pod's address is given up when its worker ends, however it ends.
    let _address = ReleaseAddress(worker.clone());
    if sandbox_changed {
        let message = "Pod sandbox changed, it will be killed and re-created.";
        worker.event("Normal", "SandboxChanged", message, None);
    }
    let mut lifecycle = Box::pin(async {
        take_address(&worker).await;
        mount_volumes(&worker).await;
        // Only a pod with projected volumes gets a refresher: a task's memory stays until its
        // handle goes, even once it has ended.
        let projected = worker
            .volumes
            .get()
            .is_some_and(|v| v.values().any(|p| p.projected));
        let _refresh =
            projected.then(|| AbortOnDrop(tokio::spawn(refresh_volumes(worker.clone()))));
        lifecycle(worker.clone()).await;
    });
    // A pod already being deleted when its worker starts runs nothing.
    let mut eviction = None;
    let grace = if stop.borrow().is_some() {
        None
    } else {
        let ended = tokio::select! {
            biased;
            _ = stop.wait_for(Option::is_some) => false,
            _ = evict.wait_for(Option::is_some) => false,
            _ = &mut lifecycle => true,
        };
        let deleting = *stop.borrow();
        if deleting.is_none() {
            // Containers told of an eviction may have ended before this worker looked: the
            // pod is evicted all the same.
            eviction = evict.borrow().clone();
        }
        if ended {
            if eviction.is_none() {
                // The pod ran to its end; its worker stays until the pod is deleted, to remove
                // it then. Its address is free again, as the kubelet frees a finished pod's.
                release_address(&worker);
                worker.flush().await;
                let _ = stop.wait_for(Option::is_some).await;
            }
            None
        } else if deleting.is_some() {
            deleting
        } else {
            eviction.as_ref().map(|e| e.grace)
        }
    };
    if let Some(grace) = grace {
        // As the kubelet: every running container is told to stop (an HTTP container drains
        // its requests, after its preStop hook), and what still runs when the grace period
        // is over is stopped by force.
        let running: Vec<String> = {
            let report = worker.report.lock().unwrap_or_else(|p| p.into_inner());
            report
                .init
                .iter()
                .chain(&report.app)
                .filter(|c| c.state.get("running").is_some())
                .map(|c| c.name.clone())
                .collect()
        };
        for name in &running {
            let message = format!("Stopping container {name}");
            worker.event("Normal", "Killing", &message, Some(name));
        }
        // A later delete may shorten the grace period.
        let mut deadline = tokio::time::Instant::now() + grace;
        loop {
            tokio::select! {
                _ = &mut lifecycle => break,
                () = tokio::time::sleep_until(deadline) => {
                    tracing::info!(pod = %worker.name(), "the grace period is over; stopping the pod's containers by force");
                    break;
                }
                changed = stop.changed() => {
                    let shorter = *stop.borrow_and_update();
                    if changed.is_err() {
                        break;
                    }
                    if let Some(shorter) = shorter {
                        deadline = deadline.min(tokio::time::Instant::now() + shorter);
                    }
                }
            }
        }
    }
    // Whatever still runs stops here.
    drop(lifecycle);
    if let Some(eviction) = eviction {
        // Evicted: the pod ends Failed and stays, as the kubelet leaves it, until deleted.
        worker.update(|r| {
            r.phase = "Failed";
            r.evicted = Some(eviction.message);
        });
        killed(&worker);
        worker.flush().await;
        let _ = stop.wait_for(Option::is_some).await;
    }
    if worker.pod.metadata.deletion_timestamp.is_some() || stop.borrow().is_some() {
        finish_deletion(&worker).await;
        // The pod's volumes and logs go with it, as the kubelet removes them.
        let ctx = &worker.ctx;
        let _ = std::fs::remove_dir_all(ctx.volumes_dir.join(worker.uid()));
        let _ = std::fs::remove_dir_all(pod_dir(
            &ctx.pods_dir,
            worker.namespace(),
            worker.name(),
            worker.uid(),
        ));
    }
}

/// The worker of `pod`, its containers' statuses resumed from those reported before; and
/// whether they ran here before (the node restarted under the pod).
fn new_worker(
    ctx: Arc<Context>,
    pod: Pod,
    stop: &watch::Receiver<Option<Duration>>,
    evict: &watch::Receiver<Option<Eviction>>,
) -> (Arc<Worker>, bool) {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_ip = ctx.address.clone();
    let status = pod.status.clone().unwrap_or_default();
    let old = |list: &Option<Vec<ContainerStatus>>, name: &str| {
        list.iter().flatten().find(|s| s.name == name).cloned()
    };
    let resumed = |containers: &[Container], list: &Option<Vec<ContainerStatus>>, policy: &str| {
        containers
            .iter()
            .map(|c| ContainerReport::resumed(c, old(list, &c.name).as_ref(), policy))
            .collect::<Vec<_>>()
    };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let report = Report {
        // Init containers run again in a new sandbox, as upstream runs them.
        init: resumed(
            spec.init_containers.as_deref().unwrap_or_default(),
            &status.init_container_statuses,
            "Always",
        ),
        app: resumed(&spec.containers, &status.container_statuses, policy),
        phase: "Pending",
        initialized: spec.init_containers.as_ref().is_none_or(Vec::is_empty),
        evicted: None,
        start_time: status
            .start_time
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|t| t.as_str().map(str::to_string))
            .unwrap_or_else(now),
        host_ip,
        pod_ip: None,
    };
    // Containers that ran here before: the node restarted under a running pod.
    let sandbox_changed = status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
        .flatten()
        .any(|c| c.container_id.is_some());
    let worker = Arc::new(Worker {
        ctx,
        pod,
        volumes: std::sync::OnceLock::new(),
        address: std::sync::OnceLock::new(),
        report: Mutex::new(report),
        changes: watch::Sender::new(1),
        written: watch::Sender::new(0),
        stopping: stop.clone(),
        evicting: evict.clone(),
    });
    (worker, sandbox_changed)
}

/// A pod the node turned away (`message` says why): it is reported Failed with reason
/// `Evicted` and a Warning event, runs nothing, and is removed once deleted.
pub async fn rejected(
    ctx: Arc<Context>,
    pod: Pod,
    message: String,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    tracing::info!(pod = %name, %message, "the node turned a pod away");
    let event = crate::events::kubelet_event(
        &ctx.node,
        crate::events::pod_reference(&pod),
        "Warning",
        crate::eviction::REASON,
        &message,
        None,
    );
    if let Some(event) = event {
        ctx.events.record(event);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({"metadata": {"uid": uid}, "status": {
        "phase": "Failed",
        "reason": crate::eviction::REASON,
        "message": format!("Pod was rejected: {message}"),
    }});
    let mut delay = Duration::from_millis(200);
    loop {
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code != 429 && (400..500).contains(&e.code) => break,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "reporting a turned-away pod failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(Option::is_some) => break,
                }
                delay = (delay * 2).min(STATUS_RETRY_MAX);
            }
        }
    }
    let _ = stop.wait_for(Option::is_some).await;
    remove(&pods, &name, &uid).await;
}

/// Gives up a pod's address when dropped.
struct ReleaseAddress(Arc<Worker>);

impl Drop for ReleaseAddress {
    fn drop(&mut self) {
        release_address(&self.0);
    }
}

/// Gives up the pod's address, and what the node noted of its sockets.
fn release_address(worker: &Worker) {
    worker.ctx.addresses.release(worker.uid());
    if let Some(address) = worker.address.get() {
        worker.ctx.network.forget(address.loopback);
    }
}

/// How long a stopping HTTP container waits at most for the Services to stop sending it
/// connections.
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// How long a pod waits at most before trying again for an address.
const ADDRESS_RETRY_MAX: Duration = Duration::from_secs(30);

/// Gives the pod its address, as the kubelet's network plugin does when it makes the pod's
/// sandbox: the one it had when the node restarted under it, else a free one. While none is
/// free, the pod waits, with a FailedCreatePodSandBox event each time it tries.
async fn take_address(worker: &Arc<Worker>) {
    let preferred = worker
        .pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    let mut delay = Duration::from_millis(500);
    loop {
        match worker.ctx.addresses.hold(worker.uid(), preferred) {
            Some(Ok(address)) => {
                let _ = worker.address.set(address);
                worker.update(|r| r.pod_ip = Some(address.ip.to_string()));
                worker.publish();
                return;
            }
            Some(Err(e)) => {
                let message =
                    format!("Failed to create pod sandbox: setting up the pod network: {e}");
                worker.event("Warning", "FailedCreatePodSandBox", &message, None);
            }
            // The node has no pod range from the server yet.
            None => {
                worker.ctx.addresses.wait_for_range().await;
                continue;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(ADDRESS_RETRY_MAX);
    }
}

/// Aborts a task when dropped: the pod worker's helpers end with it, even when the worker
/// itself is aborted.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a new pod's Pending status waits for its containers to start before it is
/// written on its own.
const FIRST_STATUS_HOLD: Duration = Duration::from_millis(100);

/// The longest wait before a status write the API did not take is made again.
const STATUS_RETRY_MAX: Duration = Duration::from_secs(10);

/// Writes the pod's status whenever it changes, one write at a time, so that writes land in
/// order and a burst of changes costs one write.
async fn write_statuses(worker: Arc<Worker>) {
    let mut changes = worker.changes.subscribe();
    // The pod's first status (Pending) waits a moment for the next change: a pod whose
    // containers start at once is reported Running in one write instead of two.
    let _ = tokio::time::timeout(FIRST_STATUS_HOLD, changes.wait_for(|n| *n > 1)).await;
    loop {
        let change = *changes.borrow_and_update();
        if change > *worker.written.borrow() {
            // A write the API did not take is made again, with what is current by then, as
            // the kubelet's status manager syncs again.
            let mut delay = Duration::from_millis(200);
            let written = loop {
                let latest = *changes.borrow_and_update();
                // Boxed: the writer rests between changes, and need not be the size of a
                // request to the API.
                match Box::pin(worker.write_status()).await {
                    Ok(()) => break latest,
                    Err(e) => {
                        tracing::warn!(pod = %worker.name(), error = %e, "reporting pod status failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(STATUS_RETRY_MAX);
                    }
                }
            };
            worker.written.send_replace(written);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// How often projected volumes (configMap, secret, downwardAPI) are brought up to date.
const VOLUME_SYNC: Duration = Duration::from_secs(10);

/// Sets up the pod's volumes, retrying with back-off while a source is missing.
async fn mount_volumes(worker: &Arc<Worker>) {
    let dir = worker.ctx.volumes_dir.join(worker.uid());
    let mut backoff = Backoff(Duration::from_secs(1));
    loop {
        let storage = crate::storage::LocalStorage {
            node: &worker.ctx.node,
            dir: &worker.ctx.data_dir.join("storage"),
        };
        match crate::volumes::prepare(&worker.ctx.client, &worker.pod, &dir, &storage).await {
            Ok(prepared) => {
                let _ = worker.volumes.set(prepared);
                return;
            }
            Err(e) => {
                worker.update(|r| {
                    for c in r.init.iter_mut().chain(r.app.iter_mut()) {
                        c.waiting("ContainerCreating", None);
                    }
                });
                worker.publish();
                worker.event("Warning", "FailedMount", &e.to_string(), None);
            }
        }
        backoff.wait().await;
    }
}

/// Keeps configMap, secret and downwardAPI volumes up to date while the pod runs.
async fn refresh_volumes(worker: Arc<Worker>) {
    let Some(prepared) = worker.volumes.get() else {
        return;
    };
    loop {
        tokio::time::sleep(VOLUME_SYNC).await;
        crate::volumes::refresh(&worker.ctx.client, &worker.pod, prepared).await;
    }
}

/// Marks every running container killed (exit code 137), as the kubelet reports containers
/// it stopped, and publishes the status.
fn killed(worker: &Worker) {
    let now = now();
    worker.update(|r| {
        for c in r.init.iter_mut().chain(r.app.iter_mut()) {
            if let Some(running) = c.state.get("running") {
                let started = running["startedAt"].clone();
                c.state = json!({"terminated": {"exitCode": 137, "reason": "Error",
                    "startedAt": started, "finishedAt": now}});
                c.ready = false;
                c.started = false;
            }
        }
    });
    worker.publish();
}

/// Marks every running container killed and removes the pod, as the kubelet does once its
/// containers are gone.
async fn finish_deletion(worker: &Worker) {
    killed(worker);
    worker.flush().await;
    let pods: Api<Pod> = Api::namespaced(worker.ctx.client.clone(), worker.namespace());
    remove(&pods, worker.name(), worker.uid()).await;
}

/// Deletes the pod with grace period 0, as the kubelet does once its containers are gone; a
/// pod already gone, or replaced by another of its name, is left alone.
async fn remove(pods: &Api<Pod>, name: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "removing the pod failed"),
    }
}

async fn lifecycle(worker: Arc<Worker>) {
    // The spec is read where the worker keeps it: a copy would live as long as the pod.
    let Some(spec) = worker.pod.spec.as_ref() else {
        return;
    };
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    // Init containers in order; a native sidecar (restartPolicy Always) starts and keeps running.
    // The containers' tasks live in join sets, so that dropping this future (the pod is being
    // deleted) stops every container.
    let mut sidecars = tokio::task::JoinSet::new();
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.spawn(keep_running(worker.clone(), true, index, "Always".into()));
            continue;
        }
        let mut backoff = Backoff::default();
        loop {
            if worker.is_terminating() {
                return;
            }
            // Boxed: the pod's lifecycle rests in waiting for its app containers, and need not
            // be the size of a container's run.
            match Box::pin(attempt(&worker, container, true, index)).await {
                Attempt::Exited(exit) if exit.code == 0 => break,
                Attempt::Exited(_) if policy == "Never" => {
                    worker.update(|r| r.phase = "Failed");
                    worker.publish();
                    return;
                }
                Attempt::Exited(_) => {
                    worker.container(true, index, |c| {
                        c.last_state = c.state.clone();
                        c.restart_count += 1;
                        c.waiting("CrashLoopBackOff", None);
                    });
                    worker.publish();
                }
                Attempt::NotStarted => {}
            }
            tokio::select! {
                () = backoff.wait() => {}
                () = worker.terminating() => return,
            }
        }
    }
    worker.update(|r| r.initialized = true);
    let mut apps = tokio::task::JoinSet::new();
    for index in 0..spec.containers.len() {
        apps.spawn(keep_running(worker.clone(), false, index, policy.clone()));
    }
    let mut all_succeeded = true;
    while let Some(app) = apps.join_next().await {
        all_succeeded &= app.is_ok_and(|code| code == 0);
    }
    sidecars.abort_all();
    worker.update(|r| r.phase = if all_succeeded { "Succeeded" } else { "Failed" });
    worker.publish();
}

/// Runs a container as its restart policy says; returns its last exit code once it stops for
/// good (never, under Always).
async fn keep_running(worker: Arc<Worker>, init: bool, index: usize, policy: String) -> i32 {
    // The container is read where the worker keeps the pod: a copy would live as long as it.
    let containers = worker.pod.spec.as_ref().map(|s| {
        if init {
            s.init_containers.as_deref().unwrap_or_default()
        } else {
            s.containers.as_slice()
        }
    });
    let Some(container) = containers.and_then(|c| c.get(index)) else {
        return 0;
    };
    let mut backoff = Backoff::default();
    // A container that finished for good before the node restarted stays finished.
    let finished = {
        let report = worker.report.lock().unwrap_or_else(|p| p.into_inner());
        let list = if init { &report.init } else { &report.app };
        list[index].state["terminated"]["exitCode"].as_i64()
    };
    if let Some(code) = finished {
        return code as i32;
    }
    loop {
        if worker.is_terminating() {
            return 0;
        }
        let started = tokio::time::Instant::now();
        match attempt(&worker, container, init, index).await {
            Attempt::Exited(exit) => {
                let restart = match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => exit.code != 0,
                    _ => true,
                };
                if !restart || worker.is_terminating() {
                    return exit.code;
                }
                if started.elapsed() >= BACKOFF_RESET {
                    backoff = Backoff::default();
                }
                worker.container(init, index, |c| {
                    c.last_state = c.state.clone();
                    c.restart_count += 1;
                    c.waiting("CrashLoopBackOff", None);
                });
                worker.update(|r| r.phase = "Running");
                worker.publish();
                let message = format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    container.name,
                    worker.name(),
                    worker.namespace(),
                    worker.uid()
                );
                worker.event("Warning", "BackOff", &message, Some(&container.name));
            }
            Attempt::NotStarted => {}
        }
        tokio::select! {
            () = backoff.wait() => {}
            () = worker.terminating() => return 0,
        }
    }
}

/// Runs the container's preStop hook, if it has one: an HTTP GET or TCP connection (as a
/// probe, whose failure is reported as a FailedPreStopHook event), or a sleep.
async fn pre_stop(worker: &Arc<Worker>, container: &Container) {
    let Some(hook) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return;
    };
    let name = container.name.as_str();
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        return;
    }
    let spec = k8s_openapi::api::core::v1::Probe {
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        exec: hook.exec.clone(),
        // The grace period bounds the hook.
        timeout_seconds: Some(86_400),
        ..Default::default()
    };
    // The hook reaches the container at its pod's address, as the kubelet's do (a container
    // only runs once the pod has one).
    let host = worker
        .address
        .get()
        .map(|a| a.ip.to_string())
        .unwrap_or_default();
    let outcome = match Probe::from_spec(&spec, container, &host) {
        Ok(probe) => probe.check().await,
        Err(e) => Err(e),
    };
    if let Err(message) = outcome {
        let message = format!("PreStopHook failed: {message}");
        worker.event("Warning", "FailedPreStopHook", &message, Some(name));
    }
}

/// The grace period of a pod being deleted (None while it is not): the one the delete asked
/// for, else the pod's terminationGracePeriodSeconds (30 s by default).
pub fn grace_period(pod: &Pod) -> Option<Duration> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(30);
    Some(Duration::from_secs(seconds.max(0) as u64))
}

/// Runs a started container's probes: the startup probe until it succeeds, then liveness and
/// readiness. Readiness sets the container's ready flag (when it can be ready at all); the
/// future ends only when the startup or liveness probe fails for good, naming which.
async fn watch_probes(
    worker: &Arc<Worker>,
    at: (bool, usize),
    name: &str,
    probes: &Probes,
    readiable: bool,
) -> &'static str {
    if let Some(startup) = &probes.startup {
        if !probe_until(worker, name, "Startup", startup, true).await {
            return "startup";
        }
        worker.container(at.0, at.1, |c| {
            c.started = true;
            c.ready = readiable && probes.readiness.is_none();
        });
        worker.publish();
    }
    let readiness = async {
        let Some(probe) = &probes.readiness else {
            return std::future::pending().await;
        };
        tokio::time::sleep(probe.initial_delay).await;
        let (mut successes, mut failures) = (0, 0);
        loop {
            let ready = match probe.check().await {
                Ok(()) => {
                    (successes, failures) = (successes + 1, 0);
                    (successes >= probe.success_threshold).then_some(true)
                }
                Err(message) => {
                    (successes, failures) = (0, failures + 1);
                    let message = format!("Readiness probe failed: {message}");
                    worker.event("Warning", "Unhealthy", &message, Some(name));
                    (failures >= probe.failure_threshold).then_some(false)
                }
            };
            if let Some(ready) = ready.filter(|_| readiable) {
                let mut changed = false;
                worker.container(at.0, at.1, |c| {
                    changed = c.ready != ready;
                    c.ready = ready;
                });
                if changed {
                    worker.publish();
                }
            }
            tokio::time::sleep(probe.period).await;
        }
    };
    let liveness = async {
        match &probes.liveness {
            Some(probe) => probe_until(worker, name, "Liveness", probe, false).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = readiness => "readiness",
        _ = liveness => "liveness",
    }
}

/// Runs a probe after its initial delay, every period: until it succeeds (`until_success`,
/// the startup probe; true) or until it fails failureThreshold times in a row (false).
async fn probe_until(
    worker: &Arc<Worker>,
    name: &str,
    kind: &str,
    probe: &Probe,
    until_success: bool,
) -> bool {
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        match probe.check().await {
            Ok(()) if until_success => return true,
            Ok(()) => failures = 0,
            Err(message) => {
                failures += 1;
                let message = format!("{kind} probe failed: {message}");
                worker.event("Warning", "Unhealthy", &message, Some(name));
                if failures >= probe.failure_threshold {
                    return false;
                }
            }
        }
        tokio::time::sleep(probe.period).await;
    }
}

/// The kubelet's default pull policy: Always for `:latest` or no tag, else IfNotPresent.
fn default_pull_policy(reference: &str) -> &'static str {
    if reference.contains('@') {
        return "IfNotPresent";
    }
    let last = reference.rsplit('/').next().unwrap_or_default();
    match last.split_once(':') {
        None | Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// How long an ErrImagePull shows before the container waits in ImagePullBackOff.
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(1);

/// The container's image, pulled as its imagePullPolicy says, with the kubelet's events
/// (Pulling, Pulled, Failed, BackOff, ErrImageNeverPull) and waiting reasons (ErrImagePull,
/// then ImagePullBackOff; ErrImageNeverPull). None when there is no image to run.
async fn ensure_image(
    worker: &Arc<Worker>,
    container: &Container,
    init: bool,
    index: usize,
) -> Option<Image> {
    let ctx = &worker.ctx;
    let at = (init, index);
    let name = container.name.as_str();
    let reference = container.image.clone().unwrap_or_default();
    let policy = container
        .image_pull_policy
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default_pull_policy(&reference).to_string());
    let present = ctx.images.resolve(&reference);
    let present = match present {
        Ok(present) => present,
        Err(e) => {
            let message = format!("Failed to inspect image \"{reference}\": {e}");
            worker
                .waiting_with_event(at, name, "InvalidImageName", "InspectFailed", &message)
                .await;
            return None;
        }
    };
    match (policy.as_str(), present) {
        ("Never" | "IfNotPresent", Some(image)) => {
            let message = format!("Container image \"{reference}\" already present on machine");
            worker.event("Normal", "Pulled", &message, Some(name));
            return Some(image);
        }
        ("Never", None) => {
            let message =
                format!("Container image \"{reference}\" is not present with pull policy of Never");
            worker
                .waiting_with_event(at, name, "ErrImageNeverPull", "ErrImageNeverPull", &message)
                .await;
            return None;
        }
        _ => {}
    }
    let message = format!("Pulling image \"{reference}\"");
    worker.event("Normal", "Pulling", &message, Some(name));
    let keyring = pull_keyring(worker).await;
    let started = std::time::Instant::now();
    match ctx.registries.pull(&ctx.images, &reference, &keyring).await {
        Ok(pulled) => {
            let took = go_millis(started.elapsed());
            let message = format!(
                "Successfully pulled image \"{reference}\" in {took} ({took} including waiting). \
                 Image size: {} bytes.",
                pulled.image.size
            );
            worker.event("Normal", "Pulled", &message, Some(name));
            Some(pulled.image)
        }
        Err(e) => {
            let error = e.to_string();
            let message = format!("Failed to pull image \"{reference}\": {error}");
            worker
                .waiting_with_event(at, name, "ErrImagePull", "Failed", &message)
                .await;
            worker.event("Warning", "Failed", "Error: ErrImagePull", Some(name));
            tokio::time::sleep(PULL_ERROR_SHOWN).await;
            let message = format!("Back-off pulling image \"{reference}\"");
            let waiting = format!("{message}: ErrImagePull: {error}");
            worker.container(init, index, |c| {
                c.waiting("ImagePullBackOff", Some(&waiting))
            });
            worker.publish();
            worker.event("Normal", "BackOff", &message, Some(name));
            worker.event("Warning", "Failed", "Error: ImagePullBackOff", Some(name));
            None
        }
    }
}

/// A duration as Go prints one truncated to milliseconds (`532ms`, `1.25s`), as the kubelet's
/// pull events show it.
fn go_millis(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let seconds = format!("{}.{:03}", millis / 1000, millis % 1000);
    format!("{}s", seconds.trim_end_matches('0').trim_end_matches('.'))
}

/// The credentials a pull for this pod may use: its imagePullSecrets, then the node's.
async fn pull_keyring(worker: &Arc<Worker>) -> Keyring {
    let mut keyring = Keyring::default();
    let names: Vec<String> = worker
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    let secrets: Api<Secret> = Api::namespaced(worker.ctx.client.clone(), worker.namespace());
    let mut missing = Vec::new();
    for name in names {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                if let Err(e) = keyring.add_secret(&secret) {
                    tracing::warn!(pod = %worker.name(), "ignoring an image pull secret: {e}");
                }
            }
            _ => missing.push(name),
        }
    }
    if !missing.is_empty() {
        let message = format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may \
             not succeed.",
            missing.join(", ")
        );
        worker.event("Warning", "FailedToRetrieveImagePullSecret", &message, None);
    }
    keyring.extend(Keyring::for_node(&worker.ctx.data_dir));
    keyring
}

/// The kubelet's doubling back-off.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(BACKOFF_START)
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}

/// One attempt at running a container: image, component, environment, then the run.
async fn attempt(worker: &Arc<Worker>, container: &Container, init: bool, index: usize) -> Attempt {
    let ctx = &worker.ctx;
    let name = container.name.as_str();
    // What runs once before the container starts is boxed, so that the future a running
    // container rests in (one per container of every pod) is not the size of an image pull.
    let Some(image) = Box::pin(ensure_image(worker, container, init, index)).await else {
        return Attempt::NotStarted;
    };
    let loaded = {
        let (runtime, images, image) = (ctx.runtime.clone(), ctx.images.clone(), image.clone());
        tokio::task::spawn_blocking(move || {
            let loaded = runtime.prepare(&images, &image)?;
            let kind = loaded.kind;
            Ok::<_, LoadError>((loaded, kind))
        })
        .await
        .unwrap_or_else(|e| Err(LoadError::Compile(e.to_string())))
    };
    let (component, kind) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let message = e.to_string();
            return worker
                .could_not_start(init, index, name, "CreateContainerError", &message)
                .await;
        }
    };
    let env = match Box::pin(environment(worker, container)).await {
        Ok(env) => env,
        Err(message) => {
            return worker
                .could_not_start(init, index, name, "CreateContainerConfigError", &message)
                .await;
        }
    };
    let restart_count = {
        let report = worker.report.lock().unwrap_or_else(|p| p.into_inner());
        let list = if init { &report.init } else { &report.app };
        list[index].restart_count
    };
    let dir = pod_dir(
        &ctx.pods_dir,
        worker.namespace(),
        worker.name(),
        worker.uid(),
    )
    .join(name);
    let log = match LogFile::create(
        &run_log(&dir, restart_count),
        ctx.log_rotation,
        &ctx.live_logs,
    ) {
        Ok(log) => log,
        Err(e) => {
            let message = format!("creating the container's log: {e}");
            worker.container(init, index, |c| {
                c.waiting("CreateContainerError", Some(&message))
            });
            worker.publish();
            return Attempt::NotStarted;
        }
    };
    let argv: Vec<String> = match &container.command {
        Some(command) if !command.is_empty() => command
            .iter()
            .chain(container.args.iter().flatten())
            .cloned()
            .collect(),
        _ => std::iter::once(name.to_string())
            .chain(container.args.iter().flatten().cloned())
            .collect(),
    };
    let mut preopens = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = worker.volumes.get().and_then(|v| v.get(&mount.name)) else {
            let message = format!("volume \"{}\" is not defined in the pod", mount.name);
            worker.container(init, index, |c| {
                c.waiting("CreateContainerConfigError", Some(&message))
            });
            worker.publish();
            return Attempt::NotStarted;
        };
        let host = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) if sub.split('/').any(|p| p == "..") || sub.starts_with('/') => {
                let message = format!("invalid subPath \"{sub}\"");
                worker.container(init, index, |c| {
                    c.waiting("CreateContainerConfigError", Some(&message))
                });
                worker.publish();
                return Attempt::NotStarted;
            }
            Some(sub) => {
                let path = volume.host.join(sub);
                let _ = std::fs::create_dir_all(&path);
                path
            }
            None => volume.host.clone(),
        };
        preopens.push(crate::engine::Preopen {
            host,
            guest: mount.mount_path.clone(),
            read_only: volume.always_read_only || mount.read_only == Some(true),
        });
    }
    let memory_limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .and_then(|q| quantity_bytes(&q.0))
        .map(|b| b as usize);
    let Some(address) = worker.address.get().copied() else {
        return Attempt::NotStarted;
    };
    let probes = match Probes::of(container, &address.ip.to_string()) {
        Ok(probes) => probes,
        Err(message) => {
            return worker
                .could_not_start(init, index, name, "CreateContainerConfigError", &message)
                .await;
        }
    };
    let cpu_millicores = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("cpu"))
        .and_then(|q| crate::cpu::millicores(&q.0));
    worker.event(
        "Normal",
        "Created",
        &format!("Created container: {name}"),
        Some(name),
    );
    let listeners = if kind == Kind::HttpHandler {
        match listen(&address, &ctx.address, container).await {
            Ok(listeners) => {
                for at in listeners.iter().filter_map(|l| l.local_addr().ok()) {
                    ctx.network.bound(at, false);
                }
                listeners
            }
            Err(message) => {
                return worker
                    .could_not_start(init, index, name, "CreateContainerError", &message)
                    .await;
            }
        }
    } else {
        Vec::new()
    };
    let started_at = now();
    let container_id = format!("wasmtime://{}-{}-{}", worker.uid(), name, restart_count);
    // An app container or a native sidecar is ready once started, unless probes say otherwise.
    let readiable = !init || container.restart_policy.as_deref() == Some("Always");
    worker.container(init, index, |c| {
        c.image_id = image.id();
        c.container_id = Some(container_id.clone());
        c.state = json!({"running": {"startedAt": started_at}});
        c.started = probes.startup.is_none();
        c.ready = readiable && probes.startup.is_none() && probes.readiness.is_none();
    });
    if !init {
        worker.update(|r| r.phase = "Running");
    }
    worker.publish();
    worker.event(
        "Normal",
        "Started",
        &format!("Started container {name}"),
        Some(name),
    );
    let tracked = ctx.usage.track(
        &crate::usage::PodRef {
            name: worker.name().to_string(),
            namespace: worker.namespace().to_string(),
            uid: worker.uid().to_string(),
        },
        name,
    );
    let spec = RunSpec {
        argv,
        env,
        stdout: log.stream("stdout"),
        stderr: log.stream("stderr"),
        memory_limit,
        cpu: cpu_millicores.map(|m| crate::cpu::CpuLimit::new(m, std::time::Instant::now())),
        preopens,
        usage: tracked.usage().clone(),
        pod: address,
        network: ctx.network.clone(),
        dns: Arc::new(crate::net::dns::PodDns::of(&worker.pod)),
    };
    // Told to stop (the pod is being deleted), a container first runs its preStop hook. An
    // HTTP container then drains its requests and ends. A command cannot catch a signal, so
    // it ends at once, as a process without a SIGTERM handler does (143). A pod evicted with
    // no grace period is killed outright (137), hooks unrun.
    let told_to_stop = async {
        worker.terminating().await;
        if !worker.killed_at_once() {
            Box::pin(pre_stop(worker, container)).await;
            // An HTTP container keeps taking connections until the node's Services no longer
            // send it any, as a server that drains on SIGTERM does: none is turned away while
            // its endpoint is still being taken out of rotation.
            if kind == Kind::HttpHandler {
                let drained = ctx.network.services.wait_unlisted(address.ip);
                let _ = tokio::time::timeout(DRAIN_MAX, drained).await;
            }
        }
    };
    let run = async {
        match kind {
            Kind::Command => tokio::select! {
                exit = Box::pin(ctx.runtime.run_command(&component, spec)) => exit,
                () = told_to_stop => Exit {
                    code: if worker.killed_at_once() { 137 } else { 143 },
                    reason: "Error",
                    message: None,
                },
            },
            Kind::HttpHandler => {
                let exit = ctx
                    .runtime
                    .serve_http(&component, spec, listeners, told_to_stop)
                    .await;
                if worker.killed_at_once() {
                    Exit {
                        code: 137,
                        reason: "Error",
                        message: None,
                    }
                } else {
                    exit
                }
            }
        }
    };
    let exit = tokio::select! {
        exit = run => exit,
        failed = watch_probes(worker, (init, index), name, &probes, readiable) => {
            let message = format!("Container {name} failed {failed} probe, will be restarted");
            worker.event("Normal", "Killing", &message, Some(name));
            Exit { code: 137, reason: "Error", message: None }
        }
    };
    drop(tracked);
    let finished_at = now();
    worker.container(init, index, |c| {
        let mut terminated = json!({
            "exitCode": exit.code, "reason": exit.reason,
            "startedAt": started_at, "finishedAt": finished_at, "containerID": container_id,
        });
        if let Some(message) = &exit.message {
            terminated["message"] = message.clone().into();
        }
        c.state = json!({"terminated": terminated});
        c.ready = false;
        c.started = false;
    });
    worker.publish();
    Attempt::Exited(exit)
}

/// Listens for an HTTP container at each of its TCP containerPorts on its pod's address, and on
/// the node's address at each hostPort it asks for.
async fn listen(
    pod: &PodAddress,
    node_address: &str,
    container: &Container,
) -> Result<Vec<tokio::net::TcpListener>, String> {
    let ports: Vec<_> = container
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .collect();
    if ports.is_empty() {
        return Err(format!(
            "container {} is a wasi:http component: it needs a containerPort to be served on",
            container.name
        ));
    }
    let mut listeners = Vec::new();
    for port in ports {
        let mut places = vec![(
            format!("{}:{}", pod.loopback, port.container_port),
            format!("{}:{}", pod.ip, port.container_port),
        )];
        if let Some(host_port) = port.host_port.filter(|p| *p > 0) {
            let at = format!("{node_address}:{host_port}");
            places.push((at.clone(), at));
        }
        for (at, named) in places {
            let listener = tokio::net::TcpListener::bind(&at)
                .await
                .map_err(|e| format!("serving on {named}: {e}"))?;
            listeners.push(listener);
        }
    }
    Ok(listeners)
}

/// Bytes in a memory quantity (`64Mi`, `1G`, `1048576`).
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "m" => 1e-3,
        _ => return None,
    };
    Some((number * factor).ceil() as u64)
}

/// The container's environment from `envFrom` then `env`, as the kubelet builds it.
async fn environment(
    worker: &Worker,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let client = &worker.ctx.client;
    let namespace = worker.namespace();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |env: &mut BTreeMap<String, String>, key: String, value: String| {
        if !env.contains_key(&key) {
            order.push(key.clone());
        }
        env.insert(key, value);
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(r) = &source.config_map_ref {
            match config_maps
                .get_opt(&r.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &source.secret_ref {
            match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(secret) => {
                    for (k, v) in secret.data.unwrap_or_default() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(value.clone()),
            (None, Some(from)) => {
                if let Some(r) = &from.config_map_key_ref {
                    let cm = config_maps
                        .get_opt(&r.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    match cm.and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned())) {
                        Some(v) => Some(v),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let secret = secrets.get_opt(&r.name).await.map_err(|e| e.to_string())?;
                    match secret.and_then(|s| s.data.and_then(|d| d.get(&r.key).cloned())) {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if r.optional == Some(true) => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    }
                } else if let Some(r) = &from.field_ref {
                    Some(worker.field(&r.field_path)?)
                } else if let Some(r) = &from.resource_field_ref {
                    Some(resource_field(container, &r.resource)?)
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| env.remove(&k).map(|v| (k, v)))
        .collect())
}

/// A `fieldRef` value, for the fields upstream supports.
pub(crate) fn field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => String::new(),
        _ => {
            if let Some(key) = map_key("metadata.labels") {
                meta.labels
                    .clone()
                    .unwrap_or_default()
                    .get(&key)
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = map_key("metadata.annotations") {
                meta.annotations
                    .clone()
                    .unwrap_or_default()
                    .get(&key)
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef fieldPath {path}"));
            }
        }
    })
}

/// A `resourceFieldRef` value: the container's limit or request, in cores (rounded up) or bytes.
pub(crate) fn resource_field(container: &Container, resource: &str) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resourceFieldRef resource {resource}"))?;
    let resources = container.resources.clone().unwrap_or_default();
    let values = match kind {
        "limits" => resources.limits,
        "requests" => resources.requests,
        _ => return Err(format!("unsupported resourceFieldRef resource {resource}")),
    }
    .unwrap_or_default();
    let Some(quantity) = values.get(name) else {
        return Ok(match name {
            "cpu" => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .to_string(),
            _ => "0".to_string(),
        });
    };
    let bytes =
        quantity_bytes(&quantity.0).ok_or_else(|| format!("invalid quantity {}", quantity.0))?;
    Ok(match name {
        "cpu" => ((quantity_bytes(&quantity.0).unwrap_or(0) as f64).ceil() as u64)
            .max(1)
            .to_string(),
        _ => bytes.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_durations_print_as_go_prints_them() {
        assert_eq!(go_millis(Duration::from_micros(532_900)), "532ms");
        assert_eq!(go_millis(Duration::from_millis(1250)), "1.25s");
        assert_eq!(go_millis(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn default_pull_policies_follow_the_tag() {
        assert_eq!(default_pull_policy("web"), "Always");
        assert_eq!(
            default_pull_policy("registry.local:5000/web:latest"),
            "Always"
        );
        assert_eq!(default_pull_policy("registry.local:5000/web"), "Always");
        assert_eq!(
            default_pull_policy("registry.local:5000/web:1"),
            "IfNotPresent"
        );
        let digest = format!("web@sha256:{}", "a".repeat(64));
        assert_eq!(default_pull_policy(&digest), "IfNotPresent");
    }

    #[test]
    fn memory_quantities_convert_to_bytes() {
        assert_eq!(quantity_bytes("64Mi"), Some(64 * 1024 * 1024));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1048576"), Some(1_048_576));
        assert_eq!(quantity_bytes("500m"), Some(1));
        assert_eq!(quantity_bytes("12x"), None);
    }

    #[test]
    fn field_refs_read_pod_metadata() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"nodeName": "n1", "containers": []},
        }))
        .unwrap();
        assert_eq!(field(&pod, "metadata.name").unwrap(), "p");
        assert_eq!(field(&pod, "metadata.namespace").unwrap(), "ns");
        assert_eq!(field(&pod, "spec.nodeName").unwrap(), "n1");
        assert_eq!(field(&pod, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(field(&pod, "metadata.annotations['a']").unwrap(), "b");
        assert!(field(&pod, "spec.nonsense").is_err());
    }
}
