//! `skiff delete`: objects by type and name, by label selector, or as listed in files.

use kube::api::{DeleteParams, ListParams, PropagationPolicy};

use super::apply::{api_for_object, read_objects};
use super::get::parse_targets;
use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resource type and names, or `type/name`.
    targets: Vec<String>,
    /// Delete the objects in these files.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// Label selector choosing what to delete.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Delete every object of the type.
    #[arg(long)]
    all: bool,
    /// What happens to dependents: background, foreground or orphan.
    #[arg(long, default_value = "background")]
    cascade: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn params(cascade: &str) -> anyhow::Result<DeleteParams> {
    Ok(DeleteParams {
        propagation_policy: Some(match cascade {
            "background" | "true" => PropagationPolicy::Background,
            "foreground" => PropagationPolicy::Foreground,
            "orphan" | "false" => PropagationPolicy::Orphan,
            other => anyhow::bail!(
                "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
            ),
        }),
        ..Default::default()
    })
}

/// Runs `skiff delete`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let dp = params(&args.cascade)?;
    for (_, object) in read_objects(&args.files, false)? {
        let (api, name, kind) = api_for_object(&mut cluster, &object).await?;
        api.delete(&name, &dp).await?;
        println!("{kind} \"{name}\" deleted");
    }
    if args.targets.is_empty() {
        return Ok(());
    }
    for (word, names) in parse_targets(&args.targets) {
        let served = cluster.resolve(&word).await?;
        let api = cluster.api(&served, false);
        let names = if names.is_empty() {
            if args.selector.is_none() && !args.all {
                anyhow::bail!("resource(s) were provided, but no name was specified");
            }
            let mut lp = ListParams::default();
            if let Some(s) = &args.selector {
                lp = lp.labels(s);
            }
            api.list(&lp)
                .await?
                .items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect()
        } else {
            names
        };
        let kind = served.qualified_kind();
        for name in names {
            api.delete(&name, &dp).await?;
            println!("{kind} \"{name}\" deleted");
        }
    }
    Ok(())
}
