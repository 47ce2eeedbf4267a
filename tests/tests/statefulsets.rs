//! StatefulSets driven by the real kubectl: ordered pods with stable names and their own
//! claims, a deleted pod back with the same claim and data, scaling down from the top,
//! partitioned rolling updates and undo through ControllerRevisions.

use std::path::PathBuf;
use std::time::Duration;

use skiff_tests::{Server, eventually, text};

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
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
      - name: app
        image: samples.skiff.local/logwriter:0.1.0
        env: [{name: LOG_FILE, value: /data/app.log}, {name: INTERVAL_MS, value: "100"}]
        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
"#;

/// The set's pods' names.
fn pod_names(server: &Server) -> String {
    server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
}

fn rollout_status(server: &Server) -> String {
    let out = server.kubectl(&["rollout", "status", "statefulset/web", "--timeout=90s"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file the pod's app writes, on the node's disk behind the claim's volume.
fn log_behind(server: &Server, claim: &str) -> PathBuf {
    let volume = server.field(&format!("pvc/{claim}"), "{.spec.volumeName}");
    PathBuf::from(server.field(&format!("pv/{volume}"), "{.spec.hostPath.path}")).join("app.log")
}

#[test]
fn a_stateful_set_keeps_names_order_and_claims() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply(WEB);
    let status = rollout_status(&server);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods have been updated..."),
        "{status}"
    );
    let pods = pod_names(&server);
    assert_eq!(
        pods.split_whitespace().collect::<Vec<_>>(),
        ["web-0", "web-1", "web-2"]
    );
    for i in 0..3 {
        let pod = format!("pod/web-{i}");
        assert_eq!(
            server.field(&pod,
                "{.spec.hostname} {.spec.subdomain} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"
            ),
            format!("web-{i} web {i}")
        );
        assert_eq!(
            server.field(
                &pod,
                "{.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}"
            ),
            format!("www-web-{i}")
        );
        assert_eq!(
            server.field(&format!("pvc/www-web-{i}"), "{.status.phase}"),
            "Bound"
        );
    }
    // In order: each claim and pod after the one before, each pod once the one before was ready.
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,involvedObject.kind=StatefulSet",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.message}{\"\\n\"}{end}",
    ]);
    let mut lines: Vec<&str> = events.lines().collect();
    lines.sort();
    let messages: Vec<String> = lines
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect();
    let expected: Vec<String> = (0..3)
        .flat_map(|i| {
            [
                format!("create Claim www-web-{i} Pod web-{i} in StatefulSet web success"),
                format!("create Pod web-{i} in StatefulSet web successful"),
            ]
        })
        .collect();
    assert_eq!(messages, expected, "{events}");
    // OrderedReady: each pod was made once the one before it was Ready.
    for i in 0..2 {
        let ready_at = server.field(
            &format!("pod/web-{i}"),
            "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        );
        let next_made = server.field(
            &format!("pod/web-{}", i + 1),
            "{.metadata.creationTimestamp}",
        );
        assert!(
            !ready_at.is_empty() && next_made >= ready_at,
            "web-{i} Ready {ready_at}, web-{} made {next_made}",
            i + 1
        );
    }

    // A deleted pod comes back under its name, with its claim and the data on it.
    let log = log_behind(&server, "www-web-1");
    let uid = server.field("pod/web-1", "{.metadata.uid}");
    eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.lines().count() >= 3)
            .map(|_| ())
    })
    .expect("web-1 writes to its claim");
    // Not waited for: the pod is gone and made again under the same name within moments, so
    // kubectl could list the new one and wait for a deletion it never sees.
    server.kubectl_ok(&["delete", "pod", "web-1", "--wait=false"]);
    eventually(Duration::from_secs(60), || {
        let now = server.kubectl(&[
            "get",
            "pod",
            "web-1",
            "-o",
            "jsonpath={.metadata.uid} {.status.phase}",
        ]);
        let now = String::from_utf8_lossy(&now.stdout).to_string();
        (!now.starts_with(&uid) && now.ends_with("Running")).then_some(())
    })
    .expect("web-1 is made again");
    assert_eq!(
        server.field(
            "pod/web-1",
            "{.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}"
        ),
        "www-web-1"
    );
    let runs = eventually(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let runs = text.lines().filter(|l| l.ends_with(" n=1")).count();
        (runs == 2).then_some(text)
    })
    .expect("the new web-1 appends to the old web-1's file");
    assert!(runs.lines().count() > 4, "{runs}");

    // Scaling down removes the highest ordinal and keeps its claim.
    server.kubectl_ok(&["scale", "statefulset", "web", "--replicas=2"]);
    eventually(Duration::from_secs(60), || {
        let pods = pod_names(&server);
        (pods.split_whitespace().collect::<Vec<_>>() == ["web-0", "web-1"]).then_some(())
    })
    .expect("web-2 goes");
    assert_eq!(server.field("pvc/www-web-2", "{.status.phase}"), "Bound");
}

#[test]
fn a_partitioned_update_replaces_only_the_pods_above_the_partition_and_undo_goes_back() {
    let server = Server::start().unwrap();
    server.import_samples();
    server.apply(WEB);
    rollout_status(&server);
    let first = server.field("statefulset/web", "{.status.updateRevision}");
    server.merge_patch("statefulset/web", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}},"template":{"metadata":{"annotations":{"release":"2"}}}}}"#);
    let status = rollout_status(&server);
    assert!(
        status.contains("partitioned roll out complete: 2 new pods have been updated..."),
        "{status}"
    );
    let second = server.field("statefulset/web", "{.status.updateRevision}");
    assert_ne!(first, second);
    let revision = |i: i32| {
        server.field(
            &format!("pod/web-{i}"),
            "{.metadata.labels.controller-revision-hash}",
        )
    };
    assert_eq!(
        [revision(0), revision(1), revision(2)],
        [first.clone(), second.clone(), second.clone()]
    );
    assert_eq!(
        server.field("statefulset/web", "{.status.currentRevision}"),
        first
    );
    let history = server.kubectl_ok(&["rollout", "history", "statefulset/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // Undo, with the partition lifted: every pod goes back to the first template.
    server.merge_patch(
        "statefulset/web",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    );
    let undone = server.kubectl_ok(&["rollout", "undo", "statefulset/web"]);
    assert_eq!(undone.trim(), "statefulset.apps/web rolled back");
    rollout_status(&server);
    eventually(Duration::from_secs(60), || {
        ([revision(0), revision(1), revision(2)] == [first.clone(), first.clone(), first.clone()])
            .then_some(())
    })
    .expect("every pod is back at the first revision");
    assert_eq!(
        server.field("pod/web-2", "{.metadata.annotations.release}"),
        ""
    );
}
