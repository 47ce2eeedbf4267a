//! Images pulled from a real OCI registry (`docker-registry` on loopback): Wasm artifacts pushed
//! by `skiff push` and by `wkg oci push`, a classic image whose tar layer holds the component,
//! pull policies, pull secrets, and the registry's own messages when a pull fails.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use skiff_tests::{
    Registry, Server, eventually, pod_on_node, sample, skiff_binary, text, wkg_binary,
};

/// `skiff ARGS` with `DOCKER_CONFIG` pointing at `docker_config` (when given).
fn skiff(args: &[&str], docker_config: Option<&std::path::Path>) -> std::process::Output {
    let mut command = Command::new(skiff_binary());
    command.args(args);
    if let Some(dir) = docker_config {
        command.env("DOCKER_CONFIG", dir);
    }
    command.output().expect("running skiff")
}

fn hello() -> String {
    sample("hello").to_str().expect("UTF-8 path").to_string()
}

/// A pod running `image` on the server's node, printing its args.
fn pod(name: &str, image: &str, extra: &str) -> String {
    pod_on_node(
        name,
        &format!(
            r#"
  restartPolicy: Never
  {extra}
  containers:
  - name: app
    image: {image}
    args: ["{name}"]
"#
        ),
    )
}

#[test]
fn artifacts_pushed_by_skiff_and_by_wkg_both_run() {
    let registry = Registry::start().unwrap();
    let host = registry.host.clone();
    let by_skiff = format!("{host}/samples/hello:skiff");
    let by_wkg = format!("{host}/samples/hello:wkg");

    // Plain HTTP is refused unless asked for.
    let out = skiff(&["push", &hello(), &by_skiff], None);
    assert!(!out.status.success(), "{}", text(&out));
    let out = skiff(&["push", &hello(), &by_skiff, "--insecure"], None);
    assert!(out.status.success(), "{}", text(&out));
    let pushed = String::from_utf8_lossy(&out.stdout).to_string();
    let digest = pushed
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest in {pushed}"))
        .to_string();
    assert!(digest.starts_with("sha256:"), "{pushed}");

    let out = Command::new(wkg_binary())
        .args(["oci", "push", "--insecure", &host, &by_wkg, &hello()])
        .output()
        .expect("running wkg (cargo install wkg; .ci/run installs it)");
    assert!(out.status.success(), "wkg oci push: {}", text(&out));

    let server = Server::start_with(&["--insecure-registry", &host]).unwrap();
    server.apply_on_node(&pod("by-skiff", &by_skiff, ""));
    server.apply_on_node(&pod("by-wkg", &by_wkg, ""));
    for name in ["by-skiff", "by-wkg"] {
        server.wait_for(name, "{.status.phase}", "Succeeded");
        let logs = server.kubectl_ok(&["logs", name]);
        assert!(
            logs.lines().any(|l| l == format!("arg 1: {name}")),
            "{name}: {logs}"
        );
        server.wait_for_events(
            name,
            &[
                "Pulling: Pulling image",
                "Pulled: Successfully pulled image",
            ],
        );
    }
    // The imageID is the repository at the manifest digest skiff push printed.
    let id = server.kubectl_ok(&[
        "get",
        "pod",
        "by-skiff",
        "-o",
        "jsonpath={.status.containerStatuses[0].imageID}",
    ]);
    assert_eq!(id.trim(), format!("{host}/samples/hello@{digest}"));

    // Both are in the node's store; a pod naming the image by digest needs no pull.
    let listed = server.image(&["ls"]);
    assert!(
        listed.contains(&by_skiff) && listed.contains(&by_wkg),
        "{listed}"
    );
    let by_digest = format!("{host}/samples/hello@{digest}");
    server.apply_on_node(&pod("by-digest", &by_digest, ""));
    server.wait_for("by-digest", "{.status.phase}", "Succeeded");
    server.wait_for_events(
        "by-digest",
        &["Pulled: Container image", "already present on machine"],
    );

    // `skiff pull` fills a store the same way.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let pull = |args: &[&str]| {
        let mut all = vec!["pull"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", data_dir]);
        skiff(&all, None)
    };
    let out = pull(&[&by_wkg, "--insecure"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pulled: "));
    let out = pull(&[&by_wkg, "--insecure"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date: "),
        "{}",
        text(&out)
    );
}

/// Pushes a classic container image: a config whose entrypoint names `/app/hello.wasm` and a
/// gzipped tar layer holding it (beside another file).
async fn push_classic(host: &str, reference: &str, component: Vec<u8>) {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in [
        ("app/hello.wasm", component.as_slice()),
        ("etc/motd", b"hi".as_slice()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &builder.into_inner().unwrap()).unwrap();
    let layer = ImageLayer::oci_v1_gzip(gz.finish().unwrap(), None);
    let config = serde_json::json!({
        "architecture": "wasm", "os": "wasip2",
        "config": {"Entrypoint": ["/app/hello.wasm"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let config = Config::oci_v1(serde_json::to_vec(&config).unwrap(), None);
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![host.to_string()]),
        ..Default::default()
    });
    client
        .push(
            &reference.parse().unwrap(),
            &[layer],
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("pushing the classic image");
}

#[test]
fn a_classic_image_layout_runs_the_component_its_entrypoint_names() {
    let registry = Registry::start().unwrap();
    let reference = format!("{}/classic/hello:1", registry.host);
    let component = std::fs::read(sample("hello")).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push_classic(&registry.host, &reference, component));
    let server = Server::start_with(&["--insecure-registry", &registry.host]).unwrap();
    server.apply_on_node(&pod("classic", &reference, ""));
    server.wait_for("classic", "{.status.phase}", "Succeeded");
    let logs = server.kubectl_ok(&["logs", "classic"]);
    assert!(logs.lines().any(|l| l == "arg 1: classic"), "{logs}");
}

#[test]
fn a_missing_image_shows_the_registry_message_then_backs_off() {
    let registry = Registry::start().unwrap();
    let server = Server::start_with(&["--insecure-registry", &registry.host]).unwrap();
    let missing = format!("{}/nowhere:1", registry.host);
    server.apply_on_node(&pod("missing", &missing, ""));
    let message = eventually(Duration::from_secs(60), || {
        let got = server.kubectl_ok(&[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        ]);
        got.strip_prefix("ErrImagePull|").map(str::to_string)
    })
    .expect("the pod waits in ErrImagePull");
    assert!(
        message.starts_with(&format!("Failed to pull image \"{missing}\"")),
        "{message}"
    );
    assert!(message.contains("manifest unknown"), "{message}");
    let message = server.wait_for_nonempty(
        "missing",
        "{.status.containerStatuses[?(@.state.waiting.reason==\"ImagePullBackOff\")].state.waiting.message}",
    );
    assert!(
        message.starts_with(&format!(
            "Back-off pulling image \"{missing}\": ErrImagePull: "
        )),
        "{message}"
    );
    server.wait_for_events(
        "missing",
        &[
            "Failed: Error: ErrImagePull",
            &format!("BackOff: Back-off pulling image \"{missing}\""),
        ],
    );

    // Never pulls nothing: the image must already be on the node.
    server.apply_on_node(
        &pod("never", &format!("{}/hello:1", registry.host), "")
            .replace("    args:", "    imagePullPolicy: Never\n    args:"),
    );
    server.wait_for(
        "never",
        "{.status.containerStatuses[0].state.waiting.reason}",
        "ErrImageNeverPull",
    );
}

#[test]
fn pull_secrets_open_a_registry_that_requires_a_login() {
    let registry = Registry::start_with_auth("alice", "wonder land").unwrap();
    let host = registry.host.clone();
    let reference = format!("{host}/private/hello:1");
    let docker = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:wonder land");
    let config = serde_json::json!({"auths": {host.clone(): {"auth": auth}}}).to_string();

    // skiff push uses the user's docker config.json.
    let out = skiff(
        &["push", &hello(), &reference, "--insecure"],
        Some(docker.path()),
    );
    assert!(
        !out.status.success(),
        "pushed without a login: {}",
        text(&out)
    );
    std::fs::write(docker.path().join("config.json"), &config).unwrap();
    let out = skiff(
        &["push", &hello(), &reference, "--insecure"],
        Some(docker.path()),
    );
    assert!(out.status.success(), "{}", text(&out));

    let server = Server::start_with(&["--insecure-registry", &host]).unwrap();
    server.apply_on_node(&pod("anonymous", &reference, ""));
    let message = server.wait_for_nonempty(
        "anonymous",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(message.contains("Not authorized"), "{message}");

    let secret = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: registry-login}}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {}
"#,
        base64::engine::general_purpose::STANDARD.encode(&config)
    );
    let out = server.kubectl_stdin(&["apply", "-f", "-"], &secret);
    assert!(out.status.success(), "{}", text(&out));
    server.apply_on_node(&pod(
        "logged-in",
        &reference,
        "imagePullSecrets: [{name: registry-login}]",
    ));
    server.wait_for("logged-in", "{.status.phase}", "Succeeded");
    let logs = server.kubectl_ok(&["logs", "logged-in"]);
    assert!(logs.lines().any(|l| l == "arg 1: logged-in"), "{logs}");
}
