//! Running external tools (k3d, helmfile, helm, tilt): every call is announced as an
//! event (echoed on a terminal unless quiet), has a timeout, streams its output as
//! events into the log, and is stopped with its whole process group on timeout or
//! interruption (the session's `Cancel`).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::error::{Context, Result, failed, missing};
use crate::events::Event;
use crate::session::Session;
use crate::spans::{SpanKind, SpanOutcome};

/// One external command.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub timeout: Duration,
    /// Stage tag for the log, e.g. `cluster` or `layers/24-auth`.
    pub tag: String,
    /// Not echoed to stderr: read-only probes (`<tool> version`, `helmfile build`).
    pub quiet: bool,
    /// Working directory (default: ours).
    pub cwd: Option<std::path::PathBuf>,
}

impl Cmd {
    pub fn new(tag: &str, program: &str, timeout: Duration) -> Cmd {
        Cmd {
            program: program.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            timeout,
            tag: tag.to_owned(),
            quiet: false,
            cwd: None,
        }
    }

    /// Do not echo the command line to stderr (it is still logged).
    pub fn quiet(mut self) -> Cmd {
        self.quiet = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn current_dir(mut self, dir: &std::path::Path) -> Cmd {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Cmd {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The command line as a user would type it (for echo, log and remediation text).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last `n` lines of stderr (or stdout when stderr is empty), for a summary.
    pub fn tail(&self, n: usize) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Run `cmd` to completion. A non-zero exit is not an error here (the caller decides
/// what it means); a missing program, a timeout and Ctrl-C are.
pub async fn run(session: &Session, cmd: &Cmd) -> Result<Output> {
    // After an interruption no new tool starts.
    session.cancel.check()?;
    let line = cmd.display();
    let events = &session.events;
    events.emit(Event::ToolStarted { tag: &cmd.tag, line: &line, quiet: cmd.quiet });
    let span = events.span(SpanKind::Tool, &cmd.tag, &line);

    let started = Instant::now();
    let mut command = tokio::process::Command::new(&cmd.program);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let mut child = command
        .args(&cmd.args)
        .envs(session.tool_path.as_ref().map(|path| ("PATH", path)))
        .envs(cmd.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a terminal's Ctrl-C reaches us, and we stop the whole tree.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing(format!(
                "`{}` was not found on PATH (run `cargo xtask doctor` for install hints)",
                cmd.program
            )),
            _ => crate::error::Error::from(e).context(format!("starting `{line}`")),
        })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let _tracked = pgid.map(|pgid| session.cancel.track_group(pgid.as_raw()));

    let stdout = Captured::start(child.stdout.take(), session, &cmd.tag);
    let stderr = Captured::start(child.stderr.take(), session, &cmd.tag);

    enum Stopped {
        TimedOut,
        Interrupted,
    }
    let outcome = tokio::select! {
        status = child.wait() => Ok(status.with_context(|| format!("waiting for `{line}`"))?),
        () = tokio::time::sleep(cmd.timeout) => Err(Stopped::TimedOut),
        () = session.cancel.cancelled() => Err(Stopped::Interrupted),
    };
    if outcome.is_err() {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGTERM);
            let _ = tokio::time::timeout(GRACE, child.wait()).await;
            // The child may be gone while a grandchild ignoring SIGTERM still holds the group.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = child.wait().await;
    }
    // A process left in the background can keep the pipes open after the child exits:
    // read what is there, but do not wait for it forever.
    let stdout = stdout.finish(session, &cmd.tag).await;
    let stderr = stderr.finish(session, &cmd.tag).await;
    let duration = started.elapsed();
    let finished = |code: Option<i32>, note: &str| {
        events.emit(Event::ToolFinished { tag: &cmd.tag, code, duration, note });
    };

    span.finish(match &outcome {
        Ok(status) => SpanOutcome::of_exit(status.code()),
        Err(Stopped::TimedOut) => SpanOutcome::Failed,
        Err(Stopped::Interrupted) => SpanOutcome::Stopped,
    });
    match outcome {
        Ok(status) => {
            finished(status.code(), "");
            Ok(Output { code: status.code(), stdout, stderr, duration })
        }
        Err(Stopped::Interrupted) => {
            finished(None, "interrupted: the command's process group was stopped");
            Err(session
                .cancel
                .error(&format!("interrupted while running `{line}`; its processes were stopped")))
        }
        Err(Stopped::TimedOut) => {
            let secs = cmd.timeout.as_secs();
            finished(None, &format!("timed out after {secs}s: process group stopped"));
            Err(failed(format!(
                "`{line}` timed out after {secs}s and was stopped{}",
                session.where_output_is("; its output is in ", "")
            )))
        }
    }
}

/// Run and require exit 0; the error carries the last lines of output.
pub async fn run_ok(session: &Session, cmd: &Cmd) -> Result<Output> {
    let output = run(session, cmd).await?;
    if output.success() {
        return Ok(output);
    }
    Err(failed(format!(
        "`{}` failed (exit {}):\n{}{}",
        cmd.display(),
        output.code.map_or("signal".to_owned(), |c| c.to_string()),
        output.tail(15),
        session.where_output_is("\n(full output in ", ")")
    )))
}

/// How long a stopped command's group gets between SIGTERM and SIGKILL, and how long its
/// output may stay open after it exited.
const GRACE: Duration = Duration::from_secs(5);

/// One output stream of a child, copied line by line into the log and a buffer.
struct Captured {
    text: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Captured {
    fn start(
        stream: Option<impl AsyncRead + Unpin + Send + 'static>,
        session: &Session,
        tag: &str,
    ) -> Captured {
        let text = Arc::new(Mutex::new(String::new()));
        let (buffer, events, tag) = (text.clone(), session.events.clone(), tag.to_owned());
        let reader = tokio::spawn(async move {
            let Some(stream) = stream else { return };
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                events.emit(Event::ToolOutput { tag: &tag, line: &line });
                let mut text = buffer.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        Captured { text, reader }
    }

    /// Everything read, once the stream closed or `GRACE` after the child exited.
    async fn finish(self, session: &Session, tag: &str) -> String {
        let abort = self.reader.abort_handle();
        if tokio::time::timeout(GRACE, self.reader).await.is_err() {
            abort.abort();
            session.line(tag, "output still open after the command exited; stopped reading it");
        }
        std::mem::take(&mut *self.text.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::events::testing::{Recorder, recording};

    fn session() -> (Session, Recorder) {
        let (events, seen) = recording();
        (Session { events, log_path: Some("/tmp/run.log".into()), ..Session::silent() }, seen)
    }

    fn seen(recorder: &Recorder) -> String {
        recorder.0.lock().unwrap().join("\n")
    }

    #[tokio::test]
    async fn tool_path_finds_programs_in_its_first_folder() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("xtask-tool-path-probe");
        std::fs::write(&probe, "#!/bin/sh\necho found\n").unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rest = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(dir.path().to_path_buf()).chain(std::env::split_paths(&rest));
        let session =
            Session { tool_path: Some(std::env::join_paths(dirs).unwrap()), ..Session::silent() };
        let cmd = Cmd::new("t", "xtask-tool-path-probe", Duration::from_secs(10));
        let out = run(&session, &cmd).await.unwrap();
        assert_eq!(out.stdout, "found\n");
        let err = run(&Session::silent(), &cmd).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing, "another session's tool path leaked");
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        let cmd = Cmd::new("t", "helm", Duration::from_secs(1)).args(["test", "a b", "it's"]);
        assert_eq!(cmd.display(), r"helm test 'a b' 'it'\''s'");
    }

    #[tokio::test]
    async fn output_goes_to_the_events_and_the_caller() {
        let (session, recorder) = session();
        let cmd = Cmd::new("layers/10", "sh", Duration::from_secs(10))
            .args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run(&session, &cmd).await.unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        let text = seen(&recorder);
        assert!(text.contains(r#"line: "sh -c 'echo out; echo err >&2; exit 3'""#), "{text}");
        assert!(text.contains(r#"line: "out""#) && text.contains(r#"line: "err""#), "{text}");
        assert!(text.contains("code: Some(3)"), "{text}");
        let err = run_ok(&session, &cmd).await.unwrap_err().to_string();
        assert!(err.contains("failed (exit 3)") && err.contains("err"), "{err}");
        assert!(err.ends_with("(full output in /tmp/run.log)"), "{err}");
    }

    #[tokio::test]
    async fn timeout_stops_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let cmd = Cmd::new("t", "sh", Duration::from_millis(300)).args(["-c", &script]);
        let err = run(&Session::silent(), &cmd).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Failed);
        assert!(err.to_string().contains("timed out after"), "{err}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "a grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn cancellation_stops_the_call_with_its_signal() {
        let session = Session::silent();
        let cancel = session.cancel.clone();
        let cmd = Cmd::new("t", "sh", Duration::from_secs(30)).args(["-c", "exec sleep 30"]);
        let running = tokio::spawn(async move { run(&session, &cmd).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.request(crate::error::Signal::Terminate);
        let err = running.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted(crate::error::Signal::Terminate));
        assert!(err.to_string().contains("its processes were stopped"), "{err}");
    }

    #[tokio::test]
    async fn a_background_process_holding_the_output_does_not_hang_the_call() {
        let (session, recorder) = session();
        let cmd = Cmd::new("t", "sh", Duration::from_secs(30)).args(["-c", "echo hi; sleep 30 &"]);
        let out = run(&session, &cmd).await.unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "hi\n"));
        assert!(seen(&recorder).contains("stopped reading it"));
    }

    #[tokio::test]
    async fn without_a_log_the_error_names_no_file() {
        let cmd = Cmd::new("doctor", "sh", Duration::from_secs(10))
            .args(["-c", "echo v1.2.3; echo warn >&2; exit 4"])
            .quiet();
        let err = run_ok(&Session::silent(), &cmd).await.unwrap_err().to_string();
        assert!(err.ends_with("failed (exit 4):\nwarn"), "no log file named: {err}");
    }

    #[tokio::test]
    async fn missing_program_is_missing() {
        let cmd = Cmd::new("t", "no-such-tool-xyz", Duration::from_secs(1));
        let err = run(&Session::silent(), &cmd).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Missing);
    }
}
