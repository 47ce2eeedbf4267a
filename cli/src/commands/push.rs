//! `skiff push FILE.wasm REF`: pushes a component to an OCI registry as a Wasm artifact (the
//! layout `wkg oci push` writes), with the credentials of the user's docker config.json.

use std::path::PathBuf;

use anyhow::Context;
use skiff_runtime::image::credentials::Keyring;
use skiff_runtime::image::registry::Registries;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component file.
    file: PathBuf,
    /// Where to push it, e.g. registry.example.com/team/hello:1.
    reference: String,
    /// Reach the registry over plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure: bool,
}

/// The registries to reach over plain HTTP: the one `reference` names, when `insecure`.
pub fn registries(reference: &str, insecure: bool) -> anyhow::Result<Registries> {
    let insecure = if insecure {
        vec![Registries::registry(reference)?]
    } else {
        Vec::new()
    };
    Ok(Registries::new(insecure))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let component =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let registries = registries(&args.reference, args.insecure)?;
    let digest = registries
        .push(component, &args.reference, &Keyring::for_user())
        .await
        .with_context(|| format!("pushing {}", args.reference))?;
    println!("pushed: {}", args.reference);
    println!("digest: {digest}");
    Ok(())
}
