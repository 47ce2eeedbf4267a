//! Outgoing `wasi:http` requests in the pod network. They do not pass through the socket
//! layer, so the same routing is done here: the request's host is resolved as the pod's
//! resolver resolves it (`http://backend/` is the `backend` Service of the pod's namespace),
//! and a plain HTTP request goes where a socket's connect to that address would (a Service's
//! endpoint, round robin; a pod; the pod's own localhost; a host outside), from the calling
//! pod's address within the node. HTTPS is for hosts outside the cluster, sent as wasmtime
//! sends it; to an address inside it is refused (`destination-ip-prohibited`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::dns::PodDns;
use super::sockets::PodSockets;
use super::{NodeNetwork, PodAddress, SERVICE_CIDR};

/// How long a connection may take when the request does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// The `wasi:http` hooks of one instance of a pod's container.
pub struct PodHttp {
    sockets: PodSockets,
}

impl PodHttp {
    pub fn new(pod: PodAddress, node: Arc<NodeNetwork>, dns: Arc<PodDns>) -> PodHttp {
        PodHttp {
            sockets: PodSockets::new(pod, node, dns),
        }
    }
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for PodHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        let plain = request.uri().scheme() != Some(&http::uri::Scheme::HTTPS);
        let host = request
            .uri()
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let port = request
            .uri()
            .port_u16()
            .unwrap_or(if plain { 80 } else { 443 });
        let resolving = self.sockets.resolve(&host);
        let sockets = self.sockets.clone();
        Box::new(async move {
            let ip = match resolving.await.and_then(|ips| ips.first().copied()) {
                Some(ip) => ip,
                None => {
                    return Err(Error::DnsError {
                        rcode: Some("NXDOMAIN".into()),
                        info_code: None,
                    });
                }
            };
            let in_cluster = ip.is_loopback()
                || sockets.pod().cluster().contains(ip)
                || SERVICE_CIDR.contains(ip);
            if !plain {
                // HTTPS leaves the cluster only: wasmtime's client verifies the name against
                // public roots, which no in-cluster address has a certificate from.
                if in_cluster {
                    return Err(Error::DestinationIpProhibited);
                }
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                return Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ));
            }
            // Plain HTTP goes to the address the pod's resolver gave, as a socket's connect.
            let (target, from) = sockets
                .route(SocketAddr::new(IpAddr::V4(ip), port))
                .map_err(|_| Error::ConnectionRefused)?;
            send(request, sockets.tunnel().clone(), target, from, options).await
        })
    }
}

/// Sends a plain HTTP/1.1 request over a connection to `target` from `from`.
async fn send(
    mut request: http::Request<WasiBody>,
    tunnel: super::tunnel::Tunnel,
    target: SocketAddr,
    from: Option<std::net::Ipv4Addr>,
    options: Option<RequestOptions>,
) -> Sent {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let stream = tokio::time::timeout(connect_timeout, tunnel.connect(target, from))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
            _ => Error::Connect(e),
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
            .await
            .map_err(Error::from)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // The request line names the path only; the host is in the Host header.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        )
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    Ok((
        response.map(|body| body.map_err(Error::from).boxed_unsync()),
        Box::new(async { Ok(()) }),
    ))
}
