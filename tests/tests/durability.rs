//! Every write answered 2xx survives a SIGKILL of the server.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use skiff_tests::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let mut server = Server::start().unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let api = api.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name}, "data": {"i": i.to_string()}
                }))
                .unwrap();
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => acknowledged.lock().unwrap().push(name),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the writers get going, then kill the server under them.
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.kill();
    for w in writers {
        w.await.unwrap();
    }
    server.restart().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let stored: std::collections::HashSet<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let acknowledged = acknowledged.lock().unwrap();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(acknowledged.len() >= 300);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
