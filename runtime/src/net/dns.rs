//! Name resolution inside the sandbox, as a pod's resolver and the cluster DNS answer it:
//!
//! - `svc`, `svc.ns`, `svc.ns.svc` and `svc.ns.svc.cluster.local` through the pod's search
//!   path (`<ns>.svc.cluster.local svc.cluster.local cluster.local`, with `ndots:5`);
//! - a Service's ClusterIP; a headless Service's ready endpoints, every one; an endpoint
//!   with a hostname (a StatefulSet pod) as `<hostname>.<svc>.<ns>.svc.cluster.local`;
//! - an ExternalName Service's target, resolved in turn;
//! - other names through the host's resolver.
//!
//! The pod's `dnsPolicy` decides which: `ClusterFirst` (the default) and
//! `ClusterFirstWithHostNet` as above, `Default` the host's resolver only, `None` the
//! `dnsConfig` alone; `dnsConfig.searches` and the `ndots` option add to or override the path.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Pod;

use super::services::ServiceTable;

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// How deep ExternalName targets are followed.
const MAX_ALIASES: usize = 8;

/// How a pod resolves names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDns {
    /// Whether cluster names are answered.
    cluster: bool,
    searches: Vec<String>,
    ndots: usize,
}

impl Default for PodDns {
    fn default() -> Self {
        PodDns::of_namespace("default")
    }
}

impl PodDns {
    fn of_namespace(namespace: &str) -> PodDns {
        PodDns {
            cluster: true,
            searches: vec![
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            ndots: 5,
        }
    }

    /// The resolver `pod`'s dnsPolicy and dnsConfig describe.
    pub fn of(pod: &Pod) -> PodDns {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref();
        let policy = spec
            .and_then(|s| s.dns_policy.as_deref())
            .unwrap_or("ClusterFirst");
        let mut dns = match policy {
            "Default" => PodDns {
                cluster: false,
                searches: Vec::new(),
                ndots: 1,
            },
            "None" => PodDns {
                cluster: true,
                searches: Vec::new(),
                ndots: 1,
            },
            _ => PodDns::of_namespace(namespace),
        };
        if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
            for search in config.searches.iter().flatten() {
                let search = search.trim_end_matches('.').to_lowercase();
                if !search.is_empty() && !dns.searches.contains(&search) {
                    dns.searches.push(search);
                }
            }
            for option in config.options.iter().flatten() {
                if option.name.as_deref() == Some("ndots")
                    && let Some(n) = option.value.as_deref().and_then(|v| v.parse().ok())
                {
                    dns.ndots = n;
                }
            }
        }
        dns
    }

    /// The names to try for `name`, in order, as a stub resolver tries them.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        let name = name.to_lowercase();
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.searches.iter().map(|s| format!("{name}.{s}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.clone()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.clone())).collect()
        }
    }

    /// The addresses of `name`: cluster names from `table`, others from the host.
    pub async fn resolve(&self, table: &ServiceTable, name: &str) -> Option<Vec<Ipv4Addr>> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return match ip {
                IpAddr::V4(ip) => Some(vec![ip]),
                IpAddr::V6(_) => None,
            };
        }
        if name.eq_ignore_ascii_case("localhost") {
            return Some(vec![Ipv4Addr::LOCALHOST]);
        }
        let mut names = self.candidates(name);
        let mut aliases = 0;
        while !names.is_empty() {
            let candidate = names.remove(0);
            let in_cluster =
                candidate == CLUSTER_DOMAIN || candidate.ends_with(&format!(".{CLUSTER_DOMAIN}"));
            if in_cluster {
                if !self.cluster {
                    continue;
                }
                match table.lookup(&candidate) {
                    Some(Answer::Addresses(ips)) if !ips.is_empty() => return Some(ips),
                    Some(Answer::Alias(target)) if aliases < MAX_ALIASES => {
                        aliases += 1;
                        names = vec![target.trim_end_matches('.').to_lowercase()];
                    }
                    _ => {}
                }
                continue;
            }
            if let Some(ips) = host_lookup(&candidate).await {
                return Some(ips);
            }
        }
        None
    }
}

/// What the cluster DNS answers for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<Ipv4Addr>),
    /// A CNAME: an ExternalName Service's target.
    Alias(String),
}

/// The host resolver's IPv4 addresses for `name`.
async fn host_lookup(name: &str) -> Option<Vec<Ipv4Addr>> {
    let found = tokio::net::lookup_host((name, 0)).await.ok()?;
    let ips: Vec<Ipv4Addr> = found
        .filter_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    (!ips.is_empty()).then_some(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "shop"}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn short_names_go_through_the_search_path_first() {
        let dns = PodDns::of(&pod(serde_json::json!({"containers": []})));
        assert_eq!(
            dns.candidates("backend"),
            [
                "backend.shop.svc.cluster.local",
                "backend.svc.cluster.local",
                "backend.cluster.local",
                "backend"
            ]
        );
        assert_eq!(
            dns.candidates("Backend.Other.svc.")[..],
            ["backend.other.svc"]
        );
        // A name with ndots dots is tried as it is first.
        assert_eq!(dns.candidates("a.b.c.d.e.f")[0], "a.b.c.d.e.f");
        assert_eq!(
            dns.candidates("a.b.c.d.e")[0],
            "a.b.c.d.e.shop.svc.cluster.local"
        );
    }

    #[test]
    fn dns_policy_and_config_shape_the_resolver() {
        let host_only = PodDns::of(&pod(
            serde_json::json!({"containers": [], "dnsPolicy": "Default"}),
        ));
        assert_eq!(host_only.candidates("backend"), ["backend"]);
        assert!(!host_only.cluster);
        let custom = PodDns::of(&pod(
            serde_json::json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"searches": ["corp.example."], "options": [{"name": "ndots", "value": "2"}]}}),
        ));
        assert_eq!(custom.candidates("db"), ["db.corp.example", "db"]);
        assert_eq!(custom.candidates("db.a.b")[0], "db.a.b");
    }
}
