//! The node's view of Services, as kube-proxy keeps it: for each Service port, the ready
//! endpoints of its EndpointSlices (or, while none is ready, the serving ones still
//! terminating, as kube-proxy falls back to them), reached by ClusterIP:port and, for NodePort
//! and LoadBalancer Services, by the node port. Connections are spread round robin, or kept
//! with the endpoint a client had before under `sessionAffinity: ClientIP`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::watch;

/// How long a drained endpoint still takes connections begun before it left the table.
const LINGER: Duration = Duration::from_millis(200);

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn of(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// One port of a Service and where its connections go.
#[derive(Debug)]
pub struct ServicePort {
    /// `namespace/name:port`, for logs and events.
    pub name: String,
    pub endpoints: Vec<SocketAddrV4>,
    /// How long a client stays with its endpoint, under ClientIP affinity.
    affinity: Option<Duration>,
    next: AtomicUsize,
    sticky: Mutex<HashMap<Ipv4Addr, (SocketAddrV4, Instant)>>,
}

impl ServicePort {
    /// The endpoint for a connection from `peer`, outside the pod network (an IPv6 peer has
    /// no address for session affinity to go by); None while the port has no endpoints.
    pub fn pick_for(&self, peer: std::net::SocketAddr) -> Option<SocketAddrV4> {
        match peer.ip() {
            std::net::IpAddr::V4(ip) => self.pick(ip),
            std::net::IpAddr::V6(_) => self.pick(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// The endpoint for a connection from `client`; None while the port has no endpoints.
    pub fn pick(&self, client: Ipv4Addr) -> Option<SocketAddrV4> {
        if self.endpoints.is_empty() {
            return None;
        }
        let now = Instant::now();
        if let Some(timeout) = self.affinity {
            let mut sticky = self.sticky.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((endpoint, until)) = sticky.get(&client)
                && *until > now
                && self.endpoints.contains(endpoint)
            {
                let endpoint = *endpoint;
                sticky.insert(client, (endpoint, now + timeout));
                return Some(endpoint);
            }
            let endpoint = self.round_robin();
            sticky.retain(|_, (_, until)| *until > now);
            sticky.insert(client, (endpoint, now + timeout));
            return Some(endpoint);
        }
        Some(self.round_robin())
    }

    /// The endpoints in turn.
    fn round_robin(&self) -> SocketAddrV4 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.endpoints[n % self.endpoints.len()]
    }

    /// The endpoints after the one picked, for a proxy trying another when one refuses.
    pub fn others(&self, picked: SocketAddrV4) -> impl Iterator<Item = SocketAddrV4> + '_ {
        let at = self
            .endpoints
            .iter()
            .position(|e| *e == picked)
            .unwrap_or(0);
        (1..self.endpoints.len()).map(move |i| self.endpoints[(at + i) % self.endpoints.len()])
    }
}

/// Every Service port the node serves.
#[derive(Debug, Default)]
pub struct ServiceTable {
    by_cluster_ip: HashMap<(SocketAddrV4, Protocol), Arc<ServicePort>>,
    by_node_port: HashMap<(u16, Protocol), Arc<ServicePort>>,
    /// What the cluster DNS answers, by `<service>.<namespace>`.
    names: HashMap<String, Record>,
    /// The ports of LoadBalancer Services, oldest Service first.
    load_balancers: Vec<LoadBalancer>,
    /// Services no longer of type LoadBalancer whose status still lists addresses:
    /// `(namespace, name, addresses)`.
    former_load_balancers: Vec<(String, String, Vec<String>)>,
    /// Every Service port by its Service (`namespace/name`) and its number and name.
    by_service: HashMap<String, Vec<(u16, String, Arc<ServicePort>)>>,
}

/// A Service port as an Ingress backend names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A port of a LoadBalancer Service, which every node serves on its own address, as k3s's
/// ServiceLB does.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub port: u16,
    pub protocol: Protocol,
    pub service: Arc<ServicePort>,
    /// The addresses `status.loadBalancer.ingress` lists now.
    pub ingress: Vec<String>,
}

/// A Service's DNS records.
#[derive(Debug, Default)]
struct Record {
    /// Its ClusterIP; a headless Service has none.
    cluster_ip: Option<Ipv4Addr>,
    /// A headless Service's ready endpoint addresses.
    endpoints: Vec<Ipv4Addr>,
    /// The endpoints that have a hostname (StatefulSet pods), by it.
    hostnames: HashMap<String, Ipv4Addr>,
    /// An ExternalName Service's target.
    external_name: Option<String>,
}

impl ServiceTable {
    /// The Service port at ClusterIP `vip`.
    pub fn at_cluster_ip(&self, vip: SocketAddrV4, protocol: Protocol) -> Option<Arc<ServicePort>> {
        self.by_cluster_ip.get(&(vip, protocol)).cloned()
    }

    /// The cluster DNS answer for `name` (`[hostname.]service.namespace.svc.cluster.local`).
    pub fn lookup(&self, name: &str) -> Option<super::dns::Answer> {
        use super::dns::{Answer, CLUSTER_DOMAIN};
        let name = name.strip_suffix(&format!(".svc.{CLUSTER_DOMAIN}"))?;
        let labels: Vec<&str> = name.split('.').collect();
        match labels.as_slice() {
            [service, namespace] => {
                let record = self.names.get(&format!("{service}.{namespace}"))?;
                if let Some(target) = &record.external_name {
                    return Some(Answer::Alias(target.clone()));
                }
                Some(Answer::Addresses(match record.cluster_ip {
                    Some(ip) => vec![ip],
                    None => record.endpoints.clone(),
                }))
            }
            [hostname, service, namespace] => {
                let record = self.names.get(&format!("{service}.{namespace}"))?;
                record
                    .hostnames
                    .get(*hostname)
                    .map(|ip| Answer::Addresses(vec![*ip]))
            }
            _ => None,
        }
    }

    /// The Service port at node port `port`.
    pub fn at_node_port(&self, port: u16, protocol: Protocol) -> Option<Arc<ServicePort>> {
        self.by_node_port.get(&(port, protocol)).cloned()
    }

    /// The TCP port `port` of Service `name` in `namespace`.
    pub fn service_port(
        &self,
        namespace: &str,
        name: &str,
        port: &PortRef,
    ) -> Option<Arc<ServicePort>> {
        self.by_service
            .get(&format!("{namespace}/{name}"))?
            .iter()
            .find(|(number, port_name, _)| match port {
                PortRef::Number(n) => number == n,
                PortRef::Name(n) => port_name == n,
            })
            .map(|(_, _, entry)| entry.clone())
    }

    /// Keeps each Service port's turn and client affinities from the table before, so that a
    /// rebuild (any Service or slice of the cluster changing) moves no client.
    fn carry_over(&self, before: &ServiceTable) {
        let old: HashMap<&str, &Arc<ServicePort>> = before
            .by_service
            .values()
            .flatten()
            .map(|(_, _, port)| (port.name.as_str(), port))
            .collect();
        for (_, _, port) in self.by_service.values().flatten() {
            if let Some(previous) = old.get(port.name.as_str()) {
                let turn = previous.next.load(Ordering::Relaxed);
                port.next.store(turn, Ordering::Relaxed);
                let sticky = previous
                    .sticky
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                *port.sticky.lock().unwrap_or_else(|p| p.into_inner()) = sticky;
            }
        }
    }

    /// Whether any Service port sends connections to `ip`.
    pub fn sends_to(&self, ip: Ipv4Addr) -> bool {
        self.by_service
            .values()
            .flatten()
            .any(|(_, _, port)| port.endpoints.iter().any(|e| *e.ip() == ip))
    }

    /// Services no longer of type LoadBalancer whose status still lists addresses.
    pub fn former_load_balancers(&self) -> &[(String, String, Vec<String>)] {
        &self.former_load_balancers
    }

    /// The ports of LoadBalancer Services, oldest Service first.
    pub fn load_balancers(&self) -> &[LoadBalancer] {
        &self.load_balancers
    }

    /// The node ports served, with the Service ports behind them.
    pub fn node_ports(&self) -> impl Iterator<Item = (u16, Protocol)> + '_ {
        self.by_node_port.keys().copied()
    }

    /// The table for `services` and their `slices`.
    pub fn build(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> ServiceTable {
        let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            if let Some(service) = slice.labels().get(SERVICE_NAME) {
                by_service
                    .entry((slice.namespace().unwrap_or_default(), service.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut table = ServiceTable::default();
        for service in services {
            let Some(spec) = &service.spec else { continue };
            let namespace = service.namespace().unwrap_or_default();
            let cluster_ip = spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let slices = by_service
                .get(&(namespace.clone(), service.name_any()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if spec.type_.as_deref() != Some("LoadBalancer") {
                let listed = listed_addresses(service);
                if !listed.is_empty() {
                    table.former_load_balancers.push((
                        namespace.clone(),
                        service.name_any(),
                        listed,
                    ));
                }
            }
            let mut record = Record {
                cluster_ip,
                external_name: spec
                    .external_name
                    .clone()
                    .filter(|_| spec.type_.as_deref() == Some("ExternalName")),
                ..Record::default()
            };
            for slice in slices {
                for endpoint in &slice.endpoints {
                    let ready = endpoint
                        .conditions
                        .as_ref()
                        .and_then(|c| c.ready)
                        .unwrap_or(true);
                    let Some(ip) = endpoint
                        .addresses
                        .first()
                        .and_then(|a| a.parse::<Ipv4Addr>().ok())
                        .filter(|ip| routable(*ip))
                    else {
                        continue;
                    };
                    if !ready {
                        continue;
                    }
                    if !record.endpoints.contains(&ip) {
                        record.endpoints.push(ip);
                    }
                    if let Some(hostname) = &endpoint.hostname {
                        record.hostnames.insert(hostname.clone(), ip);
                    }
                }
            }
            record.endpoints.sort();
            table
                .names
                .insert(format!("{}.{namespace}", service.name_any()), record);
            let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                let seconds = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .unwrap_or(10800);
                Duration::from_secs(seconds.max(1) as u64)
            });
            for port in spec.ports.iter().flatten() {
                let Some(protocol) = Protocol::of(port.protocol.as_deref()) else {
                    continue;
                };
                let port_name = port.name.clone().unwrap_or_default();
                let endpoints = endpoints_of(slices, &port_name, protocol);
                let entry = Arc::new(ServicePort {
                    name: format!(
                        "{namespace}/{}:{}/{protocol:?}",
                        service.name_any(),
                        port.port
                    ),
                    endpoints,
                    affinity,
                    next: AtomicUsize::new(0),
                    sticky: Mutex::default(),
                });
                if let (Protocol::Tcp, Ok(number)) = (protocol, u16::try_from(port.port)) {
                    table
                        .by_service
                        .entry(format!("{namespace}/{}", service.name_any()))
                        .or_default()
                        .push((number, port_name.clone(), entry.clone()));
                }
                if let (Some(ip), Ok(number)) = (cluster_ip, u16::try_from(port.port)) {
                    table
                        .by_cluster_ip
                        .insert((SocketAddrV4::new(ip, number), protocol), entry.clone());
                }
                if spec.type_.as_deref() == Some("LoadBalancer")
                    && spec.load_balancer_class.is_none()
                    && let Ok(number) = u16::try_from(port.port)
                {
                    let ingress = listed_addresses(service);
                    table.load_balancers.push(LoadBalancer {
                        namespace: namespace.clone(),
                        name: service.name_any(),
                        uid: service.metadata.uid.clone().unwrap_or_default(),
                        port: number,
                        protocol,
                        service: entry.clone(),
                        ingress,
                    });
                }
                if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok())
                    && node_port != 0
                {
                    table.by_node_port.insert((node_port, protocol), entry);
                }
            }
        }
        let created = |lb: &LoadBalancer| {
            services
                .iter()
                .find(|s| s.metadata.uid.as_deref() == Some(lb.uid.as_str()))
                .and_then(|s| s.metadata.creation_timestamp.clone())
                .map(|t| t.0)
        };
        table
            .load_balancers
            .sort_by_key(|lb| (created(lb), lb.namespace.clone(), lb.name.clone()));
        table
    }
}

/// The addresses a Service's `status.loadBalancer.ingress` lists.
fn listed_addresses(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

/// Whether an endpoint address may be sent connections: never the host's own loopback, an
/// unspecified, link-local or multicast address, as upstream's validation refuses them.
fn routable(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast())
}

/// The endpoints of a Service port across its slices: the ready ones, else the serving ones
/// still terminating.
fn endpoints_of(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
) -> Vec<SocketAddrV4> {
    let mut ready = Vec::new();
    let mut serving = Vec::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::of(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let is_serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<Ipv4Addr>() else {
                    continue;
                };
                if !routable(ip) {
                    continue;
                }
                let at = SocketAddrV4::new(ip, number);
                if is_ready {
                    ready.push(at);
                } else if is_serving {
                    serving.push(at);
                }
            }
        }
    }
    let mut chosen = if ready.is_empty() { serving } else { ready };
    chosen.sort();
    chosen.dedup();
    chosen
}

/// The node's Service table, kept up to date.
#[derive(Debug, Clone)]
pub struct Services {
    table: Arc<RwLock<Arc<ServiceTable>>>,
    changed: watch::Sender<u64>,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            table: Arc::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Services {
    /// The table as it is now.
    pub fn table(&self) -> Arc<ServiceTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wakes on every change of the table.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until no Service port sends connections to `ip` any more, then a moment more
    /// for connections begun before (LINGER); returns at once when none did.
    pub async fn wait_unlisted(&self, ip: Ipv4Addr) {
        let mut changed = self.subscribe();
        if !self.table().sends_to(ip) {
            return;
        }
        while self.table().sends_to(ip) {
            if changed.changed().await.is_err() {
                return;
            }
        }
        tokio::time::sleep(LINGER).await;
    }

    fn replace(&self, table: ServiceTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Follows every Service and EndpointSlice of the cluster until the process ends.
    pub async fn follow(self, client: kube::Client) {
        let (services, service_changes) = super::cached(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        );
        let (slices, slice_changes) = super::cached(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        );
        let mut changes = futures::stream::select_all([service_changes, slice_changes]);
        while super::next_burst(&mut changes).await {
            self.rebuild(&services, &slices);
        }
    }

    fn rebuild(&self, services: &Store<Service>, slices: &Store<EndpointSlice>) {
        let table = ServiceTable::build(&services.state(), &slices.state());
        table.carry_over(&self.table());
        self.replace(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn slice(endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web-x", "namespace": "default",
                             "labels": {SERVICE_NAME: "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .unwrap(),
        )
    }

    fn at(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn connections_spread_over_ready_endpoints_by_cluster_ip_and_node_port() {
        let services = [service(
            json!({"clusterIP": "10.43.0.9", "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
        )];
        let slices = [slice(json!([
            {"addresses": ["10.42.0.2"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.3"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
        ]))];
        let table = ServiceTable::build(&services, &slices);
        let port = table
            .at_cluster_ip(at("10.43.0.9:80"), Protocol::Tcp)
            .unwrap();
        let client = Ipv4Addr::new(10, 42, 0, 7);
        let picks: Vec<_> = (0..4).map(|_| port.pick(client).unwrap()).collect();
        assert_eq!(
            picks,
            [
                at("10.42.0.2:8080"),
                at("10.42.0.3:8080"),
                at("10.42.0.2:8080"),
                at("10.42.0.3:8080")
            ]
        );
        assert!(table.at_node_port(30080, Protocol::Tcp).is_some());
        assert!(
            table
                .at_cluster_ip(at("10.43.0.9:81"), Protocol::Tcp)
                .is_none()
        );
        assert!(
            table
                .at_cluster_ip(at("10.43.0.9:80"), Protocol::Udp)
                .is_none()
        );
    }

    #[test]
    fn terminating_endpoints_serve_only_while_none_is_ready_and_affinity_sticks() {
        let services = [service(
            json!({"clusterIP": "10.43.0.9", "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        )];
        let slices = [slice(json!([
            {"addresses": ["10.42.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.42.0.5"], "conditions": {"ready": false, "serving": false}},
        ]))];
        let table = ServiceTable::build(&services, &slices);
        let port = table
            .at_cluster_ip(at("10.43.0.9:80"), Protocol::Tcp)
            .unwrap();
        assert_eq!(port.endpoints, [at("10.42.0.4:8080")]);
        let slices = [slice(json!([
            {"addresses": ["10.42.0.2"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.3"], "conditions": {"ready": true}},
        ]))];
        let table = ServiceTable::build(&services, &slices);
        let port = table
            .at_cluster_ip(at("10.43.0.9:80"), Protocol::Tcp)
            .unwrap();
        let client = Ipv4Addr::new(10, 42, 0, 7);
        let first = port.pick(client).unwrap();
        assert!((0..5).all(|_| port.pick(client) == Some(first)));
        let other = port.pick(Ipv4Addr::new(10, 42, 0, 8)).unwrap();
        assert_ne!(
            other, first,
            "another client is spread to the next endpoint"
        );
        // A service without endpoints has nothing to pick.
        let table = ServiceTable::build(&services, &[]);
        let port = table
            .at_cluster_ip(at("10.43.0.9:80"), Protocol::Tcp)
            .unwrap();
        assert_eq!(port.pick(client), None);
    }
}
