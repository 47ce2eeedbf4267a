//! Runs StatefulSets, as kube-controller-manager's statefulset controller does. Pod `i` is
//! `<set>-<i>` (from `ordinals.start`), with hostname its name and subdomain `serviceName`, the
//! labels `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, and for each
//! `volumeClaimTemplates` entry the claim `<template>-<set>-<i>`, made before the pod and kept
//! after it (the default Retain policy), so a pod made again finds its data. `OrderedReady`
//! makes pods one at a time in order, each once the ones before are Running and Ready, and
//! removes them from the highest down; `Parallel` does both at once. Templates are kept as
//! ControllerRevisions (`<set>-<hash>`, which `kubectl rollout history` and `undo` read); a
//! RollingUpdate replaces pods from the highest ordinal down to `partition`, one at a time,
//! while `OnDelete` waits for pods to be deleted by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::events::{Recorder, Type};
use super::pods::{self, PodCache};
use super::replica_set::error_message;
use super::revisions;

/// The events' source, as upstream names it.
const COMPONENT: &str = "statefulset-controller";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const REVISION_LABEL: &str = "controller-revision-hash";

/// What reconciling a StatefulSet can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("statefulset {name}: {source}")]
    Api { name: String, source: kube::Error },
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the statefulset controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let sets: Api<StatefulSet> = Api::all(client.clone());
    let context = Arc::new(Context {
        client: client.clone(),
        pods: cache.store(),
        recorder: Recorder::new(client, COMPONENT),
    });
    Controller::new(sets, watcher::Config::default())
        .watches_stream(cache.subscribe(), |pod| {
            let owner = pods::controller_of(&pod).filter(|o| o.kind == "StatefulSet")?;
            Some(ObjectRef::<StatefulSet>::new(&owner.name).within(&pod.namespace()?))
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pods::is_ready(pod)
}

fn revision_of(pod: &Pod) -> Option<&String> {
    pod.labels().get(REVISION_LABEL)
}

#[tracing::instrument(name = "statefulset", skip_all, fields(statefulset = %set.name_any()))]
async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let api_error = |source| Error::Api {
        name: name.clone(),
        source,
    };
    let Some(set) = super::fresh(&ctx.client, set.as_ref())
        .await
        .map_err(api_error)?
    else {
        return Ok(Action::await_change());
    };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = set.spec.clone().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let template = spec.template.clone();
    let current = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let collisions = set.status.as_ref().and_then(|s| s.collision_count);
    let (current_revision, update_revision) = revisions::sync(
        &ctx.client,
        &set,
        &template,
        collisions,
        current.as_deref(),
        spec.revision_history_limit,
    )
    .await
    .map_err(api_error)?;

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = pods::owned_by(&ctx.pods, &namespace, &uid);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let wanted = start..start + replicas;
    let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for pod in owned {
        match ordinal_of(&name, &pod.name_any()) {
            Some(i) if wanted.contains(&i) => {
                by_ordinal.insert(i, pod);
            }
            _ => condemned.push(pod),
        }
    }
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);

    // Failed pods are deleted to be made again; missing ones are made, in order.
    let mut busy = false;
    for i in wanted.clone() {
        let pod = by_ordinal.get(&i).cloned();
        match pod {
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                busy = true;
                if ordered {
                    break;
                }
            }
            Some(pod)
                if matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                ) =>
            {
                delete_pod(&set, &pods_api, &pod.name_any(), &ctx)
                    .await
                    .map_err(api_error)?;
                busy = true;
                if ordered {
                    break;
                }
            }
            Some(pod) => {
                if ordered && !is_running_and_ready(&pod) {
                    busy = true;
                    break;
                }
            }
            None => {
                // Pods below the partition keep the current revision; the rest get the update.
                let revision = if rolling && i < start + partition {
                    &current_revision
                } else {
                    &update_revision
                };
                let template = revision_template(&set, revision, &update_revision, &ctx)
                    .await
                    .map_err(api_error)?;
                create_pod(&set, i, revision, &template, &ctx)
                    .await
                    .map_err(api_error)?;
                busy = true;
                if ordered {
                    break;
                }
            }
        }
    }
    // Surplus pods go from the highest ordinal down.
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(&name, &p.name_any())));
    if !(ordered && busy) {
        for pod in &condemned {
            if pod.metadata.deletion_timestamp.is_some() {
                if ordered {
                    break;
                }
                continue;
            }
            delete_pod(&set, &pods_api, &pod.name_any(), &ctx)
                .await
                .map_err(api_error)?;
            if ordered {
                break;
            }
        }
    }
    // A rolling update: the highest pod not at the update revision, when all are healthy.
    let healthy = by_ordinal.len() as i32 == replicas
        && condemned.is_empty()
        && by_ordinal
            .values()
            .all(|p| is_running_and_ready(p) && p.metadata.deletion_timestamp.is_none());
    if rolling
        && healthy
        && let Some(stale) = by_ordinal
            .range(start + partition..)
            .rev()
            .find(|(_, p)| revision_of(p) != Some(&update_revision))
    {
        delete_pod(&set, &pods_api, &stale.1.name_any(), &ctx)
            .await
            .map_err(api_error)?;
    }

    // Status.
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let present: Vec<&Arc<Pod>> = by_ordinal
        .values()
        .chain(condemned.iter())
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| present.iter().filter(|p| f(p)).count() as i32;
    let updated = count(&|p| revision_of(p) == Some(&update_revision));
    let current = count(&|p| revision_of(p) == Some(&current_revision));
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: present.len() as i32,
        ready_replicas: Some(count(&|p| pods::is_ready(p))),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision.clone()),
        update_revision: Some(update_revision.clone()),
        collision_count: Some(
            set.status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0),
        ),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    // Once every pod runs the update, it is the current revision.
    if updated == replicas
        && status.ready_replicas == Some(replicas)
        && present.len() as i32 == replicas
    {
        status.current_revision = Some(update_revision.clone());
        status.current_replicas = Some(updated);
    }
    if set.status.as_ref() != Some(&status) {
        let mut written = set.clone();
        written.status = Some(status.clone());
        super::write_status(&ctx.client, &written)
            .await
            .map_err(api_error)?;
    }
    if min_ready > 0 && status.available_replicas != status.ready_replicas {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

/// The template a revision holds: the set's own for the update revision.
async fn revision_template(
    set: &StatefulSet,
    revision: &str,
    update: &str,
    ctx: &Context,
) -> Result<PodTemplateSpec, kube::Error> {
    let own = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    if revision == update {
        return Ok(own);
    }
    let namespace = set.namespace().unwrap_or_default();
    Ok(revisions::template_of(&ctx.client, &namespace, revision)
        .await?
        .unwrap_or(own))
}

/// Makes pod `ordinal` of the set at `revision`, its claims first.
async fn create_pod(
    set: &StatefulSet,
    ordinal: i32,
    revision: &str,
    template: &PodTemplateSpec,
    ctx: &Context,
) -> Result<(), kube::Error> {
    let namespace = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let pod_name = format!("{set_name}-{ordinal}");
    let spec = set.spec.clone().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut pod = pods::pod_from_template(template, &set_name, pods::controller_ref(set));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let pod_spec = pod.spec.get_or_insert_default();
    pod_spec.hostname = Some(pod_name.clone());
    if let Some(service) = spec.service_name.filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(service);
    }
    for claim_template in spec.volume_claim_templates.iter().flatten() {
        let template_name = claim_template.name_any();
        let claim_name = format!("{template_name}-{pod_name}");
        if claims.get_opt(&claim_name).await?.is_none() {
            let mut claim = PersistentVolumeClaim {
                spec: claim_template.spec.clone(),
                ..PersistentVolumeClaim::default()
            };
            claim.metadata.name = Some(claim_name.clone());
            claim.metadata.namespace = Some(namespace.clone());
            claim.metadata.annotations = claim_template.metadata.annotations.clone();
            let mut claim_labels = claim_template.metadata.labels.clone().unwrap_or_default();
            claim_labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            claim.metadata.labels = Some(claim_labels);
            let made = claims.create(&super::post_params(), &claim).await;
            report_create(
                set,
                made,
                format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"
                ),
                format!(
                    "create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed"
                ),
                ctx,
            )?;
        }
        let volumes = pod_spec.volumes.get_or_insert_default();
        volumes.retain(|v| v.name != template_name);
        volumes.push(Volume {
            name: template_name,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let made = pods_api.create(&super::post_params(), &pod).await;
    report_create(
        set,
        made,
        format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
        format!("create Pod {pod_name} in StatefulSet {set_name} failed"),
        ctx,
    )
}

/// Records the outcome of a create as upstream words it; one that exists already is no error.
fn report_create<T>(
    set: &StatefulSet,
    made: Result<T, kube::Error>,
    success: String,
    failure: String,
    ctx: &Context,
) -> Result<(), kube::Error> {
    match made {
        Ok(_) => {
            ctx.recorder
                .publish(set, Type::Normal, "SuccessfulCreate", "Create", success);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(error) => {
            let message = format!("{failure} error: {}", error_message(&error));
            ctx.recorder
                .publish(set, Type::Warning, "FailedCreate", "Create", message);
            Err(error)
        }
    }
}

async fn delete_pod(
    set: &StatefulSet,
    api: &Api<Pod>,
    name: &str,
    ctx: &Context,
) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.recorder.publish(
                set,
                Type::Normal,
                "SuccessfulDelete",
                "Delete",
                format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    set.name_any()
                ),
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

fn error_policy(_set: Arc<StatefulSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "statefulset reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_read_from_pod_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-a"), None);
    }
}
