//! Keeps each ReplicaSet's number of pods at `spec.replicas`, as kube-controller-manager's
//! replicaset controller does: it adopts orphan pods its selector selects and releases pods that
//! no longer match, creates missing pods from the template in slow-start batches (1, 2, 4, ...,
//! at most 500 per turn), deletes surplus pods least valuable first, and reports `replicas`,
//! `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas` and the `ReplicaFailure`
//! condition. Events: `SuccessfulCreate`, `SuccessfulDelete`, `FailedCreate`, `FailedDelete`.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::events::{Recorder, Type};
use super::pods::{self, Expectations, PodCache, PodMeta};

/// The events' source, as upstream names it.
const COMPONENT: &str = "replicaset-controller";
/// Upstream's burstReplicas: pods created or deleted in one turn at most.
const BURST: usize = 500;

/// What reconciling a ReplicaSet can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("claiming pods for replica set {name}: {source}")]
    Claim { name: String, source: kube::Error },
    #[error("writing the status of replica set {name}: {source}")]
    Status { name: String, source: kube::Error },
    #[error("replica set {name}: {message}")]
    Manage { name: String, message: String },
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// Runs the replicaset controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let pods = cache.store();
    let sets: Api<ReplicaSet> = Api::all(client.clone());
    let controller = Controller::new(sets, watcher::Config::default());
    let sets = controller.store();
    let expectations = Arc::new(Expectations::default());
    let context = Arc::new(Context {
        client: client.clone(),
        pods: pods.clone(),
        expectations: expectations.clone(),
        recorder: Recorder::new(client, COMPONENT),
    });
    if pods.wait_until_ready().await.is_err() {
        return;
    }
    controller
        .watches_stream(cache.subscribe(), move |pod| {
            owners_of(&pod, &sets, &expectations)
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The ReplicaSets a pod event concerns: its controller if that is a ReplicaSet, else every
/// ReplicaSet that could adopt it.
fn owners_of(
    pod: &PodMeta,
    sets: &Store<ReplicaSet>,
    expectations: &Expectations,
) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = pods::controller_of(pod) {
        if owner.kind != "ReplicaSet" || !owner.api_version.starts_with("apps/") {
            return Vec::new();
        }
        expectations.observed(&format!("{namespace}/{}", owner.name), &pod.name_any());
        return vec![ObjectRef::new(&owner.name).within(&namespace)];
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let labels = pod.labels();
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            rs.spec.as_ref().is_some_and(|s| {
                !pods::selects_everything(&s.selector) && pods::selects(&s.selector, labels)
            })
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

#[tracing::instrument(name = "replicaset", skip_all, fields(rs = %rs.name_any()))]
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = rs.name_any();
    let namespace = rs.namespace().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let satisfied = ctx.expectations.satisfied(&key, &namespace, &ctx.pods);
    let owned = claim_pods(&rs, &ctx).await?;
    let manage = if satisfied && rs.metadata.deletion_timestamp.is_none() {
        manage_replicas(&rs, &owned, &key, &ctx).await
    } else {
        Ok(())
    };
    let status = calculate_status(&rs, &owned, manage.as_ref().err());
    update_status(&rs, status.clone(), &ctx).await?;
    if let Err(message) = manage {
        return Err(Error::Manage { name, message });
    }
    if !satisfied {
        // The watch brings what is awaited; the look again is a safety net.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // A pod ready but not yet available becomes available without any event: look again then.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0
        && status.ready_replicas == Some(spec.replicas.unwrap_or(1))
        && status.available_replicas != status.ready_replicas
    {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

/// The active pods this ReplicaSet controls once orphans it selects are adopted and pods it no
/// longer selects are released (upstream's `ClaimPods`).
async fn claim_pods(rs: &ReplicaSet, ctx: &Context) -> Result<Vec<Arc<Pod>>, Error> {
    let namespace = rs.namespace().unwrap_or_default();
    let uid = rs.uid().unwrap_or_default();
    let Some(selector) = rs.spec.as_ref().map(|s| &s.selector) else {
        return Ok(Vec::new());
    };
    let mut owned = Vec::new();
    let mut adopt = Vec::new();
    let mut release = Vec::new();
    for pod in ctx.pods.state() {
        if pod.namespace().as_deref() != Some(namespace.as_str()) || !pods::is_active(&pod) {
            continue;
        }
        let matches = !pods::selects_everything(selector) && pods::selects(selector, pod.labels());
        match pods::controller_of(pod.as_ref()) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    owned.push(pod);
                } else {
                    release.push(pod);
                }
            }
            Some(_) => {}
            None if matches && rs.metadata.deletion_timestamp.is_none() => adopt.push(pod),
            None => {}
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let claim_error = |source| Error::Claim {
        name: rs.name_any(),
        source,
    };
    if !adopt.is_empty() {
        // Adopt only for the ReplicaSet as it is now, not one deleted and made again.
        let fresh = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &namespace)
            .get(&rs.name_any())
            .await
            .map_err(claim_error)?;
        if fresh.uid().as_deref() == Some(uid.as_str())
            && fresh.metadata.deletion_timestamp.is_none()
        {
            let reference = pods::controller_ref(rs);
            for pod in adopt {
                let patch = json!({"metadata": {"ownerReferences": [reference], "uid": pod.uid()}});
                if let Some(adopted) = pods::patch_ownership(&api, &pod, patch)
                    .await
                    .map_err(claim_error)?
                {
                    owned.push(Arc::new(adopted));
                }
            }
        }
    }
    for pod in release {
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": uid}],
            "uid": pod.uid(),
        }});
        pods::patch_ownership(&api, &pod, patch)
            .await
            .map_err(claim_error)?;
    }
    Ok(owned)
}

/// Creates or deletes pods until there are `spec.replicas`; the error is what to report.
async fn manage_replicas(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    key: &str,
    ctx: &Context,
) -> Result<(), String> {
    let want = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let namespace = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match owned.len().cmp(&want) {
        Ordering::Equal => Ok(()),
        Ordering::Less => {
            let missing = (want - owned.len()).min(BURST);
            let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
                return Ok(());
            };
            let pod = pods::pod_from_template(template, &rs.name_any(), pods::controller_ref(rs));
            // Slow start: a batch of 1, then 2, 4, ..., stopping at the first batch that fails,
            // so that a template the API refuses costs one request, not hundreds.
            let mut created = 0;
            let mut batch = 1;
            while created < missing {
                let size = batch.min(missing - created);
                let params = super::post_params();
                let results = join_all((0..size).map(|_| api.create(&params, &pod))).await;
                let mut names = Vec::new();
                let mut failure = None;
                for result in results {
                    match result {
                        Ok(made) => {
                            let made_name = made.name_any();
                            ctx.recorder.publish(
                                rs,
                                Type::Normal,
                                "SuccessfulCreate",
                                "Create",
                                format!("Created pod: {made_name}"),
                            );
                            names.push(made_name);
                        }
                        Err(error) => {
                            let message = error_message(&error);
                            ctx.recorder.publish(
                                rs,
                                Type::Warning,
                                "FailedCreate",
                                "Create",
                                format!("Error creating: {message}"),
                            );
                            failure = Some(message);
                        }
                    }
                }
                ctx.expectations.expect(key, names, Vec::new());
                if let Some(message) = failure {
                    return Err(message);
                }
                created += size;
                batch *= 2;
            }
            Ok(())
        }
        Ordering::Greater => {
            let surplus = (owned.len() - want).min(BURST);
            let mut ranked: Vec<&Arc<Pod>> = owned.iter().collect();
            let now = Timestamp::now();
            let on_node = |node: Option<&str>| {
                node.map_or(0, |n| {
                    owned
                        .iter()
                        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n))
                        .count()
                })
            };
            ranked.sort_by_cached_key(|p| deletion_rank(p, &on_node, now));
            let victims: Vec<String> = ranked[..surplus].iter().map(|p| p.name_any()).collect();
            ctx.expectations.expect(key, Vec::new(), victims.clone());
            let params = DeleteParams::default();
            let results = join_all(victims.iter().map(|name| api.delete(name, &params))).await;
            let mut failure = None;
            for (name, result) in victims.iter().zip(results) {
                match result {
                    Ok(_) => ctx.recorder.publish(
                        rs,
                        Type::Normal,
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted pod: {name}"),
                    ),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(error) => {
                        let message = error_message(&error);
                        ctx.recorder.publish(
                            rs,
                            Type::Warning,
                            "FailedDelete",
                            "Delete",
                            format!("Error deleting: {message}"),
                        );
                        failure = Some(message);
                    }
                }
            }
            failure.map_or(Ok(()), Err)
        }
    }
}

/// The order in which surplus pods go, first first (upstream's `ActivePodsWithRanks`): pods not
/// yet on a node, then pending before unknown before running, not ready before ready, lower
/// `controller.kubernetes.io/pod-deletion-cost`, more siblings on the same node, ready for less
/// time, more restarts, created later.
fn deletion_rank(
    pod: &Pod,
    on_node: &dyn Fn(Option<&str>) -> usize,
    now: Timestamp,
) -> (bool, u8, bool, i64, std::cmp::Reverse<usize>, i64, i64, i64) {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = pods::ready_since(pod);
    let cost = pod
        .annotations()
        .get("controller.kubernetes.io/pod-deletion-cost")
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(0);
    let ready_for = ready
        .flatten()
        .map_or(0, |t| now.as_second() - t.as_second());
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).max().unwrap_or(0));
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        node.is_some(),
        phase,
        ready.is_some(),
        i64::from(cost),
        std::cmp::Reverse(on_node(node)),
        ready_for,
        -i64::from(restarts),
        -created,
    )
}

/// The message of an API refusal, else the error as text.
pub fn error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// The status the ReplicaSet should show (upstream's `calculateStatus`).
fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<&String>,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let now = Timestamp::now();
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })
        .count() as i32;
    let ready = owned.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let available = owned
        .iter()
        .filter(|p| pods::is_available(p, min_ready, now))
        .count() as i32;
    let mut conditions: Vec<ReplicaSetCondition> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(message) if !has_failure => {
            let want = spec.and_then(|s| s.replicas).unwrap_or(1) as usize;
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(
                    if owned.len() < want {
                        "FailedCreate"
                    } else {
                        "FailedDelete"
                    }
                    .into(),
                ),
                message: Some(message.clone()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let nonzero = |n: i32| (n != 0).then_some(n);
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

/// Writes `status` unless the ReplicaSet shows it already; on a conflict, once more over the
/// ReplicaSet as it is now.
async fn update_status(
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if rs.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let name = rs.name_any();
    let mut updated = rs.clone();
    updated.status = Some(status.clone());
    for attempt in 0..2 {
        match api
            .replace_status(&name, &super::post_params(), &updated)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt == 0 => {
                match api.get(&name).await {
                    Ok(fresh) if fresh.uid() == rs.uid() => {
                        updated = fresh;
                        updated.status = Some(status.clone());
                    }
                    _ => return Ok(()),
                }
            }
            Err(source) => return Err(Error::Status { name, source }),
        }
    }
    Ok(())
}

fn error_policy(_rs: Arc<ReplicaSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "replicaset reconcile failed");
    match error {
        Error::Status {
            source: kube::Error::Api(e),
            ..
        } if e.code == 409 => Action::requeue(Duration::from_millis(100)),
        _ => Action::requeue(Duration::from_secs(1)),
    }
}
