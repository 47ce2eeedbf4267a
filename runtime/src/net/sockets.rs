//! The pod network's socket layer: the few `wasi:sockets` functions that carry addresses,
//! re-defined over wasmtime's own (`Linker::allow_shadowing`), translating between the pod
//! network the guest sees and the host loopback addresses its sockets really use, then calling
//! the stock implementation.
//!
//! - A bind on 0.0.0.0, on 127.0.0.1 (any of 127/8) or on the pod's own address binds the pod's
//!   loopback address: the containers of a pod share a localhost, and no other pod shares it.
//! - A connect to 127/8 reaches the pod's own loopback address; one to a pod address reaches
//!   that pod's. Its source is the calling pod's address, so the peer knows who calls.
//! - `local-address` and `remote-address` answer in pod network terms: what the guest bound or
//!   connected to, pod addresses for other pods, 127.0.0.1 within the pod.
//! - IPv6 sockets are refused (`not-supported`): the pod network is IPv4.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress,
};
use wasmtime_wasi::p2::bindings::sockets::udp::{
    IncomingDatagram, IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp, tcp_create_socket, udp, udp_create_socket};
use wasmtime_wasi::p2::{Network, Pollable, SocketResult, TcpSocket, UdpSocket};

use super::dns::PodDns;
use super::services::Protocol;
use super::{NodeNetwork, PodAddress, SERVICE_CIDR, loopback_in, pod_ip_of};
use crate::engine::Host;

/// The `wasi:sockets` version wasmtime-wasi defines; guests importing an earlier 0.2 version
/// are linked to it.
const SOCKETS: &str = "0.2.12";

/// What a guest asked of one socket, to answer its address queries in its own terms.
#[derive(Debug, Clone, Copy, Default)]
struct Asked {
    /// The address it bound, before translation.
    bound: Option<IpAddr>,
    /// The address it connected to, before translation.
    remote: Option<SocketAddr>,
}

impl Asked {
    /// A socket's local address as its guest sees it: what it bound (with the port it got),
    /// else in pod network terms.
    fn local(
        &self,
        pod: &PodAddress,
        local: IpSocketAddress,
        remote: Option<SocketAddr>,
    ) -> IpSocketAddress {
        let local = SocketAddr::from(local);
        let seen = match self.bound {
            Some(ip) => SocketAddr::new(ip, local.port()),
            None => guest_view(pod, local, within_pod(pod, remote)),
        };
        seen.into()
    }

    /// A socket's remote address as its guest sees it: what it connected to, else in pod
    /// network terms.
    fn remote(&self, pod: &PodAddress, remote: IpSocketAddress) -> IpSocketAddress {
        let remote = SocketAddr::from(remote);
        self.remote
            .unwrap_or_else(|| guest_view(pod, remote, within_pod(pod, Some(remote))))
            .into()
    }
}

/// One instance's view of the pod network: its pod's address, and what it asked of its
/// sockets (by resource handle).
#[derive(Debug, Clone)]
pub struct PodSockets {
    pod: PodAddress,
    node: Arc<NodeNetwork>,
    dns: Arc<PodDns>,
    tcp: HashMap<u32, Asked>,
    udp: HashMap<u32, Asked>,
    /// The incoming datagram streams of sockets bound on localhost, which take datagrams from
    /// their own pod only.
    local_only: HashSet<u32>,
}

impl PodSockets {
    pub fn new(pod: PodAddress, node: Arc<NodeNetwork>, dns: Arc<PodDns>) -> PodSockets {
        PodSockets {
            pod,
            node,
            dns,
            tcp: HashMap::new(),
            udp: HashMap::new(),
            local_only: HashSet::new(),
        }
    }

    pub fn pod(&self) -> PodAddress {
        self.pod
    }

    /// Resolves `name` as the pod's resolver does.
    pub fn resolve(
        &self,
        name: &str,
    ) -> impl Future<Output = Option<Vec<Ipv4Addr>>> + Send + 'static {
        let (dns, table, name) = (
            self.dns.clone(),
            self.node.services.table(),
            name.to_string(),
        );
        async move { dns.resolve(&table, &name).await }
    }

    /// The node's way to other nodes' pods.
    pub fn tunnel(&self) -> &super::tunnel::Tunnel {
        &self.node.tunnel
    }

    /// Where a connection to `guest` (an address as the guest sees it) goes on the host, from
    /// which source; as a guest's connect through the socket layer goes.
    pub fn route(&self, guest: SocketAddr) -> Result<(SocketAddr, Option<Ipv4Addr>), ErrorCode> {
        let target = connect_target(&self.pod, &self.node, guest, Protocol::Tcp)?;
        if target.ip() != IpAddr::V4(self.pod.loopback) && self.node.is_local_only(target) {
            return Err(ErrorCode::ConnectionRefused);
        }
        let from = target.ip().is_loopback().then_some(self.pod.loopback);
        Ok((target, from))
    }
}

/// A name lookup under way.
type Resolving = Pin<Box<dyn Future<Output = Option<Vec<Ipv4Addr>>> + Send>>;

/// A name lookup under way, or its answer: what `resolve-addresses` gives the guest.
pub struct Lookup {
    pending: Option<Resolving>,
    answer: Result<VecDeque<Ipv4Addr>, ErrorCode>,
}

impl Lookup {
    /// Takes the answer if it has come.
    fn poll_answer(&mut self) -> bool {
        let Some(pending) = self.pending.as_mut() else {
            return true;
        };
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match pending.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(found) => {
                self.settle(found);
                true
            }
            std::task::Poll::Pending => false,
        }
    }

    fn settle(&mut self, found: Option<Vec<Ipv4Addr>>) {
        self.pending = None;
        self.answer = found.map(VecDeque::from).ok_or(ErrorCode::NameUnresolvable);
    }
}

#[async_trait::async_trait]
impl Pollable for Lookup {
    async fn ready(&mut self) {
        if let Some(pending) = self.pending.as_mut() {
            let found = pending.await;
            self.settle(found);
        }
    }
}

/// Where a guest's bind really binds.
fn bind_target(pod: &PodAddress, guest: SocketAddr) -> Result<SocketAddr, ErrorCode> {
    match guest.ip() {
        IpAddr::V6(_) => Err(ErrorCode::NotSupported),
        IpAddr::V4(ip) if ip.is_unspecified() || ip.is_loopback() || ip == pod.ip => {
            Ok(SocketAddr::new(pod.loopback.into(), guest.port()))
        }
        IpAddr::V4(_) => Err(ErrorCode::AddressNotBindable),
    }
}

/// Where a guest's connection (or datagram) really goes: a ClusterIP reaches one of its
/// Service's endpoints (refused while it has none).
fn connect_target(
    pod: &PodAddress,
    node: &NodeNetwork,
    guest: SocketAddr,
    protocol: Protocol,
) -> Result<SocketAddr, ErrorCode> {
    let IpAddr::V4(ip) = guest.ip() else {
        return Err(ErrorCode::NotSupported);
    };
    let to_host = |ip: Ipv4Addr, port: u16| match loopback_in(ip, pod.cluster()) {
        Some(loopback) => SocketAddr::new(loopback.into(), port),
        None => SocketAddr::new(ip.into(), port),
    };
    if ip.is_unspecified() || ip.is_loopback() {
        Ok(SocketAddr::new(pod.loopback.into(), guest.port()))
    } else if SERVICE_CIDR.contains(ip) {
        let vip = SocketAddrV4::new(ip, guest.port());
        let endpoint = node
            .services
            .table()
            .at_cluster_ip(vip, protocol)
            .and_then(|port| port.pick(pod.ip))
            .ok_or(ErrorCode::ConnectionRefused)?;
        Ok(to_host(*endpoint.ip(), endpoint.port()))
    } else {
        Ok(to_host(ip, guest.port()))
    }
}

/// A host address as the guest sees it: a pod's loopback address is that pod's address, and
/// the guest's own is 127.0.0.1 when the other end is within the pod too.
fn guest_view(pod: &PodAddress, host: SocketAddr, within_pod: bool) -> SocketAddr {
    let IpAddr::V4(ip) = host.ip() else {
        return host;
    };
    let seen = if ip == pod.loopback {
        if within_pod {
            Ipv4Addr::LOCALHOST
        } else {
            pod.ip
        }
    } else {
        pod_ip_of(ip, pod.cluster()).unwrap_or(ip)
    };
    SocketAddr::new(seen.into(), host.port())
}

/// Whether a host address is within the pod: its own loopback address.
fn within_pod(pod: &PodAddress, host: Option<SocketAddr>) -> bool {
    host.is_some_and(|h| h.ip() == IpAddr::V4(pod.loopback))
}

/// The stock implementation's result, with its error code given to the guest and a trap kept
/// a trap.
fn answer<T>(result: SocketResult<T>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) => e.downcast().map(Err),
    }
}

/// Re-defines the address-carrying `wasi:sockets` functions in `linker`, which already holds
/// wasmtime's.
pub fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    add_tcp(linker)?;
    add_udp(linker)?;
    add_name_lookup(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn add_tcp(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    use tcp::HostTcpSocket;
    use tcp_create_socket::Host as _;
    linker
        .instance(&format!("wasi:sockets/tcp-create-socket@{SOCKETS}"))?
        .func_wrap(
            "create-tcp-socket",
            |mut store: StoreContextMut<'_, Host>, (family,): (IpAddressFamily,)| {
                if matches!(family, IpAddressFamily::Ipv6) {
                    return Ok((Err(ErrorCode::NotSupported),));
                }
                let (net, mut sockets) = store.data_mut().pod_sockets();
                let created = answer(sockets.create_tcp_socket(family))?;
                if let Ok(socket) = &created {
                    net.tcp.remove(&socket.rep());
                }
                Ok((created,))
            },
        )?;
    let mut instance = linker.instance(&format!("wasi:sockets/tcp@{SOCKETS}"))?;
    instance.func_wrap_async(
        "[method]tcp-socket.start-bind",
        |mut store: StoreContextMut<'_, Host>,
         (this, network, address): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let (net, mut sockets) = store.data_mut().pod_sockets();
                let guest = SocketAddr::from(address);
                let target = match bind_target(&net.pod, guest) {
                    Ok(target) => target,
                    Err(code) => return Ok((Err(code),)),
                };
                let rep = this.rep();
                let bound = answer(sockets.start_bind(this, network, target.into()).await)?;
                if bound.is_ok() {
                    net.tcp.entry(rep).or_default().bound = Some(guest.ip());
                    if guest.port() != 0 {
                        net.node.bound(target, guest.ip().is_loopback());
                    }
                }
                Ok((bound,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]tcp-socket.start-connect",
        |mut store: StoreContextMut<'_, Host>,
         (this, network, address): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let (net, mut sockets) = store.data_mut().pod_sockets();
                let guest = SocketAddr::from(address);
                let (target, from) = match net.route(guest) {
                    Ok(route) => route,
                    Err(code) => return Ok((Err(code),)),
                };
                let rep = this.rep();
                // Within the host's loopback, the connection comes from the calling pod's
                // address, so that the peer knows which pod calls.
                let unbound = sockets.local_address(Resource::new_borrow(rep)).is_err();
                if let Some(from) = from.filter(|_| unbound) {
                    let source = SocketAddr::new(from.into(), 0);
                    let network = Resource::new_borrow(network.rep());
                    if let Err(code) = answer(
                        sockets
                            .start_bind(Resource::new_borrow(rep), network, source.into())
                            .await,
                    )? {
                        return Ok((Err(code),));
                    }
                    if let Err(code) = answer(sockets.finish_bind(Resource::new_borrow(rep)))? {
                        return Ok((Err(code),));
                    }
                }
                // A pod of another node is reached through the tunnel's relay, told first
                // where the connection from this socket is for.
                let mut target = target;
                if let Some((relay, destination)) = net.node.tunnel.redirect(target) {
                    match answer(sockets.local_address(Resource::new_borrow(rep)))? {
                        Ok(local) => net.node.tunnel.expect(local.into(), destination),
                        Err(code) => return Ok((Err(code),)),
                    }
                    target = relay;
                }
                let connecting = answer(sockets.start_connect(this, network, target.into()))?;
                if connecting.is_ok() {
                    net.tcp.entry(rep).or_default().remote = Some(guest);
                }
                Ok((connecting,))
            })
        },
    )?;
    instance.func_wrap(
        "[method]tcp-socket.accept",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<TcpSocket>,)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let local_only = net
                .tcp
                .get(&this.rep())
                .is_some_and(|asked| asked.bound.is_some_and(|ip| ip.is_loopback()));
            loop {
                let accepted = answer(sockets.accept(Resource::new_borrow(this.rep())))?;
                let Ok((socket, input, output)) = accepted else {
                    return Ok((accepted,));
                };
                net.tcp.remove(&socket.rep());
                // A socket bound on localhost takes connections from its own pod only, as
                // one bound on a pod's 127.0.0.1 does; any other caller is turned away.
                let peer = sockets.remote_address(Resource::new_borrow(socket.rep()));
                let from_pod = peer.is_ok_and(|p| within_pod(&net.pod, Some(p.into())));
                if !local_only || from_pod {
                    return Ok((Ok((socket, input, output)),));
                }
                sockets.table.delete(input)?;
                sockets.table.delete(output)?;
                sockets.table.delete(socket)?;
            }
        },
    )?;
    instance.func_wrap(
        "[method]tcp-socket.local-address",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<TcpSocket>,)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let asked = net.tcp.get(&this.rep()).copied().unwrap_or_default();
            let rep = this.rep();
            let local = answer(sockets.local_address(this))?;
            let remote = sockets.remote_address(Resource::new_borrow(rep)).ok();
            Ok((local.map(|l| asked.local(&net.pod, l, remote.map(SocketAddr::from))),))
        },
    )?;
    instance.func_wrap(
        "[method]tcp-socket.remote-address",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<TcpSocket>,)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let asked = net.tcp.get(&this.rep()).copied().unwrap_or_default();
            let remote = answer(sockets.remote_address(this))?;
            Ok((remote.map(|r| asked.remote(&net.pod, r)),))
        },
    )?;
    Ok(())
}

/// `wasi:sockets/ip-name-lookup`, answered as the pod's resolver answers (see
/// [`super::dns`]), with a stream type of its own.
fn add_name_lookup(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&format!("wasi:sockets/ip-name-lookup@{SOCKETS}"))?;
    instance.resource(
        "resolve-address-stream",
        ResourceType::host::<Lookup>(),
        |mut store, rep| {
            store
                .data_mut()
                .table()
                .delete(Resource::<Lookup>::new_own(rep))?;
            Ok(())
        },
    )?;
    instance.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, Host>, (network, name): (Resource<Network>, String)| {
            let (net, sockets) = store.data_mut().pod_sockets();
            sockets.table.get(&network)?;
            if name.is_empty() || name.len() > 253 || name.contains(['/', ' ']) {
                return Ok((Err(ErrorCode::InvalidArgument),));
            }
            let lookup = Lookup {
                pending: Some(Box::pin(net.resolve(&name))),
                answer: Ok(VecDeque::new()),
            };
            Ok((Ok(sockets.table.push(lookup)?),))
        },
    )?;
    instance.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<Lookup>,)| {
            let lookup = store.data_mut().table().get_mut(&this)?;
            if !lookup.poll_answer() {
                return Ok((Err(ErrorCode::WouldBlock),));
            }
            Ok((match &mut lookup.answer {
                Ok(addresses) => Ok(addresses.pop_front().map(|ip| {
                    let [a, b, c, d] = ip.octets();
                    IpAddress::Ipv4((a, b, c, d))
                })),
                Err(code) => Err(*code),
            },))
        },
    )?;
    instance.func_wrap(
        "[method]resolve-address-stream.subscribe",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<Lookup>,)| {
            Ok((wasmtime_wasi::p2::subscribe(
                store.data_mut().table(),
                this,
            )?,))
        },
    )?;
    Ok(())
}

fn add_udp(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    use udp::{HostIncomingDatagramStream, HostOutgoingDatagramStream, HostUdpSocket};
    use udp_create_socket::Host as _;
    linker
        .instance(&format!("wasi:sockets/udp-create-socket@{SOCKETS}"))?
        .func_wrap_async(
            "create-udp-socket",
            |mut store: StoreContextMut<'_, Host>, (family,): (IpAddressFamily,)| {
                Box::new(async move {
                    if matches!(family, IpAddressFamily::Ipv6) {
                        return Ok((Err(ErrorCode::NotSupported),));
                    }
                    let (net, mut sockets) = store.data_mut().pod_sockets();
                    let created = answer(sockets.create_udp_socket(family).await)?;
                    if let Ok(socket) = &created {
                        net.udp.remove(&socket.rep());
                    }
                    Ok((created,))
                })
            },
        )?;
    let mut instance = linker.instance(&format!("wasi:sockets/udp@{SOCKETS}"))?;
    instance.func_wrap_async(
        "[method]udp-socket.start-bind",
        |mut store: StoreContextMut<'_, Host>,
         (this, network, address): (Resource<UdpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let (net, mut sockets) = store.data_mut().pod_sockets();
                let guest = SocketAddr::from(address);
                let target = match bind_target(&net.pod, guest) {
                    Ok(target) => target,
                    Err(code) => return Ok((Err(code),)),
                };
                let rep = this.rep();
                let bound = answer(sockets.start_bind(this, network, target.into()).await)?;
                if bound.is_ok() {
                    net.udp.entry(rep).or_default().bound = Some(guest.ip());
                }
                Ok((bound,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]udp-socket.stream",
        |mut store: StoreContextMut<'_, Host>,
         (this, remote): (Resource<UdpSocket>, Option<IpSocketAddress>)| {
            Box::new(async move {
                let (net, mut sockets) = store.data_mut().pod_sockets();
                let guest = remote.map(SocketAddr::from);
                let target = match guest
                    .map(|g| connect_target(&net.pod, &net.node, g, Protocol::Udp))
                    .transpose()
                {
                    Ok(target) => target,
                    Err(code) => return Ok((Err(code),)),
                };
                let rep = this.rep();
                let streams = answer(sockets.stream(this, target.map(Into::into)).await)?;
                if let Ok((incoming, _)) = &streams {
                    let asked = net.udp.entry(rep).or_default();
                    asked.remote = guest;
                    if asked.bound.is_some_and(|ip| ip.is_loopback()) {
                        net.local_only.insert(incoming.rep());
                    } else {
                        net.local_only.remove(&incoming.rep());
                    }
                }
                Ok((streams,))
            })
        },
    )?;
    instance.func_wrap(
        "[method]udp-socket.local-address",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<UdpSocket>,)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let asked = net.udp.get(&this.rep()).copied().unwrap_or_default();
            let local = answer(sockets.local_address(this))?;
            Ok((local.map(|l| asked.local(&net.pod, l, None)),))
        },
    )?;
    instance.func_wrap(
        "[method]udp-socket.remote-address",
        |mut store: StoreContextMut<'_, Host>, (this,): (Resource<UdpSocket>,)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let asked = net.udp.get(&this.rep()).copied().unwrap_or_default();
            let remote = answer(sockets.remote_address(this))?;
            Ok((remote.map(|r| asked.remote(&net.pod, r)),))
        },
    )?;
    instance.func_wrap(
        "[method]outgoing-datagram-stream.send",
        |mut store: StoreContextMut<'_, Host>,
         (this, datagrams): (Resource<OutgoingDatagramStream>, Vec<OutgoingDatagram>)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let mut translated = Vec::with_capacity(datagrams.len());
            for datagram in datagrams {
                let remote_address = match datagram.remote_address {
                    None => None,
                    Some(remote) => {
                        match connect_target(&net.pod, &net.node, remote.into(), Protocol::Udp) {
                            Ok(target) => Some(target.into()),
                            Err(code) => return Ok((Err(code),)),
                        }
                    }
                };
                translated.push(OutgoingDatagram {
                    data: datagram.data,
                    remote_address,
                });
            }
            Ok((answer(sockets.send(this, translated))?,))
        },
    )?;
    instance.func_wrap(
        "[method]incoming-datagram-stream.receive",
        |mut store: StoreContextMut<'_, Host>,
         (this, max): (Resource<IncomingDatagramStream>, u64)| {
            let (net, mut sockets) = store.data_mut().pod_sockets();
            let local_only = net.local_only.contains(&this.rep());
            let received = answer(sockets.receive(this, max))?;
            Ok((received.map(|datagrams| {
                datagrams
                    .into_iter()
                    // A socket bound on localhost hears its own pod only.
                    .filter(|datagram| {
                        !local_only || within_pod(&net.pod, Some(datagram.remote_address.into()))
                    })
                    .map(|datagram| {
                        let from = SocketAddr::from(datagram.remote_address);
                        IncomingDatagram {
                            data: datagram.data,
                            remote_address: guest_view(
                                &net.pod,
                                from,
                                within_pod(&net.pod, Some(from)),
                            )
                            .into(),
                        }
                    })
                    .collect::<Vec<_>>()
            }),))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodAddress {
        PodAddress::new("10.42.0.7".parse().unwrap()).unwrap()
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn node() -> NodeNetwork {
        NodeNetwork::default()
    }

    #[test]
    fn binds_on_any_local_address_bind_the_pods_loopback_address() {
        for guest in [
            "0.0.0.0:8080",
            "127.0.0.1:8080",
            "127.1.2.3:8080",
            "10.42.0.7:8080",
        ] {
            assert_eq!(
                bind_target(&pod(), at(guest)),
                Ok(at("127.42.0.7:8080")),
                "{guest}"
            );
        }
        assert_eq!(
            bind_target(&pod(), at("10.42.0.8:8080")),
            Err(ErrorCode::AddressNotBindable)
        );
        assert_eq!(
            bind_target(&pod(), at("[::]:8080")),
            Err(ErrorCode::NotSupported)
        );
    }

    #[test]
    fn connections_to_localhost_stay_in_the_pod_and_pod_addresses_reach_their_pods() {
        assert_eq!(
            connect_target(&pod(), &node(), at("127.0.0.1:8080"), Protocol::Tcp),
            Ok(at("127.42.0.7:8080"))
        );
        assert_eq!(
            connect_target(&pod(), &node(), at("10.42.1.9:80"), Protocol::Tcp),
            Ok(at("127.42.1.9:80"))
        );
        // Another pod's loopback address is not another pod's: all of 127/8 is the pod's own.
        assert_eq!(
            connect_target(&pod(), &node(), at("127.42.0.8:8080"), Protocol::Tcp),
            Ok(at("127.42.0.7:8080"))
        );
        assert_eq!(
            connect_target(&pod(), &node(), at("192.0.2.1:443"), Protocol::Tcp),
            Ok(at("192.0.2.1:443"))
        );
        assert_eq!(
            connect_target(&pod(), &node(), at("[::1]:80"), Protocol::Tcp),
            Err(ErrorCode::NotSupported)
        );
        // A ClusterIP with no Service (or no endpoints) behind it refuses.
        assert_eq!(
            connect_target(&pod(), &node(), at("10.43.0.9:80"), Protocol::Tcp),
            Err(ErrorCode::ConnectionRefused)
        );
    }

    #[test]
    fn host_addresses_read_back_in_pod_network_terms() {
        assert_eq!(
            guest_view(&pod(), at("127.42.3.4:5000"), false),
            at("10.42.3.4:5000")
        );
        assert_eq!(
            guest_view(&pod(), at("127.42.0.7:8080"), false),
            at("10.42.0.7:8080")
        );
        assert_eq!(
            guest_view(&pod(), at("127.42.0.7:8080"), true),
            at("127.0.0.1:8080")
        );
        assert_eq!(
            guest_view(&pod(), at("192.0.2.1:443"), false),
            at("192.0.2.1:443")
        );
    }
}
