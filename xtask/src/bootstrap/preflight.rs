//! The preflight stage: every input read and checked before anything changes (bad
//! input exits 2 here), the tools this run calls found or planned for install (exit 3
//! otherwise), one observe pass, and the run's one plan decided
//! ([`super::run_plan::decide`]). Only then, in a run that applies, are the planned
//! tools installed.

use super::run_plan::{Asked, RunPlan};
use super::steps_stage::StepInput;
use super::{Inputs, LayerInput, Options, select};
use crate::config::Context;
use crate::error::{Result, missing};
use crate::helmfile_cli::Helmfile;
use crate::outcome::Report;
use crate::platform::helmfile::Platform;
use crate::runner::{Mode, Stage, StageFuture};
use crate::steps::StepPlan;
use crate::tools::ToolInstall;

/// What preflight read: the layer names as soon as they are known (so a later
/// preflight failure still lists them), and the plan once everything checked out.
#[derive(Default)]
pub struct Read {
    pub layer_names: Vec<String>,
    pub planned: Option<Planned>,
    /// The tools installed before the run planned again.
    pub installed: Vec<ToolInstall>,
}

/// The run's inputs, its plan, and the cluster observation its apply reuses.
pub struct Planned {
    pub inputs: Inputs,
    pub plan: RunPlan,
    pub cluster: Option<crate::cluster::Planned>,
}

pub struct Preflight<'c> {
    pub ctx: &'c Context,
    pub options: Options,
    /// The stages of this run after preflight (steps after a stage run when it does).
    pub stages: Vec<&'static str>,
}

impl Preflight<'_> {
    /// The cluster stage will run on the k3d cluster's own context (and so call `k3d`).
    fn needs_k3d(&self) -> bool {
        self.stages.contains(&"cluster") && self.ctx.targets_own_cluster()
    }

    /// Read and check every input, observe once, decide the plan; changes nothing.
    async fn plan(&self, read: &mut Read) -> Result<Report> {
        let ctx = self.ctx;
        // Bad input first (exit 2 before anything changes), then the tools this run
        // needs (found, or planned for install; exit 3 otherwise).
        // A release storage the engine cannot read is refused before any helm runs: helm
        // opens it even for `helm version`, which helmfile calls to read a template layer
        // (with `sql` and no database reachable, helm fails and helmfile 0.166 panics).
        crate::release::Driver::from_env()?;
        let tools = crate::tools::planned(ctx, self.options.no_install);
        let installs = |name: &str| tools.iter().any(|t| t.name == name);
        // The helmfile on PATH reads template layers: check it first, unless the run
        // installs the pinned one (apply plans again once it is there).
        let checked_helmfile = match installs("helmfile") {
            false => Some(self.check_helmfile().await?),
            true => None,
        };
        let platform = crate::helmfile_list::read_platform(ctx).await?;
        read.layer_names = platform.layers.iter().map(|l| l.name.clone()).collect();
        crate::layers::validate_inputs(&platform)?;
        let manifest = ctx.root.join("Cargo.toml");
        crate::config::check_anchors(&manifest, &ctx.settings.steps, &names_of(&platform))?;
        crate::platform::charts_lock::ChartsLock::read(&ctx.settings.charts_lock)?;
        let names = names_of(&platform);
        let selected = select(&names, &self.options.selection)?;
        let layers = platform
            .layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                let digest = crate::layers::digest(
                    &ctx.root,
                    &platform,
                    layer,
                    &ctx.environment,
                    &ctx.bundles,
                )?;
                Ok(LayerInput { layer: layer.clone(), digest, selected: selected.contains(&index) })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut warnings = self.check_tools(&tools)?;
        let (helmfile, helmfile_warning) = checked_helmfile.unwrap_or_default();
        warnings.extend(helmfile_warning);
        let selected_names: Vec<&str> = selected.iter().map(|&i| names[i]).collect();
        let steps = self.steps(&selected_names)?;
        warnings.extend(self.check_steps_ready(&steps)?);
        let detail = format!(
            "{} layer(s), {} selected; environment {}, context {}",
            layers.len(),
            selected.len(),
            ctx.environment,
            ctx.kube_context
        );
        let render_images = self.options.mode == Mode::Plan;
        let description = super::describe::describe(ctx, &platform, render_images).await?;
        let inputs = Inputs { platform, layers, steps, helmfile };
        let (mut seen, cluster) = super::observe::observe(ctx, &inputs, self).await?;
        seen.tools = tools;
        seen.warnings = warnings.clone();
        let plan = super::run_plan::decide(description, &inputs, &self.asked(), &seen);
        read.planned = Some(Planned { inputs, plan, cluster });
        Ok(Report::ok(detail).warn(warnings))
    }

    /// Plan; in a run that applies, install the planned tools and plan once more with
    /// them in place (a Go-template layer needs helmfile to be read).
    async fn plan_and_install(&self, read: &mut Read) -> Result<Report> {
        let report = self.plan(read).await?;
        let tools = match &read.planned {
            Some(planned) if self.options.mode == Mode::Apply => planned.plan.tools.clone(),
            _ => return Ok(report),
        };
        if tools.is_empty() {
            return Ok(report);
        }
        let offline = crate::tools::install_planned(self.ctx, &tools).await?;
        if offline.is_none() {
            read.installed = tools.clone();
        }
        let again = self.plan(read).await?;
        // Offline, nothing was installed: the warning names the tools used instead.
        if offline.is_some() {
            return Ok(again.warn(offline));
        }
        let installed: Vec<String> =
            tools.iter().map(|t| format!("{} {}", t.name, t.version)).collect();
        let detail = format!("{}; installed {}", again.detail, installed.join(", "));
        Ok(crate::outcome::Report { detail, ..again })
    }

    pub(super) fn asked(&self) -> Asked {
        let ctx = self.ctx;
        let secrets = &ctx.settings.secrets;
        let mut secrets_after = std::collections::BTreeMap::<String, Vec<String>>::new();
        for step in crate::secrets::Step::ALL {
            let after = step.after_layer(secrets).to_owned();
            secrets_after.entry(after).or_default().push(step.describe(secrets));
        }
        Asked {
            context: ctx.kube_context.clone(),
            log: ctx.log_path.display().to_string(),
            selection: self.options.selection.clone(),
            force: self.options.force,
            fetch_ahead: self.needs_k3d() && ctx.settings.images.fetch_ahead,
            secrets_after,
        }
    }

    /// Each configured step: its digest, its plan, whether this run reaches it.
    fn steps(&self, selected_layers: &[&str]) -> Result<Vec<StepInput>> {
        let root = &self.ctx.root;
        let recorded = crate::steps::recorded(root)?;
        self.ctx
            .settings
            .steps
            .iter()
            .map(|step| {
                let digest = crate::steps::digest(root, step)?;
                let plan = crate::steps::plan(
                    digest.as_deref(),
                    recorded.get(&step.name).map(String::as_str),
                    self.options.force,
                );
                let anchor = step.after.as_str();
                let in_run = match crate::config::STAGE_ANCHORS.contains(&anchor) {
                    true => self.stages.contains(&anchor),
                    false => selected_layers.contains(&anchor),
                };
                Ok(StepInput { settings: step.clone(), digest, plan, in_run })
            })
            .collect()
    }

    /// Every step this run will run finds its program and variables (exit 3, nothing
    /// changed); with `--plan` what is missing is a warning.
    fn check_steps_ready(&self, steps: &[StepInput]) -> Result<Vec<String>> {
        let manifest = self.ctx.root.join("Cargo.toml");
        let mut warnings = Vec::new();
        for step in steps.iter().filter(|s| s.in_run && s.plan != StepPlan::Unchanged) {
            let ready = crate::steps::check_ready(&self.ctx.root, &manifest, &step.settings, |v| {
                std::env::var_os(v)
            });
            match ready {
                Err(e) if self.options.mode == Mode::Plan => {
                    warnings.push(format!("step {} would not run: {e}", step.settings.name))
                }
                other => other?,
            }
        }
        Ok(warnings)
    }

    /// The helmfile this run calls is one the engine supports: below
    /// [`crate::helmfile_cli::MINIMUM`] is exit 3 with how to install a newer one, before
    /// anything changed. A version that cannot be read is a warning, and only the flags
    /// every supported version has are used.
    async fn check_helmfile(&self) -> Result<(Helmfile, Option<String>)> {
        let ctx = self.ctx;
        let Some(path) = crate::probe::find_tool(&ctx.root, "helmfile") else {
            return Ok((Helmfile::default(), None));
        };
        let requirement = crate::doctor::requirement("helmfile");
        let timeout = ctx.settings.timeouts.tool_call();
        let output = crate::doctor::version_output(&ctx.session, &path, requirement, timeout).await;
        if let Err(e) = &output
            && e.kind().is_interrupted()
        {
            return Err(e.clone());
        }
        let check = crate::doctor::assess_tool(requirement, Some(&path), Some(output));
        match check.status {
            crate::doctor::Status::Ok => {
                if let Some(version) = check.version.clone()
                    && let Some(helm) = self.helm_version().await?
                    && let Some(why) = crate::helmfile_cli::helm_incompatibility(version, helm)
                {
                    return Err(missing(format!(
                        "{why} ({}); install helmfile {} or newer (`cargo xtask tools install helmfile`, the pinned version, into .tools/bin) or put helm 3 first on PATH; nothing was changed",
                        path.display(),
                        crate::helmfile_cli::HELM_4_SINCE
                    )));
                }
                Ok((Helmfile { version: check.version }, None))
            }
            crate::doctor::Status::Warning => Ok((
                Helmfile::default(),
                Some(format!(
                    "helmfile: {}; using only the flags of helmfile {}",
                    check.detail,
                    crate::helmfile_cli::MINIMUM
                )),
            )),
            crate::doctor::Status::Missing => Err(missing(format!(
                "helmfile {} ({}) is older than {}, the oldest this bootstrap drives (it needs `sync --sync-args` to give helm the layer's timeout); install helmfile {} or newer: `cargo xtask tools install helmfile` (the pinned version, into .tools/bin), or {}; nothing was changed",
                check.version.map_or("?".into(), |v| v.to_string()),
                path.display(),
                crate::helmfile_cli::MINIMUM,
                crate::helmfile_cli::MINIMUM,
                requirement.hint
            ))),
        }
    }

    /// The version of the helm this run calls, if one is found and says it.
    async fn helm_version(&self) -> Result<Option<crate::version::Version>> {
        let ctx = self.ctx;
        let Some(path) = crate::probe::find_tool(&ctx.root, "helm") else { return Ok(None) };
        let requirement = crate::doctor::requirement("helm");
        let timeout = ctx.settings.timeouts.tool_call();
        let output = crate::doctor::version_output(&ctx.session, &path, requirement, timeout).await;
        if let Err(e) = &output
            && e.kind().is_interrupted()
        {
            return Err(e.clone());
        }
        Ok(crate::doctor::assess_tool(requirement, Some(&path), Some(output)).version)
    }

    /// The tools this run calls are found or planned for install (exit 3 otherwise;
    /// with `--plan`, a warning).
    fn check_tools(&self, installs: &[ToolInstall]) -> Result<Vec<String>> {
        let mut tools = vec!["helmfile", "helm"];
        if self.needs_k3d() {
            tools.insert(0, "k3d");
        }
        let absent: Vec<&str> = tools
            .into_iter()
            .filter(|t| !installs.iter().any(|i| i.name == *t))
            .filter(|t| crate::probe::find_tool(&self.ctx.root, t).is_none())
            .collect();
        if absent.is_empty() {
            return Ok(Vec::new());
        }
        let text = format!(
            "not found on PATH: {} (run `cargo xtask doctor` for install hints)",
            absent.join(", ")
        );
        match self.options.mode {
            Mode::Plan => Ok(vec![format!("the run would stop: {text}")]),
            Mode::Apply => Err(missing(text)),
        }
    }
}

fn names_of(platform: &Platform) -> Vec<&str> {
    platform.layers.iter().map(|l| l.name.as_str()).collect()
}

impl Stage<Read, ()> for Preflight<'_> {
    fn name(&self) -> &'static str {
        "preflight"
    }

    /// Preflight reads, checks and plans; then installs the planned tools.
    fn apply<'a>(&'a mut self, _: &'a (), read: &'a mut Read) -> StageFuture<'a> {
        Box::pin(self.plan_and_install(read))
    }
}
