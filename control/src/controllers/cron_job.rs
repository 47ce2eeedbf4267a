//! Creates Jobs on a schedule, as kube-controller-manager's cronjob controller does. At each
//! scheduled time (in `timeZone`, UTC without one) a Job named `<cronjob>-<minutes since the
//! epoch>` is made from `jobTemplate`, unless the CronJob is suspended, the time is older than
//! `startingDeadlineSeconds`, or `concurrencyPolicy` says otherwise (`Forbid` skips while one
//! runs, `Replace` deletes the running ones first). `status.active` lists the running Jobs,
//! `lastScheduleTime` and `lastSuccessfulTime` what ran; finished Jobs beyond
//! `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` are deleted, oldest first.

mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

pub use schedule::Schedule;

use super::events::{Recorder, Type};
use super::pods;
use super::replica_set::error_message;

/// The events' source, as upstream names it.
const COMPONENT: &str = "cronjob-controller";
/// The annotation with the time a Job was scheduled for.
const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed runs beyond which upstream warns.
const TOO_MANY_MISSED: u32 = 100;

/// What reconciling a CronJob can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cronjob {name}: {source}")]
    Api { name: String, source: kube::Error },
}

struct Context {
    client: Client,
    recorder: Recorder,
}

/// Runs the cronjob controller.
pub async fn run(client: Client) {
    let cron_jobs: Api<CronJob> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client, COMPONENT),
    });
    Controller::new(cron_jobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// The finished condition of a Job: `Complete` or `Failed`.
fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn reference(job: &Job) -> ObjectReference {
    let mut r = job.object_ref(&());
    r.resource_version = job.resource_version();
    r
}

/// The last scheduled time at or before `now` not yet run, and how many were missed (upstream's
/// `mostRecentScheduleTime`).
fn most_recent(
    cj: &CronJob,
    schedule: &Schedule,
    tz: &TimeZone,
    now: Timestamp,
) -> (Option<Timestamp>, u32) {
    let spec = cj.spec.as_ref();
    let status = cj.status.as_ref();
    let mut earliest = status
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    if let Some(deadline) = spec.and_then(|s| s.starting_deadline_seconds) {
        let floor = Timestamp::from_second(now.as_second() - deadline).unwrap_or(now);
        earliest = earliest.max(floor);
    }
    let (mut latest, mut missed) = (None, 0u32);
    let mut t = earliest;
    // Bounded: an every-minute schedule missed for a year is half a million steps.
    for _ in 0..600_000 {
        match schedule.next_after(t, tz) {
            Some(next) if next <= now => {
                latest = Some(next);
                missed += 1;
                t = next;
            }
            _ => break,
        }
    }
    (latest, missed)
}

#[tracing::instrument(name = "cronjob", skip_all, fields(cronjob = %cj.name_any()))]
async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let api_error = |source| Error::Api {
        name: name.clone(),
        source,
    };
    let cron_jobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // Read afresh: a status behind the Jobs would start one twice.
    let mut cj = match cron_jobs.get(&name).await {
        Ok(cj) => cj,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(source) => return Err(api_error(source)),
    };
    let uid = cj.uid().unwrap_or_default();
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(api_error)?
        .items
        .into_iter()
        .filter(|j| pods::controller_of(j).is_some_and(|o| o.uid == uid))
        .collect();
    let mut status = cj.status.clone().unwrap_or_default();

    // Bring the active list up to date.
    let mut active: Vec<ObjectReference> = status.active.clone().unwrap_or_default();
    for job in &jobs {
        let listed = active.iter().any(|r| r.uid == job.uid());
        match finished(job) {
            Some(condition) if listed => {
                active.retain(|r| r.uid != job.uid());
                ctx.recorder.publish(
                    &cj,
                    Type::Normal,
                    "SawCompletedJob",
                    "Complete",
                    format!(
                        "Saw completed job: {}, condition: {condition}",
                        job.name_any()
                    ),
                );
                if condition == "Complete" {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    let later = match (&done, &status.last_successful_time) {
                        (Some(d), Some(l)) => d.0 > l.0,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if later {
                        status.last_successful_time = done;
                    }
                }
            }
            None if !listed && job.metadata.deletion_timestamp.is_none() => {
                ctx.recorder.publish(
                    &cj,
                    Type::Warning,
                    "UnexpectedJob",
                    "Sync",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        job.name_any()
                    ),
                );
            }
            _ => {}
        }
    }
    // Jobs gone without finishing leave the list too.
    active.retain(|r| jobs.iter().any(|j| j.uid() == r.uid));
    status.active = (!active.is_empty()).then_some(active.clone());

    let mut requeue = None;
    if cj.metadata.deletion_timestamp.is_none() {
        requeue = schedule_next(&mut cj, &mut status, &jobs, &jobs_api, &ctx)
            .await
            .map_err(api_error)?;
    }
    if cj.status.as_ref() != Some(&status) {
        cj.status = Some(status);
        cj.metadata.managed_fields = None;
        match cron_jobs
            .replace_status(&name, &super::post_params(), &cj)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(source) => return Err(api_error(source)),
        }
    }
    cleanup_history(&cj, &jobs, &jobs_api, &ctx).await;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Starts the Job for the latest due time, when one is due and allowed; how long until the next
/// time.
async fn schedule_next(
    cj: &mut CronJob,
    status: &mut CronJobStatus,
    jobs: &[Job],
    jobs_api: &Api<Job>,
    ctx: &Context,
) -> Result<Option<Duration>, kube::Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(error) => {
                ctx.recorder.publish(
                    cj,
                    Type::Warning,
                    "UnknownTimeZone",
                    "Sync",
                    format!("invalid timeZone: {name:?}: {error}"),
                );
                return Ok(None);
            }
        },
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(error) => {
            ctx.recorder.publish(
                cj,
                Type::Warning,
                "UnparseableSchedule",
                "Sync",
                format!("unparseable schedule: {:?} : {error}", spec.schedule),
            );
            return Ok(None);
        }
    };
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let now = Timestamp::now();
    let next_in = |from: Timestamp| {
        schedule.next_after(from, &tz).map(|next| {
            let wait = next.as_millisecond() - Timestamp::now().as_millisecond() + 100;
            Duration::from_millis(wait.max(100) as u64)
        })
    };
    let (due, missed) = most_recent(cj, &schedule, &tz, now);
    let Some(due) = due else {
        return Ok(next_in(now));
    };
    if missed > TOO_MANY_MISSED {
        ctx.recorder.publish(
            cj,
            Type::Warning,
            "TooManyMissedTimes",
            "Sync",
            format!(
                "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            ),
        );
    }
    let zoned = due.to_zoned(tz.clone());
    if let Some(deadline) = spec.starting_deadline_seconds
        && due.as_second() + deadline < now.as_second()
    {
        ctx.recorder.publish(
            cj,
            Type::Warning,
            "MissSchedule",
            "Sync",
            format!(
                "Missed scheduled time to start a job: {}",
                zoned.strftime("%Y-%m-%dT%H:%M:%S%:z")
            ),
        );
        return Ok(next_in(now));
    }
    let job_name = format!("{}-{}", cj.name_any(), due.as_second() / 60);
    let active = status.active.clone().unwrap_or_default();
    if active
        .iter()
        .any(|r| r.name.as_deref() == Some(job_name.as_str()))
        || jobs.iter().any(|j| j.name_any() == job_name)
    {
        return Ok(next_in(now));
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            ctx.recorder.publish(
                cj,
                Type::Normal,
                "JobAlreadyActive",
                "Sync",
                "Not starting job because prior execution is running and concurrency policy is Forbid"
                    .into(),
            );
            return Ok(next_in(now));
        }
        Some("Replace") => {
            for r in &active {
                let Some(name) = r.name.as_deref() else {
                    continue;
                };
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                match jobs_api.delete(name, &params).await {
                    Ok(_) => ctx.recorder.publish(
                        cj,
                        Type::Normal,
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted job {name}"),
                    ),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(error) => return Err(error),
                }
            }
            status.active = None;
        }
        _ => {}
    }
    let template = spec.job_template;
    let mut job = Job {
        spec: Some(template.spec.unwrap_or_default()),
        ..Job::default()
    };
    let meta = template.metadata.unwrap_or_default();
    job.metadata.name = Some(job_name.clone());
    job.metadata.labels = meta.labels;
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_AT.into(),
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    );
    job.metadata.annotations = Some(annotations);
    job.metadata.owner_references = Some(vec![pods::controller_ref(cj)]);
    match jobs_api.create(&super::post_params(), &job).await {
        Ok(created) => {
            ctx.recorder.publish(
                cj,
                Type::Normal,
                "SuccessfulCreate",
                "Create",
                format!("Created job {job_name}"),
            );
            status
                .active
                .get_or_insert_default()
                .push(reference(&created));
        }
        // Made before, by a pass whose status write was lost: it is this time's Job.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(error) => {
            ctx.recorder.publish(
                cj,
                Type::Warning,
                "FailedCreate",
                "Create",
                format!("Error creating job: {}", error_message(&error)),
            );
            return Err(error);
        }
    }
    status.last_schedule_time = Some(Time(due));
    Ok(next_in(now))
}

/// Deletes finished Jobs beyond the history limits, oldest first.
async fn cleanup_history(cj: &CronJob, jobs: &[Job], api: &Api<Job>, ctx: &Context) {
    let spec = cj.spec.as_ref();
    for (condition, limit) in [
        (
            "Complete",
            spec.and_then(|s| s.successful_jobs_history_limit)
                .unwrap_or(3),
        ),
        (
            "Failed",
            spec.and_then(|s| s.failed_jobs_history_limit).unwrap_or(1),
        ),
    ] {
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(condition) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let surplus = done.len().saturating_sub(limit.max(0) as usize);
        if surplus == 0 {
            continue;
        }
        done.sort_by_key(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .or(j.metadata.creation_timestamp.as_ref())
                .map(|t| t.0)
        });
        for job in done.into_iter().take(surplus) {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&job.name_any(), &params).await {
                Ok(_) => ctx.recorder.publish(
                    cj,
                    Type::Normal,
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted job {}", job.name_any()),
                ),
                Err(error) => {
                    tracing::debug!(job = %job.name_any(), %error, "deleting an old job failed");
                }
            }
        }
    }
}

fn error_policy(_cj: Arc<CronJob>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, "cronjob reconcile failed");
    Action::requeue(Duration::from_secs(1))
}
