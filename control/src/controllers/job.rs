//! Runs Jobs to completion, as kube-controller-manager's job controller does. Pods are made from
//! the template with the `batch.kubernetes.io/job-tracking` finalizer, so that each finished pod
//! is counted exactly once: it is first listed in `status.uncountedTerminatedPods`, then its
//! finalizer goes, then it moves into `succeeded` or `failed`. Up to `parallelism` pods run at
//! once, never more than the completions still missing; Indexed Jobs give each pod its index
//! (annotation, label, `JOB_COMPLETION_INDEX`, hostname). A failed pod is replaced after a
//! back-off (10 s doubling to 6 min) until `backoffLimit` failures; `activeDeadlineSeconds`
//! bounds the whole run; `podFailurePolicy` rules can fail the Job at once, ignore a failure or
//! count it. The Job first gets `SuccessCriteriaMet` or `FailureTarget`, its remaining pods are
//! stopped, then `Complete` or `Failed`, with upstream's reasons and messages. `suspend` stops
//! the pods and resumes later. A finished Job with `ttlSecondsAfterFinished` is deleted once
//! that has passed, as the ttl-after-finished controller does.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::events::{Recorder, Type};
use super::pods::{self, Expectations, PodCache};
use super::replica_set::error_message;

/// The events' source, as upstream names it.
const COMPONENT: &str = "job-controller";
/// Held by every pod of a Job until the pod is counted in the Job's status.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// An Indexed Job's pod's index, as annotation and label.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);
/// Upstream's MaxPodCreateDeletePerSync.
const BURST: usize = 500;

/// What reconciling a Job can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {name}: {source}")]
    Api { name: String, source: kube::Error },
    #[error("job {name}: {message}")]
    Pods { name: String, message: String },
}

/// Failures since the last success, and when the last one was seen (upstream's backoff record).
#[derive(Clone, Copy, Default)]
struct Backoff {
    failures: u32,
    last: Option<Timestamp>,
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// Pods whose tracking finalizer this controller took off, by uid, with when: the pod
    /// cache can still show the finalizer, and such a pod must not be counted again
    /// (upstream's finalizer expectations).
    released: Mutex<HashMap<String, std::time::Instant>>,
    recorder: Recorder,
}

/// Runs the job controller over the shared pod cache.
pub async fn run(client: Client, cache: Arc<PodCache>) {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods = cache.store();
    let expectations = Arc::new(Expectations::default());
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        expectations: expectations.clone(),
        backoff: Mutex::new(HashMap::new()),
        released: Mutex::new(HashMap::new()),
        recorder: Recorder::new(client, COMPONENT),
    });
    Controller::new(jobs, watcher::Config::default())
        .watches_stream(cache.subscribe(), move |pod| {
            let owner = pods::controller_of(&pod).filter(|o| o.kind == "Job")?;
            let namespace = pod.namespace().unwrap_or_default();
            expectations.observed(&format!("{namespace}/{}", owner.name), &pod.name_any());
            Some(ObjectRef::<Job>::new(&owner.name).within(&namespace))
        })
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

fn condition<'a>(status: &'a JobStatus, kind: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind && c.status == "True")
}

fn new_condition(kind: &str, reason: &str, message: &str) -> JobCondition {
    let now = Some(Time(Timestamp::now()));
    JobCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: now.clone(),
        last_transition_time: now,
    }
}

/// Sets a condition, keeping its transition time when only reason or message change.
fn set_condition(
    status: &mut JobStatus,
    kind: &str,
    state: &str,
    reason: &str,
    message: &str,
) -> bool {
    let conditions = status.conditions.get_or_insert_default();
    let now = Some(Time(Timestamp::now()));
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(c) if c.status == state && c.reason.as_deref() == Some(reason) => false,
        Some(c) => {
            if c.status != state {
                c.last_transition_time = now.clone();
            }
            c.status = state.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = now;
            true
        }
        None => {
            let mut c = new_condition(kind, reason, message);
            c.status = state.into();
            conditions.push(c);
            true
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// An Indexed Job's pod's index.
fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX_KEY)?.parse().ok()
}

/// Whether a pod counts as failed (upstream's `isPodFailed`): Failed, or being deleted before
/// it succeeded unless only failed pods are replaced.
fn is_failed(pod: &Pod, only_failed: bool) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !only_failed && pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// Indexes as upstream writes them in `completedIndexes`: `0-2,5`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parses `completedIndexes`.
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(n) = part.parse() {
                    set.insert(n);
                }
            }
        }
    }
    set
}

/// What a podFailurePolicy decides about a failed pod.
#[derive(Debug, PartialEq)]
enum Verdict {
    FailJob(String),
    Ignore,
    Count,
}

/// The first podFailurePolicy rule matching a failed pod (upstream's `matchPodFailurePolicy`).
fn failure_verdict(job: &Job, pod: &Pod) -> Verdict {
    let Some(policy) = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    else {
        return Verdict::Count;
    };
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let status = pod.status.as_ref();
    for (index, rule) in policy.rules.iter().enumerate() {
        let mut matched: Option<String> = None;
        if let Some(codes) = &rule.on_exit_codes {
            let containers = status
                .and_then(|s| s.init_container_statuses.as_ref())
                .into_iter()
                .flatten()
                .chain(
                    status
                        .and_then(|s| s.container_statuses.as_ref())
                        .into_iter()
                        .flatten(),
                );
            for c in containers {
                if codes.container_name.as_ref().is_some_and(|n| *n != c.name) {
                    continue;
                }
                let Some(code) = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                if code == 0 {
                    continue;
                }
                let hit = match codes.operator.as_str() {
                    "In" => codes.values.contains(&code),
                    "NotIn" => !codes.values.contains(&code),
                    _ => false,
                };
                if hit {
                    matched = Some(format!(
                        "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                        c.name, rule.action
                    ));
                    break;
                }
            }
        }
        if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.and_then(|s| s.conditions.as_ref());
            for p in patterns {
                if conditions
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == p.type_ && c.status == p.status)
                {
                    matched = Some(format!(
                        "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                        p.type_, rule.action
                    ));
                    break;
                }
            }
        }
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(message),
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

#[tracing::instrument(name = "job", skip_all, fields(job = %job.name_any()))]
async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ctx.pods.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // Read afresh: a status behind the pods would count a finished pod twice.
    let job = match api.get(&name).await {
        Ok(job) => job,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Api { name, source }),
    };
    let mut sync = Sync {
        ctx: &ctx,
        key: format!("{namespace}/{name}"),
        api,
        pods_api: Api::namespaced(ctx.client.clone(), &namespace),
        name,
        job,
        requeue: None,
    };
    sync.run().await
}

/// One pass over one Job, holding the Job as last written.
struct Sync<'a> {
    ctx: &'a Context,
    key: String,
    name: String,
    api: Api<Job>,
    pods_api: Api<Pod>,
    job: Job,
    requeue: Option<Duration>,
}

impl Sync<'_> {
    fn api_error(&self, source: kube::Error) -> Error {
        Error::Api {
            name: self.name.clone(),
            source,
        }
    }

    fn status(&self) -> JobStatus {
        self.job.status.clone().unwrap_or_default()
    }

    fn finished(&self) -> Option<&str> {
        let status = self.job.status.as_ref()?;
        ["Complete", "Failed"]
            .into_iter()
            .find(|kind| condition(status, kind).is_some())
    }

    fn wake_in(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    async fn write_status(&mut self, status: JobStatus) -> Result<(), Error> {
        if self.job.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut job = self.job.clone();
        job.status = Some(status);
        job.metadata.managed_fields = None;
        self.job = self
            .api
            .replace_status(&self.name, &super::post_params(), &job)
            .await
            .map_err(|e| self.api_error(e))?;
        Ok(())
    }

    /// The Job's pods, as the cache shows them.
    fn owned_pods(&self) -> Vec<Arc<Pod>> {
        pods::owned_by(
            &self.ctx.pods,
            &self.job.namespace().unwrap_or_default(),
            &self.job.uid().unwrap_or_default(),
        )
    }

    async fn run(&mut self) -> Result<Action, Error> {
        let pods = self.owned_pods();
        if self.finished().is_some() {
            // Pods of a finished Job keep no finalizer of ours.
            self.remove_finalizers(pods.iter().filter(|p| has_finalizer(p)).cloned().collect())
                .await?;
            return self.expire_after_ttl().await;
        }
        if !self.ctx.expectations.satisfied(
            &self.key,
            &self.job.namespace().unwrap_or_default(),
            &self.ctx.pods,
        ) {
            // The watch brings what is awaited; the look again is a safety net.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let spec = self.job.spec.clone().unwrap_or_default();
        let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
            || spec.pod_failure_policy.is_some();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let mut status = self.status();

        // Finished pods still holding the finalizer are listed as uncounted first.
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let listed: HashSet<String> = uncounted
            .succeeded
            .iter()
            .flatten()
            .chain(uncounted.failed.iter().flatten())
            .cloned()
            .collect();
        let mut failing: Option<String> = None;
        {
            // A released pod the cache shows without the finalizer is settled.
            let mut released = self.ctx.released.lock().expect("released poisoned");
            for pod in pods.iter().filter(|p| !has_finalizer(p)) {
                released.remove(&pod.uid().unwrap_or_default());
            }
            released.retain(|_, at| at.elapsed() < std::time::Duration::from_secs(300));
        }
        let released = |uid: &str| {
            self.ctx
                .released
                .lock()
                .expect("released poisoned")
                .contains_key(uid)
        };
        for pod in pods.iter().filter(|p| has_finalizer(p)) {
            let uid = pod.uid().unwrap_or_default();
            if listed.contains(&uid) || released(&uid) {
                continue;
            }
            if phase(pod) == "Succeeded" {
                uncounted.succeeded.get_or_insert_default().push(uid);
            } else if is_failed(pod, only_failed) {
                match failure_verdict(&self.job, pod) {
                    Verdict::Ignore => {
                        // Not counted: only the finalizer goes.
                        self.remove_finalizers(vec![pod.clone()]).await?;
                        continue;
                    }
                    Verdict::FailJob(message) => failing = failing.or(Some(message)),
                    Verdict::Count => {}
                }
                uncounted.failed.get_or_insert_default().push(uid);
            }
        }
        status.uncounted_terminated_pods = Some(uncounted.clone());
        self.write_status(status.clone()).await?;

        // Then their finalizers go, then they are counted.
        let to_release: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| has_finalizer(p))
            .filter(|p| {
                let uid = p.uid().unwrap_or_default();
                uncounted
                    .succeeded
                    .iter()
                    .flatten()
                    .chain(uncounted.failed.iter().flatten())
                    .any(|u| *u == uid)
            })
            .cloned()
            .collect();
        self.remove_finalizers(to_release).await?;
        let by_uid: HashMap<String, &Arc<Pod>> = pods
            .iter()
            .map(|p| (p.uid().unwrap_or_default(), p))
            .collect();
        let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        let (mut succeeded, mut failed) =
            (status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));
        let mut backoff = self.backoff_record();
        for uid in uncounted.succeeded.iter().flatten() {
            succeeded += 1;
            backoff = Backoff::default();
            if let Some(index) = by_uid.get(uid).and_then(|p| index_of(p)) {
                completed.insert(index);
            }
        }
        for uid in uncounted.failed.iter().flatten() {
            failed += 1;
            backoff.failures += 1;
            backoff.last = Some(
                by_uid
                    .get(uid)
                    .and_then(|p| finished_at(p))
                    .unwrap_or_else(Timestamp::now),
            );
        }
        self.ctx
            .backoff
            .lock()
            .expect("backoff poisoned")
            .insert(self.key.clone(), backoff);
        status.succeeded = (succeeded > 0).then_some(succeeded);
        status.failed = (failed > 0).then_some(failed);
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());

        // Where the Job stands.
        let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| pods::is_active(p)).collect();
        let terminating = pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_some()
                    && !matches!(phase(p), "Succeeded" | "Failed")
            })
            .count() as i32;
        let now = Timestamp::now();
        let suspended = spec.suspend == Some(true);
        if !suspended && status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let restarts: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active
                .iter()
                .flat_map(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.container_statuses.iter().flatten())
                })
                .map(|c| c.restart_count)
                .sum()
        } else {
            0
        };
        let deadline_passed = spec.active_deadline_seconds.is_some_and(|d| {
            !suspended
                && status
                    .start_time
                    .as_ref()
                    .is_some_and(|s| s.0.as_second() + d <= now.as_second())
        });
        let all_done = match spec.completions {
            Some(n) if indexed => completed.len() as i32 >= n,
            Some(n) => succeeded >= n,
            None => succeeded > 0 && active.is_empty(),
        };
        let pending = status.conditions.iter().flatten().find(|c| {
            c.status == "True" && matches!(c.type_.as_str(), "FailureTarget" | "SuccessCriteriaMet")
        });
        let target = pending.map(|c| {
            (
                c.type_.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        });
        let target = target.or_else(|| {
            let fail = |reason: &str, message: &str| {
                Some((
                    "FailureTarget".to_string(),
                    reason.to_string(),
                    message.to_string(),
                ))
            };
            if let Some(message) = failing {
                fail("PodFailurePolicy", &message)
            } else if failed + restarts > backoff_limit {
                fail(
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            } else if deadline_passed {
                fail(
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            } else if all_done {
                Some((
                    "SuccessCriteriaMet".into(),
                    "CompletionsReached".into(),
                    "Reached expected number of succeeded pods".into(),
                ))
            } else {
                None
            }
        });

        if let Some((kind, reason, message)) = target {
            // Finishing: the interim condition, the remaining pods stopped, then the final one.
            set_condition(&mut status, &kind, "True", &reason, &message);
            self.delete_pods(active.iter().map(|p| (*p).clone()).collect(), false)
                .await?;
            let left = pods
                .iter()
                .filter(|p| has_finalizer(p) || pods::is_active(p))
                .count();
            status.active = Some(0);
            status.ready = Some(0);
            status.terminating = Some(terminating);
            if left == 0 && terminating == 0 {
                let last = if kind == "SuccessCriteriaMet" {
                    "Complete"
                } else {
                    "Failed"
                };
                set_condition(&mut status, last, "True", &reason, &message);
                if last == "Complete" {
                    status.completion_time = Some(Time(now));
                    self.ctx.recorder.publish(
                        &self.job,
                        Type::Normal,
                        "Completed",
                        "Complete",
                        "Job completed".into(),
                    );
                } else {
                    self.ctx.recorder.publish(
                        &self.job,
                        Type::Warning,
                        &reason,
                        "Fail",
                        message.clone(),
                    );
                }
                self.ctx
                    .backoff
                    .lock()
                    .expect("backoff poisoned")
                    .remove(&self.key);
            }
            self.write_status(status).await?;
            return Ok(Action::await_change());
        }

        if suspended {
            self.delete_pods(active.iter().map(|p| (*p).clone()).collect(), true)
                .await?;
            if set_condition(
                &mut status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
            ) {
                self.ctx.recorder.publish(
                    &self.job,
                    Type::Normal,
                    "Suspended",
                    "Suspend",
                    "Job suspended".into(),
                );
            }
            // The deadline starts again on resume.
            status.start_time = None;
            status.active = Some(0);
            status.ready = Some(0);
            status.terminating = Some(terminating);
            self.write_status(status).await?;
            return Ok(Action::await_change());
        }
        if condition(&status, "Suspended").is_some() {
            set_condition(
                &mut status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
            );
            self.ctx.recorder.publish(
                &self.job,
                Type::Normal,
                "Resumed",
                "Resume",
                "Job resumed".into(),
            );
        }

        // Running: as many pods as parallelism allows and completions still need.
        let replacing = if only_failed { terminating } else { 0 };
        let running = active.len() as i32 + replacing;
        let want = match spec.completions {
            None if succeeded > 0 => running,
            None => parallelism,
            Some(n) if indexed => (n - completed.len() as i32).clamp(0, parallelism),
            Some(n) => (n - succeeded).clamp(0, parallelism),
        };
        let mut error = None;
        if running > want {
            let surplus = (running - want) as usize;
            let mut ranked = active.clone();
            // Not yet running pods go first, then the newest.
            ranked.sort_by_key(|p| {
                (
                    phase(p) == "Running",
                    std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                )
            });
            let victims = ranked
                .into_iter()
                .take(surplus)
                .map(|p| (*p).clone())
                .collect();
            self.delete_pods(victims, true).await?;
        } else if running < want {
            let wait = backoff_remaining(&self.backoff_record(), now);
            if wait > Duration::ZERO {
                self.wake_in(wait);
            } else {
                let missing = ((want - running) as usize).min(BURST);
                let indexes = if indexed {
                    let busy: HashSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
                    (0..spec.completions.unwrap_or(0))
                        .filter(|i| !completed.contains(i) && !busy.contains(i))
                        .take(missing)
                        .map(Some)
                        .collect()
                } else {
                    vec![None; missing]
                };
                if let Err(message) = self.create_pods(indexes).await {
                    error = Some(message);
                }
            }
        }
        if let Some(d) = spec.active_deadline_seconds
            && let Some(start) = status.start_time.as_ref()
        {
            let due = start.0.as_second() + d - now.as_second();
            self.wake_in(Duration::from_secs(due.max(0) as u64 + 1));
        }
        status.active = Some(active.len() as i32);
        status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
        status.terminating = Some(terminating);
        self.write_status(status).await?;
        if let Some(message) = error {
            return Err(Error::Pods {
                name: self.name.clone(),
                message,
            });
        }
        Ok(self
            .requeue
            .map_or_else(Action::await_change, Action::requeue))
    }

    fn backoff_record(&self) -> Backoff {
        self.ctx
            .backoff
            .lock()
            .expect("backoff poisoned")
            .get(&self.key)
            .copied()
            .unwrap_or_default()
    }

    /// Creates pods (each with its index, for an Indexed Job) in slow-start batches.
    async fn create_pods(&mut self, indexes: Vec<Option<i32>>) -> Result<(), String> {
        let mut created = 0;
        let mut batch = 1;
        while created < indexes.len() {
            let size = batch.min(indexes.len() - created);
            let made: Vec<Pod> = indexes[created..created + size]
                .iter()
                .map(|i| self.pod_for(*i))
                .collect();
            let params = super::post_params();
            let results = join_all(made.iter().map(|p| self.pods_api.create(&params, p))).await;
            let mut names = Vec::new();
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        let name = pod.name_any();
                        self.ctx.recorder.publish(
                            &self.job,
                            Type::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("Created pod: {name}"),
                        );
                        names.push(name);
                    }
                    Err(error) => {
                        let message = error_message(&error);
                        self.ctx.recorder.publish(
                            &self.job,
                            Type::Warning,
                            "FailedCreate",
                            "Create",
                            format!("Error creating: {message}"),
                        );
                        failure = Some(message);
                    }
                }
            }
            self.ctx.expectations.expect(&self.key, names, Vec::new());
            if let Some(message) = failure {
                return Err(message);
            }
            created += size;
            batch *= 2;
        }
        Ok(())
    }

    /// A pod of the Job: the template, the tracking finalizer, and for an Indexed Job its index.
    fn pod_for(&self, index: Option<i32>) -> Pod {
        let template = self
            .job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let prefix = match index {
            Some(i) => format!("{}-{i}", self.name),
            None => self.name.clone(),
        };
        let mut pod = pods::pod_from_template(&template, &prefix, pods::controller_ref(&self.job));
        pod.metadata
            .finalizers
            .get_or_insert_default()
            .push(TRACKING_FINALIZER.into());
        if let Some(i) = index {
            pod.metadata
                .annotations
                .get_or_insert_default()
                .insert(INDEX_KEY.into(), i.to_string());
            pod.metadata
                .labels
                .get_or_insert_default()
                .insert(INDEX_KEY.into(), i.to_string());
            if let Some(spec) = pod.spec.as_mut() {
                spec.hostname = Some(format!("{}-{i}", self.name));
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.labels['{INDEX_KEY}']"),
                        }),
                        ..EnvVarSource::default()
                    }),
                };
                for c in spec
                    .init_containers
                    .iter_mut()
                    .flatten()
                    .chain(spec.containers.iter_mut())
                {
                    let vars = c.env.get_or_insert_default();
                    if !vars.iter().any(|v| v.name == env.name) {
                        vars.push(env.clone());
                    }
                }
            }
        }
        pod
    }

    /// Deletes pods. `release` takes their tracking finalizer off first, as upstream does for
    /// pods removed by suspend or a lower parallelism, which then do not count as failed; a
    /// finishing Job's pods keep it and are counted.
    async fn delete_pods(&mut self, victims: Vec<Arc<Pod>>, release: bool) -> Result<(), Error> {
        if victims.is_empty() {
            return Ok(());
        }
        if release {
            self.remove_finalizers(
                victims
                    .iter()
                    .filter(|p| has_finalizer(p))
                    .cloned()
                    .collect(),
            )
            .await?;
        }
        let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
        self.ctx
            .expectations
            .expect(&self.key, Vec::new(), names.clone());
        let params = DeleteParams::default();
        let results = join_all(names.iter().map(|n| self.pods_api.delete(n, &params))).await;
        for (name, result) in names.iter().zip(results) {
            match result {
                Ok(_) => self.ctx.recorder.publish(
                    &self.job,
                    Type::Normal,
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted pod: {name}"),
                ),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(self.api_error(source)),
            }
        }
        Ok(())
    }

    /// Takes the tracking finalizer off pods, guarded by their resourceVersion.
    async fn remove_finalizers(&self, pods: Vec<Arc<Pod>>) -> Result<(), Error> {
        let patches = pods.iter().map(|pod| {
            let kept: Vec<&String> = pod
                .finalizers()
                .iter()
                .filter(|f| *f != TRACKING_FINALIZER)
                .collect();
            let patch = json!({"metadata": {
                "finalizers": kept,
                "resourceVersion": pod.resource_version(),
            }});
            let name = pod.name_any();
            async move {
                self.pods_api
                    .patch(&name, &super::patch_params(), &Patch::Merge(patch))
                    .await
            }
        });
        for (pod, result) in pods.iter().zip(join_all(patches).await) {
            match result {
                Ok(_) => {
                    self.ctx
                        .released
                        .lock()
                        .expect("released poisoned")
                        .insert(pod.uid().unwrap_or_default(), std::time::Instant::now());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(self.api_error(source)),
            }
        }
        Ok(())
    }

    /// Deletes a finished Job once its ttlSecondsAfterFinished has passed.
    async fn expire_after_ttl(&self) -> Result<Action, Error> {
        let Some(ttl) = self
            .job
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
        else {
            return Ok(Action::await_change());
        };
        let finished_at = self
            .job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter().find(|c| {
                    matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True"
                })
            })
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
        let Some(finished_at) = finished_at else {
            return Ok(Action::await_change());
        };
        let due = finished_at.as_second() + i64::from(ttl) - Timestamp::now().as_second();
        if due > 0 {
            return Ok(Action::requeue(Duration::from_secs(due as u64)));
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(kube::api::Preconditions {
                uid: self.job.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => Ok(Action::await_change()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                Ok(Action::await_change())
            }
            Err(source) => Err(self.api_error(source)),
        }
    }
}

/// When the pod's last container finished.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

/// How long the next pod must wait after failures (upstream's `getRemainingTime`): 10 s after
/// the first failure, doubling, at most 6 min.
fn backoff_remaining(backoff: &Backoff, now: Timestamp) -> Duration {
    let Some(last) = backoff.last else {
        return Duration::ZERO;
    };
    if backoff.failures == 0 {
        return Duration::ZERO;
    }
    let delay = BACKOFF
        .saturating_mul(1 << (backoff.failures - 1).min(16))
        .min(MAX_BACKOFF);
    let elapsed = Duration::from_secs((now.as_second() - last.as_second()).max(0) as u64);
    delay.saturating_sub(elapsed)
}

fn error_policy(_job: Arc<Job>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "job reconcile failed");
    match error {
        Error::Api {
            source: kube::Error::Api(e),
            ..
        } if e.code == 409 => Action::requeue(Duration::from_millis(200)),
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_written_as_ranges() {
        let set: BTreeSet<i32> = [0, 1, 2, 5, 7, 8].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,5,7-8");
        assert_eq!(parse_indexes("0-2,5,7-8"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn the_back_off_doubles_from_ten_seconds_up_to_six_minutes() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let at = |failures, secs_ago: i64| Backoff {
            failures,
            last: Some(Timestamp::from_second(now.as_second() - secs_ago).unwrap()),
        };
        assert_eq!(backoff_remaining(&at(1, 4), now), Duration::from_secs(6));
        assert_eq!(backoff_remaining(&at(2, 0), now), Duration::from_secs(20));
        assert_eq!(backoff_remaining(&at(12, 0), now), MAX_BACKOFF);
        assert_eq!(backoff_remaining(&at(1, 30), now), Duration::ZERO);
        assert_eq!(backoff_remaining(&Backoff::default(), now), Duration::ZERO);
    }

    #[test]
    fn a_failure_policy_rule_fails_the_job_on_a_matching_exit_code() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"template": {}, "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}
            ]}}
        }))
        .unwrap();
        let pod = |code: i32, conditions: serde_json::Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [
                    {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": code}}}
                ]}
            }))
            .unwrap()
        };
        assert_eq!(
            failure_verdict(&job, &pod(42, json!([]))),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(failure_verdict(&job, &pod(1, json!([]))), Verdict::Count);
        assert_eq!(
            failure_verdict(
                &job,
                &pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]))
            ),
            Verdict::Ignore
        );
    }
}
