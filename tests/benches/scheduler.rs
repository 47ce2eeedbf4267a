//! Scheduler benchmark: binds per second for a backlog of pods over many nodes that exist only
//! as API objects, and the time a pod created one at a time takes to be bound. Prints JSON.
//!
//! `SKIFF_BENCH_NODES` nodes (1,000 by default) and `SKIFF_BENCH_PODS` pods (10,000) are
//! created while the server runs without its scheduler (and without a node agent). The server
//! is then restarted with the scheduler, which finds the whole backlog waiting; throughput is
//! every pod bound, from the restarted server's start to the last binding a watch sees (and, as
//! upstream's scheduler_perf counts it, from the first binding to the last). Then
//! `SKIFF_BENCH_SINGLE` pods (500) are created one after another, each waited for: its
//! create-to-bound time is the decision latency a user sees (the create, the scheduler's watch,
//! filtering and scoring every node, the binding, and the watch that reports it).
//! `cargo bench -p skiff-tests --bench scheduler`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use skiff_tests::Server;
use skiff_tests::measure::{cpu_time, percentile_ms};
use tokio::sync::Notify;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A node as an agent would register it: 16 cores, 64 GiB, 110 pods, Ready, with a pod range
/// of its own (the cluster range holds 256 node ranges; these come from outside it).
fn node(i: usize) -> Node {
    let name = format!("sim-{i:04}");
    let resources = serde_json::json!({"cpu": "16", "memory": "64Gi", "pods": "110"});
    let cidr = format!("10.{}.{}.0/24", 100 + i / 256, i % 256);
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
        }},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }))
    .expect("a valid Node")
}

/// A pod asking for a little cpu and memory, as most do.
fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "scheduler"}},
        "spec": {"containers": [{
            "name": "c",
            "image": "registry.local/none:1",
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        }]},
    }))
    .expect("a valid Pod")
}

/// Runs `count` creates from 64 tasks at once.
async fn create_all<K, F>(api: &Api<K>, count: usize, make: F)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(usize) -> K,
{
    futures::stream::iter((0..count).map(make))
        .map(|object| async move {
            api.create(&PostParams::default(), &object)
                .await
                .expect("create")
        })
        .buffer_unordered(64)
        .for_each(|_| async {})
        .await;
}

/// Pods seen bound, and when the last one was; of the bindings seen as they happened (after
/// the watch's first listing), how many, and when the first was.
#[derive(Default)]
struct Bound {
    names: HashSet<String>,
    last: Option<Instant>,
    live: usize,
    first_live: Option<Instant>,
    /// When the watch asked for its first listing, and when it had it.
    listing: Option<Instant>,
    listed: Option<Instant>,
}

/// Follows the pods and records each the first time it is seen with a node.
fn follow(api: Api<Pod>) -> (Arc<Mutex<Bound>>, Arc<Notify>) {
    let bound: Arc<Mutex<Bound>> = Arc::default();
    let changed = Arc::new(Notify::new());
    let (b, c) = (bound.clone(), changed.clone());
    tokio::spawn(async move {
        // Only bound pods: the first listing is small and quick, so that the watch is live
        // before the scheduler, listing the whole backlog, binds the first pod; each binding
        // then arrives as the pod's ADDED.
        let bound_only = watcher::Config::default().fields("spec.nodeName!=");
        let mut events = watcher::watcher(api, bound_only).default_backoff().boxed();
        while let Some(event) = events.try_next().await.ok().flatten() {
            let (pod, live) = match event {
                watcher::Event::Apply(pod) => (pod, true),
                watcher::Event::InitApply(pod) => (pod, false),
                watcher::Event::Init => {
                    b.lock().unwrap().listing.get_or_insert(Instant::now());
                    continue;
                }
                watcher::Event::InitDone => {
                    b.lock().unwrap().listed.get_or_insert(Instant::now());
                    continue;
                }
                _ => continue,
            };
            let placed = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if placed {
                let mut bound = b.lock().unwrap();
                if bound
                    .names
                    .insert(pod.metadata.name.clone().unwrap_or_default())
                {
                    let now = Instant::now();
                    bound.last = Some(now);
                    if live {
                        bound.live += 1;
                        bound.first_live.get_or_insert(now);
                    }
                    c.notify_waiters();
                }
            }
        }
    });
    (bound, changed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let nodes = env_count("SKIFF_BENCH_NODES", 1000);
    let pods = env_count("SKIFF_BENCH_PODS", 10_000);
    let singles = env_count("SKIFF_BENCH_SINGLE", 500);
    // As upstream's scheduler_perf: the API server and the scheduler, without the workload
    // controllers, which would also watch every pod and (node lifecycle) every node.
    const WORKLOADS: &str =
        "replicaset,deployment,job,cronjob,statefulset,daemonset,node-lifecycle,disruption";
    let mut server = Server::start_with(&[
        "--disable-agent",
        "--disable",
        &format!("scheduler,{WORKLOADS}"),
    ])
    .expect("start skiff server");
    {
        let client = server.client().await.expect("client");
        create_all(&Api::<Node>::all(client.clone()), nodes, node).await;
        let api: Api<Pod> = Api::namespaced(client, "default");
        create_all(&api, pods, |i| pod(&format!("backlog-{i}"))).await;
    }

    let started = Instant::now();
    server
        .restart_with(&["--disable-agent", "--disable", WORKLOADS])
        .expect("restart with the scheduler");
    let pid = server.pid().expect("the server runs");
    let cpu_before = cpu_time(&pid.to_string());
    let client = server.client().await.expect("client");
    let api: Api<Pod> = Api::namespaced(client, "default");
    let (bound, changed) = follow(api.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let notified = changed.notified();
        if bound.lock().unwrap().names.len() >= pods || Instant::now() > deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
    let (backlog_bound, last, live, first, exact) = {
        let bound = bound.lock().unwrap();
        let last = bound.last.unwrap_or(started);
        let first_live = bound.first_live.unwrap_or(last);
        // Bindings made after the listing's snapshot but before the watch was connected all
        // arrive at once when it connects. A first binding seen well after the listing was in
        // was seen as it happened; otherwise the window starts, conservatively, when the
        // listing was asked for, before any binding it did not hold.
        let exact = bound
            .listed
            .is_some_and(|listed| first_live > listed + Duration::from_millis(100));
        let first = if exact {
            first_live
        } else {
            bound.listing.unwrap_or(started)
        };
        (bound.names.len(), last, bound.live, first, exact)
    };
    let backlog_seconds = last.duration_since(started).as_secs_f64();
    // Upstream's scheduler_perf counts from the first pod scheduled; the server's start and
    // the listing of the backlog come before it. Only bindings seen after the watch's listing
    // count: any made before it arrive in it, all at once.
    let scheduling_seconds = last.duration_since(first).as_secs_f64();
    let server_cpu = cpu_time(&pid.to_string()).saturating_sub(cpu_before);

    let mut latencies = Vec::new();
    for i in 0..singles {
        let name = format!("single-{i}");
        let notified = changed.notified();
        tokio::pin!(notified);
        let at = Instant::now();
        api.create(&PostParams::default(), &pod(&name))
            .await
            .expect("create");
        loop {
            if bound.lock().unwrap().names.contains(&name) {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(10), notified.as_mut())
                .await
                .is_err()
            {
                panic!("pod {name} was not bound within 10 s");
            }
            notified.set(changed.notified());
        }
        latencies.push(at.elapsed());
    }
    latencies.sort();
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let report = serde_json::json!({
        "nodes": nodes,
        "backlog_pods": pods,
        "backlog_bound": backlog_bound,
        "binds_per_second": round(backlog_bound as f64 / backlog_seconds.max(1e-9)),
        "backlog_seconds": round(backlog_seconds),
        "first_bind_seconds": round(first.duration_since(started).as_secs_f64()),
        "bound_before_the_watch_listed": backlog_bound - live,
        "first_binding_seen_as_it_happened": exact,
        "binds_per_second_once_scheduling": round(
            live.saturating_sub(1) as f64 / scheduling_seconds.max(1e-9)
        ),
        "server_cpu_us_per_bind": round(server_cpu.as_secs_f64() * 1e6 / backlog_bound.max(1) as f64),
        "single_pods": singles,
        "decision_latency_ms_p50": round(percentile_ms(&latencies, 0.5)),
        "decision_latency_ms_p99": round(percentile_ms(&latencies, 0.99)),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
}
