//! `skiff node` joining a server with its join token: the node gets its own credential,
//! registers, runs pods bound to it, and its Lease goes stale once it stops.

use std::time::Duration;

use skiff_tests::{JoinedNode, Server, eventually, text};

/// A server, its join token, and node `name` joined to it and Ready.
fn server_with_node(name: &str) -> (Server, String, JoinedNode) {
    let server = Server::start().unwrap();
    let token = server.join_token();
    let node = server.join_ready(name);
    (server, token, node)
}

/// Imports the hello sample into the node's own store as `registry.local/hello:1`.
fn import_hello(node: &JoinedNode) {
    node.import_sample("hello", "registry.local/hello:1");
}

fn lease_renewed(server: &Server, node: &str) -> String {
    server
        .kubectl_ok(&[
            "get",
            "lease",
            node,
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
        .trim()
        .to_string()
}

#[test]
fn a_node_joins_with_the_token_runs_pods_and_goes_stale_when_stopped() {
    let (server, _, mut node) = server_with_node("edge-1");
    // Each node has a pod range of its own.
    let ranges = eventually(Duration::from_secs(30), || {
        let out = server.kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.spec.podCIDR}{\"\\n\"}{end}",
        ]);
        let ranges: std::collections::BTreeSet<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        (ranges.len() == 2).then_some(ranges)
    })
    .expect("both nodes get distinct pod CIDRs");
    assert_eq!(
        ranges.into_iter().collect::<Vec<_>>(),
        [
            format!("{}0.0/24", server.pod_prefix()),
            format!("{}1.0/24", server.pod_prefix())
        ]
    );
    // The node keeps its own credential, readable by it alone.
    let credential = node.dir.path().join("node/edge-1.kubeconfig");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&credential).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A pod bound to the joined node runs there, from that node's own image store.
    import_hello(&node);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: on-edge}
spec:
  nodeName: edge-1
  restartPolicy: Never
  containers:
  - {name: hello, image: registry.local/hello:1}
"#;
    let out = server.kubectl_stdin(&["apply", "-f", "-"], pod);
    assert!(out.status.success(), "{}", text(&out));
    eventually(Duration::from_secs(60), || {
        let phase = server.kubectl_ok(&["get", "pod", "on-edge", "-o", "jsonpath={.status.phase}"]);
        (phase == "Succeeded").then_some(())
    })
    .expect("the pod on edge-1 completes");
    // Its logs stay on edge-1; the API server fetches them from there.
    let logs = server.kubectl_ok(&["logs", "on-edge"]);
    assert!(logs.starts_with("hello, world\narg 0: hello\n"), "{logs}");

    // Stopped, the node renews its Lease no more, while the server's own node still does.
    let own = server.node_name();
    let own = own
        .split_whitespace()
        .find(|n| *n != "edge-1")
        .unwrap()
        .to_string();
    node.kill();
    let stale = lease_renewed(&server, "edge-1");
    let own_before = lease_renewed(&server, &own);
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        lease_renewed(&server, "edge-1"),
        stale,
        "a stopped node's lease stays as it was"
    );
    assert_ne!(
        lease_renewed(&server, &own),
        own_before,
        "a running node renews its lease"
    );
}

#[test]
fn a_wrong_token_is_refused() {
    let server = Server::start().unwrap();
    let token = std::fs::read_to_string(server.data_dir().join("node-token")).unwrap();
    let (hash, _) = token.trim().split_once("::node:").unwrap();
    let mut node = server.join_with("intruder", &format!("{hash}::node:not-the-secret"));
    let status = node.wait();
    assert!(!status.success());
    let log = std::fs::read_to_string(node.dir.path().join("node.log")).unwrap();
    assert!(
        log.contains("the server refused the token's secret"),
        "{log}"
    );
    assert!(
        !server
            .kubectl(&["get", "node", "intruder"])
            .status
            .success()
    );
}

#[test]
fn a_pod_deleted_while_its_node_was_away_never_starts() {
    let (server, token, mut node) = server_with_node("edge-2");
    node.kill();

    // While the node is away, a pod is bound to it and deleted; a finalizer keeps the pod
    // around, so that what the node does with it can be seen.
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: never, finalizers: [skiff.test/hold]}
spec:
  nodeName: edge-2
  restartPolicy: Never
  containers:
  - {name: hello, image: registry.local/hello:1}
"#;
    let out = server.kubectl_stdin(&["apply", "-f", "-"], pod);
    assert!(out.status.success(), "{}", text(&out));
    server.kubectl_ok(&["delete", "pod", "never", "--wait=false"]);
    import_hello(&node);

    node.restart(&server, &token);
    // The node finishes the deletion (grace period 0) without starting anything.
    server.wait_for("never", "{.metadata.deletionGracePeriodSeconds}", "0");
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=never",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for reason in ["Pulled", "Created", "Started"] {
        assert!(!events.contains(reason), "{reason} in {events}");
    }
    let state = server.kubectl_ok(&[
        "get",
        "pod",
        "never",
        "-o",
        "jsonpath={.status.containerStatuses[0].state}",
    ]);
    assert!(
        !state.contains("running") && !state.contains("terminated"),
        "{state}"
    );
    server.kubectl_ok(&[
        "patch",
        "pod",
        "never",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
    ]);
    server.kubectl_ok(&["wait", "--for=delete", "pod/never", "--timeout=30s"]);
}

/// `GET path` on a node's endpoint, trusting `ca_pem` and presenting `client` (a certificate
/// and key, PEM) if given: the status and body, or why the connection failed.
async fn node_get(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    path: &str,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", format!("127.0.0.1:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// The PEM a kubeconfig embeds under `key` (base64, as kubeconfigs hold it).
fn kubeconfig_pem(path: &std::path::Path, key: &str) -> String {
    use base64::Engine;
    let text = std::fs::read_to_string(path).unwrap();
    let encoded = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("{key} in {}", path.display()));
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap();
    String::from_utf8(der).unwrap()
}

/// Runs on `node` a pod `name` with `labels` (flow YAML) whose container prints, spins for
/// `spin_ms`, prints how many rounds it ran and ends; returns once it is Running.
fn run_spinner(server: &Server, node: &str, name: &str, labels: &str, spin_ms: u64) {
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: hello
    image: registry.local/hello:1
    env: [{{name: SPIN_MS, value: "{spin_ms}"}}]
"#
    );
    let out = server.kubectl_stdin(&["apply", "-f", "-"], &pod);
    assert!(out.status.success(), "{}", text(&out));
    server.wait_for(name, "{.status.phase}", "Running");
}

#[test]
fn the_api_server_serves_a_joined_nodes_logs_which_only_it_may_read() {
    let (server, _, node) = server_with_node("edge-3");
    import_hello(&node);
    // A container that prints, works for a while, then prints again and ends.
    run_spinner(&server, "edge-3", "slow", "{}", 1500);
    // Followed, the log goes on to the container's last line and ends when the container does.
    let followed = server.kubectl_ok(&["logs", "-f", "slow", "--request-timeout=60s"]);
    assert!(followed.starts_with("hello, world\n"), "{followed}");
    assert!(
        followed.lines().last().unwrap_or("").starts_with("spun "),
        "{followed}"
    );
    let phase = server.kubectl_ok(&["get", "pod", "slow", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Succeeded");
    let tail = server.kubectl_ok(&["logs", "slow", "--tail=1", "--timestamps"]);
    let (time, line) = tail.trim_end().split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{tail}");
    assert!(line.starts_with("spun "), "{tail}");
    let previous = server.kubectl(&["logs", "slow", "--previous"]);
    assert!(!previous.status.success());
    assert!(
        text(&previous)
            .contains("previous terminated container \"hello\" in pod \"slow\" not found"),
        "{}",
        text(&previous)
    );

    // The node's endpoint answers the cluster's administrators, not other nodes, and never a
    // client without a certificate of the cluster CA.
    let port: u16 = server
        .kubectl_ok(&[
            "get",
            "node",
            "edge-3",
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ])
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    let uid = server.kubectl_ok(&["get", "pod", "slow", "-o", "jsonpath={.metadata.uid}"]);
    let path = format!("/containerLogs/default/slow/hello?uid={uid}&run=0&tailLines=1");
    let admin = server.kubeconfig();
    // The node's certificate comes from the nodes' serving CA, which kubectl never trusts: a
    // client trusting the cluster CA alone refuses the node.
    let cluster_ca = kubeconfig_pem(&admin, "certificate-authority-data");
    let ca = std::fs::read_to_string(server.data_dir().join("tls/node-serving/ca.crt")).unwrap();
    assert_ne!(ca, cluster_ca);
    let own = node.dir.path().join("node/edge-3.kubeconfig");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let as_user = |kubeconfig: &std::path::Path| {
        let cert = kubeconfig_pem(kubeconfig, "client-certificate-data");
        let key = kubeconfig_pem(kubeconfig, "client-key-data");
        rt.block_on(node_get(port, &ca, Some((&cert, &key)), &path))
            .unwrap()
    };
    let (status, body) = as_user(&admin);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("spun "), "{body}");
    let (status, body) = as_user(&own);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"reason\":\"Forbidden\""), "{body}");
    let anonymous = rt.block_on(node_get(port, &ca, None, &path));
    assert!(
        anonymous.as_ref().is_err_and(|e| !e.contains("refused")),
        "{anonymous:?}"
    );
    let cert = kubeconfig_pem(&admin, "client-certificate-data");
    let key = kubeconfig_pem(&admin, "client-key-data");
    let impostor = rt.block_on(node_get(port, &cluster_ca, Some((&cert, &key)), &path));
    assert!(
        impostor.as_ref().is_err_and(|e| e.contains("certificate")),
        "{impostor:?}"
    );

    // A node that is gone: kubectl says why its logs cannot be had.
    drop(node);
    let gone = server.kubectl(&["logs", "slow"]);
    assert!(!gone.status.success());
    assert!(
        text(&gone).contains(&format!("dial tcp 127.0.0.1:{port}: connect")),
        "{}",
        text(&gone)
    );
}

#[test]
fn kubectl_top_reads_a_joined_nodes_usage_from_its_endpoint() {
    let (server, _, node) = server_with_node("edge-4");
    import_hello(&node);
    run_spinner(&server, "edge-4", "spinner", "{app: spin}", 600_000);
    // The pod's metrics come from edge-4's endpoint, selected by label as kubectl top -l asks.
    let top = eventually(Duration::from_secs(30), || {
        let out = server.kubectl(&["top", "pod", "-l", "app=spin", "--no-headers"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .expect("kubectl top pod answers");
    let row: Vec<&str> = top.split_whitespace().collect();
    assert_eq!(row.len(), 3, "{top}");
    assert_eq!(row[0], "spinner");
    let millicores = row[1].strip_suffix('m').and_then(|m| m.parse::<u64>().ok());
    assert!(millicores.is_some_and(|m| m > 0), "{top}");
    assert!(row[2].ends_with("Mi"), "{top}");
    let none = server.kubectl_ok(&["top", "pod", "-l", "app=other"]);
    assert_eq!(none, "");
    // Both nodes answer for themselves.
    let nodes = server.kubectl_ok(&["top", "node", "--no-headers"]);
    let names: Vec<&str> = nodes
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names.len(), 2, "{nodes}");
    assert!(names.contains(&"edge-4"), "{nodes}");
    let raw = server.kubectl_ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/edge-4"]);
    let metrics: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(metrics["kind"], "NodeMetrics");
    assert!(
        metrics["usage"]["memory"]
            .as_str()
            .is_some_and(|m| m != "0"),
        "{raw}"
    );
    // Once the node is gone, its pods and itself have no metrics, and the rest still answer.
    drop(node);
    let gone = server.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/edge-4"]);
    assert!(!gone.status.success());
    assert!(
        text(&gone).contains("nodemetrics.metrics.k8s.io \"edge-4\" not found"),
        "{}",
        text(&gone)
    );
    let nodes = server.kubectl_ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]);
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(1), "{nodes}");
}
