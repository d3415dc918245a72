//! `cargo xtask`: parse the command line, resolve the context once (settings, target,
//! sinks, signals), call the library, and turn its error into an exit code. The result
//! is printed by the sinks; an error is printed here only when no result carried it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xtask::cancel::Cancel;
use xtask::config::{Context, Format, Overrides};
use xtask::error::{Error, Result, Signal};
use xtask::events::{Event, Events, Sink};
use xtask::lock::RunLock;
use xtask::redact::Redactor;
use xtask::session::Session;
use xtask::sinks::{Json, LogFile, Terminal};
use xtask::{bootstrap, charts, cluster, doctor, down, plan, secrets, status, tilt, tools};

/// Bring the local Kubernetes platform to a known-good state, and prove it.
///
/// Settings come from `[workspace.metadata.bootstrap]` in the workspace Cargo.toml.
/// Exit codes: 0 ok, 1 a stage or gate failed, 2 bad input (nothing changed),
/// 3 a prerequisite is missing, 128 + the signal's number when interrupted (Ctrl-C,
/// SIGTERM, SIGHUP).
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    /// Log file for everything the tools print (default: the `log` setting,
    /// ~/.devcontainer-setup.log).
    #[arg(long, global = true, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Helmfile environment (default: the `environment` setting).
    #[arg(long = "env", global = true, value_name = "ENV")]
    environment: Option<String>,
    /// Kube context (default: `k3d-<cluster>`, the k3d cluster's own; never the
    /// kubeconfig's current context). The cluster stage runs only for that context.
    #[arg(long, global = true, value_name = "CONTEXT")]
    context: Option<String>,
    /// Turn on an optional bundle (releases labelled `bundle: <NAME>`), besides those in
    /// the `bundles` setting. Repeatable. A bundle left off is not installed, and
    /// uninstalled if an earlier run installed it.
    #[arg(long = "bundle", global = true, value_name = "NAME")]
    bundles: Vec<String>,
    /// `human` (tables) or `json` (one JSON object on stdout, nothing else there).
    #[arg(long, global = true, value_enum, default_value_t)]
    format: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring the platform up and prove it: preflight (settings, model, pinned tools),
    /// cluster, charts (`vendor --check`), each Helmfile layer synced and gated in order
    /// (unchanged layers skipped), every release deployed, secrets (Vault bootstrap,
    /// db-migrations-local, ExternalSecrets), Tilt, and the repository steps (`steps`
    /// setting) where they are configured; one log and a summary (table, or JSON with
    /// `--format json`) at exit.
    Bootstrap(bootstrap::Args),
    /// Sync and gate just these layers (whatever their digest), in platform order.
    Sync(bootstrap::SyncArgs),
    /// Show what would be brought up, changing nothing: the k3d cluster and its config
    /// hash, the Helmfile layers in order with their releases and gates, the locked charts.
    Plan,
    /// Check the prerequisites: Docker daemon, k3d, helm, helmfile, kubectl (required)
    /// and tilt (optional), each against a minimum version, and the current kube
    /// context. Exit 3 with install hints when a required one is missing.
    Doctor,
    /// Reconcile the k3d cluster with its config: create it when absent, recreate it
    /// only on config drift (hash stamped on the cluster) or a missing registry
    /// container, start it when stopped; remove legacy registry containers; wait until
    /// its API is ready. `--plan` prints the decision and changes nothing.
    /// `cluster stop` / `cluster start` pause and resume it, keeping everything in it.
    Cluster(cluster::Args),
    /// Vendor third-party Helm charts: `vendor add` locks a chart (archive + digest in
    /// charts.lock.yaml), `vendor` fetches missing or altered archives (each must match
    /// its digest), `vendor update` re-locks at a new version, `vendor --check` verifies
    /// offline that archives match and no release needs a remote repository.
    Vendor(charts::Args),
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
    Status(status::Args),
    /// Take the platform down: stop the Tilt that `cargo xtask` started, delete the k3d
    /// cluster (its nodes, registry, network, volumes and kube context). Keeps what makes
    /// the next bootstrap fast (images the bootstrap downloaded, `.tools`) unless
    /// `--purge`. Nothing there: "nothing to do", exit 0. `--plan` changes nothing.
    Down(down::Args),
    /// Pinned tools: `tools install` downloads k3d, helm, helmfile, kubectl and tilt as
    /// pinned in [workspace.metadata.bootstrap.tools] into .tools/bin, each checked
    /// against its sha256 before it is made executable; a no-op when all are in place.
    /// Downloads honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
    Tools(tools::Args),
}

impl Command {
    /// The name in messages and in the lock file.
    fn name(&self) -> &'static str {
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
    fn mutates(&self) -> bool {
        match self {
            Command::Bootstrap(args) => !args.plan,
            Command::Cluster(args) => !args.plan,
            Command::Down(args) => !args.plan,
            Command::Sync(_) | Command::Secrets | Command::Tilt => true,
            Command::Plan
            | Command::Doctor
            | Command::Status(_)
            | Command::Vendor(_)
            | Command::Tools(_) => false,
        }
    }

    /// Read-only commands keep no log.
    fn writes_log(&self) -> bool {
        !matches!(self, Command::Plan | Command::Doctor | Command::Status(_))
    }
}

/// How long a run may take to wind down after the first signal (a tool call's SIGTERM
/// grace, its SIGKILL and output, the summary) before we exit without it.
const FORCE_AFTER: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = Arc::new(Terminal::new(cli.format == Format::Human));
    let json = Arc::new(Json::default());
    // The run's redactor: the error printed here hides what its events hid.
    let redactor = Redactor::default();
    match run(&cli, terminal.clone(), json.clone(), &redactor) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !(terminal.shown_result() || json.shown_result()) {
                print_error(&err, cli.format, &redactor);
            }
            ExitCode::from(err.kind().exit_code())
        }
    }
}

/// An error no result carried: on stderr for people, and with `--format json` also as
/// the one JSON object on stdout for scripts. Redacted like every event.
fn print_error(err: &Error, format: Format, redactor: &Redactor) {
    let error = redactor.redact(&format!("{err:#}")).into_owned();
    let remediation = err.remediation().map(|r| redactor.redact(r).into_owned());
    eprintln!("error: {error}");
    if let Some(remediation) = &remediation {
        eprintln!("what to do: {remediation}");
    }
    match format {
        Format::Human => {}
        Format::Json => {
            let status = if err.kind().is_interrupted() { "interrupted" } else { "failed" };
            let object = serde_json::json!({
                "status": status,
                "exit_code": err.kind().exit_code(),
                "error": error,
                "remediation": remediation,
            });
            println!("{object}");
        }
    }
}

fn run(cli: &Cli, terminal: Arc<Terminal>, json: Arc<Json>, redactor: &Redactor) -> Result<()> {
    let overrides = Overrides {
        log: cli.log.clone(),
        environment: cli.environment.clone(),
        kube_context: cli.context.clone(),
        bundles: cli.bundles.clone(),
    };
    let ctx = Context::load(&overrides)?;
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(terminal)];
    if cli.format == Format::Json {
        sinks.push(Box::new(json));
    }
    if cli.command.writes_log() {
        sinks.push(Box::new(LogFile::open(&ctx.log_path)?));
    }
    let session = Session {
        events: Events::new(sinks).with_redactor(redactor.clone()),
        cancel: Cancel::new(),
        log_path: cli.command.writes_log().then(|| ctx.log_path.clone()),
        ..ctx.session.clone()
    };
    let ctx = ctx.with_session(session);
    // Mutating commands: the right cluster, and one at a time, before any tool call.
    let _lock = match cli.command.mutates() {
        true => {
            ctx.check_context_allowed()?;
            Some(RunLock::acquire(&ctx.root, cli.command.name())?)
        }
        false => None,
    };
    listen_for_signals(&ctx.session);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Bootstrap(args) => bootstrap::run(&ctx, args).await,
            Command::Sync(args) => bootstrap::sync(&ctx, args).await,
            Command::Plan => plan::run(&ctx).await,
            Command::Doctor => doctor::run(&ctx).await,
            Command::Cluster(args) => match args.lifecycle {
                Some(which) => down::lifecycle(&ctx, which, args.plan).await,
                None => cluster::run(&ctx, args).await,
            },
            Command::Vendor(args) => charts::run(&ctx, args).await,
            Command::Secrets => secrets::run(&ctx).await,
            Command::Tilt => tilt::run(&ctx).await,
            Command::Tools(args) => tools::run(&ctx, args).await,
            Command::Status(args) => status::run(&ctx, args).await,
            Command::Down(args) => down::run(&ctx, args).await,
        }
    });
    // A command that never waits (plan) finishes its work; a signal still counts.
    match result {
        Ok(()) if ctx.session.cancel.requested() => {
            Err(ctx.session.cancel.error("interrupted; the command had finished its work"))
        }
        other => other,
    }
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal, a container stop, CI's `timeout`)
/// stop the running step; the command winds down with its summary. A second signal, or
/// a run still going [`FORCE_AFTER`] the first, kills the tool process groups and exits
/// at once. The listener has its own thread so it is heard while the command is busy.
fn listen_for_signals(session: &Session) {
    use tokio::signal::unix::{SignalKind, signal};
    let session = session.clone();
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let Ok(runtime) = runtime else { return };
        runtime.block_on(async move {
            let listen = |kind| signal(kind).ok();
            let (Some(mut int), Some(mut term), Some(mut hup)) = (
                listen(SignalKind::interrupt()),
                listen(SignalKind::terminate()),
                listen(SignalKind::hangup()),
            ) else {
                return;
            };
            let mut next = async || {
                tokio::select! {
                    _ = int.recv() => Signal::Interrupt,
                    _ = term.recv() => Signal::Terminate,
                    _ = hup.recv() => Signal::Hangup,
                }
            };
            let first = next().await;
            session.cancel.request(first);
            session.events.emit(Event::Interrupted { signal: first, forced: false });
            tokio::select! {
                _ = next() => {}
                () = tokio::time::sleep(FORCE_AFTER) => {}
            }
            session.events.emit(Event::Interrupted { signal: first, forced: true });
            session.cancel.kill_groups();
            std::process::exit(i32::from(xtask::error::ErrorKind::Interrupted(first).exit_code()));
        });
    });
    // Without the listener the signals keep their default action (the process ends).
    drop(spawned);
}
