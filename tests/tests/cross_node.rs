//! Pods of different nodes reach each other through the authenticated tunnel between the
//! nodes' agents, and nothing but a node may use it.

use std::process::Command;

use skiff_tests::{Server, text};

/// A pod named `name` on `node` serving `message` on port 8080 of its address, labelled
/// `app: NAME`.
fn server_pod(name: &str, node: &str, message: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers:
  - name: serve
    image: samples.skiff.local/netkit:0.1.0
    args: [serve, "0.0.0.0:8080", "{message}"]
    ports: [{{containerPort: 8080}}]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// A pod named `name` on `node` asking `target` every 200 ms.
fn client_pod(name: &str, node: &str, target: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  containers:
  - name: get
    image: samples.skiff.local/netkit:0.1.0
    args: [get, "{target}"]
    env: [{{name: INTERVAL_MS, value: "200"}}]
"#
    )
}

#[test]
fn pods_reach_services_and_pods_on_another_node_through_the_tunnel() {
    let server = Server::start().unwrap();
    server.import_samples();
    let home = server.node_name();
    let edge = server.join_ready("edge-b");
    edge.import_sample("netkit", "samples.skiff.local/netkit:0.1.0");

    // A Service whose only endpoint is on edge-b, called from a pod of the server's node.
    server.apply(&server_pod("backend", "edge-b", "from edge-b"));
    server.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: backend}\nspec:\n  selector: {app: backend}\n  ports: [{port: 8080}]\n",
    );
    server.wait_for(
        "backend",
        "{.status.conditions[?(@.type=='Ready')].status}",
        "True",
    );
    server.apply(&client_pod(
        "caller",
        &home,
        "backend.default.svc.cluster.local:8080",
    ));
    let called = server.logs_until("caller", "get", |l| l.contains("from edge-b"));
    assert!(
        called.contains("backend.default.svc.cluster.local:8080: from edge-b"),
        "{called}"
    );

    // And the other way: a pod of edge-b reaches a pod of the server's node by its address.
    server.apply(&server_pod("home", &home, "from home"));
    let address = server.wait_for_nonempty("home", "{.status.podIP}");
    server.apply(&client_pod("visitor", "edge-b", &format!("{address}:8080")));
    let visited = server.logs_until("visitor", "get", |l| l.contains("from home"));
    assert!(visited.contains("from home"), "{visited}");

    // Both nodes relay through the tunnel, rather than reaching the other's addresses
    // directly; the callee sees the calling pod's own address.
    assert!(edge.log().contains("through the tunnel"), "{}", edge.log());
    assert!(server.log().contains("through the tunnel"));
    let caller_ip = server.wait_for_nonempty("caller", "{.status.podIP}");
    let served = server.logs_until("backend", "serve", |l| l.contains(&caller_ip));
    assert!(served.contains(&format!("served {caller_ip}:")), "{served}");

    // The administrator's certificate (system:masters) is refused at the tunnel, and so is a
    // client with no certificate.
    let port = server.field(
        "node/edge-b",
        "{.status.daemonEndpoints.kubeletEndpoint.Port}",
    );
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let decoded = |key: &str| {
        let line = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("the kubeconfig has no {key}"));
        let out = Command::new("base64")
            .args(["-d"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(line.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        skiff_tests::write_file(&server, key, &String::from_utf8(out.stdout).unwrap())
    };
    let (cert, key) = (
        decoded("client-certificate-data"),
        decoded("client-key-data"),
    );
    let url = format!(
        "https://127.0.0.1:{port}/tunnel?to={}:8080&from={caller_ip}",
        server.wait_for_nonempty("backend", "{.status.podIP}")
    );
    let admin = Command::new("curl")
        .args([
            "-sk",
            "-X",
            "POST",
            "-H",
            "Upgrade: skiff-tcp",
            "-H",
            "Connection: Upgrade",
        ])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(&url)
        .output()
        .unwrap();
    let answer = text(&admin);
    assert!(
        answer.contains("\"code\":403") && answer.contains("only nodes may use the tunnel"),
        "{answer}"
    );
    let anonymous = Command::new("curl")
        .args(["-sk", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "000");
}
