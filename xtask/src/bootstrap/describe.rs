//! What `infra/` describes, as the run plan shows it: the cluster with its config hash,
//! the layers in order with their releases, gates and images (rendered with `helmfile
//! template`), the locked charts, bundles and steps. Each part carries the decision the
//! run plan took about it.

use serde::{Deserialize, Serialize};

use super::run_plan::{ClusterDecision, LayerDecision, StepDecision};
use crate::config::Context;
use crate::error::Result;
use crate::platform::charts_lock::ChartsLock;
use crate::platform::helmfile::LayerReleases;
use crate::platform::k3d::K3dConfig;

/// What `infra/` describes (the run plan's description part).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanView {
    pub root: String,
    pub environment: String,
    pub cluster: ClusterView,
    pub layers: Vec<LayerView>,
    pub charts_lock: String,
    pub charts: Vec<ChartView>,
    /// Optional bundles: every one the layers define, and those that are on.
    pub bundles: BundlesView,
    /// Repository steps, in settings order.
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BundlesView {
    pub available: Vec<String>,
    pub enabled: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepView {
    pub name: String,
    pub after: String,
    pub run: Vec<String>,
    pub inputs: Vec<String>,
    pub requires_env: Vec<String>,
    #[serde(flatten)]
    pub decision: Option<StepDecision>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterView {
    pub name: String,
    /// Path of the k3d config, relative to the root.
    pub config: String,
    /// sha256 hex of the config's canonical form.
    pub config_hash: String,
    pub servers: Option<u32>,
    pub agents: Option<u32>,
    pub image: Option<String>,
    /// The registry container the config makes k3d create, if any.
    pub registry: Option<String>,
    #[serde(flatten)]
    pub decision: Option<ClusterDecision>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerView {
    pub name: String,
    pub file: String,
    /// `parsed` (from the file), `listed` (rendered by `helmfile build`) or `not_read`.
    pub state: String,
    /// Why the releases are unknown, for `not_read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub releases: Vec<ReleaseView>,
    /// Names of the gate releases, in file order.
    pub gates: Vec<String>,
    /// The container images the layer runs (workloads, Jobs, test hooks), from
    /// `helmfile template` with the environment's values.
    pub images: Vec<String>,
    /// Why `images` is not known, when rendering failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_note: Option<String>,
    #[serde(flatten)]
    pub decision: Option<LayerDecision>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseView {
    pub name: String,
    pub namespace: Option<String>,
    pub chart: String,
    pub gate: bool,
    pub installed: bool,
    pub needs: Vec<String>,
    /// The optional bundle it belongs to (installed only when that bundle is on).
    pub bundle: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChartView {
    pub name: String,
    pub version: String,
    pub repository: String,
    /// Archive path relative to the root.
    pub archive: String,
}

/// Describe what `infra/` holds (with `platform` as preflight read it). Bad input
/// anywhere stops with exit 2. `render_images`: run `helmfile template` per layer for
/// its images (the plan that is printed); a run that applies leaves that to the
/// images fetched ahead.
pub async fn describe(
    ctx: &Context,
    platform: &crate::platform::helmfile::Platform,
    render_images: bool,
) -> Result<PlanView> {
    let settings = &ctx.settings;
    let k3d = K3dConfig::read(&settings.k3d_config)?;
    let lock = ChartsLock::read(&settings.charts_lock)?;

    let cluster = ClusterView {
        name: settings.cluster.clone(),
        config: ctx.display_path(&k3d.file),
        config_hash: k3d.canonical_hash(),
        servers: k3d.spec.servers,
        agents: k3d.spec.agents,
        image: k3d.spec.image.clone(),
        registry: k3d.created_registry(&settings.cluster),
        decision: None,
    };
    let rendered = match render_images {
        true => crate::images::render_layers(ctx, &platform.layers).await,
        false => platform
            .layers
            .iter()
            .map(|layer| crate::images::LayerImages {
                layer: layer.name.clone(),
                images: Vec::new(),
                note: Some("not rendered by a run that applies".into()),
            })
            .collect(),
    };
    let layers = platform
        .layers
        .iter()
        .zip(rendered)
        .map(|(layer, rendered)| LayerView {
            name: layer.name.clone(),
            file: ctx.display_path(&layer.file),
            state: match layer.releases {
                LayerReleases::Parsed { .. } => "parsed",
                LayerReleases::Listed { .. } => "listed",
                LayerReleases::NotRead { .. } => "not_read",
            }
            .into(),
            note: layer.releases.not_read_reason().map(str::to_string),
            releases: layer
                .releases
                .as_slice()
                .iter()
                .map(|r| ReleaseView {
                    name: r.name.clone(),
                    namespace: r.namespace.clone(),
                    chart: r.chart.clone(),
                    gate: r.gate,
                    installed: r.installed,
                    needs: r.needs.clone(),
                    bundle: r.bundle().map(str::to_owned),
                })
                .collect(),
            gates: layer.gates().map(|r| r.name.clone()).collect(),
            images: rendered.images,
            images_note: rendered.note,
            decision: None,
        })
        .collect();
    let charts = lock
        .charts
        .iter()
        .map(|chart| ChartView {
            name: chart.name.clone(),
            version: chart.version.clone(),
            repository: chart.repository.clone(),
            archive: ctx.display_path(&ChartsLock::archive_path(&settings.charts_lock, chart)),
        })
        .collect();
    Ok(PlanView {
        root: ctx.root.display().to_string(),
        environment: ctx.environment.clone(),
        cluster,
        layers,
        charts_lock: ctx.display_path(&settings.charts_lock),
        charts,
        bundles: BundlesView {
            available: crate::platform::bundles::available(platform).into_iter().collect(),
            enabled: ctx.bundles.iter().cloned().collect(),
        },
        steps: settings
            .steps
            .iter()
            .map(|s| StepView {
                name: s.name.clone(),
                after: s.after.clone(),
                run: s.run.clone(),
                inputs: s.inputs.clone(),
                requires_env: s.requires_env.clone(),
                decision: None,
            })
            .collect(),
    })
}
