//! Deployments and ReplicaSets driven by the real kubectl: the Kubernetes basics tutorial as
//! written but for the image, a rolling update watched for its bounds, a rollout stopped by its
//! progress deadline and undone, and a ReplicaSet adopting, replacing and trimming pods.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use skiff_tests::{Server, eventually, text};

/// The long-running sample (it logs a line every 200 ms) as `registry.local/bootcamp:1` and
/// `:2`, two images whose rollouts tell apart.
fn server_with_app() -> Server {
    let server = Server::start().unwrap();
    server.import_sample("logwriter", "registry.local/bootcamp:1");
    server.import_sample("logwriter", "registry.local/bootcamp:2");
    server
}

fn lines_of(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Runs kubectl and checks what it prints, as the tutorial shows it.
fn says(server: &Server, args: &[&str], want: &str) {
    assert_eq!(
        server.kubectl_ok(args).trim(),
        want,
        "kubectl {}",
        args.join(" ")
    );
}

fn rollout_status(server: &Server, name: &str) -> String {
    let out = server.kubectl(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_kubernetes_basics_tutorial_runs_as_written() {
    let server = server_with_app();
    let name = "kubernetes-bootcamp";
    // Module 2: create a deployment.
    says(
        &server,
        &[
            "create",
            "deployment",
            name,
            "--image=registry.local/bootcamp:1",
        ],
        "deployment.apps/kubernetes-bootcamp created",
    );
    let status = rollout_status(&server, name);
    assert!(
        status
            .trim_end()
            .ends_with("deployment \"kubernetes-bootcamp\" successfully rolled out"),
        "{status}"
    );
    let listed = server.kubectl_ok(&["get", "deployments"]);
    let rows = lines_of(&listed);
    assert_eq!(
        rows[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{listed}"
    );
    assert_eq!(rows[1][..4], [name, "1/1", "1", "1"], "{listed}");

    // Module 5: scale up to four and see every pod.
    says(
        &server,
        &["scale", &format!("deployments/{name}"), "--replicas=4"],
        "deployment.apps/kubernetes-bootcamp scaled",
    );
    rollout_status(&server, name);
    let all = server.kubectl_ok(&["get", "deployments,rs,pods"]);
    let rs_name = server
        .kubectl_ok(&["get", "rs", "-l", "app=kubernetes-bootcamp", "-o", "name"])
        .trim()
        .to_string();
    let rs_name = rs_name.trim_start_matches("replicaset.apps/");
    assert!(
        rs_name.starts_with("kubernetes-bootcamp-"),
        "the ReplicaSet is named after the template's hash: {rs_name}"
    );
    let rows = lines_of(&all);
    let rs_row = rows
        .iter()
        .find(|r| r.first().map(String::as_str) == Some(&format!("replicaset.apps/{rs_name}")))
        .unwrap_or_else(|| panic!("no row for the ReplicaSet:\n{all}"));
    assert_eq!(
        rs_row[1..4],
        ["4", "4", "4"],
        "DESIRED CURRENT READY:\n{all}"
    );
    let pods: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| {
            r.first()
                .is_some_and(|n| n.starts_with(&format!("pod/{rs_name}-")))
        })
        .collect();
    assert_eq!(pods.len(), 4, "{all}");
    assert!(
        pods.iter().all(|p| p[1] == "1/1" && p[2] == "Running"),
        "{all}"
    );
    let described = server.kubectl_ok(&["describe", "deployment", name]);
    assert!(
        described.contains(
            "Replicas:               4 desired | 4 updated | 4 total | 4 available | 0 unavailable"
        ),
        "{described}"
    );
    assert!(
        described.contains(&format!(
            "NewReplicaSet:   {rs_name} (4/4 replicas created)"
        )),
        "{described}"
    );
    assert!(
        described.contains(&format!("Scaled up replica set {rs_name} from 1 to 4")),
        "{described}"
    );
    assert!(described.contains("deployment-controller"), "{described}");

    // Module 6: update the image, watch the rollout, roll it back.
    let container = server.field(
        &format!("deployment/{name}"),
        "{.spec.template.spec.containers[0].name}",
    );
    says(
        &server,
        &[
            "set",
            "image",
            &format!("deployments/{name}"),
            &format!("{container}=registry.local/bootcamp:2"),
        ],
        "deployment.apps/kubernetes-bootcamp image updated",
    );
    let status = rollout_status(&server, name);
    assert!(status.contains("successfully rolled out"), "{status}");
    let image = |server: &Server| {
        server.field(
            &format!("deployment/{name}"),
            "{.spec.template.spec.containers[0].image}",
        )
    };
    let revision = |server: &Server| {
        server.field(
            &format!("deployment/{name}"),
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        )
    };
    assert_eq!(image(&server), "registry.local/bootcamp:2");
    assert_eq!(revision(&server), "2");
    let pod_images = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=kubernetes-bootcamp",
        "-o",
        "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    eventually(Duration::from_secs(30), || {
        let images = server.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=kubernetes-bootcamp",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
        ]);
        (images.lines().count() == 4 && images.lines().all(|l| l == "registry.local/bootcamp:2"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("old pods stayed: {pod_images}"));
    let history = server.kubectl_ok(&["rollout", "history", &format!("deployment/{name}")]);
    assert_eq!(
        lines_of(&history)[1..],
        [
            vec!["REVISION", "CHANGE-CAUSE"],
            vec!["1", "<none>"],
            vec!["2", "<none>"]
        ],
        "{history}"
    );
    says(
        &server,
        &["rollout", "undo", &format!("deployments/{name}")],
        "deployment.apps/kubernetes-bootcamp rolled back",
    );
    rollout_status(&server, name);
    assert_eq!(image(&server), "registry.local/bootcamp:1");
    // The first ReplicaSet is back, with revision 3 and its old one in its history.
    assert_eq!(
        server.kubectl_ok(&[
            "get",
            "rs",
            rs_name,
            "-o",
            "jsonpath={.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.metadata.annotations.deployment\\.kubernetes\\.io/revision-history}",
        ]),
        "4 3 1"
    );
    let history = server.kubectl_ok(&["rollout", "history", &format!("deployment/{name}")]);
    let revisions: Vec<String> = lines_of(&history)[2..]
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // A restart rolls out the same template anew; undo to a named revision goes back to it.
    says(
        &server,
        &["rollout", "restart", &format!("deployment/{name}")],
        "deployment.apps/kubernetes-bootcamp restarted",
    );
    rollout_status(&server, name);
    assert!(
        !server
            .field(
                &format!("deployment/{name}"),
                "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}"
            )
            .is_empty()
    );
    assert_eq!(
        server
            .kubectl_ok(&["get", "rs", "-l", "app=kubernetes-bootcamp", "-o", "name"])
            .lines()
            .count(),
        3
    );
    let shown = server.kubectl_ok(&[
        "rollout",
        "history",
        &format!("deployment/{name}"),
        "--revision=2",
    ]);
    assert!(
        shown.contains("Image:\tregistry.local/bootcamp:2"),
        "{shown}"
    );
    says(
        &server,
        &[
            "rollout",
            "undo",
            &format!("deployment/{name}"),
            "--to-revision=2",
        ],
        "deployment.apps/kubernetes-bootcamp rolled back",
    );
    rollout_status(&server, name);
    assert_eq!(image(&server), "registry.local/bootcamp:2");
    assert_eq!(revision(&server), "5");
    assert_eq!(
        server.field(
            &format!("deployment/{name}"),
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "NewReplicaSetAvailable"
    );
}

/// What a watch of the app's pods saw: the most pods at once, the fewest ready ones; and of
/// its ReplicaSets: the most replicas they asked for at once.
#[derive(Default)]
struct Bounds {
    most: usize,
    most_replicas: i32,
    fewest_ready: usize,
    events: usize,
}

/// Watches the pods labelled `app=<app>` until `stop` is set, recording the bounds from the
/// first event on. Pods being deleted no longer count, as for the controllers.
fn watch_bounds(
    server: &Server,
    app: &str,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<Mutex<Bounds>>) {
    let bounds = Arc::new(Mutex::new(Bounds {
        fewest_ready: usize::MAX,
        ..Bounds::default()
    }));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(server.client()).unwrap();
    let (seen, selector) = (bounds.clone(), format!("app={app}"));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        runtime.block_on(async move {
            // The replicas the app's ReplicaSets ask for, summed: what upstream bounds by
            // maxSurge (its e2e checks "total pods created" the same way).
            let sets: kube::Api<ReplicaSet> = kube::Api::namespaced(client.clone(), "default");
            let mut set_changes =
                watcher::watcher(sets, watcher::Config::default().labels(&selector)).boxed();
            let (set_seen, set_stop) = (seen.clone(), stop.clone());
            tokio::spawn(async move {
                let mut replicas: HashMap<String, i32> = HashMap::new();
                while !set_stop.load(Ordering::SeqCst) {
                    let Ok(Some(Ok(change))) =
                        tokio::time::timeout(Duration::from_millis(100), set_changes.next()).await
                    else {
                        continue;
                    };
                    match change {
                        watcher::Event::Apply(rs) | watcher::Event::InitApply(rs) => {
                            let wanted = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                            replicas.insert(rs.metadata.name.clone().unwrap(), wanted);
                        }
                        watcher::Event::Delete(rs) => {
                            replicas.remove(rs.metadata.name.as_deref().unwrap());
                        }
                        watcher::Event::Init | watcher::Event::InitDone => {}
                    }
                    let total = replicas.values().sum::<i32>();
                    let mut b = set_seen.lock().unwrap();
                    b.most_replicas = b.most_replicas.max(total);
                }
            });
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default");
            let mut changes =
                watcher::watcher(pods, watcher::Config::default().labels(&selector)).boxed();
            let mut state: HashMap<String, (bool, bool)> = HashMap::new();
            let mut listing: HashMap<String, (bool, bool)> = HashMap::new();
            let mut listed = false;
            let summary = |p: &Pod| {
                let deleting = p.metadata.deletion_timestamp.is_some();
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                (deleting, ready)
            };
            while !stop.load(Ordering::SeqCst) {
                let Ok(Some(change)) =
                    tokio::time::timeout(Duration::from_millis(100), changes.next()).await
                else {
                    continue;
                };
                let Ok(change) = change else { continue };
                match change {
                    watcher::Event::Init => listing.clear(),
                    watcher::Event::InitApply(p) => {
                        listing.insert(p.metadata.name.clone().unwrap(), summary(&p));
                    }
                    watcher::Event::InitDone => {
                        state = std::mem::take(&mut listing);
                        listed = true;
                        let _ = started_tx.send(());
                    }
                    watcher::Event::Apply(p) => {
                        state.insert(p.metadata.name.clone().unwrap(), summary(&p));
                    }
                    watcher::Event::Delete(p) => {
                        state.remove(p.metadata.name.as_deref().unwrap());
                    }
                }
                if !listed {
                    continue;
                }
                let live = state.values().filter(|(deleting, _)| !deleting);
                let count = live.clone().count();
                let ready = live.filter(|(_, ready)| *ready).count();
                let mut b = seen.lock().unwrap();
                b.most = b.most.max(count);
                b.fewest_ready = b.fewest_ready.min(ready);
                b.events += 1;
            }
        })
    });
    started_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the watch starts");
    (handle, bounds)
}

#[test]
fn a_rolling_update_stays_within_its_bounds_and_a_stuck_one_is_undone() {
    let server = server_with_app();
    server.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: rolling}
spec:
  replicas: 10
  minReadySeconds: 1
  selector: {matchLabels: {app: rolling}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 2, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: rolling}}
    spec:
      containers: [{name: app, image: registry.local/bootcamp:1}]
"#,
    );
    rollout_status(&server, "rolling");
    let stop = Arc::new(AtomicBool::new(false));
    let (watch, bounds) = watch_bounds(&server, "rolling", stop.clone());
    server.kubectl_ok(&[
        "set",
        "image",
        "deployment/rolling",
        "app=registry.local/bootcamp:2",
    ]);
    rollout_status(&server, "rolling");
    // Old pods may still be shutting down; the bounds count only live ones.
    stop.store(true, Ordering::SeqCst);
    watch.join().unwrap();
    let b = bounds.lock().unwrap();
    assert!(
        b.events > 10,
        "the watch saw the rollout: {} events",
        b.events
    );
    // ReplicaSets ask for 10 + maxSurge 2 pods at most. The pods themselves may number one
    // more for a moment, as upstream's: an old ReplicaSet told to scale down may not yet have
    // deleted its pod when the new one, told to scale up, creates one.
    assert!(
        b.most_replicas <= 12,
        "at most 10 + maxSurge 2 replicas, saw {}",
        b.most_replicas
    );
    assert!(
        b.most <= 13,
        "at most 10 + maxSurge 2 pods (+1 in flight), saw {}",
        b.most
    );
    assert!(b.most >= 11, "the rollout surged: at most {} pods", b.most);
    assert!(
        b.most_replicas >= 11,
        "the ReplicaSets surged: at most {} replicas",
        b.most_replicas
    );
    assert!(
        b.fewest_ready >= 9,
        "at least 10 - maxUnavailable 1 ready, saw {}",
        b.fewest_ready
    );
    drop(b);
    let events = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=rolling",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.lines().any(
            |l| l.starts_with("ScalingReplicaSet: Scaled up replica set rolling-")
                && l.ends_with("from 0 to 2")
        ),
        "{events}"
    );

    // An image no node has: the new pods never become ready, the rollout stops where
    // maxUnavailable lets it, and the progress deadline reports it.
    server.merge_patch(
        "deployment/rolling",
        r#"{"spec":{"progressDeadlineSeconds":3,"template":{"spec":{"containers":[{"name":"app","image":"registry.local/missing:1"}]}}}}"#,
    );
    let out = server.kubectl(&["rollout", "status", "deployment/rolling", "--timeout=60s"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("deployment \"rolling\" exceeded its progress deadline"),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.field("deployment/rolling",
            "{.status.conditions[?(@.type==\"Progressing\")].status} {.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "False ProgressDeadlineExceeded"
    );
    let ready: i32 = server
        .field("deployment/rolling", "{.status.availableReplicas}")
        .parse()
        .unwrap();
    assert!(ready >= 9, "the old pods keep serving: {ready} available");
    says(
        &server,
        &["rollout", "undo", "deployment/rolling"],
        "deployment.apps/rolling rolled back",
    );
    rollout_status(&server, "rolling");
    assert_eq!(
        server.field("deployment/rolling",
            "{.spec.template.spec.containers[0].image} {.status.updatedReplicas} {.status.availableReplicas}"
        ),
        "registry.local/bootcamp:2 10 10"
    );
    assert_eq!(
        server.field(
            "deployment/rolling",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "NewReplicaSetAvailable"
    );
}

#[test]
fn a_replica_set_adopts_replaces_and_trims_its_pods() {
    let server = server_with_app();
    server.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: orphan, labels: {app: kept}}
spec:
  containers: [{name: app, image: registry.local/bootcamp:1}]
"#,
    );
    server.wait_for("orphan", "{.status.phase}", "Running");
    server.apply(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: kept}
spec:
  replicas: 3
  selector: {matchLabels: {app: kept}}
  template:
    metadata: {labels: {app: kept}}
    spec:
      containers: [{name: app, image: registry.local/bootcamp:1}]
"#,
    );
    let ready = |want: &str| {
        eventually(Duration::from_secs(60), || {
            let got = server.kubectl_ok(&[
                "get",
                "rs",
                "kept",
                "-o",
                "jsonpath={.status.replicas} {.status.readyReplicas}",
            ]);
            (got.trim() == want).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "never {want}: {}",
                server.kubectl_ok(&["get", "rs,pods", "-o", "wide"])
            )
        })
    };
    ready("3 3");
    // The orphan was adopted, so only two pods were made.
    assert_eq!(
        server.kubectl_ok(&["get", "pod", "orphan", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].controller}"]),
        "ReplicaSet/kept true"
    );
    let names = || {
        server.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=kept",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
    };
    assert_eq!(names().split_whitespace().count(), 3);
    let created = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=kept,reason=SuccessfulCreate",
        "-o",
        "name",
    ]);
    assert_eq!(created.lines().count(), 2, "{created}");

    // A deleted pod is replaced.
    server.kubectl_ok(&["delete", "pod", "orphan", "--wait=false"]);
    eventually(Duration::from_secs(60), || {
        let names = names();
        (!names.contains("orphan") && names.split_whitespace().count() == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("not replaced: {}", names()));
    ready("3 3");

    // A pod relabelled out of the selector is released, and replaced.
    let first = names().split_whitespace().next().unwrap().to_string();
    server.kubectl_ok(&["label", "pod", &first, "app=gone", "--overwrite"]);
    eventually(Duration::from_secs(30), || {
        let refs = server.kubectl_ok(&[
            "get",
            "pod",
            &first,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ]);
        refs.trim().is_empty().then_some(())
    })
    .expect("the relabelled pod is released");
    ready("3 3");

    // Scaling down deletes the surplus.
    server.kubectl_ok(&["scale", "rs", "kept", "--replicas=1"]);
    ready("1 1");
    eventually(Duration::from_secs(30), || {
        (names().split_whitespace().count() == 1).then_some(())
    })
    .expect("surplus pods are deleted");
    let deleted = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=kept,reason=SuccessfulDelete",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_eq!(
        deleted.matches("Deleted pod: kept-").count(),
        2,
        "{deleted}"
    );
}
