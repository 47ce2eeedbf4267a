//! API server benchmark: durable writes per second from 1 and from 64 concurrent clients, and the
//! latency from issuing a write to a watcher receiving its event (p50, p99). Prints JSON.
//!
//! The writes come from a lean load generator shaped like client-go (what kubectl and the
//! controllers of Kubernetes use): one TLS connection speaking HTTP/2, each client a stream
//! issuing `POST .../configmaps` with a JSON body and reading the created object back. It
//! speaks HTTP/2 through the `h2` crate, runs its clients on one thread and allocates with
//! mimalloc, so that it takes as little as it can of the two cores it shares with the server.
//! The same writes through kube-rs (HTTP/1.1, one connection per concurrent request, typed
//! decoding) are reported beside them. The server runs as its own process; the clients share
//! its two cores.
//!
//! `cargo bench -p skiff-tests --bench api` (set `SKIFF_BENCH_WRITES` to change the write count,
//! and `SKIFF_BENCH_CLIENTS` to run only the HTTP/2 writes from that many clients, as when
//! profiling the server under one load).

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use skiff_tests::Server;
use skiff_tests::measure::{cpu_time, percentile_ms, proc_figure};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config_map(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "data": {"key": "value"},
    })
}

/// Writes per second and the server's CPU microseconds per write.
struct Throughput {
    writes_per_second: f64,
    server_cpu_us_per_write: f64,
    client_cpu_us_per_write: f64,
}

impl Throughput {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "writes_per_second": self.writes_per_second.round(),
            "server_cpu_us_per_write": self.server_cpu_us_per_write.round(),
            "client_cpu_us_per_write": self.client_cpu_us_per_write.round(),
        })
    }
}

/// Runs `write(i)` for i in 0..total from `clients` concurrent tasks and measures it.
async fn measure<F, Fut>(server_pid: u32, clients: usize, total: usize, write: F) -> Throughput
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let cpu_before = cpu_time(&server_pid.to_string());
    let client_before = cpu_time("self");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..total).step_by(clients) {
                write(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let elapsed = started.elapsed();
    Throughput {
        writes_per_second: total as f64 / elapsed.as_secs_f64(),
        client_cpu_us_per_write: (cpu_time("self") - client_before).as_secs_f64() * 1e6
            / total as f64,
        server_cpu_us_per_write: (cpu_time(&server_pid.to_string()) - cpu_before).as_secs_f64()
            * 1e6
            / total as f64,
    }
}

/// An HTTP/2 connection to the server authenticated as the admin kubeconfig's user, spoken
/// with the `h2` crate itself: a request's headers and body go out in one write, as a client
/// that has the whole small body at hand sends them.
struct H2 {
    send: h2::client::SendRequest<Bytes>,
    /// `https://host:port/api/v1/namespaces/default/configmaps`, parsed once.
    uri: http::Uri,
}

fn pem_field(value: &serde_yaml::Value, field: &str) -> Vec<u8> {
    let data = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in kubeconfig"));
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64 PEM")
}

/// The JSON body of [`config_map`]`(name)`, written without building the value.
fn config_map_body(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"bench":"yes"}}}},"data":{{"key":"value"}}}}"#
    ))
}

impl H2 {
    async fn connect(kubeconfig: &std::path::Path) -> H2 {
        let config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(kubeconfig).expect("kubeconfig"))
                .expect("kubeconfig YAML");
        let cluster = &config["clusters"][0]["cluster"];
        let user = &config["users"][0]["user"];
        let url = cluster["server"].as_str().expect("server URL");
        let authority = url.trim_start_matches("https://").to_string();
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            rustls_pemfile::certs(&mut &pem_field(cluster, "certificate-authority-data")[..])
        {
            roots.add(cert.expect("CA certificate")).expect("CA");
        }
        let chain = rustls_pemfile::certs(&mut &pem_field(user, "client-certificate-data")[..])
            .collect::<Result<Vec<_>, _>>()
            .expect("client certificate");
        let key = rustls_pemfile::private_key(&mut &pem_field(user, "client-key-data")[..])
            .expect("client key")
            .expect("a key");
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth");
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let host = authority.rsplit_once(':').expect("host:port").0.to_string();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(
                rustls::pki_types::ServerName::try_from(host).expect("server name"),
                tcp,
            )
            .await
            .expect("TLS handshake");
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "the server speaks HTTP/2"
        );
        let (send, conn) = h2::client::handshake(stream)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(async move { conn.await.expect("HTTP/2 connection") });
        let uri = format!("https://{authority}/api/v1/namespaces/default/configmaps")
            .parse()
            .expect("URI");
        H2 { send, uri }
    }

    /// Creates one ConfigMap and checks the server answered 201 with the stored object.
    async fn create(send: h2::client::SendRequest<Bytes>, uri: &http::Uri, name: &str) {
        let request = http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(())
            .expect("request");
        let mut send = send.ready().await.expect("a stream to send on");
        let (response, mut body_out) = send.send_request(request, false).expect("request sent");
        body_out
            .send_data(config_map_body(name), true)
            .expect("body sent");
        let response = response.await.expect("response");
        let status = response.status();
        let mut body_in = response.into_body();
        let mut body = Vec::new();
        while let Some(chunk) = body_in.data().await {
            let chunk = chunk.expect("response body");
            body.extend_from_slice(&chunk);
            body_in
                .flow_control()
                .release_capacity(chunk.len())
                .expect("flow control");
        }
        assert_eq!(
            status,
            http::StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        #[derive(serde::Deserialize)]
        struct Created {
            metadata: CreatedMeta,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct CreatedMeta {
            name: String,
            resource_version: String,
        }
        let created: Created = serde_json::from_slice(&body).expect("the created object");
        assert_eq!(created.metadata.name, name);
        assert!(!created.metadata.resource_version.is_empty());
    }

    async fn writes(&self, pid: u32, prefix: &str, clients: usize, total: usize) -> Throughput {
        let send = self.send.clone();
        let uri = Arc::new(self.uri.clone());
        let prefix = Arc::new(prefix.to_string());
        measure(pid, clients, total, move |i| {
            let (send, uri, prefix) = (send.clone(), uri.clone(), prefix.clone());
            async move { H2::create(send, &uri, &format!("{prefix}-{i}")).await }
        })
        .await
    }
}

/// The same writes through kube-rs.
async fn kube_writes(
    api: &Api<ConfigMap>,
    pid: u32,
    prefix: &str,
    clients: usize,
    total: usize,
) -> Throughput {
    let api = api.clone();
    let prefix = Arc::new(prefix.to_string());
    measure(pid, clients, total, move |i| {
        let (api, prefix) = (api.clone(), prefix.clone());
        async move {
            let cm: ConfigMap =
                serde_json::from_value(config_map(&format!("{prefix}-{i}"))).expect("ConfigMap");
            api.create(&PostParams::default(), &cm)
                .await
                .expect("create");
        }
    })
    .await
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
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("probe-{i}");
        let mut cm: ConfigMap = serde_json::from_value(config_map(&name)).expect("ConfigMap");
        cm.metadata.labels = Some([("probe".to_string(), "yes".to_string())].into());
        let issued = Instant::now();
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
                    latencies.push(issued.elapsed());
                    break;
                }
                _ => continue,
            }
        }
    }
    latencies.sort();
    (
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
    )
}

/// The HTTP/2 writers run on a runtime of their own thread, over their own connection, as one
/// client process's goroutines share one connection: their requests and the connection's
/// frames never hop between a pool's threads, so the generator wakes no other thread per
/// request and leaves the most of the two cores to the server.
async fn own_thread_clients(
    kubeconfig: std::path::PathBuf,
    pid: u32,
    prefix: &'static str,
    clients: usize,
    total: usize,
) -> Throughput {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let h2 = H2::connect(&kubeconfig).await;
                h2.writes(pid, prefix, clients, total).await
            })
    })
    .await
    .expect("single client")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; any other run (such as `cargo test --benches`) just checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&config_map_body("one")).expect("JSON"),
        config_map("one"),
        "the HTTP/2 writes send the config map the kube-rs writes send"
    );
    let total: usize = std::env::var("SKIFF_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8000);
    let server = Server::start().expect("start skiff server");
    let pid = server.pid().expect("the server runs");
    let client = server.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // Warm up the server's lazily built schemas, through HTTP/2 writers as the phases run them
    // and through the kube-rs client's connections.
    own_thread_clients(server.kubeconfig(), pid, "warm", 64, 512).await;
    kube_writes(&api, pid, "kwarm", 64, 256).await;
    // One phase alone, for profiling the server under it.
    if let Some(clients) = std::env::var("SKIFF_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        eprintln!("server {pid}: {total} writes from {clients} clients");
        let phase = own_thread_clients(server.kubeconfig(), pid, "phase", clients, total).await;
        println!(
            "{}",
            serde_json::to_string_pretty(&phase.json()).expect("json")
        );
        return;
    }
    let single = own_thread_clients(server.kubeconfig(), pid, "one", 1, total / 4).await;
    let concurrent = own_thread_clients(server.kubeconfig(), pid, "many", 64, total).await;
    let kube_single = kube_writes(&api, pid, "kone", 1, total / 8).await;
    let kube_concurrent = kube_writes(&api, pid, "kmany", 64, total / 2).await;
    let (p50, p99) = watch_latency(&api, 500).await;
    // Read last: the watch probe lists every config map written, the run's largest response.
    let disk_bytes = proc_figure(pid, "io", "write_bytes");
    let peak_kib = proc_figure(pid, "status", "VmHWM");
    let report = serde_json::json!({
        "benchmark": "api",
        "durable": true,
        "writes_per_second_1_client": single.writes_per_second.round(),
        "writes_per_second_64_clients": concurrent.writes_per_second.round(),
        "watch_write_to_event_ms_p50": (p50 * 100.0).round() / 100.0,
        "watch_write_to_event_ms_p99": (p99 * 100.0).round() / 100.0,
        "http2": {"1_client": single.json(), "64_clients": concurrent.json()},
        "kube_rs_http1": {"1_client": kube_single.json(), "64_clients": kube_concurrent.json()},
        "writes": {"1_client": total / 4, "64_clients": total, "watch_probes": 500},
        "server_disk_mb_written": (disk_bytes as f64 / 1e6).round(),
        "server_peak_memory_mb": (peak_kib as f64 / 1024.0).round(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
