//! DaemonSets over several nodes (the server's own and `skiff node` agents joined on loopback):
//! one pod on each eligible node, following nodes that join and leave, and a rolling update.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_tests::{JoinedNode, Server, eventually, text};

const AGENT: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: edge}
      containers:
      - name: agent
        image: registry.local/agent:1
        env: [{name: INTERVAL_MS, value: "1000"}]
"#;

/// Makes a node eligible: the image in its store, then the label the DaemonSet selects.
fn enlist(server: &Server, node: Option<&JoinedNode>) -> String {
    let name = match node {
        Some(node) => {
            node.import_sample("logwriter", "registry.local/agent:1");
            node.name.clone()
        }
        None => {
            server.import_sample("logwriter", "registry.local/agent:1");
            server.node_name()
        }
    };
    server.kubectl_ok(&["label", "node", &name, "role=edge"]);
    name
}

/// The DaemonSet's pods by node, once `want` nodes each run exactly one that is ready.
fn pods_by_node(server: &Server, want: usize) -> BTreeMap<String, String> {
    eventually(Duration::from_secs(90), || {
        let status = server.kubectl_ok(&[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.numberMisscheduled}",
        ]);
        if status.trim() != format!("{want} {want} {want} 0") {
            return None;
        }
        let pods = server.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}deleting{\"\\n\"}{end}{range .items[*]}{.spec.nodeName} {.metadata.name}{\"\\n\"}{end}",
        ]);
        if pods.contains("deleting") {
            return None;
        }
        let by_node: BTreeMap<String, String> = pods
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        (by_node.len() == want && pods.lines().count() == want).then_some(by_node)
    })
    .unwrap_or_else(|| {
        panic!(
            "never {want} daemon pods, one per node:\n{}\n{}",
            server.kubectl_ok(&["get", "ds", "agent", "-o", "yaml"]),
            server.kubectl_ok(&["get", "pods", "-o", "wide"])
        )
    })
}

#[test]
fn a_daemon_set_runs_one_pod_per_eligible_node_and_follows_nodes() {
    let server = Server::start().unwrap();
    // The server's own node first, while it is the only one.
    let mut nodes = vec![enlist(&server, None)];
    let edge1 = server.join_ready("edge-1");
    let edge2 = server.join_ready("edge-2");
    nodes.push(enlist(&server, Some(&edge1)));
    nodes.push(enlist(&server, Some(&edge2)));
    nodes.sort();
    server.apply(AGENT);
    let placed = pods_by_node(&server, 3);
    assert_eq!(placed.keys().cloned().collect::<Vec<_>>(), nodes);
    for pod in placed.values() {
        assert!(pod.starts_with("agent-"), "{pod}");
    }
    let listed = server.kubectl_ok(&["get", "ds", "agent"]);
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    // NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE
    assert_eq!(
        row[..7],
        ["agent", "3", "3", "3", "3", "3", "role=edge"],
        "{listed}"
    );

    // A fourth node joins and gets its pod; the others keep theirs.
    let edge3 = server.join_ready("edge-3");
    enlist(&server, Some(&edge3));
    let grown = pods_by_node(&server, 4);
    assert!(grown.contains_key("edge-3"), "{grown:?}");
    for (node, pod) in &placed {
        assert_eq!(grown.get(node), Some(pod), "the pod on {node} stays");
    }

    // A node that stops qualifying loses its pod.
    server.kubectl_ok(&["label", "node", "edge-3", "role-"]);
    let shrunk = pods_by_node(&server, 3);
    assert!(!shrunk.contains_key("edge-3"), "{shrunk:?}");

    // A rolling update replaces every pod, and rollout status says when it is done.
    server.kubectl_ok(&["set", "env", "ds/agent", "INTERVAL_MS=500"]);
    let out = server.kubectl(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("daemon set \"agent\" successfully rolled out"),
        "{}",
        text(&out)
    );
    let updated = pods_by_node(&server, 3);
    for (node, pod) in &updated {
        assert_ne!(
            shrunk.get(node),
            Some(pod),
            "the pod on {node} was replaced"
        );
    }
    let history = server.kubectl_ok(&["rollout", "history", "ds/agent"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );
}
