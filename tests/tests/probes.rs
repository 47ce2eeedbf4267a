//! Probes, checked on the HTTP hello (which answers `/status/NNN` with status NNN): readiness
//! drives the Ready condition, a failing liveness probe restarts the container, a failing
//! startup probe does too, and probes a Wasm container cannot run are refused.

use skiff_tests::{Server, free_port, pod_on_node};

/// A pod serving the HTTP hello on `port`, with `probes` (YAML lines under the container).
fn web(name: &str, port: u16, probes: &str) -> String {
    pod_on_node(
        name,
        &format!(
            r#"
  containers:
  - name: web
    image: samples.skiff.local/http-hello:0.1.0
    ports: [{{name: http, containerPort: {port}}}]
{probes}
"#
        ),
    )
}

#[test]
fn readiness_drives_the_ready_condition() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply_on_node(&web(
        "ready",
        free_port(),
        "    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}\n    \
         livenessProbe: {tcpSocket: {port: http}, periodSeconds: 1}",
    ));
    server.apply_on_node(&web(
        "unready",
        free_port(),
        "    readinessProbe: {httpGet: {path: /status/503, port: http}, periodSeconds: 1, \
         failureThreshold: 1}",
    ));
    server.wait_for(
        "ready",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
    server.wait_for("unready", "{.status.phase}", "Running");
    server.wait_for_events(
        "unready",
        &["Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503"],
    );
    let status = server.kubectl_ok(&[
        "get",
        "pod",
        "unready",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(status.trim(), "False false 0", "{status}");
    let listed = server.kubectl_ok(&["get", "pods", "--no-headers"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("unready ") && l.contains(" 0/1 ")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("ready ") && l.contains(" 1/1 ")),
        "{listed}"
    );
}

#[test]
fn failing_liveness_and_startup_probes_restart_the_container() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply_on_node(&web(
        "unhealthy",
        free_port(),
        "    livenessProbe: {httpGet: {path: /status/500, port: http}, periodSeconds: 1, \
         failureThreshold: 2}",
    ));
    server.apply_on_node(&web(
        "never-starts",
        free_port(),
        "    startupProbe: {httpGet: {path: /status/404, port: http}, periodSeconds: 1, \
         failureThreshold: 1}",
    ));
    server.wait_for_events(
        "unhealthy",
        &[
            "Unhealthy: Liveness probe failed: HTTP probe failed with statuscode: 500",
            "Killing: Container web failed liveness probe, will be restarted",
        ],
    );
    server.wait_for(
        "unhealthy",
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
        "137",
    );
    server.wait_for_events(
        "never-starts",
        &[
            "Unhealthy: Startup probe failed: HTTP probe failed with statuscode: 404",
            "Killing: Container web failed startup probe, will be restarted",
        ],
    );
}

#[test]
fn exec_probes_are_refused_with_a_reason() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply_on_node(&web(
        "exec",
        free_port(),
        "    livenessProbe: {exec: {command: [cat, /tmp/healthy]}}",
    ));
    let message = server.wait_for_nonempty(
        "exec",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.starts_with("liveness probe: exec probes are not supported"),
        "{message}"
    );
    server.wait_for(
        "exec",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CreateContainerConfigError",
    );
}
