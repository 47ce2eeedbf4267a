//! Follows every stored kind's objects and their ownerReferences: deletes dependents whose
//! owners are all gone (Background), deletes the dependents of an owner deleted with
//! `Foreground` before releasing its `foregroundDeletion` finalizer, and strips the owner's
//! reference from the dependents of an owner deleted with `Orphan` before releasing `orphan`.
//! It decides nothing until every kind has been listed once: a partial graph would make owners
//! look absent.
//!
//! The collector runs beside the store and reads its lists and its event stream directly,
//! where the other controllers watch through the API: it takes in every write of the cluster,
//! and an API watch would encode each object as text only for the collector to parse it back.
//! Everything it changes still goes through the API (deletes with preconditions, updates under
//! optimistic concurrency), as upstream's collector does.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams, Preconditions};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::api_resource;
use crate::registry::{self, RESOURCES, Resource};
use crate::store::{EventType, Store, StoreError};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// How long a follower lets a resource's events gather once it has read all there were. The
/// collector watches every kind, so taking each event the moment it lands would wake an idle core
/// for every write in the cluster; gathered, a burst costs one wake-up per interval, and an
/// owner's dependents go at most this much later.
const GATHER: Duration = Duration::from_millis(5);

/// One object the collector knows of.
#[derive(Debug, Clone)]
struct Node {
    resource: &'static Resource,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

/// Objects by uid, and who depends on whom.
#[derive(Default)]
struct Graph {
    nodes: FxHashMap<String, Node>,
    dependents: FxHashMap<String, FxHashSet<String>>,
}

impl Graph {
    fn unlink(&mut self, uid: &str) {
        if let Some(old) = self.nodes.remove(uid) {
            for owner in old.owners {
                if let Some(set) = self.dependents.get_mut(&owner.uid) {
                    set.remove(uid);
                    if set.is_empty() {
                        self.dependents.remove(&owner.uid);
                    }
                }
            }
        }
    }

    fn insert(&mut self, uid: String, node: Node) {
        self.unlink(&uid);
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.nodes.insert(uid, node);
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.nodes.get(uid).cloned()
    }
}

type Shared = Arc<Mutex<Graph>>;

fn lock(graph: &Shared) -> std::sync::MutexGuard<'_, Graph> {
    graph.lock().expect("garbage collector graph lock")
}

/// Runs the garbage collector over `store`'s objects.
pub async fn run(client: Client, store: Store) {
    let graph: Shared = Arc::default();
    let (dirty, mut queue) = mpsc::unbounded_channel::<String>();
    let (synced, listed) = oneshot::channel();
    tokio::spawn(follow(store, graph.clone(), dirty.clone(), synced));
    if listed.await.is_err() {
        return;
    }
    let collector = Collector { client, graph };
    while let Some(first) = queue.recv().await {
        // Coalesce a burst of changes into one pass per uid.
        let mut batch = HashSet::from([first]);
        while let Ok(uid) = queue.try_recv() {
            batch.insert(uid);
        }
        for uid in batch {
            if let Err(error) = collector.process(&uid).await {
                warn!(%uid, %error, "garbage collection failed; retrying");
                let dirty = dirty.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = dirty.send(uid);
                });
            }
        }
    }
}

/// Keeps the graph in step with every stored kind; answers `synced` once all are first listed.
/// A watch that fails (fallen behind the retained history, say) starts over from lists.
async fn follow(
    store: Store,
    graph: Shared,
    dirty: mpsc::UnboundedSender<String>,
    synced: oneshot::Sender<()>,
) {
    let kinds: Vec<(String, &'static Resource)> = RESOURCES
        .iter()
        .filter(|r| registry::is_stored(r))
        .map(|r| (r.storage_name(), r))
        .collect();
    let mut synced = Some(synced);
    loop {
        let listed = || {
            if let Some(synced) = synced.take() {
                let _ = synced.send(());
            }
        };
        match follow_once(&store, &kinds, &graph, &dirty, listed).await {
            Ok(()) => return,
            Err(error) => debug!(%error, "garbage collector's watch interrupted; listing again"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lists every kind into the graph (then calls `listed`), then applies the store's events
/// until the store ends (Ok) or the watch fails.
async fn follow_once(
    store: &Store,
    kinds: &[(String, &'static Resource)],
    graph: &Shared,
    dirty: &mpsc::UnboundedSender<String>,
    listed: impl FnOnce(),
) -> Result<(), StoreError> {
    // Watch from before the lists, so that no change falls between a list and the watch; an
    // event a kind's list already reflects (at or below the revision it was read at) is skipped.
    let from = store.revision();
    let mut watch = store.watch(None, from).await?;
    // Each kind with the revision its list was read at.
    let mut listed_at: FxHashMap<&str, (&'static Resource, i64)> = FxHashMap::default();
    {
        let mut seen: FxHashSet<String> = FxHashSet::default();
        for (storage, r) in kinds {
            let page = store.list(storage, None, None, None).await?;
            listed_at.insert(storage.as_str(), (r, page.revision));
            for object in &page.items {
                if let Some(uid) = observe(graph, dirty, r, &object.value) {
                    seen.insert(uid);
                }
            }
        }
        // What the graph held but no list has was deleted while the watch was down.
        let gone: Vec<String> = lock(graph)
            .nodes
            .keys()
            .filter(|uid| !seen.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            forget(graph, dirty, &uid);
        }
    }
    listed();
    loop {
        // Read on while events are waiting; once none is, let the next ones gather.
        let next = match watch.next().now_or_never() {
            Some(next) => next,
            None => {
                tokio::time::sleep(GATHER).await;
                watch.next().await
            }
        };
        let Some(event) = next else { return Ok(()) };
        let event = event?;
        let Some(&(r, at)) = listed_at.get(event.key.resource.as_str()) else {
            continue;
        };
        if event.revision <= at {
            continue;
        }
        if event.event_type == EventType::Deleted {
            if let Some(uid) = event.object["metadata"]["uid"].as_str() {
                forget(graph, dirty, uid);
            }
        } else {
            observe(graph, dirty, r, &event.object);
        }
    }
}

/// Puts an object of kind `r` into the graph and marks what its change may concern: its owners,
/// old and new, and itself when it has owners or is being deleted. Returns its uid.
fn observe(
    graph: &Shared,
    dirty: &mpsc::UnboundedSender<String>,
    r: &'static Resource,
    object: &Value,
) -> Option<String> {
    let mut uid = None;
    let mut node = Node {
        resource: r,
        namespace: None,
        name: String::new(),
        owners: Vec::new(),
        deleting: false,
        finalizers: Vec::new(),
    };
    // One pass over the metadata's fields, rather than a hashed lookup for each one read.
    for (field, value) in object.get("metadata")?.as_object()? {
        match field.as_str() {
            "uid" => uid = value.as_str().map(str::to_string),
            "namespace" => node.namespace = value.as_str().map(str::to_string),
            "name" => node.name = value.as_str().unwrap_or_default().to_string(),
            "ownerReferences" => {
                node.owners = Vec::<OwnerReference>::deserialize(value).unwrap_or_default();
            }
            "deletionTimestamp" => node.deleting = !value.is_null(),
            "finalizers" => {
                node.finalizers = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
            }
            _ => {}
        }
    }
    let uid = uid?;
    let mut touched: Vec<String> = node.owners.iter().map(|o| o.uid.clone()).collect();
    {
        let mut g = lock(graph);
        if let Some(old) = g.nodes.get(&uid) {
            touched.extend(old.owners.iter().map(|o| o.uid.clone()));
        }
        if !node.owners.is_empty() || node.deleting {
            touched.push(uid.clone());
        }
        g.insert(uid.clone(), node);
    }
    for uid in touched {
        let _ = dirty.send(uid);
    }
    Some(uid)
}

/// Removes a deleted object: its dependents may be garbage now, and owners waiting in the
/// foreground may be free to go.
fn forget(graph: &Shared, dirty: &mpsc::UnboundedSender<String>, uid: &str) {
    let owners: Vec<String> = {
        let mut g = lock(graph);
        let owners = g
            .nodes
            .get(uid)
            .map(|n| n.owners.iter().map(|o| o.uid.clone()).collect())
            .unwrap_or_default();
        g.unlink(uid);
        owners
    };
    let _ = dirty.send(uid.to_string());
    for owner in owners {
        let _ = dirty.send(owner);
    }
}

struct Collector {
    client: Client,
    graph: Shared,
}

/// What a dependent's owner is to the collector.
enum OwnerState {
    Present,
    DeletingInForeground,
    Absent,
}

impl Collector {
    fn api(&self, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| r.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &api_resource(r)),
            None => Api::all_with(self.client.clone(), &api_resource(r)),
        }
    }

    async fn process(&self, uid: &str) -> Result<(), kube::Error> {
        let (node, dependents) = {
            let g = lock(&self.graph);
            (
                g.node(uid),
                g.dependents.get(uid).cloned().unwrap_or_default(),
            )
        };
        let Some(node) = node else {
            for dependent in dependents {
                self.attempt_to_delete(&dependent).await?;
            }
            return Ok(());
        };
        if !node.owners.is_empty() && !node.deleting {
            self.attempt_to_delete(uid).await?;
        }
        if !node.deleting {
            return Ok(());
        }
        if node.finalizers.iter().any(|f| f == ORPHAN) {
            for dependent in &dependents {
                self.remove_owner_reference(dependent, uid).await?;
            }
            self.remove_finalizer(&node, uid, ORPHAN).await?;
        } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
            // The owner goes once no dependent that blocks its deletion is left.
            let blocking = {
                let g = lock(&self.graph);
                dependents.iter().any(|d| {
                    g.nodes.get(d).is_some_and(|dep| {
                        dep.owners
                            .iter()
                            .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                    })
                })
            };
            if !blocking {
                self.remove_finalizer(&node, uid, FOREGROUND).await?;
            }
            for dependent in dependents {
                self.attempt_to_delete(&dependent).await?;
            }
        }
        Ok(())
    }

    async fn owner_state(
        &self,
        dependent: &Node,
        owner: &OwnerReference,
    ) -> Result<OwnerState, kube::Error> {
        if let Some(node) = lock(&self.graph).node(&owner.uid) {
            return Ok(
                if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
                    OwnerState::DeletingInForeground
                } else {
                    OwnerState::Present
                },
            );
        }
        let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
        let Some(r) = registry::find_group_kind(group, &owner.kind) else {
            // A kind this server does not serve cannot be looked up: never delete on a guess.
            warn!(owner = %owner.name, kind = %owner.kind, api_version = %owner.api_version,
                  "owner kind is not served; keeping its dependent");
            return Ok(OwnerState::Present);
        };
        if r.namespaced && dependent.namespace.is_none() {
            // Upstream does not collect a cluster-scoped object that names a namespaced owner.
            warn!(dependent = %dependent.name, owner = %owner.name,
                  "cluster-scoped object names a namespaced owner; keeping it");
            return Ok(OwnerState::Present);
        }
        // The graph is synced, but a just-created owner may not be in it yet: ask the API.
        match self
            .api(r, dependent.namespace.as_deref())
            .get_opt(&owner.name)
            .await?
        {
            Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                Ok(OwnerState::Present)
            }
            _ => Ok(OwnerState::Absent),
        }
    }

    /// Deletes `uid` when none of its owners remains; with a live owner, drops only the
    /// references to owners that are gone or going.
    async fn attempt_to_delete(&self, uid: &str) -> Result<(), kube::Error> {
        let node = lock(&self.graph).node(uid);
        let Some(node) = node.filter(|n| !n.deleting && !n.owners.is_empty()) else {
            return Ok(());
        };
        let (mut solid, mut waiting, mut gone) = (false, false, Vec::new());
        for owner in &node.owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Present => solid = true,
                OwnerState::DeletingInForeground => {
                    waiting = true;
                    gone.push(owner.uid.clone());
                }
                OwnerState::Absent => gone.push(owner.uid.clone()),
            }
        }
        if solid {
            if !gone.is_empty() {
                self.rewrite(&node, uid, |o| {
                    let refs = o.metadata.owner_references.get_or_insert_with(Vec::new);
                    let before = refs.len();
                    refs.retain(|r| !gone.contains(&r.uid));
                    refs.len() != before
                })
                .await?;
            }
            return Ok(());
        }
        let has_dependents = lock(&self.graph).dependents.contains_key(uid);
        let params = if waiting && has_dependents {
            DeleteParams::foreground()
        } else {
            DeleteParams::background()
        };
        self.delete(&node, uid, params).await
    }

    async fn delete(
        &self,
        node: &Node,
        uid: &str,
        mut params: DeleteParams,
    ) -> Result<(), kube::Error> {
        params.preconditions = Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        });
        debug!(resource = node.resource.plural, name = %node.name, "collecting");
        match self
            .api(node.resource, node.namespace.as_deref())
            .delete(&node.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Rewrites an object by `change` under optimistic concurrency.
    async fn rewrite(
        &self,
        node: &Node,
        uid: &str,
        change: impl Fn(&mut DynamicObject) -> bool,
    ) -> Result<(), kube::Error> {
        let api = self.api(node.resource, node.namespace.as_deref());
        for _ in 0..8 {
            let Some(mut object) = api.get_opt(&node.name).await? else {
                return Ok(());
            };
            if object.metadata.uid.as_deref() != Some(uid) || !change(&mut object) {
                return Ok(());
            }
            match api
                .replace(&node.name, &PostParams::default(), &object)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn remove_finalizer(
        &self,
        node: &Node,
        uid: &str,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        self.rewrite(node, uid, |o| {
            let finalizers = o.metadata.finalizers.get_or_insert_with(Vec::new);
            let before = finalizers.len();
            finalizers.retain(|f| f != finalizer);
            finalizers.len() != before
        })
        .await
    }

    async fn remove_owner_reference(
        &self,
        dependent: &str,
        owner: &str,
    ) -> Result<(), kube::Error> {
        let Some(node) = lock(&self.graph).node(dependent) else {
            return Ok(());
        };
        self.rewrite(&node, dependent, |o| {
            let refs = o.metadata.owner_references.get_or_insert_with(Vec::new);
            let before = refs.len();
            refs.retain(|r| r.uid != owner);
            refs.len() != before
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Key, SqliteBackend, Write};
    use serde_json::json;

    fn config_map(name: &str, uid: &str, owner: Option<&str>) -> Value {
        let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "uid": uid}});
        if let Some(owner) = owner {
            object["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1",
                "kind": "ConfigMap", "name": "owner", "uid": owner}]);
        }
        object
    }

    async fn create(store: &Store, value: Value) {
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        store
            .write(Write::Create {
                key: Key::new("configmaps", "default", &name),
                value,
            })
            .await
            .unwrap();
    }

    /// Waits (bounded) until the graph satisfies `done`.
    async fn until(graph: &Shared, done: impl Fn(&Graph) -> bool) {
        for _ in 0..1000 {
            if done(&lock(graph)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the graph never reached the expected state");
    }

    fn dependents_of(g: &Graph, uid: &str) -> Vec<String> {
        let mut d: Vec<String> = g
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        d.sort();
        d
    }

    #[tokio::test]
    async fn the_graph_follows_the_stores_lists_then_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("db.sqlite"), true)
            .await
            .unwrap();
        let store = Store::new(backend, 1000);
        create(&store, config_map("owner", "u-owner", None)).await;
        create(&store, config_map("first", "u-first", Some("u-owner"))).await;

        let graph: Shared = Arc::default();
        let (dirty, mut queue) = mpsc::unbounded_channel();
        let (synced, listed) = oneshot::channel();
        tokio::spawn(follow(store.clone(), graph.clone(), dirty, synced));
        listed.await.unwrap();
        {
            let g = lock(&graph);
            assert_eq!(g.nodes.len(), 2, "both listed objects are in the graph");
            assert_eq!(dependents_of(&g, "u-owner"), ["u-first"]);
            assert_eq!(g.nodes["u-first"].name, "first");
            assert_eq!(g.nodes["u-first"].namespace.as_deref(), Some("default"));
        }
        let mut marked = Vec::new();
        while let Ok(uid) = queue.try_recv() {
            marked.push(uid);
        }
        marked.sort();
        assert_eq!(
            marked,
            ["u-first", "u-owner"],
            "a dependent and its owner are marked"
        );

        create(&store, config_map("second", "u-second", Some("u-owner"))).await;
        until(&graph, |g| {
            dependents_of(g, "u-owner") == ["u-first", "u-second"]
        })
        .await;

        let key = Key::new("configmaps", "default", "first");
        let expected = store.get(&key).await.unwrap().unwrap().revision;
        store.write(Write::Delete { key, expected }).await.unwrap();
        until(&graph, |g| !g.nodes.contains_key("u-first")).await;
        assert_eq!(dependents_of(&lock(&graph), "u-owner"), ["u-second"]);
    }
}
