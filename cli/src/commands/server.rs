//! `skiff server`: the control plane in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use skiff_control::server::{ServerConfig, run as serve};

/// Flags of `skiff server`; each has a `SKIFF_*` environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the store, certificates and admin kubeconfig live [default: ~/.local/share/skiff].
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve the HTTPS API on; port 0 picks a free port.
    #[arg(long, env = "SKIFF_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Extra DNS name or IP address for the serving certificate (repeatable).
    #[arg(long = "tls-san", env = "SKIFF_TLS_SAN", value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Revisions of change history kept for watches; older resourceVersions get 410 Expired.
    #[arg(long, env = "SKIFF_HISTORY_REVISIONS", default_value_t = 100_000)]
    history_revisions: i64,
    /// Acknowledge writes before they reach the disk (faster; a power loss may lose the last writes).
    #[arg(long, env = "SKIFF_NO_FSYNC", value_parser = BoolishValueParser::new())]
    no_fsync: bool,
    /// Do not run this controller (repeatable): namespace, garbage-collector, node-ipam,
    /// scheduler, replicaset, deployment, job, cronjob, statefulset, daemonset, node-lifecycle,
    /// disruption, endpointslice.
    #[arg(long, env = "SKIFF_DISABLE", value_delimiter = ',')]
    disable: Vec<String>,
    /// The ports NodePort and LoadBalancer Services get theirs from (kube-apiserver's flag).
    #[arg(long, env = "SKIFF_SERVICE_NODE_PORT_RANGE", default_value = "30000-32767", value_parser = skiff_control::api::services::parse_node_port_range)]
    service_node_port_range: std::ops::RangeInclusive<u16>,
    /// The cluster's pod addresses: a /16 of 10.0.0.0/8 (pod 10.B.c.d is served on the host's
    /// 127.B.c.d, so two clusters on one host need two ranges).
    #[arg(long, env = "SKIFF_CLUSTER_CIDR", default_value = "10.42.0.0/16", value_parser = skiff_control::controllers::node_ipam::parse_cluster_cidr)]
    cluster_cidr: std::net::Ipv4Addr,
    /// The size of each node's pod address range within the cluster's, in prefix bits
    /// (kube-controller-manager's flag): 24 gives 256 nodes of 253 pods each, 18 gives 4 nodes
    /// of 16,381.
    #[arg(long, env = "SKIFF_NODE_CIDR_MASK_SIZE", default_value_t = 24, value_parser = clap::value_parser!(u8).range(16..=30))]
    node_cidr_mask_size: u8,
    /// How long a node may go without renewing its Lease before it is marked Unknown and
    /// tainted unreachable.
    #[arg(long, env = "SKIFF_NODE_MONITOR_GRACE_PERIOD", default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// The tolerationSeconds new pods get for the not-ready NoExecute taint.
    #[arg(
        long,
        env = "SKIFF_DEFAULT_NOT_READY_TOLERATION_SECONDS",
        default_value_t = 300
    )]
    default_not_ready_toleration_seconds: i64,
    /// The tolerationSeconds new pods get for the unreachable NoExecute taint.
    #[arg(
        long,
        env = "SKIFF_DEFAULT_UNREACHABLE_TOLERATION_SECONDS",
        default_value_t = 300
    )]
    default_unreachable_toleration_seconds: i64,
    /// Do not run a node in this process (pods then need `skiff node` agents).
    #[arg(long, env = "SKIFF_DISABLE_AGENT", value_parser = BoolishValueParser::new())]
    disable_agent: bool,
    /// The name of the node running in this process [default: the host name].
    #[arg(long, env = "SKIFF_NODE_NAME")]
    node_name: Option<String>,
    #[command(flatten)]
    agent: super::node::AgentFlags,
}

/// A duration as Kubernetes flags spell it: `40s`, `5m`, `1h`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "" | "s" => return Ok(std::time::Duration::from_secs(n)),
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// Where a node keeps its images and pod logs under a data directory.
pub fn node_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("node")
}

/// Serves the logs the embedded node writes.
struct NodeLogs {
    pods_dir: PathBuf,
    live: skiff_runtime::logs::LiveLogs,
}

impl skiff_control::api::logs::PodLogs for NodeLogs {
    fn open(
        &self,
        run: &skiff_control::api::logs::ContainerRun,
        options: &skiff_control::api::logs::LogOptions,
        follow: bool,
    ) -> std::io::Result<skiff_control::api::logs::LogStream> {
        let dir = skiff_runtime::pods::pod_dir(&self.pods_dir, &run.namespace, &run.pod, &run.uid)
            .join(&run.container);
        skiff_runtime::logs::open(
            &skiff_runtime::logs::run_log(&dir, run.run),
            &skiff_runtime::logs::LogOptions {
                timestamps: options.timestamps,
                tail_lines: options.tail_lines,
                since: options.since,
                limit_bytes: options.limit_bytes,
            },
            follow.then_some(&self.live),
        )
    }
}

/// Serves the usage of the embedded node.
struct NodeSummary {
    name: String,
    usage: skiff_runtime::usage::Usage,
}

impl skiff_control::api::metrics::NodeSummary for NodeSummary {
    fn summary(&self) -> serde_json::Value {
        serde_json::to_value(self.usage.summary(&self.name)).unwrap_or_default()
    }
}

/// Reaches the embedded node's pods' ports.
struct NodePorts {
    addresses: skiff_runtime::net::Addresses,
}

impl skiff_control::api::portforward::PodPorts for NodePorts {
    fn connect(
        &self,
        uid: &str,
        port: u16,
    ) -> futures::future::BoxFuture<
        'static,
        std::io::Result<Box<dyn skiff_control::api::portforward::Connection>>,
    > {
        let (addresses, uid) = (self.addresses.clone(), uid.to_string());
        Box::pin(async move {
            let stream = skiff_runtime::net::proxy::to_pod(&addresses, &uid, port).await?;
            Ok(Box::new(stream) as Box<dyn skiff_control::api::portforward::Connection>)
        })
    }
}

/// The data directory: the flag, else `~/.local/share/skiff`.
pub fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/skiff"))
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = data_dir(args.data_dir)?;
    let address = if args.listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        args.listen.ip().to_string()
    };
    let name = args
        .node_name
        .unwrap_or_else(skiff_runtime::agent::hostname);
    let agent =
        (!args.disable_agent).then(|| args.agent.config(name, node_dir(&data_dir), address));
    let config = ServerConfig {
        data_dir,
        listen: args.listen,
        tls_san: args.tls_san,
        history: args.history_revisions,
        durable: !args.no_fsync,
        disable: args.disable,
        lifecycle: skiff_control::controllers::Lifecycle {
            grace_period: args.node_monitor_grace_period,
            not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
        node_port_range: args.service_node_port_range,
        pod_ranges: skiff_control::controllers::PodRanges {
            cluster_cidr: args.cluster_cidr,
            node_cidr_mask_size: args.node_cidr_mask_size,
        },
        local_node: agent.as_ref().map(|a| skiff_control::api::LocalNode {
            name: a.name.clone(),
            logs: std::sync::Arc::new(NodeLogs {
                pods_dir: a.pods_dir(),
                live: a.live_logs.clone(),
            }),
            summary: std::sync::Arc::new(NodeSummary {
                name: a.name.clone(),
                usage: a.usage.clone(),
            }),
            ports: std::sync::Arc::new(NodePorts {
                addresses: a.addresses.clone(),
            }),
        }),
    };
    for name in &config.disable {
        if !skiff_control::controllers::NAMES.contains(&name.as_str()) {
            anyhow::bail!(
                "--disable {name}: no such controller (known: {})",
                skiff_control::controllers::NAMES.join(", ")
            );
        }
    }
    let start_agent = agent.map(|agent| -> skiff_control::server::StartWithClient {
        Box::new(move |client, issuer| {
            let mut agent = agent;
            // The embedded node serves an endpoint too, for the tunnel from other nodes: its
            // certificates come from the server's own CAs.
            match issuer(&agent.name, std::slice::from_ref(&agent.address)) {
                Ok(issued) => {
                    agent.identity = Some(skiff_runtime::endpoint::Identity {
                        ca_pem: issued.ca_pem,
                        cert_pem: issued.serving.cert_pem,
                        key_pem: issued.serving.key_pem,
                        peers_ca_pem: Some(issued.node_serving_ca_pem),
                    });
                    agent.client_certificate = Some(skiff_runtime::agent::ClientCertificate {
                        cert_pem: issued.client.cert_pem,
                        key_pem: issued.client.key_pem,
                    });
                    agent.endpoint = agent.address.parse().ok().map(|ip| SocketAddr::new(ip, 0));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no certificates for the node: no tunnel to it")
                }
            }
            tokio::spawn(async move {
                if let Err(e) = skiff_runtime::agent::run(client, agent).await {
                    tracing::error!(error = %format!("{e:#}"), "the node agent stopped");
                }
            });
        })
    });
    serve(config, start_agent, shutdown_signal()).await?;
    Ok(())
}

pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
