//! Watches the metadata of every stored kind and follows ownerReferences: deletes dependents
//! whose owners are all gone (Background), deletes the dependents of an owner deleted with
//! `Foreground` before releasing its `foregroundDeletion` finalizer, and strips the owner's
//! reference from the dependents of an owner deleted with `Orphan` before releasing `orphan`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, PartialObjectMeta, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::api_resource;
use crate::registry::{self, RESOURCES, Resource};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

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
}

type Shared = Arc<Mutex<Graph>>;

/// Runs the garbage collector.
pub async fn run(client: Client) {
    let graph: Shared = Arc::default();
    let (dirty, mut queue) = mpsc::unbounded_channel::<String>();
    for r in RESOURCES.iter().filter(|r| registry::is_stored(r)) {
        tokio::spawn(follow(client.clone(), r, graph.clone(), dirty.clone()));
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

/// Keeps the graph in step with one resource's objects.
async fn follow(
    client: Client,
    r: &'static Resource,
    graph: Shared,
    dirty: mpsc::UnboundedSender<String>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &api_resource(r));
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
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
                    let mut g = graph.lock().expect("graph lock");
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
                let Some(uid) = object.metadata.uid.clone() else {
                    continue;
                };
                let owners: Vec<String> = {
                    let mut g = graph.lock().expect("graph lock");
                    let owners = g
                        .nodes
                        .get(&uid)
                        .map(|n| n.owners.iter().map(|o| o.uid.clone()).collect())
                        .unwrap_or_default();
                    g.unlink(&uid);
                    owners
                };
                // Its dependents may be garbage now; foreground owners may be free to go.
                let _ = dirty.send(uid);
                for owner in owners {
                    let _ = dirty.send(owner);
                }
            }
            Event::Init | Event::InitDone => {}
        }
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
            let g = self.graph.lock().expect("graph lock");
            (
                g.nodes.get(uid).cloned(),
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
            if dependents.is_empty() {
                self.remove_finalizer(&node, uid, FOREGROUND).await?;
            }
            for dependent in dependents {
                let dep = self
                    .graph
                    .lock()
                    .expect("graph lock")
                    .nodes
                    .get(&dependent)
                    .cloned();
                if let Some(dep) = dep.filter(|d| !d.deleting) {
                    self.delete(&dep, &dependent, DeleteParams::foreground())
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn owner_state(
        &self,
        dependent: &Node,
        owner: &OwnerReference,
    ) -> Result<OwnerState, kube::Error> {
        let known = self
            .graph
            .lock()
            .expect("graph lock")
            .nodes
            .get(&owner.uid)
            .cloned();
        if let Some(node) = known {
            return Ok(
                if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
                    OwnerState::DeletingInForeground
                } else {
                    OwnerState::Present
                },
            );
        }
        // The graph may not have caught up: ask the API before calling an owner gone.
        let Some(r) = registry::find_kind(&owner.api_version, &owner.kind) else {
            return Ok(OwnerState::Absent);
        };
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

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), kube::Error> {
        let node = self
            .graph
            .lock()
            .expect("graph lock")
            .nodes
            .get(uid)
            .cloned();
        let Some(node) = node.filter(|n| !n.deleting && !n.owners.is_empty()) else {
            return Ok(());
        };
        let mut foreground = false;
        for owner in &node.owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Present => return Ok(()),
                OwnerState::DeletingInForeground => foreground = true,
                OwnerState::Absent => {}
            }
        }
        let params = if foreground {
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
        let node = self
            .graph
            .lock()
            .expect("graph lock")
            .nodes
            .get(dependent)
            .cloned();
        let Some(node) = node else { return Ok(()) };
        self.rewrite(&node, dependent, |o| {
            let refs = o.metadata.owner_references.get_or_insert_with(Vec::new);
            let before = refs.len();
            refs.retain(|r| r.uid != owner);
            refs.len() != before
        })
        .await
    }
}
