//! Container probes as the kubelet runs them: httpGet and tcpSocket checks with the upstream
//! timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold,
//! failureThreshold) and the upstream failure messages, which the kubelet's Unhealthy events
//! carry ("HTTP probe failed with statuscode: 500", "dial tcp 10.42.0.5:80: connect:
//! connection refused"). A probe reaches the container at its pod's address, as the kubelet's
//! do, through the pod network (see [`crate::net`]).
//!
//! A Wasm container has no commands to run, so exec probes (and gRPC ones, which need a health
//! service the node cannot reach yet) are refused when the container is created, with a
//! message saying so, rather than failing forever.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use k8s_openapi::api::core::v1::{Container, Probe as ProbeSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use crate::pods::AbortOnDrop;

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An HTTP GET answered with a status from 200 to 399.
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// A TCP connection accepted.
    Tcp { host: String, port: u16 },
}

/// One probe of a container, its timing fields defaulted as upstream defaults them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// The probes of one container.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub startup: Option<Probe>,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
}

fn seconds(value: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(min) as u64)
}

/// The port a probe names: a number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                format!("the probe names port {name:?}, which the container does not define")
            })?,
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("the probe's port {number} is out of range"))
}

impl Probe {
    /// The probe a spec describes for `container`, reached at `host` unless the probe names its
    /// own. `Err` says why the node cannot run it.
    pub fn from_spec(spec: &ProbeSpec, container: &Container, host: &str) -> Result<Self, String> {
        let action = if let Some(get) = &spec.http_get {
            if get
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
            {
                return Err(
                    "HTTPS probes are not supported by this node: the node serves \
                            containers over HTTP"
                        .to_string(),
                );
            }
            let path = get
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            Action::Http {
                host: get
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| host.into()),
                port: resolve_port(&get.port, container)?,
                path: if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                },
                headers: get
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(tcp) = &spec.tcp_socket {
            Action::Tcp {
                host: tcp
                    .host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| host.into()),
                port: resolve_port(&tcp.port, container)?,
            }
        } else if spec.exec.is_some() {
            return Err(
                "exec probes are not supported: a WebAssembly container has no \
                        commands to run; use an httpGet or tcpSocket probe"
                    .to_string(),
            );
        } else if spec.grpc.is_some() {
            return Err(
                "gRPC probes are not supported by this node yet; use an httpGet or \
                        tcpSocket probe"
                    .to_string(),
            );
        } else {
            return Err("the probe names no handler (httpGet or tcpSocket)".to_string());
        };
        Ok(Probe {
            action,
            initial_delay: seconds(spec.initial_delay_seconds, 0, 0),
            period: seconds(spec.period_seconds, 10, 1),
            timeout: seconds(spec.timeout_seconds, 1, 1),
            success_threshold: spec.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: spec.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }

    /// Runs the check once: `Err` carries the kubelet's failure message.
    pub async fn check(&self) -> Result<(), String> {
        match &self.action {
            Action::Tcp { host, port } => {
                let target = format!("{host}:{port}");
                let dial = crate::net::host_target(host, *port);
                match tokio::time::timeout(self.timeout, TcpStream::connect(&dial)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("dial tcp {target}: connect: {}", os_message(&e))),
                    Err(_) => Err(format!("dial tcp {target}: i/o timeout")),
                }
            }
            Action::Http {
                host,
                port,
                path,
                headers,
            } => {
                let url = format!("http://{host}:{port}{path}");
                match tokio::time::timeout(self.timeout, http_get(host, *port, path, headers)).await
                {
                    Ok(Ok(status)) if (200..400).contains(&status) => Ok(()),
                    Ok(Ok(status)) => Err(format!("HTTP probe failed with statuscode: {status}")),
                    Ok(Err(e)) => Err(format!("Get \"{url}\": {e}")),
                    Err(_) => Err(format!(
                        "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded \
                         while awaiting headers)"
                    )),
                }
            }
        }
    }
}

/// An I/O error in Go's words ("connection refused"), without Rust's "(os error 111)".
fn os_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// One GET over a fresh HTTP/1.1 connection, as the kubelet's prober sends it; the status.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let target = format!("{host}:{port}");
    let stream = TcpStream::connect(crate::net::host_target(host, port))
        .await
        .map_err(|e| format!("dial tcp {target}: connect: {}", os_message(&e)))?;
    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // The connection's task goes with this future, also when a timeout drops it.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let custom_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    let mut request = http::Request::get(path);
    if !custom_host {
        request = request.header(http::header::HOST, &target);
    }
    let mut request = request
        .header(http::header::USER_AGENT, "kube-probe/1.33")
        .header(http::header::ACCEPT, "*/*")
        .header(http::header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid probe request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    Ok(response?.status().as_u16())
}

impl Probes {
    /// The probes of `container`, reached at `host`.
    pub fn of(container: &Container, host: &str) -> Result<Self, String> {
        let one = |spec: &Option<ProbeSpec>, kind: &str| {
            spec.as_ref()
                .map(|s| Probe::from_spec(s, container, host))
                .transpose()
                .map_err(|e| format!("{kind} probe: {e}"))
        };
        Ok(Probes {
            startup: one(&container.startup_probe, "startup")?,
            liveness: one(&container.liveness_probe, "liveness")?,
            readiness: one(&container.readiness_probe, "readiness")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: serde_json::Value) -> Container {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn specs_default_and_resolve_named_ports() {
        let c = container(serde_json::json!({
            "name": "web", "image": "web:1",
            "ports": [{"name": "http", "containerPort": 8080, "hostPort": 18080},
                      {"name": "admin", "containerPort": 9090}],
            "livenessProbe": {"httpGet": {"port": "http", "path": "healthz"}},
            "readinessProbe": {"tcpSocket": {"port": 9090}, "periodSeconds": 0,
                               "failureThreshold": 5, "initialDelaySeconds": 2},
        }));
        let probes = Probes::of(&c, "10.42.0.5").unwrap();
        let liveness = probes.liveness.unwrap();
        // The probe reaches the container's port at the pod's address, whatever its hostPort.
        assert_eq!(
            liveness.action,
            Action::Http {
                host: "10.42.0.5".into(),
                port: 8080,
                path: "/healthz".into(),
                headers: vec![]
            }
        );
        assert_eq!(
            (
                liveness.period,
                liveness.timeout,
                liveness.failure_threshold
            ),
            (Duration::from_secs(10), Duration::from_secs(1), 3)
        );
        let readiness = probes.readiness.unwrap();
        assert_eq!(
            readiness.action,
            Action::Tcp {
                host: "10.42.0.5".into(),
                port: 9090
            }
        );
        assert_eq!(readiness.period, Duration::from_secs(1));
        assert_eq!(readiness.initial_delay, Duration::from_secs(2));
        assert_eq!(readiness.failure_threshold, 5);
        assert!(probes.startup.is_none());
    }

    #[test]
    fn probes_the_node_cannot_run_are_refused() {
        let exec = container(serde_json::json!({
            "name": "a", "livenessProbe": {"exec": {"command": ["true"]}}}));
        assert!(
            Probes::of(&exec, "h")
                .unwrap_err()
                .starts_with("liveness probe: exec probes")
        );
        let unknown = container(serde_json::json!({
            "name": "a", "readinessProbe": {"httpGet": {"port": "nope"}}}));
        assert!(Probes::of(&unknown, "h").unwrap_err().contains("\"nope\""));
    }

    #[tokio::test]
    async fn checks_report_as_the_kubelet_words_them() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 4096];
                let n = tokio::io::AsyncReadExt::read(&mut socket, &mut buf)
                    .await
                    .unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(request.starts_with("GET /healthz HTTP/1.1"), "{request}");
                assert!(
                    request.to_lowercase().contains("user-agent: kube-probe/"),
                    "{request}"
                );
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                tokio::io::AsyncWriteExt::write_all(&mut socket, reply.as_bytes())
                    .await
                    .unwrap();
            }
        });
        let probe = |action| Probe {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            success_threshold: 1,
            failure_threshold: 1,
        };
        let http = probe(Action::Http {
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: vec![],
        });
        assert_eq!(http.check().await, Ok(()));
        assert_eq!(
            http.check().await,
            Err("HTTP probe failed with statuscode: 500".to_string())
        );
        server.await.unwrap();
        // Nothing listens any more.
        let tcp = probe(Action::Tcp {
            host: "127.0.0.1".into(),
            port,
        });
        assert_eq!(
            tcp.check().await,
            Err(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }
}
