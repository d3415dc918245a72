//! The parts of a run's timeline (`bootstrap --timings`): what a span is (a layer, a
//! gate, a repository step, an image fetch, a tool call) and how it ended. Spans are
//! emitted as events ([`crate::events::Events::span`]); the timings recorder turns them
//! into the report. Leaf types only.

use serde::Serialize;

/// What a span stands for. Stages are not spans: the stage events already say when
/// each stage started and ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// One Helmfile layer: its sync, gates and the steps right after it.
    Layer,
    /// One gate release's `helm test`, judged from the hooks' recorded phases.
    Gate,
    /// One repository step (`[[workspace.metadata.bootstrap.steps]]`).
    Step,
    /// One image fetched ahead: `docker pull` (when missing) and `k3d image import`.
    Image,
    /// One external tool call (`exec::run`).
    Tool,
}

/// How a span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanOutcome {
    Ok,
    /// Passed with something to know (a gate with no test hooks).
    Warned,
    Failed,
    /// Ended without an outcome: an error or a signal stopped it.
    Stopped,
}

impl SpanOutcome {
    pub fn word(self) -> &'static str {
        match self {
            SpanOutcome::Ok => "ok",
            SpanOutcome::Warned => "warned",
            SpanOutcome::Failed => "failed",
            SpanOutcome::Stopped => "stopped",
        }
    }

    /// A check's outcome from its verdict.
    pub fn of_verdict(verdict: crate::outcome::Verdict) -> SpanOutcome {
        match verdict {
            crate::outcome::Verdict::Passed => SpanOutcome::Ok,
            crate::outcome::Verdict::Warned => SpanOutcome::Warned,
            crate::outcome::Verdict::Failed => SpanOutcome::Failed,
        }
    }

    /// A tool call's outcome from its exit code (`None`: stopped by a signal).
    pub fn of_exit(code: Option<i32>) -> SpanOutcome {
        match code {
            Some(0) => SpanOutcome::Ok,
            Some(_) => SpanOutcome::Failed,
            None => SpanOutcome::Stopped,
        }
    }
}
