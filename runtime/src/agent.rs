//! The node agent: registers the node, keeps its Lease fresh, and runs a worker for every pod
//! bound to it (`spec.nodeName`), stopping the worker when the pod is deleted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::endpoint;
use crate::engine::Runtime;
use crate::events::EventRecorder;
use crate::eviction::{self, Candidate, Eviction, Pressure};
use crate::image::ImageStore;
use crate::image::registry::Registries;
use crate::node::{self, NodeInfo};
use crate::pods::{self, Context};

/// How a node agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    /// Where the node keeps its images and pod logs.
    pub data_dir: PathBuf,
    /// The address the node reports as its InternalIP.
    pub address: String,
    pub max_pods: u32,
    /// Registries (`HOST:PORT`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// When container logs are rotated.
    pub log_rotation: crate::logs::Rotation,
    /// The container logs being written now.
    pub live_logs: crate::logs::LiveLogs,
    /// What the node and its running containers use.
    pub usage: crate::usage::Usage,
    /// How fast the node writes events.
    pub event_rate: crate::events::EventRate,
    /// Where the node serves the API server (logs), if it does: a node in the server's own
    /// process is reached in process instead.
    pub endpoint: Option<std::net::SocketAddr>,
    /// When the node evicts pods to relieve memory pressure, and its memory capacity.
    pub eviction: crate::eviction::EvictionConfig,
    /// Where the node serves Ingresses.
    pub ingress: crate::net::ingress::IngressPorts,
    /// The node's pod addresses, shared with whoever reaches its pods from the same process.
    pub addresses: crate::net::Addresses,
    /// The node's serving certificate when it was issued beforehand (a node in the server's
    /// process); else the node asks the server for one.
    pub identity: Option<endpoint::Identity>,
    /// The node's client certificate, which it presents to other nodes' tunnels.
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate and its key (PEM).
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl AgentConfig {
    /// The node's image store directory.
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    /// The node's pod log directory.
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }
}

/// The host's name, lowercased, as the kubelet names its node.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".into())
}

/// Raises the soft limit on open files to the hard one, as container runtimes do: each HTTP
/// pod holds a listening socket, and distributions' usual soft limit of 1,024 would stop a
/// node long before its pod capacity.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(from = current, to = maximum, "raised the open files limit"),
            Err(e) => tracing::warn!(error = %e, "raising the open files limit failed"),
        }
    }
}

/// A running pod's worker.
struct Running {
    /// The pod as last seen.
    pod: Pod,
    /// Set, with the grace period, once the pod is being deleted.
    stop: watch::Sender<Option<std::time::Duration>>,
    /// Set when the node evicts the pod.
    evict: watch::Sender<Option<Eviction>>,
    task: tokio::task::JoinHandle<()>,
}

/// The node's pod workers, by pod UID.
type Workers = Arc<Mutex<HashMap<String, Running>>>;

/// The pods the eviction manager may evict: running containers, not being deleted or evicted.
fn eviction_candidates(workers: &Workers, usage: &crate::usage::Usage) -> Vec<Candidate> {
    let workers = workers.lock().unwrap_or_else(|p| p.into_inner());
    workers
        .iter()
        .filter(|(uid, w)| {
            w.pod.metadata.deletion_timestamp.is_none()
                && w.evict.borrow().is_none()
                && usage.holds(uid)
        })
        .map(|(_, w)| Candidate {
            pod: w.pod.clone(),
            evict: w.evict.clone(),
        })
        .collect()
}

fn lock(workers: &Workers) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
    workers.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the agent until the process ends.
pub async fn run(client: kube::Client, config: AgentConfig) -> anyhow::Result<()> {
    raise_open_files_limit();
    let images = ImageStore::open(config.images_dir())?;
    let runtime = Runtime::new()?;
    let memory_capacity = config.eviction.memory_capacity();
    let mut info = NodeInfo {
        name: config.name.clone(),
        address: config.address.clone(),
        max_pods: config.max_pods,
        data_dir: config.data_dir.clone(),
        endpoint_port: None,
        memory_capacity,
        memory_allocatable: memory_capacity
            .saturating_sub(config.eviction.hard.memory_reserve(memory_capacity)),
    };
    let addresses = config.addresses.clone();
    let network = Arc::new(crate::net::NodeNetwork::default());
    if let Some(address) = config.endpoint {
        let listener = endpoint::bind(address).await?;
        info.endpoint_port = Some(listener.local_addr()?.port());
        let names = [config.name.clone(), config.address.clone()];
        let mut delay = std::time::Duration::from_millis(100);
        let identity = loop {
            if let Some(identity) = config.identity.clone() {
                break identity;
            }
            match endpoint::request_identity(&client, &names).await {
                Ok(identity) => break identity,
                Err(e) if endpoint::refused(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "no serving certificate yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        };
        if let (Some(client_certificate), Some(peers_ca_pem)) =
            (&config.client_certificate, &identity.peers_ca_pem)
        {
            let credentials = crate::net::tunnel::Credentials {
                cert_pem: client_certificate.cert_pem.clone(),
                key_pem: client_certificate.key_pem.clone(),
                peers_ca_pem: peers_ca_pem.clone(),
            };
            tokio::spawn(network.tunnel.clone().run(
                client.clone(),
                config.name.clone(),
                addresses.clone(),
                credentials,
            ));
        }
        let served = endpoint::Served {
            node: config.name.clone(),
            pods_dir: config.pods_dir(),
            live_logs: config.live_logs.clone(),
            usage: config.usage.clone(),
            addresses: addresses.clone(),
            network: network.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = endpoint::serve(listener, identity, served).await {
                tracing::error!(error = %format!("{e:#}"), "the node endpoint stopped");
            }
        });
    }
    // The API may not be serving yet when an embedded agent starts.
    let mut delay = std::time::Duration::from_millis(100);
    while let Err(e) = node::register(&client, &info, Pressure::default()).await {
        tracing::warn!(node = %info.name, error = %e, "registering the node failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
    tracing::info!(node = %info.name, "node registered");
    let (pressure, pressure_seen) = watch::channel(Pressure::default());
    tokio::spawn(node::heartbeat(
        client.clone(),
        info.clone(),
        pressure_seen.clone(),
    ));
    tokio::spawn(config.usage.clone().sample_forever());
    tokio::spawn(crate::net::follow_range(
        client.clone(),
        config.name.clone(),
        addresses.clone(),
    ));
    tokio::spawn(network.services.clone().follow(client.clone()));
    let events = EventRecorder::spawn(client.clone(), config.event_rate);
    match config.address.parse() {
        Ok(address) => {
            tokio::spawn(crate::net::ingress::run(crate::net::ingress::Controller {
                client: client.clone(),
                services: network.services.clone(),
                addresses: addresses.clone(),
                tunnel: network.tunnel.clone(),
                local: network.local.clone(),
                address,
                ports: config.ingress,
            }));
            tokio::spawn(crate::net::proxy::run(crate::net::proxy::Proxy {
                services: network.services.clone(),
                address,
                addresses: addresses.clone(),
                tunnel: network.tunnel.clone(),
                local: network.local.clone(),
                client: client.clone(),
                events: events.clone(),
                node: config.name.clone(),
            }));
        }
        Err(_) => {
            tracing::warn!(address = %config.address, "the node's address is not an IPv4 address: no node ports or load balancers")
        }
    }
    let workers: Workers = Arc::default();
    let manager = eviction::Manager {
        config: config.eviction.clone(),
        usage: config.usage.clone(),
        events: events.clone(),
        node: config.name.clone(),
        data_dir: config.data_dir.clone(),
        images_dir: config.images_dir(),
        pressure,
    };
    let candidates = {
        let workers = workers.clone();
        let usage = config.usage.clone();
        move || eviction_candidates(&workers, &usage)
    };
    tokio::spawn(manager.run(candidates));
    let ctx = Arc::new(Context {
        client: client.clone(),
        runtime,
        images,
        registries: Registries::new(config.insecure_registries.clone()),
        events,
        data_dir: config.data_dir.clone(),
        pods_dir: config.pods_dir(),
        log_rotation: config.log_rotation,
        live_logs: config.live_logs.clone(),
        usage: config.usage.clone(),
        volumes_dir: config.data_dir.join("volumes"),
        address: config.address.clone(),
        node: config.name.clone(),
        addresses: addresses.clone(),
        network,
    });
    let pods: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", config.name);
    // Failed watches are retried with back-off, never in a tight loop.
    let mut events = watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    // The pods listed first are started together once the listing is complete, after the
    // addresses they held before the node restarted are kept for them.
    let mut listed: Option<Vec<Pod>> = None;
    while let Some(event) = events.next().await {
        let pods = match event {
            Ok(watcher::Event::Apply(pod)) => vec![pod],
            Ok(watcher::Event::Init) => {
                listed = Some(Vec::new());
                continue;
            }
            Ok(watcher::Event::InitApply(pod)) => {
                listed.get_or_insert_default().push(pod);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                let pods = listed.take().unwrap_or_default();
                for pod in &pods {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if matches!(phase, Some("Succeeded" | "Failed")) {
                        continue;
                    }
                    let held = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
                    if let (Some(uid), Some(ip)) = (&pod.metadata.uid, held)
                        && let Ok(ip) = ip.parse()
                    {
                        addresses.reserve(uid, ip);
                    }
                }
                pods
            }
            Ok(watcher::Event::Delete(pod)) => {
                let gone = pod
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|u| lock(&workers).remove(u));
                if let Some(gone) = gone {
                    gone.task.abort();
                }
                // A pod the node ran no worker for may still have an address kept for it.
                if let Some(uid) = &pod.metadata.uid {
                    addresses.release(uid);
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching the node's pods failed; retrying");
                continue;
            }
        };
        for pod in pods {
            admit(&ctx, &workers, &pressure_seen, pod);
        }
    }
    Ok(())
}

/// Starts a worker for a pod new to the node, or tells the worker of a known one of its change.
fn admit(
    ctx: &Arc<Context>,
    workers: &Workers,
    pressure_seen: &watch::Receiver<Pressure>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let mut running = lock(workers);
    // A worker stays known until its pod is deleted, finished or not: a late event for a
    // pod that already ran to its end must not start it again.
    match running.get_mut(&uid) {
        Some(worker) => {
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = pods::grace_period(&pod);
                worker.stop.send_if_modified(|stop| {
                    // A second delete may shorten the grace period, never lengthen it.
                    let shorter = stop.is_none_or(|current| grace < Some(current));
                    if shorter {
                        *stop = grace;
                    }
                    shorter
                });
            }
            worker.pod = pod;
        }
        None => {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let done = matches!(phase, Some("Succeeded" | "Failed"));
            if done && pod.metadata.deletion_timestamp.is_none() {
                // A finished pod this agent ran before it restarted: nothing to run again.
                return;
            }
            let (stop, stopped) = watch::channel(pods::grace_period(&pod));
            let (evict, evicted) = watch::channel(None);
            // Under pressure a new pod may be turned away, as the kubelet's admission does.
            let refused = pod
                .metadata
                .deletion_timestamp
                .is_none()
                .then(|| pressure_seen.borrow().refuses(&pod))
                .flatten();
            let task = match refused {
                Some(message) => {
                    tokio::spawn(pods::rejected(ctx.clone(), pod.clone(), message, stopped))
                }
                None => tokio::spawn(pods::run(
                    ctx.clone(),
                    Box::new(pod.clone()),
                    stopped,
                    evicted,
                )),
            };
            running.insert(
                uid,
                Running {
                    pod,
                    stop,
                    evict,
                    task,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let Some(maximum) = limit.maximum.filter(|m| *m > 256) else {
            return;
        };
        // The limit is lowered for a moment only: the call under test raises it again.
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: Some(maximum),
            },
        )
        .unwrap();
        raise_open_files_limit();
        assert_eq!(getrlimit(Resource::Nofile).current, Some(maximum));
    }
}
