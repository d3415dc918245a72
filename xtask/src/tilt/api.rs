//! Asking Tilt how its Tiltfile is doing, the way its web UI does: Tilt has no
//! readiness endpoint (unknown paths answer 200 with the web app), so `GET /` for the
//! `Tilt-Token` cookie, then `GET /api/view` with it, and read the `(Tiltfile)`
//! UIResource's `Ready` condition. Read-only; never fails: what it finds is a [`Probe`].

use std::time::Duration;

use serde_json::Value;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The resource Tilt creates for the Tiltfile itself.
pub const TILTFILE_RESOURCE: &str = "(Tiltfile)";

/// The `(Tiltfile)` UIResource's state, as `/api/view` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiltfileStatus {
    pub ready: bool,
    /// `Ready` condition reason (empty when Ready).
    pub reason: String,
    /// `status.updateStatus`: `ok`, `in_progress`, `pending`, `error`, ...
    pub update_status: String,
    /// `status.buildHistory[0].error`: why the last load failed (empty when it did not).
    pub error: String,
}

impl TiltfileStatus {
    /// Tilt's error text when its last load of the Tiltfile failed and no new load is
    /// under way: tilt's `ManifestState.UpdateStatus` says `error` only then
    /// (`in_progress`/`pending` win while it reloads). Tilt stays up and reloads the
    /// Tiltfile when it changes, but it will not get Ready by itself.
    pub fn load_error(&self) -> Option<&str> {
        (!self.ready && (self.update_status == "error" || self.reason == "UpdateError")).then(
            || {
                let text = self.error.trim();
                if text.is_empty() { "(Tilt gave no error text)" } else { text }
            },
        )
    }
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

    /// Tilt's error text when it reports that the Tiltfile failed to load.
    pub fn load_error(&self) -> Option<&str> {
        match self {
            Probe::Tilt(status) => status.load_error(),
            _ => None,
        }
    }

    /// What was found on `port`, in one line (stage messages and the smoke trial).
    pub fn describe(&self, port: u16) -> String {
        match self {
            Probe::Down(why) => format!("nothing answers on port {port} ({why})"),
            Probe::Answering(why) => why.clone(),
            Probe::Tilt(s) if s.ready => format!("{TILTFILE_RESOURCE} is Ready"),
            Probe::Tilt(s) if s.load_error().is_some() => format!(
                "the Tiltfile failed to load: {}",
                s.load_error().and_then(|e| e.lines().last()).unwrap_or_default().trim()
            ),
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
        // Newest first (tilt's `ToBuildsTerminated`; the Tiltfile keeps only its last).
        error: text(&status["buildHistory"][0]["error"]),
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
        let history = match update {
            "error" => {
                json!([{"error": "Traceback (most recent call last):\n  /w/Tiltfile:1:5: in <toplevel>\nError in fail: boom"}])
            }
            _ => json!([{"startTime": "2026-01-01T00:00:00Z"}]),
        };
        json!({"uiResources": [
            {"metadata": {"name": "infra:10-bootstrap"}, "status": {"conditions": []}},
            {"metadata": {"name": "(Tiltfile)"}, "status": {
                "buildHistory": history,
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
        assert_eq!(ready.load_error(), None);
        let loading = tiltfile_status(&view("False", "Unknown", "in_progress")).unwrap();
        assert_eq!(loading.load_error(), None);
        assert!(
            Probe::Tilt(loading)
                .describe(10350)
                .contains("reason Unknown, updateStatus in_progress")
        );
        let failed = tiltfile_status(&view("False", "UpdateError", "error")).unwrap();
        let error = "Traceback (most recent call last):\n  /w/Tiltfile:1:5: in <toplevel>\nError in fail: boom";
        assert_eq!(
            failed,
            TiltfileStatus {
                ready: false,
                reason: "UpdateError".into(),
                update_status: "error".into(),
                error: error.into(),
            }
        );
        assert_eq!(failed.load_error(), Some(error));
        let probe = Probe::Tilt(failed);
        assert_eq!(probe.load_error(), Some(error));
        assert_eq!(probe.describe(10350), "the Tiltfile failed to load: Error in fail: boom");
        let silent = TiltfileStatus {
            error: String::new(),
            ..tiltfile_status(&view("False", "UpdateError", "error")).unwrap()
        };
        assert_eq!(silent.load_error(), Some("(Tilt gave no error text)"));
        assert_eq!(Probe::Down("x".into()).load_error(), None);
        assert_eq!(tiltfile_status(&json!({"uiResources": []})), None);
        assert_eq!(tiltfile_status(&json!("<html>")), None);
    }

    #[tokio::test]
    async fn nothing_listening_is_down() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let probe = probe(port).await;
        assert!(matches!(probe, Probe::Down(_)));
        assert!(probe.describe(port).starts_with(&format!("nothing answers on port {port} (")));
    }
}
