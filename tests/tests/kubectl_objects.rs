//! Creating, reading, changing and deleting objects with the real kubectl, as upstream behaves.

use std::time::Duration;

use skiff_tests::{Server, eventually, text, write_file};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  sport: football
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
data:
  password: aHVudGVyMg==
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.local/web:1
        ports: [{containerPort: 8080}]
        env: [{name: MODE, value: fast}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: shop
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: registry.local/db:1}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: shop
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: registry.local/agent:1}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: once
  namespace: shop
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: registry.local/once:1}]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: shop
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: nightly, image: registry.local/nightly:1}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  rules:
  - host: shop.local
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
"#;

#[test]
fn apply_creates_then_reports_unchanged_then_configured() {
    let server = Server::start().unwrap();
    let file = write_file(&server, "shop.yaml", MANIFEST);
    let file = file.to_str().unwrap();
    let first = server.kubectl_ok(&["apply", "-f", file]);
    for object in [
        "namespace/shop created",
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
        "statefulset.apps/db created",
        "daemonset.apps/agent created",
        "job.batch/once created",
        "cronjob.batch/nightly created",
        "ingress.networking.k8s.io/web created",
    ] {
        assert!(first.contains(object), "missing {object:?} in:\n{first}");
    }
    let second = server.kubectl_ok(&["apply", "-f", file]);
    assert_eq!(second.matches("unchanged").count(), 10, "{second}");

    let generation = |s: &Server| {
        s.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
    };
    assert_eq!(generation(&server), "1");
    let changed = write_file(
        &server,
        "shop2.yaml",
        &MANIFEST.replace("registry.local/web:1", "registry.local/web:2"),
    );
    let third = server.kubectl_ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert!(third.contains("deployment.apps/web configured"), "{third}");
    assert_eq!(third.matches("unchanged").count(), 9, "{third}");
    assert_eq!(generation(&server), "2");
    let image = server.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "registry.local/web:2");
    // The client-side apply patch merged by container name: env and ports are still there.
    let env = server.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value}",
    ]);
    assert_eq!(env, "fast");
}

#[test]
fn apply_reads_stdin_and_directories() {
    let server = Server::start().unwrap();
    let out = server.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\ndata: {a: b}\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let dir = server.dir.path().join("manifests/nested");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\n",
    )
    .unwrap();
    let out = server.kubectl_ok(&[
        "apply",
        "-R",
        "-f",
        server.dir.path().join("manifests").to_str().unwrap(),
    ]);
    assert!(out.contains("configmap/deep created"), "{out}");
}

#[test]
fn get_prints_upstream_columns_and_formats() {
    let server = Server::start().unwrap();
    let file = write_file(&server, "shop.yaml", MANIFEST);
    server.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);

    // The deployment's pods are listed too once its controllers have made them.
    eventually(Duration::from_secs(60), || {
        let pods = server.kubectl_ok(&["get", "po", "-n", "shop", "-o", "name"]);
        (!pods.trim().is_empty()).then_some(())
    })
    .expect("the deployment's pods are created");
    let wide = server.kubectl_ok(&["get", "deploy,po,svc,cm", "-A", "-o", "wide"]);
    // Each kind's header, its columns in upstream's order (kubectl pads them with two spaces
    // or more; a column's own name may hold one).
    let headers: Vec<Vec<&str>> = wide
        .lines()
        .filter(|l| l.starts_with("NAMESPACE"))
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        headers,
        [
            &[
                "NAMESPACE",
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ][..],
            &[
                "NAMESPACE",
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ],
            &[
                "NAMESPACE",
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR"
            ],
            &["NAMESPACE", "NAME", "DATA", "AGE"],
        ],
        "{wide}"
    );
    assert!(wide.contains("deployment.apps/web"), "{wide}");
    assert!(wide.contains("registry.local/web:1"), "{wide}");
    assert!(wide.contains("app=web"), "{wide}");

    let yaml = server.kubectl_ok(&["get", "cm", "settings", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.contains("sport: football"), "{yaml}");
    assert!(yaml.contains("resourceVersion:"), "{yaml}");
    let json: serde_json::Value =
        serde_json::from_str(&server.kubectl_ok(&["get", "cm", "-n", "shop", "-o", "json"]))
            .unwrap();
    assert_eq!(json["kind"], "List");
    assert!(
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == "settings")
    );
    let names = server.kubectl_ok(&["get", "deploy,sts", "-n", "shop", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        vec!["deployment.apps/web", "statefulset.apps/db"]
    );
    let labelled = server.kubectl_ok(&[
        "get",
        "deploy",
        "-n",
        "shop",
        "-l",
        "app=web",
        "--no-headers",
    ]);
    assert!(labelled.starts_with("web "), "{labelled}");
    let none = server.kubectl(&["get", "deploy", "-n", "shop", "-l", "app=nothing"]);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found in shop namespace."),
        "{}",
        text(&none)
    );
    let shown = server.kubectl_ok(&["get", "deploy", "web", "-n", "shop", "--show-labels"]);
    assert!(shown.lines().next().unwrap().ends_with("LABELS"), "{shown}");
    assert!(shown.contains("app=web"), "{shown}");
}

#[test]
fn sort_by_orders_rows() {
    let server = Server::start().unwrap();
    for name in ["zeta", "alpha", "mid"] {
        server.kubectl_ok(&["create", "namespace", name]);
    }
    let out = server.kubectl_ok(&[
        "get",
        "ns",
        "--sort-by=.metadata.name",
        "--no-headers",
        "-o",
        "custom-columns=N:.metadata.name",
    ]);
    let names: Vec<&str> = out.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"alpha") && names.contains(&"zeta"));
}

#[test]
fn get_watch_prints_a_change_made_by_another_client() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    let mut watch = server
        .kubectl_command(&["get", "cm", "-w", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = skiff_tests::stdout_lines(&mut watch);
    // The header and the initial list arrive first; then a change made elsewhere must show up.
    let next = || {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("watch printed nothing");
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(next(), ["EVENT", "NAME", "DATA", "AGE"]);
    assert_eq!(next()[..3], ["ADDED", "watched", "1"]);
    server.kubectl_ok(&["create", "configmap", "fresh", "--from-literal=b=2"]);
    let seen = eventually(Duration::from_secs(30), || {
        rx.try_recv().ok().filter(|l| l.contains("fresh"))
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = seen.expect("the watch never printed the new configmap");
    assert!(seen.starts_with("ADDED"), "{seen}");
}

#[test]
fn label_annotate_and_the_three_patch_types() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    server.kubectl_ok(&["label", "cm", "cfg", "tier=back"]);
    let relabel = server.kubectl(&["label", "cm", "cfg", "tier=front"]);
    assert!(
        !relabel.status.success(),
        "relabel without --overwrite must fail"
    );
    server.kubectl_ok(&["label", "cm", "cfg", "tier=front", "--overwrite"]);
    server.kubectl_ok(&["annotate", "cm", "cfg", "note=hello"]);
    let got = server.kubectl_ok(&[
        "get",
        "cm",
        "cfg",
        "-o",
        "jsonpath={.metadata.labels.tier} {.metadata.annotations.note}",
    ]);
    assert_eq!(got, "front hello");
    server.kubectl_ok(&["label", "cm", "cfg", "tier-"]);
    let labels = server.kubectl_ok(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.labels}"]);
    assert!(!labels.contains("tier"), "{labels}");

    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
    ]);
    server.kubectl_ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.local/web:2"}]}}}}"#]);
    server.merge_patch("deploy/web", r#"{"spec":{"replicas":3}}"#);
    server.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/extra","value":"yes"}]"#,
    ]);
    let got = server.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas} {.metadata.labels.extra} {.metadata.generation}"]);
    assert_eq!(got, "registry.local/web:2 3 yes 3");
    // A strategic patch merges a list's items by their key, where a merge patch replaces it.
    // Upstream places a patch's items that the live list lacks before the live ones.
    let containers = "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[*].image}";
    server.kubectl_ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"registry.local/side:1"}]}}}}"#]);
    assert_eq!(
        server.kubectl_ok(&["get", "deploy", "web", "-o", containers]),
        "side web registry.local/side:1 registry.local/web:2"
    );
    server.kubectl_ok(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"registry.local/side:2"}]}}}}"#]);
    assert_eq!(
        server.kubectl_ok(&["get", "deploy", "web", "-o", containers]),
        "side registry.local/side:2"
    );
    let failing = server.kubectl(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(!failing.status.success(), "{}", text(&failing));
}

#[test]
fn scale_goes_through_the_scale_subresource() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
    ]);
    server.kubectl_ok(&["scale", "deploy", "web", "--replicas=4"]);
    assert_eq!(
        server.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
}

#[test]
fn edit_applies_what_the_editor_wrote() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["create", "configmap", "edited", "--from-literal=colour=red"]);
    let editor = write_file(
        &server,
        "editor.sh",
        "#!/bin/sh\nsed -i 's/colour: red/colour: blue/' \"$1\"\n",
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .unwrap();
    let out = server
        .kubectl_command(&["edit", "cm", "edited"])
        .env("EDITOR", &editor)
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configmap/edited edited"),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.kubectl_ok(&["get", "cm", "edited", "-o", "jsonpath={.data.colour}"]),
        "blue"
    );
}

#[test]
fn delete_by_label_and_namespace_cascade() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["create", "namespace", "t"]);
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        server.kubectl_ok(&["create", "configmap", name, "-n", "t", "--from-literal=k=v"]);
        server.kubectl_ok(&["label", "cm", name, "-n", "t", &format!("app={app}")]);
    }
    let out = server.kubectl_ok(&["delete", "cm", "-n", "t", "-l", "app=x"]);
    assert!(
        out.contains("configmap \"a\" deleted") && out.contains("configmap \"b\" deleted"),
        "{out}"
    );
    let left = server.kubectl_ok(&["get", "cm", "-n", "t", "-o", "name", "-l", "app"]);
    assert_eq!(left.trim(), "configmap/c");

    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "t",
        "--image=registry.local/web:1",
    ]);
    // The deployment's controllers fill the namespace with objects of their own.
    eventually(Duration::from_secs(60), || {
        let made = server.kubectl_ok(&["get", "rs,po", "-n", "t", "-o", "name"]);
        (made.contains("replicaset.apps/") && made.contains("pod/")).then_some(())
    })
    .expect("the deployment's replica set and pod are created");
    let out = server.kubectl_ok(&["delete", "ns", "t", "--timeout=60s"]);
    assert!(out.contains("namespace \"t\" deleted"), "{out}");
    let gone = server.kubectl(&["get", "ns", "t"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("namespaces \"t\" not found"),
        "{}",
        text(&gone)
    );
    let contents = server.kubectl_ok(&["get", "cm,deploy,rs,po", "-n", "t", "-o", "name"]);
    assert!(
        contents.trim().is_empty(),
        "objects of a deleted namespace remain: {contents}"
    );
}

#[test]
fn describe_shows_metadata_and_spec() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
    ]);
    let out = server.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(out.contains("Name:") && out.contains("web"), "{out}");
    assert!(
        out.contains("Namespace:") && out.contains("default"),
        "{out}"
    );
    assert!(out.contains("registry.local/web:1"), "{out}");
    assert!(
        out.contains("StrategyType:") && out.contains("RollingUpdate"),
        "{out}"
    );
}

#[test]
fn create_commands_that_send_protobuf_bodies_succeed() {
    let server = Server::start().unwrap();
    let out = server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web created");
    server.kubectl_ok(&[
        "create",
        "configmap",
        "sport",
        "--from-literal=sport=football",
    ]);
    server.kubectl_ok(&["create", "secret", "generic", "s", "--from-literal=a=b"]);
    server.kubectl_ok(&["create", "namespace", "t"]);
    let got = server.kubectl_ok(&[
        "get",
        "deploy/web",
        "cm/sport",
        "secret/s",
        "-o",
        "jsonpath={.items[0].spec.template.spec.containers[0].image} {.items[0].spec.replicas} {.items[1].data.sport} {.items[2].data.a}",
    ]);
    // "b" is base64 "Yg==": protobuf bytes arrive as the same base64 JSON carries.
    assert_eq!(got, "registry.local/web:1 1 football Yg==");
    let labels = server.kubectl_ok(&["get", "ns", "t", "-o", "jsonpath={.metadata.labels}"]);
    assert!(labels.contains("kubernetes.io/metadata.name"), "{labels}");
}

const SSA_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: ssa}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: ssa}}
  template:
    metadata: {labels: {app: ssa}}
    spec:
      containers: [{name: web, image: registry.local/web:1}]
";

#[test]
fn server_side_apply_tracks_managers_and_reports_conflicts() {
    // Without the deployment controller, whose status writes would add a manager and a
    // resourceVersion of their own.
    let server = Server::start_with(&["--disable", "deployment"]).unwrap();
    let mine = write_file(
        &server,
        "mine.yaml",
        &SSA_DEPLOYMENT.replace("REPLICAS", "2"),
    );
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", mine.to_str().unwrap()]);
    assert_eq!(out.trim(), "deployment.apps/ssa serverside-applied");
    let managers = server.kubectl_ok(&[
        "get",
        "deploy",
        "ssa",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager} {.metadata.managedFields[*].operation}",
    ]);
    assert_eq!(managers, "kubectl Apply");
    let rv = |s: &Server| {
        s.kubectl_ok(&[
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = rv(&server);
    server.kubectl_ok(&["apply", "--server-side", "-f", mine.to_str().unwrap()]);
    assert_eq!(
        rv(&server),
        before,
        "re-applying the same configuration must not write"
    );

    let theirs = write_file(
        &server,
        "theirs.yaml",
        &SSA_DEPLOYMENT.replace("REPLICAS", "5"),
    );
    let conflict = server.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        theirs.to_str().unwrap(),
    ]);
    assert!(!conflict.status.success(), "{}", text(&conflict));
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(err.contains("Apply failed with 1 conflict"), "{err}");
    assert!(err.contains("conflict with \"kubectl\""), "{err}");
    assert!(err.contains(".spec.replicas"), "{err}");
    assert!(
        err.contains("--force-conflicts"),
        "kubectl's help for conflicts is missing: {err}"
    );
    assert_eq!(
        server.kubectl_ok(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );

    server.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        theirs.to_str().unwrap(),
    ]);
    assert_eq!(
        server.kubectl_ok(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let owners = server.kubectl_ok(&[
        "get",
        "deploy",
        "ssa",
        "--show-managed-fields",
        "-o",
        "json",
    ]);
    let owners: serde_json::Value = serde_json::from_str(&owners).unwrap();
    let entries = owners["metadata"]["managedFields"].as_array().unwrap();
    let owns_replicas = |m: &str| {
        entries
            .iter()
            .any(|e| e["manager"] == m && e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
    };
    assert!(
        owns_replicas("other") && !owns_replicas("kubectl"),
        "{owners}"
    );
}

#[test]
fn imperative_writes_are_recorded_as_update_managers() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    server.kubectl_ok(&["label", "cm", "cfg", "team=blue"]);
    let out = server.kubectl_ok(&["get", "cm", "cfg", "--show-managed-fields", "-o", "json"]);
    let cm: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = cm["metadata"]["managedFields"].as_array().unwrap();
    let by = |m: &str| {
        entries
            .iter()
            .find(|e| e["manager"] == m)
            .unwrap_or_else(|| panic!("no {m} entry: {out}"))
    };
    assert_eq!(by("kubectl-create")["operation"], "Update");
    assert!(
        by("kubectl-create")["fieldsV1"]["f:data"]
            .get("f:a")
            .is_some(),
        "{out}"
    );
    assert!(
        by("kubectl-label")["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:team")
            .is_some(),
        "{out}"
    );
}

#[test]
fn created_objects_read_back_as_upstream_stores_them() {
    let server = Server::start().unwrap();
    // kubectl sends these as protobuf, which carries every Go zero; upstream's JSON omits the
    // omitempty ones and resets the status to its type's zero value.
    let out = server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/web:1",
        "-o",
        "json",
    ]);
    let deployment: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deployment["status"], serde_json::json!({}), "{out}");
    let spec = &deployment["spec"];
    assert!(
        spec.get("paused").is_none()
            && spec.get("minReadySeconds").is_none()
            && spec["template"]["metadata"].get("generation").is_none()
            && spec["template"]["spec"].get("hostNetwork").is_none()
            && spec["template"]["spec"]["containers"][0]
                .get("tty")
                .is_none(),
        "{out}"
    );
    let out = server.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "-o",
        "json",
    ]);
    let service: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        service["status"],
        serde_json::json!({"loadBalancer": {}}),
        "{out}"
    );
    assert!(
        service["spec"]["ports"][0].get("nodePort").is_none(),
        "{out}"
    );
}
