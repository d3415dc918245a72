//! `cargo xtask bootstrap` (every stage) and `cargo xtask sync <layer>...` (the layer
//! cycle for the named layers): a list of stages run in order, each producing a row of
//! the summary; the first failure stops the run and carries its remediation. The Vault
//! bootstrap wait and the db-migrations Secret run inside the layers stage, right after
//! their configured layers (`Run::after_layer`), so later layers can rely on them.
//!
//! Adding a stage (secrets, tilt) = a [`Stage`] variant, its name, and an arm in
//! [`Run::stage`].

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::checks::Verdict;
use crate::config::{Context, Format};
use crate::error::{bad_input, exit_code, failed, missing};
use crate::layers::{self, Cycle, LayerPlan};
use crate::platform::helmfile::{Platform, TemplateReader};
use crate::report::{
    Failure, LayerStatus, LayerSummary, Log, RunStatus, StageStatus, StageSummary, Summary,
};
use crate::secrets::{self, Step};
use crate::{cancel, charts, checks, cluster, k8s};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print what each stage would do and change nothing.
    #[arg(long)]
    pub plan: bool,
    #[command(flatten)]
    pub target: Target,
    /// Start at this layer (earlier layers are left as they are).
    #[arg(long, value_name = "LAYER", conflicts_with = "only")]
    pub from: Option<String>,
    /// Only this layer.
    #[arg(long, value_name = "LAYER")]
    pub only: Option<String>,
    /// Sync every selected layer, even those whose inputs are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Skip the tilt stage (do not start or check Tilt).
    #[arg(long)]
    pub no_tilt: bool,
}

/// `cargo xtask sync <layer>...`: sync and gate just these layers, converged or not.
#[derive(clap::Args, Debug, Default)]
pub struct SyncArgs {
    /// Layer names (file stems, e.g. `24-auth`), run in platform order.
    #[arg(required = true, value_name = "LAYER")]
    pub layers: Vec<String>,
    #[command(flatten)]
    pub target: Target,
}

/// Where to apply, and how to report.
#[derive(clap::Args, Debug, Default)]
pub struct Target {
    /// Helmfile environment (default: the `environment` setting).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// Kube context (default: `k3d-<cluster>`). The cluster stage runs only for the
    /// k3d cluster's own context.
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// `human` (a table) or `json` (one JSON object on stdout, nothing else there).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Do not install the pinned tools into .tools/bin first (`cargo xtask tools
    /// install`); use what is there and on PATH.
    #[arg(long)]
    pub no_install: bool,
}

/// The stages, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Preflight,
    Cluster,
    Charts,
    Layers,
    Status,
    /// ExternalSecrets, and the Vault bootstrap / db-migrations steps whose layers did
    /// not run (crate::secrets; the layers stage runs them after their layers).
    Secrets,
    /// Tilt started and its Tiltfile Ready (crate::tilt).
    Tilt,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Preflight => "preflight",
            Stage::Cluster => "cluster",
            Stage::Charts => "charts",
            Stage::Layers => "layers",
            Stage::Status => "status",
            Stage::Secrets => "secrets",
            Stage::Tilt => "tilt",
        }
    }
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

pub async fn run(ctx: &Context, args: &Args) -> Result<()> {
    let selection = match (&args.from, &args.only) {
        (Some(from), _) => Selection::From(from.clone()),
        (_, Some(only)) => Selection::Only(only.clone()),
        _ => Selection::All,
    };
    let mut stages = vec![
        Stage::Preflight,
        Stage::Cluster,
        Stage::Charts,
        Stage::Layers,
        Stage::Status,
        Stage::Secrets,
    ];
    if !args.no_tilt {
        stages.push(Stage::Tilt);
    }
    execute(ctx, &args.target, selection, args.plan, args.force, &stages).await
}

pub async fn sync(ctx: &Context, args: &SyncArgs) -> Result<()> {
    let stages = [Stage::Preflight, Stage::Layers, Stage::Status];
    execute(ctx, &args.target, Selection::Named(args.layers.clone()), false, true, &stages).await
}

async fn execute(
    ctx: &Context,
    target: &Target,
    selection: Selection,
    plan: bool,
    force: bool,
    stages: &[Stage],
) -> Result<()> {
    let log = Log::open(&ctx.log_path)?;
    let _lock = match plan {
        true => None,
        false => match RunLock::acquire(ctx) {
            Ok(lock) => Some(lock),
            Err(err) => {
                // Still one summary (and one JSON object) for scripts.
                let summary = Summary {
                    status: RunStatus::Failed,
                    stages: Vec::new(),
                    layers: Vec::new(),
                    failure: Some(Failure {
                        stage: "lock".into(),
                        layer: None,
                        message: format!("{err:#}"),
                        remediation: "wait for the other run to finish, then run again".into(),
                    }),
                    log: log.path().display().to_string(),
                };
                print_summary(&summary, target.format);
                return Err(err);
            }
        },
    };
    let kube_context =
        target.context.clone().unwrap_or_else(|| format!("k3d-{}", ctx.settings.cluster));
    let environment =
        target.environment.clone().unwrap_or_else(|| ctx.settings.environment.clone());
    log.line(
        "bootstrap",
        &format!(
            "start: stages {}, context {kube_context}, environment {environment}{}",
            stages.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
            if plan { ", plan only" } else { "" }
        ),
    );
    let mut run = Run {
        ctx,
        log: log.clone(),
        cluster_stage: kube_context == format!("k3d-{}", ctx.settings.cluster),
        kube_context,
        environment,
        selection,
        plan,
        force,
        platform: None,
        digests: Vec::new(),
        selected: Vec::new(),
        client: None,
        layers: Vec::new(),
        failure: None,
        uses_cluster_stage: stages.contains(&Stage::Cluster),
        no_install: target.no_install,
        stage_warnings: Vec::new(),
        secrets_steps: Vec::new(),
        secrets_done: Vec::new(),
    };

    let mut rows = Vec::new();
    let mut error: Option<anyhow::Error> = None;
    for &stage in stages {
        if error.is_some() {
            rows.push(StageSummary {
                name: stage.name().into(),
                status: StageStatus::Skipped,
                duration_ms: 0,
                detail: "not run: an earlier stage failed".into(),
                warnings: Vec::new(),
            });
            continue;
        }
        let started = Instant::now();
        log.line("bootstrap", &format!("stage {}", stage.name()));
        let result = interruptible(run.stage(stage)).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, detail) = match result {
            Ok(outcome) => outcome,
            Err(err) => {
                let code = exit_code(&err);
                if run.failure.is_none() {
                    // The secrets and tilt stages carry their own remediation.
                    let own = err.downcast_ref::<crate::secrets::Failure>();
                    run.failure = Some(Failure {
                        stage: stage.name().into(),
                        layer: None,
                        message: own.map_or_else(|| format!("{err:#}"), |f| f.message.clone()),
                        remediation: own
                            .map_or_else(|| remediation(stage, code), |f| f.remediation.clone()),
                    });
                }
                let status =
                    if code == 130 { StageStatus::Interrupted } else { StageStatus::Failed };
                error = Some(err);
                (status, String::new())
            }
        };
        log.line("bootstrap", &format!("stage {}: {status:?} {detail}", stage.name()));
        if status == StageStatus::Failed && error.is_none() {
            let f = run.failure.as_ref();
            error = Some(failed(format!(
                "stage {} failed{}; see the summary",
                stage.name(),
                f.and_then(|f| f.layer.as_ref())
                    .map_or(String::new(), |l| format!(" in layer {l}"))
            )));
        }
        let warnings = std::mem::take(&mut run.stage_warnings);
        rows.push(StageSummary {
            name: stage.name().into(),
            status,
            duration_ms,
            detail,
            warnings,
        });
    }

    // Layers never reached are reported as skipped, so the list is always complete.
    if let Some(platform) = &run.platform {
        for layer in platform.layers.iter().skip(run.layers.len()) {
            run.layers.push(LayerSummary::new(&layer.name, LayerStatus::Skipped));
        }
    }
    let status = match &error {
        None => RunStatus::Ok,
        Some(e) if exit_code(e) == 130 => RunStatus::Interrupted,
        Some(_) => RunStatus::Failed,
    };
    let summary = Summary {
        status,
        stages: rows,
        layers: run.layers,
        failure: run.failure,
        log: log.path().display().to_string(),
    };
    write_gap_log(&log, &summary.warnings());
    log.line("bootstrap", &format!("end: {}", summary.to_json()));
    print_summary(&summary, target.format);
    error.map_or(Ok(()), Err)
}

fn print_summary(summary: &Summary, format: Format) {
    match format {
        Format::Json => println!("{}", summary.to_json()),
        Format::Human => print!("{}", summary.to_table()),
    }
}

/// The gap log: every warning of the run, one line each, as a block at the end of the log
/// so a reader of the log alone sees them.
fn write_gap_log(log: &Log, warnings: &[String]) {
    log.line("gaps", &format!("{} gap(s) found by this run", warnings.len()));
    for warning in warnings {
        log.line("gaps", &format!("- {}", warning.replace('\n', " ")));
    }
}

/// Run a stage unless Ctrl-C arrived already; on Ctrl-C let the running step stop (a
/// tool call stops its process group, a wait returns) and return `Interrupted` (bounded
/// wait). No new step starts: every tool call and wait checks `crate::cancel` first.
async fn interruptible<T>(stage: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    cancel::check()?;
    tokio::pin!(stage);
    tokio::select! {
        biased;
        result = &mut stage => result,
        () = cancel::interrupted() => {
            match tokio::time::timeout(Duration::from_secs(15), &mut stage).await {
                Ok(Err(err)) if exit_code(&err) == 130 => Err(err),
                _ => Err(cancel::error("interrupted; the running step was stopped")),
            }
        }
    }
}

fn remediation(stage: Stage, code: i32) -> String {
    match (code, stage) {
        (130, _) => "run `cargo xtask bootstrap` again: converged layers are skipped, it continues from the first one that is not".into(),
        (2, _) => "fix the file or argument named in the message; nothing was changed".into(),
        (3, _) => "install or start what is missing (`cargo xtask doctor` shows how), or pick a usable kube context with --context".into(),
        (_, Stage::Cluster) => "read the k3d output in the log; `cargo xtask cluster --plan` shows what it decided".into(),
        (_, Stage::Charts) => "run `cargo xtask vendor` to restore the locked chart archives (`cargo xtask vendor --check` lists the problems)".into(),
        _ => "read the log for this stage's output, fix the cause, and run again".into(),
    }
}

struct Run<'a> {
    ctx: &'a Context,
    log: Log,
    kube_context: String,
    environment: String,
    selection: Selection,
    plan: bool,
    force: bool,
    /// The context is the k3d cluster's own (otherwise the cluster stage is skipped).
    cluster_stage: bool,
    /// This command has a cluster stage at all (`sync` does not).
    uses_cluster_stage: bool,
    /// `--no-install`: leave .tools/bin as it is.
    no_install: bool,
    platform: Option<Platform>,
    /// Per layer, in platform order.
    digests: Vec<String>,
    selected: Vec<usize>,
    client: Option<kube::Client>,
    layers: Vec<LayerSummary>,
    failure: Option<Failure>,
    /// Warnings of the running stage; moved into its summary row (and so the gap log).
    stage_warnings: Vec<String>,
    /// Secrets steps the layers stage ran after their layers, and what they did.
    secrets_steps: Vec<Step>,
    secrets_done: Vec<String>,
}

type StageOutcome = (StageStatus, String);

impl Run<'_> {
    async fn stage(&mut self, stage: Stage) -> Result<StageOutcome> {
        match stage {
            Stage::Preflight => {
                // Bad input first (exit 2 before anything changes), then the pinned tools
                // (not with --plan: it changes nothing), then the tools this run needs.
                self.read_platform().await?;
                let offline =
                    crate::tools::prepare(self.ctx, &self.log, self.no_install || self.plan)
                        .await?;
                let templated = self.platform.as_ref().is_some_and(|p| {
                    p.layers.iter().any(|l| l.releases.not_read_reason().is_some())
                });
                if templated {
                    // helmfile may have just been installed: Go-template layers can be read now.
                    self.read_platform().await?;
                }
                let (status, detail) = self.check_tools()?;
                self.stage_warnings.extend(offline);
                Ok((status, detail))
            }
            Stage::Cluster => self.cluster().await,
            Stage::Charts => self.charts(),
            Stage::Layers => self.layers().await,
            Stage::Status => self.status().await,
            Stage::Secrets => self.secrets().await,
            Stage::Tilt => self.tilt().await,
        }
    }

    /// ExternalSecret validation, plus the steps the layers stage did not run (their
    /// layer was not selected); the detail also says what the layer steps did.
    async fn secrets(&mut self) -> Result<StageOutcome> {
        let settings = &self.ctx.settings.secrets;
        if self.plan {
            let selected = self.selected_names();
            let mut would: Vec<String> = Step::ALL
                .into_iter()
                .filter(|step| !selected.contains(&step.after_layer(settings)))
                .map(|step| step.describe(settings))
                .collect();
            would.push("check ExternalSecrets".into());
            return Ok((StageStatus::Planned, format!("would {}", would.join(", "))));
        }
        let client = self.client().await?;
        let outcome = secrets::stage(self.ctx, &self.log, &client, &self.secrets_steps).await?;
        self.stage_warnings.extend(outcome.warnings.iter().cloned());
        // Warnings are listed under the tables (and in the JSON), not repeated here.
        let detail = self.secrets_done.iter().chain(&outcome.done);
        Ok((self.done(), detail.cloned().collect::<Vec<_>>().join("; ")))
    }

    fn selected_names(&self) -> Vec<&str> {
        let platform = self.platform.as_ref().expect("preflight ran");
        self.selected.iter().map(|&i| platform.layers[i].name.as_str()).collect()
    }

    /// A layer's plan, with the secrets steps that would follow it.
    fn plan_text(&self, layer: &str, decision: &dyn std::fmt::Display) -> String {
        let settings = &self.ctx.settings.secrets;
        let steps = secrets::steps_after(settings, layer);
        let then: String =
            steps.iter().map(|s| format!("; then {}", s.describe(settings))).collect();
        format!("{decision}{then}")
    }

    /// The secrets steps configured to follow `layer` (Vault bootstrap, db-migrations),
    /// run right after it so later layers can rely on them. Their failure fails the
    /// layer like a failed gate; an error that is not theirs (API gone, Ctrl-C) is
    /// returned as well.
    async fn after_layer(&mut self, client: &kube::Client, layer: &str) -> Result<()> {
        for step in secrets::steps_after(&self.ctx.settings.secrets, layer) {
            let started = Instant::now();
            let result = match cancel::check() {
                Ok(()) => step.run(self.ctx, &self.log, client).await,
                Err(e) => Err(e),
            };
            let row = self.layers.last_mut().expect("the layer's row is pushed first");
            row.duration_ms += started.elapsed().as_millis() as u64;
            match result {
                Ok(outcome) => {
                    for line in &outcome.done {
                        eprintln!("layer {layer}: {line}");
                    }
                    row.warnings.extend(outcome.warnings);
                    self.secrets_done
                        .extend(outcome.done.iter().map(|line| format!("after {layer}: {line}")));
                    self.secrets_steps.push(step);
                }
                Err(err) => {
                    row.status = LayerStatus::Failed;
                    let failure = self.layer_failure(layer, &err);
                    self.failure.get_or_insert(failure);
                    // A step's own failure is a verdict (like a failed gate), not an error.
                    let verdict = err.downcast_ref::<secrets::Failure>().is_some();
                    return if verdict { Ok(()) } else { Err(err) };
                }
            }
        }
        Ok(())
    }

    async fn tilt(&mut self) -> Result<StageOutcome> {
        if self.plan {
            return Ok((StageStatus::Planned, "would start Tilt unless it is Ready".into()));
        }
        cancel::check()?;
        let outcome = crate::tilt::ensure(self.ctx, &self.log).await?;
        Ok((self.done(), outcome.done.join("; ")))
    }

    /// A layer cut short by an error (its sync, or a secrets step after it): the step's
    /// own message and remediation when it has them, else what to re-run.
    fn layer_failure(&self, layer: &str, err: &anyhow::Error) -> Failure {
        let own = err.downcast_ref::<secrets::Failure>();
        let remediation = match (own, exit_code(err)) {
            (Some(own), _) => own.remediation.clone(),
            (None, 130) => remediation(Stage::Layers, 130),
            (None, _) => format!(
                "fix the cause, then run `cargo xtask sync {layer}`; its output is in {}",
                self.log.path().display()
            ),
        };
        Failure {
            stage: Stage::Layers.name().into(),
            layer: Some(layer.to_owned()),
            message: own.map_or_else(|| format!("{err:#}"), |f| f.message.clone()),
            remediation,
        }
    }

    fn done(&self) -> StageStatus {
        if self.plan { StageStatus::Planned } else { StageStatus::Ok }
    }

    /// The platform model, the layer selection and the layer digests: bad input (exit 2)
    /// is found here, before any change.
    async fn read_platform(&mut self) -> Result<()> {
        let settings = &self.ctx.settings;
        let templates =
            TemplateReader::find(&self.ctx.root, &self.environment, settings.timeouts.tool_call());
        let platform = Platform::read(&settings.helmfile, &templates).await?;
        let names: Vec<&str> = platform.layers.iter().map(|l| l.name.as_str()).collect();
        self.selected = select(&names, &self.selection)?;
        self.digests = platform
            .layers
            .iter()
            .map(|layer| layers::digest(&self.ctx.root, &platform, layer, &self.environment))
            .collect::<Result<_>>()?;
        // Kept before the tool check, so a failed preflight still lists the layers.
        self.platform = Some(platform);
        Ok(())
    }

    /// The tools this run calls are found (exit 3 otherwise).
    fn check_tools(&self) -> Result<StageOutcome> {
        let layer_count = self.platform.as_ref().map_or(0, |p| p.layers.len());
        let mut tools = vec!["helmfile", "helm"];
        if self.uses_cluster_stage && self.cluster_stage {
            tools.insert(0, "k3d");
        }
        let absent: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| crate::probe::find_tool(&self.ctx.root, t).is_none())
            .collect();
        if !absent.is_empty() {
            return Err(missing(format!(
                "not found on PATH: {} (run `cargo xtask doctor` for install hints)",
                absent.join(", ")
            )));
        }
        let detail = format!(
            "{} layer(s), {} selected; environment {}, context {}",
            layer_count,
            self.selected.len(),
            self.environment,
            self.kube_context
        );
        Ok((StageStatus::Ok, detail))
    }

    async fn cluster(&mut self) -> Result<StageOutcome> {
        if !self.cluster_stage {
            return Ok((
                StageStatus::Skipped,
                format!("context {} is not the k3d cluster's", self.kube_context),
            ));
        }
        cancel::check()?;
        let outcome = cluster::reconcile(self.ctx, &self.log, self.plan).await?;
        Ok((self.done(), outcome.plan.action.to_string()))
    }

    /// `vendor --check` semantics, offline.
    fn charts(&mut self) -> Result<StageOutcome> {
        let platform = self.platform.as_ref().expect("preflight ran");
        let mut releases = Vec::new();
        let mut unread = Vec::new();
        for layer in &platform.layers {
            if let Some(reason) = layer.releases.not_read_reason() {
                unread.push(format!(
                    "{}: release charts not checked: {reason}",
                    layer.file.display()
                ));
            }
            releases.extend(layer.releases.as_slice().iter().map(|r| charts::ReleaseChart {
                layer_file: layer.file.clone(),
                release: r.name.clone(),
                chart: r.chart.clone(),
            }));
        }
        let (archives, checked) =
            charts::check(&self.ctx.settings.charts_lock, &releases, &unread)?;
        Ok((
            StageStatus::Ok,
            format!("{archives} archive(s) verified, {checked} release chart(s) local or locked"),
        ))
    }

    async fn client(&mut self) -> Result<kube::Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = k8s::client(Some(&self.kube_context)).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn layers(&mut self) -> Result<StageOutcome> {
        let platform = self.platform.clone().expect("preflight ran");
        let observed = match self.client().await {
            Ok(client) => layers::recorded_digests(&client).await.map(|d| (client, d)),
            Err(e) => Err(e),
        };
        let (client, recorded) = match observed {
            Ok(pair) => pair,
            // A plan for a cluster that does not exist yet: everything would sync.
            Err(e) if self.plan => {
                for layer in &platform.layers {
                    let mut row = LayerSummary::new(&layer.name, LayerStatus::Skipped);
                    let decision = format!("sync: the cluster is not reachable yet ({e})");
                    row.plan = Some(self.plan_text(&layer.name, &decision));
                    self.layers.push(row);
                }
                return Ok((
                    StageStatus::Planned,
                    "cluster not reachable: every layer would sync".into(),
                ));
            }
            Err(e) => return Err(e),
        };
        for (index, layer) in platform.layers.iter().enumerate() {
            if self.failure.is_some() || !self.selected.contains(&index) {
                self.layers.push(LayerSummary::new(&layer.name, LayerStatus::Skipped));
                continue;
            }
            let digest = &self.digests[index];
            let decision = if matches!(self.selection, Selection::Named(_)) {
                LayerPlan::Sync { reason: "requested by `cargo xtask sync`".into() }
            } else {
                let not_deployed = layers::not_deployed(&client, layer).await?;
                layers::plan(
                    digest,
                    recorded.get(&layer.name).map(String::as_str),
                    &not_deployed,
                    self.force,
                )
            };
            self.log.line(&format!("layers/{}", layer.name), &format!("plan: {decision}"));
            if self.plan {
                let status = if decision == LayerPlan::Unchanged {
                    LayerStatus::Unchanged
                } else {
                    LayerStatus::Skipped
                };
                let mut row = LayerSummary::new(&layer.name, status);
                row.plan = Some(self.plan_text(&layer.name, &decision));
                self.layers.push(row);
                continue;
            }
            match decision {
                LayerPlan::Unchanged => {
                    eprintln!("layer {}: unchanged", layer.name);
                    self.layers.push(LayerSummary::new(&layer.name, LayerStatus::Unchanged));
                    self.after_layer(&client, &layer.name).await?;
                }
                LayerPlan::Sync { reason } => {
                    cancel::check()?;
                    eprintln!("layer {}: sync ({reason})", layer.name);
                    let cycle = Cycle {
                        ctx: self.ctx,
                        log: &self.log,
                        client: &client,
                        kube_context: &self.kube_context,
                        environment: &self.environment,
                    };
                    // Record the layer as failed if the cycle is cut short (Ctrl-C).
                    let result = layers::sync_and_gate(&cycle, layer, digest).await;
                    let result = match result {
                        Ok(r) => r,
                        Err(e) => {
                            self.layers.push(LayerSummary::new(&layer.name, LayerStatus::Failed));
                            let failure = self.layer_failure(&layer.name, &e);
                            self.failure.get_or_insert(failure);
                            return Err(e);
                        }
                    };
                    eprintln!(
                        "layer {}: {:?}, gate {:?}",
                        layer.name, result.summary.status, result.summary.gate
                    );
                    self.layers.push(result.summary);
                    match result.failure {
                        Some(failure) => self.failure = Some(failure),
                        None => self.after_layer(&client, &layer.name).await?,
                    }
                }
            }
        }
        // Counted from the rows: a layer whose secrets step failed is no longer synced.
        let count = |status| self.layers.iter().filter(|l| l.status == status).count();
        let (synced, unchanged) = (count(LayerStatus::Synced), count(LayerStatus::Unchanged));
        let skipped = platform.layers.len() - synced - unchanged;
        let detail = if self.plan {
            "plan only".to_owned()
        } else {
            format!("{synced} synced, {unchanged} unchanged, {skipped} skipped")
        };
        let status = if self.failure.is_some() { StageStatus::Failed } else { self.done() };
        Ok((status, detail))
    }

    /// Every release of every layer this run synced or found unchanged is `deployed`.
    async fn status(&mut self) -> Result<StageOutcome> {
        let platform = self.platform.clone().expect("preflight ran");
        if self.plan {
            return Ok((StageStatus::Planned, "would check every release is deployed".into()));
        }
        let client = self.client().await?;
        let mut failures = Vec::new();
        let mut checked = 0;
        for (layer, row) in platform.layers.iter().zip(&self.layers) {
            if !matches!(row.status, LayerStatus::Synced | LayerStatus::Unchanged) {
                continue;
            }
            for release in layer.releases.as_slice().iter().filter(|r| r.installed) {
                let check =
                    checks::release_deployed(&client, &release.name, layers::namespace_of(release))
                        .await?;
                checked += 1;
                if check.verdict == Verdict::Failed {
                    failures.push((layer.name.clone(), check));
                }
            }
        }
        if let Some((layer, first)) = failures.first() {
            let list: Vec<String> =
                failures.iter().map(|(_, c)| format!("{}: {}", c.name, c.found)).collect();
            self.failure = Some(Failure {
                stage: "status".into(),
                layer: Some(layer.clone()),
                message: format!("not deployed: {}", list.join("; ")),
                remediation: first.remediation.clone().unwrap_or_default(),
            });
            return Ok((
                StageStatus::Failed,
                format!("{} of {checked} release(s) not deployed", failures.len()),
            ));
        }
        Ok((StageStatus::Ok, format!("{checked} release(s) deployed")))
    }
}

/// One bootstrap at a time per checkout: an OS lock on `target/xtask-bootstrap.lock`
/// (released by the OS when the process dies), holding the holder's pid for the message.
struct RunLock {
    _file: File,
}

impl RunLock {
    fn acquire(ctx: &Context) -> Result<RunLock> {
        let path: PathBuf = ctx.root.join("target").join("xtask-bootstrap.lock");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed(format!("cannot open the lock file {}: {e}", path.display())))?;
        #[allow(clippy::incompatible_msrv)]
        match file.try_lock() {
            Ok(()) => {
                let stamp = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_default();
                let _ = file.set_len(0);
                let _ = file.rewind();
                let _ = write!(file, "pid {} since {stamp}", std::process::id());
                let _ = file.flush();
                Ok(RunLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = if holder.trim().is_empty() { "unknown pid".into() } else { holder };
                Err(failed(format!(
                    "another `cargo xtask bootstrap` or `sync` is running ({}); wait for it to finish (lock: {})",
                    holder.trim(),
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(failed(format!("cannot lock {}: {e}", path.display())))
            }
        }
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
        assert_eq!(exit_code(&err), 2);
        assert!(
            err.to_string()
                .contains("unknown layer `25-nope`: expected one of 10-bootstrap, 20-core"),
            "{err}"
        );
    }

    #[test]
    fn remediation_depends_on_the_exit_code_first() {
        assert!(remediation(Stage::Layers, 130).contains("run `cargo xtask bootstrap` again"));
        assert!(remediation(Stage::Preflight, 2).contains("nothing was changed"));
        assert!(remediation(Stage::Charts, 1).contains("cargo xtask vendor"));
    }
}
