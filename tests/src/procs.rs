//! Background processes the testbed starts (fake API servers): each makes itself a
//! session leader (`setsid`) first thing, so neither a Ctrl-C in the caller's terminal
//! nor a kill of the caller's session or process group reaches it; output to a log
//! file, pid in a file; stopped by that pid file. And, for tests that play a closed
//! terminal, the processes of a session and their `kill -9`.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Start `program args` detached (the program calls `setsid` itself: a child cannot be
/// made a session leader here without `unsafe` `pre_exec`); write its pid to `pid_file`. The caller may poll the
/// child (`try_wait`) and then drop it; the process lives on.
pub fn spawn_detached(
    program: &Path,
    args: &[String],
    log: &Path,
    pid_file: &Path,
) -> Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    std::fs::write(pid_file, child.id().to_string())
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(child)
}

/// Is `pid` a live (not zombie) process whose command line contains `marker`?
pub fn is_ours(pid: u32, marker: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(marker) && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

pub fn read_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// Stop the process named by `pid_file` (if it is still ours: its command line contains
/// `marker`), wait for it to exit, and remove the pid file. Returns whether one was stopped.
pub fn stop_pid_file(pid_file: &Path, marker: &str) -> Result<bool> {
    let Some(pid) = read_pid(pid_file) else {
        let _ = std::fs::remove_file(pid_file);
        return Ok(false);
    };
    let stopped = is_ours(pid, marker);
    if stopped {
        signal(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_ours(pid, marker) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_ours(pid, marker) {
            signal(pid, Signal::SIGKILL);
        }
    }
    match std::fs::remove_file(pid_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", pid_file.display()))
        }
        _ => Ok(stopped),
    }
}

/// Every process of session `sid` (`/proc/<pid>/stat`, field 6), its leader included.
pub fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the `(comm)`: state ppid pgrp session ...
            let fields: Vec<&str> =
                stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
            fields.get(3).and_then(|s| s.parse::<i32>().ok()) == Some(sid)
        })
        .collect()
}

/// SIGKILL every process of session `sid` but this one (what closing a terminal, or a
/// CI step's cleanup, may do); how many there were.
pub fn kill_session(sid: i32) -> usize {
    let ours = std::process::id() as i32;
    let members: Vec<i32> = session_members(sid).into_iter().filter(|pid| *pid != ours).collect();
    for pid in &members {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
    }
    members.len()
}

/// kill(2) through nix (no `unsafe` here; a gone process is fine).
fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}
