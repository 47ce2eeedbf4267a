//! Nodes joining the cluster, as k3s agents join: the server keeps a join token in
//! `DATA_DIR/node-token` naming the cluster CA's SHA-256 and a secret. A node fetches the CA
//! (`GET /skiff/v1/ca`, open to anyone: it is public), checks it against the token's hash, then
//! presents the secret (`POST /skiff/v1/join` with `Authorization: Bearer SECRET` and its name)
//! and receives its own client certificate, for `system:node:NAME` in group `system:nodes`.
//! On every start a node then asks, with that credential, for a serving certificate for its
//! name and addresses (`POST /skiff/v1/serving-certificate`), as a k3s agent asks for its
//! kubelet's: the API server reaches the node's endpoint through it. Those certificates come
//! from a CA of their own, trusted by the API server's node client alone, so that no node can
//! pass for the API server to kubectl.

use std::path::Path;
use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::UserInfo;
use crate::pki::{Authority, CertifiedKey, PkiError};

/// The group every node's credential names.
pub const NODES: &str = "system:nodes";

/// A parsed join token: `K10<CA SHA-256 hex>::node:<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub ca_hash: String,
    pub secret: String,
}

impl Token {
    pub fn parse(text: &str) -> Option<Token> {
        let rest = text.trim().strip_prefix("K10")?;
        let (hash, secret) = rest.split_once("::node:")?;
        let hex = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
        (hex(hash, 64) && !secret.is_empty()).then(|| Token {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    pub fn render(&self) -> String {
        format!("K10{}::node:{}", self.ca_hash, self.secret)
    }
}

/// The SHA-256 of a CA certificate's PEM text, as tokens name it.
pub fn ca_hash(ca_pem: &str) -> String {
    format!("{:x}", Sha256::digest(ca_pem.as_bytes()))
}

/// The server's join token: read from `path`, or made (and written, 0600) on first start. A
/// token naming another CA (the CA was replaced) is made again.
pub fn load_or_create(path: &Path, authority: &Authority) -> std::io::Result<Token> {
    let hash = ca_hash(&authority.ca.cert_pem);
    if let Ok(text) = std::fs::read_to_string(path)
        && let Some(token) = Token::parse(&text)
        && token.ca_hash == hash
    {
        return Ok(token);
    }
    let secret: [u8; 24] = rand::random();
    let token = Token {
        ca_hash: hash,
        secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
    };
    crate::pki::write_private(path, &format!("{}\n", token.render()))?;
    Ok(token)
}

/// Whether two secrets are equal, in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, &body)
}

fn json_response(code: StatusCode, body: &serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct JoinRequest {
    name: String,
}

/// Is `name` a valid Node name (a DNS-1123 subdomain)?
fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The routes nodes join through (outside the API's authentication).
pub fn routes(
    authority: Arc<Authority>,
    node_serving: Arc<Authority>,
    token: Token,
) -> axum::Router {
    let ca = authority.ca.cert_pem.clone();
    axum::Router::new()
        .route(
            "/skiff/v1/ca",
            get(move || {
                let ca = ca.clone();
                async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], ca) }
            }),
        )
        .route(
            "/skiff/v1/join",
            post({
                let authority = authority.clone();
                move |headers: HeaderMap, body: axum::body::Bytes| {
                    let (authority, token) = (authority.clone(), token.clone());
                    async move { join(&authority, &token, &headers, &body) }
                }
            }),
        )
        .route(
            "/skiff/v1/serving-certificate",
            post(
                move |user: Option<Extension<UserInfo>>, body: axum::body::Bytes| {
                    let (authority, node_serving) = (authority.clone(), node_serving.clone());
                    async move {
                        serving_certificate(&authority, &node_serving, user.map(|u| u.0), &body)
                    }
                },
            ),
        )
}

/// The answer carrying a credential the CA issued, with the CA to trust beside it.
fn issued(authority: &Authority, credential: &CertifiedKey) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "ca": authority.ca.cert_pem,
            "certificate": credential.cert_pem,
            "key": credential.key_pem,
        }),
    )
}

#[derive(serde::Deserialize)]
struct ServingRequest {
    addresses: Vec<String>,
}

/// Issues a node its serving certificate from `node_serving`, for its own name and the
/// addresses it names; the answer's CA is the cluster's, which its clients' certificates chain
/// to, and `nodeServingCA` the one its peers' serving certificates chain to.
fn serving_certificate(
    authority: &Authority,
    node_serving: &Authority,
    user: Option<UserInfo>,
    body: &[u8],
) -> Response {
    let Some(user) = user else {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    };
    let node = user
        .name
        .strip_prefix("system:node:")
        .filter(|_| user.groups.iter().any(|g| g == NODES));
    let Some(node) = node else {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "user \"{}\" is not a node: only nodes get serving certificates",
                user.name
            ),
        );
    };
    let request: ServingRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("the serving certificate request is not valid JSON: {e}"),
            );
        }
    };
    let mut names = vec![node.to_string()];
    for address in request.addresses {
        if !names.contains(&address) {
            names.push(address);
        }
    }
    match node_serving.issue_serving(&user.name, &names) {
        Ok(credential) => json_response(
            StatusCode::OK,
            &json!({
                "ca": authority.ca.cert_pem,
                "certificate": credential.cert_pem,
                "key": credential.key_pem,
                // What the node checks its peers' serving certificates against.
                "nodeServingCA": node_serving.ca.cert_pem,
            }),
        ),
        Err(e) => status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("addresses: Invalid value: {names:?}: {e}"),
        ),
    }
}

fn join(authority: &Authority, token: &Token, headers: &HeaderMap, body: &[u8]) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(presented, &token.secret) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let request: JoinRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("the join request is not valid JSON: {e}"),
            );
        }
    };
    if !valid_node_name(&request.name) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "name: Invalid value: {:?}: a node name must be a lowercase RFC 1123 subdomain",
                request.name
            ),
        );
    }
    let issued: Result<_, PkiError> =
        authority.client(&format!("system:node:{}", request.name), &[NODES]);
    match issued {
        Ok(credential) => self::issued(authority, &credential),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("issuing the node's certificate: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_malformed_text() {
        let token = Token {
            ca_hash: "a".repeat(64),
            secret: "s3cret".into(),
        };
        assert_eq!(Token::parse(&token.render()), Some(token));
        for bad in [
            "",
            "K10abc::node:x",
            &format!("K10{}::node:", "a".repeat(64)),
        ] {
            assert_eq!(Token::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }

    #[test]
    fn only_nodes_get_serving_certificates_and_from_their_own_ca() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Authority::load_or_create(&dir.path().join("tls")).unwrap();
        let nodes =
            Authority::load_or_create_named(&dir.path().join("node-serving"), "nodes").unwrap();
        let body = br#"{"addresses": ["127.0.0.2"]}"#;
        let anonymous = serving_certificate(&cluster, &nodes, None, body);
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let admin = UserInfo::new("admin", &["system:masters"]);
        let refused = serving_certificate(&cluster, &nodes, Some(admin), body);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let node = UserInfo::new("system:node:edge", &[NODES]);
        let bad_body = serving_certificate(&cluster, &nodes, Some(node.clone()), b"{");
        assert_eq!(bad_body.status(), StatusCode::BAD_REQUEST);
        let issued = serving_certificate(&cluster, &nodes, Some(node), body);
        assert_eq!(issued.status(), StatusCode::OK);
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(issued.into_body()))
                .unwrap()
                .to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // Clients are checked against the cluster CA; the certificate is the nodes' CA's.
        assert_eq!(answer["ca"], cluster.ca.cert_pem.as_str());
        let pem = answer["certificate"].as_str().unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let (_, nodes_ca) = x509_parser::pem::parse_x509_pem(nodes.ca.cert_pem.as_bytes()).unwrap();
        let nodes_ca = nodes_ca.parse_x509().unwrap();
        assert!(cert.verify_signature(Some(nodes_ca.public_key())).is_ok());
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:node:edge"
        );
    }

    #[test]
    fn node_names_are_dns_subdomains() {
        assert!(valid_node_name("edge-1.example"));
        assert!(!valid_node_name("Edge"));
        assert!(!valid_node_name("-edge"));
        assert!(!valid_node_name(""));
    }
}
