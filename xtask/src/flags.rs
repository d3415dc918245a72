//! The command line, as rust-analyzer's xtask keeps it: every clap type lives here, at
//! the edge. Each command's flags turn into the library's plain option struct
//! (`bootstrap::Args`, `cluster::Args`, ...), so the engine never depends on clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use xtask::config::Format;
use xtask::{bootstrap, charts, cluster, down, status, tools};

/// Bring the local Kubernetes platform to a known-good state, and prove it.
///
/// Settings come from `[workspace.metadata.bootstrap]` in the workspace Cargo.toml.
/// Exit codes: 0 ok, 1 a stage or gate failed, 2 bad input (nothing changed),
/// 3 a prerequisite is missing, 128 + the signal's number when interrupted (Ctrl-C,
/// SIGTERM, SIGHUP).
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
pub struct Cli {
    /// Log file for everything the tools print (default: the `log` setting,
    /// ~/.devcontainer-setup.log).
    #[arg(long, global = true, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Helmfile environment (default: the `environment` setting).
    #[arg(long = "env", global = true, value_name = "ENV")]
    pub environment: Option<String>,
    /// Kube context (default: `k3d-<cluster>`, the k3d cluster's own; never the
    /// kubeconfig's current context). The cluster stage runs only for that context.
    #[arg(long, global = true, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Turn on an optional bundle (releases labelled `bundle: <NAME>`), besides those in
    /// the `bundles` setting. Repeatable. A bundle left off is not installed, and
    /// uninstalled if an earlier run installed it.
    #[arg(long = "bundle", global = true, value_name = "NAME")]
    pub bundles: Vec<String>,
    /// `human` (tables) or `json` (one JSON object on stdout, nothing else there).
    #[arg(long, global = true, value_enum, default_value_t)]
    format: FormatFlag,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `--format`, as the library knows it.
    pub fn format(&self) -> Format {
        match self.format {
            FormatFlag::Human => Format::Human,
            FormatFlag::Json => Format::Json,
        }
    }
}

/// `--format` (the library's [`Format`] has no clap derive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum FormatFlag {
    /// Readable text (a table where it fits).
    #[default]
    Human,
    /// One JSON document on stdout, for scripts.
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Bring the platform up and prove it: preflight (settings, model, pinned tools),
    /// charts (`vendor --check`), cluster, each Helmfile layer synced and gated in order
    /// (unchanged layers skipped), every release deployed, secrets (Vault bootstrap,
    /// db-migrations-local, ExternalSecrets), Tilt, and the repository steps (`steps`
    /// setting) where they are configured; one log and a summary (table, or JSON with
    /// `--format json`) at exit.
    Bootstrap(Bootstrap),
    /// Sync and gate just these layers (whatever their digest), in platform order.
    Sync(Sync),
    /// Show the run plan of a plain `bootstrap` (what `bootstrap --plan` prints),
    /// changing nothing: the pinned tools to install, the k3d cluster and what to do
    /// about it, the Helmfile layers in order with their releases, gates, images and
    /// decision, the bundles, the repository steps, the locked charts.
    Plan,
    /// Check the prerequisites: Docker daemon, k3d, helm, helmfile, kubectl (required)
    /// and tilt (optional), each against a minimum version, and whether the kubeconfig
    /// has the kube context the commands use (`k3d-<cluster>` or `--context`). Exit 3
    /// with install hints when a required one is missing.
    Doctor,
    /// Reconcile the k3d cluster with its config: create it when absent, recreate it
    /// only on config drift (hash stamped on the cluster) or a missing registry
    /// container, start it when stopped; remove legacy registry containers; wait until
    /// its API is ready. `--plan` prints the decision and changes nothing.
    /// `cluster stop` / `cluster start` pause and resume it, keeping everything in it.
    Cluster(Cluster),
    /// Vendor third-party Helm charts: `vendor add` locks a chart (archive + digest in
    /// charts.lock.yaml), `vendor` fetches missing or altered archives (each must match
    /// its digest), `vendor update` re-locks at a new version, `vendor --check` verifies
    /// offline that archives match and no release needs a remote repository.
    Vendor(Vendor),
    /// The secrets stage alone: wait for the Vault bootstrap Job, apply the
    /// `db-migrations-local` Secret (Flyway url/user/password) from the Postgres
    /// credentials when it differs, and require every ExternalSecret to be Ready.
    Secrets,
    /// The tilt stage alone: if Tilt answers on `tilt_port` with its Tiltfile Ready, do
    /// nothing; else start `tilt up` detached (output in tilt.log beside the log) and
    /// wait until the `(Tiltfile)` resource is Ready.
    Tilt,
    /// Is the platform healthy right now? Read-only, in well under a second: the
    /// cluster (up, stopped, drifted, absent), each layer (converged, drifted, failed,
    /// not installed: its recorded digest and its releases' state), each gate's
    /// recorded verdict (the last `helm test`), the Vault bootstrap, db-migrations-local,
    /// ExternalSecrets, Tilt. Exit 0 when all is well, 1 otherwise (each problem named
    /// with what to do). Changes nothing: no install, no sync, no `helm test`, no lock
    /// (its only tool call is `helmfile list`, for Go-template layers).
    Status(Status),
    /// Take the platform down: stop the Tilt that `cargo xtask` started, delete the k3d
    /// cluster (its nodes, registry, network, volumes and kube context). Keeps what makes
    /// the next bootstrap fast (the image cache the k3d config names, `.tools`) unless
    /// `--purge`. Nothing there: "nothing to do", exit 0. `--plan` changes nothing.
    Down(Down),
    /// Pinned tools: `tools install` downloads k3d, helm, helmfile, kubectl and tilt as
    /// pinned in [workspace.metadata.bootstrap.tools] into .tools/bin, each checked
    /// against its sha256 before it is made executable; a no-op when all are in place.
    /// Downloads honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
    Tools(Tools),
}

impl Command {
    /// The name in messages and in the lock file.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Bootstrap(_) => "bootstrap",
            Command::Sync(_) => "sync",
            Command::Plan => "plan",
            Command::Doctor => "doctor",
            Command::Cluster(_) => "cluster",
            Command::Vendor(_) => "vendor",
            Command::Secrets => "secrets",
            Command::Tilt => "tilt",
            Command::Tools(_) => "tools",
            Command::Status(_) => "status",
            Command::Down(_) => "down",
        }
    }

    /// Commands that change the platform take the run lock (`--plan` changes nothing).
    pub fn mutates(&self) -> bool {
        match self {
            Command::Bootstrap(flags) => !flags.plan,
            Command::Cluster(flags) => !flags.plan,
            Command::Down(flags) => !flags.plan,
            Command::Sync(_) | Command::Secrets | Command::Tilt => true,
            Command::Plan
            | Command::Doctor
            | Command::Status(_)
            | Command::Vendor(_)
            | Command::Tools(_) => false,
        }
    }

    /// Glances keep no log; `plan` keeps one as `bootstrap --plan` does (the plan it
    /// prints names the log, which holds what `helmfile template` said).
    pub fn writes_log(&self) -> bool {
        !matches!(self, Command::Doctor | Command::Status(_))
    }
}

#[derive(clap::Args, Debug)]
pub struct Bootstrap {
    /// Print what each stage would do and change nothing.
    #[arg(long)]
    plan: bool,
    /// Start at this layer (earlier layers must already be converged).
    #[arg(long, value_name = "LAYER", conflicts_with = "only")]
    from: Option<String>,
    /// Only this layer (earlier layers must already be converged).
    #[arg(long, value_name = "LAYER")]
    only: Option<String>,
    /// Sync every selected layer and run every repository step, even those whose
    /// inputs are unchanged.
    #[arg(long)]
    force: bool,
    /// Skip the tilt stage (do not start or check Tilt).
    #[arg(long)]
    no_tilt: bool,
    /// Do not install the pinned tools into .tools/bin first (`cargo xtask tools
    /// install`); use what is there and on PATH.
    #[arg(long)]
    no_install: bool,
    /// Write an HTML timeline of the run (stages, layers, gates, steps, image fetches,
    /// every tool call; the critical path marked) to PATH, default
    /// target/bootstrap-timings.html. Self-contained: opens in any browser, offline.
    /// The JSON summary then carries the same spans.
    #[arg(long, value_name = "PATH", num_args = 0..=1, require_equals = true)]
    timings: Option<Option<PathBuf>>,
}

impl Bootstrap {
    pub fn options(&self) -> bootstrap::Args {
        bootstrap::Args {
            plan: self.plan,
            from: self.from.clone(),
            only: self.only.clone(),
            force: self.force,
            no_tilt: self.no_tilt,
            no_install: self.no_install,
            timings: self.timings.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Sync {
    /// Layer names (file stems, e.g. `24-auth`), run in platform order.
    #[arg(required = true, value_name = "LAYER")]
    layers: Vec<String>,
    /// Do not install the pinned tools into .tools/bin first.
    #[arg(long)]
    no_install: bool,
}

impl Sync {
    pub fn options(&self) -> bootstrap::SyncArgs {
        bootstrap::SyncArgs { layers: self.layers.clone(), no_install: self.no_install }
    }
}

#[derive(clap::Args, Debug)]
pub struct Cluster {
    /// Print what would be done and change nothing.
    #[arg(long, global = true)]
    plan: bool,
    #[command(subcommand)]
    lifecycle: Option<Lifecycle>,
}

/// Pause and resume the cluster, keeping everything in it (`cargo xtask down` deletes).
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Stop the cluster's containers (`k3d cluster stop`), and first the Tilt that
    /// `cargo xtask` started; everything in the cluster is kept.
    Stop,
    /// Start a stopped cluster (`k3d cluster start`) and wait for its API; never creates
    /// or recreates one (`cargo xtask cluster` or `bootstrap` do).
    Start,
}

impl Cluster {
    pub fn options(&self) -> cluster::Args {
        let lifecycle = self.lifecycle.map(|which| match which {
            Lifecycle::Stop => cluster::Lifecycle::Stop,
            Lifecycle::Start => cluster::Lifecycle::Start,
        });
        cluster::Args { plan: self.plan, lifecycle }
    }
}

/// `cargo xtask vendor [--check | --prune]`, `vendor add`, `vendor update`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Vendor {
    /// Verify offline, changing nothing: every archive exists and matches its locked
    /// digest, and every Helmfile release chart is a local chart or a locked archive.
    /// Exit 1 listing each problem.
    #[arg(long, conflicts_with = "prune")]
    check: bool,
    /// Also delete archives beside the lock that it does not list.
    #[arg(long)]
    prune: bool,
    #[command(subcommand)]
    command: Option<VendorCommand>,
}

#[derive(Debug, Subcommand)]
enum VendorCommand {
    /// Download chart NAME at VERSION, write its archive next to the lock and record
    /// its digest in the lock.
    Add {
        name: String,
        /// Helm repository (`https://...`, whose `index.yaml` lists the chart) or OCI
        /// registry path (`oci://host/path`, the chart being `oci://host/path/NAME`).
        #[arg(long, alias = "repository", value_name = "URL")]
        repo: String,
        #[arg(long)]
        version: String,
    },
    /// Move a locked chart to VERSION (default: the repository's newest stable
    /// version) and re-lock it; the previous archive is removed.
    Update {
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
}

impl Vendor {
    pub fn options(&self) -> charts::Args {
        let command = self.command.as_ref().map(|command| match command {
            VendorCommand::Add { name, repo, version } => charts::VendorCommand::Add {
                name: name.clone(),
                repo: repo.clone(),
                version: version.clone(),
            },
            VendorCommand::Update { name, version } => {
                charts::VendorCommand::Update { name: name.clone(), version: version.clone() }
            }
        });
        charts::Args { check: self.check, prune: self.prune, command }
    }
}

#[derive(clap::Args, Debug)]
pub struct Status {
    /// Leave Tilt out (for a platform brought up with `bootstrap --no-tilt`).
    #[arg(long)]
    no_tilt: bool,
}

impl Status {
    pub fn options(&self) -> status::Args {
        status::Args { no_tilt: self.no_tilt }
    }
}

#[derive(clap::Args, Debug)]
pub struct Down {
    /// Print what would be stopped and removed, and change nothing.
    #[arg(long)]
    plan: bool,
    /// Also remove what `down` keeps so the next bootstrap is fast: the image caches
    /// with their volumes, the images an earlier bootstrap downloaded to the host, and
    /// `.tools` (pinned tools, step records). The log files are kept.
    #[arg(long)]
    purge: bool,
}

impl Down {
    pub fn options(&self) -> down::Args {
        down::Args { plan: self.plan, purge: self.purge }
    }
}

/// `cargo xtask tools ...`
#[derive(Debug, clap::Args)]
pub struct Tools {
    #[command(subcommand)]
    command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Download the pinned tools that are missing or at another version into .tools/bin,
    /// each verified against its pinned sha256 before it is made executable. A no-op
    /// when all are in place. Downloads honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
    /// Exit 3 when a download is unreachable or this platform has no pinned checksum,
    /// 1 on a checksum mismatch; nothing is half-installed.
    Install {
        /// Only these tools (default: every pinned one).
        tools: Vec<String>,
    },
}

impl Tools {
    pub fn options(&self) -> tools::Args {
        match &self.command {
            ToolsCommand::Install { tools } => {
                tools::Args { command: tools::ToolsCommand::Install { tools: tools.clone() } }
            }
        }
    }
}
