//! Gives every Node a pod address range, as kube-controller-manager's node IPAM controller
//! does: `spec.podCIDR` and `spec.podCIDRs` get the lowest free /24 of the cluster range
//! 10.42.0.0/16 (`10.42.N.0/24`, as k3s plans it). A range is free again once its Node is gone.
//! When none is free, the Node gets a `CIDRNotAvailable` event and is tried again later.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

/// The ranges handed out: `10.42.N.0/24` for N in 0..=255.
const PREFIX: [u8; 2] = [10, 42];

/// What reconciling a Node can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing nodes: {0}")]
    List(kube::Error),
    #[error("setting the pod CIDR of node {node}: {source}")]
    Patch { node: String, source: kube::Error },
}

struct Context {
    client: Client,
    /// Allocation is one at a time, so that two new Nodes never get the same range.
    allocating: Mutex<()>,
}

/// Runs the node IPAM controller.
pub async fn run(client: Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let context = Arc::new(Context {
        client,
        allocating: Mutex::new(()),
    });
    Controller::new(nodes, watcher::Config::default())
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The third octet of a range this controller hands out.
fn index_of(cidr: &str) -> Option<u8> {
    let (address, bits) = cidr.split_once('/')?;
    let octets: Vec<u8> = address
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    (bits == "24" && octets.len() == 4 && octets[..2] == PREFIX && octets[3] == 0)
        .then_some(octets[2])
}

/// The lowest range not in `used`.
fn first_free(used: &BTreeSet<u8>) -> Option<String> {
    (0..=u8::MAX)
        .find(|n| !used.contains(n))
        .map(|n| format!("{}.{}.{n}.0/24", PREFIX[0], PREFIX[1]))
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
    let _one_at_a_time = ctx.allocating.lock().await;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let all = nodes
        .list(&ListParams::default())
        .await
        .map_err(Error::List)?
        .items;
    // The node as it is now: a reconcile may run on an older copy, from before an earlier
    // reconcile gave it its range.
    let Some(current) = all.iter().find(|n| n.metadata.uid == node.metadata.uid) else {
        return Ok(Action::await_change());
    };
    if current
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
    {
        return Ok(Action::await_change());
    }
    let used: BTreeSet<u8> = all
        .iter()
        .filter_map(|n| n.spec.as_ref())
        .flat_map(|s| s.pod_cidrs.iter().flatten().chain(s.pod_cidr.iter()))
        .filter_map(|c| index_of(c))
        .collect();
    let name = node.name_any();
    let Some(cidr) = first_free(&used) else {
        record_unavailable(&ctx.client, &node).await;
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Patch {
            node: name.clone(),
            source,
        })?;
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
        assert_eq!(index_of("10.42.7.0/24"), Some(7));
        assert_eq!(index_of("10.43.7.0/24"), None);
        assert_eq!(index_of("10.42.7.0/16"), None);
        assert_eq!(index_of("10.42.7.1/24"), None);
        assert_eq!(index_of("fd00::/64"), None);
        let used: BTreeSet<u8> = [0, 1, 3].into();
        assert_eq!(first_free(&used).as_deref(), Some("10.42.2.0/24"));
        let all: BTreeSet<u8> = (0..=u8::MAX).collect();
        assert_eq!(first_free(&all), None);
    }
}
