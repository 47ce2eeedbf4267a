//! The node running inside `skiff server`: it registers a Ready Node with a Lease, runs
//! components imported into its image store as pod containers, and serves their logs.

use std::time::Duration;

use skiff_tests::{Server, eventually, free_port, http_get as get, pod_on_node, text};

fn node_name(server: &Server) -> String {
    server.node_name()
}

fn import_hello(server: &Server) {
    let out = server.import_sample("hello", "registry.local/hello:1");
    assert!(out.starts_with("registry.local/hello:1 sha256:"), "{out}");
}

#[test]
fn the_node_registers_ready_with_capacity_and_renews_its_lease() {
    let server = Server::start().unwrap();
    let node = node_name(&server);
    let wide = server.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    let row = wide.lines().nth(1).unwrap_or_default();
    assert!(row.contains(" Ready "), "{wide}");
    assert!(row.contains("wasmtime://48.0.8"), "{wide}");
    assert!(row.contains("127.0.0.1"), "{wide}");
    let capacity = server.kubectl_ok(&[
        "get",
        "node",
        &node,
        "-o",
        "jsonpath={.status.capacity.cpu} {.status.capacity.memory} {.status.capacity.pods}",
    ]);
    let fields: Vec<&str> = capacity.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{capacity}");
    assert!(fields[0].parse::<u32>().unwrap() >= 1);
    // Bytes as Go prints a binary quantity: MemTotal is counted in KiB.
    assert!(
        ["Ki", "Mi", "Gi"].iter().any(|s| fields[1].ends_with(s)),
        "{capacity}"
    );
    let holder = eventually(Duration::from_secs(30), || {
        let out = server.kubectl(&[
            "get",
            "lease",
            &node,
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.holderIdentity} {.spec.leaseDurationSeconds} {.spec.renewTime} \
             {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    })
    .expect("the node's lease exists");
    let parts: Vec<&str> = holder.split_whitespace().collect();
    assert_eq!(parts[..2], [node.as_str(), "40"], "{holder}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(parts[2]).is_ok(),
        "{holder}"
    );
    // The Lease belongs to its Node, so that it goes with it.
    assert_eq!(parts[3], format!("Node/{node}"), "{holder}");
    // The node IPAM controller gives the first node the first pod range.
    let cidrs = eventually(Duration::from_secs(30), || {
        let cidrs = server.kubectl_ok(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.spec.podCIDR} {.spec.podCIDRs[*]}",
        ]);
        (!cidrs.trim().is_empty()).then_some(cidrs)
    })
    .expect("the node gets a pod CIDR");
    let range = format!("{}0.0/24", server.pod_prefix());
    assert_eq!(cidrs.trim(), format!("{range} {range}"));
}

#[test]
fn a_command_component_runs_to_completion_with_its_args_and_environment() {
    let server = Server::start().unwrap();
    import_hello(&server);
    let listed = server.image(&["ls"]);
    assert!(listed.contains("registry.local/hello:1"), "{listed}");
    server.kubectl_ok(&[
        "create",
        "configmap",
        "greeting",
        "--from-literal=GREETING_NAME=skiff",
    ]);
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=TOKEN=s3cret",
    ]);
    server.apply_on_node(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hello, labels: {app: hello}}
spec:
  nodeName: NODE_NAME
  restartPolicy: Never
  containers:
  - name: hello
    image: registry.local/hello:1
    args: ["one", "two words"]
    envFrom:
    - configMapRef: {name: greeting}
    env:
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: token, key: TOKEN}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
"#,
    );
    server.wait_for("hello", "{.status.phase}", "Succeeded");
    let state = server.kubectl_ok(&[
        "get",
        "pod",
        "hello",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}",
    ]);
    assert_eq!(state.trim(), "Completed 0");
    let logs = server.kubectl_ok(&["logs", "hello"]);
    for line in [
        "hello, skiff",
        "arg 0: hello",
        "arg 1: one",
        "arg 2: two words",
        "env GREETING_NAME=skiff",
        "env TOKEN=s3cret",
        "env POD_NAME=hello",
        "env APP=hello",
        "hello on stderr",
    ] {
        assert!(
            logs.lines().any(|l| l == line),
            "{line:?} missing from:\n{logs}"
        );
    }
    let tail = server.kubectl_ok(&["logs", "hello", "-c", "hello", "--tail=1", "--timestamps"]);
    let (time, message) = tail.trim_end().split_once(' ').unwrap();
    assert_eq!(message, "hello on stderr");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{tail}");
    let previous = server.kubectl(&["logs", "hello", "--previous"]);
    assert!(!previous.status.success());
    assert!(
        String::from_utf8_lossy(&previous.stderr).contains("previous terminated container"),
        "{}",
        text(&previous)
    );
    server.wait_for_events(
        "hello",
        &[
            "Pulled: Container image",
            "Created: Created container",
            "Started: Started container",
        ],
    );
}

#[test]
fn a_failing_container_crash_loops_with_growing_back_off() {
    let server = Server::start().unwrap();
    import_hello(&server);
    server.apply_on_node(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  nodeName: NODE_NAME
  containers:
  - name: crash
    image: registry.local/hello:1
    env: [{name: EXIT_CODE, value: "3"}]
"#,
    );
    server.wait_for(
        "crash",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CrashLoopBackOff",
    );
    let status = server.kubectl_ok(&[
        "get",
        "pod",
        "crash",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.reason} {.status.phase}",
    ]);
    let fields: Vec<&str> = status.split_whitespace().collect();
    assert!(fields[0].parse::<u32>().unwrap() >= 1, "{status}");
    assert_eq!(fields[1..], ["Error", "Running"], "{status}");
    let previous = server.kubectl_ok(&["logs", "crash", "--previous"]);
    assert!(previous.contains("env EXIT_CODE=3"), "{previous}");
    let pods = server.kubectl_ok(&["get", "pod", "crash"]);
    assert!(pods.contains("CrashLoopBackOff"), "{pods}");

    // Deleting a pod stops its containers and removes it.
    server.kubectl_ok(&["delete", "pod", "crash", "--wait=true", "--timeout=30s"]);
    let gone = server.kubectl(&["get", "pod", "crash"]);
    assert!(!gone.status.success(), "{}", text(&gone));
}

#[test]
fn an_http_component_is_served_on_its_pods_address_and_its_host_port() {
    let server = Server::start().unwrap();
    let node = node_name(&server);
    server.import_samples();
    let images = server.image(&["ls"]);
    assert!(
        images.contains("samples.skiff.local/http-hello:0.1.0"),
        "{images}"
    );
    let port = free_port();
    let pod = |name: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  containers:
  - name: web
    image: samples.skiff.local/http-hello:0.1.0
    ports: [{{containerPort: 8080, hostPort: {port}}}]
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
"#
        )
    };
    server.apply(&pod("web"));
    server.wait_for("web", "{.status.containerStatuses[0].ready}", "true");
    // The hostPort is on the node's address; the containerPort on the pod's.
    let response = eventually(Duration::from_secs(30), || {
        get("127.0.0.1", port, "/hi?x=1").ok()
    })
    .expect("the component answers");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("hello, world\nGET /hi?x=1\npod web\n"),
        "{response}"
    );
    // Every request gets a fresh instance: a second one is answered the same.
    let again = get(&server.pod_address("web"), 8080, "/again").unwrap();
    assert!(again.contains("GET /again"), "{again}");
    let logs = server.kubectl_ok(&["logs", "web"]);
    assert_eq!(logs, "GET /hi?x=1\nGET /again\n");
    // A pod serving the same containerPort runs beside it, on its own address.
    server.apply(&pod("web2").replace(&format!(", hostPort: {port}"), ""));
    server.wait_for("web2", "{.status.containerStatuses[0].ready}", "true");
    let beside = get(&server.pod_address("web2"), 8080, "/").unwrap();
    assert!(beside.contains("pod web2"), "{beside}");
    // A second pod asking for the same hostPort cannot be served beside it, and says why.
    server.kubectl_ok(&["delete", "pod", "web2", "--timeout=30s"]);
    server.apply(&pod("web2"));
    let message = server.wait_for_nonempty(
        "web2",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains(&format!("serving on 127.0.0.1:{port}")),
        "{message}"
    );
    // Deleting the first pod frees its port, and the second pod's next try takes it.
    server.kubectl_ok(&["delete", "pod", "web", "--timeout=30s"]);
    let served = eventually(Duration::from_secs(60), || {
        get("127.0.0.1", port, "/")
            .ok()
            .filter(|r| r.contains("pod web2"))
    });
    assert!(served.is_some(), "web2 never took over port {port}");
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused_with_an_event() {
    let server = Server::start().unwrap();
    server.import_samples();
    let pods = r#"
apiVersion: v1
kind: Pod
metadata: {name: gadget}
spec:
  nodeName: NODE_NAME
  containers:
  - {name: app, image: samples.skiff.local/needs-gadget:0.1.0}
---
apiVersion: v1
kind: Pod
metadata: {name: fine}
spec:
  nodeName: NODE_NAME
  restartPolicy: Never
  containers:
  - {name: app, image: samples.skiff.local/hello:0.1.0}
"#;
    server.apply_on_node(pods);
    let message = server.wait_for_nonempty(
        "gadget",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(message.contains("skiff:samples/gadget"), "{message}");
    assert_eq!(
        server
            .kubectl_ok(&[
                "get",
                "pod",
                "gadget",
                "-o",
                "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
            ])
            .trim(),
        "CreateContainerError"
    );
    let events = server.wait_for_events("gadget", &["skiff:samples/gadget"]);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("Failed: ") && l.contains("skiff:samples/gadget")),
        "{events}"
    );
    // The node carries on: another pod runs to completion.
    server.wait_for("fine", "{.status.phase}", "Succeeded");
}

#[test]
fn deleting_an_http_pod_runs_its_pre_stop_hook_and_honours_the_grace_period() {
    let server = Server::start().unwrap();
    server.import_samples();
    let pod = |name: &str, port: u16, grace: u32, pre_stop: &str| {
        pod_on_node(
            name,
            &format!(
                r#"
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: web
    image: samples.skiff.local/http-hello:0.1.0
    ports: [{{containerPort: {port}}}]
    lifecycle: {{preStop: {pre_stop}}}
"#
            ),
        )
    };
    let (draining, failing, stuck) = (free_port(), free_port(), free_port());
    server.apply_on_node(&pod("draining", draining, 30, "{sleep: {seconds: 3}}"));
    server.apply_on_node(&pod(
        "failing-hook",
        failing,
        30,
        "{httpGet: {path: /status/500, port: $PORT}}"
            .replace("$PORT", &failing.to_string())
            .as_str(),
    ));
    // A hook whose server never answers: it takes connections and says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    server.apply_on_node(&pod(
        "stuck",
        stuck,
        1,
        &format!("{{httpGet: {{host: 127.0.0.1, port: {silent_port}, path: /}}}}"),
    ));
    for name in ["draining", "failing-hook", "stuck"] {
        server.wait_for(name, "{.status.phase}", "Running");
    }

    // While its preStop hook sleeps, a terminating pod still answers.
    server.kubectl_ok(&["delete", "pod", "draining", "--wait=false"]);
    let draining_at = server.pod_address("draining");
    let answer = get(&draining_at, draining, "/while-terminating").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.wait_for_events("draining", &["Killing: Stopping container web"]);
    server.kubectl_ok(&["wait", "--for=delete", "pod/draining", "--timeout=60s"]);
    assert!(
        get(&draining_at, draining, "/").is_err(),
        "a deleted pod's port still answers"
    );

    // A failing hook is reported, and the container stops all the same.
    server.kubectl_ok(&["delete", "pod", "failing-hook", "--wait=false"]);
    server.wait_for_events(
        "failing-hook",
        &["FailedPreStopHook: PreStopHook failed: HTTP probe failed with statuscode: 500"],
    );
    server.kubectl_ok(&["wait", "--for=delete", "pod/failing-hook", "--timeout=60s"]);

    // A hook that outlasts the grace period (1 s here) is cut short, and the pod goes.
    server.kubectl_ok(&["delete", "pod", "stuck", "--wait=false"]);
    server.kubectl_ok(&["wait", "--for=delete", "pod/stuck", "--timeout=60s"]);
    drop(silent);
}

#[test]
fn a_running_pod_starts_again_once_after_its_node_restarts() {
    let mut server = Server::start().unwrap();
    server.import_samples();
    let port = free_port();
    server.apply_on_node(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: NODE_NAME
  containers:
  - name: web
    image: samples.skiff.local/http-hello:0.1.0
    ports: [{{containerPort: {port}}}]
"#
    ));
    server.wait_for("web", "{.status.phase}", "Running");
    // The pod keeps its address across the node's restart.
    let address = server.pod_address("web");
    let answered = |path: &str| {
        eventually(Duration::from_secs(30), || {
            get(&address, port, path)
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200"))
        })
        .unwrap_or_else(|| panic!("GET {path} was never answered"))
    };
    answered("/before-restart");
    let started = server.kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.status.startTime}"]);

    server.restart().unwrap();
    server.wait_for("web", "{.status.containerStatuses[0].restartCount}", "1");
    server.wait_for(
        "web",
        "{.status.containerStatuses[0].lastState.terminated.reason} \
         {.status.containerStatuses[0].lastState.terminated.exitCode}",
        "Unknown 255",
    );
    server.wait_for("web", "{.status.containerStatuses[0].ready}", "true");
    answered("/after-restart");
    // One pod, the same pod, with the run before the restart as its previous one.
    let pods = server.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(pods.trim(), "pod/web");
    let now = server.kubectl_ok(&["get", "pod", "web", "-o", "jsonpath={.status.startTime}"]);
    assert_eq!(now, started);
    let previous = server.kubectl_ok(&["logs", "web", "--previous"]);
    assert!(previous.contains("GET /before-restart"), "{previous}");
    let current = server.kubectl_ok(&["logs", "web"]);
    assert!(
        current.contains("GET /after-restart") && !current.contains("/before-restart"),
        "{current}"
    );
    server.wait_for_events("web", &["SandboxChanged: Pod sandbox changed"]);
}

#[test]
fn container_logs_rotate_at_their_size_limit() {
    let server = Server::start_with(&[
        "--container-log-max-size",
        "1Ki",
        "--container-log-max-files",
        "2",
    ])
    .unwrap();
    import_hello(&server);
    // About 60 bytes a line, 100 lines: several rotations of a 1 KiB log.
    let args: Vec<String> = (0..100)
        .map(|n| format!("\"argument number {n:03}\""))
        .collect();
    server.apply_on_node(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: chatty}}
spec:
  nodeName: NODE_NAME
  restartPolicy: Never
  containers:
  - name: hello
    image: registry.local/hello:1
    args: [{}]
"#,
        args.join(", ")
    ));
    server.wait_for("chatty", "{.status.phase}", "Succeeded");
    let logs = server.kubectl_ok(&["logs", "chatty"]);
    // kubectl logs reads the current file: the last lines, not the first.
    assert!(logs.contains("hello on stderr"), "{logs}");
    assert!(!logs.contains("argument number 000"), "{logs}");
    assert!(logs.len() < 1024, "{} bytes: {logs}", logs.len());
    let uid = server.kubectl_ok(&["get", "pod", "chatty", "-o", "jsonpath={.metadata.uid}"]);
    let dir = server
        .data_dir()
        .join(format!("node/pods/default_chatty_{}/hello", uid.trim()));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0], "0.log");
    assert!(files[1].starts_with("0.log."), "{files:?}");
}

/// A pod whose one container spins for `spin_ms`, then prints how many rounds it ran.
fn spinner(name: &str, spin_ms: u64, resources: &str) -> String {
    pod_on_node(
        name,
        &format!(
            r#"
  restartPolicy: Never
  containers:
  - name: hello
    image: registry.local/hello:1
    env: [{{name: SPIN_MS, value: "{spin_ms}"}}]
    resources: {resources}
"#
        ),
    )
}

#[test]
fn a_cpu_limit_holds_a_busy_container_to_its_share() {
    let server = Server::start().unwrap();
    import_hello(&server);
    // Both spin for the same two seconds; the limited one gets a tenth of a CPU.
    server.apply_on_node(&spinner("free", 2000, "{}"));
    server.apply_on_node(&spinner("limited", 2000, "{limits: {cpu: 100m}}"));
    let rounds = |name: &str| -> u64 {
        server.wait_for(name, "{.status.phase}", "Succeeded");
        let logs = server.kubectl_ok(&["logs", name]);
        logs.lines()
            .find_map(|l| {
                l.strip_prefix("spun ")?
                    .strip_suffix(" rounds")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no rounds in {logs}"))
    };
    let (free, limited) = (rounds("free"), rounds("limited"));
    // A tenth of a CPU against up to a whole one: far fewer rounds, whatever else the
    // machine is doing.
    assert!(
        limited * 3 < free,
        "limited {limited} rounds, unlimited {free}"
    );
}

/// Thousandths of a CPU in a quantity as the metrics API writes it (`1234567n`, `5m`, `1`).
fn millicores(quantity: &str) -> f64 {
    let (number, scale) = match quantity.char_indices().last() {
        Some((i, 'n')) => (&quantity[..i], 1e-6),
        Some((i, 'u')) => (&quantity[..i], 1e-3),
        Some((i, 'm')) => (&quantity[..i], 1.0),
        _ => (quantity, 1e3),
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("{quantity}"))
        * scale
}

/// Whether a Go duration (`10.2s`, `1m0.5s`, `500ms`) is a second or more.
fn a_second_or_more(window: &str) -> bool {
    if window.ends_with("ms") || window.ends_with("µs") || window.ends_with("ns") {
        return false;
    }
    window.contains(['h', 'm'])
        || window
            .trim_end_matches('s')
            .parse::<f64>()
            .is_ok_and(|s| s >= 1.0)
}

#[test]
fn kubectl_top_shows_what_pods_and_the_node_use() {
    let server = Server::start().unwrap();
    import_hello(&server);
    server.apply_on_node(&spinner("busy", 600_000, "{}"));
    server.apply_on_node(&spinner("capped", 600_000, "{limits: {cpu: 100m}}"));
    server.wait_for("busy", "{.status.phase}", "Running");
    server.wait_for("capped", "{.status.phase}", "Running");
    let metrics = |pod: &str| -> serde_json::Value {
        let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{pod}");
        serde_json::from_str(&server.kubectl_ok(&["get", "--raw", &path])).unwrap()
    };
    // Measured over at least a second, the busy container uses a good part of a CPU, the
    // capped one no more than its limit allows (with room for the slices' granularity), and
    // each holds its instance's memory.
    let measured = |pod: &str| {
        eventually(Duration::from_secs(30), || {
            let m = metrics(pod);
            a_second_or_more(m["window"].as_str()?).then_some(m)
        })
        .unwrap_or_else(|| panic!("no metrics over a second for {pod}"))
    };
    let busy = measured("busy");
    assert_eq!(busy["kind"], "PodMetrics");
    assert_eq!(busy["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(busy["metadata"]["name"], "busy");
    assert_eq!(busy["containers"][0]["name"], "hello");
    let busy_cpu = millicores(busy["containers"][0]["usage"]["cpu"].as_str().unwrap());
    assert!(busy_cpu >= 50.0, "{busy}");
    let memory = busy["containers"][0]["usage"]["memory"].as_str().unwrap();
    assert!(memory.ends_with("Ki") || memory.ends_with("Mi"), "{busy}");
    let capped = measured("capped");
    let capped_cpu = millicores(capped["containers"][0]["usage"]["cpu"].as_str().unwrap());
    assert!(capped_cpu <= 300.0, "{capped}");

    // kubectl top reads the same.
    let top = server.kubectl_ok(&["top", "pod"]);
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{top}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["busy", "capped"], "{top}");
    // kubectl prints millicores and MiB; the busy container's CPU shows.
    let busy_row = &rows[0];
    assert!(
        busy_row[1]
            .strip_suffix('m')
            .and_then(|m| m.parse::<u64>().ok())
            .is_some_and(|m| m > 0),
        "{top}"
    );
    assert!(rows.iter().all(|r| r[2].ends_with("Mi")), "{top}");
    let containers = server.kubectl_ok(&["top", "pod", "busy", "--containers"]);
    assert!(
        containers
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("busy") && l.split_whitespace().nth(1) == Some("hello")),
        "{containers}"
    );
    let nodes = server.kubectl_ok(&["top", "node"]);
    let row: Vec<&str> = nodes
        .lines()
        .find(|l| l.starts_with(&node_name(&server)))
        .unwrap_or_else(|| panic!("{nodes}"))
        .split_whitespace()
        .collect();
    // The host's memory in use is never nothing, and its share is of the node's allocatable.
    let number = |cell: &str, suffix: &str| cell.strip_suffix(suffix)?.parse::<u64>().ok();
    assert_eq!(row.len(), 5, "{nodes}");
    assert!(number(row[2], "%").is_some(), "{nodes}");
    assert!(number(row[3], "Mi").is_some_and(|m| m > 0), "{nodes}");
    assert!(
        number(row[4], "%").is_some_and(|p| p > 0 && p <= 100),
        "{nodes}"
    );
    // A pod that is not there is an error from the server, as upstream's.
    let missing = server.kubectl(&["top", "pod", "nope"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("pods \"nope\" not found"),
        "{}",
        text(&missing)
    );
    // A deleted pod is no longer listed.
    server.kubectl_ok(&["delete", "pod", "capped", "--wait=true"]);
    let listed = server.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["kind"], "PodMetricsList");
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["busy"]);
}
