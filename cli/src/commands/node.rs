//! `skiff node`: a node agent joining a server, as a k3s agent joins. On first start it checks
//! the server's CA against the join token, presents the token's secret and receives its own
//! credential (`system:node:NAME`), which it keeps in its data directory for later starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use skiff_control::join::{Token, ca_hash};

/// Flags of `skiff node`; each has a `SKIFF_*` environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The API server's URL, e.g. https://192.168.1.10:6443.
    #[arg(long, env = "SKIFF_SERVER")]
    server: String,
    /// The join token: the content of the server's DATA_DIR/node-token (needed on first start).
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// The node's name [default: the host name].
    #[arg(long, env = "SKIFF_NODE_NAME")]
    name: Option<String>,
    /// Where the node keeps its credential, images and pod data [default: ~/.local/share/skiff].
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The address the node reports and serves HTTP containers on.
    #[arg(
        long,
        visible_alias = "node-ip",
        env = "SKIFF_NODE_ADDRESS",
        default_value = "127.0.0.1"
    )]
    address: String,
    /// The port the node serves the API server on (container logs), as the kubelet's 10250;
    /// 0 picks a free port.
    #[arg(long, env = "SKIFF_KUBELET_PORT", default_value_t = 10250)]
    kubelet_port: u16,
    #[command(flatten)]
    agent: AgentFlags,
}

async fn client_from(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).context("reading the node's kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the node's kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

/// The client certificate a node's kubeconfig presents, which it presents to its peers too.
fn client_certificate(kubeconfig: &str) -> Option<skiff_runtime::agent::ClientCertificate> {
    use base64::Engine;
    let config: serde_yaml::Value = serde_yaml::from_str(kubeconfig).ok()?;
    let user = &config["users"][0]["user"];
    let decode = |key: &str| {
        let data = base64::engine::general_purpose::STANDARD
            .decode(user[key].as_str()?)
            .ok()?;
        String::from_utf8(data).ok()
    };
    Some(skiff_runtime::agent::ClientCertificate {
        cert_pem: decode("client-certificate-data")?,
        key_pem: decode("client-key-data")?,
    })
}

/// A kubeconfig trusting `ca_pem` and presenting `token` as a bearer token.
fn bootstrap_kubeconfig(server: &str, ca_pem: Option<&str>, token: &str) -> String {
    use base64::Engine;
    let mut cluster = serde_json::json!({"server": server});
    match ca_pem {
        Some(ca) => {
            cluster["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        None => cluster["insecure-skip-tls-verify"] = true.into(),
    }
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": cluster}],
        "users": [{"name": "join", "user": {"token": token}}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "join"}}],
        "current-context": "skiff",
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Joins the server: checks its CA against the token, then trades the secret for a credential.
/// Returns the node's kubeconfig.
async fn join(server: &str, token: &Token, name: &str) -> anyhow::Result<String> {
    // The CA is public; it is trusted only once it matches the hash the token names.
    let anonymous = client_from(&bootstrap_kubeconfig(server, None, "")).await?;
    let ca = anonymous
        .request_text(http::Request::get("/skiff/v1/ca").body(Vec::new())?)
        .await
        .with_context(|| format!("fetching the cluster CA from {server}"))?;
    if ca_hash(&ca) != token.ca_hash {
        bail!("the server at {server} presents a CA that does not match the join token");
    }
    let trusted = client_from(&bootstrap_kubeconfig(server, Some(&ca), &token.secret)).await?;
    let body = serde_json::to_vec(&serde_json::json!({"name": name}))?;
    let request = http::Request::post("/skiff/v1/join")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)?;
    let issued: serde_json::Value = match trusted.request(request).await {
        Ok(issued) => issued,
        Err(kube::Error::Api(e)) if e.code == 401 => {
            bail!("joining {server} as node {name}: the server refused the token's secret")
        }
        Err(e) => return Err(e).with_context(|| format!("joining {server} as node {name}")),
    };
    let field = |key: &str| {
        issued[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the join answer has no {key}"))
    };
    let credential = skiff_control::pki::CertifiedKey {
        cert_pem: field("certificate")?,
        key_pem: field("key")?,
    };
    Ok(skiff_control::server::kubeconfig(
        server,
        &field("ca")?,
        &credential,
    ))
}

fn credential_path(node_dir: &Path, name: &str) -> PathBuf {
    node_dir.join(format!("{name}.kubeconfig"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let ip: std::net::IpAddr = args
        .address
        .parse()
        .with_context(|| format!("--address {}: not an IP address", args.address))?;
    let data_dir = super::server::data_dir(args.data_dir)?;
    let node_dir = super::server::node_dir(&data_dir);
    skiff_control::pki::private_dir(&node_dir)
        .with_context(|| format!("creating {}", node_dir.display()))?;
    let name = args.name.unwrap_or_else(skiff_runtime::agent::hostname);
    let server = args.server.trim_end_matches('/').to_string();
    let path = credential_path(&node_dir, &name);
    let kubeconfig = match std::fs::read_to_string(&path) {
        Ok(kubeconfig) => kubeconfig,
        Err(_) => {
            let Some(token) = args.token.as_deref() else {
                bail!(
                    "node {name} has not joined yet: pass --token (the server's DATA_DIR/node-token)"
                );
            };
            let token = Token::parse(token)
                .context("--token: not a join token (expected K10<hash>::node:<secret>)")?;
            let kubeconfig = join(&server, &token, &name).await?;
            skiff_control::pki::write_private(&path, &kubeconfig)
                .with_context(|| format!("writing {}", path.display()))?;
            kubeconfig
        }
    };
    let client = client_from(&kubeconfig).await?;
    tracing::info!(node = %name, server = %server, "node agent starting");
    let mut config = args.agent.config(name, node_dir, args.address);
    config.endpoint = Some(std::net::SocketAddr::new(ip, args.kubelet_port));
    config.client_certificate = client_certificate(&kubeconfig);
    tokio::select! {
        result = skiff_runtime::agent::run(client, config) => result,
        _ = super::server::shutdown_signal() => Ok(()),
    }
}

/// How a node agent runs, on `skiff node` and on `skiff server` alike.
#[derive(Debug, clap::Args)]
pub struct AgentFlags {
    /// A registry (HOST:PORT) to pull from over plain HTTP instead of HTTPS (repeatable).
    #[arg(
        long = "insecure-registry",
        env = "SKIFF_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    insecure_registry: Vec<String>,
    /// Rotate a container's log once it reaches this size (the kubelet's containerLogMaxSize).
    #[arg(long, env = "SKIFF_CONTAINER_LOG_MAX_SIZE", default_value = "10Mi", value_parser = log_size)]
    container_log_max_size: u64,
    /// Log files kept per container run, the current one included (containerLogMaxFiles).
    #[arg(long, env = "SKIFF_CONTAINER_LOG_MAX_FILES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..))]
    container_log_max_files: u64,
    /// The port the node serves Ingresses over HTTP on, at its address (0: none; ports under
    /// 1024 need root, so 8080 then, say).
    #[arg(long, env = "SKIFF_INGRESS_HTTP_PORT", default_value_t = 80)]
    ingress_http_port: u16,
    /// The port the node serves Ingresses over HTTPS on (0: none; 8443 when not root, say).
    #[arg(long, env = "SKIFF_INGRESS_HTTPS_PORT", default_value_t = 443)]
    ingress_https_port: u16,
    /// Pods the node runs at most: its `pods` capacity (the kubelet's --max-pods).
    #[arg(long, env = "SKIFF_MAX_PODS", default_value_t = 1000)]
    max_pods: u32,
    /// Events the node writes a second at most, as the kubelet's eventRecordQPS; 0 for no limit.
    #[arg(long, env = "SKIFF_EVENT_QPS", default_value_t = 50.0, value_parser = event_qps)]
    event_qps: f64,
    /// Events the node may write at once before --event-qps paces it (the kubelet's eventBurst).
    #[arg(long, env = "SKIFF_EVENT_BURST", default_value_t = 100)]
    event_burst: u32,
    /// The memory the node offers its pods (`512Mi`, `2Gi`): its memory capacity, which
    /// memory.available is measured against. The host's memory by default.
    #[arg(long, env = "SKIFF_MEMORY", value_parser = memory_size)]
    memory: Option<u64>,
    /// Hard eviction thresholds, as the kubelet's --eviction-hard: SIGNAL<QUANTITY or
    /// SIGNAL<PERCENT, comma-separated, for memory.available, nodefs.available,
    /// nodefs.inodesFree, imagefs.available and imagefs.inodesFree; "" for none.
    #[arg(
        long,
        env = "SKIFF_EVICTION_HARD",
        default_value = skiff_runtime::eviction::DEFAULT_HARD,
        value_parser = thresholds,
    )]
    eviction_hard: skiff_runtime::eviction::Thresholds,
    /// How long a pressure condition stays True after its threshold was last met.
    #[arg(
        long,
        env = "SKIFF_EVICTION_PRESSURE_TRANSITION_PERIOD",
        default_value = "5m",
        value_parser = super::server::parse_duration,
    )]
    eviction_pressure_transition_period: std::time::Duration,
}

impl AgentFlags {
    /// The agent of node `name`, keeping its data in `data_dir` and reporting `address`.
    pub fn config(
        self,
        name: String,
        data_dir: std::path::PathBuf,
        address: String,
    ) -> skiff_runtime::agent::AgentConfig {
        skiff_runtime::agent::AgentConfig {
            name,
            data_dir,
            address,
            max_pods: self.max_pods,
            insecure_registries: self.insecure_registry,
            log_rotation: skiff_runtime::logs::Rotation {
                max_size: self.container_log_max_size,
                max_files: self.container_log_max_files as usize,
            },
            live_logs: skiff_runtime::logs::LiveLogs::default(),
            usage: skiff_runtime::usage::Usage::default(),
            event_rate: skiff_runtime::events::EventRate {
                qps: self.event_qps,
                burst: self.event_burst,
            },
            endpoint: None,
            eviction: skiff_runtime::eviction::EvictionConfig {
                hard: self.eviction_hard,
                pressure_transition: self.eviction_pressure_transition_period,
                memory: self.memory,
            },
            ingress: skiff_runtime::net::ingress::IngressPorts {
                http: self.ingress_http_port,
                https: self.ingress_https_port,
            },
            addresses: skiff_runtime::net::Addresses::default(),
            identity: None,
            client_certificate: None,
        }
    }
}

/// A memory size: a byte count or a quantity (`512Mi`, `2Gi`).
fn memory_size(value: &str) -> Result<u64, String> {
    skiff_runtime::pods::quantity_bytes(value)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{value:?} is not a memory size such as 512Mi"))
}

/// Eviction thresholds, as `memory.available<100Mi,nodefs.available<10%`.
fn thresholds(value: &str) -> Result<skiff_runtime::eviction::Thresholds, String> {
    value.parse()
}

/// An event rate: a number of events a second, 0 or more.
fn event_qps(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|q| q.is_finite() && *q >= 0.0)
        .ok_or_else(|| format!("{value:?} is not a rate (events a second, 0 for no limit)"))
}

/// A log size: a byte count or a quantity (`10Mi`, `512Ki`).
fn log_size(value: &str) -> Result<u64, String> {
    skiff_runtime::pods::quantity_bytes(value)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{value:?} is not a size such as 10Mi"))
}
