//! The built-in Ingress controller, serving IngressClass `skiff` (the default class) on every
//! node: HTTP on the node's address at `--ingress-http-port` (80) and HTTPS at
//! `--ingress-https-port` (443), terminating TLS with the `kubernetes.io/tls` Secrets the
//! Ingresses name, chosen by SNI. A request is routed as the Ingress spec says: by host (an
//! exact host before a wildcard one, `*.example.com` matching one label, before rules with no
//! host), then by path (an Exact match, else the longest Prefix match, element by element;
//! ImplementationSpecific is a Prefix), else to a `defaultBackend`, else 404. It goes to one
//! of the backend Service's endpoints, from the node's address, with `X-Forwarded-*` headers;
//! an endpoint that is an HTTP container of this node is handed the request in process (see
//! [`super::local`]).
//! The node lists its address in `status.loadBalancer.ingress` of the Ingresses it serves.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

use super::Addresses;
use super::services::{PortRef, Services};

/// The controller name of IngressClass `skiff`.
pub const CONTROLLER: &str = "skiff.dev/ingress";

/// Where the node serves Ingresses; 0 leaves a port closed.
#[derive(Debug, Clone, Copy)]
pub struct IngressPorts {
    pub http: u16,
    pub https: u16,
}

/// How a path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Exact,
    Prefix,
}

/// A Service port an Ingress sends requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backend {
    namespace: String,
    service: String,
    port: PortRef,
}

/// One path of one rule.
#[derive(Debug, Clone)]
struct Rule {
    host: Option<String>,
    path: String,
    kind: PathKind,
    backend: Backend,
}

/// What the node routes by, from the Ingresses of its class.
#[derive(Debug, Default)]
struct Routes {
    rules: Vec<Rule>,
    default: Option<Backend>,
    /// TLS certificates by host (`*.example.com` for a wildcard).
    certificates: HashMap<String, Arc<CertifiedKey>>,
    /// The Ingresses served, with the addresses their status lists now.
    served: Vec<(String, String, Vec<String>)>,
}

fn backend_of(namespace: &str, backend: &IngressBackend) -> Option<Backend> {
    let service = backend.service.as_ref()?;
    let port = service.port.as_ref()?;
    let port = match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => PortRef::Name(name.clone()),
        (_, Some(number)) => PortRef::Number(u16::try_from(number).ok()?),
        _ => return None,
    };
    Some(Backend {
        namespace: namespace.to_string(),
        service: service.name.clone(),
        port,
    })
}

/// Whether `ingress` is of a class this controller serves.
fn is_ours(ingress: &Ingress, classes: &[Arc<IngressClass>]) -> bool {
    let ours = |name: &str| {
        classes.iter().any(|c| {
            c.name_any() == name
                && c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
        })
    };
    let annotated = ingress.annotations().get("kubernetes.io/ingress.class");
    match (
        ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref()),
        annotated,
    ) {
        (Some(name), _) => ours(name),
        (None, Some(name)) => ours(name),
        // No class at all: the default class's, when ours is the default.
        (None, None) => classes.iter().any(|c| {
            c.annotations()
                .get("ingressclass.kubernetes.io/is-default-class")
                .map(String::as_str)
                == Some("true")
                && ours(&c.name_any())
        }),
    }
}

/// A TLS Secret's certificate and key.
fn certified(secret: &Secret) -> Option<Arc<CertifiedKey>> {
    let data = secret.data.as_ref()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&data.get("tls.crt")?.0)
            .collect::<Result<_, _>>()
            .ok()?;
    let key = PrivateKeyDer::from_pem_slice(&data.get("tls.key")?.0).ok()?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).ok()?;
    (!chain.is_empty()).then(|| Arc::new(CertifiedKey::new(chain, signing)))
}

impl Routes {
    fn build(
        ingresses: &[Arc<Ingress>],
        classes: &[Arc<IngressClass>],
        secrets: &[Arc<Secret>],
    ) -> Routes {
        let mut ingresses: Vec<&Arc<Ingress>> =
            ingresses.iter().filter(|i| is_ours(i, classes)).collect();
        ingresses.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.clone().map(|t| t.0),
                i.name_any(),
            )
        });
        let mut routes = Routes::default();
        for ingress in ingresses {
            let namespace = ingress.namespace().unwrap_or_default();
            let Some(spec) = &ingress.spec else { continue };
            let addresses = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone())
                .collect();
            routes
                .served
                .push((namespace.clone(), ingress.name_any(), addresses));
            if routes.default.is_none() {
                routes.default = spec
                    .default_backend
                    .as_ref()
                    .and_then(|b| backend_of(&namespace, b));
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .map(|h| h.to_lowercase());
                for path in rule.http.iter().flat_map(|h| &h.paths) {
                    let Some(backend) = backend_of(&namespace, &path.backend) else {
                        continue;
                    };
                    let kind = if path.path_type == "Exact" {
                        PathKind::Exact
                    } else {
                        PathKind::Prefix
                    };
                    routes.rules.push(Rule {
                        host: host.clone(),
                        path: path.path.clone().unwrap_or_else(|| "/".into()),
                        kind,
                        backend,
                    });
                }
            }
            for tls in spec.tls.iter().flatten() {
                let Some(secret_name) = &tls.secret_name else {
                    continue;
                };
                let secret = secrets.iter().find(|s| {
                    s.namespace().as_deref() == Some(namespace.as_str())
                        && s.name_any() == *secret_name
                });
                let Some(key) = secret.and_then(|s| certified(s)) else {
                    tracing::warn!(ingress = %ingress.name_any(), secret = %secret_name, "the TLS secret is missing or holds no usable certificate");
                    continue;
                };
                for host in tls.hosts.iter().flatten() {
                    routes
                        .certificates
                        .entry(host.to_lowercase())
                        .or_insert_with(|| key.clone());
                }
            }
        }
        routes
    }

    /// The backend for a request to `host` (without a port) at `path`.
    fn route(&self, host: &str, path: &str) -> Option<&Backend> {
        let host = host.to_lowercase();
        let wildcard_of = |h: &str| h.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let wildcard = wildcard_of(&host);
        // An exact host's rules first, then a wildcard host's, then those with no host.
        let group = |r: &Rule| match r.host.as_deref() {
            Some(h) if h == host => 0,
            Some(_) if r.host == wildcard => 1,
            None => 2,
            Some(_) => 3,
        };
        for rank in 0..3 {
            let rules: Vec<&Rule> = self.rules.iter().filter(|r| group(r) == rank).collect();
            if rules.is_empty() {
                continue;
            }
            let exact = rules
                .iter()
                .find(|r| r.kind == PathKind::Exact && r.path == path);
            let prefix = rules
                .iter()
                .filter(|r| r.kind == PathKind::Prefix && prefix_matches(&r.path, path))
                .max_by_key(|r| r.path.trim_end_matches('/').len());
            return exact
                .or(prefix)
                .map(|r| &r.backend)
                .or(self.default.as_ref());
        }
        self.default.as_ref()
    }

    /// The certificate for an SNI name.
    fn certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_lowercase();
        self.certificates.get(&name).cloned().or_else(|| {
            let (_, rest) = name.split_once('.')?;
            self.certificates.get(&format!("*.{rest}")).cloned()
        })
    }
}

/// Whether a Prefix path matches a request path, element by element: `/api` matches `/api`
/// and `/api/x`, not `/apix`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The node's routes, kept up to date.
#[derive(Clone, Default)]
struct Shared(Arc<RwLock<Arc<Routes>>>);

impl Shared {
    fn get(&self) -> Arc<Routes> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, routes: Routes) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }
}

/// Picks a certificate by SNI from the current routes.
#[derive(Debug)]
struct BySni(Shared);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let routes = self.0.get();
        match hello.server_name() {
            Some(name) => routes.certificate(name),
            None => routes.certificates.values().next().cloned(),
        }
    }
}

/// What the Ingress controller needs.
pub struct Controller {
    pub client: kube::Client,
    pub services: Services,
    pub addresses: Addresses,
    pub tunnel: super::tunnel::Tunnel,
    pub local: super::local::LocalServers,
    /// The node's address, which it serves Ingresses on.
    pub address: Ipv4Addr,
    pub ports: IngressPorts,
}

/// Runs the Ingress controller until the process ends.
pub async fn run(controller: Controller) {
    let shared = Shared::default();
    let served = serve_ports(&controller, &shared).await;
    let client = controller.client.clone();
    let (ingresses, ingress_changes) = super::cached(
        Api::<Ingress>::all(client.clone()),
        watcher::Config::default(),
    );
    let (classes, class_changes) = super::cached(
        Api::<IngressClass>::all(client.clone()),
        watcher::Config::default(),
    );
    let (secrets, secret_changes) = super::cached(
        Api::<Secret>::all(client),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
    );
    let mut changes = futures::stream::select_all([ingress_changes, class_changes, secret_changes]);
    while super::next_burst(&mut changes).await {
        rebuild(&controller, &shared, served, &ingresses, &classes, &secrets).await;
    }
}

async fn rebuild(
    controller: &Controller,
    shared: &Shared,
    served: bool,
    ingresses: &Store<Ingress>,
    classes: &Store<IngressClass>,
    secrets: &Store<Secret>,
) {
    let routes = Routes::build(&ingresses.state(), &classes.state(), &secrets.state());
    let address = controller.address.to_string();
    for (namespace, name, listed) in &routes.served {
        if served != listed.contains(&address) {
            let api: Api<Ingress> = Api::namespaced(controller.client.clone(), namespace);
            super::proxy::publish_address(&api, name, &address, served).await;
        }
    }
    shared.set(routes);
}

/// Opens the HTTP and HTTPS ports; whether the node serves Ingresses at all.
async fn serve_ports(controller: &Controller, shared: &Shared) -> bool {
    let mut serving = false;
    for (port, tls) in [
        (controller.ports.http, false),
        (controller.ports.https, true),
    ] {
        if port == 0 {
            continue;
        }
        let at = SocketAddr::new(IpAddr::V4(controller.address), port);
        let listener = match TcpListener::bind(at).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(%at, error = %e, "the Ingress controller cannot listen; Ingresses are not served on this port");
                continue;
            }
        };
        serving = true;
        let acceptor = tls.then(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the default protocol versions")
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(BySni(shared.clone())));
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let proxy = Arc::new(Forwarder {
            routes: shared.clone(),
            services: controller.services.clone(),
            addresses: controller.addresses.clone(),
            tunnel: controller.tunnel.clone(),
            local: controller.local.clone(),
            upstreams: Upstreams::default(),
            scheme: if tls { "https" } else { "http" },
        });
        tokio::spawn(accept(listener, acceptor, proxy));
    }
    serving
}

/// Passes requests on to their backends.
struct Forwarder {
    routes: Shared,
    services: Services,
    addresses: Addresses,
    tunnel: super::tunnel::Tunnel,
    local: super::local::LocalServers,
    upstreams: Upstreams,
    scheme: &'static str,
}

use super::local::Body;

/// A backend's response, its body's errors boxed.
fn boxed(response: hyper::Response<hyper::body::Incoming>) -> hyper::Response<Body> {
    response.map(|body| body.map_err(super::local::BoxError::from).boxed_unsync())
}

fn plain(status: http::StatusCode, text: &str) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn accept(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    forwarder: Arc<Forwarder>,
) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, forwarder) = (acceptor.clone(), forwarder.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let forwarder = forwarder.clone();
                async move { Ok::<_, std::convert::Infallible>(forwarder.forward(request, peer).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                }
                Some(acceptor) => {
                    let Ok(Ok(tls)) = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await
                    else {
                        return;
                    };
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                }
            }
        });
    }
}

impl Forwarder {
    async fn forward(
        &self,
        mut request: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<Body> {
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .unwrap_or("")
            .to_string();
        let bare_host = match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host.as_str(),
        };
        let path = request.uri().path().to_string();
        let routes = self.routes.get();
        let Some(backend) = routes.route(bare_host, &path).cloned() else {
            return plain(http::StatusCode::NOT_FOUND, "404 page not found\n");
        };
        let table = self.services.table();
        let Some(service) = table.service_port(&backend.namespace, &backend.service, &backend.port)
        else {
            return plain(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "no service behind this route\n",
            );
        };
        let Some(first) = service.pick_for(peer) else {
            return plain(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "no endpoint of the service took the connection\n",
            );
        };
        // What a client says of earlier hops is not trusted: the header names the peer alone,
        // as ingress-nginx sets it by default.
        let forwarded_for = peer.ip().to_string();
        let headers = request.headers_mut();
        // Hop-by-hop headers are the client's connection's, not the backend's (RFC 9110
        // 7.6.1): a client's `Connection: close` must not close a kept backend connection.
        let named: Vec<String> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        for name in named.iter().map(String::as_str).chain([
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ]) {
            headers.remove(name);
        }
        for (name, value) in [
            ("x-forwarded-for", forwarded_for),
            ("x-forwarded-proto", self.scheme.to_string()),
            ("x-forwarded-host", host.clone()),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if let Some(path_and_query) = request.uri().path_and_query().cloned() {
            *request.uri_mut() = http::Uri::from(path_and_query);
        }
        if let Some(server) = self.local.at(first) {
            return server.request(request).await;
        }
        // A kept connection to the endpoint first; one the backend closed meanwhile gives
        // the request back, and it goes on a new connection.
        let mut request = request;
        if let Some(mut sender) = self.upstreams.take(first) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.upstreams.keep(first, sender);
                    return boxed(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        return plain(
                            http::StatusCode::BAD_GATEWAY,
                            &format!("the backend failed: {}\n", e.into_error()),
                        );
                    }
                },
            }
        }
        let dialed =
            super::proxy::dial_picked(&service, first, &self.addresses, &self.tunnel).await;
        let Some((endpoint, stream)) = dialed else {
            return plain(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "no endpoint of the service took the connection\n",
            );
        };
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
        else {
            return plain(
                http::StatusCode::BAD_GATEWAY,
                "the backend did not speak HTTP\n",
            );
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        match sender.send_request(request).await {
            Ok(response) => {
                self.upstreams.keep(endpoint, sender);
                boxed(response)
            }
            Err(e) => plain(
                http::StatusCode::BAD_GATEWAY,
                &format!("the backend failed: {e}\n"),
            ),
        }
    }
}

/// Connections to backends kept for the requests to come, by endpoint, as a proxy's
/// upstream keep-alive: a connection is taken again once its last answer has been read.
#[derive(Default)]
struct Upstreams {
    idle: std::sync::Mutex<HashMap<SocketAddrV4, Vec<Upstream>>>,
}

type Upstream = hyper::client::conn::http1::SendRequest<hyper::body::Incoming>;

/// Connections kept per endpoint at most.
const KEPT_PER_ENDPOINT: usize = 64;

impl Upstreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddrV4, Vec<Upstream>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection to `endpoint` ready for a request; closed ones are dropped.
    fn take(&self, endpoint: SocketAddrV4) -> Option<Upstream> {
        let mut idle = self.lock();
        let kept = idle.get_mut(&endpoint)?;
        kept.retain(|sender| !sender.is_closed());
        let ready = kept.iter().position(Upstream::is_ready)?;
        Some(kept.swap_remove(ready))
    }

    /// Keeps a connection whose request was sent: it is ready again once its answer is read.
    fn keep(&self, endpoint: SocketAddrV4, sender: Upstream) {
        let mut idle = self.lock();
        let kept = idle.entry(endpoint).or_default();
        if kept.len() < KEPT_PER_ENDPOINT {
            kept.push(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(ingress: serde_json::Value) -> Routes {
        let class: IngressClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "skiff", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": CONTROLLER}}))
        .unwrap();
        let ingress: Ingress = serde_json::from_value(ingress).unwrap();
        Routes::build(&[Arc::new(ingress)], &[Arc::new(class)], &[])
    }

    fn backend(routes: &Routes, host: &str, path: &str) -> Option<String> {
        routes.route(host, path).map(|b| b.service.clone())
    }

    #[test]
    fn requests_route_by_host_then_by_the_best_path() {
        let routes = routes(serde_json::json!({
            "metadata": {"name": "i", "namespace": "default"},
            "spec": {
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "rules": [
                    {"http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "site", "port": {"number": 80}}}},
                        {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
                        {"path": "/api/health", "pathType": "Exact", "backend": {"service": {"name": "health", "port": {"number": 80}}}},
                    ]}},
                    {"host": "blog.example", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "blog", "port": {"number": 80}}}}]}},
                    {"host": "*.shop.example", "http": {"paths": [
                        {"path": "/cart", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "cart", "port": {"number": 80}}}}]}},
                ]
            }
        }));
        assert_eq!(
            backend(&routes, "any.example", "/").as_deref(),
            Some("site")
        );
        assert_eq!(
            backend(&routes, "any.example", "/api").as_deref(),
            Some("api")
        );
        assert_eq!(
            backend(&routes, "any.example", "/api/v1").as_deref(),
            Some("api")
        );
        assert_eq!(
            backend(&routes, "any.example", "/apix").as_deref(),
            Some("site")
        );
        assert_eq!(
            backend(&routes, "any.example", "/api/health").as_deref(),
            Some("health")
        );
        assert_eq!(
            backend(&routes, "any.example", "/api/health/x").as_deref(),
            Some("api")
        );
        assert_eq!(
            backend(&routes, "Blog.Example", "/api").as_deref(),
            Some("blog")
        );
        assert_eq!(
            backend(&routes, "eu.shop.example", "/cart/1").as_deref(),
            Some("cart")
        );
        // A host with rules of its own falls to the default backend when no path matches.
        assert_eq!(
            backend(&routes, "eu.shop.example", "/").as_deref(),
            Some("fallback")
        );
        assert_eq!(
            backend(&routes, "a.eu.shop.example", "/cart").as_deref(),
            Some("site")
        );
    }

    #[test]
    fn ingresses_of_other_classes_are_left_alone() {
        let other = routes(serde_json::json!({
            "metadata": {"name": "i", "namespace": "default"},
            "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "site", "port": {"number": 80}}}}]}}]}
        }));
        assert!(other.rules.is_empty() && other.served.is_empty());
    }
}
