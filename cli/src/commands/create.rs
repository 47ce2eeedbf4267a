//! `skiff create`: objects from arguments (`namespace NAME`) or from files (`-f`).

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

use super::apply::{api_for_object, read_objects};
use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to create: `namespace NAME`.
    words: Vec<String>,
    /// Create the objects in these files.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
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
