//! The tilt stage (`cargo xtask tilt`, last in `bootstrap`): make sure Tilt serves its
//! API on the configured port and its `(Tiltfile)` resource is Ready ([`api`] asks).
//!
//! `tilt up` has no detached mode: we start it in its own session with output to
//! `tilt.log` beside our log, and leave it running when we exit. A Tiltfile that is not
//! Ready in time is a failed [`Report`] with its finding (and the tail of `tilt.log`); one
//! that Tilt reports failed to load ends the wait at once, with Tilt's error text;
//! `Err` only for a missing `tilt` and interruption.

pub mod api;
pub mod record;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub use api::{Probe, TILTFILE_RESOURCE, TiltfileStatus, probe, probe_blocking};

use crate::cancel::Cancel;
use crate::config::Context;
use crate::error::{Context as _, Result, failed, missing};
use crate::events::Event;
use crate::outcome::{Finding, Report, tail};
use crate::spans::{SpanKind, SpanOutcome};
use crate::stage_result::StageResult;
use crate::wait::{self, Check, Poll};

const TAG: &str = "tilt";
const POLL: Duration = Duration::from_millis(500);
const LOG_TAIL_LINES: usize = 20;

/// `tilt.log` beside our log file.
pub fn tilt_log_path(log: &Path) -> PathBuf {
    log.parent().unwrap_or(Path::new(".")).join("tilt.log")
}

/// `cargo xtask tilt`: the stage alone. Its result is emitted for the sinks; a failed
/// stage is then a `Failed` error (already shown).
pub async fn run(ctx: &Context) -> Result<()> {
    let report = ensure(ctx).await?;
    let result = StageResult::new(
        TAG,
        std::slice::from_ref(&report),
        ctx.session.where_output_is("; log: ", ""),
    );
    ctx.session.events.emit(Event::Result { result: &result });
    match result.failure {
        Some(finding) => Err(failed(format!("the tilt stage failed: {finding}"))
            .with_remediation(finding.remediation)),
        None => Ok(()),
    }
}

/// The tilt stage: nothing when Tilt is Ready already; else start it (unless something
/// already answers on the port) and wait for Ready.
pub async fn ensure(ctx: &Context) -> Result<Report> {
    let session = &ctx.session;
    let port = ctx.settings.tilt_port;
    let url = format!("http://localhost:{port}/");
    let first = session.cancel.unless_interrupted(probe(port)).await?;
    if first.is_ready() {
        let line = format!("Tilt already answers on {url} and {TILTFILE_RESOURCE} is Ready");
        session.line(TAG, &line);
        return Ok(Report::ok(line));
    }
    let tilt_log = tilt_log_path(&ctx.log_path);
    let mut started = match &first {
        Probe::Down(_) => Some(start(ctx, port, &tilt_log)?),
        other => {
            let line = format!("Tilt already runs on port {port}: {}", other.describe(port));
            session.line(TAG, &line);
            None
        }
    };
    let timeout = ctx.settings.timeouts.tilt_ready();
    let waited = {
        let text = format!("waiting up to {}s for Tilt on {url}", timeout.as_secs());
        let _wait = session.events.wait(TAG, &text);
        wait_ready(&session.cancel, port, timeout, started.as_mut()).await
    };
    let why = match waited {
        Ok(Waited::Ready) => {
            let verb = if started.is_some() { "started" } else { "was running" };
            let line = format!("Tilt {verb} on {url}; {TILTFILE_RESOURCE} is Ready");
            session.line(TAG, &line);
            return Ok(Report::ok(line));
        }
        Err(err) if err.kind().is_interrupted() => {
            let mut message = "interrupted while waiting for Tilt".to_owned();
            if let Some(child) = &started {
                stop(child);
                message.push_str("; the tilt we started was stopped");
            }
            session.line(TAG, &message);
            return Err(session.cancel.error(&message));
        }
        Err(err) => return Err(err),
        Ok(Waited::LoadFailed(error)) => {
            let finding = load_failed(&url, &error, &tilt_log);
            session.line(TAG, &finding.to_string());
            return Ok(Report::failed("the Tiltfile failed to load", finding));
        }
        Ok(Waited::Exited(status)) => format!("`tilt up` exited ({status}) before it was Ready"),
        Ok(Waited::TimedOut(last)) => {
            format!("not Ready within {}s: {}", timeout.as_secs(), last.describe(port))
        }
    };
    let finding = not_ready(&url, &why, &tilt_log);
    session.line(TAG, &finding.to_string());
    Ok(Report::failed(format!("Tilt {why}"), finding))
}

/// The finding for a Tilt that did not get Ready: why, and the tail of `tilt.log`.
fn not_ready(url: &str, why: &str, tilt_log: &Path) -> Finding {
    let log_tail = std::fs::read_to_string(tilt_log)
        .map(|text| tail(&text, LOG_TAIL_LINES))
        .unwrap_or_else(|e| format!("(cannot read it: {e})"));
    let indented: Vec<String> = log_tail.lines().map(|l| format!("  {l}")).collect();
    Finding::new(
        "Tilt",
        format!("{TILTFILE_RESOURCE} Ready on {url}"),
        format!("{why}; last lines of {}:\n{}", tilt_log.display(), indented.join("\n")),
        format!(
            "Tilt failed to start or its Tiltfile failed: read {} (or the Tilt UI at {url}), \
             fix the error, then rerun `cargo xtask tilt`",
            tilt_log.display()
        ),
    )
}

/// At most this many lines of Tilt's error text go into the finding (a Starlark traceback
/// names every call on the way; the last lines say what failed).
const ERROR_LINES: usize = 30;

/// The finding for a Tiltfile that Tilt failed to load: Tilt's own error text.
fn load_failed(url: &str, error: &str, tilt_log: &Path) -> Finding {
    let indented: Vec<String> =
        tail(error, ERROR_LINES).lines().map(|l| format!("  {}", l.trim_end())).collect();
    Finding::new(
        "Tilt",
        format!("{TILTFILE_RESOURCE} Ready on {url}"),
        format!("the Tiltfile failed to load; Tilt says:\n{}", indented.join("\n")),
        format!(
            "fix the Tiltfile where Tilt's error points (the full output: `tilt logs`, {} or \
             the Tilt UI at {url}); Tilt keeps running and reloads the Tiltfile when it is \
             saved; then rerun `cargo xtask tilt`",
            tilt_log.display()
        ),
    )
}

/// Start `tilt up --port <port> --context <context>` detached: its own session (through util-linux `setsid`
/// where there is one, else its own process group), no stdin, output to `tilt_log`, and
/// nothing that stops it when we exit or a devcontainer's postCreate step ends.
fn start(ctx: &Context, port: u16, tilt_log: &Path) -> Result<std::process::Child> {
    let session = &ctx.session;
    session.cancel.check()?;
    let tilt = crate::probe::find_tool(&ctx.root, "tilt").ok_or_else(|| {
        missing(
            "`tilt` was not found in .tools/bin or on PATH (run `cargo xtask doctor` for \
             install hints, or pass --no-tilt)",
        )
    })?;
    let port_text = port.to_string();
    // Pinned to the run's context, like every tool call (Tilt's `--context` override).
    let args = ["up", "--port", &port_text, "--context", &ctx.kube_context];
    let line = format!("tilt {}", args.join(" "));
    session.events.emit(Event::ToolStarted { tag: TAG, line: &line, quiet: false });
    session
        .events
        .progress(TAG, &format!("tilt runs detached; its output goes to {}", tilt_log.display()));
    let output = std::fs::File::create(tilt_log)
        .with_context(|| format!("creating the Tilt log {}", tilt_log.display()))?;
    let errors = output.try_clone()?;
    // `setsid` execs tilt as the leader of a new session (it forks only when it is a
    // group leader, which our child is not), so the pid we hold is tilt's.
    let mut command = match crate::probe::find_on_path("setsid") {
        Some(setsid) => {
            let mut command = std::process::Command::new(setsid);
            command.arg(&tilt);
            command
        }
        None => {
            let mut command = std::process::Command::new(&tilt);
            command.process_group(0);
            command
        }
    };
    let child = command
        .args(args)
        .current_dir(&ctx.root)
        .envs(session.tool_path.as_ref().map(|path| ("PATH", path)))
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .with_context(|| format!("starting `{} up`", tilt.display()))?;
    // Detached: the call ends as it starts (the wait that follows shows the rest).
    session.events.span(SpanKind::Tool, TAG, &format!("{line} (detached)")).finish(SpanOutcome::Ok);
    // So `cargo xtask down` knows this Tilt is ours to stop.
    if let Err(e) = record::remember(&ctx.root, child.id(), port, &ctx.kube_context) {
        session.line(TAG, &format!("the Tilt started is not recorded as ours: {e:#}"));
    }
    Ok(child)
}

fn stop(child: &std::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    let _ = killpg(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
}

/// How a wait for Ready ended (an interruption is an `Err`).
enum Waited {
    Ready,
    /// Tilt reports that the Tiltfile failed to load: its error text.
    LoadFailed(String),
    /// The `tilt up` we started exited: its status.
    Exited(String),
    /// Not Ready by the deadline: the last probe.
    TimedOut(Probe),
}

async fn wait_ready(
    cancel: &Cancel,
    port: u16,
    timeout: Duration,
    mut started: Option<&mut std::process::Child>,
) -> Result<Waited> {
    let check = async || {
        let now = probe(port).await;
        if now.is_ready() {
            return Ok(Check::Done(Waited::Ready));
        }
        if let Some(error) = now.load_error() {
            return Ok(Check::Done(Waited::LoadFailed(error.to_owned())));
        }
        if let Some(child) = started.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Ok(Check::Done(Waited::Exited(status.to_string())));
        }
        Ok(Check::Pending(now))
    };
    Ok(match wait::until(cancel, timeout, Poll::every(POLL), check, |_, _| {}).await? {
        wait::Waited::Done(waited) => waited,
        wait::Waited::TimedOut(last) => Waited::TimedOut(last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Rendered;
    use serde_json::json;

    #[test]
    fn tilt_log_sits_beside_our_log() {
        assert_eq!(
            tilt_log_path(Path::new("/home/dev/.devcontainer-setup.log")),
            Path::new("/home/dev/tilt.log")
        );
    }

    #[test]
    fn not_ready_names_why_and_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tilt.log");
        std::fs::write(&log, "Tilt started on http://localhost:1/\nTiltfile error\n").unwrap();
        let why =
            "not Ready within 5s: (Tiltfile) is not Ready (reason UpdateError, updateStatus error)";
        let finding = not_ready("http://localhost:1/", why, &log);
        let text = finding.to_string();
        assert!(text.starts_with(
            "Tilt: expected (Tiltfile) Ready on http://localhost:1/, found not Ready"
        ));
        assert!(
            text.ends_with("tilt.log:\n  Tilt started on http://localhost:1/\n  Tiltfile error"),
            "{text}"
        );
        assert!(finding.remediation.contains("rerun `cargo xtask tilt`"));
        let missing = not_ready("u", "why", &dir.path().join("absent.log"));
        assert!(missing.found.contains("(cannot read it:"), "{missing}");
    }

    #[test]
    fn a_tiltfile_that_failed_to_load_shows_tilts_error_and_how_to_fix_it() {
        let error = "Traceback (most recent call last):\n  /w/Tiltfile:1:5: in <toplevel>\nError in fail: boom\n";
        let finding = load_failed("http://localhost:1/", error, Path::new("/l/tilt.log"));
        assert_eq!(finding.expected, "(Tiltfile) Ready on http://localhost:1/");
        assert_eq!(
            finding.found,
            "the Tiltfile failed to load; Tilt says:\n  Traceback (most recent call last):\n    \
             /w/Tiltfile:1:5: in <toplevel>\n  Error in fail: boom"
        );
        assert!(finding.remediation.starts_with("fix the Tiltfile"), "{}", finding.remediation);
        for part in ["`tilt logs`", "/l/tilt.log", "the Tilt UI at http://localhost:1/"] {
            assert!(finding.remediation.contains(part), "{part}: {}", finding.remediation);
        }
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let finding = load_failed("u", &long, Path::new("t"));
        assert_eq!(finding.found.lines().count(), 1 + ERROR_LINES);
        assert!(finding.found.ends_with("  line 99"), "{}", finding.found);
    }

    #[test]
    fn the_result_shows_what_was_done_or_the_finding() {
        let ok = StageResult::new(
            TAG,
            &[Report::ok("Tilt started on http://localhost:1/")],
            String::new(),
        );
        assert_eq!(ok.human(), "tilt: Tilt started on http://localhost:1/\ntilt: ok\n");
        assert_eq!(ok.json()["done"], json!(["Tilt started on http://localhost:1/"]));
        let finding = Finding::new("Tilt", "(Tiltfile) Ready", "not Ready", "read tilt.log");
        let bad =
            StageResult::new(TAG, &[Report::failed("Tilt not Ready", finding)], String::new());
        assert_eq!(
            bad.human(),
            "tilt: FAILED: Tilt: expected (Tiltfile) Ready, found not Ready\nwhat to do: read tilt.log\n"
        );
        let json = bad.json();
        assert_eq!(
            (json["status"].as_str(), json["done"].as_array().map(Vec::len)),
            (Some("failed"), Some(0))
        );
        assert_eq!(json["failure"]["found"], "not Ready");
    }
}
