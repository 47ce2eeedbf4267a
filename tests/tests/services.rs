//! Services: ClusterIPs and node ports handed out (and clashes refused), EndpointSlices that
//! follow the ready pods, and the node's proxy spreading connections over them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skiff_tests::{Server, eventually, http_get, text};

/// A Deployment of the HTTP hello, each pod answering with its name and `greeting`.
fn web(replicas: u32, greeting: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, labels: {{app: web}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: samples.skiff.local/http-hello:0.1.0
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
        env:
        - {{name: GREETING_NAME, value: {greeting}}}
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
"#
    )
}

/// The pod that answered a hello response.
fn answered_by(response: &str) -> Option<String> {
    response
        .lines()
        .find_map(|l| l.strip_prefix("pod "))
        .map(str::to_string)
}

#[test]
fn a_node_port_service_spreads_requests_over_ready_pods_and_drops_none_while_rolling() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply(&web(3, "v1"));
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let exposed = server.kubectl_ok(&[
        "expose",
        "deployment/web",
        "--type=NodePort",
        "--port",
        "8080",
    ]);
    assert_eq!(exposed.trim(), "service/web exposed");
    let cluster_ip = server.field("service/web", "{.spec.clusterIP}");
    assert!(cluster_ip.starts_with("10.43."), "{cluster_ip}");
    let node_port: u16 = server
        .field("service/web", "{.spec.ports[0].nodePort}")
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    // The EndpointSlice lists the three pods, ready, on the container port.
    let slice = eventually(Duration::from_secs(30), || {
        let ready = server.kubectl_ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.conditions.ready}{\"\\n\"}{end}",
        ]);
        (ready.lines().filter(|l| *l == "true").count() == 3).then_some(ready)
    });
    assert!(
        slice.is_some(),
        "{}",
        server.kubectl_ok(&["get", "endpointslices", "-o", "yaml"])
    );
    assert_eq!(
        server.kubectl_ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].ports[0].port} {.items[0].metadata.ownerReferences[0].kind}",
        ]),
        "8080 Service"
    );

    // Requests to the node's address at the node port are answered by every replica.
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let response = eventually(Duration::from_secs(10), || {
            http_get("127.0.0.1", node_port, "/")
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200"))
        })
        .expect("the node port answers");
        seen.extend(answered_by(&response));
    }
    let pods = server.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    let names: BTreeSet<String> = pods
        .lines()
        .map(|p| p.trim_start_matches("pod/").to_string())
        .collect();
    assert_eq!(seen, names, "requests went to every replica");

    // While the Deployment rolls to a new version, no request fails.
    let rolling = Arc::new(AtomicBool::new(true));
    let client = {
        let rolling = rolling.clone();
        std::thread::spawn(move || {
            let (mut failures, mut answered, mut new) = (Vec::new(), 0, 0);
            while rolling.load(Ordering::Relaxed) {
                match http_get("127.0.0.1", node_port, "/") {
                    Ok(r) if r.starts_with("HTTP/1.1 200") => {
                        answered += 1;
                        new += usize::from(r.contains("hello, v2"));
                    }
                    Ok(r) => failures.push(r),
                    Err(e) => failures.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (failures, answered, new)
        })
    };
    server.apply(&web(3, "v2"));
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    std::thread::sleep(Duration::from_secs(1));
    rolling.store(false, Ordering::Relaxed);
    let (failures, answered, new) = client.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        answered + failures.len()
    );
    assert!(
        answered > 10 && new > 0,
        "answered {answered}, by the new version {new}"
    );

    // A pod reaches the Service at its ClusterIP (wasi:sockets), spread over the replicas too.
    server.apply_on_node(&skiff_tests::pod_on_node(
        "caller",
        &format!(
            r#"
  containers:
  - name: caller
    image: samples.skiff.local/netkit:0.1.0
    args: [get, "{cluster_ip}:8080"]
    env: [{{name: INTERVAL_MS, value: "100"}}]
"#
        ),
    ));
    let called = server.logs_until("caller", "caller", |l| l.starts_with("pod web-"));
    assert!(
        called.contains(&format!("{cluster_ip}:8080: hello, v2")),
        "{called}"
    );
    let callers: BTreeSet<&str> = called
        .lines()
        .filter(|l| l.starts_with("pod web-"))
        .collect();
    let spread = eventually(Duration::from_secs(30), || {
        let logs = server.kubectl_ok(&["logs", "caller"]);
        let by: BTreeSet<String> = logs
            .lines()
            .filter_map(|l| l.strip_prefix("pod "))
            .map(str::to_string)
            .collect();
        (by.len() == 3).then_some(by)
    });
    assert!(spread.is_some(), "the ClusterIP reached {callers:?} only");

    // Deleting the Services by label removes them and their endpoints.
    server.kubectl_ok(&["delete", "service", "-l", "app=web"]);
    let gone = eventually(Duration::from_secs(30), || {
        let left = server.kubectl_ok(&[
            "get",
            "services,endpointslices",
            "-l",
            "app=web",
            "-o",
            "name",
        ]);
        let slices = server.kubectl_ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ]);
        (left.trim().is_empty() && slices.trim().is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "{}",
        server.kubectl_ok(&["get", "services,endpointslices", "-A"])
    );
    assert!(
        http_get("127.0.0.1", node_port, "/").is_err(),
        "the node port still answers"
    );
}

#[test]
fn requested_cluster_ips_and_node_ports_are_honoured_and_clashes_refused() {
    let server = Server::start().unwrap();
    let service = |name: &str, ip: &str, node_port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n  \
             clusterIP: {ip}\n  selector: {{app: {name}}}\n  ports: [{{port: 80, nodePort: {node_port}}}]\n"
        )
    };
    server.apply(&service("first", "10.43.7.7", 30777));
    assert_eq!(
        server.field("service/first", "{.spec.clusterIPs[0]}"),
        "10.43.7.7"
    );
    assert_eq!(
        server.field("service/first", "{.spec.ports[0].nodePort}"),
        "30777"
    );
    let clash = server.kubectl_stdin(
        &["apply", "-f", "-"],
        &service("second", "10.43.7.7", 30777),
    );
    assert!(!clash.status.success());
    let message = text(&clash);
    assert!(
        message.contains(
            "spec.clusterIPs[0]: Invalid value: \"10.43.7.7\": failed to allocate IP 10.43.7.7: provided IP is already allocated"
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "spec.ports[0].nodePort: Invalid value: 30777: provided port is already allocated"
        ),
        "{message}"
    );
    let outside = server.kubectl_stdin(&["apply", "-f", "-"], &service("third", "10.96.0.10", 80));
    let message = text(&outside);
    assert!(!outside.status.success());
    assert!(
        message.contains("The range of valid IPs is 10.43.0.0/16")
            && message.contains("The range of valid ports is 30000-32767"),
        "{message}"
    );
    // Once the first is gone, what it held is free.
    server.kubectl_ok(&["delete", "service", "first"]);
    let taken = eventually(Duration::from_secs(10), || {
        server
            .kubectl_stdin(
                &["apply", "-f", "-"],
                &service("second", "10.43.7.7", 30777),
            )
            .status
            .success()
            .then_some(())
    });
    assert!(
        taken.is_some(),
        "the freed address and port were never handed out again"
    );
}
