//! The result of a command that runs one stage alone (`cargo xtask secrets`, `cargo
//! xtask tilt`): what was done, the warnings, and the failure, as `<tag>: ...` lines or
//! one JSON object.

use serde::Serialize;

use crate::events::Rendered;
use crate::outcome::{Document, Finding, Report, Status, WithStatus};

/// The version of the JSON shape (`schemas/stage.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StageResult {
    #[serde(skip)]
    tag: &'static str,
    /// What was done, a line each.
    pub done: Vec<String>,
    pub warnings: Vec<String>,
    /// The first failure and what to do about it.
    pub failure: Option<Finding>,
    /// `; log: <path>` (empty without a log file).
    #[serde(skip)]
    log: String,
}

impl StageResult {
    /// Fold the stage's reports (the first failed one is the failure).
    pub fn new(tag: &'static str, reports: &[Report], log: String) -> StageResult {
        let mut result =
            StageResult { tag, done: Vec::new(), warnings: Vec::new(), failure: None, log };
        for report in reports {
            result.warnings.extend(report.warnings.iter().cloned());
            if report.passed() {
                result.done.extend((!report.detail.is_empty()).then(|| report.detail.clone()));
            } else if result.failure.is_none() {
                result.failure =
                    Some(report.finding.clone().unwrap_or_else(|| {
                        Finding::new(tag, "the stage to pass", &report.detail, "")
                    }));
            }
        }
        result
    }

    fn status(&self) -> Status {
        if self.failure.is_some() { Status::Failed } else { Status::Ok }
    }
}

impl Rendered for StageResult {
    fn human(&self) -> String {
        let tag = self.tag;
        let mut text = String::new();
        for line in &self.done {
            text.push_str(&format!("{tag}: {line}\n"));
        }
        for warning in &self.warnings {
            text.push_str(&format!("{tag}: warning: {warning}\n"));
        }
        match &self.failure {
            Some(finding) => {
                text.push_str(&format!("{tag}: FAILED: {finding}\n"));
                if !finding.remediation.is_empty() {
                    text.push_str(&format!("what to do: {}\n", finding.remediation));
                }
            }
            None => text.push_str(&format!("{tag}: ok{}\n", self.log)),
        }
        text
    }

    fn json(&self) -> serde_json::Value {
        Document::new(SCHEMA_VERSION, WithStatus { status: self.status(), body: self }).json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_shown_once_with_what_to_do() {
        let failed =
            Report::failed("x", Finding::new("Tilt", "Ready", "not Ready", "read tilt.log"));
        let result = StageResult::new("tilt", &[Report::ok("started"), failed], "; log: /l".into());
        let text = result.human();
        assert!(
            text.starts_with(
                "tilt: started\ntilt: FAILED: Tilt: expected Ready, found not Ready\n"
            )
        );
        assert_eq!(text.matches("what to do: read tilt.log").count(), 1, "{text}");
        assert_eq!(result.json()["status"], "failed");
        let ok = StageResult::new("tilt", &[Report::ok("started")], "; log: /l".into());
        assert!(ok.human().ends_with("tilt: ok; log: /l\n"));
    }
}
