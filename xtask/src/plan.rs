//! `cargo xtask plan`: the run plan `cargo xtask bootstrap --plan` prints (the same
//! value: [`crate::bootstrap::run_plan::RunPlan`]): what the platform is made of, read
//! from `infra/` and changing nothing (the cluster with its config hash, the layers in
//! order with their releases, gates and container images rendered with `helmfile
//! template`, the locked charts), each part with what a bootstrap would do about it.

use std::fmt::Write as _;

use crate::bootstrap::describe::PlanView;
use crate::bootstrap::run_plan::{LayerAction, LayerDecision, RunPlan};
use crate::config::Context;
use crate::error::Result;
use crate::events::{Event, Rendered};

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
        for connect in &d.connect_caches {
            let _ = writeln!(out, "  then    {connect}");
        }
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
    use crate::bootstrap::describe::{BundlesView, ClusterView, LayerView, ReleaseView, StepView};

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
                    state: "parsed".into(),
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
                    state: "not_read".into(),
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
