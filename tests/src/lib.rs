//! The end-to-end harness: builds the `skiff` binary once, starts `skiff server` on a free
//! loopback port with a temporary data directory (always torn down), and drives it with the
//! installed `kubectl` and with kube-rs.

#![forbid(unsafe_code)]

pub mod measure;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The `skiff` binary: `$SKIFF_BIN`, else built here by the same `cargo build` the workspace's
/// tests were built with (so features match and a fresh build is a no-op of a third of a second),
/// which guarantees the binary is the current code's.
pub fn skiff_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("SKIFF_BIN") {
                return PathBuf::from(bin);
            }
            let workspace = workspace();
            let mut args = vec!["build", "--workspace", "--tests", "--message-format=json"];
            // Benchmarks are built optimized and measure an optimized server.
            if !cfg!(debug_assertions) {
                args.push("--release");
            }
            let mut command = clean_cargo();
            let output = command
                .current_dir(workspace)
                .args(&args)
                .stderr(Stdio::inherit())
                .output()
                .expect("running cargo build");
            assert!(output.status.success(), "building skiff failed");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["target"]["name"] == "skiff" && m["profile"]["test"] == false)
                .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
                .next_back()
                .expect("cargo reported no skiff executable")
        })
        .clone()
}

/// The workspace the tests run in: from the `CARGO_MANIFEST_DIR` the test runner sets, so that
/// a test binary built from a checkout elsewhere (a shared target directory) still uses this one.
pub fn workspace() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package
        .parent()
        .expect("the tests package sits in the workspace")
        .to_path_buf()
}

/// A Pod manifest named `name` for the server's own node ([`Server::apply_on_node`] fills in
/// `NODE_NAME`), its spec going on with `spec`: YAML lines indented by two spaces.
pub fn pod_on_node(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: NODE_NAME\n{}",
        spec.trim_start_matches('\n')
    )
}

/// A cargo command with the variables cargo set for this test process removed: build scripts
/// that watch them (ring's) would otherwise rerun and rebuild half the tree.
fn clean_cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let per_package = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_BIN_")
            || key.starts_with("NEXTEST")
            || matches!(
                key.as_ref(),
                "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if per_package {
            command.env_remove(key.as_ref());
        }
    }
    command
}

/// The names of the sample components, as `samples/manifests` refer to them
/// (`samples.skiff.local/NAME:0.1.0`).
pub const SAMPLES: &[&str] = &[
    "hello",
    "logwriter",
    "logship",
    "prepare",
    "readfile",
    "memhog",
    "http-hello",
    "needs-gadget",
    "netkit",
    "http-frontend",
];

/// The component a sample in `samples/` builds to (built once, for wasm32-wasip2).
pub fn sample(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let samples = workspace().join("samples");
        let output = clean_cargo()
            .current_dir(&samples)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--message-format=json",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build for the samples");
        assert!(
            output.status.success(),
            "building the samples failed (is the wasm32-wasip2 target installed?)"
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|m| {
                m["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
                    .collect::<Vec<_>>()
            })
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect()
    });
    // Cargo names a library's file with underscores, a binary's as the binary.
    let stem = name.replace('-', "_");
    built
        .iter()
        .find(|p| {
            p.file_stem()
                .is_some_and(|s| s == name || s == stem.as_str())
        })
        .unwrap_or_else(|| panic!("no sample component named {name}"))
        .clone()
}

/// A running `skiff server` with its own data directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    listen: String,
    pod_range: PodRange,
}

/// A cluster pod range of its own (`10.B.0.0/16`, pods served on the host's 127.B.c.d) for a
/// server, held through a locked file while the server lives: servers that concurrent tests
/// start side by side never serve pods on the same addresses.
struct PodRange {
    second_octet: u8,
    _lock: std::fs::File,
}

impl PodRange {
    fn claim() -> anyhow::Result<PodRange> {
        let dir = std::env::temp_dir().join("skiff-test-pod-ranges");
        std::fs::create_dir_all(&dir)?;
        // 10.100.0.0/16 to 10.250.0.0/16, tried from a place of the process's own.
        let start = std::process::id() as usize % 151;
        for i in 0..151 {
            let octet = 100 + ((start + i) % 151) as u8;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{octet}.lock")))?;
            if file.try_lock().is_ok() {
                return Ok(PodRange {
                    second_octet: octet,
                    _lock: file,
                });
            }
        }
        bail!("every test pod range is in use")
    }

    fn cidr(&self) -> String {
        format!("10.{}.0.0/16", self.second_octet)
    }

    /// Node ports of the server's own, as its node listens on them on the host's loopback.
    fn node_ports(&self) -> std::ops::RangeInclusive<u16> {
        let first = 30000 + (u16::from(self.second_octet) - 100) * 15;
        first..=first + 14
    }
}

impl Server {
    /// Starts a server on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `skiff server` flags.
    pub fn start_with(extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut server = Server {
            dir,
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
            pod_range: PodRange::claim()?,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The name of the node running in the server, once it has registered.
    pub fn node_name(&self) -> String {
        eventually(Duration::from_secs(30), || {
            let out = self.kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
            let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !name.is_empty()).then_some(name)
        })
        .expect("the embedded node registers")
    }

    /// Applies `yaml` with every `NODE_NAME` replaced by the server's own node.
    pub fn apply_on_node(&self, yaml: &str) {
        self.apply(&yaml.replace("NODE_NAME", &self.node_name()));
    }

    /// Waits (up to a minute) until the pod's `jsonpath` reads `want`; panics with the pod's
    /// YAML when it never does.
    pub fn wait_for(&self, pod: &str, jsonpath: &str, want: &str) -> String {
        eventually(Duration::from_secs(60), || {
            let got = self.kubectl_ok(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")]);
            (got.trim() == want).then_some(got)
        })
        .unwrap_or_else(|| {
            panic!(
                "pod {pod}: {jsonpath} never became {want}: {}",
                self.kubectl_ok(&["get", "pod", pod, "-o", "yaml"])
            )
        })
    }

    /// Waits (up to a minute) until the pod's `jsonpath` reads something; returns it trimmed.
    pub fn wait_for_nonempty(&self, pod: &str, jsonpath: &str) -> String {
        eventually(Duration::from_secs(60), || {
            let got = self.kubectl_ok(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")]);
            (!got.trim().is_empty()).then(|| got.trim().to_string())
        })
        .unwrap_or_else(|| panic!("pod {pod}: {jsonpath} stayed empty"))
    }

    /// The events about a pod, one `REASON: MESSAGE` line each, once every one of `wanted` is
    /// among them (events are written in the background, so they may trail the pod's status).
    /// Panics with the events there are when some never come.
    pub fn wait_for_events(&self, pod: &str, wanted: &[&str]) -> String {
        let read = || {
            self.kubectl_ok(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={pod}"),
                "-o",
                "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
            ])
        };
        eventually(Duration::from_secs(30), || {
            let events = read();
            wanted.iter().all(|w| events.contains(w)).then_some(events)
        })
        .unwrap_or_else(|| panic!("pod {pod}: events {wanted:?} never all came:\n{}", read()))
    }

    /// `skiff image ARGS --data-dir` on the server's own node; its standard output.
    pub fn image(&self, args: &[&str]) -> String {
        let out = Command::new(skiff_binary())
            .arg("image")
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .expect("running skiff image");
        assert!(out.status.success(), "skiff image {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports every sample component as `samples.skiff.local/NAME:0.1.0`.
    pub fn import_samples(&self) {
        for name in SAMPLES {
            self.import_sample(name, &format!("samples.skiff.local/{name}:0.1.0"));
        }
    }

    /// Imports the sample component `name` as `reference`; `skiff image import`'s output.
    pub fn import_sample(&self, name: &str, reference: &str) -> String {
        let wasm = sample(name);
        self.image(&[
            "import",
            wasm.to_str().expect("UTF-8 path"),
            "--name",
            reference,
        ])
    }

    /// `kubectl apply -f -` of `yaml`; panics when it fails.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig();
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(skiff_binary())
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(&self.listen)
            .arg("--cluster-cidr")
            .arg(self.pod_range.cidr())
            .arg("--service-node-port-range")
            .arg({
                let ports = self.pod_range.node_ports();
                format!("{}-{}", ports.start(), ports.end())
            })
            .args(&self.extra_args)
            .env(
                "SKIFF_LOG",
                std::env::var("SKIFF_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting skiff server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("skiff server exited with {status}: {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("skiff server did not start: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Keep the same address across restarts so clients can reconnect.
        let text = std::fs::read_to_string(&kubeconfig)?;
        if let Some(url) = text.lines().find_map(|l| l.trim().strip_prefix("server: ")) {
            self.listen = url.trim().trim_start_matches("https://").to_string();
        }
        Ok(())
    }

    /// The server's log so far.
    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("skiff server ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data directory and address.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Starts the server again on the same data directory and address, with other extra flags.
    pub fn restart_with(&mut self, extra_args: &[&str]) -> anyhow::Result<()> {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        self.restart()
    }

    /// A kubectl command against this server, isolated from the user's config and cache.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl and returns its output, whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl with `stdin` as standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("writing kubectl stdin");
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs kubectl, fails the test unless it succeeds, and returns its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A field of one object (`kind/name`, as kubectl takes it), by JSONPath, trimmed.
    pub fn field(&self, object: &str, jsonpath: &str) -> String {
        self.kubectl_ok(&["get", object, "-o", &format!("jsonpath={jsonpath}")])
            .trim()
            .to_string()
    }

    /// The logs of a pod's container once they hold a line satisfying `want` (within a
    /// minute); panics with what they hold when they never do.
    pub fn logs_until(&self, pod: &str, container: &str, want: impl Fn(&str) -> bool) -> String {
        eventually(Duration::from_secs(60), || {
            let out = self.kubectl(&["logs", pod, "-c", container]);
            let logs = String::from_utf8_lossy(&out.stdout).into_owned();
            logs.lines().any(&want).then_some(logs)
        })
        .unwrap_or_else(|| {
            panic!(
                "{pod}/{container} never logged what was expected: {}\n{}",
                text(&self.kubectl(&["logs", pod, "-c", container])),
                self.kubectl_ok(&["get", "pod", pod, "-o", "yaml"])
            )
        })
    }

    /// Where the host reaches pod `name` (in the default namespace): the loopback address its
    /// pod address maps onto (10.B.c.d is served on 127.B.c.d), once it has one.
    pub fn pod_address(&self, name: &str) -> String {
        let ip = self.wait_for_nonempty(name, "{.status.podIP}");
        let prefix = format!("10.{}.", self.pod_range.second_octet);
        match ip.strip_prefix(&prefix) {
            Some(rest) => format!("127.{}.{rest}", self.pod_range.second_octet),
            None => panic!("pod {name} has an address outside the server's pod range: {ip}"),
        }
    }

    /// The node ports the server hands out: a range of its own among concurrent tests'.
    pub fn node_ports(&self) -> std::ops::RangeInclusive<u16> {
        self.pod_range.node_ports()
    }

    /// The first two octets of the server's pod addresses (`10.B.`).
    pub fn pod_prefix(&self) -> String {
        format!("10.{}.", self.pod_range.second_octet)
    }

    /// Merge-patches one object (`kind/name`) with `patch`, failing the test unless it takes.
    pub fn merge_patch(&self, object: &str, patch: &str) -> String {
        self.kubectl_ok(&["patch", object, "--type=merge", "-p", patch])
    }

    /// A `skiff` CLI command against this server (found through `--kubeconfig`).
    pub fn skiff_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skiff_binary());
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .env_remove("SKIFF_DATA_DIR")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a `skiff` CLI command and returns its output, whatever the exit status.
    pub fn skiff(&self, args: &[&str]) -> Output {
        self.skiff_command(args).output().expect("running skiff")
    }

    /// Runs a `skiff` CLI command, fails the test unless it succeeds, and returns standard output.
    pub fn skiff_ok(&self, args: &[&str]) -> String {
        let out = self.skiff(args);
        assert!(
            out.status.success(),
            "skiff {} failed:\n{}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client for this server.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        // ring, as the skiff binary uses: the OCI client links a second rustls provider in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Server {
    /// The API server's URL, as its kubeconfig names it.
    pub fn url(&self) -> String {
        let kubeconfig =
            std::fs::read_to_string(self.kubeconfig()).expect("reading the kubeconfig");
        kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("the kubeconfig names the server")
            .to_string()
    }

    /// The token `skiff node --token` joins with.
    pub fn join_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("node-token"))
            .expect("reading the join token")
            .trim()
            .to_string()
    }

    /// Starts `skiff node NAME` with `token`, its data in a directory of its own.
    pub fn join_with(&self, name: &str, token: &str) -> JoinedNode {
        let dir = tempfile::tempdir().expect("a node directory");
        let child = spawn_node(self, name, token, dir.path());
        JoinedNode {
            name: name.to_string(),
            child,
            dir,
        }
    }

    /// Joins node `name` with the server's token and waits until it is Ready.
    pub fn join_ready(&self, name: &str) -> JoinedNode {
        let node = self.join_with(name, &self.join_token());
        node.wait_ready(self);
        node
    }
}

/// A `skiff node` process joined to a server, killed when dropped.
pub struct JoinedNode {
    pub name: String,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl JoinedNode {
    /// Imports a sample component into the node's own store under `reference`.
    pub fn import_sample(&self, name: &str, reference: &str) {
        let wasm = sample(name);
        let out = Command::new(skiff_binary())
            .args(["image", "import", wasm.to_str().expect("UTF-8 path")])
            .args(["--name", reference, "--data-dir"])
            .arg(self.dir.path())
            .output()
            .expect("running skiff image import");
        assert!(out.status.success(), "{}", text(&out));
    }

    /// The node's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Waits (up to a minute) until the server shows the node Ready.
    pub fn wait_ready(&self, server: &Server) {
        eventually(Duration::from_secs(60), || {
            let out = server.kubectl(&["get", "node", &self.name, "--no-headers"]);
            String::from_utf8_lossy(&out.stdout)
                .contains(" Ready ")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("{} never became Ready: {}", self.name, self.log()));
    }

    /// Stops the node at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the node process to end by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("waiting for the node")
    }

    /// Starts the node again on its data directory.
    pub fn restart(&mut self, server: &Server, token: &str) {
        self.child = spawn_node(server, &self.name, token, self.dir.path());
    }
}

impl Drop for JoinedNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `skiff node` with its data in `dir`, appending to its log there.
fn spawn_node(server: &Server, name: &str, token: &str, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .expect("opening the node log");
    Command::new(skiff_binary())
        .args([
            "node",
            "--server",
            &server.url(),
            "--token",
            token,
            "--name",
            name,
        ])
        .args(["--kubelet-port", "0", "--data-dir"])
        .arg(dir)
        .env("SKIFF_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting skiff node")
}

/// Writes `text` to a file in the server's temporary directory and returns its path.
pub fn write_file(server: &Server, name: &str, text: &str) -> PathBuf {
    let path = server.dir.path().join(name);
    std::fs::write(&path, text).expect("writing test file");
    path
}

/// The lines a child writes to its piped standard output, as they come.
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Polls `check` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Standard output and error of a command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `docker-registry` (the CNCF distribution registry) on a free loopback port with a
/// temporary store, optionally requiring a user name and password; stopped when dropped.
pub struct Registry {
    dir: tempfile::TempDir,
    child: Child,
    /// `127.0.0.1:PORT`, as image references and `--insecure-registry` name it.
    pub host: String,
}

impl Registry {
    /// A registry anyone may pull from and push to.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_inner(None)
    }

    /// A registry that requires `user` and `password` (HTTP basic authentication).
    pub fn start_with_auth(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  \
             delete: {{enabled: true}}\nhttp: {{addr: \"{host}\"}}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash(password, 4)?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: skiff-tests, path: {}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (the Debian package docker-registry)")?;
        let mut registry = Registry { dir, child, host };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.host).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                bail!("docker-registry exited with {status}: {}", registry.log());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not start: {}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `wkg` binary (crates.io `wkg`): `$WKG`, else the one `.ci/run` installs under
/// `~/.cache/skiff-tools`, else `wkg` on the PATH.
pub fn wkg_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WKG") {
        return PathBuf::from(path);
    }
    let cached = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/skiff-tools/bin/wkg"))
        .filter(|path| path.exists());
    cached.unwrap_or_else(|| PathBuf::from("wkg"))
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One HTTP/1.1 GET of `path` from `host`:`port` over a fresh connection; the whole response.
pub fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<String> {
    http_get_as(host, port, "test", path)
}

/// [`http_get`] with `Host: host_header`.
pub fn http_get_as(
    host: &str,
    port: u16,
    host_header: &str,
    path: &str,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect((host, port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)?;
    Ok(response)
}
