//! `kubectl port-forward` to pods, Services and Deployments, through the API server to the
//! node running the pod: over a websocket carrying SPDY (kubectl's first choice) and over a
//! SPDY upgrade (its fallback), to the server's own node and to a joined one.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use skiff_tests::{Server, eventually, http_get, stdout_lines, text};

/// A `kubectl port-forward` running in the background, stopped when dropped.
struct Forward {
    child: Child,
    lines: Receiver<String>,
    /// The local port it forwards from.
    port: u16,
}

impl Forward {
    /// Starts `kubectl port-forward TARGET :REMOTE` (a free local port) and waits until it
    /// listens; `spdy` turns kubectl's websocket dialer off.
    fn start(server: &Server, target: &str, remote: u16, spdy: bool) -> Forward {
        let mut command: Command =
            server.kubectl_command(&["port-forward", target, &format!(":{remote}"), "-v=4"]);
        if spdy {
            command.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kubectl port-forward");
        let lines = stdout_lines(&mut child);
        // "Forwarding from 127.0.0.1:PORT -> REMOTE"
        let port = loop {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(port) = line
                        .strip_prefix("Forwarding from 127.0.0.1:")
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|p| p.parse().ok())
                    {
                        break port;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().expect("kubectl's output");
                    panic!(
                        "kubectl port-forward {target} never listened: {}",
                        text(&out)
                    );
                }
            }
        };
        Forward { child, lines, port }
    }

    /// Forwards to `remote`, where nothing listens: the local connection is closed without
    /// an answer. Returns what kubectl said.
    fn refused(server: &Server, target: &str, remote: u16, spdy: bool) -> String {
        let forward = Forward::start(server, target, remote, spdy);
        let answer = http_get("127.0.0.1", forward.port, "/");
        assert!(
            answer.as_ref().is_ok_and(String::is_empty) || answer.is_err(),
            "{answer:?}"
        );
        forward.stop()
    }

    /// Stops kubectl and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut stderr);
        }
        let _ = self.child.wait();
        while self.lines.try_recv().is_ok() {}
        stderr
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: samples.skiff.local/http-hello:0.1.0
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
        env:
        - {name: GREETING_NAME, value: forwarded}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
"#;

/// Asks the forwarded port for `/` `times` times, each on a connection of its own.
fn ask(forward: &Forward, times: usize) -> Vec<String> {
    (0..times)
        .map(|_| http_get("127.0.0.1", forward.port, "/").expect("a forwarded request"))
        .collect()
}

#[test]
fn port_forward_reaches_services_deployments_and_pods_over_websockets_and_spdy() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply(WEB);
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);

    // `kubectl port-forward svc/web 18080:8080` (a free local port here): kubectl picks a pod
    // of the Service and the container port behind 8080; every connection is answered.
    for spdy in [false, true] {
        let forward = Forward::start(&server, "svc/web", 8080, spdy);
        let answers = ask(&forward, 5);
        for answer in &answers {
            assert!(answer.contains("hello, forwarded"), "{answer}");
            assert!(answer.contains("pod web-"), "{answer}");
        }
        let stderr = forward.stop();
        // kubectl falls back to SPDY only when the websocket upgrade fails.
        assert!(
            !stderr.contains("fallback"),
            "the websocket dialer was refused: {stderr}"
        );
    }

    let forward = Forward::start(&server, "deployment/web", 8080, false);
    assert!(
        ask(&forward, 2)
            .iter()
            .all(|a| a.contains("hello, forwarded"))
    );
    drop(forward);

    // A port the pod serves on localhost only is reached too, as from within the pod.
    server.apply_on_node(&skiff_tests::pod_on_node(
        "local",
        r#"
  containers:
  - name: local
    image: samples.skiff.local/netkit:0.1.0
    args: [serve, "127.0.0.1:9090", "only here"]
"#,
    ));
    server.wait_for("local", "{.status.phase}", "Running");
    let forward = eventually(Duration::from_secs(30), || {
        let forward = Forward::start(&server, "pod/local", 9090, true);
        let answer = http_get("127.0.0.1", forward.port, "/").ok()?;
        answer.contains("only here").then_some(forward)
    });
    assert!(
        forward.is_some(),
        "the pod's localhost port was never reached"
    );
    drop(forward);

    // kube-rs speaks websocket channels (`v4.channel.k8s.io`, `?ports=`): a data and an error
    // channel per port.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let client = server.client().await.unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client, "default");
        let mut forwarder = pods.portforward("local", &[9090]).await.unwrap();
        let mut stream = forwarder.take_stream(9090).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer));
        read.await.expect("the answer comes").unwrap();
        answer
    });
    assert!(answer.contains("only here"), "{answer}");

    // Nothing listens on the port: the connection is closed, and kubectl says why.
    let stderr = Forward::refused(&server, "pod/local", 9999, false);
    assert!(
        stderr.contains("error forwarding port 9999 to pod local"),
        "{stderr}"
    );
}

#[test]
fn port_forward_reaches_a_pod_on_a_joined_node() {
    let server = Server::start().unwrap();
    let edge = server.join_ready("edge-pf");
    edge.import_sample("http-hello", "samples.skiff.local/http-hello:0.1.0");
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeName: edge-pf
  containers:
  - name: web
    image: samples.skiff.local/http-hello:0.1.0
    ports: [{containerPort: 8080}]
    env: [{name: GREETING_NAME, value: edge}]
"#,
    );
    server.wait_for("far", "{.status.phase}", "Running");
    for spdy in [false, true] {
        let forward = eventually(Duration::from_secs(30), || {
            let forward = Forward::start(&server, "pod/far", 8080, spdy);
            let answer = http_get("127.0.0.1", forward.port, "/").ok()?;
            answer.contains("hello, edge").then_some(forward)
        });
        assert!(
            forward.is_some(),
            "the joined node's pod was never reached; node log: {}",
            edge.log()
        );
    }

    // A forward to a port nothing serves tells the node's reason.
    let stderr = Forward::refused(&server, "pod/far", 9999, true);
    assert!(
        stderr.contains("error forwarding port 9999 to pod far") && stderr.contains("refused"),
        "{stderr}"
    );
}
