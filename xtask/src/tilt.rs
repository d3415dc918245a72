//! The tilt stage (`cargo xtask tilt`, last in `bootstrap`): make sure Tilt serves its
//! API on the configured port and its `(Tiltfile)` resource is Ready.
//!
//! Tilt has no readiness endpoint (unknown paths answer 200 with the web app), so we do
//! what its web UI does: `GET /` for the `Tilt-Token` cookie, then `GET /api/view` with
//! it, and read the `(Tiltfile)` UIResource's `Ready` condition. `tilt up` has no
//! detached mode: we start it in its own process group with output to `tilt.log` beside
//! our log, and leave it running when we exit.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::config::Context;
use crate::error::{Coded, ExitCode, missing};
use crate::report::Log;
use crate::secrets::{Failure, Outcome, tail};

const TAG: &str = "tilt";
const POLL: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const LOG_TAIL_LINES: usize = 20;
/// The resource Tilt creates for the Tiltfile itself.
pub const TILTFILE_RESOURCE: &str = "(Tiltfile)";

#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// The `(Tiltfile)` UIResource's state, as `/api/view` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiltfileStatus {
    pub ready: bool,
    /// `Ready` condition reason (empty when Ready).
    pub reason: String,
    /// `status.updateStatus`: `ok`, `in_progress`, `error`, ...
    pub update_status: String,
}

/// What answers on Tilt's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing accepted the connection (or it failed): why.
    Down(String),
    /// Something answers, but not (yet) with a usable view: why.
    Answering(String),
    /// Tilt's API answered.
    Tilt(TiltfileStatus),
}

impl Probe {
    pub fn is_ready(&self) -> bool {
        matches!(self, Probe::Tilt(s) if s.ready)
    }

    /// What was found on `port`, in one line (stage messages and the smoke trial).
    pub fn describe(&self, port: u16) -> String {
        match self {
            Probe::Down(why) => format!("nothing answers on port {port} ({why})"),
            Probe::Answering(why) => why.clone(),
            Probe::Tilt(s) if s.ready => format!("{TILTFILE_RESOURCE} is Ready"),
            Probe::Tilt(s) => format!(
                "{TILTFILE_RESOURCE} is not Ready (reason {}, updateStatus {})",
                if s.reason.is_empty() { "-" } else { &s.reason },
                if s.update_status.is_empty() { "-" } else { &s.update_status }
            ),
        }
    }
}

/// The value of cookie `Tilt-Token` among `Set-Cookie` header values.
pub fn token_from_set_cookie<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values.into_iter().find_map(|value| {
        let first = value.split(';').next()?.trim();
        let (name, token) = first.split_once('=')?;
        (name.trim() == "Tilt-Token" && !token.is_empty()).then(|| token.to_owned())
    })
}

/// The `(Tiltfile)` resource's status in an `/api/view` document; `None` when absent.
pub fn tiltfile_status(view: &Value) -> Option<TiltfileStatus> {
    let resource = view["uiResources"]
        .as_array()?
        .iter()
        .find(|r| r["metadata"]["name"] == TILTFILE_RESOURCE)?;
    let status = &resource["status"];
    let ready =
        status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Some(TiltfileStatus {
        ready: ready.is_some_and(|c| c["status"] == "True"),
        reason: ready.map(|c| text(&c["reason"])).unwrap_or_else(|| "NoReadyCondition".into()),
        update_status: text(&status["updateStatus"]),
    })
}

/// Ask Tilt on `port` how its Tiltfile is doing.
pub async fn probe(port: u16) -> Probe {
    let client = match crate::http::Client::new() {
        Ok(client) => client,
        Err(e) => return Probe::Down(format!("{e:#}")),
    };
    let base = format!("http://127.0.0.1:{port}");
    let root = match client.get(&format!("{base}/"), &[], REQUEST_TIMEOUT).await {
        Ok(root) => root,
        Err(e) => return Probe::Down(format!("{e:#}")),
    };
    let cookies =
        root.headers.get_all(http::header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok());
    let Some(token) = token_from_set_cookie(cookies) else {
        return Probe::Answering(format!(
            "port {port} answers but sets no Tilt-Token cookie (is it Tilt?)"
        ));
    };
    let cookie = format!("Tilt-Token={token}");
    let headers = [("X-Tilt-Token", token.as_str()), ("Cookie", cookie.as_str())];
    let view = match client.get(&format!("{base}/api/view"), &headers, REQUEST_TIMEOUT).await {
        Ok(view) => view,
        Err(e) => return Probe::Answering(format!("/api/view failed: {e:#}")),
    };
    if view.status != http::StatusCode::OK {
        return Probe::Answering(format!("/api/view answered HTTP {}", view.status.as_u16()));
    }
    let view: Value = match serde_json::from_slice(&view.body) {
        Ok(view) => view,
        Err(e) => return Probe::Answering(format!("/api/view is not JSON: {e}")),
    };
    match tiltfile_status(&view) {
        Some(status) => Probe::Tilt(status),
        None => Probe::Answering(format!("/api/view lists no {TILTFILE_RESOURCE} resource yet")),
    }
}

/// [`probe`] on a runtime of its own, for callers without one (tests, smoke).
pub fn probe_blocking(port: u16) -> Probe {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(probe(port)),
        Err(e) => Probe::Down(format!("no async runtime: {e}")),
    }
}

/// `tilt.log` beside our log file.
pub fn tilt_log_path(log: &Path) -> PathBuf {
    log.parent().unwrap_or(Path::new(".")).join("tilt.log")
}

/// `cargo xtask tilt`.
pub async fn run(ctx: &Context, _args: &Args) -> Result<()> {
    let log = Log::open(&ctx.log_path)?;
    let outcome = ensure(ctx, &log).await?;
    for line in &outcome.done {
        println!("tilt: {line}");
    }
    println!("tilt: ok; log: {}", log.path().display());
    Ok(())
}

/// The tilt stage: nothing when Tilt is Ready already; else start it (unless something
/// already answers on the port) and wait for Ready.
pub async fn ensure(ctx: &Context, log: &Log) -> Result<Outcome> {
    let port = ctx.settings.tilt_port;
    let url = format!("http://localhost:{port}/");
    let first = probe(port).await;
    if first.is_ready() {
        let line = format!("Tilt already answers on {url} and {TILTFILE_RESOURCE} is Ready");
        log.line(TAG, &line);
        return Ok(Outcome { done: vec![line], warnings: vec![] });
    }
    let tilt_log = tilt_log_path(log.path());
    let mut started = None;
    match &first {
        Probe::Down(_) => started = Some(start(ctx, log, port, &tilt_log)?),
        other => {
            log.line(TAG, &format!("Tilt already runs on port {port}: {}", other.describe(port)))
        }
    }
    let timeout = ctx.settings.timeouts.tilt_ready();
    let spinner = crate::report::spinner(&format!("waiting for Tilt on {url}"));
    let result = wait_ready(port, timeout, started.as_mut()).await;
    spinner.finish_and_clear();
    match result {
        Ok(()) => {
            let verb = if started.is_some() { "started" } else { "was running" };
            let line = format!("Tilt {verb} on {url}; {TILTFILE_RESOURCE} is Ready");
            log.line(TAG, &line);
            Ok(Outcome { done: vec![line], warnings: vec![] })
        }
        Err(Wait::Interrupted) => {
            if let Some(child) = &started {
                stop(child);
            }
            log.line(TAG, "interrupted while waiting for Tilt; the tilt we started was stopped");
            Err(Coded {
                code: ExitCode::Interrupted,
                message: "interrupted while waiting for Tilt; the tilt we started was stopped"
                    .into(),
            }
            .into())
        }
        Err(wait) => {
            let why = match wait {
                Wait::Exited(code) => format!("`tilt up` exited ({code}) before it was Ready"),
                Wait::TimedOut(last) => {
                    format!(
                        "Tilt was not Ready within {}s: {}",
                        timeout.as_secs(),
                        last.describe(port)
                    )
                }
                Wait::Interrupted => unreachable!("handled above"),
            };
            let log_tail = std::fs::read_to_string(&tilt_log)
                .map(|text| tail(&text, LOG_TAIL_LINES))
                .unwrap_or_else(|e| format!("(cannot read it: {e})"));
            let message = format!(
                "{why}; last lines of {}:\n{}",
                tilt_log.display(),
                log_tail.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
            );
            log.line(TAG, &message);
            Err(Failure {
                message,
                remediation: format!(
                    "Tilt failed to start or its Tiltfile failed: read {} (or the Tilt UI at {url}), \
                     fix the error, then rerun `cargo xtask tilt`",
                    tilt_log.display()
                ),
            }
            .into())
        }
    }
}

/// Start `tilt up --port <port>` detached: its own session (through util-linux `setsid`
/// where there is one, else its own process group), no stdin, output to `tilt_log`, and
/// nothing that stops it when we exit or a devcontainer's postCreate step ends.
fn start(ctx: &Context, log: &Log, port: u16, tilt_log: &Path) -> Result<std::process::Child> {
    let tilt = crate::probe::find_tool(&ctx.root, "tilt").ok_or_else(|| {
        missing(
            "`tilt` was not found in .tools/bin or on PATH (run `cargo xtask doctor` for \
             install hints, or pass --no-tilt)",
        )
    })?;
    let port = port.to_string();
    let line = format!("$ tilt up --port {port}  (detached; output in {})", tilt_log.display());
    eprintln!("{line}");
    log.line(TAG, &line);
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
    command
        .args(["up", "--port", &port])
        .current_dir(&ctx.root)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .with_context(|| format!("starting `{} up`", tilt.display()))
}

fn stop(child: &std::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    let _ = killpg(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
}

enum Wait {
    Exited(String),
    TimedOut(Probe),
    Interrupted,
}

async fn wait_ready(
    port: u16,
    timeout: Duration,
    mut started: Option<&mut std::process::Child>,
) -> std::result::Result<(), Wait> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = probe(port).await;
        if now.is_ready() {
            return Ok(());
        }
        if let Some(child) = started.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(Wait::Exited(status.to_string()));
        }
        if Instant::now() >= deadline {
            return Err(Wait::TimedOut(now));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = crate::cancel::interrupted() => return Err(Wait::Interrupted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_comes_from_the_tilt_token_cookie() {
        let values = ["other=1; Path=/", "Tilt-Token=abc123; Path=/; SameSite=Strict"];
        assert_eq!(token_from_set_cookie(values).as_deref(), Some("abc123"));
        assert_eq!(token_from_set_cookie(["Tilt-Token=; Path=/"]), None);
        assert_eq!(token_from_set_cookie([]), None);
    }

    fn view(ready: &str, reason: &str, update: &str) -> Value {
        json!({"uiResources": [
            {"metadata": {"name": "infra:10-bootstrap"}, "status": {"conditions": []}},
            {"metadata": {"name": "(Tiltfile)"}, "status": {
                "updateStatus": update,
                "conditions": [
                    {"type": "UpToDate", "status": "True"},
                    {"type": "Ready", "status": ready, "reason": reason},
                ],
            }},
        ]})
    }

    #[test]
    fn tiltfile_ready_is_its_ready_condition() {
        let ready = tiltfile_status(&view("True", "", "ok")).unwrap();
        assert!(ready.ready);
        let failed = tiltfile_status(&view("False", "UpdateError", "error")).unwrap();
        assert_eq!(
            failed,
            TiltfileStatus {
                ready: false,
                reason: "UpdateError".into(),
                update_status: "error".into()
            }
        );
        assert!(
            Probe::Tilt(failed).describe(10350).contains("reason UpdateError, updateStatus error")
        );
        assert_eq!(tiltfile_status(&json!({"uiResources": []})), None);
        assert_eq!(tiltfile_status(&json!("<html>")), None);
    }

    #[test]
    fn tilt_log_sits_beside_our_log() {
        assert_eq!(
            tilt_log_path(Path::new("/home/dev/.devcontainer-setup.log")),
            Path::new("/home/dev/tilt.log")
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_down() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let probe = probe(port).await;
        assert!(matches!(probe, Probe::Down(_)));
        assert!(probe.describe(port).starts_with(&format!("nothing answers on port {port} (")));
    }
}
