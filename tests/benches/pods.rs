//! Node benchmark: pod start latency (create to Running, observed through a watch, the component
//! already compiled and cached) over a burst of pods, and the resident memory the server (with
//! its node) adds per idle HTTP pod. Prints JSON.
//!
//! Each burst is `SKIFF_BENCH_PODS` pods (1,000 by default), created by a number of clients at
//! once, each creating its share one after another: one burst per entry of
//! `SKIFF_BENCH_CREATORS` (`1,16` by default: one client, as `kubectl apply -f` of a file of
//! pods, then sixteen). `cargo bench -p skiff-tests --bench pods`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use skiff_tests::Server;
use skiff_tests::measure::{cpu_time, percentile_ms, proc_figure};

fn pod(name: &str, node: &str, port: u16) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "web",
                "image": "samples.skiff.local/http-hello:0.1.0",
                "ports": [{"containerPort": port}],
            }],
        },
    }))
    .expect("a valid Pod")
}

/// What one burst measured.
struct Burst {
    creators: usize,
    latencies: Vec<Duration>,
    creates: Vec<Duration>,
    all_running: Duration,
    server_cpu: Duration,
    own_cpu: Duration,
    missing: Vec<serde_json::Value>,
}

impl Burst {
    fn report(&self, count: usize) -> serde_json::Value {
        let ms = |v: f64| (v * 100.0).round() / 100.0;
        let per_pod = |spent: Duration| (spent.as_secs_f64() * 1e6 / count as f64).round() / 1e3;
        serde_json::json!({
            "creators": self.creators,
            "pods_running": self.latencies.len(),
            "pod_start_ms_p50": ms(percentile_ms(&self.latencies, 0.5)),
            "pod_start_ms_p99": ms(percentile_ms(&self.latencies, 0.99)),
            "burst_seconds": ms(self.all_running.as_secs_f64()),
            "create_request_ms_p50": ms(percentile_ms(&self.creates, 0.5)),
            "create_request_ms_p99": ms(percentile_ms(&self.creates, 0.99)),
            "server_cpu_ms_per_pod": per_pod(self.server_cpu),
            "client_cpu_ms_per_pod": per_pod(self.own_cpu),
            "not_running": self.missing,
        })
    }
}

/// Creates `count` pods named `{prefix}{i}` from `creators` clients at once, each creating its
/// share one after another, and measures each from its create request to Running seen by the
/// watch that fills `running`.
async fn burst(
    pods: &Api<Pod>,
    node: &str,
    pid: u32,
    running: &Arc<Mutex<HashMap<String, Instant>>>,
    (prefix, ports, count, creators): (&str, u16, usize, usize),
) -> Burst {
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let created: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let started = Instant::now();
    let (server_cpu, own_cpu) = (cpu_time(&pid.to_string()), cpu_time("self"));
    let mut tasks = Vec::new();
    for c in 0..creators {
        let (pods, node, issued, created, prefix) = (
            pods.clone(),
            node.to_string(),
            issued.clone(),
            created.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            for i in (c..count).step_by(creators) {
                let name = format!("{prefix}{i}");
                let at = Instant::now();
                issued.lock().unwrap().insert(name.clone(), at);
                pods.create(&PostParams::default(), &pod(&name, &node, ports + i as u16))
                    .await
                    .expect("create");
                created.lock().unwrap().push(at.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let seen = |running: &HashMap<String, Instant>| {
        running.keys().filter(|n| n.starts_with(prefix)).count()
    };
    while seen(&running.lock().unwrap()) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_running = started.elapsed();
    let server_cpu = cpu_time(&pid.to_string()).saturating_sub(server_cpu);
    let own_cpu = cpu_time("self").saturating_sub(own_cpu);
    let issued = issued.lock().unwrap().clone();
    let running = running.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = issued
        .iter()
        .filter_map(|(name, at)| running.get(name).map(|seen| seen.duration_since(*at)))
        .collect();
    latencies.sort();
    // What the pods never seen Running show, for a few of them.
    let mut missing = Vec::new();
    for name in issued.keys().filter(|n| !running.contains_key(*n)).take(5) {
        let shown = match pods.get(name).await {
            Ok(pod) => serde_json::to_value(pod.status).unwrap_or_default(),
            Err(e) => serde_json::json!(e.to_string()),
        };
        missing.push(serde_json::json!({"pod": name, "status": shown}));
    }
    let mut creates = created.lock().unwrap().clone();
    creates.sort();
    Burst {
        creators,
        latencies,
        creates,
        all_running,
        server_cpu,
        own_cpu,
        missing,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count: usize = std::env::var("SKIFF_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let creator_counts: Vec<usize> = std::env::var("SKIFF_BENCH_CREATORS")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|c| *c > 0)
        .collect();
    let max_pods = (count * creator_counts.len() + 10).max(1000);
    // A node range with an address for every pod: a /24 holds 253.
    let mask = (16..=24u32)
        .rev()
        .find(|bits| (1usize << (32 - bits)) - 3 >= max_pods)
        .unwrap_or(16)
        .to_string();
    let server = Server::start_with(&[
        "--max-pods",
        &max_pods.to_string(),
        "--node-cidr-mask-size",
        &mask,
    ])
    .expect("start skiff server");
    let pid = server.pid().expect("the server runs");
    let node = server.node_name();
    server.import_samples();
    let client = server.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // Ports from a range nothing else on loopback uses in the benchmark.
    let base_port: u16 = 20000;
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let running = running.clone();
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut events = watcher(pods, watcher::Config::default().labels("bench=pods"))
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(pod)) = events.next().await {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Running") {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    running
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    // The first pod compiles the component; the bursts start from the cache.
    pods.create(&PostParams::default(), &pod("warm", &node, base_port))
        .await
        .expect("create");
    while !running.lock().unwrap().contains_key("warm") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = proc_figure(pid, "status", "VmRSS");
    let mut bursts = Vec::new();
    for (n, creators) in creator_counts.iter().enumerate() {
        let ports = base_port + 1 + (n * count) as u16;
        let prefix = format!("b{n}-");
        let measured = burst(
            &pods,
            &node,
            pid,
            &running,
            (&prefix, ports, count, *creators),
        )
        .await;
        bursts.push(measured.report(count));
        // The node settles (status writes, events) before the next burst.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let rss_after = proc_figure(pid, "status", "VmRSS");
    watch.abort();
    let idle_pods = (count * creator_counts.len()).max(1);
    let report = serde_json::json!({
        "benchmark": "pods",
        "pods_per_burst": count,
        "bursts": bursts,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
        "idle_http_pods": idle_pods,
        "rss_kib_per_idle_http_pod": ((rss_after.saturating_sub(rss_before)) as f64 / idle_pods as f64 * 10.0).round() / 10.0,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
