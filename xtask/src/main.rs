//! `cargo xtask`: parse the command line, build the context once, call the library,
//! and turn its error into a message on stderr and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::config::Context;
use xtask::{bootstrap, charts, cluster, doctor, error, plan, secrets, tilt, tools};

/// Bring the local Kubernetes platform to a known-good state, and prove it.
///
/// Settings come from `[workspace.metadata.bootstrap]` in the workspace Cargo.toml.
/// Exit codes: 0 ok, 1 a stage or gate failed, 2 bad input (nothing changed),
/// 3 a prerequisite is missing, 130 interrupted.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    /// Log file for everything the tools print (default: the `log` setting,
    /// ~/.devcontainer-setup.log).
    #[arg(long, global = true, value_name = "PATH")]
    log: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring the platform up and prove it: preflight (settings, model, pinned tools),
    /// cluster, charts (`vendor --check`), each Helmfile layer synced and gated in order
    /// (unchanged layers skipped), every release deployed, secrets (Vault bootstrap,
    /// db-migrations-local, ExternalSecrets), Tilt; one log and a summary (table, or
    /// JSON with `--format json`) at exit.
    Bootstrap(bootstrap::Args),
    /// Sync and gate just these layers (whatever their digest), in platform order.
    Sync(bootstrap::SyncArgs),
    /// Show what would be brought up, changing nothing: the k3d cluster and its config
    /// hash, the Helmfile layers in order with their releases and gates, the locked charts.
    Plan(plan::Args),
    /// Check the prerequisites: Docker daemon, k3d, helm, helmfile, kubectl (required)
    /// and tilt (optional), each against a minimum version, and the current kube
    /// context. Exit 3 with install hints when a required one is missing.
    Doctor(doctor::Args),
    /// Reconcile the k3d cluster with its config: create it when absent, recreate it
    /// only on config drift (hash stamped on the cluster) or a missing registry
    /// container, start it when stopped; remove legacy registry containers; wait until
    /// its API is ready. `--plan` prints the decision and changes nothing.
    Cluster(cluster::Args),
    /// Vendor third-party Helm charts: `vendor add` locks a chart (archive + digest in
    /// charts.lock.yaml), `vendor` fetches missing or altered archives (each must match
    /// its digest), `vendor update` re-locks at a new version, `vendor --check` verifies
    /// offline that archives match and no release needs a remote repository.
    Vendor(charts::Args),
    /// The secrets stage alone: wait for the Vault bootstrap Job, apply the
    /// `db-migrations-local` Secret (Flyway url/user/password) from the Postgres
    /// credentials when it differs, and require every ExternalSecret to be Ready.
    Secrets(secrets::Args),
    /// The tilt stage alone: if Tilt answers on `tilt_port` with its Tiltfile Ready, do
    /// nothing; else start `tilt up` detached (output in tilt.log beside the log) and
    /// wait until the `(Tiltfile)` resource is Ready.
    Tilt(tilt::Args),
    /// Pinned tools: `tools install` downloads k3d, helm, helmfile, kubectl and tilt as
    /// pinned in [workspace.metadata.bootstrap.tools] into .tools/bin, each checked
    /// against its sha256 before it is made executable; a no-op when all are in place.
    Tools(tools::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(u8::try_from(error::exit_code(&err)).unwrap_or(1))
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let ctx = Context::load(cli.log.as_deref())?;
    // Pinned tools (`cargo xtask tools install`) come before PATH for every command.
    xtask::exec::set_tool_path(xtask::tools::path_with_tools(&ctx.root));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // From here Ctrl-C stops the running step and the command exits 130.
        xtask::cancel::listen();
        let result = match &cli.command {
            Command::Bootstrap(args) => bootstrap::run(&ctx, args).await,
            Command::Sync(args) => bootstrap::sync(&ctx, args).await,
            Command::Plan(args) => plan::run(&ctx, args).await,
            Command::Doctor(args) => doctor::run(&ctx, args).await,
            Command::Cluster(args) => cluster::run(&ctx, args).await,
            Command::Vendor(args) => charts::run(&ctx, args).await,
            Command::Secrets(args) => secrets::run(&ctx, args).await,
            Command::Tilt(args) => tilt::run(&ctx, args).await,
            Command::Tools(args) => tools::run(&ctx, args).await,
        };
        // A command that never waits (plan) finishes its work; Ctrl-C still means 130.
        match result {
            Ok(()) if xtask::cancel::requested() => {
                Err(xtask::cancel::error("interrupted; the command had finished its work"))
            }
            other => other,
        }
    })
}
