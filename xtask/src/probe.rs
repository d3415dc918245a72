//! Short read-only tool calls (`<tool> version`, `helmfile list`): find a tool on
//! `PATH` and capture its output with a timeout. Long-running, logged calls that change
//! things belong to the engine's executor, not here.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The first executable file called `name` in `$PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A tool from the project's own `<root>/.tools/bin` (where pinned tools are installed)
/// first, else from `$PATH`.
pub fn find_tool(root: &Path, name: &str) -> Option<PathBuf> {
    let local = crate::tools::bin_dir(root).join(name);
    if is_executable(&local) { Some(local) } else { find_on_path(name) }
}

/// A regular file with an execute bit: what `PATH` lookup would run.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a finished call printed.
#[derive(Debug, Clone)]
pub struct Captured {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `program args...` with no stdin, capture stdout and stderr, and kill it when it
/// outlives `timeout` (an error saying so).
pub fn capture<S: AsRef<OsStr>>(program: &Path, args: &[S], timeout: Duration) -> Result<Captured> {
    let shown = shown(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{shown}`"))?;
    // Drain both pipes on threads so a chatty tool never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{shown}` did not finish within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Captured {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The command line as a user would type it, for messages.
pub fn shown<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> String {
    let name = program.file_name().unwrap_or(program.as_os_str()).to_string_lossy();
    std::iter::once(name.into_owned())
        .chain(args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let sh = find_on_path("sh").expect("sh on PATH");
        let out = capture(&sh, &["-c", "echo out; echo err >&2; exit 3"], Duration::from_secs(20))
            .unwrap();
        assert!(!out.success);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn kills_a_call_past_its_timeout() {
        let sh = find_on_path("sh").expect("sh on PATH");
        let err = capture(&sh, &["-c", "exec sleep 30"], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");
    }

    #[test]
    fn missing_tool_is_not_found() {
        assert_eq!(find_on_path("surely-no-such-tool-xyz"), None);
    }

    #[test]
    fn project_tools_come_before_path() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let bin = crate::tools::bin_dir(root.path());
        std::fs::create_dir_all(&bin).unwrap();
        let sh = bin.join("sh");
        std::fs::write(&sh, "#!/bin/sh\n").unwrap();
        assert_eq!(find_tool(root.path(), "sh"), find_on_path("sh"), "not executable yet");
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_tool(root.path(), "sh"), Some(sh));
    }
}
