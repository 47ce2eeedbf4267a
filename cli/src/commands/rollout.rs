//! `skiff rollout status|history|undo|restart|pause|resume` for Deployments, StatefulSets and
//! DaemonSets, with kubectl's messages. History and undo read a Deployment's ReplicaSets (their
//! `deployment.kubernetes.io/revision`) and a set's ControllerRevisions, as kubectl does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::kubeconfig::{Cluster, ClusterArgs, target};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";
/// Annotations `rollout undo` neither copies from a ReplicaSet nor drops from the Deployment.
const KEPT: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Flags of `skiff rollout`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Wait until the rollout is done, saying how it goes.
    Status {
        /// `TYPE/NAME` or `TYPE NAME`.
        #[arg(required = true)]
        words: Vec<String>,
        /// Give up after this long (`90s`, `5m`); 0 waits forever.
        #[arg(long, default_value = "0s", value_parser = super::server::parse_duration)]
        timeout: Duration,
    },
    /// List the revisions, or show one.
    History {
        #[arg(required = true)]
        words: Vec<String>,
        /// Show this revision's pod template.
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
    /// Go back to the previous revision, or to one named.
    Undo {
        #[arg(required = true)]
        words: Vec<String>,
        #[arg(long = "to-revision", default_value_t = 0)]
        to_revision: i64,
    },
    /// Roll every pod over again with the same template.
    Restart {
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// Stop rolling out template changes (Deployments).
    Pause {
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// Roll out template changes again (Deployments).
    Resume {
        #[arg(required = true)]
        words: Vec<String>,
    },
}

/// Which kind of workload a command names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment.apps",
            Kind::StatefulSet => "statefulset.apps",
            Kind::DaemonSet => "daemonset.apps",
        }
    }
}

async fn resolve(cluster: &mut Cluster, words: &[String]) -> anyhow::Result<(Kind, String)> {
    let (word, name, rest) = target(words)?;
    if !rest.is_empty() {
        bail!("unexpected arguments: {}", rest.join(" "));
    }
    let served = cluster.resolve(&word).await?;
    let kind = match (served.api.group.as_str(), served.api.kind.as_str()) {
        ("apps", "Deployment") => Kind::Deployment,
        ("apps", "StatefulSet") => Kind::StatefulSet,
        ("apps", "DaemonSet") => Kind::DaemonSet,
        _ => bail!("no rollouts for {}", served.qualified_kind()),
    };
    Ok((kind, name))
}

/// Runs `skiff rollout`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    match args.action {
        Action::Status { words, timeout } => {
            let (kind, name) = resolve(&mut cluster, &words).await?;
            status(&client, &ns, kind, &name, timeout).await
        }
        Action::History { words, revision } => {
            let (kind, name) = resolve(&mut cluster, &words).await?;
            history(&client, &ns, kind, &name, revision).await
        }
        Action::Undo { words, to_revision } => {
            let (kind, name) = resolve(&mut cluster, &words).await?;
            undo(&client, &ns, kind, &name, to_revision).await
        }
        Action::Restart { words } => {
            let (kind, name) = resolve(&mut cluster, &words).await?;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": now}}}}});
            patch_workload(&client, &ns, kind, &name, patch).await?;
            println!("{}/{name} restarted", kind.label());
            Ok(())
        }
        Action::Pause { words } => pause(&mut cluster, &ns, &words, true).await,
        Action::Resume { words } => pause(&mut cluster, &ns, &words, false).await,
    }
}

async fn pause(
    cluster: &mut Cluster,
    ns: &str,
    words: &[String],
    paused: bool,
) -> anyhow::Result<()> {
    let (kind, name) = resolve(cluster, words).await?;
    if kind != Kind::Deployment {
        bail!(
            "{}/{name} is not supported: only deployments can be paused",
            kind.label()
        );
    }
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let current = api.get(&name).await?;
    let verb = if paused { "paused" } else { "resumed" };
    if current.spec.and_then(|s| s.paused).unwrap_or(false) == paused {
        println!("deployment.apps/{name} already {verb}");
        return Ok(());
    }
    let patch = json!({"spec": {"paused": paused}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    println!("deployment.apps/{name} {verb}");
    Ok(())
}

async fn patch_workload(
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
    patch: serde_json::Value,
) -> anyhow::Result<()> {
    let params = PatchParams::default();
    let patch = Patch::Strategic(patch);
    match kind {
        Kind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &params, &patch)
                .await?;
        }
        Kind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &params, &patch)
                .await?;
        }
        Kind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(name, &params, &patch)
                .await?;
        }
    }
    Ok(())
}

/// kubectl's status viewers: the line to print, whether the rollout is done, or why it failed.
async fn status_once(
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
) -> anyhow::Result<(String, bool)> {
    match kind {
        Kind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .get(name)
                .await?;
            let spec = d.spec.unwrap_or_default();
            let s = d.status.unwrap_or_default();
            if d.metadata.generation.unwrap_or(0) > s.observed_generation.unwrap_or(0) {
                return Ok((
                    "Waiting for deployment spec update to be observed...".into(),
                    false,
                ));
            }
            let timed_out = s.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
            if timed_out {
                bail!("deployment {name:?} exceeded its progress deadline");
            }
            let (want, updated) = (spec.replicas.unwrap_or(1), s.updated_replicas.unwrap_or(0));
            let (replicas, available) =
                (s.replicas.unwrap_or(0), s.available_replicas.unwrap_or(0));
            Ok(if updated < want {
                (
                    format!(
                        "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
                    ),
                    false,
                )
            } else if replicas > updated {
                (
                    format!(
                        "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                        replicas - updated
                    ),
                    false,
                )
            } else if available < updated {
                (
                    format!(
                        "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
                    ),
                    false,
                )
            } else {
                (format!("deployment {name:?} successfully rolled out"), true)
            })
        }
        Kind::DaemonSet => {
            let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
                .get(name)
                .await?;
            let strategy = ds
                .spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.type_.clone());
            if strategy.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            let s = ds.status.unwrap_or_default();
            if ds.metadata.generation.unwrap_or(0) > s.observed_generation.unwrap_or(0) {
                return Ok((
                    "Waiting for daemon set spec update to be observed...".into(),
                    false,
                ));
            }
            let (updated, desired) = (
                s.updated_number_scheduled.unwrap_or(0),
                s.desired_number_scheduled,
            );
            let available = s.number_available.unwrap_or(0);
            Ok(if updated < desired {
                (
                    format!(
                        "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
                    ),
                    false,
                )
            } else if available < desired {
                (
                    format!(
                        "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
                    ),
                    false,
                )
            } else {
                (format!("daemon set {name:?} successfully rolled out"), true)
            })
        }
        Kind::StatefulSet => {
            let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get(name)
                .await?;
            let spec = sts.spec.unwrap_or_default();
            let strategy = spec.update_strategy.clone().unwrap_or_default();
            if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            let s = sts.status.unwrap_or_default();
            let observed = s.observed_generation.unwrap_or(0);
            if observed == 0 || sts.metadata.generation.unwrap_or(0) > observed {
                return Ok((
                    "Waiting for statefulset spec update to be observed...".into(),
                    false,
                ));
            }
            let want = spec.replicas.unwrap_or(1);
            let ready = s.ready_replicas.unwrap_or(0);
            if ready < want {
                return Ok((
                    format!("Waiting for {} pods to be ready...", want - ready),
                    false,
                ));
            }
            let updated = s.updated_replicas.unwrap_or(0);
            if let Some(partition) = strategy
                .rolling_update
                .as_ref()
                .map(|r| r.partition.unwrap_or(0))
            {
                if updated < want - partition {
                    return Ok((
                        format!(
                            "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                            want - partition
                        ),
                        false,
                    ));
                }
                return Ok((
                    format!(
                        "partitioned roll out complete: {updated} new pods have been updated..."
                    ),
                    true,
                ));
            }
            let (update, current) = (
                s.update_revision.unwrap_or_default(),
                s.current_revision.unwrap_or_default(),
            );
            Ok(if update != current {
                (
                    format!(
                        "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
                    ),
                    false,
                )
            } else {
                (
                    format!(
                        "statefulset rolling update complete {} pods at revision {current}...",
                        s.current_replicas.unwrap_or(0)
                    ),
                    true,
                )
            })
        }
    }
}

async fn status(
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let (line, done) = status_once(client, ns, kind, name).await?;
        if line != last || done {
            println!("{line}");
            last = line;
        }
        if done {
            return Ok(());
        }
        if !timeout.is_zero() && started.elapsed() > timeout {
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Deployment's ReplicaSets by revision.
async fn deployment_revisions(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<(Deployment, BTreeMap<i64, ReplicaSet>)> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    let uid = d.uid().unwrap_or_default();
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let owned = sets
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .filter_map(|rs| Some((rs.annotations().get(REVISION)?.parse().ok()?, rs)))
        .collect();
    Ok((d, owned))
}

/// A set's ControllerRevisions by revision.
async fn set_revisions(
    client: &Client,
    ns: &str,
    uid: &str,
) -> anyhow::Result<BTreeMap<i64, ControllerRevision>> {
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(revisions
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .map(|r| (r.revision, r))
        .collect())
}

async fn set_uid(client: &Client, ns: &str, kind: Kind, name: &str) -> anyhow::Result<String> {
    Ok(match kind {
        Kind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get(name)
            .await?
            .uid(),
        Kind::DaemonSet => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get(name)
            .await?
            .uid(),
        Kind::Deployment => None,
    }
    .unwrap_or_default())
}

async fn history(
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
    revision: i64,
) -> anyhow::Result<()> {
    let (causes, templates): (
        BTreeMap<i64, Option<String>>,
        BTreeMap<i64, serde_json::Value>,
    ) = match kind {
        Kind::Deployment => {
            let (_, sets) = deployment_revisions(client, ns, name).await?;
            sets.into_iter()
                .map(|(n, rs)| {
                    let cause = rs.annotations().get("kubernetes.io/change-cause").cloned();
                    let template =
                        serde_json::to_value(rs.spec.and_then(|s| s.template)).unwrap_or_default();
                    ((n, cause), (n, template))
                })
                .unzip()
        }
        _ => {
            let uid = set_uid(client, ns, kind, name).await?;
            set_revisions(client, ns, &uid)
                .await?
                .into_iter()
                .map(|(n, r)| {
                    let cause = r.annotations().get("kubernetes.io/change-cause").cloned();
                    let template = r
                        .data
                        .map(|d| d.0["spec"]["template"].clone())
                        .unwrap_or_default();
                    ((n, cause), (n, template))
                })
                .unzip()
        }
    };
    if revision > 0 {
        let template = templates
            .get(&revision)
            .context("unable to find the specified revision")?;
        println!("{}/{name} with revision #{revision}", kind.label());
        print_template(template);
        return Ok(());
    }
    println!("{}/{name} ", kind.label());
    println!("REVISION  CHANGE-CAUSE");
    for (n, cause) in causes {
        println!("{:<10}{}", n, cause.unwrap_or_else(|| "<none>".into()));
    }
    println!();
    Ok(())
}

/// A pod template as `kubectl rollout history --revision` prints it, in brief.
fn print_template(template: &serde_json::Value) {
    println!("Pod Template:");
    let labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut first = true;
    for (k, v) in &labels {
        let head = if first { "  Labels:\t" } else { "\t" };
        println!("{head}{k}={}", v.as_str().unwrap_or_default());
        first = false;
    }
    if labels.is_empty() {
        println!("  Labels:\t<none>");
    }
    println!("  Containers:");
    for c in template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("   {}:", c["name"].as_str().unwrap_or_default());
        println!("    Image:\t{}", c["image"].as_str().unwrap_or_default());
    }
    println!();
}

async fn undo(
    client: &Client,
    ns: &str,
    kind: Kind,
    name: &str,
    to_revision: i64,
) -> anyhow::Result<()> {
    match kind {
        Kind::Deployment => {
            let (d, sets) = deployment_revisions(client, ns, name).await?;
            if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
                bail!(
                    "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
                );
            }
            let chosen = if to_revision > 0 {
                sets.get(&to_revision)
            } else {
                // The previous revision: the second highest.
                sets.values().rev().nth(1)
            };
            let Some(rs) = chosen else {
                if to_revision > 0 {
                    bail!("unable to find specified revision {to_revision} in history");
                }
                bail!("no rollout history found for deployment {name:?}");
            };
            let mut template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove(HASH_LABEL);
            }
            let current = d
                .spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default();
            if current == template {
                let n = rs.annotations().get(REVISION).cloned().unwrap_or_default();
                println!(
                    "deployment.apps/{name} skipped rollback (current template already matches revision {n})"
                );
                return Ok(());
            }
            let mut annotations: BTreeMap<String, String> = d
                .annotations()
                .iter()
                .filter(|(k, _)| KEPT.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in rs.annotations() {
                if !KEPT.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
            let patch = json!([
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ]);
            let patch: json_patch::Patch = serde_json::from_value(patch)?;
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await?;
        }
        _ => {
            let uid = set_uid(client, ns, kind, name).await?;
            let revisions = set_revisions(client, ns, &uid).await?;
            let chosen = if to_revision > 0 {
                revisions.get(&to_revision)
            } else {
                revisions.values().rev().nth(1)
            };
            let Some(revision) = chosen else {
                bail!("no rollout history found for {} {name:?}", kind.label());
            };
            let data = revision
                .data
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or_default();
            patch_workload(client, ns, kind, name, data).await?;
        }
    }
    println!("{}/{name} rolled back", kind.label());
    Ok(())
}
