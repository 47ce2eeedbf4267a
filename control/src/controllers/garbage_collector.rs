//! Watches the metadata of every stored kind and follows ownerReferences: deletes dependents
//! whose owners are all gone (Background), deletes the dependents of an owner deleted with
//! `Foreground` before releasing its `foregroundDeletion` finalizer, and strips the owner's
//! reference from the dependents of an owner deleted with `Orphan` before releasing `orphan`.
//! It decides nothing until every kind has been listed once: a partial graph would make owners
//! look absent.
//!
//! It watches whole objects, not `PartialObjectMetadata`: a JSON watch passes on the text the
//! store holds, where a metadata watch re-encodes each object, and [`Owned`] decodes only the
//! metadata the collector reads, skipping the rest (spec, status, managedFields) unallocated.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams, Preconditions};
use kube::core::{ApiResource, DynamicResourceScope};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use super::api_resource;
use crate::registry::{self, RESOURCES, Resource};

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
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
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

/// An object as the collector reads it: the metadata ownership turns on, nothing else.
#[derive(Debug, Clone, Deserialize)]
struct Owned {
    #[serde(deserialize_with = "ownership_metadata")]
    metadata: ObjectMeta,
}

/// The metadata fields [`Owned`] keeps; serde skips the others without building them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnershipMetadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    finalizers: Option<Vec<String>>,
    deletion_timestamp: Option<Time>,
}

fn ownership_metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = OwnershipMetadata::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        owner_references: m.owner_references,
        finalizers: m.finalizers,
        deletion_timestamp: m.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

impl kube::Resource for Owned {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn lock(graph: &Shared) -> std::sync::MutexGuard<'_, Graph> {
    graph.lock().expect("garbage collector graph lock")
}

/// Runs the garbage collector.
pub async fn run(client: Client) {
    let graph: Shared = Arc::default();
    let (dirty, mut queue) = mpsc::unbounded_channel::<String>();
    let resources: Vec<&'static Resource> = RESOURCES
        .iter()
        .filter(|r| registry::is_stored(r))
        .collect();
    let synced = Arc::new(Semaphore::new(0));
    for r in &resources {
        tokio::spawn(follow(
            client.clone(),
            r,
            graph.clone(),
            dirty.clone(),
            synced.clone(),
        ));
    }
    let all = u32::try_from(resources.len()).unwrap_or(u32::MAX);
    if let Ok(permits) = synced.acquire_many(all).await {
        permits.forget();
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

/// Keeps the graph in step with one resource's objects; adds a permit to `synced` once listed.
async fn follow(
    client: Client,
    r: &'static Resource,
    graph: Shared,
    dirty: mpsc::UnboundedSender<String>,
    synced: Arc<Semaphore>,
) {
    let api: Api<Owned> = Api::all_with(client, &api_resource(r));
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Uids seen during a (re)list: what the graph held but the list lacks was deleted meanwhile.
    let mut listing: Option<HashSet<String>> = None;
    let mut first_sync = true;
    loop {
        // Read on while events are waiting; once none is, let the next ones gather.
        let next = match events.next().now_or_never() {
            Some(next) => next,
            None => {
                tokio::time::sleep(GATHER).await;
                events.next().await
            }
        };
        let Some(event) = next else { break };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                debug!(resource = r.plural, %error, "metadata watch interrupted");
                continue;
            }
        };
        match event {
            Event::Apply(object) | Event::InitApply(object) => {
                let Some(uid) = object.metadata.uid.clone() else {
                    continue;
                };
                if let Some(seen) = listing.as_mut() {
                    seen.insert(uid.clone());
                }
                let node = Node {
                    resource: r,
                    namespace: object.metadata.namespace.clone(),
                    name: object.name_any(),
                    owners: object.metadata.owner_references.clone().unwrap_or_default(),
                    deleting: object.metadata.deletion_timestamp.is_some(),
                    finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
                };
                let mut touched: Vec<String> = node.owners.iter().map(|o| o.uid.clone()).collect();
                {
                    let mut g = lock(&graph);
                    if let Some(old) = g.nodes.get(&uid) {
                        touched.extend(old.owners.iter().map(|o| o.uid.clone()));
                    }
                    if !node.owners.is_empty() || node.deleting {
                        touched.push(uid.clone());
                    }
                    g.insert(uid, node);
                }
                for uid in touched {
                    let _ = dirty.send(uid);
                }
            }
            Event::Delete(object) => {
                if let Some(uid) = object.metadata.uid.clone() {
                    forget(&graph, &dirty, &uid);
                }
            }
            Event::Init => listing = Some(HashSet::new()),
            Event::InitDone => {
                let seen = listing.take().unwrap_or_default();
                let gone: Vec<String> = lock(&graph)
                    .nodes
                    .iter()
                    .filter(|(uid, n)| std::ptr::eq(n.resource, r) && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in gone {
                    forget(&graph, &dirty, &uid);
                }
                if first_sync {
                    first_sync = false;
                    synced.add_permits(1);
                }
            }
        }
    }
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
