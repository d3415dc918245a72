//! The preflight stage: every input read and checked before anything changes (bad
//! input exits 2 here), the pinned tools installed (not with `--plan`), and the tools
//! this run calls found (exit 3 otherwise).

use super::{Inputs, LayerInput, Options, select};
use crate::config::Context;
use crate::error::{Result, missing};
use crate::outcome::Report;
use crate::runner::{Mode, Stage, StageFuture};

/// What preflight read: the layer names as soon as they are known (so a later
/// preflight failure still lists them), and the inputs once everything checked out.
#[derive(Debug, Default)]
pub struct Read {
    pub layer_names: Vec<String>,
    pub inputs: Option<Inputs>,
}

pub struct Preflight<'c> {
    pub ctx: &'c Context,
    pub options: Options,
    /// The cluster stage will run (and so call `k3d`).
    pub needs_k3d: bool,
}

impl Preflight<'_> {
    async fn read(&self, read: &mut Read) -> Result<Report> {
        let ctx = self.ctx;
        // Bad input first (exit 2 before anything changes), then the pinned tools (not
        // with --plan: it changes nothing), then the tools this run needs.
        let platform = crate::helmfile_list::read_platform(ctx).await?;
        read.layer_names = platform.layers.iter().map(|l| l.name.clone()).collect();
        crate::layers::validate_inputs(&platform)?;
        crate::platform::charts_lock::ChartsLock::read(&ctx.settings.charts_lock)?;
        let no_install = self.options.no_install || self.options.mode == Mode::Plan;
        let offline = crate::tools::prepare(ctx, no_install).await?;
        // helmfile may have just been installed: Go-template layers can be read now.
        let platform = match platform.layers.iter().any(|l| l.releases.not_read_reason().is_some())
        {
            true if !no_install => crate::helmfile_list::read_platform(ctx).await?,
            _ => platform,
        };
        let names: Vec<&str> = platform.layers.iter().map(|l| l.name.as_str()).collect();
        let selected = select(&names, &self.options.selection)?;
        let layers = platform
            .layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                let digest = crate::layers::digest(&ctx.root, &platform, layer, &ctx.environment)?;
                Ok(LayerInput { layer: layer.clone(), digest, selected: selected.contains(&index) })
            })
            .collect::<Result<Vec<_>>>()?;
        self.check_tools()?;
        let detail = format!(
            "{} layer(s), {} selected; environment {}, context {}",
            layers.len(),
            selected.len(),
            ctx.environment,
            ctx.kube_context
        );
        read.inputs = Some(Inputs { platform, layers });
        Ok(Report::ok(detail).warn(offline))
    }

    /// The tools this run calls are found (exit 3 otherwise).
    fn check_tools(&self) -> Result<()> {
        let mut tools = vec!["helmfile", "helm"];
        if self.needs_k3d {
            tools.insert(0, "k3d");
        }
        let absent: Vec<&str> = tools
            .into_iter()
            .filter(|t| crate::probe::find_tool(&self.ctx.root, t).is_none())
            .collect();
        match absent.is_empty() {
            true => Ok(()),
            false => Err(missing(format!(
                "not found on PATH: {} (run `cargo xtask doctor` for install hints)",
                absent.join(", ")
            ))),
        }
    }
}

impl Stage<Read> for Preflight<'_> {
    fn name(&self) -> &'static str {
        "preflight"
    }

    /// Preflight only reads and checks; its report is final (nothing to apply).
    fn plan<'a>(&'a mut self, read: &'a mut Read) -> StageFuture<'a> {
        Box::pin(self.read(read))
    }

    fn apply<'a>(&'a mut self, _: &'a mut Read) -> StageFuture<'a> {
        Box::pin(async { Ok(Report::ok("")) })
    }
}
