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

    #[tokio::test]
    async fn nothing_listening_is_down() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let probe = probe(port).await;
        assert!(matches!(probe, Probe::Down(_)));
        assert!(probe.describe(port).starts_with(&format!("nothing answers on port {port} (")));
    }
}
