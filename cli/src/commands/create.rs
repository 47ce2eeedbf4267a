//! `skiff create`: objects from arguments (`namespace NAME`, `deployment NAME --image=I`,
//! `job NAME --image=I [-- COMMAND]`, `job NAME --from=cronjob/C`) or from files (`-f`), as
//! kubectl's generators make them.

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

use super::apply::{api_for_object, read_objects};
use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to create: `namespace NAME`, `deployment NAME`, `job NAME`.
    words: Vec<String>,
    /// Create the objects in these files.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// The image of each container (deployment, job).
    #[arg(long)]
    image: Vec<String>,
    /// The replicas of a deployment.
    #[arg(long, default_value_t = 1)]
    replicas: i32,
    /// The port a deployment's container exposes.
    #[arg(long)]
    port: Option<i32>,
    /// Make a job from a CronJob's template: `cronjob/NAME`.
    #[arg(long)]
    from: Option<String>,
    /// The command of a job's container, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Runs `skiff create`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let mut objects: Vec<serde_json::Value> = read_objects(&args.files, false)?
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    match args.words.as_slice() {
        [] => {}
        [kind, name] if matches!(kind.as_str(), "namespace" | "ns") => objects
            .push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})),
        [kind, name] if matches!(kind.as_str(), "deployment" | "deploy") => {
            objects.push(deployment(name, &args.image, args.replicas, args.port)?);
        }
        [kind, name] if kind == "job" => match &args.from {
            Some(from) => objects.push(job_from_cron_job(&cluster, name, from).await?),
            None => objects.push(job(name, &args.image, &args.command)?),
        },
        other => anyhow::bail!("unknown object to create: {}", other.join(" ")),
    }
    for object in objects {
        let (api, name, kind): (Api<DynamicObject>, _, _) =
            api_for_object(&mut cluster, &object).await?;
        let object: DynamicObject = serde_json::from_value(object)?;
        api.create(&PostParams::default(), &object).await?;
        println!("{kind}/{name} created");
    }
    Ok(())
}

/// The container name kubectl derives from an image: its last path part without tag or digest.
fn container_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let bare = last.split(['@', ':']).next().unwrap_or(last);
    bare.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `create deployment`: labels `app=NAME`, one container per image.
fn deployment(
    name: &str,
    images: &[String],
    replicas: i32,
    port: Option<i32>,
) -> anyhow::Result<serde_json::Value> {
    if images.is_empty() {
        anyhow::bail!("required flag(s) \"image\" not set");
    }
    let containers: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let mut c = json!({"name": container_name(image), "image": image});
            if let Some(port) = port {
                c["ports"] = json!([{"containerPort": port}]);
            }
            c
        })
        .collect();
    Ok(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
        },
    }))
}

/// `create job --image`: one container named after the job, never restarted.
fn job(name: &str, images: &[String], command: &[String]) -> anyhow::Result<serde_json::Value> {
    let [image] = images else {
        anyhow::bail!("--image or --from must be specified (once)");
    };
    let mut container = json!({"name": name, "image": image});
    if !command.is_empty() {
        container["command"] = json!(command);
    }
    Ok(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }))
}

/// `create job --from=cronjob/NAME`: the CronJob's job template, owned by it and marked as
/// made by hand.
async fn job_from_cron_job(
    cluster: &Cluster,
    name: &str,
    from: &str,
) -> anyhow::Result<serde_json::Value> {
    let Some(cron_name) = from
        .strip_prefix("cronjob/")
        .or_else(|| from.strip_prefix("cronjobs/"))
    else {
        anyhow::bail!("from must be an existing cronjob: {from}");
    };
    let api: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let cron = api.get(cron_name).await?;
    let template = cron.spec.map(|s| s.job_template).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    Ok(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name,
            "labels": meta.labels,
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cron_name,
                                 "uid": cron.metadata.uid, "controller": true}],
        },
        "spec": template.spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_the_image_as_kubectl_makes_them() {
        assert_eq!(container_name("registry.local/bootcamp:1"), "bootcamp");
        assert_eq!(
            container_name("docker.io/jocatalin/kubernetes-bootcamp:v2"),
            "kubernetes-bootcamp"
        );
        assert_eq!(container_name("nginx@sha256:abc"), "nginx");
        assert_eq!(container_name("my_app"), "my-app");
    }
}
