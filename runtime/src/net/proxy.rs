//! The node's Service proxy for traffic from outside the pod network: it listens on the node's
//! address at every NodePort of the cluster's Services (TCP), and at the port of every
//! LoadBalancer Service as k3s's ServiceLB does (listing the node's address in the Service's
//! `status.loadBalancer.ingress`, or, when the port is in use, leaving it out with a Warning
//! `PortInUse` event), and passes each connection to one of the port's endpoints, as kube-proxy
//! does. A connection comes into the pod network
//! from the node's own address in its range (10.42.N.1), as kube-proxy's masquerading makes
//! it. An endpoint that refuses (a pod going away before its slice says so) is passed over for
//! the next. An endpoint that is an HTTP container of this node serves the connection itself
//! (see [`super::local`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::local::LocalServers;
use super::services::{Protocol, ServicePort, ServiceTable, Services};
use super::tunnel::Tunnel;
use super::{Addresses, Cidr, loopback_of};
use crate::events::EventRecorder;

/// Connects to a pod network endpoint from the host: a pod address of `cluster` at its
/// loopback address, from `from` (a loopback address) when given.
pub async fn dial(
    endpoint: SocketAddrV4,
    cluster: Option<Cidr>,
    from: Option<Ipv4Addr>,
    tunnel: &Tunnel,
) -> std::io::Result<TcpStream> {
    let pod = cluster.is_some_and(|c| c.contains(*endpoint.ip()));
    let target = match loopback_of(*endpoint.ip()).filter(|_| pod) {
        Some(loopback) => SocketAddrV4::new(loopback, endpoint.port()),
        None => endpoint,
    };
    tunnel.connect(SocketAddr::V4(target), from).await
}

/// Connects to `first` of `service`'s endpoints, else to the next that takes the connection;
/// with the endpoint that took it.
pub async fn dial_picked(
    service: &ServicePort,
    first: SocketAddrV4,
    addresses: &Addresses,
    tunnel: &Tunnel,
) -> Option<(SocketAddrV4, TcpStream)> {
    let from = addresses.gateway().map(|g| g.loopback);
    let cluster = addresses.range().map(|r| r.cluster());
    for endpoint in std::iter::once(first).chain(service.others(first)) {
        match dial(endpoint, cluster, from, tunnel).await {
            Ok(stream) => return Some((endpoint, stream)),
            Err(e) => {
                tracing::debug!(service = %service.name, %endpoint, error = %e, "endpoint refused; trying the next")
            }
        }
    }
    None
}

/// Connects to `port` of pod `uid` as from within the pod, so that a port it serves on
/// localhost only is reached too: what `kubectl port-forward` reaches.
pub async fn to_pod(addresses: &Addresses, uid: &str, port: u16) -> std::io::Result<TcpStream> {
    let address = addresses.of(uid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the pod has no address on this node",
        )
    })?;
    let target = SocketAddr::new(IpAddr::V4(address.loopback), port);
    connect(target, Some(address.loopback)).await
}

/// Connects to a host address, from `from` (a loopback address) when the target is on the
/// host's loopback too.
pub async fn connect(target: SocketAddr, from: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(from) = from.filter(|_| target.ip().is_loopback()) {
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    }
    let stream = socket.connect(target).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Where a port the node listens on leads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    NodePort(u16),
    /// A LoadBalancer Service's port: `namespace`, `name`, port.
    LoadBalancer(String, String, u16),
}

impl Route {
    fn service(&self, table: &ServiceTable) -> Option<Arc<ServicePort>> {
        match self {
            Route::NodePort(port) => table.at_node_port(*port, Protocol::Tcp),
            Route::LoadBalancer(namespace, name, port) => table
                .load_balancers()
                .iter()
                .find(|lb| {
                    lb.namespace == *namespace
                        && lb.name == *name
                        && lb.port == *port
                        && lb.protocol == Protocol::Tcp
                })
                .map(|lb| lb.service.clone()),
        }
    }
}

/// How often ports that could not be opened are tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// What the node's Service proxy needs.
pub struct Proxy {
    pub services: Services,
    /// The node's address, which node ports and load balancers are served on.
    pub address: Ipv4Addr,
    pub addresses: Addresses,
    pub tunnel: Tunnel,
    pub local: LocalServers,
    pub client: kube::Client,
    pub events: EventRecorder,
    pub node: String,
}

/// Serves the node ports and LoadBalancer ports on the node's address until the process ends.
pub async fn run(proxy: Proxy) {
    let mut changed = proxy.services.subscribe();
    let mut listening: HashMap<u16, (Route, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut warned: HashSet<(String, u16)> = HashSet::new();
    loop {
        let table = proxy.services.table();
        // Node ports first, then each load balancer's port, the oldest Service's first.
        let mut wanted: Vec<(u16, Route)> = table
            .node_ports()
            .filter(|(_, protocol)| *protocol == Protocol::Tcp)
            .map(|(port, _)| (port, Route::NodePort(port)))
            .collect();
        let mut blocked: HashSet<String> = HashSet::new();
        for lb in table
            .load_balancers()
            .iter()
            .filter(|lb| lb.protocol == Protocol::Tcp)
        {
            let route = Route::LoadBalancer(lb.namespace.clone(), lb.name.clone(), lb.port);
            if wanted.iter().any(|(port, _)| *port == lb.port) {
                blocked.insert(lb.uid.clone());
                continue;
            }
            wanted.push((lb.port, route));
        }
        listening.retain(|port, (route, task)| {
            let keep = wanted.contains(&(*port, route.clone())) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, route) in wanted {
            if listening.contains_key(&port) {
                continue;
            }
            let at = SocketAddr::new(IpAddr::V4(proxy.address), port);
            match TcpListener::bind(at).await {
                Ok(listener) => {
                    let task = tokio::spawn(serve(
                        listener,
                        route.clone(),
                        proxy.services.clone(),
                        proxy.addresses.clone(),
                        proxy.tunnel.clone(),
                        proxy.local.clone(),
                    ));
                    listening.insert(port, (route, task));
                }
                Err(e) => {
                    tracing::warn!(port, error = %e, "can't open the port; it is in use");
                    if let Route::LoadBalancer(namespace, name, _) = &route
                        && let Some(lb) = table
                            .load_balancers()
                            .iter()
                            .find(|lb| lb.namespace == *namespace && lb.name == *name)
                    {
                        blocked.insert(lb.uid.clone());
                    }
                }
            }
        }
        for lb in table.load_balancers() {
            if blocked.contains(&lb.uid) && warned.insert((lb.uid.clone(), lb.port)) {
                let message = format!(
                    "node {} cannot serve port {} on {}: the port is in use",
                    proxy.node, lb.port, proxy.address
                );
                let involved = json!({"kind": "Service", "apiVersion": "v1",
                    "namespace": lb.namespace, "name": lb.name, "uid": lb.uid});
                let event = crate::events::kubelet_event(
                    &proxy.node,
                    involved,
                    "Warning",
                    "PortInUse",
                    &message,
                    None,
                );
                if let Some(mut event) = event {
                    if let Some(source) = event.source.as_mut() {
                        source.component = Some("service-lb".into());
                    }
                    proxy.events.record(event);
                }
            }
        }
        // A conflict that clears is warned about again should it come back.
        warned.retain(|(uid, _)| blocked.contains(uid));
        publish_ingress(&proxy, &table, &blocked).await;
        tokio::select! {
            changed = changed.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Lists the node's address in `status.loadBalancer.ingress` of every LoadBalancer Service it
/// serves, and takes it out of those it cannot (a port in use).
async fn publish_ingress(proxy: &Proxy, table: &ServiceTable, blocked: &HashSet<String>) {
    let address = proxy.address.to_string();
    let mut seen = HashSet::new();
    for lb in table.load_balancers() {
        if !seen.insert(lb.uid.clone()) {
            continue;
        }
        let serving = !blocked.contains(&lb.uid);
        if serving == lb.ingress.contains(&address) {
            continue;
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(proxy.client.clone(), &lb.namespace);
        publish_address(&api, &lb.name, &address, serving).await;
    }
    // A Service that stopped being a LoadBalancer no longer lists the node.
    for (namespace, name, listed) in table.former_load_balancers() {
        if listed.contains(&address) {
            let api: kube::Api<k8s_openapi::api::core::v1::Service> =
                kube::Api::namespaced(proxy.client.clone(), namespace);
            publish_address(&api, name, &address, false).await;
        }
    }
}

/// Lists `address` in (or takes it out of, unless `serving`) `status.loadBalancer.ingress`
/// of object `name` (a Service or an Ingress). The write carries the resourceVersion read, so
/// that it is a compare-and-swap with the other nodes' writes; one that loses is made again
/// on the next change.
pub async fn publish_address<K>(api: &kube::Api<K>, name: &str, address: &str, serving: bool)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let Ok(current) = api.get_status(name).await else {
        return;
    };
    let Ok(current) = serde_json::to_value(&current) else {
        return;
    };
    let mut ingress: Vec<serde_json::Value> = current["status"]["loadBalancer"]["ingress"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["ip"].as_str() != Some(address))
        .collect();
    if serving {
        ingress.push(json!({"ip": address, "ipMode": "VIP"}));
    }
    let patch = json!({
        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
        "status": {"loadBalancer": {"ingress": ingress}},
    });
    let params = kube::api::PatchParams::default();
    if let Err(e) = api
        .patch_status(name, &params, &kube::api::Patch::Merge(patch))
        .await
    {
        tracing::debug!(%name, error = %e, "writing the load balancer status failed; trying again");
    }
}

/// Takes connections on one port.
async fn serve(
    listener: TcpListener,
    route: Route,
    services: Services,
    addresses: Addresses,
    tunnel: Tunnel,
    local: LocalServers,
) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        let (services, addresses, route) = (services.clone(), addresses.clone(), route.clone());
        let (tunnel, local) = (tunnel.clone(), local.clone());
        tokio::spawn(async move {
            let Some(service) = route.service(&services.table()) else {
                return;
            };
            // No endpoint takes it: the connection is closed, as kube-proxy rejects it.
            let Some(first) = service.pick_for(peer) else {
                return;
            };
            let mut client = client;
            if let Some(server) = local.at(first) {
                match server.connection(client) {
                    Ok(()) => return,
                    Err(back) => client = back,
                }
            }
            let Some((_, mut upstream)) = dial_picked(&service, first, &addresses, &tunnel).await
            else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
