//! The sink that records a run's timeline as it happens: each stage, span and wait with
//! its start and end since the recorder was made, and its parent: the innermost open
//! span of the same log tag (preferring one whose name the child's name holds: an image
//! for its `docker pull`, a gate for its `helm test`), else the running stage.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Kind, Outcome, TimedSpan, Timeline};
use crate::events::{Event, Sink};

#[derive(Debug)]
struct Open {
    kind: Kind,
    tag: String,
    name: String,
    start: Duration,
    end: Option<Duration>,
    outcome: Outcome,
    parent: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<Open>,
    /// The stage running now.
    stage: Option<usize>,
    /// Spans that may hold others (not tool calls or waits), still open.
    open: Vec<usize>,
    /// Event span ids to indices.
    ids: HashMap<u64, usize>,
    /// Open waits per tag, innermost last.
    waits: HashMap<String, Vec<usize>>,
}

impl State {
    fn push(&mut self, kind: Kind, tag: &str, name: &str, now: Duration) -> usize {
        let parent = self.parent_for(kind, tag, name);
        self.spans.push(Open {
            kind,
            tag: tag.to_owned(),
            name: name.to_owned(),
            start: now,
            end: None,
            outcome: Outcome::Stopped,
            parent,
        });
        self.spans.len() - 1
    }

    /// See the module's doc; a span only nests in a span of a higher rank (two image
    /// fetches side by side never hold each other).
    fn parent_for(&self, kind: Kind, tag: &str, name: &str) -> Option<usize> {
        let same_tag = self.open.iter().rev().copied().filter(|&i| {
            let open = &self.spans[i];
            open.tag == tag && rank(open.kind) < rank(kind)
        });
        let named = same_tag
            .clone()
            .filter(|&i| !self.spans[i].name.is_empty() && name.contains(&self.spans[i].name))
            .max_by_key(|&i| self.spans[i].name.len());
        named.or_else(|| same_tag.clone().next()).or(self.stage)
    }

    fn close(&mut self, index: usize, outcome: Outcome, now: Duration) {
        let span = &mut self.spans[index];
        span.end.get_or_insert(now);
        span.outcome = outcome;
        self.open.retain(|&i| i != index);
    }
}

/// How deep a kind nests: a layer holds gates, steps hold their calls.
fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::Stage => 0,
        Kind::Layer => 1,
        Kind::Gate | Kind::Step | Kind::Image => 2,
        Kind::Tool | Kind::Wait => 3,
    }
}

/// Records the timeline of the events it sees; [`Recorder::timeline`] reads it.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    started_at: jiff::Timestamp,
    state: Mutex<State>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything recorded so far, as a timeline ending now: spans still open end now,
    /// `stopped`; waits that only wrapped tool calls of their own tag are left out
    /// (the calls show the same time); the critical path is marked.
    pub fn timeline(&self) -> Timeline {
        let now = self.started.elapsed();
        let state = self.state();
        let spans: Vec<TimedSpan> = state
            .spans
            .iter()
            .enumerate()
            .map(|(id, s)| {
                let end = s.end.unwrap_or(now).max(s.start);
                TimedSpan {
                    id,
                    parent: s.parent,
                    kind: s.kind,
                    tag: s.tag.clone(),
                    name: s.name.clone(),
                    start: s.start,
                    duration: end - s.start,
                    outcome: s.outcome,
                    critical: false,
                }
            })
            .collect();
        let mut spans = drop_redundant_waits(spans);
        let critical = super::layout::critical_path(&spans, now);
        for (span, critical) in spans.iter_mut().zip(critical) {
            span.critical = critical;
        }
        Timeline { started_at: self.started_at, total: now, spans }
    }
}

/// Waits that hold a tool call of their own tag (`syncing 10-bootstrap` around its
/// `helmfile sync`) are left out, and ids renumbered: the calls carry that time.
fn drop_redundant_waits(spans: Vec<TimedSpan>) -> Vec<TimedSpan> {
    let redundant = |wait: &TimedSpan| {
        wait.kind == Kind::Wait
            && spans.iter().any(|t| {
                t.kind == Kind::Tool
                    && t.tag == wait.tag
                    && t.start >= wait.start
                    && t.end() <= wait.end()
            })
    };
    let kept: Vec<usize> = (0..spans.len()).filter(|&i| !redundant(&spans[i])).collect();
    let new_id: HashMap<usize, usize> = kept.iter().enumerate().map(|(n, &i)| (i, n)).collect();
    kept.iter()
        .map(|&i| {
            let mut span = spans[i].clone();
            span.id = new_id[&i];
            // A wait is never a parent, so a kept span's parent is kept too.
            span.parent = span.parent.and_then(|p| new_id.get(&p).copied());
            span
        })
        .collect()
}

impl Sink for Recorder {
    fn event(&self, event: &Event<'_>) {
        let now = self.started.elapsed();
        let mut state = self.state();
        match *event {
            Event::StageStarted { stage } => {
                state.stage = None;
                let index = state.push(Kind::Stage, stage, stage, now);
                state.stage = Some(index);
            }
            Event::StageFinished { stage, status, .. } => {
                if let Some(index) = state.stage.filter(|&i| state.spans[i].name == stage) {
                    state.close(index, status.into(), now);
                    state.stage = None;
                }
            }
            Event::SpanStarted { id, kind, tag, name } => {
                let index = state.push(kind.into(), tag, name, now);
                state.ids.insert(id, index);
                if kind != crate::spans::SpanKind::Tool {
                    state.open.push(index);
                }
            }
            Event::SpanFinished { id, outcome } => {
                if let Some(index) = state.ids.remove(&id) {
                    state.close(index, outcome.into(), now);
                }
            }
            Event::WaitStarted { tag, text } => {
                let index = state.push(Kind::Wait, tag, text, now);
                state.waits.entry(tag.to_owned()).or_default().push(index);
            }
            Event::WaitFinished { tag } => {
                if let Some(index) = state.waits.get_mut(tag).and_then(Vec::pop) {
                    state.close(index, Outcome::Waited, now);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Events;
    use crate::outcome::Status;
    use crate::spans::{SpanKind, SpanOutcome};
    use std::sync::Arc;

    fn names(timeline: &Timeline) -> Vec<(String, Kind, Option<String>, Outcome)> {
        let spans = &timeline.spans;
        spans
            .iter()
            .map(|s| {
                let parent = s.parent.map(|p| spans[p].name.clone());
                (s.name.clone(), s.kind, parent, s.outcome)
            })
            .collect()
    }

    #[test]
    fn spans_nest_by_tag_and_name_under_the_running_stage() {
        let recorder = Arc::new(Recorder::new());
        let events = Events::default().with_recorder(Box::new(recorder.clone()));
        let stage = |name, status| {
            events.emit(Event::StageFinished {
                stage: name,
                status,
                detail: "",
                duration: Duration::ZERO,
            })
        };
        events.emit(Event::StageStarted { stage: "layers" });
        let layer = events.span(SpanKind::Layer, "layers/10", "10");
        {
            let _syncing = events.wait("layers/10", "syncing 10");
            events
                .span(SpanKind::Tool, "layers/10", "helmfile -f 10.yaml sync")
                .finish(SpanOutcome::Ok);
        }
        let image_a = events.span(SpanKind::Image, "images", "busybox:1");
        let image_b = events.span(SpanKind::Image, "images", "vault:1");
        let gate = events.span(SpanKind::Gate, "layers/10", "smoke");
        events.span(SpanKind::Tool, "images", "docker pull busybox:1").finish(SpanOutcome::Failed);
        events.span(SpanKind::Tool, "layers/10", "helm test smoke -n x").finish(SpanOutcome::Ok);
        gate.finish(SpanOutcome::Ok);
        image_b.finish(SpanOutcome::Ok);
        image_a.finish(SpanOutcome::Failed);
        drop(events.wait("secrets", "waiting for the Vault bootstrap"));
        layer.finish(SpanOutcome::Ok);
        stage("layers", Status::Failed);
        let timeline = recorder.timeline();
        let text = |s: &str| s.to_owned();
        assert_eq!(
            names(&timeline),
            [
                (text("layers"), Kind::Stage, None, Outcome::Failed),
                (text("10"), Kind::Layer, Some(text("layers")), Outcome::Ok),
                (text("helmfile -f 10.yaml sync"), Kind::Tool, Some(text("10")), Outcome::Ok),
                (text("busybox:1"), Kind::Image, Some(text("layers")), Outcome::Failed),
                (text("vault:1"), Kind::Image, Some(text("layers")), Outcome::Ok),
                (text("smoke"), Kind::Gate, Some(text("10")), Outcome::Ok),
                (
                    text("docker pull busybox:1"),
                    Kind::Tool,
                    Some(text("busybox:1")),
                    Outcome::Failed
                ),
                (text("helm test smoke -n x"), Kind::Tool, Some(text("smoke")), Outcome::Ok),
                (
                    text("waiting for the Vault bootstrap"),
                    Kind::Wait,
                    Some(text("layers")),
                    Outcome::Waited
                ),
            ],
            "the `syncing` wait is left out: its helmfile call carries the time"
        );
        assert!(timeline.spans.iter().all(|s| s.end() <= timeline.total));
        assert!(timeline.spans[0].critical, "a lone stage is the whole path");
    }

    #[test]
    fn a_span_left_open_ends_stopped_at_the_end() {
        let recorder = Arc::new(Recorder::new());
        let events = Events::default().with_recorder(Box::new(recorder.clone()));
        events.emit(Event::StageStarted { stage: "tilt" });
        let _ = events.span(SpanKind::Tool, "tilt", "tilt up");
        std::mem::forget(events.span(SpanKind::Layer, "layers/x", "x"));
        let timeline = recorder.timeline();
        assert_eq!(timeline.spans[0].outcome, Outcome::Stopped, "the stage never finished");
        assert_eq!(timeline.spans[1].outcome, Outcome::Stopped, "dropped unfinished");
        assert_eq!(timeline.spans[2].outcome, Outcome::Stopped);
        assert_eq!(timeline.spans[2].end(), timeline.total);
    }
}
