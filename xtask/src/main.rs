//! `cargo xtask`: parse the command line ([`flags`]), resolve the context once (settings, target,
//! sinks, signals), call the library, and turn its error into an exit code. The result
//! is printed by the sinks; an error is printed here only when no result carried it.

mod flags;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use flags::{Cli, Command};
use xtask::cancel::Cancel;
use xtask::config::{Context, Format, Overrides};
use xtask::error::{Error, ErrorDoc, Result, SCHEMA_VERSION, Signal};
use xtask::events::{Event, Events, Sink};
use xtask::lock::RunLock;
use xtask::outcome::{Document, Status};
use xtask::redact::Redactor;
use xtask::session::Session;
use xtask::sinks::{Json, LogFile, Terminal};
use xtask::{bootstrap, charts, cluster, doctor, down, plan, secrets, status, tilt, tools};

/// How long a run may take to wind down after the first signal (a tool call's SIGTERM
/// grace, its SIGKILL and output, the summary) before we exit without it.
const FORCE_AFTER: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let terminal = Arc::new(Terminal::new(cli.format() == Format::Human));
    let json = Arc::new(Json::default());
    // The run's redactor: the error printed here hides what its events hid.
    let redactor = Redactor::default();
    match run(&cli, terminal.clone(), json.clone(), &redactor) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !(terminal.shown_result() || json.shown_result()) {
                print_error(&err, cli.format(), &redactor);
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
            let status = match err.kind().is_interrupted() {
                true => Status::Interrupted,
                false => Status::Failed,
            };
            let exit_code = err.kind().exit_code();
            let doc = ErrorDoc { status, exit_code, error, remediation };
            println!("{}", Document::new(SCHEMA_VERSION, doc).json());
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
    if cli.format() == Format::Json {
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
            Command::Bootstrap(flags) => bootstrap::run(&ctx, &flags.options()).await,
            Command::Sync(flags) => bootstrap::sync(&ctx, &flags.options()).await,
            Command::Plan => plan::run(&ctx).await,
            Command::Doctor => doctor::run(&ctx).await,
            Command::Cluster(flags) => {
                let args = flags.options();
                match args.lifecycle {
                    Some(which) => down::lifecycle(&ctx, which, args.plan).await,
                    None => cluster::run(&ctx, &args).await,
                }
            }
            Command::Vendor(flags) => charts::run(&ctx, &flags.options()).await,
            Command::Secrets => secrets::run(&ctx).await,
            Command::Tilt => tilt::run(&ctx).await,
            Command::Tools(flags) => tools::run(&ctx, &flags.options()).await,
            Command::Status(flags) => status::run(&ctx, &flags.options()).await,
            Command::Down(flags) => down::run(&ctx, &flags.options()).await,
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
