//! The pod network. Every socket a guest opens goes through the node's `wasi:sockets` host
//! ([`sockets`]), so pods get what Kubernetes networking gives them with no CNI, no root and no
//! packet filter:
//!
//! - Each pod has an address of its node's pod range (`Node.spec.podCIDR`, such as
//!   10.42.3.0/24, cut from the cluster's /16 within 10.0.0.0/8), which is what
//!   `status.podIP` and the guests see. It maps one to one onto a host loopback address: pod
//!   10.42.3.7 is served on 127.42.3.7 (Linux routes all of 127/8 to `lo`), so every pod has a
//!   port space of its own and many pods bind :8080 side by side. Clusters on one host keep
//!   apart by their ranges (`skiff server --cluster-cidr`).
//! - A pod's localhost is its loopback address: shared by its containers, by nothing else.

pub mod dns;
pub mod http;
pub mod ingress;
pub mod local;
pub mod proxy;
pub mod services;
pub mod sockets;
pub mod tunnel;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// The cluster's Service addresses (ClusterIPs).
pub const SERVICE_CIDR: Cidr = Cidr {
    base: Ipv4Addr::new(10, 43, 0, 0),
    bits: 16,
};

/// The addresses pod ranges are cut from: pod 10.B.c.d is served on 127.B.c.d.
const POD_SPACE: Cidr = Cidr {
    base: Ipv4Addr::new(10, 0, 0, 0),
    bits: 8,
};

/// An IPv4 address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub bits: u8,
}

impl Cidr {
    /// Reads `A.B.C.D/N`; the address must be the range's first.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, bits) = text.split_once('/')?;
        let base: Ipv4Addr = address.parse().ok()?;
        let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
        let cidr = Cidr { base, bits };
        (u32::from(base) & !cidr.mask() == 0).then_some(cidr)
    }

    /// The /16 that holds this range: the cluster's pod range, for a node's.
    pub fn cluster(&self) -> Cidr {
        Cidr {
            base: Ipv4Addr::from(u32::from(self.base) & 0xFFFF_0000),
            bits: 16,
        }
    }

    fn mask(&self) -> u32 {
        if self.bits == 0 {
            0
        } else {
            u32::MAX << (32 - self.bits)
        }
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.base)
    }

    /// How many addresses the range holds.
    fn size(&self) -> u64 {
        1u64 << (32 - self.bits)
    }

    /// The range's `n`th address.
    fn nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(n as u32))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.bits)
    }
}

/// Follows the node's pod range (`spec.podCIDR`, which the server's node IPAM controller sets)
/// into `addresses`, until the process ends.
pub async fn follow_range(client: kube::Client, node: String, addresses: Addresses) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut seen = watcher(nodes, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = seen.next().await {
        let Ok(node) = event else { continue };
        let Some(text) = node.spec.and_then(|s| s.pod_cidr) else {
            continue;
        };
        let Some(range) = Cidr::parse(&text) else {
            tracing::warn!(range = %text, "the node's pod range is not an IPv4 range");
            continue;
        };
        if addresses.range() != Some(range) {
            match addresses.set_range(range) {
                Ok(()) => tracing::info!(range = %range, "the node's pod range"),
                Err(e) => tracing::warn!(error = %e, "the node's pod range is unusable"),
            }
        }
    }
}

/// A cache of every object `api` lists (narrowed by `config`), and the stream of its changes,
/// a `()` each, which keeps the cache filled while it is read.
pub(crate) fn cached<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
) -> (
    kube::runtime::reflector::Store<K>,
    futures::stream::BoxStream<'static, ()>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (store, writer) = reflector::store::<K>();
    let changes = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .map(|_| ())
        .boxed();
    (store, changes)
}

/// Waits for the next change of any of `changes`, taking what else has arrived with it, so
/// that a burst costs one rebuild; false once they have all ended.
pub(crate) async fn next_burst(
    changes: &mut futures::stream::SelectAll<futures::stream::BoxStream<'static, ()>>,
) -> bool {
    use futures::StreamExt;
    if changes.next().await.is_none() {
        return false;
    }
    while let Some(Some(())) = futures::FutureExt::now_or_never(changes.next()) {}
    true
}

/// The host loopback address of `ip` when it is a pod address of `cluster`.
pub fn loopback_in(ip: Ipv4Addr, cluster: Cidr) -> Option<Ipv4Addr> {
    cluster.contains(ip).then(|| loopback_of(ip)).flatten()
}

/// The host loopback address a pod address (of 10.0.0.0/8) is served on.
pub fn loopback_of(pod_ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let [_, b, c, d] = pod_ip.octets();
    POD_SPACE
        .contains(pod_ip)
        .then(|| Ipv4Addr::new(127, b, c, d))
}

/// The pod address of `cluster` a host loopback address serves, if it serves one.
pub fn pod_ip_of(loopback: Ipv4Addr, cluster: Cidr) -> Option<Ipv4Addr> {
    let [a, b, c, d] = loopback.octets();
    let pod_ip = Ipv4Addr::new(10, b, c, d);
    (a == 127 && cluster.contains(pod_ip)).then_some(pod_ip)
}

/// Where the node dials `host:port`: a pod address at its host loopback address, anything else
/// as it is.
pub fn host_target(host: &str, port: u16) -> String {
    match host.parse::<Ipv4Addr>().ok().and_then(loopback_of) {
        Some(loopback) => format!("{loopback}:{port}"),
        None => format!("{host}:{port}"),
    }
}

/// What every pod on the node shares of the pod network.
#[derive(Debug, Default)]
pub struct NodeNetwork {
    /// The host addresses pods' sockets and HTTP servers are bound at, each with whether on
    /// the pod's localhost: only their own pod may connect to those.
    served: Mutex<HashMap<SocketAddr, bool>>,
    /// The cluster's Services, as the node sees them.
    pub services: services::Services,
    /// The way to other nodes' pods.
    pub tunnel: tunnel::Tunnel,
    /// The node's HTTP containers, which its Service proxy and Ingress reach in process.
    pub local: local::LocalServers,
}

impl NodeNetwork {
    fn served(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, bool>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes where a pod's bind landed, and whether on its localhost.
    pub fn bound(&self, at: SocketAddr, localhost: bool) {
        self.served().insert(at, localhost);
    }

    /// Forgets the places of the pod at loopback address `pod`, once it has given up its
    /// address.
    pub fn forget(&self, pod: Ipv4Addr) {
        self.served()
            .retain(|at, _| at.ip() != std::net::IpAddr::V4(pod));
    }

    /// Whether a socket bound on its pod's localhost is at `at`.
    pub fn is_local_only(&self, at: SocketAddr) -> bool {
        self.served().get(&at).copied().unwrap_or(false)
    }

    /// Whether a pod serves at `at` for other pods (bound there, not on its localhost).
    pub fn serves(&self, at: SocketAddr) -> bool {
        self.served().get(&at) == Some(&false)
    }
}

/// A pod's place on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    /// What `status.podIP` says and the pod's guests see.
    pub ip: Ipv4Addr,
    /// Where the pod's sockets are on the host.
    pub loopback: Ipv4Addr,
}

impl PodAddress {
    /// The cluster's pod range, which the pod's address is in.
    pub fn cluster(&self) -> Cidr {
        Cidr {
            base: self.ip,
            bits: 32,
        }
        .cluster()
    }

    pub fn new(ip: Ipv4Addr) -> Option<PodAddress> {
        Some(PodAddress {
            ip,
            loopback: loopback_of(ip)?,
        })
    }
}

/// Why a pod got no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// As the host-local IPAM plugin words it.
    #[error("failed to allocate for range 0: no IP addresses available in range set: {0}")]
    Exhausted(Cidr),
    #[error("the node's pod range {0} is not a range of 10.1.0.0-10.255.255.255 of /16 or smaller")]
    OutsideCluster(Cidr),
}

/// The node's pod addresses: which of its range's are held, and by which pod (UID). The
/// range's first address names the range, its second is the node's own (the gateway of a CNI
/// bridge) and its last is the broadcast address: pods get the others, in turn, so that an
/// address just given up is not handed out again at once.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    inner: Arc<Mutex<Allocation>>,
    /// Wakes the pods waiting for the node's range.
    ranged: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Allocation {
    range: Option<Cidr>,
    held: HashMap<Ipv4Addr, String>,
    by_pod: HashMap<String, Ipv4Addr>,
    /// Addresses kept for the pods that had them before the node restarted, until they take
    /// them again.
    reserved: HashMap<Ipv4Addr, String>,
    /// The offset in the range tried first next time.
    next: u64,
}

impl Addresses {
    /// Sets the node's range, once the server has given it one.
    pub fn set_range(&self, range: Cidr) -> Result<(), AddressError> {
        // 10.0.c.d would be served on 127.0.c.d: the host's own localhost.
        if !(POD_SPACE.contains(range.base) && range.bits >= 16 && range.base.octets()[1] != 0) {
            return Err(AddressError::OutsideCluster(range));
        }
        let mut inner = self.lock();
        if inner.range != Some(range) {
            inner.range = Some(range);
            inner.next = 2;
        }
        drop(inner);
        self.ranged.notify_waiters();
        Ok(())
    }

    /// Waits until the node has a range.
    pub async fn wait_for_range(&self) {
        loop {
            let notified = self.ranged.notified();
            if self.range().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Keeps `ip` for pod `uid`, which had it before the node restarted: no other pod gets it
    /// until `uid` takes it or gives it up.
    pub fn reserve(&self, uid: &str, ip: Ipv4Addr) {
        let mut inner = self.lock();
        if !inner.held.contains_key(&ip) {
            inner.reserved.insert(ip, uid.to_string());
        }
    }

    pub fn range(&self) -> Option<Cidr> {
        self.lock().range
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allocation> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address of pod `uid`: the one it holds, else `preferred` (what it had before the
    /// node restarted) when that is free, else the next free one. None while the node has no
    /// range yet.
    pub fn hold(
        &self,
        uid: &str,
        preferred: Option<Ipv4Addr>,
    ) -> Option<Result<PodAddress, AddressError>> {
        let mut inner = self.lock();
        let range = inner.range?;
        if let Some(ip) = inner.by_pod.get(uid) {
            return PodAddress::new(*ip).map(Ok);
        }
        let usable = |ip: Ipv4Addr| {
            let offset = u64::from(u32::from(ip).wrapping_sub(u32::from(range.base)));
            range.contains(ip) && offset >= 2 && offset + 1 < range.size()
        };
        let free = |ip: &Ipv4Addr| {
            !inner.held.contains_key(ip) && inner.reserved.get(ip).is_none_or(|owner| owner == uid)
        };
        let chosen = match preferred.filter(|ip| usable(*ip) && free(ip)) {
            Some(ip) => Some(ip),
            None => {
                let size = range.size();
                let start = inner.next;
                (0..size)
                    .map(|i| range.nth((start + i) % size))
                    .find(|ip| usable(*ip) && free(ip))
            }
        };
        let Some(ip) = chosen else {
            return Some(Err(AddressError::Exhausted(range)));
        };
        inner.next = u64::from(u32::from(ip) - u32::from(range.base)) + 1;
        inner.reserved.retain(|_, owner| owner != uid);
        inner.held.insert(ip, uid.to_string());
        inner.by_pod.insert(uid.to_string(), ip);
        PodAddress::new(ip).map(Ok)
    }

    /// Whether a pod holds `ip`.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.lock().held.contains_key(&ip)
    }

    /// The address pod `uid` holds, if any.
    pub fn of(&self, uid: &str) -> Option<PodAddress> {
        self.lock()
            .by_pod
            .get(uid)
            .and_then(|ip| PodAddress::new(*ip))
    }

    /// Gives up pod `uid`'s address.
    pub fn release(&self, uid: &str) {
        let mut inner = self.lock();
        if let Some(ip) = inner.by_pod.remove(uid) {
            inner.held.remove(&ip);
        }
        inner.reserved.retain(|_, owner| owner != uid);
    }

    /// The node's own address in its range (the second), which connections the node makes
    /// into the pod network come from.
    pub fn gateway(&self) -> Option<PodAddress> {
        self.range().and_then(|r| PodAddress::new(r.nth(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pod_addresses_map_onto_loopback_addresses_and_back() {
        let cluster = Cidr::parse("10.42.0.0/16").unwrap();
        assert_eq!(loopback_of(ip("10.42.3.7")), Some(ip("127.42.3.7")));
        assert_eq!(pod_ip_of(ip("127.42.3.7"), cluster), Some(ip("10.42.3.7")));
        assert_eq!(loopback_of(ip("192.168.0.1")), None);
        assert_eq!(pod_ip_of(ip("127.0.0.1"), cluster), None);
        assert_eq!(pod_ip_of(ip("127.44.0.1"), cluster), None);
        assert_eq!(
            loopback_in(ip("10.42.3.7"), cluster),
            Some(ip("127.42.3.7"))
        );
        assert_eq!(loopback_in(ip("10.9.0.1"), cluster), None);
    }

    #[test]
    fn ranges_parse_only_when_the_address_starts_the_range() {
        assert_eq!(
            Cidr::parse("10.42.3.0/24"),
            Some(Cidr {
                base: ip("10.42.3.0"),
                bits: 24
            })
        );
        assert_eq!(Cidr::parse("10.42.3.1/24"), None);
        assert_eq!(Cidr::parse("10.42.3.0/33"), None);
        assert_eq!(Cidr::parse("10.42.3.0"), None);
        assert!(
            Cidr::parse("10.42.0.0/16")
                .unwrap()
                .contains(ip("10.42.255.1"))
        );
    }

    #[test]
    fn pods_get_the_addresses_of_the_range_in_turn_and_keep_theirs() {
        let addresses = Addresses::default();
        assert!(addresses.hold("a", None).is_none(), "no range yet");
        addresses
            .set_range(Cidr::parse("10.42.3.0/24").unwrap())
            .unwrap();
        let a = addresses.hold("a", None).unwrap().unwrap();
        assert_eq!(a.ip, ip("10.42.3.2"));
        assert_eq!(a.loopback, ip("127.42.3.2"));
        assert_eq!(addresses.hold("a", None).unwrap().unwrap(), a);
        assert_eq!(
            addresses.hold("b", None).unwrap().unwrap().ip,
            ip("10.42.3.3")
        );
        addresses.release("a");
        // The next pod gets a fresh address, not the one just given up.
        assert_eq!(
            addresses.hold("c", None).unwrap().unwrap().ip,
            ip("10.42.3.4")
        );
        // A pod that had an address before the node restarted gets it again when it is free.
        let d = addresses.hold("d", Some(ip("10.42.3.9"))).unwrap().unwrap();
        assert_eq!(d.ip, ip("10.42.3.9"));
        let e = addresses.hold("e", Some(ip("10.42.3.9"))).unwrap().unwrap();
        assert_eq!(e.ip, ip("10.42.3.10"));
        // An address kept for a pod re-adopted after a restart goes to no other pod.
        addresses.reserve("f", ip("10.42.3.11"));
        assert_eq!(
            addresses.hold("g", None).unwrap().unwrap().ip,
            ip("10.42.3.12")
        );
        assert_eq!(
            addresses
                .hold("f", Some(ip("10.42.3.11")))
                .unwrap()
                .unwrap()
                .ip,
            ip("10.42.3.11")
        );
        assert_eq!(addresses.gateway().unwrap().ip, ip("10.42.3.1"));
    }

    #[test]
    fn a_full_range_says_so_as_the_ipam_plugin_does() {
        let addresses = Addresses::default();
        addresses
            .set_range(Cidr::parse("10.42.7.0/30").unwrap())
            .unwrap();
        // A /30 leaves one address once the range, node and broadcast addresses are out.
        assert_eq!(
            addresses.hold("a", None).unwrap().unwrap().ip,
            ip("10.42.7.2")
        );
        let error = addresses.hold("b", None).unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to allocate for range 0: no IP addresses available in range set: 10.42.7.0/30"
        );
        addresses.release("a");
        assert_eq!(
            addresses.hold("b", None).unwrap().unwrap().ip,
            ip("10.42.7.2")
        );
    }

    #[test]
    fn a_range_outside_the_cluster_is_refused() {
        let addresses = Addresses::default();
        let error = addresses
            .set_range(Cidr::parse("192.168.0.0/24").unwrap())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the node's pod range 192.168.0.0/24 is not a range of 10.1.0.0-10.255.255.255 of /16 or smaller"
        );
    }
}
