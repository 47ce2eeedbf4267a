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
    assert!(server.node_ports().contains(&node_port), "{node_port}");

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

    // Requests to the node's address at the node port are answered by every replica (the
    // node's view of the endpoints may trail the API's by a moment).
    let pods = server.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    let names: BTreeSet<String> = pods
        .lines()
        .map(|p| p.trim_start_matches("pod/").to_string())
        .collect();
    let mut seen = BTreeSet::new();
    for _ in 0..300 {
        let response = eventually(Duration::from_secs(10), || {
            http_get("127.0.0.1", node_port, "/")
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200"))
        })
        .expect("the node port answers");
        seen.extend(answered_by(&response));
        if seen == names {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let ports = server.node_ports();
    let wanted = ports.start() + 7;
    server.apply(&service("first", "10.43.7.7", wanted));
    assert_eq!(
        server.field("service/first", "{.spec.clusterIPs[0]}"),
        "10.43.7.7"
    );
    assert_eq!(
        server.field("service/first", "{.spec.ports[0].nodePort}"),
        wanted.to_string()
    );
    let clash = server.kubectl_stdin(
        &["apply", "-f", "-"],
        &service("second", "10.43.7.7", wanted),
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
        message.contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {wanted}: provided port is already allocated"
        )),
        "{message}"
    );
    let outside = server.kubectl_stdin(&["apply", "-f", "-"], &service("third", "10.96.0.10", 80));
    let message = text(&outside);
    assert!(!outside.status.success());
    assert!(
        message.contains("The range of valid IPs is 10.43.0.0/16")
            && message.contains(&format!(
                "The range of valid ports is {}-{}",
                ports.start(),
                ports.end()
            )),
        "{message}"
    );
    // Once the first is gone, what it held is free.
    server.kubectl_ok(&["delete", "service", "first"]);
    let taken = eventually(Duration::from_secs(10), || {
        server
            .kubectl_stdin(
                &["apply", "-f", "-"],
                &service("second", "10.43.7.7", wanted),
            )
            .status
            .success()
            .then_some(())
    });
    assert!(
        taken.is_some(),
        "the freed address and port were never handed out again"
    );

    // An endpoint may not point at the node's own loopback, as upstream refuses it.
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: sneaky, \
                 labels: {kubernetes.io/service-name: second}}\naddressType: IPv4\n\
                 endpoints: [{addresses: [127.0.0.1]}]\nports: [{port: 6443}]\n";
    let refused = server.kubectl_stdin(&["apply", "-f", "-"], slice);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(
            "endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range"
        ),
        "{}",
        text(&refused)
    );

    // Changing the type drops what the new type has no use for, as upstream does.
    server.merge_patch("service/second", r#"{"spec":{"type":"ClusterIP"}}"#);
    assert_eq!(
        server.field("service/second", "{.spec.ports[0].nodePort}"),
        ""
    );
    assert_eq!(
        server.field("service/second", "{.spec.clusterIP}"),
        "10.43.7.7"
    );
    server.merge_patch(
        "service/second",
        r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#,
    );
    assert_eq!(server.field("service/second", "{.spec.clusterIP}"), "");
    assert_eq!(
        server.field("service/second", "{.spec.externalName}"),
        "example.com"
    );
}

#[test]
fn pods_find_services_and_stateful_pods_by_name() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend}
spec:
  replicas: 2
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers:
      - name: web
        image: samples.skiff.local/http-hello:0.1.0
        ports: [{name: http, containerPort: 8080}]
        env:
        - {name: GREETING_NAME, value: backend}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: alt, port: 8080, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: samples.skiff.local/http-hello:0.1.0
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: first-web}
spec:
  type: ExternalName
  externalName: web-0.web.default.svc.cluster.local
---
apiVersion: v1
kind: Pod
metadata: {name: frontend}
spec:
  containers:
  - name: frontend
    image: samples.skiff.local/http-frontend:0.1.0
    ports: [{containerPort: 8080}]
    env: [{name: BACKEND_URL, value: "http://backend/"}]
"#,
    );
    server.kubectl_ok(&["rollout", "status", "deployment/backend", "--timeout=120s"]);
    server.kubectl_ok(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    server.wait_for("frontend", "{.status.containerStatuses[0].ready}", "true");

    // wasi:http: the frontend calls http://backend/, the Service's port 80, by its short name.
    let frontend = server.pod_address("frontend");
    let answer = eventually(Duration::from_secs(30), || {
        http_get(&frontend, 8080, "/")
            .ok()
            .filter(|r| r.contains("hello, backend"))
    })
    .unwrap_or_else(|| panic!("{:?}", http_get(&frontend, 8080, "/")));
    assert!(
        answer.contains("frontend: http://backend/ said 200"),
        "{answer}"
    );
    assert!(answer.contains("pod backend-"), "{answer}");

    // wasi:sockets: names through the search path, headless and StatefulSet records, and an
    // ExternalName's target.
    let ip = |pod: &str| server.field(&format!("pod/{pod}"), "{.status.podIP}");
    let mut web: Vec<String> = (0..3).map(|i| ip(&format!("web-{i}"))).collect();
    web.sort();
    let names = [
        ("backend.default.svc.cluster.local:8080", "get"),
        ("web", "resolve"),
        ("web-1.web.default.svc.cluster.local", "resolve"),
        ("first-web", "resolve"),
        ("backend.default", "resolve"),
        // Absolute, so that no query leaves the node.
        ("nothing-here.default.svc.cluster.local.", "resolve"),
    ];
    let containers: String = names
        .iter()
        .enumerate()
        .map(|(i, (name, verb))| {
            format!(
                "\n  - name: c{i}\n    image: samples.skiff.local/netkit:0.1.0\n    \
                 args: [{verb}, \"{name}\"]\n    env: [{{name: INTERVAL_MS, value: \"200\"}}]"
            )
        })
        .collect();
    server.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  containers:{containers}\n"
    ));
    let line = |i: usize, want: &dyn Fn(&str) -> bool| -> String {
        let logs = server.logs_until("client", &format!("c{i}"), want);
        logs.lines()
            .rev()
            .find(|l| want(l))
            .unwrap_or_default()
            .to_string()
    };
    let got = line(0, &|l| l.contains("hello, backend"));
    assert_eq!(
        got, "backend.default.svc.cluster.local:8080: hello, backend",
        "{got}"
    );
    assert_eq!(
        line(1, &|l| l.split(' ').count() == 4),
        format!("web: {}", web.join(" "))
    );
    assert_eq!(
        line(2, &|l| l.contains(": 10.")),
        format!("web-1.web.default.svc.cluster.local: {}", ip("web-1"))
    );
    assert_eq!(
        line(3, &|l| l.contains(": 10.")),
        format!("first-web: {}", ip("web-0"))
    );
    let backend_ip = server.field("service/backend", "{.spec.clusterIP}");
    assert_eq!(
        line(4, &|l| l.contains(": 10.")),
        format!("backend.default: {backend_ip}")
    );
    assert!(
        line(5, &|l| l.contains("error"))
            .starts_with("nothing-here.default.svc.cluster.local.: error:")
    );
}

#[test]
fn a_load_balancer_answers_on_the_nodes_address_or_stays_pending_when_its_port_is_taken() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply(&web(2, "lb"));
    server.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let port = skiff_tests::free_port();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let service = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec:\n  \
             type: LoadBalancer\n  selector: {{app: web}}\n  ports: [{{port: {port}, targetPort: http}}]\n"
        )
    };
    server.apply(&service("front", port));
    let ingress = eventually(Duration::from_secs(30), || {
        let ip = server.field("service/front", "{.status.loadBalancer.ingress[0].ip}");
        (!ip.is_empty()).then_some(ip)
    })
    .expect("the load balancer gets the node's address");
    assert_eq!(ingress, "127.0.0.1");
    let row = server.kubectl_ok(&["get", "service", "front", "--no-headers"]);
    assert!(
        row.contains(" 127.0.0.1 ") && row.contains(&format!("{port}:3")),
        "{row}"
    );
    let answer = eventually(Duration::from_secs(30), || {
        http_get("127.0.0.1", port, "/")
            .ok()
            .filter(|r| r.contains("hello, lb"))
    });
    assert!(
        answer.is_some(),
        "the load balancer never answered on port {port}"
    );

    // A second Service on the same port, and one on a port another process holds, stay
    // Pending with a Warning event each.
    server.apply(&service("second", port));
    server.apply(&service("elsewhere", taken_port));
    for name in ["second", "elsewhere"] {
        let warned = eventually(Duration::from_secs(30), || {
            let events = server.kubectl_ok(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={name},reason=PortInUse"),
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            (!events.is_empty()).then_some(events)
        })
        .unwrap_or_else(|| panic!("no PortInUse event for {name}"));
        assert!(warned.contains("the port is in use"), "{warned}");
        assert_eq!(
            server.field(&format!("service/{name}"), "{.status.loadBalancer}"),
            "{}"
        );
        let row = server.kubectl_ok(&["get", "service", name, "--no-headers"]);
        assert!(row.contains("<pending>"), "{row}");
    }
    drop(taken);

    // A pod relabelled out of the Services leaves their endpoints.
    let pod = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    server.kubectl_ok(&["label", "pod", &pod, "app=debug", "--overwrite"]);
    let left = eventually(Duration::from_secs(30), || {
        let listed = server.kubectl_ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=front",
            "-o",
            "jsonpath={.items[*].endpoints[*].targetRef.name}",
        ]);
        (!listed.contains(&pod)).then_some(())
    });
    assert!(left.is_some(), "{pod} is still an endpoint of front");

    // A Service that stops being a LoadBalancer no longer lists the node.
    server.merge_patch("service/front", r#"{"spec":{"type":"ClusterIP"}}"#);
    let withdrawn = eventually(Duration::from_secs(30), || {
        server
            .field("service/front", "{.status.loadBalancer.ingress[*].ip}")
            .is_empty()
            .then_some(())
    });
    assert!(
        withdrawn.is_some(),
        "the node's address stayed in front's status"
    );
}
