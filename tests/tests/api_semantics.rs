//! Upstream semantics clients rely on: graceful pod deletion, server-side dry runs, paging at
//! one revision, the cluster-wide path's verbs, and garbage collection: with several owners,
//! and for each propagation policy kubectl's `--cascade` asks for.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use skiff_tests::{Server, eventually, text};

fn pod_on_a_node(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "registry.local/c:1"}]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_a_node_terminates_gracefully_until_deleted_with_grace_zero() {
    let server = Server::start().unwrap();
    let api: Api<Pod> = Api::namespaced(server.client().await.unwrap(), "default");
    api.create(&PostParams::default(), &pod_on_a_node("graceful"))
        .await
        .unwrap();
    api.delete("graceful", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = api
        .get("graceful")
        .await
        .expect("a graceful delete keeps the pod");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    // A status write while terminating does not end it early.
    let mut status = terminating.clone();
    status.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    api.replace_status("graceful", &PostParams::default(), &status)
        .await
        .unwrap();
    assert!(api.get_opt("graceful").await.unwrap().is_some());
    // The node agent's final delete with grace 0 removes it.
    api.delete(
        "graceful",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get_opt("graceful").await.unwrap().is_none());
}

#[test]
fn server_side_dry_runs_change_nothing() {
    let server = Server::start().unwrap();
    server.kubectl_ok(&["create", "configmap", "kept", "--from-literal=a=1"]);
    let out = server.kubectl_ok(&["delete", "cm", "kept", "--dry-run=server"]);
    assert!(out.contains("deleted (server dry run)"), "{out}");
    server.kubectl_ok(&["get", "cm", "kept"]);
    let dup = server.kubectl(&["create", "configmap", "kept", "--dry-run=server"]);
    assert!(
        !dup.status.success(),
        "a dry-run create of an existing name must conflict: {}",
        text(&dup)
    );
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("already exists"),
        "{}",
        text(&dup)
    );
    server.kubectl_ok(&["create", "configmap", "ghost", "--dry-run=server"]);
    assert!(!server.kubectl(&["get", "cm", "ghost"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_a_list_report_the_first_pages_revision() {
    let server = Server::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    for i in 0..5 {
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("p{i}")}}))
                .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    // A write between pages must not move the list's revision past it.
    let late: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "late"}})).unwrap();
    api.create(&PostParams::default(), &late).await.unwrap();
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let names: Vec<String> = first
        .items
        .iter()
        .chain(&second.items)
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    // "late" sorts before the cursor: no page shows it, and a watch from the list's revision must.
    assert_eq!(names, vec!["p0", "p1", "p2", "p3"]);
    let rv = second.metadata.resource_version.unwrap();
    let mut events = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("late")),
        other => panic!("expected the late ADDED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_wide_path_of_a_namespaced_kind_cannot_delete_everything() {
    let server = Server::start().unwrap();
    let client = server.client().await.unwrap();
    let ns: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "survivor"}})).unwrap();
    ns.create(&PostParams::default(), &cm).await.unwrap();
    let all: Api<ConfigMap> = Api::all(client);
    let err = all
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => assert_eq!(e.code, 405),
        other => panic!("expected 405, got {other:?}"),
    }
    assert!(ns.get_opt("survivor").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_with_a_live_owner_survives_and_loses_only_the_dead_reference() {
    let server = Server::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let make = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    };
    let a = api
        .create(&PostParams::default(), &make("owner-a"))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &make("owner-b"))
        .await
        .unwrap();
    let owner = |o: &ConfigMap| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "name": o.metadata.name, "uid": o.metadata.uid,
        })
    };
    let dependent: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "shared", "ownerReferences": [owner(&a), owner(&b)]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    let lone: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "only-a", "ownerReferences": [owner(&a)]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &lone).await.unwrap();
    api.delete("owner-a", &DeleteParams::background())
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pruned = loop {
        let lone_gone = api.get_opt("only-a").await.unwrap().is_none();
        let refs = api
            .get_opt("shared")
            .await
            .unwrap()
            .expect("the dependent with a live owner was deleted")
            .metadata
            .owner_references
            .unwrap_or_default();
        if lone_gone && refs.len() == 1 {
            break refs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not collected: only-a gone {lone_gone}, shared refs {refs:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(pruned[0].name, "owner-b");
}

/// A ConfigMap manifest, owned by the ConfigMap `owner` when given.
fn config_map(server: &Server, name: &str, owner: Option<&str>, finalizer: Option<&str>) -> String {
    let mut metadata = serde_json::json!({"name": name});
    if let Some(owner) = owner {
        let uid = server.kubectl_ok(&["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"]);
        metadata["ownerReferences"] = serde_json::json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid,
            "blockOwnerDeletion": true,
        }]);
    }
    if let Some(finalizer) = finalizer {
        metadata["finalizers"] = serde_json::json!([finalizer]);
    }
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}).to_string()
}

#[test]
fn each_cascade_policy_treats_dependents_as_upstream() {
    let server = Server::start().unwrap();
    for policy in ["background", "orphan", "foreground"] {
        let out = server.kubectl_stdin(
            &["apply", "-f", "-"],
            &config_map(&server, policy, None, None),
        );
        assert!(out.status.success(), "{}", text(&out));
        let hold = (policy == "foreground").then_some("example.com/hold");
        let dependent = format!("{policy}-dependent");
        let out = server.kubectl_stdin(
            &["apply", "-f", "-"],
            &config_map(&server, &dependent, Some(policy), hold),
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let exists = |name: &str| server.kubectl(&["get", "cm", name]).status.success();

    // Background: the owner goes at once, its dependent after it.
    server.kubectl_ok(&["delete", "cm", "background", "--cascade=background"]);
    assert!(
        eventually(Duration::from_secs(30), || (!exists(
            "background-dependent"
        ))
        .then_some(()))
        .is_some(),
        "the dependent of a background deletion stayed
{}",
        server.log()
    );

    // Orphan: the dependent stays, without the reference to its deleted owner.
    server.kubectl_ok(&["delete", "cm", "orphan", "--cascade=orphan"]);
    assert!(!exists("orphan"));
    let refs = server.kubectl_ok(&[
        "get",
        "cm",
        "orphan-dependent",
        "-o",
        "jsonpath={.metadata.ownerReferences}",
    ]);
    assert_eq!(refs, "", "the orphan kept its owner reference");

    // Foreground: the owner waits, marked, until its blocking dependent is gone.
    server.kubectl_ok(&[
        "delete",
        "cm",
        "foreground",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let marked = eventually(Duration::from_secs(30), || {
        let dependent = server.kubectl_ok(&[
            "get",
            "cm",
            "foreground-dependent",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        (!dependent.is_empty()).then_some(())
    });
    assert!(
        marked.is_some(),
        "the dependent was not deleted
{}",
        server.log()
    );
    let owner = server.kubectl_ok(&[
        "get",
        "cm",
        "foreground",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert_eq!(owner, r#"["foregroundDeletion"]"#);
    server.merge_patch(
        "cm/foreground-dependent",
        r#"{"metadata":{"finalizers":null}}"#,
    );
    assert!(
        eventually(Duration::from_secs(30), || (!exists("foreground"))
            .then_some(()))
        .is_some(),
        "the owner outlived its last dependent\n{}",
        server.log()
    );
    assert!(!exists("foreground-dependent"));
}

#[test]
fn creates_need_a_namespace_that_exists_and_is_not_terminating() {
    let server = Server::start().unwrap();
    // A namespace is usable at once after its creation.
    server.kubectl_ok(&["create", "namespace", "fresh"]);
    server.kubectl_ok(&["create", "configmap", "first", "-n", "fresh"]);
    let missing = server.kubectl(&["create", "configmap", "c", "-n", "nowhere"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("namespaces \"nowhere\" not found"),
        "{}",
        text(&missing)
    );
    // A finalizer on its content keeps the namespace terminating.
    let set_finalizers = |finalizers: &str| {
        let patch = format!(r#"{{"metadata":{{"finalizers":{finalizers}}}}}"#);
        server.kubectl_ok(&[
            "patch",
            "configmap",
            "first",
            "-n",
            "fresh",
            "--type=merge",
            "-p",
            &patch,
        ]);
    };
    set_finalizers(r#"["example.com/hold"]"#);
    server.kubectl_ok(&["delete", "namespace", "fresh", "--wait=false"]);
    let refused = skiff_tests::eventually(Duration::from_secs(10), || {
        let out = server.kubectl(&["create", "configmap", "late", "-n", "fresh"]);
        (!out.status.success()).then_some(out)
    })
    .expect("creates in a terminating namespace are refused");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "unable to create new content in namespace fresh because it is being terminated"
        ),
        "{}",
        text(&refused)
    );
    assert!(
        !server
            .kubectl(&["get", "cm", "late", "-n", "fresh"])
            .status
            .success()
    );
    // Once nothing holds it, the namespace goes, and a new one of the same name is usable.
    set_finalizers("null");
    skiff_tests::eventually(Duration::from_secs(20), || {
        (!server
            .kubectl(&["get", "namespace", "fresh"])
            .status
            .success())
        .then_some(())
    })
    .expect("the namespace is removed");
    server.kubectl_ok(&["create", "namespace", "fresh"]);
    server.kubectl_ok(&["create", "configmap", "again", "-n", "fresh"]);
}
