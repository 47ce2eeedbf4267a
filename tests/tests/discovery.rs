//! Discovery, OpenAPI, authentication and shutdown, seen through the real kubectl.

use skiff_tests::{Server, text};

#[test]
fn kubectl_version_reports_the_served_kubernetes_version() {
    let server = Server::start().unwrap();
    let out = server.kubectl_ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1");
    assert_eq!(v["serverVersion"]["minor"], "33");
    assert!(
        v["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33.")
    );
}

#[test]
fn api_resources_lists_every_kind_with_upstream_short_names() {
    let server = Server::start().unwrap();
    let out = server.kubectl_ok(&["api-resources", "--no-headers"]);
    let expected = [
        ("pods", Some("po")),
        ("deployments", Some("deploy")),
        ("replicasets", Some("rs")),
        ("statefulsets", Some("sts")),
        ("daemonsets", Some("ds")),
        ("jobs", None),
        ("cronjobs", Some("cj")),
        ("services", Some("svc")),
        ("endpointslices", None),
        ("ingresses", Some("ing")),
        ("networkpolicies", Some("netpol")),
        ("configmaps", Some("cm")),
        ("secrets", None),
        ("namespaces", Some("ns")),
        ("nodes", Some("no")),
        ("events", Some("ev")),
        ("leases", None),
        ("horizontalpodautoscalers", Some("hpa")),
        ("roles", None),
        ("rolebindings", None),
        ("clusterroles", None),
        ("clusterrolebindings", None),
        ("serviceaccounts", Some("sa")),
        ("resourcequotas", Some("quota")),
        ("limitranges", Some("limits")),
        ("persistentvolumeclaims", Some("pvc")),
        ("persistentvolumes", Some("pv")),
        ("poddisruptionbudgets", Some("pdb")),
        ("storageclasses", Some("sc")),
    ];
    for (name, short) in expected {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from api-resources:\n{out}"));
        if let Some(short) = short {
            assert_eq!(line.split_whitespace().nth(1), Some(short), "{line}");
        }
    }
}

#[test]
fn short_names_and_categories_resolve_in_kubectl() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["get", "deploy,po,svc,cm,sts,ds,cj"]);
    server.kubectl_ok(&["get", "all"]);
}

#[test]
fn kubectl_explain_reads_the_openapi_schema() {
    let server = Server::start().unwrap();
    let out = server.kubectl_ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(
        out.contains("FIELD: strategy <DeploymentStrategy>"),
        "{out}"
    );
    assert!(
        out.contains("  rollingUpdate\t<RollingUpdateDeployment>"),
        "{out}"
    );
    assert!(out.contains("  type\t<string>"), "{out}");
    assert!(out.contains("Rolling update config params."), "{out}");
}

#[test]
fn requests_without_credentials_get_401_and_no_data() {
    let server = Server::start().unwrap();
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let url = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .trim()
        .to_string();
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            &format!("{url}/api/v1/namespaces"),
        ])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.ends_with("401"), "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    assert!(!body.contains("kube-system"), "{body}");
}

#[test]
fn sigterm_stops_the_server_cleanly_and_data_survives() {
    let mut server = Server::start().unwrap();
    server.kubectl_ok(&["create", "namespace", "kept"]);
    assert!(
        server.terminate().unwrap(),
        "server did not exit cleanly:\n{}",
        server.log()
    );
    server.restart().unwrap();
    let out = server.kubectl(&["get", "namespace", "kept", "-o", "name"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/kept"
    );
}

#[test]
fn the_certificate_authority_is_kept_across_restarts() {
    let mut server = Server::start().unwrap();
    let first = std::fs::read_to_string(server.data_dir().join("tls/ca.crt")).unwrap();
    server.restart().unwrap();
    let second = std::fs::read_to_string(server.data_dir().join("tls/ca.crt")).unwrap();
    assert_eq!(first, second);
    server.kubectl_ok(&["get", "ns"]);
}
