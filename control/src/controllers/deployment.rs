//! Rolls Deployments out through ReplicaSets, as kube-controller-manager's deployment
//! controller does. Each distinct pod template gets a ReplicaSet named after the template's hash
//! (`<deployment>-<hash>`, its pods labelled `pod-template-hash`); the newest carries the next
//! `deployment.kubernetes.io/revision`, which the Deployment mirrors. A rolling update scales the
//! new ReplicaSet up and the old ones down within `maxSurge` and `maxUnavailable`; `Recreate`
//! scales the old ones to zero first. A scale while a rollout is under way is shared among the
//! ReplicaSets in proportion. Old ReplicaSets beyond `revisionHistoryLimit` are deleted. Status
//! counts the pods, and the `Available` and `Progressing` conditions carry upstream's reasons,
//! `ProgressDeadlineExceeded` included. Events: `ScalingReplicaSet`.
//!
//! `kubectl rollout undo` and `restart` are client-side edits of the template, which this loop
//! then rolls out like any other.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::events::{Recorder, Type};
use super::pods::{self, PodCache};
use super::replica_set::error_message;

/// The events' source, as upstream names it.
const COMPONENT: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells one template's pods from another's.
pub const HASH_LABEL: &str = "pod-template-hash";
/// Annotations of a Deployment not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Upstream's cap on the revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// What reconciling a Deployment can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deployment {name}: {source}")]
    Api { name: String, source: kube::Error },
    #[error("deployment {name}: {message}")]
    Invalid { name: String, message: String },
}

impl Error {
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(e), .. } if e.code == 409)
    }
}

struct Context {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the deployment controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let controller = Controller::new(deployments, watcher::Config::default());
    let deployments = controller.store();
    let (sets, writer) = reflector::store::<ReplicaSet>();
    let set_changes = reflector(
        writer,
        watcher::watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let pods = cache.store();
    let context = Arc::new(Context {
        client: client.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
        recorder: Recorder::new(client, COMPONENT),
    });
    let (for_sets, for_pods, sets_for_pods) = (deployments.clone(), deployments, sets.clone());
    let controller = controller
        .watches_stream(set_changes, move |rs: ReplicaSet| {
            deployments_of_set(&rs, &for_sets)
        })
        .watches_stream(cache.subscribe(), move |pod| {
            // Only a Recreate rollout waits on pods themselves: for the old ones to be gone.
            let Some(owner) = pods::controller_of(&pod).filter(|o| o.kind == "ReplicaSet") else {
                return Vec::new();
            };
            let namespace = pod.namespace().unwrap_or_default();
            let rs = sets_for_pods.get(&ObjectRef::new(&owner.name).within(&namespace));
            rs.and_then(|rs| pods::controller_of(rs.as_ref()).cloned())
                .filter(|o| o.kind == "Deployment")
                .map(|o| ObjectRef::<Deployment>::new(&o.name).within(&namespace))
                .filter(|d| {
                    for_pods
                        .get(d)
                        .is_some_and(|d| strategy_type(&d) == "Recreate")
                })
                .into_iter()
                .collect::<Vec<_>>()
        });
    controller
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The Deployments a ReplicaSet event concerns: its controller, else those that could adopt it.
fn deployments_of_set(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = pods::controller_of(rs) {
        if owner.kind != "Deployment" {
            return Vec::new();
        }
        return vec![ObjectRef::new(&owner.name).within(&namespace)];
    }
    if rs.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| {
            d.spec.as_ref().is_some_and(|s| {
                !pods::selects_everything(&s.selector) && pods::selects(&s.selector, rs.labels())
            })
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `spec.replicas`, defaulted as the API defaults it.
fn want(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    rs.status.as_ref().and_then(f).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.available_replicas)
}

fn sum(sets: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    sets.iter().map(|rs| f(rs)).sum()
}

/// `maxSurge` and `maxUnavailable` as pod counts; never both zero (upstream's
/// `ResolveFenceposts`).
fn fenceposts(d: &Deployment) -> (i32, i32) {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let total = want(d);
    let default = IntOrString::String("25%".into());
    let resolve = |value: Option<&IntOrString>, round_up| {
        pods::scaled(value.unwrap_or(&default), total, round_up).unwrap_or(0)
    };
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), true);
    let unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn max_surge(d: &Deployment) -> i32 {
    if strategy_type(d) != "RollingUpdate" {
        return 0;
    }
    fenceposts(d).0
}

fn max_unavailable(d: &Deployment) -> i32 {
    if strategy_type(d) != "RollingUpdate" || want(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(want(d))
}

/// The pod-template hash: FNV-1a over the template, and the collision count when there is one,
/// spelled in upstream's safe alphabet.
pub fn template_hash(template: &PodTemplateSpec, collisions: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).expect("a pod template serializes"));
    if let Some(c) = collisions {
        feed(&(c as u32).to_le_bytes());
    }
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// Whether two templates are the same but for the hash label (upstream's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        let meta = t.metadata.get_or_insert_default();
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
        if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
            meta.annotations = None;
        }
        t
    };
    strip(a) == strip(b)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> (i64, i32, String) {
    let t = rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        t.map_or(0, |t| t.as_second()),
        t.map_or(0, |t| t.subsec_nanosecond()),
        rs.name_any(),
    )
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a).cmp(&created(b))
}

fn condition<'a>(status: &'a DeploymentStatus, kind: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == kind)
}

fn new_condition(kind: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Some(Time(Timestamp::now()));
    DeploymentCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: now.clone(),
        last_transition_time: now,
    }
}

/// Sets a condition as upstream's `SetDeploymentCondition` does: unchanged when status and
/// reason are the same, keeping the transition time when only the reason changes, and moved to
/// the end of the list.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = condition(status, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_);
    status.conditions.get_or_insert_default().push(c);
}

fn remove_condition(status: &mut DeploymentStatus, kind: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != kind);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Whether every replica is updated and available (upstream's `DeploymentComplete`).
fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let n = want(d);
    status.updated_replicas.unwrap_or(0) == n
        && status.replicas.unwrap_or(0) == n
        && status.available_replicas.unwrap_or(0) == n
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether the rollout moved since the status was last written (upstream's
/// `DeploymentProgressing`).
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Whether the rollout has not progressed within its deadline (upstream's
/// `DeploymentTimedOut`).
fn timed_out(d: &Deployment, status: &DeploymentStatus) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(status, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < Timestamp::now().as_second()),
    }
}

#[tracing::instrument(name = "deployment", skip_all, fields(deployment = %d.name_any()))]
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The caches must show the world before any decision is taken on them. The ReplicaSets'
    // cache is filled by this controller's own trigger stream, so it is awaited here, not
    // before the controller starts.
    let ready = futures::future::join(ctx.sets.wait_until_ready(), ctx.pods.wait_until_ready());
    if let (Err(_), _) | (_, Err(_)) = ready.await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // The Deployment is read afresh: its cache may lag the ReplicaSets' cache, and a rollout
    // step taken on an older template would scale the ReplicaSets it is leaving back up.
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    let d = match api.get(&d.name_any()).await {
        Ok(fresh) => fresh,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(source) => {
            return Err(Error::Api {
                name: d.name_any(),
                source,
            });
        }
    };
    let mut sync = Sync::new(&d, &ctx);
    sync.run().await
}

/// One pass over one Deployment, holding the Deployment as last written.
struct Sync<'a> {
    ctx: &'a Context,
    d: Deployment,
    name: String,
    sets_api: Api<ReplicaSet>,
    api: Api<Deployment>,
    /// When to look again without any event: a deadline or minReadySeconds running out.
    requeue: Option<Duration>,
}

impl<'a> Sync<'a> {
    fn new(d: &Deployment, ctx: &'a Context) -> Self {
        let namespace = d.namespace().unwrap_or_default();
        Sync {
            ctx,
            d: d.clone(),
            name: d.name_any(),
            sets_api: Api::namespaced(ctx.client.clone(), &namespace),
            api: Api::namespaced(ctx.client.clone(), &namespace),
            requeue: None,
        }
    }

    fn api_error(&self) -> impl Fn(kube::Error) -> Error + '_ {
        move |source| Error::Api {
            name: self.name.clone(),
            source,
        }
    }

    async fn run(&mut self) -> Result<Action, Error> {
        let Some(spec) = self.d.spec.clone() else {
            return Ok(Action::await_change());
        };
        if pods::selects_everything(&spec.selector) {
            self.ctx.recorder.publish(
                &self.d,
                Type::Warning,
                "SelectingAll",
                "Select",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let generation = self.d.metadata.generation;
            let mut status = self.d.status.clone().unwrap_or_default();
            if status.observed_generation != generation {
                status.observed_generation = generation;
                self.write_status(status).await?;
            }
            return Ok(Action::await_change());
        }
        let sets = self.claim_sets().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            self.sync_status_only(&sets).await?;
            return Ok(Action::await_change());
        }
        self.check_paused_conditions().await?;
        // Once only: it may write the ReplicaSets, which the cache then shows late.
        let (new, old) = self.new_and_old(&sets, false).await?;
        if spec.paused == Some(true) || self.is_scaling_event(new.as_ref(), &old) {
            self.sync_scale_only(new, old).await?;
        } else if strategy_type(&self.d) == "Recreate" {
            self.rollout_recreate(&sets, new, old).await?;
        } else {
            self.rollout_rolling(&sets, new, old).await?;
        }
        Ok(self
            .requeue
            .map_or_else(Action::await_change, Action::requeue))
    }

    /// The ReplicaSets this Deployment controls, once orphans it selects are adopted and ones it
    /// no longer selects released (upstream's `ClaimReplicaSets`).
    async fn claim_sets(&mut self) -> Result<Vec<ReplicaSet>, Error> {
        let namespace = self.d.namespace().unwrap_or_default();
        let uid = self.d.uid().unwrap_or_default();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let mut owned = Vec::new();
        for rs in self.ctx.sets.state() {
            if rs.namespace().as_deref() != Some(namespace.as_str()) {
                continue;
            }
            let matches = pods::selects(&selector, rs.labels());
            match pods::controller_of(rs.as_ref()) {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push((*rs).clone());
                    } else {
                        let patch = json!({"metadata": {
                            "ownerReferences": [{"$patch": "delete", "uid": uid}],
                            "uid": rs.uid(),
                        }});
                        self.patch_set(&rs, patch).await?;
                    }
                }
                None if matches
                    && self.d.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let fresh = self.api.get(&self.name).await.map_err(self.api_error())?;
                    if fresh.uid() != self.d.uid() || fresh.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [pods::controller_ref(&self.d)],
                        "uid": rs.uid(),
                    }});
                    if let Some(adopted) = self.patch_set(&rs, patch).await? {
                        owned.push(adopted);
                    }
                }
                _ => {}
            }
        }
        Ok(owned)
    }

    async fn patch_set(
        &self,
        rs: &ReplicaSet,
        patch: serde_json::Value,
    ) -> Result<Option<ReplicaSet>, Error> {
        pods::patch_ownership(&self.sets_api, rs, patch)
            .await
            .map_err(self.api_error())
    }

    /// Writes the Deployment's status (and the annotations, which upstream's status strategy
    /// lets through), keeping what the API answers as the Deployment from then on.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let mut d = self.d.clone();
        d.status = Some(status);
        d.metadata.managed_fields = None;
        self.d = self
            .api
            .replace_status(&self.name, &super::post_params(), &d)
            .await
            .map_err(self.api_error())?;
        Ok(())
    }

    /// Writes a ReplicaSet as changed, answering it as the API now holds it.
    async fn write_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, Error> {
        let mut rs = rs.clone();
        rs.metadata.managed_fields = None;
        self.sets_api
            .replace(&rs.name_any(), &super::post_params(), &rs)
            .await
            .map_err(self.api_error())
    }

    /// Pauses and resumes are reported in the Progressing condition (upstream's
    /// `checkPausedConditions`).
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        let reason = condition(&status, "Progressing").and_then(|c| c.reason.clone());
        if reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let paused_reported = reason.as_deref() == Some("DeploymentPaused");
        let c = if paused && !paused_reported {
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            )
        } else if !paused && paused_reported {
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, c);
        self.write_status(status).await
    }

    /// The new ReplicaSet (its template the Deployment's) and the old ones, with the revision
    /// annotations brought up to date; the new one is created when `create` is set and it does
    /// not exist (upstream's `getAllReplicaSetsAndSyncRevision`).
    async fn new_and_old(
        &mut self,
        sets: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut sorted: Vec<&ReplicaSet> = sets.iter().collect();
        sorted.sort_by(|a, b| by_creation(a, b));
        let existing = sorted
            .iter()
            .find(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &template))
            })
            .map(|rs| (*rs).clone());
        let old: Vec<ReplicaSet> = sets
            .iter()
            .filter(|rs| existing.as_ref().is_none_or(|n| n.uid() != rs.uid()))
            .cloned()
            .collect();
        let max_old_revision = old.iter().map(revision).max().unwrap_or(0);
        let new_revision = (max_old_revision + 1).to_string();
        if let Some(existing) = existing {
            let mut updated = existing.clone();
            let annotations_changed = self.set_new_annotations(&mut updated, &new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = updated.spec.get_or_insert_default();
            let min_ready_changed = spec.min_ready_seconds != min_ready;
            spec.min_ready_seconds = min_ready;
            let updated = if annotations_changed || min_ready_changed {
                self.write_set(&updated).await?
            } else {
                existing
            };
            let found = self.progress_deadline_unreported().then(|| {
                (
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{}\"", updated.name_any()),
                )
            });
            self.note_new_set(revision_text(&updated).to_owned(), found)
                .await?;
            return Ok((Some(updated), old));
        }
        if !create {
            return Ok((None, old));
        }
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&template, collisions);
        let mut new_template = template.clone();
        new_template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(new_template.clone()),
            }),
            ..ReplicaSet::default()
        };
        rs.metadata.name = Some(format!("{}-{hash}", self.name));
        rs.metadata.namespace = self.d.namespace();
        rs.metadata.owner_references = Some(vec![pods::controller_ref(&self.d)]);
        rs.metadata.labels = new_template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone());
        let new_replicas = self.new_rs_replicas(&old.iter().collect::<Vec<_>>(), &rs);
        rs.spec.get_or_insert_default().replicas = Some(new_replicas);
        self.set_new_annotations(&mut rs, &new_revision, false);
        let (created, already) = match self.sets_api.create(&super::post_params(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let found = self
                    .sets_api
                    .get(&rs.name_any())
                    .await
                    .map_err(self.api_error())?;
                let ours = pods::controller_of(&found)
                    .is_some_and(|o| Some(&o.uid) == self.d.uid().as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &template));
                if ours && same {
                    (found, true)
                } else {
                    // A hash collision: the next name comes from the next collision count.
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collisions.unwrap_or(0).wrapping_add(1));
                    self.write_status(status).await?;
                    return Err(Error::Invalid {
                        name: self.name.clone(),
                        message: format!("hash collision for replica set {}", rs.name_any()),
                    });
                }
            }
            Err(error) => {
                let message = format!(
                    "Failed to create new replica set \"{}\": {}",
                    rs.name_any(),
                    error_message(&error)
                );
                if progress_deadline(&self.d).is_some() {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut status,
                        new_condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            message.clone(),
                        ),
                    );
                    self.write_status(status).await?;
                }
                self.ctx.recorder.publish(
                    &self.d,
                    Type::Warning,
                    "FailedCreate",
                    "Create",
                    message,
                );
                return Err(self.api_error()(error));
            }
        };
        if !already && new_replicas > 0 {
            self.scaled_event("up", &created.name_any(), 0, new_replicas);
        }
        let made = (!already && progress_deadline(&self.d).is_some()).then(|| {
            (
                "NewReplicaSetCreated",
                format!("Created new replica set \"{}\"", created.name_any()),
            )
        });
        self.note_new_set(new_revision, made).await?;
        Ok((Some(created), old))
    }

    /// Whether the Deployment has a progress deadline and no Progressing condition yet.
    fn progress_deadline_unreported(&self) -> bool {
        progress_deadline(&self.d).is_some()
            && self
                .d
                .status
                .as_ref()
                .is_none_or(|s| condition(s, "Progressing").is_none())
    }

    /// Records the new ReplicaSet on the Deployment: its revision, and when given the reason and
    /// message of a Progressing=True condition.
    async fn note_new_set(
        &mut self,
        revision: String,
        progressing: Option<(&str, String)>,
    ) -> Result<(), Error> {
        let mut status = self.d.status.clone().unwrap_or_default();
        let mut write = self.set_revision(&revision);
        if let Some((reason, message)) = progressing {
            set_condition(
                &mut status,
                new_condition("Progressing", "True", reason, message),
            );
            write = true;
        }
        if write {
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// Sets the Deployment's revision annotation; whether it changed.
    fn set_revision(&mut self, revision: &str) -> bool {
        let annotations = self.d.metadata.annotations.get_or_insert_default();
        if annotations.get(REVISION).map(String::as_str) == Some(revision) {
            return false;
        }
        annotations.insert(REVISION.into(), revision.into());
        true
    }

    /// Brings the new ReplicaSet's annotations up to date: the Deployment's own, the revision
    /// (with the revisions it held before in `revision-history` when an old template comes
    /// back), and for a new one the replica counts (upstream's `SetNewReplicaSetAnnotations`).
    fn set_new_annotations(&self, rs: &mut ReplicaSet, new_revision: &str, exists: bool) -> bool {
        let mut changed = copy_annotations(&self.d, rs);
        let annotations = rs.metadata.annotations.get_or_insert_default();
        let old_revision = annotations.get(REVISION).cloned().unwrap_or_default();
        let old_number: i64 = if old_revision.is_empty() {
            0
        } else {
            match old_revision.parse() {
                Ok(n) => n,
                Err(_) => return false,
            }
        };
        let new_number: i64 = new_revision.parse().unwrap_or(0);
        if old_number < new_number {
            annotations.insert(REVISION.into(), new_revision.into());
            changed = true;
            if !old_revision.is_empty() {
                let history = annotations
                    .get(REVISION_HISTORY)
                    .cloned()
                    .unwrap_or_default();
                let mut old: Vec<&str> = history.split(',').collect();
                if old[0].is_empty() {
                    annotations.insert(REVISION_HISTORY.into(), old_revision.clone());
                } else {
                    let mut total = history.len() + old_revision.len() + 1;
                    let mut start = 0;
                    while total > MAX_REVISION_HISTORY_CHARS && start < old.len() {
                        total -= old[start].len() + 1;
                        start += 1;
                    }
                    if total <= MAX_REVISION_HISTORY_CHARS {
                        old = old.split_off(start);
                        old.push(&old_revision);
                        annotations.insert(REVISION_HISTORY.into(), old.join(","));
                    }
                }
            }
        }
        if !exists
            && set_replicas_annotations(rs, want(&self.d), want(&self.d) + max_surge(&self.d))
        {
            changed = true;
        }
        changed
    }

    /// How many replicas the new ReplicaSet may have now (upstream's `NewRSNewReplicas`).
    fn new_rs_replicas(&self, old: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
        let target = want(&self.d);
        if strategy_type(&self.d) != "RollingUpdate" {
            return target;
        }
        let current = sum(old, rs_replicas) + rs_replicas(new);
        let max_total = target + max_surge(&self.d);
        if current >= max_total {
            return rs_replicas(new);
        }
        let up = (max_total - current).min(target - rs_replicas(new));
        rs_replicas(new) + up
    }

    fn scaled_event(&self, direction: &str, rs: &str, from: i32, to: i32) {
        self.ctx.recorder.publish(
            &self.d,
            Type::Normal,
            "ScalingReplicaSet",
            "Scale",
            format!("Scaled {direction} replica set {rs} from {from} to {to}"),
        );
    }

    /// Sets a ReplicaSet's size and replica annotations (upstream's `scaleReplicaSet`).
    async fn scale_set(
        &self,
        rs: &ReplicaSet,
        to: i32,
        direction: &str,
    ) -> Result<ReplicaSet, Error> {
        let from = rs_replicas(rs);
        let mut updated = rs.clone();
        let annotations_changed = set_replicas_annotations(
            &mut updated,
            want(&self.d),
            want(&self.d) + max_surge(&self.d),
        );
        if from == to && !annotations_changed {
            return Ok(rs.clone());
        }
        updated.spec.get_or_insert_default().replicas = Some(to);
        let written = self.write_set(&updated).await?;
        if from != to {
            self.scaled_event(direction, &rs.name_any(), from, to);
        }
        Ok(written)
    }

    /// Scales `rs` to `to`, naming the direction from the sizes.
    async fn scale_set_and_record(
        &self,
        rs: &ReplicaSet,
        to: i32,
    ) -> Result<(bool, ReplicaSet), Error> {
        let from = rs_replicas(rs);
        if from == to {
            return Ok((false, rs.clone()));
        }
        let direction = if from < to { "up" } else { "down" };
        Ok((true, self.scale_set(rs, to, direction).await?))
    }

    /// Whether `spec.replicas` changed since the active ReplicaSets were last sized (upstream's
    /// `isScalingEvent`).
    fn is_scaling_event(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
        let target = want(&self.d).to_string();
        new.into_iter()
            .chain(old.iter())
            .filter(|rs| rs_replicas(rs) > 0)
            .any(|rs| {
                rs.annotations()
                    .get(DESIRED_REPLICAS)
                    .is_some_and(|d| *d != target)
            })
    }

    /// Scales without rolling out: for a paused Deployment or a change of `spec.replicas`
    /// (upstream's `sync`).
    async fn sync_scale_only(
        &mut self,
        new: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let (new, old) = self.scale(new, old).await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        if paused {
            self.cleanup(&old).await?;
        }
        self.sync_deployment_status(new.as_ref(), &old).await
    }

    /// Shares a change of `spec.replicas` among the ReplicaSets (upstream's `scale`).
    async fn scale(
        &mut self,
        mut new: Option<ReplicaSet>,
        mut old: Vec<ReplicaSet>,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let target = want(&self.d);
        let active: Vec<&ReplicaSet> = new
            .iter()
            .chain(old.iter())
            .filter(|rs| rs_replicas(rs) > 0)
            .collect();
        // One active ReplicaSet, or none and a latest one, simply takes the new size.
        let only = match active.as_slice() {
            [one] => Some((*one).clone()),
            [] => new
                .clone()
                .or_else(|| old.iter().max_by(|a, b| by_creation(a, b)).cloned()),
            _ => None,
        };
        if let Some(only) = only {
            if rs_replicas(&only) == target {
                return Ok((new, old));
            }
            let (_, scaled) = self.scale_set_and_record(&only, target).await?;
            return Ok(replace_in(new, old, scaled));
        }
        // A new ReplicaSet complete and available: the old ones go to zero.
        let saturated = new.as_ref().is_some_and(|n| {
            rs_replicas(n) == target
                && n.annotations().get(DESIRED_REPLICAS) == Some(&target.to_string())
                && available(n) == target
        });
        if saturated {
            for rs in old.iter_mut().filter(|rs| rs_replicas(rs) != 0) {
                let (_, scaled) = self.scale_set_and_record(rs, 0).await?;
                *rs = scaled;
            }
            return Ok((new, old));
        }
        if strategy_type(&self.d) != "RollingUpdate" {
            return Ok((new, old));
        }
        // Proportional scaling of every active ReplicaSet.
        let mut active: Vec<ReplicaSet> = active.into_iter().cloned().collect();
        let total: i32 = active.iter().map(rs_replicas).sum();
        let allowed = if target > 0 {
            target + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        let direction = match to_add.cmp(&0) {
            Ordering::Greater => {
                active.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then(by_creation(b, a)));
                "up"
            }
            Ordering::Less => {
                active.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then(by_creation(a, b)));
                "down"
            }
            Ordering::Equal => "",
        };
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        let mut added = 0;
        for rs in &active {
            if to_add == 0 {
                sizes.push(rs_replicas(rs));
                continue;
            }
            let proportion = self.proportion(rs, to_add, added);
            sizes.push(rs_replicas(rs) + proportion);
            added += proportion;
        }
        if to_add != 0 && added != to_add && !sizes.is_empty() {
            sizes[0] = (sizes[0] + to_add - added).max(0);
        }
        for (rs, size) in active.iter().zip(sizes) {
            let scaled = self.scale_set(rs, size.max(0), direction).await?;
            (new, old) = replace_in(new, old, scaled);
        }
        Ok((new, old))
    }

    /// A ReplicaSet's share of `to_add` (upstream's `GetProportion`).
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        let target = want(&self.d);
        if target == 0 {
            return -rs_replicas(rs);
        }
        let deployment_replicas = target + max_surge(&self.d);
        let annotated = rs
            .annotations()
            .get(MAX_REPLICAS)
            .and_then(|m| m.parse::<i32>().ok())
            .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            return 0;
        }
        let size =
            f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
        size.round() as i32 - rs_replicas(rs)
    }

    /// A rolling update step (upstream's `rolloutRolling`).
    async fn rollout_rolling(
        &mut self,
        sets: &[ReplicaSet],
        new: Option<ReplicaSet>,
        old: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let (new, old) = match new {
            Some(new) => (Some(new), old),
            None => self.new_and_old(sets, true).await?,
        };
        let Some(new) = new else {
            return Ok(());
        };
        // Scale up the new ReplicaSet as far as maxSurge allows.
        let target = want(&self.d);
        let new = if rs_replicas(&new) != target {
            let to = if rs_replicas(&new) > target {
                target
            } else {
                self.new_rs_replicas(&old.iter().collect::<Vec<_>>(), &new)
            };
            let (scaled, new) = self.scale_set_and_record(&new, to).await?;
            if scaled {
                return self.sync_rollout_status(Some(&new), &old).await;
            }
            new
        } else {
            new
        };
        // Scale down old ones as far as maxUnavailable allows.
        let (scaled, old) = self.reconcile_old(&new, old).await?;
        if scaled {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        let status = self.calculate_status(Some(&new), &old);
        if complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// Scales old ReplicaSets down (upstream's `reconcileOldReplicaSets`): first their
    /// unavailable pods, then available ones while enough stay available.
    async fn reconcile_old(
        &self,
        new: &ReplicaSet,
        mut old: Vec<ReplicaSet>,
    ) -> Result<(bool, Vec<ReplicaSet>), Error> {
        let old_count: i32 = old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok((false, old));
        }
        let all_count = old_count + rs_replicas(new);
        let min_available = want(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - available(new);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok((false, old));
        }
        old.sort_by(by_creation);
        // Unhealthy replicas first: they count against nothing.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let replicas = rs_replicas(rs);
            // A status behind the spec can show more available than wanted: nothing to clean.
            if replicas == 0 || replicas <= available(rs) {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - available(rs));
            let (_, scaled) = self.scale_set_and_record(rs, replicas - down).await?;
            *rs = scaled;
            cleaned += down;
        }
        // Then available ones, keeping minAvailable.
        let available_count: i32 = old.iter().map(available).sum::<i32>() + available(new);
        let mut scaled_down = 0;
        if available_count > min_available {
            let total = available_count - min_available;
            for rs in old.iter_mut() {
                if scaled_down >= total {
                    break;
                }
                let replicas = rs_replicas(rs);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(total - scaled_down);
                let (_, scaled) = self.scale_set_and_record(rs, replicas - down).await?;
                *rs = scaled;
                scaled_down += down;
            }
        }
        Ok((cleaned + scaled_down > 0, old))
    }

    /// A Recreate step (upstream's `rolloutRecreate`): old ReplicaSets to zero, wait for their
    /// pods to be gone, then the new one to full size.
    async fn rollout_recreate(
        &mut self,
        sets: &[ReplicaSet],
        new: Option<ReplicaSet>,
        mut old: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let mut scaled = false;
        for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            let (s, written) = self.scale_set_and_record(rs, 0).await?;
            *rs = written;
            scaled |= s;
        }
        if scaled {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        if self.old_pods_running(new.as_ref(), &old) {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let (new, old) = match new {
            Some(new) => (Some(new), old),
            None => self.new_and_old(sets, true).await?,
        };
        let new = match new {
            Some(n) => Some(self.scale_set_and_record(&n, want(&self.d)).await?.1),
            None => None,
        };
        let status = self.calculate_status(new.as_ref(), &old);
        if complete(&self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new.as_ref(), &old).await
    }

    /// Whether pods of old ReplicaSets still run (upstream's `oldPodsRunning`).
    fn old_pods_running(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> bool {
        if old
            .iter()
            .map(|rs| rs_status(rs, |s| Some(s.replicas)))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let namespace = self.d.namespace().unwrap_or_default();
        let new_uid = new.and_then(|n| n.uid());
        let old_uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
        self.ctx.pods.state().iter().any(|pod| {
            pod.namespace().as_deref() == Some(namespace.as_str())
                && pods::controller_of(pod.as_ref())
                    .is_some_and(|o| Some(&o.uid) != new_uid.as_ref() && old_uids.contains(&o.uid))
                && !matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
        })
    }

    /// Deletes the oldest ReplicaSets beyond `revisionHistoryLimit` that have scaled to zero
    /// (upstream's `cleanupDeployment`).
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let surplus = cleanable.len() as i64 - i64::from(limit);
        if surplus <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| revision(a).cmp(&revision(b)).then(by_creation(a, b)));
        for rs in cleanable.into_iter().take(surplus as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status(rs, |s| Some(s.replicas)) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            match self
                .sets_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(self.api_error()(source)),
            }
        }
        Ok(())
    }

    /// The status the ReplicaSets give (upstream's `calculateStatus`).
    fn calculate_status(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter()).collect();
        let available_count = sum(&all, available);
        let total = sum(&all, rs_replicas);
        let nonzero = |n: i32| (n != 0).then_some(n);
        let previous = self.d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nonzero(sum(&all, |rs| rs_status(rs, |s| Some(s.replicas)))),
            updated_replicas: nonzero(new.map_or(0, |n| rs_status(n, |s| Some(s.replicas)))),
            ready_replicas: nonzero(sum(&all, |rs| rs_status(rs, |s| s.ready_replicas))),
            available_replicas: nonzero(available_count),
            unavailable_replicas: nonzero((total - available_count).max(0)),
            collision_count: previous.collision_count,
            conditions: previous.conditions,
            terminating_replicas: None,
        };
        let (state, reason, message) =
            if available_count >= want(&self.d) - max_unavailable(&self.d) {
                (
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                (
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
        set_condition(
            &mut status,
            new_condition("Available", state, reason, message.into()),
        );
        status
    }

    /// Writes the status from the ReplicaSets alone (upstream's `syncDeploymentStatus`).
    async fn sync_deployment_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let status = self.calculate_status(new, old);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.write_status(status).await
    }

    async fn sync_status_only(&mut self, sets: &[ReplicaSet]) -> Result<(), Error> {
        let (new, old) = self.new_and_old(sets, false).await?;
        self.sync_deployment_status(new.as_ref(), &old).await
    }

    /// Writes the status with the Progressing and ReplicaFailure conditions (upstream's
    /// `syncRolloutStatus`), and plans a look when the progress deadline would pass.
    async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let mut status = self.calculate_status(new, old);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| condition(s, "Progressing"))
            .cloned();
        let done = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
        if deadline.is_some() && !done {
            let described = |suffix: &str| match new {
                Some(n) => format!("ReplicaSet \"{}\" {suffix}", n.name_any()),
                None => format!("Deployment \"{}\" {suffix}", self.name),
            };
            if complete(&self.d, &status) {
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        described("has successfully progressed."),
                    ),
                );
            } else if progressing(&self.d, &status) {
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    described("is progressing."),
                );
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, "Progressing");
                }
                set_condition(&mut status, c);
            } else if timed_out(&self.d, &status) {
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        described("has timed out progressing."),
                    ),
                );
            }
        }
        let failure = new.into_iter().chain(old.iter()).find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "ReplicaFailure")
                .cloned()
        });
        match failure {
            Some(c) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        if self.d.status.as_ref() != Some(&status) {
            self.write_status(status.clone()).await?;
        }
        self.plan_deadline_check(&status);
        Ok(())
    }

    /// Plans a look when the progress deadline passes, since nothing else would wake this
    /// Deployment then (upstream's `requeueStuckDeployment`); and, while pods wait out
    /// minReadySeconds, a look when they should be available.
    fn plan_deadline_check(&mut self, status: &DeploymentStatus) {
        let min_ready = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if min_ready > 0 && !complete(&self.d, status) {
            self.requeue = Some(Duration::from_secs(min_ready as u64));
        }
        let Some(deadline) = progress_deadline(&self.d) else {
            return;
        };
        let Some(c) = condition(status, "Progressing") else {
            return;
        };
        if complete(&self.d, status) || c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return;
        }
        let Some(updated) = c.last_update_time.as_ref() else {
            return;
        };
        let due = updated.0.as_second() + i64::from(deadline) + 1 - Timestamp::now().as_second();
        let after = Duration::from_secs(due.max(1) as u64);
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }
}

fn revision_text(rs: &ReplicaSet) -> &str {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .map_or("", String::as_str)
}

/// Puts a written ReplicaSet in place of the one it was.
fn replace_in(
    new: Option<ReplicaSet>,
    mut old: Vec<ReplicaSet>,
    written: ReplicaSet,
) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    if new.as_ref().is_some_and(|n| n.uid() == written.uid()) {
        return (Some(written), old);
    }
    if let Some(slot) = old.iter_mut().find(|rs| rs.uid() == written.uid()) {
        *slot = written;
    }
    (new, old)
}

/// Copies the Deployment's annotations to the ReplicaSet but for the controller's own
/// (upstream's `copyDeploymentAnnotationsToReplicaSet`); whether any changed.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_default();
    for (k, v) in d.annotations() {
        if NOT_COPIED.contains(&k.as_str()) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// Sets the desired- and max-replicas annotations; whether either changed.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations: &mut BTreeMap<String, String> =
        rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

fn error_policy(_d: Arc<Deployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "deployment reconcile failed");
    if error.is_conflict() {
        // The caches are behind this loop's own writes; the next event brings them up to date.
        return Action::requeue(Duration::from_millis(200));
    }
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "a"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "template": {"metadata": {"labels": {"app": "a"}}}}
        }))
        .unwrap()
    }

    #[test]
    fn surge_rounds_up_and_unavailability_down_as_upstream() {
        let d = deployment(10, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        let d = deployment(10, json!(2), json!(1));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (2, 1));
        // Both zero after scaling: one pod may be unavailable.
        let d = deployment(1, json!("0%"), json!("10%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1));
        let d = deployment(3, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 3);
    }

    #[test]
    fn template_hashes_ignore_their_own_label_and_differ_by_collision_count() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        let hash = template_hash(&template, None);
        assert!(!hash.is_empty() && hash.len() <= 10, "{hash}");
        assert!(
            hash.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        assert_eq!(hash, template_hash(&template, None));
        assert_ne!(hash, template_hash(&template, Some(1)));
        let mut labelled = template.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), hash);
        assert!(equal_ignore_hash(&template, &labelled));
        let mut other = template.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("j".into());
        assert!(!equal_ignore_hash(&template, &other));
    }

    #[test]
    fn conditions_keep_their_transition_time_when_only_the_reason_changes() {
        let mut status = DeploymentStatus::default();
        let mut first = new_condition("Progressing", "True", "NewReplicaSetCreated", "a".into());
        first.last_transition_time = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        set_condition(&mut status, first);
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "b".into(),
            ),
        );
        set_condition(
            &mut status,
            new_condition("Progressing", "True", "ReplicaSetUpdated", "c".into()),
        );
        let conditions = status.conditions.as_ref().unwrap();
        assert_eq!(conditions[1].type_, "Progressing", "moved to the end");
        assert_eq!(conditions[1].reason.as_deref(), Some("ReplicaSetUpdated"));
        assert_eq!(
            conditions[1].last_transition_time,
            Some(Time("2026-01-01T00:00:00Z".parse().unwrap()))
        );
    }
}
