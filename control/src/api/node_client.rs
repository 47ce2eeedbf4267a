//! The API server's client for node endpoints (what a kube-apiserver's kubelet client is): it
//! reaches a node at its InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`, trusts
//! only a serving certificate the nodes' serving CA signed for that address, and presents its
//! own certificate from the cluster CA, `kube-apiserver-kubelet-client` in `system:masters`.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use super::ApiError;
use crate::auth::{MASTERS, UserInfo};
use crate::pki::{Authority, PkiError};

/// How long reaching a node may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to start its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The name the API server's client certificate gives it, as upstream names it.
pub const KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

pub struct NodeClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").finish_non_exhaustive()
    }
}

/// Where a node serves its endpoint, read from its Node object.
fn endpoint_of(node: &Value) -> Option<(String, u16)> {
    let address = node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    Some((address, port))
}

impl NodeClient {
    /// A client with a fresh certificate from `authority`, trusting nodes whose serving
    /// certificates `node_serving` signed.
    pub fn new(authority: &Authority, node_serving: &Authority) -> Result<NodeClient, PkiError> {
        let credential = authority.client(KUBELET_CLIENT, &[MASTERS])?;
        let tls = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(node_serving.ca.cert_pem.as_bytes())
            .map_err(|e| tls(&e))?;
        roots.add(ca).map_err(|e| tls(&e))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(credential.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(credential.key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls(&e))?;
        Ok(NodeClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// `GET path_and_query` on the endpoint of `node` (its Node object named `name`). Answers
    /// the node's response whatever its status; fails when the node cannot be reached.
    pub async fn get(
        &self,
        name: &str,
        node: &Value,
        path_and_query: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
        let (mut sender, host, failed) = self.connect(name, node, path_and_query).await?;
        let request = http::Request::get(path_and_query)
            .header(http::header::HOST, host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| failed(&e))?;
        // The body may stream for as long as a followed log lasts; the answer itself must come.
        tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| failed(&"net/http: timeout awaiting response headers"))?
            .map_err(|e| failed(&e))
    }

    /// `POST path_and_query` on the endpoint of `node`, upgraded to the byte stream the node
    /// opens (a connection to a pod's port). Fails with the node's message when it opens none.
    pub async fn upgrade(
        &self,
        name: &str,
        node: &Value,
        path_and_query: &str,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ApiError> {
        let (mut sender, host, failed) = self.connect(name, node, path_and_query).await?;
        let request = http::Request::post(path_and_query)
            .header(http::header::HOST, host)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, UPGRADE)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| failed(&e))?;
        let response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| failed(&"net/http: timeout awaiting response headers"))?
            .map_err(|e| failed(&e))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ApiError::Internal(failure_message(response).await));
        }
        let upgraded = hyper::upgrade::on(response).await.map_err(|e| failed(&e))?;
        Ok(TokioIo::new(upgraded))
    }

    /// An HTTP/1 connection to `node`'s endpoint, once its certificate shows it is that node's;
    /// with the Host header to send and how to word a failure.
    async fn connect(
        &self,
        name: &str,
        node: &Value,
        path_and_query: &str,
    ) -> Result<
        (
            SendRequest,
            String,
            impl Fn(&dyn std::fmt::Display) -> ApiError,
        ),
        ApiError,
    > {
        let Some((address, port)) = endpoint_of(node) else {
            return Err(ApiError::BadRequest(format!(
                "node {name} does not report an endpoint (status.daemonEndpoints.kubeletEndpoint) to reach it on"
            )));
        };
        let host = if address.contains(':') {
            format!("[{address}]")
        } else {
            address.clone()
        };
        let url = format!("https://{host}:{port}{path_and_query}");
        let failed =
            move |e: &dyn std::fmt::Display| ApiError::Internal(format!("Get \"{url}\": {e}"));
        let server_name = ServerName::try_from(address.clone()).map_err(|e| failed(&e))?;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((address.as_str(), port))
                .await
                .map_err(|e| failed(&format!("dial tcp {host}:{port}: connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(server_name, tcp)
                .await
                .map_err(|e| failed(&format!("remote error: tls: {e}")))
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| failed(&format!("dial tcp {host}:{port}: i/o timeout")))??;
        // The address is what the Node's status says; the certificate must also be the one
        // issued to that node, so that no node answers for another.
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| UserInfo::from_certificate(cert))
            .map(|user| user.name);
        let expected = format!("system:node:{name}");
        if presented.as_deref() != Some(expected.as_str()) {
            return Err(failed(&format!(
                "the endpoint at {host}:{port} is not node {name}'s (its certificate names {})",
                presented.as_deref().unwrap_or("no one")
            )));
        }
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "a node connection ended");
            }
        });
        Ok((sender, format!("{host}:{port}"), failed))
    }
}

type SendRequest = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// The protocol a node endpoint's upgraded connection speaks: the bytes of a TCP connection.
pub const UPGRADE: &str = "skiff-tcp";

/// The message of a node's failure answer (a `metav1.Status`), or its text.
pub async fn failure_message(response: http::Response<hyper::body::Incoming>) -> String {
    use http_body_util::BodyExt;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|s| s["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        })
}

/// Whether the node answered that what was asked for does not exist.
pub fn not_found(response: &http::Response<hyper::body::Incoming>) -> bool {
    response.status() == StatusCode::NOT_FOUND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_endpoint_is_its_internal_ip_and_kubelet_port() {
        let node = serde_json::json!({"status": {
            "addresses": [{"type": "Hostname", "address": "edge"}, {"type": "InternalIP", "address": "127.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }});
        assert_eq!(endpoint_of(&node), Some(("127.0.0.2".into(), 10250)));
        let unserved = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }});
        assert_eq!(endpoint_of(&unserved), None);
    }
}
