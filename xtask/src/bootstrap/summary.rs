//! The summary a run ends with: the stage rows, one row per layer, the first failure
//! and the log path, as a table (terminal), one JSON object (`--format json`; the shape
//! is a contract), and the lines the log file ends with.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::Rendered;
use crate::images::FetchReport;
use crate::layers::GateStatus;
use crate::outcome::Status;
use crate::runner::{Failure, StageRow};
use crate::table;

/// What happened to one layer in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatus {
    Synced,
    Unchanged,
    Failed,
    Skipped,
}

/// What the plan decided for a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerAction {
    Sync,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    pub name: String,
    pub status: LayerStatus,
    pub gate: GateStatus,
    pub warnings: Vec<String>,
    pub duration: Duration,
    /// The plan's decision and why, once the layers stage planned this layer.
    pub action: Option<(LayerAction, String)>,
    /// What its sync does first: releases a stopped run left pending, brought back.
    pub first: Vec<String>,
    /// Steps that follow the layer (Vault bootstrap, db-migrations), for plans.
    pub then: Vec<String>,
}

impl LayerRow {
    pub fn new(name: &str) -> LayerRow {
        LayerRow {
            name: name.to_owned(),
            status: LayerStatus::Skipped,
            gate: GateStatus::None,
            warnings: Vec::new(),
            duration: Duration::ZERO,
            action: None,
            first: Vec::new(),
            then: Vec::new(),
        }
    }
}

/// What happened to one repository step in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ran,
    Unchanged,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub name: String,
    /// Where it runs: a layer, or `cluster` / `layers` / `secrets`.
    pub after: String,
    pub status: StepStatus,
    pub duration: Duration,
    /// The plan's decision (`run: <reason>` or `unchanged: …`), when it was planned.
    pub plan: Option<String>,
}

impl StepRow {
    pub fn new(name: &str, after: &str) -> StepRow {
        StepRow {
            name: name.to_owned(),
            after: after.to_owned(),
            status: StepStatus::Skipped,
            duration: Duration::ZERO,
            plan: None,
        }
    }
}

#[derive(Debug)]
pub struct Summary {
    pub status: Status,
    pub stages: Vec<StageRow>,
    pub layers: Vec<LayerRow>,
    pub steps: Vec<StepRow>,
    /// The local registry and what it holds (none when not read).
    pub registry: Option<crate::cluster::registry::Catalog>,
    /// Each secret store the ExternalSecrets use, with its provider.
    pub secret_stores: Vec<crate::secrets::StoreUse>,
    /// The images fetched ahead, when the run fetched any.
    pub images: Option<FetchReport>,
    pub failure: Option<Failure>,
    pub log: String,
    /// `--timings`: the report's path and the run's spans.
    pub timings: Option<crate::timings::Attached>,
}

impl Summary {
    /// Every warning of the run, in stage order; a layer's warnings are the layers stage's.
    pub fn warnings(&self) -> Vec<String> {
        let mut all = Vec::new();
        for stage in &self.stages {
            if stage.name == "layers" {
                for layer in &self.layers {
                    all.extend(layer.warnings.iter().map(|w| format!("{}: {w}", layer.name)));
                }
            }
            all.extend(stage.warnings.iter().map(|w| format!("{}: {w}", stage.name)));
        }
        all
    }

    fn failure_lines(&self) -> Option<(String, String)> {
        let f = self.failure.as_ref()?;
        let at = f.layer.as_ref().map_or(String::new(), |l| format!(" (layer {l})"));
        Some((format!("FAILED in {}{at}: {}", f.stage, f.finding), f.finding.remediation.clone()))
    }
}

/// The word a status serializes to (`synced`, `passed`), as tables and JSON show it.
pub(super) fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

impl Rendered for Summary {
    fn human(&self) -> String {
        let stages: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                vec![s.name.clone(), s.status.word().into(), secs(s.duration), s.detail.clone()]
            })
            .collect();
        let mut out = table::render(&["STAGE", "STATUS", "TIME", "DETAIL"], &stages);
        if !self.layers.is_empty() {
            let rows: Vec<Vec<String>> = self
                .layers
                .iter()
                .map(|l| {
                    let time = if l.duration.is_zero() { String::new() } else { secs(l.duration) };
                    vec![l.name.clone(), word(&l.status), word(&l.gate), time]
                })
                .collect();
            out.push('\n');
            out.push_str(&table::render(&["LAYER", "STATUS", "GATE", "TIME"], &rows));
        }
        if !self.steps.is_empty() {
            let rows: Vec<Vec<String>> = self
                .steps
                .iter()
                .map(|s| {
                    let time = if s.duration.is_zero() { String::new() } else { secs(s.duration) };
                    vec![s.name.clone(), word(&s.status), time, format!("after {}", s.after)]
                })
                .collect();
            out.push('\n');
            out.push_str(&table::render(&["STEP", "STATUS", "TIME", "WHEN"], &rows));
        }
        if let Some(images) = &self.images {
            out.push_str(&format!("\nimages (fetched ahead): {}\n", images.line()));
        }
        for warning in self.warnings() {
            out.push_str(&format!("warning: {warning}\n"));
        }
        if let Some((failed, remediation)) = self.failure_lines() {
            out.push_str(&format!("\n{failed}\nwhat to do: {remediation}\n"));
        }
        if let Some(timings) = &self.timings {
            out.push_str(&format!("\n{}", timings.line()));
        }
        out.push_str(&format!("\n{}; log: {}\n", self.status.word(), self.log));
        out
    }

    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.doc()).unwrap_or_default()
    }

    /// The failure and its remediation as plain lines, the summary as JSON, then the
    /// gap log (every warning) last, so a reader of the log's end sees what matters.
    fn log_lines(&self) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        if let Some((failed, remediation)) = self.failure_lines() {
            lines.push(("bootstrap".into(), failed));
            lines.push(("bootstrap".into(), format!("what to do: {remediation}")));
        }
        lines.push(("bootstrap".into(), format!("end: {} {}", self.status.word(), self.json())));
        let warnings = self.warnings();
        lines.push(("gaps".into(), format!("{} gap(s) found by this run", warnings.len())));
        for warning in warnings {
            lines.push(("gaps".into(), format!("- {}", warning.replace('\n', " "))));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Finding;

    fn summary() -> Summary {
        let mut auth = LayerRow::new("24-auth");
        auth.status = LayerStatus::Failed;
        auth.gate = GateStatus::Failed;
        let mut data = LayerRow::new("40-data-plane");
        data.warnings.push("pod log missing".into());
        Summary {
            status: Status::Failed,
            stages: vec![StageRow {
                name: "layers".into(),
                status: Status::Failed,
                duration: Duration::from_millis(1500),
                detail: "1 synced".into(),
                warnings: Vec::new(),
            }],
            layers: vec![auth, data],
            steps: Vec::new(),
            registry: None,
            secret_stores: Vec::new(),
            images: None,
            failure: Some(Failure {
                stage: "layers".into(),
                layer: Some("24-auth".into()),
                finding: Finding::new(
                    "gate ameide/auth-smoke",
                    "hooks Succeeded",
                    "1 Failed",
                    "kubectl logs -n ameide x",
                ),
            }),
            log: "/tmp/setup.log".into(),
            timings: None,
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let json = summary().json();
        assert_eq!(json["status"], "failed");
        assert_eq!(
            json["stages"][0],
            serde_json::json!({"name": "layers", "status": "failed", "duration_ms": 1500})
        );
        assert_eq!(
            json["layers"][0],
            serde_json::json!({"name": "24-auth", "status": "failed", "gate": "failed", "warnings": []})
        );
        assert_eq!(json["failure"]["layer"], "24-auth");
        assert_eq!(json["failure"]["remediation"], "kubectl logs -n ameide x");
        assert_eq!(json["log"], "/tmp/setup.log");
        let ok = Summary { failure: None, ..summary() };
        assert_eq!(ok.json()["failure"], serde_json::Value::Null);
        assert_eq!(ok.json()["images"], serde_json::Value::Null);
    }

    #[test]
    fn fetched_images_show_counts_and_time() {
        use crate::images::{ImageResult, Outcome};
        let images = FetchReport {
            layers: Vec::new(),
            images: vec![ImageResult { image: "busybox:1.37.0".into(), outcome: Outcome::Fetched }],
            warm_warnings: Vec::new(),
            duration: Duration::from_millis(3100),
        };
        let with = Summary { images: Some(images), ..summary() };
        assert!(
            with.human()
                .contains("images (fetched ahead): 1 fetched, 0 already present, 0 failed in 3.1s"),
            "{}",
            with.human()
        );
        let json = with.json();
        assert_eq!(
            (json["images"]["fetched"].as_u64(), json["images"]["duration_ms"].as_u64()),
            (Some(1), Some(3100))
        );
    }

    #[test]
    fn layers_carry_the_plans_action_and_reason() {
        let mut row = LayerRow::new("10-bootstrap");
        row.status = LayerStatus::Synced;
        row.action = Some((LayerAction::Sync, "no digest recorded".into()));
        row.then.push("await the Vault bootstrap Job".into());
        row.first.push("uninstall ns (revision 1 is pending-install)".into());
        let synced = Summary { layers: vec![row], failure: None, ..summary() };
        let json = synced.json();
        assert_eq!(json["layers"][0]["status"], "synced");
        assert_eq!(json["layers"][0]["action"], "sync");
        assert_eq!(json["layers"][0]["reason"], "no digest recorded");
        assert_eq!(json["layers"][0]["first"][0], "uninstall ns (revision 1 is pending-install)");
        assert_eq!(json["layers"][0]["then"][0], "await the Vault bootstrap Job");
    }

    #[test]
    fn table_shows_layers_warnings_and_what_to_do_once() {
        let text = summary().human();
        assert!(text.contains("24-auth        failed   failed"), "{text}");
        assert!(text.contains("warning: 40-data-plane: pod log missing"), "{text}");
        assert!(text.contains("FAILED in layers (layer 24-auth): gate ameide/auth-smoke: expected hooks Succeeded, found 1 Failed"), "{text}");
        assert_eq!(text.matches("what to do: kubectl logs -n ameide x").count(), 1, "{text}");
        assert!(text.trim_end().ends_with("failed; log: /tmp/setup.log"), "{text}");
    }

    #[test]
    fn the_log_ends_with_the_gap_log_after_the_failure() {
        let lines = summary().log_lines();
        assert!(lines[0].1.starts_with("FAILED in layers (layer 24-auth)"));
        assert_eq!(lines[1].1, "what to do: kubectl logs -n ameide x");
        let last = lines.last().unwrap();
        assert_eq!(last, &("gaps".to_string(), "- 40-data-plane: pod log missing".to_string()));
    }
}
