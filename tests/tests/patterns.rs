//! The samples of `samples/manifests/patterns.yaml` on the server's own node: sidecar, adapter
//! and init-container pods sharing emptyDir volumes, a ConfigMap read live from its files, a
//! crash-looping job and a memory hog.

use std::time::Duration;

use skiff_tests::{Server, eventually, pod_on_node, text};

/// Starts a server with the sample images and applies the pattern manifests to its node.
fn with_patterns() -> Server {
    with_pod(
        &std::fs::read_to_string(skiff_tests::workspace().join("samples/manifests/patterns.yaml"))
            .unwrap(),
    )
}

/// Starts a server with the sample images and applies one pod, whose YAML names its node
/// NODE_NAME.
fn with_pod(yaml: &str) -> Server {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply_on_node(yaml);
    server
}

#[test]
fn sidecar_adapter_and_init_containers_share_their_pods_volumes() {
    let server = with_patterns();
    // The sidecar ships what the app writes into the shared emptyDir.
    let shipped = server.logs_until("sidecar", "shipper", |l| l.ends_with("n=3"));
    assert!(
        shipped
            .lines()
            .any(|l| l == "level=info msg=\"request served\" n=1"),
        "{shipped}"
    );
    // The app itself writes nothing to stdout.
    assert_eq!(server.kubectl_ok(&["logs", "sidecar", "-c", "app"]), "");
    // The adapter turns the same lines into JSON.
    let adapted = server.logs_until("adapter", "adapter", |l| l.contains("\"n\":\"2\""));
    assert!(
        adapted
            .lines()
            .any(|l| l == r#"{"level":"info","msg":"request served","n":"1"}"#),
        "{adapted}"
    );
    // The init container ran first and left the file the app reads.
    eventually(Duration::from_secs(60), || {
        (server.field("pod/init-demo", "{.status.phase}") == "Succeeded").then_some(())
    })
    .expect("the init-container pod completes");
    assert_eq!(
        server.kubectl_ok(&["logs", "init-demo", "-c", "install"]),
        "wrote /work-dir/index.html\n"
    );
    assert_eq!(
        server.kubectl_ok(&["logs", "init-demo"]),
        "/usr/share/app/index.html: <h1>prepared before the app started</h1>\n"
    );
    assert_eq!(
        server.field(
            "pod/init-demo",
            "{.status.initContainerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
}

/// A pod whose init container exits 1, under `policy`.
fn failing_init(name: &str, policy: &str) -> String {
    pod_on_node(
        name,
        &format!(
            r#"
  restartPolicy: {policy}
  initContainers:
  - name: setup
    image: samples.skiff.local/hello:0.1.0
    env: [{{name: EXIT_CODE, value: "1"}}]
  containers:
  - name: app
    image: samples.skiff.local/hello:0.1.0
"#
        ),
    )
}

#[test]
fn a_failing_init_container_keeps_the_app_from_starting() {
    let server = with_pod(&failing_init("broken-init", "Never"));
    let status = eventually(Duration::from_secs(60), || {
        let row = server.kubectl_ok(&["get", "pod", "broken-init", "--no-headers"]);
        row.contains("Init:Error").then_some(row)
    })
    .expect("kubectl shows Init:Error");
    assert!(status.contains("0/1"), "{status}");
    assert_eq!(server.field("pod/broken-init", "{.status.phase}"), "Failed");
    // The app container never ran.
    assert_eq!(
        server.field(
            "pod/broken-init",
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "PodInitializing"
    );
    // Under restartPolicy Always the init container is retried with back-off.
    let retried = failing_init("retried-init", "Always");
    server.apply_on_node(&retried);
    eventually(Duration::from_secs(60), || {
        let row = server.kubectl_ok(&["get", "pod", "retried-init", "--no-headers"]);
        row.contains("Init:CrashLoopBackOff").then_some(row)
    })
    .expect("kubectl shows Init:CrashLoopBackOff");
    assert_eq!(
        server.field("pod/retried-init", "{.status.phase}"),
        "Pending"
    );
}

#[test]
fn a_mounted_config_map_is_read_live_and_a_memory_hog_is_oom_killed() {
    let server = with_patterns();
    server.logs_until("config-reader", "reader", |l| {
        l == "/config/greeting: hello"
    });
    server.merge_patch("configmap/greeting", r#"{"data":{"greeting":"bonjour"}}"#);
    server.logs_until("config-reader", "reader", |l| {
        l == "/config/greeting: bonjour"
    });
    // The running container saw the change: it was never restarted.
    assert_eq!(
        server.field(
            "pod/config-reader",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    let hog = eventually(Duration::from_secs(60), || {
        let reason = server.field(
            "pod/memhog",
            "{.status.containerStatuses[0].state.terminated.reason}",
        );
        (!reason.is_empty()).then_some(reason)
    })
    .expect("the memory hog ends");
    assert_eq!(hog, "OOMKilled");
    assert_eq!(
        server.field(
            "pod/memhog",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );
    assert_eq!(server.field("pod/memhog", "{.status.phase}"), "Failed");
    let logs = server.kubectl_ok(&["logs", "memhog"]);
    assert!(logs.contains("holding 8 MiB"), "{logs}");
    // The node carries on: the other pods still run.
    assert_eq!(
        server.field("pod/config-reader", "{.status.phase}"),
        "Running"
    );

    // The crash-looping job backs off between runs.
    let restarts = eventually(Duration::from_secs(60), || {
        let count = server.field(
            "pod/crashloop",
            "{.status.containerStatuses[0].restartCount}",
        );
        (count.parse::<u32>().unwrap_or(0) >= 1).then_some(count)
    })
    .expect("the job restarts");
    assert!(!restarts.is_empty());
    let row = server.kubectl_ok(&["get", "pod", "crashloop", "--no-headers"]);
    assert!(row.contains("CrashLoopBackOff"), "{row}");
}

#[test]
fn a_busy_container_is_stopped_when_its_pod_is_deleted() {
    let server = with_pod(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: spinner}
spec:
  nodeName: NODE_NAME
  containers:
  - name: spin
    image: samples.skiff.local/hello:0.1.0
    env: [{name: SPIN, value: "1"}]
"#,
    );
    eventually(Duration::from_secs(60), || {
        (server.field("pod/spinner", "{.status.phase}") == "Running").then_some(())
    })
    .expect("the spinner runs");
    // The API stays responsive while the guest spins.
    server.kubectl_ok(&["get", "pods"]);
    server.kubectl_ok(&["delete", "pod", "spinner", "--timeout=30s"]);
    let gone = server.kubectl(&["get", "pod", "spinner"]);
    assert!(!gone.status.success(), "{}", text(&gone));
    let logs_dir = server.data_dir().join("node/pods");
    let left: Vec<_> = std::fs::read_dir(&logs_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the pod's logs stay behind: {left:?}");
}

#[test]
fn a_claim_is_provisioned_on_its_node_and_outlives_its_pods() {
    let server = Server::start().unwrap();
    server.import_samples();
    let classes = server.kubectl_ok(&["get", "storageclass"]);
    assert!(classes.contains("local-path (default)"), "{classes}");
    let pod = |name: &str, image: &str, env: &str, claim: &str| {
        pod_on_node(
            name,
            &format!(
                r#"
  restartPolicy: Never
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]
  containers:
  - name: app
    image: samples.skiff.local/{image}:0.1.0
    env: {env}
    volumeMounts: [{{name: data, mountPath: /data}}]
"#
            ),
        )
    };
    server.apply_on_node(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: notes}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
"#,
    );
    server.apply_on_node(&pod(
        "writer",
        "prepare",
        "[{name: TARGET, value: /data/note}, {name: CONTENT, value: kept}]",
        "notes",
    ));
    server.wait_for("writer", "{.status.phase}", "Succeeded");
    let claim = server.kubectl_ok(&[
        "get",
        "pvc",
        "notes",
        "-o",
        "jsonpath={.status.phase} {.spec.volumeName} {.metadata.uid} {.spec.storageClassName}",
    ]);
    let fields: Vec<&str> = claim.split_whitespace().collect();
    assert_eq!(fields[0], "Bound", "{claim}");
    assert_eq!(fields[1], format!("pvc-{}", fields[2]), "{claim}");
    // Created without a class, the claim got the default one.
    assert_eq!(fields[3], "local-path", "{claim}");
    let volume = server.kubectl_ok(&[
        "get",
        "pv",
        fields[1],
        "-o",
        "jsonpath={.status.phase} {.spec.claimRef.name} {.spec.storageClassName} \
         {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    ]);
    assert_eq!(
        volume.split_whitespace().collect::<Vec<_>>(),
        ["Bound", "notes", "local-path", server.node_name().as_str()],
        "{volume}"
    );
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=notes",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("ProvisioningSucceeded"), "{events}");

    // The data outlives the pod that wrote it.
    server.kubectl_ok(&["delete", "pod", "writer"]);
    server.apply_on_node(&pod(
        "reader",
        "readfile",
        "[{name: FILE, value: /data/note}, {name: ROUNDS, value: \"1\"}]",
        "notes",
    ));
    server.wait_for("reader", "{.status.phase}", "Succeeded");
    let logs = server.kubectl_ok(&["logs", "reader"]);
    assert!(logs.contains("/data/note: kept"), "{logs}");

    // A claim that does not exist keeps the pod from starting, with the kubelet's words.
    server.apply_on_node(&pod("orphan", "readfile", "[]", "nowhere"));
    server.wait_for_events(
        "orphan",
        &["FailedMount: MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"nowhere\" not found"],
    );
}
