//! HTTP benchmark: requests per second and latency percentiles of the HTTP hello component
//! (`samples/http-hello`) served by `wasmtime serve` 48 and by Skiff, through a NodePort
//! Service and through the Ingress, one after another in one run, with Skiff's ratios to
//! `wasmtime serve`. Prints JSON.
//!
//! The same load goes to each: `SKIFF_BENCH_CONNECTIONS` keep-alive connections (16 by
//! default) each sending GET / one after another for `SKIFF_BENCH_SECONDS` (10), after a
//! second of warm-up. `wasmtime` is `SKIFF_BENCH_WASMTIME`, else the one on PATH
//! (`cargo install wasmtime-cli --version 48.0.8`). `cargo bench -p skiff-tests --bench http`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use skiff_tests::measure::percentile_ms;
use skiff_tests::{Server, eventually, free_port, http_get, sample};

/// What one target measured.
struct Measured {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn p99(&self) -> f64 {
        percentile_ms(&self.latencies, 0.99)
    }

    fn report(&self) -> serde_json::Value {
        let round = |v: f64| (v * 100.0).round() / 100.0;
        serde_json::json!({
            "requests_per_second": round(self.rps()),
            "latency_ms_p50": round(percentile_ms(&self.latencies, 0.5)),
            "latency_ms_p99": round(self.p99()),
            "requests": self.requests,
            "errors": self.errors,
        })
    }

    /// This target against `baseline`: throughput ratio (higher is better) and p99 ratio
    /// (lower is better).
    fn versus(&self, baseline: &Measured) -> serde_json::Value {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        serde_json::json!({
            "throughput_ratio": round(self.rps() / baseline.rps()),
            "p99_ratio": round(self.p99() / baseline.p99()),
        })
    }
}

/// One connection's requests until `until`: the latency of each answered one, and errors.
async fn connection(target: SocketAddr, host: &str, until: Instant) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    'connect: while Instant::now() < until {
        let Ok(tcp) = tokio::net::TcpStream::connect(target).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await
        else {
            errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < until {
            let request = http::Request::get("/")
                .header(http::header::HOST, host)
                .body(Empty::new())
                .expect("a request");
            let started = Instant::now();
            let answered = match sender.send_request(request).await {
                Ok(response) if response.status().is_success() => {
                    response.into_body().collect().await.is_ok()
                }
                _ => false,
            };
            if !answered {
                errors += 1;
                continue 'connect;
            }
            latencies.push(started.elapsed());
        }
    }
    (latencies, errors)
}

/// Loads `target` with `connections` connections for `seconds`, after a second's warm-up.
async fn load(target: SocketAddr, host: &str, connections: usize, seconds: u64) -> Measured {
    let warm = Instant::now() + Duration::from_secs(1);
    let warming: Vec<_> = (0..connections)
        .map(|_| {
            let host = host.to_string();
            tokio::spawn(async move { connection(target, &host, warm).await })
        })
        .collect();
    for task in warming {
        let _ = task.await;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let host = host.to_string();
            tokio::spawn(async move { connection(target, &host, until).await })
        })
        .collect();
    let mut measured = Measured {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("a load connection");
        measured.requests += latencies.len();
        measured.errors += errors;
        measured.latencies.extend(latencies);
    }
    measured.elapsed = started.elapsed();
    measured.latencies.sort();
    measured
}

/// `wasmtime serve` of the component on `port`, killed when dropped.
struct WasmtimeServe(Child);

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wasmtime_serve(port: u16) -> WasmtimeServe {
    let wasmtime = std::env::var("SKIFF_BENCH_WASMTIME").unwrap_or_else(|_| "wasmtime".into());
    let version = Command::new(&wasmtime)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{wasmtime}: {e}; install it with `cargo install wasmtime-cli --version 48.0.8` \
                 or name it in SKIFF_BENCH_WASMTIME"
            )
        });
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains("48."),
        "the baseline is wasmtime 48, not {version}"
    );
    let child = Command::new(&wasmtime)
        .args(["serve", "-S", "cli", "--addr", &format!("127.0.0.1:{port}")])
        .arg(sample("http-hello"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting wasmtime serve");
    WasmtimeServe(child)
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 1
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        image: samples.skiff.local/http-hello:0.1.0
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: hello}
spec:
  rules:
  - host: hello.bench
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: hello, port: {number: 8080}}}}
"#;

/// Waits until `port` answers `host`'s GET / with a 200.
fn wait_answering(port: u16, host: &str) {
    eventually(Duration::from_secs(60), || {
        let answer = skiff_tests::http_get_as("127.0.0.1", port, host, "/").ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .unwrap_or_else(|| panic!("nothing answered on port {port}"));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let number = |key: &str, default: u64| -> u64 {
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let connections = number("SKIFF_BENCH_CONNECTIONS", 16) as usize;
    let seconds = number("SKIFF_BENCH_SECONDS", 10);
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    let port = free_port();
    let serve = wasmtime_serve(port);
    wait_answering(port, "localhost");
    let wasmtime = load(at(port), "localhost", connections, seconds).await;
    drop(serve);

    let ingress_port = free_port();
    let server = Server::start_with(&["--ingress-http-port", &ingress_port.to_string()])
        .expect("start skiff server");
    server.import_sample("http-hello", "samples.skiff.local/http-hello:0.1.0");
    server.apply(WEB);
    server.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=120s"]);
    let node_port: u16 = server
        .field("service/hello", "{.spec.ports[0].nodePort}")
        .parse()
        .expect("a node port");
    wait_answering(node_port, "localhost");
    wait_answering(ingress_port, "hello.bench");
    assert!(http_get("127.0.0.1", node_port, "/").is_ok_and(|a| a.contains("hello")));
    // The pod itself, at its address on the host (10.B.c.d is served on 127.B.c.d): what the
    // node's own HTTP serving does, before the Service or the Ingress in front of it.
    let pod_ip = server.field("pods", "{.items[0].status.podIP}");
    let loopback: std::net::Ipv4Addr =
        format!("127.{}", pod_ip.split_once('.').expect("an IPv4 address").1)
            .parse()
            .expect("a pod address");
    let pod = load(
        SocketAddr::from((loopback, 8080)),
        "localhost",
        connections,
        seconds,
    )
    .await;
    let node_port_measured = load(at(node_port), "localhost", connections, seconds).await;
    let ingress = load(at(ingress_port), "hello.bench", connections, seconds).await;

    let report = serde_json::json!({
        "connections": connections,
        "seconds": seconds,
        "wasmtime_serve": wasmtime.report(),
        "skiff_pod_direct": pod.report(),
        "skiff_node_port": node_port_measured.report(),
        "skiff_ingress": ingress.report(),
        "node_port_vs_wasmtime_serve": node_port_measured.versus(&wasmtime),
        "ingress_vs_wasmtime_serve": ingress.versus(&wasmtime),
        "pod_direct_vs_wasmtime_serve": pod.versus(&wasmtime),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
}
