//! The node's own objects: its Node (capacity, addresses, nodeInfo, conditions) and its Lease in
//! kube-node-lease, renewed as the kubelet renews it.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

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
}

fn host_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
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

fn conditions(now: &str) -> serde_json::Value {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// The Node's status as this node sees itself now.
fn status(info: &NodeInfo) -> serde_json::Value {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let resources = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", host_memory_kib()),
        "pods": info.max_pods.to_string(),
        "ephemeral-storage": "0",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions(&now),
        "addresses": [
            {"type": "InternalIP", "address": info.address},
            {"type": "Hostname", "address": info.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
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
pub async fn register(client: &kube::Client, info: &NodeInfo) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(&info.name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": info.name,
                "labels": {
                    "kubernetes.io/hostname": info.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": status(info)["nodeInfo"]["architecture"],
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
    report(client, info).await
}

async fn report(client: &kube::Client, info: &NodeInfo) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &info.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status(info)})),
        )
        .await?;
    Ok(())
}

/// Renews the Lease every [`LEASE_RENEW`] and reports the Node's status every minute, until the
/// process ends.
pub async fn heartbeat(client: kube::Client, info: NodeInfo) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut last_status = tokio::time::Instant::now();
    loop {
        if let Err(e) = renew(&leases, &info).await {
            tracing::warn!(node = %info.name, error = %e, "renewing the node lease failed");
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            if let Err(e) = report(&client, &info).await {
                tracing::warn!(node = %info.name, error = %e, "reporting node status failed");
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
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
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": info.name,
                    "namespace": "kube-node-lease",
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
