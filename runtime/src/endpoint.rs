//! The node's HTTPS endpoint, which the API server reaches for what only the node holds, at the
//! kubelet's paths: a container's log at `GET /containerLogs/NAMESPACE/POD/CONTAINER`, and what
//! the node and its containers use at `GET /stats/summary` (see [`crate::usage`]), and a
//! connection to a pod's port at `POST /portForward/NAMESPACE/POD?uid=&port=` (upgraded to the
//! connection's bytes, for `kubectl port-forward`). For a log, the API server names the pod's
//! UID and the run (`uid`, `run`) beside `kubectl logs`'s own parameters (`follow`,
//! `timestamps`, `tailLines`, `sinceTime`, `limitBytes`).
//!
//! It serves with a certificate the server's node-serving CA signed for the node's name and
//! address, asked for on every start, and answers only clients whose certificate the cluster CA
//! signed for the group `system:masters`: the API server's kubelet client and administrators;
//! and other nodes (`system:nodes`) at `POST /tunnel` only (see [`crate::net::tunnel`]). Anyone
//! else fails the handshake (no certificate, or one of another CA) or gets 403.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::logs::{LiveLogs, LogOptions};
use crate::net::tunnel::UPGRADE;

/// The group whose members may use a node's endpoint.
const MASTERS: &str = "system:masters";
/// The group of nodes, which may use the tunnel.
const NODES: &str = "system:nodes";

/// How long a peer may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The node's serving certificate and the CA its clients' certificates must chain to.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster CA, which clients' certificates chain to.
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA other nodes' serving certificates chain to, which the tunnel checks them by.
    pub peers_ca_pem: Option<String>,
}

/// Asks the API server for a serving certificate for the node's name and `addresses`; the
/// request is authenticated by the node's own credential.
pub async fn request_identity(
    client: &kube::Client,
    addresses: &[String],
) -> anyhow::Result<Identity> {
    let body = serde_json::to_vec(&json!({ "addresses": addresses }))?;
    let request = http::Request::post("/skiff/v1/serving-certificate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)?;
    let issued: serde_json::Value = client
        .request(request)
        .await
        .context("asking the API server for the node's serving certificate")?;
    let field = |key: &str| {
        issued[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the serving certificate answer has no {key}"))
    };
    Ok(Identity {
        ca_pem: field("ca")?,
        cert_pem: field("certificate")?,
        key_pem: field("key")?,
        peers_ca_pem: field("nodeServingCA").ok(),
    })
}

/// Whether a failed certificate request was refused outright (not a node's credential, a
/// server without the route, names it will not sign), so that asking again is pointless.
pub fn refused(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<kube::Error>(),
        Some(kube::Error::Api(e)) if (400..500).contains(&e.code) && e.code != 429
    )
}

/// What the endpoint serves from.
#[derive(Debug, Clone)]
pub struct Served {
    /// The node's name.
    pub node: String,
    /// Where pods keep their logs (see [`crate::pods::pod_dir`]).
    pub pods_dir: PathBuf,
    pub live_logs: LiveLogs,
    pub usage: crate::usage::Usage,
    /// The node's pod addresses, which port-forwarding and the tunnel reach pods at.
    pub addresses: crate::net::Addresses,
    /// What the node's pods serve, and the other nodes, whose ranges tunnelled connections
    /// come from.
    pub network: std::sync::Arc<crate::net::NodeNetwork>,
}

fn tls_config(identity: &Identity) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(
        CertificateDer::from_pem_slice(identity.ca_pem.as_bytes())
            .context("reading the cluster CA")?,
    )?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("reading the serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .context("reading the serving key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// A member of `system:masters`: the API server, an administrator.
    Master,
    /// A node (`system:node:NAME` in `system:nodes`), which may use the tunnel only.
    Node(String),
    Other,
}

fn caller(der: &[u8]) -> Caller {
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return Caller::Other;
    };
    let in_group = |group: &str| {
        cert.subject()
            .iter_organization()
            .any(|o| o.as_str() == Ok(group))
    };
    if in_group(MASTERS) {
        return Caller::Master;
    }
    let node = crate::net::tunnel::common_name(der)
        .and_then(|cn| cn.strip_prefix("system:node:").map(str::to_string));
    match node {
        Some(name) if in_group(NODES) => Caller::Node(name),
        _ => Caller::Other,
    }
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    identity: Identity,
    served: Served,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&identity)?));
    let served = Arc::new(served);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection to the node endpoint failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // A followed log's lines go out as they come, not held for the last one's ACK.
        let _ = tcp.set_nodelay(true);
        let (acceptor, served) = (acceptor.clone(), served.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "node endpoint: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map_or(Caller::Other, |cert| caller(cert));
            let service = hyper::service::service_fn(move |request| {
                let (served, caller) = (served.clone(), caller.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(&served, &caller, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "node endpoint connection ended");
            }
        });
    }
}

/// Binds the endpoint's listener; port 0 picks a free port.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("listening for the API server on {address}"))
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A `metav1.Status` failure, as the kubelet answers.
fn failure(code: StatusCode, reason: &str, message: &str) -> hyper::Response<Body> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, status.to_string().into_bytes())
}

/// A JSON answer.
fn json_response(code: StatusCode, body: Vec<u8>) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn answer(
    served: &Served,
    caller: &Caller,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    let path: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    if path == ["tunnel"] {
        return match (request.method(), caller) {
            (&Method::POST, Caller::Node(node)) => tunnel(served, node, request)
                .await
                .unwrap_or_else(|(code, reason, message)| failure(code, reason, &message)),
            _ => failure(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "only nodes may use the tunnel",
            ),
        };
    }
    if *caller != Caller::Master {
        return failure(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "only the API server may use a node's endpoint",
        );
    }
    match (request.method(), path.as_slice()) {
        (&Method::GET, ["containerLogs", namespace, pod, container]) => {
            let query = request.uri().query().unwrap_or("");
            container_log(served, namespace, pod, container, query)
                .await
                .unwrap_or_else(|(code, reason, message)| failure(code, reason, &message))
        }
        (&Method::POST, ["portForward", _, _]) => port_forward(served, request)
            .await
            .unwrap_or_else(|(code, reason, message)| failure(code, reason, &message)),
        (&Method::GET, ["stats", "summary"]) => {
            let summary = served.usage.summary(&served.node);
            json_response(
                StatusCode::OK,
                serde_json::to_vec(&summary).unwrap_or_default(),
            )
        }
        _ => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no such endpoint: {}", request.uri().path()),
        ),
    }
}

type Refusal = (StatusCode, &'static str, String);

/// A request's query parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn bad(message: String) -> Refusal {
    (StatusCode::BAD_REQUEST, "BadRequest", message)
}

async fn container_log(
    served: &Served,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Result<hyper::Response<Body>, Refusal> {
    let params = Params::parse(query);
    let get = |key: &str| params.get(key);
    let flag = |key: &str| get(key).is_some_and(|v| v == "true" || v == "1");
    let number = |key: &str| -> Result<Option<usize>, Refusal> {
        get(key)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| bad(format!("{key}: Invalid value: \"{v}\"")))
            })
            .transpose()
    };
    let uid = get("uid").ok_or_else(|| bad("uid: Required value".into()))?;
    let run = get("run")
        .ok_or_else(|| bad("run: Required value".into()))?
        .parse::<u32>()
        .map_err(|_| bad("run: Invalid value: must be a restart count".into()))?;
    let since = get("sinceTime")
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| bad(format!("sinceTime: Invalid value: \"{t}\"")))
        })
        .transpose()?;
    let options = LogOptions {
        timestamps: flag("timestamps"),
        tail_lines: number("tailLines")?,
        since,
        limit_bytes: number("limitBytes")?,
    };
    // Names come from the API server, but a path is only ever built from plain names.
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..";
    if ![namespace, pod, container, uid].into_iter().all(plain) {
        return Err(bad("invalid pod or container name".into()));
    }
    let dir = crate::pods::pod_dir(&served.pods_dir, namespace, pod, uid).join(container);
    let path = crate::logs::run_log(&dir, run);
    let follow = flag("follow").then(|| served.live_logs.clone());
    let opened =
        tokio::task::spawn_blocking(move || crate::logs::open(&path, &options, follow.as_ref()))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|opened| opened);
    let stream = opened.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            (
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("container \"{container}\" of pod \"{pod}\" has no log for run {run}"),
            )
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("reading the log: {e}"),
            )
        }
    })?;
    let body = BodyExt::boxed_unsync(StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))));
    let mut response = hyper::Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

/// `POST /portForward/NAMESPACE/POD?uid=&port=`: a connection to the pod's port, made from
/// within the pod, and the request's connection upgraded to carry it (`Upgrade: skiff-tcp`).
/// The connection is made before the answer, so that a refusal is told in it.
async fn port_forward(
    served: &Served,
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Refusal> {
    let params = Params::parse(request.uri().query().unwrap_or(""));
    let get = |key: &str| params.get(key);
    let uid = get("uid").ok_or_else(|| bad("uid: Required value".into()))?;
    let port = get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("port: Invalid value: must be a number from 1 to 65535".into()))?;
    upgrading(&request)?;
    let pod = crate::net::proxy::to_pod(&served.addresses, uid, port)
        .await
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            };
            (
                code,
                if code == StatusCode::NOT_FOUND {
                    "NotFound"
                } else {
                    "ServiceUnavailable"
                },
                format!("failed to connect to localhost:{port} inside the pod: {e}"),
            )
        })?;
    Ok(carry(&mut request, pod))
}

/// Whether a request asks for its connection to be upgraded to a byte stream.
fn upgrading(request: &hyper::Request<hyper::body::Incoming>) -> Result<(), Refusal> {
    let upgrading = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes() == UPGRADE.as_bytes());
    if upgrading {
        Ok(())
    } else {
        Err(bad(format!("Upgrade: {UPGRADE} is required")))
    }
}

/// Answers 101 and carries the request's connection to and from `pod` once upgraded.
fn carry(
    request: &mut hyper::Request<hyper::body::Incoming>,
    pod: tokio::net::TcpStream,
) -> hyper::Response<Body> {
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "an endpoint upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(upgraded);
        let mut pod = pod;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut pod).await;
    });
    let mut response = hyper::Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(
        header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    response
        .headers_mut()
        .insert(header::UPGRADE, http::HeaderValue::from_static(UPGRADE));
    response
}

/// `POST /tunnel?to=POD_IP:PORT&from=POD_IP`, from node `node`: a connection to a pod of this
/// node from a pod of the caller's, upgraded as port-forwarding's (see [`crate::net::tunnel`]).
async fn tunnel(
    served: &Served,
    node: &str,
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Refusal> {
    let params = Params::parse(request.uri().query().unwrap_or(""));
    let to = params
        .get("to")
        .and_then(|t| t.parse::<std::net::SocketAddrV4>().ok())
        .ok_or_else(|| bad("to: Invalid value: must be ADDRESS:PORT".into()))?;
    let from = params
        .get("from")
        .and_then(|f| f.parse::<std::net::Ipv4Addr>().ok())
        .ok_or_else(|| bad("from: Invalid value: must be an address".into()))?;
    upgrading(&request)?;
    let (target, source) =
        crate::net::tunnel::admit(&served.network, &served.addresses, node, to, from)
            .map_err(|message| (StatusCode::FORBIDDEN, "Forbidden", message))?;
    let pod = crate::net::proxy::connect(target, Some(source))
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                format!("connecting to {to}: {e}"),
            )
        })?;
    Ok(carry(&mut request, pod))
}
