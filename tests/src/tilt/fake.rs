//! Fake `tilt` (follows tilt-dev/tilt's web server and `UIResource` API,
//! pkg/apis/core/v1alpha1): `tilt up` runs in the foreground, as the real one does, and
//! serves Tilt's HTTP API on `--port` (default 10350):
//!
//! - `GET /` (and any unknown path) answers 200 with the web app's HTML and sets cookie
//!   `Tilt-Token`, so a 200 proves nothing about readiness;
//! - `GET /api/view` needs that token (header `X-Tilt-Token` or the cookie), else 403,
//!   and returns `{uiSession, uiResources, ...}` whose `(Tiltfile)` resource loads for
//!   one second (`updateStatus: in_progress`) and then turns Ready, or, with scenario
//!   `tilt-not-ready` (read per request), fails to load as a Tiltfile calling `fail()`
//!   does: `updateStatus: error`, Ready `False` `UpdateError`, Tilt's Starlark traceback
//!   in `buildHistory[0].error` and in the output (tilt's `internal/hud/webview/convert.go`
//!   `TiltfileResource`/`UIResourceReadyCondition`, `internal/store/engine_state.go`
//!   `UpdateStatus`, `internal/controllers/core/tiltfile/reconciler.go`). Tilt stays up.
//!
//! `tilt down` stops the running `tilt up` (pid in `$TESTBED_DIR/tilt.pid`; the real
//! one deletes the Tiltfile's resources instead), `tilt get uiresources -o json` and
//! `tilt version` answer minimally.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::procs;
use crate::scenario::Scenario;

pub const TILT_VERSION: &str = "0.33.21";
const DEFAULT_PORT: u16 = 10350;
/// How long after `tilt up` the Tiltfile resource turns Ready.
const READY_AFTER: Duration = Duration::from_secs(1);
const PID_FILE: &str = "tilt.pid";
const STATE_FILE: &str = "tilt.json";

pub fn main(args: Vec<String>) -> i32 {
    let dir = match crate::calls::fake_tool_start("tilt", &args) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return 1;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("up") => up(&dir, &args[1..]),
        Some("down") => down(&dir),
        Some("get") => get(&dir, &args[1..]),
        Some("version") => {
            println!("v{TILT_VERSION}, built 2024-11-19");
            Ok(0)
        }
        other => {
            eprintln!("Error: unknown command {other:?} for \"tilt\" (testbed fake)");
            Ok(1)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("Error: {e:#}");
        1
    })
}

/// What a running `tilt up` publishes for `tilt get` and `tilt down`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TiltState {
    host: String,
    port: u16,
    token: String,
    started_ms: u64,
    /// The Tiltfile's absolute path (`--file`, default `Tiltfile` in the working dir).
    #[serde(default)]
    tiltfile: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn up(dir: &Path, args: &[String]) -> Result<i32> {
    let mut port = DEFAULT_PORT;
    let mut host = "localhost".to_owned();
    let mut tiltfile = "Tiltfile".to_owned();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| iter.next().cloned()).unwrap_or_default();
        match name {
            "--port" => {
                port = value().parse().with_context(|| format!("{arg}: expected a port"))?
            }
            "--host" => host = value(),
            "--file" | "-f" => tiltfile = value(),
            "--context" | "--namespace" | "--log-source" | "--log-level" => {
                value();
            }
            _ => {}
        }
    }
    let bind_host = if host == "localhost" { "127.0.0.1".to_owned() } else { host.clone() };
    let listener = match std::net::TcpListener::bind((bind_host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "Error: Tilt cannot start because you already have another process on port {port}\n\
                 If you want to run multiple Tilt instances simultaneously,\n\
                 use the --port flag or TILT_PORT env variable to set a custom port ({e})"
            );
            return Ok(1);
        }
    };
    listener.set_nonblocking(true)?;
    let tiltfile = std::path::absolute(&tiltfile)?.to_string_lossy().into_owned();
    let state = TiltState {
        host: host.clone(),
        port,
        token: random_token()?,
        started_ms: now_ms(),
        tiltfile,
    };
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())?;
    std::fs::write(dir.join(STATE_FILE), serde_json::to_vec(&state)?)?;
    println!("Tilt started on http://{host}:{port}/");
    println!("v{TILT_VERSION}, built 2024-11-19");
    // Not a terminal: tilt streams its log to stdout (`internal/cli/up.go`).
    println!("Initial Build");
    println!("Loading Tiltfile at: {}", state.tiltfile);
    let served = serve(dir.to_path_buf(), state, listener);
    // Leave no trace of this run unless another `tilt up` has taken over the files.
    if procs::read_pid(&dir.join(PID_FILE)) == Some(std::process::id()) {
        let _ = std::fs::remove_file(dir.join(PID_FILE));
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
    }
    served.map(|()| 0)
}

/// Serve until SIGTERM or SIGINT.
fn serve(dir: PathBuf, state: TiltState, listener: std::net::TcpListener) -> Result<()> {
    let rt = crate::docker::runtime()?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shared = Arc::new((dir, state));
        let loaded = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(READY_AFTER).await;
            let scenario = Scenario::load(&loaded.0).unwrap_or_default();
            match load_error(&loaded.1, &scenario) {
                Some(error) => println!("{error}"),
                None => println!("Successfully loaded Tiltfile ({}s)", READY_AFTER.as_secs()),
            }
        });
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted?.0,
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared.0, &shared.1, &req)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    })
}

const WEB_APP: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tilt</title></head>\
<body><noscript>You need to enable JavaScript to run this app.</noscript><div id=\"root\"></div></body></html>\n";

fn handle(dir: &Path, state: &TiltState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/api/view" {
        if !has_token(req, &state.token) {
            return Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("Content-Type", "text/plain")
                .body(Full::new(Bytes::from_static(b"Forbidden\n")))
                .expect("static response parts");
        }
        let scenario = Scenario::load(dir).unwrap_or_default();
        let body = view(state, &scenario, now_ms());
        return Response::builder()
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())))
            .expect("static response parts");
    }
    Response::builder()
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Set-Cookie", format!("Tilt-Token={}; Path=/; SameSite=Strict", state.token))
        .body(Full::new(Bytes::from_static(WEB_APP.as_bytes())))
        .expect("static response parts")
}

fn has_token(req: &Request<Incoming>, token: &str) -> bool {
    let header = req.headers().get("X-Tilt-Token").and_then(|v| v.to_str().ok());
    let cookie = req
        .headers()
        .get_all("Cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == "Tilt-Token" && v == token);
    header == Some(token) || cookie
}

/// With scenario `tilt-not-ready`, the error of a load that failed: what Tilt reports for
/// a Tiltfile whose first statement is `fail(...)` (starlark-go's `EvalError.Backtrace`,
/// the `fail` builtin's `fail: ` prefix).
fn load_error(state: &TiltState, scenario: &Scenario) -> Option<String> {
    scenario.tilt_not_ready.then(|| {
        format!(
            "Traceback (most recent call last):\n  {}:1:5: in <toplevel>\n\
             Error in fail: fail: testbed scenario tilt-not-ready: this Tiltfile fails to load",
            state.tiltfile
        )
    })
}

/// The `(Tiltfile)` UIResource at `now_ms`: loading for [`READY_AFTER`], then loaded
/// (Ready) or failed. Reasons as tilt's `UIResourceReadyCondition` and
/// `UIResourceUpToDateCondition` give them (`in_progress` has none of its own: `Unknown`).
fn tiltfile_resource(state: &TiltState, scenario: &Scenario, now_ms: u64) -> Value {
    let started = rfc3339(state.started_ms);
    let ready_at = state.started_ms + READY_AFTER.as_millis() as u64;
    let finished = rfc3339(ready_at);
    let mut current = Value::Null;
    let (update, ready, reason, history) = if now_ms < ready_at {
        current = json!({"startTime": started});
        ("in_progress", "False", "Unknown", json!([]))
    } else if let Some(error) = load_error(state, scenario) {
        let build = json!({"error": error, "startTime": started, "finishTime": finished});
        ("error", "False", "UpdateError", json!([build]))
    } else {
        ("ok", "True", "", json!([{"startTime": started, "finishTime": finished}]))
    };
    let changed = if now_ms < ready_at { started.clone() } else { finished };
    let mut status = json!({
        "buildHistory": history,
        "runtimeStatus": "not_applicable",
        "updateStatus": update,
        "order": 1,
        "disableStatus": {"state": "Enabled"},
        "conditions": [
            {"type": "UpToDate", "status": ready, "lastTransitionTime": changed, "reason": reason},
            {"type": "Ready", "status": ready, "lastTransitionTime": changed, "reason": reason},
        ],
    });
    if !current.is_null() {
        status["currentBuild"] = current;
    }
    json!({
        "apiVersion": "tilt.dev/v1alpha1",
        "kind": "UIResource",
        "metadata": {"name": "(Tiltfile)", "creationTimestamp": started},
        "spec": {},
        "status": status,
    })
}

fn view(state: &TiltState, scenario: &Scenario, now_ms: u64) -> Value {
    let started = rfc3339(state.started_ms);
    json!({
        "uiSession": {
            "metadata": {"name": "Tiltfile"},
            "status": {
                "tiltStartTime": started,
                "tiltfileKey": "Tiltfile",
                "runningTiltBuild": {"version": TILT_VERSION, "date": "2024-11-19", "dev": false},
                "versionSettings": {"checkUpdates": false},
            },
        },
        "uiResources": [tiltfile_resource(state, scenario, now_ms)],
        "uiButtons": [],
        "tiltStartTime": started,
        "tiltfileKey": "Tiltfile",
    })
}

fn get(dir: &Path, args: &[String]) -> Result<i32> {
    let kind = args.first().map(String::as_str).unwrap_or("");
    if !matches!(kind, "uiresources" | "uiresource" | "uir") {
        bail!("the testbed's tilt fake only serves `tilt get uiresources -o json`, not {kind:?}");
    }
    let Some(state) = read_state(dir) else {
        eprintln!("No tilt apiserver found: tilt-default");
        return Ok(1);
    };
    let scenario = Scenario::load(dir)?;
    let resource = tiltfile_resource(&state, &scenario, now_ms());
    let name = args.get(1).filter(|a| !a.starts_with('-'));
    let out = match name {
        Some(n) if n != "(Tiltfile)" => {
            eprintln!("Error from server (NotFound): uiresources.tilt.dev \"{n}\" not found");
            return Ok(1);
        }
        Some(_) => resource,
        None => json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [resource]}),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn read_state(dir: &Path) -> Option<TiltState> {
    let pid = procs::read_pid(&dir.join(PID_FILE))?;
    if !procs::is_ours(pid, "tilt") {
        return None;
    }
    serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
}

fn down(dir: &Path) -> Result<i32> {
    let pid = procs::read_pid(&dir.join(PID_FILE));
    if procs::stop_pid_file(&dir.join(PID_FILE), "tilt")? {
        println!("Stopped tilt up (pid {})", pid.unwrap_or_default());
    } else {
        println!("No tilt up running");
    }
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
    Ok(0)
}

fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// UTC RFC 3339 with seconds, from milliseconds since the epoch.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> TiltState {
        TiltState {
            host: "localhost".into(),
            port: 1,
            token: "t".into(),
            started_ms: 1_700_000_000_000,
            tiltfile: "/w/Tiltfile".into(),
        }
    }

    fn ready(resource: &Value) -> &str {
        let conditions = resource["status"]["conditions"].as_array().unwrap();
        conditions.iter().find(|c| c["type"] == "Ready").unwrap()["status"].as_str().unwrap()
    }

    #[test]
    fn tiltfile_turns_ready_after_a_second_unless_the_scenario_says_never() {
        let s = state();
        assert_eq!(ready(&tiltfile_resource(&s, &Scenario::default(), s.started_ms + 10)), "False");
        assert_eq!(
            ready(&tiltfile_resource(&s, &Scenario::default(), s.started_ms + 1000)),
            "True"
        );
        let loading = tiltfile_resource(&s, &Scenario::default(), s.started_ms + 10);
        assert_eq!(loading["status"]["updateStatus"], "in_progress");
        assert_eq!(loading["status"]["conditions"][1]["reason"], "Unknown");
        assert!(loading["status"]["currentBuild"]["startTime"].is_string());
        let never = Scenario { tilt_not_ready: true, ..Scenario::default() };
        // A failed load is still loading for the first second, as a healthy one is.
        let early = tiltfile_resource(&s, &never, s.started_ms + 10);
        assert_eq!(early["status"]["updateStatus"], "in_progress");
        let r = tiltfile_resource(&s, &never, s.started_ms + 60_000);
        assert_eq!(ready(&r), "False");
        assert_eq!(r["status"]["updateStatus"], "error");
        assert_eq!(r["status"]["conditions"][1]["reason"], "UpdateError");
        assert!(r["status"].get("currentBuild").is_none());
        let error = r["status"]["buildHistory"][0]["error"].as_str().unwrap();
        assert_eq!(
            error,
            "Traceback (most recent call last):\n  /w/Tiltfile:1:5: in <toplevel>\n\
             Error in fail: fail: testbed scenario tilt-not-ready: this Tiltfile fails to load"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
