//! Bad input gets kubectl's usual error output naming the field, a non-zero exit, and nothing
//! is stored.

use skiff_tests::{Server, text, write_file};

fn apply_fails(server: &Server, yaml: &str) -> String {
    let file = write_file(server, "bad.yaml", yaml);
    let out = server.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "apply of bad input succeeded: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn nothing_named(server: &Server, kind: &str, name: &str) {
    let out = server.kubectl(&["get", kind, name]);
    assert!(
        !out.status.success(),
        "{kind}/{name} was stored: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error from server (NotFound)")
            && err.contains(&format!("\"{name}\" not found")),
        "{kind}/{name}: {err}"
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [CONTAINER]
";

fn deployment(name: &str, container: &str) -> String {
    DEPLOYMENT
        .replace("NAME", name)
        .replace("CONTAINER", container)
}

#[test]
fn unknown_fields_are_rejected_under_strict_validation() {
    let server = Server::start().unwrap();
    let yaml = deployment("strict", "{name: web, image: registry.local/web:1}")
        .replace("spec:\n  selector", "spec:\n  bogusField: 1\n  selector");
    let err = apply_fails(&server, &yaml);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.bogusField\""),
        "{err}"
    );
    nothing_named(&server, "deploy", "strict");
}

#[test]
fn a_container_without_image_is_invalid_with_its_field_path() {
    let server = Server::start().unwrap();
    let err = apply_fails(&server, &deployment("noimage", "{name: web}"));
    assert!(
        err.contains("The Deployment \"noimage\" is invalid"),
        "{err}"
    );
    assert!(
        err.contains("spec.template.spec.containers[0].image: Required value"),
        "{err}"
    );
    nothing_named(&server, "deploy", "noimage");
}

#[test]
fn an_invalid_name_is_rejected() {
    let server = Server::start().unwrap();
    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n",
    );
    assert!(
        err.contains("metadata.name: Invalid value: \"Not_Valid\""),
        "{err}"
    );
    assert!(err.contains("RFC 1123"), "{err}");
    let out = server.kubectl_ok(&["get", "cm", "-o", "name"]);
    assert!(!out.contains("Not_Valid"), "{out}");
}

#[test]
fn an_unknown_api_version_is_reported() {
    let server = Server::start().unwrap();
    let err = apply_fails(
        &server,
        "apiVersion: apps/v9\nkind: Deployment\nmetadata: {name: x}\n",
    );
    assert!(
        err.contains("no matches for kind \"Deployment\" in version \"apps/v9\""),
        "{err}"
    );
    nothing_named(&server, "deploy", "x");
}

#[test]
fn a_malformed_yaml_document_is_reported() {
    let server = Server::start().unwrap();
    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken\n  data: [\n",
    );
    assert!(err.to_lowercase().contains("yaml"), "{err}");
    nothing_named(&server, "cm", "broken");
}

#[test]
fn a_ten_megabyte_body_is_refused_as_too_large() {
    let server = Server::start().unwrap();
    let big = "x".repeat(10 * 1024 * 1024);
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: huge}}\ndata:\n  blob: {big}\n"
    );
    let file = write_file(&server, "huge.yaml", &yaml);
    let out = server.kubectl(&["create", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Request entity too large"), "{err}");
    nothing_named(&server, "cm", "huge");
}

#[test]
fn selector_must_match_template_labels() {
    let server = Server::start().unwrap();
    let yaml = deployment("mismatch", "{name: web, image: registry.local/web:1}").replace(
        "metadata: {labels: {app: web}}",
        "metadata: {labels: {app: other}}",
    );
    let err = apply_fails(&server, &yaml);
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    nothing_named(&server, "deploy", "mismatch");
}

#[test]
fn a_port_out_of_range_is_invalid() {
    let server = Server::start().unwrap();
    let err = apply_fails(
        &server,
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 70000}]\n",
    );
    assert!(
        err.contains("spec.ports[0].port: Invalid value: 70000"),
        "{err}"
    );
    nothing_named(&server, "svc", "s");
}
