//! The one log file every stage writes to: each line timestamped and tagged by stage.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

/// Append-only log shared by every stage and every tool call. Cloning shares the file.
#[derive(Clone)]
pub struct Log {
    path: PathBuf,
    /// `None` for `Log::none()`: lines are dropped.
    file: Option<Arc<Mutex<File>>>,
}

impl Log {
    /// Open (creating parents) the log in append mode: a re-run adds to the history.
    pub fn open(path: &Path) -> Result<Log> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the log folder {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the log file {}", path.display()))?;
        Ok(Log { path: path.to_owned(), file: Some(Arc::new(Mutex::new(file))) })
    }

    /// A log that keeps nothing, for read-only calls (`<tool> version`, `helmfile list`)
    /// of commands that write no log.
    pub fn none() -> Log {
        Log { path: PathBuf::new(), file: None }
    }

    /// Whether this is `Log::none()`, so messages do not point at a log file.
    pub fn is_none(&self) -> bool {
        self.file.is_none()
    }

    /// The log file (empty for `Log::none()`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One line: `<RFC 3339 UTC> [<tag>] <text>`. Write errors are ignored on purpose:
    /// a full disk must not turn a converged platform into a failed run.
    pub fn line(&self, tag: &str, text: &str) {
        let Some(file) = &self.file else { return };
        let stamp = jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_default();
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = writeln!(file, "{stamp} [{tag}] {}", text.trim_end_matches(['\r', '\n']));
    }
}

/// A spinner on a terminal (stderr), nothing otherwise; the caller clears it when done.
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

// ---- the summary printed at exit ---------------------------------------------------

/// How the whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    Ok,
    Failed,
    /// Not run: an earlier stage failed, or it does not apply (`--context`).
    Skipped,
    Interrupted,
    /// `--plan`: decided, nothing changed.
    Planned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatus {
    Synced,
    Unchanged,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateStatus {
    Passed,
    Warned,
    Failed,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StageSummary {
    pub name: String,
    pub status: StageStatus,
    pub duration_ms: u64,
    /// One line for the table (what the stage did or found).
    #[serde(skip)]
    pub detail: String,
    /// What the stage found but did not fail on (`0 ExternalSecrets found`, offline tools);
    /// left out of the JSON when empty, so the shape holds exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub status: LayerStatus,
    pub gate: GateStatus,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub duration_ms: u64,
    /// `--plan` only: what would be done and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl LayerSummary {
    pub fn new(name: &str, status: LayerStatus) -> LayerSummary {
        LayerSummary {
            name: name.to_owned(),
            status,
            gate: GateStatus::None,
            warnings: Vec::new(),
            duration_ms: 0,
            plan: None,
        }
    }
}

/// The first failure of a run and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub stage: String,
    pub layer: Option<String>,
    pub message: String,
    pub remediation: String,
}

/// Everything the run prints at exit; the JSON shape is a contract (issue 6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub status: RunStatus,
    pub stages: Vec<StageSummary>,
    pub layers: Vec<LayerSummary>,
    pub failure: Option<Failure>,
    pub log: String,
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"status\":\"failed\",\"error\":\"{e}\"}}"))
    }

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

    /// Plain-text tables (stages, layers), warnings, the failure and the log path.
    pub fn to_table(&self) -> String {
        let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
        let mut out = String::new();
        let stages: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| vec![s.name.clone(), word(&s.status), secs(s.duration_ms), s.detail.clone()])
            .collect();
        out.push_str(&table(&["STAGE", "STATUS", "TIME", "DETAIL"], &stages));
        if !self.layers.is_empty() {
            out.push('\n');
            let layers: Vec<Vec<String>> = self
                .layers
                .iter()
                .map(|l| {
                    let time = if l.duration_ms > 0 { secs(l.duration_ms) } else { String::new() };
                    let mut row = vec![l.name.clone(), word(&l.status), word(&l.gate), time];
                    if l.plan.is_some() {
                        row.push(l.plan.clone().unwrap_or_default());
                    }
                    row
                })
                .collect();
            let plan = self.layers.iter().any(|l| l.plan.is_some());
            let headers: &[&str] = if plan {
                &["LAYER", "STATUS", "GATE", "TIME", "PLAN"]
            } else {
                &["LAYER", "STATUS", "GATE", "TIME"]
            };
            out.push_str(&table(headers, &layers));
        }
        for warning in self.warnings() {
            out.push_str(&format!("warning: {warning}\n"));
        }
        if let Some(f) = &self.failure {
            let at = f.layer.as_ref().map_or(String::new(), |l| format!(" (layer {l})"));
            out.push_str(&format!("\nFAILED in {}{at}: {}\n", f.stage, f.message));
            out.push_str(&format!("what to do: {}\n", f.remediation));
        }
        out.push_str(&format!("\n{}; log: {}\n", word(&self.status), self.log));
        out
    }
}

/// An enum's serialized word (`synced`, `passed`, ...).
fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = render(headers.to_vec());
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_with_tag_and_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/setup.log");
        Log::open(&path).unwrap().line("cluster", "$ k3d cluster list\n");
        Log::open(&path).unwrap().line("layers/10-bootstrap", "done");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" [cluster] $ k3d cluster list"), "{}", lines[0]);
        assert!(lines[1].starts_with("20") && lines[1].contains("Z [layers/10-bootstrap] done"));
    }

    fn summary() -> Summary {
        let mut auth = LayerSummary::new("24-auth", LayerStatus::Failed);
        auth.gate = GateStatus::Failed;
        let mut data = LayerSummary::new("40-data-plane", LayerStatus::Skipped);
        data.warnings.push("pod log missing".into());
        Summary {
            status: RunStatus::Failed,
            stages: vec![StageSummary {
                name: "layers".into(),
                status: StageStatus::Failed,
                duration_ms: 1500,
                detail: "1 synced".into(),
                warnings: Vec::new(),
            }],
            layers: vec![auth, data],
            failure: Some(Failure {
                stage: "layers".into(),
                layer: Some("24-auth".into()),
                message: "gate failed".into(),
                remediation: "kubectl logs -n ameide x".into(),
            }),
            log: "/tmp/setup.log".into(),
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let json: serde_json::Value = serde_json::from_str(&summary().to_json()).unwrap();
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
        assert_eq!(json["log"], "/tmp/setup.log");
        let ok = Summary { failure: None, ..summary() };
        assert!(ok.to_json().contains("\"failure\":null"));
    }

    #[test]
    fn stage_warnings_reach_json_and_the_warning_list() {
        let mut with_warning = summary();
        with_warning.stages[0].warnings.push("0 ExternalSecrets found".into());
        let json: serde_json::Value = serde_json::from_str(&with_warning.to_json()).unwrap();
        assert_eq!(json["stages"][0]["warnings"], serde_json::json!(["0 ExternalSecrets found"]));
        assert_eq!(
            with_warning.warnings(),
            ["40-data-plane: pod log missing", "layers: 0 ExternalSecrets found"]
        );
    }

    #[test]
    fn table_shows_layers_warnings_and_what_to_do() {
        let text = summary().to_table();
        assert!(text.contains("24-auth        failed   failed"), "{text}");
        assert!(text.contains("warning: 40-data-plane: pod log missing"), "{text}");
        assert!(text.contains("FAILED in layers (layer 24-auth): gate failed"), "{text}");
        assert!(text.contains("what to do: kubectl logs -n ameide x"), "{text}");
        assert!(text.trim_end().ends_with("failed; log: /tmp/setup.log"), "{text}");
    }
}
