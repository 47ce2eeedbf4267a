//! The pod network on the server's own node: pod addresses, a localhost shared by the
//! containers of a pod and by nothing else, and callers known by their pod's address.

use std::time::Duration;

use skiff_tests::{Server, eventually, http_get, pod_on_node};

/// The ambassador sample of `samples/manifests/ambassador.yaml` under another name, with a
/// third container that asks `targets` (`HOST:PORT`, space-separated) in turn.
fn ambassador(name: &str, targets: &[&str]) -> String {
    let callers: String = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            format!(
                r#"
  - name: caller-{i}
    image: samples.skiff.local/netkit:0.1.0
    args: [get, "{target}"]
    env: [{{name: INTERVAL_MS, value: "200"}}]"#
            )
        })
        .collect();
    pod_on_node(
        name,
        &format!(
            r#"
  containers:
  - name: app
    image: samples.skiff.local/netkit:0.1.0
    args: [serve, "127.0.0.1:8080"]
    env:
    - {{name: MESSAGE, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
  - name: ambassador
    image: samples.skiff.local/netkit:0.1.0
    args: [proxy, "0.0.0.0:9000", "127.0.0.1:8080"]
    ports: [{{name: proxy, containerPort: 9000}}]
    readinessProbe: {{tcpSocket: {{port: proxy}}, periodSeconds: 1}}{callers}
"#
        ),
    )
}

#[test]
fn containers_of_a_pod_share_a_localhost_that_no_other_pod_reaches() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply_on_node(&ambassador("one", &[]));
    server.wait_for("one", "{.status.containerStatuses[1].ready}", "true");
    let one_ip = server.field("pod/one", "{.status.podIP}");
    assert!(
        one_ip.starts_with(&format!("{}0.", server.pod_prefix())),
        "{one_ip}"
    );
    assert_eq!(
        server.field("pod/one", "{.status.podIPs[0].ip}"),
        one_ip,
        "podIPs lists the pod's address"
    );
    // The ambassador, on the pod's address, reaches the app on the pod's localhost.
    let answer = eventually(Duration::from_secs(30), || {
        http_get(&server.pod_address("one"), 9000, "/")
            .ok()
            .filter(|a| a.starts_with("HTTP/1.1 200"))
    })
    .expect("the ambassador answers");
    assert!(answer.ends_with("\r\n\r\none\n"), "{answer}");
    let served = server.logs_until("one", "app", |l| l.starts_with("served "));
    assert!(
        served.contains("served 127.0.0.1:"),
        "the app sees its own pod's calls come from localhost: {served}"
    );

    // A second pod serves the same ports beside it. Its localhost is its own; the first pod's
    // app, bound on the first pod's localhost, cannot be reached from it; the first pod's
    // ambassador can, and sees the second pod's address as the caller's.
    server.apply_on_node(&ambassador(
        "two",
        &[
            "127.0.0.1:8080",
            &format!("{one_ip}:8080"),
            &format!("{one_ip}:9000"),
        ],
    ));
    server.wait_for("two", "{.status.containerStatuses[1].ready}", "true");
    let two_ip = server.field("pod/two", "{.status.podIP}");
    assert_ne!(one_ip, two_ip);
    let own = server.logs_until("two", "caller-0", |l| l.ends_with(": two"));
    // Calls made before the app listened fail; every one after reaches the pod's own app.
    let answered: Vec<&str> = own.lines().skip_while(|l| l.contains("error")).collect();
    assert!(
        !answered.is_empty() && answered.iter().all(|l| *l == "127.0.0.1:8080: two"),
        "the second pod's localhost is its own: {own}"
    );
    let refused = server.logs_until("two", "caller-1", |l| l.contains("error"));
    assert!(
        refused
            .lines()
            .all(|l| l.starts_with(&format!("{one_ip}:8080: error:"))
                && l.to_lowercase().contains("refused")),
        "the first pod's localhost is out of reach: {refused}"
    );
    let through = server.logs_until("two", "caller-2", |l| l.ends_with(": one"));
    assert!(
        through.contains(&format!("{one_ip}:9000: one")),
        "{through}"
    );
    let proxied = server.logs_until("one", "ambassador", |l| {
        l.starts_with(&format!("proxied {two_ip}:"))
    });
    assert!(proxied.contains("to 127.0.0.1:8080"), "{proxied}");

    // The pod's address is given up with the pod.
    server.kubectl_ok(&["delete", "pod", "one", "--grace-period=1", "--timeout=60s"]);
    assert!(
        http_get(&format!("127.{}", &one_ip[3..]), 9000, "/").is_err(),
        "a deleted pod's address still answers"
    );
}

#[test]
fn pods_see_their_own_address_in_the_downward_api() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply_on_node(&pod_on_node(
        "env",
        r#"
  restartPolicy: Never
  containers:
  - name: hello
    image: samples.skiff.local/hello:0.1.0
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
"#,
    ));
    server.wait_for("env", "{.status.phase}", "Succeeded");
    let ip = server.field("pod/env", "{.status.podIP}");
    let logs = server.kubectl_ok(&["logs", "env"]);
    assert!(logs.contains(&format!("env POD_IP={ip}")), "{logs}");
    assert!(logs.contains("env HOST_IP=127.0.0.1"), "{logs}");
}
