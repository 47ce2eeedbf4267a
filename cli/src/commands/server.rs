//! `skiff server`: the control plane in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use skiff_control::server::{ServerConfig, run as serve};

/// Flags of `skiff server`; each has a `SKIFF_*` environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the store, certificates and admin kubeconfig live [default: ~/.local/share/skiff].
    #[arg(long, env = "SKIFF_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve the HTTPS API on; port 0 picks a free port.
    #[arg(long, env = "SKIFF_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Extra DNS name or IP address for the serving certificate (repeatable).
    #[arg(long = "tls-san", env = "SKIFF_TLS_SAN", value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Revisions of change history kept for watches; older resourceVersions get 410 Expired.
    #[arg(long, env = "SKIFF_HISTORY_REVISIONS", default_value_t = 100_000)]
    history_revisions: i64,
    /// Acknowledge writes before they reach the disk (faster; a power loss may lose the last writes).
    #[arg(long, env = "SKIFF_NO_FSYNC")]
    no_fsync: bool,
    /// Do not run this controller (repeatable): namespace, garbage-collector.
    #[arg(long, env = "SKIFF_DISABLE", value_delimiter = ',')]
    disable: Vec<String>,
}

/// The data directory: the flag, else `~/.local/share/skiff`.
pub fn data_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/skiff"))
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = ServerConfig {
        data_dir: data_dir(args.data_dir)?,
        listen: args.listen,
        tls_san: args.tls_san,
        history: args.history_revisions,
        durable: !args.no_fsync,
        disable: args.disable,
    };
    for name in &config.disable {
        if !skiff_control::controllers::NAMES.contains(&name.as_str()) {
            anyhow::bail!(
                "--disable {name}: no such controller (known: {})",
                skiff_control::controllers::NAMES.join(", ")
            );
        }
    }
    serve(config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
