//! The `skiff` command: `skiff server` runs the control plane; the kubectl-style verbs talk to
//! any Kubernetes API, Skiff's own first. One file per command under `commands/`.

#![forbid(unsafe_code)]

mod commands;
mod kubeconfig;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Skiff: Kubernetes for WebAssembly workloads.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: API server and store.
    Server(commands::server::Args),
    /// Show objects.
    Get(commands::get::Args),
    /// Create or update objects from files.
    Apply(commands::apply::Args),
    /// Delete objects by name, by file or by label.
    Delete(commands::delete::Args),
    /// Show an object in detail.
    Describe(commands::describe::Args),
    /// Create objects from arguments.
    Create(commands::create::Args),
    /// Add, change or remove labels.
    Label(commands::label::Args),
    /// Set the replicas of a Deployment, ReplicaSet or StatefulSet.
    Scale(commands::scale::Args),
    /// Follow, list, undo, restart, pause or resume rollouts.
    Rollout(commands::rollout::Args),
    /// Change a workload's images.
    Set(commands::set::Args),
    /// Keep new pods off a node.
    Cordon(commands::cordon::Args),
    /// Let new pods onto a node again.
    Uncordon(commands::cordon::Args),
    /// Cordon a node and evict its pods, as their disruption budgets allow.
    Drain(commands::cordon::DrainArgs),
    /// Add, change or remove annotations.
    Annotate(commands::label::AnnotateArgs),
    /// Run a node agent that joins a server.
    Node(commands::node::Args),
    /// Manage the local node's images.
    Image(commands::image::Args),
    /// Push a component to an OCI registry.
    Push(commands::push::Args),
    /// Pull an image into the local node's store.
    Pull(commands::pull::Args),
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // Two TLS providers are linked in (ring for our own TLS, aws-lc-rs through the OCI
    // client's HTTP stack), so rustls has no default of its own: every TLS client and server
    // of the process uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => commands::server::run(args).await,
            Command::Image(args) => commands::image::run(args),
            Command::Push(args) => commands::push::run(args).await,
            Command::Pull(args) => commands::pull::run(args).await,
            Command::Node(args) => commands::node::run(args).await,
            Command::Get(args) => commands::get::run(args).await,
            Command::Apply(args) => commands::apply::run(args).await,
            Command::Delete(args) => commands::delete::run(args).await,
            Command::Describe(args) => commands::describe::run(args).await,
            Command::Create(args) => commands::create::run(args).await,
            Command::Label(args) => commands::label::run(args).await,
            Command::Annotate(args) => commands::label::annotate(args).await,
            Command::Scale(args) => commands::scale::run(args).await,
            Command::Rollout(args) => commands::rollout::run(args).await,
            Command::Set(args) => commands::set::run(args).await,
            Command::Cordon(args) => commands::cordon::cordon(args).await,
            Command::Uncordon(args) => commands::cordon::uncordon(args).await,
            Command::Drain(args) => commands::cordon::drain(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
