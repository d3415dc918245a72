//! Where events go: the terminal ([`Terminal`]), one JSON object on stdout ([`Json`]),
//! the log file ([`LogFile`]). A silent session has no sink at all (smoke, probes).
//! These, and `main.rs`, are the only places that print.

// Printing is this module's job: the one exemption from `lib.rs`'s house rule.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;

use crate::error::{Result, bad_input};
use crate::events::{Event, Sink};

/// Progress on stderr (`$ cmd` lines, one spinner during waits), and, unless another
/// sink owns stdout, the result as a table on stdout.
pub struct Terminal {
    spinner: Mutex<Option<ProgressBar>>,
    show_result: bool,
    interactive: bool,
    shown_result: AtomicBool,
}

impl Terminal {
    pub fn new(show_result: bool) -> Terminal {
        Terminal {
            spinner: Mutex::new(None),
            show_result,
            interactive: std::io::stderr().is_terminal(),
            shown_result: AtomicBool::new(false),
        }
    }

    /// Whether the result (which carries any failure) was printed.
    pub fn shown_result(&self) -> bool {
        self.shown_result.load(Ordering::SeqCst)
    }

    /// One line on stderr, printed above the spinner so neither garbles the other.
    fn line(&self, text: &str) {
        let spinner = self.spinner.lock().unwrap_or_else(|p| p.into_inner());
        match spinner.as_ref() {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

impl Sink for Terminal {
    fn event(&self, event: &Event<'_>) {
        match *event {
            Event::ToolStarted { line, quiet: false, .. } => self.line(&format!("$ {line}")),
            Event::Progress { text, .. } => self.line(text),
            Event::Interrupted { signal, forced: false } => self.line(&format!(
                "interrupted ({}): stopping the running step (Ctrl-C again to stop at once)",
                signal.name()
            )),
            Event::Interrupted { forced: true, .. } => {
                self.line("interrupted: stopped the running tools and exited without a summary")
            }
            Event::WaitStarted { text, .. } if self.interactive => {
                let bar = ProgressBar::new_spinner().with_message(text.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                let mut spinner = self.spinner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(old) = spinner.replace(bar) {
                    old.finish_and_clear();
                }
            }
            Event::WaitFinished { .. } => {
                let mut spinner = self.spinner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = spinner.take() {
                    bar.finish_and_clear();
                }
            }
            Event::Result { result } if self.show_result => {
                self.shown_result.store(true, Ordering::SeqCst);
                print!("{}", result.human());
                let _ = std::io::stdout().flush();
            }
            _ => {}
        }
    }
}

/// The result as one JSON object on stdout, and nothing else there.
#[derive(Default)]
pub struct Json {
    shown_result: AtomicBool,
}

impl Json {
    pub fn shown_result(&self) -> bool {
        self.shown_result.load(Ordering::SeqCst)
    }
}

impl Sink for Json {
    fn event(&self, event: &Event<'_>) {
        if let Event::Result { result } = event {
            self.shown_result.store(true, Ordering::SeqCst);
            println!("{}", result.json());
        }
    }
}

/// The log file: every event as `<RFC 3339 UTC> [<tag>] <text>`, appended, so a re-run
/// adds to the history. Write errors are ignored on purpose: a full disk must not turn
/// a converged platform into a failed run.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    /// Open (creating parents) in append mode. A path that cannot be a log file is bad
    /// input: nothing has been done yet.
    pub fn open(path: &Path) -> Result<LogFile> {
        let unusable = |why: String| {
            bad_input(format!(
                "--log {}: {why}; expected a file path in a writable folder",
                path.display()
            ))
        };
        if path.is_dir() {
            return Err(unusable("is a folder".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unusable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| unusable(format!("cannot open it: {e}")))?;
        Ok(LogFile { path: path.to_owned(), file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, tag: &str, text: &str) {
        let stamp = jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_default();
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for line in text.trim_end_matches(['\r', '\n']).split('\n') {
            let _ = writeln!(file, "{stamp} [{tag}] {}", line.trim_end_matches('\r'));
        }
    }
}

impl Sink for LogFile {
    fn event(&self, event: &Event<'_>) {
        match *event {
            Event::CommandStarted { command, detail } => {
                self.write(command, &format!("start: {detail}"))
            }
            Event::StageStarted { stage } => self.write("bootstrap", &format!("stage {stage}")),
            Event::StageFinished { stage, status, detail, .. } => {
                self.write("bootstrap", &format!("stage {stage}: {} {detail}", status.word()))
            }
            Event::ToolStarted { tag, line, .. } => self.write(tag, &format!("$ {line}")),
            Event::ToolOutput { tag, line } => self.write(tag, line),
            Event::ToolFinished { tag, code: Some(code), duration, .. } => {
                self.write(tag, &format!("exit {code} after {:.1}s", duration.as_secs_f64()))
            }
            Event::ToolFinished { tag, code: None, note, .. } => self.write(tag, note),
            Event::Progress { tag, text } | Event::Detail { tag, text } => self.write(tag, text),
            Event::WaitStarted { tag, text } => self.write(tag, text),
            Event::WaitFinished { .. } | Event::SpanStarted { .. } | Event::SpanFinished { .. } => {
            }
            Event::Warning { tag, text } => self.write(tag, &format!("warning: {text}")),
            Event::Finding { tag, finding } => {
                self.write(tag, &format!("finding: {finding}"));
                if !finding.remediation.is_empty() {
                    self.write(tag, &format!("what to do: {}", finding.remediation));
                }
            }
            Event::Interrupted { signal, .. } => {
                self.write("signal", &format!("{}: stopping the running step", signal.name()))
            }
            Event::Result { result } => {
                for (tag, text) in result.log_lines() {
                    self.write(&tag, &text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Events;

    #[test]
    fn log_lines_are_appended_with_tag_and_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/setup.log");
        let events = Events::new(vec![Box::new(LogFile::open(&path).unwrap())]);
        events.emit(Event::ToolStarted { tag: "cluster", line: "k3d cluster list", quiet: true });
        let again = Events::new(vec![Box::new(LogFile::open(&path).unwrap())]);
        again.detail("layers/10-bootstrap", "done\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" [cluster] $ k3d cluster list"), "{}", lines[0]);
        assert!(lines[1].starts_with("20") && lines[1].contains("Z [layers/10-bootstrap] done"));
    }

    /// Renders every event as the terminal and JSON sinks would (their text, the
    /// result's table and JSON), keeping it for the test.
    #[derive(Clone, Default)]
    struct Rendering(std::sync::Arc<Mutex<String>>);

    impl Sink for Rendering {
        fn event(&self, event: &Event<'_>) {
            let text = match event {
                Event::Result { result } => format!("{}\n{}", result.human(), result.json()),
                other => format!("{other:?}"),
            };
            self.0.lock().unwrap().push_str(&text);
        }
    }

    #[derive(Debug)]
    struct Summary(String);

    impl crate::events::Rendered for Summary {
        fn human(&self) -> String {
            format!("FAILED: {}\n", self.0)
        }
        fn json(&self) -> serde_json::Value {
            serde_json::json!({"status": "failed", "failure": {"found": self.0}})
        }
    }

    #[test]
    fn a_canary_corpus_reaches_no_sink_and_its_surroundings_do() {
        use crate::outcome::{Finding, Status};
        use crate::redact::canary::{CORPUS, LEARNED};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("setup.log");
        let rendering = Rendering::default();
        let events =
            Events::new(vec![Box::new(LogFile::open(&path).unwrap()), Box::new(rendering.clone())]);
        // The run reads the Postgres credentials before any tool prints.
        events.redactor().learn_secret([("password", LEARNED.as_bytes())]);
        let corpus: Vec<&str> = CORPUS.iter().map(|(line, ..)| *line).collect();
        let text = corpus.join("\n");
        let tag = "layers/40-data-plane";
        events.emit(Event::ToolStarted { tag, line: corpus[5], quiet: false });
        for line in &corpus {
            events.emit(Event::ToolOutput { tag, line });
        }
        let duration = Duration::from_secs(1);
        events.emit(Event::ToolFinished { tag, code: Some(1), duration, note: "" });
        events.progress(tag, &text);
        events.detail(tag, &text);
        events.warning(tag, &text);
        events.emit(Event::WaitStarted { tag, text: &text });
        events.emit(Event::CommandStarted { command: "bootstrap", detail: &text });
        events.emit(Event::StageFinished {
            stage: "layers",
            status: Status::Failed,
            detail: &text,
            duration,
        });
        let finding = Finding::new("gate ameide/data-plane-smoke", "passed", &text, &text);
        events.emit(Event::Finding { tag, finding: &finding });
        // A tail cut inside the key, joined on one line (as a gate's finding does).
        let joined = corpus[11..].join(" / ");
        events.emit(Event::Result { result: &Summary(format!("{text}\n{joined}")) });

        let log = std::fs::read_to_string(&path).unwrap();
        let rendered = rendering.0.lock().unwrap().clone();
        for (name, out) in [("log file", &log), ("terminal/JSON", &rendered)] {
            for (line, secret, kept) in CORPUS {
                if !secret.is_empty() {
                    assert!(!out.contains(secret), "{name} holds {secret:?} of {line:?}:\n{out}");
                }
                assert!(out.contains(kept), "{name} lost {kept:?} of {line:?}:\n{out}");
            }
            assert!(out.contains("[layers/40-data-plane]") || name != "log file", "{out}");
        }
        // Every line the tool printed is in the log once, redacted in place.
        let streamed: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, text)| text))
            .skip(1)
            .take(CORPUS.len())
            .collect();
        assert_eq!(
            streamed[9..13],
            [
                "-----BEGIN PRIVATE KEY-----[redacted]",
                "[redacted]",
                "[redacted]",
                "[redacted]-----END PRIVATE KEY-----"
            ]
        );
    }

    #[test]
    fn an_unusable_log_path_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let err = LogFile::open(dir.path()).err().unwrap();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
        assert!(err.to_string().contains("is a folder"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = LogFile::open(&file.join("below")).err().unwrap();
        assert_eq!(err.kind(), crate::error::ErrorKind::BadInput, "{err}");
    }
}
