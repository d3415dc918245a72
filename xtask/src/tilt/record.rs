//! Which Tilt is ours: when the tilt stage starts `tilt up`, it records the process
//! (pid, port, and on Linux the process's start time, so a reused pid is never taken
//! for it) in `target/xtask-tilt.json`. `cargo xtask down` stops only that process
//! (its whole session: Tilt and what it runs), never a Tilt someone else started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;
use crate::error::{Result, failed};
use crate::wait::{self, Check, Poll, Waited};

/// What the tilt stage wrote when it started `tilt up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TiltRecord {
    pub pid: u32,
    pub port: u16,
    /// The process's start time (clock ticks since boot, `/proc/<pid>/stat` field 22);
    /// `None` where there is no `/proc`.
    pub start_ticks: Option<u64>,
    pub started_at: String,
    pub context: String,
}

/// `<root>/target/xtask-tilt.json`, beside the run lock.
pub fn record_file(root: &Path) -> PathBuf {
    root.join("target").join("xtask-tilt.json")
}

/// Record the `tilt up` just started as ours.
pub fn remember(root: &Path, pid: u32, port: u16, context: &str) -> Result<()> {
    let record = TiltRecord {
        pid,
        port,
        start_ticks: start_ticks(pid),
        started_at: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_default()
            .to_string(),
        context: context.to_owned(),
    };
    let file = record_file(root);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    crate::fsutil::write_atomically(&file, text.as_bytes(), 0o644)
}

/// The record, if there is a readable one (an unreadable one is treated as none: it
/// can name no process for certain).
pub fn recorded(root: &Path) -> Option<TiltRecord> {
    let text = std::fs::read_to_string(record_file(root)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn forget(root: &Path) -> Result<()> {
    let file = record_file(root);
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(failed(format!("{}: {e}", file.display())))
        }
        _ => Ok(()),
    }
}

/// `/proc/<pid>/stat` after the command name: the state (field 3) and the start time
/// (field 22).
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Whether the recorded process still runs (a zombie does not), and is the one that was
/// recorded: the same start time where `/proc` tells it.
pub fn is_running(record: &TiltRecord) -> bool {
    match (stat(record.pid), record.start_ticks) {
        (Some((state, start)), Some(recorded)) => state != 'Z' && start == recorded,
        (Some((state, _)), None) => state != 'Z',
        // No /proc (not Linux): the pid answers signal 0.
        (None, None) if !Path::new("/proc/self/stat").exists() => {
            kill(Pid::from_raw(record.pid as i32), None).is_ok()
        }
        (None, _) => false,
    }
}

/// Stop the recorded Tilt's session: SIGTERM, then SIGKILL after `grace`. `Ok(false)`
/// when it was no longer running.
pub async fn stop(record: &TiltRecord, grace: Duration) -> Result<bool> {
    if !is_running(record) {
        return Ok(false);
    }
    let group = Pid::from_raw(record.pid as i32);
    let signal = |signal| {
        killpg(group, signal)
            .or_else(|_| kill(group, signal))
            .map_err(|e| failed(format!("cannot signal Tilt (pid {}): {e}", record.pid)))
    };
    signal(Signal::SIGTERM)?;
    if gone_within(record, grace).await {
        return Ok(true);
    }
    signal(Signal::SIGKILL)?;
    match gone_within(record, Duration::from_secs(5)).await {
        true => Ok(true),
        false => Err(failed(format!("Tilt (pid {}) is still running after SIGKILL", record.pid))),
    }
}

async fn gone_within(record: &TiltRecord, limit: Duration) -> bool {
    // Not cancellable: once asked to stop, Tilt is seen gone even on a second Ctrl-C.
    let check = async || Ok(if is_running(record) { Check::Pending(()) } else { Check::Done(()) });
    let poll = Poll::every(Duration::from_millis(100));
    let waited = wait::until(&Cancel::new(), limit, poll, check, |_, _| {}).await;
    matches!(waited, Ok(Waited::Done(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line =
            "4242 (tilt (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 9 0 98765 1 2";
        assert_eq!(parse_stat(line), Some(('S', 98765)));
        assert_eq!(parse_stat("4242 (tilt) Z"), None);
    }

    #[tokio::test]
    async fn a_recorded_process_is_ours_until_it_ends_and_a_reused_pid_is_not() {
        use std::os::unix::process::CommandExt as _;
        let root = tempfile::tempdir().unwrap();
        let mut child =
            std::process::Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        remember(root.path(), child.id(), 10350, "k3d-ameide").unwrap();
        let record = recorded(root.path()).unwrap();
        assert_eq!((record.pid, record.port), (child.id(), 10350));
        assert!(is_running(&record));
        let reused =
            TiltRecord { start_ticks: record.start_ticks.map(|t| t + 1), ..record.clone() };
        assert!(!is_running(&reused), "same pid, another start time: not ours");
        // A zombie (not yet reaped by this test) counts as stopped.
        assert!(stop(&record, Duration::from_secs(5)).await.unwrap());
        child.wait().unwrap();
        assert!(!stop(&record, Duration::from_secs(5)).await.unwrap(), "already stopped");
        forget(root.path()).unwrap();
        assert!(recorded(root.path()).is_none());
        forget(root.path()).unwrap();
    }
}
