//! The node's own objects: its Node (capacity, addresses, nodeInfo, conditions) and its Lease in
//! kube-node-lease, renewed as the kubelet renews it.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::eviction::Pressure;

/// How often the Lease is renewed (the kubelet's default), and how long it is good for.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
/// How often the Node's conditions are reported even when nothing changed.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// What the node reports about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// The address other components reach the node on.
    pub address: String,
    pub max_pods: u32,
    /// Where the node keeps its data: its filesystem's free space is the disk pressure.
    pub data_dir: std::path::PathBuf,
    /// The port of the node's HTTPS endpoint, when it serves one (see [`crate::endpoint`]).
    pub endpoint_port: Option<u16>,
    /// The node's memory capacity, in bytes.
    pub memory_capacity: u64,
    /// What of it pods may request: the capacity less the hard eviction threshold.
    pub memory_allocatable: u64,
}

/// The text of /proc/meminfo (empty if it cannot be read).
pub(crate) fn meminfo() -> String {
    std::fs::read_to_string("/proc/meminfo").unwrap_or_default()
}

/// A field of /proc/meminfo's text (`MemTotal`, `MemAvailable`), in KiB.
pub(crate) fn meminfo_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// The node's conditions; `since` is when the pressure last changed.
fn conditions(now: &str, pressure: Pressure, since: &str) -> serde_json::Value {
    let condition = |kind: &str, status: bool, reason: &str, message: &str| {
        json!({
            "type": kind, "status": if status { "True" } else { "False" },
            "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let (memory_reason, memory_message) = if pressure.memory {
        (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        )
    } else {
        (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        )
    };
    let (disk_reason, disk_message) = if pressure.disk {
        ("KubeletHasDiskPressure", "kubelet has disk pressure")
    } else {
        ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
    };
    json!([
        condition(
            "MemoryPressure",
            pressure.memory,
            memory_reason,
            memory_message
        ),
        condition("DiskPressure", pressure.disk, disk_reason, disk_message),
        condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// The Node's status as this node sees itself now.
fn status(info: &NodeInfo, pressure: Pressure, since: &str) -> serde_json::Value {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let resources = |memory: u64| {
        json!({
            "cpu": cpus.to_string(),
            "memory": crate::eviction::binary_quantity(memory),
            "pods": info.max_pods.to_string(),
            "ephemeral-storage": "0",
        })
    };
    json!({
        "capacity": resources(info.memory_capacity),
        "allocatable": resources(info.memory_allocatable),
        "conditions": conditions(&now, pressure, since),
        "addresses": [
            {"type": "InternalIP", "address": info.address},
            {"type": "Hostname", "address": info.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": info.endpoint_port.unwrap_or(0)}},
        "nodeInfo": {
            "machineID": read_trimmed("/etc/machine-id"),
            "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
            "osImage": os_image(),
            "containerRuntimeVersion": "wasmtime://48.0.8",
            "kubeletVersion": concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            },
        },
    })
}

/// Creates the Node if it does not exist, then reports its status.
pub async fn register(
    client: &kube::Client,
    info: &NodeInfo,
    pressure: Pressure,
) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(&info.name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": info.name,
                "labels": {
                    "kubernetes.io/hostname": info.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": match std::env::consts::ARCH {
                        "x86_64" => "amd64",
                        "aarch64" => "arm64",
                        other => other,
                    },
                    "node.kubernetes.io/instance-type": "skiff",
                },
            },
        }))
        .expect("a valid Node");
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report(client, info, pressure, &now).await
}

async fn report(
    client: &kube::Client,
    info: &NodeInfo,
    pressure: Pressure,
    since: &str,
) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &info.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status(info, pressure, since)})),
        )
        .await?;
    Ok(())
}

/// Renews the Lease every [`LEASE_RENEW`] and reports the Node's status every minute, and at
/// once when its pressure changes, until the process ends.
pub async fn heartbeat(
    client: kube::Client,
    info: NodeInfo,
    mut pressure: watch::Receiver<Pressure>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut last_status = tokio::time::Instant::now();
    let mut reported = *pressure.borrow_and_update();
    let mut since = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut next_renewal = tokio::time::Instant::now();
    let mut watching = true;
    let mut unsent = false;
    loop {
        if tokio::time::Instant::now() >= next_renewal {
            if let Err(e) = renew(&leases, &info).await {
                tracing::warn!(node = %info.name, error = %e, "renewing the node lease failed");
            }
            next_renewal = tokio::time::Instant::now() + LEASE_RENEW;
        }
        let now = *pressure.borrow_and_update();
        let changed = now != reported;
        if changed {
            reported = now;
            since = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        }
        if changed || unsent || last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            // A report that did not go out is tried again at the next renewal.
            unsent = match report(&client, &info, reported, &since).await {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(node = %info.name, error = %e, "reporting node status failed");
                    true
                }
            };
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_renewal) => {}
            changed = pressure.changed(), if watching => {
                // No one reports pressure any more: the renewals go on alone.
                watching = changed.is_ok();
            }
        }
    }
}

async fn renew(leases: &Api<Lease>, info: &NodeInfo) -> kube::Result<()> {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    match leases.get_opt(&info.name).await? {
        Some(_) => {
            leases
                .patch(
                    &info.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {
                        "holderIdentity": info.name,
                        "leaseDurationSeconds": LEASE_SECONDS,
                        "renewTime": now,
                    }})),
                )
                .await?;
        }
        None => {
            // Owned by its Node, as the kubelet makes it, so that it goes with the Node.
            let nodes: Api<Node> = Api::all(leases.clone().into_client());
            let owners = match nodes.get_opt(&info.name).await? {
                Some(node) => json!([{
                    "apiVersion": "v1", "kind": "Node", "name": info.name,
                    "uid": node.metadata.uid.unwrap_or_default(),
                }]),
                None => json!([]),
            };
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": info.name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": owners,
                },
                "spec": {
                    "holderIdentity": info.name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": now,
                },
            }))
            .expect("a valid Lease");
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_shows_in_the_conditions_with_the_kubelets_reasons() {
        let under = Pressure {
            memory: true,
            disk: false,
        };
        let conditions = conditions("2026-01-01T00:00:00Z", under, "2025-12-31T00:00:00Z");
        let find = |kind: &str| {
            conditions
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .unwrap()
                .clone()
        };
        assert_eq!(find("MemoryPressure")["status"], "True");
        assert_eq!(
            find("MemoryPressure")["reason"],
            "KubeletHasInsufficientMemory"
        );
        assert_eq!(
            find("MemoryPressure")["lastTransitionTime"],
            "2025-12-31T00:00:00Z"
        );
        assert_eq!(find("DiskPressure")["status"], "False");
        assert_eq!(find("Ready")["status"], "True");
    }
}
