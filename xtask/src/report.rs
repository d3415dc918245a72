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
    file: Arc<Mutex<File>>,
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
        Ok(Log { path: path.to_owned(), file: Arc::new(Mutex::new(file)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One line: `<RFC 3339 UTC> [<tag>] <text>`. Write errors are ignored on purpose:
    /// a full disk must not turn a converged platform into a failed run.
    pub fn line(&self, tag: &str, text: &str) {
        let stamp = jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_default();
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
}
