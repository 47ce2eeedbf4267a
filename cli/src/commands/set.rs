//! `skiff set image`: changes container images of a workload's pod template (or a pod).

use anyhow::bail;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::kubeconfig::{Cluster, ClusterArgs, target};

/// Flags of `skiff set`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Set images: `TYPE/NAME CONTAINER=IMAGE ...` (`*=IMAGE` for every container).
    Image {
        #[arg(required = true)]
        words: Vec<String>,
    },
}

/// Runs `skiff set`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let What::Image { words } = args.what;
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let (word, name, changes) = target(&words)?;
    if changes.is_empty() {
        bail!("at least one image update is required");
    }
    let served = cluster.resolve(&word).await?;
    let api = cluster.api(&served, false);
    let object = serde_json::to_value(api.get(&name).await?)?;
    let is_pod = served.api.kind == "Pod" && served.api.group.is_empty();
    let spec = if is_pod {
        &object["spec"]
    } else if served.api.kind == "CronJob" {
        &object["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    } else {
        &object["spec"]["template"]["spec"]
    };
    let mut containers = Vec::new();
    let mut init = Vec::new();
    for change in changes {
        let Some((container, image)) = change.split_once('=') else {
            bail!("invalid image update: {change}");
        };
        let mut found = false;
        for (list, out) in [
            ("containers", &mut containers),
            ("initContainers", &mut init),
        ] {
            for c in spec[list].as_array().into_iter().flatten() {
                let c_name = c["name"].as_str().unwrap_or_default();
                if container == "*" || c_name == container {
                    out.push(json!({"name": c_name, "image": image}));
                    found = true;
                }
            }
        }
        if !found {
            bail!("unable to find container named \"{container}\"");
        }
    }
    let mut pod_spec = json!({});
    if !containers.is_empty() {
        pod_spec["containers"] = Value::Array(containers);
    }
    if !init.is_empty() {
        pod_spec["initContainers"] = Value::Array(init);
    }
    let patch = if is_pod {
        json!({"spec": pod_spec})
    } else if served.api.kind == "CronJob" {
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}})
    } else {
        json!({"spec": {"template": {"spec": pod_spec}}})
    };
    api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    println!("{}/{name} image updated", served.qualified_kind());
    Ok(())
}
