//! `skiff cordon`, `uncordon` and `drain`: keep new pods off a node, let them back, and move
//! its pods away through the eviction API, which PodDisruptionBudgets may make wait.

use std::time::{Duration, Instant};

use anyhow::bail;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff cordon` and `skiff uncordon`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node.
    node: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Flags of `skiff drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The node.
    node: String,
    /// Leave DaemonSet pods, which would come back anyway.
    #[arg(long = "ignore-daemonsets")]
    ignore_daemonsets: bool,
    /// Also delete pods no controller will make again.
    #[arg(long)]
    force: bool,
    /// Also delete pods with emptyDir volumes, losing that data.
    #[arg(long = "delete-emptydir-data")]
    delete_emptydir_data: bool,
    /// Give up after this long (`90s`, `5m`); 0 waits forever.
    #[arg(long, default_value = "0s", value_parser = super::server::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

async fn set_unschedulable(nodes: &Api<Node>, name: &str, cordon: bool) -> anyhow::Result<()> {
    let node = nodes.get(name).await?;
    let now = node.spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let verb = if cordon { "cordoned" } else { "uncordoned" };
    if now == cordon {
        println!("node/{name} already {verb}");
        return Ok(());
    }
    let patch = json!({"spec": {"unschedulable": if cordon { json!(true) } else { json!(null) }}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    println!("node/{name} {verb}");
    Ok(())
}

/// Runs `skiff cordon`.
pub async fn cordon(args: Args) -> anyhow::Result<()> {
    let cluster = Cluster::connect(&args.cluster).await?;
    set_unschedulable(&Api::all(cluster.client), &args.node, true).await
}

/// Runs `skiff uncordon`.
pub async fn uncordon(args: Args) -> anyhow::Result<()> {
    let cluster = Cluster::connect(&args.cluster).await?;
    set_unschedulable(&Api::all(cluster.client), &args.node, false).await
}

/// Why drain may not remove a pod unasked, as kubectl words it; `None` when it may.
fn refusal(pod: &Pod, args: &DrainArgs) -> Option<&'static str> {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    if owner.is_some_and(|o| o.kind == "DaemonSet") {
        // Ignored DaemonSet pods stay where they are: nothing else about them matters.
        return (!args.ignore_daemonsets)
            .then_some("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)");
    }
    if owner.is_none() && !finished && !args.force {
        return Some("cannot delete Pods that declare no controller (use --force to override)");
    }
    let local = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some()));
    if local && !finished && !args.delete_emptydir_data {
        return Some(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
        );
    }
    None
}

/// Runs `skiff drain`.
pub async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let cluster = Cluster::connect(&args.cluster).await?;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    set_unschedulable(&nodes, &args.node, true).await?;
    let all: Api<Pod> = Api::all(cluster.client.clone());
    let on_node = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", args.node)))
        .await?
        .items;
    let mut refused = Vec::new();
    let mut ignored = Vec::new();
    let mut victims = Vec::new();
    for pod in on_node {
        let id = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let daemon = pod
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.kind == "DaemonSet");
        match refusal(&pod, &args) {
            Some(why) => refused.push((why, id)),
            None if daemon => ignored.push(id),
            None => victims.push(pod),
        }
    }
    if !refused.is_empty() {
        let mut reasons: Vec<String> = Vec::new();
        for (why, _) in &refused {
            let pods: Vec<&str> = refused
                .iter()
                .filter(|(w, _)| w == why)
                .map(|(_, p)| p.as_str())
                .collect();
            let line = format!("{why}: {}", pods.join(", "));
            if !reasons.contains(&line) {
                reasons.push(line);
            }
        }
        bail!(
            "unable to drain node {:?} due to error: [{}], continuing command...\nThere are pending nodes to be drained:\n {}",
            args.node,
            reasons.join(", "),
            args.node
        );
    }
    if !ignored.is_empty() {
        eprintln!(
            "Warning: ignoring DaemonSet-managed Pods: {}",
            ignored.join(", ")
        );
    }
    let started = Instant::now();
    let expired = || !args.timeout.is_zero() && started.elapsed() > args.timeout;
    for pod in &victims {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
        println!("evicting pod {namespace}/{name}");
        loop {
            match api.evict(&name, &EvictParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(kube::Error::Api(e)) if e.code == 429 => {
                    eprintln!(
                        "error when evicting pods/\"{name}\" -n \"{namespace}\" (will retry after 5s): {}",
                        e.message
                    );
                    if expired() {
                        bail!(
                            "unable to drain node {:?} due to error: error when evicting pods/\"{name}\" -n \"{namespace}\": global timeout reached: {}s, continuing command...\nThere are pending nodes to be drained:\n {}",
                            args.node,
                            args.timeout.as_secs(),
                            args.node
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Evicted pods are gone once their node has stopped them.
    for pod in &victims {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
        loop {
            match api.get_opt(&name).await? {
                Some(now) if now.uid() == pod.uid() => {
                    if expired() {
                        bail!("global timeout reached: {}s", args.timeout.as_secs());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => break,
            }
        }
        println!("pod/{name} evicted");
    }
    println!("node/{} drained", args.node);
    Ok(())
}
