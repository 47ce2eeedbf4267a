//! `skiff pull REF`: pulls an image from its registry into the local node's store, as the node
//! would for a pod.

use std::path::PathBuf;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image, e.g. registry.example.com/team/hello:1.
    reference: String,
    /// Reach the registry over plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure: bool,
    /// The data directory of the server (or node) whose store to fill
    /// [default: ~/.local/share/skiff].
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::image::store(args.data_dir)?;
    let registries = super::push::registries(&args.reference, args.insecure)?;
    let pulled = registries
        .pull(
            &store,
            &args.reference,
            &skiff_runtime::image::credentials::Keyring::for_user(),
        )
        .await
        .with_context(|| format!("pulling {}", args.reference))?;
    let image = pulled.image;
    if pulled.downloaded {
        println!("pulled: {}", image.reference);
    } else {
        println!("up to date: {}", image.reference);
    }
    println!(
        "digest: {}",
        image.manifest.as_deref().unwrap_or(&image.digest)
    );
    println!("component: {} ({} bytes)", image.digest, image.size);
    Ok(())
}
