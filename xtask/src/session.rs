//! What one command invocation shares with every step it runs: where events go (and
//! the secrets redacted from them), the cancellation, the `PATH` its tools are found
//! on, and the log file (for messages that point at it). Built once by the CLI; nothing
//! here is process-wide.

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cancel::Cancel;
use crate::events::Events;

#[derive(Clone, Debug, Default)]
pub struct Session {
    pub events: Events,
    pub cancel: Cancel,
    /// `PATH` for every tool call (`.tools/bin` first); `None` inherits ours.
    pub tool_path: Option<OsString>,
    /// The log file the log sink writes, when there is one.
    pub log_path: Option<PathBuf>,
}

impl Session {
    /// No sinks, no log, never cancelled: library tests and read-only probes.
    pub fn silent() -> Session {
        Session::default()
    }

    /// The same cancellation and tool path, with events dropped: read-only calls whose
    /// output nobody needs (`<tool> version`, `helmfile build`).
    pub fn quiet(&self) -> Session {
        Session { events: self.events.without_sinks(), log_path: None, ..self.clone() }
    }

    /// Learn the data of a Secret the run read or writes: its values are redacted from
    /// everything emitted from now on (see [`crate::redact::Redactor::learn_secret`]).
    pub fn learn_secret<'a>(&self, data: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
        self.events.redactor().learn_secret(data);
    }

    /// `text` as the sinks would show it: for output that does not go through events
    /// (smoke's trial messages).
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.events.redactor().redact(text)
    }

    /// A line a user wants to see (progress), also logged.
    pub fn progress(&self, tag: &str, text: &str) {
        self.events.progress(tag, text);
    }

    /// A line for the log file only.
    pub fn line(&self, tag: &str, text: &str) {
        self.events.detail(tag, text);
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// `<before><log path><after>`, or nothing without a log file.
    pub fn where_output_is(&self, before: &str, after: &str) -> String {
        self.log_path().map_or(String::new(), |p| format!("{before}{}{after}", p.display()))
    }
}
