//! Watches Namespaces; for one being deleted, deletes everything in it, then clears the
//! `kubernetes` finalizer so the API server removes the Namespace itself.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::api_resource;
use crate::registry::{self, RESOURCES};

/// What reconciling a Namespace can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deleting the contents of namespace {namespace}: {source}")]
    Contents {
        namespace: String,
        source: kube::Error,
    },
    #[error("finalizing namespace {namespace}: {source}")]
    Finalize {
        namespace: String,
        source: kube::Error,
    },
}

/// The namespace finalizer this controller owns.
const KUBERNETES: &str = "kubernetes";

struct Context {
    client: Client,
}

/// Runs the namespace controller.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| async {})
        .await;
}

#[tracing::instrument(name = "namespace", skip_all, fields(namespace = %ns.name_any()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ours = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == KUBERNETES));
    if ns.metadata.deletion_timestamp.is_none() || !ours {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let mut remaining = 0;
    for r in RESOURCES
        .iter()
        .filter(|r| r.namespaced && registry::is_stored(r))
    {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &name, &api_resource(r));
        let left = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|source| Error::Contents {
                namespace: name.clone(),
                source,
            })?
            .items;
        if left.is_empty() {
            continue;
        }
        remaining += left.len();
        for object in left
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
        {
            match api
                .delete(&object.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(Error::Contents {
                        namespace: name.clone(),
                        source,
                    });
                }
            }
        }
    }
    if remaining > 0 {
        // Objects held by finalizers go when their owners let them; look again shortly.
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let mut finalized = (*ns).clone();
    // Other finalizers belong to other controllers: only ours goes.
    if let Some(finalizers) = finalized.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        finalizers.retain(|f| f != KUBERNETES);
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let finalize = namespaces
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await;
    match finalize {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Ok(_) => {
            info!(namespace = %name, "namespace emptied and finalized");
            Ok(Action::await_change())
        }
        Err(source) => Err(Error::Finalize {
            namespace: name,
            source,
        }),
    }
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(%error, "namespace reconcile failed");
    Action::requeue(Duration::from_secs(1))
}
