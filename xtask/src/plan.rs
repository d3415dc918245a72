//! `cargo xtask plan`: the run plan `cargo xtask bootstrap --plan` prints (the same
//! value: [`crate::bootstrap::run_plan::RunPlan`]): what the platform is made of, read
//! from `infra/` and changing nothing (the cluster with its config hash, the layers in
//! order with their releases, gates and container images rendered with `helmfile
//! template`, the locked charts), each part with what a bootstrap would do about it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bootstrap::run_plan::{
    ClusterDecision, LayerAction, LayerDecision, RunPlan, StepDecision,
};
use crate::config::Context;
use crate::error::Result;
use crate::events::{Event, Rendered};
use crate::platform::charts_lock::ChartsLock;
use crate::platform::helmfile::LayerReleases;
use crate::platform::k3d::K3dConfig;

/// What `infra/` describes (the run plan's description part).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct BundlesView {
    pub available: Vec<String>,
    pub enabled: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StepView {
    pub name: String,
    pub after: String,
    pub run: Vec<String>,
    pub inputs: Vec<String>,
    pub requires_env: Vec<String>,
    #[serde(flatten)]
    pub decision: Option<StepDecision>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LayerView {
    pub name: String,
    pub file: String,
    /// `parsed` (from the file), `listed` (rendered by `helmfile build`) or `not_read`.
    pub state: &'static str,
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
            },
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

/// `cargo xtask plan`: the run plan of a plain `bootstrap` as the result.
pub async fn run(ctx: &Context) -> Result<()> {
    let plan = crate::bootstrap::plan_only(ctx).await?;
    ctx.session.events.emit(Event::Result { result: &plan });
    Ok(())
}

impl Rendered for RunPlan {
    fn human(&self) -> String {
        let mut out = String::new();
        for tool in &self.tools {
            let _ =
                writeln!(out, "tools     install {} {}: {}", tool.name, tool.version, tool.reason);
        }
        out.push_str(&render(&self.platform));
        if !self.fetch_ahead.is_empty() {
            let _ = writeln!(out, "\nimages    fetched ahead for {}", self.fetch_ahead.join(", "));
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        let _ = writeln!(out, "\nplanned, nothing changed; log: {}", self.log);
        out
    }

    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The readable listing.
pub fn render(plan: &PlanView) -> String {
    let mut out = String::new();
    let c = &plan.cluster;
    let count = |n: Option<u32>| n.map_or("default".to_string(), |n| n.to_string());
    let registry = c.registry.as_deref().unwrap_or("none");
    let _ = writeln!(out, "cluster   {} (k3d, registry {registry})", c.name);
    if let Some(d) = &c.decision {
        let _ = writeln!(out, "  plan    {}: {}", d.action, d.reason);
    }
    let _ = writeln!(out, "  config  {}", c.config);
    let _ = writeln!(out, "  hash    {}", c.config_hash);
    let _ = writeln!(
        out,
        "  nodes   {} server(s), {} agent(s), image {}",
        count(c.servers),
        count(c.agents),
        c.image.as_deref().unwrap_or("k3d default")
    );
    let _ = writeln!(
        out,
        "\nlayers    {} in order, environment `{}`",
        plan.layers.len(),
        plan.environment
    );
    let releases = || plan.layers.iter().flat_map(|l| &l.releases);
    let width = releases().map(|r| r.name.len()).max().unwrap_or(0);
    let ns_width =
        releases().map(|r| r.namespace.as_ref().map_or(1, String::len)).max().unwrap_or(0);
    for (i, layer) in plan.layers.iter().enumerate() {
        let gates = match layer.gates.len() {
            _ if layer.state == "not_read" => "gates unknown".to_string(),
            0 => "NO GATE".to_string(),
            n => format!("{n} gate(s)"),
        };
        let _ = writeln!(out, "  {}. {}  ({}; {gates})", i + 1, layer.name, layer.file);
        if let Some(line) = layer.decision.as_ref().and_then(decision_line) {
            let _ = writeln!(out, "       plan: {line}");
        }
        if let Some(note) = &layer.note {
            let _ = writeln!(out, "       {note}");
        }
        match &layer.images_note {
            Some(note) => {
                let _ = writeln!(out, "       images unknown: {note}");
            }
            None => {
                let _ = writeln!(out, "       images: {}", none_or(&layer.images));
            }
        }
        for r in &layer.releases {
            let mut tags = Vec::new();
            if r.gate {
                tags.push("gate");
            }
            let bundle = r.bundle.as_ref().map(|b| format!("bundle {b}"));
            tags.extend(bundle.as_deref());
            if !r.installed {
                tags.push("not installed");
            }
            let tags =
                if tags.is_empty() { String::new() } else { format!("  [{}]", tags.join(", ")) };
            let _ = writeln!(
                out,
                "       {:width$}  {:ns_width$}  {}{tags}",
                r.name,
                r.namespace.as_deref().unwrap_or("-"),
                r.chart
            );
        }
    }
    if !plan.bundles.available.is_empty() {
        let on = if plan.bundles.enabled.is_empty() {
            "none".into()
        } else {
            plan.bundles.enabled.join(", ")
        };
        let _ = writeln!(
            out,
            "\nbundles   {} (on: {on}; `--bundle NAME` turns one on)",
            plan.bundles.available.join(", ")
        );
    }
    if !plan.steps.is_empty() {
        let _ = writeln!(out, "\nsteps     {} repository step(s)", plan.steps.len());
        for step in &plan.steps {
            let _ = writeln!(out, "  {}  after {}: {}", step.name, step.after, step.run.join(" "));
            if let Some(d) = &step.decision {
                let _ = writeln!(out, "       plan: {}: {}", d.action, d.reason);
            }
        }
    }
    let _ = writeln!(out, "\ncharts    {} locked in {}", plan.charts.len(), plan.charts_lock);
    for chart in &plan.charts {
        let _ = writeln!(
            out,
            "  {} {}  from {}  ({})",
            chart.name, chart.version, chart.repository, chart.archive
        );
    }
    out
}

/// `sync: <reason>; first <recovery>; then <step>`, for a selected layer.
pub fn decision_line(d: &LayerDecision) -> Option<String> {
    let action = match d.action? {
        LayerAction::Sync => "sync",
        LayerAction::Unchanged => "unchanged",
        LayerAction::Recheck => "recheck",
    };
    let reason = d.reason.as_deref().unwrap_or_default();
    let first: String = d.first.iter().map(|s| format!("; first {s}")).collect();
    let then: String = d.then.iter().map(|s| format!("; then {s}")).collect();
    Some(format!("{action}: {reason}{first}{then}"))
}

fn none_or(list: &[String]) -> String {
    if list.is_empty() { "none".into() } else { list.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PlanView {
        PlanView {
            root: "/repo".into(),
            environment: "local".into(),
            cluster: ClusterView {
                name: "ameide".into(),
                config: "infra/docker/local/k3d.yaml".into(),
                config_hash: "ab".repeat(32),
                servers: Some(1),
                agents: None,
                image: None,
                registry: Some("k3d-dev-reg".into()),
                decision: None,
            },
            layers: vec![
                LayerView {
                    name: "10-bootstrap".into(),
                    file: "infra/kubernetes/helmfiles/10-bootstrap.yaml".into(),
                    state: "parsed",
                    note: None,
                    releases: vec![ReleaseView {
                        name: "bootstrap-smoke".into(),
                        namespace: Some("ameide".into()),
                        chart: "../charts/helm-test-jobs".into(),
                        gate: true,
                        installed: true,
                        needs: vec![],
                        bundle: None,
                    }],
                    gates: vec!["bootstrap-smoke".into()],
                    images: vec!["busybox:1.37.0".into()],
                    images_note: None,
                    decision: None,
                },
                LayerView {
                    name: "20-core-operators".into(),
                    file: "x.yaml.gotmpl".into(),
                    state: "not_read",
                    note: Some("not read: Go template and helmfile not found".into()),
                    releases: vec![],
                    gates: vec![],
                    images: vec![],
                    images_note: Some("`helmfile template` of x.yaml.gotmpl failed: boom".into()),
                    decision: None,
                },
            ],
            charts_lock: "charts.lock.yaml".into(),
            charts: vec![],
            bundles: BundlesView { available: vec!["observability".into()], enabled: vec![] },
            steps: vec![StepView {
                name: "sdk".into(),
                after: "50-product-services".into(),
                run: vec!["pnpm".into(), "build".into()],
                inputs: vec![],
                requires_env: vec![],
                decision: None,
            }],
        }
    }

    #[test]
    fn human_listing_shows_layers_gates_and_notes() {
        let text = render(&sample());
        assert!(text.contains("1. 10-bootstrap"), "{text}");
        assert!(text.contains("bootstrap-smoke  ameide"), "{text}");
        assert!(text.contains("[gate]"), "{text}");
        assert!(text.contains("not read: Go template and helmfile not found"), "{text}");
        assert!(text.contains(&"ab".repeat(32)), "{text}");
        assert!(text.contains("images: busybox:1.37.0\n"), "{text}");
        assert!(
            text.contains("images unknown: `helmfile template` of x.yaml.gotmpl failed"),
            "{text}"
        );
        assert!(text.starts_with("cluster   ameide (k3d, registry k3d-dev-reg)\n"), "{text}");
        assert!(text.contains("bundles   observability (on: none;"), "{text}");
        assert!(text.contains("sdk  after 50-product-services: pnpm build"), "{text}");
    }

    #[test]
    fn json_has_the_documented_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["cluster"]["name"], "ameide");
        assert_eq!(json["layers"][0]["releases"][0]["gate"], true);
        assert_eq!(json["layers"][1]["state"], "not_read");
        assert!(json["layers"][0].get("note").is_none());
        assert!(json["charts"].is_array());
        assert_eq!(json["bundles"]["available"], serde_json::json!(["observability"]));
        assert_eq!(json["steps"][0]["after"], "50-product-services");
        assert_eq!(json["layers"][0]["images"][0], "busybox:1.37.0");
        assert!(json["layers"][0].get("images_note").is_none());
        assert!(json["cluster"].get("action").is_none(), "no decision, no action: {json}");
    }
}
