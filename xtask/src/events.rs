//! What the engine tells the world, as typed events. The engine never prints: it emits
//! [`Event`]s through [`Events`], and the sinks (terminal, JSON, log file,
//! silent) decide what to show where. One place owns the terminal, so a spinner and a
//! `$ cmd` line never garble each other.
//!
//! [`Events::emit`] is also the one redaction point: every event passes its session's
//! [`Redactor`] before any sink sees it, so the terminal, the JSON summary and the log
//! file never get a secret the run learned or a secret shape a tool printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Signal;
use crate::outcome::{Finding, Status};
use crate::redact::Redactor;
use crate::spans::{SpanKind, SpanOutcome};

/// One thing that happened. Borrowed: sinks render it at once and keep nothing.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A command (`bootstrap`, `cluster`, ...) began: what it targets, for the log.
    CommandStarted {
        command: &'a str,
        detail: &'a str,
    },
    StageStarted {
        stage: &'a str,
    },
    StageFinished {
        stage: &'a str,
        status: Status,
        detail: &'a str,
        duration: Duration,
    },
    /// An external tool was started: the line as a user would type it. Quiet calls
    /// (read-only probes) go to the log only.
    ToolStarted {
        tag: &'a str,
        line: &'a str,
        quiet: bool,
    },
    /// One line a tool printed (log only: the terminal shows progress, not tool output).
    ToolOutput {
        tag: &'a str,
        line: &'a str,
    },
    /// A tool ended: `code` is `None` when it was stopped (timeout, interruption).
    ToolFinished {
        tag: &'a str,
        code: Option<i32>,
        duration: Duration,
        note: &'a str,
    },
    /// Progress a user wants to see ("layer 24-auth: sync (digest changed)").
    Progress {
        tag: &'a str,
        text: &'a str,
    },
    /// Detail for the log file only.
    Detail {
        tag: &'a str,
        text: &'a str,
    },
    /// A long wait began (a spinner on a terminal) or ended.
    WaitStarted {
        tag: &'a str,
        text: &'a str,
    },
    WaitFinished {
        tag: &'a str,
    },
    /// Something the user should know that does not fail the run.
    Warning {
        tag: &'a str,
        text: &'a str,
    },
    /// A check that did not pass, in the one finding shape.
    Finding {
        tag: &'a str,
        finding: &'a Finding,
    },
    /// A signal arrived: the running step is being stopped.
    Interrupted {
        signal: Signal,
        forced: bool,
    },
    /// The command's result, rendered by the sink in its format.
    Result {
        result: &'a dyn Rendered,
    },
    /// A part of the run's timeline began (`--timings`); `id` pairs it with its end.
    SpanStarted {
        id: u64,
        kind: SpanKind,
        tag: &'a str,
        name: &'a str,
    },
    SpanFinished {
        id: u64,
        outcome: SpanOutcome,
    },
}

/// A command's result: a table for people, one JSON object for scripts, and the lines
/// the log ends with.
pub trait Rendered: std::fmt::Debug + Sync {
    fn human(&self) -> String;
    fn json(&self) -> serde_json::Value;
    /// What the log file keeps of it (default: the JSON on one line).
    fn log_lines(&self) -> Vec<(String, String)> {
        vec![("result".into(), self.json().to_string())]
    }
}

/// Something that renders events: the terminal, a JSON writer, the log file, nothing.
pub trait Sink: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

impl<S: Sink + ?Sized> Sink for Arc<S> {
    fn event(&self, event: &Event<'_>) {
        (**self).event(event)
    }
}

/// Several sinks as one.
impl Sink for Vec<Box<dyn Sink>> {
    fn event(&self, event: &Event<'_>) {
        for sink in self {
            sink.event(event);
        }
    }
}

/// The handle every step emits through; cloning shares the sinks and the redactor.
#[derive(Clone, Default)]
pub struct Events {
    sinks: Arc<Vec<Box<dyn Sink>>>,
    /// Sinks that record the run whatever is shown (the timeline of `--timings`): kept
    /// by [`Events::without_sinks`], so quiet tool calls are recorded too.
    recorders: Arc<Vec<Box<dyn Sink>>>,
    redactor: Redactor,
    /// The last span id handed out (shared by clones: ids are unique in a run).
    spans: Arc<AtomicU64>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} sink(s))", self.sinks.len())
    }
}

impl Events {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Events {
        Events { sinks: Arc::new(sinks), ..Events::default() }
    }

    /// The same sinks, redactor and span ids, plus `recorder`, which sees every event,
    /// those of quiet calls too (see [`Events::without_sinks`]).
    pub fn with_recorder(&self, recorder: Box<dyn Sink>) -> Events {
        let recorders: Vec<Box<dyn Sink>> = vec![Box::new(self.recorders.clone()), recorder];
        Events { recorders: Arc::new(recorders), ..self.clone() }
    }

    /// The same sinks, redacting with `redactor` (shared with whoever holds a clone).
    pub fn with_redactor(self, redactor: Redactor) -> Events {
        Events { redactor, ..self }
    }

    /// No sink: events are dropped (library tests, read-only probes).
    pub fn silent() -> Events {
        Events::default()
    }

    /// The same redactor (what was learned stays learned), no sink but the recorders.
    pub fn without_sinks(&self) -> Events {
        Events { sinks: Arc::default(), ..self.clone() }
    }

    /// What secrets this run learned, and the shapes it hides.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Redact `event` and give it to every sink.
    pub fn emit(&self, event: Event<'_>) {
        if self.sinks.is_empty() && self.recorders.is_empty() {
            return;
        }
        let r = &self.redactor;
        match event {
            Event::CommandStarted { command, detail } => {
                self.dispatch(Event::CommandStarted { command, detail: &r.redact(detail) })
            }
            Event::StageFinished { stage, status, detail, duration } => {
                let detail = &r.redact(detail);
                self.dispatch(Event::StageFinished { stage, status, detail, duration })
            }
            Event::ToolStarted { tag, line, quiet } => {
                self.dispatch(Event::ToolStarted { tag, line: &r.redact(line), quiet })
            }
            Event::ToolOutput { tag, line } => {
                self.dispatch(Event::ToolOutput { tag, line: &r.redact_line(tag, line) })
            }
            Event::ToolFinished { tag, code, duration, note } => {
                r.end_stream(tag);
                self.dispatch(Event::ToolFinished { tag, code, duration, note: &r.redact(note) })
            }
            Event::Progress { tag, text } => {
                self.dispatch(Event::Progress { tag, text: &r.redact(text) })
            }
            Event::Detail { tag, text } => {
                self.dispatch(Event::Detail { tag, text: &r.redact(text) })
            }
            Event::WaitStarted { tag, text } => {
                self.dispatch(Event::WaitStarted { tag, text: &r.redact(text) })
            }
            Event::Warning { tag, text } => {
                self.dispatch(Event::Warning { tag, text: &r.redact(text) })
            }
            Event::Finding { tag, finding } => {
                let finding = &Finding {
                    subject: r.redact(&finding.subject).into_owned(),
                    expected: r.redact(&finding.expected).into_owned(),
                    found: r.redact(&finding.found).into_owned(),
                    remediation: r.redact(&finding.remediation).into_owned(),
                };
                self.dispatch(Event::Finding { tag, finding })
            }
            Event::Result { result } => {
                self.dispatch(Event::Result { result: &RedactedResult { result, redactor: r } })
            }
            Event::SpanStarted { id, kind, tag, name } => {
                self.dispatch(Event::SpanStarted { id, kind, tag, name: &r.redact(name) })
            }
            Event::StageStarted { .. }
            | Event::WaitFinished { .. }
            | Event::Interrupted { .. }
            | Event::SpanFinished { .. } => self.dispatch(event),
        }
    }

    fn dispatch(&self, event: Event<'_>) {
        for sink in self.sinks.iter().chain(self.recorders.iter()) {
            sink.event(&event);
        }
    }

    pub fn progress(&self, tag: &str, text: &str) {
        self.emit(Event::Progress { tag, text });
    }

    pub fn detail(&self, tag: &str, text: &str) {
        self.emit(Event::Detail { tag, text });
    }

    pub fn warning(&self, tag: &str, text: &str) {
        self.emit(Event::Warning { tag, text });
    }

    /// Show a spinner until the returned guard is dropped.
    pub fn wait(&self, tag: &str, text: &str) -> WaitGuard {
        self.emit(Event::WaitStarted { tag, text });
        WaitGuard { events: self.clone(), tag: tag.to_owned() }
    }

    /// Start a span of the run's timeline; it ends with [`Span::finish`], or as
    /// `stopped` when dropped unfinished (an error or a signal).
    pub fn span(&self, kind: SpanKind, tag: &str, name: &str) -> Span {
        let id = self.spans.fetch_add(1, Ordering::Relaxed) + 1;
        self.emit(Event::SpanStarted { id, kind, tag, name });
        Span { events: self.clone(), id, done: false }
    }
}

/// A span being timed; see [`Events::span`].
pub struct Span {
    events: Events,
    id: u64,
    done: bool,
}

impl Span {
    pub fn finish(mut self, outcome: SpanOutcome) {
        self.done = true;
        self.events.emit(Event::SpanFinished { id: self.id, outcome });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if !self.done {
            self.events.emit(Event::SpanFinished { id: self.id, outcome: SpanOutcome::Stopped });
        }
    }
}

/// A result as its sinks see it: every rendering redacted.
#[derive(Debug)]
struct RedactedResult<'a> {
    result: &'a dyn Rendered,
    redactor: &'a Redactor,
}

impl Rendered for RedactedResult<'_> {
    fn human(&self) -> String {
        self.redactor.redact(&self.result.human()).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        self.redactor.redact_json(&self.result.json())
    }

    /// A line that is a JSON object (the default) is redacted value by value, so an
    /// escaped newline never joins two lines' secrets into one.
    fn log_lines(&self) -> Vec<(String, String)> {
        let redact = |text: String| match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) if value.is_object() => self.redactor.redact_json(&value).to_string(),
            _ => self.redactor.redact(&text).into_owned(),
        };
        self.result.log_lines().into_iter().map(|(tag, text)| (tag, redact(text))).collect()
    }
}

/// Ends a wait (and its spinner) when dropped, on every path out of it.
pub struct WaitGuard {
    events: Events,
    tag: String,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.events.emit(Event::WaitFinished { tag: &self.tag });
    }
}

#[cfg(test)]
pub mod testing {
    //! A sink that records what it saw, for tests of emitting code.
    use std::sync::{Arc, Mutex};

    use super::{Event, Events, Sink};

    #[derive(Clone, Default)]
    pub struct Recorder(pub Arc<Mutex<Vec<String>>>);

    impl Sink for Recorder {
        fn event(&self, event: &Event<'_>) {
            self.0.lock().unwrap().push(format!("{event:?}"));
        }
    }

    pub fn recording() -> (Events, Recorder) {
        let recorder = Recorder::default();
        (Events::new(vec![Box::new(recorder.clone())]), recorder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sink_sees_every_event_and_waits_always_end() {
        let (events, seen) = testing::recording();
        {
            let _wait = events.wait("cluster", "waiting for the API");
            events.progress("cluster", "created");
        }
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen[0].starts_with("WaitStarted"), "{seen:?}");
        assert!(seen[2].starts_with("WaitFinished"), "{seen:?}");
    }

    #[test]
    fn spans_get_unique_ids_and_end_stopped_when_dropped() {
        let (events, seen) = testing::recording();
        let more = events.with_recorder(Box::new(testing::Recorder::default()));
        let first = more.span(SpanKind::Layer, "layers/10", "10");
        drop(events.span(SpanKind::Tool, "layers/10", "helm test x"));
        first.finish(SpanOutcome::Ok);
        let seen = seen.0.lock().unwrap();
        assert!(seen[0].starts_with("SpanStarted { id: 1, kind: Layer"), "{seen:?}");
        assert!(seen[1].starts_with("SpanStarted { id: 2, kind: Tool"), "{seen:?}");
        assert_eq!(seen[2], "SpanFinished { id: 2, outcome: Stopped }");
        assert_eq!(seen[3], "SpanFinished { id: 1, outcome: Ok }");
    }
}
