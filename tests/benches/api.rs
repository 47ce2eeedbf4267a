//! API server benchmark: durable writes per second from 1 and from 64 concurrent clients, and the
//! latency from issuing a write to a watcher receiving its event (p50, p99). Prints JSON.
//!
//! `cargo bench -p skiff-tests --bench api` (set `SKIFF_BENCH_WRITES` to change the write count).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use skiff_tests::Server;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "data": {"key": "value"},
    }))
    .expect("a valid ConfigMap")
}

/// Writes `total` ConfigMaps from `clients` concurrent clients; returns writes per second.
async fn writes_per_second(
    api: &Api<ConfigMap>,
    prefix: &str,
    clients: usize,
    total: usize,
) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = api.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (c..total).step_by(clients) {
                api.create(
                    &PostParams::default(),
                    &config_map(&format!("{prefix}-{i}")),
                )
                .await
                .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// Issues `count` writes one at a time and measures how long each takes to reach a watcher.
async fn watch_latency(api: &Api<ConfigMap>, count: usize) -> (f64, f64) {
    let start = api
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = api
        .watch(
            &WatchParams::default().labels("probe=yes").timeout(290),
            &start,
        )
        .await
        .expect("watch")
        .boxed();
    let issued = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("probe-{i}");
        let mut cm = config_map(&name);
        cm.metadata.labels = Some([("probe".to_string(), "yes".to_string())].into());
        issued.lock().unwrap().insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
        loop {
            match events
                .try_next()
                .await
                .expect("watch stream")
                .expect("watch ended")
            {
                WatchEvent::Added(o) if o.metadata.name.as_deref() == Some(name.as_str()) => {
                    let at = issued.lock().unwrap()[&name];
                    latencies.push(at.elapsed());
                    break;
                }
                _ => continue,
            }
        }
    }
    latencies.sort();
    (percentile(&latencies, 0.5), percentile(&latencies, 0.99))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; any other run (such as `cargo test --benches`) just checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let total: usize = std::env::var("SKIFF_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let server = Server::start().expect("start skiff server");
    let client = server.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // Warm up connections and the server's lazily built schemas.
    writes_per_second(&api, "warm", 64, 256).await;
    let single = writes_per_second(&api, "one", 1, total / 4).await;
    let concurrent = writes_per_second(&api, "many", 64, total).await;
    let (p50, p99) = watch_latency(&api, 500).await;
    let report = serde_json::json!({
        "benchmark": "api",
        "durable": true,
        "writes_per_second_1_client": single.round(),
        "writes_per_second_64_clients": concurrent.round(),
        "watch_write_to_event_ms_p50": (p50 * 100.0).round() / 100.0,
        "watch_write_to_event_ms_p99": (p99 * 100.0).round() / 100.0,
        "writes": {"1_client": total / 4, "64_clients": total, "watch_probes": 500},
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
