//! `skiff server`: opens the store, makes or loads the cluster CA, serves the API over HTTPS with
//! client-certificate authentication, writes the admin kubeconfig and runs until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::api::{self, ApiState};
use crate::auth::{MASTERS, UserInfo};
use crate::pki::{Authority, CertifiedKey, PkiError};
use crate::registry;
use crate::store::{Key, SqliteBackend, Store, StoreError, Write};

mod coalesce;

/// How `skiff server` is configured.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the database, certificates and kubeconfig live.
    pub data_dir: PathBuf,
    /// The address to serve HTTPS on; port 0 picks a free one (written to the kubeconfig).
    pub listen: SocketAddr,
    /// Extra names and addresses for the serving certificate.
    pub tls_san: Vec<String>,
    /// Revisions of history kept for watches.
    pub history: i64,
    /// fsync every commit (synchronous=FULL).
    pub durable: bool,
    /// Controllers not to run (see [`crate::controllers::NAMES`]).
    pub disable: Vec<String>,
    /// The node running in this process, whose pod logs the API serves from its own files.
    pub local_node: Option<crate::api::LocalNode>,
    /// How long pods tolerate a not-ready or unreachable node, and how soon a silent node is.
    pub lifecycle: crate::controllers::Lifecycle,
    /// The cluster's pod range and the size of each node's (kube-controller-manager's
    /// `--cluster-cidr` and `--node-cidr-mask-size`).
    pub pod_ranges: crate::controllers::PodRanges,
    /// The node ports Services get (kube-apiserver's `--service-node-port-range`).
    pub node_port_range: std::ops::RangeInclusive<u16>,
}

/// Starts work that needs the API (the embedded node agent), given an in-process client and
/// what issues the node its certificates.
pub type StartWithClient = Box<dyn FnOnce(kube::Client, NodeIssuer) + Send>;

/// Issues the embedded node what a joined node gets over the network: a client certificate
/// (`system:node:NAME` in `system:nodes`) and a serving certificate for its name and addresses.
pub type NodeIssuer = Arc<dyn Fn(&str, &[String]) -> Result<IssuedNode, PkiError> + Send + Sync>;

/// A node's certificates, with the CAs to check its peers by.
#[derive(Debug, Clone)]
pub struct IssuedNode {
    /// The cluster CA, which clients' certificates chain to.
    pub ca_pem: String,
    /// The CA nodes' serving certificates chain to.
    pub node_serving_ca_pem: String,
    pub client: CertifiedKey,
    pub serving: CertifiedKey,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("opening the store in {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("seeding namespace {name}: {source}")]
    Seed { name: String, source: StoreError },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The namespaces every cluster starts with.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn seed(store: &Store) -> Result<(), ServerError> {
    let namespaces = registry::find("", "v1", "namespaces").expect("namespaces are served");
    for name in INITIAL_NAMESPACES {
        let ns = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        });
        seed_object(store, namespaces, name, ns).await?;
    }
    // The default StorageClass, whose claims the nodes provision from their own disks (the
    // provisioner's name is the one skiff-runtime's storage module uses).
    let classes = registry::find("storage.k8s.io", "v1", "storageclasses")
        .expect("storage classes are served");
    let local_path = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "local-path",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "skiff.dev/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    seed_object(store, classes, "local-path", local_path).await?;
    // The built-in Ingress controller's class, the default one (the nodes serve it).
    let ingress_classes = registry::find("networking.k8s.io", "v1", "ingressclasses")
        .expect("ingress classes are served");
    let skiff = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": "skiff",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
        },
        "spec": {"controller": INGRESS_CONTROLLER},
    });
    seed_object(store, ingress_classes, "skiff", skiff).await
}

/// The controller name of the built-in Ingress controller's IngressClass.
pub const INGRESS_CONTROLLER: &str = "skiff.dev/ingress";

/// Creates a cluster-scoped object at first start; an existing one is left as it is.
async fn seed_object(
    store: &Store,
    resource: &registry::Resource,
    name: &str,
    mut object: serde_json::Value,
) -> Result<(), ServerError> {
    let key = Key::new(&resource.storage_name(), "", name);
    let seed_error = |source| ServerError::Seed {
        name: name.to_string(),
        source,
    };
    if store.get(&key).await.map_err(seed_error)?.is_some() {
        return Ok(());
    }
    object["metadata"]["uid"] = uuid::Uuid::new_v4().to_string().into();
    object["metadata"]["creationTimestamp"] = api::now_rfc3339().into();
    registry::apply_defaults(resource, &mut object);
    match store.write(Write::Create { key, value: object }).await {
        Ok(_) | Err(StoreError::AlreadyExists) => Ok(()),
        Err(e) => Err(seed_error(e)),
    }
}

fn tls_config(
    ca: &Authority,
    serving: &crate::pki::CertifiedKey,
) -> Result<rustls::ServerConfig, ServerError> {
    let tls = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = CertificateDer::from_pem_slice(ca.ca.cert_pem.as_bytes()).map_err(|e| tls(&e))?;
    roots.add(ca_der).map_err(|e| tls(&e))?;
    // Clients without a certificate still connect; they get 401 unless a token authenticates them.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A kubeconfig for `user` reaching `server`, trusting the cluster CA.
pub fn kubeconfig(server: &str, ca_pem: &str, client: &crate::pki::CertifiedKey) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "skiff-admin", "user": {
            "client-certificate-data": b64(&client.cert_pem),
            "client-key-data": b64(&client.key_pem),
        }}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "skiff-admin"}}],
        "current-context": "skiff",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// A kube client whose requests go straight to the router, authenticated as the controllers.
pub fn in_process_client(router: axum::Router) -> kube::Client {
    let identity = UserInfo::new("system:kube-controller-manager", &[MASTERS]);
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut request: http::Request<kube::client::Body>| {
            request.extensions_mut().insert(identity.clone());
            request.map(axum::body::Body::new)
        })
        .service(router);
    kube::Client::new(service, "default")
}

/// Runs the server until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    agent: Option<StartWithClient>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let data_dir = &config.data_dir;
    // The database holds every Secret: only the server's user may read it.
    crate::pki::private_dir(data_dir).map_err(|source| ServerError::Write {
        path: data_dir.clone(),
        source,
    })?;
    let authority = Authority::load_or_create(&data_dir.join("tls"))?;
    // Nodes' serving certificates come from a CA of their own, which clients of the API never
    // trust: a node's certificate cannot pass for the API server's.
    let node_serving = Authority::load_or_create_named(
        &data_dir.join("tls").join("node-serving"),
        "skiff-node-serving-ca",
    )?;
    let db = data_dir.join("state.db");
    let backend = SqliteBackend::open(&db, config.durable)
        .await
        .map_err(|source| ServerError::Store {
            path: db.clone(),
            source,
        })?;
    let store = Store::new(backend, config.history);
    seed(&store).await?;

    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !local.ip().is_unspecified() && !names.contains(&local.ip().to_string()) {
        names.push(local.ip().to_string());
    }
    names.extend(config.tls_san.iter().cloned());
    let serving = authority.serving(&names)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&authority, &serving)?));

    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let url = format!("https://{host}:{}", local.port());
    let state = Arc::new(ApiState {
        local_node: config.local_node.clone(),
        nodes: crate::api::node_client::NodeClient::new(&authority, &node_serving)?,
        namespaces: crate::api::namespaces::Namespaces::follow(store.clone()),
        services: crate::api::services::ServiceAllocations::follow(
            store.clone(),
            config.node_port_range.clone(),
        )
        .await,
        store,
        advertise: format!("{host}:{}", local.port()),
        lifecycle: config.lifecycle.clone(),
    });
    let store = state.store.clone();
    let router = api::router(state);
    crate::controllers::start(
        in_process_client(router.clone()),
        store,
        &config.disable,
        &config.lifecycle,
        config.pod_ranges,
    );
    let authority = Arc::new(authority);
    let node_serving = Arc::new(node_serving);
    if let Some(agent) = agent {
        let (cluster, serving) = (authority.clone(), node_serving.clone());
        let issuer: NodeIssuer = Arc::new(move |name: &str, addresses: &[String]| {
            let user = format!("system:node:{name}");
            let mut names = vec![name.to_string()];
            names.extend(addresses.iter().filter(|a| *a != name).cloned());
            Ok(IssuedNode {
                ca_pem: cluster.ca.cert_pem.clone(),
                node_serving_ca_pem: serving.ca.cert_pem.clone(),
                client: cluster.client(&user, &[crate::join::NODES])?,
                serving: serving.issue_serving(&user, &names)?,
            })
        });
        agent(in_process_client(router.clone()), issuer);
    }

    // The join token is in place before the admin kubeconfig, which tells that the server is up.
    let token_path = data_dir.join("node-token");
    let token = crate::join::load_or_create(&token_path, &authority).map_err(|source| {
        ServerError::Write {
            path: token_path.clone(),
            source,
        }
    })?;
    let admin = authority.client("admin", &[MASTERS])?;
    let kubeconfig_path = data_dir.join("admin.kubeconfig");
    crate::pki::write_private(
        &kubeconfig_path,
        &kubeconfig(&url, &authority.ca.cert_pem, &admin),
    )
    .map_err(|source| ServerError::Write {
        path: kubeconfig_path.clone(),
        source,
    })?;
    let router = router.merge(crate::join::routes(authority, node_serving, token));
    tracing::info!(url = %url, kubeconfig = %kubeconfig_path.display(), "serving the Kubernetes API");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Watch events are small writes that must go out at once, not wait for the client's
        // acknowledgement of the one before (Nagle's algorithm, which a delayed ACK turns into
        // milliseconds), as Go's net package sets for every TCP connection.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // A peer that never finishes its handshake must not hold a socket for ever.
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| UserInfo::from_certificate(cert));
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    if let Some(user) = &user {
                        request.extensions_mut().insert(user.clone());
                    }
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            // Responses finished together leave in one send.
            let io = TokioIo::new(coalesce::Coalesce::new(tls));
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down");
    // Long watches would hold shutdown forever: give requests a moment, then go.
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
    Ok(())
}
