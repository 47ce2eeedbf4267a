//! `skiff node` joining a server with its join token: the node gets its own credential,
//! registers, runs pods bound to it, and its Lease goes stale once it stops.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skiff_tests::{Server, eventually, sample, skiff_binary, text};

/// A `skiff node` process, killed when dropped.
struct Node {
    child: Child,
    dir: tempfile::TempDir,
}

impl Node {
    /// Imports the hello sample into the node's own store as `registry.local/hello:1`.
    fn import_hello(&self) {
        let wasm = sample("hello");
        let out = Command::new(skiff_binary())
            .args(["image", "import", wasm.to_str().unwrap()])
            .args(["--name", "registry.local/hello:1", "--data-dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_url(server: &Server) -> String {
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("the kubeconfig names the server")
        .to_string()
}

fn join(server: &Server, name: &str, token: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_node(server, name, token, dir.path());
    Node { child, dir }
}

/// Starts `skiff node` with its data in `dir` (appending to its log there).
fn spawn_node(server: &Server, name: &str, token: &str, dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .unwrap();
    Command::new(skiff_binary())
        .args([
            "node",
            "--server",
            &server_url(server),
            "--token",
            token,
            "--name",
            name,
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("SKIFF_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A server, its join token, and node `name` joined to it and Ready.
fn server_with_node(name: &str) -> (Server, String, Node) {
    let server = Server::start().unwrap();
    let token = std::fs::read_to_string(server.data_dir().join("node-token")).unwrap();
    let token = token.trim().to_string();
    let node = join(&server, name, &token);
    wait_ready(&server, &node, name);
    (server, token, node)
}

fn wait_ready(server: &Server, node: &Node, name: &str) {
    eventually(Duration::from_secs(60), || {
        let out = server.kubectl(&["get", "node", name, "--no-headers"]);
        String::from_utf8_lossy(&out.stdout)
            .contains(" Ready ")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{name} never became Ready: {}",
            std::fs::read_to_string(node.dir.path().join("node.log")).unwrap_or_default()
        )
    });
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
        ["10.42.0.0/24", "10.42.1.0/24"]
    );
    // The node keeps its own credential, readable by it alone.
    let credential = node.dir.path().join("node/edge-1.kubeconfig");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&credential).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A pod bound to the joined node runs there, from that node's own image store.
    node.import_hello();
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
    // Its logs stay on edge-1 until the API server proxies to nodes, and kubectl says so.
    let logs = server.kubectl(&["logs", "on-edge"]);
    assert!(!logs.status.success());
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("are kept on node edge-1"),
        "{}",
        text(&logs)
    );

    // Stopped, the node renews its Lease no more, while the server's own node still does.
    let own = server.node_name();
    let own = own
        .split_whitespace()
        .find(|n| *n != "edge-1")
        .unwrap()
        .to_string();
    let _ = node.child.kill();
    let _ = node.child.wait();
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
    let mut node = join(&server, "intruder", &format!("{hash}::node:not-the-secret"));
    let status = node.child.wait().unwrap();
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
    let _ = node.child.kill();
    let _ = node.child.wait();

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
    node.import_hello();

    node.child = spawn_node(&server, "edge-2", &token, node.dir.path());
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
