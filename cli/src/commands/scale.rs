//! `skiff scale`: sets the replicas of anything with a scale subresource.

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::kubeconfig::{Cluster, ClusterArgs, target};

/// Flags of `skiff scale`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `TYPE/NAME` or `TYPE NAME`.
    #[arg(required = true)]
    words: Vec<String>,
    /// The number of replicas wanted.
    #[arg(long)]
    replicas: i32,
    /// Only when the replicas are this many now.
    #[arg(long = "current-replicas")]
    current_replicas: Option<i32>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Runs `skiff scale`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let (word, name, rest) = target(&args.words)?;
    if !rest.is_empty() {
        anyhow::bail!("unexpected arguments: {}", rest.join(" "));
    }
    if args.replicas < 0 {
        anyhow::bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let served = cluster.resolve(&word).await?;
    let api = cluster.api(&served, false);
    if let Some(current) = args.current_replicas {
        let scale = api.get_scale(&name).await?;
        let now = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        if now != current {
            anyhow::bail!("Expected replicas to be {current}, was {now}");
        }
    }
    let patch = json!({"spec": {"replicas": args.replicas}});
    api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    println!("{}/{name} scaled", served.qualified_kind());
    Ok(())
}
