//! `skiff label` and `skiff annotate`: `key=value` sets, `key-` removes, by merge patch.

use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};

use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff label`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resource type, name, then `key=value` or `key-` changes (or `type/name` then changes).
    #[arg(required = true)]
    words: Vec<String>,
    /// Replace values that are already set.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Flags of `skiff annotate` (the same as label's).
pub type AnnotateArgs = Args;

/// Runs `skiff label`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    change(args, "labels", "labeled").await
}

/// Runs `skiff annotate`.
pub async fn annotate(args: Args) -> anyhow::Result<()> {
    change(args, "annotations", "annotated").await
}

async fn change(args: Args, field: &str, verb: &str) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let (word, name, changes) = crate::kubeconfig::target(&args.words)?;
    if changes.is_empty() {
        anyhow::bail!("at least one {field} update is required");
    }
    let served = cluster.resolve(&word).await?;
    let api = cluster.api(&served, false);
    let current = api.get(&name).await?;
    let existing = if field == "labels" {
        current.metadata.labels
    } else {
        current.metadata.annotations
    }
    .unwrap_or_default();
    let mut patch = Map::new();
    for change in changes {
        if let Some(key) = change.strip_suffix('-') {
            patch.insert(key.to_string(), Value::Null);
        } else if let Some((k, v)) = change.split_once('=') {
            if existing.get(k).is_some_and(|old| old != v) && !args.overwrite {
                anyhow::bail!(
                    "'{k}' already has a value ({}), and --overwrite is false",
                    existing[k]
                );
            }
            patch.insert(k.to_string(), json!(v));
        } else {
            anyhow::bail!("invalid {field} update: {change}");
        }
    }
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {field: patch}})),
    )
    .await?;
    let kind = served.qualified_kind();
    println!("{kind}/{name} {verb}");
    Ok(())
}
