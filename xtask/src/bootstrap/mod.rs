//! `cargo xtask bootstrap` (every stage) and `cargo xtask sync <layer>...` (the layer
//! cycle for the named layers), as a pipeline of stages (`crate::runner`): preflight
//! reads every input ([`Inputs`]), observes once and decides the run's one plan
//! ([`run_plan::RunPlan`]), which `--plan` prints; otherwise it installs the planned
//! tools, and charts, cluster, layers, status, secrets and tilt each carry out their
//! part of the plan. The Vault
//! bootstrap wait and the db-migrations Secret run inside the layers stage, right after
//! their configured layers, so later layers can rely on them. The summary is emitted as
//! the command's result.

pub mod describe;
mod happened;
mod images_stage;
mod layers_stage;
mod observe;
mod preflight;
pub mod run_plan;
mod stages;
mod steps_stage;
pub mod summary;
pub mod summary_json;

use crate::config::Context;
use crate::error::{ErrorKind, Result, bad_input};
use crate::events::Event;
use crate::outcome::Status;
use crate::platform::helmfile::{Layer, Platform};
use crate::runner::{self, Mode, RunOutcome};
use crate::session::Session;
use run_plan::RunPlan;
use summary::Summary;

/// A stage after preflight: it carries out its part of the run's plan.
pub type Stage<'c> = dyn runner::Stage<RunState<'c>, RunPlan> + 'c;

/// How `cargo xtask bootstrap` was asked to run (the CLI's flags, `xtask/src/flags.rs`).
#[derive(Debug, Default)]
pub struct Args {
    /// Print what each stage would do and change nothing.
    pub plan: bool,
    /// Start at this layer (earlier layers must already be converged).
    pub from: Option<String>,
    /// Only this layer (earlier layers must already be converged).
    pub only: Option<String>,
    /// Sync every selected layer and run every repository step, even unchanged ones.
    pub force: bool,
    /// Skip the tilt stage.
    pub no_tilt: bool,
    /// Do not install the pinned tools into .tools/bin first.
    pub no_install: bool,
    /// Write an HTML timeline of the run: `Some(None)` to the default path.
    pub timings: Option<Option<std::path::PathBuf>>,
}

/// `cargo xtask sync <layer>...`: sync and gate just these layers, converged or not.
#[derive(Debug, Default)]
pub struct SyncArgs {
    /// Layer names (file stems, e.g. `24-auth`), run in platform order.
    pub layers: Vec<String>,
    /// Do not install the pinned tools into .tools/bin first.
    pub no_install: bool,
}

/// Which layers a run touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    From(String),
    Only(String),
    /// `sync <layer>...`: always synced, whatever their digest.
    Named(Vec<String>),
}

/// Indices of the selected layers, in platform order; an unknown name is bad input.
pub fn select(names: &[&str], selection: &Selection) -> Result<Vec<usize>> {
    let find = |wanted: &str| {
        names.iter().position(|n| *n == wanted).ok_or_else(|| {
            bad_input(format!("unknown layer `{wanted}`: expected one of {}", names.join(", ")))
        })
    };
    Ok(match selection {
        Selection::All => (0..names.len()).collect(),
        Selection::From(name) => (find(name)?..names.len()).collect(),
        Selection::Only(name) => vec![find(name)?],
        Selection::Named(wanted) => {
            let mut indices = wanted.iter().map(|w| find(w)).collect::<Result<Vec<_>>>()?;
            indices.sort_unstable();
            indices.dedup();
            indices
        }
    })
}

/// How this run was asked to go.
#[derive(Debug, Clone)]
pub struct Options {
    pub selection: Selection,
    pub force: bool,
    pub no_install: bool,
    pub mode: Mode,
}

/// One layer as the run sees it: the model, its input digest, whether it is selected.
#[derive(Debug, Clone)]
pub struct LayerInput {
    pub layer: Layer,
    pub digest: String,
    pub selected: bool,
}

/// Everything preflight read: what later stages decide from. Nothing here changes.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub platform: Platform,
    pub layers: Vec<LayerInput>,
    /// One per configured repository step, in settings order.
    pub steps: Vec<steps_stage::StepInput>,
    /// The helmfile this run calls (its flags differ by version).
    pub helmfile: crate::helmfile_cli::Helmfile,
}

/// What the stages after preflight share: the inputs, and what the stages did, as
/// typed events (which layers converged, which secrets steps already ran).
pub struct RunState<'c> {
    pub ctx: &'c Context,
    pub options: Options,
    pub inputs: Inputs,
    /// What the stages did, in order: the summary's tables are folded from it.
    pub record: happened::Record,
    /// The cluster as the observe pass read it (the cluster stage applies through it).
    pub cluster: Option<crate::cluster::Planned>,
    /// The image caches being warmed with the layers' images (from the cluster stage).
    pub warming: Option<crate::images::warm::Warming>,
    client: Option<kube::Client>,
}

impl<'c> RunState<'c> {
    fn new(
        ctx: &'c Context,
        options: Options,
        inputs: Inputs,
        cluster: Option<crate::cluster::Planned>,
        record: happened::Record,
    ) -> RunState<'c> {
        RunState { ctx, options, inputs, record, cluster, warming: None, client: None }
    }

    /// The kube client for the run's context, made on first use (after the cluster
    /// stage, which may have just created the cluster).
    pub async fn client(&mut self) -> Result<kube::Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = crate::k8s::client(&self.ctx.kube_context).await?;
        self.client = Some(client.clone());
        Ok(client)
    }
}

pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let selection = match (&args.from, &args.only) {
        (Some(from), _) => Selection::From(from.clone()),
        (_, Some(only)) => Selection::Only(only.clone()),
        _ => Selection::All,
    };
    let mode = if args.plan { Mode::Plan } else { Mode::Apply };
    let options = Options { selection, force: args.force, no_install: args.no_install, mode };
    let stages = bootstrap_stages(ctx, args.no_tilt);
    let Some(asked) = &args.timings else {
        return execute(ctx, "bootstrap", options, stages, None).await;
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| ctx.root.clone());
    let path = crate::timings::report_path(asked.as_deref(), &ctx.root, &cwd);
    let recorder = std::sync::Arc::new(crate::timings::Recorder::new());
    let events = ctx.session.events.with_recorder(Box::new(recorder.clone()));
    let timed = ctx.clone().with_session(Session { events, ..ctx.session.clone() });
    execute(&timed, "bootstrap", options, stages, Some((path, recorder))).await
}

/// The stages of `bootstrap`, in order.
fn bootstrap_stages<'c>(ctx: &Context, no_tilt: bool) -> Vec<Box<Stage<'c>>> {
    let steps_after = |anchor| steps_after(ctx, anchor);
    [
        // Charts first: an offline check, so a bad lock stops the run before any change.
        Some(Box::new(stages::Charts) as Box<Stage>),
        Some(Box::new(stages::Cluster)),
        steps_after("cluster"),
        Some(Box::new(images_stage::FetchAhead::new(layers_stage::Layers::default()))),
        Some(Box::new(stages::Status)),
        steps_after("layers"),
        Some(Box::new(stages::Secrets)),
        steps_after("secrets"),
        (!no_tilt).then(|| Box::new(stages::Tilt) as Box<Stage>),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `cargo xtask plan`: the plan of a plain `cargo xtask bootstrap` (the value its
/// `--plan` prints), or the error that stops its preflight.
pub async fn plan_only(ctx: &Context) -> Result<RunPlan> {
    let options =
        Options { selection: Selection::All, force: false, no_install: false, mode: Mode::Plan };
    let names = bootstrap_stages(ctx, false).iter().map(|s| s.name()).collect();
    let preflight = preflight::Preflight { ctx, options, stages: names };
    let mut read = preflight::Read::default();
    let mut first: Vec<Box<dyn runner::Stage<preflight::Read, ()>>> = vec![Box::new(preflight)];
    let outcome = runner::run(&mut first, &(), &mut read, &ctx.session, remedy).await;
    match (outcome.error, read.planned) {
        (Some(error), _) => Err(error),
        (None, Some(planned)) => Ok(planned.plan),
        (None, None) => Err(crate::error::failed("preflight planned nothing")),
    }
}

pub async fn sync(ctx: &Context, args: &SyncArgs) -> Result<()> {
    let options = Options {
        selection: Selection::Named(args.layers.clone()),
        force: true,
        no_install: args.no_install,
        mode: Mode::Apply,
    };
    let stages: Vec<Box<Stage>> = [
        Some(Box::new(layers_stage::Layers::default()) as Box<Stage>),
        Some(Box::new(stages::Status)),
        steps_after(ctx, "layers"),
    ]
    .into_iter()
    .flatten()
    .collect();
    execute(ctx, "sync", options, stages, None).await
}

async fn execute<'c>(
    ctx: &'c Context,
    command: &str,
    options: Options,
    mut stages: Vec<Box<Stage<'c>>>,
    timings: Option<(std::path::PathBuf, std::sync::Arc<crate::timings::Recorder>)>,
) -> Result<()> {
    let session = &ctx.session;
    let names: Vec<&'static str> = stages.iter().map(|s| s.name()).collect();
    let detail = format!(
        "stages preflight,{}, context {}, environment {}{}",
        names.join(","),
        ctx.kube_context,
        ctx.environment,
        if options.mode == Mode::Plan { ", plan only" } else { "" }
    );
    session.events.emit(Event::CommandStarted { command, detail: &detail });

    let mut first: Vec<Box<dyn runner::Stage<preflight::Read, ()> + '_>> =
        vec![Box::new(preflight::Preflight {
            ctx,
            options: options.clone(),
            stages: names.clone(),
        })];
    let mut read = preflight::Read::default();
    let mut outcome = runner::run(&mut first, &(), &mut read, session, remedy).await;
    let mut record = happened::Record::default();
    if !read.installed.is_empty() {
        record.push(happened::Happened::ToolsInstalled { tools: read.installed.clone() });
    }
    // Kept when preflight failed after reading the layers: the summary still lists them.
    let mut plan = None;
    match read.planned {
        // `--plan`: the plan is the result; nothing is applied.
        Some(planned) if outcome.error.is_none() && options.mode == Mode::Plan => {
            session.events.emit(Event::Result { result: &planned.plan });
            return Ok(());
        }
        Some(planned) if outcome.error.is_none() => {
            let preflight::Planned { inputs, plan: decided, cluster } = planned;
            let mut state = RunState::new(ctx, options.clone(), inputs, cluster, record);
            let rest = runner::run(&mut stages, &decided, &mut state, session, remedy).await;
            outcome = join(outcome, rest);
            record = state.record;
            plan = Some(decided);
        }
        _ => {
            for name in names {
                outcome.rows.push(runner::StageRow {
                    name: name.into(),
                    status: Status::Skipped,
                    duration: std::time::Duration::ZERO,
                    detail: "not run: an earlier stage failed".into(),
                    warnings: Vec::new(),
                });
            }
        }
    }
    let timings = timings.map(|(path, recorder)| {
        let heading = crate::timings::html::Heading {
            command: command.to_owned(),
            status: outcome.status.word().to_owned(),
            log: ctx.log_path.display().to_string(),
        };
        crate::timings::attach(path, &recorder, &heading)
    });
    let summary = Summary {
        timings,
        status: outcome.status,
        stages: outcome.rows,
        layers: record.layer_rows(&read.layer_names, plan.as_ref()),
        steps: record.step_rows(&ctx.settings.steps, plan.as_ref()),
        registry: record.registry(),
        secret_stores: record.secret_stores(),
        images: record.images(),
        failure: outcome.failure,
        log: ctx.log_path.display().to_string(),
    };
    session.events.emit(Event::Result { result: &summary });
    outcome.error.map_or(Ok(()), Err)
}

/// The stage running the steps configured after `anchor`, if there are any. Every run
/// holding the anchor's stage holds this one after it.
fn steps_after<'c>(ctx: &Context, anchor: &'static str) -> Option<Box<Stage<'c>>> {
    let any = ctx.settings.steps.iter().any(|s| s.after == anchor);
    any.then(|| Box::new(steps_stage::Steps { after: anchor }) as Box<Stage>)
}

/// Preflight's outcome followed by the rest of the run's.
fn join(first: RunOutcome, rest: RunOutcome) -> RunOutcome {
    let mut rows = first.rows;
    rows.extend(rest.rows);
    RunOutcome { status: rest.status, rows, failure: rest.failure, error: rest.error }
}

/// What to do about a stage's error that carries no remediation of its own.
fn remedy(stage: &str, kind: ErrorKind) -> String {
    match (kind, stage) {
        (ErrorKind::Interrupted(_), _) => "run `cargo xtask bootstrap` again: converged layers are skipped, it continues from the first one that is not".into(),
        (ErrorKind::BadInput, _) => "fix the file or argument named in the message, then run again; nothing was changed".into(),
        (ErrorKind::Missing, _) => "install or start what is missing (`cargo xtask doctor` shows how), or pick a usable kube context with --context".into(),
        (_, "cluster") => "read the k3d output in the log, fix the cause, then run `cargo xtask cluster` (`--plan` shows what it decides)".into(),
        (_, "charts") => "run `cargo xtask vendor` to restore the locked chart archives (`cargo xtask vendor --check` lists the problems)".into(),
        _ => "read the log for this stage's output, fix the cause, and run again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = ["10-bootstrap", "20-core", "24-auth", "40-data"];

    #[test]
    fn selection_keeps_platform_order() {
        assert_eq!(select(&NAMES, &Selection::All).unwrap(), [0, 1, 2, 3]);
        assert_eq!(select(&NAMES, &Selection::From("24-auth".into())).unwrap(), [2, 3]);
        assert_eq!(select(&NAMES, &Selection::Only("20-core".into())).unwrap(), [1]);
        let named =
            Selection::Named(vec!["40-data".into(), "10-bootstrap".into(), "40-data".into()]);
        assert_eq!(select(&NAMES, &named).unwrap(), [0, 3]);
    }

    #[test]
    fn unknown_layer_is_bad_input_listing_the_layers() {
        let err = select(&NAMES, &Selection::Only("25-nope".into())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(
            err.to_string()
                .contains("unknown layer `25-nope`: expected one of 10-bootstrap, 20-core"),
            "{err}"
        );
    }

    #[test]
    fn remediation_depends_on_the_kind_first() {
        let interrupted = ErrorKind::Interrupted(crate::error::Signal::Interrupt);
        assert!(remedy("layers", interrupted).contains("run `cargo xtask bootstrap` again"));
        assert!(remedy("preflight", ErrorKind::BadInput).contains("nothing was changed"));
        assert!(remedy("charts", ErrorKind::Failed).contains("cargo xtask vendor"));
    }
}
