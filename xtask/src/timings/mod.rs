//! `cargo xtask bootstrap --timings[=PATH]`: why was this bootstrap slow? A
//! [`Recorder`] sink stamps the run's events (stages, spans, waits) with the time since
//! the run began; at the end the [`Timeline`] they make is written as one self-contained
//! HTML report (inline CSS, JS and SVG, no network: [`html`]) with the critical path
//! marked ([`layout`]), and the JSON summary carries the same spans.

pub mod html;
pub mod layout;
mod record;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use record::Recorder;

use crate::outcome::Status;
use crate::spans::SpanKind;

/// Where the report goes when `--timings` names no file (like cargo's
/// `target/cargo-timings/`): inside the checkout's `target/`, overwritten by each run.
pub const DEFAULT_PATH: &str = "target/bootstrap-timings.html";

/// The report's path: `--timings=PATH` (relative to `cwd`), else [`DEFAULT_PATH`] under
/// the workspace root.
pub fn report_path(asked: Option<&Path>, root: &Path, cwd: &Path) -> PathBuf {
    match asked {
        None => root.join(DEFAULT_PATH),
        Some(path) => cwd.join(path),
    }
}

/// What a row of the timeline stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Stage,
    Layer,
    Gate,
    Step,
    Image,
    Tool,
    /// Something the run waited for without a tool call (the API's `/readyz`, the
    /// Vault bootstrap Job, Tilt's Tiltfile).
    Wait,
}

impl From<SpanKind> for Kind {
    fn from(kind: SpanKind) -> Kind {
        match kind {
            SpanKind::Layer => Kind::Layer,
            SpanKind::Gate => Kind::Gate,
            SpanKind::Step => Kind::Step,
            SpanKind::Image => Kind::Image,
            SpanKind::Tool => Kind::Tool,
        }
    }
}

/// How a span ended, as its bar is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Warned,
    Failed,
    /// A stage that did not run or did not apply.
    Skipped,
    /// Ended without an outcome (an error or a signal stopped it).
    Stopped,
    /// A wait: it has no outcome of its own.
    Waited,
}

impl From<crate::spans::SpanOutcome> for Outcome {
    fn from(outcome: crate::spans::SpanOutcome) -> Outcome {
        use crate::spans::SpanOutcome as S;
        match outcome {
            S::Ok => Outcome::Ok,
            S::Warned => Outcome::Warned,
            S::Failed => Outcome::Failed,
            S::Stopped => Outcome::Stopped,
        }
    }
}

impl From<Status> for Outcome {
    fn from(status: Status) -> Outcome {
        match status {
            Status::Ok | Status::Planned => Outcome::Ok,
            Status::Failed => Outcome::Failed,
            Status::Skipped => Outcome::Skipped,
            Status::Interrupted => Outcome::Stopped,
        }
    }
}

/// One bar of the timeline. `parent` is the index of the span it is part of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedSpan {
    pub id: usize,
    pub parent: Option<usize>,
    pub kind: Kind,
    /// The log tag it ran under (`layers/24-auth`, `images`, `cluster`).
    pub tag: String,
    /// The stage, layer, release, step or image name, or the tool's command line.
    pub name: String,
    #[serde(rename = "start_ms", serialize_with = "millis")]
    pub start: Duration,
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    pub outcome: Outcome,
    /// On the critical path: the chain of spans the run's length is made of.
    pub critical: bool,
}

impl TimedSpan {
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A finished run's spans (each `parent` an index into `spans`) and its length.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// When the run began (wall clock, for the report's heading).
    pub started_at: jiff::Timestamp,
    pub total: Duration,
    pub spans: Vec<TimedSpan>,
}

/// What the summary carries with `--timings`: the report's path and the spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    pub path: PathBuf,
    pub timeline: Timeline,
    /// Why the report could not be written, when it could not.
    pub error: Option<String>,
}

impl Attached {
    /// `{"timings": <path>, "spans": [...]}` fields of the JSON summary.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.display().to_string(),
            "written": self.error.is_none(),
            "total_ms": u64::try_from(self.timeline.total.as_millis()).unwrap_or(u64::MAX),
            "spans": self.timeline.spans,
        })
    }

    /// The summary's line: where the report is, or why it is not.
    pub fn line(&self) -> String {
        match &self.error {
            None => format!("timings: {}", self.path.display()),
            Some(e) => format!("timings: not written to {}: {e}", self.path.display()),
        }
    }
}

/// The recorded timeline, written as the report at `path`: what the summary carries.
pub fn attach(path: PathBuf, recorder: &Recorder, heading: &html::Heading) -> Attached {
    let timeline = recorder.timeline();
    let error = write(&path, &timeline, heading).err().map(|e| format!("{e:#}"));
    Attached { path, timeline, error }
}

/// Write `timeline` as the HTML report at `path` (creating its folder), titled with
/// what ran and how it ended.
pub fn write(
    path: &Path,
    timeline: &Timeline,
    heading: &html::Heading,
) -> crate::error::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::error::failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let page = html::render(timeline, heading);
    crate::fsutil::write_atomically(path, page.as_bytes(), 0o644)
}
