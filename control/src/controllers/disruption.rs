//! Keeps each PodDisruptionBudget's status, as kube-controller-manager's disruption controller
//! does: the pods its selector selects, how many are healthy (Ready, not being deleted, not
//! just evicted), how many must be (`minAvailable`, or the expected pods less `maxUnavailable`;
//! percentages count the replicas the pods' controllers ask for), and so how many disruptions
//! are allowed now, which the eviction subresource spends. `disruptedPods` remembers evictions
//! until the pod is being deleted or two minutes pass.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::pods::{self, PodCache};

/// How long an eviction counts against the budget before its pod is seen going.
const DELETION_TIMEOUT: i64 = 120;

/// What reconciling a PodDisruptionBudget can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("poddisruptionbudget {name}: {source}")]
    Api { name: String, source: kube::Error },
}

struct Context {
    client: Client,
    pods: Store<Pod>,
}

/// Runs the disruption controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let budgets: Api<PodDisruptionBudget> = Api::all(client.clone());
    let controller = Controller::new(budgets, watcher::Config::default());
    let all = controller.store();
    let context = Arc::new(Context {
        client,
        pods: cache.store(),
    });
    controller
        .watches_stream(cache.subscribe(), move |pod| {
            let namespace = pod.namespace().unwrap_or_default();
            all.state()
                .iter()
                .filter(|b| b.namespace().as_deref() == Some(namespace.as_str()))
                .filter(|b| {
                    let selector = b.spec.as_ref().and_then(|s| s.selector.as_ref());
                    pods::budget_selects(selector, pod.labels())
                })
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The replicas the pods' controllers ask for, each controller once (upstream's
/// `getExpectedScale`): a Deployment through its ReplicaSets, ReplicaSets and StatefulSets
/// directly. A pod with no controller counts as one.
async fn expected_scale(
    client: &Client,
    namespace: &str,
    selected: &[Arc<Pod>],
) -> Result<i32, kube::Error> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for pod in selected {
        let Some(owner) = pods::controller_of(pod.as_ref()) else {
            total += 1;
            continue;
        };
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        match owner.kind.as_str() {
            "ReplicaSet" => {
                let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
                let Some(rs) = sets.get_opt(&owner.name).await? else {
                    continue;
                };
                match pods::controller_of(&rs).filter(|o| o.kind == "Deployment") {
                    Some(d) => {
                        if seen.insert(d.uid.clone()) {
                            let deployments: Api<Deployment> =
                                Api::namespaced(client.clone(), namespace);
                            if let Some(d) = deployments.get_opt(&d.name).await? {
                                total += d.spec.and_then(|s| s.replicas).unwrap_or(1);
                            }
                        }
                    }
                    None => total += rs.spec.and_then(|s| s.replicas).unwrap_or(1),
                }
            }
            "StatefulSet" => {
                let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
                if let Some(s) = sets.get_opt(&owner.name).await? {
                    total += s.spec.and_then(|s| s.replicas).unwrap_or(1);
                }
            }
            _ => total += 1,
        }
    }
    Ok(total)
}

#[tracing::instrument(name = "disruption", skip_all, fields(pdb = %pdb.name_any()))]
async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = pdb.name_any();
    let namespace = pdb.namespace().unwrap_or_default();
    let api_error = |source| Error::Api {
        name: name.clone(),
        source,
    };
    let Some(pdb) = super::fresh(&ctx.client, pdb.as_ref())
        .await
        .map_err(api_error)?
    else {
        return Ok(Action::await_change());
    };
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone();
    let selected: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| pods::budget_selects(selector.as_ref(), p.labels()))
        .collect();
    let (expected, desired) = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => (selected.len() as i32, *n),
        (Some(percent), _) => {
            let expected = expected_scale(&ctx.client, &namespace, &selected)
                .await
                .map_err(api_error)?;
            (expected, pods::scaled(percent, expected, true).unwrap_or(0))
        }
        (None, Some(max)) => {
            let expected = expected_scale(&ctx.client, &namespace, &selected)
                .await
                .map_err(api_error)?;
            (
                expected,
                (expected - pods::scaled(max, expected, true).unwrap_or(0)).max(0),
            )
        }
        (None, None) => (selected.len() as i32, 0),
    };
    // Evictions count until their pod is seen going, or for two minutes.
    let now = Timestamp::now();
    let previous = pdb.status.clone().unwrap_or_default();
    let mut disrupted: BTreeMap<String, Time> = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    for (pod_name, at) in previous.disrupted_pods.clone().unwrap_or_default() {
        let going = selected
            .iter()
            .find(|p| p.name_any() == pod_name)
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        let age = now.as_second() - at.0.as_second();
        if going || age >= DELETION_TIMEOUT {
            continue;
        }
        let left = Duration::from_secs((DELETION_TIMEOUT - age) as u64);
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
        disrupted.insert(pod_name, at);
    }
    let healthy = selected
        .iter()
        .filter(|p| {
            pods::is_ready(p)
                && p.metadata.deletion_timestamp.is_none()
                && !disrupted.contains_key(&p.name_any())
        })
        .count() as i32;
    let allowed = (healthy - desired).max(0);
    let generation = pdb.metadata.generation;
    let (state, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    match conditions
        .iter_mut()
        .find(|c| c.type_ == "DisruptionAllowed")
    {
        Some(c) if c.status == state && c.reason == reason => c.observed_generation = generation,
        Some(c) => {
            c.status = state.into();
            c.reason = reason.into();
            c.last_transition_time = Time(now);
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: state.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Time(now),
            observed_generation: generation,
        }),
    }
    let status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_pods: expected,
        observed_generation: generation,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        conditions: Some(conditions),
    };
    if pdb.status.as_ref() != Some(&status) {
        let mut written = pdb.clone();
        written.status = Some(status);
        super::write_status(&ctx.client, &written)
            .await
            .map_err(api_error)?;
    }
    Ok(recheck.map_or_else(Action::await_change, Action::requeue))
}

fn error_policy(_pdb: Arc<PodDisruptionBudget>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "disruption reconcile failed");
    Action::requeue(Duration::from_secs(1))
}
