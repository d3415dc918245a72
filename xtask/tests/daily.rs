//! A working day against the testbed: `bootstrap --timings` (the report opened in a real
//! headless Chromium), `status` on a converged, a failed and a stopped platform
//! (read-only), `cluster stop` / `start`, `down` (keeps the caches; a second one has
//! nothing to do; the next bootstrap downloads nothing again) and `down --purge` (leaves
//! nothing).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{LAYERS, Workspace};
use testbed::calls::mutating;
use testbed::world::{World, require_docker};
use xtask::bootstrap::summary::LayerStatus;
use xtask::error::Exit;

/// Fast controllers: Pods Ready after 0.3 s, a CronJob "minute" of 2 s.
/// A root with the sample platform made for the world's slot, its own Tilt port, and one
/// repository step (so the run keeps step records in `.tools`).
fn platform(world: &World, tilt_port: u16) -> Workspace {
    Workspace::new(&[
        &format!("tilt_port = {tilt_port}"),
        "timeouts = { cluster_ready = 60, layer_sync = 60, gate = 60, vault_bootstrap = 60 }",
        "",
        "[[workspace.metadata.bootstrap.steps]]",
        "name = \"stamp\"",
        "after = \"cluster\"",
        "run = [\"true\"]",
        "inputs = [\"Cargo.toml\"]",
    ])
    .with_infra()
    .for_world(world)
}

fn cluster_label(world: &World) -> String {
    format!("label=k3d.cluster={}", world.slot().cluster())
}

/// Containers of the world's cluster, stopped ones too.
fn cluster_containers(world: &World) -> Vec<String> {
    let filter = format!("label=testbed.dir={}", world.dir().display());
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &cluster_label(world), "--filter", &filter])
        .args(["--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let mut names: Vec<String> = support::text(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn running_containers(world: &World) -> Vec<String> {
    let filter = format!("label=testbed.dir={}", world.dir().display());
    let out = Command::new("docker")
        .args(["ps", "--filter", &cluster_label(world), "--filter", &filter])
        .args(["--format", "{{.Names}}"])
        .output()
        .unwrap();
    let mut names: Vec<String> = support::text(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// Images the fake `docker pull` downloaded into the host's store for this world.
fn downloaded_images(world: &World) -> Vec<String> {
    let filter = format!("label=testbed.dir={}", world.dir().display());
    let out = Command::new("docker")
        .args(["images", "--filter", &filter, "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let mut names: Vec<String> = support::text(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn kube_contexts(world: &World) -> Vec<String> {
    let out =
        world.command("kubectl").args(["config", "get-contexts", "-o", "name"]).output().unwrap();
    let mut names: Vec<String> = support::text(&out.stdout).lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn tilt_answers(port: u16) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    !matches!(rt.block_on(xtask::tilt::probe(port)), xtask::tilt::Probe::Down(_))
}

fn layer_states(status: &Value) -> Vec<(String, String)> {
    status["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap().to_owned(), l["state"].as_str().unwrap().to_owned()))
        .collect()
}

/// `status --format json`, timed; no fake tool call may change anything meanwhile.
fn status(ws: &Workspace, world: &World) -> (Exit, Value, Duration) {
    let before = world.calls().len();
    let started = Instant::now();
    let (code, json) = ws.json(world, &["status"]);
    let took = started.elapsed();
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new(), "status only reads");
    (code, json, took)
}

#[test]
fn timings_report_and_status_on_a_converged_then_failed_platform() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    let port = support::free_port();
    let ws = platform(&world, port);

    // A cold bootstrap with the timings report at its default place.
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-install", "--timings"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let report = ws.path("target/bootstrap-timings.html");
    // The timings report is JSON of its own inside the summary (not typed there).
    let timings = summary.timings.as_ref().unwrap_or_else(|| panic!("{summary:?}"));
    assert_eq!(timings["path"], report.display().to_string());
    let spans = timings["spans"].as_array().unwrap();
    let named = |kind: &str| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s["kind"] == kind)
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(named("layer"), LAYERS, "one span per layer, in order");
    assert_eq!(named("gate").len(), LAYERS.len(), "{:?}", named("gate"));
    assert_eq!(named("step"), ["stamp"]);
    assert!(!named("image").is_empty(), "image fetches are spans");
    let tools = named("tool");
    let create = format!("k3d cluster create {}", world.slot().cluster());
    let pull = format!("docker exec k3d-{}-server-0 crictl pull", world.slot().cluster());
    for call in [create.as_str(), "helm test auth-smoke", pull.as_str()] {
        assert!(tools.iter().any(|t| t.starts_with(call)), "{call} in {tools:?}");
    }
    let syncs = tools.iter().filter(|t| t.starts_with("helmfile") && t.contains(" sync ")).count();
    assert_eq!(syncs, LAYERS.len(), "{tools:?}");
    assert!(spans.iter().any(|s| s["critical"] == true && s["kind"] == "layer"), "{spans:?}");
    let htmls: Vec<PathBuf> = std::fs::read_dir(ws.path("target"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    assert_eq!(htmls, std::slice::from_ref(&report), "one HTML file");
    if let Some(chromium) = chromium() {
        let (dom, console) = open_in_chromium(&chromium, &report);
        // Our script's one line and nothing else: no error, no blocked load.
        assert_eq!(console.len(), 1, "console: {console:#?}");
        assert!(
            console[0].contains("bootstrap timings:") && console[0].contains("9 layer bars"),
            "{console:?}"
        );
        assert!(
            dom.contains("data-layer-bars=\"9\""),
            "the script ran: {}",
            &dom[..dom.len().min(2000)]
        );
        assert_eq!(dom.matches("<rect class=\"bar ").count(), spans.len(), "one bar per span");
        assert_eq!(dom.matches("data-kind=\"layer\" data-name=").count(), LAYERS.len());
    }

    // Converged: status is all well, reads only, and is quick (measured, not asserted).
    let (code, json, took) = status(&ws, &world);
    assert_eq!(code, Exit::Ok, "{json}");
    assert_eq!(json["status"], "ok");
    let converged: Vec<_> =
        LAYERS.iter().map(|l| (l.to_string(), "converged".to_owned())).collect();
    assert_eq!(layer_states(&json), converged);
    assert_eq!(json["cluster"]["state"], "up");
    let checks: Vec<(&str, &str)> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("vault-bootstrap", "ok"),
            ("db-migrations", "ok"),
            ("external-secrets", "warned"),
            ("tilt", "ready")
        ]
    );
    eprintln!(
        "status on a converged world: {} ms wall, {} ms inside",
        took.as_millis(),
        json["duration_ms"]
    );
    let out = ws.xtask(&world, &["status"]);
    assert_eq!(Exit::of(out.status), Exit::Ok);
    assert!(support::stdout(&out).contains("all well: 9 of 9 layer(s) converged"));

    // The auth gate fails in a bootstrap that re-syncs everything: status names it.
    world.set("gate-fail=24-auth").unwrap();
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-install", "--force"]);
    assert_eq!(code, Exit::Failed, "{summary:?}");
    let (code, json, _) = status(&ws, &world);
    assert_eq!(code, Exit::Failed, "{json}");
    assert_eq!(json["status"], "failed");
    let auth = support::layer(&json, "24-auth");
    assert_eq!(auth["state"], "failed", "{auth}");
    assert_eq!(auth["gates"][0]["verdict"], "failed", "{auth}");
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["subject"], "gate ameide/auth-smoke");
    assert!(
        problems[0]["remediation"].as_str().unwrap().contains("kubectl logs -n ameide auth-smoke-")
    );
    let out = ws.xtask(&world, &["status"]);
    assert_eq!(Exit::of(out.status), Exit::Failed);
    let text = support::stdout(&out);
    assert!(
        text.contains("problem: gate ameide/auth-smoke: expected every test hook Succeeded"),
        "{text}"
    );
    assert!(text.contains("not well: 1 problem(s)"), "{text}");
}

#[test]
fn down_keeps_the_caches_then_purge_leaves_nothing() {
    if !require_docker() {
        return;
    }
    let world = support::fast_world(&[]);
    let port = support::free_port();
    let ws = platform(&world, port);
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-install"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert!(tilt_answers(port));
    let containers = cluster_containers(&world);
    assert!(!containers.is_empty());
    let downloaded = downloaded_images(&world);

    // Paused: our Tilt and every container stopped, nothing deleted; status says so.
    let out = ws.xtask(&world, &["cluster", "stop"]);
    assert_eq!(Exit::of(out.status), Exit::Ok);
    assert!(support::stdout(&out).contains("stopped Tilt (pid "), "{}", support::stdout(&out));
    assert!(!tilt_answers(port));
    assert_eq!(running_containers(&world), Vec::<String>::new());
    assert_eq!(cluster_containers(&world), containers, "nodes and registry kept");
    let (code, json, _) = status(&ws, &world);
    assert_eq!(
        (code, json["cluster"]["state"].as_str()),
        (Exit::Failed, Some("stopped")),
        "{json}"
    );
    let (code, json) = ws.json(&world, &["cluster", "stop"]);
    let stopped = format!("nothing to do: cluster `{}` is stopped", world.slot().cluster());
    assert_eq!((code, &json["done"]), (Exit::Ok, &serde_json::json!([stopped])), "{json}");
    let out = ws.xtask(&world, &["cluster", "start"]);
    assert_eq!(Exit::of(out.status), Exit::Ok);
    assert_eq!(running_containers(&world), containers);
    // Resumed as it was: every layer unchanged, Tilt started again.
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-install"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    assert!(summary.layers.iter().all(|l| l.status == LayerStatus::Unchanged), "{summary:?}");
    assert!(tilt_answers(port));

    // A plan changes nothing.
    let before = world.calls().len();
    let (code, plan) = ws.json(&world, &["down", "--plan"]);
    assert_eq!(code, Exit::Ok, "{plan}");
    let actions: Vec<&str> =
        plan["actions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["stop_tilt", "delete_cluster"], "{plan}");
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new());
    assert!(tilt_answers(port) && !cluster_containers(&world).is_empty());

    // Down: Tilt stopped, no container of the cluster, no kube context; caches kept.
    let (code, down) = ws.json(&world, &["down"]);
    assert_eq!(code, Exit::Ok, "{down}");
    assert_eq!(down["status"], "ok");
    assert!(down["actions"].as_array().unwrap().iter().all(|a| a["status"] == "done"), "{down}");
    assert_eq!(cluster_containers(&world), Vec::<String>::new());
    assert!(
        !kube_contexts(&world).contains(&world.slot().context()),
        "{:?}",
        kube_contexts(&world)
    );
    assert!(!tilt_answers(port), "our Tilt was stopped");
    assert!(ws.path(".tools/steps.json").is_file(), "step records kept");
    assert_eq!(downloaded_images(&world), downloaded, "downloaded images kept");

    // Again: nothing to do, exit 0, no tool call that changes anything.
    let before = world.calls().len();
    let out = ws.xtask(&world, &["down"]);
    assert_eq!(Exit::of(out.status), Exit::Ok);
    assert!(support::stdout(&out).starts_with("down: nothing to do"), "{}", support::stdout(&out));
    assert_eq!(mutating(&world.calls()[before..]), Vec::<String>::new());

    // The next bootstrap downloads no image again: the host's store still has them.
    let pulls = testbed::docker::node_images::pulls(world.dir()).unwrap().len();
    let (code, summary) = ws.summary(&world, &["bootstrap", "--no-install"]);
    assert_eq!(code, Exit::Ok, "{summary:?}");
    let now = testbed::docker::node_images::pulls(world.dir()).unwrap();
    assert_eq!(now.len(), pulls, "downloads after down: {:?}", &now[pulls..]);

    // Purge: nothing of the platform is left.
    let (code, purged) = ws.json(&world, &["down", "--purge"]);
    assert_eq!(code, Exit::Ok, "{purged}");
    assert_eq!(cluster_containers(&world), Vec::<String>::new());
    assert!(!kube_contexts(&world).contains(&world.slot().context()));
    assert!(!tilt_answers(port));
    assert!(!ws.path(".tools").exists(), "no .tools");
    assert!(!ws.path("target/xtask-tilt.json").exists(), "no record of Tilt");
    assert_eq!(
        downloaded_images(&world),
        Vec::<String>::new(),
        "no image the bootstrap downloaded"
    );
    let (code, again) = ws.json(&world, &["down", "--purge"]);
    assert_eq!((code, &again["nothing_to_do"]), (Exit::Ok, &Value::Bool(true)), "{again}");
}

/// Headless Chromium from the Debian package. Missing: the browser check is skipped,
/// except under CI (`.ci/run` installs it), where it fails.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed: `apt-get install chromium` (.ci/run installs it)"
        );
        eprintln!("skipped: the report was not opened in a browser (no chromium on PATH)");
    }
    found
}

/// Open `page` in a fresh headless Chromium with no network: the DOM after its script
/// ran, and every console message.
fn open_in_chromium(chromium: &Path, page: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = profile.path().join("dom.html");
    let err = profile.path().join("stderr.log");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.success(), "chromium: {status}\n{stderr}");
    let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    (std::fs::read_to_string(&out).unwrap(), console)
}
