//! `skiff image import|ls|rm`: the local node's image store, for offline use and quick starts
//! (as `kind load` and `k3s ctr images import`).

use std::path::PathBuf;

use anyhow::Context;
use skiff_runtime::image::ImageStore;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ImageCommand,
    /// The data directory of the server (or node) whose store to use
    /// [default: ~/.local/share/skiff].
    #[arg(long, env = "SKIFF_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Load a component from a .wasm file under a name.
    Import {
        /// The component file.
        file: PathBuf,
        /// The image reference pods name it by, e.g. registry.local/hello:1.
        #[arg(long)]
        name: String,
    },
    /// List the images the node holds.
    Ls,
    /// Remove an image.
    Rm {
        /// The image reference.
        reference: String,
    },
}

/// The store of the node whose data lives under `data_dir`.
pub fn store(data_dir: Option<PathBuf>) -> anyhow::Result<ImageStore> {
    let dir = super::server::data_dir(data_dir)?;
    Ok(ImageStore::open(
        super::server::node_dir(&dir).join("images"),
    )?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let images = store(args.data_dir)?;
    match args.command {
        ImageCommand::Import { file, name } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let image = images.import(&bytes, &name)?;
            println!("{} {}", image.reference, image.digest);
        }
        ImageCommand::Ls => {
            println!("{:<50} {:<20} {:>10}", "IMAGE", "DIGEST", "SIZE");
            for image in images.list()? {
                let short = image.digest.trim_start_matches("sha256:");
                println!(
                    "{:<50} {:<20} {:>10}",
                    image.reference,
                    format!("sha256:{}", &short[..12.min(short.len())]),
                    human_size(image.size)
                );
            }
        }
        ImageCommand::Rm { reference } => {
            if !images.remove(&reference)? {
                anyhow::bail!("image {reference} not found");
            }
            println!("removed {reference}");
        }
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b}B"),
    }
}
