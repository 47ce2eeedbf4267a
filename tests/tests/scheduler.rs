//! The scheduler places pods that name no node, through `pods/binding`, and tells why it
//! cannot in upstream's words; the binding subresource answers as upstream's does.

use std::time::Duration;

use skiff_tests::{Server, eventually, text, write_file};

/// A server with the hello sample imported as `registry.local/hello:1`, and its node's name.
fn server_with_hello() -> (Server, String) {
    let server = Server::start().unwrap();
    server.import_sample("hello", "registry.local/hello:1");
    let node = server.node_name();
    (server, node)
}

/// The pod's PodScheduled condition: `STATUS REASON: MESSAGE`.
fn scheduled_condition(server: &Server, pod: &str) -> String {
    server.kubectl_ok(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status} \
         {.status.conditions[?(@.type==\"PodScheduled\")].reason}: \
         {.status.conditions[?(@.type==\"PodScheduled\")].message}",
    ])
}

fn wait_for_condition(server: &Server, pod: &str, want: &str) {
    eventually(Duration::from_secs(60), || {
        (scheduled_condition(server, pod).trim() == want).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {pod}: PodScheduled never became {want:?}: {}",
            server.kubectl_ok(&["get", "pod", pod, "-o", "yaml"])
        )
    });
}

#[test]
fn a_pod_naming_no_node_is_scheduled_onto_the_node_and_runs() {
    let (server, node) = server_with_hello();
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: placed}
spec:
  restartPolicy: Never
  containers:
  - name: hello
    image: registry.local/hello:1
    resources: {requests: {cpu: 100m, memory: 16Mi}}
"#,
    );
    server.wait_for("placed", "{.status.phase}", "Succeeded");
    assert_eq!(
        server
            .kubectl_ok(&["get", "pod", "placed", "-o", "jsonpath={.spec.nodeName}"])
            .trim(),
        node
    );
    assert_eq!(scheduled_condition(&server, "placed").trim(), "True :");
    server.wait_for_events(
        "placed",
        &[&format!(
            "Scheduled: Successfully assigned default/placed to {node}"
        )],
    );
    let described = server.kubectl_ok(&["describe", "pod", "placed"]);
    assert!(
        described
            .lines()
            .any(|l| l.contains("Scheduled") && l.contains("default-scheduler")),
        "{described}"
    );
}

#[test]
fn a_pod_no_node_can_take_waits_with_upstreams_reasons_until_one_can() {
    let (server, node) = server_with_hello();
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers:
  - name: hello
    image: registry.local/hello:1
    resources: {requests: {memory: 100Ti}}
---
apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  restartPolicy: Never
  nodeSelector: {disk: ssd}
  containers:
  - name: hello
    image: registry.local/hello:1
"#,
    );
    wait_for_condition(
        &server,
        "huge",
        "False Unschedulable: 0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 \
         nodes are available: 1 No preemption victims found for incoming pod.",
    );
    let selector_message = "0/1 nodes are available: 1 node(s) didn't match Pod's node \
         affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful \
         for scheduling.";
    wait_for_condition(
        &server,
        "picky",
        &format!("False Unschedulable: {selector_message}"),
    );
    let pods = server.kubectl_ok(&["get", "pod", "huge", "picky"]);
    assert_eq!(pods.matches("Pending").count(), 2, "{pods}");
    server.wait_for_events("picky", &[&format!("FailedScheduling: {selector_message}")]);
    let described = server.kubectl_ok(&["describe", "pod", "huge"]);
    assert!(
        described.contains("FailedScheduling") && described.contains("Insufficient memory"),
        "{described}"
    );

    // Labelling the node lets the waiting pod in, without it being created again.
    server.kubectl_ok(&["label", "node", &node, "disk=ssd"]);
    server.wait_for("picky", "{.status.phase}", "Succeeded");
    assert_eq!(scheduled_condition(&server, "picky").trim(), "True :");
    let pods = server.kubectl_ok(&["get", "pod", "huge", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(pods.trim(), "", "the huge pod stays unplaced");

    // A taint keeps new pods off unless they tolerate it; a cordon does too.
    server.kubectl_ok(&["taint", "node", &node, "dedicated=edge:NoSchedule"]);
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: intolerant}
spec:
  restartPolicy: Never
  containers: [{name: hello, image: registry.local/hello:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  restartPolicy: Never
  tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
  containers: [{name: hello, image: registry.local/hello:1}]
"#,
    );
    wait_for_condition(
        &server,
        "intolerant",
        "False Unschedulable: 0/1 nodes are available: 1 node(s) had untolerated taint \
         {dedicated: edge}. preemption: 0/1 nodes are available: 1 Preemption is not helpful \
         for scheduling.",
    );
    server.wait_for("tolerant", "{.status.phase}", "Succeeded");
    server.kubectl_ok(&["cordon", &node]);
    server.kubectl_ok(&["taint", "node", &node, "dedicated-"]);
    wait_for_condition(
        &server,
        "intolerant",
        "False Unschedulable: 0/1 nodes are available: 1 node(s) were unschedulable. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    );
    server.kubectl_ok(&["uncordon", &node]);
    server.wait_for("intolerant", "{.status.phase}", "Succeeded");
}

#[test]
fn the_binding_subresource_assigns_a_pod_once() {
    // Without the scheduler, pods wait until something binds them.
    let server = Server::start_with(&["--disable", "scheduler"]).unwrap();
    let node = server.node_name();
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: manual}
spec:
  containers: [{name: c, image: registry.local/absent:1}]
"#,
    );
    // Nothing else binds it: the binding below would be refused if anything had.
    assert_eq!(
        server
            .kubectl_ok(&["get", "pod", "manual", "-o", "jsonpath={.spec.nodeName}"])
            .trim(),
        ""
    );
    let binding = |target: &str| {
        write_file(
            &server,
            "binding.json",
            &format!(
                r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"manual","annotations":{{"placed-by":"hand"}}}},"target":{{"kind":"Node","name":"{target}"}}}}"#
            ),
        )
    };
    let path = "/api/v1/namespaces/default/pods/manual/binding";
    let file = binding(&node);
    let out = server.kubectl_ok(&["create", "--raw", path, "-f", file.to_str().unwrap()]);
    assert!(out.contains("\"status\":\"Success\""), "{out}");
    let placed = server.kubectl_ok(&[
        "get",
        "pod",
        "manual",
        "-o",
        "jsonpath={.spec.nodeName} {.metadata.annotations.placed-by}",
    ]);
    assert_eq!(placed.trim(), format!("{node} hand"));
    assert!(scheduled_condition(&server, "manual").starts_with("True"));

    let again = server.kubectl(&["create", "--raw", path, "-f", file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains(&format!(
            "Operation cannot be fulfilled on pods/binding \\\"manual\\\": pod manual is already assigned to node \\\"{node}\\\""
        )) || text(&again).contains(&format!(
            "Operation cannot be fulfilled on pods/binding \"manual\": pod manual is already assigned to node \"{node}\""
        )),
        "{}",
        text(&again)
    );
    let nameless = binding("");
    let invalid = server.kubectl(&["create", "--raw", path, "-f", nameless.to_str().unwrap()]);
    assert!(!invalid.status.success());
    assert!(
        text(&invalid).contains("target.name: Required value"),
        "{}",
        text(&invalid)
    );
    let resources = server.kubectl_ok(&["api-resources", "--no-headers"]);
    assert!(
        !resources.lines().any(|l| l.starts_with("pods/")),
        "subresources are not resources: {resources}"
    );
    let discovery = server.kubectl_ok(&["get", "--raw", "/api/v1"]);
    assert!(
        discovery.contains("\"name\":\"pods/binding\""),
        "{discovery}"
    );
}

#[test]
fn pod_anti_affinity_and_topology_spread_place_pods_across_nodes() {
    let server = Server::start().unwrap();
    server.import_sample("logwriter", "registry.local/app:1");
    let own = server.node_name();
    let edges = [server.join_ready("edge-1"), server.join_ready("edge-2")];
    for node in &edges {
        node.import_sample("logwriter", "registry.local/app:1");
    }
    // One replica per node at most: the fourth has nowhere to go.
    server.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: apart}
spec:
  replicas: 4
  selector: {matchLabels: {app: apart}}
  template:
    metadata: {labels: {app: apart}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: apart}}, topologyKey: kubernetes.io/hostname}
      containers: [{name: app, image: registry.local/app:1}]
"#,
    );
    let pending = eventually(Duration::from_secs(60), || {
        let out = server.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=apart",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
        ]);
        let placed: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        let waiting: Vec<&str> = out
            .lines()
            .filter(|l| l.split_whitespace().count() == 1)
            .collect();
        let mut nodes = placed.clone();
        nodes.sort();
        nodes.dedup();
        (placed.len() == 3 && nodes.len() == 3 && waiting.len() == 1)
            .then(|| waiting[0].trim().to_string())
    })
    .unwrap_or_else(|| panic!("{}", server.kubectl_ok(&["get", "pods", "-o", "wide"])));
    wait_for_condition(
        &server,
        &pending,
        "False Unschedulable: 0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );

    // Spread over a zone label with maxSkew 1: zone a has two nodes, zone b one.
    server.kubectl_ok(&["label", "node", &own, "topology.kubernetes.io/zone=a"]);
    server.kubectl_ok(&["label", "node", "edge-1", "topology.kubernetes.io/zone=a"]);
    server.kubectl_ok(&["label", "node", "edge-2", "topology.kubernetes.io/zone=b"]);
    server.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: zoned}
spec:
  replicas: 4
  selector: {matchLabels: {app: zoned}}
  template:
    metadata: {labels: {app: zoned}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: zoned}}}
      containers: [{name: app, image: registry.local/app:1}]
"#,
    );
    let out = server.kubectl(&["rollout", "status", "deployment/zoned", "--timeout=90s"]);
    assert!(out.status.success(), "{}", text(&out));
    let nodes = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=zoned",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    let in_b = nodes.split_whitespace().filter(|n| *n == "edge-2").count();
    assert_eq!(in_b, 2, "two pods in each zone: {nodes}");
}
