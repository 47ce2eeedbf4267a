//! The Python `kubernetes` client, which posts without a Content-Type and patches dicts as
//! strategic merges, works unmodified.

use skiff_tests::{Server, text};

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
names = [n.metadata.name for n in v1.list_namespace().items]
assert "kube-system" in names, names
cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "py"}, "data": {"a": "b"}})
assert cm.metadata.resource_version
patched = v1.patch_namespaced_config_map("py", "default", {"data": {"c": "d"}})
assert patched.data == {"a": "b", "c": "d"}, patched.data
apps = client.AppsV1Api()
d = apps.create_namespaced_deployment("default", {
    "metadata": {"name": "pyd"},
    "spec": {"selector": {"matchLabels": {"app": "pyd"}},
             "template": {"metadata": {"labels": {"app": "pyd"}},
                          "spec": {"containers": [{"name": "c", "image": "registry.local/c:1"}]}}}})
assert d.metadata.generation == 1 and d.spec.strategy.type == "RollingUpdate", d.spec.strategy
seen = []
for event in watch.Watch().stream(v1.list_namespaced_config_map, "default", timeout_seconds=5):
    seen.append((event["type"], event["object"].metadata.name))
    break
assert seen == [("ADDED", "py")], seen
try:
    v1.read_namespaced_config_map("missing", "default")
    raise SystemExit("reading a missing object succeeded")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status
v1.delete_namespaced_config_map("py", "default")
print("python client ok")
"#;

#[test]
fn the_python_client_lists_creates_patches_watches_and_deletes() {
    let server = Server::start().unwrap();
    let script = skiff_tests::write_file(&server, "client.py", SCRIPT);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(server.kubeconfig())
        .output()
        .expect("running python3");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("python client ok"),
        "{}",
        text(&out)
    );
    let gone = server.kubectl(&["get", "cm", "py"]);
    assert!(
        !gone.status.success(),
        "the client's delete did not delete: {}",
        text(&gone)
    );
}
