//! Watches through kube-rs: every change seen exactly once, resumption from a resourceVersion,
//! and 410 Expired past the retained history.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use skiff_tests::Server;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"churn": "yes"}},
        "data": {"v": "0"},
    }))
    .unwrap()
}

type Events = BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>;

/// A watch of the namespace's config maps from `version` on.
async fn watch_from(api: &Api<ConfigMap>, version: &str) -> Events {
    api.watch(&WatchParams::default(), version)
        .await
        .unwrap()
        .boxed()
}

/// The next object a watch adds, passing over bookmarks; any other event fails.
async fn next_added(stream: &mut Events) -> ConfigMap {
    loop {
        match stream.try_next().await.unwrap().expect("watch ended early") {
            WatchEvent::Added(o) => return o,
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The names of the next `count` objects a watch adds.
async fn added(stream: &mut Events, count: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..count {
        names.push(next_added(stream).await.metadata.name.unwrap());
    }
    names
}

/// The resourceVersion a list answers now: where a watch of what follows starts.
async fn list_version(api: &Api<ConfigMap>) -> String {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_change_of_a_1000_object_churn_exactly_once() {
    let server = Server::start().unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = list_version(&api).await;
    let mut stream = api
        .watch(
            &WatchParams::default().labels("churn=yes").timeout(290),
            &start,
        )
        .await
        .unwrap()
        .boxed();
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut expected = Vec::new();
            for i in 0..1000 {
                let name = format!("c{}", i % 250);
                match i / 250 {
                    0 => {
                        api.create(&PostParams::default(), &cm(&name))
                            .await
                            .unwrap();
                        expected.push(("ADDED", name));
                    }
                    1 | 2 => {
                        let patch = serde_json::json!({"data": {"v": i.to_string()}});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .unwrap();
                        expected.push(("MODIFIED", name));
                    }
                    _ => {
                        api.delete(&name, &DeleteParams::default()).await.unwrap();
                        expected.push(("DELETED", name));
                    }
                }
            }
            expected
        })
    };
    let mut seen: Vec<(&str, String)> = Vec::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    while seen.len() < 1000 {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.try_next())
            .await
            .expect("watch stalled")
            .unwrap()
            .expect("watch ended early");
        let (kind, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error: {e:?}"),
        };
        let name = object.metadata.name.unwrap();
        let rv: u64 = object.metadata.resource_version.unwrap().parse().unwrap();
        if let Some(previous) = versions.insert(name.clone(), rv) {
            assert!(rv > previous, "{name} went back from {previous} to {rv}");
        }
        seen.push((kind, name));
    }
    let expected = writer.await.unwrap();
    assert_eq!(seen, expected);
    // Nothing of the churn comes twice: the next event is a write made after it.
    api.create(&PostParams::default(), &cm("end"))
        .await
        .unwrap();
    assert_eq!(added(&mut stream, 1).await, ["end"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_from_its_last_resource_version() {
    let server = Server::start().unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = list_version(&api).await;
    let mut last = start.clone();
    {
        let mut stream = watch_from(&api, &start).await;
        api.create(&PostParams::default(), &cm("first"))
            .await
            .unwrap();
        if let Some(WatchEvent::Added(o)) = stream.try_next().await.unwrap() {
            last = o.metadata.resource_version.unwrap();
        }
        // The connection drops here.
    }
    api.create(&PostParams::default(), &cm("second"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("third"))
        .await
        .unwrap();
    let mut stream = watch_from(&api, &last).await;
    assert_eq!(added(&mut stream, 2).await, ["second", "third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_across_a_restart_of_the_server() {
    let mut server = Server::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let start = list_version(&api).await;
    let mut stream = watch_from(&api, &start).await;
    api.create(&PostParams::default(), &cm("first"))
        .await
        .unwrap();
    let last = next_added(&mut stream)
        .await
        .metadata
        .resource_version
        .unwrap();
    // Written, but not yet read by the watcher, when the server dies.
    api.create(&PostParams::default(), &cm("second"))
        .await
        .unwrap();
    server.restart().unwrap();
    // The dropped connection ends the stream, with an error or without.
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(_)) = stream.try_next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch outlived its server");
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    api.create(&PostParams::default(), &cm("third"))
        .await
        .unwrap();
    let mut stream = watch_from(&api, &last).await;
    assert_eq!(added(&mut stream, 2).await, ["second", "third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_older_than_the_history_gets_410_expired() {
    let server = Server::start_with(&["--history-revisions", "50"]).unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..200 {
        api.create(&PostParams::default(), &cm(&format!("old{i}")))
            .await
            .unwrap();
    }
    let mut stream = watch_from(&api, "2").await;
    match stream.try_next().await {
        Ok(Some(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.contains("too old resource version"),
                "{}",
                e.message
            );
        }
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Expired, got {other:?}"),
    }
    // A kube-runtime watcher recovers by relisting.
    let recent = api.list(&ListParams::default()).await.unwrap();
    assert!(recent.items.len() >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_runtime_watcher_lists_then_follows_changes() {
    use kube::runtime::watcher::{self, Event};
    let server = Server::start().unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("existing"))
        .await
        .unwrap();
    let mut events =
        watcher::watcher(api.clone(), watcher::Config::default().labels("churn=yes")).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            Event::Init => {}
            Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?} before the initial list ended"),
        }
    }
    assert_eq!(initial, vec!["existing"]);
    api.create(&PostParams::default(), &cm("later"))
        .await
        .unwrap();
    api.delete("existing", &DeleteParams::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(60), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::Apply(o) => seen.push(format!("apply {}", o.metadata.name.unwrap())),
            Event::Delete(o) => seen.push(format!("delete {}", o.metadata.name.unwrap())),
            _ => {}
        }
    }
    assert_eq!(seen, vec!["apply later", "delete existing"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_initial_events_marks_their_end_and_stops_at_its_timeout() {
    let server = Server::start().unwrap();
    let client = server.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for name in ["one", "two"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    let params = WatchParams::streaming_lists()
        .labels("churn=yes")
        .timeout(1);
    let mut stream = api.watch(&params, "0").await.unwrap().boxed();
    let mut initial = Vec::new();
    let end = loop {
        match stream
            .try_next()
            .await
            .unwrap()
            .expect("events before the timeout")
        {
            WatchEvent::Added(o) => initial.push(o.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => break b,
            other => panic!("unexpected {other:?}"),
        }
    };
    initial.sort();
    assert_eq!(initial, ["one", "two"]);
    assert_eq!(
        end.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );
    let newest: i64 = list_version(&api).await.parse().unwrap();
    assert!(end.metadata.resource_version.parse::<i64>().unwrap() <= newest);
    // Nothing else changes: timeoutSeconds ends the stream, with at most bookmarks before.
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        let mut rest = Vec::new();
        while let Some(event) = stream.try_next().await.unwrap() {
            if !matches!(event, WatchEvent::Bookmark(_)) {
                rest.push(event);
            }
        }
        rest
    })
    .await
    .expect("the watch ends at its timeout");
    assert!(rest.is_empty(), "{rest:?}");
}
