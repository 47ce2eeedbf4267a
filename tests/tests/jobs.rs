//! Jobs and CronJobs driven by the real kubectl: completions and parallelism, the back-off
//! limit, Indexed completion, the active deadline, the TTL after finishing, and a CronJob that
//! runs every minute and keeps only its history limits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::watcher;
use skiff_tests::{Server, eventually, text};

fn server_with_samples() -> Server {
    let server = Server::start().unwrap();
    server.import_samples();
    server
}

/// Waits for the Job's condition, as `kubectl wait` does.
fn wait_for(server: &Server, name: &str, condition: &str) {
    let out = server.kubectl(&[
        "wait",
        &format!("--for=condition={condition}"),
        &format!("job/{name}"),
        "--timeout=90s",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        server.kubectl_ok(&["get", "job", name, "-o", "yaml"])
    );
}

/// `REASON: MESSAGE` of each event about `name`.
fn events_of(server: &Server, name: &str) -> String {
    server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

/// The most pods a Job had active at once, as a watch of the Job saw it, until it finished.
fn most_active_until_finished(server: &Server, name: &str) -> i32 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(server.client()).unwrap();
    let most = Arc::new(Mutex::new(0));
    let seen = most.clone();
    let selector = format!("metadata.name={name}");
    runtime.block_on(async move {
        let jobs: kube::Api<Job> = kube::Api::namespaced(client, "default");
        let mut changes =
            watcher::watcher(jobs, watcher::Config::default().fields(&selector)).boxed();
        let watch = async {
            while let Some(Ok(change)) = changes.next().await {
                let (watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = change else {
                    continue;
                };
                let status = job.status.unwrap_or_default();
                let mut m = seen.lock().unwrap();
                *m = (*m).max(status.active.unwrap_or(0));
                let done = status.conditions.iter().flatten().any(|c| {
                    matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True"
                });
                if done {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(90), watch)
            .await
            .expect("the job finishes");
    });
    *most.lock().unwrap()
}

#[test]
fn a_job_runs_its_completions_at_most_parallelism_at_a_time() {
    let server = server_with_samples();
    // Each pod logs three lines 100 ms apart, so that pods overlap.
    server.apply(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: five}
spec:
  completions: 5
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: samples.skiff.local/logwriter:0.1.0
        env: [{name: COUNT, value: "3"}, {name: INTERVAL_MS, value: "100"}]
"#,
    );
    let most = most_active_until_finished(&server, "five");
    assert!(
        most <= 2,
        "parallelism 2, but {most} pods were active at once"
    );
    assert_eq!(most, 2, "two pods ran at once");
    wait_for(&server, "five", "complete");
    let listed = server.kubectl_ok(&["get", "job", "five"]);
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["five", "Complete", "5/5"], "{listed}");
    assert_eq!(
        server.field(
            "job/five",
            "{.status.succeeded} {.status.active} {.status.conditions[*].type}"
        ),
        "5 0 SuccessCriteriaMet Complete"
    );
    assert_eq!(
        server.field("job/five",
            "{.status.conditions[?(@.type==\"Complete\")].reason}: {.status.conditions[?(@.type==\"Complete\")].message}"
        ),
        "CompletionsReached: Reached expected number of succeeded pods"
    );
    assert!(
        !server
            .field("job/five", "{.status.completionTime}")
            .is_empty()
    );
    // Counted pods keep no finalizer of the Job's.
    let finalizers = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=five",
        "-o",
        "jsonpath={.items[*].metadata.finalizers}",
    ]);
    assert!(finalizers.trim().is_empty(), "{finalizers}");
    let events = events_of(&server, "five");
    assert_eq!(
        events
            .matches("SuccessfulCreate: Created pod: five-")
            .count(),
        5,
        "{events}"
    );
    assert!(events.contains("Completed: Job completed"), "{events}");
}

#[test]
fn a_failing_job_stops_at_its_backoff_limit() {
    let server = server_with_samples();
    server.apply(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: failing}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: samples.skiff.local/hello:0.1.0
        env: [{name: EXIT_CODE, value: "3"}]
"#,
    );
    wait_for(&server, "failing", "failed");
    assert_eq!(
        server.field(
            "job/failing",
            "{.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "2 BackoffLimitExceeded"
    );
    assert_eq!(
        server.field(
            "job/failing",
            "{.status.conditions[?(@.type==\"FailureTarget\")].message}"
        ),
        "Job has reached the specified backoff limit"
    );
    let pods = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=failing",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    assert_eq!(pods.trim(), "Failed Failed", "one try and one retry");
    let events = events_of(&server, "failing");
    assert!(
        events.contains("BackoffLimitExceeded: Job has reached the specified backoff limit"),
        "{events}"
    );
    let described = server.kubectl_ok(&["describe", "job", "failing"]);
    assert!(
        described.contains("Pods Statuses:    0 Active (0 Ready) / 0 Succeeded / 2 Failed"),
        "{described}"
    );
}

#[test]
fn indexed_deadlined_and_expiring_jobs_behave_as_upstream() {
    let server = server_with_samples();
    server.apply(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: samples.skiff.local/hello:0.1.0}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: samples.skiff.local/logwriter:0.1.0}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: expiring}
spec:
  ttlSecondsAfterFinished: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: samples.skiff.local/hello:0.1.0}]
"#,
    );
    wait_for(&server, "indexed", "complete");
    assert_eq!(
        server.field("job/indexed", "{.status.completedIndexes}"),
        "0-2"
    );
    let pods = server.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=indexed",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-completion-index} {.spec.hostname}{\"\\n\"}{end}",
    ]);
    let mut lines: Vec<&str> = pods.lines().collect();
    lines.sort();
    assert_eq!(lines, ["0 indexed-0", "1 indexed-1", "2 indexed-2"]);
    let logs = server.kubectl_ok(&["logs", "-l", "job-name=indexed", "--prefix=false"]);
    for i in 0..3 {
        assert!(
            logs.contains(&format!("env JOB_COMPLETION_INDEX={i}")),
            "{logs}"
        );
    }

    wait_for(&server, "deadline", "failed");
    assert_eq!(
        server.field("job/deadline",
            "{.status.conditions[?(@.type==\"Failed\")].reason}: {.status.conditions[?(@.type==\"Failed\")].message}"
        ),
        "DeadlineExceeded: Job was active longer than specified deadline"
    );
    eventually(Duration::from_secs(60), || {
        let left = server.kubectl_ok(&["get", "pods", "-l", "job-name=deadline", "-o", "name"]);
        left.trim().is_empty().then_some(())
    })
    .expect("the deadlined job's pod is stopped");

    eventually(Duration::from_secs(60), || {
        let out = server.kubectl(&["get", "job", "expiring"]);
        (!out.status.success()).then_some(())
    })
    .expect("a job with ttlSecondsAfterFinished 0 is deleted once it finishes");
}

#[test]
fn a_cron_job_every_minute_makes_jobs_and_keeps_its_history_limits() {
    let server = server_with_samples();
    server.apply(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  suspend: true
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: work, image: samples.skiff.local/hello:0.1.0}]
"#,
    );
    // Two runs by hand first, while the schedule is suspended so that none of its runs comes
    // between them: the older is deleted once the newer finishes.
    for name in ["manual-1", "manual-2"] {
        let out = server.kubectl_ok(&["create", "job", name, "--from=cronjob/tick"]);
        assert_eq!(out.trim(), format!("job.batch/{name} created"));
        wait_for(&server, name, "complete");
    }
    eventually(Duration::from_secs(30), || {
        let out = server.kubectl(&["get", "job", "manual-1"]);
        (!out.status.success()).then_some(())
    })
    .expect("the older finished job goes beyond successfulJobsHistoryLimit 1");
    // Then the schedule's own run, within a minute of its resuming. Once it finishes, it is
    // the only Job left: the latest of the schedule's runs, should a second have come.
    server.merge_patch("cronjob/tick", r#"{"spec":{"suspend":false}}"#);
    let scheduled = eventually(Duration::from_secs(90), || {
        let names = server.kubectl_ok(&["get", "jobs", "-o", "name"]);
        let names: Vec<&str> = names.lines().collect();
        let [only] = names.as_slice() else {
            return None;
        };
        let name = only.strip_prefix("job.batch/tick-")?;
        let name = format!("tick-{name}");
        (server.field(&format!("job/{name}"), "{.status.succeeded}") == "1").then_some(name)
    })
    .unwrap_or_else(|| {
        panic!(
            "a run of the schedule finishes and only it stays: {}",
            server.kubectl_ok(&["get", "jobs"])
        )
    });
    let minutes: i64 = scheduled.trim_start_matches("tick-").parse().unwrap();
    assert!(
        minutes > 29_000_000,
        "named after the scheduled minute: {scheduled}"
    );
    let cron = server.kubectl_ok(&[
        "get",
        "cronjob",
        "tick",
        "-o",
        "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}",
    ]);
    let times: Vec<&str> = cron.split_whitespace().collect();
    assert_eq!(times.len(), 2, "{cron}");
    assert!(times[0].ends_with(":00Z"), "a whole minute: {cron}");
    let events = events_of(&server, "tick");
    for wanted in [
        format!("SuccessfulCreate: Created job {scheduled}"),
        format!("SawCompletedJob: Saw completed job: {scheduled}, condition: Complete"),
        "SuccessfulDelete: Deleted job manual-1".to_string(),
    ] {
        assert!(events.contains(&wanted), "{wanted}:\n{events}");
    }
}

#[test]
fn a_suspended_job_stops_its_pods_without_counting_them_failed_and_resumes() {
    let server = server_with_samples();
    server.apply(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: paused}
spec:
  completions: 4
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: work, image: samples.skiff.local/logwriter:0.1.0}]
"#,
    );
    let active = |want: &str| {
        eventually(Duration::from_secs(60), || {
            (server.field("job/paused", "{.status.active}") == want).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "never {want} active: {}",
                server.kubectl_ok(&["get", "job", "paused", "-o", "yaml"])
            )
        })
    };
    active("2");
    server.merge_patch("job/paused", r#"{"spec":{"suspend":true}}"#);
    wait_for(&server, "paused", "suspended");
    active("0");
    eventually(Duration::from_secs(60), || {
        let left = server.kubectl_ok(&["get", "pods", "-l", "job-name=paused", "-o", "name"]);
        left.trim().is_empty().then_some(())
    })
    .expect("the suspended job's pods are stopped");
    assert_eq!(
        server.field("job/paused", "{.status.failed}"),
        "",
        "pods stopped by suspend are not failures"
    );
    assert_eq!(
        server.field(
            "job/paused",
            "{.status.conditions[?(@.type==\"Suspended\")].reason}"
        ),
        "JobSuspended"
    );
    server.merge_patch("job/paused", r#"{"spec":{"suspend":false}}"#);
    active("2");
    assert_eq!(
        server.field("job/paused",
            "{.status.conditions[?(@.type==\"Suspended\")].status} {.status.conditions[?(@.type==\"Suspended\")].reason}"
        ),
        "False JobResumed"
    );
    let events = events_of(&server, "paused");
    assert!(events.contains("Suspended: Job suspended"), "{events}");
    assert!(events.contains("Resumed: Job resumed"), "{events}");
    assert_eq!(server.field("job/paused", "{.status.failed}"), "");
}
