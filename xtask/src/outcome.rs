//! One outcome model for bootstrap, every subcommand and smoke: a [`Verdict`] for a
//! check, a [`Status`] for a stage or run, and the one [`Finding`] shape for "what
//! failed and what to do".

use std::fmt;

use serde::{Deserialize, Serialize};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    /// Passed, with something the user should know (shown in the summary).
    Warned,
    Failed,
}

/// How a stage, a layer step or a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    /// Not run: an earlier stage failed, or it does not apply (`--context`).
    Skipped,
    Interrupted,
    /// `--plan`: decided, nothing changed.
    Planned,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Interrupted => "interrupted",
            Status::Planned => "planned",
        }
    }
}

/// A command's JSON document (`--format json`): the version of its shape, then its
/// fields. The shapes are published as `schemas/*.schema.json` (see `crate::schemas`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Document<T> {
    /// Bumped when a field is renamed or removed (additions keep it).
    pub schema_version: u32,
    #[serde(flatten)]
    pub body: T,
}

/// A result's fields with how the command ended.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct WithStatus<T> {
    pub status: Status,
    #[serde(flatten)]
    pub body: T,
}

impl<T: Serialize> Document<T> {
    pub fn new(schema_version: u32, body: T) -> Document<T> {
        Document { schema_version, body }
    }

    /// As JSON, for a `Rendered::json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What was checked, what was expected and found, and what to do about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// What was checked: `release ameide/auth`, `layer 24-auth`, `Vault bootstrap`.
    pub subject: String,
    pub expected: String,
    pub found: String,
    /// One instruction; empty when there is nothing to do (a check that passed).
    pub remediation: String,
}

impl Finding {
    pub fn new(
        subject: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
        remediation: impl Into<String>,
    ) -> Finding {
        Finding {
            subject: subject.into(),
            expected: expected.into(),
            found: found.into(),
            remediation: remediation.into(),
        }
    }
}

impl fmt::Display for Finding {
    /// `subject: expected X, found Y` (the remediation is shown on its own line); a
    /// finding with no expectation (an error that stopped a stage) is just what was found.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.subject.is_empty(), self.expected.is_empty()) {
            (_, true) if self.subject.is_empty() => f.write_str(&self.found),
            (_, true) => write!(f, "{}: {}", self.subject, self.found),
            _ => write!(f, "{}: expected {}, found {}", self.subject, self.expected, self.found),
        }
    }
}

/// One check's result: its verdict, the finding (filled for passes too: what was
/// found), and warnings that do not fail it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub verdict: Verdict,
    pub finding: Finding,
    pub warnings: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.verdict != Verdict::Failed
    }
}

/// What a step or stage did: its status, one line of detail, warnings, and the finding
/// when it did not pass. Only "cannot go on" is an error; a failed check is a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub status: Status,
    pub detail: String,
    pub warnings: Vec<String>,
    pub finding: Option<Finding>,
    /// The layer a failure happened in, when it happened in one.
    pub layer: Option<String>,
}

impl Report {
    pub fn ok(detail: impl Into<String>) -> Report {
        Report::with(Status::Ok, detail)
    }

    pub fn planned(detail: impl Into<String>) -> Report {
        Report::with(Status::Planned, detail)
    }

    pub fn skipped(detail: impl Into<String>) -> Report {
        Report::with(Status::Skipped, detail)
    }

    pub fn failed(detail: impl Into<String>, finding: Finding) -> Report {
        Report { finding: Some(finding), ..Report::with(Status::Failed, detail) }
    }

    pub fn with(status: Status, detail: impl Into<String>) -> Report {
        Report { status, detail: detail.into(), warnings: Vec::new(), finding: None, layer: None }
    }

    pub fn passed(&self) -> bool {
        self.status != Status::Failed
    }

    /// `self` then `next`: details joined with `; `, warnings kept; a failure wins.
    pub fn merge(mut self, next: Report) -> Report {
        if !next.detail.is_empty() {
            if !self.detail.is_empty() {
                self.detail.push_str("; ");
            }
            self.detail.push_str(&next.detail);
        }
        self.warnings.extend(next.warnings);
        if next.status == Status::Failed && self.status != Status::Failed {
            self.status = Status::Failed;
            self.finding = next.finding;
            self.layer = next.layer;
        }
        self
    }

    pub fn warn(mut self, warnings: impl IntoIterator<Item = String>) -> Report {
        self.warnings.extend(warnings);
        self
    }
}

/// The last `n` lines of `text`, for a remediation or a summary.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_reads_as_one_sentence() {
        let f =
            Finding::new("release ameide/auth", "status deployed", "`failed`", "helm status auth");
        assert_eq!(f.to_string(), "release ameide/auth: expected status deployed, found `failed`");
        assert_eq!(Finding::new("", "", "API gone", "").to_string(), "API gone");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(Status::Planned.word(), "planned");
    }
}
