//! A node agent that dies: within the configured timeouts its node goes NotReady (Unknown),
//! gets the unreachable taints, its pods are evicted once their toleration runs out, and the
//! Deployment's pods run on the other nodes. `kubectl drain` evicts through the eviction API,
//! which a PodDisruptionBudget can refuse. A node low on memory evicts the pod furthest over
//! its request, which ends Failed with reason Evicted, and turns BestEffort pods away while
//! under pressure; the evicted pods are listed and deleted by their phase.

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
        // The condition and the taints are two writes, as upstream makes them.
        state.contains("node.kubernetes.io/unreachable").then_some(state)
    })
    .expect("the dead node goes Unknown and is tainted");
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
    server.merge_patch("pdb/spread", r#"{"spec":{"minAvailable":1}}"#);
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

/// A pod of the memory hog sample holding `mib` MiB, BestEffort, on the server's own node.
fn hog(name: &str, mib: u32) -> String {
    r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  containers:
  - name: memhog
    image: registry.local/memhog:1
    env: [{name: HOLD_MIB, value: "MIB"}, {name: STEP_MS, value: "1"}]
"#
    .replace("NAME", name)
    .replace("MIB", &mib.to_string())
}

#[test]
fn a_node_low_on_memory_evicts_the_pod_over_its_request_and_turns_best_effort_pods_away() {
    // 384 MiB for pods; memory.available under 128 MiB is pressure; it lasts 8 s.
    let server = Server::start_with(&[
        "--memory",
        "384Mi",
        "--eviction-hard",
        "memory.available<128Mi",
        "--eviction-pressure-transition-period",
        "8s",
    ])
    .unwrap();
    server.import_sample("memhog", "registry.local/memhog:1");
    server.import_sample("logwriter", "registry.local/app:1");
    let node = server.node_name();
    // The threshold is kept back from what pods may request.
    let memory = server.kubectl_ok(&[
        "get",
        "node",
        &node,
        "-o",
        "jsonpath={.status.capacity.memory} {.status.allocatable.memory} {.status.conditions[?(@.type==\"MemoryPressure\")].status}",
    ]);
    assert_eq!(memory, "384Mi 256Mi False");

    // A pod well within its request, and a BestEffort one that grows to 300 MiB.
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers:
  - name: app
    image: registry.local/app:1
    env: [{name: INTERVAL_MS, value: "1000"}]
    resources: {requests: {memory: 32Mi}}
"#,
    );
    server.apply(&hog("hog", 300));
    let status = |pod: &str, path: &str| {
        server.kubectl_ok(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
    };
    let evicted = eventually(Duration::from_secs(60), || {
        let state = status("hog", "{.status.phase} {.status.reason}");
        (state != "Pending " && state != "Running ").then_some(state)
    })
    .expect("the hog is evicted");
    assert_eq!(evicted, "Failed Evicted");

    // The pod that put the node under pressure says what happened to it.
    let message = status("hog", "{.status.message}");
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 128Mi, available: "
        ),
        "{message}"
    );
    assert!(
        message.contains(". Container memhog was using ")
            && message.ends_with(", request is 0, has larger consumption of memory. "),
        "{message}"
    );
    assert_eq!(
        status(
            "hog",
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
        ),
        "TerminationByKubelet"
    );
    assert_eq!(
        status(
            "hog",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hog,reason=Evicted",
        "-o",
        "jsonpath={range .items[*]}{.type} {.source.component} {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.starts_with("Warning kubelet The node was low on resource: memory."),
        "{events}"
    );

    // While the pressure lasts the node is tainted, and a BestEffort pod sent to it is turned
    // away.
    let taints = eventually(Duration::from_secs(5), || {
        let taints =
            server.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.spec.taints[*].key}"]);
        taints
            .contains("node.kubernetes.io/memory-pressure")
            .then_some(taints)
    });
    assert!(
        taints.is_some(),
        "the node is tainted while under memory pressure"
    );
    server.apply(&hog("late", 8).replace("spec:\n", &format!("spec:\n  nodeName: {node}\n")));
    let late = eventually(Duration::from_secs(30), || {
        let state = status("late", "{.status.phase}|{.status.reason}|{.status.message}");
        state.starts_with("Failed").then_some(state)
    })
    .expect("the late pod is turned away");
    assert_eq!(
        late,
        "Failed|Evicted|Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    assert_eq!(status("steady", "{.status.phase}"), "Running");

    // The pressure ends after the transition period: the condition clears, the taint goes, and
    // the node records both turns.
    let cleared = eventually(Duration::from_secs(60), || {
        let state = server.kubectl_ok(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status} {.spec.taints[*].key}",
        ]);
        (state.trim() == "False").then_some(state)
    });
    assert!(cleared.is_some(), "the memory pressure clears");
    let node_events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind=Node,involvedObject.name={node}"),
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for reason in [
        "NodeHasInsufficientMemory",
        "EvictionThresholdMet",
        "NodeHasSufficientMemory",
    ] {
        assert!(node_events.contains(reason), "{reason}: {node_events}");
    }

    // The usual pipelines find the evicted pods by their phase and remove them.
    let failed = server.kubectl_ok(&[
        "get",
        "pods",
        "--field-selector=status.phase=Failed",
        "-o",
        "name",
    ]);
    let mut failed: Vec<&str> = failed.lines().collect();
    failed.sort();
    assert_eq!(failed, ["pod/hog", "pod/late"]);
    let deleted = server.kubectl_ok(&["delete", "pods", "--field-selector=status.phase=Failed"]);
    assert!(deleted.contains("pod \"hog\" deleted"), "{deleted}");
    let left = server.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(left.trim(), "pod/steady");
}
