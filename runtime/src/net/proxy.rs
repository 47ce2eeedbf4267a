//! The node's Service proxy for traffic from outside the pod network: it listens on the node's
//! address at every NodePort of the cluster's Services (TCP) and passes each connection to
//! one of the port's endpoints, as kube-proxy does. A connection comes into the pod network
//! from the node's own address in its range (10.42.N.1), as kube-proxy's masquerading makes
//! it. An endpoint that refuses (a pod going away before its slice says so) is passed over for
//! the next.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::services::{Protocol, Services};
use super::{Addresses, Cidr, loopback_of};

/// Connects to a pod network endpoint from the host: a pod address of `cluster` at its
/// loopback address, from `from` (a loopback address) when given.
pub async fn dial(
    endpoint: SocketAddrV4,
    cluster: Option<Cidr>,
    from: Option<Ipv4Addr>,
) -> std::io::Result<TcpStream> {
    let pod = cluster.is_some_and(|c| c.contains(*endpoint.ip()));
    let target = match loopback_of(*endpoint.ip()).filter(|_| pod) {
        Some(loopback) => SocketAddrV4::new(loopback, endpoint.port()),
        None => endpoint,
    };
    connect(SocketAddr::V4(target), from).await
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

/// Serves the node ports on `address` (the node's) until the process ends.
pub async fn run(services: Services, address: Ipv4Addr, addresses: Addresses) {
    let mut changed = services.subscribe();
    let mut listening: HashMap<u16, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let table = services.table();
        let wanted: Vec<u16> = table
            .node_ports()
            .filter(|(_, protocol)| *protocol == Protocol::Tcp)
            .map(|(port, _)| port)
            .collect();
        listening.retain(|port, task| {
            let keep = wanted.contains(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted {
            if listening.contains_key(&port) {
                continue;
            }
            let at = SocketAddr::new(IpAddr::V4(address), port);
            match TcpListener::bind(at).await {
                Ok(listener) => {
                    let task =
                        tokio::spawn(serve(listener, port, services.clone(), addresses.clone()));
                    listening.insert(port, task);
                }
                Err(e) => {
                    tracing::warn!(port, error = %e, "can't open node port; it is in use")
                }
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Takes connections on one node port.
async fn serve(listener: TcpListener, port: u16, services: Services, addresses: Addresses) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        let (services, addresses) = (services.clone(), addresses.clone());
        tokio::spawn(async move {
            let Some(service) = services.table().at_node_port(port, Protocol::Tcp) else {
                return;
            };
            let caller = match peer.ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let Some(first) = service.pick(caller) else {
                // No endpoints: the connection is closed, as kube-proxy rejects it.
                return;
            };
            let from = addresses.gateway().map(|g| g.loopback);
            let cluster = addresses.range().map(|r| r.cluster());
            let mut upstream = None;
            for endpoint in std::iter::once(first).chain(service.others(first)) {
                match dial(endpoint, cluster, from).await {
                    Ok(stream) => {
                        upstream = Some(stream);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(service = %service.name, %endpoint, error = %e, "endpoint refused; trying the next")
                    }
                }
            }
            let (Some(mut upstream), mut client) = (upstream, client) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
