//! A node agent that dies: within the configured timeouts its node goes NotReady (Unknown),
//! gets the unreachable taints, its pods are evicted once their toleration runs out, and the
//! Deployment's pods run on the other nodes. `kubectl drain` evicts through the eviction API,
//! which a PodDisruptionBudget can refuse.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_tests::{Server, eventually, text};

/// The app: a Deployment of the long-running sample, labelled `app=spread`.
fn spread(replicas: u32) -> String {
    r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      containers: [{name: app, image: registry.local/app:1, env: [{name: INTERVAL_MS, value: "1000"}]}]
"#
    .replace("REPLICAS", &replicas.to_string())
}

/// Live pods of the app by node: `node -> [pod]`, leaving out pods being deleted.
fn live_pods(server: &Server) -> BTreeMap<String, Vec<String>> {
    let out = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=spread",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() == 2 {
            by_node
                .entry(fields[0].to_string())
                .or_default()
                .push(fields[1].to_string());
        }
    }
    by_node
}

#[test]
fn a_dead_nodes_pods_are_evicted_and_replaced_on_the_other_nodes() {
    let server = Server::start_with(&[
        "--node-monitor-grace-period",
        "15s",
        "--default-unreachable-toleration-seconds",
        "2",
    ])
    .unwrap();
    server.import_sample("logwriter", "registry.local/app:1");
    let own = server.node_name();
    let mut edges = vec![server.join_ready("edge-1"), server.join_ready("edge-2")];
    for node in &edges {
        node.import_sample("logwriter", "registry.local/app:1");
    }
    server.apply(&spread(3));
    let out = server.kubectl(&["rollout", "status", "deployment/spread", "--timeout=90s"]);
    assert!(out.status.success(), "{}", text(&out));
    // New pods tolerate unreachable nodes for the server's default, 2 s here.
    let tolerations = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=spread",
        "-o",
        "jsonpath={.items[0].spec.tolerations[?(@.key==\"node.kubernetes.io/unreachable\")].tolerationSeconds}",
    ]);
    assert_eq!(tolerations.trim(), "2");
    let before = live_pods(&server);
    // The scheduler spreads a Deployment's pods: one per node.
    assert_eq!(before.len(), 3, "{before:?}");
    let victim_index = edges
        .iter()
        .position(|n| before.contains_key(&n.name))
        .expect("a joined node runs a pod");
    let victim = edges[victim_index].name.clone();
    let evicted = before[&victim].clone();
    edges[victim_index].kill();

    // Within the grace period and a monitor period, the node is Unknown and tainted.
    let state = eventually(Duration::from_secs(60), || {
        let state = server.kubectl_ok(&[
            "get",
            "node",
            &victim,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].reason} {.spec.taints[*].key}",
        ]);
        state.starts_with("Unknown").then_some(state)
    })
    .expect("the dead node goes Unknown");
    assert!(
        state.starts_with("Unknown NodeStatusUnknown node.kubernetes.io/unreachable"),
        "{state}"
    );
    let listed = server.kubectl_ok(&["get", "node", &victim, "--no-headers"]);
    assert!(listed.contains(" NotReady "), "{listed}");
    let taints = server.kubectl_ok(&[
        "get",
        "node",
        &victim,
        "-o",
        "jsonpath={range .spec.taints[*]}{.key}:{.effect}{\"\\n\"}{end}",
    ]);
    let mut taints: Vec<&str> = taints.lines().collect();
    taints.sort();
    assert_eq!(
        taints,
        [
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/unreachable:NoSchedule"
        ]
    );

    // Its pods are evicted after their 2 s and replaced on the live nodes.
    let after = eventually(Duration::from_secs(60), || {
        let now = live_pods(&server);
        let count: usize = now.values().map(Vec::len).sum();
        (count == 3 && !now.contains_key(&victim)).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "never replaced: {}",
            server.kubectl_ok(&["get", "pods", "-o", "wide"])
        )
    });
    assert!(
        after
            .keys()
            .all(|n| *n == own || edges.iter().any(|e| e.name == *n && e.name != victim))
    );
    let out = server.kubectl(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    assert!(out.status.success(), "{}", text(&out));
    for pod in &evicted {
        let events = server.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod},reason=TaintManagerEviction"),
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        assert_eq!(
            events.trim(),
            format!("Marking for deletion Pod default/{pod}")
        );
        let condition = server.kubectl_ok(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
        ]);
        assert_eq!(condition.trim(), "DeletionByTaintManager");
    }
}

#[test]
fn drain_evicts_through_the_disruption_budget_and_waits_while_it_forbids() {
    let server = Server::start().unwrap();
    server.import_sample("logwriter", "registry.local/app:1");
    let edge = server.join_ready("edge-1");
    edge.import_sample("logwriter", "registry.local/app:1");
    server.apply(&format!(
        r#"{}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: spread}}
spec:
  minAvailable: 2
  selector: {{matchLabels: {{app: spread}}}}
"#,
        spread(2)
    ));
    let out = server.kubectl(&["rollout", "status", "deployment/spread", "--timeout=90s"]);
    assert!(out.status.success(), "{}", text(&out));
    let on_edge = eventually(Duration::from_secs(30), || {
        live_pods(&server)
            .get("edge-1")
            .and_then(|p| p.first().cloned())
    })
    .expect("one pod runs on edge-1");
    eventually(Duration::from_secs(30), || {
        let pdb = server.kubectl_ok(&["get", "pdb", "spread", "--no-headers"]);
        let fields: Vec<&str> = pdb.split_whitespace().collect();
        (fields.get(1..4) == Some(&["2", "N/A", "0"][..])).then_some(())
    })
    .expect("the budget allows no disruption");

    // The budget forbids the eviction: drain waits, retrying, until its timeout.
    let blocked = server.kubectl(&["drain", "edge-1", "--timeout=6s"]);
    assert!(!blocked.status.success(), "{}", text(&blocked));
    let said = text(&blocked);
    assert!(said.contains("node/edge-1 cordoned"), "{said}");
    assert!(
        said.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{said}"
    );
    assert!(live_pods(&server)["edge-1"].contains(&on_edge));
    let listed = server.kubectl_ok(&["get", "node", "edge-1", "--no-headers"]);
    assert!(listed.contains("Ready,SchedulingDisabled"), "{listed}");
    // The eviction API answers 429 with the budget's numbers.
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{on_edge}","namespace":"default"}}}}"#
    );
    let refused = server.kubectl_stdin(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{on_edge}/eviction"),
            "-f",
            "-",
        ],
        &body,
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{said}"
    );
    assert!(
        said.contains("429") || said.contains("TooManyRequests"),
        "{said}"
    );

    // Once the budget allows one, drain evicts the pod and its replacement runs elsewhere.
    server.kubectl_ok(&[
        "patch",
        "pdb",
        "spread",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    eventually(Duration::from_secs(30), || {
        let allowed = server.kubectl_ok(&[
            "get",
            "pdb",
            "spread",
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ]);
        (allowed.trim() == "1").then_some(())
    })
    .expect("the budget allows one disruption");
    let drained = server.kubectl(&["drain", "edge-1", "--timeout=60s"]);
    assert!(drained.status.success(), "{}", text(&drained));
    let said = String::from_utf8_lossy(&drained.stdout);
    assert!(said.contains(&format!("pod/{on_edge} evicted")), "{said}");
    assert!(said.contains("node/edge-1 drained"), "{said}");
    let after = eventually(Duration::from_secs(60), || {
        let now = live_pods(&server);
        (now.values().map(Vec::len).sum::<usize>() == 2 && !now.contains_key("edge-1"))
            .then_some(now)
    })
    .expect("the evicted pod is replaced off the drained node");
    assert_eq!(after.len(), 1, "{after:?}");
    let uncordoned = server.kubectl_ok(&["uncordon", "edge-1"]);
    assert_eq!(uncordoned.trim(), "node/edge-1 uncordoned");
    eventually(Duration::from_secs(30), || {
        let taints = server.kubectl_ok(&["get", "node", "edge-1", "-o", "jsonpath={.spec.taints}"]);
        (!taints.contains("unschedulable")).then_some(())
    })
    .expect("the unschedulable taint goes with the cordon");
}
