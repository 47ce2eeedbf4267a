//! The `skiff` kubectl-style verbs against a running server.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use skiff_tests::{Server, eventually, text, write_file};

const APP: &str = "apiVersion: v1
kind: Namespace
metadata: {name: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.local/web:1}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: app, labels: {tier: config}}
data: {mode: fast}
";

#[test]
fn apply_reports_created_unchanged_and_configured() {
    let server = Server::start().unwrap();
    let file = write_file(&server, "app.yaml", APP);
    let file = file.to_str().unwrap();
    let first = server.skiff_ok(&["apply", "-f", file]);
    assert_eq!(
        first.lines().collect::<Vec<_>>(),
        vec![
            "namespace/app created",
            "deployment.apps/web created",
            "configmap/settings created"
        ]
    );
    let second = server.skiff_ok(&["apply", "-f", file]);
    assert_eq!(second.matches("unchanged").count(), 3, "{second}");
    let changed = write_file(
        &server,
        "app2.yaml",
        &APP.replace("replicas: 2", "replicas: 3"),
    );
    let third = server.skiff_ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert!(third.contains("deployment.apps/web configured"), "{third}");
    assert_eq!(
        server.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "app",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
}

#[test]
fn apply_reads_standard_input_and_directories_recursively() {
    let server = Server::start().unwrap();
    let mut child = server
        .skiff_command(&["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: piped}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configmap/piped created"),
        "{}",
        text(&out)
    );
    let dir = server.dir.path().join("tree/sub");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\n",
    )
    .unwrap();
    let top = server.dir.path().join("tree");
    let flat = server.skiff_ok(&["apply", "-f", top.to_str().unwrap()]);
    assert!(
        !flat.contains("deep"),
        "a directory without -R must not recurse: {flat}"
    );
    let deep = server.skiff_ok(&["apply", "-R", "-f", top.to_str().unwrap()]);
    assert!(deep.contains("configmap/deep created"), "{deep}");
}

#[test]
fn get_prints_tables_names_yaml_and_json() {
    let server = Server::start().unwrap();
    let file = write_file(&server, "app.yaml", APP);
    server.skiff_ok(&["apply", "-f", file.to_str().unwrap()]);
    let table = server.skiff_ok(&["get", "deploy", "-n", "app"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let wide = server.skiff_ok(&["get", "deploy", "-n", "app", "-o", "wide"]);
    assert!(
        wide.contains("IMAGES") && wide.contains("registry.local/web:1"),
        "{wide}"
    );
    let all = server.skiff_ok(&["get", "cm", "-A", "-l", "tier=config"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.lines().nth(1).unwrap().starts_with("app "), "{all}");
    assert_eq!(
        server
            .skiff_ok(&[
                "get",
                "deploy,cm",
                "-n",
                "app",
                "-o",
                "name",
                "-l",
                "app=web"
            ])
            .trim(),
        "deployment.apps/web"
    );
    let yaml = server.skiff_ok(&["get", "cm", "settings", "-n", "app", "-o", "yaml"]);
    assert!(yaml.contains("mode: fast"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&server.skiff_ok(&[
        "get",
        "deployment/web",
        "-n",
        "app",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["spec"]["replicas"], 2);
    let missing = server.skiff(&["get", "cm", "nope", "-n", "app"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        text(&missing)
    );
}

#[test]
fn get_watch_prints_rows_for_later_changes() {
    let server = Server::start().unwrap();
    let mut watch = server
        .skiff_command(&["get", "cm", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = skiff_tests::stdout_lines(&mut watch);
    // Whether the watch has started cannot be seen from outside; create until a row appears.
    let row = eventually(Duration::from_secs(30), || {
        let name = format!(
            "late-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        server.kubectl_ok(&["create", "configmap", &name]);
        std::thread::sleep(Duration::from_millis(200));
        rx.try_iter().find(|l| l.starts_with("late-"))
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let row = row.expect("skiff get -w printed no row for a new configmap");
    assert!(
        row.split_whitespace().count() >= 3,
        "a row carries the table's cells: {row}"
    );
}

#[test]
fn label_annotate_describe_and_delete() {
    let server = Server::start().unwrap();
    let file = write_file(&server, "app.yaml", APP);
    server.skiff_ok(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        server
            .skiff_ok(&["label", "cm", "settings", "owner=team", "-n", "app"])
            .trim(),
        "configmap/settings labeled"
    );
    let clash = server.skiff(&["label", "cm", "settings", "owner=other", "-n", "app"]);
    assert!(!clash.status.success(), "{}", text(&clash));
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("--overwrite is false"),
        "{}",
        text(&clash)
    );
    server.skiff_ok(&["annotate", "cm/settings", "note=hi", "-n", "app"]);
    let got = server.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "app",
        "-o",
        "jsonpath={.metadata.labels.owner} {.metadata.annotations.note}",
    ]);
    assert_eq!(got, "team hi");
    server.skiff_ok(&["label", "cm", "settings", "owner-", "-n", "app"]);
    let labels = server.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "app",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(!labels.contains("owner"), "{labels}");

    let described = server.skiff_ok(&["describe", "deploy", "web", "-n", "app"]);
    assert!(described.contains("Name:         web"), "{described}");
    assert!(described.contains("Namespace:    app"), "{described}");
    assert!(described.contains("registry.local/web:1"), "{described}");

    let deleted = server.skiff_ok(&["delete", "cm", "-l", "tier=config", "-n", "app"]);
    assert_eq!(deleted.trim(), "configmap \"settings\" deleted");
    assert!(
        server
            .kubectl_ok(&["get", "cm", "-n", "app", "-o", "name", "-l", "tier"])
            .trim()
            .is_empty()
    );
    server.skiff_ok(&["create", "namespace", "extra"]);
    server.skiff_ok(&["delete", "namespace", "extra"]);
    let gone = eventually(Duration::from_secs(30), || {
        (!server.kubectl(&["get", "ns", "extra"]).status.success()).then_some(())
    });
    assert!(gone.is_some(), "namespace extra was never removed");
}

#[test]
fn without_a_kubeconfig_the_local_servers_admin_kubeconfig_is_used() {
    let server = Server::start().unwrap();
    let out = std::process::Command::new(skiff_tests::skiff_binary())
        .args(["get", "ns", "-o", "name"])
        .env("HOME", server.dir.path())
        .env_remove("KUBECONFIG")
        .env("SKIFF_DATA_DIR", server.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("namespace/kube-system"),
        "{}",
        text(&out)
    );
}
