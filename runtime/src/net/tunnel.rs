//! The tunnel between nodes. A connection to a pod of another node's range (its
//! `spec.podCIDR`) goes to that node's endpoint over TLS: the caller presents its node client
//! certificate (`system:node:NAME`, from the cluster CA), checks that the peer's serving
//! certificate was issued to the node the Node object names, and asks for
//! `POST /tunnel?to=POD_IP:PORT&from=POD_IP` upgraded to the connection's bytes. The peer
//! takes only nodes' certificates there, and only a source in the calling node's own range, so
//! that no one else can use the tunnel and no node can speak for another's pods; it connects
//! to the pod from the caller's address, so the pod sees who calls.
//!
//! Guests' sockets are the host's, so a guest's connect cannot be handed to TLS: it goes to the
//! node's relay instead (a listener on the node's own address in its range), which was told
//! beforehand, by the connecting socket's source address, where the connection is for.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::{Addresses, Cidr, loopback_of, pod_ip_of};

/// How long reaching a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a relay's note of a connection to come is kept.
const EXPECTED_FOR: Duration = Duration::from_secs(30);
/// The protocol the endpoint's upgraded connections speak: the bytes of a TCP connection.
pub const UPGRADE: &str = "skiff-tcp";

/// Another node: its pod range and where its endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub range: Cidr,
    pub endpoint: SocketAddr,
}

/// What a node presents to its peers, and checks them by.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The node's client certificate and key (PEM).
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA the peers' serving certificates chain to.
    pub peers_ca_pem: String,
}

/// The node's side of the tunnel: the other nodes, and the relay once it runs.
#[derive(Clone, Default)]
pub struct Tunnel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("relay", &self.inner.relay.get())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Where the relay listens, once it does.
    relay: OnceLock<SocketAddr>,
    /// The other nodes.
    peers: RwLock<Vec<Peer>>,
    /// Connections to the relay to come, by source: where each is for, and since when.
    expected: Mutex<HashMap<SocketAddr, (SocketAddrV4, Instant)>>,
}

fn peer_of(node: &Node, own: &str) -> Option<Peer> {
    let name = node.metadata.name.clone()?;
    if name == own {
        return None;
    }
    let spec = node.spec.as_ref()?;
    let range = Cidr::parse(spec.pod_cidr.as_deref()?)?;
    let status = node.status.as_ref()?;
    let address: IpAddr = status
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    let port = status
        .daemon_endpoints
        .as_ref()?
        .kubelet_endpoint
        .as_ref()?
        .port;
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    Some(Peer {
        name,
        range,
        endpoint: SocketAddr::new(address, port),
    })
}

impl Tunnel {
    /// The peer whose range holds pod address `ip`.
    pub fn peer_for(&self, ip: Ipv4Addr) -> Option<Peer> {
        let peers = self.inner.peers.read().unwrap_or_else(|p| p.into_inner());
        peers.iter().find(|p| p.range.contains(ip)).cloned()
    }

    /// The range of node `name`, when it is a peer.
    pub fn range_of(&self, name: &str) -> Option<Cidr> {
        let peers = self.inner.peers.read().unwrap_or_else(|p| p.into_inner());
        peers.iter().find(|p| p.name == name).map(|p| p.range)
    }

    /// Where a host connection to `target` goes instead while the relay runs: the relay, when
    /// `target` is the loopback address of a pod of another node; with that pod's address.
    pub fn redirect(&self, target: SocketAddr) -> Option<(SocketAddr, SocketAddrV4)> {
        let relay = *self.inner.relay.get()?;
        let SocketAddr::V4(target) = target else {
            return None;
        };
        let peers = self.inner.peers.read().unwrap_or_else(|p| p.into_inner());
        let pod = peers.iter().find_map(|p| {
            pod_ip_of(*target.ip(), p.range.cluster()).filter(|ip| p.range.contains(*ip))
        })?;
        Some((relay, SocketAddrV4::new(pod, target.port())))
    }

    /// Notes that the connection to the relay from `source` is for `destination`.
    pub fn expect(&self, source: SocketAddr, destination: SocketAddrV4) {
        let mut expected = self
            .inner
            .expected
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        expected.retain(|_, (_, since)| now.duration_since(*since) < EXPECTED_FOR);
        expected.insert(source, (destination, now));
    }

    fn take_expected(&self, source: SocketAddr) -> Option<SocketAddrV4> {
        let mut expected = self
            .inner
            .expected
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        expected.remove(&source).map(|(destination, _)| destination)
    }

    /// Connects to `target` (a host address) from `from`, through the tunnel when `target` is
    /// a pod of another node.
    pub async fn connect(
        &self,
        target: SocketAddr,
        from: Option<Ipv4Addr>,
    ) -> std::io::Result<TcpStream> {
        let Some((relay, destination)) = self.redirect(target) else {
            return super::proxy::connect(target, from).await;
        };
        let socket = TcpSocket::new_v4()?;
        let source = from.map_or(relay.ip(), IpAddr::V4);
        socket.bind(SocketAddr::new(source, 0))?;
        self.expect(socket.local_addr()?, destination);
        let stream = socket.connect(relay).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Follows the other nodes, and relays connections to their pods, until the process ends.
    pub async fn run(
        self,
        client: kube::Client,
        own: String,
        addresses: Addresses,
        credentials: Credentials,
    ) {
        let tls = match connector(&credentials) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!(error = %e, "the node's tunnel credentials are unusable: no tunnel");
                return;
            }
        };
        tokio::spawn(self.clone().follow(client, own, addresses.clone()));
        addresses.wait_for_range().await;
        let Some(gateway) = addresses.gateway() else {
            return;
        };
        let listener = match TcpListener::bind((gateway.loopback, 0)).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "the tunnel's relay cannot listen: no tunnel");
                return;
            }
        };
        let Ok(at) = listener.local_addr() else {
            return;
        };
        let _ = self.inner.relay.set(at);
        tracing::info!(relay = %at, "relaying connections to other nodes' pods through the tunnel");
        loop {
            let (stream, source) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "the tunnel's relay failed to accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(destination) = self.take_expected(source) else {
                continue;
            };
            let (tunnel, tls, addresses) = (self.clone(), tls.clone(), addresses.clone());
            tokio::spawn(async move {
                let from = match source.ip() {
                    IpAddr::V4(ip) => addresses.range().and_then(|r| pod_ip_of(ip, r.cluster())),
                    IpAddr::V6(_) => None,
                };
                let (Some(from), Some(peer)) = (from, tunnel.peer_for(*destination.ip())) else {
                    return;
                };
                match open(&tls, &peer, destination, from).await {
                    Ok(mut far) => {
                        let mut near = stream;
                        let _ = tokio::io::copy_bidirectional(&mut near, &mut far).await;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.name, %destination, error = %e, "the tunnel refused a connection")
                    }
                }
            });
        }
    }

    /// Keeps the peers in step with the Node objects.
    async fn follow(self, client: kube::Client, own: String, addresses: Addresses) {
        let (reader, writer) = reflector::store::<Node>();
        let nodes = kube::Api::<Node>::all(client);
        let mut stream = watcher(nodes, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .boxed();
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "watching nodes for the tunnel failed; retrying");
                continue;
            }
            let found: Vec<Peer> = reader
                .state()
                .iter()
                .filter_map(|n| peer_of(n, &own))
                .collect();
            *self.inner.peers.write().unwrap_or_else(|p| p.into_inner()) =
                routable(found, addresses.range());
        }
    }
}

/// The peers traffic may be routed to: none whose range overlaps this node's or another
/// peer's, which only a mistake could give (ranges are handed out once, without overlaps).
fn routable(peers: Vec<Peer>, own: Option<Cidr>) -> Vec<Peer> {
    let clash = |a: &Cidr, b: &Cidr| a.contains(b.base) || b.contains(a.base);
    peers
        .iter()
        .filter(|p| {
            let with_own = own.is_some_and(|own| clash(&own, &p.range));
            let with_other = peers
                .iter()
                .any(|q| q.name != p.name && clash(&q.range, &p.range));
            if with_own || with_other {
                tracing::warn!(node = %p.name, range = ?p.range, "a node's pod range overlaps another's: no tunnel to it");
            }
            !with_own && !with_other
        })
        .cloned()
        .collect()
}

/// The TLS client a node reaches its peers with.
fn connector(credentials: &Credentials) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(
        credentials.peers_ca_pem.as_bytes(),
    )?)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(credentials.cert_pem.as_bytes())
            .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(credentials.key_pem.as_bytes())?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The common name a certificate was issued to.
pub fn common_name(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_string())
}

/// Opens a connection to `destination`, a pod of `peer`, from pod address `from`.
async fn open(
    tls: &tokio_rustls::TlsConnector,
    peer: &Peer,
    destination: SocketAddrV4,
    from: Ipv4Addr,
) -> std::io::Result<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
    let failed = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let connect = async {
        let tcp = TcpStream::connect(peer.endpoint).await?;
        let _ = tcp.set_nodelay(true);
        tls.connect(ServerName::IpAddress(peer.endpoint.ip().into()), tcp)
            .await
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| failed(&format!("reaching node {} timed out", peer.name)))??;
    // The endpoint's address is what the Node says; its certificate must be that node's too.
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| common_name(cert));
    if presented.as_deref() != Some(format!("system:node:{}", peer.name).as_str()) {
        return Err(failed(&format!(
            "the endpoint at {} is not node {}'s",
            peer.endpoint, peer.name
        )));
    }
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("to", &destination.to_string())
        .append_pair("from", &from.to_string())
        .finish();
    let request = http::Request::post(format!("/tunnel?{query}"))
        .header(http::header::HOST, peer.endpoint.to_string())
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, UPGRADE)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| failed(&e))?;
    let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(failed(&format!(
            "node {} answered {}",
            peer.name,
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| failed(&e))?;
    Ok(hyper_util::rt::TokioIo::new(upgraded))
}

/// Where the endpoint connects a tunnelled connection: pod `to` of this node's range, from
/// `from` of `caller`'s range. None, with the reason, when the tunnel may not carry it.
pub fn admit(
    network: &super::NodeNetwork,
    addresses: &Addresses,
    caller: &str,
    to: SocketAddrV4,
    from: Ipv4Addr,
) -> Result<(SocketAddr, Ipv4Addr), String> {
    let own = addresses.range().ok_or("the node has no pod range yet")?;
    if !own.contains(*to.ip()) || !addresses.holds(*to.ip()) {
        return Err(format!("no pod at {} on this node", to.ip()));
    }
    let callers = network.tunnel.range_of(caller);
    if own.contains(from) || !callers.is_some_and(|r| r.contains(from)) {
        return Err(format!("{from} is not an address of node {caller}'s pods"));
    }
    let (Some(target), Some(source)) = (loopback_of(*to.ip()), loopback_of(from)) else {
        return Err("addresses outside the pod network".into());
    };
    let target = SocketAddr::new(IpAddr::V4(target), to.port());
    // Only what a pod serves to other pods: not its localhost, nor the host's own listeners
    // that answer on every loopback address.
    if !network.serves(target) {
        return Err(format!("no pod serves {to} to other pods"));
    }
    Ok((target, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel_with(peers: Vec<Peer>, relay: Option<SocketAddr>) -> Tunnel {
        let tunnel = Tunnel::default();
        *tunnel.inner.peers.write().unwrap() = peers;
        if let Some(relay) = relay {
            tunnel.inner.relay.set(relay).unwrap();
        }
        tunnel
    }

    fn edge() -> Peer {
        Peer {
            name: "edge".into(),
            range: Cidr::parse("10.42.1.0/24").unwrap(),
            endpoint: "127.0.0.2:10250".parse().unwrap(),
        }
    }

    #[test]
    fn only_other_nodes_pods_go_through_the_relay_once_it_runs() {
        let relay: SocketAddr = "127.42.0.1:40000".parse().unwrap();
        let idle = tunnel_with(vec![edge()], None);
        assert_eq!(idle.redirect("127.42.1.5:8080".parse().unwrap()), None);
        let tunnel = tunnel_with(vec![edge()], Some(relay));
        assert_eq!(
            tunnel.redirect("127.42.1.5:8080".parse().unwrap()),
            Some((relay, "10.42.1.5:8080".parse().unwrap()))
        );
        // The node's own pods, and hosts outside the pod network, are reached directly.
        assert_eq!(tunnel.redirect("127.42.0.7:8080".parse().unwrap()), None);
        assert_eq!(tunnel.redirect("127.0.0.1:8080".parse().unwrap()), None);
        assert_eq!(tunnel.redirect("192.168.1.5:80".parse().unwrap()), None);
    }

    #[test]
    fn a_relayed_connection_is_known_by_its_source_once() {
        let tunnel = Tunnel::default();
        let source: SocketAddr = "127.42.0.9:51000".parse().unwrap();
        tunnel.expect(source, "10.42.1.5:8080".parse().unwrap());
        assert_eq!(
            tunnel.take_expected(source),
            Some("10.42.1.5:8080".parse().unwrap())
        );
        assert_eq!(tunnel.take_expected(source), None);
    }

    #[test]
    fn the_tunnel_takes_a_peers_own_pods_to_what_this_nodes_pods_serve_only() {
        let network = super::super::NodeNetwork {
            tunnel: tunnel_with(vec![edge()], None),
            ..Default::default()
        };
        let addresses = Addresses::default();
        addresses
            .set_range(Cidr::parse("10.42.0.0/24").unwrap())
            .unwrap();
        let held = addresses.hold("uid-1", None).unwrap().unwrap();
        let at = |port| SocketAddr::new(held.loopback.into(), port);
        network.bound(at(8080), false);
        network.bound(at(9090), true);
        let to = SocketAddrV4::new(held.ip, 8080);
        let from: Ipv4Addr = "10.42.1.5".parse().unwrap();
        assert_eq!(
            admit(&network, &addresses, "edge", to, from),
            Ok((at(8080), "127.42.1.5".parse().unwrap()))
        );
        // Not a pod of this node; a port its pod serves on localhost only, or not at all.
        let free = SocketAddrV4::new("10.42.0.200".parse().unwrap(), 8080);
        assert!(admit(&network, &addresses, "edge", free, from).is_err());
        for port in [9090, 22] {
            let to = SocketAddrV4::new(held.ip, port);
            assert!(
                admit(&network, &addresses, "edge", to, from).is_err(),
                "{port}"
            );
        }
        // A source outside the caller's range (this node's own, say), an unknown caller.
        for spoofed in ["10.42.0.77", "10.42.2.1"] {
            let spoofed: Ipv4Addr = spoofed.parse().unwrap();
            assert!(admit(&network, &addresses, "edge", to, spoofed).is_err());
        }
        assert!(admit(&network, &addresses, "stranger", to, from).is_err());
    }

    #[test]
    fn peers_with_overlapping_ranges_get_no_traffic() {
        let mut wide = edge();
        wide.name = "wide".into();
        wide.range = Cidr::parse("10.42.0.0/16").unwrap();
        let mut other = edge();
        other.name = "other".into();
        other.range = Cidr::parse("10.42.2.0/24").unwrap();
        let own = Cidr::parse("10.42.0.0/24");
        assert_eq!(
            routable(vec![edge(), other.clone()], own),
            vec![edge(), other.clone()]
        );
        assert_eq!(routable(vec![edge(), wide, other.clone()], own), vec![]);
        let mut mine = edge();
        mine.range = own.unwrap();
        assert_eq!(routable(vec![mine, other.clone()], own), vec![other]);
    }
}
