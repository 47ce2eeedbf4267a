//! Service addresses and node ports, handed out as kube-apiserver's service registry does: a
//! Service gets a ClusterIP of the service range 10.43.0.0/16 (unless headless or
//! ExternalName) and, when of type NodePort or LoadBalancer, a node port of 30000-32767 for
//! each of its ports. A requested address or port is honoured when it is in range and free;
//! otherwise the write is refused (422) with upstream's message.
//!
//! What is in use is followed from the store (list, then watch), as upstream's allocators are
//! repaired from it; what was handed out but is not stored yet is held for a while, so that two
//! writes at once never get the same address.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::registry::{ErrorType, FieldError};
use crate::store::{EventType, Store, StoreError};

/// The service range: 10.43.0.0/16, as k3s plans it.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);

/// The node port range kube-apiserver uses unless `--service-node-port-range` says otherwise.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Reads a node port range, `FIRST-LAST`, as kube-apiserver's `--service-node-port-range`.
pub fn parse_node_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let refuse = || format!("{text}: a node port range is FIRST-LAST, such as 30000-32767");
    let (first, last) = text.split_once('-').ok_or_else(refuse)?;
    let first: u16 = first.trim().parse().map_err(|_| refuse())?;
    let last: u16 = last.trim().parse().map_err(|_| refuse())?;
    (first > 0 && first <= last)
        .then_some(first..=last)
        .ok_or_else(refuse)
}

/// How long an address handed out stays held without the store showing it.
const PENDING: Duration = Duration::from_secs(60);

/// Who holds an address or a port: a Service (`namespace/name`), for good once stored.
#[derive(Debug, Clone)]
struct Holder {
    service: String,
    /// Until when a hold the store does not show yet lasts.
    pending_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Held {
    ips: HashMap<Ipv4Addr, Holder>,
    ports: HashMap<u16, Holder>,
    next_ip: u32,
    next_port: u16,
}

/// The addresses and node ports in use.
#[derive(Debug, Clone)]
pub struct ServiceAllocations {
    held: Arc<Mutex<Held>>,
    node_ports: std::ops::RangeInclusive<u16>,
}

impl Default for ServiceAllocations {
    fn default() -> Self {
        ServiceAllocations {
            held: Arc::default(),
            node_ports: NODE_PORTS,
        }
    }
}

/// The ClusterIPs and node ports a stored Service holds.
fn holdings(service: &Value) -> (Vec<Ipv4Addr>, Vec<u16>) {
    let spec = &service["spec"];
    let ips = spec["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&spec["clusterIP"]))
        .filter_map(|ip| ip.as_str()?.parse().ok())
        .collect();
    let ports = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| u16::try_from(p["nodePort"].as_u64()?).ok())
        .collect();
    (ips, ports)
}

fn in_range(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SERVICE_CIDR.1);
    u32::from(ip) & mask == u32::from(SERVICE_CIDR.0)
}

fn range_text() -> String {
    format!("{}/{}", SERVICE_CIDR.0, SERVICE_CIDR.1)
}

fn invalid(field: String, value: Value, detail: String) -> FieldError {
    FieldError {
        field,
        error_type: ErrorType::Invalid,
        value: Some(value),
        detail,
    }
}

impl Held {
    fn free_for(holder: Option<&Holder>, service: &str, now: Instant) -> bool {
        holder.is_none_or(|h| {
            h.service == service || h.pending_until.is_some_and(|until| until < now)
        })
    }

    /// Replaces what `service` holds by what the store shows; what was handed out to a write
    /// not stored yet stays held until it lapses.
    fn stored(&mut self, service: &str, value: Option<&Value>) {
        let now = Instant::now();
        let keep = |h: &Holder| h.service != service || h.pending_until.is_some_and(|u| u > now);
        self.ips.retain(|_, h| keep(h));
        self.ports.retain(|_, h| keep(h));
        let Some(value) = value else { return };
        let (ips, ports) = holdings(value);
        let holder = Holder {
            service: service.to_string(),
            pending_until: None,
        };
        for ip in ips {
            self.ips.insert(ip, holder.clone());
        }
        for port in ports {
            self.ports.insert(port, holder.clone());
        }
    }
}

impl ServiceAllocations {
    /// Follows the Services in `store` until the process ends; node ports come from
    /// `node_ports`. Returns once the first listing is in, so that nothing in use is handed
    /// out again after a restart.
    pub async fn follow(store: Store, node_ports: std::ops::RangeInclusive<u16>) -> Self {
        let allocations = ServiceAllocations {
            node_ports,
            ..ServiceAllocations::default()
        };
        let held = allocations.held.clone();
        let (listed, first) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut listed = Some(listed);
            loop {
                if let Err(e) = follow_once(&store, &held, &mut listed).await {
                    tracing::debug!(error = %e, "service allocations restart from a list");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let _ = first.await;
        allocations
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `service` (`namespace/name`, about to be written as `object`, over `old` when
    /// it exists) its ClusterIP and node ports: the ones it asks for when free, else those it
    /// had, else free ones. `Err` holds upstream's field errors. A dry run holds nothing.
    pub fn allocate(
        &self,
        service: &str,
        object: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<(), Vec<FieldError>> {
        let range = self.node_ports.clone();
        let mut held = self.lock();
        let now = Instant::now();
        let pending = Holder {
            service: service.to_string(),
            pending_until: (!dry_run).then_some(now + PENDING),
        };
        let spec_type = object["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        let mut errors = Vec::new();
        let mut ips_taken = Vec::new();
        let mut ports_taken = Vec::new();
        if spec_type != "ExternalName" {
            let asked = object["spec"]["clusterIP"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let kept = old
                .and_then(|o| o["spec"]["clusterIP"].as_str())
                .filter(|ip| !ip.is_empty())
                .map(str::to_string);
            let wanted = if asked.is_empty() { kept } else { Some(asked) };
            if let Some(text) = &wanted {
                object["spec"]["clusterIP"] = json!(text);
            }
            match wanted.as_deref() {
                Some("None") => {}
                Some(text) => {
                    let field = "spec.clusterIPs[0]".to_string();
                    match text.parse::<Ipv4Addr>() {
                        Ok(ip) if !in_range(ip) => errors.push(invalid(
                            field,
                            json!(text),
                            format!(
                                "failed to allocate IP {text}: the provided IP ({text}) is not in the valid range. The range of valid IPs is {}",
                                range_text()
                            ),
                        )),
                        Ok(ip) if !Held::free_for(held.ips.get(&ip), service, now) => {
                            errors.push(invalid(
                                field,
                                json!(text),
                                format!(
                                    "failed to allocate IP {text}: provided IP is already allocated"
                                ),
                            ))
                        }
                        Ok(ip) => ips_taken.push(ip),
                        // Validation has refused what is not an address.
                        Err(_) => {}
                    }
                }
                None => {
                    let size = 1u32 << (32 - SERVICE_CIDR.1);
                    // The range's first address names it; the second is the `kubernetes`
                    // Service's, as upstream keeps it.
                    let start = held.next_ip.max(2);
                    let found = (0..size)
                        .map(|i| 2 + (start - 2 + i) % (size - 3))
                        .map(|n| Ipv4Addr::from(u32::from(SERVICE_CIDR.0) + n))
                        .find(|ip| Held::free_for(held.ips.get(ip), service, now));
                    match found {
                        Some(ip) => {
                            held.next_ip = u32::from(ip) - u32::from(SERVICE_CIDR.0) + 1;
                            object["spec"]["clusterIP"] = json!(ip.to_string());
                            ips_taken.push(ip);
                        }
                        None => errors.push(FieldError {
                            field: "spec.clusterIPs".into(),
                            error_type: ErrorType::Invalid,
                            value: None,
                            detail: format!(
                                "failed to allocate a serviceIP: range is full ({})",
                                range_text()
                            ),
                        }),
                    }
                }
            }
            if let Some(ip) = object["spec"]["clusterIP"].as_str().map(str::to_string)
                && !ip.is_empty()
            {
                object["spec"]["clusterIP"] = json!(ip);
                object["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        let wants_node_ports = spec_type == "NodePort"
            || (spec_type == "LoadBalancer"
                && object["spec"]["allocateLoadBalancerNodePorts"].as_bool() != Some(false));
        if wants_node_ports {
            let old_ports: Vec<Value> = old
                .and_then(|o| o["spec"]["ports"].as_array().cloned())
                .unwrap_or_default();
            let ports = object["spec"]["ports"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut kept_ports = Vec::with_capacity(ports.len());
            for (i, mut port) in ports.into_iter().enumerate() {
                let field = format!("spec.ports[{i}].nodePort");
                let asked = port["nodePort"].as_i64().filter(|p| *p != 0);
                let previous = old_ports
                    .iter()
                    .find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"])
                    .and_then(|o| o["nodePort"].as_i64())
                    .filter(|p| *p != 0);
                match asked.or(previous) {
                    Some(n) => match u16::try_from(n).ok().filter(|p| range.contains(p)) {
                        None => errors.push(invalid(
                            field,
                            json!(n),
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                range.start(),
                                range.end()
                            ),
                        )),
                        Some(p)
                            if !Held::free_for(held.ports.get(&p), service, now)
                                || ports_taken.contains(&p) =>
                        {
                            errors.push(invalid(
                                field,
                                json!(n),
                                "provided port is already allocated".into(),
                            ))
                        }
                        Some(p) => {
                            port["nodePort"] = json!(p);
                            ports_taken.push(p);
                        }
                    },
                    None => {
                        let count = u32::from(range.end() - range.start()) + 1;
                        let start = u32::from(held.next_port);
                        let found = (0..count)
                            .map(|i| range.start() + ((start + i) % count) as u16)
                            .find(|p| {
                                Held::free_for(held.ports.get(p), service, now)
                                    && !ports_taken.contains(p)
                            });
                        match found {
                            Some(p) => {
                                held.next_port = p - range.start() + 1;
                                port["nodePort"] = json!(p);
                                ports_taken.push(p);
                            }
                            None => errors.push(FieldError {
                                field,
                                error_type: ErrorType::Invalid,
                                value: None,
                                detail: "failed to allocate a nodePort: range is full".into(),
                            }),
                        }
                    }
                }
                kept_ports.push(port);
            }
            object["spec"]["ports"] = Value::Array(kept_ports);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if !dry_run {
            for ip in ips_taken {
                held.ips.insert(ip, pending.clone());
            }
            for port in ports_taken {
                held.ports.insert(port, pending.clone());
            }
        }
        Ok(())
    }
}

/// Lists the Services, then applies their events, until the watch fails. `listed` is told
/// when the first listing is in.
async fn follow_once(
    store: &Store,
    held: &Mutex<Held>,
    listed: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), StoreError> {
    let page = store.list("services", None, None, None).await?;
    {
        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        held.ips
            .retain(|_, h| h.pending_until.is_some_and(|u| u > now));
        held.ports
            .retain(|_, h| h.pending_until.is_some_and(|u| u > now));
        for item in &page.items {
            let key = format!(
                "{}/{}",
                item.value["metadata"]["namespace"].as_str().unwrap_or(""),
                item.value["metadata"]["name"].as_str().unwrap_or("")
            );
            held.stored(&key, Some(&item.value));
        }
    }
    if let Some(listed) = listed.take() {
        let _ = listed.send(());
    }
    let mut watch = store.watch(Some("services".into()), page.revision).await?;
    while let Some(event) = watch.next().await {
        let event = event?;
        let key = format!("{}/{}", event.key.namespace, event.key.name);
        let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
        match event.event_type {
            EventType::Deleted => held.stored(&key, None),
            _ => held.stored(&key, Some(&event.object)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn services_get_free_addresses_and_node_ports_and_keep_them() {
        let allocations = ServiceAllocations::default();
        let mut a =
            service(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        allocations
            .allocate("default/a", &mut a, None, false)
            .unwrap();
        assert_eq!(a["spec"]["clusterIP"], "10.43.0.2");
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.43.0.2"]));
        assert_eq!(a["spec"]["ports"][0]["nodePort"], 30000);
        let mut b = service(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        allocations
            .allocate("default/b", &mut b, None, false)
            .unwrap();
        assert_eq!(b["spec"]["clusterIP"], "10.43.0.3");
        assert!(b["spec"]["ports"][0].get("nodePort").is_none());
        // An update without the addresses keeps the ones it had.
        let mut again =
            service(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        allocations
            .allocate("default/a", &mut again, Some(&a), false)
            .unwrap();
        assert_eq!(again["spec"]["clusterIP"], "10.43.0.2");
        assert_eq!(again["spec"]["ports"][0]["nodePort"], 30000);
        // Headless and ExternalName services get no address.
        let mut headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        allocations
            .allocate("default/h", &mut headless, None, false)
            .unwrap();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        allocations
            .allocate("default/e", &mut external, None, false)
            .unwrap();
        assert!(external["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn taken_or_out_of_range_requests_are_refused_as_upstream_words_them() {
        let allocations = ServiceAllocations::default();
        let mut a = service(json!({"type": "NodePort", "clusterIP": "10.43.9.9",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}));
        allocations
            .allocate("default/a", &mut a, None, false)
            .unwrap();
        let mut b = service(json!({"type": "NodePort", "clusterIP": "10.43.9.9",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}));
        let errors = allocations
            .allocate("default/b", &mut b, None, false)
            .unwrap_err();
        let details: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.detail.as_str()))
            .collect();
        assert_eq!(
            details,
            [
                (
                    "spec.clusterIPs[0]",
                    "failed to allocate IP 10.43.9.9: provided IP is already allocated"
                ),
                (
                    "spec.ports[0].nodePort",
                    "provided port is already allocated"
                ),
            ]
        );
        let mut c = service(json!({"type": "NodePort", "clusterIP": "10.96.0.1",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 80}]}));
        let errors = allocations
            .allocate("default/c", &mut c, None, false)
            .unwrap_err();
        assert_eq!(
            errors[0].detail,
            "failed to allocate IP 10.96.0.1: the provided IP (10.96.0.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
        );
        assert_eq!(
            errors[1].detail,
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        // Once the store shows the first service gone, what it held is free again.
        allocations.lock().stored("default/a", Some(&a));
        allocations.lock().stored("default/a", None);
        allocations
            .allocate("default/b", &mut b, None, false)
            .unwrap();
    }
}
