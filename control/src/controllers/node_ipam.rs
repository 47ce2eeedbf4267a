//! Gives every Node a pod address range, as kube-controller-manager's node IPAM controller
//! does: `spec.podCIDR` and `spec.podCIDRs` get the lowest free range of the cluster range
//! (`--cluster-cidr`, 10.42.0.0/16 by default), a /24 unless `--node-cidr-mask-size` says
//! otherwise (`10.42.N.0/24`, as k3s plans it). A range is free again once its Node is gone. When none is free, the Node gets a
//! `CIDRNotAvailable` event and is tried again later.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

/// The cluster range k3s plans: 10.42.0.0/16.
pub const DEFAULT_CLUSTER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 42, 0, 0);

/// The node range sizes a cluster range of /16 allows: /16 (one node) to /30 (one pod each).
pub const MASK_SIZES: std::ops::RangeInclusive<u8> = 16..=30;

/// How many node ranges of `mask` bits a cluster range (a /16) holds.
fn ranges(mask: u8) -> u32 {
    1 << (mask - 16)
}

/// Reads a cluster range: a /16 of 10.0.0.0/8 (pods of 10.B.c.d are served on the host's
/// 127.B.c.d), other than the Service range 10.43.0.0/16.
pub fn parse_cluster_cidr(text: &str) -> Result<std::net::Ipv4Addr, String> {
    let refuse = || {
        format!(
            "{text}: the cluster range must be a /16 of 10.0.0.0/8 other than 10.0.0.0/16 \
             and the Service range 10.43.0.0/16, such as 10.42.0.0/16"
        )
    };
    let (address, bits) = text.split_once('/').ok_or_else(refuse)?;
    let base: std::net::Ipv4Addr = address.parse().map_err(|_| refuse())?;
    let [a, b, c, d] = base.octets();
    // 10.0.c.d would be served on 127.0.c.d, the host's own localhost.
    (bits == "16" && a == 10 && b != 0 && b != 43 && c == 0 && d == 0)
        .then_some(base)
        .ok_or_else(refuse)
}

/// What reconciling a Node can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting the pod CIDR of node {node}: {source}")]
    Patch { node: String, source: kube::Error },
}

struct Context {
    client: Client,
    /// The controller's cache of every Node, which the ranges in use are read from.
    nodes: Store<Node>,
    /// Ranges handed out that the cache may not show yet, by Node uid. Allocation is one at a
    /// time, so that two new Nodes never get the same range.
    handed_out: Mutex<BTreeMap<String, u32>>,
    /// The size of a node's range, in prefix bits.
    mask: u8,
    /// The cluster range's first address.
    cluster: std::net::Ipv4Addr,
}

/// Runs the node IPAM controller, handing out ranges of `mask` bits (see [`MASK_SIZES`]) of
/// the /16 at `cluster`.
pub async fn run(client: Client, cluster: std::net::Ipv4Addr, mask: u8) {
    let mask = mask.clamp(*MASK_SIZES.start(), *MASK_SIZES.end());
    let nodes: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(nodes, watcher::Config::default());
    let context = Arc::new(Context {
        client,
        nodes: controller.store(),
        handed_out: Mutex::new(BTreeMap::new()),
        mask,
        cluster,
    });
    controller
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The ranges of `mask` bits of `cluster` a Node's spec holds, by index.
fn ranges_of(node: &Node, cluster: std::net::Ipv4Addr, mask: u8) -> impl Iterator<Item = u32> + '_ {
    node.spec
        .iter()
        .flat_map(|s| s.pod_cidrs.iter().flatten().chain(s.pod_cidr.iter()))
        .filter_map(move |c| index_of(c, cluster, mask))
}

/// The index of a range of `mask` bits within the cluster range: 10.42.7.0/24 is range 7.
fn index_of(cidr: &str, cluster: std::net::Ipv4Addr, mask: u8) -> Option<u32> {
    let (address, bits) = cidr.split_once('/')?;
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    let offset = u32::from(address).checked_sub(u32::from(cluster))?;
    let size = 1u32 << (32 - mask);
    (bits.parse::<u8>().ok()? == mask && offset % size == 0 && offset / size < ranges(mask))
        .then_some(offset / size)
}

/// The lowest range of `mask` bits of `cluster` not in `used`.
fn first_free(used: &BTreeSet<u32>, cluster: std::net::Ipv4Addr, mask: u8) -> Option<String> {
    (0..ranges(mask)).find(|n| !used.contains(n)).map(|n| {
        let base = std::net::Ipv4Addr::from(u32::from(cluster) + (n << (32 - mask)));
        format!("{base}/{mask}")
    })
}

#[tracing::instrument(name = "node_ipam", skip_all, fields(node = %node.name_any()))]
async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    if has_cidr || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Until the first listing is in, the cache does not show every range in use.
    if ctx.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let uid = node.metadata.uid.clone().unwrap_or_default();
    let mut handed_out = ctx.handed_out.lock().await;
    let cached = ctx.nodes.state();
    // What the cache shows now supersedes what was handed out: a range is in use while a
    // Node holds it, and one handed to a Node that is gone is free again.
    handed_out.retain(|holder, _| {
        cached
            .iter()
            .find(|n| n.metadata.uid.as_deref() == Some(holder.as_str()))
            .is_some_and(|n| ranges_of(n, ctx.cluster, ctx.mask).next().is_none())
    });
    let current = cached
        .iter()
        .find(|n| n.metadata.uid.as_deref() == Some(uid.as_str()));
    if handed_out.contains_key(&uid)
        || current.is_some_and(|n| ranges_of(n, ctx.cluster, ctx.mask).next().is_some())
    {
        // Given a range already (a reconcile may run on a copy from before that), or given
        // one the watch has not brought yet.
        return Ok(Action::await_change());
    }
    let mut used: BTreeSet<u32> = cached
        .iter()
        .flat_map(|n| ranges_of(n, ctx.cluster, ctx.mask))
        .collect();
    used.extend(handed_out.values());
    let name = node.name_any();
    let Some(cidr) = first_free(&used, ctx.cluster, ctx.mask) else {
        record_unavailable(&ctx.client, &node).await;
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Patch {
            node: name.clone(),
            source,
        })?;
    if let Some(index) = index_of(&cidr, ctx.cluster, ctx.mask) {
        handed_out.insert(uid, index);
    }
    tracing::info!(%cidr, "pod CIDR assigned");
    Ok(Action::await_change())
}

/// The upstream event for a Node no range is left for.
async fn record_unavailable(client: &Client, node: &Node) {
    let name = node.name_any();
    let now = chrono::Utc::now();
    let event = json!({
        "metadata": {"name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or(0)), "namespace": "default"},
        "involvedObject": {"kind": "Node", "apiVersion": "v1", "name": name, "uid": node.metadata.uid},
        "reason": "CIDRNotAvailable",
        "message": format!("Node {name} status is now: CIDRNotAvailable"),
        "type": "Normal",
        "source": {"component": "cidrAllocator"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    if let Ok(event) = serde_json::from_value::<Event>(event) {
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        let _ = events.create(&PostParams::default(), &event).await;
    }
}

fn error_policy(_node: Arc<Node>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "assigning a pod CIDR failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_and_handed_out_lowest_first() {
        assert_eq!(index_of("10.42.7.0/24", DEFAULT_CLUSTER, 24), Some(7));
        assert_eq!(index_of("10.43.7.0/24", DEFAULT_CLUSTER, 24), None);
        assert_eq!(index_of("10.42.7.0/16", DEFAULT_CLUSTER, 24), None);
        assert_eq!(index_of("10.42.7.1/24", DEFAULT_CLUSTER, 24), None);
        assert_eq!(index_of("fd00::/64", DEFAULT_CLUSTER, 24), None);
        let used: BTreeSet<u32> = [0, 1, 3].into();
        assert_eq!(
            first_free(&used, DEFAULT_CLUSTER, 24).as_deref(),
            Some("10.42.2.0/24")
        );
        let all: BTreeSet<u32> = (0..256).collect();
        assert_eq!(first_free(&all, DEFAULT_CLUSTER, 24), None);
    }

    #[test]
    fn other_range_sizes_are_cut_from_the_cluster_range_alike() {
        // A /18 holds 16,382 pods: four nodes' worth of the cluster range.
        assert_eq!(index_of("10.42.64.0/18", DEFAULT_CLUSTER, 18), Some(1));
        assert_eq!(index_of("10.42.32.0/18", DEFAULT_CLUSTER, 18), None);
        let used: BTreeSet<u32> = [0, 1].into();
        assert_eq!(
            first_free(&used, DEFAULT_CLUSTER, 18).as_deref(),
            Some("10.42.128.0/18")
        );
        assert_eq!(first_free(&(0..4).collect(), DEFAULT_CLUSTER, 18), None);
        assert_eq!(
            first_free(&BTreeSet::new(), DEFAULT_CLUSTER, 26).as_deref(),
            Some("10.42.0.0/26")
        );
        assert_eq!(index_of("10.42.0.192/26", DEFAULT_CLUSTER, 26), Some(3));
        // Another cluster range holds its own.
        let other = parse_cluster_cidr("10.77.0.0/16").unwrap();
        assert_eq!(
            first_free(&BTreeSet::new(), other, 24).as_deref(),
            Some("10.77.0.0/24")
        );
        assert_eq!(index_of("10.42.0.0/24", other, 24), None);
        for refused in [
            "10.43.0.0/16",
            "10.0.0.0/16",
            "10.42.0.0/17",
            "192.168.0.0/16",
            "10.42.1.0/16",
            "x",
        ] {
            assert!(parse_cluster_cidr(refused).is_err(), "{refused}");
        }
    }
}
