//! The fake `tilt up` serves Tilt's web API: a token is needed for `/api/view`, and the
//! `(Tiltfile)` resource turns Ready, or never with scenario `tilt-not-ready`. It needs
//! no Docker, so it runs without a `World`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::http;

struct Tilt {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Tilt {
    fn up(name: &str, scenario: &[&str]) -> Tilt {
        let dir = std::env::temp_dir().join(format!("testbed-tilt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_testbed"), dir.join("bin/tilt")).unwrap();
        if !scenario.is_empty() {
            let mut args = vec!["set", "--dir", dir.to_str().unwrap()];
            args.extend(scenario);
            assert!(
                Command::new(env!("CARGO_BIN_EXE_testbed")).args(args).status().unwrap().success()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tilt_command(&dir)
            .args(["up", "--port", &port.to_string(), "--", "--profile", "x"])
            .spawn()
            .unwrap();
        let tilt = Tilt { dir, port, child };
        tilt.wait_for(|| tilt.get("/", &[]).is_some());
        tilt
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Option<http::Response> {
        http::get(&format!("http://127.0.0.1:{}{path}", self.port), headers).ok()
    }

    fn token(&self) -> String {
        let home = self.get("/", &[]).unwrap();
        let cookie = home.header("set-cookie").expect("GET / sets a cookie");
        let token = cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("Tilt-Token=")
            .expect("Tilt-Token cookie");
        token.to_owned()
    }

    fn view(&self) -> Value {
        let token = self.token();
        let view = self.get("/api/view", &[("X-Tilt-Token", &token)]).unwrap();
        assert_eq!(view.status, 200);
        serde_json::from_str(&view.body).unwrap()
    }

    /// Polls up to 20s; the assertion is on the state reached, not on the time taken.
    fn wait_for(&self, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "fake tilt in {} never got there",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tilt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tilt_command(dir: &Path) -> Command {
    let mut cmd = Command::new(dir.join("bin/tilt"));
    cmd.env("TESTBED_DIR", dir);
    cmd
}

fn run_tilt(dir: &Path, args: &[&str]) -> Output {
    tilt_command(dir).args(args).output().unwrap()
}

fn tiltfile_ready(view: &Value) -> Option<String> {
    let resource =
        view["uiResources"].as_array()?.iter().find(|r| r["metadata"]["name"] == "(Tiltfile)")?;
    let ready =
        resource["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?;
    ready["status"].as_str().map(str::to_owned)
}

#[test]
fn api_view_needs_the_token_and_the_tiltfile_turns_ready() {
    let tilt = Tilt::up("ready", &[]);

    let home = tilt.get("/", &[]).unwrap();
    assert_eq!(home.status, 200);
    assert!(home.body.contains("<div id=\"root\">"));
    // Unknown paths answer the web app too: a 200 proves nothing.
    assert_eq!(tilt.get("/api/status", &[]).unwrap().status, 200);

    assert_eq!(tilt.get("/api/view", &[]).unwrap().status, 403);
    assert_eq!(tilt.get("/api/view", &[("X-Tilt-Token", "wrong")]).unwrap().status, 403);
    let token = tilt.token();
    let cookie = format!("Tilt-Token={token}");
    assert_eq!(tilt.get("/api/view", &[("Cookie", &cookie)]).unwrap().status, 200);

    let view = tilt.view();
    assert_eq!(view["uiSession"]["status"]["tiltfileKey"], "Tiltfile");
    tilt.wait_for(|| tiltfile_ready(&tilt.view()).as_deref() == Some("True"));

    let get = run_tilt(&tilt.dir, &["get", "uiresources", "-o", "json"]);
    assert!(get.status.success());
    let list: Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(list["items"][0]["status"]["updateStatus"], "ok");

    let down = run_tilt(&tilt.dir, &["down"]);
    assert!(down.status.success());
    assert!(!tilt.dir.join("tilt.pid").exists());
    assert!(tilt.get("/", &[]).is_none(), "tilt still serves after `tilt down`");

    let calls = testbed::calls::read(&tilt.dir).unwrap();
    let verbs: Vec<&str> = calls.iter().map(|c| c.args[0].as_str()).collect();
    assert_eq!(verbs, ["up", "get", "down"]);
}

#[test]
fn with_tilt_not_ready_the_tiltfile_never_turns_ready() {
    let tilt = Tilt::up("never", &["tilt-not-ready"]);
    let started = Instant::now();
    // Past the moment a healthy Tiltfile turns Ready.
    tilt.wait_for(|| started.elapsed() > Duration::from_millis(1500));
    let view = tilt.view();
    assert_eq!(tiltfile_ready(&view).as_deref(), Some("False"));
    assert_eq!(view["uiResources"][0]["status"]["updateStatus"], "error");
    let message = view["uiResources"][0]["status"]["buildHistory"][0]["error"].as_str().unwrap();
    assert!(message.contains("Tiltfile"), "{message}");
}
